//! `VeritySuperblock::parse` on arbitrary bytes; on success every derived size
//! (`hash_blocks`, `hash_start_block`, `hash_device_size`) and `target_params`. Bytes past
//! the 512-byte superblock also feed `hash_tree_size` directly, `target_params`' key
//! description and `RootHash::from_sidecar`.
#![no_main]

use extmerge::format::verity::{
    hash_tree_size, target_params, RootHash, VeritySuperblock, SUPERBLOCK_SIZE,
};
use libfuzzer_sys::fuzz_target;

fn take<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    if let Some(s) = b.get(at..) {
        let n = s.len().min(N);
        a[..n].copy_from_slice(&s[..n]);
    }
    a
}

fuzz_target!(|data: &[u8]| {
    let tail = data.get(SUPERBLOCK_SIZE..).unwrap_or(&[]);

    // hash_tree_size with arbitrary geometry.
    let blocks = u64::from_le_bytes(take::<8>(tail, 0));
    let hbs = u32::from_le_bytes(take::<4>(tail, 8));
    let digest = usize::from(u16::from_le_bytes(take::<2>(tail, 12)));
    if let Ok(n) = hash_tree_size(blocks, hbs, digest) {
        // A tree over more than one block has at least one hash block.
        assert!(blocks <= 1 || n >= 1, "{blocks} {hbs} {digest} -> {n}");
    }

    // Sidecar root hashes: whatever parses prints back to the same hash.
    if let Ok(h) = RootHash::from_sidecar(data) {
        assert!((16..=64).contains(&h.as_bytes().len()));
        assert_eq!(RootHash::from_hex(&h.to_string()).ok(), Some(h));
    }

    let Ok(sb) = VeritySuperblock::parse(data) else {
        return;
    };
    let _ = sb.uuid_string();
    let size = sb
        .data_size()
        .expect("parse checks data_blocks * data_block_size");
    assert_eq!(sb.data_sectors().ok(), Some(size / 512));
    let _ = sb.hash_blocks();
    let sb_offset = u64::from_le_bytes(take::<8>(tail, 14)) & !511;
    for off in [0, 4096, sb_offset] {
        if let (Ok(start), Ok(dev)) = (sb.hash_start_block(off), sb.hash_device_size(off)) {
            assert!(start * u64::from(sb.hash_block_size) >= off + 512);
            assert!(dev >= start * u64::from(sb.hash_block_size));
        }
    }
    let root = RootHash::from_bytes(&vec![0xa5; sb.algorithm.digest_size()]).unwrap();
    let desc = std::str::from_utf8(tail.get(22..).unwrap_or(&[])).ok();
    for d in [None, Some("extmerge:fuzz"), desc] {
        if let Ok(params) = target_params(&sb, 7 << 8 | 1, 259 << 8 | 3, 1, &root, d) {
            assert!(params.starts_with(&format!("{} ", sb.hash_type)));
            assert!(!params.contains('\n'));
        }
    }
});
