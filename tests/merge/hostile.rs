//! Hostile roots: symlinks that would lead out of the root or out of an extension if
//! they were resolved on the host. Everything must be resolved inside the root (or the
//! extension), and the host's own /usr must never be touched.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;

use crate::common::*;

/// The state of the host's real `/usr` as seen from this namespace.
#[derive(Debug, PartialEq, Eq)]
struct HostUsr {
    dev: u64,
    ino: u64,
    mounts: Vec<String>,
    metadata_dir: bool,
}

fn host_usr() -> HostUsr {
    let st = fs::metadata("/usr").expect("stat /usr");
    HostUsr {
        dev: st.dev(),
        ino: st.ino(),
        mounts: mountinfo_raw()
            .lines()
            .filter(|l| {
                Mount::parse(l).is_some_and(|m| m.point == "/usr" || m.point.starts_with("/usr/"))
            })
            .map(String::from)
            .collect(),
        metadata_dir: Path::new("/usr/.systemd-sysext").exists(),
    }
}

/// An extension directory that is a symlink to `/`: it resolves to the root itself,
/// so its /usr is the root's /usr (never the host's). That makes the extension layer
/// and the host layer the same directory, which overlayfs refuses: the merge fails
/// cleanly (nothing mounted, nothing left behind).
#[test]
fn extension_symlink_to_slash_stays_in_root() {
    ns_test(|base| {
        let fx = Fx::new(base);
        symlink("/", fx.path("/var/lib/extensions/evil")).unwrap();
        let host = host_usr();
        let before = fx.snapshot();
        let r = fx.run(&["--class=sysext", "--force", "merge"]);
        // Had it resolved to the host's /, the layer would be the host's /usr, a
        // directory different from the root's: the merge would have succeeded.
        r.fails_with("Too many levels of symbolic links");
        assert!(
            r.err.contains(&format!("{}/usr", fx.root.display())),
            "{}",
            r.err
        );
        assert_eq!(fx.snapshot(), before);
        assert_eq!(workspace_leftovers(), Vec::<String>::new());
        assert_eq!(fx.ls("/usr/bin"), ["host-tool"]);
        assert_eq!(host_usr(), host);

        // The plan shows the extension's root is the fixture root: its /usr layer is
        // there because the root has a non-empty /usr.
        let opts = extmerge::options::Options {
            root: fx.root.clone(),
            force: true,
            ..Default::default()
        };
        let p = crate::common::plan_of(&opts, extmerge::format::class::Class::Sysext).unwrap();
        assert_eq!(p.extensions, ["evil"]);
        assert_eq!(p.hierarchies.len(), 1);
        assert_eq!(p.hierarchies[0].hierarchy, "/usr");
        assert_eq!(p.untouched, ["/opt"], "the root's /opt is empty");
    });
}

/// An extension directory that is an absolute symlink to a host path: it is looked up
/// inside the root. The same path exists inside the root and on the host, with
/// different contents; only the one inside the root is merged.
#[test]
fn extension_absolute_symlink_resolves_inside_root() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let target = base.join("outside-ext");
        // On the host.
        write_file(
            &target.join("usr/lib/extension-release.d/extension-release.link"),
            SYSEXT_RELEASE,
        );
        write_file(&target.join("usr/share/outside"), "outside\n");
        // The same absolute path, inside the root.
        let inner = fx.path(&target.to_string_lossy());
        write_file(
            &inner.join("usr/lib/extension-release.d/extension-release.link"),
            SYSEXT_RELEASE,
        );
        write_file(&inner.join("usr/share/inside"), "inside\n");
        symlink(&target, fx.path("/var/lib/extensions/link")).unwrap();

        fx.run(&["--class=sysext", "merge"]).ok();
        assert_eq!(fx.ls("/usr/share"), ["inside"]);
        assert_eq!(
            fx.read("/usr/.systemd-sysext/extensions").as_deref(),
            Some("link\n")
        );
    });
}

/// A search directory that is a symlink out of the root finds nothing outside.
#[test]
fn search_dir_symlink_resolves_inside_root() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let outside = base.join("outside-exts");
        write_file(
            &outside.join("x/usr/lib/extension-release.d/extension-release.x"),
            SYSEXT_RELEASE,
        );
        write_file(&outside.join("x/usr/share/x"), "x\n");
        fs::remove_dir(fx.path("/var/lib/extensions")).unwrap();
        symlink(&outside, fx.path("/var/lib/extensions")).unwrap();
        let before = fx.snapshot();
        let r = fx.run(&["--class=sysext", "merge"]);
        r.ok();
        assert!(r.err.contains("No extensions found."), "{}", r.err);
        assert_eq!(fx.snapshot(), before);
        assert_eq!(fx.ls("/usr"), ["bin"]);
    });
}

