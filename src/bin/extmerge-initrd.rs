//! `extmerge-initrd`: merge the real root's extensions from the initrd, before
//! switch-root, so that the real root's first process sees a complete `/etc`, `/usr`
//! and `/opt`, and systemd after boot sees those merges as its own.
//!
//! Verbs:
//! - `sysroot` (default): confexts onto `<sysroot>/etc`, then sysexts onto
//!   `<sysroot>/usr` and `/opt`, matched against the real root's os-release with scope
//!   `system`. The mounts move with `<sysroot>` through switch-root.
//! - `initrd`: the initrd's own extensions (`/.extra/…`, scope `initrd`) onto the
//!   initrd's `/usr`, `/opt`, `/etc`; `initrd-unmerge` removes them before switch-root.
//!
//! Kernel command line: `extmerge=0` disables it; `extmerge.fatal=1` makes a failed
//! merge fail the program (and so the unit or hook); `extmerge.require=NAME,…` (and
//! `Require=` in the real root's `/etc/extmerge/initrd.conf`) makes a missing, refused
//! or failed extension of that name fail it; `extmerge.debug=1` logs at debug
//! level; `extmerge.extra=sysroot` merges the initrd's own `/.extra` images (from the
//! UKI and the ESP) onto the real root too, after the root's own, signed only.
//! systemd's `systemd.sysext=0` / `systemd.confext=0` (sysroot) and
//! `rd.systemd.sysext=0` / `rd.systemd.confext=0` (initrd's own) skip that class.
//! Messages go to `/dev/kmsg` (and stderr), each naming the file and the reason; the
//! `sysroot` verb writes its boot report to `/run/extmerge/report.json`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Instant;

use extmerge::context::Context;
use extmerge::format::class::Class;
use extmerge::format::cmdline::{fstab_var_mounts, Cmdline};
use extmerge::format::escape::{esc, escape};
use extmerge::log::{self, Level};
use extmerge::options::{Environment, Options};
use extmerge::record::{self, Recorder, Report};

fn kmsg_sink() -> log::Sink {
    let kmsg = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .ok();
    let kmsg = std::cell::RefCell::new(kmsg);
    Rc::new(move |l: Level, msg: &str| {
        eprintln!("extmerge-initrd: {msg}");
        if let Some(k) = kmsg.borrow_mut().as_mut() {
            // One write per record; the kernel takes "<prio>tag: text".
            let _ = k.write_all(format!("<{}>extmerge-initrd: {msg}\n", l as u8).as_bytes());
        }
    })
}

const HELP: &str = "\
Usage: extmerge-initrd [--sysroot=PATH] [--cmdline=FILE] [--extra-root=PATH] [VERB]

Merge extensions from the initrd, before switch-root.

Verbs:
  sysroot         Merge the real root's extensions at PATH (default)
  initrd          Merge the initrd's own extensions onto its /usr, /opt, /etc
  initrd-unmerge  Unmerge the initrd's own extensions

sysroot reads Require= ([Initrd]) of the real root's /etc/extmerge/initrd.conf
and writes what it saw and did to /run/extmerge/report.json.

Options:
  --sysroot=PATH  The real root, mounted for switch-root (default: /sysroot)
  --cmdline=FILE  The kernel command line (default: /proc/cmdline)
  --extra-root=PATH  Where extmerge.extra=sysroot finds /.extra (default: /)
  -h --help

Kernel command line:
  extmerge=0            Do nothing
  extmerge.fatal=1      A failed merge fails the program (and the unit or hook)
  extmerge.require=N,..  sysroot: extensions that must be merged, or it fails
  extmerge.debug=1      Log at debug level
  extmerge.extra=sysroot  sysroot: also the initrd's /.extra images (signed only)
  systemd.sysext=0      sysroot: skip system extensions
  systemd.confext=0     sysroot: skip configuration extensions
  rd.systemd.sysext=0   initrd, initrd-unmerge: skip system extensions
  rd.systemd.confext=0  initrd, initrd-unmerge: skip configuration extensions
";

