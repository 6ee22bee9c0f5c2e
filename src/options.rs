//! What the caller asks for: root, class, hierarchies, mutable mode and flags.
//! Shared by the CLI, the initrd program and the C ABI.

use std::path::PathBuf;

use crate::format::class::Class;

/// `--mutable=`: whether and how the merged hierarchy is writable (systemd-sysext(8)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MutableMode {
    /// Read-only overlay (default).
    #[default]
    No,
    /// Writable; upper dir `/var/lib/extensions.mutable/<h>` is created if missing.
    Yes,
    /// Writable if the upper dir exists, else read-only.
    Auto,
    /// Read-only, with the upper dir's contents as an extra lower layer.
    Import,
    /// Writable; changes go to a tmpfs and are lost at unmerge.
    Ephemeral,
    /// As `Ephemeral`, with the persistent upper dir as an extra lower layer.
    EphemeralImport,
}

impl MutableMode {
    /// Parses a mode; booleans are accepted as systemd does (`true` → yes, `0` → no).
    pub fn parse(s: &str) -> Option<MutableMode> {
        Some(match s {
            "auto" => MutableMode::Auto,
            "import" => MutableMode::Import,
            "ephemeral" => MutableMode::Ephemeral,
            "ephemeral-import" => MutableMode::EphemeralImport,
            _ => match parse_boolean(s)? {
                true => MutableMode::Yes,
                false => MutableMode::No,
            },
        })
    }

    /// The name systemd uses.
    pub fn as_str(self) -> &'static str {
        match self {
            MutableMode::No => "no",
            MutableMode::Yes => "yes",
            MutableMode::Auto => "auto",
            MutableMode::Import => "import",
            MutableMode::Ephemeral => "ephemeral",
            MutableMode::EphemeralImport => "ephemeral-import",
        }
    }
}

pub use crate::format::text::parse_boolean;

/// Everything a merge, unmerge, refresh, status or list needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The root whose extensions and hierarchies are used (`--root`, default `/`).
    pub root: PathBuf,
    /// Hierarchies to overlay; `None` = the class default or the `SYSTEMD_*_HIERARCHIES`
    /// environment variable.
    pub hierarchies: Option<Vec<String>>,
    /// `--force`: merge without checking extension-release files.
    pub force: bool,
    /// `--mutable=`.
    pub mutable: MutableMode,
    /// `--noexec=`: `None` = the class default (confext: noexec, sysext: exec).
    pub noexec: Option<bool>,
    /// `--no-reload`: never ask the service manager to reload.
    pub no_reload: bool,
    /// `--always-refresh`: refresh even when nothing changed.
    pub always_refresh: bool,
    /// `--image-policy=`: overrides the per-image default policy for disk images.
    pub image_policy: Option<crate::format::policy::ImagePolicy>,
    /// The environment variables that apply, as the front-end read them.
    pub env: Environment,
}

/// `SYSTEMD_OS_RELEASE`: the host's os-release file inside the root.
pub const OS_RELEASE_ENV: &str = "SYSTEMD_OS_RELEASE";

/// The environment variables extmerge obeys, read once by a front-end
/// ([`Environment::from_process`]) and passed down: the library itself never reads the
/// environment, so an embedding program decides what applies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Environment {
    /// `SYSTEMD_SYSEXT_HIERARCHIES`: colon-separated hierarchies of sysext.
    pub sysext_hierarchies: Option<String>,
    /// `SYSTEMD_CONFEXT_HIERARCHIES`.
    pub confext_hierarchies: Option<String>,
    /// `SYSTEMD_SYSEXT_MUTABLE_MODE`, as written.
    pub sysext_mutable: Option<String>,
    /// `SYSTEMD_CONFEXT_MUTABLE_MODE`, as written.
    pub confext_mutable: Option<String>,
    /// `SYSTEMD_OS_RELEASE`: the host's os-release file inside the root.
    pub os_release: Option<std::ffi::OsString>,
    /// `EXTMERGE_LAYERS`: force how overlay layers are handed to the kernel
    /// (`append`, `joined`, `legacy`), for tests of older kernels' paths.
    pub layers: Option<String>,
    /// `EXTMERGE_REPLACE=detach`: refresh by detach + attach even where
    /// `MOVE_MOUNT_BENEATH` works, for tests of older kernels' path.
    pub replace: Option<String>,
    /// Fault injection (builds with the `fault-injection` feature only).
    pub faults: crate::fault::FaultSettings,
}

