//! `gpt::parse_bytes` on arbitrary images and, when the table parses, `select_roles` for
//! x86-64 (and arm64). Each input is parsed twice: as it is, and with the header and
//! entry-array CRCs recomputed, so that mutations reach the checks behind the CRCs.
#![no_main]

use extmerge::format::gpt::{crc32, parse_bytes, select_roles, Gpt, SECTOR_SIZES};
use libfuzzer_sys::fuzz_target;

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Rewrites the CRCs of the first header found at LBA 1 (for the sector sizes parse tries)
/// so they match. `None` if there is no header to fix.
fn fix_crcs(data: &[u8]) -> Option<Vec<u8>> {
    let ss = SECTOR_SIZES
        .into_iter()
        .map(|s| s as usize)
        .find(|&s| data.get(s..s + 8) == Some(b"EFI PART"))?;
    if data.len() < ss + 92 {
        return None;
    }
    let mut out = data.to_vec();
    let entries_lba = u64_at(&out, ss + 72)?;
    let count = u64::from(u32_at(&out, ss + 80)?);
    let entry_size = u64::from(u32_at(&out, ss + 84)?);
    let array_bytes = count.checked_mul(entry_size)?;
    if array_bytes <= 1 << 20 {
        let start = usize::try_from(entries_lba.checked_mul(ss as u64)?).ok()?;
        let end = start.checked_add(usize::try_from(array_bytes).ok()?)?;
        if let Some(array) = out.get(start..end) {
            let c = crc32(array);
            out[ss + 88..ss + 92].copy_from_slice(&c.to_le_bytes());
        }
    }
    let header_size = u32_at(&out, ss + 12)? as usize;
    if (92..=ss).contains(&header_size) && out.len() >= ss + header_size {
        out[ss + 16..ss + 20].fill(0);
        let c = crc32(&out[ss..ss + header_size]);
        out[ss + 16..ss + 20].copy_from_slice(&c.to_le_bytes());
    }
    Some(out)
}

fn check(gpt: &Gpt, len: usize) {
    for p in &gpt.partitions {
        assert!(p.first_lba <= p.last_lba);
        assert!(p.offset_bytes + p.size_bytes <= len as u64, "{p:?}");
        assert!(p.first_lba >= gpt.first_usable_lba && p.last_lba <= gpt.last_usable_lba);
    }
    for arch in ["x86-64", "arm64"] {
        if let Ok(sel) = select_roles(gpt, arch) {
            let mut all = vec![&sel.primary];
            all.extend(sel.usr.as_ref());
            for set in all {
                assert!(gpt.partitions.contains(&set.data.partition));
                if set.verity_sig.is_some() {
                    assert!(set.verity.is_some());
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(gpt) = parse_bytes(data) {
        check(&gpt, data.len());
    }
    if let Some(fixed) = fix_crcs(data) {
        if let Ok(gpt) = parse_bytes(&fixed) {
            check(&gpt, fixed.len());
        }
    }
});
