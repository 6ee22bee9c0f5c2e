//! Mutable modes (B.5): yes, auto, import, ephemeral, ephemeral-import, the env var,
//! a mutable dir that is the hierarchy itself, and read-only metadata.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::common::*;

const MUT: &str = "/var/lib/extensions.mutable";

fn upper(fx: &Fx, comp: &str) -> PathBuf {
    fx.path(&format!("{MUT}/{comp}"))
}

/// `--mutable=yes`: the upper dir is created with /usr's mode, writes land there,
/// `work_dir` is recorded; unmerge deletes the work dir and keeps the upper dir.
#[test]
fn mutable_yes() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        fs::set_permissions(fx.path("/usr"), fs::Permissions::from_mode(0o751)).unwrap();
        fx.run(&["--class=sysext", "--mutable=yes", "merge"]).ok();

        let up = upper(&fx, "usr");
        assert_eq!(mode_of(&up), 0o751, "upper dir mode = /usr's mode");
        assert_eq!(mode_of(&fx.path("/usr")), 0o751, "merged root mode");
        let m = fx.overlay_at("/usr");
        assert!(!m.has("ro") && m.has("nodev"), "{m:?}");
        assert!(m.has_super("upperdir=") && m.has_super("workdir="), "{m:?}");
        assert_eq!(
            fs::read(fx.path("/usr/.systemd-sysext/work_dir")).unwrap(),
            b"var/lib/extensions.mutable/.systemd-usr-workdir\n"
        );
        let work = fx.path(&format!("{MUT}/.systemd-usr-workdir"));
        assert!(work.is_dir());

        // Writes land in the upper dir, host and extension stay untouched.
        fx.write("/usr/new-file", "new\n");
        fx.write("/usr/bin/host-tool", "changed\n");
        fx.write("/usr/share/a", "changed a\n");
        assert_eq!(fs::read_to_string(up.join("new-file")).unwrap(), "new\n");
        assert_eq!(
            fs::read_to_string(up.join("bin/host-tool")).unwrap(),
            "changed\n"
        );
        assert_eq!(
            fs::read_to_string(fx.path("/var/lib/extensions/a/usr/share/a")).unwrap(),
            "a\n"
        );
        // The metadata stays read-only.
        assert_eq!(fx.try_create("/usr/.systemd-sysext/x"), Err(libc::EROFS));
        assert_eq!(
            fs::write(fx.path("/usr/.systemd-sysext/extensions"), "evil\n")
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EROFS)
        );

        fx.run(&["--class=sysext", "unmerge"]).ok();
        assert!(fx.mounts_at("/usr").is_empty());
        assert!(!work.exists(), "work dir must be deleted at unmerge");
        assert_eq!(fs::read_to_string(up.join("new-file")).unwrap(), "new\n");
        assert_eq!(
            fx.read("/usr/bin/host-tool").as_deref(),
            Some("host tool\n")
        );
        assert_eq!(fx.ls("/usr"), ["bin"]);
        assert_eq!(fx.ls(MUT), ["usr"]);

        // A second merge finds the upper dir (its mode passes the check) and its files.
        fx.run(&["--class=sysext", "--mutable=yes", "merge"]).ok();
        assert_eq!(fx.read("/usr/new-file").as_deref(), Some("new\n"));
        assert_eq!(fx.read("/usr/bin/host-tool").as_deref(), Some("changed\n"));
    });
}

