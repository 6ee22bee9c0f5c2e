//! Many extensions. overlayfs takes at most 500 lower layers (`OVL_MAX_STACK` in
//! fs/overlayfs/params.h); a merge of /usr uses one layer per contributing extension
//! plus the metadata layer and the host's /usr: 498 extensions fit, 499 do not.
//! Too many must fail cleanly, with a message that says so, and leave nothing mounted.

use std::fs;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::util::*;

/// A fixture whose search directory is a tmpfs (thousands of small files: no disk I/O).
fn fixture(base: &std::path::Path) -> Fx {
    let fx = Fx::new(base);
    mount(
        "tmpfs",
        &fx.path("/var/lib/extensions"),
        "tmpfs",
        0,
        "mode=0755",
    );
    fx
}

/// `n` directory sysexts `e0000`…, each contributing `/usr/share/eNNNN`.
fn make_exts(fx: &Fx, from: usize, to: usize) {
    for i in from..to {
        let n = format!("e{i:04}");
        let d = fx.path(&format!("/var/lib/extensions/{n}/usr"));
        fs::create_dir_all(d.join("lib/extension-release.d")).unwrap();
        fs::write(
            d.join(format!("lib/extension-release.d/extension-release.{n}")),
            SYSEXT_RELEASE,
        )
        .unwrap();
        fs::create_dir_all(d.join("share")).unwrap();
        fs::write(d.join("share").join(&n), &n).unwrap();
    }
}

fn lim(nofile: Option<u64>) -> Limits {
    Limits {
        timeout: Duration::from_secs(30),
        nofile,
    }
}

/// Merges with `count` extensions, succeeds, checks the merged tree and unmerges.
fn merge_ok(fx: &Fx, count: usize, nofile: Option<u64>, before: &State) {
    let t = run_limited(fx, &["--class=sysext", "merge"], &[], lim(nofile));
    eprintln!(
        "merge of {count} extensions (RLIMIT_NOFILE {nofile:?}): {:?}, peak RSS {} KiB",
        t.elapsed, t.maxrss_kib
    );
    t.run.ok();
    let share = fx.ls("/usr/share");
    assert_eq!(share.len(), count);
    assert_eq!(share[0], "e0000");
    assert_eq!(
        fx.read(&format!("/usr/share/e{:04}", count - 1)),
        Some(format!("e{:04}", count - 1))
    );
    assert_eq!(
        fx.read("/usr/bin/host-tool").as_deref(),
        Some("host tool\n")
    );
    let list = fx.read("/usr/.systemd-sysext/extensions").unwrap();
    assert_eq!(list.lines().count(), count);
    let start = Instant::now();
    run_limited(fx, &["--class=sysext", "unmerge"], &[], lim(nofile))
        .run
        .ok();
    eprintln!("unmerge of {count} extensions: {:?}", start.elapsed());
    assert_clean(fx, before, &format!("unmerge of {count}"));
}

/// True when the layers go to the kernel in one option string (a kernel without
/// `lowerdir+`, before 6.8, or a strategy forced through `EXTMERGE_LAYERS`): then
/// `mount(2)`'s one page limits a merge to about 220 layers (`/proc/self/fd/N:` each),
/// before overlayfs' 500. systemd, with longer layer paths in its string, fits fewer.
fn page_limited() -> bool {
    !kernel_has_lowerdir_append()
        || matches!(
            std::env::var("EXTMERGE_LAYERS").as_deref(),
            Ok("joined" | "legacy")
        )
}

/// The reason a merge of `count` extensions (one layer each, plus the metadata layer
/// and the host's /usr) fails with: from 499 on, extmerge refuses before mounting,
/// naming the count and overlayfs' limit; below, only the option string's size can
/// stop it (without `lowerdir+`).
fn too_many_reason(count: usize) -> String {
    if count >= 499 {
        format!(
            "{count} extensions to merge, {} lower layers with the metadata layer and the \
             host's directory: more than the kernel's overlayfs limit of 500 lower layers \
             (at most 498 extensions here)",
            count + 2
        )
    } else {
        "mount(2) takes less than a page".to_string()
    }
}

