//! RFC 6120 stream error (§4.9.3) and stanza error (§8.3.3) conditions.

use minidom::Element;

use crate::{NS_STANZA_ERRORS, NS_STREAM_ERRORS, NS_STREAMS};

/// A defined stream error condition, RFC 6120 §4.9.3. Each one ends the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamErrorCondition {
    /// §4.9.3.1: the entity sent XML that cannot be processed.
    BadFormat,
    /// §4.9.3.2: an unsupported namespace prefix was used.
    BadNamespacePrefix,
    /// §4.9.3.3: a new stream for the same identity replaced this one.
    Conflict,
    /// §4.9.3.4: the peer stayed silent or unresponsive too long.
    ConnectionTimeout,
    /// §4.9.3.5: the `to` of the header names a host that no longer lives here.
    HostGone,
    /// §4.9.3.6: the `to` of the header names a host this server does not serve.
    HostUnknown,
    /// §4.9.3.7: a stanza lacked an address that is required here.
    ImproperAddressing,
    /// §4.9.3.8: a misconfiguration or internal error.
    InternalServerError,
    /// §4.9.3.9: a `from` did not match an authorised JID.
    InvalidFrom,
    /// §4.9.3.10: wrong stream or content namespace.
    InvalidNamespace,
    /// §4.9.3.11: invalid XML as far as XMPP is concerned.
    InvalidXml,
    /// §4.9.3.12: data was sent before the stream was authenticated.
    NotAuthorized,
    /// §4.9.3.13: the XML was not well-formed.
    NotWellFormed,
    /// §4.9.3.14: a local policy (such as a size limit) was broken.
    PolicyViolation,
    /// §4.9.3.15: the server cannot reach a remote server.
    RemoteConnectionFailed,
    /// §4.9.3.16: the server is closing the stream to reset security state.
    Reset,
    /// §4.9.3.17: the server lacks resources to serve the stream.
    ResourceConstraint,
    /// §4.9.3.18: restricted XML (comments, PIs, DTDs, entity references) was sent.
    RestrictedXml,
    /// §4.9.3.19: the stream should be re-established at another host.
    SeeOtherHost,
    /// §4.9.3.20: the server is shutting down.
    SystemShutdown,
    /// §4.9.3.21: no other condition applies.
    UndefinedCondition,
    /// §4.9.3.22: the stream used an encoding other than UTF-8.
    UnsupportedEncoding,
    /// §4.9.3.23: a mandatory-to-negotiate feature was not supported by the peer.
    UnsupportedFeature,
    /// §4.9.3.24: a first-level child of the stream is not supported.
    UnsupportedStanzaType,
    /// §4.9.3.25: the stream `version` is not supported.
    UnsupportedVersion,
}

impl StreamErrorCondition {
    /// The element name of the condition.
    pub fn name(self) -> &'static str {
        match self {
            Self::BadFormat => "bad-format",
            Self::BadNamespacePrefix => "bad-namespace-prefix",
            Self::Conflict => "conflict",
            Self::ConnectionTimeout => "connection-timeout",
            Self::HostGone => "host-gone",
            Self::HostUnknown => "host-unknown",
            Self::ImproperAddressing => "improper-addressing",
            Self::InternalServerError => "internal-server-error",
            Self::InvalidFrom => "invalid-from",
            Self::InvalidNamespace => "invalid-namespace",
            Self::InvalidXml => "invalid-xml",
            Self::NotAuthorized => "not-authorized",
            Self::NotWellFormed => "not-well-formed",
            Self::PolicyViolation => "policy-violation",
            Self::RemoteConnectionFailed => "remote-connection-failed",
            Self::Reset => "reset",
            Self::ResourceConstraint => "resource-constraint",
            Self::RestrictedXml => "restricted-xml",
            Self::SeeOtherHost => "see-other-host",
            Self::SystemShutdown => "system-shutdown",
            Self::UndefinedCondition => "undefined-condition",
            Self::UnsupportedEncoding => "unsupported-encoding",
            Self::UnsupportedFeature => "unsupported-feature",
            Self::UnsupportedStanzaType => "unsupported-stanza-type",
            Self::UnsupportedVersion => "unsupported-version",
        }
    }

    /// `<stream:error>` carrying this condition and an optional human-readable text (§4.9.2).
    pub fn to_element(self, text: Option<&str>) -> Element {
        let mut builder = Element::builder("error", NS_STREAMS)
            .append(Element::builder(self.name(), NS_STREAM_ERRORS).build());
        if let Some(text) = text {
            builder = builder.append(
                Element::builder("text", NS_STREAM_ERRORS)
                    .attr_ns(
                        rxml::Namespace::XML,
                        rxml::xml_ncname!("lang").to_owned(),
                        "en",
                    )
                    .append(text)
                    .build(),
            );
        }
        builder.build()
    }
}

/// The `type` of a stanza error, RFC 6120 §8.3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// Retry after providing credentials.
    Auth,
    /// Do not retry.
    Cancel,
    /// Proceed; the condition was only a warning.
    Continue,
    /// Retry after changing the data sent.
    Modify,
    /// Retry after waiting.
    Wait,
}

impl ErrorType {
    /// The attribute value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Cancel => "cancel",
            Self::Continue => "continue",
            Self::Modify => "modify",
            Self::Wait => "wait",
        }
    }
}

