//! `cargo xtask`: Starling's build and test driver (STYLE.md §8).
//!
//! An ordinary workspace binary behind a cargo alias, so it needs nothing but cargo and,
//! for the interop tests, `python3`. CI runs `cargo xtask test` and nothing else, so a
//! laptop and CI run the same steps in the same order.
//!
//! Each step runs a command with inherited stdio, prints a banner and its elapsed time,
//! and the first failing step stops the run with a non-zero exit.

mod bench;
mod compliance;
mod fuzz;
mod postgres;
mod steps;
mod tidy;
mod venv;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::steps::{Plan, Run, cargo};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Starling's build and test driver"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything CI runs: fmt check, clippy, tidy, build, interop venv, Debian's prosody
    /// package, a throwaway PostgreSQL, all tests, doctests.
    Test {
        /// Only fmt check, clippy and unit tests (every commit must pass this).
        #[arg(long)]
        quick: bool,
    },
    /// fmt check, clippy with warnings denied, and the tidy checks.
    Lint,
    /// Build, run the conformance scenarios, then print and write `docs/compliance.md` and
    /// the feature table in `README.md`.
    Compliance {
        /// Run nothing: re-render both from the results recorded in `docs/compliance.md`.
        #[arg(long)]
        no_run: bool,
    },
    /// Start a throwaway PostgreSQL, run COMMAND with STARLING_TEST_POSTGRES_URL set, stop it.
    ///
    /// For example: `cargo xtask with-postgres cargo test -p starling-storage --test postgres`.
    WithPostgres {
        /// The program and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Build release binaries and run `starling-loadgen` (logins, messages, idle memory)
    /// against Starling and optional peers; writes `bench/results/<date>.{json,md}`.
    Bench {
        /// A small bounded run (under 2 minutes); results go to the target directory.
        #[arg(long)]
        quick: bool,
        /// Also run the suite against this server (Debian package; repeatable).
        #[arg(long, value_enum)]
        peer: Vec<bench::Peer>,
        /// Record a `perf` profile of Starling during a messages run.
        #[arg(long)]
        profile: bool,
    },
    /// Build the cargo-fuzz targets in `fuzz/` and run each for a bounded time; crashing
    /// inputs are copied into `fuzz/regressions/<target>/`, which the tests replay.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Run only this target (default: all of them).
        #[arg(long)]
        target: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = workspace_root();
    let mut plan = Plan::new();
    match cli.command {
        Command::Test { quick: true } => {
            add_lints(&mut plan, &root, false);
            plan.step("unit tests", |_| {
                cargo(&root)
                    .args(["test", "--workspace", "--exclude", "starling-conformance"])
                    .args(["--lib", "--bins"])
                    .run()
            });
        }
        Command::Test { quick: false } => add_full_test(&mut plan, &root),
        Command::Lint => add_lints(&mut plan, &root, true),
        Command::Compliance { no_run: false } => add_compliance(&mut plan, &root),
        Command::Compliance { no_run: true } => {
            plan.step(
                "docs/compliance.md and README.md (recorded results)",
                |_| compliance::write_from_docs(&root).map(drop),
            );
        }
        Command::WithPostgres { command } => add_with_postgres(&mut plan, &root, command),
        Command::Fuzz { seconds, target } => fuzz::add(&mut plan, &root, seconds, target),
        Command::Bench {
            quick,
            mut peer,
            profile,
        } => {
            peer.sort();
            peer.dedup();
            let options = bench::Options {
                quick,
                peers: peer,
                profile,
                debug: false,
            };
            plan.step("bench", move |_| bench::run(&root, &options));
        }
    }
    plan.run()
}

/// fmt check and clippy; with `tidy`, the source and ARCHITECTURE.md checks too.
fn add_lints<'a>(plan: &mut Plan<'a>, root: &'a Path, tidy: bool) {
    plan.step("cargo fmt --check", |_| {
        cargo(root).args(["fmt", "--all", "--", "--check"]).run()
    });
    plan.step("cargo clippy -D warnings", |_| {
        cargo(root)
            .args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])
            .run()
    });
    if tidy {
        plan.step("tidy", |_| tidy::check(root));
    }
}

