//! `cargo xtask fuzz`: runs the cargo-fuzz targets in `fuzz/` for a bounded time each.
//!
//! cargo-fuzz needs unstable compiler flags (`-Zsanitizer`), so its commands, and only they,
//! run with `RUSTC_BOOTSTRAP=1` on the stable toolchain. A crash, leak, timeout or OOM input
//! libFuzzer writes to `fuzz/artifacts/<target>/` is copied into `fuzz/regressions/<target>/`,
//! which `crates/starling-fuzz-checks/tests/fuzz_regressions.rs` replays in every test run.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

use crate::steps::{Plan, Run as _, cargo};

/// Adds the steps: install cargo-fuzz if needed, build the targets, run each for `seconds`.
pub fn add<'a>(plan: &mut Plan<'a>, root: &'a Path, seconds: u64, target: Option<String>) {
    plan.step("cargo-fuzz", move |_| ensure_cargo_fuzz(root));
    plan.step("build fuzz targets", move |_| {
        cargo_fuzz(root).arg("build").run()
    });
    plan.step("run fuzz targets", move |_| {
        let all = list_targets(root)?;
        let targets = match target {
            Some(name) if all.contains(&name) => vec![name],
            Some(name) => bail!("no fuzz target {name:?}; the targets are {}", all.join(", ")),
            None => all,
        };
        let mut summary = Vec::new();
        let mut crashes = Vec::new();
        for target in &targets {
            let run = run_target(root, target, seconds)?;
            summary.push(format!(
                "{target}: {} executions in {seconds}s{}",
                run.executions.as_deref().unwrap_or("?"),
                if run.saved.is_empty() { "" } else { ", CRASHED" }
            ));
            crashes.extend(run.saved);
        }
        eprintln!();
        for line in &summary {
            eprintln!("    {line}");
        }
        if crashes.is_empty() {
            return Ok(());
        }
        for path in &crashes {
            eprintln!("    new regression input: {}", path.display());
        }
        bail!(
            "{} crashing input(s) saved; minimize with `RUSTC_BOOTSTRAP=1 cargo fuzz tmin <target> <file>` \
             in fuzz/, fix the bug, and keep the file: the tests replay it",
            crashes.len()
        )
    });
}

fn ensure_cargo_fuzz(root: &Path) -> anyhow::Result<()> {
    let is_installed = cargo(root)
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if is_installed {
        eprintln!("    cargo-fuzz is installed");
        return Ok(());
    }
    cargo(root)
        .args(["install", "cargo-fuzz", "--locked"])
        .run()
}

/// `cargo fuzz` in `fuzz/`, allowed the nightly flags it needs.
fn cargo_fuzz(root: &Path) -> Command {
    let mut command = cargo(root);
    command
        .current_dir(root.join("fuzz"))
        .env("RUSTC_BOOTSTRAP", "1")
        // Sanitizer builds stay in fuzz/target, away from the normal build.
        .env_remove("CARGO_TARGET_DIR")
        .arg("fuzz");
    command
}

fn list_targets(root: &Path) -> anyhow::Result<Vec<String>> {
    let output = cargo_fuzz(root)
        .arg("list")
        .stderr(Stdio::inherit())
        .output()
        .context("could not run `cargo fuzz list`")?;
    if !output.status.success() {
        bail!("`cargo fuzz list` exited with {}", output.status);
    }
    let text = String::from_utf8(output.stdout).context("`cargo fuzz list` printed non-UTF-8")?;
    let targets: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    if targets.is_empty() {
        bail!("`cargo fuzz list` found no targets");
    }
    Ok(targets)
}

struct TargetRun {
    /// libFuzzer's `stat::number_of_executed_units`.
    executions: Option<String>,
    /// Inputs copied into `fuzz/regressions/<target>/`.
    saved: Vec<PathBuf>,
}

/// Runs one target with its seeds as a second corpus; libFuzzer's output is passed through.
fn run_target(root: &Path, target: &str, seconds: u64) -> anyhow::Result<TargetRun> {
    let fuzz = root.join("fuzz");
    let corpus = fuzz.join("corpus").join(target);
    let seeds = fuzz.join("corpus-seed").join(target);
    let artifacts = fuzz.join("artifacts").join(target);
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let before = files_in(&artifacts)?;

    let mut command = cargo_fuzz(root);
    command.args(["run", target]).arg(&corpus);
    if seeds.is_dir() {
        command.arg(&seeds);
    }
    command.args([
        "--",
        &format!("-max_total_time={seconds}"),
        "-timeout=10",
        "-print_final_stats=1",
    ]);
    eprintln!("\n    fuzzing {target} for {seconds}s");
    let mut child = command
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `cargo fuzz run {target}`"))?;
    let mut executions = None;
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let line = line.context("reading libFuzzer's output")?;
            if let Some(count) = line.strip_prefix("stat::number_of_executed_units:") {
                executions = Some(count.trim().to_owned());
            }
            eprintln!("{line}");
        }
    }
    let status = child.wait().context("waiting for cargo fuzz")?;

    let mut saved = Vec::new();
    for name in files_in(&artifacts)?.difference(&before) {
        let regressions = fuzz.join("regressions").join(target);
        std::fs::create_dir_all(&regressions)
            .with_context(|| format!("creating {}", regressions.display()))?;
        let to = regressions.join(name);
        std::fs::copy(artifacts.join(name), &to)
            .with_context(|| format!("copying {name} to {}", to.display()))?;
        saved.push(to);
    }
    if !status.success() && saved.is_empty() {
        bail!("`cargo fuzz run {target}` exited with {status} and left no input");
    }
    Ok(TargetRun { executions, saved })
}

/// File names directly in `dir`; none if it does not exist.
fn files_in(dir: &Path) -> anyhow::Result<BTreeSet<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(err) => return Err(err).with_context(|| format!("listing {}", dir.display())),
    };
    let mut names = BTreeSet::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        if entry.file_type()?.is_file() {
            names.insert(entry.file_name().to_string_lossy().into_owned());
        }
    }
    Ok(names)
}
