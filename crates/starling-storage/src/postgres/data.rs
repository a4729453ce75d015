//! The PostgreSQL implementation of [`AccountDataStore`], with the SQLite backend's schema and
//! semantics.
//!
//! `data_apply` locks the account row first (as `push_offline` does, see `roster`), so two
//! writers of one account's data queue and the quota counted in one cannot be passed by the
//! other. Lists are sorted in Rust by [`String`]'s order, never with `ORDER BY` on text, whose
//! collation is the database's.

use jid::BareJid;
use tokio_postgres::GenericClient;

use super::pool::Connection;
use super::{PostgresStore, Statements, backend, lock_account};
use crate::data::{AccountDataStore, DataChange, DataQuota};
use crate::{AccountKey, StorageError};

impl AccountDataStore for PostgresStore {
    async fn data_get(
        &self,
        account: &BareJid,
        store: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let Some(account) = AccountKey::of(account) else {
            return Ok(None);
        };
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        let select = Connection::prepare(
            statements,
            &*client,
            "SELECT d.value FROM account_data d JOIN accounts a ON a.id = d.account_id
             WHERE a.host = $1 AND a.username = $2 AND d.store = $3 AND d.key = $4",
        )
        .await?;
        let row = client
            .query_opt(&select, &[&account.host, &account.username, &store, &key])
            .await
            .map_err(backend("read account data"))?;
        row.map(|row| row.try_get(0))
            .transpose()
            .map_err(backend("read account data"))
    }

    async fn data_list(
        &self,
        account: &BareJid,
        store: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let Some(account) = AccountKey::of(account) else {
            return Ok(Vec::new());
        };
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        let select = Connection::prepare(
            statements,
            &*client,
            "SELECT d.key, d.value FROM account_data d JOIN accounts a ON a.id = d.account_id
             WHERE a.host = $1 AND a.username = $2 AND d.store = $3",
        )
        .await?;
        let rows = client
            .query(&select, &[&account.host, &account.username, &store])
            .await
            .map_err(backend("query account data"))?;
        let mut entries = rows
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<Vec<(String, Vec<u8>)>, tokio_postgres::Error>>()
            .map_err(backend("read account data"))?;
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(entries)
    }

    async fn data_apply(
        &self,
        account: &BareJid,
        store: &str,
        changes: &[DataChange],
        quota: DataQuota,
    ) -> Result<bool, StorageError> {
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        let tx = client
            .transaction()
            .await
            .map_err(backend("begin transaction"))?;
        // The lock makes count-apply-count atomic: a concurrent writer of this account's data
        // waits here until this transaction ends, then counts what it wrote.
        let Some(id) = lock_account(statements, &tx, account).await? else {
            return Err(StorageError::AccountNotFound(account.clone()));
        };
        let before = usage(statements, &tx, id, store).await?;
        for change in changes {
            apply_one(statements, &tx, id, store, change).await?;
        }
        let after = usage(statements, &tx, id, store).await?;
        if !quota.admits(before, after) {
            tx.rollback()
                .await
                .map_err(backend("roll back account data"))?;
            return Ok(false);
        }
        tx.commit().await.map_err(backend("commit account data"))?;
        Ok(true)
    }

    async fn data_put_many(
        &self,
        store: &str,
        key: &str,
        entries: &[(BareJid, Vec<u8>)],
    ) -> Result<usize, StorageError> {
        if entries.is_empty() {
            return Ok(0);
        }
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        let tx = client
            .transaction()
            .await
            .map_err(backend("begin transaction"))?;
        // Locked in account order, as every transaction that locks several accounts does, so two
        // batches sharing accounts cannot deadlock.
        let mut order: Vec<&(BareJid, Vec<u8>)> = entries.iter().collect();
        order.sort_by(|a, b| a.0.cmp(&b.0));
        let mut written = 0;
        for (account, value) in order {
            let Some(id) = lock_account(statements, &tx, account).await? else {
                continue;
            };
            let put = DataChange::Put {
                key: key.to_owned(),
                value: value.clone(),
            };
            apply_one(statements, &tx, id, store, &put).await?;
            written += 1;
        }
        tx.commit().await.map_err(backend("commit account data"))?;
        Ok(written)
    }
}

async fn apply_one(
    statements: &mut Statements,
    tx: &impl GenericClient,
    account: i64,
    store: &str,
    change: &DataChange,
) -> Result<(), StorageError> {
    match change {
        DataChange::Put { key, value } => {
            let upsert = Connection::prepare(
                statements,
                tx,
                "INSERT INTO account_data (account_id, store, key, value) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (account_id, store, key) DO UPDATE SET value = excluded.value",
            )
            .await?;
            tx.execute(&upsert, &[&account, &store, key, value])
                .await
                .map_err(backend("store account data"))?;
        }
        DataChange::Remove { key } => {
            let delete = Connection::prepare(
                statements,
                tx,
                "DELETE FROM account_data WHERE account_id = $1 AND store = $2 AND key = $3",
            )
            .await?;
            tx.execute(&delete, &[&account, &store, key])
                .await
                .map_err(backend("remove account data"))?;
        }
        DataChange::Clear => {
            let delete = Connection::prepare(
                statements,
                tx,
                "DELETE FROM account_data WHERE account_id = $1 AND store = $2",
            )
            .await?;
            tx.execute(&delete, &[&account, &store])
                .await
                .map_err(backend("clear account data"))?;
        }
    }
    Ok(())
}

/// (keys, bytes of keys and values) of one store of `account`.
async fn usage(
    statements: &mut Statements,
    tx: &impl GenericClient,
    account: i64,
    store: &str,
) -> Result<(i64, i64), StorageError> {
    let count = Connection::prepare(
        statements,
        tx,
        "SELECT count(*), coalesce(sum(octet_length(key) + octet_length(value)), 0)::bigint
         FROM account_data WHERE account_id = $1 AND store = $2",
    )
    .await?;
    let row = tx
        .query_one(&count, &[&account, &store])
        .await
        .map_err(backend("count account data"))?;
    let keys: i64 = row.try_get(0).map_err(backend("count account data"))?;
    let bytes: i64 = row.try_get(1).map_err(backend("count account data"))?;
    Ok((keys, bytes))
}
