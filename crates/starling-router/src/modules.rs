//! Where the router consults the enabled modules (`starling-modules`): the routing points,
//! IQ dispatch, copies of messages and session events. Each call is skipped at the cost of one table lookup when
//! no module registered for it.

use std::borrow::Cow;
use std::sync::OnceLock;

use jid::{BareJid, Jid};
use minidom::Element;
use starling_modules::{
    AddressForm, Direction, Exchanged, IqRequest, IqTarget, Rejection, Routed, RoutingPoint,
    SessionEvent, Verdict,
};
use starling_registry::SessionHandle;
use starling_stanza::{IqType, OutboundStanza, Stanza, StanzaErrorCondition, StanzaKind};

use crate::router::{Router, Store};

/// One stanza on its way to one or more connected resources, from `from`. It is serialized at
/// most once for all of them, unless a hook at [`RoutingPoint::ToFull`] changes it for one.
pub(crate) struct Fanout<'a> {
    kind: StanzaKind,
    from: &'a Jid,
    element: Cow<'a, Element>,
    shared: OnceLock<OutboundStanza>,
}

impl<'a> Fanout<'a> {
    pub(crate) fn new(kind: StanzaKind, from: &'a Jid, element: Cow<'a, Element>) -> Self {
        Self {
            kind,
            from,
            element,
            shared: OnceLock::new(),
        }
    }

    /// `element` with its `to` set to `to`, for presence addressed to a bare JID.
    pub(crate) fn addressed(
        kind: StanzaKind,
        from: &'a Jid,
        element: &Element,
        to: &str,
    ) -> Fanout<'a> {
        let mut element = element.clone();
        starling_stanza::set_attr(&mut element, rxml::xml_ncname!("to"), Some(to));
        Self::new(kind, from, Cow::Owned(element))
    }

    pub(crate) fn element(&self) -> &Element {
        &self.element
    }

    fn shared(&self) -> &OutboundStanza {
        self.shared
            .get_or_init(|| OutboundStanza::new(&self.element))
    }
}

/// What became of one delivery.
#[derive(Debug, PartialEq)]
pub(crate) enum Delivered {
    /// On the session's queue.
    Queued,
    /// The session is gone or its queue is full (RFC 6121 §8.5 then treats the resource as
    /// unavailable).
    Failed,
    /// A module took it (or dropped it on purpose).
    Handled,
    /// A module refused it; the sender is owed this error.
    Rejected(Rejection),
}

/// The outcome of the hooks at a point before the router's own rule.
pub(crate) enum Decision {
    /// Go on, with the stanza changed when `Some`.
    Go(Option<Element>),
    /// Stop here.
    Stop(Verdict),
}

impl<S: Store> Router<S> {
    /// Queue `fanout` for `target`, after the [`RoutingPoint::ToFull`] hooks.
    pub(crate) async fn deliver_to(
        &self,
        target: &SessionHandle,
        fanout: &Fanout<'_>,
    ) -> Delivered {
        self.deliver_keeping(target, fanout).await.0
    }

    /// Like [`Router::deliver_to`], also giving back the stanza as the `ToFull` hooks changed
    /// it for `target` when one did (copies are made of what was delivered).
    pub(crate) async fn deliver_keeping(
        &self,
        target: &SessionHandle,
        fanout: &Fanout<'_>,
    ) -> (Delivered, Option<Element>) {
        if !self.modules.has_hooks(RoutingPoint::ToFull, fanout.kind) {
            return (queued(self.deliver_shared(target, fanout.shared())), None);
        }
        let to: &Jid = target.full_jid();
        let mut routed = Routed::new(
            RoutingPoint::ToFull,
            fanout.kind,
            fanout.from,
            to,
            fanout.element(),
        );
        match self.modules.run_hooks(&mut routed).await {
            Verdict::Continue => match routed.into_changed() {
                None => (queued(self.deliver_shared(target, fanout.shared())), None),
                Some(changed) => (
                    queued(self.deliver_shared(target, &OutboundStanza::new(&changed))),
                    Some(changed),
                ),
            },
            Verdict::Handled => (Delivered::Handled, None),
            Verdict::Reject(rejection) => (Delivered::Rejected(rejection), None),
        }
    }

