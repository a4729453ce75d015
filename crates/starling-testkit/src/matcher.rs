//! Structural XML matching for expectations: the XML-aware comparison of STYLE.md §6.
//!
//! An expected element matches an actual one when the name and namespace are equal, every
//! expected attribute is present with a matching value, every expected child matches some actual
//! child in the same order (extra actual children are allowed), and non-empty expected text equals
//! the actual text after trimming. Attribute order and namespace prefixes never matter, because
//! both sides are compared after namespace resolution.
//!
//! In attribute values and text, `{*}` matches anything and `{name}` matches anything and
//! captures it; a name captured earlier must match the same value again.

use std::collections::BTreeMap;

use minidom::Element;

use crate::reader::to_xml;

/// Values captured by `{name}` placeholders, by name.
pub type Captures = BTreeMap<String, String>;

/// Matches `actual` against `expected` and returns the values captured on the way.
pub fn matches(expected: &Element, actual: &Element) -> Result<Captures, String> {
    let mut captures = Captures::new();
    matches_with(expected, actual, &mut captures)?;
    Ok(captures)
}

/// Like [`matches`], but placeholders already in `captures` must match their captured value, and
/// new captures are added to it. On failure `captures` is left unchanged.
pub fn matches_with(
    expected: &Element,
    actual: &Element,
    captures: &mut Captures,
) -> Result<(), String> {
    let mut scratch = captures.clone();
    match match_element(
        expected,
        actual,
        &format!("/{}", expected.name()),
        &mut scratch,
    ) {
        Ok(()) => {
            *captures = scratch;
            Ok(())
        }
        Err(reason) => Err(format!(
            "{reason}\n  expected: {}\n  actual:   {}",
            to_xml(expected),
            to_xml(actual)
        )),
    }
}

/// Replaces every `{name}` whose name is in `captures` with the captured value.
pub fn substitute(template: &str, captures: &Captures) -> String {
    let mut out = String::with_capacity(template.len());
    for segment in parse_pattern(template) {
        match segment {
            Segment::Literal(text) => out.push_str(text),
            Segment::Capture(name) => match captures.get(name) {
                Some(value) => out.push_str(value),
                None => {
                    out.push('{');
                    out.push_str(name);
                    out.push('}');
                }
            },
            Segment::Any => out.push_str("{*}"),
        }
    }
    out
}

