//! The stream-level elements of XEP-0198: what a client sends, parsed; what the server
//! answers, rendered to bytes.

use minidom::Element;
use starling_stanza::{NS_SM, NS_STANZA_ERRORS};
use starling_xml::escape_attr;

/// A stream management element from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `<enable/>` (§3), with `resume` and the client's preferred `max` (seconds).
    Enable {
        /// Whether the client asks for resumption.
        resume: bool,
        /// The client's preferred maximum resumption time.
        max: Option<u32>,
    },
    /// `<r/>`: please acknowledge (§4).
    AckRequest,
    /// `<a h/>`: the client handled `h` stanzas (§4).
    Ack {
        /// Stanzas handled, mod 2^32.
        h: u32,
    },
    /// `<resume previd h/>` (§5).
    Resume {
        /// The id of the session to resume.
        previd: String,
        /// Stanzas the client handled on the old stream.
        h: u32,
    },
}

/// A stream management element that cannot be understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NonzaError {
    /// Not one of the elements a client sends (`<enabled/>`, `<failed/>`, an unknown name).
    #[error("<{0}/> is not a stream management request")]
    UnknownElement(&'static str),
    /// A required attribute is missing or is not what §3–§5 say it must be.
    #[error("stream management element with a missing or invalid '{0}'")]
    BadAttribute(&'static str),
}

/// Parses a top-level element of the `urn:xmpp:sm:3` namespace; `None` for any other
/// namespace.
pub fn parse(element: &Element) -> Option<Result<Request, NonzaError>> {
    if element.ns() != NS_SM {
        return None;
    }
    Some(match element.name() {
        "enable" => parse_enable(element),
        "r" => Ok(Request::AckRequest),
        "a" => counter(element, "h").map(|h| Request::Ack { h }),
        "resume" => {
            let previd = element.attr("previd").filter(|id| !id.is_empty());
            match (previd, counter(element, "h")) {
                (Some(previd), Ok(h)) => Ok(Request::Resume {
                    previd: previd.to_owned(),
                    h,
                }),
                (None, _) => Err(NonzaError::BadAttribute("previd")),
                (_, Err(err)) => Err(err),
            }
        }
        "enabled" => Err(NonzaError::UnknownElement("enabled")),
        "failed" => Err(NonzaError::UnknownElement("failed")),
        "resumed" => Err(NonzaError::UnknownElement("resumed")),
        _ => Err(NonzaError::UnknownElement("unknown")),
    })
}

fn parse_enable(element: &Element) -> Result<Request, NonzaError> {
    // §3: 'resume' is an xs:boolean.
    let resume = match element.attr("resume") {
        None | Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(_) => return Err(NonzaError::BadAttribute("resume")),
    };
    let max = match element.attr("max") {
        None => None,
        Some(text) => Some(
            text.parse::<u32>()
                .map_err(|_| NonzaError::BadAttribute("max"))?,
        ),
    };
    Ok(Request::Enable { resume, max })
}

/// An xs:unsignedInt attribute (§4: `h` is one).
fn counter(element: &Element, name: &'static str) -> Result<u32, NonzaError> {
    element
        .attr(name)
        .and_then(|text| text.parse::<u32>().ok())
        .ok_or(NonzaError::BadAttribute(name))
}

/// Why a request failed (§6), with the stanza error condition `<failed/>` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// `<enable/>` before binding or twice, `<resume/>` on a bound stream (§3, §6).
    UnexpectedRequest,
    /// No session with that `previd` can be resumed (§5).
    ItemNotFound,
    /// Resumption was asked for a stream that is not ours to resume (another account's).
    NotAuthorized,
    /// A stream management element that cannot be understood.
    BadRequest,
}

impl Failure {
    fn condition(self) -> &'static str {
        match self {
            Failure::UnexpectedRequest => "unexpected-request",
            Failure::ItemNotFound => "item-not-found",
            Failure::NotAuthorized => "not-authorized",
            Failure::BadRequest => "bad-request",
        }
    }
}

/// The `<sm/>` stream feature (§2).
pub fn sm_feature() -> Element {
    Element::builder("sm", NS_SM).build()
}

/// `<enabled/>` (§3): with `resumption`, its id and the window granted in seconds.
pub fn enabled(resumption: Option<(&str, u32)>) -> Vec<u8> {
    match resumption {
        Some((id, max)) => format!(
            "<enabled xmlns='{NS_SM}' id='{}' resume='true' max='{max}'/>",
            escape_attr(id)
        ),
        None => format!("<enabled xmlns='{NS_SM}'/>"),
    }
    .into_bytes()
}

