//! Value lexers with libvirt's exact acceptance rules: C `strtoull`-style
//! integers, glibc numeric-host addresses, MAC addresses and UUIDs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::model::{MacAddr, Uuid};

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Result of a `g_ascii_strtoull` call.
struct StrToUll {
    value: u64,
    /// Bytes consumed (0 = no conversion).
    consumed: usize,
    overflow: bool,
    negative: bool,
}

fn strtoull(s: &str, base: u32) -> StrToUll {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && is_c_space(b[i]) {
        i += 1;
    }
    let mut negative = false;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        negative = b[i] == b'-';
        i += 1;
    }
    let mut base = base;
    let has_hex_prefix = |i: usize| {
        i + 2 < b.len() + 1
            && i + 1 < b.len()
            && b[i] == b'0'
            && (b[i + 1] == b'x' || b[i + 1] == b'X')
            && i + 2 < b.len()
            && (b[i + 2] as char).is_ascii_hexdigit()
    };
    if base == 0 {
        if has_hex_prefix(i) {
            base = 16;
            i += 2;
        } else if i < b.len() && b[i] == b'0' {
            base = 8;
        } else {
            base = 10;
        }
    } else if base == 16 && has_hex_prefix(i) {
        i += 2;
    }
    let start = i;
    let mut value: u64 = 0;
    let mut overflow = false;
    while i < b.len() {
        let d = match (b[i] as char).to_digit(36) {
            Some(d) if d < base => d,
            _ => break,
        };
        match value
            .checked_mul(u64::from(base))
            .and_then(|v| v.checked_add(u64::from(d)))
        {
            Some(v) => value = v,
            None => overflow = true,
        }
        i += 1;
    }
    if i == start {
        return StrToUll {
            value: 0,
            consumed: 0,
            overflow: false,
            negative: false,
        };
    }
    if overflow {
        value = u64::MAX;
    } else if negative {
        value = value.wrapping_neg();
    }
    StrToUll {
        value,
        consumed: i,
        overflow,
        negative,
    }
}

/// `virStrToLong_ullp`: whole string, no minus sign, fits u64.
pub(crate) fn parse_ullp(s: &str, base: u32) -> Option<u64> {
    let r = strtoull(s, base);
    if r.consumed == 0 || r.consumed != s.len() || r.negative || r.overflow {
        return None;
    }
    Some(r.value)
}

/// `virStrToLong_uip`: whole string, no minus sign, fits u32.
pub(crate) fn parse_uip(s: &str, base: u32) -> Option<u32> {
    parse_ullp(s, base).and_then(|v| u32::try_from(v).ok())
}

/// `virStrToLong_ui`: like `parse_uip` but `-N` wraps (e.g. `-1` = u32::MAX).
pub(crate) fn parse_ui(s: &str, base: u32) -> Option<u32> {
    let r = strtoull(s, base);
    if r.consumed == 0 || r.consumed != s.len() || r.overflow {
        return None;
    }
    if r.negative {
        let magnitude = r.value.wrapping_neg();
        if magnitude > u64::from(u32::MAX) {
            return None;
        }
        return Some((r.value & u64::from(u32::MAX)) as u32);
    }
    u32::try_from(r.value).ok()
}

/// glibc `inet_aton` (exact form, as used by `getaddrinfo(AI_NUMERICHOST)`):
/// 1 to 4 parts, each decimal, `0x` hex or `0` octal.
pub(crate) fn parse_inet_aton(s: &str) -> Option<Ipv4Addr> {
    let b = s.as_bytes();
    let mut parts: Vec<u32> = Vec::with_capacity(4);
    let mut i = 0;
    let mut val: u32;
    loop {
        if i >= b.len() || !b[i].is_ascii_digit() {
            return None;
        }
        val = 0;
        let mut base = 10u32;
        let mut digit = false;
        if b[i] == b'0' {
            i += 1;
            if i < b.len() && (b[i] == b'x' || b[i] == b'X') {
                base = 16;
                i += 1;
            } else {
                base = 8;
                digit = true;
            }
        }
        while i < b.len() {
            let c = b[i];
            if c.is_ascii_digit() {
                if base == 8 && (c == b'8' || c == b'9') {
                    return None;
                }
                val = val.wrapping_mul(base).wrapping_add(u32::from(c - b'0'));
                digit = true;
                i += 1;
            } else if base == 16 && c.is_ascii_hexdigit() {
                let d = (c as char).to_digit(16).unwrap_or(0);
                val = (val << 4) | d;
                digit = true;
                i += 1;
            } else {
                break;
            }
        }
        if i < b.len() && b[i] == b'.' {
            if parts.len() > 2 || val > 0xff || !digit {
                return None;
            }
            parts.push(val);
            i += 1;
        } else {
            if !digit {
                return None;
            }
            break;
        }
    }
    if i != b.len() {
        return None;
    }
    let max: [u32; 4] = [0xffff_ffff, 0x00ff_ffff, 0x0000_ffff, 0x0000_00ff];
    if val > max[parts.len()] {
        return None;
    }
    let mut addr = val;
    for (k, p) in parts.iter().enumerate() {
        addr |= p << (24 - 8 * k as u32);
    }
    Some(Ipv4Addr::from(addr))
}

/// `virSocketAddrParse(.., AF_UNSPEC)`: an IPv4 (inet_aton) or IPv6 numeric address.
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    if let Some(a) = parse_inet_aton(s) {
        return Some(IpAddr::V4(a));
    }
    s.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// `virSocketAddrParse(.., AF_INET)`.
pub(crate) fn parse_ipv4(s: &str) -> Option<Ipv4Addr> {
    parse_inet_aton(s)
}

