//! Runner for scenarios: a fresh server per scenario, one [`XmppClient`] per declared client.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use minidom::Element;
use tokio::task::JoinSet;

use super::parse::{ConnectStage, Expectation, Line, Mechanism, Scenario, Step, accounts};
use super::{EXTENSION, FINAL_QUIET};
use crate::client::{Incoming, XmppClient, escape, stream_error_condition};
use crate::matcher::{Captures, matches_with};
use crate::reader::{parse_stream_child, to_xml};
use crate::server::TestServer;

/// How a scenario ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    /// The full failure message: file, line, step, expected and actual, server log tail.
    Failed(String),
}

/// One scenario's result, as recorded for `cargo xtask compliance`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioReport {
    pub name: String,
    pub tags: Vec<String>,
    pub requirement: String,
    pub outcome: Outcome,
    pub elapsed: Duration,
}

impl ScenarioReport {
    pub fn is_passed(&self) -> bool {
        self.outcome == Outcome::Passed
    }
}

/// Every `*.scenario` file below `dir` (recursively), sorted by path.
pub fn scenario_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    collect(dir, &mut files)?;
    files.sort();
    Ok(files)
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, files)?;
        } else if path.extension().is_some_and(|ext| ext == EXTENSION) {
            files.push(path);
        }
    }
    Ok(())
}

/// Runs `files` (scenarios below `root`), at most `concurrency` at a time, each on its own
/// server. Reports come back sorted by name.
pub async fn run_scenarios(
    files: Vec<PathBuf>,
    root: &Path,
    concurrency: usize,
) -> Vec<ScenarioReport> {
    let mut pending = files.into_iter();
    let mut running = JoinSet::new();
    let mut reports = Vec::new();
    loop {
        while running.len() < concurrency.max(1) {
            let Some(file) = pending.next() else { break };
            let root = root.to_owned();
            running.spawn(async move { run_scenario(&file, &root).await });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        reports.push(joined.unwrap_or_else(|error| ScenarioReport {
            name: "(unknown)".to_owned(),
            tags: Vec::new(),
            requirement: String::new(),
            outcome: Outcome::Failed(format!("a scenario task panicked: {error}")),
            elapsed: Duration::ZERO,
        }));
    }
    reports.sort_by(|a, b| a.name.cmp(&b.name));
    reports
}

/// Loads one scenario file and runs it against a fresh server.
pub async fn run_scenario(path: &Path, root: &Path) -> ScenarioReport {
    let started = Instant::now();
    let scenario = match Scenario::load(path, root) {
        Ok(scenario) => scenario,
        Err(error) => {
            return ScenarioReport {
                name: super::parse::scenario_name(path, root),
                tags: Vec::new(),
                requirement: String::new(),
                outcome: Outcome::Failed(format!("{error:#}")),
                elapsed: started.elapsed(),
            };
        }
    };
    let outcome = match TestServer::start_with(scenario.options.clone()).await {
        Err(error) => Outcome::Failed(format!(
            "{}: starting the server: {error:#}",
            scenario.path.display()
        )),
        Ok(server) => match run_scenario_on(&scenario, &server).await {
            Ok(()) => Outcome::Passed,
            Err(error) => Outcome::Failed(format!(
                "{error:#}\n  server log tail:\n{}",
                indent(&server.log_tail(30), "    ")
            )),
        },
    };
    ScenarioReport {
        name: scenario.name.clone(),
        tags: scenario.tags.clone(),
        requirement: scenario.requirement.clone(),
        outcome,
        elapsed: started.elapsed(),
    }
}

/// Runs a parsed scenario against a running server that has none of its accounts yet.
/// Errors start with `file:line` and the step; the caller adds the server log.
pub async fn run_scenario_on(scenario: &Scenario, server: &TestServer) -> anyhow::Result<()> {
    let located = |line: Option<&Line>, error: anyhow::Error| {
        let place = match line {
            Some(line) => format!(
                "{}:{}: `{}`",
                scenario.path.display(),
                line.number,
                line.text
            ),
            None => format!("{}: at the end", scenario.path.display()),
        };
        anyhow!(
            "{place}\n  requirement: {}\n  {error:#}",
            scenario.requirement
        )
    };
    for (localpart, password) in accounts(scenario) {
        server
            .add_user(&localpart, &password)
            .await
            .map_err(|error| located(None, error.context("creating accounts")))?;
    }
    let mut run = Run {
        scenario,
        server,
        connections: BTreeMap::new(),
        captures: Captures::new(),
    };
    for line in &scenario.steps {
        run.step(&line.step)
            .await
            .map_err(|error| located(Some(line), error))?;
    }
    run.finish().await.map_err(|error| located(None, error))?;
    server.ensure_alive().map_err(|error| located(None, error))
}

/// The results file: one line per scenario, tab-separated `name`, `pass`/`fail`, space-separated
/// tags and the requirement, under a header line.
pub fn results_tsv(reports: &[ScenarioReport]) -> String {
    let mut out = String::from("name\tresult\ttags\trequirement\n");
    for report in reports {
        let clean = |text: &str| text.replace(['\t', '\n', '\r'], " ");
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            clean(&report.name),
            if report.is_passed() { "pass" } else { "fail" },
            report.tags.join(" "),
            clean(&report.requirement)
        ));
    }
    out
}

