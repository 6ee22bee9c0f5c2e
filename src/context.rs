//! The one entry point: a [`Context`] says what to work on (root, classes, hierarchies,
//! mutable mode, image policy, flags, the environment as the front-end read it) and
//! offers `plan`, `merge`, `refresh`, `unmerge`, `status` and `list`. The CLI,
//! `extmerge-initrd` and the C ABI are thin adapters over it.
//!
//! Each verb runs the same three steps for every class: **inspect** the root
//! ([`crate::inspect`]: discovery, verdicts, the state of each hierarchy; disk images
//! are set up by the kernel layer's opener to read their extension-release), **plan**
//! ([`crate::plan::plan`], pure), **apply** ([`crate::sys::apply`]). Several classes
//! in one call are all or nothing: every class is inspected and planned before anything
//! is mounted, and the merges of all classes share one transaction ([`Txn`]), so a
//! failure in the last class undoes the first.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use crate::format::class::Class;
use crate::format::escape::esc;
use crate::inspect::discover::{Discovery, Image};
use crate::inspect::facts::{self, DirOpener, Handles, OnUnusable, Opener};
use crate::inspect::fsutil::Root;
use crate::inspect::metadata::{self, find_merged, StatusRow};
use crate::inspect::stamp;
use crate::options::{MutableMode, Options, Search};
use crate::plan::{self, MergePlan, PlanError};
use crate::record::{self, Phase};
use crate::sys::apply::{self, Applied};
use crate::sys::hierarchy::HostDir;
use crate::sys::target::Target;
use crate::sys::txn::Txn;

pub use crate::sys::apply::{require_privileges, MergeError, Outcome};

/// What to work on, and how. Build it with [`Context::new`], adjust the public fields,
/// then call a verb.
#[derive(Debug, Clone)]
pub struct Context {
    /// Root, hierarchies, flags, image policy and environment. Its `mutable` is
    /// replaced per class by [`Context::options_for`].
    pub options: Options,
    /// The mutable mode asked for; `None`: the class's `SYSTEMD_*_MUTABLE_MODE` (as the
    /// front-end read it into `options.env`), else `Mutable=` of the configuration,
    /// else `no`. [`Context::new`] takes `options.mutable` unless it is `no` (the
    /// default, which says nothing was asked); a front-end sets `None` when its user
    /// did not choose (`--mutable=` not given).
    pub mutable: Option<MutableMode>,
    /// The classes, in the order they are worked on (systemd: confext, then sysext).
    pub classes: Vec<Class>,
    /// Work on this process's mount namespace and root instead of the caller's
    /// (`--pid`): the root and search directories are seen as the process sees them,
    /// and the merges land in its namespace only. The manager is never reloaded for it.
    /// A process sharing the caller's namespace and root means the caller's own.
    pub target: Option<i32>,
    /// Merge in a namespace of its own and attach the merged hierarchies below this
    /// directory of the caller's namespace (`<dir>/etc`…) instead of on them
    /// (`--export`): a service's `/etc` to bind-mount (`BindReadOnlyPaths=DIR/etc:/etc`),
    /// prepared before the service starts. `merge` builds it, `refresh` rebuilds and
    /// swaps it, `unmerge` removes it. Read-only merges only. With a target, "the
    /// caller's namespace" is the target's (`--pid=1` from a unit's own namespace).
    pub export: Option<std::path::PathBuf>,
    /// With `export` and `refresh`: this process's mount namespace gets the new merge
    /// too, replacing the one on its hierarchies (`--main-pid`: a service's main
    /// process, whose `/etc` is bound from an earlier export). One build for both, in
    /// one process, all or nothing: a reload refreshes the export for the unit's later
    /// processes and the running one at the cost of one command.
    pub main_pid: Option<i32>,
}

impl Context {
    /// A context for `classes` with `options`. A mutable mode other than the default
    /// (`no`) in `options` is taken as chosen (as `--mutable=`); `no`, which is also what
    /// an unset mode looks like, leaves the choice to the environment and the
    /// configuration that `options` carry (see [`Context::options_for`]): the initrd
    /// program honours `SYSTEMD_*_MUTABLE_MODE` and `Mutable=` as systemd-sysext does.
    /// Set [`Context::mutable`] to `Some(MutableMode::No)` to insist on `no`.
    pub fn new(options: Options, classes: &[Class]) -> Context {
        Context {
            mutable: (options.mutable != MutableMode::No).then_some(options.mutable),
            options,
            classes: classes.to_vec(),
            target: None,
            export: None,
            main_pid: None,
        }
    }

