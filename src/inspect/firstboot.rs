//! Whether a root's next boot is its first, as systemd decides it (`ConditionFirstBoot=`,
//! PID 1's machine-id setup): `/etc/machine-id` missing, empty or saying
//! `uninitialized`. The initrd asks, because a first boot writes to `/etc` (machine-id,
//! the preset links of `preset-all`) and a confext merged read-only there breaks it.

use std::path::Path;

use rustix::fs::ResolveFlags;

use super::fsutil::{read_file_in, Root};

/// Longer than any machine-id file (32 hex digits and a newline).
const MACHINE_ID_MAX: u64 = 4096;

/// Is `root`'s next boot its first? A machine-id that cannot be read for another reason
/// than its absence counts as set (no warning is better than a wrong one).
pub fn is_first_boot(root: &Root) -> bool {
    match read_file_in(
        root.fd(),
        Path::new("etc/machine-id"),
        ResolveFlags::empty(),
        MACHINE_ID_MAX,
    ) {
        Ok(bytes) => says_first_boot(&bytes),
        Err(e) => e.is_not_found(),
    }
}

/// The contents of a machine-id file that mean "not set up yet" (systemd's
/// `machine_id_setup()` and `condition_test_first_boot()`: empty, or `uninitialized`).
fn says_first_boot(bytes: &[u8]) -> bool {
    let s = bytes.trim_ascii();
    s.is_empty() || s == b"uninitialized"
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn machine_id_contents() {
        assert!(says_first_boot(b""));
        assert!(says_first_boot(b"\n"));
        assert!(says_first_boot(b"uninitialized\n"));
        assert!(!says_first_boot(b"3b2f8c6a1d9e4f5b8a7c6d5e4f3a2b1c\n"));
        assert!(!says_first_boot(b"uninitialized-not"));
    }

    #[test]
    fn reads_inside_the_root_only() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        let r = Root::open(&root).unwrap();
        assert!(is_first_boot(&r), "no machine-id: first boot");
        std::fs::write(root.join("etc/machine-id"), "uninitialized\n").unwrap();
        assert!(is_first_boot(&r));
        std::fs::write(
            root.join("etc/machine-id"),
            "3b2f8c6a1d9e4f5b8a7c6d5e4f3a2b1c\n",
        )
        .unwrap();
        assert!(!is_first_boot(&r));
        // A symlink out of the root resolves inside it: the host's machine-id is not read.
        std::fs::write(
            t.path().join("host-id"),
            "3b2f8c6a1d9e4f5b8a7c6d5e4f3a2b1c\n",
        )
        .unwrap();
        std::fs::remove_file(root.join("etc/machine-id")).unwrap();
        symlink("../../host-id", root.join("etc/machine-id")).unwrap();
        assert!(
            is_first_boot(&r),
            "the link stays in the root, where nothing is"
        );
    }
}
