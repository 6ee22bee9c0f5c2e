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
//! merge fail the program (and so the unit or hook); `extmerge.debug=1` logs at debug
//! level. systemd's `systemd.sysext=0` / `systemd.confext=0` (sysroot) and
//! `rd.systemd.sysext=0` / `rd.systemd.confext=0` (initrd's own) skip that class.
//! Messages go to `/dev/kmsg` (and stderr), each naming the file and the reason.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Instant;

use extmerge::class::Class;
use extmerge::log::{self, Level};
use extmerge::merge;
use extmerge::options::{parse_boolean, Options};

/// Switches read from the kernel command line.
struct Cmdline {
    enabled: bool,
    fatal: bool,
    debug: bool,
    args: Vec<(String, Option<String>)>,
}

impl Cmdline {
    fn parse(s: &str) -> Cmdline {
        let args: Vec<(String, Option<String>)> = s
            .split_ascii_whitespace()
            .map(|w| match w.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (w.to_string(), None),
            })
            .collect();
        let flag = |key: &str, default: bool| {
            args.iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| {
                    v.as_deref()
                        .map_or(Some(true), parse_boolean)
                        .unwrap_or(default)
                })
                .unwrap_or(default)
        };
        Cmdline {
            enabled: flag("extmerge", true),
            fatal: flag("extmerge.fatal", false),
            debug: flag("extmerge.debug", false),
            args,
        }
    }

    fn class_enabled(&self, class: Class, initrd_own: bool) -> bool {
        let key = format!(
            "{}systemd.{}",
            if initrd_own { "rd." } else { "" },
            class.as_str()
        );
        // The last occurrence decides; only an explicit false disables.
        self.args
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .is_none_or(|(_, v)| v.as_deref().and_then(parse_boolean) != Some(false))
    }
}

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
Usage: extmerge-initrd [--sysroot=PATH] [--cmdline=FILE] [VERB]

Merge extensions from the initrd, before switch-root.

Verbs:
  sysroot         Merge the real root's extensions at PATH (default)
  initrd          Merge the initrd's own extensions onto its /usr, /opt, /etc
  initrd-unmerge  Unmerge the initrd's own extensions

Options:
  --sysroot=PATH  The real root, mounted for switch-root (default: /sysroot)
  --cmdline=FILE  The kernel command line (default: /proc/cmdline)
  -h --help

