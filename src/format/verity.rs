//! dm-verity metadata, as pure parsers: cryptsetup's on-disk verity superblock
//! (`struct verity_sb` in cryptsetup's `lib/verity/verity.c`), the hash tree geometry
//! (`hash_levels` in `verity_hash.c`), the kernel's dm-verity table line
//! (`Documentation/admin-guide/device-mapper/verity.rst`), root hashes as systemd reads
//! them (`.roothash` sidecars, `unhexmem`) and the JSON of `*-verity-sig` partitions
//! (`dissected_image_load_verity_sig_partition` in systemd's `dissect-image.c`).
//!
//! Nothing here touches a device: callers read the bytes, these functions judge them.

use std::fmt;

use super::bytes::{le_u16, le_u32, le_u64};
use super::json;
use super::text::{base64_decode, hex_decode, hex_encode};

/// Size of the verity superblock (and of what [`VeritySuperblock::parse`] reads).
pub const SUPERBLOCK_SIZE: usize = 512;
/// Largest salt the superblock can hold.
pub const MAX_SALT_SIZE: usize = 256;
/// Smallest root hash systemd accepts (`sizeof(sd_id128_t)`).
pub const MIN_ROOT_HASH_SIZE: usize = 16;
/// Largest root hash we accept (a SHA-512 digest).
pub const MAX_ROOT_HASH_SIZE: usize = 64;
/// Largest signature partition systemd reads (4 MiB); larger ones are refused.
pub const MAX_SIG_PARTITION_SIZE: usize = 4 * 1024 * 1024;
/// Largest JSON text accepted in a signature partition (before the NUL padding).
pub const MAX_SIG_JSON_SIZE: usize = 64 * 1024;
/// Deepest nesting of JSON arrays/objects accepted (the top object counts as 1).
pub const MAX_JSON_DEPTH: usize = 16;
/// Longest key description accepted for `root_hash_sig_key_desc` (keyctl's limit).
const MAX_KEY_DESC: usize = 4095;

const SIGNATURE: &[u8; 8] = b"verity\0\0";
/// Highest hash format cryptsetup knows (`VERITY_MAX_HASH_TYPE`): 0 Chrome OS, 1 normal.
const MAX_HASH_TYPE: u32 = 1;
/// Highest tree depth cryptsetup allows (`VERITY_MAX_LEVELS`).
const MAX_LEVELS: u32 = 63;

