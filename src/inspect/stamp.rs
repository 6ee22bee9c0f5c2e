//! The quick stamp of a merge: what a refresh looks at before it plans anything.
//!
//! A refresh that changes nothing is the common case (a `systemctl reload`, a timer, a
//! package hook). Planning reads every extension's release file, lists every layer and
//! observes every object; the stamp instead records, at the merge, what can be checked
//! with `statx` alone, and a refresh whose stamp is the same as the one stored in the
//! merge in place is skipped without planning. Any difference (or a merge without a
//! stamp: systemd's, an older one of ours) takes the full way, which compares the
//! fingerprints ([`crate::sys::origin`]) as before.
//!
//! # What it sees
//!
//! - the options that shape a plan (hierarchies, force, mutable mode, noexec, image
//!   policy, search directories, per-service matching, `SYSTEMD_OS_RELEASE`, the overlay
//!   mount options);
//! - the root's `etc/os-release`, `usr/lib/os-release`, `etc/initrd-release` (and the
//!   file `SYSTEMD_OS_RELEASE` names): device, inode, times, size;
//! - every extension discovery found (merged or not), by name, kind and path (a `.v/`
//!   pick by the entry picked): the object's device, inode, birth, modification and
//!   change times, size and device number; a directory's extension-release file
//!   (`extension-release.NAME` of the class) the same way, or where it has none every
//!   `extension-release.*` beside it (one may count by its xattr); a raw image's verity
//!   sidecars ([`crate::inspect::image::verity_inputs_stamp`]);
//! - with a mutable mode, each hierarchy's mutable directory.
//!
//! What it does not see: a change deep inside an extension directory that leaves its top
//! directory and its extension-release files alone — files added to an empty `usr/`.
//! A directory's contents are live in the overlay anyway; systemd ≥ 260's refresh-skip
//! looks at the top directory only. `--always-refresh` plans regardless.
//!
//! # Format (version 1)
//!
//! Text, one `key=value` per line, values escaped with [`cescape`]:
//!
//! ```text
//! extmerge-stamp=1
//! options=...
//! host=etc/os-release 8:1/1234 b1700000000.1 m1700000000.1 c1700000000.1 s123 r0:0
//! image=foo directory /var/lib/extensions/foo <id> release=<id or ->
//! mutable=/usr <id or ->
//! merged=/usr /opt            (written with the merge, not compared: see [`same`])
//! ```

use std::fmt::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, OFlags, Statx, StatxFlags};

use crate::format::class::Class;
use crate::format::escape::cescape;
use crate::inspect::discover::{Image, ImageKind, IDENTITY_MASK};
use crate::inspect::fsutil::Root;
use crate::options::{hierarchy_component, MutableMode, Options};

/// The first line: the format's version.
pub const VERSION_LINE: &str = "extmerge-stamp=1";

/// The key of the line that lists the hierarchies the merge put overlays on.
const MERGED_KEY: &str = "merged=";

/// `dev/ino`, times, size and device number of a `statx`: what tells one object from
/// another, and a changed one from itself.
fn id(x: &Statx) -> String {
    let t = |t: rustix::fs::StatxTimestamp| format!("{}.{:09}", t.tv_sec, t.tv_nsec);
    let birth = if x.stx_mask & StatxFlags::BTIME.bits() != 0 {
        t(x.stx_btime)
    } else {
        "-".to_string()
    };
    format!(
        "{}:{}/{} b{birth} m{} c{} s{} r{}:{}",
        x.stx_dev_major,
        x.stx_dev_minor,
        x.stx_ino,
        t(x.stx_mtime),
        t(x.stx_ctime),
        x.stx_size,
        x.stx_rdev_major,
        x.stx_rdev_minor
    )
}

/// A file's identity from the fields `fstat` and `statx` both give (an extension-release
/// file's: read with `fstat` at the merge, looked at with `statx` by a refresh).
fn file_id_of(dev: u64, ino: u64, m: (i64, u64), c: (i64, u64), size: u64) -> String {
    format!(
        "{dev}/{ino} m{}.{:09} c{}.{:09} s{size}",
        m.0, m.1, c.0, c.1
    )
}

/// [`file_id_of`] an `fstat`.
// The field types differ between architectures and rustix backends.
#[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
pub fn file_id(st: &rustix::fs::Stat) -> String {
    file_id_of(
        st.st_dev as u64,
        st.st_ino as u64,
        (st.st_mtime as i64, st.st_mtime_nsec as u64),
        (st.st_ctime as i64, st.st_ctime_nsec as u64),
        st.st_size as u64,
    )
}

