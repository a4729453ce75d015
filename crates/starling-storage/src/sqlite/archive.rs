//! The SQLite implementation of [`ArchiveStore`] (XEP-0313 message archives).
//!
//! Every read is one statement on an index: (account, archive id) for pages, counts, bounds and
//! lookups by id, (account, with, archive id) when a query names a contact. The filter's time
//! and id bounds arrive as one inclusive id range (ids are time, see `crate::archive`), so a
//! page is a range scan from one end that stops after `max + 1` rows. Appends and the
//! retention sweep keep `archive_usage` in the same transaction as the rows they change.

use std::collections::HashMap;

use jid::BareJid;
use rusqlite::types::ToSql;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use uuid::Uuid;

use super::offline::offline_usage;
use super::{SqliteStore, account_id, backend, write_transaction};
use crate::archive::{
    Appended, ArchiveFilter, ArchivePage, ArchiveQuota, ArchiveStore, ArchiveUsage,
    ArchivedMessage, Direction, PageFrom, Retention, WithFilter, lowest_id_at,
};
use crate::{OfflineQuota, StorageError};

/// The columns [`read_message`] reads, in its order.
macro_rules! columns {
    () => {
        "archive_id, with_jid, with_resource, direction, origin_id, stanza"
    };
}

/// Restricts to one account: `?1` host, `?2` username.
macro_rules! owner_is {
    () => {
        "account_id = (SELECT id FROM accounts WHERE host = ?1 AND username = ?2)"
    };
}

/// The statement of a page or count: `?3`..`?4` the id range, then the limit (pages only),
/// then the contact's bare JID and resource when the filter names them.
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
                " AND archive_id BETWEEN ?3 AND ?4",
                $with,
                " ORDER BY archive_id ",
                $order,
                " LIMIT ?5"
            )
        };
    }
    macro_rules! count {
        ($with:literal) => {
            concat!(
                "SELECT COUNT(*) FROM archive WHERE ",
                owner_is!(),
                " AND archive_id BETWEEN ?3 AND ?4",
                $with
            )
        };
    }
    match (from, with) {
        (Some(PageFrom::Oldest), 0) => page!("ASC", ""),
        (Some(PageFrom::Oldest), 1) => page!("ASC", " AND with_jid = ?6"),
        (Some(PageFrom::Oldest), _) => page!("ASC", " AND with_jid = ?6 AND with_resource = ?7"),
        (Some(PageFrom::Newest), 0) => page!("DESC", ""),
        (Some(PageFrom::Newest), 1) => page!("DESC", " AND with_jid = ?6"),
        (Some(PageFrom::Newest), _) => {
            page!("DESC", " AND with_jid = ?6 AND with_resource = ?7")
        }
        (None, 0) => count!(""),
        (None, 1) => count!(" AND with_jid = ?5"),
        (None, _) => count!(" AND with_jid = ?5 AND with_resource = ?6"),
    }
}

