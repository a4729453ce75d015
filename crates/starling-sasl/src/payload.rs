//! Base64 text of `<auth/>`, `<challenge/>`, `<response/>` and `<success/>` (RFC 6120 §6.4.2).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::failure::SaslFailure;

/// Decodes the character data of `<auth/>` or `<response/>`.
///
/// RFC 6120 §6.4.2: no text means no data (`None`); a single `=` means present but empty
/// (`Some(vec![])`). Anything else must be canonical base64 (RFC 4648 §4) with padding and
/// without whitespace (§6.4.2 forbids line breaks); otherwise `<incorrect-encoding/>` (§6.5.5).
pub fn decode_payload(text: &str) -> Result<Option<Vec<u8>>, SaslFailure> {
    match text {
        "" => Ok(None),
        "=" => Ok(Some(Vec::new())),
        _ => STANDARD
            .decode(text)
            .map(Some)
            .map_err(|_| SaslFailure::IncorrectEncoding),
    }
}

/// Encodes data for `<challenge/>` or `<success/>`; empty data becomes `=` (RFC 6120 §6.4.2).
pub fn encode_payload(data: &[u8]) -> String {
    if data.is_empty() {
        "=".to_owned()
    } else {
        STANDARD.encode(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_text_is_no_data() {
        assert_eq!(decode_payload(""), Ok(None));
    }

    #[test]
    fn equals_sign_is_empty_data() {
        assert_eq!(decode_payload("="), Ok(Some(Vec::new())));
    }

    #[test]
    fn base64_decodes() {
        assert_eq!(
            decode_payload("AGZvbwBiYXI="),
            Ok(Some(b"\0foo\0bar".to_vec()))
        );
        assert_eq!(decode_payload("biws"), Ok(Some(b"n,,".to_vec())));
    }

    #[test]
    fn malformed_base64_is_incorrect_encoding() {
        for text in [
            "biw", "bi ws", "biws\n", "b!ws", "==", "biws=", "bQ", "bR==", " ",
        ] {
            assert_eq!(
                decode_payload(text),
                Err(SaslFailure::IncorrectEncoding),
                "{text:?}"
            );
        }
    }

    #[test]
    fn encode_uses_equals_for_empty() {
        assert_eq!(encode_payload(b""), "=");
        assert_eq!(encode_payload(b"n,,"), "biws");
    }
}
