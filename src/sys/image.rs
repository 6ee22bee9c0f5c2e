//! Opening disk-image extensions (`foo.raw` files and block devices): the
//! [`plan::Opener`](crate::plan::Opener) that turns an image into a mounted, read-only
//! directory tree, with dm-verity when the image carries a root hash.
//!
//! For each image, [`ImageOpener`] does what systemd's `dissect_image` +
//! `dissected_image_mount` do for sysext/confext, with fds and the new mount API:
//!
//! 1. The image is opened inside the root (`RESOLVE_IN_ROOT`: a symlink cannot lead
//!    out of it) and its layout read: a GUID partition table ([`gpt::parse`],
//!    [`gpt::select_roles`] for the native architecture) or, when there is no partition
//!    table at all, a bare file system ([`fs::probe`]). A partition table that is there
//!    but broken is an error, never a reason to try the file as a bare file system.
//! 2. Verity metadata is collected in systemd's order (B.8.3 of the behaviour notes):
//!    xattr `user.verity.roothash`, sidecar `foo.roothash`, xattr `user.verity.usrhash`,
//!    sidecar `foo.usrhash`; then the signature `foo.roothash.p7s` / `foo.usrhash.p7s`;
//!    the hash tree `foo.verity` (which makes the image a bare file system); then the
//!    GPT's `*-verity` and `*-verity-sig` partitions (JSON `rootHash`, `signature`), and
//!    at last, as systemd v260+ does, a root hash derived from the partition UUIDs that
//!    `systemd-repart` writes (data partition UUID = first 128 bits of the root hash,
//!    verity partition UUID = last 128 bits). Sidecars are looked up inside the root,
//!    for image files only (not block devices), and read with size limits.
//! 3. The image policy ([`policy::pick_for_image`]) decides which protection is used:
//!    [`ImagePolicy::resolve`] per data partition, absent partitions checked too.
//! 4. The data (and hash) regions get read-only, auto-clearing loop devices; with a
//!    root hash, a dm-verity device named `<root hash>-verity` goes on top (a signature
//!    travels to the kernel in a `user` key, see [`crate::sys::keyring`]; it is never
//!    checked in userspace). The file system type is probed again through the verity
//!    device, so what is mounted is chosen from verified bytes.
//! 5. The file system is mounted (`fsopen`/`fsmount`, `ro`, `nodev`, `nosuid`) and
//!    attached below the opener's own staging tmpfs under [`WORKSPACE`]: Linux 6.1's
//!    overlayfs refuses layers on detached mounts. A `/usr` partition is mounted at
//!    `usr/` of an empty directory (systemd's `USR_NO_ROOT`). Then the dm device is
//!    marked for deferred removal and the loop fds are closed, so loop and dm devices
//!    vanish when the last user of the mount (the overlay) goes away.
//!
//! # Verity or nothing
//!
//! An image that carries verity for a file system (a `*-verity` partition for it, or a
//! `.verity` sidecar) is mounted through dm-verity or refused, never as it is: the root
//! hash is taken from wherever systemd takes it, down to the partition UUIDs (which need
//! no superblock), and whatever then does not fit — no usable superblock, a root hash of
//! the wrong length, a nil partition UUID, a `-verity` partition marked "no-auto", an
//! image policy that ignores the hash partition — refuses the image with the reason. Is
//! the hash tree damaged beyond its superblock, dm-verity refuses the reads. Likewise a
//! sidecar that is there but unusable (empty, no hex, wrong length, not a regular file,
//! a dangling symlink, a signature without the root hash it signs, a signature that is
//! no PKCS#7 envelope) refuses the image, naming the file; only a name that does not
//! exist at all counts as absent.
//!
//! Any failure undoes everything done for that image (mounts, dm device, loop devices,
//! directories) and returns a message naming the image and the step.
//!
//! # An existing verity device of the same name
//!
//! The dm name derives from the root hash, so a second open of the same content (a
//! `refresh` while the old merge still holds its device, or two images with equal
//! content) finds the name taken. Like systemd, which shares such devices, the existing
//! device is reused, but only after checking that its live table is a single `verity`
//! target over the same number of sectors with the same root hash, and, when the policy
//! asks for a signature, that it was loaded with one (`root_hash_sig_key_desc`); the
//! root hash authenticates every block that device returns. Otherwise the open fails
//! with an error naming the device. A reused device is not marked for removal by us
//! (whoever made it decides), and the new loop devices are not needed.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::mount::{
    fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, FsMountFlags,
    FsOpenFlags, MountAttrFlags,
};

use crate::fault::{self, Injector};
use crate::format::class::Class;
use crate::format::fs::{self, FsType};
use crate::format::gpt::{self, GptError, Guid, Role};
use crate::format::policy::{self, ImagePolicy, PartitionDesignator, Protection};
use crate::format::verity::{self, RootHash, VeritySig, VeritySuperblock};
use crate::inspect::discover::{Image, ImageKind};
use crate::inspect::fsutil::{self, Root};
use crate::log::{errno_text, os_text};
use crate::plan::{DirOpener, Opener};
use crate::sys::dm::{Dm, DmFlags, Removal};
use crate::sys::keyring;
use crate::sys::loopdev::{LoopDevice, LoopOptions};
use crate::sys::mount::{self, MountError};
use crate::sys::staging::{mkdir_open, StagingArea};

/// Largest `.roothash` / `.usrhash` sidecar read (a SHA-512 root hash is 128 hex digits;
/// whitespace and a comment line fit easily).
pub const MAX_ROOT_HASH_FILE: u64 = 64 * 1024;
/// Largest `.roothash.p7s` / `.usrhash.p7s` accepted: what a kernel `user` key holds.
pub const MAX_SIGNATURE_FILE: u64 = keyring::MAX_USER_KEY_PAYLOAD as u64;
/// Largest xattr value read for `user.verity.roothash` / `user.verity.usrhash`.
const MAX_XATTR: usize = 4096;
/// Longest dm device name (`DM_NAME_LEN` minus the NUL).
const MAX_DM_NAME: usize = 127;

// ---------------------------------------------------------------------------------------
// What an image is made of

/// How the image is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// A file system filling the whole image (no partition table, or an external `.verity`
    /// hash tree, which makes systemd skip the partition table).
    Bare,
    /// A GUID partition table.
    Gpt {
        /// Its logical sector size.
        sector_size: u32,
        /// Number of used partition entries.
        partitions: usize,
    },
}

/// A GPT partition that is used, for messages and `plan` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// 1-based entry index.
    pub index: u32,
    /// The role its type GUID gives it.
    pub role: Role,
    /// Partition label.
    pub label: String,
    /// Partition UUID.
    pub uuid: Guid,
    /// Start in bytes from the start of the image.
    pub offset: u64,
    /// Length in bytes.
    pub size: u64,
}

impl PartitionInfo {
    fn from_chosen(c: &gpt::Chosen) -> PartitionInfo {
        let p = &c.partition;
        PartitionInfo {
            index: p.index,
            role: c.role,
            label: p.label.clone(),
            uuid: p.uuid,
            offset: p.offset_bytes,
            size: p.size_bytes,
        }
    }
}

/// Where a dm-verity hash tree is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashLocation {
    /// A `*-verity` partition of the image.
    Partition(PartitionInfo),
    /// A `foo.verity` file beside the image (path inside the root).
    Sidecar {
        /// Path inside the root.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
    },
}

