//! Presence (RFC 6121 §4) and subscriptions (§3): broadcast to contacts, probes, directed
//! presence, the subscription handshake between two local accounts, and what a resource is
//! owed when it becomes available (pending requests, offline messages).

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use jid::BareJid;
use minidom::Element;
use rxml::xml_ncname;
use starling_registry::SessionHandle;
use starling_roster::{RequestChange, Step, SubscriptionStanza, inbound, outbound};
use std::borrow::Cow;

use jid::Jid;
use starling_modules::RoutingPoint;
use starling_stanza::{NS_CLIENT, Stanza, StanzaErrorCondition, StanzaKind, set_attr};
use starling_storage::{RosterChange, RosterItem, StorageError};

use crate::modules::{Decision, Delivered, Fanout};
use crate::router::{Destination, Router, Store, priority_of, serialize};

/// Offline messages read from storage at a time when a resource becomes reachable.
pub const OFFLINE_PAGE_MESSAGES: usize = 32;

/// Queue slots offline delivery leaves free for what else the session is owed meanwhile
/// (presence, the answer to its next request). Messages that do not fit stay stored.
pub const OFFLINE_QUEUE_HEADROOM: usize = 4;

impl<S: Store> Router<S> {
    pub(crate) async fn route_presence(
        &self,
        sender: &SessionHandle,
        stanza: Stanza,
        destination: Destination,
    ) {
        let presence_type = stanza.type_attr().map(str::to_owned);
        if let Some(kind) = presence_type.as_deref().and_then(SubscriptionStanza::parse) {
            let contact = match destination {
                // §3.1.1: subscription stanzas are addressed to bare JIDs; a full JID is taken
                // as its bare JID.
                Destination::Bare(bare) => bare,
                Destination::Full(full) => full.to_bare(),
                Destination::Remote
                | Destination::Server
                | Destination::ServerResource
                | Destination::None => {
                    return;
                }
            };
            self.subscription(sender, &contact, kind, &stanza).await;
            return;
        }
        match (destination, presence_type.as_deref()) {
            (Destination::None, None) => self.available(sender, stanza.element()).await,
            (Destination::None, Some("unavailable")) => {
                self.unavailable(sender, stanza.element()).await
            }
            (Destination::Bare(bare), None | Some("unavailable")) => {
                if let Decision::Stop(verdict) = self
                    .at_point(
                        RoutingPoint::ToBare,
                        StanzaKind::Presence,
                        sender.full_jid(),
                        &bare,
                        stanza.element(),
                    )
                    .await
                {
                    self.stopped(sender, &stanza, &verdict);
                    return;
                }
                // §4.6: directed presence to whoever of the account is online, remembered so
                // unavailable presence follows it. An address nobody heard it at is not
                // remembered: there is nobody to tell later.
                let targets = self.registry.available_resources(&bare);
                if !self
                    .directed(sender, &stanza, bare.as_str(), !targets.is_empty())
                    .await
                {
                    return;
                }
                let fanout = Fanout::new(
                    StanzaKind::Presence,
                    sender.full_jid(),
                    Cow::Borrowed(stanza.element()),
                );
                for target in targets {
                    self.deliver_to(&target, &fanout).await;
                }
            }
            (Destination::Full(full), None | Some("unavailable")) => {
                let target = self.registry.resource(&full);
                if self
                    .directed(sender, &stanza, full.as_str(), target.is_some())
                    .await
                    && let Some(target) = target
                {
                    let fanout = Fanout::new(
                        StanzaKind::Presence,
                        sender.full_jid(),
                        Cow::Borrowed(stanza.element()),
                    );
                    self.deliver_to(&target, &fanout).await;
                }
            }
            // Probes from clients, errors and presence to hosts or other servers are dropped
            // (RFC 6121 §4.3: probes are the server's business; §8.5.1).
            _ => {}
        }
    }

