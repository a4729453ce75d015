//! What an inactive client gets at once, later, or never (XEP-0352 §3.2 leaves the choice to
//! the server). Pure functions of the stanza.

use minidom::Element;
use starling_stanza::{
    NS_CARBONS, NS_CHATSTATES, NS_CLIENT, NS_DELAY, NS_FORWARD, NS_HINTS, NS_SID, StanzaKind,
};

/// What becomes of a stanza for an inactive client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Treatment {
    /// Delivered now, after everything held (so it never overtakes what came before it).
    Important,
    /// A presence update: held until the client is active or something important comes;
    /// a newer one from the same sender replaces it.
    LatestPresence,
    /// Held in order until the client is active or something important comes.
    Defer,
    /// Never delivered: its only content is out of date by the time anyone would look.
    Drop,
}

/// Children that say nothing on their own: a chat state with only these is still only a chat
/// state (thread ids, XEP-0334 hints, XEP-0359 ids, XEP-0203 stamps).
const INCIDENTAL: [(&str, Option<&str>); 4] = [
    (NS_CLIENT, Some("thread")),
    (NS_HINTS, None),
    (NS_SID, None),
    (NS_DELAY, None),
];

/// How a stanza of `kind` is treated while its recipient is inactive:
///
/// - **presence** updates (available, or `unavailable`) are held, the latest per sender
///   (§3.2's first example); subscription requests and answers, probes and errors need the
///   user or say something went wrong, and are important;
/// - **messages** with only XEP-0085 chat states (and incidental children: a thread, hints,
///   stanza ids, a delay stamp) are dropped (§3.2's second example), carbons of them too;
///   `headline` messages (PEP notifications among them, "ephemeral by definition" as Prosody's
///   mod_csi_simple puts it) are deferred; every other message is important: a body, a subject,
///   an encrypted payload, a receipt or chat marker (the ticks a user reads), an invitation, a
///   call, an error, anything not recognised. A carbon is judged by the message it carries;
/// - **iq** stanzas are important: someone waits for the answer.
pub fn treatment(kind: StanzaKind, stanza: &Element) -> Treatment {
    match kind {
        StanzaKind::Iq => Treatment::Important,
        StanzaKind::Presence => match stanza.attr("type") {
            None | Some("unavailable") => Treatment::LatestPresence,
            Some(_) => Treatment::Important,
        },
        StanzaKind::Message => message_treatment(stanza),
    }
}

fn message_treatment(message: &Element) -> Treatment {
    if message.attr("type") == Some("error") {
        return Treatment::Important;
    }
    let message = carried(message).unwrap_or(message);
    if is_only_chat_state(message) {
        return Treatment::Drop;
    }
    if message.attr("type") == Some("headline") {
        Treatment::Defer
    } else {
        Treatment::Important
    }
}

/// The message a carbon (XEP-0280 `<sent/>` or `<received/>`) carries.
fn carried(message: &Element) -> Option<&Element> {
    let wrapper = message
        .children()
        .find(|child| child.is("sent", NS_CARBONS) || child.is("received", NS_CARBONS))?;
    wrapper
        .get_child("forwarded", NS_FORWARD)?
        .get_child("message", NS_CLIENT)
}

