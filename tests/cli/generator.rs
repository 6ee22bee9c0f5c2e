//! `extmerge-generator`: for each service with a `NAME.confext.d/`, the drop-in that
//! wires the unit's own confexts in (export before start, bind on /etc, refresh on
//! reload before the unit's own reload command); units using systemd's own extension
//! settings, masked units and other unit types are left alone; nothing in the initrd.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::common::BIN;

fn put(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel.trim_start_matches('/'));
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

#[test]
fn generator_writes_dropins_for_units_with_confexts() {
    let t = tempfile::tempdir().unwrap();
    let (root, out) = (t.path().join("root"), t.path().join("out"));
    put(
        &root,
        "/usr/lib/systemd/system/web.service",
        "[Service]\nExecStart=/usr/sbin/web\nExecReload=/bin/kill -HUP $MAINPID\n",
    );
    put(
        &root,
        "/etc/systemd/system/web.service.confext.d/web.raw",
        "",
    );
    put(
        &root,
        "/usr/lib/systemd/system/sd.service",
        "[Service]\nExecStart=/x\nExtensionDirectories=/srv/x\n",
    );
    put(
        &root,
        "/usr/lib/systemd/system/sd.service.confext.d/a/etc/x",
        "",
    );
    put(
        &root,
        "/run/systemd/system/ghost.service.confext.d/a/etc/x",
        "",
    );
    put(
        &root,
        "/usr/lib/systemd/system/s.socket.confext.d/a/etc/x",
        "",
    );
    std::os::unix::fs::symlink("/dev/null", root.join("etc/systemd/system/masked.service"))
        .unwrap();
    put(
        &root,
        "/usr/lib/systemd/system/masked.service",
        "[Service]\nExecStart=/x\n",
    );
    put(
        &root,
        "/usr/lib/systemd/system/masked.service.confext.d/a/etc/x",
        "",
    );
    let gen = t.path().join("extmerge-generator");
    std::os::unix::fs::symlink(BIN, &gen).unwrap();
    let run = |env: &[(&str, &str)]| {
        let mut c = Command::new(&gen);
        c.arg(format!("--root={}", root.display()))
            .arg(&out)
            .arg(t.path().join("early"))
            .arg(t.path().join("late"));
        c.env_remove("SYSTEMD_IN_INITRD");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    // In the initrd: nothing.
    let o = run(&[("SYSTEMD_IN_INITRD", "1")]);
    assert!(o.status.success());
    assert!(!out.exists());
    let o = run(&[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let mut made: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    made.sort();
    assert_eq!(made, ["web.service.d"]);
    let d = fs::read_to_string(out.join("web.service.d/00-extmerge.conf")).unwrap();
    let exe = fs::canonicalize(BIN).unwrap();
    let ex = format!("{} --unit=web.service --class=confext", exe.display());
    let host = format!("{ex} --pid=1 --export=/run/extmerge/units/web.service");
    for want in [
        "BindReadOnlyPaths=/run/extmerge/units/web.service/etc:/etc\n".to_string(),
        format!("ExecStartPre=\nExecStartPre=+{host} refresh\n"),
        format!("ExecReload=\nExecReload=+{host} --main-pid=${{MAINPID}} refresh\nExecReload=/bin/kill -HUP $MAINPID\n"),
        format!("ExecStopPost=+{host} unmerge\n"),
    ] {
        assert!(d.contains(&want), "{want:?} not in:\n{d}");
    }
    // The export's mount point exists before the unit starts (inside the root here).
    assert!(root.join("run/extmerge/units/web.service/etc").is_dir());
    assert!(!root.join("run/extmerge/units/sd.service").exists());
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(root.join("run/extmerge"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    assert!(
        err.contains("sd.service: uses ExtensionImages=/ExtensionDirectories=, left to systemd"),
        "{err}"
    );
    assert!(err.contains("ghost.service: no unit file"), "{err}");
    assert!(
        err.contains("masked.service: no unit file (or masked)"),
        "{err}"
    );
}
