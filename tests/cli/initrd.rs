//! `extmerge-initrd` against a fake sysroot: a second run says the extensions are
//! already merged (not that it merged them into nothing), and a bad command line is
//! called what it is.

use std::path::Path;
use std::process::Command;

use crate::common::*;

/// The initrd program under test.
const INITRD_BIN: &str = env!("CARGO_BIN_EXE_extmerge-initrd");

/// Covers `/dev/kmsg` with `/dev/null` in this thread's private mount namespace, so
/// that the program's kernel-log records do not reach the host's kernel log.
fn silence_kmsg() {
    // SAFETY: NUL-terminated string literals and NULLs, only read by mount(2).
    let r = unsafe {
        libc::mount(
            c"/dev/null".as_ptr(),
            c"/dev/kmsg".as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    assert_eq!(
        r,
        0,
        "bind /dev/null over /dev/kmsg: {}",
        std::io::Error::last_os_error()
    );
}

/// Runs `extmerge-initrd --cmdline=<empty file> ARGS...`.
fn run_initrd(base: &Path, args: &[String]) -> Run {
    let cmdline = base.join("cmdline");
    if !cmdline.exists() {
        std::fs::write(&cmdline, "root=/dev/vda quiet\n").unwrap();
    }
    let mut a = vec![format!("--cmdline={}", cmdline.display())];
    a.extend(args.iter().cloned());
    let o = Command::new(INITRD_BIN)
        .args(&a)
        .env_remove("SYSTEMD_SYSEXT_HIERARCHIES")
        .env_remove("SYSTEMD_CONFEXT_HIERARCHIES")
        .output()
        .expect("run extmerge-initrd");
    Run {
        code: o.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&o.stdout).into_owned(),
        err: String::from_utf8_lossy(&o.stderr).into_owned(),
        cmd: format!("extmerge-initrd {}", a.join(" ")),
    }
}

#[test]
fn second_run_says_already_merged() {
    ns_test_with(Prop::Private, |base| {
        silence_kmsg();
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        fx.confext("c", &[("etc/c.conf", "c\n")]);
        let sysroot = vec![format!("--sysroot={}", fx.root.display())];
        let root = fx.root.display().to_string();
        let first = run_initrd(base, &sysroot);
        first.ok();
        for line in [
            format!("{root}: merged confext extensions c into /etc"),
            format!("{root}: merged sysext extensions a into /usr"),
        ] {
            assert!(first.err.contains(&line), "want {line:?}:\n{}", first.err);
        }
        let (usr, etc) = (fx.overlay_at("/usr"), fx.overlay_at("/etc"));

        let second = run_initrd(base, &sysroot);
        second.ok();
        for line in [
            format!("{root}: confext extensions c already merged, nothing changed"),
            format!("{root}: sysext extensions a already merged, nothing changed"),
        ] {
            assert!(second.err.contains(&line), "want {line:?}:\n{}", second.err);
        }
        assert!(
            !second.err.contains("merged sysext extensions")
                && !second.err.lines().any(|l| l.trim_end().ends_with(" into")),
            "the second run claims a merge:\n{}",
            second.err
        );
        assert_eq!(fx.overlay_at("/usr").id, usr.id, "the merge was left alone");
        assert_eq!(fx.overlay_at("/etc").id, etc.id);
        assert_eq!(fx.read("/usr/share/a").as_deref(), Some("a\n"));
    });
}

#[test]
fn bad_command_line_is_named() {
    ns_test_with(Prop::Private, |base| {
        silence_kmsg();
        let fx = Fx::new(base);
        let before = fx.snapshot();
        for (args, want) in [
            (&["--bogus"][..], "unknown option \"--bogus\""),
            (&["--bogus", "sysroot"], "unknown option \"--bogus\""),
            (&["sysroot", "-x"], "unknown option \"-x\""),
            // The value must be joined with "=": alone it is an option we do not know.
            (&["--sysroot", "/sysroot"], "unknown option \"--sysroot\""),
            (&["sysroot", "initrd"], "too many arguments: \"initrd\""),
            (&["bogus"], "unknown verb \"bogus\""),
        ] {
            let mut a = vec![format!("--sysroot={}", fx.root.display())];
            a.extend(args.iter().map(|s| s.to_string()));
            let r = run_initrd(base, &a);
            r.fails_with(want);
            if want.starts_with("unknown option") {
                assert!(!r.err.contains("unknown verb"), "{}:\n{}", r.cmd, r.err);
            }
        }
        assert_eq!(fx.snapshot(), before, "nothing was mounted");
    });
}

/// Kernel-log lines (mirrored on stderr) show a sysroot path with control characters
/// and an extension name with a C1 control, a quote and a backslash escaped as
/// systemd's `cescape()` does: nothing raw reaches the log or the console.
#[test]
fn log_lines_escape_names_and_paths() {
    ns_test_with(Prop::Private, |base| {
        silence_kmsg();
        let fx = Fx::new(&base.join("sys\x1b[31mroot\tdir"));
        let name = "c\u{9b}'\\";
        fx.sysext(name, &[("usr/share/c", "c\n")]);
        let r = run_initrd(base, &[format!("--sysroot={}", fx.root.display())]);
        r.ok();
        let root = format!("{}/sys\\x1b[31mroot\\tdir/root", base.display());
        let line = format!("{root}: merged sysext extensions c\\xc2\\x9b\\'\\\\ into /usr");
        assert!(r.err.contains(&line), "want {line:?}:\n{}", r.err);
        assert!(
            !r.err.chars().any(|c| c.is_control() && c != '\n'),
            "raw control character:\n{}",
            r.err.escape_debug()
        );
        assert_eq!(fx.read("/usr/share/c").as_deref(), Some("c\n"));
    });
}

/// A first boot (machine-id "uninitialized") with the confexts merged read-only on
/// `/etc` is warned about, naming the file and key that fix it; not when the machine-id
/// is set, and not once the root's confext.conf makes `/etc` writable.
#[test]
fn read_only_etc_on_first_boot_is_warned_about() {
    ns_test_with(Prop::Private, |base| {
        silence_kmsg();
        let fx = Fx::new(base);
        fx.confext("c", &[("etc/c.conf", "c\n")]);
        // The root's own /etc, below the merges to come.
        let etc = std::fs::File::open(fx.root.join("etc")).unwrap();
        let own = |rel: &str| {
            Path::new("/proc/self/fd")
                .join(std::os::fd::AsRawFd::as_raw_fd(&etc).to_string())
                .join(rel)
        };
        let sysroot = vec![format!("--sysroot={}", fx.root.display())];
        let warning = "with its confexts merged read-only on /etc";

        std::fs::write(own("machine-id"), "3b2f8c6a1d9e4f5b8a7c6d5e4f3a2b1c\n").unwrap();
        let set = run_initrd(base, &sysroot);
        set.ok();
        assert!(!set.err.contains(warning), "not a first boot:\n{}", set.err);

        std::fs::write(own("machine-id"), "uninitialized\n").unwrap();
        let first = run_initrd(base, &sysroot);
        first.ok();
        let want = format!(
            "first boot of {} {warning}: systemd cannot set up the machine-id or write preset links there; set Mutable=yes in [ConfExt] of {}/etc/systemd/confext.conf",
            fx.root.display(),
            fx.root.display()
        );
        assert!(first.err.contains(&want), "want {want:?}:\n{}", first.err);

        // The root's configuration, as an image builder ships it: written with nothing
        // merged (overlayfs need not see a lower layer change under it).
        let etc_path =
            std::ffi::CString::new(fx.root.join("etc").into_os_string().into_encoded_bytes())
                .unwrap();
        // SAFETY: a NUL-terminated path, only read by umount2(2).
        let r = unsafe { libc::umount2(etc_path.as_ptr(), libc::MNT_DETACH) };
        assert_eq!(r, 0, "umount /etc: {}", std::io::Error::last_os_error());
        std::fs::create_dir_all(own("systemd")).unwrap();
        std::fs::write(own("systemd/confext.conf"), "[ConfExt]\nMutable=yes\n").unwrap();
        let mutable = run_initrd(base, &sysroot);
        mutable.ok();
        assert!(
            !mutable.err.contains(warning),
            "/etc is writable:\n{}",
            mutable.err
        );
        std::fs::write(fx.root.join("etc/written"), "x\n").expect("/etc is writable now");
    });
}

/// `Require=` in the real root's own `/etc/extmerge/initrd.conf` is read (a missing
/// required extension fails the run, named), and a FIFO planted there is refused
/// without blocking on it.
#[test]
fn required_extensions_from_the_root_config() {
    ns_test_with(Prop::Private, |base| {
        silence_kmsg();
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        let conf = fx.root.join("etc/extmerge/initrd.conf");
        std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
        std::fs::write(&conf, "[Initrd]\nRequire=a gone\n").unwrap();
        let sysroot = vec![format!("--sysroot={}", fx.root.display())];
        let r = run_initrd(base, &sysroot);
        assert_eq!(r.code, 1, "{}", r.err);
        assert!(
            r.err
                .contains("required extension gone is not merged, stopping the boot"),
            "{}",
            r.err
        );
        assert!(!r.err.contains("required extension a "), "{}", r.err);

        std::fs::remove_file(&conf).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &conf,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        // A reader of the FIFO would wait for a writer for ever: the run must not.
        let r = run_initrd(base, &sysroot);
        r.ok();
    });
}

/// `extmerge.extra=sysroot`: the initrd's `/.extra` images are looked at for the real
/// root only when asked, under the strict `/.extra` policy whatever the real root's own
/// configuration allows (an unsigned image is refused, naming it, and the class is not
/// merged: all or nothing), a directory there is not taken, and the root's own
/// extension wins a name. The accepted, signed case needs dm-verity and a trusted key:
/// `tests/vm/run-signed-tests.sh` boots it through switch-root.
#[test]
fn initrd_extra_images_onto_the_sysroot() {
    ns_test_with(Prop::Private, |base| {
        silence_kmsg();
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        fx.confext("c", &[("etc/c.conf", "c\n")]);
        // The sysroot allows unprotected images for its own: not for /.extra.
        fx.write(
            "/etc/systemd/sysext.conf",
            "[SysExt]\nImagePolicy=root=unprotected+absent:usr=unprotected+absent:=unused+absent\n",
        );
        let initrd = base.join("initrd");
        let extra = initrd.join(".extra/sysext");
        std::fs::create_dir_all(&extra).unwrap();
        // b: an erofs image without verity; a: a directory of the same name as the root's.
        let tree = fx.sysext("b", &[("usr/share/b", "b\n")]);
        let o = Command::new("mkfs.erofs")
            .arg("--quiet")
            .arg(extra.join("b.raw"))
            .arg(&tree)
            .output()
            .expect("mkfs.erofs (erofs-utils) is needed");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::remove_dir_all(&tree).unwrap();
        let shadow = extra.join("a");
        std::fs::create_dir_all(shadow.join("usr/share")).unwrap();
        std::fs::write(shadow.join("usr/share/not-a"), "x\n").unwrap();
        std::fs::create_dir_all(initrd.join(".extra/global_sysext/d/usr/share")).unwrap();

        let args = vec![
            format!("--sysroot={}", fx.root.display()),
            format!("--extra-root={}", initrd.display()),
        ];
        // Without the switch: the initrd's /.extra is not looked at.
        let r = run_initrd(base, &args);
        r.ok();
        assert!(!r.err.contains(".extra"), "{}", r.err);
        assert_eq!(fx.ls("/usr/share"), ["a"]);
        fx.run(&["unmerge"]).ok();
        assert_eq!(fx.ls("/usr/share"), Vec::<String>::new());

        std::fs::write(
            base.join("cmdline"),
            "root=/dev/vda extmerge.extra=sysroot\n",
        )
        .unwrap();
        let r = run_initrd(base, &args);
        assert_eq!(r.code, 0, "not fatal without extmerge.fatal=1:\n{}", r.err);
        let b = format!("{}/.extra/sysext/b.raw", initrd.display());
        assert!(
            r.err
                .contains(&format!("sysext merge failed, continuing without it: {b}")),
            "the refused image is named:\n{}",
            r.err
        );
        assert!(r.err.contains("signed"), "the policy says why:\n{}", r.err);
        assert!(
            r.err.contains(&format!(
                "{}/.extra/sysext/a: not used: shadowed by",
                initrd.display()
            )),
            "{}",
            r.err
        );
        assert!(
            r.err.contains(&format!(
                "{}/.extra/global_sysext/d: not used: a directory",
                initrd.display()
            )),
            "{}",
            r.err
        );
        // The sysext class is all or nothing; the confexts are merged.
        assert_eq!(fx.ls("/usr/share"), Vec::<String>::new());
        assert_eq!(fx.read("/etc/c.conf").as_deref(), Some("c\n"));
        let report = std::fs::read_to_string("/run/extmerge/report.json").unwrap();
        assert!(report.contains("extmerge.extra=sysroot"), "{report}");
        assert!(report.contains(&b), "the report names it:\n{report}");
    });
}
