//! What a merge is made of, written to `extmerge-origin` in the metadata dir of each
//! merged hierarchy ([`crate::inspect::metadata::FINGERPRINT_FILE`]): a refresh whose plan gives
//! the same text as the merge in place changes nothing and is skipped.
//!
//! Besides names, paths and the overlay's shape, each extension is recorded by the
//! identity of the object that is merged (the directory, the image file or the device
//! node), as systemd ≥ 262 records it in its `origin` file (mount ID, file handle, birth
//! and modification time): an extension replaced the way deploy tools do it
//! (`rm -rf x; cp -a new x`, `rsync -a`, a new image renamed over the old one), which
//! keeps the old modification time and may even get the old inode number back, is a
//! different object, and the refresh merges it.
//!
//! # Format (version 1)
//!
//! Text, one `key=value` per line, no spaces around `=`. Values taken from the system
//! (names, paths, the verity-input stamp) are escaped with systemd's `cescape`
//! ([`crate::format::escape::cescape`]): ASCII, no newline inside a value. A value that could
//! not be read is `-`. Every key of a record is always written, in this order (a new
//! version number on the first line makes any older file differ; [`same`] compares two
//! texts line by line):
//!
//! ```text
//! extmerge-origin=1
//! mutable=no                      the mutable mode
//! extension=foo                   one record per merged extension, by name:
//! kind=directory                    directory, raw or block
//! path=/var/lib/extensions/foo      inside the root (of a NAME.v/ entry: the pick)
//! fs=plain                          plain, or overlay (see below)
//! mount-id=1234                     statx(STATX_MNT_ID_UNIQUE, else STATX_MNT_ID)
//! dev=8:1                           st_dev, major:minor
//! ino=5678                          st_ino
//! handle=1:0a1b2c3d...              name_to_handle_at(): handle type, handle bytes in hex
//! btime=1700000000.123456789        statx(STATX_BTIME): birth time
//! mtime=1700000000.123456789
//! ctime=1700000000.123456789        metadata changes: xattrs, mode, links, renames
//! size=4096                         raw images only: the file's size
//! rdev=259:3                        block devices only: the device
//! verity-inputs=...                 raw images only: the verity sidecars' and xattrs' stamp
//! hierarchy=/usr                  one record per overlay, in plan order:
//! layer=foo                         one line per extension layer, topmost first
//! import=-                          the persistent dir imported as a lower layer
//! host-lower=yes                    the host's hierarchy is the bottom layer
//! upper=-                           -, ephemeral, or the persistent upper dir
//! work=-                            the work dir of a persistent upper
//! upper-is-hierarchy=no
//! options=ro,nodev
//! ```
//!
//! `fs=overlay`: the extension is reached through an overlay: it lies in a search
//! directory below a merged hierarchy (a confext in `/usr/lib/confexts` under a sysext
//! merge of `/usr`), or the whole root is an overlay (a container's). Mount ID, device,
//! inode number and file handle are then those of
//! that overlay instance, which a refresh of the other class replaces; they are written
//! as `-`, and [`same`] ignores them (and `fs=` itself) in a record where either side
//! says `overlay`: the times, which overlayfs passes on from the real file, still tell
//! a replaced object apart. Otherwise refreshing one class would make the other look
//! changed each time, and an extension merged before the hierarchy above it was would
//! look changed once.

use std::fmt::Write;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use rustix::fs::{AtFlags, FileType, OFlags, StatxFlags};

use crate::format::escape::cescape;
use crate::inspect::discover::{Image, ImageKind};
use crate::inspect::fsutil::Root;
use crate::inspect::metadata::format_dev;
use crate::inspect::release::Verdict;
use crate::inspect::Handles;
use crate::plan::{MergePlan, Upper};

/// The first line: the format's version.
pub const VERSION_LINE: &str = "extmerge-origin=1";

/// `statx`'s `STATX_MNT_ID_UNIQUE` (Linux 6.8), which rustix does not name: a mount ID
/// that is never reused. Older kernels ignore the bit and answer `STATX_MNT_ID`.
const STATX_MNT_ID_UNIQUE: u32 = 0x4000;

/// `statfs` `f_type` of overlayfs.
const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;

