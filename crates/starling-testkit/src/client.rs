//! A raw XMPP client for tests: RFC 6120 stream setup, STARTTLS (§5), SASL (§6) and binding (§7).
//!
//! Every method that waits on the server does so with a deadline (default 10 s), so a server that
//! goes quiet fails the test with a message instead of hanging it. The client writes XML as text
//! and parses what comes back with [`StreamReader`], which knows nothing about Starling.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use minidom::Element;
use sasl::client::Mechanism;
use sasl::client::mechanisms::{Plain, Scram};
use sasl::common::scram::{Sha1, Sha256};
use sasl::common::{ChannelBinding, Credentials};
use sha2::Digest;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::reader::{NS_STREAMS, StreamEvent, StreamReader, to_xml};
use crate::server::TestServer;
use crate::tls;

/// How long any single wait on the server may take unless changed with [`XmppClient::set_timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// STARTTLS namespace, RFC 6120 §5.
pub const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// SASL namespace, RFC 6120 §6.
pub const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// Resource binding namespace, RFC 6120 §7.
pub const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
/// Stream error condition namespace, RFC 6120 §4.9.3.
pub const NS_STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// XMPP Ping, XEP-0199 v2.0.1.
pub const NS_PING: &str = "urn:xmpp:ping";

/// Anything the client can run over: a TCP socket, or an in-memory pipe in unit tests.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What [`XmppClient::next_element`] read.
#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    /// A top-level element other than a stream error.
    Element(Element),
    /// `<stream:error/>`, RFC 6120 §4.9.
    StreamError(Element),
    /// The server sent `</stream:stream>` or closed the connection.
    Closed,
}

/// The SCRAM family members (RFC 5802, RFC 7677), with and without channel binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScramMech {
    Sha1,
    Sha256,
    Sha1Plus,
    Sha256Plus,
}

impl ScramMech {
    /// The SASL mechanism name sent in `<auth mechanism='...'/>`.
    pub fn name(self) -> &'static str {
        match self {
            ScramMech::Sha1 => "SCRAM-SHA-1",
            ScramMech::Sha256 => "SCRAM-SHA-256",
            ScramMech::Sha1Plus => "SCRAM-SHA-1-PLUS",
            ScramMech::Sha256Plus => "SCRAM-SHA-256-PLUS",
        }
    }

    /// Whether this is a `-PLUS` (channel binding) variant.
    pub fn is_plus(self) -> bool {
        matches!(self, ScramMech::Sha1Plus | ScramMech::Sha256Plus)
    }
}

/// A SASL `<failure/>` (RFC 6120 §6.5): the condition element's name and the optional text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaslFailure {
    pub condition: String,
    pub text: Option<String>,
}

impl SaslFailure {
    /// A failure with `condition` and no text, for comparing in tests.
    pub fn condition(condition: &str) -> Self {
        Self {
            condition: condition.to_owned(),
            text: None,
        }
    }
}

impl fmt::Display for SaslFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SASL failure <{}/>", self.condition)?;
        if let Some(text) = &self.text {
            write!(f, " ({text})")?;
        }
        Ok(())
    }
}

impl std::error::Error for SaslFailure {}

/// What [`XmppClient::send_flood`] managed to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FloodOutcome {
    /// Everything was written and nothing ending the stream arrived meanwhile.
    Completed,
    /// Writing stopped early, after `written_bytes`, because the server ended the stream or the
    /// connection failed; the reason is for messages only.
    Stopped {
        written_bytes: usize,
        reason: String,
    },
}

/// One client connection, plain or TLS, with its stream parser.
pub struct XmppClient {
    /// The byte stream.
    transport: Transport,
    /// Parser for the current stream; replaced on every stream restart.
    reader: StreamReader,
    /// Events parsed ahead of time while flooding; served before the reader.
    queued: VecDeque<StreamEvent>,
    /// Domain for `to` and SNI.
    domain: String,
    /// Deadline for each wait.
    timeout: Duration,
    /// The server's most recent stream header.
    header: Option<Element>,
    /// The most recent `<stream:features/>`.
    features: Option<Element>,
    /// Whether the server's `</stream:stream>` has been read on the current stream.
    has_stream_ended: bool,
    /// Whether the byte stream has ended.
    is_eof: bool,
    /// Counter for generated stanza ids.
    next_id: u32,
    /// The full JID from resource binding.
    jid: Option<String>,
}