/// `virMacAddrParse`: six `:`-separated groups of 1-2 hex digits; after the
/// sixth group only the end or a byte <= space (signed) may follow.
pub(crate) fn parse_mac(s: &str) -> Option<MacAddr> {
    let b = s.as_bytes();
    let mut out = [0u8; 6];
    let mut i = 0;
    for (n, slot) in out.iter_mut().enumerate() {
        if i >= b.len() || !b[i].is_ascii_hexdigit() {
            return None;
        }
        // strtoul(base 16) would also consume a "0x" prefix: that makes the
        // group longer than 2 characters and thus invalid.
        if b[i] == b'0'
            && i + 2 < b.len()
            && (b[i + 1] == b'x' || b[i + 1] == b'X')
            && b[i + 2].is_ascii_hexdigit()
        {
            return None;
        }
        let start = i;
        let mut v: u32 = 0;
        while i < b.len() && b[i].is_ascii_hexdigit() && i - start < 3 {
            v = v * 16 + (b[i] as char).to_digit(16).unwrap_or(0);
            i += 1;
        }
        let len = i - start;
        if !(1..=2).contains(&len) || v > 0xff {
            return None;
        }
        *slot = v as u8;
        if n == 5 {
            return match b.get(i) {
                None => Some(MacAddr(out)),
                Some(&c) if (c as i8) <= 0x20 => Some(MacAddr(out)),
                Some(_) => None,
            };
        }
        if b.get(i) != Some(&b':') {
            return None;
        }
        i += 1;
    }
    None
}

/// `virUUIDParse`: leading/trailing whitespace, `-` or space anywhere
/// between hex pairs, exactly 32 hex digits.
pub(crate) fn parse_uuid(s: &str) -> Option<Uuid> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && is_c_space(b[i]) {
        i += 1;
    }
    let mut out = [0u8; 16];
    let mut n = 0;
    while n < 16 {
        let c = *b.get(i)?;
        if c == b'-' || c == b' ' {
            i += 1;
            continue;
        }
        let hi = (c as char).to_digit(16)?;
        i += 1;
        let lo = (*b.get(i)? as char).to_digit(16)?;
        i += 1;
        out[n] = (hi * 16 + lo) as u8;
        n += 1;
    }
    if b[i..].iter().all(|&c| is_c_space(c)) {
        Some(Uuid(out))
    } else {
        None
    }
}

/// A random RFC 4122 version 4 UUID.
pub(crate) fn random_uuid() -> Uuid {
    let mut bytes = random_bytes::<16>();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    Uuid(bytes)
}

/// Random bytes from /dev/urandom, falling back to std's hasher seeds.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    use std::io::Read;
    let mut out = [0u8; N];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        if f.read_exact(&mut out).is_ok() {
            return out;
        }
    }
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = RandomState::new().build_hasher();
        h.write_usize(i);
        let v = h.finish().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_follow_c_rules() {
        assert_eq!(parse_uip("42", 10), Some(42));
        assert_eq!(parse_uip(" 42", 10), Some(42));
        assert_eq!(parse_uip("+42", 10), Some(42));
        assert_eq!(parse_uip("-1", 10), None);
        assert_eq!(parse_uip("42x", 10), None);
        assert_eq!(parse_uip("", 10), None);
        assert_eq!(parse_uip("4294967296", 10), None);
        assert_eq!(parse_uip("0x10", 0), Some(16));
        assert_eq!(parse_uip("010", 0), Some(8));
        assert_eq!(parse_uip("0x", 0), None);
        assert_eq!(parse_ui("-1", 10), Some(u32::MAX));
        assert_eq!(parse_ullp("18446744073709551616", 10), None);
    }

    #[test]
    fn inet_aton_forms() {
        assert_eq!(
            parse_inet_aton("192.168.1.1"),
            Some(Ipv4Addr::new(192, 168, 1, 1))
        );
        assert_eq!(parse_inet_aton("127.1"), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(parse_inet_aton("0x7f.1"), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(
            parse_inet_aton("010.0.0.1"),
            Some(Ipv4Addr::new(8, 0, 0, 1))
        );
        assert_eq!(parse_inet_aton("1.2.3.4 "), None);
        assert_eq!(parse_inet_aton("1.2.3.256"), None);
        assert_eq!(parse_inet_aton("1.2.3.4.5"), None);
        assert_eq!(parse_inet_aton("08.1.1.1"), None);
        assert_eq!(parse_inet_aton(""), None);
        assert_eq!(parse_inet_aton("1..2"), None);
    }

    #[test]
    fn mac_and_uuid() {
        assert_eq!(
            parse_mac("52:54:00:E6:A2:C9").map(|m| m.to_string()),
            Some("52:54:00:e6:a2:c9".to_string())
        );
        assert_eq!(
            parse_mac("2:4:0:e:a:c").map(|m| m.0),
            Some([2, 4, 0, 0xe, 0xa, 0xc])
        );
        assert!(parse_mac("52:54:00:e6:a2").is_none());
        assert!(parse_mac("52:54:00:e6:a2:c9x").is_none());
        assert!(parse_mac("52:54:00:e6:a2:123").is_none());
        assert!(parse_mac(" 52:54:00:e6:a2:12").is_none());
        let u = parse_uuid(" 81ff0d90-c91e-6742-64da-4a736edb9a8e ");
        assert_eq!(
            u.map(|u| u.to_string()),
            Some("81ff0d90-c91e-6742-64da-4a736edb9a8e".to_string())
        );
        assert!(parse_uuid("81ff0d90-c91e-6742-64da-4a736edb9a8").is_none());
        assert!(parse_uuid("81ff0d90-c91e-6742-64da-4a736edb9a8e0").is_none());
    }
}
