//! The metadata systemd keeps at the top of a merged hierarchy (`.systemd-sysext/`,
//! `.systemd-confext/`): written by us the way systemd writes it, so each tool
//! recognises, refreshes and unmerges the other's merges.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{OFlags, ResolveFlags};

use crate::format::class::Class;
use crate::inspect::fsutil::{self, Root};
use crate::log::{errno_text, os_text};

/// Our own file in the metadata dir: what was merged, to skip a refresh that would
/// change nothing. More precise than systemd's [`SYSTEMD_ORIGIN_FILE`] (verity sidecars,
/// change times, the overlays' shape), so where both are present it decides. Its text
/// and format: [`crate::sys::origin`].
pub const FINGERPRINT_FILE: &str = "extmerge-origin";

/// systemd's (≥ 260) file in the metadata dir: JSON saying what was merged, from which
/// its refresh decides whether anything changed. We write it as systemd does
/// ([`crate::sys::origin::systemd_origin`]) so that systemd skips refreshing a merge of
/// ours that nothing changed (one `extmerge-initrd` made), and read it to skip
/// refreshing a merge of systemd's.
pub const SYSTEMD_ORIGIN_FILE: &str = "origin";

/// The quick stamp of our merge ([`crate::inspect::stamp`]): what a refresh compares
/// before planning.
pub const STAMP_FILE: &str = "extmerge-stamp";

/// `major:minor` as systemd's `FORMAT_DEVNUM`.
pub fn format_dev(dev: u64) -> String {
    format!("{}:{}", rustix::fs::major(dev), rustix::fs::minor(dev))
}

/// Parses `major:minor`.
pub fn parse_dev(s: &str) -> Option<u64> {
    let (a, b) = s.trim_end_matches('\n').split_once(':')?;
    Some(rustix::fs::makedev(a.parse().ok()?, b.parse().ok()?))
}

/// systemd's `cescape` for the `work_dir` file (keeps the path on one line):
/// [`crate::format::escape::cescape`].
pub fn cescape(s: &str) -> String {
    crate::format::escape::cescape(s.as_bytes())
}

/// Inverse of [`cescape`] (also what systemd's `cunescape` accepts for these files).
pub fn cunescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let c = *b.get(i + 1)?;
        i += 2;
        out.push(match c {
            b'\\' | b'"' | b'\'' => c,
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'a' => 0x07,
            b'b' => 0x08,
            b'f' => 0x0c,
            b'v' => 0x0b,
            b'x' => {
                let (hi, lo) = (*b.get(i)?, *b.get(i + 1)?);
                i += 2;
                use crate::format::text::hex_digit;
                hex_digit(hi)? << 4 | hex_digit(lo)?
            }
            _ => return None,
        });
    }
    String::from_utf8(out).ok()
}

/// A merged hierarchy as found on the system.
#[derive(Debug)]
pub struct Merged {
    /// Root of the merged hierarchy (the overlay's root).
    pub fd: OwnedFd,
    /// Extensions listed in the metadata.
    pub extensions: Vec<String>,
    /// `work_dir`, root-relative, unescaped.
    pub work_dir: Option<String>,
    /// Its class (where its metadata is).
    pub class: Class,
    /// `st_mtime` of the hierarchy root in µs (`status`' "since").
    pub since_usec: u64,
}

fn read_meta(
    dir: BorrowedFd<'_>,
    class: Class,
    file: &str,
) -> Result<Option<String>, fsutil::ReadError> {
    let p = PathBuf::from(class.metadata_dir()).join(file);
    match fsutil::read_file_in(dir, &p, ResolveFlags::NO_SYMLINKS, fsutil::MAX_TEXT_FILE) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Error reading merge state.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", crate::format::escape::esc(.path))]
pub struct StateError {
    /// Host path.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
    /// errno.
    pub errno: i32,
}

/// systemd's `is_our_mount_point`: `h` is a mount point whose `<dot dir>/dev` names its
/// own device. Returns the open hierarchy and its metadata if so.
pub fn find_merged(root: &Root, class: Class, h: &str) -> Result<Option<Merged>, StateError> {
    find_merged_with(root, class, h, &[])
}

/// `statfs` `f_type` of overlayfs.
const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;

/// [`find_merged`], also taking as ours an overlay whose `<dot dir>/dev` names one of
/// `removed`: the devices of overlays of ours that were just detached from `h`. That is
/// the trace of two of our overlays stacked on one hierarchy that shared one metadata
/// layer (a hierarchy listed twice, before such lists were refused): the lower one's
/// `dev` names the upper one, so by `dev` alone it would never look like ours again
/// and stay mounted forever.
pub fn find_merged_with(
    root: &Root,
    class: Class,
    h: &str,
    removed: &[u64],
) -> Result<Option<Merged>, StateError> {
    let err = |reason: String, errno: i32| StateError {
        path: root.display_path(h),
        reason,
        errno,
    };
    let fd = match root.open_at(h, OFlags::PATH | OFlags::DIRECTORY) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(os_text(&e), e.raw_os_error().unwrap_or(libc::EIO))),
    };
    if !fsutil::is_mount_root(fd.as_fd())
        .map_err(|e| err(os_text(&e), e.raw_os_error().unwrap_or(libc::EIO)))?
    {
        return Ok(None);
    }
    let rd = |file: &str| {
        read_meta(fd.as_fd(), class, file)
            .map_err(|e| err(format!("{}/{file}: {e}", class.metadata_dir()), e.errno()))
    };
    let Some(dev) = rd("dev")? else {
        return Ok(None);
    };
    let dev = parse_dev(dev.lines().next().unwrap_or("")).ok_or_else(|| {
        err(
            format!(
                "{}/dev: not a major:minor device number",
                class.metadata_dir()
            ),
            libc::EINVAL,
        )
    })?;
    let st = rustix::fs::fstat(&fd).map_err(|e| err(errno_text(e), e.raw_os_error()))?;
    if st.st_dev != dev {
        // `f_type`'s integer type differs between architectures.
        #[allow(clippy::unnecessary_cast)]
        let stale = removed.contains(&dev)
            && rustix::fs::fstatfs(&fd).is_ok_and(|s| s.f_type as i64 == OVERLAYFS_SUPER_MAGIC);
        if !stale {
            return Ok(None);
        }
    }
    let extensions = rd(class.list_file())?
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    let work_dir = match rd("work_dir")? {
        Some(w) => Some(cunescape(w.trim_end_matches('\n')).ok_or_else(|| {
            err(
                format!("{}/work_dir: bad escape", class.metadata_dir()),
                libc::EINVAL,
            )
        })?),
        None => None,
    };
    let since_usec = (st.st_mtime as u64) * 1_000_000 + (st.st_mtime_nsec as u64) / 1000;
    Ok(Some(Merged {
        fd,
        extensions,
        work_dir,
        class,
        since_usec,
    }))
}

