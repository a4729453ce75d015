//! Parser for scenario files: header (requirement, tags, options, clients) and steps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};

use super::{DEFAULT_QUIET, DEFAULT_STEP_TIMEOUT};
use crate::client::ScramMech;
use crate::reader::parse_stream_child;
use crate::server::ServerOptions;

/// A parsed scenario file.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// The file, for messages.
    pub path: PathBuf,
    /// The name reported in results: the path below the scenario directory, without extension.
    pub name: String,
    /// The leading `#` comment: the requirement the scenario checks, in the author's words.
    pub requirement: String,
    /// What the scenario proves, e.g. `rfc6120:7.7.2.1` or `xep0199`.
    pub tags: Vec<String>,
    /// Server options (`option: key=value`).
    pub options: ServerOptions,
    /// The per-step deadline.
    pub step_timeout: Duration,
    /// Declared clients, in declaration order.
    pub clients: Vec<ClientDecl>,
    /// The steps, in file order.
    pub steps: Vec<Line>,
}

/// `client a1: alice@localhost/phone password=secret`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientDecl {
    /// The name steps use (`a1`).
    pub name: String,
    pub localpart: String,
    pub domain: String,
    /// The resource to ask for when binding; `None` lets the server generate one.
    pub resource: Option<String>,
    pub password: String,
    /// Whether the runner creates the account (false with the `no-account` flag).
    pub has_account: bool,
}

/// How far `connect` negotiates before handing the connection to the steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConnectStage {
    /// TCP (or TLS for `direct-tls`) connected, nothing sent.
    Raw,
    /// Stream header sent, the server's header and `<stream:features/>` read.
    Opened,
    /// STARTTLS done (or direct TLS) and the stream reopened.
    Tls,
    /// SASL succeeded and the stream restarted; no resource bound.
    Authenticated,
    /// A resource is bound: the client is a connected resource (the default).
    Bound,
}

/// The SASL mechanism `connect` authenticates with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Scram(ScramMech),
}

/// What a `<-` line expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expectation {
    /// The next element matches this XML structurally.
    Element(String),
    /// The next element is a stream error with this defined condition.
    StreamError(String),
    /// The server's most recent stream header matches this XML.
    Header(String),
    /// Nothing arrives for the duration and the connection stays open.
    Nothing(Duration),
}

/// One step of a scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `connect a1 [stage] [direct-tls] [no-tls] [sasl=MECH]`.
    Connect {
        client: String,
        stage: ConnectStage,
        is_direct_tls: bool,
        is_without_tls: bool,
        mechanism: Mechanism,
    },
    /// `a1 -> text`: write the text (after substitution) as UTF-8.
    Send { client: String, text: String },
    /// `a1 send-hex 3c 61`: write raw bytes.
    SendHex { client: String, bytes: Vec<u8> },
    /// `a1 keepalive`: write a single space (RFC 6120 §4.6.1).
    Keepalive { client: String },
    /// `a1 <- ...`.
    Expect {
        client: String,
        expectation: Expectation,
    },
    /// `a1 features <xml>`: the features read by the last negotiation step match.
    Features { client: String, xml: String },
    /// `a1 restart`: start a new stream after a `<success/>` the scenario sent by hand.
    Restart { client: String },
    /// `a1 closed`: the server sends `</stream:stream>` and closes the connection.
    Closed { client: String },
    /// `a1 disconnected`: the connection ends, with or without `</stream:stream>` first.
    Disconnected { client: String },
    /// `a1 disconnect`: the client sends `</stream:stream>` and expects the server to close.
    Disconnect { client: String },
    /// `a1 drop`: the client closes its socket without closing the stream.
    Drop { client: String },
}

