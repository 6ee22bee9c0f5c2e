//! Thin wrappers over the kernel's mount API, named for the kernel operation.
//!
//! Everything here takes and returns file descriptors: a mount is built detached
//! (`fsopen` → `fsconfig` → `fsmount`) and attached in one `move_mount`, so a merge
//! never shows a half-configured overlay, and targets are directory fds opened with
//! `RESOLVE_IN_ROOT`, so a symlink swapped into a root cannot redirect a mount.
//! Kernel differences are handled beside the call that needs them (see [`Overlay`]).

use std::io;

use crate::inspect::fsutil::fd_path;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use crate::format::fs::FsType;
use rustix::mount::{
    fsconfig_create, fsconfig_set_fd, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen,
    move_mount, open_tree, unmount, FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags,
    OpenTreeFlags, UnmountFlags,
};

/// A failed mount step: which call, on what, and the kernel's own words if it gave any.
#[derive(Debug, thiserror::Error)]
#[error("{op} {what}: {}{}", crate::log::os_text(.source), fmt_messages(.messages))]
pub struct MountError {
    /// The syscall or step (`fsconfig lowerdir+`, `move_mount`…).
    pub op: &'static str,
    /// What it was applied to (a path, a layer).
    pub what: String,
    /// The errno.
    pub source: io::Error,
    /// Messages the kernel left in the fs context (`read(2)` on the fsopen fd), escaped
    /// for people.
    pub messages: Vec<String>,
}

fn fmt_messages(m: &[String]) -> String {
    if m.is_empty() {
        String::new()
    } else {
        format!(" (kernel: {})", m.join("; "))
    }
}

impl MountError {
    /// A mount error without kernel messages.
    pub fn new(op: &'static str, what: impl Into<String>, source: impl Into<io::Error>) -> Self {
        MountError {
            op,
            what: what.into(),
            source: source.into(),
            messages: Vec::new(),
        }
    }

    /// errno for the C ABI.
    pub fn errno(&self) -> i32 {
        self.source.raw_os_error().unwrap_or(libc::EIO)
    }
}

/// Drains the fs context's message queue (`e …`, `w …`, `i …` lines).
fn context_messages(fs: &OwnedFd) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok(n) = rustix::io::read(fs, &mut buf) {
        if n == 0 {
            break;
        }
        // Escaped for people where it is read ([`crate::format::escape::esc_text`]).
        let text = buf[..n].trim_ascii_end();
        out.push(crate::format::escape::esc_text(text).to_string());
        if out.len() > 16 {
            break;
        }
    }
    out
}

fn ctx_err(
    fs: &OwnedFd,
    op: &'static str,
    what: impl Into<String>,
    e: rustix::io::Errno,
) -> MountError {
    MountError {
        op,
        what: what.into(),
        source: e.into(),
        messages: context_messages(fs),
    }
}

/// A fresh detached tmpfs: `fsopen("tmpfs")`, `mode=`, `fsmount`. Used for the metadata
/// layer and ephemeral upper dirs.
pub fn tmpfs_detached(source: &str, mode: &str) -> Result<OwnedFd, MountError> {
    let fs = fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(|e| MountError::new("fsopen", "tmpfs", e))?;
    fsconfig_set_string(&fs, "source", source)
        .map_err(|e| ctx_err(&fs, "fsconfig source", "tmpfs", e))?;
    fsconfig_set_string(&fs, "mode", mode)
        .map_err(|e| ctx_err(&fs, "fsconfig mode", "tmpfs", e))?;
    fsconfig_create(&fs).map_err(|e| ctx_err(&fs, "fsconfig create", "tmpfs", e))?;
    fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NODEV | MountAttrFlags::MOUNT_ATTR_NOSUID,
    )
    .map_err(|e| ctx_err(&fs, "fsmount", "tmpfs", e))
}

