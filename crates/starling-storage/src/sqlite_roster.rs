//! The SQLite implementation of [`RosterStore`] and [`OfflineStore`].

use jid::BareJid;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::roster::{
    InitialPresence, OfflineMessage, OfflineQuota, OfflineStore, RosterChange, RosterItem,
    RosterStore, StoredOffline, Subscription,
};
use crate::sqlite::{backend, write_transaction};
use crate::{SqliteStore, StorageError};

/// Schema version 2: rosters, their versions and groups, pending inbound subscription requests
/// and offline messages, all owned by an account and deleted with it.
pub(crate) const SCHEMA_V2: &str = "
CREATE TABLE roster_versions (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    version    INTEGER NOT NULL
) STRICT;

CREATE TABLE roster_items (
    account_id   INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    contact      TEXT    NOT NULL,
    name         TEXT,
    subscription TEXT    NOT NULL,
    pending_out  INTEGER NOT NULL,
    approved     INTEGER NOT NULL,
    PRIMARY KEY (account_id, contact)
) STRICT;

CREATE TABLE roster_groups (
    account_id INTEGER NOT NULL,
    contact    TEXT    NOT NULL,
    position   INTEGER NOT NULL,
    name       TEXT    NOT NULL,
    PRIMARY KEY (account_id, contact, position),
    FOREIGN KEY (account_id, contact) REFERENCES roster_items (account_id, contact) ON DELETE CASCADE
) STRICT;

CREATE TABLE subscription_requests (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    contact    TEXT    NOT NULL,
    stanza     TEXT    NOT NULL,
    UNIQUE (account_id, contact)
) STRICT;

CREATE TABLE offline_messages (
    id           INTEGER PRIMARY KEY,
    account_id   INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    stored_at_ms INTEGER NOT NULL,
    stanza       TEXT    NOT NULL
) STRICT;

CREATE INDEX offline_messages_by_account ON offline_messages (account_id, id);
";

impl RosterStore for SqliteStore {
    async fn roster(&self, owner: &BareJid) -> Result<(u64, Vec<RosterItem>), StorageError> {
        let owner = owner.clone();
        self.read(move |conn| read_roster(conn, &owner)).await
    }

    async fn roster_item(
        &self,
        owner: &BareJid,
        contact: &BareJid,
    ) -> Result<Option<RosterItem>, StorageError> {
        let (owner, contact) = (owner.clone(), contact.clone());
        self.read(move |conn| match account_id(conn, &owner)? {
            Some(account) => load_item(conn, account, contact.as_str()),
            None => Ok(None),
        })
        .await
    }

    async fn apply(
        &self,
        changes: &[RosterChange],
        max_items: usize,
    ) -> Result<Vec<u64>, StorageError> {
        let changes = changes.to_vec();
        self.with_conn(move |conn| {
            // IMMEDIATE: the one writer, so an item count taken here stays true until commit.
            let tx = write_transaction(conn)?;
            let mut versions = Vec::with_capacity(changes.len());
            for change in &changes {
                versions.push(apply_one(&tx, change, max_items)?);
            }
            tx.commit().map_err(backend("commit roster change"))?;
            Ok(versions)
        })
        .await
    }

    async fn has_request(&self, owner: &BareJid, contact: &BareJid) -> Result<bool, StorageError> {
        let (owner, contact) = (owner.clone(), contact.clone());
        self.read(move |conn| {
            let Some(account) = account_id(conn, &owner)? else {
                return Ok(false);
            };
            conn.prepare_cached(
                "SELECT 1 FROM subscription_requests WHERE account_id = ?1 AND contact = ?2",
            )
            .and_then(|mut stmt| stmt.query_row(params![account, contact.as_str()], |_| Ok(())))
            .optional()
            .map(|found| found.is_some())
            .map_err(backend("query subscription request"))
        })
        .await
    }

    async fn requests(&self, owner: &BareJid) -> Result<Vec<(BareJid, String)>, StorageError> {
        let owner = owner.clone();
        self.read(move |conn| read_requests(conn, &owner)).await
    }

