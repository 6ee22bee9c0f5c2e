//! systemd image policies (`systemd.image-policy(7)`): which partitions of a disk image may
//! be used, and with what protection. A pure reimplementation of systemd's
//! `src/shared/image-policy.c` (parser, canonical printer, lookups, the built-in policies)
//! plus sysext's per-image choice (`pick_image_policy` in `sysext.c`).
//!
//! Syntax: `designator=flag+flag:designator=…:=default`, or one of the symbolic policies
//! `*` (everything allowed), `-`/empty (everything ignored), `~` (everything must be
//! absent). Flags missing from a group mean "don't care" (all of that group).

use std::fmt;

use bitflags::bitflags;

/// Longest token quoted back in an error message, so a hostile policy string cannot make
/// the error itself huge.
const MAX_TOKEN_IN_ERROR: usize = 64;

/// A partition kind of the Discoverable Partitions Specification, architecture-agnostic,
/// as systemd names it in policies. The order is systemd's `PartitionDesignator` enum
/// order, which is the order the canonical policy string lists rules in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PartitionDesignator {
    /// `root`: the root file system (for extensions: the whole extension tree).
    Root,
    /// `usr`: a `/usr/` partition.
    Usr,
    /// `home`: `/home/`.
    Home,
    /// `srv`: `/srv/`.
    Srv,
    /// `esp`: the EFI system partition.
    Esp,
    /// `xbootldr`: the extended boot loader partition.
    Xbootldr,
    /// `swap`: swap space.
    Swap,
    /// `root-verity`: the dm-verity hash tree of `root`.
    RootVerity,
    /// `usr-verity`: the dm-verity hash tree of `usr`.
    UsrVerity,
    /// `root-verity-sig`: the signed root hash of `root`.
    RootVeritySig,
    /// `usr-verity-sig`: the signed root hash of `usr`.
    UsrVeritySig,
    /// `tmp`: `/var/tmp/`.
    Tmp,
    /// `var`: `/var/`.
    Var,
}

impl PartitionDesignator {
    /// Every designator, in systemd's enum order (canonical print order).
    pub const ALL: [PartitionDesignator; 13] = [
        Self::Root,
        Self::Usr,
        Self::Home,
        Self::Srv,
        Self::Esp,
        Self::Xbootldr,
        Self::Swap,
        Self::RootVerity,
        Self::UsrVerity,
        Self::RootVeritySig,
        Self::UsrVeritySig,
        Self::Tmp,
        Self::Var,
    ];

    /// The name used in policy strings and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Root => "root",
            Self::Usr => "usr",
            Self::Home => "home",
            Self::Srv => "srv",
            Self::Esp => "esp",
            Self::Xbootldr => "xbootldr",
            Self::Swap => "swap",
            Self::RootVerity => "root-verity",
            Self::UsrVerity => "usr-verity",
            Self::RootVeritySig => "root-verity-sig",
            Self::UsrVeritySig => "usr-verity-sig",
            Self::Tmp => "tmp",
            Self::Var => "var",
        }
    }

    /// Looks a designator up by its policy name (exact, case-sensitive, like systemd).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == name)
    }

    /// The hash-tree partition protecting this data partition (`partition_verity_of`).
    pub fn verity(self) -> Option<Self> {
        match self {
            Self::Root => Some(Self::RootVerity),
            Self::Usr => Some(Self::UsrVerity),
            _ => None,
        }
    }

    /// The signature partition of this data partition (`partition_verity_sig_of`).
    pub fn verity_sig(self) -> Option<Self> {
        match self {
            Self::Root => Some(Self::RootVeritySig),
            Self::Usr => Some(Self::UsrVeritySig),
            _ => None,
        }
    }

    /// For a hash-tree partition, the data partition it protects (`partition_verity_to_data`).
    pub fn verity_data(self) -> Option<Self> {
        match self {
            Self::RootVerity => Some(Self::Root),
            Self::UsrVerity => Some(Self::Usr),
            _ => None,
        }
    }

    /// For a signature partition, the data partition it signs (`partition_verity_sig_to_data`).
    pub fn verity_sig_data(self) -> Option<Self> {
        match self {
            Self::RootVeritySig => Some(Self::Root),
            Self::UsrVeritySig => Some(Self::Usr),
            _ => None,
        }
    }
}

impl fmt::Display for PartitionDesignator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

bitflags! {
    /// systemd's `PartitionPolicyFlags`: three independent groups (use/protection, the GPT
    /// read-only flag, the GPT growfs flag) plus allowed file system types. A group with no
    /// bit set means "any" (see [`PolicyFlags::extended`]).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct PolicyFlags: u32 {
        /// Must exist, used with dm-verity (root/usr only).
        const VERITY = 1 << 0;
        /// Must exist, used with dm-verity and a signed root hash (root/usr only).
        const SIGNED = 1 << 1;
        /// Must exist, LUKS-encrypted.
        const ENCRYPTED = 1 << 2;
        /// Must exist, LUKS-encrypted with integrity (systemd v259+ flag).
        const ENCRYPTED_WITH_INTEGRITY = 1 << 3;
        /// Must exist, used without verity or encryption.
        const UNPROTECTED = 1 << 4;
        /// May exist but is not used.
        const UNUSED = 1 << 5;
        /// Must not exist.
        const ABSENT = 1 << 6;
        /// GPT read-only flag must be off.
        const READ_ONLY_OFF = 1 << 7;
        /// GPT read-only flag must be on.
        const READ_ONLY_ON = 1 << 8;
        /// GPT growfs flag must be off.
        const GROWFS_OFF = 1 << 9;
        /// GPT growfs flag must be on.
        const GROWFS_ON = 1 << 10;
        /// File system may be btrfs.
        const BTRFS = 1 << 11;
        /// File system may be erofs.
        const EROFS = 1 << 12;
        /// File system may be ext4.
        const EXT4 = 1 << 13;
        /// File system may be f2fs.
        const F2FS = 1 << 14;
        /// File system may be squashfs.
        const SQUASHFS = 1 << 15;
        /// File system may be vfat.
        const VFAT = 1 << 16;
        /// File system may be xfs.
        const XFS = 1 << 17;

        /// Shortcut `open`: every use/protection flag.
        const OPEN = Self::VERITY.bits() | Self::SIGNED.bits() | Self::ENCRYPTED.bits()
            | Self::ENCRYPTED_WITH_INTEGRITY.bits() | Self::UNPROTECTED.bits()
            | Self::UNUSED.bits() | Self::ABSENT.bits();
        /// Shortcut `ignore`: may exist (then unused) or be absent.
        const IGNORE = Self::UNUSED.bits() | Self::ABSENT.bits();
        /// The use/protection group.
        const USE_MASK = Self::OPEN.bits();
        /// The GPT read-only group.
        const READ_ONLY_MASK = Self::READ_ONLY_OFF.bits() | Self::READ_ONLY_ON.bits();
        /// The GPT growfs group.
        const GROWFS_MASK = Self::GROWFS_OFF.bits() | Self::GROWFS_ON.bits();
        /// Both GPT flag groups.
        const PFLAGS_MASK = Self::READ_ONLY_MASK.bits() | Self::GROWFS_MASK.bits();
        /// The file system type group.
        const FSTYPE_MASK = Self::BTRFS.bits() | Self::EROFS.bits() | Self::EXT4.bits()
            | Self::F2FS.bits() | Self::SQUASHFS.bits() | Self::VFAT.bits() | Self::XFS.bits();
    }
}

