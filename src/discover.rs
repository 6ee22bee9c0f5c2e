//! Finding extensions in a root's search directories (systemd's `discover-image.c`).
//! STUB: to be implemented (see the helper brief).

use std::path::PathBuf;

use crate::class::Class;
use crate::fsutil::Root;
use crate::vpick::Picked;

/// What an extension is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// A directory tree.
    Directory,
    /// A `*.raw` regular file (disk image or bare file system).
    Raw,
    /// A block device.
    Block,
}

impl ImageKind {
    /// systemd's `image_type_to_string`.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageKind::Directory => "directory",
            ImageKind::Raw => "raw",
            ImageKind::Block => "block",
        }
    }
}

/// A discovered extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Image name (file name with `.raw`, class suffix, `.v` stripped).
    pub name: String,
    /// Its class.
    pub class: Class,
    /// Directory, raw or block.
    pub kind: ImageKind,
    /// Absolute path inside the root (`/var/lib/extensions/foo.raw.v/foo_2.raw`); a
    /// symlink entry keeps the entry's own path (it is resolved inside the root on open).
    pub path: PathBuf,
    /// The search directory it was found in.
    pub search_dir: &'static str,
    /// Modification time in µs since the epoch (for `list`).
    pub mtime_usec: Option<u64>,
    /// Set when the image was picked from a `NAME.v/` directory.
    pub picked: Option<Picked>,
}

/// An entry that was looked at and not used, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Absolute path inside the root.
    pub path: PathBuf,
    /// Why it was skipped.
    pub reason: String,
}

/// Result of discovery for one class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    /// Usable images, sorted by name (byte order).
    pub images: Vec<Image>,
    /// Entries skipped, in the order they were seen.
    pub skipped: Vec<Skipped>,
}

/// Errors that abort discovery (systemd: "Failed to discover images").
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct DiscoverError {
    /// The search directory (host path).
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

pub use crate::name::image_name_is_valid;

/// True when `<root>/etc/initrd-release` exists (chooses the initrd search list and scope).
pub fn root_is_initrd(_root: &Root) -> bool {
    unimplemented!()
}

/// Walks the class's search directories in precedence order.
pub fn discover(_root: &Root, _class: Class, _initrd: bool) -> Result<Discovery, DiscoverError> {
    unimplemented!()
}
