//! probe
#[no_mangle]
pub extern "C" fn extmerge_x() -> i32 { extmerge::options::Options::default().force as i32 }
