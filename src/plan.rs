//! From discovered, matched extensions to a [`MergePlan`]: which layers go on which
//! hierarchy, in which order, with which options — a plain value that tests compare
//! and that [`crate::sys::apply`] executes. Planning only reads files.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, OFlags, ResolveFlags};

use crate::format::class::{Class, Scope};
use crate::format::escape::esc;
use crate::format::os_release::OsReleaseError;
use crate::inspect::discover::{self, Discovery, Image, ImageKind, Skipped};
use crate::inspect::fsutil::{self, Root};
use crate::inspect::release::{self, HostIdentity, ReleaseFile, Verdict};
use crate::options::{hierarchy_component, MutableMode, Options};

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
}

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The root could not be opened.
    #[error("{}: cannot open root: {}", esc(.path), crate::log::os_text(.source))]
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
    /// A disk image is broken or refused (systemd fails the merge for it).
    #[error("{0}")]
    Image(String),
    /// Bad hierarchy list.
    #[error("{0}")]
    Hierarchies(String),
    /// A file or directory that planning needs could not be read.
    #[error("{}: {reason}", esc(.path))]
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
            PlanError::Image(_) => libc::EIO,
            PlanError::Io { errno, .. } => *errno,
        }
    }
}

fn io_err(root: &Root, rel: &Path, e: io::Error) -> PlanError {
    PlanError::Io {
        path: root.display_path(rel),
        reason: crate::log::os_text(&e),
        errno: e.raw_os_error().unwrap_or(libc::EIO),
    }
}

/// Scope of a root: `initrd` iff `<root>/etc/initrd-release` exists (systemd v260+).
pub fn root_scope(root: &Root) -> (bool, Scope) {
    let initrd = discover::root_is_initrd(root);
    (initrd, if initrd { Scope::Initrd } else { Scope::System })
}

/// The open root directories of accepted extensions, by name: opened once while
/// planning and used again when mounting, so what was checked is what is mounted.
#[derive(Debug, Default)]
pub struct ExtRoots(
    pub BTreeMap<String, OwnedFd>,
    pub LayerFds,
    /// The identities of the accepted directory extensions, taken from their open
    /// roots while planning (for [`crate::sys::origin::render`]).
    pub BTreeMap<String, crate::sys::origin::Identity>,
);

/// Open layer directories by (extension name, hierarchy).
pub type LayerFds = BTreeMap<(String, String), OwnedFd>;

/// How an extension's root directory is reached. Directories are opened inside the
/// root; disk images are set up and mounted by an opener from [`crate::format`].
pub trait Opener {
    /// Opens (or mounts) `image` and returns its root directory; `Ok(None)` when this
    /// opener does not open such images (listing without root: disk images); `Err`
    /// with the image's path and the reason when it is broken or refused — that fails
    /// the whole merge, as in systemd (`plan` records it as [`Verdict::Unusable`]).
    fn open(&mut self, root: &Root, image: &Image) -> Result<Option<OwnedFd>, String>;
}

/// Opens directory extensions only.
#[derive(Debug, Default)]
pub struct DirOpener;

impl Opener for DirOpener {
    fn open(&mut self, root: &Root, image: &Image) -> Result<Option<OwnedFd>, String> {
        if image.kind != ImageKind::Directory {
            return Ok(None);
        }
        // Opened by discovery, by its name in the search directory: no second lookup.
        if let Some(fd) = image.opened.take() {
            return Ok(Some(fd));
        }
        root.open_at(&image.path, OFlags::RDONLY | OFlags::DIRECTORY)
            .map(Some)
            .map_err(|e| {
                format!(
                    "{}: cannot open: {}",
                    esc(&root.display_path(&image.path)),
                    crate::log::os_text(&e)
                )
            })
    }
}

/// Discovers the class's extensions and gives each one systemd's verdict.
pub fn evaluate(
    root: &Root,
    class: Class,
    host: &HostIdentity,
    initrd: bool,
    force: bool,
) -> Result<(Vec<Candidate>, Vec<Skipped>), PlanError> {
    let (c, s, _) = evaluate_with(root, class, host, initrd, force, &mut DirOpener)?;
    Ok((c, s))
}

/// What evaluation does with an extension its [`Opener`] cannot use (a disk image that
/// is broken or refused by the image policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnusable {
    /// Stop with [`PlanError::Image`]: a merge is all or nothing, as in systemd.
    Fail,
    /// Give it [`Verdict::Unusable`] with the error and go on, so that every entry is
    /// shown (`plan`, `--dry-run`, listing).
    Record,
}

