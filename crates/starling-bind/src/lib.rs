//! Resource binding, RFC 6120 §7.
//!
//! This crate decides *what* a newly bound session's resource is; it never decides whether
//! that resource is free. Binding has two halves with different needs:
//!
//! * Parsing the client's `<bind/>` request and applying resourceprep is pure and belongs
//!   here ([`parse_bind_request`], [`choose_resource`]).
//! * Checking the resource against live sessions and settling a conflict (RFC 6120 §7.7.2.2)
//!   needs the session registry, so `starling-registry` does it atomically with the insert.
//!   [`BindError::Conflict`] and [`BindError::ResourceConstraint`] exist here so that every
//!   bind failure maps to its RFC condition in one place ([`BindError::condition`]).
//!
//! The crate does no I/O and never reads the clock: a server-generated resource is made
//! from a UUIDv7 that the caller generated, so a test (or a replayed session) can pass a
//! fixed one.
//!
//! ```
//! use jid::BareJid;
//! use starling_bind::{bind_result_payload, choose_resource, parse_bind_request};
//!
//! let request: minidom::Element =
//!     "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>balcony</resource></bind>"
//!         .parse()
//!         .unwrap();
//! let requested = parse_bind_request(&request).unwrap();
//! let generated = uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
//! let resource = choose_resource(requested.as_deref(), generated).unwrap();
//!
//! let user = BareJid::new("juliet@im.example.com").unwrap();
//! let full = user.with_resource(&resource);
//! assert_eq!(
//!     String::from(&bind_result_payload(&full)),
//!     "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
//!      <jid>juliet@im.example.com/balcony</jid></bind>",
//! );
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use jid::{FullJid, ResourcePart};
use minidom::Element;
use starling_stanza::{NS_BIND, NS_SESSION, StanzaErrorCondition};

/// Why a bind request was refused. Each variant is exactly one RFC 6120 stanza error
/// condition; see [`BindError::condition`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    /// The request is malformed or the resourcepart fails resourceprep (RFC 6120 §7.7.2.1).
    /// The text says which, for logs and the optional `<text/>` of the error.
    #[error("bad bind request: {0}")]
    BadRequest(String),
    /// The resource is in use and the conflict policy refuses the new session
    /// (RFC 6120 §7.7.2.2). Raised by the session registry, not by this crate.
    #[error("resource is already bound by another session")]
    Conflict,
    /// The client may not bind a resource at all (RFC 6120 §7.6.2.2).
    #[error("client is not allowed to bind a resource")]
    NotAllowed,
    /// The account has reached its limit of connected resources (RFC 6120 §7.6.2.1).
    #[error("account has reached its limit of connected resources")]
    ResourceConstraint,
}

impl BindError {
    /// The RFC 6120 stanza error condition the client is answered with; the one mapping of
    /// a bind failure, wherever it was decided (here or in the session registry).
    pub fn condition(&self) -> StanzaErrorCondition {
        match self {
            BindError::BadRequest(_) => StanzaErrorCondition::BadRequest, // §7.7.2.1
            BindError::Conflict => StanzaErrorCondition::Conflict,        // §7.7.2.2
            BindError::NotAllowed => StanzaErrorCondition::NotAllowed,    // §7.6.2.2
            BindError::ResourceConstraint => StanzaErrorCondition::ResourceConstraint, // §7.6.2.1
        }
    }
}

/// Parses the `<bind/>` payload of an iq set (RFC 6120 §7.5, §7.6).
///
/// Returns `Ok(None)` when the client sent no `<resource/>` and wants the server to generate
/// one (§7.6), and `Ok(Some(text))` with the raw, unprepared text of `<resource/>` (§7.7)
/// otherwise; an empty `<resource/>` yields `Some("")`, which [`choose_resource`] refuses.
///
/// The payload must be `<bind/>` in [`NS_BIND`] with at most one `<resource/>` child that
/// holds only text. Any other child in [`NS_BIND`] is a [`BindError::BadRequest`]; children
/// in foreign namespaces are ignored, as extension content is elsewhere in XMPP.
pub fn parse_bind_request(bind: &Element) -> Result<Option<String>, BindError> {
    if !bind.is("bind", NS_BIND) {
        return Err(BindError::BadRequest(format!(
            "expected <bind xmlns='{NS_BIND}'/>, got <{}/> in namespace '{}'",
            bind.name(),
            bind.ns()
        )));
    }
    let mut resource: Option<&Element> = None;
    for child in bind.children().filter(|child| child.has_ns(NS_BIND)) {
        if child.name() != "resource" {
            return Err(BindError::BadRequest(format!(
                "unexpected <{}/> in <bind/>",
                child.name()
            )));
        }
        if resource.replace(child).is_some() {
            return Err(BindError::BadRequest(
                "more than one <resource/> in <bind/>".to_owned(),
            ));
        }
    }
    match resource {
        None => Ok(None),
        Some(resource) if resource.children().next().is_some() => Err(BindError::BadRequest(
            "<resource/> must contain only text".to_owned(),
        )),
        Some(resource) => Ok(Some(resource.text())),
    }
}

