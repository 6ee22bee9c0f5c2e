//! Finding the *host* directory of a hierarchy, also while our merge covers it.
//!
//! A refresh builds the new overlay before the old one is removed (so the hierarchy
//! is never bare), but then `<root>/usr` resolves to the old overlay, not to the host's
//! `/usr` that must be the bottom layer. When the hierarchy is a plain directory of its
//! parent's mount, a non-recursive clone of the parent (`open_tree(OPEN_TREE_CLONE)`)
//! shows the directory without the overlay on it. When the hierarchy is itself the
//! root of a mount (a separate `/usr` file system) there is no way to reach below the
//! overlay, and the caller has to unmerge first ([`HostDir::StackedOnMount`]).

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{OFlags, ResolveFlags};

use crate::format::class::Class;
use crate::format::mountinfo::{mountinfo_parent, submounts_below};
use crate::inspect::fsutil::{self, Root};
use crate::inspect::metadata;

/// Where the host's own directory of a hierarchy is.
#[derive(Debug)]
pub enum HostDir {
    /// The hierarchy does not exist in the root.
    Missing,
    /// Not merged: the directory itself.
    Plain(OwnedFd),
    /// Merged by us: a detached, non-recursive clone of the parent's mount and the
    /// hierarchy's name in it.
    UnderMerge {
        /// Clone of the parent directory's mount (no submounts).
        parent_clone: OwnedFd,
        /// The hierarchy's last component.
        name: OsString,
    },
    /// Merged by us over a mount root: the host directory cannot be reached.
    StackedOnMount,
}

impl HostDir {
    /// Looks up the host directory of `h` in `root` for `class`.
    pub fn open(root: &Root, class: Class, h: &str) -> io::Result<HostDir> {
        Self::look(root, class, h, true)
    }

    /// True when `h` is merged by us over a mount root ([`HostDir::StackedOnMount`]);
    /// as [`HostDir::open`], but without cloning the parent's mount.
    pub fn is_stacked_on_mount(root: &Root, class: Class, h: &str) -> bool {
        matches!(
            Self::look(root, class, h, false),
            Ok(HostDir::StackedOnMount)
        )
    }

    /// [`HostDir::open`]; without `clone`, a reachable host directory under a merge
    /// is answered as [`HostDir::Missing`] (for [`HostDir::is_stacked_on_mount`]).
    fn look(root: &Root, class: Class, h: &str, clone: bool) -> io::Result<HostDir> {
        let fd = match root.open_at(h, OFlags::RDONLY | OFlags::DIRECTORY) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HostDir::Missing),
            Err(e) => return Err(e),
        };
        let merged = metadata::find_merged(root, class, h)
            .map_err(|e| io::Error::from_raw_os_error(e.errno))?
            .is_some();
        if !merged {
            return Ok(HostDir::Plain(fd));
        }
        let path = Path::new(h);
        let parent_rel = path.parent().unwrap_or(Path::new("/"));
        let name = path.file_name().map(OsString::from).unwrap_or_default();
        let parent = root.open_at(parent_rel, OFlags::PATH | OFlags::DIRECTORY)?;
        if !mounted_directly_on(fd.as_fd(), parent.as_fd())? {
            return Ok(HostDir::StackedOnMount);
        }
        if !clone {
            return Ok(HostDir::Missing);
        }
        let parent_clone =
            crate::sys::mount::clone_tree(parent.as_fd(), h).map_err(|e| e.source)?;
        Ok(HostDir::UnderMerge { parent_clone, name })
    }

    /// An fd for reading the host directory (stat, readdir); `None` if unreachable.
    pub fn reader(&self) -> io::Result<Option<OwnedFd>> {
        match self {
            HostDir::Missing | HostDir::StackedOnMount => Ok(None),
            HostDir::Plain(fd) => Ok(Some(fd.try_clone()?)),
            HostDir::UnderMerge { parent_clone, name } => Ok(Some(fsutil::open_in(
                parent_clone.as_fd(),
                Path::new(name),
                OFlags::RDONLY | OFlags::DIRECTORY,
                ResolveFlags::NO_SYMLINKS,
            )?)),
        }
    }
}

