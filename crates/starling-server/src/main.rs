//! The `starling` binary: parse arguments, run the server or an operator command, and turn the
//! one error that reaches the top into an exit code. Everything else is the library
//! (`lib.rs`).

use std::process::ExitCode;

use starling::{cli, commands};

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
