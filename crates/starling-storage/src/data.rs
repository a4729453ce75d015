//! Per-account key-value data of feature modules (Prosody's keyval stores): the blocking list,
//! private XML storage (XEP-0049), vCard-temp (XEP-0054), last activity (XEP-0012) and the
//! like. The types and the [`AccountDataStore`] trait every backend implements.

use std::future::Future;

use jid::BareJid;

use crate::StorageError;

/// One change to an account's module data, for [`AccountDataStore::data_apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataChange {
    /// Insert or replace the value under `key`.
    Put {
        /// The key within the store.
        key: String,
        /// The new value, as opaque bytes.
        value: Vec<u8>,
    },
    /// Remove `key`; removing a missing key does nothing.
    Remove {
        /// The key within the store.
        key: String,
    },
    /// Remove every key of the store (of this account only).
    Clear,
}

/// Bounds on one (account, store), for [`AccountDataStore::data_apply`]: the number of keys and
/// the total bytes of keys and values (UTF-8 bytes of each key plus the bytes of its value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataQuota {
    /// Keys kept at most.
    pub max_keys: usize,
    /// Bytes of keys plus values kept at most.
    pub max_bytes: usize,
}

impl DataQuota {
    /// No bound at all.
    pub const UNLIMITED: Self = Self {
        max_keys: usize::MAX,
        max_bytes: usize::MAX,
    };

    /// Whether a store that held `before` (keys, bytes) may hold `after` (database counts; a
    /// negative one is taken as full). Each bound is checked on its own, and a bound is broken
    /// only by growing past it: a change that leaves a count where it was or lowers it is
    /// allowed even when that count is over a quota lowered since it was written, so an
    /// account can always shrink or remove its data.
    pub(crate) fn admits(self, before: (i64, i64), after: (i64, i64)) -> bool {
        let count = |value: i64| usize::try_from(value).unwrap_or(usize::MAX);
        let within = |before: i64, after: i64, max: usize| {
            let (before, after) = (count(before), count(after));
            after <= max || after <= before
        };
        within(before.0, after.0, self.max_keys) && within(before.1, after.1, self.max_bytes)
    }
}

/// One entry of an account's module data, as [`crate::AccountData`] carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountDataEntry {
    /// Which module's store (`"vcard"`, `"private"`, `"blocklist"`, ...).
    pub store: String,
    /// The key within the store.
    pub key: String,
    /// The value, as opaque bytes.
    pub value: Vec<u8>,
}

/// Per-account key-value stores of feature modules.
///
/// A module names its store (a fixed string such as `"vcard"`) and keeps opaque values under
/// string keys in it; stores of different modules and of different accounts never see each
/// other. The data belongs to the account: it is deleted with it, and [`crate::PortableStore`]
/// exports and imports it with the account's other data.
///
/// Data can only be written for an account that exists: [`AccountDataStore::data_apply`] for
/// any other JID (a bare domain, a deleted or never created account) fails with
/// [`StorageError::AccountNotFound`] and writes nothing, as [`crate::OfflineStore::push_offline`]
/// does. Reads of such a JID find nothing.
pub trait AccountDataStore: Send + Sync + 'static {
    /// The value under `key` in `store` of `account`.
    fn data_get(
        &self,
        account: &BareJid,
        store: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StorageError>> + Send;

    /// Every (key, value) of `store` of `account`, sorted by key (byte order of the UTF-8
    /// key, as [`String`]'s `Ord`).
    fn data_list(
        &self,
        account: &BareJid,
        store: &str,
    ) -> impl Future<Output = Result<Vec<(String, Vec<u8>)>, StorageError>> + Send;

    /// Apply `changes` in order, in one transaction. If the result would exceed `quota`,
    /// nothing is written and the call returns `Ok(false)`; otherwise `Ok(true)`.
    ///
    /// The quota is counted inside the writing transaction, after all the changes, so
    /// concurrent calls cannot together pass it. A bound is exceeded only by growing past it:
    /// a change list that does not raise the number of keys (or the bytes) is accepted even
    /// when the store is already over a quota lowered since, so data can always be shrunk or
    /// removed. Fails with [`StorageError::AccountNotFound`] when `account` has no account.
    fn data_apply(
        &self,
        account: &BareJid,
        store: &str,
        changes: &[DataChange],
        quota: DataQuota,
    ) -> impl Future<Output = Result<bool, StorageError>> + Send;

    /// Put `value` under `key` in `store` for each `(account, value)`, all in one
    /// transaction and without a quota: for small records a module owns whole and writes for
    /// many accounts at once (last activity's logouts), where one transaction per account
    /// would cost a commit each. Accounts that do not exist are skipped. Returns how many
    /// were written.
    fn data_put_many(
        &self,
        store: &str,
        key: &str,
        entries: &[(BareJid, Vec<u8>)],
    ) -> impl Future<Output = Result<usize, StorageError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quota_is_broken_only_by_growing_past_it() {
        let quota = DataQuota {
            max_keys: 2,
            max_bytes: 10,
        };
        assert!(quota.admits((0, 0), (2, 10)));
        assert!(!quota.admits((0, 0), (3, 10)));
        assert!(!quota.admits((0, 0), (2, 11)));
        // Over a lowered quota: shrinking or staying is fine, growing is not.
        assert!(quota.admits((5, 50), (4, 50)));
        assert!(quota.admits((5, 50), (5, 40)));
        assert!(!quota.admits((5, 50), (5, 51)));
        assert!(!quota.admits((5, 50), (6, 10)));
        // A negative count from the database is taken as full.
        assert!(!quota.admits((0, 0), (-1, 0)));
        assert!(DataQuota::UNLIMITED.admits((0, 0), (1 << 40, 1 << 50)));
    }
}
