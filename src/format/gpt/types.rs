//! The Discoverable Partitions Specification's partition types: which role (designator)
//! and architecture each type GUID stands for.

use std::fmt;

use super::Guid;

/// For GUID literals in tables: a malformed literal fails the build (const evaluation).
const fn guid(s: &str) -> Guid {
    match Guid::parse_text(s.as_bytes()) {
        Some(g) => g,
        None => panic!("malformed GUID literal"),
    }
}

/// What a partition is for, per the Discoverable Partitions Specification (systemd's
/// partition designators), so images can be dissected without labels or fstab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Root file system for an architecture.
    Root,
    /// dm-verity hash data for [`Role::Root`].
    RootVerity,
    /// Signed root hash (JSON + PKCS#7) for [`Role::RootVerity`].
    RootVeritySig,
    /// `/usr` file system for an architecture.
    Usr,
    /// dm-verity hash data for [`Role::Usr`].
    UsrVerity,
    /// Signed root hash for [`Role::UsrVerity`].
    UsrVeritySig,
    /// EFI System Partition.
    Esp,
    /// Extended Boot Loader Partition.
    Xbootldr,
    /// Swap.
    Swap,
    /// `/home`.
    Home,
    /// `/srv`.
    Srv,
    /// `/var`.
    Var,
    /// `/var/tmp`.
    Tmp,
    /// A systemd-homed user's home.
    UserHome,
    /// Generic Linux data: used as root when an image has nothing better (`GENERIC_ROOT`).
    LinuxGeneric,
}

