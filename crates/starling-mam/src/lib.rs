//! XEP-0313 message archive management (1.1), with XEP-0441 preferences (0.2) and XEP-0359
//! stanza ids (0.7), a module on the extension interface.
//!
//! **What is archived, where, once.** Every chat or normal message with content (see
//! [`rules::is_archivable`]) is kept in the archive of each local account it passes: the
//! sender's (outgoing) when it leaves the sender's session ([`RoutingPoint::Outbound`]) and the
//! recipient's (incoming) when the router is about to handle it for the recipient
//! ([`RoutingPoint::ToBare`], which a message to a bare JID passes once however many resources
//! it then goes to, and which a message to a full JID whose resource is gone passes too). A
//! message addressed to a full JID that is connected passes only [`RoutingPoint::ToFull`] and is
//! archived there; at `ToFull` a message already carrying its archive id (a bare-JID fan-out, an
//! offline message being flushed) is not archived again. A message to one's own account is
//! archived once, as incoming. Hooks sit in the archive band, after blocking (so refused
//! traffic is never archived) and before carbons.
//!
//! **Ids.** The recipient's copy gains `<stanza-id xmlns='urn:xmpp:sid:0' by='{account}'
//! id='{UUIDv7}'/>` (XEP-0313 §3.5): the id is the archive row's, so it sorts by time. Any
//! `<stanza-id/>` a client put in claiming a `by` on one of our domains is removed as the
//! stanza leaves its session (XEP-0359 §4 rule 2), whether or not the message is archived;
//! `<origin-id/>` is kept (and stored). The sender's own copy gets its id only for the
//! duration of the `Outbound` hooks, so carbons can put it in the sent copy (XEP-0313 §3.5:
//! "SHOULD include the element as a child of the forwarded message"); a later hook removes it
//! before the message goes to the recipient, who may not see the sender's archive.
//!
//! **Durable before the router goes on.** Appends go through the storage crate's group-commit
//! [`ArchiveWriter`]: the hook waits until its message's transaction has committed, so once the
//! router has handled a message (and a XEP-0198 ack can say so) it is on disk in every archive
//! it belongs to, and one transaction carries as many messages as arrived meanwhile.
//!
//! **Quota.** An archive holding [`Settings::quota`] bytes refuses further messages: the
//! message is not delivered and its sender gets `<resource-constraint/>` (type `wait`) with a
//! text saying whose archive is full (RFC 6120 §8.3.3.18: the recipient lacks the resources).
//! Retention ([`Settings::max_age_days`], [`Settings::max_messages`]) removes the oldest messages
//! in bounded batches ([`Mam::sweep`]).
//!
//! **Queries** (iq to the account's own bare JID; anyone else's archive is `forbidden`):
//! see [`query`]. Results are sent to the requesting session through its queue before the
//! router queues the `<fin/>` iq result on the same queue, so they arrive first; a page is at
//! most [`Settings::max_page`] messages and never more than the session's queue has room for.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod prefs;
pub mod query;
pub mod rules;

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use jid::{BareJid, Jid};
use minidom::Element;
use starling_modules::{
    AddressForm, BoxFuture, DiscoTarget, Hooked, IqAnswer, IqHandler, IqRequest, IqTarget, Module,
    Priority, Registrar, Rejection, Routed, RoutingPoint, SessionEvent, SessionObserver,
    StanzaHook, Verdict,
};
use starling_registry::{Registry, SessionHandle};
use starling_stanza::{IqType, NS_STANZA_ERRORS, OutboundStanza, StanzaErrorCondition, StanzaKind};
use starling_storage::{
    AccountDataStore, Appended, ArchiveQuota, ArchiveStore, ArchiveWriter, ArchivedMessage,
    DataChange, DataQuota, Direction, IdSource, OfflineQuota, PageFrom, Retention, RosterStore,
    StorageError,
};
use uuid::Uuid;

pub use prefs::{DefaultRule, Prefs};
pub use rules::NS_SID;

