//! `sysext.conf` / `confext.conf` (read from the root given by `--root`, as systemd's
//! `config_parse_standard_file_with_dropins_full(arg_root, …)`), the precedence
//! command line > environment > configuration > default, and
//! `SYSTEMD_*_OVERLAYFS_MOUNT_OPTIONS` on the overlay mount.

use std::process::Command;

use crate::common::*;

fn writable(fx: &Fx, rel: &str) -> bool {
    let f = format!("{rel}/.probe");
    let ok = fx.try_create(&f).is_ok();
    if ok {
        let _ = std::fs::remove_file(fx.path(&f));
    }
    ok
}

/// `Mutable=` in the root's `/etc/systemd/sysext.conf`, overridden by a drop-in of
/// `/usr/lib/systemd/sysext.conf.d/` (drop-ins beat the main file), by the environment
/// and by `--mutable=`.
#[test]
fn mutable_precedence_command_line_environment_configuration() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        let merged_writable = |args: &[&str], env: &[(&str, &str)]| {
            let mut a = vec!["--class=sysext"];
            a.extend_from_slice(args);
            a.push("merge");
            fx.run_env(&a, env).ok();
            let w = writable(&fx, "/usr");
            fx.run(&["--class=sysext", "unmerge"]).ok();
            w
        };
        assert!(!merged_writable(&[], &[]), "default: read-only");
        fx.write("/etc/systemd/sysext.conf", "[SysExt]\nMutable=ephemeral\n");
        assert!(merged_writable(&[], &[]), "configuration");
        let no = [("SYSTEMD_SYSEXT_MUTABLE_MODE", "no")];
        assert!(
            !merged_writable(&[], &no),
            "environment beats configuration"
        );
        let bad = [("SYSTEMD_SYSEXT_MUTABLE_MODE", "sometimes")];
        assert!(merged_writable(&[], &bad), "an invalid variable falls back");
        assert!(
            merged_writable(&["--mutable=ephemeral"], &no),
            "command line beats environment"
        );
        fx.write(
            "/usr/lib/systemd/sysext.conf.d/50-ro.conf",
            "[SysExt]\nMutable=no\n",
        );
        assert!(!merged_writable(&[], &[]), "a drop-in beats the main file");
        // The confext section does not apply to sysexts, and the other way round.
        fx.write(
            "/etc/systemd/confext.conf",
            "[ConfExt]\nMutable=ephemeral\n",
        );
        assert!(!merged_writable(&[], &[]));
        fx.confext("c", &[("etc/c.conf", "c\n")]);
        fx.run(&["--class=confext", "merge"]).ok();
        assert!(writable(&fx, "/etc"), "confext.conf's [ConfExt]");
        fx.run(&["--class=confext", "unmerge"]).ok();
    });
}

/// With `--root`, the root's configuration applies, not the host's; a symlink in the
/// root cannot reach a file outside it.
#[test]
fn configuration_is_read_from_the_root_not_the_host() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        // The host's /run/systemd, in this test's mount namespace only.
        std::fs::create_dir_all("/run/systemd").unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs", "/run/systemd"])
            .status()
            .unwrap();
        assert!(st.success());
        write_file(
            std::path::Path::new("/run/systemd/sysext.conf"),
            "[SysExt]\nMutable=ephemeral\n",
        );
        fx.run(&["--class=sysext", "merge"]).ok();
        assert!(!writable(&fx, "/usr"), "the host's sysext.conf is not read");
        fx.run(&["--class=sysext", "unmerge"]).ok();

        // An absolute symlink resolves inside the root.
        write_file(&base.join("outside.conf"), "[SysExt]\nMutable=ephemeral\n");
        fx.write("/outside.conf", "[SysExt]\nMutable=no\n");
        std::fs::create_dir_all(fx.path("/etc/systemd")).unwrap();
        std::os::unix::fs::symlink("/outside.conf", fx.path("/etc/systemd/sysext.conf")).unwrap();
        fx.run(&["--class=sysext", "merge"]).ok();
        assert!(!writable(&fx, "/usr"));
        fx.run(&["--class=sysext", "unmerge"]).ok();
    });
}

