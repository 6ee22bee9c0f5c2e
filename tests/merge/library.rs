//! The library API where the plan value matters: layer order, flags, mutable layout,
//! and merge/unmerge outcomes.

use std::path::PathBuf;

use extmerge::format::class::Class;
use extmerge::options::{MutableMode, Options};
use extmerge::plan::{MountFlags, Upper};

use crate::common::*;

fn opts(fx: &Fx) -> Options {
    Options {
        root: fx.root.clone(),
        hierarchies: Some(vec!["/usr".into(), "/opt".into()]),
        no_reload: true,
        ..Default::default()
    }
}

/// Layers are topmost first (highest version first), the host is the bottom layer,
/// hierarchies no extension touches are listed as untouched; class flags.
#[test]
fn plan_layers_and_flags() {
    ns_test(|base| {
        let fx = Fx::new(base);
        for n in ["foo-10", "a", "foo-2"] {
            fx.sysext(n, &[(&format!("usr/share/{n}"), "x\n")]);
        }
        fx.sysext("opt-only", &[("opt/o", "o\n")]);
        fx.sysext("empty-usr", &[]); // ships only its release file under usr/lib
        fx.confext("c", &[("etc/c", "c\n")]);
        let p = plan_of(&opts(&fx), Class::Sysext).unwrap();
        assert_eq!(
            p.extensions,
            ["a", "empty-usr", "foo-2", "foo-10", "opt-only"]
        );
        assert_eq!(p.hierarchies.len(), 2);
        let usr = &p.hierarchies[0];
        assert_eq!(usr.hierarchy, "/usr");
        let names: Vec<&str> = usr.layers.iter().map(|l| l.name.as_str()).collect();
        // Every sysext's /usr holds at least its release file: all are /usr layers.
        assert_eq!(names, ["opt-only", "foo-10", "foo-2", "empty-usr", "a"]);
        assert_eq!(
            usr.layers[1].image_path,
            PathBuf::from("/var/lib/extensions/foo-10")
        );
        assert!(usr.host_lower && usr.host_exists);
        assert_eq!(usr.mode, 0o755);
        assert_eq!((&usr.upper, &usr.import), (&None, &None));
        assert_eq!(
            usr.flags,
            MountFlags {
                read_only: true,
                nodev: true,
                nosuid: false,
                noexec: false
            }
        );
        let opt = &p.hierarchies[1];
        assert_eq!(opt.hierarchy, "/opt");
        assert_eq!(opt.layers.len(), 1);
        assert_eq!(opt.layers[0].name, "opt-only");
        assert!(!opt.host_lower, "the host's /opt is empty");
        assert!(opt.host_exists);
        assert_eq!(p.untouched, Vec::<String>::new());

        let c = plan_of(
            &Options {
                hierarchies: None,
                ..opts(&fx)
            },
            Class::Confext,
        )
        .unwrap();
        assert_eq!(c.hierarchies.len(), 1);
        assert_eq!(c.hierarchies[0].hierarchy, "/etc");
        assert_eq!(
            c.hierarchies[0].flags,
            MountFlags {
                read_only: true,
                nodev: true,
                nosuid: true,
                noexec: true
            }
        );
        // Planning changes nothing.
        assert_eq!(fx.snapshot(), Vec::<String>::new());
    });
}

/// A hierarchy missing in the root: planned with `host_exists = false`, created (0755)
/// by the merge, removed from nothing at unmerge (the directory stays, as in systemd).
#[test]
fn missing_hierarchy_is_created() {
    ns_test(|base| {
        let fx = Fx::new(base);
        std::fs::remove_dir(fx.path("/opt")).unwrap();
        fx.sysext("o", &[("opt/o/file", "o\n")]);
        let p = plan_of(&opts(&fx), Class::Sysext).unwrap();
        assert_eq!(p.hierarchies.len(), 2);
        let opt = &p.hierarchies[1];
        assert_eq!(opt.hierarchy, "/opt");
        assert!(!opt.host_exists && !opt.host_lower);
        assert_eq!(opt.mode, 0o755);
        assert_eq!(p.untouched, Vec::<String>::new());
        fx.run(&["--class=sysext", "merge"]).ok();
        assert_eq!(fx.read("/opt/o/file").as_deref(), Some("o\n"));
        assert_eq!(mode_of(&fx.path("/opt")), 0o755);
        fx.run(&["--class=sysext", "unmerge"]).ok();
        assert_eq!(fx.ls("/opt"), Vec::<String>::new());
    });
}

