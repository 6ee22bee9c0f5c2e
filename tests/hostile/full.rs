//! A full disk under a mutable overlay: `/var/lib/extensions.mutable` of the root on a
//! 64 KiB tmpfs. Writes through the merged /usr fail with ENOSPC; the merge stays
//! intact and readable; unmerge works; the upper dir keeps what fit; a new merge on the
//! full file system works too.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;

use crate::common::*;
use crate::util::*;

#[test]
fn full_disk_under_mutable_upper() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("e", &[("usr/share/e", "e\n")]);
        let mdir = fx.path("/var/lib/extensions.mutable");
        fs::create_dir_all(&mdir).unwrap();
        mount(
            "tmpfs",
            &mdir,
            "tmpfs",
            libc::MS_NOSUID | libc::MS_NODEV,
            "size=64k,mode=0755",
        );
        let before = state(&fx);

        run_t(&fx, &["--class=sysext", "--mutable=yes", "merge"], 10).ok();
        assert!(!fx.overlay_at("/usr").has("ro"));

        // Fill it.
        let big = fx.path("/usr/share/big");
        let mut f = fs::File::create(&big).unwrap();
        let chunk = [b'z'; 4096];
        let mut written = 0usize;
        let err = loop {
            match f.write(&chunk) {
                Ok(n) => written += n,
                Err(e) => break e,
            }
        };
        drop(f);
        eprintln!("wrote {written} bytes before: {err}");
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
        assert!(written > 0 && written <= 64 * 1024, "{written}");
        // A copy-up of a host file needs space too: it fails, the file is unchanged.
        let e = OpenOptions::new()
            .append(true)
            .open(fx.path("/usr/bin/host-tool"))
            .and_then(|mut f| f.write_all(b"more\n"))
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");

        // The merge is intact.
        assert_eq!(
            fx.read("/usr/bin/host-tool").as_deref(),
            Some("host tool\n")
        );
        assert_eq!(fx.read("/usr/share/e").as_deref(), Some("e\n"));
        assert_eq!(fs::metadata(&big).unwrap().len(), written as u64);
        assert_eq!(
            fx.read("/usr/.systemd-sysext/extensions").as_deref(),
            Some("e\n")
        );
        let s = run_t(&fx, &["--class=sysext", "status", "--json=short"], 10);
        s.ok();
        assert_has(&s.out, r#""hierarchy":"/usr","extensions":["e"]"#);

        run_t(&fx, &["--class=sysext", "unmerge"], 10).ok();
        assert_clean(&fx, &before, "after unmerge");
        assert_eq!(fx.ls("/usr/share"), Vec::<String>::new());
        let upper = mdir.join("usr");
        assert_eq!(
            fs::metadata(upper.join("share/big")).unwrap().len(),
            written as u64
        );
        // No half-copied host file in the upper dir.
        assert!(!upper.join("bin/host-tool").exists());
        assert_eq!(
            fx.read("/usr/bin/host-tool").as_deref(),
            Some("host tool\n")
        );

        // The file system is still full; merging again works and shows what fit.
        run_t(&fx, &["--class=sysext", "--mutable=yes", "merge"], 10).ok();
        assert_eq!(fs::metadata(&big).unwrap().size(), written as u64);
        assert_eq!(fx.ls("/usr/share"), ["big", "e"]);
        run_t(&fx, &["--class=sysext", "unmerge"], 10).ok();
        assert_clean(&fx, &before, "after second unmerge");
    });
}