/// A hash tree found for a data region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashTree {
    /// Where it is.
    pub location: HashLocation,
    /// Its verity superblock (always read by [`inspect`]: a hash tree that has none
    /// usable makes the image refused).
    pub superblock: Option<VeritySuperblock>,
}

impl HashTree {
    /// Byte offset and length of the hash device in its file.
    fn region(&self) -> (u64, u64) {
        match &self.location {
            HashLocation::Partition(p) => (p.offset, p.size),
            HashLocation::Sidecar { size, .. } => (0, *size),
        }
    }
}

/// Where a root hash came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashSource {
    /// An extended attribute of the image file (`user.verity.roothash`, `user.verity.usrhash`).
    Xattr(&'static str),
    /// A sidecar file (path inside the root).
    Sidecar(PathBuf),
    /// The JSON of the `*-verity-sig` partition with this index.
    SigPartition(u32),
    /// Derived from the UUIDs of the data and verity partitions (systemd-repart's
    /// convention; systemd v260+ `dissected_image_guess_verity_roothash`).
    PartitionUuids,
}

/// Where a root hash signature came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigSource {
    /// A `.roothash.p7s` / `.usrhash.p7s` file (path inside the root).
    Sidecar(PathBuf),
    /// The JSON of the `*-verity-sig` partition with this index.
    SigPartition(u32),
}

/// One file system of an image, with what protects it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// `root` (also for bare images and generic Linux partitions) or `usr`.
    pub designator: PartitionDesignator,
    /// Where it goes in the extension's tree: `""` (the top) or `"usr"`.
    pub mount_point: &'static str,
    /// The partition, for GPT images.
    pub partition: Option<PartitionInfo>,
    /// Start of the data in the image, in bytes.
    pub offset: u64,
    /// Length of the data region in bytes.
    pub size: u64,
    /// File system type, probed from the (not yet verified) first bytes.
    pub fstype: FsType,
    /// The hash tree, if any.
    pub hash_tree: Option<HashTree>,
    /// The root hash and where it came from.
    pub root_hash: Option<(RootHash, HashSource)>,
    /// The PKCS#7 signature of the root hash (hex text) and where it came from.
    pub signature: Option<(Vec<u8>, SigSource)>,
    /// The best protection the image offers for this volume: `Signed` (root hash, hash
    /// tree and signature), `Verity` (root hash and hash tree) or `Unprotected`.
    pub protection: Protection,
}

/// What [`inspect`] found in an image, without attaching anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The image path inside the root.
    pub path: PathBuf,
    /// Raw file or block device.
    pub kind: ImageKind,
    /// Its size in bytes.
    pub size: u64,
    /// Bare file system or GPT.
    pub layout: Layout,
    /// The file systems to mount: the primary one first (root, or usr when there is no
    /// root), then a `usr` partition beside a root partition.
    pub volumes: Vec<Volume>,
    /// Designators of every partition present (for the image policy's "absent" checks);
    /// `[root]` for a bare image.
    pub present: Vec<PartitionDesignator>,
}

impl ImageInfo {
    /// The primary volume's protection (what `plan` shows).
    pub fn protection(&self) -> Protection {
        self.volumes
            .first()
            .map(|v| v.protection)
            .unwrap_or(Protection::Absent)
    }
}

/// An image opened and inspected: the fds that were looked at are the ones attached.
struct Probed {
    file: File,
    verity_file: Option<File>,
    info: ImageInfo,
}

// ---------------------------------------------------------------------------------------
// Reading

fn read_at(file: &File, offset: u64, len: usize, what: &str) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset).map_err(|e| {
        format!(
            "reading {what} ({len} bytes at offset {offset}): {}",
            os_text(&e)
        )
    })?;
    Ok(buf)
}

/// Size of a regular file (fstat) or block device (`lseek(SEEK_END)`).
fn size_of(fd: BorrowedFd<'_>, kind: ImageKind) -> Result<u64, String> {
    let st = rustix::fs::fstat(fd).map_err(|e| format!("fstat: {}", errno_text(e)))?;
    let ft = FileType::from_raw_mode(st.st_mode);
    match (kind, ft) {
        (ImageKind::Raw, FileType::RegularFile) => Ok(st.st_size as u64),
        (ImageKind::Block, FileType::BlockDevice) => {
            rustix::fs::seek(fd, rustix::fs::SeekFrom::End(0))
                .map_err(|e| format!("lseek(SEEK_END): {}", errno_text(e)))
        }
        _ => Err(format!(
            "expected a {}, found a {}",
            if kind == ImageKind::Raw {
                "regular file"
            } else {
                "block device"
            },
            fsutil::file_type_name(ft)
        )),
    }
}

/// `foo.raw` → `foo` + `suffix` (systemd strips a trailing `.raw`; other names get the
/// suffix appended).
fn sidecar_path(image: &Path, suffix: &str) -> PathBuf {
    let bytes = image.as_os_str().as_bytes();
    let base = bytes.strip_suffix(b".raw").unwrap_or(bytes);
    let mut v = base.to_vec();
    v.extend_from_slice(suffix.as_bytes());
    PathBuf::from(OsStr::from_bytes(&v))
}

/// Every sidecar file an image may have (systemd's names).
const SIDECAR_SUFFIXES: [&str; 5] = [
    ".roothash",
    ".usrhash",
    ".roothash.p7s",
    ".usrhash.p7s",
    ".verity",
];

/// The verity inputs of a raw image besides its bytes, as a line for the refresh
/// fingerprint: the mtime and inode of each sidecar present and the image's ctime (which
/// setting a `user.verity.*` xattr bumps). A refresh then notices a root hash, hash tree
/// or signature that was added, removed or replaced next to an unchanged image — which
/// can turn an unprotected merge into a verified one.
pub fn verity_inputs_stamp(root: &Root, image: &Image) -> String {
    if image.kind != ImageKind::Raw {
        return String::new();
    }
    // A name that is there but cannot be followed (a dangling symlink, which the opener
    // refuses) is stamped as the link itself, so that its appearance is noticed too.
    let stamp = |rel: &Path| -> Option<String> {
        let (fd, kind) = match root.open_at(rel, OFlags::PATH) {
            Ok(fd) => (fd, ""),
            Err(_) => (
                root.open_at(rel, OFlags::PATH | OFlags::NOFOLLOW).ok()?,
                "link:",
            ),
        };
        let st = rustix::fs::fstat(&fd).ok()?;
        Some(format!(
            "{kind}{}.{} {}.{} {}.{}",
            st.st_ino, st.st_dev, st.st_mtime, st.st_mtime_nsec, st.st_ctime, st.st_ctime_nsec
        ))
    };
    let mut s = format!("verity-inputs {}", image.path.display());
    if let Some(st) = stamp(&image.path) {
        s += &format!(" image={st}");
    }
    for suffix in SIDECAR_SUFFIXES {
        if let Some(st) = stamp(&sidecar_path(&image.path, suffix)) {
            s += &format!(" {suffix}={st}");
        }
    }
    s.push('\n');
    s
}

