//! What one class looks like in a root: every extension with systemd's verdict, and the
//! state of each hierarchy (the host's directory, the persistent mutable directory, the
//! extensions that have something for it). The result is plain data ([`Facts`]) for the
//! pure planner ([`crate::plan::plan`]) plus the open directories ([`Handles`]) that the
//! plan's application mounts, so what was checked is what is mounted.
//!
//! Disk images are opened through an [`Opener`] that the caller passes in (the kernel
//! layer's image opener sets up loop and dm devices and mounts them to read their
//! extension-release); the host's directory of a hierarchy through a [`HostDirReader`]
//! (the kernel layer can see below a merge of ours). Neither is named here: inspection
//! itself never changes the system.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{OFlags, ResolveFlags};

use crate::format::class::{Class, Scope};
use crate::format::escape::esc;
use crate::inspect::discover::{self, Discovery, Image, ImageKind, Skipped};
use crate::inspect::error::PlanError;
use crate::inspect::fsutil::{self, Root};
use crate::inspect::image::{ImageError, ImageStep};
use crate::inspect::release::{self, HostIdentity, ReleaseFile, Verdict};
use crate::options::{hierarchy_component, MutableMode, Options};
use crate::record::{self, Phase, Recorder};

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

/// How an extension's root directory is reached. Directories are opened inside the
/// root; disk images are set up and mounted by the kernel layer's opener.
pub trait Opener {
    /// Opens (or mounts) `image` and returns its root directory; `Ok(None)` when this
    /// opener does not open such images (listing without root: disk images); `Err`
    /// with the image's path and the reason when it is broken or refused — that fails
    /// the whole merge, as in systemd (shown as [`Verdict::Unusable`]).
    fn open(&mut self, root: &Root, image: &Image) -> Result<Option<OwnedFd>, ImageError>;
}

/// Opens directory extensions only.
#[derive(Debug, Default)]
pub struct DirOpener;

impl Opener for DirOpener {
    fn open(&mut self, root: &Root, image: &Image) -> Result<Option<OwnedFd>, ImageError> {
        if image.kind != ImageKind::Directory {
            return Ok(None);
        }
        // Opened by discovery, by its name in the search directory: no second lookup.
        if let Some(fd) = image.opened.take() {
            return Ok(Some(fd));
        }
        let root = image.root_in(root);
        root.open_at(&image.path, OFlags::RDONLY | OFlags::DIRECTORY)
            .map(Some)
            .map_err(|e| {
                ImageError::os(ImageStep::Open, "cannot open", e)
                    .at(esc(&root.display_path(&image.path)).to_string())
            })
    }
}

/// Opens the host's own directory of a hierarchy for reading (`Ok(None)`: it does not
/// exist), also while a merge of ours covers it.
pub type HostDirReader<'a> = &'a dyn Fn(&Root, Class, &str) -> io::Result<Option<OwnedFd>>;

/// The [`HostDirReader`] for a root where nothing is merged: the directory itself.
pub fn plain_host_dir(root: &Root, _class: Class, h: &str) -> io::Result<Option<OwnedFd>> {
    match root.open_at(h, OFlags::RDONLY | OFlags::DIRECTORY) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// What inspection does with an extension its [`Opener`] cannot use (a disk image that
/// is broken or refused by the image policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnusable {
    /// Stop with [`PlanError::Image`]: a merge is all or nothing, as in systemd.
    Fail,
    /// Give it [`Verdict::Unusable`] with the error and go on, so that every entry is
    /// shown (`plan`, `--dry-run`, listing).
    Record,
}

/// The state of the host's own directory of a hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFacts {
    /// Permission bits (`st_mode & 07777`).
    pub mode: u32,
    /// No entry but `.` and `..`.
    pub empty: bool,
    /// `(st_dev, st_ino)`.
    pub id: (u64, u64),
}

