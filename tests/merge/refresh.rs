//! refresh: no change (mount kept), added extension (replaced, old mount gone) with both
//! replacement strategies and both layer strategies, all extensions removed (unmerged),
//! nothing merged before (merged).

use crate::common::*;

/// Nothing changed: the mount is not replaced (same mount ID, same st_dev) and stderr
/// says so.
#[test]
fn refresh_without_change_keeps_mount() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        fx.confext("c", &[("etc/c.conf", "c\n")]);
        fx.run(&["merge"]).ok();
        let (usr, etc) = (fx.overlay_at("/usr"), fx.overlay_at("/etc"));
        let (usr_dev, etc_dev) = (fx.dev("/usr"), fx.dev("/etc"));
        let before = fx.snapshot();
        let r = fx.run(&["refresh"]);
        r.ok();
        for class in ["sysext", "confext"] {
            assert!(
                r.err.contains(&format!(
                    "Skipping {class} refresh because no change was found"
                )),
                "{}",
                r.err
            );
        }
        assert!(r.err.contains("no change"));
        assert_eq!(fx.overlay_at("/usr").id, usr.id);
        assert_eq!(fx.overlay_at("/etc").id, etc.id);
        assert_eq!((fx.dev("/usr"), fx.dev("/etc")), (usr_dev, etc_dev));
        assert_eq!(fx.snapshot(), before);
        assert_eq!(workspace_leftovers(), Vec::<String>::new());
    });
}

/// `--always-refresh` replaces the mount even when nothing changed.
#[test]
fn always_refresh_replaces_unchanged_merge() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        fx.run(&["--class=sysext", "merge"]).ok();
        let old = fx.overlay_at("/usr");
        fx.run(&["--class=sysext", "--always-refresh", "refresh"])
            .ok();
        let new = fx.overlay_at("/usr");
        assert_ne!(new.id, old.id);
        assert_ne!(new.majmin, old.majmin);
        assert_eq!(fx.read("/usr/share/a").as_deref(), Some("a\n"));
    });
}

/// Merges `a`, adds `b`, refreshes with the given strategies and checks the result:
/// a new overlay (new st_dev) with both extensions, the old mount gone, exactly one
/// mount on the hierarchy, nothing left in the workspace.
fn refresh_adds_extension(prop: Prop, replace: &'static str, layers: &'static str) {
    if layers == "append" && !kernel_has_lowerdir_append() {
        eprintln!(
            "SKIP: overlayfs lowerdir+ needs Linux 6.8 ({:?})",
            kernel_version()
        );
        return;
    }
    ns_test_with(prop, move |base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        let env = [("EXTMERGE_REPLACE", replace), ("EXTMERGE_LAYERS", layers)];
        fx.run_env(&["--class=sysext", "merge"], &env).ok();
        let old = fx.overlay_at("/usr");
        let old_dev = fx.dev("/usr");
        fx.sysext("b", &[("usr/share/b", "b\n"), ("opt/b/file", "opt b\n")]);

        let r = fx.run_env(&["--class=sysext", "refresh"], &env);
        r.ok();
        assert!(r.err.contains("Using extensions 'a', 'b'."), "{}", r.err);
        let new = fx.overlay_at("/usr");
        assert_ne!(fx.dev("/usr"), old_dev, "the overlay was not replaced");
        assert_ne!(new.id, old.id);
        assert_eq!(fx.read("/usr/share/a").as_deref(), Some("a\n"));
        assert_eq!(fx.read("/usr/share/b").as_deref(), Some("b\n"));
        assert_eq!(
            fx.read("/usr/bin/host-tool").as_deref(),
            Some("host tool\n")
        );
        assert_eq!(fx.ls("/usr/share"), ["a", "b"]);
        assert_eq!(
            fx.read("/usr/.systemd-sysext/extensions").as_deref(),
            Some("a\nb\n")
        );
        assert_eq!(
            fx.read("/usr/.systemd-sysext/dev"),
            Some(format!("{}\n", devnum(fx.dev("/usr"))))
        );
        // /opt is newly merged by the refresh.
        assert_eq!(fx.read("/opt/b/file").as_deref(), Some("opt b\n"));
        fx.overlay_at("/opt");
        // The old overlay is gone everywhere, not only from /usr.
        let all = mountinfo();
        assert!(
            !all.iter().any(|m| m.id == old.id || m.majmin == old.majmin),
            "old mount still present: {:#?}",
            fx.snapshot()
        );
        // The layer strategy asked for is the one used.
        let want = if layers == "append" {
            "lowerdir+="
        } else {
            "lowerdir="
        };
        assert!(new.has_super(want), "{new:?}");
        assert_eq!(fx.snapshot().len(), 2, "{:#?}", fx.snapshot());
        assert_eq!(workspace_leftovers(), Vec::<String>::new());

        // And the result is a normal merge: unmerge takes it all off.
        fx.run(&["--class=sysext", "unmerge"]).ok();
        assert_eq!(fx.snapshot(), Vec::<String>::new());
        assert_eq!(fx.dev("/usr"), fs_dev_of_root(&fx));
    });
}

