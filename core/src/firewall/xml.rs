//! The `<firewall>` element that stores a removal plan in the network status
//! file (libvirt 11.3.0 `virFirewallFormat` / `virFirewallParseXML`).
//!
//! Format (byte-exact): `<firewall[ name='N'] backend='B'>`, one `<group>`
//! per group (` ignoreErrors='yes'` when it has IGNORE_ERRORS), one
//! `<action layer='L'>` per action command (` ignoreErrors='yes'` only when
//! the command ignores errors and its group does not), `<args>` and one
//! `<item>` per argument; 2 spaces of indentation per level from a base
//! indent; only action lists are written. Text is escaped like libvirt's
//! `virBufferEscapeString` (control characters 0x01-0x08, 0x0B, 0x0C,
//! 0x0E-0x19 are dropped).
//!
//! Parse: `backend` required (`none` accepted), `name` optional; groups
//! without `<action>` children are skipped; actions without `<args>` are
//! skipped; `ignoreErrors` is `yes`/`no`; `layer` required; at least one
//! `<item>`. Errors carry the line and column of the offending element.

use std::borrow::Cow;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::{Backend, Firewall, Layer, TransactionFlags};

/// What is wrong with a `<firewall>` element.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FirewallXmlErrorKind {
    #[error("malformed XML: {0}")]
    Syntax(String),
    #[error("expected a <firewall> element, found <{0}>")]
    NotFirewall(String),
    #[error("no <firewall> element found")]
    NoElement,
    #[error("content after the <firewall> element")]
    TrailingContent,
    #[error("Missing required attribute '{attribute}' in element '{element}'")]
    MissingAttribute {
        element: &'static str,
        attribute: &'static str,
    },
    #[error("Invalid value for attribute '{attribute}' in element '{element}': '{value}' (expected {expected})")]
    InvalidAttribute {
        element: &'static str,
        attribute: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("Invalid firewall command has 0 arguments")]
    NoArguments,
    #[error("character U+{0:04X} is not allowed in XML")]
    InvalidChar(u32),
}

/// A malformed `<firewall>` element, with where it was found (1-based line
/// and column, in characters, of the element or construct at fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {kind}")]
pub struct FirewallXmlError {
    pub line: usize,
    pub column: usize,
    pub kind: FirewallXmlErrorKind,
}

/// Line and column (1-based) of byte `pos` in `doc`; `\r\n` and lone `\r`
/// count as one line end, as XML's end-of-line handling makes them.
fn line_col(doc: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(doc.len());
    let mut pos = pos;
    while !doc.is_char_boundary(pos) {
        pos -= 1;
    }
    let before = &doc[..pos];
    let mut line = 1;
    let mut line_start = 0;
    let bytes = before.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && !(i > 0 && bytes[i - 1] == b'\r') {
            line += 1;
            line_start = i + 1;
        } else if b == b'\r' {
            line += 1;
            line_start = i + 1;
            if bytes.get(i + 1) == Some(&b'\n') {
                line_start = i + 2;
            }
        }
    }
    let line_start = line_start.min(pos);
    (line, doc[line_start..pos].chars().count() + 1)
}

/// `virBufferEscapeString` escaping of `s` (plus dropping NUL, which a C
/// string cannot contain).
pub fn escape_xml_text(s: &str) -> Cow<'_, str> {
    crate::netxml::format::escape_xml(s, crate::netxml::format::Escape::Libvirt)
}

