//! `extmerge`: merge system and configuration extensions, the way `systemd-sysext` and
//! `systemd-confext` do. Invoked as `systemd-sysext` / `systemd-confext` (a symlink) it
//! takes that class, so scripts written for systemd keep working.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use extmerge::context::{Context, MergeError, Outcome};
use extmerge::format::class::Class;
use extmerge::format::escape::{controls, esc, escape};
use extmerge::format::json::Json;
use extmerge::inspect::fsutil::Root;
use extmerge::inspect::release::Verdict;
use extmerge::inspect::Candidate;
use extmerge::options::{parse_boolean, Environment, MutableMode, Options, Search};
use extmerge::record;
use extmerge::report;

/// The boot report `extmerge-initrd` leaves (`/run` moves through switch-root).
const BOOT_REPORT: &str = "/run/extmerge/report.json";

const HELP: &str = "\
Usage: PROG [OPTIONS...] [VERB]

WHAT

Verbs:
  status          Show merged extensions (default)
  merge           Merge extensions into the hierarchies
  unmerge         Unmerge extensions
  refresh         Unmerge and merge again what is installed now
  list            List installed extensions
  plan            Show what merge would do, with reasons for what it skips

Options:
  --root=PATH           Operate on the root at PATH
  --class=CLASS         sysext, confext or both (default: both; fixed when invoked
                        as systemd-sysext or systemd-confext)
  --json=pretty|short|off
  --force               Merge even incompatible extensions
  --no-reload           Do not reload the service manager
  --noexec=BOOL         Mount merged hierarchies noexec (default: confext only)
  --mutable=MODE        no, yes, auto, import, ephemeral, ephemeral-import
  --always-refresh=BOOL Refresh even when nothing changed
  --image-policy=POLICY Image policy for disk images (systemd.image-policy(7))
  --pid=PID             Work on the mount namespace and root of process PID
  --unit=NAME           Use the unit's own extensions (NAME.confext.d/, NAME.sysext.d/
                        in the unit directories); without --pid, work on its processes
  --search=DIR          Look for extensions in DIR instead of the standard
                        directories (repeatable)
  --export=DIR          With merge/refresh/unmerge: merge in a namespace of its own
                        and attach the result below DIR (DIR/etc...), not on the
                        hierarchies
  --main-pid=PID        With --export and refresh: also replace the merge in process
                        PID's mount namespace (a service's main process) with the
                        new one
  --dry-run             With merge/refresh: print the plan, change nothing
  --no-legend, --no-pager
  -h --help, --version
";

/// `--json=help`: what systemd's `parse_json_argument()` prints, in its order.
const JSON_VALUES: &str = "pretty\nshort\noff\n";

/// `--mutable=help`: the modes in the order of systemd's `mutable_mode_table`, one a
/// line under systemd 262's heading (as its `systemd-sysext --mutable=help` prints).
const MUTABLE_VALUES: &str =
    "Known mutability modes:\nno\nyes\nauto\nimport\nephemeral\nephemeral-import\n";

/// The systemd release whose `systemd-sysext`/`systemd-confext` extmerge follows where
/// releases differ (README, "Decisions where systemd's versions differ": v258–v262).
const SYSTEMD_VERSION: u32 = 262;

/// `--help` as `extmerge`, or in the words of `systemd-sysext` / `systemd-confext` when
/// invoked by that name (`fixed`): its name, its class, no `--class` line.
fn help(fixed: Option<Class>) -> String {
    let (prog, what) = match fixed {
        None => (
            "extmerge",
            "Merge system extensions (/usr, /opt) and configuration extensions (/etc).",
        ),
        Some(Class::Sysext) => ("systemd-sysext", "Merge system extensions (/usr, /opt)."),
        Some(Class::Confext) => ("systemd-confext", "Merge configuration extensions (/etc)."),
    };
    let mut text = HELP.replacen("PROG", prog, 1).replacen("WHAT", what, 1);
    if fixed.is_some() {
        let class = text
            .find("  --class=")
            .zip(text.find("  --json="))
            .map(|(a, b)| a..b);
        if let Some(r) = class {
            text.replace_range(r, "");
        }
        text += &format!(
            "\n{prog} is provided by extmerge {}.\n",
            env!("CARGO_PKG_VERSION")
        );
    }
    text
}

