//! The SQLite schema, version by version, and how the shared runner (`crate::migrations`)
//! keeps SQLite's version: in `PRAGMA user_version`, bumped in the transaction that applies
//! the version's statements.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use rusqlite::{Connection, TransactionBehavior};

use super::backend;
use crate::StorageError;
use crate::migrations::{Migration, Schema};

/// Accounts keyed by (host, username), the JID's domainpart and localpart as normalised by the
/// jid crate, and one row of SCRAM keys per hash. `hash` has no CHECK constraint on purpose:
/// SQLite cannot alter a CHECK without rebuilding the table, and a row with a name this build
/// does not know is reported as [`StorageError::Corrupt`] on read.
pub(crate) const SCHEMA_V1: &str = "
CREATE TABLE accounts (
    id       INTEGER PRIMARY KEY,
    host     TEXT NOT NULL,
    username TEXT NOT NULL,
    UNIQUE (host, username)
) STRICT;

CREATE TABLE scram_keys (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    hash       TEXT    NOT NULL,
    salt       BLOB    NOT NULL,
    iterations INTEGER NOT NULL,
    stored_key BLOB    NOT NULL,
    server_key BLOB    NOT NULL,
    PRIMARY KEY (account_id, hash)
) STRICT;
";

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

/// Schema version 3: module data, one row per (account, store, key), deleted with the account.
/// `key` is TEXT compared with SQLite's default BINARY collation, so `ORDER BY key` is the
/// byte order of the UTF-8 key, as [`String`]'s `Ord`.
pub(crate) const SCHEMA_V3: &str = "
CREATE TABLE account_data (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    store      TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    value      BLOB    NOT NULL,
    PRIMARY KEY (account_id, store, key)
) STRICT;
";

/// Schema version 4: message archives (XEP-0313). One row per archived message, deleted with
/// the account; `archive_id` is the message's UUIDv7 as 16 bytes, which sort by time, so the
/// (account, id) index answers every page and time range, and (account, with, id) every
/// query filtered by a contact. `archive_usage` keeps each account's message count, bytes and
/// oldest id, updated with every append and removal, so quotas and retention never scan an
/// archive. `direction` is 0 for incoming, 1 for outgoing. `pending` is 1 while an incoming
/// message waits for offline delivery (XEP-0160): the archive row is then the message's only
/// stored copy, and the partial index finds an account's few pending rows.
pub(crate) const SCHEMA_V4: &str = "
CREATE TABLE archive (
    id            INTEGER PRIMARY KEY,
    account_id    INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    archive_id    BLOB    NOT NULL,
    with_jid      TEXT    NOT NULL,
    with_resource TEXT,
    direction     INTEGER NOT NULL,
    origin_id     TEXT,
    stanza        TEXT    NOT NULL,
    pending       INTEGER NOT NULL DEFAULT 0,
    UNIQUE (account_id, archive_id)
) STRICT;

CREATE INDEX archive_by_with ON archive (account_id, with_jid, archive_id);

CREATE INDEX archive_pending ON archive (account_id, archive_id) WHERE pending = 1;

CREATE TABLE archive_usage (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    messages   INTEGER NOT NULL,
    bytes      INTEGER NOT NULL,
    oldest     BLOB
) STRICT;
";

/// Applies the migrations of `migrations` that the database lacks (see
/// [`crate::migrations::migrate`]).
pub(crate) fn migrate(conn: &mut Connection, migrations: &[Migration]) -> Result<(), StorageError> {
    now(crate::migrations::migrate(
        &mut UserVersion(conn),
        migrations,
    ))
}

/// The result of `future`, which must be ready at once: the runner is async for PostgreSQL's
/// sake, but [`UserVersion`] never waits, so on SQLite its future completes on the first poll.
pub(crate) fn now<T>(
    future: impl Future<Output = Result<T, StorageError>>,
) -> Result<T, StorageError> {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => Err(StorageError::Backend(
            "a synchronous SQLite step unexpectedly waited".to_owned(),
        )),
    }
}

/// A connection whose schema version is `PRAGMA user_version`. One connection is one writer
/// here, so no lock beyond each version's `IMMEDIATE` transaction is needed.
struct UserVersion<'c>(&'c mut Connection);

