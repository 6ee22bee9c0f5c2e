//! extmerge: systemd-style system and configuration extensions, merged without a daemon.
//!
//! One entry point, [`context::Context`], runs each verb in three steps over layers that
//! the folders show: [`inspect`] reads the root (discovery, verdicts, each hierarchy's
//! state) and changes nothing; [`plan`] is a pure function from what was found to a
//! [`plan::MergePlan`]; [`sys`] — the kernel layer, the only place with `unsafe` and
//! the only one that changes the system — applies it in a transaction that is undone
//! on error. [`format`] holds the pure parsers all of them use.
//!
//! ```text
//! front-ends (CLI, extmerge-initrd, C ABI)
//!    └─ context ─┬─ inspect ── format
//!                ├─ plan ───── inspect (data types), format
//!                └─ sys ────── inspect, plan, format
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod context;
pub mod fault;
pub mod format;
pub mod inspect;
pub mod log;
pub mod options;
pub mod plan;
pub mod record;
pub mod report;
pub mod sys;
pub mod varlink;

#[cfg(test)]
mod testutil;
