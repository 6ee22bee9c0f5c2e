//! The units with configuration extensions of their own (`NAME.confext.d/` in the unit
//! directories), for `extmerge-generator`: found and read inside a root, changing
//! nothing.

use std::collections::BTreeSet;
use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs::{OFlags, ResolveFlags};

use crate::format::unit::{check_unit_name, UNIT_DIRS};
use crate::inspect::fsutil::{self, Root};

/// The largest unit file read.
const MAX_UNIT_FILE: u64 = 1 << 20;

/// A service with its own confexts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitWithConfexts {
    /// The unit name (`web.service`).
    pub unit: String,
    /// Its unit file's text (the first of the unit directories that has it), `None`
    /// when there is none or it is masked (a symlink to /dev/null, or empty).
    pub text: Option<String>,
}

/// Every `*.service` with a `NAME.confext.d/` directory in one of [`UNIT_DIRS`] of
/// `root`, sorted by name. Entries that are not directories or not valid unit names
/// are passed over.
pub fn units_with_confexts(root: &Root) -> Vec<UnitWithConfexts> {
    let mut names = BTreeSet::new();
    for d in UNIT_DIRS {
        let Ok(fd) = root.open_at(d, OFlags::RDONLY | OFlags::DIRECTORY) else {
            continue;
        };
        let Ok(dir) = rustix::fs::Dir::read_from(&fd) else {
            continue;
        };
        for e in dir.flatten() {
            let Ok(name) = e.file_name().to_str() else {
                continue;
            };
            let Some(unit) = name.strip_suffix(".confext.d") else {
                continue;
            };
            if !unit.ends_with(".service") || check_unit_name(unit).is_err() {
                continue;
            }
            let is_dir = root
                .open_at(Path::new(d).join(name), OFlags::PATH | OFlags::DIRECTORY)
                .is_ok();
            if is_dir {
                names.insert(unit.to_string());
            }
        }
    }
    names
        .into_iter()
        .map(|unit| UnitWithConfexts {
            text: unit_text(root, &unit),
            unit,
        })
        .collect()
}

/// The text of the first unit file named `unit` in [`UNIT_DIRS`] (symlinks followed
/// inside the root); `None` when none is a regular, non-empty file.
fn unit_text(root: &Root, unit: &str) -> Option<String> {
    for d in UNIT_DIRS {
        let p = Path::new(d).join(unit);
        match fsutil::read_file_in(root.fd(), &p, ResolveFlags::empty(), MAX_UNIT_FILE) {
            Ok(b) if !b.is_empty() => return Some(String::from_utf8_lossy(&b).into_owned()),
            Ok(_) => return None,
            Err(_) => {
                // Masked (a symlink to /dev/null, which need not exist inside the root)
                // stops the search, as it does for systemd; absent: the next directory.
                let masked = root
                    .open_at(d, OFlags::PATH | OFlags::DIRECTORY)
                    .is_ok_and(|dir| fsutil::is_masked(dir.as_fd(), unit));
                if masked {
                    return None;
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn finds_services_with_confext_dirs() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let mk = |p: &str| fs::create_dir_all(r.join(p.trim_start_matches('/'))).unwrap();
        mk("/etc/systemd/system/web.service.confext.d");
        mk("/usr/lib/systemd/system/db.service.confext.d");
        mk("/usr/lib/systemd/system/sock.socket.confext.d");
        mk("/usr/lib/systemd/system/bad name.service.confext.d");
        fs::write(r.join("etc/systemd/system/file.service.confext.d"), "").unwrap();
        fs::write(
            r.join("usr/lib/systemd/system/web.service"),
            "[Service]\nExecStart=/w\n",
        )
        .unwrap();
        fs::write(
            r.join("etc/systemd/system/web.service"),
            "[Service]\nExecStart=/etc-w\n",
        )
        .unwrap();
        let root = Root::open(r).unwrap();
        let u = units_with_confexts(&root);
        assert_eq!(
            u,
            [
                UnitWithConfexts {
                    unit: "db.service".into(),
                    text: None
                },
                UnitWithConfexts {
                    unit: "web.service".into(),
                    text: Some("[Service]\nExecStart=/etc-w\n".into())
                },
            ]
        );
    }
}