/// One client's connection and what has been read ahead on it.
struct Connection {
    client: XmppClient,
    /// Elements read but not yet expected (a `header` check reads one ahead).
    pending: VecDeque<Incoming>,
    /// False once the scenario has seen the connection end or dropped it.
    is_open: bool,
}

struct Run<'a> {
    scenario: &'a Scenario,
    server: &'a TestServer,
    connections: BTreeMap<String, Connection>,
    /// `{name}` values, shared by all clients.
    captures: Captures,
}

impl Run<'_> {
    async fn step(&mut self, step: &Step) -> anyhow::Result<()> {
        if let Step::Connect {
            client,
            stage,
            is_direct_tls,
            is_without_tls,
            mechanism,
        } = step
        {
            if self.connections.get(client).is_some_and(|c| c.is_open) {
                bail!("{client} is already connected");
            }
            let connection = self
                .connect(client, *stage, *is_direct_tls, *is_without_tls, *mechanism)
                .await?;
            self.connections.insert(client.clone(), connection);
            return Ok(());
        }
        let timeout = self.scenario.step_timeout;
        let name = step.client();
        let connection = self
            .connections
            .get_mut(name)
            .filter(|connection| connection.is_open)
            .ok_or_else(|| anyhow!("{name} is not connected"))?;
        match step {
            Step::Connect { .. } => Ok(()),
            Step::Send { text, .. } => {
                let text = render_send(text, &self.captures)?;
                connection.client.send_str(&text).await
            }
            Step::SendHex { bytes, .. } => connection.client.send_raw(bytes).await,
            Step::Keepalive { .. } => connection.client.send_whitespace().await,
            Step::Expect { expectation, .. } => {
                expect(connection, expectation, timeout, &mut self.captures).await
            }
            Step::Features { xml, .. } => {
                let features = connection.client.features().cloned().ok_or_else(|| {
                    anyhow!("no <stream:features/> were read by a negotiation step")
                })?;
                match_typed(xml, &features, &mut self.captures)
            }
            Step::Restart { .. } => {
                no_pending(connection, "a stream restart")?;
                connection.client.restart_stream().await.map(|_| ())
            }
            Step::Closed { .. } => {
                take_close(connection, "the server to close the stream")?;
                connection.is_open = false;
                connection.client.expect_closed().await
            }
            Step::Disconnected { .. } => {
                take_close(connection, "the connection to end")?;
                connection.is_open = false;
                match connection.client.expect_disconnect().await? {
                    None => Ok(()),
                    Some(condition) => bail!(
                        "a stream error <{condition}/> arrived before the connection ended; \
                         expect it with `<- stream-error {condition}` first"
                    ),
                }
            }
            Step::Disconnect { .. } => {
                no_pending(connection, "the client to close its stream")?;
                connection.is_open = false;
                connection.client.close_stream().await?;
                connection
                    .client
                    .expect_closed()
                    .await
                    .context("after the client's </stream:stream>")
            }
            Step::Drop { .. } => {
                // Dropping the client closes its socket without writing anything more.
                self.connections.remove(name);
                Ok(())
            }
        }
    }

    async fn connect(
        &mut self,
        name: &str,
        stage: ConnectStage,
        is_direct_tls: bool,
        is_without_tls: bool,
        mechanism: Mechanism,
    ) -> anyhow::Result<Connection> {
        let decl = self
            .scenario
            .client(name)
            .ok_or_else(|| anyhow!("undeclared client {name}"))?;
        let mut client = if is_direct_tls {
            XmppClient::connect_direct_tls(self.server.direct_tls_addr, &decl.domain).await?
        } else {
            XmppClient::connect_plain(self.server.starttls_addr).await?
        };
        client.set_timeout(self.scenario.step_timeout);
        let connection = |client| Connection {
            client,
            pending: VecDeque::new(),
            is_open: true,
        };
        if stage == ConnectStage::Raw {
            return Ok(connection(client));
        }
        client
            .open_stream(&decl.domain)
            .await
            .context("opening the stream")?;
        if stage == ConnectStage::Opened {
            return Ok(connection(client));
        }
        if !is_direct_tls && !is_without_tls {
            client.starttls().await.context("STARTTLS")?;
        }
        if stage == ConnectStage::Tls {
            return Ok(connection(client));
        }
        let outcome = match mechanism {
            Mechanism::Plain => {
                client
                    .auth_plain(&decl.localpart, &decl.password, None)
                    .await
            }
            Mechanism::Scram(mech) => {
                client
                    .auth_scram(mech, &decl.localpart, &decl.password)
                    .await
            }
        };
        outcome
            .context("SASL")?
            .with_context(|| format!("SASL as {}", decl.localpart))?;
        if stage == ConnectStage::Authenticated {
            return Ok(connection(client));
        }
        let jid = client
            .bind(decl.resource.as_deref())
            .await
            .context("binding")?;
        let resource = jid.split_once('/').map(|(_, r)| r).unwrap_or_default();
        self.captures
            .insert(format!("{name}-resource"), resource.to_owned());
        self.captures.insert(format!("{name}-jid"), jid.clone());
        Ok(connection(client))
    }

    /// Every connection still open must be quiet, with nothing read ahead.
    async fn finish(&mut self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + FINAL_QUIET;
        for (name, connection) in &mut self.connections {
            if !connection.is_open {
                continue;
            }
            if let Some(incoming) = connection.pending.pop_front() {
                bail!("{name} has an unexpected {}", describe(&incoming));
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            connection
                .client
                .expect_quiet(left)
                .await
                .with_context(|| {
                    format!(
                        "{name} received something no step expected \
                     (every open connection must be quiet at the end)"
                    )
                })?;
        }
        Ok(())
    }
}

