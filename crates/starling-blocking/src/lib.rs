//! XEP-0191 blocking command (v1.3), a module on the extension interface.
//!
//! An account keeps a list of blocked JIDs (stored in the `blocklist` module store, one key
//! per JID). The module answers the `urn:xmpp:blocking` requests to the user's own account,
//! pushes every change to the resources that asked for the list, and enforces it at the
//! routing points, in the policy band so blocked traffic is never archived, copied or
//! delivered:
//! - **outbound** (`Outbound`): a stanza from the user to a blocked JID is not routed; the user
//!   gets `<not-acceptable/>` with `<blocked xmlns='urn:xmpp:blocking:errors'/>` (§3.3). Two
//!   exceptions, as Prosody makes them: `unsubscribe`/`unsubscribed` presence still goes, so a
//!   user can end a subscription with someone they blocked, and iq results and errors are
//!   dropped without an answer.
//! - **inbound** (`ToBare`, `ToFull`): a stanza from a blocked JID is handled as §3.3 says:
//!   presence (including subscription requests and probes' answers) dropped silently, messages
//!   and iq get/set answered `<service-unavailable/>`, iq results and errors dropped. Because
//!   `ToBare` runs before offline storage, a blocked sender's message is never stored.
//! - **presence broadcasts** (`ToFull`): the user's presence is not delivered to a JID the user
//!   blocks, whether it is a broadcast, a probe answer or a subscription's presence.
//!
//! On block, each blocked contact that may see the user's presence (subscription `from`) gets
//! unavailable presence from the user's available resources; on unblock, their current
//! presence (§3.3, §3.4).
//!
//! Lists of accounts with connected resources are cached in memory (loaded when a resource
//! binds, dropped when the account's last resource ends); others are read from storage.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod list;

pub use list::BlockList;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use jid::{BareJid, Jid};
use minidom::Element;
use starling_modules::{
    AddressForm, BoxFuture, DiscoTarget, Hooked, IqAnswer, IqHandler, IqRequest, IqTarget, Module,
    Priority, Registrar, Rejection, Routed, RoutingPoint, SessionEvent, SessionObserver,
    StanzaHook, Verdict,
};
use starling_registry::{Registry, SessionHandle};
use starling_stanza::{IqType, NS_CLIENT, OutboundStanza, StanzaErrorCondition, StanzaKind};
use starling_storage::{AccountDataStore, DataChange, DataQuota, RosterStore};

/// The blocking command namespace.
pub const NS_BLOCKING: &str = "urn:xmpp:blocking";
/// The application-specific error condition namespace (§3.3).
pub const NS_BLOCKING_ERRORS: &str = "urn:xmpp:blocking:errors";
/// The module store the lists live in: key = blocked JID, value empty.
pub const STORE: &str = "blocklist";
/// Default for the most JIDs one account may block.
pub const DEFAULT_MAX_ITEMS: usize = 1000;
/// The longest JID (RFC 7622 §3: three parts of at most 1023 bytes, two separators).
const MAX_JID_BYTES: usize = 3071;

/// The module. `S` is the server's store.
pub struct Blocking<S> {
    store: S,
    registry: Arc<Registry>,
    max_items: usize,
    /// Lists of accounts with connected resources, by bare JID.
    lists: DashMap<String, Arc<BlockList>>,
    /// Sessions that asked for the list, so they receive pushes (§3.3).
    interested: DashMap<uuid::Uuid, ()>,
    next_push: AtomicU64,
}

impl<S: AccountDataStore + RosterStore> Blocking<S> {
    /// The module over `store`, delivering through `registry`; an account may block at most
    /// `max_items` JIDs.
    pub fn new(store: S, registry: Arc<Registry>, max_items: usize) -> Self {
        Self {
            store,
            registry,
            max_items,
            lists: DashMap::new(),
            interested: DashMap::new(),
            next_push: AtomicU64::new(1),
        }
    }

    /// The list of the local account `bare` (a bare JID string), or `None` when `bare` is not
    /// one of ours.
    async fn list_of(&self, bare: &str) -> Option<Arc<BlockList>> {
        if let Some(list) = self.lists.get(bare) {
            return Some(Arc::clone(&list));
        }
        let account = BareJid::new(bare).ok()?;
        if account.node().is_none() || !self.registry.serves(account.domain().as_str()) {
            return None;
        }
        Some(Arc::new(self.load(&account).await))
    }

    async fn load(&self, account: &BareJid) -> BlockList {
        match self.store.data_list(account, STORE).await {
            Ok(entries) => BlockList::new(entries.into_iter().map(|(key, _)| key)),
            Err(err) => {
                // Failing open: a broken store must not cut the account off from everyone.
                tracing::error!(%account, error = %err, "reading a block list failed");
                BlockList::default()
            }
        }
    }