/// Why verity metadata was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerityError {
    /// Fewer bytes than a superblock.
    #[error("verity superblock too short: {0} bytes, need 512")]
    TooShort(usize),
    /// The magic `verity\0\0` is missing.
    #[error("no verity superblock signature")]
    BadSignature,
    /// Superblock version other than 1.
    #[error("unsupported verity superblock version {0}")]
    UnsupportedVersion(u32),
    /// Hash format other than 0 or 1.
    #[error("unsupported verity hash type {0}")]
    UnsupportedHashType(u32),
    /// A block size that is not a power of two in 512..=512 KiB.
    #[error("unsupported verity {which} block size {size}")]
    BadBlockSize {
        /// `data` or `hash`.
        which: &'static str,
        /// The size found.
        size: u32,
    },
    /// A hash algorithm we cannot name a digest size for.
    #[error("unsupported verity hash algorithm {0:?}")]
    UnknownAlgorithm(String),
    /// Salt size larger than the superblock's salt field.
    #[error("verity salt size {0} exceeds 256 bytes")]
    SaltTooLong(u16),
    /// Zero data blocks.
    #[error("verity device has no data blocks")]
    NoDataBlocks,
    /// A size or offset does not fit in 64 bits.
    #[error("verity sizes overflow 64 bits")]
    SizeOverflow,
    /// The superblock offset is not a multiple of 512.
    #[error("verity superblock offset {0} is not a multiple of 512")]
    BadSuperblockOffset(u64),
    /// Block and digest sizes that cannot form a hash tree.
    #[error("no verity hash tree possible with {hash_block_size}-byte blocks and {digest_size}-byte digests")]
    BadTreeGeometry {
        /// Hash block size given.
        hash_block_size: u32,
        /// Digest size given.
        digest_size: usize,
    },
    /// Root hash outside 16..=64 bytes.
    #[error("root hash has {0} bytes, need 16 to 64")]
    RootHashLength(usize),
    /// Root hash length differs from the algorithm's digest size.
    #[error("root hash has {len} bytes, but {algorithm} digests have {digest}")]
    DigestMismatch {
        /// Root hash length.
        len: usize,
        /// Algorithm name.
        algorithm: &'static str,
        /// Its digest size.
        digest: usize,
    },
    /// Text that is not hex.
    #[error("invalid hex: {0}")]
    BadHex(&'static str),
    /// Text that is not base64.
    #[error("invalid base64: {0}")]
    BadBase64(&'static str),
    /// A key description that cannot be one word of a dm table line.
    #[error("invalid root hash signature key description {0:?}")]
    BadKeyDescription(String),
    /// Signature partition larger than 4 MiB.
    #[error("verity signature partition too large: {0} bytes")]
    SigPartitionTooLarge(usize),
    /// Signature partition empty or starting with NUL.
    #[error("verity signature partition holds no JSON")]
    SigNoJson,
    /// Non-NUL bytes after the NUL padding started.
    #[error("verity signature data has bytes after its NUL padding")]
    SigGarbageAfterNul,
    /// JSON text longer than [`MAX_SIG_JSON_SIZE`].
    #[error("verity signature JSON too large: {0} bytes")]
    SigJsonTooLarge(usize),
    /// JSON text that is not UTF-8.
    #[error("verity signature JSON is not valid UTF-8")]
    SigNotUtf8,
    /// JSON syntax error at a byte offset.
    #[error("verity signature JSON: {reason} at byte {offset}")]
    Json {
        /// Byte offset into the JSON text.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// The same top-level key twice.
    #[error("verity signature JSON has key {0:?} twice")]
    DuplicateKey(String),
    /// A required field is missing.
    #[error("verity signature JSON lacks the {0:?} field")]
    MissingField(&'static str),
    /// A field is not a string.
    #[error("verity signature JSON field {0:?} is not a string")]
    NotAString(&'static str),
    /// The `signature` field decodes to nothing.
    #[error("verity signature JSON has an empty signature")]
    EmptySignature,
    /// A root hash signature that is no DER-encoded PKCS#7 `SignedData`.
    #[error("root hash signature is not a PKCS#7 signature: {0}")]
    NotPkcs7(&'static str),
}

/// Hash algorithms with a known digest size. cryptsetup accepts whatever its crypto
/// backend knows; we accept the SHA-1/SHA-2 family (DDIs use sha256).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// `sha1`, 20-byte digests.
    Sha1,
    /// `sha224`, 28-byte digests.
    Sha224,
    /// `sha256`, 32-byte digests.
    Sha256,
    /// `sha384`, 48-byte digests.
    Sha384,
    /// `sha512`, 64-byte digests.
    Sha512,
}

impl HashAlgorithm {
    /// The kernel crypto API name, as written in superblocks and dm tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha224 => "sha224",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    /// Digest size in bytes (what the root hash length must be).
    pub fn digest_size(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha224 => 28,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// Looks an algorithm up by its (lower-case) kernel name.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::Sha1,
            Self::Sha224,
            Self::Sha256,
            Self::Sha384,
            Self::Sha512,
        ]
        .into_iter()
        .find(|a| a.name() == name)
    }
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// cryptsetup's verity superblock: the 512 bytes at the start of a hash partition or
/// `.verity` file, describing the tree that follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VeritySuperblock {
    /// Hash format: 0 Chrome OS (salt appended), 1 normal (salt prepended).
    pub hash_type: u32,
    /// UUID of the hash device (binary).
    pub uuid: [u8; 16],
    /// Digest algorithm.
    pub algorithm: HashAlgorithm,
    /// Data block size in bytes.
    pub data_block_size: u32,
    /// Hash block size in bytes.
    pub hash_block_size: u32,
    /// Number of data blocks covered.
    pub data_blocks: u64,
    /// Salt (0..=256 bytes).
    pub salt: Vec<u8>,
}

/// `VERITY_BLOCK_SIZE_OK`: a power of two from 512 bytes to 512 KiB.
fn block_size_ok(x: u32) -> bool {
    (512..=512 * 1024).contains(&x) && x.is_power_of_two()
}

impl VeritySuperblock {
    /// Parses and checks a superblock like cryptsetup's `VERITY_read_sb` (only the first 512
    /// bytes of `buf` are looked at), plus: a known algorithm, data blocks present, and
    /// `data_blocks × data_block_size` fitting 64 bits.
    pub fn parse(buf: &[u8]) -> Result<Self, VerityError> {
        let b = buf
            .get(..SUPERBLOCK_SIZE)
            .ok_or(VerityError::TooShort(buf.len()))?;
        if &b[..8] != SIGNATURE {
            return Err(VerityError::BadSignature);
        }
        let version = le_u32(b, 8).unwrap_or(0);
        if version != 1 {
            return Err(VerityError::UnsupportedVersion(version));
        }
        let hash_type = le_u32(b, 12).unwrap_or(0);
        if hash_type > MAX_HASH_TYPE {
            return Err(VerityError::UnsupportedHashType(hash_type));
        }
        let data_block_size = le_u32(b, 64).unwrap_or(0);
        let hash_block_size = le_u32(b, 68).unwrap_or(0);
        for (which, size) in [("data", data_block_size), ("hash", hash_block_size)] {
            if !block_size_ok(size) {
                return Err(VerityError::BadBlockSize { which, size });
            }
        }
        let data_blocks = le_u64(b, 72).unwrap_or(0);
        // strndup(algorithm, 32): up to the first NUL, or all 32 bytes.
        let alg_field = &b[32..64];
        let alg_len = memchr::memchr(0, alg_field).unwrap_or(alg_field.len());
        let alg_bytes = &alg_field[..alg_len];
        let algorithm = std::str::from_utf8(alg_bytes)
            .ok()
            .and_then(HashAlgorithm::from_name)
            .ok_or_else(|| {
                VerityError::UnknownAlgorithm(String::from_utf8_lossy(alg_bytes).into_owned())
            })?;
        let salt_size = le_u16(b, 80).unwrap_or(0);
        if usize::from(salt_size) > MAX_SALT_SIZE {
            return Err(VerityError::SaltTooLong(salt_size));
        }
        if data_blocks == 0 {
            return Err(VerityError::NoDataBlocks);
        }
        data_blocks
            .checked_mul(u64::from(data_block_size))
            .ok_or(VerityError::SizeOverflow)?;
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[16..32]);
        Ok(Self {
            hash_type,
            uuid,
            algorithm,
            data_block_size,
            hash_block_size,
            data_blocks,
            salt: b[88..88 + usize::from(salt_size)].to_vec(),
        })
    }

    /// The UUID in the usual `8-4-4-4-12` lower-case form (as `veritysetup dump` shows it).
    pub fn uuid_string(&self) -> String {
        let h = hex_encode(&self.uuid);
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }

    /// Bytes of data covered (`data_blocks × data_block_size`).
    pub fn data_size(&self) -> Result<u64, VerityError> {
        self.data_blocks
            .checked_mul(u64::from(self.data_block_size))
            .ok_or(VerityError::SizeOverflow)
    }

    /// Length of the dm target in 512-byte sectors (what `DM_TABLE_LOAD` needs).
    pub fn data_sectors(&self) -> Result<u64, VerityError> {
        Ok(self.data_size()? / 512)
    }

    /// Number of hash blocks in the tree ([`hash_tree_size`] for this superblock).
    pub fn hash_blocks(&self) -> Result<u64, VerityError> {
        hash_tree_size(
            self.data_blocks,
            self.hash_block_size,
            self.algorithm.digest_size(),
        )
    }

    /// The first hash-tree block, in hash blocks from the start of the hash device, when
    /// this superblock sits at byte `superblock_offset` (`VERITY_hash_offset_block`: the
    /// tree starts at the next hash block boundary after the superblock).
    pub fn hash_start_block(&self, superblock_offset: u64) -> Result<u64, VerityError> {
        if superblock_offset & 511 != 0 {
            return Err(VerityError::BadSuperblockOffset(superblock_offset));
        }
        let bs = u64::from(self.hash_block_size);
        let end = superblock_offset
            .checked_add(SUPERBLOCK_SIZE as u64 + bs - 1)
            .ok_or(VerityError::SizeOverflow)?;
        Ok(end / bs)
    }

    /// Bytes the hash device must have: superblock, padding and the whole tree. A hash
    /// partition or `.verity` file smaller than this is truncated.
    pub fn hash_device_size(&self, superblock_offset: u64) -> Result<u64, VerityError> {
        self.hash_start_block(superblock_offset)?
            .checked_add(self.hash_blocks()?)
            .and_then(|blocks| blocks.checked_mul(u64::from(self.hash_block_size)))
            .ok_or(VerityError::SizeOverflow)
    }
}

/// The number of hash blocks a dm-verity tree over `data_blocks` blocks needs, computed
/// level by level like cryptsetup's `hash_levels` (and the kernel): each hash block holds
/// `2^floor(log2(hash_block_size / digest_size))` digests; a single data block needs no
/// tree at all (its digest is the root hash).
pub fn hash_tree_size(
    data_blocks: u64,
    hash_block_size: u32,
    digest_size: usize,
) -> Result<u64, VerityError> {
    if data_blocks == 0 {
        return Err(VerityError::NoDataBlocks);
    }
    let geometry = VerityError::BadTreeGeometry {
        hash_block_size,
        digest_size,
    };
    if digest_size == 0 {
        return Err(geometry);
    }
    let per_block = usize::try_from(hash_block_size).unwrap_or(usize::MAX) / digest_size;
    // get_bits_down: floor(log2(per_block)), 0 for 0 or 1.
    let bits = if per_block > 1 { per_block.ilog2() } else { 0 };
    if bits == 0 {
        return Err(geometry);
    }
    let last = data_blocks - 1;
    let mut levels = 0u32;
    while bits * levels < 64 && (last >> (bits * levels)) != 0 {
        levels += 1;
    }
    if levels > MAX_LEVELS {
        return Err(geometry);
    }
    let mut total = 0u64;
    for level in 0..levels {
        let shift = (level + 1) * bits;
        // Blocks of this level: ceil(data_blocks / 2^shift).
        let blocks = if shift >= 64 {
            1
        } else {
            (data_blocks >> shift) + u64::from(data_blocks & ((1u64 << shift) - 1) != 0)
        };
        total = total.checked_add(blocks).ok_or(VerityError::SizeOverflow)?;
    }
    Ok(total)
}

/// The dm-verity table parameters for `DM_TABLE_LOAD` (kernel `verity.rst`):
/// `<version> <data_dev> <hash_dev> <data_block_size> <hash_block_size> <num_data_blocks>
/// <hash_start_block> <algorithm> <digest> <salt>` with devices as `major:minor`, the salt
/// in hex or `-` when empty, then, with a key description, the optional-argument count and
/// `root_hash_sig_key_desc <desc>` (the kernel checks the PKCS#7 signature in that user
/// key against its trusted keyrings).
pub fn target_params(
    sb: &VeritySuperblock,
    data_dev: u64,
    hash_dev: u64,
    hash_start_block: u64,
    root_hash: &RootHash,
    root_hash_sig_key_desc: Option<&str>,
) -> Result<String, VerityError> {
    root_hash.check_algorithm(sb.algorithm)?;
    sb.data_size()?;
    hash_start_block
        .checked_mul(u64::from(sb.hash_block_size))
        .ok_or(VerityError::SizeOverflow)?;
    let salt = if sb.salt.is_empty() {
        "-".to_string()
    } else {
        hex_encode(&sb.salt)
    };
    let mut s = format!(
        "{} {}:{} {}:{} {} {} {} {} {} {} {}",
        sb.hash_type,
        rustix::fs::major(data_dev),
        rustix::fs::minor(data_dev),
        rustix::fs::major(hash_dev),
        rustix::fs::minor(hash_dev),
        sb.data_block_size,
        sb.hash_block_size,
        sb.data_blocks,
        hash_start_block,
        sb.algorithm,
        root_hash,
        salt
    );
    if let Some(desc) = root_hash_sig_key_desc {
        let ok = !desc.is_empty()
            && desc.len() <= MAX_KEY_DESC
            && desc.bytes().all(|c| c.is_ascii_graphic() && c != b'\\');
        if !ok {
            let shown: String = desc.chars().take(64).collect();
            return Err(VerityError::BadKeyDescription(shown));
        }
        s.push_str(" 2 root_hash_sig_key_desc ");
        s.push_str(desc);
    }
    Ok(s)
}

/// A dm-verity root hash (16 to 64 bytes), printed as lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RootHash(Vec<u8>);

impl RootHash {
    /// Takes raw bytes, checking the length like systemd (at least 16 bytes) and our
    /// upper bound (a SHA-512 digest).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VerityError> {
        if !(MIN_ROOT_HASH_SIZE..=MAX_ROOT_HASH_SIZE).contains(&bytes.len()) {
            return Err(VerityError::RootHashLength(bytes.len()));
        }
        Ok(Self(bytes.to_vec()))
    }

    /// Parses hex like systemd's `unhexmem`: either case, whitespace between digits
    /// skipped, an odd digit count refused.
    pub fn from_hex(s: &str) -> Result<Self, VerityError> {
        let bytes = hex_decode(s, MAX_ROOT_HASH_SIZE + 1).map_err(VerityError::BadHex)?;
        Self::from_bytes(&bytes)
    }

    /// Parses a `.roothash`/`.usrhash` sidecar (or the `user.verity.roothash` xattr): the
    /// first line only (`read_one_line_file`), surrounding whitespace ignored.
    pub fn from_sidecar(content: &[u8]) -> Result<Self, VerityError> {
        let end = content
            .iter()
            .position(|&c| matches!(c, b'\n' | b'\r' | 0))
            .unwrap_or(content.len());
        let line =
            std::str::from_utf8(&content[..end]).map_err(|_| VerityError::BadHex("not text"))?;
        Self::from_hex(line)
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Checks that the length matches `algorithm`'s digest size (the kernel refuses others).
    pub fn check_algorithm(&self, algorithm: HashAlgorithm) -> Result<(), VerityError> {
        if self.0.len() == algorithm.digest_size() {
            Ok(())
        } else {
            Err(VerityError::DigestMismatch {
                len: self.0.len(),
                algorithm: algorithm.name(),
                digest: algorithm.digest_size(),
            })
        }
    }
}

impl fmt::Display for RootHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex_encode(&self.0))
    }
}