/// The root's /usr is a symlink that, resolved on the host, is the host's /usr
/// (`../../../../usr`, or `/usr`). Inside the root it points at itself: the merge fails
/// with ELOOP and the host's /usr is untouched.
#[test]
fn hierarchy_symlink_cannot_reach_host_usr() {
    for target in [
        "../../../../usr",
        "/usr",
        "../../../../../../../../../../usr",
    ] {
        ns_test(move |base| {
            let fx = Fx::new(base);
            fx.sysext("e", &[("usr/bin/hello", "hello\n")]);
            fs::remove_dir_all(fx.path("/usr")).unwrap();
            symlink(target, fx.path("/usr")).unwrap();
            if target.starts_with("../../../../usr") {
                // On the host, the link really leads to the host's /usr.
                assert_eq!(
                    fs::canonicalize(fx.path("/usr")).unwrap(),
                    Path::new("/usr"),
                    "fixture depth changed"
                );
            }
            let host = host_usr();
            let before = fx.snapshot();
            let r = fx.run(&["--class=sysext", "merge"]);
            r.fails_with("Too many levels of symbolic links");
            assert_eq!(host_usr(), host, "{target}");
            assert!(!Path::new("/usr/bin/hello").exists());
            assert_eq!(fx.snapshot(), before, "{target}");
            assert_eq!(workspace_leftovers(), Vec::<String>::new());
            // unmerge does not follow it out either (it fails, as systemd's does on
            // a hierarchy it cannot resolve).
            fx.run(&["--class=sysext", "unmerge"])
                .fails_with("Too many levels of symbolic links");
            assert_eq!(host_usr(), host, "{target}");
        });
    }
}

/// The root's /usr is a relative symlink with too many `..` to a directory inside the
/// root: the merge happens on that directory (the root's own target), not on the host
/// path the link names.
#[test]
fn hierarchy_symlink_merges_on_target_inside_root() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("e", &[("usr/bin/hello", "hello\n")]);
        fs::create_dir(fx.path("/elsewhere")).unwrap();
        fs::rename(fx.path("/usr"), fx.path("/elsewhere/usr")).unwrap();
        symlink("../../../../elsewhere/usr", fx.path("/usr")).unwrap();
        let host = host_usr();
        fx.run(&["--class=sysext", "merge"]).ok();
        let m = fx.overlay_at("/elsewhere/usr");
        assert_eq!(m.source, "sysext");
        assert_eq!(fx.snapshot().len(), 1, "{:#?}", fx.snapshot());
        assert_eq!(fx.ls("/elsewhere/usr/bin"), ["hello", "host-tool"]);
        assert_eq!(
            fx.read("/elsewhere/usr/.systemd-sysext/dev"),
            Some(format!("{}\n", devnum(fx.dev("/elsewhere/usr"))))
        );
        assert_eq!(host_usr(), host);
        let s = fx.run(&["--class=sysext", "status", "--json=short"]);
        assert_eq!(
            mask_since(s.out.trim_end()),
            r#"[{"hierarchy":"/opt","extensions":[],"since":null,"class":"sysext"},{"hierarchy":"/usr","extensions":["e"],"since":N,"class":"sysext"}]"#
        );
        fx.run(&["--class=sysext", "unmerge"]).ok();
        assert_eq!(fx.snapshot(), Vec::<String>::new());
        assert_eq!(fx.ls("/elsewhere/usr/bin"), ["host-tool"]);
    });
}