    /// The verdict from the cached lists alone, without waiting: `None` when a list it needs
    /// is not cached (an account without a connected resource). Every stanza between online
    /// accounts is decided here, with a hash lookup or two and no allocation.
    fn check_cached(&self, routed: &Routed<'_>) -> Option<Verdict> {
        self.decide(routed, |bare, jid| {
            self.lists.get(bare).map(|list| list.blocks(jid))
        })
    }

    /// The verdict once the lists the cache lacks are read from storage.
    async fn check(&self, routed: &Routed<'_>) -> Verdict {
        let needed = match routed.point {
            RoutingPoint::Outbound => [Some(routed.from), None],
            RoutingPoint::ToBare => [Some(routed.to), None],
            RoutingPoint::ToFull => [Some(routed.to), Some(routed.from)],
            RoutingPoint::DeliveryFailed => [None, None],
        };
        let mut loaded = Vec::new();
        for jid in needed.into_iter().flatten() {
            let bare = bare_str(jid);
            if !self.lists.contains_key(bare) {
                loaded.push((bare, self.list_of(bare).await));
            }
        }
        self.decide(routed, |bare, jid| {
            let list = match self.lists.get(bare) {
                Some(list) => return Some(list.blocks(jid)),
                None => loaded.iter().find(|(name, _)| *name == bare),
            };
            // Not one of our accounts (or not loaded): nothing it blocks.
            Some(
                list.and_then(|(_, list)| list.as_ref())
                    .is_some_and(|list| list.blocks(jid)),
            )
        })
        .unwrap_or(Verdict::Continue)
    }

    /// §3.3 at `routed`'s point, asking `blocks(account, jid)` whether the local account (a bare
    /// JID string) blocks `jid`; `None` as soon as `blocks` cannot say.
    fn decide(
        &self,
        routed: &Routed<'_>,
        blocks: impl Fn(&str, &Jid) -> Option<bool>,
    ) -> Option<Verdict> {
        match routed.point {
            RoutingPoint::Outbound => {
                let owner = bare_str(routed.from);
                if bare_str(routed.to) == owner {
                    return Some(Verdict::Continue);
                }
                Some(match blocks(owner, routed.to)? {
                    true => outbound_verdict(routed),
                    false => Verdict::Continue,
                })
            }
            RoutingPoint::ToBare | RoutingPoint::ToFull => {
                if blocks(bare_str(routed.to), routed.from)? {
                    return Some(inbound_verdict(routed));
                }
                if routed.point == RoutingPoint::ToBare || is_unsubscription(routed) {
                    return Some(Verdict::Continue);
                }
                let sender_is_local = routed.from.node().is_some()
                    && self.registry.serves(routed.from.domain().as_str());
                if !sender_is_local {
                    return Some(Verdict::Continue);
                }
                // The user's own presence (or anything else) to someone they block.
                Some(match blocks(bare_str(routed.from), routed.to)? {
                    true => Verdict::Handled,
                    false => Verdict::Continue,
                })
            }
            RoutingPoint::DeliveryFailed => Some(Verdict::Continue),
        }
    }

    async fn answer(&self, request: IqRequest<'_>) -> IqAnswer {
        let IqTarget::Account {
            jid: account,
            is_own: true,
        } = request.to
        else {
            // Nobody reads or changes another account's list.
            return Err(StanzaErrorCondition::ServiceUnavailable.into());
        };
        let payload = request.payload;
        match (request.iq_type, payload.name()) {
            (IqType::Get, "blocklist") => {
                if let Some(session) = self.registry.resource(request.from) {
                    self.interested.insert(session.id(), ());
                }
                let list = self.list_of(account.as_str()).await.unwrap_or_default();
                Ok(Some(list_element("blocklist", list.items())))
            }
            (IqType::Set, "block") => {
                let items = parse_items(payload)?;
                if items.is_empty() {
                    // §3.3: a block with no items is a bad request.
                    return Err(StanzaErrorCondition::BadRequest.into());
                }
                self.change(account, &items, true).await
            }
            (IqType::Set, "unblock") => {
                let items = parse_items(payload)?;
                self.change(account, &items, false).await
            }
            _ => Err(StanzaErrorCondition::BadRequest.into()),
        }
    }

