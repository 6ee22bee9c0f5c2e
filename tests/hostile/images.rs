//! Hostile `.raw` entries, through the CLI. Entries that are not regular files,
//! directories or block devices (a FIFO, a symlink to a character device) are not
//! extensions at all, exactly as in systemd's `image_discover()`: skipped without being
//! opened for reading, so without blocking, and shown with the reason by `list`. A
//! regular `.raw` file that is broken (empty, garbage, a partition table that lies)
//! fails the merge with an error naming the file, as in systemd. No loop device stays
//! bound, nothing stays mounted.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use extmerge::format::gpt::crc32;

use crate::common::*;
use crate::util::*;

/// A 1 MiB image with a protective MBR and a primary GPT (512-byte sectors) with one
/// partition `first..=last` (root x86-64 type) whose header says the usable area
/// ends at `last_usable` and holds `count` entries; CRCs are right.
fn gpt_image(first: u64, last: u64, last_usable: u64, count: u32) -> Vec<u8> {
    let mut img = vec![0u8; 1 << 20];
    // Protective MBR.
    img[446 + 4] = 0xEE;
    img[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
    img[446 + 12..446 + 16].copy_from_slice(&u32::MAX.to_le_bytes());
    img[510] = 0x55;
    img[511] = 0xAA;
    // Entry 1.
    let mut arr = vec![0u8; 128 * 128];
    let root_x86_64 = [
        0xE3, 0xBC, 0x68, 0x4F, 0xCD, 0xE8, 0xB1, 0x4D, 0x96, 0xE7, 0xFB, 0xCA, 0xF9, 0x84, 0xB7,
        0x09,
    ];
    arr[0..16].copy_from_slice(&root_x86_64);
    arr[16..32].copy_from_slice(&[0x11; 16]);
    arr[32..40].copy_from_slice(&first.to_le_bytes());
    arr[40..48].copy_from_slice(&last.to_le_bytes());
    img[1024..1024 + arr.len()].copy_from_slice(&arr);
    // Header.
    let h = &mut img[512..1024];
    h[0..8].copy_from_slice(b"EFI PART");
    h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    h[12..16].copy_from_slice(&92u32.to_le_bytes());
    h[24..32].copy_from_slice(&1u64.to_le_bytes());
    h[32..40].copy_from_slice(&2047u64.to_le_bytes());
    h[40..48].copy_from_slice(&34u64.to_le_bytes());
    h[48..56].copy_from_slice(&last_usable.to_le_bytes());
    h[56..72].copy_from_slice(&[0x22; 16]);
    h[72..80].copy_from_slice(&2u64.to_le_bytes());
    h[80..84].copy_from_slice(&count.to_le_bytes());
    h[84..88].copy_from_slice(&128u32.to_le_bytes());
    h[88..92].copy_from_slice(&crc32(&arr).to_le_bytes());
    let c = crc32(&h[..92]);
    h[16..20].copy_from_slice(&c.to_le_bytes());
    img
}

/// Deterministic garbage.
fn garbage(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Entries that are no disk images: skipped in discovery (a FIFO never opened, so it
/// cannot block; a symlink to /dev/zero is dangling inside the root, and a character
/// device when the root has one), and the other extensions merge.
#[test]
fn non_file_raw_entries_are_skipped_without_blocking() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let dir = fx.path("/var/lib/extensions");
        mkfifo(&dir.join("fifo.raw"));
        symlink("/dev/zero", dir.join("zero.raw")).unwrap();
        symlink("/dev/null", dir.join("null.raw")).unwrap();
        mknod(&fx.path("/dev/null"), libc::S_IFCHR, 1, 3);
        fx.sysext("ok", &[("usr/share/ok", "ok\n")]);
        let before = state(&fx);

        // `list` names the entries that are no extensions at debug level (as systemd).
        let l = run_env_t(
            &fx,
            &["--class=sysext", "list"],
            &[("SYSTEMD_LOG_LEVEL", "debug")],
            5,
        );
        l.ok();
        for (f, why) in [
            (
                "fifo.raw",
                "not a regular file, directory or block device (fifo)",
            ),
            (
                "null.raw",
                "not a regular file, directory or block device (character device)",
            ),
            ("zero.raw", "dangling symlink"),
        ] {
            assert_has(
                &l.err,
                &format!("Skipping {}: {why}\n", dir.join(f).display()),
            );
        }
        let m = run_t(&fx, &["--class=sysext", "merge"], 5);
        m.ok();
        assert_has(&m.err, "Using extensions 'ok'.");
        assert_eq!(fx.ls("/usr/share"), ["ok"]);
        run_t(&fx, &["--class=sysext", "unmerge"], 5).ok();
        assert_clean(&fx, &before, "after unmerge");
    });
}

