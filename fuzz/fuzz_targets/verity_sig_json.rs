//! `VeritySig::parse_json` on arbitrary signature-partition contents.
#![no_main]

use extmerge::format::verity::VeritySig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sig) = VeritySig::parse_json(data) {
        assert!((16..=64).contains(&sig.root_hash.as_bytes().len()));
        assert!(!sig.signature.is_empty());
        if let Some(f) = &sig.certificate_fingerprint {
            assert!(!f.is_empty());
        }
        // The JSON ends at the first NUL; padding with more NULs changes nothing.
        let mut padded = data.to_vec();
        padded.extend_from_slice(&[0; 64]);
        assert_eq!(VeritySig::parse_json(&padded).ok(), Some(sig));
    }
});