impl Schema for UserVersion<'_> {
    fn statements(migration: &Migration) -> &'static str {
        migration.sqlite
    }

    async fn begin(&mut self) -> Result<(), StorageError> {
        Ok(())
    }

    async fn current_version(&mut self) -> Result<u32, StorageError> {
        self.0
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(backend("read schema version"))
    }

    async fn apply(&mut self, version: u32, statements: &'static str) -> Result<(), StorageError> {
        let failed = |err: rusqlite::Error| StorageError::Migration {
            version,
            reason: err.to_string(),
        };
        let tx = self
            .0
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        tx.execute_batch(statements).map_err(failed)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(failed)?;
        tx.commit().map_err(failed)
    }

    async fn end(&mut self) -> Result<(), StorageError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;
    use crate::AccountStore as _;
    use crate::account_tests::{alice, credentials, dump};
    use crate::sqlite::SqliteStore;
    use crate::sqlite::tests::{raw_connection, user_version};

    #[tokio::test]
    async fn reopen_keeps_data_and_does_not_rerun_migrations() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("starling.db");
        let creds = credentials(7);
        {
            let store = SqliteStore::open(&path).expect("first open");
            store
                .create_account(&alice(), &creds)
                .await
                .expect("create");
        }
        // Re-running migration 1 would fail on CREATE TABLE accounts, so a successful reopen
        // also shows the applied version was skipped.
        let store = SqliteStore::open(&path).expect("reopen");
        assert_eq!(user_version(&raw_connection(&store)), 4);
        let stored = store.credentials(&alice()).await.expect("read");
        assert_eq!(stored.as_ref().map(dump), Some(dump(&creds)));
        assert_eq!(store.list_accounts("example.org").await, Ok(vec![alice()]));
    }

    #[tokio::test]
    async fn version_2_database_gains_account_data_and_keeps_accounts() {
        use crate::{AccountDataStore as _, DataChange, DataQuota};
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("starling.db");
        {
            // What a version-2 build left behind: its two migrations and one account.
            let mut conn = Connection::open(&path).expect("open");
            migrate(&mut conn, &crate::migrations::MIGRATIONS[..2]).expect("versions 1 and 2");
            conn.execute(
                "INSERT INTO accounts (host, username) VALUES ('example.org', 'alice')",
                [],
            )
            .expect("insert account");
        }
        let store = SqliteStore::open(&path).expect("upgrade");
        assert_eq!(user_version(&raw_connection(&store)), 4);
        assert_eq!(store.list_accounts("example.org").await, Ok(vec![alice()]));
        let change = DataChange::Put {
            key: "card".to_owned(),
            value: b"<vCard/>".to_vec(),
        };
        assert_eq!(
            store
                .data_apply(&alice(), "vcard", &[change], DataQuota::UNLIMITED)
                .await,
            Ok(true)
        );
        assert_eq!(
            store.data_get(&alice(), "vcard", "card").await,
            Ok(Some(b"<vCard/>".to_vec()))
        );
    }

    #[tokio::test]
    async fn version_3_database_gains_archives_and_keeps_accounts() {
        use crate::{
            ArchiveFilter, ArchiveQuota, ArchiveStore as _, ArchivedMessage, Direction, PageFrom,
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("starling.db");
        {
            let mut conn = Connection::open(&path).expect("open");
            migrate(&mut conn, &crate::migrations::MIGRATIONS[..3]).expect("versions 1 to 3");
            conn.execute(
                "INSERT INTO accounts (host, username) VALUES ('example.org', 'alice')",
                [],
            )
            .expect("insert account");
        }
        let store = SqliteStore::open(&path).expect("upgrade");
        assert_eq!(user_version(&raw_connection(&store)), 4);
        let message = ArchivedMessage {
            id: crate::id_at(1000, [1; 10]),
            with: crate::account_tests::jid("bob@example.org"),
            with_resource: None,
            direction: Direction::Incoming,
            origin_id: None,
            stanza: "<message/>".to_owned(),
        };
        assert_eq!(
            store
                .archive_append(&[(alice(), message.clone())], ArchiveQuota::UNLIMITED)
                .await,
            Ok(vec![crate::Appended::Stored])
        );
        let page = store
            .archive_page(&alice(), &ArchiveFilter::default(), PageFrom::Newest, 5)
            .await
            .expect("page");
        assert_eq!(page.messages, vec![message]);
    }

    /// Migrations with statements for SQLite only, for tests of the runner on a connection.
    fn sqlite_only(list: &[(u32, &'static str)]) -> Vec<Migration> {
        list.iter()
            .map(|&(version, sqlite)| Migration {
                version,
                sqlite,
                postgres: "",
            })
            .collect()
    }

    #[test]
    fn migrate_applies_only_missing_versions() {
        let mut conn = Connection::open_in_memory().expect("open");
        let log_v1 = "CREATE TABLE log (entry TEXT NOT NULL); INSERT INTO log VALUES ('v1');";
        let log_v2 = "INSERT INTO log VALUES ('v2');";
        migrate(&mut conn, &sqlite_only(&[(1, log_v1)])).expect("first migration");
        let both = sqlite_only(&[(1, log_v1), (2, log_v2)]);
        migrate(&mut conn, &both).expect("second migration");
        migrate(&mut conn, &both).expect("nothing to do");
        let mut stmt = conn.prepare("SELECT entry FROM log").expect("prepare");
        let entries: Vec<String> = stmt
            .query_map([], |row| row.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(entries, ["v1", "v2"]);
        assert_eq!(user_version(&conn), 2);
    }

    #[test]
    fn failed_migration_rolls_back_and_names_its_version() {
        let mut conn = Connection::open_in_memory().expect("open");
        let err = migrate(
            &mut conn,
            &sqlite_only(&[
                (1, "CREATE TABLE t (x INTEGER);"),
                (
                    2,
                    "INSERT INTO t VALUES (1); INSERT INTO missing VALUES (1);",
                ),
            ]),
        )
        .expect_err("migration 2 refers to a missing table");
        assert_eq!(
            err,
            StorageError::Migration {
                version: 2,
                reason: "no such table: missing".to_owned(),
            }
        );
        assert_eq!(user_version(&conn), 1);
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .expect("count");
        assert_eq!(rows, 0);
    }

    #[test]
    fn newer_database_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("future.db");
        {
            let conn = Connection::open(&path).expect("open");
            conn.pragma_update(None, "user_version", 5)
                .expect("set version");
        }
        let err = SqliteStore::open(&path).err();
        assert_eq!(
            err,
            Some(StorageError::Migration {
                version: 5,
                reason: "database schema is newer than this build, which knows versions up to 4"
                    .to_owned(),
            })
        );
    }
}