    /// Runs `verb` where the context says: here, or inside the target process's mount
    /// namespace and root (a helper thread joins them; the caller's stay as they are).
    fn within<R: Send>(
        &self,
        verb: impl FnOnce(&Context) -> Result<R, MergeError> + Send,
    ) -> Result<R, MergeError> {
        let Some(pid) = self.target else {
            return verb(self);
        };
        let Some(target) = Target::open(pid)? else {
            let mut here = self.clone();
            here.target = None;
            return verb(&here);
        };
        let mut there = self.clone();
        there.target = None;
        there.options.no_reload = true;
        there.options.per_service = true;
        target
            .run(|| verb(&there))?
            .map_err(|e| MergeError::InTarget {
                pid,
                source: Box::new(e),
            })
    }

    /// The options for `class`, with systemd's precedence: the explicit mutable mode
    /// beats the class's environment variable (an invalid value is warned about and
    /// ignored, as systemd does), which beats `Mutable=` of the class's configuration
    /// file (`options.config`), which beats the default (`no`); an explicit image policy
    /// beats `ImagePolicy=` of the configuration file.
    pub fn options_for(&self, class: Class) -> Options {
        let mut o = self.options.clone();
        // A unit's own extensions are a service's, wherever they are merged.
        o.per_service |= matches!(o.search, Some(Search::Unit(_)));
        let conf = o.config.class(class).clone();
        o.mutable = match self.mutable {
            Some(m) => m,
            None => match o.env.mutable(class) {
                Ok(Some(m)) => m,
                Ok(None) => conf.mutable.unwrap_or_default(),
                Err(msg) => {
                    crate::log::warn(&msg);
                    conf.mutable.unwrap_or_default()
                }
            },
        };
        if o.image_policy.is_none() {
            o.image_policy = conf.image_policy;
        }
        o
    }

    /// Opens the root.
    pub fn open_root(&self) -> Result<Root, MergeError> {
        Root::open(&self.options.root).map_err(|source| {
            MergeError::Plan(PlanError::Root {
                path: self.options.root.clone(),
                source,
            })
        })
    }

    /// The opener a merge uses: directories and disk images (loop, GPT, dm-verity,
    /// image policy).
    pub fn image_opener(&self, opts: &Options, class: Class) -> Box<dyn Opener> {
        // systemd applies the strict `/.extra/` policies only in the initrd without --root.
        let initrd_no_root =
            opts.root == Path::new("/") && Path::new("/etc/initrd-release").exists();
        let mut op = crate::sys::activate::ImageOpener::new(
            class,
            opts.image_policy.clone(),
            initrd_no_root,
        );
        op.set_faults(opts.env.faults.image());
        op.set_recorder(opts.recorder.clone());
        Box::new(op)
    }

    /// The opener of `plan`, `--dry-run` and the C library's listing, so they give the
    /// verdicts a merge would: as root the merge's own (disk images are mounted to read
    /// their extension-release, and released again with the opener), else directories
    /// only (disk images get a verdict saying they are read when mounted).
    pub fn plan_opener(&self, opts: &Options, class: Class) -> Box<dyn Opener> {
        if rustix::process::geteuid().is_root() {
            self.image_opener(opts, class)
        } else {
            Box::new(DirOpener)
        }
    }

    /// The plan of `class` as `plan` and `--dry-run` show it: every extension gets a
    /// verdict, a broken or refused disk image [`crate::inspect::release::Verdict::Unusable`].
    pub fn plan(&self, class: Class) -> Result<MergePlan, MergeError> {
        self.within(|c| c.plan_here(class))
    }

    fn plan_here(&self, class: Class) -> Result<MergePlan, MergeError> {
        let root = self.open_root()?;
        self.check_sources(&root)?;
        let opts = self.options_for(class);
        let mut opener = self.plan_opener(&opts, class);
        Ok(prepare(&root, &opts, class, opener.as_mut(), OnUnusable::Record)?.plan)
    }

    /// [`Context::plan`] with a given opener (tests, embedders with their own).
    pub fn plan_with(
        &self,
        class: Class,
        opener: &mut (dyn Opener + Send),
    ) -> Result<MergePlan, MergeError> {
        self.within(|c| {
            let root = c.open_root()?;
            c.check_sources(&root)?;
            let opts = c.options_for(class);
            Ok(prepare(&root, &opts, class, opener, OnUnusable::Record)?.plan)
        })
    }

    /// The extensions of each class as discovery finds them (no verdicts: `list`).
    pub fn list(&self) -> Result<Vec<(Class, Discovery)>, MergeError> {
        self.within(|c| c.list_here())
    }

    fn list_here(&self) -> Result<Vec<(Class, Discovery)>, MergeError> {
        let root = self.open_root()?;
        self.check_sources(&root)?;
        let (initrd, _) = facts::root_scope(&root);
        self.classes
            .iter()
            .map(|&c| {
                self.options
                    .discover(&root, c, initrd)
                    .map(|d| (c, d))
                    .map_err(|e| MergeError::Plan(e.into()))
            })
            .collect()
    }

