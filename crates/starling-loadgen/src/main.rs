//! `starling-loadgen`: parse arguments, run one workload, print a table and write JSON.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use starling_loadgen::client::{Mech, Target};
use starling_loadgen::measure::ServerProcess;
use starling_loadgen::modes::{self, Common};
use starling_loadgen::report::{self, Summary};

#[derive(Parser)]
#[command(
    name = "starling-loadgen",
    about = "XMPP load generator: logins, messages and idle sessions against a loopback server"
)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Args)]
struct CommonArgs {
    /// The server's plaintext c2s address (loopback only).
    #[arg(long, global = true, default_value = "127.0.0.1:5222")]
    addr: SocketAddr,
    /// The XMPP domain.
    #[arg(long, global = true, default_value = "localhost")]
    domain: String,
    /// Authenticate without STARTTLS (the server must allow it).
    #[arg(long, global = true)]
    no_starttls: bool,
    /// SASL mechanism.
    #[arg(long, global = true, value_enum, default_value = "SCRAM-SHA-256")]
    mech: Mech,
    /// Accounts are PREFIX0 .. PREFIX<accounts-1>.
    #[arg(long, global = true, default_value = "bench")]
    prefix: String,
    /// How many accounts exist on the server.
    #[arg(long, global = true, default_value_t = 100)]
    accounts: usize,
    /// File holding the one password of every account (trailing newline ignored).
    #[arg(long, global = true)]
    password_file: Option<PathBuf>,
    /// Logins in flight at once.
    #[arg(long, global = true, default_value_t = 50)]
    concurrency: usize,
    /// Seconds one login or close may take.
    #[arg(long, global = true, default_value_t = 30)]
    op_timeout_secs: u64,
    /// Seconds the whole run may take.
    #[arg(long, global = true, default_value_t = 300)]
    time_limit_secs: u64,
    /// The server's pid, for CPU time and memory from /proc.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// Write the JSON report here (otherwise it goes to stdout after the table).
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// Runtime threads; 1 (the default) runs everything on the current thread.
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
}

#[derive(Subcommand)]
enum Mode {
    /// N complete logins with C in flight.
    Login {
        #[arg(long, default_value_t = 1000)]
        count: usize,
    },
    /// K pairs exchanging M messages each, at most W unacknowledged per pair.
    Messages {
        #[arg(long, default_value_t = 10)]
        pairs: usize,
        #[arg(long, default_value_t = 1000)]
        per_pair: usize,
        #[arg(long, default_value_t = 1)]
        window: usize,
        /// Seconds receivers wait for stragglers after the last send.
        #[arg(long, default_value_t = 5)]
        drain_secs: u64,
    },
    /// Hold sessions open, in ascending steps, and read the server's memory at each.
    Idle {
        /// Comma-separated session counts.
        #[arg(long, value_delimiter = ',', default_value = "1000")]
        sessions: Vec<usize>,
        /// Seconds to wait after each step before reading memory.
        #[arg(long, default_value_t = 3)]
        settle_secs: u64,
        /// Enable XEP-0198 stream management with resumption on every session.
        #[arg(long)]
        stream_management: bool,
        /// After the last step, cut every connection without closing its stream (the
        /// server keeps resumable sessions hibernating) and read memory once more.
        #[arg(long, requires = "stream_management")]
        hibernate: bool,
    },
}

/// The report plus its flat summary.
#[derive(Serialize)]
struct Output<R: Serialize> {
    #[serde(flatten)]
    report: R,
    summary: Summary,
}

fn main() -> ExitCode {
    match run() {
        Ok(clean) => {
            if clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(err) => {
            eprintln!("starling-loadgen: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the workload; `Ok(false)` when it completed with errors or lost messages.
fn run() -> anyhow::Result<bool> {
    let cli = Cli::parse();
    let args = &cli.common;
    let password = match &args.password_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim_end_matches(['\n', '\r'])
            .to_owned(),
        None => "bench-password".to_owned(),
    };
    let common = Common {
        target: Target::new(args.addr, &args.domain, !args.no_starttls)?,
        mech: args.mech,
        prefix: args.prefix.clone(),
        accounts: args.accounts,
        password,
        concurrency: args.concurrency,
        op_timeout: Duration::from_secs(args.op_timeout_secs),
        time_limit: Duration::from_secs(args.time_limit_secs),
        server: args.server_pid.map(ServerProcess::new).transpose()?,
    };
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    let (table, json, summary) = runtime.block_on(async {
        anyhow::Ok(match cli.mode {
            Mode::Login { count } => {
                let r = modes::login(&common, count).await;
                let summary = report::login_summary(&r);
                (
                    report::login_table(&r),
                    to_json(r, summary.clone())?,
                    summary,
                )
            }
            Mode::Messages {
                pairs,
                per_pair,
                window,
                drain_secs,
            } => {
                anyhow::ensure!(
                    pairs * 2 <= common.accounts,
                    "{pairs} pairs need {} accounts, only {} given",
                    pairs * 2,
                    common.accounts
                );
                let drain = Duration::from_secs(drain_secs);
                let r = modes::messages(&common, pairs, per_pair, window, drain).await;
                let summary = report::messages_summary(&r);
                (
                    report::messages_table(&r),
                    to_json(r, summary.clone())?,
                    summary,
                )
            }
            Mode::Idle {
                mut sessions,
                settle_secs,
                stream_management,
                hibernate,
            } => {
                sessions.sort_unstable();
                let options = modes::IdleOptions {
                    settle: Duration::from_secs(settle_secs),
                    stream_management,
                    hibernate,
                };
                let r = modes::idle(&common, &sessions, options).await;
                let summary = report::idle_summary(&r);
                (
                    report::idle_table(&r),
                    to_json(r, summary.clone())?,
                    summary,
                )
            }
        })
    })?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(table.as_bytes())?;
    match &args.json {
        Some(path) => {
            std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?
        }
        None => writeln!(stdout, "{json}")?,
    }
    stdout.flush()?;
    let errors = summary.get("errors").copied().unwrap_or(0.0);
    let lost = summary.get("lost").copied().unwrap_or(0.0);
    Ok(errors == 0.0 && lost == 0.0)
}

fn to_json<R: Serialize>(report: R, summary: Summary) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(&Output { report, summary })?)
}
