//! XEP-0198 §5 (and RFC 6121 §8.5 for what follows): what becomes of the stanzas a session
//! never got to its client when it ends for good. The connection could not deliver them (they
//! were still queued), or delivered them without the client acknowledging them (stream
//! management's unacknowledged queue). Messages worth keeping go to the account's other
//! resources, or are stored offline, with a XEP-0203 stamp; unanswered requests get an error;
//! everything else (presence, chat states alone, copies of messages other resources have) was
//! only of use to that connection.

use std::borrow::Cow;

use jid::{BareJid, Jid};
use minidom::Element;
use starling_modules::RoutingPoint;
use starling_registry::SessionHandle;
use starling_stanza::{
    IqType, NS_CARBONS, NS_CHATSTATES, NS_CLIENT, NS_DELAY, NS_MAM, OutboundStanza, Stanza,
    StanzaErrorCondition, StanzaKind,
};

use crate::modules::{Decision, Delivered, Fanout};
use crate::router::{Router, Store, unix_ms};

/// What one left-over stanza calls for.
#[derive(Debug, PartialEq)]
enum Leftover {
    /// A message for the account: deliver it elsewhere or keep it offline.
    Redeliver(Element),
    /// A request nobody will answer: the requester gets this error.
    Answer(Element),
    /// Nothing: it was of use to the lost connection only.
    Drop,
}

impl<S: Store> Router<S> {
    /// `handle`'s session ended for good (after [`Router::session_ended`]'s presence and
    /// events) with `leftovers`, oldest first, that its client never got or never
    /// acknowledged.
    pub async fn session_ended_with(&self, handle: &SessionHandle, leftovers: Vec<OutboundStanza>) {
        self.session_ended(handle).await;
        if leftovers.is_empty() {
            return;
        }
        let owner = handle.bare_jid();
        let now = unix_ms();
        let (mut redelivered, mut answered) = (0usize, 0usize);
        for stanza in leftovers {
            // Presence is never kept, so it is not even parsed (a client that stopped
            // reading may leave many large ones).
            if !matches!(stanza.kind(), Some(StanzaKind::Message | StanzaKind::Iq)) {
                continue;
            }
            match classify(stanza.bytes(), &owner, now) {
                Leftover::Redeliver(message) => {
                    redelivered += 1;
                    self.redeliver(&owner, message).await;
                }
                Leftover::Answer(reply) => {
                    answered += 1;
                    self.answer_for_lost(reply);
                }
                Leftover::Drop => {}
            }
        }
        tracing::debug!(jid = %handle.full_jid(), redelivered, answered, "undelivered stanzas of an ended session handled");
    }

    /// A message the ended session did not deliver: to the account's remaining resources as
    /// for a message to the bare JID (RFC 6121 §8.5.2.1.1), else offline. It already passed
    /// the `ToBare` hooks on its first way in (archived, checked against blocking), so only
    /// `ToFull` and `DeliveryFailed` run again.
    async fn redeliver(&self, owner: &BareJid, message: Element) {
        let from: Jid = message
            .attr("from")
            .and_then(|from| starling_stanza::parse_jid(from).ok())
            .unwrap_or_else(|| Jid::from(owner.clone()));
        let fanout = Fanout::new(StanzaKind::Message, &from, Cow::Borrowed(&message));
        let mut delivered = false;
        for target in self.registry.highest_priority_available(owner) {
            if matches!(
                self.deliver_to(&target, &fanout).await,
                Delivered::Queued | Delivered::Handled
            ) {
                delivered = true;
            }
        }
        if delivered {
            return;
        }
        let to = Jid::from(owner.clone());
        if let Decision::Stop(_) = self
            .at_point(
                RoutingPoint::DeliveryFailed,
                StanzaKind::Message,
                &from,
                &to,
                &message,
            )
            .await
        {
            return;
        }
        let Ok(stanza) = Stanza::try_from(message) else {
            return;
        };
        if !self.store_offline(owner, &stanza).await {
            tracing::warn!(%owner, "a message the ended session did not deliver could not be stored offline");
        }
    }

    /// Queue an error for the local requester of an iq the lost connection never answered.
    fn answer_for_lost(&self, reply: Element) {
        let Some(Ok(Ok(requester))) = reply
            .attr("to")
            .map(|to| starling_stanza::parse_jid(to).map(Jid::try_into_full))
        else {
            return;
        };
        if let Some(target) = self.registry.resource(&requester) {
            self.deliver(&target, reply, None);
        }
    }
}

/// Decides what becomes of one left-over stanza of `owner`'s ended session, `now` in Unix
/// milliseconds.
fn classify(bytes: &[u8], owner: &BareJid, now: u64) -> Leftover {
    let Some(element) = std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.parse::<Element>().ok())
    else {
        return Leftover::Drop;
    };
    if element.ns() != NS_CLIENT {
        return Leftover::Drop;
    }
    match element.name() {
        "message" => classify_message(element, owner, now),
        "iq" => classify_iq(element),
        _ => Leftover::Drop,
    }
}

