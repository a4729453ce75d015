//! The `starling` binary: parse arguments, run the server or an operator command, and turn the
//! one error that reaches the top into an exit code.
//!
//! `cli` is the command line, `commands` runs each subcommand, and `running` is the server
//! itself (listeners, connection tasks, TLS, limits, logs, metrics, shutdown); `store` and
//! `private_fs` are shared by both.

mod cli;
mod commands;
mod modules;
mod private_fs;
mod running;
mod store;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("starling: {err:#}");
            ExitCode::FAILURE
        }
    }
}
