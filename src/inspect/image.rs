//! Inspecting disk-image extensions (`foo.raw` files and block devices): what an image
//! is made of and what is to be set up for it, without changing anything. Activation
//! (loop devices, dm-verity, the keyring, mounts) is the kernel layer's `activate` module, which
//! mounts exactly what [`probe`] looked at: the open files travel in [`Probed`].
//!
//! For each image, this does what systemd's `dissect_image` does for sysext/confext:
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
//! 3. The image policy ([`policy::pick_for_image`], applied by [`apply_policy`])
//!    decides which protection is used: [`ImagePolicy::resolve`] per data partition,
//!    absent partitions checked too.
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
//! # Errors
//!
//! Every failure is an [`ImageError`]: the image, the [`ImageStep`] that failed and the
//! cause ([`ImageSource`]), with [`ImageError::errno`] giving the errno systemd's
//! `dissect-image.c` / `systemd-sysext` use for the same failure.
//!
//! Nothing here changes the system: nothing of the kernel layer is used.

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use crate::format::fs::{self, FsError, FsType};
use crate::format::gpt::{self, GptError, Guid, Role};
use crate::format::policy::{self, ImagePolicy, PartitionDesignator, Protection};
use crate::format::verity::{self, RootHash, VerityError, VeritySig, VeritySuperblock};
use crate::inspect::discover::{Image, ImageKind};
use crate::inspect::fsutil::{self, ReadError, Root};
use crate::log::os_text;

/// Largest `.roothash` / `.usrhash` sidecar read (a SHA-512 root hash is 128 hex digits;
/// whitespace and a comment line fit easily).
pub const MAX_ROOT_HASH_FILE: u64 = 64 * 1024;
/// Largest `.roothash.p7s` / `.usrhash.p7s` accepted: what a kernel `user` key holds
/// (the keyring's `MAX_USER_KEY_PAYLOAD`, checked at compile time where the key is
/// added).
pub const MAX_SIGNATURE_FILE: u64 = 32767;
/// Largest xattr value read for `user.verity.roothash` / `user.verity.usrhash`.
const MAX_XATTR: usize = 4096;
/// How much of an image is read at once to find its layout: a protective MBR and GPT
/// header (512-byte sectors) and a bare file system's superblock.
const HEAD_BYTES: u64 = 4096;

// ---------------------------------------------------------------------------------------
// Errors

/// The step of opening an image that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageStep {
    /// Opening the image file or device, its type and size.
    Open,
    /// The GUID partition table: parsing it, choosing the partitions, "no-auto" flags.
    PartitionTable,
    /// A file system superblock (probed from the image, or through the verity device).
    FileSystem,
    /// Verity metadata: root hash (xattrs, `.roothash`/`.usrhash`, partition UUIDs),
    /// hash tree (`.verity`, `*-verity` partitions) and its superblock; reads through
    /// dm-verity that fail.
    Verity,
    /// The root hash signature: `.roothash.p7s`/`.usrhash.p7s`, a `*-verity-sig`
    /// partition, or the kernel refusing it.
    Signature,
    /// The image policy.
    Policy,
    /// Attaching a loop device.
    Loop,
    /// Creating (or reusing) the dm-verity device.
    Dm,
    /// Adding the signature to the kernel keyring.
    Keyring,
    /// Mounting a file system, or attaching the mount.
    Mount,
    /// The staging tmpfs and its directories.
    Staging,
}

impl ImageStep {
    /// Lower-case name, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageStep::Open => "open",
            ImageStep::PartitionTable => "partition table",
            ImageStep::FileSystem => "file system",
            ImageStep::Verity => "verity",
            ImageStep::Signature => "signature",
            ImageStep::Policy => "policy",
            ImageStep::Loop => "loop device",
            ImageStep::Dm => "device-mapper",
            ImageStep::Keyring => "keyring",
            ImageStep::Mount => "mount",
            ImageStep::Staging => "staging",
        }
    }
}

