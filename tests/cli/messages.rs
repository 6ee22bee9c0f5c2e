//! What the CLI says when something fails: strerror's words once, never Rust's
//! " (os error N)", always the file; and the hints in the CLI's own terms, which the
//! library leaves to its front-ends.

use std::os::unix::fs::{symlink, PermissionsExt};

use crate::common::*;
use crate::privileges::{open_up, run_unprivileged};

/// The text `strerror(errno)` gives: std's text without its " (os error N)".
fn strerror(errno: i32) -> String {
    let s = std::io::Error::from_raw_os_error(errno).to_string();
    s.strip_suffix(&format!(" (os error {errno})"))
        .unwrap_or(&s)
        .to_string()
}

/// Asserts that the run failed with a message naming `file`, with `errno`'s text and
/// without a Rust-style suffix.
#[track_caller]
fn fails_naming(r: &Run, file: &str, errno: i32) {
    r.fails_with(file);
    let text = strerror(errno);
    assert!(
        r.err.contains(&format!("{file}: {text}")),
        "`{}`: stderr should say \"{file}: {text}\":\n{}",
        r.cmd,
        r.err
    );
    assert!(!r.err.contains("(os error"), "`{}`:\n{}", r.cmd, r.err);
}

#[test]
fn errors_name_the_file_without_os_error_suffix() {
    ns_test(|base| {
        open_up(base);
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n"), ("opt/a/x", "x\n")]);

        // A missing root (ENOENT) and a root that is a file (ENOTDIR).
        let missing = base.join("missing");
        let r = run_cli(
            &[format!("--root={}", missing.display()), "status".into()],
            &[],
        );
        fails_naming(
            &r,
            &format!("{}: cannot open root", missing.display()),
            libc::ENOENT,
        );
        assert!(r.err.contains(&strerror(libc::ENOENT)));
        let file = fx.path("/etc/os-release");
        let r = run_cli(&[format!("--root={}", file.display()), "list".into()], &[]);
        assert!(r.err.contains(&strerror(libc::ENOTDIR)), "{}", r.err);
        fails_naming(
            &r,
            &format!("{}: cannot open root", file.display()),
            libc::ENOTDIR,
        );

        // A hierarchy that is a regular file (ENOTDIR), for merge and for plan.
        std::fs::remove_dir(fx.path("/opt")).unwrap();
        fx.write("/opt", "not a directory\n");
        let opt = fx.path("/opt").display().to_string();
        fails_naming(&fx.run(&["--class=sysext", "merge"]), &opt, libc::ENOTDIR);
        let r = fx.run(&["--class=sysext", "plan"]);
        assert!(
            r.err
                .contains(&format!("{opt}: {}", strerror(libc::ENOTDIR))),
            "{}",
            r.err
        );
        assert!(!r.err.contains("(os error"), "{}", r.err);
        std::fs::remove_file(fx.path("/opt")).unwrap();
        std::fs::create_dir(fx.path("/opt")).unwrap();

        // A search directory the caller may not read (EACCES).
        let confexts = fx.path("/var/lib/confexts");
        std::fs::set_permissions(&confexts, std::fs::Permissions::from_mode(0o700)).unwrap();
        let root = format!("--root={}", fx.root.display());
        let r = run_unprivileged(&[root.clone(), "list".into()]);
        fails_naming(&r, &confexts.display().to_string(), libc::EACCES);

        // A symlink loop among the extensions (ELOOP): skipped with the reason, shown
        // by `plan` (`list` is silent about entries that are no extensions, as
        // systemd 262).
        let loop_raw = fx.path("/var/lib/extensions/loop.raw");
        symlink("loop.raw", &loop_raw).unwrap();
        let r = fx.run(&["--class=sysext", "plan"]);
        r.ok();
        let want = strerror(libc::ELOOP);
        assert!(
            r.out.contains(&*loop_raw.display().to_string()) && r.out.contains(&*want),
            "want {want:?}:\n{}",
            r.out
        );
        assert!(!r.out.contains("(os error"), "{}", r.out);
        std::fs::remove_file(&loop_raw).unwrap();

        // A bad disk image whose root hash sidecar is a symlink loop: merge fails and
        // names the image and the sidecar.
        let before = fx.snapshot();
        fx.write("/var/lib/extensions/bad.raw", "not a disk image\n");
        symlink("bad.roothash", fx.path("/var/lib/extensions/bad.roothash")).unwrap();
        let r = fx.run(&["--class=sysext", "merge"]);
        fails_naming(&r, "/var/lib/extensions/bad.roothash", libc::ELOOP);
        assert!(
            r.err
                .contains(&fx.path("/var/lib/extensions/bad.raw").display().to_string()),
            "{}",
            r.err
        );
        assert_eq!(fx.snapshot(), before, "the failed merge mounted nothing");
    });
}

/// Where in `text` (Rust source) a line outside comments holds `--word`: a CLI option
/// named in a message.
fn cli_options_in(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let code = code.split(" // ").next().unwrap_or(code);
        let named = code
            .as_bytes()
            .windows(3)
            .any(|w| w[0] == b'-' && w[1] == b'-' && w[2].is_ascii_lowercase());
        if named {
            out.push((n + 1, line.trim().to_string()));
        }
    }
    out
}

/// The library's messages name no CLI option: no line of the library's code (its
/// tests aside, which run tools like veritysetup) holds `--option`; the front-ends
/// (src/bin, capi) add hints in their own terms.
#[test]
fn library_sources_name_no_cli_options() {
    fn visit(dir: &std::path::Path, files: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if p.file_name() != Some(std::ffi::OsStr::new("bin")) {
                    visit(&p, files);
                }
            } else if p.extension() == Some(std::ffi::OsStr::new("rs")) {
                files.push(p);
            }
        }
    }
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    visit(&src, &mut files);
    assert!(files.len() > 10, "{}: {files:?}", src.display());
    let mut bad = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        // Up to the first top-level test module.
        let end = ["\n#[cfg(test)]", "\n#[cfg(all(test"]
            .iter()
            .filter_map(|m| text.find(m))
            .min()
            .unwrap_or(text.len());
        let code = &text[..end];
        for (n, l) in cli_options_in(code) {
            bad.push(format!("{}:{n}: {l}", f.display()));
        }
    }
    assert!(
        bad.is_empty(),
        "library code names CLI options:\n{}",
        bad.join("\n")
    );
    // The check itself sees an option in a message, also on a continuation line.
    assert_eq!(
        cli_options_in("  x\n  \"a, \\\n   use --always-refresh=yes\"")[0].0,
        3
    );
}

/// The CLI adds its own option and verbs to the library's words (`Outcome::describe`
/// and the "already merged" error name none).
#[test]
fn cli_adds_its_hints() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        fx.run(&["--class=sysext", "merge"]).ok();
        let r = fx.run(&["--class=sysext", "refresh"]);
        r.ok();
        assert!(
            r.err.contains(
                "Skipping extension refresh because no change was found, use --always-refresh=yes to always do a refresh."
            ),
            "{}",
            r.err
        );
        let r = fx.run(&["--class=sysext", "merge"]);
        r.fails_with(&format!(
            "{}/usr: hierarchy is already merged (use refresh or unmerge)",
            fx.root.display()
        ));
    });
}
