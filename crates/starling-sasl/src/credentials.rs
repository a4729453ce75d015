//! Stored SCRAM credentials (RFC 5802 §3, RFC 7677) and the hash primitives built on them.
//!
//! The server never keeps a password or `SaltedPassword`: per hash it keeps the salt, the
//! iteration count, `StoredKey` and `ServerKey`. Both SCRAM and PLAIN logins are checked against
//! those four values.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

/// Default PBKDF2 iteration count: the minimum RFC 7677 §4 asks for with SHA-256 (and RFC 5802
/// §5.1's suggested minimum for SHA-1).
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// The largest PBKDF2 iteration count the server derives keys with, for a new password, an
/// import or a PLAIN login. Each PLAIN attempt costs the server one PBKDF2 at the account's
/// count, so an account imported with an absurd count would let one wrong password hold a CPU
/// for minutes; counts above this are refused wherever they enter. 600,000 is OWASP's current
/// recommendation for PBKDF2-HMAC-SHA256, the largest count anyone has reason to configure.
pub const MAX_ITERATIONS: u32 = 600_000;

/// Length in bytes of the salts the server draws for new accounts. Made-up salts for unknown
/// users have the same length, so a prober cannot tell them apart by size.
pub const SALT_BYTES: usize = 16;

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

/// Why credentials could not be derived from a password.
#[derive(Debug, Error)]
pub enum SaslError {
    /// The password contains characters SASLprep (RFC 4013 §2.3, §2.4) prohibits.
    #[error("password rejected by SASLprep: {0}")]
    PasswordNotPreparable(#[source] stringprep::Error),
    /// PBKDF2 needs at least one iteration (RFC 8018 §5.2; RFC 5802 §2.2 `Hi`).
    #[error("PBKDF2 iteration count must be at least 1")]
    ZeroIterations,
    /// The iteration count is over [`MAX_ITERATIONS`].
    #[error("PBKDF2 iteration count {0} is over the limit of {MAX_ITERATIONS}")]
    TooManyIterations(u32),
}

/// Checks an iteration count that is about to be stored or computed: at least 1 and at most
/// [`MAX_ITERATIONS`].
pub fn check_iterations(iterations: u32) -> Result<(), SaslError> {
    match iterations {
        0 => Err(SaslError::ZeroIterations),
        n if n > MAX_ITERATIONS => Err(SaslError::TooManyIterations(n)),
        _ => Ok(()),
    }
}

impl ScramHash {
    /// Every hash, in declaration order (SHA-1 before SHA-256).
    pub const ALL: [ScramHash; 2] = [ScramHash::Sha1, ScramHash::Sha256];

    /// The hash part of the mechanism name: "SHA-1" or "SHA-256".
    pub fn name(self) -> &'static str {
        match self {
            ScramHash::Sha1 => "SHA-1",
            ScramHash::Sha256 => "SHA-256",
        }
    }

    /// Output length of the hash in bytes, which is also the length of every SCRAM key and proof.
    pub fn output_len(self) -> usize {
        match self {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
        }
    }

    /// `H(data)`.
    pub(crate) fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    /// `HMAC(key, data)` (RFC 2104).
    pub(crate) fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => hmac_with::<Hmac<Sha1>>(key, data),
            ScramHash::Sha256 => hmac_with::<Hmac<Sha256>>(key, data),
        }
    }

    /// `Hi(password, salt, i)` of RFC 5802 §2.2, which is PBKDF2 with HMAC and `dkLen` = output length.
    fn salted_password(self, prepared_password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.output_len()];
        match self {
            ScramHash::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>(
                prepared_password.as_bytes(),
                salt,
                iterations,
                &mut out,
            ),
            ScramHash::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(
                prepared_password.as_bytes(),
                salt,
                iterations,
                &mut out,
            ),
        }
        out
    }
}

