//! A small JSON value and writer for `--json=pretty|short`, and a strict pull reader for
//! the JSON we read (the verity signature partition). No serde in the initrd.

use std::fmt::Write;

/// A JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// An unsigned integer (timestamps in µs, counts).
    UInt(u64),
    /// A string.
    Str(String),
    /// An array.
    Array(Vec<Json>),
    /// An object with keys in insertion order.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// An object from `(key, value)` pairs.
    pub fn obj<const N: usize>(pairs: [(&str, Json); N]) -> Json {
        Json::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    /// A string value.
    pub fn str(s: impl Into<String>) -> Json {
        Json::Str(s.into())
    }

    /// The value of `key` in an object (`None` for another value or a missing key).
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(v) => v.iter().find(|(k, _)| k == key).map(|(_, x)| x),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The elements, if this is an array (else none).
    pub fn items(&self) -> &[Json] {
        match self {
            Json::Array(v) => v,
            _ => &[],
        }
    }

    /// Renders: `pretty` as systemd's sd-json prints with `--json=pretty` (a tab per
    /// level, `"key" : value`, empty arrays and objects as `[]` / `{}`), else on one line
    /// without spaces (`--json=short`).
    pub fn render(&self, pretty: bool) -> String {
        let mut out = String::new();
        if pretty {
            self.write_pretty(&mut out, "");
        } else {
            self.write_short(&mut out);
        }
        out
    }

    fn write_short(&self, out: &mut String) {
        match self {
            Json::Array(v) => {
                out.push('[');
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    x.write_short(out);
                }
                out.push(']');
            }
            Json::Object(v) => {
                out.push('{');
                for (i, (k, x)) in v.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    escape_into(out, k);
                    out.push(':');
                    x.write_short(out);
                }
                out.push('}');
            }
            scalar => scalar.write_scalar(out),
        }
    }

    fn write_pretty(&self, out: &mut String, prefix: &str) {
        let inner = match self {
            Json::Array(v) if !v.is_empty() => format!("{prefix}\t"),
            Json::Object(v) if !v.is_empty() => format!("{prefix}\t"),
            Json::Array(_) => return out.push_str("[]"),
            Json::Object(_) => return out.push_str("{}"),
            scalar => return scalar.write_scalar(out),
        };
        match self {
            Json::Array(v) if !v.is_empty() => {
                out.push_str("[\n");
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        out.push_str(",\n");
                    }
                    out.push_str(&inner);
                    x.write_pretty(out, &inner);
                }
                let _ = write!(out, "\n{prefix}]");
            }
            Json::Object(v) if !v.is_empty() => {
                out.push_str("{\n");
                for (i, (k, x)) in v.iter().enumerate() {
                    if i > 0 {
                        out.push_str(",\n");
                    }
                    out.push_str(&inner);
                    escape_into(out, k);
                    out.push_str(" : ");
                    x.write_pretty(out, &inner);
                }
                let _ = write!(out, "\n{prefix}}}");
            }
            _ => {}
        }
    }

    fn write_scalar(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::UInt(n) => {
                let _ = write!(out, "{n}");
            }
            Json::Str(s) => escape_into(out, s),
            Json::Array(_) | Json::Object(_) => self.write_short(out),
        }
    }
}

fn escape_into(out: &mut String, s: &str) {
    out.push('"');
    // Runs that need no escape are copied whole (the common case: names, paths, hex).
    let mut rest = s;
    while let Some(i) = rest.find(|c: char| {
        matches!(c, '"' | '\\') || (c as u32) < 0x20 || ('\u{7f}'..='\u{9f}').contains(&c)
    }) {
        out.push_str(&rest[..i]);
        let c = rest[i..].chars().next().unwrap_or_default();
        escape_char(out, c);
        rest = &rest[i + c.len_utf8()..];
    }
    out.push_str(rest);
    out.push('"');
}

