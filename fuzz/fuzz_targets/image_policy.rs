//! `ImagePolicy::parse` / `parse_graceful` on arbitrary strings; a policy that parses is
//! printed (canonical and long form) and parsed again, as the unit tests check by hand.
#![no_main]

use extmerge::format::policy::{ImagePolicy, PartitionDesignator, Protection};
use libfuzzer_sys::fuzz_target;

fn round_trip(p: &ImagePolicy, input: &str) {
    // Long form: the exact same policy.
    let long = p.to_long_string();
    let back = ImagePolicy::parse(&long)
        .unwrap_or_else(|e| panic!("{input:?}: long form {long:?} does not parse: {e}"));
    assert_eq!(&back, p, "{input:?}: long form {long:?}");
    // Canonical form: an equivalent policy, and a fixed point. Except where systemd's own
    // rule (tests/prop.rs `policy_short_form_is_systemds_long_form_round_trips`) applies:
    // dropping rules equal to the normalized default is not equivalence-preserving when a
    // verity/signature partition derives its flags from root/usr. Such policies are
    // skipped here so the fuzzer keeps looking for other failures.
    let dropped = ImagePolicy {
        default: p.default,
        per: p
            .per
            .iter()
            .copied()
            .filter(|&(d, f)| f.normalized_for(d) != p.default.normalized_for(d))
            .collect(),
    };
    let canon = p.to_string();
    if !dropped.equivalent(p) {
        let _ = ImagePolicy::parse(&canon).expect("canonical form parses");
        return;
    }
    let back = ImagePolicy::parse(&canon)
        .unwrap_or_else(|e| panic!("{input:?}: canonical {canon:?} does not parse: {e}"));
    assert!(
        back.equivalent(p),
        "{input:?}: canonical {canon:?} not equivalent"
    );
    assert_eq!(
        back.to_string(),
        canon,
        "{input:?}: canonical form not a fixed point"
    );
    // The decisions a merge asks for must not panic.
    for d in PartitionDesignator::ALL {
        let _ = p.flags_for(d);
        let _ = p.may_use(d);
        for prot in [
            Protection::Signed,
            Protection::Verity,
            Protection::Unprotected,
            Protection::Unused,
            Protection::Absent,
        ] {
            let _ = p.resolve(d, prot);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = ImagePolicy::parse(s) {
        round_trip(&p, s);
    }
    if let Ok(p) = ImagePolicy::parse_graceful(s) {
        round_trip(&p, s);
    }
});
