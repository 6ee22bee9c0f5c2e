//! merge / unmerge / status for sysext, confext and both; layer order; metadata files;
//! mount flags and read-only-ness; incompatible extensions; "already merged".

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::common::*;

/// sysext: merged and host files visible, /opt untouched, status, and unmerge restores
/// the hierarchy and the mount table exactly.
#[test]
fn sysext_merge_status_unmerge() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext(
            "hello",
            &[
                ("usr/bin/hello", "hello from sysext\n"),
                ("usr/share/hello/doc", "doc\n"),
            ],
        );
        let before = fx.snapshot();
        let host_dev = fx.dev("/usr");

        let r = fx.run(&["--class=sysext", "merge"]);
        r.ok();
        let root = fx.root.display();
        assert!(
            r.err.contains(&format!(
                "Using extensions 'hello'.\nMerged extensions into '{root}/usr'.\n"
            )),
            "{}",
            r.err
        );
        assert_eq!(
            fx.read("/usr/bin/hello").as_deref(),
            Some("hello from sysext\n")
        );
        assert_eq!(
            fx.read("/usr/bin/host-tool").as_deref(),
            Some("host tool\n")
        );
        assert_eq!(fx.read("/usr/share/hello/doc").as_deref(), Some("doc\n"));
        assert_eq!(fx.ls("/usr/bin"), ["hello", "host-tool"]);
        assert_eq!(fx.ls("/usr"), [".systemd-sysext", "bin", "lib", "share"]);
        let ov = fx.overlay_at("/usr");
        assert_eq!(ov.source, "sysext");
        assert_ne!(fx.dev("/usr"), host_dev);
        // hello ships nothing in /opt: /opt is not mounted over.
        assert!(fx.mounts_at("/opt").is_empty());
        assert_eq!(workspace_leftovers(), Vec::<String>::new());

        let s = fx.run(&["--class=sysext", "status", "--json=short"]);
        s.ok();
        assert_eq!(
            mask_since(s.out.trim_end()),
            r#"[{"hierarchy":"/opt","extensions":[],"since":null,"class":"sysext"},{"hierarchy":"/usr","extensions":["hello"],"since":N,"class":"sysext"}]"#
        );

        let u = fx.run(&["--class=sysext", "unmerge"]);
        u.ok();
        assert!(
            u.err.contains(&format!("Unmerged '{root}/usr'.")),
            "{}",
            u.err
        );
        assert_eq!(fx.snapshot(), before);
        assert_eq!(fx.dev("/usr"), host_dev);
        assert_eq!(fx.ls("/usr"), ["bin"]);
        assert_eq!(fx.ls("/usr/bin"), ["host-tool"]);
        assert_eq!(fx.read("/usr/bin/hello"), None);
        assert_eq!(workspace_leftovers(), Vec::<String>::new());

        let s = fx.run(&["--class=sysext", "status", "--json=short"]);
        s.ok();
        assert_eq!(
            s.out.trim_end(),
            r#"[{"hierarchy":"/opt","extensions":[],"since":null,"class":"sysext"},{"hierarchy":"/usr","extensions":[],"since":null,"class":"sysext"}]"#
        );
    });
}

/// confext: /etc gets the extension's files next to the host's; unmerge restores.
#[test]
fn confext_merge_status_unmerge() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.confext(
            "app",
            &[("etc/app.conf", "answer=42\n"), ("etc/app.d/x.conf", "x\n")],
        );
        let before = fx.snapshot();
        let host_dev = fx.dev("/etc");
        fx.run(&["--class=confext", "merge"]).ok();
        assert_eq!(fx.read("/etc/app.conf").as_deref(), Some("answer=42\n"));
        assert_eq!(fx.read("/etc/app.d/x.conf").as_deref(), Some("x\n"));
        assert_eq!(fx.read("/etc/host.conf").as_deref(), Some("host conf\n"));
        assert_eq!(
            fx.read("/etc/os-release").as_deref(),
            Some("ID=debian\nVERSION_ID=12\nSYSEXT_LEVEL=1.0\n")
        );
        assert_eq!(fx.overlay_at("/etc").source, "confext");
        assert!(fx.mounts_at("/usr").is_empty());
        assert_ne!(fx.dev("/etc"), host_dev);

        let s = fx.run(&["--class=confext", "status", "--json=short"]);
        s.ok();
        assert_eq!(
            mask_since(s.out.trim_end()),
            r#"[{"hierarchy":"/etc","extensions":["app"],"since":N,"class":"confext"}]"#
        );

        fx.run(&["--class=confext", "unmerge"]).ok();
        assert_eq!(fx.snapshot(), before);
        assert_eq!(fx.read("/etc/app.conf"), None);
        assert_eq!(fx.ls("/etc"), ["host.conf", "os-release"]);
        assert_eq!(fx.dev("/etc"), host_dev);
    });
}

