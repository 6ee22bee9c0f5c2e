//! libextmerge: the C ABI of extmerge (`include/extmerge.h` is generated from this
//! crate by cbindgen; the doc comments below are the header's text).
//!
//! No logic lives here: each function checks its arguments, calls the core library
//! and turns the result into `0`/`-errno` plus a message. Every exported function
//! goes through one gate in [`ffi`] (`catch_unwind`, NULL and UTF-8 checks, the
//! context's log callback).
#![allow(unsafe_code)]
#![allow(non_camel_case_types)]
// The exported functions take raw pointers by design (it is a C ABI); each one is checked
// for NULL in `ffi` before it is dereferenced, under a `// SAFETY:` note.
#![allow(clippy::not_unsafe_ptr_arg_deref)]
#![warn(missing_docs)]

mod ffi;
mod list;
mod status;

use std::ffi::{c_char, c_int, c_uint, c_void, CString};
use std::path::PathBuf;

use extmerge::context::{Context, Outcome};
use extmerge::format::class::Class;
use extmerge::inspect::fsutil::Root;
use extmerge::log::Level;
use extmerge::options::{hierarchy_is_valid, Environment, MutableMode, Options, Search};
use extmerge::plan::PlanError;

use ffi::{arg_opt_str, arg_str, arg_str_list, cstring, ctx_call, ctx_get, guard, log_lazy, Error};

pub use list::*;
pub use status::*;

/// System extensions (`/usr`, `/opt`; systemd-sysext).
pub const EXTMERGE_CLASS_SYSEXT: c_int = 1;
/// Configuration extensions (`/etc`; systemd-confext).
pub const EXTMERGE_CLASS_CONFEXT: c_int = 2;
/// Both classes: confext first, then sysext (the order systemd's units run in).
pub const EXTMERGE_CLASS_BOTH: c_int = 3;

/// Merge extensions whatever their extension-release file says (`--force`).
pub const EXTMERGE_FLAG_FORCE: c_uint = 1;
/// Never ask the service manager to reload (`--no-reload`).
pub const EXTMERGE_FLAG_NO_RELOAD: c_uint = 2;
/// Refresh even when nothing changed (`--always-refresh=yes`).
pub const EXTMERGE_FLAG_ALWAYS_REFRESH: c_uint = 4;

/// Returned instead of a negative errno when a call on a context hit an internal error
/// (a Rust panic, caught at the interface; a bug in the library). The context is
/// poisoned by it: every later call taking the context returns EXTMERGE_ERROR_PANIC at
/// once without doing anything, with a last error saying so and quoting the panic's
/// message; extmerge_context_last_error() still works and extmerge_context_free()
/// frees it as usual. Const getters on a poisoned context return their failure value
/// (extmerge_context_get_log_priority() EXTMERGE_ERROR_PANIC,
/// extmerge_context_get_image_policy() NULL).
///
/// -(1 << 20) = -1048576: far outside the errno range (Linux errno values are below
/// 4096), so it is never confused with a -errno; strerror(3) has no text for it.
pub const EXTMERGE_ERROR_PANIC: c_int = -1_048_576;

const ALL_FLAGS: c_uint =
    EXTMERGE_FLAG_FORCE | EXTMERGE_FLAG_NO_RELOAD | EXTMERGE_FLAG_ALWAYS_REFRESH;

/// An extmerge context: the root, the class(es) and the options of merge, unmerge,
/// refresh, listing and status, plus the last error and the log callback.
///
/// Opaque. Created by extmerge_context_new(), released by extmerge_context_free().
/// Thread-compatible: a context may be used from any thread, but by one thread at a
/// time; different contexts are independent (no global state).
pub struct extmerge_context {
    pub(crate) opts: Options,
    /// `None`: `$SYSTEMD_SYSEXT_MUTABLE_MODE` / `$SYSTEMD_CONFEXT_MUTABLE_MODE`, else no.
    pub(crate) mutable: Option<MutableMode>,
    pub(crate) class: c_int,
    /// extmerge_context_set_target_pid(): `None` for the caller's own namespace.
    pub(crate) target: Option<i32>,
    pub(crate) image_policy: Option<CString>,
    pub(crate) log: ffi::LogConfig,
    pub(crate) last_error: Option<CString>,
    /// Set when a call on the context panicked: later calls fail with
    /// EXTMERGE_ERROR_PANIC (see `ffi::ctx_call`).
    pub(crate) poisoned: Option<ffi::Poison>,
}

/// Parses `EXTMERGE_LOG`: a syslog level name or number.
fn parse_priority(s: &str) -> Option<c_int> {
    let s = s.trim();
    if let Ok(n) = s.parse::<c_int>() {
        return (0..=7).contains(&n).then_some(n);
    }
    Some(match s.to_ascii_lowercase().as_str() {
        "emerg" => 0,
        "alert" => 1,
        "crit" => 2,
        "err" | "error" => 3,
        "warning" | "warn" => 4,
        "notice" => 5,
        "info" => 6,
        "debug" => 7,
        _ => return None,
    })
}

impl extmerge_context {
    fn new() -> extmerge_context {
        let priority = std::env::var("EXTMERGE_LOG")
            .ok()
            .and_then(|v| parse_priority(&v))
            .unwrap_or(ffi::LOG_ERR);
        extmerge_context {
            // The environment is read once, here (the library itself reads none).
            opts: Options {
                env: Environment::from_process(),
                ..Options::default()
            },
            mutable: None,
            class: EXTMERGE_CLASS_BOTH,
            target: None,
            image_policy: None,
            log: ffi::LogConfig {
                target: ffi::LogTarget::Stderr,
                priority,
            },
            last_error: None,
            poisoned: None,
        }
    }

