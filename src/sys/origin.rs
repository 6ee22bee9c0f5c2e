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

use rustix::fs::{AtFlags, FileType, OFlags, Statx, StatxFlags};

use crate::format::escape::cescape;
use crate::format::json::{Json, JsonError, Reader};
use crate::inspect::discover::{Image, ImageKind, IDENTITY_MASK, STATX_MNT_ID_UNIQUE};
use crate::inspect::fsutil::Root;
use crate::inspect::image::ImageDirs;
use crate::inspect::metadata::format_dev;
use crate::inspect::release::Verdict;
use crate::inspect::Handles;
use crate::plan::{MergePlan, Upper};

/// The first line: the format's version.
pub const VERSION_LINE: &str = "extmerge-origin=1";

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

/// One look at an extension's object — its `statx`, whether it is reached through an
/// overlay, its file handle — from which both fingerprints ([`Identity`] for ours,
/// [`SystemdIdentity`] for systemd's `origin`) are derived, so each object is asked once
/// per merge (and not at all again where discovery's `statx` of it is at hand).
#[derive(Debug, Clone)]
pub struct Observed {
    st: Statx,
    on_overlay: bool,
    handle: Option<(i32, Vec<u8>)>,
}

/// Whether a mount is an overlayfs, by mount ID: the extensions of one search
/// directory are mostly on one mount, so one `fstatfs` answers for all of them.
#[derive(Debug, Default)]
pub struct FsCache(Vec<(u64, bool)>);

impl FsCache {
    fn on_overlay(&mut self, fd: BorrowedFd<'_>, st: &Statx) -> bool {
        let has_id = st.stx_mask & (StatxFlags::MNT_ID.bits() | STATX_MNT_ID_UNIQUE) != 0;
        if has_id {
            if let Some(&(_, o)) = self.0.iter().find(|(id, _)| *id == st.stx_mnt_id) {
                return o;
            }
        }
        // `f_type`'s integer type differs between architectures.
        #[allow(clippy::unnecessary_cast)]
        let o = rustix::fs::fstatfs(fd).is_ok_and(|s| s.f_type as i64 == OVERLAYFS_SUPER_MAGIC);
        if has_id {
            self.0.push((st.stx_mnt_id, o));
        }
        o
    }
}

/// Observes the object open at `fd` (an `O_PATH` fd will do); `st` is a `statx` of it
/// with [`IDENTITY_MASK`] already taken (by discovery), if there is one.
pub fn observe(fd: BorrowedFd<'_>, st: Option<&Statx>, fs: &mut FsCache) -> io::Result<Observed> {
    let st = match st {
        Some(st) => *st,
        None => rustix::fs::statx(fd, "", AtFlags::EMPTY_PATH, IDENTITY_MASK)?,
    };
    Ok(Observed {
        on_overlay: fs.on_overlay(fd, &st),
        handle: file_handle_try_fid(fd),
        st,
    })
}

