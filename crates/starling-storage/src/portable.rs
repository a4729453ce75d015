//! Whole-host export and import, for backups and moving between servers (the data XEP-0227
//! carries): [`AccountData`] and the [`PortableStore`] trait every backend implements.

use std::future::Future;

use jid::BareJid;
use starling_sasl::StoredCredentials;

use crate::StorageError;
use crate::data::AccountDataEntry;
use crate::roster::{OfflineMessage, RosterItem};

/// Everything stored for one account, exactly as stored: the SCRAM keys per hash (never a
/// password), the roster with its version, pending inbound subscription requests, offline
/// messages and feature modules' data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountData {
    /// The account.
    pub jid: BareJid,
    /// Its keys, in `ScramHash` declaration order when read back.
    pub credentials: StoredCredentials,
    /// The roster version (XEP-0237); 0 for a roster that was never changed.
    pub roster_version: u64,
    /// The roster, sorted by contact JID when read back.
    pub roster: Vec<RosterItem>,
    /// Pending inbound subscription requests: (who asked, the serialized presence stanza),
    /// oldest first.
    pub requests: Vec<(BareJid, String)>,
    /// Offline messages, oldest first.
    pub offline: Vec<OfflineMessage>,
    /// Feature modules' data ([`crate::AccountDataStore`]), sorted by store, then key, when
    /// read back.
    pub module_data: Vec<AccountDataEntry>,
}

impl AccountData {
    /// An account with these keys and nothing else.
    pub fn new(jid: BareJid, credentials: StoredCredentials) -> Self {
        Self {
            jid,
            credentials,
            roster_version: 0,
            roster: Vec::new(),
            requests: Vec::new(),
            offline: Vec::new(),
            module_data: Vec::new(),
        }
    }
}

/// What [`PortableStore::import_accounts`] does with an account that already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExistingAccounts {
    /// Fail with [`StorageError::AccountExists`]; nothing is written.
    Refuse,
    /// Delete the existing account with everything it owns and write the imported one. Its
    /// roster version becomes the larger of the imported version and the old version + 1, so
    /// a client that cached the old roster sees a new version and fetches it again.
    Replace,
}

/// Reading and writing whole accounts at once.
pub trait PortableStore: Send + Sync + 'static {
    /// Every account of `host` with all its data, read in one consistent snapshot, sorted by
    /// JID. `host` is normalised like a JID's domainpart; an invalid one has no accounts.
    fn export_host(
        &self,
        host: &str,
    ) -> impl Future<Output = Result<Vec<AccountData>, StorageError>> + Send;

    /// Writes these accounts in one transaction: either all of them land or none does.
    /// Module data is written as given, without a [`crate::DataQuota`].
    ///
    /// Fails with [`StorageError::AccountExists`] for an existing account under
    /// [`ExistingAccounts::Refuse`], [`StorageError::NoLocalpart`] for a bare domain, and
    /// [`StorageError::Backend`] when the data breaks a uniqueness rule (the same account,
    /// contact, request or module data key twice).
    fn import_accounts(
        &self,
        accounts: &[AccountData],
        existing: ExistingAccounts,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;
}

/// Assembles [`AccountData`] from the rows of one host, read table by table in one snapshot;
/// both backends use it, so they agree on ordering and on what a stray row means.
#[derive(Default)]
pub(crate) struct HostExport {
    /// By account id.
    accounts: std::collections::BTreeMap<i64, AccountData>,
}

impl HostExport {
    pub(crate) fn account(&mut self, id: i64, jid: BareJid) {
        self.accounts
            .insert(id, AccountData::new(jid, StoredCredentials::default()));
    }

    fn get(&mut self, id: i64) -> Result<&mut AccountData, StorageError> {
        self.accounts
            .get_mut(&id)
            .ok_or_else(|| StorageError::Corrupt(format!("row of unknown account id {id}")))
    }

    /// One row of SCRAM keys, as stored.
    pub(crate) fn keys(&mut self, id: i64, row: KeysRow) -> Result<(), StorageError> {
        let account = self.get(id)?;
        let keys = keys_from_columns(&account.jid, row)?;
        account.credentials.keys.push(keys);
        Ok(())
    }

