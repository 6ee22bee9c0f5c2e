//! GUID Partition Table parser (UEFI 2.10, chapter 5) and the Discoverable Partitions
//! Specification's partition roles, as systemd's `dissect_image()` picks them for
//! sysext/confext disk images.
//!
//! Everything here works on bytes: [`parse`] takes a read-at accessor and the image size
//! (so a file need not be read whole), [`parse_bytes`] a slice. Every size and offset on
//! disk is bounds-checked and every allocation capped, so hostile images give a
//! [`GptError`] and never a panic. Errors name the reason, not the file: callers add it.
//!
//! This module holds the header and entry parser; `types` the partition-type GUID table
//! ([`Role`], [`PARTITION_TYPES`], [`lookup`]) and `select` the choice of partitions for
//! an architecture ([`select_roles`]), both re-exported here.

use std::fmt;
use std::io;
use std::str::FromStr;

use super::bytes::{self, le_u16, le_u32, le_u64};
use super::text::hex_digit;

mod select;
mod types;

pub use select::{select_roles, Chosen, RoleSet, Selected};
pub use types::{lookup, role_for, type_guid_for, Role, PARTITION_TYPES};

/// Most partition entries accepted: systemd-repart writes 128, nobody needs more than this.
pub const MAX_ENTRIES: u32 = 1024;
/// Largest partition entry array read (count × size), so a header cannot make us allocate much.
pub const MAX_ENTRY_ARRAY_BYTES: u64 = 1 << 20;
/// Largest partition entry size accepted (the spec allows 128 × 2^n; real tables use 128).
pub const MAX_ENTRY_SIZE: u32 = 4096;
/// Logical sector sizes tried, in order, when looking for the header at LBA 1 (as systemd's
/// `probe_sector_size()` does).
pub const SECTOR_SIZES: [u32; 4] = [512, 1024, 2048, 4096];

/// GPT attribute bit 60 (`SD_GPT_FLAG_READ_ONLY`): mount the partition read-only.
pub const ATTR_READ_ONLY: u64 = 1 << 60;
/// GPT attribute bit 59 (`SD_GPT_FLAG_GROWFS`): grow the file system to the partition on mount.
pub const ATTR_GROWFS: u64 = 1 << 59;
/// GPT attribute bit 63 (`SD_GPT_FLAG_NO_AUTO`): never pick this partition automatically.
pub const ATTR_NO_AUTO: u64 = 1 << 63;

const HEADER_SIGNATURE: &[u8; 8] = b"EFI PART";
const MIN_HEADER_SIZE: u32 = 92;
const MIN_ENTRY_SIZE: u32 = 128;
const MBR_SIZE: usize = 512;

/// Why an image's partition table was refused (or a role could not be chosen).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GptError {
    /// The accessor failed (e.g. the file shrank under us).
    #[error("reading the image failed: {}", crate::format::strerror::os_text(.0))]
    Io(#[from] io::Error),
    /// Too short to hold a protective MBR and a GPT header.
    #[error("image too small for a GPT: {size} bytes (truncated?)")]
    TooSmall {
        /// Image size in bytes.
        size: u64,
    },
    /// LBA 0 has no protective MBR: not a GPT disk (or a damaged one).
    #[error("no protective MBR: {why}")]
    NoProtectiveMbr {
        /// What is missing.
        why: &'static str,
    },
    /// No "EFI PART" signature at LBA 1 for any supported sector size.
    #[error("no GPT header (\"EFI PART\" at LBA 1 for sector size 512, 1024, 2048 or 4096)")]
    NoHeader,
    /// Header revision with a major version other than 1.
    #[error("unsupported GPT revision {0:#010x}")]
    Revision(u32),
    /// Header size outside 92..=sector size.
    #[error("bad GPT header size {size} (must be {MIN_HEADER_SIZE}..={max})")]
    HeaderSize {
        /// The header's claim.
        size: u32,
        /// The sector size.
        max: u32,
    },
    /// Header CRC32 does not match its contents.
    #[error("GPT header CRC32 mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    HeaderCrc {
        /// CRC in the header.
        stored: u32,
        /// CRC of the header as read.
        computed: u32,
    },
    /// The primary header does not say it lives at LBA 1.
    #[error("GPT header's own LBA is {0}, expected 1")]
    MyLba(u64),
    /// First/last usable LBAs are inconsistent.
    #[error("bad GPT usable LBA range {first}..={last}: {why}")]
    UsableRange {
        /// First usable LBA.
        first: u64,
        /// Last usable LBA.
        last: u64,
        /// What is wrong.
        why: &'static str,
    },
    /// The usable area claims more sectors than the image has.
    #[error(
        "GPT last usable LBA {last} lies beyond the end of the image ({sectors} sectors): truncated image?"
    )]
    UsableBeyondEof {
        /// Last usable LBA.
        last: u64,
        /// Whole sectors in the image.
        sectors: u64,
    },
    /// Partition entry size not 128 × 2^n or above [`MAX_ENTRY_SIZE`].
    #[error("bad GPT partition entry size {0} (must be 128 × 2^n, at most {MAX_ENTRY_SIZE})")]
    EntrySize(u32),
    /// More partition entries than [`MAX_ENTRIES`].
    #[error("too many GPT partition entries: {0} (at most {MAX_ENTRIES})")]
    EntryCount(u32),
    /// Entry array larger than [`MAX_ENTRY_ARRAY_BYTES`].
    #[error(
        "GPT partition entry array too large: {count} × {size} bytes (at most {MAX_ENTRY_ARRAY_BYTES})"
    )]
    EntryArrayTooLarge {
        /// Entry count.
        count: u32,
        /// Entry size.
        size: u32,
    },
    /// Entry array placed over the header, the usable area, or past the end of the image.
    #[error("GPT partition entry array at LBA {lba} is misplaced: {why}")]
    EntryArrayLocation {
        /// Starting LBA of the array.
        lba: u64,
        /// What is wrong.
        why: &'static str,
    },
    /// Entry array CRC32 does not match.
    #[error(
        "GPT partition entry array CRC32 mismatch (stored {stored:#010x}, computed {computed:#010x})"
    )]
    EntryArrayCrc {
        /// CRC in the header.
        stored: u32,
        /// CRC of the array as read.
        computed: u32,
    },
    /// A partition whose last LBA is before its first.
    #[error("partition {index}: first LBA {first} is after last LBA {last}")]
    PartitionInverted {
        /// 1-based entry index.
        index: u32,
        /// First LBA.
        first: u64,
        /// Last LBA.
        last: u64,
    },
    /// A partition outside the header's usable LBA range.
    #[error(
        "partition {index}: LBAs {first}..={last} lie outside the usable range {usable_first}..={usable_last}"
    )]
    PartitionOutsideUsable {
        /// 1-based entry index.
        index: u32,
        /// First LBA.
        first: u64,
        /// Last LBA.
        last: u64,
        /// Header's first usable LBA.
        usable_first: u64,
        /// Header's last usable LBA.
        usable_last: u64,
    },
    /// A partition that ends past the end of the image.
    #[error(
        "partition {index} ends at byte {end} beyond the end of the image ({size} bytes): truncated image?"
    )]
    PartitionBeyondEof {
        /// 1-based entry index.
        index: u32,
        /// End offset (exclusive) in bytes, saturated.
        end: u64,
        /// Image size in bytes.
        size: u64,
    },
    /// Two partitions share sectors.
    #[error("partitions {a} and {b} overlap")]
    Overlap {
        /// 1-based index of the partition starting first.
        a: u32,
        /// 1-based index of the other.
        b: u32,
    },
    /// Several partitions would fill one role (systemd would pick by label version; we refuse).
    #[error("several {role} partitions for architecture {arch}: {indexes}")]
    Ambiguous {
        /// The role.
        role: Role,
        /// The architecture they are for ("any" for generic Linux partitions).
        arch: String,
        /// Their 1-based indexes, comma separated.
        indexes: String,
    },
    /// A verity (or signature) partition whose partner partition is missing.
    #[error("{role} partition {index} has no matching {needed} partition")]
    MissingPartner {
        /// The role of the partition found.
        role: Role,
        /// Its 1-based index.
        index: u32,
        /// The role that should be there too.
        needed: Role,
    },
    /// Root and /usr partitions for different architectures.
    #[error("root partition {root} is for {root_arch} but /usr partition {usr} is for {usr_arch}")]
    ArchMismatch {
        /// Root partition index.
        root: u32,
        /// Its architecture.
        root_arch: &'static str,
        /// /usr partition index.
        usr: u32,
        /// Its architecture.
        usr_arch: &'static str,
    },
    /// A combination systemd refuses (e.g. verity for both root and /usr).
    #[error("unsupported partition layout: {0}")]
    Layout(&'static str),
    /// Nothing to mount.
    #[error(
        "no root or /usr partition for architecture {arch} (nor a single generic Linux partition)"
    )]
    NoRootOrUsr {
        /// The architecture asked for.
        arch: String,
    },
}

