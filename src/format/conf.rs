//! The INI-style configuration files systemd reads with its conf-parser
//! (`src/shared/conf-parser.c`: `config_parse`, `parse_line`), here for `sysext.conf` /
//! `confext.conf` and their drop-ins (sysext.conf(5)).
//!
//! As systemd: lines end at `\n`, `\r`, `\r\n` or NUL; a UTF-8 byte-order mark at the
//! start is skipped; a line whose first non-blank character is `#` or `;` is a comment,
//! also in the middle of a continuation; a line ending in an odd number of backslashes
//! continues on the next, the last backslash turned into a space (a blank line ends a
//! continuation); `[Name]` opens a section (section and key names are case-sensitive);
//! `Key=value` is stripped of blanks around both. Sections not asked for are warned
//! about (not those starting with `X-`) and their assignments dropped; an assignment
//! before any section is warned about and dropped. These end the file's parse with an
//! error (systemd: "Failed to parse file"), keeping what came before: a line, or a
//! continued line, over 1 MiB (`LONG_LINE_MAX`), a section header without its `]` or
//! with control characters, quotes or backslashes, and a line without `=` or without a
//! key before it.

/// systemd's `LONG_LINE_MAX`: the longest line, continuations joined.
pub const LONG_LINE_MAX: usize = 1 << 20;

const WHITESPACE: &[char] = &[' ', '\t', '\n', '\r'];

/// One `Key=value` of a section asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// The section's name, without brackets.
    pub section: String,
    /// The key, stripped.
    pub key: String,
    /// The value, stripped (may be empty).
    pub value: String,
    /// The line (1-based) the assignment ends on.
    pub line: usize,
}

/// What a file holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The assignments of the sections asked for, in file order.
    pub assignments: Vec<Assignment>,
    /// Warnings, each `FILE:LINE: text`.
    pub warnings: Vec<String>,
    /// Why the parse stopped early (`FILE:LINE: text`); the assignments before it stand.
    pub error: Option<String>,
}

/// Splits `data` into lines as systemd's `read_line()`: `\n`, `\r`, `\r\n` and NUL end
/// a line; a last line without an end is a line.
fn lines(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\n' | b'\0' => {
                out.push(&data[start..i]);
                start = i + 1;
            }
            b'\r' => {
                out.push(&data[start..i]);
                if data.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < data.len() {
        out.push(&data[start..]);
    }
    out
}

/// Parses `data` (the contents of `file`, for messages), keeping the assignments of
/// `sections`.
pub fn parse(data: &[u8], file: &str, sections: &[&str]) -> Parsed {
    let mut p = Parsed::default();
    let data = data.strip_prefix(b"\xef\xbb\xbf").unwrap_or(data);
    let mut state = State::default();
    let mut continuation: Option<String> = None;
    let mut n = 0;
    for raw in lines(data) {
        n += 1;
        if raw.len() > LONG_LINE_MAX {
            p.error = Some(format!("{file}:{n}: Line too long"));
            return p;
        }
        let l = String::from_utf8_lossy(raw);
        let first = l.trim_start_matches(WHITESPACE);
        if first.starts_with(['#', ';']) {
            continue;
        }
        let joined = match continuation.take() {
            Some(mut c) => {
                if c.len() + l.len() > LONG_LINE_MAX {
                    p.error = Some(format!("{file}:{n}: Continuation line too long"));
                    return p;
                }
                c.push_str(&l);
                c
            }
            None => l.into_owned(),
        };
        if ends_escaped(&joined) {
            let mut c = joined;
            c.pop();
            c.push(' ');
            continuation = Some(c);
            continue;
        }
        if let Err(e) = state.line(&joined, raw, file, n, sections, &mut p) {
            p.error = Some(e);
            return p;
        }
    }
    if let Some(c) = continuation {
        if let Err(e) = state.line(&c, c.as_bytes(), file, n, sections, &mut p) {
            p.error = Some(e);
        }
    }
    p
}

/// True when `s` ends in a backslash that is not itself escaped.
fn ends_escaped(s: &str) -> bool {
    let mut escaped = false;
    for c in s.chars() {
        escaped = !escaped && c == '\\';
    }
    escaped
}

#[derive(Default)]
struct State {
    /// The current section, when it is one asked for.
    section: Option<String>,
    /// The current section is one not asked for (its assignments are dropped quietly).
    ignored: bool,
}

