//! XEP-0280 message carbons (v1.0.1), a module on the extension interface.
//!
//! A resource turns carbons on with `<enable xmlns='urn:xmpp:carbons:2'/>` (an iq set to its
//! own account, with or without `to`, as Prosody's mod_carbons accepts it) and off with
//! `<disable/>`; repeating either is answered with a result (§10.1). A request to another
//! account is `<not-allowed/>` (§5.1). The setting lives with the session, in memory, and goes
//! when the session ends.
//!
//! Copies are made through the interface's [`CopyMaker`]: once the router has settled a
//! message,
//! - **received** (§7): one for the account's carbons-enabled resources that did not get the
//!   original: to a bare JID, all but the resources RFC 6121 §8.5.2 chose; to a full JID, all
//!   but that resource; to a full JID that is not connected, as for the bare JID (RFC 6121
//!   §8.5.3.2.1). A message kept offline because no resource could take it is copied to the
//!   connected resources that enabled carbons (none of them received it); an account with
//!   no connected resource gets no copies;
//! - **sent** (§8): one for each carbons-enabled resource of the sender's account but the
//!   sending one, whether or not the sender enabled carbons.
//!
//! Which messages qualify is [`rules::is_eligible`] (§6.1). Because copies are made after
//! delivery, blocked or refused messages are never copied and a copy carries what the hooks
//! before delivery added (an archive's stanza id). The router delivers each copy through the
//! `ToFull` hooks, so client state indication sees them.
//!
//! §11 makes clients ignore carbons not from their own bare JID. The server makes sure none
//! reaches them: a hook in the policy band removes `<sent/>` and `<received/>` wrappers from
//! every message on its way to a local account (`ToBare`, `ToFull`) unless it is a copy this
//! module made (from the recipient's own bare JID), before anything archives it.
//!
//! `urn:xmpp:carbons:rules:0` (§6.2) is not advertised: the error rule is approximated (see
//! [`rules::is_eligible`]), so the rules are followed as recommended, not as required.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod rules;

use std::sync::Arc;

use dashmap::DashMap;
use jid::BareJid;
use starling_modules::{
    AddressForm, BoxFuture, CopyMaker, DiscoTarget, Exchanged, Hooked, IqAnswer, IqHandler,
    IqRequest, IqTarget, MessageCopy, Module, Priority, Registrar, Routed, RoutingPoint,
    SessionEvent, SessionObserver, StanzaHook, Verdict,
};
use starling_registry::{Registry, SessionHandle};
use starling_stanza::{IqType, NS_CARBONS, StanzaErrorCondition, StanzaKind, set_attr};
use uuid::Uuid;

/// The module.
pub struct Carbons {
    registry: Arc<Registry>,
    /// The sessions that enabled carbons, by account (bare JID): a few session ids each, at
    /// most one per connected resource. An entry goes when its last session disables carbons
    /// or ends; an account without one costs a message one failed lookup.
    enabled: DashMap<String, Vec<Uuid>>,
}

impl Carbons {
    /// The module, finding the account's resources in `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self {
            registry,
            enabled: DashMap::new(),
        }
    }

    /// Whether the session `id` of `account` has carbons enabled.
    pub fn is_enabled(&self, account: &BareJid, id: Uuid) -> bool {
        self.enabled
            .get(account.as_str())
            .is_some_and(|ids| ids.contains(&id))
    }

    fn enable(&self, account: &BareJid, id: Uuid) {
        let mut ids = self.enabled.entry(account.as_str().to_owned()).or_default();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }

    /// Forget the sessions `gone` of `account`.
    fn forget(&self, account: &BareJid, gone: &[Uuid]) {
        self.enabled.remove_if_mut(account.as_str(), |_, ids| {
            ids.retain(|id| !gone.contains(id));
            ids.is_empty()
        });
    }

    fn answer(&self, request: IqRequest<'_>) -> IqAnswer {
        let IqTarget::Account { jid, is_own } = request.to else {
            return Err(StanzaErrorCondition::ServiceUnavailable.into());
        };
        if !is_own {
            // §5.1: nobody turns carbons on or off for another account's clients.
            return Err(StanzaErrorCondition::NotAllowed.into());
        }
        let enable = match request.payload.name() {
            "enable" => true,
            "disable" => false,
            _ => return Err(StanzaErrorCondition::BadRequest.into()),
        };
        // The session is gone only if it ended while this request was on its way; nobody is
        // left to read the answer then.
        if let Some(session) = self.registry.resource(request.from) {
            if enable {
                self.enable(jid, session.id());
            } else {
                self.forget(jid, &[session.id()]);
            }
        }
        Ok(None)
    }
}

