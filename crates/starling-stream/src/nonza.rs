//! The non-stanza elements of negotiation (RFC 6120 §4.3.2, §5, §6) rendered to bytes.

use starling_sasl::{ChannelBinding, ChannelBindingType, Mechanism, SaslFailure};
use starling_stanza::{NS_SASL, NS_SASL_CB, NS_STREAM_ERRORS, NS_TLS, StreamErrorCondition};
use starling_xml::{escape_attr, escape_text};

/// What the features element of the current stream offers.
pub(crate) enum Features<'a> {
    /// Before TLS, when TLS is mandatory-to-negotiate: STARTTLS only (§5.3.1).
    StartTlsOnly,
    /// Before authentication: optionally STARTTLS, then SASL mechanisms.
    Sasl {
        starttls: bool,
        mechanisms: &'a [Mechanism],
        channel_bindings: &'a [ChannelBinding],
        /// Features modules contribute at this stage.
        extra: &'a [minidom::Element],
    },
    /// After authentication: resource binding, the legacy session feature, stream
    /// management (XEP-0198 §2) and extras.
    Bind {
        extra: &'a [minidom::Element],
        stream_management: bool,
    },
}

pub(crate) fn features(features: &Features<'_>) -> Vec<u8> {
    let mut out = String::from("<stream:features>");
    match features {
        Features::StartTlsOnly => {
            out.push_str(&format!(
                "<starttls xmlns='{NS_TLS}'><required/></starttls>"
            ));
        }
        Features::Sasl {
            starttls,
            mechanisms,
            channel_bindings,
            extra,
        } => {
            if *starttls {
                out.push_str(&format!("<starttls xmlns='{NS_TLS}'/>"));
            }
            if !mechanisms.is_empty() {
                out.push_str(&format!("<mechanisms xmlns='{NS_SASL}'>"));
                for mechanism in *mechanisms {
                    out.push_str(&format!("<mechanism>{}</mechanism>", mechanism.name()));
                }
                out.push_str("</mechanisms>");
            }
            // XEP-0440 (v0.4): tell the client which channel-binding types it may use.
            if !channel_bindings.is_empty() {
                out.push_str(&format!("<sasl-channel-binding xmlns='{NS_SASL_CB}'>"));
                for binding in *channel_bindings {
                    out.push_str(&format!(
                        "<channel-binding type='{}'/>",
                        channel_binding_name(binding.kind)
                    ));
                }
                out.push_str("</sasl-channel-binding>");
            }
            for feature in *extra {
                out.push_str(&String::from_utf8_lossy(&starling_xml::write_element(
                    feature,
                )));
            }
        }
        Features::Bind {
            extra,
            stream_management,
        } => {
            let mut bytes = out.into_bytes();
            bytes.extend_from_slice(&starling_xml::write_element(&starling_bind::bind_feature()));
            bytes.extend_from_slice(&starling_xml::write_element(
                &starling_bind::session_feature(),
            ));
            if *stream_management {
                bytes.extend_from_slice(&starling_xml::write_element(&starling_sm::sm_feature()));
            }
            for feature in *extra {
                bytes.extend_from_slice(&starling_xml::write_element(feature));
            }
            bytes.extend_from_slice(b"</stream:features>");
            return bytes;
        }
    }
    out.push_str("</stream:features>");
    out.into_bytes()
}

fn channel_binding_name(kind: ChannelBindingType) -> &'static str {
    match kind {
        ChannelBindingType::TlsExporter => "tls-exporter",
        ChannelBindingType::TlsServerEndPoint => "tls-server-end-point",
    }
}

/// `<stream:error>` with an optional text, followed by the closing tag (§4.9.1.1, §4.9.2).
/// With `application`, its element follows the text (RFC 6120 §4.9.4).
pub(crate) fn stream_error(
    condition: StreamErrorCondition,
    text: Option<&str>,
    application: Option<&minidom::Element>,
) -> Vec<u8> {
    let mut out = format!(
        "<stream:error><{} xmlns='{NS_STREAM_ERRORS}'/>",
        condition.name()
    )
    .into_bytes();
    if let Some(text) = text {
        out.extend_from_slice(
            format!(
                "<text xmlns='{NS_STREAM_ERRORS}' xml:lang='en'>{}</text>",
                escape_text(text)
            )
            .as_bytes(),
        );
    }
    if let Some(application) = application {
        out.extend_from_slice(&starling_xml::write_element(application));
    }
    out.extend_from_slice(b"</stream:error></stream:stream>");
    out
}

pub(crate) fn tls_proceed() -> Vec<u8> {
    format!("<proceed xmlns='{NS_TLS}'/>").into_bytes()
}

pub(crate) fn tls_failure() -> Vec<u8> {
    format!("<failure xmlns='{NS_TLS}'/></stream:stream>").into_bytes()
}

pub(crate) fn sasl_challenge(data: &[u8]) -> Vec<u8> {
    format!(
        "<challenge xmlns='{NS_SASL}'>{}</challenge>",
        starling_sasl::encode_payload(data)
    )
    .into_bytes()
}

pub(crate) fn sasl_success(additional_data: Option<&[u8]>) -> Vec<u8> {
    match additional_data {
        Some(data) => format!(
            "<success xmlns='{NS_SASL}'>{}</success>",
            starling_sasl::encode_payload(data)
        )
        .into_bytes(),
        None => format!("<success xmlns='{NS_SASL}'/>").into_bytes(),
    }
}

pub(crate) fn sasl_failure(failure: SaslFailure) -> Vec<u8> {
    format!(
        "<failure xmlns='{NS_SASL}'><{}/></failure>",
        failure.element_name()
    )
    .into_bytes()
}

/// A XEP-0199 (v2.0.1) server-to-client ping, §4.2.
pub(crate) fn ping(id: &str, from: &str, to: &str) -> Vec<u8> {
    format!(
        "<iq type='get' id='{}' from='{}' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
        escape_attr(id),
        escape_attr(from),
        escape_attr(to)
    )
    .into_bytes()
}
