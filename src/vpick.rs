//! `NAME.v/` directory picking (systemd's `vpick.c`) and its version order
//! (`strverscmp_improved`). STUB: to be implemented (see the helper brief).

use std::cmp::Ordering;

/// systemd's `strverscmp_improved`.
pub fn strverscmp_improved(_a: &str, _b: &str) -> Ordering {
    unimplemented!()
}

/// The entry vpick chose, with the parts it parsed from its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picked {
    /// The entry's file name inside the `.v` directory.
    pub file_name: String,
    /// The version part.
    pub version: String,
    /// The architecture tag, if the name had a known one.
    pub arch: Option<String>,
    /// `+LEFT`, `None` when the name has no tries counter.
    pub tries_left: Option<u64>,
    /// `-DONE`, `None` when the name has no tries counter.
    pub tries_done: Option<u64>,
}

/// Picks among `entries` (file names in a `.v` directory) the one systemd would use for
/// basename `basename` and suffix `suffix` (`.raw`, `.sysext.raw`, `""`…), given the
/// local architectures (`native`, then optional `secondary`). Types are not checked here.
pub fn pick<'a>(
    _basename: &str,
    _suffix: &str,
    _entries: impl IntoIterator<Item = &'a str>,
    _native: &str,
    _secondary: Option<&str>,
) -> Option<Picked> {
    unimplemented!()
}
