//! The mutable-mode matrix as one table, the way systemd's TEST-50
//! (`test/units/TEST-50-DISSECT.sysext.sh`) writes its mutable cases: every row is
//! `--mutable=MODE` × the state of the persistent mutable dir
//! (`/var/lib/extensions.mutable/HIERARCHY`) × a writable or read-only (bind-mounted
//! `ro`) host hierarchy, with what systemd does there:
//!
//! * whether `merge` succeeds (and if not, a fragment of the error, and that nothing
//!   changed: no mount, no file, no directory);
//! * whether the merged hierarchy is writable and where a write lands: the persistent
//!   dir, a tmpfs that vanishes at unmerge, the host hierarchy itself, or nowhere
//!   (`EROFS`);
//! * whether the file in the persistent dir is seen in the merged tree;
//! * that the extension's and the host's files are seen, the merged root keeps the
//!   hierarchy's mode and the metadata dir stays read-only;
//! * that after `unmerge` the mount table is as before and the root's file tree is as
//!   before plus only the write that landed on disk (work dirs removed).
//!
//! The expectations come from systemd (man page, TEST-50, `src/sysext/sysext.c`:
//! `resolve_mutable_directory`, `maybe_import_*mutable_directory`,
//! `hierarchy_as_lower_dir`, `determine_upper_dir`), not from extmerge. The rows run
//! for sysext (`/usr`); the rows with a writable hierarchy run for confext (`/etc`)
//! too: systemd's mutable logic does not depend on the class.
//!
//! A row marked `known_divergence` is one where extmerge does not do what systemd
//! does: its mismatch is printed, not failed. There is none today (the mode of
//! `/var/lib/extensions.mutable` when `--mutable=yes` creates it, [`BASE_DIR_MODE`],
//! was one).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::common::*;

/// The state of the persistent mutable dir (`/var/lib/extensions.mutable/usr`, or
/// `…/etc` for confext) before the merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Neither it nor `/var/lib/extensions.mutable` exists.
    Missing,
    /// `/var/lib/extensions.mutable` exists (0755), it does not (TEST-50's
    /// `prepare_root`).
    BaseOnly,
    /// An empty directory with the hierarchy's mode.
    Empty,
    /// A directory with the hierarchy's mode holding [`MARKER`].
    WithFile,
    /// A directory holding [`MARKER`], mode 0700 (the hierarchy has 0755).
    WrongMode,
    /// A relative symlink to `/var/lib/upper-real`, a directory holding [`MARKER`]
    /// (TEST-50 "is a symlink to other dir").
    SymlinkToOther,
    /// A relative symlink to a path that does not exist (TEST-50 "is a dangling
    /// symlink").
    Dangling,
    /// A relative symlink to the hierarchy itself; [`MARKER`] is in the hierarchy
    /// (TEST-50 "is a symlink to the hierarchy itself").
    SymlinkToHierarchy,
}
use State::*;

/// The host hierarchy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hier {
    /// A plain writable directory.
    Rw,
    /// Bind-mounted read-only onto itself (TEST-50's `make_read_only`).
    Ro,
}
use Hier::*;

/// What `merge` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Exit status 1, stderr contains the fragment (any case); nothing mounted, nothing
    /// created.
    Fails(&'static str),
    /// Merged read-only: creating a file fails with `EROFS`.
    ReadOnly { sees_file: bool },
    /// Writable; writes land in the persistent dir (the symlink's target when it is a
    /// symlink), which is created when missing and keeps them after unmerge.
    Persistent { sees_file: bool },
    /// Writable; writes land in a tmpfs and are gone after unmerge.
    Tmpfs { sees_file: bool },
    /// Writable; the host hierarchy itself is the upper dir, writes land in it.
    InHierarchy,
}
use Expect::*;

/// One row of the matrix.
#[derive(Clone, Copy, Debug)]
struct Row {
    mode: &'static str,
    state: State,
    hier: Hier,
    expect: Expect,
    /// extmerge does not do what systemd does here: print the mismatch, don't fail.
    known_divergence: bool,
}