/// `--version`. As `extmerge`: `extmerge 0.1.0` and the systemd release it follows. As
/// `systemd-sysext` / `systemd-confext` the first line has systemd's form,
/// `systemd 262 (extmerge 0.1.0)` (systemd: `systemd 252 (252.39-1~deb12u1)`), because
/// scripts take its second field as a number (`--version | head -1 | awk '{print $2}'`)
/// and compare it with the systemd release that brought an option or behaviour. They get
/// the systemd release whose behaviour extmerge implements: honest for that comparison,
/// where extmerge's own version (0.1.0, not an integer) would break `[ "$v" -ge 254 ]`
/// or claim a release older than any systemd-sysext. The parentheses, where systemd puts
/// its package version, say what runs.
fn version(fixed: Option<Class>) -> String {
    let own = env!("CARGO_PKG_VERSION");
    match fixed {
        Some(_) => format!("systemd {SYSTEMD_VERSION} (extmerge {own})\n"),
        None => {
            format!("extmerge {own}\nfollows systemd-sysext/systemd-confext {SYSTEMD_VERSION}\n")
        }
    }
}

struct Cli {
    opts: Options,
    target: Option<i32>,
    unit: Option<String>,
    export: Option<PathBuf>,
    main_pid: Option<i32>,
    cli_mutable: Option<MutableMode>,
    classes: Vec<Class>,
    fixed_class: bool,
    json: Option<bool>,
    verb: String,
    dry_run: bool,
    legend: bool,
}

