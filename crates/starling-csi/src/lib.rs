//! XEP-0352 client state indication (v1.0.0), a module on the extension interface.
//!
//! The server offers `<csi xmlns='urn:xmpp:csi:0'/>` in the stream features after
//! authentication (§4.1). A bound client sends the nonzas `<inactive/>` and `<active/>`
//! (§4.2); the module accepts them through the interface's stream elements, so any other
//! non-stanza element is still a stream error. Every session starts active (§5).
//!
//! While a session is inactive, a hook at `ToFull` (the last band, `DELIVERY`, so every other
//! decision about the stanza has been made) sorts what comes for it ([`importance`]):
//! presence updates are held, the latest per sender (an `unavailable` replaces an earlier
//! available one); messages with nothing but chat states are dropped, carbons of them too;
//! headlines wait in order; anything else is important. Held stanzas are flushed, in the order
//! they came, when the client sends `<active/>` (before the session reads its next element, so
//! they come before the answers to later requests, §5.1) or just before an important stanza
//! is delivered, so nothing important is ever delayed and nothing overtakes what came before
//! it. Stanzas that do not pass `ToFull` (the server's own answers, roster pushes) are not held.
//!
//! Memory is bounded per session ([`CsiLimits`]): past either limit everything held is
//! flushed at once. The state lives in memory, by full JID, and goes when the session ends;
//! a session that replaced another on the same resource starts active. Held stanzas carry no
//! XEP-0203 delay stamp.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod importance;

use std::sync::Arc;

use dashmap::DashMap;
use minidom::Element;
use starling_modules::{
    BoxFuture, Hooked, Module, Priority, Registrar, Routed, RoutingPoint, SessionEvent,
    SessionObserver, StanzaHook, StreamElementHandler, StreamStage, Verdict,
};
use starling_registry::SessionHandle;
use starling_stanza::{NS_CSI, OutboundStanza, StanzaKind};

use crate::importance::Treatment;

/// Default for the most stanzas held for one inactive session.
pub const DEFAULT_MAX_HELD_STANZAS: usize = 256;
/// Default for the most bytes (serialized) held for one inactive session.
pub const DEFAULT_MAX_HELD_BYTES: usize = 256 * 1024;

/// What one inactive session may hold back; past either limit everything held is flushed.
/// Keep both well below the session's outbound queue limits, which the flush fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsiLimits {
    /// Stanzas held.
    pub max_held_stanzas: usize,
    /// Bytes of held stanzas, serialized.
    pub max_held_bytes: usize,
}

impl Default for CsiLimits {
    fn default() -> Self {
        Self {
            max_held_stanzas: DEFAULT_MAX_HELD_STANZAS,
            max_held_bytes: DEFAULT_MAX_HELD_BYTES,
        }
    }
}

/// The module.
pub struct Csi {
    limits: CsiLimits,
    /// Inactive sessions by full JID, with what is held for them. Active sessions have no
    /// entry, so a stanza for one costs a failed lookup.
    inactive: DashMap<String, Held>,
}

impl Csi {
    /// The module, holding at most `limits` per inactive session.
    pub fn new(limits: CsiLimits) -> Self {
        Self {
            limits,
            inactive: DashMap::new(),
        }
    }

    /// Whether `session` is inactive.
    pub fn is_inactive(&self, session: &SessionHandle) -> bool {
        self.inactive
            .get(session.full_jid().as_str())
            .is_some_and(|held| held.session == *session)
    }

    fn set_inactive(&self, session: &SessionHandle) {
        let mut held = self
            .inactive
            .entry(session.full_jid().as_str().to_owned())
            .or_insert_with(|| Held::new(session.clone()));
        if held.session != *session {
            // Left behind by a session this one replaced.
            *held = Held::new(session.clone());
        }
    }

    fn set_active(&self, session: &SessionHandle) {
        if let Some((_, mut held)) = self
            .inactive
            .remove_if(session.full_jid().as_str(), |_, held| {
                held.session == *session
            })
        {
            held.flush();
        }
    }

