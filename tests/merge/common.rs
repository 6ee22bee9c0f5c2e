//! Shared helpers of the root-only merge tests: a private mount namespace per test,
//! a fixture root builder, a runner for the `extmerge` binary and mountinfo parsing.
//!
//! Every test runs its body on a thread of its own that first unshares its mount
//! namespace (so nothing it mounts is visible to the host or to other tests), and gets
//! a fresh temporary directory that is removed *after* that thread has ended, from the
//! test harness' thread (in the host's namespace, where none of the test's mounts
//! exist): `remove_dir_all` can then never walk into a mount.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The CLI under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_extmerge");

/// Where extmerge stages its work (not under `--root`).
pub const WORKSPACE: &str = "/run/extmerge";

pub use crate::ns::{enter_private_ns, is_root, Prop};

/// The running kernel's (major, minor) version, from `uname -r`.
pub fn kernel_version() -> (u32, u32) {
    let r = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut it = r
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// Whether overlayfs takes `lowerdir+` (Linux 6.8+).
pub fn kernel_has_lowerdir_append() -> bool {
    kernel_version() >= (6, 8)
}

/// Runs `body` in a private mount namespace (propagation `prop`) with a fresh temporary
/// directory. Prints `SKIP: needs root` and returns when not root or when the namespace
/// cannot be made. A panic in `body` fails the test.
pub fn ns_test_with(prop: Prop, body: impl FnOnce(&Path) + Send + 'static) {
    if !is_root() {
        eprintln!("SKIP: needs root");
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("extmerge-test-")
        .tempdir()
        .expect("temp dir");
    let base = tmp.path().to_path_buf();
    let name = std::thread::current()
        .name()
        .unwrap_or("merge-test")
        .to_string();
    let h = std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            if let Err(e) = enter_private_ns(prop) {
                eprintln!("SKIP: needs root ({e})");
                return;
            }
            body(&base);
        })
        .expect("spawn test thread");
    let res = h.join();
    // The thread and its namespace are gone: delete the fixture from the host's view.
    drop(tmp);
    if let Err(p) = res {
        std::panic::resume_unwind(p);
    }
}

/// [`ns_test_with`] with a shared `/`, as on a systemd host (the default).
pub fn ns_test(body: impl FnOnce(&Path) + Send + 'static) {
    ns_test_with(Prop::Shared, body)
}

/// Result of one CLI run.
#[derive(Debug)]
pub struct Run {
    /// Exit status (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub out: String,
    /// Standard error.
    pub err: String,
    /// The command line, for messages.
    pub cmd: String,
}

impl Run {
    /// Asserts exit status 0.
    #[track_caller]
    pub fn ok(&self) -> &Run {
        assert_eq!(
            self.code, 0,
            "`{}` failed:\nstdout:\n{}\nstderr:\n{}",
            self.cmd, self.out, self.err
        );
        self
    }

    /// Asserts exit status 1 and that stderr contains `needle`.
    #[track_caller]
    pub fn fails_with(&self, needle: &str) -> &Run {
        assert_eq!(
            self.code, 1,
            "`{}` should exit 1:\nstdout:\n{}\nstderr:\n{}",
            self.cmd, self.out, self.err
        );
        assert!(
            self.err.contains(needle),
            "`{}`: stderr should contain {needle:?}:\n{}",
            self.cmd,
            self.err
        );
        self
    }
}

/// Environment variables that change what extmerge does; removed from every run
/// unless the test sets them. `EXTMERGE_LAYERS` and `EXTMERGE_REPLACE` are passed
/// through from the test's environment, so the whole suite can be run with the
/// old-kernel strategies forced (`EXTMERGE_LAYERS=joined EXTMERGE_REPLACE=detach`);
/// tests that set them explicitly win.
const CLEARED_ENV: &[&str] = &[
    "EXTMERGE_FAIL_AT_STEP",
    "SYSTEMD_SYSEXT_HIERARCHIES",
    "SYSTEMD_CONFEXT_HIERARCHIES",
    "SYSTEMD_SYSEXT_MUTABLE_MODE",
    "SYSTEMD_CONFEXT_MUTABLE_MODE",
    "SYSTEMD_OS_RELEASE",
    "SYSTEMD_LOG_LEVEL",
    "SYSTEMD_SYSEXT_OVERLAYFS_MOUNT_OPTIONS",
    "SYSTEMD_CONFEXT_OVERLAYFS_MOUNT_OPTIONS",
];