/// Opens a sidecar inside the root; `None` when there is no such name. It must be a
/// regular file: anything else that is there (a directory, a device, a symlink whose
/// target does not exist inside the root, one that cannot be opened) is an error, never
/// a reason to go on as if the sidecar were absent — that would drop the protection it
/// was put there for.
fn open_sidecar(root: &Root, rel: &Path) -> Result<Option<File>, String> {
    let fd = match root.open_at(rel, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // ENOENT also comes from a symlink whose target is missing: the name is there.
            return match root.open_at(rel, OFlags::PATH | OFlags::NOFOLLOW) {
                Err(e2) if e2.kind() == io::ErrorKind::NotFound => Ok(None),
                Ok(_) => Err(format!(
                    "{}: dangling symlink (its target does not exist inside the root): {}",
                    rel.display(),
                    os_text(&e)
                )),
                Err(e2) => Err(format!("{}: {}", rel.display(), os_text(&e2))),
            };
        }
        Err(e) => return Err(format!("{}: {}", rel.display(), os_text(&e))),
    };
    let st = rustix::fs::fstat(&fd)
        .map_err(|e| format!("{}: fstat: {}", rel.display(), errno_text(e)))?;
    let ft = FileType::from_raw_mode(st.st_mode);
    if ft != FileType::RegularFile {
        return Err(format!(
            "{}: not a regular file ({})",
            rel.display(),
            fsutil::file_type_name(ft)
        ));
    }
    Ok(Some(File::from(fd)))
}

fn read_sidecar(root: &Root, rel: &Path, limit: u64) -> Result<Option<Vec<u8>>, String> {
    let Some(f) = open_sidecar(root, rel)? else {
        return Ok(None);
    };
    fsutil::read_fd_bounded(OwnedFd::from(f), limit)
        .map(Some)
        .map_err(|e| format!("{}: {e}", rel.display()))
}

fn read_xattr(file: &File, name: &str) -> Result<Option<Vec<u8>>, String> {
    let mut buf = vec![0u8; MAX_XATTR];
    match rustix::fs::fgetxattr(file, name, &mut buf[..]) {
        Ok(n) => {
            buf.truncate(n);
            Ok(Some(buf))
        }
        Err(rustix::io::Errno::NODATA)
        | Err(rustix::io::Errno::NOTSUP)
        | Err(rustix::io::Errno::NOSYS) => Ok(None),
        Err(rustix::io::Errno::RANGE) => Err(format!(
            "xattr {name} is larger than {MAX_XATTR} bytes: not a root hash"
        )),
        Err(e) => Err(format!("reading xattr {name}: {}", errno_text(e))),
    }
}

fn designator_of(role: Role) -> PartitionDesignator {
    match role {
        Role::Usr => PartitionDesignator::Usr,
        _ => PartitionDesignator::Root,
    }
}

/// The policy designator of a partition role, for the "must be absent" checks.
fn designator_of_role(role: Role) -> Option<PartitionDesignator> {
    use PartitionDesignator as D;
    Some(match role {
        Role::Root | Role::LinuxGeneric => D::Root,
        Role::RootVerity => D::RootVerity,
        Role::RootVeritySig => D::RootVeritySig,
        Role::Usr => D::Usr,
        Role::UsrVerity => D::UsrVerity,
        Role::UsrVeritySig => D::UsrVeritySig,
        Role::Esp => D::Esp,
        Role::Xbootldr => D::Xbootldr,
        Role::Swap => D::Swap,
        Role::Home => D::Home,
        Role::Srv => D::Srv,
        Role::Var => D::Var,
        Role::Tmp => D::Tmp,
        Role::UserHome => return None,
    })
}

/// Probes the file system at `offset` (at most [`fs::PROBE_BYTES`] read), checking it
/// fits into `size` bytes.
fn probe_fs(file: &File, offset: u64, size: u64) -> Result<FsType, String> {
    let len = size.min(fs::PROBE_BYTES as u64) as usize;
    let buf = read_at(file, offset, len, "the file system superblock")?;
    fs::probe_with_size(&buf, size).map_err(|e| format!("file system: {e}"))
}

/// Reads and checks the verity superblock at the start of `tree`, against a data region
/// of `data_size` bytes.
fn read_superblock(
    image: &File,
    verity_file: Option<&File>,
    tree: &HashTree,
    data_size: u64,
) -> Result<VeritySuperblock, String> {
    let file = match tree.location {
        HashLocation::Partition(_) => image,
        HashLocation::Sidecar { .. } => verity_file.unwrap_or(image),
    };
    let what = match &tree.location {
        HashLocation::Partition(p) => format!("{} partition {}", p.role, p.index),
        HashLocation::Sidecar { path, .. } => path.display().to_string(),
    };
    let (off, size) = tree.region();
    if size < verity::SUPERBLOCK_SIZE as u64 {
        return Err(format!(
            "verity hash tree {what}: {size} bytes, too small for a superblock"
        ));
    }
    let buf = read_at(file, off, verity::SUPERBLOCK_SIZE, "the verity superblock")?;
    let sb = VeritySuperblock::parse(&buf).map_err(|e| format!("verity hash tree {what}: {e}"))?;
    let need = sb
        .hash_device_size(0)
        .map_err(|e| format!("verity hash tree {what}: {e}"))?;
    if need > size {
        return Err(format!(
            "verity hash tree {what} is truncated: {size} bytes, its tree needs {need}"
        ));
    }
    let covered = sb
        .data_size()
        .map_err(|e| format!("verity hash tree {what}: {e}"))?;
    if covered > data_size {
        return Err(format!(
            "verity hash tree {what} covers {covered} bytes of data, but the data region has only {data_size} (truncated image?)"
        ));
    }
    Ok(sb)
}

// ---------------------------------------------------------------------------------------
// Inspection

fn describe(s: &HashSource) -> String {
    match s {
        HashSource::Xattr(x) => format!("xattr {x}"),
        HashSource::Sidecar(p) => p.display().to_string(),
        HashSource::SigPartition(i) => format!("signature partition {i}"),
        HashSource::PartitionUuids => "the partition UUIDs".into(),
    }
}

/// Refuses a data partition whose `-verity` (or, beside one, `-verity-sig`) partition
/// exists but is marked "no-auto". [`gpt::select_roles`] skips such partitions as systemd
/// does, which would mount the data with less protection than the image carries (a set
/// bit is all it takes); a data partition that has its own, usable verity partition is
/// not affected (A/B images keep the inactive set "no-auto").
fn check_no_auto_protection(g: &gpt::Gpt, set: &gpt::RoleSet) -> Result<(), String> {
    let (verity_role, sig_role) = match set.data.role {
        Role::Root => (Role::RootVerity, Role::RootVeritySig),
        Role::Usr => (Role::UsrVerity, Role::UsrVeritySig),
        _ => return Ok(()),
    };
    let wanted = match (&set.verity, &set.verity_sig) {
        (None, _) => verity_role,
        (Some(_), None) => sig_role,
        (Some(_), Some(_)) => return Ok(()),
    };
    let Some(arch) = set.data.arch else {
        return Ok(());
    };
    if let Some(p) = g
        .partitions
        .iter()
        .find(|p| p.no_auto() && gpt::role_for(&p.type_guid, arch) == Some(wanted))
    {
        return Err(format!(
            "{wanted} partition {} is marked no-auto, so the {} partition {} would be used without it; refusing the image rather than dropping its protection",
            p.index, set.data.role, set.data.partition.index
        ));
    }
    Ok(())
}

/// Root hash from the xattrs and sidecars, with its designator.
type SidecarHash = (RootHash, HashSource, PartitionDesignator);

