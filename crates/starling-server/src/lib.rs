//! The Starling server as a library: the `starling` binary (`main.rs`) is a thin caller of it.
//!
//! `cli` is the command line, `commands` runs each subcommand, and `running` is the server
//! itself (listeners, connection tasks, TLS, limits, logs, metrics, shutdown); `modules` picks
//! the feature modules from the configuration; `store` is shared.
//!
//! [`run_embedded`] runs the server inside another program with extra feature modules, which
//! is how `tests/` proves the extension interface usable from outside this workspace's crates.

pub mod cli;
pub mod commands;
mod modules;
mod running;
mod store;

pub use running::{Embedding, run_embedded};
pub use starling_config::Config;