impl Merged {
    /// Our fingerprint file ([`FINGERPRINT_FILE`]), if the merge was ours. Read when
    /// asked (a refresh), not by every look at a merge: it grows with the extensions.
    pub fn fingerprint(&self) -> Result<Option<String>, fsutil::ReadError> {
        read_meta(self.fd.as_fd(), self.class, FINGERPRINT_FILE)
    }

    /// Our quick stamp ([`STAMP_FILE`]), if the merge was ours and has one.
    pub fn stamp(&self) -> Result<Option<String>, fsutil::ReadError> {
        read_meta(self.fd.as_fd(), self.class, STAMP_FILE)
    }

    /// systemd's `origin` file ([`SYSTEMD_ORIGIN_FILE`]), if there is one (systemd ≥ 260
    /// and we write it); read when asked.
    pub fn systemd_origin(&self) -> Result<Option<String>, fsutil::ReadError> {
        read_meta(self.fd.as_fd(), self.class, SYSTEMD_ORIGIN_FILE)
    }
}

/// One row of `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRow {
    /// The hierarchy.
    pub hierarchy: String,
    /// Merged extensions; `None` when not merged.
    pub extensions: Option<Vec<String>>,
    /// When it was merged (µs since the epoch).
    pub since_usec: Option<u64>,
}

/// `status`: a row per existing hierarchy, sorted by hierarchy.
pub fn status(
    root: &Root,
    class: Class,
    hierarchies: &[String],
) -> Result<Vec<StatusRow>, StateError> {
    let mut rows = Vec::new();
    for h in hierarchies {
        if root.open_at(h, OFlags::PATH).is_err() {
            continue;
        }
        rows.push(match find_merged(root, class, h)? {
            Some(m) => StatusRow {
                hierarchy: h.clone(),
                extensions: Some(m.extensions),
                since_usec: Some(m.since_usec),
            },
            None => StatusRow {
                hierarchy: h.clone(),
                extensions: None,
                since_usec: None,
            },
        });
    }
    rows.sort_by(|a, b| a.hierarchy.cmp(&b.hierarchy));
    Ok(rows)
}

/// Writes `name` with `content` in `dir` (created 0644, replaced if present).
pub fn write_file(dir: BorrowedFd<'_>, name: &str, content: &str) -> io::Result<()> {
    use rustix::fs::Mode;
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )?;
    let mut data = content.as_bytes();
    while !data.is_empty() {
        let n = rustix::io::write(&fd, data)?;
        data = &data[n..];
    }
    Ok(())
}

/// Path of the metadata dir inside a merged hierarchy, for messages.
pub fn metadata_path(h: &str, class: Class) -> PathBuf {
    Path::new(h).join(class.metadata_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_roundtrip() {
        let d = rustix::fs::makedev(259, 1048575);
        assert_eq!(format_dev(d), "259:1048575");
        assert_eq!(parse_dev("259:1048575\n"), Some(d));
        assert_eq!(parse_dev("0:52"), Some(rustix::fs::makedev(0, 52)));
        for bad in ["", "12", "a:b", "1:2:3", "-1:2"] {
            assert_eq!(parse_dev(bad), None, "{bad}");
        }
    }

    #[test]
    fn escapes() {
        for (raw, esc) in [
            (
                "var/lib/extensions.mutable/.systemd-usr-workdir",
                "var/lib/extensions.mutable/.systemd-usr-workdir",
            ),
            ("a\nb", "a\\nb"),
            ("back\\slash", "back\\\\slash"),
            ("tab\t", "tab\\t"),
            ("ctl\x01", "ctl\\x01"),
            ("é", "\\xc3\\xa9"),
        ] {
            assert_eq!(cescape(raw), esc);
            assert_eq!(cunescape(esc).as_deref(), Some(raw));
        }
        assert_eq!(cunescape("bad\\"), None);
        assert_eq!(cunescape("bad\\q"), None);
    }
}
