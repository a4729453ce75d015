//! Bad-input case files: parser and runner. The format is documented in
//! `tests/bad-input/README.md`.
//!
//! A case drives one fresh connection from a given stage (raw TCP, plaintext stream, after
//! STARTTLS, or logged in) through `send`/`expect` steps. Around it, the runner keeps a bystander
//! session logged in; the case passes only if the bystander still answers a ping afterwards and
//! the server process is still alive, so input that hurts other sessions fails even when the
//! victim connection sees the right error.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};

use crate::client::{FloodOutcome, Incoming, ScramMech, XmppClient, stream_error_condition};
use crate::matcher::{Captures, matches_with, substitute};
use crate::reader::{parse_stream_child, to_xml};
use crate::server::{ServerOptions, TestServer};

/// The account every case connects as.
pub const CASE_USER: (&str, &str) = ("alice", "alice-password");
/// The account of the bystander session.
pub const BYSTANDER_USER: (&str, &str) = ("bob", "bob-password");
/// The resource the case connection binds in the `authenticated` stage.
pub const CASE_RESOURCE: &str = "case";
/// How long `expect-open` waits for the server to stay quiet on an unauthenticated stream.
pub const QUIET_PERIOD: Duration = Duration::from_millis(500);

/// Where the case connection starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// TCP connected to the STARTTLS port, nothing sent.
    Connect,
    /// Stream opened and features read, still plaintext.
    Plaintext,
    /// STARTTLS done and the stream reopened.
    Tls,
    /// Logged in with SCRAM-SHA-256, stream restarted, resource `case` bound.
    Authenticated,
}

/// One step of a case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `send: <text>`: write the text as UTF-8.
    Send(String),
    /// `send-bytes: <hex>`: write raw bytes.
    SendBytes(Vec<u8>),
    /// `send-repeat: <count> <text>`: write the text `count` times, stopping early if the
    /// server ends the stream.
    SendRepeat { count: usize, text: String },
    /// `expect: <xml>`: the next element matches structurally.
    Expect(String),
    /// `expect-stream-error: <condition>`: the next element is a stream error with this condition.
    ExpectStreamError(String),
    /// `expect-closed`: `</stream:stream>` then the end of the connection.
    ExpectClosed,
    /// `expect-disconnect`: the connection ends; a stream error or `</stream:stream>` may come first.
    ExpectDisconnect,
    /// `expect-open`: the connection is still usable.
    ExpectOpen,
    /// `restart-stream`: after a `<success/>` the test sent by hand, start a new stream
    /// (RFC 6120 §6.4.6): fresh reader, new header sent, server header and features read.
    RestartStream,
}

/// A step with the line it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub number: usize,
    pub text: String,
    pub step: Step,
}

/// A parsed case file.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// The file, for messages.
    pub path: PathBuf,
    /// The leading comment: the requirement the case checks.
    pub requirement: String,
    pub stage: Stage,
    pub options: ServerOptions,
    pub steps: Vec<Line>,
}