fn fs_dev_of_root(fx: &Fx) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(&fx.root).unwrap().dev()
}

#[test]
fn refresh_adds_extension_beneath_append() {
    refresh_adds_extension(Prop::Shared, "beneath", "append");
}

#[test]
fn refresh_adds_extension_beneath_joined() {
    refresh_adds_extension(Prop::Shared, "beneath", "joined");
}

#[test]
fn refresh_adds_extension_detach_append() {
    refresh_adds_extension(Prop::Shared, "detach", "append");
}

#[test]
fn refresh_adds_extension_detach_joined() {
    refresh_adds_extension(Prop::Shared, "detach", "joined");
}

/// The same with `/` private (containers; this build machine's host namespace).
#[test]
fn refresh_adds_extension_private_root_beneath() {
    refresh_adds_extension(Prop::Private, "beneath", "append");
}

#[test]
fn refresh_adds_extension_private_root_detach() {
    refresh_adds_extension(Prop::Private, "detach", "joined");
}

/// After all extensions are removed, refresh unmerges: the mount table is as before
/// the first merge.
#[test]
fn refresh_after_removing_all_unmerges() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let a = fx.sysext("a", &[("usr/share/a", "a\n")]);
        let c = fx.confext("c", &[("etc/c.conf", "c\n")]);
        let before = fx.snapshot();
        fx.run(&["merge"]).ok();
        std::fs::remove_dir_all(a).unwrap();
        std::fs::remove_dir_all(c).unwrap();
        let r = fx.run(&["refresh"]);
        r.ok();
        assert!(r.err.contains("No sysext extensions found."), "{}", r.err);
        assert!(r.err.contains("No confext extensions found."), "{}", r.err);
        assert_eq!(fx.snapshot(), before);
        assert_eq!(fx.read("/usr/share/a"), None);
        assert_eq!(fx.read("/etc/c.conf"), None);
        assert_eq!(fx.ls("/usr"), ["bin"]);
    });
}

/// A refresh that ends with zero extensions says "Unmerged" once per hierarchy it
/// takes the merge off (two sysext hierarchies and one confext here), nothing more.
#[test]
fn refresh_to_zero_extensions_logs_each_unmerge_once() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let a = fx.sysext("a", &[("usr/share/a", "a\n"), ("opt/a/file", "a\n")]);
        let c = fx.confext("c", &[("etc/c.conf", "c\n")]);
        fx.run(&["merge"]).ok();
        fx.overlay_at("/opt");
        std::fs::remove_dir_all(a).unwrap();
        std::fs::remove_dir_all(c).unwrap();
        let r = fx.run(&["refresh"]);
        r.ok();
        let root = fx.root.display();
        let unmerged: Vec<&str> = r
            .err
            .lines()
            .filter(|l| l.starts_with("Unmerged "))
            .collect();
        let mut want = vec![
            format!("Unmerged '{root}/etc'."),
            format!("Unmerged '{root}/opt'."),
            format!("Unmerged '{root}/usr'."),
        ];
        let mut got: Vec<String> = unmerged.iter().map(|l| l.to_string()).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "stderr:\n{}", r.err);
        assert_eq!(
            r.err.matches("No sysext extensions found.").count(),
            1,
            "{}",
            r.err
        );
        assert_eq!(
            r.err.matches("No confext extensions found.").count(),
            1,
            "{}",
            r.err
        );
        assert!(fx.mounts_at("/usr").is_empty() && fx.mounts_at("/opt").is_empty());
        assert!(fx.mounts_at("/etc").is_empty());
        assert_eq!(fx.read("/usr/share/a"), None);
    });
}