async fn expect(
    connection: &mut Connection,
    expectation: &Expectation,
    timeout: Duration,
    captures: &mut Captures,
) -> anyhow::Result<()> {
    match expectation {
        Expectation::Element(xml) => {
            let incoming = next(connection, timeout)
                .await
                .map_err(|error| anyhow!("expected {xml}\n  but nothing arrived: {error:#}"))?;
            match incoming {
                Incoming::Element(actual) | Incoming::StreamError(actual) => {
                    match_typed(xml, &actual, captures)
                }
                Incoming::Closed => {
                    connection.is_open = false;
                    bail!("expected {xml}\n  but the server closed the stream")
                }
            }
        }
        Expectation::StreamError(condition) => {
            let incoming = next(connection, timeout).await.map_err(|error| {
                anyhow!("expected stream error <{condition}/>\n  but nothing arrived: {error:#}")
            })?;
            match incoming {
                Incoming::StreamError(error)
                    if stream_error_condition(&error).as_deref() == Some(condition) =>
                {
                    Ok(())
                }
                Incoming::Closed => {
                    connection.is_open = false;
                    bail!(
                        "expected stream error <{condition}/>\n  but the server closed the stream without one"
                    )
                }
                other => bail!(
                    "expected stream error <{condition}/>\n  got {}",
                    describe(&other)
                ),
            }
        }
        Expectation::Header(xml) => {
            if connection.client.stream_header().is_none() && connection.pending.is_empty() {
                // The header is parsed together with the element after it; keep that one.
                let incoming = next(connection, timeout).await.map_err(|error| {
                    anyhow!("expected the server's stream header {xml}\n  but nothing arrived: {error:#}")
                })?;
                connection.pending.push_back(incoming);
            }
            let header = connection.client.stream_header().cloned().ok_or_else(|| {
                anyhow!("expected the server's stream header {xml}, but none arrived")
            })?;
            match_typed(xml, &header, captures)
        }
        Expectation::Nothing(quiet) => {
            if let Some(incoming) = connection.pending.pop_front() {
                bail!("expected nothing, got {}", describe(&incoming));
            }
            connection.client.expect_quiet(*quiet).await
        }
    }
}

