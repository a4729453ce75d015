//! A bounded reader for the Lua table literals Prosody writes to its data files
//! (`return { ... };`, produced by `util.serialization`).
//!
//! This is not a Lua interpreter: it accepts one `return` of a constant expression — strings
//! (with every Lua 5.4 escape, and long brackets `[[…]]`, `[==[…]==]`), numbers, booleans,
//! `nil` and nested tables with `[key] =`, `name =` and positional fields separated by `,` or
//! `;` — and nothing else, so a data file can never run code. Nesting is bounded by
//! [`MAX_DEPTH`]; the caller bounds the input size. [`script`] reads Prosody's configuration
//! file, a script of such constants, the same way.

use std::fmt;

pub mod script;

/// Deepest table nesting accepted. Prosody's account and roster files nest three deep; a
/// stored stanza (a vCard, a private XML fragment) takes one table per element level plus one
/// for the deepest element's attributes, so this allows about 30 element levels.
pub const MAX_DEPTH: usize = 32;

/// A Lua value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `nil`.
    Nil,
    /// `true` or `false`.
    Bool(bool),
    /// A number; Lua integers and floats alike (integers above 2^53 lose precision).
    Number(f64),
    /// A string: Lua strings are bytes, and `\ddd` escapes may make them invalid UTF-8.
    Str(Vec<u8>),
    /// A table, its fields in file order.
    Table(Table),
}

/// A table's fields in file order; positional fields get keys 1, 2, … as in Lua.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    /// (key, value) pairs.
    pub fields: Vec<(Value, Value)>,
}

impl Table {
    /// The value of the string key `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|(k, _)| matches!(k, Value::Str(bytes) if bytes == key.as_bytes()))
            .map(|(_, v)| v)
    }
}

impl Value {
    /// The string as UTF-8, if this is a string and valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(bytes) => std::str::from_utf8(bytes).ok(),
            _ => None,
        }
    }

    /// The table, if this is one.
    pub fn as_table(&self) -> Option<&Table> {
        match self {
            Value::Table(table) => Some(table),
            _ => None,
        }
    }
}

/// Why a file is not an acceptable table literal, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuaError {
    /// Byte offset of the problem.
    pub offset: usize,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for LuaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.reason)
    }
}

impl std::error::Error for LuaError {}

