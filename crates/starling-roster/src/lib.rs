//! Rosters and presence subscriptions, RFC 6121 §2 and §3, as pure functions.
//!
//! [`parse_request`] turns a `jabber:iq:roster` query into a [`RosterRequest`] or the stanza
//! error RFC 6121 §2.3.3 names; [`query_result`] and [`push`] render items back. The
//! subscription state machine ([`outbound`], [`inbound`]) takes the current item and the pending
//! request flag and returns the new item plus what to route, deliver or answer — it never touches
//! storage or sessions, so the router can compute both sides of a local subscription change
//! and commit them in one storage transaction.
//!
//! ```
//! use starling_roster::{SubscriptionStanza, outbound};
//! use starling_storage::Subscription;
//!
//! let contact: jid::BareJid = "bob@localhost".parse().unwrap();
//! // Alice asks Bob for a subscription: her item becomes "none + pending out" and the request
//! // is routed to Bob.
//! let step = outbound(None, &contact, false, SubscriptionStanza::Subscribe);
//! let item = step.item.unwrap();
//! assert_eq!((item.subscription, item.pending_out), (Subscription::None, true));
//! assert!(step.route);
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod query;
mod subscription;

pub use query::{
    RosterLimits, RosterRequest, format_version, item_element, parse_request, push, query_result,
    removed_item_element, stream_features,
};
pub use subscription::{RequestChange, Step, SubscriptionStanza, inbound, outbound};
