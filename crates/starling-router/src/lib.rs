//! Stanza routing, RFC 6120 §8 and §10 and RFC 6121 §8: where a stanza from a connected resource
//! goes, and what the sender hears back when it cannot go anywhere.
//!
//! [`Router::route`] takes a stanza whose `from` the stream engine has already stamped with the
//! sender's full JID. It classifies the `to` address (none, a host of ours, a local bare or full
//! JID, a remote domain), then applies the delivery rules of RFC 6121 §8.5 for the stanza kind and
//! type. Delivery goes only through [`SessionHandle::send`], never through the registry's maps,
//! so routing between nodes can later replace the local registry behind the same calls. Requests
//! to the server (and to an account's bare JID, which the server answers on its behalf) go to
//! `starling-services`.
//!
//! Presence (RFC 6121 §4) goes to the account's own resources, to subscribed contacts and to
//! directed-presence recipients; subscription stanzas (§3) run `starling-roster`'s state machine
//! for both local accounts and commit both sides in one storage transaction; roster queries (§2)
//! are answered from storage with pushes to interested resources; chat and normal messages for
//! an account with no available resource are kept offline (XEP-0160) and delivered with a
//! XEP-0203 stamp at the next available presence of non-negative priority.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod announce;
mod leftovers;
mod modules;
mod presence;
mod roster_iq;
mod router;

pub use presence::{OFFLINE_PAGE_MESSAGES, OFFLINE_QUEUE_HEADROOM};
pub use router::{Router, RouterLimits, Store};