const fn r(mode: &'static str, state: State, hier: Hier, expect: Expect) -> Row {
    Row {
        mode,
        state,
        hier,
        expect,
        known_divergence: false,
    }
}

const RO: Expect = ReadOnly { sees_file: false };
const RO_SEES: Expect = ReadOnly { sees_file: true };
const PERSIST: Expect = Persistent { sees_file: false };
const PERSIST_SEES: Expect = Persistent { sees_file: true };
const TMPFS: Expect = Tmpfs { sees_file: false };
const TMPFS_SEES: Expect = Tmpfs { sees_file: true };

/// systemd: `mkdir_p()` of the mutable dir fails with `EEXIST` on a dangling symlink
/// ("Failed to create a directory '…': File exists").
const DANGLING_YES: Expect = Fails("extensions.mutable/");
/// systemd: `mutable_directory_mode_matches_hierarchy()`, `EINVAL`.
const WRONG_MODE: Expect = Fails("ought to have mode 0755");
/// systemd: `maybe_import_*mutable_directory()`, `ELOOP` "… because it points to the
/// hierarchy itself".
const IMPORT_SELF: Expect = Fails("hierarchy itself");
/// systemd: `determine_upper_dir()`, `EROFS` "Can't use '…' as an upperdir as it is
/// read-only." (TEST-50 "symlink to the hierarchy itself, R/O hierarchy, expected
/// fail").
const SELF_UPPER_RO: Expect = Fails("read-only");