/// No `--class`: both classes are merged (confext first), status shows both, unmerge
/// removes both.
#[test]
fn both_classes_by_default() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("tool", &[("usr/bin/tool", "tool\n")]);
        fx.confext("conf", &[("etc/tool.conf", "conf\n")]);
        let before = fx.snapshot();
        let r = fx.run(&["merge"]);
        r.ok();
        let root = fx.root.display();
        assert!(
            r.err.contains(&format!(
                "Using extensions 'conf'.\nMerged extensions into '{root}/etc'.\nUsing extensions 'tool'.\nMerged extensions into '{root}/usr'.\n"
            )),
            "{}",
            r.err
        );
        assert_eq!(fx.read("/usr/bin/tool").as_deref(), Some("tool\n"));
        assert_eq!(fx.read("/etc/tool.conf").as_deref(), Some("conf\n"));
        assert_eq!(fx.overlay_at("/usr").source, "sysext");
        assert_eq!(fx.overlay_at("/etc").source, "confext");

        let s = fx.run(&["status", "--json=short"]);
        s.ok();
        assert_eq!(
            mask_since(s.out.trim_end()),
            r#"[{"hierarchy":"/etc","extensions":["conf"],"since":N,"class":"confext"},{"hierarchy":"/opt","extensions":[],"since":null,"class":"sysext"},{"hierarchy":"/usr","extensions":["tool"],"since":N,"class":"sysext"}]"#
        );
        let t = fx.run(&["status", "--no-legend"]);
        t.ok();
        let rows: Vec<Vec<&str>> = t
            .out
            .lines()
            .map(|l| l.split_whitespace().take(3).collect())
            .collect();
        assert_eq!(
            rows,
            [
                ["/etc", "confext", "conf"],
                ["/opt", "sysext", "none"],
                ["/usr", "sysext", "tool"]
            ]
        );

        fx.run(&["unmerge"]).ok();
        assert_eq!(fx.snapshot(), before);
        assert_eq!(fx.read("/usr/bin/tool"), None);
        assert_eq!(fx.read("/etc/tool.conf"), None);
    });
}

/// status' `since` is the merge time (the merged root's mtime).
#[test]
fn status_since_is_merge_time() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        // The host /usr is old: a wrong `since` taken from it would show.
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        fs::File::open(fx.path("/usr"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let t0 = now_usec();
        fx.run(&["--class=sysext", "merge"]).ok();
        let t1 = now_usec();
        let s = fx.run(&["--class=sysext", "status", "--json=short"]);
        s.ok();
        let i = s.out.rfind("\"since\":").expect("since") + "\"since\":".len();
        let since: u64 = s.out[i..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect::<String>()
            .parse()
            .expect("since is a number for /usr");
        // Coarse file-system clocks may lag the precise clock by a tick.
        assert!(
            since + 1_000_000 >= t0 && since <= t1 + 1_000_000,
            "since {since} not within [{t0}, {t1}]"
        );
    });
}

/// unmerge with nothing merged succeeds and changes nothing.
#[test]
fn unmerge_nothing_merged() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        let before = fx.snapshot();
        let r = fx.run(&["unmerge"]);
        r.ok();
        assert!(r
            .err
            .contains("No confext extensions merged, nothing to unmerge."));
        assert!(r
            .err
            .contains("No sysext extensions merged, nothing to unmerge."));
        assert_eq!(fx.snapshot(), before);
    });
}

