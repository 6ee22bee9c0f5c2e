//! File system identification from superblocks, for the file systems systemd mounts out of
//! extension images: erofs, squashfs and ext2/3/4 (mounted with the ext4 driver).
//!
//! [`probe`] looks at the first [`PROBE_BYTES`] of a partition (or of a plain image file)
//! and returns the kernel file system name to hand to `fsopen()`. Superblock fields are
//! sanity-checked like the kernel and libblkid do, so a damaged image is refused with a
//! reason instead of being handed to the kernel. Nothing here panics on any input.

use std::fmt;

use super::bytes::{le_u16, le_u32, le_u64};

/// How many leading bytes of a partition [`probe`] wants: every superblock checked here
/// (and its checksummed block) lies within them.
pub const PROBE_BYTES: usize = 64 * 1024;

/// erofs superblock magic at byte 1024 (`EROFS_SUPER_MAGIC_V1`).
const EROFS_MAGIC: u32 = 0xE0F5_E1E2;
const EROFS_SB_OFFSET: usize = 1024;
const EROFS_SB_MIN: usize = 128;
const EROFS_COMPAT_SB_CHKSUM: u32 = 0x1;

/// squashfs superblock magic at byte 0 ("hsqs" little-endian).
const SQUASHFS_MAGIC: &[u8; 4] = b"hsqs";
const SQUASHFS_SB_SIZE: usize = 96;
const SQUASHFS_METADATA_SIZE: u64 = 8192;
const SQUASHFS_ABSENT: u64 = u64::MAX;

/// ext2/3/4 superblock: at byte 1024, 1024 bytes long, magic at +56.
const EXT_SB_OFFSET: usize = 1024;
const EXT_SB_SIZE: usize = 1024;
const EXT_MAGIC: u16 = 0xEF53;
const EXT_COMPAT_HAS_JOURNAL: u32 = 0x4;
const EXT_INCOMPAT_JOURNAL_DEV: u32 = 0x8;
const EXT_INCOMPAT_64BIT: u32 = 0x80;
/// Incompat features ext3 knows (FILETYPE | RECOVER | META_BG); others mean ext4.
const EXT3_INCOMPAT: u32 = 0x2 | 0x4 | 0x10;
/// Read-only-compat features ext3 knows (SPARSE_SUPER | LARGE_FILE | BTREE_DIR).
const EXT3_RO_COMPAT: u32 = 0x1 | 0x2 | 0x4;
const EXT_RO_COMPAT_METADATA_CSUM: u32 = 0x400;

/// Bytes a buffer needs before we can tell "no known magic" from "too short to say".
const MIN_PROBE: usize = EXT_SB_OFFSET + EXT_SB_SIZE;

/// A file system we can mount from an extension image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsType {
    /// erofs (what `mkosi`/`systemd-repart` build sysext images with by default).
    Erofs,
    /// squashfs 4.0.
    Squashfs,
    /// ext2, ext3 or ext4: systemd mounts all of them with the ext4 driver.
    Ext4,
}

impl FsType {
    /// The kernel's file system name, as `fsopen()` and `mount -t` want it.
    pub fn fstype_name(self) -> &'static str {
        match self {
            FsType::Erofs => "erofs",
            FsType::Squashfs => "squashfs",
            FsType::Ext4 => "ext4",
        }
    }
}

impl fmt::Display for FsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.fstype_name())
    }
}

/// What a superblock says, beyond the type: for logs and for checking the image is whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsInfo {
    /// File system type (the driver to mount with).
    pub fstype: FsType,
    /// The name blkid would report: "erofs", "squashfs", "ext2", "ext3" or "ext4".
    pub variant: &'static str,
    /// File system block size in bytes.
    pub block_size: u32,
    /// Bytes the file system says it spans (erofs/ext: blocks × block size; squashfs:
    /// `bytes_used`).
    pub size_bytes: u64,
}

/// Why a buffer was not accepted as a file system.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// Not enough bytes: the buffer (or the image, per the superblock) is cut short.
    #[error("truncated: {what} needs {need} bytes, only {have} available")]
    Truncated {
        /// What needed the bytes.
        what: &'static str,
        /// Bytes needed.
        need: u64,
        /// Bytes there.
        have: u64,
    },
    /// No known superblock.
    #[error(
        "unknown file system (checked: erofs magic 0xE0F5E1E2 at byte 1024, squashfs \"hsqs\" \
         at byte 0, ext2/3/4 magic 0xEF53 at byte 1080)"
    )]
    Unknown,
    /// Something recognisable that cannot be mounted as an extension's file system.
    #[error("unsupported content: {0}")]
    Unsupported(&'static str),
    /// The magic matched but a superblock field is impossible.
    #[error("bad {fs} superblock: {why}")]
    Invalid {
        /// Which file system's superblock.
        fs: &'static str,
        /// The field and its value.
        why: String,
    },
}

fn invalid(fs: &'static str, why: String) -> FsError {
    FsError::Invalid { fs, why }
}

