//! The routing decisions.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use starling_registry::{Registry, SessionHandle};
use starling_services::{Clock, Target};
use starling_stanza::{IqType, NS_CLIENT, Stanza, StanzaErrorCondition, StanzaKind};
use starling_storage::AccountStore;

/// Routes stanzas between the sessions of this node and the server's own services.
pub struct Router<S> {
    registry: Arc<Registry>,
    accounts: S,
    started: Instant,
}

/// Where a stanza is addressed, as far as routing cares.
enum Destination {
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

impl<S: AccountStore> Router<S> {
    /// A router over this registry, checking account existence in `accounts`.
    pub fn new(registry: Arc<Registry>, accounts: S) -> Self {
        Self {
            registry,
            accounts,
            started: Instant::now(),
        }
    }

    /// The session registry routed over.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Route one stanza sent by `sender` (its `from` already stamped).
    pub async fn route(&self, sender: &SessionHandle, stanza: Stanza) {
        let destination = match stanza.to() {
            None => Destination::None,
            Some(to) => match Jid::new(to) {
                Ok(jid) => self.classify(jid),
                Err(_) => {
                    // RFC 6120 §8.3.3.8: the address is not a valid JID.
                    self.bounce(sender, &stanza, StanzaErrorCondition::JidMalformed);
                    return;
                }
            },
        };
        match stanza.kind() {
            StanzaKind::Message => self.route_message(sender, stanza, destination).await,
            StanzaKind::Presence => self.route_presence(sender, stanza, destination).await,
            StanzaKind::Iq => self.route_iq(sender, stanza, destination).await,
        }
    }