/// `<failed/>` with its condition (§6); `h` when the server knows how many stanzas of the
/// old stream it handled (§5, v1.6).
pub fn failed(failure: Failure, h: Option<u32>) -> Vec<u8> {
    let h = h.map(|h| format!(" h='{h}'")).unwrap_or_default();
    format!(
        "<failed xmlns='{NS_SM}'{h}><{} xmlns='{NS_STANZA_ERRORS}'/></failed>",
        failure.condition()
    )
    .into_bytes()
}

/// `<resumed previd h/>` (§5).
pub fn resumed(previd: &str, h: u32) -> Vec<u8> {
    format!(
        "<resumed xmlns='{NS_SM}' previd='{}' h='{h}'/>",
        escape_attr(previd)
    )
    .into_bytes()
}

/// `<a h/>` (§4).
pub fn ack(h: u32) -> Vec<u8> {
    format!("<a xmlns='{NS_SM}' h='{h}'/>").into_bytes()
}

/// `<r/>` (§4).
pub fn ack_request() -> Vec<u8> {
    format!("<r xmlns='{NS_SM}'/>").into_bytes()
}

/// The application condition of the stream error for an `h` above the count sent (§4).
pub fn handled_count_too_high(h: u32, sent: u32) -> Element {
    Element::builder("handled-count-too-high", NS_SM)
        .attr(minidom::rxml::xml_ncname!("h").into(), h.to_string())
        .attr(
            minidom::rxml::xml_ncname!("send-count").into(),
            sent.to_string(),
        )
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    #[test]
    fn parses_what_a_client_sends() {
        assert_eq!(
            parse(&el(
                "<enable xmlns='urn:xmpp:sm:3' resume='true' max='600'/>"
            )),
            Some(Ok(Request::Enable {
                resume: true,
                max: Some(600)
            }))
        );
        assert_eq!(
            parse(&el("<enable xmlns='urn:xmpp:sm:3'/>")),
            Some(Ok(Request::Enable {
                resume: false,
                max: None
            }))
        );
        assert_eq!(
            parse(&el("<r xmlns='urn:xmpp:sm:3'/>")),
            Some(Ok(Request::AckRequest))
        );
        assert_eq!(
            parse(&el("<a xmlns='urn:xmpp:sm:3' h='4294967295'/>")),
            Some(Ok(Request::Ack { h: u32::MAX }))
        );
        assert_eq!(
            parse(&el("<resume xmlns='urn:xmpp:sm:3' previd='x1' h='3'/>")),
            Some(Ok(Request::Resume {
                previd: "x1".into(),
                h: 3
            }))
        );
        assert_eq!(parse(&el("<r xmlns='urn:xmpp:sm:2'/>")), None);
    }

    #[test]
    fn refuses_what_is_malformed() {
        for (xml, expected) in [
            ("<a xmlns='urn:xmpp:sm:3'/>", NonzaError::BadAttribute("h")),
            (
                "<a xmlns='urn:xmpp:sm:3' h='-1'/>",
                NonzaError::BadAttribute("h"),
            ),
            (
                "<a xmlns='urn:xmpp:sm:3' h='4294967296'/>",
                NonzaError::BadAttribute("h"),
            ),
            (
                "<resume xmlns='urn:xmpp:sm:3' h='1'/>",
                NonzaError::BadAttribute("previd"),
            ),
            (
                "<resume xmlns='urn:xmpp:sm:3' previd='p'/>",
                NonzaError::BadAttribute("h"),
            ),
            (
                "<enable xmlns='urn:xmpp:sm:3' resume='yes'/>",
                NonzaError::BadAttribute("resume"),
            ),
            (
                "<enable xmlns='urn:xmpp:sm:3' max='soon'/>",
                NonzaError::BadAttribute("max"),
            ),
            (
                "<enabled xmlns='urn:xmpp:sm:3'/>",
                NonzaError::UnknownElement("enabled"),
            ),
        ] {
            assert_eq!(parse(&el(xml)), Some(Err(expected)), "{xml}");
        }
    }

    #[test]
    fn renders_the_server_side() {
        assert_eq!(
            String::from_utf8(enabled(Some(("a'b", 300)))).unwrap(),
            "<enabled xmlns='urn:xmpp:sm:3' id='a&apos;b' resume='true' max='300'/>"
        );
        assert_eq!(
            String::from_utf8(failed(Failure::ItemNotFound, Some(2))).unwrap(),
            "<failed xmlns='urn:xmpp:sm:3' h='2'><item-not-found \
             xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>"
        );
        assert_eq!(
            String::from_utf8(resumed("id", 7)).unwrap(),
            "<resumed xmlns='urn:xmpp:sm:3' previd='id' h='7'/>"
        );
        assert_eq!(
            String::from_utf8(ack(0)).unwrap(),
            "<a xmlns='urn:xmpp:sm:3' h='0'/>"
        );
        let too_high = handled_count_too_high(9, 4);
        assert_eq!(too_high.attr("h"), Some("9"));
        assert_eq!(too_high.attr("send-count"), Some("4"));
    }
}
