//! What a run saw and did, entry by entry, for `extmerge-initrd`'s boot report
//! (`/run/extmerge/report.json`) and for `extmerge status`, which shows it on the booted
//! system.
//!
//! A [`Recorder`] rides along in [`crate::options::Options::recorder`]; where it is
//! `None` (every front-end but the initrd program) nothing is measured or kept. Where it
//! is set, the phases note their time (discovery, inspection, an image's device setup and
//! mount, the overlay mounts) and each entry its verdict: no syscall is added, a clock
//! read is a vDSO call.
//!
//! Also here, pure: the report's JSON (written and read back with [`crate::format::json`]),
//! and the list of required extensions (`extmerge.require=` on the kernel command line,
//! `Require=` in the real root's `/etc/extmerge/initrd.conf`) with the check of it.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::format::class::Class;
use crate::format::cmdline::Cmdline;
use crate::format::json::Json;

/// The report's format version (`"version"`).
pub const REPORT_VERSION: u64 = 1;
/// The report's file name in the workspace (`/run/extmerge`).
pub const REPORT_NAME: &str = "report.json";
/// The configuration file of the initrd program, inside the real root.
pub const CONFIG_PATH: &str = "etc/extmerge/initrd.conf";
/// Its section.
pub const CONFIG_SECTION: &str = "Initrd";

/// The kind of a directory entry discovery did not take as an extension.
pub const OTHER: &str = "other";

/// What became of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Matched, waiting for its class's merge (shown as `failed` if the run ends there).
    Pending,
    /// In the merge.
    Merged,
    /// Left out as systemd leaves it out: another OS, no extension-release, not an
    /// extension (systemd-sysext skips it and boots on).
    Skipped,
    /// Refused: the image policy, verity or the signature said no.
    Refused,
    /// Could not be used, or its class's merge failed.
    Failed,
}

impl Verdict {
    /// As the report writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pending | Verdict::Failed => "failed",
            Verdict::Merged => "merged",
            Verdict::Skipped => "skipped",
            Verdict::Refused => "refused",
        }
    }
}

/// How an image's file systems were protected (the weakest of the volumes used).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// Plain loop device.
    None,
    /// dm-verity with a root hash.
    Verity,
    /// dm-verity with a root hash signature the kernel checked.
    Signed,
}

/// One entry of a class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Extension name (as `systemd-sysext list` shows it; `""` for a skipped directory
    /// entry that is no extension).
    pub name: String,
    /// Path inside the root.
    pub path: String,
    /// `directory`, `raw`, `block`, or [`OTHER`] (an entry discovery did not take as an
    /// extension, or one shadowed by an extension of the same name; `unknown` until known).
    pub kind: &'static str,
    /// What became of it.
    pub verdict: Verdict,
    /// Why (skipped, refused, failed), if anything is to be said.
    pub reason: Option<String>,
    /// For an image: the protection used, once set up.
    pub protection: Option<Protection>,
    /// The failed image step (`verity`, `signature`, `policy`, …), if it failed.
    pub failed_step: Option<&'static str>,
    /// Inspection (open or set up, then read extension-release), µs.
    pub inspect_usec: Option<u64>,
    /// An image's loop and dm-verity devices, µs.
    pub setup_usec: Option<u64>,
    /// Mounting an image's file systems, µs.
    pub mount_usec: Option<u64>,
}

impl Entry {
    fn new(name: &str) -> Entry {
        Entry {
            name: name.to_string(),
            path: String::new(),
            kind: "unknown",
            verdict: Verdict::Pending,
            reason: None,
            protection: None,
            failed_step: None,
            inspect_usec: None,
            setup_usec: None,
            mount_usec: None,
        }
    }
}

/// The phases of one class, µs (summed when a phase runs more than once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Phases {
    /// Discovery (reading the search directories).
    pub discover: Option<u64>,
    /// Inspection and planning (every entry opened, images set up, verdicts).
    pub inspect: Option<u64>,
    /// Mounting the overlays.
    pub mount: Option<u64>,
}

/// A phase of a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Discovery.
    Discover,
    /// Inspection and planning.
    Inspect,
    /// The overlay mounts.
    Mount,
}