    /// What is merged now, per class and hierarchy.
    pub fn status(&self) -> Result<Vec<(Class, Vec<StatusRow>)>, MergeError> {
        self.within(|c| c.status_here())
    }

    fn status_here(&self) -> Result<Vec<(Class, Vec<StatusRow>)>, MergeError> {
        let root = self.open_root()?;
        self.classes
            .iter()
            .map(|&c| {
                let hs = self.hierarchies(c)?;
                Ok((c, metadata::status(&root, c, &hs)?))
            })
            .collect()
    }

    /// `--unit=NAME`: at least one of the unit's extension directories must exist (a
    /// unit named by mistake is an error, not an empty stack).
    fn check_sources(&self, root: &Root) -> Result<(), MergeError> {
        let Some(Search::Unit(unit)) = &self.options.search else {
            return Ok(());
        };
        let dirs: Vec<String> = self
            .classes
            .iter()
            .flat_map(|&c| self.options.search_dirs(c, false))
            .collect();
        let found = dirs.iter().any(|d| {
            root.open_at(d, rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY)
                .is_ok()
        });
        if found {
            Ok(())
        } else {
            Err(MergeError::NoUnitSources {
                unit: unit.clone(),
                dirs,
            })
        }
    }

    fn hierarchies(&self, class: Class) -> Result<Vec<String>, MergeError> {
        Ok(self
            .options
            .hierarchies_for(class)
            .map_err(PlanError::Hierarchies)?)
    }

    /// Merges every class; fails with [`MergeError::AlreadyMerged`] if a hierarchy is
    /// merged already. All or nothing over all classes.
    pub fn merge(&self) -> Result<Vec<(Class, Outcome)>, MergeError> {
        if let Some(dir) = &self.export {
            return self.within(|c| c.export_merge(dir, false));
        }
        self.within(|c| {
            let mut openers = c.openers();
            c.merge_in(&mut refs(&mut openers))
        })
    }

    /// [`Context::merge`] of a one-class context with a given opener.
    pub fn merge_with(&self, opener: &mut (dyn Opener + Send)) -> Result<Outcome, MergeError> {
        self.single_class();
        let mut v = self.within(|c| c.merge_in(&mut [opener]))?;
        Ok(v.pop().map(|(_, o)| o).unwrap_or_default())
    }

    /// Refreshes every class: merges what is installed now, replacing an existing merge
    /// without a moment in which the hierarchy is bare where the kernel allows it;
    /// unmerges a class with no extension left; does nothing where nothing changed
    /// (unless `always_refresh`). The new merges of all classes are all or nothing.
    pub fn refresh(&self) -> Result<Vec<(Class, Outcome)>, MergeError> {
        if let Some(dir) = &self.export {
            return self.within(|c| c.export_merge(dir, true));
        }
        self.within(|c| {
            let mut openers = c.openers();
            c.refresh_in(&mut refs(&mut openers))
        })
    }

    /// [`Context::refresh`] of a one-class context with a given opener.
    pub fn refresh_with(&self, opener: &mut (dyn Opener + Send)) -> Result<Outcome, MergeError> {
        self.single_class();
        let mut v = self.within(|c| c.refresh_in(&mut [opener]))?;
        Ok(v.pop().map(|(_, o)| o).unwrap_or_default())
    }

    /// Removes every merge of each class (also systemd's) from its hierarchies; returns
    /// the hierarchies unmerged per class.
    pub fn unmerge(&self) -> Result<Vec<(Class, Vec<String>)>, MergeError> {
        if let Some(dir) = &self.export {
            return self.within(|c| c.unexport(dir));
        }
        self.within(|c| c.unmerge_here())
    }

