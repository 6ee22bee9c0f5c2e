//! Link arguments for `libextmerge.so`: the soname and the version script that exports
//! only `extmerge_*` (the static library is not affected).

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=extmerge.sym");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libextmerge.so.0");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={dir}/extmerge.sym");
}
