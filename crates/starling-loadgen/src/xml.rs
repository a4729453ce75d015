//! A byte-level framer for one XMPP stream: it cuts the stream into its header, top-level
//! elements and end, and reads a tag's name and attributes.
//!
//! *Why not a real XML parser:* the generator has to push tens of thousands of stanzas a second
//! through one core without becoming the bottleneck, and it only ever needs an element's name,
//! one attribute or a text child. Servers do not send comments, processing instructions (other
//! than the XML declaration) or CDATA on a c2s stream (RFC 6120 §11.1), so counting tags while
//! respecting quoted attribute values is enough. The server's own conformance is checked by the
//! test kit with a real parser, not here.

/// What [`Framer::next_frame`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// The server's `<stream:stream ...>` start tag.
    StreamOpen,
    /// One complete top-level element, as raw bytes.
    Element(Vec<u8>),
    /// `</stream:stream>`.
    StreamClose,
}

/// Incremental framer over the bytes of one stream.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    /// Start of the top-level element being collected.
    start: usize,
    /// Next byte to examine.
    pos: usize,
    /// Element nesting below the stream element.
    depth: u32,
    /// Whether the stream header has been seen.
    open: bool,
}

impl Framer {
    /// A framer for a fresh stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets the stream state for a stream restart (RFC 6120 §4.3.3), keeping unread bytes.
    pub fn restart(&mut self) {
        self.compact();
        self.depth = 0;
        self.open = false;
    }

    /// Bytes received and not yet framed.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.pos -= self.start;
            self.start = 0;
        }
    }

    /// The next complete frame, or `None` until more bytes arrive.
    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            let lt = self.buf.get(self.pos..)?.iter().position(|&b| b == b'<')?;
            if self.depth == 0 {
                // Whitespace keepalives and the like between top-level elements.
                self.start = self.pos + lt;
            }
            self.pos += lt;
            let tag_start = self.pos;
            let tag_end = tag_end(self.buf.get(tag_start..)?)? + tag_start; // index of '>'
            self.pos = tag_end + 1;
            let tag = self.buf.get(tag_start..=tag_end)?;
            match tag.get(1) {
                Some(b'?' | b'!') => {
                    if self.depth == 0 {
                        self.start = self.pos;
                    }
                }
                Some(b'/') => {
                    if self.depth == 0 {
                        self.start = self.pos;
                        return Some(Frame::StreamClose);
                    }
                    self.depth -= 1;
                    if self.depth == 0 {
                        return Some(self.take());
                    }
                }
                _ => {
                    let empty = tag.len() >= 2 && tag.get(tag.len() - 2) == Some(&b'/');
                    if !self.open && self.depth == 0 && local_name(tag) == b"stream" {
                        self.open = true;
                        self.start = self.pos;
                        return Some(Frame::StreamOpen);
                    }
                    if !empty {
                        self.depth += 1;
                    } else if self.depth == 0 {
                        return Some(self.take());
                    }
                }
            }
        }
    }

    fn take(&mut self) -> Frame {
        let element = self
            .buf
            .get(self.start..self.pos)
            .unwrap_or_default()
            .to_vec();
        self.start = self.pos;
        Frame::Element(element)
    }
}

/// Offset of the `>` ending the tag that starts at `bytes[0] == b'<'`, skipping quoted values.
fn tag_end(bytes: &[u8]) -> Option<usize> {
    let mut quote = None;
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        match (quote, b) {
            (None, b'"' | b'\'') => quote = Some(b),
            (Some(q), _) if q == b => quote = None,
            (None, b'>') => return Some(i),
            _ => {}
        }
    }
    None
}

/// The local name of the element whose bytes start at `element` (prefix stripped).
pub fn local_name(element: &[u8]) -> &[u8] {
    let name_end = element
        .iter()
        .skip(1)
        .position(|&b| b.is_ascii_whitespace() || b == b'/' || b == b'>')
        .map_or(element.len(), |n| n + 1);
    let name = element.get(1..name_end).unwrap_or_default();
    match name.iter().rposition(|&b| b == b':') {
        Some(colon) => name.get(colon + 1..).unwrap_or_default(),
        None => name,
    }
}