// ---------------------------------------------------------------------------------------
// CRC32

/// CRC32 (IEEE 802.3, reflected, polynomial 0xEDB88320), the checksum GPT headers and
/// entry arrays carry; `crc32(b"123456789") == 0xCBF43926`.
pub fn crc32(data: &[u8]) -> u32 {
    crc32_update(0, data)
}

/// Continues a [`crc32`] over more data, so a checksum can be computed piecewise.
pub fn crc32_update(crc: u32, data: &[u8]) -> u32 {
    !super::crc::update(&super::crc::IEEE, !crc, data)
}

// ---------------------------------------------------------------------------------------
// GUIDs

/// A GUID in its on-disk (mixed-endian) byte order, as GPT stores type and partition
/// UUIDs; its text form is the usual `4f68bce3-e8cd-4db1-96e7-fbcaf984b709`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Guid(pub [u8; 16]);

/// A string that is not a GUID in `8-4-4-4-12` hex form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a GUID (want 8-4-4-4-12 hex digits): {0:?}")]
pub struct GuidParseError(pub String);

/// Text byte `i` (0..16, in printed order) goes to this on-disk position: the first three
/// groups are little-endian on disk.
const DISK_POS: [usize; 16] = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];

impl Guid {
    /// The all-zero GUID, which marks an unused partition entry.
    pub const NIL: Guid = Guid([0; 16]);

    /// Is this the all-zero GUID (unused entry)?
    pub fn is_nil(&self) -> bool {
        self.0 == [0; 16]
    }

    /// Parses the text form at compile time too, so type-GUID tables are written as text.
    pub const fn parse_text(s: &[u8]) -> Option<Guid> {
        if s.len() != 36 {
            return None;
        }
        let mut out = [0u8; 16];
        let mut si = 0;
        let mut bi = 0;
        while si < 36 {
            if si == 8 || si == 13 || si == 18 || si == 23 {
                if s[si] != b'-' {
                    return None;
                }
                si += 1;
                continue;
            }
            let hi = match hex_digit(s[si]) {
                Some(v) => v,
                None => return None,
            };
            let lo = match hex_digit(s[si + 1]) {
                Some(v) => v,
                None => return None,
            };
            out[DISK_POS[bi]] = (hi << 4) | lo;
            bi += 1;
            si += 2;
        }
        Some(Guid(out))
    }

    /// The bytes in printed order (big-endian), e.g. for comparing with `SD_ID128_MAKE()`.
    pub fn to_text_bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            *o = self
                .0
                .get(DISK_POS.get(i).copied().unwrap_or(i))
                .copied()
                .unwrap_or(0);
        }
        out
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.to_text_bytes().iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

impl FromStr for Guid {
    type Err = GuidParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Guid::parse_text(s.as_bytes()).ok_or_else(|| GuidParseError(s.to_owned()))
    }
}

// ---------------------------------------------------------------------------------------
// Table

/// One used partition entry, checked to lie inside the usable area and the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// 1-based position in the entry array (the `N` of `/dev/loop0pN`).
    pub index: u32,
    /// Partition type GUID: what the partition is for.
    pub type_guid: Guid,
    /// Unique partition GUID (`PARTUUID`).
    pub uuid: Guid,
    /// First LBA (inclusive).
    pub first_lba: u64,
    /// Last LBA (inclusive).
    pub last_lba: u64,
    /// Start in bytes from the start of the image.
    pub offset_bytes: u64,
    /// Length in bytes.
    pub size_bytes: u64,
    /// Attribute bits (see [`ATTR_READ_ONLY`], [`ATTR_NO_AUTO`], [`ATTR_GROWFS`]).
    pub attrs: u64,
    /// Partition name (`PARTLABEL`), UTF-16LE up to the first NUL, decoded lossily.
    pub label: String,
}

impl Partition {
    /// GPT "no-auto" attribute (bit 63): automatic discovery must skip it.
    pub fn no_auto(&self) -> bool {
        self.attrs & ATTR_NO_AUTO != 0
    }
    /// GPT "read-only" attribute (bit 60): mount read-only.
    pub fn read_only(&self) -> bool {
        self.attrs & ATTR_READ_ONLY != 0
    }
    /// GPT "growfs" attribute (bit 59): recorded only; extensions are never grown.
    pub fn growfs(&self) -> bool {
        self.attrs & ATTR_GROWFS != 0
    }
}