/// The identity of one file system object, as recorded per extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Reached through an overlay (`fs=overlay`): `mount_id`, `dev`, `ino` and
    /// `handle` are left out.
    pub on_overlay: bool,
    /// The mount it is on.
    pub mount_id: Option<u64>,
    /// `st_dev`.
    pub dev: Option<u64>,
    /// `st_ino`.
    pub ino: Option<u64>,
    /// `name_to_handle_at()`: handle type and bytes (inode number and generation on
    /// most file systems, so a reused inode number is still another object).
    pub handle: Option<(i32, Vec<u8>)>,
    /// Birth time (seconds, nanoseconds), where the file system records it.
    pub btime: Option<(i64, u32)>,
    /// Modification time.
    pub mtime: (i64, u32),
    /// Status change time.
    pub ctime: (i64, u32),
    /// Size in bytes.
    pub size: u64,
    /// `st_rdev` (of a device node).
    pub rdev: u64,
}

/// The identity of the object open at `fd` (an `O_PATH` fd will do).
pub fn identity(fd: BorrowedFd<'_>) -> io::Result<Identity> {
    let mask = StatxFlags::BASIC_STATS
        | StatxFlags::BTIME
        | StatxFlags::MNT_ID
        | StatxFlags::from_bits_retain(STATX_MNT_ID_UNIQUE);
    let st = rustix::fs::statx(fd, "", AtFlags::EMPTY_PATH, mask)?;
    let got = StatxFlags::from_bits_retain(st.stx_mask);
    // `f_type`'s integer type differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    let on_overlay =
        rustix::fs::fstatfs(fd).is_ok_and(|s| s.f_type as i64 == OVERLAYFS_SUPER_MAGIC);
    let mount_id = (got.contains(StatxFlags::MNT_ID)
        || got.contains(StatxFlags::from_bits_retain(STATX_MNT_ID_UNIQUE)))
    .then_some(st.stx_mnt_id);
    let ts = |t: rustix::fs::StatxTimestamp| (t.tv_sec, t.tv_nsec);
    // Where it is reached through an overlay, its place says nothing about the object.
    let place = !on_overlay;
    Ok(Identity {
        on_overlay,
        mount_id: mount_id.filter(|_| place),
        dev: place.then(|| rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor)),
        ino: (place && got.contains(StatxFlags::INO)).then_some(st.stx_ino),
        handle: place.then(|| file_handle(fd)).flatten(),
        btime: got.contains(StatxFlags::BTIME).then(|| ts(st.stx_btime)),
        mtime: ts(st.stx_mtime),
        ctime: ts(st.stx_ctime),
        size: st.stx_size,
        rdev: rustix::fs::makedev(st.stx_rdev_major, st.stx_rdev_minor),
    })
}

/// `MAX_HANDLE_SZ` of `<fcntl.h>`.
const MAX_HANDLE_SZ: usize = 128;

/// `struct file_handle` with room for the largest handle.
#[repr(C)]
struct FileHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; MAX_HANDLE_SZ],
}

/// `name_to_handle_at(fd, "", …, AT_EMPTY_PATH)`: `None` where the file system has no
/// file handles (`EOPNOTSUPP`) or the call fails otherwise. rustix does not wrap it.
#[allow(unsafe_code)]
fn file_handle(fd: BorrowedFd<'_>) -> Option<(i32, Vec<u8>)> {
    let mut fh = FileHandle {
        handle_bytes: MAX_HANDLE_SZ as u32,
        handle_type: 0,
        f_handle: [0; MAX_HANDLE_SZ],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `fd` is a valid open fd for the duration of the call; the path is a
    // NUL-terminated empty string (with AT_EMPTY_PATH the fd itself is named); `fh` is
    // a `struct file_handle` whose `handle_bytes` says how many bytes `f_handle` has,
    // and the kernel writes at most that many; `mount_id` is a writable int. Nothing
    // is kept past the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            fd.as_raw_fd(),
            c"".as_ptr(),
            &mut fh as *mut FileHandle,
            &mut mount_id as *mut libc::c_int,
            libc::AT_EMPTY_PATH,
        )
    };
    let n = fh.handle_bytes as usize;
    (r == 0 && n <= MAX_HANDLE_SZ).then(|| (fh.handle_type, fh.f_handle[..n].to_vec()))
}