    /// `unmerge` with `--export`: the merges below the export directory `dir` go.
    fn unexport(&self, dir: &Path) -> Result<Vec<(Class, Vec<String>)>, MergeError> {
        apply::require_privileges()?;
        let _lock = apply::lock()?;
        let dir = match Root::open(dir) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(self.classes.iter().map(|&c| (c, Vec::new())).collect())
            }
            Err(source) => {
                return Err(MergeError::Io {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        };
        let mut out = Vec::new();
        for &class in &self.classes {
            let hs = self.hierarchies(class)?;
            out.push((class, apply::unmerge_class(&dir, class, &hs)?.0));
        }
        Ok(out)
    }

    /// `--export`: merge (or rebuild, with `replace`) every class in a namespace of its
    /// own, then attach detached copies of the merged hierarchies below the export
    /// directory `dir_path`, all or nothing; hierarchies exported before that have
    /// nothing now are removed after.
    fn export_merge(
        &self,
        dir_path: &Path,
        replace: bool,
    ) -> Result<Vec<(Class, Outcome)>, MergeError> {
        apply::require_privileges()?;
        let _lock = apply::lock()?;
        let io = |source| MergeError::Io {
            path: dir_path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir_path).map_err(io)?;
        let dir = Root::open(dir_path).map_err(io)?;
        if !replace {
            for &class in &self.classes {
                for h in self.hierarchies(class)? {
                    if find_merged(&dir, class, &h)?.is_some() {
                        return Err(MergeError::AlreadyMerged(dir.display_path(&h)));
                    }
                }
            }
        }
        // Opened before anything changes: a process that is not there fails the call.
        let main = match self.main_pid.filter(|_| replace) {
            Some(pid) => Some(main_target(pid)?),
            None => None,
        };
        let mut inner = self.clone();
        inner.export = None;
        inner.target = None;
        inner.main_pid = None;
        inner.options.no_reload = true;
        inner.mutable = Some(MutableMode::No);
        let copies = if main.is_some() { 2 } else { 1 };
        let (out, trees) = crate::sys::target::run_private(|| {
            let out = inner.merge()?;
            let root = inner.open_root()?;
            let mut trees = Vec::new();
            for (class, o) in &out {
                for h in &o.merged {
                    for copy in 0..copies {
                        trees.push((copy, *class, h.clone(), apply::clone_merged(&root, h)?));
                    }
                }
            }
            Ok::<_, MergeError>((out, trees))
        })??;
        let mut txn = Txn::new(self.options.env.faults.merge());
        let mut for_main = Vec::new();
        for (copy, class, h, tree) in trees {
            if copy == 0 {
                apply::attach_detached(
                    &dir,
                    class,
                    &h,
                    tree,
                    &self.options.env,
                    "export",
                    &mut txn,
                )?;
            } else {
                for_main.push((class, h, tree));
            }
        }
        // Hierarchies with nothing merged now: what an earlier export put there goes.
        let mut gone = Vec::new();
        for (class, o) in &out {
            for h in self.hierarchies(*class)? {
                if !o.merged.contains(&h) {
                    gone.push((*class, h));
                }
            }
        }
        if let Some((pid, target)) = main {
            // Its lock file, made here: a service's /run is often the caller's, read-only
            // in its namespace (ProtectSystem=strict), where it could not be made.
            let _ = crate::sys::staging::touch_workspace_file(&target.lock_name()?);
            let (env, root) = (&self.options.env, &self.options.root);
            target
                .run(|| put_in_process(root, for_main, &gone, env))?
                .map_err(|e| MergeError::InTarget {
                    pid,
                    source: Box::new(e),
                })?;
        }
        txn.commit();
        let mut out = out;
        for (class, h) in gone {
            if apply::unmerge_hierarchy(&dir, class, &h)? {
                if let Some((_, o)) = out.iter_mut().find(|(c, _)| *c == class) {
                    o.unmerged.push(h);
                }
            }
        }
        Ok(out)
    }

    fn unmerge_here(&self) -> Result<Vec<(Class, Vec<String>)>, MergeError> {
        apply::require_privileges()?;
        let _lock = apply::lock()?;
        let root = match self.open_root() {
            Ok(r) => r,
            // Nothing can be merged below a root that is not there: systemd 262 says so
            // and succeeds.
            Err(MergeError::Plan(PlanError::Root { source, path }))
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                crate::log::warn(&format!(
                    "{}: cannot open root: {}",
                    esc(&path),
                    crate::log::os_text(&source)
                ));
                return Ok(self.classes.iter().map(|&c| (c, Vec::new())).collect());
            }
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for &class in &self.classes {
            let opts = self.options_for(class);
            let hs = self.hierarchies(class)?;
            let (done, names) = apply::unmerge_class(&root, class, &hs)?;
            if !done.is_empty() {
                apply::maybe_reload(&opts, &root, class, &names);
            }
            out.push((class, done));
        }
        Ok(out)
    }

    fn single_class(&self) -> Class {
        assert_eq!(
            self.classes.len(),
            1,
            "merge_with/refresh_with take a context of one class"
        );
        self.classes[0]
    }

    fn openers(&self) -> Vec<Box<dyn Opener>> {
        self.classes
            .iter()
            .map(|&c| self.image_opener(&self.options_for(c), c))
            .collect()
    }

    /// Checks every class, then inspects and plans every class, then applies them all
    /// in one transaction.
    fn merge_in(
        &self,
        openers: &mut [&mut dyn Opener],
    ) -> Result<Vec<(Class, Outcome)>, MergeError> {
        apply::require_privileges()?;
        let _lock = apply::lock()?;
        let root = self.open_root()?;
        self.check_sources(&root)?;
        let mut prepared = Vec::new();
        for (&class, opener) in self.classes.iter().zip(openers.iter_mut()) {
            let opts = self.options_for(class);
            let hs = checked_hierarchies(&root, &opts, class)?;
            for h in &hs {
                if find_merged(&root, class, h)?.is_some() {
                    return Err(MergeError::AlreadyMerged(root.display_path(h)));
                }
            }
            let Prepared { plan, handles } =
                prepare(&root, &opts, class, &mut **opener, OnUnusable::Fail)?;
            let stamp = stamp_of(&root, &opts, &hs, &plan, &handles);
            prepared.push((opts, plan, handles, stamp));
        }
        let mut txn = Txn::new(self.options.env.faults.merge());
        let mut applied = Vec::new();
        for (opts, plan, handles, stamp) in &prepared {
            let done = if plan.extensions.is_empty() {
                Applied::default()
            } else {
                let t = record::start(opts.recorder.as_ref());
                let done = apply::apply(&root, plan, handles, &opts.env, stamp, false, &mut txn)?;
                if let (Some(r), Some(t)) = (&opts.recorder, t) {
                    r.phase(plan.class, Phase::Mount, record::usec_since(t));
                }
                done
            };
            applied.push(done);
        }
        txn.commit();
        let mut out = Vec::new();
        for ((opts, plan, _, _), done) in prepared.iter().zip(applied) {
            let mut o = outcome_of(plan);
            o.merged = done.hierarchies;
            if !o.merged.is_empty() {
                apply::maybe_reload(opts, &root, plan.class, &plan.extensions);
            }
            out.push((plan.class, o));
        }
        Ok(out)
    }

    fn refresh_in(
        &self,
        openers: &mut [&mut dyn Opener],
    ) -> Result<Vec<(Class, Outcome)>, MergeError> {
        apply::require_privileges()?;
        let _lock = apply::lock()?;
        let root = self.open_root()?;
        self.check_sources(&root)?;
        // Look at every class first (a stamp that says nothing changed ends the look
        // there), then inspect and plan the others: a broken extension of the last
        // class fails the call before anything changes.
        let mut prepared = Vec::new();
        for (&class, opener) in self.classes.iter().zip(openers.iter_mut()) {
            let opts = self.options_for(class);
            let hs = checked_hierarchies(&root, &opts, class)?;
            let (initrd, _) = facts::root_scope(&root);
            let t = record::start(opts.recorder.as_ref());
            let found = opts
                .discover(&root, class, initrd)
                .map_err(PlanError::from)?;
            if let (Some(r), Some(t)) = (&opts.recorder, t) {
                r.phase(class, Phase::Discover, record::usec_since(t));
            }
            let now = stamp_found(&root, &opts, class, &hs, &found);
            if !opts.always_refresh {
                if let Some(extensions) = quick_unchanged(&root, class, &hs, &now)? {
                    let o = quick_outcome(&found, extensions);
                    prepared.push((opts, hs, Looked::Unchanged(o)));
                    continue;
                }
            }
            let Prepared { plan, handles } = prepare_found(
                &root,
                &opts,
                class,
                &mut **opener,
                OnUnusable::Fail,
                Some(found),
            )?;
            prepared.push((opts, hs, Looked::Planned(Box::new((plan, handles, now)))));
        }
        let mut txn = Txn::new(self.options.env.faults.merge());
        let mut steps = Vec::new();
        for (i, (opts, hs, looked)) in prepared.iter().enumerate() {
            let Looked::Planned(planned) = looked else {
                steps.push((i, Refresh::Unchanged));
                continue;
            };
            let (plan, handles, stamp) = &**planned;
            let class = plan.class;
            let step = if plan.extensions.is_empty() {
                Refresh::UnmergeAll
            } else if let Some(h) = hs
                .iter()
                .find(|h| HostDir::is_stacked_on_mount(&root, class, h))
            {
                // Cannot be replaced from below: unmerge, then merge (not atomic).
                crate::log::info(&format!(
                    "{}: merged over a mount point, refreshing by unmerge + merge",
                    esc(&root.display_path(h))
                ));
                Refresh::Remerge
            } else if !opts.always_refresh && unchanged(&root, plan, handles, hs)? {
                Refresh::Unchanged
            } else {
                let t = record::start(opts.recorder.as_ref());
                let done = apply::apply(&root, plan, handles, &opts.env, stamp, true, &mut txn)?;
                if let (Some(r), Some(t)) = (&opts.recorder, t) {
                    r.phase(class, Phase::Mount, record::usec_since(t));
                }
                Refresh::Replaced(done)
            };
            steps.push((i, step));
        }
        txn.commit();
        // What cannot be undone comes after every new merge is in place.
        let mut out = Vec::new();
        for (i, step) in steps {
            let (opts, hs, looked) = &prepared[i];
            let plan = match looked {
                Looked::Unchanged(o) => {
                    out.push((self.classes[i], o.clone()));
                    continue;
                }
                Looked::Planned(planned) => &planned.0,
            };
            let class = plan.class;
            let mut o = outcome_of(plan);
            match step {
                Refresh::UnmergeAll => {
                    let (done, names) = apply::unmerge_class(&root, class, hs)?;
                    if !done.is_empty() {
                        apply::maybe_reload(opts, &root, class, &names);
                    }
                    o.unmerged = done;
                }
                Refresh::Remerge => {
                    let (done, _) = apply::unmerge_class(&root, class, hs)?;
                    o.unmerged = done;
                    // Planned again: the host hierarchy is reachable now.
                    let mut opener = self.image_opener(opts, class);
                    let Prepared { plan, handles } =
                        prepare(&root, opts, class, opener.as_mut(), OnUnusable::Fail)?;
                    let stamp = stamp_of(&root, opts, hs, &plan, &handles);
                    let mut txn = Txn::new(opts.env.faults.merge());
                    let done =
                        apply::apply(&root, &plan, &handles, &opts.env, &stamp, false, &mut txn)?;
                    txn.commit();
                    o.merged = done.hierarchies;
                    apply::maybe_reload(opts, &root, class, &plan.extensions);
                }
                Refresh::Unchanged => o.unchanged = true,
                Refresh::Replaced(done) => {
                    apply::finish(&root, &done);
                    // Hierarchies merged before but not touched by the new set.
                    for h in hs.iter().filter(|h| !done.hierarchies.contains(h)) {
                        if apply::unmerge_hierarchy(&root, class, h)? {
                            o.unmerged.push(h.clone());
                        }
                    }
                    o.merged = done.hierarchies;
                    apply::maybe_reload(opts, &root, class, &plan.extensions);
                }
            }
            out.push((class, o));
        }
        Ok(out)
    }
}

/// What a refresh found for one class: the merge in place has the stamp it would make
/// (the outcome is known), or a plan (with its open directories and stamp).
enum Looked {
    Unchanged(Outcome),
    Planned(Box<(MergePlan, Handles, String)>),
}

/// The outcome of a refresh skipped by the quick stamp: `extensions` as the merge in
/// place lists them, named as `found` has them.
fn quick_outcome(found: &Discovery, extensions: Vec<String>) -> Outcome {
    Outcome {
        files: file_names(found.images.iter(), &extensions),
        ignored: found.images.len().saturating_sub(extensions.len()),
        extensions,
        unchanged: true,
        ..Outcome::default()
    }
}

/// What a refresh does with one class.
enum Refresh {
    UnmergeAll,
    Remerge,
    Unchanged,
    Replaced(Applied),
}

fn refs(v: &mut [Box<dyn Opener>]) -> Vec<&mut dyn Opener> {
    v.iter_mut().map(|b| &mut **b as &mut dyn Opener).collect()
}

/// The extensions `names` as systemd names them in its messages: the file or directory
/// name of the image of that name among `images` (`foo.raw`, `foo_2` picked from
/// `foo.v/`), else the name. Looked up by name once: there may be hundreds.
fn file_names<'a>(images: impl Iterator<Item = &'a Image>, names: &[String]) -> Vec<String> {
    let files: std::collections::HashMap<&str, &std::ffi::OsStr> = images
        .filter_map(|i| Some((i.name.as_str(), i.path.file_name()?)))
        .collect();
    names
        .iter()
        .map(|n| {
            files
                .get(n.as_str())
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| n.clone())
        })
        .collect()
}

