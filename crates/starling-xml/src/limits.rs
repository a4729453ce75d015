//! Parser limits, RFC 6120 §13.12 (denial of service): every bound the stream parser enforces.
//!
//! The limits are checked while bytes are parsed, before the memory for an
//! oversized construct is spent. A violation ends the stream with
//! `<policy-violation/>` (RFC 6120 §4.9.3.14).

/// Largest top-level element (stanza or nonza) accepted from an authenticated peer.
pub const DEFAULT_MAX_STANZA_BYTES: usize = 256 * 1024;

/// Largest top-level element accepted before authentication. Nothing an
/// unauthenticated client legitimately sends (`<starttls/>`, `<auth/>`, a SASL
/// `<response/>`) comes close; a small bound limits what an anonymous peer can
/// make the server buffer.
pub const DEFAULT_MAX_STANZA_BYTES_UNAUTHENTICATED: usize = 16 * 1024;

/// Default for [`Limits::max_depth`].
pub const DEFAULT_MAX_DEPTH: u16 = 32;

/// Default for [`Limits::max_elements_per_stanza`]: far above what clients send (a legacy
/// bookmark list of a few hundred rooms is about a thousand elements), while a stanza of empty
/// child elements, about 70 times larger parsed than on the wire, stays near a megabyte.
pub const DEFAULT_MAX_ELEMENTS_PER_STANZA: u32 = 4096;

/// Default for [`Limits::max_attributes_per_element`].
pub const DEFAULT_MAX_ATTRIBUTES_PER_ELEMENT: u16 = 64;

/// Default for [`Limits::max_name_bytes`].
pub const DEFAULT_MAX_NAME_BYTES: usize = 256;

/// Default for [`Limits::max_attribute_value_bytes`].
pub const DEFAULT_MAX_ATTRIBUTE_VALUE_BYTES: usize = 16 * 1024;

/// Default for [`Limits::max_header_bytes`].
pub const DEFAULT_MAX_HEADER_BYTES: usize = 4 * 1024;

/// Bounds applied while parsing, before memory is spent.
///
/// Every limit is inclusive: a value equal to the limit is accepted, one more
/// is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one top-level element (stanza or nonza), markup included,
    /// counted from its `<` to the `>` of its end tag. The parser never hands
    /// the XML tokenizer more than one byte past this budget, so an oversized
    /// element fails with `TooLarge` as soon as the count passes the limit,
    /// without ever being buffered whole.
    pub max_stanza_bytes: usize,
    /// Element nesting depth inside one top-level element; the stanza itself
    /// is depth 1 and the stream element does not count.
    pub max_depth: u16,
    /// Attributes on one element, not counting namespace declarations
    /// (`xmlns`, `xmlns:p`), which the namespace resolver consumes; those are
    /// still bounded by `max_stanza_bytes`.
    pub max_attributes_per_element: u16,
    /// Elements in one top-level element, itself included. Bytes alone do not bound memory: a
    /// parsed element costs a few hundred bytes, and `<a/>` four on the wire, so a stanza of
    /// empty children would become a tree tens of times its size.
    pub max_elements_per_stanza: u32,
    /// Bytes of an element or attribute local name.
    pub max_name_bytes: usize,
    /// Bytes of one attribute value after entity expansion. The larger of this
    /// and `max_name_bytes` is also the tokenizer's token bound (rxml
    /// `max_token_length`), which caps its scratch buffer; text is split into
    /// chunks by the tokenizer, so character data is bounded by
    /// `max_stanza_bytes` only.
    pub max_attribute_value_bytes: usize,
    /// Bytes of the stream header, from the first byte of the document
    /// (the XML declaration, if any) to the `>` of `<stream:stream ...>`.
    pub max_header_bytes: usize,
}

impl Limits {
    /// Limits for a stream whose peer has authenticated.
    pub const fn authenticated() -> Self {
        Self {
            max_stanza_bytes: DEFAULT_MAX_STANZA_BYTES,
            max_depth: DEFAULT_MAX_DEPTH,
            max_attributes_per_element: DEFAULT_MAX_ATTRIBUTES_PER_ELEMENT,
            max_elements_per_stanza: DEFAULT_MAX_ELEMENTS_PER_STANZA,
            max_name_bytes: DEFAULT_MAX_NAME_BYTES,
            max_attribute_value_bytes: DEFAULT_MAX_ATTRIBUTE_VALUE_BYTES,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
        }
    }

    /// Limits for a stream before SASL succeeds: as [`Limits::authenticated`]
    /// with a stanza bound of [`DEFAULT_MAX_STANZA_BYTES_UNAUTHENTICATED`].
    pub const fn unauthenticated() -> Self {
        Self {
            max_stanza_bytes: DEFAULT_MAX_STANZA_BYTES_UNAUTHENTICATED,
            ..Self::authenticated()
        }
    }

    /// The token bound handed to rxml: the longest name or attribute value
    /// that may be accepted, so our own checks report the precise error.
    pub(crate) fn token_bytes(&self) -> usize {
        self.max_name_bytes.max(self.max_attribute_value_bytes)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::authenticated()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthenticated_differs_only_in_stanza_bytes() {
        let authenticated = Limits::authenticated();
        let unauthenticated = Limits::unauthenticated();
        assert_eq!(authenticated.max_stanza_bytes, 256 * 1024);
        assert_eq!(unauthenticated.max_stanza_bytes, 16 * 1024);
        assert_eq!(
            Limits {
                max_stanza_bytes: authenticated.max_stanza_bytes,
                ..unauthenticated
            },
            authenticated
        );
        assert_eq!(Limits::default(), authenticated);
    }

    #[test]
    fn token_bytes_is_the_larger_bound() {
        let limits = Limits {
            max_name_bytes: 10,
            max_attribute_value_bytes: 20,
            ..Limits::default()
        };
        assert_eq!(limits.token_bytes(), 20);
        let limits = Limits {
            max_name_bytes: 30,
            ..limits
        };
        assert_eq!(limits.token_bytes(), 30);
    }
}