    async fn initial_presence(&self, owner: &BareJid) -> Result<InitialPresence, StorageError> {
        let owner = owner.clone();
        self.read(move |conn| {
            // One read transaction (one snapshot, one set of WAL-index lock calls) for the
            // three reads of a login.
            let tx = conn
                .transaction()
                .map_err(backend("begin initial presence read"))?;
            let (version, roster) = read_roster(&tx, &owner)?;
            let requests = read_requests(&tx, &owner)?;
            let offline_waiting = any_offline(&tx, &owner)?;
            Ok(InitialPresence {
                version,
                roster,
                requests,
                offline_waiting,
            })
        })
        .await
    }
}

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

fn apply_one(
    tx: &Transaction<'_>,
    change: &RosterChange,
    max_items: usize,
) -> Result<u64, StorageError> {
    let owner = match change {
        RosterChange::Put { owner, .. }
        | RosterChange::Remove { owner, .. }
        | RosterChange::AddRequest { owner, .. }
        | RosterChange::RemoveRequest { owner, .. } => owner,
    };
    let account =
        account_id(tx, owner)?.ok_or_else(|| StorageError::AccountNotFound(owner.clone()))?;
    match change {
        RosterChange::Put { item, .. } => {
            let contact = item.jid.as_str();
            let replaced = tx
                .prepare_cached("DELETE FROM roster_items WHERE account_id = ?1 AND contact = ?2")
                .and_then(|mut stmt| stmt.execute(params![account, contact]))
                .map_err(backend("replace roster item"))?;
            if replaced == 0 && item_count(tx, account)? >= max_items {
                return Err(StorageError::RosterFull {
                    owner: owner.clone(),
                    limit: max_items,
                });
            }
            tx.prepare_cached("INSERT INTO roster_items (account_id, contact, name, subscription, pending_out, approved)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .and_then(|mut stmt| stmt.execute(params![account, contact, item.name, item.subscription.as_str(), item.pending_out, item.approved],
            ))
            .map_err(backend("insert roster item"))?;
            for (position, group) in item.groups.iter().enumerate() {
                tx.prepare_cached("INSERT INTO roster_groups (account_id, contact, position, name) VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut stmt| stmt.execute(params![account, contact, i64::try_from(position).unwrap_or(i64::MAX), group],
                ))
                .map_err(backend("insert roster group"))?;
            }
            bump_version(tx, account)
        }
        RosterChange::Remove { contact, .. } => {
            tx.prepare_cached("DELETE FROM roster_items WHERE account_id = ?1 AND contact = ?2")
                .and_then(|mut stmt| stmt.execute(params![account, contact.as_str()]))
                .map_err(backend("remove roster item"))?;
            bump_version(tx, account)
        }
        RosterChange::AddRequest {
            contact, stanza, ..
        } => {
            tx.prepare_cached("INSERT INTO subscription_requests (account_id, contact, stanza) VALUES (?1, ?2, ?3)
                 ON CONFLICT (account_id, contact) DO UPDATE SET stanza = excluded.stanza")
            .and_then(|mut stmt| stmt.execute(params![account, contact.as_str(), stanza],
            ))
            .map_err(backend("store subscription request"))?;
            roster_version(tx, account)
        }
        RosterChange::RemoveRequest { contact, .. } => {
            tx.prepare_cached(
                "DELETE FROM subscription_requests WHERE account_id = ?1 AND contact = ?2",
            )
            .and_then(|mut stmt| stmt.execute(params![account, contact.as_str()]))
            .map_err(backend("remove subscription request"))?;
            roster_version(tx, account)
        }
    }
}