fn outcome_of(plan: &MergePlan) -> Outcome {
    Outcome {
        files: file_names(plan.candidates.iter().map(|c| &c.image), &plan.extensions),
        extensions: plan.extensions.clone(),
        ignored: plan.candidates.len() - plan.extensions.len(),
        ..Outcome::default()
    }
}

/// The class's hierarchies, refused when two name the same directory once resolved
/// inside the root.
fn checked_hierarchies(
    root: &Root,
    opts: &Options,
    class: Class,
) -> Result<Vec<String>, MergeError> {
    let hs = opts
        .hierarchies_for(class)
        .map_err(PlanError::Hierarchies)?;
    crate::sys::hierarchy::check_resolved_overlap(root, opts.hierarchies_source(class), &hs)
        .map_err(PlanError::Hierarchies)?;
    Ok(hs)
}

/// A plan with the directories inspection opened for it: what [`apply`] mounts.
#[derive(Debug)]
pub struct Prepared {
    /// What to do.
    pub plan: MergePlan,
    /// The open extension and layer directories, kept from the check to the mount.
    pub handles: Handles,
}

/// Inspect, then plan: the plan and the open directories to mount.
pub fn prepare(
    root: &Root,
    opts: &Options,
    class: Class,
    opener: &mut dyn Opener,
    on_unusable: OnUnusable,
) -> Result<Prepared, MergeError> {
    prepare_found(root, opts, class, opener, on_unusable, None)
}