impl Step {
    /// The client the step acts on.
    pub fn client(&self) -> &str {
        match self {
            Step::Connect { client, .. }
            | Step::Send { client, .. }
            | Step::SendHex { client, .. }
            | Step::Keepalive { client }
            | Step::Expect { client, .. }
            | Step::Features { client, .. }
            | Step::Restart { client }
            | Step::Closed { client }
            | Step::Disconnected { client }
            | Step::Disconnect { client }
            | Step::Drop { client } => client,
        }
    }
}

/// A step with the line it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub number: usize,
    /// The source text, continuation lines joined.
    pub text: String,
    pub step: Step,
}

impl Scenario {
    /// Reads and parses a scenario file; `root` is the scenario directory, for the name.
    pub fn load(path: &Path, root: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(path, &scenario_name(path, root), &text)
    }

    /// Parses scenario text; `path` is only used in messages.
    pub fn parse(path: &Path, name: &str, text: &str) -> anyhow::Result<Self> {
        let mut scenario = Scenario {
            path: path.to_owned(),
            name: name.to_owned(),
            requirement: String::new(),
            tags: Vec::new(),
            options: ServerOptions::default(),
            step_timeout: DEFAULT_STEP_TIMEOUT,
            clients: Vec::new(),
            steps: Vec::new(),
        };
        let mut requirement = Vec::new();
        let mut has_directive = false;
        for (number, line) in logical_lines(text) {
            let at = || format!("{}:{number}", path.display());
            if let Some(comment) = line.strip_prefix('#') {
                if !has_directive {
                    requirement.push(comment.trim().to_owned());
                }
                continue;
            }
            has_directive = true;
            scenario.parse_line(&line, number).with_context(at)?;
        }
        scenario.requirement = requirement.join(" ");
        scenario.check_complete()?;
        Ok(scenario)
    }

    /// The declared client called `name`.
    pub fn client(&self, name: &str) -> Option<&ClientDecl> {
        self.clients.iter().find(|client| client.name == name)
    }

    fn parse_line(&mut self, line: &str, number: usize) -> anyhow::Result<()> {
        let (head, rest) = split_word(line);
        let is_header = matches!(head, "tags:" | "option:" | "timeout:" | "client");
        if is_header && !self.steps.is_empty() {
            bail!("`{head}` must come before the first step");
        }
        match head {
            "tags:" => {
                for tag in rest.split_whitespace() {
                    check_tag(tag)?;
                    self.tags.push(tag.to_owned());
                }
                Ok(())
            }
            "option:" => {
                let (key, value) = rest
                    .split_once('=')
                    .ok_or_else(|| anyhow!("expected `option: key=value`"))?;
                self.options.set(key.trim(), value.trim())
            }
            "timeout:" => {
                self.step_timeout = parse_duration(rest)?;
                Ok(())
            }
            "client" => self.parse_client(rest),
            "connect" => {
                let step = self.parse_connect(rest)?;
                self.push(number, line, step);
                Ok(())
            }
            name => {
                if self.client(name).is_none() {
                    bail!("unknown directive or undeclared client {name:?}");
                }
                let step = parse_client_step(name, rest)?;
                self.push(number, line, step);
                Ok(())
            }
        }
    }

    fn push(&mut self, number: usize, text: &str, step: Step) {
        self.steps.push(Line {
            number,
            text: text.to_owned(),
            step,
        });
    }

