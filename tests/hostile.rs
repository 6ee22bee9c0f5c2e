//! Root-only hostile-input tests: what a root "from anywhere" can put in front of
//! extmerge in early boot — FIFOs, huge and sparse files, symlinks to devices and
//! /proc, device nodes and setuid binaries, too many extensions, odd names and
//! hierarchies, a full disk under a mutable overlay, a race that swaps an extension
//! for a symlink, broken disk images, hostile release-file contents, and control
//! characters (terminal escapes) in names, values and paths.
//!
//! Each case asserts the exact outcome (exit code, the message naming the file and the
//! reason), that a failed or undone run leaves the mount table and the loop devices as
//! they were and nothing in `/run/extmerge` but its lock file. Every run of the CLI has
//! a timeout: a run that blocks fails the test instead of hanging it.
//!
//! Each test runs in a private mount namespace of its own (`merge/common.rs`). Without
//! root every test prints `SKIP: needs root` and passes.
//!
//! Run as root: `cargo test --test hostile`.

#[path = "support/ns.rs"]
mod ns;

#[path = "merge/common.rs"]
mod common;

#[path = "hostile/util.rs"]
mod util;

#[path = "hostile/release.rs"]
mod release;

#[path = "hostile/nodes.rs"]
mod nodes;

#[path = "hostile/scale.rs"]
mod scale;

#[path = "hostile/names.rs"]
mod names;

#[path = "hostile/full.rs"]
mod full;

#[path = "hostile/toctou.rs"]
mod toctou;

#[path = "hostile/images.rs"]
mod images;

#[path = "hostile/escapes.rs"]
mod escapes;

#[path = "hostile/runtime.rs"]
mod runtime;
