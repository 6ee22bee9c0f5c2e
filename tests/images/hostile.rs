//! Hostile and broken images: each is refused with an error naming the image and the
//! reason, and nothing is left attached or mounted.

use std::fs;
use std::os::unix::fs::{symlink, FileExt};
use std::path::Path;

use extmerge::format::class::Class;
use extmerge::format::gpt::crc32;
use extmerge::inspect::image::ImageStep;

use crate::common::*;

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Rewrites the primary GPT of `img` (512-byte sectors) with `edit` applied to the
/// partition entry array, recomputing both CRCs so only the edit is wrong.
pub fn edit_entries(img: &Path, edit: impl FnOnce(&mut [u8], usize)) {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(img)
        .unwrap();
    let mut hdr = vec![0u8; 512];
    f.read_exact_at(&mut hdr, 512).unwrap();
    assert_eq!(&hdr[..8], b"EFI PART");
    let hsize = le32(&hdr, 12) as usize;
    let lba = le64(&hdr, 72);
    let (count, esize) = (le32(&hdr, 80) as usize, le32(&hdr, 84) as usize);
    let mut arr = vec![0u8; count * esize];
    f.read_exact_at(&mut arr, lba * 512).unwrap();
    edit(&mut arr, esize);
    f.write_all_at(&arr, lba * 512).unwrap();
    hdr[88..92].copy_from_slice(&crc32(&arr).to_le_bytes());
    hdr[16..20].copy_from_slice(&[0; 4]);
    let c = crc32(&hdr[..hsize]);
    hdr[16..20].copy_from_slice(&c.to_le_bytes());
    f.write_all_at(&hdr, 512).unwrap();
}

/// Runs the case: `image` (file name in /var/lib/extensions, already there) must be
/// refused by the plan with `needles` in the message, and by a direct open too.
/// The direct open fails at `step` with `errno`.
fn refused(fx: &Fx, name: &str, file: &str, needles: &[&str], (step, errno): (ImageStep, i32)) {
    let mut all = vec![file];
    all.extend_from_slice(needles);
    let mut op = opener(Class::Sysext, None);
    let e = plan_refuses(fx, Class::Sysext, &mut op, name, &all);
    eprintln!("{name}: refused as expected: {e}");
    let e = open_fails(
        fx,
        &mut op,
        &raw_image(name, &format!("/var/lib/extensions/{file}")),
        needles,
    );
    assert_eq!((e.step, e.errno()), (step, errno), "{name}: {e}");
    drop(op);
    fx.assert_clean(&[]);
}

/// A GPT image cut short: its partition lies beyond the end of the file.
#[test]
fn truncated_gpt() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let Some(p) = fx.install("ddi", "ddi-ext.raw", "/var/lib/extensions/trunc.raw") else {
            return;
        };
        let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len((1 << 20) + 8192).unwrap();
        drop(f);
        refused(
            &fx,
            "trunc",
            "trunc.raw",
            &["partition table", "truncated"],
            (ImageStep::PartitionTable, libc::EBADMSG),
        );
    });
}

/// A GPT header whose CRC does not match.
#[test]
fn gpt_bad_crc() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let Some(p) = fx.install("ddi", "ddi-ext.raw", "/var/lib/extensions/badcrc.raw") else {
            return;
        };
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .unwrap();
        // A byte of the disk GUID (header offset 56), CRC left alone. Flipped, not set:
        // the GUID is random, a fixed value would be there already once in 256 builds.
        let mut b = [0u8];
        f.read_exact_at(&mut b, 512 + 56).unwrap();
        f.write_all_at(&[b[0] ^ 0xff], 512 + 56).unwrap();
        drop(f);
        refused(
            &fx,
            "badcrc",
            "badcrc.raw",
            &["partition table", "CRC32 mismatch"],
            (ImageStep::PartitionTable, libc::EBADMSG),
        );
    });
}

/// Two partitions sharing sectors (CRCs valid).
#[test]
fn gpt_overlapping_partitions() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let Some(p) = fx.install(
            "ddi-two-usr",
            "two-usr.raw",
            "/var/lib/extensions/overlap.raw",
        ) else {
            return;
        };
        edit_entries(&p, |arr, esize| {
            // Entry 2 starts 8 sectors into entry 1.
            let first1 = le64(arr, 32);
            arr[esize + 32..esize + 40].copy_from_slice(&(first1 + 8).to_le_bytes());
        });
        refused(
            &fx,
            "overlap",
            "overlap.raw",
            &["partition table", "overlap"],
            (ImageStep::PartitionTable, libc::EBADMSG),
        );
    });
}

/// Two `/usr` partitions for the native architecture: ambiguous, refused.
#[test]
fn gpt_two_usr_partitions() {
    ns_test(|base| {
        let fx = Fx::new(base);
        if fx
            .install(
                "ddi-two-usr",
                "two-usr.raw",
                "/var/lib/extensions/two-usr.raw",
            )
            .is_none()
        {
            return;
        }
        refused(
            &fx,
            "two-usr",
            "two-usr.raw",
            &["partition table", "several usr partitions"],
            // systemd: -ENOTUNIQ for several candidate partitions.
            (ImageStep::PartitionTable, libc::ENOTUNIQ),
        );
    });
}

