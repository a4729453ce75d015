//! Serializer for the server's side of an XML stream, RFC 6120 §4.2 and §4.7.
//!
//! Output is compact (no insignificant whitespace) and infallible: the writer
//! escapes every text node and attribute value and declares namespaces itself
//! rather than trusting `Element::prefixes`.

use std::fmt::Write as _;

use minidom::{Element, Node};

use crate::STREAM_NS;

/// What the server puts on its stream header (RFC 6120 §4.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderOut<'a> {
    /// `from`: the server's domain (RFC 6120 §4.7.1).
    pub from: Option<&'a str>,
    /// `to`: the initiating entity's JID, if known (§4.7.2).
    pub to: Option<&'a str>,
    /// `id`: the stream id (§4.7.3).
    pub id: Option<&'a str>,
    /// `version`: `"1.0"` for RFC 6120 streams (§4.7.5).
    pub version: Option<&'a str>,
    /// `xml:lang`: the stream's default language (§4.7.4).
    pub lang: Option<&'a str>,
    /// Default namespace for stanzas, e.g. `jabber:client` (§4.8.2).
    pub content_namespace: &'a str,
}

/// The stream's closing tag (RFC 6120 §4.4).
pub const STREAM_CLOSE: &[u8] = b"</stream:stream>";

/// Serializes an XML declaration and the opening stream tag, binding the
/// default namespace to `content_namespace` and the `stream` prefix to
/// `http://etherx.jabber.org/streams`.
pub fn write_stream_header(h: &HeaderOut<'_>) -> Vec<u8> {
    let mut out = String::with_capacity(200);
    out.push_str("<?xml version='1.0'?><stream:stream xmlns='");
    out.push_str(&escape_attr(h.content_namespace));
    out.push_str("' xmlns:stream='");
    out.push_str(STREAM_NS);
    out.push('\'');
    let attributes = [
        ("from", h.from),
        ("to", h.to),
        ("id", h.id),
        ("version", h.version),
        ("xml:lang", h.lang),
    ];
    for (name, value) in attributes {
        if let Some(value) = value {
            // Writing to a String cannot fail.
            let _ = write!(out, " {name}='{}'", escape_attr(value));
        }
    }
    out.push('>');
    out.into_bytes()
}

/// Serializes one element for use inside a stream opened by
/// [`write_stream_header`].
///
/// The element declares its own default namespace, so the output does not
/// depend on the stream's content namespace. Elements in the streams namespace
/// (`<stream:features/>`, `<stream:error/>`) are written with the `stream`
/// prefix that the stream header binds, as peers expect; such output is
/// therefore not a standalone document. Namespaced attributes other than
/// `xml:*` get generated prefixes `ns0`, `ns1`, ...
pub fn write_element(el: &Element) -> Vec<u8> {
    let mut out = String::new();
    write_element_into(&mut out, el, None);
    out.into_bytes()
}

/// Escapes character data: `&`, `<`, `>` and carriage return (which XML line
/// end normalisation would otherwise turn into a line feed).
pub fn escape_text(text: &str) -> std::borrow::Cow<'_, str> {
    escape(text, false)
}

/// Escapes an attribute value for either quote style. Tab, line feed and
/// carriage return become character references so attribute value
/// normalisation does not turn them into spaces.
pub fn escape_attr(value: &str) -> std::borrow::Cow<'_, str> {
    escape(value, true)
}

fn escape(s: &str, is_attribute: bool) -> std::borrow::Cow<'_, str> {
    let needs = |c: char| match c {
        '&' | '<' | '>' | '\r' => true,
        '"' | '\'' | '\n' | '\t' => is_attribute,
        _ => false,
    };
    if !s.chars().any(needs) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            '"' if is_attribute => out.push_str("&quot;"),
            '\'' if is_attribute => out.push_str("&apos;"),
            '\n' if is_attribute => out.push_str("&#xA;"),
            '\t' if is_attribute => out.push_str("&#x9;"),
            other => out.push(other),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Writes `el`; `default_ns` is the default namespace in scope at this point,
