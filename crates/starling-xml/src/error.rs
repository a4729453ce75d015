//! Errors of the stream parser and their RFC 6120 §4.9.3 stream error conditions.

use crate::limits::Limits;

/// Why the peer's XML stream cannot be parsed further.
///
/// Every variant ends the stream; [`XmlError::condition`] names the stream
/// error to send before closing.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum XmlError {
    /// The bytes are not well-formed, namespace-well-formed XML 1.0 in UTF-8:
    /// invalid UTF-8, mismatched tags, an unbound namespace prefix, or
    /// character data directly inside the stream element.
    #[error("xml is not well-formed: {0}")]
    Syntax(String),
    /// A construct RFC 6120 §11.1 forbids: a DTD or other markup declaration,
    /// an entity reference other than the five predefined ones, a processing
    /// instruction or a comment.
    #[error("restricted xml: {0}")]
    Restricted(String),
    /// A top-level element grew past [`Limits::max_stanza_bytes`].
    #[error("element exceeds {limit_bytes} bytes")]
    TooLarge {
        /// The limit in force.
        limit_bytes: usize,
    },
    /// Elements nest deeper than [`Limits::max_depth`].
    #[error("elements nest deeper than {limit}")]
    TooDeep {
        /// The limit in force.
        limit: u16,
    },
    /// An element has more than [`Limits::max_attributes_per_element`] attributes.
    #[error("element has more than {limit} attributes")]
    TooManyAttributes {
        /// The limit in force.
        limit: u16,
    },
    /// A top-level element holds more than [`Limits::max_elements_per_stanza`] elements.
    #[error("element holds more than {limit} elements")]
    TooManyElements {
        /// The limit in force.
        limit: u32,
    },
    /// An element or attribute name is longer than [`Limits::max_name_bytes`].
    #[error("name exceeds {limit_bytes} bytes")]
    NameTooLong {
        /// The limit in force.
        limit_bytes: usize,
    },
    /// An attribute value is longer than [`Limits::max_attribute_value_bytes`].
    #[error("attribute value exceeds {limit_bytes} bytes")]
    ValueTooLong {
        /// The limit in force.
        limit_bytes: usize,
    },
    /// The stream header is longer than [`Limits::max_header_bytes`].
    #[error("stream header exceeds {limit_bytes} bytes")]
    HeaderTooLarge {
        /// The limit in force.
        limit_bytes: usize,
    },
    /// The root element is not named `stream` at all.
    #[error("root element is not a stream")]
    NotAStream,
    /// The root element is named `stream` but is not in the
    /// `http://etherx.jabber.org/streams` namespace.
    #[error("stream element is not in the streams namespace")]
    WrongStreamNamespace,
    /// The XML declaration names an encoding other than UTF-8.
    #[error("encoding other than utf-8 declared")]
    UnsupportedEncoding,
}

/// The RFC 6120 §4.9.3 stream error conditions this crate's errors map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamCondition {
    /// `<bad-format/>`, RFC 6120 §4.9.3.1.
    BadFormat,
    /// `<invalid-namespace/>`, RFC 6120 §4.9.3.10.
    InvalidNamespace,
    /// `<not-well-formed/>`, RFC 6120 §4.9.3.13.
    NotWellFormed,
    /// `<policy-violation/>`, RFC 6120 §4.9.3.14.
    PolicyViolation,
    /// `<restricted-xml/>`, RFC 6120 §4.9.3.18.
    RestrictedXml,
    /// `<unsupported-encoding/>`, RFC 6120 §4.9.3.22.
    UnsupportedEncoding,
}

impl StreamCondition {
    /// The condition's element name in the `urn:ietf:params:xml:ns:xmpp-streams` namespace.
    pub const fn element_name(self) -> &'static str {
        match self {
            Self::BadFormat => "bad-format",
            Self::InvalidNamespace => "invalid-namespace",
            Self::NotWellFormed => "not-well-formed",
            Self::PolicyViolation => "policy-violation",
            Self::RestrictedXml => "restricted-xml",
            Self::UnsupportedEncoding => "unsupported-encoding",
        }
    }
}

impl XmlError {
    /// The stream error to send for this failure.
    pub fn condition(&self) -> StreamCondition {
        match self {
            // RFC 6120 §4.9.3.13, §11.2, §11.6 (invalid UTF-8 is ill-formed XML).
            Self::Syntax(_) => StreamCondition::NotWellFormed,
            // RFC 6120 §4.9.3.18, §11.1.
            Self::Restricted(_) => StreamCondition::RestrictedXml,
            // RFC 6120 §4.9.3.14, §13.12: local policy on stanza size and shape.
            Self::TooLarge { .. }
            | Self::TooDeep { .. }
            | Self::TooManyAttributes { .. }
            | Self::TooManyElements { .. }
            | Self::NameTooLong { .. }
            | Self::ValueTooLong { .. }
            | Self::HeaderTooLarge { .. } => StreamCondition::PolicyViolation,
            // RFC 6120 §4.8.1, §4.9.3.10: the stream namespace is wrong.
            Self::WrongStreamNamespace => StreamCondition::InvalidNamespace,
            // RFC 6120 §4.9.3.1: the root element is XML the server cannot
            // process as a stream at all; the namespace may even be right.
            Self::NotAStream => StreamCondition::BadFormat,
            // RFC 6120 §4.9.3.22, §11.6.
            Self::UnsupportedEncoding => StreamCondition::UnsupportedEncoding,
        }
    }

