//! The SQLite backend, Starling's embedded default store.
//!
//! Writes go through one connection behind a mutex, run on tokio's blocking pool, since a
//! commit waits for the disk. Reads of a database file use a second connection and run on
//! the calling task when that connection is free (WAL readers never wait for the writer, and
//! a cached read takes microseconds, less than handing it to another thread), else on the
//! blocking pool. Opening a database applies the schema migrations it lacks, tracked in
//! `PRAGMA user_version`.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, TryLockError};
use std::time::Duration;

use jid::{BareJid, DomainPart, NodePart};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use starling_sasl::{ScramKeys, StoredCredentials};

use crate::scram_names::{hash_name, hash_rank, parse_hash_name};
use crate::{AccountStore, StorageError};

/// How long a statement waits for another process's write lock before failing with
/// `SQLITE_BUSY`. Within one process the mutex already serialises access; this covers an
/// operator's `sqlite3` shell or a second server pointed at the same file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema migrations, applied in order. Each runs in its own transaction together with the
/// `user_version` bump, so a crash leaves the database at the previous version, never between.
/// Append new versions; never edit one that has shipped.
const MIGRATIONS: &[(u32, &str)] = &[
    (1, SCHEMA_V1),
    (2, crate::sqlite_roster::SCHEMA_V2),
    (3, crate::sqlite_data::SCHEMA_V3),
];

/// Accounts keyed by (host, username), the JID's domainpart and localpart as normalised by the
/// jid crate, and one row of SCRAM keys per hash. `hash` has no CHECK constraint on purpose:
/// SQLite cannot alter a CHECK without rebuilding the table, and a row with a name this build
/// does not know is reported as [`StorageError::Corrupt`] on read.
const SCHEMA_V1: &str = "
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

/// An [`AccountStore`] in one SQLite database file (or in memory, for tests).
///
/// Cloning is cheap and every clone shares the connections.
#[derive(Clone)]
pub struct SqliteStore {
    /// The connection every write goes through.
    ///
    /// A `std::sync::Mutex` rather than tokio's: the lock is never held across an `.await`
    /// (writes take it inside `spawn_blocking` closures, reads for one synchronous call), so
    /// tokio's mutex, made for guards that live across awaits, would only add overhead. One
    /// writing connection serialises the writes, which SQLite does anyway.
    conn: Arc<Mutex<Connection>>,
    /// A second connection for reads (`query_only`), so they do not wait for a write's
    /// commit; `None` for an in-memory database, which another connection cannot see, where
    /// reads share `conn`.
    reader: Option<Arc<Mutex<Connection>>>,
}

/// Mode of the database file and its companions.
#[cfg(unix)]
const DATABASE_FILE_MODE: u32 = 0o600;

/// Create the database file with mode 0600 if it does not exist, so SQLite never creates it
/// with the umask's mode, and narrow an existing one to 0600.
#[cfg(unix)]
fn create_private(path: &Path) -> Result<(), StorageError> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let failed = |what: &'static str| {
        move |err: std::io::Error| {
            StorageError::Backend(format!("{what} {}: {err}", path.display()))
        }
    };
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(DATABASE_FILE_MODE)
        .open(path)
    {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(failed("create sqlite database")(err)),
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(DATABASE_FILE_MODE))
        .map_err(failed("make private the sqlite database"))
}

/// Narrow the `-wal` and `-shm` files of an existing database to 0600: SQLite copies the
/// database's mode when it creates them, but ones left by an earlier run keep theirs.
#[cfg(unix)]
fn narrow_companions(path: &Path) -> Result<(), StorageError> {
    use std::os::unix::fs::PermissionsExt as _;
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::set_permissions(&name, std::fs::Permissions::from_mode(DATABASE_FILE_MODE)) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(StorageError::Backend(format!(
                    "make private {}: {err}",
                    std::path::Path::new(&name).display()
                )));
            }
        }
    }
    Ok(())
}

