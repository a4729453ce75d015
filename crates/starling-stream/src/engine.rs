//! The c2s stream state machine: RFC 6120 §4 (streams), §5 (STARTTLS), §6 (SASL), §7 (binding).

use std::collections::VecDeque;
use std::sync::Arc;

use jid::{BareJid, DomainPart, FullJid, NodePart};
use minidom::Element;
use starling_sasl::{
    ChannelBinding, PasswordCheck, SaslFailure, SaslSession, SaslStep, ServerContext,
    StoredCredentials,
};
use starling_sm::{
    AckError, Acks, Failure as SmFailure, Request as SmRequest, Resumption, SmSession,
};
use starling_stanza::{
    IqType, NS_CLIENT, NS_SASL, NS_TLS, OutboundStanza, Stanza, StanzaErrorCondition,
    StreamErrorCondition,
};
use starling_xml::{HeaderOut, StreamEvent, StreamHeader, StreamParser, XmlError};

use crate::config::StreamConfig;
use crate::ids::IdSource;
use crate::nonza::{self, Features};

/// Facts about an established TLS session that SASL needs.
#[derive(Clone, Default)]
pub struct TlsInfo {
    /// Channel-binding data this TLS session can provide (RFC 5929, RFC 9266).
    pub channel_bindings: Vec<ChannelBinding>,
}

/// How the connection started.
pub enum Transport {
    /// Plain TCP; STARTTLS may follow (RFC 6120 §5).
    Plain,
    /// TLS from the first byte (XEP-0368 direct TLS).
    DirectTls(TlsInfo),
}

/// Something that happened to the connection.
pub enum Input<'a> {
    /// Bytes read from the peer (decrypted, if TLS is on).
    Bytes(&'a [u8]),
    /// The TLS handshake requested by [`Action::StartTls`] finished.
    TlsEstablished(TlsInfo),
    /// The TLS handshake requested by [`Action::StartTls`] failed; the socket is unusable.
    TlsFailed,
    /// The answer to [`Action::LookupCredentials`]: `None` when no such account exists.
    Credentials(Option<StoredCredentials>),
    /// [`Action::LookupCredentials`] or [`Action::CheckPassword`] could not be answered
    /// (storage is down, the check did not run): the attempt fails with
    /// `temporary-auth-failure` (RFC 6120 §6.5.11) and does not count as a wrong password.
    CredentialsUnavailable,
    /// The outcome of [`Action::CheckPassword`]'s [`PasswordCheck::run`].
    PasswordChecked(bool),
    /// The answer to [`Action::Bind`]: the session is registered under this full JID, or the
    /// registry refused it.
    Bound(Result<(), starling_bind::BindError>),
    /// A stanza routed to this session by someone else, serialized by the router; written as
    /// is.
    Deliver(OutboundStanza),
    /// Someone (a resource conflict, an administrator, a full queue) asked this session to end,
    /// with this stream error or, for `None`, with just the closing tag.
    Close(Option<(StreamErrorCondition, Option<String>)>),
    /// The server is shutting down (RFC 6120 §4.9.3.20 `system-shutdown`).
    Shutdown,
    /// Nothing has arrived from the peer for the idle period: a bound session is sent a
    /// XEP-0199 (v2.0.1) ping, which any live client answers, and an unbound one a whitespace
    /// keepalive (RFC 6120 §4.6.1). The shell owns the timers; see [`Input::TimedOut`].
    IdleProbe,
    /// A deadline the shell keeps passed: authentication was not finished in time, or nothing
    /// arrived after [`Input::IdleProbe`]. The stream ends with `<connection-timeout/>`
    /// (RFC 6120 §4.9.3.4).
    TimedOut,
    /// The peer closed its side of the connection, or the socket failed.
    PeerClosed,
    /// The answer to [`Action::Resume`].
    Resumed(ResumeOutcome),
    /// Stanzas have waited for an acknowledgement for the shell's ack delay: ask for one
    /// (XEP-0198 §4) unless an `<r/>` is already out.
    RequestAck,
}

/// What became of a resumption request ([`Action::Resume`]).
#[derive(Debug)]
pub enum ResumeOutcome {
    /// The session was taken over from its old connection: its full JID and stream
    /// management state (counters and unacknowledged stanzas).
    Resumed {
        /// The session's full JID.
        full_jid: FullJid,
        /// Its stream management state.
        session: SmSession,
    },
    /// It cannot be resumed (XEP-0198 §5: `item-not-found` when no such session is kept).
    Failed(SmFailure),
}