/// `fsopen(fstype)`, `source=dev`, `ro` (+ `norecovery` for ext4), `fsmount(RDONLY |
/// NODEV | NOSUID)`: a detached read-only mount of the block device `dev` (a disk
/// image's loop or dm-verity device). The kernel's messages are drained with
/// [`context_messages`].
pub fn mount_block(dev: &std::path::Path, fstype: FsType) -> Result<OwnedFd, MountError> {
    let name = fstype.fstype_name();
    let what = format!("{name} on {}", dev.display());
    let fs = fsopen(name, FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(|e| MountError::new("fsopen", name, e))?;
    fsconfig_set_string(&fs, "source", dev)
        .map_err(|e| ctx_err(&fs, "fsconfig source", what.clone(), e))?;
    fsconfig_set_flag(&fs, "ro").map_err(|e| ctx_err(&fs, "fsconfig ro", what.clone(), e))?;
    if fstype == FsType::Ext4 {
        // Never replay a journal on a read-only image.
        fsconfig_set_flag(&fs, "norecovery")
            .map_err(|e| ctx_err(&fs, "fsconfig norecovery", what.clone(), e))?;
    }
    fsconfig_create(&fs).map_err(|e| ctx_err(&fs, "fsconfig create", what.clone(), e))?;
    fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_RDONLY
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOSUID,
    )
    .map_err(|e| ctx_err(&fs, "fsmount", what, e))
}

/// `move_mount(mnt, "", target, "", F_EMPTY_PATH | T_EMPTY_PATH [| BENEATH])`: attaches a
/// detached mount (or moves an attached one) onto the directory `target` refers to.
/// With `beneath` (Linux 6.5+) it goes *under* the mount on top of `target`, so that
/// unmounting that one reveals the new mount with no gap.
pub fn attach(
    mnt: BorrowedFd<'_>,
    target: BorrowedFd<'_>,
    beneath: bool,
    what: &str,
) -> Result<(), MountError> {
    let mut flags =
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH;
    if beneath {
        flags |= MoveMountFlags::MOVE_MOUNT_BENEATH;
    }
    move_mount(mnt, "", target, "", flags).map_err(|e| {
        MountError::new(
            if beneath {
                "move_mount beneath"
            } else {
                "move_mount"
            },
            what,
            e,
        )
    })
}

/// `move_mount(mnt, "", dir, name, F_EMPTY_PATH)`: attaches a detached mount onto the
/// directory `name` in `dir` — one component, a symlink there not followed (no
/// `T_SYMLINKS`), no automount triggered (no `T_AUTOMOUNTS`). For a directory just made
/// in a tmpfs of our own, where opening it only to name it would cost an `openat`.
pub fn attach_at(
    mnt: BorrowedFd<'_>,
    dir: BorrowedFd<'_>,
    name: &str,
    what: &str,
) -> Result<(), MountError> {
    debug_assert!(!name.contains('/') && name != "." && name != "..");
    move_mount(mnt, "", dir, name, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)
        .map_err(|e| MountError::new("move_mount", what, e))
}

/// Lazily unmounts the mount whose root `fd` is (`umount2("/proc/self/fd/N", MNT_DETACH)`).
/// Going through the fd rather than a path means we unmount what we opened, even if a
/// symlink in the root changed meanwhile.
pub fn detach(fd: BorrowedFd<'_>, what: &str) -> Result<(), MountError> {
    unmount(fd_path(fd).as_str(), UnmountFlags::DETACH)
        .map_err(|e| MountError::new("umount2", what, e))
}

/// How the overlay's lower layers are handed to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerStrategy {
    /// One `fsconfig("lowerdir+", path)` per layer (Linux 6.8+): no length limit.
    Append,
    /// One `fsconfig("lowerdir", "a:b:c")` (all kernels with fsopen, value < 256 bytes).
    Joined,
    /// `mount(2)` with the whole option string (up to a page, ~240 layers): kernels
    /// without `lowerdir+` when the list is longer than `fsconfig` takes. The overlay is
    /// mounted on a directory in the staging area and moved from there.
    Legacy,
}

/// An overlayfs mount being configured.
#[derive(Debug)]
pub struct Overlay {
    /// `source=` (shows as the mount source in mountinfo).
    pub source: String,
    /// Lower layer paths, topmost first.
    pub lowers: Vec<String>,
    /// `upperdir=` and `workdir=` for a writable overlay.
    pub upper: Option<(String, String)>,
    /// Extra `key[=value]` options (e.g. `redirect_dir=on`).
    pub options: Vec<(String, Option<String>)>,
    /// Mount attributes for `fsmount` (read-only, nodev, …).
    pub attrs: MountAttrFlags,
}

