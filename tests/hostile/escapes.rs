//! Terminal escapes: entries whose names carry ESC, BEL, a newline, a C1 control or
//! invalid UTF-8, release-file and os-release values with control characters, and a
//! root path with them. Human-readable output (list, plan, merge, status, refresh,
//! unmerge, errors) shows each such value escaped as systemd's `cescape()` does, never
//! raw: no byte below 0x20 but the newlines that end lines, no DEL, no C1 control, only
//! UTF-8, and no line forged by a newline in a name. `--json` output stays JSON that
//! parses, with the values themselves in it.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;

use crate::common::*;

/// One CLI run with its output as bytes, exactly as written.
struct Raw {
    code: i32,
    out: Vec<u8>,
    err: Vec<u8>,
    cmd: String,
}

/// Runs `extmerge ARGS...` (the environment cleaned as the other runners do).
fn run_raw(args: &[&OsStr]) -> Raw {
    run_raw_env(args, &[])
}

fn run_raw_env(args: &[&OsStr], env: &[(&str, &str)]) -> Raw {
    let mut c = Command::new(BIN);
    c.args(args);
    c.env_remove("SYSTEMD_LOG_LEVEL");
    c.envs(env.iter().copied());
    for k in [
        "EXTMERGE_FAIL_AT_STEP",
        "SYSTEMD_SYSEXT_HIERARCHIES",
        "SYSTEMD_CONFEXT_HIERARCHIES",
        "SYSTEMD_SYSEXT_MUTABLE_MODE",
        "SYSTEMD_CONFEXT_MUTABLE_MODE",
    ] {
        c.env_remove(k);
    }
    let o = c.output().expect("run extmerge");
    Raw {
        code: o.status.code().unwrap_or(-1),
        out: o.stdout,
        err: o.stderr,
        cmd: format!("{args:?}"),
    }
}

/// `extmerge --root=ROOT ARGS...`.
fn run_fx(fx: &Fx, args: &[&str]) -> Raw {
    let root = format!("--root={}", fx.root.display());
    let mut a: Vec<&OsStr> = vec![OsStr::new(&root)];
    a.extend(args.iter().map(OsStr::new));
    run_raw(&a)
}

/// Asserts that `bytes` (one output stream of `cmd`) is text a terminal shows as it
/// is: UTF-8 with no control character but `\n`, and returns it.
#[track_caller]
fn clean_text(bytes: &[u8], what: &str) -> String {
    let s = std::str::from_utf8(bytes)
        .unwrap_or_else(|e| panic!("{what}: not UTF-8 ({e}): {:?}", bytes.escape_ascii()));
    if let Some(c) = s.chars().find(|&c| c.is_control() && c != '\n') {
        panic!(
            "{what}: raw control character {c:?} in:\n{}",
            s.escape_debug()
        );
    }
    s.to_string()
}

/// Both streams of a run are clean text; returns (stdout, stderr).
#[track_caller]
fn clean(r: &Raw, want_code: i32) -> (String, String) {
    let out = clean_text(&r.out, &format!("stdout of {}", r.cmd));
    let err = clean_text(&r.err, &format!("stderr of {}", r.cmd));
    assert_eq!(
        r.code, want_code,
        "{}:\nstdout:\n{out}\nstderr:\n{err}",
        r.cmd
    );
    (out, err)
}

#[track_caller]
fn has(hay: &str, needle: &str) {
    assert!(
        hay.contains(needle),
        "expected to find:\n{needle}\nin:\n{hay}"
    );
}

/// Parses JSON output (stdout), which may hold any character in its strings.
#[track_caller]
fn json(r: &Raw) -> serde_json::Value {
    assert_eq!(r.code, 0, "{}: {}", r.cmd, String::from_utf8_lossy(&r.err));
    serde_json::from_slice(&r.out).unwrap_or_else(|e| {
        panic!(
            "{}: not JSON ({e}):\n{}",
            r.cmd,
            String::from_utf8_lossy(&r.out)
        )
    })
}

/// A valid extension name with a C1 control (CSI, which some terminals obey), a quote
/// and a backslash: merged, and escaped wherever it is shown.
const C1_NAME: &str = "c1\u{9b}2J'q\\";
const C1_ESCAPED: &str = "c1\\xc2\\x9b2J\\'q\\\\";