/// `owner`'s roster version and items, in one statement (see [`RosterStore::roster`]).
fn read_roster(conn: &Connection, owner: &BareJid) -> Result<(u64, Vec<RosterItem>), StorageError> {
    let Some(node) = owner.node() else {
        return Ok((0, Vec::new()));
    };
    // One statement, so the version and the items it numbers come from one snapshot
    // without an explicit transaction: a row per (item, group), or one row with a NULL
    // contact for an account without items, or none for an unknown account. Items come
    // in contact order and each item's groups in position order.
    let mut stmt = conn
        .prepare_cached(
            "SELECT v.version, i.contact, i.name, i.subscription, i.pending_out,
                    i.approved, g.name
             FROM accounts a
             LEFT JOIN roster_versions v ON v.account_id = a.id
             LEFT JOIN roster_items i ON i.account_id = a.id
             LEFT JOIN roster_groups g
                 ON g.account_id = i.account_id AND g.contact = i.contact
             WHERE a.host = ?1 AND a.username = ?2
             ORDER BY i.contact, g.position",
        )
        .map_err(backend("prepare roster query"))?;
    let mut rows = stmt
        .query(params![owner.domain().as_str(), node.as_str()])
        .map_err(backend("query roster"))?;
    let mut version = 0;
    let mut items: Vec<RosterItem> = Vec::new();
    let mut last_contact: Option<String> = None;
    while let Some(row) = rows.next().map_err(backend("read roster"))? {
        let stored: Option<i64> = row.get(0).map_err(backend("read roster version"))?;
        version = stored.and_then(|v| u64::try_from(v).ok()).unwrap_or(0);
        let contact: Option<String> = row.get(1).map_err(backend("read roster item"))?;
        let Some(contact) = contact else { continue };
        let group: Option<String> = row.get(6).map_err(backend("read roster group"))?;
        if last_contact.as_deref() != Some(contact.as_str()) {
            let subscription: String = row.get(3).map_err(backend("read roster item"))?;
            items.push(RosterItem {
                jid: parse_jid(&contact)?,
                name: row.get(2).map_err(backend("read roster item"))?,
                groups: Vec::new(),
                subscription: Subscription::parse(&subscription).ok_or_else(|| {
                    StorageError::Corrupt(format!("unknown subscription state {subscription:?}"))
                })?,
                pending_out: row.get(4).map_err(backend("read roster item"))?,
                approved: row.get(5).map_err(backend("read roster item"))?,
            });
            last_contact = Some(contact);
        }
        if let (Some(group), Some(item)) = (group, items.last_mut()) {
            item.groups.push(group);
        }
    }
    Ok((version, items))
}