/// [`evaluate`] with an [`Opener`]; also returns the roots of the accepted extensions.
/// The first unusable extension fails it ([`OnUnusable::Fail`]).
pub fn evaluate_with(
    root: &Root,
    class: Class,
    host: &HostIdentity,
    initrd: bool,
    force: bool,
    opener: &mut dyn Opener,
) -> Result<(Vec<Candidate>, Vec<Skipped>, ExtRoots), PlanError> {
    evaluate_mode(root, class, host, initrd, force, opener, OnUnusable::Fail)
}

/// [`evaluate_with`] for showing: every discovered extension gets a verdict, a broken
/// or refused disk image [`Verdict::Unusable`] ([`OnUnusable::Record`]). What the
/// opener mounted is released with it.
pub fn evaluate_all(
    root: &Root,
    class: Class,
    host: &HostIdentity,
    initrd: bool,
    force: bool,
    opener: &mut dyn Opener,
) -> Result<(Vec<Candidate>, Vec<Skipped>), PlanError> {
    let (c, s, _) = evaluate_mode(root, class, host, initrd, force, opener, OnUnusable::Record)?;
    Ok((c, s))
}

fn evaluate_mode(
    root: &Root,
    class: Class,
    host: &HostIdentity,
    initrd: bool,
    force: bool,
    opener: &mut dyn Opener,
    on_unusable: OnUnusable,
) -> Result<(Vec<Candidate>, Vec<Skipped>, ExtRoots), PlanError> {
    let Discovery { images, skipped } = discover::discover(root, class, initrd)?;
    let mut roots = ExtRoots::default();
    let mut candidates = Vec::with_capacity(images.len());
    for image in images {
        let opened = match (opener.open(root, &image), on_unusable) {
            (Ok(fd), _) => Ok(fd),
            (Err(e), OnUnusable::Record) => Err(e),
            (Err(e), OnUnusable::Fail) => return Err(PlanError::Image(e)),
        };
        let (verdict, release) = match opened {
            Err(e) => (Verdict::Unusable(e), None),
            Ok(None) => (
                Verdict::Mismatch(format!(
                    "{} image: its extension-release is read when it is mounted (merge, as root)",
                    image.kind.as_str()
                )),
                None,
            ),
            Ok(Some(fd)) => {
                let (v, mut r) = judge(fd.as_fd(), &image, class, host, force);
                // Only what matching, reload and reports use is kept.
                if let Some(r) = &mut r {
                    r.env
                        .retain_keys(|k| crate::inspect::release::RELEASE_KEYS.contains(&k));
                }
                if v == Verdict::Match {
                    roots.0.insert(image.name.clone(), fd);
                }
                (v, r)
            }
        };
        candidates.push(Candidate {
            image,
            verdict,
            release,
        });
    }
    Ok((candidates, skipped, roots))
}