/// [`prepare`], with what discovery found already (`found`), if it ran.
fn prepare_found(
    root: &Root,
    opts: &Options,
    class: Class,
    opener: &mut dyn Opener,
    on_unusable: OnUnusable,
    found: Option<Discovery>,
) -> Result<Prepared, MergeError> {
    let hs = opts
        .hierarchies_for(class)
        .map_err(PlanError::Hierarchies)?;
    let ins = facts::inspect(
        root,
        opts,
        class,
        &hs,
        opener,
        &crate::sys::hierarchy::read_host_dir,
        on_unusable,
        found,
    )?;
    let plan = plan::plan(ins.facts, opts)?;
    if let Some(r) = &opts.recorder {
        r.with(class, |c| {
            c.overlays = plan
                .hierarchies
                .iter()
                .map(|h| {
                    let l = h.layers.iter().map(|l| l.name.clone()).collect();
                    (h.hierarchy.clone(), l)
                })
                .collect()
        });
    }
    Ok(Prepared {
        plan,
        handles: ins.handles,
    })
}

/// The quick stamp of the merge `plan` makes ([`stamp`]): of every extension it
/// considered, by the directories inspection opened.
fn stamp_of(
    root: &Root,
    opts: &Options,
    hs: &[String],
    plan: &MergePlan,
    handles: &Handles,
) -> String {
    let images: Vec<_> = plan
        .candidates
        .iter()
        .map(|c| stamp::Entry {
            image: &c.image,
            fd: handles.extensions.get(&c.image.name).map(|f| f.as_fd()),
            release: c.release.as_ref().and_then(|r| r.id.as_deref()),
        })
        .collect();
    stamp::render(root, opts, plan.class, hs, &images)
}