impl Firewall {
    /// The `<firewall>` element as libvirt writes it, with `indent` spaces
    /// before the opening tag (2 inside `<networkstatus>`); every line ends
    /// with a newline.
    pub fn format_xml(&self, indent: usize) -> String {
        let pad = |level: usize| " ".repeat(indent + 2 * level);
        let mut out = String::new();
        out.push_str(&pad(0));
        out.push_str("<firewall");
        if let Some(name) = &self.name {
            out.push_str(" name='");
            out.push_str(&escape_xml_text(name));
            out.push('\'');
        }
        out.push_str(" backend='");
        out.push_str(self.backend.as_str());
        out.push('\'');
        if self.groups.is_empty() {
            out.push_str("/>\n");
            return out;
        }
        out.push_str(">\n");
        for group in &self.groups {
            let group_ignores = group.flags.contains(TransactionFlags::IGNORE_ERRORS);
            out.push_str(&pad(1));
            out.push_str("<group");
            if group_ignores {
                out.push_str(" ignoreErrors='yes'");
            }
            out.push_str(">\n");
            for action in &group.actions {
                out.push_str(&pad(2));
                out.push_str("<action layer='");
                out.push_str(action.layer.as_str());
                out.push('\'');
                if action.ignore_errors && !group_ignores {
                    out.push_str(" ignoreErrors='yes'");
                }
                out.push_str(">\n");
                out.push_str(&pad(3));
                out.push_str("<args>\n");
                for arg in action.args() {
                    out.push_str(&pad(4));
                    out.push_str("<item>");
                    out.push_str(&escape_xml_text(arg));
                    out.push_str("</item>\n");
                }
                out.push_str(&pad(3));
                out.push_str("</args>\n");
                out.push_str(&pad(2));
                out.push_str("</action>\n");
            }
            out.push_str(&pad(1));
            out.push_str("</group>\n");
        }
        out.push_str(&pad(0));
        out.push_str("</firewall>\n");
        out
    }

    /// Parses a document whose root element is `<firewall>` (an XML
    /// declaration, comments and surrounding whitespace are allowed).
    pub fn parse_xml(text: &str) -> Result<Firewall, FirewallXmlError> {
        let (root, end) = read_element(text, 0, true)?;
        let Some(root) = root else {
            let (line, column) = line_col(text, text.len());
            return Err(FirewallXmlError {
                line,
                column,
                kind: FirewallXmlErrorKind::NoElement,
            });
        };
        let fw = interpret(text, &root)?;
        debug_assert!(end <= text.len());
        Ok(fw)
    }

    /// Parses the `<firewall>` element that starts at byte `offset` of `doc`
    /// (e.g. found by the status-file reader) and returns it with the byte
    /// offset just past its end tag. Error positions are relative to `doc`.
    pub fn parse_xml_at(doc: &str, offset: usize) -> Result<(Firewall, usize), FirewallXmlError> {
        let (root, end) = read_element(doc, offset, false)?;
        let Some(root) = root else {
            let (line, column) = line_col(doc, offset);
            return Err(FirewallXmlError {
                line,
                column,
                kind: FirewallXmlErrorKind::NoElement,
            });
        };
        Ok((interpret(doc, &root)?, end))
    }
}

/// A parsed element: name, byte position of its `<`, attributes (name,
/// value, byte position) and children.
#[derive(Debug)]
struct Elem {
    name: String,
    pos: usize,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
}

#[derive(Debug)]
enum Node {
    Elem(Elem),
    Text(String),
}

impl Elem {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    fn child_elems<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Elem> + 'a {
        self.children.iter().filter_map(move |n| match n {
            Node::Elem(e) if e.name == name => Some(e),
            _ => None,
        })
    }
    /// Concatenated text of all descendants (libxml2 `xmlNodeGetContent`).
    fn content(&self) -> String {
        let mut s = String::new();
        fn walk(e: &Elem, s: &mut String) {
            for n in &e.children {
                match n {
                    Node::Text(t) => s.push_str(t),
                    Node::Elem(c) => walk(c, s),
                }
            }
        }
        walk(self, &mut s);
        s
    }
}

/// XML end-of-line handling: `\r\n` and lone `\r` become `\n`.
fn normalize_eol(s: &str) -> Cow<'_, str> {
    if !s.contains('\r') {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.replace("\r\n", "\n").replace('\r', "\n"))
}

fn check_chars(s: &str) -> Result<(), FirewallXmlErrorKind> {
    for c in s.chars() {
        let v = c as u32;
        let bad = (v < 0x20 && !matches!(c, '\t' | '\n' | '\r')) || v == 0xFFFE || v == 0xFFFF;
        if bad {
            return Err(FirewallXmlErrorKind::InvalidChar(v));
        }
    }
    Ok(())
}