fn sidecar_root_hash(
    root: &Root,
    image: &Image,
    file: &File,
) -> Result<Option<SidecarHash>, String> {
    for (d, xattr, suffix) in [
        (
            PartitionDesignator::Root,
            "user.verity.roothash",
            ".roothash",
        ),
        (PartitionDesignator::Usr, "user.verity.usrhash", ".usrhash"),
    ] {
        if let Some(v) = read_xattr(file, xattr)? {
            let h = RootHash::from_sidecar(&v).map_err(|e| format!("xattr {xattr}: {e}"))?;
            return Ok(Some((h, HashSource::Xattr(xattr), d)));
        }
        let p = sidecar_path(&image.path, suffix);
        if let Some(v) = read_sidecar(root, &p, MAX_ROOT_HASH_FILE)? {
            let h = RootHash::from_sidecar(&v).map_err(|e| format!("{}: {e}", p.display()))?;
            return Ok(Some((h, HashSource::Sidecar(p), d)));
        }
    }
    Ok(None)
}

/// Opens and inspects `image`: everything [`inspect`] reports, plus the open files.
fn probe(root: &Root, image: &Image, arch: &str) -> Result<Probed, String> {
    if image.kind == ImageKind::Directory {
        return Err("a directory, not a disk image".into());
    }
    let fd = root
        .open_at(
            &image.path,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
        )
        .map_err(|e| format!("cannot open: {}", os_text(&e)))?;
    let size = size_of(fd.as_fd(), image.kind)?;
    let file = File::from(fd);
    let is_file = image.kind == ImageKind::Raw;

    // Verity sidecars (image files only, as systemd).
    let mut side_hash = None;
    let mut side_sig: Option<(Vec<u8>, SigSource)> = None;
    let mut verity_file = None;
    let mut verity_path = None;
    if is_file {
        side_hash = sidecar_root_hash(root, image, &file)?;
        let used = side_hash.as_ref().map(|(_, s, d)| (*d, s.clone()));
        for (d, suffix, hash_suffix, xattr) in [
            (
                PartitionDesignator::Root,
                ".roothash.p7s",
                ".roothash",
                "user.verity.roothash",
            ),
            (
                PartitionDesignator::Usr,
                ".usrhash.p7s",
                ".usrhash",
                "user.verity.usrhash",
            ),
        ] {
            let p = sidecar_path(&image.path, suffix);
            match &used {
                Some((ud, _)) if *ud == d => {}
                // systemd reads a signature only for the root hash it found in a sidecar
                // or xattr and ignores any other; ignoring one here would merge with less
                // protection than whoever put it there asked for.
                _ => {
                    if open_sidecar(root, &p)?.is_some() {
                        return Err(match &used {
                            None => format!(
                                "{}: a root hash signature without a root hash to go with it (no {} file, no xattr {xattr}); refusing the image rather than ignoring the signature",
                                p.display(),
                                sidecar_path(&image.path, hash_suffix).display()
                            ),
                            Some((ud, src)) => format!(
                                "{}: a signature of the {d} root hash, but the root hash given is for {ud} ({}); refusing the image rather than ignoring the signature",
                                p.display(),
                                describe(src)
                            ),
                        });
                    }
                    continue;
                }
            }
            if let Some(sig) = read_sidecar(root, &p, MAX_SIGNATURE_FILE)? {
                verity::check_signature_envelope(&sig)
                    .map_err(|e| format!("{}: {e}", p.display()))?;
                side_sig = Some((sig, SigSource::Sidecar(p)));
            }
        }
        let p = sidecar_path(&image.path, ".verity");
        if let Some(f) = open_sidecar(root, &p)? {
            verity_file = Some(f);
            verity_path = Some(p);
        }
    }

    // Layout.
    let gpt = if verity_file.is_some() {
        None // an external hash tree means: the image is one file system
    } else {
        match gpt::parse(|off, buf| file.read_exact_at(buf, off), size) {
            Ok(g) => Some(g),
            Err(
                GptError::TooSmall { .. } | GptError::NoProtectiveMbr { .. } | GptError::NoHeader,
            ) => None,
            Err(e) => return Err(format!("partition table: {e}")),
        }
    };

    let (layout, mut volumes, present) = match &gpt {
        None => {
            let fstype = probe_fs(&file, 0, size)?;
            let hash_tree = match (&verity_file, &verity_path) {
                (Some(f), Some(p)) => {
                    let vsize = rustix::fs::fstat(f)
                        .map_err(|e| format!("{}: fstat: {}", p.display(), errno_text(e)))?
                        .st_size as u64;
                    Some(HashTree {
                        location: HashLocation::Sidecar {
                            path: p.clone(),
                            size: vsize,
                        },
                        superblock: None,
                    })
                }
                _ => None,
            };
            let v = Volume {
                designator: PartitionDesignator::Root,
                mount_point: "",
                partition: None,
                offset: 0,
                size,
                fstype,
                hash_tree,
                root_hash: None,
                signature: None,
                protection: Protection::Unprotected,
            };
            (Layout::Bare, vec![v], vec![PartitionDesignator::Root])
        }
        Some(g) => {
            let sel = gpt::select_roles(g, arch).map_err(|e| format!("partition table: {e}"))?;
            let mut present = Vec::new();
            let mut archs = vec![arch];
            if let Some(s) = crate::format::arch::secondary(arch) {
                archs.push(s);
            }
            for p in &g.partitions {
                if p.no_auto() {
                    continue;
                }
                let role = archs.iter().find_map(|a| gpt::role_for(&p.type_guid, a));
                if let Some(d) = role.and_then(designator_of_role) {
                    if !present.contains(&d) {
                        present.push(d);
                    }
                }
            }
            let mut vols = Vec::new();
            let mut sig_parts = Vec::new();
            for set in std::iter::once(&sel.primary).chain(sel.usr.as_ref()) {
                check_no_auto_protection(g, set)?;
                let d = designator_of(set.data.role);
                let pi = PartitionInfo::from_chosen(&set.data);
                let mount_point = if d == PartitionDesignator::Usr {
                    "usr"
                } else {
                    ""
                };
                let fstype = probe_fs(&file, pi.offset, pi.size).map_err(|e| {
                    format!("{} partition {} ({}): {e}", pi.role, pi.index, pi.label)
                })?;
                let hash_tree = set.verity.as_ref().map(|c| HashTree {
                    location: HashLocation::Partition(PartitionInfo::from_chosen(c)),
                    superblock: None,
                });
                sig_parts.push(set.verity_sig.as_ref().map(PartitionInfo::from_chosen));
                vols.push(Volume {
                    designator: d,
                    mount_point,
                    offset: pi.offset,
                    size: pi.size,
                    partition: Some(pi),
                    fstype,
                    hash_tree,
                    root_hash: None,
                    signature: None,
                    protection: Protection::Unprotected,
                });
            }
            // Signature partitions: root hash and signature, unless sidecars gave them.
            for (v, sig) in vols.iter_mut().zip(sig_parts) {
                let Some(sp) = sig else { continue };
                if sp.size > verity::MAX_SIG_PARTITION_SIZE as u64 {
                    return Err(format!(
                        "{} partition {}: {}",
                        sp.role,
                        sp.index,
                        verity::VerityError::SigPartitionTooLarge(sp.size as usize)
                    ));
                }
                let data = read_at(
                    &file,
                    sp.offset,
                    sp.size as usize,
                    "the signature partition",
                )?;
                let js = VeritySig::parse_json(&data)
                    .map_err(|e| format!("{} partition {}: {e}", sp.role, sp.index))?;
                verity::check_signature_envelope(&js.signature)
                    .map_err(|e| format!("{} partition {}: {e}", sp.role, sp.index))?;
                v.root_hash = Some((js.root_hash, HashSource::SigPartition(sp.index)));
                v.signature = Some((js.signature, SigSource::SigPartition(sp.index)));
            }
            (
                Layout::Gpt {
                    sector_size: g.sector_size,
                    partitions: g.partitions.len(),
                },
                vols,
                present,
            )
        }
    };

    // Sidecar root hash (and signature): they win over the signature partition, whose
    // root hash must then agree (systemd: ENOMSG otherwise).
    if let Some((hash, source, d)) = side_hash {
        let Some(v) = volumes.iter_mut().find(|v| v.designator == d) else {
            return Err(format!(
                "{} gives a verity hash for {d}, but the image has no {d} {}",
                describe(&source),
                if layout == Layout::Bare {
                    "file system (a bare file system image counts as root)"
                } else {
                    "partition"
                }
            ));
        };
        if let Some((part_hash, part_source)) = &v.root_hash {
            if *part_hash != hash {
                return Err(format!(
                    "root hash {part_hash} in {} differs from root hash {hash} in {}",
                    describe(part_source),
                    describe(&source)
                ));
            }
        }
        v.root_hash = Some((hash, source));
        if let Some(s) = side_sig {
            v.signature = Some(s);
        }
    }

    // Superblocks, derived root hashes, protection. A volume with a hash tree is used
    // with verity or not at all: whatever is wrong with its verity metadata is an error,
    // never a reason to mount the data unprotected.
    for v in &mut volumes {
        let Some(tree) = &mut v.hash_tree else {
            if let Some((h, s)) = &v.root_hash {
                return Err(format!(
                    "root hash {h} from {} but no hash tree for the {} file system (no {}-verity partition or .verity file)",
                    describe(s), v.designator, v.designator
                ));
            }
            v.protection = Protection::Unprotected;
            continue;
        };
        let refuse = |e: String| {
            format!(
                "{e}; the image carries a hash tree for its {} file system, which is not mounted without verity",
                v.designator
            )
        };
        if v.root_hash.is_none() {
            match (&v.partition, &tree.location) {
                // systemd (dissected_image_guess_verity_roothash): with neither a sidecar
                // nor a signature partition, the data and verity partition UUIDs, joined,
                // are the root hash (what systemd-repart writes). Whether it is right is
                // for dm-verity to decide; the superblock is not needed to derive it.
                (Some(data), HashLocation::Partition(hp)) => {
                    if data.uuid.is_nil() || hp.uuid.is_nil() {
                        return Err(refuse(format!(
                            "no root hash: no signature partition, no .roothash/.usrhash sidecar or xattr, and the {} partition {} has a nil partition UUID, so none can be derived from the UUIDs",
                            if data.uuid.is_nil() { data.role } else { hp.role },
                            if data.uuid.is_nil() { data.index } else { hp.index },
                        )));
                    }
                    let mut b = data.uuid.to_text_bytes().to_vec();
                    b.extend_from_slice(&hp.uuid.to_text_bytes());
                    let h = RootHash::from_bytes(&b)
                        .map_err(|e| refuse(format!("root hash from the partition UUIDs: {e}")))?;
                    v.root_hash = Some((h, HashSource::PartitionUuids));
                }
                (_, HashLocation::Sidecar { path, .. }) => {
                    return Err(format!(
                        "{} has a hash tree but no root hash was found (.roothash, .usrhash, or the user.verity.* xattrs)",
                        path.display()
                    ));
                }
                (None, HashLocation::Partition(hp)) => {
                    return Err(refuse(format!(
                        "no root hash for the {} partition {}",
                        hp.role, hp.index
                    )));
                }
            }
        }
        let (h, src) = v.root_hash.as_ref().expect("set above");
        let sb = read_superblock(&file, verity_file.as_ref(), tree, v.size).map_err(refuse)?;
        h.check_algorithm(sb.algorithm).map_err(|e| {
            refuse(format!(
                "root hash from {} does not fit the hash tree: {e}",
                describe(src)
            ))
        })?;
        tree.superblock = Some(sb);
        v.protection = match &v.signature {
            Some(_) => Protection::Signed,
            None => Protection::Verity,
        };
    }

    Ok(Probed {
        file,
        verity_file,
        info: ImageInfo {
            path: image.path.clone(),
            kind: image.kind,
            size,
            layout,
            volumes,
            present,
        },
    })
}

