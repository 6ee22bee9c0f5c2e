//! Without CAP_SYS_ADMIN the verbs that mount say so, in systemd's words, instead of
//! failing on the first file they may not create (`/run/extmerge/lock`).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::common::*;

/// `nobody`/`nogroup` on Debian; any unprivileged ids do.
pub const NOBODY: u32 = 65534;

/// Runs `extmerge ARGS...` as [`NOBODY`] (std drops the supplementary groups too).
pub fn run_unprivileged(args: &[String]) -> Run {
    let o = Command::new(BIN)
        .args(args)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("run extmerge as nobody");
    Run {
        code: o.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&o.stdout).into_owned(),
        err: String::from_utf8_lossy(&o.stderr).into_owned(),
        cmd: format!("(uid {NOBODY}) extmerge {}", args.join(" ")),
    }
}

/// Makes the test's directory (a 0700 temporary directory) traversable for others.
pub fn open_up(base: &std::path::Path) {
    std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn unprivileged_merge_unmerge_refresh_need_privileges() {
    ns_test(|base| {
        open_up(base);
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        fx.confext("c", &[("etc/c.conf", "c\n")]);
        let before = fx.snapshot();
        let root = format!("--root={}", fx.root.display());
        for args in [
            &["merge"][..],
            &["unmerge"],
            &["refresh"],
            &["--class=sysext", "merge"],
            &["--class=confext", "refresh", "--always-refresh"],
        ] {
            let mut a = vec![root.clone()];
            a.extend(args.iter().map(|s| s.to_string()));
            let r = run_unprivileged(&a);
            r.fails_with("Need to be privileged.");
            assert_eq!(r.err, "Need to be privileged.\n", "{}", r.cmd);
            assert!(!r.err.contains("Permission denied") && !r.err.contains(WORKSPACE));
        }
        // Even when the root is not readable for the caller: the privileges come first.
        let hidden = base.join("hidden");
        std::fs::create_dir(&hidden).unwrap();
        std::fs::set_permissions(&hidden, std::fs::Permissions::from_mode(0o700)).unwrap();
        let r = run_unprivileged(&[format!("--root={}", hidden.display()), "merge".into()]);
        assert_eq!(r.err, "Need to be privileged.\n", "{}", r.cmd);
        assert_eq!(r.code, 1);
        // What only reads needs no privileges.
        for verb in ["status", "list", "plan"] {
            run_unprivileged(&[root.clone(), verb.into()]).ok();
        }
        run_unprivileged(&[root.clone(), "--dry-run".into(), "merge".into()]).ok();
        assert_eq!(fx.snapshot(), before, "nothing was mounted");
        assert_eq!(workspace_leftovers(), Vec::<String>::new());
    });
}
