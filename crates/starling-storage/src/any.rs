//! [`AnyStore`]: one type for whichever backend the configuration names.

use jid::BareJid;
use starling_sasl::{KeyCoverage, ScramHashes, ScramKeys, StoredCredentials};

use crate::archive::{
    Appended, ArchiveFilter, ArchivePage, ArchiveQuota, ArchiveStore, ArchiveUsage,
    ArchivedMessage, PageFrom, Retention,
};
use crate::data::{AccountDataStore, DataChange, DataQuota};
use crate::portable::{AccountData, ExistingAccounts, PortableStore};
use crate::roster::{
    InitialPresence, OfflineMessage, OfflineQuota, OfflineStore, RosterChange, RosterItem,
    RosterStore, StoredOffline,
};
use crate::{AccountStore, PostgresStore, SqliteStore, StorageError};

/// A store whose backend is chosen at run time, from configuration.
///
/// Every trait method forwards to the variant's own implementation, so behaviour is exactly
/// that backend's. Cloning is cheap: both backends share their connection (SQLite) or pool
/// (PostgreSQL) between clones. See the crate documentation for why this is an enum and not a
/// trait object.
#[derive(Clone)]
pub enum AnyStore {
    /// The embedded SQLite backend.
    Sqlite(SqliteStore),
    /// The PostgreSQL backend.
    Postgres(PostgresStore),
}

impl From<SqliteStore> for AnyStore {
    fn from(store: SqliteStore) -> Self {
        Self::Sqlite(store)
    }
}

impl From<PostgresStore> for AnyStore {
    fn from(store: PostgresStore) -> Self {
        Self::Postgres(store)
    }
}

/// `$store.$call` on whichever backend `$self` holds, awaited and timed into the
/// `starling_storage_operation_duration_seconds` histogram, labelled with the method's name
/// (`other` for a call of another shape). Without a metrics recorder the timing is a no-op.
macro_rules! forward {
    ($self:ident, $store:ident => $receiver:ident . $method:ident ( $($arg:expr),* $(,)? )) => {
        forward!(@timed stringify!($method), $self, $store => $receiver.$method($($arg),*))
    };
    ($self:ident, $store:ident => $call:expr) => {
        forward!(@timed "other", $self, $store => $call)
    };
    (@timed $operation:expr, $self:ident, $store:ident => $call:expr) => {{
        let started = std::time::Instant::now();
        let result = match $self {
            AnyStore::Sqlite($store) => $call.await,
            AnyStore::Postgres($store) => $call.await,
        };
        metrics::histogram!(
            "starling_storage_operation_duration_seconds",
            "operation" => $operation
        )
        .record(started.elapsed());
        result
    }};
}

impl AccountStore for AnyStore {
    async fn create_account(
        &self,
        jid: &BareJid,
        creds: &StoredCredentials,
    ) -> Result<(), StorageError> {
        forward!(self, store => store.create_account(jid, creds))
    }

    async fn set_credentials(
        &self,
        jid: &BareJid,
        creds: &StoredCredentials,
    ) -> Result<(), StorageError> {
        forward!(self, store => store.set_credentials(jid, creds))
    }

    async fn delete_account(&self, jid: &BareJid) -> Result<(), StorageError> {
        forward!(self, store => store.delete_account(jid))
    }

    async fn credentials(&self, jid: &BareJid) -> Result<Option<StoredCredentials>, StorageError> {
        forward!(self, store => store.credentials(jid))
    }

    async fn list_accounts(&self, host: &str) -> Result<Vec<BareJid>, StorageError> {
        forward!(self, store => store.list_accounts(host))
    }

    async fn add_missing_keys(
        &self,
        jid: &BareJid,
        verified: &ScramKeys,
        added: &[ScramKeys],
    ) -> Result<ScramHashes, StorageError> {
        forward!(self, store => store.add_missing_keys(jid, verified, added))
    }

    async fn key_coverage(&self, host: &str) -> Result<KeyCoverage, StorageError> {
        forward!(self, store => store.key_coverage(host))
    }
}

impl RosterStore for AnyStore {
    async fn roster(&self, owner: &BareJid) -> Result<(u64, Vec<RosterItem>), StorageError> {
        forward!(self, store => store.roster(owner))
    }

    async fn roster_item(
        &self,
        owner: &BareJid,
        contact: &BareJid,
    ) -> Result<Option<RosterItem>, StorageError> {
        forward!(self, store => store.roster_item(owner, contact))
    }

    async fn apply(
        &self,
        changes: &[RosterChange],
        max_items: usize,
    ) -> Result<Vec<u64>, StorageError> {
        forward!(self, store => store.apply(changes, max_items))
    }

    async fn has_request(&self, owner: &BareJid, contact: &BareJid) -> Result<bool, StorageError> {
        forward!(self, store => store.has_request(owner, contact))
    }

