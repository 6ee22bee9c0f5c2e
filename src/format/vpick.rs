//! `NAME.v/` directory picking (systemd's `vpick.c`, `make_choice()`) and its version
//! order (`strverscmp_improved()` from `string-util-fundamental.c`).
//!
//! Both are transcriptions of systemd's C code, byte-based; where the behaviour document
//! and the C source disagree, the source is followed (see the notes on [`pick`]).

use std::cmp::Ordering;
use std::ffi::c_char;

use crate::format::arch;

/// A byte of a C string: past the end reads as the terminating NUL.
fn at(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

/// systemd's `is_valid_version_char()`.
fn is_valid_version_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'~' | b'-' | b'^' | b'.')
}

/// systemd's `CMP(x, y)` on two booleans.
fn cmp_bool(x: bool, y: bool) -> Ordering {
    x.cmp(&y)
}

/// systemd's `strverscmp_improved`.
///
/// Segment-wise (rpmvercmp-like) comparison: characters other than ASCII letters, digits and
/// `~ - ^ .` separate segments; `~` sorts before everything (pre-release), then the end of
/// the string, then `-`, then `^`, then `.`, then a segment with no separator; numeric
/// segments sort after alphabetic ones and are compared by value (leading zeros ignored).
/// Different strings can compare [`Ordering::Equal`] (`001` and `1`, `1.0` and `1.0,`).
/// A NUL byte inside a string ends it, as in C.
pub fn strverscmp_improved(a: &str, b: &str) -> Ordering {
    let a = a.as_bytes();
    let b = b.as_bytes();
    let (mut i, mut j) = (0usize, 0usize);

    loop {
        // Drop leading invalid characters.
        while at(a, i) != 0 && !is_valid_version_char(at(a, i)) {
            i += 1;
        }
        while at(b, j) != 0 && !is_valid_version_char(at(b, j)) {
            j += 1;
        }

        // '~': pre-releases; the side prefixed with '~' is older.
        if at(a, i) == b'~' || at(b, j) == b'~' {
            let r = cmp_bool(at(a, i) != b'~', at(b, j) != b'~');
            if r != Ordering::Equal {
                return r;
            }
            i += 1;
            j += 1;
        }

        // One string at its end: longer is newer. C compares the two `char`s here; after a
        // '~' the other side may be any byte, so its signedness follows the target as in C.
        if at(a, i) == 0 || at(b, j) == 0 {
            return (at(a, i) as c_char).cmp(&(at(b, j) as c_char));
        }

        // '-': separates version and release; the side with '-' is older.
        if at(a, i) == b'-' || at(b, j) == b'-' {
            let r = cmp_bool(at(a, i) != b'-', at(b, j) != b'-');
            if r != Ordering::Equal {
                return r;
            }
            i += 1;
            j += 1;
        }

        // '^': patched release.
        if at(a, i) == b'^' || at(b, j) == b'^' {
            let r = cmp_bool(at(a, i) != b'^', at(b, j) != b'^');
            if r != Ordering::Equal {
                return r;
            }
            i += 1;
            j += 1;
        }

        // '.': point release.
        if at(a, i) == b'.' || at(b, j) == b'.' {
            let r = cmp_bool(at(a, i) != b'.', at(b, j) != b'.');
            if r != Ordering::Equal {
                return r;
            }
            i += 1;
            j += 1;
        }

        let (mut ii, mut jj);
        if at(a, i).is_ascii_digit() || at(b, j).is_ascii_digit() {
            // Numeric segments; one of them may be empty, numbers beat letters.
            ii = i;
            while at(a, ii).is_ascii_digit() {
                ii += 1;
            }
            jj = j;
            while at(b, jj).is_ascii_digit() {
                jj += 1;
            }

            let r = cmp_bool(i != ii, j != jj);
            if r != Ordering::Equal {
                return r;
            }

            // Leading zeros do not count.
            while at(a, i) == b'0' {
                i += 1;
            }
            while at(b, j) == b'0' {
                j += 1;
            }

            // More digits is newer, then digit-wise.
            let r = (ii - i).cmp(&(jj - j));
            if r != Ordering::Equal {
                return r;
            }
            let r = a[i..ii].cmp(&b[j..jj]);
            if r != Ordering::Equal {
                return r;
            }
        } else {
            // Alphabetic segments (possibly empty).
            ii = i;
            while at(a, ii).is_ascii_alphabetic() {
                ii += 1;
            }
            jj = j;
            while at(b, jj).is_ascii_alphabetic() {
                jj += 1;
            }

            let n = (ii - i).min(jj - j);
            let r = a[i..i + n].cmp(&b[j..j + n]);
            if r != Ordering::Equal {
                return r;
            }

            // Longer is newer.
            let r = (ii - i).cmp(&(jj - j));
            if r != Ordering::Equal {
                return r;
            }
        }

        // Equivalent segments: go on with the next one.
        i = ii;
        j = jj;
    }
}

/// systemd 262's `version_is_valid(s, 0)` (`src/basic/string-util.c`, PR #43025, as
/// `make_choice()` in `src/shared/vpick.c` calls it): non-empty, at most `NAME_MAX` (255)
/// bytes, only the characters of the UAPI.10 Version Format Specification: ASCII letters,
/// digits and `. - ~ ^`. No `_`, `+` or `,` (systemd ≤ 261 allowed `. , _ - +` and refused
/// `~`/`^`).
pub fn version_is_valid(version: &str) -> bool {
    !version.is_empty()
        && version.len() <= 255
        && version
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'~' | b'^'))
}

