//! Shared helpers of the root-only image tests: a private mount namespace per test, a
//! fixture root with images in its search directories, and checks that nothing (loop
//! device, dm device, mount, staging directory) was left behind.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use extmerge::format::class::Class;
use extmerge::format::policy::ImagePolicy;
use extmerge::inspect::discover::{Image, ImageKind};
use extmerge::inspect::fsutil::Root;
use extmerge::inspect::image::ImageError;
use extmerge::inspect::release::Verdict;
use extmerge::inspect::OnUnusable;
use extmerge::options::Options;
use extmerge::sys::activate::ImageOpener;

use crate::build;

/// Where extmerge stages its work.
pub const WORKSPACE: &str = "/run/extmerge";

pub use crate::ns::{is_root, Prop};

/// Set in the VM: a test that would skip itself fails instead.
pub fn in_vm() -> bool {
    std::env::var_os("EXTMERGE_VM").is_some()
}

/// Prints `SKIP: why` and returns, or fails under `EXTMERGE_VM`.
#[track_caller]
pub fn skip(why: &str) {
    assert!(
        !in_vm(),
        "{why} (EXTMERGE_VM is set: nothing may be skipped)"
    );
    eprintln!("SKIP: {why}");
}

/// Runs `body` on a thread of its own in a private mount namespace with a fresh
/// temporary directory, which is removed after the thread ended (from the host's view,
/// where none of the test's mounts exist).
pub fn ns_test(body: impl FnOnce(&Path) + Send + 'static) {
    if !is_root() {
        skip("needs root");
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("extmerge-img-")
        .tempdir()
        .expect("temp dir");
    let base = tmp.path().to_path_buf();
    let name = std::thread::current()
        .name()
        .unwrap_or("image-test")
        .to_string();
    let h = std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            if let Err(e) = crate::ns::enter_private_ns(Prop::Shared) {
                skip(&format!("needs root ({e})"));
                return;
            }
            body(&base);
        })
        .expect("spawn test thread");
    let res = h.join();
    drop(tmp);
    if let Err(p) = res {
        std::panic::resume_unwind(p);
    }
}

/// A fixture root: a Debian 12 host with `/usr`, `/etc`, `/opt` and the search dirs.
pub struct Fx {
    /// The test's temporary directory (fixtures are built in `base/fixtures`).
    pub base: PathBuf,
    /// The root.
    pub root: PathBuf,
}

impl Fx {
    /// Creates the root.
    pub fn new(base: &Path) -> Fx {
        let fx = Fx {
            base: base.to_path_buf(),
            root: base.join("root"),
        };
        build::write(
            &fx.path("/etc/os-release"),
            b"ID=debian\nVERSION_ID=12\nSYSEXT_LEVEL=1.0\n",
        );
        build::write(&fx.path("/usr/bin/host-tool"), b"host tool\n");
        build::write(&fx.path("/etc/host.conf"), b"host conf\n");
        for d in ["/opt", "/var/lib/extensions", "/var/lib/confexts"] {
            fs::create_dir_all(fx.path(d)).unwrap();
        }
        fx
    }

    /// `rel` inside the root, as a host path.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    /// Builds (or copies) fixture `name` into `base/fixtures/<name>`; `None` after
    /// printing SKIP when its tools are missing.
    pub fn fixture(&self, name: &str) -> Option<PathBuf> {
        let dir = self.base.join("fixtures").join(name);
        if dir.exists() {
            return Some(dir);
        }
        match build::fixture(name, &dir) {
            Ok(()) => Some(dir),
            Err(e) if e.starts_with("SKIP:") => {
                skip(e.trim_start_matches("SKIP: "));
                None
            }
            Err(e) => panic!("building fixture {name}: {e}"),
        }
    }

    /// Copies file `file` of fixture `name` into the root at `rel`.
    pub fn install(&self, name: &str, file: &str, rel: &str) -> Option<PathBuf> {
        let dir = self.fixture(name)?;
        let dst = self.path(rel);
        fs::create_dir_all(dst.parent().unwrap()).unwrap();
        fs::copy(dir.join(file), &dst)
            .unwrap_or_else(|e| panic!("copy {file} to {}: {e}", dst.display()));
        Some(dst)
    }