/// confext with `--mutable=yes`: `/var/lib/extensions.mutable/etc`, class flags kept.
#[test]
fn mutable_yes_confext() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.confext("c", &[("etc/c.conf", "c\n")]);
        fx.run(&["--class=confext", "--mutable=yes", "merge"]).ok();
        let m = fx.overlay_at("/etc");
        assert!(
            !m.has("ro") && m.has("nodev") && m.has("nosuid") && m.has("noexec"),
            "{m:?}"
        );
        assert_eq!(
            fx.read("/etc/.systemd-confext/work_dir").as_deref(),
            Some("var/lib/extensions.mutable/.systemd-etc-workdir\n")
        );
        fx.write("/etc/local.conf", "local\n");
        assert_eq!(
            fs::read_to_string(upper(&fx, "etc").join("local.conf")).unwrap(),
            "local\n"
        );
        assert_eq!(fx.try_create("/etc/.systemd-confext/x"), Err(libc::EROFS));
    });
}

/// `auto` without the mutable dir: read-only, nothing created.
#[test]
fn mutable_auto_without_dir_is_read_only() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        fx.run(&["--class=sysext", "--mutable=auto", "merge"]).ok();
        assert_eq!(fx.try_create("/usr/x"), Err(libc::EROFS));
        assert!(fx.overlay_at("/usr").has("ro"));
        assert!(!fx.path(MUT).exists());
        assert!(!fx.path("/usr/.systemd-sysext/work_dir").exists());
    });
}

/// `auto` with the mutable dir: writable into it; its files are visible.
#[test]
fn mutable_auto_with_dir_is_writable() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        let up = upper(&fx, "usr");
        write_file(&up.join("pre-existing"), "pre\n");
        fs::set_permissions(&up, fs::Permissions::from_mode(0o755)).unwrap();
        fx.run(&["--class=sysext", "--mutable=auto", "merge"]).ok();
        assert_eq!(fx.read("/usr/pre-existing").as_deref(), Some("pre\n"));
        assert_eq!(fx.try_create("/usr/x"), Ok(()));
        assert!(up.join("x").exists());
        assert!(!fx.overlay_at("/usr").has("ro"));
        assert_eq!(
            fx.read("/usr/.systemd-sysext/work_dir").as_deref(),
            Some("var/lib/extensions.mutable/.systemd-usr-workdir\n")
        );
    });
}

/// `auto`/`yes` with a mutable dir whose mode differs from the hierarchy's: refused
/// (EINVAL, "ought to have mode"), nothing mounted.
#[test]
fn mutable_dir_with_wrong_mode_refused() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        let up = upper(&fx, "usr");
        fs::create_dir_all(&up).unwrap();
        fs::set_permissions(&up, fs::Permissions::from_mode(0o700)).unwrap();
        let before = fx.snapshot();
        for mode in ["--mutable=auto", "--mutable=yes"] {
            fx.run(&["--class=sysext", mode, "merge"])
                .fails_with("ought to have mode 0755");
            assert_eq!(fx.snapshot(), before);
        }
        assert_eq!(mode_of(&up), 0o700);
    });
}

/// `import`: read-only, the mutable dir's files are visible, above the extensions.
#[test]
fn mutable_import() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "from a\n")]);
        let up = upper(&fx, "usr");
        write_file(&up.join("imported"), "imported\n");
        write_file(&up.join("share/a"), "from mutable dir\n");
        fx.run(&["--class=sysext", "--mutable=import", "merge"])
            .ok();
        assert_eq!(fx.read("/usr/imported").as_deref(), Some("imported\n"));
        assert_eq!(
            fx.read("/usr/share/a").as_deref(),
            Some("from mutable dir\n")
        );
        assert_eq!(fx.try_create("/usr/x"), Err(libc::EROFS));
        let m = fx.overlay_at("/usr");
        assert!(m.has("ro") && !m.has_super("upperdir="), "{m:?}");
        assert!(!fx.path("/usr/.systemd-sysext/work_dir").exists());
        assert_eq!(ls(&up), ["imported", "share"]);
    });
}