    /// The classes to act on, in order.
    pub(crate) fn classes(&self) -> &'static [Class] {
        match self.class {
            EXTMERGE_CLASS_SYSEXT => &[Class::Sysext],
            EXTMERGE_CLASS_CONFEXT => &[Class::Confext],
            _ => &Class::ALL,
        }
    }

    /// The library's entry point for this call: the context's settings with this
    /// call's `flags` added; the mutable mode set on the context beats the class's
    /// environment variable (as `--mutable=` does).
    pub(crate) fn core(&self, flags: c_uint) -> Result<Context, Error> {
        let mut o = self.opts.clone();
        // The target: the one set, else a process of the unit's cgroup (found at each
        // call: a restarted service has new processes), else the caller's own.
        let target = match (self.target, &o.search) {
            (Some(pid), _) => Some(pid),
            (None, Some(Search::Unit(u))) => Some(extmerge::inspect::cgroup::unit_process(u)?),
            _ => None,
        };
        // sysext.conf / confext.conf of the context's root (as the target sees it), read
        // for each call (as each run of systemd-sysext does), below the context's
        // settings and the environment.
        o.config = extmerge::inspect::conf::load_seen_by(target, &o.root, self.classes());
        o.force |= flags & EXTMERGE_FLAG_FORCE != 0;
        o.no_reload |= flags & EXTMERGE_FLAG_NO_RELOAD != 0;
        o.always_refresh |= flags & EXTMERGE_FLAG_ALWAYS_REFRESH != 0;
        let mut ctx = Context::new(o, self.classes());
        ctx.mutable = self.mutable;
        ctx.target = target;
        Ok(ctx)
    }

    /// Opens the context's root for listing and status (as the target sees it).
    pub(crate) fn open_root(&self) -> Result<Root, Error> {
        Root::open_seen_by(self.target, &self.opts.root).map_err(|source| {
            Error::from(PlanError::Root {
                path: self.opts.root.clone(),
                source,
            })
        })
    }
}

/// Returns the library's version, e.g. "0.1.0".
///
/// The string is static: never free it. Thread-safe.
#[no_mangle]
pub extern "C" fn extmerge_version() -> *const c_char {
    guard(std::ptr::null(), || {
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
    })
}

/// Creates a context with the defaults: root "/", class EXTMERGE_CLASS_BOTH, mutable
/// mode from the environment (else "no"), no image policy, no flags, and logging to
/// stderr at LOG_ERR, or at the priority in the environment variable EXTMERGE_LOG
/// ("err", "warning", "notice", "info", "debug" or a number 0-7), read here once.
///
/// On success *ret is set to the new context, which the caller owns and releases
/// with extmerge_context_free(); on failure *ret is left untouched.
///
/// Returns 0, or -EINVAL if ret is NULL, -EIO on an internal error.
///
/// Thread-safe.
#[no_mangle]
pub extern "C" fn extmerge_context_new(ret: *mut *mut extmerge_context) -> c_int {
    guard(-libc::EIO, || {
        if ret.is_null() {
            return -libc::EINVAL;
        }
        ffi::put(ret, Box::new(extmerge_context::new()));
        0
    })
}

/// Releases a context and everything it owns (its last error, its image policy).
///
/// Calling with NULL is fine. Must not be called twice with the same value. Lists made
/// from the context do not refer to it and stay valid. A context poisoned by a panic
/// (EXTMERGE_ERROR_PANIC) is freed as any other.
///
/// Thread-compatible: no other thread may use ctx during or after the call.
#[no_mangle]
pub extern "C" fn extmerge_context_free(ctx: *mut extmerge_context) {
    ffi::free_box(ctx)
}

/// Returns the message of the last failed call on ctx: what failed, naming the file,
/// and the reason in strerror(3)'s words ("/x: cannot open root: No such file or
/// directory").
///
/// The text is the one the extmerge program prints: names, paths and values from the
/// files read are escaped as systemd's cescape() does ("esc\x1b[31m", "a\nb", "\\"),
/// invalid UTF-8 as "\xNN" per byte, so no control character from a name or a file
/// reaches the caller.
///
/// The string is owned by ctx and valid until the next call on ctx that takes a
/// non-const context (each one clears it first) or extmerge_context_free().
///
/// Returns NULL if the last call succeeded, if there was none, or if ctx is NULL. On a
/// context poisoned by a panic (EXTMERGE_ERROR_PANIC) it works as always: after the
/// call that panicked it is "internal error (panic): <panic message>; the context is
/// poisoned...", after each later call "internal error (panic): the context is poisoned
/// by an earlier panic (<panic message>)...".
///
/// Thread-compatible: reads ctx; no other thread may change or free it during the call.
#[no_mangle]
pub extern "C" fn extmerge_context_last_error(ctx: *const extmerge_context) -> *const c_char {
    ffi::ctx_last_error(ctx)
}

fn set_root_impl(ctx: *mut extmerge_context, root: *const c_char, func: &str) -> c_int {
    ctx_call(ctx, func, |c| {
        let r = arg_str(root, "root")?;
        if r.is_empty() {
            return Err(Error::inval("root must not be empty"));
        }
        let path = PathBuf::from(r);
        Root::open_seen_by(c.target, &path).map_err(|source| {
            Error::from(PlanError::Root {
                path: path.clone(),
                source,
            })
        })?;
        c.opts.root = path;
        Ok(0)
    })
}

/// Sets the root directory whose extensions are merged into its own hierarchies
/// (`--root=`): extensions are searched in <root>/etc/extensions, ... and merged into
/// <root>/usr, ...; the root's os-release is matched. Default "/". With a root other
/// than "/" the service manager is never reloaded.
///
/// root is a UTF-8 path, copied; a relative path is resolved against the working
/// directory at each call. The directory must exist now.
///
/// Returns 0, or -EINVAL (ctx or root NULL, root empty or not UTF-8), or the negative
/// errno of opening the root (-ENOENT, -ENOTDIR, -EACCES...) with a last error naming it.
///
/// Thread-compatible: no other thread may use ctx during the call.
#[no_mangle]
pub extern "C" fn extmerge_context_set_root(
    ctx: *mut extmerge_context,
    root: *const c_char,
) -> c_int {
    set_root_impl(ctx, root, "extmerge_context_set_root")
}

/// Sets the root to the real root file system mounted for switch-root (usually
/// "/sysroot"), for merging from the initrd what the final system will keep, as
/// systemd's `systemd-sysext-sysroot.service` does with `--root=/sysroot`.
///
/// An alias of extmerge_context_set_root(): the sysroot's os-release is matched
/// (scope "system" unless it has an /etc/initrd-release), its search directories
/// are used, and the overlays on <sysroot>/usr, ... move with it at switch-root.
///
/// Returns as extmerge_context_set_root().
///
/// Thread-compatible: no other thread may use ctx during the call.
#[no_mangle]
pub extern "C" fn extmerge_context_set_sysroot(
    ctx: *mut extmerge_context,
    sysroot: *const c_char,
) -> c_int {
    set_root_impl(ctx, sysroot, "extmerge_context_set_sysroot")
}

