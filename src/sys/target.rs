//! Working on another process's mount namespace (`--pid=PID`, a service's own `/etc`).
//!
//! Why a thread that joins the namespace rather than building in ours and moving the
//! result across: the kernel lets `move_mount`, `umount2`, `open_tree(OPEN_TREE_CLONE)`
//! and `mount_setattr` touch a mount only from inside its namespace (`check_mnt()`), and
//! on 6.1 overlayfs also refuses layers that are not in the namespace it is mounted from
//! (`clone_private_mount()`). So a helper thread unshares its file system context
//! (`unshare(CLONE_FS)`; `setns(CLONE_NEWNS)` refuses a thread that shares it), joins the
//! target's mount namespace and chroots into the target's root; the whole verb then
//! runs there, exactly as on a host, while the caller's threads keep their namespace
//! and root. The namespace and root are taken from a pidfd opened first and checked
//! after, so a PID reused in between is noticed, not followed.

#![allow(unsafe_code)]

use std::cell::Cell;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::rc::Rc;

use rustix::fs::{Mode, OFlags};
use rustix::process::{Pid, PidfdFlags};
use rustix::thread::UnshareFlags;

use crate::log::Level;

thread_local! {
    /// Whether this thread's namespace is one of its own ([`run_private`]).
    static PRIVATE: Cell<bool> = const { Cell::new(false) };
}

/// Whether the current thread works in a namespace nobody else can enter.
pub fn in_private_namespace() -> bool {
    PRIVATE.with(|p| p.get())
}

/// The lock file's name for the current thread's mount namespace: `lock` for the init
/// process's namespace, `lock.mnt-INODE` for any other, so two services refresh at the
/// same time and one namespace always has one lock, whichever way it is reached.
pub fn lock_name() -> String {
    let ino = |p: &str| rustix::fs::stat(p).ok().map(|s| s.st_ino);
    // In a container PID 1's namespace may not be readable: then the process's own
    // (its main thread's) stands for it.
    let home = ino("/proc/1/ns/mnt").or_else(|| ino("/proc/self/ns/mnt"));
    match (ino("/proc/thread-self/ns/mnt"), home) {
        (Some(cur), Some(home)) if cur != home => namespace_lock(cur),
        _ => "lock".to_string(),
    }
}

/// The lock file of the mount namespace with inode `ino` (not the init process's).
fn namespace_lock(ino: u64) -> String {
    format!("lock.mnt-{ino}")
}

/// Why a target process cannot be worked on.
#[derive(Debug, thiserror::Error)]
#[error("process {pid}: {what}: {}", crate::log::os_text(.source))]
pub struct TargetError {
    /// The target.
    pub pid: i32,
    /// The step (`open`, `setns`, `chroot`…).
    pub what: String,
    /// The kernel's reason.
    pub source: io::Error,
}

impl TargetError {
    pub(crate) fn new(pid: i32, what: impl Into<String>, source: impl Into<io::Error>) -> Self {
        TargetError {
            pid,
            what: what.into(),
            source: source.into(),
        }
    }

    /// errno for the C ABI and exit codes.
    pub fn errno(&self) -> i32 {
        self.source.raw_os_error().unwrap_or(libc::EIO)
    }
}

/// Another process's mount namespace and root, held open.
#[derive(Debug)]
pub struct Target {
    pid: i32,
    pidfd: OwnedFd,
    mntns: OwnedFd,
    root: OwnedFd,
    same_namespace: bool,
}

impl Target {
    /// Opens process `pid`'s mount namespace and root. `Ok(None)` when the process
    /// shares the caller's mount namespace and root (then `--pid` means the caller's own,
    /// as without it).
    pub fn open(pid: i32) -> Result<Option<Target>, TargetError> {
        let p = Pid::from_raw(pid).filter(|_| pid > 0).ok_or_else(|| {
            TargetError::new(
                pid,
                "invalid PID",
                io::Error::from_raw_os_error(libc::ESRCH),
            )
        })?;
        let pidfd = rustix::process::pidfd_open(p, PidfdFlags::empty())
            .map_err(|e| TargetError::new(pid, "pidfd_open", e))?;
        let open = |name: &str, flags: OFlags| {
            rustix::fs::open(
                format!("/proc/{pid}/{name}").as_str(),
                flags | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| TargetError::new(pid, format!("open /proc/{pid}/{name}"), e))
        };
        let mntns = open("ns/mnt", OFlags::RDONLY)?;
        let root = open("root", OFlags::PATH | OFlags::DIRECTORY)?;
        // The pidfd was opened before the /proc files: if the process it names is still
        // alive, they are its files and not those of a process that reused the PID.
        alive(&pidfd).map_err(|e| TargetError::new(pid, "exited", e))?;
        let ino = |fd: &OwnedFd| {
            rustix::fs::fstat(fd)
                .map(|s| (s.st_dev, s.st_ino))
                .map_err(|e| TargetError::new(pid, "fstat", e))
        };
        let own_ns = rustix::fs::stat("/proc/thread-self/ns/mnt")
            .map(|s| (s.st_dev, s.st_ino))
            .map_err(|e| TargetError::new(pid, "stat /proc/thread-self/ns/mnt", e))?;
        let own_root = rustix::fs::stat("/")
            .map(|s| (s.st_dev, s.st_ino))
            .map_err(|e| TargetError::new(pid, "stat /", e))?;
        let (ns, r) = (ino(&mntns)?, ino(&root)?);
        if ns == own_ns && r == own_root {
            return Ok(None);
        }
        Ok(Some(Target {
            pid,
            pidfd,
            mntns,
            root,
            same_namespace: ns == own_ns,
        }))
    }