/// The mutable layout per mode, as planned.
#[test]
fn plan_mutable_layout() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        let with = |m: MutableMode| {
            plan_of(
                &Options {
                    mutable: m,
                    hierarchies: Some(vec!["/usr".into()]),
                    ..opts(&fx)
                },
                Class::Sysext,
            )
            .unwrap()
            .hierarchies
            .remove(0)
        };
        let yes = with(MutableMode::Yes);
        assert_eq!(
            yes.upper,
            Some(Upper::Persistent {
                upper: PathBuf::from("/var/lib/extensions.mutable/usr"),
                work: PathBuf::from("/var/lib/extensions.mutable/.systemd-usr-workdir"),
                is_hierarchy: false,
            })
        );
        assert!(!yes.flags.read_only && yes.host_lower);
        // auto without the dir: read-only.
        let auto = with(MutableMode::Auto);
        assert_eq!(auto.upper, None);
        assert!(auto.flags.read_only);
        let imp = with(MutableMode::Import);
        assert_eq!(
            (imp.upper, imp.import),
            (None, None),
            "no dir to import yet"
        );
        let eph = with(MutableMode::Ephemeral);
        assert_eq!(eph.upper, Some(Upper::Ephemeral));
        assert!(!eph.flags.read_only);

        write_file(&fx.path("/var/lib/extensions.mutable/usr/f"), "f\n");
        let imp = with(MutableMode::Import);
        assert_eq!(imp.upper, None);
        assert_eq!(
            imp.import,
            Some(PathBuf::from("/var/lib/extensions.mutable/usr"))
        );
        assert!(imp.flags.read_only);
        let ei = with(MutableMode::EphemeralImport);
        assert_eq!(ei.upper, Some(Upper::Ephemeral));
        assert_eq!(
            ei.import,
            Some(PathBuf::from("/var/lib/extensions.mutable/usr"))
        );
        // Planning created nothing.
        assert_eq!(
            ls(&fx.path("/var/lib/extensions.mutable")),
            ["usr"],
            "no work dir made by planning"
        );
    });
}

/// merge / unmerge through the library: the outcome values.
#[test]
fn library_merge_unmerge_outcome() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("b", &[("usr/share/b", "b\n")]);
        fx.sysext("a", &[("usr/share/a", "a\n"), ("opt/a", "a\n")]);
        fx.sysext_release("bad", Some("ID=fedora\n"), &[("usr/share/bad", "x\n")]);
        let o = opts(&fx);
        let out = merge_of(&o, Class::Sysext).unwrap();
        assert_eq!(out.merged, ["/usr", "/opt"]);
        assert_eq!(out.extensions, ["a", "b"]);
        assert_eq!(out.ignored, 1);
        assert_eq!((out.unchanged, out.unmerged.len()), (false, 0));
        assert_eq!(fx.ls("/usr/share"), ["a", "b"]);
        let err = merge_of(&o, Class::Sysext).unwrap_err();
        assert_eq!(err.errno(), libc::EBUSY);
        let done = unmerge_of(&o, Class::Sysext).unwrap();
        assert_eq!(done, ["/usr", "/opt"]);
        assert_eq!(fx.snapshot(), Vec::<String>::new());
        assert_eq!(unmerge_of(&o, Class::Sysext).unwrap().len(), 0);
    });
}