/// Selects the class(es) acted on: EXTMERGE_CLASS_SYSEXT, EXTMERGE_CLASS_CONFEXT or
/// EXTMERGE_CLASS_BOTH (the default; confext first, then sysext).
///
/// Returns 0, or -EINVAL for a NULL ctx or any other value.
///
/// Thread-compatible: no other thread may use ctx during the call.
#[no_mangle]
pub extern "C" fn extmerge_context_set_class(ctx: *mut extmerge_context, class: c_int) -> c_int {
    ctx_call(ctx, "extmerge_context_set_class", |c| match class {
        EXTMERGE_CLASS_SYSEXT | EXTMERGE_CLASS_CONFEXT | EXTMERGE_CLASS_BOTH => {
            c.class = class;
            Ok(0)
        }
        _ => Err(Error::inval(format!(
            "invalid class {class}: expected EXTMERGE_CLASS_SYSEXT (1), \
             EXTMERGE_CLASS_CONFEXT (2) or EXTMERGE_CLASS_BOTH (3)"
        ))),
    })
}

/// Sets the mutable mode (`--mutable=`) with systemd's names: "no", "yes", "auto",
/// "import", "ephemeral", "ephemeral-import"; booleans as systemd parses them
/// ("true", "0", ...) mean "yes"/"no".
///
/// NULL restores the default: $SYSTEMD_SYSEXT_MUTABLE_MODE or
/// $SYSTEMD_CONFEXT_MUTABLE_MODE (read at each call, for each class), else "no".
///
/// Returns 0, or -EINVAL for a NULL ctx, invalid UTF-8 or an unknown mode.
///
/// Thread-compatible: no other thread may use ctx during the call.
#[no_mangle]
pub extern "C" fn extmerge_context_set_mutable(
    ctx: *mut extmerge_context,
    mode: *const c_char,
) -> c_int {
    ctx_call(ctx, "extmerge_context_set_mutable", |c| {
        c.mutable = match arg_opt_str(mode, "mutable mode")? {
            None => None,
            Some(m) => Some(MutableMode::parse(m).ok_or_else(|| {
                Error::inval(format!(
                    "invalid mutable mode \"{m}\": expected no, yes, auto, import, \
                     ephemeral or ephemeral-import"
                ))
            })?),
        };
        Ok(0)
    })
}

/// Stores an image policy string (`--image-policy=`, systemd.image-policy(7)), copied.
///
/// The policy applies to disk-image extensions (`*.raw`, block devices) and replaces
/// the per-image default (systemd's sysext/confext policies, stricter ones for
/// `/.extra/` in the initrd). NULL restores the default.
///
/// Returns 0, or -EINVAL for a NULL ctx, invalid UTF-8 or a policy that does not parse
/// (the last error says which token).
///
/// Thread-compatible: no other thread may use ctx during the call.
#[no_mangle]
pub extern "C" fn extmerge_context_set_image_policy(
    ctx: *mut extmerge_context,
    policy: *const c_char,
) -> c_int {
    ctx_call(ctx, "extmerge_context_set_image_policy", |c| {
        let text = arg_opt_str(policy, "image policy")?;
        let parsed = match text {
            Some(t) => Some(
                extmerge::format::policy::ImagePolicy::parse(t)
                    .map_err(|e| Error::inval(format!("invalid image policy {t:?}: {e}")))?,
            ),
            None => None,
        };
        c.opts.image_policy = parsed;
        c.image_policy = text.map(cstring);
        Ok(0)
    })
}

/// Returns the image policy stored with extmerge_context_set_image_policy(), or NULL
/// if none is set (or ctx is NULL, or poisoned by a panic: see EXTMERGE_ERROR_PANIC).
///
/// The string is owned by ctx and valid until the next
/// extmerge_context_set_image_policy() or extmerge_context_free().
///
/// Thread-compatible: reads ctx; no other thread may change or free it during the call.
#[no_mangle]
pub extern "C" fn extmerge_context_get_image_policy(ctx: *const extmerge_context) -> *const c_char {
    ctx_get(ctx, std::ptr::null(), std::ptr::null(), |c| {
        ffi::opt_ptr(c.image_policy.as_ref())
    })
}

/// Merges extensions whatever their extension-release files say (`--force`) when
/// force is non-zero; 0 (the default) checks them. Also affects listing.
///
/// Returns 0, or -EINVAL for a NULL ctx.
///
/// Thread-compatible: no other thread may use ctx during the call.
#[no_mangle]
pub extern "C" fn extmerge_context_set_force(ctx: *mut extmerge_context, force: c_int) -> c_int {
    ctx_call(ctx, "extmerge_context_set_force", |c| {
        c.opts.force = force != 0;
        Ok(0)
    })
}

/// Never asks the service manager to reload (`--no-reload`) when no_reload is
/// non-zero. By default it is reloaded after a merge, refresh or unmerge of the host
/// root "/" when an extension sets EXTENSION_RELOAD_MANAGER=1.
///
/// Returns 0, or -EINVAL for a NULL ctx.
///
/// Thread-compatible: no other thread may use ctx during the call.
#[no_mangle]
pub extern "C" fn extmerge_context_set_no_reload(
    ctx: *mut extmerge_context,
    no_reload: c_int,
) -> c_int {
    ctx_call(ctx, "extmerge_context_set_no_reload", |c| {
        c.opts.no_reload = no_reload != 0;
        Ok(0)
    })
}

/// Makes extmerge_refresh() replace the merge even when nothing changed
/// (`--always-refresh=yes`) when always is non-zero.
///
/// Returns 0, or -EINVAL for a NULL ctx.
///
/// Thread-compatible: no other thread may use ctx during the call.
#[no_mangle]
pub extern "C" fn extmerge_context_set_always_refresh(
    ctx: *mut extmerge_context,
    always: c_int,
) -> c_int {
    ctx_call(ctx, "extmerge_context_set_always_refresh", |c| {
        c.opts.always_refresh = always != 0;
        Ok(0)
    })
}

/// Mounts the merged hierarchies noexec (`--noexec=`): a negative value restores the
/// default (confext noexec, sysext exec), 0 means exec, a positive value noexec.
///
/// Returns 0, or -EINVAL for a NULL ctx.
///
/// Thread-compatible: no other thread may use ctx during the call.
#[no_mangle]
pub extern "C" fn extmerge_context_set_noexec(ctx: *mut extmerge_context, noexec: c_int) -> c_int {
    ctx_call(ctx, "extmerge_context_set_noexec", |c| {
        c.opts.noexec = (noexec >= 0).then_some(noexec > 0);
        Ok(0)
    })
}

