//! Reports of a matrix run: the summary table (case × backend × operation),
//! the final `N passed, M failed` line, JUnit XML for CI, and a Markdown or
//! HTML matrix with failures linked to their diffs; JSON for machines.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::checks::Verdict;
use crate::scenario::Outcome;

/// Counts of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    pub passed: usize,
    pub failed: usize,
    pub xfailed: usize,
}

pub fn totals(outcomes: &[Outcome]) -> Totals {
    let mut t = Totals::default();
    for o in outcomes {
        match o.verdict {
            Verdict::Pass => t.passed += 1,
            Verdict::Fail { .. } => t.failed += 1,
            Verdict::Xfail { .. } => t.xfailed += 1,
        }
    }
    t
}

/// The last line of every run.
pub fn final_line(t: &Totals) -> String {
    format!("{} passed, {} failed", t.passed, t.failed)
}

/// Cell state of a (case, backend, column) group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cell {
    Pass,
    Fail,
    Xfail,
}

struct Grid {
    columns: Vec<String>,
    /// case -> column -> (cell, ids of the scenarios in it)
    rows: BTreeMap<String, BTreeMap<String, (Cell, Vec<String>)>>,
}

fn short(b: virtnet_core::firewall::Backend) -> &'static str {
    match b {
        virtnet_core::firewall::Backend::Iptables => "ipt",
        virtnet_core::firewall::Backend::Nftables => "nft",
        virtnet_core::firewall::Backend::None => "none",
    }
}

fn grid(outcomes: &[Outcome]) -> Grid {
    let mut columns: Vec<String> = Vec::new();
    let mut rows: BTreeMap<String, BTreeMap<String, (Cell, Vec<String>)>> = BTreeMap::new();
    for o in outcomes {
        let col = format!("{} {}", short(o.scenario.backend), o.scenario.op.column());
        if !columns.contains(&col) {
            columns.push(col.clone());
        }
        let cell = match o.verdict {
            Verdict::Pass => Cell::Pass,
            Verdict::Fail { .. } => Cell::Fail,
            Verdict::Xfail { .. } => Cell::Xfail,
        };
        // One row per case and layout: `case` (libvirt's), `case/batched`.
        let row = match o.scenario.layout {
            virtnet_core::rules::batched::Layout::Libvirt => o.scenario.case.clone(),
            l => format!("{}/{l}", o.scenario.case),
        };
        let e = rows
            .entry(row)
            .or_default()
            .entry(col)
            .or_insert((cell, Vec::new()));
        e.0 = match (e.0, cell) {
            (Cell::Fail, _) | (_, Cell::Fail) => Cell::Fail,
            (Cell::Xfail, _) | (_, Cell::Xfail) => Cell::Xfail,
            _ => Cell::Pass,
        };
        e.1.push(o.scenario.id());
    }
    // Backend-major column order as they first appear: ipt ..., nft ...
    columns.sort_by_key(|c| (!c.starts_with("ipt"), 0));
    Grid { columns, rows }
}

fn cell_text(c: Option<&(Cell, Vec<String>)>) -> &'static str {
    match c.map(|x| x.0) {
        None => "-",
        Some(Cell::Pass) => "ok",
        Some(Cell::Fail) => "FAIL",
        Some(Cell::Xfail) => "xfail",
    }
}