impl ScramKeys {
    /// Derives the stored keys from a password (RFC 5802 §3):
    /// `SaltedPassword = Hi(SASLprep(password), salt, i)`, `ClientKey = HMAC(SaltedPassword,
    /// "Client Key")`, `StoredKey = H(ClientKey)`, `ServerKey = HMAC(SaltedPassword, "Server Key")`.
    ///
    /// This runs PBKDF2 and is CPU-heavy; callers in async code run it off the reactor.
    pub fn derive(
        hash: ScramHash,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<ScramKeys, SaslError> {
        let prepared = stringprep::saslprep(password).map_err(SaslError::PasswordNotPreparable)?;
        Self::derive_prepared(hash, &prepared, salt, iterations)
    }

    /// Constant-time check of a plaintext password against these keys (for PLAIN).
    ///
    /// Returns false for a password SASLprep rejects, since no stored key can match it.
    pub fn verify_password(&self, password: &str) -> bool {
        match stringprep::saslprep(password) {
            Ok(prepared) => self.verify_prepared(&prepared),
            Err(_) => false,
        }
    }

    /// As [`ScramKeys::derive`], for a password that already went through SASLprep.
    pub(crate) fn derive_prepared(
        hash: ScramHash,
        prepared_password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<ScramKeys, SaslError> {
        check_iterations(iterations)?;
        let salted = hash.salted_password(prepared_password, salt, iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        Ok(ScramKeys {
            hash,
            salt: salt.to_vec(),
            iterations,
            stored_key: hash.digest(&client_key),
            server_key: hash.hmac(&salted, b"Server Key"),
        })
    }

    /// As [`ScramKeys::verify_password`], for a password that already went through SASLprep.
    pub(crate) fn verify_prepared(&self, prepared_password: &str) -> bool {
        let Ok(candidate) =
            Self::derive_prepared(self.hash, prepared_password, &self.salt, self.iterations)
        else {
            return false;
        };
        let stored = candidate.stored_key.ct_eq(&self.stored_key);
        let server = candidate.server_key.ct_eq(&self.server_key);
        (stored & server).into()
    }
}

impl StoredCredentials {
    /// Derives SCRAM-SHA-1 and SCRAM-SHA-256 keys for a new password, each with its own salt.
    pub fn from_password(
        password: &str,
        salt_sha1: &[u8],
        salt_sha256: &[u8],
        iterations: u32,
    ) -> Result<Self, SaslError> {
        Ok(StoredCredentials {
            keys: vec![
                ScramKeys::derive(ScramHash::Sha256, password, salt_sha256, iterations)?,
                ScramKeys::derive(ScramHash::Sha1, password, salt_sha1, iterations)?,
            ],
        })
    }

    /// The keys for one hash, if this account has them.
    pub fn keys_for(&self, hash: ScramHash) -> Option<&ScramKeys> {
        self.keys.iter().find(|keys| keys.hash == hash)
    }
}

// The keys are password equivalents for offline guessing, so they never reach a log.
impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramKeys")
            .field("hash", &self.hash)
            .field("salt_len", &self.salt.len())
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for StoredCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCredentials")
            .field("keys", &self.keys)
            .finish()
    }
}

fn hmac_with<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    // RFC 2104 §2: HMAC takes keys of any length (longer ones are hashed first), so
    // `new_from_slice` cannot fail for `Hmac<D>`.
    #[allow(clippy::expect_used)]
    let mut mac =
        <M as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// RFC 5802 §5: user "user", password "pencil", salt QSXCR+Q6sek8bf92, 4096 iterations.
    #[test]
    fn derive_matches_rfc5802_sha1_vector() {
        let salt = STANDARD.decode("QSXCR+Q6sek8bf92").unwrap();
        let keys = ScramKeys::derive(ScramHash::Sha1, "pencil", &salt, 4096).unwrap();
        assert_eq!(keys.hash, ScramHash::Sha1);
        assert_eq!(keys.salt, salt);
        assert_eq!(keys.iterations, 4096);
        assert_eq!(
            hex(&keys.stored_key),
            "e9d94660c39d65c38fbad91c358f14da0eef2bd6"
        );
        assert_eq!(
            hex(&keys.server_key),
            "0fe09258b3ac852ba502cc62ba903eaacdbf7d31"
        );
    }