/// Runs the CLI with `args` and extra environment.
pub fn run_cli(args: &[String], env: &[(&str, &str)]) -> Run {
    let mut c = Command::new(BIN);
    c.args(args);
    for k in CLEARED_ENV {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().expect("run extmerge");
    let mut cmd: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    cmd.push("extmerge".into());
    cmd.extend(args.iter().cloned());
    Run {
        code: o.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&o.stdout).into_owned(),
        err: String::from_utf8_lossy(&o.stderr).into_owned(),
        cmd: cmd.join(" "),
    }
}

/// The release file contents used by default for sysexts.
pub const SYSEXT_RELEASE: &str = "ID=debian\nSYSEXT_LEVEL=1.0\n";
/// The release file contents used by default for confexts (the host has no
/// CONFEXT_LEVEL, so VERSION_ID decides).
pub const CONFEXT_RELEASE: &str = "ID=debian\nVERSION_ID=12\n";

/// A fixture root inside a test's temporary directory.
pub struct Fx {
    /// The test's temporary directory (things "outside the root" go here).
    pub base: PathBuf,
    /// The root passed as `--root`.
    pub root: PathBuf,
}

/// Writes `content` to `path`, creating parents.
pub fn write_file(path: &Path, content: &str) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
    }
    fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

impl Fx {
    /// A Debian 12 host: `/etc/os-release`, `/usr/bin/host-tool`, `/etc/host.conf`,
    /// an empty `/opt`, and the search directories.
    pub fn new(base: &Path) -> Fx {
        let root = base.join("root");
        let fx = Fx {
            base: base.to_path_buf(),
            root,
        };
        fx.write(
            "/etc/os-release",
            "ID=debian\nVERSION_ID=12\nSYSEXT_LEVEL=1.0\n",
        );
        fx.write("/usr/bin/host-tool", "host tool\n");
        fx.write("/etc/host.conf", "host conf\n");
        for d in ["/opt", "/var/lib/extensions", "/var/lib/confexts"] {
            fs::create_dir_all(fx.path(d)).unwrap();
        }
        for d in ["", "/usr", "/etc", "/opt"] {
            fs::set_permissions(fx.path(d), fs::Permissions::from_mode(0o755)).unwrap();
        }
        fx
    }

    /// `rel` inside the root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    /// Writes a file inside the root.
    pub fn write(&self, rel: &str, content: &str) {
        write_file(&self.path(rel), content);
    }

    /// Reads a file inside the root; `None` if it cannot be read.
    pub fn read(&self, rel: &str) -> Option<String> {
        fs::read_to_string(self.path(rel)).ok()
    }

    /// Names of the entries of a directory inside the root, sorted.
    pub fn ls(&self, rel: &str) -> Vec<String> {
        ls(&self.path(rel))
    }

    /// A directory sysext `/var/lib/extensions/NAME` with the default release file.
    pub fn sysext(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        self.sysext_release(name, Some(SYSEXT_RELEASE), files)
    }

    /// A directory sysext with the given release file contents (`None`: no file).
    pub fn sysext_release(
        &self,
        name: &str,
        release: Option<&str>,
        files: &[(&str, &str)],
    ) -> PathBuf {
        let dir = self.path(&format!("/var/lib/extensions/{name}"));
        populate(&dir, "usr/lib/extension-release.d", name, release, files);
        dir
    }

    /// A directory confext `/var/lib/confexts/NAME` with the default release file.
    pub fn confext(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.path(&format!("/var/lib/confexts/{name}"));
        populate(
            &dir,
            "etc/extension-release.d",
            name,
            Some(CONFEXT_RELEASE),
            files,
        );
        dir
    }

