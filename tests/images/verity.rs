//! dm-verity images (need device-mapper: run in the VM with
//! `tests/vm/run-image-tests.sh`; elsewhere they print SKIP, and under `EXTMERGE_VM`
//! a missing device-mapper is a failure). Every case checks that no loop or dm device
//! is left afterwards.

use std::fs;
use std::io::Read;
use std::os::unix::fs::FileExt;

use crate::common::merge;
use extmerge::format::class::Class;
use extmerge::format::verity::RootHash;
use extmerge::inspect::image::{inspect, ImageStep};
use extmerge::options::Options;
use extmerge::sys::activate::verity_dm_name;
use extmerge::sys::dm::{Dm, DmTarget};

use crate::build;
use crate::common::*;

/// Policy that uses verity but ignores signatures.
const VERITY_ONLY: &str = "usr=verity+absent:root=verity+absent:=unused+absent";
/// Policy that demands signatures.
const SIGNED_ONLY: &str = "usr=signed+absent:root=signed+absent:=unused+absent";

/// Runs `body` in a private namespace when device-mapper is there.
fn dm_test(body: impl FnOnce(&std::path::Path) + Send + 'static) {
    ns_test(|base| {
        if !have_dm() {
            skip("no device-mapper (run tests/vm/run-image-tests.sh)");
            return;
        }
        body(base);
    });
}

/// The dm name of the verity device for `root_hash_hex`.
fn dm_name(root_hash_hex: &str) -> String {
    verity_dm_name(&RootHash::from_hex(root_hash_hex).unwrap())
}

/// Installs the `bare-verity` fixture as `/var/lib/extensions/<stem>.*` (image,
/// `.roothash`, `.verity`); returns its root hash.
fn install_bare(fx: &Fx, stem: &str) -> Option<String> {
    let dir = fx.fixture("bare-verity")?;
    let ext = fx.path("/var/lib/extensions");
    for (from, to) in [
        ("bare-verity.raw", format!("{stem}.raw")),
        ("bare-verity.roothash", format!("{stem}.roothash")),
        ("bare-verity.verity", format!("{stem}.verity")),
    ] {
        fs::copy(dir.join(from), ext.join(to)).unwrap();
    }
    Some(
        fs::read_to_string(dir.join("bare-verity.roothash"))
            .unwrap()
            .trim()
            .to_string(),
    )
}

/// Installs the `ddi-verity` GPT image (usr + usr-verity + usr-verity-sig) as
/// `/var/lib/extensions/ddi-verity.raw`; returns the name of its verity device.
fn install_ddi_verity(fx: &Fx) -> Option<String> {
    fx.install(
        "ddi-verity",
        "ddi-verity.raw",
        "/var/lib/extensions/ddi-verity.raw",
    )?;
    let rh =
        fs::read_to_string(fx.base.join("fixtures/ddi-verity/ddi-verity.roothash.txt")).unwrap();
    Some(dm_name(rh.trim()))
}

/// Merges with `policy`, checks the files of extension `name` (whose files are named
/// after `tree`), checks that the verity device exists while merged, unmerges and checks
/// that nothing is left.
fn merge_verity(fx: &Fx, name: &str, tree: &str, policy: Option<&str>, dm: &str) {
    let o = fx.opts();
    let mut op = opener(Class::Sysext, policy);
    let out = merge::merge_with(&o, Class::Sysext, &mut op).unwrap();
    drop(op);
    assert_eq!(out.extensions, [name], "{out:?}");
    assert_eq!(
        fx.read(&format!("/usr/share/{tree}/hello.txt")).as_deref(),
        Some(format!("hello from {tree}\n").as_str())
    );
    let blob = fs::read(fx.path(&format!("/usr/share/{tree}/blob.bin"))).unwrap();
    assert_eq!(blob, build::BLOB_LINE.repeat(16384).as_bytes());
    assert!(
        dm_exists(dm),
        "{dm} missing; dm devices: {:?}",
        dm_devices()
    );
    assert_eq!(merge::unmerge(&o, Class::Sysext).unwrap(), ["/usr"]);
    fx.assert_clean(&[dm.to_string()]);
}

/// GPT disk image with usr + usr-verity + usr-verity-sig under a policy that ignores
/// signatures: the root hash from the signature partition's JSON, verity without key.
#[test]
fn gpt_verity_merges() {
    dm_test(|base| {
        let fx = Fx::new(base);
        let Some(dm) = install_ddi_verity(&fx) else {
            return;
        };
        merge_verity(&fx, "ddi-verity", "ddi-verity", Some(VERITY_ONLY), &dm);
    });
}

/// GPT disk image without signature partition: root hash from the partition UUIDs.
#[test]
fn gpt_verity_uuid_root_hash_merges() {
    dm_test(|base| {
        let fx = Fx::new(base);
        if fx
            .install(
                "ddi-verity-nosig",
                "ddi-verity-nosig.raw",
                "/var/lib/extensions/ddi-verity-nosig.raw",
            )
            .is_none()
        {
            return;
        }
        let rh = fs::read_to_string(
            fx.base
                .join("fixtures/ddi-verity-nosig/ddi-verity-nosig.roothash.txt"),
        )
        .unwrap();
        merge_verity(
            &fx,
            "ddi-verity-nosig",
            "ddi-verity-nosig",
            None,
            &dm_name(rh.trim()),
        );
    });
}

