//! A hostile runtime directory: `/run/extmerge` (or its lock file) planted as a symlink
//! to elsewhere, made writable by group or others, or owned by another user. Every
//! component is opened without following a symlink and must be root's alone: the run is
//! refused before anything is created or mounted, with a message naming the path and
//! the reason, and nothing appears at a link's target.
//!
//! Each test has a fresh tmpfs on `/run` in its own mount namespace (`support/ns.rs`).

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

use crate::common::*;
use crate::util::*;

/// The verbs that take the lock and use the workspace.
const VERBS: [&str; 3] = ["merge", "refresh", "unmerge"];

/// `chown(p, uid, uid)`.
fn chown(p: &Path, uid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(uid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
}

/// After the planted workspace is removed, a merge works again and makes the
/// workspace root's own, mode 0700.
#[track_caller]
fn merges_after_cleanup(fx: &Fx, before: &State) {
    run_t(fx, &["--class=sysext", "merge"], 10).ok();
    let st = fs::symlink_metadata(WORKSPACE).unwrap();
    assert!(st.is_dir());
    assert_eq!((st.uid(), st.mode() & 0o7777), (0, 0o700));
    assert_eq!(fx.ls("/usr/share"), ["e"]);
    run_t(fx, &["--class=sysext", "unmerge"], 10).ok();
    assert_clean(fx, before, "after unmerge");
}

/// `/run/extmerge` is a symlink to an empty directory, and a dangling one: every verb
/// fails naming `/run/extmerge` as a symlink; no lock file (or directory) is created at
/// the target and nothing is mounted. A regular file there is refused too.
#[test]
fn runtime_dir_symlink_is_refused() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("e", &[("usr/share/e", "e\n")]);
        let before = state(&fx);
        let target = base.join("elsewhere");
        fs::create_dir(&target).unwrap();
        let dangling = base.join("nowhere");
        for to in [&target, &dangling] {
            symlink(to, WORKSPACE).unwrap();
            for verb in VERBS {
                let r = run_t(&fx, &["--class=sysext", verb], 10);
                r.fails_with(&format!(
                    "{WORKSPACE}: is a symlink (to {:?}): refusing to follow it",
                    to.display().to_string()
                ));
                assert_eq!(
                    ls(&target),
                    Vec::<String>::new(),
                    "{verb}: created at target"
                );
                assert!(!dangling.exists(), "{verb}: created at the dangling target");
                assert_eq!(state(&fx), before, "{verb}: mounted something");
            }
            fs::remove_file(WORKSPACE).unwrap();
        }
        // A regular file there: refused as what it is.
        fs::write(WORKSPACE, "").unwrap();
        run_t(&fx, &["--class=sysext", "merge"], 10)
            .fails_with(&format!("{WORKSPACE}: is a regular file, not a directory"));
        fs::remove_file(WORKSPACE).unwrap();
        merges_after_cleanup(&fx, &before);
        assert_eq!(ls(&target), Vec::<String>::new());
    });
}

/// `/run/extmerge` writable by group or others (0777, 1777, 0770): refused, naming the
/// mode; nothing is created in it.
#[test]
fn runtime_dir_writable_by_others_is_refused() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("e", &[("usr/share/e", "e\n")]);
        let before = state(&fx);
        for mode in [0o777, 0o1777, 0o770, 0o702] {
            fs::create_dir(WORKSPACE).unwrap();
            fs::set_permissions(WORKSPACE, fs::Permissions::from_mode(mode)).unwrap();
            for verb in VERBS {
                let r = run_t(&fx, &["--class=sysext", verb], 10);
                r.fails_with(&format!(
                    "{WORKSPACE}: writable by group or others (mode {mode:04o}): refusing to use it"
                ));
                assert_eq!(ls(Path::new(WORKSPACE)), Vec::<String>::new(), "{mode:o}");
                assert_eq!(state(&fx), before, "{verb}: mounted something");
            }
            fs::remove_dir(WORKSPACE).unwrap();
        }
        merges_after_cleanup(&fx, &before);
    });
}

/// `/run/extmerge` owned by another user (mode 0700 or 0755): refused, naming the uid;
/// nothing is created in it.
#[test]
fn runtime_dir_owned_by_another_user_is_refused() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("e", &[("usr/share/e", "e\n")]);
        let before = state(&fx);
        for mode in [0o700, 0o755] {
            fs::create_dir(WORKSPACE).unwrap();
            fs::set_permissions(WORKSPACE, fs::Permissions::from_mode(mode)).unwrap();
            chown(Path::new(WORKSPACE), 4242);
            for verb in VERBS {
                let r = run_t(&fx, &["--class=sysext", verb], 10);
                r.fails_with(&format!(
                    "{WORKSPACE}: owned by uid 4242, not by root: refusing to use it"
                ));
                assert_eq!(ls(Path::new(WORKSPACE)), Vec::<String>::new());
                assert_eq!(state(&fx), before, "{verb}: mounted something");
            }
            fs::remove_dir(WORKSPACE).unwrap();
        }
        merges_after_cleanup(&fx, &before);
    });
}

/// In a proper workspace, the lock file planted as a symlink (to an existing file and
/// dangling), as a directory, as another user's file, and as a world-writable file:
/// refused, naming `/run/extmerge/lock`; the link targets are neither created nor
/// changed.
#[test]
fn lock_file_symlink_or_foreign_is_refused() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("e", &[("usr/share/e", "e\n")]);
        let before = state(&fx);
        fs::create_dir(WORKSPACE).unwrap();
        fs::set_permissions(WORKSPACE, fs::Permissions::from_mode(0o700)).unwrap();
        let lock = Path::new(WORKSPACE).join("lock");
        let existing = base.join("precious");
        fs::write(&existing, "keep\n").unwrap();
        let dangling = base.join("nowhere");
        for to in [&existing, &dangling] {
            symlink(to, &lock).unwrap();
            for verb in VERBS {
                run_t(&fx, &["--class=sysext", verb], 10).fails_with(&format!(
                    "{}: is a symlink (to {:?}): refusing to follow it",
                    lock.display(),
                    to.display().to_string()
                ));
                assert_eq!(fs::read_to_string(&existing).unwrap(), "keep\n");
                assert!(!dangling.exists());
                assert_eq!(state(&fx), before, "{verb}: mounted something");
            }
            fs::remove_file(&lock).unwrap();
        }
        fs::create_dir(&lock).unwrap();
        run_t(&fx, &["--class=sysext", "merge"], 10).fails_with(&format!(
            "{}: is a directory, not a regular file",
            lock.display()
        ));
        fs::remove_dir(&lock).unwrap();
        for (uid, mode, why) in [
            (
                4242,
                0o600,
                "owned by uid 4242, not by root: refusing to use it",
            ),
            (
                0,
                0o666,
                "writable by group or others (mode 0666): refusing to use it",
            ),
        ] {
            fs::write(&lock, "").unwrap();
            fs::set_permissions(&lock, fs::Permissions::from_mode(mode)).unwrap();
            chown(&lock, uid);
            run_t(&fx, &["--class=sysext", "merge"], 10)
                .fails_with(&format!("{}: {why}", lock.display()));
            assert_eq!(state(&fx), before);
            fs::remove_file(&lock).unwrap();
        }
        merges_after_cleanup(&fx, &before);
    });
}