/// Two extensions ship the same file: the one whose name sorts last is on top.
#[test]
fn layer_order_last_name_wins() {
    ns_test(|base| {
        let fx = Fx::new(base);
        // Created in the "wrong" order on purpose.
        fx.sysext("b", &[("usr/share/same", "from b\n")]);
        fx.sysext("a", &[("usr/share/same", "from a\n")]);
        fx.sysext("foo-10", &[("usr/share/foo", "foo-10\n")]);
        fx.sysext("foo-2", &[("usr/share/foo", "foo-2\n")]);
        fx.confext("c-9", &[("etc/same.conf", "c-9\n")]);
        fx.confext("c-10", &[("etc/same.conf", "c-10\n")]);
        fx.run(&["merge"]).ok();
        assert_eq!(fx.read("/usr/share/same").as_deref(), Some("from b\n"));
        // Version order, not byte order: foo-10 > foo-2.
        assert_eq!(fx.read("/usr/share/foo").as_deref(), Some("foo-10\n"));
        assert_eq!(fx.read("/etc/same.conf").as_deref(), Some("c-10\n"));
        assert_eq!(
            fx.read("/usr/.systemd-sysext/extensions").as_deref(),
            Some("a\nb\nfoo-2\nfoo-10\n")
        );
        assert_eq!(
            fx.read("/etc/.systemd-confext/confexts").as_deref(),
            Some("c-9\nc-10\n")
        );
    });
}

/// A `NAME.v/` directory: the newest version is merged, under the name NAME.
#[test]
fn versioned_directory_uses_newest() {
    ns_test(|base| {
        let fx = Fx::new(base);
        for v in ["1.9", "1.10", "1.2"] {
            let d = fx.path(&format!("/var/lib/extensions/tools.v/tools_{v}"));
            write_file(
                &d.join("usr/lib/extension-release.d/extension-release.tools"),
                SYSEXT_RELEASE,
            );
            write_file(&d.join("usr/share/tools/version"), &format!("{v}\n"));
            write_file(&d.join(format!("usr/share/tools/only-{v}")), "x\n");
        }
        fx.run(&["--class=sysext", "merge"]).ok();
        assert_eq!(
            fx.read("/usr/share/tools/version").as_deref(),
            Some("1.10\n")
        );
        // Only the picked version is a layer.
        assert_eq!(fx.ls("/usr/share/tools"), ["only-1.10", "version"]);
        assert_eq!(
            fx.read("/usr/.systemd-sysext/extensions").as_deref(),
            Some("tools\n")
        );
    });
}

/// `extensions` lists the accepted names in version order, `dev` is the overlay's
/// st_dev, both byte for byte; no `work_dir` in read-only mode.
#[test]
fn metadata_files_byte_for_byte() {
    ns_test(|base| {
        let fx = Fx::new(base);
        for n in ["foo-10", "b", "foo-2", "a"] {
            fx.sysext(n, &[(&format!("usr/share/{n}"), "x\n")]);
        }
        fx.run(&["--class=sysext", "merge"]).ok();
        let ext = fs::read(fx.path("/usr/.systemd-sysext/extensions")).unwrap();
        assert_eq!(ext, b"a\nb\nfoo-2\nfoo-10\n");
        let dev = fs::read(fx.path("/usr/.systemd-sysext/dev")).unwrap();
        let want = format!("{}\n", devnum(fx.dev("/usr")));
        assert_eq!(String::from_utf8(dev).unwrap(), want);
        // The same device as the kernel reports for the mount.
        assert_eq!(format!("{}\n", fx.overlay_at("/usr").majmin), want);
        let files = fx.ls("/usr/.systemd-sysext");
        assert!(
            files.contains(&"dev".to_string()) && files.contains(&"extensions".to_string()),
            "{files:?}"
        );
        assert!(!files.contains(&"work_dir".to_string()), "{files:?}");
    });
}

/// confext metadata lives in `.systemd-confext/confexts`, not in `.systemd-sysext`.
#[test]
fn confext_metadata_files() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.confext("zz", &[("etc/zz.conf", "z\n")]);
        fx.confext("aa-1", &[("etc/aa.conf", "a\n")]);
        fx.run(&["--class=confext", "merge"]).ok();
        assert_eq!(
            fs::read(fx.path("/etc/.systemd-confext/confexts")).unwrap(),
            b"aa-1\nzz\n"
        );
        assert_eq!(
            fx.read("/etc/.systemd-confext/dev"),
            Some(format!("{}\n", devnum(fx.dev("/etc"))))
        );
        assert!(!fx.path("/etc/.systemd-sysext").exists());
        assert!(!fx.path("/etc/.systemd-confext/extensions").exists());
    });
}