fn parse_args() -> Result<Option<Cli>, String> {
    // As bytes: a path (`--root=`) need not be UTF-8; any other argument must be.
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    let prog = Path::new(&argv0)
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or("");
    let fixed = match prog {
        "systemd-sysext" => Some(Class::Sysext),
        "systemd-confext" => Some(Class::Confext),
        _ => None,
    };
    let (mut classes, fixed_class) = match fixed {
        Some(c) => (vec![c], true),
        None => (Class::ALL.to_vec(), false),
    };
    let mut cli_mutable = None;
    let mut opts = Options::default();
    let mut json = None;
    let mut verb = None;
    let mut dry_run = false;
    let mut legend = true;
    let mut target = None;
    let mut unit = None;
    let mut export = None;
    let mut main_pid = None;
    let mut search: Vec<String> = Vec::new();
    let rest_os: Vec<OsString> = args.collect();
    let rest: Vec<String> = rest_os
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut i = 0;
    while i < rest.len() {
        let a = &rest[i];
        i += 1;
        // The root's path as given (`--root=PATH` or `--root PATH`), in bytes.
        let root_os = || -> Option<PathBuf> {
            let b = rest_os[i - 1].as_bytes();
            match b.strip_prefix(b"--root=") {
                Some(v) => Some(PathBuf::from(OsStr::from_bytes(v))),
                None if b == b"--root" => rest_os.get(i).map(PathBuf::from),
                None => None,
            }
        };
        let given_root = root_os();
        if given_root.is_none() && rest_os[i - 1].to_str().is_none() {
            return Err(format!(
                "invalid argument \"{}\": not UTF-8",
                esc(&rest_os[i - 1])
            ));
        }
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            let v = rest
                .get(i)
                .cloned()
                .ok_or_else(|| format!("option {name} needs a value"))?;
            i += 1;
            Ok(v)
        };
        let boolean = |v: &str, name: &str| {
            parse_boolean(v).ok_or_else(|| format!("invalid boolean for {name}: {v:?}"))
        };
        match key.as_str() {
            "-h" | "--help" => {
                show(&help(fixed));
                return Ok(None);
            }
            "--version" => {
                show(&version(fixed));
                return Ok(None);
            }
            "--root" => {
                value("--root")?;
                opts.root = given_root.unwrap_or_default();
            }
            "--class" => {
                let v = value("--class")?;
                if fixed_class {
                    return Err(
                        "--class is not available when invoked as systemd-sysext/systemd-confext"
                            .into(),
                    );
                }
                classes = match v.as_str() {
                    "both" => Class::ALL.to_vec(),
                    c => vec![Class::from_name(c)
                        .ok_or_else(|| format!("invalid --class={c}: sysext, confext or both"))?],
                };
            }
            "--json" => {
                json = match value("--json")?.as_str() {
                    "pretty" => Some(true),
                    "short" => Some(false),
                    "off" => None,
                    // systemd's parse_json_argument(): the values, one a line, exit 0.
                    "help" => {
                        show(JSON_VALUES);
                        return Ok(None);
                    }
                    v => return Err(format!("invalid --json={v}: pretty, short or off")),
                }
            }
            "--force" => opts.force = true,
            "--no-reload" => opts.no_reload = true,
            "--dry-run" => dry_run = true,
            "--no-legend" => legend = false,
            "--no-pager" => {}
            "--noexec" => opts.noexec = Some(boolean(&value("--noexec")?, "--noexec")?),
            "--always-refresh" => {
                opts.always_refresh = match inline.as_deref() {
                    None => true,
                    Some(v) => boolean(v, "--always-refresh")?,
                }
            }
            "--mutable" => {
                let v = value("--mutable")?;
                if v == "help" {
                    show(MUTABLE_VALUES);
                    return Ok(None);
                }
                cli_mutable =
                    Some(MutableMode::parse(&v).ok_or_else(|| format!("invalid --mutable={v}"))?);
            }
            "--image-policy" => {
                let v = value("--image-policy")?;
                opts.image_policy = Some(
                    extmerge::format::policy::ImagePolicy::parse(&v)
                        .map_err(|e| format!("invalid --image-policy={v}: {e}"))?,
                );
            }
            "--pid" | "--main-pid" => {
                let name = key.clone();
                let v = value(&name)?;
                let pid = v
                    .parse::<i32>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("invalid {name}={v}: a process ID"))?;
                if name == "--pid" {
                    target = Some(pid);
                } else {
                    main_pid = Some(pid);
                }
            }
            "--unit" => {
                let v = value("--unit")?;
                extmerge::format::unit::check_unit_name(&v).map_err(|e| format!("--unit: {e}"))?;
                unit = Some(v);
            }
            "--export" => {
                let v = value("--export")?;
                if !v.starts_with('/') {
                    return Err(format!("invalid --export={v}: an absolute path"));
                }
                export = Some(PathBuf::from(v));
            }
            "--search" => {
                let v = value("--search")?;
                if !v.starts_with('/') {
                    return Err(format!("invalid --search={v}: an absolute path"));
                }
                search.push(v);
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => {
                if verb.is_some() {
                    return Err(format!("too many arguments: {s}"));
                }
                verb = Some(s.to_string());
            }
        }
    }
    let verb = verb.unwrap_or_else(|| "status".into());
    if ![
        "status", "merge", "unmerge", "refresh", "list", "plan", "help",
    ]
    .contains(&verb.as_str())
    {
        return Err(format!("unknown verb {verb:?}"));
    }
    if verb == "help" {
        show(&help(fixed));
        return Ok(None);
    }
    if opts.root != Path::new("/") {
        // systemd: --root implies --no-reload.
        opts.no_reload = true;
    }
    opts.mutable = cli_mutable.unwrap_or_default();
    opts.search = match (&unit, search.is_empty()) {
        (Some(_), false) => return Err("--search and --unit cannot be combined".into()),
        (Some(u), true) => Some(Search::Unit(u.clone())),
        (None, false) => Some(Search::Dirs(search)),
        (None, true) => None,
    };
    if export.is_some() && (!["merge", "refresh", "unmerge"].contains(&verb.as_str()) || dry_run) {
        return Err("--export is for merge, refresh and unmerge".into());
    }
    if main_pid.is_some() && (export.is_none() || verb != "refresh" || dry_run) {
        return Err("--main-pid is for refresh with --export".into());
    }
    Ok(Some(Cli {
        opts,
        target,
        unit,
        export,
        main_pid,
        cli_mutable,
        classes,
        fixed_class,
        json,
        verb,
        dry_run,
        legend,
    }))
}

