//! Unit names and the per-unit extension directories (`--unit=NAME`): the search list
//! of a service's own extensions, `NAME.confext.d/` (and `NAME.sysext.d/`) in the unit
//! directories, in the order systemd reads unit drop-ins, so an entry in an earlier one
//! shadows a same-named entry in a later one, as `NAME.d/*.conf` drop-ins do.

use crate::format::class::Class;

/// The unit directories of the system manager, earliest (strongest) first
/// (systemd.unit(5), "Unit File Load Path", without the generator directories).
pub const UNIT_DIRS: [&str; 4] = [
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
];

/// Unit types (systemd's `unit_type_table`).
const TYPES: [&str; 11] = [
    "service",
    "socket",
    "target",
    "device",
    "mount",
    "automount",
    "swap",
    "timer",
    "path",
    "slice",
    "scope",
];

/// Checks `name` as systemd's `unit_name_is_valid()` does for plain names, instances
/// and templates: at most 255 bytes, `[A-Za-z0-9:_.\\-]` with at most one `@`, a
/// non-empty prefix and a known type suffix. It becomes a path component and a cgroup
/// name, so nothing else (no `/`, no `..` alone) may pass.
pub fn check_unit_name(name: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "invalid unit name \"{}\": {why}",
            name.escape_debug()
        ))
    };
    if name.is_empty() || name.len() > 255 {
        return bad("must be 1 to 255 bytes");
    }
    let Some((stem, suffix)) = name.rsplit_once('.') else {
        return bad("has no type suffix (.service, .socket…)");
    };
    if !TYPES.contains(&suffix) {
        return bad("unknown unit type");
    }
    let valid = |c: char| c.is_ascii_alphanumeric() || ":-_.\\".contains(c);
    let (prefix, instance) = match stem.split_once('@') {
        Some((p, i)) => (p, Some(i)),
        None => (stem, None),
    };
    if prefix.is_empty() || !prefix.chars().all(valid) {
        return bad("invalid characters or empty prefix");
    }
    if let Some(i) = instance {
        if !i.chars().all(valid) {
            return bad("invalid characters in the instance");
        }
    }
    Ok(())
}

/// The search directories of `unit` for `class`: `UNIT.confext.d` / `UNIT.sysext.d`
/// in each of [`UNIT_DIRS`], in that order.
pub fn unit_search_dirs(unit: &str, class: Class) -> Vec<String> {
    UNIT_DIRS
        .iter()
        .map(|d| format!("{d}/{unit}.{}.d", class.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_as_systemd() {
        for ok in [
            "foo.service",
            "a@b.service",
            "getty@.service",
            "x-y_z:1\\x2d.socket",
        ] {
            assert!(check_unit_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "foo",
            ".service",
            "foo.bar",
            "../x.service",
            "a/b.service",
            "a@b@c.service",
            "a b.service",
            "@x.service",
        ] {
            assert!(check_unit_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_unit_name(&format!("{}.service", "a".repeat(247))).is_ok());
        assert!(check_unit_name(&format!("{}.service", "a".repeat(248))).is_err());
    }

    #[test]
    fn unit_dirs_in_drop_in_order() {
        assert_eq!(
            unit_search_dirs("web.service", Class::Confext),
            [
                "/etc/systemd/system/web.service.confext.d",
                "/run/systemd/system/web.service.confext.d",
                "/usr/local/lib/systemd/system/web.service.confext.d",
                "/usr/lib/systemd/system/web.service.confext.d",
            ]
        );
        assert_eq!(
            unit_search_dirs("web.service", Class::Sysext)[0],
            "/etc/systemd/system/web.service.sysext.d"
        );
    }
}
