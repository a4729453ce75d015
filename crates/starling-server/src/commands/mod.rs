//! The operator commands of the `starling` binary: `serve` hands over to `running`; the
//! account, data and certificate commands work on the configuration and the database
//! directly; `list-sessions`, `kick` and `announce` talk to a running server over its admin
//! socket; `check-config` is `starling_config::check_config`.
#![allow(clippy::print_stdout)]

mod accounts;
mod admin;
mod cert;
mod data;

use std::path::PathBuf;

use starling_config::Config;

use self::accounts::PasswordSource;
use crate::cli::{CertCommand, Cli, Command};

/// Run what `cli` asks for. Errors reach the top as one `anyhow` error for `main`.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let config_path = cli.config.or_else(|| {
        let default = PathBuf::from("starling.toml");
        default.exists().then_some(default)
    });
    if let Some(Command::CheckConfig) = cli.command {
        let report = starling_config::check_config(config_path.as_deref());
        print!("{}", report.text);
        anyhow::ensure!(
            report.is_ok,
            "{} problem(s) in the configuration",
            report.problem_count
        );
        return Ok(());
    }
    // Reads Prosody's file, not ours: no Starling configuration is needed.
    if let Some(Command::ImportProsodyConfig {
        file,
        output,
        data_dir,
        force,
    }) = cli.command
    {
        let output = output.unwrap_or_else(|| PathBuf::from("starling.toml"));
        for line in data::import_prosody_config(&file, &output, data_dir, force)? {
            println!("{line}");
        }
        return Ok(());
    }
    let config = Config::load(config_path.as_deref())?;
    starling_logging::init(
        cli.log_format.unwrap_or(config.log.format),
        &config.log.level,
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                first_start_hint(&config).await;
                crate::running::run(config, config_path).await
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
            Command::CheckConfig | Command::ImportProsodyConfig { .. } => Ok(()),
            Command::Cert(CertCommand::Show { host }) => {
                print!("{}", cert::show(&config, host.as_deref())?);
                Ok(())
            }
            Command::Cert(CertCommand::Create { hosts, force }) => {
                print!("{}", cert::create(&config, hosts, force)?);
                Ok(())
            }
            Command::ListUsers { host } => {
                for line in accounts::list_users(&config, host.as_deref()).await? {
                    println!("{line}");
                }
                Ok(())
            }
            Command::HashReport { host } => {
                for line in accounts::hash_report(&config, host.as_deref()).await? {
                    println!("{line}");
                }
                Ok(())
            }
            Command::ListSessions { host, json } => {
                for line in admin::list_sessions(&config, host, json).await? {
                    println!("{line}");
                }
                Ok(())
            }
            Command::Kick { jid, reason } => {
                println!("{}", admin::kick(&config, jid, reason).await?);
                Ok(())
            }
            Command::Announce { host, message } => {
                println!("{}", admin::announce(&config, host, message).await?);
                Ok(())
            }
            Command::Backup { host, output } => {
                for line in data::backup(&config, host.as_deref(), output.as_deref()).await? {
                    eprintln!("{line}");
                }
                Ok(())
            }
            Command::Restore {
                file,
                replace,
                force,
            } => {
                for line in data::restore(&config, &file, replace, force).await? {
                    println!("{line}");
                }
                Ok(())
            }
            Command::ImportProsody {
                dir,
                host,
                replace,
                force,
            } => {
                let lines =
                    data::import_prosody(&config, &dir, host.as_deref(), replace, force).await?;
                for line in lines {
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