/// Flag words as parsed (`policy_flag_from_string_one`), shortcuts included.
const FLAG_WORDS: [(&str, PolicyFlags); 20] = [
    ("verity", PolicyFlags::VERITY),
    ("signed", PolicyFlags::SIGNED),
    ("encrypted", PolicyFlags::ENCRYPTED),
    (
        "encryptedwithintegrity",
        PolicyFlags::ENCRYPTED_WITH_INTEGRITY,
    ),
    ("unprotected", PolicyFlags::UNPROTECTED),
    ("unused", PolicyFlags::UNUSED),
    ("absent", PolicyFlags::ABSENT),
    ("open", PolicyFlags::OPEN),
    ("ignore", PolicyFlags::IGNORE),
    ("read-only-on", PolicyFlags::READ_ONLY_ON),
    ("read-only-off", PolicyFlags::READ_ONLY_OFF),
    ("growfs-on", PolicyFlags::GROWFS_ON),
    ("growfs-off", PolicyFlags::GROWFS_OFF),
    ("btrfs", PolicyFlags::BTRFS),
    ("erofs", PolicyFlags::EROFS),
    ("ext4", PolicyFlags::EXT4),
    ("f2fs", PolicyFlags::F2FS),
    ("squashfs", PolicyFlags::SQUASHFS),
    ("vfat", PolicyFlags::VFAT),
    ("xfs", PolicyFlags::XFS),
];

/// Use/protection words in print order.
const USE_WORDS: [(&str, PolicyFlags); 7] = [
    ("verity", PolicyFlags::VERITY),
    ("signed", PolicyFlags::SIGNED),
    ("encrypted", PolicyFlags::ENCRYPTED),
    (
        "encryptedwithintegrity",
        PolicyFlags::ENCRYPTED_WITH_INTEGRITY,
    ),
    ("unprotected", PolicyFlags::UNPROTECTED),
    ("unused", PolicyFlags::UNUSED),
    ("absent", PolicyFlags::ABSENT),
];

/// File system words in print order.
const FSTYPE_WORDS: [(&str, PolicyFlags); 7] = [
    ("btrfs", PolicyFlags::BTRFS),
    ("erofs", PolicyFlags::EROFS),
    ("ext4", PolicyFlags::EXT4),
    ("f2fs", PolicyFlags::F2FS),
    ("squashfs", PolicyFlags::SQUASHFS),
    ("vfat", PolicyFlags::VFAT),
    ("xfs", PolicyFlags::XFS),
];

impl PolicyFlags {
    /// Fills each group left empty with all of its options (`partition_policy_flags_extend`):
    /// an unspecified group means "don't care".
    pub fn extended(self) -> Self {
        let mut f = self;
        if !f.intersects(Self::USE_MASK) {
            f |= Self::OPEN;
        }
        if !f.intersects(Self::READ_ONLY_MASK) {
            f |= Self::READ_ONLY_MASK;
        }
        if !f.intersects(Self::GROWFS_MASK) {
            f |= Self::GROWFS_MASK;
        }
        f
    }

    /// The reverse of [`extended`](Self::extended) (`partition_policy_flags_reduce`): drops groups
    /// that allow everything, to shorten printed policies.
    pub fn reduced(self) -> Self {
        let mut f = self;
        for mask in [Self::USE_MASK, Self::READ_ONLY_MASK, Self::GROWFS_MASK] {
            if f.contains(mask) {
                f.remove(mask);
            }
        }
        f
    }

    /// Parses a `+`-separated flag list (`partition_policy_flags_from_string`); empty or `-`
    /// is no flag at all. `graceful` skips unknown words instead of failing.
    pub fn parse(s: &str, graceful: bool) -> Result<Self, PolicyError> {
        let s = strip(s);
        if s.is_empty() || s == "-" {
            return Ok(Self::empty());
        }
        let mut flags = Self::empty();
        for word in split_escaped(s, '+')? {
            let word = strip(&word);
            match FLAG_WORDS.iter().find(|(name, _)| *name == word) {
                Some((_, f)) => flags |= *f,
                None if graceful => {}
                None => return Err(PolicyError::UnknownFlag(token(word))),
            }
        }
        Ok(flags)
    }

