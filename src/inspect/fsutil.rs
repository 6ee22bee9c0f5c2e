//! Path handling that cannot be tricked by symlinks or `..` in a root or an extension.
//!
//! Every path that comes from a root (`--root`, `/sysroot`) or from inside an extension
//! is opened relative to a directory fd with `openat2(RESOLVE_IN_ROOT)`: absolute
//! symlinks and `..` stay inside that directory, as systemd's `chase()` does. Files are
//! read with `O_NONBLOCK` and checked to be regular before reading, so a FIFO where a
//! release file should be cannot block us, and with a size cap, so a huge file cannot
//! exhaust memory in the initrd.

use std::fmt;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags, Stat};

/// Largest env-style file (os-release, extension-release, metadata) we read: systemd's
/// `READ_FULL_BYTES_MAX` (64 MiB − 1, `src/basic/fileio.c`), the limit of the
/// `read_full_stream()` that its `parse_env_file_internal()` (`src/basic/env-file.c`)
/// reads these files with, so a file systemd accepts is not refused here. A larger file
/// is refused by its `fstat` size before anything is read; one within the limit is read
/// into a single buffer of its size (see [`read_fd_bounded`]).
pub const MAX_TEXT_FILE: u64 = (64 << 20) - 1;

/// An opened root directory; paths below it are resolved with `RESOLVE_IN_ROOT`.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

impl Root {
    /// Opens `path` (following symlinks: the caller chose it) as a root.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Root> {
        let path = path.as_ref();
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Opens `path` as process `pid` sees it (through `/proc/PID/root`, inside its mount
    /// namespace and root); messages show `path` as that process would.
    pub fn open_in_process(pid: i32, path: impl AsRef<Path>) -> io::Result<Root> {
        let proc_root = rustix::fs::open(
            format!("/proc/{pid}/root").as_str(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::NOENT => io::Error::from_raw_os_error(libc::ESRCH),
            e => e.into(),
        })?;
        let path = path.as_ref();
        let fd = open_in(
            proc_root.as_fd(),
            path,
            OFlags::PATH | OFlags::DIRECTORY,
            ResolveFlags::empty(),
        )?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// [`Root::open`] when `pid` is `None`, else [`Root::open_in_process`]: a root as
    /// the caller or as a target process (`--pid`) sees it.
    pub fn open_seen_by(pid: Option<i32>, path: impl AsRef<Path>) -> io::Result<Root> {
        match pid {
            Some(pid) => Root::open_in_process(pid, path),
            None => Root::open(path),
        }
    }

    /// The path the root was opened with (for messages and for composing host paths).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when this root is the running system's `/`.
    pub fn is_host_root(&self) -> bool {
        self.path == Path::new("/")
    }

    /// The root's directory fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// `rel` (absolute or relative, interpreted inside the root) as a host path for
    /// messages: `/sysroot` + `/etc/os-release` → `/sysroot/etc/os-release`.
    pub fn display_path(&self, rel: impl AsRef<Path>) -> PathBuf {
        join_in_root(&self.path, rel.as_ref())
    }

    /// Opens `rel` inside the root (`openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`).
    pub fn open_at(&self, rel: impl AsRef<Path>, flags: OFlags) -> io::Result<OwnedFd> {
        open_in(self.fd.as_fd(), rel.as_ref(), flags, ResolveFlags::empty())
    }
}

/// Is `name` in `dir` a symlink to `/dev/null`? That masks a unit file or a drop-in
/// for systemd, whether or not `/dev/null` exists inside the root.
pub fn is_masked<P: rustix::path::Arg>(dir: BorrowedFd<'_>, name: P) -> bool {
    rustix::fs::readlinkat(dir, name, Vec::new()).is_ok_and(|t| t.to_bytes() == b"/dev/null")
}

/// The path under which the kernel resolves an open fd: `/proc/self/fd/N`.
///
/// Layer paths given to overlayfs are built this way from fds that were opened safely,
/// so what is mounted is exactly what was checked.
pub fn fd_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Is the directory `fd` refers to the root of a mount? (`statx` `STATX_ATTR_MOUNT_ROOT`,
/// Linux 5.8+; falls back to comparing with the parent's device and inode.)
pub fn is_mount_root(fd: BorrowedFd<'_>) -> io::Result<bool> {
    use rustix::fs::{statx, AtFlags, StatxAttributes, StatxFlags};
    let st = statx(fd, "", AtFlags::EMPTY_PATH, StatxFlags::BASIC_STATS)?;
    if st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT) {
        return Ok(st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT));
    }
    let me = rustix::fs::fstat(fd)?;
    let parent = rustix::fs::statat(fd, "..", AtFlags::empty())?;
    Ok(me.st_dev != parent.st_dev || me.st_ino == parent.st_ino)
}

/// Joins `rel` below `root` textually (for messages and mount targets; never for opening).
pub fn join_in_root(root: &Path, rel: &Path) -> PathBuf {
    let mut out = root.to_path_buf();
    for c in rel.components() {
        if let Component::Normal(n) = c {
            out.push(n);
        }
    }
    out
}

/// `openat2(dirfd, path, flags | O_CLOEXEC, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | extra)`.
///
/// `path` is interpreted with `dirfd` as the root directory: `..` and absolute symlinks
/// cannot leave it. A leading `/` is allowed and means `dirfd` itself.
pub fn open_in(
    dirfd: BorrowedFd<'_>,
    path: &Path,
    flags: OFlags,
    extra: ResolveFlags,
) -> io::Result<OwnedFd> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel: &Path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    // openat2(2): with RESOLVE_IN_ROOT, a rename anywhere on the system while `..` is
    // being resolved makes the kernel answer EAGAIN; the man page says to retry.
    let mut tries = 0;
    loop {
        let r = rustix::io::retry_on_intr(|| {
            rustix::fs::openat2(
                dirfd,
                rel,
                flags | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | extra,
            )
        });
        match r {
            Err(rustix::io::Errno::AGAIN) if tries < OPENAT2_RETRIES => tries += 1,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// How often [`open_in`] repeats an `openat2` that raced with a rename (`EAGAIN`).
const OPENAT2_RETRIES: u32 = 128;

/// Raises the soft limit of open files to the hard limit, as systemd's tools do: a
/// merge holds one directory per layer, and overlayfs takes up to 500 layers. For the
/// programs; a library caller decides about its own process.
pub fn raise_nofile_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: lim.maximum,
                maximum: lim.maximum,
            },
        );
    }
}

