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
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::inspect::fsutil::file_type_name;
use crate::log::errno_text;
use crate::sys::mount::{self, MountError};

/// The host directory below which runs stage their mounts (not under `--root`, as
/// systemd's `/run/systemd/sysext`).
pub const WORKSPACE: &str = "/run/extmerge";

static SEQ: AtomicU32 = AtomicU32::new(0);

/// `mkdirat(dir, name, mode)`; an existing directory is fine. Its mode is masked by the
/// umask: for a directory that a mount will cover (its own mode then shows nowhere);
/// else [`mkdir_open`].
pub fn mkdir(dir: BorrowedFd<'_>, name: &str, mode: u32) -> io::Result<()> {
    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(mode)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `mkdirat(dir, name, mode)` (an existing directory is fine), then open it without
/// following symlinks and set `mode` exactly (mkdir's mode is masked by the umask).
pub fn mkdir_open(dir: BorrowedFd<'_>, name: &str, mode: u32) -> io::Result<OwnedFd> {
    mkdir(dir, name, mode)?;
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
    Ok(fd)
}

/// The runtime directory, or something in it, cannot be used safely: a symlink, not a
/// directory (or not a regular file), owned by someone other than root, or writable by
/// group or others. Nothing was created through it.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", crate::format::escape::esc(.path))]
pub struct RuntimeDirError {
    /// The host path.
    pub path: PathBuf,
    /// Why, in words.
    pub reason: String,
    /// errno for the C ABI and exit codes.
    pub errno: i32,
}

impl RuntimeDirError {
    fn new(path: &Path, reason: impl Into<String>, errno: i32) -> RuntimeDirError {
        RuntimeDirError {
            path: path.to_path_buf(),
            reason: reason.into(),
            errno,
        }
    }

    /// An open or create of `name` in `dir` (host path `path`), which ought to be a
    /// `want`, failed with `e`: says what is there instead when that is the reason (a
    /// symlink, not a directory).
    fn open_failed(
        dir: BorrowedFd<'_>,
        name: &str,
        path: &Path,
        want: FileType,
        e: Errno,
    ) -> RuntimeDirError {
        if matches!(e, Errno::LOOP | Errno::NOTDIR | Errno::EXIST | Errno::ISDIR) {
            if let Ok(st) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                let ft = FileType::from_raw_mode(st.st_mode);
                if ft == FileType::Symlink {
                    let to = rustix::fs::readlinkat(dir, name, Vec::new())
                        .map(|t| format!(" (to {:?})", t.to_string_lossy()))
                        .unwrap_or_default();
                    return RuntimeDirError::new(
                        path,
                        format!("is a symlink{to}: refusing to follow it"),
                        libc::ELOOP,
                    );
                }
                if ft != want {
                    return RuntimeDirError::new(
                        path,
                        format!(
                            "is a {}, not a {}",
                            file_type_name(ft),
                            file_type_name(want)
                        ),
                        e.raw_os_error(),
                    );
                }
            }
        }
        RuntimeDirError::new(path, errno_text(e), e.raw_os_error())
    }
}

/// Refuses `fd` (host path `path`) unless it is of type `want`, owned by root and not
/// writable by group or others: only root may have put anything there.
fn check_private(fd: BorrowedFd<'_>, path: &Path, want: FileType) -> Result<(), RuntimeDirError> {
    let st = rustix::fs::fstat(fd)
        .map_err(|e| RuntimeDirError::new(path, errno_text(e), e.raw_os_error()))?;
    let ft = FileType::from_raw_mode(st.st_mode);
    if ft != want {
        return Err(RuntimeDirError::new(
            path,
            format!(
                "is a {}, not a {}",
                file_type_name(ft),
                file_type_name(want)
            ),
            if want == FileType::Directory {
                libc::ENOTDIR
            } else {
                libc::EBADFD
            },
        ));
    }
    if st.st_uid != 0 {
        return Err(RuntimeDirError::new(
            path,
            format!(
                "owned by uid {}, not by root: refusing to use it",
                st.st_uid
            ),
            libc::EPERM,
        ));
    }
    if st.st_mode & 0o022 != 0 {
        return Err(RuntimeDirError::new(
            path,
            format!(
                "writable by group or others (mode {:04o}): refusing to use it",
                st.st_mode & 0o7777
            ),
            libc::EPERM,
        ));
    }
    Ok(())
}

/// `mkdirat(dir, name, 0700)` (an existing directory is fine), then opens it without
/// following a symlink and requires a directory owned by root that group and others
/// cannot write ([`RuntimeDirError`] otherwise). `path` is its host path, for messages.
pub fn open_private_dir(
    dir: BorrowedFd<'_>,
    name: &str,
    path: &Path,
) -> Result<OwnedFd, RuntimeDirError> {
    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => {
            return Err(RuntimeDirError::open_failed(
                dir,
                name,
                path,
                FileType::Directory,
                e,
            ))
        }
    }
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| RuntimeDirError::open_failed(dir, name, path, FileType::Directory, e))?;
    check_private(fd.as_fd(), path, FileType::Directory)?;
    Ok(fd)
}

