//! Runs every conformance scenario in `tests/scenarios/` against its own fresh server.
//!
//! The list comes from the directory (format in `tests/scenarios/README.md`), so adding a file
//! adds a scenario. All scenarios run, a few at a time, and every failure is reported together.
//!
//! * `STARLING_SCENARIO=<substring>` runs only the scenarios whose name contains it.
//! * `STARLING_SCENARIO_RESULTS=<path>` writes one line per scenario (name, pass/fail, tags,
//!   requirement; tab-separated) for `cargo xtask compliance`.
//!
//! `tests/scenarios-pending/` holds scenarios for features that are not built yet; they are
//! parsed by the test kit's unit tests but not run here.

use std::path::{Path, PathBuf};

use starling_testkit::scenario::{
    Outcome, Scenario, results_tsv, run_scenario_on, run_scenarios, scenario_files,
};
use starling_testkit::{ServerOptions, TestServer};

/// How many scenarios (each with its own server process) run at once.
const CONCURRENCY: usize = 4;

fn scenario_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

#[tokio::test]
async fn every_scenario() {
    // One clear message instead of one per scenario when the binary has not been built.
    starling_testkit::server::find_binary().expect("the starling binary is needed");
    let dir = scenario_dir();
    let mut files = scenario_files(&dir).expect("the scenario directory is readable");
    assert!(
        !files.is_empty(),
        "no *.scenario files in {}",
        dir.display()
    );
    if let Ok(filter) = std::env::var("STARLING_SCENARIO") {
        files.retain(|file| file.to_string_lossy().contains(&filter));
        assert!(
            !files.is_empty(),
            "STARLING_SCENARIO={filter} matches no scenario"
        );
    }
    let total = files.len();
    let reports = run_scenarios(files, &dir, CONCURRENCY).await;
    if let Some(path) = std::env::var_os("STARLING_SCENARIO_RESULTS") {
        std::fs::write(&path, results_tsv(&reports))
            .unwrap_or_else(|error| panic!("writing {}: {error}", Path::new(&path).display()));
    }
    let failures: Vec<&str> = reports
        .iter()
        .filter_map(|report| match &report.outcome {
            Outcome::Passed => None,
            Outcome::Failed(message) => Some(message.as_str()),
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {total} scenarios failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The runner must be able to fail: a wrong expectation, an unexpected stanza and a missing
/// stanza each fail with the line, what was expected and what arrived.
#[tokio::test]
async fn the_runner_reports_what_went_wrong() {
    let head = "# RFC 6120 §8.2.3: self-test of the runner\ntags: rfc6120:8.2.3\ntimeout: 1s\n\
                client a1: alice@localhost/desk\nconnect a1\n";
    let cases = [
        (
            // The server answers a ping with a result; expecting an error must fail.
            "a1 -> <iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>\n\
             a1 <- <iq type='error' id='p1'/>\n",
            [
                "t.scenario:7: `a1 <- <iq type='error' id='p1'/>`",
                "at /iq: attribute type: expected \"error\", got \"result\"",
            ],
        ),
        (
            // An answer nobody expected fails at the end of the scenario.
            "a1 -> <iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>\n",
            [
                "t.scenario: at the end",
                "expected nothing from the server, got <iq xmlns='jabber:client'",
            ],
        ),
        (
            // An expected answer that never comes fails at its line after the step timeout.
            "a1 -> <iq type='result' id='nothing-to-answer'/>\n\
             a1 <- <iq type='result' id='nothing-to-answer'/>\n",
            [
                "t.scenario:7: `a1 <- <iq type='result' id='nothing-to-answer'/>`",
                "but nothing arrived: timed out after 1s",
            ],
        ),
    ];
    for (body, needles) in cases {
        let text = format!("{head}{body}");
        let scenario =
            Scenario::parse(Path::new("t.scenario"), "t", &text).expect("self-test parses");
        let server = TestServer::start_with(ServerOptions::default())
            .await
            .expect("server starts");
        let error = match run_scenario_on(&scenario, &server).await {
            Ok(()) => panic!("this scenario must fail:\n{text}"),
            Err(error) => format!("{error:#}"),
        };
        for needle in needles {
            assert!(
                error.contains(needle),
                "missing {needle:?} in the failure:\n{error}"
            );
        }
    }
}
