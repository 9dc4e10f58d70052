//! The `<firewall>` element: byte-exact round trips against every real
//! libvirt 11.3.0 status file in the captures, formatting rules, and typed
//! parse errors.

use crate::firewall::xml::{escape_xml_text, FirewallXmlErrorKind};
use crate::firewall::{Backend, Firewall, Layer, TransactionFlags};

fn captures_dir() -> std::path::PathBuf {
    std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../golden/upstream/captures"
    ))
    .to_path_buf()
}

fn status_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            status_files(&p, out);
        } else if p.to_string_lossy().ends_with(".status.xml") {
            out.push(p);
        }
    }
}

/// The `<firewall>` element of a status file: from the line that opens it to
/// the line that closes it, both included (with their 2-space indent).
pub(super) fn extract_firewall(doc: &str) -> Option<(usize, &str)> {
    let open = doc.find("  <firewall ")?;
    let close = doc[open..].find("  </firewall>\n")? + open + "  </firewall>\n".len();
    Some((open, &doc[open..close]))
}

#[test]
fn every_captured_status_file_round_trips_byte_for_byte() {
    let mut files = Vec::new();
    status_files(&captures_dir().join("libvirt-11.3.0"), &mut files);
    files.sort();
    let mut checked = 0;
    let mut groups = 0;
    for path in &files {
        let doc = std::fs::read_to_string(path).expect("readable");
        let Some((offset, element)) = extract_firewall(&doc) else {
            continue;
        };
        let fw = Firewall::parse_xml(element).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(fw.name(), Some("fwRemoval"), "{}", path.display());
        let formatted = fw.format_xml(2);
        if formatted != element {
            let diff = similar::TextDiff::from_lines(element, &formatted);
            panic!(
                "{} does not round-trip:\n{}",
                path.display(),
                diff.unified_diff().header("status file", "formatted")
            );
        }
        // Same result when parsed in place inside the whole status file.
        let (in_place, end) = Firewall::parse_xml_at(&doc, offset + 2).expect("parses in place");
        assert_eq!(in_place, fw);
        assert_eq!(&doc[end..end + 1], "\n");
        // The backend attribute matches what the capture ran with.
        let b = fw.backend().as_str();
        assert!(
            element.starts_with(&format!("  <firewall name='fwRemoval' backend='{b}'>\n")),
            "{}",
            path.display()
        );
        assert!(fw
            .groups()
            .iter()
            .all(|g| g.flags() == TransactionFlags::IGNORE_ERRORS));
        groups += fw.groups().len();
        checked += 1;
    }
    assert!(
        checked >= 150,
        "only {checked} status files with <firewall> found"
    );
    assert!(groups > checked, "iptables captures have two groups");
}

#[test]
fn format_rules() {
    let mut fw = Firewall::new(Backend::Iptables);
    assert_eq!(fw.format_xml(0), "<firewall backend='iptables'/>\n");
    fw.set_name("a'b<c>&\"d");
    fw.start_transaction(TransactionFlags::NONE);
    fw.add_cmd(Layer::Ipv4, ["--source", "!", "x\u{1}y\u{1a}z\tw\r\n"]);
    fw.add_cmd_full(Layer::Tc, true, None, ["filter", ""]);
    fw.start_transaction(TransactionFlags::IGNORE_ERRORS);
    fw.add_cmd_full(Layer::Ethernet, true, None, ["a&b"]);
    assert_eq!(
        fw.format_xml(4),
        "    <firewall name='a&apos;b&lt;c&gt;&amp;&quot;d' backend='iptables'>\n\
      \x20     <group>\n\
      \x20       <action layer='ipv4'>\n\
      \x20         <args>\n\
      \x20           <item>--source</item>\n\
      \x20           <item>!</item>\n\
      \x20           <item>xy\u{1a}z\tw\r\n</item>\n\
      \x20         </args>\n\
      \x20       </action>\n\
      \x20       <action layer='tc' ignoreErrors='yes'>\n\
      \x20         <args>\n\
      \x20           <item>filter</item>\n\
      \x20           <item></item>\n\
      \x20         </args>\n\
      \x20       </action>\n\
      \x20     </group>\n\
      \x20     <group ignoreErrors='yes'>\n\
      \x20       <action layer='ethernet'>\n\
      \x20         <args>\n\
      \x20           <item>a&amp;b</item>\n\
      \x20         </args>\n\
      \x20       </action>\n\
      \x20     </group>\n\
      \x20   </firewall>\n"
    );
    assert_eq!(escape_xml_text("plain"), "plain");
    let dropped: String = (1u8..0x20).map(char::from).collect();
    assert_eq!(
        escape_xml_text(&dropped),
        "\t\n\r\u{1a}\u{1b}\u{1c}\u{1d}\u{1e}\u{1f}"
    );
}

