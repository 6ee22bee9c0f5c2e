//! A race against the merge: while merges and unmerges run, another thread keeps
//! swapping an extension directory (and its `usr` directory) with symlinks that, on
//! the host, lead to a host-only tree holding a valid release file and a sentinel
//! (`renameat2(RENAME_EXCHANGE)`, each swap undone right after). Every symlink is
//! resolved inside the root (or the extension), so no merge may ever show the
//! sentinel: a merge either contains only files of the extension and the root, or
//! skips the extension, or fails cleanly.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::common::*;
use crate::util::*;

const SENTINEL: &str = "SENTINEL-host-only";

fn exchange(a: &Path, b: &Path) -> bool {
    let (a, b) = (
        CString::new(a.as_os_str().as_bytes()).unwrap(),
        CString::new(b.as_os_str().as_bytes()).unwrap(),
    );
    // SAFETY: valid NUL-terminated paths.
    unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        ) == 0
    }
}

/// Every name below `dir` (not following symlinks), as paths relative to it.
fn walk(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let r = rel.join(e.file_name());
        out.push(r.clone());
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            walk(&e.path(), &r, out);
        }
    }
}

#[test]
fn swapping_extension_for_symlinks_never_leaks_host_files() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let ext = fx.sysext("e", &[("usr/share/from-ext", "ext\n")]);
        // The host-only tree the symlinks point at (outside the root).
        let outside = base.join("outside");
        write_file(
            &outside.join("usr/lib/extension-release.d/extension-release.e"),
            SYSEXT_RELEASE,
        );
        write_file(&outside.join(format!("usr/share/{SENTINEL}")), "leak\n");
        write_file(&outside.join(format!("usr/bin/{SENTINEL}")), "leak\n");
        // Swap partners, on the same file system as the extension.
        let swap = fx.path("/var/lib/swap");
        fs::create_dir_all(&swap).unwrap();
        let ext_partners = [
            (swap.join("abs"), outside.clone()),
            // From /var/lib/extensions/ four levels up is `base`.
            (swap.join("rel"), PathBuf::from("../../../../outside")),
            (swap.join("slash"), PathBuf::from("/")),
            (swap.join("usr"), PathBuf::from("/usr")),
        ];
        let usr_partners = [
            (swap.join("usr-abs"), outside.join("usr")),
            (
                swap.join("usr-rel"),
                PathBuf::from("../../../../../outside/usr"),
            ),
        ];
        for (l, t) in ext_partners.iter().chain(&usr_partners) {
            symlink(t, l).unwrap();
        }
        // On the host the relative links do lead out of the root.
        assert!(exchange(&ext, &ext_partners[1].0));
        assert_eq!(
            fs::canonicalize(&ext).unwrap(),
            fs::canonicalize(&outside).unwrap()
        );
        assert!(exchange(&ext, &ext_partners[1].0));
        assert!(exchange(&ext.join("usr"), &usr_partners[1].0));
        assert_eq!(
            fs::canonicalize(ext.join("usr")).unwrap(),
            fs::canonicalize(outside.join("usr")).unwrap()
        );
        assert!(exchange(&ext.join("usr"), &usr_partners[1].0));

        let before = state(&fx);
        let stop = Arc::new(AtomicBool::new(false));
        let swaps = Arc::new(AtomicU64::new(0));
        let swapper = {
            let (stop, swaps, ext) = (stop.clone(), swaps.clone(), ext.clone());
            let partners: Vec<(PathBuf, PathBuf)> = ext_partners
                .iter()
                .map(|(l, _)| (ext.clone(), l.clone()))
                .chain(
                    usr_partners
                        .iter()
                        .map(|(l, _)| (ext.join("usr"), l.clone())),
                )
                .collect();
            std::thread::spawn(move || {
                let mut k = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let (a, b) = &partners[k % partners.len()];
                    k += 1;
                    assert!(
                        exchange(a, b),
                        "swap {}: {}",
                        a.display(),
                        std::io::Error::last_os_error()
                    );
                    std::thread::yield_now();
                    assert!(exchange(a, b), "swap back {}", a.display());
                    swaps.fetch_add(1, Ordering::Relaxed);
                }
            })
        };

        let start = Instant::now();
        let (mut merged, mut skipped, mut failed) = (0, 0, 0);
        let mut round = 0;
        // At least one merge must get through, or the test proves nothing. Under load
        // (other tests on both cores) the swapper holds the links longer and a round
        // seldom sees the directory: keep trying for up to a minute, not a fixed count.
        while round < 50
            || (merged == 0 && start.elapsed() < std::time::Duration::from_secs(60))
            || swaps.load(Ordering::Relaxed) < 2000
        {
            round += 1;
            let r = run_t(&fx, &["--class=sysext", "merge"], 10);
            match r.code {
                0 if fx.mounts_at("/usr").is_empty() => {
                    // Dangling inside the root (not an extension at all), an extension
                    // without a usable release file, or one whose `usr` was a symlink
                    // (resolved inside the extension: absent) when its layer was opened.
                    assert!(
                        r.err.contains("No extensions found.")
                            || r.err.contains(
                                "No suitable extensions found (1 ignored due to incompatible image(s))."
                            )
                            || r.err == "Using extensions 'e'.\n",
                        "{r:?}"
                    );
                    skipped += 1;
                }
                0 => {
                    merged += 1;
                    let mut names = Vec::new();
                    walk(&fx.path("/usr"), Path::new(""), &mut names);
                    for n in &names {
                        assert!(
                            !n.to_string_lossy().contains(SENTINEL),
                            "round {round}: a host-only file is merged: /usr/{}",
                            n.display()
                        );
                    }
                    // Only the extension's and the root's files (and our metadata).
                    const ALLOWED: &[&str] = &[
                        ".systemd-sysext",
                        "bin",
                        "bin/host-tool",
                        "lib",
                        "lib/extension-release.d",
                        "lib/extension-release.d/extension-release.e",
                        "share",
                        "share/from-ext",
                    ];
                    for n in &names {
                        assert!(
                            ALLOWED.contains(&n.to_str().unwrap())
                                || n.starts_with(".systemd-sysext"),
                            "round {round}: unexpected /usr/{}",
                            n.display()
                        );
                    }
                    assert!(
                        names.contains(&PathBuf::from("share/from-ext")),
                        "round {round}"
                    );
                    run_t(&fx, &["--class=sysext", "unmerge"], 10).ok();
                }
                _ => {
                    // A clean failure (the entry changed between two looks).
                    assert_eq!(r.code, 1, "{r:?}");
                    eprintln!("round {round}: failed cleanly: {}", r.err.trim_end());
                    failed += 1;
                }
            }
            assert_clean(&fx, &before, &format!("round {round}: {}", r.err));
        }
        stop.store(true, Ordering::Relaxed);
        swapper.join().unwrap();
        eprintln!(
            "{round} rounds in {:?} against {} swaps: {merged} merged, {skipped} skipped, {failed} failed",
            start.elapsed(),
            swaps.load(Ordering::Relaxed)
        );
        assert!(merged > 0, "the extension never merged");
        assert!(outside.join(format!("usr/share/{SENTINEL}")).exists());
    });
}