    /// Available presence without `to` (RFC 6121 §4.2 initial, §4.4 update).
    async fn available(&self, sender: &SessionHandle, presence: &Element) {
        let priority = priority_of(presence);
        let old_priority = sender.priority();
        let was_available = sender.set_presence(Some(presence.clone()), priority);
        // XEP-0160 §3: stored messages wait for a resource with non-negative priority; one
        // that comes online at a negative priority gets them when it raises its priority.
        let now_reachable = priority >= 0 && (!was_available || old_priority < 0);
        let user = sender.bare_jid();
        // Initial presence also needs the pending requests and whether offline messages wait:
        // the store reads all three together.
        let (roster, initial) = if was_available {
            (self.roster_of(&user).await, None)
        } else {
            match self.store.initial_presence(&user).await {
                Ok(state) => (state.roster, Some((state.requests, state.offline_waiting))),
                Err(err) => {
                    tracing::error!(%user, error = %err, "reading the roster and pending subscription requests failed");
                    (Vec::new(), Some((Vec::new(), true)))
                }
            }
        };
        // To the account's own available resources, the sender included (§4.2.2), and to every
        // contact subscribed to the user (§4.2.2, §4.4.2): serialized once per addressee.
        let from: &Jid = sender.full_jid();
        self.broadcast(from, presence, &user, None).await;
        for item in roster.iter().filter(|item| item.subscription.has_from()) {
            self.broadcast(from, presence, &item.jid, None).await;
        }
        if !was_available {
            self.session_event(starling_modules::SessionEvent::Available, sender)
                .await;
        }
        let Some((requests, offline_waiting)) = initial else {
            if now_reachable {
                self.flush_offline(sender).await;
            }
            return;
        };
        // Initial presence: the account's other available resources are probed like contacts,
        // so the new resource learns of them; then the contacts the user is subscribed to
        // (§4.2.3), answered here with their resources' current presence.
        let others = self
            .registry
            .available_resources(&user)
            .into_iter()
            .filter(|other| other != sender);
        let contacts = roster
            .iter()
            .filter(|item| item.subscription.has_to())
            .flat_map(|item| self.registry.available_resources(&item.jid));
        let probed: Vec<SessionHandle> = others.chain(contacts).collect();
        for resource in probed {
            if let Some(their_presence) = resource.snapshot().presence {
                let fanout = Fanout::addressed(
                    StanzaKind::Presence,
                    resource.full_jid(),
                    &their_presence,
                    sender.full_jid().as_str(),
                );
                self.deliver_to(sender, &fanout).await;
            }
        }
        // Requests that arrived while the user was away (§3.1.3).
        for (contact, stanza) in requests {
            if let Ok(element) = stanza.parse::<Element>() {
                let from: Jid = contact.into();
                let fanout = Fanout::new(StanzaKind::Presence, &from, Cow::Owned(element));
                self.deliver_to(sender, &fanout).await;
            }
        }
        // XEP-0160 §3: offline messages go to the first resource with non-negative priority.
        if now_reachable && offline_waiting {
            self.flush_offline(sender).await;
        }
    }

    /// Unavailable presence without `to` (RFC 6121 §4.5).
    async fn unavailable(&self, sender: &SessionHandle, presence: &Element) {
        if !sender.is_available() {
            // Nobody saw this resource come online, so nobody is told it went away.
            return;
        }
        self.broadcast_unavailable(sender, presence).await;
        sender.set_presence(None, 0);
        // Reflected once to the sender, as its other resources see it (§4.5.2).
        self.deliver(sender, presence.clone(), Some(sender.bare_jid().as_str()));
        self.session_event(starling_modules::SessionEvent::Unavailable, sender)
            .await;
    }

