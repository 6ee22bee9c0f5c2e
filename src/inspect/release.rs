//! extension-release lookup inside an extension and matching against the host
//! (`extension_release_validate`).
//!
//! Ports of systemd's `open_extension_release_at` (strict mode, `src/basic/os-util.c`),
//! `open_os_release_at` and `extension_release_validate` (`src/shared/extension-util.c`,
//! v258+: with host `ID_LIKE`).

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, OFlags, ResolveFlags};

use crate::format::class::{Class, Scope};
use crate::format::escape::{esc, escape};
use crate::format::name::{image_name_is_valid, release_base_name};
use crate::format::os_release::EnvFile;
use crate::inspect::fsutil::{self, ReadError, Root, MAX_TEXT_FILE};

/// What the host offers to match against (from the root's os-release).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIdentity {
    /// The os-release file these came from (host path, for messages).
    pub os_release_path: PathBuf,
    /// `ID=` (never empty).
    pub id: String,
    /// `ID_LIKE=` words.
    pub id_like: Vec<String>,
    /// `VERSION_ID=`.
    pub version_id: Option<String>,
    /// `SYSEXT_LEVEL=`.
    pub sysext_level: Option<String>,
    /// `CONFEXT_LEVEL=`.
    pub confext_level: Option<String>,
    /// systemd's name of the running architecture (`x86-64`); `None` if unknown.
    pub arch: Option<String>,
    /// `initrd` or `system`.
    pub scope: Scope,
}

pub use crate::options::OS_RELEASE_ENV;

/// Name of the xattr that relaxes the fallback name check (`user.extension-release.strict`).
pub const STRICT_XATTR: &str = "user.extension-release.strict";

/// systemd's `WHITESPACE` split (`strv_split(s, WHITESPACE)`): words separated by runs of
/// space, tab, `\n` or `\r`; no empty words.
fn split_ws(s: &str) -> impl Iterator<Item = &str> {
    s.split([' ', '\t', '\n', '\r']).filter(|w| !w.is_empty())
}

impl HostIdentity {
    /// Builds the identity from a parsed os-release.
    pub fn from_env(
        env: &EnvFile,
        path: PathBuf,
        arch: Option<String>,
        scope: Scope,
    ) -> Result<HostIdentity, OsReleaseError> {
        let Some(id) = env.get("ID") else {
            return Err(OsReleaseError::NoId { path });
        };
        Ok(HostIdentity {
            id: id.to_string(),
            id_like: env
                .get("ID_LIKE")
                .map(|s| split_ws(s).map(String::from).collect())
                .unwrap_or_default(),
            version_id: env.get("VERSION_ID").map(String::from),
            sysext_level: env.get("SYSEXT_LEVEL").map(String::from),
            confext_level: env.get("CONFEXT_LEVEL").map(String::from),
            arch,
            scope,
            os_release_path: path,
        })
    }

    /// Reads the root's os-release (`os_release`: `$SYSTEMD_OS_RELEASE` as the front-end
    /// read it, else `/etc/os-release`, else `/usr/lib/os-release`, inside the root),
    /// with the running kernel's architecture.
    pub fn load(
        root: &Root,
        scope: Scope,
        os_release: Option<&std::ffi::OsStr>,
    ) -> Result<HostIdentity, OsReleaseError> {
        load_with(
            root,
            scope,
            os_release.map(OsString::from),
            crate::format::arch::uname_architecture().map(String::from),
        )
    }

    /// The level for `class` (`SYSEXT_LEVEL` / `CONFEXT_LEVEL`).
    pub fn level(&self, class: Class) -> Option<&str> {
        match class {
            Class::Sysext => self.sysext_level.as_deref(),
            Class::Confext => self.confext_level.as_deref(),
        }
    }
}

/// [`HostIdentity::load`] with the environment override and the architecture passed in.
///
/// With an override, its result is final: a missing file is reported as a read error
/// naming that file (systemd returns ENOENT either way; the errno is the same).
fn load_with(
    root: &Root,
    scope: Scope,
    override_path: Option<OsString>,
    arch: Option<String>,
) -> Result<HostIdentity, OsReleaseError> {
    let read =
        |rel: &Path| fsutil::read_file_in(root.fd(), rel, ResolveFlags::empty(), MAX_TEXT_FILE);
    let (rel, data): (PathBuf, Vec<u8>) = match override_path {
        Some(p) => {
            let rel = PathBuf::from(p);
            match read(&rel) {
                Ok(d) => (rel, d),
                Err(source) => {
                    return Err(OsReleaseError::Read {
                        path: root.display_path(&rel),
                        source,
                    })
                }
            }
        }
        None => {
            let mut found = None;
            for cand in ["/etc/os-release", "/usr/lib/os-release"] {
                match read(Path::new(cand)) {
                    Ok(d) => {
                        found = Some((PathBuf::from(cand), d));
                        break;
                    }
                    Err(e) if e.is_not_found() => continue,
                    Err(source) => {
                        return Err(OsReleaseError::Read {
                            path: root.display_path(cand),
                            source,
                        })
                    }
                }
            }
            match found {
                Some(f) => f,
                None => {
                    return Err(OsReleaseError::Missing {
                        root: root.path().to_path_buf(),
                    })
                }
            }
        }
    };
    let path = root.display_path(&rel);
    let env = EnvFile::parse_keys(&data, |k| HOST_KEYS.contains(&k));
    drop(data);
    let env = env.map_err(|source| OsReleaseError::Parse {
        path: path.clone(),
        source,
    })?;
    HostIdentity::from_env(&env, path, arch, scope)
}

/// systemd's decision on one extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Compatible: it will be merged.
    Match,
    /// Skipped, with a reason a person can read ("ID=fedora does not match host ID=debian").
    Mismatch(String),
    /// Cannot be used at all: a disk image that is broken or that the image policy
    /// refuses, with the error (the file and the reason). A merge fails on it, as in
    /// systemd; only `plan`, `--dry-run` and listing record it and go on.
    Unusable(String),
}

/// The extension-release file found in an extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseFile {
    /// Path relative to the extension root (`usr/lib/extension-release.d/extension-release.foo`).
    pub path: PathBuf,
    /// Its contents: the assignments of the keys in [`RELEASE_KEYS`] (all of them were
    /// checked; `is_empty` is true only for a file without any assignment).
    pub env: EnvFile,
    /// The file's identity as read (the exact `extension-release.NAME` only), for the
    /// quick stamp of a merge ([`crate::inspect::stamp`]).
    pub id: Option<String>,
}

