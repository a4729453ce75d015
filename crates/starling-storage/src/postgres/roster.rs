//! The PostgreSQL implementation of [`RosterStore`], with the SQLite backend's schema and
//! semantics; the locking rules below hold for `offline` and `data` too.
//!
//! SQLite serialises every write behind one connection; here transactions really run side by
//! side, so two rules keep the results the same:
//!
//! - A write locks the account rows it changes (`SELECT … FOR NO KEY UPDATE`) before anything
//!   else, and `apply` locks its owners in one global order (by JID). Two subscription changes
//!   between the same pair of users in opposite directions therefore queue instead of
//!   deadlocking, and `push_offline`'s count-then-insert cannot be raced past its limit.
//!   `NO KEY UPDATE` rather than `UPDATE`: it conflicts with itself and with a delete of the
//!   account, but not with the `KEY SHARE` lock the foreign-key checks of unrelated inserts
//!   take, so it blocks nothing it does not have to.
//! - Reads of more than one statement (`roster`: version and items) run in one
//!   `REPEATABLE READ` snapshot; everything else is a single statement.
//!
//! Rows are sorted in Rust by [`BareJid`]'s order (bytes of the normalised JID, as SQLite's
//! binary collation), never with `ORDER BY` on text, whose collation is the database's.

use std::collections::{BTreeMap, BTreeSet};

use jid::BareJid;
use tokio_postgres::{GenericClient, IsolationLevel, Row};

use super::pool::Connection;
use super::{PostgresStore, Statements, backend, lock_account};
use crate::roster::{RosterChange, RosterItem, RosterStore, Subscription};
use crate::{AccountKey, StorageError};

/// Columns 0–5 as read by [`item_from_row`].
const SELECT_ROSTER: &str = "
SELECT i.contact, i.name, i.subscription, i.pending_out, i.approved,
       ARRAY(SELECT g.name FROM roster_groups g
             WHERE g.account_id = i.account_id AND g.contact = i.contact
             ORDER BY g.position)
FROM roster_items i JOIN accounts a ON a.id = i.account_id
WHERE a.host = $1 AND a.username = $2";

/// [`SELECT_ROSTER`] for one contact.
const SELECT_ROSTER_ITEM: &str = "
SELECT i.contact, i.name, i.subscription, i.pending_out, i.approved,
       ARRAY(SELECT g.name FROM roster_groups g
             WHERE g.account_id = i.account_id AND g.contact = i.contact
             ORDER BY g.position)
FROM roster_items i JOIN accounts a ON a.id = i.account_id
WHERE a.host = $1 AND a.username = $2 AND i.contact = $3";

impl RosterStore for PostgresStore {
    async fn roster(&self, owner: &BareJid) -> Result<(u64, Vec<RosterItem>), StorageError> {
        let Some(key) = AccountKey::of(owner) else {
            return Ok((0, Vec::new()));
        };
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        // Version and items from one snapshot, so the version describes exactly these items.
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(backend("begin roster snapshot"))?;
        let select_version = Connection::prepare(
            statements,
            &tx,
            "SELECT v.version FROM roster_versions v JOIN accounts a ON a.id = v.account_id
             WHERE a.host = $1 AND a.username = $2",
        )
        .await?;
        let version = tx
            .query_opt(&select_version, &[&key.host, &key.username])
            .await
            .map_err(backend("read roster version"))?;
        let version = match version {
            Some(row) => version_from(row.try_get(0).map_err(backend("read roster version"))?)?,
            None => 0,
        };
        let select_items = Connection::prepare(statements, &tx, SELECT_ROSTER).await?;
        let rows = tx
            .query(&select_items, &[&key.host, &key.username])
            .await
            .map_err(backend("query roster"))?;
        tx.commit().await.map_err(backend("end roster snapshot"))?;
        let mut items = rows
            .iter()
            .map(item_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        items.sort_by(|a, b| a.jid.cmp(&b.jid));
        Ok((version, items))
    }

    async fn roster_item(
        &self,
        owner: &BareJid,
        contact: &BareJid,
    ) -> Result<Option<RosterItem>, StorageError> {
        let Some(key) = AccountKey::of(owner) else {
            return Ok(None);
        };
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        let select = Connection::prepare(statements, &*client, SELECT_ROSTER_ITEM).await?;
        let row = client
            .query_opt(&select, &[&key.host, &key.username, &contact.as_str()])
            .await
            .map_err(backend("read roster item"))?;
        row.as_ref().map(item_from_row).transpose()
    }

    async fn apply(
        &self,
        changes: &[RosterChange],
        max_items: usize,
    ) -> Result<Vec<u64>, StorageError> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        let tx = client
            .transaction()
            .await
            .map_err(backend("begin transaction"))?;
        let accounts = lock_owners(statements, &tx, changes).await?;
        // The first change whose owner is missing decides the error, as if applied in order;
        // nothing is written before the check, and the transaction rolls back when dropped.
        let mut targets = Vec::with_capacity(changes.len());
        for change in changes {
            let owner = change_owner(change);
            let account = accounts
                .get(owner)
                .copied()
                .ok_or_else(|| StorageError::AccountNotFound(owner.clone()))?;
            targets.push((account, change));
        }
        let mut versions = Vec::with_capacity(changes.len());
        for (account, change) in targets {
            versions.push(apply_one(statements, &tx, account, change, max_items).await?);
        }
        tx.commit().await.map_err(backend("commit roster change"))?;
        Ok(versions)
    }