/// The content of a `root-verity-sig`/`usr-verity-sig` partition: a JSON object with the
/// root hash and its PKCS#7 signature, NUL-padded to the partition size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VeritySig {
    /// `rootHash`: the signed root hash.
    pub root_hash: RootHash,
    /// `certificateFingerprint`: SHA-256 of the signing certificate, when given.
    pub certificate_fingerprint: Option<Vec<u8>>,
    /// `signature`: the detached PKCS#7 signature (DER).
    pub signature: Vec<u8>,
}

impl VeritySig {
    /// Parses a signature partition like `dissected_image_load_verity_sig_partition`: at
    /// most 4 MiB; JSON text up to the first NUL (or the whole partition if none), every
    /// byte after it NUL; a JSON object with string fields `rootHash` (hex) and `signature`
    /// (base64), `certificateFingerprint` (hex) optional, other fields ignored.
    pub fn parse_json(partition: &[u8]) -> Result<Self, VerityError> {
        if partition.len() > MAX_SIG_PARTITION_SIZE {
            return Err(VerityError::SigPartitionTooLarge(partition.len()));
        }
        let text = match memchr::memchr(0, partition) {
            Some(nul) => {
                if partition[nul..].iter().any(|&b| b != 0) {
                    return Err(VerityError::SigGarbageAfterNul);
                }
                &partition[..nul]
            }
            None => partition,
        };
        if text.is_empty() {
            return Err(VerityError::SigNoJson);
        }
        if text.len() > MAX_SIG_JSON_SIZE {
            return Err(VerityError::SigJsonTooLarge(text.len()));
        }
        let text = std::str::from_utf8(text).map_err(|_| VerityError::SigNotUtf8)?;
        let fields = parse_sig_object(text)?;
        let root_hash = fields
            .root_hash
            .ok_or(VerityError::MissingField("rootHash"))?;
        let signature = fields
            .signature
            .ok_or(VerityError::MissingField("signature"))?;
        let root_hash = RootHash::from_hex(&root_hash)?;
        let certificate_fingerprint = match fields.certificate_fingerprint {
            Some(f) => {
                let bytes = hex_decode(&f, MAX_SIG_JSON_SIZE).map_err(VerityError::BadHex)?;
                if bytes.is_empty() {
                    return Err(VerityError::BadHex("empty"));
                }
                Some(bytes)
            }
            None => None,
        };
        let signature = base64_decode(&signature).map_err(VerityError::BadBase64)?;
        if signature.is_empty() {
            return Err(VerityError::EmptySignature);
        }
        Ok(Self {
            root_hash,
            certificate_fingerprint,
            signature,
        })
    }
}

