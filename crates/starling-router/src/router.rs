//! The routing decisions.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use std::borrow::Cow;

use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use rxml::xml_ncname;
use starling_modules::{
    AddressForm, Direction, IqTarget, ModuleSet, RoutingPoint, SessionEvent, Verdict,
};
use starling_registry::{Registry, SessionHandle};
use starling_roster::RosterLimits;
use starling_stanza::{
    IqType, NS_CLIENT, OutboundStanza, Stanza, StanzaErrorCondition, StanzaKind, set_attr,
};

use crate::modules::{Decision, Delivered, Fanout};
use starling_storage::{AccountStore, OfflineMessage, OfflineQuota, OfflineStore, RosterStore};

/// Everything the router keeps for accounts: credentials (to know who exists), rosters and
/// offline messages.
pub trait Store: AccountStore + RosterStore + OfflineStore {}

impl<T: AccountStore + RosterStore + OfflineStore> Store for T {}

/// Limits the router enforces on stored data.
#[derive(Debug, Clone, Copy)]
pub struct RouterLimits {
    /// Roster size and item limits (RFC 6121 §2.3.3).
    pub roster: RosterLimits,
    /// Offline messages kept per account (XEP-0160); past it, senders get
    /// `service-unavailable`.
    pub max_offline_messages: usize,
    /// Addresses one resource may have sent directed available presence to and not yet
    /// unavailable (RFC 6121 §4.6); past it, directed presence gets `policy-violation`.
    pub max_directed_presences: usize,
    /// Bytes of offline messages (serialized stanzas) kept per account; past it, senders get
    /// `service-unavailable` as for the count.
    pub max_offline_bytes: usize,
}

impl Default for RouterLimits {
    fn default() -> Self {
        Self {
            roster: RosterLimits::default(),
            max_offline_messages: 100,
            max_directed_presences: 1000,
            max_offline_bytes: 1024 * 1024,
        }
    }
}

/// Routes stanzas between the sessions of this node and the server's own services.
pub struct Router<S> {
    pub(crate) registry: Arc<Registry>,
    pub(crate) store: S,
    pub(crate) limits: RouterLimits,
    /// The enabled feature modules.
    pub(crate) modules: Arc<ModuleSet>,
    /// Ids for server-generated stanzas (roster pushes).
    next_id: AtomicU64,
    /// Accounts whose offline messages a resource is being handed right now. Reading a page
    /// and removing what was delivered are two storage calls, so a second resource of the
    /// same account must not read the same page meanwhile; it skips the flush instead
    /// (XEP-0160 §3: the messages go to one resource). A std mutex: never held across an
    /// await.
    pub(crate) offline_flushing: Mutex<HashSet<BareJid>>,
}

/// Where a stanza is addressed, as far as routing cares.
pub(crate) enum Destination {
    /// No `to`: the sender's own account (RFC 6120 §10.3).
    None,
    /// One of our hosts (a bare domain JID).
    Server,
    /// `domain/resource` on one of our hosts: nothing lives there.
    ServerResource,
    /// A local account's bare JID.
    Bare(BareJid),
    /// A local full JID.
    Full(FullJid),
    /// A domain this server does not host; there is no server-to-server yet.
    Remote,
}

/// The message types of RFC 6121 §5.2.2; anything unknown is treated as `normal`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MessageType {
    Normal,
    Chat,
    Groupchat,
    Headline,
    Error,
}

impl<S: Store> Router<S> {
    /// A router over this registry and store, with these modules.
    pub fn new(
        registry: Arc<Registry>,
        store: S,
        limits: RouterLimits,
        modules: Arc<ModuleSet>,
    ) -> Self {
        Self {
            registry,
            store,
            limits,
            modules,
            next_id: AtomicU64::new(1),
            offline_flushing: Mutex::new(HashSet::new()),
        }
    }