/// `buf[start..start + len]`, or a `Truncated` error naming `what`.
fn need<'a>(
    buf: &'a [u8],
    start: usize,
    len: usize,
    what: &'static str,
) -> Result<&'a [u8], FsError> {
    let end = start.saturating_add(len);
    buf.get(start..end).ok_or(FsError::Truncated {
        what,
        need: end as u64,
        have: buf.len() as u64,
    })
}

/// CRC32C (Castagnoli) without the final inversion, seeded by the caller: the Linux
/// `crc32c(~0, ...)` form that erofs and ext4 superblock checksums store.
fn crc32c_raw(seed: u32, data: &[u8]) -> u32 {
    super::crc::update(&super::crc::CASTAGNOLI, seed, data)
}

/// Identifies the file system in `buf`, the first bytes (ideally [`PROBE_BYTES`]) of a
/// partition or image file.
pub fn probe(buf: &[u8]) -> Result<FsType, FsError> {
    inspect(buf, None).map(|i| i.fstype)
}

/// [`probe`], also checking that the file system fits in `total_len`, the size of the
/// whole partition or file (a truncated download fails here rather than at read time).
pub fn probe_with_size(buf: &[u8], total_len: u64) -> Result<FsType, FsError> {
    inspect(buf, Some(total_len)).map(|i| i.fstype)
}

/// [`probe`] returning what the superblock says; `total_len` as for [`probe_with_size`].
pub fn inspect(buf: &[u8], total_len: Option<u64>) -> Result<FsInfo, FsError> {
    let info = if buf.starts_with(SQUASHFS_MAGIC) {
        squashfs(buf)?
    } else if le_u32(buf, EROFS_SB_OFFSET).unwrap_or(0) == EROFS_MAGIC {
        erofs(buf)?
    } else if le_u16(buf, EXT_SB_OFFSET + 56).unwrap_or(0) == EXT_MAGIC {
        ext(buf)?
    } else if buf.starts_with(b"LUKS\xBA\xBE") {
        return Err(FsError::Unsupported(
            "a LUKS-encrypted volume (extension images are not decrypted)",
        ));
    } else if buf.starts_with(b"verity\0\0") {
        return Err(FsError::Unsupported(
            "a dm-verity hash device, not a file system",
        ));
    } else if buf.get(512..520) == Some(b"EFI PART") {
        return Err(FsError::Unsupported(
            "a GPT-partitioned disk image, not a file system",
        ));
    } else if buf.len() < MIN_PROBE {
        return Err(FsError::Truncated {
            what: "probing for a superblock",
            need: MIN_PROBE as u64,
            have: buf.len() as u64,
        });
    } else {
        return Err(FsError::Unknown);
    };
    if let Some(total) = total_len {
        if info.size_bytes > total {
            return Err(FsError::Truncated {
                what: match info.fstype {
                    FsType::Erofs => "the erofs file system",
                    FsType::Squashfs => "the squashfs file system",
                    FsType::Ext4 => "the ext file system",
                },
                need: info.size_bytes,
                have: total,
            });
        }
    }
    Ok(info)
}

fn erofs(buf: &[u8]) -> Result<FsInfo, FsError> {
    const FS: &str = "erofs";
    let sb = need(buf, EROFS_SB_OFFSET, EROFS_SB_MIN, "the erofs superblock")?;
    let blkszbits = sb.get(12).copied().unwrap_or(0);
    if !(9..=16).contains(&blkszbits) {
        return Err(invalid(
            FS,
            format!("block size bits {blkszbits} not in 9..=16"),
        ));
    }
    let block_size = 1u32 << blkszbits;
    let extslots = sb.get(13).copied().unwrap_or(0);
    let sb_size = EROFS_SB_MIN + usize::from(extslots) * 16;
    // The kernel wants the superblock inside the first 4 KiB page.
    if sb_size > 4096 - EROFS_SB_OFFSET {
        return Err(invalid(FS, format!("sb_extslots {extslots} too large")));
    }
    need(buf, EROFS_SB_OFFSET, sb_size, "the erofs superblock")?;
    let blocks = le_u32(sb, 36).unwrap_or(0);
    if blocks == 0 {
        return Err(invalid(FS, "block count is 0".into()));
    }
    let meta_blkaddr = le_u32(sb, 40).unwrap_or(0);
    if meta_blkaddr >= blocks {
        return Err(invalid(
            FS,
            format!("metadata block {meta_blkaddr} beyond the {blocks} blocks"),
        ));
    }
    let size_bytes = u64::from(blocks) * u64::from(block_size);
    // Root inode: 32-byte slots from the metadata block.
    let root_nid = u64::from(le_u16(sb, 14).unwrap_or(0));
    let root_at = u64::from(meta_blkaddr) * u64::from(block_size) + root_nid * 32;
    if root_at >= size_bytes {
        return Err(invalid(
            FS,
            format!("root inode {root_nid} lies beyond the file system's end"),
        ));
    }
    if le_u32(sb, 8).unwrap_or(0) & EROFS_COMPAT_SB_CHKSUM != 0
        && block_size > EROFS_SB_OFFSET as u32
    {
        // crc32c(~0) over the rest of block 0 from the superblock on, checksum zeroed.
        let len = block_size as usize - EROFS_SB_OFFSET;
        let area = need(buf, EROFS_SB_OFFSET, len, "the erofs superblock checksum")?;
        let stored = le_u32(area, 4).unwrap_or(0);
        let c = crc32c_raw(!0, area.get(..4).unwrap_or(&[]));
        let c = crc32c_raw(c, &[0; 4]);
        let computed = crc32c_raw(c, area.get(8..).unwrap_or(&[]));
        if computed != stored {
            return Err(invalid(
                FS,
                format!("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"),
            ));
        }
    }
    Ok(FsInfo {
        fstype: FsType::Erofs,
        variant: "erofs",
        block_size,
        size_bytes,
    })
}

