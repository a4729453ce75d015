//! The PostgreSQL backend, for operators who run several nodes or already run PostgreSQL.
//!
//! A small pool of `tokio-postgres` connections (`pool`), over TCP or a Unix socket, with TLS
//! as the connection string's `sslmode` asks (`tls`). Connecting applies the schema migrations
//! the database lacks, tracked in a `schema_migrations` table (`migrations`); the logical
//! schema is the SQLite backend's. Each concern is a module, as in the SQLite backend:
//! `accounts`, `roster`, `offline`, `data`, `archive`, `portable` and `migrations`.

mod accounts;
mod archive;
mod data;
pub(crate) mod migrations;
mod offline;
mod pool;
mod portable;
mod roster;
mod tls;

use tokio_postgres::Config;

use self::pool::Pool;
pub use self::tls::{SslMode, TlsConfigError, TlsSettings};
use crate::StorageError;
use crate::migrations::MIGRATIONS;

/// The statements prepared on one connection, by SQL text.
type Statements = std::collections::HashMap<&'static str, tokio_postgres::Statement>;

/// Locks one account row against concurrent writers of its roster, offline messages or
/// module data (see `roster` for the locking rules).
const LOCK_ACCOUNT: &str =
    "SELECT id FROM accounts WHERE host = $1 AND username = $2 FOR NO KEY UPDATE";

/// Locks `account`'s row in `tx` ([`LOCK_ACCOUNT`]) and returns its id; `None` when there is no
/// such account. A transaction that locks several takes them in [`BareJid`] order.
async fn lock_account(
    statements: &mut Statements,
    tx: &impl tokio_postgres::GenericClient,
    account: &jid::BareJid,
) -> Result<Option<i64>, StorageError> {
    let Some(key) = crate::AccountKey::of(account) else {
        return Ok(None);
    };
    let lock = pool::Connection::prepare(statements, tx, LOCK_ACCOUNT).await?;
    let row = tx
        .query_opt(&lock, &[&key.host, &key.username])
        .await
        .map_err(backend("lock account"))?;
    row.map(|row| row.try_get(0).map_err(backend("read account id")))
        .transpose()
}

/// An [`AccountStore`], [`RosterStore`], [`OfflineStore`], [`AccountDataStore`] and
/// [`PortableStore`] in a PostgreSQL database.
///
/// [`AccountStore`]: crate::AccountStore
/// [`PortableStore`]: crate::PortableStore
/// [`RosterStore`]: crate::RosterStore
/// [`OfflineStore`]: crate::OfflineStore
/// [`AccountDataStore`]: crate::AccountDataStore
///
/// Cloning is cheap and every clone shares one pool of at most [`MAX_CONNECTIONS`]
/// connections.
///
/// [`MAX_CONNECTIONS`]: pool::MAX_CONNECTIONS
#[derive(Clone)]
pub struct PostgresStore {
    pool: std::sync::Arc<Pool>,
}

impl PostgresStore {
    /// Connects to the database named by `url` and applies any migrations it lacks.
    ///
    /// `url` is a libpq connection string, either `key=value` pairs
    /// (`host=127.0.0.1 port=5432 user=starling dbname=starling`) or a
    /// `postgresql://user@host:port/dbname` URI; `host` may be a Unix socket directory. TLS is
    /// not supported (`sslmode=require` fails to connect). A `connect_timeout` applies to every
    /// connection the pool opens; without one it is 10 seconds.
    ///
    /// Fails with [`StorageError::Backend`] if the string does not parse or the server cannot
    /// be reached, and with [`StorageError::Migration`] if the database was written by a newer
    /// schema or a migration fails. The error text never contains the connection string, which
    /// may hold a password.
    ///
    /// TLS follows the string's `sslmode` and `sslrootcert` (see [`TlsSettings`]); a mode
    /// that may fall back to plaintext (`disable`, or `prefer`, the default) is refused when a
    /// host is not on this machine. [`PostgresStore::connect_with`] can allow that.
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        Self::connect_with(url, false).await
    }

    /// [`PostgresStore::connect`], allowing plaintext to a remote host when
    /// `allow_plaintext_remote` (an operator's explicit choice).
    pub async fn connect_with(
        url: &str,
        allow_plaintext_remote: bool,
    ) -> Result<Self, StorageError> {
        let tls_error =
            |err: TlsConfigError| StorageError::Backend(format!("postgres TLS settings: {err}"));
        let (tls, rest) = TlsSettings::split(url).map_err(tls_error)?;
        let mut config: Config = rest
            .parse()
            .map_err(backend("parse postgres connection string"))?;
        tls.check_plaintext(&config, allow_plaintext_remote)
            .map_err(tls_error)?;
        config.ssl_mode(tls.driver_mode());
        let connector = tls.connector().map_err(tls_error)?;
        let pool = Pool::new(config, connector);
        {
            let mut conn = pool.get().await?;
            migrations::migrate(&mut conn.client, MIGRATIONS).await?;
        }
        Ok(Self {
            pool: std::sync::Arc::new(pool),
        })
    }
}

/// The server's own message for a database error (without its severity prefix), or the
/// client's description of anything else (I/O, protocol, closed connection).
pub(super) fn message(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => db.message().to_owned(),
        // tokio-postgres's own text omits the cause ("error performing TLS handshake"); the
        // chain says why (an unknown issuer, a refused connection). It never holds the
        // connection string.
        None => {
            let mut text = err.to_string();
            let mut source = std::error::Error::source(err);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    }
}

/// Maps a tokio-postgres error to [`StorageError::Backend`], prefixed with what was being
/// done.
fn backend(context: &str) -> impl FnOnce(tokio_postgres::Error) -> StorageError + '_ {
    move |err| StorageError::Backend(format!("{context}: {}", message(&err)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port nothing listens on: bound, then released.
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.local_addr().expect("local address").port()
    }

    #[tokio::test]
    async fn unreachable_server_is_a_backend_error() {
        let url = format!("host=127.0.0.1 port={} user=starling", closed_port());
        let err = PostgresStore::connect(&url).await.err();
        assert!(
            matches!(&err, Some(StorageError::Backend(text))
                if text.starts_with("connect to postgres: error connecting to server")),
            "{err:?}"
        );
    }

    // Issue 15: the default (sslmode=prefer) may fall back to plaintext, so to a host that is
    // not this machine it is refused before any byte is sent, naming the setting.
    #[tokio::test]
    async fn plaintext_to_a_remote_host_is_refused_before_connecting() {
        // 192.0.2.0/24 is TEST-NET-1: nothing answers there.
        let err = PostgresStore::connect("host=192.0.2.7 user=starling connect_timeout=1")
            .await
            .err();
        assert!(
            matches!(&err, Some(StorageError::Backend(text))
                if text.starts_with("postgres TLS settings: the connection to 192.0.2.7 may be plaintext (sslmode=prefer)")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn unparsable_connection_string_is_a_backend_error() {
        let err = PostgresStore::connect("host=127.0.0.1 port=notaport")
            .await
            .err();
        assert!(
            matches!(&err, Some(StorageError::Backend(text))
                if text.starts_with("parse postgres connection string: ")),
            "{err:?}"
        );
    }
}