    /// `client a1: alice@localhost/phone password=secret [no-account]`.
    fn parse_client(&mut self, rest: &str) -> anyhow::Result<()> {
        let (name, rest) = rest
            .split_once(':')
            .ok_or_else(|| anyhow!("expected `client <name>: <jid> [password=...]`"))?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("client names are letters, digits and `_`, got {name:?}");
        }
        if matches!(name, "connect" | "client") {
            bail!("{name:?} cannot be a client name");
        }
        if self.client(name).is_some() {
            bail!("client {name} declared twice");
        }
        let mut words = rest.split_whitespace();
        let jid = words
            .next()
            .ok_or_else(|| anyhow!("client {name}: missing JID"))?;
        let (bare, resource) = match jid.split_once('/') {
            Some((bare, resource)) => (bare, Some(resource.to_owned())),
            None => (jid, None),
        };
        let (localpart, domain) = bare
            .split_once('@')
            .ok_or_else(|| anyhow!("client {name}: {jid:?} has no localpart"))?;
        let mut password = None;
        let mut has_account = true;
        for word in words {
            if let Some(value) = word.strip_prefix("password=") {
                password = Some(value.to_owned());
            } else if word == "no-account" {
                has_account = false;
            } else {
                bail!("client {name}: unknown setting {word:?}");
            }
        }
        let password = password.unwrap_or_else(|| format!("{localpart}-password"));
        if let Some(other) = self
            .clients
            .iter()
            .find(|other| other.localpart == localpart && other.has_account && has_account)
            && other.password != password
        {
            bail!(
                "client {name}: account {localpart} already declared by {} with another password",
                other.name
            );
        }
        self.clients.push(ClientDecl {
            name: name.to_owned(),
            localpart: localpart.to_owned(),
            domain: domain.to_owned(),
            resource,
            password,
            has_account,
        });
        Ok(())
    }

    /// `connect a1 [raw|opened|tls|authenticated|bound] [direct-tls] [no-tls] [sasl=MECH]`.
    fn parse_connect(&self, rest: &str) -> anyhow::Result<Step> {
        let mut words = rest.split_whitespace();
        let client = words
            .next()
            .ok_or_else(|| anyhow!("`connect` needs a client"))?;
        if self.client(client).is_none() {
            bail!("undeclared client {client:?}");
        }
        let mut stage = ConnectStage::Bound;
        let mut is_direct_tls = false;
        let mut is_without_tls = false;
        let mut mechanism = Mechanism::Scram(ScramMech::Sha256);
        for word in words {
            match word {
                "raw" => stage = ConnectStage::Raw,
                "opened" => stage = ConnectStage::Opened,
                "tls" => stage = ConnectStage::Tls,
                "authenticated" => stage = ConnectStage::Authenticated,
                "bound" => stage = ConnectStage::Bound,
                "direct-tls" => is_direct_tls = true,
                "no-tls" => is_without_tls = true,
                _ => match word.strip_prefix("sasl=") {
                    Some(name) => mechanism = parse_mechanism(name)?,
                    None => bail!("connect: unknown word {word:?}"),
                },
            }
        }
        if is_direct_tls && is_without_tls {
            bail!("connect: `direct-tls` and `no-tls` exclude each other");
        }
        if is_without_tls && stage == ConnectStage::Tls {
            bail!("connect: stage `tls` with `no-tls`");
        }
        Ok(Step::Connect {
            client: client.to_owned(),
            stage,
            is_direct_tls,
            is_without_tls,
            mechanism,
        })
    }

    fn check_complete(&self) -> anyhow::Result<()> {
        let path = self.path.display();
        if self.requirement.is_empty() {
            bail!("{path}: a scenario must open with `#` lines naming the requirement it checks");
        }
        if self.tags.is_empty() {
            bail!("{path}: missing `tags:` (what the scenario proves, e.g. rfc6120:7.7.2.1)");
        }
        if self.steps.is_empty() {
            bail!("{path}: no steps");
        }
        Ok(())
    }
}