impl Role {
    /// systemd's designator name (`partition_designator_to_string()`), for messages.
    pub fn name(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::RootVerity => "root-verity",
            Role::RootVeritySig => "root-verity-sig",
            Role::Usr => "usr",
            Role::UsrVerity => "usr-verity",
            Role::UsrVeritySig => "usr-verity-sig",
            Role::Esp => "esp",
            Role::Xbootldr => "xbootldr",
            Role::Swap => "swap",
            Role::Home => "home",
            Role::Srv => "srv",
            Role::Var => "var",
            Role::Tmp => "tmp",
            Role::UserHome => "user-home",
            Role::LinuxGeneric => "linux-generic",
        }
    }

    /// Do this role's type GUIDs differ per architecture (root, usr and their verity kin)?
    pub fn is_per_arch(self) -> bool {
        matches!(
            self,
            Role::Root
                | Role::RootVerity
                | Role::RootVeritySig
                | Role::Usr
                | Role::UsrVerity
                | Role::UsrVeritySig
        )
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Type GUIDs of the Discoverable Partitions Specification: role and architecture (systemd
/// names, as in [`crate::format::arch`]). Every GUID here is copied from the specification's table
/// (uapi-group/specifications `specs/discoverable_partitions_specification.md`, commit
/// ed66b52d8132), keeping each row's `SD_GPT_*` name; the x86-64, x86, arm64, arm and riscv64
/// rows and the ESP and generic ones were also compared with systemd's `src/systemd/sd-gpt.h`.
/// The big-endian MIPS rows are left out: systemd defines no `SD_GPT_*` for them.
#[rustfmt::skip]
pub static PARTITION_TYPES: &[(Guid, Role, Option<&str>)] = &[
    (guid("6523f8ae-3eb1-4e2a-a05a-18b695ae656f"), Role::Root, Some("alpha")), // SD_GPT_ROOT_ALPHA
    (guid("d27f46ed-2919-4cb8-bd25-9531f3c16534"), Role::Root, Some("arc")), // SD_GPT_ROOT_ARC
    (guid("69dad710-2ce4-4e3c-b16c-21a1d49abed3"), Role::Root, Some("arm")), // SD_GPT_ROOT_ARM
    (guid("b921b045-1df0-41c3-af44-4c6f280d3fae"), Role::Root, Some("arm64")), // SD_GPT_ROOT_ARM64
    (guid("993d8d3d-f80e-4225-855a-9daf8ed7ea97"), Role::Root, Some("ia64")), // SD_GPT_ROOT_IA64
    (guid("77055800-792c-4f94-b39a-98c91b762bb6"), Role::Root, Some("loongarch64")), // SD_GPT_ROOT_LOONGARCH64
    (guid("37c58c8a-d913-4156-a25f-48b1b64e07f0"), Role::Root, Some("mips-le")), // SD_GPT_ROOT_MIPS_LE
    (guid("700bda43-7a34-4507-b179-eeb93d7a7ca3"), Role::Root, Some("mips64-le")), // SD_GPT_ROOT_MIPS64_LE
    (guid("1aacdb3b-5444-4138-bd9e-e5c2239b2346"), Role::Root, Some("parisc")), // SD_GPT_ROOT_PARISC
    (guid("1de3f1ef-fa98-47b5-8dcd-4a860a654d78"), Role::Root, Some("ppc")), // SD_GPT_ROOT_PPC
    (guid("912ade1d-a839-4913-8964-a10eee08fbd2"), Role::Root, Some("ppc64")), // SD_GPT_ROOT_PPC64
    (guid("c31c45e6-3f39-412e-80fb-4809c4980599"), Role::Root, Some("ppc64-le")), // SD_GPT_ROOT_PPC64_LE
    (guid("60d5a7fe-8e7d-435c-b714-3dd8162144e1"), Role::Root, Some("riscv32")), // SD_GPT_ROOT_RISCV32
    (guid("72ec70a6-cf74-40e6-bd49-4bda08e8f224"), Role::Root, Some("riscv64")), // SD_GPT_ROOT_RISCV64
    (guid("08a7acea-624c-4a20-91e8-6e0fa67d23f9"), Role::Root, Some("s390")), // SD_GPT_ROOT_S390
    (guid("5eead9a9-fe09-4a1e-a1d7-520d00531306"), Role::Root, Some("s390x")), // SD_GPT_ROOT_S390X
    (guid("c50cdd70-3862-4cc3-90e1-809a8c93ee2c"), Role::Root, Some("tilegx")), // SD_GPT_ROOT_TILEGX
    (guid("44479540-f297-41b2-9af7-d131d5f0458a"), Role::Root, Some("x86")), // SD_GPT_ROOT_X86
    (guid("4f68bce3-e8cd-4db1-96e7-fbcaf984b709"), Role::Root, Some("x86-64")), // SD_GPT_ROOT_X86_64
    (guid("e18cf08c-33ec-4c0d-8246-c6c6fb3da024"), Role::Usr, Some("alpha")), // SD_GPT_USR_ALPHA
    (guid("7978a683-6316-4922-bbee-38bff5a2fecc"), Role::Usr, Some("arc")), // SD_GPT_USR_ARC
    (guid("7d0359a3-02b3-4f0a-865c-654403e70625"), Role::Usr, Some("arm")), // SD_GPT_USR_ARM
    (guid("b0e01050-ee5f-4390-949a-9101b17104e9"), Role::Usr, Some("arm64")), // SD_GPT_USR_ARM64
    (guid("4301d2a6-4e3b-4b2a-bb94-9e0b2c4225ea"), Role::Usr, Some("ia64")), // SD_GPT_USR_IA64
    (guid("e611c702-575c-4cbe-9a46-434fa0bf7e3f"), Role::Usr, Some("loongarch64")), // SD_GPT_USR_LOONGARCH64
    (guid("0f4868e9-9952-4706-979f-3ed3a473e947"), Role::Usr, Some("mips-le")), // SD_GPT_USR_MIPS_LE
    (guid("c97c1f32-ba06-40b4-9f22-236061b08aa8"), Role::Usr, Some("mips64-le")), // SD_GPT_USR_MIPS64_LE
    (guid("dc4a4480-6917-4262-a4ec-db9384949f25"), Role::Usr, Some("parisc")), // SD_GPT_USR_PARISC
    (guid("7d14fec5-cc71-415d-9d6c-06bf0b3c3eaf"), Role::Usr, Some("ppc")), // SD_GPT_USR_PPC
    (guid("2c9739e2-f068-46b3-9fd0-01c5a9afbcca"), Role::Usr, Some("ppc64")), // SD_GPT_USR_PPC64
    (guid("15bb03af-77e7-4d4a-b12b-c0d084f7491c"), Role::Usr, Some("ppc64-le")), // SD_GPT_USR_PPC64_LE
    (guid("b933fb22-5c3f-4f91-af90-e2bb0fa50702"), Role::Usr, Some("riscv32")), // SD_GPT_USR_RISCV32
    (guid("beaec34b-8442-439b-a40b-984381ed097d"), Role::Usr, Some("riscv64")), // SD_GPT_USR_RISCV64
    (guid("cd0f869b-d0fb-4ca0-b141-9ea87cc78d66"), Role::Usr, Some("s390")), // SD_GPT_USR_S390
    (guid("8a4f5770-50aa-4ed3-874a-99b710db6fea"), Role::Usr, Some("s390x")), // SD_GPT_USR_S390X
    (guid("55497029-c7c1-44cc-aa39-815ed1558630"), Role::Usr, Some("tilegx")), // SD_GPT_USR_TILEGX
    (guid("75250d76-8cc6-458e-bd66-bd47cc81a812"), Role::Usr, Some("x86")), // SD_GPT_USR_X86
    (guid("8484680c-9521-48c6-9c11-b0720656f69e"), Role::Usr, Some("x86-64")), // SD_GPT_USR_X86_64
    (guid("fc56d9e9-e6e5-4c06-be32-e74407ce09a5"), Role::RootVerity, Some("alpha")), // SD_GPT_ROOT_ALPHA_VERITY
    (guid("24b2d975-0f97-4521-afa1-cd531e421b8d"), Role::RootVerity, Some("arc")), // SD_GPT_ROOT_ARC_VERITY
    (guid("7386cdf2-203c-47a9-a498-f2ecce45a2d6"), Role::RootVerity, Some("arm")), // SD_GPT_ROOT_ARM_VERITY
    (guid("df3300ce-d69f-4c92-978c-9bfb0f38d820"), Role::RootVerity, Some("arm64")), // SD_GPT_ROOT_ARM64_VERITY
    (guid("86ed10d5-b607-45bb-8957-d350f23d0571"), Role::RootVerity, Some("ia64")), // SD_GPT_ROOT_IA64_VERITY
    (guid("f3393b22-e9af-4613-a948-9d3bfbd0c535"), Role::RootVerity, Some("loongarch64")), // SD_GPT_ROOT_LOONGARCH64_VERITY
    (guid("d7d150d2-2a04-4a33-8f12-16651205ff7b"), Role::RootVerity, Some("mips-le")), // SD_GPT_ROOT_MIPS_LE_VERITY
    (guid("16b417f8-3e06-4f57-8dd2-9b5232f41aa6"), Role::RootVerity, Some("mips64-le")), // SD_GPT_ROOT_MIPS64_LE_VERITY
    (guid("d212a430-fbc5-49f9-a983-a7feef2b8d0e"), Role::RootVerity, Some("parisc")), // SD_GPT_ROOT_PARISC_VERITY
    (guid("906bd944-4589-4aae-a4e4-dd983917446a"), Role::RootVerity, Some("ppc64-le")), // SD_GPT_ROOT_PPC64_LE_VERITY
    (guid("9225a9a3-3c19-4d89-b4f6-eeff88f17631"), Role::RootVerity, Some("ppc64")), // SD_GPT_ROOT_PPC64_VERITY
    (guid("98cfe649-1588-46dc-b2f0-add147424925"), Role::RootVerity, Some("ppc")), // SD_GPT_ROOT_PPC_VERITY
    (guid("ae0253be-1167-4007-ac68-43926c14c5de"), Role::RootVerity, Some("riscv32")), // SD_GPT_ROOT_RISCV32_VERITY
    (guid("b6ed5582-440b-4209-b8da-5ff7c419ea3d"), Role::RootVerity, Some("riscv64")), // SD_GPT_ROOT_RISCV64_VERITY
    (guid("7ac63b47-b25c-463b-8df8-b4a94e6c90e1"), Role::RootVerity, Some("s390")), // SD_GPT_ROOT_S390_VERITY
    (guid("b325bfbe-c7be-4ab8-8357-139e652d2f6b"), Role::RootVerity, Some("s390x")), // SD_GPT_ROOT_S390X_VERITY
    (guid("966061ec-28e4-4b2e-b4a5-1f0a825a1d84"), Role::RootVerity, Some("tilegx")), // SD_GPT_ROOT_TILEGX_VERITY
    (guid("2c7357ed-ebd2-46d9-aec1-23d437ec2bf5"), Role::RootVerity, Some("x86-64")), // SD_GPT_ROOT_X86_64_VERITY
    (guid("d13c5d3b-b5d1-422a-b29f-9454fdc89d76"), Role::RootVerity, Some("x86")), // SD_GPT_ROOT_X86_VERITY
    (guid("8cce0d25-c0d0-4a44-bd87-46331bf1df67"), Role::UsrVerity, Some("alpha")), // SD_GPT_USR_ALPHA_VERITY
    (guid("fca0598c-d880-4591-8c16-4eda05c7347c"), Role::UsrVerity, Some("arc")), // SD_GPT_USR_ARC_VERITY
    (guid("c215d751-7bcd-4649-be90-6627490a4c05"), Role::UsrVerity, Some("arm")), // SD_GPT_USR_ARM_VERITY
    (guid("6e11a4e7-fbca-4ded-b9e9-e1a512bb664e"), Role::UsrVerity, Some("arm64")), // SD_GPT_USR_ARM64_VERITY
    (guid("6a491e03-3be7-4545-8e38-83320e0ea880"), Role::UsrVerity, Some("ia64")), // SD_GPT_USR_IA64_VERITY
    (guid("f46b2c26-59ae-48f0-9106-c50ed47f673d"), Role::UsrVerity, Some("loongarch64")), // SD_GPT_USR_LOONGARCH64_VERITY
    (guid("46b98d8d-b55c-4e8f-aab3-37fca7f80752"), Role::UsrVerity, Some("mips-le")), // SD_GPT_USR_MIPS_LE_VERITY
    (guid("3c3d61fe-b5f3-414d-bb71-8739a694a4ef"), Role::UsrVerity, Some("mips64-le")), // SD_GPT_USR_MIPS64_LE_VERITY
    (guid("5843d618-ec37-48d7-9f12-cea8e08768b2"), Role::UsrVerity, Some("parisc")), // SD_GPT_USR_PARISC_VERITY
    (guid("ee2b9983-21e8-4153-86d9-b6901a54d1ce"), Role::UsrVerity, Some("ppc64-le")), // SD_GPT_USR_PPC64_LE_VERITY
    (guid("bdb528a5-a259-475f-a87d-da53fa736a07"), Role::UsrVerity, Some("ppc64")), // SD_GPT_USR_PPC64_VERITY
    (guid("df765d00-270e-49e5-bc75-f47bb2118b09"), Role::UsrVerity, Some("ppc")), // SD_GPT_USR_PPC_VERITY
    (guid("cb1ee4e3-8cd0-4136-a0a4-aa61a32e8730"), Role::UsrVerity, Some("riscv32")), // SD_GPT_USR_RISCV32_VERITY
    (guid("8f1056be-9b05-47c4-81d6-be53128e5b54"), Role::UsrVerity, Some("riscv64")), // SD_GPT_USR_RISCV64_VERITY
    (guid("b663c618-e7bc-4d6d-90aa-11b756bb1797"), Role::UsrVerity, Some("s390")), // SD_GPT_USR_S390_VERITY
    (guid("31741cc4-1a2a-4111-a581-e00b447d2d06"), Role::UsrVerity, Some("s390x")), // SD_GPT_USR_S390X_VERITY
    (guid("2fb4bf56-07fa-42da-8132-6b139f2026ae"), Role::UsrVerity, Some("tilegx")), // SD_GPT_USR_TILEGX_VERITY
    (guid("77ff5f63-e7b6-4633-acf4-1565b864c0e6"), Role::UsrVerity, Some("x86-64")), // SD_GPT_USR_X86_64_VERITY
    (guid("8f461b0d-14ee-4e81-9aa9-049b6fb97abd"), Role::UsrVerity, Some("x86")), // SD_GPT_USR_X86_VERITY
    (guid("d46495b7-a053-414f-80f7-700c99921ef8"), Role::RootVeritySig, Some("alpha")), // SD_GPT_ROOT_ALPHA_VERITY_SIG
    (guid("143a70ba-cbd3-4f06-919f-6c05683a78bc"), Role::RootVeritySig, Some("arc")), // SD_GPT_ROOT_ARC_VERITY_SIG
    (guid("42b0455f-eb11-491d-98d3-56145ba9d037"), Role::RootVeritySig, Some("arm")), // SD_GPT_ROOT_ARM_VERITY_SIG
    (guid("6db69de6-29f4-4758-a7a5-962190f00ce3"), Role::RootVeritySig, Some("arm64")), // SD_GPT_ROOT_ARM64_VERITY_SIG
    (guid("e98b36ee-32ba-4882-9b12-0ce14655f46a"), Role::RootVeritySig, Some("ia64")), // SD_GPT_ROOT_IA64_VERITY_SIG
    (guid("5afb67eb-ecc8-4f85-ae8e-ac1e7c50e7d0"), Role::RootVeritySig, Some("loongarch64")), // SD_GPT_ROOT_LOONGARCH64_VERITY_SIG
    (guid("c919cc1f-4456-4eff-918c-f75e94525ca5"), Role::RootVeritySig, Some("mips-le")), // SD_GPT_ROOT_MIPS_LE_VERITY_SIG
    (guid("904e58ef-5c65-4a31-9c57-6af5fc7c5de7"), Role::RootVeritySig, Some("mips64-le")), // SD_GPT_ROOT_MIPS64_LE_VERITY_SIG
    (guid("15de6170-65d3-431c-916e-b0dcd8393f25"), Role::RootVeritySig, Some("parisc")), // SD_GPT_ROOT_PARISC_VERITY_SIG
    (guid("d4a236e7-e873-4c07-bf1d-bf6cf7f1c3c6"), Role::RootVeritySig, Some("ppc64-le")), // SD_GPT_ROOT_PPC64_LE_VERITY_SIG
    (guid("f5e2c20c-45b2-4ffa-bce9-2a60737e1aaf"), Role::RootVeritySig, Some("ppc64")), // SD_GPT_ROOT_PPC64_VERITY_SIG
    (guid("1b31b5aa-add9-463a-b2ed-bd467fc857e7"), Role::RootVeritySig, Some("ppc")), // SD_GPT_ROOT_PPC_VERITY_SIG
    (guid("3a112a75-8729-4380-b4cf-764d79934448"), Role::RootVeritySig, Some("riscv32")), // SD_GPT_ROOT_RISCV32_VERITY_SIG
    (guid("efe0f087-ea8d-4469-821a-4c2a96a8386a"), Role::RootVeritySig, Some("riscv64")), // SD_GPT_ROOT_RISCV64_VERITY_SIG
    (guid("3482388e-4254-435a-a241-766a065f9960"), Role::RootVeritySig, Some("s390")), // SD_GPT_ROOT_S390_VERITY_SIG
    (guid("c80187a5-73a3-491a-901a-017c3fa953e9"), Role::RootVeritySig, Some("s390x")), // SD_GPT_ROOT_S390X_VERITY_SIG
    (guid("b3671439-97b0-4a53-90f7-2d5a8f3ad47b"), Role::RootVeritySig, Some("tilegx")), // SD_GPT_ROOT_TILEGX_VERITY_SIG
    (guid("41092b05-9fc8-4523-994f-2def0408b176"), Role::RootVeritySig, Some("x86-64")), // SD_GPT_ROOT_X86_64_VERITY_SIG
    (guid("5996fc05-109c-48de-808b-23fa0830b676"), Role::RootVeritySig, Some("x86")), // SD_GPT_ROOT_X86_VERITY_SIG
    (guid("5c6e1c76-076a-457a-a0fe-f3b4cd21ce6e"), Role::UsrVeritySig, Some("alpha")), // SD_GPT_USR_ALPHA_VERITY_SIG
    (guid("94f9a9a1-9971-427a-a400-50cb297f0f35"), Role::UsrVeritySig, Some("arc")), // SD_GPT_USR_ARC_VERITY_SIG
    (guid("d7ff812f-37d1-4902-a810-d76ba57b975a"), Role::UsrVeritySig, Some("arm")), // SD_GPT_USR_ARM_VERITY_SIG
    (guid("c23ce4ff-44bd-4b00-b2d4-b41b3419e02a"), Role::UsrVeritySig, Some("arm64")), // SD_GPT_USR_ARM64_VERITY_SIG
    (guid("8de58bc2-2a43-460d-b14e-a76e4a17b47f"), Role::UsrVeritySig, Some("ia64")), // SD_GPT_USR_IA64_VERITY_SIG
    (guid("b024f315-d330-444c-8461-44bbde524e99"), Role::UsrVeritySig, Some("loongarch64")), // SD_GPT_USR_LOONGARCH64_VERITY_SIG
    (guid("3e23ca0b-a4bc-4b4e-8087-5ab6a26aa8a9"), Role::UsrVeritySig, Some("mips-le")), // SD_GPT_USR_MIPS_LE_VERITY_SIG
    (guid("f2c2c7ee-adcc-4351-b5c6-ee9816b66e16"), Role::UsrVeritySig, Some("mips64-le")), // SD_GPT_USR_MIPS64_LE_VERITY_SIG
    (guid("450dd7d1-3224-45ec-9cf2-a43a346d71ee"), Role::UsrVeritySig, Some("parisc")), // SD_GPT_USR_PARISC_VERITY_SIG
    (guid("c8bfbd1e-268e-4521-8bba-bf314c399557"), Role::UsrVeritySig, Some("ppc64-le")), // SD_GPT_USR_PPC64_LE_VERITY_SIG
    (guid("0b888863-d7f8-4d9e-9766-239fce4d58af"), Role::UsrVeritySig, Some("ppc64")), // SD_GPT_USR_PPC64_VERITY_SIG
    (guid("7007891d-d371-4a80-86a4-5cb875b9302e"), Role::UsrVeritySig, Some("ppc")), // SD_GPT_USR_PPC_VERITY_SIG
    (guid("c3836a13-3137-45ba-b583-b16c50fe5eb4"), Role::UsrVeritySig, Some("riscv32")), // SD_GPT_USR_RISCV32_VERITY_SIG
    (guid("d2f9000a-7a18-453f-b5cd-4d32f77a7b32"), Role::UsrVeritySig, Some("riscv64")), // SD_GPT_USR_RISCV64_VERITY_SIG
    (guid("17440e4f-a8d0-467f-a46e-3912ae6ef2c5"), Role::UsrVeritySig, Some("s390")), // SD_GPT_USR_S390_VERITY_SIG
    (guid("3f324816-667b-46ae-86ee-9b0c0c6c11b4"), Role::UsrVeritySig, Some("s390x")), // SD_GPT_USR_S390X_VERITY_SIG
    (guid("4ede75e2-6ccc-4cc8-b9c7-70334b087510"), Role::UsrVeritySig, Some("tilegx")), // SD_GPT_USR_TILEGX_VERITY_SIG
    (guid("e7bb33fb-06cf-4e81-8273-e543b413e2e2"), Role::UsrVeritySig, Some("x86-64")), // SD_GPT_USR_X86_64_VERITY_SIG
    (guid("974a71c0-de41-43c3-be5d-5c5ccd1ad2c0"), Role::UsrVeritySig, Some("x86")), // SD_GPT_USR_X86_VERITY_SIG
    (guid("c12a7328-f81f-11d2-ba4b-00a0c93ec93b"), Role::Esp, None), // SD_GPT_ESP
    (guid("bc13c2ff-59e6-4262-a352-b275fd6f7172"), Role::Xbootldr, None), // SD_GPT_XBOOTLDR
    (guid("0657fd6d-a4ab-43c4-84e5-0933c84b4f4f"), Role::Swap, None), // SD_GPT_SWAP
    (guid("933ac7e1-2eb4-4f13-b844-0e14e2aef915"), Role::Home, None), // SD_GPT_HOME
    (guid("3b8f8425-20e0-4f3b-907f-1a25a76f98e8"), Role::Srv, None), // SD_GPT_SRV
    (guid("4d21b016-b534-45c2-a9fb-5c16e091fd2d"), Role::Var, None), // SD_GPT_VAR
    (guid("7ec6f557-3bc5-4aca-b293-16ef5df639d1"), Role::Tmp, None), // SD_GPT_TMP
    (guid("773f91ef-66d4-49b5-bd83-d683bf40ad16"), Role::UserHome, None), // SD_GPT_USER_HOME
    (guid("0fc63daf-8483-4772-8e79-3d69d8477de4"), Role::LinuxGeneric, None), // SD_GPT_LINUX_GENERIC
];

/// Role and architecture of a type GUID, or `None` for types the specification does not know.
pub fn lookup(type_guid: &Guid) -> Option<(Role, Option<&'static str>)> {
    PARTITION_TYPES
        .iter()
        .find(|(g, _, _)| g == type_guid)
        .map(|&(_, role, arch)| (role, arch))
}

/// The role a partition of `type_guid` plays on `arch` (systemd's architecture name, e.g.
/// `x86-64`): per-architecture roles only match their own architecture, the others any.
pub fn role_for(type_guid: &Guid, arch: &str) -> Option<Role> {
    match lookup(type_guid)? {
        (role, Some(a)) if a == arch => Some(role),
        (_, Some(_)) => None,
        (role, None) => Some(role),
    }
}

/// The type GUID of `role` on `arch` (the architecture is ignored for roles that have one
/// GUID), e.g. for writing images or comparing.
pub fn type_guid_for(role: Role, arch: &str) -> Option<Guid> {
    PARTITION_TYPES
        .iter()
        .find(|&&(_, r, a)| r == role && (a.is_none() || a == Some(arch)))
        .map(|&(g, _, _)| g)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{g, ty, X86_64_ROOT};
    use super::*;

    #[test]
    fn type_table_is_consistent() {
        let mut seen = std::collections::HashSet::new();
        for (gd, role, arch) in PARTITION_TYPES {
            assert!(seen.insert(*gd), "duplicate {gd}");
            assert_eq!(gd.to_string().parse::<Guid>().unwrap(), *gd);
            assert_eq!(role.is_per_arch(), arch.is_some(), "{gd}");
            if let Some(a) = arch {
                assert!(crate::format::arch::is_known(a), "{a}");
            }
        }
        for arch in ["x86-64", "x86", "arm64", "arm", "riscv64"] {
            for role in [
                Role::Root,
                Role::RootVerity,
                Role::RootVeritySig,
                Role::Usr,
                Role::UsrVerity,
                Role::UsrVeritySig,
            ] {
                let gd = type_guid_for(role, arch).unwrap();
                assert_eq!(role_for(&gd, arch), Some(role));
                assert_eq!(lookup(&gd), Some((role, Some(arch))));
            }
        }
        // As SD_ID128_MAKE() spells them in systemd's sd-gpt.h.
        assert_eq!(
            ty(Role::UsrVeritySig, "x86-64").to_text_bytes(),
            [
                0xe7, 0xbb, 0x33, 0xfb, 0x06, 0xcf, 0x4e, 0x81, 0x82, 0x73, 0xe5, 0x43, 0xb4, 0x13,
                0xe2, 0xe2
            ]
        );
        assert_eq!(
            ty(Role::Root, "arm64").to_string(),
            "b921b045-1df0-41c3-af44-4c6f280d3fae"
        );
        assert_eq!(
            ty(Role::Usr, "riscv64").to_string(),
            "beaec34b-8442-439b-a40b-984381ed097d"
        );
        // Per-arch GUIDs do not match other architectures; arch-free ones match all.
        assert_eq!(role_for(&g(X86_64_ROOT), "arm64"), None);
        let generic = g("0fc63daf-8483-4772-8e79-3d69d8477de4");
        assert_eq!(role_for(&generic, "arm64"), Some(Role::LinuxGeneric));
        assert_eq!(role_for(&Guid::NIL, "x86-64"), None);
        assert_eq!(Role::UsrVeritySig.to_string(), "usr-verity-sig");
    }
}