    /// Block (or unblock) `items` for `account`; unblock with no items unblocks everything
    /// (§3.5).
    async fn change(&self, account: &BareJid, items: &[Jid], block: bool) -> IqAnswer {
        let before = match self.lists.get(account.as_str()) {
            Some(list) => BlockList::clone(&list),
            None => self.load(account).await,
        };
        let changes: Vec<DataChange> = if !block && items.is_empty() {
            vec![DataChange::Clear]
        } else {
            items
                .iter()
                .map(|jid| {
                    let key = jid.as_str().to_owned();
                    if block {
                        DataChange::Put {
                            key,
                            value: Vec::new(),
                        }
                    } else {
                        DataChange::Remove { key }
                    }
                })
                .collect()
        };
        let quota = DataQuota {
            max_keys: self.max_items,
            max_bytes: self.max_items.saturating_mul(MAX_JID_BYTES),
        };
        match self.store.data_apply(account, STORE, &changes, quota).await {
            Ok(true) => {}
            // The list would pass the operator's limit: a local policy (RFC 6120 §8.3.3.12).
            Ok(false) => return Err(StanzaErrorCondition::PolicyViolation.into()),
            Err(err) => {
                tracing::error!(%account, error = %err, "changing a block list failed");
                return Err(StanzaErrorCondition::InternalServerError.into());
            }
        }
        let mut after = before.clone();
        let changed: Vec<Jid> = if !block && items.is_empty() {
            before
                .items()
                .filter_map(|item| Jid::new(item).ok())
                .collect()
        } else {
            items
                .iter()
                .filter(|jid| {
                    if block {
                        after.insert(jid.as_str().to_owned())
                    } else {
                        after.remove(jid.as_str())
                    }
                })
                .cloned()
                .collect()
        };
        if !block && items.is_empty() {
            after = BlockList::default();
        }
        if self.lists.contains_key(account.as_str()) {
            self.lists
                .insert(account.as_str().to_owned(), Arc::new(after));
        }
        self.push(account, block, items);
        self.presence_on_change(account, &changed, block).await;
        Ok(None)
    }

    /// §3.3, §3.4: tell the resources that asked for the list what changed.
    fn push(&self, account: &BareJid, block: bool, items: &[Jid]) {
        let name = if block { "block" } else { "unblock" };
        let change = list_element(name, items.iter().map(|jid| jid.as_str()));
        for session in self.registry.connected_resources(account) {
            if !self.interested.contains_key(&session.id()) {
                continue;
            }
            let mut iq = Element::builder("iq", NS_CLIENT)
                .append(change.clone())
                .build();
            set(&mut iq, "type", "set");
            set(
                &mut iq,
                "id",
                &format!("block-{}", self.next_push.fetch_add(1, Ordering::Relaxed)),
            );
            set(&mut iq, "to", session.full_jid().as_str());
            send(&session, &iq);
        }
    }

    /// §3.3: a newly blocked contact that could see the user's presence gets unavailable
    /// presence; §3.4: a newly unblocked one gets the current presence again.
    async fn presence_on_change(&self, account: &BareJid, changed: &[Jid], blocked: bool) {
        let own = self.registry.available_resources(account);
        if own.is_empty() {
            return;
        }
        for contact in changed {
            let contact_bare = contact.to_bare();
            let subscribed = matches!(
                self.store.roster_item(account, &contact_bare).await,
                Ok(Some(item)) if item.subscription.has_from()
            );
            if !subscribed {
                continue;
            }
            let targets: Vec<SessionHandle> = self
                .registry
                .available_resources(&contact_bare)
                .into_iter()
                .filter(|target| match contact.resource() {
                    Some(_) => target.full_jid().as_str() == contact.as_str(),
                    None => true,
                })
                .collect();
            for resource in &own {
                let presence = if blocked {
                    let mut presence = Element::builder("presence", NS_CLIENT).build();
                    set(&mut presence, "type", "unavailable");
                    set(&mut presence, "from", resource.full_jid().as_str());
                    Some(presence)
                } else {
                    resource.snapshot().presence
                };
                let Some(mut presence) = presence else {
                    continue;
                };
                set(&mut presence, "to", contact_bare.as_str());
                for target in &targets {
                    send(target, &presence);
                }
            }
        }
    }
}

impl<S: AccountDataStore + RosterStore> Module for Blocking<S> {
    fn name(&self) -> &'static str {
        "blocking"
    }

    fn register(self: Arc<Self>, registrar: &mut Registrar<'_>) {
        registrar.iq_get_set(AddressForm::Bare, NS_BLOCKING, self.clone());
        registrar.disco_feature(DiscoTarget::Server, NS_BLOCKING);
        let kinds = [StanzaKind::Message, StanzaKind::Presence, StanzaKind::Iq];
        for point in [
            RoutingPoint::Outbound,
            RoutingPoint::ToBare,
            RoutingPoint::ToFull,
        ] {
            registrar.hook(point, &kinds, Priority::POLICY, self.clone());
        }
        registrar.session_events(self);
    }
}

