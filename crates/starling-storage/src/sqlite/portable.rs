//! The SQLite implementation of [`PortableStore`]: a host read table by table in one read
//! transaction, accounts written in one write transaction.

use jid::{BareJid, DomainPart, NodePart};
use rusqlite::{OptionalExtension, Transaction, params};

use super::accounts::insert_keys;
use super::{SqliteStore, backend, write_transaction};
use crate::StorageError;
use crate::data::AccountDataEntry;
use crate::portable::{
    AccountData, ExistingAccounts, HostExport, KeysRow, PortableStore, account_key,
    imported_version, parse_contact,
};
use crate::roster::{OfflineMessage, RosterItem, Subscription};

impl PortableStore for SqliteStore {
    async fn export_host(&self, host: &str) -> Result<Vec<AccountData>, StorageError> {
        let Ok(domain) = DomainPart::new(host).map(|domain| domain.into_owned()) else {
            return Ok(Vec::new());
        };
        self.with_conn(move |conn| {
            // A read transaction: in WAL mode it sees one snapshot even while a server process
            // writes to the same file.
            let tx = conn.transaction().map_err(backend("begin export snapshot"))?;
            let host = domain.as_str();
            let mut export = HostExport::default();
            for_each_row(
                &tx,
                "SELECT id, username FROM accounts WHERE host = ?1",
                host,
                |row| {
                    let username: String = row.get(1)?;
                    Ok((row.get::<_, i64>(0)?, username))
                },
                |(id, username)| {
                    let node = NodePart::new(&username).map_err(|err| {
                        StorageError::Corrupt(format!(
                            "stored username {username:?} on {domain} is not a valid localpart: {err}"
                        ))
                    })?;
                    export.account(id, BareJid::from_parts(Some(&node), &domain));
                    Ok(())
                },
            )?;
            for_each_row(
                &tx,
                "SELECT k.account_id, k.hash, k.salt, k.iterations, k.stored_key, k.server_key
                 FROM scram_keys k JOIN accounts a ON a.id = k.account_id WHERE a.host = ?1",
                host,
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        KeysRow {
                            hash: row.get(1)?,
                            salt: row.get(2)?,
                            iterations: row.get(3)?,
                            stored_key: row.get(4)?,
                            server_key: row.get(5)?,
                        },
                    ))
                },
                |(id, keys)| export.keys(id, keys),
            )?;
            for_each_row(
                &tx,
                "SELECT v.account_id, v.version
                 FROM roster_versions v JOIN accounts a ON a.id = v.account_id WHERE a.host = ?1",
                host,
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
                |(id, version)| {
                    let version = u64::try_from(version).map_err(|_| {
                        StorageError::Corrupt(format!("negative roster version {version}"))
                    })?;
                    export.version(id, version)
                },
            )?;
            for_each_row(
                &tx,
                "SELECT i.account_id, i.contact, i.name, i.subscription, i.pending_out, i.approved
                 FROM roster_items i JOIN accounts a ON a.id = i.account_id WHERE a.host = ?1",
                host,
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, Option<String>>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, bool>(4)?,
                        row.get::<_, bool>(5)?,
                    ))
                },
                |(id, contact, name, subscription, pending_out, approved)| {
                    let subscription = Subscription::parse(&subscription).ok_or_else(|| {
                        StorageError::Corrupt(format!(
                            "unknown subscription state {subscription:?}"
                        ))
                    })?;
                    export.item(
                        id,
                        RosterItem {
                            jid: parse_contact(&contact)?,
                            name,
                            groups: Vec::new(),
                            subscription,
                            pending_out,
                            approved,
                        },
                    )
                },
            )?;
            for_each_row(
                &tx,
                "SELECT g.account_id, g.contact, g.name
                 FROM roster_groups g JOIN accounts a ON a.id = g.account_id WHERE a.host = ?1
                 ORDER BY g.account_id, g.contact, g.position",
                host,
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get(2)?)),
                |(id, contact, name)| export.group(id, &contact, name),
            )?;
            for_each_row(
                &tx,
                "SELECT r.account_id, r.contact, r.stanza
                 FROM subscription_requests r JOIN accounts a ON a.id = r.account_id
                 WHERE a.host = ?1 ORDER BY r.id",
                host,
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get(2)?)),
                |(id, contact, stanza)| export.request(id, parse_contact(&contact)?, stanza),
            )?;
            for_each_row(
                &tx,
                "SELECT o.account_id, o.stored_at_ms, o.stanza
                 FROM offline_messages o JOIN accounts a ON a.id = o.account_id
                 WHERE a.host = ?1 ORDER BY o.id",
                host,
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get(2)?)),
                |(id, stored_at, stanza)| {
                    let stored_at_unix_ms = u64::try_from(stored_at).map_err(|_| {
                        StorageError::Corrupt(format!("negative offline message time {stored_at}"))
                    })?;
                    export.offline(
                        id,
                        OfflineMessage {
                            stored_at_unix_ms,
                            stanza,
                        },
                    )
                },
            )?;
            // Archived messages waiting for offline delivery travel as offline messages: a
            // backup keeps what is owed to the account, whatever it holds of the archive.
            for_each_row(
                &tx,
                "SELECT r.account_id, r.id, r.archive_id, r.stanza
                 FROM archive r JOIN accounts a ON a.id = r.account_id
                 WHERE a.host = ?1 AND r.pending = 1 ORDER BY r.archive_id",
                host,
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, Vec<u8>>(2)?,
                        row.get::<_, String>(3)?,
                    ))
                },
                |(id, row_id, archive_id, stanza)| {
                    let pending = super::offline::pending_message(row_id, &archive_id, stanza)?;
                    export.offline(id, pending.message)
                },
            )?;
            for_each_row(
                &tx,
                "SELECT d.account_id, d.store, d.key, d.value
                 FROM account_data d JOIN accounts a ON a.id = d.account_id WHERE a.host = ?1",
                host,
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        AccountDataEntry {
                            store: row.get(1)?,
                            key: row.get(2)?,
                            value: row.get(3)?,
                        },
                    ))
                },
                |(id, entry)| export.data(id, entry),
            )?;
            tx.commit().map_err(backend("end export snapshot"))?;
            Ok(export.finish())
        })
        .await
    }

    async fn import_accounts(
        &self,
        accounts: &[AccountData],
        existing: ExistingAccounts,
    ) -> Result<(), StorageError> {
        let accounts = accounts.to_vec();
        self.with_conn(move |conn| {
            let tx = write_transaction(conn)?;
            for account in &accounts {
                import_one(&tx, account, existing)?;
            }
            tx.commit().map_err(backend("commit import"))
        })
        .await
    }
}

