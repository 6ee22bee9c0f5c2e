//! Minimal logging with a per-thread sink and level, so that the CLI (stderr), the
//! initrd program (`/dev/kmsg`) and each C ABI context (its own callback) can route
//! messages without global state. Callers of [`enabled`] skip formatting below the level.

use std::cell::RefCell;
use std::rc::Rc;

/// syslog priorities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// LOG_ERR
    Error = 3,
    /// LOG_WARNING
    Warning = 4,
    /// LOG_NOTICE
    Notice = 5,
    /// LOG_INFO
    Info = 6,
    /// LOG_DEBUG
    Debug = 7,
}

/// A message sink.
pub type Sink = Rc<dyn Fn(Level, &str)>;

struct State {
    max: Level,
    sink: Option<Sink>,
}

thread_local! {
    static STATE: RefCell<State> = const { RefCell::new(State { max: Level::Info, sink: None }) };
}

/// Sets this thread's most verbose level.
pub fn set_level(l: Level) {
    STATE.with(|s| s.borrow_mut().max = l);
}

/// Sets this thread's sink (`None`: stderr).
pub fn set_sink(f: Option<Sink>) {
    STATE.with(|s| s.borrow_mut().sink = f);
}

/// Runs `f` with `sink` and `level` for this thread, restoring the previous ones after.
pub fn scoped<R>(sink: Option<Sink>, level: Level, f: impl FnOnce() -> R) -> R {
    let prev = STATE.with(|s| {
        let mut s = s.borrow_mut();
        let prev = (s.max, s.sink.take());
        s.max = level;
        s.sink = sink;
        prev
    });
    struct Restore(Option<(Level, Option<Sink>)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some((max, sink)) = self.0.take() {
                STATE.with(|s| {
                    let mut s = s.borrow_mut();
                    s.max = max;
                    s.sink = sink;
                });
            }
        }
    }
    let _restore = Restore(Some(prev));
    f()
}

/// This thread's most verbose level.
pub fn level() -> Level {
    STATE.with(|s| s.borrow().max)
}

/// Would a message at `l` be emitted on this thread?
pub fn enabled(l: Level) -> bool {
    STATE.with(|s| l <= s.borrow().max)
}

/// Emits `msg` at `l`. Every sink gets it with its control characters but newlines
/// escaped ([`crate::format::escape::controls`]): the values in it were escaped where the
/// message was composed ([`crate::format::escape::esc`]); this guards the terminal, the kernel
/// log and a C caller's callback from whatever was not.
pub fn log(l: Level, msg: &str) {
    let sink = STATE.with(|s| {
        let s = s.borrow();
        (l <= s.max).then(|| s.sink.clone())
    });
    match sink {
        None => {}
        Some(Some(f)) => f(l, &crate::format::escape::controls(msg)),
        Some(None) => eprintln!("{}", crate::format::escape::controls(msg)),
    }
}

/// Debug message.
pub fn debug(msg: &str) {
    log(Level::Debug, msg)
}
/// Informational message.
pub fn info(msg: &str) {
    log(Level::Info, msg)
}
/// Warning.
pub fn warn(msg: &str) {
    log(Level::Warning, msg)
}

pub use crate::format::strerror::{errno_text, os_text};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::strerror::strip_os_error;
    use std::cell::RefCell;
    use std::io;

    #[test]
    fn os_text_has_no_os_error_suffix() {
        let enoent = io::Error::from_raw_os_error(libc::ENOENT);
        let words = os_text(&enoent);
        assert!(!words.is_empty() && !words.contains("(os error"), "{words}");
        assert_eq!(enoent.to_string(), format!("{words} (os error 2)"));
        assert_eq!(errno_text(rustix::io::Errno::NOENT), words);
        // A custom error keeps its text; one wrapping an OS error loses the suffix.
        let custom = io::Error::new(io::ErrorKind::NotFound, "layer not opened");
        assert_eq!(os_text(&custom), "layer not opened");
        let wrapped = io::Error::other(enoent);
        assert_eq!(os_text(&wrapped), words);
        assert_eq!(
            strip_os_error("a (os error x) b (os error 12)"),
            "a (os error x) b"
        );
    }

    #[test]
    fn os_text_has_glibc_words() {
        let eio = io::Error::from_raw_os_error(libc::EIO);
        assert_eq!(os_text(&eio), "Input/output error");
        assert_eq!(os_text(&io::Error::other(eio)), "Input/output error");
        assert_eq!(
            os_text(&io::Error::from_raw_os_error(libc::EBUSY)),
            "Device or resource busy"
        );
        // Words of this libc that are not at the end are kept.
        assert_eq!(strip_os_error("x (os error 5)"), "x");
    }

    #[test]
    fn scoped_sink_and_level() {
        let got = Rc::new(RefCell::new(Vec::new()));
        let g = got.clone();
        let sink: Sink = Rc::new(move |l, m| g.borrow_mut().push((l, m.to_string())));
        scoped(Some(sink), Level::Info, || {
            info("a");
            debug("hidden");
            warn("b");
            assert!(!enabled(Level::Debug));
        });
        assert_eq!(
            *got.borrow(),
            vec![
                (Level::Info, "a".to_string()),
                (Level::Warning, "b".to_string())
            ]
        );
        // Restored: the default level again, no sink.
        assert!(enabled(Level::Info) && !enabled(Level::Debug));
    }
}
