//! Engine tests: bytes in, actions out, no sockets (STYLE.md §2, §6).

use std::sync::Arc;

use starling_sasl::{ChannelBinding, ChannelBindingType, StoredCredentials};

use super::*;
use crate::ids::SequentialIds;

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

/// A client-side view of one engine: feeds bytes, answers lookups and STARTTLS like the shell
/// would, and records everything written plus the non-write actions.
struct Harness {
    stream: C2sStream,
    credentials: Option<StoredCredentials>,
    tls: TlsInfo,
    written: String,
    events: Vec<String>,
}

impl Harness {
    fn plain(config: StreamConfig) -> Self {
        Self::new(config, Transport::Plain)
    }

    fn new(config: StreamConfig, transport: Transport) -> Self {
        let creds = StoredCredentials::from_password(
            "secret",
            b"salt-one-1234567",
            b"salt-two-1234567",
            4096,
        )
        .unwrap();
        Self {
            stream: C2sStream::new(
                Arc::new(config),
                transport,
                Box::new(SequentialIds::default()),
            ),
            credentials: Some(creds),
            tls: TlsInfo {
                channel_bindings: vec![ChannelBinding {
                    kind: ChannelBindingType::TlsExporter,
                    data: vec![7; 32],
                }],
            },
            written: String::new(),
            events: Vec::new(),
        }
    }

    /// Feed input and return what the engine wrote in response.
    fn send(&mut self, input: &[u8]) -> String {
        let before = self.written.len();
        self.stream.handle(Input::Bytes(input));
        self.drain();
        self.written[before..].to_owned()
    }

    fn drain(&mut self) {
        while let Some(action) = self.stream.poll_action() {
            match action {
                // Quote style is the serializer's business; compare with single quotes throughout.
                Action::Write(bytes) => self
                    .written
                    .push_str(&String::from_utf8(bytes).unwrap().replace('"', "'")),
                Action::StartTls => {
                    self.events.push("starttls".into());
                    self.stream.handle(Input::TlsEstablished(self.tls.clone()));
                }
                Action::LookupCredentials(jid) => {
                    self.events.push(format!("lookup {jid}"));
                    let creds = if jid.node().map(|n| n.as_str()) == Some("alice") {
                        self.credentials.clone()
                    } else {
                        None
                    };
                    self.stream.handle(Input::Credentials(creds));
                }
                Action::CheckPassword(check) => {
                    self.events.push("check-password".to_owned());
                    self.stream.handle(Input::PasswordChecked(check.run()));
                }
                Action::Authenticated(jid) => self.events.push(format!("authenticated {jid}")),
                Action::Bind(jid) => {
                    self.events.push(format!("bind {jid}"));
                    let answer = if jid.resource().as_str() == "taken" {
                        Err(starling_bind::BindError::Conflict)
                    } else {
                        Ok(())
                    };
                    self.stream.handle(Input::Bound(answer));
                }
                Action::Route(stanza) => {
                    let xml =
                        String::from_utf8(starling_xml::write_element(stanza.element())).unwrap();
                    self.events.push(format!("route {}", xml.replace('"', "'")));
                }
                Action::StreamElement(element) => {
                    let xml = String::from_utf8(starling_xml::write_element(&element)).unwrap();
                    self.events
                        .push(format!("element {}", xml.replace('"', "'")));
                }
                Action::AuthFailed(f) => self
                    .events
                    .push(format!("auth-failed {}", f.element_name())),
                Action::StreamError(c) => self.events.push(format!("stream-error {}", c.name())),
                Action::Close => self.events.push("close".into()),
                Action::SmEnabled(resumption) => self.events.push(format!(
                    "sm-enabled {} {}",
                    resumption.id, resumption.window_secs
                )),
                Action::Resume { previd, h } => {
                    self.events.push(format!("resume {previd} {h}"));
                    let outcome = if previd == "known" {
                        let mut acks = starling_sm::Acks::default();
                        for n in 1..=3 {
                            acks.handled_one();
                            let message: minidom::Element =
                                format!("<message xmlns='jabber:client' id='old{n}'/>")
                                    .parse()
                                    .unwrap();
                            acks.sent(OutboundStanza::new(&message));
                        }
                        ResumeOutcome::Resumed {
                            full_jid: "alice@localhost/phone".parse().unwrap(),
                            session: SmSession {
                                acks,
                                resumption: Some(Resumption {
                                    id: "known".into(),
                                    window_secs: 300,
                                }),
                            },
                        }
                    } else {
                        ResumeOutcome::Failed(SmFailure::ItemNotFound)
                    };
                    self.stream.handle(Input::Resumed(outcome));
                }
            }
        }
    }