    /// Runs `extmerge --root=ROOT ARGS...`.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    /// Runs `extmerge --root=ROOT ARGS...` with extra environment.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut a = vec![format!("--root={}", self.root.display())];
        a.extend(args.iter().map(|s| s.to_string()));
        run_cli(&a, env)
    }

    /// mountinfo lines (of this thread's namespace) that mention the test directory or
    /// the workspace.
    pub fn snapshot(&self) -> Vec<String> {
        let base = self.base.to_string_lossy().into_owned();
        mountinfo_raw()
            .lines()
            .filter(|l| l.contains(&base) || l.contains(WORKSPACE))
            .map(String::from)
            .collect()
    }

    /// Mounts whose mount point is `rel` inside the root, bottom first.
    pub fn mounts_at(&self, rel: &str) -> Vec<Mount> {
        let p = self.path(rel).to_string_lossy().into_owned();
        let p = p.trim_end_matches('/');
        mountinfo().into_iter().filter(|m| m.point == p).collect()
    }

    /// The single overlay mounted at `rel`; panics if there is not exactly one mount there.
    #[track_caller]
    pub fn overlay_at(&self, rel: &str) -> Mount {
        let m = self.mounts_at(rel);
        assert_eq!(
            m.len(),
            1,
            "expected exactly one mount at {rel}, mountinfo:\n{}",
            self.snapshot().join("\n")
        );
        assert_eq!(m[0].fstype, "overlay", "{rel}: {:?}", m[0]);
        m.into_iter().next().unwrap()
    }

    /// `st_dev` of a path inside the root.
    pub fn dev(&self, rel: &str) -> u64 {
        fs::metadata(self.path(rel))
            .unwrap_or_else(|e| panic!("stat {rel}: {e}"))
            .dev()
    }

    /// Tries to create the file `rel`: `Ok` or the errno.
    pub fn try_create(&self, rel: &str) -> Result<(), i32> {
        try_create(&self.path(rel))
    }
}

