//! `NAME.v/` picking as systemd 262 does it: the UAPI.10 version characters
//! (`version_is_valid(s, 0)`, systemd PR #43025: `~`/`^` allowed, `_`/`+`/`,` not) and
//! entries of the wrong type ignored rather than failing the pick (`vpick.c`, PR #40084).

use std::os::unix::fs::symlink;

use crate::common::*;

/// Writes a directory sysext named `name` (release file for `name`) at `rel` with
/// `usr/share/<name>/version` holding `version`.
fn dir_version(fx: &Fx, rel: &str, name: &str, version: &str) {
    let d = fx.path(rel);
    write_file(
        &d.join(format!(
            "usr/lib/extension-release.d/extension-release.{name}"
        )),
        SYSEXT_RELEASE,
    );
    write_file(
        &d.join(format!("usr/share/{name}/version")),
        &format!("{version}\n"),
    );
}

/// A `~` pre-release is a valid version and sorts before its release; newer entries of
/// the wrong type (a regular file, a FIFO, a symlink to a file) and versions with `_`,
/// `+` or `,` are passed over, so the newest directory with a valid version is merged.
#[test]
fn versioned_directory_262_rules() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let v = "/var/lib/extensions/tools.v";
        dir_version(&fx, &format!("{v}/tools_1.9"), "tools", "1.9");
        dir_version(&fx, &format!("{v}/tools_2.0~rc1"), "tools", "2.0~rc1");
        // Invalid versions since 262 (valid before, and newer).
        dir_version(&fx, &format!("{v}/tools_7,1"), "tools", "7,1");
        dir_version(&fx, &format!("{v}/tools_7_1_x86"), "tools", "7_1");
        dir_version(&fx, &format!("{v}/tools_7+x"), "tools", "7+x");
        // Wrong type (not directories), newer.
        fx.write(&format!("{v}/tools_9"), "not a directory\n");
        fx.write("/var/store/tools-8", "a file\n");
        symlink("/var/store/tools-8", fx.path(&format!("{v}/tools_8"))).unwrap();
        let fifo = fx.path(&format!("{v}/tools_10"));
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();

        fx.run(&["--class=sysext", "merge"]).ok();
        assert_eq!(
            fx.read("/usr/share/tools/version").as_deref(),
            Some("2.0~rc1\n")
        );

        // The release itself is newer than its pre-release.
        fx.run(&["--class=sysext", "unmerge"]).ok();
        dir_version(&fx, &format!("{v}/tools_2.0"), "tools", "2.0");
        fx.run(&["--class=sysext", "merge"]).ok();
        assert_eq!(
            fx.read("/usr/share/tools/version").as_deref(),
            Some("2.0\n")
        );
    });
}

/// A `.v` with no entry of the right type is skipped and shadows nothing (the plain
/// extension of that name in a later search directory is used); one whose newest entry
/// has the wrong type falls back to the best entry of the right type and shadows.
#[test]
fn versioned_wrong_type_falls_back_and_shadows() {
    ns_test(|base| {
        let fx = Fx::new(base);
        // "img.raw.v": img_3.raw is a directory (wrong type for a .raw pick) and
        // img_2.raw.txt has no .raw suffix: no usable entry.
        fx.write("/etc/extensions/img.raw.v/img_2.raw.txt", "x\n");
        dir_version(&fx, "/etc/extensions/img.raw.v/img_3.raw", "img", "3");
        // Plain directory sysext "img" in a later search dir: used, as img.raw.v has no
        // entry of the right type and so shadows nothing.
        dir_version(&fx, "/var/lib/extensions/img", "img", "plain");
        // "only.v" with only a regular file: skipped, the plain "only" is used.
        fx.write("/etc/extensions/only.v/only_5", "x\n");
        dir_version(&fx, "/var/lib/extensions/only", "only", "plain");
        // "pick.v": the directory pick_1 wins over the newer file pick_2 and shadows the
        // plain "pick" in a later search dir.
        fx.write("/etc/extensions/pick.v/pick_2", "x\n");
        dir_version(&fx, "/etc/extensions/pick.v/pick_1", "pick", "1");
        dir_version(&fx, "/var/lib/extensions/pick", "pick", "plain");

        fx.run(&["--class=sysext", "merge"]).ok();
        assert_eq!(
            fx.read("/usr/share/img/version").as_deref(),
            Some("plain\n")
        );
        assert_eq!(
            fx.read("/usr/share/only/version").as_deref(),
            Some("plain\n")
        );
        assert_eq!(fx.read("/usr/share/pick/version").as_deref(), Some("1\n"));
        assert_eq!(
            fx.read("/usr/.systemd-sysext/extensions").as_deref(),
            Some("img\nonly\npick\n")
        );
    });
}