impl<S: AccountDataStore + RosterStore> IqHandler for Blocking<S> {
    fn handle<'a>(&'a self, request: IqRequest<'a>) -> BoxFuture<'a, IqAnswer> {
        Box::pin(self.answer(request))
    }
}

impl<S: AccountDataStore + RosterStore> StanzaHook for Blocking<S> {
    fn on_stanza<'a>(&'a self, routed: &'a mut Routed<'_>) -> Hooked<'a> {
        match self.check_cached(routed) {
            Some(verdict) => Hooked::Now(verdict),
            None => Hooked::Later(Box::pin(async move { self.check(routed).await })),
        }
    }
}

impl<S: AccountDataStore + RosterStore> SessionObserver for Blocking<S> {
    fn on_session<'a>(
        &'a self,
        event: SessionEvent,
        session: &'a SessionHandle,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let account = session.bare_jid();
            match event {
                SessionEvent::Bound => {
                    if !self.lists.contains_key(account.as_str()) {
                        let list = self.load(&account).await;
                        self.lists
                            .insert(account.as_str().to_owned(), Arc::new(list));
                    }
                }
                SessionEvent::Ended => {
                    self.interested.remove(&session.id());
                    if self.registry.connected_resources(&account).is_empty() {
                        self.lists.remove(account.as_str());
                    }
                }
                SessionEvent::Available | SessionEvent::Unavailable | SessionEvent::Resumed => {}
            }
        })
    }
}

/// The bare part of a JID's string form, without allocating.
fn bare_str(jid: &Jid) -> &str {
    let full = jid.as_str();
    full.split_once('/').map_or(full, |(bare, _)| bare)
}

/// What happens to a stanza from the user to a JID the user blocks.
fn outbound_verdict(routed: &Routed<'_>) -> Verdict {
    let stanza = routed.stanza();
    let kind_type = stanza.attr("type");
    match routed.kind {
        StanzaKind::Presence if is_unsubscription(routed) => Verdict::Continue,
        StanzaKind::Iq if matches!(kind_type, Some("result" | "error")) => Verdict::Handled,
        _ if kind_type == Some("error") => Verdict::Handled,
        _ => Verdict::Reject(Rejection {
            condition: StanzaErrorCondition::NotAcceptable,
            application: Some(Element::builder("blocked", NS_BLOCKING_ERRORS).build()),
        }),
    }
}

/// What happens to a stanza from a blocked JID to the user (§3.3).
fn inbound_verdict(routed: &Routed<'_>) -> Verdict {
    let kind_type = routed.stanza().attr("type");
    match routed.kind {
        StanzaKind::Presence => Verdict::Handled,
        StanzaKind::Message if kind_type == Some("error") => Verdict::Handled,
        StanzaKind::Iq if !matches!(kind_type, Some("get" | "set")) => Verdict::Handled,
        StanzaKind::Message | StanzaKind::Iq => {
            Verdict::Reject(StanzaErrorCondition::ServiceUnavailable.into())
        }
    }
}

fn is_unsubscription(routed: &Routed<'_>) -> bool {
    routed.kind == StanzaKind::Presence
        && matches!(
            routed.stanza().attr("type"),
            Some("unsubscribe" | "unsubscribed")
        )
}

/// The JIDs of a block or unblock request's items; `jid-malformed` for one that is not a JID.
fn parse_items(payload: &Element) -> Result<Vec<Jid>, Rejection> {
    payload
        .children()
        .filter(|child| child.is("item", NS_BLOCKING))
        .map(|item| {
            item.attr("jid")
                .and_then(|jid| starling_stanza::parse_jid(jid).ok())
                .ok_or_else(|| Rejection::from(StanzaErrorCondition::JidMalformed))
        })
        .collect()
}

fn list_element<'a>(name: &str, items: impl Iterator<Item = &'a str>) -> Element {
    let mut list = Element::builder(name, NS_BLOCKING).build();
    for jid in items {
        let mut item = Element::builder("item", NS_BLOCKING).build();
        set(&mut item, "jid", jid);
        list.append_child(item);
    }
    list
}

fn send(session: &SessionHandle, stanza: &Element) {
    if let Err(err) = session.send(OutboundStanza::new(stanza)) {
        tracing::debug!(jid = %session.full_jid(), error = %err, "blocking: not delivered");
    }
}

