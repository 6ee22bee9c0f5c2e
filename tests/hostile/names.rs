//! Names at the length limit and names with the characters that are separators in
//! overlayfs option strings (`:` `,` `\`) or escaped in mountinfo (space, `\`, newline):
//! in extension names, in hierarchies (`SYSTEMD_SYSEXT_HIERARCHIES`, the library's
//! explicit list) and in mounts below a hierarchy. Layers are passed as
//! `/proc/self/fd/N`, so no name reaches an option string unescaped; what matters is a
//! correct merge (or a clear refusal), never a mount in the wrong place.

use std::fs;
use std::path::Path;

use crate::common::*;
use crate::util::*;

/// A path as mountinfo shows it (space, tab, newline and `\` in octal).
fn mi_escape(p: &Path) -> String {
    let mut s = String::new();
    for c in p.to_string_lossy().chars() {
        match c {
            ' ' => s.push_str("\\040"),
            '\t' => s.push_str("\\011"),
            '\n' => s.push_str("\\012"),
            '\\' => s.push_str("\\134"),
            c => s.push(c),
        }
    }
    s
}

/// Mounts (this thread's) whose mount point is `p`.
fn mounts_on(p: &Path) -> Vec<Mount> {
    let e = mi_escape(p);
    mountinfo().into_iter().filter(|m| m.point == e).collect()
}

/// Directory extension names at the length limits and with space, `:`, `,` and `\`.
/// A 237-byte name is the longest whose `extension-release.NAME` still fits in a file
/// name: it merges. A 255-byte name is valid, but its exact release file name would be
/// 273 bytes: the lookup fails with ENAMETOOLONG, which (as in systemd's
/// `open_extension_release_at`, which falls back to the directory scan only on ENOENT)
/// skips it, with that reason, even when a fallback `extension-release.long` exists;
/// `--force` merges it. The metadata and the JSON status carry the names exactly.
#[test]
fn long_and_odd_extension_names() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let n237 = format!("m{}", "x".repeat(236));
        fx.sysext(&n237, &[("usr/share/m237", "m\n")]);
        let long = format!("long_{}", "x".repeat(250));
        assert_eq!(long.len(), 255);
        let d = fx.sysext_release(&long, None, &[("usr/share/long", "long\n")]);
        write_file(
            &d.join("usr/lib/extension-release.d/extension-release.long"),
            SYSEXT_RELEASE,
        );
        let odd = r"a b:c,d\e";
        // How messages show it: its backslash escaped, as systemd's cescape does.
        let odd_shown = r"a b:c,d\\e";
        fx.sysext(odd, &[("usr/share/odd", "odd\n")]);
        let before = state(&fx);

        let p = run_t(&fx, &["--class=sysext", "plan"], 10);
        p.ok();
        assert_has(
            &p.out,
            &skip_line(
                &fx,
                &long,
                &format!(
                    "no usable extension-release: usr/lib/extension-release.d/extension-release.{long}: \
                     File name too long"
                ),
            ),
        );
        let r = run_t(&fx, &["--class=sysext", "merge"], 10);
        r.ok();
        assert_has(
            &r.err,
            &format!("Using extensions '{odd_shown}', '{n237}'."),
        );
        assert_eq!(fx.ls("/usr/share"), ["m237", "odd"]);
        assert_eq!(
            fx.read("/usr/.systemd-sysext/extensions"),
            Some(format!("{odd}\n{n237}\n"))
        );
        let s = run_t(&fx, &["--class=sysext", "status", "--json=short"], 10);
        s.ok();
        assert_has(&s.out, &format!(r#""extensions":["a b:c,d\\e","{n237}"]"#));
        run_t(&fx, &["--class=sysext", "unmerge"], 10).ok();
        assert_clean(&fx, &before, "after unmerge");

        let r = run_t(&fx, &["--class=sysext", "--force", "merge"], 10);
        r.ok();
        assert_has(
            &r.err,
            &format!("Using extensions '{odd_shown}', '{long}', '{n237}'."),
        );
        assert_eq!(fx.ls("/usr/share"), ["long", "m237", "odd"]);
        run_t(&fx, &["--class=sysext", "unmerge"], 10).ok();
        assert_clean(&fx, &before, "after unmerge");
    });
}