/// Entries that are no valid extension names (ESC, BEL, newline, invalid UTF-8) and
/// how they are shown.
const BAD_NAMES: [(&[u8], &str); 4] = [
    (b"esc\x1b[31m", "esc\\x1b[31m"),
    (b"bel\x07", "bel\\a"),
    (b"nl\nforged line", "nl\\nforged line"),
    (b"bad\xff\xfe", "bad\\xff\\xfe"),
];

/// Entries named with control characters and invalid UTF-8 in a search directory, one
/// of them valid (a C1 control): every verb's output escapes them, the valid one is
/// merged under its real name, `--json` carries the real name.
#[test]
fn control_characters_in_entry_names_are_escaped() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("good", &[("usr/share/good", "good\n")]);
        fx.sysext(C1_NAME, &[("usr/share/c1", "c1\n")]);
        let dir = fx.path("/var/lib/extensions");
        for (raw, _) in BAD_NAMES {
            fs::create_dir_all(dir.join(OsStr::from_bytes(raw)).join("usr/share")).unwrap();
        }
        // A disk image's name too (a regular file: refused by name before it is read).
        fs::write(
            dir.join(OsStr::from_bytes(b"img\x1b]0;title\x07.raw")),
            b"x",
        )
        .unwrap();
        let ext = format!("{}/var/lib/extensions", fx.root.display());

        // `list` names the entries that are no extensions at debug level (as systemd).
        let root = format!("--root={}", fx.root.display());
        let list = run_raw_env(
            &[
                OsStr::new(&root),
                OsStr::new("--class=sysext"),
                OsStr::new("list"),
            ],
            &[("SYSTEMD_LOG_LEVEL", "debug")],
        );
        let (out, err) = clean(&list, 0);
        for (_, esc) in BAD_NAMES {
            has(
                &err,
                &format!("Skipping {ext}/{esc}: invalid image name \"{esc}\""),
            );
        }
        has(
            &err,
            &format!("Skipping {ext}/img\\x1b]0;title\\a.raw: invalid image name"),
        );
        let row = out
            .lines()
            .find(|l| l.starts_with(C1_ESCAPED))
            .unwrap_or_else(|| panic!("no row of {C1_ESCAPED} in:\n{out}"));
        has(row, &format!(" {ext}/{C1_ESCAPED} "));

        let (out, _) = clean(&run_fx(&fx, &["--class=sysext", "plan"]), 0);
        has(
            &out,
            &format!("  use  {C1_ESCAPED} (directory, {ext}/{C1_ESCAPED})\n"),
        );
        for (_, esc) in BAD_NAMES {
            has(
                &out,
                &format!("  ignore {ext}/{esc}: invalid image name \"{esc}\""),
            );
        }
        has(&out, &format!("  /usr: good, {C1_ESCAPED} (top first)"));
        assert!(
            !out.lines()
                .chain(err.lines())
                .any(|l| l.starts_with("forged")),
            "a newline in a name made a line of its own:\n{out}"
        );

        let (_, err) = clean(&run_fx(&fx, &["--class=sysext", "merge"]), 0);
        has(&err, &format!("Using extensions '{C1_ESCAPED}', 'good'."));
        assert_eq!(fx.read("/usr/share/c1").as_deref(), Some("c1\n"));
        assert_eq!(
            fx.read("/usr/.systemd-sysext/extensions"),
            Some(format!("{C1_NAME}\ngood\n")),
            "the metadata keeps the real name"
        );
        // One extension a line in the EXTENSIONS cell (systemd's status table).
        let (out, _) = clean(&run_fx(&fx, &["--class=sysext", "status"]), 0);
        has(&out, &format!("sysext {C1_ESCAPED} "));
        assert!(
            out.lines().any(|l| l.trim() == "good"),
            "good on a line of its own:\n{out}"
        );
        let (_, err) = clean(&run_fx(&fx, &["--class=sysext", "refresh"]), 0);
        has(
            &err,
            "Skipping extension refresh because no change was found",
        );

        // JSON: the values themselves, JSON-escaped.
        let v = json(&run_fx(&fx, &["--class=sysext", "status", "--json=short"]));
        let usr = v
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["hierarchy"] == "/usr")
            .unwrap_or_else(|| panic!("no /usr in {v}"));
        assert_eq!(usr["extensions"], serde_json::json!([C1_NAME, "good"]));
        let v = json(&run_fx(&fx, &["--class=sysext", "list", "--json=pretty"]));
        let names: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, [C1_NAME, "good"]);
        for args in [
            &["--class=sysext", "plan", "--json=short"][..],
            &["--class=sysext", "list", "--json=short"],
        ] {
            let r = run_fx(&fx, args);
            json(&r);
            // Nothing raw on the terminal either: JSON escapes every control character.
            clean(&r, 0);
        }
        let v = json(&run_fx(&fx, &["--class=sysext", "plan", "--json=short"]));
        let skipped: Vec<&str> = v[0]["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["path"].as_str().unwrap())
            .collect();
        for want in [
            "esc\x1b[31m",
            "bel\x07",
            "nl\nforged line",
            "bad\u{fffd}\u{fffd}",
        ] {
            assert!(
                skipped.contains(&format!("{ext}/{want}").as_str()),
                "{want:?} not in {skipped:?}"
            );
        }

        let (_, err) = clean(&run_fx(&fx, &["--class=sysext", "unmerge"]), 0);
        has(&err, &format!("Unmerged '{}/usr'.", fx.root.display()));
    });
}

