//! Message archives (XEP-0313): the types, the [`ArchiveStore`] trait every backend implements,
//! and the helpers that turn archive ids into time.
//!
//! **Ids are time.** Every archived message is identified by a UUID version 7 (RFC 9562), its
//! XEP-0359 `<stanza-id/>`. The top 48 bits of a v7 id are the milliseconds since the Unix
//! epoch at which the message was archived, and both backends store the id as its 16 bytes in
//! network order, which sort the way the ids were made. So one index on (account, id) serves
//! "the latest 50", paging in both directions, `after-id`/`before-id` and the XEP-0313 `start`
//! and `end` filters alike: a time is just the lowest or highest id of its millisecond
//! ([`lowest_id_at`], [`highest_id_at`]). A message's timestamp is its id's
//! ([`ArchivedMessage::timestamp_ms`]); there is no second clock to disagree with it.
//!
//! **One stored copy.** A message archived for its recipient and then kept for offline
//! delivery is not copied into the offline store: its archive row is marked pending
//! ([`ArchiveStore::archive_mark_pending`]) and the backends' `OfflineStore` serves marked rows
//! next to the offline copies of messages that were not archived (hinted `no-store`, or an
//! archive preference of `never`), so the two can never disagree.
//!
//! **Usage is counted, not summed.** Each account's message count, bytes and oldest id are kept
//! in a row updated in the same transaction as every append and removal, so the byte quota
//! checked on every append and the retention sweep never scan an archive.

use std::future::Future;

use jid::BareJid;
use uuid::Uuid;

use crate::StorageError;

/// Which way a message went, seen from the archive's owner (XEP-0313 §3: "incoming" and
/// "outgoing" are relative to the archived JID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Received by the owner.
    Incoming,
    /// Sent by the owner.
    Outgoing,
}

impl Direction {
    /// The stored code: 0 incoming, 1 outgoing.
    pub(crate) fn code(self) -> i16 {
        match self {
            Direction::Incoming => 0,
            Direction::Outgoing => 1,
        }
    }

    /// The direction of a stored code; anything else is corrupt.
    pub(crate) fn from_code(code: i64) -> Result<Self, StorageError> {
        match code {
            0 => Ok(Direction::Incoming),
            1 => Ok(Direction::Outgoing),
            other => Err(StorageError::Corrupt(format!(
                "archived message direction {other}"
            ))),
        }
    }
}

/// One message in an account's archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedMessage {
    /// The archive id: a UUID version 7 whose timestamp is when the message was archived.
    pub id: Uuid,
    /// The other party's bare JID: the recipient of an outgoing message, the sender of an
    /// incoming one (the owner's own JID for a message to itself).
    pub with: BareJid,
    /// The other party's resource, when the address had one.
    pub with_resource: Option<String>,
    /// Sent or received.
    pub direction: Direction,
    /// The sender's XEP-0359 `<origin-id/>`, when it gave one.
    pub origin_id: Option<String>,
    /// The serialized message stanza as archived.
    pub stanza: String,
}

impl ArchivedMessage {
    /// When the message was archived, in milliseconds since the Unix epoch: the id's time.
    pub fn timestamp_ms(&self) -> u64 {
        timestamp_ms(&self.id)
    }
}

/// The milliseconds since the Unix epoch in a UUID version 7 (its top 48 bits).
pub fn timestamp_ms(id: &Uuid) -> u64 {
    let bytes = id.as_bytes();
    let mut millis = [0u8; 8];
    millis[2..].copy_from_slice(&bytes[..6]);
    u64::from_be_bytes(millis)
}

/// The smallest id of millisecond `ms`: every id archived at `ms` or later is at least this.
pub fn lowest_id_at(ms: u64) -> Uuid {
    id_at(ms, [0; 10])
}

/// The largest id of millisecond `ms`: every id archived at `ms` or earlier is at most this.
pub fn highest_id_at(ms: u64) -> Uuid {
    id_at(ms, [0xff; 10])
}

/// A UUID version 7 of millisecond `ms` with `random` in the remaining 74 bits (the version
/// and variant bits are set over them). Ids made for one millisecond in increasing `random`
/// order sort in that order.
pub fn id_at(ms: u64, random: [u8; 10]) -> Uuid {
    // 48 bits of time; later than the year 10889 is clamped rather than wrapped.
    let ms = ms.min((1 << 48) - 1);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    bytes[6..].copy_from_slice(&random);
    bytes[6] = 0x70 | (bytes[6] & 0x0f);
    bytes[8] = 0x80 | (bytes[8] & 0x3f);
    Uuid::from_bytes(bytes)
}

/// Whether `id` is a UUID version 7 (the only ids an archive holds).
pub fn is_archive_id(id: &Uuid) -> bool {
    id.get_version_num() == 7 && id.get_variant() == uuid::Variant::RFC4122
}

/// A `with` filter (XEP-0313 §4.1.1): a bare JID matches every resource of it, a full JID
/// only that resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithFilter {
    /// The bare JID.
    pub bare: BareJid,
    /// The resource, for a full JID.
    pub resource: Option<String>,
}