/// Statements each connection keeps prepared: every statement of this backend fits, so none
/// is parsed again after its first use.
const STATEMENT_CACHE: usize = 64;

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, switches it to WAL mode and applies
    /// any migrations it lacks.
    ///
    /// Fails with [`StorageError::Migration`] if the file was written by a newer schema.
    /// The file and its `-wal` and `-shm` companions are made readable by this user only
    /// (mode 0600; the database holds SCRAM keys and messages): a new file is created with
    /// that mode before SQLite opens it (SQLite gives the companions the database's mode), and
    /// an existing one is narrowed.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        #[cfg(unix)]
        create_private(path)?;
        let open = || {
            Connection::open(path)
                .map_err(backend(&format!("open sqlite database {}", path.display())))
        };
        let mut store = Self::setup(open()?)?;
        // Opened after `setup`, so the file is already in WAL mode and fully migrated.
        let reader = open()?;
        reader
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(backend("set busy timeout"))?;
        reader
            .pragma_update(None, "query_only", true)
            .map_err(backend("make the read connection read-only"))?;
        reader.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        store.reader = Some(Arc::new(Mutex::new(reader)));
        #[cfg(unix)]
        narrow_companions(path)?;
        Ok(store)
    }

    /// Opens a private in-memory database, gone when the last clone is dropped.
    pub fn open_in_memory() -> Result<Self, StorageError> {
        let conn =
            Connection::open_in_memory().map_err(backend("open in-memory sqlite database"))?;
        Self::setup(conn)
    }

    fn setup(mut conn: Connection) -> Result<Self, StorageError> {
        // WAL lets readers proceed while a write is in progress. An in-memory database answers
        // "memory" and keeps that mode, which is fine.
        let _mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(backend("enable WAL journal mode"))?;
        // Foreign keys are off by default in SQLite and the setting is per connection; the
        // scram_keys cascade depends on it.
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(backend("enable foreign keys"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(backend("set busy timeout"))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        migrate(&mut conn, MIGRATIONS)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            reader: None,
        })
    }

    /// Runs `f` with the writing connection on the blocking pool.
    pub(crate) async fn with_conn<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        F: FnOnce(&mut Connection) -> Result<T, StorageError> + Send + 'static,
        T: Send + 'static,
    {
        on_blocking_pool(Arc::clone(&self.conn), f).await
    }

    /// Runs the read-only `f` with the reading connection: here and now when it is free,
    /// else on the blocking pool once it is. Reads that take several statements should run
    /// them in one transaction, so that they see one snapshot.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        F: FnOnce(&mut Connection) -> Result<T, StorageError> + Send + 'static,
        T: Send + 'static,
    {
        let conn = self.reader.as_ref().unwrap_or(&self.conn);
        // The guard must be gone before the await below, or the future would hold it.
        let f = match conn.try_lock() {
            Ok(mut guard) => return f(&mut guard),
            // See `on_blocking_pool` on why a poisoned lock is safe to reuse.
            Err(TryLockError::Poisoned(poisoned)) => return f(&mut poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => f,
        };
        on_blocking_pool(Arc::clone(conn), f).await
    }
}

/// Runs `f` with `conn` locked, on the blocking pool.
async fn on_blocking_pool<T, F>(conn: Arc<Mutex<Connection>>, f: F) -> Result<T, StorageError>
where
    F: FnOnce(&mut Connection) -> Result<T, StorageError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        // A panic while the lock was held cannot leave the database half-written: an open
        // `Transaction` rolls back when dropped during unwinding. So a poisoned lock still
        // guards a consistent connection and is safe to reuse.
        let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut conn)
    })
    .await
    .map_err(|err| StorageError::Backend(format!("sqlite task did not complete: {err}")))?
}

