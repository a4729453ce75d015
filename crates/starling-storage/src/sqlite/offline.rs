//! The SQLite implementation of [`OfflineStore`] (XEP-0160): messages kept for accounts with
//! no available resource, under a per-account quota.

use jid::BareJid;
use rusqlite::{Connection, params};

use super::{SqliteStore, account_id, backend, write_transaction};
use crate::StorageError;
use crate::roster::{OfflineMessage, OfflineQuota, OfflineStore, StoredOffline};

impl OfflineStore for SqliteStore {
    async fn push_offline(
        &self,
        owner: &BareJid,
        message: &OfflineMessage,
        quota: OfflineQuota,
    ) -> Result<bool, StorageError> {
        let (owner, message) = (owner.clone(), message.clone());
        self.with_conn(move |conn| {
            let tx = write_transaction(conn)?;
            let account = account_id(&tx, &owner)?.ok_or_else(|| StorageError::AccountNotFound(owner.clone()))?;
            // Bytes of the UTF-8 text, not characters: `length` of a BLOB counts bytes.
            let (count, bytes): (i64, i64) = tx
                .prepare_cached(
                    "SELECT COUNT(*), COALESCE(SUM(length(CAST(stanza AS BLOB))), 0)
                     FROM offline_messages WHERE account_id = ?1",
                )
                .and_then(|mut stmt| stmt.query_row(params![account], |row| Ok((row.get(0)?, row.get(1)?))))
                .map_err(backend("count offline messages"))?;
            if !quota.admits(count, bytes, message.stanza.len()) {
                return Ok(false);
            }
            let stored_at = i64::try_from(message.stored_at_unix_ms)
                .map_err(|_| StorageError::Backend("offline message timestamp out of range".to_owned()))?;
            tx.prepare_cached("INSERT INTO offline_messages (account_id, stored_at_ms, stanza) VALUES (?1, ?2, ?3)")
            .and_then(|mut stmt| stmt.execute(params![account, stored_at, message.stanza],
            ))
            .map_err(backend("store offline message"))?;
            tx.commit().map_err(backend("commit offline message"))?;
            Ok(true)
        })
        .await
    }

    async fn offline_page(
        &self,
        owner: &BareJid,
        max: usize,
    ) -> Result<Vec<StoredOffline>, StorageError> {
        let Some(node) = owner.node().map(|node| node.as_str().to_owned()) else {
            return Ok(Vec::new());
        };
        let host = owner.domain().as_str().to_owned();
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT o.id, o.stored_at_ms, o.stanza
                     FROM offline_messages o JOIN accounts a ON a.id = o.account_id
                     WHERE a.host = ?1 AND a.username = ?2 ORDER BY o.id LIMIT ?3",
                )
                .map_err(backend("prepare offline page query"))?;
            let rows = stmt
                .query_map(params![host, node, max], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, String>(2)?,
                    ))
                })
                .map_err(backend("query offline messages"))?;
            let mut page = Vec::new();
            for row in rows {
                let (id, stored_at, stanza) = row.map_err(backend("read offline message"))?;
                page.push(StoredOffline {
                    id: u64::try_from(id).map_err(|_| {
                        StorageError::Corrupt(format!("negative offline message id {id}"))
                    })?,
                    message: OfflineMessage {
                        stored_at_unix_ms: u64::try_from(stored_at).unwrap_or(0),
                        stanza,
                    },
                });
            }
            Ok(page)
        })
        .await
    }

    async fn remove_offline(&self, owner: &BareJid, ids: &[u64]) -> Result<usize, StorageError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let (owner, ids) = (owner.clone(), ids.to_vec());
        self.with_conn(move |conn| {
            let tx = write_transaction(conn)?;
            let Some(account) = account_id(&tx, &owner)? else {
                return Ok(0);
            };
            let mut removed = 0;
            for id in ids {
                // An id past i64 was never handed out.
                let Ok(id) = i64::try_from(id) else { continue };
                removed += tx
                    .prepare_cached(
                        "DELETE FROM offline_messages WHERE account_id = ?1 AND id = ?2",
                    )
                    .and_then(|mut stmt| stmt.execute(params![account, id]))
                    .map_err(backend("remove offline message"))?;
            }
            tx.commit().map_err(backend("commit offline removal"))?;
            Ok(removed)
        })
        .await
    }
}

/// Whether any offline message is stored for `owner`.
pub(super) fn any_offline(conn: &Connection, owner: &BareJid) -> Result<bool, StorageError> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM offline_messages o JOIN accounts a ON a.id = o.account_id
         WHERE a.host = ?1 AND a.username = ?2)",
    )
    .and_then(|mut stmt| {
        stmt.query_row(
            params![
                owner.domain().as_str(),
                owner.node().map(|node| node.as_str())
            ],
            |row| row.get::<_, bool>(0),
        )
    })
    .map_err(backend("look for offline messages"))
}