impl Observed {
    /// Our record of it ([`Identity`]).
    pub fn identity(&self) -> Identity {
        let st = &self.st;
        let got = StatxFlags::from_bits_retain(st.stx_mask);
        let mount_id = (got.contains(StatxFlags::MNT_ID)
            || got.contains(StatxFlags::from_bits_retain(STATX_MNT_ID_UNIQUE)))
        .then_some(st.stx_mnt_id);
        let ts = |t: rustix::fs::StatxTimestamp| (t.tv_sec, t.tv_nsec);
        // Where it is reached through an overlay, its place says nothing about the object.
        let place = !self.on_overlay;
        Identity {
            on_overlay: self.on_overlay,
            mount_id: mount_id.filter(|_| place),
            dev: place.then(|| rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor)),
            ino: (place && got.contains(StatxFlags::INO)).then_some(st.stx_ino),
            handle: self.handle.clone().filter(|_| place),
            btime: got.contains(StatxFlags::BTIME).then(|| ts(st.stx_btime)),
            mtime: ts(st.stx_mtime),
            ctime: ts(st.stx_ctime),
            size: st.stx_size,
            rdev: rustix::fs::makedev(st.stx_rdev_major, st.stx_rdev_minor),
        }
    }

    /// systemd's record of it, an extension of kind `kind` ([`SystemdIdentity`]).
    pub fn systemd(&self, kind: ImageKind) -> SystemdIdentity {
        let st = &self.st;
        let ts = |t: rustix::fs::StatxTimestamp| (t.tv_sec, t.tv_nsec);
        let btime = if st.stx_mask & StatxFlags::BTIME.bits() != 0 {
            usec(ts(st.stx_btime))
        } else {
            0
        };
        // discover-image.c: a directory's mtime says nothing about the tree below it, and
        // a block device's times nothing about its contents; systemd records 0.
        let (crtime_usec, mtime_usec) = match kind {
            ImageKind::Directory => (btime, 0),
            ImageKind::Raw => (btime, usec(ts(st.stx_mtime))),
            ImageKind::Block => (0, 0),
        };
        SystemdIdentity {
            mount_id: st.stx_mnt_id,
            handle: self.handle.clone(),
            ino: st.stx_ino,
            crtime_usec,
            mtime_usec,
        }
    }
}

/// The identity of the object open at `fd` (an `O_PATH` fd will do).
pub fn identity(fd: BorrowedFd<'_>) -> io::Result<Identity> {
    Ok(observe(fd, None, &mut FsCache::default())?.identity())
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

/// `AT_HANDLE_FID` (Linux 6.5): a handle to identify the object, not to open it; file
/// systems without NFS export support give one too.
const AT_HANDLE_FID: libc::c_int = 0x200;

/// systemd's `name_to_handle_at_try_fid()`: with `AT_HANDLE_FID` first, then without
/// (older kernels refuse the flag with `EINVAL`); `None` where the file system has no
/// file handles (`EOPNOTSUPP`) or the call fails otherwise. rustix does not wrap it.
fn file_handle_try_fid(fd: BorrowedFd<'_>) -> Option<(i32, Vec<u8>)> {
    name_to_handle(fd, AT_HANDLE_FID).or_else(|| name_to_handle(fd, 0))
}

/// `name_to_handle_at(fd, "", …, AT_EMPTY_PATH | flags)`.
#[allow(unsafe_code)]
fn name_to_handle(fd: BorrowedFd<'_>, flags: libc::c_int) -> Option<(i32, Vec<u8>)> {
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
            libc::AT_EMPTY_PATH | flags,
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
fn extension(
    s: &mut String,
    root: &Root,
    image: &Image,
    id: Result<Identity, i32>,
    dirs: &mut ImageDirs,
) {
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
            let _ = writeln!(s, "fs=-\nerror={e}");
        }
    }
    if image.kind == ImageKind::Raw {
        let stamp = crate::inspect::image::verity_inputs_stamp_in(root, image, dirs);
        let stamp = stamp.trim_end_matches('\n');
        let _ = writeln!(s, "verity-inputs={}", cescape(stamp.as_bytes()));
    }
}

/// `image` as merged, observed: a directory by the fd the plan opened (what the overlay
/// gets as its layers, with discovery's `statx` of it), an image file or device by its
/// path inside the root.
fn observe_image(
    root: &Root,
    image: &Image,
    handles: &Handles,
    fs: &mut FsCache,
) -> io::Result<Observed> {
    if image.kind == ImageKind::Directory {
        if let Some(fd) = handles.extensions.get(&image.name) {
            return observe(fd.as_fd(), image.opened.stat(), fs);
        }
    }
    let fd = image.root_in(root).open_at(&image.path, OFlags::PATH)?;
    let st = rustix::fs::statx(&fd, "", AtFlags::EMPTY_PATH, IDENTITY_MASK)?;
    let want = match image.kind {
        ImageKind::Directory => FileType::Directory,
        ImageKind::Raw => FileType::RegularFile,
        ImageKind::Block => FileType::BlockDevice,
    };
    if FileType::from_raw_mode(st.stx_mode.into()) != want {
        return Err(io::Error::from_raw_os_error(libc::ESTALE));
    }
    observe(fd.as_fd(), Some(&st), fs)
}

