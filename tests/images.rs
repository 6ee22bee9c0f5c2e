//! Root-only integration tests of disk-image extensions
//! ([`extmerge::sys::activate::ImageOpener`], inspection in
//! [`extmerge::inspect::image`]): images are built at run time
//! (`images/build.rs`), put into a fixture root, merged with the library in a private
//! mount namespace per test, unmerged, and then nothing (loop device, dm device, mount,
//! staging directory) may be left.
//!
//! - `cargo test --test images` as root: loop-device cases (bare erofs/squashfs/ext4,
//!   GPT disk images, confext, hostile images, image policy). Without root every test
//!   prints `SKIP: needs root`; the dm-verity cases print SKIP where the kernel has no
//!   device-mapper (this project's build host).
//! - `tests/vm/run-image-tests.sh`: everything, dm-verity included, in a VM on Debian's
//!   Linux 6.1 (fixtures built on the host by the ignored test `build_fixtures`).

#[path = "images/build.rs"]
mod build;

#[path = "support/ns.rs"]
mod ns;

#[path = "images/common.rs"]
mod common;

#[path = "images/faults.rs"]
mod faults;

#[path = "images/host.rs"]
mod host;

#[path = "images/hostile.rs"]
mod hostile;

#[path = "images/verity.rs"]
mod verity;

#[path = "images/downgrade.rs"]
mod downgrade;

/// Builds every fixture into `$EXTMERGE_FIXTURES_OUT/<name>/` (for the VM, which has
/// none of the tools). Run by `tests/vm/run-image-tests.sh`.
#[test]
#[ignore = "builds fixtures for the VM run; needs EXTMERGE_FIXTURES_OUT"]
fn build_fixtures() {
    let out = std::env::var_os("EXTMERGE_FIXTURES_OUT").expect("EXTMERGE_FIXTURES_OUT");
    let out = std::path::Path::new(&out);
    for name in build::ALL {
        let dir = out.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        build::build(name, &dir).unwrap_or_else(|e| panic!("fixture {name}: {e}"));
    }
}