/// Escapes a layer path for overlayfs' `lowerdir=` list (`\` before `:`, `,` and `\`).
pub fn escape_layer(path: &str) -> String {
    let mut s = String::with_capacity(path.len());
    for c in path.chars() {
        if matches!(c, ':' | ',' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

/// The running kernel's (major, minor), from `uname`; (0, 0) if it does not parse.
pub fn kernel_version() -> (u32, u32) {
    let uts = rustix::system::uname();
    crate::sys::loopdev::parse_kernel_version(&uts.release().to_string_lossy()).unwrap_or((0, 0))
}

/// The largest string value `fsconfig` accepts (`strndup_user(…, 256)` in fs/fsopen.c).
const FSCONFIG_MAX_STRING: usize = 255;

impl Overlay {
    /// Builds the overlay as a detached mount and returns its fd.
    ///
    /// `lowerdir+` is tried first; a kernel without it (before 6.8, e.g. Debian's 6.1)
    /// answers `EINVAL` (to the first `fsconfig`, or — legacy option parsing before
    /// 6.5 — only at `FSCONFIG_CMD_CREATE`), and then the layers go in one `lowerdir`
    /// string, or through `mount(2)` when that is longer than `fsconfig` takes.
    /// `force` pins a strategy (tests use it to cover all of them on one kernel).
    pub fn mount(
        &self,
        force: Option<LayerStrategy>,
        legacy_at: Option<(BorrowedFd<'_>, &str)>,
    ) -> Result<OwnedFd, MountError> {
        let joined_fits = self.joined_lowers().len() <= FSCONFIG_MAX_STRING;
        let force = force.or_else(|| {
            // Before 6.5 overlayfs parses options the legacy way and logs every unknown
            // one to the kernel log: do not try `lowerdir+` there at all.
            (kernel_version() < (6, 5)).then_some(LayerStrategy::Joined)
        });
        let strategy = match force {
            // As a kernel without lowerdir+ (what `Joined` stands for in tests): the
            // string if it fits, else mount(2).
            Some(LayerStrategy::Joined) if !joined_fits && legacy_at.is_some() => {
                LayerStrategy::Legacy
            }
            Some(s) => s,
            None => match self.try_mount(LayerStrategy::Append) {
                Ok(r) => return r,
                Err(Retry) if joined_fits || legacy_at.is_none() => LayerStrategy::Joined,
                Err(Retry) => LayerStrategy::Legacy,
            },
        };
        match (strategy, legacy_at) {
            (LayerStrategy::Legacy, Some((dir, name))) => self.mount_legacy(dir, name),
            (LayerStrategy::Legacy, None) => Err(MountError::new(
                "mount",
                "overlay",
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "no staging directory for mount(2)",
                ),
            )),
            (s, _) => match self.try_mount(s) {
                Ok(r) => r,
                Err(Retry) => unreachable!("only Append asks to retry"),
            },
        }
    }

    fn joined_lowers(&self) -> String {
        let v: Vec<String> = self.lowers.iter().map(|l| escape_layer(l)).collect();
        v.join(":")
    }

    /// `mount("overlay", "<dir>/<name>", "overlay", flags, "lowerdir=…,…")`, then an
    /// `O_PATH` fd of the mounted root (through `dir`, so the lookup enters the mount).
    fn mount_legacy(&self, dir: BorrowedFd<'_>, name: &str) -> Result<OwnedFd, MountError> {
        use rustix::mount::MountFlags as Ms;
        let mut data = format!("lowerdir={}", self.joined_lowers());
        if let Some((u, w)) = &self.upper {
            data += &format!(",upperdir={},workdir={}", escape_layer(u), escape_layer(w));
        }
        for (k, v) in &self.options {
            match v {
                Some(v) => data += &format!(",{k}={v}"),
                None if k == "ro" => {}
                None => data += &format!(",{k}"),
            }
        }
        if data.len() >= 4096 {
            return Err(MountError::new(
                "mount",
                format!("overlay ({} layers)", self.lowers.len()),
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "option string is {} bytes; mount(2) takes less than a page",
                        data.len()
                    ),
                ),
            ));
        }
        let mut flags = Ms::empty();
        for (a, m) in [
            (MountAttrFlags::MOUNT_ATTR_RDONLY, Ms::RDONLY),
            (MountAttrFlags::MOUNT_ATTR_NODEV, Ms::NODEV),
            (MountAttrFlags::MOUNT_ATTR_NOSUID, Ms::NOSUID),
            (MountAttrFlags::MOUNT_ATTR_NOEXEC, Ms::NOEXEC),
            (MountAttrFlags::MOUNT_ATTR_NOATIME, Ms::NOATIME),
        ] {
            if self.attrs.contains(a) {
                flags |= m;
            }
        }
        let target = format!("{}/{name}", fd_path(dir));
        let cdata = std::ffi::CString::new(data)
            .map_err(|e| MountError::new("mount", "overlay", io::Error::other(e)))?;
        rustix::mount::mount(
            self.source.as_str(),
            target.as_str(),
            "overlay",
            flags,
            cdata.as_c_str(),
        )
        .map_err(|e| {
            MountError::new(
                "mount",
                format!("overlay ({} layers)", self.lowers.len()),
                e,
            )
        })?;
        rustix::fs::openat(
            dir,
            name,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| MountError::new("open", target, e))
    }

    fn try_mount(&self, strategy: LayerStrategy) -> Result<Result<OwnedFd, MountError>, Retry> {
        let fs = match fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC) {
            Ok(fs) => fs,
            Err(e) => return Ok(Err(MountError::new("fsopen", "overlay", e))),
        };
        let set = |key: &str, value: &str| -> Result<(), MountError> {
            fsconfig_set_string(&fs, key, value).map_err(|e| {
                let mut err = ctx_err(&fs, "fsconfig", format!("{key}={value}"), e);
                err.op = "fsconfig";
                err
            })
        };
        if let Err(e) = set("source", &self.source) {
            return Ok(Err(e));
        }
        match strategy {
            LayerStrategy::Append => {
                // Layers given as `/proc/self/fd/N` go to the kernel as the fd itself
                // (`FSCONFIG_SET_FD`, overlayfs since 6.13): no procfs path walk per
                // layer. A kernel that refuses it for the first layer gets paths.
                let mut by_fd = true;
                for (i, l) in self.lowers.iter().enumerate() {
                    if by_fd {
                        if let Some(fd) = proc_fd(l) {
                            match fsconfig_set_fd(&fs, "lowerdir+", fd) {
                                Ok(()) => continue,
                                Err(_) if i == 0 => {
                                    // Drop what the refusal queued, then try the path.
                                    let _ = context_messages(&fs);
                                    by_fd = false;
                                }
                                Err(e) => {
                                    return Ok(Err(ctx_err(
                                        &fs,
                                        "fsconfig",
                                        format!("lowerdir+={l}"),
                                        e,
                                    )))
                                }
                            }
                        }
                    }
                    match fsconfig_set_string(&fs, "lowerdir+", l.as_str()) {
                        Ok(()) => {}
                        Err(rustix::io::Errno::INVAL) if i == 0 => {
                            let msgs = context_messages(&fs);
                            // "Unknown parameter" means the kernel predates lowerdir+.
                            if msgs.is_empty()
                                || msgs.iter().any(|m| m.contains("nknown parameter"))
                            {
                                return Err(Retry);
                            }
                            return Ok(Err(MountError {
                                op: "fsconfig",
                                what: format!("lowerdir+={l}"),
                                source: io::Error::from_raw_os_error(libc::EINVAL),
                                messages: msgs,
                            }));
                        }
                        Err(e) => {
                            return Ok(Err(ctx_err(&fs, "fsconfig", format!("lowerdir+={l}"), e)))
                        }
                    }
                }
            }
            LayerStrategy::Joined | LayerStrategy::Legacy => {
                let joined = self.joined_lowers();
                if joined.len() > FSCONFIG_MAX_STRING {
                    return Ok(Err(MountError::new(
                        "fsconfig",
                        format!("lowerdir ({} layers)", self.lowers.len()),
                        io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("layer list is {} bytes; this kernel takes at most {FSCONFIG_MAX_STRING} without lowerdir+ (Linux 6.8)", joined.len()),
                        ),
                    )));
                }
                if let Err(e) = set("lowerdir", &joined) {
                    return Ok(Err(e));
                }
            }
        }
        if let Some((upper, work)) = &self.upper {
            for (k, v) in [("upperdir", upper), ("workdir", work)] {
                if let Err(e) = set(k, v) {
                    return Ok(Err(e));
                }
            }
        }
        for (k, v) in &self.options {
            let r = match v {
                Some(v) => set(k, v),
                None => fsconfig_set_flag(&fs, k.as_str())
                    .map_err(|e| ctx_err(&fs, "fsconfig", k.clone(), e)),
            };
            if let Err(e) = r {
                return Ok(Err(e));
            }
        }
        if let Err(e) = fsconfig_create(&fs) {
            // Before 6.5 overlayfs parses options the legacy way: `lowerdir+` is
            // accepted by fsconfig and refused only here ("unrecognized mount option"
            // in the kernel log, nothing in the context). Try the other way; a real
            // error comes back from that attempt too.
            if strategy == LayerStrategy::Append && e == rustix::io::Errno::INVAL {
                return Err(Retry);
            }
            return Ok(Err(ctx_err(&fs, "fsconfig create", "overlay", e)));
        }
        Ok(fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, self.attrs)
            .map_err(|e| ctx_err(&fs, "fsmount", "overlay", e)))
    }
}