/// A defined stanza error condition, RFC 6120 §8.3.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StanzaErrorCondition {
    /// §8.3.3.1
    BadRequest,
    /// §8.3.3.2
    Conflict,
    /// §8.3.3.3
    FeatureNotImplemented,
    /// §8.3.3.4
    Forbidden,
    /// §8.3.3.5
    Gone,
    /// §8.3.3.6
    InternalServerError,
    /// §8.3.3.7
    ItemNotFound,
    /// §8.3.3.8
    JidMalformed,
    /// §8.3.3.9
    NotAcceptable,
    /// §8.3.3.10
    NotAllowed,
    /// §8.3.3.11
    NotAuthorized,
    /// §8.3.3.12
    PolicyViolation,
    /// §8.3.3.13
    RecipientUnavailable,
    /// §8.3.3.14
    Redirect,
    /// §8.3.3.15
    RegistrationRequired,
    /// §8.3.3.16
    RemoteServerNotFound,
    /// §8.3.3.17
    RemoteServerTimeout,
    /// §8.3.3.18
    ResourceConstraint,
    /// §8.3.3.19
    ServiceUnavailable,
    /// §8.3.3.20
    SubscriptionRequired,
    /// §8.3.3.21
    UndefinedCondition,
    /// §8.3.3.22
    UnexpectedRequest,
}

impl StanzaErrorCondition {
    /// The element name of the condition.
    pub fn name(self) -> &'static str {
        match self {
            Self::BadRequest => "bad-request",
            Self::Conflict => "conflict",
            Self::FeatureNotImplemented => "feature-not-implemented",
            Self::Forbidden => "forbidden",
            Self::Gone => "gone",
            Self::InternalServerError => "internal-server-error",
            Self::ItemNotFound => "item-not-found",
            Self::JidMalformed => "jid-malformed",
            Self::NotAcceptable => "not-acceptable",
            Self::NotAllowed => "not-allowed",
            Self::NotAuthorized => "not-authorized",
            Self::PolicyViolation => "policy-violation",
            Self::RecipientUnavailable => "recipient-unavailable",
            Self::Redirect => "redirect",
            Self::RegistrationRequired => "registration-required",
            Self::RemoteServerNotFound => "remote-server-not-found",
            Self::RemoteServerTimeout => "remote-server-timeout",
            Self::ResourceConstraint => "resource-constraint",
            Self::ServiceUnavailable => "service-unavailable",
            Self::SubscriptionRequired => "subscription-required",
            Self::UndefinedCondition => "undefined-condition",
            Self::UnexpectedRequest => "unexpected-request",
        }
    }

    /// The error type RFC 6120 §8.3.3 gives in its example for this condition.
    pub fn default_type(self) -> ErrorType {
        match self {
            Self::BadRequest | Self::JidMalformed | Self::NotAcceptable | Self::PolicyViolation => {
                ErrorType::Modify
            }
            Self::Redirect => ErrorType::Modify,
            Self::Forbidden
            | Self::NotAuthorized
            | Self::RegistrationRequired
            | Self::SubscriptionRequired => ErrorType::Auth,
            Self::RecipientUnavailable | Self::RemoteServerTimeout | Self::ResourceConstraint => {
                ErrorType::Wait
            }
            Self::UnexpectedRequest => ErrorType::Wait,
            Self::Conflict
            | Self::FeatureNotImplemented
            | Self::Gone
            | Self::InternalServerError
            | Self::ItemNotFound
            | Self::NotAllowed
            | Self::RemoteServerNotFound
            | Self::ServiceUnavailable
            | Self::UndefinedCondition => ErrorType::Cancel,
        }
    }

    /// `<error type='…'><condition xmlns='…stanzas'/></error>` in the `jabber:client` namespace.
    pub fn to_element(self) -> Element {
        Element::builder("error", crate::NS_CLIENT)
            .attr(
                rxml::xml_ncname!("type").to_owned(),
                self.default_type().name(),
            )
            .append(Element::builder(self.name(), NS_STANZA_ERRORS).build())
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_stream(cond: StreamErrorCondition, text: Option<&str>, expected: &str) {
        let mut out = Vec::new();
        cond.to_element(text).write_to(&mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn stream_error_carries_condition_in_streams_namespace() {
        check_stream(
            StreamErrorCondition::HostUnknown,
            None,
            "<error xmlns='http://etherx.jabber.org/streams'><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></error>",
        );
    }

    #[test]
    fn stream_error_text_is_escaped() {
        check_stream(
            StreamErrorCondition::PolicyViolation,
            Some("limit <16384> bytes"),
            "<error xmlns='http://etherx.jabber.org/streams'><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>limit &lt;16384&gt; bytes</text></error>",
        );
    }

    #[test]
    fn stanza_error_types_follow_rfc_examples() {
        assert_eq!(
            StanzaErrorCondition::ServiceUnavailable.default_type(),
            ErrorType::Cancel
        );
        assert_eq!(
            StanzaErrorCondition::BadRequest.default_type(),
            ErrorType::Modify
        );
        assert_eq!(
            StanzaErrorCondition::Forbidden.default_type(),
            ErrorType::Auth
        );
        assert_eq!(
            StanzaErrorCondition::ResourceConstraint.default_type(),
            ErrorType::Wait
        );
    }
}