/// What one class saw and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassRecord {
    /// The class.
    pub class: Option<Class>,
    /// `merged`, `unchanged`, `nothing`, `failed` or `disabled` (set by the front-end).
    pub result: &'static str,
    /// The error that failed the class.
    pub error: Option<String>,
    /// Phase times.
    pub phases: Phases,
    /// Its entries, in the order seen.
    pub entries: Vec<Entry>,
    /// The overlays planned: hierarchy and layers (topmost first).
    pub overlays: Vec<(String, Vec<String>)>,
}

impl ClassRecord {
    fn entry(&mut self, name: &str) -> &mut Entry {
        let i = match self
            .entries
            .iter()
            .position(|e| e.name == name && e.kind != OTHER)
        {
            Some(i) => i,
            None => {
                self.entries.push(Entry::new(name));
                self.entries.len() - 1
            }
        };
        &mut self.entries[i]
    }

    /// Notes the extension `name` (made, pending, if new).
    pub fn entry_named(&mut self, name: &str) {
        self.entry(name);
    }

    /// Settles the class's outcome: `Ok(names)` merged those (pending ones among them
    /// become merged), `Err(msg)` failed the class (pending ones fail with it).
    pub fn finish(&mut self, res: Result<&[String], &str>) {
        if let Err(msg) = res {
            self.error = Some(msg.to_string());
            self.overlays.clear();
        }
        for e in &mut self.entries {
            if e.verdict != Verdict::Pending {
                continue;
            }
            match res {
                Ok(names) if names.contains(&e.name) => e.verdict = Verdict::Merged,
                Ok(_) => {
                    e.verdict = Verdict::Skipped;
                    e.reason = Some("not in the merge".into());
                }
                Err(msg) => {
                    e.verdict = Verdict::Failed;
                    e.reason = Some(format!("its class's merge failed: {msg}"));
                }
            }
        }
    }
}

/// Collects what a run does; cheap to clone (shared). Set it in
/// [`crate::options::Options::recorder`].
#[derive(Debug, Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<ClassRecord>>>);

impl PartialEq for Recorder {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for Recorder {}

/// µs since `t`.
pub fn usec_since(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX)
}

impl Recorder {
    /// A new, empty recorder.
    pub fn new() -> Recorder {
        Recorder::default()
    }

    /// Runs `f` on the record of `class`.
    pub fn with<R>(&self, class: Class, f: impl FnOnce(&mut ClassRecord) -> R) -> R {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let i = match v.iter().position(|c| c.class == Some(class)) {
            Some(i) => i,
            None => {
                v.push(ClassRecord {
                    class: Some(class),
                    ..ClassRecord::default()
                });
                v.len() - 1
            }
        };
        f(&mut v[i])
    }

    /// Adds `usec` to `phase` of `class`.
    pub fn phase(&self, class: Class, phase: Phase, usec: u64) {
        self.with(class, |c| {
            let p = match phase {
                Phase::Discover => &mut c.phases.discover,
                Phase::Inspect => &mut c.phases.inspect,
                Phase::Mount => &mut c.phases.mount,
            };
            *p = Some(p.unwrap_or(0).saturating_add(usec));
        })
    }

    /// Runs `f` on the entry `name` of `class` (made if new).
    pub fn entry(&self, class: Class, name: &str, f: impl FnOnce(&mut Entry)) {
        self.with(class, |c| f(c.entry(name)))
    }

    /// Adds the directory entries discovery did not take (`path`, reason).
    pub fn skipped<'a>(&self, class: Class, v: impl Iterator<Item = (String, &'a str)>) {
        self.with(class, |c| {
            for (path, reason) in v {
                let mut e = Entry::new(path.rsplit('/').next().unwrap_or(&path));
                e.path = path;
                e.kind = OTHER;
                e.verdict = Verdict::Skipped;
                e.reason = Some(reason.to_string());
                c.entries.push(e);
            }
        })
    }

    /// A copy of what was recorded, by class in the order first seen.
    pub fn snapshot(&self) -> Vec<ClassRecord> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// `Some(Instant::now())` when recording (the clock is read only then).
pub fn start(rec: Option<&Recorder>) -> Option<Instant> {
    rec.map(|_| Instant::now())
}