/// The message archive management namespace.
pub const NS_MAM: &str = "urn:xmpp:mam:2";
/// The feature saying `before-id`, `after-id`, `ids`, flipped pages and metadata work.
pub const NS_MAM_EXTENDED: &str = "urn:xmpp:mam:2#extended";
/// The module store the preferences live in (see [`prefs`]).
pub const STORE: &str = "mam";
/// The priority of the hook that takes the sender's archive id off an outgoing message again:
/// after carbons ([`Priority::COPY`]) copied it into the sent carbon, before the fallback band.
pub const STRIP_OUTGOING_ID: Priority = Priority(-150);
/// Queue slots a query leaves free for what else the session is owed meanwhile (the `<fin/>`
/// iq result above all).
pub const QUERY_QUEUE_HEADROOM: usize = 4;

/// The module's limits and policy, from `[archive]` in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// What happens to messages with JIDs in neither of an account's lists, until the account
    /// sets preferences of its own.
    pub default_rule: DefaultRule,
    /// Results one query returns at most (an RSM `<max/>` above it is lowered to it).
    pub max_page: usize,
    /// Bytes of stanzas one account's archive holds at most.
    pub quota: ArchiveQuota,
    /// Messages older than this many days are removed; 0 keeps them.
    pub max_age_days: u64,
    /// An archive's oldest messages past this count are removed; 0 keeps them.
    pub max_messages: u64,
    /// How often the retention sweep runs.
    pub sweep_interval: Duration,
    /// Messages one retention transaction removes at most.
    pub sweep_batch_rows: usize,
    /// Messages one archive transaction carries at most.
    pub write_batch: usize,
    /// JIDs the always and never lists hold together, at most.
    pub max_prefs_jids: usize,
    /// Whether a hook waits for its message's transaction to commit before the router goes
    /// on (the message durable before it is delivered, and before its sender's stream is
    /// read further). Without it, a message is delivered as soon as it is queued for the next
    /// commit (one commit later on disk), transactions carry many messages of each account,
    /// and a full archive no longer refuses messages: they go on unarchived, logged.
    pub wait_for_commit: bool,
    /// What an account may keep for offline delivery (XEP-0160), counted over marked archive
    /// rows and the router's offline copies together: the router's own limits.
    pub offline_quota: OfflineQuota,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            default_rule: DefaultRule::Always,
            max_page: 100,
            quota: ArchiveQuota {
                max_bytes: 100 * 1024 * 1024,
            },
            max_age_days: 0,
            max_messages: 100_000,
            sweep_interval: Duration::from_secs(3600),
            sweep_batch_rows: 1000,
            write_batch: starling_storage::DEFAULT_MAX_BATCH,
            max_prefs_jids: 1000,
            wait_for_commit: true,
            offline_quota: OfflineQuota {
                max_messages: 100,
                max_bytes: 1024 * 1024,
            },
        }
    }
}

/// Everything the module needs of the server's store.
pub trait Store: ArchiveStore + AccountDataStore + RosterStore + Clone {}
impl<T: ArchiveStore + AccountDataStore + RosterStore + Clone> Store for T {}

/// The module. `S` is the server's store.
pub struct Mam<S> {
    store: S,
    writer: ArchiveWriter<S>,
    registry: Arc<Registry>,
    settings: Settings,
    /// Preferences of accounts with connected resources, by account.
    prefs: DashMap<BareJid, Arc<Prefs>>,
}

impl<S: Store> Mam<S> {
    /// The module over `store`, answering through `registry`, with archive ids from `ids`
    /// (the server passes `Uuid::now_v7`).
    pub fn new(store: S, registry: Arc<Registry>, settings: Settings, ids: IdSource) -> Self {
        let writer = ArchiveWriter::new(store.clone(), settings.quota, settings.write_batch, ids);
        Self {
            store,
            writer,
            registry,
            settings,
            prefs: DashMap::new(),
        }
    }