/// Something the connection task must do.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Write these bytes to the peer, in order.
    Write(Vec<u8>),
    /// Flush earlier writes, then run the TLS server handshake on this socket and answer with
    /// [`Input::TlsEstablished`] or [`Input::TlsFailed`]. No plaintext byte after this point is
    /// ever given to the engine.
    StartTls,
    /// Fetch the stored credentials of this account and answer with [`Input::Credentials`].
    LookupCredentials(BareJid),
    /// Run this PLAIN password check (one PBKDF2: CPU-heavy, so off the async reactor) and
    /// answer with [`Input::PasswordChecked`].
    CheckPassword(PasswordCheck),
    /// The stream is authenticated as this account (for logging and the registry).
    Authenticated(BareJid),
    /// Register this full JID in the session registry (RFC 6120 §7) and answer with
    /// [`Input::Bound`]. The conflict policy and resource limits are the registry's to apply.
    Bind(FullJid),
    /// A stanza from this connected resource, its `from` stamped, for the router.
    Route(Stanza),
    /// A first-level element in one of [`StreamConfig::stream_element_namespaces`] from this
    /// connected resource (a nonza such as XEP-0352's `<inactive/>`), for the module that
    /// accepts it. Handle it before the actions after it: they may depend on it (XEP-0352 §5.1).
    StreamElement(Element),
    /// The peer failed SASL; the condition is for logging. It comes before the `<failure/>`
    /// is written, so the shell can hold that write back to slow down password guessing.
    AuthFailed(SaslFailure),
    /// A protocol violation ended the stream; the condition is for logging.
    StreamError(StreamErrorCondition),
    /// Flush earlier writes, close the connection (TLS close_notify first) and drop the engine.
    Close,
    /// Stream management with resumption is on (XEP-0198 §3): keep the session resumable
    /// under this id after its connection breaks.
    SmEnabled(Resumption),
    /// The authenticated client asks to resume session `previd` (XEP-0198 §5); answer with
    /// [`Input::Resumed`]. `h` is how many stanzas it handled on the old stream.
    Resume {
        /// The id from `<enabled/>`.
        previd: String,
        /// The client's count.
        h: u32,
    },
}

/// Where a session is in Prosody's session model (`doc/session.txt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionState {
    /// `c2s_unauthed`: SASL has not succeeded yet.
    Unauthed,
    /// `c2s_unbound`: authenticated, no resource bound yet.
    Authenticated {
        /// The account.
        user: BareJid,
    },
    /// A connected resource.
    Bound {
        /// The bound full JID.
        full_jid: FullJid,
    },
}

/// Where the negotiation is.
enum Phase {
    /// Waiting for the peer's stream header (initial or after a restart).
    AwaitHeader,
    /// Header exchanged, features sent; processing top-level elements.
    Open,
    /// `<proceed/>` was sent; waiting for the shell's TLS handshake.
    TlsHandshake,
    /// A SASL exchange is running; `waiting_for_shell` while a credential lookup or a
    /// password check is out.
    Sasl {
        session: Box<SaslSession>,
        waiting_for_shell: bool,
    },
    /// A bind request is out to the registry; `iq` is the request to answer.
    /// Boxed: the request is as large as a stanza and the phase is kept for the stream's life.
    Binding(Box<PendingBind>),
    /// A resumption request is out to the shell.
    Resuming {
        /// The id the client named.
        previd: String,
        /// The client's count of stanzas handled on the old stream.
        h: u32,
    },
    /// Closed; no more input is processed.
    Closed,
}

/// A bind request waiting for the registry.
struct PendingBind {
    /// The request, to answer.
    iq: Stanza,
    full_jid: FullJid,
}

/// One client-to-server stream, from the first byte to the close.
pub struct C2sStream {
    config: Arc<StreamConfig>,
    ids: Box<dyn IdSource>,
    parser: StreamParser,
    phase: Phase,
    state: SessionState,
    /// `Some` once TLS is established (STARTTLS or direct TLS).
    tls: Option<TlsInfo>,
    /// The host the peer addressed in its first header; later headers must name the same.
    domain: Option<String>,
    /// Whether our stream header for the current stream has been written.
    header_sent: bool,
    auth_failures: u32,
    /// The id of the XEP-0199 ping sent by [`Input::IdleProbe`] and not yet answered; its
    /// answer is consumed here rather than routed.
    pending_ping: Option<String>,
    /// The SASL mechanism that authenticated the session, once one has.
    mechanism: Option<starling_sasl::Mechanism>,
    /// XEP-0198 state once the client enabled stream management (or resumed).
    sm: Option<Box<SmSession>>,
    /// Whether the session ended so that it may not be resumed: the client closed the stream
    /// itself, or the server ended it with a stream error other than a timeout or shutdown.
    ended_for_good: bool,
    actions: VecDeque<Action>,
}

impl C2sStream {
    /// A new stream on a freshly accepted connection.
    pub fn new(config: Arc<StreamConfig>, transport: Transport, ids: Box<dyn IdSource>) -> Self {
        let tls = match transport {
            Transport::Plain => None,
            Transport::DirectTls(info) => Some(info),
        };
        Self {
            parser: StreamParser::new(config.limits_unauthenticated),
            config,
            ids,
            phase: Phase::AwaitHeader,
            state: SessionState::Unauthed,
            tls,
            domain: None,
            header_sent: false,
            auth_failures: 0,
            pending_ping: None,
            mechanism: None,
            sm: None,
            ended_for_good: false,
            actions: VecDeque::new(),
        }
    }

    /// Where the session is in the session model.
    pub fn session_state(&self) -> &SessionState {
        &self.state
    }

    /// The SASL mechanism the session authenticated with; `None` before SASL succeeds.
    pub fn mechanism(&self) -> Option<starling_sasl::Mechanism> {
        self.mechanism
    }

    /// The stream management state, once enabled.
    pub fn sm_session(&self) -> Option<&SmSession> {
        self.sm.as_deref()
    }