    /// A fresh id for a stanza the server originates.
    pub(crate) fn fresh_id(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// The session registry routed over.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The enabled modules.
    pub fn modules(&self) -> &Arc<ModuleSet> {
        &self.modules
    }

    /// Route one stanza sent by `sender` (its `from` already stamped).
    pub async fn route(&self, sender: &SessionHandle, mut stanza: Stanza) {
        let mut to = match stanza.to().map(starling_stanza::parse_jid) {
            None => None,
            Some(Ok(jid)) => Some(jid),
            Some(Err(_)) => {
                // RFC 6120 §8.3.3.8: the address is not a valid JID.
                self.bounce(sender, &stanza, StanzaErrorCondition::JidMalformed);
                return;
            }
        };
        if self
            .modules
            .has_hooks(RoutingPoint::Outbound, stanza.kind())
        {
            // No `to`: the sender's own account (made only then, as it allocates).
            let own: Option<Jid> = to.is_none().then(|| sender.bare_jid().into());
            let Some(addressed_to) = to.as_ref().or(own.as_ref()) else {
                return;
            };
            let decision = self
                .at_point(
                    RoutingPoint::Outbound,
                    stanza.kind(),
                    sender.full_jid(),
                    addressed_to,
                    stanza.element(),
                )
                .await;
            match decision {
                Decision::Go(None) => {}
                Decision::Go(Some(changed)) => {
                    // A module rewrote the stanza; its addresses are read again.
                    let Ok(changed) = Stanza::try_from(changed) else {
                        tracing::error!("a module turned a stanza into a non-stanza; dropped");
                        return;
                    };
                    stanza = changed;
                    to = stanza
                        .to()
                        .and_then(|to| starling_stanza::parse_jid(to).ok());
                }
                Decision::Stop(verdict) => {
                    self.stopped(sender, &stanza, &verdict);
                    return;
                }
            }
        }
        if stanza.kind() == StanzaKind::Message
            && self
                .modules
                .copies_for(bare_part(sender.full_jid().as_str()))
        {
            // XEP-0280 §8: copies of what a resource sends go to the account's other resources.
            let own = sender.bare_jid();
            let reached = std::slice::from_ref(sender);
            self.copy_message(Direction::Sent, &own, stanza.element(), reached)
                .await;
        }
        let destination = match to {
            None => Destination::None,
            Some(jid) => self.classify(jid),
        };
        match stanza.kind() {
            StanzaKind::Message => self.route_message(sender, stanza, destination).await,
            StanzaKind::Presence => self.route_presence(sender, stanza, destination).await,
            StanzaKind::Iq => self.route_iq(sender, stanza, destination).await,
        }
    }

    /// A session ended (closed stream, broken socket, shutdown): remove it and, if it was
    /// available, send its unavailable presence where its presence went (RFC 6121 §4.5.2).
    pub async fn session_ended(&self, handle: &SessionHandle) {
        let was_registered = self.registry.unbind(handle);
        if was_registered && handle.is_available() {
            let mut unavailable = Element::builder("presence", NS_CLIENT).build();
            set_attr(&mut unavailable, xml_ncname!("type"), Some("unavailable"));
            set_attr(
                &mut unavailable,
                xml_ncname!("from"),
                Some(handle.full_jid().as_str()),
            );
            self.broadcast_unavailable(handle, &unavailable).await;
            handle.set_presence(None, 0);
            self.session_event(SessionEvent::Unavailable, handle).await;
        } else {
            handle.set_presence(None, 0);
        }
        if was_registered {
            self.session_event(SessionEvent::Ended, handle).await;
        }
    }

    /// A session bound a resource (it is in the registry now).
    pub async fn session_bound(&self, handle: &SessionHandle) {
        self.session_event(SessionEvent::Bound, handle).await;
    }

    fn classify(&self, jid: Jid) -> Destination {
        if !self.registry.serves(jid.domain().as_str()) {
            return Destination::Remote;
        }
        match (jid.node().is_some(), jid.try_into_full()) {
            (false, Ok(_)) => Destination::ServerResource,
            (false, Err(_)) => Destination::Server,
            (true, Ok(full)) => Destination::Full(full),
            (true, Err(bare)) => Destination::Bare(bare),
        }
    }

    async fn route_message(
        &self,
        sender: &SessionHandle,
        stanza: Stanza,
        destination: Destination,
    ) {
        let message_type = match stanza.type_attr() {
            Some("chat") => MessageType::Chat,
            Some("groupchat") => MessageType::Groupchat,
            Some("headline") => MessageType::Headline,
            Some("error") => MessageType::Error,
            _ => MessageType::Normal,
        };
        match destination {
            // RFC 6120 §10.3.1: no `to` means the sender's own bare JID.
            Destination::None => {
                self.message_to_bare(sender, &stanza, &sender.bare_jid(), message_type)
                    .await
            }
            Destination::Bare(bare) => {
                self.message_to_bare(sender, &stanza, &bare, message_type)
                    .await
            }
            Destination::Full(full) => match self.registry.resource(&full) {
                // RFC 6121 §8.5.3.1: a connected resource gets it, whatever its priority.
                Some(target) => {
                    let fanout = Fanout::new(
                        StanzaKind::Message,
                        sender.full_jid(),
                        Cow::Borrowed(stanza.element()),
                    );
                    match self.deliver_keeping(&target, &fanout).await {
                        (Delivered::Queued | Delivered::Handled, changed) => {
                            if self.modules.copies_for(bare_part(full.as_str())) {
                                let delivered = changed.as_ref().unwrap_or(stanza.element());
                                let reached = std::slice::from_ref(&target);
                                self.copy_message(
                                    Direction::Received,
                                    &full.to_bare(),
                                    delivered,
                                    reached,
                                )
                                .await;
                            }
                        }
                        (Delivered::Rejected(rejection), _) => {
                            if message_type != MessageType::Error {
                                self.reject(sender, &stanza, &rejection);
                            }
                        }
                        (Delivered::Failed, _) => {
                            self.message_to_unreachable_resource(
                                sender,
                                &stanza,
                                &full,
                                message_type,
                            )
                            .await;
                        }
                    }
                }
                None => {
                    self.message_to_unreachable_resource(sender, &stanza, &full, message_type)
                        .await
                }
            },
            // Messages to a host are for services we do not run yet; RFC 6120 §10.4.1 lets the
            // server answer as it sees fit, and silence would hide the problem from the sender.
            Destination::Server | Destination::ServerResource => {
                if message_type != MessageType::Error {
                    self.bounce(sender, &stanza, StanzaErrorCondition::ServiceUnavailable);
                }
            }
            Destination::Remote => {
                if message_type != MessageType::Error {
                    self.bounce(sender, &stanza, StanzaErrorCondition::RemoteServerNotFound);
                }
            }
        }
    }

    /// RFC 6121 §8.5.3.2.1: no connected resource matches the full JID.
    async fn message_to_unreachable_resource(
        &self,
        sender: &SessionHandle,
        stanza: &Stanza,
        full: &FullJid,
        message_type: MessageType,
    ) {
        match message_type {
            MessageType::Normal | MessageType::Chat => {
                self.message_to_bare(sender, stanza, &full.to_bare(), message_type)
                    .await;
            }
            MessageType::Groupchat => {
                self.bounce(sender, stanza, StanzaErrorCondition::ServiceUnavailable)
            }
            MessageType::Headline | MessageType::Error => {}
        }
    }

    /// RFC 6121 §8.5.2 (and §8.5.1 for accounts that do not exist).
    async fn message_to_bare(
        &self,
        sender: &SessionHandle,
        stanza: &Stanza,
        bare: &BareJid,
        message_type: MessageType,
    ) {
        if message_type == MessageType::Error {
            return;
        }
        if !self.account_exists(bare).await {
            self.bounce(sender, stanza, StanzaErrorCondition::ServiceUnavailable);
            return;
        }
        let changed;
        let stanza = match self
            .at_point(
                RoutingPoint::ToBare,
                StanzaKind::Message,
                sender.full_jid(),
                bare,
                stanza.element(),
            )
            .await
        {
            Decision::Go(None) => stanza,
            Decision::Go(Some(element)) => match Stanza::try_from(element) {
                Ok(stanza) => {
                    changed = stanza;
                    &changed
                }
                Err(_) => return,
            },
            Decision::Stop(verdict) => {
                self.stopped(sender, stanza, &verdict);
                return;
            }
        };
        let fanout = Fanout::new(
            StanzaKind::Message,
            sender.full_jid(),
            Cow::Borrowed(stanza.element()),
        );
        match message_type {
            MessageType::Groupchat => {
                self.bounce(sender, stanza, StanzaErrorCondition::ServiceUnavailable)
            }
            MessageType::Headline => {
                // §8.5.2.1.1: every available resource with non-negative priority.
                let mut reached = Reached::new(self.modules.copies_for(bare.as_str()));
                for target in self.registry.available_resources(bare) {
                    if target.priority() >= 0 {
                        let delivery = self.deliver_keeping(&target, &fanout).await;
                        reached.note(target, delivery);
                    }
                }
                if reached.collecting && reached.delivered {
                    let delivered = reached.stanza.as_ref().unwrap_or(stanza.element());
                    self.copy_message(Direction::Received, bare, delivered, &reached.sessions)
                        .await;
                }
            }
            MessageType::Normal | MessageType::Chat => {
                // §8.5.2.1.1: the highest-priority available resource(s), never a negative one.
                let mut reached = Reached::new(self.modules.copies_for(bare.as_str()));
                for target in self.registry.highest_priority_available(bare) {
                    match self.deliver_keeping(&target, &fanout).await {
                        (Delivered::Rejected(rejection), _) => {
                            self.reject(sender, stanza, &rejection);
                            return;
                        }
                        delivery => reached.note(target, delivery),
                    }
                }
                if reached.delivered {
                    if reached.collecting {
                        let delivered = reached.stanza.as_ref().unwrap_or(stanza.element());
                        self.copy_message(Direction::Received, bare, delivered, &reached.sessions)
                            .await;
                    }
                    return;
                }
                match self
                    .at_point(
                        RoutingPoint::DeliveryFailed,
                        StanzaKind::Message,
                        sender.full_jid(),
                        bare,
                        stanza.element(),
                    )
                    .await
                {
                    Decision::Stop(Verdict::Handled) => {}
                    Decision::Stop(verdict) => {
                        self.stopped(sender, stanza, &verdict);
                        return;
                    }
                    Decision::Go(_) => {
                        if !self.store_offline(bare, stanza).await {
                            // XEP-0160 §3: storage full (or failing): tell the sender.
                            self.bounce(sender, stanza, StanzaErrorCondition::ServiceUnavailable);
                            return;
                        }
                    }
                }
                // Kept for later: XEP-0280 §7 still copies it to the account's connected
                // resources that asked for copies (none of them received it).
                if reached.collecting {
                    self.copy_message(Direction::Received, bare, stanza.element(), &[])
                        .await;
                }
            }
            MessageType::Error => {}
        }
    }

    async fn route_iq(&self, sender: &SessionHandle, stanza: Stanza, destination: Destination) {
        let iq_type = match stanza.iq() {
            Ok((iq_type, _)) => iq_type,
            Err(_) => {
                // RFC 6120 §8.2.3: a get or set carries exactly one payload; an iq without a
                // valid type or id is malformed too.
                self.bounce(sender, &stanza, StanzaErrorCondition::BadRequest);
                return;
            }
        };
        let is_request = matches!(iq_type, IqType::Get | IqType::Set);
        match destination {
            // RFC 6121 §2.1.6: a roster push comes only from the user's own account, and a
            // client must ignore one from anywhere else; relaying another account's would
            // only test that the client does. The sender gets the error the bare-JID branch
            // below gives for another account's roster (§2.1.5).
            Destination::Full(full)
                if iq_type == IqType::Set
                    && is_roster_query(&stanza)
                    && full.to_bare() != sender.bare_jid() =>
            {
                self.bounce(sender, &stanza, StanzaErrorCondition::Forbidden);
            }
            Destination::Full(full)
                if is_request && self.has_iq_handler(AddressForm::Full, iq_type, &stanza) =>
            {
                self.answer_iq(sender, &stanza, iq_type, IqTarget::Resource(&full))
                    .await;
            }
            Destination::Full(full) => match self.registry.resource(&full) {
                Some(target) => {
                    let fanout = Fanout::new(
                        StanzaKind::Iq,
                        sender.full_jid(),
                        Cow::Borrowed(stanza.element()),
                    );
                    match self.deliver_to(&target, &fanout).await {
                        Delivered::Queued => {}
                        Delivered::Handled => {}
                        Delivered::Rejected(rejection) => {
                            if is_request {
                                self.reject(sender, &stanza, &rejection);
                            }
                        }
                        Delivered::Failed if is_request => {
                            self.bounce(sender, &stanza, StanzaErrorCondition::ServiceUnavailable)
                        }
                        Delivered::Failed => {}
                    }
                }
                // RFC 6121 §8.5.3.2.2: no such resource.
                None if is_request => {
                    self.bounce(sender, &stanza, StanzaErrorCondition::ServiceUnavailable)
                }
                None => {}
            },
            // RFC 6120 §8.2.3: a result or error the server did not ask for is dropped.
            _ if !is_request => {}
            Destination::Server => {
                let host = stanza.to().unwrap_or_default().to_owned();
                self.answer_iq(sender, &stanza, iq_type, IqTarget::Server(&host))
                    .await;
            }
            Destination::None => self.own_account_iq(sender, &stanza, iq_type).await,
            Destination::Bare(bare) if bare == sender.bare_jid() => {
                self.own_account_iq(sender, &stanza, iq_type).await
            }
            Destination::Bare(_) if is_roster_query(&stanza) => {
                // RFC 6121 §2.1.5: nobody may read or change another account's roster.
                self.bounce(sender, &stanza, StanzaErrorCondition::Forbidden);
            }
            Destination::Bare(bare) => {
                // RFC 6121 §8.5.2.1.3: the server answers on the account's behalf.
                if !self.account_exists(&bare).await {
                    self.bounce(sender, &stanza, StanzaErrorCondition::ServiceUnavailable);
                    return;
                }
                if let Decision::Stop(verdict) = self
                    .at_point(
                        RoutingPoint::ToBare,
                        StanzaKind::Iq,
                        sender.full_jid(),
                        &bare,
                        stanza.element(),
                    )
                    .await
                {
                    self.stopped(sender, &stanza, &verdict);
                    return;
                }
                let to = IqTarget::Account {
                    jid: &bare,
                    is_own: false,
                };
                self.answer_iq(sender, &stanza, iq_type, to).await;
            }
            Destination::ServerResource => {
                self.bounce(sender, &stanza, StanzaErrorCondition::ServiceUnavailable)
            }
            Destination::Remote => {
                self.bounce(sender, &stanza, StanzaErrorCondition::RemoteServerNotFound)
            }
        }
    }

    /// An iq to the sender's own account: the roster (RFC 6121 §2), else a module.
    async fn own_account_iq(&self, sender: &SessionHandle, stanza: &Stanza, iq_type: IqType) {
        if self.handle_roster_iq(sender, stanza, iq_type).await {
            return;
        }
        let own = sender.bare_jid();
        let to = IqTarget::Account {
            jid: &own,
            is_own: true,
        };
        self.answer_iq(sender, stanza, iq_type, to).await;
    }

    /// Keep a message for an account with no available resource (XEP-0160). `false` when it
    /// could not be stored.
    pub(crate) async fn store_offline(&self, owner: &BareJid, stanza: &Stanza) -> bool {
        let message = OfflineMessage {
            stored_at_unix_ms: unix_ms(),
            stanza: serialize(stanza.element()),
        };
        match self
            .store
            .push_offline(
                owner,
                &message,
                OfflineQuota {
                    max_messages: self.limits.max_offline_messages,
                    max_bytes: self.limits.max_offline_bytes,
                },
            )
            .await
        {
            Ok(stored) => stored,
            Err(err) => {
                tracing::error!(%owner, error = %err, "storing an offline message failed");
                false
            }
        }
    }

    /// Send the RFC 6120 §8.3.1 error reply back to the sender (never for an error).
    pub(crate) fn bounce(
        &self,
        sender: &SessionHandle,
        stanza: &Stanza,
        condition: StanzaErrorCondition,
    ) {
        if let Some(reply) = stanza.error_reply(condition) {
            self.deliver(sender, reply, None);
        }
    }

    /// Queue `element` for `target`, addressed to `to` when given. `false` when the session is
    /// gone or not keeping up (RFC 6121 §8.5 then treats the resource as unavailable).
    pub(crate) fn deliver(
        &self,
        target: &SessionHandle,
        element: Element,
        to: Option<&str>,
    ) -> bool {
        self.deliver_shared(target, &addressed(element, to))
    }

    /// Queue an already serialized stanza for `target`; recipients of one stanza share its
    /// bytes. `false` as for [`Router::deliver`].
    pub(crate) fn deliver_shared(&self, target: &SessionHandle, stanza: &OutboundStanza) -> bool {
        match target.send(stanza.clone()) {
            Ok(()) => true,
            Err(err) => {
                tracing::debug!(jid = %target.full_jid(), error = %err, "stanza not delivered");
                false
            }
        }
    }

    pub(crate) async fn account_exists(&self, bare: &BareJid) -> bool {
        if !self.registry.connected_resources(bare).is_empty() {
            return true;
        }
        match self.store.credentials(bare).await {
            Ok(found) => found.is_some(),
            Err(err) => {
                // Storage trouble must not turn into "no such user" for the sender.
                tracing::error!(%bare, error = %err, "account lookup failed while routing");
                true
            }
        }
    }
}

/// Whether a message to a bare JID reached any resource; when a module may copy it
/// (`collecting`), which ones, and the stanza as the first of them got it when a `ToFull` hook
/// changed it (copies are made of what was delivered).
struct Reached {
    delivered: bool,
    collecting: bool,
    sessions: Vec<SessionHandle>,
    stanza: Option<Element>,
}

impl Reached {
    fn new(collecting: bool) -> Self {
        Self {
            delivered: false,
            collecting,
            sessions: Vec::new(),
            stanza: None,
        }
    }