/// `owner`'s pending inbound requests, oldest first, in one statement.
fn read_requests(
    conn: &Connection,
    owner: &BareJid,
) -> Result<Vec<(BareJid, String)>, StorageError> {
    let Some(node) = owner.node() else {
        return Ok(Vec::new());
    };
    // One statement (one implicit read transaction) with the account lookup joined in.
    let mut stmt = conn
        .prepare_cached(
            "SELECT r.contact, r.stanza FROM subscription_requests r
             JOIN accounts a ON a.id = r.account_id
             WHERE a.host = ?1 AND a.username = ?2 ORDER BY r.id",
        )
        .map_err(backend("prepare subscription requests query"))?;
    let rows = stmt
        .query_map(params![owner.domain().as_str(), node.as_str()], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .map_err(backend("query subscription requests"))?;
    let mut out = Vec::new();
    for row in rows {
        let (contact, stanza) = row.map_err(backend("read subscription request"))?;
        out.push((parse_jid(&contact)?, stanza));
    }
    Ok(out)
}

/// Whether any offline message is stored for `owner`.
fn any_offline(conn: &Connection, owner: &BareJid) -> Result<bool, StorageError> {
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

/// The id of `jid`'s account, `None` without one.
pub(crate) fn account_id(conn: &Connection, jid: &BareJid) -> Result<Option<i64>, StorageError> {
    let Some(node) = jid.node() else {
        return Ok(None);
    };
    conn.prepare_cached("SELECT id FROM accounts WHERE host = ?1 AND username = ?2")
        .and_then(|mut stmt| {
            stmt.query_row(params![jid.domain().as_str(), node.as_str()], |row| {
                row.get(0)
            })
        })
        .optional()
        .map_err(backend("look up account"))
}

/// How many items the roster of `account` holds.
fn item_count(conn: &Connection, account: i64) -> Result<usize, StorageError> {
    let count: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM roster_items WHERE account_id = ?1")
        .and_then(|mut stmt| stmt.query_row(params![account], |row| row.get(0)))
        .map_err(backend("count roster items"))?;
    Ok(usize::try_from(count).unwrap_or(usize::MAX))
}

fn roster_version(conn: &Connection, account: i64) -> Result<u64, StorageError> {
    let version: Option<i64> = conn
        .prepare_cached("SELECT version FROM roster_versions WHERE account_id = ?1")
        .and_then(|mut stmt| stmt.query_row(params![account], |row| row.get(0)))
        .optional()
        .map_err(backend("read roster version"))?;
    Ok(version.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
}

fn bump_version(tx: &Transaction<'_>, account: i64) -> Result<u64, StorageError> {
    let version: i64 = tx
        .prepare_cached(
            "INSERT INTO roster_versions (account_id, version) VALUES (?1, 1)
             ON CONFLICT (account_id) DO UPDATE SET version = version + 1
             RETURNING version",
        )
        .and_then(|mut stmt| stmt.query_row(params![account], |row| row.get(0)))
        .map_err(backend("bump roster version"))?;
    u64::try_from(version)
        .map_err(|_| StorageError::Corrupt(format!("negative roster version {version}")))
}

fn load_item(
    conn: &Connection,
    account: i64,
    contact: &str,
) -> Result<Option<RosterItem>, StorageError> {
    let row: Option<(Option<String>, String, bool, bool)> = conn
        .prepare_cached("SELECT name, subscription, pending_out, approved FROM roster_items WHERE account_id = ?1 AND contact = ?2")
            .and_then(|mut stmt| stmt.query_row(params![account, contact],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        ))
        .optional()
        .map_err(backend("read roster item"))?;
    let Some((name, subscription, pending_out, approved)) = row else {
        return Ok(None);
    };
    let subscription = Subscription::parse(&subscription).ok_or_else(|| {
        StorageError::Corrupt(format!("unknown subscription state {subscription:?}"))
    })?;
    let mut stmt = conn
        .prepare_cached("SELECT name FROM roster_groups WHERE account_id = ?1 AND contact = ?2 ORDER BY position")
        .map_err(backend("prepare roster groups query"))?;
    let groups = stmt
        .query_map(params![account, contact], |row| row.get(0))
        .map_err(backend("query roster groups"))?
        .collect::<Result<Vec<String>, _>>()
        .map_err(backend("read roster groups"))?;
    Ok(Some(RosterItem {
        jid: parse_jid(contact)?,
        name,
        groups,
        subscription,
        pending_out,
        approved,
    }))
}

fn parse_jid(value: &str) -> Result<BareJid, StorageError> {
    BareJid::new(value).map_err(|err| {
        StorageError::Corrupt(format!("stored contact {value:?} is not a JID: {err}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::tests::memory_store;

    crate::roster_tests::roster_store_tests!(memory_store());

    mod on_file {
        use crate::sqlite::tests::file_store;
        crate::roster_tests::roster_store_tests!(file_store().store);
    }

    #[tokio::test]
    async fn initial_presence_knows_whether_offline_messages_wait() {
        use crate::AccountStore as _;
        use crate::account_tests::{credentials, jid};
        let store = memory_store();
        let alice = jid("alice@localhost");
        store
            .create_account(&alice, &credentials(1))
            .await
            .expect("account");
        let state = store.initial_presence(&alice).await.expect("read");
        assert!(!state.offline_waiting);
        let message = OfflineMessage {
            stored_at_unix_ms: 1,
            stanza: "<message/>".to_owned(),
        };
        assert_eq!(
            store
                .push_offline(&alice, &message, OfflineQuota::messages(10))
                .await,
            Ok(true)
        );
        assert!(
            store
                .initial_presence(&alice)
                .await
                .expect("read")
                .offline_waiting
        );
        crate::roster_tests::take_all(&store, &alice)
            .await
            .expect("take");
        assert!(
            !store
                .initial_presence(&alice)
                .await
                .expect("read")
                .offline_waiting
        );
    }
}