    async fn has_request(&self, owner: &BareJid, contact: &BareJid) -> Result<bool, StorageError> {
        let Some(key) = AccountKey::of(owner) else {
            return Ok(false);
        };
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        let select = Connection::prepare(
            statements,
            &*client,
            "SELECT EXISTS (
                 SELECT 1 FROM subscription_requests r JOIN accounts a ON a.id = r.account_id
                 WHERE a.host = $1 AND a.username = $2 AND r.contact = $3)",
        )
        .await?;
        client
            .query_one(&select, &[&key.host, &key.username, &contact.as_str()])
            .await
            .and_then(|row| row.try_get(0))
            .map_err(backend("query subscription request"))
    }

    async fn requests(&self, owner: &BareJid) -> Result<Vec<(BareJid, String)>, StorageError> {
        let Some(key) = AccountKey::of(owner) else {
            return Ok(Vec::new());
        };
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        let select = Connection::prepare(
            statements,
            &*client,
            "SELECT r.contact, r.stanza
             FROM subscription_requests r JOIN accounts a ON a.id = r.account_id
             WHERE a.host = $1 AND a.username = $2
             ORDER BY r.id",
        )
        .await?;
        let rows = client
            .query(&select, &[&key.host, &key.username])
            .await
            .map_err(backend("query subscription requests"))?;
        rows.iter()
            .map(|row| {
                let contact: String = row
                    .try_get(0)
                    .map_err(backend("read subscription request"))?;
                let stanza = row
                    .try_get(1)
                    .map_err(backend("read subscription request"))?;
                Ok((parse_jid(&contact)?, stanza))
            })
            .collect()
    }
}

fn change_owner(change: &RosterChange) -> &BareJid {
    match change {
        RosterChange::Put { owner, .. }
        | RosterChange::Remove { owner, .. }
        | RosterChange::AddRequest { owner, .. }
        | RosterChange::RemoveRequest { owner, .. } => owner,
    }
}

/// Locks the account rows of every owner in `changes`, in [`BareJid`] order so that any two
/// transactions take their common locks in the same order, and returns their ids. Owners
/// without an account are absent from the map.
async fn lock_owners<'c>(
    statements: &mut Statements,
    tx: &impl GenericClient,
    changes: &'c [RosterChange],
) -> Result<BTreeMap<&'c BareJid, i64>, StorageError> {
    let owners: BTreeSet<&BareJid> = changes.iter().map(change_owner).collect();
    let mut accounts = BTreeMap::new();
    for owner in owners {
        if let Some(id) = lock_account(statements, tx, owner).await? {
            accounts.insert(owner, id);
        }
    }
    Ok(accounts)
}

