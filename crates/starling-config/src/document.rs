//! The config file as a TOML document with positions, so every problem names its key and line.
//!
//! Parsing happens in three steps: TOML syntax (every syntax error is reported, with toml's
//! recovering parser), then the shape of `Config` (unknown keys, wrong types, unparsable
//! addresses; after each such error the offending key is dropped and deserializing is tried
//! again, so all of them are found in one run), then the value checks of `Config::problems`,
//! whose key paths are mapped back to lines here.

use std::fmt;
use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One thing wrong with a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The dotted key path, e.g. `c2s.max_auth_failures` or `tls.hosts."b.test"`; empty for
    /// a syntax error outside any key.
    pub key: String,
    /// 1-based line of the key in the file; `None` when the key is not in the file (a
    /// default value) or the problem is not in a file at all.
    pub line: Option<usize>,
    /// What is wrong, as a sentence fragment.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Where each key of a document is.
#[derive(Debug, Default, Clone)]
pub struct KeyLines {
    /// Every key and array element, parents before children.
    entries: Vec<Entry>,
    /// Byte offset of the start of each line.
    line_starts: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Entry {
    /// Dotted path; array elements as `key[i]`.
    path: String,
    /// The key's position (none for array elements).
    key_span: Option<Range<usize>>,
    /// The value's position.
    value_span: Range<usize>,
    /// The table keys leading to the outermost removable entry: the entry itself, or the
    /// array that contains it.
    removable: Vec<String>,
}

/// The outcome of reading a document into `T`.
pub struct Parsed<T> {
    /// The value, unless the syntax was broken.
    pub value: Option<T>,
    /// Syntax and shape problems, in the order found.
    pub problems: Vec<Problem>,
    /// Positions of the keys.
    pub lines: KeyLines,
    /// Paths of keys dropped because their value was wrong; `value` has their defaults.
    pub dropped: Vec<String>,
}

/// Parse `text` into `T`, collecting every syntax and shape problem.
pub fn parse<T: DeserializeOwned>(text: &str) -> Parsed<T> {
    let (mut root, errors) = DeTable::parse_recoverable(text);
    let line_starts = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let mut lines = KeyLines {
        entries: Vec::new(),
        line_starts,
    };
    if !errors.is_empty() {
        let problems = errors
            .iter()
            .map(|err| {
                let at = err.span().map(|span| span.start);
                Problem {
                    key: at
                        .and_then(|at| lines.entry_at(at))
                        .map(|entry| entry.path.clone())
                        .unwrap_or_default(),
                    line: at.map(|at| lines.line_at(at)),
                    message: err.message().trim_end().to_owned(),
                }
            })
            .collect();
        return Parsed {
            value: None,
            problems,
            lines,
            dropped: Vec::new(),
        };
    }
    collect(root.get_ref(), "", &[], false, &mut lines.entries);
    let mut problems = Vec::new();
    let mut dropped = Vec::new();
    // Each round drops one key, so the loop ends; the bound is a guard against a
    // deserializer error that names no droppable key twice.
    for _ in 0..=lines.entries.len() {
        match T::deserialize(toml::Deserializer::from(root.clone())) {
            Ok(value) => {
                sort_by_line(&mut problems);
                return Parsed {
                    value: Some(value),
                    problems,
                    lines,
                    dropped,
                };
            }
            Err(err) => {
                let entry = err.span().and_then(|span| lines.entry_at(span.start));
                problems.push(Problem {
                    key: entry.map(|e| e.path.clone()).unwrap_or_default(),
                    line: err.span().map(|span| lines.line_at(span.start)),
                    message: err.message().trim_end().to_owned(),
                });
                let Some(entry) = entry else { break };
                let removable = entry.removable.clone();
                if removable.is_empty() || !remove(root.get_mut(), &removable) {
                    break;
                }
                dropped.push(key_path(&removable));
            }
        }
    }
    sort_by_line(&mut problems);
    Parsed {
        value: None,
        problems,
        lines,
        dropped,
    }
}

/// File order; problems without a line last.
pub fn sort_by_line(problems: &mut [Problem]) {
    problems.sort_by_key(|problem| problem.line.unwrap_or(usize::MAX));
}

impl KeyLines {
    /// The line of `path`, or of its nearest parent that is in the file.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(entry) = self.entries.iter().find(|entry| entry.path == path) {
                let at = entry
                    .key_span
                    .as_ref()
                    .map_or(entry.value_span.start, |span| span.start);
                return Some(self.line_at(at));
            }
            path = parent(path)?;
        }
    }

    /// A problem at `key`, located.
    pub fn problem(&self, key: impl Into<String>, message: impl Into<String>) -> Problem {
        let key = key.into();
        Problem {
            line: self.line_of(&key),
            key,
            message: message.into(),
        }
    }

    /// 1-based line of a byte offset.
    fn line_at(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= offset)
    }

    /// The innermost key or element whose key or value contains `offset`.
    fn entry_at(&self, offset: usize) -> Option<&Entry> {
        self.entries
            .iter()
            .filter(|entry| {
                entry.value_span.contains(&offset)
                    || entry
                        .key_span
                        .as_ref()
                        .is_some_and(|span| span.contains(&offset))
            })
            .min_by_key(|entry| entry.value_span.len())
    }
}