// ---------------------------------------------------------------- required extensions

/// Where a required name came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `extmerge.require=` on the kernel command line.
    Cmdline,
    /// `Require=` in `/etc/extmerge/initrd.conf` of the real root.
    Config,
}

impl Source {
    /// As the report writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cmdline => "cmdline",
            Source::Config => "config",
        }
    }
}

/// Adds the names of a list value (`,` or blanks between them) to `out`; an empty
/// value clears `out`. A name given twice is kept once (its first source).
fn add_names(out: &mut Vec<(String, Source)>, value: &str, src: Source) {
    if value.trim().is_empty() {
        out.clear();
        return;
    }
    for n in value.split(|c: char| c == ',' || c.is_ascii_whitespace()) {
        // `foo.raw` names the extension `foo`, as `list` shows it.
        let n = n.strip_suffix(".raw").unwrap_or(n);
        if !n.is_empty() && !out.iter().any(|(x, _)| x == n) {
            out.push((n.to_string(), src));
        }
    }
}

/// The required extensions: `Require=` of the configuration file's `[Initrd]` section
/// (`config`: its bytes, if the file was there; every assignment adds, an empty one
/// clears), then every `extmerge.require=` of the kernel command line in order (adds;
/// an empty one clears everything before it, the file's too). Also returns the
/// configuration file's warnings.
pub fn required(cmd: &Cmdline, config: Option<&[u8]>) -> (Vec<(String, Source)>, Vec<String>) {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    if let Some(data) = config {
        let file = format!("/{CONFIG_PATH}");
        let p = crate::format::conf::parse(data, &file, &[CONFIG_SECTION]);
        warnings.extend(p.warnings);
        warnings.extend(p.error);
        for a in p.assignments {
            if a.key == "Require" {
                add_names(&mut out, &a.value, Source::Config);
            } else {
                warnings.push(format!(
                    "{file}:{}: unknown key {:?}, ignored",
                    a.line, a.key
                ));
            }
        }
    }
    for (k, v) in cmd.args() {
        if k == "extmerge.require" {
            add_names(&mut out, v.as_deref().unwrap_or(""), Source::Cmdline);
        }
    }
    (out, warnings)
}

/// Does `name` name the extension `e`: its name (`foo` of `foo.raw`, of `foo/`, of
/// `foo.v/`), or for a version picked from `foo.v/` also the picked file's name without
/// `.raw` (`foo_2`)?
fn names_it(e: &Entry, name: &str) -> bool {
    if e.kind == OTHER {
        return false;
    }
    e.name == name
        || e.path.contains(".v/")
            && e.path
                .rsplit('/')
                .next()
                .map(|f| f.strip_suffix(".raw").unwrap_or(f))
                == Some(name)
}

/// Why each required extension is not merged (none: all are). A name is satisfied by a
/// merged entry of that name in any class; else the first entry of that name says why,
/// else it was not found (in a class that ran).
pub fn unmet(required: &[(String, Source)], classes: &[ClassRecord]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, _) in required {
        let all = || {
            classes
                .iter()
                .flat_map(|c| c.entries.iter().map(move |e| (c, e)))
                .filter(|(_, e)| names_it(e, name))
        };
        if all().any(|(_, e)| e.verdict == Verdict::Merged) {
            continue;
        }
        let why = match all().next() {
            Some((c, e)) => format!(
                "{} {} {}: {}",
                c.class.map_or("", Class::as_str),
                e.path,
                e.verdict.as_str(),
                e.reason.as_deref().unwrap_or("not merged")
            ),
            None => {
                let (off, ran): (Vec<_>, Vec<_>) =
                    classes.iter().partition(|c| c.result == "disabled");
                let names = |v: Vec<&ClassRecord>| {
                    let v: Vec<&str> = v
                        .iter()
                        .filter_map(|c| c.class.map(Class::as_str))
                        .collect();
                    v.join(", ")
                };
                let mut why = format!("not found in the search directories ({})", names(ran));
                if !off.is_empty() {
                    why = format!("{why}; {} disabled on the kernel command line", names(off));
                }
                why
            }
        };
        out.push((name.clone(), why));
    }
    out
}

