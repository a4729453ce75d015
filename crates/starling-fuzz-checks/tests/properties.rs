//! Property tests (proptest) for the parsers: JID display/parse round trip, element → bytes →
//! element through `starling_xml`, every split of a stream giving the same events, and XEP-0082
//! DateTime format → parse round trips.

use jid::Jid;
use minidom::Element;
use minidom::rxml::{Namespace, NcName};
use proptest::prelude::*;
use starling_fuzz_checks::{element_round_trip, stream_parser};
use starling_stanza::datetime::{self, UtcTime};
use starling_xml::write_element;

const CASES: u32 = 256;

/// Characters for text and attribute values: every kind the writer must escape, plus
/// multi-byte UTF-8, all valid in XML 1.0.
const XML_TEXT: &str = "[a-zA-Z0-9 \t\r\n<>&'\"=/;:#\u{e9}\u{20ac}\u{1f600}\u{10000}]{1,12}";

fn name() -> impl Strategy<Value = String> {
    // Names starting with "xml" are reserved (XML 1.0 §2.3); `xmlns` would be a declaration.
    "[a-wyz_][a-z0-9_.-]{0,8}"
}

fn namespace() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "jabber:client",
        "urn:example:payload",
        "http://etherx.jabber.org/streams",
        "urn:ietf:params:xml:ns:xmpp-stanzas",
    ])
}

/// An attribute: no namespace, `xml:lang`, or a namespace the writer has to declare.
fn attribute() -> impl Strategy<Value = (Namespace<'static>, String, String)> {
    let ns = prop::sample::select(vec![
        Namespace::NONE,
        Namespace::XML,
        Namespace::from("urn:example:attr"),
    ]);
    (ns, name(), XML_TEXT).prop_map(|(ns, name, value)| {
        let name = if ns == Namespace::XML {
            "lang".to_owned()
        } else {
            name
        };
        (ns, name, value)
    })
}

#[derive(Clone, Debug)]
enum Child {
    Text(String),
    Element(Element),
}

fn element() -> impl Strategy<Value = Element> {
    let leaf = bare_element(Vec::new());
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop::collection::vec(
            prop_oneof![
                XML_TEXT.prop_map(Child::Text),
                inner.prop_map(Child::Element),
            ],
            0..4,
        )
        .prop_flat_map(bare_element)
    })
}

fn bare_element(children: Vec<Child>) -> impl Strategy<Value = Element> {
    (
        name(),
        namespace(),
        prop::collection::vec(attribute(), 0..4),
    )
        .prop_map(move |(name, ns, attributes): (String, &str, _)| {
            build(&name, ns, attributes, &children)
        })
}

fn build(
    name: &str,
    ns: &str,
    attributes: Vec<(Namespace<'static>, String, String)>,
    children: &[Child],
) -> Element {
    let mut element = Element::bare(name, ns);
    for (ns, name, value) in attributes {
        let name = NcName::try_from(name).expect("the strategy makes valid names");
        element.set_attr(ns, name, value);
    }
    for child in children {
        match child {
            // Adjacent text merges, as it does when parsed.
            Child::Text(text) => element.append_text(text.clone()),
            Child::Element(child) => {
                element.append_child(child.clone());
            }
        }
    }
    element
}

fn jid_text() -> impl Strategy<Value = String> {
    let localpart = "[a-z0-9._\u{e9}\u{f1}\u{f8}-]{1,12}";
    let domain = "[a-z0-9]{1,8}(\\.[a-z0-9]{1,8}){0,2}";
    let resource = "[a-zA-Z0-9 ._@/\u{e9}\u{c9}-]{1,16}";
    (
        prop::option::of(localpart),
        domain,
        prop::option::of(resource),
    )
        .prop_map(|(localpart, domain, resource)| {
            let mut text = String::new();
            if let Some(localpart) = localpart {
                text.push_str(&localpart);
                text.push('@');
            }
            text.push_str(&domain);
            if let Some(resource) = resource {
                text.push('/');
                text.push_str(&resource);
            }
            text
        })
}

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Already-normalised JIDs parse, display as themselves, and parse again to the same JID.
    #[test]
    fn jid_display_parse_round_trip(text in jid_text()) {
        let jid = Jid::new(&text).map_err(|error| TestCaseError::fail(format!("{text:?}: {error}")))?;
        prop_assert_eq!(jid.to_string(), text.clone());
        starling_fuzz_checks::jid(text.as_bytes());
    }

    /// `write_element` then `StreamParser` gives back an equal element.
    #[test]
    fn element_write_parse_round_trip(element in element()) {
        element_round_trip(&element);
    }

    /// A stream of generated elements and keepalives, cut into chunks of any sizes, gives the
    /// same events as the whole stream (and every element survives the writer).
    #[test]
    fn every_split_gives_the_same_events(
        elements in prop::collection::vec(element(), 0..4),
        sizes in prop::collection::vec(any::<u8>(), 0..16),
        is_small in any::<bool>(),
        is_closed in any::<bool>(),
    ) {
        let mut body = HEADER.as_bytes().to_vec();
        for element in &elements {
            body.extend_from_slice(&write_element(element));
            body.extend_from_slice(b" \n");
        }
        if is_closed {
            body.extend_from_slice(b"</stream:stream>");
        }
        let settings = u8::try_from(sizes.len()).expect("under 16") | if is_small { 0x80 } else { 0 };
        let mut input = vec![settings];
        input.extend_from_slice(&sizes);
        input.extend_from_slice(&body);
        stream_parser(&input);
    }

    /// Milliseconds written as a XEP-0082 DateTime read back as the same instant, and whole
    /// seconds too.
    #[test]
    fn datetime_format_parse_round_trip(unix_ms in 0..=LAST_FOUR_DIGIT_YEAR_MS) {
        prop_assert_eq!(datetime::parse_ms(&datetime::format_ms(unix_ms)), Ok(unix_ms));
        let seconds = unix_ms / 1000;
        prop_assert_eq!(
            datetime::parse_ms(&datetime::format_seconds(seconds)),
            Ok(seconds * 1000)
        );
    }

    /// The same instant written as local time with a UTC offset (and any number of fraction
    /// digits) reads back as that instant.
    #[test]
    fn datetime_offsets_are_applied(
        unix_seconds in OFFSET_MARGIN_SECONDS..=LAST_FOUR_DIGIT_YEAR_MS / 1000 - OFFSET_MARGIN_SECONDS,
        offset_minutes in -(23 * 60 + 59)..=(23 * 60 + 59_i64),
        millis in 0..1000_u64,
        extra_digits in "[0-9]{0,4}",
    ) {
        let local = UtcTime::from_unix_seconds(
            i64::try_from(unix_seconds).expect("small") + offset_minutes * 60,
        );
        let sign = if offset_minutes < 0 { '-' } else { '+' };
        let offset = offset_minutes.abs();
        let text = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{millis:03}{extra_digits}{sign}{:02}:{:02}",
            local.year, local.month, local.day, local.hour, local.minute, local.second,
            offset / 60, offset % 60,
        );
        prop_assert_eq!(datetime::parse_ms(&text), Ok(unix_seconds * 1000 + millis), "{}", text);
    }
}

/// 9999-12-31T23:59:59.999Z, the last instant XEP-0082's four-digit year can write.
const LAST_FOUR_DIGIT_YEAR_MS: u64 = 253_402_300_799_999;
/// A day, so that local time at any offset stays within 1970..=9999.
const OFFSET_MARGIN_SECONDS: u64 = 86_400;