/// Broken regular `.raw` files: each fails the merge (exit 1) with a message naming the
/// file and the reason, quickly, leaving no loop device, mount or staging directory; the
/// good directory extension beside it is not merged either (all or nothing).
#[test]
fn broken_raw_images_fail_the_merge_cleanly() {
    type Make = fn(&Path);
    let cases: &[(&str, Make, &[&str])] = &[
        (
            "empty.raw",
            |p| write_bytes(p, b""),
            &["file system: truncated"],
        ),
        (
            "garbage.raw",
            |p| write_bytes(p, &garbage(1 << 20)),
            &["file system: unknown file system"],
        ),
        (
            // A 1 TiB sparse file of zeros: probed by reading a few blocks.
            "sparse.raw",
            |p| sparse(p, 1 << 40),
            &["file system: unknown file system"],
        ),
        (
            // The partition table claims a partition past the end of the file.
            "pasteof.raw",
            |p| write_bytes(p, &gpt_image(2048, 199_999, 200_000, 128)),
            &[
                "partition table: partition 1 ends at byte 102400000 beyond the end of the image (1048576 bytes): truncated image?",
            ],
        ),
        (
            // A valid header claiming 4 billion partition entries.
            "entries.raw",
            |p| write_bytes(p, &gpt_image(64, 100, 2014, u32::MAX)),
            &["partition table: too many GPT partition entries: 4294967295"],
        ),
    ];
    for (file, make, needles) in cases {
        ns_test(move |base| {
            let fx = Fx::new(base);
            fx.sysext("ok", &[("usr/share/ok", "ok\n")]);
            let img = fx.path(&format!("/var/lib/extensions/{file}"));
            make(&img);
            let before = state(&fx);
            let t = run_limited(&fx, &["--class=sysext", "merge"], &[], Limits::default());
            eprintln!(
                "{file}: {:?}, peak RSS {} KiB: {}",
                t.elapsed,
                t.maxrss_kib,
                t.run.err.trim_end()
            );
            t.run.fails_with(&format!("{}: ", img.display()));
            for n in *needles {
                assert_has(&t.run.err, n);
            }
            assert!(
                t.maxrss_kib < 32 * 1024,
                "{file}: peak RSS {} KiB",
                t.maxrss_kib
            );
            assert_clean(&fx, &before, file);
            assert_eq!(fx.ls("/usr"), ["bin"], "{file}");
            // `plan` (as root it opens images too) shows the same error as the image's
            // verdict, still shows the good extension, and succeeds.
            let p = run_t(&fx, &["--class=sysext", "plan"], 10);
            p.ok();
            let stem = file.trim_end_matches(".raw");
            for n in *needles {
                assert_has(
                    &p.out,
                    &format!("  fail {stem} (raw): {}: {n}", img.display()),
                );
            }
            assert_has(&p.out, "  use  ok (directory, ");
            assert_has(&p.out, "  merge would fail: 1 extension(s) cannot be used");
            assert_clean(&fx, &before, file);
        });
    }
}

