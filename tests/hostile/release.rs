//! Hostile extension-release (and os-release) files: FIFOs, huge sparse files, symlinks
//! to devices, to /proc, to directories, symlink loops, and hostile contents. Every
//! such extension is skipped with a reason naming the file, quickly and without
//! blocking; the other extensions are merged; a hostile host os-release fails the run.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use crate::common::*;
use crate::util::*;

const REL: &str = "usr/lib/extension-release.d";

/// A FIFO where `extension-release.NAME` should be (exact name, and as the only
/// fallback candidate of `g_1`) does not block: the run ends within seconds and the
/// extensions are skipped, the FIFO one with a reason saying it is a FIFO.
#[test]
fn fifo_release_file_does_not_block() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext_release("f", None, &[("usr/share/f", "f\n")]);
        mkfifo(&sysext_release_path(&fx, "f", "extension-release.f"));
        // No exact file: the fallback scan meets a FIFO named for the base name "g".
        fx.sysext_release("g_1", None, &[("usr/share/g", "g\n")]);
        mkfifo(&sysext_release_path(&fx, "g_1", "extension-release.g"));
        fx.sysext("ok", &[("usr/share/ok", "ok\n")]);
        let before = state(&fx);

        let p = run_t(&fx, &["--class=sysext", "plan"], 5);
        p.ok();
        assert_has(
            &p.out,
            &skip_line(
                &fx,
                "f",
                &format!(
                    "no usable extension-release: {REL}/extension-release.f: not a regular file (fifo)"
                ),
            ),
        );
        // The FIFO fallback candidate is skipped like any non-regular file (systemd:
        // "really ensure it is a regular file after we open it").
        assert_has(
            &p.out,
            &skip_line(
                &fx,
                "g_1",
                &format!("no usable extension-release: no {REL}/extension-release.g_1 found"),
            ),
        );

        let m = run_t(&fx, &["--class=sysext", "merge"], 5);
        m.ok();
        assert_has(&m.err, "Using extensions 'ok'.");
        assert_eq!(fx.ls("/usr/share"), ["ok"]);
        run_t(&fx, &["--class=sysext", "unmerge"], 5).ok();
        assert_clean(&fx, &before, "after unmerge");
    });
}

/// The root's os-release is a FIFO: the run fails at once, naming the file.
#[test]
fn fifo_host_os_release_fails_without_blocking() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("ok", &[("usr/share/ok", "ok\n")]);
        fs::remove_file(fx.path("/etc/os-release")).unwrap();
        mkfifo(&fx.path("/etc/os-release"));
        let before = state(&fx);
        let r = run_t(&fx, &["--class=sysext", "merge"], 5);
        r.fails_with(&format!(
            "{}: not a regular file (fifo)",
            fx.path("/etc/os-release").display()
        ));
        assert_clean(&fx, &before, "failed merge");
    });
}

/// A 100 MiB (sparse) extension-release file, as the exact file and as the fallback
/// candidate, and a 100 MiB host os-release: refused by size without reading, quickly,
/// with the child's peak RSS far below the file size.
#[test]
fn huge_release_files_are_refused_by_size() {
    ns_test(|base| {
        let fx = Fx::new(base);
        const BIG: u64 = 100 << 20;
        fx.sysext_release("big", None, &[("usr/share/big", "big\n")]);
        sparse(
            &sysext_release_path(&fx, "big", "extension-release.big"),
            BIG,
        );
        fx.sysext_release("h_2", None, &[("usr/share/h", "h\n")]);
        sparse(&sysext_release_path(&fx, "h_2", "extension-release.h"), BIG);
        fx.sysext("ok", &[("usr/share/ok", "ok\n")]);
        let before = state(&fx);
        let lim = Limits {
            timeout: Duration::from_secs(5),
            nofile: None,
        };

        let t = run_limited(&fx, &["--class=sysext", "merge"], &[], lim);
        eprintln!(
            "merge with two 100 MiB release files: {:?}, peak RSS {} KiB",
            t.elapsed, t.maxrss_kib
        );
        t.run.ok();
        assert_has(&t.run.err, "Using extensions 'ok'.");
        assert!(t.maxrss_kib < 32 * 1024, "peak RSS {} KiB", t.maxrss_kib);
        assert!(t.elapsed < Duration::from_secs(3), "{:?}", t.elapsed);
        assert_eq!(fx.ls("/usr/share"), ["ok"]);
        run_t(&fx, &["--class=sysext", "unmerge"], 5).ok();
        assert_clean(&fx, &before, "after unmerge");

        let p = run_limited(&fx, &["--class=sysext", "plan"], &[], lim);
        p.run.ok();
        assert!(p.maxrss_kib < 32 * 1024, "peak RSS {} KiB", p.maxrss_kib);
        let too_large = "file too large (104857600 bytes, limit 67108863)";
        assert_has(
            &p.run.out,
            &skip_line(
                &fx,
                "big",
                &format!("no usable extension-release: {REL}/extension-release.big: {too_large}"),
            ),
        );
        assert_has(
            &p.run.out,
            &skip_line(
                &fx,
                "h_2",
                &format!("no usable extension-release: {REL}/extension-release.h: {too_large}"),
            ),
        );

        // The host's os-release: the run fails.
        fs::remove_file(fx.path("/etc/os-release")).unwrap();
        sparse(&fx.path("/etc/os-release"), BIG);
        let t = run_limited(&fx, &["--class=sysext", "merge"], &[], lim);
        t.run.fails_with(&format!(
            "{}: {too_large}",
            fx.path("/etc/os-release").display()
        ));
        assert!(t.maxrss_kib < 32 * 1024, "peak RSS {} KiB", t.maxrss_kib);
        assert_clean(&fx, &before, "failed merge");
    });
}