/// An extension that is a relative symlink with `..` (to a directory inside the root,
/// a legitimate layout), merged while something else on the system renames files.
/// `openat2(RESOLVE_IN_ROOT)` answers EAGAIN when any rename happens while it resolves
/// a `..` ("the caller may choose to retry", openat2(2)); a benign rename elsewhere
/// must not make a boot-time merge fail.
#[test]
fn concurrent_unrelated_renames_do_not_fail_merges() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let real = fx.path("/opt-exts/e");
        write_file(
            &real.join("usr/lib/extension-release.d/extension-release.e"),
            SYSEXT_RELEASE,
        );
        write_file(&real.join("usr/share/from-ext"), "ext\n");
        symlink("../../../opt-exts/e", fx.path("/var/lib/extensions/e")).unwrap();
        // Unrelated renames, in a directory of their own.
        let other = base.join("elsewhere");
        fs::create_dir_all(other.join("a")).unwrap();
        fs::create_dir_all(other.join("b")).unwrap();
        fs::write(other.join("a/f"), "f").unwrap();
        let before = state(&fx);
        let stop = Arc::new(AtomicBool::new(false));
        let renamer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (a, b) = (other.join("a/f"), other.join("b/f"));
                while !stop.load(Ordering::Relaxed) {
                    fs::rename(&a, &b).unwrap();
                    fs::rename(&b, &a).unwrap();
                }
            })
        };
        let mut failures = Vec::new();
        for round in 0..100 {
            let r = run_t(&fx, &["--class=sysext", "merge"], 10);
            if r.code == 0 && !fx.mounts_at("/usr").is_empty() {
                assert_eq!(fx.ls("/usr/share"), ["from-ext"], "round {round}: {r:?}");
                run_t(&fx, &["--class=sysext", "unmerge"], 10).ok();
            } else {
                // Failed, or (worse) exit 0 without the extension.
                failures.push(format!(
                    "round {round}: exit {}: {}",
                    r.code,
                    r.err.trim_end()
                ));
            }
            assert_clean(&fx, &before, &format!("round {round}"));
        }
        // Why an extension went missing: `plan` shows discovery's reason.
        let mut why = String::new();
        for _ in 0..200 {
            let p = run_t(&fx, &["--class=sysext", "plan"], 10);
            if let Some(l) = p
                .out
                .lines()
                .find(|l| l.contains("ignore") || l.contains("skip"))
            {
                why = l.to_string();
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        renamer.join().unwrap();
        assert!(
            failures.is_empty(),
            "{} of 100 merges did not merge the extension:\n{}\nplan: {why}",
            failures.len(),
            failures.join("\n")
        );
    });
}
