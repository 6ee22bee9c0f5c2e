//! The private mount namespace every root-only test runs in (shared by the merge, image
//! and hostile test crates): nothing a test mounts is visible to the host or to other
//! tests, and `/run` is a fresh tmpfs so extmerge's workspace starts empty.
#![allow(dead_code)]

/// Propagation of `/` inside the test's namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prop {
    /// `/` recursively shared (in new peer groups private to the namespace), as on a
    /// host booted by systemd.
    Shared,
    /// `/` recursively private (as in many containers and on this build machine).
    Private,
}

/// Errors as text for `SKIP` messages.
fn errno_text(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// `mount(2)` with C strings; `-errno` as text on failure.
fn mount(
    src: &std::ffi::CStr,
    target: &std::ffi::CStr,
    fstype: Option<&std::ffi::CStr>,
    flags: libc::c_ulong,
    data: Option<&std::ffi::CStr>,
    what: &str,
) -> Result<(), String> {
    let fstype = fstype.map_or(std::ptr::null(), |s| s.as_ptr());
    let data = data.map_or(std::ptr::null(), |s| s.as_ptr().cast());
    // SAFETY: every pointer is NULL or a NUL-terminated string that outlives the call;
    // mount(2) only reads them.
    if unsafe { libc::mount(src.as_ptr(), target.as_ptr(), fstype, flags, data) } != 0 {
        return Err(errno_text(what));
    }
    Ok(())
}

/// Unshares the calling thread's mount namespace, cuts it off from the host's peer
/// groups (`MS_REC|MS_PRIVATE` on `/`), makes `/` recursively shared again when asked
/// (new peer groups, private to this namespace) and mounts a fresh tmpfs on `/run`.
///
/// Only the calling thread (and the processes it spawns) see the result.
pub fn enter_private_ns(prop: Prop) -> Result<(), String> {
    // SAFETY: unshare(2) takes only flags; CLONE_NEWNS affects this thread alone.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(errno_text("unshare(CLONE_NEWNS)"));
    }
    // First private: if the host's / is shared, MS_SHARED alone would keep our mounts
    // in the host's peer groups and they would propagate out of the namespace.
    let rec_private = libc::MS_REC | libc::MS_PRIVATE;
    mount(
        c"none",
        c"/",
        None,
        rec_private,
        None,
        "mount --make-rprivate /",
    )?;
    if prop == Prop::Shared {
        let rec_shared = libc::MS_REC | libc::MS_SHARED;
        mount(
            c"none",
            c"/",
            None,
            rec_shared,
            None,
            "mount --make-rshared /",
        )?;
    }
    let flags = libc::MS_NOSUID | libc::MS_NODEV;
    let (tmpfs, opts) = (c"tmpfs", c"mode=0755");
    mount(
        tmpfs,
        c"/run",
        Some(tmpfs),
        flags,
        Some(opts),
        "mount tmpfs /run",
    )
}

/// True when running as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid takes no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
