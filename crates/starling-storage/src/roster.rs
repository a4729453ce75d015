//! Roster, subscription and offline-message storage (RFC 6121 §2–§3, XEP-0160): the types and
//! the traits every backend implements.

use jid::BareJid;

use crate::StorageError;

/// The subscription state of a roster item, RFC 6121 §2.1.2.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Subscription {
    /// Neither side receives the other's presence.
    #[default]
    None,
    /// The user receives the contact's presence.
    To,
    /// The contact receives the user's presence.
    From,
    /// Both directions.
    Both,
}

impl Subscription {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::To => "to",
            Self::From => "from",
            Self::Both => "both",
        }
    }

    /// Parse an attribute value; anything unknown is `None`.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "none" => Some(Self::None),
            "to" => Some(Self::To),
            "from" => Some(Self::From),
            "both" => Some(Self::Both),
            _ => None,
        }
    }

    /// Whether the user receives the contact's presence (`to` or `both`).
    pub fn has_to(self) -> bool {
        matches!(self, Self::To | Self::Both)
    }

    /// Whether the contact receives the user's presence (`from` or `both`).
    pub fn has_from(self) -> bool {
        matches!(self, Self::From | Self::Both)
    }

    /// The state with the `to` half set or cleared.
    pub fn with_to(self, on: bool) -> Self {
        Self::from_halves(on, self.has_from())
    }

    /// The state with the `from` half set or cleared.
    pub fn with_from(self, on: bool) -> Self {
        Self::from_halves(self.has_to(), on)
    }

    fn from_halves(to: bool, from: bool) -> Self {
        match (to, from) {
            (false, false) => Self::None,
            (true, false) => Self::To,
            (false, true) => Self::From,
            (true, true) => Self::Both,
        }
    }
}

/// One contact in a user's roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterItem {
    /// The contact.
    pub jid: BareJid,
    /// The user's name for the contact.
    pub name: Option<String>,
    /// Groups, in the order the client gave them, without duplicates.
    pub groups: Vec<String>,
    /// Subscription state.
    pub subscription: Subscription,
    /// The user asked to subscribe and the contact has not answered (`ask='subscribe'`,
    /// "Pending Out").
    pub pending_out: bool,
    /// The user pre-approved a subscription request from the contact (RFC 6121 §3.4).
    pub approved: bool,
}

impl RosterItem {
    /// A fresh item with no subscription.
    pub fn new(jid: BareJid) -> Self {
        Self {
            jid,
            name: None,
            groups: Vec::new(),
            subscription: Subscription::None,
            pending_out: false,
            approved: false,
        }
    }
}

/// One change to a roster, for [`RosterStore::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RosterChange {
    /// Insert or replace the item `item.jid` in `owner`'s roster.
    Put {
        /// Whose roster.
        owner: BareJid,
        /// The new item.
        item: RosterItem,
    },
    /// Remove `contact` from `owner`'s roster.
    Remove {
        /// Whose roster.
        owner: BareJid,
        /// The contact to remove.
        contact: BareJid,
    },
    /// Record that `contact` asked to subscribe to `owner` ("Pending In"), keeping the
    /// request stanza so it can be delivered again at the next login (RFC 6121 §3.1.3).
    AddRequest {
        /// Who was asked.
        owner: BareJid,
        /// Who asked.
        contact: BareJid,
        /// The serialized presence stanza.
        stanza: String,
    },
    /// Forget a pending inbound request.
    RemoveRequest {
        /// Who was asked.
        owner: BareJid,
        /// Who asked.
        contact: BareJid,
    },
}

/// Rosters, their versions and pending inbound subscription requests.
///
/// Changes go through [`RosterStore::apply`], which applies a whole list in one transaction, so
/// a subscription change that touches two rosters is never half-applied (RFC 6121 §3 state is
/// atomic). Every `Put` or `Remove` bumps the owner's roster version (XEP-0237 / RFC 6121 §2.6).
pub trait RosterStore: Send + Sync + 'static {
    /// The roster of `owner` (sorted by contact JID) and its version (0 for an empty, never
    /// changed roster).
    fn roster(
        &self,
        owner: &BareJid,
    ) -> impl Future<Output = Result<(u64, Vec<RosterItem>), StorageError>> + Send;

    /// One item of `owner`'s roster.
    fn roster_item(
        &self,
        owner: &BareJid,
        contact: &BareJid,
    ) -> impl Future<Output = Result<Option<RosterItem>, StorageError>> + Send;

    /// Apply these changes atomically; returns the new roster version of each change's owner,
    /// in order (for requests, the owner's unchanged version).
    ///
    /// A `Put` of a contact not yet in the owner's roster fails with
    /// [`StorageError::RosterFull`] when that roster already holds `max_items` items (counted
    /// inside the transaction, after the changes before it), and then nothing is applied.
    /// Replacing an existing item is always allowed. Because the count is taken in the same
    /// transaction as the insert, concurrent `apply`s cannot together pass the limit.
    fn apply(
        &self,
        changes: &[RosterChange],
        max_items: usize,
    ) -> impl Future<Output = Result<Vec<u64>, StorageError>> + Send;

    /// Whether `contact` has a pending subscription request to `owner`.
    fn has_request(
        &self,
        owner: &BareJid,
        contact: &BareJid,
    ) -> impl Future<Output = Result<bool, StorageError>> + Send;

    /// All pending inbound requests of `owner`: (who asked, the stanza), oldest first.
    fn requests(
        &self,
        owner: &BareJid,
    ) -> impl Future<Output = Result<Vec<(BareJid, String)>, StorageError>> + Send;

    /// What a resource's initial presence reads (RFC 6121 §4.2, §3.1.3; XEP-0160 §3), in one
    /// snapshot where the backend can: a login reads all three. The default reads
    /// [`RosterStore::roster`] and [`RosterStore::requests`] one after the other and leaves
    /// [`InitialPresence::offline_waiting`] set, so the caller asks the offline store itself.
    fn initial_presence(
        &self,
        owner: &BareJid,
    ) -> impl Future<Output = Result<InitialPresence, StorageError>> + Send {
        async move {
            let (version, roster) = self.roster(owner).await?;
            let requests = self.requests(owner).await?;
            Ok(InitialPresence {
                version,
                roster,
                requests,
                offline_waiting: true,
            })
        }
    }
}