/// Why no usable extension-release file was found.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// The image name is not valid.
    #[error("invalid image name \"{}\"", esc(.0))]
    InvalidName(String),
    /// Neither the exact file nor an accepted fallback exists.
    #[error("no {0} found")]
    NotFound(String),
    /// Two fallback files qualify (systemd: ENOTUNIQ).
    #[error("more than one extension-release file matches: {} and {}", esc(.0), esc(.1))]
    NotUnique(PathBuf, PathBuf),
    /// Reading failed.
    #[error("{}: {source}", esc(.path))]
    Read {
        /// File (relative to the extension root).
        path: PathBuf,
        /// Why.
        source: crate::inspect::fsutil::ReadError,
    },
    /// Parsing failed.
    #[error("{}: {source}", esc(.path))]
    Parse {
        /// File (relative to the extension root).
        path: PathBuf,
        /// Why.
        source: crate::format::os_release::EnvError,
    },
}

/// systemd's `parse_boolean`.
fn parse_boolean(v: &str) -> Option<bool> {
    const YES: [&str; 6] = ["1", "yes", "y", "true", "t", "on"];
    const NO: [&str; 6] = ["0", "no", "n", "false", "f", "off"];
    if YES.iter().any(|y| v.eq_ignore_ascii_case(y)) {
        Some(true)
    } else if NO.iter().any(|n| v.eq_ignore_ascii_case(n)) {
        Some(false)
    } else {
        None
    }
}

/// `extension_release_strict_xattr_value() == 0`: the file carries
/// `user.extension-release.strict` with a value that parses as boolean false. Absent,
/// unreadable, unparsable or true → `false` (the file is skipped).
fn strict_xattr_is_false(fd: BorrowedFd<'_>) -> bool {
    let mut buf = [0u8; 64];
    let Ok(n) = rustix::fs::fgetxattr(fd, STRICT_XATTR, &mut buf[..]) else {
        return false;
    };
    // systemd reads the value as a C string: it ends at the first NUL.
    let v = &buf[..n];
    let v = v.split(|&b| b == 0).next().unwrap_or(v);
    std::str::from_utf8(v)
        .ok()
        .and_then(parse_boolean)
        .is_some_and(|b| !b)
}

/// The extension-release keys anything here reads (matching, reload, reports): the only
/// ones kept when a release file is parsed, so its memory is about the file's size.
pub const RELEASE_KEYS: &[&str] = &[
    "ID",
    "VERSION_ID",
    "SYSEXT_LEVEL",
    "CONFEXT_LEVEL",
    "SYSEXT_SCOPE",
    "CONFEXT_SCOPE",
    "ARCHITECTURE",
    "EXTENSION_RELOAD_MANAGER",
    "EXTENSION_RESTART_UNITS",
    "EXTENSION_RELOAD_OR_RESTART_UNITS",
];

/// The extension-release keys listing units for the service manager to act on after a
/// merge, refresh or unmerge (systemd ≥ 262): restart, and reload-or-restart.
pub const UNIT_KEYS: [&str; 2] = [
    "EXTENSION_RESTART_UNITS",
    "EXTENSION_RELOAD_OR_RESTART_UNITS",
];

/// The unit names of a `UNIT_KEYS` value: whitespace-separated (systemd-sysext(8):
/// `EXTENSION_RESTART_UNITS="my.service other.service"`), not yet validated.
pub fn unit_list(value: &str) -> impl Iterator<Item = &str> {
    value.split_ascii_whitespace()
}

/// The os-release keys [`HostIdentity::from_env`] reads.
const HOST_KEYS: &[&str] = &[
    "ID",
    "ID_LIKE",
    "VERSION_ID",
    "SYSEXT_LEVEL",
    "CONFEXT_LEVEL",
];

fn parse_release(path: PathBuf, data: &[u8]) -> Result<ReleaseFile, ReleaseError> {
    match EnvFile::parse_keys(data, |k| RELEASE_KEYS.contains(&k)) {
        Ok(env) => Ok(ReleaseFile {
            path,
            env,
            id: None,
        }),
        Err(source) => Err(ReleaseError::Parse { path, source }),
    }
}

/// Looks up `extension-release.NAME` (exact, then the strict fallback scan) inside the
/// extension whose root directory is `ext_root`.
///
/// Differences from systemd, both on paths where systemd misbehaves or fails anyway:
/// the exact file must be a regular file (systemd would block on a FIFO there or fail
/// reading a directory; we return [`ReleaseError::Read`] without blocking), and no file
/// larger than [`MAX_TEXT_FILE`] is read. Fallback candidates are examined in name order
/// (systemd uses readdir order; the outcome is the same, only which two files a
/// [`ReleaseError::NotUnique`] names can differ). As in systemd, a fallback candidate that
/// cannot be opened (e.g. a symlink reported as `DT_UNKNOWN`, refused by
/// `RESOLVE_NO_SYMLINKS`) fails the lookup, while one that opens but is not a regular file
/// is skipped.
pub fn find_extension_release(
    ext_root: BorrowedFd<'_>,
    name: &str,
    class: Class,
) -> Result<ReleaseFile, ReleaseError> {
    if !image_name_is_valid(name) {
        return Err(ReleaseError::InvalidName(name.to_string()));
    }
    let dir = Path::new(class.release_dir());
    let exact = dir.join(format!("extension-release.{name}"));
    match fsutil::read_file_in_stat(ext_root, &exact, ResolveFlags::empty(), MAX_TEXT_FILE) {
        Ok((data, st)) => {
            let mut rel = parse_release(exact, &data)?;
            rel.id = Some(crate::inspect::stamp::file_id(&st));
            return Ok(rel);
        }
        Err(e) if e.is_not_found() => {}
        Err(source) => {
            return Err(ReleaseError::Read {
                path: exact,
                source,
            })
        }
    }

    let not_found = || ReleaseError::NotFound(escape(&exact));
    let read_err = |path: PathBuf, e: io::Error| ReleaseError::Read {
        path,
        source: ReadError::Io(e),
    };

    let dirfd = match fsutil::open_in(
        ext_root,
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY,
        ResolveFlags::empty(),
    ) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_found()),
        Err(e) => return Err(read_err(dir.to_path_buf(), e)),
    };

    let mut names: Vec<String> = Vec::new();
    let entries =
        rustix::fs::Dir::read_from(&dirfd).map_err(|e| read_err(dir.to_path_buf(), e.into()))?;
    for entry in entries {
        let entry = entry.map_err(|e| read_err(dir.to_path_buf(), e.into()))?;
        if !matches!(entry.file_type(), FileType::RegularFile | FileType::Unknown) {
            continue;
        }
        let Ok(fname) = entry.file_name().to_str() else {
            // Not UTF-8, so the image-name part cannot be valid either.
            continue;
        };
        let Some(r) = fname.strip_prefix("extension-release.") else {
            continue;
        };
        if !image_name_is_valid(r) {
            continue;
        }
        names.push(fname.to_string());
    }
    names.sort();

    let base = release_base_name(name);
    let mut accepted: Option<(PathBuf, OwnedFd)> = None;
    for fname in names {
        let rel = dir.join(&fname);
        let fd = fsutil::open_in(
            dirfd.as_fd(),
            Path::new(&fname),
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
            ResolveFlags::NO_SYMLINKS,
        )
        .map_err(|e| read_err(rel.clone(), e))?;
        // "Really ensure it is a regular file after we open it": others are skipped.
        let st = rustix::fs::fstat(&fd).map_err(|e| read_err(rel.clone(), e.into()))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            continue;
        }
        let r = &fname["extension-release.".len()..];
        if r != base && !strict_xattr_is_false(fd.as_fd()) {
            continue;
        }
        if let Some((first, _)) = accepted {
            return Err(ReleaseError::NotUnique(first, rel));
        }
        accepted = Some((rel, fd));
    }

    let Some((rel, fd)) = accepted else {
        return Err(not_found());
    };
    match fsutil::read_fd_bounded(fd, MAX_TEXT_FILE) {
        Ok(data) => parse_release(rel, &data),
        Err(source) => Err(ReleaseError::Read { path: rel, source }),
    }
}

