//! Test kit for Starling: a raw XMPP client, a server launcher and the bad-input case runner.
//!
//! The one design choice to understand: the kit checks the server from the outside. It reads
//! the server's XML with its own rxml/minidom reader and speaks SASL with the `sasl` crate's
//! client, and depends on no Starling crate, so a bug shared by the server's XML layer and the
//! tests cannot cancel itself out. Every wait has a deadline; nothing sleeps to synchronise.
//!
//! - [`TestServer`] starts the real `starling` binary in a scratch directory.
//! - [`XmppClient`] connects, negotiates STARTTLS (RFC 6120 §5), SASL (§6) and binding (§7), and
//!   lets a test write arbitrary bytes and read back whole elements.
//! - [`matcher`] compares elements structurally, with `{*}` wildcards and `{name}` captures.
//! - [`ChatPair`] keeps two logged-in users chatting while a test attacks the server, and
//!   [`Arena`] adds a fresh server and an RSS sampler around it.
//! - [`case`] parses and runs the `tests/bad-input/*.case` files.
//! - [`script`] runs the interop scripts and other programs with a deadline.

pub mod arena;
pub mod case;
pub mod client;
pub mod files;
pub mod matcher;
pub mod pair;
pub mod postgres;
pub mod reader;
pub mod scenario;
pub mod script;
pub mod server;
pub mod tls;

#[cfg(test)]
mod scram_tests;

pub use arena::{Arena, ArenaReport, attacker, rss_kib};
pub use case::{Case, Stage, Step, case_files, run_case};
pub use client::{FloodOutcome, Incoming, SaslFailure, ScramMech, XmppClient, mechanisms};
pub use matcher::{Captures, matches, matches_with, substitute};
pub use minidom::Element;
pub use pair::{ChatPair, PairReport};
pub use postgres::fresh_postgres_database;
pub use reader::{StreamEvent, StreamReader, parse_stream_child};
pub use sasl::common::ChannelBinding;
pub use server::{ServerOptions, TestServer};