fn set(element: &mut Element, name: &'static str, value: &str) {
    if let Ok(name) = minidom::rxml::NcName::try_from(name) {
        starling_stanza::set_attr(element, &name, Some(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(point: RoutingPoint, kind: StanzaKind, xml: &str) -> Verdict {
        let from = Jid::new("alice@localhost/desk").unwrap();
        let to = Jid::new("bob@localhost").unwrap();
        let stanza: Element = xml.parse().unwrap();
        let routed = Routed::new(point, kind, &from, &to, &stanza);
        match point {
            RoutingPoint::Outbound => outbound_verdict(&routed),
            _ => inbound_verdict(&routed),
        }
    }

    fn blocked() -> Verdict {
        Verdict::Reject(Rejection {
            condition: StanzaErrorCondition::NotAcceptable,
            application: Some(Element::builder("blocked", NS_BLOCKING_ERRORS).build()),
        })
    }

    #[test]
    fn outbound_to_a_blocked_jid_is_not_acceptable_but_unsubscriptions_pass() {
        let out = RoutingPoint::Outbound;
        let message = "<message xmlns='jabber:client' type='chat'/>";
        assert_eq!(verdict(out, StanzaKind::Message, message), blocked());
        let presence = "<presence xmlns='jabber:client'/>";
        assert_eq!(verdict(out, StanzaKind::Presence, presence), blocked());
        let iq = "<iq xmlns='jabber:client' type='get' id='1'/>";
        assert_eq!(verdict(out, StanzaKind::Iq, iq), blocked());
        for kind in ["unsubscribe", "unsubscribed"] {
            let presence = format!("<presence xmlns='jabber:client' type='{kind}'/>");
            assert_eq!(
                verdict(out, StanzaKind::Presence, &presence),
                Verdict::Continue
            );
        }
        let result = "<iq xmlns='jabber:client' type='result' id='1'/>";
        assert_eq!(verdict(out, StanzaKind::Iq, result), Verdict::Handled);
        let error = "<message xmlns='jabber:client' type='error'/>";
        assert_eq!(verdict(out, StanzaKind::Message, error), Verdict::Handled);
    }

    #[test]
    fn inbound_from_a_blocked_jid_follows_section_3_3() {
        let unavailable = Verdict::Reject(StanzaErrorCondition::ServiceUnavailable.into());
        for point in [RoutingPoint::ToBare, RoutingPoint::ToFull] {
            let message = "<message xmlns='jabber:client' type='chat'/>";
            assert_eq!(verdict(point, StanzaKind::Message, message), unavailable);
            for presence in [
                "<presence xmlns='jabber:client'/>",
                "<presence xmlns='jabber:client' type='subscribe'/>",
                "<presence xmlns='jabber:client' type='probe'/>",
            ] {
                assert_eq!(
                    verdict(point, StanzaKind::Presence, presence),
                    Verdict::Handled
                );
            }
            for iq_type in ["get", "set"] {
                let iq = format!("<iq xmlns='jabber:client' type='{iq_type}' id='1'/>");
                assert_eq!(verdict(point, StanzaKind::Iq, &iq), unavailable);
            }
            for iq_type in ["result", "error"] {
                let iq = format!("<iq xmlns='jabber:client' type='{iq_type}' id='1'/>");
                assert_eq!(verdict(point, StanzaKind::Iq, &iq), Verdict::Handled);
            }
            let error = "<message xmlns='jabber:client' type='error'/>";
            assert_eq!(verdict(point, StanzaKind::Message, error), Verdict::Handled);
        }
    }

    #[test]
    fn items_must_be_jids() {
        let block: Element = "<block xmlns='urn:xmpp:blocking'><item jid='Bob@Localhost'/>\
            <item jid='example.org'/></block>"
            .parse()
            .unwrap();
        let items: Vec<String> = parse_items(&block)
            .unwrap()
            .iter()
            .map(|jid| jid.to_string())
            .collect();
        assert_eq!(items, vec!["bob@localhost", "example.org"]);
        for bad in ["<item jid='@@'/>", "<item/>"] {
            let block: Element = format!("<block xmlns='urn:xmpp:blocking'>{bad}</block>")
                .parse()
                .unwrap();
            assert_eq!(
                parse_items(&block).err(),
                Some(StanzaErrorCondition::JidMalformed.into())
            );
        }
    }

    #[test]
    fn the_bare_part_of_a_jid_needs_no_allocation() {
        assert_eq!(bare_str(&Jid::new("a@b/c/d").unwrap()), "a@b");
        assert_eq!(bare_str(&Jid::new("b/c").unwrap()), "b");
        assert_eq!(bare_str(&Jid::new("a@b").unwrap()), "a@b");
    }
}