    fn closed(&self) -> bool {
        self.events.last().map(String::as_str) == Some("close")
    }
}

fn plain_auth(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
    format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{payload}</auth>")
}

const STARTTLS: &str = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
const BIND: &str = "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>phone</resource></bind></iq>";

/// A stream after STARTTLS and the restart, ready for SASL.
fn tls_session() -> Harness {
    tls_session_with(StreamConfig::new(vec!["localhost".into()]))
}

/// [`tls_session`] with `config`.
fn tls_session_with(config: StreamConfig) -> Harness {
    let mut h = Harness::plain(config);
    h.send(HEADER.as_bytes());
    h.send(STARTTLS.as_bytes());
    h.send(HEADER.as_bytes());
    h
}

/// Log in over STARTTLS with PLAIN and bind `phone`; returns the harness, ready for stanzas.
fn bound_session() -> Harness {
    bound_session_with(StreamConfig::new(vec!["localhost".into()]))
}

/// [`bound_session`] with `config`.
fn bound_session_with(config: StreamConfig) -> Harness {
    let mut h = tls_session_with(config);
    h.send(plain_auth("alice", "secret").as_bytes());
    h.send(HEADER.as_bytes());
    let out = h.send(BIND.as_bytes());
    assert!(out.contains("<jid>alice@localhost/phone</jid>"), "{out}");
    h
}

#[test]
fn plaintext_stream_offers_only_required_starttls() {
    let mut h = Harness::plain(StreamConfig::new(vec!["localhost".into()]));
    let out = h.send(HEADER.as_bytes());
    assert!(
        out.starts_with("<?xml version='1.0'?><stream:stream"),
        "{out}"
    );
    assert!(out.contains("id='stream-1'"), "{out}");
    assert!(out.ends_with(
        "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>"
    ));
}

