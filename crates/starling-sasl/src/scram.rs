//! SCRAM message syntax and proof arithmetic (RFC 5802 §3, §5, §7; RFC 7677).
//!
//! Parsing here is purely syntactic: every violation of the RFC 5802 §7 grammar is
//! `<malformed-request/>` (RFC 6120 §6.5.8). Policy (channel binding rules, authzid, proof
//! verification) lives in `session`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use subtle::ConstantTimeEq;

use crate::credentials::{SALT_BYTES, ScramHash, ScramKeys};
use crate::failure::SaslFailure;
use crate::plain::prepare;

/// The `gs2-cbind-flag` of a client-first-message (RFC 5802 §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CbindFlag {
    /// `n`: the client does not support channel binding.
    NotSupported,
    /// `y`: the client supports channel binding but thinks the server does not.
    ServerUnsupported,
    /// `p=cb-name`: the client requires this channel binding.
    Required(String),
}

/// A parsed client-first-message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientFirst {
    /// The channel binding flag.
    pub(crate) cbind: CbindFlag,
    /// The decoded `a=` authzid, if any.
    pub(crate) authzid: Option<String>,
    /// The GS2 header exactly as sent, with its trailing comma; `c=` must repeat it.
    pub(crate) gs2_header: String,
    /// client-first-message-bare exactly as sent; it starts the AuthMessage.
    pub(crate) bare: String,
    /// The decoded `n=` username after SASLprep.
    pub(crate) username: String,
    /// The client nonce.
    pub(crate) nonce: String,
}

/// A parsed client-final-message, borrowing from the message text.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ClientFinal<'a> {
    /// The decoded `c=` channel binding input.
    pub(crate) channel_binding: Vec<u8>,
    /// The `r=` nonce.
    pub(crate) nonce: &'a str,
    /// client-final-message-without-proof exactly as sent; it ends the AuthMessage.
    pub(crate) without_proof: &'a str,
    /// The decoded `p=` proof.
    pub(crate) proof: Vec<u8>,
}

/// Parses `gs2-header client-first-message-bare` (RFC 5802 §7).
///
/// A `m=` reserved extension is `<malformed-request/>`: RFC 5802 §5.1 says its presence MUST
/// make authentication fail, and it is a request this implementation cannot process rather
/// than a credential problem, so `<not-authorized/>` would mislead the client.
pub(crate) fn parse_client_first(message: &[u8]) -> Result<ClientFirst, SaslFailure> {
    let text = std::str::from_utf8(message).map_err(|_| SaslFailure::MalformedRequest)?;
    let (flag, rest) = text.split_once(',').ok_or(SaslFailure::MalformedRequest)?;
    let (authzid, bare) = rest.split_once(',').ok_or(SaslFailure::MalformedRequest)?;
    let gs2_header_len = flag.len() + authzid.len() + 2;
    let gs2_header = text
        .get(..gs2_header_len)
        .ok_or(SaslFailure::MalformedRequest)?;

    let cbind = match flag {
        "n" => CbindFlag::NotSupported,
        "y" => CbindFlag::ServerUnsupported,
        _ => {
            let name = flag
                .strip_prefix("p=")
                .ok_or(SaslFailure::MalformedRequest)?;
            if !is_cb_name(name) {
                return Err(SaslFailure::MalformedRequest);
            }
            CbindFlag::Required(name.to_owned())
        }
    };
    let authzid = match authzid {
        "" => None,
        _ => {
            let name = authzid
                .strip_prefix("a=")
                .ok_or(SaslFailure::MalformedRequest)?;
            Some(decode_saslname(name)?)
        }
    };

    let mut attributes = bare.split(',');
    // A leading `m=` (reserved-mext) fails here too: the first attribute must be `n=`.
    let username = attributes
        .next()
        .and_then(|attr| attr.strip_prefix("n="))
        .ok_or(SaslFailure::MalformedRequest)?;
    let username = prepare(&decode_saslname(username)?)?;
    if username.is_empty() {
        return Err(SaslFailure::MalformedRequest);
    }
    let nonce = attributes
        .next()
        .and_then(|attr| attr.strip_prefix("r="))
        .ok_or(SaslFailure::MalformedRequest)?;
    if !is_nonce(nonce) {
        return Err(SaslFailure::MalformedRequest);
    }
    // RFC 5802 §5.1: unknown optional extensions are ignored, but must be well-formed.
    if !attributes.all(is_extension) {
        return Err(SaslFailure::MalformedRequest);
    }

    Ok(ClientFirst {
        cbind,
        authzid,
        gs2_header: gs2_header.to_owned(),
        bare: bare.to_owned(),
        username,
        nonce: nonce.to_owned(),
    })
}

