//! os-release(5) / extension-release env-file parsing, and the host's identity.
//!
//! [`EnvFile::parse`] is a byte-for-byte port of systemd's `parse_env_file_internal`
//! state machine (`src/basic/env-file.c`, v254+), with the pair-collecting push
//! function of `load_env_file_pairs` (a repeated key keeps its first position and
//! takes the last value). The few places where we deliberately differ are listed on
//! [`EnvFile::parse`].

use std::collections::HashMap;

/// A parse failure that makes the whole file unusable (systemd: invalid UTF-8 → EINVAL).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct EnvError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// A line that systemd drops silently; we keep it as a warning to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvWarning {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// At most this many warnings are kept per file: a file of 64 MiB of lines without `=`
/// would otherwise keep tens of millions of them.
pub const MAX_WARNINGS: usize = 100;

/// A parsed env file: assignments in file order (a repeated key keeps its first position
/// and its last value), plus warnings for dropped lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvFile {
    pairs: Vec<(String, String)>,
    /// Assignments left out ([`EnvFile::parse_keys`], [`EnvFile::retain_keys`]): the
    /// file had assignments even if none is kept.
    dropped: usize,
    /// Lines systemd would drop silently (no `=`), with line numbers: the first
    /// [`MAX_WARNINGS`].
    pub warnings: Vec<EnvWarning>,
}

/// Reason recorded for a line without `=`.
pub const WARN_NO_EQUALS: &str = "no '=' in line, ignored";
/// Reason recorded for a comment that is not valid UTF-8.
pub const WARN_COMMENT_UTF8: &str = "invalid UTF-8 in comment, ignored";
/// Reason of the error for invalid UTF-8 in a key or value.
pub const ERR_UTF8: &str = "invalid UTF-8";
/// Reason of the error for a NUL byte.
pub const ERR_NUL: &str = "NUL byte";

impl EnvFile {
    /// Parses env-file bytes with systemd's rules (`parse_env_file_internal`).
    ///
    /// Deliberate differences from systemd:
    /// - A line without `=` is dropped, as systemd does, but also recorded in
    ///   [`EnvFile::warnings`] (`no '=' in line, ignored`).
    /// - A NUL byte anywhere is an error (`NUL byte`). systemd stops scanning at the first
    ///   NUL of its read buffer (undefined as far as the format goes); we refuse the file.
    /// - Invalid UTF-8 in a key or value is an error for the whole file, exactly as in
    ///   systemd (whose `utf8_is_valid` also refuses the noncharacters U+FDD0..U+FDEF and
    ///   U+xFFFE/U+xFFFF; so do we). The error's line is the physical line of the first
    ///   offending byte (systemd reports its own, less precise, line counter).
    ///   Not a difference, but worth knowing: invalid UTF-8 in a comment or in a dropped
    ///   line is not an error in systemd (those bytes never reach its UTF-8 check) and is
    ///   not one here either, so both accept such a file; a comment with invalid UTF-8 is
    ///   recorded as a warning.
    /// - Line numbers are physical lines: a line ends at `\n`, `\r\n` or a lone `\r`
    ///   (systemd's parser treats `\r` and `\n` alike, so CRLF ends the line at `\r` and
    ///   the `\n` is a blank line; only the numbering differs, not the result).
    pub fn parse(data: &[u8]) -> Result<EnvFile, EnvError> {
        Self::parse_with(data, None)
    }

    /// [`EnvFile::parse`], keeping only the assignments whose key `keep` accepts. The
    /// others are checked all the same (invalid UTF-8 in any of them fails the file, as
    /// in systemd), but neither stored nor indexed: memory stays about the file's size
    /// whatever it holds (64 MiB of distinct keys would otherwise take ~1 GiB).
    pub fn parse_keys(data: &[u8], keep: impl Fn(&str) -> bool) -> Result<EnvFile, EnvError> {
        Self::parse_with(data, Some(&keep))
    }

