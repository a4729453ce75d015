//! The SQLite implementation of [`AccountStore`]: accounts and their SCRAM keys.

use jid::{BareJid, DomainPart, NodePart};
use rusqlite::{OptionalExtension, Transaction, params};
use starling_sasl::{KeyCoverage, ScramHashes, ScramKeys, StoredCredentials};

use super::{SqliteStore, backend, write_transaction};
use crate::scram_names::{
    KEY_COVERAGE_SQLITE, hash_name, hash_rank, key_coverage_from_rows, parse_hash_name,
};
use crate::{AccountKey, AccountStore, StorageError};

impl AccountStore for SqliteStore {
    async fn create_account(
        &self,
        jid: &BareJid,
        creds: &StoredCredentials,
    ) -> Result<(), StorageError> {
        let key = AccountKey::of(jid).ok_or_else(|| StorageError::NoLocalpart(jid.clone()))?;
        let (jid, creds) = (jid.clone(), creds.clone());
        self.with_conn(move |conn| {
            let tx = write_transaction(conn)?;
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO accounts (host, username) VALUES (?1, ?2)
                     ON CONFLICT (host, username) DO NOTHING",
                )
                .and_then(|mut stmt| stmt.execute(params![key.host, key.username]))
                .map_err(backend("insert account"))?;
            if inserted == 0 {
                return Err(StorageError::AccountExists(jid));
            }
            insert_keys(&tx, tx.last_insert_rowid(), &creds)?;
            tx.commit().map_err(backend("commit new account"))
        })
        .await
    }

    async fn set_credentials(
        &self,
        jid: &BareJid,
        creds: &StoredCredentials,
    ) -> Result<(), StorageError> {
        let not_found = StorageError::AccountNotFound(jid.clone());
        let Some(key) = AccountKey::of(jid) else {
            return Err(not_found);
        };
        let creds = creds.clone();
        self.with_conn(move |conn| {
            let tx = write_transaction(conn)?;
            let account_id: Option<i64> = tx
                .prepare_cached("SELECT id FROM accounts WHERE host = ?1 AND username = ?2")
                .and_then(|mut stmt| {
                    stmt.query_row(params![key.host, key.username], |row| row.get(0))
                })
                .optional()
                .map_err(backend("look up account"))?;
            let Some(account_id) = account_id else {
                return Err(not_found);
            };
            tx.prepare_cached("DELETE FROM scram_keys WHERE account_id = ?1")
                .and_then(|mut stmt| stmt.execute(params![account_id]))
                .map_err(backend("delete old scram keys"))?;
            insert_keys(&tx, account_id, &creds)?;
            tx.commit().map_err(backend("commit new credentials"))
        })
        .await
    }

    async fn delete_account(&self, jid: &BareJid) -> Result<(), StorageError> {
        let not_found = StorageError::AccountNotFound(jid.clone());
        let Some(key) = AccountKey::of(jid) else {
            return Err(not_found);
        };
        self.with_conn(move |conn| {
            // One statement is atomic on its own; the keys go with it through ON DELETE CASCADE.
            let deleted = conn
                .prepare_cached("DELETE FROM accounts WHERE host = ?1 AND username = ?2")
                .and_then(|mut stmt| stmt.execute(params![key.host, key.username]))
                .map_err(backend("delete account"))?;
            if deleted == 0 {
                return Err(not_found);
            }
            Ok(())
        })
        .await
    }

    async fn credentials(&self, jid: &BareJid) -> Result<Option<StoredCredentials>, StorageError> {
        let Some(key) = AccountKey::of(jid) else {
            return Ok(None);
        };
        let jid = jid.clone();
        self.read(move |conn| {
            // One statement, so the account and its keys come from one consistent snapshot.
            // An account without keys yields one row of NULLs from the LEFT JOIN.
            let mut stmt = conn
                .prepare_cached(
                    "SELECT k.hash, k.salt, k.iterations, k.stored_key, k.server_key
                     FROM accounts a LEFT JOIN scram_keys k ON k.account_id = a.id
                     WHERE a.host = ?1 AND a.username = ?2",
                )
                .map_err(backend("prepare credentials query"))?;
            let mut rows = stmt
                .query(params![key.host, key.username])
                .map_err(backend("query credentials"))?;
            let mut found = false;
            let mut keys = Vec::new();
            while let Some(row) = rows.next().map_err(backend("read credentials row"))? {
                found = true;
                let hash: Option<String> = row.get(0).map_err(backend("read hash name"))?;
                let Some(hash) = hash else { continue };
                let iterations: i64 = row.get(2).map_err(backend("read iteration count"))?;
                keys.push(ScramKeys {
                    hash: parse_hash_name(&hash).ok_or_else(|| {
                        StorageError::Corrupt(format!("unknown hash {hash:?} in keys of {jid}"))
                    })?,
                    salt: row.get(1).map_err(backend("read salt"))?,
                    iterations: u32::try_from(iterations).map_err(|_| {
                        StorageError::Corrupt(format!(
                            "iteration count {iterations} out of range in {hash} keys of {jid}"
                        ))
                    })?,
                    stored_key: row.get(3).map_err(backend("read stored key"))?,
                    server_key: row.get(4).map_err(backend("read server key"))?,
                });
            }
            keys.sort_by_key(|keys| hash_rank(keys.hash));
            Ok(found.then_some(StoredCredentials { keys }))
        })
        .await
    }

    async fn list_accounts(&self, host: &str) -> Result<Vec<BareJid>, StorageError> {
        let Ok(domain) = DomainPart::new(host).map(|domain| domain.into_owned()) else {
            return Ok(Vec::new());
        };
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT username FROM accounts WHERE host = ?1")
                .map_err(backend("prepare account list query"))?;
            let usernames = stmt
                .query_map(params![domain.as_str()], |row| row.get::<_, String>(0))
                .map_err(backend("list accounts"))?;
            let mut accounts = Vec::new();
            for username in usernames {
                let username = username.map_err(backend("read username"))?;
                let node = NodePart::new(&username).map_err(|err| {
                    StorageError::Corrupt(format!(
                        "stored username {username:?} on {domain} is not a valid localpart: {err}"
                    ))
                })?;
                accounts.push(BareJid::from_parts(Some(&node), &domain));
            }
            // Sorted here rather than with ORDER BY, because BareJid's order (of the whole
            // "user@host" string) is not the order of usernames alone, and SQL collations
            // differ between backends.
            accounts.sort();
            Ok(accounts)
        })
        .await
    }

    async fn add_missing_keys(
        &self,
        jid: &BareJid,
        verified: &ScramKeys,
        added: &[ScramKeys],
    ) -> Result<ScramHashes, StorageError> {
        let Some(key) = AccountKey::of(jid) else {
            return Ok(ScramHashes::NONE);
        };
        let (verified, added) = (verified.clone(), added.to_vec());
        self.with_conn(move |conn| {
            let tx = write_transaction(conn)?;
            // The account, only while it still holds exactly the keys the password matched.
            let account_id: Option<i64> = tx
                .prepare_cached(
                    "SELECT a.id FROM accounts a JOIN scram_keys k ON k.account_id = a.id
                     WHERE a.host = ?1 AND a.username = ?2 AND k.hash = ?3 AND k.salt = ?4
                       AND k.iterations = ?5 AND k.stored_key = ?6 AND k.server_key = ?7",
                )
                .and_then(|mut stmt| {
                    stmt.query_row(
                        params![
                            key.host,
                            key.username,
                            hash_name(verified.hash),
                            verified.salt,
                            verified.iterations,
                            verified.stored_key,
                            verified.server_key
                        ],
                        |row| row.get(0),
                    )
                })
                .optional()
                .map_err(backend("look up verified keys"))?;
            let Some(account_id) = account_id else {
                return Ok(ScramHashes::NONE);
            };
            let stored = insert_key_rows(&tx, account_id, &added, INSERT_MISSING_KEYS)?;
            tx.commit().map_err(backend("commit added keys"))?;
            Ok(stored)
        })
        .await
    }

    async fn key_coverage(&self, host: &str) -> Result<KeyCoverage, StorageError> {
        let Ok(domain) = DomainPart::new(host).map(|domain| domain.into_owned()) else {
            return Ok(KeyCoverage::default());
        };
        self.scan(move |conn| {
            let mut stmt = conn
                .prepare_cached(KEY_COVERAGE_SQLITE)
                .map_err(backend("prepare key coverage query"))?;
            let rows = stmt
                .query_map(params![domain.as_str()], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })
                .map_err(backend("count keys"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend("read key counts"))?;
            key_coverage_from_rows(domain.as_str(), rows)
        })
        .await
    }
}