impl ArchiveStore for SqliteStore {
    async fn archive_append(
        &self,
        messages: &[(BareJid, ArchivedMessage)],
        quota: ArchiveQuota,
    ) -> Result<Vec<Appended>, StorageError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let messages = messages.to_vec();
        self.with_conn(move |conn| {
            let tx = write_transaction(conn)?;
            let outcomes = append_all(&tx, &messages, quota)?;
            tx.commit().map_err(backend("commit archived messages"))?;
            Ok(outcomes)
        })
        .await
    }

    async fn archive_page(
        &self,
        owner: &BareJid,
        filter: &ArchiveFilter,
        from: PageFrom,
        max: usize,
    ) -> Result<ArchivePage, StorageError> {
        let Some(node) = owner.node().map(|node| node.as_str().to_owned()) else {
            return Ok(ArchivePage::default());
        };
        let Some((low, high)) = filter.id_range() else {
            return Ok(ArchivePage::default());
        };
        let host = owner.domain().as_str().to_owned();
        let with = filter.with.clone();
        // One row past the page says whether more match.
        let limit = i64::try_from(max).unwrap_or(i64::MAX - 1) + 1;
        self.read(move |conn| {
            let sql = select_sql(&with, Some(from));
            let mut stmt = conn
                .prepare_cached(sql)
                .map_err(backend("prepare archive page query"))?;
            let (low, high) = (low.as_bytes().to_vec(), high.as_bytes().to_vec());
            let mut values: Vec<&dyn ToSql> = vec![&host, &node, &low, &high, &limit];
            let (bare, resource) = with_values(&with);
            values.extend(bare.iter().map(|v| v as &dyn ToSql));
            values.extend(resource.iter().map(|v| v as &dyn ToSql));
            let rows = stmt
                .query_map(values.as_slice(), read_message)
                .map_err(backend("query archive page"))?;
            let mut messages = rows
                .collect::<Result<Result<Vec<_>, StorageError>, _>>()
                .map_err(backend("read archived message"))??;
            let more = messages.len() > max;
            messages.truncate(max);
            if from == PageFrom::Newest {
                messages.reverse();
            }
            Ok(ArchivePage { messages, more })
        })
        .await
    }

    async fn archive_count(
        &self,
        owner: &BareJid,
        filter: &ArchiveFilter,
    ) -> Result<u64, StorageError> {
        let Some(node) = owner.node().map(|node| node.as_str().to_owned()) else {
            return Ok(0);
        };
        let Some((low, high)) = filter.id_range() else {
            return Ok(0);
        };
        let host = owner.domain().as_str().to_owned();
        let with = filter.with.clone();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(select_sql(&with, None))
                .map_err(backend("prepare archive count"))?;
            let (low, high) = (low.as_bytes().to_vec(), high.as_bytes().to_vec());
            let mut values: Vec<&dyn ToSql> = vec![&host, &node, &low, &high];
            let (bare, resource) = with_values(&with);
            values.extend(bare.iter().map(|v| v as &dyn ToSql));
            values.extend(resource.iter().map(|v| v as &dyn ToSql));
            let count: i64 = stmt
                .query_row(values.as_slice(), |row| row.get(0))
                .map_err(backend("count archived messages"))?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
        .await
    }

    async fn archive_get(
        &self,
        owner: &BareJid,
        ids: &[Uuid],
    ) -> Result<Vec<ArchivedMessage>, StorageError> {
        let Some(node) = owner.node().map(|node| node.as_str().to_owned()) else {
            return Ok(Vec::new());
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let host = owner.domain().as_str().to_owned();
        let ids = ids.to_vec();
        self.read(move |conn| {
            let tx = conn.transaction().map_err(backend("begin archive read"))?;
            let mut found = Vec::with_capacity(ids.len());
            {
                let mut stmt = tx
                    .prepare_cached(concat!(
                        "SELECT ",
                        columns!(),
                        " FROM archive WHERE ",
                        owner_is!(),
                        " AND archive_id = ?3"
                    ))
                    .map_err(backend("prepare archive lookup"))?;
                for id in ids {
                    let message = stmt
                        .query_row(params![host, node, id.as_bytes().as_slice()], read_message)
                        .optional()
                        .map_err(backend("look up archived message"))?;
                    if let Some(message) = message {
                        found.push(message?);
                    }
                }
            }
            found.sort_by_key(|message| message.id);
            found.dedup_by_key(|message| message.id);
            Ok(found)
        })
        .await
    }

    async fn archive_bounds(&self, owner: &BareJid) -> Result<Option<(Uuid, Uuid)>, StorageError> {
        let Some(node) = owner.node().map(|node| node.as_str().to_owned()) else {
            return Ok(None);
        };
        let host = owner.domain().as_str().to_owned();
        self.read(move |conn| {
            let tx = conn.transaction().map_err(backend("begin archive read"))?;
            let first = end_id(
                &tx,
                &host,
                &node,
                concat!(
                    "SELECT archive_id FROM archive WHERE ",
                    owner_is!(),
                    " ORDER BY archive_id ASC LIMIT 1"
                ),
            )?;
            let last = end_id(
                &tx,
                &host,
                &node,
                concat!(
                    "SELECT archive_id FROM archive WHERE ",
                    owner_is!(),
                    " ORDER BY archive_id DESC LIMIT 1"
                ),
            )?;
            Ok(first.zip(last))
        })
        .await
    }

    async fn archive_usage(&self, owner: &BareJid) -> Result<ArchiveUsage, StorageError> {
        let Some(node) = owner.node().map(|node| node.as_str().to_owned()) else {
            return Ok(ArchiveUsage::default());
        };
        let host = owner.domain().as_str().to_owned();
        self.read(move |conn| {
            let usage = conn
                .prepare_cached(concat!(
                    "SELECT messages, bytes FROM archive_usage WHERE ",
                    owner_is!()
                ))
                .and_then(|mut stmt| {
                    stmt.query_row(params![host, node], |row| {
                        Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
                    })
                    .optional()
                })
                .map_err(backend("read archive usage"))?;
            Ok(
                usage.map_or(ArchiveUsage::default(), |(messages, bytes)| ArchiveUsage {
                    messages: u64::try_from(messages).unwrap_or(0),
                    bytes: u64::try_from(bytes).unwrap_or(0),
                }),
            )
        })
        .await
    }

    async fn archive_trim(
        &self,
        retention: Retention,
        max_rows: usize,
    ) -> Result<usize, StorageError> {
        if max_rows == 0 || (retention.before_ms.is_none() && retention.max_messages.is_none()) {
            return Ok(0);
        }
        self.with_conn(move |conn| {
            let tx = write_transaction(conn)?;
            let removed = trim(&tx, retention, max_rows)?;
            tx.commit().map_err(backend("commit archive retention"))?;
            Ok(removed)
        })
        .await
    }

    async fn archive_mark_pending(
        &self,
        owner: &BareJid,
        id: &Uuid,
        quota: OfflineQuota,
    ) -> Result<bool, StorageError> {
        let (owner, id) = (owner.clone(), *id);
        self.with_conn(move |conn| {
            let tx = write_transaction(conn)?;
            let Some(account) = account_id(&tx, &owner)? else {
                return Ok(false);
            };
            let row: Option<(i64, i64)> = tx
                .prepare_cached(
                    "SELECT length(CAST(stanza AS BLOB)), pending FROM archive
                     WHERE account_id = ?1 AND archive_id = ?2",
                )
                .and_then(|mut stmt| {
                    stmt.query_row(params![account, id.as_bytes().as_slice()], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })
                    .optional()
                })
                .map_err(backend("look up archived message"))?;
            let Some((size, pending)) = row else {
                return Ok(false);
            };
            if pending == 1 {
                return Ok(true);
            }
            let (count, bytes) = offline_usage(&tx, account)?;
            if !quota.admits(count, bytes, usize::try_from(size).unwrap_or(usize::MAX)) {
                return Ok(false);
            }
            tx.prepare_cached(
                "UPDATE archive SET pending = 1 WHERE account_id = ?1 AND archive_id = ?2",
            )
            .and_then(|mut stmt| stmt.execute(params![account, id.as_bytes().as_slice()]))
            .map_err(backend("mark archived message pending"))?;
            tx.commit().map_err(backend("commit pending mark"))?;
            Ok(true)
        })
        .await
    }
}