/// Applies one change to the (locked) account `account`; returns the owner's roster version.
async fn apply_one(
    statements: &mut Statements,
    tx: &impl GenericClient,
    account: i64,
    change: &RosterChange,
    max_items: usize,
) -> Result<u64, StorageError> {
    match change {
        RosterChange::Put { owner, item } => {
            let contact = item.jid.as_str();
            // The owner's account row is locked (`lock_owners`), so no other transaction adds
            // to this roster between the count and the insert.
            let count = Connection::prepare(
                statements,
                tx,
                "SELECT count(*) FILTER (WHERE contact <> $2), bool_or(contact = $2)
                 FROM roster_items WHERE account_id = $1",
            )
            .await?;
            let row = tx
                .query_one(&count, &[&account, &contact])
                .await
                .map_err(backend("count roster items"))?;
            let others: i64 = row.try_get(0).map_err(backend("count roster items"))?;
            let exists: Option<bool> = row.try_get(1).map_err(backend("count roster items"))?;
            if exists != Some(true) && usize::try_from(others).unwrap_or(usize::MAX) >= max_items {
                return Err(StorageError::RosterFull {
                    owner: owner.clone(),
                    limit: max_items,
                });
            }
            let upsert = Connection::prepare(
                statements,
                tx,
                "INSERT INTO roster_items
                     (account_id, contact, name, subscription, pending_out, approved)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (account_id, contact) DO UPDATE SET
                     name = excluded.name,
                     subscription = excluded.subscription,
                     pending_out = excluded.pending_out,
                     approved = excluded.approved",
            )
            .await?;
            tx.execute(
                &upsert,
                &[
                    &account,
                    &contact,
                    &item.name,
                    &item.subscription.as_str(),
                    &item.pending_out,
                    &item.approved,
                ],
            )
            .await
            .map_err(backend("store roster item"))?;
            let clear = Connection::prepare(
                statements,
                tx,
                "DELETE FROM roster_groups WHERE account_id = $1 AND contact = $2",
            )
            .await?;
            tx.execute(&clear, &[&account, &contact])
                .await
                .map_err(backend("replace roster groups"))?;
            if !item.groups.is_empty() {
                let insert = Connection::prepare(
                    statements,
                    tx,
                    "INSERT INTO roster_groups (account_id, contact, position, name)
                     SELECT $1, $2, (g.position - 1)::integer, g.name
                     FROM unnest($3::text[]) WITH ORDINALITY AS g (name, position)",
                )
                .await?;
                tx.execute(&insert, &[&account, &contact, &item.groups])
                    .await
                    .map_err(backend("insert roster groups"))?;
            }
            bump_version(statements, tx, account).await
        }
        RosterChange::Remove { contact, .. } => {
            // The groups go with the item through ON DELETE CASCADE.
            let delete = Connection::prepare(
                statements,
                tx,
                "DELETE FROM roster_items WHERE account_id = $1 AND contact = $2",
            )
            .await?;
            tx.execute(&delete, &[&account, &contact.as_str()])
                .await
                .map_err(backend("remove roster item"))?;
            bump_version(statements, tx, account).await
        }
        RosterChange::AddRequest {
            contact, stanza, ..
        } => {
            // An upsert keeps the row and so its id: a repeated request keeps its place.
            let upsert = Connection::prepare(
                statements,
                tx,
                "INSERT INTO subscription_requests (account_id, contact, stanza)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (account_id, contact) DO UPDATE SET stanza = excluded.stanza",
            )
            .await?;
            tx.execute(&upsert, &[&account, &contact.as_str(), stanza])
                .await
                .map_err(backend("store subscription request"))?;
            roster_version(statements, tx, account).await
        }
        RosterChange::RemoveRequest { contact, .. } => {
            let delete = Connection::prepare(
                statements,
                tx,
                "DELETE FROM subscription_requests WHERE account_id = $1 AND contact = $2",
            )
            .await?;
            tx.execute(&delete, &[&account, &contact.as_str()])
                .await
                .map_err(backend("remove subscription request"))?;
            roster_version(statements, tx, account).await
        }
    }
}

async fn roster_version(
    statements: &mut Statements,
    tx: &impl GenericClient,
    account: i64,
) -> Result<u64, StorageError> {
    let select = Connection::prepare(
        statements,
        tx,
        "SELECT version FROM roster_versions WHERE account_id = $1",
    )
    .await?;
    match tx
        .query_opt(&select, &[&account])
        .await
        .map_err(backend("read roster version"))?
    {
        Some(row) => version_from(row.try_get(0).map_err(backend("read roster version"))?),
        None => Ok(0),
    }
}

async fn bump_version(
    statements: &mut Statements,
    tx: &impl GenericClient,
    account: i64,
) -> Result<u64, StorageError> {
    let bump = Connection::prepare(
        statements,
        tx,
        "INSERT INTO roster_versions (account_id, version) VALUES ($1, 1)
         ON CONFLICT (account_id) DO UPDATE SET version = roster_versions.version + 1
         RETURNING version",
    )
    .await?;
    let version: i64 = tx
        .query_one(&bump, &[&account])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(backend("bump roster version"))?;
    version_from(version)
}

fn version_from(version: i64) -> Result<u64, StorageError> {
    u64::try_from(version)
        .map_err(|_| StorageError::Corrupt(format!("negative roster version {version}")))
}

/// A [`RosterItem`] from the columns of [`SELECT_ROSTER`].
fn item_from_row(row: &Row) -> Result<RosterItem, StorageError> {
    let contact: String = row.try_get(0).map_err(backend("read roster item"))?;
    let subscription: String = row.try_get(2).map_err(backend("read roster item"))?;
    Ok(RosterItem {
        jid: parse_jid(&contact)?,
        name: row.try_get(1).map_err(backend("read roster item"))?,
        groups: row.try_get(5).map_err(backend("read roster groups"))?,
        subscription: Subscription::parse(&subscription).ok_or_else(|| {
            StorageError::Corrupt(format!("unknown subscription state {subscription:?}"))
        })?,
        pending_out: row.try_get(3).map_err(backend("read roster item"))?,
        approved: row.try_get(4).map_err(backend("read roster item"))?,
    })
}

fn parse_jid(value: &str) -> Result<BareJid, StorageError> {
    BareJid::new(value).map_err(|err| {
        StorageError::Corrupt(format!("stored contact {value:?} is not a JID: {err}"))
    })
}