/// systemd's `safe_atou(s)` applied to a non-empty all-digit string: `strtoul()` with base 0
/// (so a leading `0` makes it octal, and `08`/`09` are then not numbers), result must fit
/// C `unsigned` (32 bits).
fn safe_atou_digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let radix = if s.len() > 1 && s.starts_with('0') {
        8
    } else {
        10
    };
    let mut v: u64 = 0;
    for c in s.bytes() {
        let d = u64::from(c - b'0');
        if d >= radix {
            return None;
        }
        v = v.checked_mul(radix)?.checked_add(d)?;
    }
    u32::try_from(v).ok()
}

/// systemd's `parse_tries()`: `s` is the text from the last `+` on. `+LEFT` or
/// `+LEFT-DONE`, both numbers as [`safe_atou_digits`] reads them.
fn parse_tries(s: &str) -> Option<(u32, u32)> {
    let s = s.strip_prefix('+')?;
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    if n == 0 {
        return None;
    }
    let (left, rest) = s.split_at(n);
    let left = safe_atou_digits(left)?;
    if rest.is_empty() {
        return Some((left, 0));
    }
    let done = rest.strip_prefix('-')?;
    Some((left, safe_atou_digits(done)?))
}

/// `pick()`'s view of one matching entry: the parsed parts plus what the ranking needs.
struct Candidate<'a> {
    picked: Picked,
    name: &'a str,
    /// Index into (native, secondary, untagged); lower is preferred.
    arch_index: usize,
    /// C's `unsigned` tries values; `u32::MAX` when there is no counter.
    left: u32,
    done: u32,
}

fn parse_candidate<'a>(
    basename: &str,
    suffix: &str,
    file_name: &'a str,
    native: &str,
    secondary: Option<&str>,
) -> Option<Candidate<'a>> {
    // 1. B immediately followed by '_' (an empty basename matches everything, as in C).
    let mut e = if basename.is_empty() {
        file_name
    } else {
        file_name.strip_prefix(basename)?.strip_prefix('_')?
    };

    // 2. The suffix, cut off ("" always matches).
    e = e.strip_suffix(suffix)?;

    // 3. Tries counter from the last '+'; cut only when it parses.
    let mut tries = None;
    if let Some(plus) = e.rfind('+') {
        if let Some(t) = parse_tries(&e[plus..]) {
            tries = Some(t);
            e = &e[..plus];
        }
    }

    // 4. Architecture after the last '_'. A known but non-local architecture rejects the
    //    entry; anything else is "untagged". The text from the '_' is cut either way.
    let underscore = e.rfind('_');
    let tag = underscore.map(|u| &e[u + 1..]);
    let (arch_index, arch) = match tag {
        Some(t) if arch::is_known(t) => {
            if t == native {
                (0, Some(t.to_string()))
            } else if secondary == Some(t) {
                (1, Some(t.to_string()))
            } else {
                return None;
            }
        }
        _ => (2, None),
    };
    if let Some(u) = underscore {
        e = &e[..u];
    }

    // 5. Version validity.
    if !version_is_valid(e) {
        return None;
    }

    let (left, done) = tries.unwrap_or((u32::MAX, u32::MAX));
    Some(Candidate {
        picked: Picked {
            file_name: file_name.to_string(),
            version: e.to_string(),
            arch,
            tries_left: tries.map(|t| u64::from(t.0)),
            tries_done: tries.map(|t| u64::from(t.1)),
        },
        name: file_name,
        arch_index,
        left,
        done,
    })
}

/// Parses one `.v` directory entry as [`pick`] does (steps 1–5): `None` when the entry
/// does not match `basename`/`suffix`, carries a non-local architecture, or has an invalid
/// version.
pub fn parse_entry(
    basename: &str,
    suffix: &str,
    file_name: &str,
    native: &str,
    secondary: Option<&str>,
) -> Option<Picked> {
    parse_candidate(basename, suffix, file_name, native, secondary).map(|c| c.picked)
}

/// `make_choice()`'s comparison of a new entry against the best so far.
fn compare(found: &Candidate<'_>, best: &Candidate<'_>) -> Ordering {
    // Entries with tries left (or no counter) beat those with none left.
    cmp_bool(found.left != 0, best.left != 0)
        // Newer version.
        .then_with(|| strverscmp_improved(&found.picked.version, &best.picked.version))
        // Native over secondary over untagged.
        .then_with(|| best.arch_index.cmp(&found.arch_index))
        // More tries left.
        .then_with(|| found.left.cmp(&best.left))
        // Fewer tries done.
        .then_with(|| best.done.cmp(&found.done))
        // File name, byte-wise strcmp.
        .then_with(|| found.name.as_bytes().cmp(best.name.as_bytes()))
}

