//! `NetworkDef` → XML, byte for byte as libvirt 11.3.0's virNetworkDefFormat.

use super::dom::{Element, Node};
use super::model::NetworkDef;

/// Formatting flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FormatFlags {
    /// The inactive (persistent config) form: no `connections`, no pool of a `<pf>`.
    pub inactive: bool,
}

/// Format a definition (phase 2: complete implementation pending).
pub fn format(def: &NetworkDef, _flags: FormatFlags) -> String {
    let _ = def;
    String::new()
}

/// libxml2-style attribute value escaping (double-quoted).
fn escape_attr_dq(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
}

fn escape_text(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

/// Serialize the `<metadata>` element the way libvirt re-emits it: children
/// without a namespace and later children repeating a namespace are dropped,
/// then the element is dumped with libxml2's indenting serializer at
/// nesting level 1. Returns the full `<metadata>...</metadata>` text without
/// leading indentation or trailing newline.
pub(crate) fn metadata_inner(m: &Element) -> String {
    let mut kept: Vec<&Element> = Vec::new();
    for c in m.elements() {
        let Some(ns) = &c.ns else { continue };
        if kept.iter().any(|k| k.ns.as_deref() == Some(ns.as_str())) {
            continue;
        }
        kept.push(c);
    }
    let mut out = String::new();
    out.push_str("<metadata");
    for (p, u) in &m.ns_decls {
        push_ns_decl(p, u, &mut out);
    }
    out.push_str(">\n");
    for k in &kept {
        indent(&mut out, 2);
        dump_element(k, 2, true, &mut out);
        out.push('\n');
    }
    indent(&mut out, 1);
    out.push_str("</metadata>");
    out
}

fn indent(out: &mut String, level: usize) {
    for _ in 0..level {
        out.push_str("  ");
    }
}

fn push_ns_decl(p: &Option<String>, u: &str, out: &mut String) {
    match p {
        Some(p) => out.push_str(&format!(" xmlns:{p}=\"")),
        None => out.push_str(" xmlns=\""),
    }
    escape_attr_dq(u, out);
    out.push('"');
}

fn dump_element(e: &Element, level: usize, fmt: bool, out: &mut String) {
    out.push('<');
    out.push_str(&e.qname());
    for (p, u) in &e.ns_decls {
        push_ns_decl(p, u, out);
    }
    for a in &e.attrs {
        out.push(' ');
        if let Some(p) = &a.prefix {
            out.push_str(p);
            out.push(':');
        }
        out.push_str(&a.local);
        out.push_str("=\"");
        escape_attr_dq(&a.value, out);
        out.push('"');
    }
    if e.children.is_empty() {
        out.push_str("/>");
        return;
    }
    out.push('>');
    // libxml2 only indents children when no child is text.
    let child_fmt = fmt
        && e.children
            .iter()
            .all(|c| !matches!(c, Node::Text(_) | Node::CData(_)));
    for c in &e.children {
        if child_fmt {
            out.push('\n');
            indent(out, level + 1);
        }
        match c {
            Node::Element(ce) => dump_element(ce, level + 1, child_fmt, out),
            Node::Text(t) => escape_text(t, out),
            Node::CData(t) => {
                out.push_str("<![CDATA[");
                out.push_str(t);
                out.push_str("]]>");
            }
            Node::Comment(t) => {
                out.push_str("<!--");
                out.push_str(t);
                out.push_str("-->");
            }
            Node::Pi(t) => {
                out.push_str("<?");
                out.push_str(t);
                out.push_str("?>");
            }
        }
    }
    if child_fmt {
        out.push('\n');
        indent(out, level);
    }
    out.push_str("</");
    out.push_str(&e.qname());
    out.push('>');
}