    /// Translates an rxml error. `pending` holds the bytes rxml consumed since
    /// its last event, which tell apart errors rxml reports alike.
    pub(crate) fn from_rxml(err: rxml::Error, pending: &[u8], limits: &Limits) -> Self {
        // rxml reads `<!` and one more byte, then reports anything but a
        // comment or CDATA start as malformed syntax. A letter there begins a
        // markup declaration (`<!DOCTYPE`, `<!ENTITY`, ...), which RFC 6120
        // §11.1 names as restricted rather than ill-formed.
        if ends_with_markup_declaration(pending) {
            return Self::Restricted("document type or markup declaration".to_owned());
        }
        match err {
            rxml::Error::RestrictedXml("long name or reference") => {
                if ends_inside_attribute_value(pending) {
                    Self::ValueTooLong {
                        limit_bytes: limits.max_attribute_value_bytes,
                    }
                } else {
                    Self::NameTooLong {
                        limit_bytes: limits.max_name_bytes,
                    }
                }
            }
            rxml::Error::RestrictedXml("only utf-8 encoding is allowed") => {
                Self::UnsupportedEncoding
            }
            // rxml's event length counter overflowed; only reachable with a
            // limit near usize::MAX, but it is a size violation all the same.
            rxml::Error::RestrictedXml("event too long") => Self::TooLarge {
                limit_bytes: limits.max_stanza_bytes,
            },
            rxml::Error::RestrictedXml(what) => Self::Restricted(what.to_owned()),
            rxml::Error::UndeclaredEntity => {
                Self::Restricted("reference to an undeclared entity".to_owned())
            }
            other => Self::Syntax(other.to_string()),
        }
    }
}

fn ends_with_markup_declaration(pending: &[u8]) -> bool {
    matches!(pending, [.., b'<', b'!', letter] if letter.is_ascii_alphabetic())
}

/// Whether `pending` stops inside a quoted attribute value of the last tag.
/// Attribute values cannot contain `<`, so the last `<` opens that tag.
fn ends_inside_attribute_value(pending: &[u8]) -> bool {
    let tag_start = pending.iter().rposition(|&b| b == b'<').unwrap_or(0);
    let mut quote: Option<u8> = None;
    for &b in pending.iter().skip(tag_start) {
        quote = match quote {
            None if b == b'"' || b == b'\'' => Some(b),
            Some(open) if b == open => None,
            unchanged => unchanged,
        };
    }
    quote.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_maps_to_its_condition() {
        let cases = [
            (XmlError::Syntax("x".into()), StreamCondition::NotWellFormed),
            (
                XmlError::Restricted("x".into()),
                StreamCondition::RestrictedXml,
            ),
            (
                XmlError::TooLarge { limit_bytes: 1 },
                StreamCondition::PolicyViolation,
            ),
            (
                XmlError::TooDeep { limit: 1 },
                StreamCondition::PolicyViolation,
            ),
            (
                XmlError::TooManyAttributes { limit: 1 },
                StreamCondition::PolicyViolation,
            ),
            (
                XmlError::TooManyElements { limit: 1 },
                StreamCondition::PolicyViolation,
            ),
            (
                XmlError::NameTooLong { limit_bytes: 1 },
                StreamCondition::PolicyViolation,
            ),
            (
                XmlError::ValueTooLong { limit_bytes: 1 },
                StreamCondition::PolicyViolation,
            ),
            (
                XmlError::HeaderTooLarge { limit_bytes: 1 },
                StreamCondition::PolicyViolation,
            ),
            (XmlError::NotAStream, StreamCondition::BadFormat),
            (
                XmlError::WrongStreamNamespace,
                StreamCondition::InvalidNamespace,
            ),
            (
                XmlError::UnsupportedEncoding,
                StreamCondition::UnsupportedEncoding,
            ),
        ];
        for (err, condition) in cases {
            assert_eq!(err.condition(), condition, "{err:?}");
        }
    }

    #[test]
    fn condition_names_match_rfc_6120() {
        assert_eq!(
            StreamCondition::NotWellFormed.element_name(),
            "not-well-formed"
        );
        assert_eq!(
            StreamCondition::RestrictedXml.element_name(),
            "restricted-xml"
        );
        assert_eq!(
            StreamCondition::PolicyViolation.element_name(),
            "policy-violation"
        );
        assert_eq!(
            StreamCondition::InvalidNamespace.element_name(),
            "invalid-namespace"
        );
        assert_eq!(StreamCondition::BadFormat.element_name(), "bad-format");
        assert_eq!(
            StreamCondition::UnsupportedEncoding.element_name(),
            "unsupported-encoding"
        );
    }

    #[test]
    fn attribute_value_context_is_found_from_the_last_tag() {
        assert!(ends_inside_attribute_value(b"text<a b='xx"));
        assert!(ends_inside_attribute_value(b"<a b='x\"y"));
        assert!(!ends_inside_attribute_value(b"<a b='x' c"));
        assert!(!ends_inside_attribute_value(b"<a b='x'"));
        assert!(!ends_inside_attribute_value(b"<aaaa"));
    }

    #[test]
    fn markup_declaration_needs_a_letter_after_bang() {
        assert!(ends_with_markup_declaration(b" <!D"));
        assert!(!ends_with_markup_declaration(b"<!-"));
        assert!(!ends_with_markup_declaration(b"<!["));
        assert!(!ends_with_markup_declaration(b"D"));
    }
}