    /// Send unavailable presence from `sender` to its other available resources, its
    /// subscribed contacts and everyone it sent directed presence to (§4.5.2, §4.6.3).
    pub(crate) async fn broadcast_unavailable(&self, sender: &SessionHandle, presence: &Element) {
        let user = sender.bare_jid();
        let from: &Jid = sender.full_jid();
        self.broadcast(from, presence, &user, Some(sender)).await;
        let roster = self.roster_of(&user).await;
        let mut told = std::collections::HashSet::new();
        for item in roster.iter().filter(|item| item.subscription.has_from()) {
            self.broadcast(from, presence, &item.jid, None).await;
            told.insert(item.jid.as_str());
        }
        for jid in sender.take_directed() {
            if told.contains(&*jid) {
                continue;
            }
            match jid::Jid::new(&jid).map(jid::Jid::try_into_full) {
                Ok(Ok(full)) => {
                    if let Some(target) = self.registry.resource(&full) {
                        let fanout =
                            Fanout::addressed(StanzaKind::Presence, from, presence, full.as_str());
                        self.deliver_to(&target, &fanout).await;
                    }
                }
                Ok(Err(bare)) => self.broadcast(from, presence, &bare, None).await,
                Err(_) => {}
            }
        }
    }

    /// `presence` from `from` to every available resource of `to` but `except`, addressed to
    /// the bare JID and serialized once for all of them (nothing when nobody is online).
    async fn broadcast(
        &self,
        from: &Jid,
        presence: &Element,
        to: &BareJid,
        except: Option<&SessionHandle>,
    ) {
        let targets: Vec<SessionHandle> = self
            .registry
            .available_resources(to)
            .into_iter()
            .filter(|target| Some(target) != except)
            .collect();
        if targets.is_empty() {
            return;
        }
        let fanout = Fanout::addressed(StanzaKind::Presence, from, presence, to.as_str());
        for target in &targets {
            self.deliver_to(target, &fanout).await;
        }
    }

    /// `stanza` from `from` as it is to every available resource of `account`, serialized
    /// once (nothing when nobody is online).
    async fn to_available(&self, from: &BareJid, account: &BareJid, stanza: &Element) {
        let targets = self.registry.available_resources(account);
        if targets.is_empty() {
            return;
        }
        let fanout = Fanout::new(StanzaKind::Presence, from, Cow::Borrowed(stanza));
        for target in &targets {
            self.deliver_to(target, &fanout).await;
        }
    }

    /// Directed presence from `sender` to `to`, which is online when `is_reachable` (RFC 6121
    /// §4.6): unavailable forgets the address; available remembers a reachable one. False when
    /// the presence must not go out: nobody is there, or the sender already has
    /// `max_directed_presences` others, in which case it is told `policy-violation`
    /// (RFC 6120 §8.3.3.12), since every address that saw a resource available must hear when
    /// it goes away.
    async fn directed(
        &self,
        sender: &SessionHandle,
        stanza: &Stanza,
        to: &str,
        is_reachable: bool,
    ) -> bool {
        if stanza.type_attr() == Some("unavailable") {
            sender.remove_directed(to);
            return is_reachable;
        }
        if !is_reachable {
            return false;
        }
        // A subscribed contact hears the broadcast anyway; only others need remembering.
        let bare = jid::Jid::new(to).map(|j| j.to_bare()).ok();
        let subscribed = match bare {
            Some(bare) => self
                .roster_item(&sender.bare_jid(), &bare)
                .await
                .is_some_and(|i| i.subscription.has_from()),
            None => false,
        };
        if subscribed || sender.add_directed(to, self.limits.max_directed_presences) {
            return true;
        }
        self.bounce(sender, stanza, StanzaErrorCondition::PolicyViolation);
        false
    }

