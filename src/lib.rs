//! extmerge: systemd-style system and configuration extensions, merged without a daemon.
//!
//! The data flows one way: root → [`discover`] → [`release`] (+ [`vpick`]) → [`plan`] →
//! [`merge`]. Everything up to `plan` reads files and returns values; only the modules
//! under [`mount`] and [`merge`] change the system, and they undo what they did on error.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod arch;
pub mod class;
pub mod cmdline;
pub mod discover;
pub mod dm;
pub mod escape;
pub mod fault;
pub mod fsutil;
pub mod hierarchy;
pub mod image;
pub mod json;
pub mod keyring;
pub mod log;
pub mod loopdev;
pub mod merge;
pub mod metadata;
pub mod mount;
pub mod name;
pub mod options;
pub mod origin;
pub mod os_release;
pub mod plan;
pub mod release;
pub mod report;
pub mod staging;
mod strerror;
pub mod vpick;

#[cfg(test)]
mod testutil;