#[rustfmt::skip]
const ROWS: &[Row] = &[
    // --mutable=no: the mutable dir is never looked at (TEST-50 "disabled").
    r("no", Missing, Rw, RO),
    r("no", BaseOnly, Rw, RO),
    r("no", Empty, Rw, RO),
    r("no", WithFile, Rw, RO),
    r("no", WrongMode, Rw, RO),
    r("no", SymlinkToOther, Rw, RO),
    r("no", Dangling, Rw, RO),
    r("no", SymlinkToHierarchy, Rw, RO_SEES), // the marker is in the hierarchy
    r("no", Missing, Ro, RO),
    r("no", BaseOnly, Ro, RO),
    r("no", Empty, Ro, RO),
    r("no", WithFile, Ro, RO),
    r("no", WrongMode, Ro, RO),
    r("no", SymlinkToOther, Ro, RO),
    r("no", Dangling, Ro, RO),
    r("no", SymlinkToHierarchy, Ro, RO_SEES),
    // --mutable=yes: created when missing (TEST-50 "does not exist, mutability
    // enabled"), mode checked, upper dir = the resolved mutable dir.
    r("yes", Missing, Rw, PERSIST),
    r("yes", BaseOnly, Rw, PERSIST),
    r("yes", Empty, Rw, PERSIST),
    r("yes", WithFile, Rw, PERSIST_SEES),
    r("yes", WrongMode, Rw, WRONG_MODE),
    r("yes", SymlinkToOther, Rw, PERSIST_SEES),
    r("yes", Dangling, Rw, DANGLING_YES),
    r("yes", SymlinkToHierarchy, Rw, InHierarchy),
    r("yes", Missing, Ro, PERSIST),
    r("yes", BaseOnly, Ro, PERSIST),
    r("yes", Empty, Ro, PERSIST),
    r("yes", WithFile, Ro, PERSIST_SEES),
    r("yes", WrongMode, Ro, WRONG_MODE),
    r("yes", SymlinkToOther, Ro, PERSIST_SEES),
    r("yes", Dangling, Ro, DANGLING_YES),
    r("yes", SymlinkToHierarchy, Ro, SELF_UPPER_RO),
    // --mutable=auto: as yes when the dir exists, read-only (nothing created) when it
    // does not or is a dangling symlink (TEST-50 "dangling symlink, auto-mutability,
    // read-only merged").
    r("auto", Missing, Rw, RO),
    r("auto", BaseOnly, Rw, RO),
    r("auto", Empty, Rw, PERSIST),
    r("auto", WithFile, Rw, PERSIST_SEES),
    r("auto", WrongMode, Rw, WRONG_MODE),
    r("auto", SymlinkToOther, Rw, PERSIST_SEES),
    r("auto", Dangling, Rw, RO),
    r("auto", SymlinkToHierarchy, Rw, InHierarchy), // TEST-50 "mutable-self-upper"
    r("auto", Missing, Ro, RO),
    r("auto", BaseOnly, Ro, RO),
    r("auto", Empty, Ro, PERSIST),
    r("auto", WithFile, Ro, PERSIST_SEES),
    r("auto", WrongMode, Ro, WRONG_MODE),
    r("auto", SymlinkToOther, Ro, PERSIST_SEES),
    r("auto", Dangling, Ro, RO),
    r("auto", SymlinkToHierarchy, Ro, SELF_UPPER_RO), // TEST-50 "failure-self-upper-ro"
    // --mutable=import: read-only, the dir (if it resolves) is a lower layer; no mode
    // check; the hierarchy itself is refused (TEST-50 "import-self").
    r("import", Missing, Rw, RO),
    r("import", BaseOnly, Rw, RO),
    r("import", Empty, Rw, RO),
    r("import", WithFile, Rw, RO_SEES),
    r("import", WrongMode, Rw, RO_SEES),
    r("import", SymlinkToOther, Rw, RO_SEES),
    r("import", Dangling, Rw, RO),
    r("import", SymlinkToHierarchy, Rw, IMPORT_SELF),
    r("import", Missing, Ro, RO),
    r("import", BaseOnly, Ro, RO),
    r("import", Empty, Ro, RO),
    r("import", WithFile, Ro, RO_SEES),
    r("import", WrongMode, Ro, RO_SEES),
    r("import", SymlinkToOther, Ro, RO_SEES),
    r("import", Dangling, Ro, RO),
    r("import", SymlinkToHierarchy, Ro, IMPORT_SELF),
    // --mutable=ephemeral: the persistent dir is ignored, upper dir in the tmpfs
    // workspace.
    r("ephemeral", Missing, Rw, TMPFS),
    r("ephemeral", BaseOnly, Rw, TMPFS),
    r("ephemeral", Empty, Rw, TMPFS),
    r("ephemeral", WithFile, Rw, TMPFS),
    r("ephemeral", WrongMode, Rw, TMPFS),
    r("ephemeral", SymlinkToOther, Rw, TMPFS),
    r("ephemeral", Dangling, Rw, TMPFS),
    r("ephemeral", SymlinkToHierarchy, Rw, TMPFS_SEES), // the hierarchy is a lower layer
    r("ephemeral", Missing, Ro, TMPFS),
    r("ephemeral", BaseOnly, Ro, TMPFS),
    r("ephemeral", Empty, Ro, TMPFS),
    r("ephemeral", WithFile, Ro, TMPFS),
    r("ephemeral", WrongMode, Ro, TMPFS),
    r("ephemeral", SymlinkToOther, Ro, TMPFS),
    r("ephemeral", Dangling, Ro, TMPFS),
    r("ephemeral", SymlinkToHierarchy, Ro, TMPFS_SEES),
    // --mutable=ephemeral-import: as ephemeral, plus the persistent dir (if it
    // resolves) as a lower layer; the hierarchy itself is refused (TEST-50
    // "ephemeral-import-self").
    r("ephemeral-import", Missing, Rw, TMPFS),
    r("ephemeral-import", BaseOnly, Rw, TMPFS),
    r("ephemeral-import", Empty, Rw, TMPFS),
    r("ephemeral-import", WithFile, Rw, TMPFS_SEES),
    r("ephemeral-import", WrongMode, Rw, TMPFS_SEES),
    r("ephemeral-import", SymlinkToOther, Rw, TMPFS_SEES),
    r("ephemeral-import", Dangling, Rw, TMPFS),
    r("ephemeral-import", SymlinkToHierarchy, Rw, IMPORT_SELF),
    r("ephemeral-import", Missing, Ro, TMPFS),
    r("ephemeral-import", BaseOnly, Ro, TMPFS),
    r("ephemeral-import", Empty, Ro, TMPFS),
    r("ephemeral-import", WithFile, Ro, TMPFS_SEES),
    r("ephemeral-import", WrongMode, Ro, TMPFS_SEES),
    r("ephemeral-import", SymlinkToOther, Ro, TMPFS_SEES),
    r("ephemeral-import", Dangling, Ro, TMPFS),
    r("ephemeral-import", SymlinkToHierarchy, Ro, IMPORT_SELF),
];

