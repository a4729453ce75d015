//! The PostgreSQL implementation of [`AccountStore`]: accounts and their SCRAM keys, with the
//! SQLite backend's semantics.

use jid::{BareJid, DomainPart, NodePart};
use starling_sasl::{KeyCoverage, ScramHashes, ScramKeys, StoredCredentials};
use tokio_postgres::GenericClient;

use super::pool::Connection;
use super::{PostgresStore, Statements, backend, lock_account};
use crate::scram_names::{
    KEY_COVERAGE_POSTGRES, hash_name, hash_rank, key_coverage_from_rows, parse_hash_name,
};
use crate::{AccountKey, AccountStore, StorageError};

impl AccountStore for PostgresStore {
    async fn create_account(
        &self,
        jid: &BareJid,
        creds: &StoredCredentials,
    ) -> Result<(), StorageError> {
        let key = AccountKey::of(jid).ok_or_else(|| StorageError::NoLocalpart(jid.clone()))?;
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        let tx = client
            .transaction()
            .await
            .map_err(backend("begin transaction"))?;
        // ON CONFLICT waits for a concurrent insert of the same name to finish, then inserts
        // nothing: no unique-violation error to tell apart from others.
        let insert = Connection::prepare(
            statements,
            &tx,
            "INSERT INTO accounts (host, username) VALUES ($1, $2)
             ON CONFLICT (host, username) DO NOTHING RETURNING id",
        )
        .await?;
        let row = tx
            .query_opt(&insert, &[&key.host, &key.username])
            .await
            .map_err(backend("insert account"))?;
        let Some(row) = row else {
            return Err(StorageError::AccountExists(jid.clone()));
        };
        let account_id: i64 = row.try_get(0).map_err(backend("read account id"))?;
        insert_keys(statements, &tx, account_id, creds).await?;
        tx.commit().await.map_err(backend("commit new account"))
    }

    async fn set_credentials(
        &self,
        jid: &BareJid,
        creds: &StoredCredentials,
    ) -> Result<(), StorageError> {
        let Some(key) = AccountKey::of(jid) else {
            return Err(StorageError::AccountNotFound(jid.clone()));
        };
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        let tx = client
            .transaction()
            .await
            .map_err(backend("begin transaction"))?;
        // FOR UPDATE holds off a concurrent delete or password change of this account until
        // this transaction ends, so the keys are replaced as one change.
        let select = Connection::prepare(
            statements,
            &tx,
            "SELECT id FROM accounts WHERE host = $1 AND username = $2 FOR UPDATE",
        )
        .await?;
        let row = tx
            .query_opt(&select, &[&key.host, &key.username])
            .await
            .map_err(backend("look up account"))?;
        let Some(row) = row else {
            return Err(StorageError::AccountNotFound(jid.clone()));
        };
        let account_id: i64 = row.try_get(0).map_err(backend("read account id"))?;
        let delete = Connection::prepare(
            statements,
            &tx,
            "DELETE FROM scram_keys WHERE account_id = $1",
        )
        .await?;
        tx.execute(&delete, &[&account_id])
            .await
            .map_err(backend("delete old scram keys"))?;
        insert_keys(statements, &tx, account_id, creds).await?;
        tx.commit().await.map_err(backend("commit new credentials"))
    }

    async fn delete_account(&self, jid: &BareJid) -> Result<(), StorageError> {
        let Some(key) = AccountKey::of(jid) else {
            return Err(StorageError::AccountNotFound(jid.clone()));
        };
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        // One statement is atomic on its own; the keys go with it through ON DELETE CASCADE.
        let delete = Connection::prepare(
            statements,
            &*client,
            "DELETE FROM accounts WHERE host = $1 AND username = $2",
        )
        .await?;
        let deleted = client
            .execute(&delete, &[&key.host, &key.username])
            .await
            .map_err(backend("delete account"))?;
        if deleted == 0 {
            return Err(StorageError::AccountNotFound(jid.clone()));
        }
        Ok(())
    }

    async fn credentials(&self, jid: &BareJid) -> Result<Option<StoredCredentials>, StorageError> {
        let Some(key) = AccountKey::of(jid) else {
            return Ok(None);
        };
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        // One statement, so the account and its keys come from one snapshot. An account
        // without keys yields one row of NULLs from the LEFT JOIN.
        let select = Connection::prepare(
            statements,
            &*client,
            "SELECT k.hash, k.salt, k.iterations, k.stored_key, k.server_key
             FROM accounts a LEFT JOIN scram_keys k ON k.account_id = a.id
             WHERE a.host = $1 AND a.username = $2",
        )
        .await?;
        let rows = client
            .query(&select, &[&key.host, &key.username])
            .await
            .map_err(backend("query credentials"))?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut keys = Vec::new();
        for row in rows {
            let hash: Option<String> = row.try_get(0).map_err(backend("read hash name"))?;
            let Some(hash) = hash else {
                continue;
            };
            let parsed = parse_hash_name(&hash).ok_or_else(|| {
                StorageError::Corrupt(format!("unknown hash {hash:?} in keys of {jid}"))
            })?;
            let iterations: i64 = row.try_get(2).map_err(backend("read iteration count"))?;
            keys.push(ScramKeys {
                hash: parsed,
                salt: row.try_get(1).map_err(backend("read salt"))?,
                iterations: u32::try_from(iterations).map_err(|_| {
                    StorageError::Corrupt(format!(
                        "iteration count {iterations} out of range in {hash} keys of {jid}"
                    ))
                })?,
                stored_key: row.try_get(3).map_err(backend("read stored key"))?,
                server_key: row.try_get(4).map_err(backend("read server key"))?,
            });
        }
        keys.sort_by_key(|keys| hash_rank(keys.hash));
        Ok(Some(StoredCredentials { keys }))
    }

