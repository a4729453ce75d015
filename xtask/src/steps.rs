//! Steps of a run: banners, timing, stop at the first failure, and the commands they spawn.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Values one step produces for later ones (the binary path, the venv's python).
#[derive(Default)]
pub struct State {
    pub target_dir: Option<PathBuf>,
    pub starling_bin: Option<PathBuf>,
    pub python: Option<PathBuf>,
    /// The scenario results file written for `cargo xtask compliance`.
    pub scenario_results: Option<PathBuf>,
    /// A failure a step recorded without stopping the run; a later step reports it.
    pub deferred_failure: Option<String>,
    /// The throwaway PostgreSQL for the storage tests; stopped when dropped.
    pub postgres: Option<crate::postgres::TestPostgres>,
}

impl State {
    pub fn require_target_dir(&self) -> anyhow::Result<&Path> {
        self.target_dir
            .as_deref()
            .context("the build step did not record the target directory")
    }

    pub fn require_starling_bin(&self) -> anyhow::Result<&Path> {
        self.starling_bin
            .as_deref()
            .context("the build step did not record the starling binary")
    }

    pub fn require_scenario_results(&self) -> anyhow::Result<&Path> {
        self.scenario_results
            .as_deref()
            .context("the scenario step did not record its results file")
    }

    pub fn require_postgres_url(&self) -> anyhow::Result<&str> {
        self.postgres
            .as_ref()
            .map(|server| server.url.as_str())
            .context("the PostgreSQL step did not record a server")
    }

    pub fn require_postgres_ca(&self) -> anyhow::Result<&Path> {
        self.postgres
            .as_ref()
            .map(|server| server.ca_file.as_path())
            .context("the PostgreSQL step did not record a server")
    }

    pub fn require_python(&self) -> anyhow::Result<&Path> {
        self.python
            .as_deref()
            .context("the venv step did not record the interop python")
    }
}

type StepFn<'a> = Box<dyn FnOnce(&mut State) -> anyhow::Result<()> + 'a>;

/// An ordered list of named steps, run until the first failure.
pub struct Plan<'a> {
    steps: Vec<(&'static str, StepFn<'a>)>,
}

impl<'a> Plan<'a> {
    pub fn new() -> Self {
        Plan { steps: Vec::new() }
    }

    pub fn step(
        &mut self,
        name: &'static str,
        body: impl FnOnce(&mut State) -> anyhow::Result<()> + 'a,
    ) {
        self.steps.push((name, Box::new(body)));
    }

    /// Runs every step in order; the first failure ends the run with exit code 1.
    pub fn run(self) -> ExitCode {
        let total = self.steps.len();
        let started = Instant::now();
        let mut state = State::default();
        let mut timings = Vec::with_capacity(total);
        for (index, (name, body)) in self.steps.into_iter().enumerate() {
            eprintln!("\n==> [{}/{total}] {name}", index + 1);
            let step_started = Instant::now();
            let outcome = body(&mut state);
            let elapsed = step_started.elapsed();
            if let Err(err) = outcome {
                eprintln!(
                    "\nxtask: step [{}/{total}] `{name}` FAILED after {}",
                    index + 1,
                    seconds(elapsed)
                );
                eprintln!("error: {err:#}");
                return ExitCode::FAILURE;
            }
            eprintln!("<== {name}: ok in {}", seconds(elapsed));
            timings.push((name, elapsed));
        }
        eprintln!(
            "\nxtask: all {total} steps passed in {}",
            seconds(started.elapsed())
        );
        for (name, elapsed) in timings {
            eprintln!("    {:>8}  {name}", seconds(elapsed));
        }
        ExitCode::SUCCESS
    }
}

/// A `cargo` command run from the workspace root, using the cargo that ran xtask.
pub fn cargo(root: &Path) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(cargo);
    command.current_dir(root);
    command
}

/// Running a command to completion with inherited stdio, failing on a non-zero exit.
pub trait Run {
    fn run(&mut self) -> anyhow::Result<()>;
}

impl Run for Command {
    fn run(&mut self) -> anyhow::Result<()> {
        let shown = display(self);
        eprintln!("    $ {shown}");
        let status = self
            .status()
            .with_context(|| format!("could not start `{shown}`"))?;
        if !status.success() {
            bail!("`{shown}` exited with {status}");
        }
        Ok(())
    }
}

/// Whether `cargo nextest` is installed.
pub fn has_nextest(root: &Path) -> bool {
    cargo(root)
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Cargo's target directory, honouring `CARGO_TARGET_DIR` and `build.target-dir`.
pub fn target_directory(root: &Path) -> anyhow::Result<PathBuf> {
    let output = cargo(root)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .stderr(Stdio::inherit())
        .output()
        .context("could not run `cargo metadata`")?;
    if !output.status.success() {
        bail!("`cargo metadata` exited with {}", output.status);
    }
    let json = String::from_utf8(output.stdout).context("`cargo metadata` printed non-UTF-8")?;
    json_string_field(&json, "target_directory")
        .map(PathBuf::from)
        .context("`cargo metadata` output has no target_directory")
}

/// The value of the first `"key":"..."` string field in `json`, unescaped.
///
/// Good enough for cargo metadata's top-level paths, and keeps serde out of xtask.
fn json_string_field(json: &str, key: &str) -> Option<String> {
    let pattern = format!("\"{key}\":\"");
    let start = json.find(&pattern)? + pattern.len();
    let mut value = String::new();
    let mut chars = json.get(start..)?.chars();
    loop {
        match chars.next()? {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                'n' => value.push('\n'),
                't' => value.push('\t'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    value.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => value.push(other),
            },
            other => value.push(other),
        }
    }
}

/// The command line as a person would type it; the cargo that ran xtask shows as `cargo`.
fn display(command: &Command) -> String {
    let program = command.get_program();
    let mut shown = if std::env::var_os("CARGO").is_some_and(|cargo| cargo == program) {
        "cargo".to_owned()
    } else {
        program.to_string_lossy().into_owned()
    };
    for arg in command.get_args() {
        shown.push(' ');
        shown.push_str(&arg.to_string_lossy());
    }
    shown
}

fn seconds(elapsed: Duration) -> String {
    format!("{:.1}s", elapsed.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::json_string_field;

    fn check(json: &str, expected: Option<&str>) {
        assert_eq!(
            json_string_field(json, "target_directory").as_deref(),
            expected
        );
    }

    #[test]
    fn reads_plain_path() {
        check(
            r#"{"packages":[],"target_directory":"/work/target","version":1}"#,
            Some("/work/target"),
        );
    }

    #[test]
    fn unescapes_quotes_backslashes_and_unicode() {
        check(
            r#"{"target_directory":"C:\\a \"b\"\u00e9"}"#,
            Some("C:\\a \"b\"\u{e9}"),
        );
    }

    #[test]
    fn missing_field_or_unterminated_string_is_none() {
        check(r#"{"workspace_root":"/work"}"#, None);
        check(r#"{"target_directory":"/wo"#, None);
    }
}
