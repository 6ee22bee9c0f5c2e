//! Hierarchy lists as `$SYSTEMD_SYSEXT_HIERARCHIES` / `$SYSTEMD_CONFEXT_HIERARCHIES`
//! and `--hierarchy`/the C ABI give them (`Options::hierarchies_for`, `check_overlap`,
//! `hierarchy_is_valid`, `hierarchy_component`), plus the other option strings a
//! caller passes (`MutableMode::parse`, `parse_boolean`). An accepted list must name
//! distinct, valid, non-nested hierarchies with distinct metadata names.
#![no_main]

use extmerge::format::class::Class;
use extmerge::options::{
    check_overlap, hierarchy_component, hierarchy_is_valid, parse_boolean, Environment, MutableMode,
    Options,
};
use libfuzzer_sys::fuzz_target;

fn check_accepted(list: &[String]) {
    for (i, a) in list.iter().enumerate() {
        assert!(hierarchy_is_valid(a), "{a:?}");
        assert!(a.starts_with('/') && a != "/" && !a.ends_with('/'));
        assert!(!a.contains("//") && !a.contains("/./") && !a.contains("/../"));
        for b in &list[i + 1..] {
            assert_ne!(a, b);
            assert!(!b.starts_with(&format!("{a}/")), "{b:?} inside {a:?}");
            assert!(!a.starts_with(&format!("{b}/")), "{a:?} inside {b:?}");
            assert_ne!(
                hierarchy_component(a),
                hierarchy_component(b),
                "{a:?} {b:?}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    // Given as a list (CLI, C ABI): one entry per line.
    let given: Vec<String> = s.split('\n').map(String::from).collect();
    let opts = Options {
        hierarchies: Some(given.clone()),
        ..Options::default()
    };
    match opts.hierarchies_for(Class::Sysext) {
        Ok(list) => {
            assert_eq!(list, given);
            check_accepted(&list);
        }
        Err(e) => assert!(!e.is_empty()),
    }
    let _ = check_overlap(&given, "fuzz");

    // From the environment (as a front-end read it): colon-separated, empty entries
    // dropped.
    if !s.contains('\0') {
        let env = Options {
            env: Environment {
                confext_hierarchies: Some(s.to_string()),
                ..Environment::default()
            },
            ..Options::default()
        };
        assert_eq!(
            env.hierarchies_source(Class::Confext),
            "SYSTEMD_CONFEXT_HIERARCHIES"
        );
        if let Ok(list) = env.hierarchies_for(Class::Confext) {
            let want: Vec<&str> = s.split(':').filter(|x| !x.is_empty()).collect();
            assert_eq!(list, want);
            check_accepted(&list);
        }
    }

    for h in s.split([':', '\n']) {
        let valid = hierarchy_is_valid(h);
        if valid {
            let c = hierarchy_component(h);
            assert!(!c.is_empty() && !c.contains('/'), "{h:?} -> {c:?}");
        }
    }

    // Mutable modes and booleans: what parses prints back to the same mode.
    let b = parse_boolean(s);
    assert_eq!(b, parse_boolean(&s.to_ascii_uppercase()));
    if let Some(m) = MutableMode::parse(s) {
        assert_eq!(MutableMode::parse(m.as_str()), Some(m));
        if let Some(b) = b {
            assert_eq!(m, if b { MutableMode::Yes } else { MutableMode::No });
        }
    } else {
        assert!(b.is_none());
    }
});
