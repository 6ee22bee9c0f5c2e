//! Another process's mount namespace (`--pid`, `--unit`, `--search`): the target gets
//! the stack, the caller's namespace does not change; refresh picks up a replaced
//! directory and leaves exactly one overlay; a broken new version keeps the old `/etc`;
//! two targets refresh at the same time; bad PIDs and units get errors naming them.
//!
//! A target is a `sleep` that unshared its mount namespace (as a service with its own
//! namespace); what it sees is read through `/proc/PID/root` and `/proc/PID/mountinfo`.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use crate::common::*;

/// A process with a mount namespace of its own (a private copy of the test's).
struct Target {
    child: Child,
}

impl Target {
    fn spawn() -> Target {
        Self::spawn_with(true)
    }

    /// `own_ns`: unshare the mount namespace first (else it shares the caller's).
    fn spawn_with(own_ns: bool) -> Target {
        Self::spawn_full(own_ns, None)
    }

    /// A service whose `/etc` is bound from an export, as `BindReadOnlyPaths=SRC:DST`
    /// does it: `bind` (source, mount point) is recursively bind-mounted in its namespace.
    fn spawn_bound(src: &Path, dst: &Path) -> Target {
        Self::spawn_full(true, Some((src.to_path_buf(), dst.to_path_buf())))
    }

    /// [`Target::spawn_bound`] with `/run` read-only in its namespace, as
    /// `ProtectSystem=strict` makes it.
    fn spawn_bound_strict(src: &Path, dst: &Path) -> Target {
        Self::spawn_full_with(true, Some((src.to_path_buf(), dst.to_path_buf())), true)
    }

    fn spawn_full(own_ns: bool, bind: Option<(PathBuf, PathBuf)>) -> Target {
        Self::spawn_full_with(own_ns, bind, false)
    }