    /// Hand stored messages to `sender` (XEP-0160 §3) a page at a time, only as many as its
    /// queue has room for, and remove from storage exactly those the queue took: a message
    /// that does not fit now stays stored for the resource's next chance (its next login, or
    /// raising its priority from negative). The connection task drains the queue only after
    /// this returns, so waiting here for room would wait forever.
    async fn flush_offline(&self, sender: &SessionHandle) {
        let user = sender.bare_jid();
        let Some(_claim) = FlushClaim::take(&self.offline_flushing, &user) else {
            // Another resource of the account is being handed them now.
            return;
        };
        let domain = user.domain().as_str().to_owned();
        loop {
            let room = sender
                .queue_room()
                .saturating_sub(OFFLINE_QUEUE_HEADROOM)
                .min(OFFLINE_PAGE_MESSAGES);
            if room == 0 {
                return;
            }
            let page = match self.store.offline_page(&user, room).await {
                Ok(page) => page,
                Err(err) => {
                    tracing::error!(%user, error = %err, "reading offline messages failed");
                    return;
                }
            };
            let fetched = page.len();
            let mut handed_over = Vec::with_capacity(fetched);
            let mut queue_full = false;
            for stored in page {
                let Ok(mut element) = stored.message.stanza.parse::<Element>() else {
                    tracing::error!(%user, "a stored offline message does not parse; dropped");
                    handed_over.push(stored.id);
                    continue;
                };
                // XEP-0203: when the server first received it.
                element.append_child(starling_stanza::delay(
                    &domain,
                    stored.message.stored_at_unix_ms,
                ));
                // Through the modules as any delivery, from the original sender: a message
                // stored before its sender was blocked is dropped now, not delivered.
                let sent_by = element.attr("from").and_then(|from| Jid::new(from).ok());
                let queued = match &sent_by {
                    Some(from) => {
                        let fanout = Fanout::new(StanzaKind::Message, from, Cow::Owned(element));
                        self.deliver_to(sender, &fanout).await != Delivered::Failed
                    }
                    None => self.deliver(sender, element, None),
                };
                if !queued {
                    queue_full = true;
                    break;
                }
                handed_over.push(stored.id);
            }
            if let Err(err) = self.store.remove_offline(&user, &handed_over).await {
                // Delivered but still stored: the next login delivers them again, which is
                // better than losing them.
                tracing::error!(%user, error = %err, "removing delivered offline messages failed");
                return;
            }
            if queue_full || fetched < room {
                return;
            }
        }
    }

    /// A subscription stanza from `sender` to `contact` (RFC 6121 §3): both sides' state
    /// changes are computed first and committed in one transaction, then pushed and delivered.
    async fn subscription(
        &self,
        sender: &SessionHandle,
        contact: &BareJid,
        kind: SubscriptionStanza,
        stanza: &Stanza,
    ) {
        let user = sender.bare_jid();
        if &user == contact {
            return;
        }
        let user_item = self.roster_item(&user, contact).await;
        let user_request = self.has_request(&user, contact).await;
        let out = outbound(user_item.as_ref(), contact, user_request, kind);
        let mut changes = Vec::new();
        collect(&mut changes, &user, contact, &out, None);
        // §3.1.2: the stanza travels with the user's bare JID as `from`.
        let mut routed = stanza.element().clone();
        set_attr(&mut routed, xml_ncname!("from"), Some(user.as_str()));
        set_attr(&mut routed, xml_ncname!("to"), Some(contact.as_str()));
        let contact_is_local =
            self.registry.serves(contact.domain().as_str()) && self.account_exists(contact).await;
        let mut contact_step = None;
        // The contact's side runs only if no module (blocking) stops the stanza there.
        let reaches_contact = contact_is_local
            && matches!(
                self.at_point(
                    RoutingPoint::ToBare,
                    StanzaKind::Presence,
                    &user,
                    contact,
                    &routed,
                )
                .await,
                Decision::Go(_)
            );
        if out.route && reaches_contact {
            let contact_item = self.roster_item(contact, &user).await;
            let contact_request = self.has_request(contact, &user).await;
            let step = inbound(contact_item.as_ref(), &user, contact_request, kind);
            collect(&mut changes, contact, &user, &step, Some(&routed));
            contact_step = Some(step);
        }
        match self.commit(&changes).await {
            Committed::Yes => {}
            // The change would have created an item past limits.roster.max_items (§3.1.2
            // subscribe, §3.4 pre-approval, §3.1.5 approval): nothing happened, and the user
            // hears why (RFC 6120 §8.3.3.12: a local policy, fixed by removing an item).
            Committed::RosterFull => {
                self.bounce(sender, stanza, StanzaErrorCondition::PolicyViolation);
                return;
            }
            Committed::Failed => return,
        }
        // The stanza reaches the contact first, then the presence it entitles the contact to
        // (§3.1.5: approval, then presence; §3.2.2: revocation, then unavailable).
        if let Some(step) = contact_step {
            self.after_inbound(contact, &user, &step, routed).await;
        }
        if out.send_presence {
            self.send_presence_of(&user, contact, false).await;
        }
        if out.send_unavailable {
            self.send_presence_of(&user, contact, true).await;
        }
    }