/// A valid image beside a broken one: the valid one is mounted (loop device, staging)
/// while the broken one is examined, and all of it is undone when the merge fails.
#[test]
fn valid_image_is_undone_when_another_is_broken() {
    ns_test(|base| {
        if !Path::new("/usr/bin/mkfs.erofs").exists() {
            eprintln!("SKIP: needs mkfs.erofs");
            return;
        }
        let fx = Fx::new(base);
        let tree = base.join("tree");
        write_file(
            &tree.join("usr/lib/extension-release.d/extension-release.a-good"),
            SYSEXT_RELEASE,
        );
        write_file(&tree.join("usr/share/good"), "good\n");
        let good = fx.path("/var/lib/extensions/a-good.raw");
        let o = std::process::Command::new("mkfs.erofs")
            .args(["--quiet", "-T0", "--all-root"])
            .arg(&good)
            .arg(&tree)
            .output()
            .unwrap();
        assert!(o.status.success(), "mkfs.erofs: {o:?}");
        let bad = fx.path("/var/lib/extensions/z-bad.raw");
        write_bytes(&bad, &gpt_image(2048, 199_999, 200_000, 128));
        let before = state(&fx);
        let r = run_t(&fx, &["--class=sysext", "merge"], 20);
        r.fails_with(&format!("{}: partition table: ", bad.display()));
        assert_clean(&fx, &before, "failed merge");
        // Without the broken one, the good one merges and unmerges.
        fs::remove_file(&bad).unwrap();
        run_t(&fx, &["--class=sysext", "merge"], 20).ok();
        assert_eq!(fx.read("/usr/share/good").as_deref(), Some("good\n"));
        run_t(&fx, &["--class=sysext", "unmerge"], 20).ok();
        // The loop device goes away with the last user of the mount; give it a moment.
        for _ in 0..100 {
            if state(&fx) == before {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_clean(&fx, &before, "after unmerge");
    });
}

/// Builds an erofs sysext image `name.raw` in `/var/lib/extensions` with a matching
/// extension-release and `usr/share/<name>`; `false` (after printing SKIP) without
/// mkfs.erofs.
fn erofs_sysext(fx: &Fx, base: &Path, name: &str) -> bool {
    if !Path::new("/usr/bin/mkfs.erofs").exists() {
        eprintln!("SKIP: needs mkfs.erofs");
        return false;
    }
    let tree = base.join(format!("tree-{name}"));
    write_file(
        &tree.join(format!(
            "usr/lib/extension-release.d/extension-release.{name}"
        )),
        SYSEXT_RELEASE,
    );
    write_file(
        &tree.join(format!("usr/share/{name}")),
        &format!("{name}\n"),
    );
    let img = fx.path(&format!("/var/lib/extensions/{name}.raw"));
    let o = std::process::Command::new("mkfs.erofs")
        .args(["--quiet", "-T0", "--all-root"])
        .arg(&img)
        .arg(&tree)
        .output()
        .unwrap();
    assert!(o.status.success(), "mkfs.erofs: {o:?}");
    true
}

/// `plan` and `merge --dry-run` with broken images among good ones: every entry is
/// listed with its verdict (a broken image with the error naming the file, in text and
/// JSON), the exit status is 0, nothing stays mounted; a refused image (image policy)
/// is an entry the same way. `merge` itself still fails on the broken image (all or
/// nothing), and a plan that cannot be made at all still fails.
#[test]
fn plan_lists_every_entry_beside_broken_and_refused_images() {
    ns_test(|base| {
        let fx = Fx::new(base);
        if !erofs_sysext(&fx, base, "a-good") {
            return;
        }
        let good = fx.path("/var/lib/extensions/a-good.raw");
        let garbage_img = fx.path("/var/lib/extensions/b-garbage.raw");
        write_bytes(&garbage_img, &garbage(1 << 20));
        let lying = fx.path("/var/lib/extensions/c-pasteof.raw");
        write_bytes(&lying, &gpt_image(2048, 199_999, 200_000, 128));
        fx.sysext("d-dir", &[("usr/share/d-dir", "d\n")]);
        fx.sysext_release("e-fedora", Some("ID=fedora\n"), &[("usr/share/e", "e\n")]);
        let before = state(&fx);
        let garbage_err = format!(
            "{}: file system: unknown file system",
            garbage_img.display()
        );
        let lying_err = format!(
            "{}: partition table: partition 1 ends at byte 102400000 beyond the end of the image (1048576 bytes): truncated image?",
            lying.display()
        );
        let want = [
            format!("  use  a-good (raw, {})\n", good.display()),
            format!("  fail b-garbage (raw): {garbage_err}\n"),
            format!("  fail c-pasteof (raw): {lying_err}\n"),
            format!(
                "  use  d-dir (directory, {})\n",
                fx.path("/var/lib/extensions/d-dir").display()
            ),
            skip_line(&fx, "e-fedora", "ID=fedora does not match host ID=debian"),
            "  /usr: d-dir, a-good (top first), host [ro,nodev]\n".to_string(),
            "  /opt: no extension contributes, left alone\n".to_string(),
            "  merge would fail: 2 extension(s) cannot be used (all or nothing)\n".to_string(),
        ];
        for args in [
            &["--class=sysext", "plan"][..],
            &["--class=sysext", "merge", "--dry-run"][..],
            &["--class=sysext", "refresh", "--dry-run"][..],
        ] {
            let p = run_t(&fx, args, 20);
            p.ok();
            let got: Vec<&str> = p.out.lines().skip(1).collect();
            assert_eq!(got.len(), want.len(), "{args:?}:\n{}", p.out);
            for (g, w) in got.iter().zip(&want) {
                // The file system probe may add what it checked after the reason.
                let w = w.trim_end_matches('\n');
                assert!(
                    *g == w || (w.contains("b-garbage") && g.starts_with(w)),
                    "{args:?}: expected line\n{w}\nin:\n{}",
                    p.out
                );
            }
            assert_eq!(p.err, "", "{args:?}");
            assert_clean(&fx, &before, &format!("{args:?}"));
        }

        // JSON carries the same entries.
        let j = run_t(&fx, &["--class=sysext", "--json=short", "plan"], 20);
        j.ok();
        let entry = |name: &str, kind: &str, path: &Path, verdict: &str, reason: &str| {
            format!(
                r#"{{"name":"{name}","type":"{kind}","path":"{}","verdict":"{verdict}","reason":{reason}}}"#,
                path.display()
            )
        };
        let quoted = |s: &str| format!("\"{s}\"");
        let garbage_entry = entry(
            "b-garbage",
            "raw",
            &garbage_img,
            "unusable",
            &quoted(&garbage_err),
        );
        // The probe may add what it checked: the reason is matched up to there.
        assert_has(&j.out, garbage_entry.trim_end_matches("\"}"));
        let cands = [
            entry("a-good", "raw", &good, "match", "null"),
            entry(
                "d-dir",
                "directory",
                &fx.path("/var/lib/extensions/d-dir"),
                "match",
                "null",
            ),
            entry(
                "e-fedora",
                "directory",
                &fx.path("/var/lib/extensions/e-fedora"),
                "skip",
                &quoted("ID=fedora does not match host ID=debian"),
            ),
        ];
        assert_has(&j.out, &format!(r#""candidates":[{},"#, cands[0]));
        assert_has(&j.out, &format!(r#""}},{}]"#, cands[1..].join(",")));
        assert_has(&j.out, r#""extensions":["a-good","d-dir"]"#);
        assert_clean(&fx, &before, "plan --json");

        // merge is all or nothing: it fails on the first broken image, mounts nothing.
        let m = run_t(&fx, &["--class=sysext", "merge"], 20);
        m.fails_with(&garbage_err);
        assert_clean(&fx, &before, "failed merge");
        assert_eq!(fx.ls("/usr"), ["bin"]);

        // An image the policy refuses is an entry with the policy's reason.
        fs::remove_file(&garbage_img).unwrap();
        fs::remove_file(&lying).unwrap();
        let p = run_t(
            &fx,
            &[
                "--class=sysext",
                "--image-policy=root=signed+absent:usr=signed+absent:=unused+absent",
                "plan",
            ],
            20,
        );
        p.ok();
        let line = p
            .out
            .lines()
            .find(|l| l.starts_with("  fail a-good (raw): "))
            .unwrap_or_else(|| panic!("no fail line for a-good:\n{}", p.out));
        assert!(
            line.contains(&format!("{}: image policy '", good.display()))
                && line.contains("forbids this image"),
            "{line}"
        );
        assert_has(&p.out, "  use  d-dir (directory, ");
        assert_has(&p.out, "  /usr: d-dir (top first), host [ro,nodev]\n");
        assert_clean(&fx, &before, "plan with a refusing policy");

        // A plan that cannot be made fails.
        fs::remove_file(fx.path("/etc/os-release")).unwrap();
        run_t(&fx, &["--class=sysext", "plan"], 20).fails_with("os-release");
    });
}
