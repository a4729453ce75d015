//! `starling_sasl`: the PLAIN and SCRAM message parsers behind `SaslSession`, and
//! `decode_payload`.

use std::sync::OnceLock;

use starling_sasl::{
    ChannelBinding, ChannelBindingType, SaslFailure, SaslSession, SaslStep, ScramHash,
    ServerContext, StoredCredentials, decode_payload, encode_payload,
};

use crate::Unstructured;

/// The mechanism names a client may put in `<auth mechanism='...'>`, plus one nobody offers.
const MECHANISMS: [&str; 8] = [
    "PLAIN",
    "SCRAM-SHA-1",
    "SCRAM-SHA-256",
    "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-256-PLUS",
    "PLAIN",
    "SCRAM-SHA-256",
    "X-UNKNOWN",
];

/// The server half of the SCRAM nonce; seeds with a valid proof depend on it.
pub const SERVER_NONCE: &str = "srvnonce";

/// The one account's password; seeds that succeed use it.
pub const PASSWORD: &str = "pencil";

/// One PBKDF2 iteration keeps the fuzzer fast; the code path is the same as with 4096.
pub(crate) fn account(sha1_only: bool) -> StoredCredentials {
    static BOTH: OnceLock<StoredCredentials> = OnceLock::new();
    let both = BOTH.get_or_init(|| {
        StoredCredentials::from_password(PASSWORD, b"salt-sha1", b"salt-sha256", 1)
            .unwrap_or_else(|error| panic!("test credentials: {error}"))
    });
    let mut creds = both.clone();
    if sha1_only {
        creds.keys.retain(|keys| keys.hash == ScramHash::Sha1);
    }
    creds
}

/// Input: a settings byte, the length of the first client message, the first message, then
/// the second message (for SCRAM, the client-final-message).
///
/// Settings: bits 0–2 pick the mechanism; bit 3 puts the stream under TLS with both channel
/// bindings; bit 4 allows PLAIN without TLS; bit 5 sends no initial response; bit 6 makes the
/// account unknown; bit 7 leaves the account only SHA-1 keys.
///
/// The session must never panic, must succeed only for an existing account and under the name
/// it looked up, and must refuse every message once it has answered success or failure.
/// The second message is also decoded with `decode_payload`, which must accept only canonical
/// base64: re-encoding what it decoded gives back the text.
pub fn sasl(data: &[u8]) {
    let mut input = Unstructured::new(data);
    let settings = input.byte();
    let first_len = usize::from(input.byte());
    let first = input.bytes(first_len);
    let second = input.rest();
    check_payload(second);

    let bit = |n: u8| settings & (1 << n) != 0;
    let mechanism = MECHANISMS[usize::from(settings & 0x07)];
    let is_encrypted = bit(3);
    let channel_bindings = if is_encrypted {
        vec![
            ChannelBinding {
                kind: ChannelBindingType::TlsExporter,
                data: b"exporter-data".to_vec(),
            },
            ChannelBinding {
                kind: ChannelBindingType::TlsServerEndPoint,
                data: b"end-point-hash".to_vec(),
            },
        ]
    } else {
        Vec::new()
    };
    let ctx = ServerContext {
        domain: "localhost".to_owned(),
        is_encrypted,
        allow_plain_without_tls: bit(4),
        channel_bindings,
        decoy_secret: [9; 32],
        // Few rounds, so the PLAIN unknown-account path stays cheap to fuzz.
        new_account_iterations: 16,
        // Every settings bit is taken; which hashes a host offers is checked by unit tests.
        scram_hashes: starling_sasl::ScramHashes::ALL,
    };
    let Ok(mut session) = SaslSession::start(mechanism, &ctx, SERVER_NONCE) else {
        return;
    };
    let is_known = !bit(6);
    let creds = is_known.then(|| account(bit(7)));

    let mut step = if bit(5) {
        let step = session.step(None);
        assert_eq!(step, SaslStep::Challenge(Vec::new()), "{mechanism}");
        session.step(Some(first))
    } else {
        session.step(Some(first))
    };
    let mut looked_up = None;
    let mut messages = [second].into_iter();
    loop {
        step = match step {
            SaslStep::LookupCredentials { username } => {
                assert!(looked_up.is_none(), "{mechanism}: a second lookup");
                looked_up = Some(username);
                session.credentials(creds.clone())
            }
            SaslStep::CheckPassword(check) => {
                assert!(
                    looked_up.is_some(),
                    "{mechanism}: a check before the lookup"
                );
                session.password_checked(check.run())
            }
            SaslStep::Challenge(_) => match messages.next() {
                Some(message) => session.step(Some(message)),
                None => return,
            },
            SaslStep::Success { username, .. } => {
                assert!(is_known, "{mechanism}: success for an unknown account");
                assert_eq!(
                    looked_up.as_ref(),
                    Some(&username),
                    "{mechanism}: success for another name than the one looked up"
                );
                assert_finished(&mut session);
                return;
            }
            SaslStep::Failure(_) => {
                assert_finished(&mut session);
                return;
            }
        };
    }
}

fn assert_finished(session: &mut SaslSession) {
    assert!(session.is_finished());
    assert_eq!(
        session.step(Some(b"n,,n=user,r=abc")),
        SaslStep::Failure(SaslFailure::MalformedRequest)
    );
}

fn check_payload(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    match decode_payload(text) {
        Ok(None) => assert_eq!(text, ""),
        Ok(Some(decoded)) => assert_eq!(encode_payload(&decoded), text),
        Err(failure) => assert_eq!(failure, SaslFailure::IncorrectEncoding),
    }
}
