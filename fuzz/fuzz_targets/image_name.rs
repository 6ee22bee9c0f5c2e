//! `image_name_is_valid` and `release_base_name` on arbitrary strings.
#![no_main]

use extmerge::format::name::{image_name_is_valid, release_base_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(name) = std::str::from_utf8(data) else {
        return;
    };
    let valid = image_name_is_valid(name);
    if valid {
        assert!(!name.contains('/') && !name.is_empty() && name.len() <= 255);
    }
    let base = release_base_name(name);
    // A prefix of the name without the separators it is cut at.
    assert!(name.starts_with(base), "{name:?} -> {base:?}");
    assert!(!base.contains(['_', '+']), "{name:?} -> {base:?}");
    // Taking the base name again changes nothing, unless the base itself ends in a suffix.
    if ![".raw", ".sysext.raw", ".confext.raw"]
        .iter()
        .any(|s| base.ends_with(s))
    {
        assert_eq!(release_base_name(base), base);
    }
});