/// Reads an image's layout, file systems, verity metadata and protection, without
/// attaching or mounting anything (for `plan` output and tests). Directory images are
/// refused.
pub fn inspect(root: &Root, image: &Image) -> Result<ImageInfo, String> {
    probe(root, image, crate::format::arch::native()).map(|p| p.info)
}

// ---------------------------------------------------------------------------------------
// Policy

/// Applies `policy` to what the image offers: the protection to use per volume
/// (`Unused` = do not mount).
fn apply_policy(policy: &ImagePolicy, info: &ImageInfo) -> Result<Vec<Protection>, String> {
    let refuse =
        |e: policy::PolicyError| format!("image policy '{policy}' forbids this image: {e}");
    for d in &info.present {
        policy.may_use(*d).map_err(refuse)?;
    }
    for d in [PartitionDesignator::Root, PartitionDesignator::Usr] {
        if !info.volumes.iter().any(|v| v.designator == d) {
            policy.check(d, Protection::Absent).map_err(refuse)?;
        }
    }
    let mut levels = Vec::new();
    for v in &info.volumes {
        let level = policy.resolve(v.designator, v.protection).map_err(refuse)?;
        // systemd drops a hash partition the policy ignores and mounts the data plain;
        // an image that carries verity for a file system is used with it or not at all.
        if level == Protection::Unprotected {
            if let Some(tree) = &v.hash_tree {
                let what = match &tree.location {
                    HashLocation::Partition(p) => format!("{} partition {}", p.role, p.index),
                    HashLocation::Sidecar { path, .. } => path.display().to_string(),
                };
                return Err(format!(
                    "image policy '{policy}' does not use verity for the {d} file system, but the image carries a hash tree for it ({what}); refusing to mount it without verity",
                    d = v.designator
                ));
            }
        }
        levels.push(level);
    }
    if levels.first() == Some(&Protection::Unused) {
        let d = info.volumes[0].designator;
        return Err(format!(
            "image policy '{policy}' ignores the {d} file system: nothing to mount"
        ));
    }
    Ok(levels)
}

// ---------------------------------------------------------------------------------------
// Activation

/// Everything set up for one image so far, undone in reverse when dropped unless
/// [`commit`](Self::commit) handed it over to the mounts.
#[derive(Default)]
struct Setup {
    loops: Vec<LoopDevice>,
    /// dm devices we created (name), to remove again.
    dms: Vec<String>,
    /// Detached or attached mounts, in creation order, with whether they are attached.
    mounts: Vec<(OwnedFd, bool, String)>,
    /// Directories created in the staging tmpfs (relative to it), removed on failure.
    dirs: Vec<String>,
    staging: Option<OwnedFd>,
}

