//! The PostgreSQL implementation of [`PortableStore`], with the SQLite backend's semantics: a
//! host read table by table in one `REPEATABLE READ` snapshot, accounts written in one
//! transaction.

use jid::{BareJid, DomainPart, NodePart};
use tokio_postgres::{GenericClient, IsolationLevel, Row};

use super::accounts::insert_keys;
use super::pool::Connection;
use super::{PostgresStore, Statements, backend};
use crate::StorageError;
use crate::data::AccountDataEntry;
use crate::portable::{
    AccountData, ExistingAccounts, HostExport, KeysRow, PortableStore, account_key,
    imported_version, parse_contact,
};
use crate::roster::{OfflineMessage, RosterItem, Subscription};

const SELECT_ACCOUNTS: &str = "SELECT id, username FROM accounts WHERE host = $1";
const SELECT_KEYS: &str = "
SELECT k.account_id, k.hash, k.salt, k.iterations, k.stored_key, k.server_key
FROM scram_keys k JOIN accounts a ON a.id = k.account_id WHERE a.host = $1";
const SELECT_VERSIONS: &str = "
SELECT v.account_id, v.version
FROM roster_versions v JOIN accounts a ON a.id = v.account_id WHERE a.host = $1";
const SELECT_ITEMS: &str = "
SELECT i.account_id, i.contact, i.name, i.subscription, i.pending_out, i.approved
FROM roster_items i JOIN accounts a ON a.id = i.account_id WHERE a.host = $1";
const SELECT_GROUPS: &str = "
SELECT g.account_id, g.contact, g.name
FROM roster_groups g JOIN accounts a ON a.id = g.account_id WHERE a.host = $1
ORDER BY g.account_id, g.contact, g.position";
const SELECT_REQUESTS: &str = "
SELECT r.account_id, r.contact, r.stanza
FROM subscription_requests r JOIN accounts a ON a.id = r.account_id
WHERE a.host = $1 ORDER BY r.id";
const SELECT_OFFLINE: &str = "
SELECT o.account_id, o.stored_at_ms, o.stanza
FROM offline_messages o JOIN accounts a ON a.id = o.account_id
WHERE a.host = $1 ORDER BY o.id";
const SELECT_PENDING: &str = "
SELECT r.account_id, r.id, r.archive_id, r.stanza
FROM archive r JOIN accounts a ON a.id = r.account_id
WHERE a.host = $1 AND r.pending ORDER BY r.archive_id";
const SELECT_DATA: &str = "
SELECT d.account_id, d.store, d.key, d.value
FROM account_data d JOIN accounts a ON a.id = d.account_id WHERE a.host = $1";