/// A bad command line: said on stderr and in the kernel log, whatever the kernel
/// command line says (a unit or hook that passes it is broken).
fn usage_error(msg: &str) -> ExitCode {
    log::set_sink(Some(kmsg_sink()));
    log::log(Level::Error, &format!("{msg} (see --help)"));
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let mut verb = None;
    let mut sysroot = PathBuf::from("/sysroot");
    let mut cmdline_path = PathBuf::from("/proc/cmdline");
    let mut extra_root = PathBuf::from("/");
    for a in std::env::args().skip(1) {
        if let Some(v) = a.strip_prefix("--sysroot=") {
            sysroot = v.into();
        } else if let Some(v) = a.strip_prefix("--cmdline=") {
            cmdline_path = v.into();
        } else if let Some(v) = a.strip_prefix("--extra-root=") {
            extra_root = v.into();
        } else if a == "-h" || a == "--help" {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        } else if a.starts_with('-') {
            return usage_error(&format!("unknown option {a:?}"));
        } else if verb.is_some() {
            return usage_error(&format!("too many arguments: {a:?}"));
        } else {
            verb = Some(a);
        }
    }
    let verb = verb.unwrap_or_else(|| "sysroot".to_string());
    let cmd = Cmdline::from_bytes(&std::fs::read(&cmdline_path).unwrap_or_default());
    log::set_sink(Some(kmsg_sink()));
    log::set_level(if cmd.debug { Level::Debug } else { Level::Info });
    if !cmd.enabled {
        log::info("disabled by extmerge=0 on the kernel command line");
        return ExitCode::SUCCESS;
    }
    extmerge::inspect::fsutil::raise_nofile_limit();
    let start = Instant::now();
    let (root, initrd_own) = match verb.as_str() {
        "sysroot" => (sysroot, false),
        "initrd" | "initrd-unmerge" => (PathBuf::from("/"), true),
        v => {
            log::log(Level::Error, &format!("unknown verb {v:?}"));
            return ExitCode::FAILURE;
        }
    };
    if !initrd_own {
        warn_unmounted_var(&root);
    }
    // The required extensions: the real root's own /etc/extmerge/initrd.conf, read now,
    // before a confext may cover /etc, then the kernel command line.
    let required = if verb == "sysroot" {
        let (r, warnings) = record::required(&cmd, read_config(&root).as_deref());
        for w in warnings {
            log::warn(&w);
        }
        r
    } else {
        Vec::new()
    };
    let rec = Recorder::new();
    let opts = Options {
        root: root.clone(),
        no_reload: true,
        env: Environment::from_process(),
        config: extmerge::inspect::conf::load(&root),
        recorder: (verb == "sysroot").then(|| rec.clone()),
        // The initrd's own `/.extra` (UKI and ESP extensions), after the root's own.
        extra_root: (verb == "sysroot" && cmd.extra_sysroot).then_some(extra_root),
        ..Options::default()
    };
    let mut failed = false;
    // One context per class, on purpose: in early boot a broken sysext must not take
    // the confexts' /etc away (and the other way round). Each class is all or nothing.
    for class in Class::ALL {
        if !cmd.class_enabled(class, initrd_own) {
            log::info(&format!("{class} disabled on the kernel command line"));
            rec.with(class, |c| c.result = "disabled");
            continue;
        }
        let ctx = Context::new(opts.clone(), &[class]);
        let res = if verb == "initrd-unmerge" {
            ctx.unmerge()
                .map(|mut v| v.pop().map(|(_, h)| h).unwrap_or_default())
                .map(|h| {
                    if h.is_empty() {
                        format!("no {class} extensions merged, nothing to unmerge")
                    } else {
                        format!("unmerged {}", names(&h, " "))
                    }
                })
        } else {
            // refresh: a repeated run (or systemd's own unit) finds the merge and leaves it.
            ctx.refresh()
                .map(|mut v| v.pop().map(|(_, o)| o).unwrap_or_default())
                .map(|o| {
                    rec.with(class, |c| {
                        c.result = match (o.extensions.is_empty(), o.unchanged) {
                            (true, _) => "nothing",
                            (false, true) => "unchanged",
                            (false, false) => "merged",
                        };
                        for n in &o.extensions {
                            // Known already, unless a merge in place was kept as it is.
                            c.entry_named(n);
                        }
                        c.finish(Ok(&o.extensions));
                    });
                    if o.extensions.is_empty() {
                        format!("no {class} extensions to merge ({} ignored)", o.ignored)
                    } else if o.unchanged {
                        format!(
                            "{class} extensions {} already merged, nothing changed",
                            names(&o.extensions, ",")
                        )
                    } else {
                        format!(
                            "merged {class} extensions {} into {}",
                            names(&o.extensions, ","),
                            names(&o.merged, " ")
                        )
                    }
                })
        };
        match res {
            Ok(msg) => log::info(&format!("{}: {msg}", esc(&root))),
            Err(e) => {
                // All-or-nothing per class: nothing of this class is mounted; boot goes on.
                log::log(
                    Level::Error,
                    &format!("{class} merge failed, continuing without it: {e}"),
                );
                rec.with(class, |c| {
                    c.result = "failed";
                    c.finish(Err(&e.to_string()));
                });
                failed = true;
            }
        }
    }
    let classes = rec.snapshot();
    let etc_merged = classes
        .iter()
        .any(|c| c.class == Some(Class::Confext) && matches!(c.result, "merged" | "unchanged"));
    if verb == "sysroot" && etc_merged {
        warn_read_only_first_boot(&root);
    }
    let unmet = record::unmet(&required, &classes);
    for (name, why) in &unmet {
        log::log(
            Level::Error,
            &format!(
                "required extension {} is not merged, stopping the boot: {why}",
                escape(name)
            ),
        );
    }
    let ok = unmet.is_empty() && !(failed && cmd.fatal);
    if verb == "sysroot" && !failed {
        // Tells systemd's own sysroot units (via our drop-ins) that the work is done.
        if let Err(e) = extmerge::sys::staging::touch_workspace_file("sysroot-merged") {
            log::log(Level::Warning, &e.to_string());
        }
    }
    let total_usec = record::usec_since(start);
    if verb == "sysroot" {
        let report = Report {
            verb: verb.clone(),
            root: root.to_string_lossy().into_owned(),
            cmdline: record::switches(&cmd),
            required,
            unmet,
            classes,
            total_usec,
            ok,
        };
        let text = report.to_json().render(true) + "\n";
        if let Err(e) =
            extmerge::sys::staging::replace_workspace_file(record::REPORT_NAME, text.as_bytes())
        {
            log::log(Level::Warning, &format!("boot report not written: {e}"));
        }
    }
    log::info(&format!("done in {total_usec} µs"));
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The real root's own `/etc/extmerge/initrd.conf` (resolved inside the root), if any.
fn read_config(root: &std::path::Path) -> Option<Vec<u8>> {
    let r = extmerge::inspect::fsutil::Root::open(root).ok()?;
    // Bounded as systemd's configuration files are; a regular file only.
    extmerge::inspect::fsutil::read_file_in(
        r.fd(),
        std::path::Path::new(record::CONFIG_PATH),
        rustix::fs::ResolveFlags::empty(),
        1 << 20,
    )
    .ok()
}

/// Names (extensions, hierarchies) for a log line: each escaped ([`esc`]), joined by `sep`.
fn names(v: &[String], sep: &str) -> String {
    v.iter().map(escape).collect::<Vec<_>>().join(sep)
}

/// A first boot writes to `/etc` (the machine-id, the preset links of `preset-all`): with
/// confexts merged read-only there, it cannot. Said, not changed: the mutable mode is the
/// root's own choice, which systemd-confext on the booted system reads too (README).
fn warn_read_only_first_boot(sysroot: &std::path::Path) {
    let Ok(root) = extmerge::inspect::fsutil::Root::open(sysroot) else {
        return;
    };
    if !extmerge::inspect::firstboot::is_first_boot(&root) {
        return;
    }
    let read_only = root
        .open_at(
            "etc",
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
        )
        .and_then(|fd| rustix::fs::fstatvfs(&fd).map_err(Into::into))
        .is_ok_and(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY));
    if read_only {
        log::warn(&format!(
            "first boot of {} with its confexts merged read-only on /etc: systemd cannot set up the machine-id or write preset links there; set Mutable=yes in [ConfExt] of {}/etc/systemd/confext.conf",
            esc(sysroot),
            esc(sysroot)
        ));
    }
}

/// A separate `/var` (or `/var/lib`) in the real root's fstab that is not mounted below
/// the sysroot yet hides `/var/lib/extensions` and `/var/lib/confexts` from discovery.
/// We do not mount it ourselves (that is the initrd's job: systemd's
/// `RequiresMountsFor=` in our unit, `x-initrd.mount` in fstab): we say so in the log.
fn warn_unmounted_var(sysroot: &std::path::Path) {
    let Ok(fstab) = std::fs::read(sysroot.join("etc/fstab")) else {
        return;
    };
    for m in fstab_var_mounts(&String::from_utf8_lossy(&fstab)) {
        let Ok(fd) = extmerge::inspect::fsutil::Root::open(sysroot)
            .and_then(|r| r.open_at(&m, rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY))
        else {
            continue;
        };
        if !extmerge::inspect::fsutil::is_mount_root(std::os::fd::AsFd::as_fd(&fd)).unwrap_or(true)
        {
            log::warn(&format!(
                "{} is a separate file system in {}/etc/fstab but not mounted below {}: extensions in /var/lib/extensions and /var/lib/confexts are not seen (mark it x-initrd.mount)",
                esc(&m),
                esc(sysroot),
                esc(sysroot)
            ));
        }
    }
}