impl AccountStore for SqliteStore {
    async fn create_account(
        &self,
        jid: &BareJid,
        creds: &StoredCredentials,
    ) -> Result<(), StorageError> {
        let key = AccountKey::of(jid).ok_or_else(|| StorageError::NoLocalpart(jid.clone()))?;
        let (jid, creds) = (jid.clone(), creds.clone());
        self.with_conn(move |conn| {
            let tx = write_transaction(conn)?;
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO accounts (host, username) VALUES (?1, ?2)
                     ON CONFLICT (host, username) DO NOTHING",
                )
                .and_then(|mut stmt| stmt.execute(params![key.host, key.username]))
                .map_err(backend("insert account"))?;
            if inserted == 0 {
                return Err(StorageError::AccountExists(jid));
            }
            insert_keys(&tx, tx.last_insert_rowid(), &creds)?;
            tx.commit().map_err(backend("commit new account"))
        })
        .await
    }

    async fn set_credentials(
        &self,
        jid: &BareJid,
        creds: &StoredCredentials,
    ) -> Result<(), StorageError> {
        let not_found = StorageError::AccountNotFound(jid.clone());
        let Some(key) = AccountKey::of(jid) else {
            return Err(not_found);
        };
        let creds = creds.clone();
        self.with_conn(move |conn| {
            let tx = write_transaction(conn)?;
            let account_id: Option<i64> = tx
                .prepare_cached("SELECT id FROM accounts WHERE host = ?1 AND username = ?2")
                .and_then(|mut stmt| {
                    stmt.query_row(params![key.host, key.username], |row| row.get(0))
                })
                .optional()
                .map_err(backend("look up account"))?;
            let Some(account_id) = account_id else {
                return Err(not_found);
            };
            tx.prepare_cached("DELETE FROM scram_keys WHERE account_id = ?1")
                .and_then(|mut stmt| stmt.execute(params![account_id]))
                .map_err(backend("delete old scram keys"))?;
            insert_keys(&tx, account_id, &creds)?;
            tx.commit().map_err(backend("commit new credentials"))
        })
        .await
    }

    async fn delete_account(&self, jid: &BareJid) -> Result<(), StorageError> {
        let not_found = StorageError::AccountNotFound(jid.clone());
        let Some(key) = AccountKey::of(jid) else {
            return Err(not_found);
        };
        self.with_conn(move |conn| {
            // One statement is atomic on its own; the keys go with it through ON DELETE CASCADE.
            let deleted = conn
                .prepare_cached("DELETE FROM accounts WHERE host = ?1 AND username = ?2")
                .and_then(|mut stmt| stmt.execute(params![key.host, key.username]))
                .map_err(backend("delete account"))?;
            if deleted == 0 {
                return Err(not_found);
            }
            Ok(())
        })
        .await
    }

    async fn credentials(&self, jid: &BareJid) -> Result<Option<StoredCredentials>, StorageError> {
        let Some(key) = AccountKey::of(jid) else {
            return Ok(None);
        };
        let jid = jid.clone();
        self.read(move |conn| {
            // One statement, so the account and its keys come from one consistent snapshot.
            // An account without keys yields one row of NULLs from the LEFT JOIN.
            let mut stmt = conn
                .prepare_cached(
                    "SELECT k.hash, k.salt, k.iterations, k.stored_key, k.server_key
                     FROM accounts a LEFT JOIN scram_keys k ON k.account_id = a.id
                     WHERE a.host = ?1 AND a.username = ?2",
                )
                .map_err(backend("prepare credentials query"))?;
            let mut rows = stmt
                .query(params![key.host, key.username])
                .map_err(backend("query credentials"))?;
            let mut found = false;
            let mut keys = Vec::new();
            while let Some(row) = rows.next().map_err(backend("read credentials row"))? {
                found = true;
                let hash: Option<String> = row.get(0).map_err(backend("read hash name"))?;
                let Some(hash) = hash else { continue };
                let iterations: i64 = row.get(2).map_err(backend("read iteration count"))?;
                keys.push(ScramKeys {
                    hash: parse_hash_name(&hash).ok_or_else(|| {
                        StorageError::Corrupt(format!("unknown hash {hash:?} in keys of {jid}"))
                    })?,
                    salt: row.get(1).map_err(backend("read salt"))?,
                    iterations: u32::try_from(iterations).map_err(|_| {
                        StorageError::Corrupt(format!(
                            "iteration count {iterations} out of range in {hash} keys of {jid}"
                        ))
                    })?,
                    stored_key: row.get(3).map_err(backend("read stored key"))?,
                    server_key: row.get(4).map_err(backend("read server key"))?,
                });
            }
            keys.sort_by_key(|keys| hash_rank(keys.hash));
            Ok(found.then_some(StoredCredentials { keys }))
        })
        .await
    }

    async fn list_accounts(&self, host: &str) -> Result<Vec<BareJid>, StorageError> {
        let Ok(domain) = DomainPart::new(host).map(|domain| domain.into_owned()) else {
            return Ok(Vec::new());
        };
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT username FROM accounts WHERE host = ?1")
                .map_err(backend("prepare account list query"))?;
            let usernames = stmt
                .query_map(params![domain.as_str()], |row| row.get::<_, String>(0))
                .map_err(backend("list accounts"))?;
            let mut accounts = Vec::new();
            for username in usernames {
                let username = username.map_err(backend("read username"))?;
                let node = NodePart::new(&username).map_err(|err| {
                    StorageError::Corrupt(format!(
                        "stored username {username:?} on {domain} is not a valid localpart: {err}"
                    ))
                })?;
                accounts.push(BareJid::from_parts(Some(&node), &domain));
            }
            // Sorted here rather than with ORDER BY, because BareJid's order (of the whole
            // "user@host" string) is not the order of usernames alone, and SQL collations
            // differ between backends.
            accounts.sort();
            Ok(accounts)
        })
        .await
    }
}