// ---------------------------------------------------------------- the report's JSON

fn opt_u(v: Option<u64>) -> Json {
    v.map_or(Json::Null, Json::UInt)
}

fn opt_s(v: Option<&str>) -> Json {
    v.map_or(Json::Null, Json::str)
}

fn entry_json(e: &Entry) -> Json {
    let image = e.kind == "raw" || e.kind == "block";
    let (verity, signature) = match (image, e.protection, e.failed_step) {
        (false, _, _) => (None, None),
        (true, _, Some("verity")) => (Some("failed"), Some("unknown")),
        (true, _, Some("signature")) => (Some("failed"), Some("failed")),
        (true, Some(Protection::Signed), _) => (Some("verified"), Some("verified")),
        (true, Some(Protection::Verity), _) => (Some("verified"), Some("none")),
        (true, Some(Protection::None), _) => (Some("none"), Some("none")),
        (true, None, _) => (Some("unknown"), Some("unknown")),
    };
    Json::obj([
        ("name", Json::str(&e.name)),
        ("path", Json::str(&e.path)),
        ("kind", Json::str(e.kind)),
        ("verdict", Json::str(e.verdict.as_str())),
        ("reason", opt_s(e.reason.as_deref())),
        ("verity", opt_s(verity)),
        ("signature", opt_s(signature)),
        (
            "phases_usec",
            Json::obj([
                ("inspect", opt_u(e.inspect_usec)),
                ("verity_setup", opt_u(e.setup_usec)),
                ("mount", opt_u(e.mount_usec)),
            ]),
        ),
    ])
}

fn class_json(c: &ClassRecord) -> Json {
    Json::obj([
        ("class", opt_s(c.class.map(Class::as_str))),
        ("result", Json::str(c.result)),
        ("error", opt_s(c.error.as_deref())),
        (
            "phases_usec",
            Json::obj([
                ("discover", opt_u(c.phases.discover)),
                ("inspect", opt_u(c.phases.inspect)),
                ("mount", opt_u(c.phases.mount)),
            ]),
        ),
        (
            "entries",
            Json::Array(c.entries.iter().map(entry_json).collect()),
        ),
        (
            "overlays",
            Json::Array(
                c.overlays
                    .iter()
                    .map(|(h, l)| {
                        Json::obj([
                            ("hierarchy", Json::str(h)),
                            ("layers", Json::Array(l.iter().map(Json::str).collect())),
                        ])
                    })
                    .collect(),
            ),
        ),
    ])
}

/// The kernel command-line words that concern extensions: `extmerge`, `extmerge.*`,
/// `systemd.sysext=`, `systemd.confext=`, their `rd.` forms, `systemd.image_policy=`…
pub fn switches(cmd: &Cmdline) -> Vec<String> {
    cmd.args()
        .iter()
        .filter(|(k, _)| {
            let k = k.strip_prefix("rd.").unwrap_or(k);
            k == "extmerge"
                || k.starts_with("extmerge.")
                || k.starts_with("systemd.sysext")
                || k.starts_with("systemd.confext")
                || k == "systemd.image_policy"
        })
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k.clone(),
        })
        .collect()
}

/// The boot report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The verb (`sysroot`, `initrd`).
    pub verb: String,
    /// The root merged into.
    pub root: String,
    /// The kernel command-line switches in force ([`switches`]).
    pub cmdline: Vec<String>,
    /// The required extensions.
    pub required: Vec<(String, Source)>,
    /// Those not merged, and why.
    pub unmet: Vec<(String, String)>,
    /// Per class.
    pub classes: Vec<ClassRecord>,
    /// The whole run, µs.
    pub total_usec: u64,
    /// The program's exit status says success.
    pub ok: bool,
}