    async fn requests(&self, owner: &BareJid) -> Result<Vec<(BareJid, String)>, StorageError> {
        forward!(self, store => store.requests(owner))
    }

    async fn initial_presence(&self, owner: &BareJid) -> Result<InitialPresence, StorageError> {
        forward!(self, store => store.initial_presence(owner))
    }
}

impl PortableStore for AnyStore {
    async fn export_host(&self, host: &str) -> Result<Vec<AccountData>, StorageError> {
        forward!(self, store => store.export_host(host))
    }

    async fn import_accounts(
        &self,
        accounts: &[AccountData],
        existing: ExistingAccounts,
    ) -> Result<(), StorageError> {
        forward!(self, store => store.import_accounts(accounts, existing))
    }
}

impl OfflineStore for AnyStore {
    async fn push_offline(
        &self,
        owner: &BareJid,
        message: &OfflineMessage,
        quota: OfflineQuota,
    ) -> Result<bool, StorageError> {
        forward!(self, store => store.push_offline(owner, message, quota))
    }

    async fn offline_page(
        &self,
        owner: &BareJid,
        max: usize,
    ) -> Result<Vec<StoredOffline>, StorageError> {
        forward!(self, store => store.offline_page(owner, max))
    }

    async fn remove_offline(&self, owner: &BareJid, ids: &[u64]) -> Result<usize, StorageError> {
        forward!(self, store => store.remove_offline(owner, ids))
    }
}

impl AccountDataStore for AnyStore {
    async fn data_get(
        &self,
        account: &BareJid,
        store: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        forward!(self, backend => backend.data_get(account, store, key))
    }

    async fn data_list(
        &self,
        account: &BareJid,
        store: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        forward!(self, backend => backend.data_list(account, store))
    }

    async fn data_apply(
        &self,
        account: &BareJid,
        store: &str,
        changes: &[DataChange],
        quota: DataQuota,
    ) -> Result<bool, StorageError> {
        forward!(self, backend => backend.data_apply(account, store, changes, quota))
    }

    async fn data_put_many(
        &self,
        store: &str,
        key: &str,
        entries: &[(BareJid, Vec<u8>)],
    ) -> Result<usize, StorageError> {
        forward!(self, backend => backend.data_put_many(store, key, entries))
    }
}

impl ArchiveStore for AnyStore {
    async fn archive_append(
        &self,
        messages: &[(BareJid, ArchivedMessage)],
        quota: ArchiveQuota,
    ) -> Result<Vec<Appended>, StorageError> {
        forward!(self, store => store.archive_append(messages, quota))
    }

    async fn archive_page(
        &self,
        owner: &BareJid,
        filter: &ArchiveFilter,
        from: PageFrom,
        max: usize,
    ) -> Result<ArchivePage, StorageError> {
        forward!(self, store => store.archive_page(owner, filter, from, max))
    }

    async fn archive_count(
        &self,
        owner: &BareJid,
        filter: &ArchiveFilter,
    ) -> Result<u64, StorageError> {
        forward!(self, store => store.archive_count(owner, filter))
    }

    async fn archive_get(
        &self,
        owner: &BareJid,
        ids: &[uuid::Uuid],
    ) -> Result<Vec<ArchivedMessage>, StorageError> {
        forward!(self, store => store.archive_get(owner, ids))
    }

    async fn archive_bounds(
        &self,
        owner: &BareJid,
    ) -> Result<Option<(uuid::Uuid, uuid::Uuid)>, StorageError> {
        forward!(self, store => store.archive_bounds(owner))
    }

    async fn archive_usage(&self, owner: &BareJid) -> Result<ArchiveUsage, StorageError> {
        forward!(self, store => store.archive_usage(owner))
    }

    async fn archive_trim(
        &self,
        retention: Retention,
        max_rows: usize,
    ) -> Result<usize, StorageError> {
        forward!(self, store => store.archive_trim(retention, max_rows))
    }

    async fn archive_mark_pending(
        &self,
        owner: &BareJid,
        id: &uuid::Uuid,
        quota: crate::OfflineQuota,
    ) -> Result<bool, StorageError> {
        forward!(self, store => store.archive_mark_pending(owner, id, quota))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole contract, through the enum, on SQLite; tests/postgres.rs does the same for
    /// the PostgreSQL variant.
    fn fresh() -> AnyStore {
        SqliteStore::open_in_memory()
            .expect("in-memory database opens")
            .into()
    }

    crate::account_tests::account_store_tests!(fresh());
    crate::roster_tests::roster_store_tests!(fresh());
    crate::portable_tests::portable_store_tests!(fresh());
    crate::data_tests::account_data_store_tests!(fresh());
    crate::archive_tests::archive_store_tests!(fresh());
}