impl Setup {
    /// Success: mark our dm devices for deferred removal, give up the loop fds. The
    /// devices now live exactly as long as the mounts using them.
    fn commit(mut self) {
        if !self.dms.is_empty() {
            match Dm::open() {
                Ok(dm) => {
                    for name in self.dms.drain(..) {
                        match dm.remove(&name, true) {
                            Ok(Removal::Deferred) | Ok(Removal::Removed) => {}
                            Err(e) => crate::log::warn(&format!(
                                "cannot schedule removal of dm device {name}: {e}"
                            )),
                        }
                    }
                }
                Err(e) => crate::log::warn(&format!(
                    "cannot schedule removal of dm devices {:?}: {e}",
                    self.dms
                )),
            }
        }
        for l in self.loops.drain(..) {
            drop(l.keep());
        }
        self.mounts.clear();
        self.dirs.clear();
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        while let Some((fd, attached, what)) = self.mounts.pop() {
            if attached {
                if let Err(e) = mount::detach(fd.as_fd(), &what) {
                    crate::log::warn(&format!("undo: {e}"));
                }
            }
            drop(fd);
        }
        if let Some(st) = &self.staging {
            while let Some(d) = self.dirs.pop() {
                let _ = rustix::fs::unlinkat(st, d.as_str(), AtFlags::REMOVEDIR);
            }
        }
        if !self.dms.is_empty() {
            if let Ok(dm) = Dm::open() {
                for name in self.dms.drain(..) {
                    // Deferred: a mount fd closed just now may still hold it for a moment.
                    if let Err(e) = dm.remove(&name, true) {
                        crate::log::warn(&format!("undo: removing dm device {name}: {e}"));
                    }
                }
            }
        }
        // Dropping a LoopDevice detaches it (or sets autoclear while dm still holds it).
        self.loops.clear();
    }
}

fn loop_options() -> LoopOptions {
    LoopOptions {
        read_only: true,
        autoclear: true,
        direct_io: true,
        ..LoopOptions::default()
    }
}

/// The dm name systemd uses for a verity device: `<root hash hex>-verity` (cut to fit
/// `DM_NAME_LEN` for SHA-512 root hashes).
pub fn verity_dm_name(root_hash: &RootHash) -> String {
    let mut hex = root_hash.to_string();
    hex.truncate(MAX_DM_NAME - "-verity".len());
    format!("{hex}-verity")
}

/// Is the live table of `name` one we can use for `root_hash`?
fn check_existing(
    dm: &Dm,
    name: &str,
    root_hash: &RootHash,
    sectors: u64,
    need_sig: bool,
) -> Result<PathBuf, String> {
    let info = dm
        .dev_status(name)
        .map_err(|e| format!("dm device {name} exists: {e}"))?;
    let bad = |why: String| {
        format!("dm device {name} exists already but cannot be reused: {why}; refusing to use it")
    };
    if !info.flags.contains(DmFlags::ACTIVE_PRESENT) || info.flags.contains(DmFlags::SUSPEND) {
        return Err(bad("it has no live table or is suspended".into()));
    }
    let table = dm.table(name).map_err(|e| bad(e.to_string()))?;
    let [t] = table.as_slice() else {
        return Err(bad(format!("{} targets", table.len())));
    };
    let fields: Vec<&str> = t.text.split_ascii_whitespace().collect();
    if t.target_type != "verity" || t.start != 0 || t.length != sectors {
        return Err(bad(format!(
            "its table is {} over {} sectors, not verity over {sectors}",
            t.target_type, t.length
        )));
    }
    if fields.get(8).map(|h| h.to_ascii_lowercase()) != Some(root_hash.to_string()) {
        return Err(bad("its root hash differs".into()));
    }
    if need_sig && !fields.contains(&"root_hash_sig_key_desc") {
        return Err(bad(
            "it was activated without a signature, but the policy requires one".into(),
        ));
    }
    let path = PathBuf::from(format!("/dev/dm-{}", rustix::fs::minor(info.dev)));
    match rustix::fs::stat(&path) {
        Ok(st)
            if FileType::from_raw_mode(st.st_mode) == FileType::BlockDevice
                && st.st_rdev == info.dev =>
        {
            Ok(path)
        }
        _ => Err(bad(format!("{} is not its device node", path.display()))),
    }
}

/// Where the signature of `v` came from, for messages.
fn sig_source_text(v: &Volume) -> String {
    match &v.signature {
        Some((_, SigSource::Sidecar(p))) => p.display().to_string(),
        Some((_, SigSource::SigPartition(i))) => format!("signature partition {i}"),
        None => "nowhere".into(),
    }
}

/// Sets up dm-verity (when `level` asks for it) or a plain loop device for `v`; returns
/// the block device to mount and the file system type to mount it as.
fn activate(
    probed: &Probed,
    v: &Volume,
    level: Protection,
    setup: &mut Setup,
    faults: &mut Injector,
) -> Result<(PathBuf, FsType), String> {
    let verity = matches!(level, Protection::Verity | Protection::Signed);
    if !verity && v.hash_tree.is_some() {
        // apply_policy refuses this already; never attach verity-carrying data plainly.
        return Err(format!(
            "the {} file system has a hash tree: refusing to mount it without verity",
            v.designator
        ));
    }
    if !verity {
        inject(faults, "loop device")?;
        let lo = LoopDevice::attach(probed.file.as_fd(), v.offset, v.size, loop_options())
            .map_err(|e| format!("loop device for the {} file system: {e}", v.designator))?;
        let path = lo.path().to_path_buf();
        setup.loops.push(lo);
        return Ok((path, v.fstype));
    }
    let (Some(tree), Some((root_hash, _))) = (&v.hash_tree, &v.root_hash) else {
        return Err(format!(
            "no hash tree or root hash for the {} file system",
            v.designator
        ));
    };
    let Some(sb) = &tree.superblock else {
        return Err("verity superblock not read".into());
    };
    let sig = match (level, &v.signature) {
        (Protection::Signed, Some((s, _))) => Some(s.as_slice()),
        (Protection::Signed, None) => return Err("no signature to activate with".into()),
        _ => None,
    };
    let sectors = sb
        .data_sectors()
        .map_err(|e| format!("verity superblock: {e}"))?;
    let hash_start = sb
        .hash_start_block(0)
        .map_err(|e| format!("verity superblock: {e}"))?;
    let dm = Dm::open()
        .map_err(|e| format!("dm-verity needs device-mapper, which is not available: {e}"))?;
    let name = verity_dm_name(root_hash);
    match dm.dev_status(&name) {
        Ok(_) => {
            let path = check_existing(&dm, &name, root_hash, sectors, sig.is_some())?;
            crate::log::debug(&format!("reusing dm-verity device {name}"));
            let fstype = probe_verified(&path, sb.data_size().unwrap_or(v.size))?;
            return Ok((path, fstype));
        }
        Err(e) if e.errno() == libc::ENXIO => {}
        Err(e) => return Err(format!("device-mapper: {e}")),
    }
    inject(faults, "data loop device")?;
    let data = LoopDevice::attach(probed.file.as_fd(), v.offset, v.size, loop_options())
        .map_err(|e| format!("loop device for the {} data: {e}", v.designator))?;
    let data_dev = data.dev();
    setup.loops.push(data);
    let (hoff, hsize) = tree.region();
    let hash_file = match tree.location {
        HashLocation::Partition(_) => &probed.file,
        HashLocation::Sidecar { .. } => probed.verity_file.as_ref().unwrap_or(&probed.file),
    };
    inject(faults, "hash loop device")?;
    let hash = LoopDevice::attach(hash_file.as_fd(), hoff, hsize, loop_options())
        .map_err(|e| format!("loop device for the {} hash tree: {e}", v.designator))?;
    let hash_dev = hash.dev();
    setup.loops.push(hash);

    // Counted before the signature key is added, so a failure here has no key to remove.
    inject(faults, "dm-verity device")?;
    let key = match sig {
        Some(s) => {
            inject(faults, "signature key")?;
            let desc = format!("extmerge:{name}");
            Some(keyring::add_user_key(&desc, s).map_err(|e| {
                format!(
                    "adding the root hash signature to the kernel keyring: {}",
                    os_text(&e)
                )
            })?)
        }
        None => None,
    };
    let params = verity::target_params(
        sb,
        data_dev,
        hash_dev,
        hash_start,
        root_hash,
        key.as_ref().map(|k| k.description()),
    )
    .map_err(|e| format!("verity table: {e}"))?;
    let created = dm.create_verity(&name, None, &params, sectors);
    if let Some(k) = key {
        if let Err(e) = k.remove() {
            crate::log::warn(&format!("removing the signature key: {}", os_text(&e)));
        }
    }
    let dev = match created {
        Ok(d) => d,
        Err(e) if sig.is_some() && keyring::is_signature_refusal(e.errno()) => {
            return Err(format!(
                "the root hash signature was refused by the kernel keyring ({e}): the signing certificate must be in the kernel's trusted keyrings (signature from {})",
                sig_source_text(v)
            ))
        }
        Err(e) if sig.is_some() => {
            return Err(format!(
                "creating dm-verity device {name} with a root hash signature failed: {e} (signature from {})",
                sig_source_text(v)
            ))
        }
        Err(e) => return Err(format!("creating dm-verity device {name}: {e}")),
    };
    setup.dms.push(dev.name.clone());
    let fstype = probe_verified(&dev.path, sb.data_size().unwrap_or(v.size))?;
    Ok((dev.path, fstype))
}