/// The scenario name: `path` relative to `root`, without the extension, `/`-separated.
pub fn scenario_name(path: &Path, root: &Path) -> String {
    let relative = path.strip_prefix(root).unwrap_or(path).with_extension("");
    relative
        .components()
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Parses the part of a step line after the client name.
fn parse_client_step(client: &str, rest: &str) -> anyhow::Result<Step> {
    let client = client.to_owned();
    let (verb, value) = split_word(rest);
    let no_value = |step: Step| {
        if value.is_empty() {
            Ok(step)
        } else {
            bail!("`{verb}` takes no value")
        }
    };
    match verb {
        "->" => {
            if value.is_empty() {
                bail!("`->` needs text to send");
            }
            Ok(Step::Send {
                client,
                text: value.to_owned(),
            })
        }
        "<-" => Ok(Step::Expect {
            client,
            expectation: parse_expectation(value)?,
        }),
        "send-hex" => Ok(Step::SendHex {
            client,
            bytes: parse_hex(value)?,
        }),
        "features" => {
            check_xml(value)?;
            Ok(Step::Features {
                client,
                xml: value.to_owned(),
            })
        }
        "keepalive" => no_value(Step::Keepalive { client }),
        "restart" => no_value(Step::Restart { client }),
        "closed" => no_value(Step::Closed { client }),
        "disconnected" => no_value(Step::Disconnected { client }),
        "disconnect" => no_value(Step::Disconnect { client }),
        "drop" => no_value(Step::Drop { client }),
        other => bail!("unknown step {other:?} for client {client}"),
    }
}

fn parse_expectation(value: &str) -> anyhow::Result<Expectation> {
    let (word, rest) = split_word(value);
    match word {
        "stream-error" => {
            if rest.is_empty() || rest.contains(char::is_whitespace) {
                bail!("expected `<- stream-error <condition>`");
            }
            Ok(Expectation::StreamError(rest.to_owned()))
        }
        "nothing" => {
            if rest.is_empty() {
                return Ok(Expectation::Nothing(DEFAULT_QUIET));
            }
            let duration = rest
                .strip_prefix("for ")
                .ok_or_else(|| anyhow!("expected `<- nothing` or `<- nothing for <duration>`"))?;
            Ok(Expectation::Nothing(parse_duration(duration)?))
        }
        "header" => {
            check_xml(rest)?;
            Ok(Expectation::Header(rest.to_owned()))
        }
        _ if value.starts_with('<') => {
            check_xml(value)?;
            Ok(Expectation::Element(value.to_owned()))
        }
        _ => bail!(
            "`<-` takes XML, `stream-error <condition>`, `header <xml>` or `nothing [for <duration>]`"
        ),
    }
}

fn parse_mechanism(name: &str) -> anyhow::Result<Mechanism> {
    Ok(match name {
        "PLAIN" => Mechanism::Plain,
        "SCRAM-SHA-1" => Mechanism::Scram(ScramMech::Sha1),
        "SCRAM-SHA-256" => Mechanism::Scram(ScramMech::Sha256),
        "SCRAM-SHA-1-PLUS" => Mechanism::Scram(ScramMech::Sha1Plus),
        "SCRAM-SHA-256-PLUS" => Mechanism::Scram(ScramMech::Sha256Plus),
        other => bail!("unknown SASL mechanism {other:?}"),
    })
}

/// Tags name an RFC or XEP, optionally a section: `rfc6120:7.7.2.1`, `xep0199`, `xep0030:3.1`.
fn check_tag(tag: &str) -> anyhow::Result<()> {
    let (spec, section) = match tag.split_once(':') {
        Some((spec, section)) => (spec, Some(section)),
        None => (tag, None),
    };
    let is_spec = spec
        .strip_prefix("rfc")
        .is_some_and(|digits| !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()))
        || spec
            .strip_prefix("xep")
            .is_some_and(|digits| digits.len() == 4 && digits.chars().all(|c| c.is_ascii_digit()));
    let is_section = section.is_none_or(|section| {
        !section.is_empty()
            && section
                .split('.')
                .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()))
    });
    if is_spec && is_section {
        Ok(())
    } else {
        bail!("bad tag {tag:?}: expected rfcNNNN[:section] or xepNNNN[:section]")
    }
}

/// Checks that expectation XML is one well-formed element in a client stream.
fn check_xml(xml: &str) -> anyhow::Result<()> {
    parse_stream_child(xml)
        .map(|_| ())
        .map_err(|error| anyhow!("{error}"))
}