/// The next element on the connection: read ahead first, then from the socket.
async fn next(connection: &mut Connection, timeout: Duration) -> anyhow::Result<Incoming> {
    if let Some(incoming) = connection.pending.pop_front() {
        return Ok(incoming);
    }
    connection.client.set_timeout(timeout);
    connection.client.next_element().await
}

/// Before a close is expected, nothing but the close may have been read ahead.
fn take_close(connection: &mut Connection, what: &str) -> anyhow::Result<()> {
    match connection.pending.pop_front() {
        None | Some(Incoming::Closed) => Ok(()),
        Some(other) => bail!("expected {what}, got {}", describe(&other)),
    }
}

fn no_pending(connection: &Connection, what: &str) -> anyhow::Result<()> {
    match connection.pending.front() {
        None => Ok(()),
        Some(other) => bail!("before {what}: unexpected {}", describe(other)),
    }
}

fn describe(incoming: &Incoming) -> String {
    match incoming {
        Incoming::Element(element) => to_xml(element),
        Incoming::StreamError(error) => format!("stream error {}", to_xml(error)),
        Incoming::Closed => "end of the stream".to_owned(),
    }
}

/// Value checks a typed placeholder `{name:type}` adds to the capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ValueType {
    /// An RFC 9562 UUID, version 7, variant 10, lowercase or uppercase hex.
    Uuid7,
    /// An XEP-0082 DateTime (`CCYY-MM-DDThh:mm:ss[.sss](Z|±hh:mm)`).
    DateTime,
    /// A non-empty string of ASCII digits.
    Int,
}

impl ValueType {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "uuid7" => Some(ValueType::Uuid7),
            "datetime" => Some(ValueType::DateTime),
            "int" => Some(ValueType::Int),
            _ => None,
        }
    }

    fn check(self, value: &str) -> bool {
        match self {
            ValueType::Uuid7 => is_uuid7(value),
            ValueType::DateTime => is_datetime(value),
            ValueType::Int => !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()),
        }
    }
}

/// Matches `actual` against expectation XML that may hold typed placeholders.
fn match_typed(xml: &str, actual: &Element, captures: &mut Captures) -> anyhow::Result<()> {
    let (plain, typed) = untype(xml)?;
    let expected =
        parse_stream_child(&plain).map_err(|error| anyhow!("bad expectation: {error}"))?;
    let mut attempt = captures.clone();
    matches_with(&expected, actual, &mut attempt).map_err(|reason| anyhow!("{reason}"))?;
    for (name, kind, is_anonymous) in &typed {
        let value = attempt.get(name).cloned().unwrap_or_default();
        if !kind.check(&value) {
            bail!(
                "captured {value:?} for {{{}:{}}}, which is not a valid {kind:?}\n  actual: {}",
                if *is_anonymous { "*" } else { name },
                format!("{kind:?}").to_lowercase(),
                to_xml(actual)
            );
        }
        if *is_anonymous {
            attempt.remove(name);
        }
    }
    *captures = attempt;
    Ok(())
}

