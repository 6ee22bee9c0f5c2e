//! Disk images over loop devices (no device-mapper needed): bare erofs, squashfs and
//! ext4 file systems, GPT disk images with a `/usr` or root partition, a confext; then
//! unmerge, and nothing may be left. Also `inspect` and the image policy.

use std::fs;
use std::path::PathBuf;

use crate::common::merge;
use extmerge::format::class::Class;
use extmerge::format::fs::FsType;
use extmerge::format::gpt::Role;
use extmerge::format::policy::{PartitionDesignator, Protection};
use extmerge::inspect::image::{
    inspect, HashLocation, HashSource, ImageSource, ImageStep, Layout, SigSource,
};
use extmerge::options::Options;
use extmerge::sys::activate::ImageOpener;

use crate::build;
use crate::common::*;

/// Merges the sysext images installed in `fx` with an [`ImageOpener`], checks that each
/// `names` shows its `hello.txt` under `/usr/share/<name>/`, unmerges and checks that
/// nothing is left.
fn merge_and_check(fx: &Fx, names: &[&str]) {
    let o = fx.opts();
    let mut op = ImageOpener::new(Class::Sysext, None, false);
    let out = merge::merge_with(&o, Class::Sysext, &mut op).unwrap();
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(out.extensions, want, "{out:?}");
    assert_eq!(out.merged, ["/usr"], "{out:?}");
    for n in names {
        assert_eq!(
            fx.read(&format!("/usr/share/{n}/hello.txt")).as_deref(),
            Some(format!("hello from {n}\n").as_str()),
            "{n}"
        );
        let blob = fs::read(fx.path(&format!("/usr/share/{n}/blob.bin"))).unwrap();
        assert_eq!(blob.len(), build::BLOB_LINE.len() * 16384);
    }
    // The host's /usr is still the bottom layer; the list file names the extensions.
    assert_eq!(
        fx.read("/usr/bin/host-tool").as_deref(),
        Some("host tool\n")
    );
    assert_eq!(
        fx.read("/usr/.systemd-sysext/extensions"),
        Some(want.iter().map(|n| format!("{n}\n")).collect::<String>())
    );
    // The images' loop devices are in use while merged.
    assert!(!fx.bound_loops().is_empty());
    // The opener goes; the overlay keeps its layers.
    drop(op);
    assert_eq!(
        fx.read(&format!("/usr/share/{}/hello.txt", names[0]))
            .as_deref(),
        Some(format!("hello from {}\n", names[0]).as_str())
    );
    let done = merge::unmerge(&o, Class::Sysext).unwrap();
    assert_eq!(done, ["/usr"]);
    assert!(!fx.path(&format!("/usr/share/{}", names[0])).exists());
    fx.assert_clean(&[]);
}

/// A bare erofs image.
#[test]
fn bare_erofs() {
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
        merge_and_check(&fx, &["erofs-ext"]);
    });
}

/// A bare squashfs image.
#[test]
fn bare_squashfs() {
    ns_test(|base| {
        let fx = Fx::new(base);
        if fx
            .install(
                "squashfs",
                "squash-ext.raw",
                "/var/lib/extensions/squash-ext.raw",
            )
            .is_none()
        {
            return;
        }
        merge_and_check(&fx, &["squash-ext"]);
    });
}

/// A bare ext4 image (with a journal: mounted `norecovery`).
#[test]
fn bare_ext4() {
    ns_test(|base| {
        let fx = Fx::new(base);
        if fx
            .install("ext4", "ext4-ext.raw", "/var/lib/extensions/ext4-ext.raw")
            .is_none()
        {
            return;
        }
        merge_and_check(&fx, &["ext4-ext"]);
    });
}

