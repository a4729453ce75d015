//! The extension interface: how a feature crate (one XEP family) plugs into Starling without
//! editing the router or the server.
//!
//! A [`Module`] registers, once at start-up, through a [`Registrar`]:
//! - **IQ handlers** by address form ([`AddressForm`]: server, bare JID, full JID), get/set and
//!   payload namespace ([`IqHandler`]);
//! - **stanza hooks** at fixed [`RoutingPoint`]s (after a stanza leaves its sender's session,
//!   before delivery to a bare JID, before delivery to each full JID, when delivery failed),
//!   per stanza kind, in [`Priority`] order, each returning a [`Verdict`] at once or later
//!   ([`StanzaHook`], [`Hooked`]);
//! - **session events** ([`SessionEvent`]: bound, available, unavailable, ended) through a
//!   [`SessionObserver`];
//! - **copies** of the messages an account sent or received, for its other resources
//!   ([`CopyMaker`]), which the router delivers through the `ToFull` hooks;
//! - **stream elements**: first-level elements other than stanzas (nonzas) of a namespace,
//!   from bound sessions ([`StreamElementHandler`]);
//! - **stream features** per [`StreamStage`], **disco** features and identities
//!   ([`DiscoTarget`]), and features derived from the final disco#info ([`DiscoFinisher`]).
//!
//! The server builds one [`ModuleSet`] from the enabled modules; the router consults it.
//! XEP-0030 disco is part of the set itself and answers from the registrations, so the server
//! advertises exactly what the enabled modules answer. Modules keep their storage behind
//! `starling-storage`'s traits and hold whatever they need (a store, the registry) themselves.
//!
//! *Why a compiled table rather than Prosody's event bus:* a stanza that no module registered
//! for must cost nothing. [`ModuleSet::has_hooks`] is an array index, an IQ lookup is one hash
//! of the namespace, and a hook that decides from memory answers [`Hooked::Now`] without
//! allocating.
//!
//! # A worked example
//!
//! A module that answers `<query xmlns='urn:example:hello'/>` sent to the server, and refuses
//! messages whose body is "spam" before they are routed anywhere:
//!
//! ```
//! use std::sync::Arc;
//! use starling_modules::*;
//! use starling_stanza::{IqType, StanzaErrorCondition, StanzaKind, NS_CLIENT};
//!
//! struct Hello;
//!
//! impl Module for Hello {
//!     fn name(&self) -> &'static str { "hello" }
//!     fn register(self: Arc<Self>, registrar: &mut Registrar<'_>) {
//!         registrar.iq(AddressForm::Server, IqType::Get, "urn:example:hello", self.clone());
//!         registrar.disco_feature(DiscoTarget::Server, "urn:example:hello");
//!         registrar.hook(RoutingPoint::Outbound, &[StanzaKind::Message], Priority::POLICY, self);
//!     }
//! }
//!
//! impl IqHandler for Hello {
//!     fn handle<'a>(&'a self, _request: IqRequest<'a>) -> BoxFuture<'a, IqAnswer> {
//!         Box::pin(async { Ok(Some(minidom::Element::builder("hello", "urn:example:hello").build())) })
//!     }
//! }
//!
//! impl StanzaHook for Hello {
//!     fn on_stanza<'a>(&'a self, routed: &'a mut Routed<'_>) -> Hooked<'a> {
//!         // Decided from the stanza alone, so at once (`Hooked::Later` would box a future).
//!         let body = routed.stanza().get_child("body", NS_CLIENT).map(|b| b.text());
//!         Hooked::Now(if body.as_deref() == Some("spam") {
//!             Verdict::Reject(StanzaErrorCondition::PolicyViolation.into())
//!         } else {
//!             Verdict::Continue
//!         })
//!     }
//! }
//!
//! let set = ModuleSet::build(vec![Arc::new(Hello)]).unwrap();
//! assert!(set.iq_handler(AddressForm::Server, IqType::Get, "urn:example:hello").is_some());
//! assert!(set.has_hooks(RoutingPoint::Outbound, StanzaKind::Message));
//! assert!(!set.has_hooks(RoutingPoint::ToFull, StanzaKind::Message));
//! assert!(set.server_info().features.contains("urn:example:hello"));
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod copies;
mod disco;
mod hooks;
mod iq;
mod set;

pub use copies::{CopyMaker, Direction, Exchanged, MessageCopy};
pub use disco::{DiscoInfo, DiscoTarget, Identity};
pub use hooks::{
    BoxFuture, Hooked, Priority, Rejection, Routed, RoutingPoint, StanzaHook, Verdict,
};
pub use iq::{AddressForm, IqAnswer, IqHandler, IqRequest, IqTarget};
pub use set::{
    DiscoFinisher, Finished, Module, ModuleError, ModuleSet, Registrar, SOFTWARE_NAME,
    SessionEvent, SessionObserver, StreamElementHandler, StreamStage,
};

#[cfg(test)]
mod tests;