impl Environment {
    /// Reads the variables of this process.
    pub fn from_process() -> Environment {
        let var = |k: &str| std::env::var(k).ok();
        Environment {
            sysext_hierarchies: var(Class::Sysext.hierarchies_env()),
            confext_hierarchies: var(Class::Confext.hierarchies_env()),
            sysext_mutable: var(Class::Sysext.mutable_env()),
            confext_mutable: var(Class::Confext.mutable_env()),
            os_release: std::env::var_os(OS_RELEASE_ENV),
            layers: var("EXTMERGE_LAYERS"),
            replace: var("EXTMERGE_REPLACE"),
            faults: crate::fault::FaultSettings::from_process(),
        }
    }

    /// The hierarchy list of `class` from the environment, as written.
    pub fn hierarchies(&self, class: Class) -> Option<&str> {
        match class {
            Class::Sysext => self.sysext_hierarchies.as_deref(),
            Class::Confext => self.confext_hierarchies.as_deref(),
        }
    }

    /// The class's `$SYSTEMD_*_MUTABLE_MODE`: `Ok(None)` when unset, `Err` with a message
    /// when it does not parse (systemd warns and ignores it).
    pub fn mutable(&self, class: Class) -> Result<Option<MutableMode>, String> {
        let v = match class {
            Class::Sysext => &self.sysext_mutable,
            Class::Confext => &self.confext_mutable,
        };
        match v {
            None => Ok(None),
            Some(v) => MutableMode::parse(v).map(Some).ok_or_else(|| {
                format!(
                    "ignoring invalid {}={}",
                    class.mutable_env(),
                    crate::format::escape::esc(v)
                )
            }),
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            root: PathBuf::from("/"),
            hierarchies: None,
            force: false,
            mutable: MutableMode::No,
            noexec: None,
            no_reload: false,
            always_refresh: false,
            image_policy: None,
            env: Environment::default(),
        }
    }
}

impl Options {
    /// Hierarchies for `class`: explicit ones, else the environment's, else the default.
    /// The environment variable is a colon-separated list of absolute paths.
    ///
    /// Two entries that name the same directory after normalisation (`/usr`, `/usr/`,
    /// `/usr//`) or one inside the other (`/usr`, `/usr/lib`) are refused, naming the
    /// list and both entries: each would get an overlay of its own, stacked on or
    /// hidden by the other's, and unmerge could not tell them apart.
    pub fn hierarchies_for(&self, class: Class) -> Result<Vec<String>, String> {
        let list = match &self.hierarchies {
            Some(h) => h.clone(),
            None => match self.env.hierarchies(class) {
                Some(v) => v
                    .split(':')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
                None => class
                    .default_hierarchies()
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            },
        };
        check_overlap(&list, self.hierarchies_source(class))?;
        for h in &list {
            if !hierarchy_is_valid(h) {
                return Err(format!(
                    "invalid hierarchy {h:?}: must be an absolute, normalized path other than /"
                ));
            }
        }
        Ok(list)
    }
}

impl Options {
    /// Where [`Options::hierarchies_for`] takes the list from, for messages: the
    /// environment variable's name when that is used.
    pub fn hierarchies_source(&self, class: Class) -> &'static str {
        match &self.hierarchies {
            Some(_) => "hierarchy list",
            None if self.env.hierarchies(class).is_some() => class.hierarchies_env(),
            None => "default hierarchies",
        }
    }
}