/// Inserts one row per key; a hash the account already has is an error.
const INSERT_KEYS: &str =
    "INSERT INTO scram_keys (account_id, hash, salt, iterations, stored_key, server_key)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// Inserts one row per key for the hashes the account does not have yet.
const INSERT_MISSING_KEYS: &str =
    "INSERT INTO scram_keys (account_id, hash, salt, iterations, stored_key, server_key)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (account_id, hash) DO NOTHING";

pub(crate) fn insert_keys(
    tx: &Transaction<'_>,
    account_id: i64,
    creds: &StoredCredentials,
) -> Result<(), StorageError> {
    insert_key_rows(tx, account_id, &creds.keys, INSERT_KEYS).map(drop)
}

/// Runs `sql` (one of the inserts above) for each of `keys`; returns the hashes it inserted.
fn insert_key_rows(
    tx: &Transaction<'_>,
    account_id: i64,
    keys: &[ScramKeys],
    sql: &str,
) -> Result<ScramHashes, StorageError> {
    let mut stmt = tx
        .prepare_cached(sql)
        .map_err(backend("prepare scram key insert"))?;
    let mut inserted = ScramHashes::NONE;
    for keys in keys {
        let name = hash_name(keys.hash);
        let rows = stmt
            .execute(params![
                account_id,
                name,
                keys.salt,
                keys.iterations,
                keys.stored_key,
                keys.server_key
            ])
            .map_err(backend(&format!("insert {name} keys")))?;
        if rows > 0 {
            inserted = inserted.with(keys.hash);
        }
    }
    Ok(inserted)
}