    /// Takes the stream management state out (the connection is over): with its resumption
    /// id when the session may be resumed (XEP-0198 §5), which it may not after the client
    /// closed the stream or a stream error other than a timeout or shutdown ended it.
    pub fn take_sm_session(&mut self) -> Option<SmSession> {
        let mut session = *self.sm.take()?;
        if self.ended_for_good {
            session.resumption = None;
        }
        Some(session)
    }

    /// Whether stanzas wait for an acknowledgement that no `<r/>` has asked for yet (the
    /// shell then arms its ack-delay timer, see [`Input::RequestAck`]).
    pub fn wants_ack_request(&self) -> bool {
        self.sm.as_ref().is_some_and(|sm| sm.acks.has_unrequested())
    }

    /// True once the engine has asked for [`Action::Close`].
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Releases memory an idle stream does not need: the XML tokenizer's buffers (see
    /// `StreamParser::make_dormant`) and spare queue capacity. The shell calls it after the
    /// peer has been quiet for a while; the next input wakes everything transparently.
    /// Returns whether the parser went dormant (not mid-stanza, not before the header).
    pub fn release_idle_memory(&mut self) -> bool {
        self.actions.shrink_to_fit();
        if let Some(sm) = self.sm.as_mut() {
            sm.acks.shrink();
        }
        self.parser.make_dormant()
    }

    /// The next thing to do, in order; `None` when there is nothing until the next input.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Feed one input and run the engine as far as it can go.
    pub fn handle(&mut self, input: Input<'_>) {
        if self.is_closed() {
            return;
        }
        match input {
            Input::Bytes(bytes) => {
                if matches!(self.phase, Phase::TlsHandshake) {
                    // RFC 6120 §5.4.3.3: nothing may be read as plaintext once <proceed/> is out.
                    self.close_silently();
                    return;
                }
                self.parser.feed(bytes);
            }
            Input::TlsEstablished(info) => {
                if !matches!(self.phase, Phase::TlsHandshake) {
                    self.close_silently();
                    return;
                }
                self.tls = Some(info);
                self.restart_stream();
            }
            Input::TlsFailed | Input::PeerClosed => {
                self.close_silently();
                return;
            }
            Input::Credentials(creds) => {
                let Some(step) = self.shell_answered(|session| session.credentials(creds)) else {
                    return;
                };
                self.on_sasl_step(step);
            }
            Input::PasswordChecked(matches) => {
                let Some(step) = self.shell_answered(|session| session.password_checked(matches))
                else {
                    return;
                };
                self.on_sasl_step(step);
            }
            Input::CredentialsUnavailable => {
                if matches!(
                    self.phase,
                    Phase::Sasl {
                        waiting_for_shell: true,
                        ..
                    }
                ) {
                    self.phase = Phase::Open;
                    self.actions
                        .push_back(Action::AuthFailed(SaslFailure::TemporaryAuthFailure));
                    self.write(nonza::sasl_failure(SaslFailure::TemporaryAuthFailure));
                }
            }
            Input::Bound(result) => {
                let Phase::Binding(pending) = std::mem::replace(&mut self.phase, Phase::Open)
                else {
                    return;
                };
                let PendingBind { iq, full_jid } = *pending;
                match result {
                    Ok(()) => {
                        let mut reply = iq.iq_result();
                        reply.append_child(starling_bind::bind_result_payload(&full_jid));
                        self.write(starling_xml::write_element(&reply));
                        self.state = SessionState::Bound { full_jid };
                    }
                    Err(err) => self.reply_error(&iq, err.condition()),
                }
            }
            Input::Deliver(stanza) => {
                if matches!(self.state, SessionState::Bound { .. }) {
                    self.write_stanza(stanza);
                    self.maybe_request_ack();
                }
                return;
            }
            Input::Resumed(outcome) => {
                let Phase::Resuming { previd, h } = std::mem::replace(&mut self.phase, Phase::Open)
                else {
                    return;
                };
                self.on_resumed(outcome, &previd, h);
            }
            Input::RequestAck => {
                let closed = self.is_closed();
                if let Some(sm) = self.sm.as_mut()
                    && sm.acks.has_unrequested()
                    && !closed
                {
                    sm.acks.requested();
                    self.write(starling_sm::ack_request());
                }
                return;
            }
            Input::Close(reason) => {
                self.ended_for_good = true;
                match reason {
                    Some((condition, text)) => self.stream_error(condition, text.as_deref()),
                    None => {
                        self.write(starling_xml::STREAM_CLOSE.to_vec());
                        self.close();
                    }
                }
                return;
            }
            Input::Shutdown => {
                if self.sm.as_ref().is_some_and(|sm| sm.resumption.is_some()) {
                    // XEP-0198 §5: the session outlives the restart (the shell saves it), so
                    // only the transport ends, as a dropped connection would, and the client
                    // resumes once the server is back.
                    self.close();
                } else {
                    self.stream_error(StreamErrorCondition::SystemShutdown, None);
                }
                return;
            }
            Input::IdleProbe => {
                if let (Some(sm), Phase::Open) = (self.sm.as_mut(), &self.phase) {
                    // XEP-0198 §4: with stream management an <r/> is the cheaper probe, and
                    // its <a/> also releases acknowledged stanzas.
                    sm.acks.requested();
                    self.write(starling_sm::ack_request());
                } else if let (SessionState::Bound { full_jid }, Phase::Open) =
                    (&self.state, &self.phase)
                {
                    let id = format!("ping-{}", self.ids.stream_id());
                    let from = self.domain.clone().unwrap_or_default();
                    let ping = nonza::ping(&id, &from, full_jid.as_str());
                    self.write(ping);
                    self.pending_ping = Some(id);
                } else if self.header_sent {
                    self.write(b" ".to_vec());
                }
                return;
            }
            Input::TimedOut => {
                self.stream_error(StreamErrorCondition::ConnectionTimeout, None);
                return;
            }
        }
        self.process();
    }