/// Sets the hierarchies to overlay, for every class of the context: n absolute,
/// normalized paths other than "/" ("/usr", "/opt"), each a UTF-8 string; the array
/// and the strings are copied. The order given is kept.
///
/// list NULL with n 0 restores the default: $SYSTEMD_SYSEXT_HIERARCHIES /
/// $SYSTEMD_CONFEXT_HIERARCHIES (colon-separated, read at each call), else /usr and /opt
/// for sysext and /etc for confext. A non-NULL list with n 0 means no hierarchy.
///
/// Returns 0, or -EINVAL for a NULL ctx, list NULL with n > 0, a NULL or non-UTF-8
/// element, or an invalid hierarchy (nothing is changed then).
///
/// Thread-compatible: no other thread may use ctx during the call.
#[no_mangle]
pub extern "C" fn extmerge_context_set_hierarchies(
    ctx: *mut extmerge_context,
    list: *const *const c_char,
    n: usize,
) -> c_int {
    ctx_call(ctx, "extmerge_context_set_hierarchies", |c| {
        c.opts.hierarchies = arg_str_list(list, n, "hierarchy", |h| {
            hierarchy_is_valid(h)
                .then_some(())
                .ok_or("must be an absolute, normalized path other than /")
        })?;
        Ok(0)
    })
}

/// Works on the mount namespace and root of process pid instead of the caller's (the
/// CLI's --pid): a service's own /etc. The root (extmerge_context_set_root()), the
/// search directories and the hierarchies are seen as that process sees them; the
/// merges land in its namespace only, while the caller's namespace and root stay as
/// they are (a helper thread joins the target's; log messages still reach the log
/// function on the calling thread). The service manager is never reloaded for a
/// target. Extensions are matched as systemd matches ExtensionDirectories=: against
/// the target's root's os-release, any scope, and an extension that does not match
/// fails the call (-ESTALE) instead of being skipped. A process that shares the
/// caller's namespace and root means the caller's own. pid 0 restores the default
/// (the caller's own, or the unit's processes with extmerge_context_set_unit()).
///
/// Returns 0, or -EINVAL (NULL ctx, pid < 0), -ESRCH (no such process now; the
/// process is looked up again at each call).
///
/// Thread-compatible: no other thread may use ctx during the call.
#[no_mangle]
pub extern "C" fn extmerge_context_set_target_pid(ctx: *mut extmerge_context, pid: c_int) -> c_int {
    ctx_call(ctx, "extmerge_context_set_target_pid", |c| {
        if pid < 0 {
            return Err(Error::inval(format!("invalid pid {pid}")));
        }
        if pid > 0 && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return Err(Error::new(
                libc::ESRCH,
                format!("process {pid}: no such process"),
            ));
        }
        c.target = (pid > 0).then_some(pid);
        Ok(0)
    })
}

/// Looks for extensions in the n directories of list (absolute UTF-8 paths, strongest
/// first, resolved inside the root) instead of the class's standard search
/// directories (the CLI's --search=): entries in them are extensions exactly as in
/// the standard ones (directories, .raw images, NAME.v/), with the same matching,
/// picking and image policy. The array and the strings are copied. list NULL with n 0
/// restores the standard directories; this also clears extmerge_context_set_unit().
///
/// Returns 0, or -EINVAL (NULL ctx, list NULL with n > 0, a NULL, non-UTF-8 or
/// relative element; nothing is changed then).
///
/// Thread-compatible: no other thread may use ctx during the call.
#[no_mangle]
pub extern "C" fn extmerge_context_set_search_dirs(
    ctx: *mut extmerge_context,
    list: *const *const c_char,
    n: usize,
) -> c_int {
    ctx_call(ctx, "extmerge_context_set_search_dirs", |c| {
        c.opts.search = arg_str_list(list, n, "search directory", |d| {
            d.starts_with('/')
                .then_some(())
                .ok_or("must be an absolute path")
        })?
        .map(Search::Dirs);
        Ok(0)
    })
}

/// Uses the unit's own extensions (the CLI's --unit=): the search directories become
/// NAME.confext.d/ (and NAME.sysext.d/ for sysext) in /etc/systemd/system,
/// /run/systemd/system, /usr/local/lib/systemd/system and /usr/lib/systemd/system of
/// the root, an entry in an earlier one shadowing a same-named one in a later one; at
/// least one of them must exist (else -ENOENT). Without a target pid, each call works
/// on the unit's processes: a process of its cgroup, found at the call (-ESRCH when
/// the unit has none). Matching is a service's (see extmerge_context_set_target_pid()).
/// unit NULL clears it (the standard directories again).
///
/// Returns 0, or -EINVAL (NULL ctx, not a valid unit name).
///
/// Thread-compatible: no other thread may use ctx during the call.
#[no_mangle]
pub extern "C" fn extmerge_context_set_unit(
    ctx: *mut extmerge_context,
    unit: *const c_char,
) -> c_int {
    ctx_call(ctx, "extmerge_context_set_unit", |c| {
        match arg_opt_str(unit, "unit")? {
            None => c.opts.search = None,
            Some(u) => {
                extmerge::format::unit::check_unit_name(u).map_err(Error::inval)?;
                c.opts.search = Some(Search::Unit(u.to_string()));
            }
        }
        Ok(0)
    })
}

/// A log function: called synchronously, on the thread making a call on the context,
/// with the userdata given to extmerge_context_set_log_fn(), a syslog priority
/// (LOG_ERR 3 ... LOG_DEBUG 7) and a UTF-8 message without a trailing newline that is
/// valid only during the call. It must not call back into the library with the same
/// context.
pub type extmerge_log_fn =
    Option<unsafe extern "C" fn(userdata: *mut c_void, priority: c_int, message: *const c_char)>;

/// Routes the context's messages to log_fn with userdata (kept, not owned: it must stay
/// valid while ctx uses it). log_fn NULL silences the context. The default writes
/// "libextmerge: <message>" lines to stderr.
///
/// Messages arrive during calls on ctx: the core's progress and warnings ("Unmerged
/// '/usr'.", skipped entries, ...) and, at LOG_ERR, each error that a call returns, as
/// "<function>: <last error>". Messages less important than the priority set with
/// extmerge_context_set_log_priority() are dropped before they are formatted.
/// Messages are escaped as extmerge_context_last_error() describes: no control
/// character reaches log_fn.
///
/// Returns 0, or -EINVAL for a NULL ctx.
///
/// Thread-compatible: no other thread may use ctx during the call.
#[no_mangle]
pub extern "C" fn extmerge_context_set_log_fn(
    ctx: *mut extmerge_context,
    log_fn: extmerge_log_fn,
    userdata: *mut c_void,
) -> c_int {
    ctx_call(ctx, "extmerge_context_set_log_fn", |c| {
        c.log.target = match log_fn {
            Some(f) => ffi::LogTarget::Callback(f, userdata),
            None => ffi::LogTarget::Off,
        };
        Ok(0)
    })
}

