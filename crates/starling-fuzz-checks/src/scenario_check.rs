//! `starling_testkit::scenario`: the scenario-file parser and the stanza XML reader it uses.

use std::path::Path;

use starling_testkit::parse_stream_child;
use starling_testkit::scenario::Scenario;

/// Input: the text of a scenario file (non-UTF-8 inputs are skipped, as files are read as
/// UTF-8). Parsing must not panic and must give the same result twice; the text is also
/// read as stanza XML with `parse_stream_child`, which must not panic either.
pub fn scenario(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.scenario");
    let first = Scenario::parse(path, "fuzz", text).map_err(|error| format!("{error:#}"));
    let second = Scenario::parse(path, "fuzz", text).map_err(|error| format!("{error:#}"));
    assert_eq!(first, second);
    let _ = parse_stream_child(text);
}
