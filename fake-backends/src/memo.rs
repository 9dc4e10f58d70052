//! The bounded per-thread memo behind the simulators' caches of pure
//! functions (nft scanning+parsing, iptables parsing, the iptables-nft rule
//! translation): a run gives the same command texts again and again, and a
//! cached result is the result, since the functions depend on the key alone.

use std::borrow::Borrow;
use std::hash::Hash;

use rustc_hash::FxHashMap;

/// A map that forgets everything when it reaches its bound: cheaper than an
/// LRU, and a run's working set (the commands of a few networks) is far
/// below the bounds used.
pub(crate) struct Bounded<K, V> {
    map: FxHashMap<K, V>,
    cap: usize,
}

impl<K: Hash + Eq, V> Bounded<K, V> {
    pub(crate) fn new(cap: usize) -> Self {
        Bounded {
            map: FxHashMap::default(),
            cap,
        }
    }

    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(key)
    }

    /// Remembers `value` under `key`, emptying the memo first if it is full.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        if self.map.len() >= self.cap {
            self.map.clear();
        }
        self.map.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_everything_at_its_bound() {
        let mut m: Bounded<String, u32> = Bounded::new(2);
        m.insert("a".into(), 1);
        m.insert("b".into(), 2);
        assert_eq!(m.get("a"), Some(&1));
        m.insert("c".into(), 3);
        assert_eq!((m.get("a"), m.get("b"), m.get("c")), (None, None, Some(&3)));
    }
}