/// The (host, username) columns that identify an account.
struct AccountKey {
    host: String,
    username: String,
}

impl AccountKey {
    /// `None` for a bare domain, which has no localpart and so no account.
    fn of(jid: &BareJid) -> Option<Self> {
        Some(Self {
            host: jid.domain().as_str().to_owned(),
            username: jid.node()?.as_str().to_owned(),
        })
    }
}

/// Applies the migrations newer than the database's `user_version`, each in its own
/// transaction.
fn migrate(conn: &mut Connection, migrations: &[(u32, &str)]) -> Result<(), StorageError> {
    let current: u32 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(backend("read schema version"))?;
    let newest = migrations.last().map_or(0, |&(version, _)| version);
    if current > newest {
        return Err(StorageError::Migration {
            version: current,
            reason: format!(
                "database schema is newer than this build, which knows versions up to {newest}"
            ),
        });
    }
    for &(version, sql) in migrations.iter().filter(|&&(version, _)| version > current) {
        let failed = |err: rusqlite::Error| StorageError::Migration {
            version,
            reason: err.to_string(),
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        tx.execute_batch(sql).map_err(failed)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
    }
    Ok(())
}

/// Starts a transaction that takes the write lock up front, so it cannot fail halfway with
/// `SQLITE_BUSY` when upgrading from a read lock.
pub(crate) fn write_transaction(conn: &mut Connection) -> Result<Transaction<'_>, StorageError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend("begin write transaction"))
}

pub(crate) fn insert_keys(
    tx: &Transaction<'_>,
    account_id: i64,
    creds: &StoredCredentials,
) -> Result<(), StorageError> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO scram_keys (account_id, hash, salt, iterations, stored_key, server_key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(backend("prepare scram key insert"))?;
    for keys in &creds.keys {
        let name = hash_name(keys.hash);
        stmt.execute(params![
            account_id,
            name,
            keys.salt,
            keys.iterations,
            keys.stored_key,
            keys.server_key
        ])
        .map_err(backend(&format!("insert {name} keys")))?;
    }
    Ok(())
}