    pub(crate) fn version(&mut self, id: i64, version: u64) -> Result<(), StorageError> {
        self.get(id)?.roster_version = version;
        Ok(())
    }

    pub(crate) fn item(&mut self, id: i64, item: RosterItem) -> Result<(), StorageError> {
        self.get(id)?.roster.push(item);
        Ok(())
    }

    /// A group of an item added before; rows must come in position order.
    pub(crate) fn group(
        &mut self,
        id: i64,
        contact: &str,
        name: String,
    ) -> Result<(), StorageError> {
        let account = self.get(id)?;
        let item = account
            .roster
            .iter_mut()
            .find(|item| item.jid.as_str() == contact)
            .ok_or_else(|| {
                StorageError::Corrupt(format!("group of missing roster item {contact:?}"))
            })?;
        item.groups.push(name);
        Ok(())
    }

    /// Requests must come oldest first.
    pub(crate) fn request(
        &mut self,
        id: i64,
        contact: BareJid,
        stanza: String,
    ) -> Result<(), StorageError> {
        self.get(id)?.requests.push((contact, stanza));
        Ok(())
    }

    /// Messages must come oldest first.
    pub(crate) fn offline(&mut self, id: i64, message: OfflineMessage) -> Result<(), StorageError> {
        self.get(id)?.offline.push(message);
        Ok(())
    }

    /// One entry of module data, in any order.
    pub(crate) fn data(&mut self, id: i64, entry: AccountDataEntry) -> Result<(), StorageError> {
        self.get(id)?.module_data.push(entry);
        Ok(())
    }

    /// The accounts sorted by JID, their keys by hash, rosters by contact and module data by
    /// store and key.
    pub(crate) fn finish(self) -> Vec<AccountData> {
        let mut accounts: Vec<AccountData> = self.accounts.into_values().collect();
        for account in &mut accounts {
            account
                .credentials
                .keys
                .sort_by_key(|keys| crate::scram_names::hash_rank(keys.hash));
            account.roster.sort_by(|a, b| a.jid.cmp(&b.jid));
            account
                .module_data
                .sort_by(|a, b| (&a.store, &a.key).cmp(&(&b.store, &b.key)));
        }
        accounts.sort_by(|a, b| a.jid.cmp(&b.jid));
        accounts
    }
}

/// The roster version an imported account gets: see [`ExistingAccounts::Replace`].
pub(crate) fn imported_version(imported: u64, replaced: Option<u64>) -> u64 {
    match replaced {
        Some(old) => imported.max(old.saturating_add(1)),
        None => imported,
    }
}

/// The (host, username) of an account to import.
pub(crate) fn account_key(jid: &BareJid) -> Result<(String, String), StorageError> {
    let node = jid
        .node()
        .ok_or_else(|| StorageError::NoLocalpart(jid.clone()))?;
    Ok((jid.domain().as_str().to_owned(), node.as_str().to_owned()))
}

/// A stored contact JID.
pub(crate) fn parse_contact(value: &str) -> Result<BareJid, StorageError> {
    BareJid::new(value).map_err(|err| {
        StorageError::Corrupt(format!("stored contact {value:?} is not a JID: {err}"))
    })
}

/// The stored columns of one row of SCRAM keys.
pub(crate) struct KeysRow {
    pub(crate) hash: String,
    pub(crate) salt: Vec<u8>,
    pub(crate) iterations: i64,
    pub(crate) stored_key: Vec<u8>,
    pub(crate) server_key: Vec<u8>,
}

fn keys_from_columns(
    owner: &BareJid,
    row: KeysRow,
) -> Result<starling_sasl::ScramKeys, StorageError> {
    let KeysRow {
        hash,
        salt,
        iterations,
        stored_key,
        server_key,
    } = row;
    Ok(starling_sasl::ScramKeys {
        hash: crate::scram_names::parse_hash_name(&hash).ok_or_else(|| {
            StorageError::Corrupt(format!("unknown hash {hash:?} in keys of {owner}"))
        })?,
        salt,
        iterations: u32::try_from(iterations).map_err(|_| {
            StorageError::Corrupt(format!(
                "iteration count {iterations} out of range in {hash} keys of {owner}"
            ))
        })?,
        stored_key,
        server_key,
    })
}