/// The bare JID and resource a `with` filter binds, as text.
fn with_values(with: &Option<WithFilter>) -> (Option<String>, Option<String>) {
    match with {
        None => (None, None),
        Some(with) => (Some(with.bare.to_string()), with.resource.clone()),
    }
}

/// One row of [`columns!`] as a message; the inner error is a value this build cannot read.
fn read_message(row: &Row<'_>) -> rusqlite::Result<Result<ArchivedMessage, StorageError>> {
    let id: Vec<u8> = row.get(0)?;
    let with: String = row.get(1)?;
    let with_resource: Option<String> = row.get(2)?;
    let direction: i64 = row.get(3)?;
    let origin_id: Option<String> = row.get(4)?;
    let stanza: String = row.get(5)?;
    Ok(message_of(
        &id,
        &with,
        with_resource,
        direction,
        origin_id,
        stanza,
    ))
}

/// A stored row as a message, shared with the PostgreSQL backend.
pub(crate) fn message_of(
    id: &[u8],
    with: &str,
    with_resource: Option<String>,
    direction: i64,
    origin_id: Option<String>,
    stanza: String,
) -> Result<ArchivedMessage, StorageError> {
    Ok(ArchivedMessage {
        id: Uuid::from_slice(id)
            .map_err(|_| StorageError::Corrupt(format!("archive id of {} bytes", id.len())))?,
        with: BareJid::new(with)
            .map_err(|err| StorageError::Corrupt(format!("archived with JID {with:?}: {err}")))?,
        with_resource,
        direction: Direction::from_code(direction)?,
        origin_id,
        stanza,
    })
}