/// The summary table for a terminal, with the failures listed after it.
pub fn summary_table(outcomes: &[Outcome]) -> String {
    let g = grid(outcomes);
    let case_w = g.rows.keys().map(String::len).max().unwrap_or(4).max(4);
    let mut out = String::new();
    let _ = write!(out, "{:<case_w$}", "case");
    for c in &g.columns {
        let _ = write!(out, " | {c}");
    }
    out.push('\n');
    let _ = write!(out, "{}", "-".repeat(case_w));
    for c in &g.columns {
        let _ = write!(out, "-+-{}", "-".repeat(c.len()));
    }
    out.push('\n');
    for (case, cols) in &g.rows {
        let _ = write!(out, "{case:<case_w$}");
        for c in &g.columns {
            let _ = write!(out, " | {:<w$}", cell_text(cols.get(c)), w = c.len());
        }
        out.push('\n');
    }
    let t = totals(outcomes);
    if t.xfailed > 0 {
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        for o in outcomes {
            if let Verdict::Xfail { reason } = &o.verdict {
                *reasons.entry(reason.clone()).or_default() += 1;
            }
        }
        for (r, n) in reasons {
            let _ = writeln!(out, "{n} {r}");
        }
    }
    for o in outcomes {
        if let Verdict::Fail { message, diff } = &o.verdict {
            let _ = writeln!(out, "\nFAILED {}: {message}", o.scenario.id());
            if !diff.is_empty() {
                for l in diff.lines().take(60) {
                    let _ = writeln!(out, "    {l}");
                }
            }
        }
    }
    out
}

fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => o.push('?'),
            c => o.push(c),
        }
    }
    o
}

/// JUnit XML: one test case per scenario (class = case), failures with
/// their diff, expected failures as skipped with the reason.
pub fn junit(outcomes: &[Outcome], host: &str) -> String {
    let t = totals(outcomes);
    let time: f64 = outcomes.iter().map(|o| o.duration.as_secs_f64()).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites><testsuite name=\"virtnet-conformance-{host}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{time:.3}\">",
        outcomes.len(),
        t.failed,
        t.xfailed
    );
    for o in outcomes {
        let name = format!("{}/{}", o.scenario.row_backend(), o.scenario.op.label());
        let _ = write!(
            out,
            "  <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
            xml_escape(&o.scenario.case),
            xml_escape(&name),
            o.duration.as_secs_f64()
        );
        match &o.verdict {
            Verdict::Pass => out.push_str("/>\n"),
            Verdict::Fail { message, diff } => {
                let _ = writeln!(
                    out,
                    ">\n    <failure message=\"{}\">{}</failure>\n  </testcase>",
                    xml_escape(message),
                    xml_escape(diff)
                );
            }
            Verdict::Xfail { reason } => {
                let _ = writeln!(
                    out,
                    ">\n    <skipped message=\"{}\"/>\n  </testcase>",
                    xml_escape(reason)
                );
            }
        }
    }
    out.push_str("</testsuite></testsuites>\n");
    out
}

fn anchor(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// A Markdown matrix; each FAIL cell links to its failure's section with
/// the diff.
pub fn markdown(outcomes: &[Outcome], host: &str) -> String {
    let g = grid(outcomes);
    let t = totals(outcomes);
    let mut out = format!(
        "# virtnet conformance ({host} host)\n\n**{}**",
        final_line(&t)
    );
    if t.xfailed > 0 {
        let _ = write!(out, ", {} expected failures", t.xfailed);
    }
    out.push_str("\n\nok = passed, FAIL = failed (click for the diff), xfail = expected failure, - = not applicable\n\n| case |");
    for c in &g.columns {
        let _ = write!(out, " {c} |");
    }
    out.push_str("\n|---|");
    for _ in &g.columns {
        out.push_str("---|");
    }
    out.push('\n');
    for (case, cols) in &g.rows {
        let _ = write!(out, "| {case} |");
        for c in &g.columns {
            match cols.get(c) {
                Some((Cell::Fail, ids)) => {
                    let first = ids
                        .iter()
                        .find(|id| failed(outcomes, id))
                        .cloned()
                        .unwrap_or_default();
                    let _ = write!(out, " [**FAIL**](#{}) |", anchor(&first));
                }
                x => {
                    let _ = write!(out, " {} |", cell_text(x));
                }
            }
        }
        out.push('\n');
    }
    let mut xf: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for o in outcomes {
        if let Verdict::Xfail { reason } = &o.verdict {
            xf.entry(reason.as_str()).or_default().push(o.scenario.id());
        }
    }
    for (r, ids) in xf {
        let _ = write!(out, "\n**{r}**: {}\n", ids.join(", "));
    }
    let fails: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| matches!(o.verdict, Verdict::Fail { .. }))
        .collect();
    if !fails.is_empty() {
        out.push_str("\n## Failures\n");
    }
    for o in fails {
        if let Verdict::Fail { message, diff } = &o.verdict {
            let id = o.scenario.id();
            let _ = write!(
                out,
                "\n<a id=\"{}\"></a>\n### {id}\n\n{message}\n\n```diff\n{}\n```\n",
                anchor(&id),
                diff.replace("```", "'''")
            );
        }
    }
    out
}

