//! The SQLite backend, Starling's embedded default store.
//!
//! Writes go through one connection behind a mutex, run on tokio's blocking pool, since a
//! commit waits for the disk. Reads of a database file use a second connection and run on
//! the calling task when that connection is free (WAL readers never wait for the writer, and
//! a cached read takes microseconds, less than handing it to another thread), else on the
//! blocking pool. Opening a database applies the schema migrations it lacks, tracked in
//! `PRAGMA user_version` (`migrations`).
//!
//! The connections live here; each concern is a module, as in the PostgreSQL backend:
//! `accounts`, `roster`, `offline`, `data`, `archive`, `portable` and `migrations`.

mod accounts;
pub(crate) mod archive;
mod data;
pub(crate) mod migrations;
pub(crate) mod offline;
mod portable;
mod roster;

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, TryLockError};
use std::time::Duration;

use jid::BareJid;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::StorageError;
use crate::migrations::MIGRATIONS;

/// How long a statement waits for another process's write lock before failing with
/// `SQLITE_BUSY`. Within one process the mutex already serialises access; this covers an
/// operator's `sqlite3` shell or a second server pointed at the same file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// An [`AccountStore`], [`RosterStore`], [`OfflineStore`], [`AccountDataStore`] and
/// [`PortableStore`] in one SQLite database file (or in memory, for tests).
///
/// [`AccountStore`]: crate::AccountStore
/// [`RosterStore`]: crate::RosterStore
/// [`OfflineStore`]: crate::OfflineStore
/// [`AccountDataStore`]: crate::AccountDataStore
/// [`PortableStore`]: crate::PortableStore
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
        migrations::migrate(&mut conn, MIGRATIONS)?;
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

impl SqliteStore {
    /// Runs the read-only `f` with the reading connection, always on the blocking pool: for
    /// reads that scan a whole host (counts for reports and offers), which should not hold a
    /// runtime worker however many accounts there are.
    pub(crate) async fn scan<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        F: FnOnce(&mut Connection) -> Result<T, StorageError> + Send + 'static,
        T: Send + 'static,
    {
        on_blocking_pool(Arc::clone(self.reader.as_ref().unwrap_or(&self.conn)), f).await
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

/// Starts a transaction that takes the write lock up front, so it cannot fail halfway with
/// `SQLITE_BUSY` when upgrading from a read lock.
pub(crate) fn write_transaction(conn: &mut Connection) -> Result<Transaction<'_>, StorageError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend("begin write transaction"))
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

/// Maps a rusqlite error to [`StorageError::Backend`], prefixed with what was being done.
pub(crate) fn backend(context: &str) -> impl FnOnce(rusqlite::Error) -> StorageError + '_ {
    move |err| StorageError::Backend(format!("{context}: {err}"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::AccountStore as _;
    use crate::account_tests::{alice, credentials};

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

    pub(crate) fn user_version(conn: &Connection) -> u32 {
        conn.pragma_query_value(None, "user_version", |row| row.get(0))
            .expect("user_version is readable")
    }

    pub(crate) fn raw_connection(store: &SqliteStore) -> std::sync::MutexGuard<'_, Connection> {
        store
            .conn
            .lock()
            .expect("no test panics while holding the lock")
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
        assert_eq!(user_version(&conn), 4);
    }
}