enum Transport {
    Plain(Box<dyn Io>),
    Tls(Box<TlsStream<Box<dyn Io>>>),
    /// Only during the STARTTLS handshake, or after a failed one.
    Detached,
}

impl XmppClient {
    /// Opens a TCP connection to a STARTTLS port; nothing is sent yet.
    pub async fn connect_plain(addr: SocketAddr) -> anyhow::Result<Self> {
        let socket = timeout(DEFAULT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("timed out connecting to {addr}"))?
            .with_context(|| format!("connecting to {addr}"))?;
        socket.set_nodelay(true)?;
        Ok(Self::from_stream(socket, "localhost"))
    }

    /// Like [`Self::connect_plain`], from the local address `local` (any 127.0.0.0/8 address
    /// on Linux loopback), so a test can play several peers with their own per-address limits.
    pub async fn connect_plain_from(
        addr: SocketAddr,
        local: std::net::IpAddr,
    ) -> anyhow::Result<Self> {
        Self::connect_plain_with(addr, local, None).await
    }

    /// Like [`Self::connect_plain_from`], with the socket's receive buffer fixed at
    /// `recv_buffer_bytes` (which turns off the kernel's autotuning), for tests of peers that
    /// do not read.
    pub async fn connect_plain_with(
        addr: SocketAddr,
        local: std::net::IpAddr,
        recv_buffer_bytes: Option<u32>,
    ) -> anyhow::Result<Self> {
        let socket = if local.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket
            .bind(SocketAddr::new(local, 0))
            .with_context(|| format!("binding to {local}"))?;
        if let Some(bytes) = recv_buffer_bytes {
            socket.set_recv_buffer_size(bytes)?;
        }
        let socket = timeout(DEFAULT_TIMEOUT, socket.connect(addr))
            .await
            .map_err(|_| anyhow!("timed out connecting to {addr}"))?
            .with_context(|| format!("connecting to {addr} from {local}"))?;
        socket.set_nodelay(true)?;
        Ok(Self::from_stream(socket, "localhost"))
    }

    /// Opens a direct TLS connection (XEP-0368 v1.1.0) and completes the handshake, offering the
    /// `xmpp-client` ALPN id and `domain` in SNI; the stream is not opened yet.
    pub async fn connect_direct_tls(addr: SocketAddr, domain: &str) -> anyhow::Result<Self> {
        let mut client = Self::connect_plain(addr).await?;
        client.domain = domain.to_owned();
        client.handshake(Some(tls::ALPN_XMPP_CLIENT)).await?;
        Ok(client)
    }

    /// Wraps an already connected byte stream (used by the kit's own unit tests).
    pub fn from_stream(io: impl Io + 'static, domain: &str) -> Self {
        Self {
            transport: Transport::Plain(Box::new(io)),
            reader: StreamReader::new(),
            queued: VecDeque::new(),
            domain: domain.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            header: None,
            features: None,
            has_stream_ended: false,
            is_eof: false,
            next_id: 1,
            jid: None,
        }
    }

    /// Logs in over STARTTLS with SCRAM-SHA-256 and binds a server-generated resource.
    pub async fn login(
        server: &TestServer,
        localpart: &str,
        password: &str,
    ) -> anyhow::Result<Self> {
        Self::login_with_resource(server, localpart, password, None).await
    }

    /// Like [`Self::login`], asking for `resource` when given.
    pub async fn login_with_resource(
        server: &TestServer,
        localpart: &str,
        password: &str,
        resource: Option<&str>,
    ) -> anyhow::Result<Self> {
        let client = Self::connect_plain(server.starttls_addr).await?;
        client.login_on(server, localpart, password, resource).await
    }

    /// Logs in on this fresh connection as [`Self::login_with_resource`] does.
    pub async fn login_on(
        self,
        server: &TestServer,
        localpart: &str,
        password: &str,
        resource: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut client = self;
        client.open_stream(&server.domain).await?;
        client.starttls().await?;
        client
            .auth_scram(ScramMech::Sha256, localpart, password)
            .await?
            .with_context(|| format!("logging in as {localpart}"))?;
        client.bind(resource).await?;
        Ok(client)
    }

    /// Changes the deadline for each later wait.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The server's most recent stream header (attributes only).
    pub fn stream_header(&self) -> Option<&Element> {
        self.header.as_ref()
    }

