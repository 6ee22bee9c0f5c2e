//! Finding extensions in a root's search directories (systemd's `discover-image.c`).
//!
//! Each class has an ordered list of search directories inside the root. Their entries
//! become [`Image`]s (`*.raw` files, directories, block devices, or the entry picked from a
//! `NAME.v/` directory) or, with a reason, [`Skipped`] entries.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, Dir, FileType, OFlags, Stat, Statx, StatxFlags};

use crate::format::arch;
use crate::format::class::Class;
use crate::format::escape::esc;
use crate::format::vpick::{self, Picked};
use crate::inspect::fsutil::{file_type_name, Root};
use crate::log::{errno_text, os_text};

/// What an extension is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// A directory tree.
    Directory,
    /// A `*.raw` regular file (disk image or bare file system).
    Raw,
    /// A block device.
    Block,
}

impl ImageKind {
    /// systemd's `image_type_to_string`.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageKind::Directory => "directory",
            ImageKind::Raw => "raw",
            ImageKind::Block => "block",
        }
    }
}

/// A discovered extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Image name (file name with `.raw`, class suffix, `.v` stripped).
    pub name: String,
    /// Its class.
    pub class: Class,
    /// Directory, raw or block.
    pub kind: ImageKind,
    /// Absolute path inside the root (`/var/lib/extensions/foo.raw.v/foo_2.raw`); a
    /// symlink entry keeps the entry's own path (it is resolved inside the root on open).
    pub path: PathBuf,
    /// The search directory it was found in.
    pub search_dir: Arc<str>,
    /// The time `list` shows, in µs since the epoch, as systemd's image discovery
    /// takes it (`image_make()`): a file's modification time; a directory's birth
    /// time (`statx` `stx_btime`; its mtime says only when its top level last changed),
    /// its mtime where the file system keeps no birth time.
    pub mtime_usec: Option<u64>,
    /// Set when the image was picked from a `NAME.v/` directory.
    pub picked: Option<Picked>,
    /// The directory as discovery opened it (a plain directory entry, not a symlink
    /// and not a `.v` pick), for [`crate::inspect::DirOpener`] to take instead of opening
    /// the path again from the root.
    pub opened: Opened,
    /// The root [`path`](Self::path) is inside when it is not the merge's own: the
    /// initrd's `/.extra` images merged onto the real root ([`discover_extra`]).
    pub base: Option<Base>,
}

impl Image {
    /// The root this image's path is inside: its own [`base`](Self::base), else `root`
    /// (the root being merged).
    pub fn root_in<'a>(&'a self, root: &'a Root) -> &'a Root {
        self.base.as_ref().map_or(root, |b| &b.0)
    }

    /// The image's path as people see it (`/sysroot/etc/extensions/a.raw`,
    /// `/.extra/sysext/b.raw`).
    pub fn shown(&self, root: &Root) -> PathBuf {
        self.root_in(root).display_path(&self.path)
    }
}

/// A root other than the merge's own that an image was found in. Compared by its path.
#[derive(Clone, Debug)]
pub struct Base(pub Arc<Root>);

impl PartialEq for Base {
    fn eq(&self, other: &Base) -> bool {
        self.0.path() == other.0.path()
    }
}

impl Eq for Base {}

/// An extension directory opened by discovery, taken (once) by whoever mounts it, with
/// what one `statx` of it said ([`IDENTITY_MASK`]): the fingerprints of a merge record
/// that instead of asking again. Clones share it; it plays no part in comparisons.
#[derive(Clone, Default)]
pub struct Opened {
    fd: Option<std::sync::Arc<std::sync::Mutex<Option<OwnedFd>>>>,
    stat: Option<Statx>,
}

impl Opened {
    /// Wraps an opened directory.
    pub fn new(fd: OwnedFd) -> Opened {
        Opened {
            fd: Some(std::sync::Arc::new(std::sync::Mutex::new(Some(fd)))),
            stat: None,
        }
    }

    /// Wraps an opened directory and its `statx` ([`IDENTITY_MASK`]).
    pub fn with_stat(fd: OwnedFd, stat: Statx) -> Opened {
        Opened {
            stat: Some(stat),
            ..Opened::new(fd)
        }
    }

    /// Takes the fd (`None` when there is none or it was taken already).
    pub fn take(&self) -> Option<OwnedFd> {
        self.fd.as_ref()?.lock().ok()?.take()
    }

    /// Puts back a taken fd (a look that did not merge: the merge takes it later).
    pub fn restore(&self, fd: OwnedFd) {
        if let Some(Ok(mut slot)) = self.fd.as_ref().map(|m| m.lock()) {
            *slot = Some(fd);
        }
    }

    /// The `statx` taken when it was opened, if any.
    pub fn stat(&self) -> Option<&Statx> {
        self.stat.as_ref()
    }
}

/// What discovery asks `statx` about a directory it opens: everything the list's time
/// and a merge's fingerprints need ([`crate::sys::origin`]), so it is asked once.
pub const IDENTITY_MASK: StatxFlags = StatxFlags::BASIC_STATS
    .union(StatxFlags::BTIME)
    .union(StatxFlags::MNT_ID)
    .union(StatxFlags::from_bits_retain(STATX_MNT_ID_UNIQUE));

/// `statx`'s `STATX_MNT_ID_UNIQUE` (Linux 6.8), which rustix does not name: a mount ID
/// that is never reused. Older kernels ignore the bit and answer `STATX_MNT_ID`.
pub const STATX_MNT_ID_UNIQUE: u32 = 0x4000;

impl PartialEq for Opened {
    fn eq(&self, _: &Opened) -> bool {
        true
    }
}

impl Eq for Opened {}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.fd.is_some() { "Opened" } else { "-" })
    }
}

/// An entry that was looked at and not used, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Absolute path inside the root.
    pub path: PathBuf,
    /// Why it was skipped.
    pub reason: String,
}

/// Result of discovery for one class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    /// Usable images, sorted by name (byte order).
    pub images: Vec<Image>,
    /// Entries skipped, in the order they were seen.
    pub skipped: Vec<Skipped>,
}

