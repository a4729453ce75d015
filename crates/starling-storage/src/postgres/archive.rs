//! The PostgreSQL implementation of [`ArchiveStore`], with the SQLite backend's schema,
//! statements and semantics (see `sqlite::archive`).
//!
//! Appends lock the owners' account rows in [`BareJid`] order, as every transaction that locks
//! several accounts does, so the usage read, checked against the quota and written back cannot
//! be raced by another node, and a batch cannot deadlock with one sharing its accounts. The
//! retention sweep removes one account's messages per transaction, holding one lock at a time.

use std::collections::HashMap;

use jid::BareJid;
use tokio_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::pool::Connection;
use super::{PostgresStore, Statements, backend, lock_account};
use crate::archive::{
    Appended, ArchiveFilter, ArchivePage, ArchiveQuota, ArchiveStore, ArchiveUsage,
    ArchivedMessage, PageFrom, Retention, WithFilter, lowest_id_at,
};
use crate::sqlite::archive::message_of;
use crate::{AccountKey, StorageError};

/// The columns [`read_message`] reads, in its order.
macro_rules! columns {
    () => {
        "archive_id, with_jid, with_resource, direction, origin_id, stanza"
    };
}

/// Restricts to one account: `$1` host, `$2` username.
macro_rules! owner_is {
    () => {
        "account_id = (SELECT id FROM accounts WHERE host = $1 AND username = $2)"
    };
}

/// As SQLite's `select_sql`: `$3`..`$4` the id range, then the limit (pages only), then the
/// contact's bare JID and resource when the filter names them.
fn select_sql(with: &Option<WithFilter>, from: Option<PageFrom>) -> &'static str {
    let with = match with {
        None => 0,
        Some(WithFilter { resource: None, .. }) => 1,
        Some(WithFilter {
            resource: Some(_), ..
        }) => 2,
    };
    macro_rules! page {
        ($order:literal, $with:literal) => {
            concat!(
                "SELECT ",
                columns!(),
                " FROM archive WHERE ",
                owner_is!(),
                " AND archive_id BETWEEN $3 AND $4",
                $with,
                " ORDER BY archive_id ",
                $order,
                " LIMIT $5"
            )
        };
    }
    macro_rules! count {
        ($with:literal) => {
            concat!(
                "SELECT count(*) FROM archive WHERE ",
                owner_is!(),
                " AND archive_id BETWEEN $3 AND $4",
                $with
            )
        };
    }
    match (from, with) {
        (Some(PageFrom::Oldest), 0) => page!("ASC", ""),
        (Some(PageFrom::Oldest), 1) => page!("ASC", " AND with_jid = $6"),
        (Some(PageFrom::Oldest), _) => page!("ASC", " AND with_jid = $6 AND with_resource = $7"),
        (Some(PageFrom::Newest), 0) => page!("DESC", ""),
        (Some(PageFrom::Newest), 1) => page!("DESC", " AND with_jid = $6"),
        (Some(PageFrom::Newest), _) => {
            page!("DESC", " AND with_jid = $6 AND with_resource = $7")
        }
        (None, 0) => count!(""),
        (None, 1) => count!(" AND with_jid = $5"),
        (None, _) => count!(" AND with_jid = $5 AND with_resource = $6"),
    }
}