/// The quick stamp of what `found` holds now (the directories discovery opened are
/// borrowed and put back for the merge).
fn stamp_found(
    root: &Root,
    opts: &Options,
    class: Class,
    hs: &[String],
    found: &Discovery,
) -> String {
    let fds: Vec<Option<OwnedFd>> = found.images.iter().map(|i| i.opened.take()).collect();
    let images: Vec<_> = found
        .images
        .iter()
        .zip(&fds)
        .map(|(image, f)| stamp::Entry {
            image,
            fd: f.as_ref().map(|f| f.as_fd()),
            release: None,
        })
        .collect();
    let text = stamp::render(root, opts, class, hs, &images);
    drop(images);
    for (i, f) in found.images.iter().zip(fds) {
        if let Some(f) = f {
            i.opened.restore(f);
        }
    }
    text
}

/// Is the merge of `class` in place the one `now` (its quick stamp) would make? Every
/// merged hierarchy must be ours with the same stamp, and merged exactly where that
/// merge put overlays. Returns the extensions it merged, if so.
fn quick_unchanged(
    root: &Root,
    class: Class,
    hs: &[String],
    now: &str,
) -> Result<Option<Vec<String>>, MergeError> {
    let mut recorded: Option<Vec<String>> = None;
    let mut merged = Vec::new();
    let mut extensions = None;
    for h in hs {
        let Some(m) = find_merged(root, class, h)? else {
            continue;
        };
        let Ok(Some(stored)) = m.stamp() else {
            return Ok(None);
        };
        let Some(mut list) = stamp::same(&stored, now) else {
            return Ok(None);
        };
        list.sort();
        if *recorded.get_or_insert_with(|| list.clone()) != list {
            return Ok(None);
        }
        extensions.get_or_insert(m.extensions);
        merged.push(h.clone());
    }
    merged.sort();
    Ok(match recorded {
        Some(r) if r == merged => extensions,
        _ => None,
    })
}