impl fmt::Display for ImageStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a step failed. Each variant carries the message shown to people (what was being
/// done and why it failed) and the cause that decides [`ImageError::errno`].
#[derive(Debug, thiserror::Error)]
pub enum ImageSource {
    /// A system call failed: reading the image or a sidecar, or (in the kernel layer) a loop,
    /// dm, keyring or mount operation. The errno is the OS error's: e.g. `EBUSY` for a
    /// busy device, `ENOENT` for an image or sidecar that is not there, `EIO` for a read
    /// that dm-verity refused, and the keyring's `EKEYREJECTED` (or `ENOKEY`, …) for a
    /// signature the kernel does not accept (what systemd returns for it as well).
    #[error("{message}")]
    Os {
        /// What was done and the OS error's text.
        message: String,
        /// The OS error.
        #[source]
        error: io::Error,
    },
    /// The image's bytes or metadata do not parse, do not fit together or are not
    /// supported. `errno` as systemd's `dissect-image.c`: `ENXIO` for a missing
    /// partition (no suitable root or `/usr` partition, no partner partition, a hash
    /// given for a partition that is not there), `EADDRNOTAVAIL` for root and `/usr` of
    /// different architectures, `ENOTUNIQ` for several candidate partitions,
    /// `EPROTONOSUPPORT` for a file system that is unknown or unsupported, `ENOMSG` for
    /// root hashes that disagree, `EBADMSG` for corrupt metadata (partition table,
    /// superblocks, hash trees, signatures), `EINVAL` for anything else that is wrong
    /// with the image.
    #[error("{message}")]
    Invalid {
        /// What is wrong, naming the file, partition or xattr.
        message: String,
        /// The errno (see above).
        errno: i32,
    },
    /// A rule refuses the image: the image policy (`ERFKILL`, systemd's "image policy
    /// denies"), or a dm device of the verity name that exists but cannot be reused
    /// (`EBUSY`).
    #[error("{message}")]
    Refused {
        /// Which rule, and why.
        message: String,
        /// The errno (see above).
        errno: i32,
    },
    /// A failure injected by a test ([`crate::fault::IMAGE_FAIL_ENV`]); errno `EIO`.
    #[error("{message}")]
    Injected {
        /// `injected fault at image step N (what)`, with context.
        message: String,
        /// The step number.
        n: usize,
    },
}

impl ImageSource {
    fn message_mut(&mut self) -> &mut String {
        match self {
            ImageSource::Os { message, .. }
            | ImageSource::Invalid { message, .. }
            | ImageSource::Refused { message, .. }
            | ImageSource::Injected { message, .. } => message,
        }
    }
}

/// Opening or inspecting an image failed: which image, at which step, and why. Shown as
/// `<image path>: <message>` (the path as people see it, below the root; only the
/// message where no path is known yet).
#[derive(Debug, thiserror::Error)]
#[error("{}{source}", path_prefix(.path))]
pub struct ImageError {
    /// The image, as shown to people (the root's path joined with the image's path
    /// inside it); empty while an error travels up to where the image is known.
    pub path: PathBuf,
    /// The step that failed.
    pub step: ImageStep,
    /// The cause.
    pub source: ImageSource,
}

fn path_prefix(p: &Path) -> String {
    if p.as_os_str().is_empty() {
        String::new()
    } else {
        format!("{}: ", p.display())
    }
}

impl ImageError {
    /// An error of `step` (the path is set by [`at`](Self::at)).
    pub fn new(step: ImageStep, source: ImageSource) -> ImageError {
        ImageError {
            path: PathBuf::new(),
            step,
            source,
        }
    }

    /// A failed system call: `<context>: <OS error text>` (just the text for an empty
    /// context).
    pub fn os(step: ImageStep, context: impl fmt::Display, error: impl Into<io::Error>) -> Self {
        let error = error.into();
        let context = context.to_string();
        let message = if context.is_empty() {
            os_text(&error)
        } else {
            format!("{context}: {}", os_text(&error))
        };
        ImageError::new(step, ImageSource::Os { message, error })
    }

    /// A failed kernel-layer operation whose error (`LoopError`, `DmError`, …) already
    /// has its text in `message`: the errno is kept as the OS error.
    pub fn kernel(step: ImageStep, message: impl Into<String>, errno: i32) -> Self {
        ImageError::new(
            step,
            ImageSource::Os {
                message: message.into(),
                error: io::Error::from_raw_os_error(errno),
            },
        )
    }

    /// Invalid image metadata (see [`ImageSource::Invalid`] for the errno to give).
    pub fn invalid(step: ImageStep, message: impl Into<String>, errno: i32) -> Self {
        ImageError::new(
            step,
            ImageSource::Invalid {
                message: message.into(),
                errno,
            },
        )
    }

    /// A refusal by a rule (see [`ImageSource::Refused`]).
    pub fn refused(step: ImageStep, message: impl Into<String>, errno: i32) -> Self {
        ImageError::new(
            step,
            ImageSource::Refused {
                message: message.into(),
                errno,
            },
        )
    }

    /// A failure injected by a test at setup step `n` (`what` it was).
    pub fn injected(step: ImageStep, n: usize, what: &str) -> Self {
        ImageError::new(
            step,
            ImageSource::Injected {
                message: format!("injected fault at image step {n} ({what})"),
                n,
            },
        )
    }

    /// The same error for the image shown as `path`.
    pub fn at(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = path.into();
        self
    }

    /// The same error with `prefix: ` before its message (what was being done).
    pub fn context(self, prefix: impl fmt::Display) -> Self {
        self.map_message(|m| format!("{prefix}: {m}"))
    }

    /// The same error (step, cause, errno) with its message rewritten by `f`.
    pub fn map_message(mut self, f: impl FnOnce(String) -> String) -> Self {
        let m = self.source.message_mut();
        *m = f(std::mem::take(m));
        self
    }

    /// The message without the image path.
    pub fn message(&self) -> String {
        self.source.to_string()
    }

    /// The errno that describes the failure (for the C ABI and exit codes): the OS
    /// error's for a failed system call, otherwise the one chosen as systemd does (see
    /// [`ImageSource`]); `EIO` for an injected fault.
    pub fn errno(&self) -> i32 {
        match &self.source {
            ImageSource::Os { error, .. } => error.raw_os_error().unwrap_or(libc::EIO),
            ImageSource::Invalid { errno, .. } | ImageSource::Refused { errno, .. } => *errno,
            ImageSource::Injected { .. } => libc::EIO,
        }
    }
}

/// errno for a partition table error (systemd's `dissect-image.c` choices).
fn gpt_errno(e: &GptError) -> i32 {
    match e {
        GptError::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
        // "No suitable root partition found", a verity partition without its data.
        GptError::NoRootOrUsr { .. } | GptError::MissingPartner { .. } => libc::ENXIO,
        GptError::Ambiguous { .. } => libc::ENOTUNIQ,
        GptError::ArchMismatch { .. } => libc::EADDRNOTAVAIL,
        GptError::Layout(_) => libc::EINVAL,
        _ => libc::EBADMSG,
    }
}

/// errno for a file system probe error: unknown or unsupported file systems are
/// `EPROTONOSUPPORT` (systemd: "file system type not supported"), a broken superblock
/// `EBADMSG`.
fn fs_errno(e: &FsError) -> i32 {
    match e {
        FsError::Unknown | FsError::Unsupported(_) => libc::EPROTONOSUPPORT,
        _ => libc::EBADMSG,
    }
}

/// errno for verity metadata: a root hash that does not fit is `EINVAL`, broken or
/// unsupported metadata `EBADMSG`.
fn verity_errno(e: &VerityError) -> i32 {
    match e {
        VerityError::RootHashLength(_)
        | VerityError::DigestMismatch { .. }
        | VerityError::BadHex(_) => libc::EINVAL,
        _ => libc::EBADMSG,
    }
}
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
    pub fn region(&self) -> (u64, u64) {
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

/// An image opened and inspected: the files that were looked at are the ones
/// the kernel layer's `activate` attaches, so what was checked is what is mounted.
#[derive(Debug)]
pub struct Probed {
    /// The image file or block device, opened read-only.
    pub file: File,
    /// The `.verity` sidecar, when the image has one.
    pub verity_file: Option<File>,
    /// What was found.
    pub info: ImageInfo,
}

// ---------------------------------------------------------------------------------------
// Reading

fn read_at(
    file: &File,
    offset: u64,
    len: usize,
    what: &str,
    step: ImageStep,
) -> Result<Vec<u8>, ImageError> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset).map_err(|e| {
        ImageError::os(
            step,
            format_args!("reading {what} ({len} bytes at offset {offset})"),
            e,
        )
    })?;
    Ok(buf)
}