    fn parse_with(data: &[u8], keep: Option<&dyn Fn(&str) -> bool>) -> Result<EnvFile, EnvError> {
        let mut p = Parser::new();
        p.keep = keep;
        // Bytes up to the first NUL are parsed; errors found before it come first.
        let end = memchr::memchr(0, data).unwrap_or(data.len());
        let mut i = 0;
        while i < end {
            if p.state == State::Comment {
                // Only `\` and line ends matter in a comment: skip to the next one
                // (a comment can be as long as the file).
                match memchr::memchr3(b'\\', b'\n', b'\r', &data[i..end]) {
                    Some(k) => i += k,
                    None => break,
                }
            }
            let c = data[i];
            p.step(data, i, c)?;
            if c == b'\n' || (c == b'\r' && data.get(i + 1) != Some(&b'\n')) {
                p.line += 1;
            }
            i += 1;
        }
        if end < data.len() {
            return Err(EnvError {
                line: p.line,
                reason: ERR_NUL.into(),
            });
        }
        p.finish(data)?;
        Ok(EnvFile {
            pairs: p.pairs,
            dropped: p.dropped,
            warnings: p.warnings,
        })
    }

    /// Value of `key`; `None` if absent **or empty** (systemd treats both alike).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Value of `key` including empty values (`Some("")` for `KEY=`).
    pub fn get_raw(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All assignments in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// Keeps only the assignments whose key `keep` accepts (drops the rest, to hold
    /// on to little memory per extension).
    pub fn retain_keys(&mut self, keep: impl Fn(&str) -> bool) {
        let before = self.pairs.len();
        self.pairs.retain(|(k, _)| keep(k));
        self.dropped += before - self.pairs.len();
        self.pairs.shrink_to_fit();
    }

    /// No assignments at all in the file (also none that were left out).
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty() && self.dropped == 0
    }
}

/// systemd's `WHITESPACE`.
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

/// systemd's `NEWLINE`.
fn is_nl(c: u8) -> bool {
    matches!(c, b'\n' | b'\r')
}

/// systemd's `COMMENTS`.
fn is_comment(c: u8) -> bool {
    matches!(c, b'#' | b';')
}

/// systemd's `SHELL_NEED_ESCAPE`.
fn shell_need_escape(c: u8) -> bool {
    matches!(c, b'"' | b'\\' | b'`' | b'$')
}

/// systemd's `utf8_is_valid`: well-formed UTF-8 (as Rust checks it) that in addition
/// contains no Unicode noncharacters (U+FDD0..U+FDEF, U+xFFFE, U+xFFFF), which systemd's
/// `unichar_is_valid` refuses. On failure, the byte offset of the first bad character.
fn systemd_utf8(bytes: Vec<u8>) -> Result<String, usize> {
    systemd_utf8_check(&bytes)?;
    String::from_utf8(bytes).map_err(|e| e.utf8_error().valid_up_to())
}

/// [`systemd_utf8`] without taking (or copying) the bytes: for comments, which can be
/// as long as the file.
fn systemd_utf8_check(bytes: &[u8]) -> Result<(), usize> {
    let s = std::str::from_utf8(bytes).map_err(|e| e.valid_up_to())?;
    if s.is_ascii() {
        return Ok(()); // no noncharacter is ASCII; the common case, checked fast
    }
    let bad = s.char_indices().find(|&(_, ch)| {
        let u = u32::from(ch);
        (0xFDD0..=0xFDEF).contains(&u) || (u & 0xFFFE) == 0xFFFE
    });
    match bad {
        Some((i, _)) => Err(i),
        None => Ok(()),
    }
}

/// The states of `parse_env_file_internal`, same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    PreKey,
    Key,
    PreValue,
    Value,
    ValueEscape,
    SingleQuoteValue,
    DoubleQuoteValue,
    DoubleQuoteValueEscape,
    Comment,
    CommentEscape,
}

