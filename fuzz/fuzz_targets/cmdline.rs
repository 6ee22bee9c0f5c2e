//! The kernel command line (`Cmdline::from_bytes`, `split_words`) and the real root's
//! fstab (`fstab_var_mounts`), as `extmerge-initrd` reads them, on arbitrary bytes.
#![no_main]

use extmerge::format::class::Class;
use extmerge::format::cmdline::{fstab_var_mounts, split_words, Cmdline};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let c = Cmdline::from_bytes(data);
    assert_eq!(c, Cmdline::parse(&text));
    let words = split_words(&text);
    assert_eq!(c.args().len(), words.len());
    for ((k, v), w) in c.args().iter().zip(&words) {
        assert!(!k.contains('='), "{k:?}");
        match v {
            Some(v) => assert_eq!(format!("{k}={v}"), *w),
            None => assert_eq!(k, w),
        }
    }
    for class in [Class::Sysext, Class::Confext] {
        for own in [false, true] {
            let _ = c.class_enabled(class, own);
        }
    }
    if !text.contains(['"', '\'']) {
        // Without quotes, words are the whitespace-separated pieces...
        let plain: Vec<&str> = text
            .split([' ', '\t', '\n', '\r'])
            .filter(|w| !w.is_empty())
            .collect();
        assert_eq!(words, plain);
        // ...and a switch appended last decides.
        let off = Cmdline::parse(&format!(
            "{text} extmerge=0 extmerge.debug systemd.sysext=off"
        ));
        assert!(!off.enabled && off.debug && !off.class_enabled(Class::Sysext, false));
        assert_eq!(off.fatal, c.fatal);
    }
    for m in fstab_var_mounts(&text) {
        assert!(m == "/var" || m.starts_with("/var/"), "{m:?}");
    }
});