fn judge(
    fd: BorrowedFd<'_>,
    image: &Image,
    class: Class,
    host: &HostIdentity,
    force: bool,
) -> (Verdict, Option<ReleaseFile>) {
    let found = release::find_extension_release(fd, &image.name, class);
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

/// True if the directory `fd` (opened for reading) has no entry but `.` and `..`
/// (hidden ones count). Reads with `getdents64` on `fd` itself: no extra open.
pub fn dir_is_empty(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1024];
    let mut dir = rustix::fs::RawDir::new(fd, &mut buf);
    while let Some(e) = dir.next() {
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
    plan_with(root, opts, class, &mut DirOpener).map(|(p, _)| p)
}

/// [`plan_in`] with an [`Opener`]; also returns the open roots of the accepted
/// extensions for [`crate::sys::apply::execute`]. A broken or refused disk image fails it
/// with [`PlanError::Image`] (a merge is all or nothing).
pub fn plan_with(
    root: &Root,
    opts: &Options,
    class: Class,
    opener: &mut dyn Opener,
) -> Result<(MergePlan, ExtRoots), PlanError> {
    plan_mode(root, opts, class, opener, OnUnusable::Fail)
}

/// The plan as `plan` and `--dry-run` show it: like [`plan_with`], but a broken or
/// refused disk image is one candidate with [`Verdict::Unusable`] and the error, and
/// every other extension is still evaluated. Errors are those of the plan itself (root,
/// os-release, discovery, hierarchies).
pub fn plan_all_with(
    root: &Root,
    opts: &Options,
    class: Class,
    opener: &mut dyn Opener,
) -> Result<MergePlan, PlanError> {
    plan_mode(root, opts, class, opener, OnUnusable::Record).map(|(p, _)| p)
}

fn plan_mode(
    root: &Root,
    opts: &Options,
    class: Class,
    opener: &mut dyn Opener,
    on_unusable: OnUnusable,
) -> Result<(MergePlan, ExtRoots), PlanError> {
    let hierarchies = opts
        .hierarchies_for(class)
        .map_err(PlanError::Hierarchies)?;
    let (initrd, scope) = root_scope(root);
    let host = HostIdentity::load(root, scope)?;
    let (candidates, skipped, mut roots) =
        evaluate_mode(root, class, &host, initrd, opts.force, opener, on_unusable)?;
    let mut layer_fds = LayerFds::new();

    let mut accepted: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.verdict == Verdict::Match)
        .collect();
    crate::format::vpick::sort_by_version(&mut accepted, |c| c.image.name.as_str());
    let extensions: Vec<String> = accepted.iter().map(|c| c.image.name.clone()).collect();

    let flags = MountFlags {
        read_only: true,
        nodev: true,
        nosuid: class == Class::Confext,
        noexec: opts.noexec.unwrap_or(class == Class::Confext),
    };

    let mut planned = Vec::new();
    let mut untouched = Vec::new();
    // Topmost first.
    let mut ext_fds = Vec::new();
    for c in accepted.iter().rev() {
        if let Some(fd) = roots.0.get(&c.image.name) {
            ext_fds.push((*c, fd));
        }
    }
    for h in &hierarchies {
        let rel = h.trim_start_matches('/');
        let mut layers = Vec::new();
        for (c, fd) in &ext_fds {
            let sub = match open_opt(fd.as_fd(), rel, OFlags::RDONLY | OFlags::DIRECTORY) {
                Ok(s) => s,
                Err(e) => return Err(io_err(root, &c.image.path.join(rel), e)),
            };
            let Some(sub) = sub else { continue };
            if !dir_is_empty(sub.as_fd()).map_err(|e| io_err(root, &c.image.path.join(rel), e))? {
                layers.push(Layer {
                    name: c.image.name.clone(),
                    image_path: c.image.path.clone(),
                });
                // Kept for mounting: the layer is the directory that was looked at.
                layer_fds.insert((c.image.name.clone(), h.clone()), sub);
            }
        }
        if layers.is_empty() {
            untouched.push(h.clone());
            continue;
        }
        planned.push(plan_hierarchy(root, class, h, layers, opts.mutable, flags)?);
    }

    roots.1 = layer_fds;
    for (c, fd) in &ext_fds {
        if c.image.kind == ImageKind::Directory {
            if let Ok(id) = crate::sys::origin::identity(fd.as_fd()) {
                roots.2.insert(c.image.name.clone(), id);
            }
        }
    }
    // The executor needs only the layer directories: fewer open files with many
    // extensions (the extension roots of disk images stay mounted in the opener).
    roots.0.clear();
    let plan = MergePlan {
        class,
        host,
        candidates,
        skipped,
        extensions,
        mutable: opts.mutable,
        hierarchies: planned,
        untouched,
    };
    Ok((plan, roots))
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
    let host_fd = crate::sys::hierarchy::HostDir::open(root, class, h)
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
                        reason: format!(
                            "mutable directory has mode {m:04o}, ought to have mode {:04o} (that of {})",
                            host_mode & 0o777,
                            esc(h)
                        ),
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
        MutableMode::Import | MutableMode::Ephemeral | MutableMode::EphemeralImport => {
            if mode != MutableMode::Ephemeral {
                // The persistent dir as an extra lower layer (systemd: ELOOP if it is
                // the hierarchy itself).
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
            if mode != MutableMode::Import {
                upper = Some(Upper::Ephemeral);
            }
        }
    }
    if upper.is_some() {
        flags.read_only = false;
    }
    let host_lower = host_exists && !host_empty && !host_is_upper;
    // overlayfs refuses more than OVL_MAX_STACK lower layers; say so before anything
    // is mounted (the kernel's own message names no hierarchy and no extension count).
    let lowers = 1 + usize::from(import.is_some()) + layers.len() + usize::from(host_lower);
    if lowers > OVERLAYFS_MAX_LOWER {
        return Err(PlanError::Io {
            path: root.display_path(h),
            reason: format!(
                "{} extensions to merge, {lowers} lower layers with the metadata layer{}{}: \
                 more than the kernel's overlayfs limit of {OVERLAYFS_MAX_LOWER} lower layers \
                 (at most {} extensions here)",
                layers.len(),
                if import.is_some() {
                    ", the imported mutable directory"
                } else {
                    ""
                },
                if host_lower {
                    " and the host's directory"
                } else {
                    ""
                },
                layers.len() - (lowers - OVERLAYFS_MAX_LOWER),
            ),
            errno: libc::E2BIG,
        });
    }
    Ok(HierarchyPlan {
        hierarchy: h.to_string(),
        layers,
        import,
        host_lower,
        host_exists,
        mode: host_mode,
        upper,
        flags,
    })
}

