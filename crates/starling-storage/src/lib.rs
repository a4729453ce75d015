//! Persistent storage for Starling: accounts and their SCRAM keys, rosters, offline messages,
//! message archives and feature modules' per-account data.
//!
//! The server talks to storage only through traits — [`AccountStore`], [`RosterStore`],
//! [`OfflineStore`], [`ArchiveStore`] (with its group-commit [`ArchiveWriter`]) and
//! [`AccountDataStore`], plus [`PortableStore`] for whole-host backups — so a backend is chosen once at start-up and nothing else knows which one it is.
//! [`SqliteStore`] is the embedded default and [`PostgresStore`] the networked one; both
//! implement every trait with the same semantics, checked by one set of contract tests run
//! against each. [`AnyStore`] holds either, for a server that picks the backend from its
//! configuration.
//!
//! The one design choice a caller has to understand: **passwords are never stored**. An account
//! is a bare JID plus, per SCRAM hash, the salt, iteration count, `StoredKey` and `ServerKey` of
//! RFC 5802 §3 ([`StoredCredentials`]). `starling-sasl` derives those from a password when an
//! account is created or its password changes, and checks logins against them; storage keeps
//! the bytes exactly as given.
//!
//! Trait methods are `async` because a real database is remote, but they never block the async
//! runtime: [`SqliteStore`] runs every SQLite call on tokio's blocking pool, and
//! [`PostgresStore`] uses `tokio-postgres` over a small pool of connections.
//!
//! ```
//! use jid::BareJid;
//! use starling_sasl::{ScramHash, ScramKeys, StoredCredentials};
//! use starling_storage::{AccountStore, SqliteStore};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = tokio::runtime::Builder::new_current_thread().build()?;
//! runtime.block_on(async {
//!     let store = SqliteStore::open_in_memory()?;
//!     let juliet = BareJid::new("juliet@im.example.com")?;
//!     let creds = StoredCredentials {
//!         keys: vec![ScramKeys {
//!             hash: ScramHash::Sha256,
//!             salt: b"QSXCR+Q6sek8bf92".to_vec(),
//!             iterations: 4096,
//!             stored_key: vec![0x11; 32],
//!             server_key: vec![0x22; 32],
//!         }],
//!     };
//!
//!     store.create_account(&juliet, &creds).await?;
//!     assert!(store.credentials(&juliet).await? == Some(creds));
//!     assert_eq!(store.list_accounts("im.example.com").await?, vec![juliet.clone()]);
//!
//!     store.delete_account(&juliet).await?;
//!     assert!(store.credentials(&juliet).await?.is_none());
//!     Ok(())
//! })
//! # }
//! ```
//!
//! # Why `AnyStore` is an enum and not a trait object
//!
//! The traits return `impl Future` (they are `async fn`s in traits), which makes them not
//! dyn-compatible: a `dyn AccountStore` would need every method to return a boxed future
//! (`Pin<Box<dyn Future + Send + '_>>`), paying an allocation and a virtual call per storage
//! operation and spreading `Box::pin` through both backends or a shadow trait. The set of
//! backends is closed and known to this crate, so an enum does the job with static dispatch:
//! one `match` per call, no allocation, `Clone` for free, and generic code written against
//! `impl AccountStore` keeps working with either a concrete backend or `AnyStore`. Adding a
//! backend means adding a variant here, which the exhaustive matches then demand everywhere.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::future::Future;

use jid::BareJid;
use starling_sasl::{KeyCoverage, ScramHashes, ScramKeys, StoredCredentials};

mod any;
mod archive;
mod archive_writer;
mod data;
mod migrations;
mod portable;
mod postgres;
mod roster;
mod scram_names;
mod sqlite;

#[cfg(test)]
mod account_tests;
#[cfg(test)]
mod archive_tests;
#[cfg(test)]
mod data_tests;
#[cfg(test)]
mod portable_tests;
#[cfg(test)]
mod roster_tests;

pub use any::AnyStore;
pub use archive::{
    Appended, ArchiveFilter, ArchivePage, ArchiveQuota, ArchiveStore, ArchiveUsage,
    ArchivedMessage, Direction, PageFrom, Retention, WithFilter, highest_id_at, id_at,
    is_archive_id, lowest_id_at, timestamp_ms,
};
pub use archive_writer::{ArchiveWriter, DEFAULT_MAX_BATCH, IdSource, Pending};
pub use data::{AccountDataEntry, AccountDataStore, DataChange, DataQuota};
pub use portable::{AccountData, ExistingAccounts, PortableStore};
pub use postgres::{PostgresStore, SslMode, TlsConfigError, TlsSettings};
pub use roster::{
    InitialPresence, OfflineMessage, OfflineQuota, OfflineStore, RosterChange, RosterItem,
    RosterStore, StoredOffline, Subscription,
};
pub use sqlite::SqliteStore;