/// `300ms`, `2s`.
pub(crate) fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let parsed = if let Some(ms) = text.strip_suffix("ms") {
        ms.parse().ok().map(Duration::from_millis)
    } else if let Some(s) = text.strip_suffix('s') {
        s.parse().ok().map(Duration::from_secs)
    } else {
        None
    };
    parsed.ok_or_else(|| anyhow!("bad duration {text:?}: use e.g. 300ms or 2s"))
}

fn parse_hex(value: &str) -> anyhow::Result<Vec<u8>> {
    let digits: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        bail!("send-hex needs an even number of hex digits, got {digits:?}");
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&digits[i..i + 2], 16)
                .map_err(|_| anyhow!("bad hex byte {:?}", &digits[i..i + 2]))
        })
        .collect()
}

/// The first whitespace-separated word and the trimmed rest.
fn split_word(line: &str) -> (&str, &str) {
    let line = line.trim();
    match line.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (line, ""),
    }
}

/// Non-blank lines with their numbers; indented lines continue the previous line. Between a
/// `>` and a `<` nothing is inserted when joining, otherwise a single space.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut lines: Vec<(usize, String)> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let raw = raw.trim_end_matches('\r');
        if raw.trim().is_empty() {
            continue;
        }
        let is_continuation = raw.starts_with([' ', '\t']);
        match lines.last_mut() {
            Some((_, previous)) if is_continuation && !previous.starts_with('#') => {
                let piece = raw.trim();
                if !(previous.ends_with('>') && piece.starts_with('<')) {
                    previous.push(' ');
                }
                previous.push_str(piece);
            }
            _ => lines.push((index + 1, raw.trim().to_owned())),
        }
    }
    lines
}

