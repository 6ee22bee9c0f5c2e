//! The one gate every exported function goes through: panics are caught, pointers are
//! checked, errors become `-errno` plus a message kept in the context, and the context's
//! log callback is installed for the duration of the call. A panic caught for a call on
//! a context returns `EXTMERGE_ERROR_PANIC` and poisons the context ([`ctx_call`]).

use std::any::Any;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use extmerge::log::{self as xlog, Level};

use crate::extmerge_context;

/// A failed call: positive errno and a message for `extmerge_context_last_error()`.
#[derive(Debug)]
pub(crate) struct Error {
    pub errno: c_int,
    pub msg: String,
}

impl Error {
    /// An errno and a message; a non-positive errno becomes `EIO`.
    pub fn new(errno: c_int, msg: impl Into<String>) -> Error {
        Error {
            errno: if errno > 0 { errno } else { libc::EIO },
            msg: msg.into(),
        }
    }

    /// `EINVAL` with a message.
    pub fn inval(msg: impl Into<String>) -> Error {
        Error::new(libc::EINVAL, msg)
    }
}

impl From<extmerge::sys::apply::MergeError> for Error {
    /// The core's message, plus what to do about it in the C API's terms where the core
    /// names no front-end's functions (the CLI adds its verbs there).
    fn from(e: extmerge::sys::apply::MergeError) -> Error {
        use extmerge::sys::apply::MergeError;
        let msg = match &e {
            MergeError::AlreadyMerged(_) => {
                format!("{e} (use extmerge_refresh() or extmerge_unmerge())")
            }
            e => e.to_string(),
        };
        Error::new(e.errno(), msg)
    }
}

impl From<extmerge::inspect::cgroup::UnitError> for Error {
    fn from(e: extmerge::inspect::cgroup::UnitError) -> Error {
        Error::new(e.errno(), e.to_string())
    }
}

impl From<extmerge::plan::PlanError> for Error {
    fn from(e: extmerge::plan::PlanError) -> Error {
        Error::new(e.errno(), e.to_string())
    }
}

impl From<extmerge::inspect::metadata::StateError> for Error {
    fn from(e: extmerge::inspect::metadata::StateError) -> Error {
        Error::new(e.errno, e.to_string())
    }
}

/// A `CString` from text that may contain NUL bytes (they become `\0`, never truncate).
pub(crate) fn cstring(s: &str) -> CString {
    match CString::new(s) {
        Ok(c) => c,
        Err(_) => CString::new(s.replace('\0', "\\0")).unwrap_or_default(),
    }
}

/// Borrows a C string argument as UTF-8: NULL or invalid UTF-8 → `EINVAL` naming `what`.
///
/// The caller chooses the lifetime: it must not outlive the call that received `p`.
pub(crate) fn arg_str<'a>(p: *const c_char, what: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(Error::inval(format!("{what} must not be NULL")));
    }
    // SAFETY: `p` is non-NULL and, by the documented contract of every function taking a
    // string, points to a NUL-terminated string that stays valid during the call.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|_| {
        Error::inval(format!(
            "{what} is not valid UTF-8: \"{}\"",
            c.to_bytes().escape_ascii()
        ))
    })
}

/// `Some(str)` for a non-NULL argument, `None` for NULL (for settings NULL resets).
/// A C array of `n` UTF-8 strings, each checked by `valid` (the reason when not),
/// copied; `None` for `list` NULL with `n` 0 (the default), `-EINVAL` naming the element
/// (`what [i]`) otherwise.
pub(crate) fn arg_str_list(
    list: *const *const c_char,
    n: usize,
    what: &str,
    valid: impl Fn(&str) -> Result<(), &'static str>,
) -> Result<Option<Vec<String>>, Error> {
    if list.is_null() {
        if n != 0 {
            return Err(Error::inval(format!("{what} list is NULL but n is {n}")));
        }
        return Ok(None);
    }
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        // SAFETY: `list` is non-NULL and by contract points to `n` readable pointers;
        // `i < n`.
        let p = unsafe { *list.add(i) };
        let s = arg_str(p, &format!("{what} [{i}]"))?;
        valid(s).map_err(|why| Error::inval(format!("invalid {what} [{i}] \"{s}\": {why}")))?;
        v.push(s.to_string());
    }
    Ok(Some(v))
}

pub(crate) fn arg_opt_str<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>, Error> {
    if p.is_null() {
        Ok(None)
    } else {
        arg_str(p, what).map(Some)
    }
}

/// A pointer to the string, or NULL.
pub(crate) fn opt_ptr(s: Option<&CString>) -> *const c_char {
    s.map_or(std::ptr::null(), |s| s.as_ptr())
}

