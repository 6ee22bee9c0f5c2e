//! Bounds-checked reading of fixed-width fields from on-disk and kernel structs.
//!
//! Every reader takes the buffer and a byte offset and returns `None` when the field does
//! not lie wholly inside the buffer (offset overflow included), so a short or hostile
//! input never panics. Callers decide what a missing field means: an error, or 0 where
//! the length was checked before.

/// The `N` bytes at `buf[off..off + N]`, or `None` if they are not all there.
pub fn array<const N: usize>(buf: &[u8], off: usize) -> Option<[u8; N]> {
    buf.get(off..off.checked_add(N)?)?.try_into().ok()
}

/// The `len` bytes at `buf[off..off + len]`, or `None` if they are not all there.
pub fn slice(buf: &[u8], off: usize, len: usize) -> Option<&[u8]> {
    buf.get(off..off.checked_add(len)?)
}

macro_rules! readers {
    ($($(#[$doc:meta])* $name:ident: $t:ty = $from:ident;)*) => {$(
        $(#[$doc])*
        #[inline]
        pub fn $name(buf: &[u8], off: usize) -> Option<$t> {
            array(buf, off).map(<$t>::$from)
        }
    )*};
}

readers! {
    /// Little-endian `u16` at `off`.
    le_u16: u16 = from_le_bytes;
    /// Little-endian `u32` at `off`.
    le_u32: u32 = from_le_bytes;
    /// Little-endian `u64` at `off`.
    le_u64: u64 = from_le_bytes;
    /// Big-endian `u16` at `off`.
    be_u16: u16 = from_be_bytes;
    /// Big-endian `u32` at `off`.
    be_u32: u32 = from_be_bytes;
    /// Big-endian `u64` at `off`.
    be_u64: u64 = from_be_bytes;
    /// Native-endian `u32` at `off` (kernel ioctl structs).
    ne_u32: u32 = from_ne_bytes;
    /// Native-endian `u64` at `off` (kernel ioctl structs).
    ne_u64: u64 = from_ne_bytes;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_bounds() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(le_u16(&b, 0), Some(0x0201));
        assert_eq!(be_u16(&b, 0), Some(0x0102));
        assert_eq!(le_u32(&b, 1), Some(0x0504_0302));
        assert_eq!(be_u32(&b, 1), Some(0x0203_0405));
        assert_eq!(le_u64(&b, 1), Some(0x0908_0706_0504_0302));
        assert_eq!(be_u64(&b, 0), Some(0x0102_0304_0506_0708));
        assert_eq!(ne_u32(&b, 0), Some(u32::from_ne_bytes([1, 2, 3, 4])));
        assert_eq!(
            ne_u64(&b, 1),
            Some(u64::from_ne_bytes([2, 3, 4, 5, 6, 7, 8, 9]))
        );
        assert_eq!(array::<3>(&b, 6), Some([7, 8, 9]));
        assert_eq!(slice(&b, 7, 2), Some(&[8u8, 9][..]));
        assert_eq!(slice(&b, 9, 0), Some(&[][..]));
    }

    #[test]
    fn short_input_gives_none() {
        let b = [0u8; 7];
        assert_eq!(le_u64(&b, 0), None);
        assert_eq!(le_u32(&b, 4), None);
        assert_eq!(le_u16(&b, 6), None);
        assert_eq!(be_u16(&b, 7), None);
        assert_eq!(ne_u32(&b, usize::MAX), None);
        assert_eq!(le_u64(&b, usize::MAX - 3), None);
        assert_eq!(array::<1>(&[], 0), None);
        assert_eq!(slice(&b, 8, 0), None);
        assert_eq!(slice(&b, 1, usize::MAX), None);
    }
}