/// Runs `sql` with the host as its one parameter and hands each row, read by `read`, to
/// `each`.
fn for_each_row<T>(
    tx: &Transaction<'_>,
    sql: &str,
    host: &str,
    read: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    mut each: impl FnMut(T) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    let mut stmt = tx
        .prepare_cached(sql)
        .map_err(backend("prepare export query"))?;
    let rows = stmt
        .query_map(params![host], read)
        .map_err(backend("run export query"))?;
    for row in rows {
        each(row.map_err(backend("read export row"))?)?;
    }
    Ok(())
}

fn import_one(
    tx: &Transaction<'_>,
    account: &AccountData,
    existing: ExistingAccounts,
) -> Result<(), StorageError> {
    let (host, username) = account_key(&account.jid)?;
    let old: Option<i64> = tx
        .prepare_cached("SELECT id FROM accounts WHERE host = ?1 AND username = ?2")
        .and_then(|mut stmt| stmt.query_row(params![host, username], |row| row.get(0)))
        .optional()
        .map_err(backend("look up account"))?;
    let replaced_version = match (old, existing) {
        (None, _) => None,
        (Some(_), ExistingAccounts::Refuse) => {
            return Err(StorageError::AccountExists(account.jid.clone()));
        }
        (Some(id), ExistingAccounts::Replace) => {
            let version: Option<i64> = tx
                .prepare_cached("SELECT version FROM roster_versions WHERE account_id = ?1")
                .and_then(|mut stmt| stmt.query_row(params![id], |row| row.get(0)))
                .optional()
                .map_err(backend("read roster version"))?;
            // Everything the account owns goes with it through ON DELETE CASCADE.
            tx.prepare_cached("DELETE FROM accounts WHERE id = ?1")
                .and_then(|mut stmt| stmt.execute(params![id]))
                .map_err(backend("delete replaced account"))?;
            Some(version.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
        }
    };
    tx.prepare_cached("INSERT INTO accounts (host, username) VALUES (?1, ?2)")
        .and_then(|mut stmt| stmt.execute(params![host, username]))
        .map_err(backend("insert account"))?;
    let id = tx.last_insert_rowid();
    insert_keys(tx, id, &account.credentials)?;
    let version = imported_version(account.roster_version, replaced_version);
    if version > 0 {
        let version = to_i64(version, "roster version")?;
        tx.prepare_cached("INSERT INTO roster_versions (account_id, version) VALUES (?1, ?2)")
            .and_then(|mut stmt| stmt.execute(params![id, version]))
            .map_err(backend("insert roster version"))?;
    }
    for item in &account.roster {
        let contact = item.jid.as_str();
        tx.prepare_cached("INSERT INTO roster_items (account_id, contact, name, subscription, pending_out, approved)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .and_then(|mut stmt| stmt.execute(params![
                id,
                contact,
                item.name,
                item.subscription.as_str(),
                item.pending_out,
                item.approved
            ],
        ))
        .map_err(backend("insert roster item"))?;
        for (position, group) in item.groups.iter().enumerate() {
            let position = to_i64(position as u64, "group position")?;
            tx.prepare_cached("INSERT INTO roster_groups (account_id, contact, position, name) VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut stmt| stmt.execute(params![id, contact, position, group]))
            .map_err(backend("insert roster group"))?;
        }
    }
    for (contact, stanza) in &account.requests {
        tx.prepare_cached(
            "INSERT INTO subscription_requests (account_id, contact, stanza) VALUES (?1, ?2, ?3)",
        )
        .and_then(|mut stmt| stmt.execute(params![id, contact.as_str(), stanza]))
        .map_err(backend("insert subscription request"))?;
    }
    for message in &account.offline {
        let stored_at = to_i64(message.stored_at_unix_ms, "offline message time")?;
        tx.prepare_cached(
            "INSERT INTO offline_messages (account_id, stored_at_ms, stanza) VALUES (?1, ?2, ?3)",
        )
        .and_then(|mut stmt| stmt.execute(params![id, stored_at, message.stanza]))
        .map_err(backend("insert offline message"))?;
    }
    for entry in &account.module_data {
        tx.prepare_cached(
            "INSERT INTO account_data (account_id, store, key, value) VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut stmt| stmt.execute(params![id, entry.store, entry.key, entry.value]))
        .map_err(backend("insert account data"))?;
    }
    Ok(())
}

fn to_i64(value: u64, what: &str) -> Result<i64, StorageError> {
    i64::try_from(value).map_err(|_| StorageError::Backend(format!("{what} {value} out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::portable_tests::portable_store_tests!(
        SqliteStore::open_in_memory().expect("in-memory database opens")
    );
}
