//! The `/proc/…/mountinfo` parser behind `clone_submounts` and `parent_mount_of`:
//! `parse_mountinfo_line`, `unescape_mountinfo`, `mountinfo_parent` and
//! `submounts_below` on arbitrary bytes, with every mount point of the input (and a
//! few fixed paths) as the hierarchy.
#![no_main]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use extmerge::format::mountinfo::{
    mountinfo_parent, parse_mountinfo_line, submounts_below, unescape_mountinfo,
};
use libfuzzer_sys::fuzz_target;

/// The kernel's `mangle()` for mountinfo: space, tab, newline and `\` as `\ooo`.
fn escape(p: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in p {
        if matches!(b, b' ' | b'\t' | b'\n' | b'\\') {
            out.extend_from_slice(format!("\\{b:03o}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let u = unescape_mountinfo(data);
    assert!(u.len() <= data.len());
    assert_eq!(unescape_mountinfo(&escape(data)), data, "escape round trip");

    let lines: Vec<_> = data
        .split(|&b| b == b'\n')
        .filter_map(parse_mountinfo_line)
        .collect();
    let mut tops = vec![Path::new("/usr"), Path::new("/"), Path::new("")];
    for l in lines.iter().take(8) {
        assert!(mountinfo_parent(data, l.id).is_some());
        tops.push(&l.mount_point);
    }
    let mut parents: Vec<u64> = lines.iter().take(8).map(|l| l.parent).collect();
    parents.push(0);
    parents.dedup();
    for &top in &tops {
        for &parent in parents.iter().take(4) {
            let subs = submounts_below(data, parent, top, ".systemd-sysext");
            for (i, (rel, point)) in subs.iter().enumerate() {
                assert!(!rel.as_os_str().is_empty());
                assert!(point.starts_with(top));
                assert_eq!(point.strip_prefix(top).ok(), Some(rel.as_path()));
                assert!(!rel.starts_with(".systemd-sysext"));
                assert!(lines
                    .iter()
                    .any(|l| l.parent == parent && &l.mount_point == point));
                for (earlier, _) in &subs[..i] {
                    assert!(!rel.starts_with(earlier), "{rel:?} below {earlier:?}");
                }
            }
        }
    }
    // A well-formed line made from the input as the mount point parses back to it.
    let point = OsStr::from_bytes(data);
    let mut line = b"7 3 0:1 / ".to_vec();
    line.extend(escape(data));
    line.extend_from_slice(b" rw - tmpfs tmpfs rw");
    let l = parse_mountinfo_line(&line).expect("well-formed line");
    assert_eq!((l.id, l.parent, l.mount_point.as_os_str()), (7, 3, point));
});