/// What [`RosterStore::initial_presence`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialPresence {
    /// As [`RosterStore::roster`]: the roster version.
    pub version: u64,
    /// As [`RosterStore::roster`]: the items, sorted by contact JID.
    pub roster: Vec<RosterItem>,
    /// As [`RosterStore::requests`].
    pub requests: Vec<(BareJid, String)>,
    /// `false` only if the backend saw no offline message for the owner; `true` when it saw
    /// some or did not look.
    pub offline_waiting: bool,
}

/// A stored offline message (XEP-0160).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineMessage {
    /// When the server stored it, in milliseconds since the Unix epoch.
    pub stored_at_unix_ms: u64,
    /// The serialized message stanza.
    pub stanza: String,
}

/// How much one account may keep offline, for [`OfflineStore::push_offline`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfflineQuota {
    /// Messages kept at most.
    pub max_messages: usize,
    /// Bytes of stored stanzas (their UTF-8 serialization) kept at most, so a few large
    /// messages cannot fill the disk within the message count.
    pub max_bytes: usize,
}

impl OfflineQuota {
    /// A quota of `max_messages` messages and no byte limit.
    pub fn messages(max_messages: usize) -> Self {
        Self {
            max_messages,
            max_bytes: usize::MAX,
        }
    }

    /// Whether one more message of `new_bytes` fits next to `count` stored messages holding
    /// `bytes` bytes (database counts; a negative one is taken as full).
    pub(crate) fn admits(self, count: i64, bytes: i64, new_bytes: usize) -> bool {
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        count < self.max_messages && bytes.saturating_add(new_bytes) <= self.max_bytes
    }
}

/// A stored offline message with the id [`OfflineStore::remove_offline`] takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOffline {
    /// Identifies the message within its owner's store; ids grow in storage order.
    pub id: u64,
    /// The message.
    pub message: OfflineMessage,
}

/// Messages kept for accounts with no available resource (XEP-0160).
pub trait OfflineStore: Send + Sync + 'static {
    /// Store a message for `owner` unless that would take it past `quota` (in messages or in
    /// bytes, counted in the same transaction as the insert); returns whether it was stored.
    fn push_offline(
        &self,
        owner: &BareJid,
        message: &OfflineMessage,
        quota: OfflineQuota,
    ) -> impl Future<Output = Result<bool, StorageError>> + Send;

    /// The oldest `max` stored messages of `owner`, oldest first, without removing them:
    /// delivery reads a page, hands what it can to the session and then removes exactly
    /// that with [`OfflineStore::remove_offline`], so nothing is lost to a full queue.
    fn offline_page(
        &self,
        owner: &BareJid,
        max: usize,
    ) -> impl Future<Output = Result<Vec<StoredOffline>, StorageError>> + Send;

    /// Remove the messages of `owner` with these ids (ids that are gone or not `owner`'s are
    /// ignored); returns how many were removed.
    fn remove_offline(
        &self,
        owner: &BareJid,
        ids: &[u64],
    ) -> impl Future<Output = Result<usize, StorageError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_halves() {
        assert_eq!(Subscription::None.with_to(true), Subscription::To);
        assert_eq!(Subscription::To.with_from(true), Subscription::Both);
        assert_eq!(Subscription::Both.with_to(false), Subscription::From);
        assert_eq!(Subscription::From.with_from(false), Subscription::None);
        for s in [
            Subscription::None,
            Subscription::To,
            Subscription::From,
            Subscription::Both,
        ] {
            assert_eq!(Subscription::parse(s.as_str()), Some(s));
        }
        assert_eq!(Subscription::parse("remove"), None);
    }
}