/// Refuses hierarchies that are the same directory once symlinks inside the root are
/// resolved (`/usr2` a symlink to `usr`): two overlays would stack on one mount point.
/// One inside another through a symlink (`/opt` → `usr/opt`) is left alone, as systemd
/// merges it (the inner overlay goes on top of the outer one's tree); as given, nesting
/// is refused by [`crate::options::check_overlap`]. `source` names the list; hierarchies
/// The host's own directory of `h` for reading, also below a merge of ours
/// (inspection's [`crate::inspect::facts::HostDirReader`]); `None`: it does not exist.
pub fn read_host_dir(root: &Root, class: Class, h: &str) -> io::Result<Option<OwnedFd>> {
    HostDir::open(root, class, h)?.reader()
}

/// that do not exist are left out. Called before anything is mounted.
pub fn check_resolved_overlap(root: &Root, source: &str, list: &[String]) -> Result<(), String> {
    crate::options::check_overlap_by(list, source, false, |h| {
        let fd = root.open_at(h, OFlags::PATH | OFlags::DIRECTORY).ok()?;
        crate::inspect::facts::resolved_in_root(root, &fd).map(|p| p.to_string_lossy().into_owned())
    })
}

/// The mount ID of the mount `fd` is on (`statx` `STATX_MNT_ID`, Linux 5.8+).
pub fn mount_id(fd: BorrowedFd<'_>) -> io::Result<u64> {
    use rustix::fs::{statx, AtFlags, StatxFlags};
    let st = statx(fd, "", AtFlags::EMPTY_PATH, StatxFlags::MNT_ID)?;
    Ok(st.stx_mnt_id)
}

/// Is the mount of `top` mounted on the mount of `parent` (and not on another mount
/// stacked between them)? Asked with `statmount(2)` (Linux 6.8) by unique mount IDs,
/// which renders nothing; else from mountinfo, whose every line the kernel renders
/// (an overlay's line lists all of its layers).
fn mounted_directly_on(top: BorrowedFd<'_>, parent: BorrowedFd<'_>) -> io::Result<bool> {
    if let (Some(t), Some(p)) = (unique_mount_id(top), unique_mount_id(parent)) {
        if let Some(pp) = statmount_parent(t) {
            return Ok(pp == p);
        }
    }
    let (top_id, parent_id) = (mount_id(top)?, mount_id(parent)?);
    Ok(parent_mount_of(top_id)? == Some(parent_id))
}

/// `statx`'s `STATX_MNT_ID_UNIQUE` of `fd`'s mount, where the kernel has it (6.8).
fn unique_mount_id(fd: BorrowedFd<'_>) -> Option<u64> {
    use rustix::fs::{statx, AtFlags, StatxFlags};
    let unique = crate::inspect::discover::STATX_MNT_ID_UNIQUE;
    let st = statx(
        fd,
        "",
        AtFlags::EMPTY_PATH,
        StatxFlags::from_bits_retain(unique),
    )
    .ok()?;
    (st.stx_mask & unique != 0).then_some(st.stx_mnt_id)
}