/// Size of a regular file (from its fstat `st`) or block device (`lseek(SEEK_END)`,
/// read-only).
fn size_of(fd: BorrowedFd<'_>, st: &Stat, kind: ImageKind) -> Result<u64, ImageError> {
    let ft = FileType::from_raw_mode(st.st_mode);
    match (kind, ft) {
        (ImageKind::Raw, FileType::RegularFile) => Ok(st.st_size as u64),
        (ImageKind::Block, FileType::BlockDevice) => {
            rustix::fs::seek(fd, rustix::fs::SeekFrom::End(0))
                .map_err(|e| ImageError::os(ImageStep::Open, "lseek(SEEK_END)", e))
        }
        _ => Err(ImageError::invalid(
            ImageStep::Open,
            format!(
                "expected a {}, found a {}",
                if kind == ImageKind::Raw {
                    "regular file"
                } else {
                    "block device"
                },
                fsutil::file_type_name(ft)
            ),
            match (kind, ft) {
                (_, FileType::Directory) => libc::EISDIR,
                (ImageKind::Block, _) => libc::ENOTBLK,
                _ => libc::EBADFD,
            },
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

// ---------------------------------------------------------------------------------------
// The directories images lie in

/// `statfs` `f_type` of tmpfs: the file system whose directory listing is trusted to
/// answer "no such name" (see [`ImageDirs`]).
const TMPFS_MAGIC: i64 = 0x0102_1994;
/// `FS_CASEFOLD_FL` (`FS_IOC_GETFLAGS`): a case-insensitive directory (tmpfs since 6.13).
const FS_CASEFOLD_FL: u32 = 0x4000_0000;

/// The directories that image files lie in, each opened once inside the root
/// (`RESOLVE_IN_ROOT`), so that an image and its sidecars are looked up in one
/// directory and a sidecar that is not there costs no path walk from the root.
///
/// Every question has one of two answers: a name is *absent* — the lookup a caller
/// would have made finds nothing, so it is skipped — or it *may be there*, and the
/// caller then does exactly what it does without this cache (the open inside the root,
/// with all its checks and error messages). "Absent" is only said when one of these
/// proves it:
///
/// - `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)` answers `ENOENT`: nothing of that name,
///   not even a dangling symlink (a lookup of one component, where the open inside the
///   root walked the whole path);
/// - the directory's listing does not have the name. A listing is taken at the second
///   image of a directory, only on tmpfs (the initrd's and `/run`'s file system, where a
///   failed lookup is dear: it keeps no negative dentries), only where the directory is
///   not case-insensitive (`FS_CASEFOLD_FL`) — there readdir shows exactly the names a
///   lookup finds — and only on Linux 6.13+, whose tmpfs has multigrain timestamps: a
///   directory whose change time was read (`fstat`) gets a later one at its next
///   change, whatever the clock's granularity. The directory's `fstat` is taken before
///   it is read and again for each image; at the first difference (an entry created,
///   removed or renamed) the listing is dropped and the directory asked by `fstatat`
///   for the rest of the run. A listing answers for an image only while it shows the
///   image's entry with the inode just opened (or stat'ed) through it.
#[derive(Debug, Default)]
pub struct ImageDirs {
    dirs: Vec<ImageDir>,
}

#[derive(Debug)]
struct ImageDir {
    /// The directory's path inside the root, as the images' paths have it.
    rel: PathBuf,
    /// That root's path: one run may look at two roots (the initrd's `/.extra`).
    root: PathBuf,
    fd: OwnedFd,
    /// Images looked up in it so far.
    images: u32,
    listing: Listing,
}

/// What tells that a directory changed: inode, size, change and modification times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DirStamp([i64; 6]);

impl DirStamp {
    // The field types differ between architectures.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    fn of(st: &Stat) -> DirStamp {
        DirStamp([
            st.st_ino as i64,
            st.st_size as i64,
            st.st_ctime as i64,
            st.st_ctime_nsec as i64,
            st.st_mtime as i64,
            st.st_mtime_nsec as i64,
        ])
    }
}

/// A directory's entries: name and inode, sorted by name.
type Entries = Vec<(Box<[u8]>, u64)>;

#[derive(Debug)]
enum Listing {
    /// Not listed (yet).
    NotYet,
    /// Not on a file system whose listing answers for lookups, listing failed, or the
    /// directory changed since.
    Unusable,
    /// The entries (name, inode), sorted by name; the directory's `st_dev` and stamp
    /// from before they were read.
    Names {
        dev: u64,
        seen: DirStamp,
        names: Entries,
    },
}

/// Does this kernel's tmpfs have multigrain timestamps (Linux 6.13+)?
fn tmpfs_has_multigrain_times() -> bool {
    let uts = rustix::system::uname();
    let release = uts.release().to_string_lossy();
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    let minor: u32 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 13)
}

impl Listing {
    fn ino(names: &Entries, name: &[u8]) -> Option<u64> {
        names
            .binary_search_by(|(n, _)| n.as_ref().cmp(name))
            .ok()
            .map(|i| names[i].1)
    }

    fn of(fd: &OwnedFd) -> Listing {
        // `f_type`'s integer type differs between architectures.
        #[allow(clippy::unnecessary_cast)]
        let tmpfs = rustix::fs::fstatfs(fd).is_ok_and(|s| s.f_type as i64 == TMPFS_MAGIC);
        if !tmpfs || !tmpfs_has_multigrain_times() {
            return Listing::Unusable;
        }
        match rustix::fs::ioctl_getflags(fd) {
            Ok(f) if f.bits() & FS_CASEFOLD_FL == 0 => {}
            _ => return Listing::Unusable,
        }
        let Ok(st) = rustix::fs::fstat(fd) else {
            return Listing::Unusable;
        };
        let Ok(dir) = rustix::fs::Dir::read_from(fd) else {
            return Listing::Unusable;
        };
        let mut names: Entries = Vec::new();
        for e in dir {
            let Ok(e) = e else {
                return Listing::Unusable;
            };
            names.push((Box::from(e.file_name().to_bytes()), e.ino()));
        }
        names.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Listing::Names {
            dev: st.st_dev,
            seen: DirStamp::of(&st),
            names,
        }
    }

    /// Drops the listing if its directory (`fd`) changed since it was read.
    fn check(&mut self, fd: &OwnedFd) {
        if let Listing::Names { seen, .. } = self {
            if rustix::fs::fstat(fd).ok().map(|st| DirStamp::of(&st)) != Some(*seen) {
                *self = Listing::Unusable;
            }
        }
    }

    /// The entries, if they answer for the image `name` whose `fstat` is `image`.
    fn for_image(&self, name: &OsStr, image: &Stat) -> Option<&Entries> {
        match self {
            Listing::Names { dev, names, .. }
                if *dev == image.st_dev
                    && Listing::ino(names, name.as_bytes()) == Some(image.st_ino) =>
            {
                Some(names)
            }
            _ => None,
        }
    }
}

/// One image's place in [`ImageDirs`]: its directory and its name there.
#[derive(Debug, Clone, Copy)]
struct Site<'p> {
    dir: usize,
    name: &'p OsStr,
}

impl ImageDirs {
    /// An empty cache.
    pub fn new() -> ImageDirs {
        ImageDirs::default()
    }

    /// The directory of the image file at `path` (inside the root), opened if it is not
    /// yet; `None` if it cannot be (every lookup then takes the way from the root).
    fn site<'p>(&mut self, root: &Root, path: &'p Path) -> Option<Site<'p>> {
        let name = path.file_name()?;
        let parent = path.parent()?;
        let dir = match self
            .dirs
            .iter()
            .position(|d| d.rel == parent && d.root == root.path())
        {
            Some(i) => i,
            None => {
                let fd = root
                    .open_at(parent, OFlags::RDONLY | OFlags::DIRECTORY)
                    .ok()?;
                self.dirs.push(ImageDir {
                    rel: parent.to_path_buf(),
                    root: root.path().to_path_buf(),
                    fd,
                    images: 0,
                    listing: Listing::NotYet,
                });
                self.dirs.len() - 1
            }
        };
        let d = &mut self.dirs[dir];
        d.images += 1;
        d.listing.check(&d.fd);
        Some(Site { dir, name })
    }

    /// Opens the image file at `path` as `root.open_at(path, flags)` does: by its name
    /// in its directory when it is no symlink (one component; no symlink followed),
    /// else — on any failure — from the root as before.
    fn open_image(
        &self,
        root: &Root,
        site: Option<Site<'_>>,
        path: &Path,
        flags: OFlags,
    ) -> io::Result<OwnedFd> {
        if let Some(s) = site {
            if let Ok(fd) = rustix::fs::openat(
                &self.dirs[s.dir].fd,
                s.name,
                flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                return Ok(fd);
            }
        }
        root.open_at(path, flags)
    }

    /// The `fstatat` of the image entry at `site` when it is no symlink: what
    /// `fstat` of the image opened inside the root would say.
    fn stat_image(&self, site: Site<'_>) -> Option<Stat> {
        rustix::fs::statat(
            &self.dirs[site.dir].fd,
            site.name,
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .ok()
        .filter(|st| FileType::from_raw_mode(st.st_mode) != FileType::Symlink)
    }

    /// Is `rel` (a sidecar of the image at `site`, inside the root) proven absent? `image`
    /// is the image's `fstat`, which a listing must match to answer.
    fn absent(&mut self, site: Option<Site<'_>>, image: Option<&Stat>, rel: &Path) -> bool {
        let Some(site) = site else {
            return false;
        };
        let Some(name) = rel.file_name() else {
            return false;
        };
        let d = &mut self.dirs[site.dir];
        if rel.parent() != Some(d.rel.as_path()) {
            return false;
        }
        if let Some(img) = image {
            if d.images >= 2 && matches!(d.listing, Listing::NotYet) {
                d.listing = Listing::of(&d.fd);
            }
            if let Some(names) = d.listing.for_image(site.name, img) {
                return Listing::ino(names, name.as_bytes()).is_none();
            }
        }
        matches!(
            rustix::fs::statat(&d.fd, name, AtFlags::SYMLINK_NOFOLLOW),
            Err(Errno::NOENT)
        )
    }

    /// May the image at `site` (`image`: its `fstat`) be asked for its `user.verity.*`
    /// xattrs by one `flistxattr`? Where its directory's listing answers for it: the image
    /// is then on tmpfs, whose list shows every `user.*` xattr a get finds.
    fn xattrs_listable(&self, site: Option<Site<'_>>, image: &Stat) -> bool {
        site.is_some_and(|s| self.dirs[s.dir].listing.for_image(s.name, image).is_some())
    }
}

