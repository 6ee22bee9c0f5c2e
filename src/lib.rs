//! extmerge: systemd-style system and configuration extensions, merged without a daemon.
//!
//! The data flows one way: root → [`discover`] → [`release`] (+ [`vpick`]) → [`plan`] →
//! [`merge`]. Everything up to `plan` reads files and returns values; only the modules
//! under [`mount`] and [`merge`] change the system, and they undo what they did on error.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod fault;
pub mod format;
pub mod inspect;
pub mod log;
pub mod options;
pub mod plan;
pub mod report;
pub mod sys;

#[cfg(test)]
mod testutil;