/// Parses `channel-binding "," nonce ["," extensions] "," proof` (RFC 5802 §7).
pub(crate) fn parse_client_final(message: &[u8]) -> Result<ClientFinal<'_>, SaslFailure> {
    let text = std::str::from_utf8(message).map_err(|_| SaslFailure::MalformedRequest)?;
    let (without_proof, proof) = text.rsplit_once(',').ok_or(SaslFailure::MalformedRequest)?;
    let proof = proof
        .strip_prefix("p=")
        .and_then(decode_base64)
        .ok_or(SaslFailure::MalformedRequest)?;

    let mut attributes = without_proof.split(',');
    let channel_binding = attributes
        .next()
        .and_then(|attr| attr.strip_prefix("c="))
        .and_then(decode_base64)
        .ok_or(SaslFailure::MalformedRequest)?;
    let nonce = attributes
        .next()
        .and_then(|attr| attr.strip_prefix("r="))
        .ok_or(SaslFailure::MalformedRequest)?;
    if !is_nonce(nonce) || !attributes.all(is_extension) {
        return Err(SaslFailure::MalformedRequest);
    }
    Ok(ClientFinal {
        channel_binding,
        nonce,
        without_proof,
        proof,
    })
}

/// server-first-message: `r=c-nonce s-nonce,s=base64(salt),i=iterations` (RFC 5802 §7).
pub(crate) fn server_first(combined_nonce: &str, keys: &ScramKeys) -> String {
    format!(
        "r={combined_nonce},s={},i={}",
        STANDARD.encode(&keys.salt),
        keys.iterations
    )
}

/// Checks a ClientProof against StoredKey (RFC 5802 §3) and returns the server-final-message
/// `v=base64(ServerSignature)` when it matches.
///
/// `ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage)`; the proof is good when
/// `H(ClientKey) == StoredKey`, compared in constant time.
pub(crate) fn verify_proof(keys: &ScramKeys, auth_message: &[u8], proof: &[u8]) -> Option<Vec<u8>> {
    let client_signature = keys.hash.hmac(&keys.stored_key, auth_message);
    if proof.len() != client_signature.len() {
        return None;
    }
    let client_key: Vec<u8> = proof
        .iter()
        .zip(&client_signature)
        .map(|(p, s)| p ^ s)
        .collect();
    let matches: bool = keys.hash.digest(&client_key).ct_eq(&keys.stored_key).into();
    if !matches {
        return None;
    }
    let server_signature = keys.hash.hmac(&keys.server_key, auth_message);
    Some(format!("v={}", STANDARD.encode(server_signature)).into_bytes())
}

/// Keys for a user who does not exist or has no keys for this hash.
///
/// The server-first-message must look like a real one so that usernames cannot be probed
/// (RFC 5802 §9 notes the salt and iteration count are visible to anyone), and like one for an
/// account created now: the salt is [`SALT_BYTES`] long, as new accounts' salts are, and the
/// count is `iterations`, the one new accounts get. The salt is
/// `HMAC(secret, "starling-sasl decoy" NUL account)` cut to that length, where `account` is
/// the normalised `node@domain` of [`decoy_account`]: the same on every attempt for every
/// spelling of the same account (as a real account's salt is), different per host, and
/// unpredictable without the server's secret. The keys are hashes nobody knows a preimage
/// of, and the caller also refuses decoys outright.
pub(crate) fn decoy_keys(
    hash: ScramHash,
    account: &str,
    secret: &[u8; 32],
    iterations: u32,
) -> ScramKeys {
    let mut seed = b"starling-sasl decoy\0".to_vec();
    seed.extend_from_slice(account.as_bytes());
    let mut salt = hash.hmac(secret, &seed);
    salt.truncate(SALT_BYTES);
    ScramKeys {
        hash,
        stored_key: hash.digest(&[b"stored".as_slice(), &salt].concat()),
        server_key: hash.digest(&[b"server".as_slice(), &salt].concat()),
        salt,
        iterations,
    }
}

/// The account a SASL username names on `domain`, normalised as account lookups normalise it
/// (nodeprep folds case, RFC 3920 Appendix A; nameprep the domain), so `GHOST` and `ghost`
/// share one decoy. A name nodeprep refuses can have no account; it is only lower-cased.
pub(crate) fn decoy_account(username: &str, domain: &str) -> String {
    let node = stringprep::nodeprep(username)
        .map(|node| node.into_owned())
        .unwrap_or_else(|_| username.to_lowercase());
    let domain = stringprep::nameprep(domain)
        .map(|domain| domain.into_owned())
        .unwrap_or_else(|_| domain.to_lowercase());
    format!("{node}@{domain}")
}

