//! The SQLite implementation of [`OfflineStore`] (XEP-0160): messages kept for accounts with
//! no available resource, under a per-account quota.
//!
//! Two kinds of row are offline messages: copies in `offline_messages` (messages that were not
//! archived) and archive rows marked `pending` (archived messages, whose one stored copy is the
//! archive's, see `crate::archive`). Quotas count both; pages merge both by time; ids at or
//! above [`PENDING_ID`] name archive rows.

use jid::BareJid;
use rusqlite::{Connection, params};

use super::{SqliteStore, account_id, backend, write_transaction};
use crate::StorageError;
use crate::archive::{PENDING_ID, timestamp_ms};
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
            let (count, bytes) = offline_usage(&tx, account)?;
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
            // One snapshot for both kinds of row.
            let tx = conn
                .transaction()
                .map_err(backend("begin offline page read"))?;
            let mut page = Vec::new();
            {
                let mut stmt = tx
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
                for row in rows {
                    let (id, stored_at, stanza) = row.map_err(backend("read offline message"))?;
                    let id = u64::try_from(id)
                        .ok()
                        .filter(|id| *id < PENDING_ID)
                        .ok_or_else(|| StorageError::Corrupt(format!("offline message id {id}")))?;
                    page.push(StoredOffline {
                        id,
                        message: OfflineMessage {
                            stored_at_unix_ms: u64::try_from(stored_at).unwrap_or(0),
                            stanza,
                        },
                    });
                }
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT r.id, r.archive_id, r.stanza
                         FROM archive r JOIN accounts a ON a.id = r.account_id
                         WHERE a.host = ?1 AND a.username = ?2 AND r.pending = 1
                         ORDER BY r.archive_id LIMIT ?3",
                    )
                    .map_err(backend("prepare pending archive query"))?;
                let rows = stmt
                    .query_map(params![host, node, max], |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            row.get::<_, Vec<u8>>(1)?,
                            row.get::<_, String>(2)?,
                        ))
                    })
                    .map_err(backend("query pending archived messages"))?;
                for row in rows {
                    let (row_id, archive_id, stanza) =
                        row.map_err(backend("read pending archived message"))?;
                    page.push(pending_message(row_id, &archive_id, stanza)?);
                }
            }
            Ok(merge_page(page, usize::try_from(max).unwrap_or(0)))
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
                let (sql, row) = if id >= PENDING_ID {
                    (
                        "UPDATE archive SET pending = 0
                         WHERE account_id = ?1 AND id = ?2 AND pending = 1",
                        id - PENDING_ID,
                    )
                } else {
                    (
                        "DELETE FROM offline_messages WHERE account_id = ?1 AND id = ?2",
                        id,
                    )
                };
                let Ok(row) = i64::try_from(row) else {
                    continue;
                };
                removed += tx
                    .prepare_cached(sql)
                    .and_then(|mut stmt| stmt.execute(params![account, row]))
                    .map_err(backend("remove offline message"))?;
            }
            tx.commit().map_err(backend("commit offline removal"))?;
            Ok(removed)
        })
        .await
    }
}

/// A pending archive row as an offline message: stored when it was archived.
pub(crate) fn pending_message(
    row_id: i64,
    archive_id: &[u8],
    stanza: String,
) -> Result<StoredOffline, StorageError> {
    let row = u64::try_from(row_id)
        .ok()
        .filter(|row| *row < PENDING_ID)
        .ok_or_else(|| StorageError::Corrupt(format!("archive row id {row_id}")))?;
    let archive_id = uuid::Uuid::from_slice(archive_id)
        .map_err(|_| StorageError::Corrupt(format!("archive id of {} bytes", archive_id.len())))?;
    Ok(StoredOffline {
        id: PENDING_ID + row,
        message: OfflineMessage {
            stored_at_unix_ms: timestamp_ms(&archive_id),
            stanza,
        },
    })
}