/// A hierarchy must be absolute, normalized (no `.`, `..`, `//`, trailing `/`) and not `/`.
pub fn hierarchy_is_valid(h: &str) -> bool {
    h.len() > 1
        && h.starts_with('/')
        && !h.ends_with('/')
        && h[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// The components of an absolute path with empty and `.` components dropped: `/usr`,
/// `/usr/`, `/usr//` and `/./usr` are all `["usr"]`. `..` is kept as it is (such a
/// hierarchy is refused as not normalized anyway).
fn normalized_components(h: &str) -> Vec<&str> {
    h.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

/// Refuses two absolute entries of `list` that are the same directory after
/// normalisation, one inside the other, or two whose [`hierarchy_component`] is the
/// same (`/a/b`, `/a.b`: one metadata dir in the staging area, one mutable dir);
/// `source` names the list in the message (`SYSTEMD_SYSEXT_HIERARCHIES`).
pub fn check_overlap(list: &[String], source: &str) -> Result<(), String> {
    check_overlap_by(list, source, true, |h| {
        h.starts_with('/').then(|| h.to_string())
    })
}

/// [`check_overlap`] on what `resolve` makes of each entry (e.g. its path in the root
/// with symlinks resolved; `None`: left out); `nested` also refuses one inside another.
/// Where the resolution differs from the entry, the message says so.
pub fn check_overlap_by(
    list: &[String],
    source: &str,
    nested: bool,
    resolve: impl Fn(&str) -> Option<String>,
) -> Result<(), String> {
    let resolved: Vec<(&String, String)> = list
        .iter()
        .filter_map(|h| resolve(h).map(|r| (h, r)))
        .collect();
    for (i, (a, ra)) in resolved.iter().enumerate() {
        let ca = normalized_components(ra);
        for (b, rb) in &resolved[i + 1..] {
            let cb = normalized_components(rb);
            let note = if ra != *a || rb != *b {
                format!(" (in the root {a:?} is {ra:?} and {b:?} is {rb:?})")
            } else {
                String::new()
            };
            if ca == cb {
                return Err(format!(
                    "{source}: {a:?} and {b:?} are the same hierarchy: each may be listed only \
                     once{note}"
                ));
            }
            let (inner, outer) = match (cb.starts_with(&ca), ca.starts_with(&cb)) {
                (true, _) if nested => (b, a),
                (_, true) if nested => (a, b),
                _ => {
                    let (na, nb) = (ca.join("."), cb.join("."));
                    if na == nb {
                        return Err(format!(
                            "{source}: {a:?} and {b:?} share the name {na:?} of their \
                             metadata, mutable and work directories: only one may be \
                             listed{note}"
                        ));
                    }
                    continue;
                }
            };
            return Err(format!(
                "{source}: {inner:?} is inside {outer:?}: hierarchies must not be nested{note}"
            ));
        }
    }
    Ok(())
}

/// `/usr` → `usr`, `/foo/bar` → `foo.bar`: the single path component systemd uses in
/// per-hierarchy names (`/var/lib/extensions.mutable/usr`, `.systemd-usr-workdir`).
pub fn hierarchy_component(h: &str) -> String {
    h.trim_matches('/').replace('/', ".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutable_modes() {
        for (s, m) in [
            ("no", Some(MutableMode::No)),
            ("false", Some(MutableMode::No)),
            ("0", Some(MutableMode::No)),
            ("yes", Some(MutableMode::Yes)),
            ("TRUE", Some(MutableMode::Yes)),
            ("auto", Some(MutableMode::Auto)),
            ("import", Some(MutableMode::Import)),
            ("ephemeral", Some(MutableMode::Ephemeral)),
            ("ephemeral-import", Some(MutableMode::EphemeralImport)),
            ("sometimes", None),
        ] {
            assert_eq!(MutableMode::parse(s), m, "{s}");
        }
    }

    #[test]
    fn hierarchies() {
        for (h, ok) in [
            ("/usr", true),
            ("/foo/bar", true),
            ("/", false),
            ("usr", false),
            ("/usr/", false),
            ("/usr/../etc", false),
            ("//usr", false),
            ("/./usr", false),
        ] {
            assert_eq!(hierarchy_is_valid(h), ok, "{h}");
        }
        assert_eq!(hierarchy_component("/usr"), "usr");
        assert_eq!(hierarchy_component("/foo/bar"), "foo.bar");
        let o = Options {
            hierarchies: Some(vec!["/usr".into(), "bad".into()]),
            ..Options::default()
        };
        assert!(o.hierarchies_for(Class::Sysext).is_err());
    }

    #[test]
    fn overlapping_hierarchies_are_refused() {
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let e = "SYSTEMD_SYSEXT_HIERARCHIES";
        for (list, err) in [
            (
                &["/usr", "/usr"][..],
                r#""/usr" and "/usr" are the same hierarchy"#,
            ),
            (&["/usr", "/usr/"], r#""/usr" and "/usr/" are the same"#),
            (
                &["/opt", "/usr//", "/usr"],
                r#""/usr//" and "/usr" are the"#,
            ),
            (&["/usr", "/./usr"], r#""/usr" and "/./usr" are the same"#),
            (
                &["/usr", "/usr/lib"],
                r#""/usr/lib" is inside "/usr": hierarchies must not be nested"#,
            ),
            (
                &["/usr/lib/", "/opt", "/usr"],
                r#""/usr/lib/" is inside "/usr""#,
            ),
            (
                &["/srv/a.b", "/srv/a/b"],
                r#""/srv/a.b" and "/srv/a/b" share the name "srv.a.b""#,
            ),
        ] {
            let got = check_overlap(&l(list), e).unwrap_err();
            assert!(got.starts_with(&format!("{e}: ")), "{list:?}: {got}");
            assert!(got.contains(err), "{list:?}: {got}");
        }
        for ok in [
            &["/usr", "/opt"][..],
            &["/usr", "/usrx", "/us"],
            &["/srv/a", "/srv/ab", "/srv/b/a"],
            &["/usr", "relative/usr"],
        ] {
            assert_eq!(check_overlap(&l(ok), e), Ok(()), "{ok:?}");
        }
        let o = Options {
            hierarchies: Some(l(&["/etc", "/etc/ssh"])),
            ..Options::default()
        };
        assert_eq!(
            o.hierarchies_for(Class::Confext).unwrap_err(),
            r#"hierarchy list: "/etc/ssh" is inside "/etc": hierarchies must not be nested"#
        );
    }
}