/// An empty file and random bytes: no partition table, no file system.
#[test]
fn empty_and_garbage() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let ext = fx.path("/var/lib/extensions");
        fs::write(ext.join("empty.raw"), b"").unwrap();
        refused(
            &fx,
            "empty",
            "empty.raw",
            &["file system", "truncated"],
            (ImageStep::FileSystem, libc::EBADMSG),
        );
        fs::remove_file(ext.join("empty.raw")).unwrap();
        // xorshift: deterministic "random" megabyte.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let junk: Vec<u8> = (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        fs::write(ext.join("garbage.raw"), &junk).unwrap();
        // systemd: -EPROTONOSUPPORT for a file system it cannot use.
        refused(
            &fx,
            "garbage",
            "garbage.raw",
            &["unknown file system"],
            (ImageStep::FileSystem, libc::EPROTONOSUPPORT),
        );
        // A GPT signature in a non-GPT image is not a file system either.
        let mut fake = vec![0u8; 1 << 20];
        fake[512..520].copy_from_slice(b"EFI PART");
        fs::write(ext.join("garbage.raw"), &fake).unwrap();
        refused(
            &fx,
            "garbage",
            "garbage.raw",
            &["file system"],
            (ImageStep::FileSystem, libc::EPROTONOSUPPORT),
        );
    });
}

/// A `.raw` symlink pointing out of the root: resolved inside the root, where its target
/// does not exist. Discovery skips it as dangling; opened anyway, it fails to open.
#[test]
fn symlink_out_of_root() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let Some(dir) = fx.fixture("erofs") else {
            return;
        };
        let outside = base.join("outside.raw");
        fs::copy(dir.join("erofs-ext.raw"), &outside).unwrap();
        let ext = fx.path("/var/lib/extensions");
        symlink(&outside, ext.join("evil.raw")).unwrap();
        symlink(
            "../../../../../../../../../outside.raw",
            ext.join("evil2.raw"),
        )
        .unwrap();
        let root = fx.open_root();
        let d = extmerge::inspect::discover::discover(&root, Class::Sysext, false).unwrap();
        assert!(d.images.is_empty(), "{:?}", d.images);
        let mut op = opener(Class::Sysext, None);
        for f in ["evil.raw", "evil2.raw"] {
            let e = open_fails(
                &fx,
                &mut op,
                &raw_image("evil", &format!("/var/lib/extensions/{f}")),
                &[f, "cannot open", "No such file"],
            );
            assert_eq!((e.step, e.errno()), (ImageStep::Open, libc::ENOENT), "{e}");
        }
        // The merge does nothing.
        let out = crate::common::merge::merge_with(&fx.opts(), Class::Sysext, &mut op).unwrap();
        assert!(
            out.extensions.is_empty() && out.merged.is_empty(),
            "{out:?}"
        );
        drop(op);
        fx.assert_clean(&[]);
    });
}

/// Broken verity metadata: a sidecar root hash that is no hex, and a root hash without
/// any hash tree.
#[test]
fn bad_verity_metadata() {
    ns_test(|base| {
        let fx = Fx::new(base);
        if fx
            .install(
                "erofs",
                "erofs-ext.raw",
                "/var/lib/extensions/erofs-ext.raw",
            )
            .is_none()
        {
            return;
        }
        let ext = fx.path("/var/lib/extensions");
        fs::write(ext.join("erofs-ext.roothash"), "not a hash\n").unwrap();
        refused(
            &fx,
            "erofs-ext",
            "erofs-ext.raw",
            &["erofs-ext.roothash", "hex"],
            (ImageStep::Verity, libc::EINVAL),
        );
        fs::write(
            ext.join("erofs-ext.roothash"),
            format!("{}\n", "12".repeat(32)),
        )
        .unwrap();
        refused(
            &fx,
            "erofs-ext",
            "erofs-ext.raw",
            &["no hash tree"],
            (ImageStep::Verity, libc::ENXIO),
        );
        // A .verity file that is no hash tree.
        fs::write(ext.join("erofs-ext.verity"), vec![0u8; 8192]).unwrap();
        refused(
            &fx,
            "erofs-ext",
            "erofs-ext.raw",
            &["erofs-ext.verity", "no verity superblock"],
            (ImageStep::Verity, libc::EBADMSG),
        );
        // A .usrhash for a bare file system (which counts as root).
        fs::remove_file(ext.join("erofs-ext.roothash")).unwrap();
        fs::write(
            ext.join("erofs-ext.usrhash"),
            format!("{}\n", "12".repeat(32)),
        )
        .unwrap();
        refused(
            &fx,
            "erofs-ext",
            "erofs-ext.raw",
            &["counts as root"],
            (ImageStep::Verity, libc::ENXIO),
        );
        // A sidecar that is a directory.
        fs::remove_file(ext.join("erofs-ext.usrhash")).unwrap();
        fs::create_dir(ext.join("erofs-ext.roothash")).unwrap();
        refused(
            &fx,
            "erofs-ext",
            "erofs-ext.raw",
            &["not a regular file"],
            (ImageStep::Verity, libc::EISDIR),
        );
    });
}