    /// Remove what retention says must go, as of `now_ms`, in transactions of at most
    /// [`Settings::sweep_batch_rows`] messages; returns how many went.
    pub async fn sweep(&self, now_ms: u64) -> Result<usize, StorageError> {
        let retention = Retention {
            before_ms: (self.settings.max_age_days > 0).then(|| {
                now_ms.saturating_sub(self.settings.max_age_days.saturating_mul(86_400_000))
            }),
            max_messages: (self.settings.max_messages > 0).then_some(self.settings.max_messages),
        };
        if retention.before_ms.is_none() && retention.max_messages.is_none() {
            return Ok(0);
        }
        let batch = self.settings.sweep_batch_rows.max(1);
        let mut removed = 0;
        loop {
            let now = self.store.archive_trim(retention, batch).await?;
            removed += now;
            if now < batch {
                return Ok(removed);
            }
            // Between transactions, let the archive writer in.
            tokio::task::yield_now().await;
        }
    }

    /// Run [`Mam::sweep`] every [`Settings::sweep_interval`], reading the time in seconds
    /// since the Unix epoch from `clock`; never returns.
    pub async fn run_retention(self: Arc<Self>, clock: Arc<dyn Fn() -> u64 + Send + Sync>) {
        let mut ticks = tokio::time::interval(self.settings.sweep_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match self.sweep(clock().saturating_mul(1000)).await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "archive retention removed messages"),
                Err(err) => tracing::error!(error = %err, "archive retention failed"),
            }
        }
    }

    /// The preferences of `account`: cached while it has connected resources, else read.
    async fn prefs_of(&self, account: &BareJid) -> Arc<Prefs> {
        if let Some(prefs) = self.prefs.get(account) {
            return Arc::clone(&prefs);
        }
        let prefs = Arc::new(
            match self.store.data_get(account, STORE, prefs::PREFS_KEY).await {
                Ok(Some(bytes)) => Prefs::decode(&bytes).unwrap_or_else(|| {
                    tracing::error!(%account, "stored archive preferences do not parse");
                    Prefs::with_default(self.settings.default_rule)
                }),
                Ok(None) => Prefs::with_default(self.settings.default_rule),
                Err(err) => {
                    tracing::error!(%account, error = %err, "reading archive preferences failed");
                    Prefs::with_default(self.settings.default_rule)
                }
            },
        );
        if !self.registry.connected_resources(account).is_empty() {
            self.prefs.insert(account.clone(), Arc::clone(&prefs));
        }
        prefs
    }

    /// Whether `owner`'s preferences archive messages with `target` (XEP-0441 §2.3).
    async fn wants(&self, owner: &BareJid, target: &Jid) -> bool {
        let prefs = self.prefs_of(owner).await;
        if let Some(listed) = prefs.listed(target) {
            return listed;
        }
        // An account's messages to itself are its own conversation, whatever the default.
        if target.to_bare() == *owner {
            return true;
        }
        match prefs.default {
            DefaultRule::Always => true,
            DefaultRule::Never => false,
            DefaultRule::Roster => match self.store.roster_item(owner, &target.to_bare()).await {
                Ok(item) => item.is_some(),
                Err(err) => {
                    tracing::error!(%owner, error = %err, "reading a roster item failed");
                    false
                }
            },
        }
    }

    /// Whether `by` names an entity of this server (XEP-0359 §4 rule 2).
    fn is_ours(&self, by: &str) -> bool {
        Jid::new(by).is_ok_and(|by| self.registry.serves(by.domain().as_str()))
    }

    /// A message leaving its sender's session: remove ids claiming to be ours, then keep it in
    /// the sender's archive.
    fn outbound<'a>(&'a self, routed: &'a mut Routed<'_>) -> Hooked<'a> {
        if rules::has_stanza_id_by(routed.stanza(), |by| self.is_ours(by)) {
            rules::strip_stanza_ids_by(routed.stanza_mut(), |by| self.is_ours(by));
        }
        if !rules::is_archivable(routed.stanza()) {
            return Hooked::Now(Verdict::Continue);
        }
        let owner = routed.from.to_bare();
        // A message to one's own account is archived once, as it arrives.
        if routed.to.to_bare() == owner {
            return Hooked::Now(Verdict::Continue);
        }
        Hooked::Later(Box::pin(async move {
            let target = routed.to.clone();
            if !self.wants(&owner, &target).await {
                return Verdict::Continue;
            }
            let message = ArchivedMessage {
                id: Uuid::nil(),
                with: target.to_bare(),
                with_resource: target.resource().map(|r| r.as_str().to_owned()),
                direction: Direction::Outgoing,
                origin_id: rules::origin_id(routed.stanza()),
                stanza: serialize(routed.stanza()),
            };
            let pending = self
                .writer
                .submit(owner.clone(), move |id| ArchivedMessage { id, ..message });
            let id = pending.id;
            let appended = if self.settings.wait_for_commit {
                pending.committed().await
            } else {
                Ok(Appended::Stored)
            };
            match appended {
                Ok(Appended::Stored) => {
                    // For carbons' sent copy; `StripOutgoingId` removes it before delivery.
                    routed
                        .stanza_mut()
                        .append_child(rules::stanza_id(owner.as_str(), &id.to_string()));
                    Verdict::Continue
                }
                Ok(Appended::QuotaExceeded) => Verdict::Reject(full_archive(
                    "your message archive is full; the message was not sent",
                )),
                Ok(Appended::NoAccount | Appended::Duplicate) => Verdict::Continue,
                Err(err) => {
                    // Delivering unarchived beats refusing: the recipient still gets it.
                    tracing::error!(%owner, error = %err, "archiving a sent message failed");
                    Verdict::Continue
                }
            }
        }))
    }

    /// A message about to be handled for a local account: keep it in that account's archive
    /// and give the recipient's copy its archive id.
    fn incoming<'a>(&'a self, routed: &'a mut Routed<'_>) -> Hooked<'a> {
        if !rules::is_archivable(routed.stanza()) {
            return Hooked::Now(Verdict::Continue);
        }
        let owner = routed.to.to_bare();
        let owner_text = owner.to_string();
        if routed.point == RoutingPoint::ToFull {
            // Only a message addressed to this full JID is archived here; one with our id
            // was archived on its way (a bare-JID fan-out, an offline message flushed).
            let direct = routed
                .stanza()
                .attr("to")
                .is_some_and(|to| to.contains('/'));
            if !direct || rules::has_stanza_id_by(routed.stanza(), |by| by == owner_text) {
                return Hooked::Now(Verdict::Continue);
            }
        }
        Hooked::Later(Box::pin(async move {
            let sender = routed.from.clone();
            if !self.wants(&owner, &sender).await {
                return Verdict::Continue;
            }
            let is_owner = |by: &str| by == owner_text;
            let stanza = routed.stanza_mut();
            rules::strip_stanza_ids_by(stanza, is_owner);
            let origin_id = rules::origin_id(stanza);
            let pending = self.writer.submit(owner.clone(), |id| {
                stanza.append_child(rules::stanza_id(&owner_text, &id.to_string()));
                ArchivedMessage {
                    id,
                    with: sender.to_bare(),
                    with_resource: sender.resource().map(|r| r.as_str().to_owned()),
                    direction: Direction::Incoming,
                    origin_id,
                    stanza: serialize(stanza),
                }
            });
            if !self.settings.wait_for_commit {
                return Verdict::Continue;
            }
            match pending.committed().await {
                Ok(Appended::Stored) => Verdict::Continue,
                Ok(Appended::QuotaExceeded) => Verdict::Reject(full_archive(
                    "the recipient's message archive is full; the message was not delivered",
                )),
                Ok(Appended::NoAccount | Appended::Duplicate) => {
                    rules::strip_stanza_ids_by(routed.stanza_mut(), is_owner);
                    Verdict::Continue
                }
                Err(err) => {
                    tracing::error!(%owner, error = %err, "archiving a received message failed");
                    rules::strip_stanza_ids_by(routed.stanza_mut(), is_owner);
                    Verdict::Continue
                }
            }
        }))
    }

    /// A message for a local account reached none of its resources. If it was archived on its
    /// way (it carries the account's archive id), its archive row becomes its offline copy:
    /// marked pending and handled here, so the router stores no second copy. Otherwise (not
    /// archived, or the offline quota full) the router's own rule follows: a copy in offline
    /// storage, or `service-unavailable` to the sender.
    fn keep_for_offline<'a>(&'a self, routed: &'a mut Routed<'_>) -> Hooked<'a> {
        if !self.settings.wait_for_commit {
            // The row may not be committed yet; the router keeps its own copy.
            return Hooked::Now(Verdict::Continue);
        }
        let owner = routed.to.to_bare();
        let id = routed
            .stanza()
            .children()
            .find(|child| child.is("stanza-id", NS_SID) && child.attr("by") == Some(owner.as_str()))
            .and_then(|child| child.attr("id"))
            .and_then(|id| Uuid::parse_str(id).ok());
        let Some(id) = id else {
            return Hooked::Now(Verdict::Continue);
        };
        Hooked::Later(Box::pin(async move {
            match self
                .store
                .archive_mark_pending(&owner, &id, self.settings.offline_quota)
                .await
            {
                Ok(true) => Verdict::Handled,
                Ok(false) => Verdict::Continue,
                Err(err) => {
                    tracing::error!(%owner, error = %err, "keeping an archived message for offline delivery failed");
                    Verdict::Continue
                }
            }
        }))
    }

    async fn answer(&self, request: IqRequest<'_>) -> IqAnswer {
        let IqTarget::Account { jid: owner, is_own } = request.to else {
            return Err(StanzaErrorCondition::ServiceUnavailable.into());
        };
        if !is_own {
            // XEP-0313 §8.1: only the user reads the user's archive.
            return Err(StanzaErrorCondition::Forbidden.into());
        }
        match (request.iq_type, request.payload.name()) {
            (IqType::Get, "query") => Ok(Some(query::form())),
            (IqType::Set, "query") => self.query(&request, owner).await,
            (IqType::Get, "metadata") => match self.store.archive_bounds(owner).await {
                Ok(bounds) => Ok(Some(query::metadata(bounds))),
                Err(err) => Err(storage_failed(owner, &err)),
            },
            (IqType::Get, "prefs") => Ok(Some(self.prefs_of(owner).await.to_element())),
            (IqType::Set, "prefs") => self.set_prefs(owner, request.payload).await,
            (_, "query" | "metadata" | "prefs") => Err(StanzaErrorCondition::BadRequest.into()),
            _ => Err(StanzaErrorCondition::FeatureNotImplemented.into()),
        }
    }

    async fn set_prefs(&self, owner: &BareJid, payload: &Element) -> IqAnswer {
        let prefs = Prefs::parse(payload, self.settings.max_prefs_jids)
            .map_err(|err| with_text(err.condition(), &err.to_string()))?;
        let change = DataChange::Put {
            key: prefs::PREFS_KEY.to_owned(),
            value: prefs.encode(),
        };
        match self
            .store
            .data_apply(owner, STORE, &[change], DataQuota::UNLIMITED)
            .await
        {
            Ok(true) => {}
            Ok(false) => return Err(StanzaErrorCondition::PolicyViolation.into()),
            Err(err) => return Err(storage_failed(owner, &err)),
        }
        let answer = prefs.to_element();
        let prefs = Arc::new(prefs);
        if !self.registry.connected_resources(owner).is_empty() {
            self.prefs.insert(owner.clone(), prefs);
        }
        Ok(Some(answer))
    }

    /// An iq set `<query/>`: send the page's results to the requesting session, then answer
    /// with the `<fin/>`.
    async fn query(&self, request: &IqRequest<'_>, owner: &BareJid) -> IqAnswer {
        let query = query::Query::parse(request.payload)
            .map_err(|refusal| with_text(refusal.condition, &refusal.text))?;
        let mut named: Vec<Uuid> = query.must_exist.clone();
        if let Some(ids) = &query.ids {
            if ids.len() > self.settings.max_page {
                return Err(with_text(
                    StanzaErrorCondition::PolicyViolation,
                    &format!("at most {} ids per query", self.settings.max_page),
                ));
            }
            named.extend(ids);
        }
        named.sort();
        named.dedup();
        let found = match self.store.archive_get(owner, &named).await {
            Ok(found) => found,
            Err(err) => return Err(storage_failed(owner, &err)),
        };
        if found.len() < named.len() {
            // §4.1.3, §4.3.2: an id the archive does not hold.
            return Err(with_text(
                StanzaErrorCondition::ItemNotFound,
                "no message with that id in the archive",
            ));
        }
        let session = self.registry.resource(request.from);
        let room = session.as_ref().map_or(0, |session| {
            session.queue_room().saturating_sub(QUERY_QUEUE_HEADROOM)
        });
        if query.max == Some(0) {
            // XEP-0059 §2.7: the count alone.
            let count = self.count(owner, &query).await?;
            return Ok(Some(query::fin(count == 0, None, Some(count))));
        }
        let max = query
            .max
            .unwrap_or(self.settings.max_page)
            .min(self.settings.max_page)
            .min(room);
        if max == 0 {
            return Err(with_text(
                StanzaErrorCondition::ResourceConstraint,
                "the session's queue is full; ask again once it has read what is queued",
            ));
        }
        let (messages, complete) = match &query.ids {
            Some(ids) => {
                let mut matching: Vec<ArchivedMessage> = found
                    .into_iter()
                    .filter(|message| ids.contains(&message.id) && query.filter.matches(message))
                    .collect();
                let complete = matching.len() <= max;
                match query.from {
                    PageFrom::Oldest => matching.truncate(max),
                    PageFrom::Newest => {
                        let skip = matching.len().saturating_sub(max);
                        matching.drain(..skip);
                    }
                }
                (matching, complete)
            }
            None => match self
                .store
                .archive_page(owner, &query.filter, query.from, max)
                .await
            {
                Ok(page) => (page.messages, !page.more),
                Err(err) => return Err(storage_failed(owner, &err)),
            },
        };
        let count = if query.is_unfiltered() {
            match self.store.archive_usage(owner).await {
                Ok(usage) => Some(usage.messages),
                Err(err) => return Err(storage_failed(owner, &err)),
            }
        } else {
            None
        };
        let ends = messages
            .first()
            .zip(messages.last())
            .map(|(a, b)| (a.id, b.id));
        if let Some(session) = session {
            self.send_results(&session, owner, &query, &messages)?;
        }
        Ok(Some(query::fin(complete, ends, count)))
    }

    async fn count(&self, owner: &BareJid, query: &query::Query) -> Result<u64, Rejection> {
        if query.is_unfiltered() {
            return self
                .store
                .archive_usage(owner)
                .await
                .map(|usage| usage.messages)
                .map_err(|err| storage_failed(owner, &err));
        }
        match &query.ids {
            Some(ids) => match self.store.archive_get(owner, ids).await {
                Ok(found) => Ok(found.iter().filter(|m| query.filter.matches(m)).count() as u64),
                Err(err) => Err(storage_failed(owner, &err)),
            },
            None => self
                .store
                .archive_count(owner, &query.form_filter())
                .await
                .map_err(|err| storage_failed(owner, &err)),
        }
    }

    fn send_results(
        &self,
        session: &SessionHandle,
        owner: &BareJid,
        query: &query::Query,
        messages: &[ArchivedMessage],
    ) -> Result<(), Rejection> {
        let to = session.full_jid().to_string();
        let from = owner.to_string();
        let mut send = |message: &ArchivedMessage| {
            let Ok(stored) = message.stanza.parse::<Element>() else {
                tracing::error!(%owner, id = %message.id, "an archived message does not parse; left out");
                return Ok(());
            };
            let result = query::result_message(
                &to,
                &from,
                query.query_id.as_deref(),
                &message.id,
                message.timestamp_ms(),
                stored,
            );
            session.send(OutboundStanza::new(&result)).map_err(|_| {
                with_text(
                    StanzaErrorCondition::ResourceConstraint,
                    "the results did not fit the session's queue",
                )
            })
        };
        if query.flip {
            messages.iter().rev().try_for_each(&mut send)
        } else {
            messages.iter().try_for_each(&mut send)
        }
    }
}