impl PortableStore for PostgresStore {
    async fn export_host(&self, host: &str) -> Result<Vec<AccountData>, StorageError> {
        let Ok(domain) = DomainPart::new(host).map(|domain| domain.into_owned()) else {
            return Ok(Vec::new());
        };
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(backend("begin export snapshot"))?;
        let host = domain.as_str();
        let mut export = HostExport::default();
        for row in rows(statements, &tx, SELECT_ACCOUNTS, host).await? {
            let id: i64 = row.try_get(0).map_err(backend("read account"))?;
            let username: String = row.try_get(1).map_err(backend("read account"))?;
            let node = NodePart::new(&username).map_err(|err| {
                StorageError::Corrupt(format!(
                    "stored username {username:?} on {domain} is not a valid localpart: {err}"
                ))
            })?;
            export.account(id, BareJid::from_parts(Some(&node), &domain));
        }
        for row in rows(statements, &tx, SELECT_KEYS, host).await? {
            let read = backend("read scram keys");
            let keys = (|| {
                Ok::<_, tokio_postgres::Error>((
                    row.try_get::<_, i64>(0)?,
                    KeysRow {
                        hash: row.try_get(1)?,
                        salt: row.try_get(2)?,
                        iterations: row.try_get(3)?,
                        stored_key: row.try_get(4)?,
                        server_key: row.try_get(5)?,
                    },
                ))
            })()
            .map_err(read)?;
            export.keys(keys.0, keys.1)?;
        }
        for row in rows(statements, &tx, SELECT_VERSIONS, host).await? {
            let id: i64 = row.try_get(0).map_err(backend("read roster version"))?;
            let version: i64 = row.try_get(1).map_err(backend("read roster version"))?;
            let version = u64::try_from(version)
                .map_err(|_| StorageError::Corrupt(format!("negative roster version {version}")))?;
            export.version(id, version)?;
        }
        for row in rows(statements, &tx, SELECT_ITEMS, host).await? {
            let read = || backend("read roster item");
            let id: i64 = row.try_get(0).map_err(read())?;
            let contact: String = row.try_get(1).map_err(read())?;
            let subscription: String = row.try_get(3).map_err(read())?;
            let item = RosterItem {
                jid: parse_contact(&contact)?,
                name: row.try_get(2).map_err(read())?,
                groups: Vec::new(),
                subscription: Subscription::parse(&subscription).ok_or_else(|| {
                    StorageError::Corrupt(format!("unknown subscription state {subscription:?}"))
                })?,
                pending_out: row.try_get(4).map_err(read())?,
                approved: row.try_get(5).map_err(read())?,
            };
            export.item(id, item)?;
        }
        for row in rows(statements, &tx, SELECT_GROUPS, host).await? {
            let read = || backend("read roster group");
            let id: i64 = row.try_get(0).map_err(read())?;
            let contact: String = row.try_get(1).map_err(read())?;
            export.group(id, &contact, row.try_get(2).map_err(read())?)?;
        }
        for row in rows(statements, &tx, SELECT_REQUESTS, host).await? {
            let read = || backend("read subscription request");
            let id: i64 = row.try_get(0).map_err(read())?;
            let contact: String = row.try_get(1).map_err(read())?;
            export.request(
                id,
                parse_contact(&contact)?,
                row.try_get(2).map_err(read())?,
            )?;
        }
        for row in rows(statements, &tx, SELECT_OFFLINE, host).await? {
            let read = || backend("read offline message");
            let id: i64 = row.try_get(0).map_err(read())?;
            let stored_at: i64 = row.try_get(1).map_err(read())?;
            let stored_at_unix_ms = u64::try_from(stored_at).map_err(|_| {
                StorageError::Corrupt(format!("negative offline message time {stored_at}"))
            })?;
            export.offline(
                id,
                OfflineMessage {
                    stored_at_unix_ms,
                    stanza: row.try_get(2).map_err(read())?,
                },
            )?;
        }
        // Archived messages waiting for offline delivery travel as offline messages.
        for row in rows(statements, &tx, SELECT_PENDING, host).await? {
            let read = || backend("read pending archived message");
            let id: i64 = row.try_get(0).map_err(read())?;
            let row_id: i64 = row.try_get(1).map_err(read())?;
            let archive_id: Vec<u8> = row.try_get(2).map_err(read())?;
            let pending = crate::sqlite::offline::pending_message(
                row_id,
                &archive_id,
                row.try_get(3).map_err(read())?,
            )?;
            export.offline(id, pending.message)?;
        }
        for row in rows(statements, &tx, SELECT_DATA, host).await? {
            let read = || backend("read account data");
            let id: i64 = row.try_get(0).map_err(read())?;
            let entry = AccountDataEntry {
                store: row.try_get(1).map_err(read())?,
                key: row.try_get(2).map_err(read())?,
                value: row.try_get(3).map_err(read())?,
            };
            export.data(id, entry)?;
        }
        tx.commit().await.map_err(backend("end export snapshot"))?;
        Ok(export.finish())
    }

    async fn import_accounts(
        &self,
        accounts: &[AccountData],
        existing: ExistingAccounts,
    ) -> Result<(), StorageError> {
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        let tx = client
            .transaction()
            .await
            .map_err(backend("begin transaction"))?;
        for account in accounts {
            import_one(statements, &tx, account, existing).await?;
        }
        tx.commit().await.map_err(backend("commit import"))
    }
}

async fn rows(
    statements: &mut Statements,
    tx: &impl GenericClient,
    sql: &'static str,
    host: &str,
) -> Result<Vec<Row>, StorageError> {
    let statement = Connection::prepare(statements, tx, sql).await?;
    tx.query(&statement, &[&host])
        .await
        .map_err(backend("run export query"))
}

