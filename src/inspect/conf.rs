//! Reads `sysext.conf` / `confext.conf` and their drop-ins inside the root, as
//! systemd-sysext's `parse_config_file()` does with
//! `config_parse_standard_file_with_dropins_full(arg_root, "systemd/sysext.conf", …)`
//! (systemd 259+, sysext.conf(5)): the files are those of the root given by `--root`,
//! not the host's.
//!
//! The main file is the first found of `/etc/systemd/`, `/run/systemd/`,
//! `/usr/local/lib/systemd/` and `/usr/lib/systemd/` (`NAME.conf`); then the drop-ins
//! `NAME.conf.d/*.conf` of the same directories, one per file name (the earlier
//! directory's wins; a symlink to `/dev/null` masks the name), in lexical order of
//! their names, each overriding what came before. Every file is opened with
//! `RESOLVE_IN_ROOT` (symlinks cannot leave the root) and read up to a bound. Nothing
//! here is fatal: as systemd, a file that cannot be read or parsed is warned about
//! ("ignoring"), and what was read before it stands.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::fs::{OFlags, ResolveFlags};

use super::fsutil::{read_file_in, Root};
use crate::format::class::Class;
use crate::format::conf;
use crate::format::escape::esc;
use crate::format::policy::ImagePolicy;
use crate::options::{ClassConfig, Config, MutableMode};

/// The directories searched, highest priority first (systemd's `CONF_PATHS("systemd")`).
pub const CONF_DIRS: [&str; 4] = [
    "/etc/systemd",
    "/run/systemd",
    "/usr/local/lib/systemd",
    "/usr/lib/systemd",
];

/// The largest configuration file read (a longer line is refused by the parser anyway).
pub const MAX_CONF_FILE: u64 = 4 << 20;

/// Most drop-ins considered per directory.
const MAX_DROPINS: usize = 1024;

/// The main file's name of `class`: `sysext.conf` / `confext.conf`.
pub fn file_name(class: Class) -> String {
    format!("{class}.conf")
}

/// The section of `class`'s file: `SysExt` / `ConfExt` (case-sensitive).
pub fn section(class: Class) -> &'static str {
    match class {
        Class::Sysext => "SysExt",
        Class::Confext => "ConfExt",
    }
}

/// Reads the configuration of both classes in the root at `root`, warning (through the
/// log) about what is ignored. A root that cannot be opened gives the defaults (the
/// verbs report that root themselves).
pub fn load(root: &Path) -> Config {
    load_seen_by(None, root, &Class::ALL)
}

/// [`load`] of `classes` only (each class reads its own file, as `systemd-sysext` and
/// `systemd-confext` do), of the root at `root` as process `pid` sees it (`--pid`;
/// `None`: the caller), so the files are those inside the target's root and named as
/// it names them.
pub fn load_seen_by(pid: Option<i32>, root: &Path, classes: &[Class]) -> Config {
    let mut c = Config::default();
    if classes.is_empty() {
        return c;
    }
    let Ok(r) = Root::open_seen_by(pid, root) else {
        return c;
    };
    for &class in classes {
        let (cc, warnings) = load_class(&r, class);
        for w in warnings {
            crate::log::warn(&w);
        }
        *c.class_mut(class) = cc;
    }
    c
}

/// Reads the configuration of `class`: the values and the warnings, in order.
pub fn load_class(root: &Root, class: Class) -> (ClassConfig, Vec<String>) {
    let mut cc = ClassConfig::default();
    let mut warnings = Vec::new();
    for path in files(root, class, &mut warnings) {
        let shown = root.display_path(&path);
        let shown = esc(&shown).to_string();
        let data = match read_file_in(root.fd(), &path, ResolveFlags::empty(), MAX_CONF_FILE) {
            Ok(d) => d,
            Err(e) => {
                warnings.push(format!(
                    "Failed to read configuration file {shown}, ignoring the configuration \
                     from here on: {e}"
                ));
                break;
            }
        };
        let p = conf::parse(&data, &shown, &[section(class)]);
        warnings.extend(p.warnings);
        let mut failed = false;
        for a in &p.assignments {
            if let Err(e) = apply(&mut cc, a, &shown, &mut warnings) {
                warnings.push(e);
                failed = true;
                break;
            }
        }
        if let (false, Some(e)) = (failed, p.error) {
            warnings.push(e);
            failed = true;
        }
        if failed {
            // systemd stops at the first file that fails to parse ("Failed to parse
            // global config file, ignoring").
            warnings.push(format!(
                "Failed to parse configuration file {shown}, ignoring the rest of the {} \
                 configuration",
                class
            ));
            break;
        }
    }
    (cc, warnings)
}