#[test]
fn parse_rules() {
    let fw = Firewall::parse_xml(
        "<?xml version='1.0'?>\n<!-- c -->\n<firewall backend='none'>\n\
         <group><!-- no actions: skipped --></group>\n\
         <group ignoreErrors='no'>\n\
           <action layer='ipv6' ignoreErrors='yes'><args><item>a &amp; b</item><item/><item><![CDATA[<x>]]></item><item>&#33;&#x21;</item></args></action>\n\
           <action layer='bogus'><!-- no args: skipped before layer is checked --></action>\n\
         </group>\n\
         <group ignoreErrors='yes'><action layer='tc'><args><item>q<b>r</b>s</item></args></action></group>\n\
         </firewall>\n",
    )
    .expect("valid");
    assert_eq!(fw.backend(), Backend::None);
    assert_eq!(fw.name(), None);
    assert_eq!(fw.groups().len(), 2);
    let g0 = &fw.groups()[0];
    assert_eq!(g0.flags(), TransactionFlags::NONE);
    assert_eq!(g0.actions().len(), 1);
    assert_eq!(g0.actions()[0].layer(), Layer::Ipv6);
    assert!(g0.actions()[0].ignore_errors());
    assert_eq!(g0.actions()[0].args(), ["a & b", "", "<x>", "!!"]);
    let g1 = &fw.groups()[1];
    assert_eq!(g1.flags(), TransactionFlags::IGNORE_ERRORS);
    assert!(
        g1.actions()[0].ignore_errors(),
        "group flag applies to its actions"
    );
    assert_eq!(g1.actions()[0].args(), ["qrs"]);
    // CR LF in text is normalised as XML requires.
    let fw = Firewall::parse_xml(
        "<firewall backend='iptables'><group><action layer='ipv4'><args><item>a\r\nb\rc&#13;</item></args></action></group></firewall>",
    )
    .expect("valid");
    assert_eq!(fw.groups()[0].actions()[0].args(), ["a\nb\nc\r"]);
}

fn parse_err(xml: &str) -> (usize, usize, FirewallXmlErrorKind) {
    let e = Firewall::parse_xml(xml).expect_err("must fail");
    assert!(e
        .to_string()
        .starts_with(&format!("line {}, column {}: ", e.line, e.column)));
    (e.line, e.column, e.kind)
}

