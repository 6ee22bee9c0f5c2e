//! Applying a [`MergePlan`]: build every overlay detached, then attach them; also
//! unmerge and the manager reload. The entry point ([`crate::context::Context`]) decides
//! what to apply; this module only does it.
//!
//! All-or-nothing: every step that changes the system registers its undo in the
//! caller's [`Txn`]; on error (or injected fault) the undos run in reverse, so the mount
//! table afterwards equals the one before.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::mount::MountAttrFlags;

use crate::format::class::Class;
use crate::format::escape::{esc, escape};
use crate::inspect::facts::{self, DirOpener, Handles, OnUnusable};
use crate::inspect::fsutil::fd_path;
use crate::inspect::fsutil::{self, Root};
use crate::inspect::metadata::{self, find_merged, StateError};
use crate::options::{hierarchy_component, Environment, MountAttr, Options, OverlayOption};
use crate::plan::{HierarchyPlan, MergePlan, PlanError, Upper};
use crate::sys::hierarchy::HostDir;
use crate::sys::mount::{self, LayerStrategy, MountError, Overlay};
use crate::sys::staging::{mkdir_open, StagingArea};
use crate::sys::txn::{Injected, Txn};

pub use crate::sys::staging::WORKSPACE;

/// Why a merge, unmerge or refresh failed. Messages name the path and the reason.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// Planning failed.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A mount step failed.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// Reading merge state failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The hierarchy is already merged (`merge` never stacks; refresh or unmerge first).
    /// Front-ends add how to do that in their own terms: the library names no CLI verb.
    #[error("{}: hierarchy is already merged", esc(.0))]
    AlreadyMerged(PathBuf),
    /// A file operation failed.
    #[error("{}: {}", esc(.path), crate::log::os_text(.source))]
    Io {
        /// Host path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A fault injected by a test.
    #[error("injected fault at step {} ({})", .0.0, .0.1)]
    Injected(Injected),
    /// The runtime directory (`/run/extmerge`) or its lock file is not safe to use.
    #[error(transparent)]
    RuntimeDir(#[from] crate::sys::staging::RuntimeDirError),
    /// The caller lacks `CAP_SYS_ADMIN`: nothing can be mounted (systemd's words).
    #[error("Need to be privileged.")]
    NotPrivileged,
    /// The target process (`--pid`, `--unit`) cannot be entered.
    #[error(transparent)]
    Target(#[from] crate::sys::target::TargetError),
    /// `--unit=NAME`: none of the unit's extension directories exists.
    #[error("unit {}: none of {} exists", esc(.unit), .dirs.join(", "))]
    NoUnitSources {
        /// The unit.
        unit: String,
        /// The directories looked for.
        dirs: Vec<String>,
    },
    /// A verb failed inside a target process's mount namespace.
    #[error("process {pid}: {source}")]
    InTarget {
        /// The target.
        pid: i32,
        /// What failed there.
        source: Box<MergeError>,
    },
}

impl MergeError {
    /// errno for the C ABI and exit codes.
    pub fn errno(&self) -> i32 {
        match self {
            MergeError::Plan(e) => e.errno(),
            MergeError::Mount(e) => e.errno(),
            MergeError::State(e) => e.errno,
            MergeError::AlreadyMerged(_) => libc::EBUSY,
            MergeError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            MergeError::Injected(_) => libc::EIO,
            MergeError::NotPrivileged => libc::EPERM,
            MergeError::RuntimeDir(e) => e.errno,
            MergeError::Target(e) => e.errno(),
            MergeError::NoUnitSources { .. } => libc::ENOENT,
            MergeError::InTarget { source, .. } => source.errno(),
        }
    }
}

impl From<Injected> for MergeError {
    fn from(i: Injected) -> Self {
        MergeError::Injected(i)
    }
}

fn io_at(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> MergeError {
    let path = path.into();
    move |source| MergeError::Io { path, source }
}

/// What a merge or refresh did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Hierarchies now carrying a new merge.
    pub merged: Vec<String>,
    /// Hierarchies unmerged.
    pub unmerged: Vec<String>,
    /// Extensions used, by name.
    pub extensions: Vec<String>,
    /// The same extensions as systemd names them in its messages: the file or directory
    /// name (`foo.raw`, `suf.sysext`, `foo_2` picked from `foo.v/`).
    pub files: Vec<String>,
    /// Refresh found nothing changed and left the mounts alone.
    pub unchanged: bool,
    /// Number of extensions found but skipped as incompatible.
    pub ignored: usize,
}

impl Outcome {
    /// What happened, in systemd-sysext's words, one line each. Unmerges are not
    /// repeated here: each one is logged as it happens ("Unmerged '/usr'.").
    ///
    /// The library names no front-end's options: [`Outcome::describe_with`] adds how
    /// the caller's front-end asks for a refresh when nothing changed.
    pub fn describe(&self, class: Class, root: &Path) -> Vec<String> {
        self.describe_with(class, root, None)
    }

    /// [`Outcome::describe`], saying how to refresh even when nothing changed in the
    /// front-end's own terms (`always_refresh`: the CLI's `--always-refresh=yes`, the C
    /// API's flag), as systemd-sysext does with its option.
    pub fn describe_with(
        &self,
        _class: Class,
        root: &Path,
        always_refresh: Option<&str>,
    ) -> Vec<String> {
        // systemd 262's words, the same for both classes.
        if self.extensions.is_empty() {
            return vec![if self.ignored > 0 {
                format!(
                    "No suitable extensions found ({} ignored due to incompatible image(s)).",
                    self.ignored
                )
            } else {
                "No extensions found.".to_string()
            }];
        }
        if self.unchanged {
            let skipping = "Skipping extension refresh because no change was found";
            return vec![match always_refresh {
                Some(how) => format!("{skipping}, use {how} to always do a refresh."),
                None => format!("{skipping}."),
            }];
        }
        let shown = if self.files.len() == self.extensions.len() {
            &self.files
        } else {
            &self.extensions
        };
        let names: Vec<String> = shown.iter().map(escape).collect();
        let mut v = vec![format!("Using extensions '{}'.", names.join("', '"))];
        v.extend(self.merged.iter().map(|h| {
            format!(
                "Merged extensions into '{}'.",
                esc(&fsutil::join_in_root(root, Path::new(h)))
            )
        }));
        v
    }
}

static STAGING_SEQ: AtomicU32 = AtomicU32::new(0);

fn open_fd(dir: BorrowedFd<'_>, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    fsutil::open_in(dir, rel, flags, ResolveFlags::empty())
}

/// `mkdir -p` of `rel` inside the root, each new component with `mode`; returns the
/// directory and the paths (inside the root) of the directories it created.
fn mkdir_p_in_root(root: &Root, rel: &Path, mode: u32) -> io::Result<(OwnedFd, Vec<PathBuf>)> {
    let mut cur = root.open_at("/", OFlags::PATH | OFlags::DIRECTORY)?;
    let mut prefix = PathBuf::from("/");
    let mut created = Vec::new();
    for c in rel.components() {
        let std::path::Component::Normal(name) = c else {
            continue;
        };
        prefix.push(name);
        match rustix::fs::mkdirat(&cur, name, Mode::from_raw_mode(mode)) {
            Ok(()) => {
                let fd = open_fd(
                    cur.as_fd(),
                    Path::new(name),
                    OFlags::RDONLY | OFlags::DIRECTORY,
                )?;
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
                created.push(prefix.clone());
            }
            Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        // Resolve inside the root, so a symlink component cannot lead out of it.
        cur = fsutil::open_in(
            root.fd(),
            &prefix,
            OFlags::PATH | OFlags::DIRECTORY,
            ResolveFlags::empty(),
        )?;
    }
    Ok((cur, created))
}

/// `<dir>/.systemd-usr-workdir` → `<dir>/.systemd-usr-workdir-<16 hex digits>`.
fn unique_work_dir(work: &Path) -> PathBuf {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let salt = t
        ^ (u64::from(std::process::id()) << 40)
        ^ u64::from(STAGING_SEQ.fetch_add(1, Ordering::Relaxed));
    let mut name = work.file_name().unwrap_or_default().to_os_string();
    name.push(format!("-{salt:016x}"));
    work.with_file_name(name)
}

/// Removes directories [`mkdir_p_in_root`] created (deepest first), if still empty.
fn remove_created(root_path: &Path, created: &[PathBuf]) {
    let Ok(root) = Root::open(root_path) else {
        return;
    };
    for d in created.iter().rev() {
        let (Some(parent), Some(name)) = (d.parent(), d.file_name()) else {
            continue;
        };
        if let Ok(p) = root.open_at(parent, OFlags::PATH | OFlags::DIRECTORY) {
            let _ = rustix::fs::unlinkat(&p, name, rustix::fs::AtFlags::REMOVEDIR);
        }
    }
}

fn layer_strategy(env: &Environment) -> Option<LayerStrategy> {
    match env.layers.as_deref() {
        Some("append") => Some(LayerStrategy::Append),
        Some("joined") => Some(LayerStrategy::Joined),
        Some("legacy") => Some(LayerStrategy::Legacy),
        _ => None,
    }
}

/// A built, not yet attached overlay for one hierarchy.
struct Built {
    hierarchy: String,
    mnt: OwnedFd,
    mutable: bool,
}

/// What every hierarchy of one run shares.
struct Run<'a> {
    root: &'a Root,
    plan: &'a MergePlan,
    handles: &'a Handles,
    env: &'a Environment,
    staging: &'a StagingArea,
    fingerprint: &'a str,
    /// systemd's `origin` of the same merge.
    systemd_origin: &'a str,
    /// Its quick stamp, with the hierarchies it merges.
    stamp: &'a str,
    replace: bool,
}

/// `attrs` with one generic mount flag of `SYSTEMD_*_OVERLAYFS_MOUNT_OPTIONS` set or
/// cleared (the access-time modes are one field: setting one replaces the other).
fn with_attr(mut attrs: MountAttrFlags, a: MountAttr, on: bool) -> MountAttrFlags {
    use MountAttrFlags as F;
    let atime = F::MOUNT_ATTR_NOATIME | F::MOUNT_ATTR_STRICTATIME;
    let flag = match a {
        MountAttr::ReadOnly => F::MOUNT_ATTR_RDONLY,
        MountAttr::NoSuid => F::MOUNT_ATTR_NOSUID,
        MountAttr::NoDev => F::MOUNT_ATTR_NODEV,
        MountAttr::NoExec => F::MOUNT_ATTR_NOEXEC,
        MountAttr::NoDirAtime => F::MOUNT_ATTR_NODIRATIME,
        MountAttr::NoSymfollow => F::MOUNT_ATTR_NOSYMFOLLOW,
        MountAttr::NoAtime | MountAttr::StrictAtime | MountAttr::RelAtime => {
            let f = match a {
                MountAttr::NoAtime => F::MOUNT_ATTR_NOATIME,
                MountAttr::StrictAtime => F::MOUNT_ATTR_STRICTATIME,
                _ => F::empty(),
            };
            if on {
                attrs.remove(atime);
                attrs |= f;
            } else {
                attrs.remove(f);
            }
            return attrs;
        }
    };
    attrs.set(flag, on);
    attrs
}

fn build_hierarchy(run: &Run<'_>, h: &HierarchyPlan, txn: &mut Txn) -> Result<Built, MergeError> {
    let Run {
        root,
        plan,
        handles,
        env,
        staging,
        fingerprint,
        systemd_origin,
        stamp,
        replace,
    } = *run;
    let class = plan.class;
    let comp = hierarchy_component(&h.hierarchy);
    let stage_path = |p: &str| PathBuf::from(WORKSPACE).join(staging.name()).join(p);
    let meta_root = mkdir_open(staging.fd(), "meta", 0o755).map_err(io_at(stage_path("meta")))?;
    let meta = mkdir_open(meta_root.as_fd(), &comp, h.mode & 0o7777)
        .map_err(io_at(stage_path(&format!("meta/{comp}"))))?;
    let dot = mkdir_open(meta.as_fd(), class.metadata_dir(), 0o755)
        .map_err(io_at(stage_path(class.metadata_dir())))?;
    // Opaque to overlayfs: a lookup of the metadata (unmerge, refresh, status) stops at
    // this layer instead of looking for the name in every extension below it (hundreds
    // of layers), and an extension's own `.systemd-sysext/` cannot add files to it (a
    // `work_dir` or extension list of its making). Where refused, lookups are slower
    // and the files we write still shadow an extension's of the same name.
    let _ = rustix::fs::fsetxattr(
        &dot,
        "trusted.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    );
    metadata::write_file(dot.as_fd(), class.list_file(), &plan.list_file())
        .map_err(io_at(stage_path(class.list_file())))?;

    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut lowers = vec![fd_path(meta.as_fd())];
    let open_in_root = |root_rel: &Path| -> Result<OwnedFd, MergeError> {
        root.open_at(root_rel, OFlags::PATH | OFlags::DIRECTORY)
            .map_err(io_at(root.display_path(root_rel)))
    };
    if let Some(imp) = &h.import {
        let fd = open_in_root(imp)?;
        lowers.push(fd_path(fd.as_fd()));
        fds.push(fd);
    }
    let rel = h.hierarchy.trim_start_matches('/');
    // The host's directory below the hierarchy (attached in the staging area when our
    // merge covers it), put in as the lowest layer after the extensions'.
    let mut host_layer = None;
    // A service's own extension directory inside the hierarchy it is merged onto, while
    // our merge covers that hierarchy: seen through the merge it would sit on an overlay,
    // and the new overlay on it (with the host layer wrapped, see below) would exceed
    // the kernel's stacking depth; it is taken from below the merge instead.
    let mut under_root: Option<(OwnedFd, PathBuf)> = None;
    if h.host_lower {
        let display = root.display_path(&h.hierarchy);
        match HostDir::open(root, class, &h.hierarchy).map_err(io_at(&display))? {
            HostDir::UnderMerge { parent_clone, name } => {
                // Attach the clone in the staging area: overlayfs (6.1) takes layers only
                // from mounts in our namespace. It goes away with the staging tmpfs.
                let point = format!("under-{comp}");
                let dir =
                    mkdir_open(staging.fd(), &point, 0o700).map_err(io_at(stage_path(&point)))?;
                txn.step(&format!("attach host {}", h.hierarchy))?;
                // The clone is in the parent's peer group: leave it, or the new overlay
                // would propagate into it and its removal back onto the real hierarchy.
                mount::make_private(parent_clone.as_fd(), &point)?;
                mount::attach(parent_clone.as_fd(), dir.as_fd(), false, &point)?;
                // Re-open through the path: `dir` is the directory below the new mount.
                let fd = open_fd(
                    staging.fd(),
                    &Path::new(&point).join(&name),
                    OFlags::PATH | OFlags::DIRECTORY,
                )
                .map_err(io_at(&display))?;
                if plan.nested_layers {
                    let top = open_fd(
                        staging.fd(),
                        Path::new(&point),
                        OFlags::PATH | OFlags::DIRECTORY,
                    )
                    .map_err(io_at(&display))?;
                    under_root = Some((top, PathBuf::from(&name)));
                }
                host_layer = Some(fd);
            }
            HostDir::Plain(fd) => host_layer = Some(fd),
            HostDir::Missing | HostDir::StackedOnMount => {
                return Err(io_at(&display)(io::Error::new(
                    io::ErrorKind::NotFound,
                    "host directory not reachable under the merged hierarchy",
                )))
            }
        }
    }
    for l in &h.layers {
        // Only then (a service's own merge covered by ours): which layers lie inside.
        let below = under_root.as_ref().and_then(|(top, name)| {
            let inside = l.image_path.strip_prefix(&h.hierarchy).ok()?;
            let is_dir = plan.candidates.iter().any(|c| {
                c.image.name == l.name
                    && c.image.kind == crate::inspect::discover::ImageKind::Directory
            });
            is_dir.then(|| (top, name.join(inside).join(rel)))
        });
        if let Some((top, below)) = below {
            let fd = open_fd(top.as_fd(), &below, OFlags::PATH | OFlags::DIRECTORY)
                .map_err(io_at(root.display_path(l.image_path.join(rel))))?;
            lowers.push(fd_path(fd.as_fd()));
            fds.push(fd);
            continue;
        }
        // The layer directory opened while planning: what was checked is what is mounted.
        let fd = handles.layer(&l.name, &h.hierarchy).ok_or_else(|| {
            io_at(root.display_path(l.image_path.join(rel)))(io::Error::new(
                io::ErrorKind::NotFound,
                "layer not opened while planning",
            ))
        })?;
        lowers.push(fd_path(fd));
    }
    if let Some(fd) = host_layer {
        lowers.push(fd_path(fd.as_fd()));
        fds.push(fd);
    }

    let mut options: Vec<(String, Option<String>)> = Vec::new();
    let mut upper = None;
    let mut work_dir_file = None;
    match &h.upper {
        None => {}
        Some(Upper::Persistent {
            upper: up,
            work: default_work,
            ..
        }) => {
            // A refresh builds the new overlay while the old one is live on the same
            // upper dir: each gets its own work dir (as systemd's PR #43680), so a
            // rollback leaves the old merge's work dir intact.
            let fresh;
            let work = if replace && find_merged(root, class, &h.hierarchy)?.is_some() {
                fresh = unique_work_dir(default_work);
                &fresh
            } else {
                default_work
            };
            // Parents made here are 0700 (systemd: `mkdir_p(path, 0700)`); the upper dir
            // itself gets the hierarchy's mode below.
            let upfd = mkdir_p_in_root(root, up, 0o700)
                .map_err(io_at(root.display_path(up)))?
                .0;
            rustix::fs::fchmod(
                &root
                    .open_at(up, OFlags::RDONLY | OFlags::DIRECTORY)
                    .map_err(io_at(root.display_path(up)))?,
                Mode::from_raw_mode(h.mode & 0o7777),
            )
            .map_err(|e| io_at(root.display_path(up))(e.into()))?;
            let (wfd, created) =
                mkdir_p_in_root(root, work, 0o700).map_err(io_at(root.display_path(work)))?;
            if !created.is_empty() {
                // A work dir made by this run (a refresh's own) goes again on failure,
                // with what overlayfs put inside it.
                let (root_path, w) = (root.path().to_path_buf(), work.to_path_buf());
                txn.on_undo(format!("work dir {}", esc(&w)), move || {
                    if let Ok(r) = Root::open(&root_path) {
                        let _ = remove_tree_in_root(&r, &w);
                    }
                    Ok::<(), MountError>(())
                });
            }
            let (a, b) = (rustix::fs::fstat(&upfd), rustix::fs::fstat(&wfd));
            if let (Ok(a), Ok(b)) = (a, b) {
                if a.st_dev != b.st_dev {
                    return Err(io_at(root.display_path(work))(
                        io::Error::from_raw_os_error(libc::EXDEV),
                    ));
                }
            }
            upper = Some((fd_path(upfd.as_fd()), fd_path(wfd.as_fd())));
            fds.push(upfd);
            fds.push(wfd);
            let w = work.to_string_lossy();
            work_dir_file = Some(metadata::cescape(w.trim_start_matches('/')));
        }
        Some(Upper::Ephemeral) => {
            let eph = mkdir_open(staging.fd(), "ephemeral", 0o755)
                .map_err(io_at(stage_path("ephemeral")))?;
            let base =
                mkdir_open(eph.as_fd(), &comp, 0o755).map_err(io_at(stage_path("ephemeral")))?;
            let up = mkdir_open(base.as_fd(), "upper", h.mode & 0o7777)
                .map_err(io_at(stage_path("ephemeral/upper")))?;
            let wk = mkdir_open(base.as_fd(), "work", 0o700)
                .map_err(io_at(stage_path("ephemeral/work")))?;
            upper = Some((fd_path(up.as_fd()), fd_path(wk.as_fd())));
            fds.push(up);
            fds.push(wk);
        }
    }
    let mutable = upper.is_some();
    let mut attrs = MountAttrFlags::empty();
    if h.flags.read_only {
        attrs |= MountAttrFlags::MOUNT_ATTR_RDONLY;
    }
    if h.flags.nodev {
        attrs |= MountAttrFlags::MOUNT_ATTR_NODEV;
    }
    if h.flags.nosuid {
        attrs |= MountAttrFlags::MOUNT_ATTR_NOSUID;
    }
    if h.flags.noexec {
        attrs |= MountAttrFlags::MOUNT_ATTR_NOEXEC;
    }
    if !mutable {
        options.push(("ro".into(), None));
    }
    // `SYSTEMD_*_OVERLAYFS_MOUNT_OPTIONS`, when set (even empty), replaces the mutable
    // modes' defaults and is added to read-only overlays too (systemd's mount_overlayfs).
    match env.overlay_options(class) {
        None if mutable => {
            attrs |= MountAttrFlags::MOUNT_ATTR_NOATIME;
            for (k, v) in [
                ("redirect_dir", "on"),
                ("metacopy", "off"),
                ("index", "off"),
            ] {
                options.push((k.into(), Some(v.into())));
            }
        }
        None => {}
        Some(s) => {
            let (extra, warnings) = crate::options::parse_overlay_options(s);
            for w in warnings {
                crate::log::warn(&format!(
                    "{}: {w}",
                    crate::options::overlay_options_env(class)
                ));
            }
            for o in extra {
                match o {
                    OverlayOption::Fs(k, v) => options.push((k, v)),
                    OverlayOption::Attr(a, on) => attrs = with_attr(attrs, a, on),
                }
            }
        }
    }
    let mut ov = Overlay {
        source: class.mount_source().to_string(),
        lowers,
        upper,
        options,
        attrs,
    };
    txn.step(&format!("mount overlay for {}", esc(&h.hierarchy)))?;
    let legacy_dir = format!("overlay-{comp}");
    mkdir_open(staging.fd(), &legacy_dir, 0o755).map_err(io_at(stage_path(&legacy_dir)))?;
    let mnt = match ov.mount(layer_strategy(env), Some((staging.fd(), &legacy_dir))) {
        // An extension directory inside the hierarchy (a unit's `NAME.confext.d/` below
        // /etc): overlayfs refuses a layer below another layer ("overlapping lowerdir
        // path", ELOOP). The host's layer then goes in through a read-only overlay of
        // its own, whose root is the ancestor of nothing.
        Err(e) if e.errno() == libc::ELOOP && h.host_lower && plan.nested_layers => {
            let host = wrap_host_layer(staging, &comp, ov.lowers.pop().unwrap_or_default(), env)?;
            ov.lowers.push(fd_path(host.as_fd()));
            fds.push(host);
            ov.mount(layer_strategy(env), Some((staging.fd(), &legacy_dir)))
        }
        r => r,
    }
    .map_err(|mut e| {
        e.what = format!("{} ({})", esc(&root.display_path(&h.hierarchy)), e.what);
        e
    })?;
    drop(fds);
    let st =
        rustix::fs::fstat(&mnt).map_err(|e| io_at(root.display_path(&h.hierarchy))(e.into()))?;
    txn.step(&format!("write metadata for {}", h.hierarchy))?;
    let wr = |name: &str, content: &str| {
        metadata::write_file(dot.as_fd(), name, content).map_err(io_at(stage_path(name)))
    };
    wr("dev", &format!("{}\n", metadata::format_dev(st.st_dev)))?;
    if let Some(w) = work_dir_file {
        wr("work_dir", &format!("{w}\n"))?;
    }
    wr(metadata::FINGERPRINT_FILE, fingerprint)?;
    wr(metadata::SYSTEMD_ORIGIN_FILE, systemd_origin)?;
    wr(metadata::STAMP_FILE, stamp)?;
    // The merged root's mtime is the merge time ("since" in status).
    rustix::fs::futimens(
        &meta,
        &rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_NOW,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_NOW,
            },
        },
    )
    .map_err(|e| io_at(stage_path("meta"))(e.into()))?;
    Ok(Built {
        hierarchy: h.hierarchy.clone(),
        mnt,
        mutable,
    })
}

/// A read-only overlay of the host layer `host` and an empty directory, attached in the
/// staging area (overlayfs on 6.1 takes layers only from mounts in the namespace).
fn wrap_host_layer(
    staging: &StagingArea,
    comp: &str,
    host: String,
    env: &Environment,
) -> Result<OwnedFd, MergeError> {
    let stage_path = |p: &str| PathBuf::from(WORKSPACE).join(staging.name()).join(p);
    let (empty, point, legacy) = (
        format!("empty-{comp}"),
        format!("host-{comp}"),
        format!("host-legacy-{comp}"),
    );
    let e = mkdir_open(staging.fd(), &empty, 0o755).map_err(io_at(stage_path(&empty)))?;
    let dir = mkdir_open(staging.fd(), &point, 0o755).map_err(io_at(stage_path(&point)))?;
    mkdir_open(staging.fd(), &legacy, 0o755).map_err(io_at(stage_path(&legacy)))?;
    let inner = Overlay {
        source: "extmerge-host".into(),
        lowers: vec![host, fd_path(e.as_fd())],
        upper: None,
        options: vec![("ro".into(), None)],
        attrs: MountAttrFlags::MOUNT_ATTR_RDONLY,
    };
    let m = inner.mount(layer_strategy(env), Some((staging.fd(), &legacy)))?;
    mount::attach(m.as_fd(), dir.as_fd(), false, &point)?;
    Ok(m)
}

/// Puts `new` on `h`: in place of `old` (our merge there, swapped as a refresh does:
/// beneath where the kernel allows it) or on the bare directory. The undo goes into
/// `txn` under `label`.
fn put_on(
    root: &Root,
    h: &str,
    old: Option<&OwnedFd>,
    new: OwnedFd,
    beneath: bool,
    label: String,
    txn: &mut Txn,
) -> Result<(), MergeError> {
    let what = escape(&root.display_path(h));
    match old {
        Some(old) => {
            // Recursive: a mutable merge's read-only metadata bind comes back too.
            let old_clone = mount::clone_tree_recursive(old.as_fd(), &what)?;
            // Out of the old mounts' peer groups: unmounting the old tree must not
            // propagate into the copy kept for a rollback.
            mount::make_private_recursive(old_clone.as_fd(), &what)?;
            swap(root, h, old.as_fd(), new.as_fd(), beneath)?;
            let (root_path, hh) = (root.path().to_path_buf(), h.to_string());
            txn.on_undo(label, move || {
                let root = Root::open(&root_path)
                    .map_err(|e| MountError::new("open", escape(&root_path), e))?;
                swap(&root, &hh, new.as_fd(), old_clone.as_fd(), beneath)
            });
        }
        None => {
            let target = root
                .open_at(h, OFlags::PATH | OFlags::DIRECTORY)
                .map_err(io_at(root.display_path(h)))?;
            mount::attach(new.as_fd(), target.as_fd(), false, &what)?;
            txn.on_undo(label, move || mount::detach(new.as_fd(), &what));
        }
    }
    Ok(())
}

/// Whether `move_mount(MOVE_MOUNT_BENEATH)` should be tried for a refresh.
fn use_beneath(env: &Environment) -> bool {
    env.replace.as_deref() != Some("detach")
}

/// Puts `new` where `old_top` (the mount on top of the hierarchy) is, then removes
/// `old_top`. With `MOVE_MOUNT_BENEATH` (6.5+) there is no moment without a mount;
/// without it (6.1) the old one is detached first and the new attached right after.
fn swap(
    root: &Root,
    h: &str,
    old_top: BorrowedFd<'_>,
    new: BorrowedFd<'_>,
    beneath: bool,
) -> Result<(), MountError> {
    let what = escape(&root.display_path(h));
    if beneath {
        match mount::attach(new, old_top, true, &what) {
            Ok(()) => return mount::detach(old_top, &what),
            Err(e) if matches!(e.errno(), libc::EINVAL | libc::ENOSYS) => {
                crate::log::debug(&format!("{e}; falling back to detach + attach"));
            }
            Err(e) => return Err(e),
        }
    }
    mount::detach(old_top, &what)?;
    let target = root
        .open_at(h, OFlags::PATH | OFlags::DIRECTORY)
        .map_err(|e| MountError::new("open", what.clone(), e))?;
    mount::attach(new, target.as_fd(), false, &what)
}

fn attach_built(
    run: &Run<'_>,
    b: &Built,
    host_exists: bool,
    mountinfo: &[u8],
    txn: &mut Txn,
) -> Result<Option<String>, MergeError> {
    let Run {
        root,
        plan,
        env,
        replace,
        ..
    } = *run;
    let beneath = use_beneath(env);
    let class = plan.class;
    let h = b.hierarchy.as_str();
    let old = if replace {
        find_merged(root, class, h)?
    } else {
        None
    };
    if !host_exists && old.is_none() {
        txn.step(&format!("create {}", esc(h)))?;
        let (_, created) =
            mkdir_p_in_root(root, Path::new(h), 0o755).map_err(io_at(root.display_path(h)))?;
        let root_path = root.path().to_path_buf();
        txn.on_undo(format!("create {}", esc(h)), move || {
            remove_created(&root_path, &created);
            Ok::<(), MountError>(())
        });
    }
    // File systems mounted below the hierarchy, to put back on top of the new overlay.
    let subs = {
        let top = match &old {
            Some(o) => o.fd.try_clone(),
            None => root.open_at(h, OFlags::PATH | OFlags::DIRECTORY),
        }
        .map_err(io_at(root.display_path(h)))?;
        crate::sys::hierarchy::clone_submounts(top.as_fd(), class.metadata_dir(), mountinfo)
            .map_err(io_at(root.display_path(h)))?
    };
    txn.step(&format!("attach {}", esc(h)))?;
    let old_work = old.as_ref().and_then(|o| o.work_dir.clone());
    let label = match old {
        Some(_) => format!("refresh of {}", esc(h)),
        None => format!("merge of {}", esc(h)),
    };
    let new_fd = b.mnt.try_clone().map_err(io_at(root.display_path(h)))?;
    put_on(
        root,
        h,
        old.as_ref().map(|o| &o.fd),
        new_fd,
        beneath,
        label,
        txn,
    )?;
    for (rel, clone) in &subs {
        txn.step(&format!("submount {}/{}", esc(h), esc(rel)))?;
        let what = root.display_path(Path::new(h).join(rel));
        let target = fsutil::open_in(
            b.mnt.as_fd(),
            rel,
            OFlags::PATH | OFlags::DIRECTORY,
            ResolveFlags::NO_SYMLINKS,
        )
        .map_err(io_at(&what))?;
        mount::attach(clone.as_fd(), target.as_fd(), false, &escape(&what))?;
    }
    if b.mutable {
        // Keep the metadata read-only even though the overlay is writable.
        txn.step(&format!("protect metadata of {}", esc(h)))?;
        let dot = open_fd(
            b.mnt.as_fd(),
            Path::new(class.metadata_dir()),
            OFlags::PATH | OFlags::DIRECTORY,
        )
        .map_err(io_at(metadata::metadata_path(h, class)))?;
        let bind = mount::clone_tree(dot.as_fd(), class.metadata_dir())?;
        mount::set_attrs(
            bind.as_fd(),
            MountAttrFlags::MOUNT_ATTR_RDONLY,
            class.metadata_dir(),
        )?;
        mount::attach(bind.as_fd(), dot.as_fd(), false, class.metadata_dir())?;
    }
    Ok(old_work)
}

/// A detached copy of the merge on `h` (with what is mounted below it, as the
/// read-only metadata bind of a mutable merge): what `--export` takes out of the
/// private namespace it merged in.
pub fn clone_merged(root: &Root, h: &str) -> Result<OwnedFd, MergeError> {
    let fd = root
        .open_at(h, OFlags::PATH | OFlags::DIRECTORY)
        .map_err(io_at(root.display_path(h)))?;
    Ok(mount::clone_tree_recursive(
        fd.as_fd(),
        &escape(&root.display_path(h)),
    )?)
}

/// Puts the detached merge `new` on `h` below `dir` (created if missing): the export
/// directory, or a service's root (`--main-pid`). A merge of ours already there is
/// replaced the way refresh replaces one (beneath where the kernel allows it). `what`
/// names the step (`export`, `put`). Undone by `txn`.
pub fn attach_detached(
    dir: &Root,
    class: Class,
    h: &str,
    new: OwnedFd,
    env: &Environment,
    what: &str,
    txn: &mut Txn,
) -> Result<(), MergeError> {
    txn.step(&format!("{what} {}", esc(&dir.display_path(h))))?;
    mkdir_p_in_root(dir, Path::new(h), 0o755).map_err(io_at(dir.display_path(h)))?;
    let old = find_merged(dir, class, h)?;
    put_on(
        dir,
        h,
        old.as_ref().map(|o| &o.fd),
        new,
        use_beneath(env),
        format!("{what} of {}", esc(&dir.display_path(h))),
        txn,
    )?;
    Ok(())
}

/// What [`apply`] did: the hierarchies it merged, and the work dirs of the merges it
/// replaced, removed by [`finish`] once the whole call has succeeded.
#[derive(Debug, Default)]
pub struct Applied {
    /// Hierarchies now carrying the new merge.
    pub hierarchies: Vec<String>,
    /// Work dirs of replaced merges (paths inside the root).
    pub old_work_dirs: Vec<String>,
}

/// Applies `plan` with the directories inspection opened (`handles`), registering each
/// step's undo in `txn` (the caller commits or rolls back). With `replace`, hierarchies
/// already merged are swapped for the new overlay (refresh); otherwise they must not be
/// merged.
/// `stamp` is the merge's quick stamp ([`crate::inspect::stamp`]), written with it.
pub fn apply(
    root: &Root,
    plan: &MergePlan,
    handles: &Handles,
    env: &Environment,
    stamp: &str,
    replace: bool,
    txn: &mut Txn,
) -> Result<Applied, MergeError> {
    // Each merged extension is observed once, for both fingerprints.
    let observed = crate::sys::origin::Observations::of(root, plan, handles);
    let fingerprint = crate::sys::origin::render(root, plan, &observed);
    let systemd_origin =
        crate::sys::origin::render_systemd(plan, &observed, env.overlay_options(plan.class));
    let merged: Vec<String> = plan
        .hierarchies
        .iter()
        .map(|h| h.hierarchy.clone())
        .collect();
    let stamp = crate::inspect::stamp::with_merged(stamp, &merged);
    txn.step("create staging tmpfs")?;
    let staging = StagingArea::create(plan.class.as_str(), plan.class.mount_source())?;
    let run = Run {
        root,
        plan,
        handles,
        env,
        staging: &staging,
        fingerprint: &fingerprint,
        systemd_origin: &systemd_origin,
        stamp: &stamp,
        replace,
    };
    let mut built = Vec::new();
    for h in &plan.hierarchies {
        built.push((build_hierarchy(&run, h, txn)?, h.host_exists));
    }
    // Submounts to carry over are found in the mount table as it is before attaching.
    let mountinfo =
        crate::sys::hierarchy::read_mountinfo().map_err(io_at("/proc/thread-self/mountinfo"))?;
    let mut old_work_dirs = Vec::new();
    for (b, exists) in &built {
        old_work_dirs.extend(attach_built(&run, b, *exists, &mountinfo, txn)?);
    }
    txn.step("remove staging tmpfs")?;
    // The overlays hold private clones of what they use: the staging mount can go.
    drop(staging);
    Ok(Applied {
        hierarchies: built.into_iter().map(|(b, _)| b.hierarchy).collect(),
        old_work_dirs,
    })
}

/// After a committed call: the replaced merges are gone, their work dirs too, as
/// unmerge would do.
pub fn finish(root: &Root, applied: &Applied) {
    for w in &applied.old_work_dirs {
        if let Err(e) = remove_tree_in_root(root, Path::new(w)) {
            crate::log::warn(&format!(
                "{}: {}",
                esc(&root.display_path(w)),
                crate::log::os_text(&e)
            ));
        }
    }
}

/// Opens the root named in `opts`.
pub fn open_root(opts: &Options) -> Result<Root, MergeError> {
    Root::open(&opts.root).map_err(|source| {
        MergeError::Plan(PlanError::Root {
            path: opts.root.clone(),
            source,
        })
    })
}

/// Fails with [`MergeError::NotPrivileged`] unless the calling thread has `CAP_SYS_ADMIN`
/// in its effective set, as systemd-sysext checks before merge, unmerge and refresh:
/// without it nothing can be mounted, and the first failure would otherwise name
/// whatever file could not be created (`/run/extmerge/lock`). When the capabilities
/// cannot be read, the merge goes on and fails where it fails.
pub fn require_privileges() -> Result<(), MergeError> {
    use rustix::thread::{capabilities, CapabilitySet};
    match capabilities(None) {
        Ok(c) if !c.effective.contains(CapabilitySet::SYS_ADMIN) => Err(MergeError::NotPrivileged),
        _ => Ok(()),
    }
}

/// Serialises merges, unmerges and refreshes of all extmerge processes on this system
/// (systemd has no lock; two runs at once could interleave their mounts). Blocks until
/// the lock is free; released when the returned fd is closed (also on a crash).
///
/// The workspace and the lock file are opened without following symlinks and must be
/// root's alone ([`crate::sys::staging::open_workspace`]): nothing is created through a
/// planted link.
pub fn lock() -> Result<OwnedFd, MergeError> {
    let ws = crate::sys::staging::open_workspace()?;
    if crate::sys::target::in_private_namespace() {
        // A namespace of this thread's alone (`--export`): nobody else can enter it.
        return Ok(ws);
    }
    // One lock per mount namespace: merges into two services' namespaces do not wait
    // for each other (their /run is often the host's). The init process's namespace
    // keeps the plain name, however it is reached (directly, or with --pid=1 from a
    // unit's own namespace).
    let name = crate::sys::target::lock_name();
    let fd = crate::sys::staging::open_workspace_file(ws.as_fd(), &name)?;
    let path = Path::new(WORKSPACE).join(&name);
    rustix::io::retry_on_intr(|| rustix::fs::flock(&fd, rustix::fs::FlockOperation::LockExclusive))
        .map_err(|e| io_at(&path)(e.into()))?;
    clean_stale_staging(ws.as_fd());
    Ok(fd)
}

/// Removes staging mounts and directories left by runs that died (kill -9, power
/// loss in the initrd does not matter: /run is new): entries are named
/// `<class>[-images].<pid>.<n>`; those whose pid no longer runs are detached and removed.
fn clean_stale_staging(ws_fd: BorrowedFd<'_>) {
    let ws = Path::new(WORKSPACE);
    let Ok(entries) = rustix::fs::Dir::read_from(ws_fd) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(name) = e.file_name().to_str() else {
            continue;
        };
        let Some(pid) = name.split('.').nth(1).and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let alive = rustix::process::Pid::from_raw(pid)
            .map(|p| rustix::process::test_kill_process(p) != Err(rustix::io::Errno::SRCH))
            .unwrap_or(false);
        if alive {
            continue;
        }
        let path = ws.join(name);
        // By the workspace fd, never following a symlink.
        let _ = rustix::mount::unmount(
            format!("{}/{name}", fd_path(ws_fd)).as_str(),
            rustix::mount::UnmountFlags::DETACH | rustix::mount::UnmountFlags::NOFOLLOW,
        );
        match rustix::fs::unlinkat(ws_fd, name, rustix::fs::AtFlags::REMOVEDIR)
            .map_err(io::Error::from)
        {
            Ok(()) => crate::log::info(&format!(
                "Removed staging area {} of a run that died (pid {pid}).",
                esc(&path)
            )),
            Err(e) => crate::log::warn(&format!("{}: {}", esc(&path), crate::log::os_text(&e))),
        }
    }
}

