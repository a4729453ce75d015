//! What is archived and how a message carries its archive id: the pure rules, decided from
//! the stanza alone.

use minidom::Element;
use starling_stanza::NS_CLIENT;

/// XEP-0359 unique and stable stanza ids (0.7).
pub const NS_SID: &str = "urn:xmpp:sid:0";
/// XEP-0334 message processing hints (0.3).
pub const NS_HINTS: &str = "urn:xmpp:hints";
/// XEP-0380 explicit message encryption (0.4).
pub const NS_EME: &str = "urn:xmpp:eme:0";

/// Whether a message belongs in a user archive (XEP-0313 §7.1.1, with Prosody's and ejabberd's
/// reading of it):
///
/// - only types `chat` and `normal` (or no type): `groupchat` is the room's archive's business,
///   `headline` is ephemeral by definition, and an `error` is not conversation;
/// - XEP-0334 `<no-store/>` and `<no-permanent-store/>` keep it out, whatever else it holds
///   (they win over `<store/>`);
/// - XEP-0334 `<store/>` puts it in, body or not;
/// - otherwise it must hold content: a `<body/>`, or an XEP-0380 `<encryption/>` marker (whose
///   payload the server cannot read). Chat states, receipts and markers alone are not archived.
pub fn is_archivable(message: &Element) -> bool {
    match message.attr("type") {
        None | Some("chat" | "normal") => {}
        // RFC 6121 §5.2.2: an unknown type is handled as `normal`.
        Some("groupchat" | "headline" | "error") => return false,
        Some(_) => {}
    }
    let mut store_hint = false;
    let mut content = false;
    for child in message.children() {
        match (child.ns().as_str(), child.name()) {
            (NS_HINTS, "no-store" | "no-permanent-store") => return false,
            (NS_HINTS, "store") => store_hint = true,
            (NS_CLIENT, "body") | (NS_EME, "encryption") => content = true,
            _ => {}
        }
    }
    store_hint || content
}

/// Whether `message` has a `<stanza-id/>` whose `by` is accepted by `is_ours`: XEP-0359 §4
/// rule 2 says the entity that assigns ids under a `by` must remove any it did not make.
pub fn has_stanza_id_by(message: &Element, is_ours: impl Fn(&str) -> bool) -> bool {
    message
        .children()
        .any(|child| child.is("stanza-id", NS_SID) && child.attr("by").is_some_and(&is_ours))
}

/// Remove every direct `<stanza-id/>` child whose `by` `is_ours` accepts (XEP-0359 §4 rule 2);
/// other `urn:xmpp:sid:0` elements, `<origin-id/>` above all, stay (rule 3).
pub fn strip_stanza_ids_by(message: &mut Element, is_ours: impl Fn(&str) -> bool) {
    if !has_stanza_id_by(message, &is_ours) {
        return;
    }
    // minidom removes children by name only; take every node and put back the others, in
    // order, text nodes included.
    for node in message.take_nodes() {
        let is_ours_id = node.as_element().is_some_and(|child| {
            child.is("stanza-id", NS_SID) && child.attr("by").is_some_and(&is_ours)
        });
        if !is_ours_id {
            message.append_node(node);
        }
    }
}

/// `<stanza-id xmlns='urn:xmpp:sid:0' by='{by}' id='{id}'/>`.
pub fn stanza_id(by: &str, id: &str) -> Element {
    Element::builder("stanza-id", NS_SID)
        .attr(minidom::rxml::xml_ncname!("by").to_owned(), by)
        .attr(minidom::rxml::xml_ncname!("id").to_owned(), id)
        .build()
}

/// The `id` of the sender's XEP-0359 `<origin-id/>`, if it gave one.
pub fn origin_id(message: &Element) -> Option<String> {
    message
        .get_child("origin-id", NS_SID)
        .and_then(|origin| origin.attr("id"))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        xml.parse().expect("test XML parses")
    }

    fn archivable(xml: &str) -> bool {
        is_archivable(&el(xml))
    }

    #[test]
    fn chat_and_normal_with_a_body_are_archived() {
        assert!(archivable(
            "<message xmlns='jabber:client' type='chat'><body>hi</body></message>"
        ));
        assert!(archivable(
            "<message xmlns='jabber:client'><body>hi</body></message>"
        ));
        assert!(archivable(
            "<message xmlns='jabber:client' type='normal'><body/></message>"
        ));
        assert!(archivable(
            "<message xmlns='jabber:client' type='bogus'><body>x</body></message>"
        ));
        assert!(archivable(
            "<message xmlns='jabber:client' type='chat'><encryption xmlns='urn:xmpp:eme:0' namespace='urn:xmpp:omemo:2'/></message>"
        ));
    }

    #[test]
    fn other_types_and_bodiless_state_are_not() {
        for kind in ["groupchat", "headline", "error"] {
            assert!(!archivable(&format!(
                "<message xmlns='jabber:client' type='{kind}'><body>x</body></message>"
            )));
        }
        assert!(!archivable(
            "<message xmlns='jabber:client' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>"
        ));
        assert!(!archivable(
            "<message xmlns='jabber:client' type='chat'><received xmlns='urn:xmpp:receipts' id='a'/></message>"
        ));
        // A body in another namespace is not the message's body.
        assert!(!archivable(
            "<message xmlns='jabber:client'><body xmlns='urn:example'>x</body></message>"
        ));
    }

    #[test]
    fn hints_decide_first() {
        assert!(!archivable(
            "<message xmlns='jabber:client' type='chat'><body>x</body><no-store xmlns='urn:xmpp:hints'/></message>"
        ));
        assert!(!archivable(
            "<message xmlns='jabber:client' type='chat'><body>x</body><no-permanent-store xmlns='urn:xmpp:hints'/></message>"
        ));
        assert!(archivable(
            "<message xmlns='jabber:client' type='chat'><store xmlns='urn:xmpp:hints'/></message>"
        ));
        assert!(!archivable(
            "<message xmlns='jabber:client' type='chat'><store xmlns='urn:xmpp:hints'/><no-store xmlns='urn:xmpp:hints'/></message>"
        ));
        assert!(!archivable(
            "<message xmlns='jabber:client' type='groupchat'><store xmlns='urn:xmpp:hints'/></message>"
        ));
    }

    #[test]
    fn only_our_stanza_ids_are_stripped_and_origin_id_stays() {
        let mut message = el("<message xmlns='jabber:client' to='bob@localhost'>\
             <body>x</body>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='spoofed'/>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='room@muc.example.net' id='theirs'/>\
             <origin-id xmlns='urn:xmpp:sid:0' id='o1'/>\
             </message>");
        let ours = |by: &str| by == "bob@localhost";
        assert!(has_stanza_id_by(&message, ours));
        strip_stanza_ids_by(&mut message, ours);
        assert!(!has_stanza_id_by(&message, ours));
        let kept: Vec<(&str, Option<&str>)> = message
            .children()
            .map(|child| (child.name(), child.attr("id")))
            .collect();
        assert_eq!(
            kept,
            vec![
                ("body", None),
                ("stanza-id", Some("theirs")),
                ("origin-id", Some("o1"))
            ]
        );
        assert_eq!(message.attr("to"), Some("bob@localhost"));
        assert_eq!(origin_id(&message).as_deref(), Some("o1"));
    }

    #[test]
    fn a_stanza_id_names_its_archive() {
        assert_eq!(
            stanza_id("juliet@capulet.example", "0190-ab"),
            el("<stanza-id xmlns='urn:xmpp:sid:0' by='juliet@capulet.example' id='0190-ab'/>")
        );
    }
}