/// DER of the object identifier `pkcs7-signedData` (1.2.840.113549.1.7.2), tag and
/// length included.
const OID_PKCS7_SIGNED_DATA: [u8; 11] = [
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02,
];

/// Checks that `sig` starts like what the kernel's `pkcs7_parse_message` accepts for a
/// dm-verity root hash signature: a `ContentInfo` SEQUENCE (definite length that fits in
/// `sig`, or BER's indefinite length) whose `contentType` is `signedData`. Only the
/// envelope is looked at: the kernel parses and verifies the rest. This turns an empty,
/// truncated or garbage signature file into an error naming it, before any device is set
/// up (and on hosts without device-mapper, where the kernel never gets to see it).
pub fn check_signature_envelope(sig: &[u8]) -> Result<(), VerityError> {
    let (&tag, rest) = sig.split_first().ok_or(VerityError::NotPkcs7("empty"))?;
    if tag != 0x30 {
        return Err(VerityError::NotPkcs7("does not start with a DER SEQUENCE"));
    }
    let (&first, rest) = rest
        .split_first()
        .ok_or(VerityError::NotPkcs7("truncated"))?;
    let body = match first {
        0x80 => rest, // BER indefinite length: ends with end-of-contents octets
        n if n < 0x80 => {
            let len = usize::from(n);
            rest.get(..len).ok_or(VerityError::NotPkcs7("truncated"))?
        }
        n => {
            let k = usize::from(n & 0x7f);
            if k > 4 {
                return Err(VerityError::NotPkcs7("length field too long"));
            }
            let lenb = rest.get(..k).ok_or(VerityError::NotPkcs7("truncated"))?;
            let len = lenb.iter().fold(0usize, |a, &b| (a << 8) | usize::from(b));
            rest.get(k..)
                .and_then(|r| r.get(..len))
                .ok_or(VerityError::NotPkcs7("truncated"))?
        }
    };
    if !body.starts_with(&OID_PKCS7_SIGNED_DATA) {
        return Err(VerityError::NotPkcs7("content type is not signedData"));
    }
    Ok(())
}

/// The fields of a signature object we care about.
#[derive(Default)]
struct SigFields {
    root_hash: Option<String>,
    certificate_fingerprint: Option<String>,
    signature: Option<String>,
}

/// Reads the signature object: `rootHash`, `certificateFingerprint` and `signature` must
/// be strings if present, other members are validated and skipped, a key twice is refused,
/// and nothing but whitespace may follow the object.
fn parse_sig_object(text: &str) -> Result<SigFields, VerityError> {
    let mut r = json::Reader::new(text, MAX_JSON_DEPTH);
    let mut fields = SigFields::default();
    let mut keys: std::collections::HashSet<String> = std::collections::HashSet::new();
    r.skip_ws();
    if r.peek() != Some(b'{') {
        return Err(r.error("expected a JSON object").into());
    }
    r.bump();
    r.skip_ws();
    if r.peek() == Some(b'}') {
        r.bump();
    } else {
        loop {
            r.skip_ws();
            if r.peek() != Some(b'"') {
                return Err(r.error("expected a string key").into());
            }
            let key = r.string()?;
            if keys.contains(&key) {
                return Err(VerityError::DuplicateKey(key.chars().take(64).collect()));
            }
            r.skip_ws();
            r.expect(b':', "expected ':'")?;
            r.skip_ws();
            let slot = match key.as_str() {
                "rootHash" => Some(("rootHash", &mut fields.root_hash)),
                "certificateFingerprint" => Some((
                    "certificateFingerprint",
                    &mut fields.certificate_fingerprint,
                )),
                "signature" => Some(("signature", &mut fields.signature)),
                _ => None,
            };
            match slot {
                Some((name, slot)) => {
                    if r.peek() != Some(b'"') {
                        // Still validate the value so syntax errors win over type errors.
                        r.skip_value(2)?;
                        return Err(VerityError::NotAString(name));
                    }
                    *slot = Some(r.string()?);
                }
                None => r.skip_value(2)?,
            }
            keys.insert(key);
            r.skip_ws();
            match r.peek() {
                Some(b',') => r.bump(),
                Some(b'}') => {
                    r.bump();
                    break;
                }
                _ => return Err(r.error("expected ',' or '}'").into()),
            }
        }
    }
    r.skip_ws();
    if !r.at_end() {
        return Err(r.error("trailing data after the JSON object").into());
    }
    Ok(fields)
}

