//! os-release(5) / extension-release env-file parsing, and the host's identity.
//! STUB: to be implemented (see the helper brief).

use std::path::PathBuf;

/// A parse failure that makes the whole file unusable (systemd: invalid UTF-8 → EINVAL).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct EnvError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// A line that systemd drops silently; we keep it as a warning to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvWarning {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// A parsed env file: assignments in file order (a repeated key keeps its first position
/// and its last value), plus warnings for dropped lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvFile {
    pairs: Vec<(String, String)>,
    /// Lines systemd would drop silently (no `=`), with line numbers.
    pub warnings: Vec<EnvWarning>,
}

impl EnvFile {
    /// Parses env-file bytes with systemd's rules (`parse_env_file_internal`).
    pub fn parse(_data: &[u8]) -> Result<EnvFile, EnvError> {
        unimplemented!()
    }

    /// Value of `key`; `None` if absent **or empty** (systemd treats both alike).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Value of `key` including empty values (`Some("")` for `KEY=`).
    pub fn get_raw(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All assignments in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// No assignments at all.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// Errors reading the host's os-release.
#[derive(Debug, thiserror::Error)]
pub enum OsReleaseError {
    /// Neither `/etc/os-release` nor `/usr/lib/os-release` exists in the root.
    #[error("{root}: no os-release found (tried /etc/os-release, /usr/lib/os-release)")]
    Missing {
        /// The root searched.
        root: PathBuf,
    },
    /// Reading failed.
    #[error("{path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Why.
        source: crate::fsutil::ReadError,
    },
    /// Parsing failed.
    #[error("{path}: {source}")]
    Parse {
        /// File.
        path: PathBuf,
        /// Why.
        source: EnvError,
    },
    /// `ID=` missing or empty.
    #[error("{path}: no ID= field, cannot match extensions against it")]
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
