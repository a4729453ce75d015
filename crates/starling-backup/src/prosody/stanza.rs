//! Prosody's stored stanzas back to XML: the tables `util.stanza`'s `preserialize` makes, as
//! `mod_vcard` and `mod_private` store them.
//!
//! ```lua
//! { name = "vCard", attr = { xmlns = "vcard-temp" },
//!   { name = "FN", attr = { xmlns = "vcard-temp" }, "Juliet" },
//!   { name = "PHOTO", attr = {}, { name = "BINVAL", attr = {}, "iVBOR…" } } }
//! ```
//!
//! An element is a table with a `name`, an `attr` table and its children at the positions
//! 1, 2, … (a string is text, a table an element). `attr.xmlns` is the element's namespace;
//! an element without one is in its parent's (elements Prosody parsed off the wire name
//! theirs, elements it built may not). A namespaced attribute is keyed `"{namespace}\1{name}"`
//! (or `"{namespace}|{name}"`, which `deserialize` also accepts); only `xml:lang`-style
//! attributes in the XML namespace are kept, others are dropped and counted. Characters XML
//! 1.0 does not allow are removed and counted, so the result always serializes to XML that
//! reads back. The conversion is bounded by [`MAX_ELEMENT_DEPTH`] and [`MAX_NODES`] on top
//! of the Lua reader's own limits.

use minidom::Element;
use minidom::rxml::{Namespace, NcName};

use crate::lua::{Table, Value};

/// Deepest element nesting converted: the Lua reader's table limit already stops deeper
/// input (an element is one table, its attributes another), this keeps the recursion bounded
/// on its own.
pub const MAX_ELEMENT_DEPTH: usize = crate::lua::MAX_DEPTH;
/// Most elements and text nodes in one stanza: far more than a vCard with a photo or a
/// client's bookmarks hold, and a bound on the work one file can cause.
pub const MAX_NODES: usize = 100_000;

/// The XML namespace (`xml:lang`).
const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";

/// Why a stored stanza could not be turned into XML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StanzaTableError {
    /// An element is not a table.
    #[error("an element is not a table")]
    NotATable,
    /// An element's `name` is missing or not an XML name.
    #[error("an element's name {0:?} is missing or not an XML name")]
    BadName(String),
    /// An element's `attr` is not a table, or an attribute is not a string pair with an XML
    /// name.
    #[error("the attribute {0:?} is not a string with an XML name")]
    BadAttribute(String),
    /// Elements nest deeper than [`MAX_ELEMENT_DEPTH`].
    #[error("elements nest deeper than {limit}")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// More nodes than [`MAX_NODES`].
    #[error("more than {limit} elements and texts")]
    TooManyNodes {
        /// The limit.
        limit: usize,
    },
    /// Text that is not UTF-8.
    #[error("text that is not UTF-8")]
    NotUtf8,
}

/// A converted stanza and what had to be left out of it.
#[derive(Debug)]
pub struct Converted {
    /// The element.
    pub element: Element,
    /// Characters XML does not allow, removed from texts and attribute values.
    pub removed_chars: usize,
    /// Attributes in namespaces other than the XML namespace, dropped.
    pub dropped_attributes: usize,
}

/// Converts a stored stanza; `default_ns` is the namespace of a root element that names none.
pub fn to_element(value: &Value, default_ns: &str) -> Result<Converted, StanzaTableError> {
    let mut converter = Converter::default();
    let element = converter.element(value, default_ns, 1)?;
    Ok(Converted {
        element,
        removed_chars: converter.removed_chars,
        dropped_attributes: converter.dropped_attributes,
    })
}

#[derive(Default)]
struct Converter {
    nodes: usize,
    removed_chars: usize,
    dropped_attributes: usize,
}

