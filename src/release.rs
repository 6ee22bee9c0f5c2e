//! extension-release lookup inside an extension and matching against the host
//! (`extension_release_validate`). STUB: to be implemented (see the helper brief).

use std::os::fd::BorrowedFd;
use std::path::PathBuf;

use crate::class::{Class, Scope};
use crate::fsutil::Root;
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

impl HostIdentity {
    /// Builds the identity from a parsed os-release.
    pub fn from_env(
        _env: &EnvFile,
        _path: PathBuf,
        _arch: Option<String>,
        _scope: Scope,
    ) -> Result<HostIdentity, OsReleaseError> {
        unimplemented!()
    }

    /// Reads the root's os-release (`$SYSTEMD_OS_RELEASE`, else `/etc/os-release`, else
    /// `/usr/lib/os-release`, inside the root), with the running kernel's architecture.
    pub fn load(_root: &Root, _scope: Scope) -> Result<HostIdentity, OsReleaseError> {
        unimplemented!()
    }

    /// The level for `class` (`SYSEXT_LEVEL` / `CONFEXT_LEVEL`).
    pub fn level(&self, class: Class) -> Option<&str> {
        match class {
            Class::Sysext => self.sysext_level.as_deref(),
            Class::Confext => self.confext_level.as_deref(),
        }
    }
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

/// Looks up `extension-release.NAME` (exact, then the strict fallback scan) inside the
/// extension whose root directory is `ext_root`.
pub fn find_extension_release(
    _ext_root: BorrowedFd<'_>,
    _name: &str,
    _class: Class,
) -> Result<ReleaseFile, ReleaseError> {
    unimplemented!()
}

/// `extension_release_validate`: the first failing check decides.
pub fn validate(_name: &str, _class: Class, _host: &HostIdentity, _ext: &EnvFile) -> Verdict {
    unimplemented!()
}