impl Module for Carbons {
    fn name(&self) -> &'static str {
        "carbons"
    }

    fn register(self: Arc<Self>, registrar: &mut Registrar<'_>) {
        registrar.iq(AddressForm::Bare, IqType::Set, NS_CARBONS, self.clone());
        registrar.disco_feature(DiscoTarget::Server, NS_CARBONS);
        for point in [RoutingPoint::ToBare, RoutingPoint::ToFull] {
            registrar.hook(
                point,
                &[StanzaKind::Message],
                Priority::POLICY,
                self.clone(),
            );
        }
        registrar.copies(self.clone());
        registrar.session_events(self);
    }
}

impl IqHandler for Carbons {
    fn handle<'a>(&'a self, request: IqRequest<'a>) -> BoxFuture<'a, IqAnswer> {
        let answer = self.answer(request);
        Box::pin(async move { answer })
    }
}

impl CopyMaker for Carbons {
    fn copies_for(&self, account: &str) -> bool {
        self.enabled.contains_key(account)
    }

    fn copies(&self, message: &Exchanged<'_>, copies: &mut Vec<MessageCopy>) {
        let enabled: Vec<Uuid> = match self.enabled.get(message.account.as_str()) {
            Some(ids) => ids.clone(),
            None => return,
        };
        if !rules::is_eligible(message.direction, message.stanza) {
            return;
        }
        let mut carbon = None;
        let mut live = Vec::with_capacity(enabled.len());
        for session in self.registry.connected_resources(message.account) {
            let id = session.id();
            if !enabled.contains(&id) {
                continue;
            }
            live.push(id);
            if message.reached.iter().any(|reached| reached.id() == id) {
                continue;
            }
            let carbon = carbon.get_or_insert_with(|| {
                rules::carbon(message.direction, message.account, message.stanza)
            });
            let mut stanza = carbon.clone();
            set_attr(
                &mut stanza,
                rxml::xml_ncname!("to"),
                Some(session.full_jid().as_str()),
            );
            copies.push(MessageCopy {
                to: session,
                stanza,
            });
        }
        if live.len() < enabled.len() {
            // A session replaced by a newer one for the same resource leaves the registry
            // without an `Ended` event; its id is dropped here. Only ids seen missing are
            // dropped, so a session enabling carbons meanwhile keeps its entry.
            let gone: Vec<Uuid> = enabled
                .into_iter()
                .filter(|id| !live.contains(id))
                .collect();
            self.forget(message.account, &gone);
        }
    }
}

impl StanzaHook for Carbons {
    fn on_stanza<'a>(&'a self, routed: &'a mut Routed<'_>) -> Hooked<'a> {
        if rules::is_carbon(routed.stanza()) && !is_own_copy(routed) {
            rules::strip_carbons(routed.stanza_mut());
        }
        Hooked::Now(Verdict::Continue)
    }
}

impl SessionObserver for Carbons {
    fn on_session<'a>(
        &'a self,
        event: SessionEvent,
        session: &'a SessionHandle,
    ) -> BoxFuture<'a, ()> {
        if event == SessionEvent::Ended {
            self.forget(&session.bare_jid(), &[session.id()]);
        }
        Box::pin(async {})
    }
}

/// Whether `routed` is a copy this module made: delivered to a resource from that resource's
/// own bare JID, which no client and no other server can send from (RFC 6120 §8.1.2.1).
fn is_own_copy(routed: &Routed<'_>) -> bool {
    let to = routed.to.as_str();
    let to_bare = to.split_once('/').map_or(to, |(bare, _)| bare);
    routed.point == RoutingPoint::ToFull
        && routed.from.is_bare()
        && routed.from.node().is_some()
        && routed.from.as_str() == to_bare
}

#[cfg(test)]
mod tests;
