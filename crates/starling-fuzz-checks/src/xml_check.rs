//! `starling_xml::StreamParser`: chunking never changes the events, elements survive the writer.

use minidom::Element;
use starling_xml::{Limits, STREAM_NS, StreamCondition, StreamEvent, StreamParser, write_element};

use crate::{Unstructured, chunks};

/// Small limits, so that limit errors meet chunk boundaries often.
const SMALL_LIMITS: Limits = Limits {
    max_stanza_bytes: 300,
    max_depth: 4,
    max_attributes_per_element: 3,
    max_elements_per_stanza: 8,
    max_name_bytes: 12,
    max_attribute_value_bytes: 40,
    max_header_bytes: 200,
};

/// Limits nothing in a round trip comes near.
const HUGE_LIMITS: Limits = Limits {
    max_stanza_bytes: 1 << 30,
    max_depth: u16::MAX,
    max_attributes_per_element: u16::MAX,
    max_elements_per_stanza: u32::MAX,
    max_name_bytes: 1 << 20,
    max_attribute_value_bytes: 1 << 20,
    max_header_bytes: 1 << 20,
};

/// What a parser made of all its input: events in order, then the stream error that ended it.
///
/// Only the error's condition counts: rxml's message text for the same bad byte depends on
/// the token it was in the middle of, which depends on where a chunk ended.
#[derive(Debug, PartialEq)]
struct Outcome {
    events: Vec<StreamEvent>,
    error: Option<(StreamCondition, String)>,
}

impl Outcome {
    fn condition(&self) -> Option<StreamCondition> {
        self.error.as_ref().map(|(condition, _)| *condition)
    }
}

/// Input: a settings byte (bit 7: small limits; bits 0–3: how many chunk-size bytes follow),
/// the chunk sizes, then the stream bytes.
///
/// The stream is parsed once fed whole and once fed in chunks; both must give the same events
/// (runs of whitespace merged; whitespace ignored when a side ends in an error) and, when both
/// end in an error, the same stream error condition. As the engine does, the parser is
/// restarted after `<starttls/>` and switched to authenticated limits after `<success/>`.
/// The chunked parser is also asked to go dormant ([`StreamParser::make_dormant`]) between
/// chunks, as an idle connection's is, which must not change anything either.
/// Every element it yields must come back unchanged through [`element_round_trip`].
pub fn stream_parser(data: &[u8]) {
    let mut input = Unstructured::new(data);
    let settings = input.byte();
    let limits = if settings & 0x80 != 0 {
        SMALL_LIMITS
    } else {
        Limits::unauthenticated()
    };
    let sizes = input.bytes(usize::from(settings & 0x0f));
    let body = input.rest();

    let whole = parse(limits, std::iter::once(body), false);
    let chunked = parse(limits, chunks(sizes, body), true);
    let context = || {
        format!(
            "fed whole: {whole:?}\nin chunks of {sizes:?}: {chunked:?}\ninput: {:?}",
            String::from_utf8_lossy(body)
        )
    };
    // Input ends without EOF, so a partial token may hide an error on one side only (rxml
    // reports text before the root element only once the text token ends). When both
    // sides found an error, it must be the same one.
    if whole.error.is_some() && chunked.error.is_some() {
        assert_eq!(whole.condition(), chunked.condition(), "{}", context());
    }
    if whole.error.is_some() || chunked.error.is_some() {
        // A run of text that turns out to hold a bad character may or may not have been
        // reported as whitespace before the error, depending on where a chunk ended.
        assert_eq!(
            without_whitespace(&whole.events),
            without_whitespace(&chunked.events),
            "{}",
            context()
        );
    } else {
        assert_eq!(whole.events, chunked.events, "{}", context());
    }
    for event in &whole.events {
        if let StreamEvent::Element(element) = event {
            element_round_trip(element);
        }
    }
}

/// `write_element` then `StreamParser` gives back an equal element.
pub fn element_round_trip(element: &Element) {
    let mut bytes =
        format!("<stream:stream xmlns='jabber:client' xmlns:stream='{STREAM_NS}'>").into_bytes();
    let written = write_element(element);
    bytes.extend_from_slice(&written);
    let outcome = parse(HUGE_LIMITS, std::iter::once(bytes.as_slice()), false);
    let written = String::from_utf8_lossy(&written);
    assert_eq!(outcome.error, None, "{element:?} written as {written:?}");
    match outcome.events.as_slice() {
        [StreamEvent::Header(_), StreamEvent::Element(parsed)] => assert_eq!(
            parsed, element,
            "written as {written:?}, read back differently (left)"
        ),
        other => panic!("{element:?} written as {written:?} reads back as {other:?}"),
    }
}

fn without_whitespace(events: &[StreamEvent]) -> Vec<&StreamEvent> {
    events
        .iter()
        .filter(|event| !matches!(event, StreamEvent::Whitespace))
        .collect()
}

/// Parses `feeds` in order; with `doze`, the parser is offered dormancy before each feed.
fn parse<'a>(limits: Limits, feeds: impl Iterator<Item = &'a [u8]>, doze: bool) -> Outcome {
    let mut parser = StreamParser::new(limits);
    let mut events = Vec::new();
    for feed in feeds {
        if doze {
            parser.make_dormant();
        }
        parser.feed(feed);
        loop {
            match parser.next_event() {
                Ok(Some(event)) => {
                    if let StreamEvent::Element(element) = &event {
                        if element.name() == "starttls" {
                            parser.restart();
                        } else if element.name() == "success" {
                            parser.set_limits(Limits::authenticated());
                        }
                    }
                    let is_repeated_whitespace = matches!(event, StreamEvent::Whitespace)
                        && matches!(events.last(), Some(StreamEvent::Whitespace));
                    if !is_repeated_whitespace {
                        events.push(event);
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    return Outcome {
                        events,
                        error: Some((error.condition(), error.to_string())),
                    };
                }
            }
        }
    }
    Outcome {
        events,
        error: None,
    }
}