    fn spawn_full_with(own_ns: bool, bind: Option<(PathBuf, PathBuf)>, ro_run: bool) -> Target {
        let mut c = Command::new("sleep");
        c.arg("600");
        let bind = bind.map(|(s, d)| {
            use std::os::unix::ffi::OsStrExt;
            let c = |p: PathBuf| std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
            (c(s), c(d))
        });
        if own_ns {
            // SAFETY: only async-signal-safe calls (unshare, mount) between fork and exec.
            unsafe {
                c.pre_exec(move || {
                    if libc::unshare(libc::CLONE_NEWNS) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let flags = libc::MS_REC | libc::MS_PRIVATE;
                    if libc::mount(
                        c"none".as_ptr(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        flags,
                        std::ptr::null(),
                    ) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    if let Some((s, d)) = &bind {
                        let flags = libc::MS_BIND | libc::MS_REC;
                        if libc::mount(
                            s.as_ptr(),
                            d.as_ptr(),
                            std::ptr::null(),
                            flags,
                            std::ptr::null(),
                        ) != 0
                        {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    if ro_run {
                        let run = c"/run".as_ptr();
                        let bind = libc::MS_BIND | libc::MS_REC;
                        let ro = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
                        if libc::mount(run, run, std::ptr::null(), bind, std::ptr::null()) != 0
                            || libc::mount(run, run, std::ptr::null(), ro, std::ptr::null()) != 0
                        {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        let child = c.spawn().expect("spawn sleep");
        let t = Target { child };
        // exec has happened once /proc/PID/exe is sleep's (or busybox's), no longer ours.
        let me = fs::read_link("/proc/self/exe").unwrap();
        for _ in 0..500 {
            if fs::read_link(format!("/proc/{}/exe", t.pid())).is_ok_and(|e| e != me) {
                return t;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("target {} did not exec", t.pid());
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn arg(&self) -> String {
        format!("--pid={}", self.pid())
    }

    /// A path as the target sees it.
    fn path(&self, p: &Path) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.pid())).join(p.strip_prefix("/").unwrap())
    }

    fn read(&self, p: &Path) -> Option<String> {
        fs::read_to_string(self.path(p)).ok()
    }

    fn mounts_at(&self, p: &Path) -> Vec<Mount> {
        let p = p.to_string_lossy().into_owned();
        fs::read_to_string(format!("/proc/{}/mountinfo", self.pid()))
            .unwrap()
            .lines()
            .filter_map(Mount::parse)
            .filter(|m| m.point == p)
            .collect()
    }

    /// The one overlay on `p`; panics unless exactly one mount is there.
    #[track_caller]
    fn overlay_at(&self, p: &Path) -> Mount {
        let m = self.mounts_at(p);
        assert_eq!(
            m.len(),
            1,
            "target {}: mounts at {}: {m:?}",
            self.pid(),
            p.display()
        );
        assert_eq!(m[0].fstype, "overlay");
        m.into_iter().next().unwrap()
    }

    fn mnt_ns(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(format!("/proc/{}/ns/mnt", self.pid()))
            .unwrap()
            .ino()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory confext `NAME` in `dir` (inside the root) with `files`; a `NAME_V` entry
/// of a `.v/` directory carries the release file of `NAME`.
fn confext_in(fx: &Fx, dir: &str, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let d = fx.path(&format!("{dir}/{name}"));
    let ext = name.split('_').next().unwrap();
    write_file(
        &d.join(format!("etc/extension-release.d/extension-release.{ext}")),
        CONFEXT_RELEASE,
    );
    for (p, c) in files {
        write_file(&d.join(p.trim_start_matches('/')), c);
    }
    d
}

const SEARCH: &str = "--search=/srv/confexts";

#[test]
fn target_gets_the_stack_and_the_caller_keeps_its_etc() {
    ns_test(|base| {
        let fx = Fx::new(base);
        confext_in(
            &fx,
            "/srv/confexts",
            "web",
            &[("etc/web.conf", "port 80\n")],
        );
        // Also in the standard directory: --search replaces it, so this one is unused.
        fx.confext("std", &[("etc/std.conf", "std\n")]);
        let t = Target::spawn();
        let before = fx.snapshot();
        fx.run(&[&t.arg(), SEARCH, "--class=confext", "merge"]).ok();
        let etc = fx.path("/etc");
        assert_eq!(t.read(&etc.join("web.conf")).as_deref(), Some("port 80\n"));
        assert_eq!(
            t.read(&etc.join("host.conf")).as_deref(),
            Some("host conf\n")
        );
        assert_eq!(t.read(&etc.join("std.conf")), None);
        t.overlay_at(&etc);
        // The caller's namespace is as it was.
        assert_eq!(fx.read("/etc/web.conf"), None);
        assert_eq!(fx.snapshot(), before);
        // Status inside the target, text and JSON; the caller's says nothing is merged.
        let st = fx.run(&[&t.arg(), "--class=confext", "status"]);
        st.ok();
        assert!(
            st.out.contains("/etc") && st.out.contains("web"),
            "{}",
            st.out
        );
        let js = fx.run(&[&t.arg(), "--class=confext", "--json=short", "status"]);
        js.ok();
        assert!(js.out.contains("\"extensions\":[\"web\"]"), "{}", js.out);
        let own = fx.run(&["--class=confext", "--json=short", "status"]);
        own.ok();
        assert!(own.out.contains("\"extensions\":[]"), "{}", own.out);
        // list and plan look in the target's root with the same sources.
        let l = fx.run(&[&t.arg(), SEARCH, "--class=confext", "list"]);
        l.ok();
        assert!(l.out.contains("web") && !l.out.contains("std"), "{}", l.out);
        fx.run(&[&t.arg(), "--class=confext", "unmerge"]).ok();
        assert!(t.mounts_at(&etc).is_empty());
        assert_eq!(t.read(&etc.join("web.conf")), None);
        assert_eq!(fx.snapshot(), before);
        assert_eq!(workspace_leftovers(), Vec::<String>::new());
    });
}

/// A directory replaced in place (not a new `.v/` entry) is picked up; after any number
/// of refreshes exactly one overlay of ours is on the target's `/etc`.
#[test]
fn refresh_picks_up_a_replaced_directory_and_keeps_one_overlay() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let d = confext_in(&fx, "/srv/confexts", "web", &[("etc/web.conf", "v1\n")]);
        let t = Target::spawn();
        let etc = fx.path("/etc");
        let args = |verb: &'static str| {
            vec![
                t.arg(),
                SEARCH.into(),
                "--class=confext".into(),
                verb.into(),
            ]
        };
        let run = |a: Vec<String>| fx.run(&a.iter().map(String::as_str).collect::<Vec<_>>());
        run(args("merge")).ok();
        let first = t.overlay_at(&etc);
        // Mount IDs are reused once a mount is freed: a file held open inside each
        // replaced overlay keeps it allocated, so a new ID means a new mount.
        let _pin_first = fs::File::open(t.path(&etc)).unwrap();
        fs::remove_dir_all(&d).unwrap();
        confext_in(&fx, "/srv/confexts", "web", &[("etc/web.conf", "v2\n")]);
        run(args("refresh")).ok();
        assert_eq!(t.read(&etc.join("web.conf")).as_deref(), Some("v2\n"));
        let second = t.overlay_at(&etc);
        assert_ne!(second.id, first.id);
        for _ in 0..5 {
            let r = run(args("refresh"));
            r.ok();
            assert!(r.err.contains("no change"), "{}", r.err);
        }
        assert_eq!(t.overlay_at(&etc).id, second.id);
        let _pin_second = fs::File::open(t.path(&etc)).unwrap();
        let mut always = args("refresh");
        always.insert(0, "--always-refresh".into());
        for _ in 0..5 {
            run(always.clone()).ok();
        }
        assert_ne!(t.overlay_at(&etc).id, second.id);
        assert_eq!(t.read(&etc.join("web.conf")).as_deref(), Some("v2\n"));
        assert_eq!(workspace_leftovers(), Vec::<String>::new());
    });
}

/// A broken newer version in `.v/` fails the refresh, naming the process and the file;
/// the target keeps its previous `/etc` (same mount, same files).
#[test]
fn broken_new_version_keeps_the_targets_etc() {
    ns_test(|base| {
        let fx = Fx::new(base);
        confext_in(
            &fx,
            "/srv/confexts/web.v",
            "web_1",
            &[("etc/web.conf", "v1\n")],
        );
        let t = Target::spawn();
        let etc = fx.path("/etc");
        fx.run(&[&t.arg(), SEARCH, "--class=confext", "merge"]).ok();
        let before = t.overlay_at(&etc);
        assert_eq!(t.read(&etc.join("web.conf")).as_deref(), Some("v1\n"));
        // web_2: a release file for another OS.
        let bad = fx.path("/srv/confexts/web.v/web_2");
        write_file(&bad.join("etc/web.conf"), "v2\n");
        write_file(
            &bad.join("etc/extension-release.d/extension-release.web"),
            "ID=other\n",
        );
        let r = fx.run(&[&t.arg(), SEARCH, "--class=confext", "refresh"]);
        assert_ne!(r.code, 0, "{}", r.err);
        // A service's own extension that does not match is an error (systemd fails the
        // unit for ExtensionDirectories=), not skipped (which would unmerge /etc).
        let want = format!(
            "process {}: {}: extension-release does not match",
            t.pid(),
            bad.display()
        );
        assert!(r.err.contains(&want), "{want:?} not in {}", r.err);
        assert_eq!(t.overlay_at(&etc).id, before.id);
        assert_eq!(t.read(&etc.join("web.conf")).as_deref(), Some("v1\n"));
        assert_eq!(workspace_leftovers(), Vec::<String>::new());
    });
}

/// The library's messages from inside the target reach the caller's sink at the
/// caller's level: a warning (an invalid mutable mode in the environment, warned
/// about while the verb runs in the target) is shown at the default level and not at
/// `SYSTEMD_LOG_LEVEL=err`. (A helper thread with a sink of its own would print it at
/// any level.)
#[test]
fn messages_from_the_target_follow_the_callers_level() {
    ns_test(|base| {
        let fx = Fx::new(base);
        confext_in(&fx, "/srv/confexts", "web", &[("etc/web.conf", "v1\n")]);
        let t = Target::spawn();
        let args = [
            t.arg(),
            SEARCH.to_string(),
            "--class=confext".into(),
            "plan".into(),
        ];
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let bogus = ("SYSTEMD_CONFEXT_MUTABLE_MODE", "bogus");
        let shown = fx.run_env(&a, &[bogus]);
        shown.ok();
        assert!(shown.err.contains("bogus"), "{}", shown.err);
        let quiet = fx.run_env(&a, &[bogus, ("SYSTEMD_LOG_LEVEL", "err")]);
        quiet.ok();
        assert!(!quiet.err.contains("bogus"), "{}", quiet.err);
    });
}

#[test]
fn bad_targets_are_named() {
    ns_test(|base| {
        let fx = Fx::new(base);
        confext_in(&fx, "/srv/confexts", "web", &[("etc/web.conf", "v1\n")]);
        let before = fx.snapshot();
        // A PID that does not exist (the kernel's pid_max is at most 2^22).
        fx.run(&["--pid=99999999", SEARCH, "merge"])
            .fails_with("process 99999999");
        fx.run(&["--pid=99999999", "status"])
            .fails_with("process 99999999");
        fx.run(&["--pid=0", "status"]).fails_with("invalid --pid=0");
        // A unit that is not running (no cgroup of that name).
        fx.run(&["--unit=extmerge-none.service", "merge"])
            .fails_with("unit extmerge-none.service: not running");
        fx.run(&["--unit=../x.service", "merge"])
            .fails_with("invalid unit name");
        // A unit without any .confext.d/ or .sysext.d/.
        let t = Target::spawn();
        fx.run(&[&t.arg(), "--unit=web.service", "merge"])
            .fails_with("unit web.service: none of /etc/systemd/system/web.service.confext.d");
        fx.run(&[&t.arg(), "--unit=web.service", SEARCH, "merge"])
            .fails_with("cannot be combined");
        fx.run(&["--search=relative", "merge"])
            .fails_with("absolute path");
        // A target whose root lacks the directory given as root.
        fx.run(&[
            &t.arg(),
            "--root=/nonexistent-root",
            "--class=confext",
            SEARCH,
            "merge",
        ])
        .fails_with(&format!("process {}", t.pid()));
        assert!(t.mounts_at(&fx.path("/etc")).is_empty());
        assert_eq!(fx.snapshot(), before);
        assert_eq!(workspace_leftovers(), Vec::<String>::new());
    });
}

/// The target exits while the merge runs (paused at its first step): the call fails
/// naming the process, and nothing is left behind (its namespace went with it).
#[test]
fn target_exiting_mid_merge_is_an_error() {
    ns_test(|base| {
        let fx = Fx::new(base);
        confext_in(&fx, "/srv/confexts", "web", &[("etc/web.conf", "v1\n")]);
        let mut t = Target::spawn();
        let pid = t.pid();
        let before = fx.snapshot();
        let child = Command::new(BIN)
            .args([
                format!("--root={}", fx.root.display()),
                t.arg(),
                SEARCH.into(),
                "--class=confext".into(),
                "merge".into(),
            ])
            .env("EXTMERGE_PAUSE_AT_STEP", "1:2")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(700));
        t.child.kill().unwrap();
        t.child.wait().unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!("process {pid}: exited during the operation")),
            "{err}"
        );
        assert_eq!(fx.snapshot(), before);
        assert_eq!(workspace_leftovers(), Vec::<String>::new());
    });
}

/// A process sharing the caller's namespace and root: `--pid` means the caller's own.
#[test]
fn pid_in_the_callers_namespace_is_the_callers() {
    ns_test(|base| {
        let fx = Fx::new(base);
        confext_in(&fx, "/srv/confexts", "web", &[("etc/web.conf", "v1\n")]);
        let t = Target::spawn_with(false);
        fx.run(&[&t.arg(), SEARCH, "--class=confext", "merge"]).ok();
        fx.overlay_at("/etc");
        assert_eq!(fx.read("/etc/web.conf").as_deref(), Some("v1\n"));
        // One lock for the namespace: the caller's own, whichever way it is reached
        // (plain "lock" when PID 1's namespace cannot be read, as in a container).
        use std::os::unix::fs::MetadataExt;
        let own = fs::metadata("/proc/thread-self/ns/mnt").unwrap().ino();
        let want = match fs::metadata("/proc/1/ns/mnt") {
            Ok(m) if m.ino() != own => format!("lock.mnt-{own}"),
            _ => "lock".to_string(),
        };
        let locks: Vec<String> = ls(Path::new(WORKSPACE))
            .into_iter()
            .filter(|n| n.starts_with("lock"))
            .collect();
        assert_eq!(locks, [want]);
        fx.run(&["--class=confext", "unmerge"]).ok();
    });
}

/// Two targets refresh at the same time, each under the lock of its own namespace.
#[test]
fn two_targets_refresh_concurrently() {
    ns_test(|base| {
        let fx = Fx::new(base);
        confext_in(&fx, "/srv/confexts", "web", &[("etc/web.conf", "v1\n")]);
        let (a, b) = (Target::spawn(), Target::spawn());
        let root = fx.root.clone();
        let work = |pid: String| {
            let root = root.clone();
            std::thread::spawn(move || {
                let r = format!("--root={}", root.display());
                let go = |v: &[&str]| {
                    let mut a = vec![
                        r.clone(),
                        pid.clone(),
                        SEARCH.into(),
                        "--class=confext".into(),
                    ];
                    a.extend(v.iter().map(|s| s.to_string()));
                    run_cli(&a, &[])
                };
                go(&["merge"]).ok();
                for _ in 0..10 {
                    go(&["--always-refresh", "refresh"]).ok();
                }
            })
        };
        let (ha, hb) = (work(a.arg()), work(b.arg()));
        ha.join().unwrap();
        hb.join().unwrap();
        let etc = fx.path("/etc");
        for t in [&a, &b] {
            t.overlay_at(&etc);
            assert_eq!(t.read(&etc.join("web.conf")).as_deref(), Some("v1\n"));
        }
        let locks = ls(Path::new(WORKSPACE));
        for t in [&a, &b] {
            let want = format!("lock.mnt-{}", t.mnt_ns());
            assert!(locks.contains(&want), "{want} not in {locks:?}");
        }
        assert!(fx.mounts_at("/etc").is_empty());
    });
}

/// `--unit=NAME` without `--pid`: the unit's process is found in its cgroup, and the
/// sources are `NAME.confext.d/` in the unit directories, an entry in `/etc/systemd/system`
/// shadowing the same name in `/usr/lib/systemd/system`.
#[test]
fn unit_sources_and_cgroup() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let unit = format!("extmerge-test-{}.service", std::process::id());
        confext_in(
            &fx,
            &format!("/etc/systemd/system/{unit}.confext.d"),
            "a",
            &[("etc/a.conf", "etc\n")],
        );
        confext_in(
            &fx,
            &format!("/usr/lib/systemd/system/{unit}.confext.d"),
            "a",
            &[("etc/a.conf", "usr\n")],
        );
        confext_in(
            &fx,
            &format!("/usr/lib/systemd/system/{unit}.confext.d"),
            "b",
            &[("etc/b.conf", "b\n")],
        );
        // A cgroup2 hierarchy on /sys/fs/cgroup of this test's namespace only.
        let cg = Path::new("/sys/fs/cgroup");
        let st = Command::new("mount")
            .args(["-t", "cgroup2", "cgroup2"])
            .arg(cg)
            .status()
            .unwrap();
        assert!(st.success(), "mount cgroup2");
        let dir = cg.join(&unit);
        fs::create_dir(&dir).unwrap();
        let t = Target::spawn();
        fs::write(dir.join("cgroup.procs"), t.pid().to_string()).unwrap();
        let r = fx.run(&[&format!("--unit={unit}"), "--class=confext", "merge"]);
        let etc = fx.path("/etc");
        let (a, b) = (t.read(&etc.join("a.conf")), t.read(&etc.join("b.conf")));
        let status = fx.run(&[&format!("--unit={unit}"), "--class=confext", "status"]);
        let unmerge = fx.run(&[&format!("--unit={unit}"), "--class=confext", "unmerge"]);
        // Empty the cgroup before checking, so it can be removed whatever happens.
        drop(t);
        let _ = fs::remove_dir(&dir);
        r.ok();
        assert_eq!(a.as_deref(), Some("etc\n"));
        assert_eq!(b.as_deref(), Some("b\n"));
        assert_eq!(fx.read("/etc/a.conf"), None);
        status.ok();
        assert!(
            status.out.contains("a\n") || status.out.contains(" a"),
            "{}",
            status.out
        );
        unmerge.ok();
        // No process left in it: an error naming the unit.
        fs::create_dir(&dir).unwrap();
        let r = fx.run(&[&format!("--unit={unit}"), "--class=confext", "status"]);
        let _ = fs::remove_dir(&dir);
        r.fails_with(&format!("unit {unit}: no running process"));
    });
}

/// The unit flow without PID 1's help: `--export` builds the unit's stack before the
/// service starts (a directory confext inside /etc/systemd/system, so the host layer is
/// wrapped), the service gets it bound on /etc, `--pid` refreshes it on reload (the
/// extension taken from below the merge, so the stacking depth holds), `--export`
/// refreshes and removes the export. The caller's /etc never changes.
#[test]
fn export_for_a_service_then_reload_in_its_namespace() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let dir = "/etc/systemd/system/web.service.confext.d";
        confext_in(&fx, dir, "web", &[("etc/web.conf", "v1\n")]);
        let export = base.join("export");
        let ex = format!("--export={}", export.display());
        let unit = "--unit=web.service";
        let before = fx.read("/etc/web.conf");
        fx.run(&[unit, "--class=confext", &ex, "merge"]).ok();
        assert_eq!(
            fs::read_to_string(export.join("etc/web.conf")).unwrap(),
            "v1\n"
        );
        assert_eq!(
            fs::read_to_string(export.join("etc/host.conf")).unwrap(),
            "host conf\n"
        );
        fx.run(&[unit, "--class=confext", &ex, "merge"])
            .fails_with("already merged");
        // Attached in another namespace's (systemd 252 runs `+` commands of a unit that
        // binds paths in a namespace of the unit's: the generator says --pid=1).
        let other = Target::spawn();
        let ex2 = format!("--export={}", base.join("export2").display());
        fx.run(&[unit, &other.arg(), "--class=confext", &ex2, "merge"])
            .ok();
        let e2 = base.join("export2/etc");
        assert_eq!(other.read(&e2.join("web.conf")).as_deref(), Some("v1\n"));
        assert!(
            !e2.join("web.conf").exists(),
            "not in the caller's namespace"
        );
        fx.run(&[unit, &other.arg(), "--class=confext", &ex2, "unmerge"])
            .ok();
        assert_eq!(other.read(&e2.join("web.conf")), None);
        drop(other);
        let etc = fx.path("/etc");
        let t = Target::spawn_bound(&export.join("etc"), &etc);
        assert_eq!(t.read(&etc.join("web.conf")).as_deref(), Some("v1\n"));
        // A new version replaces the directory; reload refreshes the service's /etc.
        let d = fx.path(&format!("{dir}/web"));
        fs::remove_dir_all(&d).unwrap();
        confext_in(&fx, dir, "web", &[("etc/web.conf", "v2\n")]);
        let pid = t.arg();
        for _ in 0..3 {
            fx.run(&[&pid, unit, "--class=confext", "refresh"]).ok();
        }
        assert_eq!(t.read(&etc.join("web.conf")).as_deref(), Some("v2\n"));
        assert_eq!(
            t.read(&etc.join("host.conf")).as_deref(),
            Some("host conf\n")
        );
        t.overlay_at(&etc);
        // The export follows (for the service's next processes), then goes.
        fx.run(&[unit, "--class=confext", &ex, "refresh"]).ok();
        assert_eq!(
            fs::read_to_string(export.join("etc/web.conf")).unwrap(),
            "v2\n"
        );
        assert_eq!(
            mountinfo()
                .iter()
                .filter(|m| Path::new(&m.point) == export.join("etc"))
                .count(),
            1
        );
        fx.run(&[unit, "--class=confext", &ex, "unmerge"]).ok();
        assert!(!export.join("etc/web.conf").exists());
        assert!(mountinfo()
            .iter()
            .all(|m| !m.point.starts_with(&*export.to_string_lossy())));
        assert_eq!(fx.read("/etc/web.conf"), before);
        assert!(fx.mounts_at("/etc").is_empty());
        assert_eq!(workspace_leftovers(), Vec::<String>::new());
    });
}