/// One character of a JSON string, escaped where it must be.
fn escape_char(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        // Control characters (C0, DEL, C1) as `\u00XX`, so JSON printed to a
        // terminal cannot drive it either.
        c if (c as u32) < 0x20 || ('\u{7f}'..='\u{9f}').contains(&c) => {
            let _ = write!(out, "\\u{:04x}", c as u32);
        }
        c => out.push(c),
    }
}

/// Why JSON text was refused: what was wrong, and at which byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{reason} at byte {offset}")]
pub struct JsonError {
    /// Byte offset into the JSON text.
    pub offset: usize,
    /// What was wrong.
    pub reason: &'static str,
}

/// A small strict JSON reader (RFC 8259) that pulls from text: strings with every escape
/// decoded (surrogate pairs joined; lone surrogates and `\u0000` refused), and numbers,
/// literals, arrays and objects validated and skipped, with nesting bounded. The caller
/// walks the structure it expects with [`Reader::peek`], [`Reader::expect`] and
/// [`Reader::string`], and skips whatever else with [`Reader::skip_value`]; errors carry
/// the byte offset. It never panics and never recurses deeper than `max_depth`.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    s: &'a str,
    pos: usize,
    max_depth: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `s`; arrays and objects nested deeper than `max_depth`
    /// (the outermost counts as 1) are refused.
    pub fn new(s: &'a str, max_depth: usize) -> Self {
        Self {
            s,
            pos: 0,
            max_depth,
        }
    }

    /// The byte offset reached.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Is all the text consumed?
    pub fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    /// An error at the current offset.
    pub fn error(&self, reason: &'static str) -> JsonError {
        JsonError {
            offset: self.pos,
            reason,
        }
    }

    /// The next byte, not consumed.
    pub fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    /// Consumes one byte (after a [`Reader::peek`] showed it).
    pub fn bump(&mut self) {
        if self.pos < self.s.len() {
            self.pos += 1;
        }
    }

    /// Skips JSON whitespace.
    pub fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Consumes `c`, or fails with `reason`.
    pub fn expect(&mut self, c: u8, reason: &'static str) -> Result<(), JsonError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(reason))
        }
    }

    /// Validates and skips one value; `depth` is the nesting level an array or object
    /// here would open (the outermost is 1).
    pub fn skip_value(&mut self, depth: usize) -> Result<(), JsonError> {
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b'{' | b'[') if depth > self.max_depth => Err(self.error("nesting too deep")),
            Some(b'{') => self.object(|r, _| r.skip_value(depth + 1)),
            Some(b'[') => self.array(|r| r.skip_value(depth + 1)),
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            Some(b'-' | b'0'..=b'9') => self.skip_number(),
            Some(_) => Err(self.error("unexpected character")),
            None => Err(self.error("unexpected end of JSON")),
        }
    }

    /// Reads one value into a [`Json`] (the reader at its first byte; `depth` as in
    /// [`Reader::skip_value`]). A number that is not an unsigned integer within `u64` is
    /// validated and read as `null` (no JSON we read back carries one).
    pub fn value(&mut self, depth: usize) -> Result<Json, JsonError> {
        match self.peek() {
            Some(b'"') => self.string().map(Json::Str),
            Some(b'{' | b'[') if depth > self.max_depth => Err(self.error("nesting too deep")),
            Some(b'{') => {
                let mut pairs = Vec::new();
                self.object(|r, key| {
                    pairs.push((key, r.value(depth + 1)?));
                    Ok::<(), JsonError>(())
                })?;
                Ok(Json::Object(pairs))
            }
            Some(b'[') => {
                let mut items = Vec::new();
                self.array(|r| {
                    items.push(r.value(depth + 1)?);
                    Ok::<(), JsonError>(())
                })?;
                Ok(Json::Array(items))
            }
            Some(b't') => self.literal("true").map(|()| Json::Bool(true)),
            Some(b'f') => self.literal("false").map(|()| Json::Bool(false)),
            Some(b'n') => self.literal("null").map(|()| Json::Null),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.pos;
                self.skip_number()?;
                Ok(self.s[start..self.pos]
                    .parse()
                    .map(Json::UInt)
                    .unwrap_or(Json::Null))
            }
            Some(_) => Err(self.error("unexpected character")),
            None => Err(self.error("unexpected end of JSON")),
        }
    }

    /// A whole JSON text as one value (whitespace around it allowed, nothing after it).
    pub fn document(s: &str, max_depth: usize) -> Result<Json, JsonError> {
        let mut r = Reader::new(s, max_depth);
        r.skip_ws();
        let v = r.value(1)?;
        r.skip_ws();
        if !r.at_end() {
            return Err(r.error("text after the JSON value"));
        }
        Ok(v)
    }

    /// Walks an object (the reader at its `{`): `member` gets each key with the reader at
    /// its value, and must consume the value. Nesting below is the caller's to bound.
    pub fn object<E: From<JsonError>>(
        &mut self,
        mut member: impl FnMut(&mut Self, String) -> Result<(), E>,
    ) -> Result<(), E> {
        self.items(b'{', b'}', |r| {
            if r.peek() != Some(b'"') {
                return Err(r.error("expected a string key").into());
            }
            let key = r.string()?;
            r.skip_ws();
            r.expect(b':', "expected ':'")?;
            r.skip_ws();
            member(r, key)
        })
    }

    /// Walks an array (the reader at its `[`): `item` gets the reader at each item, and
    /// must consume it. Nesting below is the caller's to bound.
    pub fn array<E: From<JsonError>>(
        &mut self,
        item: impl FnMut(&mut Self) -> Result<(), E>,
    ) -> Result<(), E> {
        self.items(b'[', b']', item)
    }

    /// The comma-separated entries between `open` and `close`.
    fn items<E: From<JsonError>>(
        &mut self,
        open: u8,
        close: u8,
        mut entry: impl FnMut(&mut Self) -> Result<(), E>,
    ) -> Result<(), E> {
        self.expect(open, "expected an array or object")?;
        self.skip_ws();
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            entry(self)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(c) if c == close => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.error("expected ',' or a closing bracket").into()),
            }
        }
    }

    /// Reads `true` or `false`.
    pub fn boolean(&mut self) -> Result<bool, JsonError> {
        match self.peek() {
            Some(b't') => self.literal("true").map(|()| true),
            Some(b'f') => self.literal("false").map(|()| false),
            _ => Err(self.error("expected a boolean")),
        }
    }

    fn literal(&mut self, word: &'static str) -> Result<(), JsonError> {
        if self.s[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error("invalid literal"))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn skip_number(&mut self) -> Result<(), JsonError> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.error("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.error("invalid number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.error("invalid number"));
            }
        }
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let digits = self
            .s
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.error("truncated \\u escape"))?;
        if !digits.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(self.error("invalid \\u escape"));
        }
        let v = u32::from_str_radix(digits, 16).map_err(|_| self.error("invalid \\u escape"))?;
        self.pos += 4;
        Ok(v)
    }

    /// Reads a string; the reader must be at its opening quote.
    pub fn string(&mut self) -> Result<String, JsonError> {
        self.expect(b'"', "expected a string")?;
        let mut out = String::new();
        loop {
            let start = self.pos;
            // Copy the run of plain characters (quote and backslash are ASCII, so `start`
            // and `pos` stay on char boundaries).
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(&self.s[start..self.pos]);
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let e = self
                        .peek()
                        .ok_or_else(|| self.error("unterminated string"))?;
                    self.pos += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(self.error("invalid escape")),
                    };
                    out.push(c);
                }
                Some(_) => return Err(self.error("control character in string")),
            }
        }
    }

    /// The character of a `\u` escape (after `\u`), joining surrogate pairs.
    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let hi = self.hex4()?;
        let cp = if (0xd800..0xdc00).contains(&hi) {
            if !self.s[self.pos..].starts_with("\\u") {
                return Err(self.error("unpaired surrogate"));
            }
            self.pos += 2;
            let lo = self.hex4()?;
            if !(0xdc00..0xe000).contains(&lo) {
                return Err(self.error("unpaired surrogate"));
            }
            0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
        } else if (0xdc00..0xe000).contains(&hi) {
            return Err(self.error("unpaired surrogate"));
        } else {
            hi
        };
        if cp == 0 {
            return Err(self.error("NUL character in string"));
        }
        char::from_u32(cp).ok_or_else(|| self.error("invalid \\u escape"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders() {
        let v = Json::Array(vec![Json::obj([
            ("name", Json::str("a\"b\n\u{1}\u{7f}\u{9b}é")),
            ("time", Json::UInt(12)),
            ("x", Json::Null),
            ("e", Json::Array(vec![])),
        ])]);
        assert_eq!(
            v.render(false),
            r#"[{"name":"a\"b\n\u0001\u007f\u009bé","time":12,"x":null,"e":[]}]"#
        );
        // systemd 262's `--json=pretty`, as its `status` printed it.
        let st = Json::Array(vec![Json::obj([
            ("hierarchy", Json::str("/usr")),
            ("extensions", Json::Array(vec![])),
            ("since", Json::Null),
        ])]);
        assert_eq!(
            st.render(true),
            "[\n\t{\n\t\t\"hierarchy\" : \"/usr\",\n\t\t\"extensions\" : [],\n\t\t\"since\" : null\n\t}\n]"
        );
    }
    fn skip(s: &str, max_depth: usize) -> Result<usize, JsonError> {
        let mut r = Reader::new(s, max_depth);
        r.skip_ws();
        r.skip_value(1)?;
        r.skip_ws();
        Ok(r.pos())
    }

    #[test]
    fn reads_strings() {
        let mut r = Reader::new(r#""a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00é" x"#, 4);
        assert_eq!(r.string().unwrap(), "a\"\\/\u{8}\u{c}\n\r\té😀é");
        assert_eq!(r.peek(), Some(b' '));
        r.bump();
        r.bump();
        assert!(r.at_end());
        for (bad, reason) in [
            ("x", "expected a string"),
            ("\"abc", "unterminated string"),
            ("\"\\", "unterminated string"),
            ("\"\\x\"", "invalid escape"),
            ("\"\u{1}\"", "control character in string"),
            ("\"\\u12zz\"", "invalid \\u escape"),
            ("\"\\u12", "truncated \\u escape"),
            ("\"\\u+123\"", "invalid \\u escape"),
            ("\"\\ud800\"", "unpaired surrogate"),
            ("\"\\ud800\\u0041\"", "unpaired surrogate"),
            ("\"\\udc00\"", "unpaired surrogate"),
            ("\"\\u0000\"", "NUL character in string"),
        ] {
            let err = Reader::new(bad, 4).string().unwrap_err();
            assert_eq!(err.reason, reason, "{bad:?}");
        }
    }

    #[test]
    fn skips_values() {
        for ok in [
            "0",
            "-0.5e+10",
            "12E3",
            "true",
            "false",
            "null",
            "[]",
            "{}",
            r#" [1, "a", {"b": [null, {}]}, -2.0] "#,
        ] {
            assert_eq!(skip(ok, 4), Ok(ok.len()), "{ok:?}");
        }
        for (bad, reason, offset) in [
            ("", "unexpected end of JSON", 0),
            ("-", "invalid number", 1),
            ("1.", "invalid number", 2),
            ("1e", "invalid number", 2),
            ("tru", "invalid literal", 0),
            ("[1 2]", "expected ',' or a closing bracket", 3),
            ("{1: 2}", "expected a string key", 1),
            ("{\"a\" 2}", "expected ':'", 5),
            ("[[[[]]]]", "nesting too deep", 3),
            ("@", "unexpected character", 0),
        ] {
            assert_eq!(skip(bad, 3), Err(JsonError { offset, reason }), "{bad:?}");
        }
    }
}
