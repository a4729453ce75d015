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
//! Not yet here: rosters, presence subscriptions, broadcast to contacts and offline storage (the
//! roster issue). Until then a chat or normal message to an account with no available resource is
//! answered with `service-unavailable`, which RFC 6121 §8.5.2.2.1 allows.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod router;

pub use router::Router;