/// The persistent mutable directory of a hierarchy (`/var/lib/extensions.mutable/usr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MutableDir {
    /// Not there (a dangling symlink is not there either).
    Missing,
    /// A directory.
    Found {
        /// Its path inside the root, symlinks resolved.
        path: PathBuf,
        /// `(st_dev, st_ino)`: equal to the host's when it *is* the hierarchy.
        id: (u64, u64),
        /// Permission bits.
        mode: u32,
    },
    /// It could not be opened as a directory (not a directory, no permission).
    Unusable {
        /// errno.
        errno: i32,
        /// Why, in words.
        reason: String,
    },
}

/// What one hierarchy looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HierarchyFacts {
    /// The hierarchy (`/usr`).
    pub hierarchy: String,
    /// The host's own directory; `None`: it does not exist.
    pub host: Option<HostFacts>,
    /// The persistent mutable dir; looked at only when the mutable mode uses it.
    pub mutable_dir: MutableDir,
    /// Accepted extensions whose directory for this hierarchy exists and is not empty.
    pub contributors: BTreeSet<String>,
}

/// What inspection found for one class, as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The class.
    pub class: Class,
    /// The root's path (for messages).
    pub root: PathBuf,
    /// The host identity matched against.
    pub host: HostIdentity,
    /// Every discovered extension with its verdict, sorted by name.
    pub candidates: Vec<Candidate>,
    /// Directory entries discovery did not use, with reasons.
    pub skipped: Vec<Skipped>,
    /// The hierarchies, in the order given.
    pub hierarchies: Vec<HierarchyFacts>,
}

/// The open directories that inspection looked at, kept for mounting.
#[derive(Debug, Default)]
pub struct Handles {
    /// Root directories of the accepted extensions, by name.
    pub extensions: BTreeMap<String, OwnedFd>,
    /// Layer directories (`<extension>/usr`), by (extension name, hierarchy).
    pub layers: BTreeMap<(String, String), OwnedFd>,
}

impl Handles {
    /// The layer directory of `extension` for `hierarchy`.
    pub fn layer(&self, extension: &str, hierarchy: &str) -> Option<BorrowedFd<'_>> {
        self.layers
            .get(&(extension.to_string(), hierarchy.to_string()))
            .map(|f| f.as_fd())
    }
}

/// Inspection's result: [`Facts`] to plan with, [`Handles`] to mount.
#[derive(Debug)]
pub struct Inspection {
    /// Plain data.
    pub facts: Facts,
    /// Open directories.
    pub handles: Handles,
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

/// Every extension with its verdict, the entries discovery did not use, and the open
/// roots of the accepted extensions by name.
pub type Evaluated = (Vec<Candidate>, Vec<Skipped>, BTreeMap<String, OwnedFd>);

/// Discovers the class's extensions and gives each one systemd's verdict; returns the
/// open roots of the accepted ones.
pub fn evaluate(
    root: &Root,
    class: Class,
    host: &HostIdentity,
    search: &[String],
    force: bool,
    opener: &mut dyn Opener,
    on_unusable: OnUnusable,
) -> Result<Evaluated, PlanError> {
    let found = discover::discover_in(root, class, search)?;
    judge_all(found, root, class, host, force, opener, on_unusable, None)
}

/// [`evaluate`] of what discovery found already.
#[allow(clippy::too_many_arguments)]
fn judge_all(
    found: Discovery,
    root: &Root,
    class: Class,
    host: &HostIdentity,
    force: bool,
    opener: &mut dyn Opener,
    on_unusable: OnUnusable,
    rec: Option<&Recorder>,
) -> Result<Evaluated, PlanError> {
    let Discovery { images, skipped } = found;
    if let Some(r) = rec {
        r.skipped(
            class,
            skipped
                .iter()
                .map(|s| (s.path.to_string_lossy().into_owned(), s.reason.as_str())),
        );
    }
    let mut roots = BTreeMap::new();
    let mut candidates = Vec::with_capacity(images.len());
    for image in images {
        let t = record::start(rec);
        let opened = match (opener.open(root, &image), on_unusable) {
            (Ok(fd), _) => Ok(fd),
            (Err(e), OnUnusable::Record) => Err(e.to_string()),
            (Err(e), OnUnusable::Fail) => {
                if let Some(r) = rec {
                    record_image(r, &image, t, |en| {
                        en.verdict = match e.step {
                            ImageStep::Policy | ImageStep::Verity | ImageStep::Signature => {
                                record::Verdict::Refused
                            }
                            _ => record::Verdict::Failed,
                        };
                        en.failed_step = Some(e.step.as_str());
                        en.reason = Some(e.to_string());
                    });
                }
                return Err(PlanError::Image(e));
            }
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
                    r.env.retain_keys(|k| release::RELEASE_KEYS.contains(&k));
                }
                if v == Verdict::Match {
                    roots.insert(image.name.clone(), fd);
                }
                (v, r)
            }
        };
        if let Some(r) = rec {
            record_image(r, &image, t, |en| match &verdict {
                Verdict::Match => {}
                Verdict::Mismatch(why) => {
                    en.verdict = record::Verdict::Skipped;
                    en.reason = Some(why.clone());
                }
                Verdict::Unusable(why) => {
                    en.verdict = record::Verdict::Failed;
                    en.reason = Some(why.clone());
                }
            });
        }
        candidates.push(Candidate {
            image,
            verdict,
            release,
        });
    }
    Ok((candidates, skipped, roots))
}