/// The list is global: an extension that ships only /usr still appears in /opt's
/// list when /opt is merged (for another extension).
#[test]
fn usr_only_extension_listed_in_opt() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("usronly", &[("usr/share/u", "u\n")]);
        fx.sysext("optonly", &[("opt/o/file", "o\n")]);
        fx.run(&["--class=sysext", "merge"]).ok();
        let list = "optonly\nusronly\n";
        assert_eq!(
            fx.read("/usr/.systemd-sysext/extensions").as_deref(),
            Some(list)
        );
        assert_eq!(
            fx.read("/opt/.systemd-sysext/extensions").as_deref(),
            Some(list)
        );
        assert_eq!(fx.read("/opt/o/file").as_deref(), Some("o\n"));
        assert_eq!(fx.ls("/opt"), [".systemd-sysext", "o"]);
        assert_eq!(
            fx.read("/opt/.systemd-sysext/dev"),
            Some(format!("{}\n", devnum(fx.dev("/opt"))))
        );
        fx.overlay_at("/opt");
        fx.overlay_at("/usr");
    });
}

/// A hierarchy no extension touches is not mounted at all and gets no metadata.
#[test]
fn untouched_hierarchy_not_mounted() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.write("/opt/host-opt", "host opt\n");
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        let opt_dev = fx.dev("/opt");
        fx.run(&["--class=sysext", "merge"]).ok();
        assert!(fx.mounts_at("/opt").is_empty());
        assert_eq!(fx.dev("/opt"), opt_dev);
        assert_eq!(fx.ls("/opt"), ["host-opt"]);
        fx.overlay_at("/usr");
        // Exactly one mount under the fixture: /usr.
        assert_eq!(fx.snapshot().len(), 1, "{:#?}", fx.snapshot());
    });
}

/// A merged hierarchy is read-only: creating or changing files fails with EROFS.
#[test]
fn merged_hierarchies_are_read_only() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/bin/a", "a\n")]);
        fx.confext("c", &[("etc/c.conf", "c\n")]);
        fx.run(&["merge"]).ok();
        assert_eq!(fx.try_create("/usr/new-file"), Err(libc::EROFS));
        assert_eq!(fx.try_create("/usr/bin/a"), Err(libc::EROFS));
        assert_eq!(fx.try_create("/usr/bin/host-tool"), Err(libc::EROFS));
        assert_eq!(
            fs::create_dir(fx.path("/usr/newdir"))
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EROFS)
        );
        assert_eq!(fx.try_create("/etc/new.conf"), Err(libc::EROFS));
        assert_eq!(fx.try_create("/usr/.systemd-sysext/x"), Err(libc::EROFS));
        // Host files were not changed through the overlay.
        assert_eq!(
            fx.read("/usr/bin/host-tool").as_deref(),
            Some("host tool\n")
        );
        // The fixture's other directories are still writable (it is the overlay, not
        // the whole root, that is read-only).
        assert_eq!(fx.try_create("/var/probe"), Ok(()));
    });
}

/// Mount flags: sysext `ro,nodev`; confext `ro,nosuid,nodev,noexec`; the overlay's
/// source names the class.
#[test]
fn mount_flags_per_class() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/bin/a", "a\n")]);
        fx.confext("c", &[("etc/c.conf", "c\n")]);
        fx.run(&["merge"]).ok();
        let s = fx.overlay_at("/usr");
        let flags = |m: &Mount| {
            ["ro", "nodev", "nosuid", "noexec"]
                .iter()
                .filter(|o| m.has(o))
                .copied()
                .collect::<Vec<_>>()
        };
        assert_eq!(flags(&s), ["ro", "nodev"], "{s:?}");
        assert!(s.has_super("ro"), "{s:?}");
        let c = fx.overlay_at("/etc");
        assert_eq!(flags(&c), ["ro", "nodev", "nosuid", "noexec"], "{c:?}");
        assert_eq!(
            (s.source.as_str(), c.source.as_str()),
            ("sysext", "confext")
        );
    });
}

fn write_script(path: &std::path::Path) {
    write_file(path, "#!/bin/sh\necho ran\n");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// `--noexec=yes` adds noexec to sysext (and executing fails with EACCES);
/// without it, programs in a sysext run. `--noexec=no` lifts confext's noexec.
#[test]
fn noexec_option() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let ext = fx.sysext("a", &[]);
        write_script(&ext.join("usr/bin/prog"));
        let prog = fx.path("/usr/bin/prog");

        fx.run(&["--class=sysext", "merge"]).ok();
        assert!(!fx.overlay_at("/usr").has("noexec"));
        let out = Command::new(&prog).output().expect("exec from a sysext");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
        fx.run(&["--class=sysext", "unmerge"]).ok();

        fx.run(&["--class=sysext", "--noexec=yes", "merge"]).ok();
        let m = fx.overlay_at("/usr");
        assert!(
            m.has("noexec") && m.has("nodev") && !m.has("nosuid"),
            "{m:?}"
        );
        let e = Command::new(&prog).output().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EACCES));
        fx.run(&["--class=sysext", "unmerge"]).ok();

        fx.confext("c", &[("etc/c.conf", "c\n")]);
        fx.run(&["--class=confext", "--noexec=no", "merge"]).ok();
        let m = fx.overlay_at("/etc");
        assert!(
            !m.has("noexec") && m.has("nosuid") && m.has("nodev") && m.has("ro"),
            "{m:?}"
        );
    });
}