    /// Whether the target is in the caller's mount namespace (with a root of its own).
    pub fn same_namespace(&self) -> bool {
        self.same_namespace
    }

    /// The name of the lock file [`lock_name`] gives inside the target's namespace, so
    /// the caller can make it where the target cannot (a read-only `/run` shared with
    /// the caller's).
    pub fn lock_name(&self) -> Result<String, TargetError> {
        rustix::fs::fstat(&self.mntns)
            .map(|s| namespace_lock(s.st_ino))
            .map_err(|e| TargetError::new(self.pid, "fstat(mount namespace)", e))
    }

    /// Runs `f` in a thread inside the target's mount namespace, with the target's root
    /// as its `/`. Its messages reach the caller's log sink on the caller's thread, in
    /// order, while it runs (a C caller's callback is called on the thread that called
    /// the library). A panic in `f` is passed on to the caller.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R, TargetError> {
        in_helper_thread(|| self.enter(), f).and_then(|r| {
            // Its namespace went with it (and everything just mounted there): say so
            // rather than report a merge nobody can see.
            alive(&self.pidfd)
                .map(|()| r)
                .map_err(|e| TargetError::new(self.pid, "exited during the operation", e))
        })
    }

    /// Joins the namespace and the root (this thread only).
    fn enter(&self) -> Result<(), TargetError> {
        let pid = self.pid;
        // SAFETY: CLONE_FS only gives this thread its own root, cwd and umask; no file
        // descriptor table is unshared, so every fd stays valid for every thread.
        unsafe { rustix::thread::unshare_unsafe(UnshareFlags::FS) }
            .map_err(|e| TargetError::new(pid, "unshare(CLONE_FS)", e))?;
        rustix::thread::move_into_link_name_space(
            self.mntns.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Mount),
        )
        .map_err(|e| TargetError::new(pid, "setns(mount namespace)", e))?;
        rustix::process::fchdir(&self.root)
            .map_err(|e| TargetError::new(pid, "fchdir(root)", e))?;
        rustix::process::chroot(".").map_err(|e| TargetError::new(pid, "chroot(root)", e))?;
        rustix::process::chdir("/").map_err(|e| TargetError::new(pid, "chdir(/)", e))?;
        Ok(())
    }
}

/// Runs `f` in a helper thread that first runs `enter` (which moves it into another
/// mount namespace), forwarding its messages to the
/// caller's log sink on the caller's thread, in order, while it runs (a C caller's
/// callback is called on the thread that called the library). A panic in `f` is passed
/// on to the caller.
fn in_helper_thread<R: Send>(
    enter: impl FnOnce() -> Result<(), TargetError> + Send,
    f: impl FnOnce() -> R + Send,
) -> Result<R, TargetError> {
    let level = crate::log::level();
    let (tx, rx) = std::sync::mpsc::channel::<(Level, String)>();
    std::thread::scope(|s| {
        let h = s.spawn(move || -> Result<R, TargetError> {
            let sink: crate::log::Sink = Rc::new(move |l, m: &str| {
                let _ = tx.send((l, m.to_string()));
            });
            crate::log::scoped(Some(sink), level, || {
                enter()?;
                Ok(f())
            })
        });
        // Ends when the thread has dropped its sender, i.e. has finished.
        for (l, m) in rx {
            crate::log::log(l, &m);
        }
        match h.join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        }
    })
}

/// Runs `f` in a helper thread with a new, private mount namespace of its own (a copy
/// of the caller's, receiving nothing from it and sending nothing back): what `f`
/// mounts exists only there, and goes away with the thread unless `f` hands out a
/// detached copy (`open_tree(OPEN_TREE_CLONE)`), which the caller can attach in its own
/// namespace (`--export`).
pub fn run_private<R: Send>(f: impl FnOnce() -> R + Send) -> Result<R, TargetError> {
    let pid = std::process::id() as i32;
    in_helper_thread(
        || {
            // SAFETY: as in `Target::enter`; CLONE_NEWNS gives this thread (which no
            // longer shares its file-system context) a namespace of its own.
            unsafe { rustix::thread::unshare_unsafe(UnshareFlags::FS | UnshareFlags::NEWNS) }
                .map_err(|e| TargetError::new(pid, "unshare(CLONE_NEWNS)", e))?;
            rustix::mount::mount_change(
                "/",
                rustix::mount::MountPropagationFlags::PRIVATE
                    | rustix::mount::MountPropagationFlags::REC,
            )
            .map_err(|e| TargetError::new(pid, "make / private", e))?;
            PRIVATE.with(|p| p.set(true));
            Ok(())
        },
        f,
    )
}

/// `pidfd_send_signal(pidfd, 0)`: whether the process is still there (rustix has no
/// signal 0).
fn alive(pidfd: &OwnedFd) -> io::Result<()> {
    // SAFETY: a plain syscall on an fd we own; signal 0 sends nothing, info is NULL.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