/// A `.raw` entry whose derived image name is 251 bytes (the entry itself is 255): its
/// verity sidecars (`<name>.roothash`, `.verity`…) would be longer than a file name may
/// be. systemd's `verity_settings_load` fails the image on any error but ENOENT
/// (here ENAMETOOLONG); extmerge fails the merge the same way, naming the file.
#[test]
fn raw_image_name_at_length_limit() {
    ns_test(|base| {
        if !Path::new("/usr/bin/mkfs.erofs").exists() {
            eprintln!("SKIP: needs mkfs.erofs");
            return;
        }
        let fx = Fx::new(base);
        let name = format!("long_{}", "y".repeat(246));
        assert_eq!(name.len(), 251);
        let tree = base.join("tree");
        write_file(
            &tree.join("usr/lib/extension-release.d/extension-release.long"),
            SYSEXT_RELEASE,
        );
        write_file(&tree.join("usr/share/raw"), "raw\n");
        let img = fx.path(&format!("/var/lib/extensions/{name}.raw"));
        let o = std::process::Command::new("mkfs.erofs")
            .args(["--quiet", "-T0", "--all-root"])
            .arg(&img)
            .arg(&tree)
            .output()
            .unwrap();
        assert!(o.status.success(), "mkfs.erofs: {o:?}");
        let before = state(&fx);

        let r = run_t(&fx, &["--class=sysext", "merge"], 20);
        r.fails_with(&format!("{}: ", img.display()));
        assert_has(&r.err, "File name too long");
        assert_has(&r.err, &format!("{name}.roothash"));
        assert_clean(&fx, &before, "failed merge");
    });
}

/// `SYSTEMD_SYSEXT_HIERARCHIES` is a `:`-separated list: `/srv/a:b,c` is `/srv/a` and
/// `b,c`, which is refused (not absolute) before anything is done.
#[test]
fn hierarchy_env_with_colon_is_refused() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("e", &[("srv/a/x", "x\n"), ("usr/share/e", "e\n")]);
        let before = state(&fx);
        let r = run_env_t(
            &fx,
            &["--class=sysext", "merge"],
            &[("SYSTEMD_SYSEXT_HIERARCHIES", "/srv/a:b,c")],
            10,
        );
        r.fails_with(
            r#"invalid hierarchy "b,c": must be an absolute, normalized path other than /"#,
        );
        assert_clean(&fx, &before, "refused merge");
        assert!(!fx.path("/srv").exists());
    });
}

/// A hierarchy listed twice in `SYSTEMD_SYSEXT_HIERARCHIES` (also as `/usr/`, `/usr//`,
/// or through a symlink in the root), or one inside another as written (`/usr:/usr/lib`),
/// is refused before anything is mounted,
/// naming the variable and both entries: listed twice, two overlays were stacked on
/// `/usr` and unmerge removed only one of them.
#[test]
fn duplicate_and_nested_hierarchies_are_refused() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("e", &[("usr/share/e", "e\n"), ("lib/e-lib", "e\n")]);
        // Aliases inside the root: the same directory, and one inside /usr.
        std::os::unix::fs::symlink("usr", fx.path("/usr2")).unwrap();
        fs::create_dir_all(fx.path("/usr/lib")).unwrap();
        std::os::unix::fs::symlink("/usr/lib", fx.path("/lib")).unwrap();
        let before = state(&fx);
        let var = "SYSTEMD_SYSEXT_HIERARCHIES";
        for (env, why) in [
            ("/usr:/usr", r#""/usr" and "/usr" are the same hierarchy"#),
            ("/usr:/usr/", r#""/usr" and "/usr/" are the same hierarchy"#),
            (
                "/opt:/usr//:/usr",
                r#""/usr//" and "/usr" are the same hierarchy"#,
            ),
            (
                "/usr:/usr/lib",
                r#""/usr/lib" is inside "/usr": hierarchies must not be nested"#,
            ),
            (
                "/usr/lib:/opt:/usr",
                r#""/usr/lib" is inside "/usr": hierarchies must not be nested"#,
            ),
            (
                "/usr:/usr2",
                r#""/usr" and "/usr2" are the same hierarchy: each may be listed only once (in the root "/usr" is "/usr" and "/usr2" is "/usr")"#,
            ),
        ] {
            for verb in ["merge", "refresh"] {
                let r = run_env_t(&fx, &["--class=sysext", verb], &[(var, env)], 10);
                r.fails_with(&format!("{var}: {why}"));
                assert_clean(&fx, &before, &format!("{verb} with {var}={env}"));
                assert!(fx.mounts_at("/usr").is_empty(), "{env}");
            }
        }
        // Nested only through a symlink (`/lib` → `/usr/lib`, like `/opt` → `usr/opt` on
        // some roots) is what systemd merges: both overlays, and unmerge takes both.
        let r = run_env_t(&fx, &["--class=sysext", "merge"], &[(var, "/usr:/lib")], 10);
        r.ok();
        assert_eq!(fx.mounts_at("/usr").len(), 1);
        assert_eq!(fx.mounts_at("/usr/lib").len(), 1);
        assert_eq!(
            fs::read_to_string(fx.path("/usr/lib/e-lib")).unwrap(),
            "e\n"
        );
        run_env_t(
            &fx,
            &["--class=sysext", "unmerge"],
            &[(var, "/usr:/lib")],
            10,
        )
        .ok();
        assert_clean(&fx, &before, "after unmerge of /usr:/lib");
        // Without the duplicate the same merge works, and unmerge leaves nothing.
        let r = run_env_t(&fx, &["--class=sysext", "merge"], &[(var, "/usr")], 10);
        r.ok();
        assert_eq!(fx.mounts_at("/usr").len(), 1);
        run_env_t(&fx, &["--class=sysext", "unmerge"], &[(var, "/usr")], 10).ok();
        assert_clean(&fx, &before, "after unmerge");
    });
}

