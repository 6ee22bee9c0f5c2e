//! Fault injection sweeps (`EXTMERGE_FAIL_AT_STEP=N`): every system-changing step of a
//! merge or refresh is made to fail in turn; afterwards the system must be exactly as
//! before (all-or-nothing).

use crate::common::*;

const FAULT: &str = "EXTMERGE_FAIL_AT_STEP";

/// A host with a sysext touching /usr and /opt and a confext.
fn fixture(base: &std::path::Path) -> Fx {
    let fx = Fx::new(base);
    fx.sysext("s", &[("usr/share/s", "s\n"), ("opt/s/file", "opt s\n")]);
    fx.confext("c", &[("etc/c.conf", "c\n")]);
    fx
}

/// The hierarchies look like the host's own again.
#[track_caller]
fn assert_host_contents(fx: &Fx, what: &str) {
    assert_eq!(fx.ls("/usr"), ["bin"], "{what}");
    assert_eq!(fx.ls("/opt"), Vec::<String>::new(), "{what}");
    assert_eq!(fx.ls("/etc"), ["host.conf", "os-release"], "{what}");
}

/// Runs `args` with a fault at step 1, 2, … until a run succeeds. After each failed
/// run the mount table (lines about the fixture and the workspace) must equal the one
/// before, the workspace must be empty and the hierarchies unchanged. Returns the
/// step descriptions that were hit.
fn sweep_merge(fx: &Fx, args: &[&str]) -> Vec<String> {
    let before = fx.snapshot();
    let mut hit = Vec::new();
    for n in 1..100 {
        let ns = n.to_string();
        let r = fx.run_env(args, &[(FAULT, &ns)]);
        if r.code == 0 {
            assert!(!r.err.contains("injected fault"), "{}", r.err);
            return hit;
        }
        r.fails_with("injected fault");
        let line = r
            .err
            .lines()
            .find(|l| l.contains("injected fault"))
            .unwrap()
            .to_string();
        assert!(line.contains(&format!("at step {n} (")), "{line}");
        hit.push(line);
        assert_eq!(
            fx.snapshot(),
            before,
            "mount table changed after a fault at step {n}: {}",
            r.err
        );
        assert_eq!(
            workspace_leftovers(),
            Vec::<String>::new(),
            "step {n}: {}",
            r.err
        );
        assert_host_contents(fx, &format!("after a fault at step {n}"));
    }
    panic!("merge never succeeded");
}

fn assert_steps(hit: &[String], min: usize, must_mention: &[&str]) {
    assert!(hit.len() >= min, "only {} steps: {hit:#?}", hit.len());
    for m in must_mention {
        assert!(
            hit.iter().any(|l| l.contains(m)),
            "no step mentions {m}: {hit:#?}"
        );
    }
}

#[test]
fn fault_sweep_merge_sysext() {
    ns_test(|base| {
        let fx = fixture(base);
        let hit = sweep_merge(&fx, &["--class=sysext", "merge"]);
        assert_steps(&hit, 7, &["/usr", "/opt", "staging"]);
        assert_eq!(fx.read("/usr/share/s").as_deref(), Some("s\n"));
        assert_eq!(fx.read("/opt/s/file").as_deref(), Some("opt s\n"));
        assert_eq!(fx.snapshot().len(), 2);
    });
}

#[test]
fn fault_sweep_merge_confext() {
    ns_test(|base| {
        let fx = fixture(base);
        let hit = sweep_merge(&fx, &["--class=confext", "merge"]);
        assert_steps(&hit, 4, &["/etc", "staging"]);
        assert_eq!(fx.read("/etc/c.conf").as_deref(), Some("c\n"));
    });
}

/// Mutable merges have one more step (the read-only metadata bind).
#[test]
fn fault_sweep_merge_mutable_yes() {
    ns_test(|base| {
        let fx = fixture(base);
        let hit = sweep_merge(&fx, &["--class=sysext", "--mutable=yes", "merge"]);
        assert_steps(&hit, 8, &["/usr", "/opt", "metadata"]);
        assert_eq!(fx.try_create("/usr/x"), Ok(()));
        assert_eq!(fx.try_create("/usr/.systemd-sysext/x"), Err(libc::EROFS));
    });
}