/// Reads one element (the first one found from `offset`) into an [`Elem`]
/// tree. With `whole_document`, anything but whitespace, comments and
/// processing instructions after it is an error; otherwise reading stops at
/// its end tag.
fn read_element(
    doc: &str,
    offset: usize,
    whole_document: bool,
) -> Result<(Option<Elem>, usize), FirewallXmlError> {
    let src = doc.get(offset..).unwrap_or("");
    let mut reader = Reader::from_str(src);
    reader.config_mut().trim_text(false);
    reader.config_mut().check_end_names = true;
    let err_at = |pos: usize, kind: FirewallXmlErrorKind| {
        let (line, column) = line_col(doc, offset + pos);
        FirewallXmlError { line, column, kind }
    };
    let mut stack: Vec<Elem> = Vec::new();
    let mut root: Option<Elem> = None;
    loop {
        let before = reader.buffer_position() as usize;
        let event = reader.read_event().map_err(|e| {
            err_at(
                reader.error_position() as usize,
                FirewallXmlErrorKind::Syntax(e.to_string()),
            )
        })?;
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(err_at(before, FirewallXmlErrorKind::TrailingContent));
            }
            Event::Start(start) => {
                let elem = new_elem(&start, before).map_err(|k| err_at(before, k))?;
                stack.push(elem);
            }
            Event::Empty(start) => {
                let elem = new_elem(&start, before).map_err(|k| err_at(before, k))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Elem(elem)),
                    None => {
                        root = Some(elem);
                        if !whole_document {
                            return Ok((root, offset + reader.buffer_position() as usize));
                        }
                    }
                }
            }
            Event::End(_) => {
                let Some(elem) = stack.pop() else {
                    return Err(err_at(
                        before,
                        FirewallXmlErrorKind::Syntax("unexpected end tag".into()),
                    ));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Elem(elem)),
                    None => {
                        root = Some(elem);
                        if !whole_document {
                            return Ok((root, offset + reader.buffer_position() as usize));
                        }
                    }
                }
            }
            Event::Text(text) => {
                let raw = std::str::from_utf8(text.as_ref())
                    .map_err(|e| err_at(before, FirewallXmlErrorKind::Syntax(e.to_string())))?;
                if stack.is_empty() {
                    if !raw.trim_matches([' ', '\t', '\n', '\r']).is_empty() {
                        return Err(err_at(
                            before,
                            if root.is_some() {
                                FirewallXmlErrorKind::TrailingContent
                            } else {
                                FirewallXmlErrorKind::Syntax(
                                    "text outside of the root element".into(),
                                )
                            },
                        ));
                    }
                    continue;
                }
                check_chars(raw).map_err(|k| err_at(before, k))?;
                let normalized = normalize_eol(raw);
                let value = quick_xml::escape::unescape(&normalized)
                    .map_err(|e| err_at(before, FirewallXmlErrorKind::Syntax(e.to_string())))?;
                check_chars(&value).map_err(|k| err_at(before, k))?;
                if let Some(parent) = stack.last_mut() {
                    parent.children.push(Node::Text(value.into_owned()));
                }
            }
            Event::CData(cdata) => {
                let raw = std::str::from_utf8(cdata.as_ref())
                    .map_err(|e| err_at(before, FirewallXmlErrorKind::Syntax(e.to_string())))?;
                check_chars(raw).map_err(|k| err_at(before, k))?;
                match stack.last_mut() {
                    Some(parent) => parent
                        .children
                        .push(Node::Text(normalize_eol(raw).into_owned())),
                    None => {
                        return Err(err_at(
                            before,
                            FirewallXmlErrorKind::Syntax(
                                "CDATA outside of the root element".into(),
                            ),
                        ))
                    }
                }
            }
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::DocType(_) => {
                return Err(err_at(
                    before,
                    FirewallXmlErrorKind::Syntax("a DOCTYPE is not supported here".into()),
                ))
            }
            Event::Eof => {
                if let Some(open) = stack.last() {
                    return Err(err_at(
                        open.pos,
                        FirewallXmlErrorKind::Syntax(format!(
                            "element <{}> is not closed",
                            open.name
                        )),
                    ));
                }
                return Ok((root, offset + reader.buffer_position() as usize));
            }
        }
    }
}