/// The dotted path of `keys`, quoting keys that are not bare (`tls.hosts."b.test"`).
pub fn key_path<S: AsRef<str>>(keys: &[S]) -> String {
    let mut path = String::new();
    for key in keys {
        if !path.is_empty() {
            path.push('.');
        }
        push_key(&mut path, key.as_ref());
    }
    path
}

fn push_key(path: &mut String, key: &str) {
    let is_bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if is_bare {
        path.push_str(key);
    } else {
        path.push('"');
        for c in key.chars() {
            if c == '"' || c == '\\' {
                path.push('\\');
            }
            path.push(c);
        }
        path.push('"');
    }
}

/// The parent of a path: `a.b[2]` → `a.b`, `a.b` → `a`, `a."x.y"` → `a`.
fn parent(path: &str) -> Option<&str> {
    if path.ends_with(']') {
        return path.rfind('[').map(|i| &path[..i]);
    }
    let mut in_quotes = false;
    let mut split = None;
    let mut escaped = false;
    for (i, c) in path.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '.' if !in_quotes => split = Some(i),
            _ => {}
        }
    }
    split.map(|i| &path[..i])
}

fn collect(
    table: &DeTable<'_>,
    prefix: &str,
    table_keys: &[String],
    in_array: bool,
    out: &mut Vec<Entry>,
) {
    for (key, value) in table.iter() {
        let mut path = prefix.to_owned();
        if !path.is_empty() {
            path.push('.');
        }
        push_key(&mut path, key.get_ref());
        let mut keys = table_keys.to_vec();
        if !in_array {
            keys.push(key.get_ref().to_string());
        }
        out.push(Entry {
            path: path.clone(),
            key_span: Some(key.span()),
            value_span: value.span(),
            removable: keys.clone(),
        });
        collect_value(value, &path, &keys, in_array, out);
    }
}

fn collect_value(
    value: &Spanned<DeValue<'_>>,
    path: &str,
    keys: &[String],
    in_array: bool,
    out: &mut Vec<Entry>,
) {
    match value.get_ref() {
        DeValue::Table(table) => collect(table, path, keys, in_array, out),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                out.push(Entry {
                    path: item_path.clone(),
                    key_span: None,
                    value_span: item.span(),
                    removable: keys.to_vec(),
                });
                collect_value(item, &item_path, keys, true, out);
            }
        }
        _ => {}
    }
}

/// Remove the entry at `keys` (a path through tables only); false if it is not there.
fn remove(table: &mut DeTable<'_>, keys: &[String]) -> bool {
    match keys {
        [] => false,
        [last] => table.remove(last.as_str()).is_some(),
        [first, rest @ ..] => {
            let Some(value) = table.get_mut(first.as_str()) else {
                return false;
            };
            match value.get_mut() {
                DeValue::Table(inner) => remove(inner, rest),
                _ => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        #[serde(default)]
        name: String,
        #[serde(default)]
        inner: Inner,
    }

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        #[serde(default)]
        port: u16,
        #[serde(default)]
        addrs: Vec<std::net::SocketAddr>,
    }

    fn check(text: &str) -> Vec<String> {
        parse::<Doc>(text)
            .problems
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn every_shape_problem_is_found_with_its_key_and_line() {
        let problems = check(
            "name = 'x'\n[inner]\nprot = 5\nport = 99999\naddrs = ['127.0.0.1:5222', 'nonsense']\n",
        );
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert_eq!(
            problems,
            [
                "line 3: inner.prot: unknown field `prot`, expected `port` or `addrs`",
                "line 4: inner.port: invalid value: integer `99999`, expected u16",
                "line 5: inner.addrs[1]: invalid socket address syntax",
            ]
        );
    }

    #[test]
    fn syntax_errors_carry_a_line() {
        let problems = check("name = 'x'\n\n[inner\n");
        assert!(!problems.is_empty());
        assert!(problems[0].starts_with("line 3: "), "{problems:?}");
    }

    #[test]
    fn lines_of_keys_and_parents() {
        let parsed = parse::<toml::Table>("a = 1\n[tls.hosts.\"b.test\"]\ncertificate = 'x'\n");
        let lines = parsed.lines;
        assert_eq!(lines.line_of("a"), Some(1));
        assert_eq!(lines.line_of("tls.hosts.\"b.test\".certificate"), Some(3));
        assert_eq!(lines.line_of("tls.hosts.\"b.test\".private_key"), Some(2));
        assert_eq!(lines.line_of("other"), None);
    }

    #[test]
    fn paths_quote_keys_that_are_not_bare() {
        assert_eq!(
            key_path(&["tls", "hosts", "b.test"]),
            "tls.hosts.\"b.test\""
        );
        assert_eq!(parent("tls.hosts.\"b.test\""), Some("tls.hosts"));
        assert_eq!(parent("listen.starttls[1]"), Some("listen.starttls"));
        assert_eq!(parent("hosts"), None);
    }
}