#[test]
fn fault_sweep_merge_ephemeral() {
    ns_test(|base| {
        let fx = fixture(base);
        let hit = sweep_merge(&fx, &["--class=sysext", "--mutable=ephemeral", "merge"]);
        assert_steps(&hit, 8, &["/usr", "/opt"]);
        assert_eq!(fx.try_create("/usr/x"), Ok(()));
    });
}

/// A hierarchy missing in the root is created by the merge ("create /opt" step); a
/// failed merge must not leave it behind either.
#[test]
fn fault_sweep_merge_missing_hierarchy() {
    ns_test(|base| {
        let fx = fixture(base);
        std::fs::remove_dir(fx.path("/opt")).unwrap();
        let before = fx.snapshot();
        let mut steps = 0;
        for n in 1..100 {
            let ns = n.to_string();
            let r = fx.run_env(&["--class=sysext", "merge"], &[(FAULT, &ns)]);
            if r.code == 0 {
                break;
            }
            steps += 1;
            r.fails_with("injected fault");
            assert_eq!(fx.snapshot(), before, "step {n}: {}", r.err);
            assert_eq!(workspace_leftovers(), Vec::<String>::new());
            assert!(
                !fx.path("/opt").exists(),
                "/opt left behind after {}",
                r.err
            );
        }
        assert!(steps >= 8, "{steps}");
        assert_eq!(fx.read("/opt/s/file").as_deref(), Some("opt s\n"));
    });
}

/// The whole CLI run with both classes (the default) is all-or-nothing too: a failure
/// in the sysext part must not leave the confext merged.
#[test]
fn fault_sweep_merge_both_classes() {
    ns_test(|base| {
        let fx = fixture(base);
        let hit = sweep_merge(&fx, &["merge"]);
        assert_steps(&hit, 7, &["/usr", "/etc"]);
    });
}

/// Runs a refresh (after `b` was added to a merge of `a`) with a fault at step 1, 2, …
/// until it succeeds. After each failure the old merge must be in place and intact.
fn sweep_refresh(prop: Prop, merge_args: &'static [&'static str]) {
    ns_test_with(prop, move |base| {
        let fx = Fx::new(base);
        let a = fx.sysext("a", &[("usr/share/a", "a\n")]);
        for n in 1..100 {
            write_file(&a.join(format!("usr/share/cu/{n}/keep")), "");
        }
        let mut args = vec!["--class=sysext"];
        args.extend_from_slice(merge_args);
        let mutable = merge_args.iter().any(|a| a.starts_with("--mutable"));
        let mut m = args.clone();
        m.push("merge");
        fx.run(&m).ok();
        if mutable {
            fx.write("/usr/written", "w\n");
        }
        let old_dev = fx.dev("/usr");
        let before = fx.snapshot();
        let mutable_dir = "/var/lib/extensions.mutable";
        fx.sysext("b", &[("usr/share/b", "b\n"), ("opt/b", "opt b\n")]);
        let mut r_args = args.clone();
        r_args.push("refresh");
        let mut failures = 0;
        for n in 1..100 {
            let ns = n.to_string();
            let r = fx.run_env(&r_args, &[(FAULT, &ns)]);
            if r.code == 0 {
                assert!(!r.err.contains("injected fault"), "{}", r.err);
                break;
            }
            failures += 1;
            r.fails_with("injected fault");
            let what = format!("after a fault at step {n}: {}", r.err);
            let cur = fx.mounts_at("/usr");
            assert_eq!(cur.len(), 1, "{what}\n{:#?}", fx.snapshot());
            assert_eq!(fx.dev("/usr"), old_dev, "{what}");
            assert_eq!(fx.read("/usr/share/a").as_deref(), Some("a\n"), "{what}");
            assert_eq!(fx.read("/usr/share/b"), None, "{what}");
            assert_eq!(
                fx.read("/usr/.systemd-sysext/extensions").as_deref(),
                Some("a\n"),
                "{what}"
            );
            assert!(fx.mounts_at("/opt").is_empty(), "{what}");
            if mutable {
                assert_eq!(fx.read("/usr/written").as_deref(), Some("w\n"), "{what}");
                // Copying up a directory that is only in a lower layer needs the
                // overlay's work dir; a fresh one each time.
                let rel = format!("/usr/share/cu/{n}/new");
                assert_eq!(fx.try_create(&rel), Ok(()), "copy-up failed {what}");
                assert!(fx
                    .path(&format!("/var/lib/extensions.mutable{rel}"))
                    .exists());
                assert_eq!(
                    fx.try_create("/usr/.systemd-sysext/x"),
                    Err(libc::EROFS),
                    "metadata writable {what}"
                );
            } else {
                assert_eq!(fx.try_create("/usr/x"), Err(libc::EROFS), "{what}");
            }
            assert_eq!(normalized(&fx.snapshot()), normalized(&before), "{what}");
            assert_eq!(workspace_leftovers(), Vec::<String>::new(), "{what}");
        }
        assert!(failures >= 6, "only {failures} steps");
        // The successful run did the refresh.
        fx.overlay_at("/usr");
        assert_ne!(fx.dev("/usr"), old_dev);
        assert_eq!(fx.ls("/usr/share"), ["a", "b", "cu"]);
        assert_eq!(fx.read("/opt/b").as_deref(), Some("opt b\n"));
        if mutable {
            // The replaced merge's work dir is gone; the new one is the recorded one.
            let work = fx.read("/usr/.systemd-sysext/work_dir").unwrap();
            let work = work.trim_end_matches('\n');
            assert!(fx.path(work).is_dir(), "{work}");
            // (Work dirs of the failed attempts are a separate test.)
            assert!(
                !fx.ls(mutable_dir)
                    .contains(&".systemd-usr-workdir".to_string()),
                "the replaced merge's work dir is left behind"
            );
            assert_eq!(fx.read("/usr/written").as_deref(), Some("w\n"));
            fx.run(&["--class=sysext", "unmerge"]).ok();
            assert!(!fx.path(work).exists());
        }
    });
}