/// Bare erofs + `.roothash` + `.verity`; then a forced refresh, which finds the verity
/// device of the running merge and reuses it (same root hash, same table).
#[test]
fn bare_verity_sidecars_merge_and_refresh() {
    dm_test(|base| {
        let fx = Fx::new(base);
        let Some(rh) = install_bare(&fx, "bare-verity") else {
            return;
        };
        let dm = dm_name(&rh);
        let o = fx.opts();
        let mut op = opener(Class::Sysext, None);
        merge::merge_with(&o, Class::Sysext, &mut op).unwrap();
        drop(op);
        assert!(dm_exists(&dm));
        let forced = Options {
            always_refresh: true,
            ..o.clone()
        };
        let mut op = opener(Class::Sysext, None);
        let out = merge::refresh_with(&forced, Class::Sysext, &mut op).unwrap();
        drop(op);
        assert_eq!(out.merged, ["/usr"], "{out:?}");
        assert_eq!(
            dm_devices().iter().filter(|n| **n == dm).count(),
            1,
            "{:?}",
            dm_devices()
        );
        assert_eq!(
            fx.read("/usr/share/bare-verity/hello.txt").as_deref(),
            Some("hello from bare-verity\n")
        );
        merge::unmerge(&o, Class::Sysext).unwrap();
        fx.assert_clean(&[dm]);
    });
}

/// One flipped data byte: the merge succeeds (dm-verity checks blocks when they are
/// read), reading the corrupted file fails with EIO, an untouched file still reads.
#[test]
fn corrupted_block_fails_reads_with_eio() {
    dm_test(|base| {
        let fx = Fx::new(base);
        let Some(rh) = install_bare(&fx, "bare-verity") else {
            return;
        };
        let img = fx.path("/var/lib/extensions/bare-verity.raw");
        let data = fs::read(&img).unwrap();
        let line = build::BLOB_LINE.as_bytes();
        let off = data
            .windows(line.len())
            .enumerate()
            .filter(|(_, w)| *w == line)
            .map(|(i, _)| i)
            .nth(12000)
            .expect("blob marker in the image");
        assert!(
            off > 64 * 1024,
            "corruption too close to the superblock: {off}"
        );
        fs::OpenOptions::new()
            .write(true)
            .open(&img)
            .unwrap()
            .write_all_at(b"Z", off as u64)
            .unwrap();
        let o = fx.opts();
        let mut op = opener(Class::Sysext, None);
        let out = merge::merge_with(&o, Class::Sysext, &mut op).unwrap();
        drop(op);
        assert_eq!(out.extensions, ["bare-verity"]);
        assert_eq!(
            fx.read("/usr/share/bare-verity/hello.txt").as_deref(),
            Some("hello from bare-verity\n")
        );
        let mut f = fs::File::open(fx.path("/usr/share/bare-verity/blob.bin")).unwrap();
        let mut buf = Vec::new();
        let e = f.read_to_end(&mut buf).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
        drop(f);
        merge::unmerge(&o, Class::Sysext).unwrap();
        fx.assert_clean(&[dm_name(&rh)]);
    });
}

/// A `.roothash` with another value: the verity device cannot read the superblock, the
/// image is refused with a clear error, and no dm or loop device is left.
#[test]
fn wrong_root_hash_is_refused() {
    dm_test(|base| {
        let fx = Fx::new(base);
        let Some(rh) = install_bare(&fx, "bare-verity") else {
            return;
        };
        let mut wrong: Vec<u8> = rh.clone().into_bytes();
        wrong[10] = if wrong[10] == b'0' { b'1' } else { b'0' };
        let wrong = String::from_utf8(wrong).unwrap();
        fs::write(
            fx.path("/var/lib/extensions/bare-verity.roothash"),
            format!("{wrong}\n"),
        )
        .unwrap();
        let before = dm_devices();
        let mut op = opener(Class::Sysext, None);
        plan_refuses(
            &fx,
            Class::Sysext,
            &mut op,
            "bare-verity",
            &[
                "bare-verity.raw",
                "dm-verity",
                "Input/output error",
                "does the root hash match the image?",
            ],
        );
        // dm-verity refuses the read: EIO at the verity step.
        let e = open_fails(
            &fx,
            &mut op,
            &raw_image("bare-verity", "/var/lib/extensions/bare-verity.raw"),
            &["dm-verity", "does the root hash match the image?"],
        );
        assert_eq!((e.step, e.errno()), (ImageStep::Verity, libc::EIO), "{e}");
        drop(op);
        fx.assert_clean(&[dm_name(&wrong), dm_name(&rh)]);
        assert_eq!(dm_devices(), before);
    });
}

