//! Sans-IO push parser for one XMPP XML stream, RFC 6120 §4 and §11.
//!
//! Bytes go in through [`StreamParser::feed`]; [`StreamParser::next_event`]
//! turns them into a stream header, complete top-level elements, whitespace
//! keepalives and the stream close. Every limit in [`Limits`] is enforced
//! while the bytes are tokenized, before an oversized construct is buffered.

use minidom::Element;
use rxml::error::EndOrError;
use rxml::{Parse, RawEvent, RawParser, WithOptions};

use crate::STREAM_NS;
use crate::error::XmlError;
use crate::limits::Limits;

/// What the peer put on its stream header (RFC 6120 §4.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHeader {
    /// `to` (RFC 6120 §4.7.2), unvalidated.
    pub to: Option<String>,
    /// `from` (RFC 6120 §4.7.1), unvalidated.
    pub from: Option<String>,
    /// `id` (RFC 6120 §4.7.3); a client should not send one.
    pub id: Option<String>,
    /// `version` (RFC 6120 §4.7.5).
    pub version: Option<String>,
    /// `xml:lang` (RFC 6120 §4.7.4).
    pub lang: Option<String>,
    /// The default namespace (`xmlns='jabber:client'`) declared on the stream
    /// element itself, if any (RFC 6120 §4.8.2). Read from the raw header
    /// bytes, since the namespace resolver hides declarations.
    pub content_namespace: Option<String>,
}

/// One thing the peer sent.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// The opening `<stream:stream>` tag.
    Header(StreamHeader),
    /// A complete top-level child of the stream (stanza or nonza) with its
    /// resolved namespace, children, attributes and text preserved.
    Element(Element),
    /// Whitespace between top-level elements (RFC 6120 §4.6.1 keepalive). One
    /// event per run of whitespace the tokenizer reports; a run split across
    /// feeds may yield several.
    Whitespace,
    /// The closing `</stream:stream>` tag (RFC 6120 §4.4).
    Close,
}

/// A push parser for the peer's half of one XML stream.
///
/// Input bytes are kept in one buffer from the end of the last event onwards.
/// rxml is handed bytes from `cursor`; bytes between `head` and `cursor` have
/// been tokenized but are not yet part of an event. Keeping them lets
/// [`StreamParser::restart`] replay them into a fresh document and lets
/// [`StreamParser::has_pending_input`] see partial tokens.
#[derive(Debug)]
pub struct StreamParser {
    /// Limits in force for the element being parsed.
    limits: Limits,
    /// Limits set while an element was in progress; applied at its end.
    next_limits: Option<Limits>,
    /// The XML tokenizer and namespace resolver for the current document; `None` while
    /// dormant. Boxed so that a dormant parser does not keep its space either.
    xml: Option<Box<rxml::Parser>>,
    /// Bytes from the peer; everything before `head` is discarded lazily.
    buf: Vec<u8>,
    /// Index in `buf` of the first byte not yet covered by an rxml event.
    head: usize,
    /// Index in `buf` of the first byte not yet handed to rxml.
    cursor: usize,
    /// Index in `buf` of the document's first byte, while in the prolog; the
    /// header bytes are re-read from here to find the default namespace.
    doc_start: usize,
    /// Bytes of the current top-level element covered by events so far.
    element_evented_bytes: usize,
    /// Elements opened so far in the current top-level element, itself included.
    element_count: u32,
    /// The bytes of the current document up to the end of its stream header, kept so that a
    /// dormant parser can rebuild the tokenizer's state (see [`StreamParser::make_dormant`]).
    header_replay: Box<[u8]>,
    /// Where the parser is in the stream document.
    phase: Phase,
    /// Elements opened and not yet closed inside the current top-level
    /// element; its length is the nesting depth.
    open: Vec<Element>,
    /// The first error, returned again by every later call.
    poison: Option<XmlError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the stream header: XML declaration and whitespace allowed.
    Prolog,
    /// Between the header and the close tag.
    Open,
    /// After `</stream:stream>`; nothing more is parsed until a restart.
    Closed,
}