/// Release files that are symlinks: to /dev/zero (absent in the extension, then a real
/// character device inside it), to /proc/self/mem (absent, then with a procfs mounted
/// inside the extension), to a directory; a release directory that is a symlink loop;
/// an extension entry that is a symlink loop. Symlinks resolve inside the extension,
/// never on the host; each extension is skipped with its reason, the good one merged.
#[test]
fn release_file_symlinks_to_devices_proc_dirs_and_loops() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let ext = |n: &str| fx.path(&format!("/var/lib/extensions/{n}"));
        let link = |n: &str, target: &str| {
            let p = sysext_release_path(&fx, n, &format!("extension-release.{n}"));
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            symlink(target, p).unwrap();
        };
        for n in ["zero", "zero2", "mem", "mem2", "dir"] {
            fx.sysext_release(n, None, &[(&format!("usr/share/{n}"), "x\n")]);
        }
        link("zero", "/dev/zero");
        link("zero2", "/dev/zero");
        mknod(&ext("zero2").join("dev/zero"), libc::S_IFCHR, 1, 5);
        link("mem", "/proc/self/mem");
        link("mem2", "/proc/self/mem");
        fs::create_dir_all(ext("mem2").join("proc")).unwrap();
        mount(
            "proc",
            &ext("mem2").join("proc"),
            "proc",
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            "",
        );
        link("dir", "/usr");
        // The release directory is a symlink loop.
        fx.sysext_release("loopdir", None, &[("usr/share/loopdir", "x\n")]);
        fs::create_dir_all(ext("loopdir").join("usr/lib")).unwrap();
        symlink("x", ext("loopdir").join("usr/lib/extension-release.d")).unwrap();
        symlink("extension-release.d", ext("loopdir").join("usr/lib/x")).unwrap();
        // The extension entry itself is a symlink loop.
        symlink("loop-b", ext("loop-a")).unwrap();
        symlink("loop-a", ext("loop-b")).unwrap();
        fx.sysext("ok", &[("usr/share/ok", "ok\n")]);
        let before = state(&fx);

        let p = run_t(&fx, &["--class=sysext", "plan"], 5);
        p.ok();
        let nf =
            |n: &str| format!("no usable extension-release: no {REL}/extension-release.{n} found");
        let bad = |n: &str, why: &str| {
            format!("no usable extension-release: {REL}/extension-release.{n}: {why}")
        };
        for (n, reason) in [
            // Resolved inside the extension, where there is no /dev/zero.
            ("zero", nf("zero")),
            (
                "zero2",
                bad("zero2", "not a regular file (character device)"),
            ),
            ("mem", nf("mem")),
            // /proc/self/mem is a regular file of size 0 that cannot be read at 0.
            ("mem2", bad("mem2", "Input/output error")),
            ("dir", bad("dir", "not a regular file (directory)")),
            (
                "loopdir",
                bad("loopdir", "Too many levels of symbolic links"),
            ),
        ] {
            assert_has(&p.out, &skip_line(&fx, n, &reason));
        }
        for l in ["loop-a", "loop-b"] {
            assert_has(
                &p.out,
                &format!(
                    "  ignore {}: Too many levels of symbolic links\n",
                    ext(l).display()
                ),
            );
        }

        let m = run_t(&fx, &["--class=sysext", "merge"], 5);
        m.ok();
        assert_has(&m.err, "Using extensions 'ok'.");
        assert_eq!(fx.ls("/usr/share"), ["ok"]);
        run_t(&fx, &["--class=sysext", "unmerge"], 5).ok();
        assert_clean(&fx, &before, "after unmerge");
    });
}

