//! Partition selection: which partitions of a GPT systemd-sysext would mount for an
//! architecture (root or `/usr`, with their verity and signature partitions).

use super::{lookup, Gpt, GptError, Partition, Role};

/// A partition picked for a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// The role it fills ([`Role::LinuxGeneric`] when a generic partition stands in for root).
    pub role: Role,
    /// The architecture its type GUID is for (`None` for a generic partition).
    pub arch: Option<&'static str>,
    /// The partition.
    pub partition: Partition,
}

impl Chosen {
    /// The GPT read-only attribute: the caller must mount it read-only.
    pub fn read_only(&self) -> bool {
        self.partition.read_only()
    }
}

/// A file-system partition with the verity partitions that protect it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSet {
    /// The file system partition (root, usr, or generic used as root).
    pub data: Chosen,
    /// Its dm-verity hash partition, if any.
    pub verity: Option<Chosen>,
    /// Its root-hash signature partition, if any (only with `verity`).
    pub verity_sig: Option<Chosen>,
}

/// What systemd's `dissect_image()` would use from an extension image, with
/// `GENERIC_ROOT | REQUIRE_ROOT | USR_NO_ROOT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// The tree to mount: root (or a lone generic Linux partition), else `/usr` (then the
    /// caller mounts it as the image's `usr/`). `primary.data.role` says which.
    pub primary: RoleSet,
    /// A `/usr` partition beside a root partition, mounted at `usr/` inside it.
    pub usr: Option<RoleSet>,
    /// Indexes of partitions with a root/usr/verity/generic type that were skipped for
    /// their "no-auto" attribute (bit 63), for logging.
    pub skipped_no_auto: Vec<u32>,
}

