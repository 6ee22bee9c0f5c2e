//! Verity downgrades: an image that carries verity for a file system (a `-verity`
//! partition, a `.verity` sidecar) is mounted through dm-verity or refused, never as it
//! is; a sidecar that is there but unusable refuses the image too. Each case is refused
//! with an error naming the image (and the sidecar) and the reason, is not merged, and
//! leaves nothing behind.
//!
//! Most refusals happen while the image is inspected, before any device is set up: those
//! tests need no device-mapper and run everywhere (in the VM too). The damaged hash tree
//! behind an intact superblock is for dm-verity itself to refuse (VM only).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use crate::common::merge;
use extmerge::format::class::Class;
use extmerge::format::verity::RootHash;
use extmerge::inspect::image::{inspect, ImageSource, ImageStep};
use extmerge::sys::activate::verity_dm_name;

use crate::common::*;
use crate::hostile::edit_entries;

/// Where the refusal comes from.
#[derive(Clone, Copy, PartialEq)]
enum At {
    /// Reading the image's metadata: `inspect` fails too.
    Inspect,
    /// The image policy or the device setup: `inspect` succeeds.
    Open,
}

/// `image` (`/var/lib/extensions/<file>`, extension `name`) must be refused by the plan,
/// by a direct open and by a merge, each time with `needles` (and the image's file name)
/// in the message; with [`At::Inspect`], `inspect` must fail with `needles` too. The
/// extension's files never appear under `/usr`, and nothing is left (`dm`: names of dm
/// devices that must not exist afterwards).
#[track_caller]
fn refused(
    fx: &Fx,
    at: At,
    policy: Option<&str>,
    name: &str,
    file: &str,
    needles: &[&str],
    dm: &[String],
) {
    let mut all = vec![file];
    all.extend_from_slice(needles);
    let mut op = opener(Class::Sysext, policy);
    let e = plan_refuses(fx, Class::Sysext, &mut op, name, &all);
    eprintln!("{name}: refused as expected: {e}");
    let image = raw_image(name, &format!("/var/lib/extensions/{file}"));
    let opened = open_fails(fx, &mut op, &image, &all);
    drop(op);
    match at {
        At::Inspect => {
            let e = inspect(&fx.open_root(), &image)
                .map(|i| format!("{i:?}"))
                .expect_err("inspect must refuse it too");
            let msg = e.to_string();
            for n in needles {
                assert!(
                    msg.contains(n),
                    "inspect: error should contain {n:?}: {msg}"
                );
            }
            // The same refusal, before any device is set up.
            assert_eq!((e.step, e.errno()), (opened.step, opened.errno()), "{msg}");
            assert!(
                matches!(
                    e.step,
                    ImageStep::Open
                        | ImageStep::PartitionTable
                        | ImageStep::FileSystem
                        | ImageStep::Verity
                        | ImageStep::Signature
                ),
                "{:?}: {msg}",
                e.step
            );
            assert!(
                matches!(
                    e.source,
                    ImageSource::Invalid { .. } | ImageSource::Os { .. }
                ),
                "{e:?}"
            );
        }
        // An image policy refuses with ERFKILL (as systemd); without one, the refusal
        // comes from the device setup.
        At::Open if policy.is_some() => {
            assert_eq!(
                (opened.step, opened.errno()),
                (ImageStep::Policy, libc::ERFKILL),
                "{opened}"
            );
        }
        At::Open => assert!(
            !matches!(opened.step, ImageStep::Policy | ImageStep::Open),
            "{:?}: {opened}",
            opened.step
        ),
    }
    let mut op = opener(Class::Sysext, policy);
    match merge::merge_with(&fx.opts(), Class::Sysext, &mut op) {
        Err(e) => {
            let e = e.to_string();
            assert!(e.contains(file), "merge error should name {file}: {e}");
        }
        Ok(out) => {
            assert!(
                !out.extensions.iter().any(|x| x == name),
                "{name} merged: {out:?}"
            );
            if !out.merged.is_empty() {
                merge::unmerge(&fx.opts(), Class::Sysext).unwrap();
            }
        }
    }
    drop(op);
    assert!(
        !fx.path(&format!("/usr/share/{name}")).exists(),
        "{name}'s files are visible under /usr"
    );
    fx.assert_clean(dm);
}

/// Installs file `file` of fixture `fixture` as `/var/lib/extensions/<to>`.
fn put(fx: &Fx, fixture: &str, file: &str, to: &str) -> Option<()> {
    fx.install(fixture, file, &format!("/var/lib/extensions/{to}"))
        .map(drop)
}