/// `nonce = "r=" c-nonce [s-nonce]` where each is `1*printable` (RFC 5802 §7):
/// printable ASCII without ','.
pub(crate) fn is_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| matches!(b, 0x21..=0x2b | 0x2d..=0x7e))
}

/// Decodes `saslname`: `=2C` is ',', `=3D` is '=', any other '=' is malformed (RFC 5802 §5.1).
pub(crate) fn decode_saslname(name: &str) -> Result<String, SaslFailure> {
    if name.is_empty() || name.contains('\0') {
        return Err(SaslFailure::MalformedRequest);
    }
    let mut decoded = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        let (before, escape) = rest.split_at(at);
        decoded.push_str(before);
        if let Some(after) = escape.strip_prefix("=2C") {
            decoded.push(',');
            rest = after;
        } else if let Some(after) = escape.strip_prefix("=3D") {
            decoded.push('=');
            rest = after;
        } else {
            return Err(SaslFailure::MalformedRequest);
        }
    }
    decoded.push_str(rest);
    Ok(decoded)
}

/// `cb-name = 1*(ALPHA / DIGIT / "." / "-")` (RFC 5802 §7).
fn is_cb_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// `attr-val = ALPHA "=" value`, `value = 1*value-char` (RFC 5802 §7).
fn is_extension(attribute: &str) -> bool {
    let bytes = attribute.as_bytes();
    matches!(bytes, [name, b'=', _, ..] if name.is_ascii_alphabetic()) && !attribute.contains('\0')
}