/// A valid release file of about `size` bytes: `ID`, `SYSEXT_LEVEL`, then distinct keys.
fn many_keys(size: usize) -> Vec<u8> {
    let mut keys = b"ID=debian\nSYSEXT_LEVEL=1.0\n".to_vec();
    let mut i = 0u32;
    while keys.len() + 11 <= size {
        keys.extend(format!("K{i:07}=1\n").as_bytes());
        i += 1;
    }
    keys
}

/// Hostile contents: invalid UTF-8 in a value, a NUL byte, CRLF line ends, a 1 MiB
/// line, a 1 MiB ID, 1 MiB of distinct keys (~95 000), invalid UTF-8 in a comment. Each
/// gets a verdict with a reason, quickly; nothing crashes. (Files at the size limit:
/// [`release_files_at_the_size_limit`].)
#[test]
fn release_file_contents() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let put = |n: &str, data: &[u8]| {
            fx.sysext_release(n, None, &[(&format!("usr/share/{n}"), "x\n")]);
            write_bytes(
                &sysext_release_path(&fx, n, &format!("extension-release.{n}")),
                data,
            );
        };
        put("utf8", b"ID=debian\nSYSEXT_LEVEL=1.\xff0\n");
        put("nul", b"ID=debian\0\nSYSEXT_LEVEL=1.0\n");
        put("crlf", b"ID=debian\r\nSYSEXT_LEVEL=1.0\r\n");
        put("cr", b"ID=debian\rSYSEXT_LEVEL=1.0\r");
        let mut long = b"ID=debian\nSYSEXT_LEVEL=1.0\nX=".to_vec();
        long.extend(std::iter::repeat_n(b'a', 1 << 20));
        long.push(b'\n');
        put("longline", &long);
        let mut longid = b"ID=".to_vec();
        longid.extend(std::iter::repeat_n(b'i', 1 << 20));
        put("longid", &longid);
        put("manykeys", &many_keys(1 << 20));
        put("comment", b"# \xff\xfe\nID=debian\nSYSEXT_LEVEL=1.0\n");
        let before = state(&fx);

        let t = run_limited(
            &fx,
            &["--class=sysext", "plan"],
            &[],
            Limits {
                timeout: Duration::from_secs(10),
                nofile: None,
            },
        );
        eprintln!(
            "plan of hostile release contents: {:?}, peak RSS {} KiB",
            t.elapsed, t.maxrss_kib
        );
        let p = t.run;
        p.ok();
        let bad = |n: &str, why: &str| {
            format!("no usable extension-release: {REL}/extension-release.{n}: {why}")
        };
        assert_has(
            &p.out,
            &skip_line(&fx, "utf8", &bad("utf8", "line 2: invalid UTF-8")),
        );
        assert_has(
            &p.out,
            &skip_line(&fx, "nul", &bad("nul", "line 1: NUL byte")),
        );
        assert_has(
            &p.out,
            &skip_line(
                &fx,
                "longid",
                &format!("ID={} does not match host ID=debian", "i".repeat(1 << 20)),
            ),
        );
        for n in ["crlf", "cr", "longline", "manykeys", "comment"] {
            assert_has(
                &p.out,
                &format!(
                    "  use  {n} (directory, {})\n",
                    fx.path(&format!("/var/lib/extensions/{n}")).display()
                ),
            );
        }
        assert!(t.elapsed < Duration::from_secs(5), "{:?}", t.elapsed);

        let m = run_t(&fx, &["--class=sysext", "merge"], 10);
        m.ok();
        assert_has(
            &m.err,
            "Using extensions 'comment', 'cr', 'crlf', 'longline', 'manykeys'.",
        );
        assert_eq!(
            fx.ls("/usr/share"),
            ["comment", "cr", "crlf", "longline", "manykeys"]
        );
        run_t(&fx, &["--class=sysext", "unmerge"], 5).ok();
        assert_clean(&fx, &before, "after unmerge");
    });
}

/// Memory of a run does not grow with the number of extensions whose release files are
/// large: each release file can be up to the size limit (64 MiB), but its parsed form
/// must not be kept for every extension of the run.
#[test]
fn many_large_release_files_keep_memory_bounded() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let data = many_keys(1 << 20);
        let lim = Limits {
            timeout: Duration::from_secs(60),
            nofile: None,
        };
        let mut rss = Vec::new();
        for n in 0..8 {
            let name = format!("k{n}");
            fx.sysext_release(&name, None, &[(&format!("usr/share/{name}"), "x\n")]);
            write_bytes(
                &sysext_release_path(&fx, &name, &format!("extension-release.{name}")),
                &data,
            );
            if n == 0 || n == 7 {
                let t = run_limited(&fx, &["--class=sysext", "plan"], &[], lim);
                t.run.ok();
                eprintln!(
                    "plan with {} release files of 1 MiB: {:?}, peak RSS {} KiB",
                    n + 1,
                    t.elapsed,
                    t.maxrss_kib
                );
                rss.push(t.maxrss_kib);
            }
        }
        assert!(
            rss[1] < rss[0] + 16 * 1024,
            "peak RSS with 1 file: {} KiB, with 8 files: {} KiB",
            rss[0],
            rss[1]
        );
    });
}