/// The (host, username) columns that identify an account in both backends: the JID's
/// domainpart and localpart as normalised by the jid crate.
pub(crate) struct AccountKey {
    pub(crate) host: String,
    pub(crate) username: String,
}

impl AccountKey {
    /// `None` for a bare domain, which has no localpart and so no account.
    pub(crate) fn of(jid: &BareJid) -> Option<Self> {
        Some(Self {
            host: jid.domain().as_str().to_owned(),
            username: jid.node()?.as_str().to_owned(),
        })
    }
}

/// What went wrong in a storage operation.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// `create_account` for a JID that already has an account.
    #[error("account {0} already exists")]
    AccountExists(BareJid),
    /// An operation that needs an existing account found none.
    #[error("account {0} does not exist")]
    AccountNotFound(BareJid),
    /// `create_account` for a JID without a localpart (a bare domain), which cannot log in.
    #[error("{0} has no localpart and cannot be an account")]
    NoLocalpart(BareJid),
    /// [`RosterStore::apply`] would have added an item to a roster that already holds its
    /// limit of items; nothing of that `apply` was written.
    #[error("the roster of {owner} is full ({limit} items)")]
    RosterFull {
        /// Whose roster.
        owner: BareJid,
        /// The limit it reached.
        limit: usize,
    },
    /// The database refused or failed an operation. The text starts with what was being done.
    #[error("storage backend: {0}")]
    Backend(String),
    /// A schema migration could not be applied, or the database was written by a newer
    /// Starling whose schema this build does not know.
    #[error("schema version {version}: {reason}")]
    Migration {
        /// The schema version being applied, or the unknown version found in the database.
        version: u32,
        /// Why it failed.
        reason: String,
    },
    /// A stored row holds a value this build cannot interpret, such as an unknown hash name.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

/// Accounts and their SCRAM keys. Passwords are never stored.
///
/// An account is identified by its bare JID, compared in the jid crate's normalised form (so
/// `Juliet@IM.Example.com` and `juliet@im.example.com` are one account). Every method is atomic:
/// a failed call leaves the store as it was.
pub trait AccountStore: Send + Sync + 'static {
    /// Creates an account with the given keys.
    ///
    /// Fails with [`StorageError::AccountExists`] if the account exists and
    /// [`StorageError::NoLocalpart`] if `jid` is a bare domain.
    fn create_account(
        &self,
        jid: &BareJid,
        creds: &StoredCredentials,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// Replaces all keys of an existing account with `creds`, as one atomic change (a password
    /// change). Fails with [`StorageError::AccountNotFound`] if there is no such account.
    fn set_credentials(
        &self,
        jid: &BareJid,
        creds: &StoredCredentials,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// Deletes an account and its keys. Fails with [`StorageError::AccountNotFound`] if there
    /// is no such account.
    fn delete_account(
        &self,
        jid: &BareJid,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// The keys of an account, or `None` if there is no such account. Keys come back in
    /// `ScramHash` declaration order (SHA-1 before SHA-256), whatever order they were stored in.
    fn credentials(
        &self,
        jid: &BareJid,
    ) -> impl Future<Output = Result<Option<StoredCredentials>, StorageError>> + Send;

    /// All accounts of one host, sorted by [`BareJid`]'s `Ord`. `host` is normalised like a
    /// JID's domainpart; a host that is not a valid domainpart has no accounts.
    fn list_accounts(
        &self,
        host: &str,
    ) -> impl Future<Output = Result<Vec<BareJid>, StorageError>> + Send;

    /// Adds keys for hashes the account has none for, as one transaction, but only while the
    /// account still holds exactly `verified` (the keys a password was just checked against):
    /// keys derived from a password that has since been changed are never stored. Keys for a
    /// hash the account already has are left alone. Returns the hashes added: none when the
    /// account is gone or its keys changed.
    ///
    /// This is the upgrade a PLAIN login triggers (`starling_sasl::KeyUpgrade`).
    fn add_missing_keys(
        &self,
        jid: &BareJid,
        verified: &ScramKeys,
        added: &[ScramKeys],
    ) -> impl Future<Output = Result<ScramHashes, StorageError>> + Send;

    /// How many accounts of one host hold keys for each hash, counted in one snapshot; the
    /// SCRAM mechanisms a host offers follow from it (`starling_sasl::KeyCoverage`). `host` is
    /// normalised like a JID's domainpart; a host that is not a valid domainpart has no
    /// accounts.
    fn key_coverage(
        &self,
        host: &str,
    ) -> impl Future<Output = Result<KeyCoverage, StorageError>> + Send;
}