/// How systemd leaves `/var/lib/extensions.mutable` when `--mutable=yes` creates it:
/// `mkdir_p(path, 0700)` gives the parents it makes mode 0700 too (only the upper dir
/// itself is chmod()ed to the hierarchy's mode); extmerge does the same.
const BASE_DIR_MODE: &str = "dir 0700";

/// The file placed in the persistent dir (TEST-50's name).
const MARKER: &str = "preexisting-file-in-extensions-mutable";
/// The file created in the merged hierarchy (TEST-50's name).
const WRITTEN: &str = "now-is-mutable";
/// Where [`SymlinkToOther`] points.
const OTHER: &str = "/var/lib/upper-real";

/// The class a row runs with.
#[derive(Clone, Copy, Debug)]
struct Class {
    name: &'static str,
    hierarchy: &'static str,
    dot_dir: &'static str,
}

const SYSEXT: Class = Class {
    name: "sysext",
    hierarchy: "/usr",
    dot_dir: ".systemd-sysext",
};
const CONFEXT: Class = Class {
    name: "confext",
    hierarchy: "/etc",
    dot_dir: ".systemd-confext",
};

fn row_name(row: &Row, class: Class) -> String {
    format!(
        "[{} --mutable={} mutable-dir={:?} hierarchy={:?}]",
        class.name, row.mode, row.state, row.hier
    )
}

/// The file tree under `p` (not following symlinks): relative path → `dir MODE`,
/// `file:CONTENTS` or `link:TARGET`.
fn tree(p: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let path = e.path();
            let rel = path
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let Ok(md) = fs::symlink_metadata(&path) else {
                continue;
            };
            if md.file_type().is_symlink() {
                let t = fs::read_link(&path).unwrap_or_default();
                out.insert(rel, format!("link:{}", t.display()));
            } else if md.is_dir() {
                out.insert(rel, format!("dir {:04o}", md.permissions().mode() & 0o7777));
                walk(base, &path, out);
            } else {
                let c = fs::read(&path).unwrap_or_default();
                out.insert(rel, format!("file:{}", String::from_utf8_lossy(&c)));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(p, p, &mut out);
    out
}

/// Bind-mounts `p` onto itself read-only.
fn bind_read_only(p: &Path) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: NUL-terminated strings that outlive the calls, NULL type and data.
    unsafe {
        assert_eq!(
            libc::mount(
                c.as_ptr(),
                c.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null()
            ),
            0,
            "bind {}: {}",
            p.display(),
            std::io::Error::last_os_error()
        );
        assert_eq!(
            libc::mount(
                c"none".as_ptr(),
                c.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                std::ptr::null()
            ),
            0,
            "remount ro {}: {}",
            p.display(),
            std::io::Error::last_os_error()
        );
    }
}