async fn import_one(
    statements: &mut Statements,
    tx: &impl GenericClient,
    account: &AccountData,
    existing: ExistingAccounts,
) -> Result<(), StorageError> {
    let (host, username) = account_key(&account.jid)?;
    // FOR UPDATE holds off a concurrent change of this account until the import commits.
    let lock = Connection::prepare(
        statements,
        tx,
        "SELECT a.id, v.version FROM accounts a
         LEFT JOIN roster_versions v ON v.account_id = a.id
         WHERE a.host = $1 AND a.username = $2 FOR UPDATE OF a",
    )
    .await?;
    let old = tx
        .query_opt(&lock, &[&host, &username])
        .await
        .map_err(backend("look up account"))?;
    let replaced_version = match (old, existing) {
        (None, _) => None,
        (Some(_), ExistingAccounts::Refuse) => {
            return Err(StorageError::AccountExists(account.jid.clone()));
        }
        (Some(row), ExistingAccounts::Replace) => {
            let id: i64 = row.try_get(0).map_err(backend("read account id"))?;
            let version: Option<i64> = row.try_get(1).map_err(backend("read roster version"))?;
            // Everything the account owns goes with it through ON DELETE CASCADE.
            let delete =
                Connection::prepare(statements, tx, "DELETE FROM accounts WHERE id = $1").await?;
            tx.execute(&delete, &[&id])
                .await
                .map_err(backend("delete replaced account"))?;
            Some(version.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
        }
    };
    // ON CONFLICT: an account created meanwhile by another writer is "exists", not a
    // unique-violation error.
    let insert = Connection::prepare(
        statements,
        tx,
        "INSERT INTO accounts (host, username) VALUES ($1, $2)
         ON CONFLICT (host, username) DO NOTHING RETURNING id",
    )
    .await?;
    let Some(row) = tx
        .query_opt(&insert, &[&host, &username])
        .await
        .map_err(backend("insert account"))?
    else {
        return Err(StorageError::AccountExists(account.jid.clone()));
    };
    let id: i64 = row.try_get(0).map_err(backend("read account id"))?;
    insert_keys(statements, tx, id, &account.credentials).await?;
    let version = imported_version(account.roster_version, replaced_version);
    if version > 0 {
        let insert = Connection::prepare(
            statements,
            tx,
            "INSERT INTO roster_versions (account_id, version) VALUES ($1, $2)",
        )
        .await?;
        tx.execute(&insert, &[&id, &to_i64(version, "roster version")?])
            .await
            .map_err(backend("insert roster version"))?;
    }
    for item in &account.roster {
        let contact = item.jid.as_str();
        let insert = Connection::prepare(
            statements,
            tx,
            "INSERT INTO roster_items
                 (account_id, contact, name, subscription, pending_out, approved)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await?;
        tx.execute(
            &insert,
            &[
                &id,
                &contact,
                &item.name,
                &item.subscription.as_str(),
                &item.pending_out,
                &item.approved,
            ],
        )
        .await
        .map_err(backend("insert roster item"))?;
        if !item.groups.is_empty() {
            let insert = Connection::prepare(
                statements,
                tx,
                "INSERT INTO roster_groups (account_id, contact, position, name)
                 SELECT $1, $2, (g.position - 1)::integer, g.name
                 FROM unnest($3::text[]) WITH ORDINALITY AS g (name, position)",
            )
            .await?;
            tx.execute(&insert, &[&id, &contact, &item.groups])
                .await
                .map_err(backend("insert roster groups"))?;
        }
    }
    for (contact, stanza) in &account.requests {
        let insert = Connection::prepare(
            statements,
            tx,
            "INSERT INTO subscription_requests (account_id, contact, stanza) VALUES ($1, $2, $3)",
        )
        .await?;
        tx.execute(&insert, &[&id, &contact.as_str(), stanza])
            .await
            .map_err(backend("insert subscription request"))?;
    }
    for message in &account.offline {
        let insert = Connection::prepare(
            statements,
            tx,
            "INSERT INTO offline_messages (account_id, stored_at_ms, stanza) VALUES ($1, $2, $3)",
        )
        .await?;
        let stored_at = to_i64(message.stored_at_unix_ms, "offline message time")?;
        tx.execute(&insert, &[&id, &stored_at, &message.stanza])
            .await
            .map_err(backend("insert offline message"))?;
    }
    for entry in &account.module_data {
        let insert = Connection::prepare(
            statements,
            tx,
            "INSERT INTO account_data (account_id, store, key, value) VALUES ($1, $2, $3, $4)",
        )
        .await?;
        tx.execute(&insert, &[&id, &entry.store, &entry.key, &entry.value])
            .await
            .map_err(backend("insert account data"))?;
    }
    Ok(())
}

fn to_i64(value: u64, what: &str) -> Result<i64, StorageError> {
    i64::try_from(value).map_err(|_| StorageError::Backend(format!("{what} {value} out of range")))
}
