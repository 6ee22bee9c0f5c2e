//! Escaping untrusted text: extension names, paths, release-file values and kernel
//! messages are shown to people (tables, `plan`, merge messages, errors, log lines in
//! the terminal, the kernel log and the C library's callback) only escaped, so an entry
//! named `esc\e[31m` cannot drive the terminal or forge a line of output.
//!
//! - [`esc`] escapes one value as systemd's `cescape()` (`src/basic/escape.c`) does:
//!   `\a \b \f \n \r \t \v \\ \" \'`, every other control character (below 0x20, 0x7f,
//!   and the C1 controls U+0080–U+009F, which some terminals obey as well) as `\xNN`
//!   per byte, and each byte of invalid UTF-8 as `\xNN`. Unlike `cescape()`, printable
//!   UTF-8 (`é`, `✓`) is kept as it is. Messages interpolate values through it where they
//!   are composed; a composed message is never escaped again.
//! - [`controls`] is the last guard at each output (the CLI's stdout and stderr, every
//!   log sink, the C library's last error): it escapes the control characters left in a
//!   message except its newlines, and nothing else (a backslash stays), so text that
//!   went through [`esc`] passes unchanged.
//! - [`cescape`] is systemd's exact byte escape for files systemd reads back
//!   (`work_dir` in the metadata dir): every byte ≥ 0x7f as `\xNN` too.
//!
//! JSON output is not escaped here: it carries the values raw, with JSON's own escapes
//! ([`crate::format::json`]).

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::fmt::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Anything that is a byte string for escaping: text, paths, OS strings, bytes.
pub trait AsBytes {
    /// The bytes.
    fn as_escape_bytes(&self) -> &[u8];
}

impl AsBytes for str {
    fn as_escape_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}
impl AsBytes for String {
    fn as_escape_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}
impl AsBytes for Path {
    fn as_escape_bytes(&self) -> &[u8] {
        self.as_os_str().as_bytes()
    }
}
impl AsBytes for PathBuf {
    fn as_escape_bytes(&self) -> &[u8] {
        self.as_os_str().as_bytes()
    }
}
impl AsBytes for OsStr {
    fn as_escape_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}
impl AsBytes for OsString {
    fn as_escape_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}
impl AsBytes for [u8] {
    fn as_escape_bytes(&self) -> &[u8] {
        self
    }
}
impl AsBytes for Vec<u8> {
    fn as_escape_bytes(&self) -> &[u8] {
        self
    }
}
impl<T: AsBytes + ?Sized> AsBytes for &T {
    fn as_escape_bytes(&self) -> &[u8] {
        (**self).as_escape_bytes()
    }
}

/// A value escaped for people when displayed ([`esc`], [`esc_text`]).
#[derive(Clone, Copy)]
pub struct Esc<'a> {
    bytes: &'a [u8],
    /// Also `\\`, `\"` and `\'` (a value inside a message), not only the controls (a
    /// whole text of its own).
    quotes: bool,
}

/// `v` escaped for people, as a `Display` value: `format!("'{}'", esc(&path))`.
pub fn esc<T: AsBytes + ?Sized>(v: &T) -> Esc<'_> {
    Esc {
        bytes: v.as_escape_bytes(),
        quotes: true,
    }
}

/// A whole text from elsewhere (a kernel message) for people: its control characters
/// (newlines too) and invalid UTF-8 escaped as [`esc`] does, its backslashes and quotes
/// kept, so `failed to resolve '/x'` reads as the kernel wrote it.
pub fn esc_text<T: AsBytes + ?Sized>(v: &T) -> Esc<'_> {
    Esc {
        bytes: v.as_escape_bytes(),
        quotes: false,
    }
}

/// [`esc`] as a `String`.
pub fn escape<T: AsBytes + ?Sized>(v: &T) -> String {
    esc(v).to_string()
}

/// The escape of ASCII byte `b` in systemd's `cescape_char`, if it has one.
fn named(b: u8) -> Option<&'static str> {
    Some(match b {
        0x07 => "\\a",
        0x08 => "\\b",
        0x0c => "\\f",
        b'\n' => "\\n",
        b'\r' => "\\r",
        b'\t' => "\\t",
        0x0b => "\\v",
        b'\\' => "\\\\",
        b'"' => "\\\"",
        b'\'' => "\\'",
        _ => return None,
    })
}

/// Writes `\xNN` for each byte of `bytes`.
fn hex_bytes(f: &mut impl Write, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "\\x{b:02x}")?;
    }
    Ok(())
}

/// A control character: C0, DEL or C1.
fn is_control(c: char) -> bool {
    c < ' ' || ('\u{7f}'..='\u{9f}').contains(&c)
}

