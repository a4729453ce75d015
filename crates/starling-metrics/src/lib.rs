//! Prometheus metrics: what the server counts, the recorder, and the answer to a scrape.
//!
//! The `metrics` facade records nothing until a recorder is installed ([`install`]), which the
//! server does only when `metrics.listen` is set, so a server without the endpoint pays for an
//! `Option` check per call. Per-stanza counters are handles registered once ([`Instruments`]):
//! counting a stanza is one atomic add, with no lookup, lock or allocation. Values that are
//! cheaper to read than to track — bound and available sessions, queued stanzas — are taken
//! from the session registry when the endpoint is scraped ([`Scraper::render`]).
//!
//! The exporter does the Prometheus side (registry, histogram buckets, text format); [`answer`]
//! turns one HTTP/1.x request head into its response. The socket — accepting, reading the
//! head, timeouts — is the server's.

use std::sync::OnceLock;

use ::metrics::{Counter, Gauge};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use starling_registry::Registry;
use starling_stanza::StanzaKind;

/// Buckets of every `*_seconds` histogram, from 100 µs to 10 s.
const LATENCY_BUCKETS_SECONDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Why the recorder could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The exporter refused the histogram buckets.
    #[error("metrics: invalid histogram buckets")]
    Buckets(#[source] BuildError),
    /// Another recorder is installed in this process.
    #[error("metrics: a recorder is already installed")]
    AlreadyInstalled,
}

/// Install the Prometheus recorder (once per process), describe the metrics, set
/// `starling_build_info` to `version` and register the hot-path handles.
pub fn install(version: &'static str) -> Result<Scraper, InstallError> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".to_owned()),
            &LATENCY_BUCKETS_SECONDS,
        )
        .map_err(InstallError::Buckets)?
        .build_recorder();
    let handle = recorder.handle();
    ::metrics::set_global_recorder(recorder).map_err(|_| InstallError::AlreadyInstalled)?;
    describe();
    ::metrics::gauge!("starling_build_info", "version" => version).set(1.0);
    // Register the hot-path handles with the real recorder now, before any connection
    // could create them against the no-op one.
    let _ = instruments();
    Ok(Scraper { handle })
}

/// The installed recorder's handle: renders the text format; cheap to clone.
#[derive(Clone)]
pub struct Scraper {
    handle: PrometheusHandle,
}

impl Scraper {
    /// The text format, after refreshing the values read from `registry`.
    pub fn render(&self, registry: &Registry) -> String {
        sample_registry(registry);
        self.handle.render()
    }

    /// Fold histogram samples into their buckets; call it periodically so memory stays
    /// bounded when nobody scrapes.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// The response to one HTTP/1.x request head: `GET /metrics` gets `scrape()` in the text
/// format, anything else 404 or 405.
pub fn answer(head: &str, scrape: impl FnOnce() -> String) -> String {
    match route(head) {
        Route::Metrics => response("200 OK", "text/plain; version=0.0.4", &scrape()),
        Route::NotFound => response("404 Not Found", "text/plain", "try /metrics\n"),
        Route::MethodNotAllowed => response("405 Method Not Allowed", "text/plain", "GET only\n"),
    }
}

/// How a connection arrived.
#[derive(Debug, Clone, Copy)]
pub enum ListenerKind {
    /// Plain TCP, STARTTLS later.
    StartTls,
    /// TLS from the first byte (XEP-0368).
    DirectTls,
}

impl ListenerKind {
    /// The listener's name in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::StartTls => "starttls",
            ListenerKind::DirectTls => "direct_tls",
        }
    }
}

/// Counters and gauges touched per stanza or per connection, registered once.
pub struct Instruments {
    /// `starling_stanzas_received_total` by kind: message, presence, iq.
    received: [Counter; 3],
    /// `starling_stanzas_sent_total` by kind.
    sent: [Counter; 3],
    /// `starling_connections_accepted_total` for the STARTTLS and direct TLS listeners.
    accepted: [Counter; 2],
    /// `starling_sessions{state="unauthenticated"}`.
    unauthenticated: Gauge,
    /// `starling_sessions{state="authenticated"}`: authenticated, not bound yet.
    authenticated: Gauge,
}

/// The instruments; registered against whatever recorder is installed at first use.
pub fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let received = |kind: &'static str| ::metrics::counter!("starling_stanzas_received_total", "kind" => kind);
        let sent = |kind: &'static str| ::metrics::counter!("starling_stanzas_sent_total", "kind" => kind);
        let accepted = |listener: &'static str| ::metrics::counter!("starling_connections_accepted_total", "listener" => listener);
        let state = |state: &'static str| ::metrics::gauge!("starling_sessions", "state" => state);
        Instruments {
            received: KIND_LABELS.map(received),
            sent: KIND_LABELS.map(sent),
            accepted: [accepted("starttls"), accepted("direct_tls")],
            unauthenticated: state("unauthenticated"),
            authenticated: state("authenticated"),
        }
    })
}

/// A stanza the client sent.
pub fn stanza_received(kind: StanzaKind) {
    instruments().received[kind_index(kind)].increment(1);
}

/// A stanza written to the client, as its queue delivered it.
pub fn stanza_sent(stanza: &starling_stanza::OutboundStanza) {
    if let Some(kind) = stanza.kind() {
        instruments().sent[kind_index(kind)].increment(1);
    }
}

/// A connection was accepted on a `kind` listener.
pub fn connection_accepted(kind: ListenerKind) {
    let index = match kind {
        ListenerKind::StartTls => 0,
        ListenerKind::DirectTls => 1,
    };
    instruments().accepted[index].increment(1);
}