/// Builds the fixture of `row` in `fx`.
fn setup(fx: &Fx, row: &Row, class: Class) {
    let h = class.hierarchy;
    let comp = &h[1..];
    match class.name {
        "sysext" => {
            fx.sysext("ext", &[("usr/share/from-extension", "ext\n")]);
        }
        _ => {
            fx.confext("ext", &[("etc/from-extension", "ext\n")]);
        }
    }
    let mdir = fx.path(&format!("/var/lib/extensions.mutable/{comp}"));
    let mkdir = |p: &Path, mode: u32, marker: bool| {
        fs::create_dir_all(p).unwrap();
        if marker {
            write_file(&p.join(MARKER), "marker\n");
        }
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    };
    match row.state {
        Missing => {}
        BaseOnly => mkdir(mdir.parent().unwrap(), 0o755, false),
        Empty => mkdir(&mdir, 0o755, false),
        WithFile => mkdir(&mdir, 0o755, true),
        WrongMode => mkdir(&mdir, 0o700, true),
        SymlinkToOther => {
            mkdir(&fx.path(OTHER), 0o755, true);
            fs::create_dir_all(mdir.parent().unwrap()).unwrap();
            symlink("../upper-real", &mdir).unwrap();
        }
        Dangling => {
            fs::create_dir_all(mdir.parent().unwrap()).unwrap();
            symlink("../../../should/not/exist", &mdir).unwrap();
        }
        SymlinkToHierarchy => {
            fx.write(&format!("{h}/{MARKER}"), "marker\n");
            fs::create_dir_all(mdir.parent().unwrap()).unwrap();
            symlink(format!("../../..{h}"), &mdir).unwrap();
        }
    }
    if row.hier == Ro {
        bind_read_only(&fx.path(h));
    }
}

