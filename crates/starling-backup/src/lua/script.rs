//! Prosody's configuration file read as data: a Lua script whose statements are assignments
//! of constants (`c2s_ports = { 5222 }`) and calls with constant arguments
//! (`VirtualHost "example.com"`, `Component "conference.example.com" "muc"`,
//! `Include "conf.d/*.cfg.lua"`).
//!
//! Nothing is executed. A statement that is anything else — a `local`, an `if` block, a
//! function call on a computed value, an expression such as `"a" .. "b"` or
//! `os.getenv("X")` — is kept as [`StatementKind::Unreadable`] with its first line, and
//! reading goes on after it (after the whole block, for `if … end` and the like), so the caller
//! can say what it could not translate. Only what makes the rest of the file impossible to
//! find (an unterminated string or comment) is an error. Work is linear in the input, which
//! the caller bounds, and table nesting is bounded by [`super::MAX_DEPTH`].

use super::{LuaError, Parser, Value};

/// Most statements one file may hold (a real configuration has a few hundred).
pub const MAX_STATEMENTS: usize = 20_000;

/// Longest excerpt of an unreadable statement kept for messages, in bytes.
const EXCERPT_BYTES: usize = 80;

/// One top-level statement and the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// Line of the statement's first token.
    pub line: usize,
    /// What it is.
    pub kind: StatementKind,
}

/// What a statement is.
#[derive(Debug, Clone, PartialEq)]
pub enum StatementKind {
    /// `name = constant`.
    Assign {
        /// The global assigned to.
        name: String,
        /// The constant.
        value: Value,
    },
    /// `Name "arg"`, `Name ("a", "b")`, `Name "a" "b"` (a chained call), `Name { … }`: a call
    /// of a global with constant arguments, all chained calls' arguments in order.
    Call {
        /// The global called.
        name: String,
        /// Its arguments.
        args: Vec<Value>,
    },
    /// Anything else, skipped; the start of its text (one line, at most 80 bytes).
    Unreadable {
        /// For messages.
        text: String,
    },
}

/// Reads every top-level statement of a configuration script.
pub fn parse_script(input: &[u8]) -> Result<Vec<Statement>, LuaError> {
    let mut parser = Parser { input, pos: 0 };
    let mut lines = LineCounter::default();
    let mut statements = Vec::new();
    loop {
        parser.skip_space()?;
        match parser.peek() {
            None => return Ok(statements),
            Some(b';') => {
                parser.pos += 1;
                continue;
            }
            Some(_) => {}
        }
        if statements.len() >= MAX_STATEMENTS {
            return Err(parser.error(format!("more than {MAX_STATEMENTS} statements")));
        }
        let start = parser.pos;
        let line = lines.line_at(input, start);
        let kind = match parser.statement() {
            Ok(kind) => kind,
            Err(_) => {
                parser.pos = start;
                parser.skip_statement()?;
                StatementKind::Unreadable {
                    text: excerpt(input, start),
                }
            }
        };
        statements.push(Statement { line, kind });
    }
}

/// Lua's reserved words, none of which starts an assignment or a call.
const KEYWORDS: [&str; 22] = [
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in",
    "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
];