/// A message whose content is a chat state and nothing else of substance.
fn is_only_chat_state(message: &Element) -> bool {
    let mut has_chat_state = false;
    for child in message.children() {
        if child.has_ns(NS_CHATSTATES) {
            has_chat_state = true;
            continue;
        }
        let incidental = INCIDENTAL.iter().any(|(namespace, name)| {
            child.has_ns(*namespace) && name.is_none_or(|name| child.name() == name)
        });
        if !incidental {
            return false;
        }
    }
    has_chat_state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(kind: StanzaKind, xml: &str) -> Treatment {
        treatment(kind, &xml.parse::<Element>().unwrap())
    }

    fn message(inner: &str) -> Treatment {
        of(
            StanzaKind::Message,
            &format!("<message xmlns='jabber:client' {inner}"),
        )
    }

    #[test]
    fn presence_updates_are_held_and_the_rest_is_important() {
        let presence = |attrs: &str| {
            of(
                StanzaKind::Presence,
                &format!("<presence xmlns='jabber:client' {attrs}/>"),
            )
        };
        assert_eq!(presence(""), Treatment::LatestPresence);
        assert_eq!(presence("type='unavailable'"), Treatment::LatestPresence);
        for other in [
            "subscribe",
            "subscribed",
            "unsubscribe",
            "unsubscribed",
            "error",
        ] {
            assert_eq!(presence(&format!("type='{other}'")), Treatment::Important);
        }
        let iq = "<iq xmlns='jabber:client' type='get' id='1'/>";
        assert_eq!(of(StanzaKind::Iq, iq), Treatment::Important);
    }

    #[test]
    fn chat_states_alone_are_dropped_whatever_comes_along_incidentally() {
        let chat_state = "<composing xmlns='http://jabber.org/protocol/chatstates'/>";
        for extra in [
            "",
            "<thread>t1</thread>",
            "<no-store xmlns='urn:xmpp:hints'/>",
            "<origin-id xmlns='urn:xmpp:sid:0' id='o1'/>",
            "<delay xmlns='urn:xmpp:delay' stamp='2002-09-10T23:08:25Z'/>",
        ] {
            for kind in ["type='chat'", "", "type='groupchat'"] {
                let xml = format!("{kind}>{chat_state}{extra}</message>");
                assert_eq!(message(&xml), Treatment::Drop, "{xml}");
            }
        }
    }

    #[test]
    fn messages_with_substance_are_important() {
        let chat_state = "<active xmlns='http://jabber.org/protocol/chatstates'/>";
        for content in [
            "<body>hi</body>",
            "<subject>topic</subject>",
            "<encrypted xmlns='eu.siacs.conversations.axolotl'/>",
            "<received xmlns='urn:xmpp:receipts' id='m1'/>",
            "<displayed xmlns='urn:xmpp:chat-markers:0' id='m1'/>",
            "<x xmlns='jabber:x:conference' jid='room@muc.example'/>",
            "<propose xmlns='urn:xmpp:jingle-message:0' id='c1'/>",
            "<unknown xmlns='urn:example'/>",
            // A <thread/> outside jabber:client is not the incidental one.
            "<thread xmlns='urn:example'/>",
        ] {
            let xml = format!("type='chat'>{chat_state}{content}</message>");
            assert_eq!(message(&xml), Treatment::Important, "{xml}");
        }
        assert_eq!(message("type='chat'/>"), Treatment::Important);
        let error = format!("type='error'>{chat_state}<error type='cancel'/></message>");
        assert_eq!(message(&error), Treatment::Important);
    }

    #[test]
    fn headlines_wait() {
        let event = "type='headline'><event xmlns='http://jabber.org/protocol/pubsub#event'/>\
            </message>";
        assert_eq!(message(event), Treatment::Defer);
        assert_eq!(
            message("type='headline'><body>news</body></message>"),
            Treatment::Defer
        );
    }

    #[test]
    fn carbons_are_judged_by_the_message_they_carry() {
        let carbon = |wrapper: &str, inner: &str| {
            message(&format!(
                "from='alice@example' type='chat'><{wrapper} xmlns='urn:xmpp:carbons:2'>\
                 <forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' \
                 type='chat'>{inner}</message></forwarded></{wrapper}></message>"
            ))
        };
        let typing = "<composing xmlns='http://jabber.org/protocol/chatstates'/>";
        for wrapper in ["sent", "received"] {
            assert_eq!(carbon(wrapper, typing), Treatment::Drop);
            assert_eq!(carbon(wrapper, "<body>hi</body>"), Treatment::Important);
        }
    }
}