fn add_full_test<'a>(plan: &mut Plan<'a>, root: &'a Path) {
    add_lints(plan, root, true);
    add_build(plan, root);
    plan.step("interop venv (slixmpp, aioxmpp)", |state| {
        let target_dir = state.require_target_dir()?;
        let python = venv::ensure(root, &target_dir.join("xtask").join("venv"))?;
        eprintln!("    interop python: {}", python.display());
        state.python = Some(python);
        Ok(())
    });
    plan.step("prosody (Debian package, for the migration tests)", |_| {
        // tests/tests/prosody_migration.rs starts its own Prosody and reads the package's
        // /etc/prosody/prosody.cfg.lua.
        bench::ensure_package("prosody", "prosody")?;
        bench::ensure_package("prosodyctl", "prosody")
    });
    add_start_postgres(plan);
    plan.step("tests", |state| {
        let starling_bin = state.require_starling_bin()?;
        let python = state.require_python()?;
        let postgres_url = state.require_postgres_url()?;
        let mut command = cargo(root);
        if steps::has_nextest(root) {
            command.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
        } else {
            eprintln!("    cargo-nextest not found, falling back to `cargo test`");
            // --tests leaves doctests to their own step, as under nextest.
            command.args(["test", "--workspace", "--no-fail-fast", "--tests"]);
        }
        command
            .env("STARLING_BIN", starling_bin)
            .env("STARLING_PYTHON", python)
            .env(postgres::URL_VARIABLE, postgres_url)
            .env(postgres::CA_VARIABLE, state.require_postgres_ca()?)
            .run()
    });
    add_stop_postgres(plan);
    plan.step("bench --quick (smoke: no errors, no lost messages)", |_| {
        let options = bench::Options {
            quick: true,
            peers: Vec::new(),
            profile: false,
            debug: true,
        };
        bench::run(root, &options)
    });
    plan.step("doctests", |_| {
        cargo(root).args(["test", "--workspace", "--doc"]).run()
    });
}

/// Starts PostgreSQL and records it for later steps.
fn add_start_postgres(plan: &mut Plan<'_>) {
    plan.step("start PostgreSQL (throwaway)", |state| {
        let server = postgres::TestPostgres::start()?;
        eprintln!("    {}", server.version);
        eprintln!("    {}={}", postgres::URL_VARIABLE, server.url);
        eprintln!("    {}={}", postgres::CA_VARIABLE, server.ca_file.display());
        state.postgres = Some(server);
        Ok(())
    });
}

/// Stops PostgreSQL. A failing step before this stops it too, when `State` drops the guard.
fn add_stop_postgres(plan: &mut Plan<'_>) {
    plan.step("stop PostgreSQL", |state| {
        drop(state.postgres.take());
        Ok(())
    });
}

fn add_with_postgres<'a>(plan: &mut Plan<'a>, root: &'a Path, command: Vec<String>) {
    add_start_postgres(plan);
    plan.step("command", move |state| {
        let url = state.require_postgres_url()?;
        let (program, args) = command.split_first().context("no command given")?;
        std::process::Command::new(program)
            .args(args)
            .current_dir(root)
            .env(postgres::URL_VARIABLE, url)
            .env(postgres::CA_VARIABLE, state.require_postgres_ca()?)
            .run()
    });
    add_stop_postgres(plan);
}

/// Builds the server and runs the scenarios with results recorded, then writes the table.
/// A failing scenario does not stop the table from being written; the run still fails after.
fn add_compliance<'a>(plan: &mut Plan<'a>, root: &'a Path) {
    add_build(plan, root);
    plan.step("scenarios (results recorded)", |state| {
        let starling_bin = state.require_starling_bin()?;
        let results = state
            .require_target_dir()?
            .join("xtask")
            .join("scenario-results.tsv");
        if let Some(parent) = results.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // A stale file must never stand in for this run's results.
        let _ = std::fs::remove_file(&results);
        let outcome = cargo(root)
            .args([
                "test",
                "--package",
                "starling-conformance",
                "--test",
                "scenarios",
            ])
            .env("STARLING_BIN", starling_bin)
            .env("STARLING_SCENARIO_RESULTS", &results)
            .run();
        if let Err(error) = outcome {
            eprintln!("    some scenarios failed; the table will show which");
            state.deferred_failure = Some(format!("{error:#}"));
        }
        state.scenario_results = Some(results);
        Ok(())
    });
    plan.step("docs/compliance.md and README.md", |state| {
        let results = state.require_scenario_results()?;
        let markdown = compliance::write(root, results)?;
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(markdown.as_bytes())?;
        stdout.flush()?;
        match state.deferred_failure.take() {
            Some(failure) => anyhow::bail!("the table was written, but {failure}"),
            None => Ok(()),
        }
    });
}

/// Builds the debug `starling` binary and records where it and the target directory are.
fn add_build<'a>(plan: &mut Plan<'a>, root: &'a Path) {
    plan.step("build starling (debug)", |state| {
        cargo(root)
            .args(["build", "--package", "starling-server", "--bin", "starling"])
            .run()?;
        let target_dir = steps::target_directory(root)?;
        let binary = target_dir
            .join("debug")
            .join(format!("starling{}", std::env::consts::EXE_SUFFIX));
        anyhow::ensure!(
            binary.is_file(),
            "cargo built starling but {} does not exist",
            binary.display()
        );
        eprintln!("    starling binary: {}", binary.display());
        state.target_dir = Some(target_dir);
        state.starling_bin = Some(binary);
        Ok(())
    });
}

/// The workspace root: xtask lives one level below it.
fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Invariant: CARGO_MANIFEST_DIR is <root>/xtask, which always has a parent.
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest_dir.to_path_buf())
}
