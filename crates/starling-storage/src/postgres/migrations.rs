//! The PostgreSQL schema, version by version, and how the shared runner
//! (`crate::migrations`) keeps PostgreSQL's version: a row per applied version in
//! `schema_migrations`, inserted in the transaction that applies it, all under an advisory
//! lock so that nodes starting together against one database migrate it one at a time.

use tokio_postgres::Client;

use super::{backend, message};
use crate::StorageError;
use crate::migrations::{Migration, Schema};

/// Accounts keyed by (host, username), the JID's domainpart and localpart as normalised by the
/// jid crate, and one row of SCRAM keys per hash: the SQLite schema in PostgreSQL types.
/// `iterations` is `bigint` because a `u32` does not fit PostgreSQL's signed `integer`. As on
/// SQLite, `hash` has no CHECK constraint; an unknown name is [`StorageError::Corrupt`] on read.
pub(crate) const SCHEMA_V1: &str = "
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

/// Schema version 2: SQLite's version 2 in PostgreSQL types. Rosters, their versions and
/// groups, pending inbound subscription requests and offline messages, all owned by an account
/// and deleted with it. `id` columns give insertion order (requests, offline messages).
pub(crate) const SCHEMA_V2: &str = "
CREATE TABLE roster_versions (
    account_id bigint PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    version    bigint NOT NULL
);

CREATE TABLE roster_items (
    account_id   bigint  NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    contact      text    NOT NULL,
    name         text,
    subscription text    NOT NULL,
    pending_out  boolean NOT NULL,
    approved     boolean NOT NULL,
    PRIMARY KEY (account_id, contact)
);

CREATE TABLE roster_groups (
    account_id bigint  NOT NULL,
    contact    text    NOT NULL,
    position   integer NOT NULL,
    name       text    NOT NULL,
    PRIMARY KEY (account_id, contact, position),
    FOREIGN KEY (account_id, contact)
        REFERENCES roster_items (account_id, contact) ON DELETE CASCADE
);

CREATE TABLE subscription_requests (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    contact    text   NOT NULL,
    stanza     text   NOT NULL,
    UNIQUE (account_id, contact)
);

CREATE TABLE offline_messages (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id   bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    stored_at_ms bigint NOT NULL,
    stanza       text   NOT NULL
);

CREATE INDEX offline_messages_by_account ON offline_messages (account_id, id);
";

/// Schema version 3: SQLite's version 3 in PostgreSQL types. Module data, one row per
/// (account, store, key), deleted with the account.
pub(crate) const SCHEMA_V3: &str = "
CREATE TABLE account_data (
    account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    store      text   NOT NULL,
    key        text   NOT NULL,
    value      bytea  NOT NULL,
    PRIMARY KEY (account_id, store, key)
);
";

/// Schema version 4: SQLite's version 4 in PostgreSQL types. Message archives, one row per
/// archived message with its UUIDv7 as 16 bytes (`bytea` compares bytewise, so ids sort by
/// time), and each account's usage row.
pub(crate) const SCHEMA_V4: &str = "
CREATE TABLE archive (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id    bigint   NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    archive_id    bytea    NOT NULL,
    with_jid      text     NOT NULL,
    with_resource text,
    direction     smallint NOT NULL,
    origin_id     text,
    stanza        text     NOT NULL,
    pending       boolean  NOT NULL DEFAULT false,
    UNIQUE (account_id, archive_id)
);

CREATE INDEX archive_by_with ON archive (account_id, with_jid, archive_id);

CREATE INDEX archive_pending ON archive (account_id, archive_id) WHERE pending;

CREATE TABLE archive_usage (
    account_id bigint PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    messages   bigint NOT NULL,
    bytes      bigint NOT NULL,
    oldest     bytea
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

/// Applies the migrations of `migrations` that the database lacks (see
/// [`crate::migrations::migrate`]).
pub(super) async fn migrate(
    client: &mut Client,
    migrations: &[Migration],
) -> Result<(), StorageError> {
    crate::migrations::migrate(&mut SchemaMigrations(client), migrations).await
}

/// A connection whose schema versions are the rows of `schema_migrations`.
struct SchemaMigrations<'c>(&'c mut Client);

impl Schema for SchemaMigrations<'_> {
    fn statements(migration: &Migration) -> &'static str {
        migration.postgres
    }

    async fn begin(&mut self) -> Result<(), StorageError> {
        // Session-level: held across the transactions of every version and released by `end`,
        // or by the server when the connection closes if anything fails in between (an error
        // return drops the pool and with it the connection).
        self.0
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(backend("take migration lock"))?;
        self.0
            .batch_execute(CREATE_MIGRATIONS_TABLE)
            .await
            .map_err(backend("create schema_migrations table"))
    }

    async fn current_version(&mut self) -> Result<u32, StorageError> {
        let current: i32 = self
            .0
            .query_one(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                &[],
            )
            .await
            .and_then(|row| row.try_get(0))
            .map_err(backend("read schema version"))?;
        Ok(u32::try_from(current).unwrap_or(0))
    }

    async fn apply(&mut self, version: u32, statements: &'static str) -> Result<(), StorageError> {
        let failed = |err: tokio_postgres::Error| StorageError::Migration {
            version,
            reason: message(&err),
        };
        let number = i32::try_from(version).map_err(|_| StorageError::Migration {
            version,
            reason: "version number out of range".to_owned(),
        })?;
        let tx = self.0.transaction().await.map_err(failed)?;
        tx.batch_execute(statements).await.map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&number],
        )
        .await
        .map_err(failed)?;
        tx.commit().await.map_err(failed)
    }

    async fn end(&mut self) -> Result<(), StorageError> {
        self.0
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(backend("release migration lock"))?;
        Ok(())
    }
}
