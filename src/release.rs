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

use crate::class::{Class, Scope};
use crate::fsutil::{self, ReadError, Root, MAX_TEXT_FILE};
use crate::name::{image_name_is_valid, release_base_name};
use crate::os_release::{EnvFile, OsReleaseError};

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

/// Environment variable naming the os-release file to use instead of the default ones.
pub const OS_RELEASE_ENV: &str = "SYSTEMD_OS_RELEASE";

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

    /// Reads the root's os-release (`$SYSTEMD_OS_RELEASE`, else `/etc/os-release`, else
    /// `/usr/lib/os-release`, inside the root), with the running kernel's architecture.
    pub fn load(root: &Root, scope: Scope) -> Result<HostIdentity, OsReleaseError> {
        load_with(
            root,
            scope,
            std::env::var_os(OS_RELEASE_ENV),
            crate::arch::uname_architecture().map(String::from),
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
    let env = EnvFile::parse(&data).map_err(|source| OsReleaseError::Parse {
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
}

/// The extension-release file found in an extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseFile {
    /// Path relative to the extension root (`usr/lib/extension-release.d/extension-release.foo`).
    pub path: PathBuf,
    /// Its contents.
    pub env: EnvFile,
}

/// Why no usable extension-release file was found.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// The image name is not valid.
    #[error("invalid image name {0:?}")]
    InvalidName(String),
    /// Neither the exact file nor an accepted fallback exists.
    #[error("no {0} found")]
    NotFound(String),
    /// Two fallback files qualify (systemd: ENOTUNIQ).
    #[error("more than one extension-release file matches: {0} and {1}")]
    NotUnique(PathBuf, PathBuf),
    /// Reading failed.
    #[error("{path}: {source}")]
    Read {
        /// File (relative to the extension root).
        path: PathBuf,
        /// Why.
        source: crate::fsutil::ReadError,
    },
    /// Parsing failed.
    #[error("{path}: {source}")]
    Parse {
        /// File (relative to the extension root).
        path: PathBuf,
        /// Why.
        source: crate::os_release::EnvError,
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

fn parse_release(path: PathBuf, data: &[u8]) -> Result<ReleaseFile, ReleaseError> {
    match EnvFile::parse(data) {
        Ok(env) => Ok(ReleaseFile { path, env }),
        Err(source) => Err(ReleaseError::Parse { path, source }),
    }
}

/// Looks up `extension-release.NAME` (exact, then the strict fallback scan) inside the
/// extension whose root directory is `ext_root`.
///
/// Differences from systemd, both on paths where systemd misbehaves or fails anyway:
/// the exact file must be a regular file (systemd would block on a FIFO there or fail
/// reading a directory; we return [`ReleaseError::Read`] without blocking), and no file
/// larger than [`MAX_TEXT_FILE`] is read. Fallback candidates are examined in name order.
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
    match fsutil::read_file_in(ext_root, &exact, ResolveFlags::empty(), MAX_TEXT_FILE) {
        Ok(data) => return parse_release(exact, &data),
        Err(e) if e.is_not_found() => {}
        Err(source) => {
            return Err(ReleaseError::Read {
                path: exact,
                source,
            })
        }
    }

    let not_found = || ReleaseError::NotFound(exact.display().to_string());
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
        Some(v) => {
            if !split_ws(v).any(|w| w == host_scope) {
                return Verdict::Mismatch(format!(
                    "{scope_key}={v} does not include host scope '{host_scope}'"
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
                "ARCHITECTURE={a} does not match host architecture {}",
                host.arch.as_deref().unwrap_or("(unknown)")
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
        let mut s = format!("ID={id} does not match host ID={}", host.id);
        if !host.id_like.is_empty() {
            s.push_str(&format!(" or ID_LIKE={}", host.id_like.join(" ")));
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
            "{level_key}={el} does not match host {level_key}={hl}"
        ));
    }

    // 8. VERSION_ID.
    if let Some(hv) = host_version {
        return match ext.get("VERSION_ID") {
            None => Verdict::Mismatch(format!("no VERSION_ID= (host has VERSION_ID={hv})")),
            Some(ev) if ev == hv => Verdict::Match,
            Some(ev) => Verdict::Mismatch(format!(
                "VERSION_ID={ev} does not match host VERSION_ID={hv}"
            )),
        };
    }

    // 9. Host LEVEL set, no host VERSION_ID, no extension LEVEL.
    Verdict::Match
}
