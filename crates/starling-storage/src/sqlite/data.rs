//! The SQLite implementation of [`AccountDataStore`].

use jid::BareJid;
use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteStore, account_id, backend, write_transaction};
use crate::StorageError;
use crate::data::{AccountDataStore, DataChange, DataQuota};

impl AccountDataStore for SqliteStore {
    async fn data_get(
        &self,
        account: &BareJid,
        store: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let Some(node) = account.node().map(|node| node.as_str().to_owned()) else {
            return Ok(None);
        };
        let host = account.domain().as_str().to_owned();
        let (store, key) = (store.to_owned(), key.to_owned());
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT d.value FROM account_data d JOIN accounts a ON a.id = d.account_id
                 WHERE a.host = ?1 AND a.username = ?2 AND d.store = ?3 AND d.key = ?4",
            )
            .and_then(|mut stmt| stmt.query_row(params![host, node, store, key], |row| row.get(0)))
            .optional()
            .map_err(backend("read account data"))
        })
        .await
    }

    async fn data_list(
        &self,
        account: &BareJid,
        store: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let Some(node) = account.node().map(|node| node.as_str().to_owned()) else {
            return Ok(Vec::new());
        };
        let host = account.domain().as_str().to_owned();
        let store = store.to_owned();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT d.key, d.value FROM account_data d JOIN accounts a ON a.id = d.account_id
                     WHERE a.host = ?1 AND a.username = ?2 AND d.store = ?3 ORDER BY d.key",
                )
                .map_err(backend("prepare account data query"))?;
            let rows = stmt
                .query_map(params![host, node, store], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .map_err(backend("query account data"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(backend("read account data"))
        })
        .await
    }

    async fn data_apply(
        &self,
        account: &BareJid,
        store: &str,
        changes: &[DataChange],
        quota: DataQuota,
    ) -> Result<bool, StorageError> {
        let (owner, store, changes) = (account.clone(), store.to_owned(), changes.to_vec());
        self.with_conn(move |conn| {
            // IMMEDIATE: the one writer, so the usage counted here stays true until commit.
            let tx = write_transaction(conn)?;
            let account = account_id(&tx, &owner)?
                .ok_or_else(|| StorageError::AccountNotFound(owner.clone()))?;
            let before = usage(&tx, account, &store)?;
            for change in &changes {
                apply_one(&tx, account, &store, change)?;
            }
            let after = usage(&tx, account, &store)?;
            if !quota.admits(before, after) {
                // Dropping the transaction rolls every change back.
                return Ok(false);
            }
            tx.commit().map_err(backend("commit account data"))?;
            Ok(true)
        })
        .await
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
        let (store, key, entries) = (store.to_owned(), key.to_owned(), entries.to_vec());
        self.with_conn(move |conn| {
            let tx = write_transaction(conn)?;
            let mut written = 0;
            for (owner, value) in entries {
                let Some(account) = account_id(&tx, &owner)? else {
                    continue;
                };
                let put = DataChange::Put {
                    key: key.clone(),
                    value,
                };
                apply_one(&tx, account, &store, &put)?;
                written += 1;
            }
            tx.commit().map_err(backend("commit account data"))?;
            Ok(written)
        })
        .await
    }
}

fn apply_one(
    conn: &Connection,
    account: i64,
    store: &str,
    change: &DataChange,
) -> Result<(), StorageError> {
    match change {
        DataChange::Put { key, value } => conn
            .prepare_cached(
                "INSERT INTO account_data (account_id, store, key, value) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (account_id, store, key) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut stmt| stmt.execute(params![account, store, key, value]))
            .map_err(backend("store account data")),
        DataChange::Remove { key } => conn
            .prepare_cached(
                "DELETE FROM account_data WHERE account_id = ?1 AND store = ?2 AND key = ?3",
            )
            .and_then(|mut stmt| stmt.execute(params![account, store, key]))
            .map_err(backend("remove account data")),
        DataChange::Clear => conn
            .prepare_cached("DELETE FROM account_data WHERE account_id = ?1 AND store = ?2")
            .and_then(|mut stmt| stmt.execute(params![account, store]))
            .map_err(backend("clear account data")),
    }
    .map(|_rows| ())
}

/// (keys, bytes of keys and values) of one store of `account`. Bytes, not characters:
/// `length` of a BLOB counts bytes.
fn usage(conn: &Connection, account: i64, store: &str) -> Result<(i64, i64), StorageError> {
    conn.prepare_cached(
        "SELECT COUNT(*), COALESCE(SUM(length(CAST(key AS BLOB)) + length(value)), 0)
         FROM account_data WHERE account_id = ?1 AND store = ?2",
    )
    .and_then(|mut stmt| {
        stmt.query_row(params![account, store], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
    })
    .map_err(backend("count account data"))
}

#[cfg(test)]
mod tests {
    use crate::sqlite::tests::memory_store;

    crate::data_tests::account_data_store_tests!(memory_store());

    mod on_file {
        use crate::sqlite::tests::file_store;
        crate::data_tests::account_data_store_tests!(file_store().store);
    }
}