fn classify_message(mut message: Element, owner: &BareJid, now: u64) -> Leftover {
    // Errors, group chat and headlines are not kept for later (RFC 6121 §8.5.2.1.2, §8.5.3.2.1).
    if !matches!(message.attr("type"), None | Some("chat" | "normal")) {
        return Leftover::Drop;
    }
    let mut children = message.children().peekable();
    if children.peek().is_none() {
        return Leftover::Drop;
    }
    let copy_or_answer = message
        .children()
        .any(|child| child.ns() == NS_CARBONS || child.is("result", NS_MAM));
    let only_chat_states = message.children().all(|child| child.ns() == NS_CHATSTATES);
    if copy_or_answer || only_chat_states {
        // A carbon copy (the other resources have their own), an archive query's answer (for
        // that query only) or a typing notification (stale by now).
        return Leftover::Drop;
    }
    let owner_text = owner.to_string();
    starling_stanza::set_attr(
        &mut message,
        rxml::xml_ncname!("to"),
        Some(owner_text.as_str()),
    );
    if !message.children().any(|child| child.is("delay", NS_DELAY)) {
        message.append_child(starling_stanza::delay(owner.domain().as_str(), now));
    }
    Leftover::Redeliver(message)
}

fn classify_iq(iq: Element) -> Leftover {
    let Ok(stanza) = Stanza::try_from(iq) else {
        return Leftover::Drop;
    };
    match stanza.iq() {
        // RFC 6121 §8.5.3.2.2: a request to a resource that is gone.
        Ok((IqType::Get | IqType::Set, _)) => stanza
            .error_reply(StanzaErrorCondition::ServiceUnavailable)
            .map_or(Leftover::Drop, Leftover::Answer),
        _ => Leftover::Drop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> BareJid {
        "alice@localhost".parse().unwrap()
    }

    fn run(xml: &str) -> Leftover {
        let element: Element = xml.parse().unwrap();
        classify(
            OutboundStanza::new(&element).bytes(),
            &owner(),
            1_764_097_236_123,
        )
    }

    #[test]
    fn a_chat_message_is_readdressed_to_the_account_and_stamped() {
        let Leftover::Redeliver(message) = run(
            "<message xmlns='jabber:client' type='chat' from='bob@localhost/pc' \
             to='alice@localhost/phone' id='m1'><body>hi</body></message>",
        ) else {
            panic!("kept");
        };
        assert_eq!(message.attr("to"), Some("alice@localhost"));
        assert_eq!(message.attr("from"), Some("bob@localhost/pc"));
        let delay = message.get_child("delay", NS_DELAY).unwrap();
        assert_eq!(delay.attr("from"), Some("localhost"));
        assert_eq!(delay.attr("stamp"), Some("2025-11-25T19:00:36.123Z"));
    }

    #[test]
    fn an_earlier_delay_stamp_is_kept() {
        let Leftover::Redeliver(message) = run(
            "<message xmlns='jabber:client' from='bob@localhost/pc'><body>hi</body>\
             <delay xmlns='urn:xmpp:delay' from='localhost' stamp='2020-01-01T00:00:00Z'/></message>",
        ) else {
            panic!("kept");
        };
        let delays: Vec<_> = message
            .children()
            .filter(|c| c.is("delay", NS_DELAY))
            .collect();
        assert_eq!(delays.len(), 1);
        assert_eq!(delays[0].attr("stamp"), Some("2020-01-01T00:00:00Z"));
    }

    #[test]
    fn copies_answers_states_presence_and_other_types_are_dropped() {
        for xml in [
            "<message xmlns='jabber:client' type='chat'><received xmlns='urn:xmpp:carbons:2'/></message>",
            "<message xmlns='jabber:client'><result xmlns='urn:xmpp:mam:2' id='x'/></message>",
            "<message xmlns='jabber:client' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
            "<message xmlns='jabber:client' type='chat'/>",
            "<message xmlns='jabber:client' type='headline'><body>news</body></message>",
            "<message xmlns='jabber:client' type='groupchat'><body>room</body></message>",
            "<message xmlns='jabber:client' type='error'><body>e</body></message>",
            "<presence xmlns='jabber:client' from='bob@localhost/pc'/>",
            "<iq xmlns='jabber:client' type='result' id='r1' from='bob@localhost/pc'/>",
        ] {
            assert_eq!(run(xml), Leftover::Drop, "{xml}");
        }
    }

    #[test]
    fn a_request_is_answered_with_service_unavailable() {
        let Leftover::Answer(reply) = run(
            "<iq xmlns='jabber:client' type='get' id='q1' from='bob@localhost/pc' \
             to='alice@localhost/phone'><query xmlns='jabber:iq:version'/></iq>",
        ) else {
            panic!("answered");
        };
        assert_eq!(reply.attr("type"), Some("error"));
        assert_eq!(reply.attr("to"), Some("bob@localhost/pc"));
        assert_eq!(reply.attr("id"), Some("q1"));
    }
}