    /// Run parsed events until the engine must wait for bytes or for an answer.
    fn process(&mut self) {
        loop {
            match &self.phase {
                Phase::Closed
                | Phase::TlsHandshake
                | Phase::Binding(_)
                | Phase::Resuming { .. } => {
                    return;
                }
                Phase::Sasl {
                    waiting_for_shell: true,
                    ..
                } => return,
                Phase::AwaitHeader | Phase::Open | Phase::Sasl { .. } => {}
            }
            match self.parser.next_event() {
                Ok(None) => return,
                Ok(Some(event)) => self.on_event(event),
                Err(err) => self.on_xml_error(&err),
            }
        }
    }

    fn on_event(&mut self, event: StreamEvent) {
        match (event, &self.phase) {
            (StreamEvent::Header(header), Phase::AwaitHeader) => self.on_header(header),
            (StreamEvent::Header(_), _) => {
                // A second header inside an open stream is not well-formed XML.
                self.stream_error(StreamErrorCondition::NotWellFormed, None);
            }
            (StreamEvent::Whitespace, _) => {}
            (StreamEvent::Close, _) => {
                // XEP-0198 §5: a stream the client closes is over; it is not kept for resumption.
                self.ended_for_good = true;
                // RFC 6120 §4.4: answer the peer's closing tag with ours, then close.
                if !self.header_sent {
                    self.send_header();
                }
                self.write(b"</stream:stream>".to_vec());
                self.close();
            }
            (StreamEvent::Element(element), _) => self.on_element(element),
        }
    }

    fn on_xml_error(&mut self, err: &XmlError) {
        let condition = stream_condition(err);
        self.stream_error(condition, Some(&err.to_string()));
    }

    fn on_header(&mut self, header: StreamHeader) {
        // §4.9.1.1: even when the header is wrong, our own header goes out first, so the
        // error is written inside a stream the peer can parse.
        let requested = header.to.as_deref().map(normalise_domain);
        let domain_ok = match (&requested, &self.domain) {
            (Some(Some(requested)), Some(previous)) => requested == previous,
            (Some(Some(requested)), None) => self.config.hosts.iter().any(|h| h == requested),
            (Some(None), _) | (None, _) => false,
        };
        if domain_ok {
            self.domain = requested.flatten();
        }
        self.send_header_to(header.from.as_deref());
        if header.content_namespace.as_deref() != Some(NS_CLIENT) {
            // §4.8.1, §4.9.3.10: the content namespace of a c2s stream is jabber:client.
            self.stream_error(
                StreamErrorCondition::InvalidNamespace,
                Some("content namespace must be jabber:client"),
            );
            return;
        }
        if !domain_ok {
            self.stream_error(
                StreamErrorCondition::HostUnknown,
                Some("this server does not serve that host"),
            );
            return;
        }
        match header.version.as_deref().map(parse_major_version) {
            Some(Some(1)) => {}
            // §4.7.5: a missing version means pre-1.0 XMPP, which has no SASL or TLS negotiation.
            _ => {
                self.stream_error(
                    StreamErrorCondition::UnsupportedVersion,
                    Some("version 1.0 is required"),
                );
                return;
            }
        }
        self.phase = Phase::Open;
        self.send_features();
    }

    fn send_features(&mut self) {
        let bytes = match &self.state {
            SessionState::Unauthed => {
                let encrypted = self.tls.is_some();
                let starttls = !encrypted && self.config.starttls_available;
                if starttls && self.config.require_encryption {
                    nonza::features(&Features::StartTlsOnly)
                } else {
                    let ctx = self.sasl_context();
                    let mechanisms = if self.config.require_encryption && !encrypted {
                        Vec::new()
                    } else {
                        starling_sasl::offered_mechanisms(&ctx)
                    };
                    nonza::features(&Features::Sasl {
                        starttls,
                        mechanisms: &mechanisms,
                        channel_bindings: &ctx.channel_bindings,
                        extra: &self.config.extra_unauthenticated_features,
                    })
                }
            }
            SessionState::Authenticated { .. } => nonza::features(&Features::Bind {
                extra: &self.config.extra_bound_features,
                stream_management: self.config.stream_management.is_some(),
            }),
            // A bound session never restarts its stream.
            SessionState::Bound { .. } => nonza::features(&Features::Sasl {
                starttls: false,
                mechanisms: &[],
                channel_bindings: &[],
                extra: &[],
            }),
        };
        self.write(bytes);
    }