/// Where a context's messages go.
#[derive(Clone, Copy, Debug)]
pub(crate) enum LogTarget {
    /// `libextmerge: <message>` on stderr (the default, as libkmod's).
    Stderr,
    /// The caller's callback.
    Callback(
        unsafe extern "C" fn(*mut c_void, c_int, *const c_char),
        *mut c_void,
    ),
    /// Nowhere (`extmerge_context_set_log_fn(ctx, NULL, ...)`).
    Off,
}

/// A context's log settings, copied out for each call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LogConfig {
    pub target: LogTarget,
    /// syslog priority, 0..=7; messages with a larger (less important) one are dropped.
    pub priority: c_int,
}

/// `LOG_ERR`.
pub(crate) const LOG_ERR: c_int = 3;

impl LogConfig {
    /// The core's level for our priority: the most verbose level still delivered. The
    /// core never logs above `LOG_ERR`, so priorities 0–2 map to `Error` and the sink
    /// drops what is above the priority.
    fn level(&self) -> Level {
        match self.priority {
            p if p <= 3 => Level::Error,
            4 => Level::Warning,
            5 => Level::Notice,
            6 => Level::Info,
            _ => Level::Debug,
        }
    }

    /// Runs `f` with this configuration as the thread's log sink (restored after).
    pub fn scope<R>(&self, f: impl FnOnce() -> R) -> R {
        let cfg = *self;
        let sink: xlog::Sink = Rc::new(move |level: Level, msg: &str| {
            let prio = level as c_int;
            if prio > cfg.priority {
                return;
            }
            match cfg.target {
                LogTarget::Off => {}
                LogTarget::Stderr => {
                    let _ = writeln!(std::io::stderr(), "libextmerge: {msg}");
                }
                LogTarget::Callback(func, userdata) => {
                    let c = cstring(msg);
                    // SAFETY: `func` was given by the caller of
                    // `extmerge_context_set_log_fn`, which documents that it is called
                    // synchronously with the userdata given there and a message valid
                    // for the duration of the call.
                    unsafe { func(userdata, prio, c.as_ptr()) };
                }
            }
        });
        xlog::scoped(Some(sink), self.level(), f)
    }
}

/// Logs `f()` at `level` if that level is delivered; `f` is not run otherwise.
pub(crate) fn log_lazy(level: Level, f: impl FnOnce() -> String) {
    if xlog::enabled(level) {
        xlog::log(level, &f());
    }
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown payload".to_string()
    }
}

/// The boundary for functions without a context to record errors in: a panic returns
/// `on_panic`.
pub(crate) fn guard<T>(on_panic: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(on_panic)
}

/// Why a context is poisoned: the message of the panic that poisoned it.
#[derive(Debug)]
pub(crate) struct Poison {
    pub panic: String,
}

/// Test hook (feature `fault-injection` only): `$EXTMERGE_TEST_PANIC` naming the
/// function being called makes it panic inside the boundary, before its body runs.
#[cfg(feature = "fault-injection")]
fn fault_point(func: &str) {
    if std::env::var_os("EXTMERGE_TEST_PANIC").is_some_and(|v| v == func) {
        panic!("fault injection: {func} panics ($EXTMERGE_TEST_PANIC)");
    }
}

#[cfg(not(feature = "fault-injection"))]
fn fault_point(_func: &str) {}

/// The boundary for functions taking a context.
///
/// - NULL context → `-EINVAL`.
/// - A poisoned context (an earlier call on it panicked) → [`EXTMERGE_ERROR_PANIC`] at
///   once: `f` is not run, the log function is not set up, the last error says the
///   context is poisoned and quotes the panic's message (also logged at `LOG_ERR`).
/// - Otherwise the last error is cleared, `f` runs with the context's log callback
///   receiving the core's messages, and an `Err` becomes `-errno` with its message as
///   the last error (and logged at `LOG_ERR` as "<func>: <message>").
/// - A panic in `f` is caught here: it returns [`EXTMERGE_ERROR_PANIC`] (never an
///   errno) and poisons the context, since `f` may have left it half-changed. A
///   poisoned context can only be read through `extmerge_context_last_error()` and
///   freed with `extmerge_context_free()` (which frees it as any other).
///
/// [`EXTMERGE_ERROR_PANIC`]: crate::EXTMERGE_ERROR_PANIC
pub(crate) fn ctx_call(
    ctx: *mut extmerge_context,
    func: &str,
    f: impl FnOnce(&mut extmerge_context) -> Result<c_int, Error>,
) -> c_int {
    // SAFETY: by the documented contract `ctx` is NULL or a context from
    // `extmerge_context_new` not yet freed and not in use by another thread.
    let Some(ctx) = (unsafe { ctx.as_mut() }) else {
        return -libc::EINVAL;
    };
    ctx.last_error = None;
    let log = ctx.log;
    let (code, msg) = if let Some(p) = &ctx.poisoned {
        (
            crate::EXTMERGE_ERROR_PANIC,
            format!(
                "internal error (panic): the context is poisoned by an earlier panic \
                 ({}); free it with extmerge_context_free()",
                p.panic
            ),
        )
    } else {
        let res = catch_unwind(AssertUnwindSafe(|| {
            log.scope(|| {
                fault_point(func);
                f(&mut *ctx)
            })
        }));
        match res {
            Ok(Ok(v)) => return v,
            Ok(Err(e)) => (-e.errno, e.msg),
            Err(p) => {
                let poison = Poison {
                    panic: panic_message(p.as_ref()),
                };
                let msg = format!(
                    "internal error (panic): {}; the context is poisoned: later calls on \
                     it fail with EXTMERGE_ERROR_PANIC, free it with extmerge_context_free()",
                    poison.panic
                );
                ctx.poisoned = Some(poison);
                (crate::EXTMERGE_ERROR_PANIC, msg)
            }
        }
    };
    // Logging runs the caller's callback: keep a panic in our part of it inside too.
    // Below LOG_ERR nothing is delivered, so nothing is formatted.
    if log.priority >= LOG_ERR {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            log.scope(|| log_lazy(Level::Error, || format!("{func}: {msg}")))
        }));
    }
    // The same text as the CLI prints: values escaped where the message was composed,
    // control characters left escaped here (as every log sink does).
    ctx.last_error = Some(cstring(&extmerge::format::escape::controls(&msg)));
    code
}

