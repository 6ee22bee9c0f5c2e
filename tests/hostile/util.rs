//! Helpers of the hostile-input tests: a CLI runner with a timeout and the child's peak
//! RSS, the loop-device table, FIFOs and device nodes, "nothing left behind" checks.
#![allow(dead_code)]

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// Environment variables removed from every run (as `common::run_cli` does).
const CLEARED_ENV: &[&str] = &[
    "EXTMERGE_FAIL_AT_STEP",
    "EXTMERGE_PAUSE_AT_STEP",
    "SYSTEMD_SYSEXT_HIERARCHIES",
    "SYSTEMD_CONFEXT_HIERARCHIES",
    "SYSTEMD_SYSEXT_MUTABLE_MODE",
    "SYSTEMD_CONFEXT_MUTABLE_MODE",
    "SYSTEMD_OS_RELEASE",
    "SYSTEMD_LOG_LEVEL",
    "SYSTEMD_SYSEXT_OVERLAYFS_MOUNT_OPTIONS",
    "SYSTEMD_CONFEXT_OVERLAYFS_MOUNT_OPTIONS",
];

/// A CLI run with its resource use.
#[derive(Debug)]
pub struct Timed {
    /// Exit code, output, command line.
    pub run: Run,
    /// Peak resident set size of the child after its exec (`VmHWM`, KiB).
    pub maxrss_kib: i64,
    /// Wall-clock time.
    pub elapsed: Duration,
}

/// Limits for [`run_limited`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The run is killed (and the test fails) after this long.
    pub timeout: Duration,
    /// Soft `RLIMIT_NOFILE` of the child (`None`: inherited).
    pub nofile: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(10),
            nofile: None,
        }
    }
}

fn slurp(mut f: File) -> String {
    let mut v = Vec::new();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut v).unwrap();
    String::from_utf8_lossy(&v).into_owned()
}

/// `VmHWM` of a process, in KiB (0 if unknown).
fn vm_hwm_kib(pid: libc::pid_t) -> i64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Runs `extmerge --root=ROOT ARGS…` with `env`; panics (naming the command) if it is
/// still running after `lim.timeout` (it is killed first). The child is traced (only
/// its exec and its exit stop it) to read its peak RSS just before it exits.
#[track_caller]
pub fn run_limited(fx: &Fx, args: &[&str], env: &[(&str, &str)], lim: Limits) -> Timed {
    let mut all = vec![format!("--root={}", fx.root.display())];
    all.extend(args.iter().map(|s| s.to_string()));
    let mut cmdline: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    cmdline.push("extmerge".into());
    cmdline.extend(all.iter().cloned());
    let cmdline = cmdline.join(" ");

    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    let mut c = Command::new(BIN);
    c.args(&all)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap());
    for k in CLEARED_ENV {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let nofile = lim.nofile;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        c.pre_exec(move || {
            if let Some(n) = nofile {
                let mut r = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                r.rlim_cur = n.min(r.rlim_max);
                if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // Traced by the spawning thread: stopped just before it exits, while its
            // memory map still exists, to read its own peak RSS (`ru_maxrss` would also
            // count the test process it was forked from).
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let start = Instant::now();
    let child = c.spawn().expect("spawn extmerge");
    let pid = child.id() as libc::pid_t;
    // The child is reaped below with waitpid, not through `child`.
    std::mem::forget(child);
    let mut status = 0;
    let mut maxrss_kib = 0;
    let mut exec_seen = false;
    loop {
        // SAFETY: plain syscall on our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::__WALL) };
        if r == pid {
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                break;
            }
            if libc::WIFSTOPPED(status) {
                let sig = libc::WSTOPSIG(status);
                let event = (status >> 16) & 0xff;
                let mut deliver = 0;
                if sig == libc::SIGTRAP && event == libc::PTRACE_EVENT_EXIT {
                    maxrss_kib = vm_hwm_kib(pid);
                } else if sig == libc::SIGTRAP && event == 0 && !exec_seen {
                    exec_seen = true;
                    // The stop after execve: from now on, stop again at exit.
                    // SAFETY: our own traced, stopped child.
                    unsafe {
                        libc::ptrace(
                            libc::PTRACE_SETOPTIONS,
                            pid,
                            0,
                            libc::PTRACE_O_TRACEEXIT | libc::PTRACE_O_EXITKILL,
                        )
                    };
                } else {
                    deliver = sig;
                }
                // SAFETY: as above.
                unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, deliver) };
            }
            continue;
        }
        assert!(r == 0, "waitpid {pid}: {}", std::io::Error::last_os_error());
        if start.elapsed() > lim.timeout {
            // SAFETY: our own child, not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, libc::__WALL);
            }
            panic!(
                "`{cmdline}` still running after {:?} (killed): it blocks\nstderr:\n{}",
                lim.timeout,
                slurp(err)
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let elapsed = start.elapsed();
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    Timed {
        run: Run {
            code,
            out: slurp(out),
            err: slurp(err),
            cmd: cmdline,
        },
        maxrss_kib,
        elapsed,
    }
}

/// [`run_limited`] with a timeout of `secs` seconds.
#[track_caller]
pub fn run_t(fx: &Fx, args: &[&str], secs: u64) -> Run {
    run_limited(
        fx,
        args,
        &[],
        Limits {
            timeout: Duration::from_secs(secs),
            nofile: None,
        },
    )
    .run
}

/// [`run_limited`] with extra environment and a timeout of `secs` seconds.
#[track_caller]
pub fn run_env_t(fx: &Fx, args: &[&str], env: &[(&str, &str)], secs: u64) -> Run {
    run_limited(
        fx,
        args,
        env,
        Limits {
            timeout: Duration::from_secs(secs),
            nofile: None,
        },
    )
    .run
}

/// Bound loop devices: `(loopN, backing file)`, sorted.
pub fn loops() -> Vec<(String, String)> {
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir("/sys/block") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("loop") {
                continue;
            }
            if let Ok(b) = fs::read_to_string(e.path().join("loop/backing_file")) {
                v.push((name, b.trim_end().to_string()));
            }
        }
    }
    v.sort();
    v
}