/// Which messages of an archive a query is about. Every bound is optional; all given bounds
/// apply together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveFilter {
    /// Only messages with this party.
    pub with: Option<WithFilter>,
    /// Only messages archived at this millisecond or later (XEP-0313 `start`).
    pub start_ms: Option<u64>,
    /// Only messages archived at this millisecond or earlier (XEP-0313 `end`).
    pub end_ms: Option<u64>,
    /// Only messages after this id (exclusive: `after-id`, RSM `after`).
    pub after_id: Option<Uuid>,
    /// Only messages before this id (exclusive: `before-id`, RSM `before`).
    pub before_id: Option<Uuid>,
}

impl ArchiveFilter {
    /// The filter's time and id bounds as one inclusive range of ids, or `None` when the range
    /// is empty. The backends query with it.
    pub(crate) fn id_range(&self) -> Option<(Uuid, Uuid)> {
        let mut low = Uuid::nil();
        let mut high = Uuid::max();
        if let Some(start) = self.start_ms {
            low = low.max(lowest_id_at(start));
        }
        if let Some(after) = self.after_id {
            low = low.max(successor(&after)?);
        }
        if let Some(end) = self.end_ms {
            high = high.min(highest_id_at(end));
        }
        if let Some(before) = self.before_id {
            high = high.min(predecessor(&before)?);
        }
        (low <= high).then_some((low, high))
    }

    /// Whether `message` passes this filter (for messages fetched by id).
    pub fn matches(&self, message: &ArchivedMessage) -> bool {
        let in_range = self
            .id_range()
            .is_some_and(|(low, high)| low <= message.id && message.id <= high);
        let with = self.with.as_ref().is_none_or(|with| {
            with.bare == message.with
                && with
                    .resource
                    .as_ref()
                    .is_none_or(|resource| message.with_resource.as_ref() == Some(resource))
        });
        in_range && with
    }
}

/// The id one above `id` in byte order; `None` for the largest.
fn successor(id: &Uuid) -> Option<Uuid> {
    id.as_u128().checked_add(1).map(Uuid::from_u128)
}

/// The id one below `id` in byte order; `None` for the smallest.
fn predecessor(id: &Uuid) -> Option<Uuid> {
    id.as_u128().checked_sub(1).map(Uuid::from_u128)
}

/// Which end of the matching messages a page starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageFrom {
    /// The oldest matching messages (paging forward).
    Oldest,
    /// The newest matching messages (paging backward, RSM `<before/>`).
    Newest,
}

/// A page of an archive, oldest first whichever end it was taken from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchivePage {
    /// The messages, in archive (chronological) order.
    pub messages: Vec<ArchivedMessage>,
    /// Whether more messages match beyond the page in the direction it was taken: newer ones
    /// for [`PageFrom::Oldest`], older ones for [`PageFrom::Newest`].
    pub more: bool,
}

/// An account's archive in numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveUsage {
    /// Messages held.
    pub messages: u64,
    /// Bytes of their stanzas (UTF-8).
    pub bytes: u64,
}

/// The bound on one account's archive checked by every append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveQuota {
    /// Bytes of stanzas an archive may hold; a message that would pass it is refused.
    pub max_bytes: u64,
}

impl ArchiveQuota {
    /// No bound.
    pub const UNLIMITED: Self = Self {
        max_bytes: u64::MAX,
    };

    /// Whether a message of `new_bytes` fits an archive holding `bytes`.
    pub(crate) fn admits(self, bytes: u64, new_bytes: u64) -> bool {
        bytes.saturating_add(new_bytes) <= self.max_bytes
    }
}

/// What became of one message given to [`ArchiveStore::archive_append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored.
    Stored,
    /// Not stored: the owner's archive would pass its byte quota.
    QuotaExceeded,
    /// Not stored: the owner has no account.
    NoAccount,
    /// Not stored: the owner's archive already holds this id.
    Duplicate,
}

/// What the retention sweep removes: the oldest messages, never a gap (XEP-0313 §3.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Remove every message archived before this millisecond.
    pub before_ms: Option<u64>,
    /// Remove the oldest messages of an archive holding more than this many.
    pub max_messages: Option<u64>,
}

