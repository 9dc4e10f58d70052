//! The simulated traffic-control state: root qdiscs, HTB classes (kept in a
//! hash table like the kernel's, so listings come out in the kernel's order)
//! and u32 filters per device, and HTB's rate-to-time arithmetic.

use super::*;

/// A root qdisc added with `tc qdisc add dev D root handle H: KIND ...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Qdisc {
    pub kind: String,
    /// Handle as written, e.g. `1:`.
    pub handle: String,
    /// Remaining arguments (e.g. `default 2`).
    pub params: Vec<String>,
}

/// A filter added with `tc filter add`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    pub parent: String,
    pub prio: u32,
    pub protocol: String,
    /// Classifier and its arguments (`u32 match ip dport 68 ffff action ...`).
    pub spec: Vec<String>,
}

/// Traffic-control state of one network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TcState {
    /// Root qdisc per device (absent = the kernel default).
    pub qdiscs: BTreeMap<String, Qdisc>,
    /// Filters per device, in insertion order.
    pub filters: BTreeMap<String, Vec<Filter>>,
    /// When true, `action csum` fails as on a kernel without `act_csum`.
    #[serde(default)]
    pub csum_fails: bool,
    /// Devices with an `ingress` qdisc.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub ingress: std::collections::BTreeSet<String>,
    /// Last automatic qdisc handle handed out (the kernel counts from 8001:).
    #[serde(default)]
    pub auto_handle: u32,
    /// htb classes per device, as the kernel's class hash holds them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub classes: BTreeMap<String, ClassHash>,
    /// Qdiscs attached to an htb class (`tc qdisc add dev D parent 1:2
    /// handle 2: sfq ...`), per device in creation order.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub children: BTreeMap<String, Vec<ChildQdisc>>,
    /// Devices whose ingress queue exists (an ingress qdisc was added once:
    /// deleting a missing one then fails differently).
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub ingress_queue: std::collections::BTreeSet<String>,
    /// When true, `sfq`, the `fw` classifier and the `police` action are
    /// missing, as on the reference kernel (no sch_sfq, cls_fw, act_police).
    #[serde(default)]
    pub qos_modules_missing: bool,
}

/// A qdisc attached to a class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildQdisc {
    /// The class it hangs under (`MAJ:MIN` as a number).
    pub parent: u32,
    /// Its handle, e.g. `2:`.
    pub handle: String,
    pub kind: String,
    pub params: Vec<String>,
}

/// One htb class (`tc class add ... htb rate R ...`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HtbClass {
    /// `MAJ:MIN` as numbers.
    pub id: u32,
    /// Parent class id; None = a child of the qdisc (`root`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<u32>,
    /// Rates in bytes per second.
    pub rate: u64,
    pub ceil: u64,
    /// Bursts in scheduler ticks, as the kernel keeps them.
    pub buffer: u64,
    pub cbuffer: u64,
    pub prio: u32,
}

/// The kernel's class hash of a qdisc: buckets in iteration order, each
/// newest first; it doubles when more than 3/4 full (so `tc class show`
/// lists classes in the kernel's order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ClassHash {
    pub buckets: Vec<Vec<HtbClass>>,
}

impl ClassHash {
    pub(super) fn hash(id: u32, mask: usize) -> usize {
        let mut h = id ^ (id >> 8);
        h ^= h >> 4;
        h as usize & mask
    }
    pub(super) fn iter(&self) -> impl Iterator<Item = &HtbClass> {
        self.buckets.iter().flatten()
    }
    pub(super) fn get(&self, id: u32) -> Option<&HtbClass> {
        self.iter().find(|c| c.id == id)
    }
    pub(super) fn insert(&mut self, c: HtbClass) {
        if self.buckets.is_empty() {
            self.buckets = vec![Vec::new(); 4];
        }
        let mask = self.buckets.len() - 1;
        self.buckets[Self::hash(c.id, mask)].insert(0, c);
        let elems: usize = self.buckets.iter().map(Vec::len).sum();
        if elems * 4 > self.buckets.len() * 3 {
            let size = self.buckets.len() * 2;
            let mut nb: Vec<Vec<HtbClass>> = vec![Vec::new(); size];
            for c in self.buckets.iter().flatten() {
                nb[Self::hash(c.id, size - 1)].insert(0, c.clone());
            }
            self.buckets = nb;
        }
    }
    pub(super) fn replace(&mut self, c: HtbClass) {
        for b in &mut self.buckets {
            for x in b.iter_mut() {
                if x.id == c.id {
                    *x = c;
                    return;
                }
            }
        }
    }
    pub(super) fn remove(&mut self, id: u32) {
        for b in &mut self.buckets {
            b.retain(|c| c.id != id);
        }
    }
}

/// Scheduler ticks per microsecond (from /proc/net/psched of the reference
/// kernel: 1000/64).
pub(super) const TICK_IN_USEC: f64 = 1000.0 / 64.0;

/// tc's xmittime: ticks to send `size` bytes at `rate` bytes/s.
pub(super) fn xmittime(rate: u64, size: u64) -> u64 {
    if rate == 0 {
        return 0;
    }
    (1_000_000.0 * (size as f64 / rate as f64) * TICK_IN_USEC) as u64
}

/// tc's xmitsize: bytes sent in `ticks` at `rate` bytes/s.
pub(super) fn xmitsize(rate: u64, ticks: u64) -> u64 {
    ((rate as f64) * (ticks as f64 / TICK_IN_USEC) / 1_000_000.0) as u64
}

/// What tc needs to know about a link: its name (in ifindex order) and the
/// default root qdisc it has (None before it was first brought up).
#[derive(Debug, Clone)]
pub struct TcLink {
    pub name: String,
    pub default_qdisc: Option<&'static str>,
}

impl TcState {
    /// Forget everything attached to a device that no longer exists.
    pub fn drop_device(&mut self, dev: &str) {
        self.classes.remove(dev);
        self.children.remove(dev);
        self.qdiscs.remove(dev);
        self.ingress.remove(dev);
        self.ingress_queue.remove(dev);
        self.filters.remove(dev);
    }
}