impl Converter {
    fn count_node(&mut self) -> Result<(), StanzaTableError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(StanzaTableError::TooManyNodes { limit: MAX_NODES });
        }
        Ok(())
    }

    fn text(&mut self, bytes: &[u8]) -> Result<String, StanzaTableError> {
        let text = std::str::from_utf8(bytes).map_err(|_| StanzaTableError::NotUtf8)?;
        let (kept, removed) = starling_stanza::strip_illegal_xml_chars(text);
        self.removed_chars += removed;
        Ok(kept.into_owned())
    }

    fn element(
        &mut self,
        value: &Value,
        parent_ns: &str,
        depth: usize,
    ) -> Result<Element, StanzaTableError> {
        if depth > MAX_ELEMENT_DEPTH {
            return Err(StanzaTableError::TooDeep {
                limit: MAX_ELEMENT_DEPTH,
            });
        }
        self.count_node()?;
        let table = value.as_table().ok_or(StanzaTableError::NotATable)?;
        let name = table
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if NcName::try_from(name).is_err() {
            return Err(StanzaTableError::BadName(name.to_owned()));
        }
        let attributes = match table.get("attr") {
            None | Some(Value::Nil) => None,
            Some(Value::Table(attributes)) => Some(attributes),
            Some(_) => return Err(StanzaTableError::BadAttribute("attr".to_owned())),
        };
        let namespace = match attributes.and_then(|a| a.get("xmlns")) {
            None | Some(Value::Nil) => parent_ns.to_owned(),
            Some(value) => value
                .as_str()
                .ok_or_else(|| StanzaTableError::BadAttribute("xmlns".to_owned()))?
                .to_owned(),
        };
        let mut element = Element::bare(name, namespace.as_str());
        if let Some(attributes) = attributes {
            self.attributes(&mut element, attributes)?;
        }
        for child in children(table) {
            match child {
                Value::Str(bytes) => {
                    self.count_node()?;
                    let text = self.text(bytes)?;
                    if !text.is_empty() {
                        element.append_text_node(text);
                    }
                }
                Value::Table(_) => {
                    let child = self.element(child, &namespace, depth + 1)?;
                    element.append_child(child);
                }
                // `deserialize` skips anything else, and so do we.
                _ => {}
            }
        }
        Ok(element)
    }

    fn attributes(
        &mut self,
        element: &mut Element,
        attributes: &Table,
    ) -> Result<(), StanzaTableError> {
        for (key, value) in &attributes.fields {
            let key = key
                .as_str()
                .ok_or_else(|| StanzaTableError::BadAttribute(format!("{key:?}")))?;
            if key == "xmlns" || key.starts_with("xmlns:") {
                continue;
            }
            let Value::Str(bytes) = value else {
                return Err(StanzaTableError::BadAttribute(key.to_owned()));
            };
            let value = self.text(bytes)?;
            let (namespace, local) = match key.split_once('\u{1}').or_else(|| key.split_once('|')) {
                Some((NS_XML, local)) => (Namespace::XML, local),
                Some(_) => {
                    self.dropped_attributes += 1;
                    continue;
                }
                None => (Namespace::NONE, key),
            };
            let local = NcName::try_from(local)
                .map_err(|_| StanzaTableError::BadAttribute(key.to_owned()))?;
            element.set_attr(namespace, local, value);
        }
        Ok(())
    }
}

