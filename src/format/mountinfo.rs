//! `/proc/…/mountinfo` (proc(5)) as bytes: the fields extmerge uses, the octal escapes
//! of mount points, and the submounts of a directory. Pure: the kernel layer reads the
//! file (`sys::hierarchy::read_mountinfo`) and hands the bytes here.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// The fields of one `/proc/…/mountinfo` line that extmerge uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfoLine {
    /// Field 1: the mount ID.
    pub id: u64,
    /// Field 2: the parent's mount ID.
    pub parent: u64,
    /// Field 5: the mount point, unescaped (see [`unescape_mountinfo`]).
    pub mount_point: PathBuf,
}

/// Parses one line of `/proc/…/mountinfo` (proc(5)): `None` when it has fewer than five
/// space-separated fields or the IDs are not numbers. Mount points are bytes (a mount
/// point need not be UTF-8).
pub fn parse_mountinfo_line(line: &[u8]) -> Option<MountInfoLine> {
    let mut f = line.splitn(6, |&b| b == b' ');
    let num = |b: &[u8]| std::str::from_utf8(b).ok()?.parse::<u64>().ok();
    let id = num(f.next()?)?;
    let parent = num(f.next()?)?;
    let _major_minor = f.next()?;
    let _root = f.next()?;
    let point = f.next()?;
    Some(MountInfoLine {
        id,
        parent,
        mount_point: PathBuf::from(OsString::from_vec(unescape_mountinfo(point))),
    })
}

/// The parent mount ID of mount `id` in a mountinfo text.
pub fn mountinfo_parent(mountinfo: &[u8], id: u64) -> Option<u64> {
    mountinfo
        .split(|&b| b == b'\n')
        .filter_map(parse_mountinfo_line)
        .find(|l| l.id == id)
        .map(|l| l.parent)
}

/// Mount point paths in `/proc/…/mountinfo` escape space, tab, newline and `\` as
/// octal (`\040`): three octal digits, at most `\377`. Anything else is kept as it is.
pub fn unescape_mountinfo(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s.get(i..i + 4) {
            Some([b'\\', d0 @ b'0'..=b'3', d1 @ b'0'..=b'7', d2 @ b'0'..=b'7']) => {
                out.push((d0 - b'0') << 6 | (d1 - b'0') << 3 | (d2 - b'0'));
                i += 4;
            }
            _ => {
                out.push(s[i]);
                i += 1;
            }
        }
    }
    out
}

/// The mounts directly on mount `parent` below the directory `top_path`, as
/// [`clone_submounts`] takes them from a mountinfo text: each as its path relative to
/// `top_path` and its mount point, in mountinfo order. Left out: the mount on
/// `top_path` itself, mounts below the top-level directory `skip`, and mounts below one
/// already taken (they come with its recursive clone).
pub fn submounts_below(
    mountinfo: &[u8],
    parent: u64,
    top_path: &Path,
    skip: &str,
) -> Vec<(PathBuf, PathBuf)> {
    let mut out: Vec<(PathBuf, PathBuf)> = Vec::new();
    for l in mountinfo
        .split(|&b| b == b'\n')
        .filter_map(parse_mountinfo_line)
    {
        if l.parent != parent {
            continue;
        }
        let Ok(rel) = l.mount_point.strip_prefix(top_path) else {
            continue;
        };
        if rel.as_os_str().is_empty() || rel.starts_with(skip) {
            continue; // the hierarchy itself (e.g. our overlay on it), our metadata bind
        }
        // Nested mounts come with their parent's recursive clone.
        if out.iter().any(|(p, _)| rel.starts_with(p)) {
            continue;
        }
        let rel = rel.to_path_buf();
        out.push((rel, l.mount_point));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(br"/a\040b\011c\134d"), b"/a b\tc\\d");
        assert_eq!(unescape_mountinfo(br"/plain"), b"/plain");
        assert_eq!(unescape_mountinfo(br"/x\04"), br"/x\04");
        // Above \377 is no byte: kept as it is (it used to overflow a u8).
        assert_eq!(unescape_mountinfo(br"/x\400\777"), br"/x\400\777");
        assert_eq!(unescape_mountinfo(b"/caf\xe9\\377"), b"/caf\xe9\xff");
    }

    #[test]
    fn mountinfo_lines() {
        let info = b"22 1 0:21 / / rw - ext4 /dev/vda rw\n\
                     30 22 0:30 / /usr rw - overlay overlay ro\n\
                     31 22 0:31 / /usr/local rw - ext4 /dev/vdb rw\n\
                     32 31 0:32 / /usr/local/x rw - tmpfs tmpfs rw\n\
                     33 22 0:33 / /usr/.systemd-sysext rw - tmpfs tmpfs rw\n\
                     34 22 0:34 / /usr/a\\040b\\377 rw - tmpfs tmpfs rw\n\
                     garbage\n35 x 0:1 / /usr/y\n36 22 0:1 /\n";
        assert_eq!(mountinfo_parent(info, 32), Some(31));
        assert_eq!(mountinfo_parent(info, 35), None);
        assert_eq!(mountinfo_parent(info, 99), None);
        let subs = submounts_below(info, 22, Path::new("/usr"), ".systemd-sysext");
        let rel: Vec<_> = subs.iter().map(|(r, _)| r.as_os_str().as_bytes()).collect();
        assert_eq!(rel, [&b"local"[..], b"a b\xff"]);
        assert_eq!(subs[0].1, Path::new("/usr/local"));
    }
}