/// A GPT disk image with one `/usr` partition (erofs), as `systemd-repart` makes it:
/// mounted at `usr/` of the extension.
#[test]
fn gpt_usr_partition() {
    ns_test(|base| {
        let fx = Fx::new(base);
        if fx
            .install("ddi", "ddi-ext.raw", "/var/lib/extensions/ddi-ext.raw")
            .is_none()
        {
            return;
        }
        let root = fx.open_root();
        let info = inspect(&root, &discovered(&fx, Class::Sysext, "ddi-ext")).unwrap();
        assert!(
            matches!(info.layout, Layout::Gpt { partitions: 1, .. }),
            "{info:?}"
        );
        let v = &info.volumes[0];
        assert_eq!(
            (v.designator, v.mount_point, v.fstype, v.protection),
            (
                PartitionDesignator::Usr,
                "usr",
                FsType::Erofs,
                Protection::Unprotected
            )
        );
        let p = v.partition.as_ref().unwrap();
        assert_eq!(p.role, Role::Usr);
        assert_eq!(p.label, build::repart_label(Role::Usr));
        assert_eq!(info.present, [PartitionDesignator::Usr]);
        merge_and_check(&fx, &["ddi-ext"]);
    });
}

/// A GPT disk image with a root partition holding the whole tree.
#[test]
fn gpt_root_partition() {
    ns_test(|base| {
        let fx = Fx::new(base);
        if fx
            .install(
                "ddi-root",
                "ddi-root.raw",
                "/var/lib/extensions/ddi-root.raw",
            )
            .is_none()
        {
            return;
        }
        merge_and_check(&fx, &["ddi-root"]);
    });
}

/// Several image types in one merge, and a directory extension beside them.
#[test]
fn mixed_images_and_directory() {
    ns_test(|base| {
        let fx = Fx::new(base);
        if fx.install_loop_images().is_none() {
            return;
        }
        build::sysext_tree(&fx.path("/var/lib/extensions/dir-ext"), "dir-ext");
        merge_and_check(&fx, &["erofs-ext", "squash-ext", "ddi-ext", "dir-ext"]);
    });
}

/// A confext image (erofs with `etc/`), merged on `/etc` with confext's flags.
#[test]
fn confext_erofs() {
    ns_test(|base| {
        let fx = Fx::new(base);
        if fx
            .install("confext", "conf-ext.raw", "/var/lib/confexts/conf-ext.raw")
            .is_none()
        {
            return;
        }
        let o = fx.opts();
        let mut op = ImageOpener::new(Class::Confext, None, false);
        let out = merge::merge_with(&o, Class::Confext, &mut op).unwrap();
        drop(op);
        assert_eq!(out.extensions, ["conf-ext"]);
        assert_eq!(out.merged, ["/etc"]);
        assert_eq!(
            fx.read("/etc/conf-ext.conf").as_deref(),
            Some("conf from conf-ext\n")
        );
        assert_eq!(fx.read("/etc/host.conf").as_deref(), Some("host conf\n"));
        assert_eq!(merge::unmerge(&o, Class::Confext).unwrap(), ["/etc"]);
        assert!(!fx.path("/etc/conf-ext.conf").exists());
        fx.assert_clean(&[]);
    });
}

/// refresh with a new opener replaces the merge (images mounted again), then unmerge.
#[test]
fn refresh_with_images() {
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
        let o = fx.opts();
        let mut op = ImageOpener::new(Class::Sysext, None, false);
        merge::merge_with(&o, Class::Sysext, &mut op).unwrap();
        drop(op);
        // Unchanged: nothing happens (the images were opened for planning, then let go).
        let mut op = ImageOpener::new(Class::Sysext, None, false);
        let out = merge::refresh_with(&o, Class::Sysext, &mut op).unwrap();
        drop(op);
        assert!(out.unchanged, "{out:?}");
        // A sidecar that appears next to the unchanged image changes its verity inputs,
        // a dangling symlink too (either now refuses the image: checked directly here).
        let root = fx.open_root();
        let img = discovered(&fx, Class::Sysext, "erofs-ext");
        let stamp = extmerge::inspect::image::verity_inputs_stamp(&root, &img);
        let sig = fx.path("/var/lib/extensions/erofs-ext.roothash.p7s");
        fs::write(&sig, b"sig").unwrap();
        assert_ne!(
            extmerge::inspect::image::verity_inputs_stamp(&root, &img),
            stamp
        );
        fs::remove_file(&sig).unwrap();
        std::os::unix::fs::symlink("nowhere", &sig).unwrap();
        assert_ne!(
            extmerge::inspect::image::verity_inputs_stamp(&root, &img),
            stamp
        );
        fs::remove_file(&sig).unwrap();
        // The image's ctime changes (as setting a user.verity.* xattr changes it): the
        // verity inputs changed, so it refreshes.
        fs::set_permissions(
            fx.path("/var/lib/extensions/erofs-ext.raw"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let mut op = ImageOpener::new(Class::Sysext, None, false);
        let out = merge::refresh_with(&o, Class::Sysext, &mut op).unwrap();
        drop(op);
        assert!(!out.unchanged, "{out:?}");
        assert_eq!(out.merged, ["/usr"], "{out:?}");
        let mut op = ImageOpener::new(Class::Sysext, None, false);
        let out = merge::refresh_with(&o, Class::Sysext, &mut op).unwrap();
        drop(op);
        assert!(out.unchanged, "{out:?}");
        // Forced: the overlay is replaced.
        let forced = Options {
            always_refresh: true,
            ..o.clone()
        };
        let mut op = ImageOpener::new(Class::Sysext, None, false);
        let out = merge::refresh_with(&forced, Class::Sysext, &mut op).unwrap();
        drop(op);
        assert_eq!(out.merged, ["/usr"], "{out:?}");
        assert_eq!(
            fx.read("/usr/share/erofs-ext/hello.txt").as_deref(),
            Some("hello from erofs-ext\n")
        );
        // One overlay on /usr, one set of loop devices (the old ones went with the old
        // overlay).
        let usr = fx.path("/usr").to_string_lossy().into_owned();
        let on_usr = fx
            .mounts()
            .iter()
            .filter(|l| l.split(' ').nth(4) == Some(usr.as_str()))
            .count();
        assert_eq!(on_usr, 1, "{:#?}", fx.mounts());
        merge::unmerge(&o, Class::Sysext).unwrap();
        fx.assert_clean(&[]);
    });
}