    fn sasl_context(&self) -> ServerContext {
        let domain = self.domain.clone().unwrap_or_default();
        ServerContext {
            // The host's offer, read now: a host whose last account just got SCRAM-SHA-256
            // keys offers it from the next stream on (`starling_sasl::ScramOffers`).
            scram_hashes: self.config.scram_offers.get(&domain),
            domain,
            is_encrypted: self.tls.is_some(),
            allow_plain_without_tls: self.config.allow_plain_without_tls,
            channel_bindings: self
                .tls
                .as_ref()
                .map(|t| t.channel_bindings.clone())
                .unwrap_or_default(),
            decoy_secret: self.config.sasl_decoy_secret,
            new_account_iterations: self.config.new_account_iterations,
        }
    }

    fn on_element(&mut self, element: Element) {
        if matches!(self.phase, Phase::Sasl { .. }) {
            self.on_sasl_element(&element);
            return;
        }
        if self.config.stream_management.is_some()
            && let Some(request) = starling_sm::parse(&element)
        {
            self.on_sm(request);
            return;
        }
        match self.state.clone() {
            SessionState::Unauthed => self.on_unauthed_element(element),
            SessionState::Authenticated { user } => self.on_unbound_element(element, &user),
            SessionState::Bound { full_jid } => self.on_bound_element(element, &full_jid),
        }
    }

    fn on_unauthed_element(&mut self, element: Element) {
        if element.is("starttls", NS_TLS) {
            self.on_starttls();
        } else if element.is("auth", NS_SASL) {
            self.on_auth(&element);
        } else if is_stanza(&element) {
            // §4.9.3.12: no stanzas before authentication.
            self.stream_error(
                StreamErrorCondition::NotAuthorized,
                Some("authenticate first"),
            );
        } else {
            self.stream_error(StreamErrorCondition::UnsupportedStanzaType, None);
        }
    }

    fn on_starttls(&mut self) {
        if self.tls.is_some() || !self.config.starttls_available {
            // §5.4.2.2: a failure closes the stream and the connection.
            self.write(nonza::tls_failure());
            self.close();
            return;
        }
        self.write(nonza::tls_proceed());
        if self.parser.has_pending_input() {
            // §5.4.3.3: bytes sent after <starttls/> and before the handshake could be an
            // injection by a man in the middle; they are never parsed. The stream cannot carry
            // an error any more (the peer now expects a TLS handshake), so just close.
            self.actions
                .push_back(Action::StreamError(StreamErrorCondition::PolicyViolation));
            self.close();
            return;
        }
        self.phase = Phase::TlsHandshake;
        self.actions.push_back(Action::StartTls);
    }

    fn on_auth(&mut self, element: &Element) {
        if self.config.require_encryption && self.tls.is_none() {
            self.sasl_failed(SaslFailure::EncryptionRequired);
            return;
        }
        let mechanism = element.attr("mechanism").unwrap_or_default();
        let ctx = self.sasl_context();
        let nonce = self.ids.nonce();
        let mut session = match SaslSession::start(mechanism, &ctx, &nonce) {
            Ok(session) => session,
            Err(failure) => {
                self.sasl_failed(failure);
                return;
            }
        };
        let response = match starling_sasl::decode_payload(&element.text()) {
            Ok(response) => response,
            Err(failure) => {
                self.sasl_failed(failure);
                return;
            }
        };
        let step = session.step(response.as_deref());
        self.phase = Phase::Sasl {
            session: Box::new(session),
            waiting_for_shell: false,
        };
        self.on_sasl_step(step);
    }

    fn on_sasl_element(&mut self, element: &Element) {
        if element.is("abort", NS_SASL) {
            // §6.4.4: the client gave up; this is a failure like any other for the retry count.
            self.sasl_failed(SaslFailure::Aborted);
            return;
        }
        if !element.is("response", NS_SASL) {
            self.sasl_failed(SaslFailure::MalformedRequest);
            return;
        }
        let response = match starling_sasl::decode_payload(&element.text()) {
            Ok(response) => response,
            Err(failure) => {
                self.sasl_failed(failure);
                return;
            }
        };
        let step = match &mut self.phase {
            Phase::Sasl { session, .. } => session.step(response.as_deref()),
            _ => return,
        };
        self.on_sasl_step(step);
    }

    fn on_sasl_step(&mut self, step: SaslStep) {
        match step {
            SaslStep::Challenge(data) => self.write(nonza::sasl_challenge(&data)),
            SaslStep::LookupCredentials { username } => match self.account_jid(&username) {
                Some(jid) => {
                    self.wait_for_shell();
                    self.actions.push_back(Action::LookupCredentials(jid));
                }
                None => {
                    // A username that is not a valid localpart cannot have an account; answer
                    // as for an unknown user so the outcome does not reveal why.
                    let step = match &mut self.phase {
                        Phase::Sasl { session, .. } => session.credentials(None),
                        _ => return,
                    };
                    self.on_sasl_step(step);
                }
            },
            SaslStep::Success {
                username,
                additional_data,
            } => {
                let Some(user) = self.account_jid(&username) else {
                    self.sasl_failed(SaslFailure::NotAuthorized);
                    return;
                };
                if let Phase::Sasl { session, .. } = &self.phase {
                    self.mechanism = Some(session.mechanism());
                }
                self.write(nonza::sasl_success(additional_data.as_deref()));
                self.actions.push_back(Action::Authenticated(user.clone()));
                self.state = SessionState::Authenticated { user };
                // Channel bindings serve SASL only, and SASL is over for this stream's life
                // (RFC 6120 §6.4.6); an idle session does not keep them.
                if let Some(tls) = self.tls.as_mut() {
                    tls.channel_bindings = Vec::new();
                }
                self.parser.set_limits(self.config.limits_authenticated);
                // §6.4.6: after <success/> both sides restart the stream.
                self.restart_stream();
            }
            SaslStep::CheckPassword(check) => {
                self.wait_for_shell();
                self.actions.push_back(Action::CheckPassword(check));
            }
            SaslStep::Failure(failure) => self.sasl_failed(failure),
        }
    }