    /// systemd's `partition_policy_flags_to_string`: `simplify` spells full groups as the
    /// `open`/`ignore` shortcuts and leaves out GPT flag groups that allow both states.
    pub fn to_policy_string(self, simplify: bool) -> String {
        let mut words: Vec<&str> = Vec::new();
        let use_flags = self & Self::USE_MASK;
        if simplify && use_flags == Self::OPEN {
            words.push("open");
        } else if simplify && use_flags == Self::IGNORE {
            words.push("ignore");
        } else {
            words.extend(
                USE_WORDS
                    .iter()
                    .filter(|(_, f)| self.contains(*f))
                    .map(|(n, _)| *n),
            );
        }
        let on = self.contains(Self::READ_ONLY_ON);
        let off = self.contains(Self::READ_ONLY_OFF);
        if !simplify || on != off {
            if on {
                words.push("read-only-on");
            }
            if off {
                words.push("read-only-off");
            }
        }
        let on = self.contains(Self::GROWFS_ON);
        let off = self.contains(Self::GROWFS_OFF);
        if !simplify || on != off {
            if off {
                words.push("growfs-off");
            }
            if on {
                words.push("growfs-on");
            }
        }
        words.extend(
            FSTYPE_WORDS
                .iter()
                .filter(|(_, f)| self.contains(*f))
                .map(|(n, _)| *n),
        );
        if words.is_empty() {
            "-".to_string()
        } else {
            words.join("+")
        }
    }

    /// The flags as they apply to partition `d` (`partition_policy_normalized_flags`):
    /// groups filled in, protection bits masked where they make no sense (verity for
    /// partitions without a hash tree, any protection for hash/signature partitions), GPT
    /// flags dropped when the partition must be absent.
    pub fn normalized_for(self, d: PartitionDesignator) -> Self {
        let mut f = self.extended();
        if d.verity_data().is_some() || d.verity_sig_data().is_some() {
            f.remove(
                Self::VERITY | Self::SIGNED | Self::ENCRYPTED | Self::ENCRYPTED_WITH_INTEGRITY,
            );
        }
        if d.verity().is_none() {
            f.remove(Self::VERITY | Self::SIGNED);
        }
        if f & Self::USE_MASK == Self::ABSENT {
            f.remove(Self::PFLAGS_MASK);
        }
        f
    }
}

/// What an image offers (or was found to be) for one partition, as handed to
/// [`ImagePolicy::check`]. Stronger protection implies the weaker ones are available too
/// (see [`ImagePolicy::resolve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protection {
    /// The image has no such partition.
    Absent,
    /// The partition exists but will not be used.
    Unused,
    /// Plain partition: no verity (and no encryption: extmerge opens no LUKS).
    Unprotected,
    /// Data partition with a dm-verity hash tree, root hash not signed.
    Verity,
    /// Data partition with a hash tree and a signed root hash.
    Signed,
}

impl Protection {
    /// The policy flag this finding must be allowed by.
    pub fn flag(self) -> PolicyFlags {
        match self {
            Self::Absent => PolicyFlags::ABSENT,
            Self::Unused => PolicyFlags::UNUSED,
            Self::Unprotected => PolicyFlags::UNPROTECTED,
            Self::Verity => PolicyFlags::VERITY,
            Self::Signed => PolicyFlags::SIGNED,
        }
    }
}

/// Why a policy string was refused, or why a policy refuses a partition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A backslash ended a policy token (nothing left to escape).
    #[error("trailing backslash in image policy token {0:?}")]
    TrailingBackslash(String),
    /// A rule without `=`.
    #[error("missing '=' in image policy rule {0:?}")]
    MissingEquals(String),
    /// A designator systemd does not know.
    #[error("unknown partition designator {0:?} in image policy")]
    UnknownDesignator(String),
    /// Two rules for one designator.
    #[error("partition designator {0} given more than once in image policy")]
    DuplicateDesignator(PartitionDesignator),
    /// Two rules with an empty designator (two defaults).
    #[error("default partition policy (empty designator) given more than once in image policy")]
    DuplicateDefault,
    /// A flag word systemd does not know.
    #[error("unknown partition policy flag {0:?} in image policy")]
    UnknownFlag(String),
    /// The partition exists but the policy allows only its absence.
    #[error("policy forbids any {0} partition, but the image has one (allowed: absent)")]
    MustBeAbsent(PartitionDesignator),
    /// What was found for the partition is not among the allowed protections.
    #[error("{}", forbidden_message(*.designator, *.found, *.allowed))]
    Forbidden {
        /// The partition checked.
        designator: PartitionDesignator,
        /// What the image has.
        found: Protection,
        /// The use/protection flags the policy allows for it.
        allowed: PolicyFlags,
    },
}

fn forbidden_message(d: PartitionDesignator, found: Protection, allowed: PolicyFlags) -> String {
    let allowed_s = (allowed & PolicyFlags::USE_MASK).to_policy_string(true);
    let what = match found {
        Protection::Absent => format!("policy requires a {d} partition, but the image has none"),
        Protection::Unused => format!("policy forbids leaving the {d} partition unused"),
        Protection::Unprotected
            if allowed.intersects(PolicyFlags::VERITY | PolicyFlags::SIGNED) =>
        {
            format!("policy forbids {d} partition without verity")
        }
        Protection::Unprotected => format!("policy forbids unprotected {d} partition"),
        Protection::Verity if allowed.contains(PolicyFlags::SIGNED) => {
            format!("policy forbids {d} partition without signature")
        }
        Protection::Verity => format!("policy forbids {d} partition with verity"),
        Protection::Signed => format!("policy forbids signed {d} partition"),
    };
    format!("{what} (allowed: {allowed_s})")
}

/// A parsed image policy: per-designator rules plus the default for unlisted designators.
/// Lookups take the first rule for a designator; [`parse`](Self::parse) never produces two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePolicy {
    /// Flags for designators without a rule (systemd's `default_flags`).
    pub default: PolicyFlags,
    /// Rules as written, sorted by designator after parsing.
    pub per: Vec<(PartitionDesignator, PolicyFlags)>,
}

/// The protection allowed by systemd's class default policies for root and usr.
const CLASS_DEFAULT: PolicyFlags = PolicyFlags::VERITY
    .union(PolicyFlags::SIGNED)
    .union(PolicyFlags::ENCRYPTED)
    .union(PolicyFlags::UNPROTECTED)
    .union(PolicyFlags::ABSENT);