/// Applies one assignment; `Err` ends the parse (an image policy that does not parse,
/// as systemd's `config_parse_image_policy` refuses it).
fn apply(
    cc: &mut ClassConfig,
    a: &conf::Assignment,
    file: &str,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    let at = format!("{file}:{}", a.line);
    match a.key.as_str() {
        "Mutable" if a.value.is_empty() => cc.mutable = None,
        "Mutable" => match MutableMode::parse(&a.value) {
            Some(m) => cc.mutable = Some(m),
            None => warnings.push(format!(
                "{at}: Failed to parse Mutable={}, ignoring.",
                esc(&a.value)
            )),
        },
        "ImagePolicy" if a.value.is_empty() => cc.image_policy = None,
        "ImagePolicy" => match ImagePolicy::parse_graceful(&a.value) {
            Ok(p) => cc.image_policy = Some(p),
            Err(e) => {
                return Err(format!(
                    "{at}: Failed to parse image policy, refusing: {}: {e}",
                    esc(&a.value)
                ))
            }
        },
        k if k.starts_with("X-") => {}
        k => warnings.push(format!(
            "{at}: Unknown key '{}' in section [{}], ignoring.",
            esc(k),
            a.section
        )),
    }
    Ok(())
}

/// The files to parse, in order: the main file, then the drop-ins.
pub fn files(root: &Root, class: Class, warnings: &mut Vec<String>) -> Vec<PathBuf> {
    let name = file_name(class);
    let mut out = Vec::new();
    for d in CONF_DIRS {
        let p = Path::new(d).join(&name);
        match root.open_at(&p, OFlags::PATH) {
            Ok(_) => {
                out.push(p);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                warnings.push(format!(
                    "Failed to open configuration file {}, ignoring: {}",
                    esc(&root.display_path(&p)),
                    crate::log::os_text(&e)
                ));
                out.push(p);
                break;
            }
        }
    }
    // name -> (path, masked); the first directory's entry of a name wins.
    let mut dropins: std::collections::BTreeMap<Vec<u8>, Option<PathBuf>> = Default::default();
    let dname = format!("{name}.d");
    for d in CONF_DIRS {
        let dir = Path::new(d).join(&dname);
        let Ok(fd) = root.open_at(&dir, OFlags::RDONLY | OFlags::DIRECTORY) else {
            continue;
        };
        let Ok(mut it) = rustix::fs::Dir::read_from(&fd) else {
            continue;
        };
        let mut n = 0;
        while let Some(Ok(e)) = it.next() {
            let f = e.file_name().to_bytes();
            if f.starts_with(b".") || !f.ends_with(b".conf") || dropins.contains_key(f) {
                continue;
            }
            n += 1;
            if n > MAX_DROPINS {
                warnings.push(format!(
                    "{}: more than {MAX_DROPINS} drop-ins, ignoring the others",
                    esc(&root.display_path(&dir))
                ));
                break;
            }
            let masked = super::fsutil::is_masked(fd.as_fd(), e.file_name());
            let path = dir.join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(f));
            // Only regular files (through symlinks, inside the root) are drop-ins.
            let regular = !masked
                && root
                    .open_at(&path, OFlags::PATH)
                    .and_then(|fd| rustix::fs::fstat(&fd).map_err(Into::into))
                    .map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_file())
                    .unwrap_or(false);
            if masked || regular {
                dropins.insert(f.to_vec(), (!masked).then_some(path));
            }
        }
    }
    out.extend(dropins.into_values().flatten());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn w(root: &Path, p: &str, s: &str) {
        let p = root.join(p.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, s).unwrap();
    }

    fn load_in(root: &Path, class: Class) -> (ClassConfig, Vec<String>) {
        load_class(&Root::open(root).unwrap(), class)
    }

    #[test]
    fn main_file_first_found_then_dropins_in_order() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        w(
            r,
            "/usr/lib/systemd/sysext.conf",
            "[SysExt]\nMutable=import\n",
        );
        let (c, _) = load_in(r, Class::Sysext);
        assert_eq!(c.mutable, Some(MutableMode::Import));
        // /etc's main file is used alone: /usr/lib's is not read.
        w(
            r,
            "/etc/systemd/sysext.conf",
            "[SysExt]\nImagePolicy=root=verity\n",
        );
        let (c, _) = load_in(r, Class::Sysext);
        assert_eq!(c.mutable, None);
        assert!(c.image_policy.is_some());
        // Drop-ins override it, sorted by name whatever their directory.
        w(
            r,
            "/usr/lib/systemd/sysext.conf.d/20-b.conf",
            "[SysExt]\nMutable=yes\n",
        );
        w(
            r,
            "/etc/systemd/sysext.conf.d/10-a.conf",
            "[SysExt]\nMutable=auto\n",
        );
        let (c, _) = load_in(r, Class::Sysext);
        assert_eq!(c.mutable, Some(MutableMode::Yes));
        // The same name in /etc wins over /usr/lib's; /dev/null masks it.
        w(
            r,
            "/etc/systemd/sysext.conf.d/20-b.conf",
            "[SysExt]\nMutable=ephemeral\n",
        );
        assert_eq!(
            load_in(r, Class::Sysext).0.mutable,
            Some(MutableMode::Ephemeral)
        );
        fs::remove_file(r.join("etc/systemd/sysext.conf.d/20-b.conf")).unwrap();
        symlink("/dev/null", r.join("etc/systemd/sysext.conf.d/20-b.conf")).unwrap();
        assert_eq!(load_in(r, Class::Sysext).0.mutable, Some(MutableMode::Auto));
        // Not *.conf, hidden, directories: not drop-ins.
        w(
            r,
            "/etc/systemd/sysext.conf.d/30-c.conf.bak",
            "[SysExt]\nMutable=no\n",
        );
        w(
            r,
            "/etc/systemd/sysext.conf.d/.40.conf",
            "[SysExt]\nMutable=no\n",
        );
        fs::create_dir_all(r.join("etc/systemd/sysext.conf.d/50.conf")).unwrap();
        let (c, warnings) = load_in(r, Class::Sysext);
        assert_eq!(c.mutable, Some(MutableMode::Auto));
        assert!(warnings.is_empty(), "{warnings:?}");
        // The other class reads its own file and section.
        assert_eq!(load_in(r, Class::Confext).0, ClassConfig::default());
        w(
            r,
            "/run/systemd/confext.conf",
            "[SysExt]\nMutable=yes\n[ConfExt]\nMutable=import\n",
        );
        let (c, warnings) = load_in(r, Class::Confext);
        assert_eq!(c.mutable, Some(MutableMode::Import));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("Unknown section 'SysExt'"));
    }

    #[test]
    fn symlinks_stay_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("root");
        w(t.path(), "/outside.conf", "[SysExt]\nMutable=yes\n");
        w(&r, "/outside.conf", "[SysExt]\nMutable=import\n");
        fs::create_dir_all(r.join("etc/systemd")).unwrap();
        symlink("/outside.conf", r.join("etc/systemd/sysext.conf")).unwrap();
        assert_eq!(
            load_in(&r, Class::Sysext).0.mutable,
            Some(MutableMode::Import)
        );
        symlink(
            "../../../../../outside.conf",
            r.join("etc/systemd/confext.conf"),
        )
        .unwrap();
        w(&r, "/outside.conf", "[ConfExt]\nMutable=auto\n");
        assert_eq!(
            load_in(&r, Class::Confext).0.mutable,
            Some(MutableMode::Auto)
        );
    }

    #[test]
    fn bad_values_and_files() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        w(
            r,
            "/etc/systemd/sysext.conf",
            "[SysExt]\nMutable=sometimes\nFrobnicate=1\nX-Mine=2\n",
        );
        let (c, warnings) = load_in(r, Class::Sysext);
        assert_eq!(c.mutable, None);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].ends_with("sysext.conf:2: Failed to parse Mutable=sometimes, ignoring.")
        );
        assert!(warnings[1].contains(":3: Unknown key 'Frobnicate' in section [SysExt]"));
        // An image policy that does not parse ends the parse; what came before stands.
        w(
            r,
            "/etc/systemd/sysext.conf.d/a.conf",
            "[SysExt]\nMutable=yes\nImagePolicy=root=verity:root=signed\nMutable=no\n",
        );
        w(
            r,
            "/etc/systemd/sysext.conf.d/b.conf",
            "[SysExt]\nMutable=auto\n",
        );
        let (c, warnings) = load_in(r, Class::Sysext);
        assert_eq!(c.mutable, Some(MutableMode::Yes));
        assert!(warnings
            .iter()
            .any(|w| w.contains("a.conf:3: Failed to parse image policy")));
        // Unknown designators are skipped in a configuration file (graceful parse).
        fs::remove_file(r.join("etc/systemd/sysext.conf.d/a.conf")).unwrap();
        w(
            r,
            "/etc/systemd/sysext.conf.d/a.conf",
            "[SysExt]\nImagePolicy=frobnicate=verity\n",
        );
        let (c, _) = load_in(r, Class::Sysext);
        assert!(c.image_policy.is_some());
        assert_eq!(c.mutable, Some(MutableMode::Auto));
        // Empty values reset.
        w(
            r,
            "/etc/systemd/sysext.conf.d/c.conf",
            "[SysExt]\nMutable=\nImagePolicy=\n",
        );
        assert_eq!(load_in(r, Class::Sysext).0, ClassConfig::default());
        // A main file that is not a regular file: warned about, nothing read.
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("etc/systemd/sysext.conf")).unwrap();
        let (c, warnings) = load_in(t.path(), Class::Sysext);
        assert_eq!(c, ClassConfig::default());
        assert!(warnings[0].contains("not a regular file"), "{warnings:?}");
    }
}