/// The most lower layers one overlayfs mount takes (`OVL_MAX_STACK`,
/// fs/overlayfs/params.h): with the metadata layer and the host's directory, 498
/// extensions fit in one hierarchy.
pub const OVERLAYFS_MAX_LOWER: usize = 500;

/// The path of `fd` inside the root (symlinks resolved), from `/proc/self/fd`.
pub fn resolved_in_root(root: &Root, fd: &OwnedFd) -> Option<PathBuf> {
    let real = std::fs::read_link(crate::sys::mount::fd_path(fd.as_fd())).ok()?;
    let root_real = std::fs::read_link(crate::sys::mount::fd_path(root.fd())).ok()?;
    let rel = real.strip_prefix(&root_real).ok()?;
    Some(Path::new("/").join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn w(root: &Path, rel: &str, content: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    fn sysext(root: &Path, dir: &str, name: &str, release: &str, files: &[&str]) {
        let base = format!("{dir}/{name}");
        w(
            root,
            &format!("{base}/usr/lib/extension-release.d/extension-release.{name}"),
            release,
        );
        for f in files {
            w(root, &format!("{base}/{f}"), name);
        }
    }

    fn fixture() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        w(
            r,
            "etc/os-release",
            "ID=debian\nVERSION_ID=12\nSYSEXT_LEVEL=1.0\n",
        );
        w(r, "usr/bin/host", "host");
        fs::create_dir_all(r.join("opt")).unwrap();
        t
    }

    fn opts(r: &Path) -> Options {
        Options {
            root: r.to_path_buf(),
            ..Options::default()
        }
    }

    fn layer_names(p: &MergePlan, h: &str) -> Vec<String> {
        p.hierarchies
            .iter()
            .find(|x| x.hierarchy == h)
            .map(|x| x.layers.iter().map(|l| l.name.clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn layer_order_is_version_order_top_first() {
        let t = fixture();
        let r = t.path();
        for n in ["foo-2", "foo-10", "bar"] {
            sysext(
                r,
                "var/lib/extensions",
                n,
                "ID=debian\nSYSEXT_LEVEL=1.0\n",
                &["usr/share/x"],
            );
        }
        let p = plan(&opts(r), Class::Sysext).unwrap();
        assert_eq!(p.extensions, ["bar", "foo-2", "foo-10"]);
        assert_eq!(layer_names(&p, "/usr"), ["foo-10", "foo-2", "bar"]);
        assert_eq!(p.list_file(), "bar\nfoo-2\nfoo-10\n");
        assert_eq!(p.untouched, ["/opt"]);
        let h = &p.hierarchies[0];
        assert!(h.host_lower && h.host_exists && h.upper.is_none());
        assert_eq!(
            h.flags,
            MountFlags {
                read_only: true,
                nodev: true,
                nosuid: false,
                noexec: false
            }
        );
    }

    #[test]
    fn skips_carry_reasons_and_force_overrides() {
        let t = fixture();
        let r = t.path();
        sysext(
            r,
            "var/lib/extensions",
            "good",
            "ID=debian\nVERSION_ID=12\n",
            &["usr/a"],
        );
        sysext(r, "var/lib/extensions", "fedora", "ID=fedora\n", &["usr/b"]);
        w(r, "var/lib/extensions/norel/usr/c", "x");
        let p = plan(&opts(r), Class::Sysext).unwrap();
        let v: Vec<(String, Verdict)> = p
            .candidates
            .iter()
            .map(|c| (c.image.name.clone(), c.verdict.clone()))
            .collect();
        assert_eq!(
            v[0],
            (
                "fedora".into(),
                Verdict::Mismatch("ID=fedora does not match host ID=debian".into())
            )
        );
        assert_eq!(v[1], ("good".into(), Verdict::Match));
        assert_eq!(v[2].0, "norel");
        assert!(
            matches!(&v[2].1, Verdict::Mismatch(r) if r.starts_with("no usable extension-release"))
        );
        assert_eq!(p.extensions, ["good"]);
        let forced = plan(
            &Options {
                force: true,
                ..opts(r)
            },
            Class::Sysext,
        )
        .unwrap();
        assert_eq!(forced.extensions, ["fedora", "good", "norel"]);
    }

    #[test]
    fn empty_or_missing_contributions_do_not_count() {
        let t = fixture();
        let r = t.path();
        sysext(r, "var/lib/extensions", "a", "ID=_any\n", &["usr/x"]);
        fs::create_dir_all(r.join("var/lib/extensions/a/opt")).unwrap(); // empty: no contribution
        sysext(r, "var/lib/extensions", "b", "ID=_any\n", &["opt/y"]);
        let p = plan(&opts(r), Class::Sysext).unwrap();
        // b's release file lives in /usr, so b contributes there too.
        assert_eq!(layer_names(&p, "/usr"), ["b", "a"]);
        // a's /opt is an empty directory: no contribution.
        assert_eq!(layer_names(&p, "/opt"), ["b"]);
        // /opt exists but is empty on the host: not a lower layer.
        assert!(!p.hierarchies[1].host_lower);
        // The list file names every accepted extension, on every hierarchy.
        assert_eq!(p.list_file(), "a\nb\n");
    }

    #[test]
    fn confext_flags_and_hierarchy_override() {
        let t = fixture();
        let r = t.path();
        w(
            r,
            "var/lib/confexts/c/etc/extension-release.d/extension-release.c",
            "ID=debian\nVERSION_ID=12\n",
        );
        w(r, "var/lib/confexts/c/etc/foo.conf", "x");
        w(r, "var/lib/confexts/c/srv/data", "x");
        let p = plan(&opts(r), Class::Confext).unwrap();
        assert_eq!(layer_names(&p, "/etc"), ["c"]);
        assert_eq!(
            p.hierarchies[0].flags,
            MountFlags {
                read_only: true,
                nodev: true,
                nosuid: true,
                noexec: true
            }
        );
        let o = Options {
            hierarchies: Some(vec!["/etc".into(), "/srv".into()]),
            noexec: Some(false),
            ..opts(r)
        };
        let p = plan(&o, Class::Confext).unwrap();
        assert_eq!(p.hierarchies.len(), 2);
        assert!(!p.hierarchies[1].host_exists);
        assert_eq!(p.hierarchies[1].mode, 0o755);
        assert!(!p.hierarchies[0].flags.noexec);
    }

    #[test]
    fn mutable_modes_pick_upper_and_import() {
        let t = fixture();
        let r = t.path();
        sysext(r, "var/lib/extensions", "a", "ID=_any\n", &["usr/x"]);
        let up = |m| {
            plan(
                &Options {
                    mutable: m,
                    ..opts(r)
                },
                Class::Sysext,
            )
            .unwrap()
            .hierarchies[0]
                .clone()
        };
        assert_eq!(up(MutableMode::Auto).upper, None);
        assert!(up(MutableMode::Auto).flags.read_only);
        assert_eq!(
            up(MutableMode::Yes).upper,
            Some(Upper::Persistent {
                upper: "/var/lib/extensions.mutable/usr".into(),
                work: "/var/lib/extensions.mutable/.systemd-usr-workdir".into(),
                is_hierarchy: false
            })
        );
        assert_eq!(up(MutableMode::Import).import, None);
        let mode = fs::metadata(r.join("usr")).unwrap().permissions();
        fs::create_dir_all(r.join("var/lib/extensions.mutable/usr")).unwrap();
        fs::set_permissions(r.join("var/lib/extensions.mutable/usr"), mode).unwrap();
        assert!(matches!(
            up(MutableMode::Auto).upper,
            Some(Upper::Persistent { .. })
        ));
        assert_eq!(
            up(MutableMode::Import).import,
            Some(PathBuf::from("/var/lib/extensions.mutable/usr"))
        );
        assert!(up(MutableMode::Import).flags.read_only);
        assert_eq!(up(MutableMode::Ephemeral).upper, Some(Upper::Ephemeral));
        let ei = up(MutableMode::EphemeralImport);
        assert_eq!(
            (ei.upper, ei.import.is_some()),
            (Some(Upper::Ephemeral), true)
        );
        // A mutable dir whose mode differs from the hierarchy's is refused (systemd: EINVAL).
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(
            r.join("var/lib/extensions.mutable/usr"),
            fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        let e = plan(
            &Options {
                mutable: MutableMode::Auto,
                ..opts(r)
            },
            Class::Sysext,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("has mode 0700, ought to have mode"),
            "{e}"
        );
        // The mutable dir as a symlink to the hierarchy itself makes /usr the upper dir.
        fs::remove_dir(r.join("var/lib/extensions.mutable/usr")).unwrap();
        std::os::unix::fs::symlink("/usr", r.join("var/lib/extensions.mutable/usr")).unwrap();
        let h = up(MutableMode::Yes);
        assert!(
            matches!(h.upper, Some(Upper::Persistent { is_hierarchy: true, ref upper, .. }) if upper == Path::new("/usr"))
        );
        assert!(!h.host_lower);
    }

    /// Opens directories, but refuses the extension named `.0` as a broken disk image
    /// would be refused.
    struct Refusing(&'static str);

    impl Opener for Refusing {
        fn open(&mut self, root: &Root, image: &Image) -> Result<Option<OwnedFd>, String> {
            if image.name == self.0 {
                return Err(format!(
                    "{}: no valid partition table",
                    root.display_path(&image.path).display()
                ));
            }
            DirOpener.open(root, image)
        }
    }

    #[test]
    fn unusable_extension_fails_the_merge_plan_but_is_an_entry_of_the_shown_one() {
        let t = fixture();
        let r = t.path();
        for n in ["a", "b", "c"] {
            sysext(r, "var/lib/extensions", n, "ID=_any\n", &["usr/f"]);
        }
        let root = Root::open(r).unwrap();
        let err = format!(
            "{}: no valid partition table",
            r.join("var/lib/extensions/b").display()
        );
        // A merge is all or nothing: the first unusable extension ends the plan.
        match plan_with(&root, &opts(r), Class::Sysext, &mut Refusing("b")) {
            Err(PlanError::Image(e)) => assert_eq!(e, err),
            other => panic!("expected PlanError::Image, got {other:?}"),
        }
        // Shown: every extension with its verdict, the unusable one with the error.
        let p = plan_all_with(&root, &opts(r), Class::Sysext, &mut Refusing("b")).unwrap();
        let v: Vec<(&str, &Verdict)> = p
            .candidates
            .iter()
            .map(|c| (c.image.name.as_str(), &c.verdict))
            .collect();
        assert_eq!(
            v,
            [
                ("a", &Verdict::Match),
                ("b", &Verdict::Unusable(err.clone())),
                ("c", &Verdict::Match)
            ]
        );
        assert_eq!(p.extensions, ["a", "c"]);
        assert_eq!(layer_names(&p, "/usr"), ["c", "a"]);
        let host = HostIdentity::load(&root, Scope::System).unwrap();
        let (cands, _) =
            evaluate_all(&root, Class::Sysext, &host, false, true, &mut Refusing("b")).unwrap();
        assert_eq!(cands[1].verdict, Verdict::Unusable(err));
    }

    #[test]
    fn planning_is_deterministic() {
        let t = fixture();
        let r = t.path();
        for n in ["z", "a", "m_1", "m_2", "m+3"] {
            sysext(r, "var/lib/extensions", n, "ID=_any\n", &["usr/f"]);
        }
        let a = plan(&opts(r), Class::Sysext).unwrap();
        let b = plan(&opts(r), Class::Sysext).unwrap();
        assert_eq!(a, b);
        // `_` and `+` are separators for strverscmp_improved: m_1 < m_2 < m+3.
        assert_eq!(a.extensions, ["a", "m_1", "m_2", "m+3", "z"]);
    }

    #[test]
    fn missing_os_release_is_an_error_naming_the_root() {
        let t = tempfile::tempdir().unwrap();
        let e = plan(&opts(t.path()), Class::Sysext).unwrap_err();
        assert!(e.to_string().contains("no os-release found"), "{e}");
        assert!(
            e.to_string().contains(&t.path().display().to_string()),
            "{e}"
        );
    }
}