/// An extension whose `usr` is a symlink out of the extension (absolute host path, or
/// relative with many `..`): resolved inside the extension it does not exist, so the
/// extension has no release file (skipped) and, forced, contributes nothing. A valid
/// release file and a file at the outside target are never used.
#[test]
fn extension_usr_symlink_pointing_out() {
    for relative in [false, true] {
        ns_test(move |base| {
            let fx = Fx::new(base);
            let outside = base.join("outside/usr");
            write_file(
                &outside.join("lib/extension-release.d/extension-release.evil"),
                SYSEXT_RELEASE,
            );
            write_file(&outside.join("bin/leak"), "leak\n");
            let ext = fx.path("/var/lib/extensions/evil");
            fs::create_dir_all(&ext).unwrap();
            if relative {
                // evil/ is 5 levels below the root, the root 2 below base.
                symlink("../../../../../outside/usr", ext.join("usr")).unwrap();
                assert_eq!(
                    fs::canonicalize(ext.join("usr")).unwrap(),
                    fs::canonicalize(&outside).unwrap()
                );
            } else {
                symlink(&outside, ext.join("usr")).unwrap();
            }
            let before = fx.snapshot();
            let r = fx.run(&["--class=sysext", "merge"]);
            r.ok();
            assert!(
                r.err.contains(
                    "No suitable extensions found (1 ignored due to incompatible image(s))."
                ),
                "{}",
                r.err
            );
            assert_eq!(fx.snapshot(), before);
            let r = fx.run(&["--class=sysext", "--force", "merge"]);
            r.ok();
            assert_eq!(fx.snapshot(), before, "forced: nothing to merge");
            assert_eq!(fx.ls("/usr/bin"), ["host-tool"]);
        });
    }
}

/// An extension's `usr` that is an absolute symlink to a directory *inside* the
/// extension is followed there (the extension is its own root).
#[test]
fn extension_usr_symlink_rerooted_in_extension() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let ext = fx.sysext_release("e", None, &[("real-usr/bin/inside", "inside\n")]);
        write_file(
            &ext.join("real-usr/lib/extension-release.d/extension-release.e"),
            SYSEXT_RELEASE,
        );
        symlink("/real-usr", ext.join("usr")).unwrap();
        fx.run(&["--class=sysext", "merge"]).ok();
        assert_eq!(fx.ls("/usr/bin"), ["host-tool", "inside"]);
        assert_eq!(fx.read("/usr/bin/inside").as_deref(), Some("inside\n"));
    });
}

/// A mutable dir that is a symlink out of the root: never written to.
#[test]
fn mutable_dir_symlink_out_of_root_not_used() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("e", &[("usr/bin/hello", "hello\n")]);
        let outside = base.join("outside-upper");
        fs::create_dir(&outside).unwrap();
        fs::create_dir_all(fx.path("/var/lib/extensions.mutable")).unwrap();
        symlink(&outside, fx.path("/var/lib/extensions.mutable/usr")).unwrap();
        let before = fx.snapshot();
        let r = fx.run(&["--class=sysext", "--mutable=yes", "merge"]);
        r.fails_with("var/lib/extensions.mutable/usr");
        assert_eq!(fx.snapshot(), before);
        assert_eq!(ls(&outside), Vec::<String>::new());
        assert_eq!(workspace_leftovers(), Vec::<String>::new());
    });
}

/// An extension that ships its own `usr/.systemd-sysext/` (a `work_dir` naming a host
/// directory, an extension list, a fake fingerprint) adds nothing to the metadata of
/// the merge: the metadata directory is opaque to the layers below it, so status,
/// refresh and unmerge read only what the merge wrote.
#[test]
fn extension_cannot_add_to_the_merge_metadata() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext(
            "evil",
            &[
                ("usr/share/evil", "e\n"),
                ("usr/.systemd-sysext/work_dir", "etc\n"),
                ("usr/.systemd-sysext/injected", "x\n"),
                ("usr/.systemd-sysext/extmerge-stamp", "extmerge-stamp=1\n"),
            ],
        );
        fx.run(&["--class=sysext", "merge"]).ok();
        assert_eq!(fx.read("/usr/share/evil").as_deref(), Some("e\n"));
        let meta = fx.ls("/usr/.systemd-sysext");
        assert!(meta.contains(&"dev".to_string()), "{meta:?}");
        for f in ["work_dir", "injected"] {
            assert!(!meta.contains(&f.to_string()), "{f} came through: {meta:?}");
        }
        assert_ne!(
            fx.read("/usr/.systemd-sysext/extmerge-stamp").as_deref(),
            Some("extmerge-stamp=1\n")
        );
        let r = fx.run(&["--class=sysext", "refresh"]);
        r.ok();
        assert!(r.err.contains("Skipping extension refresh"), "{}", r.err);
        fx.run(&["--class=sysext", "unmerge"]).ok();
        assert!(fx.mounts_at("/usr").is_empty());
        assert_eq!(fx.read("/etc/host.conf").as_deref(), Some("host conf\n"));
    });
}