/// Runs one row; returns the mismatches (empty: the row passed).
fn check_row(base: &Path, row: &Row, class: Class) -> Vec<String> {
    let mut errs: Vec<String> = Vec::new();
    macro_rules! check {
        ($cond:expr, $($fmt:tt)*) => {
            if !$cond {
                errs.push(format!($($fmt)*));
            }
        };
    }
    let fx = Fx::new(base);
    setup(&fx, row, class);
    let h = class.hierarchy;
    let comp = &h[1..];
    let class_arg = format!("--class={}", class.name);
    let mode_arg = format!("--mutable={}", row.mode);
    let tree_before = tree(&fx.root);
    let mounts_before = normalized(&fx.snapshot());
    let host_mode = mode_of(&fx.path(h));

    let merge = fx.run(&[&class_arg, &mode_arg, "merge"]);
    if let Fails(fragment) = row.expect {
        // (Case-insensitive: the fragment is a keyword of systemd's message, not its text.)
        let err = merge.err.to_lowercase();
        check!(
            merge.code == 1 && err.contains(&fragment.to_lowercase()),
            "`{}` should exit 1 with {fragment:?} in stderr: exit {}, stderr:\n{}",
            merge.cmd,
            merge.code,
            merge.err
        );
        if merge.code == 0 {
            fx.run(&[&class_arg, "unmerge"]);
        }
        check!(
            normalized(&fx.snapshot()) == mounts_before,
            "a failed merge changed the mount table:\n{}",
            fx.snapshot().join("\n")
        );
        check!(
            tree(&fx.root) == tree_before,
            "a failed merge changed the root's files: {:?}",
            diff(&tree_before, &tree(&fx.root))
        );
        check!(
            workspace_leftovers().is_empty(),
            "workspace leftovers: {:?}",
            workspace_leftovers()
        );
        return errs;
    }
    if merge.code != 0 {
        errs.push(format!(
            "`{}` failed (exit {}):\n{}",
            merge.cmd, merge.code, merge.err
        ));
        return errs;
    }

    // Merged: the extension's and the host's files are seen.
    let ext_file = match class.name {
        "sysext" => "/usr/share/from-extension",
        _ => "/etc/from-extension",
    };
    let host_file = match class.name {
        "sysext" => "/usr/bin/host-tool",
        _ => "/etc/host.conf",
    };
    check!(
        fx.read(ext_file).as_deref() == Some("ext\n"),
        "the extension's {ext_file} is not seen"
    );
    check!(
        fx.read(host_file).is_some(),
        "the host's {host_file} is not seen"
    );
    let on_top = fx.mounts_at(h).last().cloned();
    check!(
        on_top.as_ref().is_some_and(|m| m.fstype == "overlay"),
        "no overlay on top of {h}: {on_top:?}"
    );
    check!(
        mode_of(&fx.path(h)) == host_mode,
        "merged {h} has mode {:04o}, the host's has {host_mode:04o}",
        mode_of(&fx.path(h))
    );
    let marker_seen = fx.path(&format!("{h}/{MARKER}")).exists();
    let sees_file = match row.expect {
        ReadOnly { sees_file } | Persistent { sees_file } | Tmpfs { sees_file } => sees_file,
        InHierarchy => true,
        Fails(_) => unreachable!(),
    };
    check!(
        marker_seen == sees_file,
        "{MARKER} seen in the merged {h}: {marker_seen}, expected {sees_file}"
    );
    check!(
        fx.try_create(&format!("{h}/{}/x", class.dot_dir)) == Err(libc::EROFS),
        "the metadata dir {h}/{} is writable",
        class.dot_dir
    );

    // A write: where does it land?
    let wrote = fx.try_create(&format!("{h}/{WRITTEN}"));
    let persistent_dir = match row.state {
        SymlinkToOther => OTHER.to_string(),
        _ => format!("/var/lib/extensions.mutable/{comp}"),
    };
    // (Through a symlink to the hierarchy the path is the merged tree itself: there the
    // tree after unmerge tells where the write went.)
    let in_persistent = row.state != SymlinkToHierarchy
        && (fx.path(&format!("{persistent_dir}/{WRITTEN}")).exists()
            || fx.path(&format!("{OTHER}/{WRITTEN}")).exists());
    match row.expect {
        ReadOnly { .. } => {
            check!(
                wrote == Err(libc::EROFS),
                "creating {h}/{WRITTEN}: {wrote:?}, expected EROFS"
            );
            check!(
                on_top.as_ref().is_some_and(|m| m.has("ro")),
                "the overlay is not mounted ro: {on_top:?}"
            );
        }
        Persistent { .. } | Tmpfs { .. } | InHierarchy => {
            check!(wrote == Ok(()), "creating {h}/{WRITTEN}: {wrote:?}");
            check!(
                on_top
                    .as_ref()
                    .is_some_and(|m| !m.has("ro") && m.has_super("upperdir=")),
                "the overlay is not writable with an upper dir: {on_top:?}"
            );
        }
        Fails(_) => unreachable!(),
    }
    match row.expect {
        Persistent { .. } => {
            check!(
                fx.path(&format!("{persistent_dir}/{WRITTEN}")).exists(),
                "the write did not land in {persistent_dir}"
            );
            // systemd chmods the upper dir to the hierarchy's mode.
            let m = fs::metadata(fx.path(&persistent_dir)).map(|m| m.permissions().mode() & 0o7777);
            check!(
                m.as_ref().ok() == Some(&host_mode),
                "{persistent_dir} has mode {}, expected {host_mode:04o}",
                m.as_ref()
                    .map_or_else(|e| e.to_string(), |m| format!("{m:04o}"))
            );
        }
        _ => check!(
            !in_persistent,
            "the write landed in a persistent mutable dir"
        ),
    }
    // The work dir recorded for unmerge (systemd: next to the resolved upper dir; not
    // recorded for ephemeral modes). (The overlay's `upperdir=` is not compared: it may
    // be an fd path.)
    let work_dir_file = fx.read(&format!("{h}/{}/work_dir", class.dot_dir));
    let want_work = match row.expect {
        Persistent { .. } => {
            let parent = Path::new(&persistent_dir)
                .parent()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            Some(format!("{}/.systemd-{comp}-workdir\n", &parent[1..]))
        }
        InHierarchy => Some(format!(".systemd-{comp}-workdir\n")),
        _ => None,
    };
    check!(
        work_dir_file == want_work,
        "{h}/{}/work_dir: {work_dir_file:?}, expected {want_work:?}",
        class.dot_dir
    );

    let unmerge = fx.run(&[&class_arg, "unmerge"]);
    check!(
        unmerge.code == 0,
        "`{}` failed:\n{}",
        unmerge.cmd,
        unmerge.err
    );
    check!(
        normalized(&fx.snapshot()) == mounts_before,
        "after unmerge the mount table differs:\n{}",
        fx.snapshot().join("\n")
    );
    check!(
        workspace_leftovers().is_empty(),
        "workspace leftovers: {:?}",
        workspace_leftovers()
    );
    // The root's files: as before, plus only the write where it landed on disk (the
    // work dir is gone, an ephemeral write is gone).
    let mut expected = tree_before.clone();
    let written = match row.expect {
        Persistent { .. } => Some(persistent_dir.clone()),
        InHierarchy => Some(h.to_string()),
        _ => None,
    };
    if let Some(dir) = written {
        // systemd: mkdir_p(…, 0700) makes the missing dirs, the upper dir is then
        // chmod()ed to the hierarchy's mode.
        if row.state == Missing {
            expected.insert("var/lib/extensions.mutable".into(), BASE_DIR_MODE.into());
        }
        if matches!(row.state, Missing | BaseOnly) {
            expected.insert(dir[1..].to_string(), format!("dir {host_mode:04o}"));
        }
        expected.insert(format!("{}/{WRITTEN}", &dir[1..]), "file:".into());
    }
    let after = tree(&fx.root);
    check!(
        after == expected,
        "after unmerge the root's files differ from expected: {:?}",
        diff(&expected, &after)
    );
    errs
}