/// The protection allowed by the strict (signed) policies for root and usr.
const STRICT: PolicyFlags = PolicyFlags::SIGNED.union(PolicyFlags::ABSENT);

impl ImagePolicy {
    /// `*`: everything may be used in any way (`image_policy_allow`).
    pub fn allow() -> Self {
        Self {
            default: PolicyFlags::OPEN,
            per: Vec::new(),
        }
    }

    /// `~`: every partition must be absent (`image_policy_deny`); used for untrusted
    /// `/.extra/` images outside the sysext/confext directories.
    pub fn deny() -> Self {
        Self {
            default: PolicyFlags::ABSENT,
            per: Vec::new(),
        }
    }

    /// `-`: partitions may exist but are not used (`image_policy_ignore`).
    pub fn ignore() -> Self {
        Self {
            default: PolicyFlags::IGNORE,
            per: Vec::new(),
        }
    }

    /// systemd-sysext's default (`image_policy_sysext`): root and usr with any protection
    /// or absent, everything else ignored.
    pub fn sysext() -> Self {
        Self {
            default: PolicyFlags::IGNORE,
            per: vec![
                (PartitionDesignator::Root, CLASS_DEFAULT),
                (PartitionDesignator::Usr, CLASS_DEFAULT),
            ],
        }
    }

    /// `image_policy_sysext_strict`, for images systemd-stub placed in the initrd: root and
    /// usr signed or absent.
    pub fn sysext_strict() -> Self {
        Self {
            default: PolicyFlags::IGNORE,
            per: vec![
                (PartitionDesignator::Root, STRICT),
                (PartitionDesignator::Usr, STRICT),
            ],
        }
    }

    /// systemd-confext's default (`image_policy_confext`): only root matters.
    pub fn confext() -> Self {
        Self {
            default: PolicyFlags::IGNORE,
            per: vec![(PartitionDesignator::Root, CLASS_DEFAULT)],
        }
    }

    /// `image_policy_confext_strict`: root signed or absent.
    pub fn confext_strict() -> Self {
        Self {
            default: PolicyFlags::IGNORE,
            per: vec![(PartitionDesignator::Root, STRICT)],
        }
    }

    /// Parses a policy like `image_policy_from_string(s, graceful=false)`, as
    /// `--image-policy=` does: unknown designators and flags are errors.
    pub fn parse(s: &str) -> Result<Self, PolicyError> {
        Self::parse_full(s, false)
    }

    /// Parses like `config_parse_image_policy` (configuration files, v260+ `ImagePolicy=`):
    /// unknown designators and flags are skipped; duplicates are still errors.
    pub fn parse_graceful(s: &str) -> Result<Self, PolicyError> {
        Self::parse_full(s, true)
    }

    fn parse_full(s: &str, graceful: bool) -> Result<Self, PolicyError> {
        // Symbolic policies are matched on the raw string, before any stripping.
        match s {
            "" | "-" => return Ok(Self::ignore()),
            "*" => return Ok(Self::allow()),
            "~" => return Ok(Self::deny()),
            _ => {}
        }
        let mut policy = Self::ignore();
        let mut default_seen = false;
        for rule in split_escaped(s, ':')? {
            let (designator, flags) = match split_first_escaped(&rule, '=')? {
                (d, Some(f)) => (d, f),
                (_, None) => return Err(PolicyError::MissingEquals(token(&rule))),
            };
            let designator = strip(&designator);
            let target = if designator.is_empty() {
                if default_seen {
                    return Err(PolicyError::DuplicateDefault);
                }
                default_seen = true;
                None
            } else {
                match PartitionDesignator::from_name(designator) {
                    Some(d) if policy.per.iter().any(|(x, _)| *x == d) => {
                        return Err(PolicyError::DuplicateDesignator(d))
                    }
                    Some(d) => Some(d),
                    None if graceful => continue,
                    None => return Err(PolicyError::UnknownDesignator(token(designator))),
                }
            };
            let flags = PolicyFlags::parse(flags, graceful)?;
            match target {
                None => policy.default = flags,
                Some(d) => policy.per.push((d, flags)),
            }
        }
        policy.per.sort_by_key(|(d, _)| *d);
        Ok(policy)
    }

    fn rule(&self, d: PartitionDesignator) -> Option<PolicyFlags> {
        self.per.iter().find(|(x, _)| *x == d).map(|(_, f)| *f)
    }

    /// The explicit or derived flags for `d` (`image_policy_get`): a hash or signature
    /// partition without its own rule inherits from its data partition (when that allows
    /// verity resp. signatures); `None` when the default applies.
    pub fn get(&self, d: PartitionDesignator) -> Option<PolicyFlags> {
        if let Some(f) = self.rule(d) {
            return Some(f.normalized_for(d));
        }
        let (data, needed) = if let Some(data) = d.verity_data() {
            (data, PolicyFlags::VERITY | PolicyFlags::SIGNED)
        } else if let Some(data) = d.verity_sig_data() {
            (data, PolicyFlags::SIGNED)
        } else {
            return None;
        };
        let data_flags = self.get(data)?;
        if !data_flags.intersects(needed) {
            return None;
        }
        let derived = PolicyFlags::UNPROTECTED
            | (data_flags & (PolicyFlags::UNUSED | PolicyFlags::ABSENT))
            | (data_flags & PolicyFlags::PFLAGS_MASK);
        Some(derived.normalized_for(d))
    }

    /// The effective flags for `d` (`image_policy_get_exhaustively`): [`get`](Self::get),
    /// else the default normalized for `d`.
    pub fn flags_for(&self, d: PartitionDesignator) -> PolicyFlags {
        self.get(d)
            .unwrap_or_else(|| self.default.normalized_for(d))
    }

