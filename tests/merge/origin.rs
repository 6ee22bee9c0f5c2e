//! systemd's `origin` in the metadata dir (issue 17): a merge writes it as systemd ≥ 260
//! does, so systemd's refresh skips a merge of ours that nothing changed; and a merge
//! that only has systemd's `origin` (one systemd made: no `extmerge-origin`) is
//! compared the way systemd compares it, so our refresh skips it too — until an
//! extension changes.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use crate::common::*;

/// The value of `"key" : VALUE` in sd-json's pretty output (first occurrence).
fn field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let at = json.find(&format!("\"{key}\" : "))? + key.len() + 5;
    let rest = &json[at..];
    Some(rest[..rest.find([',', '\n']).unwrap_or(rest.len())].trim())
}

/// A merge writes `origin` next to `extmerge-origin`, with systemd's fields.
#[test]
fn merge_writes_systemd_origin() {
    ns_test(|base| {
        let fx = Fx::new(base);
        let a = fx.sysext("a", &[("usr/share/a", "a\n")]);
        fx.run(&["--class=sysext", "merge"]).ok();
        let meta = fx.ls("/usr/.systemd-sysext");
        assert!(meta.contains(&"origin".to_string()), "{meta:?}");
        assert!(meta.contains(&"extmerge-origin".to_string()), "{meta:?}");
        let o = fx.read("/usr/.systemd-sysext/origin").unwrap();
        assert!(
            o.starts_with("{\n\t\"mutable\" : {\n\t\t\"mode\" : \""),
            "{o}"
        );
        assert!(o.ends_with("}\n"), "{o}");
        assert!(o.contains("\t\"extensions\" : {\n\t\t\"a\" : {\n"), "{o}");
        assert_eq!(field(&o, "path"), Some("\"/var/lib/extensions/a\""), "{o}");
        let mnt: u64 = field(&o, "onMountId").unwrap().parse().unwrap();
        assert!(mnt > 0, "{o}");
        assert!(
            o.contains("\"fileHandle\" : {\n\t\t\t\t\"type\" : ") || field(&o, "inode").is_some(),
            "{o}"
        );
        if let Some(h) = field(&o, "handle") {
            let h = h.trim_matches('"');
            assert!(!h.is_empty() && h.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
        }
        let crtime: u64 = field(&o, "crtime").unwrap().parse().unwrap();
        let btime = a.metadata().unwrap().created().ok();
        if let Some(b) = btime {
            let us = b.duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64;
            assert_eq!(crtime, us, "{o}");
        }
        // A directory's mtime is not recorded (systemd's image_make: 0).
        assert_eq!(field(&o, "mtime"), Some("0"), "{o}");
    });
}

/// Remounts `/usr` as systemd would have merged it: an overlay whose top layer is a
/// metadata dir holding `extensions`, `dev` and `origin` — the `origin` extmerge wrote,
/// and no `extmerge-origin`. Returns the new overlay's mount ID.
fn remount_as_systemd_merge(fx: &Fx, base: &Path, ext: &str) -> u64 {
    let origin = fx.read("/usr/.systemd-sysext/origin").unwrap();
    let list = fx.read("/usr/.systemd-sysext/extensions").unwrap();
    fx.run(&["--class=sysext", "unmerge"]).ok();
    let meta = base.join("sd-meta");
    let dot = meta.join(".systemd-sysext");
    fs::create_dir_all(&dot).unwrap();
    fs::write(dot.join("extensions"), list).unwrap();
    fs::write(dot.join("origin"), origin).unwrap();
    let lower = format!(
        "lowerdir={}:{}:{}",
        meta.display(),
        fx.path(&format!("/var/lib/extensions/{ext}/usr")).display(),
        fx.path("/usr").display()
    );
    let st = Command::new("mount")
        .args(["-t", "overlay", "-o", &format!("ro,{lower}"), "sysext"])
        .arg(fx.path("/usr"))
        .status()
        .unwrap();
    assert!(st.success());
    let dev = fs::metadata(fx.path("/usr")).unwrap().dev();
    // Like systemd, `dev` is written after the mount, into the top layer.
    fs::write(dot.join("dev"), devnum(dev)).unwrap();
    assert_eq!(
        fx.ls("/usr/.systemd-sysext"),
        ["dev", "extensions", "origin"],
        "the overlay shows the metadata of a systemd merge"
    );
    fx.overlay_at("/usr").id
}

/// A merge with only systemd's `origin`: a refresh with nothing changed is skipped (the
/// same mount stays); after the extension is replaced (a new directory: new file handle
/// and birth time) the refresh merges again.
#[test]
fn refresh_of_systemd_merge_skips_when_unchanged() {
    ns_test(|base| {
        let fx = Fx::new(base);
        fx.sysext("a", &[("usr/share/a", "a\n")]);
        fx.run(&["--class=sysext", "merge"]).ok();
        let id = remount_as_systemd_merge(&fx, base, "a");

        let r = fx.run(&["--class=sysext", "refresh"]);
        r.ok();
        assert!(
            r.err
                .contains("Skipping extension refresh because no change was found"),
            "{}",
            r.err
        );
        assert_eq!(fx.overlay_at("/usr").id, id, "the mount of /usr is kept");

        // Replaced the way deploy tools do it: another object, so not the same.
        fs::remove_dir_all(fx.path("/var/lib/extensions/a")).unwrap();
        fx.sysext("a", &[("usr/share/a", "a2\n")]);
        let r = fx.run(&["--class=sysext", "refresh"]);
        r.ok();
        assert!(!r.err.contains("no change"), "{}", r.err);
        let new = fx.overlay_at("/usr");
        assert_ne!(new.id, id);
        assert_eq!(fx.read("/usr/share/a").as_deref(), Some("a2\n"));
        // Now it is our merge again, with both files.
        let meta = fx.ls("/usr/.systemd-sysext");
        assert!(meta.contains(&"extmerge-origin".to_string()), "{meta:?}");
        assert!(meta.contains(&"origin".to_string()), "{meta:?}");
    });
}

/// A systemd merge whose `origin` does not match (another mode, an extension added, a
/// file that does not parse) is refreshed.
#[test]
fn refresh_of_systemd_merge_with_other_origin_refreshes() {
    for edit in ["mode", "added", "broken"] {
        ns_test(move |base| {
            let fx = Fx::new(base);
            fx.sysext("a", &[("usr/share/a", "a\n")]);
            fx.run(&["--class=sysext", "merge"]).ok();
            let id = remount_as_systemd_merge(&fx, base, "a");
            let f = base.join("sd-meta/.systemd-sysext/origin");
            match edit {
                "mode" => {
                    let o = fs::read_to_string(&f).unwrap();
                    let mode = field(&o, "mode").unwrap().to_string();
                    let other = if mode == "\"yes\"" {
                        "\"no\""
                    } else {
                        "\"yes\""
                    };
                    let o = o.replacen(
                        &format!("\"mode\" : {mode}"),
                        &format!("\"mode\" : {other}"),
                        1,
                    );
                    fs::write(&f, o).unwrap();
                }
                "added" => fx
                    .sysext("b", &[("usr/share/b", "b\n")])
                    .metadata()
                    .map(drop)
                    .unwrap(),
                _ => fs::write(&f, "{broken").unwrap(),
            }
            let r = fx.run(&["--class=sysext", "refresh"]);
            r.ok();
            assert!(!r.err.contains("no change"), "{edit}: {}", r.err);
            assert_ne!(fx.overlay_at("/usr").id, id, "{edit}");
        });
    }
}