/// Decides the resourcepart of a new session (RFC 6120 §7.6, §7.7).
///
/// A requested resource goes through resourceprep (the jid crate applies RFC 3920's
/// Resourceprep profile: NFKC normalisation, case preserved); if the result is empty, is
/// longer than 1023 bytes or contains a prohibited character the request is a
/// [`BindError::BadRequest`] (§7.7.2.1). With no request, the resource is `generated`
/// written as a hyphenated lower-case UUID; pass `Uuid::now_v7()` so generated resources
/// sort by time (STYLE.md §3).
pub fn choose_resource(
    requested: Option<&str>,
    generated: uuid::Uuid,
) -> Result<ResourcePart, BindError> {
    match requested {
        Some(requested) => ResourcePart::new(requested)
            .map(|prepped| prepped.into_owned())
            .map_err(|err| BindError::BadRequest(resourceprep_failure(&err))),
        None => {
            let text = generated.hyphenated().to_string();
            // A hyphenated UUID is 36 ASCII hex digits and hyphens, all of which
            // resourceprep leaves unchanged and allows, so this cannot fail.
            #[allow(clippy::expect_used)]
            let resource = ResourcePart::new(&text)
                .expect("a hyphenated UUID is a valid resourcepart")
                .into_owned();
            Ok(resource)
        }
    }
}

/// The payload of the result iq for a successful bind: `<bind><jid>full</jid></bind>`
/// (RFC 6120 §7.6.1 step 3, §7.7.1).
pub fn bind_result_payload(full: &FullJid) -> Element {
    Element::builder("bind", NS_BIND)
        .append(
            Element::builder("jid", NS_BIND)
                .append(full.to_string())
                .build(),
        )
        .build()
}

/// The `<bind/>` stream feature offered after SASL (RFC 6120 §7.4).
pub fn bind_feature() -> Element {
    Element::bare("bind", NS_BIND)
}

/// The legacy `<session><optional/></session>` stream feature.
///
/// RFC 6121 Appendix E removed session establishment but lets servers keep advertising it
/// for old clients, marked `<optional/>` so that newer clients skip the round trip.
pub fn session_feature() -> Element {
    Element::builder("session", NS_SESSION)
        .append(Element::bare("optional", NS_SESSION))
        .build()
}

/// Whether an iq set payload is the legacy session establishment request (RFC 3921 §3),
/// which a server answers with an empty result (RFC 6121 Appendix E).
pub fn is_session_request(payload: &Element) -> bool {
    payload.is("session", NS_SESSION)
}

