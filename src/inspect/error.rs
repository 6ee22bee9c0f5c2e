//! Why a plan could not be made: the errors of inspecting a root and of planning, one
//! type, so the entry point reports either the same way (re-exported as
//! [`crate::plan::PlanError`]).

use std::io;
use std::path::PathBuf;

use crate::format::escape::esc;
use crate::inspect::discover;
use crate::inspect::release::OsReleaseError;

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The root could not be opened.
    #[error("{}: cannot open root: {}", esc(.path), crate::log::os_text(.source))]
    Root {
        /// The root.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Host os-release problem.
    #[error(transparent)]
    OsRelease(#[from] OsReleaseError),
    /// Discovery failed.
    #[error("failed to discover extensions: {0}")]
    Discover(#[from] discover::DiscoverError),
    /// A disk image is broken or refused (systemd fails the merge for it).
    #[error(transparent)]
    Image(#[from] crate::inspect::image::ImageError),
    /// A service's own extension does not match its root (systemd fails the unit for
    /// `ExtensionDirectories=`/`ExtensionImages=`, `ESTALE`, rather than skip it).
    #[error("{}: extension-release does not match the root's os-release: {reason}", esc(.path))]
    Mismatch {
        /// The extension.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Bad hierarchy list.
    #[error("{0}")]
    Hierarchies(String),
    /// A file or directory that planning needs could not be read.
    #[error("{}: {reason}", esc(.path))]
    Io {
        /// Host path.
        path: PathBuf,
        /// Why.
        reason: String,
        /// errno.
        errno: i32,
    },
}

impl PlanError {
    /// errno for the C ABI.
    pub fn errno(&self) -> i32 {
        match self {
            PlanError::Root { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            PlanError::OsRelease(e) => e.errno(),
            PlanError::Discover(e) => e.source.raw_os_error().unwrap_or(libc::EIO),
            PlanError::Hierarchies(_) => libc::EINVAL,
            PlanError::Mismatch { .. } => libc::ESTALE,
            PlanError::Image(e) => e.errno(),
            PlanError::Io { errno, .. } => *errno,
        }
    }
}
