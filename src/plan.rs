//! The planner: from what inspection found ([`Facts`]) to a [`MergePlan`] — which layers
//! go on which hierarchy, in which order, with which upper dir and mount options. A pure
//! function of plain data: no file is opened and no syscall made, so every rule
//! (version order, the mutable modes, the kernel's layer limit) is unit-tested with
//! values alone. [`crate::sys::apply`] executes the plan.

use std::path::{Path, PathBuf};

use crate::format::class::Class;
use crate::format::escape::esc;
use crate::inspect::discover::Skipped;
use crate::inspect::facts::{Facts, HierarchyFacts, MutableDir, MUTABLE_BASE};
use crate::inspect::fsutil::join_in_root;
use crate::inspect::release::{HostIdentity, Verdict};
use crate::inspect::Candidate;
use crate::options::{hierarchy_component, MutableMode, Options};

pub use crate::inspect::error::PlanError;

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
    /// A service's own extensions ([`Options::per_service`]): an extension directory
    /// may lie inside the hierarchy it is merged onto (`NAME.confext.d/` below /etc),
    /// which overlayfs refuses as a layer below another; the host's layer then goes in
    /// through an overlay of its own. Host merges keep systemd's refusal.
    pub nested_layers: bool,
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

/// Makes the plan for one class from what inspection found. Pure: the same facts and
/// options give the same plan.
pub fn plan(facts: Facts, opts: &Options) -> Result<MergePlan, PlanError> {
    let Facts {
        class,
        root,
        host,
        candidates,
        skipped,
        hierarchies,
    } = facts;
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
    for hf in &hierarchies {
        // Topmost first: the newest version is the top layer.
        let layers: Vec<Layer> = accepted
            .iter()
            .rev()
            .filter(|c| hf.contributors.contains(&c.image.name))
            .map(|c| Layer {
                name: c.image.name.clone(),
                image_path: c.image.path.clone(),
            })
            .collect();
        if layers.is_empty() {
            untouched.push(hf.hierarchy.clone());
            continue;
        }
        planned.push(plan_hierarchy(&root, hf, layers, opts.mutable, flags)?);
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
        nested_layers: opts.per_service,
    })
}