    /// Deliver the copies the modules make of a message `account` exchanged (XEP-0280
    /// carbons), each through the `ToFull` hooks, from the account's bare JID. What becomes of
    /// a copy is nobody's business: the original sender never hears of it (XEP-0280 §10.3).
    /// Callers ask [`starling_modules::ModuleSet::copies_for`] first, before they build anything for it.
    pub(crate) async fn copy_message(
        &self,
        direction: Direction,
        account: &BareJid,
        stanza: &Element,
        reached: &[SessionHandle],
    ) {
        let copies = self.modules.copies(&Exchanged {
            direction,
            account,
            stanza,
            reached,
        });
        if copies.is_empty() {
            return;
        }
        let from = Jid::from(account.clone());
        for copy in copies {
            let fanout = Fanout::new(StanzaKind::Message, &from, Cow::Owned(copy.stanza));
            self.deliver_to(&copy.to, &fanout).await;
        }
    }

    /// Run the hooks of `point` for `stanza` from `from` to `to`.
    pub(crate) async fn at_point(
        &self,
        point: RoutingPoint,
        kind: StanzaKind,
        from: &Jid,
        to: &Jid,
        stanza: &Element,
    ) -> Decision {
        if !self.modules.has_hooks(point, kind) {
            return Decision::Go(None);
        }
        let mut routed = Routed::new(point, kind, from, to, stanza);
        match self.modules.run_hooks(&mut routed).await {
            Verdict::Continue => Decision::Go(routed.into_changed()),
            decided => Decision::Stop(decided),
        }
    }

    /// Act on a stopping verdict for a stanza `sender` sent: a rejection is answered with its
    /// error (never for an error), anything else ends silently.
    pub(crate) fn stopped(&self, sender: &SessionHandle, stanza: &Stanza, verdict: &Verdict) {
        if let Verdict::Reject(rejection) = verdict {
            self.reject(sender, stanza, rejection);
        }
    }

    /// Send `rejection` back to the sender of `stanza` (never in answer to an error).
    pub(crate) fn reject(&self, sender: &SessionHandle, stanza: &Stanza, rejection: &Rejection) {
        if let Some(reply) = rejection.reply_to(stanza) {
            self.deliver(sender, reply, None);
        }
    }

    /// The module that answers iq `iq_type` with `stanza`'s payload at `to`, if any.
    pub(crate) fn has_iq_handler(
        &self,
        form: AddressForm,
        iq_type: IqType,
        stanza: &Stanza,
    ) -> bool {
        stanza.element().children().next().is_some_and(|payload| {
            self.modules
                .iq_handler(form, iq_type, &payload.ns())
                .is_some()
        })
    }

    /// Answer an iq get or set at `to` through the module registered for its payload, or with
    /// `service-unavailable` when none is (RFC 6120 §8.3.3.19).
    pub(crate) async fn answer_iq(
        &self,
        sender: &SessionHandle,
        stanza: &Stanza,
        iq_type: IqType,
        to: IqTarget<'_>,
    ) {
        let Some(payload) = stanza.element().children().next() else {
            self.bounce(sender, stanza, StanzaErrorCondition::BadRequest);
            return;
        };
        let Some(handler) = self.modules.iq_handler(to.form(), iq_type, &payload.ns()) else {
            self.bounce(sender, stanza, StanzaErrorCondition::ServiceUnavailable);
            return;
        };
        let request = IqRequest {
            from: sender.full_jid(),
            to,
            iq_type,
            payload,
            stanza,
        };
        match handler.handle(request).await {
            Ok(answer) => {
                let mut reply = stanza.iq_result();
                if let Some(answer) = answer {
                    reply.append_child(answer);
                }
                self.deliver(sender, reply, None);
            }
            Err(rejection) => self.reject(sender, stanza, &rejection),
        }
    }

    /// Hand a first-level element other than a stanza, which `session` sent, to the module
    /// that accepts its namespace (XEP-0352's `<active/>`, say).
    pub async fn stream_element(&self, session: &SessionHandle, element: &Element) {
        self.modules.stream_element(session, element).await;
    }

    /// Tell the modules that `session` went through `event`.
    pub async fn session_event(&self, event: SessionEvent, session: &SessionHandle) {
        self.modules.session_event(event, session).await;
    }
}

fn queued(ok: bool) -> Delivered {
    if ok {
        Delivered::Queued
    } else {
        Delivered::Failed
    }
}