/// The dm name the UUID-derived root hash of GPT fixture `name` would get.
fn dm_of(fx: &Fx, name: &str) -> String {
    let rh =
        fs::read_to_string(fx.base.join(format!("fixtures/{name}/{name}.roothash.txt"))).unwrap();
    let b = RootHash::from_hex(rh.trim()).unwrap();
    let mut uuids = b.as_bytes()[..16].to_vec();
    uuids.extend_from_slice(&b.as_bytes()[b.as_bytes().len() - 16..]);
    verity_dm_name(&RootHash::from_bytes(&uuids).unwrap())
}

/// The GPT fixture `name` (`name.raw`) is refused at inspection with every one of
/// `reasons` in its error, and nothing stays behind (`with_dm`: also not the dm-verity
/// device its partition UUIDs name).
fn fixture_refused_at_inspect(name: &'static str, reasons: &'static [&'static str], with_dm: bool) {
    ns_test(move |base| {
        let fx = Fx::new(base);
        let file = format!("{name}.raw");
        if put(&fx, name, &file, &file).is_none() {
            return;
        }
        let dm_left: Vec<_> = if with_dm {
            vec![dm_of(&fx, name)]
        } else {
            Vec::new()
        };
        refused(&fx, At::Inspect, None, name, &file, reasons, &dm_left);
    });
}

/// usr + usr-verity whose verity superblock is zeroed (the partition UUIDs still give
/// the root hash): refused for the superblock, not merged without verity.
#[test]
fn zeroed_verity_superblock_is_refused() {
    fixture_refused_at_inspect(
        "ddi-verity-zeroed",
        &[
            "usr-verity partition 2",
            "no verity superblock signature",
            "not mounted without verity",
        ],
        true,
    );
}

/// usr + usr-verity whose verity partition is all junk.
#[test]
fn garbage_verity_partition_is_refused() {
    fixture_refused_at_inspect(
        "ddi-verity-garbage",
        &[
            "usr-verity partition 2",
            "no verity superblock signature",
            "not mounted without verity",
        ],
        true,
    );
}

/// A SHA-512 hash tree: the root hash the partition UUIDs give (32 bytes) cannot be its
/// root hash. Refused, not mounted plain.
#[test]
fn uuid_root_hash_of_the_wrong_length_is_refused() {
    fixture_refused_at_inspect(
        "ddi-verity-sha512",
        &[
            "root hash from the partition UUIDs does not fit the hash tree",
            "sha512",
        ],
        false,
    );
}

/// A nil partition UUID (verity partition, then data partition): no root hash can be
/// derived; refused. (The image keeps its name, which its extension-release file
/// matches: ignoring the verity partition would merge it.)
#[test]
fn nil_partition_uuid_is_refused() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let name = "ddi-verity-nosig";
        let file = format!("{name}.raw");
        for (entry, role) in [(1usize, "usr-verity partition 2"), (0, "usr partition 1")] {
            let Some(()) = put(&fx, name, &file, &file) else {
                return;
            };
            let img = fx.path(&format!("/var/lib/extensions/{file}"));
            edit_entries(&img, |arr, esize| {
                arr[entry * esize + 16..entry * esize + 32].fill(0);
            });
            refused(
                &fx,
                At::Inspect,
                None,
                name,
                &file,
                &[role, "nil partition UUID", "not mounted without verity"],
                &[],
            );
        }
    });
}

/// A `-verity` partition (or, beside one, the `-verity-sig` partition) marked "no-auto":
/// automatic discovery skips it, which must not leave the data unprotected (or unsigned).
#[test]
fn no_auto_verity_partition_is_refused() {
    ns_test(|base| {
        let fx = Fx::new(base);
        for (name, entry, needle) in [
            (
                "ddi-verity-nosig",
                1usize,
                "usr-verity partition 2 is marked no-auto",
            ),
            (
                "ddi-verity",
                2,
                "usr-verity-sig partition 3 is marked no-auto",
            ),
        ] {
            let file = format!("{name}.raw");
            let Some(()) = put(&fx, name, &file, &file) else {
                return;
            };
            let img = fx.path(&format!("/var/lib/extensions/{file}"));
            edit_entries(&img, |arr, esize| {
                let at = entry * esize + 48;
                let attrs = u64::from_le_bytes(arr[at..at + 8].try_into().unwrap()) | 1 << 63;
                arr[at..at + 8].copy_from_slice(&attrs.to_le_bytes());
            });
            refused(
                &fx,
                At::Inspect,
                None,
                name,
                &file,
                &[needle, "refusing the image"],
                &[dm_of(&fx, name)],
            );
            fs::remove_file(&img).unwrap();
        }
    });
}