/// A typed placeholder's capture name, its type, and whether it was `{*:type}` (not kept).
type TypedCapture = (String, ValueType, bool);

/// Rewrites `{name:type}` to `{name}` (and `{*:type}` to a hidden name), returning the checks.
fn untype(xml: &str) -> anyhow::Result<(String, Vec<TypedCapture>)> {
    let mut out = String::with_capacity(xml.len());
    let mut typed = Vec::new();
    let mut rest = xml;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let placeholder = after.find('}').and_then(|close| {
            let (name, kind) = after[..close].split_once(':')?;
            let is_name = name == "*" || is_capture_name(name);
            is_name.then_some((name, kind, close))
        });
        match placeholder {
            Some((name, kind, close)) => {
                let value_type = ValueType::parse(kind).ok_or_else(|| {
                    anyhow!("unknown placeholder type {kind:?} in {{{name}:{kind}}}")
                })?;
                let is_anonymous = name == "*";
                let name = if is_anonymous {
                    format!("anonymous-typed-{}", typed.len())
                } else {
                    name.to_owned()
                };
                out.push('{');
                out.push_str(&name);
                out.push('}');
                typed.push((name, value_type, is_anonymous));
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok((out, typed))
}

/// Prepares `->` text: `{name}` becomes the captured value (XML-escaped), `{base64:text}`
/// becomes the base64 of `text` with `\0` standing for a NUL byte. A `{name}` without a
/// capture is an error, so a typo cannot send a literal placeholder.
fn render_send(text: &str, captures: &Captures) -> anyhow::Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push('{');
            rest = after;
            continue;
        };
        let inner = &after[..close];
        if let Some(raw) = inner.strip_prefix("base64:") {
            let bytes = raw.replace("\\0", "\0");
            out.push_str(&BASE64.encode(bytes.as_bytes()));
        } else if is_capture_name(inner) {
            let value = captures
                .get(inner)
                .ok_or_else(|| anyhow!("nothing captured as {{{inner}}} yet"))?;
            out.push_str(&escape(value));
        } else {
            out.push('{');
            rest = after;
            continue;
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn is_capture_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn is_uuid7(value: &str) -> bool {
    let groups: Vec<&str> = value.split('-').collect();
    let lengths = [8, 4, 4, 4, 12];
    groups.len() == 5
        && groups
            .iter()
            .zip(lengths)
            .all(|(group, len)| group.len() == len && group.chars().all(|c| c.is_ascii_hexdigit()))
        && groups[2].starts_with('7')
        && groups[3].starts_with(['8', '9', 'a', 'b', 'A', 'B'])
}

fn is_datetime(value: &str) -> bool {
    let bytes = value.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .is_some_and(|part| part.iter().all(u8::is_ascii_digit))
    };
    let fixed = digits(0..4)
        && bytes.get(4) == Some(&b'-')
        && digits(5..7)
        && bytes.get(7) == Some(&b'-')
        && digits(8..10)
        && bytes.get(10) == Some(&b'T')
        && digits(11..13)
        && bytes.get(13) == Some(&b':')
        && digits(14..16)
        && bytes.get(16) == Some(&b':')
        && digits(17..19);
    if !fixed {
        return false;
    }
    let mut zone = &value[19..];
    if let Some(fraction) = zone.strip_prefix('.') {
        let end = fraction
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(fraction.len());
        if end == 0 {
            return false;
        }
        zone = &fraction[end..];
    }
    zone == "Z"
        || (zone.len() == 6
            && zone.starts_with(['+', '-'])
            && zone.as_bytes()[3] == b':'
            && zone[1..3].chars().all(|c| c.is_ascii_digit())
            && zone[4..6].chars().all(|c| c.is_ascii_digit()))
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .map(|line| format!("{prefix}{line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(xml: &str) -> Element {
        parse_stream_child(xml).expect("test XML parses")
    }

    #[test]
    fn typed_placeholders_check_their_values() {
        let bound = element(
            "<iq type='result'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <jid>alice@localhost/01936a3e-7f1c-7abc-8def-0123456789ab</jid></bind></iq>",
        );
        let mut captures = Captures::new();
        match_typed(
            "<iq><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@localhost/{res:uuid7}</jid></bind></iq>",
            &bound,
            &mut captures,
        )
        .expect("a version-7 UUID matches");
        assert_eq!(captures["res"], "01936a3e-7f1c-7abc-8def-0123456789ab");

        let v4 = element(
            "<iq><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <jid>alice@localhost/01936a3e-7f1c-4abc-8def-0123456789ab</jid></bind></iq>",
        );
        let error = match_typed(
            "<iq><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@localhost/{*:uuid7}</jid></bind></iq>",
            &v4,
            &mut Captures::new(),
        )
        .expect_err("a version-4 UUID does not");
        assert!(
            format!("{error}").starts_with(
                "captured \"01936a3e-7f1c-4abc-8def-0123456789ab\" for {*:uuid7}, which is not a valid Uuid7"
            ),
            "{error}"
        );
    }

    #[test]
    fn anonymous_typed_captures_are_not_kept() {
        let mut captures = Captures::new();
        match_typed("<t>{*:int}</t>", &element("<t>42</t>"), &mut captures).expect("matches");
        assert!(captures.is_empty());
    }

    #[test]
    fn unknown_placeholder_types_are_errors() {
        assert_eq!(
            untype("<a b='{x:colour}'/>").map_err(|e| e.to_string()),
            Err("unknown placeholder type \"colour\" in {x:colour}".to_owned())
        );
        assert_eq!(
            untype("<a b='{ x:y }' c='{x}'/>")
                .map(|(plain, typed)| (plain, typed.len()))
                .map_err(|e| e.to_string()),
            Ok(("<a b='{ x:y }' c='{x}'/>".to_owned(), 0))
        );
    }

    #[test]
    fn sends_substitute_escape_and_encode() {
        let captures = Captures::from([("r".to_owned(), "a&b".to_owned())]);
        assert_eq!(
            render_send("<iq to='x/{r}'>{base64:\\0alice\\0pw}</iq>", &captures)
                .map_err(|e| e.to_string()),
            Ok("<iq to='x/a&amp;b'>AGFsaWNlAHB3</iq>".to_owned())
        );
        assert_eq!(
            render_send("<a>{ not }{}</a>", &captures).map_err(|e| e.to_string()),
            Ok("<a>{ not }{}</a>".to_owned())
        );
        assert_eq!(
            render_send("<a to='{missing}'/>", &captures).map_err(|e| e.to_string()),
            Err("nothing captured as {missing} yet".to_owned())
        );
    }

    #[test]
    fn uuid7_and_datetime_shapes() {
        assert!(is_uuid7("01936a3e-7f1c-7abc-bdef-0123456789ab"));
        assert!(!is_uuid7("01936a3e-7f1c-7abc-cdef-0123456789ab"));
        assert!(!is_uuid7("01936a3e7f1c7abc8def0123456789ab"));
        assert!(is_datetime("2024-05-01T12:00:00Z"));
        assert!(is_datetime("2024-05-01T12:00:00.123+02:00"));
        assert!(!is_datetime("2024-05-01 12:00:00Z"));
        assert!(!is_datetime("2024-05-01T12:00:00"));
    }

    #[test]
    fn results_are_tab_separated() {
        let report = |name: &str, outcome| ScenarioReport {
            name: name.to_owned(),
            tags: vec!["rfc6120:7.7.2.1".to_owned(), "xep0199".to_owned()],
            requirement: "line\tone\nline two".to_owned(),
            outcome,
            elapsed: Duration::ZERO,
        };
        assert_eq!(
            results_tsv(&[
                report("a/b", Outcome::Passed),
                report("c", Outcome::Failed("x".to_owned()))
            ]),
            "name\tresult\ttags\trequirement\n\
             a/b\tpass\trfc6120:7.7.2.1 xep0199\tline one line two\n\
             c\tfail\trfc6120:7.7.2.1 xep0199\tline one line two\n"
        );
    }
}