/// The fd of a `/proc/self/fd/N` layer path (as [`fd_path`] makes them), borrowed for
/// one `fsconfig` while the caller holds it open.
fn proc_fd(path: &str) -> Option<BorrowedFd<'_>> {
    let n: i32 = path.strip_prefix("/proc/self/fd/")?.parse().ok()?;
    if n < 0 {
        return None;
    }
    // SAFETY: the layer path names fd `n` of this process, exactly as the path string
    // would for the kernel: the layers come from `fd_path` of fds the caller keeps open
    // until the overlay is created, and the borrow is used for one `fsconfig` call only
    // (an fd that is not open is answered EBADF by the kernel; nothing is closed here).
    #[allow(unsafe_code)]
    Some(unsafe { BorrowedFd::borrow_raw(n) })
}

/// Internal signal: the kernel lacks `lowerdir+`; try the joined string.
struct Retry;

/// `open_tree(fd, "", OPEN_TREE_CLONE | AT_EMPTY_PATH)`: a detached copy of the mount at `fd`.
pub fn clone_tree(fd: BorrowedFd<'_>, what: &str) -> Result<OwnedFd, MountError> {
    open_tree(
        fd,
        "",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_EMPTY_PATH,
    )
    .map_err(|e| MountError::new("open_tree", what, e))
}