impl Report {
    /// The report as JSON (the fields are described in README, "Boot report").
    pub fn to_json(&self) -> Json {
        Json::obj([
            ("version", Json::UInt(REPORT_VERSION)),
            ("verb", Json::str(&self.verb)),
            ("root", Json::str(&self.root)),
            ("ok", Json::Bool(self.ok)),
            ("total_usec", Json::UInt(self.total_usec)),
            (
                "cmdline",
                Json::Array(self.cmdline.iter().map(Json::str).collect()),
            ),
            (
                "required",
                Json::Array(
                    self.required
                        .iter()
                        .map(|(n, s)| {
                            let why = self.unmet.iter().find(|(u, _)| u == n).map(|(_, w)| w);
                            Json::obj([
                                ("name", Json::str(n)),
                                ("source", Json::str(s.as_str())),
                                ("met", Json::Bool(why.is_none())),
                                ("reason", opt_s(why.map(String::as_str))),
                            ])
                        })
                        .collect(),
                ),
            ),
            (
                "classes",
                Json::Array(self.classes.iter().map(class_json).collect()),
            ),
        ])
    }
}

/// One line of what the initrd did, for `extmerge status`: `(class, name, verdict,
/// reason)` of every entry in `report` (a parsed report) that is not skipped, and of
/// the classes that failed (name `""`).
pub fn summary(report: &Json) -> Vec<(String, String, String, Option<String>)> {
    let mut out = Vec::new();
    for c in report.get("classes").map(Json::items).unwrap_or_default() {
        let class = c
            .get("class")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string();
        if let Some(err) = c.get("error").and_then(Json::as_str) {
            out.push((
                class.clone(),
                String::new(),
                "failed".into(),
                Some(err.into()),
            ));
        }
        for e in c.get("entries").map(Json::items).unwrap_or_default() {
            let s = |k| e.get(k).and_then(Json::as_str).map(str::to_string);
            out.push((
                class.clone(),
                s("name").unwrap_or_default(),
                s("verdict").unwrap_or_default(),
                s("reason"),
            ));
        }
    }
    out
}

/// The boot report as `extmerge status` reads it: the file's path, parsed.
pub fn read_report(text: &str) -> Option<Json> {
    crate::format::json::Reader::document(text, 8).ok()
}

/// What the initrd did with `class`, for `status --json` (a field of each row of that
/// class; ours, systemd has nothing there): its result and error, the extensions it
/// merged, and every entry it refused or failed on with the reason.
pub fn status_field(report: &Json, class: Class) -> Json {
    let Some(c) = report
        .get("classes")
        .map(Json::items)
        .unwrap_or_default()
        .iter()
        .find(|c| c.get("class").and_then(Json::as_str) == Some(class.as_str()))
    else {
        return Json::Null;
    };
    let entries = c.get("entries").map(Json::items).unwrap_or_default();
    let with = |v: &'static str| {
        entries
            .iter()
            .filter(move |e| e.get("verdict").and_then(Json::as_str) == Some(v))
    };
    let pick = |e: &Json, keys: &[&str]| {
        Json::Object(
            keys.iter()
                .map(|k| (k.to_string(), e.get(k).cloned().unwrap_or(Json::Null)))
                .collect(),
        )
    };
    Json::obj([
        ("result", c.get("result").cloned().unwrap_or(Json::Null)),
        ("error", c.get("error").cloned().unwrap_or(Json::Null)),
        (
            "merged",
            Json::Array(
                with("merged")
                    .map(|e| e.get("name").cloned().unwrap_or(Json::Null))
                    .collect(),
            ),
        ),
        (
            "refused",
            Json::Array(
                with("refused")
                    .chain(with("failed"))
                    .map(|e| pick(e, &["name", "path", "verdict", "reason"]))
                    .collect(),
            ),
        ),
    ])
}

