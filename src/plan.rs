//! From discovered, matched extensions to a [`MergePlan`]: which layers go on which
//! hierarchy, in which order, with which options — a plain value that tests compare
//! and that [`crate::merge`] executes. Planning only reads files.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, OFlags, ResolveFlags};

use crate::class::{Class, Scope};
use crate::discover::{self, Discovery, Image, ImageKind, Skipped};
use crate::fsutil::{self, Root};
use crate::options::{hierarchy_component, MutableMode, Options};
use crate::os_release::OsReleaseError;
use crate::release::{self, HostIdentity, ReleaseFile, Verdict};
use crate::vpick::strverscmp_improved;

/// Base directory of persistent upper dirs, for both classes (systemd's
/// `MUTABLE_EXTENSIONS_BASE_DIR`).
pub const MUTABLE_BASE: &str = "/var/lib/extensions.mutable";

/// An extension with systemd's verdict on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// What discovery found.
    pub image: Image,
    /// Match or the reason it is skipped.
    pub verdict: Verdict,
    /// The extension-release file used (relative to the extension), if one was found.
    pub release: Option<ReleaseFile>,
}

/// One extension layer of one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// Extension name.
    pub name: String,
    /// The extension's root inside the root (`/var/lib/extensions/foo`).
    pub image_path: PathBuf,
}

/// Where a writable overlay keeps its changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upper {
    /// A persistent directory (path inside the root, symlinks resolved) and the work dir
    /// beside it.
    Persistent {
        /// Upper dir.
        upper: PathBuf,
        /// Work dir (`<parent>/.systemd-<h>-workdir`).
        work: PathBuf,
        /// The upper dir is the host hierarchy itself (then it is not a lower layer).
        is_hierarchy: bool,
    },
    /// A tmpfs that lives as long as the overlay.
    Ephemeral,
}

/// The overlay for one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HierarchyPlan {
    /// The hierarchy (`/usr`).
    pub hierarchy: String,
    /// Extension layers, topmost first.
    pub layers: Vec<Layer>,
    /// A persistent mutable dir used as an extra lower layer just below the metadata
    /// (`import`, `ephemeral-import`).
    pub import: Option<PathBuf>,
    /// The host hierarchy is the bottom layer (it exists, is not empty and is not the upper).
    pub host_lower: bool,
    /// The host hierarchy exists (else its mount point is created).
    pub host_exists: bool,
    /// Permission bits of the merged tree's root (the host hierarchy's, or 0755).
    pub mode: u32,
    /// Writable overlay's upper, if any.
    pub upper: Option<Upper>,
    /// Mount flags.
    pub flags: MountFlags,
}

/// Flags of the overlay mount (systemd: sysext `ro,nodev`; confext adds `nosuid,noexec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountFlags {
    /// `ro`.
    pub read_only: bool,
    /// `nodev`.
    pub nodev: bool,
    /// `nosuid`.
    pub nosuid: bool,
    /// `noexec`.
    pub noexec: bool,
}

/// What a merge of one class would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergePlan {
    /// The class.
    pub class: Class,
    /// The host identity matched against.
    pub host: HostIdentity,
    /// Every discovered extension with its verdict, sorted by name.
    pub candidates: Vec<Candidate>,
    /// Directory entries discovery did not use, with reasons.
    pub skipped: Vec<Skipped>,
    /// Names of the accepted extensions, ascending (`strverscmp_improved`): the last one
    /// is topmost.
    pub extensions: Vec<String>,
    /// The mutable mode.
    pub mutable: MutableMode,
    /// Hierarchies that get an overlay, in the order given.
    pub hierarchies: Vec<HierarchyPlan>,
    /// Hierarchies no extension touches (left alone).
    pub untouched: Vec<String>,
}

impl MergePlan {
    /// The contents of the `extensions` / `confexts` metadata file.
    pub fn list_file(&self) -> String {
        let mut s = self.extensions.join("\n");
        if !s.is_empty() {
            s.push('\n');
        }
        s
    }