/// The refusal of a message whose archive is full.
fn full_archive(text: &str) -> Rejection {
    with_text(StanzaErrorCondition::ResourceConstraint, text)
}

/// `condition` with an English `<text/>` (RFC 6120 §8.3.2), which `Rejection` places after the
/// condition, where the RFC wants it.
fn with_text(condition: StanzaErrorCondition, text: &str) -> Rejection {
    Rejection {
        condition,
        application: Some(
            Element::builder("text", NS_STANZA_ERRORS)
                .attr_ns(
                    minidom::rxml::Namespace::XML,
                    minidom::rxml::xml_ncname!("lang").to_owned(),
                    "en",
                )
                .append(text)
                .build(),
        ),
    }
}

fn storage_failed(owner: &BareJid, err: &StorageError) -> Rejection {
    tracing::error!(%owner, error = %err, "reading the message archive failed");
    StanzaErrorCondition::InternalServerError.into()
}

fn serialize(element: &Element) -> String {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = element.write_to(&mut out);
    String::from_utf8(out).unwrap_or_default()
}

impl<S: Store> Module for Mam<S> {
    fn name(&self) -> &'static str {
        "mam"
    }

    fn register(self: Arc<Self>, registrar: &mut Registrar<'_>) {
        registrar.iq_get_set(AddressForm::Bare, NS_MAM, self.clone());
        for feature in [NS_MAM, NS_MAM_EXTENDED, NS_SID] {
            registrar.disco_feature(DiscoTarget::Account, feature);
        }
        for point in [
            RoutingPoint::Outbound,
            RoutingPoint::ToBare,
            RoutingPoint::ToFull,
            RoutingPoint::DeliveryFailed,
        ] {
            registrar.hook(
                point,
                &[StanzaKind::Message],
                Priority::ARCHIVE,
                self.clone(),
            );
        }
        registrar.hook(
            RoutingPoint::Outbound,
            &[StanzaKind::Message],
            STRIP_OUTGOING_ID,
            Arc::new(StripOutgoingId),
        );
        registrar.session_events(self);
    }
}

