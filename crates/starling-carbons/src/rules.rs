//! Which messages are copied (XEP-0280 §6.1, v1.0.1), the wrappers copies travel in (§7, §8),
//! and the removal of wrappers the server did not make (§11). Pure functions of the stanza.

use jid::BareJid;
use minidom::Element;
use starling_modules::Direction;
use starling_stanza::{
    NS_CARBONS, NS_CHAT_MARKERS, NS_CHATSTATES, NS_CLIENT, NS_CONFERENCE, NS_FORWARD, NS_HINTS,
    NS_JINGLE_MESSAGE, NS_MUC_USER, NS_RECEIPTS, set_attr,
};

/// Namespaces of payloads used in instant messaging (§6.1: XEP-0184 receipts, XEP-0085 chat
/// states, XEP-0333 markers; and, as Prosody does, XEP-0353 call invitations, so a call rings
/// on the other devices too). A message carrying one is copied whatever its type.
const IM_PAYLOADS: [&str; 5] = [
    NS_RECEIPTS,
    NS_CHATSTATES,
    NS_CHAT_MARKERS,
    NS_JINGLE_MESSAGE[0],
    NS_JINGLE_MESSAGE[1],
];

/// Whether `message`, going `direction` for a local account, is copied to the account's
/// other resources: XEP-0280 §6.1's recommended rules.
///
/// - never with `<private xmlns='urn:xmpp:carbons:2'/>` (§9) or XEP-0334 `<no-copy/>`, and
///   never a message that is itself a carbon (it carries `<sent/>` or `<received/>`);
/// - never `groupchat`, nor a private message from a MUC occupant (received from a full JID
///   with `<x xmlns='http://jabber.org/protocol/muc#user'/>` and no invitation): the room
///   already sends it to every joined client;
/// - `chat`, `normal` with a `<body/>`, anything with an IM payload (above), XEP-0249 direct
///   and XEP-0045 mediated invitations;
/// - `error` when it answers a message that was eligible. Without tracking what was sent, that
///   is read from the error itself: it quotes an IM message (a `<body/>` or an IM payload,
///   which RFC 6120 §8.3.1 lets it include), or a server sent it (its `from` has no resource:
///   the bounce of a message sent to a bare JID), as Prosody approximates it.
///
/// A private message a local user sends to an occupant is `chat` and copied (§6.1).
pub fn is_eligible(direction: Direction, message: &Element) -> bool {
    let has = |name: &str, namespace: &str| message.has_child(name, namespace);
    if has("private", NS_CARBONS) || has("no-copy", NS_HINTS) || is_carbon(message) {
        return false;
    }
    let message_type = message.attr("type").unwrap_or("normal");
    if message_type == "groupchat" {
        return false;
    }
    let invited = has("x", NS_CONFERENCE)
        || message
            .get_child("x", NS_MUC_USER)
            .is_some_and(|x| x.has_child("invite", NS_MUC_USER));
    if invited {
        return true;
    }
    let from_occupant = direction == Direction::Received
        && has("x", NS_MUC_USER)
        && message.attr("from").is_some_and(|from| from.contains('/'));
    if from_occupant {
        return false;
    }
    let has_body = has("body", NS_CLIENT);
    let has_im_payload = message
        .children()
        .any(|child| IM_PAYLOADS.contains(&child.ns().as_str()));
    match message_type {
        "chat" => true,
        "error" => {
            has_body || has_im_payload || message.attr("from").is_some_and(|f| !f.contains('/'))
        }
        // RFC 6121 §5.2.2: an unknown type is handled as `normal`.
        "headline" => has_im_payload,
        _ => has_body || has_im_payload,
    }
}

/// Whether `message` carries a carbons wrapper (`<sent/>` or `<received/>`, §7, §8).
pub fn is_carbon(message: &Element) -> bool {
    message
        .children()
        .any(|child| child.is("sent", NS_CARBONS) || child.is("received", NS_CARBONS))
}

/// Remove every carbons wrapper from `message`. §11: a client must ignore carbons that are not
/// from its own bare JID; the server makes sure none reaches it, so a client that fails to
/// check is not fooled (CVE-2017-5589). Returns whether there was one.
pub fn strip_carbons(message: &mut Element) -> bool {
    let mut stripped = false;
    while message.remove_child("sent", NS_CARBONS).is_some()
        || message.remove_child("received", NS_CARBONS).is_some()
    {
        stripped = true;
    }
    stripped
}

