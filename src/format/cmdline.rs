//! What `extmerge-initrd` reads before it merges: the kernel command line
//! (`/proc/cmdline`) and the real root's `/etc/fstab`. Both come from outside the
//! program (the boot loader, a UKI add-on, the real root's file system), so they are
//! parsed as bytes that may be anything: never a panic, and a byte that is not UTF-8
//! in one word does not make the other words unreadable.

use crate::format::class::Class;
use crate::format::text::parse_boolean;

/// Whitespace between kernel command line words, as systemd's `WHITESPACE`.
fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Splits a kernel command line into words as systemd's `proc_cmdline` does
/// (`extract_first_word` with `EXTRACT_UNQUOTE|EXTRACT_RELAX|EXTRACT_RETAIN_ESCAPE`):
/// words are separated by whitespace; `"…"` and `'…'` quote whitespace and are removed
/// (also in the middle of a word: `foo="a b"` is the word `foo=a b`); an unbalanced
/// quote runs to the end; `\` is an ordinary character.
pub fn split_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.get_or_insert_with(String::new).push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                // `""` alone is an empty word.
                word.get_or_insert_with(String::new);
            }
            None if is_separator(c) => words.extend(word.take()),
            None => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// Switches read from the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmdline {
    /// `extmerge=0` turns the program off (default on).
    pub enabled: bool,
    /// `extmerge.fatal=1`: a failed merge fails the program.
    pub fatal: bool,
    /// `extmerge.debug=1`: log at debug level.
    pub debug: bool,
    /// `extmerge.extra=sysroot`: the initrd's `/.extra` extensions (the UKI's and the
    /// ESP's, from systemd-stub) are merged onto the real root too (default off: systemd
    /// keeps them in the initrd). The value is a comma-separated list; the last
    /// occurrence decides.
    pub extra_sysroot: bool,
    args: Vec<(String, Option<String>)>,
}

impl Cmdline {
    /// Parses a kernel command line (see [`split_words`]). A switch given more than once
    /// takes its last value; a value that is not a boolean keeps the default.
    pub fn parse(s: &str) -> Cmdline {
        let args: Vec<(String, Option<String>)> = split_words(s)
            .into_iter()
            .map(|w| match w.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (w, None),
            })
            .collect();
        let flag = |key: &str, default: bool| {
            args.iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| {
                    v.as_deref()
                        .map_or(Some(true), parse_boolean)
                        .unwrap_or(default)
                })
                .unwrap_or(default)
        };
        Cmdline {
            enabled: flag("extmerge", true),
            fatal: flag("extmerge.fatal", false),
            debug: flag("extmerge.debug", false),
            extra_sysroot: args
                .iter()
                .rev()
                .find(|(k, _)| k == "extmerge.extra")
                .and_then(|(_, v)| v.as_deref())
                .is_some_and(|v| v.split(',').any(|t| t == "sysroot")),
            args,
        }
    }

    /// [`Cmdline::parse`] on the bytes of `/proc/cmdline`: bytes that are not UTF-8
    /// become U+FFFD, so they spoil only the word they are in.
    pub fn from_bytes(b: &[u8]) -> Cmdline {
        Cmdline::parse(&String::from_utf8_lossy(b))
    }

    /// The words, each as key and value (`None` for a word without `=`), in order.
    pub fn args(&self) -> &[(String, Option<String>)] {
        &self.args
    }

    /// Whether `class` is left on: `systemd.sysext=` / `systemd.confext=` for the
    /// sysroot, `rd.systemd.sysext=` / `rd.systemd.confext=` for the initrd's own
    /// extensions. The last occurrence decides; only an explicit false disables.
    pub fn class_enabled(&self, class: Class, initrd_own: bool) -> bool {
        let key = format!(
            "{}systemd.{}",
            if initrd_own { "rd." } else { "" },
            class.as_str()
        );
        self.args
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .is_none_or(|(_, v)| v.as_deref().and_then(parse_boolean) != Some(false))
    }
}

