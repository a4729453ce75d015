//! Copies of a message for an account's other resources (XEP-0280 message carbons).
//!
//! A [`CopyMaker`] is told of each message a local account sent or received once the router
//! has settled it, together with the account's sessions that already have it, and names the
//! stanzas other sessions should get. The router delivers every copy like a routed stanza,
//! through the [`RoutingPoint::ToFull`](crate::RoutingPoint::ToFull) hooks, so a module that
//! decides what a resource gets (XEP-0352 client state indication) sees copies too; a module
//! that sent them itself would bypass those hooks.
//!
//! *Why after the routing points rather than as a hook:* a message to a bare JID may reach
//! several resources, and only after delivery is it known which; a copy made from the stanza
//! as delivered also carries what earlier hooks added (an archive's stanza id), and blocked
//! or refused messages are never copied because they are never settled.

use jid::BareJid;
use minidom::Element;
use starling_registry::SessionHandle;

/// Which way a message went, seen from the account the copies are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// One of the account's sessions sent it (it has passed the `Outbound` hooks).
    Sent,
    /// It was for the account: delivered to some of its resources, or stored for later.
    Received,
}

/// A message a local account exchanged, as the router settled it.
#[derive(Clone, Copy)]
pub struct Exchanged<'a> {
    /// Sent or received.
    pub direction: Direction,
    /// The local account the copies would be for: the sender's for [`Direction::Sent`], the
    /// recipient's for [`Direction::Received`].
    pub account: &'a BareJid,
    /// The message as it went out (its `from` stamped) or as it was delivered (with what the
    /// hooks before delivery changed).
    pub stanza: &'a Element,
    /// The account's sessions that have the message already: the sending session, or the
    /// resources it was queued for (none when it was stored offline).
    pub reached: &'a [SessionHandle],
}

/// One copy: a stanza for one connected resource.
pub struct MessageCopy {
    /// The resource that gets it.
    pub to: SessionHandle,
    /// The stanza, complete with its `from` (the account's bare JID) and `to` addresses.
    pub stanza: Element,
}

/// Makes copies of messages for an account's other resources.
pub trait CopyMaker: Send + Sync {
    /// Whether copies might be made for `account` (a bare JID, as a string). Asked for every
    /// message before anything is built for [`CopyMaker::copies`], so keep it a lookup; the
    /// default, `true`, always builds.
    fn copies_for(&self, account: &str) -> bool {
        let _ = account;
        true
    }

    /// Add the copies of `message` to `copies`. Runs inline on the routing task: decide from
    /// memory and do not block. A copy that cannot be delivered is dropped without telling
    /// the original sender (XEP-0280 §10.3).
    fn copies(&self, message: &Exchanged<'_>, copies: &mut Vec<MessageCopy>);
}
