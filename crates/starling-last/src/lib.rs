//! XEP-0012 last activity (v2.0) of accounts, a module on the extension interface. The server's
//! own uptime (§5, a query to a host) is `starling-services`' `Uptime`; this module answers
//! queries to an account's bare JID (§3) and guards queries to its resources (§4).
//!
//! - **Offline user query (§3).** An iq get of `<query xmlns='jabber:iq:last'/>` to a local
//!   account's bare JID is answered by the server. Only the account itself and those allowed to
//!   see its presence (a roster item of the account for the requester with subscription `from` or
//!   `both`) get an answer; anyone else gets `forbidden` (§3 MUST, also Prosody's answer). While
//!   the account has a connected or available resource the answer is `seconds='0'` with no text
//!   (§3 MUST). Otherwise it is the seconds since the account's last resource ended and, as
//!   character data, the `<status/>` of the unavailable presence that resource sent before
//!   ending, if it sent one (§3 MAY). An account with no recorded logout (none since the module
//!   was enabled) gets `service-unavailable`, as ejabberd's mod_last answers; Prosody's `0`
//!   would claim a logout that never happened.
//! - **Online user query (§4).** An iq get of `jabber:iq:last` to a resource's full JID from
//!   someone not allowed to see the account's presence is refused with `forbidden` before it
//!   reaches the resource (§4 MUST), at the `ToFull` routing point in the policy band.
//! - A set is `not-allowed`, a payload other than `<query/>` a `bad-request` (as `Uptime`).
//!
//! **What is recorded, and when.** A logout is the end of an account's last connected resource
//! (`SessionEvent::Ended` with no connected resource left); while any resource is connected the
//! answer is `0` whatever is stored, so an earlier unavailable presence need not be written.
//! The router clears a resource's presence before it reports `Unavailable`, so the status text is
//! taken from the unavailable presence itself as it leaves its sender (an `Outbound` hook, in the
//! fallback band so a presence another module refused is not counted), kept in memory per
//! resource and forgotten when the resource becomes available again.
//!
//! **Storage layout:** module store [`STORE`] (`"lastactivity"`), one key [`KEY`] (`"last"`),
//! value UTF-8 text: the logout time in decimal seconds since the Unix epoch, then, only when
//! there is a status, one line feed (`\n`) and the status text ([`Record`]).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use dashmap::DashMap;
use jid::BareJid;
use minidom::Element;
use starling_modules::{
    AddressForm, BoxFuture, DiscoTarget, Hooked, IqAnswer, IqHandler, IqRequest, IqTarget, Module,
    Priority, Registrar, Rejection, Routed, RoutingPoint, SessionEvent, SessionObserver,
    StanzaHook, Verdict,
};
use starling_registry::{Registry, SessionHandle};
use starling_stanza::{IqType, NS_CLIENT, StanzaErrorCondition, StanzaKind};
use starling_storage::{AccountDataStore, RosterStore};

/// The last activity namespace.
pub use starling_stanza::NS_LAST;
/// The module store the records live in.
pub const STORE: &str = "lastactivity";
/// The one key of [`STORE`].
pub const KEY: &str = "last";

/// Where the module reads the time: seconds since the Unix epoch (the server passes the system
/// clock; tests fix it).
pub type UnixClock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// An account's last logout, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// When the last connected resource ended, in seconds since the Unix epoch.
    pub at: u64,
    /// The `<status/>` of that resource's unavailable presence, if it sent one.
    pub status: Option<String>,
}

impl Record {
    /// The stored form: decimal seconds, then `\n` and the status when there is one.
    pub fn encode(&self) -> Vec<u8> {
        match &self.status {
            Some(status) => format!("{}\n{status}", self.at).into_bytes(),
            None => self.at.to_string().into_bytes(),
        }
    }

    /// A stored record read back; `None` for bytes not in the stored form.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (at, status) = match text.split_once('\n') {
            Some((at, status)) => (at, Some(status.to_owned())),
            None => (text, None),
        };
        if at.is_empty() || !at.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self {
            at: at.parse().ok()?,
            status,
        })
    }
}

/// The `<query/>` answer: `seconds` and, when given, the status as character data.
pub fn answer(seconds: u64, status: Option<&str>) -> Element {
    let mut query = Element::builder("query", NS_LAST)
        .attr(
            minidom::rxml::xml_ncname!("seconds").to_owned(),
            seconds.to_string(),
        )
        .build();
    if let Some(status) = status.filter(|status| !status.is_empty()) {
        query.append_text_node(status);
    }
    query
}