/// The image policy: an unprotected image under a policy that demands signatures is
/// refused before anything is attached; `/.extra/` paths in the initrd get the strict
/// policies, other `/.extra/` paths are denied.
#[test]
fn policy_refuses_unprotected() {
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
        let strict = "usr=signed+absent:root=signed+absent:=unused+absent";
        let mut op = opener(Class::Sysext, Some(strict));
        let e = plan_refuses(
            &fx,
            Class::Sysext,
            &mut op,
            "erofs-ext",
            &[
                "erofs-ext.raw",
                "image policy",
                "forbids",
                "root partition without verity",
            ],
        );
        eprintln!("refused as expected: {e}");
        drop(op);
        fx.assert_clean(&[]);

        // The initrd without --root: /.extra/sysext/ is strict, /.extra/other/ denied.
        fx.install("erofs", "erofs-ext.raw", "/.extra/sysext/erofs-ext.raw")
            .unwrap();
        fx.install("erofs", "erofs-ext.raw", "/.extra/other/erofs-ext.raw")
            .unwrap();
        let mut op = ImageOpener::new(Class::Sysext, None, true);
        // systemd answers a policy refusal with -ERFKILL.
        for (at, why) in [
            ("/.extra/sysext/erofs-ext.raw", "without verity"),
            ("/.extra/other/erofs-ext.raw", "forbids any root partition"),
        ] {
            let e = open_fails(
                &fx,
                &mut op,
                &raw_image("erofs-ext", at),
                &["image policy", why],
            );
            assert_eq!(
                (e.step, e.errno()),
                (ImageStep::Policy, libc::ERFKILL),
                "{e}"
            );
            assert!(matches!(e.source, ImageSource::Refused { .. }), "{e:?}");
        }
        // Outside /.extra/ the default policy applies even in the initrd.
        let root = fx.open_root();
        extmerge::inspect::Opener::open(
            &mut op,
            &root,
            &raw_image("erofs-ext", "/var/lib/extensions/erofs-ext.raw"),
        )
        .unwrap();
        drop(op);
        fx.assert_clean(&[]);
    });
}