/// Non-empty canonical base64 (RFC 4648 §4), as RFC 5802 §7 uses for `c=` and `p=`; neither
/// can be empty in a valid exchange.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() {
        return None;
    }
    STANDARD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc5802_client_first() {
        let first = parse_client_first(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL").unwrap();
        assert_eq!(
            first,
            ClientFirst {
                cbind: CbindFlag::NotSupported,
                authzid: None,
                gs2_header: "n,,".to_owned(),
                bare: "n=user,r=fyko+d2lbbFgONRv9qkxdawL".to_owned(),
                username: "user".to_owned(),
                nonce: "fyko+d2lbbFgONRv9qkxdawL".to_owned(),
            }
        );
    }

    #[test]
    fn parses_plus_header_authzid_and_extensions() {
        let first =
            parse_client_first(b"p=tls-exporter,a=us=2Cer=3D@host,n=a=3Db=2Cc,r=abc,x=1,y=a=b")
                .unwrap();
        assert_eq!(
            first,
            ClientFirst {
                cbind: CbindFlag::Required("tls-exporter".to_owned()),
                authzid: Some("us,er=@host".to_owned()),
                gs2_header: "p=tls-exporter,a=us=2Cer=3D@host,".to_owned(),
                bare: "n=a=3Db=2Cc,r=abc,x=1,y=a=b".to_owned(),
                username: "a=b,c".to_owned(),
                nonce: "abc".to_owned(),
            }
        );
    }

    #[test]
    fn y_flag_parses() {
        let first = parse_client_first(b"y,,n=user,r=abc").unwrap();
        assert_eq!(first.cbind, CbindFlag::ServerUnsupported);
        assert_eq!(first.gs2_header, "y,,");
    }

    #[test]
    fn client_first_syntax_errors_are_malformed() {
        let cases: &[&[u8]] = &[
            b"",
            b"n",
            b"n,",
            b"n,,",
            b"x,,n=user,r=abc",
            b"p=,,n=user,r=abc",
            b"p=tls_exporter,,n=user,r=abc",
            b"n,b=user,n=user,r=abc",
            b"n,a=,n=user,r=abc",
            b"n,,r=abc,n=user",
            b"n,,n=,r=abc",
            b"n,,n=us=2cer,r=abc",
            b"n,,n=us=er,r=abc",
            b"n,,n=user=,r=abc",
            b"n,,n=user",
            b"n,,n=user,r=",
            b"n,,n=user,r=a b",
            b"n,,n=user,r=abc,",
            b"n,,n=user,r=abc,x",
            b"n,,n=user,r=abc,x=",
            b"n,,n=user,r=abc,1=x",
            b"n,,m=ext,n=user,r=abc",
            b"n,,n=us\xffer,r=abc",
            b"n,,n=us\0er,r=abc",
            "n,,n=a\u{7}b,r=abc".as_bytes(),
        ];
        for case in cases {
            assert_eq!(
                parse_client_first(case),
                Err(SaslFailure::MalformedRequest),
                "{:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn username_goes_through_saslprep() {
        let first = parse_client_first("n,,n=us\u{AD}er,r=abc".as_bytes()).unwrap();
        assert_eq!(first.username, "user");
        assert_eq!(first.bare, "n=us\u{AD}er,r=abc");
    }

    #[test]
    fn parses_rfc5802_client_final() {
        let message =
            b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
        let parsed = parse_client_final(message).unwrap();
        assert_eq!(parsed.channel_binding, b"n,,");
        assert_eq!(parsed.nonce, "fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j");
        assert_eq!(
            parsed.without_proof,
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j"
        );
        assert_eq!(parsed.proof.len(), 20);
    }

    #[test]
    fn client_final_keeps_extensions_in_without_proof() {
        let parsed = parse_client_final(b"c=biws,r=abc,x=1,p=AAAA").unwrap();
        assert_eq!(parsed.without_proof, "c=biws,r=abc,x=1");
        assert_eq!(parsed.proof, [0, 0, 0]);
    }

    #[test]
    fn client_final_syntax_errors_are_malformed() {
        let cases: &[&[u8]] = &[
            b"",
            b"p=AAAA",
            b"c=biws,p=AAAA",
            b"c=biws,r=abc",
            b"c=biws,r=abc,p=",
            b"c=biws,r=abc,p=A",
            b"c=bi,r=abc,p=AAAA",
            b"r=abc,c=biws,p=AAAA",
            b"c=biws,r=a c,p=AAAA",
            b"c=biws,r=abc,x,p=AAAA",
            b"c=biws,r=abc,p=AAAA,x=1",
            b"c=biws,r=ab\xff,p=AAAA",
        ];
        for case in cases {
            assert_eq!(
                parse_client_final(case),
                Err(SaslFailure::MalformedRequest),
                "{:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn saslname_escapes() {
        assert_eq!(decode_saslname("a=2Cb=3Dc"), Ok("a,b=c".to_owned()));
        assert_eq!(decode_saslname("=3D=2C"), Ok("=,".to_owned()));
        assert_eq!(decode_saslname("=3"), Err(SaslFailure::MalformedRequest));
        assert_eq!(decode_saslname("=2c"), Err(SaslFailure::MalformedRequest));
        assert_eq!(decode_saslname("=="), Err(SaslFailure::MalformedRequest));
        assert_eq!(decode_saslname(""), Err(SaslFailure::MalformedRequest));
    }

    #[test]
    fn nonce_alphabet() {
        assert!(is_nonce("fyko+d2lbbFgONRv9qkxdawL"));
        assert!(is_nonce("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"));
        assert!(is_nonce("!~"));
        assert!(!is_nonce(""));
        assert!(!is_nonce("a,b"));
        assert!(!is_nonce("a b"));
        assert!(!is_nonce("é"));
    }

    #[test]
    fn decoy_is_deterministic_and_plausible() {
        let a = decoy_keys(ScramHash::Sha256, "nobody@localhost", &[1; 32], 4096);
        let b = decoy_keys(ScramHash::Sha256, "nobody@localhost", &[1; 32], 4096);
        let c = decoy_keys(ScramHash::Sha256, "nobody2@localhost", &[1; 32], 4096);
        let other_server = decoy_keys(ScramHash::Sha256, "nobody@localhost", &[2; 32], 4096);
        assert_eq!(a, b);
        assert_ne!(a.salt, c.salt);
        assert_ne!(a.salt, other_server.salt);
        assert_eq!(a.salt.len(), SALT_BYTES);
        assert_eq!(a.iterations, 4096);
        assert_eq!(a.stored_key.len(), 32);
        let sha1 = decoy_keys(ScramHash::Sha1, "nobody@localhost", &[1; 32], 10_000);
        assert_eq!(sha1.salt.len(), SALT_BYTES);
        assert_eq!(sha1.iterations, 10_000);
    }

    #[test]
    fn decoy_account_folds_case_and_names_the_host() {
        assert_eq!(decoy_account("GHOST", "LocalHost"), "ghost@localhost");
        assert_eq!(decoy_account("ghost", "localhost"), "ghost@localhost");
        assert_ne!(
            decoy_account("ghost", "a.example"),
            decoy_account("ghost", "b.example")
        );
        // Not a valid localpart: no account can have it, but it still gets a stable decoy.
        assert_eq!(decoy_account("Gh@st", "localhost"), "gh@st@localhost");
    }
}