/// Sets the least important syslog priority delivered to the log function: 0
/// (LOG_EMERG) ... 7 (LOG_DEBUG). The default is LOG_ERR (3), or the value of
/// $EXTMERGE_LOG when the context was created.
///
/// Returns 0, or -EINVAL for a NULL ctx or a priority outside 0-7.
///
/// Thread-compatible: no other thread may use ctx during the call.
#[no_mangle]
pub extern "C" fn extmerge_context_set_log_priority(
    ctx: *mut extmerge_context,
    priority: c_int,
) -> c_int {
    ctx_call(ctx, "extmerge_context_set_log_priority", |c| {
        if !(0..=7).contains(&priority) {
            return Err(Error::inval(format!(
                "invalid log priority {priority}: expected 0 (LOG_EMERG) to 7 (LOG_DEBUG)"
            )));
        }
        c.log.priority = priority;
        Ok(0)
    })
}

/// Returns the context's log priority (0-7), or -EINVAL for a NULL ctx,
/// EXTMERGE_ERROR_PANIC for a context poisoned by a panic.
///
/// Thread-compatible: reads ctx; no other thread may change or free it during the call.
#[no_mangle]
pub extern "C" fn extmerge_context_get_log_priority(ctx: *const extmerge_context) -> c_int {
    ctx_get(ctx, -libc::EINVAL, EXTMERGE_ERROR_PANIC, |c| c.log.priority)
}

fn check_flags(flags: c_uint) -> Result<(), Error> {
    if flags & !ALL_FLAGS != 0 {
        return Err(Error::inval(format!(
            "unknown flags 0x{:x}",
            flags & !ALL_FLAGS
        )));
    }
    Ok(())
}

/// How a C caller refreshes even when nothing changed, for the core's "no change" line
/// (the CLI names `--always-refresh=yes` there).
const ALWAYS_REFRESH_HINT: &str =
    "EXTMERGE_FLAG_ALWAYS_REFRESH or extmerge_context_set_always_refresh()";

fn report_outcomes(o: &Options, done: &[(Class, Outcome)]) {
    if extmerge::log::enabled(Level::Info) {
        for (class, out) in done {
            for line in out.describe_with(*class, &o.root, Some(ALWAYS_REFRESH_HINT)) {
                extmerge::log::log(Level::Info, &line);
            }
        }
    }
}

/// Merges the extensions of the context's class(es) into their hierarchies, each
/// hierarchy as one read-only (or, with a mutable mode, writable) overlay, all or
/// nothing: with EXTMERGE_CLASS_BOTH every class is checked and planned before
/// anything is mounted, confext is merged first, then sysext, and a failure in the
/// sysext part undoes the confext part.
///
/// flags: EXTMERGE_FLAG_FORCE, EXTMERGE_FLAG_NO_RELOAD, EXTMERGE_FLAG_ALWAYS_REFRESH
/// (no effect here), added to the context's settings for this call.
///
/// Needs CAP_SYS_ADMIN; uses /run/extmerge on the running system as a staging area.
/// Finding no compatible extension is not an error (nothing is mounted).
///
/// Returns 0, or -EINVAL (NULL ctx, unknown flags, bad hierarchies, bad os-release),
/// -EBUSY (a hierarchy is merged already: use extmerge_refresh()), or the errno of the
/// failed step (-ENOENT, -EPERM, ...); the last error names the path and the reason.
///
/// Thread-compatible: no other thread may use ctx during the call.
#[no_mangle]
pub extern "C" fn extmerge_merge(ctx: *mut extmerge_context, flags: c_uint) -> c_int {
    ctx_call(ctx, "extmerge_merge", |c| {
        check_flags(flags)?;
        let done = c.core(flags)?.merge()?;
        report_outcomes(&c.opts, &done);
        Ok(0)
    })
}

/// Unmerges every merge of the context's class(es) (also one made by systemd-sysext)
/// from their hierarchies; with EXTMERGE_CLASS_BOTH confext first, then sysext. Nothing
/// merged is not an error.
///
/// flags: EXTMERGE_FLAG_NO_RELOAD; EXTMERGE_FLAG_FORCE and EXTMERGE_FLAG_ALWAYS_REFRESH
/// are accepted and have no effect.
///
/// Returns 0, or -EINVAL (NULL ctx, unknown flags, bad hierarchies) or the errno of
/// the failed step; the last error names the path and the reason.
///
/// Thread-compatible: no other thread may use ctx during the call.
#[no_mangle]
pub extern "C" fn extmerge_unmerge(ctx: *mut extmerge_context, flags: c_uint) -> c_int {
    ctx_call(ctx, "extmerge_unmerge", |c| {
        check_flags(flags)?;
        for (class, hs) in c.core(flags)?.unmerge()? {
            if hs.is_empty() {
                log_lazy(Level::Info, || {
                    format!("No {class} extensions merged, nothing to unmerge.")
                });
            }
        }
        Ok(0)
    })
}

/// Merges what is installed now, replacing an existing merge without a moment in
/// which the hierarchy is bare where the kernel allows it; unmerges when no extension
/// is left; does nothing when nothing changed (unless EXTMERGE_FLAG_ALWAYS_REFRESH or
/// extmerge_context_set_always_refresh()). With EXTMERGE_CLASS_BOTH confext first,
/// then sysext; the first error stops the call.
///
/// flags: EXTMERGE_FLAG_FORCE, EXTMERGE_FLAG_NO_RELOAD, EXTMERGE_FLAG_ALWAYS_REFRESH.
///
/// Returns as extmerge_merge(), except that an existing merge is not -EBUSY.
///
/// Thread-compatible: no other thread may use ctx during the call.
#[no_mangle]
pub extern "C" fn extmerge_refresh(ctx: *mut extmerge_context, flags: c_uint) -> c_int {
    ctx_call(ctx, "extmerge_refresh", |c| {
        check_flags(flags)?;
        let done = c.core(flags)?.refresh()?;
        report_outcomes(&c.opts, &done);
        Ok(0)
    })
}

/// The C constant of a class.
pub(crate) fn class_to_c(class: Class) -> c_int {
    match class {
        Class::Sysext => EXTMERGE_CLASS_SYSEXT,
        Class::Confext => EXTMERGE_CLASS_CONFEXT,
    }
}