/// `sec.nsec`, nanoseconds with nine digits.
fn time(t: (i64, u32)) -> String {
    format!("{}.{:09}", t.0, t.1)
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

/// Appends the record of extension `image` (its object opened as `fd`, if it could be).
fn extension(s: &mut String, root: &Root, image: &Image, id: io::Result<Identity>) {
    let kind = image.kind.as_str();
    let _ = writeln!(s, "extension={}", cescape(image.name.as_bytes()));
    let _ = writeln!(s, "kind={kind}");
    let path = image.path.as_os_str().as_encoded_bytes();
    let _ = writeln!(s, "path={}", cescape(path));
    match id {
        Ok(id) => {
            let _ = writeln!(s, "fs={}", if id.on_overlay { "overlay" } else { "plain" });
            let _ = writeln!(s, "mount-id={}", opt(id.mount_id, |m| m.to_string()));
            let _ = writeln!(s, "dev={}", opt(id.dev, format_dev));
            let _ = writeln!(s, "ino={}", opt(id.ino, |i| i.to_string()));
            let handle = opt(id.handle, |(t, b)| {
                format!("{t}:{}", crate::format::text::hex_encode(&b))
            });
            let _ = writeln!(s, "handle={handle}");
            let _ = writeln!(s, "btime={}", opt(id.btime, time));
            let _ = writeln!(s, "mtime={}", time(id.mtime));
            let _ = writeln!(s, "ctime={}", time(id.ctime));
            match image.kind {
                ImageKind::Raw => {
                    let _ = writeln!(s, "size={}", id.size);
                }
                ImageKind::Block => {
                    let _ = writeln!(s, "rdev={}", format_dev(id.rdev));
                }
                ImageKind::Directory => {}
            }
        }
        // Not readable now: the merge will say why, if it comes to one.
        Err(e) => {
            let _ = writeln!(s, "fs=-\nerror={}", e.raw_os_error().unwrap_or(0));
        }
    }
    if image.kind == ImageKind::Raw {
        let stamp = crate::inspect::image::verity_inputs_stamp(root, image);
        let stamp = stamp.trim_end_matches('\n');
        let _ = writeln!(s, "verity-inputs={}", cescape(stamp.as_bytes()));
    }
}

/// The identity of `image` as merged: a directory by the fd the plan opened (what the
/// overlay gets as its layers), an image file or device by its path inside the root.
fn identity_of(root: &Root, image: &Image, handles: &Handles) -> io::Result<Identity> {
    if image.kind == ImageKind::Directory {
        if let Some(fd) = handles.extensions.get(&image.name) {
            return identity(fd.as_fd());
        }
    }
    let fd = root.open_at(&image.path, OFlags::PATH)?;
    let st = rustix::fs::fstat(&fd)?;
    let want = match image.kind {
        ImageKind::Directory => FileType::Directory,
        ImageKind::Raw => FileType::RegularFile,
        ImageKind::Block => FileType::BlockDevice,
    };
    if FileType::from_raw_mode(st.st_mode) != want {
        return Err(io::Error::from_raw_os_error(libc::ESTALE));
    }
    identity(fd.as_fd())
}

/// The `extmerge-origin` text of `plan` (see the module's documentation), with the
/// identities of the extensions as they are now; `roots` are the plan's opened
/// extensions.
pub fn render(root: &Root, plan: &MergePlan, handles: &Handles) -> String {
    let mut s = format!("{VERSION_LINE}\nmutable={}\n", plan.mutable.as_str());
    for c in plan
        .candidates
        .iter()
        .filter(|c| c.verdict == Verdict::Match)
    {
        extension(&mut s, root, &c.image, identity_of(root, &c.image, handles));
    }
    let path = |p: &std::path::Path| cescape(p.as_os_str().as_encoded_bytes());
    let yes = |b: bool| if b { "yes" } else { "no" };
    for h in &plan.hierarchies {
        let _ = writeln!(s, "hierarchy={}", cescape(h.hierarchy.as_bytes()));
        for l in &h.layers {
            let _ = writeln!(s, "layer={}", cescape(l.name.as_bytes()));
        }
        let _ = writeln!(s, "import={}", opt(h.import.as_deref(), path));
        let _ = writeln!(s, "host-lower={}", yes(h.host_lower));
        let (upper, work, is_h) = match &h.upper {
            None => ("-".to_string(), "-".to_string(), false),
            Some(Upper::Ephemeral) => ("ephemeral".to_string(), "-".to_string(), false),
            Some(Upper::Persistent {
                upper,
                work,
                is_hierarchy,
            }) => (path(upper), path(work), *is_hierarchy),
        };
        let _ = writeln!(
            s,
            "upper={upper}\nwork={work}\nupper-is-hierarchy={}",
            yes(is_h)
        );
        let f = h.flags;
        let mut o = vec![if f.read_only { "ro" } else { "rw" }];
        for (on, name) in [
            (f.nodev, "nodev"),
            (f.nosuid, "nosuid"),
            (f.noexec, "noexec"),
        ] {
            if on {
                o.push(name);
            }
        }
        let _ = writeln!(s, "options={}", o.join(","));
    }
    s
}

/// The keys of an extension record that name the object by where it is reached
/// ([`identity`]'s `fs=overlay` leaves them out).
const PLACE_KEYS: [&str; 5] = ["fs", "mount-id", "dev", "ino", "handle"];

/// Do two `extmerge-origin` texts describe the same merge? Equal line by line, except
/// that in an extension record where either text says `fs=overlay` the lines of
/// [`PLACE_KEYS`] may differ.
pub fn same(a: &str, b: &str) -> bool {
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    if la.len() != lb.len() {
        return false;
    }
    let mut overlay = false;
    for (x, y) in la.iter().zip(&lb) {
        let (kx, vx) = x.split_once('=').unwrap_or((x, ""));
        let (ky, vy) = y.split_once('=').unwrap_or((y, ""));
        if kx != ky {
            return false;
        }
        match kx {
            "extension" | "hierarchy" => overlay = false,
            "fs" => overlay = vx == "overlay" || vy == "overlay",
            _ => {}
        }
        if vx != vy && !(overlay && PLACE_KEYS.contains(&kx)) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn id_of(p: &std::path::Path) -> Identity {
        let f = std::fs::File::open(p).unwrap();
        identity(f.as_fd()).unwrap()
    }

    #[test]
    fn same_ignores_the_place_of_an_extension_reached_through_an_overlay() {
        let rec = |fs: &str, ino: &str, mtime: &str| {
            format!(
                "{VERSION_LINE}\nmutable=no\nextension=c\nkind=directory\npath=/p\nfs={fs}\n\
                 mount-id=-\ndev=-\nino={ino}\nhandle=-\nbtime=1.000000000\nmtime={mtime}\n\
                 ctime=1.000000000\nhierarchy=/etc\nlayer=c\n"
            )
        };
        let plain = rec("plain", "12", "1.000000000");
        assert!(same(&plain, &plain));
        assert!(same(&plain, &rec("overlay", "-", "1.000000000")));
        assert!(same(&rec("overlay", "-", "1.000000000"), &plain));
        assert!(!same(&plain, &rec("plain", "13", "1.000000000")));
        assert!(!same(&plain, &rec("overlay", "-", "2.000000000")));
        assert!(!same(&plain, &plain.replace("layer=c", "layer=d")));
        assert!(!same(&plain, plain.trim_end().rsplit_once('\n').unwrap().0));
        // The exception ends with its record: the next one's inode number counts.
        let two = format!(
            "{VERSION_LINE}\nextension=c\nfs=overlay\nino=-\nextension=d\nfs=plain\nino=5\n"
        );
        assert!(same(&two, &two.replacen("fs=overlay", "fs=plain", 1)));
        assert!(!same(&two, &two.replace("ino=5", "ino=6")));
        assert!(!same("extmerge-origin=1\n", "mutable=no\n"));
    }

    #[test]
    fn identity_tells_a_replaced_directory_apart() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("ext");
        std::fs::create_dir(&d).unwrap();
        let a = id_of(&d);
        assert_eq!(a, id_of(&d), "the same object, the same identity");
        let md = std::fs::metadata(&d).unwrap();
        assert_eq!(a.ino, Some(md.ino()));
        assert_eq!(a.dev, Some(md.dev()));
        assert_eq!(a.mtime, (md.mtime(), md.mtime_nsec() as u32));
        assert!(!a.on_overlay);
        // Replaced by a new directory with the old times: another object all the same
        // (a new inode number, or the old one with a new generation in the handle, and
        // a new birth time where the file system keeps one).
        std::fs::remove_dir(&d).unwrap();
        std::fs::create_dir(&d).unwrap();
        let mtime = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: md.atime(),
                tv_nsec: md.atime_nsec() as _,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: md.mtime(),
                tv_nsec: md.mtime_nsec() as _,
            },
        };
        rustix::fs::utimensat(rustix::fs::CWD, &d, &mtime, AtFlags::empty()).unwrap();
        let b = id_of(&d);
        assert_eq!(b.mtime, a.mtime);
        assert_ne!(b, a);
        if a.handle.is_some() && b.handle.is_some() {
            assert_ne!(a.handle, b.handle);
        }
        if a.btime.is_some() {
            assert_ne!(a.btime, b.btime);
        }
    }
}
