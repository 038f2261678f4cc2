//! The first stage of config loading: JSON text to a tree that remembers where each value stood.
//!
//! Only syntax is checked here. Every value keeps its line and column so that the second stage
//! ([`super::reader`]) can point at the exact place of a wrong type or a bad value. Duplicate keys
//! are refused: with JSON's usual "last one wins" a typo'd override passes unnoticed.

use std::fmt;

/// Deepest nesting accepted; real configs use four or five levels.
const MAX_DEPTH: usize = 64;

/// A place in the text, both 1-based; the column counts characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    /// Line number, from 1.
    pub line: u32,
    /// Column number in characters, from 1.
    pub column: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A JSON value and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where the value starts.
    pub pos: Pos,
}

/// A JSON value whose children are [`Node`]s.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`
    Null,
    /// `true` or `false`
    Bool(bool),
    /// A number; `text` is kept so integers too large for a float stay exact.
    Number {
        /// The number as written.
        text: String,
    },
    /// A string, unescaped.
    String(String),
    /// An array.
    Array(Vec<Node>),
    /// An object, in the order written.
    Object(Vec<(String, Node)>),
}

impl Value {
    /// A short description of the value for error messages: `the string "ten"`, `a number`.
    pub fn describe(&self) -> String {
        match self {
            Value::Null => "null".into(),
            Value::Bool(b) => format!("{b}"),
            Value::Number { text } => format!("the number {text}"),
            Value::String(s) => crate::quote::quote(s),
            Value::Array(_) => "an array".into(),
            Value::Object(_) => "an object".into(),
        }
    }
}

/// Text that is not valid JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Where the parser stopped.
    pub pos: Pos,
    /// What it expected there.
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pos, self.message)
    }
}

impl std::error::Error for SyntaxError {}

/// Parses a whole document: one value, surrounded by nothing but white space.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut p = Parser {
        text,
        at: 0,
        line: 1,
        column: 1,
    };
    p.skip_space();
    let node = p.value(0)?;
    p.skip_space();
    if p.at < text.len() {
        return Err(p.error("nothing after the top-level value"));
    }
    Ok(node)
}

struct Parser<'t> {
    text: &'t str,
    at: usize,
    line: u32,
    column: u32,
}