/// Every merged extension of a plan, observed once (by name; an error as its errno):
/// what both fingerprints of the merge are written from.
#[derive(Debug, Default)]
pub struct Observations(std::collections::BTreeMap<String, Result<Observed, i32>>);

impl Observations {
    /// Observes the plan's merged extensions (`handles`: what inspection opened).
    pub fn of(root: &Root, plan: &MergePlan, handles: &Handles) -> Observations {
        let mut fs = FsCache::default();
        Observations(
            plan.candidates
                .iter()
                .filter(|c| c.verdict == Verdict::Match)
                .map(|c| {
                    let o = observe_image(root, &c.image, handles, &mut fs)
                        .map_err(|e| e.raw_os_error().unwrap_or(0));
                    (c.image.name.clone(), o)
                })
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Result<&Observed, i32> {
        match self.0.get(name) {
            Some(Ok(o)) => Ok(o),
            Some(Err(e)) => Err(*e),
            None => Err(libc::ENOENT),
        }
    }
}

/// The `extmerge-origin` text of `plan` (see the module's documentation), with the
/// identities of the extensions as they are now; `roots` are the plan's opened
/// extensions.
pub fn render(root: &Root, plan: &MergePlan, obs: &Observations) -> String {
    // Image directories opened once for all images' sidecar lookups.
    let mut dirs = ImageDirs::new();
    let mut s = format!("{VERSION_LINE}\nmutable={}\n", plan.mutable.as_str());
    for c in plan
        .candidates
        .iter()
        .filter(|c| c.verdict == Verdict::Match)
    {
        let id = obs.get(&c.image.name).map(Observed::identity);
        extension(&mut s, root, &c.image, id, &mut dirs);
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

// ---------------------------------------------------------------------------------------
// systemd's `origin`
// ---------------------------------------------------------------------------------------

/// The fields systemd ≥ 260 records per extension in its `origin` file
/// ([`crate::inspect::metadata::SYSTEMD_ORIGIN_FILE`]), as its `image_make()` gathers them
/// (the weak identifiers; systemd writes `verityHash` instead for an image whose root hash
/// it knows, which we do not: see [`systemd_origin`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemdIdentity {
    /// `onMountId`: the unique mount ID where the kernel has one (6.8+), else the old one.
    pub mount_id: u64,
    /// `fileHandle`: `name_to_handle_at()` with `AT_HANDLE_FID` where possible.
    pub handle: Option<(i32, Vec<u8>)>,
    /// `inode`, written only where there is no file handle.
    pub ino: u64,
    /// `crtime`: birth time in µs, 0 where the file system keeps none.
    pub crtime_usec: u64,
    /// `mtime`: modification time in µs (of image files; 0 for directories and devices).
    pub mtime_usec: u64,
}

fn usec(t: (i64, u32)) -> u64 {
    u64::try_from(t.0)
        .unwrap_or(0)
        .saturating_mul(1_000_000)
        .saturating_add(u64::from(t.1) / 1000)
}

/// The [`SystemdIdentity`] of the object open at `fd`, an extension of kind `kind`.
pub fn systemd_identity(fd: BorrowedFd<'_>, kind: ImageKind) -> io::Result<SystemdIdentity> {
    Ok(observe(fd, None, &mut FsCache::default())?.systemd(kind))
}

/// The per-extension object of systemd's `origin`.
pub fn systemd_extension(path: &str, id: &SystemdIdentity) -> Json {
    let mut o = vec![
        ("path".to_string(), Json::str(path)),
        ("onMountId".to_string(), Json::UInt(id.mount_id)),
    ];
    match &id.handle {
        Some((t, b)) => o.push((
            "fileHandle".to_string(),
            Json::obj([
                // Handle types are small and positive (FILEID_*); a negative one
                // cannot come from the kernel.
                ("type", Json::UInt(u64::try_from(*t).unwrap_or(0))),
                ("handle", Json::str(crate::format::text::hex_encode(b))),
            ]),
        )),
        None => o.push(("inode".to_string(), Json::UInt(id.ino))),
    }
    o.push(("crtime".to_string(), Json::UInt(id.crtime_usec)));
    o.push(("mtime".to_string(), Json::UInt(id.mtime_usec)));
    Json::Object(o)
}

/// systemd's `origin` for `plan`, as systemd ≥ 260 writes it (systemd PR #39980,
/// "sysext: Skip refresh if no changes are found"; the writer is in
/// `src/sysext/sysext.c`, which could not be read here: no copy of it after v259 was
/// reachable, so the format below is the one systemd-sysext 262.1 was seen to write,
/// and the comparison the one it was seen to make, see the cross-check below):
///
/// ```text
/// { "mutable": { "mode": M [, "mutableDirs": { HIERARCHY: DIR, … }] },
///   ["mountOptions": S,]
///   ["extensions": { NAME: { "path": P, "onMountId": N,
///                            "fileHandle": { "type": T, "handle": HEX } | "inode": N,
///                            "crtime": USEC, "mtime": USEC }, … }] }
/// ```
///
/// Paths are inside the root (but a `mutableDirs` entry of an ephemeral mode is
/// systemd's tmpfs upper, `/run/systemd/sysext/usr`); times in µs; the handle's bytes
/// in lowercase hex; `mountOptions` is `SYSTEMD_*_OVERLAYFS_MOUNT_OPTIONS` as given,
/// left out when unset or empty. The extensions' order is not systemd's (it varies
/// there, see the cross-check in issue 17): systemd compares parsed values. Not written
/// by us: `verityHash` (by a third-party reimplementation's account, systemd writes it
/// instead of the weak identifiers for an image with a known root hash; not observed
/// here. If so, for a verity image our `origin` never equals the one systemd computes:
/// it refreshes such a merge of ours once, which is safe).
///
/// Checked against systemd-sysext 262.1 (Debian unstable, run in a chroot on the same
/// mounts): for directory sysexts and a confext, with the mutable modes `no`, `yes`,
/// `auto`, `import`, `ephemeral` and `ephemeral-import`, both tools skip the other's
/// unchanged merge, and with one extension the bytes are identical; with `mountOptions`
/// systemd skips ours, while we refresh systemd's (our refresh check is not given the
/// environment). Raw images were not compared (262 refused the test's squashfs).
pub fn systemd_origin(plan: &MergePlan, obs: &Observations, mount_options: Option<&str>) -> Json {
    let mut mutable = vec![("mode".to_string(), Json::str(plan.mutable.as_str()))];
    let dirs: Vec<(String, Json)> = plan
        .hierarchies
        .iter()
        .filter_map(|h| {
            let dir = match &h.upper {
                Some(Upper::Persistent { upper, .. }) => upper.to_string_lossy().into_owned(),
                // systemd's tmpfs upper in its runtime dir (a host path, not in the
                // root), as 262 writes it: `/run/systemd/sysext/usr`.
                Some(Upper::Ephemeral) => format!(
                    "/run/systemd/{}/{}",
                    plan.class.as_str(),
                    crate::options::hierarchy_component(&h.hierarchy)
                ),
                None => h.import.as_deref()?.to_string_lossy().into_owned(),
            };
            Some((h.hierarchy.clone(), Json::str(dir)))
        })
        .collect();
    if !dirs.is_empty() {
        mutable.push(("mutableDirs".to_string(), Json::Object(dirs)));
    }
    let mut top = vec![("mutable".to_string(), Json::Object(mutable))];
    // `SYSTEMD_*_OVERLAYFS_MOUNT_OPTIONS` as given (262 leaves it out when empty).
    if let Some(o) = mount_options.filter(|o| !o.is_empty()) {
        top.push(("mountOptions".to_string(), Json::str(o)));
    }
    let exts: Vec<(String, Json)> = plan
        .candidates
        .iter()
        .filter(|c| c.verdict == Verdict::Match)
        .map(|c| {
            let path = c.image.path.to_string_lossy();
            let v = match obs.get(&c.image.name) {
                Ok(o) => systemd_extension(&path, &o.systemd(c.image.kind)),
                // Unreadable now: a value systemd never writes, so nothing equals it.
                Err(e) => Json::obj([
                    ("path", Json::str(path)),
                    ("extmergeError", Json::UInt(u64::try_from(e).unwrap_or(0))),
                ]),
            };
            (c.image.name.clone(), v)
        })
        .collect();
    if !exts.is_empty() {
        top.push(("extensions".to_string(), Json::Object(exts)));
    }
    Json::Object(top)
}

/// `v` as systemd writes its metadata JSON: `--json=pretty`'s layout and a newline.
pub fn sd_json_pretty(v: &Json) -> String {
    let mut out = v.render(true);
    out.push('\n');
    out
}

/// The `origin` text we write next to `extmerge-origin`: [`systemd_origin`] printed as
/// systemd prints it.
pub fn render_systemd(plan: &MergePlan, obs: &Observations, mount_options: Option<&str>) -> String {
    sd_json_pretty(&systemd_origin(plan, obs, mount_options))
}

/// A parsed JSON value compared as `sd_json_variant_equal()` compares: objects as sets
/// of members (order does not matter), numbers by value.
#[derive(Debug, PartialEq)]
enum Value {
    Null,
    Bool(bool),
    /// An integer, by value.
    Int(i128),
    /// Any other number, by its text.
    Number(String),
    Str(String),
    Array(Vec<Value>),
    Object(std::collections::BTreeMap<String, Value>),
}

/// Deeper than any `origin`: the reader refuses more.
const MAX_DEPTH: usize = 16;

fn parse_value(r: &mut Reader<'_>, text: &str, depth: usize) -> Result<Value, JsonError> {
    r.skip_ws();
    match r.peek() {
        Some(b'"') => r.string().map(Value::Str),
        Some(open @ (b'{' | b'[')) => {
            if depth > MAX_DEPTH {
                return Err(r.error("nesting too deep"));
            }
            let close = if open == b'{' { b'}' } else { b']' };
            r.bump();
            let mut arr = Vec::new();
            let mut obj = std::collections::BTreeMap::new();
            r.skip_ws();
            if r.peek() == Some(close) {
                r.bump();
            } else {
                loop {
                    r.skip_ws();
                    if open == b'{' {
                        let k = r.string()?;
                        r.skip_ws();
                        r.expect(b':', "expected ':'")?;
                        let v = parse_value(r, text, depth + 1)?;
                        obj.insert(k, v);
                    } else {
                        arr.push(parse_value(r, text, depth + 1)?);
                    }
                    r.skip_ws();
                    match r.peek() {
                        Some(b',') => r.bump(),
                        Some(c) if c == close => {
                            r.bump();
                            break;
                        }
                        _ => return Err(r.error("expected ',' or a closing bracket")),
                    }
                }
            }
            Ok(if open == b'{' {
                Value::Object(obj)
            } else {
                Value::Array(arr)
            })
        }
        _ => {
            let start = r.pos();
            r.skip_value(depth)?;
            let tok = &text[start..r.pos()];
            Ok(match tok {
                "null" => Value::Null,
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                t => t
                    .parse::<i128>()
                    .map_or_else(|_| Value::Number(t.to_string()), Value::Int),
            })
        }
    }
}

fn parse(text: &str) -> Result<Value, JsonError> {
    let mut r = Reader::new(text, MAX_DEPTH);
    let v = parse_value(&mut r, text, 1)?;
    r.skip_ws();
    if !r.at_end() {
        return Err(r.error("trailing text after JSON"));
    }
    Ok(v)
}

/// Would systemd skip its refresh? `old` is the `origin` of the merge in place, `new`
/// the one computed now ([`systemd_origin`]): systemd parses the file and compares the
/// values (`sd_json_variant_equal`), so key order and whitespace do not matter. An
/// `origin` that does not parse never matches (systemd refreshes then too).
pub fn same_systemd(old: &str, new: &Json) -> bool {
    match (parse(old), parse(&new.render(false))) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn id_of(p: &std::path::Path) -> Identity {
        let f = std::fs::File::open(p).unwrap();
        identity(f.as_fd()).unwrap()
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// An `origin` for two directory extensions in a container (overlayfs file handles,
    /// type 0xf8, a unique mount ID), as the golden test of a third-party
    /// reimplementation (itxaka/sysext-alpine, internal/overlay) says systemd-sysext 262
    /// wrote it: our writer gives the same bytes.
    #[test]
    fn systemd_origin_bytes_as_systemd_writes_them() {
        let ext = |handle: &str, crtime| {
            systemd_extension(
                &format!(
                    "/var/lib/extensions/{}",
                    if crtime == 1790934805978956 {
                        "bar"
                    } else {
                        "foo"
                    }
                ),
                &SystemdIdentity {
                    mount_id: 2147519467,
                    handle: Some((248, hex(handle))),
                    ino: 99,
                    crtime_usec: crtime,
                    mtime_usec: 0,
                },
            )
        };
        let v = Json::obj([
            ("mutable", Json::obj([("mode", Json::str("no"))])),
            (
                "extensions",
                Json::obj([
                    (
                        "bar",
                        ext(
                            "00000000fb1d0401eaccc778d23b4f7fbf96962de04581742500060123a8110b",
                            1790934805978956,
                        ),
                    ),
                    (
                        "foo",
                        ext(
                            "00000000fb1d0401eaccc778d23b4f7fbf96962de04581741a00060133b2ac0c",
                            1790934805972956,
                        ),
                    ),
                ]),
            ),
        ]);
        let want = "{\n\t\"mutable\" : {\n\t\t\"mode\" : \"no\"\n\t},\n\t\"extensions\" : {\n\
            \t\t\"bar\" : {\n\t\t\t\"path\" : \"/var/lib/extensions/bar\",\n\
            \t\t\t\"onMountId\" : 2147519467,\n\t\t\t\"fileHandle\" : {\n\
            \t\t\t\t\"type\" : 248,\n\
            \t\t\t\t\"handle\" : \"00000000fb1d0401eaccc778d23b4f7fbf96962de04581742500060123a8110b\"\n\
            \t\t\t},\n\t\t\t\"crtime\" : 1790934805978956,\n\t\t\t\"mtime\" : 0\n\t\t},\n\
            \t\t\"foo\" : {\n\t\t\t\"path\" : \"/var/lib/extensions/foo\",\n\
            \t\t\t\"onMountId\" : 2147519467,\n\t\t\t\"fileHandle\" : {\n\
            \t\t\t\t\"type\" : 248,\n\
            \t\t\t\t\"handle\" : \"00000000fb1d0401eaccc778d23b4f7fbf96962de04581741a00060133b2ac0c\"\n\
            \t\t\t},\n\t\t\t\"crtime\" : 1790934805972956,\n\t\t\t\"mtime\" : 0\n\t\t}\n\t}\n}\n";
        assert_eq!(sd_json_pretty(&v), want);
        assert!(same_systemd(want, &v));
        // systemd compares values: member order and whitespace do not matter …
        let reordered = "{\"extensions\":{\"foo\":{\"mtime\":0,\"crtime\":1790934805972956,\
            \"fileHandle\":{\"handle\":\"00000000fb1d0401eaccc778d23b4f7fbf96962de04581741a00060133b2ac0c\",\
            \"type\":248},\"onMountId\":2147519467,\"path\":\"/var/lib/extensions/foo\"},\
            \"bar\":{\"path\":\"/var/lib/extensions/bar\",\"onMountId\":2147519467,\
            \"fileHandle\":{\"type\":248,\"handle\":\"00000000fb1d0401eaccc778d23b4f7fbf96962de04581742500060123a8110b\"},\
            \"crtime\":1790934805978956,\"mtime\":0}},\"mutable\":{\"mode\":\"no\"}}";
        assert!(same_systemd(reordered, &v));
        // … every value does.
        for (from, to) in [
            ("2147519467", "2147519468"),
            ("\"no\"", "\"yes\""),
            ("1790934805972956", "1790934805972957"),
            ("\"mtime\" : 0\n\t\t}\n\t}", "\"mtime\" : 1\n\t\t}\n\t}"),
            ("a8110b", "a8110c"),
            ("\"type\" : 248", "\"type\" : 1"),
        ] {
            let changed = want.replacen(from, to, 1);
            assert_ne!(changed, want, "{from}");
            assert!(!same_systemd(&changed, &v), "{from} -> {to}");
        }
        // A member more or less, a broken file, trailing text: not the same.
        assert!(!same_systemd(
            &want.replacen(
                "{\n\t\"mutable\"",
                "{\n\t\"mountOptions\" : \"x\",\n\t\"mutable\"",
                1
            ),
            &v
        ));
        assert!(!same_systemd("{\"mutable\":{\"mode\":\"no\"}}", &v));
        assert!(!same_systemd("{broken", &v));
        assert!(!same_systemd(&format!("{want}x"), &v));
        assert!(!same_systemd("", &v));
    }

    /// Bytes systemd-sysext 262.1 (Debian 262.1-1) wrote for a directory sysext on tmpfs
    /// (`--root`, chroot), captured for issue 17; the same merge by extmerge gave the
    /// same bytes.
    #[test]
    fn systemd_origin_bytes_of_262_1() {
        let want = "{\n\t\"mutable\" : {\n\t\t\"mode\" : \"no\"\n\t},\n\t\"extensions\" : {\n\
            \t\t\"a\" : {\n\t\t\t\"path\" : \"/var/lib/extensions/a\",\n\
            \t\t\t\"onMountId\" : 2149243654,\n\t\t\t\"fileHandle\" : {\n\
            \t\t\t\t\"type\" : 1,\n\t\t\t\t\"handle\" : \"3097035d0b00000000000000\"\n\
            \t\t\t},\n\t\t\t\"crtime\" : 1796624655991586,\n\t\t\t\"mtime\" : 0\n\t\t}\n\t}\n}\n";
        let v = Json::obj([
            ("mutable", Json::obj([("mode", Json::str("no"))])),
            (
                "extensions",
                Json::obj([(
                    "a",
                    systemd_extension(
                        "/var/lib/extensions/a",
                        &SystemdIdentity {
                            mount_id: 2149243654,
                            handle: Some((1, hex("3097035d0b00000000000000"))),
                            ino: 0,
                            crtime_usec: 1796624655991586,
                            mtime_usec: 0,
                        },
                    ),
                )]),
            ),
        ]);
        assert_eq!(sd_json_pretty(&v), want);
        assert!(same_systemd(want, &v));
    }

    /// Without a file handle the inode number is written; mutable dirs as systemd
    /// writes them for `--mutable=yes`.
    #[test]
    fn systemd_origin_inode_and_mutable_dirs() {
        let e = systemd_extension(
            "/var/lib/extensions/q.raw",
            &SystemdIdentity {
                mount_id: 7,
                handle: None,
                ino: 42,
                crtime_usec: 1,
                mtime_usec: 2,
            },
        );
        assert_eq!(
            sd_json_pretty(&e),
            "{\n\t\"path\" : \"/var/lib/extensions/q.raw\",\n\t\"onMountId\" : 7,\n\
             \t\"inode\" : 42,\n\t\"crtime\" : 1,\n\t\"mtime\" : 2\n}\n"
        );
        let m = Json::obj([(
            "mutable",
            Json::obj([
                ("mode", Json::str("yes")),
                (
                    "mutableDirs",
                    Json::obj([
                        ("/usr", Json::str("/var/lib/extensions.mutable/usr")),
                        ("/opt", Json::str("/var/lib/extensions.mutable/opt")),
                    ]),
                ),
            ]),
        )]);
        assert_eq!(
            sd_json_pretty(&m),
            "{\n\t\"mutable\" : {\n\t\t\"mode\" : \"yes\",\n\t\t\"mutableDirs\" : {\n\
             \t\t\t\"/usr\" : \"/var/lib/extensions.mutable/usr\",\n\
             \t\t\t\"/opt\" : \"/var/lib/extensions.mutable/opt\"\n\t\t}\n\t}\n}\n"
        );
        // sd-json escapes only C0 controls; ours also DEL and C1 (terminal safety): the
        // same string once parsed, which is how systemd compares.
        let s = Json::str("a\"b\\c\nd\te\u{1}\u{7f}é\u{8}\u{c}\r").render(true);
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\te\\u0001\\u007fé\\b\\f\\r\"");
        assert!(same_systemd(
            "{\"p\":\"a\u{7f}\\b\"}",
            &Json::obj([("p", Json::str("a\u{7f}\u{8}"))])
        ));
        assert_eq!(sd_json_pretty(&Json::Object(vec![])), "{}\n");
        // Escapes systemd may write read back as the same string; numbers by value.
        assert!(same_systemd(
            "{\"p\":\"\\u0041\\/\"}",
            &Json::obj([("p", Json::str("A/"))])
        ));
        assert!(!same_systemd(
            "{\"n\":1.5}",
            &Json::obj([("n", Json::UInt(1))])
        ));
        assert!(same_systemd(
            "{\"n\":18446744073709551615}",
            &Json::obj([("n", Json::UInt(u64::MAX))])
        ));
        assert!(!same_systemd(
            "{\"n\":18446744073709551614}",
            &Json::obj([("n", Json::UInt(u64::MAX))])
        ));
    }

    /// The identity systemd records: times in µs, a directory's mtime 0, an image
    /// file's its own; a replaced object differs.
    #[test]
    fn systemd_identity_of_files_and_directories() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("x.raw");
        std::fs::write(&f, "x").unwrap();
        let md = std::fs::metadata(&f).unwrap();
        let open = |p: &std::path::Path| std::fs::File::open(p).unwrap();
        let a = systemd_identity(open(&f).as_fd(), ImageKind::Raw).unwrap();
        assert_eq!(
            a.mtime_usec,
            md.mtime() as u64 * 1_000_000 + md.mtime_nsec() as u64 / 1000
        );
        assert_eq!(a.ino, md.ino());
        assert!(a.mount_id != 0);
        assert_eq!(
            a,
            systemd_identity(open(&f).as_fd(), ImageKind::Raw).unwrap()
        );
        let d = systemd_identity(open(t.path()).as_fd(), ImageKind::Directory).unwrap();
        assert_eq!(d.mtime_usec, 0);
        assert_eq!(d.mount_id, a.mount_id);
        let b = systemd_identity(open(t.path()).as_fd(), ImageKind::Block).unwrap();
        assert_eq!((b.crtime_usec, b.mtime_usec), (0, 0));
        std::fs::remove_file(&f).unwrap();
        std::fs::write(&f, "x").unwrap();
        let c = systemd_identity(open(&f).as_fd(), ImageKind::Raw).unwrap();
        if a.handle.is_some() {
            assert_ne!(c.handle, a.handle, "a new file, a new handle");
        }
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