/// Errors in a configuration file are warnings: the merge goes on.
#[test]
fn configuration_errors_are_warnings() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        fx.write(
            "/etc/systemd/sysext.conf",
            "[SysExt]\nMutable=sometimes\nFrobnicate=yes\n[Other]\nX=1\n",
        );
        let r = fx.run(&["--class=sysext", "merge"]);
        r.ok();
        for w in [
            "sysext.conf:2: Failed to parse Mutable=sometimes, ignoring.",
            "sysext.conf:3: Unknown key 'Frobnicate' in section [SysExt], ignoring.",
            "sysext.conf:4: Unknown section 'Other'. Ignoring.",
        ] {
            assert!(r.err.contains(w), "{w} not in {}", r.err);
        }
        assert!(!writable(&fx, "/usr"));
        fx.run(&["--class=sysext", "unmerge"]).ok();
        fx.write(
            "/etc/systemd/sysext.conf",
            "[SysExt]\nImagePolicy=root=verity:root=signed\n",
        );
        let r = fx.run(&["--class=sysext", "merge"]);
        r.ok();
        assert!(r.err.contains("Failed to parse image policy"), "{}", r.err);
        fx.run(&["--class=sysext", "unmerge"]).ok();
    });
}

/// `SYSTEMD_SYSEXT_OVERLAYFS_MOUNT_OPTIONS`: generic flags on the mount, the rest on
/// the overlay's superblock; set (even empty) it replaces the mutable defaults.
#[test]
fn overlay_mount_options_from_the_environment() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        let env = [(
            "SYSTEMD_SYSEXT_OVERLAYFS_MOUNT_OPTIONS",
            "noatime,userxattr,nosuid,lowerdir=/tmp",
        )];
        let r = fx.run_env(&["--class=sysext", "merge"], &env);
        r.ok();
        assert!(
            r.err.contains("ignoring overlay option lowerdir=/tmp"),
            "{}",
            r.err
        );
        let m = fx.overlay_at("/usr");
        assert!(m.has("ro") && m.has("noatime") && m.has("nosuid"), "{m:?}");
        assert!(m.has_super("userxattr"), "{m:?}");
        assert!(fx.read("/usr/share/a").is_some());
        fx.run(&["--class=sysext", "unmerge"]).ok();

        // Mutable: the defaults without the variable, none with it set but empty.
        fx.run(&["--class=sysext", "--mutable=ephemeral", "merge"])
            .ok();
        let m = fx.overlay_at("/usr");
        assert!(m.has("noatime") && m.has_super("redirect_dir=on"), "{m:?}");
        fx.run(&["--class=sysext", "unmerge"]).ok();
        let env = [("SYSTEMD_SYSEXT_OVERLAYFS_MOUNT_OPTIONS", "")];
        fx.run_env(&["--class=sysext", "--mutable=ephemeral", "merge"], &env)
            .ok();
        let m = fx.overlay_at("/usr");
        assert!(
            !m.has("noatime") && !m.has_super("redirect_dir=on"),
            "{m:?}"
        );
        assert!(writable(&fx, "/usr"));
        fx.run(&["--class=sysext", "unmerge"]).ok();

        // The confext variable is the confexts' only.
        fx.confext("c", &[("etc/c.conf", "c\n")]);
        let env = [("SYSTEMD_CONFEXT_OVERLAYFS_MOUNT_OPTIONS", "nodiratime")];
        fx.run_env(&["merge"], &env).ok();
        assert!(fx.overlay_at("/etc").has("nodiratime"));
        assert!(!fx.overlay_at("/usr").has("nodiratime"));
        fx.run(&["unmerge"]).ok();
    });
}