#[test]
fn fault_sweep_refresh() {
    sweep_refresh(Prop::Shared, &[]);
}

#[test]
fn fault_sweep_refresh_private_root() {
    sweep_refresh(Prop::Private, &[]);
}

/// Mutable: after a failed refresh, writes still go to the upper dir and the metadata
/// is still read-only.
#[test]
fn fault_sweep_refresh_mutable() {
    sweep_refresh(Prop::Shared, &["--mutable=yes"]);
}

/// After a failed mutable refresh, the restored merge still has its read-only bind
/// over the metadata dir (checked in the mount table only, apart from the work dir
/// problem above).
#[test]
fn failed_mutable_refresh_keeps_metadata_bind() {
    for mode in ["--mutable=yes", "--mutable=ephemeral"] {
        ns_test(move |base| {
            let fx = Fx::new(base);
            fx.sysext("a", &[("usr/share/a", "a\n")]);
            fx.run(&["--class=sysext", mode, "merge"]).ok();
            let bind = fx.mounts_at("/usr/.systemd-sysext");
            assert_eq!(bind.len(), 1);
            assert!(bind[0].has("ro"));
            fx.sysext("b", &[("usr/share/b", "b\n")]);
            for n in 1..100 {
                let ns = n.to_string();
                let r = fx.run_env(&["--class=sysext", mode, "refresh"], &[(FAULT, &ns)]);
                if r.code == 0 {
                    break;
                }
                r.fails_with("injected fault");
                let bind = fx.mounts_at("/usr/.systemd-sysext");
                assert_eq!(
                    bind.iter().filter(|m| m.has("ro")).count(),
                    1,
                    "{mode}: no read-only metadata bind after {}{:#?}",
                    r.err,
                    fx.snapshot()
                );
            }
        });
    }
}

/// A failed refresh of a writable merge leaves no directories behind in
/// `/var/lib/extensions.mutable` (the refresh's own work dir included).
#[test]
fn failed_mutable_refresh_leaves_no_work_dir() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        fx.run(&["--class=sysext", "--mutable=yes", "merge"]).ok();
        let mutable_dir = "/var/lib/extensions.mutable";
        let before = fx.ls(mutable_dir);
        assert_eq!(before, [".systemd-usr-workdir", "usr"]);
        fx.sysext("b", &[("usr/share/b", "b\n")]);
        for n in 1..100 {
            let ns = n.to_string();
            let r = fx.run_env(
                &["--class=sysext", "--mutable=yes", "refresh"],
                &[(FAULT, &ns)],
            );
            if r.code == 0 {
                break;
            }
            r.fails_with("injected fault");
            assert_eq!(fx.ls(mutable_dir), before, "after {}", r.err);
        }
    });
}