fn match_element(
    expected: &Element,
    actual: &Element,
    path: &str,
    captures: &mut Captures,
) -> Result<(), String> {
    if expected.name() != actual.name() || expected.ns() != actual.ns() {
        return Err(format!(
            "at {path}: expected element <{}/> in namespace {:?}, got <{}/> in namespace {:?}",
            expected.name(),
            expected.ns(),
            actual.name(),
            actual.ns()
        ));
    }
    for ((ns, name), expected_value) in expected.attrs().iter() {
        let attr_name = if ns.is_empty() {
            name.to_string()
        } else {
            format!("{{{ns}}}{name}")
        };
        let Some(actual_value) = actual.attrs().get(ns, name) else {
            return Err(format!(
                "at {path}: missing attribute {attr_name} (expected {expected_value:?})"
            ));
        };
        if !match_value(expected_value, actual_value, captures) {
            return Err(format!(
                "at {path}: attribute {attr_name}: expected {expected_value:?}, got {actual_value:?}"
            ));
        }
    }
    let expected_text = expected.text();
    let expected_text = expected_text.trim();
    if !expected_text.is_empty() {
        let actual_text = actual.text();
        if !match_value(expected_text, actual_text.trim(), captures) {
            return Err(format!(
                "at {path}: text: expected {expected_text:?}, got {:?}",
                actual_text.trim()
            ));
        }
    }
    let actual_children: Vec<&Element> = actual.children().collect();
    let mut next_actual = 0;
    for (index, expected_child) in expected.children().enumerate() {
        let child_path = format!("{path}/{}", expected_child.name());
        let mut closest_failure = None;
        let mut found = None;
        for (offset, actual_child) in actual_children[next_actual..].iter().enumerate() {
            let mut attempt = captures.clone();
            match match_element(expected_child, actual_child, &child_path, &mut attempt) {
                Ok(()) => {
                    *captures = attempt;
                    found = Some(next_actual + offset);
                    break;
                }
                Err(reason) => {
                    let is_same_kind = actual_child.name() == expected_child.name()
                        && actual_child.ns() == expected_child.ns();
                    if is_same_kind && closest_failure.is_none() {
                        closest_failure = Some(reason);
                    }
                }
            }
        }
        match found {
            Some(position) => next_actual = position + 1,
            None => {
                let mut message = format!(
                    "at {path}: no child matches expected child #{} {}",
                    index + 1,
                    to_xml(expected_child)
                );
                if next_actual > 0 {
                    message.push_str(&format!(
                        " after actual child #{next_actual} (children must match in order)"
                    ));
                }
                match closest_failure {
                    Some(reason) => message.push_str(&format!("; closest candidate: {reason}")),
                    None => message.push_str(&format!(
                        "; actual children: [{}]",
                        actual_children
                            .iter()
                            .map(|child| format!("<{} xmlns='{}'>", child.name(), child.ns()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                }
                return Err(message);
            }
        }
    }
    Ok(())
}

#[derive(Debug, PartialEq)]
enum Segment<'a> {
    Literal(&'a str),
    Any,
    Capture(&'a str),
}

/// Splits a value into literal text and `{*}`/`{name}` placeholders. A brace that does not open
/// a well-formed placeholder is literal.
fn parse_pattern(pattern: &str) -> Vec<Segment<'_>> {
    let mut segments = Vec::new();
    let mut literal_start = 0;
    let mut index = 0;
    while let Some(offset) = pattern[index..].find('{') {
        let open = index + offset;
        let placeholder = pattern[open + 1..].find('}').and_then(|close| {
            let name = &pattern[open + 1..open + 1 + close];
            let is_name = name == "*"
                || (!name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
            is_name.then_some(name)
        });
        match placeholder {
            Some(name) => {
                if literal_start < open {
                    segments.push(Segment::Literal(&pattern[literal_start..open]));
                }
                segments.push(if name == "*" {
                    Segment::Any
                } else {
                    Segment::Capture(name)
                });
                index = open + name.len() + 2;
                literal_start = index;
            }
            None => index = open + 1,
        }
    }
    if literal_start < pattern.len() {
        segments.push(Segment::Literal(&pattern[literal_start..]));
    }
    segments
}

fn match_value(pattern: &str, actual: &str, captures: &mut Captures) -> bool {
    match_segments(&parse_pattern(pattern), actual, captures)
}

fn match_segments(segments: &[Segment<'_>], actual: &str, captures: &mut Captures) -> bool {
    let Some((first, rest)) = segments.split_first() else {
        return actual.is_empty();
    };
    match first {
        Segment::Literal(text) => actual
            .strip_prefix(text)
            .is_some_and(|tail| match_segments(rest, tail, captures)),
        Segment::Capture(name) if captures.contains_key(*name) => {
            let value = captures[*name].clone();
            actual
                .strip_prefix(value.as_str())
                .is_some_and(|tail| match_segments(rest, tail, captures))
        }
        Segment::Any | Segment::Capture(_) => {
            let mut splits: Vec<usize> = actual.char_indices().map(|(i, _)| i).collect();
            splits.push(actual.len());
            for split in splits {
                let mut attempt = captures.clone();
                if let Segment::Capture(name) = first {
                    attempt.insert((*name).to_owned(), actual[..split].to_owned());
                }
                if match_segments(rest, &actual[split..], &mut attempt) {
                    *captures = attempt;
                    return true;
                }
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::parse_stream_child;

    /// Parses both sides as stream children and returns the outcome with captures flattened.
    fn check(expected: &str, actual: &str) -> Result<Vec<(String, String)>, String> {
        let expected = parse_stream_child(expected).expect("expected side parses");
        let actual = parse_stream_child(actual).expect("actual side parses");
        matches(&expected, &actual).map(|captures| captures.into_iter().collect())
    }

    /// Asserts a failure whose first line (before the expected/actual dump) is `reason`.
    fn check_fails(expected: &str, actual: &str, reason: &str) {
        let error = check(expected, actual).expect_err("must not match");
        assert_eq!(error.lines().next(), Some(reason), "full message: {error}");
    }

    #[test]
    fn attribute_order_does_not_matter() {
        assert_eq!(
            check("<iq type='result' id='p1'/>", "<iq id='p1' type='result'/>"),
            Ok(vec![])
        );
    }

    #[test]
    fn prefix_and_default_namespace_declarations_are_equivalent() {
        assert_eq!(
            check(
                "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>",
                "<sasl:failure xmlns:sasl='urn:ietf:params:xml:ns:xmpp-sasl'><sasl:not-authorized/></sasl:failure>"
            ),
            Ok(vec![])
        );
        assert_eq!(
            check(
                "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
                "<error xmlns='http://etherx.jabber.org/streams'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></error>"
            ),
            Ok(vec![])
        );
    }

    #[test]
    fn extra_actual_attributes_and_children_are_allowed() {
        assert_eq!(
            check(
                "<iq type='result'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
                "<iq type='result' id='b1' from='localhost'><x xmlns='urn:example'/><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>a@b/c</jid></bind></iq>"
            ),
            Ok(vec![])
        );
    }

    #[test]
    fn wrong_namespace_fails() {
        check_fails(
            "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
            "<failure xmlns='urn:example'/>",
            "at /failure: expected element <failure/> in namespace \"urn:ietf:params:xml:ns:xmpp-sasl\", got <failure/> in namespace \"urn:example\"",
        );
    }

    #[test]
    fn missing_and_different_attributes_fail() {
        check_fails(
            "<iq type='result' id='p1'/>",
            "<iq type='result'/>",
            "at /iq: missing attribute id (expected \"p1\")",
        );
        check_fails(
            "<iq type='result' id='p1'/>",
            "<iq type='error' id='p1'/>",
            "at /iq: attribute type: expected \"result\", got \"error\"",
        );
    }

    #[test]
    fn namespaced_attributes_compare_by_namespace() {
        assert_eq!(
            check(
                "<message xml:lang='en'/>",
                "<message xml:lang='en' type='chat'/>"
            ),
            Ok(vec![])
        );
        check_fails(
            "<message xml:lang='en'/>",
            "<message lang='en'/>",
            "at /message: missing attribute {http://www.w3.org/XML/1998/namespace}lang (expected \"en\")",
        );
    }

    #[test]
    fn missing_child_names_the_child_and_lists_actual_children() {
        check_fails(
            "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>",
            "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><aborted/><text>no</text></failure>",
            "at /failure: no child matches expected child #1 <not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>; actual children: [<aborted xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>, <text xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>]",
        );
    }

    #[test]
    fn closest_candidate_explains_a_near_miss() {
        check_fails(
            "<iq><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@localhost/case</jid></bind></iq>",
            "<iq><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@localhost/other</jid></bind></iq>",
            "at /iq: no child matches expected child #1 <bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@localhost/case</jid></bind>; closest candidate: at /iq/bind: no child matches expected child #1 <jid xmlns='urn:ietf:params:xml:ns:xmpp-bind'>alice@localhost/case</jid>; closest candidate: at /iq/bind/jid: text: expected \"alice@localhost/case\", got \"alice@localhost/other\"",
        );
    }

    #[test]
    fn children_match_in_order() {
        assert_eq!(check("<a><b/><c/></a>", "<a><b/><x/><c/></a>"), Ok(vec![]));
        check_fails(
            "<a><c/><b/></a>",
            "<a><b/><c/></a>",
            "at /a: no child matches expected child #2 <b xmlns='jabber:client'/> after actual child #2 (children must match in order); actual children: [<b xmlns='jabber:client'>, <c xmlns='jabber:client'>]",
        );
    }

    #[test]
    fn text_is_compared_after_trim_only_when_expected() {
        assert_eq!(check("<body> hi </body>", "<body>hi\n</body>"), Ok(vec![]));
        assert_eq!(check("<body/>", "<body>anything</body>"), Ok(vec![]));
        check_fails(
            "<body>hi</body>",
            "<body>ho</body>",
            "at /body: text: expected \"hi\", got \"ho\"",
        );
    }

    #[test]
    fn wildcards_and_captures() {
        assert_eq!(check("<iq id='{*}'/>", "<iq id='x1'/>"), Ok(vec![]));
        check_fails(
            "<iq id='{*}'/>",
            "<iq/>",
            "at /iq: missing attribute id (expected \"{*}\")",
        );
        assert_eq!(
            check(
                "<iq id='{id}'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@localhost/{resource}</jid></bind></iq>",
                "<iq id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@localhost/abc-1</jid></bind></iq>"
            ),
            Ok(vec![
                ("id".to_owned(), "b1".to_owned()),
                ("resource".to_owned(), "abc-1".to_owned())
            ])
        );
    }

    #[test]
    fn a_repeated_capture_must_repeat_its_value() {
        assert_eq!(
            check("<m from='{j}' to='{j}'/>", "<m from='a@b' to='a@b'/>"),
            Ok(vec![("j".to_owned(), "a@b".to_owned())])
        );
        check_fails(
            "<m from='{j}' to='{j}'/>",
            "<m from='a@b' to='c@d'/>",
            "at /m: attribute to: expected \"{j}\", got \"c@d\"",
        );
    }

    #[test]
    fn earlier_captures_constrain_later_matches() {
        let expected = parse_stream_child("<iq id='{id}'/>").expect("parses");
        let mut captures = Captures::from([("id".to_owned(), "p1".to_owned())]);
        let other = parse_stream_child("<iq id='p2'/>").expect("parses");
        assert!(matches_with(&expected, &other, &mut captures).is_err());
        let same = parse_stream_child("<iq id='p1'/>").expect("parses");
        assert_eq!(matches_with(&expected, &same, &mut captures), Ok(()));
    }

    #[test]
    fn substitute_replaces_known_captures_only() {
        let captures = Captures::from([("res".to_owned(), "r1".to_owned())]);
        assert_eq!(
            substitute(
                "<iq to='alice@localhost/{res}' id='{other}' x='{*}' y='{ not }'/>",
                &captures
            ),
            "<iq to='alice@localhost/r1' id='{other}' x='{*}' y='{ not }'/>"
        );
    }

    #[test]
    fn braces_that_are_not_placeholders_are_literal() {
        assert_eq!(check("<b>{ x }</b>", "<b>{ x }</b>"), Ok(vec![]));
        assert_eq!(
            parse_pattern("a{b}c{"),
            [
                Segment::Literal("a"),
                Segment::Capture("b"),
                Segment::Literal("c{")
            ]
        );
    }
}