/// Why a file could not be read as a small regular text file.
#[derive(Debug)]
pub enum ReadError {
    /// The open or read failed.
    Io(io::Error),
    /// It is a directory, FIFO, socket or device: refused without reading.
    NotRegular(&'static str),
    /// Larger than the limit.
    TooLarge {
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
}

impl ReadError {
    /// True when the file does not exist (`ENOENT`).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }

    /// The errno that best describes the failure (for the C ABI and exit codes).
    pub fn errno(&self) -> i32 {
        match self {
            ReadError::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
            ReadError::NotRegular("directory") => libc::EISDIR,
            ReadError::NotRegular(_) => libc::EBADFD,
            ReadError::TooLarge { .. } => libc::EFBIG,
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(e) => f.write_str(&crate::log::os_text(e)),
            ReadError::NotRegular(t) => write!(f, "not a regular file ({t})"),
            ReadError::TooLarge { size, limit } => {
                write!(f, "file too large ({size} bytes, limit {limit})")
            }
        }
    }
}

impl std::error::Error for ReadError {}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// A human name for a file type, for messages.
pub fn file_type_name(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        FileType::Fifo => "fifo",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Unknown => "unknown file type",
    }
}

/// Reads a regular file of at most `limit` bytes from an already opened fd.
pub fn read_fd_bounded(fd: OwnedFd, limit: u64) -> Result<Vec<u8>, ReadError> {
    read_fd_bounded_stat(fd, limit).map(|(b, _)| b)
}

/// [`read_fd_bounded`], with the `fstat` of the file it read.
pub fn read_fd_bounded_stat(fd: OwnedFd, limit: u64) -> Result<(Vec<u8>, Stat), ReadError> {
    let st = rustix::fs::fstat(&fd).map_err(io::Error::from)?;
    let ft = FileType::from_raw_mode(st.st_mode);
    if ft != FileType::RegularFile {
        return Err(ReadError::NotRegular(file_type_name(ft)));
    }
    let size = st.st_size as u64;
    if size > limit {
        return Err(ReadError::TooLarge { size, limit });
    }
    // One read of size + 1 bytes usually gets all and proves the end; files that grow
    // while we read (or lie about their size, as in /proc) get the capped loop.
    let mut buf = vec![0u8; size as usize + 1];
    let n =
        rustix::io::retry_on_intr(|| rustix::io::read(&fd, &mut buf)).map_err(io::Error::from)?;
    buf.truncate(n);
    if n as u64 > size {
        std::fs::File::from(fd)
            .take(limit + 1 - n as u64)
            .read_to_end(&mut buf)?;
    }
    if buf.len() as u64 > limit {
        return Err(ReadError::TooLarge {
            size: buf.len() as u64,
            limit,
        });
    }
    Ok((buf, st))
}

/// [`read_file_in`], with the `fstat` of the file it read.
pub fn read_file_in_stat(
    dirfd: BorrowedFd<'_>,
    path: &Path,
    extra: ResolveFlags,
    limit: u64,
) -> Result<(Vec<u8>, Stat), ReadError> {
    let fd = open_in(
        dirfd,
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
        extra,
    )?;
    read_fd_bounded_stat(fd, limit)
}

/// Opens `path` inside `dirfd` (as [`open_in`]) non-blocking and reads it as a small
/// regular file. `extra` may add e.g. `RESOLVE_NO_SYMLINKS`.
pub fn read_file_in(
    dirfd: BorrowedFd<'_>,
    path: &Path,
    extra: ResolveFlags,
    limit: u64,
) -> Result<Vec<u8>, ReadError> {
    read_file_in_stat(dirfd, path, extra, limit).map(|(b, _)| b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_stay_in_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(t.path().join("secret"), b"outside").unwrap();
        std::fs::write(root.join("secret"), b"inside").unwrap();
        symlink("/secret", root.join("etc/abs")).unwrap();
        symlink("../../../../secret", root.join("etc/rel")).unwrap();
        let r = Root::open(&root).unwrap();
        for p in ["/etc/abs", "etc/rel", "/../secret"] {
            let got = read_file_in(r.fd(), Path::new(p), ResolveFlags::empty(), 100).unwrap();
            assert_eq!(got, b"inside", "{p}");
        }
        let e = read_file_in(
            r.fd(),
            Path::new("/etc/abs"),
            ResolveFlags::NO_SYMLINKS,
            100,
        )
        .unwrap_err();
        assert!(matches!(e, ReadError::Io(ref e) if e.raw_os_error() == Some(libc::ELOOP)));
    }

    #[test]
    fn refuses_fifo_dir_and_large() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("fifo");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, Mode::from_raw_mode(0o600)).unwrap();
        std::fs::write(t.path().join("big"), vec![b'x'; 101]).unwrap();
        let r = Root::open(t.path()).unwrap();
        let e = read_file_in(r.fd(), Path::new("fifo"), ResolveFlags::empty(), 100).unwrap_err();
        assert_eq!(e.to_string(), "not a regular file (fifo)");
        let e = read_file_in(r.fd(), Path::new("/"), ResolveFlags::empty(), 100).unwrap_err();
        assert_eq!(e.to_string(), "not a regular file (directory)");
        let e = read_file_in(r.fd(), Path::new("big"), ResolveFlags::empty(), 100).unwrap_err();
        assert_eq!(e.to_string(), "file too large (101 bytes, limit 100)");
        let e = read_file_in(r.fd(), Path::new("nope"), ResolveFlags::empty(), 100).unwrap_err();
        assert!(e.is_not_found());
    }

    #[test]
    fn display_path_joins() {
        assert_eq!(
            join_in_root(Path::new("/sysroot"), Path::new("/etc/os-release")),
            PathBuf::from("/sysroot/etc/os-release")
        );
        assert_eq!(
            join_in_root(Path::new("/"), Path::new("usr")),
            PathBuf::from("/usr")
        );
    }
}