impl Case {
    /// Reads and parses a case file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(path, &text)
    }

    /// Parses case text; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> anyhow::Result<Self> {
        let mut requirement = Vec::new();
        let mut stage = None;
        let mut options = ServerOptions::default();
        let mut steps = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            let at = || format!("{}:{number}", path.display());
            let line = raw.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            if let Some(comment) = line.trim_start().strip_prefix('#') {
                if stage.is_none() && steps.is_empty() {
                    requirement.push(comment.trim().to_owned());
                }
                continue;
            }
            let (directive, value) = match line.split_once(':') {
                Some((directive, value)) if !directive.contains(char::is_whitespace) => {
                    (directive.trim(), value.trim())
                }
                _ => (strip_comment(line), ""),
            };
            let step = match directive {
                "stage" => {
                    if stage.is_some() {
                        bail!("{}: stage given twice", at());
                    }
                    if !steps.is_empty() {
                        bail!("{}: stage must come before the steps", at());
                    }
                    stage = Some(match strip_comment(value) {
                        "connect" => Stage::Connect,
                        "plaintext" => Stage::Plaintext,
                        "tls" => Stage::Tls,
                        "authenticated" => Stage::Authenticated,
                        other => bail!("{}: unknown stage {other:?}", at()),
                    });
                    continue;
                }
                "option" => {
                    if !steps.is_empty() {
                        bail!("{}: options must come before the steps", at());
                    }
                    let (key, value) = strip_comment(value)
                        .split_once('=')
                        .ok_or_else(|| anyhow!("{}: expected option: key=value", at()))?;
                    options.set(key.trim(), value.trim()).with_context(at)?;
                    continue;
                }
                "send" => Step::Send(value.to_owned()),
                "send-bytes" => Step::SendBytes(parse_hex(value).with_context(at)?),
                "send-repeat" => {
                    let (count, text) = value
                        .split_once(' ')
                        .ok_or_else(|| anyhow!("{}: expected send-repeat: <count> <text>", at()))?;
                    let count = count
                        .parse()
                        .map_err(|_| anyhow!("{}: bad repeat count {count:?}", at()))?;
                    Step::SendRepeat {
                        count,
                        text: text.to_owned(),
                    }
                }
                "expect" => {
                    parse_stream_child(value).map_err(|error| anyhow!("{}: {error}", at()))?;
                    Step::Expect(value.to_owned())
                }
                "expect-stream-error" => {
                    let condition = strip_comment(value);
                    if condition.is_empty() {
                        bail!("{}: expect-stream-error needs a condition", at());
                    }
                    Step::ExpectStreamError(condition.to_owned())
                }
                "expect-closed" => no_value(Step::ExpectClosed, value, &at)?,
                "expect-disconnect" => no_value(Step::ExpectDisconnect, value, &at)?,
                "expect-open" => no_value(Step::ExpectOpen, value, &at)?,
                "restart-stream" => no_value(Step::RestartStream, value, &at)?,
                other => bail!("{}: unknown directive {other:?}", at()),
            };
            steps.push(Line {
                number,
                text: line.to_owned(),
                step,
            });
        }
        let Some(stage) = stage else {
            bail!("{}: missing `stage:`", path.display());
        };
        if requirement.is_empty() {
            bail!(
                "{}: a case must open with a `#` comment naming the requirement it checks",
                path.display()
            );
        }
        if steps.is_empty() {
            bail!("{}: no steps", path.display());
        }
        Ok(Case {
            path: path.to_owned(),
            requirement: requirement.join(" "),
            stage,
            options,
            steps,
        })
    }
}

/// Every `*.case` file in `dir`, sorted by name.
pub fn case_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "case") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Runs one case file against a fresh server. Every error starts with the file's path.
pub async fn run_case(path: &Path) -> anyhow::Result<()> {
    let case = Case::load(path)?;
    let server = TestServer::start_with(case.options.clone())
        .await
        .with_context(|| format!("{}: starting the server", path.display()))?;
    let outcome = run_case_on(&case, &server).await;
    outcome.map_err(|error| {
        anyhow!(
            "{}\n  requirement: {}\n  {error:#}\n  server log tail:\n{}",
            case.path.display(),
            case.requirement,
            indent(&server.log_tail(30), "    ")
        )
    })
}

/// Runs a parsed case against a running server that has no accounts yet.
pub async fn run_case_on(case: &Case, server: &TestServer) -> anyhow::Result<()> {
    server.add_user(CASE_USER.0, CASE_USER.1).await?;
    server.add_user(BYSTANDER_USER.0, BYSTANDER_USER.1).await?;
    let mut bystander = XmppClient::login(server, BYSTANDER_USER.0, BYSTANDER_USER.1)
        .await
        .context("logging in the bystander")?;
    let mut client = reach_stage(case.stage, server)
        .await
        .with_context(|| format!("reaching stage {:?}", case.stage))?;
    let mut captures = Captures::new();
    let mut has_stream_ended = false;
    for line in &case.steps {
        run_step(
            &mut client,
            case.stage,
            line,
            &mut captures,
            &mut has_stream_ended,
        )
        .await
        .map_err(|error| anyhow!("line {}: `{}`: {error:#}", line.number, line.text))?;
    }
    bystander
        .ping()
        .await
        .context("the bystander session no longer answers a ping")?;
    server.ensure_alive()
}

