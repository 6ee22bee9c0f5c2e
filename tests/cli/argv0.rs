//! `extmerge` under systemd's names (a symlink or a copy named `systemd-sysext` /
//! `systemd-confext`): `--help` speaks as that program, `--version` has systemd's first
//! line so that scripts parsing it get a number.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::BIN;

/// `BIN` linked (or copied) into `dir` as `name`.
fn install_as(dir: &Path, name: &str, copy: bool) -> PathBuf {
    let p = dir.join(name);
    if copy {
        std::fs::copy(BIN, &p).expect("copy extmerge");
    } else {
        std::os::unix::fs::symlink(BIN, &p).expect("symlink extmerge");
    }
    p
}

/// Runs `prog args`, expecting success; stdout. A copy just written may be "busy" for a
/// moment: another test thread's fork can hold its write fd until that child execs.
fn stdout_of(prog: &Path, args: &[&str]) -> String {
    let mut tries = 0;
    let o = loop {
        match Command::new(prog).args(args).output() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => break r.expect("run extmerge"),
        }
    };
    assert!(
        o.status.success(),
        "{} {args:?}: {}\n{}",
        prog.display(),
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("UTF-8 output")
}

/// The two systemd names, their class in words and the other class's words.
const NAMES: [(&str, &str, &str); 2] = [
    (
        "systemd-sysext",
        "system extensions (/usr, /opt)",
        "configuration extensions",
    ),
    (
        "systemd-confext",
        "configuration extensions (/etc)",
        "system extensions",
    ),
];

#[test]
fn help_speaks_as_systemd_sysext_and_confext() {
    let t = tempfile::tempdir().unwrap();
    for (i, (name, ours, other)) in NAMES.into_iter().enumerate() {
        // One by symlink, one as a copy: argv[0]'s file name decides either way.
        let prog = install_as(t.path(), name, i == 1);
        for args in [&["--help"][..], &["-h"], &["help"]] {
            let help = stdout_of(&prog, args);
            assert_eq!(
                help.lines().next(),
                Some(format!("Usage: {name} [OPTIONS...] [VERB]").as_str()),
                "{name} {args:?}:\n{help}"
            );
            assert!(help.contains(&format!("Merge {ours}.")), "{name}:\n{help}");
            assert!(!help.contains(other), "{name}:\n{help}");
            assert!(
                !help.contains("--class"),
                "{name}: no --class line:\n{help}"
            );
            assert!(!help.contains("Usage: extmerge"), "{name}:\n{help}");
            assert!(help.contains("--root=PATH") && help.contains("--version"));
        }
    }
    // As itself: its own name and the --class option.
    let help = stdout_of(Path::new(BIN), &["--help"]);
    assert!(
        help.starts_with("Usage: extmerge [OPTIONS...] [VERB]\n"),
        "{help}"
    );
    assert!(help.contains("--class=CLASS"), "{help}");
}

#[test]
fn version_first_line_parses_like_systemds() {
    let own = env!("CARGO_PKG_VERSION");
    let t = tempfile::tempdir().unwrap();
    for (name, _, _) in NAMES {
        let prog = install_as(t.path(), name, false);
        let v = stdout_of(&prog, &["--version"]);
        let first = v.lines().next().unwrap_or_default();
        // systemd: "systemd 252 (252.39-1~deb12u1)"; the number is the systemd release
        // whose behaviour extmerge follows, the parentheses say what runs.
        assert_eq!(first, format!("systemd 262 (extmerge {own})"), "{name}");
        // What scripts do: `systemd-sysext --version | head -1 | awk '{print $2}'`.
        let o = Command::new("sh")
            .arg("-c")
            .arg(r#""$0" --version | head -1 | awk '{print $2}'"#)
            .arg(&prog)
            .output()
            .expect("run sh");
        let got = String::from_utf8_lossy(&o.stdout).trim().to_string();
        let n: u32 = got
            .parse()
            .unwrap_or_else(|_| panic!("{name}: {got:?} is not a number"));
        assert!(n >= 252, "{name}: {n}");
    }
    let v = stdout_of(Path::new(BIN), &["--version"]);
    assert_eq!(
        v.lines().next(),
        Some(format!("extmerge {own}").as_str()),
        "{v}"
    );
}
