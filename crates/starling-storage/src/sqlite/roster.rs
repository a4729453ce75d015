//! The SQLite implementation of [`RosterStore`]: rosters with their versions and groups, and
//! pending inbound subscription requests.

use jid::BareJid;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::offline::any_offline;
use super::{SqliteStore, account_id, backend, write_transaction};
use crate::StorageError;
use crate::roster::{InitialPresence, RosterChange, RosterItem, RosterStore, Subscription};

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
    use crate::roster::{OfflineMessage, OfflineQuota, OfflineStore as _};
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
