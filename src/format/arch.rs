//! systemd's architecture names (`src/basic/architecture.c`), used by
//! `ARCHITECTURE=` matching and by `.v/` picking.

/// Every architecture name systemd knows. An `ARCHITECTURE=` value or a `_ARCH`
/// part of a versioned file name is compared against these.
pub const KNOWN: &[&str] = &[
    "x86",
    "x86-64",
    "ppc",
    "ppc-le",
    "ppc64",
    "ppc64-le",
    "ia64",
    "parisc",
    "parisc64",
    "s390",
    "s390x",
    "sparc",
    "sparc64",
    "mips",
    "mips-le",
    "mips64",
    "mips64-le",
    "alpha",
    "arm",
    "arm-be",
    "arm64",
    "arm64-be",
    "sh",
    "sh64",
    "m68k",
    "tilegx",
    "cris",
    "nios2",
    "riscv32",
    "riscv64",
    "arc",
    "arc-be",
    "loongarch64",
    "x32",
];

/// Is `name` one of systemd's architecture names?
pub fn is_known(name: &str) -> bool {
    KNOWN.contains(&name)
}

/// Maps `uname -m` (the kernel's machine string) to systemd's name.
pub fn from_uname_machine(machine: &str) -> Option<&'static str> {
    Some(match machine {
        "x86_64" => "x86-64",
        "i386" | "i486" | "i586" | "i686" => "x86",
        "x32" => "x32",
        "aarch64" => "arm64",
        "aarch64_be" => "arm64-be",
        "ppc64le" => "ppc64-le",
        "ppc64" => "ppc64",
        "ppc" => "ppc",
        "ppcle" => "ppc-le",
        "s390x" => "s390x",
        "s390" => "s390",
        "riscv64" => "riscv64",
        "riscv32" => "riscv32",
        "loongarch64" => "loongarch64",
        "mips64" => "mips64",
        "mips" => "mips",
        "ia64" => "ia64",
        "parisc64" => "parisc64",
        "parisc" => "parisc",
        "sparc64" => "sparc64",
        "sparc" => "sparc",
        "alpha" => "alpha",
        "m68k" => "m68k",
        "sh64" => "sh64",
        "sh" | "sh4" | "sh4a" => "sh",
        "tilegx" => "tilegx",
        "cris" => "cris",
        "nios2" => "nios2",
        "arc" => "arc",
        "arceb" => "arc-be",
        m if m.starts_with("armv") && m.ends_with('b') => "arm-be",
        m if m.starts_with("armv") || m == "arm" => "arm",
        _ => return None,
    })
}

/// The running kernel's architecture in systemd's naming (personality-aware, as uname is).
pub fn uname_architecture() -> Option<&'static str> {
    let uts = rustix::system::uname();
    from_uname_machine(&uts.machine().to_string_lossy())
}

/// The architecture this library was compiled for: the one `.v/` picking prefers.
pub const fn native() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        "x86-64"
    }
    #[cfg(target_arch = "x86")]
    {
        "x86"
    }
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    {
        "arm64"
    }
    #[cfg(all(target_arch = "aarch64", target_endian = "big"))]
    {
        "arm64-be"
    }
    #[cfg(all(target_arch = "arm", target_endian = "little"))]
    {
        "arm"
    }
    #[cfg(target_arch = "riscv64")]
    {
        "riscv64"
    }
    #[cfg(all(target_arch = "powerpc64", target_endian = "little"))]
    {
        "ppc64-le"
    }
    #[cfg(all(target_arch = "powerpc64", target_endian = "big"))]
    {
        "ppc64"
    }
    #[cfg(target_arch = "s390x")]
    {
        "s390x"
    }
    #[cfg(target_arch = "loongarch64")]
    {
        "loongarch64"
    }
}

/// The secondary architecture (runs natively too), as in systemd's `architecture.h`.
pub fn secondary(native: &str) -> Option<&'static str> {
    match native {
        "x86-64" => Some("x86"),
        "arm64" => Some("arm"),
        "ppc64" => Some("ppc"),
        "ppc64-le" => Some("ppc-le"),
        "s390x" => Some("s390"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uname_names() {
        for (m, want) in [
            ("x86_64", Some("x86-64")),
            ("i686", Some("x86")),
            ("aarch64", Some("arm64")),
            ("armv7l", Some("arm")),
            ("armv7b", Some("arm-be")),
            ("ppc64le", Some("ppc64-le")),
            ("riscv64", Some("riscv64")),
            ("z80", None),
        ] {
            assert_eq!(from_uname_machine(m), want, "{m}");
        }
        for n in KNOWN {
            assert!(is_known(n));
        }
        assert!(!is_known("x86_64"));
        assert_eq!(secondary("x86-64"), Some("x86"));
        assert_eq!(secondary("riscv64"), None);
    }
}