impl From<json::JsonError> for VerityError {
    fn from(e: json::JsonError) -> Self {
        VerityError::Json {
            offset: e.offset,
            reason: e.reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    const SHA256_HEX: &str = "c0e33d54ffb5ba6a868a45a15522a1df034a71eaf31a6042f67dd8f731b55d21";

    /// A superblock like `veritysetup format` writes.
    fn make_sb(
        alg: &[u8],
        dbs: u32,
        hbs: u32,
        blocks: u64,
        salt: &[u8],
        hash_type: u32,
    ) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[..8].copy_from_slice(SIGNATURE);
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        b[12..16].copy_from_slice(&hash_type.to_le_bytes());
        for (i, x) in b[16..32].iter_mut().enumerate() {
            *x = i as u8 * 17;
        }
        b[32..32 + alg.len()].copy_from_slice(alg);
        b[64..68].copy_from_slice(&dbs.to_le_bytes());
        b[68..72].copy_from_slice(&hbs.to_le_bytes());
        b[72..80].copy_from_slice(&blocks.to_le_bytes());
        b[80..82].copy_from_slice(&(salt.len() as u16).to_le_bytes());
        b[88..88 + salt.len()].copy_from_slice(salt);
        b
    }

    fn good_sb() -> Vec<u8> {
        make_sb(b"sha256", 4096, 4096, 1000, &[0xab; 32], 1)
    }

    #[test]
    fn synthetic_superblock_fields() {
        let sb = VeritySuperblock::parse(&good_sb()).unwrap();
        assert_eq!(sb.hash_type, 1);
        assert_eq!(sb.algorithm, HashAlgorithm::Sha256);
        assert_eq!(sb.data_block_size, 4096);
        assert_eq!(sb.hash_block_size, 4096);
        assert_eq!(sb.data_blocks, 1000);
        assert_eq!(sb.salt, vec![0xab; 32]);
        assert_eq!(sb.uuid_string(), "00112233-4455-6677-8899-aabbccddeeff");
        assert_eq!(sb.data_size(), Ok(4_096_000));
        assert_eq!(sb.data_sectors(), Ok(8000));
        assert_eq!(sb.hash_blocks(), Ok(9));
        assert_eq!(sb.hash_start_block(0), Ok(1));
        assert_eq!(sb.hash_start_block(8192), Ok(3));
        assert_eq!(sb.hash_device_size(0), Ok(40960));
        assert_eq!(
            sb.hash_start_block(100),
            Err(VerityError::BadSuperblockOffset(100))
        );
        // Longer buffers: only the first 512 bytes count.
        let mut long = good_sb();
        long.extend_from_slice(&[0xff; 4096]);
        assert_eq!(VeritySuperblock::parse(&long).unwrap(), sb);
        // An algorithm filling all 32 bytes without NUL is read as 32 characters.
        let full = make_sb(&[b'a'; 32], 4096, 4096, 1, &[], 1);
        assert_eq!(
            VeritySuperblock::parse(&full),
            Err(VerityError::UnknownAlgorithm("a".repeat(32)))
        );
    }

    #[test]
    fn hostile_superblocks() {
        use VerityError as E;
        let set = |at: usize, bytes: &[u8]| {
            let mut b = good_sb();
            b[at..at + bytes.len()].copy_from_slice(bytes);
            b
        };
        for (buf, expected) in [
            (vec![], E::TooShort(0)),
            (good_sb()[..511].to_vec(), E::TooShort(511)),
            (set(0, b"Verity\0\0"), E::BadSignature),
            (set(6, b"x"), E::BadSignature),
            (set(8, &2u32.to_le_bytes()), E::UnsupportedVersion(2)),
            (set(8, &0u32.to_le_bytes()), E::UnsupportedVersion(0)),
            (set(12, &2u32.to_le_bytes()), E::UnsupportedHashType(2)),
            (
                set(64, &256u32.to_le_bytes()),
                E::BadBlockSize {
                    which: "data",
                    size: 256,
                },
            ),
            (
                set(64, &3072u32.to_le_bytes()),
                E::BadBlockSize {
                    which: "data",
                    size: 3072,
                },
            ),
            (
                set(68, &(1024 * 1024u32).to_le_bytes()),
                E::BadBlockSize {
                    which: "hash",
                    size: 1024 * 1024,
                },
            ),
            (
                set(68, &0u32.to_le_bytes()),
                E::BadBlockSize {
                    which: "hash",
                    size: 0,
                },
            ),
            (set(32, b"md5\0\0\0"), E::UnknownAlgorithm("md5".into())),
            (set(32, b"SHA256"), E::UnknownAlgorithm("SHA256".into())),
            (
                set(32, b"\xff\xfe\0"),
                E::UnknownAlgorithm("\u{fffd}\u{fffd}".into()),
            ),
            (set(32, b"\0"), E::UnknownAlgorithm(String::new())),
            (set(80, &257u16.to_le_bytes()), E::SaltTooLong(257)),
            (set(80, &u16::MAX.to_le_bytes()), E::SaltTooLong(u16::MAX)),
            (set(72, &0u64.to_le_bytes()), E::NoDataBlocks),
            (set(72, &u64::MAX.to_le_bytes()), E::SizeOverflow),
        ] {
            assert_eq!(VeritySuperblock::parse(&buf), Err(expected));
        }
        // Maximum salt and the accepted extremes parse.
        let max = make_sb(b"sha512", 512, 512 * 1024, 1, &[7; 256], 0);
        let sb = VeritySuperblock::parse(&max).unwrap();
        assert_eq!((sb.salt.len(), sb.hash_type), (256, 0));
        assert_eq!(sb.hash_blocks(), Ok(0));
    }

    #[test]
    fn tree_sizes() {
        // (data blocks, hash block size, digest size, hash blocks): values from
        // `veritysetup format` ("Hash blocks:") on this machine's cryptsetup 2.6.1.
        for (blocks, hbs, digest, expected) in [
            (1u64, 4096u32, 32usize, 0u64),
            (2, 4096, 32, 1),
            (128, 4096, 32, 1),
            (129, 4096, 32, 3),
            (1000, 4096, 32, 9),
            (16384, 4096, 32, 129),
            (16385, 4096, 32, 132),
            (1000, 4096, 20, 9),
            (1000, 4096, 64, 17),
            (8000, 512, 32, 535),
            (1000, 1024, 32, 33),
            (u64::MAX, 4096, 32, 145_249_953_336_295_683),
        ] {
            assert_eq!(
                hash_tree_size(blocks, hbs, digest),
                Ok(expected),
                "{blocks} {hbs} {digest}"
            );
        }
        assert_eq!(hash_tree_size(0, 4096, 32), Err(VerityError::NoDataBlocks));
        for (hbs, digest) in [(4096u32, 0usize), (32, 32), (63, 32), (0, 32), (64, 64)] {
            assert_eq!(
                hash_tree_size(10, hbs, digest),
                Err(VerityError::BadTreeGeometry {
                    hash_block_size: hbs,
                    digest_size: digest
                })
            );
        }
        // Two digests per block would need 64 levels for 2^64 blocks: cryptsetup allows 63.
        assert_eq!(
            hash_tree_size(u64::MAX, 128, 64),
            Err(VerityError::BadTreeGeometry {
                hash_block_size: 128,
                digest_size: 64
            })
        );
        assert!(hash_tree_size(1 << 62, 128, 64).is_ok());
        assert!(hash_tree_size(u64::MAX, 256, 64).is_ok());
    }

    #[test]
    fn target_param_strings() {
        let sb = VeritySuperblock::parse(&good_sb()).unwrap();
        let root = RootHash::from_hex(SHA256_HEX).unwrap();
        let data = rustix::fs::makedev(7, 3);
        let hash = rustix::fs::makedev(259, 65536);
        let salt = "ab".repeat(32);
        assert_eq!(
            target_params(&sb, data, hash, 1, &root, None).unwrap(),
            format!("1 7:3 259:65536 4096 4096 1000 1 sha256 {SHA256_HEX} {salt}")
        );
        assert_eq!(
            target_params(&sb, data, hash, 1, &root, Some("dm-verity:abc")).unwrap(),
            format!(
                "1 7:3 259:65536 4096 4096 1000 1 sha256 {SHA256_HEX} {salt} 2 root_hash_sig_key_desc dm-verity:abc"
            )
        );
        let nosalt = VeritySuperblock::parse(&make_sb(b"sha1", 512, 1024, 8, &[], 0)).unwrap();
        let root1 = RootHash::from_hex(&"01".repeat(20)).unwrap();
        assert_eq!(
            target_params(&nosalt, data, data, 9, &root1, None).unwrap(),
            format!("0 7:3 7:3 512 1024 8 9 sha1 {} -", "01".repeat(20))
        );
        assert_eq!(
            target_params(&sb, data, hash, 1, &root1, None),
            Err(VerityError::DigestMismatch {
                len: 20,
                algorithm: "sha256",
                digest: 32
            })
        );
        for bad in ["", "a b", "tab\t", "back\\slash", "ünï"] {
            assert!(matches!(
                target_params(&sb, data, hash, 1, &root, Some(bad)),
                Err(VerityError::BadKeyDescription(_))
            ));
        }
        assert_eq!(
            target_params(&sb, data, hash, u64::MAX, &root, None),
            Err(VerityError::SizeOverflow)
        );
    }

    #[test]
    fn root_hashes() {
        use VerityError as E;
        let h = RootHash::from_hex(SHA256_HEX).unwrap();
        assert_eq!(h.to_string(), SHA256_HEX);
        assert_eq!(h.as_bytes().len(), 32);
        assert_eq!(RootHash::from_hex(&SHA256_HEX.to_uppercase()).unwrap(), h);
        assert_eq!(
            RootHash::from_sidecar(format!("  {SHA256_HEX}\n").as_bytes()).unwrap(),
            h
        );
        assert_eq!(
            RootHash::from_sidecar(format!("{SHA256_HEX}\r\nignored second line").as_bytes())
                .unwrap(),
            h
        );
        assert!(h.check_algorithm(HashAlgorithm::Sha256).is_ok());
        for (input, expected) in [
            ("", E::RootHashLength(0)),
            ("00112233445566778899aabbccddee", E::RootHashLength(15)),
            ("abc", E::BadHex("odd number of digits")),
            (
                "zz112233445566778899aabbccddeeff",
                E::BadHex("not a hex digit"),
            ),
            (
                "0x112233445566778899aabbccddeeff",
                E::BadHex("not a hex digit"),
            ),
        ] {
            assert_eq!(RootHash::from_hex(input), Err(expected), "{input}");
        }
        assert_eq!(
            RootHash::from_hex(&"00".repeat(65)),
            Err(E::RootHashLength(65))
        );
        assert_eq!(
            RootHash::from_hex(&"00".repeat(100_000)),
            Err(E::BadHex("too long"))
        );
        assert!(RootHash::from_hex(&"00".repeat(64)).is_ok());
        assert!(RootHash::from_hex(&"00".repeat(16)).is_ok());
        assert_eq!(
            RootHash::from_sidecar(b"\xff\xfe\n"),
            Err(E::BadHex("not text"))
        );
        assert_eq!(RootHash::from_sidecar(b"\n"), Err(E::RootHashLength(0)));
    }

    #[test]
    fn signature_envelope() {
        let oid = OID_PKCS7_SIGNED_DATA;
        // 30 82 <len> 06 09 <signedData> a0 ...: what `openssl smime -outform der` writes.
        let mut body = oid.to_vec();
        body.extend_from_slice(&[0xa0, 0x03, 0x02, 0x01, 0x01]);
        let mut long = vec![0x30, 0x82, 0x00, body.len() as u8];
        long.extend_from_slice(&body);
        assert_eq!(check_signature_envelope(&long), Ok(()));
        let mut short = vec![0x30, body.len() as u8];
        short.extend_from_slice(&body);
        assert_eq!(check_signature_envelope(&short), Ok(()));
        let mut indefinite = vec![0x30, 0x80];
        indefinite.extend_from_slice(&body);
        indefinite.extend_from_slice(&[0, 0]);
        assert_eq!(check_signature_envelope(&indefinite), Ok(()));
        for (bad, why) in [
            (&b""[..], "empty"),
            (b"sig", "does not start with a DER SEQUENCE"),
            (b"\x30", "truncated"),
            (&long[..long.len() - 1], "truncated"),
            (&[0x30, 0x85, 1, 1, 1, 1, 1][..], "length field too long"),
            (
                &[
                    0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01,
                ][..],
                "content type is not signedData",
            ),
        ] {
            assert_eq!(
                check_signature_envelope(bad),
                Err(VerityError::NotPkcs7(why)),
                "{bad:02x?}"
            );
        }
    }

    fn sig_json(root: &str, sig: &str) -> String {
        format!(
            r#"{{"rootHash":"{root}","certificateFingerprint":"{}","signature":"{sig}"}}"#,
            "ef".repeat(32)
        )
    }

    fn padded(json: &str, size: usize) -> Vec<u8> {
        let mut v = json.as_bytes().to_vec();
        v.resize(size, 0);
        v
    }

    #[test]
    fn sig_partition_valid() {
        let part = padded(&sig_json(SHA256_HEX, "MIIB/w=="), 16384);
        let sig = VeritySig::parse_json(&part).unwrap();
        assert_eq!(sig.root_hash.to_string(), SHA256_HEX);
        assert_eq!(sig.certificate_fingerprint, Some(vec![0xef; 32]));
        assert_eq!(sig.signature, vec![0x30, 0x82, 0x01, 0xff]);
        // No NUL at all: the whole partition is the JSON text.
        let bare = sig_json(SHA256_HEX, "MIIB/w==");
        assert_eq!(VeritySig::parse_json(bare.as_bytes()).unwrap(), sig);
        // Whitespace, escapes, unknown fields of every type, no fingerprint.
        let fancy = format!(
            "\n{{ \"x\": [1, -2.5e+3, true, false, null, {{\"a\": []}}], \"signature\" : \"MII\\u0042\\n/w\\u003d=\",\
             \"rootHash\": \"{}\", \"\\ud83d\\ude00\": \"\\\"\\\\\\/\\b\\f\\r\\t\" }}\t",
            SHA256_HEX.to_uppercase()
        );
        let s = VeritySig::parse_json(&padded(&fancy, 8192)).unwrap();
        assert_eq!(s.root_hash, sig.root_hash);
        assert_eq!(s.signature, sig.signature);
        assert_eq!(s.certificate_fingerprint, None);
        // URL-safe base64 (systemd accepts both alphabets), padding variants.
        for (b64, bytes) in [
            ("-_-_", vec![0xfb, 0xff, 0xbf]),
            ("QQ==", vec![0x41]),
            ("QUI=", vec![0x41, 0x42]),
            ("QUJD", vec![0x41, 0x42, 0x43]),
            ("QU JD\\n", vec![0x41, 0x42, 0x43]),
        ] {
            let s = VeritySig::parse_json(sig_json(SHA256_HEX, b64).as_bytes()).unwrap();
            assert_eq!(s.signature, bytes, "{b64}");
        }
    }

    #[test]
    fn sig_partition_errors() {
        use VerityError as E;
        let ok_sig = "MIIB/w==";
        let cases: Vec<(Vec<u8>, E)> = vec![
            (vec![], E::SigNoJson),
            (vec![0; 4096], E::SigNoJson),
            (
                {
                    let mut v = padded(&sig_json(SHA256_HEX, ok_sig), 4096);
                    v[4000] = 1;
                    v
                },
                E::SigGarbageAfterNul,
            ),
            (
                vec![b' '; MAX_SIG_PARTITION_SIZE + 1],
                E::SigPartitionTooLarge(MAX_SIG_PARTITION_SIZE + 1),
            ),
            (
                padded(&" ".repeat(MAX_SIG_JSON_SIZE + 1), MAX_SIG_JSON_SIZE + 100),
                E::SigJsonTooLarge(MAX_SIG_JSON_SIZE + 1),
            ),
            (b"{\"a\":\"\xff\"}".to_vec(), E::SigNotUtf8),
            (
                format!(r#"{{"signature":"{ok_sig}"}}"#).into_bytes(),
                E::MissingField("rootHash"),
            ),
            (
                format!(r#"{{"rootHash":"{SHA256_HEX}"}}"#).into_bytes(),
                E::MissingField("signature"),
            ),
            (
                format!(r#"{{"rootHash":1,"signature":"{ok_sig}"}}"#).into_bytes(),
                E::NotAString("rootHash"),
            ),
            (
                format!(r#"{{"rootHash":"{SHA256_HEX}","signature":null}}"#).into_bytes(),
                E::NotAString("signature"),
            ),
            (
                format!(r#"{{"rootHash":"{SHA256_HEX}","signature":"{ok_sig}","rootHash":"{SHA256_HEX}"}}"#)
                    .into_bytes(),
                E::DuplicateKey("rootHash".into()),
            ),
            (
                sig_json("abc", ok_sig).into_bytes(),
                E::BadHex("odd number of digits"),
            ),
            (
                sig_json("nothex", ok_sig).into_bytes(),
                E::BadHex("not a hex digit"),
            ),
            (
                sig_json(SHA256_HEX, "MIIB/w").into_bytes(),
                E::BadBase64("truncated (length not a multiple of 4)"),
            ),
            (
                sig_json(SHA256_HEX, "MIIB/w=").into_bytes(),
                E::BadBase64("truncated (length not a multiple of 4)"),
            ),
            (
                sig_json(SHA256_HEX, "QQ==QQ==").into_bytes(),
                E::BadBase64("misplaced padding"),
            ),
            (
                sig_json(SHA256_HEX, "Q===").into_bytes(),
                E::BadBase64("misplaced padding"),
            ),
            (
                sig_json(SHA256_HEX, "QR==").into_bytes(),
                E::BadBase64("non-zero trailing bits"),
            ),
            (
                sig_json(SHA256_HEX, "QUJ*").into_bytes(),
                E::BadBase64("invalid character"),
            ),
            (sig_json(SHA256_HEX, "").into_bytes(), E::EmptySignature),
            (
                format!("{} x", sig_json(SHA256_HEX, ok_sig)).into_bytes(),
                E::Json {
                    offset: sig_json(SHA256_HEX, ok_sig).len() + 1,
                    reason: "trailing data after the JSON object",
                },
            ),
            (
                b"[1]".to_vec(),
                E::Json {
                    offset: 0,
                    reason: "expected a JSON object",
                },
            ),
            (
                b"{\"a\":1".to_vec(),
                E::Json {
                    offset: 6,
                    reason: "expected ',' or '}'",
                },
            ),
            (
                b"{\"a\":01}".to_vec(),
                E::Json {
                    offset: 6,
                    reason: "expected ',' or '}'",
                },
            ),
            (
                b"{\"a\":\"x\ty\"}".to_vec(),
                E::Json {
                    offset: 7,
                    reason: "control character in string",
                },
            ),
            (
                b"{\"a\":\"\\ud800\"}".to_vec(),
                E::Json {
                    offset: 12,
                    reason: "unpaired surrogate",
                },
            ),
            (
                b"{\"a\":\"\\u0000\"}".to_vec(),
                E::Json {
                    offset: 12,
                    reason: "NUL character in string",
                },
            ),
            (
                b"{\"a\":\"\\x\"}".to_vec(),
                E::Json {
                    offset: 8,
                    reason: "invalid escape",
                },
            ),
            (
                b"{\"a\":tru}".to_vec(),
                E::Json {
                    offset: 5,
                    reason: "invalid literal",
                },
            ),
            (
                b"{\"a\":1,}".to_vec(),
                E::Json {
                    offset: 7,
                    reason: "expected a string key",
                },
            ),
            (
                b"{\"a\":\"abc".to_vec(),
                E::Json {
                    offset: 9,
                    reason: "unterminated string",
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                VeritySig::parse_json(&input),
                Err(expected),
                "{:?}",
                String::from_utf8_lossy(&input[..input.len().min(80)])
            );
        }
    }

    #[test]
    fn sig_json_nesting_limit() {
        let nest = |n: usize| {
            format!(
                r#"{{"x":{}{},"rootHash":"{SHA256_HEX}","signature":"QQ=="}}"#,
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        // The top object is level 1, so 15 nested arrays reach the limit of 16.
        assert!(VeritySig::parse_json(nest(15).as_bytes()).is_ok());
        assert!(matches!(
            VeritySig::parse_json(nest(16).as_bytes()),
            Err(VerityError::Json {
                reason: "nesting too deep",
                ..
            })
        ));
        // Far deeper input is refused without recursing through it.
        let deep = format!("{{\"x\":{}", "[".repeat(60_000));
        assert!(VeritySig::parse_json(deep.as_bytes()).is_err());
    }

    #[test]
    #[cfg_attr(miri, ignore = "64 KiB of JSON takes minutes when interpreted")]
    fn sig_json_near_size_limit() {
        // Thousands of distinct unknown keys just under 64 KiB: accepted (a parser
        // quadratic in the number of keys would hang here, visibly).
        let mut json = String::from("{");
        let mut i = 0;
        while json.len() < MAX_SIG_JSON_SIZE - 200 {
            json.push_str(&format!("\"k{i}\":{i},"));
            i += 1;
        }
        json.push_str(&format!(
            r#""rootHash":"{SHA256_HEX}","signature":"QQ=="}}"#
        ));
        assert!(json.len() <= MAX_SIG_JSON_SIZE);
        assert!(VeritySig::parse_json(&padded(&json, 128 * 1024)).is_ok());
        // The same text one byte over the limit is refused before parsing.
        let over = format!("{}{}", " ".repeat(MAX_SIG_JSON_SIZE + 1 - json.len()), json);
        assert_eq!(
            VeritySig::parse_json(over.as_bytes()),
            Err(VerityError::SigJsonTooLarge(MAX_SIG_JSON_SIZE + 1))
        );
    }

    #[test]
    fn random_flips_never_panic() {
        let mut seeds: Vec<Vec<u8>> = vec![
            good_sb(),
            make_sb(b"sha512", 512, 512, 77, &[1; 256], 0),
            padded(&sig_json(SHA256_HEX, "MIIB/w=="), 1024),
            b"{\"x\":[1,{\"y\":\"\\u00e9\\ud83d\\ude00\"}],\"rootHash\":\"00\",\"signature\":\"QQ==\"}"
                .to_vec(),
        ];
        seeds.push(format!("{SHA256_HEX}\n").into_bytes());
        let mut rng = crate::testutil::XorShift(0x2545_f491_4f6c_dd1d);
        let mut next = move || rng.next();
        for i in 0..crate::testutil::iterations(2000) {
            let mut buf = seeds[i % seeds.len()].clone();
            let flips = 1 + next() % 8;
            for _ in 0..flips {
                let at = (next() % buf.len() as u64) as usize;
                buf[at] ^= 1 << (next() % 8);
            }
            if next() % 4 == 0 {
                let cut = (next() % (buf.len() as u64 + 1)) as usize;
                buf.truncate(cut);
            }
            if let Ok(sb) = VeritySuperblock::parse(&buf) {
                let _ = sb.hash_blocks();
                let _ = sb.hash_device_size(0);
                let _ = sb.uuid_string();
                if let Ok(root) = RootHash::from_bytes(&vec![0; sb.algorithm.digest_size()]) {
                    let _ = target_params(&sb, 1, 2, 1, &root, Some("k"));
                }
            }
            let _ = VeritySig::parse_json(&buf);
            let _ = RootHash::from_sidecar(&buf);
            let _ = hash_tree_size(next(), (next() % 1_048_577) as u32, (next() % 70) as usize);
        }
    }

    // ---- Against real `veritysetup format` output (skipped when cryptsetup-bin is missing).

    fn veritysetup() -> Option<PathBuf> {
        ["veritysetup", "/usr/sbin/veritysetup", "/sbin/veritysetup"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| {
                Command::new(p)
                    .arg("--version")
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false)
            })
    }

    /// `veritysetup dump`/`format` output as key → value.
    fn fields(text: &str) -> Vec<(String, String)> {
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    }

    fn field<'a>(f: &'a [(String, String)], key: &str) -> &'a str {
        f.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {key:?} in veritysetup output"))
    }

    fn run(tool: &Path, args: &[&str]) -> String {
        let out = Command::new(tool).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Formats `data` with `veritysetup` and checks our reading against its dump.
    fn check_real(tool: &Path, dir: &Path, data: &Path, args: &[&str], sb_offset: u64) {
        let hash = dir.join("hash");
        let _ = std::fs::remove_file(&hash);
        let mut argv = vec!["format", data.to_str().unwrap(), hash.to_str().unwrap()];
        argv.extend_from_slice(args);
        let formatted = fields(&run(tool, &argv));
        let root_hex = field(&formatted, "Root hash").to_string();
        let dump = fields(&run(
            tool,
            &[
                "dump",
                hash.to_str().unwrap(),
                &format!("--hash-offset={sb_offset}"),
            ],
        ));
        let bytes = std::fs::read(&hash).unwrap();
        let at = sb_offset as usize;
        let sb = VeritySuperblock::parse(&bytes[at..]).unwrap();
        assert_eq!(sb.uuid_string(), field(&dump, "UUID"), "{args:?}");
        assert_eq!(sb.hash_type.to_string(), field(&dump, "Hash type"));
        assert_eq!(sb.data_blocks.to_string(), field(&dump, "Data blocks"));
        assert_eq!(
            sb.data_block_size.to_string(),
            field(&dump, "Data block size")
        );
        assert_eq!(
            sb.hash_block_size.to_string(),
            field(&dump, "Hash block size")
        );
        assert_eq!(sb.algorithm.name(), field(&dump, "Hash algorithm"));
        let salt = if sb.salt.is_empty() {
            "-".to_string()
        } else {
            hex_encode(&sb.salt)
        };
        assert_eq!(salt, field(&dump, "Salt"));
        assert_eq!(
            sb.hash_blocks().unwrap().to_string(),
            field(&dump, "Hash blocks")
        );
        let size = sb.hash_device_size(sb_offset).unwrap();
        // `dump` leaves the device size out when the superblock is not at offset 0.
        if let Some((_, v)) = dump.iter().find(|(k, _)| k == "Hash device size") {
            assert_eq!(&format!("{size} [bytes]"), v, "{args:?}");
        }
        assert_eq!(size, bytes.len() as u64, "{args:?}");
        let root = RootHash::from_hex(&root_hex).unwrap();
        let start = sb.hash_start_block(sb_offset).unwrap();
        let params = target_params(
            &sb,
            rustix::fs::makedev(7, 0),
            rustix::fs::makedev(7, 1),
            start,
            &root,
            None,
        )
        .unwrap();
        assert_eq!(
            params,
            format!(
                "{} 7:0 7:1 {} {} {} {start} {} {root_hex} {salt}",
                sb.hash_type, sb.data_block_size, sb.hash_block_size, sb.data_blocks, sb.algorithm
            )
        );
    }

    #[test]
    #[cfg_attr(miri, ignore = "runs veritysetup")]
    fn real_veritysetup_superblocks() {
        let Some(tool) = veritysetup() else {
            eprintln!("veritysetup not found (cryptsetup-bin); skipping real superblock test");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut content = vec![0u8; 4096 * 1000];
        let mut x: u32 = 1;
        for b in content.iter_mut() {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *b = (x >> 16) as u8;
        }
        std::fs::write(&data, &content).unwrap();
        for (args, offset) in [
            (&[][..], 0u64),
            (&["--hash=sha1"][..], 0),
            (&["--hash=sha512"][..], 0),
            (&["--data-block-size=512", "--hash-block-size=512"][..], 0),
            (&["--hash-block-size=1024"][..], 0),
            (&["--format=0"][..], 0),
            (&["--salt=-"][..], 0),
            (&["--salt=00ff"][..], 0),
            (&["--uuid=12345678-9abc-def0-1234-56789abcdef0"][..], 0),
            (&["--data-blocks=129"][..], 0),
            (&["--data-blocks=1"][..], 0),
            (&["--hash-offset=8192"][..], 8192),
        ] {
            check_real(&tool, dir.path(), &data, args, offset);
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "runs veritysetup")]
    fn real_veritysetup_on_erofs() {
        let Some(tool) = veritysetup() else {
            eprintln!("veritysetup not found (cryptsetup-bin); skipping erofs verity test");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("usr/lib/extension-release.d")).unwrap();
        std::fs::write(
            tree.join("usr/lib/extension-release.d/extension-release.demo"),
            "ID=_any\n",
        )
        .unwrap();
        std::fs::write(tree.join("usr/lib/blob"), vec![0x5a; 300_000]).unwrap();
        let img = dir.path().join("demo.raw");
        match Command::new("mkfs.erofs").arg(&img).arg(&tree).output() {
            Ok(o) if o.status.success() => {}
            _ => {
                eprintln!("mkfs.erofs not usable; skipping erofs verity test");
                return;
            }
        }
        check_real(&tool, dir.path(), &img, &[], 0);
    }
}