/// The verity inputs of a raw image besides its bytes, as a line for the refresh
/// fingerprint: the mtime and inode of each sidecar present and the image's ctime (which
/// setting a `user.verity.*` xattr bumps). A refresh then notices a root hash, hash tree
/// or signature that was added, removed or replaced next to an unchanged image — which
/// can turn an unprotected merge into a verified one.
pub fn verity_inputs_stamp(root: &Root, image: &Image) -> String {
    verity_inputs_stamp_in(root, image, &mut ImageDirs::new())
}

/// [`verity_inputs_stamp`] with the image's directory taken from (or added to) `dirs`:
/// the same text, with fewer lookups when one `dirs` serves all images of a run (the
/// sidecars of the second and later images of a directory on tmpfs then cost none).
pub fn verity_inputs_stamp_in(root: &Root, image: &Image, dirs: &mut ImageDirs) -> String {
    let root = image.root_in(root);
    if image.kind != ImageKind::Raw {
        return String::new();
    }
    let fmt = |kind: &str, st: &Stat| {
        format!(
            "{kind}{}.{} {}.{} {}.{}",
            st.st_ino, st.st_dev, st.st_mtime, st.st_mtime_nsec, st.st_ctime, st.st_ctime_nsec
        )
    };
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
        Some(fmt(kind, &st))
    };
    let site = dirs.site(root, &image.path);
    // The image entry, when it is no symlink: the object the open inside the root finds.
    let image_st = site.and_then(|s| dirs.stat_image(s));
    let mut s = format!("verity-inputs {}", image.path.display());
    let image_stamp = match &image_st {
        Some(st) => Some(fmt("", st)),
        None => stamp(&image.path),
    };
    if let Some(st) = image_stamp {
        s += &format!(" image={st}");
    }
    for suffix in SIDECAR_SUFFIXES {
        let p = sidecar_path(&image.path, suffix);
        if dirs.absent(site, image_st.as_ref(), &p) {
            continue;
        }
        if let Some(st) = stamp(&p) {
            s += &format!(" {suffix}={st}");
        }
    }
    s.push('\n');
    s
}

/// Opens a sidecar inside the root; `None` when there is no such name. It must be a
/// regular file: anything else that is there (a directory, a device, a symlink whose
/// target does not exist inside the root, one that cannot be opened) is an error of
/// `step`, never a reason to go on as if the sidecar were absent — that would drop the
/// protection it was put there for.
fn open_sidecar(root: &Root, rel: &Path, step: ImageStep) -> Result<Option<File>, ImageError> {
    let fd = match root.open_at(rel, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // ENOENT also comes from a symlink whose target is missing: the name is there.
            return match root.open_at(rel, OFlags::PATH | OFlags::NOFOLLOW) {
                Err(e2) if e2.kind() == io::ErrorKind::NotFound => Ok(None),
                Ok(_) => Err(ImageError::os(
                    step,
                    format_args!(
                        "{}: dangling symlink (its target does not exist inside the root)",
                        rel.display()
                    ),
                    e,
                )),
                Err(e2) => Err(ImageError::os(step, rel.display(), e2)),
            };
        }
        Err(e) => return Err(ImageError::os(step, rel.display(), e)),
    };
    let st = rustix::fs::fstat(&fd)
        .map_err(|e| ImageError::os(step, format_args!("{}: fstat", rel.display()), e))?;
    let ft = FileType::from_raw_mode(st.st_mode);
    if ft != FileType::RegularFile {
        return Err(ImageError::invalid(
            step,
            format!(
                "{}: not a regular file ({})",
                rel.display(),
                fsutil::file_type_name(ft)
            ),
            ReadError::NotRegular(fsutil::file_type_name(ft)).errno(),
        ));
    }
    Ok(Some(File::from(fd)))
}

fn read_sidecar(
    root: &Root,
    rel: &Path,
    limit: u64,
    step: ImageStep,
) -> Result<Option<Vec<u8>>, ImageError> {
    let Some(f) = open_sidecar(root, rel, step)? else {
        return Ok(None);
    };
    fsutil::read_fd_bounded(OwnedFd::from(f), limit)
        .map(Some)
        .map_err(|e| match e {
            ReadError::Io(io) => ImageError::os(step, rel.display(), io),
            e => ImageError::invalid(step, format!("{}: {e}", rel.display()), e.errno()),
        })
}