/// What a hierarchy listed twice used to leave: two of our overlays stacked on `/usr`,
/// sharing one metadata layer whose `dev` names the upper one (made here by hand).
/// Unmerge removes both, as systemd's loops until the top mount is not its own, and
/// leaves a foreign overlay below them alone.
#[test]
fn unmerge_removes_every_stacked_overlay_of_ours() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let usr = fx.path("/usr");
        // The layers below each overlay (not the overlay below it: stacking depth).
        let host = base.join("host-usr");
        write_file(&host.join("bin/host-tool"), "host tool\n");
        let lower =
            |top: &std::path::Path| format!("lowerdir={}:{}", top.display(), host.display());
        // A foreign overlay at the bottom: not ours, must stay.
        let foreign = base.join("foreign");
        write_file(&foreign.join("foreign-file"), "f\n");
        mount("other", &usr, "overlay", libc::MS_RDONLY, &lower(&foreign));
        let before = state(&fx);
        let meta = base.join("meta");
        write_file(&meta.join(".systemd-sysext/extensions"), "e\n");
        // Two overlays of the old stacking on top of it, with one metadata layer.
        mount("sysext", &usr, "overlay", libc::MS_RDONLY, &lower(&meta));
        mount("sysext", &usr, "overlay", libc::MS_RDONLY, &lower(&meta));
        let top_dev = fx.dev("/usr");
        write_file(&meta.join(".systemd-sysext/dev"), &devnum(top_dev));
        assert_eq!(fx.mounts_at("/usr").len(), 3);

        let s = run_t(&fx, &["--class=sysext", "status", "--json=short"], 10);
        s.ok();
        assert_has(&s.out, r#""hierarchy":"/usr","extensions":["e"]"#);
        let u = run_t(&fx, &["--class=sysext", "unmerge"], 10);
        u.ok();
        assert_eq!(
            u.err.matches("Unmerged ").count(),
            2,
            "two overlays unmerged:\n{}",
            u.err
        );
        let left = fx.mounts_at("/usr");
        assert_eq!(left.len(), 1, "{left:#?}");
        assert_eq!(left[0].source, "other");
        assert_clean(&fx, &before, "after unmerge");
        assert_eq!(fx.ls("/usr"), ["bin", "foreign-file"]);
        // Nothing of ours is left to unmerge.
        let again = run_t(&fx, &["--class=sysext", "unmerge"], 10);
        again.ok();
        assert!(!again.err.contains("Unmerged "), "{}", again.err);
    });
}

