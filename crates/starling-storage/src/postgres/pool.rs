//! A small pool of PostgreSQL connections: at most a fixed number open, idle ones reused,
//! closed ones discarded.
//!
//! Written here rather than taken from deadpool-postgres because the store needs only this
//! much; see `ARCHITECTURE.md` (`starling-storage`).

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::{Client, Config, GenericClient, Statement};

use super::tls::RustlsConnect;

use crate::StorageError;

/// How many connections one store keeps open at most. Each is a server process on the
/// PostgreSQL side, and account operations are short, so a handful serve a busy node; a
/// request beyond this waits for a connection to come back rather than opening another.
pub(super) const MAX_CONNECTIONS: usize = 8;

/// How long opening a connection may take when the connection string names no
/// `connect_timeout` of its own. Without one, an unreachable host would hang start-up for as
/// long as the operating system keeps retrying the TCP handshake.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) struct Pool {
    config: Config,
    /// TLS for new connections, as `sslmode` asked (it decides whether TLS is tried at all).
    tls: RustlsConnect,
    /// Bounds the connections in use plus the idle ones: a permit per connection.
    permits: Semaphore,
    /// Connections not lent out. A `std::sync::Mutex` because it is held only to push or pop,
    /// never across an await.
    idle: Mutex<Vec<Connection>>,
}

/// One open connection and the statements prepared on it.
pub(super) struct Connection {
    pub(super) client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl Connection {
    /// The statement for `sql`, prepared on this connection the first time it is asked for.
    ///
    /// `client` is this connection's client or a transaction on it (which borrows the client
    /// mutably, hence the separate argument).
    pub(super) async fn prepare(
        statements: &mut HashMap<&'static str, Statement>,
        client: &impl GenericClient,
        sql: &'static str,
    ) -> Result<Statement, StorageError> {
        if let Some(statement) = statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = client
            .prepare(sql)
            .await
            .map_err(super::backend("prepare statement"))?;
        statements.insert(sql, statement.clone());
        Ok(statement)
    }

    /// The client and the statement cache, borrowed separately.
    pub(super) fn parts(&mut self) -> (&mut Client, &mut HashMap<&'static str, Statement>) {
        (&mut self.client, &mut self.statements)
    }
}

impl Pool {
    pub(super) fn new(mut config: Config, tls: RustlsConnect) -> Self {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        Self {
            config,
            tls,
            permits: Semaphore::new(MAX_CONNECTIONS),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Lends out a connection, waiting while all [`MAX_CONNECTIONS`] are in use and opening a
    /// new one when no idle connection is left.
    pub(super) async fn get(&self) -> Result<Pooled<'_>, StorageError> {
        let permit = self
            .permits
            .acquire()
            .await
            // Invariant: the semaphore is owned by the pool and never closed.
            .map_err(|_| StorageError::Backend("connection pool closed".to_owned()))?;
        let reused = loop {
            let next = self.lock_idle().pop();
            match next {
                // The server ended it (restart, idle timeout, pg_terminate_backend).
                Some(conn) if conn.client.is_closed() => continue,
                // `is_closed` only turns true once the connection task has noticed the end,
                // which can lag behind the server closing it; an empty query settles it before
                // a caller's real statement fails on a dead connection.
                Some(conn) => match conn.client.simple_query("").await {
                    Ok(_) => break Some(conn),
                    Err(_) => continue,
                },
                None => break None,
            }
        };
        let conn = match reused {
            Some(conn) => conn,
            None => self.open().await?,
        };
        Ok(Pooled {
            conn: Some(conn),
            pool: self,
            _permit: permit,
        })
    }

    async fn open(&self) -> Result<Connection, StorageError> {
        let (client, connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(super::backend("connect to postgres"))?;
        // The connection future does the socket I/O for the client; it ends when the client is
        // dropped or the server goes away, after which `client.is_closed()` is true and the
        // pool discards the client. Its error, if any, reaches the caller through the next
        // query on the client, so nothing is lost by ignoring it here.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection {
            client,
            statements: HashMap::new(),
        })
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // Pushing or popping a Vec cannot leave it inconsistent, so a poisoned lock is fine.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection lent out by the pool; it goes back when dropped.
pub(super) struct Pooled<'a> {
    /// `Some` until dropped.
    conn: Option<Connection>,
    pool: &'a Pool,
    /// Released after the connection is back in the idle list, so a waiter finds it there.
    _permit: SemaphorePermit<'a>,
}

impl Deref for Pooled<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        // Invariant: `conn` is taken only in `drop`.
        self.conn.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        // Invariant: `conn` is taken only in `drop`.
        self.conn.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        // A transaction dropped without commit has already queued its ROLLBACK on the client,
        // ahead of anything the next borrower sends, so the connection is clean to reuse.
        if let Some(conn) = self.conn.take()
            && !conn.client.is_closed()
        {
            self.pool.lock_idle().push(conn);
        }
    }
}
