//! What the matrix's scenarios and the upgrade check share: how a check
//! ends ([`Verdict`], and inside a check body [`Stop`] / [`Failure`]), the
//! reason of the kernel's expected failures ([`XFAIL_ACT_CSUM`]) and the
//! "nothing of ours left" comparison of two host snapshots
//! ([`nothing_left`]).
//!
//! Its own module so that `scenario` and `upgrade` both use it without
//! using each other.

use std::collections::BTreeMap;

use virtnet_runner::CheckedError;

use crate::host::{HostError, Snapshot, FIREWALL_SECTIONS};

/// How a scenario or an upgrade check ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "verdict", rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    /// Failed: what went wrong and, when there is one, a diff of the host.
    Fail {
        message: String,
        diff: String,
    },
    /// Fails for a known reason outside virtnet (the kernel).
    Xfail {
        reason: String,
    },
}

/// Reason given for scenarios the real kernel cannot run.
pub const XFAIL_ACT_CSUM: &str =
    "expected failure: kernel lacks act_csum (libvirt fails the same way)";

/// Reason given for QoS scenarios on a kernel without sch_sfq, cls_fw or
/// act_police.
pub const XFAIL_QOS: &str =
    "expected failure: kernel lacks sch_sfq/cls_fw/act_police for QoS (libvirt fails the same way)";

/// A failed check: what went wrong, and a diff of the host when there is
/// one (else empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    pub diff: String,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            diff: String::new(),
        }
    }

    pub fn with_diff(message: impl Into<String>, diff: String) -> Self {
        Failure {
            message: message.into(),
            diff,
        }
    }
}

impl From<HostError> for Failure {
    fn from(e: HostError) -> Self {
        Failure::new(format!("host: {e}"))
    }
}

impl From<CheckedError> for Failure {
    fn from(e: CheckedError) -> Self {
        HostError::from(e).into()
    }
}

/// What ends a check body early: a failure, or an expected failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    Fail(Failure),
    Xfail(String),
}

impl From<Failure> for Stop {
    fn from(f: Failure) -> Self {
        Stop::Fail(f)
    }
}

impl From<HostError> for Stop {
    fn from(e: HostError) -> Self {
        Stop::Fail(e.into())
    }
}

impl From<CheckedError> for Stop {
    fn from(e: CheckedError) -> Self {
        Stop::Fail(e.into())
    }
}

/// The result of a check body (or of one of its steps).
pub type CheckResult<T> = Result<T, Stop>;

/// The verdict of a finished check body.
pub fn verdict_of(result: CheckResult<()>) -> Verdict {
    match result {
        Ok(()) => Verdict::Pass,
        Err(Stop::Xfail(reason)) => Verdict::Xfail { reason },
        Err(Stop::Fail(f)) => Verdict::Fail {
            message: f.message,
            diff: f.diff,
        },
    }
}

/// `Err` with a failure `message` (no diff), as a [`Failure`] or a [`Stop`].
pub fn fail<T, E: From<Failure>>(message: impl Into<String>) -> Result<T, E> {
    Err(Failure::new(message).into())
}

/// `Err` with a failure `message` and a `diff`.
pub fn fail_diff<T, E: From<Failure>>(message: impl Into<String>, diff: String) -> Result<T, E> {
    Err(Failure::with_diff(message, diff).into())
}

/// Lines (per section) of `snap` in the given sections, with their counts
/// (borrowed from `snap`: every check of every fault point counts three
/// snapshots).
pub fn line_counts<'a>(
    snap: &'a Snapshot,
    sections: &[&str],
) -> BTreeMap<(&'a str, &'a str), usize> {
    let mut counts = BTreeMap::new();
    for (name, text) in &snap.sections {
        if !sections.contains(&name.as_str()) {
            continue;
        }
        for line in text.lines() {
            *counts.entry((name.as_str(), line)).or_insert(0) += 1;
        }
    }
    counts
}