/// The `.v/` directory of `web.service`'s own confexts.
const WEB_V: &str = "/etc/systemd/system/web.service.confext.d/web.v";

/// A fixture whose `web.service` has `web_1` (`/etc/web.conf` "v1") in [`WEB_V`],
/// exported below `<base>/export` as the generator's `ExecStartPre=` does: the fixture,
/// the export directory and its `--export=` argument.
fn exported_web(base: &Path) -> (Fx, PathBuf, String) {
    let fx = Fx::new(base);
    confext_in(&fx, WEB_V, "web_1", &[("etc/web.conf", "v1\n")]);
    let export = base.join("export");
    let ex = format!("--export={}", export.display());
    fx.run(&["--unit=web.service", "--class=confext", &ex, "merge"])
        .ok();
    (fx, export, ex)
}

/// What the generator's reload runs: one process rebuilds the export and puts a copy of
/// the same new merge on the service's `/etc` (`--main-pid`), so the unit's later
/// processes and the running one see the new version. After many reloads the service
/// has exactly one overlay on `/etc` and the export one mount; a broken version, a
/// fault at the service's step, a process that is not there or one in the export's
/// own namespace change neither.
#[test]
fn export_and_main_process_refreshed_by_one_command() {
    ns_test(|base| {
        let (fx, export, ex) = exported_web(base);
        let (dir, unit) = (WEB_V, "--unit=web.service");
        let etc = fx.path("/etc");
        let t = Target::spawn_bound(&export.join("etc"), &etc);
        let main = format!("--main-pid={}", t.pid());
        let reload = [unit, "--class=confext", &ex, &main, "refresh"];
        let export_mounts = || {
            mountinfo()
                .iter()
                .filter(|m| Path::new(&m.point) == export.join("etc"))
                .count()
        };
        for v in 2..=6 {
            confext_in(
                &fx,
                dir,
                &format!("web_{v}"),
                &[("etc/web.conf", &format!("v{v}\n"))],
            );
            fx.run(&reload).ok();
            let want = format!("v{v}\n");
            assert_eq!(t.read(&etc.join("web.conf")), Some(want.clone()));
            assert_eq!(
                fs::read_to_string(export.join("etc/web.conf")).unwrap(),
                want
            );
            assert_eq!(
                t.read(&etc.join("host.conf")).as_deref(),
                Some("host conf\n")
            );
            t.overlay_at(&etc);
            assert_eq!(export_mounts(), 1);
        }
        let kept = t.overlay_at(&etc);
        let unchanged = |what: &str| {
            assert_eq!(t.overlay_at(&etc).id, kept.id, "{what}");
            assert_eq!(
                t.read(&etc.join("web.conf")).as_deref(),
                Some("v6\n"),
                "{what}"
            );
            assert_eq!(
                fs::read_to_string(export.join("etc/web.conf")).unwrap(),
                "v6\n",
                "{what}"
            );
            assert_eq!(export_mounts(), 1, "{what}");
            assert_eq!(workspace_leftovers(), Vec::<String>::new(), "{what}");
        };
        // A new version for another OS: the whole reload fails, naming the file.
        let bad = confext_in(&fx, dir, "web_7", &[("etc/web.conf", "v7\n")]);
        write_file(
            &bad.join("etc/extension-release.d/extension-release.web"),
            "ID=other\n",
        );
        fx.run(&reload).fails_with(&format!(
            "{}: extension-release does not match",
            bad.display()
        ));
        unchanged("broken version");
        fs::remove_dir_all(&bad).unwrap();
        // A fault at each step up to the service's own: the export is rolled back too.
        confext_in(&fx, dir, "web_8", &[("etc/web.conf", "v8\n")]);
        let mut hit_put = false;
        for n in 1..40 {
            let r = fx.run_env(&reload, &[("EXTMERGE_FAIL_AT_STEP", &n.to_string())]);
            if r.code == 0 {
                break;
            }
            r.fails_with("injected fault");
            hit_put |= r.err.contains(&format!("process {}: ", t.pid()));
            unchanged(&format!("fault at step {n}: {}", r.err));
        }
        assert!(hit_put, "no fault was injected in the service's namespace");
        assert_eq!(t.read(&etc.join("web.conf")).as_deref(), Some("v8\n"));
        // No such process; a process in the export's own namespace: refused first.
        let kept = t.overlay_at(&etc);
        confext_in(&fx, dir, "web_9", &[("etc/web.conf", "v9\n")]);
        let gone = format!("--main-pid={}", i32::MAX);
        fx.run(&[unit, "--class=confext", &ex, &gone, "refresh"])
            .fails_with(&format!("process {}", i32::MAX));
        let own = Target::spawn_with(false);
        let same = format!("--main-pid={}", own.pid());
        fx.run(&[unit, "--class=confext", &ex, &same, "refresh"])
            .fails_with("in the mount namespace the export is attached in");
        assert_eq!(t.overlay_at(&etc).id, kept.id);
        assert_eq!(
            fs::read_to_string(export.join("etc/web.conf")).unwrap(),
            "v8\n"
        );
        // Only with --export and refresh.
        fx.run(&[unit, "--class=confext", &main, "refresh"])
            .fails_with("--main-pid is for refresh with --export");
        fx.run(&[unit, "--class=confext", &ex, &main, "merge"])
            .fails_with("--main-pid is for refresh with --export");
        fx.run(&[unit, "--class=confext", &ex, "unmerge"]).ok();
        assert_eq!(fx.read("/etc/web.conf"), None, "the caller's /etc");
        assert_eq!(workspace_leftovers(), Vec::<String>::new());
    });
}