/// Would the refresh of `plan` give the merge that is in place?
fn unchanged(
    root: &Root,
    plan: &MergePlan,
    handles: &Handles,
    hierarchies: &[String],
) -> Result<bool, MergeError> {
    let observed = crate::sys::origin::Observations::of(root, plan, handles);
    let fp = crate::sys::origin::render(root, plan, &observed);
    // systemd's `origin`, computed only for a merge that has no `extmerge-origin`.
    let mut sd: Option<crate::format::json::Json> = None;
    let planned: Vec<&str> = plan
        .hierarchies
        .iter()
        .map(|h| h.hierarchy.as_str())
        .collect();
    for h in hierarchies {
        let cur = find_merged(root, plan.class, h)?;
        let same = match (&cur, planned.contains(&h.as_str())) {
            // Ours decides where it is there (it is the more precise); a merge that
            // only has systemd's `origin` (systemd ≥ 260 made it) is compared as
            // systemd compares it, so we skip where systemd would skip its refresh.
            (Some(m), true) => match m.fingerprint().map(|f| f.ok_or_else(|| m.systemd_origin())) {
                Ok(Ok(old)) => crate::sys::origin::same(&old, &fp),
                Ok(Err(Ok(Some(old)))) => {
                    // Without the environment here, a systemd merge made with
                    // `SYSTEMD_*_OVERLAYFS_MOUNT_OPTIONS` (`mountOptions`) never
                    // matches: it is refreshed, never wrongly kept.
                    let new = sd.get_or_insert_with(|| {
                        crate::sys::origin::systemd_origin(plan, &observed, None)
                    });
                    crate::sys::origin::same_systemd(&old, new)
                }
                // Unreadable or neither there: refreshed.
                _ => false,
            },
            (None, false) => true,
            _ => false,
        };
        if !same {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The process of `--main-pid`, which must live in a mount namespace of its own: the
/// export's own namespace holds the export, not a service's hierarchies.
fn main_target(pid: i32) -> Result<(i32, Target), MergeError> {
    match Target::open(pid)? {
        Some(t) if !t.same_namespace() => Ok((pid, t)),
        _ => Err(MergeError::Target(crate::sys::target::TargetError::new(
            pid,
            "in the mount namespace the export is attached in, with no hierarchies of its own",
            std::io::Error::from_raw_os_error(libc::EINVAL),
        ))),
    }
}

/// Inside `--main-pid`'s namespace (a helper thread there): puts each detached merge on
/// its hierarchy below `root` (the root the export was made from, as the process sees
/// it), replacing the merge there, and unmerges the hierarchies in `gone` (nothing left
/// to merge on them), under that namespace's lock, all or nothing.
fn put_in_process(
    root: &Path,
    trees: Vec<(Class, String, OwnedFd)>,
    gone: &[(Class, String)],
    env: &crate::options::Environment,
) -> Result<(), MergeError> {
    let _lock = apply::lock()?;
    let mut txn = Txn::new(env.faults.merge());
    let root = Root::open(root).map_err(|source| MergeError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    for (class, h, tree) in trees {
        apply::attach_detached(&root, class, &h, tree, env, "put", &mut txn)?;
    }
    txn.commit();
    for (class, h) in gone {
        apply::unmerge_hierarchy(&root, *class, h)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Inspection and planning together, over directory fixtures (the planner's own
    //! rules are unit-tested with values alone in `plan.rs`).
    use super::*;
    use crate::format::class::Scope;
    use crate::inspect::discover::Image;
    use crate::inspect::image::{ImageError, ImageStep};
    use crate::inspect::release::{HostIdentity, Verdict};
    use crate::plan::{MountFlags, Upper};
    use std::fs;
    use std::os::fd::OwnedFd;
    use std::path::{Path, PathBuf};

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

    fn with(
        o: &Options,
        class: Class,
        op: &mut dyn Opener,
        on: OnUnusable,
    ) -> Result<MergePlan, MergeError> {
        let root = Root::open(&o.root).map_err(|source| PlanError::Root {
            path: o.root.clone(),
            source,
        })?;
        prepare(&root, o, class, op, on).map(|p| p.plan)
    }

    fn plan(o: &Options, class: Class) -> Result<MergePlan, MergeError> {
        with(o, class, &mut DirOpener, OnUnusable::Record)
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
        fn open(&mut self, root: &Root, image: &Image) -> Result<Option<OwnedFd>, ImageError> {
            if image.name == self.0 {
                return Err(ImageError::invalid(
                    ImageStep::PartitionTable,
                    "no valid partition table",
                    libc::EBADMSG,
                )
                .at(root.display_path(&image.path)));
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
        match with(
            &opts(r),
            Class::Sysext,
            &mut Refusing("b"),
            OnUnusable::Fail,
        ) {
            Err(MergeError::Plan(PlanError::Image(e))) => {
                assert_eq!(e.to_string(), err);
                assert_eq!(
                    (e.step, e.errno()),
                    (ImageStep::PartitionTable, libc::EBADMSG)
                );
            }
            other => panic!("expected PlanError::Image, got {other:?}"),
        }
        // Shown: every extension with its verdict, the unusable one with the error.
        let p = with(
            &opts(r),
            Class::Sysext,
            &mut Refusing("b"),
            OnUnusable::Record,
        )
        .unwrap();
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
        let host = HostIdentity::load(&root, Scope::System, None).unwrap();
        let (cands, _, _) = facts::evaluate(
            &root,
            Class::Sysext,
            &host,
            &Options::default().search_dirs(Class::Sysext, false),
            true,
            &mut Refusing("b"),
            OnUnusable::Record,
        )
        .unwrap();
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