/// Maps a rusqlite error to [`StorageError::Backend`], prefixed with what was being done.
pub(crate) fn backend(context: &str) -> impl FnOnce(rusqlite::Error) -> StorageError + '_ {
    move |err| StorageError::Backend(format!("{context}: {err}"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::account_tests::{alice, credentials, dump};

    pub(crate) fn memory_store() -> SqliteStore {
        SqliteStore::open_in_memory().expect("in-memory database opens")
    }

    // Issue 15: the database holds password equivalents (SCRAM keys) and private messages, so
    // it and its -wal and -shm files are 0600 whatever the umask, and an existing file opened
    // with a wider mode is narrowed.
    #[cfg(unix)]
    #[tokio::test]
    async fn database_files_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("scratch directory");
        let path = dir.path().join("starling.sqlite");
        let store = SqliteStore::open(&path).expect("database opens");
        store
            .create_account(&alice(), &credentials(1))
            .await
            .expect("a write creates the WAL");
        let mode = |suffix: &str| {
            let mut name = path.clone().into_os_string();
            name.push(suffix);
            std::fs::metadata(&name)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or_else(|err| panic!("{name:?}: {err}"))
        };
        assert_eq!(
            [mode(""), mode("-wal"), mode("-shm")],
            [0o600; 3],
            "database, -wal, -shm"
        );
        drop(store);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let _store = SqliteStore::open(&path).expect("database opens again");
        assert_eq!(mode(""), 0o600, "an existing database is narrowed");
    }

    crate::account_tests::account_store_tests!(memory_store());

    /// A store on a database file, where reads use the second connection; the directory
    /// lives as long as the value.
    pub(crate) struct FileStore {
        pub(crate) store: SqliteStore,
        _dir: tempfile::TempDir,
    }

    pub(crate) fn file_store() -> FileStore {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("starling.db")).expect("open");
        assert!(
            store.reader.is_some(),
            "a file store reads on its own connection"
        );
        FileStore { store, _dir: dir }
    }

    mod on_file {
        use super::file_store;
        crate::account_tests::account_store_tests!(file_store().store);
    }

    #[tokio::test]
    async fn the_read_connection_refuses_writes() {
        let file = file_store();
        let result = file
            .store
            .read(|conn| {
                conn.execute("DELETE FROM accounts", [])
                    .map_err(backend("delete through the reader"))
            })
            .await;
        assert!(
            matches!(&result, Err(StorageError::Backend(message)) if message.contains("readonly")),
            "{result:?}"
        );
    }

    #[tokio::test]
    #[expect(
        clippy::await_holding_lock,
        reason = "the test holds the reader's lock to make a lookup wait for it"
    )]
    async fn a_read_while_the_reader_is_busy_waits_for_it() {
        let file = file_store();
        file.store
            .create_account(&alice(), &credentials(1))
            .await
            .expect("create");
        let reader = Arc::clone(file.store.reader.as_ref().expect("reader"));
        let held = reader.lock().expect("lock");
        let store = file.store.clone();
        let lookup = tokio::spawn(async move { store.credentials(&alice()).await });
        // The lookup cannot take the reader here, so it waits on the blocking pool.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!lookup.is_finished());
        drop(held);
        let found = lookup.await.expect("join").expect("lookup");
        assert_eq!(found, Some(credentials(1)));
    }

    fn user_version(conn: &Connection) -> u32 {
        conn.pragma_query_value(None, "user_version", |row| row.get(0))
            .expect("user_version is readable")
    }

    fn raw_connection(store: &SqliteStore) -> std::sync::MutexGuard<'_, Connection> {
        store
            .conn
            .lock()
            .expect("no test panics while holding the lock")
    }

    #[test]
    fn migrations_are_strictly_increasing_from_one() {
        let versions: Vec<u32> = MIGRATIONS.iter().map(|&(version, _)| version).collect();
        let expected: Vec<u32> =
            (1..=u32::try_from(MIGRATIONS.len()).expect("few migrations")).collect();
        assert_eq!(versions, expected);
    }

    #[test]
    fn open_sets_pragmas_and_schema_version() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("starling.db")).expect("open");
        let conn = raw_connection(&store);
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .expect("journal_mode");
        let foreign_keys: i64 = conn
            .pragma_query_value(None, "foreign_keys", |row| row.get(0))
            .expect("foreign_keys");
        let busy_timeout_ms: i64 = conn
            .pragma_query_value(None, "busy_timeout", |row| row.get(0))
            .expect("busy_timeout");
        assert_eq!(mode, "wal");
        assert_eq!(foreign_keys, 1);
        assert_eq!(busy_timeout_ms, 5000);
        assert_eq!(user_version(&conn), 3);
    }

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
        assert_eq!(user_version(&raw_connection(&store)), 3);
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
            migrate(&mut conn, &MIGRATIONS[..2]).expect("versions 1 and 2");
            conn.execute(
                "INSERT INTO accounts (host, username) VALUES ('example.org', 'alice')",
                [],
            )
            .expect("insert account");
        }
        let store = SqliteStore::open(&path).expect("upgrade");
        assert_eq!(user_version(&raw_connection(&store)), 3);
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

    #[test]
    fn migrate_applies_only_missing_versions() {
        let mut conn = Connection::open_in_memory().expect("open");
        let log_v1 = "CREATE TABLE log (entry TEXT NOT NULL); INSERT INTO log VALUES ('v1');";
        let log_v2 = "INSERT INTO log VALUES ('v2');";
        migrate(&mut conn, &[(1, log_v1)]).expect("first migration");
        migrate(&mut conn, &[(1, log_v1), (2, log_v2)]).expect("second migration");
        migrate(&mut conn, &[(1, log_v1), (2, log_v2)]).expect("nothing to do");
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
            &[
                (1, "CREATE TABLE t (x INTEGER);"),
                (
                    2,
                    "INSERT INTO t VALUES (1); INSERT INTO missing VALUES (1);",
                ),
            ],
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
            conn.pragma_update(None, "user_version", 4)
                .expect("set version");
        }
        let err = SqliteStore::open(&path).err();
        assert_eq!(
            err,
            Some(StorageError::Migration {
                version: 4,
                reason: "database schema is newer than this build, which knows versions up to 3"
                    .to_owned(),
            })
        );
    }

    #[tokio::test]
    async fn delete_cascades_to_keys() {
        let store = memory_store();
        store
            .create_account(&alice(), &credentials(1))
            .await
            .expect("create");
        store.delete_account(&alice()).await.expect("delete");
        let keys: i64 = raw_connection(&store)
            .query_row("SELECT count(*) FROM scram_keys", [], |row| row.get(0))
            .expect("count");
        assert_eq!(keys, 0);
    }

    #[tokio::test]
    async fn duplicate_hash_is_a_backend_error() {
        let store = memory_store();
        let mut creds = credentials(1);
        creds.keys.push(creds.keys[0].clone());
        assert_eq!(
            store.create_account(&alice(), &creds).await,
            Err(StorageError::Backend(
                "insert SCRAM-SHA-1 keys: UNIQUE constraint failed: \
                 scram_keys.account_id, scram_keys.hash"
                    .to_owned()
            ))
        );
    }

    #[tokio::test]
    async fn unknown_hash_name_is_corrupt() {
        let store = memory_store();
        store
            .create_account(&alice(), &StoredCredentials::default())
            .await
            .expect("create");
        raw_connection(&store)
            .execute(
                "INSERT INTO scram_keys VALUES (1, 'SCRAM-MD5', x'00', 1, x'00', x'00')",
                [],
            )
            .expect("insert");
        assert_eq!(
            store.credentials(&alice()).await.err(),
            Some(StorageError::Corrupt(
                "unknown hash \"SCRAM-MD5\" in keys of alice@example.org".to_owned()
            ))
        );
    }

    #[tokio::test]
    async fn negative_iteration_count_is_corrupt() {
        let store = memory_store();
        store
            .create_account(&alice(), &StoredCredentials::default())
            .await
            .expect("create");
        raw_connection(&store)
            .execute(
                "INSERT INTO scram_keys VALUES (1, 'SCRAM-SHA-256', x'00', -1, x'00', x'00')",
                [],
            )
            .expect("insert");
        assert_eq!(
            store.credentials(&alice()).await.err(),
            Some(StorageError::Corrupt(
                "iteration count -1 out of range in SCRAM-SHA-256 keys of alice@example.org"
                    .to_owned()
            ))
        );
    }

    #[tokio::test]
    async fn concurrent_creates_all_land() {
        let store = memory_store();
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let jid = BareJid::new(&format!("user{i:02}@example.org")).expect("valid JID");
                    store.create_account(&jid, &credentials(i)).await
                })
            })
            .collect();
        for task in tasks {
            task.await
                .expect("task completes")
                .expect("create succeeds");
        }
        let listed = store.list_accounts("example.org").await.expect("list");
        assert_eq!(listed.len(), 16);
        assert_eq!(
            listed.first().map(|jid| jid.to_string()),
            Some("user00@example.org".to_owned())
        );
        assert_eq!(
            listed.last().map(|jid| jid.to_string()),
            Some("user15@example.org".to_owned())
        );
    }
}