impl Parser<'_> {
    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }

    fn error(&self, expected: &str) -> SyntaxError {
        let found = match self.peek() {
            None => "the end of the file".to_owned(),
            Some(c) => format!("{:?}", c),
        };
        SyntaxError {
            pos: self.pos(),
            message: format!("expected {expected}, found {found}"),
        }
    }

    fn peek(&self) -> Option<char> {
        self.text[self.at..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn skip_space(&mut self) {
        while let Some(' ' | '\t' | '\n' | '\r') = self.peek() {
            self.bump();
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(SyntaxError {
                pos: self.pos(),
                message: format!("nesting deeper than {MAX_DEPTH} levels"),
            });
        }
        let pos = self.pos();
        let value = match self.peek() {
            Some('{') => self.object(depth)?,
            Some('[') => self.array(depth)?,
            Some('"') => Value::String(self.string()?),
            Some('t') => self.keyword("true", Value::Bool(true))?,
            Some('f') => self.keyword("false", Value::Bool(false))?,
            Some('n') => self.keyword("null", Value::Null)?,
            Some('-' | '0'..='9') => self.number()?,
            _ => return Err(self.error("a value")),
        };
        Ok(Node { value, pos })
    }

    fn keyword(&mut self, word: &str, value: Value) -> Result<Value, SyntaxError> {
        if self.text[self.at..].starts_with(word) {
            for _ in 0..word.len() {
                self.bump();
            }
            Ok(value)
        } else {
            Err(self.error("a value"))
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        self.bump();
        let mut entries: Vec<(String, Node)> = Vec::new();
        self.skip_space();
        if self.eat('}') {
            return Ok(Value::Object(entries));
        }
        loop {
            self.skip_space();
            let key_pos = self.pos();
            if self.peek() != Some('"') {
                return Err(self.error("a key in double quotes"));
            }
            let key = self.string()?;
            if entries.iter().any(|(k, _)| *k == key) {
                return Err(SyntaxError {
                    pos: key_pos,
                    message: format!("duplicate key \"{}\"", key.escape_debug()),
                });
            }
            self.skip_space();
            if !self.eat(':') {
                return Err(self.error("':' after the key"));
            }
            self.skip_space();
            let node = self.value(depth + 1)?;
            entries.push((key, node));
            self.skip_space();
            if self.eat('}') {
                return Ok(Value::Object(entries));
            }
            if !self.eat(',') {
                return Err(self.error("',' or '}'"));
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        self.bump();
        let mut items = Vec::new();
        self.skip_space();
        if self.eat(']') {
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_space();
            items.push(self.value(depth + 1)?);
            self.skip_space();
            if self.eat(']') {
                return Ok(Value::Array(items));
            }
            if !self.eat(',') {
                return Err(self.error("',' or ']'"));
            }
        }
    }

    fn number(&mut self) -> Result<Value, SyntaxError> {
        let start = self.at;
        self.eat('-');
        match self.peek() {
            Some('0') => {
                self.bump();
            }
            Some('1'..='9') => self.digits(),
            _ => return Err(self.error("a digit")),
        }
        if self.eat('.') {
            if !matches!(self.peek(), Some('0'..='9')) {
                return Err(self.error("a digit after '.'"));
            }
            self.digits();
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            self.bump();
            if !self.eat('+') {
                self.eat('-');
            }
            if !matches!(self.peek(), Some('0'..='9')) {
                return Err(self.error("a digit in the exponent"));
            }
            self.digits();
        }
        Ok(Value::Number {
            text: self.text[start..self.at].to_owned(),
        })
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some('0'..='9')) {
            self.bump();
        }
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        self.bump();
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.error("a closing '\"'")),
                Some('"') => {
                    self.bump();
                    return Ok(out);
                }
                Some('\\') => {
                    self.bump();
                    let c = match self.bump() {
                        Some('"') => '"',
                        Some('\\') => '\\',
                        Some('/') => '/',
                        Some('b') => '\u{8}',
                        Some('f') => '\u{c}',
                        Some('n') => '\n',
                        Some('r') => '\r',
                        Some('t') => '\t',
                        Some('u') => self.unicode_escape()?,
                        _ => return Err(self.error("a valid escape such as \\n or \\u00e9")),
                    };
                    out.push(c);
                }
                Some(c) if (c as u32) < 0x20 => {
                    return Err(self.error("no control character inside a string"));
                }
                Some(c) => {
                    self.bump();
                    out.push(c);
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let mut v = 0;
        for _ in 0..4 {
            let d = self
                .peek()
                .and_then(|c| c.to_digit(16))
                .ok_or_else(|| self.error("four hex digits after \\u"))?;
            self.bump();
            v = v * 16 + d;
        }
        Ok(v)
    }

    fn unicode_escape(&mut self) -> Result<char, SyntaxError> {
        let first = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&first) {
            if !(self.eat('\\') && self.eat('u')) {
                return Err(self.error("the second half of a surrogate pair"));
            }
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err(self.error("a low surrogate"));
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else {
            first
        };
        char::from_u32(code).ok_or_else(|| self.error("a valid unicode code point"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_values_with_positions() {
        let doc =
            parse("{\n  \"a\": [1, -2.5e3, true, null],\n  \"b\": \"x\\u00e9\\ud83d\\ude00\"\n}")
                .unwrap();
        let Value::Object(entries) = &doc.value else {
            panic!("not an object")
        };
        assert_eq!(entries[0].0, "a");
        assert_eq!(entries[0].1.pos, Pos { line: 2, column: 8 });
        let Value::Array(items) = &entries[0].1.value else {
            panic!("not an array")
        };
        assert_eq!(
            items[1].value,
            Value::Number {
                text: "-2.5e3".into()
            }
        );
        assert_eq!(entries[1].1.value, Value::String("xé😀".into()));
    }

    #[test]
    fn reports_where_syntax_breaks() {
        let err = parse("{\n  \"a\": 1,\n  \"b\" 2\n}").unwrap_err();
        assert_eq!(err.pos, Pos { line: 3, column: 7 });
        assert_eq!(err.message, "expected ':' after the key, found '2'");
        let err = parse("[1, 2").unwrap_err();
        assert_eq!(
            err.message,
            "expected ',' or ']', found the end of the file"
        );
        assert!(parse("{} x").is_err());
        assert!(parse("01").is_err());
        assert!(parse("\"\\x\"").is_err());
        assert!(parse("\"\\ud800\"").is_err());
    }

    #[test]
    fn refuses_duplicate_keys() {
        let err = parse("{\"a\": 1, \"a\": 2}").unwrap_err();
        assert_eq!(err.message, "duplicate key \"a\"");
        assert_eq!(
            err.pos,
            Pos {
                line: 1,
                column: 10
            }
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let text = "[".repeat(100_000);
        assert!(parse(&text).unwrap_err().message.contains("nesting"));
    }
}
