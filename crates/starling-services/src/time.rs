//! XEP-0202 entity time: UTC in the XEP-0082 DateTime profile.

use minidom::Element;
use starling_stanza::NS_TIME;
use starling_stanza::datetime;

/// `<time xmlns='urn:xmpp:time'><tzo>+00:00</tzo><utc>…Z</utc></time>` for this instant.
/// The server reports UTC (offset +00:00): it has no meaningful local zone of its own.
pub fn entity_time(unix_seconds: u64) -> Element {
    Element::builder("time", NS_TIME)
        .append(Element::builder("tzo", NS_TIME).append("+00:00").build())
        .append(
            Element::builder("utc", NS_TIME)
                .append(datetime::format_seconds(unix_seconds))
                .build(),
        )
        .build()
}
