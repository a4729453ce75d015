//! The `starling` binary: parse arguments, run the server or an account command, and turn the
//! one error that reaches the top into an exit code.
#![allow(clippy::print_stdout)]

mod accounts;
mod config;
mod connection;
mod ids;
mod limits;
mod server;
mod tls;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::accounts::PasswordSource;
use crate::config::Config;

/// Starling, an XMPP server.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file; without it, `./starling.toml` is used if present, else the defaults
    /// (serve localhost on 127.0.0.1:5222 and :5223, data in ./starling-data).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Create an account, e.g. `starling adduser alice@localhost`.
    Adduser {
        /// The account's bare JID.
        jid: String,
        /// Read the password from the first line of this file (`-` for standard input)
        /// instead of prompting.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Change an account's password.
    Passwd {
        /// The account's bare JID.
        jid: String,
        /// Read the password from the first line of this file (`-` for standard input).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Delete an account.
    Deluser {
        /// The account's bare JID.
        jid: String,
    },
    /// List the accounts of a host (default: every configured host).
    ListUsers {
        /// Only this host.
        host: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("starling: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config_path = cli.config.or_else(|| {
        let default = PathBuf::from("starling.toml");
        default.exists().then_some(default)
    });
    let config = Config::load(config_path.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                first_start_hint(&config).await;
                server::run(config, config_path).await
            }
            Command::Adduser { jid, password_file } => {
                let source = password_source(password_file.as_deref());
                println!("{}", accounts::add_user(&config, &jid, source).await?);
                Ok(())
            }
            Command::Passwd { jid, password_file } => {
                let source = password_source(password_file.as_deref());
                println!("{}", accounts::set_password(&config, &jid, source).await?);
                Ok(())
            }
            Command::Deluser { jid } => {
                println!("{}", accounts::delete_user(&config, &jid).await?);
                Ok(())
            }
            Command::ListUsers { host } => {
                for line in accounts::list_users(&config, host.as_deref()).await? {
                    println!("{line}");
                }
                Ok(())
            }
        }
    })
}

fn password_source(path: Option<&std::path::Path>) -> PasswordSource<'_> {
    match path {
        Some(path) => PasswordSource::File(path),
        None => PasswordSource::Interactive,
    }
}

/// On a server with no accounts yet, say how to make the first one.
async fn first_start_hint(config: &Config) {
    let Ok(users) = accounts::list_users(config, None).await else {
        return;
    };
    if users.is_empty() {
        let host = config
            .hosts
            .first()
            .map(String::as_str)
            .unwrap_or("localhost");
        println!("no accounts yet; add the first one with:");
        println!("    cargo run --release -- adduser admin@{host}");
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STARLING_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