fn join_indexes(parts: &[&Partition]) -> String {
    parts
        .iter()
        .map(|p| p.index.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Picks the partitions systemd-sysext would mount from `gpt` on `arch` (systemd's
/// architecture name): the root partition for `arch` (else for its secondary architecture,
/// see [`crate::format::arch::secondary`]), else the `/usr` one, else a single generic Linux
/// partition, each with its `-verity` and `-verity-sig` partitions. Partitions marked
/// "no-auto" are skipped like systemd does. Unlike systemd, which picks the newest label
/// among several partitions of one role, several candidates are an error.
pub fn select_roles(gpt: &Gpt, arch: &str) -> Result<Selected, GptError> {
    let mut archs = vec![arch];
    if let Some(sec) = crate::format::arch::secondary(arch) {
        archs.push(sec);
    }

    // (role, arch rank (0 = native), arch, partition) for every partition we could use.
    let mut candidates: Vec<(Role, usize, Option<&'static str>, &Partition)> = Vec::new();
    let mut skipped_no_auto = Vec::new();
    for p in &gpt.partitions {
        let Some((role, parch)) = lookup(&p.type_guid) else {
            continue;
        };
        let rank = match parch {
            Some(a) => match archs.iter().position(|&x| x == a) {
                Some(r) => r,
                None => continue, // another architecture's partition: not ours
            },
            None if role == Role::LinuxGeneric => 0,
            None => continue, // ESP, swap, home...: nothing for an extension
        };
        if p.no_auto() {
            skipped_no_auto.push(p.index);
            continue;
        }
        candidates.push((role, rank, parch, p));
    }

    // The best-ranked candidate for `role` (optionally only for architecture `only`);
    // several at that rank are ambiguous.
    let pick = |role: Role, only: Option<&str>| -> Result<Option<Chosen>, GptError> {
        let matching: Vec<_> = candidates
            .iter()
            .filter(|c| c.0 == role && (only.is_none() || c.2 == only))
            .collect();
        let Some(best) = matching.iter().map(|c| c.1).min() else {
            return Ok(None);
        };
        let found: Vec<_> = matching.into_iter().filter(|c| c.1 == best).collect();
        match found.as_slice() {
            [one] => Ok(Some(Chosen {
                role,
                arch: one.2,
                partition: one.3.clone(),
            })),
            _ => Err(GptError::Ambiguous {
                role,
                arch: found.first().and_then(|c| c.2).unwrap_or("any").to_owned(),
                indexes: join_indexes(&found.iter().map(|c| c.3).collect::<Vec<_>>()),
            }),
        }
    };

    let root = pick(Role::Root, None)?;
    let usr = pick(Role::Usr, None)?;
    // Verity partitions belong to the data partition of their own architecture.
    let root_arch = root.as_ref().and_then(|c| c.arch);
    let usr_arch = usr.as_ref().and_then(|c| c.arch);
    let root_verity = pick(Role::RootVerity, root_arch)?;
    let root_verity_sig = pick(Role::RootVeritySig, root_arch)?;
    let usr_verity = pick(Role::UsrVerity, usr_arch)?;
    let usr_verity_sig = pick(Role::UsrVeritySig, usr_arch)?;

    // systemd: verity without its data partition, or a signature without verity, is
    // refused. A verity partition for another architecture than the data's has no data
    // partition either.
    for (role, data_arch, needed) in [
        (Role::RootVerity, root_arch, Role::Root),
        (Role::RootVeritySig, root_arch, Role::Root),
        (Role::UsrVerity, usr_arch, Role::Usr),
        (Role::UsrVeritySig, usr_arch, Role::Usr),
    ] {
        let orphan = candidates
            .iter()
            .find(|c| c.0 == role && (data_arch.is_none() || c.2 != data_arch));
        if let Some(c) = orphan {
            return Err(GptError::MissingPartner {
                role,
                index: c.3.index,
                needed,
            });
        }
    }
    for (verity, sig, verity_role) in [
        (&root_verity, &root_verity_sig, Role::RootVerity),
        (&usr_verity, &usr_verity_sig, Role::UsrVerity),
    ] {
        if let (None, Some(s)) = (verity, sig) {
            return Err(GptError::MissingPartner {
                role: s.role,
                index: s.partition.index,
                needed: verity_role,
            });
        }
    }

    if let (Some(r), Some(u)) = (&root, &usr) {
        if let (Some(ra), Some(ua)) = (r.arch, u.arch) {
            if ra != ua {
                return Err(GptError::ArchMismatch {
                    root: r.partition.index,
                    root_arch: ra,
                    usr: u.partition.index,
                    usr_arch: ua,
                });
            }
        }
    }
    if root_verity.is_some() {
        if usr_verity.is_some() {
            return Err(GptError::Layout(
                "verity partitions for both root and /usr (only one is supported)",
            ));
        }
        if usr.is_some() {
            return Err(GptError::Layout(
                "a verity-protected root partition with a separate /usr partition",
            ));
        }
    }

    let usr_set = usr.map(|data| RoleSet {
        data,
        verity: usr_verity,
        verity_sig: usr_verity_sig,
    });
    let (primary, usr) = match (root, usr_set) {
        (Some(data), usr_set) => (
            RoleSet {
                data,
                verity: root_verity,
                verity_sig: root_verity_sig,
            },
            usr_set,
        ),
        (None, Some(usr_set)) => (usr_set, None),
        (None, None) => match pick(Role::LinuxGeneric, None) {
            Ok(Some(data)) => (
                RoleSet {
                    data,
                    verity: None,
                    verity_sig: None,
                },
                None,
            ),
            Ok(None) => {
                return Err(GptError::NoRootOrUsr {
                    arch: arch.to_owned(),
                })
            }
            Err(e) => return Err(e),
        },
    };

    Ok(Selected {
        primary,
        usr,
        skipped_no_auto,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{
        base, build, g, p, ty, P, X86_64_ROOT, X86_64_USR, X86_64_USR_VERITY, X86_64_USR_VERITY_SIG,
    };
    use super::super::{parse_bytes, ATTR_GROWFS, ATTR_NO_AUTO};
    use super::*;

    fn select(parts: &[P], arch: &str) -> Result<Selected, GptError> {
        select_roles(&parse_bytes(&build(512, 2048, parts)).unwrap(), arch)
    }

    #[test]
    fn usr_with_verity_from_writer() {
        let sel = select_roles(&parse_bytes(&base()).unwrap(), "x86-64").unwrap();
        assert_eq!(sel.primary.data.role, Role::Usr);
        assert_eq!(sel.primary.verity.as_ref().unwrap().role, Role::UsrVerity);
        assert_eq!(
            sel.primary.verity_sig.as_ref().unwrap().role,
            Role::UsrVeritySig
        );
    }

    #[test]
    fn secondary_architecture_and_preference() {
        let x86 = ty(Role::Root, "x86");
        let sel = select(&[p(x86, 40, 99)], "x86-64").unwrap();
        assert_eq!(
            (sel.primary.data.role, sel.primary.data.arch),
            (Role::Root, Some("x86"))
        );
        // Native wins over secondary: not ambiguous.
        let sel = select(&[p(x86, 40, 99), p(g(X86_64_ROOT), 100, 199)], "x86-64").unwrap();
        assert_eq!(sel.primary.data.partition.index, 2);
        // No secondary the other way round.
        let err = select(&[p(g(X86_64_ROOT), 40, 99)], "x86").unwrap_err();
        assert!(matches!(err, GptError::NoRootOrUsr { .. }), "{err:?}");
    }

    #[test]
    fn root_and_usr_together() {
        let sel = select(
            &[
                p(g(X86_64_ROOT), 40, 99),
                p(g(X86_64_USR), 100, 199),
                p(g(X86_64_USR_VERITY), 200, 219),
            ],
            "x86-64",
        )
        .unwrap();
        assert_eq!(sel.primary.data.role, Role::Root);
        let usr = sel.usr.unwrap();
        assert_eq!(usr.data.partition.index, 2);
        assert_eq!(usr.verity.unwrap().partition.index, 3);

        let err = select(
            &[p(g(X86_64_ROOT), 40, 99), p(ty(Role::Usr, "x86"), 100, 199)],
            "x86-64",
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                GptError::ArchMismatch {
                    root: 1,
                    root_arch: "x86-64",
                    usr: 2,
                    usr_arch: "x86"
                }
            ),
            "{err:?}"
        );
        let err = select(
            &[
                p(g(X86_64_ROOT), 40, 99),
                p(ty(Role::RootVerity, "x86-64"), 100, 119),
                p(g(X86_64_USR), 200, 299),
            ],
            "x86-64",
        )
        .unwrap_err();
        assert!(matches!(err, GptError::Layout(_)), "{err:?}");
        let err = select(
            &[
                p(g(X86_64_ROOT), 40, 99),
                p(ty(Role::RootVerity, "x86-64"), 100, 119),
                p(g(X86_64_USR), 200, 299),
                p(g(X86_64_USR_VERITY), 300, 319),
            ],
            "x86-64",
        )
        .unwrap_err();
        assert!(
            matches!(err, GptError::Layout(w) if w.contains("both")),
            "{err:?}"
        );
    }

    #[test]
    fn verity_without_data() {
        let err = select(&[p(g(X86_64_USR_VERITY), 40, 99)], "x86-64").unwrap_err();
        assert!(
            matches!(
                err,
                GptError::MissingPartner {
                    role: Role::UsrVerity,
                    index: 1,
                    needed: Role::Usr
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "usr-verity partition 1 has no matching usr partition"
        );
        let err = select(
            &[
                p(g(X86_64_USR), 40, 99),
                p(g(X86_64_USR_VERITY_SIG), 100, 107),
            ],
            "x86-64",
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                GptError::MissingPartner {
                    role: Role::UsrVeritySig,
                    index: 2,
                    needed: Role::UsrVerity
                }
            ),
            "{err:?}"
        );
        let err = select(&[p(ty(Role::RootVeritySig, "x86-64"), 40, 99)], "x86-64").unwrap_err();
        assert!(
            matches!(
                err,
                GptError::MissingPartner {
                    role: Role::RootVeritySig,
                    needed: Role::Root,
                    ..
                }
            ),
            "{err:?}"
        );
        // Verity for the secondary architecture does not protect the native root.
        let err = select(
            &[
                p(g(X86_64_ROOT), 40, 99),
                p(ty(Role::RootVerity, "x86"), 100, 119),
            ],
            "x86-64",
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                GptError::MissingPartner {
                    role: Role::RootVerity,
                    index: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        // Other architectures' verity partitions are none of our business.
        let sel = select(
            &[
                p(g(X86_64_USR), 40, 99),
                p(ty(Role::UsrVerity, "arm64"), 100, 119),
            ],
            "x86-64",
        )
        .unwrap();
        assert!(sel.primary.verity.is_none());
    }

    #[test]
    fn no_auto_partitions_are_skipped() {
        let sel = select(
            &[
                P {
                    attrs: ATTR_NO_AUTO,
                    ..p(g(X86_64_ROOT), 40, 99)
                },
                P {
                    attrs: ATTR_GROWFS,
                    ..p(g(X86_64_ROOT), 100, 199)
                },
            ],
            "x86-64",
        )
        .unwrap();
        assert_eq!(sel.primary.data.partition.index, 2);
        assert!(sel.primary.data.partition.growfs());
        assert_eq!(sel.skipped_no_auto, [1]);
        let err = select(
            &[P {
                attrs: ATTR_NO_AUTO,
                ..p(g(X86_64_ROOT), 40, 99)
            }],
            "x86-64",
        )
        .unwrap_err();
        assert!(matches!(err, GptError::NoRootOrUsr { .. }), "{err:?}");
    }

    #[test]
    fn generic_linux_partition_as_root() {
        let generic = g("0fc63daf-8483-4772-8e79-3d69d8477de4");
        let esp = g("c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
        let sel = select(&[p(esp, 40, 99), p(generic, 100, 199)], "arm64").unwrap();
        assert_eq!(sel.primary.data.role, Role::LinuxGeneric);
        assert_eq!(
            (sel.primary.data.arch, sel.primary.data.partition.index),
            (None, 2)
        );
        let err = select(&[p(generic, 40, 99), p(generic, 100, 199)], "x86-64").unwrap_err();
        assert!(
            matches!(&err, GptError::Ambiguous { role: Role::LinuxGeneric, arch, indexes } if arch == "any" && indexes == "1, 2"),
            "{err:?}"
        );
        // A proper root makes the generic ones irrelevant.
        let sel = select(
            &[
                p(generic, 40, 99),
                p(generic, 100, 199),
                p(g(X86_64_ROOT), 200, 299),
            ],
            "x86-64",
        )
        .unwrap();
        assert_eq!(sel.primary.data.partition.index, 3);
        let err = select(&[p(esp, 40, 99)], "x86-64").unwrap_err();
        assert!(matches!(err, GptError::NoRootOrUsr { .. }), "{err:?}");
    }

    #[test]
    fn ambiguous_verity() {
        let err = select(
            &[
                p(g(X86_64_USR), 40, 99),
                p(g(X86_64_USR_VERITY), 100, 119),
                p(g(X86_64_USR_VERITY), 120, 139),
            ],
            "x86-64",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "several usr-verity partitions for architecture x86-64: 2, 3"
        );
    }
}
