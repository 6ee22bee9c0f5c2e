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

use extmerge::image::gpt::crc32;

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

        let l = run_t(&fx, &["--class=sysext", "list"], 5);
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
            // `plan` (as root it opens images too) refuses it the same way.
            let p = run_t(&fx, &["--class=sysext", "plan"], 10);
            p.fails_with(&format!("{}: ", img.display()));
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