/// The `BadRequest` text for a resourcepart the jid crate refused.
fn resourceprep_failure(err: &jid::Error) -> String {
    match err {
        jid::Error::ResourceEmpty => "resource is empty after resourceprep".to_owned(),
        jid::Error::ResourceTooLong => "resource exceeds 1023 bytes after resourceprep".to_owned(),
        jid::Error::ResourcePrep => {
            "resource contains a character resourceprep prohibits".to_owned()
        }
        other => format!("invalid resource: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{Expect, expect};

    /// A fixed UUIDv7 (version nibble 7, variant bits 10).
    const GENERATED: uuid::Uuid = uuid::Uuid::from_u128(0x0190_9e4f_2c3a_7b12_8d45_0123_4567_89ab);

    fn element(xml: &str) -> Element {
        xml.parse().expect("test input is well-formed XML")
    }

    fn check_parse(xml: &str, expected: Result<Option<&str>, BindError>) {
        let parsed = parse_bind_request(&element(xml));
        assert_eq!(
            parsed,
            expected.map(|r| r.map(str::to_owned)),
            "input: {xml}"
        );
    }

    fn check_choose(requested: &str, expected: Result<&str, BindError>) {
        let chosen = choose_resource(Some(requested), GENERATED);
        assert_eq!(
            chosen.as_ref().map(|r| r.as_str()),
            expected.as_ref().map(|r| *r),
            "requested: {requested:?}"
        );
    }

    fn check_xml(element: &Element, expect: Expect) {
        expect.assert_eq(&String::from(element));
    }

    fn bad(text: &str) -> BindError {
        BindError::BadRequest(text.to_owned())
    }

    #[test]
    fn parse_without_resource_asks_server_to_generate() {
        check_parse("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>", Ok(None));
    }

    #[test]
    fn parse_returns_raw_resource_text() {
        check_parse(
            "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource> Balcony </resource></bind>",
            Ok(Some(" Balcony ")),
        );
    }

    #[test]
    fn parse_empty_resource_is_some_empty() {
        check_parse(
            "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource/></bind>",
            Ok(Some("")),
        );
    }

    #[test]
    fn parse_ignores_foreign_namespace_children() {
        check_parse(
            "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><x xmlns='urn:example'/>\
             <resource>phone</resource></bind>",
            Ok(Some("phone")),
        );
    }

    #[test]
    fn parse_rejects_wrong_element_or_namespace() {
        check_parse(
            "<bind xmlns='urn:example'/>",
            Err(bad(
                "expected <bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>, got <bind/> in namespace 'urn:example'",
            )),
        );
        check_parse(
            "<session xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>",
            Err(bad(
                "expected <bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>, got <session/> in namespace 'urn:ietf:params:xml:ns:xmpp-bind'",
            )),
        );
    }

    #[test]
    fn parse_rejects_two_resources() {
        check_parse(
            "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>a</resource>\
             <resource>b</resource></bind>",
            Err(bad("more than one <resource/> in <bind/>")),
        );
    }

    #[test]
    fn parse_rejects_unknown_bind_child() {
        check_parse(
            "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>a@b/c</jid></bind>",
            Err(bad("unexpected <jid/> in <bind/>")),
        );
    }

    #[test]
    fn parse_rejects_markup_inside_resource() {
        check_parse(
            "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>a<b/>c</resource></bind>",
            Err(bad("<resource/> must contain only text")),
        );
    }

    #[test]
    fn choose_keeps_valid_resource() {
        check_choose("balcony", Ok("balcony"));
        check_choose("Juliet's phone", Ok("Juliet's phone"));
    }

    #[test]
    fn choose_preserves_case() {
        check_choose("Balcony", Ok("Balcony"));
    }

    #[test]
    fn choose_applies_nfkc() {
        // Fullwidth letters (U+FF42 ...) fold to ASCII under NFKC.
        check_choose(
            "\u{ff42}\u{ff41}\u{ff4c}\u{ff43}\u{ff4f}\u{ff4e}\u{ff59}",
            Ok("balcony"),
        );
        // The ligature U+FB01 decomposes to "fi".
        check_choose("\u{fb01}le", Ok("file"));
    }

    #[test]
    fn choose_rejects_empty() {
        check_choose("", Err(bad("resource is empty after resourceprep")));
    }

    #[test]
    fn choose_rejects_resource_that_preps_to_empty() {
        // U+00AD SOFT HYPHEN is mapped to nothing (RFC 3454 table B.1).
        check_choose("\u{ad}", Err(bad("resource is empty after resourceprep")));
    }

    #[test]
    fn choose_accepts_exactly_1023_bytes() {
        let longest = "r".repeat(1023);
        check_choose(&longest, Ok(&longest));
    }

    #[test]
    fn choose_rejects_over_1023_bytes() {
        check_choose(
            &"r".repeat(1024),
            Err(bad("resource exceeds 1023 bytes after resourceprep")),
        );
        // The limit is in bytes, not characters: "€" is 3 bytes of UTF-8, so 341 fit and 342 do not.
        let euros = "\u{20ac}".repeat(341);
        check_choose(&euros, Ok(&euros));
        check_choose(
            &"\u{20ac}".repeat(342),
            Err(bad("resource exceeds 1023 bytes after resourceprep")),
        );
    }

    #[test]
    fn choose_rejects_control_characters() {
        let prohibited = bad("resource contains a character resourceprep prohibits");
        check_choose("a\u{7}b", Err(prohibited.clone()));
        check_choose("tab\there", Err(prohibited.clone()));
        check_choose("line\nbreak", Err(prohibited.clone()));
        check_choose("del\u{7f}", Err(prohibited));
    }

    #[test]
    fn choose_generates_hyphenated_uuid() {
        let resource = choose_resource(None, GENERATED).expect("generated resource is valid");
        assert_eq!(resource.as_str(), "01909e4f-2c3a-7b12-8d45-0123456789ab");
    }

    #[test]
    fn conditions_follow_rfc_6120() {
        assert_eq!(bad("x").condition().name(), "bad-request");
        assert_eq!(BindError::Conflict.condition().name(), "conflict");
        assert_eq!(BindError::NotAllowed.condition().name(), "not-allowed");
        assert_eq!(
            BindError::ResourceConstraint.condition().name(),
            "resource-constraint"
        );
    }

    #[test]
    fn result_payload_carries_full_jid() {
        let full = FullJid::new("juliet@im.example.com/balcony").expect("valid full JID");
        check_xml(
            &bind_result_payload(&full),
            expect![
                "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>juliet@im.example.com/balcony</jid></bind>"
            ],
        );
    }

    #[test]
    fn result_payload_escapes_resource() {
        let full = FullJid::new("juliet@im.example.com/a<b&c").expect("valid full JID");
        check_xml(
            &bind_result_payload(&full),
            expect![
                "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>juliet@im.example.com/a&lt;b&amp;c</jid></bind>"
            ],
        );
    }

    #[test]
    fn bind_feature_is_empty_bind() {
        check_xml(
            &bind_feature(),
            expect!["<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"],
        );
    }

    #[test]
    fn session_feature_is_optional() {
        check_xml(
            &session_feature(),
            expect!["<session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>"],
        );
    }

    #[test]
    fn session_request_detection() {
        assert!(is_session_request(&element(
            "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/>"
        )));
        assert!(!is_session_request(&element(
            "<session xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
        )));
        assert!(!is_session_request(&element(
            "<bind xmlns='urn:ietf:params:xml:ns:xmpp-session'/>"
        )));
    }
}