    /// A stable description of what this plan merges, used to skip a refresh when
    /// nothing changed: names, image paths with device, inode and mtime, mode, layers.
    pub fn fingerprint(&self, root: &Root) -> String {
        let mut s = format!("mutable={}\n", self.mutable.as_str());
        for c in self
            .candidates
            .iter()
            .filter(|c| c.verdict == Verdict::Match)
        {
            let id = root
                .open_at(&c.image.path, OFlags::PATH)
                .and_then(|fd| rustix::fs::fstat(&fd).map_err(io::Error::from))
                .map(|st| {
                    format!(
                        "{}:{}:{}.{}",
                        st.st_dev, st.st_ino, st.st_mtime, st.st_mtime_nsec
                    )
                })
                .unwrap_or_default();
            s += &format!("ext {} {} {}\n", c.image.name, c.image.path.display(), id);
        }
        for h in &self.hierarchies {
            let names: Vec<&str> = h.layers.iter().map(|l| l.name.as_str()).collect();
            s += &format!(
                "h {} {} host={} {:?} {:?}\n",
                h.hierarchy,
                names.join(","),
                h.host_lower,
                h.upper,
                h.flags
            );
        }
        s
    }
}

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The root could not be opened.
    #[error("{path}: cannot open root: {source}")]
    Root {
        /// The root.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Host os-release problem.
    #[error(transparent)]
    OsRelease(#[from] OsReleaseError),
    /// Discovery failed.
    #[error("failed to discover extensions: {0}")]
    Discover(#[from] discover::DiscoverError),
    /// Bad hierarchy list.
    #[error("{0}")]
    Hierarchies(String),
    /// A file or directory that planning needs could not be read.
    #[error("{path}: {reason}")]
    Io {
        /// Host path.
        path: PathBuf,
        /// Why.
        reason: String,
        /// errno.
        errno: i32,
    },
}

impl PlanError {
    /// errno for the C ABI.
    pub fn errno(&self) -> i32 {
        match self {
            PlanError::Root { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            PlanError::OsRelease(e) => e.errno(),
            PlanError::Discover(e) => e.source.raw_os_error().unwrap_or(libc::EIO),
            PlanError::Hierarchies(_) => libc::EINVAL,
            PlanError::Io { errno, .. } => *errno,
        }
    }
}

fn io_err(root: &Root, rel: &Path, e: io::Error) -> PlanError {
    PlanError::Io {
        path: root.display_path(rel),
        reason: e.to_string(),
        errno: e.raw_os_error().unwrap_or(libc::EIO),
    }
}

/// Scope of a root: `initrd` iff `<root>/etc/initrd-release` exists (systemd v260+).
pub fn root_scope(root: &Root) -> (bool, Scope) {
    let initrd = discover::root_is_initrd(root);
    (initrd, if initrd { Scope::Initrd } else { Scope::System })
}

/// Discovers the class's extensions and gives each one systemd's verdict.
pub fn evaluate(
    root: &Root,
    class: Class,
    host: &HostIdentity,
    initrd: bool,
    force: bool,
) -> Result<(Vec<Candidate>, Vec<Skipped>), PlanError> {
    let Discovery { images, skipped } = discover::discover(root, class, initrd)?;
    let candidates = images
        .into_iter()
        .map(|image| {
            let (verdict, release) = judge(root, &image, class, host, force);
            Candidate {
                image,
                verdict,
                release,
            }
        })
        .collect();
    Ok((candidates, skipped))
}

fn judge(
    root: &Root,
    image: &Image,
    class: Class,
    host: &HostIdentity,
    force: bool,
) -> (Verdict, Option<ReleaseFile>) {
    if image.kind != ImageKind::Directory {
        return (
            Verdict::Mismatch(format!(
                "{} images are not supported by this build yet",
                image.kind.as_str()
            )),
            None,
        );
    }
    let fd = match root.open_at(&image.path, OFlags::RDONLY | OFlags::DIRECTORY) {
        Ok(fd) => fd,
        Err(e) => return (Verdict::Mismatch(format!("cannot open: {e}")), None),
    };
    let found = release::find_extension_release(fd.as_fd(), &image.name, class);
    if force {
        return (Verdict::Match, found.ok());
    }
    match found {
        Ok(rel) => (
            release::validate(&image.name, class, host, &rel.env),
            Some(rel),
        ),
        // systemd: a directory image without usable release data is skipped, not an error.
        Err(e) => (
            Verdict::Mismatch(format!("no usable extension-release: {e}")),
            None,
        ),
    }
}

/// Opens `rel` inside `dir`, `None` on ENOENT.
fn open_opt(dir: BorrowedFd<'_>, rel: &str, flags: OFlags) -> io::Result<Option<OwnedFd>> {
    match fsutil::open_in(dir, Path::new(rel), flags, ResolveFlags::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// True if the directory `fd` has any entry but `.` and `..` (hidden ones count).
pub fn dir_is_empty(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let fd = rustix::fs::openat(
        fd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let mut dir = rustix::fs::Dir::read_from(&fd)?;
    while let Some(e) = dir.read() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Makes the plan for one class.
pub fn plan(opts: &Options, class: Class) -> Result<MergePlan, PlanError> {
    let root = Root::open(&opts.root).map_err(|source| PlanError::Root {
        path: opts.root.clone(),
        source,
    })?;
    plan_in(&root, opts, class)
}

/// [`plan`] with an already opened root.
pub fn plan_in(root: &Root, opts: &Options, class: Class) -> Result<MergePlan, PlanError> {
    let hierarchies = opts
        .hierarchies_for(class)
        .map_err(PlanError::Hierarchies)?;
    let (initrd, scope) = root_scope(root);
    let host = HostIdentity::load(root, scope)?;
    let (candidates, skipped) = evaluate(root, class, &host, initrd, opts.force)?;

    let mut accepted: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.verdict == Verdict::Match)
        .collect();
    accepted.sort_by(|a, b| strverscmp_improved(&a.image.name, &b.image.name));
    let extensions: Vec<String> = accepted.iter().map(|c| c.image.name.clone()).collect();

    let flags = MountFlags {
        read_only: true,
        nodev: true,
        nosuid: class == Class::Confext,
        noexec: opts.noexec.unwrap_or(class == Class::Confext),
    };

    let mut planned = Vec::new();
    let mut untouched = Vec::new();
    // Extension roots, opened once.
    let mut ext_fds = Vec::new();
    for c in accepted.iter().rev() {
        let fd = root
            .open_at(&c.image.path, OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|e| io_err(root, &c.image.path, e))?;
        ext_fds.push((c, fd));
    }
    for h in &hierarchies {
        let rel = h.trim_start_matches('/');
        let mut layers = Vec::new();
        for (c, fd) in &ext_fds {
            let sub = match open_opt(fd.as_fd(), rel, OFlags::PATH | OFlags::DIRECTORY) {
                Ok(s) => s,
                Err(e) => return Err(io_err(root, &c.image.path.join(rel), e)),
            };
            let Some(sub) = sub else { continue };
            if !dir_is_empty(sub.as_fd()).map_err(|e| io_err(root, &c.image.path.join(rel), e))? {
                layers.push(Layer {
                    name: c.image.name.clone(),
                    image_path: c.image.path.clone(),
                });
            }
        }
        if layers.is_empty() {
            untouched.push(h.clone());
            continue;
        }
        planned.push(plan_hierarchy(root, class, h, layers, opts.mutable, flags)?);
    }

    Ok(MergePlan {
        class,
        host,
        candidates,
        skipped,
        extensions,
        mutable: opts.mutable,
        hierarchies: planned,
        untouched,
    })
}

fn plan_hierarchy(
    root: &Root,
    class: Class,
    h: &str,
    layers: Vec<Layer>,
    mode: MutableMode,
    mut flags: MountFlags,
) -> Result<HierarchyPlan, PlanError> {
    // The host's own directory, also when our merge covers it (refresh).
    let host_fd = crate::hierarchy::HostDir::open(root, class, h)
        .and_then(|d| d.reader())
        .map_err(|e| io_err(root, Path::new(h), e))?;
    let (host_exists, host_mode, host_empty, host_id) = match &host_fd {
        Some(fd) => {
            let st = rustix::fs::fstat(fd).map_err(|e| io_err(root, Path::new(h), e.into()))?;
            let empty = dir_is_empty(fd.as_fd()).map_err(|e| io_err(root, Path::new(h), e))?;
            (
                true,
                st.st_mode & 0o7777,
                empty,
                Some((st.st_dev, st.st_ino)),
            )
        }
        None => (false, 0o755, true, None),
    };
    let comp = hierarchy_component(h);
    let mutable_rel = format!("{MUTABLE_BASE}/{comp}");
    let mut upper = None;
    let mut import = None;
    let mut host_is_upper = false;

    // The persistent dir, if it exists: (resolved path inside root, is it the hierarchy).
    let persistent = |create: bool| -> Result<Option<(PathBuf, bool)>, PlanError> {
        let fd = match open_opt(root.fd(), &mutable_rel, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(Some(fd)) => fd,
            Ok(None) if create => return Ok(Some((PathBuf::from(&mutable_rel), false))),
            Ok(None) => return Ok(None),
            Err(e) => return Err(io_err(root, Path::new(&mutable_rel), e)),
        };
        let st =
            rustix::fs::fstat(&fd).map_err(|e| io_err(root, Path::new(&mutable_rel), e.into()))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return Err(io_err(
                root,
                Path::new(&mutable_rel),
                io::Error::from_raw_os_error(libc::ENOTDIR),
            ));
        }
        let is_h = host_id == Some((st.st_dev, st.st_ino));
        let resolved = resolved_in_root(root, &fd).unwrap_or_else(|| PathBuf::from(&mutable_rel));
        Ok(Some((resolved, is_h)))
    };
    let check_mode = |path: &Path| -> Result<(), PlanError> {
        if let Ok(fd) = root.open_at(path, OFlags::PATH) {
            if let Ok(st) = rustix::fs::fstat(&fd) {
                let m = st.st_mode & 0o777;
                if m != host_mode & 0o777 {
                    return Err(PlanError::Io {
                        path: root.display_path(path),
                        reason: format!("mutable directory has mode {m:04o}, ought to have mode {:04o} (that of {h})", host_mode & 0o777),
                        errno: libc::EINVAL,
                    });
                }
            }
        }
        Ok(())
    };
    match mode {
        MutableMode::No => {}
        MutableMode::Yes | MutableMode::Auto => {
            if let Some((path, is_h)) = persistent(mode == MutableMode::Yes)? {
                if !is_h {
                    check_mode(&path)?;
                }
                let parent = path.parent().unwrap_or(Path::new("/")).to_path_buf();
                upper = Some(Upper::Persistent {
                    work: parent.join(format!(".systemd-{comp}-workdir")),
                    upper: path,
                    is_hierarchy: is_h,
                });
                host_is_upper = is_h;
            }
        }
        MutableMode::Import => {
            if let Some((path, is_h)) = persistent(false)? {
                if is_h {
                    return Err(PlanError::Io {
                        path: root.display_path(&path),
                        reason: "mutable directory is the hierarchy itself, cannot import it"
                            .into(),
                        errno: libc::ELOOP,
                    });
                }
                import = Some(path);
            }
        }
        MutableMode::Ephemeral | MutableMode::EphemeralImport => {
            if mode == MutableMode::EphemeralImport {
                if let Some((path, is_h)) = persistent(false)? {
                    if is_h {
                        return Err(PlanError::Io {
                            path: root.display_path(&path),
                            reason: "mutable directory is the hierarchy itself, cannot import it"
                                .into(),
                            errno: libc::ELOOP,
                        });
                    }
                    import = Some(path);
                }
            }
            upper = Some(Upper::Ephemeral);
        }
    }
    if upper.is_some() {
        flags.read_only = false;
    }
    Ok(HierarchyPlan {
        hierarchy: h.to_string(),
        layers,
        import,
        host_lower: host_exists && !host_empty && !host_is_upper,
        host_exists,
        mode: host_mode,
        upper,
        flags,
    })
}

/// The path of `fd` inside the root (symlinks resolved), from `/proc/self/fd`.
pub fn resolved_in_root(root: &Root, fd: &OwnedFd) -> Option<PathBuf> {
    let real = std::fs::read_link(crate::mount::fd_path(fd.as_fd())).ok()?;
    let root_real = std::fs::read_link(crate::mount::fd_path(root.fd())).ok()?;
    let rel = real.strip_prefix(&root_real).ok()?;
    Some(Path::new("/").join(rel))
}