/// The module. `S` is the server's store.
pub struct LastActivity<S> {
    store: S,
    registry: Arc<Registry>,
    clock: UnixClock,
    /// The status of the unavailable presence each resource (by full JID) last sent, until it
    /// becomes available again or ends.
    statuses: DashMap<String, Option<String>>,
    /// Logouts recorded but not yet written, by account (a later one replaces an earlier).
    /// A std mutex, never held across an await.
    pending: Mutex<HashMap<BareJid, Record>>,
    /// Whether some session's task is writing `pending` out now.
    writing: AtomicBool,
}

impl<S: AccountDataStore + RosterStore> LastActivity<S> {
    /// The module over `store`, seeing sessions through `registry` and reading `clock`.
    pub fn new(store: S, registry: Arc<Registry>, clock: UnixClock) -> Self {
        Self {
            store,
            registry,
            clock,
            statuses: DashMap::new(),
            pending: Mutex::new(HashMap::new()),
            writing: AtomicBool::new(false),
        }
    }

    /// Whether `requester` may see the presence of `account` (§3, §4; the security
    /// considerations: a presence subscription).
    async fn may_see(&self, account: &BareJid, requester: &BareJid) -> Result<bool, Rejection> {
        if account == requester {
            return Ok(true);
        }
        match self.store.roster_item(account, requester).await {
            Ok(item) => Ok(item.is_some_and(|item| item.subscription.has_from())),
            Err(err) => {
                tracing::error!(%account, error = %err, "reading a roster item failed");
                Err(StanzaErrorCondition::InternalServerError.into())
            }
        }
    }

    async fn answer(&self, request: IqRequest<'_>) -> IqAnswer {
        if request.iq_type != IqType::Get {
            return Err(StanzaErrorCondition::NotAllowed.into());
        }
        if request.payload.name() != "query" {
            return Err(StanzaErrorCondition::BadRequest.into());
        }
        let IqTarget::Account { jid: account, .. } = request.to else {
            return Err(StanzaErrorCondition::ServiceUnavailable.into());
        };
        if !self.may_see(account, &request.from.to_bare()).await? {
            return Err(StanzaErrorCondition::Forbidden.into());
        }
        if !self.registry.connected_resources(account).is_empty() {
            return Ok(Some(answer(0, None)));
        }
        let waiting = self.pending_lock().get(account).cloned();
        if let Some(record) = waiting {
            let seconds = (self.clock)().saturating_sub(record.at);
            return Ok(Some(answer(seconds, record.status.as_deref())));
        }
        match self.store.data_get(account, STORE, KEY).await {
            Ok(Some(bytes)) => match Record::decode(&bytes) {
                Some(record) => {
                    let seconds = (self.clock)().saturating_sub(record.at);
                    Ok(Some(answer(seconds, record.status.as_deref())))
                }
                None => {
                    tracing::error!(%account, "stored last activity does not parse");
                    Err(StanzaErrorCondition::InternalServerError.into())
                }
            },
            Ok(None) => Err(StanzaErrorCondition::ServiceUnavailable.into()),
            Err(err) => {
                tracing::error!(%account, error = %err, "reading last activity failed");
                Err(StanzaErrorCondition::InternalServerError.into())
            }
        }
    }

    /// §4: refuse a last activity query to a resource from someone who may not see it.
    async fn guard(&self, routed: &Routed<'_>) -> Verdict {
        let stanza = routed.stanza();
        if stanza.attr("type") != Some("get")
            || !stanza
                .children()
                .next()
                .is_some_and(|payload| payload.is("query", NS_LAST))
        {
            return Verdict::Continue;
        }
        let Ok(target) = routed.to.try_as_full() else {
            return Verdict::Continue;
        };
        match self
            .may_see(&target.to_bare(), &routed.from.to_bare())
            .await
        {
            Ok(true) => Verdict::Continue,
            Ok(false) => Verdict::Reject(StanzaErrorCondition::Forbidden.into()),
            Err(rejection) => Verdict::Reject(rejection),
        }
    }

    /// Keep the status of an unavailable presence broadcast (no `to`) by its sender.
    fn note_unavailable(&self, routed: &Routed<'_>) {
        let stanza = routed.stanza();
        if stanza.attr("type") == Some("unavailable") && stanza.attr("to").is_none() {
            let status = stanza.get_child("status", NS_CLIENT).map(Element::text);
            self.statuses
                .insert(routed.from.as_str().to_owned(), status);
        }
    }

