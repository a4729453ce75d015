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

/// Label of the row counting every account in a key coverage answer; not a hash name.
pub(crate) const ALL_ACCOUNTS: &str = "*accounts";
/// Label of the row counting accounts without keys; not a hash name.
pub(crate) const WITHOUT_KEYS: &str = "*without-keys";

/// One statement, so one snapshot in either backend, answering rows of (label, count): every
/// account of the host ([`ALL_ACCOUNTS`]), those without keys ([`WITHOUT_KEYS`]), and per
/// stored hash name those holding it. `$param` is the backend's placeholder for the host.
macro_rules! key_coverage_sql {
    ($param:literal) => {
        concat!(
            "SELECT '*accounts', count(*) FROM accounts WHERE host = ",
            $param,
            " UNION ALL SELECT '*without-keys', count(*) FROM accounts a WHERE a.host = ",
            $param,
            " AND NOT EXISTS (SELECT 1 FROM scram_keys k WHERE k.account_id = a.id)",
            " UNION ALL SELECT k.hash, count(*) FROM accounts a",
            " JOIN scram_keys k ON k.account_id = a.id WHERE a.host = ",
            $param,
            " GROUP BY k.hash"
        )
    };
}

/// The key coverage statement for SQLite.
pub(crate) const KEY_COVERAGE_SQLITE: &str = key_coverage_sql!("?1");
/// The key coverage statement for PostgreSQL.
pub(crate) const KEY_COVERAGE_POSTGRES: &str = key_coverage_sql!("$1");

/// Folds the rows of [`key_coverage_sql`] into a `KeyCoverage`; an unknown hash name is
/// [`StorageError::Corrupt`].
pub(crate) fn key_coverage_from_rows(
    host: &str,
    rows: impl IntoIterator<Item = (String, i64)>,
) -> Result<starling_sasl::KeyCoverage, crate::StorageError> {
    let mut coverage = starling_sasl::KeyCoverage::default();
    for (label, count) in rows {
        let count = u64::try_from(count).unwrap_or(0);
        match label.as_str() {
            ALL_ACCOUNTS => coverage.accounts = count,
            WITHOUT_KEYS => coverage.without_keys = count,
            name => {
                let hash = parse_hash_name(name).ok_or_else(|| {
                    crate::StorageError::Corrupt(format!(
                        "unknown hash {name:?} in the keys of {count} account(s) on {host}"
                    ))
                })?;
                coverage.with_hash.push((hash, count));
            }
        }
    }
    coverage.with_hash.sort_by_key(|(hash, _)| hash_rank(*hash));
    Ok(coverage)
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

    #[test]
    fn coverage_labels_are_the_ones_the_statements_use() {
        for sql in [KEY_COVERAGE_SQLITE, KEY_COVERAGE_POSTGRES] {
            assert!(sql.contains(&format!("'{ALL_ACCOUNTS}'")), "{sql}");
            assert!(sql.contains(&format!("'{WITHOUT_KEYS}'")), "{sql}");
        }
        assert!(parse_hash_name(ALL_ACCOUNTS).is_none());
        assert!(parse_hash_name(WITHOUT_KEYS).is_none());
    }

    #[test]
    fn coverage_rows_fold_into_counts_and_unknown_hashes_are_corrupt() {
        let coverage = key_coverage_from_rows(
            "example.org",
            [
                ("SCRAM-SHA-256".to_owned(), 2),
                (ALL_ACCOUNTS.to_owned(), 5),
                (WITHOUT_KEYS.to_owned(), 1),
                ("SCRAM-SHA-1".to_owned(), 4),
            ],
        )
        .expect("known names");
        assert_eq!(coverage.accounts, 5);
        assert_eq!(coverage.without_keys, 1);
        assert_eq!(
            coverage.with_hash,
            [(ScramHash::Sha1, 4), (ScramHash::Sha256, 2)]
        );
        assert_eq!(coverage.lacking(ScramHash::Sha256), 2);
        assert!(key_coverage_from_rows("x", [("SCRAM-MD5".to_owned(), 1)]).is_err());
    }
}