impl<S: Store> IqHandler for Mam<S> {
    fn handle<'a>(&'a self, request: IqRequest<'a>) -> BoxFuture<'a, IqAnswer> {
        Box::pin(self.answer(request))
    }
}

impl<S: Store> StanzaHook for Mam<S> {
    fn on_stanza<'a>(&'a self, routed: &'a mut Routed<'_>) -> Hooked<'a> {
        match routed.point {
            RoutingPoint::Outbound => self.outbound(routed),
            RoutingPoint::ToBare | RoutingPoint::ToFull => self.incoming(routed),
            RoutingPoint::DeliveryFailed => self.keep_for_offline(routed),
        }
    }
}

impl<S: Store> SessionObserver for Mam<S> {
    fn on_session<'a>(
        &'a self,
        event: SessionEvent,
        session: &'a SessionHandle,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if event == SessionEvent::Ended {
                let account = session.bare_jid();
                if self.registry.connected_resources(&account).is_empty() {
                    self.prefs.remove(&account);
                }
            }
        })
    }
}

/// Takes the sender's archive id off an outgoing message once carbons have copied it, so the
/// recipient never sees it (XEP-0313 §3.5).
struct StripOutgoingId;

impl StanzaHook for StripOutgoingId {
    fn on_stanza<'a>(&'a self, routed: &'a mut Routed<'_>) -> Hooked<'a> {
        // The bare part of the sender's JID, without allocating.
        let full = routed.from.as_str();
        let sender = full.split_once('/').map_or(full, |(bare, _)| bare);
        if rules::has_stanza_id_by(routed.stanza(), |by| by == sender) {
            rules::strip_stanza_ids_by(routed.stanza_mut(), |by| by == sender);
        }
        Hooked::Now(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests;