/// Nothing of ours left (the scenarios' and the upgrade check's): every
/// firewall line of `after` is in `before` or in `kept`; every firewall
/// line of `before` is still there (foreign rules untouched); links and
/// processes as `before`.
pub fn nothing_left(
    before: &Snapshot,
    after: &Snapshot,
    kept: &Snapshot,
    what: &str,
) -> Result<(), Failure> {
    // Multisets of lines: a line may appear at most as often as in the
    // state before or in the kept state (a duplicated jump to a private
    // chain is a leak too), and at least as often as before. A section
    // whose text is the same before and after has every line exactly as
    // often as before, so neither a leak nor a loss: only the others are
    // counted (most of a check's time, before).
    let changed: Vec<&str> = FIREWALL_SECTIONS
        .iter()
        .copied()
        .filter(|s| before.section(s) != after.section(s))
        .collect();
    let before_lines = line_counts(before, &changed);
    let after_lines = line_counts(after, &changed);
    let kept_lines = line_counts(kept, &changed);
    let count =
        |m: &BTreeMap<(&str, &str), usize>, l: &(&str, &str)| m.get(l).copied().unwrap_or(0);
    let extra: Vec<String> = after_lines
        .iter()
        .filter(|(l, c)| **c > count(&before_lines, l).max(count(&kept_lines, l)))
        .map(|((s, l), c)| format!("+ [{s}] {l}  (x{c})"))
        .collect();
    let gone: Vec<String> = before_lines
        .iter()
        .filter(|(l, c)| count(&after_lines, l) < **c)
        .map(|((s, l), _)| format!("- [{s}] {l}"))
        .collect();
    if !extra.is_empty() || !gone.is_empty() {
        let mut lines = extra;
        lines.extend(gone);
        return fail_diff(
            format!("{what}: rules left behind (+) or foreign/earlier rules removed (-)"),
            lines.join("\n"),
        );
    }
    let other = ["links", "processes"];
    let (before_other, after_other) = (before.only(&other), after.only(&other));
    if before_other != after_other {
        return fail_diff(
            format!("{what}: links or processes differ"),
            before_other.diff(&after_other, "before", "after"),
        );
    }
    Ok(())
}

/// The text of a caught panic.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Runs `one(i)` for every index of `order` (in that order) on `jobs`
/// threads — the matrix's and the upgrade check's worker pool (each real
/// host is a fresh network namespace of its worker thread). A panic
/// becomes `on_panic(i, message)`; `one` returning `None` skips `i`.
/// `progress(outcome, done, total)` as each finishes. Outcomes in index
/// order.
pub fn run_parallel<O: Send>(
    order: &[usize],
    total: usize,
    jobs: usize,
    one: &(dyn Fn(usize) -> Option<O> + Sync),
    on_panic: &(dyn Fn(usize, String) -> O + Sync),
    progress: &(dyn Fn(&O, usize, usize) + Sync),
) -> Vec<O> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: std::sync::Mutex<Vec<Option<O>>> =
        std::sync::Mutex::new((0..total).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| {
                while let Some(&i) = order.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let out =
                        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| one(i))) {
                            Ok(Some(out)) => out,
                            Ok(None) => continue,
                            Err(payload) => on_panic(i, panic_text(&*payload)),
                        };
                    let finished = done.fetch_add(1, Ordering::SeqCst) + 1;
                    progress(&out, finished, total);
                    if let Some(slot) = results.lock().unwrap_or_else(|e| e.into_inner()).get_mut(i)
                    {
                        *slot = Some(out);
                    }
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(sections: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            sections: sections
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// What is left and what is gone, in (section, line) order, with
    /// multiplicities; sections the same before and after are skipped
    /// without changing the verdict.
    #[test]
    fn nothing_left_lists_leaks_and_losses_in_order() {
        let before = snap(&[
            ("iptables", "-A FOREIGN-z\n-A FOREIGN-a\n-A KEPT\n"),
            ("nft", "table ip foreign\n"),
            ("links", "lo\n"),
        ]);
        let kept = snap(&[("iptables", "-A KEPT\n-A KEPT\n-A PRIV\n")]);
        // Leaks: m, b (twice), a duplicated KEPT beyond kept's two, and a
        // tc line; losses: FOREIGN-z and the nft table.
        let after = snap(&[
            (
                "iptables",
                "-A m\n-A FOREIGN-a\n-A KEPT\n-A KEPT\n-A KEPT\n-A b\n-A PRIV\n-A b\n",
            ),
            ("tc", "qdisc x\n"),
            ("links", "lo\n"),
        ]);
        let e = nothing_left(&before, &after, &kept, "t").unwrap_err();
        assert_eq!(
            e.diff,
            "+ [iptables] -A KEPT  (x3)\n+ [iptables] -A b  (x2)\n+ [iptables] -A m  (x1)\n\
             + [tc] qdisc x  (x1)\n- [iptables] -A FOREIGN-z\n- [nft] table ip foreign"
        );
        assert!(
            e.message.starts_with("t: rules left behind"),
            "{}",
            e.message
        );
        // Equal multisets in another order, and kept lines: nothing left.
        let after = snap(&[
            ("iptables", "-A PRIV\n-A KEPT\n-A FOREIGN-a\n-A FOREIGN-z\n"),
            ("nft", "table ip foreign\n"),
            ("links", "lo\n"),
        ]);
        nothing_left(&before, &after, &kept, "t").unwrap();
    }
}
