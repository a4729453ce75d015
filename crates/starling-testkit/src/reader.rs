//! Incremental reader for one XML stream (RFC 6120 §4), built on rxml and minidom only.
//!
//! The kit parses what the server sends with its own reader, not `starling-xml`, so a bug in
//! the server's XML layer cannot hide itself from the tests. Bytes go in with [`StreamReader::feed`];
//! [`StreamReader::next_event`] yields the stream header, each top-level child of the stream as a
//! whole [`Element`], the closing `</stream:stream>` and end of input. Parsing is lazy: bytes that
//! follow a complete event stay buffered until asked for, so a stream restart can see them.

use minidom::Element;
use rxml::{Event, Parse};

/// The namespace of the stream wrapper and of stream errors' `<stream:error/>` element.
pub const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
/// The content namespace for client-to-server streams.
pub const NS_CLIENT: &str = "jabber:client";

/// One thing that happened on the stream.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    /// The peer's `<stream:stream>` opening tag; the element carries its attributes and no children.
    Header(Element),
    /// A complete top-level child of the stream (a stanza, `<stream:features/>`, `<stream:error/>`...).
    Element(Element),
    /// The peer's `</stream:stream>`.
    StreamEnd,
    /// The byte stream ended (TCP FIN or TLS close).
    Eof,
}

/// Sans-IO parser state for one stream; reset it on every stream restart.
#[derive(Debug, Default)]
pub struct StreamReader {
    /// rxml's namespace-aware push parser.
    parser: rxml::Parser,
    /// Bytes received but not yet consumed by the parser.
    pending: Vec<u8>,
    /// Whether the byte stream has ended; no more bytes will be fed.
    is_at_eof: bool,
    /// Elements under construction: `stack[0]` is the current top-level child.
    stack: Vec<Element>,
    /// Whether the stream header has been seen (depth 0 is then the stream itself).
    has_header: bool,
    /// Whether `</stream:stream>` has been seen.
    has_ended: bool,
    /// Bytes consumed since the last complete event, to tell a clean EOF from a cut-off one.
    since_boundary: Vec<u8>,
}

impl StreamReader {
    /// A reader expecting a fresh stream header.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes received from the peer.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// Records that the peer closed the byte stream.
    pub fn feed_eof(&mut self) {
        self.is_at_eof = true;
    }

    /// Bytes received but not yet parsed.
    pub fn unparsed(&self) -> &[u8] {
        &self.pending
    }

    /// Whether the peer's `</stream:stream>` has been parsed.
    pub fn has_ended(&self) -> bool {
        self.has_ended
    }

    /// Parses as far as the next complete event. `Ok(None)` means more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<StreamEvent>, String> {
        loop {
            if self.has_ended {
                // Anything after `</stream:stream>` is not part of the stream: only EOF may follow.
                if !self.pending.iter().all(u8::is_ascii_whitespace) {
                    return Err(format!(
                        "data after </stream:stream>: {:?}",
                        String::from_utf8_lossy(&self.pending)
                    ));
                }
                self.pending.clear();
                return Ok(self.is_at_eof.then_some(StreamEvent::Eof));
            }
            let mut input: &[u8] = &self.pending;
            // The parser never sees end of input: a stream legitimately ends mid-document when
            // the TCP connection closes, so EOF is judged here, by what came since the last
            // complete event.
            let result = self.parser.parse(&mut input, false);
            let consumed = self.pending.len() - input.len();
            self.since_boundary
                .extend_from_slice(&self.pending[..consumed]);
            self.pending.drain(..consumed);
            let event = match result {
                Ok(Some(event)) => event,
                Ok(None) => return Ok(Some(StreamEvent::Eof)),
                Err(rxml::error::EndOrError::NeedMoreData) => {
                    if !self.is_at_eof {
                        return Ok(None);
                    }
                    if self.since_boundary.iter().all(u8::is_ascii_whitespace) {
                        return Ok(Some(StreamEvent::Eof));
                    }
                    return Err(format!(
                        "connection closed in the middle of {:?}",
                        String::from_utf8_lossy(&self.since_boundary)
                    ));
                }
                Err(rxml::error::EndOrError::Error(error)) => {
                    return Err(format!("peer sent malformed XML: {error}"));
                }
            };
            if let Some(event) = self.handle(event)? {
                return Ok(Some(event));
            }
        }
    }

    fn handle(&mut self, event: Event) -> Result<Option<StreamEvent>, String> {
        match event {
            Event::XmlDeclaration(..) => Ok(None),
            Event::StartElement(_, (ns, name), attrs) => {
                let mut element = Element::builder(name.as_str(), ns.as_str()).build();
                *element.attrs_mut() = attrs;
                if !self.has_header {
                    if !element.is("stream", NS_STREAMS) {
                        return Err(format!(
                            "expected a stream header, got <{}/> in namespace {:?}",
                            element.name(),
                            element.ns()
                        ));
                    }
                    self.has_header = true;
                    self.since_boundary.clear();
                    return Ok(Some(StreamEvent::Header(element)));
                }
                self.stack.push(element);
                Ok(None)
            }
            Event::EndElement(_) => match self.stack.pop() {
                None => {
                    self.has_ended = true;
                    self.since_boundary.clear();
                    Ok(Some(StreamEvent::StreamEnd))
                }
                Some(element) => match self.stack.last_mut() {
                    Some(parent) => {
                        parent.append_child(element);
                        Ok(None)
                    }
                    None => {
                        self.since_boundary.clear();
                        Ok(Some(StreamEvent::Element(element)))
                    }
                },
            },
            Event::Text(_, text) => {
                if self.stack.is_empty() {
                    self.since_boundary.clear();
                }
                // Whitespace between top-level elements is a keepalive (RFC 6120 §4.6.1), not content.
                if let Some(parent) = self.stack.last_mut() {
                    parent.append_text(text.as_str());
                }
                Ok(None)
            }
        }
    }
}