    /// Note `account`'s logout, and write what is noted unless another session's task is
    /// writing already: one transaction at a time for every logout noted so far, never one per
    /// logout racing for the database's single writer (each on a blocking thread of its own,
    /// which halved the login rate of `cargo xtask bench`). The logout is answered from memory until it is written; a crash
    /// in between loses it, which last activity, a courtesy, can afford.
    async fn record(&self, account: &BareJid, status: Option<String>) {
        let record = Record {
            at: (self.clock)(),
            status,
        };
        self.pending_lock().insert(account.clone(), record);
        while !self.writing.swap(true, Ordering::AcqRel) {
            loop {
                // Copied out, and forgotten only once written (unless a newer logout replaced
                // one meanwhile), so a query in between still finds them.
                let batch: Vec<(BareJid, Record)> = self
                    .pending_lock()
                    .iter()
                    .map(|(account, record)| (account.clone(), record.clone()))
                    .collect();
                if batch.is_empty() {
                    break;
                }
                self.write(&batch).await;
                let mut pending = self.pending_lock();
                for (account, record) in &batch {
                    if pending.get(account) == Some(record) {
                        pending.remove(account);
                    }
                }
            }
            self.writing.store(false, Ordering::Release);
            // A logout noted after the last look but while `writing` was still set would wait
            // for the next one; look again.
            if self.pending_lock().is_empty() {
                break;
            }
        }
    }

    fn pending_lock(&self) -> std::sync::MutexGuard<'_, HashMap<BareJid, Record>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every logout of `batch` in one transaction (accounts deleted meanwhile are skipped).
    async fn write(&self, batch: &[(BareJid, Record)]) {
        let entries: Vec<(BareJid, Vec<u8>)> = batch
            .iter()
            .map(|(account, record)| (account.clone(), record.encode()))
            .collect();
        if let Err(err) = self.store.data_put_many(STORE, KEY, &entries).await {
            tracing::error!(error = %err, accounts = entries.len(), "recording last activity failed");
        }
    }
}

impl<S: AccountDataStore + RosterStore> Module for LastActivity<S> {
    fn name(&self) -> &'static str {
        "last"
    }

    fn register(self: Arc<Self>, registrar: &mut Registrar<'_>) {
        registrar.iq_get_set(AddressForm::Bare, NS_LAST, self.clone());
        registrar.disco_feature(DiscoTarget::Account, NS_LAST);
        registrar.hook(
            RoutingPoint::Outbound,
            &[StanzaKind::Presence],
            Priority::FALLBACK,
            self.clone(),
        );
        registrar.hook(
            RoutingPoint::ToFull,
            &[StanzaKind::Iq],
            Priority::POLICY,
            self.clone(),
        );
        registrar.session_events(self);
    }
}

impl<S: AccountDataStore + RosterStore> IqHandler for LastActivity<S> {
    fn handle<'a>(&'a self, request: IqRequest<'a>) -> BoxFuture<'a, IqAnswer> {
        Box::pin(self.answer(request))
    }
}

impl<S: AccountDataStore + RosterStore> StanzaHook for LastActivity<S> {
    fn on_stanza<'a>(&'a self, routed: &'a mut Routed<'_>) -> Hooked<'a> {
        match (routed.point, routed.kind) {
            (RoutingPoint::ToFull, StanzaKind::Iq) => {
                Hooked::Later(Box::pin(async move { self.guard(routed).await }))
            }
            (RoutingPoint::Outbound, StanzaKind::Presence) => {
                self.note_unavailable(routed);
                Hooked::Now(Verdict::Continue)
            }
            _ => Hooked::Now(Verdict::Continue),
        }
    }
}

impl<S: AccountDataStore + RosterStore> SessionObserver for LastActivity<S> {
    fn on_session<'a>(
        &'a self,
        event: SessionEvent,
        session: &'a SessionHandle,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let full = session.full_jid().as_str();
            match event {
                SessionEvent::Available => {
                    self.statuses.remove(full);
                }
                SessionEvent::Ended => {
                    let status = self.statuses.remove(full).and_then(|(_, status)| status);
                    let account = session.bare_jid();
                    if self.registry.connected_resources(&account).is_empty() {
                        self.record(&account, status).await;
                    }
                }
                SessionEvent::Bound | SessionEvent::Unavailable | SessionEvent::Resumed => {}
            }
        })
    }
}

#[cfg(test)]
mod tests;
