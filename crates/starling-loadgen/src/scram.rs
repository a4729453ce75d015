//! The client side of SCRAM-SHA-256 and SCRAM-SHA-1 through the `sasl` crate, with the salted
//! password cached.
//!
//! PBKDF2 with 4,096 iterations costs the client as much as it costs the server. A generator
//! that derived the key on every login would measure itself, so [`CachedSha256`] remembers
//! `SaltedPassword` (RFC 5802 §3) per password, salt and iteration count: the first login of an
//! account pays, the rest reuse it, as a real client that stores its SCRAM keys would.
//! SCRAM-SHA-1 is there for servers that store only SHA-1 keys (Prosody 0.12's
//! `internal_hashed`).
//!
//! *Why a provider and not `Password::Pbkdf2`:* `sasl` 0.5.2's `derive` for a pre-derived
//! password rejects the matching salt and iteration count (its comparisons are inverted), so the
//! cache lives in a `ScramProvider` that wraps the crate's own SHA-256 provider.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Mutex, OnceLock};

use hmac::digest::InvalidLength;
use sasl::common::Password;
use sasl::common::scram::{DeriveError, ScramProvider};

/// Cache key: hash name, password, salt, iterations.
type Key = (&'static str, String, Vec<u8>, u32);

fn cache() -> &'static Mutex<HashMap<Key, Vec<u8>>> {
    static CACHE: OnceLock<Mutex<HashMap<Key, Vec<u8>>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The `sasl` crate's SCRAM provider `P` with its key derivation memoised.
pub struct Cached<P>(PhantomData<P>);

/// SCRAM-SHA-256 with a cached salted password.
pub type CachedSha256 = Cached<sasl::common::scram::Sha256>;
/// SCRAM-SHA-1 with a cached salted password.
pub type CachedSha1 = Cached<sasl::common::scram::Sha1>;

impl<P: ScramProvider> ScramProvider for Cached<P> {
    type Secret = P::Secret;

    fn name() -> &'static str {
        P::name()
    }

    fn hash(data: &[u8]) -> Vec<u8> {
        P::hash(data)
    }

    fn hmac(data: &[u8], key: &[u8]) -> Result<Vec<u8>, InvalidLength> {
        P::hmac(data, key)
    }

    fn derive(password: &Password, salt: &[u8], iterations: u32) -> Result<Vec<u8>, DeriveError> {
        let Password::Plain(plain) = password else {
            return P::derive(password, salt, iterations);
        };
        let key = (P::name(), plain.clone(), salt.to_vec(), iterations);
        if let Some(salted) = cache().lock().ok().and_then(|map| map.get(&key).cloned()) {
            return Ok(salted);
        }
        let salted = P::derive(password, salt, iterations)?;
        if let Ok(mut map) = cache().lock() {
            map.insert(key, salted.clone());
        }
        Ok(salted)
    }
}

/// How many salted passwords are cached (for the report).
pub fn cached_keys() -> usize {
    cache().lock().map(|map| map.len()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sasl::common::scram::Sha256;

    #[test]
    fn cached_derivation_equals_the_crate_derivation() {
        let password = Password::Plain("pencil".to_owned());
        let salt = b"salt-for-test";
        let direct = Sha256::derive(&password, salt, 4096).expect("derive");
        let first = CachedSha256::derive(&password, salt, 4096).expect("derive");
        let second = CachedSha256::derive(&password, salt, 4096).expect("derive");
        assert_eq!(direct, first);
        assert_eq!(first, second);
        assert!(cached_keys() >= 1);
    }
}