/// The children of an element table in order: the values at 1, 2, … up to the first gap, as
/// Lua's `ipairs` walks them.
fn children(table: &Table) -> Vec<&Value> {
    let mut positional: Vec<(u64, &Value)> = table
        .fields
        .iter()
        .filter_map(|(key, value)| match key {
            Value::Number(n) if n.fract() == 0.0 && *n >= 1.0 && *n <= 2f64.powi(53) => {
                // A whole number in 1..=2^53, exactly representable as u64.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let index = *n as u64;
                Some((index, value))
            }
            _ => None,
        })
        .collect();
    positional.sort_by_key(|(index, _)| *index);
    (1..)
        .zip(positional)
        .take_while(|(expected, (index, _))| index == expected)
        .map(|(_, (_, value))| value)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lua::parse_return;

    fn convert(lua: &str, default_ns: &str) -> Result<Converted, StanzaTableError> {
        let value = parse_return(lua.as_bytes()).expect("test Lua parses");
        to_element(&value, default_ns)
    }

    fn xml(lua: &str) -> String {
        let converted = convert(lua, "urn:example:default").expect("converts");
        let mut out = Vec::new();
        converted.element.write_to(&mut out).expect("serializes");
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn a_vcard_as_mod_vcard_stores_it() {
        assert_eq!(
            xml(
                r#"return { name = "vCard"; attr = { xmlns = "vcard-temp"; };
                 { name = "FN"; attr = { xmlns = "vcard-temp"; }; "Juliet \"Jules\" <Capulet>"; };
                 { name = "NICKNAME"; attr = { ["http://www.w3.org/XML/1998/namespace\1lang"] = "it"; }; "Giulietta"; };
                 { name = "PHOTO"; attr = { };
                   { name = "TYPE"; attr = { }; "image/png"; };
                   { name = "BINVAL"; attr = { }; "iVBORw0KGgo=\n"; }; };
                 "\n"; };"#
            ),
            "<vCard xmlns='vcard-temp'><FN>Juliet \"Jules\" &lt;Capulet&gt;</FN>\
             <NICKNAME xml:lang='it'>Giulietta</NICKNAME><PHOTO><TYPE>image/png</TYPE>\
             <BINVAL>iVBORw0KGgo=\n</BINVAL></PHOTO>\n</vCard>"
        );
    }

    #[test]
    fn namespaces_are_inherited_and_the_default_applies_to_the_root() {
        assert_eq!(
            xml(r#"return { name = "storage", attr = { ["xml|lang"] = "x" },
                 { name = "conference", attr = { jid = "r@c.example", xmlns = "urn:other" },
                   { name = "nick" } } }"#),
            "<storage xmlns='urn:example:default'>\
             <conference xmlns='urn:other' jid='r@c.example'><nick/></conference></storage>"
        );
    }

    #[test]
    fn children_stop_at_the_first_gap_like_ipairs() {
        assert_eq!(
            xml(r#"return { name = "a", [2] = "two", [1] = "one", [4] = "four", x = "named" }"#),
            "<a xmlns='urn:example:default'>onetwo</a>"
        );
    }

    #[test]
    fn illegal_characters_and_foreign_attributes_are_counted() {
        let converted = convert(
            r#"return { name = "a", attr = { t = "x\1y", ["urn:x\1z"] = "1" }, "b\0c" }"#,
            "urn:example:default",
        )
        .expect("converts");
        assert_eq!(
            (converted.removed_chars, converted.dropped_attributes),
            (2, 1)
        );
        assert_eq!(converted.element.attr("t"), Some("xy"));
        assert_eq!(converted.element.text(), "bc");
    }

    #[test]
    fn what_is_not_a_stanza_is_refused() {
        let err = |lua: &str| convert(lua, "").expect_err("refused");
        assert_eq!(err("return true"), StanzaTableError::NotATable);
        assert_eq!(
            err(r#"return { attr = {} }"#),
            StanzaTableError::BadName(String::new())
        );
        assert_eq!(
            err(r#"return { name = "a:b" }"#),
            StanzaTableError::BadName("a:b".to_owned())
        );
        assert_eq!(
            err(r#"return { name = "a", attr = { ["b c"] = "1" } }"#),
            StanzaTableError::BadAttribute("b c".to_owned())
        );
        assert_eq!(
            err(r#"return { name = "a", attr = { b = 1 } }"#),
            StanzaTableError::BadAttribute("b".to_owned())
        );
        assert_eq!(
            err(r#"return { name = "a", "\255" }"#),
            StanzaTableError::NotUtf8
        );
        let deep = format!(
            "return {}{}",
            "{ name = \"a\", ".repeat(MAX_ELEMENT_DEPTH / 2 + 1),
            "}".repeat(MAX_ELEMENT_DEPTH / 2 + 1)
        );
        // The Lua reader stops long before; the converter's own bound is checked directly.
        let value = parse_return(deep.as_bytes()).expect("within the Lua limit");
        let mut converter = Converter::default();
        assert_eq!(
            converter
                .element(&value, "", MAX_ELEMENT_DEPTH - 2)
                .map(|_| ()),
            Err(StanzaTableError::TooDeep {
                limit: MAX_ELEMENT_DEPTH
            })
        );
        let wide = format!("return {{ name = \"a\", {} }}", "\"x\", ".repeat(MAX_NODES));
        assert_eq!(
            err(&wide),
            StanzaTableError::TooManyNodes { limit: MAX_NODES }
        );
    }
}