fn read_xattr(file: &File, name: &str) -> Result<Option<Vec<u8>>, ImageError> {
    let mut buf = vec![0u8; MAX_XATTR];
    match rustix::fs::fgetxattr(file, name, &mut buf[..]) {
        Ok(n) => {
            buf.truncate(n);
            Ok(Some(buf))
        }
        Err(rustix::io::Errno::NODATA)
        | Err(rustix::io::Errno::NOTSUP)
        | Err(rustix::io::Errno::NOSYS) => Ok(None),
        Err(rustix::io::Errno::RANGE) => Err(ImageError::invalid(
            ImageStep::Verity,
            format!("xattr {name} is larger than {MAX_XATTR} bytes: not a root hash"),
            libc::EINVAL,
        )),
        Err(e) => Err(ImageError::os(
            ImageStep::Verity,
            format_args!("reading xattr {name}"),
            e,
        )),
    }
}

/// The sidecar lookups of one image: a name [`ImageDirs`] proves absent is skipped,
/// any other is opened inside the root as before ([`open_sidecar`], [`read_sidecar`]).
struct Sidecars<'a, 'p> {
    root: &'a Root,
    dirs: &'a mut ImageDirs,
    site: Option<Site<'p>>,
    /// The image's `fstat`.
    image: Option<Stat>,
}

impl Sidecars<'_, '_> {
    fn open(&mut self, rel: &Path, step: ImageStep) -> Result<Option<File>, ImageError> {
        if self.dirs.absent(self.site, self.image.as_ref(), rel) {
            return Ok(None);
        }
        open_sidecar(self.root, rel, step)
    }

    fn read(
        &mut self,
        rel: &Path,
        limit: u64,
        step: ImageStep,
    ) -> Result<Option<Vec<u8>>, ImageError> {
        if self.dirs.absent(self.site, self.image.as_ref(), rel) {
            return Ok(None);
        }
        read_sidecar(self.root, rel, limit, step)
    }

