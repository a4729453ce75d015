//! Tests for the SASL step machine: RFC vectors, every failure path, and interop with the
//! independent `sasl` crate client.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sasl::client::Mechanism as _;
use sasl::client::mechanisms::{Plain as ClientPlain, Scram as ClientScram};
use sasl::common::ChannelBinding as ClientBinding;
use sasl::common::scram::{ScramProvider, Sha1 as ClientSha1, Sha256 as ClientSha256};

use super::*;

const SERVER_NONCE: &str = "3rfcNHYJY1ZVvWVs7j";
const ITERATIONS: u32 = 16;
const EXPORTER: &[u8] = b"exporter-bytes-from-tls-1.3-0123";
const END_POINT: &[u8] = b"certificate-hash";

fn ctx(is_encrypted: bool, channel_bindings: &[(ChannelBindingType, &[u8])]) -> ServerContext {
    ServerContext {
        domain: "localhost".to_owned(),
        is_encrypted,
        allow_plain_without_tls: false,
        channel_bindings: channel_bindings
            .iter()
            .map(|(kind, data)| ChannelBinding {
                kind: *kind,
                data: data.to_vec(),
            })
            .collect(),
        decoy_secret: [7; 32],
        new_account_iterations: ITERATIONS,
        scram_hashes: ScramHashes::ALL,
    }
}

fn plaintext() -> ServerContext {
    ctx(false, &[])
}

fn tls12() -> ServerContext {
    ctx(true, &[(ChannelBindingType::TlsServerEndPoint, END_POINT)])
}

fn tls13() -> ServerContext {
    ctx(
        true,
        &[
            (ChannelBindingType::TlsServerEndPoint, END_POINT),
            (ChannelBindingType::TlsExporter, EXPORTER),
        ],
    )
}

fn creds(password: &str) -> StoredCredentials {
    StoredCredentials::from_password(password, b"sha1-salt", b"sha256-salt", ITERATIONS).unwrap()
}

fn only(hash: ScramHash, password: &str) -> StoredCredentials {
    StoredCredentials {
        keys: vec![ScramKeys::derive(hash, password, b"salt", ITERATIONS).unwrap()],
    }
}

fn lookup(username: &str) -> SaslStep {
    SaslStep::LookupCredentials {
        username: username.to_owned(),
    }
}

fn failure(failure: SaslFailure) -> SaslStep {
    SaslStep::Failure(failure)
}

fn start(mechanism: &str, ctx: &ServerContext) -> SaslSession {
    SaslSession::start(mechanism, ctx, SERVER_NONCE).unwrap()
}

/// Starts `mechanism` and feeds one initial response.
fn first_step(mechanism: &str, ctx: &ServerContext, initial: &[u8]) -> SaslStep {
    start(mechanism, ctx).step(Some(initial))
}

/// Runs PLAIN to the end with the given message and account.
fn plain(message: &[u8], account: Option<StoredCredentials>) -> SaslStep {
    let mut session = start("PLAIN", &tls12());
    match session.step(Some(message)) {
        SaslStep::LookupCredentials { .. } => match session.credentials(account) {
            SaslStep::CheckPassword(check) => session.password_checked(check.run()),
            other => other,
        },
        other => other,
    }
}

/// Computes a client-final-message with the `sasl` crate's primitives, so the proof
/// arithmetic is not ours.
fn client_final<S: ScramProvider>(
    password: &str,
    client_first_bare: &str,
    server_first: &[u8],
    cbind_input: &[u8],
    extensions: &str,
) -> Vec<u8> {
    client_final_with_nonce::<S>(
        password,
        client_first_bare,
        server_first,
        cbind_input,
        extensions,
        None,
    )
}

/// As [`client_final`], but `r=` carries `nonce` when given, while the proof still covers the
/// real server-first-message.
fn client_final_with_nonce<S: ScramProvider>(
    password: &str,
    client_first_bare: &str,
    server_first: &[u8],
    cbind_input: &[u8],
    extensions: &str,
    nonce_override: Option<&str>,
) -> Vec<u8> {
    let server_first = std::str::from_utf8(server_first).unwrap();
    let mut nonce = "";
    let mut salt = Vec::new();
    let mut iterations = 0;
    for attr in server_first.split(',') {
        let (key, value) = attr.split_once('=').unwrap();
        match key {
            "r" => nonce = value,
            "s" => salt = STANDARD.decode(value).unwrap(),
            "i" => iterations = value.parse().unwrap(),
            _ => panic!("unexpected attribute {attr}"),
        }
    }
    let nonce = nonce_override.unwrap_or(nonce);
    let without_proof = format!("c={},r={nonce}{extensions}", STANDARD.encode(cbind_input));
    let salted = S::derive(&password.into(), &salt, iterations).unwrap();
    let client_key = S::hmac(b"Client Key", &salted).unwrap();
    let stored_key = S::hash(&client_key);
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let signature = S::hmac(auth_message.as_bytes(), &stored_key).unwrap();
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(k, s)| k ^ s)
        .collect();
    format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes()
}

