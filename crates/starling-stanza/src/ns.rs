//! The XML namespaces of XMPP that Starling speaks, in one place (RFC 6120, RFC 6121 and the
//! XEPs the server implements). Every crate that may depend on `starling-stanza` names a
//! namespace through these constants; they are re-exported at the crate root.
//!
//! Namespaces that belong to one file format rather than to the protocol (XEP-0227's
//! `urn:xmpp:pie:0`, say) stay with the crate that reads that format.

/// The content namespace of client-to-server streams (RFC 6120 §4.8.3).
pub const NS_CLIENT: &str = "jabber:client";
/// The namespace of the stream element and its prefix-bound children (RFC 6120 §4.8.1); the
/// same string `starling-xml` checks stream headers against.
pub const NS_STREAMS: &str = starling_xml::STREAM_NS;
/// Stream error conditions (RFC 6120 §4.9.3).
pub const NS_STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// Stanza error conditions (RFC 6120 §8.3.3).
pub const NS_STANZA_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// STARTTLS negotiation (RFC 6120 §5).
pub const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// SASL negotiation (RFC 6120 §6).
pub const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// SASL channel-binding type capability (XEP-0440).
pub const NS_SASL_CB: &str = "urn:xmpp:sasl-cb:0";
/// Resource binding (RFC 6120 §7.1).
pub const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
/// The legacy session establishment request (RFC 3921 §3, RFC 6121 Appendix E).
pub const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
/// Rosters (RFC 6121 §2).
pub const NS_ROSTER: &str = "jabber:iq:roster";
/// The stream feature advertising roster versioning (RFC 6121 §2.6.1).
pub const NS_ROSTER_VERSIONING: &str = "urn:xmpp:features:rosterver";
/// The stream feature advertising subscription pre-approval (RFC 6121 §3.4.1).
pub const NS_PRE_APPROVAL: &str = "urn:xmpp:features:pre-approval";
/// Service discovery, information (XEP-0030).
pub const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
/// Service discovery, items (XEP-0030).
pub const NS_DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
/// XMPP Ping (XEP-0199).
pub const NS_PING: &str = "urn:xmpp:ping";
/// Software version (XEP-0092).
pub const NS_VERSION: &str = "jabber:iq:version";
/// Entity time (XEP-0202).
pub const NS_TIME: &str = "urn:xmpp:time";
/// Last activity (XEP-0012).
pub const NS_LAST: &str = "jabber:iq:last";
/// Private XML storage (XEP-0049).
pub const NS_PRIVATE: &str = "jabber:iq:private";
/// vcard-temp (XEP-0054).
pub const NS_VCARD: &str = "vcard-temp";
/// Entity capabilities (XEP-0115).
pub const NS_CAPS: &str = "http://jabber.org/protocol/caps";
/// Data forms (XEP-0004), as extended disco#info carries them (XEP-0128).
pub const NS_DATA: &str = "jabber:x:data";
/// Delayed delivery (XEP-0203).
pub const NS_DELAY: &str = "urn:xmpp:delay";
/// Stream management (XEP-0198 v1.6).
pub const NS_SM: &str = "urn:xmpp:sm:3";
/// Message archive management (XEP-0313).
pub const NS_MAM: &str = "urn:xmpp:mam:2";
/// Stanza forwarding (XEP-0297), the wrapper of carbons and archive results.
pub const NS_FORWARD: &str = "urn:xmpp:forward:0";
/// Message carbons (XEP-0280): `<enable/>`, `<disable/>`, `<private/>`, and the `<sent/>` and
/// `<received/>` wrappers.
pub const NS_CARBONS: &str = "urn:xmpp:carbons:2";
/// Message processing hints (XEP-0334): `<no-copy/>`, `<no-store/>`, `<store/>`, ....
pub const NS_HINTS: &str = "urn:xmpp:hints";
/// Chat state notifications (XEP-0085).
pub const NS_CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
/// Message delivery receipts (XEP-0184).
pub const NS_RECEIPTS: &str = "urn:xmpp:receipts";
/// Chat markers (XEP-0333).
pub const NS_CHAT_MARKERS: &str = "urn:xmpp:chat-markers:0";
/// Jingle message initiation (XEP-0353), both namespaces in use.
pub const NS_JINGLE_MESSAGE: [&str; 2] = ["urn:xmpp:jingle-message:0", "urn:xmpp:jingle-message:1"];
/// Multi-user chat, the occupant extension (XEP-0045 §17.2), found in private messages and
/// mediated invitations.
pub const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";
/// Direct MUC invitations (XEP-0249).
pub const NS_CONFERENCE: &str = "jabber:x:conference";
/// Client state indication (XEP-0352): the stream feature and `<active/>`/`<inactive/>`.
pub const NS_CSI: &str = "urn:xmpp:csi:0";
/// Unique and stable stanza ids (XEP-0359): `<stanza-id/>`, `<origin-id/>`.
pub const NS_SID: &str = "urn:xmpp:sid:0";