/// `open_tree(fd, "", OPEN_TREE_CLONE | AT_RECURSIVE | AT_EMPTY_PATH)`: a detached copy
/// of the mount at `fd` with its submounts.
pub fn clone_tree_recursive(fd: BorrowedFd<'_>, what: &str) -> Result<OwnedFd, MountError> {
    open_tree(
        fd,
        "",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_EMPTY_PATH
            | OpenTreeFlags::AT_RECURSIVE,
    )
    .map_err(|e| MountError::new("open_tree", what, e))
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH, {attr_set})`: e.g. make a bind read-only.
pub fn set_attrs(fd: BorrowedFd<'_>, set: MountAttrFlags, what: &str) -> Result<(), MountError> {
    mount_setattr(fd, set, 0, false, what)
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH, {propagation = MS_PRIVATE})`.
///
/// Clones of a shared mount join its peer group; a staging clone must not, or mounts
/// and unmounts on the real tree would propagate into it and back.
pub fn make_private(fd: BorrowedFd<'_>, what: &str) -> Result<(), MountError> {
    mount_setattr(fd, MountAttrFlags::empty(), libc::MS_PRIVATE, false, what)
}

/// [`make_private`] for the mount at `fd` and all its submounts (`AT_RECURSIVE`).
pub fn make_private_recursive(fd: BorrowedFd<'_>, what: &str) -> Result<(), MountError> {
    mount_setattr(fd, MountAttrFlags::empty(), libc::MS_PRIVATE, true, what)
}

/// The kernel's `struct mount_attr` (`<linux/mount.h>`, `MOUNT_ATTR_SIZE_VER0`), the
/// argument of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

// The layout the kernel reads: 32 bytes (`MOUNT_ATTR_SIZE_VER0`), 8-byte aligned (four
// `__u64`), each field at its offset in `struct mount_attr`.
const _: () = assert!(std::mem::size_of::<MountAttr>() == 32);
const _: () = assert!(std::mem::align_of::<MountAttr>() == 8);
const _: () = assert!(std::mem::offset_of!(MountAttr, attr_set) == 0);
const _: () = assert!(std::mem::offset_of!(MountAttr, attr_clr) == 8);
const _: () = assert!(std::mem::offset_of!(MountAttr, propagation) == 16);
const _: () = assert!(std::mem::offset_of!(MountAttr, userns_fd) == 24);

fn mount_setattr(
    fd: BorrowedFd<'_>,
    set: MountAttrFlags,
    propagation: u64,
    recursive: bool,
    what: &str,
) -> Result<(), MountError> {
    let attr = MountAttr {
        attr_set: set.bits() as u64,
        attr_clr: 0,
        propagation,
        userns_fd: 0,
    };
    #[allow(unsafe_code)]
    // SAFETY: mount_setattr(2) reads `size` bytes from `attr`, a live, correctly laid
    // out `struct mount_attr` (MOUNT_ATTR_SIZE_VER0 = 32 bytes); the path is a valid C string.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 },
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(MountError::new(
            "mount_setattr",
            what,
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}
