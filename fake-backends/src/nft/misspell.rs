//! The "did you mean ..." suggestion logic of nft 1.0.6.
//!
//! nft's edit distance has two quirks that decide which names it suggests,
//! and the simulator reproduces them on purpose:
//! * characters are compared one position to the right (`a[i]` with `b[j]`
//!   for 1-based `i`, `j`), so the terminating NUL takes part;
//! * the distance matrix is stored with a row stride of `len(b)` instead of
//!   `len(b) + 1`, so the last cell of a row is the first cell of the next.
//!
//! For example `c` against `nat` gives 2 (real edit distance 3), which is why
//! `delete chain ip t c` suggests chain `nat`.

/// nft's `string_distance(a, b)`, quirks included.
pub(crate) fn distance(a: &str, b: &str) -> usize {
    let a = a.as_bytes();
    let b = b.as_bytes();
    let (la, lb) = (a.len(), b.len());
    let at = |s: &[u8], i: usize| s.get(i).copied().unwrap_or(0);
    let mut d = vec![0usize; (la + 1) * (lb + 1)];
    let idx = |i: usize, j: usize| i * lb + j;
    for i in 0..=la {
        d[idx(i, 0)] = i;
    }
    for j in 0..=lb {
        d[idx(0, j)] = j;
    }
    for i in 1..=la {
        for j in 1..=lb {
            let sub = usize::from(at(a, i) != at(b, j));
            let del = d[idx(i - 1, j)] + 1;
            let ins = d[idx(i, j - 1)] + 1;
            let tra = d[idx(i - 1, j - 1)] + sub;
            let mut v = del.min(ins).min(tra);
            if i > 1 && j > 1 && at(a, i) == at(b, j - 1) && at(a, i - 1) == at(b, j) {
                v = v.min(d[idx(i - 2, j - 2)] + sub);
            }
            d[idx(i, j)] = v;
        }
    }
    d[idx(la, lb)]
}

/// Best candidate so far (`string_misspell_update`): `candidate` is the name
/// of an existing object, `wanted` the name the user gave.
#[derive(Debug, Default)]
pub(crate) struct Best<T> {
    min: Option<usize>,
    pub found: Option<T>,
}

impl<T> Best<T> {
    pub fn new() -> Self {
        Best {
            min: None,
            found: None,
        }
    }
    pub fn update(&mut self, candidate: &str, wanted: &str, obj: T) {
        let (la, lb) = (candidate.len(), wanted.len());
        // Object names are at most 255 bytes in nftables; refuse to build a
        // huge matrix for absurd input.
        if la > 256 || lb > 256 {
            return;
        }
        let max = la.max(lb);
        let min = la.min(lb);
        if max <= 1 {
            return;
        }
        let threshold = if max - min <= 1 {
            max.div_ceil(3).max(1)
        } else {
            (max + 2).div_ceil(3)
        };
        let dist = distance(candidate, wanted);
        if dist > threshold {
            return;
        }
        if self.min.is_none_or(|m| dist < m) {
            self.min = Some(dist);
            self.found = Some(obj);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quirky_distances_match_real_nft_suggestions() {
        // Suggestions the real nft 1.0.6 made in a namespace:
        // `delete chain ip t c` -> chain `nat`; `add rule ip b2 d` -> `forward`.
        let mut b = Best::new();
        b.update("forward", "c", 1);
        b.update("nat", "c", 2);
        assert_eq!(b.found, Some(2));
        let mut b = Best::new();
        b.update("forward", "d", 1);
        assert_eq!(b.found, Some(1));
        // One-character names are never suggested.
        let mut b = Best::new();
        b.update("c", "d", 1);
        assert_eq!(b.found, None);
        // Exact names have distance 0.
        assert_eq!(distance("guest_nat", "guest_nat"), 0);
        let mut b = Best::new();
        b.update("t", "t2", 1);
        assert_eq!(b.found, Some(1));
    }
}
