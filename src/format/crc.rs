//! Table-driven reflected CRC32s: IEEE (GPT headers) and Castagnoli (erofs and ext4
//! superblocks). Small enough to own; no crate needed.

/// The 256-entry table of a reflected CRC32 with polynomial `poly` (reversed form).
pub const fn table(poly: u32) -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { poly ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

/// The eight tables of slicing-by-8 for `poly`: `[0]` is [`table`], `[k]` the CRC of a
/// byte followed by `k` zero bytes, so eight bytes are folded in per step (the erofs
/// superblock checksum covers ~3 KiB of every image: byte by byte that was ~10 µs).
pub const fn tables8(poly: u32) -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    t[0] = table(poly);
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

/// IEEE 802.3 (`0xEDB88320`).
pub static IEEE: [[u32; 256]; 8] = tables8(0xEDB8_8320);
/// Castagnoli (`0x82F63B78`).
pub static CASTAGNOLI: [[u32; 256]; 8] = tables8(0x82F6_3B78);

/// Runs the register `c` over `data` (no pre- or post-inversion: callers choose).
pub fn update(t: &[[u32; 256]; 8], mut c: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(8);
    for w in &mut chunks {
        let lo = c ^ u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        let hi = u32::from_le_bytes([w[4], w[5], w[6], w[7]]);
        c = t[7][(lo & 0xFF) as usize]
            ^ t[6][((lo >> 8) & 0xFF) as usize]
            ^ t[5][((lo >> 16) & 0xFF) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][(hi & 0xFF) as usize]
            ^ t[2][((hi >> 8) & 0xFF) as usize]
            ^ t[1][((hi >> 16) & 0xFF) as usize]
            ^ t[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        c = t[0][((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    c
}

#[cfg(test)]
mod tests {
    #[test]
    fn check_values() {
        // The standard check values of both CRCs over "123456789".
        assert_eq!(!super::update(&super::IEEE, !0, b"123456789"), 0xCBF4_3926);
        assert_eq!(
            !super::update(&super::CASTAGNOLI, !0, b"123456789"),
            0xE306_9283
        );
    }

    /// Slicing by eight gives what one byte at a time gives, at every length and
    /// alignment of the tail.
    #[test]
    fn eight_at_a_time_is_byte_at_a_time() {
        let data: Vec<u8> = (0..4099u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for t in [&super::IEEE, &super::CASTAGNOLI] {
            for len in [0, 1, 7, 8, 9, 15, 16, 17, 1000, 4099] {
                let mut slow = 0x1234_5678u32;
                for &b in &data[..len] {
                    slow = t[0][((slow ^ u32::from(b)) & 0xFF) as usize] ^ (slow >> 8);
                }
                assert_eq!(super::update(t, 0x1234_5678, &data[..len]), slow, "{len}");
            }
        }
    }
}