#[cfg(test)]
mod tests {
    use jid::BareJid;
    use starling_sasl::StoredCredentials;

    use crate::account_tests::{alice, credentials};
    use crate::sqlite::tests::{memory_store, raw_connection};
    use crate::{AccountStore as _, StorageError};

    crate::account_tests::account_store_tests!(memory_store());

    mod on_file {
        use crate::sqlite::tests::file_store;
        crate::account_tests::account_store_tests!(file_store().store);
    }

    #[tokio::test]
    async fn delete_cascades_to_keys() {
        let store = memory_store();
        store
            .create_account(&alice(), &credentials(1))
            .await
            .expect("create");
        store.delete_account(&alice()).await.expect("delete");
        let keys: i64 = raw_connection(&store)
            .query_row("SELECT count(*) FROM scram_keys", [], |row| row.get(0))
            .expect("count");
        assert_eq!(keys, 0);
    }

    #[tokio::test]
    async fn duplicate_hash_is_a_backend_error() {
        let store = memory_store();
        let mut creds = credentials(1);
        creds.keys.push(creds.keys[0].clone());
        assert_eq!(
            store.create_account(&alice(), &creds).await,
            Err(StorageError::Backend(
                "insert SCRAM-SHA-1 keys: UNIQUE constraint failed: \
                 scram_keys.account_id, scram_keys.hash"
                    .to_owned()
            ))
        );
    }

    #[tokio::test]
    async fn unknown_hash_name_is_corrupt() {
        let store = memory_store();
        store
            .create_account(&alice(), &StoredCredentials::default())
            .await
            .expect("create");
        raw_connection(&store)
            .execute(
                "INSERT INTO scram_keys VALUES (1, 'SCRAM-MD5', x'00', 1, x'00', x'00')",
                [],
            )
            .expect("insert");
        assert_eq!(
            store.credentials(&alice()).await.err(),
            Some(StorageError::Corrupt(
                "unknown hash \"SCRAM-MD5\" in keys of alice@example.org".to_owned()
            ))
        );
    }

    #[tokio::test]
    async fn negative_iteration_count_is_corrupt() {
        let store = memory_store();
        store
            .create_account(&alice(), &StoredCredentials::default())
            .await
            .expect("create");
        raw_connection(&store)
            .execute(
                "INSERT INTO scram_keys VALUES (1, 'SCRAM-SHA-256', x'00', -1, x'00', x'00')",
                [],
            )
            .expect("insert");
        assert_eq!(
            store.credentials(&alice()).await.err(),
            Some(StorageError::Corrupt(
                "iteration count -1 out of range in SCRAM-SHA-256 keys of alice@example.org"
                    .to_owned()
            ))
        );
    }

    #[tokio::test]
    async fn concurrent_creates_all_land() {
        let store = memory_store();
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let jid = BareJid::new(&format!("user{i:02}@example.org")).expect("valid JID");
                    store.create_account(&jid, &credentials(i)).await
                })
            })
            .collect();
        for task in tasks {
            task.await
                .expect("task completes")
                .expect("create succeeds");
        }
        let listed = store.list_accounts("example.org").await.expect("list");
        assert_eq!(listed.len(), 16);
        assert_eq!(
            listed.first().map(|jid| jid.to_string()),
            Some("user00@example.org".to_owned())
        );
        assert_eq!(
            listed.last().map(|jid| jid.to_string()),
            Some("user15@example.org".to_owned())
        );
    }
}
