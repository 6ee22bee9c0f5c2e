//! Link arguments for `libextmerge.so` (the static library is not affected).
//!
//! Only the soname is set here. The version script `extmerge.sym` is not passed to
//! cargo's cdylib link: rustc already gives a cdylib its own (anonymous) version script
//! listing the `#[no_mangle]` symbols, so that
//! - GNU ld refuses a second, named one ("anonymous version tag cannot be combined
//!   with other version tags": Rust < 1.90, or `-Clinker-features=-lld`, or targets
//!   where rustc does not link with lld), and
//! - lld (rustc's default on x86_64 Linux since 1.90) takes rustc's list first, so our
//!   symbols would stay unversioned anyway.
//!
//! Cargo's `libextmerge.so` therefore exports exactly the `extmerge_*` functions,
//! unversioned; `install.sh` links the installed `libextmerge.so.0` from
//! `libextmerge.a` with `-Wl,--version-script=extmerge.sym`, which gives every symbol
//! the version `EXTMERGE_0.1` (checked by `tests/c/run.sh`).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libextmerge.so.0");
}