impl StreamParser {
    /// A parser at the start of a stream document.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            next_limits: None,
            xml: Some(Box::new(new_rxml_parser(&limits))),
            buf: Vec::new(),
            head: 0,
            cursor: 0,
            doc_start: 0,
            element_evented_bytes: 0,
            element_count: 0,
            header_replay: Box::default(),
            phase: Phase::Prolog,
            open: Vec::new(),
            poison: None,
        }
    }

    /// Replaces the limits from the next top-level element on (e.g. after
    /// authentication). The tokenizer's token bound follows on the next
    /// [`StreamParser::restart`].
    pub fn set_limits(&mut self, limits: Limits) {
        if self.open.is_empty() {
            self.limits = limits;
            self.next_limits = None;
        } else {
            self.next_limits = Some(limits);
        }
    }

    /// The limits in force now.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Queues bytes from the peer. Cheap; parsing happens in
    /// [`StreamParser::next_event`].
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next event, or `Ok(None)` when more bytes are needed.
    ///
    /// After an error the parser is poisoned and returns the same error from
    /// every later call, including after a restart.
    pub fn next_event(&mut self) -> Result<Option<StreamEvent>, XmlError> {
        if let Some(err) = &self.poison {
            return Err(err.clone());
        }
        match self.parse_next() {
            Ok(Some(event)) => Ok(Some(event)),
            Ok(None) => {
                // Out of input. rxml sizes its token scratch buffer to the longest token
                // allowed (16 KiB by default) whenever it reads a token; between reads it
                // holds only a partial token, so the rest goes back to the allocator here
                // rather than staying with the connection until it goes dormant. A buffer
                // freed as soon as it is used is the same memory for the next connection on
                // this thread, where one kept per connection is a 16 KiB hole in the heap
                // when it is finally freed.
                if let Some(xml) = self.xml.as_deref_mut() {
                    xml.release_temporaries();
                }
                self.free_consumed_input();
                Ok(None)
            }
            Err(err) => {
                self.poison = Some(err.clone());
                Err(err)
            }
        }
    }

    /// True if bytes were received that have not been turned into events,
    /// including bytes the tokenizer holds in a partial token. After
    /// `<starttls/>` this must be false when the server answers `<proceed/>`
    /// (RFC 6120 §5.4.3.3).
    pub fn has_pending_input(&self) -> bool {
        self.buf.len() > self.head
    }

    /// Starts a new stream document (RFC 6120 §4.3.3, after STARTTLS or SASL
    /// success). The old document's state is dropped; bytes not yet turned
    /// into events belong to the new stream and are parsed again.
    ///
    /// Call it right after the event that triggers the restart, before asking
    /// for another event: the old document would read a new `<?xml ...?>`
    /// declaration as a processing instruction and fail.
    pub fn restart(&mut self) {
        if let Some(limits) = self.next_limits.take() {
            self.limits = limits;
        }
        self.xml = Some(Box::new(new_rxml_parser(&self.limits)));
        self.header_replay = Box::default();
        self.cursor = self.head;
        self.doc_start = self.head;
        self.element_evented_bytes = 0;
        self.phase = Phase::Prolog;
        self.open.clear();
    }

    /// Frees the tokenizer's buffers while the stream is between stanzas with nothing pending,
    /// so an idle connection costs little memory. rxml keeps a scratch buffer as large as the
    /// longest token allowed (`max_attribute_value_bytes`) for the life of a document; a
    /// dormant parser drops the tokenizer and keeps only the stream header's bytes, which are
    /// replayed into a new tokenizer when input arrives (a few microseconds). Call it after a
    /// connection has been quiet for a while, not after every read. Returns whether the
    /// parser is now dormant; it does nothing mid-element or with input pending.
    pub fn make_dormant(&mut self) -> bool {
        if self.xml.is_none() {
            return true;
        }
        let quiet = self.phase == Phase::Open
            && self.open.is_empty()
            && self.poison.is_none()
            && self.head == self.buf.len()
            && self.cursor == self.buf.len();
        if !quiet {
            return false;
        }
        self.xml = None;
        self.buf = Vec::new();
        self.head = 0;
        self.cursor = 0;
        self.doc_start = 0;
        self.open = Vec::new();
        true
    }

    /// True while dormant (for tests).
    #[cfg(test)]
    fn xml_is_dropped(&self) -> bool {
        self.xml.is_none()
    }

    /// Capacity of the input buffer (for tests).
    #[cfg(test)]
    fn input_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Rebuilds the tokenizer of a dormant parser by replaying the stream header into it.
    fn wake(&mut self) -> Result<(), XmlError> {
        let mut xml = new_rxml_parser(&self.limits);
        let mut replay: &[u8] = &self.header_replay;
        loop {
            match xml.parse(&mut replay, false) {
                Ok(Some(rxml::Event::StartElement(..))) => break,
                Ok(Some(_)) => {}
                Ok(None) | Err(EndOrError::NeedMoreData) | Err(EndOrError::Error(_)) => {
                    return Err(XmlError::Syntax(
                        "internal: the stream header did not replay".to_owned(),
                    ));
                }
            }
        }
        self.xml = Some(Box::new(xml));
        Ok(())
    }

    fn parse_next(&mut self) -> Result<Option<StreamEvent>, XmlError> {
        if self.xml.is_none() {
            if self.buf.len() == self.cursor {
                return Ok(None);
            }
            self.wake()?;
        }
        self.compact();
        // Set while a whitespace run is being merged into one event.
        let mut in_whitespace = false;
        let nothing_more =
            |in_whitespace: bool| Ok(in_whitespace.then_some(StreamEvent::Whitespace));
        loop {
            if self.phase == Phase::Closed {
                return nothing_more(in_whitespace);
            }
            let budget = self.limit_bytes().saturating_sub(self.item_bytes());
            // One byte past the budget lets an overflow show up as a count
            // above the limit, without buffering more than that.
            let end = self
                .buf
                .len()
                .min(self.cursor.saturating_add(budget).saturating_add(1));
            let mut chunk = self.buf.get(self.cursor..end).unwrap_or_default();
            let offered = chunk.len();
            let Some(xml) = self.xml.as_deref_mut() else {
                return nothing_more(in_whitespace);
            };
            let result = xml.parse(&mut chunk, false);
            let consumed = offered - chunk.len();
            self.cursor += consumed;
            match result {
                Ok(Some(event)) => {
                    let len = event.metrics().len();
                    let event_start = self.head;
                    self.head = (self.head + len).min(self.cursor);
                    if self.phase == Phase::Open
                        && (!self.open.is_empty() || matches!(event, rxml::Event::StartElement(..)))
                    {
                        self.element_evented_bytes += len;
                    }
                    self.check_size(event_start)?;
                    let out = self.handle(event)?;
                    if matches!(out, Some(StreamEvent::Header(_) | StreamEvent::Element(_))) {
                        // A header or top-level element ends at its `>`, which rxml reports
                        // without reading ahead, so every byte handed over so far belongs to
                        // it. rxml's event lengths can fall short of the bytes when text
                        // arrives in pieces; re-synchronising here keeps such a shortfall
                        // from being counted against the next element.
                        self.head = self.cursor;
                    }
                    match out {
                        // The budget may have cut a run of whitespace into
                        // several text events; while the run visibly goes
                        // on in the buffer, keep reading so it is one event.
                        Some(StreamEvent::Whitespace)
                            if self.cursor == self.head
                                && self.buf.get(self.cursor).is_some_and(is_xml_space) =>
                        {
                            in_whitespace = true;
                        }
                        Some(out) => return Ok(Some(out)),
                        None if in_whitespace => return nothing_more(in_whitespace),
                        None => {}
                    }
                }
                Ok(None) => return nothing_more(in_whitespace),
                Err(EndOrError::NeedMoreData) => {
                    self.check_size(self.head)?;
                    if consumed == 0 || self.cursor >= self.buf.len() {
                        return nothing_more(in_whitespace);
                    }
                }
                Err(EndOrError::Error(err)) => {
                    let pending = self.buf.get(self.head..self.cursor).unwrap_or_default();
                    return Err(XmlError::from_rxml(err, pending, &self.limits));
                }
            }
        }
    }

    /// The byte bound for the item being parsed: header or top-level element.
    fn limit_bytes(&self) -> usize {
        match self.phase {
            Phase::Prolog => self.limits.max_header_bytes,
            Phase::Open | Phase::Closed => self.limits.max_stanza_bytes,
        }
    }

    /// Bytes of the item being parsed, including a partial token.
    fn item_bytes(&self) -> usize {
        let pending = self.cursor - self.head;
        match self.phase {
            Phase::Prolog => self.cursor - self.doc_start,
            Phase::Open | Phase::Closed => self.element_evented_bytes + pending,
        }
    }

    /// Fails once the item is over its byte bound. `recent` is where in `buf` the bytes rxml
    /// took since its previous event begin: rxml hands out the valid start of a text run and
    /// reports a bad UTF-8 byte only at its next flush, so an invalid byte it already took would
    /// otherwise be reported as a size error or not, depending on where reads split. The earlier
    /// fault wins: such a byte makes it the not-well-formed error rxml would have given.
    fn check_size(&self, recent: usize) -> Result<(), XmlError> {
        if self.item_bytes() <= self.limit_bytes() {
            return Ok(());
        }
        let taken = self.buf.get(recent..self.cursor).unwrap_or_default();
        // `recent` can fall inside a multi-byte character when rxml's counts run short.
        let whole_chars = taken
            .iter()
            .position(|b| !(0x80..=0xbf).contains(b))
            .map_or(&[][..], |start| taken.get(start..).unwrap_or_default());
        if let Err(err) = std::str::from_utf8(whole_chars)
            && err.error_len().is_some()
            && let Some(&byte) = whole_chars.get(err.valid_up_to())
        {
            return Err(XmlError::from_rxml(
                rxml::Error::InvalidUtf8Byte(byte),
                taken,
                &self.limits,
            ));
        }
        Err(match self.phase {
            Phase::Prolog => XmlError::HeaderTooLarge {
                limit_bytes: self.limits.max_header_bytes,
            },
            Phase::Open | Phase::Closed => XmlError::TooLarge {
                limit_bytes: self.limits.max_stanza_bytes,
            },
        })
    }

    fn handle(&mut self, event: rxml::Event) -> Result<Option<StreamEvent>, XmlError> {
        match event {
            // Only possible in the prolog; rxml rejects it anywhere else.
            rxml::Event::XmlDeclaration(..) => Ok(None),
            rxml::Event::StartElement(_, (ns, name), attrs) => {
                if self.phase == Phase::Prolog {
                    return self.open_stream(&ns, &name, &attrs).map(Some);
                }
                if self.open.len() >= usize::from(self.limits.max_depth) {
                    return Err(XmlError::TooDeep {
                        limit: self.limits.max_depth,
                    });
                }
                if self.open.is_empty() {
                    self.element_count = 0;
                }
                if self.element_count >= self.limits.max_elements_per_stanza {
                    return Err(XmlError::TooManyElements {
                        limit: self.limits.max_elements_per_stanza,
                    });
                }
                self.element_count += 1;
                self.check_element_shape(&name, &attrs)?;
                let mut el = Element::bare(name.as_str(), ns.as_str());
                *el.attrs_mut() = attrs;
                self.open.push(el);
                Ok(None)
            }
            rxml::Event::EndElement(_) => {
                let Some(el) = self.open.pop() else {
                    self.phase = Phase::Closed;
                    return Ok(Some(StreamEvent::Close));
                };
                match self.open.last_mut() {
                    Some(parent) => {
                        parent.append_child(el);
                        Ok(None)
                    }
                    None => {
                        self.element_evented_bytes = 0;
                        if let Some(limits) = self.next_limits.take() {
                            self.limits = limits;
                        }
                        Ok(Some(StreamEvent::Element(el)))
                    }
                }
            }
            rxml::Event::Text(_, text) => match self.open.last_mut() {
                Some(parent) => {
                    parent.append_text(text);
                    Ok(None)
                }
                None if text.bytes().all(|b| is_xml_space(&b)) => Ok(Some(StreamEvent::Whitespace)),
                None => Err(XmlError::Syntax("text at stream level".to_owned())),
            },
        }
    }

    fn open_stream(
        &mut self,
        ns: &rxml::Namespace<'_>,
        name: &rxml::NcName,
        attrs: &rxml::AttrMap,
    ) -> Result<StreamEvent, XmlError> {
        if name.as_str() != "stream" {
            return Err(XmlError::NotAStream);
        }
        if ns.as_str() != STREAM_NS {
            return Err(XmlError::WrongStreamNamespace);
        }
        self.check_element_shape(name, attrs)?;
        let get = |name: &str| attrs.get("", name).cloned();
        let header_bytes = self.buf.get(self.doc_start..self.head).unwrap_or_default();
        self.header_replay = header_bytes.into();
        let header = StreamHeader {
            to: get("to"),
            from: get("from"),
            id: get("id"),
            version: get("version"),
            lang: attrs.get(rxml::XMLNS_XML, "lang").cloned(),
            content_namespace: default_namespace_declaration(header_bytes, &self.limits),
        };
        self.phase = Phase::Open;
        Ok(StreamEvent::Header(header))
    }

    fn check_element_shape(
        &self,
        name: &rxml::NcName,
        attrs: &rxml::AttrMap,
    ) -> Result<(), XmlError> {
        let limits = &self.limits;
        if attrs.len() > usize::from(limits.max_attributes_per_element) {
            return Err(XmlError::TooManyAttributes {
                limit: limits.max_attributes_per_element,
            });
        }
        let name_too_long = XmlError::NameTooLong {
            limit_bytes: limits.max_name_bytes,
        };
        if name.len() > limits.max_name_bytes {
            return Err(name_too_long);
        }
        for ((_, attr_name), value) in attrs {
            if attr_name.len() > limits.max_name_bytes {
                return Err(name_too_long);
            }
            if value.len() > limits.max_attribute_value_bytes {
                return Err(XmlError::ValueTooLong {
                    limit_bytes: limits.max_attribute_value_bytes,
                });
            }
        }
        Ok(())
    }

    /// Drops bytes already turned into events once they make up at least half
    /// the buffer, so a large feed is not moved once per event.
    /// Frees the input buffer when nothing in it is needed any more (what [`Self::compact`]
    /// would discard is all of it), so a connection between reads holds no copy of the bytes
    /// it has parsed; the next read allocates afresh.
    fn free_consumed_input(&mut self) {
        let keep_from = match self.phase {
            Phase::Prolog => self.doc_start,
            Phase::Open | Phase::Closed => self.head,
        };
        if keep_from == self.buf.len() && self.cursor == self.buf.len() {
            self.buf = Vec::new();
            self.head = self.head.saturating_sub(keep_from);
            self.cursor = 0;
            self.doc_start = self.doc_start.saturating_sub(keep_from);
        }
    }

    fn compact(&mut self) {
        let keep_from = match self.phase {
            Phase::Prolog => self.doc_start,
            Phase::Open | Phase::Closed => self.head,
        };
        if keep_from == 0 || keep_from * 2 < self.buf.len() {
            return;
        }
        self.buf.drain(..keep_from);
        self.head -= keep_from;
        self.cursor -= keep_from;
        self.doc_start = self.doc_start.saturating_sub(keep_from);
    }
}