    fn note(&mut self, target: SessionHandle, (delivered, changed): (Delivered, Option<Element>)) {
        if matches!(delivered, Delivered::Queued | Delivered::Handled) {
            self.delivered = true;
            if self.collecting {
                if self.stanza.is_none() {
                    self.stanza = changed;
                }
                self.sessions.push(target);
            }
        }
    }
}

/// The bare part of a JID's string form, without allocating.
fn bare_part(jid: &str) -> &str {
    jid.split_once('/').map_or(jid, |(bare, _)| bare)
}

fn is_roster_query(stanza: &Stanza) -> bool {
    stanza
        .element()
        .children()
        .next()
        .is_some_and(|c| c.is("query", starling_stanza::NS_ROSTER))
}

/// `element` addressed to `to` when given, serialized once for however many recipients.
pub(crate) fn addressed(mut element: Element, to: Option<&str>) -> OutboundStanza {
    if let Some(to) = to {
        set_attr(&mut element, xml_ncname!("to"), Some(to));
    }
    OutboundStanza::new(&element)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(crate) fn serialize(element: &Element) -> String {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = element.write_to(&mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// RFC 6121 §4.7.2.3: an integer from -128 to +127; absent or invalid means 0.
pub(crate) fn priority_of(presence: &Element) -> i8 {
    presence
        .get_child("priority", NS_CLIENT)
        .and_then(|p| p.text().trim().parse::<i8>().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
