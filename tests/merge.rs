//! Root-only integration tests of merging: every test builds its own fixture root in a
//! temporary directory, runs in a private mount namespace of its own (see
//! `merge/common.rs`) and drives the `extmerge` binary with `--root=` (or the library
//! where the plan value is needed). Without root, each test prints `SKIP: needs root`
//! and passes.
//!
//! Run as root: `cargo test --test merge`. In a Linux 6.1 VM: `tests/vm/run-merge-tests.sh`.

#[path = "support/ns.rs"]
mod ns;

#[path = "merge/common.rs"]
mod common;

#[path = "merge/basic.rs"]
mod basic;

#[path = "merge/refresh.rs"]
mod refresh;

#[path = "merge/origin.rs"]
mod origin;

#[path = "merge/mutable.rs"]
mod mutable;

#[path = "merge/faults.rs"]
mod faults;

#[path = "merge/hostile.rs"]
mod hostile;

#[path = "merge/library.rs"]
mod library;

#[path = "merge/concurrency.rs"]
mod concurrency;

#[path = "merge/mutable_matrix.rs"]
mod mutable_matrix;

#[path = "merge/target.rs"]
mod target;

#[path = "merge/vpick.rs"]
mod vpick;

#[path = "merge/config.rs"]
mod config;