fn failed(outcomes: &[Outcome], id: &str) -> bool {
    outcomes
        .iter()
        .any(|o| o.scenario.id() == id && matches!(o.verdict, Verdict::Fail { .. }))
}

/// A self-contained HTML page: the coloured matrix, failures linked to
/// their diffs.
pub fn html(outcomes: &[Outcome], host: &str) -> String {
    let g = grid(outcomes);
    let t = totals(outcomes);
    let mut out = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>virtnet conformance</title><style>\
body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}\
.ok{background:#cfc}.fail{background:#f99;font-weight:bold}.xfail{background:#ffd}.na{color:#aaa}pre{background:#f6f6f6;padding:6px;overflow:auto}\
</style></head><body>\n",
    );
    let _ = writeln!(
        out,
        "<h1>virtnet conformance ({} host)</h1><p><b>{}</b>, {} expected failures</p>",
        xml_escape(host),
        final_line(&t),
        t.xfailed
    );
    out.push_str("<table><tr><th>case</th>");
    for c in &g.columns {
        let _ = write!(out, "<th>{}</th>", xml_escape(c));
    }
    out.push_str("</tr>\n");
    for (case, cols) in &g.rows {
        let _ = write!(out, "<tr><td>{}</td>", xml_escape(case));
        for c in &g.columns {
            match cols.get(c) {
                Some((Cell::Fail, ids)) => {
                    let first = ids
                        .iter()
                        .find(|id| failed(outcomes, id))
                        .cloned()
                        .unwrap_or_default();
                    let _ = write!(
                        out,
                        "<td class=\"fail\"><a href=\"#{}\">FAIL</a></td>",
                        anchor(&first)
                    );
                }
                Some((Cell::Xfail, ids)) => {
                    let _ = write!(
                        out,
                        "<td class=\"xfail\" title=\"{}\">xfail</td>",
                        xml_escape(&ids.join(" "))
                    );
                }
                Some((Cell::Pass, ids)) => {
                    let _ = write!(
                        out,
                        "<td class=\"ok\" title=\"{}\">ok</td>",
                        xml_escape(&ids.join(" "))
                    );
                }
                None => out.push_str("<td class=\"na\">-</td>"),
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    for o in outcomes {
        match &o.verdict {
            Verdict::Fail { message, diff } => {
                let id = o.scenario.id();
                let _ = writeln!(
                    out,
                    "<h3 id=\"{}\">{}</h3><p>{}</p><pre>{}</pre>",
                    anchor(&id),
                    xml_escape(&id),
                    xml_escape(message),
                    xml_escape(diff)
                );
            }
            Verdict::Xfail { .. } | Verdict::Pass => {}
        }
    }
    out.push_str("</body></html>\n");
    out
}

/// Machine-readable summary.
pub fn json(outcomes: &[Outcome], host: &str) -> String {
    let t = totals(outcomes);
    let scenarios: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|o| {
            let mut v = serde_json::json!({
                "id": o.scenario.id(),
                "case": o.scenario.case,
                "backend": o.scenario.backend.as_str(),
                "layout": o.scenario.layout.as_str(),
                "op": o.scenario.op.label(),
                "duration_ms": o.duration.as_millis() as u64,
                "steps": o.steps,
            });
            if let (Some(m), Ok(serde_json::Value::Object(vd))) =
                (v.as_object_mut(), serde_json::to_value(&o.verdict))
            {
                m.extend(vd);
            }
            v
        })
        .collect();
    let doc = serde_json::json!({
        "host": host,
        "passed": t.passed,
        "failed": t.failed,
        "xfailed": t.xfailed,
        "scenarios": scenarios,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}
