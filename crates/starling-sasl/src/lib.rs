//! Server-side SASL for XMPP (RFC 6120 §6): PLAIN, SCRAM-SHA-1, SCRAM-SHA-256 and their -PLUS variants.
//!
//! (Placeholder: the mechanisms are being written. The credential types below are the contract
//! with `starling-storage` and must keep these fields.)

/// The hash function of a SCRAM family (RFC 5802, RFC 7677).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScramHash {
    /// SCRAM-SHA-1 (RFC 5802).
    Sha1,
    /// SCRAM-SHA-256 (RFC 7677).
    Sha256,
}

/// What the server keeps for one hash instead of a password (RFC 5802 §3).
#[derive(Clone, PartialEq, Eq)]
pub struct ScramKeys {
    /// Which hash these keys belong to.
    pub hash: ScramHash,
    /// The per-account salt.
    pub salt: Vec<u8>,
    /// PBKDF2 iteration count used to derive SaltedPassword.
    pub iterations: u32,
    /// `H(ClientKey)`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
}

/// Everything the server keeps to authenticate one account: one `ScramKeys` per hash.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct StoredCredentials {
    /// At most one entry per `ScramHash`.
    pub keys: Vec<ScramKeys>,
}
