//! The metadata file formats: `parse_dev` (the `dev` file), `cescape`/`cunescape` (the
//! `work_dir` file) and the JSON writer's string escaping.
#![no_main]

use extmerge::format::json::Json;
use extmerge::inspect::metadata::{cescape, cunescape, format_dev, parse_dev};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(dev) = parse_dev(s) {
        assert_eq!(parse_dev(&format_dev(dev)), Some(dev), "{s:?}");
    }
    let esc = cescape(s);
    assert!(esc.bytes().all(|b| (0x20..0x7f).contains(&b)), "{esc:?}");
    assert_eq!(cunescape(&esc).as_deref(), Some(s));
    if let Some(u) = cunescape(s) {
        assert_eq!(cunescape(&cescape(&u)).as_deref(), Some(u.as_str()));
    }
    let j = Json::Array(vec![Json::str(s), Json::obj([("k", Json::str(s))])]).render(false);
    assert!(!j.bytes().any(|b| b < 0x20), "control byte in JSON {j:?}");
    assert!(j.starts_with("[\"") && j.ends_with("\"}]"));
});