/// Errors that abort discovery (systemd: "Failed to discover images").
#[derive(Debug, thiserror::Error)]
#[error("{}: {}", esc(.path), crate::log::os_text(.source))]
pub struct DiscoverError {
    /// The search directory (host path).
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

pub use crate::format::name::image_name_is_valid;

/// True when `<root>/etc/initrd-release` exists (chooses the initrd search list and scope).
///
/// The file is looked up inside the root (symlinks resolved with the root as `/`); any
/// error, including a dangling symlink, counts as "not an initrd".
pub fn root_is_initrd(root: &Root) -> bool {
    root.open_at("/etc/initrd-release", OFlags::PATH).is_ok()
}

/// Walks the class's search directories in precedence order.
///
/// Search directories come from [`Class::search_dirs`]; one that does not exist (or is not
/// a directory) is skipped silently, any other error opening or reading it aborts.
///
/// Within a directory, entries are processed in byte-sorted name order. systemd uses
/// `readdir` order, which is filesystem-dependent; sorting makes the winner between two
/// entries of one directory deriving the same name (`foo.raw` and `foo/`) deterministic.
/// The first search directory (then the first entry in sorted order) wins; later entries
/// with the same name are recorded in [`Discovery::skipped`] as shadowed. Entries that are
/// rejected (bad name, wrong type, no usable `.v` entry) do not shadow anything.
///
/// Every entry is resolved inside the root (absolute symlink targets are re-rooted, as in
/// the newest systemd), but [`Image::path`] keeps the entry's own path and the name is
/// derived from the entry's own file name.
pub fn discover(root: &Root, class: Class, initrd: bool) -> Result<Discovery, DiscoverError> {
    discover_in(root, class, class.search_dirs(initrd))
}

/// [`discover`] in the directories `dirs` (strongest first) instead of the class's own:
/// `--search=`, `--unit=` ([`crate::options::Options::search_dirs`]).
pub fn discover_in<S: AsRef<str>>(
    root: &Root,
    class: Class,
    dirs: &[S],
) -> Result<Discovery, DiscoverError> {
    let mut out = Discovery::default();
    let mut seen: HashMap<String, PathBuf> = HashMap::new();

    for dir in dirs {
        let dir = dir.as_ref();
        let dir_error = |source: io::Error| DiscoverError {
            path: root.display_path(dir),
            source,
        };
        let fd = match root.open_at(dir, OFlags::RDONLY | OFlags::DIRECTORY) {
            Ok(fd) => fd,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => continue,
            Err(e) => return Err(dir_error(e)),
        };
        let dir_fd = fd.try_clone().map_err(dir_error)?;
        // One copy of the directory's name, shared by its entries.
        let shared: Arc<str> = Arc::from(dir);
        for entry in list_dir(fd).map_err(dir_error)? {
            let path = Path::new(dir).join(&entry);
            match examine(root, dir_fd.as_fd(), class, &shared, &entry, &path) {
                Ok(image) => {
                    if let Some(winner) = seen.get(&image.name) {
                        out.skipped.push(Skipped {
                            reason: format!("shadowed by {}", esc(winner)),
                            path,
                        });
                    } else {
                        seen.insert(image.name.clone(), image.path.clone());
                        out.images.push(image);
                    }
                }
                Err(reason) => out.skipped.push(Skipped { path, reason }),
            }
        }
    }

    out.images
        .sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    Ok(out)
}

/// The class's `/.extra` directories of another root (the initrd's own, where
/// systemd-stub puts the UKI's and the ESP's extensions), looked in after the root's
/// own: `found` gains the disk images whose names it does not have yet, each with that
/// root as its [`base`](Image::base). The root's own extensions win a name (the machine's
/// own configuration over what an ESP carries); directories are not taken (only signed
/// images pass the strict `/.extra` policy). What is not taken is logged, naming the file.
pub fn discover_extra(
    found: &mut Discovery,
    extra: &Arc<Root>,
    class: Class,
) -> Result<(), DiscoverError> {
    let dirs: Vec<&str> = class
        .search_dirs(true)
        .iter()
        .copied()
        .filter(|d| d.starts_with("/.extra/"))
        .collect();
    let more = discover_in(extra, class, &dirs)?;
    for s in &more.skipped {
        crate::log::info(&format!(
            "{}: not used: {}",
            esc(&extra.display_path(&s.path)),
            s.reason
        ));
    }
    for mut image in more.images {
        let shown = extra.display_path(&image.path);
        if let Some(winner) = found.images.iter().find(|i| i.name == image.name) {
            crate::log::info(&format!(
                "{}: not used: shadowed by {}",
                esc(&shown),
                esc(&winner.path)
            ));
        } else if image.kind == ImageKind::Directory {
            crate::log::warn(&format!(
                "{}: not used: a directory, and only signed disk images are taken from /.extra onto the real root",
                esc(&shown)
            ));
        } else {
            image.base = Some(Base(extra.clone()));
            found.images.push(image);
        }
    }
    found
        .images
        .sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    Ok(())
}

/// What an entry's type and name make of it (before the `.v` pick).
#[derive(Debug, PartialEq, Eq)]
enum Candidate {
    /// Used as is.
    Image(ImageKind),
    /// A `NAME.v/` directory; pick inside with this suffix (`.raw`, `.sysext.raw`, `""`…).
    Pick(String),
}

/// Derives and validates the image name of directory entry `entry` (its own file name)
/// whose resolved type is `ft` (systemd's `discover-image.c` rules, A.1.3/A.1.4).
fn derive(entry: &[u8], ft: FileType, class: Class) -> Result<(String, Candidate), String> {
    let class_suffix = class.name_suffix().as_bytes();
    let (name, candidate): (&[u8], Candidate) = match ft {
        FileType::RegularFile => {
            let Some(rest) = entry.strip_suffix(b".raw") else {
                return Err("regular file without .raw suffix".to_string());
            };
            let rest = rest.strip_suffix(class_suffix).unwrap_or(rest);
            (rest, Candidate::Image(ImageKind::Raw))
        }
        FileType::Directory => match entry.strip_suffix(b".v") {
            Some(rest) => {
                let mut suffix = String::new();
                let rest = match rest.strip_suffix(b".raw") {
                    Some(r) => {
                        suffix.push_str(".raw");
                        r
                    }
                    None => rest,
                };
                let rest = match rest.strip_suffix(class_suffix) {
                    Some(r) => {
                        suffix.insert_str(0, class.name_suffix());
                        r
                    }
                    None => rest,
                };
                (rest, Candidate::Pick(suffix))
            }
            None => (
                entry.strip_suffix(class_suffix).unwrap_or(entry),
                Candidate::Image(ImageKind::Directory),
            ),
        },
        FileType::BlockDevice => (entry, Candidate::Image(ImageKind::Block)),
        other => {
            return Err(format!(
                "not a regular file, directory or block device ({})",
                file_type_name(other)
            ))
        }
    };
    let name = match std::str::from_utf8(name) {
        Ok(n) => n,
        Err(_) => return Err(format!("invalid image name \"{}\" (not UTF-8)", esc(name))),
    };
    if !image_name_is_valid(name) {
        return Err(format!("invalid image name \"{}\"", esc(name)));
    }
    Ok((name.to_string(), candidate))
}

/// Classifies one search-directory entry; `Err` is the reason it is skipped.
fn examine(
    root: &Root,
    dir_fd: BorrowedFd<'_>,
    class: Class,
    search_dir: &Arc<str>,
    entry: &OsStr,
    path: &Path,
) -> Result<Image, String> {
    // Most entries are plain directories: opened by their one name in the search
    // directory (no symlink followed: a symlink or a file fails here and takes the
    // general way below) and asked once, through that fd, for everything later steps
    // need. The merge uses this fd; the object swapped in after it was opened is not
    // the one merged. `O_PATH`: only looked up from and stat'ed, never read.
    if let Ok(fd) = rustix::fs::openat(
        dir_fd,
        entry,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) {
        let x = rustix::fs::statx(&fd, "", AtFlags::EMPTY_PATH, IDENTITY_MASK)
            .ok()
            .filter(|x| FileType::from_raw_mode(x.stx_mode.into()) == FileType::Directory);
        if let Some(x) = x {
            let (name, candidate) = derive(entry.as_bytes(), FileType::Directory, class)?;
            if let Candidate::Image(kind) = candidate {
                return Ok(Image {
                    name,
                    class,
                    kind,
                    path: path.to_path_buf(),
                    search_dir: search_dir.clone(),
                    mtime_usec: statx_list_time(&x),
                    picked: None,
                    opened: Opened::with_stat(fd, x),
                    base: None,
                });
            }
            // A `NAME.v/` directory: picked inside below.
        }
    }
    // Others: one `fstatat` in the search directory; symlinks are followed inside the
    // root.
    let (ft, st, symlink) = match rustix::fs::statat(dir_fd, entry, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::Symlink => {
            (FileType::from_raw_mode(st.st_mode), st, false)
        }
        _ => {
            let (ft, st) = resolve(root, path)?;
            (ft, st, true)
        }
    };
    let (name, candidate) = derive(entry.as_bytes(), ft, class)?;
    match candidate {
        Candidate::Image(kind) => {
            // A plain directory is opened here, by its one name in the search directory
            // (no symlink followed: one swapped in since the stat fails, and the entry
            // is opened inside the root later as before); the merge uses this fd.
            let opened = match (kind, symlink) {
                (ImageKind::Directory, false) => rustix::fs::openat(
                    dir_fd,
                    entry,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )
                .map(Opened::new)
                .unwrap_or_default(),
                _ => Opened::default(),
            };
            Ok(Image {
                name,
                class,
                kind,
                path: path.to_path_buf(),
                search_dir: search_dir.clone(),
                mtime_usec: list_time(root, path, kind, &st),
                picked: None,
                opened,
                base: None,
            })
        }
        Candidate::Pick(suffix) => {
            let (picked, kind, st) = pick_in(root, &name, &suffix, entry, path)?;
            Ok(Image {
                name,
                class,
                kind,
                path: path.join(&picked.file_name),
                search_dir: search_dir.clone(),
                mtime_usec: list_time(root, &path.join(&picked.file_name), kind, &st),
                picked: Some(picked),
                opened: Opened::default(),
                base: None,
            })
        }
    }
}

/// Picks inside the `.v` directory at `path` among the entries of the wanted type: a
/// regular file or block device when `suffix` ends in `.raw`, else a directory (symlinks
/// followed inside the root). As systemd ≥ 260 (`vpick.c`, PR #40084: `pin_choice()`
/// returns 0 on a wrong inode type), an entry of another type is ignored, so the best
/// entry of the right type wins; before, a winner of the wrong type failed the pick. An
/// entry whose name matches but that cannot be resolved (a dangling symlink) fails it.
fn pick_in(
    root: &Root,
    name: &str,
    suffix: &str,
    entry: &OsStr,
    path: &Path,
) -> Result<(Picked, ImageKind, Stat), String> {
    let fd = root
        .open_at(path, OFlags::RDONLY | OFlags::DIRECTORY)
        .map_err(|e| os_text(&e))?;
    let names = list_dir(fd).map_err(|e| os_text(&e))?;
    let native = arch::native();
    let secondary = arch::secondary(native);
    let want_file = suffix.ends_with(".raw");
    // Name first (vpick patterns are UTF-8 text; a non-UTF-8 entry can never match), then
    // the type of what the entry resolves to.
    let mut typed: Vec<(&str, ImageKind, Stat)> = Vec::new();
    let mut wrong_type = 0usize;
    for n in names.iter().filter_map(|n| n.to_str()) {
        if vpick::parse_entry(name, suffix, n, native, secondary).is_none() {
            continue;
        }
        let (ft, st) =
            resolve(root, &path.join(n)).map_err(|reason| format!("{}: {reason}", esc(n)))?;
        let kind = match ft {
            FileType::RegularFile if want_file => ImageKind::Raw,
            FileType::BlockDevice if want_file => ImageKind::Block,
            FileType::Directory if !want_file => ImageKind::Directory,
            _ => {
                wrong_type += 1;
                continue;
            }
        };
        typed.push((n, kind, st));
    }
    let picked = vpick::pick(name, suffix, typed.iter().map(|t| t.0), native, secondary)
        .ok_or_else(|| match wrong_type {
            0 => format!("no matching entry in {}", esc(entry)),
            n => format!(
                "no matching entry in {} ({n} of the wrong type, expected {})",
                esc(entry),
                if want_file {
                    "a regular file or block device"
                } else {
                    "a directory"
                }
            ),
        })?;
    // `pick` returns one of the names it was given.
    let (_, kind, st) = typed
        .into_iter()
        .find(|t| t.0 == picked.file_name)
        .ok_or_else(|| format!("no matching entry in {}", esc(entry)))?;
    Ok((picked, kind, st))
}

/// Opens `path` inside the root (following symlinks, re-rooted) and stats it.
fn resolve(root: &Root, path: &Path) -> Result<(FileType, Stat), String> {
    let fd = root.open_at(path, OFlags::PATH).map_err(|e| {
        if e.raw_os_error() == Some(libc::ENOENT) {
            "dangling symlink".to_string()
        } else {
            os_text(&e)
        }
    })?;
    let st = rustix::fs::fstat(&fd).map_err(errno_text)?;
    Ok((FileType::from_raw_mode(st.st_mode), st))
}

/// [`Image::mtime_usec`]: a directory's birth time (opened inside the root), else or
/// where there is none the modification time.
fn list_time(root: &Root, path: &Path, kind: ImageKind, st: &Stat) -> Option<u64> {
    use rustix::fs::{statx, StatxFlags};
    let birth = (kind == ImageKind::Directory)
        .then(|| root.open_at(path, OFlags::PATH).ok())
        .flatten()
        .and_then(|fd| statx(&fd, "", AtFlags::EMPTY_PATH, StatxFlags::BTIME).ok())
        .filter(|x| x.stx_mask & StatxFlags::BTIME.bits() != 0)
        .and_then(|x| {
            let sec = u64::try_from(x.stx_btime.tv_sec).ok()?;
            sec.checked_mul(1_000_000)?
                .checked_add(u64::from(x.stx_btime.tv_nsec) / 1000)
        });
    birth.or_else(|| mtime_usec(st))
}

/// [`list_time`] of a directory from its `statx`: birth time, else modification time.
fn statx_list_time(x: &Statx) -> Option<u64> {
    let t = if x.stx_mask & StatxFlags::BTIME.bits() != 0 {
        x.stx_btime
    } else {
        x.stx_mtime
    };
    let sec = u64::try_from(t.tv_sec).ok()?;
    sec.checked_mul(1_000_000)?
        .checked_add(u64::from(t.tv_nsec) / 1000)
}

/// Modification time in µs since the epoch; `None` before the epoch.
// The field types differ between architectures and rustix backends (`i64`/`c_long`,
// `u32`/`c_ulong`; the libc backend, which miri uses, has a signed `st_mtime_nsec`).
#[allow(clippy::useless_conversion, clippy::unnecessary_fallible_conversions)]
fn mtime_usec(st: &Stat) -> Option<u64> {
    let sec = u64::try_from(i64::from(st.st_mtime)).ok()?;
    let nsec = u64::try_from(st.st_mtime_nsec).ok()?;
    sec.checked_mul(1_000_000)?.checked_add(nsec / 1000)
}

/// The names in an opened directory except `.` and `..`, byte-sorted.
fn list_dir(fd: OwnedFd) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in Dir::new(fd)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// One thing to create in a fixture. Paths are inside the root unless noted.
    #[derive(Clone, Copy)]
    enum Fx {
        /// Regular file.
        F(&'static str),
        /// Directory.
        D(&'static str),
        /// Symlink at `.0` pointing to `.1`.
        L(&'static str, &'static str),
        /// FIFO.
        P(&'static str),
        /// Unix socket.
        S(&'static str),
        /// Regular file relative to the directory that contains the root (outside it).
        Outside(&'static str),
    }
    use Fx::*;

    struct Case {
        name: &'static str,
        class: Class,
        initrd: bool,
        fixture: &'static [Fx],
        /// (name, kind, path), sorted by name.
        images: &'static [(&'static str, &'static str, &'static str)],
        /// (path, reason), in the order seen.
        skipped: &'static [(&'static str, &'static str)],
    }

    const SYS: Class = Class::Sysext;
    const CONF: Class = Class::Confext;
    const ELOOP_TEXT: &str = "Too many levels of symbolic links";

    const CASES: &[Case] = &[
        Case {
            name: "sysext normal: three dirs, no /usr/lib, no /.extra",
            class: SYS,
            initrd: false,
            fixture: &[
                F("/etc/extensions/a.raw"),
                F("/run/extensions/b.raw"),
                F("/var/lib/extensions/c.raw"),
                F("/usr/lib/extensions/d.raw"),
                F("/usr/local/lib/extensions/e.raw"),
                F("/.extra/sysext/f.raw"),
                F("/.extra/global_sysext/g.raw"),
                F("/run/confexts/h.raw"),
            ],
            images: &[
                ("a", "raw", "/etc/extensions/a.raw"),
                ("b", "raw", "/run/extensions/b.raw"),
                ("c", "raw", "/var/lib/extensions/c.raw"),
            ],
            skipped: &[],
        },
        Case {
            name: "sysext initrd: adds /.extra/sysext and /.extra/global_sysext",
            class: SYS,
            initrd: true,
            fixture: &[
                F("/etc/extensions/a.raw"),
                F("/run/extensions/b.raw"),
                F("/var/lib/extensions/c.raw"),
                F("/usr/lib/extensions/d.raw"),
                F("/.extra/sysext/f.raw"),
                F("/.extra/global_sysext/g.raw"),
                F("/.extra/confext/h.raw"),
            ],
            images: &[
                ("a", "raw", "/etc/extensions/a.raw"),
                ("b", "raw", "/run/extensions/b.raw"),
                ("c", "raw", "/var/lib/extensions/c.raw"),
                ("f", "raw", "/.extra/sysext/f.raw"),
                ("g", "raw", "/.extra/global_sysext/g.raw"),
            ],
            skipped: &[],
        },
        Case {
            name: "confext normal: four dirs, no /etc/confexts, no /.extra",
            class: CONF,
            initrd: false,
            fixture: &[
                F("/etc/confexts/e.raw"),
                F("/run/confexts/a.raw"),
                F("/var/lib/confexts/b.raw"),
                F("/usr/local/lib/confexts/c.raw"),
                F("/usr/lib/confexts/d.raw"),
                F("/.extra/confext/f.raw"),
                F("/.extra/global_confext/g.raw"),
                F("/etc/extensions/h.raw"),
            ],
            images: &[
                ("a", "raw", "/run/confexts/a.raw"),
                ("b", "raw", "/var/lib/confexts/b.raw"),
                ("c", "raw", "/usr/local/lib/confexts/c.raw"),
                ("d", "raw", "/usr/lib/confexts/d.raw"),
            ],
            skipped: &[],
        },
        Case {
            name: "confext initrd: drops /usr/lib/confexts, adds /.extra",
            class: CONF,
            initrd: true,
            fixture: &[
                F("/etc/confexts/e.raw"),
                F("/run/confexts/a.raw"),
                F("/var/lib/confexts/b.raw"),
                F("/usr/local/lib/confexts/c.raw"),
                F("/usr/lib/confexts/d.raw"),
                F("/.extra/confext/f.raw"),
                F("/.extra/global_confext/g.raw"),
                F("/.extra/sysext/h.raw"),
            ],
            images: &[
                ("a", "raw", "/run/confexts/a.raw"),
                ("b", "raw", "/var/lib/confexts/b.raw"),
                ("c", "raw", "/usr/local/lib/confexts/c.raw"),
                ("f", "raw", "/.extra/confext/f.raw"),
                ("g", "raw", "/.extra/global_confext/g.raw"),
            ],
            skipped: &[],
        },
        Case {
            name: "empty root",
            class: SYS,
            initrd: true,
            fixture: &[],
            images: &[],
            skipped: &[],
        },
        Case {
            name: "first search dir wins across dirs",
            class: SYS,
            initrd: false,
            fixture: &[
                D("/etc/extensions/foo"),
                F("/run/extensions/foo.sysext.raw"),
                F("/var/lib/extensions/foo.raw"),
            ],
            images: &[("foo", "directory", "/etc/extensions/foo")],
            skipped: &[
                (
                    "/run/extensions/foo.sysext.raw",
                    "shadowed by /etc/extensions/foo",
                ),
                (
                    "/var/lib/extensions/foo.raw",
                    "shadowed by /etc/extensions/foo",
                ),
            ],
        },
        Case {
            name: "same dir: sorted first wins (foo/ before foo.raw)",
            class: SYS,
            initrd: false,
            fixture: &[
                F("/var/lib/extensions/foo.raw"),
                D("/var/lib/extensions/foo"),
            ],
            images: &[("foo", "directory", "/var/lib/extensions/foo")],
            skipped: &[(
                "/var/lib/extensions/foo.raw",
                "shadowed by /var/lib/extensions/foo",
            )],
        },
        Case {
            name: "same dir: foo.raw before foo.sysext.raw",
            class: SYS,
            initrd: false,
            fixture: &[
                F("/run/extensions/foo.sysext.raw"),
                F("/run/extensions/foo.raw"),
            ],
            images: &[("foo", "raw", "/run/extensions/foo.raw")],
            skipped: &[(
                "/run/extensions/foo.sysext.raw",
                "shadowed by /run/extensions/foo.raw",
            )],
        },
        Case {
            name: "sysext strips only .sysext",
            class: SYS,
            initrd: false,
            fixture: &[
                F("/etc/extensions/foo.sysext.raw"),
                F("/etc/extensions/bar.confext.raw"),
                D("/etc/extensions/baz.sysext"),
                D("/etc/extensions/qux.confext"),
            ],
            images: &[
                ("bar.confext", "raw", "/etc/extensions/bar.confext.raw"),
                ("baz", "directory", "/etc/extensions/baz.sysext"),
                ("foo", "raw", "/etc/extensions/foo.sysext.raw"),
                ("qux.confext", "directory", "/etc/extensions/qux.confext"),
            ],
            skipped: &[],
        },
        Case {
            name: "confext strips only .confext",
            class: CONF,
            initrd: false,
            fixture: &[
                F("/run/confexts/foo.sysext.raw"),
                F("/run/confexts/bar.confext.raw"),
                D("/run/confexts/baz.confext"),
                D("/run/confexts/qux.sysext"),
            ],
            images: &[
                ("bar", "raw", "/run/confexts/bar.confext.raw"),
                ("baz", "directory", "/run/confexts/baz.confext"),
                ("foo.sysext", "raw", "/run/confexts/foo.sysext.raw"),
                ("qux.sysext", "directory", "/run/confexts/qux.sysext"),
            ],
            skipped: &[],
        },
        Case {
            name: "regular files need .raw; version part is kept",
            class: SYS,
            initrd: false,
            fixture: &[
                F("/etc/extensions/foo.img"),
                F("/etc/extensions/bar.v"),
                F("/etc/extensions/baz"),
                F("/etc/extensions/foo_1.2_x86-64.raw"),
            ],
            images: &[("foo_1.2_x86-64", "raw", "/etc/extensions/foo_1.2_x86-64.raw")],
            skipped: &[
                ("/etc/extensions/bar.v", "regular file without .raw suffix"),
                ("/etc/extensions/baz", "regular file without .raw suffix"),
                ("/etc/extensions/foo.img", "regular file without .raw suffix"),
            ],
        },
        Case {
            name: "invalid names",
            class: SYS,
            initrd: false,
            fixture: &[
                F("/etc/extensions/.raw"),
                F("/etc/extensions/..raw"),
                F("/etc/extensions/.#foo.raw"),
                F("/etc/extensions/.sysext.raw"),
                D("/etc/extensions/.sysext"),
                F("/etc/extensions/tab\there.raw"),
            ],
            images: &[],
            skipped: &[
                ("/etc/extensions/.#foo.raw", "invalid image name \".#foo\""),
                ("/etc/extensions/..raw", "invalid image name \".\""),
                ("/etc/extensions/.raw", "invalid image name \"\""),
                ("/etc/extensions/.sysext", "invalid image name \"\""),
                ("/etc/extensions/.sysext.raw", "invalid image name \"\""),
                (
                    "/etc/extensions/tab\there.raw",
                    "invalid image name \"tab\\there\"",
                ),
            ],
        },
        Case {
            name: "invalid entries do not shadow",
            class: SYS,
            initrd: false,
            fixture: &[
                F("/etc/extensions/foo.img"),
                P("/etc/extensions/foo.raw"),
                F("/var/lib/extensions/foo.raw"),
            ],
            images: &[("foo", "raw", "/var/lib/extensions/foo.raw")],
            skipped: &[
                ("/etc/extensions/foo.img", "regular file without .raw suffix"),
                (
                    "/etc/extensions/foo.raw",
                    "not a regular file, directory or block device (fifo)",
                ),
            ],
        },
        Case {
            name: "hidden entries and spaces are accepted",
            class: SYS,
            initrd: false,
            fixture: &[
                F("/etc/extensions/.foo.raw"),
                D("/etc/extensions/.bar"),
                F("/etc/extensions/a b.raw"),
                D("/etc/extensions/my ext.sysext"),
            ],
            images: &[
                (".bar", "directory", "/etc/extensions/.bar"),
                (".foo", "raw", "/etc/extensions/.foo.raw"),
                ("a b", "raw", "/etc/extensions/a b.raw"),
                ("my ext", "directory", "/etc/extensions/my ext.sysext"),
            ],
            skipped: &[],
        },
        Case {
            name: "absolute symlink resolved inside the root, entry path kept",
            class: SYS,
            initrd: false,
            fixture: &[
                F("/var/store/foo_1.raw"),
                D("/var/store/tree"),
                L("/etc/extensions/foo.raw", "/var/store/foo_1.raw"),
                L("/etc/extensions/bar", "/var/store/tree"),
                L("/etc/extensions/baz.raw", "../../var/store/foo_1.raw"),
                // Points to a directory, so `.raw` is not stripped.
                L("/etc/extensions/tree.raw", "/var/store/tree"),
            ],
            images: &[
                ("bar", "directory", "/etc/extensions/bar"),
                ("baz", "raw", "/etc/extensions/baz.raw"),
                ("foo", "raw", "/etc/extensions/foo.raw"),
                ("tree.raw", "directory", "/etc/extensions/tree.raw"),
            ],
            skipped: &[],
        },
        Case {
            name: "relative symlink escaping the root stays inside (dangling)",
            class: SYS,
            initrd: false,
            fixture: &[
                Outside("outside.raw"),
                L("/etc/extensions/out.raw", "../../../outside.raw"),
                L("/run/extensions/abs.raw", "/../../outside.raw"),
            ],
            images: &[],
            skipped: &[
                ("/etc/extensions/out.raw", "dangling symlink"),
                ("/run/extensions/abs.raw", "dangling symlink"),
            ],
        },
        Case {
            name: "relative symlink escaping the root finds the file inside",
            class: SYS,
            initrd: false,
            fixture: &[
                Outside("outside.raw"),
                F("/outside.raw"),
                L("/etc/extensions/out.raw", "../../../outside.raw"),
            ],
            images: &[("out", "raw", "/etc/extensions/out.raw")],
            skipped: &[],
        },
        Case {
            name: "symlink loops and dangling symlinks",
            class: SYS,
            initrd: false,
            fixture: &[
                L("/etc/extensions/self.raw", "self.raw"),
                L("/etc/extensions/a.raw", "b.raw"),
                L("/etc/extensions/b.raw", "/etc/extensions/a.raw"),
                L("/etc/extensions/gone.raw", "/nowhere.raw"),
                L("/etc/extensions/gone", "/nowhere"),
            ],
            images: &[],
            skipped: &[
                ("/etc/extensions/a.raw", ELOOP_TEXT),
                ("/etc/extensions/b.raw", ELOOP_TEXT),
                ("/etc/extensions/gone", "dangling symlink"),
                ("/etc/extensions/gone.raw", "dangling symlink"),
                ("/etc/extensions/self.raw", ELOOP_TEXT),
            ],
        },
        Case {
            name: "fifo, socket and symlink to fifo skipped",
            class: CONF,
            initrd: false,
            fixture: &[
                P("/run/confexts/pipe.raw"),
                S("/run/confexts/sock.raw"),
                L("/run/confexts/to-pipe.raw", "/run/confexts/pipe.raw"),
            ],
            images: &[],
            skipped: &[
                (
                    "/run/confexts/pipe.raw",
                    "not a regular file, directory or block device (fifo)",
                ),
                (
                    "/run/confexts/sock.raw",
                    "not a regular file, directory or block device (socket)",
                ),
                (
                    "/run/confexts/to-pipe.raw",
                    "not a regular file, directory or block device (fifo)",
                ),
            ],
        },
        Case {
            name: "search dir that is a file is skipped; symlinked search dirs followed in root",
            class: SYS,
            initrd: false,
            fixture: &[
                F("/etc/extensions"),
                L("/run/extensions", "/opt/ext"),
                F("/opt/ext/a.raw"),
                L("/var/lib/extensions", "/nowhere"),
            ],
            images: &[("a", "raw", "/run/extensions/a.raw")],
            skipped: &[],
        },
        Case {
            name: "foo.raw.v picks the newest version",
            class: SYS,
            initrd: false,
            fixture: &[
                F("/var/lib/extensions/foo.raw.v/foo_1.raw"),
                F("/var/lib/extensions/foo.raw.v/foo_1.10.raw"),
                F("/var/lib/extensions/foo.raw.v/foo_1.2.raw"),
                F("/var/lib/extensions/foo.raw.v/foobar_9.raw"),
                F("/var/lib/extensions/foo.raw.v/foo_9.img"),
            ],
            images: &[("foo", "raw", "/var/lib/extensions/foo.raw.v/foo_1.10.raw")],
            skipped: &[],
        },
        Case {
            name: "foo.v picks directories",
            class: SYS,
            initrd: false,
            fixture: &[
                D("/etc/extensions/foo.v/foo_1"),
                D("/etc/extensions/foo.v/foo_2"),
                F("/etc/extensions/foo.v/bar_10"),
                D("/etc/extensions/foo.v/foo_3~rc1"),
                D("/etc/extensions/foo.v/foo_4,1"),
                D("/etc/extensions/foo.v/foo_5_1_x86"),
            ],
            // systemd 262: "3~rc1" is a valid version (newer than 2), "4,1" and "5_1"
            // are not.
            images: &[("foo", "directory", "/etc/extensions/foo.v/foo_3~rc1")],
            skipped: &[],
        },
        Case {
            name: "foo.sysext.raw.v uses suffix .sysext.raw",
            class: SYS,
            initrd: false,
            fixture: &[
                F("/etc/extensions/foo.sysext.raw.v/foo_1.sysext.raw"),
                F("/etc/extensions/foo.sysext.raw.v/foo_2.raw"),
                D("/etc/extensions/bar.sysext.v/bar_3.sysext"),
                D("/etc/extensions/bar.sysext.v/bar_4"),
            ],
            images: &[
                ("bar", "directory", "/etc/extensions/bar.sysext.v/bar_3.sysext"),
                ("foo", "raw", "/etc/extensions/foo.sysext.raw.v/foo_1.sysext.raw"),
            ],
            skipped: &[],
        },
        Case {
            name: "confext keeps .sysext in .v names",
            class: CONF,
            initrd: false,
            fixture: &[F("/run/confexts/foo.sysext.raw.v/foo.sysext_1.raw")],
            images: &[(
                "foo.sysext",
                "raw",
                "/run/confexts/foo.sysext.raw.v/foo.sysext_1.raw",
            )],
            skipped: &[],
        },
        Case {
            // systemd >= 260 (vpick.c, PR #40084): entries of the wrong type are ignored,
            // the best one of the right type wins (before: the pick failed).
            name: "entries of the wrong type are ignored, the best of the right type wins",
            class: SYS,
            initrd: false,
            fixture: &[
                F("/etc/extensions/foo.raw.v/foo_1.raw"),
                D("/etc/extensions/foo.raw.v/foo_2.raw"),
                D("/etc/extensions/bar.v/bar_1"),
                F("/etc/extensions/bar.v/bar_2"),
                S("/etc/extensions/bar.v/bar_3"),
                P("/etc/extensions/baz.raw.v/baz_1.raw"),
                D("/etc/extensions/baz.raw.v/baz_2.raw"),
                L("/etc/extensions/qux.raw.v/qux_1.raw", "/nowhere"),
                F("/etc/extensions/qux.raw.v/qux_2.raw"),
                F("/var/lib/extensions/foo.raw"),
                F("/var/lib/extensions/baz.raw"),
            ],
            images: &[
                ("bar", "directory", "/etc/extensions/bar.v/bar_1"),
                ("baz", "raw", "/var/lib/extensions/baz.raw"),
                ("foo", "raw", "/etc/extensions/foo.raw.v/foo_1.raw"),
            ],
            skipped: &[
                (
                    "/etc/extensions/baz.raw.v",
                    "no matching entry in baz.raw.v (2 of the wrong type, expected a regular file or block device)",
                ),
                ("/etc/extensions/qux.raw.v", "qux_1.raw: dangling symlink"),
                (
                    "/var/lib/extensions/foo.raw",
                    "shadowed by /etc/extensions/foo.raw.v/foo_1.raw",
                ),
            ],
        },
        Case {
            // systemd's test-vpick.c TEST(pick_filter_image_any): a directory filter finds
            // test_5 among .raw files and a newer regular file test_12; without
            // directories, nothing (test_12 is no directory).
            name: "systemd test-vpick pick_filter_image_any vectors",
            class: SYS,
            initrd: false,
            fixture: &[
                F("/etc/extensions/test.v/test_1.raw"),
                F("/etc/extensions/test.v/test_2.raw"),
                F("/etc/extensions/test.v/test_3.raw"),
                D("/etc/extensions/test.v/test_4"),
                D("/etc/extensions/test.v/test_5"),
                F("/etc/extensions/test.v/test_10.txt"),
                F("/etc/extensions/test.v/test_11.img"),
                F("/etc/extensions/test.v/test_12"),
                F("/etc/extensions/other.raw.v/other_1.raw"),
                F("/etc/extensions/other.raw.v/other_3.raw"),
                D("/etc/extensions/other.raw.v/other_9.raw"),
                F("/etc/extensions/other.raw.v/other_10.txt"),
                F("/run/extensions/myimage.v/myimage_12"),
                F("/run/extensions/myimage.v/myimage_3.raw"),
            ],
            images: &[
                ("other", "raw", "/etc/extensions/other.raw.v/other_3.raw"),
                ("test", "directory", "/etc/extensions/test.v/test_5"),
            ],
            skipped: &[
                (
                    "/run/extensions/myimage.v",
                    "no matching entry in myimage.v (2 of the wrong type, expected a directory)",
                ),
            ],
        },
        Case {
            // test-vpick.c TEST(path_pick_resolve): symlinked entries count with the type
            // of their target.
            name: "symlinked .v entries have their target's type",
            class: SYS,
            initrd: false,
            fixture: &[
                D("/var/store/target_dir"),
                F("/var/store/target_file.raw"),
                L("/etc/extensions/resolve.v/resolve_1", "../../../var/store/target_dir"),
                L("/etc/extensions/resolve.v/resolve_2.raw", "/var/store/target_file.raw"),
                L("/run/extensions/resolve.raw.v/resolve_1", "/var/store/target_dir"),
                L("/run/extensions/resolve.raw.v/resolve_2.raw", "/var/store/target_file.raw"),
            ],
            images: &[("resolve", "directory", "/etc/extensions/resolve.v/resolve_1")],
            skipped: &[(
                "/run/extensions/resolve.raw.v",
                "shadowed by /etc/extensions/resolve.v/resolve_1",
            )],
        },
        Case {
            name: "empty or non-matching .v is skipped and does not shadow",
            class: SYS,
            initrd: false,
            fixture: &[
                D("/etc/extensions/foo.raw.v"),
                F("/etc/extensions/bar.raw.v/bar.raw"),
                F("/etc/extensions/bar.raw.v/barx_1.raw"),
                F("/run/extensions/foo.raw"),
            ],
            images: &[("foo", "raw", "/run/extensions/foo.raw")],
            skipped: &[
                ("/etc/extensions/bar.raw.v", "no matching entry in bar.raw.v"),
                ("/etc/extensions/foo.raw.v", "no matching entry in foo.raw.v"),
            ],
        },
        Case {
            name: "picked .v shadows later entries; winner may be a symlink",
            class: SYS,
            initrd: false,
            fixture: &[
                F("/var/store/foo-2.raw"),
                F("/etc/extensions/foo.raw.v/foo_1.raw"),
                L("/etc/extensions/foo.raw.v/foo_2.raw", "/var/store/foo-2.raw"),
                F("/var/lib/extensions/foo.raw"),
                L("/etc/extensions/bar.raw.v", "/var/store/bar.raw.v"),
                D("/var/store/bar.raw.v/bar_5.raw"),
                F("/var/store/bar.raw.v/bar_4.raw"),
            ],
            images: &[
                ("bar", "raw", "/etc/extensions/bar.raw.v/bar_4.raw"),
                ("foo", "raw", "/etc/extensions/foo.raw.v/foo_2.raw"),
            ],
            skipped: &[
                (
                    "/var/lib/extensions/foo.raw",
                    "shadowed by /etc/extensions/foo.raw.v/foo_2.raw",
                ),
            ],
        },
        Case {
            name: "invalid .v names",
            class: SYS,
            initrd: false,
            fixture: &[
                F("/etc/extensions/.raw.v/_1.raw"),
                F("/etc/extensions/.v/_1"),
                F("/etc/extensions/.#x.v/.#x_1"),
            ],
            images: &[],
            skipped: &[
                ("/etc/extensions/.#x.v", "invalid image name \".#x\""),
                ("/etc/extensions/.raw.v", "invalid image name \"\""),
                ("/etc/extensions/.v", "invalid image name \"\""),
            ],
        },
    ];

    fn build(fixture: &[Fx]) -> (tempfile::TempDir, Root) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let inside = |p: &str| root.join(p.trim_start_matches('/'));
        let parent = |p: &Path| std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        for fx in fixture {
            match *fx {
                F(p) => {
                    let p = inside(p);
                    parent(&p);
                    std::fs::write(&p, b"x").unwrap();
                }
                Outside(p) => {
                    let p = t.path().join(p);
                    parent(&p);
                    std::fs::write(&p, b"x").unwrap();
                }
                D(p) => std::fs::create_dir_all(inside(p)).unwrap(),
                L(p, target) => {
                    let p = inside(p);
                    parent(&p);
                    symlink(target, &p).unwrap();
                }
                P(p) => {
                    let p = inside(p);
                    parent(&p);
                    rustix::fs::mkfifoat(rustix::fs::CWD, &p, rustix::fs::Mode::from(0o600))
                        .unwrap();
                }
                S(p) => {
                    let p = inside(p);
                    parent(&p);
                    drop(std::os::unix::net::UnixListener::bind(&p).unwrap());
                }
            }
        }
        let r = Root::open(&root).unwrap();
        (t, r)
    }

    fn check(case: &Case) -> Result<(), String> {
        let (_t, root) = build(case.fixture);
        let d = discover(&root, case.class, case.initrd).map_err(|e| e.to_string())?;
        let dirs = case.class.search_dirs(case.initrd);
        for img in &d.images {
            if img.class != case.class
                || !dirs.contains(&&*img.search_dir)
                || !img.path.starts_with(&*img.search_dir)
                || img.mtime_usec.is_none()
            {
                return Err(format!("bad image fields: {img:?}"));
            }
            let pick_ok = match &img.picked {
                Some(p) => img.path.file_name() == Some(OsStr::new(&p.file_name)),
                None => true,
            };
            if !pick_ok {
                return Err(format!("picked file name differs from path: {img:?}"));
            }
        }
        let images: Vec<(String, &str, String)> = d
            .images
            .iter()
            .map(|i| {
                (
                    i.name.clone(),
                    i.kind.as_str(),
                    i.path.display().to_string(),
                )
            })
            .collect();
        let want: Vec<(String, &str, String)> = case
            .images
            .iter()
            .map(|&(n, k, p)| (n.to_string(), k, p.to_string()))
            .collect();
        if images != want {
            return Err(format!(
                "images: got {images:#?}, want {want:#?}, skipped {:#?}",
                d.skipped
            ));
        }
        let skipped: Vec<(String, String)> = d
            .skipped
            .iter()
            .map(|s| (s.path.display().to_string(), s.reason.clone()))
            .collect();
        let want: Vec<(String, String)> = case
            .skipped
            .iter()
            .map(|&(p, r)| (p.to_string(), r.to_string()))
            .collect();
        if skipped != want {
            return Err(format!("skipped: got {skipped:#?}, want {want:#?}"));
        }
        Ok(())
    }

    #[test]
    fn discover_cases() {
        let failures: Vec<String> = CASES
            .iter()
            .filter_map(|c| check(c).err().map(|e| format!("case {:?}: {e}", c.name)))
            .collect();
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
        assert!(CASES.len() >= 20);
    }

    #[test]
    fn discover_derive_table() {
        use FileType::*;
        let long = format!("{}.raw", "x".repeat(296));
        type Row = (
            &'static [u8],
            FileType,
            Class,
            Result<(&'static str, Candidate), &'static str>,
        );
        let cases: &[Row] = &[
            (
                b"foo.raw",
                RegularFile,
                SYS,
                Ok(("foo", Candidate::Image(ImageKind::Raw))),
            ),
            (
                b"sda.raw",
                BlockDevice,
                SYS,
                Ok(("sda.raw", Candidate::Image(ImageKind::Block))),
            ),
            (
                b"sda.sysext",
                BlockDevice,
                SYS,
                Ok(("sda.sysext", Candidate::Image(ImageKind::Block))),
            ),
            (
                b"foo.v",
                Directory,
                SYS,
                Ok(("foo", Candidate::Pick(String::new()))),
            ),
            (
                b"foo.raw.v",
                Directory,
                SYS,
                Ok(("foo", Candidate::Pick(".raw".into()))),
            ),
            (
                b"foo.sysext.v",
                Directory,
                SYS,
                Ok(("foo", Candidate::Pick(".sysext".into()))),
            ),
            (
                b"foo.sysext.raw.v",
                Directory,
                SYS,
                Ok(("foo", Candidate::Pick(".sysext.raw".into()))),
            ),
            (
                b"foo.confext.raw.v",
                Directory,
                SYS,
                Ok(("foo.confext", Candidate::Pick(".raw".into()))),
            ),
            (
                b"foo.confext.raw.v",
                Directory,
                CONF,
                Ok(("foo", Candidate::Pick(".confext.raw".into()))),
            ),
            (
                b"foo.raw.sysext.v",
                Directory,
                SYS,
                Ok(("foo.raw", Candidate::Pick(".sysext".into()))),
            ),
            (
                b"tty0",
                CharacterDevice,
                SYS,
                Err("not a regular file, directory or block device (character device)"),
            ),
            (
                b"x.raw",
                Symlink,
                SYS,
                Err("not a regular file, directory or block device (symlink)"),
            ),
            (
                b"caf\xe9.raw",
                RegularFile,
                SYS,
                Err("invalid image name \"caf\\xe9\" (not UTF-8)"),
            ),
            (
                b"\xff.v",
                Directory,
                SYS,
                Err("invalid image name \"\\xff\" (not UTF-8)"),
            ),
        ];
        for (entry, ft, class, want) in cases {
            let got = derive(entry, *ft, *class);
            let want = want
                .as_ref()
                .map(|(n, c)| (n.to_string(), c))
                .map_err(|e| e.to_string());
            let got = got
                .as_ref()
                .map(|(n, c)| (n.clone(), c))
                .map_err(|e| e.clone());
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(entry));
        }
        // No file system accepts a 300-byte name, so the length rule is tested here.
        let err = derive(long.as_bytes(), RegularFile, SYS).unwrap_err();
        assert!(err.starts_with("invalid image name \"xxx"), "{err}");
        let ok = format!("{}.raw", "x".repeat(251));
        assert_eq!(
            derive(ok.as_bytes(), RegularFile, SYS).unwrap().0.len(),
            251
        );
    }

    #[test]
    fn discover_non_utf8_and_long_names() {
        let (t, root) = build(&[D("/etc/extensions/foo.raw.v"), F("/etc/extensions/ok.raw")]);
        let dir = t.path().join("root/etc/extensions");
        std::fs::write(dir.join(OsStr::from_bytes(b"caf\xe9.raw")), b"x").unwrap();
        std::fs::create_dir(dir.join(OsStr::from_bytes(b"b\xffd"))).unwrap();
        let long = format!("{}.raw", "y".repeat(251));
        std::fs::write(dir.join(&long), b"x").unwrap();
        // A non-UTF-8 entry in a .v directory is ignored, not fatal.
        std::fs::write(dir.join("foo.raw.v/foo_1.raw"), b"x").unwrap();
        std::fs::write(
            dir.join(OsStr::from_bytes(b"foo.raw.v/foo_9\xff.raw")),
            b"x",
        )
        .unwrap();
        let d = discover(&root, SYS, false).unwrap();
        let names: Vec<&str> = d.images.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["foo", "ok", &"y".repeat(251)]);
        assert_eq!(d.images[0].picked.as_ref().unwrap().file_name, "foo_1.raw");
        let skipped: Vec<(&[u8], &str)> = d
            .skipped
            .iter()
            .map(|s| (s.path.as_os_str().as_bytes(), s.reason.as_str()))
            .collect();
        assert_eq!(
            skipped,
            [
                (
                    &b"/etc/extensions/b\xffd"[..],
                    "invalid image name \"b\\xffd\" (not UTF-8)"
                ),
                (
                    &b"/etc/extensions/caf\xe9.raw"[..],
                    "invalid image name \"caf\\xe9\" (not UTF-8)"
                ),
            ]
        );
    }