/// systemd's limit for env files (`READ_FULL_BYTES_MAX`, 64 MiB − 1).
const LIMIT: u64 = (64 << 20) - 1;

/// Writes a valid release file of exactly `len` bytes: `head`, then one comment line of
/// `c` up to the length (no NUL bytes, nothing sparse), written in 1 MiB pieces.
fn file_of_len(p: &Path, head: &str, len: u64) {
    use std::io::Write;
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    let mut f = fs::File::create(p).unwrap();
    f.write_all(head.as_bytes()).unwrap();
    f.write_all(b"#").unwrap();
    let mut left = len - head.len() as u64 - 1;
    let chunk = vec![b'c'; 1 << 20];
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    assert_eq!(f.metadata().unwrap().len(), len);
}

/// Extension-release files and a host os-release of exactly the size limit (64 MiB − 1,
/// as systemd's `read_full_stream`) are read and used, with the child's peak RSS about
/// one file size: the file is read into one buffer, a 64 MiB comment is not copied, of
/// 64 MiB of distinct keys only the used ones are kept. One byte over the limit is
/// refused by its size, naming the file and the limit.
#[test]
fn release_files_at_the_size_limit() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let lim = Limits {
            timeout: Duration::from_secs(60),
            nofile: None,
        };
        for n in ["atlimit", "keys", "overlimit"] {
            fx.sysext_release(n, None, &[(&format!("usr/share/{n}"), "x\n")]);
        }
        let rel = |n: &str| sysext_release_path(&fx, n, &format!("extension-release.{n}"));
        file_of_len(&rel("atlimit"), SYSEXT_RELEASE, LIMIT);
        file_of_len(&rel("overlimit"), SYSEXT_RELEASE, LIMIT + 1);
        // ~6 million distinct keys: only the few that are used are kept.
        let mut keys = many_keys(LIMIT as usize);
        keys.resize(LIMIT as usize, b'\n');
        write_bytes(&rel("keys"), &keys);
        drop(keys);
        let before = state(&fx);

        let t = run_limited(&fx, &["--class=sysext", "plan"], &[], lim);
        eprintln!(
            "plan with a release file at the limit: {:?}, peak RSS {} KiB",
            t.elapsed, t.maxrss_kib
        );
        t.run.ok();
        for n in ["atlimit", "keys"] {
            assert_has(
                &t.run.out,
                &format!(
                    "  use  {n} (directory, {})\n",
                    fx.path(&format!("/var/lib/extensions/{n}")).display()
                ),
            );
        }
        assert_has(
            &t.run.out,
            &skip_line(
                &fx,
                "overlimit",
                &format!(
                    "no usable extension-release: {REL}/extension-release.overlimit: \
                     file too large (67108864 bytes, limit 67108863)"
                ),
            ),
        );
        // One buffer of the file's size, plus the program's own few MiB (64 MiB of
        // distinct keys, all kept, would take about 1 GiB).
        assert!(
            t.maxrss_kib < ((LIMIT >> 10) + 24 * 1024) as i64,
            "peak RSS {} KiB",
            t.maxrss_kib
        );
        let m = run_t(&fx, &["--class=sysext", "merge"], 60);
        m.ok();
        assert_has(&m.err, "Using extensions 'atlimit', 'keys'.");
        run_t(&fx, &["--class=sysext", "unmerge"], 10).ok();
        assert_clean(&fx, &before, "after unmerge");

        // The host's os-release: at the limit it is used, a byte over fails the run.
        let os = fx.path("/etc/os-release");
        let host = "ID=debian\nVERSION_ID=12\nSYSEXT_LEVEL=1.0\n";
        file_of_len(&os, host, LIMIT);
        run_t(&fx, &["--class=sysext", "merge"], 60).ok();
        run_t(&fx, &["--class=sysext", "unmerge"], 10).ok();
        file_of_len(&os, host, LIMIT + 1);
        run_t(&fx, &["--class=sysext", "merge"], 60).fails_with(&format!(
            "{}: file too large (67108864 bytes, limit 67108863)",
            os.display()
        ));
        assert_clean(&fx, &before, "refused merge");
    });
}
