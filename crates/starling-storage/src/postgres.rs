//! The PostgreSQL backend, for operators who run several nodes or already run PostgreSQL.
//!
//! A small pool of `tokio-postgres` connections (`pool`), plain TCP or a Unix socket without
//! TLS (the database is expected on loopback or a private network). Connecting applies the
//! schema migrations the database lacks, tracked in a `schema_migrations` table; the logical
//! schema is the SQLite backend's. Accounts live here, rosters and offline messages in
//! `roster`, module data in `data`.

mod data;
mod pool;
mod portable;
mod roster;
mod tls;

use jid::{BareJid, DomainPart, NodePart};
use starling_sasl::{ScramKeys, StoredCredentials};
use tokio_postgres::{Client, Config, GenericClient};

use self::pool::{Connection, Pool};
pub use self::tls::{SslMode, TlsConfigError, TlsSettings};
use crate::scram_names::{hash_name, hash_rank, parse_hash_name};
use crate::{AccountStore, StorageError};

/// Schema migrations, applied in order. Each runs in its own transaction together with its
/// `schema_migrations` row, so a crash leaves the database at the previous version, never
/// between. Append new versions; never edit one that has shipped.
const MIGRATIONS: &[(u32, &str)] = &[(1, SCHEMA_V1), (2, roster::SCHEMA_V2), (3, data::SCHEMA_V3)];

/// Accounts keyed by (host, username), the JID's domainpart and localpart as normalised by the
/// jid crate, and one row of SCRAM keys per hash: the SQLite schema in PostgreSQL types.
/// `iterations` is `bigint` because a `u32` does not fit PostgreSQL's signed `integer`. As on
/// SQLite, `hash` has no CHECK constraint; an unknown name is [`StorageError::Corrupt`] on read.
const SCHEMA_V1: &str = "
CREATE TABLE accounts (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host     text NOT NULL,
    username text NOT NULL,
    UNIQUE (host, username)
);

CREATE TABLE scram_keys (
    account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    hash       text   NOT NULL,
    salt       bytea  NOT NULL,
    iterations bigint NOT NULL,
    stored_key bytea  NOT NULL,
    server_key bytea  NOT NULL,
    PRIMARY KEY (account_id, hash)
);
";

/// Where applied versions are recorded. Created outside the numbered migrations, since it is
/// what numbers them.
const CREATE_MIGRATIONS_TABLE: &str = "
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)";

/// Key of the session-level advisory lock held while migrating, so that nodes starting
/// together against one database migrate it one at a time. Any fixed number works; this one
/// is "starling" in ASCII.
const MIGRATION_LOCK: i64 = 0x7374_6172_6c69_6e67;

/// An [`AccountStore`], [`RosterStore`], [`OfflineStore`] and [`AccountDataStore`] in a
/// PostgreSQL database.
///
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
            migrate(&mut conn.client, MIGRATIONS).await?;
        }
        Ok(Self {
            pool: std::sync::Arc::new(pool),
        })
    }
}

impl AccountStore for PostgresStore {
    async fn create_account(
        &self,
        jid: &BareJid,
        creds: &StoredCredentials,
    ) -> Result<(), StorageError> {
        let key = AccountKey::of(jid).ok_or_else(|| StorageError::NoLocalpart(jid.clone()))?;
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        let tx = client
            .transaction()
            .await
            .map_err(backend("begin transaction"))?;
        // ON CONFLICT waits for a concurrent insert of the same name to finish, then inserts
        // nothing: no unique-violation error to tell apart from others.
        let insert = Connection::prepare(
            statements,
            &tx,
            "INSERT INTO accounts (host, username) VALUES ($1, $2)
             ON CONFLICT (host, username) DO NOTHING RETURNING id",
        )
        .await?;
        let row = tx
            .query_opt(&insert, &[&key.host, &key.username])
            .await
            .map_err(backend("insert account"))?;
        let Some(row) = row else {
            return Err(StorageError::AccountExists(jid.clone()));
        };
        let account_id: i64 = row.try_get(0).map_err(backend("read account id"))?;
        insert_keys(statements, &tx, account_id, creds).await?;
        tx.commit().await.map_err(backend("commit new account"))
    }