/// Merges with too many extensions: fails naming /usr, the count and the layer limit,
/// before anything is mounted (no overlay, no staging area; the kernel's own message
/// would say "too many lower directories").
fn merge_too_many(fx: &Fx, count: usize, nofile: Option<u64>, before: &State) {
    let t = run_limited(fx, &["--class=sysext", "merge"], &[], lim(nofile));
    eprintln!(
        "merge of {count} extensions (RLIMIT_NOFILE {nofile:?}): {:?}, exit {}",
        t.elapsed, t.run.code
    );
    t.run.fails_with(&format!("{}", fx.path("/usr").display()));
    assert_has(&t.run.err, &too_many_reason(count));
    assert!(
        !t.run.err.contains("too many lower directories"),
        "refused by the kernel, not before mounting: {}",
        t.run.err
    );
    assert_clean(fx, before, &format!("failed merge of {count}"));
    assert_eq!(fx.ls("/usr"), ["bin"]);
}

/// 400 extensions merge (and unmerge); 498 are the most that fit; 499 and 1000 fail
/// with the kernel's reason, leaving nothing mounted. (Without `lowerdir+`: 150 merge,
/// 400 and 1000 fail on the option string's size.)
#[test]
fn too_many_extensions() {
    ns_test(|base| {
        let fx = fixture(base);
        let start = Instant::now();
        if page_limited() {
            // The option string limit comes first: 150 fit, 400 do not.
            make_exts(&fx, 0, 150);
            let before = state(&fx);
            merge_ok(&fx, 150, None, &before);
            make_exts(&fx, 150, 400);
            merge_too_many(&fx, 400, None, &before);
            make_exts(&fx, 400, 1000);
            merge_too_many(&fx, 1000, None, &before);
            return;
        }
        make_exts(&fx, 0, 400);
        eprintln!("created 400 extensions in {:?}", start.elapsed());
        let before = state(&fx);
        merge_ok(&fx, 400, None, &before);
        make_exts(&fx, 400, 498);
        merge_ok(&fx, 498, None, &before);
        make_exts(&fx, 498, 499);
        merge_too_many(&fx, 499, None, &before);
        make_exts(&fx, 499, 1000);
        merge_too_many(&fx, 1000, None, &before);
    });
}

/// Under the soft `RLIMIT_NOFILE` of 1024 that services get by default (systemd's
/// `DefaultLimitNOFILE=1024:524288`), the most extensions that fit in one overlay
/// still merge.
#[test]
fn most_extensions_with_default_fd_limit() {
    ns_test(|base| {
        if page_limited() {
            eprintln!("SKIP: this many layers need lowerdir+ (Linux 6.8)");
            return;
        }
        let fx = fixture(base);
        make_exts(&fx, 0, 498);
        let before = state(&fx);
        merge_ok(&fx, 498, Some(1024), &before);
    });
}

/// Under the default soft `RLIMIT_NOFILE` of 1024, the limit on extensions must be
/// overlayfs' 500 layers per hierarchy, not the number of open files: 400 extensions
/// that each contribute to /usr and /opt (402 layers per overlay) merge, and 1000
/// extensions fail with the layer limit as the reason.
#[test]
fn many_extensions_limited_by_layers_not_fds() {
    ns_test(|base| {
        if page_limited() {
            eprintln!("SKIP: this many layers need lowerdir+ (Linux 6.8)");
            return;
        }
        let fx = fixture(base);
        make_exts(&fx, 0, 400);
        for i in 0..400 {
            let n = format!("e{i:04}");
            write_file(&fx.path(&format!("/var/lib/extensions/{n}/opt/{n}")), &n);
        }
        let before = state(&fx);
        let t = run_limited(&fx, &["--class=sysext", "merge"], &[], lim(Some(1024)));
        eprintln!("400 extensions in /usr and /opt: {:?}", t.elapsed);
        t.run.ok();
        // The extensions' directories, plus the metadata directory.
        assert_eq!(fx.ls("/opt").len(), 401);
        assert!(fx.ls("/opt").contains(&".systemd-sysext".to_string()));
        assert_eq!(fx.ls("/usr/share").len(), 400);
        run_limited(&fx, &["--class=sysext", "unmerge"], &[], lim(Some(1024)))
            .run
            .ok();
        assert_clean(&fx, &before, "unmerge");
        for i in 0..400 {
            fs::remove_dir_all(fx.path(&format!("/var/lib/extensions/e{i:04}/opt"))).unwrap();
        }
        make_exts(&fx, 400, 1000);
        merge_too_many(&fx, 1000, Some(1024), &before);
    });
}
