//! Property tests: XML round trips of arbitrary plans, rendering round trips
//! of arbitrary argvs, and the rollback/removal invariants of auto-rollback
//! groups.

use proptest::prelude::*;

use crate::firewall::recording::{HandleMode, Matcher, RecordingRunner};
use crate::firewall::{
    parse_stream, render_argv, Backend, Firewall, Layer, RenderOptions, TransactionFlags,
};

/// Strings XML can carry unchanged through libvirt's escaping: no dropped
/// control characters, no CR (normalised away by XML parsers), no 0x1A-0x1F
/// (written raw by libvirt and rejected by any XML parser).
fn xml_safe_string() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[ -~\\t\\n\u{e9}\u{4e2d}]{0,12}").expect("valid regex")
}

/// Attribute values: XML attribute normalisation turns literal tabs and
/// newlines into spaces (libxml2 does the same to libvirt), so leave them out.
fn attr_safe_string() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[ -~\u{e9}]{0,12}").expect("valid regex")
}

fn layer() -> impl Strategy<Value = Layer> {
    prop_oneof![
        Just(Layer::Ethernet),
        Just(Layer::Ipv4),
        Just(Layer::Ipv6),
        Just(Layer::Tc)
    ]
}

type PlanSpec = Vec<(bool, Vec<(Layer, bool, Vec<String>)>)>;

fn plan() -> impl Strategy<Value = (Backend, Option<String>, PlanSpec)> {
    (
        prop_oneof![
            Just(Backend::None),
            Just(Backend::Iptables),
            Just(Backend::Nftables)
        ],
        proptest::option::of(attr_safe_string()),
        proptest::collection::vec(
            (
                any::<bool>(),
                proptest::collection::vec(
                    (
                        layer(),
                        any::<bool>(),
                        proptest::collection::vec(xml_safe_string(), 1..5),
                    ),
                    1..4,
                ),
            ),
            0..4,
        ),
    )
}

proptest! {
    #[test]
    fn xml_round_trips_any_plan((backend, name, groups) in plan(), indent in 0usize..6) {
        let mut fw = Firewall::new(backend);
        if let Some(n) = &name {
            fw.set_name(n.clone());
        }
        for (ignore, cmds) in &groups {
            fw.start_transaction(if *ignore { TransactionFlags::IGNORE_ERRORS } else { TransactionFlags::NONE });
            for (layer, ig, args) in cmds {
                fw.add_cmd_full(*layer, *ig, None, args.iter().cloned());
            }
        }
        let text = fw.format_xml(indent);
        let back = Firewall::parse_xml(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&back, &fw);
        prop_assert_eq!(back.format_xml(indent), text);
    }

    #[test]
    fn rendering_round_trips_any_argv(
        argv in proptest::collection::vec("[ -~\\t\u{e9}]{0,8}", 1..8),
        linebreaks in any::<bool>(),
    ) {
        // argv[0] is printed as given only when paths are not stripped.
        let opts = RenderOptions { linebreaks, strip_path: false };
        let mut argv = argv;
        // A program name with '/' is fine; an empty one renders as ''.
        argv[0] = format!("p{}", argv[0].replace('/', ""));
        let text = format!("{}\n", render_argv(&argv, opts));
        let parsed = parse_stream(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text:?}")))?;
        prop_assert_eq!(parsed, vec![argv]);
    }

    #[test]
    fn auto_rollback_undoes_exactly_the_successful_creations(
        n in 1usize..12,
        fail_at in proptest::option::of(0usize..12),
        nft in any::<bool>(),
    ) {
        let backend = if nft { Backend::Nftables } else { Backend::Iptables };
        let runner = RecordingRunner::with_handles(HandleMode::Counter(100));
        if let Some(f) = fail_at {
            runner.fail_when(Matcher::contains([format!("r{f}")]), 1, "boom");
        }
        let mut fw = Firewall::new(backend);
        fw.start_transaction(TransactionFlags::AUTO_ROLLBACK);
        for i in 0..n {
            let rule = format!("r{i}");
            if nft {
                fw.add_cmd(Layer::Ipv4, ["insert", "rule", "ip", "t", "c", rule.as_str()]);
            } else {
                fw.add_cmd(Layer::Ipv4, ["--insert", "C", "--jump", rule.as_str()]);
            }
        }
        let result = fw.apply(&runner);
        let argvs = runner.argvs();
        let failed = fail_at.filter(|f| *f < n);
        let created = failed.unwrap_or(n);
        prop_assert_eq!(result.is_err(), failed.is_some());
        // creations run in order up to and including the failing one
        let ran = created + usize::from(failed.is_some());
        let undo: Vec<Vec<String>> = (0..created)
            .map(|i| {
                if nft {
                    ["nft", "delete", "rule", "ip", "t", "c", "handle"]
                        .iter()
                        .map(|s| s.to_string())
                        .chain([format!("{}", 100 + i)])
                        .collect()
                } else {
                    ["iptables", "-w", "--delete", "C", "--jump"]
                        .iter()
                        .map(|s| s.to_string())
                        .chain([format!("r{i}")])
                        .collect()
                }
            })
            .collect();
        if failed.is_some() {
            prop_assert_eq!(argvs.len(), ran + created);
            prop_assert_eq!(&argvs[ran..], undo.as_slice(), "rollback in creation order");
        } else {
            prop_assert_eq!(argvs.len(), n);
            let removal = fw.new_from_rollback().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut removal = removal.ok_or_else(|| TestCaseError::fail("no removal plan"))?;
            let rec = RecordingRunner::new();
            removal.apply(&rec).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut reversed = undo.clone();
            reversed.reverse();
            prop_assert_eq!(rec.argvs(), reversed, "removal is the exact reverse");
        }
    }
}