    /// The `id` of the server's most recent stream header.
    pub fn stream_id(&self) -> Option<&str> {
        self.header.as_ref().and_then(|header| header.attr("id"))
    }

    /// The most recent `<stream:features/>`.
    pub fn features(&self) -> Option<&Element> {
        self.features.as_ref()
    }

    /// The full JID assigned by resource binding.
    pub fn jid(&self) -> Option<&str> {
        self.jid.as_deref()
    }

    /// Whether the connection is currently encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self.transport, Transport::Tls(_))
    }

    /// The negotiated TLS version, if encrypted.
    pub fn tls_version(&self) -> Option<rustls::ProtocolVersion> {
        match &self.transport {
            Transport::Tls(tls) => tls.get_ref().1.protocol_version(),
            _ => None,
        }
    }

    /// The negotiated ALPN protocol, if any.
    pub fn alpn_protocol(&self) -> Option<Vec<u8>> {
        match &self.transport {
            Transport::Tls(tls) => tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec),
            _ => None,
        }
    }

    /// The DER of the server's end-entity certificate, if encrypted.
    pub fn peer_cert_der(&self) -> Option<Vec<u8>> {
        match &self.transport {
            Transport::Tls(tls) => tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|cert| cert.as_ref().to_vec()),
            _ => None,
        }
    }

    /// `tls-server-end-point` channel binding data (RFC 5929 §4.1): SHA-256 of the certificate.
    pub fn tls_server_end_point(&self) -> Option<Vec<u8>> {
        self.peer_cert_der()
            .map(|der| sha2::Sha256::digest(der).to_vec())
    }

    /// `tls-exporter` channel binding data (RFC 9266 §2); only defined here for TLS 1.3.
    pub fn tls_exporter(&self) -> anyhow::Result<Vec<u8>> {
        let Transport::Tls(tls) = &self.transport else {
            bail!("tls-exporter needs a TLS connection");
        };
        let connection = tls.get_ref().1;
        if connection.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
            bail!(
                "tls-exporter is only used with TLS 1.3, negotiated {:?}",
                connection.protocol_version()
            );
        }
        let data =
            connection.export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)?;
        Ok(data.to_vec())
    }

    /// Writes bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.timeout;
        let result = timeout_at(deadline, async {
            self.write_all(bytes).await?;
            self.flush().await
        })
        .await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(anyhow!(error).context("writing to the server")),
            Err(_) => bail!(
                "timed out after {:?} writing {} bytes",
                self.timeout,
                bytes.len()
            ),
        }
    }

    /// Writes a string as UTF-8.
    pub async fn send_str(&mut self, text: &str) -> anyhow::Result<()> {
        self.send_raw(text.as_bytes()).await
    }

    /// Sends a single space, a whitespace keepalive (RFC 6120 §4.6.1).
    pub async fn send_whitespace(&mut self) -> anyhow::Result<()> {
        self.send_raw(b" ").await
    }

    /// Writes `unit` `count` times in chunks of about 4 KiB, checking between chunks whether the
    /// server has ended the stream; stops writing as soon as it has, or when a write fails.
    /// Whatever arrived stays queued for [`Self::next_element`].
    pub async fn send_flood(&mut self, unit: &[u8], count: usize) -> anyhow::Result<FloodOutcome> {
        const CHUNK_BYTES: usize = 4096;
        let per_chunk = (CHUNK_BYTES / unit.len().max(1)).max(1);
        let mut remaining = count;
        let mut written_bytes = 0;
        while remaining > 0 {
            let units = remaining.min(per_chunk);
            let chunk = unit.repeat(units);
            if let Err(error) = self.send_raw(&chunk).await {
                return Ok(FloodOutcome::Stopped {
                    written_bytes,
                    reason: format!("{error:#}"),
                });
            }
            written_bytes += chunk.len();
            remaining -= units;
            if let Some(reason) = self.poll_for_stream_end().await? {
                return Ok(FloodOutcome::Stopped {
                    written_bytes,
                    reason,
                });
            }
        }
        Ok(FloodOutcome::Completed)
    }

    /// Sends a stream header to `to` and returns the `<stream:features/>` that follow the
    /// server's header (RFC 6120 §4.2, §4.3).
    pub async fn open_stream(&mut self, to: &str) -> anyhow::Result<Element> {
        self.domain = to.to_owned();
        self.send_str(&format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='{NS_STREAMS}' to='{}' version='1.0'>",
            escape(to)
        ))
        .await?;
        self.read_stream_header().await?;
        self.read_features().await
    }

    /// Reads the server's stream header.
    pub async fn read_stream_header(&mut self) -> anyhow::Result<Element> {
        match self.next_event("the server's stream header").await? {
            StreamEvent::Header(header) => Ok(header),
            other => bail!(
                "expected the server's stream header, got {}",
                describe(&other)
            ),
        }
    }

    /// Reads `<stream:features/>`.
    pub async fn read_features(&mut self) -> anyhow::Result<Element> {
        let features = self.expect_element("<stream:features/>").await?;
        if !features.is("features", NS_STREAMS) {
            bail!("expected <stream:features/>, got {}", to_xml(&features));
        }
        self.features = Some(features.clone());
        Ok(features)
    }

    /// Negotiates STARTTLS (RFC 6120 §5.4) and reopens the stream; returns the new features.
    pub async fn starttls(&mut self) -> anyhow::Result<Element> {
        self.send_str(&format!("<starttls xmlns='{NS_TLS}'/>"))
            .await?;
        let answer = self.expect_element("<proceed/>").await?;
        if !answer.is("proceed", NS_TLS) {
            bail!(
                "expected <proceed xmlns='{NS_TLS}'/>, got {}",
                to_xml(&answer)
            );
        }
        if !self.reader.unparsed().is_empty() || !self.queued.is_empty() {
            bail!(
                "server sent plaintext after <proceed/>: {:?}",
                String::from_utf8_lossy(self.reader.unparsed())
            );
        }
        self.handshake(None).await?;
        let domain = self.domain.clone();
        self.open_stream(&domain).await
    }

    /// SASL PLAIN (RFC 4616) with an optional authorization identity. The outer error is a
    /// protocol or I/O problem; the inner one is the server's `<failure/>`.
    pub async fn auth_plain(
        &mut self,
        username: &str,
        password: &str,
        authzid: Option<&str>,
    ) -> anyhow::Result<Result<(), SaslFailure>> {
        match authzid {
            None => {
                let credentials = Credentials::default()
                    .with_username(username)
                    .with_password(password);
                let mut mechanism =
                    Plain::from_credentials(credentials).map_err(|e| anyhow!("PLAIN: {e}"))?;
                self.sasl_exchange("PLAIN", &mut mechanism).await
            }
            Some(authzid) => {
                let mut mechanism = PlainWithAuthzid(format!("{authzid}\0{username}\0{password}"));
                self.sasl_exchange("PLAIN", &mut mechanism).await
            }
        }
    }

    /// SCRAM with the channel binding the mechanism calls for: `tls-exporter` data for `-PLUS`,
    /// the gs2 `n` flag otherwise. Verifies the server signature on success.
    pub async fn auth_scram(
        &mut self,
        mech: ScramMech,
        username: &str,
        password: &str,
    ) -> anyhow::Result<Result<(), SaslFailure>> {
        let binding = if mech.is_plus() {
            ChannelBinding::TlsExporter(self.tls_exporter()?)
        } else {
            ChannelBinding::None
        };
        self.auth_scram_with_binding(mech, username, password, binding)
            .await
    }

    /// SCRAM with an explicit channel binding, for downgrade and mismatch tests: the mechanism
    /// name comes from `mech`, the gs2 header and `c=` data from `binding`.
    pub async fn auth_scram_with_binding(
        &mut self,
        mech: ScramMech,
        username: &str,
        password: &str,
        binding: ChannelBinding,
    ) -> anyhow::Result<Result<(), SaslFailure>> {
        let credentials = Credentials::default()
            .with_username(username)
            .with_password(password)
            .with_channel_binding(binding);
        let mut mechanism: Box<dyn Mechanism + Send> = match mech {
            ScramMech::Sha1 | ScramMech::Sha1Plus => Box::new(
                Scram::<Sha1>::from_credentials(credentials).map_err(|e| anyhow!("SCRAM: {e}"))?,
            ),
            ScramMech::Sha256 | ScramMech::Sha256Plus => Box::new(
                Scram::<Sha256>::from_credentials(credentials)
                    .map_err(|e| anyhow!("SCRAM: {e}"))?,
            ),
        };
        self.sasl_exchange(mech.name(), mechanism.as_mut()).await
    }

    /// Binds a resource (RFC 6120 §7) and returns the full JID the server assigned.
    pub async fn bind(&mut self, resource: Option<&str>) -> anyhow::Result<String> {
        let id = self.fresh_id("bind");
        let resource = resource
            .map(|r| format!("<resource>{}</resource>", escape(r)))
            .unwrap_or_default();
        self.send_str(&format!(
            "<iq type='set' id='{id}'><bind xmlns='{NS_BIND}'>{resource}</bind></iq>"
        ))
        .await?;
        let answer = self.expect_element("the bind result").await?;
        let is_result = answer.is("iq", crate::reader::NS_CLIENT)
            && answer.attr("type") == Some("result")
            && answer.attr("id") == Some(id.as_str());
        let jid = answer
            .get_child("bind", NS_BIND)
            .and_then(|bind| bind.get_child("jid", NS_BIND))
            .map(Element::text);
        match (is_result, jid) {
            (true, Some(jid)) if !jid.trim().is_empty() => {
                let jid = jid.trim().to_owned();
                self.jid = Some(jid.clone());
                Ok(jid)
            }
            _ => bail!(
                "expected a bind result with a <jid/> for id {id}, got {}",
                to_xml(&answer)
            ),
        }
    }

    /// Sends a XEP-0199 ping to the server and waits for the result.
    pub async fn ping(&mut self) -> anyhow::Result<()> {
        let id = self.fresh_id("ping");
        self.send_str(&format!(
            "<iq type='get' id='{id}'><ping xmlns='{NS_PING}'/></iq>"
        ))
        .await?;
        let answer = self.expect_element("the ping result").await?;
        if answer.is("iq", crate::reader::NS_CLIENT)
            && answer.attr("type") == Some("result")
            && answer.attr("id") == Some(id.as_str())
        {
            Ok(())
        } else {
            bail!(
                "expected <iq type='result' id='{id}'/>, got {}",
                to_xml(&answer)
            )
        }
    }

    /// Pings the server and returns every element that arrived before the answer: the server
    /// handles a session's stanzas in order, so whatever an earlier stanza caused for this
    /// session has been queued by then. A stream error or end is an error.
    pub async fn sync(&mut self) -> anyhow::Result<Vec<Element>> {
        let id = self.fresh_id("sync");
        self.send_str(&format!(
            "<iq type='get' id='{id}'><ping xmlns='{NS_PING}'/></iq>"
        ))
        .await?;
        let mut before = Vec::new();
        loop {
            match self.next_element().await? {
                Incoming::Element(element)
                    if element.is("iq", crate::reader::NS_CLIENT)
                        && element.attr("id") == Some(id.as_str()) =>
                {
                    return Ok(before);
                }
                Incoming::Element(element) => before.push(element),
                other => bail!("waiting for the answer to ping {id}: {other:?}"),
            }
        }
    }

    /// Sends `</stream:stream>` (RFC 6120 §4.4).
    pub async fn close_stream(&mut self) -> anyhow::Result<()> {
        self.send_str("</stream:stream>").await
    }

    /// Reads the next top-level element, classifying stream errors and the end of the stream.
    pub async fn next_element(&mut self) -> anyhow::Result<Incoming> {
        loop {
            match self.next_event("the next element").await? {
                StreamEvent::Header(_) => {}
                StreamEvent::Element(element) if element.is("error", NS_STREAMS) => {
                    return Ok(Incoming::StreamError(element));
                }
                StreamEvent::Element(element) => return Ok(Incoming::Element(element)),
                StreamEvent::StreamEnd | StreamEvent::Eof => return Ok(Incoming::Closed),
            }
        }
    }

    /// Reads the next element and fails unless it is an ordinary one; `what` is for the message.
    pub async fn expect_element(&mut self, what: &str) -> anyhow::Result<Element> {
        match self.next_element().await? {
            Incoming::Element(element) => Ok(element),
            Incoming::StreamError(error) => {
                bail!("expected {what}, got a stream error: {}", to_xml(&error))
            }
            Incoming::Closed => bail!("expected {what}, but the server closed the stream"),
        }
    }

    /// Reads a stream error and returns its defined condition's name (RFC 6120 §4.9.3).
    pub async fn expect_stream_error(&mut self) -> anyhow::Result<String> {
        match self.next_element().await? {
            Incoming::StreamError(error) => stream_error_condition(&error).ok_or_else(|| {
                anyhow!(
                    "stream error without a defined condition: {}",
                    to_xml(&error)
                )
            }),
            Incoming::Element(element) => {
                bail!("expected a stream error, got {}", to_xml(&element))
            }
            Incoming::Closed => bail!("expected a stream error, but the server closed the stream"),
        }
    }

    /// The server's `</stream:stream>` and then the end of the connection (RFC 6120 §4.4).
    pub async fn expect_closed(&mut self) -> anyhow::Result<()> {
        if !self.has_stream_ended {
            match self.next_event("</stream:stream>").await? {
                StreamEvent::StreamEnd => {}
                StreamEvent::Eof => bail!("server closed the connection without </stream:stream>"),
                other => bail!("expected </stream:stream>, got {}", describe(&other)),
            }
        }
        match self.next_event("the connection to close").await? {
            StreamEvent::Eof => Ok(()),
            other => bail!("expected the connection to close, got {}", describe(&other)),
        }
    }

    /// The connection ends, with or without a stream error and `</stream:stream>` first; any
    /// other element is a failure. Returns the stream error condition, if one was sent.
    pub async fn expect_disconnect(&mut self) -> anyhow::Result<Option<String>> {
        let mut condition = None;
        loop {
            match self.next_event("the connection to close").await? {
                StreamEvent::Eof => return Ok(condition),
                StreamEvent::StreamEnd => {}
                StreamEvent::Element(element) if element.is("error", NS_STREAMS) => {
                    condition = stream_error_condition(&element);
                }
                other => bail!("expected the connection to close, got {}", describe(&other)),
            }
        }
    }

    /// Nothing arrives for `quiet`, and the connection stays open.
    pub async fn expect_quiet(&mut self, quiet: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + quiet;
        loop {
            if let Some(event) = self.parse_next()? {
                bail!("expected nothing from the server, got {}", describe(&event));
            }
            if self.is_eof {
                bail!("expected the connection to stay open, but it was closed");
            }
            if !self.read_some(deadline).await? {
                return Ok(());
            }
        }
    }

    /// Reads the next event with the client's deadline; `what` names the awaited thing.
    async fn next_event(&mut self, what: &str) -> anyhow::Result<StreamEvent> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(event) = self.parse_next()? {
                return Ok(event);
            }
            if !self.read_some(deadline).await? {
                bail!("timed out after {:?} waiting for {what}", self.timeout);
            }
        }
    }

    /// The next queued or parseable event, recording stream state on the way.
    fn parse_next(&mut self) -> anyhow::Result<Option<StreamEvent>> {
        let event = match self.queued.pop_front() {
            Some(event) => Some(event),
            None => self
                .reader
                .next_event()
                .map_err(|error| anyhow!("reading the server's stream: {error}"))?,
        };
        match &event {
            Some(StreamEvent::Header(header)) => self.header = Some(header.clone()),
            Some(StreamEvent::StreamEnd) => self.has_stream_ended = true,
            Some(StreamEvent::Eof) => self.is_eof = true,
            _ => {}
        }
        Ok(event)
    }

    /// Reads once from the connection into the parser. Returns `false` if the deadline passed.
    /// A reset or an unclean TLS close counts as end of input.
    async fn read_some(&mut self, deadline: Instant) -> anyhow::Result<bool> {
        if self.is_eof || self.reader_has_eof() {
            return Ok(true);
        }
        let mut buf = vec![0u8; 16 * 1024];
        let read = match timeout_at(deadline, self.read(&mut buf)).await {
            Err(_) => return Ok(false),
            Ok(read) => read,
        };
        match read {
            Ok(0) => self.reader.feed_eof(),
            Ok(n) => self.reader.feed(&buf[..n]),
            Err(error) if is_disconnect(&error) => self.reader.feed_eof(),
            Err(error) => return Err(anyhow!(error).context("reading from the server")),
        }
        Ok(true)
    }

    fn reader_has_eof(&self) -> bool {
        self.queued.iter().any(|event| *event == StreamEvent::Eof)
    }

    /// Takes in whatever the server has sent without waiting, and reports whether the stream
    /// has ended (stream error, `</stream:stream>` or EOF).
    async fn poll_for_stream_end(&mut self) -> anyhow::Result<Option<String>> {
        if !self.reader_has_eof() {
            let mut buf = vec![0u8; 16 * 1024];
            // `timeout` polls the read once before looking at the zero deadline, so this takes
            // only bytes that are already there.
            if let Ok(read) = timeout(Duration::ZERO, self.read(&mut buf)).await {
                match read {
                    Ok(0) => self.reader.feed_eof(),
                    Ok(n) => self.reader.feed(&buf[..n]),
                    Err(error) if is_disconnect(&error) => self.reader.feed_eof(),
                    Err(error) => return Err(anyhow!(error).context("reading from the server")),
                }
            }
        }
        let mut reason = None;
        while let Some(event) = self
            .reader
            .next_event()
            .map_err(|error| anyhow!("reading the server's stream: {error}"))?
        {
            let is_eof = event == StreamEvent::Eof;
            match &event {
                StreamEvent::Element(element) if element.is("error", NS_STREAMS) => {
                    reason.get_or_insert_with(|| format!("stream error {}", to_xml(element)));
                }
                StreamEvent::StreamEnd => {
                    reason.get_or_insert_with(|| "</stream:stream>".to_owned());
                }
                StreamEvent::Eof => {
                    reason.get_or_insert_with(|| "connection closed".to_owned());
                }
                _ => {}
            }
            self.queued.push_back(event);
            if is_eof {
                break;
            }
        }
        Ok(reason)
    }

    /// Runs a SASL exchange (RFC 6120 §6.4) and restarts the stream on success.
    async fn sasl_exchange(
        &mut self,
        name: &str,
        mechanism: &mut (dyn Mechanism + Send),
    ) -> anyhow::Result<Result<(), SaslFailure>> {
        let initial = mechanism.initial();
        // RFC 6120 §6.4.2: an empty initial response is sent as a single equals sign.
        let initial = if initial.is_empty() {
            "=".to_owned()
        } else {
            BASE64.encode(&initial)
        };
        self.send_str(&format!(
            "<auth xmlns='{NS_SASL}' mechanism='{name}'>{initial}</auth>"
        ))
        .await?;
        let mut has_responded = false;
        loop {
            let answer = self
                .expect_element("a SASL challenge, success or failure")
                .await?;
            if answer.ns() != NS_SASL {
                bail!("expected a SASL element, got {}", to_xml(&answer));
            }
            let data = decode_sasl_data(&answer)?;
            match answer.name() {
                "challenge" if !has_responded => {
                    let response = mechanism
                        .response(&data)
                        .map_err(|e| anyhow!("{name} rejected the server challenge: {e}"))?;
                    has_responded = true;
                    self.send_str(&format!(
                        "<response xmlns='{NS_SASL}'>{}</response>",
                        BASE64.encode(&response)
                    ))
                    .await?;
                }
                "challenge" => {
                    // RFC 6120 §6.3.10 allows the additional data of success to come as a last
                    // challenge; the client verifies it and answers with an empty response.
                    mechanism
                        .success(&data)
                        .map_err(|e| anyhow!("{name}: bad server final message: {e}"))?;
                    self.send_str(&format!("<response xmlns='{NS_SASL}'/>"))
                        .await?;
                }
                "success" => {
                    mechanism
                        .success(&data)
                        .map_err(|e| anyhow!("{name}: bad server final message: {e}"))?;
                    self.restart_stream().await?;
                    return Ok(Ok(()));
                }
                "failure" => return Ok(Err(sasl_failure(&answer))),
                _ => bail!("unexpected SASL element {}", to_xml(&answer)),
            }
        }
    }

    /// RFC 6120 §6.4.6: after success both sides start a new stream over the same connection.
    pub async fn restart_stream(&mut self) -> anyhow::Result<Element> {
        let leftover = self.reader.unparsed().to_vec();
        self.reader = StreamReader::new();
        self.reader.feed(&leftover);
        self.header = None;
        self.features = None;
        self.has_stream_ended = false;
        let domain = self.domain.clone();
        self.open_stream(&domain).await
    }

    /// Runs the TLS handshake on the current plain connection and resets the parser.
    async fn handshake(&mut self, alpn: Option<&[u8]>) -> anyhow::Result<()> {
        let Transport::Plain(io) = std::mem::replace(&mut self.transport, Transport::Detached)
        else {
            bail!("TLS handshake requested on a connection that is not plain");
        };
        let connector = TlsConnector::from(tls::client_config(alpn)?);
        let name = tls::server_name(&self.domain)?;
        let tls = timeout(self.timeout, connector.connect(name, io))
            .await
            .map_err(|_| anyhow!("timed out after {:?} in the TLS handshake", self.timeout))?
            .context("TLS handshake")?;
        self.transport = Transport::Tls(Box::new(tls));
        self.reader = StreamReader::new();
        self.queued.clear();
        self.header = None;
        self.features = None;
        self.has_stream_ended = false;
        Ok(())
    }

    fn fresh_id(&mut self, prefix: &str) -> String {
        let id = format!("{prefix}{}", self.next_id);
        self.next_id += 1;
        id
    }

    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.transport {
            Transport::Plain(io) => io.read(buf).await,
            Transport::Tls(tls) => tls.read(buf).await,
            Transport::Detached => Err(io::Error::new(io::ErrorKind::NotConnected, "detached")),
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.transport {
            Transport::Plain(io) => io.write_all(bytes).await,
            Transport::Tls(tls) => tls.write_all(bytes).await,
            Transport::Detached => Err(io::Error::new(io::ErrorKind::NotConnected, "detached")),
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match &mut self.transport {
            Transport::Plain(io) => io.flush().await,
            Transport::Tls(tls) => tls.flush().await,
            Transport::Detached => Err(io::Error::new(io::ErrorKind::NotConnected, "detached")),
        }
    }
}

