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
    /// `sysext.conf` / `confext.conf` and their drop-ins, as the front-end read them
    /// (`extmerge::inspect::conf::load`): below the command line and the environment.
    pub config: Config,
    /// Where extensions are looked for, instead of the class's standard search
    /// directories (`--search=`, `--unit=`); `None`: the standard ones.
    pub search: Option<Search>,
    /// A service's own extensions (`--pid` into another namespace, `--unit`): matched
    /// as systemd matches `ExtensionDirectories=`/`ExtensionImages=` — against the
    /// service's root's os-release, any scope (`SYSEXT_SCOPE=`/`CONFEXT_SCOPE=` not
    /// checked), and an extension that does not match is an error, not skipped.
    pub per_service: bool,
    /// Records phase times and verdicts for a report (`extmerge-initrd`'s boot report);
    /// `None`: nothing is measured.
    pub recorder: Option<crate::record::Recorder>,
    /// Another root whose `/.extra` images are merged too, after the root's own
    /// ([`crate::inspect::discover::discover_extra`]): `extmerge-initrd`'s
    /// `extmerge.extra=sysroot` (the initrd's `/`, its UKI and ESP extensions, onto the
    /// real root), under the strict `/.extra` image policy.
    pub extra_root: Option<PathBuf>,
}

/// Explicit sources of extensions. Entries inside are extensions exactly as in the
/// standard directories (directories, `.raw`, `NAME.v/`), with the same matching,
/// picking, shadowing and image policy; the directories are resolved inside the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Search {
    /// These directories, for every class (`--search=DIR`, repeatable).
    Dirs(Vec<String>),
    /// A unit's own: `UNIT.confext.d/` / `UNIT.sysext.d/` in the unit directories
    /// ([`crate::format::unit::unit_search_dirs`]).
    Unit(String),
}

/// What one class's configuration file sets (`[SysExt]` / `[ConfExt]` of
/// `systemd/sysext.conf` / `systemd/confext.conf` and their `.d/` drop-ins);
/// `None`: not set there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClassConfig {
    /// `Mutable=`.
    pub mutable: Option<MutableMode>,
    /// `ImagePolicy=` (parsed gracefully, as systemd's `config_parse_image_policy`).
    pub image_policy: Option<crate::format::policy::ImagePolicy>,
}

/// The configuration files of both classes. Read once by a front-end, like
/// [`Environment`]: the library itself reads none, so an embedding program decides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// From `sysext.conf`.
    pub sysext: ClassConfig,
    /// From `confext.conf`.
    pub confext: ClassConfig,
}

impl Config {
    /// The settings of `class`.
    pub fn class(&self, class: Class) -> &ClassConfig {
        match class {
            Class::Sysext => &self.sysext,
            Class::Confext => &self.confext,
        }
    }

    /// The settings of `class`, to fill in.
    pub fn class_mut(&mut self, class: Class) -> &mut ClassConfig {
        match class {
            Class::Sysext => &mut self.sysext,
            Class::Confext => &mut self.confext,
        }
    }
}

/// `SYSTEMD_SYSEXT_OVERLAYFS_MOUNT_OPTIONS` / `SYSTEMD_CONFEXT_OVERLAYFS_MOUNT_OPTIONS`.
pub fn overlay_options_env(class: Class) -> &'static str {
    match class {
        Class::Sysext => "SYSTEMD_SYSEXT_OVERLAYFS_MOUNT_OPTIONS",
        Class::Confext => "SYSTEMD_CONFEXT_OVERLAYFS_MOUNT_OPTIONS",
    }
}

/// A generic mount flag that an overlay mount option string may set or clear; applied
/// as a mount attribute of the new mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MountAttr {
    /// `ro` / `rw`.
    ReadOnly,
    /// `nosuid` / `suid`.
    NoSuid,
    /// `nodev` / `dev`.
    NoDev,
    /// `noexec` / `exec`.
    NoExec,
    /// `noatime` / `atime`.
    NoAtime,
    /// `relatime` / `norelatime`.
    RelAtime,
    /// `strictatime` / `nostrictatime`.
    StrictAtime,
    /// `nodiratime` / `diratime`.
    NoDirAtime,
    /// `nosymfollow` / `symfollow`.
    NoSymfollow,
}

/// One entry of an overlay mount option string, sorted as systemd's
/// `mount_option_mangle()` sorts them before `mount(2)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OverlayOption {
    /// A generic mount flag, set (`true`) or cleared (`false`).
    Attr(MountAttr, bool),
    /// An option for overlayfs itself (or a superblock flag such as `sync`): key, value.
    Fs(String, Option<String>),
}

