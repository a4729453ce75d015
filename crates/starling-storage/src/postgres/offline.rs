//! The PostgreSQL implementation of [`OfflineStore`] (XEP-0160), with the SQLite backend's
//! schema and semantics (offline copies and pending archive rows together, see
//! `sqlite::offline`): `push_offline` locks the account row first (see `roster`), so its
//! count-then-insert cannot be raced past the quota.

use jid::BareJid;

use tokio_postgres::GenericClient;

use super::pool::Connection;
use super::{PostgresStore, Statements, backend, lock_account};
use crate::archive::PENDING_ID;
use crate::roster::{OfflineMessage, OfflineQuota, OfflineStore, StoredOffline};
use crate::sqlite::offline::{merge_page, pending_message};
use crate::{AccountKey, StorageError};

impl OfflineStore for PostgresStore {
    async fn push_offline(
        &self,
        owner: &BareJid,
        message: &OfflineMessage,
        quota: OfflineQuota,
    ) -> Result<bool, StorageError> {
        let stored_at = i64::try_from(message.stored_at_unix_ms).map_err(|_| {
            StorageError::Backend("offline message timestamp out of range".to_owned())
        })?;
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        let tx = client
            .transaction()
            .await
            .map_err(backend("begin transaction"))?;
        // The lock makes count-then-insert atomic: a concurrent push for this account waits
        // here until this transaction ends, then counts this message too.
        let Some(account) = lock_account(statements, &tx, owner).await? else {
            return Err(StorageError::AccountNotFound(owner.clone()));
        };
        let (count, bytes) = offline_usage(statements, &tx, account).await?;
        if !quota.admits(count, bytes, message.stanza.len()) {
            return Ok(false);
        }
        let insert = Connection::prepare(
            statements,
            &tx,
            "INSERT INTO offline_messages (account_id, stored_at_ms, stanza) VALUES ($1, $2, $3)",
        )
        .await?;
        tx.execute(&insert, &[&account, &stored_at, &message.stanza])
            .await
            .map_err(backend("store offline message"))?;
        tx.commit()
            .await
            .map_err(backend("commit offline message"))?;
        Ok(true)
    }

