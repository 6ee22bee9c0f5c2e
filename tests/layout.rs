//! The layout is the design: these checks keep it so.
//! - `unsafe` appears only in the kernel layer, `src/sys/` (the crate denies it elsewhere;
//!   this also catches an `allow` slipped in outside).
//! - The pure parsers (`src/format/`), inspection (`src/inspect/`) and the planner
//!   (`src/plan.rs`) never name the kernel layer: they cannot change the system.
//! - The front-ends reach the library's verbs through the entry point
//!   (`src/context.rs`), not the kernel layer's internals.

use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Lines of `text` with `//` comments removed (doc comments may name anything).
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split("//").next().unwrap_or("")))
}

#[test]
fn unsafe_code_lives_only_in_the_kernel_layer() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let sys = src().join("sys");
    let mut bad = Vec::new();
    for f in &files {
        if f.starts_with(&sys) {
            continue;
        }
        let text = fs::read_to_string(f).unwrap();
        for (n, l) in code_lines(&text) {
            if l.contains("unsafe") && !l.contains("deny(unsafe_code)") {
                bad.push(format!("{}:{n}: {}", f.display(), l.trim()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "unsafe outside src/sys/:\n{}",
        bad.join("\n")
    );
    let lib = fs::read_to_string(src().join("lib.rs")).unwrap();
    assert!(
        lib.contains("#![deny(unsafe_code)]"),
        "lib.rs must deny unsafe code"
    );
}

#[test]
fn pure_and_reading_layers_never_name_the_kernel_layer() {
    let mut files = Vec::new();
    rust_files(&src().join("format"), &mut files);
    rust_files(&src().join("inspect"), &mut files);
    files.push(src().join("plan.rs"));
    let mut bad = Vec::new();
    for f in &files {
        let text = fs::read_to_string(f).unwrap();
        for (n, l) in code_lines(&text) {
            if l.contains("crate::sys") || l.contains("super::sys") {
                bad.push(format!("{}:{n}: {}", f.display(), l.trim()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "the kernel layer named from a pure/reading module:\n{}",
        bad.join("\n")
    );
}

#[test]
fn front_ends_use_the_entry_point_for_the_verbs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fronts = [
        root.join("src/bin/extmerge.rs"),
        root.join("src/bin/extmerge-initrd.rs"),
        root.join("capi/src/lib.rs"),
        root.join("capi/src/list.rs"),
        root.join("capi/src/status.rs"),
    ];
    let mut bad = Vec::new();
    for f in &fronts {
        let text = fs::read_to_string(f).unwrap();
        // The C ABI's list and status reach it through the context's `core()`.
        assert!(
            text.contains("Context") || text.contains(".core("),
            "{} does not use the entry point",
            f.display()
        );
        for (n, l) in code_lines(&text) {
            for internal in [
                "sys::apply",
                "sys::activate",
                "plan::plan(",
                "inspect::facts::inspect",
            ] {
                if l.contains(internal) {
                    bad.push(format!("{}:{n}: {}", f.display(), l.trim()));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "front-ends reaching past the entry point:\n{}",
        bad.join("\n")
    );
}