    /// Feeds the shell's answer to the SASL exchange waiting for one; `None` (the answer is
    /// ignored) when none is waiting.
    fn shell_answered(
        &mut self,
        answer: impl FnOnce(&mut SaslSession) -> SaslStep,
    ) -> Option<SaslStep> {
        match &mut self.phase {
            Phase::Sasl {
                session,
                waiting_for_shell,
            } if *waiting_for_shell => {
                *waiting_for_shell = false;
                Some(answer(session))
            }
            _ => None,
        }
    }

    /// Marks the running SASL exchange as waiting for the shell's answer.
    fn wait_for_shell(&mut self) {
        if let Phase::Sasl {
            waiting_for_shell, ..
        } = &mut self.phase
        {
            *waiting_for_shell = true;
        }
    }

    fn sasl_failed(&mut self, failure: SaslFailure) {
        self.phase = Phase::Open;
        // AuthFailed goes first so the shell can delay the <failure/> (see Action::AuthFailed).
        self.actions.push_back(Action::AuthFailed(failure));
        self.write(nonza::sasl_failure(failure));
        self.auth_failures += 1;
        if self.auth_failures >= self.config.max_auth_failures {
            // §6.4.5: retries are limited; past the limit the stream ends.
            self.stream_error(
                StreamErrorCondition::PolicyViolation,
                Some("too many failed authentication attempts"),
            );
        }
    }

    fn account_jid(&self, username: &str) -> Option<BareJid> {
        let node = NodePart::new(username).ok()?;
        let domain = DomainPart::new(self.domain.as_deref()?).ok()?;
        Some(BareJid::from_parts(Some(&node), &domain))
    }

    fn on_unbound_element(&mut self, element: Element, user: &BareJid) {
        let Ok(stanza) = Stanza::try_from(element) else {
            self.stream_error(StreamErrorCondition::UnsupportedStanzaType, None);
            return;
        };
        let payload = match stanza.iq() {
            Ok((IqType::Set, Some(payload))) if payload.is("bind", starling_stanza::NS_BIND) => {
                payload.clone()
            }
            _ => {
                // RFC 6120 §7.1: a client must bind a resource before it sends other stanzas.
                self.stream_error(
                    StreamErrorCondition::NotAuthorized,
                    Some("bind a resource first"),
                );
                return;
            }
        };
        let resource = starling_bind::parse_bind_request(&payload).and_then(|requested| {
            starling_bind::choose_resource(requested.as_deref(), self.ids.resource())
        });
        match resource {
            Ok(resource) => {
                let full_jid = user.with_resource(&resource);
                self.actions.push_back(Action::Bind(full_jid.clone()));
                self.phase = Phase::Binding(Box::new(PendingBind {
                    iq: stanza,
                    full_jid,
                }));
            }
            Err(err) => self.reply_error(&stanza, err.condition()),
        }
    }

    fn on_bound_element(&mut self, element: Element, full_jid: &FullJid) {
        let namespaces = &self.config.stream_element_namespaces;
        if !namespaces.is_empty()
            && !element.has_ns(NS_CLIENT)
            && namespaces.iter().any(|ns| element.has_ns(ns.as_str()))
        {
            self.actions.push_back(Action::StreamElement(element));
            return;
        }
        let mut stanza = match Stanza::try_from(element) {
            Ok(stanza) => stanza,
            Err(_) => {
                // §4.9.3.24: a first-level element that is not a stanza.
                self.stream_error(StreamErrorCondition::UnsupportedStanzaType, None);
                return;
            }
        };
        // XEP-0198 §4: every stanza counts as handled once taken in, whatever becomes of it
        // (the router finishes with it before any later <a/> is written).
        if let Some(sm) = self.sm.as_mut() {
            sm.acks.handled_one();
        }
        // RFC 6120 §8.1.2.1: the server stamps the full JID of the sender on every stanza; a
        // `from` the client wrote itself is never passed on.
        stanza.set_from(full_jid.as_str());
        if self.pending_ping.is_some()
            && self.is_to_server(&stanza)
            && matches!(stanza.iq(), Ok((IqType::Result | IqType::Error, _)))
            && stanza.id() == self.pending_ping.as_deref()
        {
            // The answer to our own idle ping (XEP-0199 §4.3): proof of life, nothing to route.
            self.pending_ping = None;
            return;
        }
        if let Ok((IqType::Set, Some(payload))) = stanza.iq()
            && self.is_to_server(&stanza)
        {
            if payload.is("bind", starling_stanza::NS_BIND) {
                // One resource per stream: RFC 6120 §7.7.2.? leaves a second bind to policy.
                self.reply_error(&stanza, StanzaErrorCondition::NotAllowed);
                return;
            }
            if starling_bind::is_session_request(payload) {
                // RFC 6121 Appendix E: the legacy session request is a no-op that succeeds.
                self.write_stanza(OutboundStanza::new(&stanza.iq_result()));
                return;
            }
        }
        self.actions.push_back(Action::Route(stanza));
    }

