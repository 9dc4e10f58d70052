//! Snapshots (insta) of the reports people read after a matrix run: the
//! summary table with its final line, Markdown, HTML, JUnit and JSON, for a
//! small fixed set of outcomes (a pass, a failure with its diff, an expected
//! failure, a fault scenario with its step count).
//!
//! Update on purpose with `INSTA_UPDATE=always cargo test -p
//! virtnet-conformance --test report_snapshots`; CI never writes them.

use std::time::Duration;

use virtnet_conformance::checks::Verdict;
use virtnet_conformance::report;
use virtnet_conformance::scenario::{Op, Outcome, Scenario};
use virtnet_core::firewall::Backend;

fn outcome(case: &str, backend: Backend, op: Op, verdict: Verdict, steps: u64) -> Outcome {
    Outcome {
        scenario: Scenario {
            case: case.into(),
            backend,
            layout: virtnet_core::rules::batched::Layout::Libvirt,
            op,
        },
        verdict,
        duration: Duration::from_millis(250),
        steps,
    }
}

fn outcomes() -> Vec<Outcome> {
    vec![
        outcome("isolated", Backend::Iptables, Op::Start, Verdict::Pass, 1),
        outcome(
            "isolated",
            Backend::Iptables,
            Op::Destroy,
            Verdict::Fail {
                message: "host after destroy differs from the baseline <plus kept> & more".into(),
                diff: "--- expected\n+++ actual\n@@ -1 +1,2 @@\n table ip filter\n+-A FORWARD -o virbr9 -j REJECT\n".into(),
            },
            1,
        ),
        outcome(
            "nat-default",
            Backend::Nftables,
            Op::Start,
            Verdict::Xfail {
                reason: "expected failure: kernel lacks act_csum (libvirt fails the same way)".into(),
            },
            1,
        ),
        outcome("nat-default", Backend::Nftables, Op::FailEach, Verdict::Pass, 22),
    ]
}

#[test]
fn summary_table_and_final_line() {
    let out = outcomes();
    let text = format!(
        "{}\n{}\n",
        report::summary_table(&out),
        report::final_line(&report::totals(&out))
    );
    insta::assert_snapshot!("summary", text);
}

#[test]
fn markdown_report() {
    insta::assert_snapshot!("markdown", report::markdown(&outcomes(), "fake"));
}

#[test]
fn html_report() {
    insta::assert_snapshot!("html", report::html(&outcomes(), "fake"));
}

#[test]
fn junit_report() {
    insta::assert_snapshot!("junit", report::junit(&outcomes(), "fake"));
}

#[test]
fn json_report() {
    insta::assert_snapshot!("json", report::json(&outcomes(), "fake"));
}