/// Creates [`WORKSPACE`] (0700) if needed and opens it, one component at a time from
/// `/` and never following a symlink ([`open_private_dir`]): a `/run/extmerge` planted
/// as a symlink, or one that someone other than root could have written to, is refused
/// before anything is created in it.
pub fn open_workspace() -> Result<OwnedFd, RuntimeDirError> {
    let ws = Path::new(WORKSPACE);
    let mut dir = rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| RuntimeDirError::new(Path::new("/"), errno_text(e), e.raw_os_error()))?;
    let mut at = PathBuf::from("/");
    let names: Vec<&str> = WORKSPACE.split('/').filter(|c| !c.is_empty()).collect();
    for (i, name) in names.iter().enumerate() {
        at.push(name);
        dir = if i + 1 == names.len() {
            open_private_dir(dir.as_fd(), name, ws)?
        } else {
            // `/run` itself: a directory, not followed if it is a symlink.
            rustix::fs::openat(
                dir.as_fd(),
                *name,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| {
                RuntimeDirError::open_failed(dir.as_fd(), name, &at, FileType::Directory, e)
            })?
        };
    }
    Ok(dir)
}

/// Opens (creating it 0600 if needed) the regular file `name` in the workspace `ws`
/// without following a symlink, and requires it to be a regular file owned by root that
/// group and others cannot write.
pub fn open_workspace_file(ws: BorrowedFd<'_>, name: &str) -> Result<OwnedFd, RuntimeDirError> {
    let path = Path::new(WORKSPACE).join(name);
    let open = |rw: OFlags| {
        rustix::fs::openat(
            ws,
            name,
            rw | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
    };
    // A read-only /run (a service's namespace with ProtectSystem=strict): a file made
    // from outside is still there to lock (flock needs no write access).
    let fd = match open(OFlags::RDWR | OFlags::CREATE) {
        Err(Errno::ROFS) => open(OFlags::RDONLY).map_err(|_| Errno::ROFS),
        r => r,
    }
    .map_err(|e| RuntimeDirError::open_failed(ws, name, &path, FileType::RegularFile, e))?;
    check_private(fd.as_fd(), &path, FileType::RegularFile)?;
    Ok(fd)
}

/// Creates the empty file `name` in the workspace (if missing) as
/// [`open_workspace_file`] does: through no symlink, in a directory only root writes.
pub fn touch_workspace_file(name: &str) -> Result<(), RuntimeDirError> {
    let ws = open_workspace()?;
    open_workspace_file(ws.as_fd(), name).map(drop)
}

/// Replaces the file `name` in the workspace with `data` atomically: written to a new
/// temporary file there (`O_CREAT|O_EXCL|O_NOFOLLOW`, 0644: never through a planted
/// symlink or an existing file), then renamed over `name` (a rename replaces a symlink
/// itself, never its target). Readers see the old file or the whole new one.
pub fn replace_workspace_file(name: &str, data: &[u8]) -> Result<(), RuntimeDirError> {
    let ws = open_workspace()?;
    let tmp = format!(".{name}.{}.tmp", std::process::id());
    let path = Path::new(WORKSPACE).join(&tmp);
    let err = |e: Errno| RuntimeDirError::new(&path, errno_text(e), e.raw_os_error());
    let _ = rustix::fs::unlinkat(&ws, tmp.as_str(), AtFlags::empty());
    let fd = rustix::fs::openat(
        &ws,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .map_err(err)?;
    let written = rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o644))
        .and_then(|()| {
            let mut rest = data;
            while !rest.is_empty() {
                match rustix::io::write(&fd, rest)? {
                    0 => return Err(Errno::IO),
                    n => rest = &rest[n..],
                }
            }
            Ok(())
        })
        .and_then(|()| rustix::fs::renameat(&ws, tmp.as_str(), &ws, name));
    if let Err(e) = written {
        let _ = rustix::fs::unlinkat(&ws, tmp.as_str(), AtFlags::empty());
        return Err(err(e));
    }
    Ok(())
}

/// A tmpfs attached at `/run/extmerge/<label>.<pid>.<n>`, private.
#[derive(Debug)]
pub struct StagingArea {
    mnt: Arc<OwnedFd>,
    parent: OwnedFd,
    name: String,
}

impl StagingArea {
    /// Mounts a fresh tmpfs (source `source`) at a new directory named after `label`;
    /// on failure nothing is left behind.
    pub fn create(label: &str, source: &str) -> Result<StagingArea, MountError> {
        let refused = |e: RuntimeDirError| {
            let source = io::Error::new(io::ErrorKind::PermissionDenied, e.reason);
            MountError::new("open", e.path.display().to_string(), source)
        };
        let parent = open_workspace().map_err(refused)?;
        let name = format!(
            "{label}.{}.{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let path = Path::new(WORKSPACE).join(&name).display().to_string();
        let dir = open_private_dir(parent.as_fd(), &name, Path::new(&path)).map_err(refused)?;
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
        Ok(StagingArea {
            mnt: Arc::new(mnt),
            parent,
            name,
        })
    }

    /// The tmpfs' root.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.mnt.as_fd()
    }

    /// The tmpfs' root, shared (for undo steps that outlive a borrow; no `dup`).
    pub fn shared_fd(&self) -> Arc<OwnedFd> {
        self.mnt.clone()
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
