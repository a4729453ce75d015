//! Conformance scenarios: transcripts of one or more clients talking to a fresh server
//! (STYLE.md §6). The format is documented in `tests/scenarios/README.md`.
//!
//! A scenario declares its clients, then runs steps in file order: a client connects (up to a
//! chosen negotiation stage), sends text, expects elements, expects silence, closes. Expectations
//! are ordered per connection and matched structurally ([`crate::matcher`]); while a client waits
//! for an expected element, whatever else arrives on that connection fails the scenario, and at
//! the end every open connection must be quiet, so an unexpected stanza fails as surely as a
//! missing one. Transcripts never name Starling internals, so the same file can be pointed at
//! another server to check our reading of the RFC.

mod parse;
mod run;

pub use parse::{ClientDecl, ConnectStage, Expectation, Line, Mechanism, Scenario, Step};
pub use run::{
    Outcome, ScenarioReport, results_tsv, run_scenario, run_scenario_on, run_scenarios,
    scenario_files,
};

use std::time::Duration;

/// How long one step may wait for the server unless the scenario says `timeout:`.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `<- nothing` waits when no duration is given.
pub const DEFAULT_QUIET: Duration = Duration::from_millis(300);
/// The quiet check every open connection passes at the end of a scenario.
pub const FINAL_QUIET: Duration = Duration::from_millis(200);
/// File extension of scenario files.
pub const EXTENSION: &str = "scenario";
