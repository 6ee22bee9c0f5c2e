//! Hex and base64, as systemd reads and writes them (`hexmem`, `unhexmem`,
//! `unbase64mem`). Errors are short reasons for the caller to wrap in its own error.

/// The value of one hex digit of either case (usable in `const` contexts, e.g. GUID
/// literals).
pub const fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Lower-case hex of `bytes` (`hexmem`).
pub fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// systemd's whitespace set for `unhexmem`/`unbase64mem`.
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

/// `unhexmem`: hex digits of either case, whitespace skipped, an odd digit count refused;
/// stops with an error once more than `max` bytes would come out.
pub fn hex_decode(s: &str, max: usize) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::new();
    let mut high: Option<u8> = None;
    for c in s.bytes() {
        if is_ws(c) {
            continue;
        }
        let v = hex_digit(c).ok_or("not a hex digit")?;
        match high.take() {
            None => high = Some(v),
            Some(h) => {
                if out.len() >= max {
                    return Err("too long");
                }
                out.push(h << 4 | v);
            }
        }
    }
    if high.is_some() {
        return Err("odd number of digits");
    }
    Ok(out)
}

/// One base64 symbol of either alphabet (systemd's `unbase64char` takes `+`/`-` and `/`/`_`).
fn base64_value(c: u8) -> Option<u8> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' | b'-' => 62,
        b'/' | b'_' => 63,
        _ => return None,
    })
}

/// `unbase64mem`: whitespace skipped anywhere, groups of four, `=` padding only at the end
/// of the last group (required), unused bits of the last symbol zero, nothing after padding.
pub fn base64_decode(s: &str) -> Result<Vec<u8>, &'static str> {
    let syms: Vec<u8> = s.bytes().filter(|&c| !is_ws(c)).collect();
    if syms.len() & 3 != 0 {
        return Err("truncated (length not a multiple of 4)");
    }
    let mut out = Vec::with_capacity(syms.len() / 4 * 3);
    let groups = syms.len() / 4;
    for (i, g) in syms.chunks_exact(4).enumerate() {
        let last = i + 1 == groups;
        let pad = g.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return Err("misplaced padding");
        }
        let mut v = [0u8; 4];
        for (slot, &c) in v.iter_mut().zip(&g[..4 - pad]) {
            *slot = base64_value(c).ok_or("invalid character")?;
        }
        match pad {
            0 => out.extend_from_slice(&[
                v[0] << 2 | v[1] >> 4,
                v[1] << 4 | v[2] >> 2,
                v[2] << 6 | v[3],
            ]),
            1 => {
                if v[2] & 3 != 0 {
                    return Err("non-zero trailing bits");
                }
                out.extend_from_slice(&[v[0] << 2 | v[1] >> 4, v[1] << 4 | v[2] >> 2]);
            }
            _ => {
                if v[1] & 15 != 0 {
                    return Err("non-zero trailing bits");
                }
                out.push(v[0] << 2 | v[1] >> 4);
            }
        }
    }
    Ok(out)
}

/// systemd's `parse_boolean`.
pub fn parse_boolean(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => Some(true),
        "0" | "no" | "n" | "false" | "f" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex() {
        assert_eq!(hex_encode(&[0x00, 0xab, 0x7f]), "00ab7f");
        assert_eq!(hex_decode("00 AB\n7f", 8), Ok(vec![0x00, 0xab, 0x7f]));
        assert_eq!(hex_decode("", 8), Ok(vec![]));
        assert_eq!(hex_decode("abc", 8), Err("odd number of digits"));
        assert_eq!(hex_decode("0g", 8), Err("not a hex digit"));
        assert_eq!(hex_decode("+f", 8), Err("not a hex digit"));
        assert_eq!(hex_decode("0011", 1), Err("too long"));
        assert_eq!(hex_digit(b'F'), Some(15));
        assert_eq!(hex_digit(b'x'), None);
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("Zm9v YmE=\n"), Ok(b"fooba".to_vec()));
        assert_eq!(base64_decode("Zg=="), Ok(b"f".to_vec()));
        assert_eq!(base64_decode("-_-_"), base64_decode("+/+/"));
        assert_eq!(base64_decode(""), Ok(vec![]));
        assert_eq!(
            base64_decode("Zg="),
            Err("truncated (length not a multiple of 4)")
        );
        assert_eq!(base64_decode("Zg==Zg=="), Err("misplaced padding"));
        assert_eq!(base64_decode("Z==="), Err("misplaced padding"));
        assert_eq!(base64_decode("Zh=="), Err("non-zero trailing bits"));
        assert_eq!(base64_decode("Zm9="), Err("non-zero trailing bits"));
        assert_eq!(base64_decode("Zm9!"), Err("invalid character"));
    }
}