/// SASL succeeded with `mechanism` (`None` if the engine did not say).
pub fn auth_succeeded(mechanism: Option<starling_sasl::Mechanism>) {
    let mechanism = mechanism.map_or("unknown", starling_sasl::Mechanism::name);
    ::metrics::counter!("starling_auth_successes_total", "mechanism" => mechanism).increment(1);
}

/// SASL failed with this condition.
pub fn auth_failed(failure: starling_sasl::SaslFailure) {
    ::metrics::counter!("starling_auth_failures_total", "reason" => failure.element_name())
        .increment(1);
}

/// A connection ended; `reason` is its `EndReason` name.
pub fn session_ended(reason: &'static str) {
    ::metrics::counter!("starling_sessions_ended_total", "reason" => reason).increment(1);
}

/// Where a connection is in the session model, for `starling_sessions`. Moving it or dropping
/// it keeps the unauthenticated and authenticated gauges right however the connection ends;
/// bound sessions are counted from the registry instead.
#[derive(Debug)]
pub struct SessionGauge {
    state: GaugeState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GaugeState {
    Unauthenticated,
    Authenticated,
    Bound,
}

impl SessionGauge {
    /// A new, unauthenticated connection.
    // Not `Default`: making one moves a gauge, which a default value should not do.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        instruments().unauthenticated.increment(1.0);
        Self {
            state: GaugeState::Unauthenticated,
        }
    }

    /// SASL succeeded.
    pub fn authenticated(&mut self) {
        self.leave();
        instruments().authenticated.increment(1.0);
        self.state = GaugeState::Authenticated;
    }

    /// A resource was bound; the registry counts it from now on.
    pub fn bound(&mut self) {
        self.leave();
        self.state = GaugeState::Bound;
    }

    fn leave(&self) {
        match self.state {
            GaugeState::Unauthenticated => instruments().unauthenticated.decrement(1.0),
            GaugeState::Authenticated => instruments().authenticated.decrement(1.0),
            GaugeState::Bound => {}
        }
    }
}

impl Drop for SessionGauge {
    fn drop(&mut self) {
        self.leave();
    }
}

const KIND_LABELS: [&str; 3] = ["message", "presence", "iq"];

fn kind_index(kind: StanzaKind) -> usize {
    match kind {
        StanzaKind::Message => 0,
        StanzaKind::Presence => 1,
        StanzaKind::Iq => 2,
    }
}

/// Descriptions shown as `# HELP` lines.
fn describe() {
    use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!("starling_build_info", "Always 1; the version is a label.");
    describe_counter!(
        "starling_connections_accepted_total",
        "Connections accepted, by listener."
    );
    describe_gauge!(
        "starling_sessions",
        "Open client connections by session state: unauthenticated, authenticated (not bound), bound (not available), available."
    );
    describe_counter!(
        "starling_sessions_ended_total",
        "Connections that ended, by reason."
    );
    describe_counter!(
        "starling_stanzas_received_total",
        "Stanzas received from bound clients, by kind."
    );
    describe_counter!(
        "starling_stanzas_sent_total",
        "Stanzas written to bound clients, by kind."
    );
    describe_counter!(
        "starling_auth_failures_total",
        "Failed SASL attempts, by SASL condition."
    );
    describe_counter!(
        "starling_auth_successes_total",
        "Successful SASL authentications, by mechanism."
    );
    describe_gauge!(
        "starling_outbound_queue_stanzas",
        "Stanzas waiting in all sessions' outbound queues."
    );
    describe_gauge!(
        "starling_outbound_queue_stanzas_max",
        "Stanzas waiting in the fullest session's outbound queue."
    );
    describe_histogram!(
        "starling_storage_operation_duration_seconds",
        Unit::Seconds,
        "Storage operation latency, by operation."
    );
}

/// Refresh the values read from the registry.
fn sample_registry(registry: &Registry) {
    let sessions = registry.all_sessions();
    let available = sessions.iter().filter(|s| s.is_available()).count();
    let queued = sessions.iter().map(|s| s.queued_stanzas());
    let (total, max) = queued.fold((0, 0), |(total, max), q| (total + q, max.max(q)));
    let state = |state: &'static str| ::metrics::gauge!("starling_sessions", "state" => state);
    state("bound").set((sessions.len() - available) as f64);
    state("available").set(available as f64);
    ::metrics::gauge!("starling_outbound_queue_stanzas").set(total as f64);
    ::metrics::gauge!("starling_outbound_queue_stanzas_max").set(max as f64);
}

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
    MethodNotAllowed,
}

fn route(head: &str) -> Route {
    let mut request_line = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (request_line.next(), request_line.next());
    let path = target.map(|t| t.split('?').next().unwrap_or_default());
    match (method, path) {
        (Some("GET"), Some("/metrics")) => Route::Metrics,
        (Some("GET"), _) => Route::NotFound,
        _ => Route::MethodNotAllowed,
    }
}

fn response(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_metrics_is_served() {
        assert_eq!(
            route("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics
        );
        assert_eq!(route("GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(route("GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(
            route("POST /metrics HTTP/1.1\r\n\r\n"),
            Route::MethodNotAllowed
        );
        assert_eq!(route(""), Route::MethodNotAllowed);
    }

    #[test]
    fn response_has_the_body_length() {
        let text = response("200 OK", "text/plain", "héllo\n");
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Length: 7\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nhéllo\n"), "{text}");
    }
}
