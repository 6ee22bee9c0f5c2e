//! `EnvFile::parse` on arbitrary bytes; on success the lookups, `HostIdentity::from_env`
//! and `release::validate` (both classes, both scopes) run on the result, so the matcher
//! sees every shape of extension-release the parser can produce.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use extmerge::format::class::{Class, Scope};
use extmerge::format::os_release::EnvFile;
use extmerge::inspect::release::{validate, HostIdentity, Verdict};
use libfuzzer_sys::fuzz_target;

const KEYS: [&str; 10] = [
    "ID",
    "ID_LIKE",
    "VERSION_ID",
    "SYSEXT_LEVEL",
    "CONFEXT_LEVEL",
    "ARCHITECTURE",
    "SYSEXT_SCOPE",
    "CONFEXT_SCOPE",
    "EXTENSION_RELOAD_MANAGER",
    "",
];

fn host(text: &[u8], scope: Scope) -> HostIdentity {
    let env = EnvFile::parse(text).expect("fixed host os-release parses");
    HostIdentity::from_env(
        &env,
        PathBuf::from("/etc/os-release"),
        Some("x86-64".into()),
        scope,
    )
    .expect("fixed host os-release has an ID")
}

fuzz_target!(|data: &[u8]| {
    let Ok(env) = EnvFile::parse(data) else {
        return;
    };
    for k in KEYS {
        let raw = env.get_raw(k);
        let v = env.get(k);
        // `get` is `get_raw` with empty values treated as absent.
        assert_eq!(v, raw.filter(|s| !s.is_empty()), "key {k:?}");
    }
    // Keys are unique in the pair list (a repeated key keeps its first position).
    let pairs = env.pairs();
    for (i, (k, _)) in pairs.iter().enumerate() {
        assert!(
            !pairs[..i].iter().any(|(k2, _)| k2 == k),
            "duplicate key {k:?} in pairs"
        );
        assert!(!k.contains('\0'));
    }
    assert_eq!(env.is_empty(), pairs.is_empty());

    static HOSTS: OnceLock<[HostIdentity; 3]> = OnceLock::new();
    let hosts = HOSTS.get_or_init(|| {
        [
            host(
                b"ID=debian\nID_LIKE=\"ubuntu fedora\"\nVERSION_ID=12\nSYSEXT_LEVEL=1.0\n",
                Scope::System,
            ),
            host(b"ID=arch\n", Scope::Initrd),
            host(b"ID=fedora\nCONFEXT_LEVEL=2\n", Scope::System),
        ]
    });
    for h in hosts {
        for class in [Class::Sysext, Class::Confext] {
            let v = validate("fuzz", class, h, &env);
            if let Verdict::Mismatch(reason) = &v {
                assert!(!reason.is_empty());
            }
        }
    }
    // The fuzzed file as the host's os-release, validated against itself and a fixed
    // extension-release.
    for scope in [Scope::System, Scope::Initrd] {
        if let Ok(h) = HostIdentity::from_env(&env, PathBuf::from("/fuzz"), None, scope) {
            assert!(!h.id.is_empty());
            let fixed = EnvFile::parse(b"ID=_any\nSYSEXT_SCOPE=initrd system\n").unwrap();
            for class in [Class::Sysext, Class::Confext] {
                let _ = validate("fuzz", class, &h, &env);
                let _ = validate("fuzz", class, &h, &fixed);
            }
        }
    }
});