/// `extension_release_validate`: the first failing check decides.
pub fn validate(_name: &str, class: Class, host: &HostIdentity, ext: &EnvFile) -> Verdict {
    // 1. No release data at all.
    if ext.is_empty() {
        return Verdict::Mismatch("extension-release file has no assignments".into());
    }

    // 2. Scope. A present-but-empty value allows nothing.
    let scope_key = class.scope_key();
    let host_scope = host.scope.as_str();
    match ext.get_raw(scope_key) {
        _ if host.scope == Scope::Any => {}
        Some(v) => {
            if !split_ws(v).any(|w| w == host_scope) {
                return Verdict::Mismatch(format!(
                    "{scope_key}={} does not include host scope '{host_scope}'",
                    esc(v)
                ));
            }
        }
        None => {
            if !["system", "portable"].contains(&host_scope) {
                return Verdict::Mismatch(format!(
                    "no {scope_key}= (default: system portable) does not include host scope '{host_scope}'"
                ));
            }
        }
    }

    // 3. Architecture.
    if let Some(a) = ext.get("ARCHITECTURE") {
        if a != "_any" && host.arch.as_deref() != Some(a) {
            return Verdict::Mismatch(format!(
                "ARCHITECTURE={} does not match host architecture {}",
                esc(a),
                esc(host.arch.as_deref().unwrap_or("(unknown)"))
            ));
        }
    }

    // 4. ID.
    let Some(id) = ext.get("ID") else {
        return Verdict::Mismatch("extension-release has no ID=".into());
    };
    // 4a. `_any`: no version checks.
    if id == "_any" {
        return Verdict::Match;
    }
    // 5. ID or host ID_LIKE.
    if id != host.id && !host.id_like.iter().any(|l| l == id) {
        let mut s = format!("ID={} does not match host ID={}", esc(id), esc(&host.id));
        if !host.id_like.is_empty() {
            s.push_str(&format!(" or ID_LIKE={}", esc(&host.id_like.join(" "))));
        }
        return Verdict::Mismatch(s);
    }

    // 6. Rolling release.
    let host_version = host.version_id.as_deref().filter(|v| !v.is_empty());
    let host_level = host.level(class).filter(|v| !v.is_empty());
    if host_version.is_none() && host_level.is_none() {
        return Verdict::Match;
    }

    // 7. Levels, when both sides have one.
    let level_key = class.level_key();
    if let (Some(hl), Some(el)) = (host_level, ext.get(level_key)) {
        if hl == el {
            return Verdict::Match;
        }
        return Verdict::Mismatch(format!(
            "{level_key}={} does not match host {level_key}={}",
            esc(el),
            esc(hl)
        ));
    }

    // 8. VERSION_ID.
    if let Some(hv) = host_version {
        return match ext.get("VERSION_ID") {
            None => Verdict::Mismatch(format!("no VERSION_ID= (host has VERSION_ID={})", esc(hv))),
            Some(ev) if ev == hv => Verdict::Match,
            Some(ev) => Verdict::Mismatch(format!(
                "VERSION_ID={} does not match host VERSION_ID={}",
                esc(ev),
                esc(hv)
            )),
        };
    }

    // 9. Host LEVEL set, no host VERSION_ID, no extension LEVEL.
    Verdict::Match
}

/// Errors reading the host's os-release.
#[derive(Debug, thiserror::Error)]
pub enum OsReleaseError {
    /// Neither `/etc/os-release` nor `/usr/lib/os-release` exists in the root.
    #[error("{}: no os-release found (tried /etc/os-release, /usr/lib/os-release)", esc(.root))]
    Missing {
        /// The root searched.
        root: PathBuf,
    },
    /// Reading failed.
    #[error("{}: {source}", esc(.path))]
    Read {
        /// File.
        path: PathBuf,
        /// Why.
        source: fsutil::ReadError,
    },
    /// Parsing failed.
    #[error("{}: {source}", esc(.path))]
    Parse {
        /// File.
        path: PathBuf,
        /// Why.
        source: crate::format::os_release::EnvError,
    },
    /// `ID=` missing or empty.
    #[error("{}: no ID= field, cannot match extensions against it", esc(.path))]
    NoId {
        /// File.
        path: PathBuf,
    },
}