    /// For a partition the image has (`image_policy_may_use`): `Ok(true)` to use it,
    /// `Ok(false)` to ignore it, an error when the policy wants it absent.
    pub fn may_use(&self, d: PartitionDesignator) -> Result<bool, PolicyError> {
        let f = self.flags_for(d) & PolicyFlags::USE_MASK;
        if f == PolicyFlags::ABSENT {
            return Err(PolicyError::MustBeAbsent(d));
        }
        Ok(f - PolicyFlags::ABSENT != PolicyFlags::UNUSED)
    }

    /// Checks what was found for `d` against the policy (`image_policy_check_protection`).
    /// The caller decides `found`; see [`resolve`](Self::resolve) for systemd's rules on
    /// dropping hash/signature partitions the policy ignores.
    pub fn check(&self, d: PartitionDesignator, found: Protection) -> Result<(), PolicyError> {
        let allowed = self.flags_for(d);
        if allowed.contains(found.flag()) {
            Ok(())
        } else {
            Err(PolicyError::Forbidden {
                designator: d,
                found,
                allowed: allowed & PolicyFlags::USE_MASK,
            })
        }
    }

    /// Decides how data partition `d` will be used when the image offers `available`
    /// (a signature implies verity, verity implies the plain partition), following
    /// dissect-image: a signature or hash partition the policy ignores is dropped (the
    /// protection falls back a level), one it wants absent is an error, an ignored data
    /// partition becomes [`Protection::Unused`]; the result is then [`check`](Self::check)ed.
    pub fn resolve(
        &self,
        d: PartitionDesignator,
        available: Protection,
    ) -> Result<Protection, PolicyError> {
        let mut level = available;
        if level == Protection::Signed {
            match d.verity_sig() {
                Some(sig) if self.may_use(sig)? => {}
                _ => level = Protection::Verity,
            }
        }
        if level == Protection::Verity {
            match d.verity() {
                Some(hash) if self.may_use(hash)? => {}
                _ => level = Protection::Unprotected,
            }
        }
        if level >= Protection::Unused && !self.may_use(d)? {
            level = Protection::Unused;
        }
        self.check(d, level)?;
        Ok(level)
    }

    fn all_match(&self, expected: PolicyFlags) -> bool {
        self.default.extended() == expected.extended()
            && PartitionDesignator::ALL
                .into_iter()
                .all(|d| self.flags_for(d) == expected.normalized_for(d))
    }

    /// Whether two policies decide every partition the same way (`image_policy_equivalent`),
    /// even if written differently.
    pub fn equivalent(&self, other: &ImagePolicy) -> bool {
        self.default.extended() == other.default.extended()
            && PartitionDesignator::ALL
                .into_iter()
                .all(|d| self.flags_for(d) == other.flags_for(d))
    }

    /// `image_policy_to_string`: with `simplify`, the shortest form systemd prints (symbolic
    /// policies, rules equal to the default dropped, shortcut words); without, every rule and
    /// the default spelled out, so that `parse` gives back an equal policy.
    pub fn to_policy_string(&self, simplify: bool) -> String {
        if simplify {
            if self.all_match(PolicyFlags::OPEN) {
                return "*".to_string();
            }
            if self.all_match(PolicyFlags::IGNORE) {
                return "-".to_string();
            }
            if self.all_match(PolicyFlags::ABSENT) {
                return "~".to_string();
            }
        }
        let mut parts: Vec<String> = Vec::new();
        for d in PartitionDesignator::ALL {
            let Some(flags) = self.rule(d) else { continue };
            if simplify && self.default.normalized_for(d) == flags.normalized_for(d) {
                continue;
            }
            parts.push(format!("{d}={}", flags.to_policy_string(simplify)));
        }
        if !simplify || self.default.extended() != PolicyFlags::IGNORE.extended() {
            parts.push(format!("={}", self.default.to_policy_string(simplify)));
        }
        if parts.is_empty() {
            "-".to_string()
        } else {
            parts.join(":")
        }
    }

    /// The long form: [`to_policy_string(false)`](Self::to_policy_string).
    pub fn to_long_string(&self) -> String {
        self.to_policy_string(false)
    }
}

/// Prints systemd's simplified canonical form (what systemd shows users), a fixed point:
/// printing the parsed form again gives the same string. Like systemd's, it drops rules
/// equal to the default, so for `*-verity`/`*-verity-sig` rules the re-parsed policy can
/// be weaker; [`to_long_string`](ImagePolicy::to_long_string) round-trips exactly.
impl fmt::Display for ImagePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_policy_string(true))
    }
}

/// Picks the policy for one image like sysext's `pick_image_policy`: an explicit policy
/// (`--image-policy=`, v260+ also `ImagePolicy=` in sysext.conf) wins; in the initrd without
/// `--root` (`in_initrd_no_root`), images under `/.extra/sysext/` or `/.extra/global_sysext/`
/// get [`sysext_strict`](ImagePolicy::sysext_strict), under `/.extra/confext/` or
/// `/.extra/global_confext/` [`confext_strict`](ImagePolicy::confext_strict), anywhere else
/// under `/.extra/` [`deny`](ImagePolicy::deny) (placed there by systemd-stub from an
/// untrusted ESP); otherwise the image class's default. The path decides, not the class.
pub fn pick_for_image(
    class_is_sysext: bool,
    path_in_initrd: &str,
    in_initrd_no_root: bool,
    explicit: Option<&ImagePolicy>,
) -> ImagePolicy {
    if let Some(p) = explicit {
        return p.clone();
    }
    if in_initrd_no_root {
        let under = |prefix| path_starts_with(path_in_initrd, prefix);
        if under("/.extra/sysext/") || under("/.extra/global_sysext/") {
            return ImagePolicy::sysext_strict();
        }
        if under("/.extra/confext/") || under("/.extra/global_confext/") {
            return ImagePolicy::confext_strict();
        }
        if under("/.extra/") {
            return ImagePolicy::deny();
        }
    }
    if class_is_sysext {
        ImagePolicy::sysext()
    } else {
        ImagePolicy::confext()
    }
}