impl ArchiveStore for PostgresStore {
    async fn archive_append(
        &self,
        messages: &[(BareJid, ArchivedMessage)],
        quota: ArchiveQuota,
    ) -> Result<Vec<Appended>, StorageError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        let tx = client
            .transaction()
            .await
            .map_err(backend("begin transaction"))?;
        let mut owners: Vec<&BareJid> = messages.iter().map(|(owner, _)| owner).collect();
        owners.sort();
        owners.dedup();
        let mut accounts: HashMap<&BareJid, (i64, Usage)> = HashMap::new();
        for owner in owners {
            if let Some(id) = lock_account(statements, &tx, owner).await? {
                let usage = read_usage(statements, &tx, id).await?;
                accounts.insert(owner, (id, usage));
            }
        }
        let insert = Connection::prepare(
            statements,
            &tx,
            "INSERT INTO archive
                 (account_id, archive_id, with_jid, with_resource, direction, origin_id, stanza)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (account_id, archive_id) DO NOTHING",
        )
        .await?;
        let mut outcomes = Vec::with_capacity(messages.len());
        for (owner, message) in messages {
            let Some((account, usage)) = accounts.get_mut(owner) else {
                outcomes.push(Appended::NoAccount);
                continue;
            };
            let size = message.stanza.len() as u64;
            if !quota.admits(u64::try_from(usage.bytes).unwrap_or(u64::MAX), size) {
                outcomes.push(Appended::QuotaExceeded);
                continue;
            }
            let inserted = tx
                .execute(
                    &insert,
                    &[
                        &*account,
                        &message.id.as_bytes().as_slice(),
                        &message.with.as_str(),
                        &message.with_resource,
                        &message.direction.code(),
                        &message.origin_id,
                        &message.stanza,
                    ],
                )
                .await
                .map_err(backend("archive message"))?;
            if inserted == 0 {
                outcomes.push(Appended::Duplicate);
                continue;
            }
            usage.messages += 1;
            usage.bytes = usage
                .bytes
                .saturating_add(i64::try_from(size).unwrap_or(i64::MAX));
            usage.oldest = Some(
                usage
                    .oldest
                    .map_or(message.id, |oldest| oldest.min(message.id)),
            );
            outcomes.push(Appended::Stored);
        }
        for (account, usage) in accounts.values() {
            write_usage(statements, &tx, *account, usage).await?;
        }
        tx.commit()
            .await
            .map_err(backend("commit archived messages"))?;
        Ok(outcomes)
    }

    async fn archive_page(
        &self,
        owner: &BareJid,
        filter: &ArchiveFilter,
        from: PageFrom,
        max: usize,
    ) -> Result<ArchivePage, StorageError> {
        let Some(key) = AccountKey::of(owner) else {
            return Ok(ArchivePage::default());
        };
        let Some((low, high)) = filter.id_range() else {
            return Ok(ArchivePage::default());
        };
        let limit = i64::try_from(max).unwrap_or(i64::MAX - 1) + 1;
        let (low, high) = (low.as_bytes().to_vec(), high.as_bytes().to_vec());
        let (bare, resource) = with_values(&filter.with);
        let mut values: Vec<&(dyn ToSql + Sync)> =
            vec![&key.host, &key.username, &low, &high, &limit];
        values.extend(bare.iter().map(|v| v as &(dyn ToSql + Sync)));
        values.extend(resource.iter().map(|v| v as &(dyn ToSql + Sync)));
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        let select =
            Connection::prepare(statements, &*client, select_sql(&filter.with, Some(from))).await?;
        let rows = client
            .query(&select, &values)
            .await
            .map_err(backend("query archive page"))?;
        let mut messages = rows
            .iter()
            .map(read_message)
            .collect::<Result<Vec<_>, _>>()?;
        let more = messages.len() > max;
        messages.truncate(max);
        if from == PageFrom::Newest {
            messages.reverse();
        }
        Ok(ArchivePage { messages, more })
    }

    async fn archive_count(
        &self,
        owner: &BareJid,
        filter: &ArchiveFilter,
    ) -> Result<u64, StorageError> {
        let Some(key) = AccountKey::of(owner) else {
            return Ok(0);
        };
        let Some((low, high)) = filter.id_range() else {
            return Ok(0);
        };
        let (low, high) = (low.as_bytes().to_vec(), high.as_bytes().to_vec());
        let (bare, resource) = with_values(&filter.with);
        let mut values: Vec<&(dyn ToSql + Sync)> = vec![&key.host, &key.username, &low, &high];
        values.extend(bare.iter().map(|v| v as &(dyn ToSql + Sync)));
        values.extend(resource.iter().map(|v| v as &(dyn ToSql + Sync)));
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        let count =
            Connection::prepare(statements, &*client, select_sql(&filter.with, None)).await?;
        let count: i64 = client
            .query_one(&count, &values)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(backend("count archived messages"))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn archive_get(
        &self,
        owner: &BareJid,
        ids: &[Uuid],
    ) -> Result<Vec<ArchivedMessage>, StorageError> {
        let Some(key) = AccountKey::of(owner) else {
            return Ok(Vec::new());
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Vec<u8>> = ids.iter().map(|id| id.as_bytes().to_vec()).collect();
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        let select = Connection::prepare(
            statements,
            &*client,
            concat!(
                "SELECT ",
                columns!(),
                " FROM archive WHERE ",
                owner_is!(),
                " AND archive_id = ANY($3) ORDER BY archive_id"
            ),
        )
        .await?;
        let rows = client
            .query(&select, &[&key.host, &key.username, &ids])
            .await
            .map_err(backend("look up archived messages"))?;
        rows.iter().map(read_message).collect()
    }

    async fn archive_bounds(&self, owner: &BareJid) -> Result<Option<(Uuid, Uuid)>, StorageError> {
        let Some(key) = AccountKey::of(owner) else {
            return Ok(None);
        };
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        // One statement, so both ends come from one snapshot.
        let select = Connection::prepare(
            statements,
            &*client,
            concat!(
                "SELECT (SELECT archive_id FROM archive WHERE ",
                owner_is!(),
                " ORDER BY archive_id ASC LIMIT 1), (SELECT archive_id FROM archive WHERE ",
                owner_is!(),
                " ORDER BY archive_id DESC LIMIT 1)"
            ),
        )
        .await?;
        let row = client
            .query_one(&select, &[&key.host, &key.username])
            .await
            .map_err(backend("read archive bounds"))?;
        let first: Option<Vec<u8>> = row.try_get(0).map_err(backend("read archive bounds"))?;
        let last: Option<Vec<u8>> = row.try_get(1).map_err(backend("read archive bounds"))?;
        let id = |bytes: Vec<u8>| {
            Uuid::from_slice(&bytes)
                .map_err(|_| StorageError::Corrupt(format!("archive id of {} bytes", bytes.len())))
        };
        Ok(match (first, last) {
            (Some(first), Some(last)) => Some((id(first)?, id(last)?)),
            _ => None,
        })
    }

    async fn archive_usage(&self, owner: &BareJid) -> Result<ArchiveUsage, StorageError> {
        let Some(key) = AccountKey::of(owner) else {
            return Ok(ArchiveUsage::default());
        };
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        let select = Connection::prepare(
            statements,
            &*client,
            concat!(
                "SELECT messages, bytes FROM archive_usage WHERE ",
                owner_is!()
            ),
        )
        .await?;
        let row = client
            .query_opt(&select, &[&key.host, &key.username])
            .await
            .map_err(backend("read archive usage"))?;
        let Some(row) = row else {
            return Ok(ArchiveUsage::default());
        };
        let messages: i64 = row.try_get(0).map_err(backend("read archive usage"))?;
        let bytes: i64 = row.try_get(1).map_err(backend("read archive usage"))?;
        Ok(ArchiveUsage {
            messages: u64::try_from(messages).unwrap_or(0),
            bytes: u64::try_from(bytes).unwrap_or(0),
        })
    }

    async fn archive_trim(
        &self,
        retention: Retention,
        max_rows: usize,
    ) -> Result<usize, StorageError> {
        if max_rows == 0 || (retention.before_ms.is_none() && retention.max_messages.is_none()) {
            return Ok(0);
        }
        let max = i64::try_from(max_rows).unwrap_or(i64::MAX);
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        // (account, id bound, rows) to remove: everything below the bound, at most that many.
        let mut work: Vec<(i64, Uuid, usize)> = Vec::new();
        if let Some(before_ms) = retention.before_ms {
            let cut = lowest_id_at(before_ms);
            let select = Connection::prepare(
                statements,
                &*client,
                "SELECT account_id FROM archive_usage WHERE oldest < $1 ORDER BY oldest LIMIT $2",
            )
            .await?;
            let rows = client
                .query(&select, &[&cut.as_bytes().as_slice(), &max])
                .await
                .map_err(backend("find expired archives"))?;
            for row in rows {
                let account: i64 = row.try_get(0).map_err(backend("find expired archives"))?;
                work.push((account, cut, max_rows));
            }
        }
        if let Some(max_messages) = retention.max_messages {
            let max_messages = i64::try_from(max_messages).unwrap_or(i64::MAX);
            let select = Connection::prepare(
                statements,
                &*client,
                "SELECT account_id, messages - $1 FROM archive_usage WHERE messages > $1
                 ORDER BY account_id LIMIT $2",
            )
            .await?;
            let rows = client
                .query(&select, &[&max_messages, &max])
                .await
                .map_err(backend("find full archives"))?;
            for row in rows {
                let account: i64 = row.try_get(0).map_err(backend("find full archives"))?;
                let excess: i64 = row.try_get(1).map_err(backend("find full archives"))?;
                work.push((
                    account,
                    Uuid::max(),
                    usize::try_from(excess).unwrap_or(usize::MAX),
                ));
            }
        }
        let mut remaining = max_rows;
        for (account, below, rows) in work {
            if remaining == 0 {
                break;
            }
            let take = rows.min(remaining);
            let removed = trim_account(statements, client, account, below, take).await?;
            remaining -= removed.min(remaining);
        }
        Ok(max_rows - remaining)
    }

    async fn archive_mark_pending(
        &self,
        owner: &BareJid,
        id: &Uuid,
        quota: crate::OfflineQuota,
    ) -> Result<bool, StorageError> {
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        let tx = client
            .transaction()
            .await
            .map_err(backend("begin transaction"))?;
        // The account's lock, as push_offline takes it: the count below stays true.
        let Some(account) = lock_account(statements, &tx, owner).await? else {
            return Ok(false);
        };
        let select = Connection::prepare(
            statements,
            &tx,
            "SELECT octet_length(stanza)::bigint, pending FROM archive
             WHERE account_id = $1 AND archive_id = $2",
        )
        .await?;
        let row = tx
            .query_opt(&select, &[&account, &id.as_bytes().as_slice()])
            .await
            .map_err(backend("look up archived message"))?;
        let Some(row) = row else {
            return Ok(false);
        };
        let size: i64 = row
            .try_get(0)
            .map_err(backend("look up archived message"))?;
        let pending: bool = row
            .try_get(1)
            .map_err(backend("look up archived message"))?;
        if pending {
            return Ok(true);
        }
        let (count, bytes) = super::offline::offline_usage(statements, &tx, account).await?;
        if !quota.admits(count, bytes, usize::try_from(size).unwrap_or(usize::MAX)) {
            return Ok(false);
        }
        let mark = Connection::prepare(
            statements,
            &tx,
            "UPDATE archive SET pending = true WHERE account_id = $1 AND archive_id = $2",
        )
        .await?;
        tx.execute(&mark, &[&account, &id.as_bytes().as_slice()])
            .await
            .map_err(backend("mark archived message pending"))?;
        tx.commit().await.map_err(backend("commit pending mark"))?;
        Ok(true)
    }
}

/// Remove up to `take` of `account`'s oldest messages below `below`, in one transaction holding
/// that account's row lock; returns how many went.
async fn trim_account(
    statements: &mut Statements,
    client: &mut tokio_postgres::Client,
    account: i64,
    below: Uuid,
    take: usize,
) -> Result<usize, StorageError> {
    let tx = client
        .transaction()
        .await
        .map_err(backend("begin transaction"))?;
    let lock = Connection::prepare(
        statements,
        &tx,
        "SELECT id FROM accounts WHERE id = $1 FOR NO KEY UPDATE",
    )
    .await?;
    if tx
        .query_opt(&lock, &[&account])
        .await
        .map_err(backend("lock account"))?
        .is_none()
    {
        return Ok(0);
    }
    let delete = Connection::prepare(
        statements,
        &tx,
        "DELETE FROM archive WHERE id IN (
             SELECT id FROM archive WHERE account_id = $1 AND archive_id < $2
             ORDER BY archive_id LIMIT $3)
         RETURNING octet_length(stanza)::bigint",
    )
    .await?;
    let rows = tx
        .query(
            &delete,
            &[
                &account,
                &below.as_bytes().as_slice(),
                &i64::try_from(take).unwrap_or(i64::MAX),
            ],
        )
        .await
        .map_err(backend("remove expired archived messages"))?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut bytes = 0i64;
    for row in &rows {
        let size: i64 = row
            .try_get(0)
            .map_err(backend("remove expired archived messages"))?;
        bytes += size;
    }
    let mut usage = read_usage(statements, &tx, account).await?;
    usage.messages -= i64::try_from(rows.len()).unwrap_or(i64::MAX);
    usage.bytes -= bytes;
    let oldest = Connection::prepare(
        statements,
        &tx,
        "SELECT archive_id FROM archive WHERE account_id = $1 ORDER BY archive_id LIMIT 1",
    )
    .await?;
    usage.oldest = tx
        .query_opt(&oldest, &[&account])
        .await
        .map_err(backend("read oldest archived message"))?
        .map(|row| row.try_get::<_, Vec<u8>>(0))
        .transpose()
        .map_err(backend("read oldest archived message"))?
        .and_then(|bytes| Uuid::from_slice(&bytes).ok());
    write_usage(statements, &tx, account, &usage).await?;
    tx.commit()
        .await
        .map_err(backend("commit archive retention"))?;
    Ok(rows.len())
}

