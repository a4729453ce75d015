//! A lean XMPP client connection: RFC 6120 stream setup, STARTTLS (§5), SASL PLAIN or
//! SCRAM-SHA-256 (§6), resource binding (§7) and initial presence (RFC 6121 §4.2).
//!
//! Every wait has a deadline. Errors are `anyhow` values because a person reads them: the
//! modes count them and keep a few samples for the report.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use anyhow::{Context, anyhow, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls::ClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sasl::client::Mechanism;
use sasl::client::mechanisms::Scram;
use sasl::common::{ChannelBinding, Password};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::scram::{CachedSha1, CachedSha256};
use crate::xml::{self, Frame, Framer};

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";

/// The SASL mechanism a login uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Mech {
    /// PLAIN (RFC 4616): the server derives the key from the password on every login.
    #[value(name = "PLAIN")]
    #[serde(rename = "PLAIN")]
    Plain,
    /// SCRAM-SHA-256 (RFC 7677) without channel binding; the client caches its salted password.
    #[value(name = "SCRAM-SHA-256")]
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// SCRAM-SHA-1 (RFC 5802), for servers without SHA-256 keys; salted password cached.
    #[value(name = "SCRAM-SHA-1")]
    #[serde(rename = "SCRAM-SHA-1")]
    ScramSha1,
}

impl Mech {
    /// The name in `<mechanism/>` and `<auth mechanism='...'/>`.
    pub fn name(self) -> &'static str {
        match self {
            Mech::Plain => "PLAIN",
            Mech::ScramSha256 => "SCRAM-SHA-256",
            Mech::ScramSha1 => "SCRAM-SHA-1",
        }
    }
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    /// A loopback address with a plaintext (STARTTLS) listener.
    pub addr: SocketAddr,
    /// The XMPP domain.
    pub domain: String,
    /// Upgrade with STARTTLS before authenticating.
    pub starttls: bool,
    /// Client TLS settings.
    pub tls: Arc<ClientConfig>,
}

impl Target {
    /// A target; refuses anything but a loopback address, so the generator cannot be aimed at
    /// someone else's server.
    pub fn new(addr: SocketAddr, domain: &str, starttls: bool) -> anyhow::Result<Self> {
        ensure!(
            addr.ip().is_loopback(),
            "{addr} is not a loopback address; the load generator only connects to loopback"
        );
        Ok(Self {
            addr,
            domain: domain.to_owned(),
            starttls,
            tls: tls_config()?,
        })
    }
}

/// One account's credentials.
#[derive(Clone, Debug)]
pub struct Account {
    pub username: String,
    pub password: String,
}

/// The byte stream under the XMPP stream.
pub enum Transport {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only during the STARTTLS handshake, or after a failed one.
    Detached,
}

fn detached() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "transport detached during STARTTLS",
    )
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Transport::Detached => Poll::Ready(Err(detached())),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Transport::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Transport::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Transport::Detached => Poll::Ready(Err(detached())),
        }
    }
}

/// The reading side of a stream: socket half plus framer.
pub struct Reader<R> {
    io: R,
    framer: Framer,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    fn new(io: R, framer: Framer) -> Self {
        Self {
            io,
            framer,
            buf: vec![0; READ_CHUNK],
        }
    }

    /// The next frame, reading as needed until `deadline`. End of file is an error.
    pub async fn next_frame(&mut self, deadline: Instant) -> anyhow::Result<Frame> {
        loop {
            if let Some(frame) = self.framer.next_frame() {
                return Ok(frame);
            }
            let n = timeout_at(deadline, self.io.read(&mut self.buf))
                .await
                .map_err(|_| anyhow!("timed out waiting for the server"))?
                .context("reading from the server")?;
            if n == 0 {
                bail!("the server closed the connection");
            }
            self.framer.feed(self.buf.get(..n).unwrap_or_default());
        }
    }

    /// The next top-level element; a stream error or stream end is an error.
    pub async fn next_element(&mut self, deadline: Instant) -> anyhow::Result<Vec<u8>> {
        match self.next_frame(deadline).await? {
            Frame::Element(el)
                if xml::local_name(&el) == b"error" && el.starts_with(b"<stream:") =>
            {
                bail!("stream error: {}", String::from_utf8_lossy(&el))
            }
            Frame::Element(el) => Ok(el),
            Frame::StreamOpen => bail!("unexpected stream header"),
            Frame::StreamClose => bail!("the server closed the stream"),
        }
    }
}

