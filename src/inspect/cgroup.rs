//! Finding a unit's processes (`--unit=NAME` without `--pid`): systemd puts every unit's
//! processes in a cgroup named after the unit (`…/system.slice/NAME`), and they all
//! share the unit's mount namespace, so any one of them is the target.
//!
//! The unified hierarchy is searched where systemd mounts it: `/sys/fs/cgroup`
//! (unified layout), `/sys/fs/cgroup/unified` (hybrid), `/sys/fs/cgroup/systemd`
//! (legacy); only a directory that is a cgroup file system is read.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{FileType, Mode, OFlags};

use crate::format::escape::esc;

/// `CGROUP2_SUPER_MAGIC`, `CGROUP_SUPER_MAGIC`.
const CGROUP_MAGICS: [i64; 2] = [0x6367_7270, 0x0027_e0eb];

/// Where the cgroup hierarchies are looked for, in order.
pub const CGROUP_ROOTS: [&str; 3] = [
    "/sys/fs/cgroup",
    "/sys/fs/cgroup/unified",
    "/sys/fs/cgroup/systemd",
];

/// How deep below a cgroup root a unit is looked for (`user.slice/user-1000.slice/
/// user@1000.service/app.slice/NAME` is 5).
const MAX_DEPTH: usize = 6;

/// Why no process of a unit was found.
#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    /// No cgroup of that name.
    #[error("unit {unit}: not running (no cgroup {unit} below {roots})", unit = esc(.unit), roots = CGROUP_ROOTS.join(", "))]
    NotRunning {
        /// The unit.
        unit: String,
    },
    /// Its cgroup holds no process.
    #[error("unit {}: no running process in {}", esc(.unit), esc(.cgroup))]
    NoProcess {
        /// The unit.
        unit: String,
        /// Its cgroup directory.
        cgroup: String,
    },
    /// Reading the cgroup tree failed.
    #[error("{}: {}", esc(.path), crate::log::os_text(.source))]
    Io {
        /// What was read.
        path: String,
        /// Why.
        source: io::Error,
    },
}

impl UnitError {
    /// errno for the C ABI and exit codes.
    pub fn errno(&self) -> i32 {
        match self {
            UnitError::NotRunning { .. } | UnitError::NoProcess { .. } => libc::ESRCH,
            UnitError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
        }
    }
}

/// A process of `unit` (a name checked by [`crate::format::unit::check_unit_name`]): the
/// first PID of its cgroup, or of a sub-cgroup (a unit with `Delegate=`).
pub fn unit_process(unit: &str) -> Result<i32, UnitError> {
    for root in CGROUP_ROOTS {
        let Ok(fd) = rustix::fs::open(
            root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            continue;
        };
        // `f_type` is i64 with glibc, an unsigned long with musl.
        #[allow(clippy::unnecessary_cast)]
        let is_cgroup = rustix::fs::fstatfs(&fd)
            .map(|s| CGROUP_MAGICS.contains(&(s.f_type as i64)))
            .unwrap_or(false);
        if !is_cgroup {
            continue;
        }
        if let Some((dir, path)) = find_dir(fd, root.to_string(), unit)? {
            return match first_pid(dir.as_fd(), &path, 0)? {
                Some(pid) => Ok(pid),
                None => Err(UnitError::NoProcess {
                    unit: unit.to_string(),
                    cgroup: path,
                }),
            };
        }
    }
    Err(UnitError::NotRunning {
        unit: unit.to_string(),
    })
}

fn subdirs(dir: BorrowedFd<'_>, path: &str) -> Result<Vec<String>, UnitError> {
    let io = |source: io::Error| UnitError::Io {
        path: path.to_string(),
        source,
    };
    let fd = rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io(e.into()))?;
    let mut out = Vec::new();
    for e in rustix::fs::Dir::read_from(&fd).map_err(|e| io(e.into()))? {
        let e = e.map_err(|e| io(e.into()))?;
        let Ok(name) = e.file_name().to_str() else {
            continue;
        };
        if name != "." && name != ".." && e.file_type() == FileType::Directory {
            out.push(name.to_string());
        }
    }
    out.sort();
    Ok(out)
}

fn open_sub(dir: BorrowedFd<'_>, name: &str) -> Option<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()
}

/// The cgroup directory named `unit`, breadth first.
fn find_dir(
    dir: OwnedFd,
    path: String,
    unit: &str,
) -> Result<Option<(OwnedFd, String)>, UnitError> {
    let mut level = vec![(dir, path)];
    for _ in 0..MAX_DEPTH {
        let mut next = Vec::new();
        for (fd, path) in level {
            for name in subdirs(fd.as_fd(), &path)? {
                let Some(sub) = open_sub(fd.as_fd(), &name) else {
                    continue;
                };
                let p = format!("{path}/{name}");
                if name == unit {
                    return Ok(Some((sub, p)));
                }
                next.push((sub, p));
            }
        }
        level = next;
    }
    Ok(None)
}

/// The first PID in `cgroup.procs` of `dir`, else of its sub-cgroups.
fn first_pid(dir: BorrowedFd<'_>, path: &str, depth: usize) -> Result<Option<i32>, UnitError> {
    let procs = format!("{path}/cgroup.procs");
    let fd = rustix::fs::openat(
        dir,
        "cgroup.procs",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| UnitError::Io {
        path: procs.clone(),
        source: e.into(),
    })?;
    let mut text = String::new();
    std::fs::File::from(fd)
        .take(1 << 20)
        .read_to_string(&mut text)
        .map_err(|source| UnitError::Io {
            path: procs,
            source,
        })?;
    if let Some(pid) = text.lines().find_map(|l| l.trim().parse::<i32>().ok()) {
        return Ok(Some(pid));
    }
    if depth >= MAX_DEPTH {
        return Ok(None);
    }
    for name in subdirs(dir, path)? {
        if let Some(sub) = open_sub(dir, &name) {
            if let Some(pid) = first_pid(sub.as_fd(), &format!("{path}/{name}"), depth + 1)? {
                return Ok(Some(pid));
            }
        }
    }
    Ok(None)
}