/// `statmount(2)` (`STATMOUNT_MNT_BASIC`) of the mount with unique ID `id`: its parent's
/// unique ID. `None` where the call is missing (before 6.8) or fails.
#[allow(unsafe_code)]
fn statmount_parent(id: u64) -> Option<u64> {
    /// `__NR_statmount`, the same on every architecture (the unified numbers).
    const SYS_STATMOUNT: libc::c_long = 457;
    const STATMOUNT_MNT_BASIC: u64 = 0x2;
    /// `struct mnt_id_req`, `MNT_ID_REQ_SIZE_VER0`.
    #[repr(C)]
    struct MntIdReq {
        size: u32,
        spare: u32,
        mnt_id: u64,
        param: u64,
    }
    /// The fixed part of `struct statmount` (512 bytes in 6.8: 64 of fields, 50 spare
    /// u64), up to `mnt_parent_id` at offset 48; the kernel writes at most `bufsize`.
    #[repr(C)]
    struct StatMount {
        size: u32,
        mnt_opts: u32,
        mask: u64,
        sb_dev_major: u32,
        sb_dev_minor: u32,
        sb_magic: u64,
        sb_flags: u32,
        fs_type: u32,
        mnt_id: u64,
        mnt_parent_id: u64,
        rest: [u64; 58],
    }
    const _: () = assert!(std::mem::offset_of!(StatMount, mnt_parent_id) == 48);
    const _: () = assert!(std::mem::size_of::<StatMount>() == 520);
    let req = MntIdReq {
        size: std::mem::size_of::<MntIdReq>() as u32,
        spare: 0,
        mnt_id: id,
        param: STATMOUNT_MNT_BASIC,
    };
    let mut buf = std::mem::MaybeUninit::<StatMount>::zeroed();
    // SAFETY: `req` is a valid `struct mnt_id_req` of the size it states; `buf` is a
    // writable, zeroed buffer of `size_of::<StatMount>()` bytes, which is the size
    // passed, and the kernel writes no more than that; both outlive the call.
    let r = unsafe {
        libc::syscall(
            SYS_STATMOUNT,
            &req as *const MntIdReq,
            buf.as_mut_ptr(),
            std::mem::size_of::<StatMount>(),
            0u32,
        )
    };
    if r != 0 {
        return None;
    }
    // SAFETY: zero-initialised plain integers, so any contents are a valid StatMount.
    let sm = unsafe { buf.assume_init() };
    (sm.mask & STATMOUNT_MNT_BASIC != 0 && sm.mnt_id == id).then_some(sm.mnt_parent_id)
}

/// The parent mount ID of mount `id`, from `/proc/thread-self/mountinfo` (this
/// thread's mount namespace, which may differ from the process's after `unshare`).
pub fn parent_mount_of(id: u64) -> io::Result<Option<u64>> {
    let info = read_mountinfo()?;
    Ok(mountinfo_parent(&info, id))
}

/// This thread's `/proc/thread-self/mountinfo`, read into a buffer that starts at
/// 64 KiB (`std::fs::read` starts at 32 bytes for a procfs file, whose size is 0,
/// and needs a read per doubling), in one read loop.
pub fn read_mountinfo() -> io::Result<Vec<u8>> {
    let fd = rustix::fs::open(
        "/proc/thread-self/mountinfo",
        OFlags::RDONLY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let mut buf = vec![0u8; 64 << 10];
    let mut len = 0;
    loop {
        if buf.len() - len < 4096 {
            buf.resize(buf.len() * 2, 0);
        }
        let n = match rustix::io::read(&fd, &mut buf[len..]) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            buf.truncate(len);
            return Ok(buf);
        }
        len += n;
    }
}

/// The file systems mounted below the hierarchy whose root is `top` (directly on the
/// mount `top` is on, or, when `top` is a plain directory, on its parent mount below
/// `top`'s path): each as its path relative to the hierarchy and a detached recursive
/// clone. Cloned before the merge covers them, attached on the new overlay after, so
/// `/usr/local` on its own file system stays visible, as systemd's `move_submounts`.
/// `skip` names a top-level directory whose mounts are left out (our metadata bind).
/// `mountinfo` is this thread's `/proc/thread-self/mountinfo`, read once per run, as
/// bytes: mount points need not be UTF-8 (a text read of it fails on such a mount
/// anywhere in the namespace).
pub fn clone_submounts(
    top: BorrowedFd<'_>,
    skip: &str,
    mountinfo: &(impl AsRef<[u8]> + ?Sized),
) -> io::Result<Vec<(PathBuf, OwnedFd)>> {
    let top_path = std::fs::read_link(crate::inspect::fsutil::fd_path(top))?;
    let id = mount_id(top)?;
    let mut out = Vec::new();
    for (rel, point) in submounts_below(mountinfo.as_ref(), id, &top_path, skip) {
        let fd = fsutil::open_in(
            top,
            &rel,
            OFlags::PATH | OFlags::DIRECTORY,
            ResolveFlags::NO_SYMLINKS,
        )?;
        let clone = crate::sys::mount::clone_tree_recursive(fd.as_fd(), &point.to_string_lossy())
            .map_err(|e| e.source)?;
        out.push((rel, clone));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_read_whole() {
        // Both read this thread's table; nothing here mounts in between.
        let ours = read_mountinfo().unwrap();
        let std = std::fs::read("/proc/thread-self/mountinfo").unwrap();
        assert_eq!(ours, std);
        assert!(ours.ends_with(b"\n"));
    }
}
