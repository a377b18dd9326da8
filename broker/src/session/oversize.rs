//! What a session writes instead of a reply larger than its client accepts (MQTT 5 Maximum
//! Packet Size): the contract's `too_large` error for the same request, which the client can
//! match by `rid` and act on (ask for fewer history messages, say), instead of silence.

use bytes::Bytes;
use chatd_wire::reply::{rpc_err, ErrorCode, Failure};
use serde::Deserialize;

/// The part of a reply that names its request.
#[derive(Deserialize)]
struct Rid {
    rid: Option<String>,
}

/// `{"rid":…,"ok":false,"error":{"code":"too_large",…}}` for rpc reply `payload`, whose
/// PUBLISH would take `size` bytes where the client takes at most `max`.
pub fn too_large_reply(payload: &[u8], size: usize, max: usize) -> Bytes {
    // The reply is the server's own JSON; one that cannot be read still gets an error (no rid).
    let rid = serde_json::from_slice::<Rid>(payload)
        .ok()
        .and_then(|r| r.rid);
    let failure = Failure::new(
        ErrorCode::TooLarge,
        format!("the reply takes {size} bytes; this connection accepts packets of at most {max}"),
    );
    rpc_err(rid.as_deref(), &failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_rid_and_says_too_large() {
        let big = format!(
            r#"{{"rid":"r-9","ok":true,"result":{{"x":"{}"}}}}"#,
            "y".repeat(5000)
        );
        let reply: serde_json::Value =
            serde_json::from_slice(&too_large_reply(big.as_bytes(), 5100, 1024)).unwrap();
        assert_eq!(reply["rid"], "r-9");
        assert_eq!(reply["ok"], false);
        assert_eq!(reply["error"]["code"], "too_large");
        let unreadable: serde_json::Value =
            serde_json::from_slice(&too_large_reply(b"not json", 5100, 1024)).unwrap();
        assert!(unreadable.get("rid").is_none());
        assert_eq!(unreadable["error"]["code"], "too_large");
    }
}
