//! Per-key mutual exclusion: operations on one network are serialised while
//! operations on different networks run in parallel.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::{Condvar, Mutex, MutexGuard};

/// A set of locks created on demand, one per key. Holding the guard of key
/// `k` excludes every other holder of `k` and nobody else. Keys are forgotten
/// when unlocked, so the set never grows beyond the keys currently held.
#[derive(Debug)]
pub struct KeyedLocks<K> {
    held: Mutex<HashSet<K>>,
    released: Condvar,
}

impl<K> Default for KeyedLocks<K> {
    fn default() -> Self {
        KeyedLocks {
            held: Mutex::new(HashSet::new()),
            released: Condvar::new(),
        }
    }
}

/// Holds the lock of one key until dropped.
#[derive(Debug)]
#[must_use = "the key is unlocked as soon as the guard is dropped"]
pub struct KeyGuard<'a, K: Eq + Hash + Clone> {
    locks: &'a KeyedLocks<K>,
    key: K,
}

impl<K: Eq + Hash + Clone> KeyGuard<'_, K> {
    pub fn key(&self) -> &K {
        &self.key
    }
}

impl<K: Eq + Hash + Clone> KeyedLocks<K> {
    pub fn new() -> Self {
        Self::default()
    }

    fn set(&self) -> MutexGuard<'_, HashSet<K>> {
        // The set stays consistent even if a holder panicked: recover it.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Block until `key` is free, then hold it.
    pub fn lock(&self, key: K) -> KeyGuard<'_, K> {
        let mut held = self.set();
        while held.contains(&key) {
            held = self.released.wait(held).unwrap_or_else(|e| e.into_inner());
        }
        held.insert(key.clone());
        KeyGuard { locks: self, key }
    }

    /// Hold `key` if it is free right now.
    pub fn try_lock(&self, key: K) -> Option<KeyGuard<'_, K>> {
        let mut held = self.set();
        if held.contains(&key) {
            return None;
        }
        held.insert(key.clone());
        Some(KeyGuard { locks: self, key })
    }

    /// Whether `key` is currently held.
    pub fn is_locked(&self, key: &K) -> bool {
        self.set().contains(key)
    }

    /// Number of keys currently held.
    pub fn held(&self) -> usize {
        self.set().len()
    }
}

impl<K: Eq + Hash + Clone> Drop for KeyGuard<'_, K> {
    fn drop(&mut self) {
        let mut held = self.locks.set();
        held.remove(&self.key);
        drop(held);
        self.locks.released.notify_all();
    }
}