/// systemd's `path_startswith` as a predicate: component-wise, ignoring repeated slashes
/// and `.` components; both absolute or both relative.
fn path_starts_with(path: &str, prefix: &str) -> bool {
    if path.starts_with('/') != prefix.starts_with('/') {
        return false;
    }
    let mut p = path.split('/').filter(|c| !c.is_empty() && *c != ".");
    prefix
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .all(|c| p.next() == Some(c))
}

/// systemd's `strstrip`: trims the C `WHITESPACE` set.
fn strip(s: &str) -> &str {
    s.trim_matches([' ', '\t', '\n', '\r'])
}

/// A token for an error message, cut to a bounded length.
fn token(s: &str) -> String {
    if s.len() <= MAX_TOKEN_IN_ERROR {
        return s.to_string();
    }
    let mut end = MAX_TOKEN_IN_ERROR;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// `extract_first_word(…, sep, EXTRACT_DONT_COALESCE_SEPARATORS)` applied until the end:
/// plain split on `sep` keeping empty fields, a backslash taking the next character
/// literally, a trailing backslash being an error.
fn split_escaped(s: &str, sep: char) -> Result<Vec<String>, PolicyError> {
    let mut out = Vec::new();
    let mut rest = Some(s);
    while let Some(r) = rest {
        let (word, next) = split_first_escaped(r, sep)?;
        out.push(word);
        rest = next;
    }
    Ok(out)
}

/// One `extract_first_word` call: the unescaped first field and the raw remainder after
/// the separator (`None` when the string ended without one).
fn split_first_escaped(s: &str, sep: char) -> Result<(String, Option<&str>), PolicyError> {
    let mut word = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some((_, e)) => word.push(e),
                None => return Err(PolicyError::TrailingBackslash(token(s))),
            }
        } else if c == sep {
            return Ok((word, Some(&s[i + c.len_utf8()..])));
        } else {
            word.push(c);
        }
    }
    Ok((word, None))
}

#[cfg(test)]
mod tests {
    use super::PartitionDesignator as D;
    use super::*;

    const CLASS: &str = "verity+signed+encrypted+unprotected+absent";

    #[test]
    fn designator_names_round_trip() {
        for d in D::ALL {
            assert_eq!(D::from_name(d.as_str()), Some(d));
        }
        assert_eq!(D::from_name("Root"), None);
        assert_eq!(D::from_name("root-secondary"), None);
        assert_eq!(D::from_name(""), None);
    }

    #[test]
    fn builtins_print_like_systemd() {
        let sysext_s = format!("root={CLASS}:usr={CLASS}");
        for (policy, simple, long) in [
            (ImagePolicy::allow(), "*".to_string(), "=open".to_string()),
            (ImagePolicy::deny(), "~".into(), "=absent".into()),
            (ImagePolicy::ignore(), "-".into(), "=unused+absent".into()),
            (
                ImagePolicy::sysext(),
                sysext_s.clone(),
                format!("{sysext_s}:=unused+absent"),
            ),
            (
                ImagePolicy::sysext_strict(),
                "root=signed+absent:usr=signed+absent".into(),
                "root=signed+absent:usr=signed+absent:=unused+absent".into(),
            ),
            (
                ImagePolicy::confext(),
                format!("root={CLASS}"),
                format!("root={CLASS}:=unused+absent"),
            ),
            (
                ImagePolicy::confext_strict(),
                "root=signed+absent".into(),
                "root=signed+absent:=unused+absent".into(),
            ),
        ] {
            assert_eq!(policy.to_string(), simple);
            // The unsimplified open spells every use flag.
            let long = long.replace(
                "=open",
                "=verity+signed+encrypted+encryptedwithintegrity+unprotected+unused+absent",
            );
            assert_eq!(policy.to_long_string(), long);
            assert_eq!(ImagePolicy::parse(&simple).unwrap(), policy, "{simple}");
            assert_eq!(ImagePolicy::parse(&long).unwrap(), policy, "{long}");
        }
    }

    #[test]
    fn parse_table() {
        let p = |per: &[(D, PolicyFlags)], default| ImagePolicy {
            default,
            per: per.to_vec(),
        };
        let f = PolicyFlags::empty;
        for (input, expected) in [
            ("", ImagePolicy::ignore()),
            ("-", ImagePolicy::ignore()),
            ("*", ImagePolicy::allow()),
            ("~", ImagePolicy::deny()),
            ("=", p(&[], f())),
            ("=-", p(&[], f())),
            ("=open", p(&[], PolicyFlags::OPEN)),
            ("root=", p(&[(D::Root, f())], PolicyFlags::IGNORE)),
            (
                "usr=verity+read-only-on:root=encrypted:swap=encrypted",
                p(
                    &[
                        (D::Root, PolicyFlags::ENCRYPTED),
                        (D::Usr, PolicyFlags::VERITY | PolicyFlags::READ_ONLY_ON),
                        (D::Swap, PolicyFlags::ENCRYPTED),
                    ],
                    PolicyFlags::IGNORE,
                ),
            ),
            (
                " root = signed + absent : = ignore ",
                p(&[(D::Root, STRICT)], PolicyFlags::IGNORE),
            ),
            (
                "root=erofs+squashfs+growfs-off",
                p(
                    &[(
                        D::Root,
                        PolicyFlags::EROFS | PolicyFlags::SQUASHFS | PolicyFlags::GROWFS_OFF,
                    )],
                    PolicyFlags::IGNORE,
                ),
            ),
            (
                "ro\\ot=sig\\ned",
                p(&[(D::Root, PolicyFlags::SIGNED)], PolicyFlags::IGNORE),
            ),
            (
                "root-verity-sig=encryptedwithintegrity",
                p(
                    &[(D::RootVeritySig, PolicyFlags::ENCRYPTED_WITH_INTEGRITY)],
                    PolicyFlags::IGNORE,
                ),
            ),
        ] {
            assert_eq!(ImagePolicy::parse(input), Ok(expected), "{input:?}");
        }
    }