fn squashfs(buf: &[u8]) -> Result<FsInfo, FsError> {
    const FS: &str = "squashfs";
    let sb = need(buf, 0, SQUASHFS_SB_SIZE, "the squashfs superblock")?;
    let (major, minor) = (le_u16(sb, 28).unwrap_or(0), le_u16(sb, 30).unwrap_or(0));
    if (major, minor) != (4, 0) {
        return Err(invalid(
            FS,
            format!("version {major}.{minor} (only 4.0 is supported)"),
        ));
    }
    let block_size = le_u32(sb, 12).unwrap_or(0);
    if !block_size.is_power_of_two() || !(4096..=1 << 20).contains(&block_size) {
        return Err(invalid(
            FS,
            format!("block size {block_size} is not a power of two in 4 KiB..=1 MiB"),
        ));
    }
    let block_log = le_u16(sb, 22).unwrap_or(0);
    if u32::from(block_log) != block_size.trailing_zeros() {
        return Err(invalid(
            FS,
            format!("block_log {block_log} does not match block size {block_size}"),
        ));
    }
    let compression = le_u16(sb, 20).unwrap_or(0);
    if !(1..=6).contains(&compression) {
        return Err(invalid(FS, format!("unknown compression id {compression}")));
    }
    let bytes_used = le_u64(sb, 40).unwrap_or(0);
    if bytes_used < SQUASHFS_SB_SIZE as u64 {
        return Err(invalid(FS, format!("bytes_used {bytes_used} is too small")));
    }
    let inodes = le_u32(sb, 4).unwrap_or(0);
    if inodes == 0 || u64::from(inodes) > bytes_used {
        return Err(invalid(
            FS,
            format!("inode count {inodes} impossible for {bytes_used} bytes"),
        ));
    }
    let inode_table = le_u64(sb, 64).unwrap_or(0);
    for (name, at) in [
        ("inode table", inode_table),
        ("directory table", le_u64(sb, 72).unwrap_or(0)),
        ("id table", le_u64(sb, 48).unwrap_or(0)),
    ] {
        if at < SQUASHFS_SB_SIZE as u64 || at >= bytes_used {
            return Err(invalid(
                FS,
                format!("{name} at {at} outside 96..{bytes_used}"),
            ));
        }
    }
    for (name, at) in [
        ("fragment table", le_u64(sb, 80).unwrap_or(0)),
        ("export table", le_u64(sb, 88).unwrap_or(0)),
        ("xattr table", le_u64(sb, 56).unwrap_or(0)),
    ] {
        if at != SQUASHFS_ABSENT && at >= bytes_used {
            return Err(invalid(
                FS,
                format!("{name} at {at} beyond bytes_used {bytes_used}"),
            ));
        }
    }
    let root = le_u64(sb, 32).unwrap_or(0);
    let (root_block, root_offset) = (root >> 16, root & 0xFFFF);
    if root_offset >= SQUASHFS_METADATA_SIZE
        || inode_table
            .checked_add(root_block)
            .filter(|&at| at < bytes_used)
            .is_none()
    {
        return Err(invalid(
            FS,
            format!("root inode reference {root:#x} is out of range"),
        ));
    }
    Ok(FsInfo {
        fstype: FsType::Squashfs,
        variant: "squashfs",
        block_size,
        size_bytes: bytes_used,
    })
}