/// Parses `return <expression>` with an optional `;`, and nothing else but whitespace and
/// comments.
pub fn parse_return(input: &[u8]) -> Result<Value, LuaError> {
    let mut parser = Parser { input, pos: 0 };
    parser.skip_space()?;
    let start = parser.pos;
    if parser.name()? != Some("return") {
        parser.pos = start;
        return Err(parser.error("expected `return`"));
    }
    parser.skip_space()?;
    let value = parser.expression(0)?;
    parser.skip_space()?;
    if parser.peek() == Some(b';') {
        parser.pos += 1;
        parser.skip_space()?;
    }
    if parser.pos < input.len() {
        return Err(parser.error("unexpected text after the returned value"));
    }
    Ok(value)
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, reason: impl Into<String>) -> LuaError {
        LuaError {
            offset: self.pos,
            reason: reason.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.input.get(self.pos + ahead).copied()
    }

    /// Skips whitespace and `--` comments (line comments and long comments `--[[ … ]]`,
    /// `--[==[ … ]==]`).
    fn skip_space(&mut self) -> Result<(), LuaError> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r' | b'\n' | b'\x0b' | b'\x0c') => self.pos += 1,
                Some(b'-') if self.peek_at(1) == Some(b'-') => self.skip_comment()?,
                _ => return Ok(()),
            }
        }
    }

    /// Skips one `--` comment, here; a line comment stops before its line break.
    fn skip_comment(&mut self) -> Result<(), LuaError> {
        self.pos += 2;
        if let Some(level) = self.long_bracket() {
            self.long_text(level)
                .map_err(|_| self.error("unterminated long comment"))?;
        } else {
            while !matches!(self.peek(), None | Some(b'\n')) {
                self.pos += 1;
            }
        }
        Ok(())
    }

    /// The level of a long bracket (`[[` is 0, `[==[` is 2) opening here, if one does.
    fn long_bracket(&self) -> Option<usize> {
        if self.peek() != Some(b'[') {
            return None;
        }
        let mut level = 0;
        while self.peek_at(1 + level) == Some(b'=') {
            level += 1;
        }
        (self.peek_at(1 + level) == Some(b'[')).then_some(level)
    }

    /// Reads a long bracket's text (opened here, at `level`) up to its closing bracket, which
    /// is consumed. A line break right after the opening bracket is not part of the text.
    fn long_text(&mut self, level: usize) -> Result<Vec<u8>, LuaError> {
        let start = self.pos;
        self.pos += level + 2;
        if self.peek() == Some(b'\r') {
            self.pos += 1;
        }
        if self.peek() == Some(b'\n') {
            self.pos += 1;
        }
        let mut close = vec![b']'];
        close.extend(std::iter::repeat_n(b'=', level));
        close.push(b']');
        let rest = self.input.get(self.pos..).unwrap_or_default();
        let end = find(rest, &close).ok_or(LuaError {
            offset: start,
            reason: "unterminated long string".to_owned(),
        })?;
        let text = rest.get(..end).unwrap_or_default().to_vec();
        self.pos += end + close.len();
        Ok(text)
    }

    /// A name (identifier or keyword), if one starts here.
    fn name(&mut self) -> Result<Option<&str>, LuaError> {
        let start = self.pos;
        if !matches!(self.peek(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_')) {
            return Ok(None);
        }
        while matches!(
            self.peek(),
            Some(b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_')
        ) {
            self.pos += 1;
        }
        let bytes = self.input.get(start..self.pos).unwrap_or_default();
        // Only ASCII letters, digits and '_' were consumed.
        std::str::from_utf8(bytes)
            .map(Some)
            .map_err(|_| self.error("invalid name"))
    }

    fn expression(&mut self, depth: usize) -> Result<Value, LuaError> {
        match self.peek() {
            Some(b'{') => self.table(depth + 1),
            Some(quote @ (b'"' | b'\'')) => self.string(quote).map(Value::Str),
            Some(b'[') => match self.long_bracket() {
                Some(level) => self.long_text(level).map(Value::Str),
                None => Err(self.error("expected a value")),
            },
            Some(b'-' | b'0'..=b'9' | b'.') => self.number().map(Value::Number),
            Some(b'a'..=b'z' | b'A'..=b'Z' | b'_') => {
                let start = self.pos;
                match self.name()? {
                    Some("true") => Ok(Value::Bool(true)),
                    Some("false") => Ok(Value::Bool(false)),
                    Some("nil") => Ok(Value::Nil),
                    _ => {
                        self.pos = start;
                        Err(self.error("only constants are allowed here, not names"))
                    }
                }
            }
            Some(_) => Err(self.error("expected a value")),
            None => Err(self.error("unexpected end of file")),
        }
    }

    fn table(&mut self, depth: usize) -> Result<Value, LuaError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("tables nest deeper than {MAX_DEPTH}")));
        }
        self.pos += 1; // '{'
        let mut table = Table::default();
        let mut next_index = 1.0;
        loop {
            self.skip_space()?;
            match self.peek() {
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Table(table));
                }
                None => return Err(self.error("unterminated table")),
                Some(b'[') if !matches!(self.peek_at(1), Some(b'[' | b'=')) => {
                    self.pos += 1;
                    self.skip_space()?;
                    let key = self.expression(depth)?;
                    self.skip_space()?;
                    self.expect(b']')?;
                    self.skip_space()?;
                    self.expect(b'=')?;
                    self.skip_space()?;
                    let value = self.expression(depth)?;
                    table.fields.push((key, value));
                }
                Some(b'a'..=b'z' | b'A'..=b'Z' | b'_') if self.is_name_field() => {
                    let key = self.name()?.unwrap_or_default().as_bytes().to_vec();
                    self.skip_space()?;
                    self.expect(b'=')?;
                    self.skip_space()?;
                    let value = self.expression(depth)?;
                    table.fields.push((Value::Str(key), value));
                }
                Some(_) => {
                    let value = self.expression(depth)?;
                    table.fields.push((Value::Number(next_index), value));
                    next_index += 1.0;
                }
            }
            self.skip_space()?;
            match self.peek() {
                Some(b',' | b';') => self.pos += 1,
                Some(b'}') => {}
                _ => return Err(self.error("expected `,`, `;` or `}`")),
            }
        }
    }

    /// Whether a name here is followed by `=` (a `name = value` field), not `==`.
    fn is_name_field(&self) -> bool {
        let mut at = self.pos;
        while matches!(
            self.input.get(at),
            Some(b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_')
        ) {
            at += 1;
        }
        while matches!(self.input.get(at), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            at += 1;
        }
        self.input.get(at) == Some(&b'=') && self.input.get(at + 1) != Some(&b'=')
    }

    fn expect(&mut self, byte: u8) -> Result<(), LuaError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(format!("expected `{}`", char::from(byte))))
        }
    }

    fn number(&mut self) -> Result<f64, LuaError> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
            self.skip_space()?;
        }
        let digits_start = self.pos;
        let is_hex = self.peek() == Some(b'0') && matches!(self.peek_at(1), Some(b'x' | b'X'));
        if is_hex {
            self.pos += 2;
            let hex_start = self.pos;
            while matches!(self.peek(), Some(b) if b.is_ascii_hexdigit()) {
                self.pos += 1;
            }
            let hex = self.input.get(hex_start..self.pos).unwrap_or_default();
            let text = std::str::from_utf8(hex).unwrap_or_default();
            let value = u64::from_str_radix(text, 16).map_err(|_| LuaError {
                offset: start,
                reason: "invalid hexadecimal number".to_owned(),
            })?;
            // Lua wraps hexadecimal integer literals to 64 bits; so does this, by design.
            #[allow(clippy::cast_precision_loss)]
            let value = value as f64;
            return Ok(if negative { -value } else { value });
        }
        while matches!(self.peek(), Some(b'0'..=b'9' | b'.' | b'e' | b'E'))
            || (matches!(self.peek(), Some(b'+' | b'-'))
                && matches!(self.input.get(self.pos.wrapping_sub(1)), Some(b'e' | b'E')))
        {
            self.pos += 1;
        }
        let text = std::str::from_utf8(self.input.get(digits_start..self.pos).unwrap_or_default())
            .unwrap_or_default();
        let value: f64 = text.parse().map_err(|_| LuaError {
            offset: start,
            reason: format!("invalid number {text:?}"),
        })?;
        Ok(if negative { -value } else { value })
    }

    fn string(&mut self, quote: u8) -> Result<Vec<u8>, LuaError> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(byte) = self.peek() else {
                return Err(self.error("unterminated string"));
            };
            if matches!(byte, b'\n' | b'\r') {
                return Err(self.error("line break inside a string"));
            }
            self.pos += 1;
            match byte {
                b if b == quote => return Ok(out),
                b'\\' => self.escape(&mut out)?,
                other => out.push(other),
            }
        }
    }

    /// One escape sequence after its backslash (Lua 5.4 manual §3.1).
    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), LuaError> {
        let Some(byte) = self.peek() else {
            return Err(self.error("unterminated string"));
        };
        self.pos += 1;
        match byte {
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'\\' | b'"' | b'\'' => out.push(byte),
            // A backslash before a line break is a line break (what `%q` writes).
            b'\n' | b'\r' => {
                let other = if byte == b'\n' { b'\r' } else { b'\n' };
                if self.peek() == Some(other) {
                    self.pos += 1;
                }
                out.push(b'\n');
            }
            b'z' => {
                while matches!(self.peek(), Some(b) if b.is_ascii_whitespace()) {
                    self.pos += 1;
                }
            }
            b'x' => {
                let hex = self.input.get(self.pos..self.pos + 2).unwrap_or_default();
                let value = std::str::from_utf8(hex)
                    .ok()
                    .filter(|text| text.len() == 2)
                    .and_then(|text| u8::from_str_radix(text, 16).ok())
                    .ok_or_else(|| self.error("`\\x` needs two hexadecimal digits"))?;
                self.pos += 2;
                out.push(value);
            }
            b'0'..=b'9' => {
                let mut value = u32::from(byte - b'0');
                for _ in 0..2 {
                    match self.peek() {
                        Some(digit @ b'0'..=b'9') => {
                            value = value * 10 + u32::from(digit - b'0');
                            self.pos += 1;
                        }
                        _ => break,
                    }
                }
                let value = u8::try_from(value)
                    .map_err(|_| self.error("decimal escape larger than 255"))?;
                out.push(value);
            }
            b'u' => {
                self.expect(b'{')?;
                let start = self.pos;
                while matches!(self.peek(), Some(b) if b.is_ascii_hexdigit()) {
                    self.pos += 1;
                }
                let text = std::str::from_utf8(self.input.get(start..self.pos).unwrap_or_default())
                    .unwrap_or_default();
                let code = u32::from_str_radix(text, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| self.error("invalid `\\u{...}` escape"))?;
                self.expect(b'}')?;
                let mut buf = [0; 4];
                out.extend_from_slice(code.encode_utf8(&mut buf).as_bytes());
            }
            _ => return Err(self.error("invalid escape sequence")),
        }
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Value {
        parse_return(text.as_bytes()).expect("parses")
    }

    fn fails(text: &str) -> String {
        parse_return(text.as_bytes())
            .expect_err("must not parse")
            .to_string()
    }

    fn s(text: &str) -> Value {
        Value::Str(text.as_bytes().to_vec())
    }

    fn table(fields: Vec<(Value, Value)>) -> Value {
        Value::Table(Table { fields })
    }

    #[test]
    fn prosody_account_file() {
        let value = parse(
            "return {\n\t[\"iteration_count\"] = 4096;\n\t[\"salt\"] = \"a\\\"b\";\n\
             \t[\"stored_key\"] = \"00ff\";\n};\n",
        );
        assert_eq!(
            value,
            table(vec![
                (s("iteration_count"), Value::Number(4096.0)),
                (s("salt"), s("a\"b")),
                (s("stored_key"), s("00ff")),
            ])
        );
    }

    #[test]
    fn prosody_roster_file_with_false_key_and_sets() {
        let value = parse(
            "return {\n[false] = { [\"version\"] = 3; [\"pending\"] = { [\"c@x\"] = true; }; };\n\
             [\"b@x\"] = { groups = { [\"Friends\"] = true }, subscription = \"both\", name = 'B' };\n};",
        );
        let Value::Table(root) = value else {
            panic!("a table")
        };
        assert_eq!(root.fields.len(), 2);
        assert_eq!(root.fields[0].0, Value::Bool(false));
        let meta = root.fields[0].1.as_table().expect("meta table");
        assert_eq!(meta.get("version"), Some(&Value::Number(3.0)));
        let pending = meta
            .get("pending")
            .and_then(Value::as_table)
            .expect("pending");
        assert_eq!(pending.fields, vec![(s("c@x"), Value::Bool(true))]);
        let bob = root.fields[1].1.as_table().expect("item");
        assert_eq!(bob.get("subscription"), Some(&s("both")));
        assert_eq!(bob.get("name"), Some(&s("B")));
        assert_eq!(
            bob.get("groups"),
            Some(&table(vec![(s("Friends"), Value::Bool(true))]))
        );
    }

    #[test]
    fn string_escapes() {
        assert_eq!(
            parse(r#"return "a\nb\tc\\d\"e\'f\65\066\0671\x41\u{e9}\z   g""#),
            Value::Str(b"a\nb\tc\\d\"e'fAB\x431A\xc3\xa9g".to_vec())
        );
        // What Lua's %q writes for a newline: a backslash, then a real line break.
        assert_eq!(parse("return \"one\\\ntwo\""), s("one\ntwo"));
        // Decimal escapes can make bytes that are not UTF-8.
        assert_eq!(parse(r#"return "\255""#), Value::Str(vec![255]));
        assert_eq!(parse(r#"return "\255""#).as_str(), None);
    }

    #[test]
    fn numbers_booleans_nil_positional_and_comments() {
        assert_eq!(
            parse("-- a comment\nreturn { 1, -2.5, 0x10, 1e3, true, false, nil; } --[[ end ]]"),
            table(vec![
                (Value::Number(1.0), Value::Number(1.0)),
                (Value::Number(2.0), Value::Number(-2.5)),
                (Value::Number(3.0), Value::Number(16.0)),
                (Value::Number(4.0), Value::Number(1000.0)),
                (Value::Number(5.0), Value::Bool(true)),
                (Value::Number(6.0), Value::Bool(false)),
                (Value::Number(7.0), Value::Nil),
            ])
        );
        assert_eq!(parse("return {}"), table(vec![]));
    }

    #[test]
    fn refuses_code_and_malformed_input() {
        assert_eq!(fails("x = 1"), "at byte 0: expected `return`");
        assert_eq!(
            fails("return os.execute('rm')"),
            "at byte 7: only constants are allowed here, not names"
        );
        assert_eq!(
            fails("return { a = b }"),
            "at byte 13: only constants are allowed here, not names"
        );
        assert_eq!(
            fails("return { 1 2 }"),
            "at byte 11: expected `,`, `;` or `}`"
        );
        assert_eq!(fails("return \"abc"), "at byte 11: unterminated string");
        assert_eq!(
            fails("return \"a\nb\""),
            "at byte 9: line break inside a string"
        );
        assert_eq!(
            fails(r#"return "\256""#),
            "at byte 12: decimal escape larger than 255"
        );
        assert_eq!(
            fails(r#"return "\q""#),
            "at byte 10: invalid escape sequence"
        );
        assert_eq!(
            fails("return { 1 }; x"),
            "at byte 14: unexpected text after the returned value"
        );
        assert_eq!(fails("return { [\"a\"] 1 }"), "at byte 15: expected `=`");
        assert_eq!(fails("return {"), "at byte 8: unterminated table");
    }

    #[test]
    fn long_strings_and_comments() {
        assert_eq!(
            parse("--[==[ a ]] comment ]==]\nreturn { [[\nline]], [==[b]]c]==] }"),
            table(vec![
                (Value::Number(1.0), s("line")),
                (Value::Number(2.0), s("b]]c")),
            ])
        );
        assert_eq!(
            fails("return [==[ open ]]"),
            "at byte 7: unterminated long string"
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!("return {}{}", "{".repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
        assert!(parse_return(ok.as_bytes()).is_ok());
        let deep = format!(
            "return {}{}",
            "{".repeat(MAX_DEPTH + 1),
            "}".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(
            parse_return(deep.as_bytes()).map_err(|e| e.reason),
            Err(format!("tables nest deeper than {MAX_DEPTH}"))
        );
    }
}