    async fn offline_page(
        &self,
        owner: &BareJid,
        max: usize,
    ) -> Result<Vec<StoredOffline>, StorageError> {
        let Some(key) = AccountKey::of(owner) else {
            return Ok(Vec::new());
        };
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        let select = Connection::prepare(
            statements,
            &*client,
            "SELECT o.id, o.stored_at_ms, o.stanza
             FROM offline_messages o JOIN accounts a ON a.id = o.account_id
             WHERE a.host = $1 AND a.username = $2 ORDER BY o.id LIMIT $3",
        )
        .await?;
        let pending = Connection::prepare(
            statements,
            &*client,
            "SELECT r.id, r.archive_id, r.stanza
             FROM archive r JOIN accounts a ON a.id = r.account_id
             WHERE a.host = $1 AND a.username = $2 AND r.pending
             ORDER BY r.archive_id LIMIT $3",
        )
        .await?;
        // One snapshot for both kinds of row.
        let tx = client
            .build_transaction()
            .read_only(true)
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .start()
            .await
            .map_err(backend("begin offline page read"))?;
        let rows = tx
            .query(&select, &[&key.host, &key.username, &max])
            .await
            .map_err(backend("query offline messages"))?;
        let mut page = rows
            .iter()
            .map(|row| {
                let id: i64 = row.try_get(0).map_err(backend("read offline message"))?;
                let stored_at: i64 = row.try_get(1).map_err(backend("read offline message"))?;
                let stanza = row.try_get(2).map_err(backend("read offline message"))?;
                Ok(StoredOffline {
                    id: u64::try_from(id)
                        .ok()
                        .filter(|id| *id < PENDING_ID)
                        .ok_or_else(|| StorageError::Corrupt(format!("offline message id {id}")))?,
                    message: OfflineMessage {
                        stored_at_unix_ms: u64::try_from(stored_at).map_err(|_| {
                            StorageError::Corrupt(format!(
                                "negative offline message time {stored_at}"
                            ))
                        })?,
                        stanza,
                    },
                })
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        let rows = tx
            .query(&pending, &[&key.host, &key.username, &max])
            .await
            .map_err(backend("query pending archived messages"))?;
        for row in &rows {
            let read = || backend("read pending archived message");
            let row_id: i64 = row.try_get(0).map_err(read())?;
            let archive_id: Vec<u8> = row.try_get(1).map_err(read())?;
            page.push(pending_message(
                row_id,
                &archive_id,
                row.try_get(2).map_err(read())?,
            )?);
        }
        tx.commit()
            .await
            .map_err(backend("end offline page read"))?;
        Ok(merge_page(page, usize::try_from(max).unwrap_or(0)))
    }

    async fn remove_offline(&self, owner: &BareJid, ids: &[u64]) -> Result<usize, StorageError> {
        let Some(key) = AccountKey::of(owner) else {
            return Ok(0);
        };
        // An id past i64 was never handed out.
        let (copies, pending): (Vec<u64>, Vec<u64>) = ids.iter().partition(|&&id| id < PENDING_ID);
        let copies: Vec<i64> = copies
            .into_iter()
            .filter_map(|id| i64::try_from(id).ok())
            .collect();
        let pending: Vec<i64> = pending
            .into_iter()
            .filter_map(|id| i64::try_from(id - PENDING_ID).ok())
            .collect();
        if copies.is_empty() && pending.is_empty() {
            return Ok(0);
        }
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        // Each one statement: atomic, and only the owner's rows can match.
        let delete = Connection::prepare(
            statements,
            &*client,
            "DELETE FROM offline_messages
             WHERE account_id = (SELECT id FROM accounts WHERE host = $1 AND username = $2)
               AND id = ANY($3)",
        )
        .await?;
        let clear = Connection::prepare(
            statements,
            &*client,
            "UPDATE archive SET pending = false
             WHERE account_id = (SELECT id FROM accounts WHERE host = $1 AND username = $2)
               AND id = ANY($3) AND pending",
        )
        .await?;
        let mut removed = 0;
        if !copies.is_empty() {
            removed += client
                .execute(&delete, &[&key.host, &key.username, &copies])
                .await
                .map_err(backend("remove offline messages"))?;
        }
        if !pending.is_empty() {
            removed += client
                .execute(&clear, &[&key.host, &key.username, &pending])
                .await
                .map_err(backend("clear pending archived messages"))?;
        }
        Ok(usize::try_from(removed).unwrap_or(usize::MAX))
    }
}

/// (messages, bytes) kept offline for `account`: copies plus pending archive rows.
pub(super) async fn offline_usage(
    statements: &mut Statements,
    tx: &impl GenericClient,
    account: i64,
) -> Result<(i64, i64), StorageError> {
    let count = Connection::prepare(
        statements,
        tx,
        "SELECT
             (SELECT count(*) FROM offline_messages WHERE account_id = $1)
           + (SELECT count(*) FROM archive WHERE account_id = $1 AND pending),
             (SELECT coalesce(sum(octet_length(stanza)), 0) FROM offline_messages
                WHERE account_id = $1)::bigint
           + (SELECT coalesce(sum(octet_length(stanza)), 0) FROM archive
                WHERE account_id = $1 AND pending)::bigint",
    )
    .await?;
    let row = tx
        .query_one(&count, &[&account])
        .await
        .map_err(backend("count offline messages"))?;
    let count: i64 = row.try_get(0).map_err(backend("count offline messages"))?;
    let bytes: i64 = row.try_get(1).map_err(backend("count offline bytes"))?;
    Ok((count, bytes))
}