/// Offline copies and pending archive rows as one page: oldest first (copies first on a tie),
/// at most `max`.
pub(crate) fn merge_page(mut page: Vec<StoredOffline>, max: usize) -> Vec<StoredOffline> {
    page.sort_by_key(|stored| {
        (
            stored.message.stored_at_unix_ms,
            stored.id >= PENDING_ID,
            stored.id,
        )
    });
    page.truncate(max);
    page
}

/// (messages, bytes) kept offline for `account`: copies plus pending archive rows. Bytes of the
/// UTF-8 text, not characters: `length` of a BLOB counts bytes.
pub(crate) fn offline_usage(conn: &Connection, account: i64) -> Result<(i64, i64), StorageError> {
    conn.prepare_cached(
        "SELECT
             (SELECT COUNT(*) FROM offline_messages WHERE account_id = ?1)
           + (SELECT COUNT(*) FROM archive WHERE account_id = ?1 AND pending = 1),
             (SELECT COALESCE(SUM(length(CAST(stanza AS BLOB))), 0)
                FROM offline_messages WHERE account_id = ?1)
           + (SELECT COALESCE(SUM(length(CAST(stanza AS BLOB))), 0)
                FROM archive WHERE account_id = ?1 AND pending = 1)",
    )
    .and_then(|mut stmt| stmt.query_row(params![account], |row| Ok((row.get(0)?, row.get(1)?))))
    .map_err(backend("count offline messages"))
}

/// Whether any offline message is stored for `owner`.
pub(super) fn any_offline(conn: &Connection, owner: &BareJid) -> Result<bool, StorageError> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM offline_messages o JOIN accounts a ON a.id = o.account_id
                        WHERE a.host = ?1 AND a.username = ?2)
             OR EXISTS (SELECT 1 FROM archive r JOIN accounts a ON a.id = r.account_id
                        WHERE a.host = ?1 AND a.username = ?2 AND r.pending = 1)",
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

#[cfg(test)]
mod tests {
    use crate::account_tests::{credentials, jid};
    use crate::sqlite::tests::memory_store;
    use crate::{
        AccountStore as _, ArchiveQuota, ArchiveStore as _, ArchivedMessage, Direction,
        OfflineQuota, OfflineStore as _, RosterStore as _, id_at,
    };

    #[tokio::test]
    async fn a_pending_archive_row_means_offline_messages_wait() {
        let store = memory_store();
        let alice = jid("alice@localhost");
        store
            .create_account(&alice, &credentials(1))
            .await
            .expect("account");
        let message = ArchivedMessage {
            id: id_at(1000, [1; 10]),
            with: jid("bob@localhost"),
            with_resource: None,
            direction: Direction::Incoming,
            origin_id: None,
            stanza: "<message xmlns='jabber:client'/>".to_owned(),
        };
        store
            .archive_append(&[(alice.clone(), message.clone())], ArchiveQuota::UNLIMITED)
            .await
            .expect("append");
        let waiting = |store: &crate::SqliteStore| {
            let (store, alice) = (store.clone(), alice.clone());
            async move {
                store
                    .initial_presence(&alice)
                    .await
                    .expect("read")
                    .offline_waiting
            }
        };
        assert!(!waiting(&store).await, "archived is not waiting");
        store
            .archive_mark_pending(&alice, &message.id, OfflineQuota::messages(5))
            .await
            .expect("mark");
        assert!(waiting(&store).await);
        // A backup carries it as an offline message.
        let exported = crate::PortableStore::export_host(&store, "localhost")
            .await
            .expect("export");
        assert_eq!(
            exported[0].offline,
            vec![crate::OfflineMessage {
                stored_at_unix_ms: 1000,
                stanza: message.stanza.clone(),
            }]
        );
        let page = store.offline_page(&alice, 5).await.expect("page");
        store
            .remove_offline(&alice, &[page[0].id])
            .await
            .expect("remove");
        assert!(!waiting(&store).await);
    }
}