    /// The verdict for `routed`, delivered to an inactive session's `held`.
    fn sort(&self, held: &mut Held, routed: &Routed<'_>) -> Verdict {
        let key = match importance::treatment(routed.kind, routed.stanza()) {
            Treatment::Important => {
                held.flush();
                return Verdict::Continue;
            }
            Treatment::Drop => return Verdict::Handled,
            Treatment::LatestPresence => Some(routed.from.as_str()),
            Treatment::Defer => None,
        };
        held.hold(key, OutboundStanza::new(routed.stanza()));
        if held.stanzas.len() > self.limits.max_held_stanzas
            || held.bytes > self.limits.max_held_bytes
        {
            held.flush();
        }
        Verdict::Handled
    }
}

impl Default for Csi {
    fn default() -> Self {
        Self::new(CsiLimits::default())
    }
}

/// What is held for one inactive session.
struct Held {
    session: SessionHandle,
    /// In the order they came; a presence update keyed by its sender's JID, so a newer one
    /// replaces it (and takes its place at the end).
    stanzas: Vec<(Option<Box<str>>, OutboundStanza)>,
    /// Their serialized size.
    bytes: usize,
}

impl Held {
    fn new(session: SessionHandle) -> Self {
        Self {
            session,
            stanzas: Vec::new(),
            bytes: 0,
        }
    }

    fn hold(&mut self, key: Option<&str>, stanza: OutboundStanza) {
        if let Some(key) = key
            && let Some(index) = self
                .stanzas
                .iter()
                .position(|(held, _)| held.as_deref() == Some(key))
        {
            let (_, replaced) = self.stanzas.remove(index);
            self.bytes -= replaced.len();
        }
        self.bytes += stanza.len();
        self.stanzas.push((key.map(Box::from), stanza));
    }

    /// Queue everything held for the session, in order, and free the buffer.
    fn flush(&mut self) {
        for (_, stanza) in std::mem::take(&mut self.stanzas) {
            if let Err(err) = self.session.send(stanza) {
                tracing::debug!(jid = %self.session.full_jid(), error = %err, "csi: not delivered");
            }
        }
        self.bytes = 0;
    }
}

impl Module for Csi {
    fn name(&self) -> &'static str {
        "csi"
    }

    fn register(self: Arc<Self>, registrar: &mut Registrar<'_>) {
        let feature = Element::builder("csi", NS_CSI).build();
        registrar.stream_feature(StreamStage::Authenticated, feature);
        registrar.stream_element(NS_CSI, self.clone());
        let kinds = [StanzaKind::Message, StanzaKind::Presence, StanzaKind::Iq];
        registrar.hook(
            RoutingPoint::ToFull,
            &kinds,
            Priority::DELIVERY,
            self.clone(),
        );
        registrar.session_events(self);
    }
}

impl StreamElementHandler for Csi {
    fn on_element<'a>(
        &'a self,
        session: &'a SessionHandle,
        element: &'a Element,
    ) -> BoxFuture<'a, ()> {
        match element.name() {
            "inactive" => self.set_inactive(session),
            "active" => self.set_active(session),
            // The schema has no other elements to send; nothing to do with one.
            other => tracing::debug!(jid = %session.full_jid(), element = other, "csi: ignored"),
        }
        Box::pin(async {})
    }
}

impl StanzaHook for Csi {
    fn on_stanza<'a>(&'a self, routed: &'a mut Routed<'_>) -> Hooked<'a> {
        let to = routed.to.as_str();
        let Some(mut held) = self.inactive.get_mut(to) else {
            return Hooked::Now(Verdict::Continue);
        };
        if held.session.is_closing() {
            // Replaced by a newer session, or going away: nothing more is held for it.
            drop(held);
            self.inactive
                .remove_if(to, |_, held| held.session.is_closing());
            return Hooked::Now(Verdict::Continue);
        }
        Hooked::Now(self.sort(&mut held, routed))
    }
}

impl SessionObserver for Csi {
    fn on_session<'a>(
        &'a self,
        event: SessionEvent,
        session: &'a SessionHandle,
    ) -> BoxFuture<'a, ()> {
        let full_jid = session.full_jid().as_str();
        match event {
            // A new session starts active, whatever the one it replaced said (§5).
            SessionEvent::Bound => {
                self.inactive
                    .remove_if(full_jid, |_, held| held.session != *session);
            }
            SessionEvent::Ended => {
                self.inactive
                    .remove_if(full_jid, |_, held| held.session == *session);
            }
            // A resumed stream starts active (§5.2): what was held goes out now.
            SessionEvent::Resumed => self.set_active(session),
            SessionEvent::Available | SessionEvent::Unavailable => {}
        }
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests;