/// Describes a stage in messages.
impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Stage::Connect => "connect",
            Stage::Plaintext => "plaintext",
            Stage::Tls => "tls",
            Stage::Authenticated => "authenticated",
        };
        f.write_str(name)
    }
}

async fn reach_stage(stage: Stage, server: &TestServer) -> anyhow::Result<XmppClient> {
    let mut client = XmppClient::connect_plain(server.starttls_addr).await?;
    if stage == Stage::Connect {
        return Ok(client);
    }
    client.open_stream(&server.domain).await?;
    if stage == Stage::Plaintext {
        return Ok(client);
    }
    client.starttls().await?;
    if stage == Stage::Tls {
        return Ok(client);
    }
    client
        .auth_scram(ScramMech::Sha256, CASE_USER.0, CASE_USER.1)
        .await??;
    client.bind(Some(CASE_RESOURCE)).await?;
    Ok(client)
}

async fn run_step(
    client: &mut XmppClient,
    stage: Stage,
    line: &Line,
    captures: &mut Captures,
    has_stream_ended: &mut bool,
) -> anyhow::Result<()> {
    match &line.step {
        Step::Send(text) => client.send_str(&substitute(text, captures)).await,
        Step::SendBytes(bytes) => client.send_raw(bytes).await,
        Step::SendRepeat { count, text } => {
            match client.send_flood(text.as_bytes(), *count).await? {
                FloodOutcome::Completed => {}
                // The server reacting before the flood ends is the point of most such cases.
                FloodOutcome::Stopped { .. } => *has_stream_ended = true,
            }
            Ok(())
        }
        Step::Expect(xml) => {
            let expected = parse_stream_child(&substitute(xml, captures))
                .map_err(|error| anyhow!("bad expectation: {error}"))?;
            let actual = match client.next_element().await? {
                Incoming::Element(element) | Incoming::StreamError(element) => element,
                Incoming::Closed => bail!(
                    "expected {}, but the server closed the stream",
                    to_xml(&expected)
                ),
            };
            matches_with(&expected, &actual, captures).map_err(|reason| anyhow!("{reason}"))
        }
        Step::ExpectStreamError(condition) => match client.next_element().await? {
            Incoming::StreamError(error) => {
                let actual = stream_error_condition(&error);
                if actual.as_deref() == Some(condition.as_str()) {
                    *has_stream_ended = true;
                    Ok(())
                } else {
                    bail!(
                        "expected stream error <{condition}/>, got {}",
                        to_xml(&error)
                    )
                }
            }
            Incoming::Element(element) => bail!(
                "expected stream error <{condition}/>, got {}",
                to_xml(&element)
            ),
            Incoming::Closed => bail!(
                "expected stream error <{condition}/>, but the server closed the stream without one"
            ),
        },
        Step::RestartStream => client.restart_stream().await.map(|_| ()),
        Step::ExpectClosed => client.expect_closed().await,
        Step::ExpectDisconnect => client.expect_disconnect().await.map(|_| ()),
        Step::ExpectOpen => {
            if *has_stream_ended {
                bail!("expect-open after the stream ended");
            }
            if stage == Stage::Authenticated {
                client.ping().await
            } else {
                client.expect_quiet(QUIET_PERIOD).await
            }
        }
    }
}

/// Drops a trailing `# comment` from a directive value that is not XML.
fn strip_comment(value: &str) -> &str {
    match value.find('#') {
        Some(hash) => value[..hash].trim(),
        None => value.trim(),
    }
}

fn no_value(step: Step, value: &str, at: &dyn Fn() -> String) -> anyhow::Result<Step> {
    if strip_comment(value).is_empty() {
        Ok(step)
    } else {
        bail!("{}: this directive takes no value", at())
    }
}

