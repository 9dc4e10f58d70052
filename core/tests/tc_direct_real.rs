//! The real runner sends the checksum filter's `tc` commands itself
//! (`virtnet_runner::tc`). For each form it carries out — the root htb
//! qdisc, the csum filter's add and delete — the request must be the one
//! iproute2's `tc` sends, byte for byte (captured with `strace -e write`,
//! sequence number and interface index taken from the capture); and in a
//! fresh namespace the in-process commands must leave what `tc` leaves and
//! answer as `tc` answers (status and output, alone and as a
//! `tc -batch -`), also when the kernel refuses (this machine's lacks
//! act_csum: both then fail alike; with act_csum both filters are listed
//! alike). Skipped, with the reason, when not root or without `tc` and
//! `strace`.

use virtnet_runner::{Cmd, Output, RealRunner, Runner};

const QDISC: &str = "qdisc add dev BR root handle 1: htb default 2";
const FILTER: &str =
    "filter add dev BR prio 2 protocol ip parent 1: u32 match ip dport 68 ffff action csum ip and udp";

fn words(s: &str, br: &str) -> Vec<String> {
    s.replace("BR", br)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn tc(r: &RealRunner, line: &str, br: &str) -> Output {
    let argv: Vec<String> = std::iter::once("tc".to_string())
        .chain(words(line, br))
        .collect();
    r.run(&Cmd::new(argv)).expect("tc runs")
}

fn direct(line: &str, br: &str) -> Output {
    let argv: Vec<String> = std::iter::once("tc".to_string())
        .chain(words(line, br))
        .collect();
    virtnet_runner::tc::in_process(&Cmd::new(argv)).expect("taken in-process")
}

/// The bytes of the last `sendmsg` `tc LINE` made (strace's hex dump).
fn captured(r: &RealRunner, line: &str, br: &str) -> Vec<u8> {
    let mut argv: Vec<String> = [
        "strace",
        "-qq",
        "-e",
        "trace=sendmsg",
        "-e",
        "write=3",
        "tc",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.extend(words(line, br));
    let out = r.run(&Cmd::new(argv)).expect("strace runs");
    let mut dumps: Vec<Vec<u8>> = Vec::new();
    for l in out.stderr.lines() {
        if l.starts_with("sendmsg(") {
            dumps.push(Vec::new());
        } else if let (Some(hex), Some(d)) = (l.strip_prefix(" | "), dumps.last_mut()) {
            // ` | 00000  48 00 00 00 …  ascii |`: offset, 16 bytes, text.
            let cols = hex.get(7..7 + 16 * 3 + 1).unwrap_or("");
            d.extend(
                cols.split_whitespace()
                    .map(|b| u8::from_str_radix(b, 16).expect("hex byte")),
            );
        }
    }
    dumps
        .pop()
        .unwrap_or_else(|| panic!("no sendmsg of tc {line}: {out:?}"))
}

fn cannot_run() -> Option<String> {
    virtnet_testkit::netns::cannot_run(&["tc", "ip", "strace"])
}

fn bridge(r: &RealRunner, br: &str) {
    let out = r
        .run(&Cmd::new(["ip", "link", "add", br, "type", "bridge"]))
        .expect("ip");
    assert!(out.success(), "{out:?}");
}

#[test]
fn requests_are_the_bytes_tc_sends() {
    if let Some(why) = cannot_run() {
        virtnet_testkit::skip(&why);
        return;
    }
    virtnet_testkit::netns::in_fresh_thread_netns(|| {
        let r = RealRunner::new();
        bridge(&r, "vnbr0");
        let del = FILTER.replace(" add ", " del ");
        for line in [QDISC, FILTER, del.as_str()] {
            let theirs = captured(&r, line, "vnbr0");
            assert!(theirs.len() >= 36, "{line}: {theirs:x?}");
            let seq = u32::from_ne_bytes(theirs[8..12].try_into().unwrap());
            let ifindex = u32::from_ne_bytes(theirs[20..24].try_into().unwrap());
            let ours = virtnet_runner::tc::request_bytes(
                &words(line, "vnbr0")
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
                ifindex,
                seq,
            )
            .expect("a form of the module");
            assert_eq!(ours, theirs, "tc {line}");
        }
    });
}

#[test]
fn in_process_commands_leave_and_answer_what_tc_does() {
    if let Some(why) = cannot_run() {
        virtnet_testkit::skip(&why);
        return;
    }
    virtnet_testkit::netns::in_fresh_thread_netns(|| {
        let r = RealRunner::new();
        bridge(&r, "vnbr1");
        bridge(&r, "vnbr2");
        let show = |what: &str, br: &str| {
            let out = r
                .run(&Cmd::new(["tc", what, "show", "dev", br]))
                .expect("tc");
            assert!(out.success(), "{out:?}");
            out.stdout.replace(br, "BR")
        };
        // Their qdisc on vnbr1, ours on vnbr2.
        let (t, o) = (tc(&r, QDISC, "vnbr1"), direct(QDISC, "vnbr2"));
        assert!(t.success() && o.success(), "{t:?} {o:?}");
        assert_eq!(show("qdisc", "vnbr2"), show("qdisc", "vnbr1"));
        // The same add again: both refused alike.
        let (t, o) = (tc(&r, QDISC, "vnbr1"), direct(QDISC, "vnbr2"));
        assert_eq!((o.status, o.stderr.as_str()), (t.status, t.stderr.as_str()));
        // The csum filter: added by both, or (no act_csum) refused alike.
        let (t, o) = (tc(&r, FILTER, "vnbr1"), direct(FILTER, "vnbr2"));
        assert_eq!((o.status, o.stderr.as_str()), (t.status, t.stderr.as_str()));
        assert_eq!(show("filter", "vnbr2"), show("filter", "vnbr1"));
        let del = FILTER.replace(" add ", " del ");
        let (t, o) = (tc(&r, &del, "vnbr1"), direct(&del, "vnbr2"));
        assert_eq!((o.status, o.stderr.as_str()), (t.status, t.stderr.as_str()));
        assert_eq!(show("filter", "vnbr2"), show("filter", "vnbr1"));
        // No such device.
        let (t, o) = (tc(&r, QDISC, "vnbr9"), direct(QDISC, "vnbr9"));
        assert_eq!((o.status, o.stderr.as_str()), (t.status, t.stderr.as_str()));
    });
}

#[test]
fn an_in_process_batch_stops_where_tc_stops() {
    if let Some(why) = cannot_run() {
        virtnet_testkit::skip(&why);
        return;
    }
    virtnet_testkit::netns::in_fresh_thread_netns(|| {
        let r = RealRunner::new();
        for br in ["vnbr3", "vnbr4"] {
            bridge(&r, br);
        }
        let batch = |br: &str| {
            Cmd::new(["tc", "-batch", "-"])
                .with_stdin(format!("{}\n{}\n", QDISC, FILTER).replace("BR", br))
        };
        let t = r.run(&batch("vnbr3")).expect("tc");
        let o = virtnet_runner::tc::in_process(&batch("vnbr4")).expect("taken in-process");
        assert_eq!((o.status, o.stderr.as_str()), (t.status, t.stderr.as_str()));
        for what in ["qdisc", "filter"] {
            let list = |br: &str| {
                r.run(&Cmd::new(["tc", what, "show", "dev", br]))
                    .expect("tc")
                    .stdout
                    .replace(br, "BR")
            };
            assert_eq!(list("vnbr4"), list("vnbr3"), "{what}");
        }
        // A batch failing at its first line stops there, as tc's does.
        let t = r.run(&batch("vnbr3")).expect("tc");
        let o = virtnet_runner::tc::in_process(&batch("vnbr4")).expect("taken in-process");
        assert_eq!((o.status, o.stderr.as_str()), (t.status, t.stderr.as_str()));
    });
}
