//! Two runs at once, and a run killed in the middle: never a half-merged state that
//! the next run cannot see and repair.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

fn spawn(fx: &Fx, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    let mut c = Command::new(BIN);
    c.arg(format!("--root={}", fx.root.display()));
    c.args(args);
    c.env_remove("EXTMERGE_FAIL_AT_STEP");
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c.spawn().expect("spawn extmerge")
}

fn finish(c: std::process::Child) -> (i32, String) {
    let o = c.wait_with_output().expect("wait");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Two merges at once: the lock makes one win; the other sees the merge and refuses.
#[test]
fn two_merges_at_once_one_wins() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n"), ("opt/a", "a\n")]);
        for round in 0..8 {
            let (p, q) = (
                spawn(&fx, &["--class=sysext", "merge"], &[]),
                spawn(&fx, &["--class=sysext", "merge"], &[]),
            );
            let (r1, r2) = (finish(p), finish(q));
            let mut codes = [r1.0, r2.0];
            codes.sort();
            assert_eq!(codes, [0, 1], "round {round}: {r1:?} {r2:?}");
            let loser = if r1.0 == 1 { &r1.1 } else { &r2.1 };
            assert!(loser.contains("already merged"), "round {round}: {loser}");
            assert_eq!(fx.mounts_at("/usr").len(), 1, "round {round}");
            assert_eq!(fx.mounts_at("/opt").len(), 1, "round {round}");
            fx.run(&["--class=sysext", "unmerge"]).ok();
            assert!(fx.mounts_at("/usr").is_empty());
            assert_eq!(workspace_leftovers(), Vec::<String>::new());
        }
    });
}

/// Merge and unmerge at once: the result is merged or not, never half.
#[test]
fn merge_and_unmerge_at_once_is_all_or_nothing() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n"), ("opt/a", "a\n")]);
        for round in 0..8 {
            let (p, q) = (
                spawn(&fx, &["--class=sysext", "merge"], &[]),
                spawn(&fx, &["--class=sysext", "unmerge"], &[]),
            );
            let (r1, r2) = (finish(p), finish(q));
            assert_eq!((r1.0, r2.0), (0, 0), "round {round}: {r1:?} {r2:?}");
            let (u, o) = (fx.mounts_at("/usr").len(), fx.mounts_at("/opt").len());
            assert!(u == o && u <= 1, "round {round}: /usr {u} /opt {o}");
            fx.run(&["--class=sysext", "unmerge"]).ok();
        }
    });
}

/// kill -9 in the middle of a merge (after /usr is attached, before /opt): the next
/// `merge` reports the hierarchy as merged, `refresh` completes the merge, and the
/// dead run's staging mount is removed.
#[test]
fn killed_merge_is_reported_and_repaired() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n"), ("opt/a", "a\n")]);
        // Find the step that attaches /opt: run with faults until the message names it.
        let mut step = None;
        for n in 1..40 {
            let r = fx.run_env(
                &["--class=sysext", "merge"],
                &[("EXTMERGE_FAIL_AT_STEP", &n.to_string())],
            );
            if r.code == 0 {
                fx.run(&["--class=sysext", "unmerge"]).ok();
                break;
            }
            if r.err.contains("(attach /opt)") {
                step = Some(n);
            }
        }
        let step = step.expect("a step attaching /opt");
        let child = spawn(
            &fx,
            &["--class=sysext", "merge"],
            &[("EXTMERGE_PAUSE_AT_STEP", &step.to_string())],
        );
        // Wait until /usr is attached (the run is now paused before /opt).
        let mut waited = 0;
        while fx.mounts_at("/usr").is_empty() && waited < 200 {
            std::thread::sleep(Duration::from_millis(50));
            waited += 1;
        }
        assert_eq!(fx.mounts_at("/usr").len(), 1, "merge did not reach /usr");
        let pid = child.id() as i32;
        // SAFETY: kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        let (code, _) = finish(child);
        assert_eq!(code, -1, "killed by a signal");
        // Left behind: /usr merged, /opt not, the staging mount of the dead run.
        assert!(fx.mounts_at("/opt").is_empty());
        assert!(!workspace_leftovers().is_empty());
        // The next merge reports it...
        fx.run(&["--class=sysext", "merge"])
            .fails_with("already merged");
        // ...and cleaned the dead run's staging area on the way.
        assert_eq!(workspace_leftovers(), Vec::<String>::new());
        // refresh repairs: both hierarchies merged.
        fx.run(&["--class=sysext", "refresh", "--always-refresh"])
            .ok();
        assert_eq!(fx.mounts_at("/usr").len(), 1);
        assert_eq!(fx.mounts_at("/opt").len(), 1);
        assert_eq!(fx.read("/opt/a").as_deref(), Some("a\n"));
        fx.run(&["--class=sysext", "unmerge"]).ok();
        assert!(fx.mounts_at("/usr").is_empty() && fx.mounts_at("/opt").is_empty());
    });
}