impl State {
    fn line(
        &mut self,
        line: &str,
        raw: &[u8],
        file: &str,
        n: usize,
        sections: &[&str],
        p: &mut Parsed,
    ) -> Result<(), String> {
        let l = line.trim_matches(WHITESPACE);
        if l.is_empty() {
            return Ok(());
        }
        if std::str::from_utf8(raw).is_err() {
            p.warnings.push(format!(
                "{file}:{n}: line is not valid UTF-8, ignoring: {}",
                crate::format::escape::esc(raw)
            ));
            return Ok(());
        }
        if let Some(rest) = l.strip_prefix('[') {
            let Some(name) = rest.strip_suffix(']') else {
                return Err(format!("{file}:{n}: Invalid section header '{l}'"));
            };
            if name
                .chars()
                .any(|c| c < ' ' || c == '\x7f' || c == '\\' || c == '"' || c == '\'')
            {
                return Err(format!(
                    "{file}:{n}: Bad characters in section header '{}'",
                    crate::format::escape::esc(l)
                ));
            }
            if sections.contains(&name) {
                self.section = Some(name.to_string());
                self.ignored = false;
            } else {
                if !name.starts_with("X-") {
                    p.warnings
                        .push(format!("{file}:{n}: Unknown section '{name}'. Ignoring."));
                }
                self.section = None;
                self.ignored = true;
            }
            return Ok(());
        }
        let Some(section) = &self.section else {
            if !self.ignored {
                p.warnings.push(format!(
                    "{file}:{n}: Assignment outside of section. Ignoring."
                ));
            }
            return Ok(());
        };
        let Some((k, v)) = l.split_once('=') else {
            return Err(format!("{file}:{n}: Missing '=', ignoring line."));
        };
        if k.is_empty() {
            return Err(format!(
                "{file}:{n}: Missing key name before '=', ignoring line."
            ));
        }
        p.assignments.push(Assignment {
            section: section.clone(),
            key: k.trim_matches(WHITESPACE).to_string(),
            value: v.trim_matches(WHITESPACE).to_string(),
            line: n,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the last `setting1=` of `[Section]`, as systemd's
    /// test-conf-parser.c checks its `config_file[]` cases.
    fn setting1(data: &[u8]) -> (Option<String>, Parsed) {
        let p = parse(data, "f.conf", &["Section"]);
        let v = p
            .assignments
            .iter()
            .rev()
            .find(|a| a.key == "setting1")
            .map(|a| a.value.clone());
        (v, p)
    }

    fn x1000(s: &str) -> String {
        s.repeat(1000)
    }

    #[test]
    fn systemd_test_conf_parser_cases() {
        let abcd = x1000("ABCD");
        let cases: Vec<(Vec<u8>, Option<String>)> = vec![
            (b"[Section]\nsetting1=1\n".to_vec(), Some("1".into())),
            (b"[Section]\nsetting1=1".to_vec(), Some("1".into())),
            (b"\n\n\n\n[Section]\n\n\nsetting1=1".to_vec(), Some("1".into())),
            (
                b"[Section]\n[Section]\nsetting1=1\nsetting1=    2 \t\nsetting1=    1\n".to_vec(),
                Some("1".into()),
            ),
            (
                b"[Section]\n[Section]\nsetting1=1\nsetting1=2\\\n   \nsetting1=1\n".to_vec(),
                Some("1".into()),
            ),
            (b"[Section]\nsetting1=1\\\n2\\\n3\n".to_vec(), Some("1 2 3".into())),
            (
                b"[Section]\n#hogehoge\\\nsetting1=1\\\n2\\\n3\n".to_vec(),
                Some("1 2 3".into()),
            ),
            (
                b"[Section]\nsetting1=1\\\n#hogehoge\\\n2\\\n3\n".to_vec(),
                Some("1 2 3".into()),
            ),
            (
                b"[Section]\n   #hogehoge\\\n   setting1=1\\\n2\\\n3\n".to_vec(),
                Some("1 2 3".into()),
            ),
            (
                b"[Section]\n   setting1=1\\\n   #hogehoge\\\n2\\\n3\n".to_vec(),
                Some("1 2 3".into()),
            ),
            (
                b"[Section]\nsetting1=1\\\n2\\\n3\\\\\n".to_vec(),
                Some("1 2 3\\\\".into()),
            ),
            (
                b"[Section]\nsetting1=1\\\\\\\n\\\\2\n".to_vec(),
                Some("1\\\\ \\\\2".into()),
            ),
            (
                format!("\n[Section]\n\nsetting1={abcd}\n").into_bytes(),
                Some(abcd.clone()),
            ),
            (
                format!("[Section]\nsetting1={abcd}\\\nfoobar").into_bytes(),
                Some(format!("{abcd} foobar")),
            ),
            (
                format!("[Section]\nsetting1={abcd}\\\nfoobar\\\n").into_bytes(),
                Some(format!("{abcd} foobar")),
            ),
            (
                b"[Section]\nsetting1=2\n[NoWarnSection]\nsetting1=3\n[WarnSection]\nsetting1=3\n[X-Section]\nsetting1=3\n"
                    .to_vec(),
                Some("2".into()),
            ),
        ];
        for (i, (data, want)) in cases.iter().enumerate() {
            let (got, p) = setting1(data);
            assert_eq!(&got, want, "case {i}");
            assert_eq!(p.error, None, "case {i}");
        }
    }

    #[test]
    fn over_long_lines_end_the_parse() {
        let big = x1000(&(x1000("x") + &"abcdefghijklmnopqrstuvwxyz0123456789".repeat(10)));
        let (v, p) = setting1(format!("[Section]\nsetting1={big}\n").as_bytes());
        assert_eq!(v, None);
        assert_eq!(p.error.as_deref(), Some("f.conf:2: Line too long"));
        let line = x1000("x") + &"abcdefghijklmnopqrstuvwxyz0123456789".repeat(10) + "\\\n";
        let (v, p) =
            setting1(format!("[Section]\nsetting1=0\nsetting1={}\n", x1000(&line)).as_bytes());
        assert_eq!(v.as_deref(), Some("0"), "what came before stands");
        assert!(p.error.unwrap().contains("Continuation line too long"));
    }

    #[test]
    fn sections_and_warnings() {
        let p = parse(
            b"a=1\n[Other]\nb=2\n[X-Mine]\nc=3\n[SysExt]\nMutable = yes \n",
            "s.conf",
            &["SysExt"],
        );
        assert_eq!(
            p.assignments,
            vec![Assignment {
                section: "SysExt".into(),
                key: "Mutable".into(),
                value: "yes".into(),
                line: 7
            }]
        );
        assert_eq!(
            p.warnings,
            vec![
                "s.conf:1: Assignment outside of section. Ignoring.",
                "s.conf:2: Unknown section 'Other'. Ignoring."
            ]
        );
        // Section names are case-sensitive.
        let p = parse(b"[sysext]\nMutable=yes\n", "s.conf", &["SysExt"]);
        assert!(p.assignments.is_empty());
        assert_eq!(p.warnings.len(), 1);
    }

    #[test]
    fn errors_stop_the_file() {
        for (data, err) in [
            (
                &b"[SysExt]\nA=1\n[SysExt\nB=2\n"[..],
                "s:3: Invalid section header '[SysExt'",
            ),
            (b"[SysExt]\nA=1\nnonsense\nB=2\n", "s:3: Missing '='"),
            (b"[SysExt]\nA=1\n=x\nB=2\n", "s:3: Missing key name"),
            (b"[SysExt]\nA=1\n[Sys\"Ext]\nB=2\n", "s:3: Bad characters"),
        ] {
            let p = parse(data, "s", &["SysExt"]);
            assert_eq!(p.assignments.len(), 1, "{err}");
            assert!(
                p.error.as_deref().unwrap().starts_with(err),
                "{:?}",
                p.error
            );
        }
    }

    #[test]
    fn line_ends_bom_and_comments() {
        let p = parse(
            b"\xef\xbb\xbf[SysExt]\r\nA=1\rB=2\0C=3\n; D=4\n  # E=5\n",
            "s",
            &["SysExt"],
        );
        let kv: Vec<_> = p
            .assignments
            .iter()
            .map(|a| (a.key.as_str(), a.value.as_str(), a.line))
            .collect();
        assert_eq!(kv, [("A", "1", 2), ("B", "2", 3), ("C", "3", 4)]);
        assert!(p.warnings.is_empty() && p.error.is_none());
        let p = parse(b"[SysExt]\nA=\xff\nB=2\n", "s", &["SysExt"]);
        assert_eq!(p.assignments.len(), 1);
        assert!(p.warnings[0].starts_with("s:2: line is not valid UTF-8"));
    }
}