fn parse_hex(value: &str) -> anyhow::Result<Vec<u8>> {
    let digits: String = strip_comment(value)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        bail!("send-bytes needs an even number of hex digits, got {digits:?}");
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&digits[i..i + 2], 16)
                .map_err(|_| anyhow!("bad hex byte {:?}", &digits[i..i + 2]))
        })
        .collect()
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

    fn parse(text: &str) -> Result<Case, String> {
        Case::parse(Path::new("t.case"), text).map_err(|error| format!("{error:#}"))
    }

    #[test]
    fn full_case_parses() {
        let case = parse(
            "# RFC 6120 §4.9.3.10: wrong stream namespace\n\
             # gets invalid-namespace\n\
             \n\
             stage: connect   # raw TCP\n\
             option: require_encryption=false\n\
             send: <stream:stream xmlns='jabber:client' to='localhost'> # not a comment\n\
             send-bytes: 3c 61 3e ff fe\n\
             send-repeat: 3 xx yy\n\
             expect: <failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>\n\
             expect-stream-error: invalid-namespace  # condition\n\
             expect-closed\n\
             expect-disconnect\n\
             expect-open\n",
        )
        .expect("parses");
        assert_eq!(
            case.requirement,
            "RFC 6120 §4.9.3.10: wrong stream namespace gets invalid-namespace"
        );
        assert_eq!(case.stage, Stage::Connect);
        assert_eq!(
            case.options,
            ServerOptions {
                require_encryption: false,
                ..ServerOptions::default()
            }
        );
        let steps: Vec<(usize, Step)> = case
            .steps
            .into_iter()
            .map(|line| (line.number, line.step))
            .collect();
        assert_eq!(
            steps,
            [
                (6, Step::Send("<stream:stream xmlns='jabber:client' to='localhost'> # not a comment".to_owned())),
                (7, Step::SendBytes(vec![0x3c, 0x61, 0x3e, 0xff, 0xfe])),
                (8, Step::SendRepeat { count: 3, text: "xx yy".to_owned() }),
                (9, Step::Expect("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>".to_owned())),
                (10, Step::ExpectStreamError("invalid-namespace".to_owned())),
                (11, Step::ExpectClosed),
                (12, Step::ExpectDisconnect),
                (13, Step::ExpectOpen),
            ]
        );
    }

    #[test]
    fn errors_name_the_line() {
        let head = "# requirement\nstage: tls\n";
        assert_eq!(
            parse(&format!("{head}frobnicate: x\n")),
            Err("t.case:3: unknown directive \"frobnicate\"".to_owned())
        );
        assert_eq!(
            parse(&format!("{head}expect: <a><b></a>\n"))
                .map_err(|e| e.starts_with("t.case:3: peer sent malformed XML")),
            Err(true)
        );
        assert_eq!(
            parse(&format!("{head}send-bytes: fff\n")),
            Err("t.case:3: send-bytes needs an even number of hex digits, got \"fff\"".to_owned())
        );
        assert_eq!(
            parse(&format!("{head}expect-closed now\n")),
            Err("t.case:3: unknown directive \"expect-closed now\"".to_owned())
        );
        assert_eq!(
            parse(&format!("{head}expect-closed: now\n")),
            Err("t.case:3: this directive takes no value".to_owned())
        );
        assert_eq!(
            parse("# r\nstage: tls\noption: colour=blue\nsend: x\n"),
            Err("t.case:3: unknown server option \"colour\"".to_owned())
        );
        assert_eq!(
            parse("# r\nstage: orbit\n"),
            Err("t.case:2: unknown stage \"orbit\"".to_owned())
        );
    }

    #[test]
    fn cases_need_a_requirement_a_stage_and_steps() {
        assert_eq!(
            parse("stage: tls\nsend: x\n"),
            Err(
                "t.case: a case must open with a `#` comment naming the requirement it checks"
                    .to_owned()
            )
        );
        assert_eq!(
            parse("# r\nsend: x\n"),
            Err("t.case: missing `stage:`".to_owned())
        );
        assert_eq!(
            parse("# r\nstage: tls\n"),
            Err("t.case: no steps".to_owned())
        );
        assert_eq!(
            parse("# r\nstage: tls\nsend: x\nstage: tls\n"),
            Err("t.case:4: stage given twice".to_owned())
        );
    }

    #[test]
    fn shipped_cases_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/bad-input");
        let files = case_files(&dir).expect("the bad-input directory exists");
        assert!(!files.is_empty(), "no cases in {}", dir.display());
        for file in files {
            Case::load(&file).unwrap_or_else(|error| panic!("{error:#}"));
        }
    }
}