/// [`file_id_of`] `rel` below `dir` (symlinks followed as the kernel follows them), `-`
/// when there is none. The result is only compared, never acted on: a path that leads
/// elsewhere than at the merge gives another object, never a skip that should not be.
fn file_id_at(dir: BorrowedFd<'_>, rel: &str) -> String {
    rustix::fs::statx(dir, rel, AtFlags::empty(), StatxFlags::BASIC_STATS).map_or_else(
        |_| "-".to_string(),
        |x| {
            file_id_of(
                rustix::fs::makedev(x.stx_dev_major, x.stx_dev_minor),
                x.stx_ino,
                (x.stx_mtime.tv_sec, u64::from(x.stx_mtime.tv_nsec)),
                (x.stx_ctime.tv_sec, u64::from(x.stx_ctime.tv_nsec)),
                x.stx_size,
            )
        },
    )
}

/// The `extension-release.*` entries of an extension's release directory (`dir`: the
/// extension), each with its identity, in name order.
fn release_dir_ids(dir: BorrowedFd<'_>, class: Class) -> Vec<(Vec<u8>, String)> {
    let Ok(fd) = crate::inspect::fsutil::open_in(
        dir,
        Path::new(class.release_dir()),
        OFlags::RDONLY | OFlags::DIRECTORY,
        rustix::fs::ResolveFlags::empty(),
    ) else {
        return Vec::new();
    };
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    let mut raw = rustix::fs::RawDir::new(&fd, &mut buf);
    let mut out = Vec::new();
    while let Some(Ok(e)) = raw.next() {
        let name = e.file_name().to_bytes();
        if name.starts_with(b"extension-release.") {
            let rel = String::from_utf8_lossy(name);
            out.push((name.to_vec(), file_id_at(fd.as_fd(), &rel)));
        }
    }
    out.sort();
    out
}

/// `statx` of `rel` inside the root (symlinks followed inside it), `-` when there is none.
fn id_in_root(root: &Root, rel: &Path) -> String {
    root.open_at(rel, OFlags::PATH)
        .ok()
        .and_then(|fd| rustix::fs::statx(&fd, "", AtFlags::EMPTY_PATH, IDENTITY_MASK).ok())
        .map_or_else(|| "-".to_string(), |x| id(&x))
}

/// The options of `opts` that shape a plan of `class` over `hierarchies`, as one line.
fn options_line(opts: &Options, class: Class, hierarchies: &[String]) -> String {
    let text = format!(
        "{:?}",
        (
            hierarchies,
            opts.force,
            opts.mutable,
            opts.noexec,
            &opts.image_policy,
            &opts.search,
            opts.per_service,
            &opts.env.os_release,
            opts.env.overlay_options(class),
        )
    );
    cescape(text.as_bytes())
}

/// One extension: its object, and for a directory its extension-release file.
fn image_line(
    s: &mut String,
    root: &Root,
    class: Class,
    entry: &Entry<'_>,
    dirs: &mut crate::inspect::image::ImageDirs,
) {
    let (image, fd) = (entry.image, entry.fd);
    // Only a directory's own fd is the object (an image's is its mounted tree).
    let fd = fd.filter(|_| image.kind == ImageKind::Directory);
    let path = cescape(image.path.as_os_str().as_encoded_bytes());
    let _ = write!(
        s,
        "image={} {} {path} ",
        cescape(image.name.as_bytes()),
        image.kind.as_str()
    );
    let reopened: Option<OwnedFd>;
    let fd = match fd {
        Some(fd) => Some(fd),
        None => {
            reopened = image.root_in(root).open_at(&image.path, OFlags::PATH).ok();
            reopened.as_ref().map(|f| f.as_fd())
        }
    };
    let st = match (image.opened.stat(), fd) {
        (Some(st), _) => Some(*st),
        (None, Some(fd)) => rustix::fs::statx(fd, "", AtFlags::EMPTY_PATH, IDENTITY_MASK).ok(),
        (None, None) => None,
    };
    s.push_str(&st.as_ref().map_or_else(|| "-".to_string(), id));
    match (image.kind, fd) {
        (ImageKind::Directory, Some(fd)) => {
            let rel = format!("{}/extension-release.{}", class.release_dir(), image.name);
            let own = match entry.release {
                Some(id) => id.to_string(),
                None => file_id_at(fd, &rel),
            };
            let _ = write!(s, " release={own}");
            if own == "-" {
                // Without a release file of its own name, any `extension-release.*`
                // marked `user.extension-release.strict=0` counts: each one's identity
                // (an xattr set changes its ctime).
                for (name, id) in release_dir_ids(fd, class) {
                    let _ = write!(s, " {}={id}", cescape(&name));
                }
            }
        }
        (ImageKind::Raw, _) => {
            let v = crate::inspect::image::verity_inputs_stamp_in(root, image, dirs);
            let _ = write!(s, " {}", cescape(v.trim_end_matches('\n').as_bytes()));
        }
        _ => {}
    }
    s.push('\n');
}

