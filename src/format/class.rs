//! The two kinds of extension and everything that differs between them.
//!
//! systemd keeps these facts scattered over `sysext.c`, `discover-image.c` and
//! `extension-util.c`; here they sit in one table so that every other module asks
//! the class instead of repeating a string.

use std::fmt;

/// System extension (overlays `/usr`, `/opt`) or configuration extension (`/etc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// `systemd-sysext`: `/usr` and `/opt`.
    Sysext,
    /// `systemd-confext`: `/etc`.
    Confext,
}

impl Class {
    /// Both classes, confext first: systemd orders `systemd-confext.service` before
    /// `systemd-sysext.service`, and we merge in the same order.
    pub const ALL: [Class; 2] = [Class::Confext, Class::Sysext];

    /// `sysext` or `confext`, as in `--class=` and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Sysext => "sysext",
            Class::Confext => "confext",
        }
    }

    /// Parses `sysext` / `confext`.
    pub fn from_name(s: &str) -> Option<Class> {
        match s {
            "sysext" => Some(Class::Sysext),
            "confext" => Some(Class::Confext),
            _ => None,
        }
    }

    /// Search directories inside the root, highest precedence first (`discover-image.c`,
    /// v258+). `initrd` selects the list used when `<root>/etc/initrd-release` exists.
    pub fn search_dirs(self, initrd: bool) -> &'static [&'static str] {
        match (self, initrd) {
            (Class::Sysext, false) => {
                &["/etc/extensions", "/run/extensions", "/var/lib/extensions"]
            }
            (Class::Sysext, true) => &[
                "/etc/extensions",
                "/run/extensions",
                "/var/lib/extensions",
                "/.extra/sysext",
                "/.extra/global_sysext",
            ],
            (Class::Confext, false) => &[
                "/run/confexts",
                "/var/lib/confexts",
                "/usr/local/lib/confexts",
                "/usr/lib/confexts",
            ],
            (Class::Confext, true) => &[
                "/run/confexts",
                "/var/lib/confexts",
                "/usr/local/lib/confexts",
                "/.extra/confext",
                "/.extra/global_confext",
            ],
        }
    }

    /// Hierarchies overlaid by default.
    pub fn default_hierarchies(self) -> &'static [&'static str] {
        match self {
            Class::Sysext => &["/usr", "/opt"],
            Class::Confext => &["/etc"],
        }
    }

    /// Environment variable that overrides [`Class::default_hierarchies`] (colon-separated).
    pub fn hierarchies_env(self) -> &'static str {
        match self {
            Class::Sysext => "SYSTEMD_SYSEXT_HIERARCHIES",
            Class::Confext => "SYSTEMD_CONFEXT_HIERARCHIES",
        }
    }

    /// Environment variable that gives the default `--mutable=` mode.
    pub fn mutable_env(self) -> &'static str {
        match self {
            Class::Sysext => "SYSTEMD_SYSEXT_MUTABLE_MODE",
            Class::Confext => "SYSTEMD_CONFEXT_MUTABLE_MODE",
        }
    }

    /// Name of the metadata directory at the top of a merged hierarchy.
    pub fn metadata_dir(self) -> &'static str {
        match self {
            Class::Sysext => ".systemd-sysext",
            Class::Confext => ".systemd-confext",
        }
    }

    /// File in the metadata directory listing the merged extensions.
    pub fn list_file(self) -> &'static str {
        match self {
            Class::Sysext => "extensions",
            Class::Confext => "confexts",
        }
    }

    /// Directory (relative to an extension's root) holding `extension-release.NAME`.
    pub fn release_dir(self) -> &'static str {
        match self {
            Class::Sysext => "usr/lib/extension-release.d",
            Class::Confext => "etc/extension-release.d",
        }
    }

    /// os-release / extension-release key for the API level.
    pub fn level_key(self) -> &'static str {
        match self {
            Class::Sysext => "SYSEXT_LEVEL",
            Class::Confext => "CONFEXT_LEVEL",
        }
    }

    /// extension-release key for the allowed scopes.
    pub fn scope_key(self) -> &'static str {
        match self {
            Class::Sysext => "SYSEXT_SCOPE",
            Class::Confext => "CONFEXT_SCOPE",
        }
    }

    /// Optional name suffix stripped during discovery (`foo.sysext.raw` → `foo`).
    pub fn name_suffix(self) -> &'static str {
        match self {
            Class::Sysext => ".sysext",
            Class::Confext => ".confext",
        }
    }

    /// Source name of the overlay mount, as systemd sets it (shows in mountinfo).
    pub fn mount_source(self) -> &'static str {
        self.as_str()
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the extension is used; compared with `SYSEXT_SCOPE=` / `CONFEXT_SCOPE=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Running in an initrd (`<root>/etc/initrd-release` exists).
    Initrd,
    /// A booted system.
    System,
    /// A portable service image (never the host's scope; listed for completeness).
    Portable,
    /// Not checked: a service's own extensions (systemd passes no scope for
    /// `ExtensionDirectories=`/`ExtensionImages=`, "we need to accept both system and
    /// portable").
    Any,
}

impl Scope {
    /// The word used in extension-release files.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Initrd => "initrd",
            Scope::System => "system",
            Scope::Portable => "portable",
            Scope::Any => "any",
        }
    }
}
