//! Argument parsing of the simulated `tc`: rates, sizes, class ids and u32
//! selectors as iproute2's `tc` reads them.

/// `tc` usage text for htb (printed after a bad class argument).
pub(super) const HTB_USAGE: &str = include_str!("../usage/tc-htb.txt");

/// A rate as tc parses it: bits by default; bit/kbit/mbit/gbit/tbit
/// (1000-based), kibit/mibit/gibit (1024-based), bps/kbps/mbps/gbps
/// (bytes). Returns bytes per second.
pub(super) fn parse_rate(s: &str) -> Option<u64> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let bits = match unit.to_ascii_lowercase().as_str() {
        "" | "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "tbit" => 1e12,
        "kibit" => 1024.0,
        "mibit" => 1024.0 * 1024.0,
        "gibit" => 1024.0 * 1024.0 * 1024.0,
        "bps" => 8.0,
        "kbps" => 8e3,
        "mbps" => 8e6,
        "gbps" => 8e9,
        _ => return None,
    };
    Some((n * bits / 8.0) as u64)
}

/// A size as tc parses it: bytes by default; k/kb, m/mb, g/gb (1024-based),
/// kbit/mbit/gbit (bits).
pub(super) fn parse_size(s: &str) -> Option<u64> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let f = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1024.0,
        "m" | "mb" => 1024.0 * 1024.0,
        "g" | "gb" => 1024.0 * 1024.0 * 1024.0,
        "kbit" => 1024.0 / 8.0,
        "mbit" => 1024.0 * 1024.0 / 8.0,
        "gbit" => 1024.0 * 1024.0 * 1024.0 / 8.0,
        _ => return None,
    };
    Some((n * f) as u64)
}

/// `MAJ:MIN` (hex) as a class id.
pub(super) fn parse_classid(s: &str) -> Option<u32> {
    let (a, b) = s.split_once(':')?;
    let maj = if a.is_empty() {
        0
    } else {
        u32::from_str_radix(a, 16).ok()?
    };
    let min = if b.is_empty() {
        0
    } else {
        u32::from_str_radix(b, 16).ok()?
    };
    (maj <= 0xffff && min <= 0xffff).then_some((maj << 16) | min)
}

/// One 32-bit key of a u32 selector: value and mask at a byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Key {
    pub(super) off: u32,
    pub(super) value: u32,
    pub(super) mask: u32,
}

/// A mask: always hexadecimal (with or without 0x).
pub(super) fn parse_mask(s: &str) -> Option<u32> {
    u32::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}

/// A value: 0x hexadecimal, else decimal.
pub(super) fn parse_num(s: &str) -> Option<u32> {
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// The keys, flowid and actions of `u32 match ... [flowid X] [action ...]`,
/// packed as tc packs them (matches on the same word are merged).
pub(super) fn u32_selector(spec: &[String]) -> (Vec<Key>, Option<String>, Vec<Vec<String>>) {
    let mut keys: Vec<Key> = Vec::new();
    let mut flowid = None;
    let mut actions: Vec<Vec<String>> = Vec::new();
    let mut add = |k: Key| match keys.iter_mut().find(|x| x.off == k.off) {
        Some(x) => {
            x.value |= k.value;
            x.mask |= k.mask;
        }
        None => keys.push(k),
    };
    let t: Vec<&str> = spec.iter().map(String::as_str).collect();
    let mut i = 0;
    while i < t.len() {
        match t[i] {
            "match" => match (t.get(i + 1), t.get(i + 2)) {
                (Some(&"ip"), Some(&f @ ("src" | "dst"))) => {
                    let v = t.get(i + 3).copied().unwrap_or("");
                    let (a, l) = v.split_once('/').unwrap_or((v, "32"));
                    let a: u32 = a.parse::<std::net::Ipv4Addr>().map(u32::from).unwrap_or(0);
                    let l: u32 = l.parse().unwrap_or(32).min(32);
                    let mask = if l == 0 { 0 } else { u32::MAX << (32 - l) };
                    add(Key {
                        off: if f == "src" { 12 } else { 16 },
                        value: a & mask,
                        mask,
                    });
                    i += 4;
                }
                (Some(&"ip"), Some(&f @ ("sport" | "dport"))) => {
                    let v = t.get(i + 3).and_then(|x| parse_num(x)).unwrap_or(0) & 0xffff;
                    let m = t.get(i + 4).and_then(|x| parse_mask(x)).unwrap_or(0) & 0xffff;
                    let sh = if f == "sport" { 16 } else { 0 };
                    add(Key {
                        off: 20,
                        value: (v & m) << sh,
                        mask: m << sh,
                    });
                    i += 5;
                }
                (Some(&"ip"), Some(&"protocol")) => {
                    let v = t.get(i + 3).and_then(|x| parse_num(x)).unwrap_or(0) & 0xff;
                    let m = t.get(i + 4).and_then(|x| parse_mask(x)).unwrap_or(0) & 0xff;
                    add(Key {
                        off: 8,
                        value: (v & m) << 16,
                        mask: m << 16,
                    });
                    i += 5;
                }
                (Some(&"u32"), _) => {
                    let v = t.get(i + 2).and_then(|x| parse_num(x)).unwrap_or(0);
                    let m = t.get(i + 3).and_then(|x| parse_mask(x)).unwrap_or(0);
                    // `at OFF` is optional (offset 0).
                    let (off, used) = if t.get(i + 4) == Some(&"at") {
                        (t.get(i + 5).and_then(|x| parse_num(x)).unwrap_or(0), 6)
                    } else {
                        (0, 4)
                    };
                    add(Key {
                        off,
                        value: v & m,
                        mask: m,
                    });
                    i += used;
                }
                _ => i += 1,
            },
            "flowid" | "classid" => {
                flowid = t.get(i + 1).map(|x| x.to_string());
                i += 2;
            }
            // The old-style policer (`police rate R burst B ... drop`).
            "police" => {
                let end = t[i + 1..]
                    .iter()
                    .position(|x| matches!(*x, "flowid" | "classid" | "action" | "police"))
                    .map_or(t.len(), |p| p + i + 1);
                actions.push(t[i..end].iter().map(|x| x.to_string()).collect());
                i = end;
            }
            "action" => {
                let end = t[i + 1..]
                    .iter()
                    .position(|x| *x == "action")
                    .map_or(t.len(), |p| p + i + 1);
                actions.push(t[i + 1..end].iter().map(|x| x.to_string()).collect());
                i = end;
            }
            _ => i += 1,
        }
    }
    (keys, flowid, actions)
}