impl OsReleaseError {
    /// errno for the C ABI.
    pub fn errno(&self) -> i32 {
        match self {
            OsReleaseError::Missing { .. } => libc::ENOENT,
            OsReleaseError::Read { source, .. } => source.errno(),
            OsReleaseError::Parse { .. } | OsReleaseError::NoId { .. } => libc::EINVAL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn env(text: &str) -> EnvFile {
        EnvFile::parse(text.as_bytes()).unwrap()
    }

    fn host(os_release: &str, arch: Option<&str>, scope: Scope) -> HostIdentity {
        HostIdentity::from_env(
            &env(os_release),
            PathBuf::from("/etc/os-release"),
            arch.map(String::from),
            scope,
        )
        .unwrap()
    }

    const DEB: &str = "ID=debian\nVERSION_ID=12\n";
    const X86: Option<&str> = Some("x86-64");
    const S: Class = Class::Sysext;
    const C: Class = Class::Confext;
    const SYS: Scope = Scope::System;
    const INITRD: Scope = Scope::Initrd;

    /// (description, class, host os-release, host arch, host scope, extension-release,
    /// expected: `None` = match, `Some(reason)` = mismatch).
    type MatchCase = (
        &'static str,
        Class,
        &'static str,
        Option<&'static str>,
        Scope,
        &'static str,
        Option<&'static str>,
    );

    const MATCH_CASES: &[MatchCase] = &[
        // Step 1: no assignments.
        (
            "1 empty file",
            S,
            DEB,
            X86,
            SYS,
            "",
            Some("extension-release file has no assignments"),
        ),
        (
            "1 only comments",
            S,
            DEB,
            X86,
            SYS,
            "# ID=debian\n",
            Some("extension-release file has no assignments"),
        ),
        (
            "1 only a dropped line",
            S,
            DEB,
            X86,
            SYS,
            "ID\n",
            Some("extension-release file has no assignments"),
        ),
        (
            "1 an empty assignment counts",
            S,
            DEB,
            X86,
            SYS,
            "A=\n",
            Some("extension-release has no ID="),
        ),
        // Step 2: scope.
        (
            "2 scope absent, system",
            S,
            DEB,
            X86,
            SYS,
            "ID=debian\nVERSION_ID=12",
            None,
        ),
        (
            "2 scope absent, initrd",
            S,
            DEB,
            X86,
            INITRD,
            "ID=debian\nVERSION_ID=12",
            Some(
                "no SYSEXT_SCOPE= (default: system portable) does not include host scope 'initrd'",
            ),
        ),
        (
            "2 scope portable only",
            S,
            DEB,
            X86,
            SYS,
            "SYSEXT_SCOPE=portable\nID=debian\nVERSION_ID=12",
            Some("SYSEXT_SCOPE=portable does not include host scope 'system'"),
        ),
        (
            "2 scope present but empty",
            S,
            DEB,
            X86,
            SYS,
            "SYSEXT_SCOPE=\nID=debian\nVERSION_ID=12",
            Some("SYSEXT_SCOPE= does not include host scope 'system'"),
        ),
        (
            "2 scope empty quoted",
            S,
            DEB,
            X86,
            INITRD,
            "SYSEXT_SCOPE=\"\"\nID=debian\nVERSION_ID=12",
            Some("SYSEXT_SCOPE= does not include host scope 'initrd'"),
        ),
        (
            "2 scope initrd in initrd",
            S,
            DEB,
            X86,
            INITRD,
            "SYSEXT_SCOPE=initrd\nID=debian\nVERSION_ID=12",
            None,
        ),
        (
            "2 scope initrd on system",
            S,
            DEB,
            X86,
            SYS,
            "SYSEXT_SCOPE=initrd\nID=debian\nVERSION_ID=12",
            Some("SYSEXT_SCOPE=initrd does not include host scope 'system'"),
        ),
        (
            "2 scope multiple words",
            S,
            DEB,
            X86,
            SYS,
            "SYSEXT_SCOPE=\"initrd  system\tportable\"\nID=debian\nVERSION_ID=12",
            None,
        ),
        (
            "2 scope words are exact",
            S,
            DEB,
            X86,
            SYS,
            "SYSEXT_SCOPE=\"systemd System\"\nID=debian\nVERSION_ID=12",
            Some("SYSEXT_SCOPE=systemd System does not include host scope 'system'"),
        ),
        (
            "2 scope before arch",
            S,
            DEB,
            X86,
            SYS,
            "SYSEXT_SCOPE=portable\nARCHITECTURE=arm64\nID=debian",
            Some("SYSEXT_SCOPE=portable does not include host scope 'system'"),
        ),
        // Step 3: architecture.
        (
            "3 arch differs",
            S,
            DEB,
            X86,
            SYS,
            "ID=debian\nVERSION_ID=12\nARCHITECTURE=arm64",
            Some("ARCHITECTURE=arm64 does not match host architecture x86-64"),
        ),
        (
            "3 arch equal",
            S,
            DEB,
            X86,
            SYS,
            "ID=debian\nVERSION_ID=12\nARCHITECTURE=x86-64",
            None,
        ),
        (
            "3 arch uname spelling is not systemd's",
            S,
            DEB,
            X86,
            SYS,
            "ID=debian\nVERSION_ID=12\nARCHITECTURE=x86_64",
            Some("ARCHITECTURE=x86_64 does not match host architecture x86-64"),
        ),
        (
            "3 arch case-sensitive",
            S,
            DEB,
            X86,
            SYS,
            "ID=debian\nVERSION_ID=12\nARCHITECTURE=X86-64",
            Some("ARCHITECTURE=X86-64 does not match host architecture x86-64"),
        ),
        (
            "3 arch _any",
            S,
            DEB,
            X86,
            SYS,
            "ID=debian\nVERSION_ID=12\nARCHITECTURE=_any",
            None,
        ),
        (
            "3 arch empty",
            S,
            DEB,
            X86,
            SYS,
            "ID=debian\nVERSION_ID=12\nARCHITECTURE=",
            None,
        ),
        (
            "3 unknown host arch, arch set",
            S,
            DEB,
            None,
            SYS,
            "ID=debian\nVERSION_ID=12\nARCHITECTURE=x86-64",
            Some("ARCHITECTURE=x86-64 does not match host architecture (unknown)"),
        ),
        (
            "3 unknown host arch, _any",
            S,
            DEB,
            None,
            SYS,
            "ID=debian\nVERSION_ID=12\nARCHITECTURE=_any",
            None,
        ),
        (
            "3 unknown host arch, none set",
            S,
            DEB,
            None,
            SYS,
            "ID=debian\nVERSION_ID=12",
            None,
        ),
        // Step 4 / 4a: ID.
        (
            "4 no ID",
            S,
            DEB,
            X86,
            SYS,
            "VERSION_ID=12",
            Some("extension-release has no ID="),
        ),
        (
            "4 empty ID",
            S,
            DEB,
            X86,
            SYS,
            "ID=\nVERSION_ID=12",
            Some("extension-release has no ID="),
        ),
        (
            "4a ID=_any skips versions",
            S,
            DEB,
            X86,
            SYS,
            "ID=_any\nVERSION_ID=99\nSYSEXT_LEVEL=7",
            None,
        ),
        (
            "4a ID=_any with level host",
            S,
            "ID=debian\nSYSEXT_LEVEL=1",
            X86,
            SYS,
            "ID=_any\nSYSEXT_LEVEL=2",
            None,
        ),
        (
            "4a ID=_any still checks arch",
            S,
            DEB,
            X86,
            SYS,
            "ID=_any\nARCHITECTURE=arm64",
            Some("ARCHITECTURE=arm64 does not match host architecture x86-64"),
        ),
        (
            "4a ID=_any still checks scope",
            S,
            DEB,
            X86,
            INITRD,
            "ID=_any",
            Some(
                "no SYSEXT_SCOPE= (default: system portable) does not include host scope 'initrd'",
            ),
        ),
        // Step 5: ID / ID_LIKE.
        (
            "5 ID differs",
            S,
            DEB,
            X86,
            SYS,
            "ID=fedora\nVERSION_ID=12",
            Some("ID=fedora does not match host ID=debian"),
        ),
        (
            "5 ID case-sensitive",
            S,
            DEB,
            X86,
            SYS,
            "ID=Debian\nVERSION_ID=12",
            Some("ID=Debian does not match host ID=debian"),
        ),
        (
            "5 ID in host ID_LIKE",
            S,
            "ID=mint\nID_LIKE=\"ubuntu debian\"\nVERSION_ID=12",
            X86,
            SYS,
            "ID=debian\nVERSION_ID=12",
            None,
        ),
        (
            "5 ID in host ID_LIKE (first word)",
            S,
            "ID=mint\nID_LIKE=\"ubuntu debian\"\nVERSION_ID=12",
            X86,
            SYS,
            "ID=ubuntu\nVERSION_ID=12",
            None,
        ),
        (
            "5 ID not in host ID_LIKE",
            S,
            "ID=mint\nID_LIKE=\"ubuntu debian\"\nVERSION_ID=12",
            X86,
            SYS,
            "ID=fedora\nVERSION_ID=12",
            Some("ID=fedora does not match host ID=mint or ID_LIKE=ubuntu debian"),
        ),
        (
            "5 ID_LIKE words are exact",
            S,
            "ID=mint\nID_LIKE=ubuntu-like\nVERSION_ID=12",
            X86,
            SYS,
            "ID=ubuntu\nVERSION_ID=12",
            Some("ID=ubuntu does not match host ID=mint or ID_LIKE=ubuntu-like"),
        ),
        (
            "5 extension's own ID_LIKE ignored",
            S,
            DEB,
            X86,
            SYS,
            "ID=fedora\nID_LIKE=debian\nVERSION_ID=12",
            Some("ID=fedora does not match host ID=debian"),
        ),
        (
            "5 ID_LIKE match still checks version",
            S,
            "ID=mint\nID_LIKE=debian\nVERSION_ID=21",
            X86,
            SYS,
            "ID=debian\nVERSION_ID=12",
            Some("VERSION_ID=12 does not match host VERSION_ID=21"),
        ),
        // Step 6: rolling release.
        (
            "6 rolling host, bare extension",
            S,
            "ID=arch",
            X86,
            SYS,
            "ID=arch",
            None,
        ),
        (
            "6 rolling host, extension has versions",
            S,
            "ID=arch",
            X86,
            SYS,
            "ID=arch\nVERSION_ID=5\nSYSEXT_LEVEL=3",
            None,
        ),
        (
            "6 host empty VERSION_ID is rolling",
            S,
            "ID=arch\nVERSION_ID=\nSYSEXT_LEVEL=\"\"",
            X86,
            SYS,
            "ID=arch\nVERSION_ID=1",
            None,
        ),
        // Step 7: levels.
        (
            "7 levels equal, versions differ",
            S,
            "ID=debian\nVERSION_ID=12\nSYSEXT_LEVEL=1",
            X86,
            SYS,
            "ID=debian\nVERSION_ID=11\nSYSEXT_LEVEL=1",
            None,
        ),
        (
            "7 levels differ, versions equal",
            S,
            "ID=debian\nVERSION_ID=12\nSYSEXT_LEVEL=1",
            X86,
            SYS,
            "ID=debian\nVERSION_ID=12\nSYSEXT_LEVEL=2",
            Some("SYSEXT_LEVEL=2 does not match host SYSEXT_LEVEL=1"),
        ),
        (
            "7 levels compared as strings",
            S,
            "ID=debian\nSYSEXT_LEVEL=1",
            X86,
            SYS,
            "ID=debian\nSYSEXT_LEVEL=1.0",
            Some("SYSEXT_LEVEL=1.0 does not match host SYSEXT_LEVEL=1"),
        ),
        (
            "7 levels, extension without VERSION_ID",
            S,
            "ID=debian\nVERSION_ID=12\nSYSEXT_LEVEL=1",
            X86,
            SYS,
            "ID=debian\nSYSEXT_LEVEL=1",
            None,
        ),
        // Step 8: VERSION_ID.
        (
            "8 no host level, versions equal",
            S,
            DEB,
            X86,
            SYS,
            "ID=debian\nVERSION_ID=12",
            None,
        ),
        (
            "8 no host level, versions differ",
            S,
            DEB,
            X86,
            SYS,
            "ID=debian\nVERSION_ID=11",
            Some("VERSION_ID=11 does not match host VERSION_ID=12"),
        ),
        (
            "8 exact string comparison",
            S,
            DEB,
            X86,
            SYS,
            "ID=debian\nVERSION_ID=12.0",
            Some("VERSION_ID=12.0 does not match host VERSION_ID=12"),
        ),
        (
            "8 extension without VERSION_ID",
            S,
            DEB,
            X86,
            SYS,
            "ID=debian",
            Some("no VERSION_ID= (host has VERSION_ID=12)"),
        ),
        (
            "8 extension empty VERSION_ID",
            S,
            DEB,
            X86,
            SYS,
            "ID=debian\nVERSION_ID=",
            Some("no VERSION_ID= (host has VERSION_ID=12)"),
        ),
        (
            "8 extension level but host has none",
            S,
            DEB,
            X86,
            SYS,
            "ID=debian\nVERSION_ID=11\nSYSEXT_LEVEL=1",
            Some("VERSION_ID=11 does not match host VERSION_ID=12"),
        ),
        (
            "8 host level, extension none: version decides",
            S,
            "ID=debian\nVERSION_ID=12\nSYSEXT_LEVEL=1",
            X86,
            SYS,
            "ID=debian\nVERSION_ID=11",
            Some("VERSION_ID=11 does not match host VERSION_ID=12"),
        ),
        (
            "8 host level, extension none, versions equal",
            S,
            "ID=debian\nVERSION_ID=12\nSYSEXT_LEVEL=1",
            X86,
            SYS,
            "ID=debian\nVERSION_ID=12",
            None,
        ),
        // Step 9.
        (
            "9 host level only, extension no level",
            S,
            "ID=debian\nSYSEXT_LEVEL=1",
            X86,
            SYS,
            "ID=debian",
            None,
        ),
        (
            "9 host level only, extension VERSION_ID ignored",
            S,
            "ID=debian\nSYSEXT_LEVEL=1",
            X86,
            SYS,
            "ID=debian\nVERSION_ID=3",
            None,
        ),
        // Class-specific keys.
        (
            "confext uses CONFEXT_LEVEL",
            C,
            "ID=debian\nVERSION_ID=12\nSYSEXT_LEVEL=1\nCONFEXT_LEVEL=1",
            X86,
            SYS,
            "ID=debian\nSYSEXT_LEVEL=1\nCONFEXT_LEVEL=2",
            Some("CONFEXT_LEVEL=2 does not match host CONFEXT_LEVEL=1"),
        ),
        (
            "confext ignores SYSEXT_LEVEL",
            C,
            "ID=debian\nVERSION_ID=12\nSYSEXT_LEVEL=1",
            X86,
            SYS,
            "ID=debian\nSYSEXT_LEVEL=1",
            Some("no VERSION_ID= (host has VERSION_ID=12)"),
        ),
        (
            "confext host with only SYSEXT_LEVEL is rolling",
            C,
            "ID=debian\nSYSEXT_LEVEL=1",
            X86,
            SYS,
            "ID=debian\nVERSION_ID=7",
            None,
        ),
        (
            "confext ignores SYSEXT_SCOPE",
            C,
            DEB,
            X86,
            SYS,
            "SYSEXT_SCOPE=portable\nID=debian\nVERSION_ID=12",
            None,
        ),
        (
            "confext uses CONFEXT_SCOPE",
            C,
            DEB,
            X86,
            SYS,
            "CONFEXT_SCOPE=initrd\nID=debian\nVERSION_ID=12",
            Some("CONFEXT_SCOPE=initrd does not include host scope 'system'"),
        ),
        (
            "confext scope absent in initrd",
            C,
            DEB,
            X86,
            INITRD,
            "ID=debian\nVERSION_ID=12",
            Some(
                "no CONFEXT_SCOPE= (default: system portable) does not include host scope 'initrd'",
            ),
        ),
        (
            "sysext ignores CONFEXT_SCOPE",
            S,
            DEB,
            X86,
            SYS,
            "CONFEXT_SCOPE=initrd\nID=debian\nVERSION_ID=12",
            None,
        ),
        (
            "sysext ignores CONFEXT_LEVEL",
            S,
            "ID=debian\nVERSION_ID=12\nCONFEXT_LEVEL=1",
            X86,
            SYS,
            "ID=debian\nVERSION_ID=13\nCONFEXT_LEVEL=1",
            Some("VERSION_ID=13 does not match host VERSION_ID=12"),
        ),
        // Duplicate keys: last value counts.
        (
            "duplicate ID, last wins",
            S,
            DEB,
            X86,
            SYS,
            "ID=fedora\nVERSION_ID=12\nID=debian",
            None,
        ),
    ];

    #[test]
    fn matching_table() {
        for &(desc, class, host_text, arch, scope, ext_text, want) in MATCH_CASES {
            let h = host(host_text, arch, scope);
            let got = validate("foo", class, &h, &env(ext_text));
            let want = match want {
                None => Verdict::Match,
                Some(r) => Verdict::Mismatch(r.to_string()),
            };
            assert_eq!(got, want, "{desc}");
        }
    }

    #[test]
    fn host_from_env() {
        let h = host(
            "ID=mint\nID_LIKE=\" ubuntu\tdebian \"\nVERSION_ID=\nSYSEXT_LEVEL=1\nCONFEXT_LEVEL=2",
            X86,
            INITRD,
        );
        assert_eq!(h.id, "mint");
        assert_eq!(h.id_like, vec!["ubuntu", "debian"]);
        assert_eq!(h.version_id, None);
        assert_eq!(h.level(S), Some("1"));
        assert_eq!(h.level(C), Some("2"));
        assert_eq!(h.scope, INITRD);
        assert_eq!(h.arch.as_deref(), Some("x86-64"));
        for text in ["VERSION_ID=1", "ID=\nVERSION_ID=1", "ID=\"\""] {
            let e = HostIdentity::from_env(&env(text), PathBuf::from("/x"), None, SYS).unwrap_err();
            assert!(
                matches!(e, OsReleaseError::NoId { ref path } if path == Path::new("/x")),
                "{text}"
            );
        }
    }

    // ---- extension-release lookup ----

    const SYSDIR: &str = "usr/lib/extension-release.d";

    fn mkext() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("ext").join(SYSDIR)).unwrap();
        t
    }

