//! Characters XML 1.0 allows (§2.2, production `Char`), for text that reaches a stream without
//! having passed an XML parser: names from a foreign import, operator announcements, values
//! already in a database.
//!
//! Rust strings cannot hold surrogates, so what is left to refuse is the C0 controls other than
//! tab, line feed and carriage return, and U+FFFE and U+FFFF.

use std::borrow::Cow;

/// Whether XML 1.0 allows `c` in a document.
pub fn is_xml_char(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..
    )
}

/// The first character of `text` that XML 1.0 does not allow, if any.
pub fn first_illegal_xml_char(text: &str) -> Option<char> {
    text.chars().find(|&c| !is_xml_char(c))
}

/// `text` without the characters XML 1.0 does not allow, and how many were removed. Borrows
/// when there is nothing to remove, which is nearly always.
pub fn strip_illegal_xml_chars(text: &str) -> (Cow<'_, str>, usize) {
    if first_illegal_xml_char(text).is_none() {
        return (Cow::Borrowed(text), 0);
    }
    let kept: String = text.chars().filter(|&c| is_xml_char(c)).collect();
    let removed = text.chars().count() - kept.chars().count();
    (Cow::Owned(kept), removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_non_characters_are_illegal() {
        for c in [
            '\u{0}', '\u{1}', '\u{8}', '\u{b}', '\u{c}', '\u{1b}', '\u{1f}', '\u{fffe}', '\u{ffff}',
        ] {
            assert!(!is_xml_char(c), "{c:?}");
        }
        for c in [
            '\t',
            '\n',
            '\r',
            ' ',
            '\u{7f}',
            'é',
            '\u{d7ff}',
            '\u{e000}',
            '\u{fffd}',
            '\u{10000}',
            '\u{10ffff}',
        ] {
            assert!(is_xml_char(c), "{c:?}");
        }
    }

    #[test]
    fn stripping_reports_what_it_removed() {
        assert_eq!(
            strip_illegal_xml_chars("Roméo"),
            (Cow::Borrowed("Roméo"), 0)
        );
        assert_eq!(
            strip_illegal_xml_chars("R\u{1}om\u{e9}o\u{1b}\u{ffff}"),
            (Cow::Owned::<str>("Roméo".to_owned()), 3)
        );
        assert_eq!(first_illegal_xml_char("a\tb\u{2}c"), Some('\u{2}'));
        assert_eq!(first_illegal_xml_char("a\tb"), None);
    }
}
