//! GUID Partition Table parser (UEFI 2.10, chapter 5) and the Discoverable Partitions
//! Specification's partition roles, as systemd's `dissect_image()` picks them for
//! sysext/confext disk images.
//!
//! Everything here works on bytes: [`parse`] takes a read-at accessor and the image size
//! (so a file need not be read whole), [`parse_bytes`] a slice. Every size and offset on
//! disk is bounds-checked and every allocation capped, so hostile images give a
//! [`GptError`] and never a panic. Errors name the reason, not the file: callers add it.

use std::fmt;
use std::io;
use std::str::FromStr;

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
    #[error("reading the image failed: {}", crate::log::os_text(.0))]
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

const fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

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
            let hi = match hex_val(s[si]) {
                Some(v) => v,
                None => return None,
            };
            let lo = match hex_val(s[si + 1]) {
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

/// For GUID literals in tables: a malformed literal fails the build (const evaluation).
const fn guid(s: &str) -> Guid {
    match Guid::parse_text(s.as_bytes()) {
        Some(g) => g,
        None => panic!("malformed GUID literal"),
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

fn u16_at(b: &[u8], off: usize) -> u16 {
    off.checked_add(2)
        .and_then(|end| b.get(off..end))
        .and_then(|s| s.try_into().ok())
        .map(u16::from_le_bytes)
        .unwrap_or(0)
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    off.checked_add(4)
        .and_then(|end| b.get(off..end))
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .unwrap_or(0)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    off.checked_add(8)
        .and_then(|end| b.get(off..end))
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

fn guid_at(b: &[u8], off: usize) -> Guid {
    off.checked_add(16)
        .and_then(|end| b.get(off..end))
        .and_then(|s| s.try_into().ok())
        .map(Guid)
        .unwrap_or(Guid::NIL)
}

fn decode_label(name: &[u8]) -> String {
    let units: Vec<u16> = name
        .chunks_exact(2)
        .map(|c| u16_at(c, 0))
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

    let revision = u32_at(&hdr, 8);
    if revision >> 16 != 1 {
        return Err(GptError::Revision(revision));
    }
    let header_size = u32_at(&hdr, 12);
    if header_size < MIN_HEADER_SIZE || header_size > ss {
        return Err(GptError::HeaderSize {
            size: header_size,
            max: ss,
        });
    }
    let stored = u32_at(&hdr, 16);
    let computed = {
        let h = hdr.get(..header_size as usize).unwrap_or(&[]);
        let c = crc32_update(0, h.get(..16).unwrap_or(&[]));
        let c = crc32_update(c, &[0; 4]);
        crc32_update(c, h.get(20..).unwrap_or(&[]))
    };
    if stored != computed {
        return Err(GptError::HeaderCrc { stored, computed });
    }
    let my_lba = u64_at(&hdr, 24);
    if my_lba != 1 {
        return Err(GptError::MyLba(my_lba));
    }
    let first_usable = u64_at(&hdr, 40);
    let last_usable = u64_at(&hdr, 48);
    let disk_guid = guid_at(&hdr, 56);
    let entries_lba = u64_at(&hdr, 72);
    let count = u32_at(&hdr, 80);
    let entry_size = u32_at(&hdr, 84);
    let array_crc = u32_at(&hdr, 88);
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
        let first = u64_at(entry, 32);
        let last = u64_at(entry, 40);
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
            attrs: u64_at(entry, 48),
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

// ---------------------------------------------------------------------------------------
// Discoverable Partitions Specification

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
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};

    const X86_64_ROOT: &str = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709";
    const X86_64_USR: &str = "8484680c-9521-48c6-9c11-b0720656f69e";
    const X86_64_USR_VERITY: &str = "77ff5f63-e7b6-4633-acf4-1565b864c0e6";
    const X86_64_USR_VERITY_SIG: &str = "e7bb33fb-06cf-4e81-8273-e543b413e2e2";

    fn g(s: &str) -> Guid {
        s.parse().unwrap()
    }

    fn ty(role: Role, arch: &str) -> Guid {
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

    struct P {
        ty: Guid,
        first: u64,
        last: u64,
        attrs: u64,
        name: &'static str,
    }

    fn p(ty: Guid, first: u64, last: u64) -> P {
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
    fn fix_crcs(img: &mut [u8], ss: usize) {
        let Some(hdr) = img.get(ss..ss + 92) else {
            return;
        };
        let count = u64::from(u32_at(hdr, 80));
        let esz = u64::from(u32_at(hdr, 84));
        let lba = u64_at(hdr, 72);
        let hs = (u32_at(hdr, 12) as usize).clamp(92, ss);
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
    fn build(ss: u32, sectors: u64, parts: &[P]) -> Vec<u8> {
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
    fn base() -> Vec<u8> {
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

    // ---- role selection -----------------------------------------------------------------

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