fn end_id(
    conn: &Connection,
    host: &str,
    node: &str,
    sql: &'static str,
) -> Result<Option<Uuid>, StorageError> {
    let bytes: Option<Vec<u8>> = conn
        .prepare_cached(sql)
        .and_then(|mut stmt| {
            stmt.query_row(params![host, node], |row| row.get(0))
                .optional()
        })
        .map_err(backend("read archive bounds"))?;
    bytes
        .map(|bytes| {
            Uuid::from_slice(&bytes)
                .map_err(|_| StorageError::Corrupt(format!("archive id of {} bytes", bytes.len())))
        })
        .transpose()
}

/// An account's usage as kept in `archive_usage` (zero without a row).
#[derive(Debug, Clone, Copy)]
struct Usage {
    messages: i64,
    bytes: i64,
    oldest: Option<Uuid>,
}

fn append_all(
    tx: &Transaction<'_>,
    messages: &[(BareJid, ArchivedMessage)],
    quota: ArchiveQuota,
) -> Result<Vec<Appended>, StorageError> {
    // Each owner's account and usage, read once per transaction and written back at the end.
    let mut accounts: HashMap<&BareJid, Option<(i64, Usage)>> = HashMap::new();
    let mut outcomes = Vec::with_capacity(messages.len());
    for (owner, message) in messages {
        let entry = match accounts.get_mut(owner) {
            Some(entry) => entry,
            None => {
                let found = match account_id(tx, owner)? {
                    Some(id) => Some((id, read_usage(tx, id)?)),
                    None => None,
                };
                accounts.entry(owner).or_insert(found)
            }
        };
        let Some((account, usage)) = entry else {
            outcomes.push(Appended::NoAccount);
            continue;
        };
        let account = *account;
        let size = message.stanza.len() as u64;
        if !quota.admits(u64::try_from(usage.bytes).unwrap_or(u64::MAX), size) {
            outcomes.push(Appended::QuotaExceeded);
            continue;
        }
        let inserted = tx
            .prepare_cached(
                "INSERT INTO archive
                     (account_id, archive_id, with_jid, with_resource, direction, origin_id, stanza)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (account_id, archive_id) DO NOTHING",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    account,
                    message.id.as_bytes().as_slice(),
                    message.with.as_str(),
                    message.with_resource,
                    message.direction.code(),
                    message.origin_id,
                    message.stanza,
                ])
            })
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
    for (account, usage) in accounts.values().flatten() {
        write_usage(tx, *account, usage)?;
    }
    Ok(outcomes)
}

fn read_usage(conn: &Connection, account: i64) -> Result<Usage, StorageError> {
    let row: Option<(i64, i64, Option<Vec<u8>>)> = conn
        .prepare_cached("SELECT messages, bytes, oldest FROM archive_usage WHERE account_id = ?1")
        .and_then(|mut stmt| {
            stmt.query_row(params![account], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .optional()
        })
        .map_err(backend("read archive usage"))?;
    Ok(match row {
        None => Usage {
            messages: 0,
            bytes: 0,
            oldest: None,
        },
        Some((messages, bytes, oldest)) => Usage {
            messages,
            bytes,
            oldest: oldest.and_then(|bytes| Uuid::from_slice(&bytes).ok()),
        },
    })
}

fn write_usage(conn: &Connection, account: i64, usage: &Usage) -> Result<(), StorageError> {
    conn.prepare_cached(
        "INSERT INTO archive_usage (account_id, messages, bytes, oldest) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (account_id) DO UPDATE SET
             messages = excluded.messages, bytes = excluded.bytes, oldest = excluded.oldest",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            account,
            usage.messages,
            usage.bytes,
            usage.oldest.map(|id| id.as_bytes().to_vec()),
        ])
    })
    .map_err(backend("write archive usage"))
    .map(|_| ())
}