/// Entries that differ between two trees: (path, expected, actual).
fn diff(
    expected: &BTreeMap<String, String>,
    actual: &BTreeMap<String, String>,
) -> Vec<(String, Option<String>, Option<String>)> {
    let mut keys: Vec<&String> = expected.keys().chain(actual.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| expected.get(*k) != actual.get(*k))
        .map(|k| (k.clone(), expected.get(k).cloned(), actual.get(k).cloned()))
        .collect()
}

/// The message of a panic payload.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

/// Every row (sysext; confext for the rows with a writable hierarchy), each in its
/// own namespace and root, a few at a time.
#[test]
fn mutable_mode_matrix() {
    if !is_root() {
        eprintln!("SKIP: needs root");
        return;
    }
    let mut runs: Vec<(Row, Class)> = ROWS.iter().map(|r| (*r, SYSEXT)).collect();
    runs.extend(ROWS.iter().filter(|r| r.hier == Rw).map(|r| (*r, CONFEXT)));

    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Vec<String>)>> = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(&(row, class)) = runs.get(i) else {
                    break;
                };
                let out = std::sync::Arc::new(Mutex::new(Vec::new()));
                let out2 = out.clone();
                let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    ns_test(move |base| {
                        let errs = check_row(base, &row, class);
                        *out2.lock().unwrap() = errs;
                    })
                }));
                let mut errs = std::mem::take(&mut *out.lock().unwrap());
                if let Err(p) = res {
                    errs.push(format!("panicked: {}", panic_text(&*p)));
                }
                results.lock().unwrap().push((i, errs));
            });
        }
    });

    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _)| *i);
    let mut failures = Vec::new();
    for (i, errs) in results {
        let (row, class) = runs[i];
        let name = row_name(&row, class);
        match (errs.is_empty(), row.known_divergence) {
            (true, false) => {}
            (true, true) => eprintln!(
                "NOTE {name}: marked known_divergence but now behaves as systemd; remove the mark"
            ),
            (false, true) => eprintln!(
                "KNOWN DIVERGENCE from systemd {name} (expected {:?}):\n  {}",
                row.expect,
                errs.join("\n  ")
            ),
            (false, false) => failures.push(format!(
                "{name} (expected {:?}):\n  {}",
                row.expect,
                errs.join("\n  ")
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} mutable-matrix rows differ from systemd:\n{}",
        failures.len(),
        runs.len(),
        failures.join("\n")
    );
}
