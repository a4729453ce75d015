//! XEP-0203 (Delayed Delivery, 2.0) `<delay/>`: when and where a stanza was held before it was
//! delivered, such as an offline message's storage time.

use minidom::Element;

use crate::NS_DELAY;
use crate::datetime;

/// `<delay xmlns='urn:xmpp:delay' from='{from}' stamp='{XEP-0082 DateTime}'/>` for a stanza
/// `from` held since `stamp_unix_ms` (milliseconds since the Unix epoch, written with
/// milliseconds). Append it to the delayed stanza; a reason, if any, is its text.
pub fn delay(from: &str, stamp_unix_ms: u64) -> Element {
    Element::builder("delay", NS_DELAY)
        .attr(rxml::xml_ncname!("from").to_owned(), from)
        .attr(
            rxml::xml_ncname!("stamp").to_owned(),
            datetime::format_ms(stamp_unix_ms),
        )
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_the_holder_and_the_instant() {
        let element = delay("capulet.example", 1_764_097_236_123);
        assert!(element.is("delay", NS_DELAY));
        assert_eq!(element.attr("from"), Some("capulet.example"));
        assert_eq!(element.attr("stamp"), Some("2025-11-25T19:00:36.123Z"));
        assert_eq!(element.children().count(), 0);
        assert_eq!(element.text(), "");
    }
}