/// Signed images: the test certificate is in none of the kernel's trusted keyrings,
/// so the kernel refuses the signature: from the GPT signature partition (default
/// policy) and from a `.roothash.p7s` sidecar. Nothing is left.
#[test]
fn untrusted_signature_is_refused_by_the_kernel() {
    dm_test(|base| {
        let fx = Fx::new(base);
        let Some(p) = fx.install(
            "ddi-verity",
            "ddi-verity.raw",
            "/var/lib/extensions/ddi-verity.raw",
        ) else {
            return;
        };
        let root = fx.open_root();
        let img = discovered(&fx, Class::Sysext, "ddi-verity");
        let rh = inspect(&root, &img).unwrap().volumes[0]
            .root_hash
            .clone()
            .unwrap()
            .0;
        let mut op = opener(Class::Sysext, None);
        let e = plan_refuses(
            &fx,
            Class::Sysext,
            &mut op,
            "ddi-verity",
            &[
                "ddi-verity.raw",
                "the kernel refused the root hash signature from signature partition",
                "its signer is not in the kernel's trusted keyrings",
            ],
        );
        eprintln!("refused as expected: {e}");
        drop(op);
        fs::remove_file(&p).unwrap();
        fx.assert_clean(&[verity_dm_name(&rh)]);

        let Some(rh) = install_bare(&fx, "bare-verity") else {
            return;
        };
        let sample = fx.base.join("fixtures/bare-verity/bare-verity.p7s.sample");
        fs::copy(
            sample,
            fx.path("/var/lib/extensions/bare-verity.roothash.p7s"),
        )
        .unwrap();
        let mut op = opener(Class::Sysext, Some(SIGNED_ONLY));
        plan_refuses(
            &fx,
            Class::Sysext,
            &mut op,
            "bare-verity",
            &[
                "bare-verity.raw",
                "the kernel refused the root hash signature from",
                "bare-verity.roothash.p7s",
                "its signer is not in the kernel's trusted keyrings",
            ],
        );
        // The kernel's own errno (EKEYREJECTED, ENOKEY, …), as systemd passes it on.
        let e = open_fails(
            &fx,
            &mut op,
            &raw_image("bare-verity", "/var/lib/extensions/bare-verity.raw"),
            &["the kernel refused the root hash signature"],
        );
        assert_eq!(e.step, ImageStep::Signature, "{e}");
        assert!(
            extmerge::sys::keyring::is_signature_refusal(e.errno()),
            "errno {}: {e}",
            e.errno()
        );
        drop(op);
        fx.assert_clean(&[dm_name(&rh)]);
    });
}

/// An unsigned (verity-only) image under a policy that requires signatures is refused
/// before any loop or dm device is made.
#[test]
fn unsigned_image_under_signed_policy() {
    dm_test(|base| {
        let fx = Fx::new(base);
        let Some(rh) = install_bare(&fx, "bare-verity") else {
            return;
        };
        let before = dm_devices();
        let mut op = opener(Class::Sysext, Some(SIGNED_ONLY));
        plan_refuses(
            &fx,
            Class::Sysext,
            &mut op,
            "bare-verity",
            &[
                "image policy",
                "forbids",
                "root partition without signature",
            ],
        );
        assert_eq!(dm_devices(), before);
        assert!(fx.bound_loops().is_empty());
        drop(op);
        fx.assert_clean(&[dm_name(&rh)]);
    });
}

/// A dm device of the verity name with another table is not reused: the open fails
/// naming it, and the foreign device is left alone.
#[test]
fn foreign_device_of_the_same_name_is_refused() {
    dm_test(|base| {
        let fx = Fx::new(base);
        let Some(rh) = install_bare(&fx, "bare-verity") else {
            return;
        };
        let name = dm_name(&rh);
        let dm = Dm::open().unwrap();
        let target = DmTarget {
            start: 0,
            length: 8,
            target_type: "error",
            params: "",
        };
        let dev = dm.create(&name, None, &[target], true).unwrap();
        let mut op = opener(Class::Sysext, None);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            plan_refuses(
                &fx,
                Class::Sysext,
                &mut op,
                "bare-verity",
                &[&name, "cannot be reused"],
            );
            let e = open_fails(
                &fx,
                &mut op,
                &raw_image("bare-verity", "/var/lib/extensions/bare-verity.raw"),
                &[&name, "cannot be reused"],
            );
            assert_eq!((e.step, e.errno()), (ImageStep::Dm, libc::EBUSY), "{e}");
        }));
        drop(op);
        assert!(dm_exists(&name), "the foreign device must stay");
        dm.remove(&dev.name, false).unwrap();
        if let Err(p) = r {
            std::panic::resume_unwind(p);
        }
        fx.assert_clean(&[name]);
    });
}

/// Fault sweep over a dm-verity GPT image: the data and hash loop devices, the verity
/// device, the mount and the staging steps each fail once; nothing may be left, the
/// dm device included.
#[test]
fn every_verity_step_fails_cleanly() {
    dm_test(|base| {
        let fx = Fx::new(base);
        let Some(dm) = install_ddi_verity(&fx) else {
            return;
        };
        // data loop, hash loop, dm-verity, mount, staging tmpfs, directory, attach.
        crate::faults::sweep(&fx, Some(VERITY_ONLY), &["ddi-verity"], &[dm], 7);
    });
}