/// An image policy that ignores the hash partition (systemd then mounts the data plain):
/// refused instead, for a GPT `-verity` partition and a `.verity` sidecar.
#[test]
fn policy_ignoring_verity_is_refused() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let name = "ddi-verity-nosig";
        if put(&fx, name, &format!("{name}.raw"), &format!("{name}.raw")).is_none() {
            return;
        }
        refused(
            &fx,
            At::Open,
            Some("usr=unprotected+absent:=unused+absent"),
            name,
            &format!("{name}.raw"),
            &[
                "does not use verity for the usr file system",
                "usr-verity partition 2",
            ],
            &[dm_of(&fx, name)],
        );
        fs::remove_file(fx.path(&format!("/var/lib/extensions/{name}.raw"))).unwrap();
        for f in ["raw", "roothash", "verity"] {
            put(
                &fx,
                "bare-verity",
                &format!("bare-verity.{f}"),
                &format!("bare-verity.{f}"),
            )
            .unwrap();
        }
        refused(
            &fx,
            At::Open,
            Some("root=unprotected+absent:=unused+absent"),
            "bare-verity",
            "bare-verity.raw",
            &[
                "does not use verity for the root file system",
                "bare-verity.verity",
            ],
            &[],
        );
    });
}

/// What to put at a sidecar name.
enum Side {
    /// A file of the `verity-sidecars` fixture.
    Fixture(&'static str),
    /// Bytes.
    Bytes(&'static [u8]),
    /// A directory.
    Dir,
    /// A symlink to a name that does not exist.
    Dangling,
}

fn place(fx: &Fx, at: &Path, what: &Side) {
    match what {
        Side::Fixture(f) => {
            let dir = fx.fixture("verity-sidecars").unwrap();
            fs::copy(dir.join(f), at).unwrap();
        }
        Side::Bytes(b) => fs::write(at, b).unwrap(),
        Side::Dir => fs::create_dir(at).unwrap(),
        Side::Dangling => symlink("no-such-file", at).unwrap(),
    }
}

fn remove(at: &Path) {
    match fs::symlink_metadata(at) {
        Ok(m) if m.is_dir() => fs::remove_dir(at).unwrap(),
        Ok(_) => fs::remove_file(at).unwrap(),
        Err(_) => {}
    }
}

/// Sidecars that are there but cannot be used, beside a plain erofs image (where
/// ignoring them would merge it unprotected) and beside a verity image with good
/// `.roothash` and `.verity` (where ignoring them would drop the signature, or take
/// the hash from elsewhere): each refuses the image, naming the sidecar and the reason.
#[test]
fn unusable_sidecars_are_refused() {
    ns_test(|base| {
        let fx = Fx::new(base);
        if fx.fixture("verity-sidecars").is_none()
            || put(&fx, "erofs", "erofs-ext.raw", "erofs-ext.raw").is_none()
        {
            return;
        }
        let ext = fx.path("/var/lib/extensions");
        use Side::*;
        // Beside a plain image.
        for (suffix, what, needles) in [
            (".roothash", Dangling, &["dangling symlink"][..]),
            (".usrhash", Dangling, &["dangling symlink"]),
            (".verity", Dangling, &["dangling symlink"]),
            (
                ".roothash.p7s",
                Fixture("junk.p7s"),
                &["signature without a root hash", "erofs-ext.roothash"],
            ),
            (
                ".roothash.p7s",
                Bytes(b""),
                &["signature without a root hash"],
            ),
            (".roothash.p7s", Dir, &["not a regular file"]),
            (".roothash.p7s", Dangling, &["dangling symlink"]),
            (
                ".usrhash.p7s",
                Bytes(b"sig"),
                &["signature without a root hash"],
            ),
        ] {
            let at = ext.join(format!("erofs-ext{suffix}"));
            place(&fx, &at, &what);
            let mut n = vec![format!("erofs-ext{suffix}")];
            n.extend(needles.iter().map(|s| s.to_string()));
            let n: Vec<&str> = n.iter().map(String::as_str).collect();
            refused(
                &fx,
                At::Inspect,
                None,
                "erofs-ext",
                "erofs-ext.raw",
                &n,
                &[],
            );
            remove(&at);
        }
        fs::remove_file(ext.join("erofs-ext.raw")).unwrap();

        // Beside a verity image (good .roothash and .verity unless replaced).
        let Some(bare) = fx.fixture("bare-verity") else {
            return;
        };
        let rh = fs::read_to_string(bare.join("bare-verity.roothash")).unwrap();
        let dm = verity_dm_name(&RootHash::from_hex(rh.trim()).unwrap());
        for (suffix, what, needles) in [
            (
                ".roothash",
                Fixture("wrong-length.roothash"),
                &["does not fit the hash tree", "20 bytes"][..],
            ),
            (".roothash", Fixture("junk.roothash"), &[]),
            (".roothash", Bytes(b"\n"), &["root hash has 0 bytes"]),
            (".roothash", Dangling, &["dangling symlink"]),
            (
                ".verity",
                Fixture("junk.verity"),
                &["no verity superblock signature"],
            ),
            (".verity", Bytes(b""), &["too small for a superblock"]),
            (".verity", Dir, &["not a regular file"]),
            (
                ".roothash.p7s",
                Fixture("junk.p7s"),
                &["not a PKCS#7 signature"],
            ),
            (
                ".roothash.p7s",
                Fixture("truncated.p7s"),
                &["not a PKCS#7 signature: truncated"],
            ),
            (
                ".roothash.p7s",
                Bytes(b""),
                &["not a PKCS#7 signature: empty"],
            ),
            (".roothash.p7s", Dangling, &["dangling symlink"]),
            (
                ".usrhash.p7s",
                Fixture("junk.p7s"),
                &["signature of the usr root hash", "bare-verity.roothash"],
            ),
        ] {
            for f in ["raw", "roothash", "verity"] {
                remove(&ext.join(format!("bare-verity.{f}")));
                fs::copy(
                    bare.join(format!("bare-verity.{f}")),
                    ext.join(format!("bare-verity.{f}")),
                )
                .unwrap();
            }
            let at = ext.join(format!("bare-verity{suffix}"));
            remove(&at);
            place(&fx, &at, &what);
            let mut n = vec![format!("bare-verity{suffix}")];
            n.extend(needles.iter().map(|s| s.to_string()));
            let n: Vec<&str> = n.iter().map(String::as_str).collect();
            refused(
                &fx,
                At::Inspect,
                None,
                "bare-verity",
                "bare-verity.raw",
                &n,
                std::slice::from_ref(&dm),
            );
            remove(&at);
        }

        // An xattr root hash that is empty.
        let img = ext.join("bare-verity.raw");
        match rustix::fs::setxattr(
            &img,
            "user.verity.roothash",
            b"",
            rustix::fs::XattrFlags::empty(),
        ) {
            Ok(()) => refused(
                &fx,
                At::Inspect,
                None,
                "bare-verity",
                "bare-verity.raw",
                &["xattr user.verity.roothash", "root hash has 0 bytes"],
                &[dm],
            ),
            Err(e) => eprintln!(
                "no user xattrs on {} ({e}): xattr case not run",
                img.display()
            ),
        }
    });
}

/// Without device-mapper (this project's host), GPT images with verity — root hash from
/// the signature partition or from the partition UUIDs — are refused saying so, never
/// mounted plain. (`host::verity_without_device_mapper` covers the sidecar case.)
#[test]
fn gpt_verity_without_device_mapper() {
    ns_test(|base| {
        if have_dm() {
            eprintln!("device-mapper present: the dm-verity tests cover this");
            return;
        }
        let fx = Fx::new(base);
        for name in ["ddi-verity", "ddi-verity-nosig"] {
            if put(&fx, name, &format!("{name}.raw"), &format!("{name}.raw")).is_none() {
                return;
            }
            refused(
                &fx,
                At::Open,
                None,
                name,
                &format!("{name}.raw"),
                &["dm-verity needs device-mapper, which is not available"],
                &[],
            );
            fs::remove_file(fx.path(&format!("/var/lib/extensions/{name}.raw"))).unwrap();
        }
    });
}

/// An intact superblock over a damaged hash tree, root hash from the partition UUIDs:
/// the verity device is set up and dm-verity refuses the first read (of the file system
/// superblock); the image is refused and its dm and loop devices are gone.
#[test]
fn damaged_hash_tree_is_refused_by_dm_verity() {
    ns_test(|base| {
        if !have_dm() {
            skip("no device-mapper (run tests/vm/run-image-tests.sh)");
            return;
        }
        let fx = Fx::new(base);
        let name = "ddi-verity-badtree";
        if put(&fx, name, &format!("{name}.raw"), &format!("{name}.raw")).is_none() {
            return;
        }
        let dm = dm_of(&fx, name);
        let before = dm_devices();
        let mut op = opener(Class::Sysext, None);
        let e = plan_refuses(
            &fx,
            Class::Sysext,
            &mut op,
            name,
            &[
                &format!("{name}.raw"),
                "reading through dm-verity device",
                "Input/output error",
            ],
        );
        eprintln!("refused as expected: {e}");
        drop(op);
        let mut op = opener(Class::Sysext, None);
        let r = merge::merge_with(&fx.opts(), Class::Sysext, &mut op);
        drop(op);
        match r {
            Err(e) => assert!(e.to_string().contains("Input/output error"), "{e}"),
            Ok(out) => panic!("merged: {out:?}"),
        }
        assert!(!fx.path(&format!("/usr/share/{name}")).exists());
        fx.assert_clean(&[dm]);
        assert_eq!(dm_devices(), before);
    });
}