impl crate::TestServer {
    /// The SASL mechanisms the server offers on its first host after STARTTLS.
    pub async fn offered_mechanisms(&self) -> anyhow::Result<Vec<String>> {
        let mut client = XmppClient::connect_plain(self.starttls_addr).await?;
        client.open_stream(&self.domain).await?;
        let features = client.starttls().await?;
        Ok(mechanisms(&features))
    }

    /// Waits (up to 10 s) until the server offers `mechanism`: a host's SCRAM offer follows
    /// its accounts' keys, counted again about a second after keys are added.
    pub async fn wait_until_offered(&self, mechanism: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let offered = self.offered_mechanisms().await?;
            if offered.iter().any(|m| m == mechanism) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{mechanism} still not offered after 10 s: {offered:?}\n{}",
                    self.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The mechanism names in `<mechanisms/>` of a features element, in document order.
pub fn mechanisms(features: &Element) -> Vec<String> {
    features
        .get_child("mechanisms", NS_SASL)
        .map(|mechanisms| {
            mechanisms
                .children()
                .filter(|child| child.is("mechanism", NS_SASL))
                .map(|child| child.text().trim().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The defined condition of a `<stream:error/>`: its first child in the stream error namespace.
pub fn stream_error_condition(error: &Element) -> Option<String> {
    error
        .children()
        .find(|child| child.ns() == NS_STREAM_ERRORS && child.name() != "text")
        .map(|child| child.name().to_owned())
}

/// Escapes text for use in XML character data or a single-quoted attribute.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

fn describe(event: &StreamEvent) -> String {
    match event {
        StreamEvent::Header(header) => format!("a stream header {}", to_xml(header)),
        StreamEvent::Element(element) => to_xml(element),
        StreamEvent::StreamEnd => "</stream:stream>".to_owned(),
        StreamEvent::Eof => "the end of the connection".to_owned(),
    }
}

fn is_disconnect(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

fn decode_sasl_data(element: &Element) -> anyhow::Result<Vec<u8>> {
    let text = element.text();
    let text = text.trim();
    if text.is_empty() || text == "=" {
        return Ok(Vec::new());
    }
    BASE64
        .decode(text)
        .with_context(|| format!("server sent invalid base64 in {}", to_xml(element)))
}

fn sasl_failure(failure: &Element) -> SaslFailure {
    let condition = failure
        .children()
        .find(|child| child.name() != "text")
        .map(|child| child.name().to_owned())
        .unwrap_or_default();
    let text = failure
        .get_child("text", NS_SASL)
        .map(|text| text.text().trim().to_owned());
    SaslFailure { condition, text }
}

/// PLAIN with an authorization identity, which the `sasl` crate's `Plain` cannot send.
struct PlainWithAuthzid(String);

impl Mechanism for PlainWithAuthzid {
    fn name(&self) -> &str {
        "PLAIN"
    }

    fn from_credentials(_credentials: Credentials) -> Result<Self, sasl::client::MechanismError> {
        Err(sasl::client::MechanismError::PlainRequiresUsername)
    }

    fn initial(&mut self) -> Vec<u8> {
        self.0.as_bytes().to_vec()
    }
}