/// The raw (unescaped) value of attribute `name` on the element's start tag.
pub fn attribute<'a>(element: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let end = tag_end(element)?;
    let tag = element.get(..end)?;
    let name = name.as_bytes();
    let mut i = 0;
    while i < tag.len() {
        let b = *tag.get(i)?;
        if b == b'"' || b == b'\'' {
            // Skip a quoted value so its contents never match a name.
            i += tag.get(i + 1..)?.iter().position(|&c| c == b)? + 2;
            continue;
        }
        if b.is_ascii_whitespace()
            && tag.get(i + 1..i + 1 + name.len()) == Some(name)
            && matches!(tag.get(i + 1 + name.len()), Some(b'=' | b' '))
        {
            let rest = tag.get(i + 1 + name.len()..)?;
            let q = rest.iter().position(|&c| c == b'"' || c == b'\'')?;
            let quote = *rest.get(q)?;
            let value = rest.get(q + 1..)?;
            let len = value.iter().position(|&c| c == quote)?;
            return value.get(..len);
        }
        i += 1;
    }
    None
}

/// The text between the first start tag's end and the next `<`: the content of
/// `<challenge>...</challenge>` and similar single-text elements.
pub fn text(element: &[u8]) -> &[u8] {
    let Some(end) = tag_end(element) else {
        return &[];
    };
    if element.get(end.wrapping_sub(1)) == Some(&b'/') {
        return &[];
    }
    let rest = element.get(end + 1..).unwrap_or_default();
    let len = rest.iter().position(|&b| b == b'<').unwrap_or(rest.len());
    rest.get(..len).unwrap_or_default()
}

/// Whether `haystack` contains `needle`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Escapes text for an attribute value or character data.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(chunks: &[&str]) -> Vec<Frame> {
        let mut framer = Framer::new();
        let mut out = Vec::new();
        for chunk in chunks {
            framer.feed(chunk.as_bytes());
            while let Some(frame) = framer.next_frame() {
                out.push(frame);
            }
        }
        out
    }

    fn element(text: &str) -> Frame {
        Frame::Element(text.as_bytes().to_vec())
    }

    const STREAM: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' id='a>b'>\
        <stream:features><mechanisms><mechanism>PLAIN</mechanism></mechanisms></stream:features> \
        <message to='x' id=\"1\"><body>a &gt; b</body></message><presence/></stream:stream>";

    #[test]
    fn frames_whole_and_byte_by_byte_alike() {
        let expected = vec![
            Frame::StreamOpen,
            element(
                "<stream:features><mechanisms><mechanism>PLAIN</mechanism></mechanisms></stream:features>",
            ),
            element("<message to='x' id=\"1\"><body>a &gt; b</body></message>"),
            element("<presence/>"),
            Frame::StreamClose,
        ];
        assert_eq!(frames(&[STREAM]), expected);
        let bytes: Vec<String> = STREAM.chars().map(String::from).collect();
        let chunks: Vec<&str> = bytes.iter().map(String::as_str).collect();
        assert_eq!(frames(&chunks), expected);
    }

    #[test]
    fn reads_names_attributes_and_text() {
        let el = b"<iq xmlns='jabber:client' type=\"result\" id='b1'><x/></iq>";
        assert_eq!(local_name(el), b"iq");
        assert_eq!(attribute(el, "type"), Some(&b"result"[..]));
        assert_eq!(attribute(el, "id"), Some(&b"b1"[..]));
        assert_eq!(attribute(el, "to"), None);
        assert_eq!(local_name(b"<stream:features>"), b"features");
        assert_eq!(text(b"<challenge xmlns='x'>abc=</challenge>"), b"abc=");
        assert_eq!(text(b"<success xmlns='x'/>"), b"");
        assert_eq!(attribute(b"<m a='id=1' id='2'/>", "id"), Some(&b"2"[..]));
    }
}
