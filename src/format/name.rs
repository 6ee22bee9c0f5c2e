//! Extension names: validity (systemd's `image_name_is_valid`) and the base name used
//! for the extension-release fallback.

/// systemd's `image_name_is_valid`: a valid file name (non-empty, not `.`/`..`, no `/`,
/// at most 255 bytes), no control characters, valid UTF-8 (guaranteed by `&str`), and
/// not a `.#` temporary file.
pub fn image_name_is_valid(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 255
        && !name.starts_with(".#")
        && !name.bytes().any(|b| b == b'/' || b < 0x20 || b == 0x7f)
}

/// The name an `extension-release.BASE` fallback file must carry for image `name`:
/// `.sysext.raw` / `.confext.raw` / `.raw` stripped, then cut at the first `_` or `+`
/// (so `foo_1.2_x86-64` accepts `extension-release.foo`).
pub fn release_base_name(name: &str) -> &str {
    let stripped = [".sysext.raw", ".confext.raw", ".raw"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    match stripped.find(['_', '+']) {
        Some(i) => &stripped[..i],
        None => stripped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity() {
        for (name, ok) in [
            ("foo", true),
            ("a b", true),
            (".foo", true),
            ("foo_1.2+3~x", true),
            ("", false),
            (".", false),
            ("..", false),
            ("a/b", false),
            ("../etc", false),
            (".#foo", false),
            ("tab\there", false),
            ("nl\n", false),
            ("del\x7f", false),
        ] {
            assert_eq!(image_name_is_valid(name), ok, "{name:?}");
        }
        assert!(image_name_is_valid(&"x".repeat(255)));
        assert!(!image_name_is_valid(&"x".repeat(256)));
    }

    #[test]
    fn base_names() {
        for (name, base) in [
            ("foo", "foo"),
            ("foo_1.2_x86-64", "foo"),
            ("foo+3", "foo"),
            ("foo.raw", "foo"),
            ("foo.sysext.raw", "foo"),
            ("foo_1.confext.raw", "foo"),
            ("_x", ""),
        ] {
            assert_eq!(release_base_name(name), base, "{name}");
        }
    }
}