/// Parses `SYSTEMD_*_OVERLAYFS_MOUNT_OPTIONS` as systemd applies it: comma-separated
/// (quotes keep commas), generic mount flags become mount attributes, userspace-only
/// options (`defaults`, `auto`, `nofail`, `x-*`…) are dropped, the rest goes to
/// overlayfs. Refused, with a warning each (the second value): the layer options
/// (`lowerdir`, `upperdir`, `workdir`, `lowerdir+`, `datadir+`: extmerge passes the
/// layers it checked as file descriptors) and the mount-operation flags (`bind`,
/// `remount`, `move`, propagation).
pub fn parse_overlay_options(s: &str) -> (Vec<OverlayOption>, Vec<String>) {
    let mut words = Vec::new();
    let (mut cur, mut quote) = (String::new(), None::<char>);
    for c in s.chars() {
        match (quote, c) {
            (None, ',') => words.push(std::mem::take(&mut cur)),
            (None, '"' | '\'') => {
                quote = Some(c);
                cur.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                cur.push(c);
            }
            _ => cur.push(c),
        }
    }
    words.push(cur);
    let (mut out, mut warnings) = (Vec::new(), Vec::new());
    for w in words.into_iter().filter(|w| !w.is_empty()) {
        use MountAttr::*;
        let attr = match w.as_str() {
            "ro" => Some((ReadOnly, true)),
            "rw" => Some((ReadOnly, false)),
            "nosuid" => Some((NoSuid, true)),
            "suid" => Some((NoSuid, false)),
            "nodev" => Some((NoDev, true)),
            "dev" => Some((NoDev, false)),
            "noexec" => Some((NoExec, true)),
            "exec" => Some((NoExec, false)),
            "noatime" => Some((NoAtime, true)),
            "atime" => Some((NoAtime, false)),
            "relatime" => Some((RelAtime, true)),
            "norelatime" => Some((RelAtime, false)),
            "strictatime" => Some((StrictAtime, true)),
            "nostrictatime" => Some((StrictAtime, false)),
            "nodiratime" => Some((NoDirAtime, true)),
            "diratime" => Some((NoDirAtime, false)),
            "nosymfollow" => Some((NoSymfollow, true)),
            "symfollow" => Some((NoSymfollow, false)),
            _ => None,
        };
        if let Some((a, on)) = attr {
            out.push(OverlayOption::Attr(a, on));
            continue;
        }
        let (k, v) = match w.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (w.as_str(), None),
        };
        match k {
            "defaults" | "auto" | "noauto" | "user" | "nouser" | "users" | "owner" | "noowner"
            | "group" | "nogroup" | "_netdev" | "nofail" | "comment" => {}
            k if k.starts_with("x-") || k.starts_with("X-") => {}
            "lowerdir" | "upperdir" | "workdir" | "lowerdir+" | "datadir+" => {
                warnings.push(format!(
                    "ignoring overlay option {}: the layers are extmerge's",
                    esc_opt(&w)
                ))
            }
            "bind" | "rbind" | "remount" | "move" | "private" | "rprivate" | "shared"
            | "rshared" | "slave" | "rslave" | "unbindable" | "runbindable" => {
                warnings.push(format!(
                    "ignoring overlay option {}: not a mount option",
                    esc_opt(&w)
                ))
            }
            k => out.push(OverlayOption::Fs(k.to_string(), v)),
        }
    }
    (out, warnings)
}

fn esc_opt(s: &str) -> String {
    crate::format::escape::esc(s).to_string()
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
    /// `SYSTEMD_SYSEXT_OVERLAYFS_MOUNT_OPTIONS`, as written: when set (even empty), it
    /// replaces the mutable modes' default overlay options.
    pub sysext_overlay_options: Option<String>,
    /// `SYSTEMD_CONFEXT_OVERLAYFS_MOUNT_OPTIONS`, as written.
    pub confext_overlay_options: Option<String>,
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
            sysext_overlay_options: var(overlay_options_env(Class::Sysext)),
            confext_overlay_options: var(overlay_options_env(Class::Confext)),
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

    /// The class's `$SYSTEMD_*_OVERLAYFS_MOUNT_OPTIONS`, as written.
    pub fn overlay_options(&self, class: Class) -> Option<&str> {
        match class {
            Class::Sysext => self.sysext_overlay_options.as_deref(),
            Class::Confext => self.confext_overlay_options.as_deref(),
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
            config: Config::default(),
            search: None,
            per_service: false,
            recorder: None,
            extra_root: None,
        }
    }
}

