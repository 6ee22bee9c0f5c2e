//! `include/extmerge.h` must be exactly what the pinned cbindgen generates from this
//! crate. `EXTMERGE_UPDATE_HEADER=1 cargo test -p extmerge-capi --test header` rewrites it.

use std::path::Path;

#[test]
fn header_matches_cbindgen() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen failed");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let path = dir.join("../include/extmerge.h");
    if std::env::var_os("EXTMERGE_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("write header");
        return;
    }
    let committed = std::fs::read(&path).expect("include/extmerge.h");
    if committed != generated {
        let tmp = std::env::temp_dir().join("extmerge.h.generated");
        let _ = std::fs::write(&tmp, &generated);
        panic!(
            "include/extmerge.h is out of date (generated copy: {}); run capi/gen-header.sh",
            tmp.display()
        );
    }
}