/// Counts of clients per account, for the runner: localpart → password.
pub(crate) fn accounts(scenario: &Scenario) -> BTreeMap<String, String> {
    scenario
        .clients
        .iter()
        .filter(|client| client.has_account)
        .map(|client| (client.localpart.clone(), client.password.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario, String> {
        Scenario::parse(Path::new("t.scenario"), "t", text).map_err(|error| format!("{error:#}"))
    }

    const HEAD: &str =
        "# RFC 6120 §7.7.2.1: r\ntags: rfc6120:7.7.2.1\nclient a1: alice@localhost\n";

    fn steps(body: &str) -> Result<Vec<(usize, Step)>, String> {
        parse(&format!("{HEAD}{body}")).map(|scenario| {
            scenario
                .steps
                .into_iter()
                .map(|line| (line.number, line.step))
                .collect()
        })
    }

    #[test]
    fn full_scenario_parses() {
        let scenario = parse(
            "# RFC 6120 §7.7.2.2: binding a resource already in use\n\
             # (policy: kick-old)\n\
             tags: rfc6120:7.7.2.2 xep0199\n\
             option: max_auth_failures=5\n\
             timeout: 2s\n\
             client a1: alice@localhost/phone password=secret\n\
             client b1: bob@localhost\n\
             client x: nobody@localhost no-account\n\
             \n\
             connect a1\n\
             connect b1 tls direct-tls\n\
             # a comment between steps\n\
             a1 -> <message to='bob@localhost'><body>hi</body></message>\n\
             b1 <- <message from='alice@localhost/phone'>\n\
             \x20     <body>hi</body>\n\
             \x20   </message>\n\
             b1 <- nothing for 250ms\n\
             a1 <- stream-error conflict\n\
             a1 closed\n",
        )
        .expect("parses");
        assert_eq!(
            scenario.requirement,
            "RFC 6120 §7.7.2.2: binding a resource already in use (policy: kick-old)"
        );
        assert_eq!(scenario.tags, ["rfc6120:7.7.2.2", "xep0199"]);
        assert_eq!(scenario.options.max_auth_failures, 5);
        assert_eq!(scenario.step_timeout, Duration::from_secs(2));
        assert_eq!(
            scenario.clients[0],
            ClientDecl {
                name: "a1".to_owned(),
                localpart: "alice".to_owned(),
                domain: "localhost".to_owned(),
                resource: Some("phone".to_owned()),
                password: "secret".to_owned(),
                has_account: true,
            }
        );
        assert_eq!(scenario.clients[1].password, "bob-password");
        assert_eq!(scenario.clients[1].resource, None);
        assert!(!scenario.clients[2].has_account);
        let steps: Vec<(usize, Step)> = scenario
            .steps
            .into_iter()
            .map(|line| (line.number, line.step))
            .collect();
        let a1 = || "a1".to_owned();
        let b1 = || "b1".to_owned();
        assert_eq!(
            steps,
            [
                (
                    10,
                    Step::Connect {
                        client: a1(),
                        stage: ConnectStage::Bound,
                        is_direct_tls: false,
                        is_without_tls: false,
                        mechanism: Mechanism::Scram(ScramMech::Sha256),
                    }
                ),
                (
                    11,
                    Step::Connect {
                        client: b1(),
                        stage: ConnectStage::Tls,
                        is_direct_tls: true,
                        is_without_tls: false,
                        mechanism: Mechanism::Scram(ScramMech::Sha256),
                    }
                ),
                (
                    13,
                    Step::Send {
                        client: a1(),
                        text: "<message to='bob@localhost'><body>hi</body></message>".to_owned()
                    }
                ),
                (
                    14,
                    Step::Expect {
                        client: b1(),
                        expectation: Expectation::Element(
                            "<message from='alice@localhost/phone'><body>hi</body></message>"
                                .to_owned()
                        )
                    }
                ),
                (
                    17,
                    Step::Expect {
                        client: b1(),
                        expectation: Expectation::Nothing(Duration::from_millis(250))
                    }
                ),
                (
                    18,
                    Step::Expect {
                        client: a1(),
                        expectation: Expectation::StreamError("conflict".to_owned())
                    }
                ),
                (19, Step::Closed { client: a1() }),
            ]
        );
    }

    #[test]
    fn connect_words_and_mechanisms() {
        assert_eq!(
            steps("connect a1 authenticated no-tls sasl=PLAIN\n"),
            Ok(vec![(
                4,
                Step::Connect {
                    client: "a1".to_owned(),
                    stage: ConnectStage::Authenticated,
                    is_direct_tls: false,
                    is_without_tls: true,
                    mechanism: Mechanism::Plain,
                }
            )])
        );
        assert_eq!(
            steps("connect a1 sasl=SCRAM-SHA-1-PLUS raw\n").map(|s| s[0].1.clone()),
            Ok(Step::Connect {
                client: "a1".to_owned(),
                stage: ConnectStage::Raw,
                is_direct_tls: false,
                is_without_tls: false,
                mechanism: Mechanism::Scram(ScramMech::Sha1Plus),
            })
        );
        assert_eq!(
            steps("connect a1 sasl=DIGEST-MD5\n"),
            Err("t.scenario:4: unknown SASL mechanism \"DIGEST-MD5\"".to_owned())
        );
        assert_eq!(
            steps("connect a1 direct-tls no-tls\n"),
            Err("t.scenario:4: connect: `direct-tls` and `no-tls` exclude each other".to_owned())
        );
    }

    #[test]
    fn client_steps() {
        assert_eq!(
            steps(
                "a1 send-hex 3c 61 ff\na1 keepalive\na1 <- nothing\na1 <- header <stream:stream version='1.0'/>\n\
                 a1 features <stream:features/>\na1 restart\na1 disconnected\na1 disconnect\na1 drop\n"
            )
            .map(|steps| steps.into_iter().map(|(_, step)| step).collect::<Vec<_>>()),
            Ok(vec![
                Step::SendHex {
                    client: "a1".to_owned(),
                    bytes: vec![0x3c, 0x61, 0xff]
                },
                Step::Keepalive {
                    client: "a1".to_owned()
                },
                Step::Expect {
                    client: "a1".to_owned(),
                    expectation: Expectation::Nothing(DEFAULT_QUIET)
                },
                Step::Expect {
                    client: "a1".to_owned(),
                    expectation: Expectation::Header("<stream:stream version='1.0'/>".to_owned())
                },
                Step::Features {
                    client: "a1".to_owned(),
                    xml: "<stream:features/>".to_owned()
                },
                Step::Restart {
                    client: "a1".to_owned()
                },
                Step::Disconnected {
                    client: "a1".to_owned()
                },
                Step::Disconnect {
                    client: "a1".to_owned()
                },
                Step::Drop {
                    client: "a1".to_owned()
                },
            ])
        );
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(
            steps("b1 -> <presence/>\n"),
            Err("t.scenario:4: unknown directive or undeclared client \"b1\"".to_owned())
        );
        assert_eq!(
            steps("a1 <- <a><b></a>\n")
                .map_err(|e| e.starts_with("t.scenario:4: peer sent malformed XML")),
            Err(true)
        );
        assert_eq!(
            steps("a1 <- maybe\n"),
            Err("t.scenario:4: `<-` takes XML, `stream-error <condition>`, `header <xml>` or `nothing [for <duration>]`".to_owned())
        );
        assert_eq!(
            steps("a1 <- nothing for ever\n"),
            Err("t.scenario:4: bad duration \"ever\": use e.g. 300ms or 2s".to_owned())
        );
        assert_eq!(
            steps("a1 closed now\n"),
            Err("t.scenario:4: `closed` takes no value".to_owned())
        );
        assert_eq!(
            steps("a1 dance\n"),
            Err("t.scenario:4: unknown step \"dance\" for client a1".to_owned())
        );
        assert_eq!(
            steps("connect a1\ntags: xep0030\n"),
            Err("t.scenario:5: `tags:` must come before the first step".to_owned())
        );
        assert_eq!(
            parse("# r\ntags: rfc6120:7.a\n"),
            Err("t.scenario:2: bad tag \"rfc6120:7.a\": expected rfcNNNN[:section] or xepNNNN[:section]".to_owned())
        );
        assert_eq!(
            parse(
                "# r\ntags: rfc6120\nclient a: alice@localhost password=x\nclient b: alice@localhost password=y\n"
            ),
            Err(
                "t.scenario:4: client b: account alice already declared by a with another password"
                    .to_owned()
            )
        );
    }

    #[test]
    fn scenarios_need_a_requirement_tags_and_steps() {
        assert_eq!(
            parse("tags: rfc6120\nclient a1: alice@localhost\nconnect a1\n"),
            Err(
                "t.scenario: a scenario must open with `#` lines naming the requirement it checks"
                    .to_owned()
            )
        );
        assert_eq!(
            parse("# r\nclient a1: alice@localhost\nconnect a1\n"),
            Err(
                "t.scenario: missing `tags:` (what the scenario proves, e.g. rfc6120:7.7.2.1)"
                    .to_owned()
            )
        );
        assert_eq!(
            parse("# r\ntags: rfc6120\n"),
            Err("t.scenario: no steps".to_owned())
        );
    }

    #[test]
    fn names_are_relative_paths_without_extension() {
        assert_eq!(
            scenario_name(
                Path::new("/x/scenarios/rfc6120/bind/empty.scenario"),
                Path::new("/x/scenarios")
            ),
            "rfc6120/bind/empty"
        );
    }

    #[test]
    fn shipped_scenarios_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests");
        for dir in ["scenarios", "scenarios-pending"] {
            let dir = root.join(dir);
            let files = super::super::scenario_files(&dir).expect("the directory is readable");
            if dir.ends_with("scenarios") {
                assert!(!files.is_empty(), "no scenarios in {}", dir.display());
            }
            for file in files {
                Scenario::load(&file, &dir).unwrap_or_else(|error| panic!("{error:#}"));
            }
        }
    }
}