/// Counts an image setup step; fails the one a test asked for ([`fault::IMAGE_FAIL_ENV`]).
fn inject(faults: &mut Injector, what: &str) -> Result<(), String> {
    faults
        .step()
        .map_err(|n| format!("injected fault at image step {n} ({what})"))
}

/// Probes the file system through the verity device: the type that is mounted is decided
/// from verified bytes. A wrong root hash fails here (`EIO`). Only the first 4 KiB are
/// read (all a superblock with 4 KiB blocks needs; more only if the probe asks for it),
/// so that a corrupted block elsewhere fails only the reads that touch it.
fn probe_verified(dev: &Path, size: u64) -> Result<FsType, String> {
    let fd = rustix::fs::open(dev, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| format!("opening {}: {}", dev.display(), errno_text(e)))?;
    let file = File::from(fd);
    let fail = |e: String| {
        format!(
            "reading through dm-verity device {}: {e} (does the root hash match the image?)",
            dev.display()
        )
    };
    let first = size.min(4096);
    let buf = read_at(&file, 0, first as usize, "the file system superblock").map_err(fail)?;
    match fs::probe_with_size(&buf, size) {
        Ok(t) => Ok(t),
        Err(fs::FsError::Truncated { .. }) if first < size => {
            probe_fs(&file, 0, size).map_err(fail)
        }
        Err(e) => Err(fail(format!("file system: {e}"))),
    }
}

/// Drains the fs context's messages (`e …`, `w …` lines).
fn fs_messages(fs: &OwnedFd) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok(n) = rustix::io::read(fs, &mut buf) {
        if n == 0 || out.len() > 16 {
            break;
        }
        out.push(String::from_utf8_lossy(&buf[..n]).trim_end().to_string());
    }
    out
}

/// `fsopen(fstype)`, `source=dev`, `ro` (+ `norecovery` for ext4), `fsmount(RDONLY |
/// NODEV | NOSUID)`: a detached read-only mount of `dev`.
pub fn mount_block(dev: &Path, fstype: FsType) -> Result<OwnedFd, MountError> {
    let name = fstype.fstype_name();
    let what = dev.display().to_string();
    let fs = fsopen(name, FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(|e| MountError::new("fsopen", name, e))?;
    let err = |op: &'static str, e: rustix::io::Errno| MountError {
        op,
        what: format!("{name} on {what}"),
        source: e.into(),
        messages: fs_messages(&fs),
    };
    fsconfig_set_string(&fs, "source", dev).map_err(|e| err("fsconfig source", e))?;
    fsconfig_set_flag(&fs, "ro").map_err(|e| err("fsconfig ro", e))?;
    if fstype == FsType::Ext4 {
        // Never replay a journal on a read-only image.
        fsconfig_set_flag(&fs, "norecovery").map_err(|e| err("fsconfig norecovery", e))?;
    }
    fsconfig_create(&fs).map_err(|e| err("fsconfig create", e))?;
    fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_RDONLY
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOSUID,
    )
    .map_err(|e| err("fsmount", e))
}

// ---------------------------------------------------------------------------------------
// Staging

// ---------------------------------------------------------------------------------------
// The opener

/// Opens directory and disk-image extensions (see the module docs). Mounts made for
/// images live below the opener's staging tmpfs until the opener is dropped; overlays
/// built from them keep private clones, so dropping the opener after a merge is right.
#[derive(Debug)]
pub struct ImageOpener {
    class: Class,
    policy: Option<ImagePolicy>,
    in_initrd_no_root: bool,
    arch: &'static str,
    staging: Option<StagingArea>,
    seq: u32,
    faults: Injector,
}

impl ImageOpener {
    /// An opener for `class`. `policy_override` is `--image-policy=` (it replaces the
    /// per-image choice); `in_initrd_no_root` enables the strict policies for images
    /// under `/.extra/` (running in the initrd without `--root`).
    pub fn new(
        class: Class,
        policy_override: Option<ImagePolicy>,
        in_initrd_no_root: bool,
    ) -> ImageOpener {
        ImageOpener {
            class,
            policy: policy_override,
            in_initrd_no_root,
            arch: crate::format::arch::native(),
            staging: None,
            seq: 0,
            faults: Injector::from_env(fault::IMAGE_FAIL_ENV, None),
        }
    }

    /// Replaces the fault injector (read from [`fault::IMAGE_FAIL_ENV`] by [`new`](Self::new)):
    /// tests use it to fail one setup step in-process.
    pub fn set_faults(&mut self, faults: Injector) {
        self.faults = faults;
    }

    /// The image policy that applies to `image`.
    pub fn policy_for(&self, image: &Image) -> ImagePolicy {
        policy::pick_for_image(
            self.class == Class::Sysext,
            &image.path.to_string_lossy(),
            self.in_initrd_no_root,
            self.policy.as_ref(),
        )
    }

    /// The staging directory's host path, once something was mounted.
    pub fn staging_path(&self) -> Option<PathBuf> {
        self.staging.as_ref().map(StagingArea::path)
    }