/// A parsed, validated GUID partition table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpt {
    /// Disk GUID from the header.
    pub disk_guid: Guid,
    /// Logical sector size the table was found with (512, 1024, 2048 or 4096).
    pub sector_size: u32,
    /// Header's first usable LBA.
    pub first_usable_lba: u64,
    /// Header's last usable LBA.
    pub last_usable_lba: u64,
    /// Used entries (type GUID not zero), in entry order.
    pub partitions: Vec<Partition>,
}

fn guid_at(b: &[u8], off: usize) -> Guid {
    bytes::array(b, off).map(Guid).unwrap_or(Guid::NIL)
}

fn decode_label(name: &[u8]) -> String {
    let units: Vec<u16> = name
        .chunks_exact(2)
        .map(|c| le_u16(c, 0).unwrap_or(0))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

/// Parses the GPT of an image of `size` bytes through `read_at(offset, buf)`, which must
/// fill `buf` from `offset` or fail (with a file: `std::os::unix::fs::FileExt::read_exact_at`).
/// Only ranges inside `size` are asked for, and at most [`MAX_ENTRY_ARRAY_BYTES`] plus two
/// sectors are read, so a caller can hand in a large file without reading it whole.
pub fn parse<F>(mut read_at: F, size: u64) -> Result<Gpt, GptError>
where
    F: FnMut(u64, &mut [u8]) -> io::Result<()>,
{
    // Protective MBR (LBA 0, 512 bytes whatever the sector size) and the 512-byte header at LBA 1.
    if size < 2 * MBR_SIZE as u64 {
        return Err(GptError::TooSmall { size });
    }
    let mut mbr = [0u8; MBR_SIZE];
    read_at(0, &mut mbr)?;
    if mbr.get(510..512) != Some(&[0x55, 0xAA][..]) {
        return Err(GptError::NoProtectiveMbr {
            why: "no 0x55AA boot signature in LBA 0",
        });
    }
    // Four 16-byte entries from byte 446; the type byte is at +4.
    let has_ee = (0..4usize).any(|i| mbr.get(446 + i * 16 + 4) == Some(&0xEE));
    if !has_ee {
        return Err(GptError::NoProtectiveMbr {
            why: "no MBR partition of type 0xEE",
        });
    }

    // Sector size: the first LBA 1 candidate carrying the signature.
    let mut sector_size = None;
    for ss in SECTOR_SIZES {
        if size < 2 * u64::from(ss) {
            break;
        }
        let mut sig = [0u8; 8];
        read_at(u64::from(ss), &mut sig)?;
        if &sig == HEADER_SIGNATURE {
            sector_size = Some(ss);
            break;
        }
    }
    let ss = sector_size.ok_or(GptError::NoHeader)?;
    let ss64 = u64::from(ss);

    let mut hdr = vec![0u8; ss as usize];
    read_at(ss64, &mut hdr)?;

    let revision = le_u32(&hdr, 8).unwrap_or(0);
    if revision >> 16 != 1 {
        return Err(GptError::Revision(revision));
    }
    let header_size = le_u32(&hdr, 12).unwrap_or(0);
    if header_size < MIN_HEADER_SIZE || header_size > ss {
        return Err(GptError::HeaderSize {
            size: header_size,
            max: ss,
        });
    }
    let stored = le_u32(&hdr, 16).unwrap_or(0);
    let computed = {
        let h = hdr.get(..header_size as usize).unwrap_or(&[]);
        let c = crc32_update(0, h.get(..16).unwrap_or(&[]));
        let c = crc32_update(c, &[0; 4]);
        crc32_update(c, h.get(20..).unwrap_or(&[]))
    };
    if stored != computed {
        return Err(GptError::HeaderCrc { stored, computed });
    }
    let my_lba = le_u64(&hdr, 24).unwrap_or(0);
    if my_lba != 1 {
        return Err(GptError::MyLba(my_lba));
    }
    let first_usable = le_u64(&hdr, 40).unwrap_or(0);
    let last_usable = le_u64(&hdr, 48).unwrap_or(0);
    let disk_guid = guid_at(&hdr, 56);
    let entries_lba = le_u64(&hdr, 72).unwrap_or(0);
    let count = le_u32(&hdr, 80).unwrap_or(0);
    let entry_size = le_u32(&hdr, 84).unwrap_or(0);
    let array_crc = le_u32(&hdr, 88).unwrap_or(0);
    let sectors = size / ss64;

    if first_usable > last_usable {
        return Err(GptError::UsableRange {
            first: first_usable,
            last: last_usable,
            why: "first usable LBA is after the last",
        });
    }
    if first_usable < 2 {
        return Err(GptError::UsableRange {
            first: first_usable,
            last: last_usable,
            why: "usable area overlaps the MBR or the header",
        });
    }
    if first_usable >= sectors {
        return Err(GptError::UsableRange {
            first: first_usable,
            last: last_usable,
            why: "usable area starts beyond the end of the image",
        });
    }

    if entry_size < MIN_ENTRY_SIZE || !entry_size.is_power_of_two() || entry_size > MAX_ENTRY_SIZE {
        return Err(GptError::EntrySize(entry_size));
    }
    if count > MAX_ENTRIES {
        return Err(GptError::EntryCount(count));
    }
    let array_bytes = u64::from(count) * u64::from(entry_size);
    if array_bytes > MAX_ENTRY_ARRAY_BYTES {
        return Err(GptError::EntryArrayTooLarge {
            count,
            size: entry_size,
        });
    }
    if entries_lba < 2 {
        return Err(GptError::EntryArrayLocation {
            lba: entries_lba,
            why: "overlaps the MBR or the header",
        });
    }
    let array_off = entries_lba
        .checked_mul(ss64)
        .ok_or(GptError::EntryArrayLocation {
            lba: entries_lba,
            why: "offset overflows",
        })?;
    let array_end = array_off
        .checked_add(array_bytes)
        .filter(|&e| e <= size)
        .ok_or(GptError::EntryArrayLocation {
            lba: entries_lba,
            why: "extends beyond the end of the image",
        })?;
    if array_bytes > 0 {
        // Last LBA the array touches; it must not reach into the usable area.
        let array_last_lba = (array_end - 1) / ss64;
        if entries_lba <= last_usable && array_last_lba >= first_usable {
            return Err(GptError::EntryArrayLocation {
                lba: entries_lba,
                why: "overlaps the usable partition area",
            });
        }
    }
    let mut array = vec![0u8; array_bytes as usize];
    if !array.is_empty() {
        read_at(array_off, &mut array)?;
    }
    let computed = crc32(&array);
    if computed != array_crc {
        return Err(GptError::EntryArrayCrc {
            stored: array_crc,
            computed,
        });
    }

    let mut partitions = Vec::new();
    for (i, entry) in array.chunks_exact(entry_size as usize).enumerate() {
        let type_guid = guid_at(entry, 0);
        if type_guid.is_nil() {
            continue;
        }
        // i < MAX_ENTRIES, so this fits.
        let index = u32::try_from(i).unwrap_or(u32::MAX).saturating_add(1);
        let first = le_u64(entry, 32).unwrap_or(0);
        let last = le_u64(entry, 40).unwrap_or(0);
        if first > last {
            return Err(GptError::PartitionInverted { index, first, last });
        }
        if first < first_usable || last > last_usable {
            return Err(GptError::PartitionOutsideUsable {
                index,
                first,
                last,
                usable_first: first_usable,
                usable_last: last_usable,
            });
        }
        let end = last
            .checked_add(1)
            .and_then(|l| l.checked_mul(ss64))
            .filter(|&e| e <= size)
            .ok_or(GptError::PartitionBeyondEof {
                index,
                end: last.saturating_add(1).saturating_mul(ss64),
                size,
            })?;
        // first <= last and (last + 1) * ss fits, so these cannot overflow.
        let offset_bytes = first * ss64;
        partitions.push(Partition {
            index,
            type_guid,
            uuid: guid_at(entry, 16),
            first_lba: first,
            last_lba: last,
            offset_bytes,
            size_bytes: end - offset_bytes,
            attrs: le_u64(entry, 48).unwrap_or(0),
            label: decode_label(entry.get(56..128).unwrap_or(&[])),
        });
    }

    // Overlaps: sorted by start, each partition must begin after every earlier one ends.
    let mut order: Vec<&Partition> = partitions.iter().collect();
    order.sort_by_key(|p| (p.first_lba, p.index));
    let mut furthest: Option<&Partition> = None;
    for p in order {
        if let Some(prev) = furthest {
            if p.first_lba <= prev.last_lba {
                let (a, b) = if prev.index < p.index {
                    (prev.index, p.index)
                } else {
                    (p.index, prev.index)
                };
                return Err(GptError::Overlap { a, b });
            }
        }
        let reaches_further = match furthest {
            Some(f) => p.last_lba > f.last_lba,
            None => true,
        };
        if reaches_further {
            furthest = Some(p);
        }
    }

    if last_usable >= sectors {
        return Err(GptError::UsableBeyondEof {
            last: last_usable,
            sectors,
        });
    }

    Ok(Gpt {
        disk_guid,
        sector_size: ss,
        first_usable_lba: first_usable,
        last_usable_lba: last_usable,
        partitions,
    })
}

/// [`parse`] over an image already in memory.
pub fn parse_bytes(data: &[u8]) -> Result<Gpt, GptError> {
    parse(
        |off, buf| {
            let src = usize::try_from(off)
                .ok()
                .and_then(|start| Some(start..start.checked_add(buf.len())?))
                .and_then(|r| data.get(r))
                .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            buf.copy_from_slice(src);
            Ok(())
        },
        data.len() as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};

    pub(super) const X86_64_ROOT: &str = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709";
    pub(super) const X86_64_USR: &str = "8484680c-9521-48c6-9c11-b0720656f69e";
    pub(super) const X86_64_USR_VERITY: &str = "77ff5f63-e7b6-4633-acf4-1565b864c0e6";
    pub(super) const X86_64_USR_VERITY_SIG: &str = "e7bb33fb-06cf-4e81-8273-e543b413e2e2";

    pub(super) fn g(s: &str) -> Guid {
        s.parse().unwrap()
    }

    pub(super) fn ty(role: Role, arch: &str) -> Guid {
        type_guid_for(role, arch).unwrap()
    }

    // ---- external tools -------------------------------------------------------------

    fn tool(name: &str) -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    }

    fn blank_file(path: &Path, size: u64) {
        std::fs::File::create(path).unwrap().set_len(size).unwrap();
    }

    fn run_with_stdin(cmd: &mut Command, input: &str) {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// An image of `size` bytes partitioned by sfdisk from `script`, or None (with a note)
    /// when sfdisk (Debian package "fdisk") is not installed.
    fn sfdisk_image(dir: &Path, size: u64, script: &str) -> Option<PathBuf> {
        let Some(sfdisk) = tool("sfdisk") else {
            eprintln!("sfdisk not installed (Debian package fdisk): skipping");
            return None;
        };
        let path = dir.join("disk.img");
        blank_file(&path, size);
        run_with_stdin(
            Command::new(sfdisk)
                .args(["--no-reread", "--no-tell-kernel", "--quiet"])
                .arg(&path),
            &format!("label: gpt\n{script}"),
        );
        Some(path)
    }

    fn parse_file(path: &Path) -> Result<Gpt, GptError> {
        let f = std::fs::File::open(path).unwrap();
        let size = f.metadata().unwrap().len();
        parse(|off, buf| f.read_exact_at(buf, off), size)
    }

    // ---- a GPT writer for hostile images ----------------------------------------------

    pub(super) struct P {
        pub(super) ty: Guid,
        pub(super) first: u64,
        pub(super) last: u64,
        pub(super) attrs: u64,
        pub(super) name: &'static str,
    }

    pub(super) fn p(ty: Guid, first: u64, last: u64) -> P {
        P {
            ty,
            first,
            last,
            attrs: 0,
            name: "",
        }
    }

    fn put32(img: &mut [u8], off: usize, v: u32) {
        if let Some(s) = img.get_mut(off..off + 4) {
            s.copy_from_slice(&v.to_le_bytes());
        }
    }

    fn put64(img: &mut [u8], off: usize, v: u64) {
        if let Some(s) = img.get_mut(off..off + 8) {
            s.copy_from_slice(&v.to_le_bytes());
        }
    }

    /// Recomputes the entry-array and header CRCs from whatever the header says, so a
    /// patched field is the only thing wrong. Never panics (the fuzz loop uses it).
    pub(super) fn fix_crcs(img: &mut [u8], ss: usize) {
        let Some(hdr) = img.get(ss..ss + 92) else {
            return;
        };
        let count = u64::from(le_u32(hdr, 80).unwrap_or(0));
        let esz = u64::from(le_u32(hdr, 84).unwrap_or(0));
        let lba = le_u64(hdr, 72).unwrap_or(0);
        let hs = (le_u32(hdr, 12).unwrap_or(0) as usize).clamp(92, ss);
        let array = count
            .checked_mul(esz)
            .filter(|&n| n <= 1 << 20)
            .zip(lba.checked_mul(ss as u64))
            .and_then(|(n, off)| {
                let off = usize::try_from(off).ok()?;
                img.get(off..off.checked_add(n as usize)?)
            })
            .map(crc32);
        if let Some(c) = array {
            put32(img, ss + 88, c);
        }
        put32(img, ss + 16, 0);
        if let Some(h) = img.get(ss..ss + hs) {
            let c = crc32(h);
            put32(img, ss + 16, c);
        }
    }

    /// A GPT like sfdisk writes: entries at LBA 2, 128 entries of 128 bytes, no backup
    /// (the parser reads only the primary).
    pub(super) fn build(ss: u32, sectors: u64, parts: &[P]) -> Vec<u8> {
        let ssu = ss as usize;
        let mut img = vec![0u8; sectors as usize * ssu];
        img[446 + 4] = 0xEE;
        put32(&mut img, 446 + 8, 1);
        put32(
            &mut img,
            446 + 12,
            (sectors - 1).min(u32::MAX.into()) as u32,
        );
        img[510] = 0x55;
        img[511] = 0xAA;
        let array_sectors = (128u64 * 128).div_ceil(u64::from(ss));
        for (i, part) in parts.iter().enumerate() {
            let e = 2 * ssu + i * 128;
            img[e..e + 16].copy_from_slice(&part.ty.0);
            img[e + 16..e + 32].copy_from_slice(&[i as u8 + 1; 16]);
            put64(&mut img, e + 32, part.first);
            put64(&mut img, e + 40, part.last);
            put64(&mut img, e + 48, part.attrs);
            for (k, u) in part.name.encode_utf16().take(36).enumerate() {
                img[e + 56 + 2 * k..e + 58 + 2 * k].copy_from_slice(&u.to_le_bytes());
            }
        }
        let h = ssu;
        img[h..h + 8].copy_from_slice(b"EFI PART");
        put32(&mut img, h + 8, 0x0001_0000);
        put32(&mut img, h + 12, 92);
        put64(&mut img, h + 24, 1);
        put64(&mut img, h + 32, sectors - 1);
        put64(&mut img, h + 40, 2 + array_sectors);
        put64(&mut img, h + 48, sectors - 2 - array_sectors);
        img[h + 56..h + 72].copy_from_slice(&g("01234567-89ab-cdef-0123-456789abcdef").0);
        put64(&mut img, h + 72, 2);
        put32(&mut img, h + 80, 128);
        put32(&mut img, h + 84, 128);
        fix_crcs(&mut img, ssu);
        img
    }

    /// usr + usr-verity + usr-verity-sig for x86-64 in 1 MiB of 512-byte sectors.
    pub(super) fn base() -> Vec<u8> {
        build(
            512,
            2048,
            &[
                P {
                    name: "usr",
                    ..p(g(X86_64_USR), 40, 1039)
                },
                P {
                    name: "usr-verity",
                    ..p(g(X86_64_USR_VERITY), 1040, 1199)
                },
                P {
                    name: "usr-verity-sig",
                    ..p(g(X86_64_USR_VERITY_SIG), 1200, 1215)
                },
            ],
        )
    }

    fn patched(f: impl FnOnce(&mut Vec<u8>)) -> Result<Gpt, GptError> {
        let mut img = base();
        f(&mut img);
        fix_crcs(&mut img, 512);
        parse_bytes(&img)
    }

    // ---- basics -------------------------------------------------------------------

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32_update(crc32(b"1234"), b"56789"), 0xCBF4_3926);
    }

    #[test]
    fn guid_text_and_disk_order() {
        let gd = g(X86_64_ROOT);
        // The first three groups are little-endian on disk.
        assert_eq!(
            gd.0,
            [
                0xe3, 0xbc, 0x68, 0x4f, 0xcd, 0xe8, 0xb1, 0x4d, 0x96, 0xe7, 0xfb, 0xca, 0xf9, 0x84,
                0xb7, 0x09
            ]
        );
        assert_eq!(gd.to_string(), X86_64_ROOT);
        assert_eq!(
            "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
                .parse::<Guid>()
                .unwrap(),
            gd
        );
        assert_eq!(format!("{gd:?}"), format!("Guid({X86_64_ROOT})"));
        for bad in [
            "",
            "4f68bce3e8cd4db196e7fbcaf984b709",
            "4f68bce3-e8cd-4db1-96e7-fbcaf984b70",
            "4f68bce3-e8cd-4db1-96e7-fbcaf984b7090",
            "4f68bce3-e8cd-4db1-96e7_fbcaf984b709",
            "4f68bce3-e8cd-4db1-96e7-fbcaf984b70g",
            "{4f68bce3-e8cd-4db1-96e7-fbcaf984b709}",
            "4f68bce3-e8cd-4db1-96e7-fbcaf984b7é",
        ] {
            assert!(bad.parse::<Guid>().is_err(), "{bad:?}");
        }
        assert!(Guid::NIL.is_nil());
        assert_eq!(
            Guid::NIL.to_string(),
            "00000000-0000-0000-0000-000000000000"
        );
    }

    // ---- valid images -------------------------------------------------------------------

    #[test]
    fn writer_image_parses() {
        let gpt = parse_bytes(&base()).unwrap();
        assert_eq!(gpt.sector_size, 512);
        assert_eq!(gpt.disk_guid, g("01234567-89ab-cdef-0123-456789abcdef"));
        assert_eq!((gpt.first_usable_lba, gpt.last_usable_lba), (34, 2014));
        let idx: Vec<_> = gpt.partitions.iter().map(|p| p.index).collect();
        assert_eq!(idx, [1, 2, 3]);
        let usr = &gpt.partitions[0];
        assert_eq!(usr.label, "usr");
        assert_eq!((usr.offset_bytes, usr.size_bytes), (40 * 512, 1000 * 512));
        assert_eq!(usr.uuid.0, [1; 16]);
    }

    #[test]
    fn sfdisk_usr_verity_sig_x86_64() {
        let dir = tempfile::tempdir().unwrap();
        let script = format!(
            "first-lba: 2048\n\
             start=2048, size=4096, type={X86_64_USR}, name=\"usr-ext_1.2\"\n\
             size=1024, type={X86_64_USR_VERITY}, name=\"usr-ext_1.2-verity\"\n\
             size=32, type={X86_64_USR_VERITY_SIG}, name=\"usr-ext_1.2-verity-sig\"\n"
        );
        let Some(path) = sfdisk_image(dir.path(), 8 << 20, &script) else {
            return;
        };
        let gpt = parse_file(&path).unwrap();
        assert_eq!(gpt.sector_size, 512);
        assert_eq!(gpt.partitions.len(), 3);
        let [a, b, c] = &gpt.partitions[..] else {
            unreachable!()
        };
        assert_eq!(
            (a.index, a.type_guid, a.first_lba, a.last_lba),
            (1, g(X86_64_USR), 2048, 6143)
        );
        assert_eq!((a.offset_bytes, a.size_bytes), (2048 * 512, 4096 * 512));
        assert_eq!(a.label, "usr-ext_1.2");
        assert_eq!(
            (b.index, b.first_lba, b.label.as_str()),
            (2, 6144, "usr-ext_1.2-verity")
        );
        assert_eq!((c.index, c.size_bytes), (3, 32 * 512));
        assert!(!a.uuid.is_nil() && a.uuid != b.uuid);
        // The in-memory path agrees with the read-at one.
        assert_eq!(parse_bytes(&std::fs::read(&path).unwrap()).unwrap(), gpt);

        let sel = select_roles(&gpt, "x86-64").unwrap();
        assert_eq!(sel.primary.data.role, Role::Usr);
        assert_eq!(sel.primary.data.arch, Some("x86-64"));
        assert_eq!(sel.primary.data.partition.index, 1);
        assert_eq!(sel.primary.verity.as_ref().unwrap().partition.index, 2);
        assert_eq!(sel.primary.verity_sig.as_ref().unwrap().partition.index, 3);
        assert!(sel.usr.is_none() && sel.skipped_no_auto.is_empty());
        assert!(!sel.primary.data.read_only());

        let err = select_roles(&gpt, "arm64").unwrap_err();
        assert!(
            matches!(&err, GptError::NoRootOrUsr { arch } if arch == "arm64"),
            "{err}"
        );
    }

    #[test]
    fn sfdisk_root_only_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let script = format!(
            "start=2048, size=2048, type={X86_64_ROOT}, name=\"root\", attrs=\"GUID:60\"\n"
        );
        let Some(path) = sfdisk_image(dir.path(), 4 << 20, &script) else {
            return;
        };
        let gpt = parse_file(&path).unwrap();
        assert_eq!(gpt.partitions.len(), 1);
        assert_eq!(gpt.partitions[0].attrs, ATTR_READ_ONLY);
        let sel = select_roles(&gpt, "x86-64").unwrap();
        assert_eq!(sel.primary.data.role, Role::Root);
        assert!(sel.primary.data.read_only());
        assert!(sel.primary.verity.is_none() && sel.usr.is_none());
    }

    #[test]
    fn sfdisk_two_roots_are_ambiguous() {
        let dir = tempfile::tempdir().unwrap();
        let script = format!(
            "start=2048, size=1024, type={X86_64_ROOT}, name=\"root-a\"\n\
             size=1024, type={X86_64_ROOT}, name=\"root-b\"\n"
        );
        let Some(path) = sfdisk_image(dir.path(), 4 << 20, &script) else {
            return;
        };
        let gpt = parse_file(&path).unwrap();
        let err = select_roles(&gpt, "x86-64").unwrap_err();
        assert!(
            matches!(&err, GptError::Ambiguous { role: Role::Root, arch, indexes }
                if arch == "x86-64" && indexes == "1, 2"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "several root partitions for architecture x86-64: 1, 2"
        );
    }

    #[test]
    fn sfdisk_truncated_image() {
        let dir = tempfile::tempdir().unwrap();
        let script = format!(
            "start=2048, size=2048, type={X86_64_USR}\n\
             size=2048, type={X86_64_USR_VERITY}\n"
        );
        let Some(path) = sfdisk_image(dir.path(), 8 << 20, &script) else {
            return;
        };
        // Cut into partition 2 (LBAs 4096..=6143).
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(5000 * 512)
            .unwrap();
        let err = parse_file(&path).unwrap_err();
        assert!(
            matches!(err, GptError::PartitionBeyondEof { index: 2, end, size: 2_560_000 } if end == 6144 * 512),
            "{err:?}"
        );
        assert!(err.to_string().starts_with("partition 2 ends at byte"));
    }

    #[test]
    fn fdisk_4096_byte_sectors() {
        let Some(fdisk) = tool("fdisk") else {
            eprintln!("fdisk not installed: skipping");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        blank_file(&path, 8 << 20);
        // sfdisk 2.38 ignores a script's "sector-size: 4096" for files; fdisk -b honours it.
        run_with_stdin(
            Command::new(fdisk).args(["-b", "4096"]).arg(&path),
            &format!("g\nn\n1\n256\n+255\nt\n{X86_64_ROOT}\nw\n"),
        );
        let gpt = parse_file(&path).unwrap();
        assert_eq!(gpt.sector_size, 4096);
        assert_eq!(gpt.partitions.len(), 1);
        let part = &gpt.partitions[0];
        assert_eq!((part.first_lba, part.last_lba), (256, 511));
        assert_eq!((part.offset_bytes, part.size_bytes), (1 << 20, 1 << 20));
        assert_eq!(
            select_roles(&gpt, "x86-64").unwrap().primary.data.role,
            Role::Root
        );
    }

    #[test]
    fn writer_4096_byte_sectors() {
        let img = build(4096, 512, &[p(g(X86_64_ROOT), 10, 99)]);
        let gpt = parse_bytes(&img).unwrap();
        assert_eq!(gpt.sector_size, 4096);
        assert_eq!(gpt.first_usable_lba, 6);
        assert_eq!(gpt.partitions[0].offset_bytes, 10 * 4096);
        assert_eq!(gpt.partitions[0].size_bytes, 90 * 4096);
    }

    #[test]
    fn labels_are_decoded_lossily() {
        let img = build(
            512,
            256,
            &[P {
                name: "überusr 🦀",
                ..p(g(X86_64_USR), 40, 49)
            }],
        );
        assert_eq!(parse_bytes(&img).unwrap().partitions[0].label, "überusr 🦀");
        // An unpaired surrogate becomes U+FFFD instead of failing.
        let mut img = img;
        img[2 * 512 + 56..2 * 512 + 58].copy_from_slice(&0xD800u16.to_le_bytes());
        fix_crcs(&mut img, 512);
        assert!(parse_bytes(&img).unwrap().partitions[0]
            .label
            .starts_with('\u{FFFD}'));
        // A 36-unit name with no NUL is taken whole.
        let long = build(
            512,
            256,
            &[P {
                name: "abcdefghijklmnopqrstuvwxyz0123456789",
                ..p(g(X86_64_USR), 40, 49)
            }],
        );
        assert_eq!(parse_bytes(&long).unwrap().partitions[0].label.len(), 36);
    }

    #[test]
    fn empty_entries_are_skipped_and_indexes_kept() {
        let mut img = build(
            512,
            256,
            &[
                p(g(X86_64_USR), 40, 49),
                p(Guid::NIL, 0, 0),
                p(g(X86_64_USR_VERITY), 50, 59),
            ],
        );
        // An unused entry may carry garbage LBAs: they are not checked.
        put64(&mut img, 2 * 512 + 128 + 32, u64::MAX);
        fix_crcs(&mut img, 512);
        let gpt = parse_bytes(&img).unwrap();
        let idx: Vec<_> = gpt.partitions.iter().map(|p| p.index).collect();
        assert_eq!(idx, [1, 3]);
    }

    // ---- hostile headers ------------------------------------------------------------------

    #[test]
    fn empty_and_tiny_files() {
        assert!(matches!(
            parse_bytes(&[]),
            Err(GptError::TooSmall { size: 0 })
        ));
        let img = base();
        let err = parse_bytes(&img[..600]).unwrap_err();
        assert!(matches!(err, GptError::TooSmall { size: 600 }), "{err:?}");
        assert!(err.to_string().contains("600 bytes"));
        // Header sector present, nothing else: the entry array is past the end.
        let err = parse_bytes(&img[..1024]).unwrap_err();
        assert!(matches!(err, GptError::UsableRange { .. }), "{err:?}");
    }

    #[test]
    fn protective_mbr_required() {
        let mut img = base();
        img[510] = 0;
        img[511] = 0;
        let err = parse_bytes(&img).unwrap_err();
        assert!(matches!(err, GptError::NoProtectiveMbr { why } if why.contains("0x55AA")));
        let mut img = base();
        img[446 + 4] = 0x83;
        let err = parse_bytes(&img).unwrap_err();
        assert!(matches!(err, GptError::NoProtectiveMbr { why } if why.contains("0xEE")));
        // A hybrid MBR (0xEE in another slot) is fine.
        let mut img = base();
        img[446 + 4] = 0x83;
        img[446 + 3 * 16 + 4] = 0xEE;
        assert!(parse_bytes(&img).is_ok());
    }

    #[test]
    fn header_signature_required() {
        let mut img = base();
        img[512..520].copy_from_slice(b"EFI FART");
        assert!(matches!(parse_bytes(&img), Err(GptError::NoHeader)));
    }

    #[test]
    fn bad_header_crc() {
        let mut img = base();
        img[512 + 60] ^= 0x01; // disk GUID byte
        let err = parse_bytes(&img).unwrap_err();
        assert!(matches!(err, GptError::HeaderCrc { stored, computed } if stored != computed));
        assert!(err.to_string().contains("header CRC32 mismatch"));
    }

    #[test]
    fn bad_entry_array_crc() {
        let mut img = base();
        img[2 * 512 + 60] ^= 0x20; // a label byte of entry 1
        let err = parse_bytes(&img).unwrap_err();
        assert!(matches!(err, GptError::EntryArrayCrc { .. }), "{err:?}");
        assert!(err.to_string().contains("entry array CRC32 mismatch"));
    }

    #[test]
    fn bad_header_fields() {
        let err = patched(|i| put32(i, 512 + 8, 0x0002_0000)).unwrap_err();
        assert!(matches!(err, GptError::Revision(0x0002_0000)), "{err:?}");
        // A 1.x minor revision is accepted.
        assert!(patched(|i| put32(i, 512 + 8, 0x0001_0001)).is_ok());
        let err = patched(|i| put32(i, 512 + 12, 91)).unwrap_err();
        assert!(
            matches!(err, GptError::HeaderSize { size: 91, max: 512 }),
            "{err:?}"
        );
        let err = patched(|i| put32(i, 512 + 12, 513)).unwrap_err();
        assert!(
            matches!(err, GptError::HeaderSize { size: 513, .. }),
            "{err:?}"
        );
        let err = patched(|i| put64(i, 512 + 24, 2047)).unwrap_err();
        assert!(matches!(err, GptError::MyLba(2047)), "{err:?}");
        let err = patched(|i| put64(i, 512 + 40, 3000)).unwrap_err();
        assert!(
            matches!(err, GptError::UsableRange { first: 3000, .. }),
            "{err:?}"
        );
        let err = patched(|i| put64(i, 512 + 40, 1)).unwrap_err();
        assert!(
            matches!(err, GptError::UsableRange { first: 1, .. }),
            "{err:?}"
        );
        let err = patched(|i| put64(i, 512 + 48, 4000)).unwrap_err();
        assert!(
            matches!(
                err,
                GptError::UsableBeyondEof {
                    last: 4000,
                    sectors: 2048
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn entry_size_zero() {
        let err = patched(|i| put32(i, 512 + 84, 0)).unwrap_err();
        assert!(matches!(err, GptError::EntrySize(0)), "{err:?}");
    }

    #[test]
    fn entry_size_one_gib() {
        let err = patched(|i| put32(i, 512 + 84, 1 << 30)).unwrap_err();
        assert!(matches!(err, GptError::EntrySize(0x4000_0000)), "{err:?}");
        for bad in [127, 136, 192, 8192, u32::MAX] {
            let err = patched(|i| put32(i, 512 + 84, bad)).unwrap_err();
            assert!(
                matches!(err, GptError::EntrySize(s) if s == bad),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn entry_count_100000() {
        let err = patched(|i| put32(i, 512 + 80, 100_000)).unwrap_err();
        assert!(matches!(err, GptError::EntryCount(100_000)), "{err:?}");
        let err = patched(|i| {
            put32(i, 512 + 80, 1024);
            put32(i, 512 + 84, 4096);
        })
        .unwrap_err();
        assert!(
            matches!(
                err,
                GptError::EntryArrayTooLarge {
                    count: 1024,
                    size: 4096
                }
            ),
            "{err:?}"
        );
        // Fewer entries than written: only those are read (and CRC'd).
        let gpt = patched(|i| put32(i, 512 + 80, 2)).unwrap();
        assert_eq!(gpt.partitions.len(), 2);
        let gpt = patched(|i| put32(i, 512 + 80, 0)).unwrap();
        assert!(gpt.partitions.is_empty());
    }

    #[test]
    fn entry_array_placement() {
        let err = patched(|i| put64(i, 512 + 72, 1)).unwrap_err();
        assert!(
            matches!(err, GptError::EntryArrayLocation { lba: 1, .. }),
            "{err:?}"
        );
        let err = patched(|i| put64(i, 512 + 72, 100)).unwrap_err();
        assert!(
            matches!(err, GptError::EntryArrayLocation { lba: 100, why } if why.contains("usable")),
            "{err:?}"
        );
        let err = patched(|i| put64(i, 512 + 72, 2040)).unwrap_err();
        assert!(
            matches!(err, GptError::EntryArrayLocation { why, .. } if why.contains("end of the image")),
            "{err:?}"
        );
        let err = patched(|i| put64(i, 512 + 72, u64::MAX / 2)).unwrap_err();
        assert!(
            matches!(err, GptError::EntryArrayLocation { .. }),
            "{err:?}"
        );
    }

    // ---- hostile partitions -----------------------------------------------------------

    #[test]
    fn overlapping_partitions() {
        let usr = g(X86_64_USR);
        let img = build(512, 2048, &[p(usr, 40, 539), p(usr, 500, 600)]);
        let err = parse_bytes(&img).unwrap_err();
        assert!(matches!(err, GptError::Overlap { a: 1, b: 2 }), "{err:?}");
        assert_eq!(err.to_string(), "partitions 1 and 2 overlap");
        // Containment, listed out of order: 3 lies inside 1.
        let img = build(
            512,
            2048,
            &[p(usr, 40, 1000), p(usr, 1001, 1100), p(usr, 100, 200)],
        );
        assert!(matches!(
            parse_bytes(&img),
            Err(GptError::Overlap { a: 1, b: 3 })
        ));
        // A later partition overlapping an earlier long one past a short one in between.
        let img = build(512, 2048, &[p(usr, 40, 1000), p(usr, 50, 60)]);
        assert!(matches!(
            parse_bytes(&img),
            Err(GptError::Overlap { a: 1, b: 2 })
        ));
        // Sharing one sector is an overlap; touching is not.
        let img = build(512, 2048, &[p(usr, 40, 100), p(usr, 100, 200)]);
        assert!(matches!(
            parse_bytes(&img),
            Err(GptError::Overlap { a: 1, b: 2 })
        ));
        let img = build(512, 2048, &[p(usr, 40, 100), p(usr, 101, 200)]);
        assert!(parse_bytes(&img).is_ok());
    }

    #[test]
    fn partition_beyond_eof() {
        let img = base();
        // Partition 3 is LBAs 1200..=1215; keep the file up to LBA 1210.
        let err = parse_bytes(&img[..1210 * 512]).unwrap_err();
        assert!(
            matches!(err, GptError::PartitionBeyondEof { index: 3, end, size } if end == 1216 * 512 && size == 1210 * 512),
            "{err:?}"
        );
        // Only the (unused) tail is gone: the header's usable range is what is wrong.
        let err = parse_bytes(&img[..1300 * 512]).unwrap_err();
        assert!(
            matches!(
                err,
                GptError::UsableBeyondEof {
                    last: 2014,
                    sectors: 1300
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("truncated"));
    }

    #[test]
    fn partition_inverted_or_outside_usable() {
        let usr = g(X86_64_USR);
        let err = parse_bytes(&build(512, 2048, &[p(usr, 100, 99)])).unwrap_err();
        assert!(
            matches!(
                err,
                GptError::PartitionInverted {
                    index: 1,
                    first: 100,
                    last: 99
                }
            ),
            "{err:?}"
        );
        let err = parse_bytes(&build(512, 2048, &[p(usr, 40, 50), p(usr, 10, 20)])).unwrap_err();
        assert!(
            matches!(
                err,
                GptError::PartitionOutsideUsable {
                    index: 2,
                    first: 10,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = parse_bytes(&build(512, 2048, &[p(usr, 40, 2015)])).unwrap_err();
        assert!(
            matches!(
                err,
                GptError::PartitionOutsideUsable {
                    index: 1,
                    usable_last: 2014,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = parse_bytes(&build(512, 2048, &[p(usr, 40, u64::MAX)])).unwrap_err();
        assert!(
            matches!(err, GptError::PartitionOutsideUsable { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn short_reads_surface_as_io_errors() {
        let img = base();
        // The accessor claims a bigger file than it can serve.
        let err = parse(
            |off, buf| {
                let start = off as usize;
                match img.get(start..start + buf.len()) {
                    Some(s) if start < 1024 => {
                        buf.copy_from_slice(s);
                        Ok(())
                    }
                    _ => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                }
            },
            img.len() as u64,
        )
        .unwrap_err();
        assert!(matches!(err, GptError::Io(_)), "{err:?}");
    }

    // ---- fuzz-like -------------------------------------------------------------------

    use crate::testutil::{iterations, XorShift};

    #[test]
    fn random_byte_flips_never_panic() {
        let base = build(
            512,
            256,
            &[
                p(g(X86_64_ROOT), 40, 99),
                p(ty(Role::RootVerity, "x86-64"), 100, 119),
                p(ty(Role::RootVeritySig, "x86-64"), 120, 127),
                p(ty(Role::Usr, "arm64"), 128, 199),
            ],
        );
        let hot = 34 * 512; // MBR, header and entry array
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let (mut ok, mut selected, n) = (0, 0, iterations(2000));
        for iter in 0..n {
            let mut img = base.clone();
            for _ in 0..=rng.below(8) {
                let limit = if rng.below(10) < 8 { hot } else { img.len() };
                let pos = rng.below(limit as u64) as usize;
                img[pos] ^= (rng.below(255) + 1) as u8;
            }
            if iter % 2 == 0 {
                // Make the CRCs right again so the structural checks get exercised.
                fix_crcs(&mut img, 512);
            }
            if rng.below(10) == 0 {
                img.truncate(rng.below(img.len() as u64) as usize);
            }
            if let Ok(gpt) = parse_bytes(&img) {
                ok += 1;
                for part in &gpt.partitions {
                    assert!(part.offset_bytes + part.size_bytes <= img.len() as u64);
                    assert!(part.size_bytes > 0 && part.index >= 1);
                }
                for arch in ["x86-64", "arm64", "x86", "riscv64", "nonsense"] {
                    if select_roles(&gpt, arch).is_ok() {
                        selected += 1;
                    }
                }
            }
        }
        eprintln!("fuzz: {ok} of {n} parsed, {selected} selections");
        assert!(
            ok >= n / 40,
            "the fuzz loop should reach the partition checks ({ok})"
        );
    }
}