    #[test]
    fn parse_errors() {
        use PolicyError as E;
        for (input, expected) in [
            ("root", E::MissingEquals("root".into())),
            (" *", E::MissingEquals(" *".into())),
            ("root=signed:", E::MissingEquals("".into())),
            ("root=signed::usr=signed", E::MissingEquals("".into())),
            ("roots=signed", E::UnknownDesignator("roots".into())),
            ("ROOT=signed", E::UnknownDesignator("ROOT".into())),
            ("root=signed:root=verity", E::DuplicateDesignator(D::Root)),
            ("=ignore:=open", E::DuplicateDefault),
            ("root=sigend", E::UnknownFlag("sigend".into())),
            ("root=signed+", E::UnknownFlag("".into())),
            ("root=verity=signed", E::UnknownFlag("verity=signed".into())),
            (
                "root=signed\\",
                E::TrailingBackslash("root=signed\\".into()),
            ),
            ("=*", E::UnknownFlag("*".into())),
        ] {
            assert_eq!(ImagePolicy::parse(input), Err(expected), "{input:?}");
        }
        let long = format!("{}=open", "x".repeat(1000));
        match ImagePolicy::parse(&long) {
            Err(E::UnknownDesignator(t)) => assert!(t.len() < 80, "{t}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            E::UnknownDesignator("roots".into()).to_string(),
            "unknown partition designator \"roots\" in image policy"
        );
    }

    #[test]
    fn graceful_skips_unknown() {
        let p = ImagePolicy::parse_graceful("roots=signed:root=signed+bogus:=open").unwrap();
        assert_eq!(p.per, vec![(D::Root, PolicyFlags::SIGNED)]);
        assert_eq!(p.default, PolicyFlags::OPEN);
        assert_eq!(
            ImagePolicy::parse_graceful("root=signed:root=verity"),
            Err(PolicyError::DuplicateDesignator(D::Root))
        );
    }

    #[test]
    fn round_trips() {
        for s in [
            "*",
            "-",
            "~",
            "root=signed+absent:usr=signed+absent",
            "root=verity+read-only-on:=unprotected+absent",
            "usr=verity+read-only-on:root=encrypted:swap=encrypted",
            "root=encrypted+read-only-off:srv=encrypted+absent:swap=absent",
            "root=unprotected+encrypted:swap=absent+unused:=unprotected+encrypted+absent",
            "root=read-only-on+read-only-off",
            "root=:=open",
            "home=ext4+xfs+growfs-on:=absent",
            "root-verity=open:usr-verity-sig=ignore:=",
        ] {
            let parsed = ImagePolicy::parse(s).unwrap();
            // Long form: exact structural round trip.
            assert_eq!(
                ImagePolicy::parse(&parsed.to_long_string()).unwrap(),
                parsed
            );
            // Canonical form: equivalent, and a fixed point.
            let canon = parsed.to_string();
            let reparsed = ImagePolicy::parse(&canon).unwrap();
            assert!(reparsed.equivalent(&parsed), "{s} -> {canon}");
            assert_eq!(reparsed.to_string(), canon, "{s}");
            assert_eq!(ImagePolicy::parse(&reparsed.to_string()).unwrap(), reparsed);
        }
    }

    #[test]
    fn canonical_strings() {
        for (input, canon) in [
            ("=open", "*"),
            (
                "=verity+signed+encrypted+encryptedwithintegrity+unprotected+unused+absent",
                "*",
            ),
            ("=", "*"),
            ("=unused+absent", "-"),
            ("=absent", "~"),
            ("root=ignore", "-"),
            ("root=absent:usr=absent:=absent", "~"),
            ("root=read-only-on+read-only-off", "root=-"),
            ("root=verity+read-only-on", "root=verity+read-only-on"),
            ("swap=absent:root=signed", "root=signed:swap=absent"),
            ("root=open:=ignore", "root=open"),
            ("=unprotected", "=unprotected"),
        ] {
            let p = ImagePolicy::parse(input).unwrap();
            assert_eq!(p.to_string(), canon, "{input}");
        }
    }

    #[test]
    fn derived_verity_policies() {
        let strict = ImagePolicy::sysext_strict();
        let derived = PolicyFlags::UNPROTECTED | PolicyFlags::ABSENT | PolicyFlags::PFLAGS_MASK;
        assert_eq!(strict.get(D::RootVerity), Some(derived));
        assert_eq!(strict.get(D::UsrVeritySig), Some(derived));
        assert_eq!(strict.get(D::Home), None);
        let plain = ImagePolicy::parse("root=unprotected").unwrap();
        assert_eq!(plain.get(D::RootVerity), None);
        assert_eq!(plain.may_use(D::RootVerity), Ok(false));
        let verity_only = ImagePolicy::parse("root=verity").unwrap();
        assert!(verity_only.get(D::RootVerity).is_some());
        assert_eq!(verity_only.get(D::RootVeritySig), None);
        // Verity flags make no sense on home: masked off, so the default-derived flags differ.
        assert_eq!(
            ImagePolicy::allow().flags_for(D::Home) & PolicyFlags::USE_MASK,
            PolicyFlags::OPEN - PolicyFlags::VERITY - PolicyFlags::SIGNED
        );
        assert_eq!(
            ImagePolicy::deny().may_use(D::Root),
            Err(PolicyError::MustBeAbsent(D::Root))
        );
        assert_eq!(ImagePolicy::sysext().may_use(D::Home), Ok(false));
        assert_eq!(ImagePolicy::sysext().may_use(D::Usr), Ok(true));
    }

    #[test]
    fn check_verdicts() {
        use Protection as P;
        let sysext = ImagePolicy::sysext();
        let strict = ImagePolicy::sysext_strict();
        let confext = ImagePolicy::confext();
        let deny = ImagePolicy::deny();
        let verity = ImagePolicy::parse("root=verity+signed").unwrap();
        for (policy, d, found, ok) in [
            (&sysext, D::Root, P::Unprotected, true),
            (&sysext, D::Root, P::Verity, true),
            (&sysext, D::Root, P::Signed, true),
            (&sysext, D::Usr, P::Absent, true),
            (&sysext, D::Home, P::Unused, true),
            (&sysext, D::Home, P::Unprotected, false),
            (&strict, D::Root, P::Signed, true),
            (&strict, D::Root, P::Absent, true),
            (&strict, D::Usr, P::Verity, false),
            (&strict, D::Usr, P::Unprotected, false),
            (&confext, D::Usr, P::Unprotected, false),
            (&confext, D::Usr, P::Absent, true),
            (&deny, D::Root, P::Absent, true),
            (&deny, D::Root, P::Signed, false),
            (&verity, D::Root, P::Absent, false),
        ] {
            assert_eq!(policy.check(d, found).is_ok(), ok, "{policy} {d} {found:?}");
        }
        for (policy, d, found, msg) in [
            (
                &strict,
                D::Usr,
                P::Verity,
                "policy forbids usr partition without signature (allowed: signed+absent)",
            ),
            (
                &strict,
                D::Root,
                P::Unprotected,
                "policy forbids root partition without verity (allowed: signed+absent)",
            ),
            (
                &verity,
                D::Root,
                P::Absent,
                "policy requires a root partition, but the image has none (allowed: verity+signed)",
            ),
            (
                &deny,
                D::Root,
                P::Signed,
                "policy forbids signed root partition (allowed: absent)",
            ),
            (
                &sysext,
                D::Home,
                P::Unprotected,
                "policy forbids unprotected home partition (allowed: ignore)",
            ),
        ] {
            assert_eq!(policy.check(d, found).unwrap_err().to_string(), msg);
        }
    }

    #[test]
    fn resolve_follows_dissect() {
        use Protection as P;
        let strict = ImagePolicy::sysext_strict();
        assert_eq!(strict.resolve(D::Root, P::Signed), Ok(P::Signed));
        assert!(strict.resolve(D::Root, P::Verity).is_err());
        // Policy without signatures: signature partition ignored, verity used.
        let verity = ImagePolicy::parse("root=verity").unwrap();
        assert_eq!(verity.resolve(D::Root, P::Signed), Ok(P::Verity));
        // Plain policy: hash and signature partitions ignored.
        let plain = ImagePolicy::parse("root=unprotected").unwrap();
        assert_eq!(plain.resolve(D::Root, P::Signed), Ok(P::Unprotected));
        // ...unless the default wants everything else absent.
        let plain_absent = ImagePolicy::parse("root=unprotected:=absent").unwrap();
        assert_eq!(
            plain_absent.resolve(D::Root, P::Verity),
            Err(PolicyError::MustBeAbsent(D::RootVerity))
        );
        assert_eq!(
            ImagePolicy::sysext().resolve(D::Home, P::Unprotected),
            Ok(P::Unused)
        );
        assert_eq!(
            ImagePolicy::sysext().resolve(D::Usr, P::Absent),
            Ok(P::Absent)
        );
        assert_eq!(
            ImagePolicy::deny().resolve(D::Root, P::Unprotected),
            Err(PolicyError::MustBeAbsent(D::Root))
        );
        assert_eq!(
            ImagePolicy::allow().resolve(D::Root, P::Signed),
            Ok(P::Signed)
        );
    }

    #[test]
    fn picking() {
        let custom = ImagePolicy::parse("root=verity").unwrap();
        for (sysext, path, initrd, explicit, expected) in [
            (
                true,
                "/.extra/sysext/a.raw",
                true,
                None,
                ImagePolicy::sysext_strict(),
            ),
            (
                false,
                "/.extra/sysext/a.raw",
                true,
                None,
                ImagePolicy::sysext_strict(),
            ),
            (
                true,
                "/.extra/global_sysext/a.raw",
                true,
                None,
                ImagePolicy::sysext_strict(),
            ),
            (
                false,
                "/.extra/confext/a.raw",
                true,
                None,
                ImagePolicy::confext_strict(),
            ),
            (
                false,
                "/.extra/global_confext/a.raw",
                true,
                None,
                ImagePolicy::confext_strict(),
            ),
            (
                true,
                "//.extra//./sysext/a.raw",
                true,
                None,
                ImagePolicy::sysext_strict(),
            ),
            (true, "/.extra/other/a.raw", true, None, ImagePolicy::deny()),
            (
                true,
                "/.extra/sysextx/a.raw",
                true,
                None,
                ImagePolicy::deny(),
            ),
            (true, "/.extrafoo/a.raw", true, None, ImagePolicy::sysext()),
            (
                true,
                "/.extra/sysext/a.raw",
                false,
                None,
                ImagePolicy::sysext(),
            ),
            (
                false,
                "/.extra/other/a.raw",
                false,
                None,
                ImagePolicy::confext(),
            ),
            (
                true,
                "/var/lib/extensions/a.raw",
                true,
                None,
                ImagePolicy::sysext(),
            ),
            (
                false,
                "/run/confexts/a.raw",
                true,
                None,
                ImagePolicy::confext(),
            ),
            (
                true,
                "/.extra/sysext/a.raw",
                true,
                Some(&custom),
                custom.clone(),
            ),
            (
                true,
                ".extra/sysext/a.raw",
                true,
                None,
                ImagePolicy::sysext(),
            ),
        ] {
            assert_eq!(
                pick_for_image(sysext, path, initrd, explicit),
                expected,
                "{path} initrd={initrd}"
            );
        }
    }

    #[test]
    fn hostile_strings_never_panic() {
        let alphabet: &[&str] = &[
            "root", "usr", "=", ":", "+", "\\", "-", "*", "~", " ", "signed", "open", "é", "\0",
            "absent", "x",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..crate::testutil::iterations(3000) {
            let mut s = String::new();
            for _ in 0..(state % 12) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                s.push_str(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            if let Ok(p) = ImagePolicy::parse(&s) {
                let long = p.to_long_string();
                assert_eq!(ImagePolicy::parse(&long).unwrap(), p, "{s:?}");
                assert!(ImagePolicy::parse(&p.to_string()).unwrap().equivalent(&p));
            }
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        }
    }
}