fn trim(
    tx: &Transaction<'_>,
    retention: Retention,
    max_rows: usize,
) -> Result<usize, StorageError> {
    let mut remaining = max_rows;
    // (account, id bound, rows) to remove: everything below the bound, at most that many.
    let mut work: Vec<(i64, Uuid, usize)> = Vec::new();
    if let Some(before_ms) = retention.before_ms {
        let cut = lowest_id_at(before_ms);
        let mut stmt = tx
            .prepare_cached(
                "SELECT account_id FROM archive_usage WHERE oldest < ?1 ORDER BY oldest LIMIT ?2",
            )
            .map_err(backend("prepare retention query"))?;
        let accounts = stmt
            .query_map(
                params![
                    cut.as_bytes().as_slice(),
                    i64::try_from(max_rows).unwrap_or(i64::MAX)
                ],
                |row| row.get::<_, i64>(0),
            )
            .map_err(backend("find expired archives"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend("find expired archives"))?;
        work.extend(accounts.into_iter().map(|account| (account, cut, max_rows)));
    }
    if let Some(max_messages) = retention.max_messages {
        let max_messages = i64::try_from(max_messages).unwrap_or(i64::MAX);
        let mut stmt = tx
            .prepare_cached(
                "SELECT account_id, messages - ?1 FROM archive_usage WHERE messages > ?1
                 ORDER BY account_id LIMIT ?2",
            )
            .map_err(backend("prepare retention query"))?;
        let accounts = stmt
            .query_map(
                params![max_messages, i64::try_from(max_rows).unwrap_or(i64::MAX)],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
            )
            .map_err(backend("find full archives"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend("find full archives"))?;
        work.extend(accounts.into_iter().map(|(account, excess)| {
            (
                account,
                Uuid::max(),
                usize::try_from(excess).unwrap_or(usize::MAX),
            )
        }));
    }
    for (account, below, rows) in work {
        if remaining == 0 {
            break;
        }
        let take = rows.min(remaining);
        let sizes: Vec<i64> = tx
            .prepare_cached(
                "DELETE FROM archive WHERE id IN (
                     SELECT id FROM archive WHERE account_id = ?1 AND archive_id < ?2
                     ORDER BY archive_id LIMIT ?3)
                 RETURNING length(CAST(stanza AS BLOB))",
            )
            .and_then(|mut stmt| {
                stmt.query_map(
                    params![
                        account,
                        below.as_bytes().as_slice(),
                        i64::try_from(take).unwrap_or(i64::MAX)
                    ],
                    |row| row.get(0),
                )?
                .collect()
            })
            .map_err(backend("remove expired archived messages"))?;
        if sizes.is_empty() {
            continue;
        }
        remaining -= sizes.len().min(remaining);
        let mut usage = read_usage(tx, account)?;
        usage.messages -= i64::try_from(sizes.len()).unwrap_or(i64::MAX);
        usage.bytes -= sizes.iter().sum::<i64>();
        usage.oldest = tx
            .prepare_cached(
                "SELECT archive_id FROM archive WHERE account_id = ?1
                 ORDER BY archive_id LIMIT 1",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![account], |row| row.get::<_, Vec<u8>>(0))
                    .optional()
            })
            .map_err(backend("read oldest archived message"))?
            .and_then(|bytes| Uuid::from_slice(&bytes).ok());
        write_usage(tx, account, &usage)?;
    }
    Ok(max_rows - remaining)
}

#[cfg(test)]
mod tests {
    use crate::sqlite::tests::memory_store;

    crate::archive_tests::archive_store_tests!(memory_store());

    mod on_file {
        use crate::sqlite::tests::file_store;
        crate::archive_tests::archive_store_tests!(file_store().store);
    }
}
