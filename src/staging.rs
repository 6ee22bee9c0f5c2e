//! A private tmpfs under [`WORKSPACE`] for one run.
//!
//! Linux 6.1's overlayfs takes layers only from mounts in the caller's namespace, so the
//! metadata layers, ephemeral upper dirs and image mounts of a run are attached here
//! while the overlays are built. Dropping the area detaches it; the overlays keep
//! private clones of what they use. Entries are named `<label>.<pid>.<n>`, so a run that
//! died can be recognised and its area removed (see `merge::lock`).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::fs::{AtFlags, Mode, OFlags};

use crate::mount::{self, MountError};

/// The host directory below which runs stage their mounts (not under `--root`, as
/// systemd's `/run/systemd/sysext`).
pub const WORKSPACE: &str = "/run/extmerge";

static SEQ: AtomicU32 = AtomicU32::new(0);

/// `mkdirat(dir, name, mode)` (an existing directory is fine), then open it without
/// following symlinks and set `mode` exactly (mkdir's mode is masked by the umask).
pub fn mkdir_open(dir: BorrowedFd<'_>, name: &str, mode: u32) -> io::Result<OwnedFd> {
    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(mode)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
    Ok(fd)
}

/// Creates [`WORKSPACE`] (0700) if needed and opens it.
pub fn open_workspace() -> io::Result<OwnedFd> {
    match rustix::fs::mkdir(WORKSPACE, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(rustix::fs::open(
        WORKSPACE,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// A tmpfs attached at `/run/extmerge/<label>.<pid>.<n>`, private.
#[derive(Debug)]
pub struct StagingArea {
    mnt: OwnedFd,
    parent: OwnedFd,
    name: String,
}

impl StagingArea {
    /// Mounts a fresh tmpfs (source `source`) at a new directory named after `label`;
    /// on failure nothing is left behind.
    pub fn create(label: &str, source: &str) -> Result<StagingArea, MountError> {
        let parent = open_workspace().map_err(|e| MountError::new("mkdir", WORKSPACE, e))?;
        let name = format!(
            "{label}.{}.{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let path = Path::new(WORKSPACE).join(&name).display().to_string();
        let dir = mkdir_open(parent.as_fd(), &name, 0o700)
            .map_err(|e| MountError::new("mkdir", path.clone(), e))?;
        let rmdir = || {
            let _ = rustix::fs::unlinkat(&parent, name.as_str(), AtFlags::REMOVEDIR);
        };
        let mnt = match mount::tmpfs_detached(source, "0755") {
            Ok(m) => m,
            Err(e) => {
                rmdir();
                return Err(e);
            }
        };
        if let Err(e) = mount::attach(mnt.as_fd(), dir.as_fd(), false, &path) {
            rmdir();
            return Err(e);
        }
        // Attached below a shared /run it became shared: keep what we mount below it
        // from propagating anywhere.
        if let Err(e) = mount::make_private(mnt.as_fd(), &path) {
            let _ = mount::detach(mnt.as_fd(), &path);
            rmdir();
            return Err(e);
        }
        Ok(StagingArea { mnt, parent, name })
    }

    /// The tmpfs' root.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.mnt.as_fd()
    }

    /// Its directory name below [`WORKSPACE`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its host path.
    pub fn path(&self) -> PathBuf {
        Path::new(WORKSPACE).join(&self.name)
    }
}

impl Drop for StagingArea {
    fn drop(&mut self) {
        if let Err(e) = mount::detach(self.mnt.as_fd(), &self.path().display().to_string()) {
            crate::log::warn(&format!("{e}"));
        }
        let _ = rustix::fs::unlinkat(&self.parent, self.name.as_str(), AtFlags::REMOVEDIR);
    }
}
