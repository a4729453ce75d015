//! The checks behind Starling's fuzz targets, as plain functions of a byte slice.
//!
//! Each function takes whatever bytes the fuzzer made, drives one parser or engine with them
//! and panics if a property fails: a panic inside the code under test, or a result that breaks
//! an invariant (chunked and whole input disagree, a round trip changes a value, the engine
//! routes a stanza before binding). The cargo-fuzz targets in `fuzz/` call nothing else, and
//! `tests/fuzz_regressions.rs` replays the committed corpora (`fuzz/regressions/<target>/`,
//! `fuzz/corpus-seed/<target>/`) through the same functions on stable Rust, so a crash found
//! once stays a failing test until it is fixed.
//!
//! Where a check needs settings (chunk sizes, limits, a SASL mechanism), it takes them from
//! the first bytes of the input, so the fuzzer explores them together with the data.

mod jid_check;
mod sasl_check;
mod scenario_check;
mod stream_check;
mod xml_check;

pub use jid_check::jid;
pub use sasl_check::sasl;
pub use scenario_check::scenario;
pub use stream_check::c2s_stream;
pub use xml_check::{element_round_trip, stream_parser};

/// A check: panics if the input breaks a property.
pub type Check = fn(&[u8]);

/// The fuzz targets, by the name used for `fuzz/fuzz_targets/<name>.rs` and the corpus folders.
pub const TARGETS: &[(&str, Check)] = &[
    ("stream_parser", stream_parser),
    ("jid", jid),
    ("sasl", sasl),
    ("c2s_stream", c2s_stream),
    ("scenario", scenario),
];

/// Reads settings off the front of a fuzz input.
struct Unstructured<'a> {
    data: &'a [u8],
}

impl<'a> Unstructured<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// The next byte, or 0 once the input is used up.
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&first, rest)) => {
                self.data = rest;
                first
            }
            None => 0,
        }
    }

    /// Up to `len` bytes.
    fn bytes(&mut self, len: usize) -> &'a [u8] {
        let (taken, rest) = self.data.split_at(len.min(self.data.len()));
        self.data = rest;
        taken
    }

    /// Everything not yet taken.
    fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// `body` cut into pieces whose sizes cycle through `sizes` (each byte `b` is `b + 1` bytes).
/// No sizes means one byte at a time.
fn chunks<'a>(sizes: &'a [u8], body: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = body;
    let mut sizes = sizes.iter().cycle();
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let size = sizes.next().map_or(1, |&b| usize::from(b) + 1);
        let (piece, after) = rest.split_at(size.min(rest.len()));
        rest = after;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::chunks;

    #[test]
    fn chunks_cycle_through_sizes_and_cover_the_body() {
        let pieces: Vec<&[u8]> = chunks(&[0, 2], b"abcdefg").collect();
        assert_eq!(pieces, [&b"a"[..], b"bcd", b"e", b"fg"]);
        let pieces: Vec<&[u8]> = chunks(&[], b"abc").collect();
        assert_eq!(pieces, [&b"a"[..], b"b", b"c"]);
        assert_eq!(chunks(&[5], b"").count(), 0);
    }
}