    /// Deliver, answer and announce after an inbound step at `owner` from `from`.
    async fn after_inbound(&self, owner: &BareJid, from: &BareJid, step: &Step, stanza: Element) {
        if step.deliver {
            self.to_available(from, owner, &stanza).await;
        }
        // With an automatic `subscribed`, the presence follows that answer (below), once.
        if step.send_presence && !step.auto_subscribed {
            self.send_presence_of(owner, from, false).await;
        }
        if step.send_unavailable {
            self.send_presence_of(owner, from, true).await;
        }
        if step.auto_subscribed {
            // §3.1.3: the server answers `subscribed` for the owner; it arrives at `from`.
            let mut reply = Element::builder("presence", NS_CLIENT).build();
            set_attr(&mut reply, xml_ncname!("type"), Some("subscribed"));
            set_attr(&mut reply, xml_ncname!("from"), Some(owner.as_str()));
            set_attr(&mut reply, xml_ncname!("to"), Some(from.as_str()));
            let from_item = self.roster_item(from, owner).await;
            let from_request = self.has_request(from, owner).await;
            let answer = inbound(
                from_item.as_ref(),
                owner,
                from_request,
                SubscriptionStanza::Subscribed,
            );
            let mut changes = Vec::new();
            collect(&mut changes, from, owner, &answer, Some(&reply));
            if self.commit(&changes).await == Committed::Yes && answer.deliver {
                self.to_available(owner, from, &reply).await;
                // Now subscribed, `from` is owed the owner's presence.
                self.send_presence_of(owner, from, false).await;
            }
        }
    }

    /// Send `owner`'s current presence (or unavailable) to `to`'s available resources.
    async fn send_presence_of(&self, owner: &BareJid, to: &BareJid, unavailable: bool) {
        let recipients = self.registry.available_resources(to);
        if recipients.is_empty() {
            return;
        }
        for resource in self.registry.available_resources(owner) {
            let presence = if unavailable {
                let mut presence = Element::builder("presence", NS_CLIENT).build();
                set_attr(&mut presence, xml_ncname!("type"), Some("unavailable"));
                set_attr(
                    &mut presence,
                    xml_ncname!("from"),
                    Some(resource.full_jid().as_str()),
                );
                Some(presence)
            } else {
                resource.snapshot().presence
            };
            if let Some(presence) = presence {
                let fanout = Fanout::addressed(
                    StanzaKind::Presence,
                    resource.full_jid(),
                    &presence,
                    to.as_str(),
                );
                for target in &recipients {
                    self.deliver_to(target, &fanout).await;
                }
            }
        }
    }

    /// Apply roster changes atomically, never growing a roster past `limits.roster.max_items`,
    /// and push every changed item to its owner's interested resources (RFC 6121 §2.1.6).
    pub(crate) async fn commit(&self, changes: &[RosterChange]) -> Committed {
        if changes.is_empty() {
            return Committed::Yes;
        }
        let versions = match self
            .store
            .apply(changes, self.limits.roster.max_items)
            .await
        {
            Ok(versions) => versions,
            Err(StorageError::RosterFull { owner, limit }) => {
                tracing::debug!(%owner, limit, "roster full; the change was refused");
                return Committed::RosterFull;
            }
            Err(err) => {
                tracing::error!(error = %err, "roster change failed; nothing was applied");
                return Committed::Failed;
            }
        };
        for (change, version) in changes.iter().zip(versions) {
            let (owner, item) = match change {
                RosterChange::Put { owner, item } => (owner, starling_roster::item_element(item)),
                RosterChange::Remove { owner, contact } => {
                    (owner, starling_roster::removed_item_element(contact))
                }
                RosterChange::AddRequest { .. } | RosterChange::RemoveRequest { .. } => continue,
            };
            for target in self.registry.interested_resources(owner) {
                let push = starling_roster::push(
                    item.clone(),
                    version,
                    target.full_jid(),
                    &self.fresh_id("push"),
                );
                self.deliver(&target, push, None);
            }
        }
        Committed::Yes
    }

