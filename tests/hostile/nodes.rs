//! Device nodes and setuid-root executables inside extensions. systemd mounts a
//! sysext overlay `MS_RDONLY|MS_NODEV` and a confext overlay
//! `MS_RDONLY|MS_NODEV|MS_NOSUID|MS_NOEXEC` (`image_class_info[].default_mount_flags`
//! in src/sysext/sysext.c): device nodes are dead in both; a confext cannot run
//! anything; a sysext's setuid binaries in /usr work as intended (a sysext ships
//! programs, and e.g. a setuid helper is legitimate there).

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use crate::common::*;
use crate::util::*;

fn copy_setuid(from: &str, to: &Path, mode: u32) {
    fs::create_dir_all(to.parent().unwrap()).unwrap();
    fs::copy(from, to).unwrap_or_else(|e| panic!("copy {from}: {e}"));
    fs::set_permissions(to, fs::Permissions::from_mode(mode)).unwrap();
}

/// errno of opening `p` for reading (0 if it opens).
fn open_errno(p: &Path) -> i32 {
    match fs::File::open(p) {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

/// errno of executing `p` (0 if it runs).
fn exec_errno(p: &Path) -> i32 {
    match Command::new(p).output() {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

fn no_new_privs() -> bool {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("NoNewPrivs:") && l.trim_end().ends_with('1'))
}

#[test]
fn device_nodes_and_setuid_binaries() {
    ns_test(|base| {
        // The unprivileged user must be able to reach the merged tree.
        fs::set_permissions(base, fs::Permissions::from_mode(0o755)).unwrap();
        let fx = Fx::new(base);
        let s = fx.sysext("s", &[]);
        let c = fx.confext("c", &[]);
        for dir in [s.join("usr/bin"), c.join("etc")] {
            mknod(&dir.join("devnull"), libc::S_IFCHR, 1, 3);
            mknod(&dir.join("loop0"), libc::S_IFBLK, 7, 0);
            copy_setuid("/bin/true", &dir.join("suid-true"), 0o4755);
            copy_setuid("/bin/true", &dir.join("plain-true"), 0o755);
        }
        copy_setuid("/usr/bin/id", &s.join("usr/bin/suid-id"), 0o4755);
        let before = state(&fx);

        run_t(&fx, &["--class=sysext", "merge"], 10).ok();
        run_t(&fx, &["--class=confext", "merge"], 10).ok();

        let usr = fx.overlay_at("/usr");
        assert!(usr.has("ro") && usr.has("nodev"), "{usr:?}");
        assert!(!usr.has("nosuid") && !usr.has("noexec"), "{usr:?}");
        let etc = fx.overlay_at("/etc");
        for o in ["ro", "nodev", "nosuid", "noexec"] {
            assert!(etc.has(o), "/etc lacks {o}: {etc:?}");
        }

        for d in ["/usr/bin", "/etc"] {
            let p = |n: &str| fx.path(&format!("{d}/{n}"));
            // The nodes are visible as such, with their modes...
            assert!(fs::metadata(p("devnull"))
                .unwrap()
                .file_type()
                .is_char_device());
            assert!(fs::metadata(p("loop0"))
                .unwrap()
                .file_type()
                .is_block_device());
            assert_eq!(mode_of(&p("suid-true")), 0o4755, "{d}");
            // ...but cannot be opened (nodev).
            assert_eq!(open_errno(&p("devnull")), libc::EACCES, "{d}/devnull");
            assert_eq!(open_errno(&p("loop0")), libc::EACCES, "{d}/loop0");
        }
        // Nothing in a confext runs (noexec), setuid or not.
        assert_eq!(exec_errno(&fx.path("/etc/suid-true")), libc::EACCES);
        assert_eq!(exec_errno(&fx.path("/etc/plain-true")), libc::EACCES);
        // A sysext's programs run.
        assert_eq!(exec_errno(&fx.path("/usr/bin/plain-true")), 0);
        assert_eq!(exec_errno(&fx.path("/usr/bin/suid-true")), 0);

        // The sysext overlay is not nosuid (as systemd's): the setuid-root binary,
        // run by nobody, runs with euid 0 and real uid 65534.
        let id = |flag: &str| {
            let o = Command::new(fx.path("/usr/bin/suid-id"))
                .arg(flag)
                .uid(65534)
                .gid(65534)
                .output()
                .expect("run suid-id as nobody");
            assert!(o.status.success(), "{o:?}");
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        };
        assert_eq!(id("-ru"), "65534");
        if no_new_privs() {
            eprintln!("SKIP euid check: this test runs with no_new_privs set");
        } else {
            assert_eq!(id("-u"), "0", "setuid does not work in the sysext's /usr");
        }

        run_t(&fx, &["--class=confext", "unmerge"], 10).ok();
        run_t(&fx, &["--class=sysext", "unmerge"], 10).ok();
        assert_clean(&fx, &before, "after unmerge");
    });
}
