//! Runs every bad-input case in `tests/bad-input/` against its own fresh server.
//!
//! The list of cases comes from the directory (format in `tests/bad-input/README.md`), so adding a
//! file adds a case. All cases run, a few at a time, and every failure is reported together.
//! Set `STARLING_CASE=<substring>` to run only the cases whose file name contains it.

use std::path::Path;

use starling_testkit::{case_files, run_case};
use tokio::task::JoinSet;

/// How many cases (each with its own server process) run at once.
const CONCURRENCY: usize = 4;

#[tokio::test]
async fn every_bad_input_case() {
    // One clear message instead of one per case when the binary has not been built.
    starling_testkit::server::find_binary().expect("the starling binary is needed");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("bad-input");
    let mut files = case_files(&dir).expect("the bad-input directory is readable");
    assert!(!files.is_empty(), "no *.case files in {}", dir.display());
    if let Ok(filter) = std::env::var("STARLING_CASE") {
        files.retain(|file| file.to_string_lossy().contains(&filter));
        assert!(!files.is_empty(), "STARLING_CASE={filter} matches no case");
    }
    let total = files.len();
    let mut pending = files.into_iter();
    let mut running = JoinSet::new();
    let mut failures = Vec::new();
    loop {
        while running.len() < CONCURRENCY {
            let Some(file) = pending.next() else { break };
            running.spawn(async move { run_case(&file).await });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let outcome: anyhow::Result<()> = joined.expect("case task panicked");
        if let Err(error) = outcome {
            // `run_case` errors already start with the file name.
            failures.push(format!("{error:#}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} bad-input cases failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