/// Options for one class: `--mutable=` beats `$SYSTEMD_*_MUTABLE_MODE` (systemd's order).
/// `SYSTEMD_LOG_LEVEL`, as systemd's tools take it: a level name or number; `None`
/// for anything else (ignored, as systemd ignores an invalid value).
fn log_level(v: &str) -> Option<extmerge::log::Level> {
    use extmerge::log::Level;
    Some(match v.trim().to_ascii_lowercase().as_str() {
        "emerg" | "alert" | "crit" | "err" | "0" | "1" | "2" | "3" => Level::Error,
        "warning" | "4" => Level::Warning,
        "notice" | "5" => Level::Notice,
        "info" | "6" => Level::Info,
        "debug" | "7" => Level::Debug,
        _ => return None,
    })
}

/// The process to work on: `--pid`, else a process of `--unit`'s cgroup (they share
/// the unit's mount namespace), else none (this process's own).
fn target_of(cli: &Cli) -> Result<Option<i32>, String> {
    match (cli.target, &cli.unit) {
        (Some(pid), _) => Ok(Some(pid)),
        // An export is built in a namespace of its own, not in the unit's.
        _ if cli.export.is_some() => Ok(None),
        (None, Some(unit)) => extmerge::inspect::cgroup::unit_process(unit)
            .map(Some)
            .map_err(|e| e.to_string()),
        (None, None) => Ok(None),
    }
}

/// The library's entry point for this invocation: the environment is read here, once.
fn context_of(cli: &Cli, target: Option<i32>) -> Context {
    let mut opts = cli.opts.clone();
    opts.env = Environment::from_process();
    // sysext.conf / confext.conf of the root, read once (below --mutable= and the
    // environment; see Context::options_for); a target's own, as it sees its root. No
    // key there changes an unmerge, and the files may be under the merge being removed
    // (a lookup through every layer of it): not read for one.
    let classes: &[Class] = if cli.verb == "unmerge" {
        &[]
    } else {
        &cli.classes
    };
    opts.config = extmerge::inspect::conf::load_seen_by(target, &opts.root, classes);
    let mut ctx = Context::new(opts, &cli.classes);
    ctx.mutable = cli.cli_mutable;
    ctx.target = target;
    ctx.export = cli.export.clone();
    ctx.main_pid = cli.main_pid;
    ctx
}

/// One line on stderr. Everything this program prints for people goes through here or
/// [`show`]: the values in it were escaped where it was composed ([`esc`]), and any
/// control character still left (but the line structure's newlines) is escaped here.
fn say(line: impl std::fmt::Display) {
    eprintln!("{}", controls(&line.to_string()));
}

/// Text for people on stdout, escaped as [`say`] does.
fn show(text: &str) {
    print!("{}", controls(text));
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    say(e);
    ExitCode::FAILURE
}

/// How this program refreshes even when nothing changed, for the library's "no change"
/// line (systemd-sysext's words).
const ALWAYS_REFRESH_HINT: &str = "--always-refresh=yes";

/// A library error with what to do about it in this program's verbs: the library's own
/// messages name no front-end's verbs or options.
fn with_hint(e: MergeError) -> String {
    match e {
        MergeError::AlreadyMerged(_) => format!("{e} (use refresh or unmerge)"),
        e => e.to_string(),
    }
}

