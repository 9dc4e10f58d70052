//! `cargo xtask bench-parse [--json] [--this-build]`: how long network XML
//! parsing and validation take on large hostile definitions — for each of
//! several element kinds, one generated definition with 80,000 such
//! elements (about 1 MB and more) is parsed (`netxml::parse`) and
//! validated (`netxml::validate`, the host-independent define-time
//! checks), and the times are printed. It measures and reports; it asserts
//! nothing (the bound is 1 s per definition: the figures say
//! whether it is met). Release build: the task re-runs itself with `cargo
//! run --release` unless `--this-build` is given.

use std::fmt::Write as _;
use std::time::Instant;

use serde::Serialize;
use virtnet_core::netxml;

/// Elements per generated definition.
pub const ELEMENTS: usize = 80_000;

#[derive(Debug, Clone, Serialize)]
struct Figure {
    kind: &'static str,
    elements: usize,
    bytes: usize,
    /// Wall-clock seconds.
    parse_seconds: f64,
    validate_seconds: f64,
    total_seconds: f64,
    /// CPU seconds of this thread for parse + validate (a shared machine
    /// stretches wall-clock time; this is the steadier figure).
    total_cpu_seconds: f64,
    /// `None`: accepted; else the refusal.
    refused: Option<String>,
}

fn ip4(i: usize) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

/// One definition per kind: (kind, XML).
fn definitions(n: usize) -> Vec<(&'static str, String)> {
    let gen = |head: &str, each: &dyn Fn(&mut String, usize), tail: &str| {
        let mut s = String::with_capacity(n * 48);
        s.push_str(head);
        for i in 0..n {
            each(&mut s, i);
        }
        s.push_str(tail);
        s
    };
    vec![
        (
            "dhcp host",
            gen(
                "<network>\n<name>big</name>\n<ip address='10.0.0.1' prefix='8'>\n<dhcp>\n",
                &|s, i| {
                    let _ = writeln!(
                        s,
                        "<host mac='52:54:00:{:02x}:{:02x}:{:02x}' ip='{}'/>",
                        (i >> 16) & 255,
                        (i >> 8) & 255,
                        i & 255,
                        ip4(i + 2)
                    );
                },
                "</dhcp>\n</ip>\n</network>\n",
            ),
        ),
        (
            "dns txt",
            gen(
                "<network>\n<name>big</name>\n<dns>\n",
                &|s, i| {
                    let _ = writeln!(s, "<txt name='t{i}' value='v'/>");
                },
                "</dns>\n</network>\n",
            ),
        ),
        (
            "dns host",
            gen(
                "<network>\n<name>big</name>\n<dns>\n",
                &|s, i| {
                    let _ = writeln!(s, "<host ip='{}'><hostname>h</hostname></host>", ip4(i + 2));
                },
                "</dns>\n</network>\n",
            ),
        ),
        (
            "dns srv",
            gen(
                "<network>\n<name>big</name>\n<dns>\n",
                &|s, i| {
                    let _ = writeln!(s, "<srv service='s{i}' protocol='tcp'/>");
                },
                "</dns>\n</network>\n",
            ),
        ),
        (
            "dns forwarder",
            gen(
                "<network>\n<name>big</name>\n<dns>\n",
                &|s, i| {
                    let _ = writeln!(s, "<forwarder addr='{}'/>", ip4(i + 2));
                },
                "</dns>\n</network>\n",
            ),
        ),
        (
            "forward interface",
            gen(
                "<network>\n<name>big</name>\n<forward mode='bridge'>\n",
                &|s, i| {
                    let _ = writeln!(s, "<interface dev='e{i}'/>");
                },
                "</forward>\n</network>\n",
            ),
        ),
        (
            "portgroup",
            gen(
                "<network>\n<name>big</name>\n<forward mode='bridge'><interface dev='eth0'/></forward>\n",
                &|s, i| {
                    let _ = writeln!(s, "<portgroup name='p{i}'/>");
                },
                "</network>\n",
            ),
        ),
        (
            "route",
            gen(
                "<network>\n<name>big</name>\n<ip address='10.0.0.1' prefix='8'/>\n",
                &|s, i| {
                    let _ = writeln!(
                        s,
                        "<route address='11.{}.{}.0' prefix='24' gateway='10.0.0.2'/>",
                        (i >> 8) & 255,
                        i & 255
                    );
                },
                "</network>\n",
            ),
        ),
        (
            "unknown element",
            gen(
                "<network>\n<name>big</name>\n",
                &|s, _| s.push_str("<x/>\n"),
                "</network>\n",
            ),
        ),
    ]
}

fn measure(kind: &'static str, xml: &str) -> Figure {
    let cpu0 = crate::bench::thread_cpu();
    let t0 = Instant::now();
    let parsed = netxml::parse(xml);
    let parse_seconds = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let refused = match &parsed {
        Ok(def) => netxml::validate(def).err().map(|e| e.to_string()),
        Err(e) => Some(e.to_string()),
    };
    let validate_seconds = if parsed.is_ok() {
        t1.elapsed().as_secs_f64()
    } else {
        0.0
    };
    let total_cpu_seconds = match (cpu0, crate::bench::thread_cpu()) {
        (Some(a), Some(b)) if b >= a => (b - a).as_secs_f64(),
        _ => parse_seconds + validate_seconds,
    };
    Figure {
        total_cpu_seconds,
        kind,
        elements: ELEMENTS,
        bytes: xml.len(),
        parse_seconds,
        validate_seconds,
        total_seconds: parse_seconds + validate_seconds,
        refused,
    }
}

/// Runs the measurement; returns whether it ran.
pub fn run(json: bool, this_build: bool) -> bool {
    if cfg!(debug_assertions) && !this_build {
        let mut c = crate::cargo();
        c.args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "xtask",
            "--",
            "bench-parse",
        ]);
        if json {
            c.arg("--json");
        }
        return crate::step("bench-parse (release build)", c);
    }
    let figures: Vec<Figure> = definitions(ELEMENTS)
        .iter()
        .map(|(kind, xml)| measure(kind, xml))
        .collect();
    if json {
        match serde_json::to_string_pretty(&serde_json::json!({
            "build": if cfg!(debug_assertions) { "debug" } else { "release" },
            "elements": ELEMENTS,
            "figures": figures,
        })) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("xtask: bench-parse: {e}");
                return false;
            }
        }
        return true;
    }
    println!(
        "network XML parse + validate, {} elements of one kind per definition ({} build)",
        ELEMENTS,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!(
        "{:<18} {:>9} {:>9} {:>10} {:>9} {:>7}  result",
        "kind", "bytes", "parse s", "validate s", "total s", "cpu s"
    );
    for f in &figures {
        println!(
            "{:<18} {:>9} {:>9.3} {:>10.3} {:>9.3} {:>7.3}  {}",
            f.kind,
            f.bytes,
            f.parse_seconds,
            f.validate_seconds,
            f.total_seconds,
            f.total_cpu_seconds,
            f.refused
                .as_deref()
                .map_or("accepted".to_string(), |r| format!("refused: {r}"))
        );
    }
    let worst = figures.iter().map(|f| f.total_seconds).fold(0.0, f64::max);
    let worst_cpu = figures
        .iter()
        .map(|f| f.total_cpu_seconds)
        .fold(0.0, f64::max);
    println!(
        "slowest: {worst:.3} s wall, {worst_cpu:.3} s CPU ({} the 1 s bound)",
        if worst_cpu < 1.0 { "within" } else { "OVER" }
    );
    true
}
