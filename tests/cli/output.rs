//! The CLI's output in systemd 262's shapes: `help` values of options, the tables of
//! `list` and `status` (`format-table`: timestamps with the weekday, one extension a
//! line), and the time `list` shows for a directory (its birth time, as systemd's image
//! discovery takes it).

use std::process::Command;

use crate::common::*;

fn stdout_of(args: &[&str]) -> (i32, String) {
    let o = Command::new(BIN).args(args).output().expect("run extmerge");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

#[test]
fn json_help_lists_values_as_systemd() {
    // systemd's parse_json_argument(): puts("pretty\nshort\noff"), exit 0.
    for args in [&["--json=help"][..], &["--json", "help", "status"]] {
        assert_eq!(
            stdout_of(args),
            (0, "pretty\nshort\noff\n".into()),
            "{args:?}"
        );
    }
}

#[test]
fn mutable_help_lists_modes() {
    let (code, out) = stdout_of(&["--mutable=help"]);
    assert_eq!(code, 0);
    // systemd 262's output, heading included.
    assert_eq!(
        out,
        "Known mutability modes:\nno\nyes\nauto\nimport\nephemeral\nephemeral-import\n"
    );
    // Every value listed is accepted.
    for m in out.lines().skip(1) {
        let (code, _) = stdout_of(&[&format!("--mutable={m}"), "--help"]);
        assert_eq!(code, 0, "{m}");
    }
}

/// A `Www YYYY-MM-DD HH:MM:SS UTC` timestamp (systemd's format_timestamp()).
fn is_timestamp(s: &str) -> bool {
    let p: Vec<&str> = s.split(' ').collect();
    p.len() == 4
        && ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"].contains(&p[0])
        && p[1].len() == 10
        && p[2].len() == 8
        && p[3] == "UTC"
}

#[test]
fn list_time_is_birth_time_with_weekday() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let dir = fx.sysext("a", &[("usr/share/a", "a\n")]);
        // The top level's mtime far in the past: `list` shows the birth time instead.
        let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        std::fs::File::open(&dir)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let root = format!("--root={}", fx.root.display());
        let r = run_cli(&[root.clone(), "--class=sysext".into(), "list".into()], &[]);
        r.ok();
        let line = r.out.lines().nth(1).unwrap_or_default().to_string();
        let time = line[line.rfind("/a").map(|i| i + 2).unwrap_or(0)..].trim();
        assert!(is_timestamp(time), "{time:?} in\n{}", r.out);
        let r = run_cli(
            &[
                root,
                "--class=sysext".into(),
                "--json=short".into(),
                "list".into(),
            ],
            &[],
        );
        r.ok();
        let t: u64 = r
            .out
            .split("\"time\":")
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{}", r.out));
        assert!(
            t > 1_000_000_000_000_000 + 1_000_000,
            "birth time, not the old mtime: {t}"
        );
        assert!(!r.out.contains("2001-09-09"));
    });
}

#[test]
fn status_table_one_extension_a_line() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        fx.sysext("b", &[("usr/share/b", "b\n")]);
        let root = format!("--root={}", fx.root.display());
        let sysext = |extra: &[&str]| {
            let mut v = vec![root.clone(), "--class=sysext".to_string()];
            v.extend(extra.iter().map(|s| s.to_string()));
            run_cli(&v, &[])
        };
        sysext(&["merge"]).ok();
        let r = sysext(&["status"]);
        r.ok();
        let lines: Vec<&str> = r.out.lines().collect();
        // systemd: HIERARCHY EXTENSIONS SINCE, /opt none -, /usr a <since>, then b
        // alone on the next line (the CLASS column is extmerge's, as itself).
        assert_eq!(lines.len(), 4, "{}", r.out);
        assert_eq!(lines[0], "HIERARCHY CLASS  EXTENSIONS SINCE", "{}", r.out);
        assert_eq!(lines[1], "/opt      sysext none       -", "{}", r.out);
        let since = lines[2]
            .strip_prefix("/usr      sysext a          ")
            .unwrap_or("");
        assert!(is_timestamp(since), "{}", r.out);
        assert_eq!(lines[3], format!("{:17}b{:10}", "", ""), "{}", r.out);
        let r = sysext(&["--json=short", "status"]);
        r.ok();
        assert!(
            r.out.starts_with(
                "[{\"hierarchy\":\"/opt\",\"extensions\":[],\"since\":null,\"class\":\"sysext\"},\
                 {\"hierarchy\":\"/usr\",\"extensions\":[\"a\",\"b\"],\"since\":"
            ),
            "{}",
            r.out
        );
        sysext(&["unmerge"]).ok();
    });
}