/// Runs a hand-built SCRAM exchange to the end against `account`.
fn scram_manual<S: ScramProvider>(
    mechanism: &str,
    ctx: &ServerContext,
    gs2_header: &str,
    cbind_data: &[u8],
    password: &str,
    account: Option<StoredCredentials>,
) -> SaslStep {
    let bare = "n=user,r=clientnonce";
    let mut session = start(mechanism, ctx);
    assert_eq!(
        session.step(Some(format!("{gs2_header}{bare}").as_bytes())),
        lookup("user")
    );
    let SaslStep::Challenge(server_first) = session.credentials(account) else {
        panic!("expected server-first-message");
    };
    let cbind_input = [gs2_header.as_bytes(), cbind_data].concat();
    let last = client_final::<S>(password, bare, &server_first, &cbind_input, "");
    session.step(Some(&last))
}

/// Runs the `sasl` crate's SCRAM client against our server and, on success, lets the client
/// check our server signature too.
fn interop<M: sasl::client::Mechanism>(
    mut client: M,
    ctx: &ServerContext,
    account: Option<StoredCredentials>,
) -> SaslStep {
    let mut session = start(client.name(), ctx);
    let step = session.step(Some(&client.initial()));
    let SaslStep::LookupCredentials { .. } = step else {
        return step;
    };
    let step = session.credentials(account);
    let SaslStep::Challenge(server_first) = step else {
        return step;
    };
    let response = client.response(&server_first).unwrap();
    let step = session.step(Some(&response));
    if let SaslStep::Success {
        additional_data: Some(data),
        ..
    } = &step
    {
        client.success(data).unwrap();
    }
    step
}

fn scram_client<S: ScramProvider>(password: &str, binding: ClientBinding) -> ClientScram<S> {
    ClientScram::<S>::new("user", password, binding).unwrap()
}

fn success(username: &str, additional_data: Option<&[u8]>) -> SaslStep {
    SaslStep::Success {
        username: username.to_owned(),
        additional_data: additional_data.map(<[u8]>::to_vec),
    }
}

fn is_success(step: &SaslStep) -> bool {
    matches!(step, SaslStep::Success { username, additional_data: Some(_) } if username == "user")
}

// ---------------------------------------------------------------- RFC test vectors