/// The short section `status` prints below its table: per class what the initrd
/// merged, refused or failed on (skipped entries only counted), and unmet requirements.
pub fn status_text(report: &Json, classes: &[Class], path: &str) -> String {
    let mut out = format!("\nIn the initrd ({path}):\n");
    for s in summary(report) {
        let (class, name, verdict, reason) = s;
        if !classes.iter().any(|c| c.as_str() == class) || verdict == "skipped" {
            continue;
        }
        let what = if name.is_empty() {
            format!("{class} merge")
        } else {
            format!("{class} {name}")
        };
        out.push_str(&format!("  {what}: {verdict}"));
        if let Some(r) = reason {
            out.push_str(&format!(" ({r})"));
        }
        out.push('\n');
    }
    for c in report.get("classes").map(Json::items).unwrap_or_default() {
        let class = c.get("class").and_then(Json::as_str).unwrap_or("");
        if !classes.iter().any(|x| x.as_str() == class) {
            continue;
        }
        let n = c
            .get("entries")
            .map(Json::items)
            .unwrap_or_default()
            .iter()
            .filter(|e| e.get("verdict").and_then(Json::as_str) == Some("skipped"))
            .count();
        if n > 0 {
            out.push_str(&format!("  {class}: {n} skipped (see the report)\n"));
        }
    }
    for r in report.get("required").map(Json::items).unwrap_or_default() {
        if r.get("met") == Some(&Json::Bool(false)) {
            out.push_str(&format!(
                "  required {}: not merged ({})\n",
                r.get("name").and_then(Json::as_str).unwrap_or(""),
                r.get("reason").and_then(Json::as_str).unwrap_or("")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::json::Reader;

    fn names(v: &[(String, Source)]) -> Vec<&str> {
        v.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn require_from_cmdline_and_config() {
        let cmd = Cmdline::parse("root=/dev/vda extmerge.require=a,b.raw extmerge.require=c a");
        let (r, w) = required(&cmd, None);
        assert_eq!(names(&r), ["a", "b", "c"]);
        assert!(r.iter().all(|(_, s)| *s == Source::Cmdline));
        assert!(w.is_empty());
        let conf = b"# comment\n[Initrd]\nRequire=x y,z\nRequire=w\nBogus=1\n";
        let (r, w) = required(&cmd, Some(conf));
        assert_eq!(names(&r), ["x", "y", "z", "w", "a", "b", "c"]);
        assert_eq!(r[0].1, Source::Config);
        assert_eq!(r[4].1, Source::Cmdline);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("Bogus"), "{w:?}");
        // An empty assignment clears what came before (the file's too).
        let cmd = Cmdline::parse("extmerge.require=a extmerge.require= extmerge.require=d");
        assert_eq!(names(&required(&cmd, Some(conf)).0), ["d"]);
        let (r, _) = required(
            &Cmdline::parse(""),
            Some(b"[Initrd]\nRequire=x\nRequire=\n"),
        );
        assert!(r.is_empty());
        // Other sections are not ours; a quoted value keeps its blanks as separators.
        let (r, w) = required(
            &Cmdline::parse("\"extmerge.require=p q\""),
            Some(b"[Other]\nRequire=n\n"),
        );
        assert_eq!(names(&r), ["p", "q"]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(required(&Cmdline::parse("extmerge.requires=a"), None)
            .0
            .is_empty());
    }

    fn rec() -> Vec<ClassRecord> {
        let r = Recorder::new();
        r.phase(Class::Sysext, Phase::Discover, 5);
        r.phase(Class::Sysext, Phase::Discover, 7);
        r.entry(Class::Sysext, "good", |e| {
            e.path = "/var/lib/extensions/good".into();
            e.kind = "directory";
            e.inspect_usec = Some(3);
        });
        r.entry(Class::Sysext, "img", |e| {
            e.protection = Some(Protection::Verity);
            e.setup_usec = Some(40);
            e.mount_usec = Some(9);
        });
        r.entry(Class::Sysext, "img", |e| {
            e.path = "/var/lib/extensions/img.raw".into();
            e.kind = "raw";
            e.inspect_usec = Some(60);
        });
        r.entry(Class::Sysext, "picked", |e| {
            e.path = "/var/lib/extensions/picked.v/picked_2.raw".into();
            e.kind = "raw";
        });
        r.entry(Class::Sysext, "other", |e| {
            e.kind = "directory";
            e.verdict = Verdict::Skipped;
            e.reason = Some("ID=fedora does not match host ID=debian".into());
        });
        r.with(Class::Sysext, |c| {
            c.overlays = vec![("/usr".into(), vec!["img".into(), "good".into()])];
            c.result = "merged";
            c.finish(Ok(&[
                "good".to_string(),
                "img".to_string(),
                "picked".to_string(),
            ]));
        });
        r.entry(Class::Confext, "bad", |e| {
            e.kind = "raw";
            e.verdict = Verdict::Refused;
            e.failed_step = Some("policy");
            e.reason = Some("policy forbids unprotected root partition".into());
        });
        r.entry(Class::Confext, "ok", |e| e.kind = "directory");
        r.with(Class::Confext, |c| {
            c.result = "failed";
            c.finish(Err("bad.raw: refused"));
        });
        r.snapshot()
    }

    #[test]
    fn recorder_settles_verdicts() {
        let v = rec();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].phases.discover, Some(12));
        assert_eq!(v[0].phases.inspect, None);
        let e: Vec<_> = v[0]
            .entries
            .iter()
            .map(|e| (e.name.as_str(), e.verdict))
            .collect();
        assert_eq!(
            e,
            [
                ("good", Verdict::Merged),
                ("img", Verdict::Merged),
                ("picked", Verdict::Merged),
                ("other", Verdict::Skipped)
            ]
        );
        assert_eq!(v[1].entries[1].verdict, Verdict::Failed);
        assert!(v[1].overlays.is_empty());
        let req = [
            ("good".to_string(), Source::Cmdline),
            ("other".to_string(), Source::Config),
            ("bad".to_string(), Source::Cmdline),
            ("gone".to_string(), Source::Cmdline),
            ("picked".to_string(), Source::Cmdline),
            ("picked_2".to_string(), Source::Cmdline),
            ("picked_1".to_string(), Source::Cmdline),
        ];
        let u = unmet(&req, &v);
        let n: Vec<_> = u.iter().map(|(n, _)| n.as_str()).collect();
        // A `.v` pick is named by the directory's name or by the version picked.
        assert_eq!(n, ["other", "bad", "gone", "picked_1"]);
        assert!(u[0].1.contains("skipped: ID=fedora"), "{u:?}");
        assert!(u[1].1.contains("refused: policy forbids"), "{u:?}");
        assert!(
            u[2].1
                .starts_with("not found in the search directories (sysext, confext)"),
            "{u:?}"
        );
        let mut off = v.clone();
        off[1].result = "disabled";
        off[1].entries.clear();
        let u = unmet(&[("bad".to_string(), Source::Cmdline)], &off);
        assert_eq!(
            u[0].1,
            "not found in the search directories (sysext); confext disabled on the kernel command line"
        );
    }

    #[test]
    fn report_json_shape() {
        let classes = rec();
        let rep = Report {
            verb: "sysroot".into(),
            root: "/sysroot".into(),
            cmdline: switches(&Cmdline::parse(
                "root=/dev/vda extmerge.require=good systemd.sysext=1 rd.systemd.confext=0 quiet",
            )),
            required: vec![
                ("good".into(), Source::Cmdline),
                ("gone".into(), Source::Config),
            ],
            unmet: vec![("gone".into(), "not found".into())],
            classes,
            total_usec: 1234,
            ok: false,
        };
        let text = rep.to_json().render(true);
        let j = Reader::document(&text, 16).expect("the report reads back");
        assert_eq!(j, rep.to_json());
        let keys = |j: &Json| match j {
            Json::Object(v) => v.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            _ => panic!("not an object"),
        };
        assert_eq!(
            keys(&j),
            [
                "version",
                "verb",
                "root",
                "ok",
                "total_usec",
                "cmdline",
                "required",
                "classes"
            ]
        );
        assert_eq!(j.get("version"), Some(&Json::UInt(1)));
        assert_eq!(j.get("ok"), Some(&Json::Bool(false)));
        assert_eq!(
            j.get("cmdline").unwrap().items(),
            [
                Json::str("extmerge.require=good"),
                Json::str("systemd.sysext=1"),
                Json::str("rd.systemd.confext=0")
            ]
        );
        let req = j.get("required").unwrap().items();
        assert_eq!(req[0].get("met"), Some(&Json::Bool(true)));
        assert_eq!(req[0].get("reason"), Some(&Json::Null));
        assert_eq!(req[1].get("source").and_then(Json::as_str), Some("config"));
        assert_eq!(
            req[1].get("reason").and_then(Json::as_str),
            Some("not found")
        );
        let c = j.get("classes").unwrap().items();
        assert_eq!(
            keys(&c[0]),
            [
                "class",
                "result",
                "error",
                "phases_usec",
                "entries",
                "overlays"
            ]
        );
        assert_eq!(
            c[0].get("phases_usec"),
            Some(&Json::obj([
                ("discover", Json::UInt(12)),
                ("inspect", Json::Null),
                ("mount", Json::Null)
            ]))
        );
        let e = c[0].get("entries").unwrap().items();
        assert_eq!(
            keys(&e[1]),
            [
                "name",
                "path",
                "kind",
                "verdict",
                "reason",
                "verity",
                "signature",
                "phases_usec"
            ]
        );
        assert_eq!(
            e[0].get("verity"),
            Some(&Json::Null),
            "a directory has no verity state"
        );
        assert_eq!(
            e[1].get("path").and_then(Json::as_str),
            Some("/var/lib/extensions/img.raw")
        );
        assert_eq!(e[1].get("verity").and_then(Json::as_str), Some("verified"));
        assert_eq!(e[1].get("signature").and_then(Json::as_str), Some("none"));
        assert_eq!(
            e[1].get("phases_usec"),
            Some(&Json::obj([
                ("inspect", Json::UInt(60)),
                ("verity_setup", Json::UInt(40)),
                ("mount", Json::UInt(9))
            ]))
        );
        assert_eq!(
            c[0].get("overlays").unwrap().items()[0],
            Json::obj([
                ("hierarchy", Json::str("/usr")),
                (
                    "layers",
                    Json::Array(vec![Json::str("img"), Json::str("good")])
                )
            ])
        );
        assert_eq!(
            c[1].get("error").and_then(Json::as_str),
            Some("bad.raw: refused")
        );
        let bad = &c[1].get("entries").unwrap().items()[0];
        assert_eq!(bad.get("verdict").and_then(Json::as_str), Some("refused"));
        assert_eq!(bad.get("verity").and_then(Json::as_str), Some("unknown"));
        // What `extmerge status` shows of it.
        let s = summary(&j);
        assert!(
            s.contains(&("sysext".into(), "img".into(), "merged".into(), None)),
            "{s:?}"
        );
        assert!(s.contains(&(
            "confext".into(),
            String::new(),
            "failed".into(),
            Some("bad.raw: refused".into())
        )));
        assert_eq!(s.len(), 7, "{s:?}");
        let t = status_text(
            &j,
            &[Class::Sysext, Class::Confext],
            "/run/extmerge/report.json",
        );
        assert!(t.contains("  sysext img: merged\n"), "{t}");
        assert!(t.contains("  confext bad: refused (policy forbids"), "{t}");
        assert!(
            t.contains("  confext merge: failed (bad.raw: refused)"),
            "{t}"
        );
        assert!(t.contains("  sysext: 1 skipped"), "{t}");
        assert!(t.contains("  required gone: not merged (not found)"), "{t}");
        assert!(!status_text(&j, &[Class::Sysext], "x").contains("confext"));
        let f = status_field(&j, Class::Sysext);
        assert_eq!(
            f.get("merged").unwrap().items(),
            [Json::str("good"), Json::str("img"), Json::str("picked")]
        );
        assert_eq!(f.get("refused").unwrap().items(), []);
        let f = status_field(&j, Class::Confext);
        assert_eq!(f.get("result").and_then(Json::as_str), Some("failed"));
        let r = f.get("refused").unwrap().items();
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[0].get("verdict").and_then(Json::as_str), Some("refused"));
        assert_eq!(read_report(&text), Some(j));
        assert_eq!(read_report("{"), None);
    }

    #[test]
    fn reader_reads_values_back() {
        let j = Reader::document(
            " {\"a\" : [1, -2, 1.5, true, null, \"x\\n\"], \"b\": {}} ",
            4,
        )
        .unwrap();
        assert_eq!(
            j.get("a").unwrap().items(),
            [
                Json::UInt(1),
                Json::Null,
                Json::Null,
                Json::Bool(true),
                Json::Null,
                Json::str("x\n")
            ]
        );
        assert_eq!(j.get("b"), Some(&Json::Object(vec![])));
        assert!(Reader::document("{} x", 4).is_err());
        assert!(Reader::document("[[[[[1]]]]]", 4).is_err());
        assert!(Reader::document("{\"a\":}", 4).is_err());
    }
}