    fn open_image(&mut self, root: &Root, image: &Image) -> Result<OwnedFd, String> {
        let probed = probe(root, image, self.arch)?;
        let policy = self.policy_for(image);
        let levels = apply_policy(&policy, &probed.info)?;
        crate::log::debug(&format!(
            "{}: {:?}, protection used: {levels:?}",
            image.path.display(),
            probed.info.layout
        ));

        let mut setup = Setup::default();
        let mut mounts = Vec::new();
        for (v, level) in probed.info.volumes.iter().zip(&levels) {
            if *level == Protection::Unused {
                continue;
            }
            let (dev, fstype) = activate(&probed, v, *level, &mut setup, &mut self.faults)
                .map_err(|e| format!("{} ({}): {e}", v.designator, step_name(*level)))?;
            inject(&mut self.faults, "mount")?;
            let mnt = mount_block(&dev, fstype)
                .map_err(|e| format!("mounting the {} file system: {e}", v.designator))?;
            let what = format!("{} of {}", v.designator, image.path.display());
            setup
                .mounts
                .push((mnt.try_clone().map_err(|e| os_text(&e))?, false, what));
            mounts.push((v.mount_point, mnt, setup.mounts.len() - 1));
        }

        if self.staging.is_none() {
            inject(&mut self.faults, "staging tmpfs")?;
            self.staging = Some(
                StagingArea::create(
                    &format!("{}-images", self.class.as_str()),
                    self.class.mount_source(),
                )
                .map_err(|e| format!("staging: {e}"))?,
            );
        }
        let staging = self.staging.as_ref().expect("created above");
        let stage_fd = staging.fd();
        setup.staging = Some(
            stage_fd
                .try_clone_to_owned()
                .map_err(|e| format!("staging: {}", os_text(&e)))?,
        );
        let k = self.seq.to_string();
        self.seq += 1;
        inject(&mut self.faults, "staging directory")?;
        let top = mkdir_open(stage_fd, &k, 0o755)
            .map_err(|e| format!("staging: {}/{k}: {}", staging.path().display(), os_text(&e)))?;
        setup.dirs.push(k.clone());
        let mut attached_top = false;
        for (point, mnt, idx) in &mounts {
            let target_path = staging.path().join(&k).join(point);
            let shown = target_path.display().to_string();
            let target = if point.is_empty() {
                top.try_clone().map_err(|e| os_text(&e))?
            } else if attached_top {
                // A directory of the root file system mounted just before.
                fsutil::open_in(
                    stage_fd,
                    &Path::new(&k).join(point),
                    OFlags::RDONLY | OFlags::DIRECTORY,
                    rustix::fs::ResolveFlags::NO_SYMLINKS,
                )
                .map_err(|e| {
                    format!("the root file system has no directory /{point} to mount the {point} partition on: {}", os_text(&e))
                })?
            } else {
                let d = mkdir_open(top.as_fd(), point, 0o755)
                    .map_err(|e| format!("staging: {shown}: {}", os_text(&e)))?;
                setup.dirs.push(format!("{k}/{point}"));
                d
            };
            inject(&mut self.faults, "attach")?;
            mount::attach(mnt.as_fd(), target.as_fd(), false, &shown)
                .map_err(|e| format!("attaching the mount: {e}"))?;
            setup.mounts[*idx].1 = true;
            if point.is_empty() {
                attached_top = true;
            }
        }
        drop(mounts);
        // The root as seen through the attached path (not `top`, which is the staging
        // directory below the mount).
        let fd = fsutil::open_in(
            stage_fd,
            Path::new(&k),
            OFlags::RDONLY | OFlags::DIRECTORY,
            rustix::fs::ResolveFlags::NO_SYMLINKS,
        )
        .map_err(|e| format!("opening the mounted image: {}", os_text(&e)))?;
        setup.commit();
        Ok(fd)
    }
}

fn step_name(level: Protection) -> &'static str {
    match level {
        Protection::Signed => "dm-verity with signature",
        Protection::Verity => "dm-verity",
        _ => "loop device",
    }
}

impl Opener for ImageOpener {
    fn open(&mut self, root: &Root, image: &Image) -> Result<Option<OwnedFd>, String> {
        if image.kind == ImageKind::Directory {
            return DirOpener.open(root, image);
        }
        let shown = root.display_path(&image.path);
        self.open_image(root, image)
            .map(Some)
            .map_err(|e| format!("{}: {e}", shown.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_names() {
        assert_eq!(
            sidecar_path(Path::new("/var/lib/extensions/foo.raw"), ".roothash"),
            PathBuf::from("/var/lib/extensions/foo.roothash")
        );
        assert_eq!(
            sidecar_path(Path::new("/x/foo.raw.v/foo_2.raw"), ".verity"),
            PathBuf::from("/x/foo.raw.v/foo_2.verity")
        );
        assert_eq!(
            sidecar_path(Path::new("/x/foo"), ".usrhash.p7s"),
            PathBuf::from("/x/foo.usrhash.p7s")
        );
    }

    #[test]
    fn dm_names_fit() {
        let h = RootHash::from_bytes(&[0xab; 32]).unwrap();
        assert_eq!(verity_dm_name(&h), format!("{}-verity", "ab".repeat(32)));
        let h = RootHash::from_bytes(&[0xcd; 64]).unwrap();
        let n = verity_dm_name(&h);
        assert_eq!(n.len(), MAX_DM_NAME);
        assert!(n.ends_with("-verity"));
    }

    #[test]
    fn policy_levels() {
        let vol = |d, p| Volume {
            designator: d,
            mount_point: "",
            partition: None,
            offset: 0,
            size: 4096,
            fstype: FsType::Erofs,
            hash_tree: None,
            root_hash: None,
            signature: None,
            protection: p,
        };
        let info = |v: Vec<Volume>| ImageInfo {
            path: "/x.raw".into(),
            kind: ImageKind::Raw,
            size: 4096,
            layout: Layout::Bare,
            present: v.iter().map(|v| v.designator).collect(),
            volumes: v,
        };
        let bare = info(vec![vol(
            PartitionDesignator::Root,
            Protection::Unprotected,
        )]);
        assert_eq!(
            apply_policy(&ImagePolicy::sysext(), &bare).unwrap(),
            [Protection::Unprotected]
        );
        let strict =
            ImagePolicy::parse("usr=signed+absent:root=signed+absent:=unused+absent").unwrap();
        let e = apply_policy(&strict, &bare).unwrap_err();
        assert!(e.contains("image policy") && e.contains("forbids"), "{e}");
        let e = apply_policy(&ImagePolicy::deny(), &bare).unwrap_err();
        assert!(e.contains("forbids"), "{e}");
        let signed = info(vec![vol(PartitionDesignator::Usr, Protection::Signed)]);
        assert_eq!(
            apply_policy(&strict, &signed).unwrap(),
            [Protection::Signed]
        );
        // A policy without signatures drops the signature, keeps verity.
        let verity_only =
            ImagePolicy::parse("usr=verity+absent:root=verity+absent:=unused+absent").unwrap();
        assert_eq!(
            apply_policy(&verity_only, &signed).unwrap(),
            [Protection::Verity]
        );
        // confext ignores usr: nothing left to mount.
        let e = apply_policy(&ImagePolicy::confext(), &signed).unwrap_err();
        assert!(e.contains("nothing to mount"), "{e}");
    }
}
