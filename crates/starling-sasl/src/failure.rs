//! SASL failure conditions of RFC 6120 §6.5, each tied to its section.

use thiserror::Error;

/// A `<failure/>` condition (RFC 6120 §6.5). The engine sends it as
/// `<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><{element_name}/></failure>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum SaslFailure {
    /// §6.5.1 `<aborted/>`: the initiating entity sent `<abort/>`.
    #[error("aborted")]
    Aborted,
    /// §6.5.2 `<account-disabled/>`: the account is temporarily disabled.
    #[error("account-disabled")]
    AccountDisabled,
    /// §6.5.3 `<credentials-expired/>`: the credentials have expired.
    #[error("credentials-expired")]
    CredentialsExpired,
    /// §6.5.4 `<encryption-required/>`: the mechanism may be used only over a stream protected
    /// by TLS.
    #[error("encryption-required")]
    EncryptionRequired,
    /// §6.5.5 `<incorrect-encoding/>`: the data was not valid base64 (RFC 4648 §4).
    #[error("incorrect-encoding")]
    IncorrectEncoding,
    /// §6.5.6 `<invalid-authzid/>`: the authorization identity is not one this user may act as.
    #[error("invalid-authzid")]
    InvalidAuthzid,
    /// §6.5.7 `<invalid-mechanism/>`: the mechanism is not supported or not offered.
    #[error("invalid-mechanism")]
    InvalidMechanism,
    /// §6.5.8 `<malformed-request/>`: the data violates the mechanism's syntax.
    #[error("malformed-request")]
    MalformedRequest,
    /// §6.5.9 `<mechanism-too-weak/>`: the mechanism is weaker than policy allows.
    #[error("mechanism-too-weak")]
    MechanismTooWeak,
    /// §6.5.10 `<not-authorized/>`: the credentials were not proper.
    #[error("not-authorized")]
    NotAuthorized,
    /// §6.5.11 `<temporary-auth-failure/>`: a temporary error within the receiving entity.
    #[error("temporary-auth-failure")]
    TemporaryAuthFailure,
}

impl SaslFailure {
    /// The child element name inside `<failure/>`.
    pub fn element_name(self) -> &'static str {
        match self {
            SaslFailure::Aborted => "aborted",
            SaslFailure::AccountDisabled => "account-disabled",
            SaslFailure::CredentialsExpired => "credentials-expired",
            SaslFailure::EncryptionRequired => "encryption-required",
            SaslFailure::IncorrectEncoding => "incorrect-encoding",
            SaslFailure::InvalidAuthzid => "invalid-authzid",
            SaslFailure::InvalidMechanism => "invalid-mechanism",
            SaslFailure::MalformedRequest => "malformed-request",
            SaslFailure::MechanismTooWeak => "mechanism-too-weak",
            SaslFailure::NotAuthorized => "not-authorized",
            SaslFailure::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_names_match_rfc6120_and_display() {
        let all = [
            (SaslFailure::Aborted, "aborted"),
            (SaslFailure::AccountDisabled, "account-disabled"),
            (SaslFailure::CredentialsExpired, "credentials-expired"),
            (SaslFailure::EncryptionRequired, "encryption-required"),
            (SaslFailure::IncorrectEncoding, "incorrect-encoding"),
            (SaslFailure::InvalidAuthzid, "invalid-authzid"),
            (SaslFailure::InvalidMechanism, "invalid-mechanism"),
            (SaslFailure::MalformedRequest, "malformed-request"),
            (SaslFailure::MechanismTooWeak, "mechanism-too-weak"),
            (SaslFailure::NotAuthorized, "not-authorized"),
            (SaslFailure::TemporaryAuthFailure, "temporary-auth-failure"),
        ];
        for (failure, name) in all {
            assert_eq!(failure.element_name(), name);
            assert_eq!(failure.to_string(), name);
        }
    }
}