/// The state a failed or undone run must leave unchanged.
#[derive(Debug, PartialEq, Eq)]
pub struct State {
    mounts: Vec<String>,
    loops: Vec<(String, String)>,
}

/// Mounts under the fixture or the workspace, and the loop devices bound to files of
/// the fixture (other loop devices of the machine come and go with other work).
pub fn state(fx: &Fx) -> State {
    let base = fx.base.to_string_lossy().into_owned();
    State {
        mounts: fx.snapshot(),
        loops: loops()
            .into_iter()
            .filter(|(_, b)| b.contains(&base))
            .collect(),
    }
}

/// Asserts: mount table and loop devices as in `before`, nothing in the workspace but
/// the lock file.
#[track_caller]
pub fn assert_clean(fx: &Fx, before: &State, what: &str) {
    let now = state(fx);
    assert_eq!(now.mounts, before.mounts, "{what}: mount table changed");
    assert_eq!(now.loops, before.loops, "{what}: loop devices changed");
    assert_eq!(
        workspace_leftovers(),
        Vec::<String>::new(),
        "{what}: leftovers in {WORKSPACE}"
    );
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// `mkfifo(p, 0644)`, creating parents.
pub fn mkfifo(p: &Path) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    let c = cpath(p);
    // SAFETY: valid NUL-terminated path.
    let r = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    assert_eq!(
        r,
        0,
        "mkfifo {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

/// `mknod(p, kind | 0666, makedev(major, minor))`, creating parents.
pub fn mknod(p: &Path, kind: libc::mode_t, major: u32, minor: u32) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    let c = cpath(p);
    // SAFETY: valid NUL-terminated path.
    let r = unsafe { libc::mknod(c.as_ptr(), kind | 0o666, libc::makedev(major, minor)) };
    assert_eq!(
        r,
        0,
        "mknod {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

/// `mount(src, target, fstype, flags, data)` in this thread's namespace.
pub fn mount(src: &str, target: &Path, fstype: &str, flags: libc::c_ulong, data: &str) {
    let (s, t, f, d) = (
        CString::new(src).unwrap(),
        cpath(target),
        CString::new(fstype).unwrap(),
        CString::new(data).unwrap(),
    );
    // SAFETY: valid NUL-terminated strings.
    let r = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), flags, d.as_ptr().cast()) };
    assert_eq!(
        r,
        0,
        "mount {fstype} on {}: {}",
        target.display(),
        std::io::Error::last_os_error()
    );
}

/// A sparse file of `len` bytes (nothing written: no disk, no memory).
pub fn sparse(p: &Path, len: u64) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    File::create(p).unwrap().set_len(len).unwrap();
}

/// Writes raw bytes, creating parents.
pub fn write_bytes(p: &Path, data: &[u8]) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

/// The release file path of sysext `name` (host path).
pub fn sysext_release_path(fx: &Fx, name: &str, file: &str) -> std::path::PathBuf {
    fx.path(&format!(
        "/var/lib/extensions/{name}/usr/lib/extension-release.d/{file}"
    ))
}

/// `extmerge plan` line for a skipped extension.
pub fn skip_line(fx: &Fx, name: &str, reason: &str) -> String {
    format!(
        "  skip {name} ({}): {reason}\n",
        fx.path(&format!("/var/lib/extensions/{name}")).display()
    )
}

/// Asserts `hay` contains `needle`, showing both.
#[track_caller]
pub fn assert_has(hay: &str, needle: &str) {
    assert!(
        hay.contains(needle),
        "expected to find:\n{needle}\nin:\n{hay}"
    );
}
