//! Signed, expiring URLs for the `fs` back end: chatd's own HTTP listener accepts an upload or
//! download only with a signature it made, for that media id, that method and that expiry.
//!
//! The signature is HMAC-SHA256 over `chatd-media-url-v1\n{METHOD}\n{media}\n{expires}` with a
//! server-side key, hex-encoded. Changing any byte of the media id, the expiry or the
//! signature makes it invalid, and the method is bound in, so an upload URL cannot download.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Shortest signing key accepted, in bytes: shorter keys could be guessed.
pub const MIN_KEY_BYTES: usize = 32;

/// Longest `expires` value looked at (a `u64` has 20 digits): anything longer is forged.
const MAX_EXPIRES_CHARS: usize = 20;

/// What a signed URL lets its holder do; bound into the signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `PUT` the bytes of a pending upload.
    Upload,
    /// `GET` the bytes of verified media.
    Download,
}

impl Access {
    /// The HTTP method this access is for.
    pub fn method(self) -> &'static str {
        match self {
            Access::Upload => "PUT",
            Access::Download => "GET",
        }
    }
}

/// Why a URL is refused (the HTTP listener answers 403 for both) or a key unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// Missing, malformed or not made by this server for this media, method and expiry.
    #[error("the URL's signature is missing or does not match (a changed URL is refused)")]
    BadSignature,
    /// Made by this server, but its time is over.
    #[error("the URL expired at {expires} (Unix seconds); ask for a new one")]
    Expired {
        /// When it expired, Unix seconds.
        expires: u64,
    },
    /// The configured or stored key is too short to be safe.
    #[error("the signing key must be at least {MIN_KEY_BYTES} bytes, not {0}")]
    WeakKey(usize),
}

/// Makes and checks URL signatures with one secret key.
#[derive(Clone)]
pub struct UrlSigner {
    /// The keyed MAC, cloned for each signature so the key schedule runs once.
    mac: HmacSha256,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.write_str("UrlSigner(..)")
    }
}

impl UrlSigner {
    /// A signer with `key` (at least [`MIN_KEY_BYTES`] bytes).
    pub fn new(key: &[u8]) -> Result<UrlSigner, SignError> {
        if key.len() < MIN_KEY_BYTES {
            return Err(SignError::WeakKey(key.len()));
        }
        let mac = HmacSha256::new_from_slice(key).map_err(|_| SignError::WeakKey(key.len()))?;
        Ok(UrlSigner { mac })
    }

    fn keyed(&self, access: Access, media: &str, expires: &str) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(b"chatd-media-url-v1\n");
        mac.update(access.method().as_bytes());
        mac.update(b"\n");
        mac.update(media.as_bytes());
        mac.update(b"\n");
        mac.update(expires.as_bytes());
        mac
    }

    /// The hex signature for `access` to `media` until `expires` (Unix seconds).
    pub fn sign(&self, access: Access, media: &str, expires: u64) -> String {
        let tag = self
            .keyed(access, media, &expires.to_string())
            .finalize()
            .into_bytes();
        hex::encode(tag)
    }

    /// Checks a URL's `expires` and `sig` query values as received: the signature first (in
    /// constant time), then the expiry against `now` (Unix seconds; valid through `expires`).
    /// Returns the expiry.
    pub fn verify(
        &self,
        access: Access,
        media: &str,
        expires: &str,
        sig: &str,
        now: u64,
    ) -> Result<u64, SignError> {
        if expires.is_empty()
            || expires.len() > MAX_EXPIRES_CHARS
            || !expires.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(SignError::BadSignature);
        }
        let given = hex::decode(sig).map_err(|_| SignError::BadSignature)?;
        self.keyed(access, media, expires)
            .verify_slice(&given)
            .map_err(|_| SignError::BadSignature)?;
        let expires: u64 = expires.parse().map_err(|_| SignError::BadSignature)?;
        if now > expires {
            return Err(SignError::Expired { expires });
        }
        Ok(expires)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn signer() -> UrlSigner {
        UrlSigner::new(KEY).unwrap()
    }

    #[test]
    fn signed_url_verifies_until_it_expires() {
        let s = signer();
        let sig = s.sign(Access::Upload, "m_1", 1000);
        assert_eq!(sig.len(), 64);
        assert_eq!(s.verify(Access::Upload, "m_1", "1000", &sig, 999), Ok(1000));
        assert_eq!(
            s.verify(Access::Upload, "m_1", "1000", &sig, 1000),
            Ok(1000)
        );
        assert_eq!(
            s.verify(Access::Upload, "m_1", "1000", &sig, 1001),
            Err(SignError::Expired { expires: 1000 })
        );
    }

    #[test]
    fn any_changed_part_is_refused() {
        let s = signer();
        let sig = s.sign(Access::Upload, "m_1", 1000);
        let bad = Err(SignError::BadSignature);
        // Another method, media id or expiry.
        assert_eq!(s.verify(Access::Download, "m_1", "1000", &sig, 0), bad);
        assert_eq!(s.verify(Access::Upload, "m_2", "1000", &sig, 0), bad);
        assert_eq!(s.verify(Access::Upload, "m_1", "1001", &sig, 0), bad);
        assert_eq!(s.verify(Access::Upload, "m_1", "01000", &sig, 0), bad);
        // Every single changed character of the signature.
        for i in 0..sig.len() {
            let mut forged = sig.clone().into_bytes();
            forged[i] = if forged[i] == b'0' { b'1' } else { b'0' };
            let forged = String::from_utf8(forged).unwrap();
            assert_eq!(s.verify(Access::Upload, "m_1", "1000", &forged, 0), bad);
        }
        // Malformed values.
        for (expires, sig) in [
            ("", sig.as_str()),
            ("-1", sig.as_str()),
            ("1e3", sig.as_str()),
            ("99999999999999999999999", sig.as_str()),
            ("1000", ""),
            ("1000", "zz"),
            ("1000", &sig[..62]),
        ] {
            assert_eq!(s.verify(Access::Upload, "m_1", expires, sig, 0), bad);
        }
        // Another key.
        let other = UrlSigner::new(b"another key that is long enough!!").unwrap();
        assert_eq!(other.verify(Access::Upload, "m_1", "1000", &sig, 0), bad);
    }

    #[test]
    fn short_keys_are_refused() {
        assert_eq!(UrlSigner::new(b"short").unwrap_err(), SignError::WeakKey(5));
        assert!(format!("{:?}", signer()).contains(".."));
    }
}
