//! Routing points and what a hook at one of them may decide.
//!
//! A stanza passes up to four fixed points on its way (Prosody's `pre-*`, `*/bare`, `*/full`
//! and `delivery/failure` events, typed): [`RoutingPoint`]. Hooks registered for a point and a
//! stanza kind run in [`Priority`] order and each returns a [`Verdict`]; the first verdict other
//! than `Continue` ends the run. Nothing but an explicit `Handled` or `Reject` stops a stanza,
//! so a hook that has nothing to say cannot drop one by accident (Prosody's "any non-nil
//! result stops" rule once did, commit cbd398230).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use jid::Jid;
use minidom::Element;
use starling_stanza::{StanzaErrorCondition, StanzaKind};

/// A boxed future, as hooks and handlers return them (the traits must be object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where on its way a stanza is when a hook sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoutingPoint {
    /// It has just left a sender's bound session (its `from` stamped), before any routing
    /// decision. `to` is the address it names, or the sender's bare JID when it names none
    /// (RFC 6120 §10.3).
    Outbound,
    /// It is about to be handled for a local account's bare JID: delivered to the account's
    /// resources, stored offline, or answered by the server on the account's behalf.
    ToBare,
    /// It is about to be queued for one connected resource (`to` is that full JID). Broadcasts
    /// (presence to contacts, a message to several resources) pass here once per recipient.
    ToFull,
    /// A message for a local account reached none of its resources; the router's own
    /// fallback (offline storage, or an error to the sender) follows unless a hook handles it.
    DeliveryFailed,
}

impl RoutingPoint {
    pub(crate) const ALL: [RoutingPoint; 4] = [
        RoutingPoint::Outbound,
        RoutingPoint::ToBare,
        RoutingPoint::ToFull,
        RoutingPoint::DeliveryFailed,
    ];

    pub(crate) fn index(self) -> usize {
        match self {
            RoutingPoint::Outbound => 0,
            RoutingPoint::ToBare => 1,
            RoutingPoint::ToFull => 2,
            RoutingPoint::DeliveryFailed => 3,
        }
    }
}

pub(crate) fn kind_index(kind: StanzaKind) -> usize {
    match kind {
        StanzaKind::Message => 0,
        StanzaKind::Presence => 1,
        StanzaKind::Iq => 2,
    }
}

/// The order hooks run in at one point: higher first. The named bands keep the order Prosody
/// learned the hard way: policy (blocking) before archiving before copying (carbons) before the
/// router's own delivery, so blocked traffic is never archived, copied or delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(pub i16);

impl Priority {
    /// Policy that may refuse a stanza outright (blocking).
    pub const POLICY: Self = Self(100);
    /// Keeping a copy (archive).
    pub const ARCHIVE: Self = Self(0);
    /// Sending copies elsewhere. XEP-0280 carbons do not hook here: they are made through
    /// [`crate::CopyMaker`] once delivery settled who has the message.
    pub const COPY: Self = Self(-50);
    /// Shaping what reaches one resource and when (XEP-0352 client state indication holds
    /// or drops stanzas here), after every other decision about it.
    pub const DELIVERY: Self = Self(-100);
    /// Last resort handlers that run after everything else has had its say.
    pub const FALLBACK: Self = Self(-200);
}

/// A hook's decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Nothing to say: the next hook runs, then the router's own rule.
    Continue,
    /// The hook took care of the stanza (kept it, consumed it, or dropped it on purpose);
    /// nothing further happens to it here, and the sender hears nothing.
    Handled,
    /// Refused: the sender gets this error (never in answer to an error, RFC 6120 §8.3.1).
    /// At [`RoutingPoint::ToFull`] during a broadcast it counts as `Handled` for that
    /// recipient.
    Reject(Rejection),
}

/// A stanza error for the sender: a defined condition and, optionally, an application-specific
/// condition element (RFC 6120 §8.3.4), such as XEP-0191's `<blocked/>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The RFC 6120 §8.3.3 condition.
    pub condition: StanzaErrorCondition,
    /// An application-specific condition, placed inside `<error/>` after the defined one.
    pub application: Option<Element>,
}

impl From<StanzaErrorCondition> for Rejection {
    fn from(condition: StanzaErrorCondition) -> Self {
        Self {
            condition,
            application: None,
        }
    }
}

impl Rejection {
    /// The error reply to `stanza` (from its recipient, to its sender), or `None` when
    /// `stanza` is itself an error.
    pub fn reply_to(&self, stanza: &starling_stanza::Stanza) -> Option<Element> {
        let mut reply = stanza.error_reply(self.condition)?;
        if let Some(application) = &self.application
            && let Some(error) = reply
                .children_mut()
                .find(|child| child.is("error", starling_stanza::NS_CLIENT))
        {
            error.append_child(application.clone());
        }
        Some(reply)
    }
}

/// A stanza at a routing point, as hooks see it. The stanza is copy-on-write: reading it costs
/// nothing, and the first [`Routed::stanza_mut`] makes this recipient's own copy, so a hook can
/// change what one recipient gets without touching what the others share.
pub struct Routed<'a> {
    /// Where the stanza is.
    pub point: RoutingPoint,
    /// Message, presence or iq.
    pub kind: StanzaKind,
    /// Who sent it: a session's full JID, or an account's bare JID for stanzas the server
    /// sends on an account's behalf.
    pub from: &'a Jid,
    /// The address at this point (see [`RoutingPoint`]).
    pub to: &'a Jid,
    stanza: Cow<'a, Element>,
}

impl<'a> Routed<'a> {
    /// A stanza at `point`, borrowed until a hook changes it.
    pub fn new(
        point: RoutingPoint,
        kind: StanzaKind,
        from: &'a Jid,
        to: &'a Jid,
        stanza: &'a Element,
    ) -> Self {
        Self {
            point,
            kind,
            from,
            to,
            stanza: Cow::Borrowed(stanza),
        }
    }

    /// The stanza as it stands.
    pub fn stanza(&self) -> &Element {
        &self.stanza
    }

    /// The stanza, to change (copied on first use).
    pub fn stanza_mut(&mut self) -> &mut Element {
        self.stanza.to_mut()
    }

    /// The changed stanza, or `None` when no hook changed it.
    pub fn into_changed(self) -> Option<Element> {
        match self.stanza {
            Cow::Borrowed(_) => None,
            Cow::Owned(element) => Some(element),
        }
    }
}

/// A hook's answer: decided at once, or after waiting (for storage, say). Most hooks decide
/// from memory most of the time, and `Now` costs no allocation; that is what keeps a module
/// that looks at every stanza (blocking) close to free when it has nothing to say.
pub enum Hooked<'a> {
    /// Decided without waiting.
    Now(Verdict),
    /// Decided when the future completes.
    Later(BoxFuture<'a, Verdict>),
}

/// Something that looks at stanzas at routing points.
pub trait StanzaHook: Send + Sync {
    /// Decide about `routed`; may change it through [`Routed::stanza_mut`].
    fn on_stanza<'a>(&'a self, routed: &'a mut Routed<'_>) -> Hooked<'a>;
}