/// refresh with nothing merged merges (systemd's "not merged & some" case).
#[test]
fn refresh_when_not_merged_merges() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        fx.run(&["--class=sysext", "refresh"]).ok();
        assert_eq!(fx.read("/usr/share/a").as_deref(), Some("a\n"));
        assert_eq!(
            fx.read("/usr/.systemd-sysext/extensions").as_deref(),
            Some("a\n")
        );
        fx.overlay_at("/usr");
        // And with nothing installed and nothing merged it is a no-op.
        let fy = Fx::new(&base.join("second"));
        let r = fy.run(&["--class=sysext", "refresh"]);
        r.ok();
        assert!(r.err.contains("No sysext extensions found."));
        assert!(fy.mounts_at("/usr").is_empty());
    });
}

/// Removing one of two extensions: refresh drops it, and a hierarchy only it touched
/// (/opt) is unmerged.
#[test]
fn refresh_after_removing_one_extension() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        let b = fx.sysext("b", &[("usr/share/b", "b\n"), ("opt/b", "b\n")]);
        fx.run(&["--class=sysext", "merge"]).ok();
        fx.overlay_at("/opt");
        std::fs::remove_dir_all(b).unwrap();
        fx.run(&["--class=sysext", "refresh"]).ok();
        assert_eq!(fx.ls("/usr/share"), ["a"]);
        assert!(fx.mounts_at("/opt").is_empty());
        assert_eq!(
            fx.read("/usr/.systemd-sysext/extensions").as_deref(),
            Some("a\n")
        );
    });
}

/// The same with `/` private.
#[test]
fn refresh_after_removing_one_extension_private_root() {
    ns_test_with(Prop::Private, |base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        let b = fx.sysext("b", &[("usr/share/b", "b\n"), ("opt/b", "b\n")]);
        fx.run(&["--class=sysext", "merge"]).ok();
        fx.overlay_at("/opt");
        std::fs::remove_dir_all(b).unwrap();
        fx.run(&["--class=sysext", "refresh"]).ok();
        assert_eq!(fx.ls("/usr/share"), ["a"]);
        assert!(fx.mounts_at("/opt").is_empty());
        assert_eq!(
            fx.read("/usr/.systemd-sysext/extensions").as_deref(),
            Some("a\n")
        );
        assert_eq!(fx.snapshot().len(), 1, "{:#?}", fx.snapshot());
    });
}

/// The library's refresh, called from a thread with a mount namespace of its own,
/// replaces the merge in place (no unmerge + merge).
#[test]
fn library_refresh_from_thread_replaces_in_place() {
    ns_test_with(Prop::Private, |base| {
        use extmerge::class::Class;
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        let opts = extmerge::options::Options {
            root: fx.root.clone(),
            hierarchies: Some(vec!["/usr".into()]),
            no_reload: true,
            ..Default::default()
        };
        let out = extmerge::merge::merge(&opts, Class::Sysext).unwrap();
        assert_eq!(out.merged, ["/usr"]);
        let id = fx.overlay_at("/usr").id;
        let out = extmerge::merge::refresh(&opts, Class::Sysext).unwrap();
        assert!(
            out.unchanged,
            "no-change refresh replaced the merge: {out:?}"
        );
        assert_eq!(fx.overlay_at("/usr").id, id);
        fx.sysext("b", &[("usr/share/b", "b\n")]);
        let out = extmerge::merge::refresh(&opts, Class::Sysext).unwrap();
        assert_eq!(out.merged, ["/usr"]);
        assert_eq!(
            out.unmerged,
            Vec::<String>::new(),
            "refresh fell back to unmerge"
        );
        assert_eq!(fx.ls("/usr/share"), ["a", "b"]);
    });
}