    fn ext_path(t: &tempfile::TempDir) -> PathBuf {
        t.path().join("ext")
    }

    fn write_rel(t: &tempfile::TempDir, file: &str, text: &str) -> PathBuf {
        let p = ext_path(t).join(SYSDIR).join(file);
        fs::write(&p, text).unwrap();
        p
    }

    fn find(t: &tempfile::TempDir, name: &str, class: Class) -> Result<ReleaseFile, ReleaseError> {
        let root = Root::open(ext_path(t)).unwrap();
        find_extension_release(root.fd(), name, class)
    }

    fn rel(file: &str) -> PathBuf {
        Path::new(SYSDIR).join(file)
    }

    /// Sets the strict xattr; false (with a message) when the filesystem refuses.
    fn set_strict(p: &Path, value: &str) -> bool {
        match rustix::fs::setxattr(
            p,
            STRICT_XATTR,
            value.as_bytes(),
            rustix::fs::XattrFlags::empty(),
        ) {
            Ok(()) => true,
            Err(e) => {
                eprintln!(
                    "skipping xattr case: setxattr on {} failed: {e}",
                    p.display()
                );
                false
            }
        }
    }

    #[test]
    fn exact_file() {
        let t = mkext();
        write_rel(&t, "extension-release.foo", "ID=debian\n");
        let r = find(&t, "foo", S).unwrap();
        assert_eq!(r.path, rel("extension-release.foo"));
        assert_eq!(r.env.get("ID"), Some("debian"));
    }