/// Control characters in release-file values (ESC, a newline inside quotes, BEL) and
/// in the host's os-release: the verdicts and the plan's host line show them escaped;
/// in `--json` the reason is the same escaped text.
#[test]
fn control_characters_in_release_values_are_escaped() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.write(
            "/etc/os-release",
            "ID=debian\nVERSION_ID=\"12\x1b[0m\"\nSYSEXT_LEVEL=1.0\n",
        );
        fx.sysext_release(
            "r",
            Some("ID=deb\x1b[31mian\nSYSEXT_LEVEL=1.0\n"),
            &[("usr/share/r", "r\n")],
        );
        fx.sysext_release(
            "q",
            Some("ID=debian\nSYSEXT_LEVEL=\"1.0\n\x07\"\n"),
            &[("usr/share/q", "q\n")],
        );
        fx.sysext("good", &[("usr/share/good", "good\n")]);
        let ext = format!("{}/var/lib/extensions", fx.root.display());

        let (out, _) = clean(&run_fx(&fx, &["--class=sysext", "plan"]), 0);
        has(&out, "ID=debian VERSION_ID=12\\x1b[0m SYSEXT_LEVEL=1.0");
        has(
            &out,
            &format!("  skip r ({ext}/r): ID=deb\\x1b[31mian does not match host ID=debian\n"),
        );
        has(
            &out,
            &format!(
                "  skip q ({ext}/q): SYSEXT_LEVEL=1.0\\n\\a does not match host SYSEXT_LEVEL=1.0\n"
            ),
        );
        let v = json(&run_fx(&fx, &["--class=sysext", "plan", "--json=short"]));
        let reasons: Vec<&str> = v[0]["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["reason"].as_str())
            .collect();
        assert!(
            reasons.contains(&"ID=deb\\x1b[31mian does not match host ID=debian"),
            "{reasons:?}"
        );
        let (_, err) = clean(&run_fx(&fx, &["--class=sysext", "merge"]), 0);
        has(&err, "Using extensions 'good'.");
        clean(&run_fx(&fx, &["--class=sysext", "unmerge"]), 0);
    });
}

/// A root path with control characters in an error message: escaped.
#[test]
fn control_characters_in_error_paths_are_escaped() {
    let t = tempfile::tempdir().unwrap();
    let mut bad = t.path().as_os_str().as_bytes().to_vec();
    bad.extend_from_slice(b"/no\x1b[31m\nsuch\xff");
    let mut arg = b"--root=".to_vec();
    arg.extend_from_slice(&bad);
    let r = run_raw(&[OsStr::from_bytes(&arg), OsStr::new("list")]);
    let (_, err) = clean(&r, 1);
    assert_eq!(
        err,
        format!(
            "{}/no\\x1b[31m\\nsuch\\xff: cannot open root: No such file or directory\n",
            t.path().display()
        )
    );
}
