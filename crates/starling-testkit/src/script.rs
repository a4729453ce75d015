//! Running the interop scripts (`tests/interop/*.py`) and other programs a test drives: with a
//! deadline, their output collected whatever happens, and the venv's Python from
//! `STARLING_PYTHON`, which `cargo xtask test` sets.

use std::ffi::OsString;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::process::Command;
use tokio::task::JoinHandle;

/// What a program did.
#[derive(Debug)]
pub struct ScriptRun {
    /// `None` when it outlived its deadline and was killed.
    pub status: Option<ExitStatus>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl ScriptRun {
    /// True when it exited with status 0.
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|status| status.success())
    }

    /// The exit status and both outputs, for a failure message.
    pub fn describe(&self) -> String {
        let status = match self.status {
            Some(status) => status.to_string(),
            None => "killed at its deadline".to_owned(),
        };
        format!(
            "{status}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// The interop venv's Python. Checked first by every interop test: without the venv it must
/// fail, never pass vacuously.
pub fn python() -> anyhow::Result<OsString> {
    std::env::var_os("STARLING_PYTHON").context(
        "STARLING_PYTHON is not set: run through `cargo xtask test`, which sets up the interop venv",
    )
}

/// Runs `command` with no standard input, killing it after `timeout`; output is kept either
/// way.
pub async fn run_with_timeout(
    mut command: Command,
    timeout: Duration,
) -> anyhow::Result<ScriptRun> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().context("spawning the script")?;
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => Some(status.context("waiting for the script")?),
        Err(_elapsed) => {
            child.kill().await.context("killing the timed-out script")?;
            None
        }
    };
    Ok(ScriptRun {
        status,
        stdout: stdout.await.context("reading the script's stdout")?,
        stderr: stderr.await.context("reading the script's stderr")?,
    })
}

/// Reads a pipe to its end on a separate task, so a chatty program never blocks on it.
fn collect(pipe: Option<impl AsyncRead + Unpin + Send + 'static>) -> JoinHandle<String> {
    tokio::spawn(async move {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            // A read error only truncates the diagnostics; the exit status decides.
            let _ = pipe.read_to_end(&mut bytes).await;
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}