/// Unmerges every hierarchy of `class` in `hierarchies`; returns those that had a
/// merge, and the names of the extensions they held (for the manager reload).
pub fn unmerge_class(
    root: &Root,
    class: Class,
    hierarchies: &[String],
) -> Result<(Vec<String>, Vec<String>), MergeError> {
    let names: Vec<String> = hierarchies
        .iter()
        .filter_map(|h| find_merged(root, class, h).ok().flatten())
        .flat_map(|m| m.extensions)
        .collect();
    let mut done = Vec::new();
    for h in hierarchies {
        if unmerge_hierarchy(root, class, h)? {
            done.push(h.clone());
        }
    }
    Ok((done, names))
}

/// Removes all of our merges from `h`, as systemd does: until the top mount is not
/// ours. An overlay below one just removed whose metadata names the removed one is a
/// leftover of the same stacking and goes too ([`metadata::find_merged_with`]); true if
/// there was one.
pub fn unmerge_hierarchy(root: &Root, class: Class, h: &str) -> Result<bool, MergeError> {
    let (mut removed, mut any) = (Vec::new(), false);
    // Each round removes one layer of stacking; bounded so a broken state cannot loop.
    for _ in 0..64 {
        let Some(m) = metadata::find_merged_with(root, class, h, &removed)? else {
            break;
        };
        let dev = rustix::fs::fstat(&m.fd).map(|st| st.st_dev).ok();
        mount::detach(m.fd.as_fd(), &escape(&root.display_path(h)))?;
        removed.extend(dev);
        if let Some(w) = &m.work_dir {
            remove_tree_in_root(root, Path::new(w)).map_err(io_at(root.display_path(w)))?;
        }
        crate::log::info(&format!("Unmerged '{}'.", esc(&root.display_path(h))));
        any = true;
    }
    Ok(any)
}