    #[test]
    fn exact_confext_and_class_separation() {
        let t = mkext();
        write_rel(&t, "extension-release.foo", "ID=debian\n");
        let e = find(&t, "foo", C).unwrap_err();
        assert!(
            matches!(e, ReleaseError::NotFound(ref s) if s == "etc/extension-release.d/extension-release.foo"),
            "{e}"
        );
        fs::create_dir_all(ext_path(&t).join("etc/extension-release.d")).unwrap();
        fs::write(
            ext_path(&t).join("etc/extension-release.d/extension-release.foo"),
            "ID=c\n",
        )
        .unwrap();
        let r = find(&t, "foo", C).unwrap();
        assert_eq!(
            r.path,
            Path::new("etc/extension-release.d/extension-release.foo")
        );
        assert_eq!(r.env.get("ID"), Some("c"));
    }

    #[test]
    fn exact_wins_over_fallback() {
        let t = mkext();
        write_rel(&t, "extension-release.foo_1", "ID=exact\n");
        write_rel(&t, "extension-release.foo", "ID=base\n");
        let r = find(&t, "foo_1", S).unwrap();
        assert_eq!(r.env.get("ID"), Some("exact"));
    }

    #[test]
    fn exact_symlink_resolves_inside_extension() {
        let t = mkext();
        let ext = ext_path(&t);
        fs::create_dir_all(ext.join("etc")).unwrap();
        fs::write(ext.join("x"), "ID=inside\n").unwrap();
        fs::write(t.path().join("x"), "ID=outside\n").unwrap();
        symlink("/etc/../x", ext.join(SYSDIR).join("extension-release.foo")).unwrap();
        let r = find(&t, "foo", S).unwrap();
        assert_eq!(r.env.get("ID"), Some("inside"));
        // An absolute link to a file that exists only outside the extension: not found.
        let outside = t.path().join("only-outside");
        fs::write(&outside, "ID=outside\n").unwrap();
        symlink(&outside, ext.join(SYSDIR).join("extension-release.bar")).unwrap();
        let e = find(&t, "bar", S).unwrap_err();
        assert!(matches!(e, ReleaseError::NotFound(_)), "{e}");
    }