fn populate(
    dir: &Path,
    release_dir: &str,
    name: &str,
    release: Option<&str>,
    files: &[(&str, &str)],
) {
    fs::create_dir_all(dir).unwrap();
    if let Some(r) = release {
        write_file(
            &dir.join(release_dir)
                .join(format!("extension-release.{name}")),
            r,
        );
    }
    for (p, c) in files {
        write_file(&dir.join(p.trim_start_matches('/')), c);
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

/// Creates (O_CREAT|O_WRONLY) the file at `p`: `Ok` or the errno.
pub fn try_create(p: &Path) -> Result<(), i32> {
    match fs::File::create(p) {
        Ok(_) => Ok(()),
        Err(e) => Err(e.raw_os_error().unwrap_or(-1)),
    }
}

/// `major:minor` as systemd's `FORMAT_DEVNUM` (glibc's `major()`/`minor()` encoding).
pub fn devnum(dev: u64) -> String {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    format!("{major}:{minor}")
}

/// This thread's mountinfo (`/proc/self` would be the main thread's namespace).
pub fn mountinfo_raw() -> String {
    fs::read_to_string("/proc/thread-self/mountinfo").expect("read mountinfo")
}

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Mount ID.
    pub id: u64,
    /// Parent mount ID.
    pub parent: u64,
    /// `major:minor` of the superblock.
    pub majmin: String,
    /// Root of the mount inside its file system.
    pub root: String,
    /// Mount point.
    pub point: String,
    /// Per-mount options (`ro`, `nodev`, …).
    pub opts: Vec<String>,
    /// Optional fields (`shared:N`, `master:N`, …).
    pub optional: Vec<String>,
    /// File system type.
    pub fstype: String,
    /// Mount source.
    pub source: String,
    /// Superblock options.
    pub super_opts: Vec<String>,
}

impl Mount {
    /// Parses one mountinfo line.
    pub fn parse(line: &str) -> Option<Mount> {
        let (a, b) = line.split_once(" - ")?;
        let f: Vec<&str> = a.split(' ').collect();
        let g: Vec<&str> = b.split(' ').collect();
        if f.len() < 6 || g.len() < 3 {
            return None;
        }
        Some(Mount {
            id: f[0].parse().ok()?,
            parent: f[1].parse().ok()?,
            majmin: f[2].into(),
            root: f[3].into(),
            point: f[4].into(),
            opts: f[5].split(',').map(String::from).collect(),
            optional: f[6..].iter().map(|s| s.to_string()).collect(),
            fstype: g[0].into(),
            source: g[1].into(),
            super_opts: g[2].split(',').map(String::from).collect(),
        })
    }

    /// Has per-mount option `o`.
    pub fn has(&self, o: &str) -> bool {
        self.opts.iter().any(|x| x == o)
    }

    /// Has superblock option `o` (exact, or `o=…` when `o` ends with `=`).
    pub fn has_super(&self, o: &str) -> bool {
        self.super_opts
            .iter()
            .any(|x| x == o || (o.ends_with('=') && x.starts_with(o)))
    }
}

/// This thread's mount table.
pub fn mountinfo() -> Vec<Mount> {
    mountinfo_raw().lines().filter_map(Mount::parse).collect()
}

/// Directories left in the workspace (must be none after any run).
pub fn workspace_leftovers() -> Vec<String> {
    // The lock file stays (it is only ever locked, never removed).
    ls(Path::new(WORKSPACE))
        .into_iter()
        .filter(|n| !n.starts_with("lock"))
        .collect()
}

/// The mountinfo lines with IDs, peer-group numbers and mount options that identify a
/// mount instance removed: what stays equal when a mount is replaced by a clone of it.
pub fn normalized(lines: &[String]) -> Vec<String> {
    let mut v: Vec<String> = lines
        .iter()
        .filter_map(|l| Mount::parse(l))
        .map(|m| {
            format!(
                "{} {} {} {} - {} {} {}",
                m.majmin,
                m.root,
                m.point,
                m.opts.join(","),
                m.fstype,
                m.source,
                m.super_opts.join(",")
            )
        })
        .collect();
    v.sort();
    v
}

/// Replaces the digits after `"since":` by `N` (JSON status output).
pub fn mask_since(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("\"since\":") {
        let (a, b) = rest.split_at(i + "\"since\":".len());
        out.push_str(a);
        let digits = b.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits > 0 {
            out.push('N');
        }
        rest = &b[digits..];
    }
    out.push_str(rest);
    out
}

/// Microseconds since the epoch, now.
pub fn now_usec() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// `stat(path).st_mode & 07777`.
pub fn mode_of(p: &Path) -> u32 {
    fs::metadata(p)
        .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The plan `extmerge plan` shows for one class, through the library's entry point.
pub fn plan_of(
    o: &extmerge::options::Options,
    class: extmerge::format::class::Class,
) -> Result<extmerge::plan::MergePlan, extmerge::context::MergeError> {
    extmerge::context::Context::new(o.clone(), &[class]).plan(class)
}

/// `merge` of one class through the library's entry point.
pub fn merge_of(
    o: &extmerge::options::Options,
    class: extmerge::format::class::Class,
) -> Result<extmerge::context::Outcome, extmerge::context::MergeError> {
    let mut v = extmerge::context::Context::new(o.clone(), &[class]).merge()?;
    Ok(v.pop().map(|(_, o)| o).unwrap_or_default())
}

/// `unmerge` of one class through the library's entry point: the hierarchies unmerged.
pub fn unmerge_of(
    o: &extmerge::options::Options,
    class: extmerge::format::class::Class,
) -> Result<Vec<String>, extmerge::context::MergeError> {
    let mut v = extmerge::context::Context::new(o.clone(), &[class]).unmerge()?;
    Ok(v.pop().map(|(_, h)| h).unwrap_or_default())
}

/// `refresh` of one class through the library's entry point.
pub fn refresh_of(
    o: &extmerge::options::Options,
    class: extmerge::format::class::Class,
) -> Result<extmerge::context::Outcome, extmerge::context::MergeError> {
    let mut v = extmerge::context::Context::new(o.clone(), &[class]).refresh()?;
    Ok(v.pop().map(|(_, o)| o).unwrap_or_default())
}

/// Mounts a tmpfs named `source` on `path` (in the test's private namespace).
#[track_caller]
pub fn mount_tmpfs(path: &Path, source: &std::ffi::CStr) {
    let target = std::ffi::CString::new(path.to_string_lossy().as_bytes()).unwrap();
    // SAFETY: valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "mount tmpfs: {}", std::io::Error::last_os_error());
}