/// A logged-in (or logging-in) session.
pub struct Session {
    reader: Reader<Transport>,
    /// The full JID from binding.
    pub jid: String,
}

/// The writing half of a split session.
pub type Writer = WriteHalf<Transport>;

impl Session {
    /// Connects, negotiates TLS and SASL, binds `resource` and sends initial presence.
    pub async fn login(
        target: &Target,
        account: &Account,
        mech: Mech,
        resource: &str,
        deadline: Instant,
    ) -> anyhow::Result<Session> {
        let tcp = timeout_at(deadline, TcpStream::connect(target.addr))
            .await
            .map_err(|_| anyhow!("timed out connecting to {}", target.addr))?
            .with_context(|| format!("connecting to {}", target.addr))?;
        tcp.set_nodelay(true)?;
        let mut session = Session {
            reader: Reader::new(Transport::Tcp(tcp), Framer::new()),
            jid: String::new(),
        };
        let mut features = session.open(&target.domain, deadline).await?;
        if target.starttls {
            ensure!(
                xml::contains(&features, b"<starttls"),
                "the server does not offer STARTTLS"
            );
            session
                .send(format!("<starttls xmlns='{NS_TLS}'/>").as_bytes())
                .await?;
            let answer = session.reader.next_element(deadline).await?;
            ensure!(
                xml::local_name(&answer) == b"proceed",
                "STARTTLS refused: {}",
                String::from_utf8_lossy(&answer)
            );
            ensure!(
                session.reader.framer.pending() == 0,
                "bytes after <proceed/>"
            );
            let Transport::Tcp(tcp) =
                std::mem::replace(&mut session.reader.io, Transport::Detached)
            else {
                bail!("STARTTLS on a TLS stream");
            };
            let name = ServerName::try_from(target.domain.clone())?;
            let tls = timeout_at(
                deadline,
                TlsConnector::from(target.tls.clone()).connect(name, tcp),
            )
            .await
            .map_err(|_| anyhow!("timed out in the TLS handshake"))?
            .context("TLS handshake")?;
            session.reader.io = Transport::Tls(Box::new(tls));
            session.reader.framer = Framer::new();
            features = session.open(&target.domain, deadline).await?;
        }
        let offered = format!("<mechanism>{}</mechanism>", mech.name());
        ensure!(
            xml::contains(&features, offered.as_bytes()),
            "the server does not offer {}",
            mech.name()
        );
        session.authenticate(account, mech, deadline).await?;
        session.reader.framer.restart();
        let features = session.open(&target.domain, deadline).await?;
        ensure!(
            xml::contains(&features, NS_BIND.as_bytes()),
            "no resource binding offered"
        );
        session.bind(resource, deadline).await?;
        session.send(b"<presence/>").await?;
        Ok(session)
    }