/// One extension for [`render`]: the image, its opened directory if there is one, the
/// identity of its extension-release file if it was read ([`file_id`]).
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// The extension.
    pub image: &'a Image,
    /// Its directory, as discovery or inspection opened it.
    pub fd: Option<BorrowedFd<'a>>,
    /// [`crate::inspect::release::ReleaseFile::id`].
    pub release: Option<&'a str>,
}

/// The stamp of a merge of `class` with `opts` over `hierarchies`, of the extensions
/// `images` (all that discovery found).
pub fn render(
    root: &Root,
    opts: &Options,
    class: Class,
    hierarchies: &[String],
    images: &[Entry<'_>],
) -> String {
    let mut s = format!(
        "{VERSION_LINE}\noptions={}\n",
        options_line(opts, class, hierarchies)
    );
    let mut hosts = vec![
        "etc/os-release".to_string(),
        "usr/lib/os-release".to_string(),
        "etc/initrd-release".to_string(),
    ];
    if let Some(p) = &opts.env.os_release {
        hosts.push(p.to_string_lossy().into_owned());
    }
    for h in hosts {
        let _ = writeln!(
            s,
            "host={} {}",
            cescape(h.as_bytes()),
            id_in_root(root, Path::new(&h))
        );
    }
    // Image directories opened once for all images' sidecar lookups.
    let mut dirs = crate::inspect::image::ImageDirs::new();
    for e in images {
        image_line(&mut s, root, class, e, &mut dirs);
    }
    if opts.mutable != MutableMode::No {
        for h in hierarchies {
            let rel = format!(
                "{}/{}",
                crate::inspect::facts::MUTABLE_BASE,
                hierarchy_component(h)
            );
            let _ = writeln!(
                s,
                "mutable={} {}",
                cescape(h.as_bytes()),
                id_in_root(root, Path::new(&rel))
            );
        }
    }
    s
}

/// The stamp as written with a merge that put overlays on `merged`.
pub fn with_merged(stamp: &str, merged: &[String]) -> String {
    let list: Vec<String> = merged.iter().map(|h| cescape(h.as_bytes())).collect();
    format!("{stamp}{MERGED_KEY}{}\n", list.join(" "))
}

/// Does the stamp `stored` (written with a merge) equal `now` (computed for a refresh)?
/// Returns the hierarchies the merge put overlays on, when it does.
pub fn same(stored: &str, now: &str) -> Option<Vec<String>> {
    let body = stored.strip_prefix(now)?;
    let list = body.strip_prefix(MERGED_KEY)?.strip_suffix('\n')?;
    if list.contains('\n') {
        return None;
    }
    list.split(' ')
        .filter(|h| !h.is_empty())
        .map(crate::inspect::metadata::cunescape)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_needs_the_whole_stamp_and_gives_the_merged_hierarchies() {
        let now = format!("{VERSION_LINE}\noptions=x\nimage=a directory /p 1\n");
        let stored = with_merged(&now, &["/usr".to_string(), "/opt".to_string()]);
        assert_eq!(
            same(&stored, &now),
            Some(vec!["/usr".to_string(), "/opt".to_string()])
        );
        assert_eq!(same(&with_merged(&now, &[]), &now), Some(vec![]));
        // Any other line, one more or one less: not the same.
        let changed = now.replace("/p 1", "/p 2");
        assert_eq!(same(&stored, &changed), None);
        let more = format!("{now}image=b directory /q 1\n");
        assert_eq!(same(&stored, &more), None);
        assert_eq!(same(&with_merged(&more, &[]), &now), None);
        assert_eq!(same(&now, &now), None, "a stamp without its merged line");
        assert_eq!(same(&format!("{stored}x=y\n"), &now), None);
    }
}