    /// Addressed to the server itself: no `to`, or our domain.
    fn is_to_server(&self, stanza: &Stanza) -> bool {
        match stanza.to() {
            None => true,
            Some(to) => normalise_domain(to).is_some_and(|d| Some(&d) == self.domain.as_ref()),
        }
    }

    fn reply_error(&mut self, stanza: &Stanza, condition: StanzaErrorCondition) {
        // A stanza without `to` is answered without `from`: RFC 6120 §10.3.3 has the server
        // handle it on behalf of the account, and clients match such replies by id.
        if let Some(reply) = stanza.error_reply(condition) {
            self.write_stanza(OutboundStanza::new(&reply));
        }
    }

    /// Writes a stanza to the client, counting it for stream management (XEP-0198 §4).
    fn write_stanza(&mut self, stanza: OutboundStanza) {
        self.write(stanza.bytes().to_vec());
        let Some(sm) = self.sm.as_mut() else {
            return;
        };
        sm.acks.sent(stanza);
        let max = self
            .config
            .stream_management
            .map_or(usize::MAX, |c| c.max_unacked);
        if sm.acks.unacked_len() > max {
            self.stream_error(
                StreamErrorCondition::PolicyViolation,
                Some("too many stanzas left unacknowledged"),
            );
        }
    }

    /// Asks for an acknowledgement once enough stanzas went out without one (§4).
    fn maybe_request_ack(&mut self) {
        let every = match self.config.stream_management {
            Some(config) => config.request_every,
            None => return,
        };
        if let Some(sm) = self.sm.as_mut()
            && !matches!(self.phase, Phase::Closed)
            && sm.acks.wants_request(every)
        {
            sm.acks.requested();
            self.write(starling_sm::ack_request());
        }
    }

    fn on_sm(&mut self, request: Result<SmRequest, starling_sm::NonzaError>) {
        let request = match request {
            Ok(request) => request,
            Err(starling_sm::NonzaError::UnknownElement(_)) => {
                // §4.9.3.24: not an element a client may send.
                self.stream_error(StreamErrorCondition::UnsupportedStanzaType, None);
                return;
            }
            Err(starling_sm::NonzaError::BadAttribute(_)) => {
                self.write(starling_sm::failed(SmFailure::BadRequest, None));
                return;
            }
        };
        match request {
            SmRequest::Enable { resume, max } => self.on_sm_enable(resume, max),
            SmRequest::AckRequest => match self.sm.as_ref() {
                Some(sm) => self.write(starling_sm::ack(sm.acks.handled())),
                None => self.write(starling_sm::failed(SmFailure::UnexpectedRequest, None)),
            },
            SmRequest::Ack { h } => {
                let Some(sm) = self.sm.as_mut() else {
                    self.write(starling_sm::failed(SmFailure::UnexpectedRequest, None));
                    return;
                };
                if let Err(AckError::TooHigh { h, sent }) = sm.acks.on_ack(h) {
                    self.handled_count_too_high(h, sent);
                }
            }
            SmRequest::Resume { previd, h } => {
                // §5: resumption replaces binding, so it comes after authentication and
                // before a resource is bound (or enabled).
                if !matches!(self.state, SessionState::Authenticated { .. }) || self.sm.is_some() {
                    self.write(starling_sm::failed(SmFailure::UnexpectedRequest, None));
                    return;
                }
                self.actions.push_back(Action::Resume {
                    previd: previd.clone(),
                    h,
                });
                self.phase = Phase::Resuming { previd, h };
            }
        }
    }

    fn on_sm_enable(&mut self, resume: bool, max: Option<u32>) {
        // §3: only a bound resource enables stream management, and only once.
        let Some(config) = self.config.stream_management else {
            return;
        };
        if !matches!(self.state, SessionState::Bound { .. }) || self.sm.is_some() {
            self.write(starling_sm::failed(SmFailure::UnexpectedRequest, None));
            return;
        }
        let window = match max {
            Some(asked) if asked > 0 => asked.min(config.resume_window_secs),
            _ => config.resume_window_secs,
        };
        let resumption = (resume && window > 0).then(|| Resumption {
            id: self.ids.stream_id(),
            window_secs: window,
        });
        self.write(starling_sm::enabled(
            resumption.as_ref().map(|r| (r.id.as_str(), r.window_secs)),
        ));
        if let Some(resumption) = &resumption {
            self.actions
                .push_back(Action::SmEnabled(resumption.clone()));
        }
        self.sm = Some(Box::new(SmSession {
            acks: Acks::default(),
            resumption,
        }));
    }