#[test]
fn rfc5802_sha1_exchange() {
    let salt = STANDARD.decode("QSXCR+Q6sek8bf92").unwrap();
    let keys = ScramKeys::derive(ScramHash::Sha1, "pencil", &salt, 4096).unwrap();
    let mut session = start("SCRAM-SHA-1", &plaintext());
    assert_eq!(
        session.step(Some(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL")),
        lookup("user")
    );
    assert_eq!(
        session.credentials(Some(StoredCredentials { keys: vec![keys] })),
        SaslStep::Challenge(
            b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096".to_vec()
        )
    );
    assert_eq!(
        session.step(Some(
            b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        )),
        success("user", Some(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ="))
    );
    assert!(session.is_finished());
}

#[test]
fn rfc7677_sha256_exchange() {
    let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    let keys = ScramKeys::derive(ScramHash::Sha256, "pencil", &salt, 4096).unwrap();
    let mut session = SaslSession::start(
        "SCRAM-SHA-256",
        &plaintext(),
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    )
    .unwrap();
    assert_eq!(
        session.step(Some(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")),
        lookup("user")
    );
    assert_eq!(
        session.credentials(Some(StoredCredentials { keys: vec![keys] })),
        SaslStep::Challenge(
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
                .to_vec()
        )
    );
    assert_eq!(
        session.step(Some(
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
              p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        )),
        success(
            "user",
            Some(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
        )
    );
}

// ---------------------------------------------------------------- start()

#[test]
fn start_unknown_mechanism_is_invalid_mechanism() {
    for name in ["DIGEST-MD5", "plain", "SCRAM-SHA-512", ""] {
        assert_eq!(
            SaslSession::start(name, &tls13(), SERVER_NONCE).unwrap_err(),
            SaslFailure::InvalidMechanism,
            "{name}"
        );
    }
}

#[test]
fn start_plain_without_tls_is_encryption_required() {
    assert_eq!(
        SaslSession::start("PLAIN", &plaintext(), SERVER_NONCE).unwrap_err(),
        SaslFailure::EncryptionRequired
    );
}

#[test]
fn start_plain_without_tls_when_allowed() {
    let mut ctx = plaintext();
    ctx.allow_plain_without_tls = true;
    let mut session = SaslSession::start("PLAIN", &ctx, SERVER_NONCE).unwrap();
    assert_eq!(session.mechanism(), Mechanism::Plain);
    assert_eq!(session.step(Some(b"\0user\0pencil")), lookup("user"));
}

#[test]
fn start_plus_without_channel_binding_is_invalid_mechanism() {
    for name in ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS"] {
        assert_eq!(
            SaslSession::start(name, &ctx(true, &[]), SERVER_NONCE).unwrap_err(),
            SaslFailure::InvalidMechanism,
            "{name}"
        );
    }
}

#[test]
fn start_scram_with_unusable_server_nonce_is_temporary_auth_failure() {
    for nonce in ["", "a,b", "a b", "nonce\u{e9}"] {
        assert_eq!(
            SaslSession::start("SCRAM-SHA-256", &tls13(), nonce).unwrap_err(),
            SaslFailure::TemporaryAuthFailure,
            "{nonce:?}"
        );
    }
    // PLAIN has no use for the nonce.
    assert_eq!(
        SaslSession::start("PLAIN", &tls13(), "").map(|s| s.mechanism()),
        Ok(Mechanism::Plain)
    );
}

#[test]
fn start_reports_mechanism() {
    for m in Mechanism::ALL {
        assert_eq!(start(m.name(), &tls13()).mechanism(), m);
    }
}

// ---------------------------------------------------------------- PLAIN

#[test]
fn plain_good_password_succeeds() {
    assert_eq!(
        plain(b"\0user\0pencil", Some(creds("pencil"))),
        success("user", None)
    );
}

#[test]
fn plain_username_is_saslprepped() {
    assert_eq!(
        plain("\0us\u{AD}er\0pencil".as_bytes(), Some(creds("pencil"))),
        success("user", None)
    );
}

#[test]
fn plain_password_saslprep_matches_stored_keys() {
    // U+2168 prepares to "IX" (RFC 4013 §3), so both spellings log in.
    assert_eq!(
        plain("\0user\0\u{2168}".as_bytes(), Some(creds("IX"))),
        success("user", None)
    );
}

#[test]
fn plain_wrong_password_is_not_authorized() {
    assert_eq!(
        plain(b"\0user\0pencil2", Some(creds("pencil"))),
        failure(SaslFailure::NotAuthorized)
    );
}

#[test]
fn plain_unknown_user_is_not_authorized() {
    assert_eq!(
        plain(b"\0nobody\0pencil", None),
        failure(SaslFailure::NotAuthorized)
    );
}

#[test]
fn plain_account_without_keys_is_not_authorized() {
    assert_eq!(
        plain(b"\0user\0pencil", Some(StoredCredentials::default())),
        failure(SaslFailure::NotAuthorized)
    );
}

#[test]
fn plain_uses_sha1_keys_when_only_those_exist() {
    assert_eq!(
        plain(b"\0user\0pencil", Some(only(ScramHash::Sha1, "pencil"))),
        success("user", None)
    );
    assert_eq!(
        plain(b"\0user\0pencil", Some(only(ScramHash::Sha256, "pencil"))),
        success("user", None)
    );
}

#[test]
fn plain_prefers_sha256_keys() {
    // SHA-256 keys for "new", stale SHA-1 keys for "old": only "new" is accepted.
    let account = StoredCredentials {
        keys: vec![
            ScramKeys::derive(ScramHash::Sha1, "old", b"salt", ITERATIONS).unwrap(),
            ScramKeys::derive(ScramHash::Sha256, "new", b"salt", ITERATIONS).unwrap(),
        ],
    };
    assert_eq!(
        plain(b"\0user\0new", Some(account.clone())),
        success("user", None)
    );
    assert_eq!(
        plain(b"\0user\0old", Some(account)),
        failure(SaslFailure::NotAuthorized)
    );
}

#[test]
fn plain_authzid_naming_the_account_is_accepted() {
    for authzid in ["user@localhost", "user@LocalHost", "User@localhost"] {
        let message = format!("{authzid}\0user\0pencil");
        assert_eq!(
            plain(message.as_bytes(), Some(creds("pencil"))),
            success("user", None),
            "{authzid}"
        );
    }
}

#[test]
fn plain_other_authzid_is_invalid_authzid() {
    for authzid in [
        "admin@localhost",
        "user@example.org",
        "user@localhost/phone",
        "user",
        "localhost",
        "@localhost",
    ] {
        let message = format!("{authzid}\0user\0pencil");
        assert_eq!(
            first_step("PLAIN", &tls12(), message.as_bytes()),
            failure(SaslFailure::InvalidAuthzid),
            "{authzid}"
        );
    }
}

#[test]
fn plain_malformed_message_is_malformed_request() {
    let cases: [&[u8]; 6] = [
        b"",
        b"user\0pencil",
        b"\0user\0pencil\0",
        b"\0\0pencil",
        b"\0user\0",
        b"\0us\xffer\0pencil",
    ];
    for case in cases {
        assert_eq!(
            first_step("PLAIN", &tls12(), case),
            failure(SaslFailure::MalformedRequest),
            "{case:?}"
        );
    }
}

#[test]
fn plain_prohibited_characters_are_malformed_request() {
    assert_eq!(
        first_step("PLAIN", &tls12(), "\0us\u{7}er\0pencil".as_bytes()),
        failure(SaslFailure::MalformedRequest)
    );
    assert_eq!(
        first_step("PLAIN", &tls12(), "\0user\0pen\u{E000}cil".as_bytes()),
        failure(SaslFailure::MalformedRequest)
    );
}

#[test]
fn plain_without_initial_response_sends_empty_challenge() {
    let mut session = start("PLAIN", &tls12());
    assert_eq!(session.step(None), SaslStep::Challenge(Vec::new()));
    assert_eq!(session.step(Some(b"\0user\0pencil")), lookup("user"));
    let SaslStep::CheckPassword(check) = session.credentials(Some(creds("pencil"))) else {
        panic!("expected a password check");
    };
    assert_eq!(session.password_checked(check.run()), success("user", None));
}

#[test]
fn plain_interop_with_sasl_client() {
    let mut client = ClientPlain::new("user", "pencil");
    assert_eq!(client.name(), "PLAIN");
    assert_eq!(
        plain(&client.initial(), Some(creds("pencil"))),
        success("user", None)
    );
}

// ---------------------------------------------------------------- SCRAM: first message

#[test]
fn scram_username_escapes_are_decoded() {
    assert_eq!(
        first_step("SCRAM-SHA-256", &plaintext(), b"n,,n=us=2Cer=3D,r=abc"),
        lookup("us,er=")
    );
}

#[test]
fn scram_bad_saslname_escape_is_malformed_request() {
    assert_eq!(
        first_step("SCRAM-SHA-256", &plaintext(), b"n,,n=us=41er,r=abc"),
        failure(SaslFailure::MalformedRequest)
    );
}

#[test]
fn scram_first_message_syntax_errors_are_malformed_request() {
    for case in [
        &b""[..],
        b"n,,",
        b"n,,r=abc,n=user",
        b"n,,n=user,r=a,b",
        b"n,,n=user",
        b"q,,n=user,r=abc",
    ] {
        assert_eq!(
            first_step("SCRAM-SHA-1", &plaintext(), case),
            failure(SaslFailure::MalformedRequest),
            "{case:?}"
        );
    }
}

#[test]
fn scram_mandatory_extension_is_malformed_request() {
    assert_eq!(
        first_step("SCRAM-SHA-256", &plaintext(), b"n,,m=foo,n=user,r=abc"),
        failure(SaslFailure::MalformedRequest)
    );
}

#[test]
fn scram_optional_extensions_are_ignored() {
    let mut session = start("SCRAM-SHA-256", &plaintext());
    let bare = "n=user,r=clientnonce,x=ext";
    assert_eq!(
        session.step(Some(format!("n,,{bare}").as_bytes())),
        lookup("user")
    );
    let SaslStep::Challenge(server_first) = session.credentials(Some(creds("pencil"))) else {
        panic!("expected server-first-message");
    };
    let last = client_final::<ClientSha256>("pencil", bare, &server_first, b"n,,", ",y=final");
    assert!(is_success(&session.step(Some(&last))));
}

#[test]
fn scram_authzid_naming_the_account_is_accepted() {
    let mut session = start("SCRAM-SHA-1", &plaintext());
    let header = "n,a=user@LOCALHOST,";
    let bare = "n=user,r=clientnonce";
    assert_eq!(
        session.step(Some(format!("{header}{bare}").as_bytes())),
        lookup("user")
    );
    let SaslStep::Challenge(server_first) = session.credentials(Some(creds("pencil"))) else {
        panic!("expected server-first-message");
    };
    let last = client_final::<ClientSha1>("pencil", bare, &server_first, header.as_bytes(), "");
    assert!(is_success(&session.step(Some(&last))));
}

#[test]
fn scram_other_authzid_is_invalid_authzid() {
    for header in ["n,a=admin@localhost,", "n,a=user@example.org,", "n,a=user,"] {
        assert_eq!(
            first_step(
                "SCRAM-SHA-256",
                &plaintext(),
                format!("{header}n=user,r=abc").as_bytes()
            ),
            failure(SaslFailure::InvalidAuthzid),
            "{header}"
        );
    }
}

#[test]
fn scram_p_flag_with_non_plus_mechanism_is_malformed_request() {
    assert_eq!(
        first_step("SCRAM-SHA-256", &tls13(), b"p=tls-exporter,,n=user,r=abc"),
        failure(SaslFailure::MalformedRequest)
    );
}

#[test]
fn scram_plus_without_p_flag_is_malformed_request() {
    for header in ["n,,", "y,,"] {
        assert_eq!(
            first_step(
                "SCRAM-SHA-256-PLUS",
                &tls13(),
                format!("{header}n=user,r=abc").as_bytes()
            ),
            failure(SaslFailure::MalformedRequest),
            "{header}"
        );
    }
}

#[test]
fn scram_plus_with_unsupported_binding_type_is_not_authorized() {
    assert_eq!(
        first_step(
            "SCRAM-SHA-256-PLUS",
            &tls13(),
            b"p=tls-unique,,n=user,r=abc"
        ),
        failure(SaslFailure::NotAuthorized)
    );
    // tls-exporter exists only on TLS 1.3 connections.
    assert_eq!(
        first_step(
            "SCRAM-SHA-1-PLUS",
            &tls12(),
            b"p=tls-exporter,,n=user,r=abc"
        ),
        failure(SaslFailure::NotAuthorized)
    );
}

#[test]
fn scram_y_flag_while_plus_is_offered_is_not_authorized() {
    assert_eq!(
        first_step("SCRAM-SHA-256", &tls12(), b"y,,n=user,r=abc"),
        failure(SaslFailure::NotAuthorized)
    );
}

#[test]
fn scram_y_flag_without_plus_offered_is_fine() {
    assert_eq!(
        first_step("SCRAM-SHA-256", &ctx(true, &[]), b"y,,n=user,r=abc"),
        lookup("user")
    );
}

#[test]
fn scram_n_flag_while_plus_is_offered_is_fine() {
    assert_eq!(
        first_step("SCRAM-SHA-1", &tls13(), b"n,,n=user,r=abc"),
        lookup("user")
    );
}

#[test]
fn scram_without_initial_response_sends_empty_challenge() {
    let mut session = start("SCRAM-SHA-256", &plaintext());
    assert_eq!(session.step(None), SaslStep::Challenge(Vec::new()));
    assert_eq!(session.step(Some(b"n,,n=user,r=abc")), lookup("user"));
}

#[test]
fn scram_second_missing_response_is_malformed_request() {
    let mut session = start("SCRAM-SHA-256", &plaintext());
    assert_eq!(session.step(None), SaslStep::Challenge(Vec::new()));
    assert_eq!(session.step(None), failure(SaslFailure::MalformedRequest));
    assert!(session.is_finished());
}

#[test]
fn scram_empty_initial_response_is_malformed_request() {
    assert_eq!(
        start("SCRAM-SHA-256", &plaintext()).step(Some(b"")),
        failure(SaslFailure::MalformedRequest)
    );
}

// ---------------------------------------------------------------- SCRAM: final message

/// A session waiting for client-final, with the server-first it sent.
fn awaiting_final(account: Option<StoredCredentials>) -> (SaslSession, Vec<u8>) {
    let mut session = start("SCRAM-SHA-256", &plaintext());
    assert_eq!(
        session.step(Some(b"n,,n=user,r=clientnonce")),
        lookup("user")
    );
    let SaslStep::Challenge(server_first) = session.credentials(account) else {
        panic!("expected server-first-message");
    };
    (session, server_first)
}

#[test]
fn scram_server_first_format() {
    let (_, server_first) = awaiting_final(Some(creds("pencil")));
    let expected = format!(
        "r=clientnonce{SERVER_NONCE},s={},i={ITERATIONS}",
        STANDARD.encode(b"sha256-salt")
    );
    assert_eq!(String::from_utf8(server_first).unwrap(), expected);
}

#[test]
fn scram_wrong_password_is_not_authorized() {
    assert_eq!(
        interop(
            scram_client::<ClientSha256>("wrong", ClientBinding::None),
            &plaintext(),
            Some(creds("pencil"))
        ),
        failure(SaslFailure::NotAuthorized)
    );
}

#[test]
fn scram_wrong_nonce_is_not_authorized() {
    let (mut session, server_first) = awaiting_final(Some(creds("pencil")));
    // The proof is right for the exchange, but r= does not repeat the combined nonce.
    let last = client_final_with_nonce::<ClientSha256>(
        "pencil",
        "n=user,r=clientnonce",
        &server_first,
        b"n,,",
        "",
        Some("clientnonce"),
    );
    assert_eq!(
        session.step(Some(&last)),
        failure(SaslFailure::NotAuthorized)
    );
}

#[test]
fn scram_wrong_channel_binding_input_is_not_authorized() {
    let (mut session, server_first) = awaiting_final(Some(creds("pencil")));
    // "y,," does not repeat the "n,," header the client sent.
    let last =
        client_final::<ClientSha256>("pencil", "n=user,r=clientnonce", &server_first, b"y,,", "");
    assert_eq!(
        session.step(Some(&last)),
        failure(SaslFailure::NotAuthorized)
    );
}

#[test]
fn scram_proof_of_wrong_length_is_malformed_request() {
    let (mut session, _) = awaiting_final(Some(creds("pencil")));
    let last = format!(
        "c=biws,r=clientnonce{SERVER_NONCE},p={}",
        STANDARD.encode([0u8; 20])
    );
    assert_eq!(
        session.step(Some(last.as_bytes())),
        failure(SaslFailure::MalformedRequest)
    );
}

#[test]
fn scram_final_syntax_error_is_malformed_request() {
    for case in [
        &b"garbage"[..],
        b"",
        b"c=biws,r=x",
        b"c=biws,p=AAAA",
        b"c=b!ws,r=x,p=AAAA",
    ] {
        let (mut session, _) = awaiting_final(Some(creds("pencil")));
        assert_eq!(
            session.step(Some(case)),
            failure(SaslFailure::MalformedRequest),
            "{case:?}"
        );
    }
}

#[test]
fn scram_missing_final_is_malformed_request() {
    let (mut session, _) = awaiting_final(Some(creds("pencil")));
    assert_eq!(session.step(None), failure(SaslFailure::MalformedRequest));
}

#[test]
fn scram_unknown_user_gets_plausible_challenge_then_not_authorized() {
    let (mut session, server_first) = awaiting_final(None);
    let text = String::from_utf8(server_first.clone()).unwrap();
    let salt = scram::decoy_keys(ScramHash::Sha256, "user@localhost", &[7; 32], ITERATIONS).salt;
    assert_eq!(salt.len(), crate::SALT_BYTES);
    assert_eq!(
        text,
        format!(
            "r=clientnonce{SERVER_NONCE},s={},i={ITERATIONS}",
            STANDARD.encode(&salt)
        )
    );
    let last =
        client_final::<ClientSha256>("pencil", "n=user,r=clientnonce", &server_first, b"n,,", "");
    assert_eq!(
        session.step(Some(&last)),
        failure(SaslFailure::NotAuthorized)
    );
}

#[test]
fn scram_unknown_user_salt_is_stable_within_a_nonce() {
    let (_, a) = awaiting_final(None);
    let (_, b) = awaiting_final(None);
    assert_eq!(a, b);
}

#[test]
fn scram_account_without_keys_for_hash_is_not_authorized() {
    // Only SHA-256 keys stored; SCRAM-SHA-1 sees a decoy and fails at the proof.
    assert_eq!(
        interop(
            scram_client::<ClientSha1>("pencil", ClientBinding::None),
            &plaintext(),
            Some(only(ScramHash::Sha256, "pencil"))
        ),
        failure(SaslFailure::NotAuthorized)
    );
}

// ---------------------------------------------------------------- ordering

#[test]
fn step_after_success_is_malformed_request() {
    let mut session = start("PLAIN", &tls12());
    session.step(Some(b"\0user\0pencil"));
    let SaslStep::CheckPassword(check) = session.credentials(Some(creds("pencil"))) else {
        panic!("expected a password check");
    };
    assert_eq!(session.password_checked(check.run()), success("user", None));
    assert!(session.is_finished());
    assert_eq!(
        session.step(Some(b"\0user\0pencil")),
        failure(SaslFailure::MalformedRequest)
    );
}

#[test]
fn step_after_failure_is_malformed_request() {
    let mut session = start("SCRAM-SHA-1", &plaintext());
    assert_eq!(
        session.step(Some(b"bogus")),
        failure(SaslFailure::MalformedRequest)
    );
    assert_eq!(
        session.step(Some(b"n,,n=user,r=abc")),
        failure(SaslFailure::MalformedRequest)
    );
}

#[test]
fn step_while_awaiting_credentials_is_malformed_request() {
    let mut session = start("SCRAM-SHA-1", &plaintext());
    assert_eq!(session.step(Some(b"n,,n=user,r=abc")), lookup("user"));
    assert_eq!(
        session.step(Some(b"c=biws")),
        failure(SaslFailure::MalformedRequest)
    );
    assert_eq!(
        session.credentials(Some(creds("pencil"))),
        failure(SaslFailure::TemporaryAuthFailure)
    );
}

#[test]
fn credentials_without_lookup_is_temporary_auth_failure() {
    let mut session = start("PLAIN", &tls12());
    assert_eq!(
        session.credentials(Some(creds("pencil"))),
        failure(SaslFailure::TemporaryAuthFailure)
    );
    assert!(session.is_finished());
}

#[test]
fn abort_ends_the_session() {
    let mut session = start("SCRAM-SHA-256", &plaintext());
    assert_eq!(session.step(Some(b"n,,n=user,r=abc")), lookup("user"));
    assert_eq!(session.abort(), failure(SaslFailure::Aborted));
    assert_eq!(
        session.credentials(Some(creds("pencil"))),
        failure(SaslFailure::TemporaryAuthFailure)
    );
    assert_eq!(session.step(None), failure(SaslFailure::MalformedRequest));
}

// ---------------------------------------------------------------- interop and -PLUS

#[test]
fn sasl_client_scram_sha1_without_binding_succeeds() {
    let step = interop(
        scram_client::<ClientSha1>("pencil", ClientBinding::None),
        &plaintext(),
        Some(creds("pencil")),
    );
    assert!(is_success(&step), "{step:?}");
}

#[test]
fn sasl_client_scram_sha256_without_binding_succeeds() {
    let step = interop(
        scram_client::<ClientSha256>("pencil", ClientBinding::None),
        &plaintext(),
        Some(creds("pencil")),
    );
    assert!(is_success(&step), "{step:?}");
}

#[test]
fn sasl_client_y_flag_succeeds_when_no_binding_is_offered() {
    for step in [
        interop(
            scram_client::<ClientSha1>("pencil", ClientBinding::Unsupported),
            &ctx(true, &[]),
            Some(creds("pencil")),
        ),
        interop(
            scram_client::<ClientSha256>("pencil", ClientBinding::Unsupported),
            &ctx(true, &[]),
            Some(creds("pencil")),
        ),
    ] {
        assert!(is_success(&step), "{step:?}");
    }
}

#[test]
fn sasl_client_y_flag_fails_when_binding_is_offered() {
    assert_eq!(
        interop(
            scram_client::<ClientSha256>("pencil", ClientBinding::Unsupported),
            &tls13(),
            Some(creds("pencil")),
        ),
        failure(SaslFailure::NotAuthorized)
    );
}

#[test]
fn sasl_client_plus_with_tls_exporter_succeeds() {
    for step in [
        interop(
            scram_client::<ClientSha256>("pencil", ClientBinding::TlsExporter(EXPORTER.to_vec())),
            &tls13(),
            Some(creds("pencil")),
        ),
        interop(
            scram_client::<ClientSha1>("pencil", ClientBinding::TlsExporter(EXPORTER.to_vec())),
            &tls13(),
            Some(creds("pencil")),
        ),
    ] {
        assert!(is_success(&step), "{step:?}");
    }
}

#[test]
fn sasl_client_plus_with_mismatched_exporter_fails() {
    assert_eq!(
        interop(
            scram_client::<ClientSha256>(
                "pencil",
                ClientBinding::TlsExporter(b"a different connection".to_vec())
            ),
            &tls13(),
            Some(creds("pencil")),
        ),
        failure(SaslFailure::NotAuthorized)
    );
}

#[test]
fn plus_with_tls_server_end_point_succeeds() {
    let step = scram_manual::<ClientSha256>(
        "SCRAM-SHA-256-PLUS",
        &tls12(),
        "p=tls-server-end-point,,",
        END_POINT,
        "pencil",
        Some(creds("pencil")),
    );
    assert!(is_success(&step), "{step:?}");
}

#[test]
fn plus_with_header_only_cbind_input_fails() {
    // The client left the binding data out of c=.
    assert_eq!(
        scram_manual::<ClientSha256>(
            "SCRAM-SHA-256-PLUS",
            &tls12(),
            "p=tls-server-end-point,,",
            b"",
            "pencil",
            Some(creds("pencil")),
        ),
        failure(SaslFailure::NotAuthorized)
    );
}

#[test]
fn plus_success_carries_server_signature_the_client_accepts() {
    let mut client =
        scram_client::<ClientSha256>("pencil", ClientBinding::TlsExporter(EXPORTER.to_vec()));
    let mut session = start(client.name(), &tls13());
    assert_eq!(session.mechanism(), Mechanism::ScramSha256Plus);
    assert_eq!(session.step(Some(&client.initial())), lookup("user"));
    let SaslStep::Challenge(server_first) = session.credentials(Some(creds("pencil"))) else {
        panic!("expected server-first-message");
    };
    let response = client.response(&server_first).unwrap();
    let SaslStep::Success {
        additional_data: Some(data),
        ..
    } = session.step(Some(&response))
    else {
        panic!("expected success");
    };
    assert!(data.starts_with(b"v="));
    assert_eq!(client.success(&data), Ok(()));
    // A tampered signature is refused by the client, so the check above is meaningful.
    let mut tampered = data.clone();
    if let Some(last) = tampered.get_mut(3) {
        *last ^= 1;
    }
    assert!(client.success(&tampered).is_err());
}

#[test]
fn debug_output_names_only_the_state() {
    let mut session = start("PLAIN", &tls12());
    session.step(Some(b"\0user\0pencil"));
    assert_eq!(
        format!("{session:?}"),
        "SaslSession { mechanism: Plain, domain: \"localhost\", state: \"AwaitingCredentials\", .. }"
    );
}

#[test]
fn unknown_user_sees_the_same_salt_on_every_attempt() {
    // A real account's salt never changes between attempts; a decoy's must not either, or two
    // tries would tell an unknown name from a known one.
    let server_first_salt = |server_nonce: &str| {
        let mut session = SaslSession::start("SCRAM-SHA-256", &plaintext(), server_nonce).unwrap();
        assert_eq!(
            session.step(Some(b"n,,n=ghost,r=clientnonce")),
            lookup("ghost")
        );
        let SaslStep::Challenge(first) = session.credentials(None) else {
            panic!("expected server-first-message");
        };
        let text = String::from_utf8(first).unwrap();
        text.split(',')
            .find_map(|part| part.strip_prefix("s="))
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        server_first_salt("nonce-one"),
        server_first_salt("nonce-two")
    );
}

/// The server-first-message for `username` on a context, with the nonces cut out: the part
/// (salt and iteration count) a prober compares between names.
fn decoy_shape(ctx: &ServerContext, username: &str, account: Option<StoredCredentials>) -> String {
    let mut session = SaslSession::start("SCRAM-SHA-256", ctx, SERVER_NONCE).unwrap();
    let first = format!("n,,n={username},r=clientnonce");
    assert!(matches!(
        session.step(Some(first.as_bytes())),
        SaslStep::LookupCredentials { .. }
    ));
    let SaslStep::Challenge(server_first) = session.credentials(account) else {
        panic!("expected server-first-message");
    };
    let text = String::from_utf8(server_first).unwrap();
    text.split_once(',').unwrap().1.to_owned()
}

/// `s=` decoded and `i=` of a server-first-message tail.
fn salt_and_iterations(shape: &str) -> (Vec<u8>, u32) {
    let (salt, iterations) = shape.split_once(',').unwrap();
    (
        STANDARD.decode(salt.strip_prefix("s=").unwrap()).unwrap(),
        iterations.strip_prefix("i=").unwrap().parse().unwrap(),
    )
}

#[test]
fn decoy_is_the_same_for_every_spelling_of_a_name() {
    // Account lookups fold case (nodeprep), so GHOST and ghost name one account; the decoy
    // must not tell them apart when neither exists.
    assert_eq!(
        decoy_shape(&plaintext(), "GHOST", None),
        decoy_shape(&plaintext(), "ghost", None)
    );
    assert_eq!(
        decoy_shape(&plaintext(), "Ghost", None),
        decoy_shape(&plaintext(), "ghost", None)
    );
}

#[test]
fn decoy_differs_between_hosts() {
    let mut other_host = plaintext();
    other_host.domain = "other.example".to_owned();
    assert_ne!(
        decoy_shape(&plaintext(), "ghost", None),
        decoy_shape(&other_host, "ghost", None)
    );
}

#[test]
fn decoy_has_the_shape_of_an_account_created_now() {
    for iterations in [ITERATIONS, 4096, 10_000] {
        let mut ctx = plaintext();
        ctx.new_account_iterations = iterations;
        let salt: [u8; crate::SALT_BYTES] = [3; crate::SALT_BYTES];
        let real = StoredCredentials {
            keys: vec![ScramKeys::derive(ScramHash::Sha256, "pw", &salt, iterations).unwrap()],
        };
        let (real_salt, real_iterations) =
            salt_and_iterations(&decoy_shape(&ctx, "alice", Some(real)));
        let (decoy_salt, decoy_iterations) = salt_and_iterations(&decoy_shape(&ctx, "ghost", None));
        assert_eq!(decoy_iterations, real_iterations, "at {iterations}");
        assert_eq!(decoy_salt.len(), real_salt.len(), "at {iterations}");
    }
}

#[test]
fn plain_for_an_unknown_user_checks_at_the_new_account_count_and_fails() {
    let mut ctx = tls12();
    ctx.new_account_iterations = 5000;
    let mut session = SaslSession::start("PLAIN", &ctx, SERVER_NONCE).unwrap();
    assert_eq!(session.step(Some(b"\0Ghost\0pw")), lookup("Ghost"));
    let SaslStep::CheckPassword(check) = session.credentials(None) else {
        panic!("expected a password check");
    };
    assert_eq!(
        format!("{check:?}"),
        "PasswordCheck { iterations: 5000, .. }"
    );
    // Even a check that (impossibly) matched does not log anyone in to a made-up account.
    assert_eq!(
        session.password_checked(true),
        failure(SaslFailure::NotAuthorized)
    );
}

#[test]
fn plain_refuses_keys_over_the_iteration_cap_without_hashing() {
    let mut keys = ScramKeys::derive(ScramHash::Sha256, "pencil", b"salt", 1).unwrap();
    keys.iterations = crate::MAX_ITERATIONS + 1;
    assert_eq!(
        plain(
            b"\0user\0pencil",
            Some(StoredCredentials { keys: vec![keys] })
        ),
        failure(SaslFailure::TemporaryAuthFailure)
    );
}

#[test]
fn password_checked_without_a_check_out_is_temporary_auth_failure() {
    let mut session = start("PLAIN", &tls12());
    assert_eq!(
        session.password_checked(true),
        failure(SaslFailure::TemporaryAuthFailure)
    );
}

/// The password check PLAIN hands out for `password` on an account with `account`'s keys.
fn check_for(password: &str, account: Option<StoredCredentials>) -> PasswordCheck {
    let mut session = start("PLAIN", &tls12());
    let message = format!("\0user\0{password}");
    assert_eq!(session.step(Some(message.as_bytes())), lookup("user"));
    match session.credentials(account) {
        SaslStep::CheckPassword(check) => check,
        other => panic!("expected a password check, got {other:?}"),
    }
}

#[test]
fn plain_login_derives_keys_for_the_hashes_an_account_lacks() {
    let account = only(ScramHash::Sha1, "pencil");
    let check = check_for("pencil", Some(account.clone()));
    assert_eq!(check.missing_hashes(), ScramHashes::only(ScramHash::Sha256));
    let mut salts = Vec::new();
    let outcome = check.run_upgrading(|hash| {
        salts.push(hash);
        b"fresh-salt".to_vec()
    });
    assert!(outcome.matches);
    assert_eq!(salts, [ScramHash::Sha256], "one salt per missing hash");
    let upgrade = outcome.upgrade.expect("keys for SHA-256");
    assert_eq!(&upgrade.verified, &account.keys[0]);
    assert_eq!(upgrade.added.len(), 1);
    let added = &upgrade.added[0];
    assert_eq!(added.hash, ScramHash::Sha256);
    assert_eq!(added.salt, b"fresh-salt");
    assert_eq!(added.iterations, ITERATIONS, "the count new accounts get");
    // The new keys are the password's: a SCRAM-SHA-256 login with them succeeds.
    assert!(added.verify_password("pencil"));
    let upgraded = StoredCredentials {
        keys: vec![account.keys[0].clone(), added.clone()],
    };
    let step = interop(
        scram_client::<ClientSha256>("pencil", ClientBinding::None),
        &tls12(),
        Some(upgraded),
    );
    assert!(is_success(&step), "{step:?}");
}

#[test]
fn no_upgrade_for_a_wrong_password_a_complete_account_or_a_decoy() {
    let wrong = check_for("wrong", Some(only(ScramHash::Sha1, "pencil")));
    let outcome = wrong.run_upgrading(|_| panic!("no salt is drawn for a wrong password"));
    assert_eq!(
        outcome,
        CheckOutcome {
            matches: false,
            upgrade: None
        }
    );
    let complete = check_for("pencil", Some(creds("pencil")));
    assert_eq!(complete.missing_hashes(), ScramHashes::NONE);
    let outcome = complete.run_upgrading(|_| panic!("nothing is missing"));
    assert!(outcome.matches);
    assert_eq!(outcome.upgrade, None);
    let decoy = check_for("pencil", None);
    assert_eq!(decoy.missing_hashes(), ScramHashes::NONE);
    let keyless = check_for("pencil", Some(StoredCredentials::default()));
    assert_eq!(
        keyless.missing_hashes(),
        ScramHashes::NONE,
        "an account without keys is checked against a decoy and never upgraded"
    );
}

#[test]
fn a_scram_mechanism_the_host_does_not_offer_is_invalid_mechanism() {
    let mut ctx = tls12();
    ctx.scram_hashes = ScramHashes::only(ScramHash::Sha1);
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"] {
        assert_eq!(
            SaslSession::start(mechanism, &ctx, SERVER_NONCE).err(),
            Some(SaslFailure::InvalidMechanism),
            "{mechanism}"
        );
    }
    assert!(SaslSession::start("SCRAM-SHA-1", &ctx, SERVER_NONCE).is_ok());
    assert!(SaslSession::start("PLAIN", &ctx, SERVER_NONCE).is_ok());
}