/// [`ctx_call`] for a `const` context: no last error is recorded, a NULL context gives
/// `on_null`, a poisoned one `on_poisoned` (what `f` would read may have been left
/// half-changed by the panic), a panic in `f` `on_null` (it cannot poison: `f` changes
/// nothing).
pub(crate) fn ctx_get<T>(
    ctx: *const extmerge_context,
    on_null: T,
    on_poisoned: T,
    f: impl FnOnce(&extmerge_context) -> T,
) -> T {
    // SAFETY: as in `ctx_call`; only shared access is needed.
    let Some(ctx) = (unsafe { ctx.as_ref() }) else {
        return on_null;
    };
    if ctx.poisoned.is_some() {
        return on_poisoned;
    }
    catch_unwind(AssertUnwindSafe(|| f(ctx))).unwrap_or(on_null)
}

/// The last error of a context, also of a poisoned one (it says why it is poisoned);
/// NULL for a NULL context or after a successful call.
pub(crate) fn ctx_last_error(ctx: *const extmerge_context) -> *const c_char {
    // SAFETY: as in `ctx_get`.
    let Some(ctx) = (unsafe { ctx.as_ref() }) else {
        return std::ptr::null();
    };
    opt_ptr(ctx.last_error.as_ref())
}

/// Reads an object behind a `const` pointer from the library (`extmerge_entry` ...):
/// NULL → `on_null`.
pub(crate) fn obj_get<O, T: Copy>(obj: *const O, on_null: T, f: impl FnOnce(&O) -> T) -> T {
    // SAFETY: by the documented contract `obj` is NULL or a pointer the library handed
    // out whose owner (list, context) has not been freed.
    let Some(o) = (unsafe { obj.as_ref() }) else {
        return on_null;
    };
    catch_unwind(AssertUnwindSafe(|| f(o))).unwrap_or(on_null)
}

/// Stores `value` in `*ret` (checked non-NULL before any work by the caller).
pub(crate) fn put<T>(ret: *mut *mut T, value: Box<T>) {
    // SAFETY: the caller checked `ret` is non-NULL; the contract says it points to a
    // writable `T *`.
    unsafe { *ret = Box::into_raw(value) };
}

/// Frees a `Box` handed out with [`put`]; NULL is fine.
pub(crate) fn free_box<T>(p: *mut T) {
    guard((), || {
        if !p.is_null() {
            // SAFETY: `p` came from `Box::into_raw` in `put` and, by the contract of the
            // `_free` functions, is freed only once.
            drop(unsafe { Box::from_raw(p) });
        }
    })
}

/// The entries of a list object and the position of its `*_next()` iterator.
pub(crate) struct Cursor<T> {
    entries: Vec<T>,
    next: usize,
}

impl<T> Cursor<T> {
    pub(crate) fn new(entries: Vec<T>) -> Cursor<T> {
        Cursor { entries, next: 0 }
    }
}

/// `*_next()` of every list type: the next entry of the list's cursor, or NULL at the
/// end and for a NULL list. The entry stays owned by the list.
pub(crate) fn cursor_next<L, T>(
    list: *mut L,
    cursor: impl FnOnce(&mut L) -> &mut Cursor<T>,
) -> *const T {
    guard(std::ptr::null(), || {
        // SAFETY: by the `*_next()` contract `list` is NULL or a live list from its
        // `*_new()` function, used by one thread at a time.
        let Some(l) = (unsafe { list.as_mut() }) else {
            return std::ptr::null();
        };
        let c = cursor(l);
        match c.entries.get(c.next) {
            Some(e) => {
                c.next += 1;
                e as *const T
            }
            None => std::ptr::null(),
        }
    })
}