/// The carbon of `message` for `account` (§7, §8), without its `to` (each copy gets the full
/// JID of its resource): from the account's bare JID, of the original's type, holding the
/// original in `<sent/>` or `<received/>` and XEP-0297 `<forwarded/>`. A sent message that
/// named no `to` went to the sender's own account (RFC 6120 §10.3.1), so its copy says so.
pub fn carbon(direction: Direction, account: &BareJid, message: &Element) -> Element {
    let mut original = message.clone();
    if direction == Direction::Sent && original.attr("to").is_none() {
        set_attr(
            &mut original,
            rxml::xml_ncname!("to"),
            Some(account.as_str()),
        );
    }
    let wrapper = match direction {
        Direction::Sent => "sent",
        Direction::Received => "received",
    };
    let mut carbon = Element::builder("message", NS_CLIENT)
        .append(
            Element::builder(wrapper, NS_CARBONS)
                .append(Element::builder("forwarded", NS_FORWARD).append(original)),
        )
        .build();
    set_attr(
        &mut carbon,
        rxml::xml_ncname!("from"),
        Some(account.as_str()),
    );
    set_attr(&mut carbon, rxml::xml_ncname!("type"), message.attr("type"));
    carbon
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eligible(direction: Direction, xml: &str) -> bool {
        let message: Element = format!("<message xmlns='jabber:client' {xml}")
            .parse()
            .unwrap();
        is_eligible(direction, &message)
    }

    fn both(xml: &str) -> [bool; 2] {
        [
            eligible(Direction::Sent, xml),
            eligible(Direction::Received, xml),
        ]
    }

    #[test]
    fn chat_and_normal_with_a_body_are_copied() {
        assert_eq!(both("type='chat'/>"), [true, true]);
        assert_eq!(
            both("type='chat'><x xmlns='urn:example'/></message>"),
            [true, true]
        );
        assert_eq!(
            both("type='normal'><body>hi</body></message>"),
            [true, true]
        );
        assert_eq!(both("><body>hi</body></message>"), [true, true]);
        assert_eq!(both("type='bogus'><body>hi</body></message>"), [true, true]);
        assert_eq!(both("type='normal'/>"), [false, false]);
        assert_eq!(both("><subject>s</subject></message>"), [false, false]);
    }

    #[test]
    fn im_payloads_are_copied_whatever_the_type() {
        for payload in [
            "<received xmlns='urn:xmpp:receipts' id='m1'/>",
            "<request xmlns='urn:xmpp:receipts'/>",
            "<composing xmlns='http://jabber.org/protocol/chatstates'/>",
            "<displayed xmlns='urn:xmpp:chat-markers:0' id='m1'/>",
            "<propose xmlns='urn:xmpp:jingle-message:0' id='c1'/>",
            "<propose xmlns='urn:xmpp:jingle-message:1' id='c1'/>",
        ] {
            for kind in ["", "type='normal'", "type='headline'"] {
                assert_eq!(both(&format!("{kind}>{payload}</message>")), [true, true]);
            }
        }
        assert_eq!(
            both("type='headline'><body>news</body></message>"),
            [false, false]
        );
    }

    #[test]
    fn private_no_copy_and_carbons_are_never_copied() {
        for excluded in [
            "<private xmlns='urn:xmpp:carbons:2'/>",
            "<no-copy xmlns='urn:xmpp:hints'/>",
            "<sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'/></sent>",
            "<received xmlns='urn:xmpp:carbons:2'/>",
        ] {
            let xml = format!("type='chat'><body>hi</body>{excluded}</message>");
            assert_eq!(both(&xml), [false, false], "{excluded}");
        }
        // XEP-0334's storage hints say nothing about copies.
        let xml = "type='chat'><body>hi</body><no-store xmlns='urn:xmpp:hints'/></message>";
        assert_eq!(both(xml), [true, true]);
    }

    #[test]
    fn groupchat_and_occupants_private_messages_are_not_copied() {
        assert_eq!(
            both("type='groupchat'><body>hi</body></message>"),
            [false, false]
        );
        let pm = "from='room@muc.example/nick' type='chat'><body>hi</body>\
            <x xmlns='http://jabber.org/protocol/muc#user'/></message>";
        // Received from an occupant: the room copies it to every joined client itself. Sent
        // to an occupant by a local user: copied (§6.1).
        assert_eq!(both(pm), [true, false]);
        let sent_pm = "from='alice@example/phone' to='room@muc.example/nick' type='chat'>\
            <body>hi</body><x xmlns='http://jabber.org/protocol/muc#user'/></message>";
        assert!(eligible(Direction::Sent, sent_pm));
    }

    #[test]
    fn invitations_are_copied() {
        let mediated = "from='room@muc.example'><x xmlns='http://jabber.org/protocol/muc#user'>\
            <invite from='bob@example/desk'/></x></message>";
        assert_eq!(both(mediated), [true, true]);
        let direct = "from='bob@example/desk'>\
            <x xmlns='jabber:x:conference' jid='room@muc.example'/></message>";
        assert_eq!(both(direct), [true, true]);
        let invite_in_groupchat = "type='groupchat'>\
            <x xmlns='jabber:x:conference' jid='room@muc.example'/></message>";
        assert_eq!(both(invite_in_groupchat), [false, false]);
    }

    #[test]
    fn errors_are_copied_when_they_answer_an_im_message() {
        let quoting = "from='bob@example/desk' type='error'><body>hi</body>\
            <error type='cancel'/></message>";
        assert_eq!(both(quoting), [true, true]);
        let bounce = "from='bob@example' type='error'><error type='cancel'/></message>";
        assert_eq!(both(bounce), [true, true]);
        let bare = "from='bob@example/desk' type='error'><error type='cancel'/></message>";
        assert_eq!(both(bare), [false, false]);
    }

    #[test]
    fn only_carbons_wrappers_are_stripped() {
        let mut message: Element = "<message xmlns='jabber:client' type='chat'>\
            <received xmlns='urn:xmpp:carbons:2'/><body>hi</body>\
            <sent xmlns='urn:xmpp:carbons:2'/><received xmlns='urn:xmpp:receipts'/>\
            <sent xmlns='urn:xmpp:carbons:2'/></message>"
            .parse()
            .unwrap();
        assert!(is_carbon(&message));
        assert!(strip_carbons(&mut message));
        assert!(!is_carbon(&message));
        let left: Vec<String> = message
            .children()
            .map(|child| format!("{}:{}", child.ns(), child.name()))
            .collect();
        assert_eq!(left, ["jabber:client:body", "urn:xmpp:receipts:received"]);
        assert!(!strip_carbons(&mut message));
    }

    /// The message inside `carbon`'s `<sent/>` or `<received/>` and `<forwarded/>`.
    fn forwarded_in<'a>(carbon: &'a Element, wrapper: &str) -> &'a Element {
        carbon
            .get_child(wrapper, NS_CARBONS)
            .and_then(|wrapped| wrapped.get_child("forwarded", NS_FORWARD))
            .and_then(|forwarded| forwarded.get_child("message", NS_CLIENT))
            .unwrap()
    }

    #[test]
    fn carbons_wrap_the_original_from_the_bare_jid_with_its_type() {
        let account = BareJid::new("alice@example").unwrap();
        let message: Element = "<message xmlns='jabber:client' from='bob@example/desk' \
            to='alice@example' type='chat' id='m1'><body>hi</body></message>"
            .parse()
            .unwrap();
        let carbon = carbon(Direction::Received, &account, &message);
        assert_eq!(carbon.attr("from"), Some("alice@example"));
        assert_eq!(carbon.attr("type"), Some("chat"));
        assert_eq!(carbon.attr("to"), None);
        assert_eq!(forwarded_in(&carbon, "received"), &message);
    }

    #[test]
    fn a_sent_carbon_names_the_own_account_when_the_original_named_nobody() {
        let account = BareJid::new("alice@example").unwrap();
        let message: Element = "<message xmlns='jabber:client' from='alice@example/phone'>\
            <body>note to self</body></message>"
            .parse()
            .unwrap();
        let carbon = carbon(Direction::Sent, &account, &message);
        assert_eq!(carbon.attr("type"), None);
        let original = forwarded_in(&carbon, "sent");
        assert_eq!(original.attr("to"), Some("alice@example"));
        assert_eq!(original.attr("from"), Some("alice@example/phone"));
    }
}
