//! `fs::probe`, `probe_with_size` and `inspect` on arbitrary superblock bytes; the three
//! must agree with each other.
#![no_main]

use extmerge::format::fs::{inspect, probe, probe_with_size};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let probed = probe(data);
    let info = inspect(data, None);
    assert_eq!(
        probed.as_ref().ok(),
        info.as_ref().ok().map(|i| &i.fstype),
        "probe and inspect disagree"
    );
    let len = data.len() as u64;
    if let Ok(i) = &info {
        assert!(i.block_size > 0);
        // With a size, the only new refusal is a file system larger than that size.
        let sized = probe_with_size(data, len);
        assert_eq!(sized.is_ok(), i.size_bytes <= len, "{i:?} in {len} bytes");
        assert_eq!(inspect(data, Some(i.size_bytes)).ok(), Some(*i));
        assert_eq!(inspect(data, Some(u64::MAX)).ok(), Some(*i));
    } else {
        assert!(probe_with_size(data, len).is_err());
    }
});