/// Incompatible extensions (wrong ID, wrong SYSEXT_LEVEL, initrd scope, no release
/// file) are skipped, the merge still succeeds with the compatible one.
#[test]
fn incompatible_extensions_skipped() {
    ns_test(|base| {
        let fx = Fx::new(base);
        add_incompatible_set(&fx);
        let r = fx.run(&["--class=sysext", "merge"]);
        r.ok();
        assert!(r.err.contains("Using extensions 'good'."), "{}", r.err);
        assert_eq!(
            fx.read("/usr/.systemd-sysext/extensions").as_deref(),
            Some("good\n")
        );
        assert_eq!(fx.ls("/usr/bin"), ["good", "host-tool"]);

        // The reasons, from the plan.
        let opts = extmerge::options::Options {
            root: fx.root.clone(),
            ..Default::default()
        };
        let p = crate::common::plan_of(&opts, extmerge::format::class::Class::Sysext).unwrap();
        let verdicts: Vec<(String, Option<String>)> = p
            .candidates
            .iter()
            .map(|c| {
                (
                    c.image.name.clone(),
                    match &c.verdict {
                        extmerge::inspect::release::Verdict::Match => None,
                        extmerge::inspect::release::Verdict::Mismatch(r) => Some(r.clone()),
                        v => panic!("{}: unexpected verdict {v:?}", c.image.name),
                    },
                )
            })
            .collect();
        let want: [(&str, Option<&str>); 5] = [
            ("good", None),
            ("initrd-only", Some("SYSEXT_SCOPE=initrd")),
            ("no-release", Some("extension-release.no-release")),
            ("wrong-id", Some("ID=fedora does not match host ID=debian")),
            (
                "wrong-level",
                Some("SYSEXT_LEVEL=2.0 does not match host SYSEXT_LEVEL=1.0"),
            ),
        ];
        assert_eq!(verdicts.len(), want.len(), "{verdicts:?}");
        for ((name, got), (wname, wreason)) in verdicts.iter().zip(want) {
            assert_eq!(name, wname);
            match (got, wreason) {
                (None, None) => {}
                (Some(g), Some(w)) => assert!(g.contains(w), "{name}: {g:?} lacks {w:?}"),
                _ => panic!("{name}: verdict {got:?}, expected {wreason:?}"),
            }
        }
        assert_eq!(p.extensions, ["good"]);
    });
}

fn add_incompatible_set(fx: &Fx) {
    fx.sysext("good", &[("usr/bin/good", "good\n")]);
    fx.sysext_release(
        "wrong-id",
        Some("ID=fedora\nVERSION_ID=40\n"),
        &[("usr/bin/wrong-id", "x\n")],
    );
    fx.sysext_release(
        "wrong-level",
        Some("ID=debian\nSYSEXT_LEVEL=2.0\n"),
        &[("usr/bin/wrong-level", "x\n")],
    );
    fx.sysext_release(
        "initrd-only",
        Some("ID=debian\nSYSEXT_LEVEL=1.0\nSYSEXT_SCOPE=initrd\n"),
        &[("usr/bin/initrd-only", "x\n")],
    );
    fx.sysext_release("no-release", None, &[("usr/bin/no-release", "x\n")]);
}

/// `--force` merges the incompatible ones too.
#[test]
fn force_merges_incompatible() {
    ns_test(|base| {
        let fx = Fx::new(base);
        add_incompatible_set(&fx);
        fx.run(&["--class=sysext", "--force", "merge"]).ok();
        assert_eq!(
            fx.read("/usr/.systemd-sysext/extensions").as_deref(),
            Some("good\ninitrd-only\nno-release\nwrong-id\nwrong-level\n")
        );
        assert_eq!(
            fx.ls("/usr/bin"),
            [
                "good",
                "host-tool",
                "initrd-only",
                "no-release",
                "wrong-id",
                "wrong-level"
            ]
        );
    });
}