/// `inspect` reports layout, partitions, verity sources and protection without
/// attaching anything (verity images need no device-mapper for this).
#[test]
fn inspect_verity_metadata() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let (Some(ddi), Some(nosig), Some(bare)) = (
            fx.fixture("ddi-verity"),
            fx.fixture("ddi-verity-nosig"),
            fx.fixture("bare-verity"),
        ) else {
            return;
        };
        let ext = fx.path("/var/lib/extensions");
        fs::copy(ddi.join("ddi-verity.raw"), ext.join("ddi-verity.raw")).unwrap();
        fs::copy(
            nosig.join("ddi-verity-nosig.raw"),
            ext.join("ddi-verity-nosig.raw"),
        )
        .unwrap();
        for f in [
            "bare-verity.raw",
            "bare-verity.roothash",
            "bare-verity.verity",
        ] {
            fs::copy(bare.join(f), ext.join(f)).unwrap();
        }
        let root = fx.open_root();
        let rh =
            |dir: &PathBuf, f: &str| fs::read_to_string(dir.join(f)).unwrap().trim().to_string();

        // GPT: usr + usr-verity + usr-verity-sig: signed.
        let info = inspect(&root, &discovered(&fx, Class::Sysext, "ddi-verity")).unwrap();
        assert!(
            matches!(info.layout, Layout::Gpt { partitions: 3, .. }),
            "{info:?}"
        );
        let v = &info.volumes[0];
        assert_eq!(v.protection, Protection::Signed);
        assert_eq!(info.protection(), Protection::Signed);
        let (hash, src) = v.root_hash.as_ref().unwrap();
        assert_eq!(hash.to_string(), rh(&ddi, "ddi-verity.roothash.txt"));
        assert!(matches!(src, HashSource::SigPartition(3)), "{src:?}");
        assert!(matches!(v.signature, Some((_, SigSource::SigPartition(3)))));
        let tree = v.hash_tree.as_ref().unwrap();
        assert!(matches!(&tree.location, HashLocation::Partition(p) if p.role == Role::UsrVerity));
        assert!(tree.superblock.is_some());
        for d in [
            PartitionDesignator::Usr,
            PartitionDesignator::UsrVerity,
            PartitionDesignator::UsrVeritySig,
        ] {
            assert!(info.present.contains(&d), "{:?}", info.present);
        }

        // GPT without signature partition: the root hash comes from the partition UUIDs.
        let info = inspect(&root, &discovered(&fx, Class::Sysext, "ddi-verity-nosig")).unwrap();
        let v = &info.volumes[0];
        assert_eq!(v.protection, Protection::Verity);
        let (hash, src) = v.root_hash.as_ref().unwrap();
        assert_eq!(
            hash.to_string(),
            rh(&nosig, "ddi-verity-nosig.roothash.txt")
        );
        assert_eq!(*src, HashSource::PartitionUuids);

        // Bare file system with .roothash and .verity: verity; with .roothash.p7s: signed.
        let img = discovered(&fx, Class::Sysext, "bare-verity");
        let info = inspect(&root, &img).unwrap();
        assert_eq!(info.layout, Layout::Bare);
        let v = &info.volumes[0];
        assert_eq!(
            (v.designator, v.protection, v.fstype),
            (PartitionDesignator::Root, Protection::Verity, FsType::Erofs)
        );
        assert_eq!(
            v.root_hash.as_ref().unwrap().1,
            HashSource::Sidecar("/var/lib/extensions/bare-verity.roothash".into())
        );
        assert!(matches!(
            &v.hash_tree.as_ref().unwrap().location,
            HashLocation::Sidecar { path, .. } if path == &PathBuf::from("/var/lib/extensions/bare-verity.verity")
        ));
        fs::copy(
            bare.join("bare-verity.p7s.sample"),
            ext.join("bare-verity.roothash.p7s"),
        )
        .unwrap();
        let info = inspect(&root, &img).unwrap();
        assert_eq!(info.protection(), Protection::Signed);
        // The root hash from the xattr wins over the sidecar.
        let other = "ab".repeat(32);
        if xattr_set(&ext.join("bare-verity.raw"), "user.verity.roothash", &other) {
            let info = inspect(&root, &img).unwrap();
            let (h, s) = info.volumes[0].root_hash.as_ref().unwrap();
            assert_eq!(
                (h.to_string(), s),
                (other, &HashSource::Xattr("user.verity.roothash"))
            );
        }

        // A plain image: unprotected; directories are no disk images.
        fs::copy(bare.join("bare-verity.raw"), ext.join("plain.raw")).unwrap();
        let info = inspect(&root, &discovered(&fx, Class::Sysext, "plain")).unwrap();
        assert_eq!(info.protection(), Protection::Unprotected);
        assert!(info.volumes[0].hash_tree.is_none());
        build::sysext_tree(&fx.path("/var/lib/extensions/dir"), "dir");
        let e = inspect(&root, &discovered(&fx, Class::Sysext, "dir")).unwrap_err();
        assert_eq!((e.step, e.errno()), (ImageStep::Open, libc::EISDIR), "{e}");
        fx.assert_clean(&[]);
    });
}