/// Writes `c` escaped as a control character: its name or `\xNN` per UTF-8 byte.
fn control(f: &mut impl Write, c: char) -> fmt::Result {
    let mut buf = [0u8; 4];
    let s = c.encode_utf8(&mut buf);
    match named(s.as_bytes()[0]).filter(|_| c.is_ascii()) {
        Some(n) => f.write_str(n),
        None => hex_bytes(f, s.as_bytes()),
    }
}

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.bytes.utf8_chunks() {
            for c in chunk.valid().chars() {
                if is_control(c) {
                    control(f, c)?;
                } else if let Some(n) = (self.quotes && c.is_ascii())
                    .then(|| named(c as u8))
                    .flatten()
                {
                    f.write_str(n)?;
                } else {
                    f.write_char(c)?;
                }
            }
            hex_bytes(f, chunk.invalid())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// `msg` with every control character except `\n` escaped as [`esc`] escapes it (`\t`,
/// `\x1b`, `\xc2\x9b`); everything else, backslashes included, unchanged. Borrowed when
/// there is nothing to escape (the common case).
pub fn controls(msg: &str) -> Cow<'_, str> {
    if !msg.chars().any(|c| is_control(c) && c != '\n') {
        return Cow::Borrowed(msg);
    }
    let mut out = String::with_capacity(msg.len() + 8);
    for c in msg.chars() {
        if is_control(c) && c != '\n' {
            let _ = control(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// systemd's `cescape()` exactly: [`esc`]'s escapes, and every byte ≥ 0x7f as `\xNN`
/// (UTF-8 included), so the text is ASCII; `inspect::metadata::cunescape` reverses it.
pub fn cescape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match named(b) {
            Some(n) => out.push_str(n),
            None if !(0x20..0x7f).contains(&b) => {
                let _ = hex_bytes(&mut out, &[b]);
            }
            None => out.push(b as char),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_cescape_but_keeps_printable_utf8() {
        for (raw, want) in [
            (&b"plain name-1.2_x86+64"[..], "plain name-1.2_x86+64"),
            (b"esc\x1b[31m", "esc\\x1b[31m"),
            (b"\x07\x08\x0c\n\r\t\x0b", "\\a\\b\\f\\n\\r\\t\\v"),
            (b"back\\slash \"q\" 'a'", "back\\\\slash \\\"q\\\" \\'a\\'"),
            (b"nul\0del\x7f", "nul\\x00del\\x7f"),
            ("é ✓ 日本".as_bytes(), "é ✓ 日本"),
            // C1 CSI (U+009B) as its two UTF-8 bytes.
            ("c1\u{9b}31m".as_bytes(), "c1\\xc2\\x9b31m"),
            (b"bad\xff\xfeutf8", "bad\\xff\\xfeutf8"),
            // A truncated sequence, then valid text.
            (b"cut\xe2\x9c ok", "cut\\xe2\\x9c ok"),
            (b"", ""),
        ] {
            assert_eq!(escape(raw), want, "{raw:?}");
            // Nothing below 0x20 or 0x7f survives; the escape is printable text.
            assert!(!escape(raw).bytes().any(|b| b < 0x20 || b == 0x7f));
        }
        assert_eq!(
            escape(Path::new("/var/lib/extensions/a\nb")),
            "/var/lib/extensions/a\\nb"
        );
        assert_eq!(format!("'{}'", esc("it's")), "'it\\'s'");
        assert_eq!(format!("{:?}", esc("a\tb")), "\"a\\tb\"");
        assert_eq!(
            esc_text(&b"overlay: failed to resolve '/x\\y': -2\n\x1b\xff"[..]).to_string(),
            "overlay: failed to resolve '/x\\y': -2\\n\\x1b\\xff"
        );
    }

    #[test]
    fn controls_keeps_newlines_and_backslashes() {
        assert!(matches!(
            controls("a\nb \\x1b"),
            Cow::Borrowed("a\nb \\x1b")
        ));
        assert_eq!(
            controls("a\x1b[31m\tb\r\n\u{9b}"),
            "a\\x1b[31m\\tb\\r\n\\xc2\\x9b"
        );
        // Idempotent on escaped text.
        let e = escape("x\x1by\nz");
        assert_eq!(controls(&e), e);
    }

    #[test]
    fn cescape_is_systemds() {
        assert_eq!(cescape("é\x01\\\n".as_bytes()), "\\xc3\\xa9\\x01\\\\\\n");
        assert_eq!(cescape(b"\xff"), "\\xff");
    }
}