/// Hierarchies with space, `,`, `\` and a newline (from the environment) and with `:`
/// (from the library's explicit list) merge on exactly that directory, with every
/// layer strategy, read-only and with a persistent mutable upper dir; status and
/// unmerge find the merge again. A mount below a hierarchy whose name contains a
/// literal `\040` is carried over to the same directory, not to `sub x`.
#[test]
fn hierarchies_with_separators_merge_in_place() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let odd = "/srv/a b,c\\d\ne";
        fx.sysext(
            "e",
            &[
                (&format!("{odd}/from-ext"), "ext\n"),
                ("usr/share/e", "e\n"),
            ],
        );
        write_file(&fx.path(&format!("{odd}/from-host")), "host\n");
        // Decoys that a wrong unescape or split would pick.
        for decoy in ["/srv/a", "/srv/a b", "/srv/a b,c"] {
            fs::create_dir_all(fx.path(decoy)).unwrap();
        }
        // A file system mounted below /usr at a directory named with a literal `\040`.
        let lit = fx.path("/usr/sub\\040x");
        fs::create_dir_all(&lit).unwrap();
        fs::create_dir_all(fx.path("/usr/sub x")).unwrap();
        mount("tmpfs", &lit, "tmpfs", 0, "mode=0755");
        write_file(&lit.join("on-submount"), "sub\n");
        let env_h = format!("/usr:{odd}");
        let before = state(&fx);
        let mut wrote = false;

        for layers in ["", "append", "joined", "legacy"] {
            for mutable in ["no", "yes"] {
                let what = format!("layers={layers:?} mutable={mutable}");
                let mut env = vec![("SYSTEMD_SYSEXT_HIERARCHIES", env_h.as_str())];
                if !layers.is_empty() {
                    if layers == "append" && !kernel_has_lowerdir_append() {
                        continue;
                    }
                    env.push(("EXTMERGE_LAYERS", layers));
                }
                let m = format!("--mutable={mutable}");
                run_env_t(&fx, &["--class=sysext", &m, "merge"], &env, 10).ok();
                let ov = mounts_on(&fx.path(odd));
                assert_eq!(ov.len(), 1, "{what}: {:#?}", fx.snapshot());
                assert_eq!(ov[0].fstype, "overlay");
                assert_eq!(ov[0].has("ro"), mutable == "no", "{what}");
                let mut want = vec![".systemd-sysext", "from-ext", "from-host"];
                if mutable == "yes" && wrote {
                    want.push("written"); // from an earlier mutable merge
                }
                assert_eq!(fx.ls(odd), want, "{what}");
                for decoy in ["/srv/a", "/srv/a b", "/srv/a b,c"] {
                    assert!(mounts_on(&fx.path(decoy)).is_empty(), "{what}: {decoy}");
                    assert_eq!(fx.ls(decoy), Vec::<String>::new(), "{what}: {decoy}");
                }
                assert_eq!(fx.ls("/usr/sub\\040x"), ["on-submount"], "{what}");
                assert_eq!(fx.ls("/usr/sub x"), Vec::<String>::new(), "{what}");
                if mutable == "yes" {
                    fx.write(&format!("{odd}/written"), "w\n");
                    wrote = true;
                }
                let s = run_env_t(&fx, &["--class=sysext", "status", "--json=short"], &env, 10);
                s.ok();
                assert_has(
                    &s.out,
                    r#""hierarchy":"/srv/a b,c\\d\ne","extensions":["e"]"#,
                );
                run_env_t(&fx, &["--class=sysext", "unmerge"], &env, 10).ok();
                assert_clean(&fx, &before, &what);
                assert_eq!(fx.ls(odd), ["from-host"], "{what}");
            }
        }
        // What the mutable merges wrote is in the upper dir named after the hierarchy.
        let upper = "/var/lib/extensions.mutable/srv.a b,c\\d\ne";
        assert_eq!(fx.ls(upper), ["written"]);
        // Unmerge removed the work dirs (found again through the escaped `work_dir`).
        assert_eq!(
            fx.ls("/var/lib/extensions.mutable"),
            ["srv.a b,c\\d\ne", "usr"]
        );

        // `:` cannot come through the environment; the library takes it.
        let colon = "/srv/x:y,z\\w";
        write_file(&fx.path(&format!("/var/lib/extensions/e{colon}/c")), "c\n");
        fs::create_dir_all(fx.path("/srv/x")).unwrap();
        let opts = extmerge::options::Options {
            root: fx.root.clone(),
            hierarchies: Some(vec![colon.to_string()]),
            ..Default::default()
        };
        let ctx = extmerge::context::Context::new(opts, &[extmerge::format::class::Class::Sysext]);
        let out = ctx.merge().unwrap().remove(0).1;
        assert_eq!(out.merged, [colon]);
        assert_eq!(mounts_on(&fx.path(colon)).len(), 1);
        assert!(mounts_on(&fx.path("/srv/x")).is_empty());
        assert_eq!(fx.ls(colon), [".systemd-sysext", "c"]);
        ctx.unmerge().unwrap();
        assert_clean(&fx, &before, "library unmerge");
    });
}

/// A mount point that is not UTF-8 anywhere in the namespace (a stick with a Latin-1
/// label) is no reason to fail: the mount table is read as bytes. It used to fail every
/// merge and refresh with "stream did not contain valid UTF-8".
#[test]
fn non_utf8_mount_point_elsewhere_is_no_obstacle() {
    use std::os::unix::ffi::OsStrExt;
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("e", &[("usr/share/e", "e\n")]);
        let odd = base.join(std::ffi::OsStr::from_bytes(b"stick-\xe9t\xe9"));
        fs::create_dir_all(&odd).unwrap();
        mount("tmpfs", &odd, "tmpfs", 0, "size=1m");
        for verb in ["merge", "refresh"] {
            run_t(&fx, &["--class=sysext", verb], 10).ok();
            assert_eq!(fs::read_to_string(fx.path("/usr/share/e")).unwrap(), "e\n");
        }
        run_t(&fx, &["--class=sysext", "unmerge"], 10).ok();
        assert!(!fx.path("/usr/share/e").exists());
    });
}