fn plan_hierarchy(
    root: &Path,
    hf: &HierarchyFacts,
    layers: Vec<Layer>,
    mode: MutableMode,
    mut flags: MountFlags,
) -> Result<HierarchyPlan, PlanError> {
    let h = hf.hierarchy.as_str();
    let (host_exists, host_mode, host_empty, host_id) = match hf.host {
        Some(f) => (true, f.mode, f.empty, Some(f.id)),
        None => (false, 0o755, true, None),
    };
    let comp = hierarchy_component(h);
    let mutable_rel = PathBuf::from(format!("{MUTABLE_BASE}/{comp}"));
    let mut upper = None;
    let mut import = None;
    let mut host_is_upper = false;

    // The persistent dir, if it exists (or `create`: where it will be made): its path
    // inside the root, whether it is the hierarchy itself, its mode.
    let persistent = |create: bool| -> Result<Option<(PathBuf, bool, Option<u32>)>, PlanError> {
        match &hf.mutable_dir {
            MutableDir::Missing if create => Ok(Some((mutable_rel.clone(), false, None))),
            MutableDir::Missing => Ok(None),
            MutableDir::Unusable { errno, reason } => Err(PlanError::Io {
                path: join_in_root(root, &mutable_rel),
                reason: reason.clone(),
                errno: *errno,
            }),
            MutableDir::Found { path, id, mode } => {
                Ok(Some((path.clone(), host_id == Some(*id), Some(*mode))))
            }
        }
    };
    match mode {
        MutableMode::No => {}
        MutableMode::Yes | MutableMode::Auto => {
            if let Some((path, is_h, dir_mode)) = persistent(mode == MutableMode::Yes)? {
                if let (false, Some(m)) = (is_h, dir_mode) {
                    let (m, want) = (m & 0o777, host_mode & 0o777);
                    if m != want {
                        return Err(PlanError::Io {
                            path: join_in_root(root, &path),
                            reason: format!(
                                "mutable directory has mode {m:04o}, ought to have mode {want:04o} (that of {})",
                                esc(h)
                            ),
                            errno: libc::EINVAL,
                        });
                    }
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
                if let Some((path, is_h, _)) = persistent(false)? {
                    if is_h {
                        return Err(PlanError::Io {
                            path: join_in_root(root, &path),
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
            path: join_in_root(root, Path::new(h)),
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

#[cfg(test)]
mod tests {
    //! The planner's rules with values alone: no root, no file, no syscall.
    use super::*;
    use crate::format::class::Scope;
    use crate::inspect::discover::{Image, ImageKind};
    use crate::inspect::facts::HostFacts;
    use std::collections::BTreeSet;

    const HOST_ID: (u64, u64) = (1, 100);

    fn host() -> HostIdentity {
        HostIdentity {
            os_release_path: "/etc/os-release".into(),
            id: "debian".into(),
            id_like: vec![],
            version_id: Some("12".into()),
            sysext_level: None,
            confext_level: None,
            arch: Some("x86-64".into()),
            scope: Scope::System,
        }
    }

    fn cand(name: &str, verdict: Verdict) -> Candidate {
        Candidate {
            image: Image {
                name: name.into(),
                class: Class::Sysext,
                kind: ImageKind::Directory,
                path: format!("/var/lib/extensions/{name}").into(),
                search_dir: "/var/lib/extensions".into(),
                mtime_usec: None,
                picked: None,
                opened: Default::default(),
                base: None,
            },
            verdict,
            release: None,
        }
    }

    fn hier(
        h: &str,
        host: Option<HostFacts>,
        mutable_dir: MutableDir,
        c: &[&str],
    ) -> HierarchyFacts {
        HierarchyFacts {
            hierarchy: h.into(),
            host,
            mutable_dir,
            contributors: c.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
        }
    }

    fn usr_host() -> Option<HostFacts> {
        Some(HostFacts {
            mode: 0o755,
            empty: false,
            id: HOST_ID,
        })
    }

    fn facts(cands: Vec<Candidate>, hs: Vec<HierarchyFacts>) -> Facts {
        Facts {
            class: Class::Sysext,
            root: "/sysroot".into(),
            host: host(),
            candidates: cands,
            skipped: vec![],
            hierarchies: hs,
        }
    }

    fn opts(mutable: MutableMode) -> Options {
        Options {
            mutable,
            ..Options::default()
        }
    }

    #[test]
    fn newest_version_is_the_top_layer_and_untouched_hierarchies_are_left_alone() {
        let f = facts(
            vec![
                cand("bar", Verdict::Match),
                cand("foo-10", Verdict::Match),
                cand("foo-2", Verdict::Match),
                cand("old", Verdict::Mismatch("ID=fedora".into())),
            ],
            vec![
                hier(
                    "/usr",
                    usr_host(),
                    MutableDir::Missing,
                    &["bar", "foo-10", "foo-2"],
                ),
                hier("/opt", None, MutableDir::Missing, &[]),
            ],
        );
        let p = plan(f, &opts(MutableMode::No)).unwrap();
        assert_eq!(p.extensions, ["bar", "foo-2", "foo-10"]);
        let names: Vec<&str> = p.hierarchies[0]
            .layers
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(names, ["foo-10", "foo-2", "bar"]);
        assert_eq!(p.untouched, ["/opt"]);
        assert_eq!(p.list_file(), "bar\nfoo-2\nfoo-10\n");
        let h = &p.hierarchies[0];
        assert!(h.host_lower && h.host_exists && h.upper.is_none() && h.flags.read_only);
        assert_eq!(
            p.candidates.len(),
            4,
            "every candidate is kept, with its verdict"
        );
    }

    #[test]
    fn confext_is_nosuid_noexec_and_noexec_can_be_overridden() {
        let mut f = facts(
            vec![cand("c", Verdict::Match)],
            vec![hier("/etc", None, MutableDir::Missing, &["c"])],
        );
        f.class = Class::Confext;
        let p = plan(f.clone(), &opts(MutableMode::No)).unwrap();
        let fl = p.hierarchies[0].flags;
        assert!(fl.nosuid && fl.noexec && fl.nodev && fl.read_only);
        assert!(!p.hierarchies[0].host_exists);
        assert_eq!(
            p.hierarchies[0].mode, 0o755,
            "a missing hierarchy is made 0755"
        );
        let o = Options {
            noexec: Some(false),
            ..opts(MutableMode::No)
        };
        assert!(!plan(f, &o).unwrap().hierarchies[0].flags.noexec);
    }

    /// What a mode does with one state of the persistent mutable directory.
    #[derive(Debug, PartialEq)]
    enum Want {
        ReadOnly,
        Upper(&'static str, bool),
        Ephemeral,
        Import(&'static str),
        EphemeralImport(&'static str),
        Err(i32),
    }

    /// The mutable modes × the states of the mutable directory, as a table (the way
    /// systemd's TEST-50 enumerates them); the on-disk counterpart runs the CLI.
    #[test]
    fn mutable_mode_table() {
        use MutableMode as M;
        let dir = |mode: u32, id: (u64, u64)| MutableDir::Found {
            path: "/var/lib/extensions.mutable/usr".into(),
            id,
            mode,
        };
        let at_usr = MutableDir::Found {
            path: "/usr".into(),
            id: HOST_ID,
            mode: 0o755,
        };
        let unusable = MutableDir::Unusable {
            errno: libc::ENOTDIR,
            reason: "Not a directory".into(),
        };
        let states: [(&str, MutableDir); 5] = [
            ("missing", MutableDir::Missing),
            ("dir", dir(0o755, (1, 7))),
            ("dir of other mode", dir(0o700, (1, 7))),
            ("symlink to the hierarchy", at_usr),
            ("not a directory", unusable),
        ];
        let m = "/var/lib/extensions.mutable/usr";
        #[rustfmt::skip]
        let table: [(M, [Want; 5]); 6] = [
            (M::No,              [Want::ReadOnly, Want::ReadOnly, Want::ReadOnly, Want::ReadOnly, Want::ReadOnly]),
            (M::Auto,            [Want::ReadOnly, Want::Upper(m, false), Want::Err(libc::EINVAL), Want::Upper("/usr", true), Want::Err(libc::ENOTDIR)]),
            (M::Yes,             [Want::Upper(m, false), Want::Upper(m, false), Want::Err(libc::EINVAL), Want::Upper("/usr", true), Want::Err(libc::ENOTDIR)]),
            (M::Import,          [Want::ReadOnly, Want::Import(m), Want::Import(m), Want::Err(libc::ELOOP), Want::Err(libc::ENOTDIR)]),
            (M::Ephemeral,       [Want::Ephemeral, Want::Ephemeral, Want::Ephemeral, Want::Ephemeral, Want::Ephemeral]),
            (M::EphemeralImport, [Want::Ephemeral, Want::EphemeralImport(m), Want::EphemeralImport(m), Want::Err(libc::ELOOP), Want::Err(libc::ENOTDIR)]),
        ];
        for (mode, wants) in table {
            for ((state, md), want) in states.iter().zip(wants) {
                let f = facts(
                    vec![cand("a", Verdict::Match)],
                    vec![hier("/usr", usr_host(), md.clone(), &["a"])],
                );
                let got = match plan(f, &opts(mode)) {
                    Err(e) => Want::Err(e.errno()),
                    Ok(p) => {
                        let h = &p.hierarchies[0];
                        let import = h.import.as_ref().map(|p| p.to_string_lossy().into_owned());
                        match (&h.upper, import) {
                            (None, None) => Want::ReadOnly,
                            (None, Some(_)) if h.flags.read_only => Want::Import(m),
                            (Some(Upper::Ephemeral), None) => Want::Ephemeral,
                            (Some(Upper::Ephemeral), Some(_)) => Want::EphemeralImport(m),
                            (
                                Some(Upper::Persistent {
                                    upper,
                                    is_hierarchy,
                                    ..
                                }),
                                None,
                            ) => {
                                assert_eq!(h.host_lower, !is_hierarchy, "{mode:?}/{state}");
                                assert!(!h.flags.read_only, "{mode:?}/{state}");
                                if upper == Path::new(m) {
                                    Want::Upper(m, *is_hierarchy)
                                } else {
                                    Want::Upper("/usr", *is_hierarchy)
                                }
                            }
                            other => panic!("{mode:?}/{state}: unexpected {other:?}"),
                        }
                    }
                };
                assert_eq!(got, want, "mode {mode:?}, mutable dir {state}");
            }
        }
    }

    #[test]
    fn more_layers_than_overlayfs_takes_are_refused_before_mounting() {
        let names: Vec<String> = (0..OVERLAYFS_MAX_LOWER - 1)
            .map(|i| format!("e{i:03}"))
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let cands = names
            .iter()
            .map(|n| cand(n, Verdict::Match))
            .collect::<Vec<_>>();
        // 499 extensions + the metadata layer + the host = 501 lower layers.
        let f = facts(
            cands.clone(),
            vec![hier("/usr", usr_host(), MutableDir::Missing, &refs)],
        );
        let e = plan(f, &opts(MutableMode::No)).unwrap_err();
        assert_eq!(e.errno(), libc::E2BIG);
        assert!(e.to_string().contains("at most 498 extensions here"), "{e}");
        // Without the host's directory (empty) one more fits.
        let empty = Some(HostFacts {
            empty: true,
            ..usr_host().unwrap()
        });
        let f = facts(cands, vec![hier("/usr", empty, MutableDir::Missing, &refs)]);
        assert_eq!(
            plan(f, &opts(MutableMode::No)).unwrap().hierarchies[0]
                .layers
                .len(),
            499
        );
    }
}