fn print_json(v: Json, pretty: bool) {
    println!("{}", v.render(pretty));
}

/// `extmerge-generator [--root=PATH] NORMAL_DIR [EARLY_DIR LATE_DIR]` (a link to this
/// program in systemd's generator directory; systemd.generator(7)): for every service
/// with a `NAME.confext.d/` in the unit directories, writes
/// `NORMAL_DIR/NAME.d/00-extmerge.conf` (`extmerge::format::generator`). Units that
/// configure systemd's own `ExtensionImages=`/`ExtensionDirectories=` and masked units
/// are left alone; nothing is done in the initrd.
fn generator(args: &[OsString]) -> ExitCode {
    let mut root = PathBuf::from("/");
    let mut dirs = Vec::new();
    for a in args {
        match a.as_bytes().strip_prefix(b"--root=") {
            Some(r) => root = PathBuf::from(OsStr::from_bytes(r)),
            None => dirs.push(PathBuf::from(a)),
        }
    }
    let Some(normal) = dirs.first() else {
        return fail("extmerge-generator: usage: extmerge-generator [--root=PATH] NORMAL_DIR [EARLY_DIR LATE_DIR]");
    };
    if std::env::var("SYSTEMD_IN_INITRD").as_deref() == Ok("1") {
        return ExitCode::SUCCESS;
    }
    let exe = std::env::current_exe()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "/usr/bin/extmerge".into());
    let r = match Root::open(&root) {
        Ok(r) => r,
        Err(e) => {
            return fail(format!(
                "extmerge-generator: {}: {}",
                esc(&root),
                extmerge::log::os_text(&e)
            ))
        }
    };
    use std::os::unix::fs::DirBuilderExt;
    // The runtime directory the exports live in, 0700 as extmerge makes it (made before
    // the mount points below, which would give it the default mode).
    let runtime = root.join(extmerge::sys::staging::WORKSPACE.trim_start_matches('/'));
    let mut ok = true;
    for u in extmerge::inspect::units::units_with_confexts(&r) {
        let Some(text) = &u.text else {
            say(format_args!(
                "extmerge-generator: {}: no unit file (or masked), left alone",
                u.unit
            ));
            continue;
        };
        if extmerge::format::generator::uses_systemd_extensions(text) {
            say(format_args!(
                "extmerge-generator: {}: uses ExtensionImages=/ExtensionDirectories=, left to systemd",
                u.unit
            ));
            continue;
        }
        // The export's mount point, so the unit's namespace can be set up before the
        // first export.
        let export = extmerge::format::generator::export_dir(&u.unit);
        let point = root.join(export.trim_start_matches('/')).join("etc");
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&runtime);
        if let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&point)
        {
            say(format_args!(
                "extmerge-generator: {}: {}",
                esc(&point),
                extmerge::log::os_text(&e)
            ));
            ok = false;
            continue;
        }
        let dir = normal.join(format!("{}.d", u.unit));
        let file = dir.join(extmerge::format::generator::DROPIN_NAME);
        // --pid=1: systemd 252 runs even `+` commands of a unit that binds paths in a
        // namespace of the unit's; the export must land in PID 1's (README).
        let base = format!("{exe} --unit={} --class=confext", u.unit);
        let cmds = extmerge::format::generator::Commands {
            export_refresh: format!("{base} --pid=1 --export={export} refresh"),
            reload_refresh: format!(
                "{base} --pid=1 --export={export} --main-pid=${{MAINPID}} refresh"
            ),
            export_remove: format!("{base} --pid=1 --export={export} unmerge"),
        };
        let body = extmerge::format::generator::dropin(&u.unit, &cmds, text);
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, body)) {
            say(format_args!(
                "extmerge-generator: {}: {}",
                esc(&file),
                extmerge::log::os_text(&e)
            ));
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Started by socket activation as systemd-sysext's Varlink service
/// (`systemd-sysext.socket`): serves `io.systemd.sysext` instead of running a verb, with
/// the options given as the defaults of every call (systemd-sysext's `arg_*`).
fn varlink(cli: &Cli, prog: &str, fd: std::os::fd::OwnedFd) -> ExitCode {
    let mut opts = cli.opts.clone();
    opts.env = Environment::from_process();
    opts.config = extmerge::inspect::conf::load_seen_by(None, &opts.root, &Class::ALL);
    let mut base = Context::new(opts, &Class::ALL);
    base.mutable = cli.cli_mutable;
    let service = extmerge::varlink::Service {
        base,
        // systemd-sysext's default class; a call's `class` picks another.
        default_class: match (cli.fixed_class, cli.classes.as_slice()) {
            (true, [c]) => *c,
            _ => Class::Sysext,
        },
        product: if cli.fixed_class { prog } else { "extmerge" }.to_string(),
    };
    match service.serve(fd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format_args!(
            "Varlink socket: {}",
            extmerge::log::os_text(&e)
        )),
    }
}

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let prog = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|s| s.to_str())
        .unwrap_or("");
    if prog == "extmerge-generator" {
        return generator(&argv[1..]);
    }
    let cli = match parse_args() {
        Ok(Some(c)) => c,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => return fail(e),
    };
    extmerge::inspect::fsutil::raise_nofile_limit();
    if let Some(fd) = extmerge::varlink::invocation() {
        return varlink(&cli, prog, fd);
    }
    if let Some(l) = std::env::var("SYSTEMD_LOG_LEVEL")
        .ok()
        .and_then(|v| log_level(&v))
    {
        extmerge::log::set_level(l);
    }
    let changes = matches!(cli.verb.as_str(), "merge" | "unmerge" | "refresh") && !cli.dry_run;
    if changes {
        // Before the root is opened, as systemd does: not a root we may not read.
        if let Err(e) = extmerge::context::require_privileges() {
            return fail(e);
        }
    }
    let target = match target_of(&cli) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let ctx = context_of(&cli, target);
    let with_class = !cli.fixed_class;
    let describe = |done: Vec<(Class, Outcome)>| {
        for (class, out) in done {
            for line in out.describe_with(class, &cli.opts.root, Some(ALWAYS_REFRESH_HINT)) {
                say(line);
            }
        }
    };
    if !cli.dry_run {
        // The verbs that change the system: all classes as one, all or nothing.
        let done = match cli.verb.as_str() {
            "merge" => ctx.merge().map(describe),
            "refresh" => ctx.refresh().map(describe),
            "unmerge" => ctx.unmerge().map(|done| {
                for (class, hs) in done {
                    if hs.is_empty() {
                        say(format_args!(
                            "No {class} extensions merged, nothing to unmerge."
                        ));
                    }
                }
            }),
            _ => Ok(()),
        };
        match done {
            Err(e) => return fail(with_hint(e)),
            Ok(()) if changes => return ExitCode::SUCCESS,
            Ok(()) => {}
        }
    }
    let root = match Root::open_seen_by(target, &cli.opts.root) {
        Ok(r) => r,
        Err(e) => {
            // As a target's: the process named first, as the library's errors do.
            let whose = target
                .map(|pid| format!("process {pid}: "))
                .unwrap_or_default();
            return fail(format!(
                "{whose}{}: cannot open root: {}",
                esc(&cli.opts.root),
                extmerge::log::os_text(&e)
            ));
        }
    };
    // The boot report of extmerge-initrd, for `status` of the running system.
    let boot = (cli.verb == "status" && cli.opts.root == Path::new("/") && target.is_none())
        .then(|| std::fs::read_to_string(BOOT_REPORT).ok())
        .flatten()
        .and_then(|t| record::read_report(&t));
    let mut ok = true;
    let mut json_items = Vec::new();
    let mut text = String::new();
    let mut rows = Vec::new();
    let res: Result<(), MergeError> = (|| {
        match cli.verb.as_str() {
            "list" => {
                for (class, disc) in ctx.list()? {
                    // systemd 262 says nothing about entries that are no extensions;
                    // the reasons are there at debug level.
                    for s in &disc.skipped {
                        extmerge::log::debug(&format!(
                            "Skipping {}: {}",
                            esc(&root.display_path(&s.path)),
                            s.reason
                        ));
                    }
                    for i in disc.images {
                        let c = Candidate {
                            image: i,
                            verdict: Verdict::Match,
                            release: None,
                        };
                        if cli.json.is_some() {
                            json_items.push(report::list_json(&root, &c, with_class));
                        } else {
                            let mut r = vec![
                                escape(&c.image.name),
                                c.image.kind.as_str().into(),
                                escape(&c.image.shown(&root)),
                                c.image
                                    .mtime_usec
                                    .map(report::format_usec)
                                    .unwrap_or("-".into()),
                            ];
                            if with_class {
                                r.insert(1, class.as_str().into());
                            }
                            rows.push(r);
                        }
                    }
                }
            }
            "status" => {
                for (class, st) in ctx.status()? {
                    if cli.json.is_some() {
                        let mut rows = report::status_json(&st, with_class.then_some(class));
                        if let Some(b) = &boot {
                            // Ours: what the initrd did with this class.
                            for r in &mut rows {
                                if let Json::Object(o) = r {
                                    o.push(("initrd".into(), record::status_field(b, class)));
                                }
                            }
                        }
                        json_items.extend(rows);
                    } else {
                        for r in st {
                            // One extension a line, as systemd's TABLE_STRV cell.
                            let names = |e: Vec<String>| {
                                e.iter().map(escape).collect::<Vec<_>>().join("\n")
                            };
                            let mut row = vec![
                                escape(&r.hierarchy),
                                r.extensions.map(names).unwrap_or("none".into()),
                                r.since_usec.map(report::format_usec).unwrap_or("-".into()),
                            ];
                            if with_class {
                                row.insert(1, class.as_str().into());
                            }
                            rows.push(row);
                        }
                    }
                }
            }
            // `plan`, `merge --dry-run`, `refresh --dry-run`: each class's plan is shown
            // even when another's fails.
            _ => {
                for &class in &cli.classes {
                    match ctx.plan(class) {
                        Ok(p) if cli.json.is_some() => {
                            json_items.push(report::plan_json(&root, &p))
                        }
                        Ok(p) => text.push_str(&report::plan_text(&root, &p)),
                        Err(e) => {
                            say(with_hint(e));
                            ok = false;
                        }
                    }
                }
            }
        }
        Ok(())
    })();
    if let Err(e) = res {
        say(with_hint(e));
        ok = false;
    }
    match cli.verb.as_str() {
        "list" | "status" => {
            if let Some(pretty) = cli.json {
                print_json(Json::Array(json_items), pretty);
            } else if cli.verb == "list" && rows.is_empty() {
                say("No OS extensions found.");
            } else {
                let mut header = if cli.verb == "list" {
                    vec!["NAME", "TYPE", "PATH", "TIME"]
                } else {
                    vec!["HIERARCHY", "EXTENSIONS", "SINCE"]
                };
                if with_class {
                    header.insert(1, "CLASS");
                }
                if cli.verb == "list" {
                    rows.sort();
                }
                show(&report::table(&header, &rows, cli.legend));
                if let Some(b) = &boot {
                    show(&record::status_text(b, &cli.classes, BOOT_REPORT));
                }
            }
        }
        _ => {
            if let Some(pretty) = cli.json.filter(|_| !json_items.is_empty()) {
                print_json(Json::Array(json_items), pretty);
            }
            show(&text);
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