impl Parser<'_> {
    /// An assignment or a call of constants, or an error (the caller skips the statement).
    fn statement(&mut self) -> Result<StatementKind, LuaError> {
        let Some(name) = self.name()?.map(str::to_owned) else {
            return Err(self.error("expected a name"));
        };
        if KEYWORDS.contains(&name.as_str()) {
            return Err(self.error(format!("`{name}` is not read")));
        }
        self.skip_space()?;
        let kind = match self.peek() {
            Some(b'=') if self.peek_at(1) != Some(b'=') => {
                self.pos += 1;
                self.skip_space()?;
                let value = self.expression(0)?;
                StatementKind::Assign { name, value }
            }
            Some(b'"' | b'\'' | b'{' | b'(' | b'[') => {
                let mut args = Vec::new();
                while self.call_arguments(&mut args)? {
                    self.skip_space()?;
                }
                StatementKind::Call { name, args }
            }
            _ => return Err(self.error("expected `=` or call arguments")),
        };
        self.expect_statement_end()?;
        Ok(kind)
    }

    /// One call's arguments, here: a string, a table or a parenthesised list of constants.
    /// False when no arguments start here.
    fn call_arguments(&mut self, args: &mut Vec<Value>) -> Result<bool, LuaError> {
        match self.peek() {
            Some(b'"' | b'\'' | b'{') => args.push(self.expression(0)?),
            Some(b'[') if self.long_bracket().is_some() => args.push(self.expression(0)?),
            Some(b'(') => {
                self.pos += 1;
                self.skip_space()?;
                if self.peek() == Some(b')') {
                    self.pos += 1;
                    return Ok(true);
                }
                loop {
                    args.push(self.expression(0)?);
                    self.skip_space()?;
                    match self.peek() {
                        Some(b',') => {
                            self.pos += 1;
                            self.skip_space()?;
                        }
                        Some(b')') => {
                            self.pos += 1;
                            return Ok(true);
                        }
                        _ => return Err(self.error("expected `,` or `)`")),
                    }
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// After a constant statement: the next token must start another statement, so that
    /// `x = "a" .. "b"` or `x = 1 + y` is not taken for `x = "a"`.
    fn expect_statement_end(&mut self) -> Result<(), LuaError> {
        self.skip_space()?;
        let start = self.pos;
        let continues = match self.peek() {
            None | Some(b';') => false,
            Some(b'a'..=b'z' | b'A'..=b'Z' | b'_') => {
                let word = self.name()?.unwrap_or_default();
                let is_operator = matches!(word, "and" | "or");
                self.pos = start;
                is_operator
            }
            Some(_) => true,
        };
        if continues {
            return Err(self.error("the value goes on with more than a constant"));
        }
        Ok(())
    }

    /// Skips the statement starting here: to the end of its line once every bracket and every
    /// block (`if`/`function`/`do`/`repeat` … `end`/`until`) it opened is closed, or to the
    /// end of the input.
    fn skip_statement(&mut self) -> Result<(), LuaError> {
        let mut brackets = 0usize;
        let mut blocks = 0usize;
        let mut consumed = false;
        while let Some(byte) = self.peek() {
            match byte {
                b'\n' if consumed && brackets == 0 && blocks == 0 => {
                    self.pos += 1;
                    return Ok(());
                }
                b'-' if self.peek_at(1) == Some(b'-') => self.skip_comment()?,
                b'"' | b'\'' => {
                    self.string(byte)?;
                }
                b'[' if self.long_bracket().is_some() => {
                    if let Some(level) = self.long_bracket() {
                        self.long_text(level)?;
                    }
                }
                b'a'..=b'z' | b'A'..=b'Z' | b'_' => match self.name()?.unwrap_or_default() {
                    "if" | "function" | "do" | "repeat" => blocks += 1,
                    "end" | "until" => blocks = blocks.saturating_sub(1),
                    _ => {}
                },
                b'(' | b'{' | b'[' => {
                    brackets += 1;
                    self.pos += 1;
                }
                b')' | b'}' | b']' => {
                    brackets = brackets.saturating_sub(1);
                    self.pos += 1;
                }
                _ => self.pos += 1,
            }
            consumed = true;
        }
        Ok(())
    }
}

/// The statement's first line from `start`, at most [`EXCERPT_BYTES`] (cut at a character).
fn excerpt(input: &[u8], start: usize) -> String {
    let rest = input.get(start..).unwrap_or_default();
    let line = rest.split(|b| *b == b'\n').next().unwrap_or_default();
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end();
    if text.len() <= EXCERPT_BYTES {
        return text.to_owned();
    }
    let mut end = EXCERPT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", text.get(..end).unwrap_or_default())
}

/// Line numbers of offsets asked for in increasing order, in linear time overall.
#[derive(Default)]
struct LineCounter {
    offset: usize,
    line: usize,
}

impl LineCounter {
    fn line_at(&mut self, input: &[u8], offset: usize) -> usize {
        let from = self.offset.min(offset);
        let newlines = input
            .get(from..offset)
            .unwrap_or_default()
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        self.line += newlines;
        self.offset = offset;
        self.line + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lua::Table;

    fn read(text: &str) -> Vec<Statement> {
        parse_script(text.as_bytes()).expect("reads")
    }

    fn s(text: &str) -> Value {
        Value::Str(text.as_bytes().to_vec())
    }

    fn assign(line: usize, name: &str, value: Value) -> Statement {
        Statement {
            line,
            kind: StatementKind::Assign {
                name: name.to_owned(),
                value,
            },
        }
    }

    fn call(line: usize, name: &str, args: Vec<Value>) -> Statement {
        Statement {
            line,
            kind: StatementKind::Call {
                name: name.to_owned(),
                args,
            },
        }
    }

    fn unreadable(line: usize, text: &str) -> Statement {
        Statement {
            line,
            kind: StatementKind::Unreadable {
                text: text.to_owned(),
            },
        }
    }

    #[test]
    fn prosody_statements() {
        let statements = read(
            "-- Prosody Example Configuration File\n\
             admins = { }\n\
             modules_enabled = {\n\t\t\"disco\"; -- Service discovery\n\t\t--\"mam\";\n\t\"roster\";\n}\n\
             pidfile = \"/run/prosody/prosody.pid\";\n\
             c2s_ports = { 5222 }\n\
             ssl = { certificate = \"a.crt\", key = [[a.key]] }\n\
             VirtualHost \"localhost\"\n\
             \tenabled = false -- Remove this line to enable this host\n\
             Component \"conference.example.com\" \"muc\"\n\
             Include(\"conf.d/*.cfg.lua\")\n\
             --[==[ a long\n comment ]==]\n",
        );
        let list = |items: &[&str]| {
            Value::Table(Table {
                fields: items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| (Value::Number((i + 1) as f64), s(item)))
                    .collect(),
            })
        };
        assert_eq!(
            statements,
            [
                assign(2, "admins", Value::Table(Table::default())),
                assign(3, "modules_enabled", list(&["disco", "roster"])),
                assign(8, "pidfile", s("/run/prosody/prosody.pid")),
                assign(
                    9,
                    "c2s_ports",
                    Value::Table(Table {
                        fields: vec![(Value::Number(1.0), Value::Number(5222.0))]
                    })
                ),
                assign(
                    10,
                    "ssl",
                    Value::Table(Table {
                        fields: vec![(s("certificate"), s("a.crt")), (s("key"), s("a.key"))]
                    })
                ),
                call(11, "VirtualHost", vec![s("localhost")]),
                assign(12, "enabled", Value::Bool(false)),
                call(13, "Component", vec![s("conference.example.com"), s("muc")]),
                call(14, "Include", vec![s("conf.d/*.cfg.lua")]),
            ]
        );
    }

    #[test]
    fn code_is_skipped_and_named_never_run() {
        let statements = read(
            "local secret = os.getenv(\"SECRET\")\n\
             component_secret = secret\n\
             if os.getenv(\"DEBUG\") then\n  log = \"debug\"\n  x = { 1,\n 2 }\nend\n\
             data_path = \"/var/lib/\" .. \"prosody\"\n\
             c2s_timeout = 60 * 5\n\
             os.execute(\"rm -rf /\")\n\
             function f() return 1 end\n\
             allow_registration = false or true\n\
             storage = \"internal\"\n",
        );
        assert_eq!(
            statements,
            [
                unreadable(1, "local secret = os.getenv(\"SECRET\")"),
                unreadable(2, "component_secret = secret"),
                unreadable(3, "if os.getenv(\"DEBUG\") then"),
                unreadable(8, "data_path = \"/var/lib/\" .. \"prosody\""),
                unreadable(9, "c2s_timeout = 60 * 5"),
                unreadable(10, "os.execute(\"rm -rf /\")"),
                unreadable(11, "function f() return 1 end"),
                unreadable(12, "allow_registration = false or true"),
                assign(13, "storage", s("internal")),
            ]
        );
    }

    #[test]
    fn an_unreadable_table_is_skipped_to_its_end() {
        let statements =
            read("modules_enabled = {\n \"a\";\n get_more();\n \"b\";\n}\nc2s_ports = { 5222 }\n");
        assert_eq!(statements.len(), 2);
        assert_eq!(statements[0], unreadable(1, "modules_enabled = {"));
        assert_eq!(statements[1].line, 6);
    }

    #[test]
    fn unterminated_text_is_an_error_with_its_place() {
        let err = parse_script(b"a = 1\nb = \"open\n").unwrap_err();
        assert_eq!(err.reason, "line break inside a string");
        let err = parse_script(b"a = 1\n--[[ never closed").unwrap_err();
        assert_eq!(err.reason, "unterminated long comment");
        let err = parse_script(b"x = y .. \"open").unwrap_err();
        assert_eq!(err.reason, "unterminated string");
    }

    #[test]
    fn hostile_input_is_bounded() {
        // Deep nesting fails within the bound instead of recursing without end, and the
        // statement is skipped.
        let deep = format!("x = {}{}\ny = 1\n", "{".repeat(10_000), "}".repeat(10_000));
        let statements = read(&deep);
        assert!(matches!(
            statements[0].kind,
            StatementKind::Unreadable { .. }
        ));
        assert_eq!(statements[1], assign(2, "y", Value::Number(1.0)));
        // Too many statements.
        let many = "a = 1\n".repeat(MAX_STATEMENTS + 1);
        assert_eq!(
            parse_script(many.as_bytes()).unwrap_err().reason,
            format!("more than {MAX_STATEMENTS} statements")
        );
        // A megabyte of junk on one line is one excerpt of bounded size, read in linear time.
        let junk = format!("{}\n", "(".repeat(1 << 20));
        let started = std::time::Instant::now();
        let statements = read(&junk);
        assert_eq!(statements.len(), 1);
        let StatementKind::Unreadable { text } = &statements[0].kind else {
            panic!("junk is unreadable");
        };
        assert!(text.len() <= EXCERPT_BYTES + '…'.len_utf8());
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        // Lines deep into a big file are counted right.
        let long = format!("{}z = 2\n", "a = 1\n".repeat(5_000));
        assert_eq!(
            read(&long).last(),
            Some(&assign(5_001, "z", Value::Number(2.0)))
        );
    }

    #[test]
    fn calls_with_parentheses_tables_and_empty_arguments() {
        assert_eq!(
            read("Host \"*\"\nRunScript()\nX { a = 1 }\nVirtualHost(\"a\", 'b')\n"),
            [
                call(1, "Host", vec![s("*")]),
                call(2, "RunScript", vec![]),
                call(
                    3,
                    "X",
                    vec![Value::Table(Table {
                        fields: vec![(s("a"), Value::Number(1.0))]
                    })]
                ),
                call(4, "VirtualHost", vec![s("a"), s("b")]),
            ]
        );
    }
}