/// Per-account message archives (XEP-0313).
///
/// An archive belongs to its account: it is deleted with it, and only existing accounts can
/// have messages appended. Ids are unique per archive and never reused by the server (they
/// are UUIDv7s made as messages are archived); appending an id the archive already holds is
/// [`Appended::Duplicate`].
pub trait ArchiveStore: Send + Sync + 'static {
    /// Append each `(owner, message)` in one transaction, in order, each checked against
    /// `quota` as counted after the ones before it. The outcomes are in the same order.
    fn archive_append(
        &self,
        messages: &[(BareJid, ArchivedMessage)],
        quota: ArchiveQuota,
    ) -> impl Future<Output = Result<Vec<Appended>, StorageError>> + Send;

    /// At most `max` messages of `owner` passing `filter`, from the given end.
    fn archive_page(
        &self,
        owner: &BareJid,
        filter: &ArchiveFilter,
        from: PageFrom,
        max: usize,
    ) -> impl Future<Output = Result<ArchivePage, StorageError>> + Send;

    /// How many messages of `owner` pass `filter`.
    fn archive_count(
        &self,
        owner: &BareJid,
        filter: &ArchiveFilter,
    ) -> impl Future<Output = Result<u64, StorageError>> + Send;

    /// The messages of `owner` with these ids, in archive order; ids it does not hold are
    /// left out.
    fn archive_get(
        &self,
        owner: &BareJid,
        ids: &[Uuid],
    ) -> impl Future<Output = Result<Vec<ArchivedMessage>, StorageError>> + Send;

    /// The oldest and newest ids of `owner`'s archive; `None` when it is empty.
    fn archive_bounds(
        &self,
        owner: &BareJid,
    ) -> impl Future<Output = Result<Option<(Uuid, Uuid)>, StorageError>> + Send;

    /// How much `owner`'s archive holds.
    fn archive_usage(
        &self,
        owner: &BareJid,
    ) -> impl Future<Output = Result<ArchiveUsage, StorageError>> + Send;

    /// Remove up to `max_rows` of the oldest messages that `retention` says must go, across
    /// all accounts, in one transaction; returns how many were removed. A sweep calls it
    /// until it returns less than `max_rows`, so no transaction holds the writer for long.
    fn archive_trim(
        &self,
        retention: Retention,
        max_rows: usize,
    ) -> impl Future<Output = Result<usize, StorageError>> + Send;

    /// Mark `owner`'s message `id` as waiting for offline delivery (XEP-0160), so the archive
    /// row is the message's one stored copy: [`crate::OfflineStore::offline_page`] returns it
    /// (oldest first, among the account's offline copies) until
    /// [`crate::OfflineStore::remove_offline`] clears the mark. `quota` counts marked rows and
    /// offline copies together, as `push_offline` does. `Ok(false)` when the archive does not
    /// hold the message or the quota would be passed; nothing is marked then.
    fn archive_mark_pending(
        &self,
        owner: &BareJid,
        id: &Uuid,
        quota: crate::OfflineQuota,
    ) -> impl Future<Output = Result<bool, StorageError>> + Send;
}

/// Offline message ids ([`crate::StoredOffline::id`]) at or above this name a pending archive
/// row (its row id plus this), below it an offline copy.
pub(crate) const PENDING_ID: u64 = 1 << 62;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_millisecond_and_sort_by_it() {
        let early = id_at(1_700_000_000_000, [0xff; 10]);
        let late = id_at(1_700_000_000_001, [0; 10]);
        assert!(early < late);
        assert!(
            early.as_bytes() < late.as_bytes(),
            "byte order is time order"
        );
        assert_eq!(timestamp_ms(&early), 1_700_000_000_000);
        assert_eq!(timestamp_ms(&late), 1_700_000_000_001);
        assert!(is_archive_id(&early) && is_archive_id(&late));
        assert!(!is_archive_id(&Uuid::nil()));
        let generated = Uuid::now_v7();
        assert!(is_archive_id(&generated));
        let ms = timestamp_ms(&generated);
        assert!(lowest_id_at(ms) <= generated && generated <= highest_id_at(ms));
    }

    #[test]
    fn filters_become_one_inclusive_range() {
        let a = id_at(1000, [1; 10]);
        let filter = ArchiveFilter {
            start_ms: Some(1000),
            end_ms: Some(2000),
            after_id: Some(a),
            ..ArchiveFilter::default()
        };
        let (low, high) = filter.id_range().expect("a range");
        assert_eq!(low.as_u128(), a.as_u128() + 1);
        assert_eq!(high, highest_id_at(2000));
        // Bounds that cross leave nothing.
        let empty = ArchiveFilter {
            start_ms: Some(3000),
            end_ms: Some(2000),
            ..ArchiveFilter::default()
        };
        assert_eq!(empty.id_range(), None);
        let nothing_after_max = ArchiveFilter {
            after_id: Some(Uuid::max()),
            ..ArchiveFilter::default()
        };
        assert_eq!(nothing_after_max.id_range(), None);
    }

    #[test]
    fn a_bare_with_matches_every_resource_and_a_full_one_only_its_own() {
        let message = ArchivedMessage {
            id: id_at(1500, [0; 10]),
            with: BareJid::new("romeo@example.net").expect("jid"),
            with_resource: Some("orchard".to_owned()),
            direction: Direction::Incoming,
            origin_id: None,
            stanza: "<message/>".to_owned(),
        };
        let with = |resource: Option<&str>| ArchiveFilter {
            with: Some(WithFilter {
                bare: BareJid::new("romeo@example.net").expect("jid"),
                resource: resource.map(str::to_owned),
            }),
            ..ArchiveFilter::default()
        };
        assert!(with(None).matches(&message));
        assert!(with(Some("orchard")).matches(&message));
        assert!(!with(Some("garden")).matches(&message));
        let later = ArchiveFilter {
            start_ms: Some(1501),
            ..ArchiveFilter::default()
        };
        assert!(!later.matches(&message));
    }
}