impl Options {
    /// Discovery of `class` in `root` as these options say: the search directories
    /// ([`search_dirs`](Self::search_dirs)), then the [`extra_root`](Self::extra_root)'s
    /// `/.extra` images.
    pub fn discover(
        &self,
        root: &crate::inspect::fsutil::Root,
        class: Class,
        initrd: bool,
    ) -> Result<crate::inspect::discover::Discovery, crate::inspect::discover::DiscoverError> {
        use crate::inspect::discover;
        let mut found = discover::discover_in(root, class, &self.search_dirs(class, initrd))?;
        if let Some(p) = &self.extra_root {
            let extra = crate::inspect::fsutil::Root::open(p).map_err(|source| {
                discover::DiscoverError {
                    path: p.clone(),
                    source,
                }
            })?;
            discover::discover_extra(&mut found, &std::sync::Arc::new(extra), class)?;
        }
        Ok(found)
    }

    /// The directories `class`'s extensions are looked for in, strongest first.
    pub fn search_dirs(&self, class: Class, initrd: bool) -> Vec<String> {
        match &self.search {
            None => class
                .search_dirs(initrd)
                .iter()
                .map(|d| d.to_string())
                .collect(),
            Some(Search::Dirs(d)) => d.clone(),
            Some(Search::Unit(u)) => crate::format::unit::unit_search_dirs(u, class),
        }
    }

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

    #[test]
    fn overlay_options_as_systemd_sorts_them() {
        use MountAttr::*;
        let (o, w) = parse_overlay_options(
            "metacopy=off,noatime,,defaults,x-foo=1,nofail,redirect_dir=on,ro,exec,\
             xino=\"a,b\",sync,lowerdir=/x,bind",
        );
        assert_eq!(
            o,
            vec![
                OverlayOption::Fs("metacopy".into(), Some("off".into())),
                OverlayOption::Attr(NoAtime, true),
                OverlayOption::Fs("redirect_dir".into(), Some("on".into())),
                OverlayOption::Attr(ReadOnly, true),
                OverlayOption::Attr(NoExec, false),
                OverlayOption::Fs("xino".into(), Some("\"a,b\"".into())),
                OverlayOption::Fs("sync".into(), None),
            ]
        );
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("lowerdir=/x") && w[1].contains("bind"),
            "{w:?}"
        );
        assert_eq!(parse_overlay_options(""), (vec![], vec![]));
    }

    #[test]
    fn environment_reads_overlay_options() {
        let e = Environment {
            confext_overlay_options: Some(String::new()),
            ..Environment::default()
        };
        assert_eq!(e.overlay_options(Class::Sysext), None);
        assert_eq!(e.overlay_options(Class::Confext), Some(""));
        assert_eq!(
            overlay_options_env(Class::Sysext),
            "SYSTEMD_SYSEXT_OVERLAYFS_MOUNT_OPTIONS"
        );
    }

    #[test]
    fn mutable_precedence_command_line_environment_configuration_default() {
        use crate::context::Context;
        let mut o = Options::default();
        let ctx = |o: &Options, cli: Option<MutableMode>| {
            let mut c = Context::new(o.clone(), &[Class::Sysext]);
            c.mutable = cli;
            c.options_for(Class::Sysext).mutable
        };
        assert_eq!(ctx(&o, None), MutableMode::No);
        o.config.sysext.mutable = Some(MutableMode::Import);
        o.config.confext.mutable = Some(MutableMode::Yes);
        assert_eq!(ctx(&o, None), MutableMode::Import);
        o.env.sysext_mutable = Some("bogus".into());
        assert_eq!(
            ctx(&o, None),
            MutableMode::Import,
            "an invalid variable is ignored"
        );
        o.env.sysext_mutable = Some("auto".into());
        assert_eq!(ctx(&o, None), MutableMode::Auto);
        assert_eq!(
            ctx(&o, Some(MutableMode::Ephemeral)),
            MutableMode::Ephemeral
        );
        // Context::new: a mode other than `no` in the options is chosen; `no` is not.
        let mut o2 = o.clone();
        o2.mutable = MutableMode::Yes;
        let c = Context::new(o2.clone(), &[Class::Sysext]);
        assert_eq!(c.options_for(Class::Sysext).mutable, MutableMode::Yes);
        o2.mutable = MutableMode::No;
        o2.env.sysext_mutable = None;
        let c = Context::new(o2, &[Class::Sysext]);
        assert_eq!(c.options_for(Class::Sysext).mutable, MutableMode::Import);
        // The image policy: explicit beats the configuration.
        let conf = crate::format::policy::ImagePolicy::parse("root=verity").unwrap();
        let cli = crate::format::policy::ImagePolicy::parse("root=signed").unwrap();
        o.config.sysext.image_policy = Some(conf.clone());
        let c = Context::new(o.clone(), &[Class::Sysext]);
        assert_eq!(c.options_for(Class::Sysext).image_policy, Some(conf));
        assert_eq!(c.options_for(Class::Confext).image_policy, None);
        o.image_policy = Some(cli.clone());
        let c = Context::new(o, &[Class::Sysext]);
        assert_eq!(c.options_for(Class::Sysext).image_policy, Some(cli));
    }
}