/// Picks among `entries` (file names in a `.v` directory) the one systemd would use for
/// basename `basename` and suffix `suffix` (`.raw`, `.sysext.raw`, `""`…), given the
/// local architectures (`native`, then optional `secondary`). Types are not checked here:
/// systemd ≥ 260 ignores an entry whose inode has the wrong type, so a caller passes only
/// the entries of the type it wants (see `inspect::discover`).
///
/// An entry matches `basename_VERSION[_ARCH][+LEFT[-DONE]]suffix`. Following `vpick.c`:
/// hidden entries count like any other; the tries counter is the text from the last `+`,
/// and `LEFT`/`DONE` are read as C's `safe_atou()` does (base 0: a leading `0` means
/// octal; values must fit 32 bits), otherwise the `+…` stays in the version (which then
/// is invalid); the text from the last `_` is always cut off, and rejects the entry only
/// if it names a known, non-local architecture; the version that remains must pass
/// [`version_is_valid`] (so no further `_`). The best entry is the maximum by: tries left ≠ 0,
/// version ([`strverscmp_improved`]), architecture (native > secondary > untagged), more
/// tries left (none = unlimited), fewer tries done, then larger file name.
pub fn pick<'a>(
    basename: &str,
    suffix: &str,
    entries: impl IntoIterator<Item = &'a str>,
    native: &str,
    secondary: Option<&str>,
) -> Option<Picked> {
    let mut best: Option<Candidate<'a>> = None;
    for name in entries {
        // `.` and `..` are never returned by systemd's readdir_all().
        if name == "." || name == ".." {
            continue;
        }
        let Some(found) = parse_candidate(basename, suffix, name, native, secondary) else {
            continue;
        };
        // As in C: a later entry replaces the best unless it compares lower.
        let better = match &best {
            None => true,
            Some(b) => compare(&found, b) != Ordering::Less,
        };
        if better {
            best = Some(found);
        }
    }
    best.map(|c| c.picked)
}

/// The entry vpick chose, with the parts it parsed from its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picked {
    /// The entry's file name inside the `.v` directory.
    pub file_name: String,
    /// The version part.
    pub version: String,
    /// The architecture tag, if the name had a known one.
    pub arch: Option<String>,
    /// `+LEFT`, `None` when the name has no tries counter.
    pub tries_left: Option<u64>,
    /// `-DONE`, `None` when the name has no tries counter.
    pub tries_done: Option<u64>,
}