#[test]
fn wrong_stream_namespace_gets_header_then_invalid_namespace() {
    let mut h = Harness::plain(StreamConfig::new(vec!["localhost".into()]));
    let out = h.send(
        b"<stream:stream xmlns='jabber:client' xmlns:stream='urn:wrong' to='localhost' version='1.0'>",
    );
    assert!(
        out.contains("<stream:stream"),
        "our header comes first: {out}"
    );
    assert!(
        out.ends_with("<stream:error><invalid-namespace xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>")
            || out.contains("<invalid-namespace xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
        "{out}"
    );
    assert_eq!(h.events, ["stream-error invalid-namespace", "close"]);
}

#[test]
fn wrong_content_namespace_is_invalid_namespace() {
    let mut h = Harness::plain(StreamConfig::new(vec!["localhost".into()]));
    h.send(
        b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>",
    );
    assert_eq!(h.events, ["stream-error invalid-namespace", "close"]);
}

#[test]
fn unknown_host_is_host_unknown() {
    let mut h = Harness::plain(StreamConfig::new(vec!["localhost".into()]));
    let out = h.send(
        HEADER
            .replace("to='localhost'", "to='elsewhere.example'")
            .as_bytes(),
    );
    assert!(
        out.contains("<host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
        "{out}"
    );
    assert!(out.ends_with("</stream:stream>"));
    assert_eq!(h.events, ["stream-error host-unknown", "close"]);
}

#[test]
fn missing_version_is_unsupported_version() {
    let mut h = Harness::plain(StreamConfig::new(vec!["localhost".into()]));
    h.send(
        HEADER
            .replace("to='localhost' version='1.0'", "to='localhost'")
            .as_bytes(),
    );
    assert_eq!(h.events, ["stream-error unsupported-version", "close"]);
}

#[test]
fn bytes_after_starttls_in_the_same_read_close_the_connection_unparsed() {
    let mut h = Harness::plain(StreamConfig::new(vec!["localhost".into()]));
    h.send(HEADER.as_bytes());
    let out = h.send(format!("{STARTTLS}<message to='x@localhost'/>").as_bytes());
    assert_eq!(out, "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    assert_eq!(h.events, ["stream-error policy-violation", "close"]);
}

#[test]
fn stanza_before_authentication_is_not_authorized() {
    let mut h = tls_session();
    let out = h.send(b"<message to='bob@localhost'><body>hi</body></message>");
    assert!(
        out.contains("<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
        "{out}"
    );
    assert!(h.closed());
}

#[test]
fn auth_before_tls_when_required_is_encryption_required() {
    let mut config = StreamConfig::new(vec!["localhost".into()]);
    config.allow_plain_without_tls = false;
    let mut h = Harness::plain(config);
    h.send(HEADER.as_bytes());
    let out = h.send(plain_auth("alice", "secret").as_bytes());
    assert_eq!(
        out,
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><encryption-required/></failure>"
    );
    assert!(!h.closed());
}

#[test]
fn after_tls_mechanisms_and_channel_binding_types_are_offered() {
    let mut h = Harness::plain(StreamConfig::new(vec!["localhost".into()]));
    h.send(HEADER.as_bytes());
    h.send(STARTTLS.as_bytes());
    let out = h.send(HEADER.as_bytes());
    assert!(out.contains("id='stream-"), "{out}");
    assert!(
        out.ends_with(
            "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
             <mechanism>SCRAM-SHA-256-PLUS</mechanism><mechanism>SCRAM-SHA-1-PLUS</mechanism>\
             <mechanism>SCRAM-SHA-256</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism>\
             </mechanisms><sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'><channel-binding type='tls-exporter'/>\
             </sasl-channel-binding></stream:features>"
        ),
        "{out}"
    );
}

#[test]
fn plain_login_restarts_and_offers_bind_then_binds() {
    let mut h = tls_session();
    let out = h.send(plain_auth("alice", "secret").as_bytes());
    assert_eq!(out, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
    let out = h.send(HEADER.as_bytes());
    assert!(
        out.contains("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"),
        "{out}"
    );
    let out = h.send(BIND.as_bytes());
    assert!(
        out.contains("type='result'") && out.contains("<jid>alice@localhost/phone</jid>"),
        "{out}"
    );
    assert_eq!(
        h.events,
        [
            "starttls",
            "lookup alice@localhost",
            "check-password",
            "authenticated alice@localhost",
            "bind alice@localhost/phone"
        ]
    );
    assert_eq!(
        h.stream.session_state(),
        &SessionState::Bound {
            full_jid: "alice@localhost/phone".parse().unwrap()
        }
    );
}

/// Channel bindings are for SASL; once it succeeds the stream lets go of them and stays a
/// TLS stream.
#[test]
fn channel_bindings_are_dropped_after_sasl_success() {
    let mut h = tls_session();
    let bindings = |h: &Harness| h.stream.tls.as_ref().map(|tls| tls.channel_bindings.len());
    assert_eq!(bindings(&h), Some(1));
    let out = h.send(plain_auth("alice", "secret").as_bytes());
    assert_eq!(out, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
    assert_eq!(bindings(&h), Some(0));
    let out = h.send(HEADER.as_bytes());
    assert!(
        out.contains("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>")
            && !out.contains("starttls"),
        "{out}"
    );
}

#[test]
fn wrong_password_fails_and_keeps_the_stream_until_the_limit() {
    let mut h = tls_session();
    for attempt in 1..=3 {
        let out = h.send(plain_auth("alice", "wrong").as_bytes());
        assert!(
            out.starts_with(
                "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>"
            ),
            "attempt {attempt}: {out}"
        );
        assert_eq!(h.closed(), attempt == 3, "attempt {attempt}");
    }
    assert!(h.written.ends_with(
        "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
         <text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>too many failed authentication attempts</text>\
         </stream:error></stream:stream>"
    ));
}

#[test]
fn unknown_user_and_unknown_mechanism_fail_with_their_conditions() {
    let mut h = tls_session();
    let out = h.send(plain_auth("mallory", "secret").as_bytes());
    assert_eq!(
        out,
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>"
    );
    let out = h.send(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='X-FOO'>=</auth>");
    assert_eq!(
        out,
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><invalid-mechanism/></failure>"
    );
}

#[test]
fn bad_base64_is_incorrect_encoding() {
    let mut h = tls_session();
    let out =
        h.send(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>!!!</auth>");
    assert_eq!(
        out,
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><incorrect-encoding/></failure>"
    );
}

#[test]
fn storage_failure_is_temporary_auth_failure() {
    let mut h = tls_session();
    h.stream
        .handle(Input::Bytes(plain_auth("alice", "secret").as_bytes()));
    let mut saw_lookup = false;
    while let Some(action) = h.stream.poll_action() {
        saw_lookup |= matches!(action, Action::LookupCredentials(_));
    }
    assert!(saw_lookup);
    h.stream.handle(Input::CredentialsUnavailable);
    h.drain();
    assert!(h.written.ends_with(
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><temporary-auth-failure/></failure>"
    ));
}

#[test]
fn bound_session_routes_stanzas_with_the_full_jid_as_from() {
    let mut h = bound_session();
    let out = h.send(
        b"<iq type='get' id='p1' from='mallory@localhost/x'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    assert_eq!(out, "", "the router answers, not the engine");
    assert_eq!(
        h.events.last().unwrap(),
        "route <iq xmlns='jabber:client' from='alice@localhost/phone' id='p1' type='get'><ping xmlns='urn:xmpp:ping'/></iq>"
    );
}

#[test]
fn delivered_stanzas_are_written() {
    let mut h = bound_session();
    let message: Element =
        "<message xmlns='jabber:client' from='bob@localhost/x'><body>hi</body></message>"
            .parse()
            .unwrap();
    h.stream
        .handle(Input::Deliver(starling_stanza::OutboundStanza::new(
            &message,
        )));
    h.drain();
    assert!(
        h.written.ends_with(
            "<message xmlns='jabber:client' from='bob@localhost/x'><body>hi</body></message>"
        ),
        "{}",
        h.written
    );
}

#[test]
fn legacy_session_and_second_bind_are_answered_by_the_engine() {
    let mut h = bound_session();
    let out = h.send(
        b"<iq type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>",
    );
    assert_eq!(
        out,
        "<iq xmlns='jabber:client' id='s1' to='alice@localhost/phone' type='result'/>"
    );
    let out = h.send(BIND.as_bytes());
    assert!(
        out.contains("type='error'") && out.contains("<not-allowed"),
        "{out}"
    );
}

#[test]
fn refused_bind_is_a_stanza_error_and_the_session_stays_unbound() {
    let mut h = tls_session();
    h.send(plain_auth("alice", "secret").as_bytes());
    h.send(HEADER.as_bytes());
    let out = h.send(BIND.replace("phone", "taken").as_bytes());
    assert!(
        out.contains("type='error'")
            && out.contains("<conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"),
        "{out}"
    );
    assert!(matches!(
        h.stream.session_state(),
        SessionState::Authenticated { .. }
    ));
    let out = h.send(BIND.as_bytes());
    assert!(out.contains("<jid>alice@localhost/phone</jid>"), "{out}");
}

#[test]
fn close_request_ends_the_stream_with_its_error() {
    let mut h = bound_session();
    h.stream
        .handle(Input::Close(Some((StreamErrorCondition::Conflict, None))));
    h.drain();
    assert!(h.written.ends_with(
        "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>"
    ));
    assert!(h.closed());
}

#[test]
fn closing_tag_is_answered_with_ours() {
    let mut h = bound_session();
    let out = h.send(b"</stream:stream>");
    assert_eq!(out, "</stream:stream>");
    assert!(h.closed());
}

#[test]
fn shutdown_sends_system_shutdown() {
    let mut h = bound_session();
    h.stream.handle(Input::Shutdown);
    h.drain();
    assert!(h.written.ends_with(
        "<stream:error><system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>"
    ));
    assert!(h.closed());
}

/// STYLE.md §2: every split of the same input gives the same output.
#[test]
fn every_split_of_a_login_gives_the_same_transcript() {
    let client_stream1 = format!("{HEADER}{STARTTLS}");
    let client_stream2 = format!("{HEADER}{}", plain_auth("alice", "secret"));
    let client_stream3 = format!(
        "{HEADER}{BIND}<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq> </stream:stream>"
    );
    let run = |chunker: &dyn Fn(&[u8]) -> Vec<Vec<u8>>| {
        let mut h = Harness::plain(StreamConfig::new(vec!["localhost".into()]));
        for part in [&client_stream1, &client_stream2, &client_stream3] {
            for chunk in chunker(part.as_bytes()) {
                h.send(&chunk);
            }
        }
        (h.written, h.events)
    };
    let whole = run(&|b| vec![b.to_vec()]);
    assert!(
        whole.1.last().map(String::as_str) == Some("close"),
        "{:?}",
        whole.1
    );
    let bytewise = run(&|b| b.iter().map(|x| vec![*x]).collect());
    assert_eq!(whole, bytewise);
    for size in [2, 3, 7, 64] {
        let chunked = run(&|b| b.chunks(size).map(<[u8]>::to_vec).collect());
        assert_eq!(whole, chunked, "chunk size {size}");
    }
}

/// Feed a non-byte input and return what the engine wrote in response.
fn handle(h: &mut Harness, input: Input<'_>) -> String {
    let before = h.written.len();
    h.stream.handle(input);
    h.drain();
    h.written[before..].to_owned()
}

// XEP-0199 v2.0.1 §4.2: an idle bound session is pinged; the answer is consumed, not routed.
#[test]
fn idle_probe_pings_a_bound_session_and_swallows_the_answer() {
    let mut h = bound_session();
    let out = handle(&mut h, Input::IdleProbe);
    assert_eq!(
        out,
        "<iq type='get' id='ping-stream-6' from='localhost' to='alice@localhost/phone'>\
         <ping xmlns='urn:xmpp:ping'/></iq>"
    );
    let events_before = h.events.len();
    let out = h.send(b"<iq type='result' id='ping-stream-6'/>");
    assert_eq!(out, "");
    assert_eq!(h.events.len(), events_before, "{:?}", h.events);
    // A second answer with the same id is an ordinary stanza again.
    h.send(b"<iq type='result' id='ping-stream-6'/>");
    assert_eq!(
        h.events.last().map(String::as_str),
        Some(
            "route <iq xmlns='jabber:client' from='alice@localhost/phone' id='ping-stream-6' type='result'/>"
        )
    );
}

// RFC 6120 §4.6.1: before binding, the probe is a whitespace keepalive.
#[test]
fn idle_probe_before_binding_is_whitespace() {
    let mut h = Harness::plain(StreamConfig::new(vec!["localhost".into()]));
    assert_eq!(
        handle(&mut h, Input::IdleProbe),
        "",
        "nothing before our header"
    );
    h.send(HEADER.as_bytes());
    assert_eq!(handle(&mut h, Input::IdleProbe), " ");
    assert!(!h.stream.is_closed());
}

// RFC 6120 §4.9.3.4: a deadline the shell keeps ends the stream with connection-timeout.
#[test]
fn timeout_is_connection_timeout() {
    let mut h = Harness::plain(StreamConfig::new(vec!["localhost".into()]));
    h.send(HEADER.as_bytes());
    h.send(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mech");
    let out = handle(&mut h, Input::TimedOut);
    assert_eq!(
        out,
        "<stream:error><connection-timeout xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
         </stream:error></stream:stream>"
    );
    assert_eq!(
        h.events[h.events.len() - 2..],
        ["stream-error connection-timeout", "close"]
    );
}

// The shell delays <failure/> per peer address, so AuthFailed must come before the write.
#[test]
fn auth_failed_comes_before_the_failure_is_written() {
    let mut h = tls_session();
    h.stream
        .handle(Input::Bytes(plain_auth("alice", "wrong").as_bytes()));
    let mut order = Vec::new();
    while let Some(action) = h.stream.poll_action() {
        match action {
            Action::LookupCredentials(_) => {
                h.stream.handle(Input::Credentials(h.credentials.clone()))
            }
            Action::CheckPassword(check) => h.stream.handle(Input::PasswordChecked(check.run())),
            Action::AuthFailed(_) => order.push("auth-failed"),
            Action::Write(bytes) if bytes.starts_with(b"<failure") => order.push("write failure"),
            _ => {}
        }
    }
    assert_eq!(order, ["auth-failed", "write failure"]);
}

#[test]
fn an_idle_stream_releases_its_parser_and_carries_on() {
    let mut h = bound_session();
    assert!(h.stream.release_idle_memory());
    h.send(b"<iq type='get' id='p2'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert_eq!(
        h.events.last().unwrap(),
        "route <iq xmlns='jabber:client' from='alice@localhost/phone' id='p2' type='get'><ping xmlns='urn:xmpp:ping'/></iq>"
    );
    // Half a stanza keeps the parser awake; the rest still completes it.
    h.send(b"<message to='bob@localhost'><body>h");
    assert!(!h.stream.release_idle_memory());
    h.send(b"i</body></message>");
    assert!(h.events.last().unwrap().contains("<body>hi</body>"));
    assert!(h.stream.release_idle_memory());
    let out = h.send(b"</stream:stream>");
    assert!(out.ends_with("</stream:stream>"), "{out}");
}

// XEP-0198 stream management.

const SM: &str = "urn:xmpp:sm:3";

fn deliver(h: &mut Harness, id: &str) -> String {
    let message: minidom::Element = format!("<message xmlns='jabber:client' id='{id}'/>")
        .parse()
        .unwrap();
    let before = h.written.len();
    h.stream
        .handle(Input::Deliver(OutboundStanza::new(&message)));
    h.drain();
    h.written[before..].to_owned()
}

#[test]
fn sm_is_offered_next_to_bind_and_not_before_authentication() {
    let mut h = tls_session();
    assert!(!h.written.contains(SM), "{}", h.written);
    h.send(plain_auth("alice", "secret").as_bytes());
    let features = h.send(HEADER.as_bytes());
    assert!(
        features.contains("<sm xmlns='urn:xmpp:sm:3'/>"),
        "{features}"
    );

    let mut config = StreamConfig::new(vec!["localhost".into()]);
    config.stream_management = None;
    let mut off = Harness::plain(config);
    off.send(HEADER.as_bytes());
    off.send(STARTTLS.as_bytes());
    off.send(HEADER.as_bytes());
    off.send(plain_auth("alice", "secret").as_bytes());
    let features = off.send(HEADER.as_bytes());
    assert!(!features.contains(SM), "{features}");
}

#[test]
fn enable_before_binding_or_twice_is_an_unexpected_request() {
    let mut h = tls_session();
    h.send(plain_auth("alice", "secret").as_bytes());
    h.send(HEADER.as_bytes());
    let out = h.send(b"<enable xmlns='urn:xmpp:sm:3'/>");
    assert!(
        out.contains("<failed xmlns='urn:xmpp:sm:3'><unexpected-request"),
        "{out}"
    );
    h.send(BIND.as_bytes());
    let out = h.send(b"<enable xmlns='urn:xmpp:sm:3' resume='true' max='60'/>");
    assert_eq!(
        out,
        "<enabled xmlns='urn:xmpp:sm:3' id='stream-6' resume='true' max='60'/>"
    );
    assert!(
        h.events.iter().any(|e| e == "sm-enabled stream-6 60"),
        "{:?}",
        h.events
    );
    let out = h.send(b"<enable xmlns='urn:xmpp:sm:3'/>");
    assert!(out.contains("<unexpected-request"), "{out}");
    assert!(!h.closed());
}

#[test]
fn the_server_counts_handled_stanzas_and_acks_on_request() {
    let mut h = bound_session();
    h.send(b"<enable xmlns='urn:xmpp:sm:3'/>");
    // A stanza routed, one the engine answers itself (the legacy session request), and an
    // iq with a malformed payload count alike.
    h.send(b"<message to='bob@localhost' id='m1'><body>hi</body></message>");
    h.send(b"<iq type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>");
    let out = h.send(b"<r xmlns='urn:xmpp:sm:3'/>");
    assert_eq!(out, "<a xmlns='urn:xmpp:sm:3' h='2'/>");
    // Without resumption nothing is registered.
    assert!(!h.events.iter().any(|e| e.starts_with("sm-enabled")));
}

#[test]
fn the_server_asks_for_acks_every_n_stanzas_and_releases_what_is_acked() {
    let mut h = bound_session();
    h.send(b"<enable xmlns='urn:xmpp:sm:3'/>");
    for n in 1..crate::DEFAULT_ACK_REQUEST_EVERY {
        let out = deliver(&mut h, &format!("d{n}"));
        assert!(!out.contains("<r "), "{out}");
    }
    let out = deliver(&mut h, "d5");
    assert!(out.ends_with("<r xmlns='urn:xmpp:sm:3'/>"), "{out}");
    assert_eq!(h.stream.sm_session().unwrap().acks.unacked_len(), 5);
    h.send(b"<a xmlns='urn:xmpp:sm:3' h='4'/>");
    let acks = &h.stream.sm_session().unwrap().acks;
    assert_eq!(acks.unacked_len(), 1);
    assert!(!h.closed());
}

#[test]
fn an_ack_above_what_was_sent_ends_the_stream_with_handled_count_too_high() {
    let mut h = bound_session();
    h.send(b"<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    deliver(&mut h, "d1");
    let out = h.send(b"<a xmlns='urn:xmpp:sm:3' h='3'/>");
    assert!(out.contains("<undefined-condition"), "{out}");
    assert!(
        out.contains("<handled-count-too-high xmlns='urn:xmpp:sm:3' h='3' send-count='1'/>"),
        "{out}"
    );
    assert!(h.closed());
    // Ended by the server on purpose: not resumable.
    assert!(h.stream.take_sm_session().unwrap().resumption.is_none());
}

#[test]
fn a_broken_connection_keeps_resumption_and_a_closed_stream_does_not() {
    let mut h = bound_session();
    h.send(b"<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    h.stream.handle(Input::PeerClosed);
    h.drain();
    let session = h.stream.take_sm_session().unwrap();
    assert_eq!(
        session.resumption.unwrap().window_secs,
        crate::DEFAULT_RESUME_WINDOW_SECS
    );

    let mut h = bound_session();
    h.send(b"<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    h.send(b"</stream:stream>");
    assert!(h.stream.take_sm_session().unwrap().resumption.is_none());

    // A dead client found by the idle ping's timeout is kept, as after a shutdown.
    let mut h = bound_session();
    h.send(b"<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    h.stream.handle(Input::TimedOut);
    h.drain();
    assert!(h.stream.take_sm_session().unwrap().resumption.is_some());
}

#[test]
fn resume_takes_over_the_old_session_and_resends_what_was_not_acked() {
    let mut h = tls_session();
    h.send(plain_auth("alice", "secret").as_bytes());
    h.send(HEADER.as_bytes());
    // The old stream sent old1..old3; the client got the first.
    let out = h.send(b"<resume xmlns='urn:xmpp:sm:3' previd='known' h='1'/>");
    assert!(
        h.events.iter().any(|e| e == "resume known 1"),
        "{:?}",
        h.events
    );
    assert!(
        out.starts_with("<resumed xmlns='urn:xmpp:sm:3' previd='known' h='3'/>"),
        "{out}"
    );
    let old2 = out.find("id='old2'").unwrap();
    let old3 = out.find("id='old3'").unwrap();
    assert!(old2 < old3 && !out.contains("id='old1'"), "{out}");
    assert!(out.ends_with("<r xmlns='urn:xmpp:sm:3'/>"), "{out}");
    assert_eq!(
        h.stream.session_state(),
        &SessionState::Bound {
            full_jid: "alice@localhost/phone".parse().unwrap()
        }
    );
    // The count goes on from the old stream.
    h.send(b"<message to='bob@localhost' id='m9'/>");
    assert_eq!(
        h.send(b"<r xmlns='urn:xmpp:sm:3'/>"),
        "<a xmlns='urn:xmpp:sm:3' h='4'/>"
    );
}

#[test]
fn resuming_an_unknown_session_fails_and_the_client_may_bind() {
    let mut h = tls_session();
    h.send(plain_auth("alice", "secret").as_bytes());
    h.send(HEADER.as_bytes());
    let out = h.send(b"<resume xmlns='urn:xmpp:sm:3' previd='gone' h='0'/>");
    assert_eq!(
        out,
        "<failed xmlns='urn:xmpp:sm:3'><item-not-found \
         xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>"
    );
    let out = h.send(BIND.as_bytes());
    assert!(out.contains("<jid>alice@localhost/phone</jid>"), "{out}");
    // And resuming on a bound stream is an unexpected request.
    let out = h.send(b"<resume xmlns='urn:xmpp:sm:3' previd='known' h='0'/>");
    assert!(out.contains("<unexpected-request"), "{out}");
}

#[test]
fn sm_elements_are_unsupported_before_authentication_and_malformed_ones_fail() {
    let mut h = bound_session();
    let out = h.send(b"<enable xmlns='urn:xmpp:sm:3' resume='maybe'/>");
    assert!(out.contains("<bad-request"), "{out}");
    let out = h.send(b"<enabled xmlns='urn:xmpp:sm:3'/>");
    assert!(out.contains("<unsupported-stanza-type"), "{out}");
    assert!(h.closed());
}

#[test]
fn too_many_unacked_stanzas_end_the_stream() {
    let mut config = StreamConfig::new(vec!["localhost".into()]);
    config.stream_management = Some(crate::SmConfig {
        max_unacked: 3,
        request_every: 100,
        ..crate::SmConfig::default()
    });
    let mut h = Harness::plain(config);
    h.send(HEADER.as_bytes());
    h.send(STARTTLS.as_bytes());
    h.send(HEADER.as_bytes());
    h.send(plain_auth("alice", "secret").as_bytes());
    h.send(HEADER.as_bytes());
    h.send(BIND.as_bytes());
    h.send(b"<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    for n in 0..3 {
        deliver(&mut h, &format!("d{n}"));
    }
    assert!(!h.closed());
    let out = deliver(&mut h, "d3");
    assert!(out.contains("<policy-violation"), "{out}");
    assert!(h.closed());
    let session = h.stream.take_sm_session().unwrap();
    assert_eq!(session.acks.unacked_len(), 4, "kept for the §5 rule");
    assert!(session.resumption.is_none());
}

#[test]
fn shutdown_ends_only_the_transport_of_a_resumable_session() {
    let mut h = bound_session();
    h.send(b"<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    let before = h.written.len();
    h.stream.handle(Input::Shutdown);
    h.drain();
    assert_eq!(&h.written[before..], "", "no stream error, no closing tag");
    assert!(h.closed());
    assert!(h.stream.take_sm_session().unwrap().resumption.is_some());

    let mut h = bound_session();
    h.send(b"<enable xmlns='urn:xmpp:sm:3'/>");
    h.stream.handle(Input::Shutdown);
    h.drain();
    assert!(h.written.contains("<system-shutdown"), "{}", h.written);
}

#[test]
fn the_mechanisms_offered_follow_the_hosts_scram_offer() {
    let config = StreamConfig::new(vec!["localhost".into()]);
    let offers = Arc::clone(&config.scram_offers);
    let config = Arc::new(config);
    let features_after_tls = || {
        let mut h = Harness::plain((*config).clone());
        h.send(HEADER.as_bytes());
        h.send(STARTTLS.as_bytes());
        let out = h.send(HEADER.as_bytes());
        let start = out.find("<mechanisms").expect("mechanisms offered");
        let end = out.find("</mechanisms>").expect("mechanisms end");
        (h, out[start..end].to_owned())
    };
    // Some account on the host lacks SCRAM-SHA-256 keys: neither it nor its -PLUS variant
    // is offered, and a client that asks for it anyway is refused as for any mechanism not
    // offered.
    offers.set(
        "localhost",
        starling_sasl::ScramHashes::only(starling_sasl::ScramHash::Sha1),
    );
    let (mut h, mechanisms) = features_after_tls();
    assert_eq!(
        mechanisms,
        "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1-PLUS</mechanism>\
         <mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism>"
    );
    let out = h.send(
        b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>biwsbj1hbGljZSxyPWFiYw==</auth>",
    );
    assert_eq!(
        out,
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><invalid-mechanism/></failure>"
    );
    // Once every account has the keys, the next stream offers the hash again.
    offers.set("localhost", starling_sasl::ScramHashes::ALL);
    let (_, mechanisms) = features_after_tls();
    assert!(
        mechanisms.starts_with(
            "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-256-PLUS</mechanism>"
        ),
        "{mechanisms}"
    );
}

const CSI: &str = "urn:xmpp:csi:0";

fn csi_config() -> StreamConfig {
    let mut config = StreamConfig::new(vec!["localhost".into()]);
    config.stream_element_namespaces = vec![CSI.to_owned()];
    config
}

#[test]
fn nonzas_of_accepted_namespaces_leave_in_order_with_the_stanzas() {
    let mut h = bound_session_with(csi_config());
    let before = h.events.len();
    let out = h.send(
        b"<inactive xmlns='urn:xmpp:csi:0'/><iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>\
          <active xmlns='urn:xmpp:csi:0'/>",
    );
    assert_eq!(out, "");
    assert_eq!(
        h.events[before..],
        [
            "element <inactive xmlns='urn:xmpp:csi:0'/>",
            "route <iq xmlns='jabber:client' from='alice@localhost/phone' id='p1' type='get'><ping xmlns='urn:xmpp:ping'/></iq>",
            "element <active xmlns='urn:xmpp:csi:0'/>",
        ]
    );
    assert!(!h.closed());
}

#[test]
fn other_nonzas_are_still_unsupported_stanza_types() {
    let unsupported = "<stream:error><unsupported-stanza-type xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>";
    // Not configured: the CSI element is refused like any other.
    let mut h = bound_session();
    assert_eq!(h.send(b"<inactive xmlns='urn:xmpp:csi:0'/>"), unsupported);
    assert!(h.closed());
    // Configured, but another namespace.
    let mut h = bound_session_with(csi_config());
    assert_eq!(h.send(b"<other xmlns='urn:example:other'/>"), unsupported);
    assert!(h.closed());
    // Configured, but before binding: nonzas of modules are for connected resources.
    let mut h = tls_session_with(csi_config());
    h.send(plain_auth("alice", "secret").as_bytes());
    h.send(HEADER.as_bytes());
    assert_eq!(h.send(b"<inactive xmlns='urn:xmpp:csi:0'/>"), unsupported);
    assert!(!h.events.iter().any(|event| event.starts_with("element")));
}