    /// Installs the loop-backed sysext images `erofs-ext`, `squash-ext` (squashfs) and
    /// `ddi-ext` (GPT with a `/usr` partition) into `/var/lib/extensions`; `None` after
    /// printing SKIP when a fixture cannot be built.
    pub fn install_loop_images(&self) -> Option<()> {
        for (f, file) in [
            ("erofs", "erofs-ext.raw"),
            ("squashfs", "squash-ext.raw"),
            ("ddi", "ddi-ext.raw"),
        ] {
            self.install(f, file, &format!("/var/lib/extensions/{file}"))?;
        }
        Some(())
    }

    /// Reads a file inside the root.
    pub fn read(&self, rel: &str) -> Option<String> {
        fs::read_to_string(self.path(rel)).ok()
    }

    /// Options for the library calls: this root, the class's default hierarchies, no
    /// reload.
    pub fn opts(&self) -> Options {
        Options {
            root: self.root.clone(),
            no_reload: true,
            ..Default::default()
        }
    }

    /// The opened root.
    pub fn open_root(&self) -> Root {
        Root::open(&self.root).unwrap()
    }

    /// mountinfo lines of this thread's namespace that mention the test directory or
    /// the workspace.
    pub fn mounts(&self) -> Vec<String> {
        let base = self.base.to_string_lossy().into_owned();
        fs::read_to_string("/proc/thread-self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&base) || l.contains(WORKSPACE))
            .map(String::from)
            .collect()
    }

    /// Loop devices bound to a file below the test directory, as `loopN:backing`.
    pub fn bound_loops(&self) -> Vec<String> {
        let base = self.base.to_string_lossy().into_owned();
        bound_loops()
            .into_iter()
            .filter(|(_, b)| b.starts_with(&base))
            .map(|(d, b)| format!("{d}:{b}"))
            .collect()
    }

    /// Asserts that nothing of ours is left: no loop device bound to a file of this test,
    /// no mount below it or the workspace, no staging directory, and none of `dm_names`
    /// (waits up to 10 s: loop autoclear and deferred dm removal happen after the last
    /// close, partly from kernel workers).
    #[track_caller]
    pub fn assert_clean(&self, dm_names: &[String]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let loops = self.bound_loops();
            let mounts = self.mounts();
            let staging: Vec<String> = ls(Path::new(WORKSPACE))
                .into_iter()
                .filter(|n| n.contains("-images."))
                .collect();
            let dms: Vec<&String> = dm_names.iter().filter(|n| dm_exists(n)).collect();
            if loops.is_empty() && mounts.is_empty() && staging.is_empty() && dms.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "left behind:\n loops: {loops:?}\n mounts: {mounts:#?}\n staging dirs: {staging:?}\n dm devices: {dms:?}"
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Names in a directory, sorted; empty if it cannot be read.
pub fn ls(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = match fs::read_dir(p) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Every bound loop device: (`loopN`, backing file).
pub fn bound_loops() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for d in ls(Path::new("/sys/block")) {
        if !d.starts_with("loop") {
            continue;
        }
        if let Ok(b) = fs::read_to_string(format!("/sys/block/{d}/loop/backing_file")) {
            out.push((d, b.trim_end().to_string()));
        }
    }
    out
}

/// Names of all dm devices (`/sys/block/dm-*/dm/name`).
pub fn dm_devices() -> Vec<String> {
    ls(Path::new("/sys/block"))
        .into_iter()
        .filter(|d| d.starts_with("dm-"))
        .filter_map(|d| fs::read_to_string(format!("/sys/block/{d}/dm/name")).ok())
        .map(|n| n.trim_end().to_string())
        .collect()
}

/// Does the dm device `name` exist?
pub fn dm_exists(name: &str) -> bool {
    dm_devices().iter().any(|n| n == name)
}

/// Is device-mapper usable here (the host of this project has none)?
pub fn have_dm() -> bool {
    extmerge::sys::dm::Dm::open().is_ok()
}

/// The discovered image named `name` of `class` (panics if there is none).
pub fn discovered(fx: &Fx, class: Class, name: &str) -> Image {
    let root = fx.open_root();
    let d = extmerge::inspect::discover::discover(&root, class, false).unwrap();
    d.images
        .into_iter()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("no image {name} discovered"))
}

/// An image at `rel` inside the root, without discovery (e.g. a symlink discovery
/// would skip).
pub fn raw_image(name: &str, rel: &str) -> Image {
    Image {
        name: name.into(),
        class: Class::Sysext,
        kind: ImageKind::Raw,
        path: rel.into(),
        search_dir: "/var/lib/extensions".into(),
        mtime_usec: None,
        picked: None,
        opened: Default::default(),
        base: None,
    }
}

/// A sysext opener with the default policy choice (or `policy`).
pub fn opener(class: Class, policy: Option<&str>) -> ImageOpener {
    ImageOpener::new(class, policy.map(|p| ImagePolicy::parse(p).unwrap()), false)
}

/// Opens `image` with `op` ([`ImageOpener::open_image`]) and expects an error naming
/// the image and containing every one of `needles`; returns the error, for its step and
/// errno.
#[track_caller]
pub fn open_fails(fx: &Fx, op: &mut ImageOpener, image: &Image, needles: &[&str]) -> ImageError {
    let root = fx.open_root();
    match op.open_image(&root, image) {
        Ok(_) => panic!("opening {} should fail", image.path.display()),
        Err(e) => {
            let msg = e.to_string();
            for n in needles {
                assert!(msg.contains(n), "error should contain {n:?}: {msg}");
            }
            assert_eq!(e.path, root.display_path(&image.path), "{msg}");
            e
        }
    }
}

/// Plans a merge of `class` with `op` and expects the image `name` to be refused with
/// an error containing `needles`: either the whole plan fails (an image error aborts
/// the merge, as in systemd) or the candidate carries the error as its verdict
/// (`plan::evaluate_with` as it is now). Returns the message.
#[track_caller]
pub fn plan_refuses(
    fx: &Fx,
    class: Class,
    op: &mut ImageOpener,
    name: &str,
    needles: &[&str],
) -> String {
    let root = fx.open_root();
    let msg = match extmerge::context::prepare(&root, &fx.opts(), class, op, OnUnusable::Fail) {
        Err(e) => e.to_string(),
        Ok(extmerge::context::Prepared { plan: p, .. }) => {
            assert!(
                !p.extensions.iter().any(|e| e == name),
                "{name} must not be merged: {:?}",
                p.extensions
            );
            let c = p
                .candidates
                .iter()
                .find(|c| c.image.name == name)
                .unwrap_or_else(|| panic!("{name} not among the candidates"));
            match &c.verdict {
                Verdict::Mismatch(r) => r.clone(),
                v => panic!("{name}: unexpected verdict {v:?}"),
            }
        }
    };
    for n in needles {
        assert!(msg.contains(n), "error should contain {n:?}: {msg}");
    }
    msg
}

/// The library's entry point for one class with a given opener, in the shape these
/// tests use.
pub mod merge {
    use extmerge::context::{Context, MergeError, Outcome};
    use extmerge::format::class::Class;
    use extmerge::inspect::Opener;
    use extmerge::options::Options;

    /// `merge` of `class` with `op`.
    pub fn merge_with(
        o: &Options,
        class: Class,
        op: &mut (dyn Opener + Send),
    ) -> Result<Outcome, MergeError> {
        Context::new(o.clone(), &[class]).merge_with(op)
    }

    /// `refresh` of `class` with `op`.
    pub fn refresh_with(
        o: &Options,
        class: Class,
        op: &mut (dyn Opener + Send),
    ) -> Result<Outcome, MergeError> {
        Context::new(o.clone(), &[class]).refresh_with(op)
    }

    /// `unmerge` of `class`: the hierarchies unmerged.
    pub fn unmerge(o: &Options, class: Class) -> Result<Vec<String>, MergeError> {
        let mut v = Context::new(o.clone(), &[class]).unmerge()?;
        Ok(v.pop().map(|(_, h)| h).unwrap_or_default())
    }
}