/// `None` when unknown (the top of the element).
fn write_element_into(out: &mut String, el: &Element, default_ns: Option<&str>) {
    let ns = el.ns();
    let is_stream_element = ns == STREAM_NS;
    out.push('<');
    if is_stream_element {
        out.push_str("stream:");
    }
    out.push_str(el.name());
    let child_default = if is_stream_element {
        default_ns
    } else {
        if default_ns != Some(ns.as_str()) {
            let _ = write!(out, " xmlns=\"{}\"", escape_attr(&ns));
        }
        Some(ns.as_str())
    };

    let mut prefixes: Vec<&str> = Vec::new();
    for ((attr_ns, name), value) in el.attrs() {
        if attr_ns.is_none() {
            let _ = write!(out, " {name}=\"{}\"", escape_attr(value));
        } else if attr_ns.as_str() == rxml::XMLNS_XML {
            let _ = write!(out, " xml:{name}=\"{}\"", escape_attr(value));
        } else {
            let index = match prefixes.iter().position(|p| *p == attr_ns.as_str()) {
                Some(index) => index,
                None => {
                    prefixes.push(attr_ns.as_str());
                    let index = prefixes.len() - 1;
                    let _ = write!(out, " xmlns:ns{index}=\"{}\"", escape_attr(attr_ns));
                    index
                }
            };
            let _ = write!(out, " ns{index}:{name}=\"{}\"", escape_attr(value));
        }
    }

    let mut nodes = el.nodes().peekable();
    if nodes.peek().is_none() {
        out.push_str("/>");
        return;
    }
    out.push('>');
    for node in nodes {
        match node {
            Node::Element(child) => write_element_into(out, child, child_default),
            Node::Text(text) => out.push_str(&escape_text(text)),
        }
    }
    out.push_str("</");
    if is_stream_element {
        out.push_str("stream:");
    }
    out.push_str(el.name());
    out.push('>');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(xml: &str) -> Element {
        xml.parse().expect("test input is well-formed")
    }

    fn written(el: &Element) -> String {
        String::from_utf8(write_element(el)).expect("writer emits UTF-8")
    }

    #[test]
    fn header_declares_both_namespaces_and_escapes_values() {
        let header = write_stream_header(&HeaderOut {
            from: Some("example.com"),
            to: Some("juliet@example.com"),
            id: Some("a'b<c"),
            version: Some("1.0"),
            lang: Some("en"),
            content_namespace: "jabber:client",
        });
        assert_eq!(
            String::from_utf8(header).expect("utf-8"),
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' from='example.com' \
             to='juliet@example.com' id='a&apos;b&lt;c' version='1.0' xml:lang='en'>"
        );
    }

    #[test]
    fn header_omits_absent_attributes() {
        let header = write_stream_header(&HeaderOut {
            from: None,
            to: None,
            id: None,
            version: None,
            lang: None,
            content_namespace: "jabber:server",
        });
        assert_eq!(
            header,
            b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
              xmlns:stream='http://etherx.jabber.org/streams'>"
                .to_vec()
        );
    }

    #[test]
    fn element_declares_namespace_once_and_escapes() {
        let el = element(
            "<message xmlns='jabber:client' to='a@b' id='x&amp;&quot;'>\
             <body>1 &lt; 2 &amp; 3 &gt; 2</body>\
             <x xmlns='urn:example'><y/></x></message>",
        );
        assert_eq!(
            written(&el),
            "<message xmlns=\"jabber:client\" id=\"x&amp;&quot;\" to=\"a@b\">\
             <body>1 &lt; 2 &amp; 3 &gt; 2</body>\
             <x xmlns=\"urn:example\"><y/></x></message>"
        );
    }

    #[test]
    fn stream_namespace_elements_use_the_stream_prefix() {
        let el = element(
            "<stream:error xmlns:stream='http://etherx.jabber.org/streams'>\
             <conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
        );
        assert_eq!(
            written(&el),
            "<stream:error><conflict xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/></stream:error>"
        );
    }

    #[test]
    fn namespaced_attributes_get_generated_prefixes() {
        let el = element("<a xmlns='urn:a' xmlns:p='urn:p' xml:lang='en' p:one='1' p:two='2'/>");
        assert_eq!(
            written(&el),
            "<a xmlns=\"urn:a\" xml:lang=\"en\" xmlns:ns0=\"urn:p\" ns0:one=\"1\" ns0:two=\"2\"/>"
        );
    }

    #[test]
    fn child_in_no_namespace_undeclares_default() {
        let mut el = Element::bare("a", "urn:a");
        el.append_child(Element::bare("b", ""));
        assert_eq!(written(&el), "<a xmlns=\"urn:a\"><b xmlns=\"\"/></a>");
    }

    #[test]
    fn escaping_preserves_whitespace_characters() {
        assert_eq!(escape_attr("a\tb\nc\rd"), "a&#x9;b&#xA;c&#xD;d");
        assert_eq!(escape_text("a\tb\nc\rd"), "a\tb\nc&#xD;d");
        assert_eq!(escape_text("plain"), std::borrow::Cow::Borrowed("plain"));
    }

    #[test]
    fn stream_close_is_the_closing_tag() {
        assert_eq!(STREAM_CLOSE, b"</stream:stream>");
    }
}