    #[test]
    fn discover_mtime_of_resolved_entry() {
        let (t, root) = build(&[
            F("/var/store/foo_1.raw"),
            L("/etc/extensions/foo.raw", "/var/store/foo_1.raw"),
        ]);
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_234_567_890_123_456);
        std::fs::File::options()
            .write(true)
            .open(t.path().join("root/var/store/foo_1.raw"))
            .unwrap()
            .set_modified(when)
            .unwrap();
        let d = discover(&root, SYS, false).unwrap();
        assert_eq!(d.images[0].mtime_usec, Some(1_234_567_890_123_456));
    }

    #[test]
    fn discover_directory_time_is_birth_time() {
        // systemd's image_make(): a directory's time is its birth time, not the mtime
        // of its top level (here set far in the past after creating it).
        let (t, root) = build(&[D("/etc/extensions/foo")]);
        let dir = t.path().join("root/etc/extensions/foo");
        let born = rustix::fs::statx(
            rustix::fs::CWD,
            &dir,
            AtFlags::empty(),
            rustix::fs::StatxFlags::BTIME,
        )
        .unwrap();
        if born.stx_mask & rustix::fs::StatxFlags::BTIME.bits() == 0 {
            eprintln!("SKIP: no birth time on this file system");
            return;
        }
        let old = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_234_567_890_123_456);
        std::fs::File::open(&dir)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let d = discover(&root, SYS, false).unwrap();
        let want =
            born.stx_btime.tv_sec as u64 * 1_000_000 + u64::from(born.stx_btime.tv_nsec) / 1000;
        assert_eq!(d.images[0].mtime_usec, Some(want));
    }

    #[test]
    fn discover_search_dir_error_aborts() {
        let (t, root) = build(&[
            F("/etc/extensions/a.raw"),
            L("/var/lib/extensions", "/var/lib/extensions"),
        ]);
        let e = discover(&root, SYS, false).unwrap_err();
        assert_eq!(e.path, t.path().join("root/var/lib/extensions"));
        assert_eq!(e.source.raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn discover_root_is_initrd() {
        for (fixture, want) in [
            (&[][..], false),
            (&[F("/etc/os-release")][..], false),
            (&[F("/etc/initrd-release")][..], true),
            (
                &[
                    L("/etc/initrd-release", "/usr/lib/initrd-release"),
                    F("/usr/lib/initrd-release"),
                ][..],
                true,
            ),
            (&[L("/etc/initrd-release", "/nowhere")][..], false),
            (
                &[
                    Outside("etc/initrd-release"),
                    L("/etc/initrd-release", "../../etc/initrd-release"),
                ][..],
                false,
            ),
        ] {
            let (_t, root) = build(fixture);
            assert_eq!(root_is_initrd(&root), want);
        }
    }
}