#[test]
fn parse_errors_are_typed_and_positioned() {
    assert_eq!(
        parse_err("<firewall>\n</firewall>"),
        (
            1,
            1,
            FirewallXmlErrorKind::MissingAttribute {
                element: "firewall",
                attribute: "backend"
            }
        )
    );
    assert!(matches!(
        parse_err("\n  <firewall backend='ebtables'/>"),
        (
            2,
            3,
            FirewallXmlErrorKind::InvalidAttribute {
                attribute: "backend",
                ..
            }
        )
    ));
    assert!(matches!(
        parse_err("<firewall backend='iptables'>\n  <group ignoreErrors='default'><action/></group></firewall>"),
        (2, 3, FirewallXmlErrorKind::InvalidAttribute { element: "group", attribute: "ignoreErrors", .. })
    ));
    // A bad ignoreErrors on a group without actions is never looked at.
    Firewall::parse_xml("<firewall backend='iptables'><group ignoreErrors='x'/></firewall>")
        .expect("skipped group");
    assert!(matches!(
        parse_err("<firewall backend='iptables'><group>\n<action ignoreErrors='yes'><args><item>x</item></args></action></group></firewall>"),
        (2, 1, FirewallXmlErrorKind::MissingAttribute { element: "action", attribute: "layer" })
    ));
    assert!(matches!(
        parse_err("<firewall backend='iptables'><group><action layer='ip4'><args><item>x</item></args></action></group></firewall>"),
        (1, 37, FirewallXmlErrorKind::InvalidAttribute { element: "action", attribute: "layer", .. })
    ));
    assert_eq!(
        parse_err("<firewall backend='iptables'><group><action layer='ipv4'>\n    <args/></action></group></firewall>"),
        (2, 5, FirewallXmlErrorKind::NoArguments)
    );
    assert!(matches!(
        parse_err("<network/>"),
        (1, 1, FirewallXmlErrorKind::NotFirewall(_))
    ));
    assert!(matches!(
        parse_err("   "),
        (_, _, FirewallXmlErrorKind::NoElement)
    ));
    assert!(matches!(
        parse_err("<firewall backend='iptables'>\n<group>\n</firewall>"),
        (_, _, FirewallXmlErrorKind::Syntax(_))
    ));
    assert!(matches!(
        parse_err("<firewall backend='iptables'/>\n<x/>"),
        (2, 1, FirewallXmlErrorKind::TrailingContent)
    ));
    assert!(matches!(
        parse_err("<firewall backend='iptables'><group><action layer='ipv4'><args><item>\u{1a}</item></args></action></group></firewall>"),
        (_, _, FirewallXmlErrorKind::InvalidChar(0x1a))
    ));
    assert!(matches!(
        parse_err("<firewall backend='iptables'><group><action layer='ipv4'><args><item>&bogus;</item></args></action></group></firewall>"),
        (_, _, FirewallXmlErrorKind::Syntax(_))
    ));
    assert!(matches!(
        parse_err("<firewall backend='iptables' backend='nftables'/>"),
        (_, _, FirewallXmlErrorKind::Syntax(_))
    ));
    assert!(matches!(
        parse_err("<firewall backend='iptables'>\n<group>"),
        (1, 1, FirewallXmlErrorKind::Syntax(_)) | (2, _, FirewallXmlErrorKind::Syntax(_))
    ));
}

#[test]
fn format_then_parse_preserves_everything_xml_can_carry() {
    let mut fw = Firewall::new(Backend::Nftables);
    fw.set_name("fwRemoval");
    fw.start_transaction(TransactionFlags::IGNORE_ERRORS);
    fw.add_cmd(
        Layer::Ipv4,
        [
            "delete",
            "rule",
            "ip",
            "libvirt_network",
            "guest_nat",
            "handle",
            "19",
        ],
    );
    fw.add_cmd(
        Layer::Tc,
        ["filter", "del", "dev", "virbr0", "{ x; }", "'q'", "<&>"],
    );
    fw.start_transaction(TransactionFlags::NONE);
    fw.add_cmd_full(Layer::Ipv6, true, None, ["a"]);
    fw.add_cmd(Layer::Ethernet, ["b"]);
    for indent in [0, 2, 7] {
        let text = fw.format_xml(indent);
        let back = Firewall::parse_xml(&text).expect("parses");
        assert_eq!(back.format_xml(indent), text);
        assert_eq!(back.groups().len(), 2);
        let cmds: Vec<_> = back
            .action_cmds()
            .map(|c| (c.layer(), c.args().to_vec(), c.ignore_errors()))
            .collect();
        let orig: Vec<_> = fw
            .action_cmds()
            .map(|c| (c.layer(), c.args().to_vec(), c.ignore_errors()))
            .collect();
        assert_eq!(cmds, orig);
    }
}

#[test]
fn attribute_whitespace_is_normalised_like_libxml2() {
    let fw =
        Firewall::parse_xml("<firewall name='a\tb\r\nc&#9;d' backend='nftables'/>").expect("valid");
    assert_eq!(fw.name(), Some("a b c\td"));
    assert!(fw.groups().is_empty());
}