    /// Sends a stream header and reads the server's header and features.
    async fn open(&mut self, domain: &str, deadline: Instant) -> anyhow::Result<Vec<u8>> {
        let header = format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{}' version='1.0'>",
            xml::escape(domain)
        );
        self.send(header.as_bytes()).await?;
        match self.reader.next_frame(deadline).await? {
            Frame::StreamOpen => {}
            other => bail!("expected a stream header, got {other:?}"),
        }
        let features = self.reader.next_element(deadline).await?;
        ensure!(
            xml::local_name(&features) == b"features",
            "expected <stream:features/>, got {}",
            String::from_utf8_lossy(&features)
        );
        Ok(features)
    }

    async fn authenticate(
        &mut self,
        account: &Account,
        mech: Mech,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        match mech {
            Mech::Plain => {
                let payload = format!("\0{}\0{}", account.username, account.password);
                let auth = format!(
                    "<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{}</auth>",
                    BASE64.encode(payload)
                );
                self.send(auth.as_bytes()).await?;
                let answer = self.reader.next_element(deadline).await?;
                ensure!(
                    xml::local_name(&answer) == b"success",
                    "PLAIN failed: {}",
                    String::from_utf8_lossy(&answer)
                );
            }
            Mech::ScramSha256 => {
                let scram = Scram::<CachedSha256>::new(
                    account.username.clone(),
                    Password::Plain(account.password.clone()),
                    ChannelBinding::None,
                )
                .map_err(|e| anyhow!("SCRAM: {e:?}"))?;
                self.scram_exchange(scram, deadline).await?;
            }
            Mech::ScramSha1 => {
                let scram = Scram::<CachedSha1>::new(
                    account.username.clone(),
                    Password::Plain(account.password.clone()),
                    ChannelBinding::None,
                )
                .map_err(|e| anyhow!("SCRAM: {e:?}"))?;
                self.scram_exchange(scram, deadline).await?;
            }
        }
        Ok(())
    }

    async fn scram_exchange(
        &mut self,
        mut scram: impl Mechanism,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        let initial = BASE64.encode(scram.initial());
        let auth = format!(
            "<auth xmlns='{NS_SASL}' mechanism='{}'>{initial}</auth>",
            scram.name()
        );
        self.send(auth.as_bytes()).await?;
        let challenge = self.reader.next_element(deadline).await?;
        ensure!(
            xml::local_name(&challenge) == b"challenge",
            "SCRAM: expected a challenge, got {}",
            String::from_utf8_lossy(&challenge)
        );
        let data = BASE64.decode(xml::text(&challenge))?;
        let response = scram
            .response(&data)
            .map_err(|e| anyhow!("SCRAM response: {e}"))?;
        let response = format!(
            "<response xmlns='{NS_SASL}'>{}</response>",
            BASE64.encode(response)
        );
        self.send(response.as_bytes()).await?;
        let answer = self.reader.next_element(deadline).await?;
        ensure!(
            xml::local_name(&answer) == b"success",
            "SCRAM failed: {}",
            String::from_utf8_lossy(&answer)
        );
        let data = BASE64.decode(xml::text(&answer))?;
        scram
            .success(&data)
            .map_err(|e| anyhow!("SCRAM server signature: {e}"))?;
        Ok(())
    }

    async fn bind(&mut self, resource: &str, deadline: Instant) -> anyhow::Result<()> {
        let iq = format!(
            "<iq type='set' id='bind1'><bind xmlns='{NS_BIND}'><resource>{}</resource></bind></iq>",
            xml::escape(resource)
        );
        self.send(iq.as_bytes()).await?;
        // Bounded by the deadline: anything before the answer (none expected) is skipped.
        loop {
            let el = self.reader.next_element(deadline).await?;
            if xml::local_name(&el) != b"iq" || xml::attribute(&el, "id") != Some(b"bind1") {
                continue;
            }
            ensure!(
                xml::attribute(&el, "type") == Some(b"result"),
                "bind failed: {}",
                String::from_utf8_lossy(&el)
            );
            let start = el
                .windows(5)
                .position(|w| w == b"<jid>")
                .context("bind result without <jid/>")?;
            let rest = el.get(start + 5..).unwrap_or_default();
            let len = rest.iter().position(|&b| b == b'<').unwrap_or(rest.len());
            self.jid = String::from_utf8_lossy(rest.get(..len).unwrap_or_default()).into_owned();
            return Ok(());
        }
    }

    /// Writes and flushes `bytes`.
    pub async fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.reader.io.write_all(bytes).await?;
        self.reader.io.flush().await?;
        Ok(())
    }

    /// The next top-level element.
    pub async fn next_element(&mut self, deadline: Instant) -> anyhow::Result<Vec<u8>> {
        self.reader.next_element(deadline).await
    }

    /// Waits for the next frame; for holders that only watch the stream.
    pub async fn next_frame(&mut self, deadline: Instant) -> anyhow::Result<Frame> {
        self.reader.next_frame(deadline).await
    }

    /// Closes the stream (RFC 6120 §4.4): sends `</stream:stream>`, waits until `deadline` for
    /// the server's end or EOF, then sends TLS close_notify.
    pub async fn close(mut self, deadline: Instant) -> anyhow::Result<()> {
        self.send(b"</stream:stream>").await?;
        // Bounded by the deadline and by the stream's end.
        loop {
            match self.reader.next_frame(deadline).await {
                Ok(Frame::StreamClose) => break,
                Ok(_) => continue,
                Err(err) if err.to_string().contains("closed the connection") => break,
                Err(err) => return Err(err),
            }
        }
        let _ = timeout_at(deadline, self.reader.io.shutdown()).await;
        Ok(())
    }

    /// Splits into a reader and a writer that can be used from different tasks.
    pub fn split(self) -> (Reader<ReadHalf<Transport>>, Writer) {
        let (read, write) = tokio::io::split(self.reader.io);
        (Reader::new(read, self.reader.framer), write)
    }
}

/// Client TLS settings: any certificate is accepted (benchmark servers use a fresh self-signed
/// one), handshake signatures are still verified with ring.
pub fn tls_config() -> anyhow::Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AcceptAnyCertificate {
        algorithms: provider.signature_verification_algorithms,
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