/// `rm -rf` of `rel` inside the root, never following symlinks.
pub fn remove_tree_in_root(root: &Root, rel: &Path) -> io::Result<()> {
    let Some(name) = rel.file_name() else {
        return Ok(());
    };
    let parent = rel.parent().unwrap_or(Path::new("/"));
    let pfd = match root.open_at(parent, OFlags::RDONLY | OFlags::DIRECTORY) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    remove_entry(pfd.as_fd(), name, 0)
}

fn remove_entry(dir: BorrowedFd<'_>, name: &std::ffi::OsStr, depth: usize) -> io::Result<()> {
    use rustix::fs::AtFlags;
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => return Ok(()),
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(rustix::io::Errno::ISDIR) | Err(rustix::io::Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    if depth > 256 {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for e in rustix::fs::Dir::read_from(&fd)? {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(std::ffi::OsString::from(
                std::ffi::OsStr::from_bytes_compat(n),
            ));
        }
    }
    for n in names {
        remove_entry(fd.as_fd(), &n, depth + 1)?;
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    Ok(())
}

trait FromBytesCompat {
    fn from_bytes_compat(b: &[u8]) -> &std::ffi::OsStr;
}
impl FromBytesCompat for std::ffi::OsStr {
    fn from_bytes_compat(b: &[u8]) -> &std::ffi::OsStr {
        std::os::unix::ffi::OsStrExt::from_bytes(b)
    }
}

/// Acts on the service manager requests of the extensions `names` after they were
/// merged, refreshed or unmerged, as systemd-sysext ≥ 262 does: a daemon-reload when
/// one sets `EXTENSION_RELOAD_MANAGER=1` or lists units, then `RestartUnit` for the
/// units of `EXTENSION_RESTART_UNITS=` and `ReloadOrRestartUnit` for those of
/// `EXTENSION_RELOAD_OR_RESTART_UNITS=` (mode `replace`; a unit the manager no longer
/// knows, e.g. one the unmerged extension shipped, is stopped instead), waiting for
/// the jobs. Nothing with the no-reload option or another root; failures only warn.
pub fn maybe_reload(opts: &Options, root: &Root, class: Class, names: &[String]) {
    if opts.no_reload || !root.is_host_root() || names.is_empty() {
        return;
    }
    // The release files of the named extensions, found again by discovery (systemd's
    // relaxed lookup); disk images are not mounted again for this.
    let (initrd, scope) = facts::root_scope(root);
    let Ok(host) =
        crate::inspect::release::HostIdentity::load(root, scope, opts.env.os_release.as_deref())
    else {
        return;
    };
    let Ok((cands, _, _)) = facts::evaluate(
        root,
        class,
        &host,
        &opts.search_dirs(class, initrd),
        true,
        &mut DirOpener,
        OnUnusable::Record,
    ) else {
        return;
    };
    let actions = manager_actions(&cands, names);
    for w in &actions.warnings {
        crate::log::warn(w);
    }
    if !actions.reload {
        return;
    }
    if !Path::new("/run/systemd/system").exists() {
        crate::log::info("An extension asks for a manager reload (EXTENSION_RELOAD_MANAGER=1), but no service manager runs: not reloading.");
        return;
    }
    crate::log::info("Reloading the service manager (EXTENSION_RELOAD_MANAGER=1).");
    let mut bus = match crate::sys::manager::Manager::connect() {
        Ok(b) => b,
        Err(e) => {
            // PID 1 always has its private socket; should it not answer, `SIGHUP`
            // still gets the unit files reloaded (asynchronously), as before.
            crate::log::warn(&format!("{e}, sending SIGHUP to PID 1 instead"));
            sighup_pid1();
            if !actions.restart.is_empty() || !actions.reload_or_restart.is_empty() {
                crate::log::warn("not restarting the units the extensions list: no connection to the service manager");
            }
            return;
        }
    };
    if let Err(e) = bus.reload() {
        crate::log::warn(&format!("failed to reload the service manager: {e}"));
        return;
    }
    let mut jobs = Vec::new();
    let all = (actions.restart.iter().map(|u| ("RestartUnit", u))).chain(
        actions
            .reload_or_restart
            .iter()
            .map(|u| ("ReloadOrRestartUnit", u)),
    );
    for (method, unit) in all {
        crate::log::debug(&format!("Calling {method} for unit '{unit}'."));
        let mut m = method;
        let mut r = bus.unit_job(m, unit);
        if matches!(&r, Err(e) if e.is_remote(NO_SUCH_UNIT) || e.is_remote(LOAD_FAILED)) {
            // Gone with the extension: stop what may still run of it.
            m = "StopUnit";
            r = bus.unit_job(m, unit);
            if matches!(&r, Err(e) if e.is_remote(NO_SUCH_UNIT)) {
                crate::log::debug(&format!("Unit '{unit}' is already gone, nothing to stop."));
                continue;
            }
        }
        match r {
            Ok(j) => jobs.push((m, unit, j)),
            Err(e) => crate::log::warn(&format!("Failed to {m} unit '{unit}': {e}")),
        }
    }
    let deadline = std::time::Instant::now() + JOB_TIMEOUT;
    for (method, unit, job) in jobs {
        match bus.wait_job(&job, deadline) {
            Ok(r) if r == "done" => {}
            Ok(r) => crate::log::warn(&format!("{method} job of unit '{unit}' finished: {r}")),
            Err(e) => crate::log::warn(&format!(
                "Failed to wait for {method} job of unit '{unit}', ignoring: {e}"
            )),
        }
    }
}

const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";
const LOAD_FAILED: &str = "org.freedesktop.systemd1.LoadFailed";

/// How long [`maybe_reload`] waits for all unit jobs together (systemctl waits without
/// limit; a merge must end).
const JOB_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);

fn sighup_pid1() {
    if let Some(pid1) = rustix::process::Pid::from_raw(1) {
        if let Err(e) = rustix::process::kill_process(pid1, rustix::process::Signal::HUP) {
            crate::log::warn(&format!(
                "failed to reload the service manager: {}",
                crate::log::errno_text(e)
            ));
        }
    }
}

/// What the extension-release files of a set of extensions ask of the manager.
#[derive(Debug, Default, PartialEq)]
pub struct ManagerActions {
    /// A daemon-reload (`EXTENSION_RELOAD_MANAGER=` true, or any unit listed).
    pub reload: bool,
    /// Units to restart, in order, each once.
    pub restart: Vec<String>,
    /// Units to reload or restart, none of them also in `restart` (restart wins).
    pub reload_or_restart: Vec<String>,
    /// What was ignored: unparsable booleans, invalid unit names.
    pub warnings: Vec<String>,
}

/// The manager actions the extensions `names` ask for, in `cands`' order.
pub fn manager_actions(cands: &[facts::Candidate], names: &[String]) -> ManagerActions {
    use crate::inspect::release::{unit_list, UNIT_KEYS};
    let mut a = ManagerActions::default();
    for c in cands.iter().filter(|c| names.contains(&c.image.name)) {
        let Some(env) = c.release.as_ref().map(|r| &r.env) else {
            continue;
        };
        let name = &c.image.name;
        if let Some(v) = env
            .get("EXTENSION_RELOAD_MANAGER")
            .filter(|v| !v.is_empty())
        {
            match crate::options::parse_boolean(v) {
                Some(b) => a.reload |= b,
                // systemd: "…, ignoring: %m" with parse_boolean()'s EINVAL.
                None => a.warnings.push(format!(
                    "Failed to parse EXTENSION_RELOAD_MANAGER= of {name}, ignoring: {}",
                    crate::log::errno_text(rustix::io::Errno::INVAL)
                )),
            }
        }
        for key in UNIT_KEYS {
            let Some(v) = env.get(key) else { continue };
            for unit in unit_list(v) {
                // Templates pass check_unit_name but cannot be (re)started.
                let template = unit.contains("@.");
                if template || crate::format::unit::check_unit_name(unit).is_err() {
                    a.warnings.push(format!(
                        "Invalid unit name '{}' in {key}= of {name}, ignoring.",
                        unit.escape_debug()
                    ));
                    continue;
                }
                let list = if key == UNIT_KEYS[0] {
                    &mut a.restart
                } else {
                    &mut a.reload_or_restart
                };
                if !list.iter().any(|u| u == unit) {
                    list.push(unit.to_string());
                }
            }
            // Listing units implies a reload: the manager must see the unit files the
            // extension brought (or took away). systemd tests the value for emptiness.
            a.reload |= !v.is_empty();
        }
    }
    let restart = std::mem::take(&mut a.restart);
    a.reload_or_restart.retain(|u| !restart.contains(u));
    a.restart = restart;
    a
}

/// Does any of the extensions `names` ask for a manager reload
/// (`EXTENSION_RELOAD_MANAGER=` true in its extension-release, or units listed)?
pub fn reload_wanted(cands: &[facts::Candidate], names: &[String]) -> bool {
    manager_actions(cands, names).reload
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::class::Scope;
    use std::fs;

    #[test]
    fn reload_is_wanted_only_when_a_merged_extension_asks() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let rel = |n: &str, body: &str| {
            let d = r.join(format!(
                "var/lib/extensions/{n}/usr/lib/extension-release.d"
            ));
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join(format!("extension-release.{n}")), body).unwrap();
        };
        fs::create_dir_all(r.join("etc")).unwrap();
        fs::write(r.join("etc/os-release"), "ID=debian\n").unwrap();
        rel("a", "ID=_any\nEXTENSION_RELOAD_MANAGER=1\n");
        rel("b", "ID=_any\nEXTENSION_RELOAD_MANAGER=no\n");
        rel("c", "ID=_any\nEXTENSION_RELOAD_MANAGER=maybe\n");
        rel(
            "d",
            "ID=_any\nEXTENSION_RESTART_UNITS=\"x.service  bad/x.service\ty@1.service\"\n\
             EXTENSION_RELOAD_OR_RESTART_UNITS='w.service x.service tmpl@.service'\n",
        );
        rel(
            "e",
            "ID=_any\nEXTENSION_RESTART_UNITS=\nEXTENSION_RELOAD_MANAGER=0\n",
        );
        rel("f", "ID=_any\nEXTENSION_RESTART_UNITS=z.socket x.service\n");
        let root = Root::open(r).unwrap();
        let host = crate::inspect::release::HostIdentity::load(&root, Scope::System, None).unwrap();
        let (cands, _, _) = facts::evaluate(
            &root,
            Class::Sysext,
            &host,
            &Options::default().search_dirs(Class::Sysext, false),
            true,
            &mut DirOpener,
            OnUnusable::Record,
        )
        .unwrap();
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(reload_wanted(&cands, &names(&["a"])));
        assert!(reload_wanted(&cands, &names(&["b", "a"])));
        assert!(!reload_wanted(&cands, &names(&["b", "c"])));
        assert!(!reload_wanted(&cands, &names(&[])));
        // Listing units implies the reload; restart wins over reload-or-restart;
        // invalid names and templates are left out with a warning; each unit once.
        assert!(reload_wanted(&cands, &names(&["d"])));
        assert!(!reload_wanted(&cands, &names(&["e"])));
        let a = manager_actions(&cands, &names(&["a", "c", "d", "e", "f"]));
        assert!(a.reload);
        assert_eq!(a.restart, ["x.service", "y@1.service", "z.socket"]);
        assert_eq!(a.reload_or_restart, ["w.service"]);
        assert_eq!(
            a.warnings,
            [
                "Failed to parse EXTENSION_RELOAD_MANAGER= of c, ignoring: Invalid argument",
                "Invalid unit name 'bad/x.service' in EXTENSION_RESTART_UNITS= of d, ignoring.",
                "Invalid unit name 'tmpl@.service' in EXTENSION_RELOAD_OR_RESTART_UNITS= of d, ignoring.",
            ]
        );
        assert_eq!(
            manager_actions(&cands, &names(&["b"])),
            ManagerActions::default()
        );
    }

    /// The library's own words name no front-end's options or verbs; the front-end's
    /// hint goes where systemd-sysext names its option.
    #[test]
    fn library_messages_name_no_cli_options() {
        let root = Path::new("/");
        let o = Outcome {
            extensions: vec!["a".into()],
            unchanged: true,
            ..Outcome::default()
        };
        let lines = o.describe(Class::Sysext, root);
        assert_eq!(
            lines,
            ["Skipping extension refresh because no change was found."]
        );
        assert_eq!(
            o.describe_with(Class::Confext, root, Some("--always-refresh=yes")),
            ["Skipping extension refresh because no change was found, use --always-refresh=yes to always do a refresh."]
        );
        let e = MergeError::AlreadyMerged(PathBuf::from("/sysroot/usr"));
        assert_eq!(e.to_string(), "/sysroot/usr: hierarchy is already merged");
        for m in lines.iter().chain([&e.to_string()]) {
            assert!(!m.contains("--") && !m.contains(" use "), "{m}");
        }
    }

    #[test]
    fn outcome_lines_match_systemd_wording() {
        let root = Path::new("/sysroot");
        let o = Outcome {
            ignored: 2,
            ..Outcome::default()
        };
        assert_eq!(
            o.describe(Class::Sysext, root),
            ["No suitable extensions found (2 ignored due to incompatible image(s))."]
        );
        // A refresh to zero extensions: its unmerges were logged when they happened.
        let o = Outcome {
            unmerged: vec!["/usr".into(), "/opt".into()],
            ..Outcome::default()
        };
        assert_eq!(o.describe(Class::Sysext, root), ["No extensions found."]);
        let o = Outcome {
            extensions: vec!["a".into(), "b".into()],
            merged: vec!["/usr".into()],
            ..Outcome::default()
        };
        assert_eq!(
            o.describe(Class::Sysext, root),
            [
                "Using extensions 'a', 'b'.",
                "Merged extensions into '/sysroot/usr'."
            ]
        );
        // systemd 262 names the files: an image with its suffix, the version picked
        // from a `.v/` directory.
        let o = Outcome {
            extensions: vec!["ero".into(), "vee".into()],
            files: vec!["ero.raw".into(), "vee_2".into()],
            merged: vec!["/usr".into()],
            ..Outcome::default()
        };
        assert_eq!(
            o.describe(Class::Confext, root)[0],
            "Using extensions 'ero.raw', 'vee_2'."
        );
    }
}