    pub(crate) async fn roster_of(&self, owner: &BareJid) -> Vec<RosterItem> {
        match self.store.roster(owner).await {
            Ok((_, items)) => items,
            Err(err) => {
                tracing::error!(%owner, error = %err, "reading a roster failed");
                Vec::new()
            }
        }
    }

    pub(crate) async fn roster_item(
        &self,
        owner: &BareJid,
        contact: &BareJid,
    ) -> Option<RosterItem> {
        match self.store.roster_item(owner, contact).await {
            Ok(item) => item,
            Err(err) => {
                tracing::error!(%owner, error = %err, "reading a roster item failed");
                None
            }
        }
    }

    pub(crate) async fn has_request(&self, owner: &BareJid, contact: &BareJid) -> bool {
        self.store
            .has_request(owner, contact)
            .await
            .unwrap_or(false)
    }

    /// Process `kind` arriving at `owner` from `from` as if `from` had sent it, for the
    /// unsubscribe/unsubscribed the server sends when an item is removed (RFC 6121 §2.5.2).
    pub(crate) async fn subscription_on_behalf(
        &self,
        sender: &SessionHandle,
        contact: &BareJid,
        kind: SubscriptionStanza,
    ) {
        let mut element = Element::builder("presence", NS_CLIENT).build();
        let kind_name = match kind {
            SubscriptionStanza::Subscribe => "subscribe",
            SubscriptionStanza::Subscribed => "subscribed",
            SubscriptionStanza::Unsubscribe => "unsubscribe",
            SubscriptionStanza::Unsubscribed => "unsubscribed",
        };
        set_attr(&mut element, xml_ncname!("type"), Some(kind_name));
        set_attr(&mut element, xml_ncname!("to"), Some(contact.as_str()));
        if let Ok(stanza) = Stanza::try_from(element) {
            self.subscription(sender, contact, kind, &stanza).await;
        }
    }
}

/// The right to hand `user`'s offline messages to a session, held for one flush; dropping it
/// gives the right back.
pub(crate) struct FlushClaim<'a> {
    flushing: &'a Mutex<HashSet<BareJid>>,
    user: BareJid,
}

impl<'a> FlushClaim<'a> {
    /// `None` while someone else holds the claim for `user`.
    pub(crate) fn take(flushing: &'a Mutex<HashSet<BareJid>>, user: &BareJid) -> Option<Self> {
        let is_new = flushing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(user.clone());
        is_new.then(|| Self {
            flushing,
            user: user.clone(),
        })
    }
}

impl Drop for FlushClaim<'_> {
    fn drop(&mut self) {
        self.flushing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.user);
    }
}

/// What [`Router::commit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Committed {
    /// Applied and pushed.
    Yes,
    /// Nothing applied: an item would have been added to a full roster.
    RosterFull,
    /// Nothing applied: storage failed (logged).
    Failed,
}

/// Turn one side's step into storage changes.
fn collect(
    changes: &mut Vec<RosterChange>,
    owner: &BareJid,
    contact: &BareJid,
    step: &Step,
    request: Option<&Element>,
) {
    if let Some(item) = &step.item {
        changes.push(RosterChange::Put {
            owner: owner.clone(),
            item: item.clone(),
        });
    }
    match step.request {
        RequestChange::Keep => {}
        RequestChange::Add => changes.push(RosterChange::AddRequest {
            owner: owner.clone(),
            contact: contact.clone(),
            stanza: request.map(serialize).unwrap_or_default(),
        }),
        RequestChange::Remove => changes.push(RosterChange::RemoveRequest {
            owner: owner.clone(),
            contact: contact.clone(),
        }),
    }
}