    fn on_resumed(&mut self, outcome: ResumeOutcome, previd: &str, h: u32) {
        let (full_jid, mut session) = match outcome {
            ResumeOutcome::Resumed { full_jid, session } => (full_jid, session),
            ResumeOutcome::Failed(failure) => {
                // §5: the client may bind a new resource instead.
                self.write(starling_sm::failed(failure, None));
                return;
            }
        };
        self.write(starling_sm::resumed(previd, session.acks.handled()));
        let too_high = session.acks.on_ack(h).err();
        // §5: what the client did not get on the old stream is sent again, in order, and stays
        // unacknowledged until it is.
        let resent: Vec<u8> = session
            .acks
            .unacked()
            .flat_map(|stanza| stanza.bytes().iter().copied())
            .collect();
        self.state = SessionState::Bound { full_jid };
        self.sm = Some(Box::new(session));
        if let Some(AckError::TooHigh { h, sent }) = too_high {
            self.handled_count_too_high(h, sent);
            return;
        }
        if !resent.is_empty() {
            self.write(resent);
            if let Some(sm) = self.sm.as_mut() {
                sm.acks.requested();
            }
            self.write(starling_sm::ack_request());
        }
    }

    /// §4: the client acknowledged more than it was sent.
    fn handled_count_too_high(&mut self, h: u32, sent: u32) {
        let application = starling_sm::handled_count_too_high(h, sent);
        self.stream_error_with(
            StreamErrorCondition::UndefinedCondition,
            Some("acknowledged more stanzas than were sent"),
            Some(&application),
        );
    }

    fn restart_stream(&mut self) {
        self.parser.restart();
        self.header_sent = false;
        self.phase = Phase::AwaitHeader;
    }

    fn send_header(&mut self) {
        self.send_header_to(None);
    }

    fn send_header_to(&mut self, to: Option<&str>) {
        let id = self.ids.stream_id();
        let from = self
            .domain
            .clone()
            .or_else(|| self.config.hosts.first().cloned());
        let header = starling_xml::write_stream_header(&HeaderOut {
            from: from.as_deref(),
            to,
            id: Some(&id),
            version: Some("1.0"),
            lang: Some("en"),
            content_namespace: NS_CLIENT,
        });
        self.write(header);
        self.header_sent = true;
    }

    fn stream_error(&mut self, condition: StreamErrorCondition, text: Option<&str>) {
        self.stream_error_with(condition, text, None);
    }

    /// A stream error with an application-specific condition (RFC 6120 §4.9.4).
    fn stream_error_with(
        &mut self,
        condition: StreamErrorCondition,
        text: Option<&str>,
        application: Option<&Element>,
    ) {
        // XEP-0198 §5: a session the server ends on purpose is not kept for resumption; one
        // whose client went silent (a dead mobile connection) or that the server's restart
        // interrupts is.
        if !matches!(
            condition,
            StreamErrorCondition::ConnectionTimeout | StreamErrorCondition::SystemShutdown
        ) {
            self.ended_for_good = true;
        }
        if !self.header_sent {
            self.send_header();
        }
        self.write(nonza::stream_error(condition, text, application));
        self.actions.push_back(Action::StreamError(condition));
        self.close();
    }

    /// Queues bytes for the peer. Bytes queued back to back (a stream header and its
    /// features, a burst of deliveries) join the write before them, so they leave in one
    /// system call and, under TLS, one record.
    fn write(&mut self, bytes: Vec<u8>) {
        match self.actions.back_mut() {
            Some(Action::Write(queued)) => queued.extend_from_slice(&bytes),
            _ => self.actions.push_back(Action::Write(bytes)),
        }
    }

    fn close(&mut self) {
        self.phase = Phase::Closed;
        self.actions.push_back(Action::Close);
    }

    fn close_silently(&mut self) {
        self.close();
    }
}

fn is_stanza(element: &Element) -> bool {
    element.ns() == NS_CLIENT && matches!(element.name(), "message" | "presence" | "iq")
}

/// RFC 7622 §3.2 normalisation of a domain; `None` if it is not a valid domainpart.
fn normalise_domain(domain: &str) -> Option<String> {
    DomainPart::new(domain).ok().map(|d| d.as_str().to_owned())
}

/// The major version of a `version` attribute (RFC 6120 §4.7.5): "1.0" → 1.
fn parse_major_version(version: &str) -> Option<u32> {
    let (major, minor) = version.split_once('.')?;
    minor.parse::<u32>().ok()?;
    major.parse().ok()
}

/// RFC 6120 stream error for a parser failure: one place, an exhaustive match.
fn stream_condition(err: &XmlError) -> StreamErrorCondition {
    use starling_xml::StreamCondition;
    match err.condition() {
        StreamCondition::NotWellFormed => StreamErrorCondition::NotWellFormed,
        StreamCondition::RestrictedXml => StreamErrorCondition::RestrictedXml,
        StreamCondition::PolicyViolation => StreamErrorCondition::PolicyViolation,
        StreamCondition::InvalidNamespace => StreamErrorCondition::InvalidNamespace,
        StreamCondition::BadFormat => StreamErrorCondition::BadFormat,
        StreamCondition::UnsupportedEncoding => StreamErrorCondition::UnsupportedEncoding,
    }
}

#[cfg(test)]
mod tests;