fn ext(buf: &[u8]) -> Result<FsInfo, FsError> {
    const FS: &str = "ext4";
    let sb = need(buf, EXT_SB_OFFSET, EXT_SB_SIZE, "the ext superblock")?;
    let compat = le_u32(sb, 92).unwrap_or(0);
    let incompat = le_u32(sb, 96).unwrap_or(0);
    let ro_compat = le_u32(sb, 100).unwrap_or(0);
    if incompat & EXT_INCOMPAT_JOURNAL_DEV != 0 {
        return Err(FsError::Unsupported(
            "an external ext3/ext4 journal device, not a file system",
        ));
    }
    let log_block_size = le_u32(sb, 24).unwrap_or(0);
    if log_block_size > 6 {
        return Err(invalid(
            FS,
            format!("block size 1024 << {log_block_size} is above 64 KiB"),
        ));
    }
    let block_size = 1024u32 << log_block_size;
    let rev = le_u32(sb, 76).unwrap_or(0);
    if rev > 1 {
        return Err(invalid(FS, format!("revision {rev} unknown")));
    }
    let mut blocks = u64::from(le_u32(sb, 4).unwrap_or(0));
    if incompat & EXT_INCOMPAT_64BIT != 0 {
        blocks |= u64::from(le_u32(sb, 0x150).unwrap_or(0)) << 32;
    }
    let inodes = le_u32(sb, 0).unwrap_or(0);
    let first_data_block = le_u32(sb, 20).unwrap_or(0);
    let blocks_per_group = le_u32(sb, 32).unwrap_or(0);
    let inodes_per_group = le_u32(sb, 40).unwrap_or(0);
    if blocks == 0 || inodes == 0 {
        return Err(invalid(FS, format!("{blocks} blocks, {inodes} inodes")));
    }
    if u64::from(first_data_block) >= blocks {
        return Err(invalid(
            FS,
            format!("first data block {first_data_block} beyond {blocks} blocks"),
        ));
    }
    if blocks_per_group == 0 || blocks_per_group > block_size.saturating_mul(8) {
        return Err(invalid(
            FS,
            format!("{blocks_per_group} blocks per group with {block_size}-byte blocks"),
        ));
    }
    if inodes_per_group == 0 {
        return Err(invalid(FS, "0 inodes per group".into()));
    }
    if rev >= 1 {
        let inode_size = le_u16(sb, 88).unwrap_or(0);
        if inode_size < 128 || !inode_size.is_power_of_two() || u32::from(inode_size) > block_size {
            return Err(invalid(FS, format!("inode size {inode_size}")));
        }
    }
    if ro_compat & EXT_RO_COMPAT_METADATA_CSUM != 0 {
        let kind = sb.get(0x175).copied().unwrap_or(0);
        if kind != 1 {
            return Err(invalid(
                FS,
                format!("checksum type {kind} (only crc32c is known)"),
            ));
        }
        let stored = le_u32(sb, 0x3FC).unwrap_or(0);
        let computed = crc32c_raw(!0, sb.get(..0x3FC).unwrap_or(&[]));
        if stored != computed {
            return Err(invalid(
                FS,
                format!("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"),
            ));
        }
    }
    // As libblkid tells them apart.
    let variant = if incompat & !EXT3_INCOMPAT != 0 || ro_compat & !EXT3_RO_COMPAT != 0 {
        "ext4"
    } else if compat & EXT_COMPAT_HAS_JOURNAL != 0 {
        "ext3"
    } else {
        "ext2"
    };
    Ok(FsInfo {
        fstype: FsType::Ext4,
        variant,
        block_size,
        size_bytes: blocks.saturating_mul(u64::from(block_size)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    fn tool(name: &str) -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    }

    /// A small tree like an extension's: usr/ with a release file and a few files.
    fn tree(dir: &Path) -> PathBuf {
        let src = dir.join("src");
        let rel = src.join("usr/lib/extension-release.d");
        std::fs::create_dir_all(&rel).unwrap();
        std::fs::write(rel.join("extension-release.test"), "ID=_any\n").unwrap();
        std::fs::create_dir_all(src.join("usr/bin")).unwrap();
        std::fs::write(src.join("usr/bin/hello"), "#!/bin/sh\necho hello\n").unwrap();
        std::fs::write(src.join("usr/share.txt"), "x".repeat(20_000)).unwrap();
        src
    }

    /// Runs `name args...` to make `out`, returning its bytes, or None (with a note) when
    /// the tool is missing or refuses these options.
    fn make(name: &str, args: &[&str], out: &Path) -> Option<Vec<u8>> {
        let Some(exe) = tool(name) else {
            eprintln!("{name} not installed: skipping");
            return None;
        };
        let res = Command::new(exe).args(args).output().unwrap();
        if !res.status.success() {
            eprintln!(
                "{name} {args:?} failed, skipping: {}",
                String::from_utf8_lossy(&res.stderr)
            );
            return None;
        }
        Some(std::fs::read(out).unwrap())
    }

    fn head(img: &[u8]) -> &[u8] {
        &img[..img.len().min(PROBE_BYTES)]
    }

    fn put16(b: &mut [u8], off: usize, v: u16) {
        b[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn put32(b: &mut [u8], off: usize, v: u32) {
        b[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn put64(b: &mut [u8], off: usize, v: u64) {
        b[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }

    fn assert_invalid(res: Result<FsType, FsError>, fs: &str, part: &str) {
        match res {
            Err(FsError::Invalid { fs: f, why }) => {
                assert_eq!(f, fs);
                assert!(why.contains(part), "{why:?} lacks {part:?}");
            }
            other => panic!("want invalid {fs} ({part}), got {other:?}"),
        }
    }

    // ---- synthetic superblocks --------------------------------------------------------

    fn erofs_fix_csum(img: &mut [u8]) {
        let bs = 1usize << img[1024 + 12];
        put32(img, 1028, 0);
        let c = crc32c_raw(!0, &img[1024..bs]);
        put32(img, 1028, c);
    }

    /// One 4 KiB block: superblock, root inode right after it, checksummed.
    fn fake_erofs() -> Vec<u8> {
        let mut img = vec![0u8; 4096];
        put32(&mut img, 1024, EROFS_MAGIC);
        put32(&mut img, 1024 + 8, EROFS_COMPAT_SB_CHKSUM);
        img[1024 + 12] = 12;
        put16(&mut img, 1024 + 14, 36);
        put64(&mut img, 1024 + 16, 3);
        put32(&mut img, 1024 + 36, 1);
        erofs_fix_csum(&mut img);
        img
    }

    fn fake_squashfs() -> Vec<u8> {
        let mut img = vec![0u8; 4096];
        img[..4].copy_from_slice(b"hsqs");
        put32(&mut img, 4, 6); // inodes
        put32(&mut img, 12, 131_072); // block size
        put16(&mut img, 20, 1); // gzip
        put16(&mut img, 22, 17); // block_log
        put16(&mut img, 28, 4);
        put16(&mut img, 30, 0);
        put64(&mut img, 32, 0xA0); // root inode: block 0, offset 160
        put64(&mut img, 40, 355); // bytes_used
        put64(&mut img, 48, 347); // id table
        put64(&mut img, 56, u64::MAX); // no xattrs
        put64(&mut img, 64, 110); // inode table
        put64(&mut img, 72, 192); // directory table
        put64(&mut img, 80, 301); // fragments
        put64(&mut img, 88, 333); // export
        img
    }

    fn ext_fix_csum(img: &mut [u8]) {
        let c = crc32c_raw(!0, &img[1024..1024 + 0x3FC]);
        put32(img, 1024 + 0x3FC, c);
    }

    /// 1 MiB of 1 KiB blocks, ext4 features with metadata_csum.
    fn fake_ext4() -> Vec<u8> {
        let mut img = vec![0u8; 4096];
        let s = 1024;
        put32(&mut img, s, 256); // inodes
        put32(&mut img, s + 4, 1024); // blocks
        put32(&mut img, s + 20, 1); // first data block
        put32(&mut img, s + 24, 0); // 1 KiB blocks
        put32(&mut img, s + 32, 8192);
        put32(&mut img, s + 40, 256);
        put16(&mut img, s + 56, EXT_MAGIC);
        put32(&mut img, s + 76, 1);
        put16(&mut img, s + 88, 256);
        put32(&mut img, s + 92, EXT_COMPAT_HAS_JOURNAL);
        put32(&mut img, s + 96, 0x2 | 0x40); // filetype, extents
        put32(&mut img, s + 100, 0x1 | EXT_RO_COMPAT_METADATA_CSUM);
        img[s + 0x175] = 1;
        ext_fix_csum(&mut img);
        img
    }

    // ---- basics ----------------------------------------------------------------------

    #[test]
    fn crc32c_check_value() {
        assert_eq!(!crc32c_raw(!0, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn names() {
        assert_eq!(FsType::Erofs.fstype_name(), "erofs");
        assert_eq!(FsType::Squashfs.fstype_name(), "squashfs");
        assert_eq!(FsType::Ext4.fstype_name(), "ext4");
        assert_eq!(FsType::Squashfs.to_string(), "squashfs");
    }

    #[test]
    fn synthetic_superblocks_probe() {
        let info = inspect(&fake_erofs(), Some(4096)).unwrap();
        assert_eq!(
            (info.fstype, info.block_size, info.size_bytes),
            (FsType::Erofs, 4096, 4096)
        );
        let info = inspect(&fake_squashfs(), Some(4096)).unwrap();
        assert_eq!(
            (info.fstype, info.block_size, info.size_bytes),
            (FsType::Squashfs, 131_072, 355)
        );
        let info = inspect(&fake_ext4(), Some(1 << 20)).unwrap();
        assert_eq!(
            (info.fstype, info.variant, info.block_size, info.size_bytes),
            (FsType::Ext4, "ext4", 1024, 1 << 20)
        );
    }

    // ---- real images -------------------------------------------------------------------

    #[test]
    fn erofs_from_mkfs() {
        let dir = tempfile::tempdir().unwrap();
        let src = tree(dir.path());
        for (name, extra) in [("plain", &[][..]), ("lz4hc", &["-zlz4hc"][..])] {
            let out = dir.path().join(format!("{name}.erofs"));
            let mut args: Vec<&str> = extra.to_vec();
            args.extend([out.to_str().unwrap(), src.to_str().unwrap()]);
            let Some(img) = make("mkfs.erofs", &args, &out) else {
                continue;
            };
            let len = img.len() as u64;
            assert_eq!(probe(head(&img)).unwrap(), FsType::Erofs, "{name}");
            let info = inspect(head(&img), Some(len)).unwrap();
            assert_eq!(info.size_bytes, len, "{name}");
            assert_eq!(info.variant, "erofs");
            assert!(matches!(
                probe_with_size(head(&img), len - 1),
                Err(FsError::Truncated { have, .. }) if have == len - 1
            ));
            // The checksum covers the block: one flipped byte in it is caught.
            if le_u32(&img, 1024 + 8).unwrap() & EROFS_COMPAT_SB_CHKSUM != 0 {
                let mut bad = img.clone();
                bad[1024 + 200] ^= 1;
                assert_invalid(probe(head(&bad)), "erofs", "checksum");
            }
        }
    }

    #[test]
    fn squashfs_from_mksquashfs() {
        let dir = tempfile::tempdir().unwrap();
        let src = tree(dir.path());
        for comp in ["gzip", "xz", "zstd", "lz4"] {
            let out = dir.path().join(format!("{comp}.squashfs"));
            let args = [
                src.to_str().unwrap(),
                out.to_str().unwrap(),
                "-noappend",
                "-quiet",
                "-no-progress",
                "-comp",
                comp,
            ];
            let Some(img) = make("mksquashfs", &args, &out) else {
                continue;
            };
            let len = img.len() as u64;
            assert_eq!(probe(head(&img)).unwrap(), FsType::Squashfs, "{comp}");
            let info = inspect(head(&img), Some(len)).unwrap();
            assert_eq!(info.size_bytes, le_u64(&img, 40).unwrap());
            assert_eq!(info.block_size, 128 * 1024);
            let used = info.size_bytes;
            assert!(matches!(
                probe_with_size(head(&img), used - 1),
                Err(FsError::Truncated { need, .. }) if need == used
            ));
        }
    }

    #[test]
    fn ext_from_mke2fs() {
        let dir = tempfile::tempdir().unwrap();
        let src = tree(dir.path());
        let src = src.to_str().unwrap();
        for (want, args) in [
            ("ext4", &["-t", "ext4", "-d", src][..]),
            (
                "ext4",
                &["-t", "ext4", "-b", "1024", "-O", "^metadata_csum"][..],
            ),
            ("ext4", &["-t", "ext4", "-b", "4096", "-O", "64bit"][..]),
            ("ext3", &["-t", "ext3"][..]),
            ("ext2", &["-t", "ext2", "-d", src][..]),
        ] {
            let out = dir.path().join(format!("{want}.img"));
            let _ = std::fs::remove_file(&out);
            let mut all: Vec<&str> = vec!["-F", "-q"];
            all.extend(args);
            all.extend([out.to_str().unwrap(), "4M"]);
            let Some(img) = make("mke2fs", &all, &out) else {
                continue;
            };
            let len = img.len() as u64;
            let info = inspect(head(&img), Some(len)).unwrap();
            assert_eq!(
                (info.fstype, info.variant),
                (FsType::Ext4, want),
                "{args:?}"
            );
            assert_eq!(info.size_bytes, len, "{args:?}");
            assert_eq!(probe(head(&img)).unwrap(), FsType::Ext4);
            assert!(matches!(
                probe_with_size(head(&img), len / 2),
                Err(FsError::Truncated { .. })
            ));
            if le_u32(&img, 1024 + 100).unwrap() & EXT_RO_COMPAT_METADATA_CSUM != 0 {
                let mut bad = img.clone();
                bad[1024 + 120] ^= 1; // volume name
                assert_invalid(probe(head(&bad)), "ext4", "checksum");
            }
        }
    }

    // ---- truncated, empty, foreign ------------------------------------------------------

    #[test]
    fn truncated_inputs() {
        for len in [0, 1, 100, 1023, 2047] {
            let err = probe(&vec![0u8; len]).unwrap_err();
            assert!(
                matches!(err, FsError::Truncated { have, need: 2048, .. } if have == len as u64),
                "{len}: {err:?}"
            );
            assert!(err.to_string().starts_with("truncated"));
        }
        let sq = fake_squashfs();
        for len in [4, 10, 95] {
            let err = probe(&sq[..len]).unwrap_err();
            assert!(
                matches!(
                    err,
                    FsError::Truncated {
                        what: "the squashfs superblock",
                        need: 96,
                        ..
                    }
                ),
                "{len}: {err:?}"
            );
        }
        let e = fake_erofs();
        for len in [1028, 1100, 1151] {
            assert!(matches!(
                probe(&e[..len]),
                Err(FsError::Truncated {
                    what: "the erofs superblock",
                    ..
                })
            ));
        }
        // Superblock whole but the checksummed block cut short.
        assert!(matches!(
            probe(&e[..2048]),
            Err(FsError::Truncated {
                what: "the erofs superblock checksum",
                need: 4096,
                ..
            })
        ));
        let x = fake_ext4();
        for len in [1082, 1500, 2047] {
            assert!(matches!(
                probe(&x[..len]),
                Err(FsError::Truncated {
                    what: "the ext superblock",
                    need: 2048,
                    ..
                })
            ));
        }
    }

    #[test]
    fn zeroed_and_random_data_are_unknown() {
        let err = probe(&vec![0u8; PROBE_BYTES]).unwrap_err();
        assert_eq!(err, FsError::Unknown);
        let msg = err.to_string();
        for part in ["erofs", "squashfs", "ext2/3/4", "0xE0F5E1E2", "0xEF53"] {
            assert!(msg.contains(part), "{msg}");
        }
        let mut rng = XorShift(0xDEAD_BEEF_1234_5678);
        for _ in 0..iterations(20) {
            let data: Vec<u8> = (0..PROBE_BYTES).map(|_| rng.next() as u8).collect();
            assert_eq!(probe(&data), Err(FsError::Unknown));
        }
    }

    #[test]
    fn recognised_but_unsupported() {
        let mut b = vec![0u8; 4096];
        b[..6].copy_from_slice(b"LUKS\xBA\xBE");
        assert!(matches!(probe(&b), Err(FsError::Unsupported(w)) if w.contains("LUKS")));
        let mut b = vec![0u8; 4096];
        b[..8].copy_from_slice(b"verity\0\0");
        assert!(matches!(probe(&b), Err(FsError::Unsupported(w)) if w.contains("verity")));
        let mut b = vec![0u8; 4096];
        b[512..520].copy_from_slice(b"EFI PART");
        assert!(matches!(probe(&b), Err(FsError::Unsupported(w)) if w.contains("GPT")));
        let mut b = fake_ext4();
        put32(&mut b, 1024 + 96, EXT_INCOMPAT_JOURNAL_DEV);
        assert!(matches!(probe(&b), Err(FsError::Unsupported(w)) if w.contains("journal")));
    }

    // ---- broken fields ----------------------------------------------------------------

    #[test]
    fn erofs_broken_fields() {
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut img = fake_erofs();
            f(&mut img);
            if img[1024 + 12] >= 11 && img[1024 + 12] <= 12 {
                erofs_fix_csum(&mut img);
            }
            probe(&img)
        };
        assert_invalid(with(&|i| i[1024 + 12] = 8), "erofs", "block size bits 8");
        assert_invalid(with(&|i| i[1024 + 12] = 17), "erofs", "block size bits 17");
        assert_invalid(with(&|i| i[1024 + 12] = 255), "erofs", "block size bits");
        assert_invalid(with(&|i| i[1024 + 13] = 255), "erofs", "sb_extslots");
        assert_invalid(with(&|i| put32(i, 1024 + 36, 0)), "erofs", "block count");
        assert_invalid(with(&|i| put32(i, 1024 + 40, 7)), "erofs", "metadata block");
        assert_invalid(with(&|i| put16(i, 1024 + 14, 200)), "erofs", "root inode");
        let mut img = fake_erofs();
        img[1024 + 64] = b'x'; // volume name, checksum not fixed
        assert_invalid(probe(&img), "erofs", "checksum mismatch");
        // Without the checksum feature the same change is accepted.
        put32(&mut img, 1024 + 8, 0);
        assert_eq!(probe(&img), Ok(FsType::Erofs));
        // Bigger blocks than the file holds.
        let img = fake_erofs();
        assert!(matches!(
            probe_with_size(&img, 4095),
            Err(FsError::Truncated {
                need: 4096,
                have: 4095,
                ..
            })
        ));
    }

    #[test]
    fn squashfs_broken_fields() {
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut img = fake_squashfs();
            f(&mut img);
            probe(&img)
        };
        assert_invalid(with(&|i| put16(i, 28, 3)), "squashfs", "version 3.0");
        assert_invalid(with(&|i| put16(i, 30, 1)), "squashfs", "version 4.1");
        assert_invalid(
            with(&|i| put32(i, 12, 100_000)),
            "squashfs",
            "block size 100000",
        );
        assert_invalid(with(&|i| put32(i, 12, 2 << 20)), "squashfs", "block size");
        assert_invalid(with(&|i| put32(i, 12, 0)), "squashfs", "block size 0");
        assert_invalid(with(&|i| put16(i, 22, 16)), "squashfs", "block_log 16");
        assert_invalid(with(&|i| put16(i, 20, 9)), "squashfs", "compression id 9");
        assert_invalid(with(&|i| put16(i, 20, 0)), "squashfs", "compression id 0");
        assert_invalid(with(&|i| put64(i, 40, 10)), "squashfs", "bytes_used 10");
        assert_invalid(with(&|i| put32(i, 4, 0)), "squashfs", "inode count 0");
        assert_invalid(with(&|i| put32(i, 4, 100_000)), "squashfs", "inode count");
        assert_invalid(with(&|i| put64(i, 64, 355)), "squashfs", "inode table");
        assert_invalid(
            with(&|i| put64(i, 72, u64::MAX)),
            "squashfs",
            "directory table",
        );
        assert_invalid(with(&|i| put64(i, 48, 5)), "squashfs", "id table");
        assert_invalid(with(&|i| put64(i, 80, 1000)), "squashfs", "fragment table");
        assert_invalid(
            with(&|i| put64(i, 32, 0xFFFF_0000)),
            "squashfs",
            "root inode",
        );
        assert_invalid(with(&|i| put64(i, 32, 0x2000)), "squashfs", "root inode");
        assert_invalid(with(&|i| put64(i, 32, u64::MAX)), "squashfs", "root inode");
        // bytes_used is what must fit in the file.
        let img = fake_squashfs();
        assert_eq!(probe_with_size(&img, 355), Ok(FsType::Squashfs));
        assert!(matches!(
            probe_with_size(&img, 354),
            Err(FsError::Truncated {
                need: 355,
                have: 354,
                ..
            })
        ));
    }

    #[test]
    fn ext_broken_fields() {
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut img = fake_ext4();
            f(&mut img);
            ext_fix_csum(&mut img);
            probe(&img)
        };
        let s = 1024;
        assert_invalid(with(&|i| put32(i, s + 24, 7)), "ext4", "block size");
        assert_invalid(with(&|i| put32(i, s + 24, u32::MAX)), "ext4", "block size");
        assert_invalid(with(&|i| put32(i, s + 4, 0)), "ext4", "0 blocks");
        assert_invalid(with(&|i| put32(i, s, 0)), "ext4", "0 inodes");
        assert_invalid(
            with(&|i| put32(i, s + 20, 5000)),
            "ext4",
            "first data block",
        );
        assert_invalid(with(&|i| put32(i, s + 32, 0)), "ext4", "blocks per group");
        assert_invalid(
            with(&|i| put32(i, s + 32, 8193)),
            "ext4",
            "blocks per group",
        );
        assert_invalid(with(&|i| put32(i, s + 40, 0)), "ext4", "inodes per group");
        assert_invalid(with(&|i| put32(i, s + 76, 2)), "ext4", "revision 2");
        assert_invalid(with(&|i| put16(i, s + 88, 100)), "ext4", "inode size 100");
        assert_invalid(with(&|i| put16(i, s + 88, 2048)), "ext4", "inode size 2048");
        assert_invalid(with(&|i| i[s + 0x175] = 2), "ext4", "checksum type 2");
        let mut img = fake_ext4();
        img[s + 120] = b'x';
        assert_invalid(probe(&img), "ext4", "checksum mismatch");
        // Without metadata_csum the checksum field is not looked at; journal → ext3.
        let mut img = fake_ext4();
        put32(&mut img, s + 96, 0x2);
        put32(&mut img, s + 100, 0x1);
        put32(&mut img, s + 0x3FC, 0);
        assert_eq!(inspect(&img, None).unwrap().variant, "ext3");
        put32(&mut img, s + 92, 0);
        assert_eq!(inspect(&img, None).unwrap().variant, "ext2");
        // 64-bit block counts use the high word.
        let mut img = fake_ext4();
        put32(&mut img, s + 96, 0x2 | 0x40 | EXT_INCOMPAT_64BIT);
        put32(&mut img, s + 0x150, 1);
        ext_fix_csum(&mut img);
        let info = inspect(&img, None).unwrap();
        assert_eq!(info.size_bytes, ((1u64 << 32) + 1024) * 1024);
        assert!(matches!(
            probe_with_size(&img, 1 << 20),
            Err(FsError::Truncated {
                what: "the ext file system",
                ..
            })
        ));
    }

    // ---- fuzz-like ---------------------------------------------------------------------

    use crate::testutil::{iterations, XorShift};

    #[test]
    fn random_byte_flips_never_panic() {
        let bases = [fake_erofs(), fake_squashfs(), fake_ext4()];
        let mut rng = XorShift(0x0123_4567_89AB_CDEF);
        let (mut ok, n) = (0, iterations(3000));
        for iter in 0..n {
            let mut img = bases[iter % 3].clone();
            for _ in 0..=rng.below(6) {
                // Mostly the superblocks (0..96 and 1024..2048).
                let pos = match rng.below(4) {
                    0 => rng.below(96),
                    1 | 2 => 1024 + rng.below(1024),
                    _ => rng.below(img.len() as u64),
                } as usize;
                img[pos] ^= (rng.below(255) + 1) as u8;
            }
            if rng.below(2) == 0 {
                match iter % 3 {
                    0 if (9..=12).contains(&img[1024 + 12]) => erofs_fix_csum(&mut img),
                    2 => ext_fix_csum(&mut img),
                    _ => {}
                }
            }
            if rng.below(8) == 0 {
                img.truncate(rng.below(img.len() as u64) as usize);
            }
            let total = rng.next() >> rng.below(64);
            if inspect(&img, None).is_ok() {
                ok += 1;
            }
            let _ = inspect(&img, Some(total));
        }
        eprintln!("fs fuzz: {ok} of {n} accepted");
        assert!(
            ok >= n / 30,
            "the fuzz loop should get past the magic checks ({ok})"
        );
    }
}
