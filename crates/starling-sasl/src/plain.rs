//! PLAIN message syntax (RFC 4616 §2).

use crate::failure::SaslFailure;

/// A parsed and SASLprep-ed PLAIN message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PlainMessage {
    /// The authorization identity; `None` when the client sent none.
    pub(crate) authzid: Option<String>,
    /// The authentication identity after SASLprep.
    pub(crate) authcid: String,
    /// The password after SASLprep.
    pub(crate) password: String,
}

/// Parses `message = [authzid] UTF8NUL authcid UTF8NUL passwd` (RFC 4616 §2).
///
/// Missing or extra NULs, empty authcid or password, invalid UTF-8 and strings SASLprep
/// rejects are all `<malformed-request/>` (RFC 6120 §6.5.8).
pub(crate) fn parse(message: &[u8]) -> Result<PlainMessage, SaslFailure> {
    let text = std::str::from_utf8(message).map_err(|_| SaslFailure::MalformedRequest)?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslFailure::MalformedRequest);
    };
    // RFC 4616 §2: authcid and passwd are 1*SAFE; authzid is optional.
    if authcid.is_empty() || password.is_empty() {
        return Err(SaslFailure::MalformedRequest);
    }
    let authcid = prepare(authcid)?;
    let password = prepare(password)?;
    if authcid.is_empty() || password.is_empty() {
        return Err(SaslFailure::MalformedRequest);
    }
    Ok(PlainMessage {
        authzid: (!authzid.is_empty()).then(|| authzid.to_owned()),
        authcid,
        password,
    })
}

/// SASLprep (RFC 4013) as RFC 4616 §2 asks for authcid and passwd.
pub(crate) fn prepare(text: &str) -> Result<String, SaslFailure> {
    stringprep::saslprep(text)
        .map(|prepared| prepared.into_owned())
        .map_err(|_| SaslFailure::MalformedRequest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(
        authzid: Option<&str>,
        authcid: &str,
        password: &str,
    ) -> Result<PlainMessage, SaslFailure> {
        Ok(PlainMessage {
            authzid: authzid.map(str::to_owned),
            authcid: authcid.to_owned(),
            password: password.to_owned(),
        })
    }

    #[test]
    fn parses_without_authzid() {
        assert_eq!(
            parse(b"\0tim\0tanstaaftanstaaf"),
            ok(None, "tim", "tanstaaftanstaaf")
        );
    }

    #[test]
    fn parses_with_authzid() {
        assert_eq!(
            parse(b"Ursel@localhost\0Kurt\0xipj3plmq"),
            ok(Some("Ursel@localhost"), "Kurt", "xipj3plmq")
        );
    }

    #[test]
    fn applies_saslprep() {
        assert_eq!(
            parse("\0us\u{AD}er\0pass\u{A0}word".as_bytes()),
            ok(None, "user", "pass word")
        );
    }

    #[test]
    fn rejects_malformed_messages() {
        let cases: [&[u8]; 10] = [
            b"",
            b"\0",
            b"user\0pass",
            b"\0user",
            b"\0\0pass",
            b"\0user\0",
            b"\0user\0pass\0",
            b"\0user\0pa\xffss",
            "\0user\0a\u{7}b".as_bytes(),
            "\0\u{AD}\0pass".as_bytes(),
        ];
        for case in cases {
            assert_eq!(parse(case), Err(SaslFailure::MalformedRequest), "{case:?}");
        }
    }
}