    /// True when one `flistxattr` shows neither `user.verity.*` xattr on `file` (where
    /// [`ImageDirs::xattrs_listable`] allows asking so); then the two `fgetxattr`s,
    /// which would find nothing, are skipped.
    fn no_verity_xattrs(&self, file: &File) -> bool {
        let Some(st) = &self.image else {
            return false;
        };
        if !self.dirs.xattrs_listable(self.site, st) {
            return false;
        }
        let mut buf = [0u8; 1024];
        match rustix::fs::flistxattr(file, &mut buf[..]) {
            Ok(n) => !buf[..n.min(buf.len())]
                .split(|b| *b == 0)
                .any(|x| x == b"user.verity.roothash" || x == b"user.verity.usrhash"),
            Err(_) => false,
        }
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
fn probe_fs(file: &File, offset: u64, size: u64) -> Result<FsType, ImageError> {
    let len = size.min(fs::PROBE_BYTES as u64) as usize;
    let buf = read_at(
        file,
        offset,
        len,
        "the file system superblock",
        ImageStep::FileSystem,
    )?;
    fs::probe_with_size(&buf, size).map_err(|e| {
        ImageError::invalid(
            ImageStep::FileSystem,
            format!("file system: {e}"),
            fs_errno(&e),
        )
    })
}

/// [`probe_fs`] of the file system at the start of the image, from `head` (its first
/// bytes, if they were read) where they suffice: every superblock field the probe checks
/// lies in the first 4 KiB, except the checksummed block of an erofs with larger blocks,
/// for which it answers `Truncated` — then the first [`fs::PROBE_BYTES`] are read as
/// before (as [`probe_verified`] does).
fn probe_fs_head(file: &File, head: Option<&[u8]>, size: u64) -> Result<FsType, ImageError> {
    if let Some(h) = head {
        match fs::probe_with_size(h, size) {
            Err(FsError::Truncated { .. })
                if (h.len() as u64) < size.min(fs::PROBE_BYTES as u64) => {}
            r => {
                return r.map_err(|e| {
                    ImageError::invalid(
                        ImageStep::FileSystem,
                        format!("file system: {e}"),
                        fs_errno(&e),
                    )
                })
            }
        }
    }
    probe_fs(file, 0, size)
}

/// Reads and checks the verity superblock at the start of `tree`, against a data region
/// of `data_size` bytes.
fn read_superblock(
    image: &File,
    verity_file: Option<&File>,
    tree: &HashTree,
    data_size: u64,
) -> Result<VeritySuperblock, ImageError> {
    let file = match tree.location {
        HashLocation::Partition(_) => image,
        HashLocation::Sidecar { .. } => verity_file.unwrap_or(image),
    };
    let what = match &tree.location {
        HashLocation::Partition(p) => format!("{} partition {}", p.role, p.index),
        HashLocation::Sidecar { path, .. } => path.display().to_string(),
    };
    let bad = |m: String, errno: i32| ImageError::invalid(ImageStep::Verity, m, errno);
    let verr = |e: VerityError| bad(format!("verity hash tree {what}: {e}"), verity_errno(&e));
    let (off, size) = tree.region();
    if size < verity::SUPERBLOCK_SIZE as u64 {
        return Err(bad(
            format!("verity hash tree {what}: {size} bytes, too small for a superblock"),
            libc::EBADMSG,
        ));
    }
    let buf = read_at(
        file,
        off,
        verity::SUPERBLOCK_SIZE,
        "the verity superblock",
        ImageStep::Verity,
    )?;
    let sb = VeritySuperblock::parse(&buf).map_err(verr)?;
    let need = sb.hash_device_size(0).map_err(verr)?;
    if need > size {
        return Err(bad(
            format!("verity hash tree {what} is truncated: {size} bytes, its tree needs {need}"),
            libc::EBADMSG,
        ));
    }
    let covered = sb.data_size().map_err(verr)?;
    if covered > data_size {
        return Err(bad(
            format!(
                "verity hash tree {what} covers {covered} bytes of data, but the data region has only {data_size} (truncated image?)"
            ),
            libc::EBADMSG,
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
fn check_no_auto_protection(g: &gpt::Gpt, set: &gpt::RoleSet) -> Result<(), ImageError> {
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
        return Err(ImageError::invalid(
            ImageStep::PartitionTable,
            format!(
                "{wanted} partition {} is marked no-auto, so the {} partition {} would be used without it; refusing the image rather than dropping its protection",
                p.index, set.data.role, set.data.partition.index
            ),
            libc::EINVAL,
        ));
    }
    Ok(())
}

/// Root hash from the xattrs and sidecars, with its designator.
type SidecarHash = (RootHash, HashSource, PartitionDesignator);

fn sidecar_root_hash(
    sc: &mut Sidecars<'_, '_>,
    image: &Image,
    file: &File,
) -> Result<Option<SidecarHash>, ImageError> {
    let bad =
        |m: String, e: VerityError| ImageError::invalid(ImageStep::Verity, m, verity_errno(&e));
    let no_xattrs = sc.no_verity_xattrs(file);
    for (d, xattr, suffix) in [
        (
            PartitionDesignator::Root,
            "user.verity.roothash",
            ".roothash",
        ),
        (PartitionDesignator::Usr, "user.verity.usrhash", ".usrhash"),
    ] {
        if !no_xattrs {
            if let Some(v) = read_xattr(file, xattr)? {
                let h = RootHash::from_sidecar(&v)
                    .map_err(|e| bad(format!("xattr {xattr}: {e}"), e))?;
                return Ok(Some((h, HashSource::Xattr(xattr), d)));
            }
        }
        let p = sidecar_path(&image.path, suffix);
        if let Some(v) = sc.read(&p, MAX_ROOT_HASH_FILE, ImageStep::Verity)? {
            let h =
                RootHash::from_sidecar(&v).map_err(|e| bad(format!("{}: {e}", p.display()), e))?;
            return Ok(Some((h, HashSource::Sidecar(p), d)));
        }
    }
    Ok(None)
}

/// Opens and inspects `image` for architecture `arch`: everything [`inspect`] reports,
/// plus the open files, for the kernel layer's `activate`. The error has no path yet (the
/// caller knows how the image is shown).
pub fn probe(root: &Root, image: &Image, arch: &str) -> Result<Probed, ImageError> {
    probe_in(root, image, arch, &mut ImageDirs::new())
}

/// [`probe`] with the image's directory taken from (or added to) `dirs`: the same
/// result, with fewer lookups when one `dirs` serves all images of a run.
pub fn probe_in(
    root: &Root,
    image: &Image,
    arch: &str,
    dirs: &mut ImageDirs,
) -> Result<Probed, ImageError> {
    let root = image.root_in(root);
    if image.kind == ImageKind::Directory {
        return Err(ImageError::invalid(
            ImageStep::Open,
            "a directory, not a disk image",
            libc::EISDIR,
        ));
    }
    let is_file = image.kind == ImageKind::Raw;
    // Sidecars are looked up for image files only (not block devices), as systemd does.
    let site = if is_file {
        dirs.site(root, &image.path)
    } else {
        None
    };
    let fd = dirs
        .open_image(
            root,
            site,
            &image.path,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
        )
        .map_err(|e| ImageError::os(ImageStep::Open, "cannot open", e))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| ImageError::os(ImageStep::Open, "fstat", e))?;
    let size = size_of(fd.as_fd(), &st, image.kind)?;
    let file = File::from(fd);

    // Verity sidecars (image files only, as systemd).
    let mut side_hash = None;
    let mut side_sig: Option<(Vec<u8>, SigSource)> = None;
    let mut verity_file = None;
    let mut verity_path = None;
    if is_file {
        let mut sc = Sidecars {
            root,
            dirs,
            site,
            image: Some(st),
        };
        side_hash = sidecar_root_hash(&mut sc, image, &file)?;
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
                    if sc.open(&p, ImageStep::Signature)?.is_some() {
                        let message = match &used {
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
                        };
                        return Err(ImageError::invalid(
                            ImageStep::Signature,
                            message,
                            libc::EINVAL,
                        ));
                    }
                    continue;
                }
            }
            if let Some(sig) = sc.read(&p, MAX_SIGNATURE_FILE, ImageStep::Signature)? {
                verity::check_signature_envelope(&sig).map_err(|e| {
                    ImageError::invalid(
                        ImageStep::Signature,
                        format!("{}: {e}", p.display()),
                        libc::EBADMSG,
                    )
                })?;
                side_sig = Some((sig, SigSource::Sidecar(p)));
            }
        }
        let p = sidecar_path(&image.path, ".verity");
        if let Some(f) = sc.open(&p, ImageStep::Verity)? {
            verity_file = Some(f);
            verity_path = Some(p);
        }
    }

    // The first 4 KiB, read once: the protective MBR and a GPT header of 512-byte
    // sectors, and the superblock of a bare file system, lie in them. Reads beyond go
    // to the file; a failed read here leaves every read to the file, as before.
    let head = read_at(
        &file,
        0,
        size.min(HEAD_BYTES) as usize,
        "the image's first bytes",
        ImageStep::Open,
    )
    .ok();
    let read_head_or_file = |off: u64, buf: &mut [u8]| -> io::Result<()> {
        let cached = head.as_deref().and_then(|h| {
            let start = usize::try_from(off).ok()?;
            h.get(start..start.checked_add(buf.len())?)
        });
        match cached {
            Some(src) => {
                buf.copy_from_slice(src);
                Ok(())
            }
            None => file.read_exact_at(buf, off),
        }
    };

    // Layout.
    let gpt = if verity_file.is_some() {
        None // an external hash tree means: the image is one file system
    } else {
        match gpt::parse(read_head_or_file, size) {
            Ok(g) => Some(g),
            Err(
                GptError::TooSmall { .. } | GptError::NoProtectiveMbr { .. } | GptError::NoHeader,
            ) => None,
            Err(e) => {
                return Err(ImageError::invalid(
                    ImageStep::PartitionTable,
                    format!("partition table: {e}"),
                    gpt_errno(&e),
                ))
            }
        }
    };

    let (layout, mut volumes, present) = match &gpt {
        None => {
            let fstype = probe_fs_head(&file, head.as_deref(), size)?;
            let hash_tree = match (&verity_file, &verity_path) {
                (Some(f), Some(p)) => {
                    let vsize = rustix::fs::fstat(f)
                        .map_err(|e| {
                            ImageError::os(
                                ImageStep::Verity,
                                format_args!("{}: fstat", p.display()),
                                e,
                            )
                        })?
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
            let sel = gpt::select_roles(g, arch).map_err(|e| {
                ImageError::invalid(
                    ImageStep::PartitionTable,
                    format!("partition table: {e}"),
                    gpt_errno(&e),
                )
            })?;
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
                    e.context(format_args!(
                        "{} partition {} ({})",
                        pi.role, pi.index, pi.label
                    ))
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
                let bad = |e: VerityError| {
                    ImageError::invalid(
                        ImageStep::Signature,
                        format!("{} partition {}: {e}", sp.role, sp.index),
                        verity_errno(&e),
                    )
                };
                if sp.size > verity::MAX_SIG_PARTITION_SIZE as u64 {
                    return Err(bad(VerityError::SigPartitionTooLarge(sp.size as usize)));
                }
                let data = read_at(
                    &file,
                    sp.offset,
                    sp.size as usize,
                    "the signature partition",
                    ImageStep::Signature,
                )?;
                let js = VeritySig::parse_json(&data).map_err(bad)?;
                verity::check_signature_envelope(&js.signature).map_err(bad)?;
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
            return Err(ImageError::invalid(
                ImageStep::Verity,
                format!(
                    "{} gives a verity hash for {d}, but the image has no {d} {}",
                    describe(&source),
                    if layout == Layout::Bare {
                        "file system (a bare file system image counts as root)"
                    } else {
                        "partition"
                    }
                ),
                libc::ENXIO,
            ));
        };
        if let Some((part_hash, part_source)) = &v.root_hash {
            if *part_hash != hash {
                return Err(ImageError::invalid(
                    ImageStep::Verity,
                    format!(
                        "root hash {part_hash} in {} differs from root hash {hash} in {}",
                        describe(part_source),
                        describe(&source)
                    ),
                    libc::ENOMSG,
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
                return Err(ImageError::invalid(
                    ImageStep::Verity,
                    format!(
                        "root hash {h} from {} but no hash tree for the {} file system (no {}-verity partition or .verity file)",
                        describe(s), v.designator, v.designator
                    ),
                    libc::ENXIO,
                ));
            }
            v.protection = Protection::Unprotected;
            continue;
        };
        let designator = v.designator;
        let refuse = |e: ImageError| {
            e.map_message(|m| {
                format!(
                    "{m}; the image carries a hash tree for its {designator} file system, which is not mounted without verity"
                )
            })
        };
        if v.root_hash.is_none() {
            match (&v.partition, &tree.location) {
                // systemd (dissected_image_guess_verity_roothash): with neither a sidecar
                // nor a signature partition, the data and verity partition UUIDs, joined,
                // are the root hash (what systemd-repart writes). Whether it is right is
                // for dm-verity to decide; the superblock is not needed to derive it.
                (Some(data), HashLocation::Partition(hp)) => {
                    if data.uuid.is_nil() || hp.uuid.is_nil() {
                        return Err(refuse(ImageError::invalid(
                            ImageStep::Verity,
                            format!(
                                "no root hash: no signature partition, no .roothash/.usrhash sidecar or xattr, and the {} partition {} has a nil partition UUID, so none can be derived from the UUIDs",
                                if data.uuid.is_nil() { data.role } else { hp.role },
                                if data.uuid.is_nil() { data.index } else { hp.index },
                            ),
                            libc::ENXIO,
                        )));
                    }
                    let mut b = data.uuid.to_text_bytes().to_vec();
                    b.extend_from_slice(&hp.uuid.to_text_bytes());
                    let h = RootHash::from_bytes(&b).map_err(|e| {
                        refuse(ImageError::invalid(
                            ImageStep::Verity,
                            format!("root hash from the partition UUIDs: {e}"),
                            verity_errno(&e),
                        ))
                    })?;
                    v.root_hash = Some((h, HashSource::PartitionUuids));
                }
                (_, HashLocation::Sidecar { path, .. }) => {
                    return Err(ImageError::invalid(
                        ImageStep::Verity,
                        format!(
                            "{} has a hash tree but no root hash was found (.roothash, .usrhash, or the user.verity.* xattrs)",
                            path.display()
                        ),
                        libc::ENXIO,
                    ));
                }
                (None, HashLocation::Partition(hp)) => {
                    return Err(refuse(ImageError::invalid(
                        ImageStep::Verity,
                        format!("no root hash for the {} partition {}", hp.role, hp.index),
                        libc::ENXIO,
                    )));
                }
            }
        }
        let (h, src) = v.root_hash.as_ref().expect("set above");
        let sb = read_superblock(&file, verity_file.as_ref(), tree, v.size).map_err(refuse)?;
        h.check_algorithm(sb.algorithm).map_err(|e| {
            refuse(ImageError::invalid(
                ImageStep::Verity,
                format!(
                    "root hash from {} does not fit the hash tree: {e}",
                    describe(src)
                ),
                verity_errno(&e),
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
pub fn inspect(root: &Root, image: &Image) -> Result<ImageInfo, ImageError> {
    probe(root, image, crate::format::arch::native())
        .map(|p| p.info)
        .map_err(|e| e.at(image.shown(root)))
}

/// Probes the file system through the verity device `dev` (read-only): the type that is
/// mounted is decided from verified bytes. A wrong root hash fails here (`EIO`, step
/// [`ImageStep::Verity`]). Only the first 4 KiB are read (all a superblock with 4 KiB
/// blocks needs; more only if the probe asks for it), so that a corrupted block
/// elsewhere fails only the reads that touch it.
pub fn probe_verified(dev: &Path, size: u64) -> Result<FsType, ImageError> {
    let fd =
        rustix::fs::open(dev, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).map_err(|e| {
            ImageError::os(
                ImageStep::Verity,
                format_args!("opening {}", dev.display()),
                e,
            )
        })?;
    let file = File::from(fd);
    let fail = |e: ImageError| {
        e.map_message(|m| {
            format!(
                "reading through dm-verity device {}: {m} (does the root hash match the image?)",
                dev.display()
            )
        })
    };
    let first = size.min(4096);
    let buf = read_at(
        &file,
        0,
        first as usize,
        "the file system superblock",
        ImageStep::Verity,
    )
    .map_err(fail)?;
    match fs::probe_with_size(&buf, size) {
        Ok(t) => Ok(t),
        Err(fs::FsError::Truncated { .. }) if first < size => {
            probe_fs(&file, 0, size).map_err(|e| {
                let e = if e.step == ImageStep::FileSystem
                    && matches!(e.source, ImageSource::Os { .. })
                {
                    ImageError {
                        step: ImageStep::Verity,
                        ..e
                    }
                } else {
                    e
                };
                fail(e)
            })
        }
        Err(e) => Err(fail(ImageError::invalid(
            ImageStep::FileSystem,
            format!("file system: {e}"),
            fs_errno(&e),
        ))),
    }
}

// ---------------------------------------------------------------------------------------
// Policy

/// Applies `policy` to what the image offers: the protection to use per volume
/// (`Unused` = do not mount). A refusal is [`ImageStep::Policy`] with `ERFKILL`, as
/// systemd's `dissect-image.c` answers an image the policy denies.
pub fn apply_policy(policy: &ImagePolicy, info: &ImageInfo) -> Result<Vec<Protection>, ImageError> {
    let deny = |m: String| ImageError::refused(ImageStep::Policy, m, libc::ERFKILL);
    let refuse =
        |e: policy::PolicyError| deny(format!("image policy '{policy}' forbids this image: {e}"));
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
                return Err(deny(format!(
                    "image policy '{policy}' does not use verity for the {d} file system, but the image carries a hash tree for it ({what}); refusing to mount it without verity",
                    d = v.designator
                )));
            }
        }
        levels.push(level);
    }
    if levels.first() == Some(&Protection::Unused) {
        let d = info.volumes[0].designator;
        return Err(deny(format!(
            "image policy '{policy}' ignores the {d} file system: nothing to mount"
        )));
    }
    Ok(levels)
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
    fn error_display_and_errno() {
        let e = ImageError::os(
            ImageStep::Open,
            "cannot open",
            io::Error::from_raw_os_error(libc::ENOENT),
        );
        assert_eq!(e.to_string(), "cannot open: No such file or directory");
        assert_eq!(e.errno(), libc::ENOENT);
        let e = e.context("usr (loop device)").at("/root/x.raw");
        assert_eq!(
            e.to_string(),
            "/root/x.raw: usr (loop device): cannot open: No such file or directory"
        );
        assert_eq!((e.step, e.errno()), (ImageStep::Open, libc::ENOENT));
        let e = ImageError::injected(ImageStep::Mount, 3, "mount").at("/x.raw");
        assert_eq!(
            e.to_string(),
            "/x.raw: injected fault at image step 3 (mount)"
        );
        assert_eq!(e.errno(), libc::EIO);
        assert_eq!(
            gpt_errno(&GptError::NoRootOrUsr {
                arch: "x86-64".into()
            }),
            libc::ENXIO
        );
        assert_eq!(fs_errno(&FsError::Unknown), libc::EPROTONOSUPPORT);
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
        assert_eq!((e.step, e.errno()), (ImageStep::Policy, libc::ERFKILL));
        assert!(matches!(e.source, ImageSource::Refused { .. }), "{e:?}");
        assert!(e.to_string().starts_with("image policy"), "{e}");
        let e = apply_policy(&ImagePolicy::deny(), &bare).unwrap_err();
        assert_eq!((e.step, e.errno()), (ImageStep::Policy, libc::ERFKILL));
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
        assert_eq!((e.step, e.errno()), (ImageStep::Policy, libc::ERFKILL));
        assert!(e.to_string().contains("nothing to mount"), "{e}");
    }

    /// [`ImageDirs`] gives the answers of fresh lookups: the same probe result (or error:
    /// step, errno, message) and the same verity-inputs stamp, image after image, while
    /// sidecars come and go between them — on the file system of the temp dir, and on a
    /// tmpfs (`/dev/shm`, where one is), where the listing answers.
    #[test]
    fn image_dirs_answer_as_lookups() {
        let mut bases = vec![tempfile::tempdir().unwrap()];
        match tempfile::tempdir_in("/dev/shm") {
            Ok(d)
                if rustix::fs::statfs(d.path()).is_ok_and(|s| {
                    #[allow(clippy::unnecessary_cast)]
                    let t = s.f_type as i64;
                    t == TMPFS_MAGIC
                }) =>
            {
                bases.push(d)
            }
            _ => eprintln!("SKIP image_dirs_answer_as_lookups on tmpfs: no tmpfs /dev/shm"),
        }
        for base in &bases {
            let ext = base.path().join("var/lib/extensions");
            std::fs::create_dir_all(&ext).unwrap();
            for n in ["a", "b", "c"] {
                std::fs::write(ext.join(format!("{n}.raw")), vec![0u8; 4096]).unwrap();
            }
            let root = Root::open(base.path()).unwrap();
            let img = |n: &str| Image {
                name: n.into(),
                class: crate::format::class::Class::Sysext,
                kind: ImageKind::Raw,
                path: format!("/var/lib/extensions/{n}.raw").into(),
                search_dir: "/var/lib/extensions".into(),
                mtime_usec: None,
                picked: None,
                opened: Default::default(),
                base: None,
            };
            let arch = crate::format::arch::native();
            let outcome = |r: Result<Probed, ImageError>| match r {
                Ok(p) => Ok(p.info),
                Err(e) => Err((e.step, e.errno(), e.to_string())),
            };
            let check = |dirs: &mut ImageDirs, n: &str, want: ImageStep| {
                let i = img(n);
                let cached = outcome(probe_in(&root, &i, arch, dirs));
                let fresh = outcome(probe(&root, &i, arch));
                assert_eq!(cached, fresh, "{n} in {}", base.path().display());
                assert_eq!(
                    cached.as_ref().map_err(|e| e.0).unwrap_err(),
                    want,
                    "{cached:?}"
                );
                assert_eq!(
                    verity_inputs_stamp_in(&root, &i, dirs),
                    verity_inputs_stamp(&root, &i)
                );
            };
            let mut dirs = ImageDirs::new();
            check(&mut dirs, "a", ImageStep::FileSystem);
            check(&mut dirs, "b", ImageStep::FileSystem);
            check(&mut dirs, "c", ImageStep::FileSystem);
            // On tmpfs (6.13+) the listing answers from the second image on (and goes on
            // answering while nothing changes); elsewhere it is never taken.
            let tmpfs = matches!(dirs.dirs[0].listing, Listing::Names { .. });
            assert_eq!(
                tmpfs,
                base.path().starts_with("/dev/shm") && tmpfs_has_multigrain_times()
            );
            // A signature appears after the listing: the directory changed, so it is seen.
            std::fs::write(ext.join("c.roothash.p7s"), b"sig").unwrap();
            check(&mut dirs, "c", ImageStep::Signature);
            std::fs::remove_file(ext.join("c.roothash.p7s")).unwrap();
            check(&mut dirs, "c", ImageStep::FileSystem);
            // A dangling symlink is there (and refused), a directory as well.
            std::os::unix::fs::symlink("nowhere", ext.join("b.verity")).unwrap();
            check(&mut dirs, "b", ImageStep::Verity);
            std::fs::remove_file(ext.join("b.verity")).unwrap();
            std::fs::create_dir(ext.join("a.usrhash")).unwrap();
            check(&mut dirs, "a", ImageStep::Verity);
            std::fs::remove_dir(ext.join("a.usrhash")).unwrap();
            // An image replaced by another file; one that is gone.
            std::fs::write(ext.join("new.raw"), vec![0u8; 4096]).unwrap();
            std::fs::rename(ext.join("new.raw"), ext.join("a.raw")).unwrap();
            check(&mut dirs, "a", ImageStep::FileSystem);
            std::fs::remove_file(ext.join("b.raw")).unwrap();
            check(&mut dirs, "b", ImageStep::Open);
            // A fresh run lists again; a symlinked image is looked up from the root.
            let mut dirs2 = ImageDirs::new();
            std::os::unix::fs::symlink("a.raw", ext.join("b.raw")).unwrap();
            for n in ["a", "b", "c"] {
                let i = img(n);
                assert_eq!(
                    outcome(probe_in(&root, &i, arch, &mut dirs2)),
                    outcome(probe(&root, &i, arch))
                );
                assert_eq!(
                    verity_inputs_stamp_in(&root, &i, &mut dirs2),
                    verity_inputs_stamp(&root, &i)
                );
            }
            eprintln!(
                "image_dirs_answer_as_lookups: {} (listing used: {tmpfs})",
                base.path().display()
            );
        }
    }

    #[test]
    fn directories_are_not_images() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let mut img = Image {
            name: "x".into(),
            class: crate::format::class::Class::Sysext,
            kind: ImageKind::Directory,
            path: "/x".into(),
            search_dir: "/var/lib/extensions".into(),
            mtime_usec: None,
            picked: None,
            opened: Default::default(),
            base: None,
        };
        let e = inspect(&root, &img).unwrap_err();
        assert_eq!((e.step, e.errno()), (ImageStep::Open, libc::EISDIR));
        img.kind = ImageKind::Raw;
        let e = inspect(&root, &img).unwrap_err();
        assert_eq!((e.step, e.errno()), (ImageStep::Open, libc::ENOENT));
        assert_eq!(e.path, dir.path().join("x"));
        assert!(
            e.to_string()
                .ends_with(": cannot open: No such file or directory"),
            "{e}"
        );
    }
}