fn new_elem(start: &BytesStart<'_>, pos: usize) -> Result<Elem, FirewallXmlErrorKind> {
    let name = std::str::from_utf8(start.name().as_ref())
        .map_err(|e| FirewallXmlErrorKind::Syntax(e.to_string()))?
        .to_string();
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| FirewallXmlErrorKind::Syntax(e.to_string()))?;
        let key = std::str::from_utf8(attr.key.as_ref())
            .map_err(|e| FirewallXmlErrorKind::Syntax(e.to_string()))?
            .to_string();
        let raw = std::str::from_utf8(attr.value.as_ref())
            .map_err(|e| FirewallXmlErrorKind::Syntax(e.to_string()))?;
        check_chars(raw)?;
        if raw.contains('<') {
            return Err(FirewallXmlErrorKind::Syntax(format!(
                "'<' in the value of attribute '{key}'"
            )));
        }
        // Attribute-value normalisation: each literal white-space character
        // (after end-of-line handling) becomes a space.
        let normalized: String = normalize_eol(raw)
            .chars()
            .map(|c| if matches!(c, '\t' | '\n') { ' ' } else { c })
            .collect();
        let value = quick_xml::escape::unescape(&normalized)
            .map_err(|e| FirewallXmlErrorKind::Syntax(e.to_string()))?;
        check_chars(&value)?;
        attrs.push((key, value.into_owned()));
    }
    Ok(Elem {
        name,
        pos,
        attrs,
        children: Vec::new(),
    })
}

/// A `yes`/`no` attribute (absent = no).
fn yes_no(
    elem: &Elem,
    element: &'static str,
    attribute: &'static str,
) -> Result<bool, FirewallXmlErrorKind> {
    match elem.attr(attribute) {
        None | Some("no") => Ok(false),
        Some("yes") => Ok(true),
        Some(other) => Err(FirewallXmlErrorKind::InvalidAttribute {
            element,
            attribute,
            value: other.to_string(),
            expected: "'yes' or 'no'",
        }),
    }
}

/// Builds the firewall from the element tree with libvirt's rules and order
/// of checks.
fn interpret(doc: &str, root: &Elem) -> Result<Firewall, FirewallXmlError> {
    let err = |elem: &Elem, kind: FirewallXmlErrorKind| {
        let (line, column) = line_col(doc, elem.pos);
        FirewallXmlError { line, column, kind }
    };
    if root.name != "firewall" {
        return Err(err(
            root,
            FirewallXmlErrorKind::NotFirewall(root.name.clone()),
        ));
    }
    let backend = match root.attr("backend") {
        None => {
            return Err(err(
                root,
                FirewallXmlErrorKind::MissingAttribute {
                    element: "firewall",
                    attribute: "backend",
                },
            ))
        }
        Some(v) => v.parse::<Backend>().map_err(|_| {
            err(
                root,
                FirewallXmlErrorKind::InvalidAttribute {
                    element: "firewall",
                    attribute: "backend",
                    value: v.to_string(),
                    expected: "none, iptables or nftables",
                },
            )
        })?,
    };
    let mut fw = Firewall::new(backend);
    if let Some(name) = root.attr("name") {
        fw.set_name(name);
    }
    for group in root.child_elems("group") {
        let actions: Vec<&Elem> = group.child_elems("action").collect();
        if actions.is_empty() {
            continue;
        }
        let flags = if yes_no(group, "group", "ignoreErrors").map_err(|k| err(group, k))? {
            TransactionFlags::IGNORE_ERRORS
        } else {
            TransactionFlags::NONE
        };
        fw.start_transaction(flags);
        for action in actions {
            let Some(args) = action.child_elems("args").next() else {
                continue;
            };
            let ignore = yes_no(action, "action", "ignoreErrors").map_err(|k| err(action, k))?;
            let layer = match action.attr("layer") {
                None => {
                    return Err(err(
                        action,
                        FirewallXmlErrorKind::MissingAttribute {
                            element: "action",
                            attribute: "layer",
                        },
                    ))
                }
                Some(v) => v.parse::<Layer>().map_err(|_| {
                    err(
                        action,
                        FirewallXmlErrorKind::InvalidAttribute {
                            element: "action",
                            attribute: "layer",
                            value: v.to_string(),
                            expected: "ethernet, ipv4, ipv6 or tc",
                        },
                    )
                })?,
            };
            let items: Vec<String> = args.child_elems("item").map(Elem::content).collect();
            if items.is_empty() {
                return Err(err(args, FirewallXmlErrorKind::NoArguments));
            }
            fw.add_cmd_full(layer, ignore, None, items);
        }
    }
    Ok(fw)
}
