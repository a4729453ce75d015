//! JIDs from the wire: whatever `starling_stanza::parse_jid` accepts prints as a string that
//! parses to the same JID, so it can be stored and read back.

use jid::Jid;
use starling_stanza::parse_jid;

/// Input: the JID text (non-UTF-8 inputs are skipped; JIDs arrive as XML attribute text).
///
/// A JID that parses must display as text that parses back to an equal JID and displays the
/// same again, and its bare form must do the same.
pub fn jid(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(jid) = parse_jid(text) else {
        return;
    };
    round_trip(&jid, text);
    round_trip(&Jid::from(jid.to_bare()), text);
}

fn round_trip(jid: &Jid, source: &str) {
    let shown = jid.to_string();
    let again = parse_jid(&shown)
        .unwrap_or_else(|error| panic!("{source:?} displays as {shown:?}, which fails: {error}"));
    assert_eq!(&again, jid, "{source:?} displays as {shown:?}");
    assert_eq!(again.to_string(), shown, "{source:?}");
}