/// `ephemeral`: writable; the write is gone after unmerge + merge; nothing persistent.
#[test]
fn mutable_ephemeral() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        fx.run(&["--class=sysext", "--mutable=ephemeral", "merge"])
            .ok();
        fx.write("/usr/eph", "eph\n");
        assert_eq!(fx.read("/usr/eph").as_deref(), Some("eph\n"));
        assert!(!fx.path(MUT).exists());
        assert!(!fx.path("/usr/.systemd-sysext/work_dir").exists());
        assert_eq!(fx.try_create("/usr/.systemd-sysext/x"), Err(libc::EROFS));
        assert_eq!(workspace_leftovers(), Vec::<String>::new());
        fx.run(&["--class=sysext", "unmerge"]).ok();
        assert_eq!(fx.read("/usr/eph"), None);
        fx.run(&["--class=sysext", "--mutable=ephemeral", "merge"])
            .ok();
        assert_eq!(fx.read("/usr/eph"), None);
        assert_eq!(fx.read("/usr/share/a").as_deref(), Some("a\n"));
        assert_eq!(fx.ls("/usr/bin"), ["host-tool"]);
    });
}

/// `ephemeral-import`: the persistent dir is visible, writes go to the tmpfs only.
#[test]
fn mutable_ephemeral_import() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        let up = upper(&fx, "usr");
        write_file(&up.join("imported"), "imported\n");
        fx.run(&["--class=sysext", "--mutable=ephemeral-import", "merge"])
            .ok();
        assert_eq!(fx.read("/usr/imported").as_deref(), Some("imported\n"));
        fx.write("/usr/eph", "eph\n");
        fx.write("/usr/imported", "overwritten\n");
        assert_eq!(fx.read("/usr/imported").as_deref(), Some("overwritten\n"));
        assert_eq!(ls(&up), ["imported"]);
        assert_eq!(
            fs::read_to_string(up.join("imported")).unwrap(),
            "imported\n"
        );
        assert!(!fx.path("/usr/.systemd-sysext/work_dir").exists());
        fx.run(&["--class=sysext", "unmerge"]).ok();
        fx.run(&["--class=sysext", "--mutable=ephemeral-import", "merge"])
            .ok();
        assert_eq!(fx.read("/usr/eph"), None);
        assert_eq!(fx.read("/usr/imported").as_deref(), Some("imported\n"));
    });
}

/// `SYSTEMD_SYSEXT_MUTABLE_MODE` sets the default; `--mutable` wins over it.
#[test]
fn mutable_mode_from_environment() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        let env = [("SYSTEMD_SYSEXT_MUTABLE_MODE", "ephemeral")];
        fx.run_env(&["--class=sysext", "merge"], &env).ok();
        assert_eq!(fx.try_create("/usr/x"), Ok(()));
        fx.run(&["--class=sysext", "unmerge"]).ok();
        fx.run_env(&["--class=sysext", "--mutable=no", "merge"], &env)
            .ok();
        assert_eq!(fx.try_create("/usr/x"), Err(libc::EROFS));
    });
}

/// A mutable dir that is a symlink to the hierarchy itself: the host hierarchy becomes
/// the upper dir, the work dir goes next to it (`/.systemd-usr-workdir`).
#[test]
fn mutable_dir_is_the_hierarchy() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        fs::create_dir_all(fx.path(MUT)).unwrap();
        std::os::unix::fs::symlink("/usr", upper(&fx, "usr")).unwrap();
        fx.run(&["--class=sysext", "--mutable=yes", "merge"]).ok();
        assert_eq!(
            fx.read("/usr/.systemd-sysext/work_dir").as_deref(),
            Some(".systemd-usr-workdir\n")
        );
        fx.write("/usr/direct", "direct\n");
        assert_eq!(fx.read("/usr/share/a").as_deref(), Some("a\n"));
        fx.run(&["--class=sysext", "unmerge"]).ok();
        assert_eq!(fx.read("/usr/direct").as_deref(), Some("direct\n"));
        assert!(!fx.path("/.systemd-usr-workdir").exists());
        assert_eq!(fx.ls("/usr"), ["bin", "direct"]);
    });
}
