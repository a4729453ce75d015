//! Where the engine gets generated values from, so that it never reads a clock or an RNG.

/// Supplies stream ids, SCRAM nonces and server-generated resources.
///
/// The server implements this with `Uuid::now_v7()` and a CSPRNG; tests use [`SequentialIds`].
pub trait IdSource: Send {
    /// A fresh stream id (RFC 6120 §4.7.3); the server uses UUIDv7 so ids sort by time.
    fn stream_id(&mut self) -> String;
    /// A fresh, unpredictable SCRAM server nonce (printable, without `,`).
    fn nonce(&mut self) -> String;
    /// A fresh resource for a client that asked the server to pick one (RFC 6120 §7.6).
    fn resource(&mut self) -> uuid::Uuid;
}

/// Deterministic ids for tests and examples: `stream-1`, `nonce-1`, and UUIDs counting up.
#[derive(Debug, Default)]
pub struct SequentialIds {
    counter: u64,
}

impl IdSource for SequentialIds {
    fn stream_id(&mut self) -> String {
        self.counter += 1;
        format!("stream-{}", self.counter)
    }

    fn nonce(&mut self) -> String {
        self.counter += 1;
        format!("nonce{}", self.counter)
    }

    fn resource(&mut self) -> uuid::Uuid {
        self.counter += 1;
        uuid::Uuid::from_u128(u128::from(self.counter))
    }
}