/// Returns "sysext", "confext" or "both" for an EXTMERGE_CLASS_* value, NULL for any
/// other. The string is static. Thread-safe.
#[no_mangle]
pub extern "C" fn extmerge_class_to_string(class: c_int) -> *const c_char {
    guard(std::ptr::null(), || {
        let s: &'static [u8] = match class {
            EXTMERGE_CLASS_SYSEXT => b"sysext\0",
            EXTMERGE_CLASS_CONFEXT => b"confext\0",
            EXTMERGE_CLASS_BOTH => b"both\0",
            _ => return std::ptr::null(),
        };
        s.as_ptr().cast()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last_error(ctx: *const extmerge_context) -> Option<String> {
        let p = extmerge_context_last_error(ctx);
        // SAFETY: a string owned by ctx, read before the next call on it.
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }

    /// A panic inside a call on a context: EXTMERGE_ERROR_PANIC (not an errno), the panic's
    /// message as the last error and at LOG_ERR, and the context is poisoned: later calls
    /// return EXTMERGE_ERROR_PANIC without running, const getters their failure value,
    /// the last error still works and free frees it (miri checks for leaks).
    #[test]
    fn panic_poisons_the_context() {
        // Outside the errno range (MAX_ERRNO is 4095).
        const { assert!(EXTMERGE_ERROR_PANIC == -(1 << 20) && EXTMERGE_ERROR_PANIC < -4095) };
        let ctx = new_ctx();
        let mut log: Vec<(c_int, String)> = Vec::new();
        let ud: *mut c_void = (&mut log as *mut Vec<(c_int, String)>).cast();
        assert_eq!(extmerge_context_set_log_fn(ctx, Some(collect), ud), 0);
        assert_eq!(
            extmerge_context_set_image_policy(ctx, c"usr=verity".as_ptr()),
            0
        );
        assert!(!extmerge_context_get_image_policy(ctx).is_null());
        let r = ffi::ctx_call(ctx, "test", |c| -> Result<c_int, Error> {
            c.class = EXTMERGE_CLASS_CONFEXT; // half-changed when it panics
            panic!("boom")
        });
        assert_eq!(r, EXTMERGE_ERROR_PANIC);
        let e = last_error(ctx).unwrap();
        assert!(e.starts_with("internal error (panic): boom; "), "{e}");
        assert!(e.contains("poisoned"), "{e}");
        assert_eq!(log.len(), 1, "{log:?}");
        assert_eq!(log[0], (3, format!("test: {e}")));

        // Every later call returns it at once, without running.
        let mut ran = false;
        let r = ffi::ctx_call(ctx, "test2", |_| {
            ran = true;
            Ok(0)
        });
        assert_eq!(r, EXTMERGE_ERROR_PANIC);
        assert!(!ran, "a poisoned context runs nothing");
        let e = last_error(ctx).unwrap();
        assert!(
            e.starts_with(
                "internal error (panic): the context is poisoned by an earlier panic (boom)"
            ),
            "{e}"
        );
        assert_eq!(log.last().unwrap(), &(3, format!("test2: {e}")));
        assert_eq!(
            extmerge_context_set_class(ctx, EXTMERGE_CLASS_SYSEXT),
            EXTMERGE_ERROR_PANIC
        );
        // SAFETY: ctx is live and not used elsewhere.
        assert_eq!(unsafe { &*ctx }.class, EXTMERGE_CLASS_CONFEXT, "unchanged");
        assert_eq!(
            extmerge_context_set_log_fn(ctx, None, std::ptr::null_mut()),
            EXTMERGE_ERROR_PANIC
        );
        assert_eq!(
            extmerge_merge(ctx, 0),
            EXTMERGE_ERROR_PANIC,
            "merge does nothing"
        );
        let mut list: *mut list::extmerge_list = std::ptr::null_mut();
        assert_eq!(
            list::extmerge_list_new(ctx, &mut list),
            EXTMERGE_ERROR_PANIC
        );
        assert!(list.is_null(), "*ret untouched");
        let mut st: *mut status::extmerge_status_list = std::ptr::null_mut();
        assert_eq!(
            status::extmerge_status_list_new(ctx, &mut st),
            EXTMERGE_ERROR_PANIC
        );
        assert!(st.is_null());
        // Const getters: their failure value; the last error: as always.
        assert_eq!(extmerge_context_get_log_priority(ctx), EXTMERGE_ERROR_PANIC);
        assert!(extmerge_context_get_image_policy(ctx).is_null());
        assert!(last_error(ctx).unwrap().contains("(boom)"));
        extmerge_context_free(ctx);

        // Without a context: the documented failure value, nothing to poison.
        assert_eq!(ffi::guard(-libc::EIO, || panic!("x")), -libc::EIO);
        let n: *const c_int = &7;
        assert_eq!(ffi::obj_get(n, -1, |_| -> c_int { panic!("y") }), -1);
        assert_eq!(ffi::obj_get(n, -1, |v| *v), 7);
        // A panic in a const getter gives its NULL value and poisons nothing.
        let ctx = new_ctx();
        assert_eq!(ffi::ctx_get(ctx, -1, -2, |_| -> c_int { panic!("z") }), -1);
        assert_eq!(extmerge_context_get_log_priority(ctx), ffi::LOG_ERR);
        extmerge_context_free(ctx);
    }

    /// With the `fault-injection` feature, `$EXTMERGE_TEST_PANIC` makes the named
    /// function panic inside the boundary (what tests/c/test-panic.c uses).
    #[cfg(feature = "fault-injection")]
    #[test]
    #[cfg_attr(miri, ignore = "sets an environment variable")]
    fn fault_injection_hook() {
        let ctx = new_ctx();
        assert_eq!(
            extmerge_context_set_log_fn(ctx, None, std::ptr::null_mut()),
            0
        );
        std::env::set_var("EXTMERGE_TEST_PANIC", "extmerge_context_set_force");
        let r = extmerge_context_set_force(ctx, 1);
        std::env::remove_var("EXTMERGE_TEST_PANIC");
        assert_eq!(r, EXTMERGE_ERROR_PANIC);
        // SAFETY: ctx is live and not used elsewhere.
        assert!(!unsafe { &*ctx }.opts.force, "the body did not run");
        assert!(last_error(ctx).unwrap().contains("fault injection"));
        assert_eq!(extmerge_context_set_force(ctx, 1), EXTMERGE_ERROR_PANIC);
        extmerge_context_free(ctx);
    }

    #[test]
    fn errors_keep_errno_and_message() {
        let mut ctx: *mut extmerge_context = std::ptr::null_mut();
        assert_eq!(extmerge_context_new(&mut ctx), 0);
        assert_eq!(
            extmerge_context_set_log_fn(ctx, None, std::ptr::null_mut()),
            0
        );
        let r = ffi::ctx_call(ctx, "test", |_| Err(Error::new(0, "no errno")));
        assert_eq!(r, -libc::EIO, "a non-positive errno becomes EIO");
        let r = ffi::ctx_call(ctx, "test", |_| Err(Error::new(libc::ENOENT, "a\0b")));
        assert_eq!(r, -libc::ENOENT);
        assert_eq!(
            last_error(ctx).as_deref(),
            Some("a\\x00b"),
            "NUL is escaped (as cescape does)"
        );
        extmerge_context_free(ctx);
    }

    #[test]
    fn priorities() {
        for (s, p) in [
            ("debug", Some(7)),
            ("INFO", Some(6)),
            ("7", Some(7)),
            ("0", Some(0)),
            ("err", Some(3)),
            ("warning", Some(4)),
            ("8", None),
            ("-1", None),
            ("loud", None),
        ] {
            assert_eq!(parse_priority(s), p, "{s}");
        }
    }

    fn new_ctx() -> *mut extmerge_context {
        let mut ctx: *mut extmerge_context = std::ptr::null_mut();
        assert_eq!(extmerge_context_new(&mut ctx), 0);
        assert!(!ctx.is_null());
        ctx
    }

    /// The C-side log function of these tests: appends to the `Vec` behind `userdata`.
    unsafe extern "C" fn collect(userdata: *mut c_void, priority: c_int, msg: *const c_char) {
        // SAFETY: the tests pass a live `Vec` as userdata and the library a valid string
        // for the duration of the call.
        let (v, m) = unsafe {
            (
                &mut *userdata.cast::<Vec<(c_int, String)>>(),
                CStr::from_ptr(msg),
            )
        };
        v.push((priority, m.to_string_lossy().into_owned()));
    }

    #[test]
    fn null_arguments_are_refused() {
        let null: *mut extmerge_context = std::ptr::null_mut();
        assert_eq!(extmerge_context_new(std::ptr::null_mut()), -libc::EINVAL);
        extmerge_context_free(null);
        assert!(extmerge_context_last_error(null).is_null());
        assert_eq!(extmerge_context_set_class(null, 1), -libc::EINVAL);
        assert_eq!(extmerge_context_get_log_priority(null), -libc::EINVAL);
        assert!(extmerge_context_get_image_policy(null).is_null());
        let ctx = new_ctx();
        assert_eq!(
            extmerge_context_set_log_fn(ctx, None, std::ptr::null_mut()),
            0
        );
        assert_eq!(
            extmerge_context_set_root(ctx, std::ptr::null()),
            -libc::EINVAL
        );
        assert!(last_error(ctx).unwrap().contains("root"));
        assert_eq!(
            extmerge_context_set_hierarchies(ctx, std::ptr::null(), 2),
            -libc::EINVAL
        );
        assert_eq!(
            last_error(ctx).as_deref(),
            Some("hierarchy list is NULL but n is 2")
        );
        let bad = [c"\xff".as_ptr()];
        assert_eq!(
            extmerge_context_set_mutable(ctx, bad[0]),
            -libc::EINVAL,
            "not UTF-8"
        );
        extmerge_context_free(ctx);
        // The iterators and getters take NULL too.
        assert!(list::extmerge_list_next(std::ptr::null_mut()).is_null());
        assert!(status::extmerge_status_list_next(std::ptr::null_mut()).is_null());
        assert!(status::extmerge_status_entry_get_hierarchy(std::ptr::null()).is_null());
        assert_eq!(
            status::extmerge_status_entry_get_class(std::ptr::null()),
            -libc::EINVAL
        );
    }

    #[test]
    fn hierarchies_from_a_c_array() {
        let ctx = new_ctx();
        let mut log: Vec<(c_int, String)> = Vec::new();
        let ud: *mut c_void = (&mut log as *mut Vec<(c_int, String)>).cast();
        assert_eq!(extmerge_context_set_log_fn(ctx, Some(collect), ud), 0);
        let good = [c"/usr".as_ptr(), c"/opt".as_ptr()];
        assert_eq!(extmerge_context_set_hierarchies(ctx, good.as_ptr(), 2), 0);
        // SAFETY: ctx is live and not used elsewhere.
        let set = unsafe { &*ctx }.opts.hierarchies.clone();
        assert_eq!(set, Some(vec!["/usr".to_string(), "/opt".to_string()]));
        let bad = [c"/usr".as_ptr(), c"/".as_ptr(), std::ptr::null()];
        assert_eq!(
            extmerge_context_set_hierarchies(ctx, bad.as_ptr(), 2),
            -libc::EINVAL
        );
        // Nothing changed; the error went to the log function at LOG_ERR.
        // SAFETY: as above.
        assert_eq!(unsafe { &*ctx }.opts.hierarchies, set);
        assert_eq!(log.len(), 1, "{log:?}");
        assert_eq!(log[0].0, 3);
        assert!(
            log[0]
                .1
                .starts_with("extmerge_context_set_hierarchies: invalid hierarchy [1] \"/\""),
            "{log:?}"
        );
        assert_eq!(
            extmerge_context_set_hierarchies(ctx, bad.as_ptr(), 3),
            -libc::EINVAL,
            "a NULL element"
        );
        assert_eq!(
            extmerge_context_set_hierarchies(ctx, std::ptr::null(), 0),
            0
        );
        // SAFETY: as above.
        assert_eq!(unsafe { &*ctx }.opts.hierarchies, None);
        // Below the priority nothing is delivered.
        assert_eq!(extmerge_context_set_log_priority(ctx, 2), 0);
        assert_eq!(extmerge_context_set_class(ctx, 9), -libc::EINVAL);
        assert_eq!(log.len(), 2, "{log:?}");
        extmerge_context_free(ctx);
    }

    /// The core's "no change" line and "already merged" error reach C callers with the C
    /// API's flag and functions, never a CLI option.
    #[test]
    fn hints_name_c_flags_and_functions() {
        let mut log: Vec<(c_int, String)> = Vec::new();
        let ud: *mut c_void = (&mut log as *mut Vec<(c_int, String)>).cast();
        let cfg = ffi::LogConfig {
            target: ffi::LogTarget::Callback(collect, ud),
            priority: 6,
        };
        let out = Outcome {
            extensions: vec!["a".into()],
            unchanged: true,
            ..Default::default()
        };
        cfg.scope(|| report_outcomes(&Options::default(), &[(Class::Sysext, out.clone())]));
        assert_eq!(
            log,
            [(
                6,
                "Skipping extension refresh because no change was found, use \
                 EXTMERGE_FLAG_ALWAYS_REFRESH or extmerge_context_set_always_refresh() to \
                 always do a refresh."
                    .to_string()
            )]
        );
        let e = Error::from(extmerge::context::MergeError::AlreadyMerged(PathBuf::from(
            "/usr",
        )));
        assert_eq!(e.errno, libc::EBUSY);
        assert_eq!(
            e.msg,
            "/usr: hierarchy is already merged (use extmerge_refresh() or extmerge_unmerge())"
        );
    }

    /// A refused disk image reaches a C caller with the errno of its step, not a
    /// catch-all -EIO.
    #[test]
    fn image_errors_keep_their_errno() {
        use extmerge::context::MergeError;
        use extmerge::inspect::image::{ImageError, ImageStep};
        use extmerge::plan::PlanError;
        let cases = [
            (
                ImageError::refused(
                    ImageStep::Policy,
                    "refused by the image policy",
                    libc::ERFKILL,
                ),
                libc::ERFKILL,
            ),
            (
                ImageError::kernel(ImageStep::Signature, "signature", libc::EKEYREJECTED),
                libc::EKEYREJECTED,
            ),
            (
                ImageError::invalid(ImageStep::PartitionTable, "no usr partition", libc::ENXIO),
                libc::ENXIO,
            ),
            (
                ImageError::kernel(ImageStep::Dm, "busy", libc::EBUSY),
                libc::EBUSY,
            ),
        ];
        for (ie, errno) in cases {
            let ie = ie.at("/var/lib/extensions/x.raw");
            let e = Error::from(MergeError::Plan(PlanError::Image(ie)));
            assert_eq!(e.errno, errno, "{}", e.msg);
            assert!(
                e.msg.starts_with("/var/lib/extensions/x.raw: "),
                "{}",
                e.msg
            );
        }
    }

    /// Errors from the system read as strerror words, once, with the path: no Rust
    /// " (os error N)" in the last error or in the log.
    #[test]
    #[cfg_attr(miri, ignore = "opens paths")]
    fn os_errors_without_rust_suffix() {
        let ctx = new_ctx();
        let mut log: Vec<(c_int, String)> = Vec::new();
        let ud: *mut c_void = (&mut log as *mut Vec<(c_int, String)>).cast();
        assert_eq!(extmerge_context_set_log_fn(ctx, Some(collect), ud), 0);
        for (root, errno) in [
            (c"/nonexistent/extmerge-capi-test", libc::ENOENT),
            (c"/dev/null", libc::ENOTDIR),
        ] {
            assert_eq!(extmerge_context_set_root(ctx, root.as_ptr()), -errno);
            let e = last_error(ctx).unwrap();
            let want = format!(
                "{}: cannot open root: {}",
                root.to_str().unwrap(),
                extmerge::log::os_text(&std::io::Error::from_raw_os_error(errno))
            );
            assert_eq!(e, want);
            assert!(!e.contains("(os error"), "{e}");
            let logged = &log.last().unwrap().1;
            assert!(
                logged.ends_with(&want) && !logged.contains("(os error"),
                "{logged}"
            );
        }
        extmerge_context_free(ctx);
    }

    /// Names and paths in the last error and in the log are escaped as the CLI prints
    /// them (systemd's cescape): no control character reaches the C caller; a control
    /// character left in a message is escaped too.
    #[test]
    #[cfg_attr(miri, ignore = "opens paths")]
    fn messages_are_escaped() {
        let ctx = new_ctx();
        let mut log: Vec<(c_int, String)> = Vec::new();
        let ud: *mut c_void = (&mut log as *mut Vec<(c_int, String)>).cast();
        assert_eq!(extmerge_context_set_log_fn(ctx, Some(collect), ud), 0);
        let root = c"/nonexistent/esc\x1b[31m\nforged\x07\xc2\x9b";
        assert_eq!(extmerge_context_set_root(ctx, root.as_ptr()), -libc::ENOENT);
        let e = last_error(ctx).unwrap();
        let want = format!(
            "/nonexistent/esc\\x1b[31m\\nforged\\a\\xc2\\x9b: cannot open root: {}",
            extmerge::log::os_text(&std::io::Error::from_raw_os_error(libc::ENOENT))
        );
        assert_eq!(e, want);
        let logged = &log.last().unwrap().1;
        assert_eq!(logged, &format!("extmerge_context_set_root: {want}"));
        let r = ffi::ctx_call(ctx, "test", |_| Err(Error::new(libc::EIO, "raw\x1b[2J\tx")));
        assert_eq!(r, -libc::EIO);
        assert_eq!(last_error(ctx).as_deref(), Some("raw\\x1b[2J\\tx"));
        assert_eq!(log.last().unwrap().1, "test: raw\\x1b[2J\\tx");
        for (_, m) in &log {
            assert!(!m.chars().any(|c| c.is_control()), "{m:?}");
        }
        extmerge_context_free(ctx);
    }

    #[test]
    fn image_policy_round_trip() {
        let ctx = new_ctx();
        assert_eq!(
            extmerge_context_set_log_fn(ctx, None, std::ptr::null_mut()),
            0
        );
        let text = c"usr=verity+absent:=unused";
        assert_eq!(extmerge_context_set_image_policy(ctx, text.as_ptr()), 0);
        let got = extmerge_context_get_image_policy(ctx);
        // SAFETY: owned by ctx until the next set_image_policy or free.
        assert_eq!(unsafe { CStr::from_ptr(got) }, text);
        assert_eq!(
            extmerge_context_set_image_policy(ctx, c"usr=bogus".as_ptr()),
            -libc::EINVAL
        );
        assert!(last_error(ctx).unwrap().contains("usr=bogus"));
        // The old policy stays.
        let got = extmerge_context_get_image_policy(ctx);
        // SAFETY: as above.
        assert_eq!(unsafe { CStr::from_ptr(got) }, text);
        assert_eq!(extmerge_context_set_image_policy(ctx, std::ptr::null()), 0);
        assert!(extmerge_context_get_image_policy(ctx).is_null());
        extmerge_context_free(ctx);
    }

    #[test]
    fn static_strings() {
        // SAFETY: static NUL-terminated strings.
        let v = unsafe { CStr::from_ptr(extmerge_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
        for (c, want) in [(1, "sysext"), (2, "confext"), (3, "both")] {
            // SAFETY: as above.
            let s = unsafe { CStr::from_ptr(extmerge_class_to_string(c)) };
            assert_eq!(s.to_str().unwrap(), want);
        }
        assert!(extmerge_class_to_string(0).is_null());
    }

    #[test]
    fn cursor_walks_and_stops() {
        struct L {
            cursor: ffi::Cursor<u32>,
        }
        let l = Box::into_raw(Box::new(L {
            cursor: ffi::Cursor::new(vec![10, 20]),
        }));
        let mut seen = Vec::new();
        loop {
            let p = ffi::cursor_next(l, |l| &mut l.cursor);
            if p.is_null() {
                break;
            }
            // SAFETY: entries live as long as the list.
            seen.push(unsafe { *p });
        }
        assert_eq!(seen, [10, 20]);
        assert!(
            ffi::cursor_next(l, |l| &mut l.cursor).is_null(),
            "stays at the end"
        );
        ffi::free_box(l);
    }
}