/// The bare JID and resource a `with` filter binds, as text.
fn with_values(with: &Option<WithFilter>) -> (Option<String>, Option<String>) {
    match with {
        None => (None, None),
        Some(with) => (Some(with.bare.to_string()), with.resource.clone()),
    }
}

fn read_message(row: &tokio_postgres::Row) -> Result<ArchivedMessage, StorageError> {
    let read = backend("read archived message");
    let id: Vec<u8> = row.try_get(0).map_err(read)?;
    let with: String = row.try_get(1).map_err(backend("read archived message"))?;
    let with_resource: Option<String> = row.try_get(2).map_err(backend("read archived message"))?;
    let direction: i16 = row.try_get(3).map_err(backend("read archived message"))?;
    let origin_id: Option<String> = row.try_get(4).map_err(backend("read archived message"))?;
    let stanza: String = row.try_get(5).map_err(backend("read archived message"))?;
    message_of(
        &id,
        &with,
        with_resource,
        i64::from(direction),
        origin_id,
        stanza,
    )
}

/// An account's usage as kept in `archive_usage` (zero without a row).
#[derive(Debug, Clone, Copy)]
struct Usage {
    messages: i64,
    bytes: i64,
    oldest: Option<Uuid>,
}

async fn read_usage(
    statements: &mut Statements,
    tx: &impl GenericClient,
    account: i64,
) -> Result<Usage, StorageError> {
    let select = Connection::prepare(
        statements,
        tx,
        "SELECT messages, bytes, oldest FROM archive_usage WHERE account_id = $1",
    )
    .await?;
    let row = tx
        .query_opt(&select, &[&account])
        .await
        .map_err(backend("read archive usage"))?;
    let Some(row) = row else {
        return Ok(Usage {
            messages: 0,
            bytes: 0,
            oldest: None,
        });
    };
    let oldest: Option<Vec<u8>> = row.try_get(2).map_err(backend("read archive usage"))?;
    Ok(Usage {
        messages: row.try_get(0).map_err(backend("read archive usage"))?,
        bytes: row.try_get(1).map_err(backend("read archive usage"))?,
        oldest: oldest.and_then(|bytes| Uuid::from_slice(&bytes).ok()),
    })
}

async fn write_usage(
    statements: &mut Statements,
    tx: &impl GenericClient,
    account: i64,
    usage: &Usage,
) -> Result<(), StorageError> {
    let upsert = Connection::prepare(
        statements,
        tx,
        "INSERT INTO archive_usage (account_id, messages, bytes, oldest) VALUES ($1, $2, $3, $4)
         ON CONFLICT (account_id) DO UPDATE SET
             messages = excluded.messages, bytes = excluded.bytes, oldest = excluded.oldest",
    )
    .await?;
    let oldest = usage.oldest.map(|id| id.as_bytes().to_vec());
    tx.execute(&upsert, &[&account, &usage.messages, &usage.bytes, &oldest])
        .await
        .map_err(backend("write archive usage"))?;
    Ok(())
}
