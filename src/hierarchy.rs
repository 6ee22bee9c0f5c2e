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
use std::path::Path;

use rustix::fs::{OFlags, ResolveFlags};

use crate::class::Class;
use crate::fsutil::{self, Root};
use crate::metadata;

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
        let (top_id, parent_id) = (mount_id(fd.as_fd())?, mount_id(parent.as_fd())?);
        if parent_mount_of(top_id)? != Some(parent_id) {
            return Ok(HostDir::StackedOnMount);
        }
        let parent_clone = crate::mount::clone_tree(parent.as_fd(), h).map_err(|e| e.source)?;
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
/// that do not exist are left out. Called before anything is mounted.
pub fn check_resolved_overlap(root: &Root, source: &str, list: &[String]) -> Result<(), String> {
    crate::options::check_overlap_by(list, source, false, |h| {
        let fd = root.open_at(h, OFlags::PATH | OFlags::DIRECTORY).ok()?;
        crate::plan::resolved_in_root(root, &fd).map(|p| p.to_string_lossy().into_owned())
    })
}

/// The mount ID of the mount `fd` is on (`statx` `STATX_MNT_ID`, Linux 5.8+).
pub fn mount_id(fd: BorrowedFd<'_>) -> io::Result<u64> {
    use rustix::fs::{statx, AtFlags, StatxFlags};
    let st = statx(fd, "", AtFlags::EMPTY_PATH, StatxFlags::MNT_ID)?;
    Ok(st.stx_mnt_id)
}

/// The parent mount ID of mount `id`, from `/proc/thread-self/mountinfo` (this
/// thread's mount namespace, which may differ from the process's after `unshare`).
pub fn parent_mount_of(id: u64) -> io::Result<Option<u64>> {
    let info = std::fs::read_to_string("/proc/thread-self/mountinfo")?;
    Ok(info.lines().find_map(|l| {
        let mut f = l.split(' ');
        let me: u64 = f.next()?.parse().ok()?;
        let parent: u64 = f.next()?.parse().ok()?;
        (me == id).then_some(parent)
    }))
}

/// Mount point paths in `/proc/…/mountinfo` escape space, tab, newline and `\` as
/// octal (`\040`).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The file systems mounted below the hierarchy whose root is `top` (directly on the
/// mount `top` is on, or, when `top` is a plain directory, on its parent mount below
/// `top`'s path): each as its path relative to the hierarchy and a detached recursive
/// clone. Cloned before the merge covers them, attached on the new overlay after, so
/// `/usr/local` on its own file system stays visible, as systemd's `move_submounts`.
/// `skip` names a top-level directory whose mounts are left out (our metadata bind).
/// `mountinfo` is this thread's `/proc/thread-self/mountinfo`, read once per run.
pub fn clone_submounts(
    top: BorrowedFd<'_>,
    skip: &str,
    mountinfo: &str,
) -> io::Result<Vec<(std::path::PathBuf, OwnedFd)>> {
    let top_path = std::fs::read_link(crate::mount::fd_path(top))?;
    let id = mount_id(top)?;
    let info = mountinfo;
    let mut out: Vec<(std::path::PathBuf, OwnedFd)> = Vec::new();
    for l in info.lines() {
        let f: Vec<&str> = l.splitn(6, ' ').collect();
        if f.len() < 5 || f[1].parse::<u64>().ok() != Some(id) {
            continue;
        }
        let point = std::path::PathBuf::from(unescape_mountinfo(f[4]));
        let Ok(rel) = point.strip_prefix(&top_path) else {
            continue;
        };
        if rel.as_os_str().is_empty() || rel.starts_with(skip) {
            continue; // the hierarchy itself (e.g. our overlay on it), our metadata bind
        }
        // Nested mounts come with their parent's recursive clone.
        if out.iter().any(|(p, _)| rel.starts_with(p)) {
            continue;
        }
        let fd = fsutil::open_in(
            top,
            rel,
            OFlags::PATH | OFlags::DIRECTORY,
            ResolveFlags::NO_SYMLINKS,
        )?;
        let clone = crate::mount::clone_tree_recursive(fd.as_fd(), &point.to_string_lossy())
            .map_err(|e| e.source)?;
        out.push((rel.to_path_buf(), clone));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn mountinfo_escapes() {
        assert_eq!(
            super::unescape_mountinfo(r"/a\040b\011c\134d"),
            "/a b\tc\\d"
        );
        assert_eq!(super::unescape_mountinfo(r"/plain"), "/plain");
        assert_eq!(super::unescape_mountinfo(r"/x\04"), r"/x\04");
    }
}
