//! Minimal logging: a level and a sink that the CLI, the initrd program (to /dev/kmsg)
//! and the C ABI (a callback) can each set. Messages below the level are not formatted
//! by callers that check [`enabled`] first.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::RwLock;

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

static MAX: AtomicU8 = AtomicU8::new(Level::Info as u8);

type Sink = Box<dyn Fn(Level, &str) + Send + Sync>;
static SINK: RwLock<Option<Sink>> = RwLock::new(None);

/// Sets the most verbose level that is emitted.
pub fn set_level(l: Level) {
    MAX.store(l as u8, Ordering::Relaxed);
}

/// Replaces the sink (default: stderr).
pub fn set_sink(f: Option<Sink>) {
    if let Ok(mut s) = SINK.write() {
        *s = f;
    }
}

/// Would a message at `l` be emitted?
pub fn enabled(l: Level) -> bool {
    l as u8 <= MAX.load(Ordering::Relaxed)
}

/// Emits `msg` at `l`.
pub fn log(l: Level, msg: &str) {
    if !enabled(l) {
        return;
    }
    match SINK.read().ok().as_deref() {
        Some(Some(f)) => f(l, msg),
        _ => eprintln!("{msg}"),
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