    async fn list_accounts(&self, host: &str) -> Result<Vec<BareJid>, StorageError> {
        let Ok(domain) = DomainPart::new(host).map(|domain| domain.into_owned()) else {
            return Ok(Vec::new());
        };
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        let select = Connection::prepare(
            statements,
            &*client,
            "SELECT username FROM accounts WHERE host = $1",
        )
        .await?;
        let rows = client
            .query(&select, &[&domain.as_str()])
            .await
            .map_err(backend("list accounts"))?;
        let mut accounts = Vec::with_capacity(rows.len());
        for row in rows {
            let username: String = row.try_get(0).map_err(backend("read username"))?;
            let node = NodePart::new(&username).map_err(|err| {
                StorageError::Corrupt(format!(
                    "stored username {username:?} on {domain} is not a valid localpart: {err}"
                ))
            })?;
            accounts.push(BareJid::from_parts(Some(&node), &domain));
        }
        // Sorted here rather than with ORDER BY: BareJid's order (of the whole "user@host"
        // string) is not the order of usernames alone, and collations differ between backends.
        accounts.sort();
        Ok(accounts)
    }

    async fn add_missing_keys(
        &self,
        jid: &BareJid,
        verified: &ScramKeys,
        added: &[ScramKeys],
    ) -> Result<ScramHashes, StorageError> {
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        let tx = client
            .transaction()
            .await
            .map_err(backend("begin transaction"))?;
        // The row lock holds off a concurrent password change until this transaction ends, so
        // the keys checked below are still the account's when the new ones land.
        let Some(account_id) = lock_account(statements, &tx, jid).await? else {
            return Ok(ScramHashes::NONE);
        };
        let check = Connection::prepare(
            statements,
            &tx,
            "SELECT 1 FROM scram_keys WHERE (account_id, hash, salt, iterations, stored_key,
             server_key) = ($1, $2, $3, $4, $5, $6)",
        )
        .await?;
        let (name, iterations) = (hash_name(verified.hash), i64::from(verified.iterations));
        let still_verified = tx
            .query_opt(&check, &key_row(&account_id, &name, &iterations, verified))
            .await
            .map_err(backend("look up verified keys"))?
            .is_some();
        if !still_verified {
            return Ok(ScramHashes::NONE);
        }
        let stored =
            insert_key_rows(statements, &tx, account_id, added, INSERT_MISSING_KEYS).await?;
        tx.commit().await.map_err(backend("commit added keys"))?;
        Ok(stored)
    }

    async fn key_coverage(&self, host: &str) -> Result<KeyCoverage, StorageError> {
        let Ok(domain) = DomainPart::new(host).map(|domain| domain.into_owned()) else {
            return Ok(KeyCoverage::default());
        };
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        let select = Connection::prepare(statements, &*client, KEY_COVERAGE_POSTGRES).await?;
        let rows = client
            .query(&select, &[&domain.as_str()])
            .await
            .map_err(backend("count keys"))?;
        let mut counts = Vec::with_capacity(rows.len());
        for row in rows {
            counts.push((
                row.try_get::<_, String>(0)
                    .map_err(backend("read hash name"))?,
                row.try_get::<_, i64>(1)
                    .map_err(backend("read key count"))?,
            ));
        }
        key_coverage_from_rows(domain.as_str(), counts)
    }
}

/// Inserts one row per key; a hash the account already has is an error.
const INSERT_KEYS: &str =
    "INSERT INTO scram_keys (account_id, hash, salt, iterations, stored_key, server_key)
     VALUES ($1, $2, $3, $4, $5, $6)";

/// Inserts one row per key for the hashes the account does not have yet.
const INSERT_MISSING_KEYS: &str =
    "INSERT INTO scram_keys (account_id, hash, salt, iterations, stored_key, server_key)
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (account_id, hash) DO NOTHING";

pub(super) async fn insert_keys(
    statements: &mut Statements,
    tx: &impl GenericClient,
    account_id: i64,
    creds: &StoredCredentials,
) -> Result<(), StorageError> {
    insert_key_rows(statements, tx, account_id, &creds.keys, INSERT_KEYS)
        .await
        .map(drop)
}

/// Runs `sql` (one of the inserts above) for each of `keys`; returns the hashes it inserted.
async fn insert_key_rows(
    statements: &mut Statements,
    tx: &impl GenericClient,
    account_id: i64,
    keys: &[ScramKeys],
    sql: &'static str,
) -> Result<ScramHashes, StorageError> {
    let insert = Connection::prepare(statements, tx, sql).await?;
    let mut inserted = ScramHashes::NONE;
    for keys in keys {
        let (name, iterations) = (hash_name(keys.hash), i64::from(keys.iterations));
        let rows = tx
            .execute(&insert, &key_row(&account_id, &name, &iterations, keys))
            .await
            .map_err(backend(&format!("insert {name} keys")))?;
        if rows > 0 {
            inserted = inserted.with(keys.hash);
        }
    }
    Ok(inserted)
}

/// The six columns of a `scram_keys` row, in table order, as statement parameters.
fn key_row<'a>(
    account_id: &'a i64,
    name: &'a &'static str,
    iterations: &'a i64,
    keys: &'a ScramKeys,
) -> [&'a (dyn tokio_postgres::types::ToSql + Sync); 6] {
    [
        account_id,
        name,
        &keys.salt,
        iterations,
        &keys.stored_key,
        &keys.server_key,
    ]
}