    async fn set_credentials(
        &self,
        jid: &BareJid,
        creds: &StoredCredentials,
    ) -> Result<(), StorageError> {
        let Some(key) = AccountKey::of(jid) else {
            return Err(StorageError::AccountNotFound(jid.clone()));
        };
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        let tx = client
            .transaction()
            .await
            .map_err(backend("begin transaction"))?;
        // FOR UPDATE holds off a concurrent delete or password change of this account until
        // this transaction ends, so the keys are replaced as one change.
        let select = Connection::prepare(
            statements,
            &tx,
            "SELECT id FROM accounts WHERE host = $1 AND username = $2 FOR UPDATE",
        )
        .await?;
        let row = tx
            .query_opt(&select, &[&key.host, &key.username])
            .await
            .map_err(backend("look up account"))?;
        let Some(row) = row else {
            return Err(StorageError::AccountNotFound(jid.clone()));
        };
        let account_id: i64 = row.try_get(0).map_err(backend("read account id"))?;
        let delete = Connection::prepare(
            statements,
            &tx,
            "DELETE FROM scram_keys WHERE account_id = $1",
        )
        .await?;
        tx.execute(&delete, &[&account_id])
            .await
            .map_err(backend("delete old scram keys"))?;
        insert_keys(statements, &tx, account_id, creds).await?;
        tx.commit().await.map_err(backend("commit new credentials"))
    }

    async fn delete_account(&self, jid: &BareJid) -> Result<(), StorageError> {
        let Some(key) = AccountKey::of(jid) else {
            return Err(StorageError::AccountNotFound(jid.clone()));
        };
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        // One statement is atomic on its own; the keys go with it through ON DELETE CASCADE.
        let delete = Connection::prepare(
            statements,
            &*client,
            "DELETE FROM accounts WHERE host = $1 AND username = $2",
        )
        .await?;
        let deleted = client
            .execute(&delete, &[&key.host, &key.username])
            .await
            .map_err(backend("delete account"))?;
        if deleted == 0 {
            return Err(StorageError::AccountNotFound(jid.clone()));
        }
        Ok(())
    }

    async fn credentials(&self, jid: &BareJid) -> Result<Option<StoredCredentials>, StorageError> {
        let Some(key) = AccountKey::of(jid) else {
            return Ok(None);
        };
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        // One statement, so the account and its keys come from one snapshot. An account
        // without keys yields one row of NULLs from the LEFT JOIN.
        let select = Connection::prepare(
            statements,
            &*client,
            "SELECT k.hash, k.salt, k.iterations, k.stored_key, k.server_key
             FROM accounts a LEFT JOIN scram_keys k ON k.account_id = a.id
             WHERE a.host = $1 AND a.username = $2",
        )
        .await?;
        let rows = client
            .query(&select, &[&key.host, &key.username])
            .await
            .map_err(backend("query credentials"))?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut keys = Vec::new();
        for row in rows {
            let hash: Option<String> = row.try_get(0).map_err(backend("read hash name"))?;
            let Some(hash) = hash else {
                continue;
            };
            let parsed = parse_hash_name(&hash).ok_or_else(|| {
                StorageError::Corrupt(format!("unknown hash {hash:?} in keys of {jid}"))
            })?;
            let iterations: i64 = row.try_get(2).map_err(backend("read iteration count"))?;
            keys.push(ScramKeys {
                hash: parsed,
                salt: row.try_get(1).map_err(backend("read salt"))?,
                iterations: u32::try_from(iterations).map_err(|_| {
                    StorageError::Corrupt(format!(
                        "iteration count {iterations} out of range in {hash} keys of {jid}"
                    ))
                })?,
                stored_key: row.try_get(3).map_err(backend("read stored key"))?,
                server_key: row.try_get(4).map_err(backend("read server key"))?,
            });
        }
        keys.sort_by_key(|keys| hash_rank(keys.hash));
        Ok(Some(StoredCredentials { keys }))
    }