/// XML's `S` production (XML 1.0 §2.3).
fn is_xml_space(b: &u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn new_rxml_parser(limits: &Limits) -> rxml::Parser {
    let options = rxml::Options {
        max_token_length: limits.token_bytes(),
        comments: rxml::parser::CommentMode::Reject,
        ..rxml::Options::default()
    };
    let mut parser = rxml::Parser::with_options(options);
    // Text is reported as soon as it is read, so whitespace keepalives become
    // events at once and never sit in the tokenizer.
    parser.set_text_buffering(false);
    parser
}

/// Finds `xmlns='...'` on the stream element by re-reading the header bytes
/// (bounded by `max_header_bytes`) with rxml's raw parser, which reports
/// namespace declarations as plain attributes. The namespace-resolving parser
/// has already accepted these bytes, so the raw parse cannot fail before the
/// end of the element head.
fn default_namespace_declaration(header_bytes: &[u8], limits: &Limits) -> Option<String> {
    let options = rxml::Options {
        max_token_length: limits.token_bytes(),
        ..rxml::Options::default()
    };
    let mut raw = RawParser::with_options(options);
    let mut input = header_bytes;
    loop {
        match raw.parse(&mut input, false) {
            Ok(Some(RawEvent::Attribute(_, (None, name), value))) if name.as_str() == "xmlns" => {
                return Some(value);
            }
            Ok(Some(RawEvent::ElementHeadClose(_))) | Ok(None) | Err(_) => return None,
            Ok(Some(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0' \
        xml:lang='en'>";

    /// A header with no attributes but the namespace declarations.
    const BARE_HEADER: &str =
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

    /// Everything the parser yields for `chunks` fed one at a time, draining
    /// events after each chunk, and the error that stopped it, if any.
    fn run(limits: Limits, chunks: &[&[u8]]) -> (Vec<StreamEvent>, Option<XmlError>) {
        let mut parser = StreamParser::new(limits);
        let mut events = Vec::new();
        for chunk in chunks {
            parser.feed(chunk);
            loop {
                match parser.next_event() {
                    Ok(Some(event)) => events.push(event),
                    Ok(None) => break,
                    Err(err) => return (events, Some(err)),
                }
            }
        }
        (events, None)
    }

    /// Found by the chunking property test: text with multi-byte characters arriving a byte at
    /// a time made rxml report shorter events than the bytes read, and the shortfall was
    /// counted against the next element, so a 297-byte element failed a 300-byte limit.
    #[test]
    fn element_size_does_not_depend_on_where_reads_split() {
        let input = include_bytes!("../testdata/limit-across-chunks.xml");
        let limits = Limits {
            max_stanza_bytes: 300,
            max_depth: 4,
            max_attributes_per_element: 3,
            max_elements_per_stanza: 64,
            max_name_bytes: 12,
            max_attribute_value_bytes: 40,
            max_header_bytes: 200,
        };
        // How keepalive whitespace is grouped into events may differ; nothing else may.
        let run = |chunks: &[&[u8]]| {
            let (mut events, error) = run(limits, chunks);
            events.retain(|event| *event != StreamEvent::Whitespace);
            (events, error)
        };
        let whole = run(&[input]);
        assert_eq!(whole.1, None, "fed whole");
        let elements = whole
            .0
            .iter()
            .filter(|event| matches!(event, StreamEvent::Element(_)))
            .count();
        assert_eq!(elements, 3);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(&bytes), whole, "fed a byte at a time");
        for split in 1..input.len() {
            let (left, right) = input.split_at(split);
            assert_eq!(run(&[left, right]), whole, "split at {split}");
        }
    }

    /// The limit still bites at the same byte for an element after multi-byte text.
    #[test]
    fn multibyte_text_in_pieces_is_counted_once() {
        let first = "<message><body>\u{1F600}\u{1F600}\u{1F600}\u{1F600}</body></message>";
        let second = format!("<iq>{}</iq>", "x".repeat(1024 - 9));
        assert_eq!(second.len(), 1024);
        let input = format!("{BARE_HEADER}{first}{second}");
        let bytes: Vec<&[u8]> = input.as_bytes().chunks(1).collect();
        let limits = Limits {
            max_stanza_bytes: 1024,
            ..Limits::authenticated()
        };
        let (events, error) = run(limits, &bytes);
        assert_eq!(error, None);
        assert_eq!(events.len(), 3);
        let mut over = input.clone();
        over.insert(over.len() - 5, 'x');
        let bytes: Vec<&[u8]> = over.as_bytes().chunks(1).collect();
        let (_, error) = run(limits, &bytes);
        assert_eq!(error, Some(XmlError::TooLarge { limit_bytes: 1024 }));
    }

    /// A dormant parser gives the same events as one that never slept: the replayed header
    /// restores the prefixes and default namespace it declared.
    #[test]
    fn dormant_parser_wakes_with_the_headers_namespaces() {
        let header = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
            xmlns:stream='http://etherx.jabber.org/streams' xmlns:x='urn:example:x' to='a.test' \
            version='1.0'>";
        let stanzas = [
            "<message><body>one</body></message>",
            "<x:ping/>",
            "<iq type='get' id='1'/>",
        ];
        let mut awake = StreamParser::new(Limits::authenticated());
        let mut sleepy = StreamParser::new(Limits::authenticated());
        let drain = |parser: &mut StreamParser, bytes: &str| {
            parser.feed(bytes.as_bytes());
            let mut events = Vec::new();
            while let Some(event) = parser.next_event().unwrap() {
                events.push(event);
            }
            events
        };
        assert_eq!(drain(&mut awake, header), drain(&mut sleepy, header));
        for stanza in stanzas {
            assert!(sleepy.make_dormant());
            assert!(sleepy.xml_is_dropped());
            let expected = drain(&mut awake, stanza);
            assert_eq!(expected.len(), 1);
            assert_eq!(drain(&mut sleepy, stanza), expected, "{stanza}");
        }
        assert!(sleepy.make_dormant());
        assert_eq!(drain(&mut sleepy, "</stream:stream>"), [StreamEvent::Close]);
    }

    /// Nothing is dropped while an element or a partial token is pending, or before the header.
    #[test]
    fn parser_stays_awake_with_work_in_progress() {
        let mut parser = StreamParser::new(Limits::authenticated());
        assert!(!parser.make_dormant(), "before the header");
        parser.feed(BARE_HEADER.as_bytes());
        assert!(matches!(
            parser.next_event(),
            Ok(Some(StreamEvent::Header(_)))
        ));
        parser.feed(b"<message><body>half");
        assert_eq!(parser.next_event(), Ok(None));
        assert!(!parser.make_dormant(), "mid-element");
        parser.feed(b"</body></message><pres");
        assert!(matches!(
            parser.next_event(),
            Ok(Some(StreamEvent::Element(_)))
        ));
        assert_eq!(parser.next_event(), Ok(None));
        assert!(!parser.make_dormant(), "partial token");
        parser.feed(b"ence/>");
        assert!(matches!(
            parser.next_event(),
            Ok(Some(StreamEvent::Element(_)))
        ));
        assert!(parser.make_dormant());
        assert!(!parser.has_pending_input());
    }

    /// Between reads the parser keeps no copy of input it has finished with, but keeps what
    /// a partial element still needs, and the element parses whole when the rest arrives.
    #[test]
    fn consumed_input_is_freed_and_partial_input_kept() {
        let mut parser = StreamParser::new(Limits::authenticated());
        parser.feed(b"<?xml version='1.0'?>");
        assert_eq!(parser.next_event(), Ok(None));
        parser.feed(BARE_HEADER.as_bytes());
        assert!(matches!(
            parser.next_event(),
            Ok(Some(StreamEvent::Header(_)))
        ));
        assert_eq!(parser.next_event(), Ok(None));
        assert_eq!(parser.input_capacity(), 0, "after the header");
        parser.feed(b"<message to='a@b'><body>one</body></message>");
        assert!(matches!(
            parser.next_event(),
            Ok(Some(StreamEvent::Element(_)))
        ));
        assert_eq!(parser.next_event(), Ok(None));
        assert_eq!(parser.input_capacity(), 0, "after a whole stanza");
        parser.feed(b"<message to='a@b'><bo");
        assert_eq!(parser.next_event(), Ok(None));
        assert!(parser.has_pending_input(), "a partial tag");
        assert!(parser.input_capacity() > 0, "a partial tag");
        parser.feed(b"dy>tw");
        assert_eq!(parser.next_event(), Ok(None));
        parser.feed(b"o</body></mess");
        assert_eq!(parser.next_event(), Ok(None));
        parser.feed(b"age>");
        let Ok(Some(StreamEvent::Element(message))) = parser.next_event() else {
            panic!("the split stanza did not parse");
        };
        assert_eq!(
            message.get_child("body", "jabber:client").map(|b| b.text()),
            Some("two".to_owned())
        );
        assert_eq!(parser.next_event(), Ok(None));
        assert_eq!(parser.input_capacity(), 0, "after the split stanza");
        assert!(!parser.has_pending_input());
    }

    /// A 1024-byte stanza limit with 40-byte tokens, so text is flushed in 40-byte pieces.
    fn small_tokens_1024() -> Limits {
        Limits {
            max_stanza_bytes: 1024,
            max_attribute_value_bytes: 40,
            ..Limits::authenticated()
        }
    }

    /// Found by fuzzing: rxml hands out the valid start of a text run and reports a bad UTF-8
    /// byte only at its next flush, so fed whole the element hit the size limit first and was
    /// a policy violation, while fed in pieces it was not well-formed. The earlier fault wins.
    #[test]
    fn invalid_utf8_before_the_size_limit_is_not_well_formed_however_fed() {
        // Text is flushed in 40-byte tokens from offset 15, so the last flush before the
        // 1024-byte limit starts at offset 1015; the bad byte goes inside it, at 1018.
        let mut input = format!("{BARE_HEADER}<message><body>").into_bytes();
        input.extend_from_slice(&[b'a'; 1003]);
        input.push(0xfe);
        input.extend_from_slice(&[b'b'; 2000]);
        let limits = small_tokens_1024();
        let whole = run(limits, &[&input]);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        let pieces = run(limits, &bytes);
        for (how, (_, error)) in [("whole", whole), ("a byte at a time", pieces)] {
            let error = error.unwrap_or_else(|| panic!("{how}: no error"));
            assert_eq!(
                error.condition(),
                crate::StreamCondition::NotWellFormed,
                "{how}: {error}"
            );
        }
    }

    /// A size error stays a size error when the text is valid, even with multi-byte
    /// characters cut by the limit.
    #[test]
    fn oversized_valid_text_is_still_a_policy_violation() {
        let mut input = format!("{BARE_HEADER}<message><body>").into_bytes();
        input.extend_from_slice("é😀".repeat(400).as_bytes());
        let limits = small_tokens_1024();
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        for chunks in [vec![input.as_slice()], bytes] {
            let (_, error) = run(limits, &chunks);
            assert_eq!(error, Some(XmlError::TooLarge { limit_bytes: 1024 }));
        }
    }

    /// The error `input` (one feed, default limits) ends with.
    fn error_of(input: &str) -> XmlError {
        error_with(Limits::default(), input)
    }

    fn error_with(limits: Limits, input: &str) -> XmlError {
        let (_, err) = run(limits, &[input.as_bytes()]);
        err.expect("test input must fail")
    }

    /// The error a stanza inside a well-formed stream ends with.
    fn stanza_error(limits: Limits, stanza: &str) -> XmlError {
        error_with(limits, &format!("{HEADER}{stanza}"))
    }

    fn element(xml: &str) -> Element {
        xml.parse().expect("test input is well-formed")
    }

    fn header_event(content_namespace: Option<&str>) -> StreamEvent {
        StreamEvent::Header(StreamHeader {
            to: Some("example.com".into()),
            from: None,
            id: None,
            version: Some("1.0".into()),
            lang: Some("en".into()),
            content_namespace: content_namespace.map(Into::into),
        })
    }

    /// Consecutive whitespace events merged: how many the tokenizer reports
    /// for one run depends on where the feeds were cut.
    fn merge_whitespace(events: Vec<StreamEvent>) -> Vec<StreamEvent> {
        let mut merged: Vec<StreamEvent> = Vec::new();
        for event in events {
            if event == StreamEvent::Whitespace && merged.last() == Some(&StreamEvent::Whitespace) {
                continue;
            }
            merged.push(event);
        }
        merged
    }

    const SESSION: &str = "<?xml version='1.0'?>\n<stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0' \
        xml:lang='en'>\n  \
        <message to='juliet@example.com/balcony' type='chat' id='m1'>\
        <body>Wherefore art thou &amp; &#x263A; <![CDATA[<Romeo>]]></body>\
        <x xmlns='urn:example:unknown' xmlns:e='urn:example:extra' e:flag='1'>\
        <deep><deeper a='&quot;'>text</deeper></deep><empty/></x></message>\
        \r\n \t\
        <iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq> \
        </stream:stream>";

    fn session_events() -> Vec<StreamEvent> {
        vec![
            header_event(Some("jabber:client")),
            StreamEvent::Whitespace,
            StreamEvent::Element(element(
                "<message xmlns='jabber:client' to='juliet@example.com/balcony' type='chat' \
                 id='m1'><body>Wherefore art thou &amp; \u{263A} &lt;Romeo&gt;</body>\
                 <x xmlns='urn:example:unknown' xmlns:e='urn:example:extra' e:flag='1'>\
                 <deep><deeper a='&quot;'>text</deeper></deep><empty/></x></message>",
            )),
            StreamEvent::Whitespace,
            StreamEvent::Element(element(
                "<iq xmlns='jabber:client' type='get' id='r1'>\
                 <query xmlns='jabber:iq:roster'/></iq>",
            )),
            StreamEvent::Whitespace,
            StreamEvent::Close,
        ]
    }

    #[test]
    fn session_in_one_feed() {
        let (events, err) = run(Limits::default(), &[SESSION.as_bytes()]);
        assert_eq!(err, None);
        assert_eq!(merge_whitespace(events), session_events());
    }

    #[test]
    fn session_in_every_two_way_split() {
        let bytes = SESSION.as_bytes();
        for cut in 0..=bytes.len() {
            let (first, second) = bytes.split_at(cut);
            let (events, err) = run(Limits::default(), &[first, second]);
            assert_eq!(err, None, "cut at {cut}");
            assert_eq!(merge_whitespace(events), session_events(), "cut at {cut}");
        }
    }

    #[test]
    fn session_byte_by_byte() {
        let chunks: Vec<&[u8]> = SESSION.as_bytes().chunks(1).collect();
        let (events, err) = run(Limits::default(), &chunks);
        assert_eq!(err, None);
        assert_eq!(merge_whitespace(events), session_events());
    }

    #[test]
    fn session_in_unauthenticated_limits_byte_by_byte() {
        let chunks: Vec<&[u8]> = SESSION.as_bytes().chunks(1).collect();
        let (events, err) = run(Limits::unauthenticated(), &chunks);
        assert_eq!(err, None);
        assert_eq!(merge_whitespace(events), session_events());
    }

    #[test]
    fn one_whitespace_event_per_run_in_one_feed() {
        let input = format!("{HEADER}<a/>   \n\t  <b/>");
        let (events, err) = run(Limits::default(), &[input.as_bytes()]);
        assert_eq!(err, None);
        assert_eq!(
            events,
            vec![
                header_event(Some("jabber:client")),
                StreamEvent::Element(Element::bare("a", "jabber:client")),
                StreamEvent::Whitespace,
                StreamEvent::Element(Element::bare("b", "jabber:client")),
            ]
        );
    }

    #[test]
    fn header_without_declaration_or_default_namespace() {
        let (events, err) = run(
            Limits::default(),
            &[b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' from='a@b' id='i'>"],
        );
        assert_eq!(err, None);
        assert_eq!(
            events,
            vec![StreamEvent::Header(StreamHeader {
                to: None,
                from: Some("a@b".into()),
                id: Some("i".into()),
                version: None,
                lang: None,
                content_namespace: None,
            })]
        );
    }

    #[test]
    fn header_with_unprefixed_stream_element() {
        // The stream element may itself use the default namespace; then
        // there is no content namespace and stanzas must declare their own.
        let (events, err) = run(
            Limits::default(),
            &[b"<stream xmlns='http://etherx.jabber.org/streams'><message xmlns='jabber:client'/>"],
        );
        assert_eq!(err, None);
        assert_eq!(
            events,
            vec![
                StreamEvent::Header(StreamHeader {
                    to: None,
                    from: None,
                    id: None,
                    version: None,
                    lang: None,
                    content_namespace: Some("http://etherx.jabber.org/streams".into()),
                }),
                StreamEvent::Element(Element::bare("message", "jabber:client")),
            ]
        );
    }

    #[test]
    fn nonza_keeps_its_own_namespace() {
        let input = format!("{HEADER}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
        let (events, _) = run(Limits::default(), &[input.as_bytes()]);
        assert_eq!(
            events.last(),
            Some(&StreamEvent::Element(Element::bare(
                "starttls",
                "urn:ietf:params:xml:ns:xmpp-tls"
            )))
        );
    }

    #[test]
    fn pending_input_after_starttls_with_trailing_bytes() {
        let mut parser = StreamParser::new(Limits::unauthenticated());
        parser.feed(HEADER.as_bytes());
        parser.feed(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><mess");
        assert_eq!(
            parser.next_event(),
            Ok(Some(header_event(Some("jabber:client"))))
        );
        assert!(matches!(
            parser.next_event(),
            Ok(Some(StreamEvent::Element(_)))
        ));
        assert!(parser.has_pending_input());
        // The partial tag stays pending once the tokenizer has taken it in.
        assert_eq!(parser.next_event(), Ok(None));
        assert!(parser.has_pending_input());
    }

    #[test]
    fn no_pending_input_after_lone_starttls() {
        let mut parser = StreamParser::new(Limits::unauthenticated());
        parser.feed(HEADER.as_bytes());
        parser.feed(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
        assert_eq!(
            parser.next_event(),
            Ok(Some(header_event(Some("jabber:client"))))
        );
        assert!(matches!(
            parser.next_event(),
            Ok(Some(StreamEvent::Element(_)))
        ));
        assert!(!parser.has_pending_input());
        assert_eq!(parser.next_event(), Ok(None));
        assert!(!parser.has_pending_input());
    }

    #[test]
    fn pending_input_counts_whitespace_not_yet_parsed() {
        let mut parser = StreamParser::new(Limits::unauthenticated());
        parser.feed(HEADER.as_bytes());
        parser.feed(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/> ");
        assert!(matches!(
            parser.next_event(),
            Ok(Some(StreamEvent::Header(_)))
        ));
        assert!(matches!(
            parser.next_event(),
            Ok(Some(StreamEvent::Element(_)))
        ));
        assert!(parser.has_pending_input());
    }

    #[test]
    fn restart_keeps_following_bytes() {
        let mut parser = StreamParser::new(Limits::unauthenticated());
        parser.feed(HEADER.as_bytes());
        assert!(matches!(
            parser.next_event(),
            Ok(Some(StreamEvent::Header(_)))
        ));
        let mut bytes = b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>".to_vec();
        bytes.extend_from_slice(HEADER.as_bytes());
        bytes.extend_from_slice(b"<iq type='set' id='b'/>");
        parser.feed(&bytes);
        assert_eq!(
            parser.next_event(),
            Ok(Some(StreamEvent::Element(Element::bare(
                "success",
                "urn:ietf:params:xml:ns:xmpp-sasl"
            ))))
        );
        parser.set_limits(Limits::authenticated());
        parser.restart();
        assert_eq!(parser.limits(), Limits::authenticated());
        assert_eq!(
            parser.next_event(),
            Ok(Some(header_event(Some("jabber:client"))))
        );
        let Ok(Some(StreamEvent::Element(iq))) = parser.next_event() else {
            panic!("expected the iq of the new stream");
        };
        assert!(iq.is("iq", "jabber:client"));
        assert!(!parser.has_pending_input());
    }

    #[test]
    fn restart_replays_bytes_the_old_document_had_tokenized() {
        let mut parser = StreamParser::new(Limits::unauthenticated());
        parser.feed(HEADER.as_bytes());
        parser.feed(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><stream:stream xmlns:str");
        assert!(matches!(
            parser.next_event(),
            Ok(Some(StreamEvent::Header(_)))
        ));
        assert!(matches!(
            parser.next_event(),
            Ok(Some(StreamEvent::Element(_)))
        ));
        // The old document takes in the partial tag as a child element.
        assert_eq!(parser.next_event(), Ok(None));
        assert!(parser.cursor > parser.head);
        parser.restart();
        parser.feed(b"eam='http://etherx.jabber.org/streams'>");
        assert_eq!(
            parser.next_event(),
            Ok(Some(StreamEvent::Header(StreamHeader {
                to: None,
                from: None,
                id: None,
                version: None,
                lang: None,
                content_namespace: None,
            })))
        );
    }

    #[test]
    fn restart_after_close_starts_a_new_document() {
        let mut parser = StreamParser::new(Limits::default());
        parser.feed(format!("{HEADER}</stream:stream>{HEADER}").as_bytes());
        assert!(matches!(
            parser.next_event(),
            Ok(Some(StreamEvent::Header(_)))
        ));
        assert_eq!(parser.next_event(), Ok(Some(StreamEvent::Close)));
        assert_eq!(parser.next_event(), Ok(None));
        assert!(parser.has_pending_input());
        parser.restart();
        assert_eq!(
            parser.next_event(),
            Ok(Some(header_event(Some("jabber:client"))))
        );
    }

    fn small_stanzas(max_stanza_bytes: usize) -> Limits {
        Limits {
            max_stanza_bytes,
            ..Limits::default()
        }
    }

    #[test]
    fn too_large_before_element_end() {
        let limit = 100;
        let stanza = format!("<message><body>{}", "a".repeat(limit + 1 - 15));
        assert_eq!(stanza.len(), limit + 1);
        assert_eq!(
            stanza_error(small_stanzas(limit), &stanza),
            XmlError::TooLarge { limit_bytes: limit }
        );
    }

    #[test]
    fn stanza_of_exactly_the_limit_is_accepted() {
        let stanza = "<message><body>hello</body></message>";
        let (events, err) = run(
            small_stanzas(stanza.len()),
            &[HEADER.as_bytes(), stanza.as_bytes()],
        );
        assert_eq!(err, None);
        assert_eq!(events.len(), 2);
        assert_eq!(
            stanza_error(small_stanzas(stanza.len() - 1), stanza),
            XmlError::TooLarge {
                limit_bytes: stanza.len() - 1
            }
        );
    }

    #[test]
    fn whitespace_between_stanzas_does_not_count() {
        let stanza = "<a/>";
        let input = format!("{HEADER}{stanza}{}{stanza}", " ".repeat(50));
        let (events, err) = run(small_stanzas(stanza.len()), &[input.as_bytes()]);
        assert_eq!(err, None);
        assert_eq!(events.len(), 4);
    }

    #[test]
    fn huge_feed_fails_without_tokenizing_it() {
        let limit = 1024;
        let mut parser = StreamParser::new(small_stanzas(limit));
        parser.feed(HEADER.as_bytes());
        parser.feed(b"<message><body>");
        parser.feed(&vec![b'a'; 10 * 1024 * 1024]);
        assert!(matches!(
            parser.next_event(),
            Ok(Some(StreamEvent::Header(_)))
        ));
        assert_eq!(
            parser.next_event(),
            Err(XmlError::TooLarge { limit_bytes: limit })
        );
        // Only the budget plus one byte was handed to rxml.
        assert!(parser.cursor <= HEADER.len() + limit + 1);
        assert!(parser.open.iter().all(|el| el.text().len() <= limit));
    }

    #[test]
    fn endless_attribute_list_is_too_large() {
        let limit = 2048;
        let attrs: String = (0..1000).map(|i| format!(" a{i}='x'")).collect();
        let mut parser = StreamParser::new(small_stanzas(limit));
        parser.feed(HEADER.as_bytes());
        parser.feed(format!("<message{attrs}").as_bytes());
        assert!(matches!(
            parser.next_event(),
            Ok(Some(StreamEvent::Header(_)))
        ));
        assert_eq!(
            parser.next_event(),
            Err(XmlError::TooLarge { limit_bytes: limit })
        );
        // rxml holds attributes until the tag closes; it was given no more
        // than the budget.
        assert_eq!(parser.cursor - parser.head, limit + 1);
    }

    #[test]
    fn header_too_large() {
        let input = format!(
            "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='{}'>",
            "a".repeat(DEFAULT_MAX_HEADER_BYTES)
        );
        assert_eq!(
            error_of(&input),
            XmlError::HeaderTooLarge {
                limit_bytes: DEFAULT_MAX_HEADER_BYTES
            }
        );
    }

    use crate::limits::DEFAULT_MAX_HEADER_BYTES;

    fn shallow(max_depth: u16) -> Limits {
        Limits {
            max_depth,
            ..Limits::default()
        }
    }

    fn few_elements(max_elements_per_stanza: u32) -> Limits {
        Limits {
            max_elements_per_stanza,
            ..Limits::default()
        }
    }

    #[test]
    fn elements_up_to_the_limit_are_accepted_in_each_stanza() {
        // Three elements each, the stanza included; the count starts again per stanza.
        let input = format!("{HEADER}<a><b/><c/></a><a><b><c/></b></a>");
        let (events, err) = run(few_elements(3), &[input.as_bytes()]);
        assert_eq!(err, None);
        assert_eq!(events.len(), 3);
    }

    #[test]
    fn elements_past_the_limit_are_too_many_and_fail_at_the_opening_tag() {
        assert_eq!(
            stanza_error(few_elements(3), "<a><b/><c/><d/></a>"),
            XmlError::TooManyElements { limit: 3 }
        );
        assert_eq!(
            stanza_error(few_elements(3), "<a><b/><c/><d>"),
            XmlError::TooManyElements { limit: 3 }
        );
    }

    #[test]
    fn nesting_up_to_the_limit_is_accepted() {
        let input = format!("{HEADER}<a><b><c/></b></a>");
        let (events, err) = run(shallow(3), &[input.as_bytes()]);
        assert_eq!(err, None);
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn nesting_past_the_limit_is_too_deep() {
        assert_eq!(
            stanza_error(shallow(3), "<a><b><c><d/></c></b></a>"),
            XmlError::TooDeep { limit: 3 }
        );
        // Fails at the opening tag, without waiting for the rest.
        assert_eq!(
            stanza_error(shallow(3), "<a><b><c><d>"),
            XmlError::TooDeep { limit: 3 }
        );
    }

    #[test]
    fn attribute_count_limit() {
        let limits = Limits {
            max_attributes_per_element: 2,
            ..Limits::default()
        };
        // Namespace declarations are not attributes.
        let input = format!("{BARE_HEADER}<a xmlns='urn:x' xmlns:p='urn:p' b='1' p:c='2'/>");
        let (events, err) = run(limits, &[input.as_bytes()]);
        assert_eq!(err, None);
        assert_eq!(events.len(), 2);
        assert_eq!(
            stanza_error(limits, "<a><b x='1' y='2' z='3'/></a>"),
            XmlError::TooManyAttributes { limit: 2 }
        );
    }

    #[test]
    fn attribute_count_limit_applies_to_the_header() {
        let limits = Limits {
            max_attributes_per_element: 2,
            ..Limits::default()
        };
        assert_eq!(
            error_with(limits, HEADER),
            XmlError::TooManyAttributes { limit: 2 }
        );
    }

    fn short_names(max_name_bytes: usize, max_attribute_value_bytes: usize) -> Limits {
        Limits {
            max_name_bytes,
            max_attribute_value_bytes,
            ..Limits::default()
        }
    }

    #[test]
    fn element_name_too_long() {
        assert_eq!(
            stanza_error(short_names(8, 64), "<abcdefghi/>"),
            XmlError::NameTooLong { limit_bytes: 8 }
        );
    }

    #[test]
    fn attribute_name_too_long() {
        assert_eq!(
            stanza_error(short_names(8, 64), "<a abcdefghi='1'/>"),
            XmlError::NameTooLong { limit_bytes: 8 }
        );
    }

    #[test]
    fn name_longer_than_the_token_bound() {
        // rxml itself stops the name at 64 bytes, before it is complete.
        let name = "n".repeat(100);
        assert_eq!(
            stanza_error(short_names(8, 64), &format!("<a {name}")),
            XmlError::NameTooLong { limit_bytes: 8 }
        );
        assert_eq!(
            stanza_error(short_names(8, 64), &format!("<{name}")),
            XmlError::NameTooLong { limit_bytes: 8 }
        );
    }

    #[test]
    fn attribute_value_too_long() {
        // Longer than the value limit but within the token bound (the name limit).
        assert_eq!(
            stanza_error(short_names(64, 8), "<a b='123456789'/>"),
            XmlError::ValueTooLong { limit_bytes: 8 }
        );
        // Longer than the token bound: rxml stops it mid-value.
        let value = "v".repeat(100);
        assert_eq!(
            stanza_error(short_names(8, 64), &format!("<a b=\"{value}")),
            XmlError::ValueTooLong { limit_bytes: 64 }
        );
    }

    #[test]
    fn value_of_exactly_the_limit_is_accepted() {
        let value = "v".repeat(32);
        let input = format!("{BARE_HEADER}<a b='{value}' abcdefghijklm='1'/>");
        // The token bound applies to qualified names such as `stream:stream`
        // (13 bytes), and the header carries a 32-byte namespace value.
        let (events, err) = run(short_names(13, 32), &[input.as_bytes()]);
        assert_eq!(err, None);
        assert_eq!(events.len(), 2);
        assert_eq!(
            stanza_error(short_names(13, 32), &format!("<a b='{value}v'/>")),
            XmlError::ValueTooLong { limit_bytes: 32 }
        );
    }

    fn restricted(what: &str) -> XmlError {
        XmlError::Restricted(what.to_owned())
    }

    #[test]
    fn doctype_is_restricted() {
        assert_eq!(
            error_of("<?xml version='1.0'?><!DOCTYPE stream:stream>"),
            restricted("document type or markup declaration")
        );
    }

    #[test]
    fn internal_entity_declaration_is_restricted() {
        assert_eq!(
            error_of("<!DOCTYPE s [<!ENTITY x 'boom'>]><s>&x;</s>"),
            restricted("document type or markup declaration")
        );
        assert_eq!(
            stanza_error(Limits::default(), "<a><!ENTITY x 'boom'></a>"),
            restricted("document type or markup declaration")
        );
    }

    #[test]
    fn undeclared_entity_is_restricted() {
        assert_eq!(
            stanza_error(Limits::default(), "<message><body>&foo;</body></message>"),
            restricted("reference to an undeclared entity")
        );
        assert_eq!(
            stanza_error(Limits::default(), "<message to='&foo;'/>"),
            restricted("reference to an undeclared entity")
        );
    }

    #[test]
    fn processing_instruction_is_restricted() {
        assert_eq!(
            stanza_error(Limits::default(), "<?xml-stylesheet href='a.xsl'?>"),
            restricted("processing instructions")
        );
        assert_eq!(
            stanza_error(Limits::default(), "<a><?pi data?></a>"),
            restricted("processing instructions")
        );
    }

    #[test]
    fn processing_instruction_before_header_is_restricted() {
        assert_eq!(
            error_of("<?xml version='1.0'?><?xml-stylesheet href='a.xsl'?>"),
            restricted("processing instructions")
        );
    }

    #[test]
    fn comment_is_restricted() {
        assert_eq!(
            stanza_error(Limits::default(), "<!-- hi -->"),
            restricted("comments")
        );
        assert_eq!(
            stanza_error(Limits::default(), "<a><!-- hi --></a>"),
            restricted("comments")
        );
    }

    #[test]
    fn declared_encoding_other_than_utf8() {
        assert_eq!(
            error_of("<?xml version='1.0' encoding='ISO-8859-1'?>"),
            XmlError::UnsupportedEncoding
        );
        let (events, err) = run(
            Limits::default(),
            &[b"<?xml version='1.0' encoding='UTF-8'?><stream:stream \
                xmlns:stream='http://etherx.jabber.org/streams'>"],
        );
        assert_eq!(err, None);
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn xml_version_other_than_1_0_is_restricted() {
        assert_eq!(
            error_of("<?xml version='1.1'?>"),
            restricted("only XML version 1.0 is allowed")
        );
    }

    fn syntax(err: &XmlError) -> bool {
        matches!(err, XmlError::Syntax(_))
    }

    #[test]
    fn mismatched_tags_are_not_well_formed() {
        assert_eq!(
            stanza_error(Limits::default(), "<a><b></a>"),
            XmlError::Syntax("start and end tag do not match".into())
        );
    }

    #[test]
    fn invalid_utf8_is_not_well_formed() {
        let mut parser = StreamParser::new(Limits::default());
        parser.feed(HEADER.as_bytes());
        parser.feed(b"<a>\xff\xfe</a>");
        assert!(matches!(
            parser.next_event(),
            Ok(Some(StreamEvent::Header(_)))
        ));
        assert_eq!(
            parser.next_event(),
            Err(XmlError::Syntax("invalid utf-8 byte: \\xff".into()))
        );
    }

    #[test]
    fn unbound_prefix_is_not_well_formed() {
        let err = error_of("<stream:stream xmlns='jabber:client'>");
        assert!(syntax(&err), "{err:?}");
        let err = stanza_error(Limits::default(), "<p:a/>");
        assert!(syntax(&err), "{err:?}");
    }

    #[test]
    fn text_at_stream_level_is_not_well_formed() {
        assert_eq!(
            stanza_error(Limits::default(), "  hello <a/>"),
            XmlError::Syntax("text at stream level".into())
        );
    }

    #[test]
    fn garbage_before_header_is_not_well_formed() {
        let err = error_of("GET / HTTP/1.1\r\n");
        assert!(syntax(&err), "{err:?}");
    }

    #[test]
    fn root_element_other_than_stream() {
        assert_eq!(error_of("<html>"), XmlError::NotAStream);
        assert_eq!(
            error_of("<stream:features xmlns:stream='http://etherx.jabber.org/streams'>"),
            XmlError::NotAStream
        );
    }

    #[test]
    fn stream_element_in_wrong_namespace() {
        assert_eq!(
            error_of("<stream:stream xmlns:stream='jabber:client'>"),
            XmlError::WrongStreamNamespace
        );
        assert_eq!(
            error_of("<stream xmlns='jabber:client'>"),
            XmlError::WrongStreamNamespace
        );
    }

    #[test]
    fn error_poisons_the_parser() {
        let mut parser = StreamParser::new(Limits::default());
        parser.feed(b"<html>");
        assert_eq!(parser.next_event(), Err(XmlError::NotAStream));
        parser.feed(HEADER.as_bytes());
        assert_eq!(parser.next_event(), Err(XmlError::NotAStream));
        parser.restart();
        assert_eq!(parser.next_event(), Err(XmlError::NotAStream));
    }

    #[test]
    fn set_limits_mid_element_applies_after_it() {
        let mut parser = StreamParser::new(Limits::default());
        parser.feed(HEADER.as_bytes());
        parser.feed(b"<message><body>0123456789");
        assert!(matches!(
            parser.next_event(),
            Ok(Some(StreamEvent::Header(_)))
        ));
        assert_eq!(parser.next_event(), Ok(None));
        parser.set_limits(small_stanzas(10));
        assert_eq!(parser.limits(), Limits::default());
        parser.feed(b"</body></message><a>0123456789</a>");
        assert!(matches!(
            parser.next_event(),
            Ok(Some(StreamEvent::Element(_)))
        ));
        assert_eq!(parser.limits(), small_stanzas(10));
        assert_eq!(
            parser.next_event(),
            Err(XmlError::TooLarge { limit_bytes: 10 })
        );
    }

    #[test]
    fn written_elements_parse_back_equal() {
        let originals = [
            element(
                "<message xmlns='jabber:client' to='a@b/c' xml:lang='de'>\
                 <body>x &lt; y &amp;&amp; \"q\" 'a' &gt; \t\r\n</body>\
                 <x xmlns='urn:unknown' xmlns:e='urn:e' e:k='v&#10;w' a='&apos;&quot;'>\
                 <y>t<z/>u</y><w xmlns=''/></x></message>",
            ),
            element(
                "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>\
                 <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>\
                 </stream:features>",
            ),
            element("<iq xmlns='jabber:client' type='result' id='1'/>"),
        ];
        for original in originals {
            let mut input = HEADER.as_bytes().to_vec();
            input.extend_from_slice(&crate::writer::write_element(&original));
            let (events, err) = run(Limits::default(), &[&input]);
            assert_eq!(err, None, "{original:?}");
            assert_eq!(events.get(1), Some(&StreamEvent::Element(original)));
        }
    }
}