    /// A session ended (closed stream, broken socket, shutdown): remove it and, if it was
    /// available, tell the account's other resources it is gone (RFC 6121 §4.5.2).
    pub fn session_ended(&self, handle: &SessionHandle) {
        let was_registered = self.registry.unbind(handle);
        let was_available = handle.set_presence(None, 0);
        if was_registered && was_available {
            let mut unavailable = Element::builder("presence", NS_CLIENT).build();
            set_attr(&mut unavailable, "type", Some("unavailable"));
            set_attr(&mut unavailable, "from", Some(handle.full_jid().as_str()));
            let bare = handle.bare_jid();
            for target in self.registry.available_resources(&bare) {
                self.deliver(&target, unavailable.clone(), Some(&bare));
            }
            // FIXME(issue 5): contacts with a `from` subscription and directed-presence
            // recipients must also get unavailable presence.
        }
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
                    if !self.deliver(&target, stanza.element().clone(), None) {
                        self.message_to_unreachable_resource(sender, &stanza, &full, message_type)
                            .await;
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
        match message_type {
            MessageType::Groupchat => {
                self.bounce(sender, stanza, StanzaErrorCondition::ServiceUnavailable)
            }
            MessageType::Headline => {
                // §8.5.2.1.1: every available resource with non-negative priority.
                for target in self.registry.available_resources(bare) {
                    if target.priority() >= 0 {
                        self.deliver(&target, stanza.element().clone(), None);
                    }
                }
            }
            MessageType::Normal | MessageType::Chat => {
                // §8.5.2.1.1: the highest-priority available resource(s), never a negative one.
                let targets = self.registry.highest_priority_available(bare);
                let delivered = targets
                    .iter()
                    .filter(|target| self.deliver(target, stanza.element().clone(), None))
                    .count()
                    > 0;
                if !delivered {
                    // FIXME(issue 5): store offline (XEP-0160) instead; until then §8.5.2.2.1's
                    // alternative, an error to the sender.
                    self.bounce(sender, stanza, StanzaErrorCondition::ServiceUnavailable);
                }
            }
            MessageType::Error => {}
        }
    }

    async fn route_presence(
        &self,
        sender: &SessionHandle,
        stanza: Stanza,
        destination: Destination,
    ) {
        let presence_type = stanza.type_attr().map(str::to_owned);
        match destination {
            Destination::None => match presence_type.as_deref() {
                None => {
                    // RFC 6121 §4.2 and §4.4: available presence makes the resource available with
                    // its priority, and goes to all of the account's available resources
                    // (the sender included).
                    let priority = priority_of(stanza.element());
                    sender.set_presence(Some(stanza.element().clone()), priority);
                    self.broadcast_to_own_resources(sender, stanza.element());
                    // FIXME(issue 5): broadcast to contacts and probe them.
                }
                Some("unavailable") => {
                    // RFC 6121 §4.5.2: to the other available resources, and back to the sender.
                    self.broadcast_to_own_resources(sender, stanza.element());
                    let was_available = sender.set_presence(None, 0);
                    if was_available {
                        self.deliver(sender, stanza.element().clone(), Some(&sender.bare_jid()));
                    }
                }
                // FIXME(issue 5): subscription management.
                Some(_) => {}
            },
            Destination::Bare(bare) => {
                if is_subscription_type(presence_type.as_deref()) {
                    // FIXME(issue 5): subscription requests and probes.
                    return;
                }
                // RFC 6121 §8.5.2.1.2: directed presence goes to every available resource.
                for target in self.registry.available_resources(&bare) {
                    self.deliver(&target, stanza.element().clone(), None);
                }
            }
            Destination::Full(full) => {
                if is_subscription_type(presence_type.as_deref()) {
                    return;
                }
                // RFC 6121 §8.5.3: to a connected resource, else silently ignored.
                if let Some(target) = self.registry.resource(&full) {
                    self.deliver(&target, stanza.element().clone(), None);
                }
            }
            // Presence to the server or elsewhere is dropped silently (RFC 6121 §8.5.1, §8.5.4).
            Destination::Server | Destination::ServerResource | Destination::Remote => {}
        }
    }

    fn broadcast_to_own_resources(&self, sender: &SessionHandle, presence: &Element) {
        let bare = sender.bare_jid();
        for target in self.registry.available_resources(&bare) {
            self.deliver(&target, presence.clone(), Some(&bare));
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
            Destination::Full(full) => match self.registry.resource(&full) {
                Some(target)
                    if !self.deliver(&target, stanza.element().clone(), None) && is_request =>
                {
                    self.bounce(sender, &stanza, StanzaErrorCondition::ServiceUnavailable);
                }
                Some(_) => {}
                // RFC 6121 §8.5.3.2.2: no such resource.
                None if is_request => {
                    self.bounce(sender, &stanza, StanzaErrorCondition::ServiceUnavailable)
                }
                None => {}
            },
            // RFC 6120 §8.2.3: a result or error the server did not ask for is dropped.
            _ if !is_request => {}
            Destination::Server => self.answer(sender, &stanza, Target::Server),
            Destination::None => self.answer(sender, &stanza, Target::Account),
            Destination::Bare(bare) => {
                // RFC 6121 §8.5.2.1.3: the server answers on the account's behalf.
                if self.account_exists(&bare).await {
                    self.answer(sender, &stanza, Target::Account);
                } else {
                    self.bounce(sender, &stanza, StanzaErrorCondition::ServiceUnavailable);
                }
            }
            Destination::ServerResource => {
                self.bounce(sender, &stanza, StanzaErrorCondition::ServiceUnavailable)
            }
            Destination::Remote => {
                self.bounce(sender, &stanza, StanzaErrorCondition::RemoteServerNotFound)
            }
        }
    }

    fn answer(&self, sender: &SessionHandle, stanza: &Stanza, target: Target) {
        let clock = Clock {
            unix_seconds: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            uptime_seconds: self.started.elapsed().as_secs(),
        };
        match starling_services::answer(target, stanza.element(), &clock) {
            Some(Ok(payload)) => {
                let mut reply = stanza.iq_result();
                if let Some(payload) = payload {
                    reply.append_child(payload);
                }
                self.deliver(sender, reply, None);
            }
            Some(Err(condition)) => self.bounce(sender, stanza, condition),
            None => self.bounce(sender, stanza, StanzaErrorCondition::ServiceUnavailable),
        }
    }

    /// Send the RFC 6120 §8.3.1 error reply back to the sender (never for an error).
    fn bounce(&self, sender: &SessionHandle, stanza: &Stanza, condition: StanzaErrorCondition) {
        if let Some(reply) = stanza.error_reply(condition) {
            self.deliver(sender, reply, None);
        }
    }

    /// Queue `element` for `target`, addressed to `to` when given. `false` when the session is
    /// gone or not keeping up (RFC 6121 §8.5 then treats the resource as unavailable).
    fn deliver(&self, target: &SessionHandle, mut element: Element, to: Option<&BareJid>) -> bool {
        if let Some(to) = to {
            set_attr(&mut element, "to", Some(to.as_str()));
        }
        match target.send(element) {
            Ok(()) => true,
            Err(err) => {
                tracing::debug!(jid = %target.full_jid(), error = %err, "stanza not delivered");
                false
            }
        }
    }

    async fn account_exists(&self, bare: &BareJid) -> bool {
        if !self.registry.connected_resources(bare).is_empty() {
            return true;
        }
        match self.accounts.credentials(bare).await {
            Ok(found) => found.is_some(),
            Err(err) => {
                // Storage trouble must not turn into "no such user" for the sender.
                tracing::error!(%bare, error = %err, "account lookup failed while routing");
                true
            }
        }
    }
}

fn is_subscription_type(presence_type: Option<&str>) -> bool {
    matches!(
        presence_type,
        Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed" | "probe")
    )
}

/// RFC 6121 §4.7.2.3: an integer from -128 to +127; absent or invalid means 0.
fn priority_of(presence: &Element) -> i8 {
    presence
        .get_child("priority", NS_CLIENT)
        .and_then(|p| p.text().trim().parse::<i8>().ok())
        .unwrap_or(0)
}

fn set_attr(element: &mut Element, name: &'static str, value: Option<&str>) {
    if let Ok(name) = rxml::NcName::try_from(name) {
        starling_stanza::set_attr(element, &name, value);
    }
}

#[cfg(test)]
mod tests;