Kernel command line:
  extmerge=0            Do nothing
  extmerge.fatal=1      A failed merge fails the program (and the unit or hook)
  extmerge.debug=1      Log at debug level
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
    for a in std::env::args().skip(1) {
        if let Some(v) = a.strip_prefix("--sysroot=") {
            sysroot = v.into();
        } else if let Some(v) = a.strip_prefix("--cmdline=") {
            cmdline_path = v.into();
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
    let cmd = Cmdline::parse(&std::fs::read_to_string(&cmdline_path).unwrap_or_default());
    log::set_sink(Some(kmsg_sink()));
    log::set_level(if cmd.debug { Level::Debug } else { Level::Info });
    if !cmd.enabled {
        log::info("disabled by extmerge=0 on the kernel command line");
        return ExitCode::SUCCESS;
    }
    extmerge::fsutil::raise_nofile_limit();
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
    let opts = Options {
        root: root.clone(),
        no_reload: true,
        ..Options::default()
    };
    let mut failed = false;
    for class in Class::ALL {
        if !cmd.class_enabled(class, initrd_own) {
            log::info(&format!("{class} disabled on the kernel command line"));
            continue;
        }
        let res = if verb == "initrd-unmerge" {
            merge::unmerge(&opts, class).map(|h| {
                if h.is_empty() {
                    format!("no {class} extensions merged, nothing to unmerge")
                } else {
                    format!("unmerged {}", h.join(" "))
                }
            })
        } else {
            // refresh: a repeated run (or systemd's own unit) finds the merge and leaves it.
            merge::refresh(&opts, class).map(|o| {
                if o.extensions.is_empty() {
                    format!("no {class} extensions to merge ({} ignored)", o.ignored)
                } else if o.unchanged {
                    format!(
                        "{class} extensions {} already merged, nothing changed",
                        o.extensions.join(",")
                    )
                } else {
                    format!(
                        "merged {class} extensions {} into {}",
                        o.extensions.join(","),
                        o.merged.join(" ")
                    )
                }
            })
        };
        match res {
            Ok(msg) => log::info(&format!("{}: {msg}", root.display())),
            Err(e) => {
                // All-or-nothing per class: nothing of this class is mounted; boot goes on.
                log::log(
                    Level::Error,
                    &format!("{class} merge failed, continuing without it: {e}"),
                );
                failed = true;
            }
        }
    }
    if verb == "sysroot" && !failed {
        // Tells systemd's own sysroot units (via our drop-ins) that the work is done.
        if let Err(e) = extmerge::staging::touch_workspace_file("sysroot-merged") {
            log::log(Level::Warning, &e.to_string());
        }
    }
    log::info(&format!("done in {} µs", start.elapsed().as_micros()));
    if failed && cmd.fatal {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// The mount points in an fstab text that are `/var` or below it, in order.
fn fstab_var_mounts(fstab: &str) -> Vec<String> {
    fstab
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| *m == "/var" || m.starts_with("/var/"))
        .map(String::from)
        .collect()
}

/// A separate `/var` (or `/var/lib`) in the real root's fstab that is not mounted below
/// the sysroot yet hides `/var/lib/extensions` and `/var/lib/confexts` from discovery.
/// We do not mount it ourselves (that is the initrd's job: systemd's
/// `RequiresMountsFor=` in our unit, `x-initrd.mount` in fstab): we say so in the log.
fn warn_unmounted_var(sysroot: &std::path::Path) {
    let Ok(fstab) = std::fs::read_to_string(sysroot.join("etc/fstab")) else {
        return;
    };
    for m in fstab_var_mounts(&fstab) {
        let Ok(fd) = extmerge::fsutil::Root::open(sysroot)
            .and_then(|r| r.open_at(&m, rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY))
        else {
            continue;
        };
        if !extmerge::mount::is_mount_root(std::os::fd::AsFd::as_fd(&fd)).unwrap_or(true) {
            log::warn(&format!(
                "{m} is a separate file system in {}/etc/fstab but not mounted below {}: extensions in /var/lib/extensions and /var/lib/confexts are not seen (mark it x-initrd.mount)",
                sysroot.display(),
                sysroot.display()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fstab_var_entries() {
        let fstab = "# comment\nUUID=1 / ext4 defaults 0 1\n/dev/vdb /var ext4 defaults 0 2\n\
                     tmpfs /tmp tmpfs defaults 0 0\n/dev/vdc /var/lib xfs x-initrd.mount 0 0\n\
                     /dev/vdd /variant ext4 defaults 0 0\n";
        assert_eq!(fstab_var_mounts(fstab), ["/var", "/var/lib"]);
        assert!(fstab_var_mounts("").is_empty());
    }

    #[test]
    fn cmdline_switches() {
        let c = Cmdline::parse("root=/dev/vda quiet extmerge=0");
        assert!(!c.enabled && !c.fatal && !c.debug);
        let c = Cmdline::parse("extmerge extmerge.fatal=1 extmerge.debug systemd.confext=0");
        assert!(c.enabled && c.fatal && c.debug);
        assert!(!c.class_enabled(Class::Confext, false));
        assert!(c.class_enabled(Class::Confext, true));
        assert!(c.class_enabled(Class::Sysext, false));
        let c = Cmdline::parse("rd.systemd.sysext=no extmerge=bogus");
        assert!(c.enabled, "unparsable value keeps the default");
        assert!(!c.class_enabled(Class::Sysext, true));
        assert!(c.class_enabled(Class::Sysext, false));
    }
}