/// Sets a `user.` xattr; false (after printing why) where the file system has none.
fn xattr_set(p: &std::path::Path, name: &str, value: &str) -> bool {
    match rustix::fs::setxattr(p, name, value.as_bytes(), rustix::fs::XattrFlags::empty()) {
        Ok(()) => true,
        Err(e) => {
            eprintln!(
                "no user xattrs on {} ({e}): xattr case not run",
                p.display()
            );
            false
        }
    }
}

/// Without device-mapper (this project's host), a verity image fails with an error
/// saying so, and nothing is left attached. (With device-mapper see `verity.rs`.)
#[test]
fn verity_without_device_mapper() {
    ns_test(|base| {
        if have_dm() {
            eprintln!("device-mapper present: the dm-verity tests cover this");
            return;
        }
        let fx = Fx::new(base);
        let Some(dir) = fx.fixture("bare-verity") else {
            return;
        };
        for f in [
            "bare-verity.raw",
            "bare-verity.roothash",
            "bare-verity.verity",
        ] {
            fs::copy(dir.join(f), fx.path("/var/lib/extensions").join(f)).unwrap();
        }
        let mut op = opener(Class::Sysext, None);
        plan_refuses(
            &fx,
            Class::Sysext,
            &mut op,
            "bare-verity",
            &["bare-verity.raw", "device-mapper"],
        );
        drop(op);
        fx.assert_clean(&[]);
    });
}

/// A block device as the image (here a loop device the test binds itself): no sidecars,
/// size from `lseek(SEEK_END)`, a loop device over it.
#[test]
fn block_device_image() {
    use extmerge::sys::loopdev::{LoopDevice, LoopOptions};
    use std::os::unix::fs::FileTypeExt;
    ns_test(|base| {
        let fx = Fx::new(base);
        let Some(dir) = fx.fixture("erofs") else {
            return;
        };
        let file = fs::File::open(dir.join("erofs-ext.raw")).unwrap();
        let opts = LoopOptions {
            read_only: true,
            ..LoopOptions::default()
        };
        let lo = LoopDevice::attach(std::os::fd::AsFd::as_fd(&file), 0, 0, opts).unwrap();
        let node = fx.path("/var/lib/extensions/erofs-ext");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &node,
            rustix::fs::FileType::BlockDevice,
            rustix::fs::Mode::from_raw_mode(0o600),
            lo.dev(),
        )
        .unwrap();
        assert!(fs::metadata(&node).unwrap().file_type().is_block_device());
        if let Err(e) = fs::File::open(&node) {
            // A nodev /tmp (as in some VMs): device nodes cannot be opened there.
            eprintln!(
                "cannot open a device node below {}: {e}; case not run",
                base.display()
            );
            lo.detach().unwrap();
            return;
        }
        let img = discovered(&fx, Class::Sysext, "erofs-ext");
        assert_eq!(img.kind, extmerge::inspect::discover::ImageKind::Block);
        let info = inspect(&fx.open_root(), &img).unwrap();
        assert_eq!(
            info.size,
            fs::metadata(dir.join("erofs-ext.raw")).unwrap().len()
        );
        assert_eq!(info.layout, Layout::Bare);
        let o = fx.opts();
        let mut op = ImageOpener::new(Class::Sysext, None, false);
        let out = merge::merge_with(&o, Class::Sysext, &mut op).unwrap();
        drop(op);
        assert_eq!(out.extensions, ["erofs-ext"]);
        assert_eq!(
            fx.read("/usr/share/erofs-ext/hello.txt").as_deref(),
            Some("hello from erofs-ext\n")
        );
        merge::unmerge(&o, Class::Sysext).unwrap();
        // Our loop over the test's loop device is gone; the test's own one remains
        // until detached here.
        let inner = lo.path().display().to_string();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while bound_loops().iter().any(|(_, b)| *b == inner) {
            assert!(
                std::time::Instant::now() < deadline,
                "loop over {inner} left"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        lo.detach().unwrap();
        fx.assert_clean(&[]);
    });
}
