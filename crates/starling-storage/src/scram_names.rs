//! How both backends name and order SCRAM hashes in their key tables.

use starling_sasl::ScramHash;

/// The SASL mechanism name stored for a hash (RFC 5802 §4, RFC 7677 §3).
pub(crate) fn hash_name(hash: ScramHash) -> &'static str {
    match hash {
        ScramHash::Sha1 => "SCRAM-SHA-1",
        ScramHash::Sha256 => "SCRAM-SHA-256",
    }
}

/// The hash a stored name stands for; `None` for a name this build does not know.
pub(crate) fn parse_hash_name(name: &str) -> Option<ScramHash> {
    [ScramHash::Sha1, ScramHash::Sha256]
        .into_iter()
        .find(|&hash| hash_name(hash) == name)
}

/// Position of a hash in the order `credentials` returns keys in.
pub(crate) fn hash_rank(hash: ScramHash) -> u8 {
    match hash {
        ScramHash::Sha1 => 0,
        ScramHash::Sha256 => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_names_round_trip() {
        for hash in [ScramHash::Sha1, ScramHash::Sha256] {
            assert_eq!(parse_hash_name(hash_name(hash)), Some(hash));
        }
        assert_eq!(parse_hash_name("scram-sha-1"), None);
    }
}
