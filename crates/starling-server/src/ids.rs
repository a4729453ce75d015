//! The server's source of generated ids: UUIDv7 for anything that sorts by time, OS randomness
//! for nonces.

use rand::Rng as _;
use starling_stream::IdSource;

/// Real ids: `Uuid::now_v7()` and 24 random bytes per SCRAM nonce.
pub struct SystemIds;

impl IdSource for SystemIds {
    fn stream_id(&mut self) -> String {
        uuid::Uuid::now_v7().to_string()
    }

    fn nonce(&mut self) -> String {
        let bytes: [u8; 18] = rand::rng().random();
        // Base64 of 18 bytes is 24 printable characters with no `,` or padding (RFC 5802 nonce).
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn resource(&mut self) -> uuid::Uuid {
        uuid::Uuid::now_v7()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_are_uuidv7_and_increase() {
        let mut ids = SystemIds;
        let first: uuid::Uuid = ids.stream_id().parse().unwrap();
        let second: uuid::Uuid = ids.stream_id().parse().unwrap();
        assert_eq!(first.get_version_num(), 7);
        assert!(second > first);
    }

    #[test]
    fn nonces_are_printable_without_commas_and_differ() {
        let mut ids = SystemIds;
        let a = ids.nonce();
        let b = ids.nonce();
        assert_eq!(a.len(), 24);
        assert!(a.bytes().all(|c| c.is_ascii_graphic() && c != b','));
        assert_ne!(a, b);
    }
}
