//! Identity, credentials and topic authorization for chatd: pure functions, no I/O.

pub mod acl;
pub mod error;
pub mod ids;
pub mod jwt;
pub mod password;

pub use acl::{can_publish, can_subscribe, topic_matches, will_allowed, ChatTopic, SubscribeRule};
pub use error::AuthError;
pub use ids::{parse_client_id, skeleton, validate_user_id, ClientId, IdError, IdKind, MAX_ID_LEN};
pub use jwt::{looks_like_jwt, JwtVerifier};
pub use password::{hash_password, validate_password, verify_password, MAX_PASSWORD_LEN};