/// Only incompatible extensions: exit 0, nothing mounted, the count is reported.
#[test]
fn nothing_compatible_is_not_an_error() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext_release(
            "wrong-id",
            Some("ID=fedora\nVERSION_ID=40\n"),
            &[("usr/bin/x", "x\n")],
        );
        fx.sysext_release("no-release", None, &[("usr/bin/y", "y\n")]);
        let before = fx.snapshot();
        let r = fx.run(&["--class=sysext", "merge"]);
        r.ok();
        assert!(
            r.err
                .contains("No suitable extensions found (2 ignored due to incompatible image(s))."),
            "{}",
            r.err
        );
        assert_eq!(fx.snapshot(), before);
        let r = fx.run(&["--class=confext", "merge"]);
        r.ok();
        assert!(r.err.contains("No extensions found."), "{}", r.err);
        assert_eq!(fx.snapshot(), before);
    });
}

/// merge never stacks: a second merge fails with exit 1 and "already merged" and
/// leaves the mount table as it was.
#[test]
fn merge_twice_fails() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        fx.confext("c", &[("etc/c.conf", "c\n")]);
        fx.run(&["merge"]).ok();
        let after_first = fx.snapshot();
        let r = fx.run(&["--class=sysext", "merge"]);
        r.fails_with("already merged");
        assert!(
            r.err.contains(&format!(
                "{}/usr: hierarchy is already merged",
                fx.root.display()
            )),
            "{}",
            r.err
        );
        assert_eq!(fx.snapshot(), after_first);
        fx.run(&["merge"]).fails_with("already merged");
        assert_eq!(fx.snapshot(), after_first);
        assert_eq!(workspace_leftovers(), Vec::<String>::new());
    });
}

/// Twenty extensions (more layers than fit in one 256-byte `lowerdir=` string of
/// `/proc/self/fd/N` paths) merge with the kernel's default layer handling.
#[test]
fn twenty_extensions() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let mut want = vec!["host-tool".to_string()];
        for i in 1..=20 {
            fx.sysext(&format!("ext{i}"), &[(&format!("usr/bin/e{i}"), "x\n")]);
            want.push(format!("e{i}"));
        }
        want.sort();
        fx.run(&["--class=sysext", "merge"]).ok();
        assert_eq!(fx.ls("/usr/bin"), want);
        let list = fx.read("/usr/.systemd-sysext/extensions").unwrap();
        assert_eq!(list.lines().count(), 20);
        assert!(list.starts_with("ext1\next2\next3\n") && list.ends_with("ext19\next20\n"));
    });
}

/// The same with the layers given as one `lowerdir` string (what kernels before 6.8
/// support, 255 bytes through fsconfig): systemd's mount(2) takes a page of options, so
/// 20 layers must still work (found failing; fixed by a mount(2) fallback).
#[test]
fn twenty_extensions_joined_layers() {
    ns_test(|base| {
        let fx = Fx::new(base);
        for i in 1..=20 {
            fx.sysext(&format!("ext{i}"), &[(&format!("usr/bin/e{i}"), "x\n")]);
        }
        fx.run_env(
            &["--class=sysext", "merge"],
            &[("EXTMERGE_LAYERS", "joined")],
        )
        .ok();
        assert_eq!(fx.ls("/usr/bin").len(), 21);
    });
}

/// A file system mounted below a hierarchy (here a tmpfs on /usr/local) stays visible
/// in the merged hierarchy: systemd moves such submounts onto the new overlay (B.2.1
/// steps 10–11, B.10 quirk 4) and back at unmerge.
#[test]
fn submount_under_hierarchy_stays_visible() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        let local = fx.path("/usr/local");
        fs::create_dir(&local).unwrap();
        mount_tmpfs(&local, c"sub");
        fx.write("/usr/local/marker", "submount\n");
        fx.run(&["--class=sysext", "merge"]).ok();
        assert_eq!(fx.read("/usr/share/a").as_deref(), Some("a\n"));
        assert_eq!(
            fx.read("/usr/local/marker").as_deref(),
            Some("submount\n"),
            "the /usr/local mount is hidden by the merge:\n{}",
            fx.snapshot().join("\n")
        );
        fx.run(&["--class=sysext", "unmerge"]).ok();
        assert_eq!(fx.read("/usr/local/marker").as_deref(), Some("submount\n"));
    });
}