    /// The same keys computed by the independent `sasl` crate's primitives.
    #[test]
    fn derive_agrees_with_sasl_crate_primitives() {
        use sasl::common::Password;
        use sasl::common::scram::{ScramProvider, Sha1 as CSha1, Sha256 as CSha256};
        let salt = b"some salt bytes";
        let password = Password::Plain("correct horse".to_owned());

        let sp = CSha256::derive(&password, salt, 7).unwrap();
        let ck = CSha256::hmac(b"Client Key", &sp).unwrap();
        let keys = ScramKeys::derive(ScramHash::Sha256, "correct horse", salt, 7).unwrap();
        assert_eq!(keys.stored_key, CSha256::hash(&ck));
        assert_eq!(keys.server_key, CSha256::hmac(b"Server Key", &sp).unwrap());

        let sp = CSha1::derive(&password, salt, 7).unwrap();
        let ck = CSha1::hmac(b"Client Key", &sp).unwrap();
        let keys = ScramKeys::derive(ScramHash::Sha1, "correct horse", salt, 7).unwrap();
        assert_eq!(keys.stored_key, CSha1::hash(&ck));
        assert_eq!(keys.server_key, CSha1::hmac(b"Server Key", &sp).unwrap());
    }

    #[test]
    fn derive_applies_saslprep_to_the_password() {
        // RFC 4013 §3: "I<U+00AD>X" (soft hyphen is mapped to nothing) prepares to "IX".
        let a = ScramKeys::derive(ScramHash::Sha256, "I\u{AD}X", b"salt", 2).unwrap();
        let b = ScramKeys::derive(ScramHash::Sha256, "IX", b"salt", 2).unwrap();
        assert_eq!(a, b);
        // RFC 4013 §3: U+2168 (ROMAN NUMERAL NINE) prepares to "IX" by NFKC.
        let c = ScramKeys::derive(ScramHash::Sha256, "\u{2168}", b"salt", 2).unwrap();
        assert_eq!(a, c);
    }

    #[test]
    fn derive_rejects_prohibited_password() {
        // RFC 4013 §3: U+0007 is prohibited.
        let err = ScramKeys::derive(ScramHash::Sha1, "a\u{7}b", b"salt", 2).unwrap_err();
        assert!(
            matches!(err, SaslError::PasswordNotPreparable(_)),
            "{err:?}"
        );
    }

    #[test]
    fn derive_rejects_zero_iterations() {
        let err = ScramKeys::derive(ScramHash::Sha256, "pw", b"salt", 0).unwrap_err();
        assert!(matches!(err, SaslError::ZeroIterations), "{err:?}");
    }

    #[test]
    fn verify_password_accepts_only_the_right_password() {
        let keys = ScramKeys::derive(ScramHash::Sha256, "pencil", b"salt", 3).unwrap();
        assert!(keys.verify_password("pencil"));
        assert!(!keys.verify_password("pencil "));
        assert!(!keys.verify_password("Pencil"));
        assert!(!keys.verify_password(""));
        assert!(!keys.verify_password("a\u{7}b"));
    }

    #[test]
    fn from_password_derives_both_hashes_with_their_own_salts() {
        let creds =
            StoredCredentials::from_password("pencil", b"salt-one", b"salt-two", 5).unwrap();
        assert_eq!(creds.keys.len(), 2);
        let sha1 = creds.keys_for(ScramHash::Sha1).unwrap();
        let sha256 = creds.keys_for(ScramHash::Sha256).unwrap();
        assert_eq!(sha1.salt, b"salt-one");
        assert_eq!(sha1.stored_key.len(), 20);
        assert_eq!(sha256.salt, b"salt-two");
        assert_eq!(sha256.stored_key.len(), 32);
        assert_eq!(sha256.iterations, 5);
        assert!(sha1.verify_password("pencil"));
        assert!(sha256.verify_password("pencil"));
    }

    #[test]
    fn keys_for_missing_hash_is_none() {
        let creds = StoredCredentials::default();
        assert_eq!(creds.keys_for(ScramHash::Sha1), None);
    }

    #[test]
    fn debug_output_hides_keys() {
        let keys = ScramKeys::derive(ScramHash::Sha1, "pencil", b"salt", 1).unwrap();
        let shown = format!("{keys:?}");
        assert_eq!(
            shown,
            "ScramKeys { hash: Sha1, salt_len: 4, iterations: 1, .. }"
        );
    }
}