struct Parser<'k> {
    /// Which keys to store (`None`: all).
    keep: Option<&'k dyn Fn(&str) -> bool>,
    /// Assignments not stored.
    dropped: usize,
    state: State,
    /// Physical line of the byte being processed.
    line: usize,
    key: Vec<u8>,
    /// Line the current key started on (keys never span lines).
    key_line: usize,
    /// `last_key_whitespace`.
    last_key_ws: Option<usize>,
    value: Vec<u8>,
    /// `last_value_whitespace`.
    last_value_ws: Option<usize>,
    /// (index into `value`, physical line) at each point where the value's source line
    /// changes, to report the line of an invalid UTF-8 byte.
    value_lines: Vec<(usize, usize)>,
    /// Offset of the `#`/`;` opening the current comment.
    comment_start: usize,
    pairs: Vec<(String, String)>,
    index: HashMap<String, usize>,
    warnings: Vec<EnvWarning>,
}

impl<'k> Parser<'k> {
    fn new() -> Parser<'k> {
        Parser {
            keep: None,
            dropped: 0,
            state: State::PreKey,
            line: 1,
            key: Vec::new(),
            key_line: 1,
            last_key_ws: None,
            value: Vec::new(),
            last_value_ws: None,
            value_lines: Vec::new(),
            comment_start: 0,
            pairs: Vec::new(),
            index: HashMap::new(),
            warnings: Vec::new(),
        }
    }

    fn push_value_byte(&mut self, c: u8) {
        if self.value_lines.last().map(|&(_, l)| l) != Some(self.line) {
            self.value_lines.push((self.value.len(), self.line));
        }
        self.value.push(c);
    }

    fn step(&mut self, data: &[u8], i: usize, c: u8) -> Result<(), EnvError> {
        match self.state {
            State::PreKey => {
                if is_comment(c) {
                    self.state = State::Comment;
                    self.comment_start = i;
                } else if !is_ws(c) {
                    self.state = State::Key;
                    self.last_key_ws = None;
                    self.key_line = self.line;
                    self.key.push(c);
                }
            }
            State::Key => {
                if is_nl(c) {
                    self.state = State::PreKey;
                    self.drop_key();
                } else if c == b'=' {
                    self.state = State::PreValue;
                    self.last_value_ws = None;
                } else {
                    if !is_ws(c) {
                        self.last_key_ws = None;
                    } else if self.last_key_ws.is_none() {
                        self.last_key_ws = Some(self.key.len());
                    }
                    self.key.push(c);
                }
            }
            State::PreValue => {
                if is_nl(c) {
                    self.state = State::PreKey;
                    self.push_pair(false)?;
                } else if c == b'\'' {
                    self.state = State::SingleQuoteValue;
                } else if c == b'"' {
                    self.state = State::DoubleQuoteValue;
                } else if c == b'\\' {
                    self.state = State::ValueEscape;
                } else if !is_ws(c) {
                    self.state = State::Value;
                    self.push_value_byte(c);
                }
            }
            State::Value => {
                if is_nl(c) {
                    self.state = State::PreKey;
                    self.push_pair(true)?;
                } else if c == b'\\' {
                    self.state = State::ValueEscape;
                    self.last_value_ws = None;
                } else {
                    if !is_ws(c) {
                        self.last_value_ws = None;
                    } else if self.last_value_ws.is_none() {
                        self.last_value_ws = Some(self.value.len());
                    }
                    self.push_value_byte(c);
                }
            }
            State::ValueEscape => {
                self.state = State::Value;
                // Escaped newlines are eaten up entirely.
                if !is_nl(c) {
                    self.push_value_byte(c);
                }
            }
            State::SingleQuoteValue => {
                if c == b'\'' {
                    self.state = State::PreValue;
                } else {
                    self.push_value_byte(c);
                }
            }
            State::DoubleQuoteValue => {
                if c == b'"' {
                    self.state = State::PreValue;
                } else if c == b'\\' {
                    self.state = State::DoubleQuoteValueEscape;
                } else {
                    self.push_value_byte(c);
                }
            }
            State::DoubleQuoteValueEscape => {
                self.state = State::DoubleQuoteValue;
                if shell_need_escape(c) {
                    self.push_value_byte(c);
                } else if c != b'\n' {
                    // Note: only `\n` is eaten here (systemd checks `c != '\n'`), so
                    // `\` + `\r` keeps both bytes.
                    self.push_value_byte(b'\\');
                    self.push_value_byte(c);
                }
            }
            State::Comment => {
                if c == b'\\' {
                    self.state = State::CommentEscape;
                } else if is_nl(c) {
                    self.state = State::PreKey;
                    self.end_comment(data, i);
                }
            }
            State::CommentEscape => {
                // Since v254 a trailing backslash does not continue a comment.
                if is_nl(c) {
                    self.state = State::PreKey;
                    self.end_comment(data, i);
                } else {
                    self.state = State::Comment;
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, data: &[u8]) -> Result<(), EnvError> {
        match self.state {
            State::PreValue
            | State::ValueEscape
            | State::SingleQuoteValue
            | State::DoubleQuoteValue
            | State::DoubleQuoteValueEscape => self.push_pair(false),
            State::Value => self.push_pair(true),
            State::Key => {
                self.drop_key();
                Ok(())
            }
            State::Comment | State::CommentEscape => {
                self.end_comment(data, data.len());
                Ok(())
            }
            State::PreKey => Ok(()),
        }
    }

    /// Records a warning, up to [`MAX_WARNINGS`].
    fn warn(&mut self, w: EnvWarning) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(w);
        }
    }

    fn drop_key(&mut self) {
        self.warn(EnvWarning {
            line: self.key_line,
            reason: WARN_NO_EQUALS.into(),
        });
        self.key.clear();
    }

    fn end_comment(&mut self, data: &[u8], end: usize) {
        if systemd_utf8_check(&data[self.comment_start..end]).is_err() {
            self.warn(EnvWarning {
                line: self.line,
                reason: WARN_COMMENT_UTF8.into(),
            });
        }
    }

    /// systemd's `push`: the key (trailing whitespace stripped) and the value (trailing
    /// unescaped whitespace stripped when the value ended in state `VALUE`).
    fn push_pair(&mut self, strip_value: bool) -> Result<(), EnvError> {
        let mut key = std::mem::take(&mut self.key);
        let mut value = std::mem::take(&mut self.value);
        let value_lines = std::mem::take(&mut self.value_lines);
        if strip_value {
            if let Some(n) = self.last_value_ws.take() {
                value.truncate(n);
            }
        }
        if let Some(n) = self.last_key_ws.take() {
            key.truncate(n);
        }
        let key = systemd_utf8(key).map_err(|_| EnvError {
            line: self.key_line,
            reason: ERR_UTF8.into(),
        })?;
        let value = systemd_utf8(value).map_err(|bad| {
            let line = value_lines
                .iter()
                .take_while(|&&(idx, _)| idx <= bad)
                .last()
                .map_or(self.line, |&(_, l)| l);
            EnvError {
                line,
                reason: ERR_UTF8.into(),
            }
        })?;
        if self.keep.is_some_and(|keep| !keep(&key)) {
            self.dropped += 1;
            return Ok(());
        }
        match self.index.get(&key) {
            Some(&pos) => self.pairs[pos].1 = value,
            None => {
                self.index.insert(key.clone(), self.pairs.len());
                self.pairs.push((key, value));
            }
        }
        Ok(())
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    /// (description, input, expected pairs in order, expected warning lines).
    type Case = (
        &'static str,
        &'static [u8],
        &'static [(&'static str, &'static str)],
        &'static [usize],
    );

    const CASES: &[Case] = &[
        ("empty file", b"", &[], &[]),
        ("only comments", b"# a\n; b\n   # c\n\t; d", &[], &[]),
        ("only blank lines", b"\n\n  \t\n", &[], &[]),
        ("simple", b"A=1\nB=2\n", &[("A", "1"), ("B", "2")], &[]),
        (
            "leading whitespace before key",
            b" \t A=1\n",
            &[("A", "1")],
            &[],
        ),
        (
            "# after value is literal",
            b"A=1 # x\n",
            &[("A", "1 # x")],
            &[],
        ),
        ("; comment line", b";A=1\nB=2\n", &[("B", "2")], &[]),
        ("indented comment", b"  # X=1\nB=2", &[("B", "2")], &[]),
        ("# inside key", b"A#B=1\n", &[("A#B", "1")], &[]),
        (
            "comment trailing backslash does not continue",
            b"# x \\\nA=1\n",
            &[("A", "1")],
            &[],
        ),
        (
            "comment backslash before CRLF",
            b"# x \\\r\nA=1\r\n",
            &[("A", "1")],
            &[],
        ),
        ("line without = dropped", b"FOO\nA=1\n", &[("A", "1")], &[1]),
        ("line without = at EOF", b"A=1\n\nB", &[("A", "1")], &[3]),
        (
            "key inner whitespace kept",
            b"A B=1\n",
            &[("A B", "1")],
            &[],
        ),
        (
            "key trailing whitespace stripped",
            b"A \t=1\n",
            &[("A", "1")],
            &[],
        ),
        (
            "whitespace after = skipped",
            b"A= \t 1\n",
            &[("A", "1")],
            &[],
        ),
        (
            "unquoted: trailing ws stripped, inner kept",
            b"A=1  2 \t \n",
            &[("A", "1  2")],
            &[],
        ),
        (
            "quotes inside unquoted literal",
            b"A=x\"y'z\n",
            &[("A", "x\"y'z")],
            &[],
        ),
        (
            "backslash in unquoted",
            b"A=a\\b\\\\c\\\"\n",
            &[("A", "ab\\c\"")],
            &[],
        ),
        ("unquoted continuation", b"A=a\\\nb\n", &[("A", "ab")], &[]),
        (
            "continuation keeps whitespace before backslash",
            b"A=a \\\n  b\n",
            &[("A", "a   b")],
            &[],
        ),
        ("escape right after =", b"A=\\\nb\n", &[("A", "b")], &[]),
        (
            "escaped trailing whitespace kept",
            b"A=x\\ \n",
            &[("A", "x ")],
            &[],
        ),
        (
            "single quotes literal",
            b"A='a \\n \"b\" $x'\n",
            &[("A", "a \\n \"b\" $x")],
            &[],
        ),
        (
            "single quotes span lines",
            b"A='a\nb'\nB=1",
            &[("A", "a\nb"), ("B", "1")],
            &[],
        ),
        (
            "double quotes: escapable chars",
            b"A=\"\\\"\\\\\\`\\$\"\n",
            &[("A", "\"\\`$")],
            &[],
        ),
        (
            "double quotes: other escape kept",
            b"A=\"a\\nb\"\n",
            &[("A", "a\\nb")],
            &[],
        ),
        (
            "double quotes continuation",
            b"A=\"a\\\nb\"\n",
            &[("A", "ab")],
            &[],
        ),
        (
            "double quotes backslash CR kept",
            b"A=\"a\\\r\nb\"\n",
            &[("A", "a\\\r\nb")],
            &[],
        ),
        (
            "double quotes keep trailing ws",
            b"A=\"x \"\n",
            &[("A", "x ")],
            &[],
        ),
        (
            "ws after closing quote skipped",
            b"A=\"x\"  \n",
            &[("A", "x")],
            &[],
        ),
        (
            "concatenation with space",
            b"A=\"x\" \"y\"\n",
            &[("A", "xy")],
            &[],
        ),
        ("concatenation unquoted", b"A=\"x\"y\n", &[("A", "xy")], &[]),
        (
            "concatenation mixed quotes",
            b"A='a'\"b\"\n",
            &[("A", "ab")],
            &[],
        ),
        (
            "concatenation then trailing ws",
            b"A=\"x\" y z \t\n",
            &[("A", "xy z")],
            &[],
        ),
        ("empty value", b"A=\nB=2\n", &[("A", ""), ("B", "2")], &[]),
        ("empty quoted value", b"A=\"\"\n", &[("A", "")], &[]),
        ("empty value at EOF", b"A=", &[("A", "")], &[]),
        (
            "duplicate: last value, first position",
            b"A=1\nB=2\nA=3\n",
            &[("A", "3"), ("B", "2")],
            &[],
        ),
        ("duplicate with empty", b"A=1\nA=\n", &[("A", "")], &[]),
        (
            "EOF without newline",
            b"A=1\nB=2",
            &[("A", "1"), ("B", "2")],
            &[],
        ),
        (
            "EOF unquoted trailing ws stripped",
            b"A=1  ",
            &[("A", "1")],
            &[],
        ),
        ("EOF after backslash", b"A=x\\", &[("A", "x")], &[]),
        (
            "EOF inside double quote",
            b"A=\"abc\ndef",
            &[("A", "abc\ndef")],
            &[],
        ),
        ("EOF inside single quote", b"A='x ", &[("A", "x ")], &[]),
        (
            "EOF inside double-quote escape",
            b"A=\"x\\",
            &[("A", "x")],
            &[],
        ),
        (
            "CRLF",
            b"A=1\r\nB=\"2\"\r\n",
            &[("A", "1"), ("B", "2")],
            &[],
        ),
        (
            "lone CR ends line",
            b"A=1\rB=2",
            &[("A", "1"), ("B", "2")],
            &[],
        ),
        (
            "= first char, no second =",
            b"=x\nA=1\n",
            &[("A", "1")],
            &[1],
        ),
        ("== gives key =", b"==x\n", &[("=", "x")], &[]),
        ("keys not validated", b"a.b-c=1\n", &[("a.b-c", "1")], &[]),
        (
            "realistic os-release",
            b"NAME=\"Debian GNU/Linux\"\nID=debian\nVERSION_ID=\"12\"\nID_LIKE='ubuntu'\n",
            &[
                ("NAME", "Debian GNU/Linux"),
                ("ID", "debian"),
                ("VERSION_ID", "12"),
                ("ID_LIKE", "ubuntu"),
            ],
            &[],
        ),
        (
            "UTF-8 value",
            "A=\"héllo ✓\"\n".as_bytes(),
            &[("A", "héllo ✓")],
            &[],
        ),
        (
            "invalid UTF-8 in comment is not an error",
            b"# caf\xe9\nA=1\n",
            &[("A", "1")],
            &[1],
        ),
        (
            "invalid UTF-8 in dropped line is not an error",
            b"A=1\n\xff\xfe\n",
            &[("A", "1")],
            &[2],
        ),
    ];

    #[test]
    fn parser_table() {
        for (desc, input, pairs, warn_lines) in CASES {
            let got = EnvFile::parse(input).unwrap_or_else(|e| panic!("{desc}: {e}"));
            let got_pairs: Vec<(&str, &str)> = got
                .pairs()
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert_eq!(got_pairs, *pairs, "{desc}");
            let got_lines: Vec<usize> = got.warnings.iter().map(|w| w.line).collect();
            assert_eq!(
                got_lines, *warn_lines,
                "{desc}: warnings {:?}",
                got.warnings
            );
        }
    }

    #[test]
    fn parser_error_table() {
        // (description, input, line, reason)
        let cases: &[(&str, &[u8], usize, &str)] = &[
            ("NUL byte", b"A=1\nB=x\0y\n", 2, ERR_NUL),
            ("NUL in comment", b"# \0\n", 1, ERR_NUL),
            ("invalid UTF-8 in key", b"A=1\n\xffB=2\n", 2, ERR_UTF8),
            (
                "invalid UTF-8 in value",
                b"A=1\nB=2\nC=x\xc3(\n",
                3,
                ERR_UTF8,
            ),
            (
                "invalid UTF-8 in multi-line quoted value",
                b"A=\"ok\nstill ok\nbad \xff\"\n",
                3,
                ERR_UTF8,
            ),
            (
                "invalid UTF-8 on continued line",
                b"A=first\\\nsecond \xc0\xaf\n",
                2,
                ERR_UTF8,
            ),
            (
                "CRLF counts as one line",
                b"A=1\r\nB=2\r\nC=\xff\r\n",
                3,
                ERR_UTF8,
            ),
            ("lone CR counts as line", b"A=1\rB=\xff", 2, ERR_UTF8),
            ("truncated sequence at EOF", b"A=\xe2\x9c", 1, ERR_UTF8),
            ("surrogate", b"A=\xed\xa0\x80\n", 1, ERR_UTF8),
            (
                "noncharacter U+FFFE (systemd refuses)",
                b"\nA=\xef\xbf\xbe\n",
                2,
                ERR_UTF8,
            ),
            (
                "noncharacter U+FDD0 (systemd refuses)",
                b"A=\xef\xb7\x90\n",
                1,
                ERR_UTF8,
            ),
            ("invalid UTF-8 in empty-valued key", b"\xff=\n", 1, ERR_UTF8),
        ];
        for (desc, input, line, reason) in cases {
            let e = EnvFile::parse(input).expect_err(desc);
            assert_eq!(
                e,
                EnvError {
                    line: *line,
                    reason: reason.to_string()
                },
                "{desc}"
            );
        }
    }

    #[test]
    fn warning_reason_and_display() {
        let f = EnvFile::parse(b"A=1\nJUNK\n").unwrap();
        assert_eq!(
            f.warnings,
            vec![EnvWarning {
                line: 2,
                reason: "no '=' in line, ignored".into()
            }]
        );
        let e = EnvFile::parse(b"A=\xff").unwrap_err();
        assert_eq!(e.to_string(), "line 1: invalid UTF-8");
    }

    #[test]
    fn huge_value() {
        let n = crate::testutil::iterations(3 << 20);
        let mut data = b"A=".to_vec();
        data.extend_from_slice(&vec![b'x'; n]);
        data.extend_from_slice(b"\nB=1\n");
        let f = EnvFile::parse(&data).unwrap();
        assert_eq!(f.get("A").map(str::len), Some(n));
        assert_eq!(f.get("B"), Some("1"));
    }

    #[test]
    fn parse_keys_keeps_only_those_but_checks_all() {
        let data = b"A=1\nB=2\nC=3\nA=4\n";
        let f = EnvFile::parse_keys(data, |k| k == "A" || k == "C").unwrap();
        assert_eq!(
            f.pairs(),
            [("A".into(), "4".into()), ("C".into(), "3".into())]
        );
        assert_eq!(f.get("B"), None);
        // Only left-out keys: still a file with assignments.
        let f = EnvFile::parse_keys(b"B=2\n", |k| k == "A").unwrap();
        assert!(f.pairs().is_empty() && !f.is_empty());
        assert!(EnvFile::parse_keys(b"# c\n", |_| true).unwrap().is_empty());
        // Invalid UTF-8 in a left-out value fails the file, with its line.
        let e = EnvFile::parse_keys(b"A=1\nB=\xff\n", |k| k == "A").unwrap_err();
        assert_eq!((e.line, e.reason.as_str()), (2, ERR_UTF8));
        let mut f = EnvFile::parse(b"B=2\n").unwrap();
        f.retain_keys(|k| k == "A");
        assert!(!f.is_empty());
    }

    #[test]
    fn warnings_are_capped() {
        let mut data = b"# \xff\n".to_vec();
        data.extend_from_slice(&b"x\n".repeat(1000));
        data.extend_from_slice(b"ID=a\n");
        let f = EnvFile::parse(&data).unwrap();
        assert_eq!(f.warnings.len(), MAX_WARNINGS);
        assert_eq!(f.warnings[0].reason, WARN_COMMENT_UTF8);
        assert_eq!(f.warnings[1].line, 2);
        assert_eq!(f.warnings[MAX_WARNINGS - 1].line, MAX_WARNINGS);
        assert_eq!(f.get("ID"), Some("a"));
    }

    #[test]
    fn many_keys_dedup_is_fast() {
        let mut data = Vec::new();
        let n = crate::testutil::iterations(100_000);
        for i in 0..n {
            data.extend_from_slice(format!("K{i}={i}\nK0=last\n").as_bytes());
        }
        let f = EnvFile::parse(&data).unwrap();
        assert_eq!(f.pairs().len(), n);
        assert_eq!(f.pairs()[0], ("K0".to_string(), "last".to_string()));
    }

    #[test]
    fn get_vs_get_raw() {
        let f = EnvFile::parse(b"A=\nB=x\n").unwrap();
        assert_eq!(f.get("A"), None);
        assert_eq!(f.get_raw("A"), Some(""));
        assert_eq!(f.get("B"), Some("x"));
        assert_eq!(f.get_raw("C"), None);
        assert!(!f.is_empty());
        assert!(EnvFile::parse(b"# x\n").unwrap().is_empty());
    }
}