/// Notes what became of `image` (inspected since `t`) in the recorder.
fn record_image(
    r: &Recorder,
    image: &Image,
    t: Option<std::time::Instant>,
    f: impl FnOnce(&mut record::Entry),
) {
    r.entry(image.class, &image.name, |en| {
        // A path inside the root; an image of another root (the initrd's `/.extra`) as
        // that root shows it.
        en.path = match &image.base {
            Some(b) => b.0.display_path(&image.path),
            None => image.path.clone(),
        }
        .to_string_lossy()
        .into_owned();
        en.kind = image.kind.as_str();
        en.inspect_usec = t.map(record::usec_since);
        f(en)
    });
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

/// The path of `fd` inside the root (symlinks resolved), from `/proc/self/fd`.
pub fn resolved_in_root(root: &Root, fd: &OwnedFd) -> Option<PathBuf> {
    let real = std::fs::read_link(fsutil::fd_path(fd.as_fd())).ok()?;
    let root_real = std::fs::read_link(fsutil::fd_path(root.fd())).ok()?;
    let rel = real.strip_prefix(&root_real).ok()?;
    Some(Path::new("/").join(rel))
}

/// Inspects one class in `root` for `opts`: discovery (unless `found` is what it found
/// already), verdicts, and each hierarchy's state. `hierarchies` is the list to inspect
/// (from [`Options::hierarchies_for`]).
#[allow(clippy::too_many_arguments)]
pub fn inspect(
    root: &Root,
    opts: &Options,
    class: Class,
    hierarchies: &[String],
    opener: &mut dyn Opener,
    host_dir: HostDirReader<'_>,
    on_unusable: OnUnusable,
    found: Option<Discovery>,
) -> Result<Inspection, PlanError> {
    let (initrd, mut scope) = root_scope(root);
    if opts.per_service {
        scope = Scope::Any;
    }
    let host = HostIdentity::load(root, scope, opts.env.os_release.as_deref())?;
    let rec = opts.recorder.as_ref();
    let found = match found {
        Some(f) => f,
        None => {
            let t = record::start(rec);
            let f = opts.discover(root, class, initrd)?;
            if let (Some(r), Some(t)) = (rec, t) {
                r.phase(class, Phase::Discover, record::usec_since(t));
            }
            f
        }
    };
    let t = record::start(rec);
    let judged = judge_all(
        found,
        root,
        class,
        &host,
        opts.force,
        opener,
        on_unusable,
        rec,
    );
    if let (Some(r), Some(t)) = (rec, t) {
        r.phase(class, Phase::Inspect, record::usec_since(t));
    }
    let (candidates, skipped, extensions) = judged?;
    if opts.per_service && !opts.force && on_unusable == OnUnusable::Fail {
        if let Some((c, reason)) = candidates.iter().find_map(|c| match &c.verdict {
            Verdict::Mismatch(r) => Some((c, r)),
            _ => None,
        }) {
            return Err(PlanError::Mismatch {
                path: c.image.shown(root),
                reason: reason.clone(),
            });
        }
    }
    let mut handles = Handles {
        extensions,
        layers: BTreeMap::new(),
    };
    let mut facts_h = Vec::with_capacity(hierarchies.len());
    for h in hierarchies {
        let rel = h.trim_start_matches('/');
        let mut contributors = BTreeSet::new();
        for c in candidates.iter().filter(|c| c.verdict == Verdict::Match) {
            let Some(fd) = handles.extensions.get(&c.image.name) else {
                continue;
            };
            let at = || c.image.path.join(rel);
            let sub = open_opt(fd.as_fd(), rel, OFlags::RDONLY | OFlags::DIRECTORY)
                .map_err(|e| io_err(root, &at(), e))?;
            let Some(sub) = sub else { continue };
            if !dir_is_empty(sub.as_fd()).map_err(|e| io_err(root, &at(), e))? {
                contributors.insert(c.image.name.clone());
                // Kept for mounting: the layer is the directory that was looked at.
                handles
                    .layers
                    .insert((c.image.name.clone(), h.clone()), sub);
            }
        }
        // A hierarchy no extension touches is left alone: nothing more to look at.
        let (host_facts, mutable_dir) = if contributors.is_empty() {
            (None, MutableDir::Missing)
        } else {
            let host_facts = inspect_host(root, class, h, host_dir)?;
            let mutable_dir = if opts.mutable == MutableMode::No {
                MutableDir::Missing
            } else {
                inspect_mutable_dir(root, h)
            };
            (host_facts, mutable_dir)
        };
        facts_h.push(HierarchyFacts {
            hierarchy: h.clone(),
            host: host_facts,
            mutable_dir,
            contributors,
        });
    }
    Ok(Inspection {
        facts: Facts {
            class,
            root: root.path().to_path_buf(),
            host,
            candidates,
            skipped,
            hierarchies: facts_h,
        },
        handles,
    })
}

fn inspect_host(
    root: &Root,
    class: Class,
    h: &str,
    host_dir: HostDirReader<'_>,
) -> Result<Option<HostFacts>, PlanError> {
    let err = |e: io::Error| io_err(root, Path::new(h), e);
    let Some(fd) = host_dir(root, class, h).map_err(err)? else {
        return Ok(None);
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| err(e.into()))?;
    Ok(Some(HostFacts {
        mode: st.st_mode & 0o7777,
        empty: dir_is_empty(fd.as_fd()).map_err(err)?,
        id: (st.st_dev, st.st_ino),
    }))
}

/// The persistent mutable directory of `h`, followed inside the root.
pub fn inspect_mutable_dir(root: &Root, h: &str) -> MutableDir {
    let rel = format!("{MUTABLE_BASE}/{}", hierarchy_component(h));
    let unusable = |e: io::Error| MutableDir::Unusable {
        errno: e.raw_os_error().unwrap_or(libc::EIO),
        reason: crate::log::os_text(&e),
    };
    let fd = match open_opt(root.fd(), &rel, OFlags::PATH | OFlags::DIRECTORY) {
        Ok(Some(fd)) => fd,
        Ok(None) => return MutableDir::Missing,
        Err(e) => return unusable(e),
    };
    match rustix::fs::fstat(&fd) {
        Ok(st) => MutableDir::Found {
            path: resolved_in_root(root, &fd).unwrap_or_else(|| PathBuf::from(&rel)),
            id: (st.st_dev, st.st_ino),
            mode: st.st_mode & 0o7777,
        },
        Err(e) => unusable(e.into()),
    }
}