    #[test]
    fn exact_fifo_is_refused_without_blocking() {
        let t = mkext();
        let p = ext_path(&t).join(SYSDIR).join("extension-release.foo");
        rustix::fs::mkfifoat(rustix::fs::CWD, &p, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        let e = find(&t, "foo", S).unwrap_err();
        match e {
            ReleaseError::Read {
                path,
                source: ReadError::NotRegular("fifo"),
            } => {
                assert_eq!(path, rel("extension-release.foo"))
            }
            e => panic!("unexpected {e:?}"),
        }
    }

    #[test]
    fn exact_directory_is_an_error() {
        let t = mkext();
        fs::create_dir(ext_path(&t).join(SYSDIR).join("extension-release.foo")).unwrap();
        // Even with an acceptable fallback present: only ENOENT falls back.
        write_rel(&t, "extension-release.fo", "ID=x\n");
        let e = find(&t, "foo", S).unwrap_err();
        assert!(
            matches!(
                e,
                ReleaseError::Read {
                    source: ReadError::NotRegular("directory"),
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn exact_parse_error() {
        let t = mkext();
        write_rel(
            &t,
            "extension-release.foo",
            "ID=debian\nVERSION_ID=\u{fffe}\n",
        );
        let e = find(&t, "foo", S).unwrap_err();
        match e {
            ReleaseError::Parse { path, source } => {
                assert_eq!(path, rel("extension-release.foo"));
                assert_eq!(source.line, 2);
            }
            e => panic!("unexpected {e:?}"),
        }
    }

    #[test]
    fn exact_huge_file() {
        let t = mkext();
        let p = write_rel(&t, "extension-release.foo", "ID=x\n");
        fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(MAX_TEXT_FILE + 1)
            .unwrap();
        let e = find(&t, "foo", S).unwrap_err();
        assert!(
            matches!(
                e,
                ReleaseError::Read {
                    source: ReadError::TooLarge { .. },
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn fallback_huge_file() {
        let t = mkext();
        let p = write_rel(&t, "extension-release.foo", "ID=x\n");
        fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(MAX_TEXT_FILE + 1)
            .unwrap();
        let e = find(&t, "foo_2", S).unwrap_err();
        assert!(
            matches!(
                e,
                ReleaseError::Read {
                    source: ReadError::TooLarge { .. },
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn fallback_by_base_name() {
        // (image name, files present, expected file or None for NotFound)
        let cases: &[(&str, &[&str], Option<&str>)] = &[
            (
                "foo_1.2_x86-64",
                &["extension-release.foo"],
                Some("extension-release.foo"),
            ),
            (
                "foo+3",
                &["extension-release.foo"],
                Some("extension-release.foo"),
            ),
            (
                "foo.sysext.raw",
                &["extension-release.foo"],
                Some("extension-release.foo"),
            ),
            ("foo_1.2", &["extension-release.bar"], None),
            ("foo_1.2", &["extension-release.foo_1"], None),
            (
                "foo_1.2",
                &["extension-release.foo", "extension-release.bar", "other"],
                Some("extension-release.foo"),
            ),
            (
                "foo_1.2",
                &["extension-release.", "extension-release..#foo"],
                None,
            ),
            ("foo_1.2", &[], None),
        ];
        for (name, files, want) in cases {
            let t = mkext();
            for f in *files {
                write_rel(&t, f, "ID=debian\n");
            }
            match (find(&t, name, S), want) {
                (Ok(r), Some(w)) => assert_eq!(r.path, rel(w), "{name} {files:?}"),
                (Err(ReleaseError::NotFound(s)), None) => {
                    assert_eq!(s, format!("{SYSDIR}/extension-release.{name}"))
                }
                (got, _) => panic!("{name} {files:?}: unexpected {got:?}"),
            }
        }
    }

    #[test]
    fn fallback_dir_missing() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("ext")).unwrap();
        let e = find(&t, "foo", S).unwrap_err();
        assert!(matches!(e, ReleaseError::NotFound(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!("no {SYSDIR}/extension-release.foo found")
        );
    }

    #[test]
    fn fallback_symlink_and_fifo_refused() {
        let t = mkext();
        let dir = ext_path(&t).join(SYSDIR);
        fs::write(dir.join("real"), "ID=debian\n").unwrap();
        symlink("real", dir.join("extension-release.foo")).unwrap();
        let e = find(&t, "foo_1.2", S).unwrap_err();
        assert!(matches!(e, ReleaseError::NotFound(_)), "{e:?}");

        let t = mkext();
        let p = ext_path(&t).join(SYSDIR).join("extension-release.foo");
        rustix::fs::mkfifoat(rustix::fs::CWD, &p, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        let e = find(&t, "foo_1.2", S).unwrap_err();
        assert!(matches!(e, ReleaseError::NotFound(_)), "{e:?}");
    }

    #[test]
    fn fallback_strict_xattr() {
        // (xattr value or None, accepted?)
        let cases: &[(Option<&str>, bool)] = &[
            (Some("0"), true),
            (Some("no"), true),
            (Some("n"), true),
            (Some("false"), true),
            (Some("F"), true),
            (Some("OFF"), true),
            (Some("1"), false),
            (Some("yes"), false),
            (Some("true"), false),
            (Some("bogus"), false),
            (Some(""), false),
            (Some(" 0"), false),
            (None, false),
        ];
        for (value, accepted) in cases {
            let t = mkext();
            let p = write_rel(&t, "extension-release.bar", "ID=debian\n");
            if let Some(v) = value {
                if !set_strict(&p, v) {
                    return;
                }
            }
            match (find(&t, "foo", S), accepted) {
                (Ok(r), true) => assert_eq!(r.path, rel("extension-release.bar")),
                (Err(ReleaseError::NotFound(_)), false) => {}
                (got, _) => panic!("xattr {value:?}: unexpected {got:?}"),
            }
        }
    }

    #[test]
    fn fallback_two_accepted_not_unique() {
        let t = mkext();
        let p = write_rel(&t, "extension-release.bar", "ID=debian\n");
        write_rel(&t, "extension-release.foo", "ID=debian\n");
        if !set_strict(&p, "0") {
            return;
        }
        let e = find(&t, "foo_1", S).unwrap_err();
        match e {
            ReleaseError::NotUnique(a, b) => {
                assert_eq!(a, rel("extension-release.bar"));
                assert_eq!(b, rel("extension-release.foo"));
            }
            e => panic!("unexpected {e:?}"),
        }
        // Strict=1 on the other one: back to a single candidate.
        let t = mkext();
        let p = write_rel(&t, "extension-release.bar", "ID=debian\n");
        write_rel(&t, "extension-release.foo", "ID=debian\n");
        assert!(set_strict(&p, "1"));
        assert_eq!(
            find(&t, "foo_1", S).unwrap().path,
            rel("extension-release.foo")
        );
    }

    #[test]
    fn invalid_names() {
        let t = mkext();
        for name in ["../x", "", ".", "..", "a/b", ".#foo", "x\ny"] {
            let e = find(&t, name, S).unwrap_err();
            assert!(
                matches!(e, ReleaseError::InvalidName(ref n) if n == name),
                "{name:?}: {e:?}"
            );
        }
    }

    // ---- host os-release ----

    fn root_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = t.path().join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        t
    }

    fn load(
        t: &tempfile::TempDir,
        env_override: Option<&str>,
    ) -> Result<HostIdentity, OsReleaseError> {
        let root = Root::open(t.path()).unwrap();
        load_with(
            &root,
            SYS,
            env_override.map(OsString::from),
            Some("x86-64".into()),
        )
    }

    #[test]
    fn load_etc_os_release() {
        let t = root_with(&[
            ("etc/os-release", "ID=debian\nVERSION_ID=\"12\"\nID_LIKE=\n"),
            ("usr/lib/os-release", "ID=other\n"),
        ]);
        let h = load(&t, None).unwrap();
        assert_eq!(h.id, "debian");
        assert_eq!(h.version_id.as_deref(), Some("12"));
        assert!(h.id_like.is_empty());
        assert_eq!(h.os_release_path, t.path().join("etc/os-release"));
        assert_eq!(h.arch.as_deref(), Some("x86-64"));
        assert_eq!(h.scope, SYS);
    }

    #[test]
    fn load_usr_lib_os_release() {
        let t = root_with(&[("usr/lib/os-release", "ID=fedora\nVERSION_ID=40\n")]);
        let h = load(&t, None).unwrap();
        assert_eq!(h.id, "fedora");
        assert_eq!(h.os_release_path, t.path().join("usr/lib/os-release"));
        // A dangling /etc/os-release is ENOENT too: falls back.
        fs::create_dir(t.path().join("etc")).unwrap();
        symlink("/nowhere", t.path().join("etc/os-release")).unwrap();
        assert_eq!(load(&t, None).unwrap().id, "fedora");
    }

    #[test]
    fn load_missing() {
        let t = root_with(&[]);
        let e = load(&t, None).unwrap_err();
        assert!(
            matches!(e, OsReleaseError::Missing { ref root } if root == t.path()),
            "{e:?}"
        );
        assert_eq!(e.errno(), libc::ENOENT);
    }

    #[test]
    fn load_empty_id() {
        let t = root_with(&[("etc/os-release", "ID=\nVERSION_ID=1\n")]);
        let e = load(&t, None).unwrap_err();
        assert!(
            matches!(e, OsReleaseError::NoId { ref path } if *path == t.path().join("etc/os-release")),
            "{e:?}"
        );
        assert_eq!(e.errno(), libc::EINVAL);
    }

    #[test]
    fn load_parse_error() {
        let t = root_with(&[("etc/os-release", "ID=x\nNAME=\"\u{ffff}\"\n")]);
        let e = load(&t, None).unwrap_err();
        assert!(
            matches!(e, OsReleaseError::Parse { ref source, .. } if source.line == 2),
            "{e:?}"
        );
    }

    #[test]
    fn load_non_enoent_error_stops_search() {
        let t = root_with(&[("usr/lib/os-release", "ID=fedora\n")]);
        fs::create_dir_all(t.path().join("etc/os-release")).unwrap();
        let e = load(&t, None).unwrap_err();
        assert!(
            matches!(e, OsReleaseError::Read { ref path, source: ReadError::NotRegular("directory") }
            if *path == t.path().join("etc/os-release")),
            "{e:?}"
        );
    }

    #[test]
    fn load_symlink_to_absolute_path_stays_in_root() {
        let outer = tempfile::tempdir().unwrap();
        let outside = outer.path().join("os-release.outside");
        fs::write(&outside, "ID=outside\n").unwrap();
        // The same absolute path, but below the root.
        let t = tempfile::tempdir().unwrap();
        let inside = t.path().join(outside.strip_prefix("/").unwrap());
        fs::create_dir_all(inside.parent().unwrap()).unwrap();
        fs::write(&inside, "ID=inside\n").unwrap();
        fs::create_dir(t.path().join("etc")).unwrap();
        symlink(&outside, t.path().join("etc/os-release")).unwrap();
        let h = load(&t, None).unwrap();
        assert_eq!(h.id, "inside");
        assert_eq!(h.os_release_path, t.path().join("etc/os-release"));
    }

    #[test]
    fn load_env_override_is_final() {
        let t = root_with(&[
            ("etc/os-release", "ID=debian\n"),
            ("custom/os", "ID=custom\n"),
        ]);
        let h = load(&t, Some("/custom/os")).unwrap();
        assert_eq!(h.id, "custom");
        assert_eq!(h.os_release_path, t.path().join("custom/os"));
        let e = load(&t, Some("/custom/missing")).unwrap_err();
        assert!(
            matches!(e, OsReleaseError::Read { ref path, ref source }
            if *path == t.path().join("custom/missing") && source.is_not_found()),
            "{e:?}"
        );
        assert_eq!(e.errno(), libc::ENOENT);
    }

    #[test]
    fn load_public_uses_uname() {
        // The library reads no environment: `SYSTEMD_OS_RELEASE` set for this test
        // process changes nothing.
        let t = root_with(&[("etc/os-release", "ID=debian\n")]);
        let root = Root::open(t.path()).unwrap();
        let h = HostIdentity::load(&root, INITRD, None).unwrap();
        assert_eq!(h.id, "debian");
        assert_eq!(h.scope, INITRD);
        assert_eq!(h.arch.as_deref(), crate::format::arch::uname_architecture());
    }

    #[test]
    fn parse_boolean_table() {
        for (v, want) in [
            ("1", Some(true)),
            ("yes", Some(true)),
            ("Y", Some(true)),
            ("TRUE", Some(true)),
            ("t", Some(true)),
            ("On", Some(true)),
            ("0", Some(false)),
            ("no", Some(false)),
            ("N", Some(false)),
            ("False", Some(false)),
            ("f", Some(false)),
            ("off", Some(false)),
            ("", None),
            ("2", None),
            ("yes ", None),
            ("nope", None),
        ] {
            assert_eq!(parse_boolean(v), want, "{v:?}");
        }
    }
}