    async fn list_accounts(&self, host: &str) -> Result<Vec<BareJid>, StorageError> {
        let Ok(domain) = DomainPart::new(host).map(|domain| domain.into_owned()) else {
            return Ok(Vec::new());
        };
        let mut conn = self.pool.get().await?;
        let (client, statements) = conn.parts();
        let select = Connection::prepare(
            statements,
            &*client,
            "SELECT username FROM accounts WHERE host = $1",
        )
        .await?;
        let rows = client
            .query(&select, &[&domain.as_str()])
            .await
            .map_err(backend("list accounts"))?;
        let mut accounts = Vec::with_capacity(rows.len());
        for row in rows {
            let username: String = row.try_get(0).map_err(backend("read username"))?;
            let node = NodePart::new(&username).map_err(|err| {
                StorageError::Corrupt(format!(
                    "stored username {username:?} on {domain} is not a valid localpart: {err}"
                ))
            })?;
            accounts.push(BareJid::from_parts(Some(&node), &domain));
        }
        // Sorted here rather than with ORDER BY: BareJid's order (of the whole "user@host"
        // string) is not the order of usernames alone, and collations differ between backends.
        accounts.sort();
        Ok(accounts)
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

/// Applies the migrations newer than the newest version in `schema_migrations`, each in its own
/// transaction, under an advisory lock so concurrent callers take turns.
async fn migrate(client: &mut Client, migrations: &[(u32, &str)]) -> Result<(), StorageError> {
    // Session-level: held across the transactions below and released by the unlock at the
    // end, or by the server when the connection closes if anything fails in between (an error
    // return drops the pool and with it the connection).
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(backend("take migration lock"))?;
    client
        .batch_execute(CREATE_MIGRATIONS_TABLE)
        .await
        .map_err(backend("create schema_migrations table"))?;
    let current: i32 = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .and_then(|row| row.try_get(0))
        .map_err(backend("read schema version"))?;
    let current = u32::try_from(current).unwrap_or(0);
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
        let failed = |err: tokio_postgres::Error| StorageError::Migration {
            version,
            reason: message(&err),
        };
        let number = i32::try_from(version).map_err(|_| StorageError::Migration {
            version,
            reason: "version number out of range".to_owned(),
        })?;
        let tx = client.transaction().await.map_err(failed)?;
        tx.batch_execute(sql).await.map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&number],
        )
        .await
        .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
    }
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(backend("release migration lock"))?;
    Ok(())
}

async fn insert_keys(
    statements: &mut std::collections::HashMap<&'static str, tokio_postgres::Statement>,
    tx: &impl GenericClient,
    account_id: i64,
    creds: &StoredCredentials,
) -> Result<(), StorageError> {
    let insert = Connection::prepare(
        statements,
        tx,
        "INSERT INTO scram_keys (account_id, hash, salt, iterations, stored_key, server_key)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .await?;
    for keys in &creds.keys {
        let name = hash_name(keys.hash);
        tx.execute(
            &insert,
            &[
                &account_id,
                &name,
                &keys.salt,
                &i64::from(keys.iterations),
                &keys.stored_key,
                &keys.server_key,
            ],
        )
        .await
        .map_err(backend(&format!("insert {name} keys")))?;
    }
    Ok(())
}

/// The server's own message for a database error (without its severity prefix), or the
/// client's description of anything else (I/O, protocol, closed connection).
fn message(err: &tokio_postgres::Error) -> String {
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

    #[test]
    fn migrations_are_strictly_increasing_from_one() {
        let versions: Vec<u32> = MIGRATIONS.iter().map(|&(version, _)| version).collect();
        let expected: Vec<u32> =
            (1..=u32::try_from(MIGRATIONS.len()).expect("few migrations")).collect();
        assert_eq!(versions, expected);
    }

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