/// Sorts by [`strverscmp_improved`] of `key`, ascending, without ever panicking.
///
/// systemd's order is not transitive for some strings (after `~`, non-ASCII bytes
/// compare as negative C `char`s), and Rust's `sort_by` may panic on a comparator that
/// is not a total order. Like systemd's `qsort`, this just yields *some* order then: an
/// insertion sort, stable, O(n²) comparisons (n is at most a few hundred extensions).
pub fn sort_by_version<T>(v: &mut [T], key: impl Fn(&T) -> &str) {
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && strverscmp_improved(key(&v[j - 1]), key(&v[j])) == Ordering::Greater {
            v.swap(j - 1, j);
            j -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering::{Equal, Greater, Less};

    fn check(a: &str, b: &str, want: Ordering) {
        assert_eq!(strverscmp_improved(a, b), want, "cmp({a:?}, {b:?})");
        assert_eq!(
            strverscmp_improved(b, a),
            want.reverse(),
            "cmp({b:?}, {a:?})"
        );
        assert_eq!(strverscmp_improved(a, a), Equal, "cmp({a:?}, {a:?})");
        assert_eq!(strverscmp_improved(b, b), Equal, "cmp({b:?}, {b:?})");
    }

    /// Every row of the behaviour document's A.5.3 table: (older, newer).
    #[test]
    fn ordering_spec_table() {
        let rows = [
            ("1.2", "1.10"),
            ("1.0~rc1", "1.0"),
            ("1.0~rc1", "1.0~rc2"),
            ("0.9", "1.0~rc1"),
            ("1.0", "1.0-rc1"),
            ("1.0", "1.0^post"),
            ("1.0-1", "1.0^1"),
            ("1.0-rc1", "1.0.1"),
            ("1.0-a", "1.0-1"),
            ("1.0", "1.0.0"),
            ("1.0.a", "1.0a"),
            ("1.0", "1.0+3"),
            ("1.2", "1_2"),
            ("1_2", "12"),
            ("v1.2", "1.2"),
            ("abc", "abcd"),
            ("5.9.9", "5.10"),
            ("", "0"),
        ];
        for (older, newer) in rows {
            check(older, newer, Less);
        }
        check("001", "1", Equal);
        check("1.0", "1.0,", Equal);
    }

    /// The chain from the comment in systemd's source, pairwise for every i < j.
    #[test]
    fn ordering_source_comment_chain() {
        let chain = [
            "122.1",
            "123~rc1-1",
            "123",
            "123-a",
            "123-a.1",
            "123-1",
            "123-1.1",
            "123^post1",
            "123.a-1",
            "123.1-1",
            "123a-1",
            "124-1",
        ];
        for i in 0..chain.len() {
            for j in i + 1..chain.len() {
                check(chain[i], chain[j], Less);
            }
        }
    }

    /// The ordered list of systemd's TEST(strverscmp_improved), pairwise for every i < j.
    #[test]
    fn ordering_systemd_test_list() {
        let list = [
            "~1",
            "",
            "ab",
            "abb",
            "abc",
            "0001",
            "002",
            "12",
            "122",
            "122.9",
            "123~rc1",
            "123",
            "123-a",
            "123-a.1",
            "123-a1",
            "123-a1.1",
            "123-3",
            "123-3.1",
            "123^patch1",
            "123^1",
            "123.a-1",
            "123.1-1",
            "123a-1",
            "124",
        ];
        for i in 0..list.len() {
            for j in i + 1..list.len() {
                check(list[i], list[j], Less);
            }
        }
    }

    /// Further cases with the result written out (mostly the assertions of systemd's tests).
    #[test]
    fn ordering_cases() {
        let cases = [
            ("123.45-67.88", "123.45-67.89", Less),
            ("123.45-67.89", "123.45-67.89a", Less),
            ("123.45-67.ab", "123.45-67.89", Less),
            ("123.45-67.9", "123.45-67.89", Less),
            ("123.45-67", "123.45-67.89", Less),
            ("123.45-66.89", "123.45-67.89", Less),
            ("123.45-9.99", "123.45-67.89", Less),
            ("123.42-99.99", "123.45-67.89", Less),
            ("123-99.99", "123.45-67.89", Less),
            ("123~rc1-99.99", "123.45-67.89", Less),
            ("123~rc1-99.99", "123-45.67.89", Less),
            ("123~rc1-99.99", "123~rc2-67.89", Less),
            ("123~rc1-99.99", "123^aa2-67.89", Less),
            ("123~rc1-99.99", "123aa2-67.89", Less),
            ("123-99.99", "123^aa2-67.89", Less),
            ("123-99.99", "123aa2-67.89", Less),
            ("123^45-67.89", "123.45-67.89", Less),
            ("123^aa1-99.99", "123^aa2-67.89", Less),
            ("123^aa2-67.89", "123aa2-67.89", Less),
            ("123.aa2-67.89", "123aa2-67.89", Less),
            ("123.aa2-67.89", "123.ab2-67.89", Less),
            ("123_aa2-67.89", "123aa+2-67.89", Equal),
            ("123.", "123", Greater),
            ("12_3", "123", Less),
            ("12_3", "12", Greater),
            ("12_3", "12.3", Greater),
            ("123.0", "123", Greater),
            ("123_0", "123", Greater),
            ("123..0", "123.0", Less),
            ("0_", "0", Equal),
            ("_0_", "0", Equal),
            ("_0", "0", Equal),
            ("0", "0___", Equal),
            ("", "_", Equal),
            ("_", "_", Equal),
            ("", "~", Greater),
            ("~", "~", Equal),
            ("2.0", "2.0.1", Less),
            ("2.0.1a", "2.0.1", Greater),
            ("5.5p1", "5.5p2", Less),
            ("5.5p1", "5.5p10", Less),
            ("10xyz", "10.1xyz", Greater),
            ("xyz10", "xyz10.1", Less),
            ("xyz.4", "8", Less),
            ("xyz.4", "2", Less),
            ("5.5p2", "5.6p1", Less),
            ("5.6p1", "6.5p1", Less),
            ("6.0.rc1", "6.0", Greater),
            ("10b2", "10a1", Greater),
            ("10a2", "10b2", Less),
            ("1.0a", "1.0aa", Less),
            ("10.0001", "10.1", Equal),
            ("10.0001", "10.0039", Less),
            ("4.999.9", "5.0", Less),
            ("20101121", "20101122", Less),
            ("2.0", "2_0", Less),
            ("2_0", "2_0", Equal),
            ("1.0~rc1~git123", "1.0~rc1", Less),
            ("1.0^", "1.0", Greater),
            ("1.0^git1", "1.0^git2", Less),
            ("1.0^git1", "1.01", Less),
            ("1.0^20160101", "1.0.1", Less),
            ("1+2", "1_2", Equal),
            ("123_a", "123a", Equal),
            ("A", "a", Less),
            ("1.0\u{e9}", "1.0", Equal),
            ("1.0\u{e9}1", "1.0_1", Equal),
            ("1.0\u{e9}1", "1.01", Less),
            // A NUL ends the string, as in C.
            ("1.0\u{0}9", "1.0", Equal),
        ];
        assert!(cases.len() >= 30);
        for (a, b, want) in cases {
            check(a, b, want);
        }
    }

    /// Antisymmetry (and reflexivity) over all pairs, and transitivity over all triples.
    #[test]
    #[cfg_attr(miri, ignore = "100 000 comparisons take minutes when interpreted")]
    fn ordering_antisymmetric_and_transitive() {
        let list = [
            "",
            "~",
            "~1",
            "0",
            "00",
            "001",
            "1",
            "1.0",
            "1.0,",
            "1.0~rc1",
            "1.0~rc2",
            "1.0-rc1",
            "1.0^post",
            "1.0.0",
            "1.0a",
            "1.0.a",
            "1.0+3",
            "1_2",
            "1.2",
            "1.10",
            "12",
            "v1.2",
            "abc",
            "abcd",
            "5.9.9",
            "5.10",
            "123^1",
            "123-a1",
            "122.1",
            "123~rc1-1",
            "123",
            "123-a",
            "123-1.1",
            "124-1",
            "2024.01",
            "2024.1",
            "1.0-",
            "1.0.",
            "1.0^",
            "_",
            "a.b",
            "A",
            "~~",
            "1~",
            "1-~",
            "x86-64",
            "1,5",
        ];
        assert!(list.len() >= 40);
        for a in list {
            assert_eq!(strverscmp_improved(a, a), Equal, "{a:?}");
            for b in list {
                assert_eq!(
                    strverscmp_improved(a, b),
                    strverscmp_improved(b, a).reverse(),
                    "{a:?} vs {b:?}"
                );
            }
        }
        for a in list {
            for b in list {
                for c in list {
                    let ab = strverscmp_improved(a, b);
                    let bc = strverscmp_improved(b, c);
                    if ab != Greater && bc != Greater {
                        let ac = strverscmp_improved(a, c);
                        assert_ne!(ac, Greater, "{a:?} <= {b:?} <= {c:?}");
                        if ab == Less || bc == Less {
                            assert_eq!(ac, Less, "{a:?} <= {b:?} <= {c:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn version_validity() {
        // systemd 262 `version_is_valid(s, 0)`: UAPI.10 characters only.
        for (v, want) in [
            ("1", true),
            ("1.0", true),
            ("1.0-rc1", true),
            ("ABCxyz09", true),
            ("1.0~rc1", true),
            ("1.0^post", true),
            ("2.0.0~rc1", true),
            ("252.12-1~deb12u1", true),
            ("123~post1", true),
            ("~", true),
            ("^", true),
            (".", true),
            ("..", true),
            ("-", true),
            ("", false),
            ("1,2_3+4", false),
            ("1,2", false),
            ("1_2", false),
            ("1+2", false),
            ("1 0", false),
            ("1/0", false),
            ("1.0\u{e9}", false),
            ("1:0", false),
            ("1=0", false),
            ("host=1.0", false),
        ] {
            assert_eq!(version_is_valid(v), want, "{v:?}");
        }
        assert!(version_is_valid(&"1".repeat(255)));
        assert!(!version_is_valid(&"1".repeat(256)));
        assert!(version_is_valid(&"~".repeat(255)));
    }

    #[test]
    fn tries_parsing() {
        for (s, want) in [
            ("+0", Some((0, 0))),
            ("+3", Some((3, 0))),
            ("+3-2", Some((3, 2))),
            ("+0-10", Some((0, 10))),
            ("+1-010", Some((1, 8))),
            ("+010", Some((8, 0))),
            ("+07-07", Some((7, 7))),
            ("+00", Some((0, 0))),
            ("+4294967295", Some((u32::MAX, 0))),
            ("+4294967295-4294967295", Some((u32::MAX, u32::MAX))),
            ("+4294967296", None),
            ("+1-4294967296", None),
            ("+99999999999999999999999", None),
            ("+08", None),
            ("+1-09", None),
            ("+", None),
            ("+abc", None),
            ("+3-", None),
            ("+-3", None),
            ("+3-x", None),
            ("+3-2-1", None),
            ("+3a", None),
            ("+ 3", None),
            ("3", None),
        ] {
            assert_eq!(parse_tries(s), want, "{s:?}");
        }
    }

    const NATIVE: &str = "x86-64";
    const SECONDARY: Option<&str> = Some("x86");

    fn p(file_name: &str, version: &str, arch: Option<&str>, tries: Option<(u64, u64)>) -> Picked {
        Picked {
            file_name: file_name.into(),
            version: version.into(),
            arch: arch.map(Into::into),
            tries_left: tries.map(|t| t.0),
            tries_done: tries.map(|t| t.1),
        }
    }

    struct Case<'a> {
        basename: &'static str,
        suffix: &'static str,
        entries: &'a [&'static str],
        native: &'static str,
        secondary: Option<&'static str>,
        want: Option<Picked>,
    }

    fn raw<'a>(entries: &'a [&'static str], want: Option<Picked>) -> Case<'a> {
        Case {
            basename: "foo",
            suffix: ".raw",
            entries,
            native: NATIVE,
            secondary: SECONDARY,
            want,
        }
    }

    fn run(cases: Vec<Case<'_>>) {
        for c in &cases {
            let got = pick(
                c.basename,
                c.suffix,
                c.entries.iter().copied(),
                c.native,
                c.secondary,
            );
            assert_eq!(got, c.want, "{} {:?} {:?}", c.basename, c.suffix, c.entries);
            // The result must not depend on the directory order.
            let got_rev = pick(
                c.basename,
                c.suffix,
                c.entries.iter().rev().copied(),
                c.native,
                c.secondary,
            );
            assert_eq!(got_rev, c.want, "reversed {:?}", c.entries);
        }
    }

    /// Every row of the behaviour document's A.5.4 table (host x86-64, `foo.raw.v`).
    #[test]
    fn pick_spec_table() {
        run(vec![
            raw(
                &["foo_1.2.raw", "foo_1.10.raw"],
                Some(p("foo_1.10.raw", "1.10", None, None)),
            ),
            raw(
                &["foo_1.0.raw", "foo_1.0~rc1.raw"],
                Some(p("foo_1.0.raw", "1.0", None, None)),
            ),
            raw(
                &["foo_1.0_arm64.raw", "foo_0.9_x86-64.raw"],
                Some(p("foo_0.9_x86-64.raw", "0.9", Some("x86-64"), None)),
            ),
            raw(
                &["foo_1.0_x86.raw", "foo_1.0.raw"],
                Some(p("foo_1.0_x86.raw", "1.0", Some("x86"), None)),
            ),
            raw(
                &["foo_2.0+0.raw", "foo_1.0.raw"],
                Some(p("foo_1.0.raw", "1.0", None, None)),
            ),
            raw(
                &["foo_2.0+0.raw"],
                Some(p("foo_2.0+0.raw", "2.0", None, Some((0, 0)))),
            ),
            raw(
                &["foo_2.0+1-2.raw", "foo_2.0+3.raw"],
                Some(p("foo_2.0+3.raw", "2.0", None, Some((3, 0)))),
            ),
            raw(
                &["foo_1.0-rc1.raw", "foo_1.0.raw"],
                Some(p("foo_1.0-rc1.raw", "1.0-rc1", None, None)),
            ),
        ]);
    }

    #[test]
    fn pick_matching() {
        let cases = vec![
            // Nothing there / nothing matching.
            raw(&[], None),
            raw(&["foobar_1.raw", "foo.raw", "foo", "fo_1.raw"], None),
            raw(
                &["foobar_2.raw", "foo_1.raw"],
                Some(p("foo_1.raw", "1", None, None)),
            ),
            raw(&["foo_1.img", "foo_1.raw.bak", "foo_1.RAW"], None),
            // systemd 262 (UAPI.10 characters): '~' and '^' are valid, pre-release sorts first.
            raw(
                &["foo_1.0~rc1.raw", "foo_1.0^post.raw"],
                Some(p("foo_1.0^post.raw", "1.0^post", None, None)),
            ),
            raw(
                &["foo_1.0~rc1.raw"],
                Some(p("foo_1.0~rc1.raw", "1.0~rc1", None, None)),
            ),
            raw(&["foo_9_arm64.raw", "foo_9_x86_64.raw_"], None),
            raw(&["foo_.raw", "foo__1.raw", "foo_1_.raw_"], None),
            // "_" with something that is not an architecture: cut anyway.
            raw(&["foo_1_.raw"], Some(p("foo_1_.raw", "1", None, None))),
            raw(&["foo_1_2.raw"], Some(p("foo_1_2.raw", "1", None, None))),
            // A '_' left in the version after the tag is cut makes it invalid (262).
            raw(&["foo_1_2_3.raw", "foo_1_2_x86-64.raw"], None),
            raw(&["foo_a_1.0_x86.raw"], None),
            raw(
                &["foo_1.2_beta.raw"],
                Some(p("foo_1.2_beta.raw", "1.2", None, None)),
            ),
            raw(
                &["foo_x86-64.raw"],
                Some(p("foo_x86-64.raw", "x86-64", None, None)),
            ),
            raw(
                &["foo_1.0_X86-64.raw"],
                Some(p("foo_1.0_X86-64.raw", "1.0", None, None)),
            ),
            // Not a tries counter: the "+…" stays in the version.
            // A '+' that is no tries counter stays in the version, which is then invalid
            // (262; older systemd allowed '+' in versions).
            raw(&["foo_1.0+abc.raw"], None),
            raw(&["foo_1.0+99999999999999999999999.raw"], None),
            raw(
                &["foo_1.0+4294967296.raw", "foo_0.1.raw"],
                Some(p("foo_0.1.raw", "0.1", None, None)),
            ),
            raw(
                &["foo_1.0+4294967295-0.raw"],
                Some(p(
                    "foo_1.0+4294967295-0.raw",
                    "1.0",
                    None,
                    Some((4294967295, 0)),
                )),
            ),
            raw(&["foo_1+3-.raw"], None),
            raw(&["foo_1+09.raw"], None),
            raw(
                &["foo_1+010.raw"],
                Some(p("foo_1+010.raw", "1", None, Some((8, 0)))),
            ),
            // The tries part comes last: "+3_x86-64" is not a counter ("_x86-64" is an
            // arch), so the version "1+3" remains, invalid since 262.
            raw(&["foo_1+3_x86-64.raw"], None),
            raw(
                &["foo_1_x86-64+3-1.raw"],
                Some(p("foo_1_x86-64+3-1.raw", "1", Some("x86-64"), Some((3, 1)))),
            ),
            // Suffix cut blindly: ".confext.raw" matches ".raw" with version "3.confext".
            raw(
                &["foo_2.raw", "foo_3.confext.raw"],
                Some(p("foo_3.confext.raw", "3.confext", None, None)),
            ),
            // ',' is no version character any more (262).
            raw(&["foo_1,5.raw"], None),
            // Non-ASCII: invalid in the version, fine in a cut-off tag or the basename.
            raw(&["foo_1.0\u{e9}.raw", "foo_\u{e9}_1.raw"], None),
            raw(
                &["foo_1.0_\u{fc}nknown.raw"],
                Some(p("foo_1.0_\u{fc}nknown.raw", "1.0", None, None)),
            ),
            Case {
                basename: "f\u{f6}\u{f6}",
                suffix: ".raw",
                entries: &["f\u{f6}\u{f6}_1.raw", "f\u{f6}\u{f6}_2.raw", "foo_3.raw"],
                native: NATIVE,
                secondary: SECONDARY,
                want: Some(p("f\u{f6}\u{f6}_2.raw", "2", None, None)),
            },
            // ".sysext.raw" suffix.
            Case {
                basename: "foo",
                suffix: ".sysext.raw",
                entries: &["foo_1.sysext.raw", "foo_2.raw", "foo_3.confext.raw"],
                native: NATIVE,
                secondary: SECONDARY,
                want: Some(p("foo_1.sysext.raw", "1", None, None)),
            },
            // Empty suffix (directories): everything after "foo_" is candidate.
            Case {
                basename: "foo",
                suffix: "",
                entries: &["foo_1", "foo_2", "foo_3.raw", "foo_4~x", "foo_5,x", "."],
                native: NATIVE,
                secondary: SECONDARY,
                want: Some(p("foo_4~x", "4~x", None, None)),
            },
            Case {
                basename: "foo",
                suffix: ".sysext",
                entries: &["foo_1.sysext", "foo_2", "foo_1.5_x86.sysext"],
                native: NATIVE,
                secondary: SECONDARY,
                want: Some(p("foo_1.5_x86.sysext", "1.5", Some("x86"), None)),
            },
            // Hidden entries count like any other.
            Case {
                basename: ".foo",
                suffix: ".raw",
                entries: &[".foo_1.raw", ".foo_2.raw", "foo_3.raw"],
                native: NATIVE,
                secondary: SECONDARY,
                want: Some(p(".foo_2.raw", "2", None, None)),
            },
            raw(
                &[".foo_3.raw", "foo_1.raw"],
                Some(p("foo_1.raw", "1", None, None)),
            ),
        ];
        run(cases);
    }

    #[test]
    fn pick_ranking() {
        let cases = vec![
            // Native > secondary > untagged at equal versions.
            raw(
                &["foo_1_x86.raw", "foo_1_x86-64.raw", "foo_1.raw"],
                Some(p("foo_1_x86-64.raw", "1", Some("x86-64"), None)),
            ),
            // Version first, then architecture.
            raw(
                &["foo_1_x86-64.raw", "foo_2.raw"],
                Some(p("foo_2.raw", "2", None, None)),
            ),
            // Architecture before tries.
            raw(
                &["foo_1_x86-64+1.raw", "foo_1_x86+5.raw"],
                Some(p("foo_1_x86-64+1.raw", "1", Some("x86-64"), Some((1, 0)))),
            ),
            // LEFT=0 demoted below any older version with tries left; newest among LEFT=0.
            raw(
                &["foo_5+0.raw", "foo_1+0-3.raw", "foo_0.1.raw"],
                Some(p("foo_0.1.raw", "0.1", None, None)),
            ),
            raw(
                &["foo_5+0-9.raw", "foo_1+0.raw"],
                Some(p("foo_5+0-9.raw", "5", None, Some((0, 9)))),
            ),
            // No counter counts as unlimited tries.
            raw(
                &["foo_1+5.raw", "foo_1.raw"],
                Some(p("foo_1.raw", "1", None, None)),
            ),
            // ... but an explicit UINT_MAX left ties with it and wins on DONE.
            raw(
                &["foo_1.raw", "foo_1+4294967295.raw"],
                Some(p("foo_1+4294967295.raw", "1", None, Some((4294967295, 0)))),
            ),
            // Fewer tries done.
            raw(
                &["foo_1+2-5.raw", "foo_1+2-1.raw"],
                Some(p("foo_1+2-1.raw", "1", None, Some((2, 1)))),
            ),
            // Equal versions: larger file name wins.
            raw(
                &["foo_1.0.raw", "foo_1.00.raw"],
                Some(p("foo_1.00.raw", "1.00", None, None)),
            ),
            raw(
                &["foo_001.raw", "foo_1.raw"],
                Some(p("foo_1.raw", "1", None, None)),
            ),
            raw(
                &["foo_1_2.raw", "foo_1_3.raw", "foo_1.raw"],
                Some(p("foo_1_3.raw", "1", None, None)),
            ),
            // No secondary architecture: x86 is foreign on this host.
            Case {
                basename: "foo",
                suffix: ".raw",
                entries: &["foo_1_x86.raw", "foo_0.5.raw", "foo_0.4_riscv64.raw"],
                native: "riscv64",
                secondary: None,
                want: Some(p("foo_0.5.raw", "0.5", None, None)),
            },
            Case {
                basename: "foo",
                suffix: ".raw",
                entries: &["foo_1_arm.raw", "foo_1_arm64.raw", "foo_2_arm-be.raw"],
                native: "arm64",
                secondary: Some("arm"),
                want: Some(p("foo_1_arm64.raw", "1", Some("arm64"), None)),
            },
        ];
        run(cases);
    }

    /// `TEST(path_pick)` of systemd's `src/test/test-vpick.c`, the parts that
    /// systemd-sysext's filter (`_ARCHITECTURE_INVALID`, i.e. native, secondary, untagged;
    /// `PICK_ARCHITECTURE|PICK_TRIES`) can express; types are checked by discovery.
    #[test]
    fn systemd_test_vpick_path_pick() {
        const FOO_V: &[&str] = &[
            "foo_5.5.raw",
            "foo_55.raw",
            "foo_5.raw",
            "foo_5_ia64.raw",
            "foo_7.raw",
            "foo_7_x86-64.raw",
            "foo_55_x86-64.raw",
            "foo_55_x86.raw",
            "foo_99_x86.raw",
            "foo_100_sparc.raw",
            "quux_1_s390.raw",
            "quux_2_s390+4-6.raw",
            "quux_3_s390+0-10.raw",
        ];
        let without_99: Vec<&str> = FOO_V
            .iter()
            .copied()
            .filter(|n| *n != "foo_99_x86.raw")
            .collect();
        let case = |entries, basename, native, secondary, want| Case {
            basename,
            suffix: ".raw",
            entries,
            native,
            secondary,
            want,
        };
        run(vec![
            // x86/x86-64 host: the x86 entry "99" is newest; sparc is never picked.
            case(
                FOO_V,
                "foo",
                "x86-64",
                Some("x86"),
                Some(p("foo_99_x86.raw", "99", Some("x86"), None)),
            ),
            case(
                FOO_V,
                "foo",
                "x86",
                None,
                Some(p("foo_99_x86.raw", "99", Some("x86"), None)),
            ),
            // After unlinking foo_99_x86.raw: "55", native architecture first.
            case(
                &without_99,
                "foo",
                "x86-64",
                Some("x86"),
                Some(p("foo_55_x86-64.raw", "55", Some("x86-64"), None)),
            ),
            case(
                &without_99,
                "foo",
                "x86",
                None,
                Some(p("foo_55_x86.raw", "55", Some("x86"), None)),
            ),
            // basename "quux" on s390: "3" has no tries left, so "2" (+4-6) wins.
            case(
                FOO_V,
                "quux",
                "s390",
                None,
                Some(p("quux_2_s390+4-6.raw", "2", Some("s390"), Some((4, 6)))),
            ),
        ]);
    }

    /// `TEST(pick_result_compare)` of systemd's `src/test/test-vpick.c`, as names.
    #[test]
    fn systemd_test_vpick_compare() {
        run(vec![
            // Everything equal: the larger name.
            raw(
                &["foo_1_a.raw", "foo_1_b.raw"],
                Some(p("foo_1_b.raw", "1", None, None)),
            ),
            // Newer version.
            raw(
                &["foo_1.raw", "foo_2.raw"],
                Some(p("foo_2.raw", "2", None, None)),
            ),
            // Tries left over none left, before the version.
            raw(
                &["foo_2+0.raw", "foo_1+1.raw"],
                Some(p("foo_1+1.raw", "1", None, Some((1, 0)))),
            ),
            // More tries left, then fewer done.
            raw(
                &["foo_1+1.raw", "foo_1+5.raw"],
                Some(p("foo_1+5.raw", "1", None, Some((5, 0)))),
            ),
            raw(
                &["foo_1+3-5.raw", "foo_1+3-1.raw"],
                Some(p("foo_1+3-1.raw", "1", None, Some((3, 1)))),
            ),
            // Native architecture preferred, but the version comes first.
            raw(
                &["foo_1_x86-64.raw", "foo_1_x86.raw"],
                Some(p("foo_1_x86-64.raw", "1", Some("x86-64"), None)),
            ),
            raw(
                &["foo_1_x86-64.raw", "foo_2_x86.raw"],
                Some(p("foo_2_x86.raw", "2", Some("x86"), None)),
            ),
        ]);
    }

    /// Version strings systemd 262 accepts in `.v/` names and older ones refused, and the
    /// other way round (`version_is_valid(s, 0)`, PR #43025; the closed PR #41937 asked for
    /// `2.0.0~rc1` to sort before `2.0.0`).
    #[test]
    fn pick_version_characters_262() {
        run(vec![
            raw(
                &["foo_2.0.0.raw", "foo_2.0.0~rc1.raw"],
                Some(p("foo_2.0.0.raw", "2.0.0", None, None)),
            ),
            raw(
                &["foo_1.9.raw", "foo_2.0.0~rc1.raw"],
                Some(p("foo_2.0.0~rc1.raw", "2.0.0~rc1", None, None)),
            ),
            raw(
                &["foo_123.raw", "foo_123^post1.raw"],
                Some(p("foo_123^post1.raw", "123^post1", None, None)),
            ),
            raw(
                &["foo_252.12-1~deb12u1_x86-64.raw", "foo_252.11.raw"],
                Some(p(
                    "foo_252.12-1~deb12u1_x86-64.raw",
                    "252.12-1~deb12u1",
                    Some("x86-64"),
                    None,
                )),
            ),
            // Formerly valid, now ignored: ',' '_' and a '+' that is no counter.
            raw(
                &["foo_1.raw", "foo_2,1.raw", "foo_3_1_x86.raw", "foo_4+x.raw"],
                Some(p("foo_1.raw", "1", None, None)),
            ),
            // "host=" versions (a later proposal) are invalid.
            raw(&["foo_host=1.0.raw"], None),
        ]);
    }

    #[test]
    fn parse_entry_parts() {
        assert_eq!(
            parse_entry("foo", ".raw", "foo_1.2_x86+3-4.raw", NATIVE, SECONDARY),
            Some(p("foo_1.2_x86+3-4.raw", "1.2", Some("x86"), Some((3, 4))))
        );
        assert_eq!(
            parse_entry("foo", ".raw", "foo_1.2_s390x.raw", NATIVE, SECONDARY),
            None
        );
        assert_eq!(
            parse_entry("foo", ".raw", "foo.raw", NATIVE, SECONDARY),
            None
        );
    }
}