/// A service whose `/run` is read-only in its namespace (`ProtectSystem=strict`; the
/// same tmpfs as the caller's): a refresh inside it cannot build there (it needs the
/// runtime directory) and says so, leaving it as it was; the reload command, which
/// builds outside and only swaps inside, works.
#[test]
fn main_process_with_a_read_only_run() {
    ns_test(|base| {
        let (fx, export, ex) = exported_web(base);
        let (dir, unit) = (WEB_V, "--unit=web.service");
        let etc = fx.path("/etc");
        let t = Target::spawn_bound_strict(&export.join("etc"), &etc);
        assert!(
            fs::write(t.path(Path::new("/run/extmerge/probe")), "").is_err(),
            "/run is writable in the target"
        );
        let kept = t.overlay_at(&etc);
        confext_in(&fx, dir, "web_2", &[("etc/web.conf", "v2\n")]);
        fx.run(&[unit, "--class=confext", &t.arg(), "refresh"])
            .fails_with("Read-only file system");
        assert_eq!(t.overlay_at(&etc).id, kept.id);
        assert_eq!(t.read(&etc.join("web.conf")).as_deref(), Some("v1\n"));
        let main = format!("--main-pid={}", t.pid());
        fx.run(&[unit, "--class=confext", &ex, &main, "refresh"])
            .ok();
        assert_eq!(t.read(&etc.join("web.conf")).as_deref(), Some("v2\n"));
        t.overlay_at(&etc);
        fx.run(&[unit, "--class=confext", &ex, "unmerge"]).ok();
        assert_eq!(workspace_leftovers(), Vec::<String>::new());
    });
}
