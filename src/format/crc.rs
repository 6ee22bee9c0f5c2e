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

/// IEEE 802.3 (`0xEDB88320`).
pub static IEEE: [u32; 256] = table(0xEDB8_8320);
/// Castagnoli (`0x82F63B78`).
pub static CASTAGNOLI: [u32; 256] = table(0x82F6_3B78);

/// Runs the register `c` over `data` (no pre- or post-inversion: callers choose).
pub fn update(table: &[u32; 256], mut c: u32, data: &[u8]) -> u32 {
    for &b in data {
        c = table[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
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
}