/// Parses one element written as it would appear inside a client stream: the default namespace
/// is `jabber:client` and the `stream` prefix is bound to the streams namespace.
pub fn parse_stream_child(xml: &str) -> Result<Element, String> {
    let mut reader = StreamReader::new();
    reader.feed(
        format!(
            "<stream:stream xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAMS}'>{xml}</stream:stream>"
        )
        .as_bytes(),
    );
    reader.feed_eof();
    let mut elements = Vec::new();
    loop {
        match reader.next_event()? {
            Some(StreamEvent::Element(element)) => elements.push(element),
            Some(StreamEvent::Header(_) | StreamEvent::StreamEnd) => {}
            Some(StreamEvent::Eof) | None => break,
        }
    }
    match <[Element; 1]>::try_from(elements) {
        Ok([element]) => Ok(element),
        Err(elements) => Err(format!(
            "expected exactly one element in {xml:?}, found {}",
            elements.len()
        )),
    }
}

/// Serializes an element for messages, falling back to its name if it cannot be written.
pub fn to_xml(element: &Element) -> String {
    let mut out = Vec::new();
    match element.write_to(&mut out) {
        Ok(()) => String::from_utf8_lossy(&out).into_owned(),
        Err(_) => format!("<{} xmlns='{}'/>", element.name(), element.ns()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='localhost' version='1.0'>";

    /// Feeds `chunks` one at a time and describes every event in order.
    fn events(chunks: &[&[u8]], at_eof: bool) -> Vec<String> {
        let mut reader = StreamReader::new();
        let mut out = Vec::new();
        let drain = |reader: &mut StreamReader, out: &mut Vec<String>| {
            loop {
                match reader.next_event() {
                    Ok(Some(StreamEvent::Header(h))) => {
                        out.push(format!("header id={}", h.attr("id").unwrap_or("-")))
                    }
                    Ok(Some(StreamEvent::Element(e))) => {
                        out.push(format!("element {}", to_xml(&e)))
                    }
                    Ok(Some(StreamEvent::StreamEnd)) => out.push("end".to_owned()),
                    Ok(Some(StreamEvent::Eof)) => {
                        out.push("eof".to_owned());
                        return;
                    }
                    Ok(None) => return,
                    Err(e) => {
                        out.push(format!("error {e}"));
                        return;
                    }
                }
            }
        };
        for chunk in chunks {
            reader.feed(chunk);
            drain(&mut reader, &mut out);
        }
        if at_eof {
            reader.feed_eof();
            drain(&mut reader, &mut out);
        }
        out
    }

    fn whole_stream() -> String {
        format!(
            "{HEADER}<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features> \
             <iq type='result' id='p1'/></stream:stream>"
        )
    }

    #[test]
    fn header_elements_end_and_eof_in_order() {
        let stream = whole_stream();
        assert_eq!(
            events(&[stream.as_bytes()], true),
            [
                "header id=s1",
                "element <features xmlns='http://etherx.jabber.org/streams'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></features>",
                "element <iq xmlns='jabber:client' id='p1' type='result'/>",
                "end",
                "eof",
            ]
        );
    }

    #[test]
    fn every_split_of_the_stream_yields_the_same_events() {
        let stream = whole_stream();
        let bytes = stream.as_bytes();
        let expected = events(&[bytes], true);
        for cut in 1..bytes.len() {
            assert_eq!(
                events(&[&bytes[..cut], &bytes[cut..]], true),
                expected,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn eof_without_stream_end_is_reported() {
        let stream = format!("{HEADER}<iq type='result' id='p1'/>");
        assert_eq!(
            events(&[stream.as_bytes()], true),
            [
                "header id=s1",
                "element <iq xmlns='jabber:client' id='p1' type='result'/>",
                "eof"
            ]
        );
    }

    #[test]
    fn eof_before_anything_is_eof() {
        assert_eq!(events(&[], true), ["eof"]);
    }

    #[test]
    fn element_without_header_is_an_error() {
        assert_eq!(
            events(
                &[b"<stream:error xmlns:stream='http://etherx.jabber.org/streams'>"],
                false
            ),
            [
                "error expected a stream header, got <error/> in namespace \"http://etherx.jabber.org/streams\""
            ]
        );
    }

    #[test]
    fn restart_sees_bytes_after_the_last_event() {
        let stream = format!("{HEADER}<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>{HEADER}");
        let mut reader = StreamReader::new();
        reader.feed(stream.as_bytes());
        assert!(matches!(
            reader.next_event(),
            Ok(Some(StreamEvent::Header(_)))
        ));
        assert!(matches!(
            reader.next_event(),
            Ok(Some(StreamEvent::Element(_)))
        ));
        assert_eq!(reader.unparsed(), HEADER.as_bytes());
    }

    #[test]
    fn parse_stream_child_uses_client_defaults() {
        let element = parse_stream_child(
            "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
        )
        .expect("valid");
        assert!(element.is("error", NS_STREAMS));
        let message = parse_stream_child("<message to='a@b'/>").expect("valid");
        assert!(message.is("message", NS_CLIENT));
        assert_eq!(
            parse_stream_child("<a/><b/>"),
            Err("expected exactly one element in \"<a/><b/>\", found 2".to_owned())
        );
    }
}