/// The mount points in an fstab text that are `/var` or below it, in order. Comments
/// and blank lines are skipped; `\040`-style octal escapes (fstab(5)) in the mount
/// point are decoded.
pub fn fstab_var_mounts(fstab: &str) -> Vec<String> {
    fstab
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(unescape_octal)
        .filter(|m| m == "/var" || m.starts_with("/var/"))
        .collect()
}

/// `\ooo` (three octal digits, at most `\377`) as the byte it names; anything else is
/// kept as it is. The result is UTF-8 again (invalid sequences become U+FFFD).
fn unescape_octal(s: &str) -> String {
    // fstab escapes as mountinfo does.
    String::from_utf8_lossy(&crate::format::mountinfo::unescape_mountinfo(s.as_bytes()))
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fstab_var_entries() {
        let fstab = "# comment\nUUID=1 / ext4 defaults 0 1\n/dev/vdb /var ext4 defaults 0 2\n\
                     tmpfs /tmp tmpfs defaults 0 0\n/dev/vdc /var/lib xfs x-initrd.mount 0 0\n\
                     /dev/vdd /variant ext4 defaults 0 0\n";
        assert_eq!(fstab_var_mounts(fstab), ["/var", "/var/lib"]);
        assert!(fstab_var_mounts("").is_empty());
        assert_eq!(
            fstab_var_mounts("/dev/x /var/my\\040data ext4 defaults\n/dev/y /\\166ar xfs\n"),
            ["/var/my data", "/var"]
        );
        assert_eq!(fstab_var_mounts("a /var/\\777 b\n"), ["/var/\\777"]);
    }

    #[test]
    fn cmdline_switches() {
        let c = Cmdline::parse("root=/dev/vda quiet extmerge=0");
        assert!(!c.enabled && !c.fatal && !c.debug);
        let c = Cmdline::parse("extmerge extmerge.fatal=1 extmerge.debug systemd.confext=0");
        assert!(c.enabled && c.fatal && c.debug);
        assert!(!c.extra_sysroot);
        for (line, want) in [
            ("extmerge.extra=sysroot", true),
            ("extmerge.extra=initrd,sysroot", true),
            ("extmerge.extra=sysroot extmerge.extra=no", false),
            ("extmerge.extra", false),
            ("extmerge.extra=sysrootx", false),
            ("extmerge.extra=no extmerge.extra=sysroot", true),
        ] {
            assert_eq!(Cmdline::parse(line).extra_sysroot, want, "{line}");
        }
        assert!(!c.class_enabled(Class::Confext, false));
        assert!(c.class_enabled(Class::Confext, true));
        assert!(c.class_enabled(Class::Sysext, false));
        let c = Cmdline::parse("rd.systemd.sysext=no extmerge=bogus");
        assert!(c.enabled, "unparsable value keeps the default");
        assert!(!c.class_enabled(Class::Sysext, true));
        assert!(c.class_enabled(Class::Sysext, false));
    }

    #[test]
    fn cmdline_quotes_as_systemd() {
        assert_eq!(
            split_words("  a \"b c\" d='e f'g \"\" 'h\n"),
            ["a", "b c", "d=e fg", "", "h\n"]
        );
        assert_eq!(split_words("x\\ y"), ["x\\", "y"]);
        // A switch inside another parameter's quoted value is that value, not a switch.
        let c = Cmdline::parse("foo=\"bar extmerge=0\" systemd.sysext=\"0\"");
        assert!(c.enabled);
        assert!(!c.class_enabled(Class::Sysext, false));
        assert_eq!(c.args()[0], ("foo".into(), Some("bar extmerge=0".into())));
        // An unbalanced quote runs to the end.
        assert!(Cmdline::parse("foo=\"a extmerge=0").enabled);
    }

    #[test]
    fn cmdline_bytes_not_utf8_spoil_one_word_only() {
        let c = Cmdline::from_bytes(b"root=/dev/vda label=\xff\xfe extmerge=0 extmerge.debug\n");
        assert!(!c.enabled && c.debug);
        assert_eq!(c.args()[1].1.as_deref(), Some("\u{fffd}\u{fffd}"));
    }
}
