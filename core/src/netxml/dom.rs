//! A small whitespace-preserving element tree built with quick-xml, keeping
//! byte offsets so errors can point at line:column, and resolving namespace
//! prefixes (needed for the dnsmasq passthrough namespace and metadata).

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use std::collections::HashMap;

use super::error::{line_col, ErrorKind, Location, NetXmlError};

#[derive(Debug, Clone)]
pub(crate) struct Attr {
    pub prefix: Option<String>,
    pub local: String,
    pub value: String,
    /// Byte offset of the attribute name.
    pub pos: usize,
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Element(Element),
    Text(String),
    CData(String),
    Comment(String),
    Pi(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Element {
    pub prefix: Option<String>,
    pub local: String,
    /// Resolved namespace URI of the element (None: no namespace).
    pub ns: Option<String>,
    /// Namespace declarations made on this element: (prefix, uri); prefix
    /// None is the default namespace.
    pub ns_decls: Vec<(Option<String>, String)>,
    /// All in-scope namespace bindings at this element (for metadata copies).
    pub scope: Vec<(Option<String>, String)>,
    /// Attributes other than namespace declarations, in document order.
    pub attrs: Vec<Attr>,
    pub children: Vec<Node>,
    /// Byte offset of `<`.
    pub pos: usize,
    /// Path such as `/network/ip[2]`.
    pub path: String,
}

impl Element {
    /// Qualified name as written.
    pub fn qname(&self) -> String {
        match &self.prefix {
            Some(p) => format!("{p}:{}", self.local),
            None => self.local.clone(),
        }
    }

    /// Child elements.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            _ => None,
        })
    }

    /// Children matched like libvirt's XPath `./NAME`: no namespace.
    pub fn xpath_children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.elements()
            .filter(move |e| e.ns.is_none() && e.local == name)
    }

    /// First child matched like XPath `./NAME[1]`.
    pub fn xpath_child<'a>(&'a self, name: &'a str) -> Option<&'a Element> {
        self.xpath_children(name).next()
    }

    /// Children matched like libvirt's virXMLNodeGetSubelementList (local
    /// name only, any namespace).
    pub fn sub_elements<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.elements().filter(move |e| e.local == name)
    }

    pub fn sub_element<'a>(&'a self, name: &'a str) -> Option<&'a Element> {
        self.sub_elements(name).next()
    }

    /// Attribute without namespace (xmlGetNoNsProp), raw value (may be empty).
    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs
            .iter()
            .find(|a| a.prefix.is_none() && a.local == name)
    }

    /// virXMLPropString: the attribute value, empty string kept.
    pub fn prop(&self, name: &str) -> Option<&str> {
        self.attr(name).map(|a| a.value.as_str())
    }

    /// XPath `string(./@NAME)`: empty is treated as absent.
    pub fn xpath_prop(&self, name: &str) -> Option<&str> {
        self.prop(name).filter(|v| !v.is_empty())
    }

    /// XPath `string(.)`: concatenated descendant text.
    pub fn text_content(&self) -> String {
        let mut s = String::new();
        self.collect_text(&mut s);
        s
    }

    fn collect_text(&self, out: &mut String) {
        for c in &self.children {
            match c {
                Node::Text(t) | Node::CData(t) => out.push_str(t),
                Node::Element(e) => e.collect_text(out),
                _ => {}
            }
        }
    }

    /// The element with this path, or the deepest existing ancestor of it.
    pub fn find_path(&self, path: &str) -> Option<&Element> {
        if self.path == path {
            return Some(self);
        }
        let under = path.strip_prefix(self.path.as_str())?;
        if !under.starts_with('/') {
            return None;
        }
        for c in self.elements() {
            if let Some(found) = c.find_path(path) {
                return Some(found);
            }
        }
        Some(self)
    }

    /// XPath `string(./NAME[1])` with empty treated as absent.
    pub fn xpath_child_string(&self, name: &str) -> Option<String> {
        self.xpath_child(name)
            .map(|e| e.text_content())
            .filter(|s| !s.is_empty())
    }
}

/// Parsed document: the root element plus the (line-end normalized) input,
/// for positions.
pub(crate) struct Document {
    pub input: String,
    pub root: Element,
}

impl Document {
    pub fn location(&self, el: &Element, attr: Option<&str>) -> Location {
        let pos = attr
            .and_then(|a| el.attr(a))
            .map(|a| a.pos)
            .unwrap_or(el.pos);
        let (line, column) = line_col(&self.input, pos);
        Location {
            line,
            column,
            path: el.path.clone(),
            attribute: attr.map(str::to_string),
        }
    }
}

fn syntax(input: &str, pos: usize, msg: impl Into<String>) -> NetXmlError {
    let (line, column) = line_col(input, pos);
    NetXmlError::new(ErrorKind::Syntax, msg).at(Location {
        line,
        column,
        path: String::new(),
        attribute: None,
    })
}

/// A quick-xml attribute syntax error, positioned in the input (quick-xml
/// counts from the byte after `<`).
fn attr_error(
    input: &str,
    tag_pos: usize,
    err: &quick_xml::events::attributes::AttrError,
) -> NetXmlError {
    use quick_xml::events::attributes::AttrError as E;
    let (at, what) = match err {
        E::ExpectedEq(p) => (*p, "attribute name must be followed by '='".to_string()),
        E::ExpectedValue(p) => (*p, "'=' must be followed by an attribute value".to_string()),
        E::UnquotedValue(p) => (*p, "attribute value must be enclosed in quotes".to_string()),
        E::ExpectedQuote(p, q) => (*p, format!("missing closing quote {}", *q as char)),
        E::Duplicated(p, _) => (*p, "attribute redefined".to_string()),
    };
    syntax(input, tag_pos + 1 + at, what)
}

/// XML 1.0 Name production (ASCII rules exact; any non-ASCII accepted).
fn is_xml_name(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    let start_ok = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':' || !c.is_ascii();
    start_ok(first) && chars.all(|c| start_ok(c) || c.is_ascii_digit() || c == '-' || c == '.')
}

fn split_qname(q: &str) -> (Option<String>, String) {
    match q.split_once(':') {
        Some((p, l)) => (Some(p.to_string()), l.to_string()),
        None => (None, q.to_string()),
    }
}

fn offset_in(input: &str, slice: &[u8]) -> Option<usize> {
    let base = input.as_ptr() as usize;
    let p = slice.as_ptr() as usize;
    if p >= base && p <= base + input.len() {
        Some(p - base)
    } else {
        None
    }
}

struct Builder<'a> {
    input: &'a str,
    stack: Vec<Element>,
    /// For each element of `stack`: how many children of each qualified
    /// name it has so far (the `[N]` of their paths).
    counts: Vec<HashMap<String, usize>>,
    root: Option<Element>,
}

impl<'a> Builder<'a> {
    fn start(&mut self, e: &BytesStart<'_>, pos: usize) -> Result<Element, NetXmlError> {
        let input = self.input;
        let qname = std::str::from_utf8(e.name().as_ref())
            .map_err(|_| syntax(input, pos, "element name is not valid UTF-8"))?
            .to_string();
        if qname.is_empty() {
            return Err(syntax(input, pos, "empty element name"));
        }
        if !is_xml_name(&qname) {
            return Err(syntax(
                input,
                pos,
                format!("invalid element name '{qname}'"),
            ));
        }
        let (prefix, local) = split_qname(&qname);
        let mut attrs = Vec::new();
        let mut ns_decls = Vec::new();
        // Duplicates are found with a set: quick-xml's own check compares
        // each attribute with every earlier one, and a 1 MiB tag of 20,000
        // attributes then took a minute of the daemon's time.
        let mut seen = std::collections::HashSet::new();
        for a in e.attributes().with_checks(false) {
            let a = a.map_err(|err| attr_error(input, pos, &err))?;
            let apos = offset_in(input, a.key.as_ref()).unwrap_or(pos);
            if !seen.insert(a.key.as_ref().to_vec()) {
                return Err(syntax(input, apos, "attribute redefined"));
            }
            let key = std::str::from_utf8(a.key.as_ref())
                .map_err(|_| syntax(input, apos, "attribute name is not valid UTF-8"))?
                .to_string();
            if !is_xml_name(&key) {
                return Err(syntax(
                    input,
                    apos,
                    format!("invalid attribute name '{key}'"),
                ));
            }
            if a.value.contains(&b'<') {
                return Err(syntax(
                    input,
                    apos,
                    format!("unescaped '<' not allowed in value of attribute '{key}'"),
                ));
            }
            // Attribute-value normalization: literal TAB and LF (CR is gone
            // after line-end normalization) become spaces; character
            // references are expanded after that and so survive.
            let raw = std::str::from_utf8(a.value.as_ref())
                .map_err(|_| syntax(input, apos, "attribute value is not valid UTF-8"))?
                .replace(['\t', '\n'], " ");
            let value = quick_xml::escape::unescape(&raw)
                .map_err(|err| {
                    syntax(
                        input,
                        apos,
                        format!("bad value of attribute '{key}': {err}"),
                    )
                })?
                .into_owned();
            // Literal forbidden characters were refused for the whole
            // input already: one here came from a character reference,
            // which libxml2 refuses too.
            if let Some(c) = value.chars().find(|c| is_forbidden_char(*c)) {
                return Err(syntax(
                    input,
                    apos,
                    format!("{} in attribute '{key}'", char_ref_message(c)),
                ));
            }
            if key == "xmlns" {
                ns_decls.push((None, value));
                continue;
            }
            let (ap, al) = split_qname(&key);
            if ap.as_deref() == Some("xmlns") {
                if value.is_empty() {
                    return Err(syntax(
                        input,
                        apos,
                        format!("empty namespace URI for prefix '{al}'"),
                    ));
                }
                ns_decls.push((Some(al), value));
                continue;
            }
            attrs.push(Attr {
                prefix: ap,
                local: al,
                value,
                pos: apos,
            });
        }
        let mut scope = self
            .stack
            .last()
            .map(|p| p.scope.clone())
            .unwrap_or_default();
        // (Linear in the declarations: no retain per declaration.)
        let declared: std::collections::HashSet<&Option<String>> =
            ns_decls.iter().map(|(p, _)| p).collect();
        scope.retain(|(sp, _)| !declared.contains(sp));
        let mut pushed = std::collections::HashSet::new();
        for (p, u) in ns_decls.iter().rev() {
            // The last declaration of a prefix wins, as before.
            if pushed.insert(p) {
                scope.push((p.clone(), u.clone()));
            }
        }
        // Prefixes are unique in `scope` (see above): one map per element,
        // so that each attribute's lookup is O(1).
        let index: std::collections::HashMap<&Option<String>, &String> =
            scope.iter().map(|(p, u)| (p, u)).collect();
        let lookup = |p: &Option<String>| -> Option<String> {
            index.get(p).map(|u| (*u).clone()).filter(|u| !u.is_empty())
        };
        let ns = lookup(&prefix);
        if prefix.is_some() && ns.is_none() {
            return Err(syntax(
                input,
                pos,
                format!("namespace prefix of element '{qname}' is not defined"),
            ));
        }
        for a in &attrs {
            if let Some(p) = &a.prefix {
                if p != "xml" && lookup(&Some(p.clone())).is_none() {
                    return Err(syntax(
                        input,
                        a.pos,
                        format!(
                            "namespace prefix '{p}' of attribute '{}' is not defined",
                            a.local
                        ),
                    ));
                }
            }
        }
        // The position among same-named siblings comes from a per-parent
        // counter: counting the siblings again for every child made a
        // document with many children quadratic.
        let path = match (self.stack.last(), self.counts.last_mut()) {
            (Some(parent), Some(counts)) => {
                let n = counts.entry(qname.clone()).or_insert(0);
                *n += 1;
                format!("{}/{}[{}]", parent.path, qname, n)
            }
            _ => format!("/{qname}"),
        };
        Ok(Element {
            prefix,
            local,
            ns,
            ns_decls,
            scope,
            attrs,
            children: Vec::new(),
            pos,
            path,
        })
    }

    fn finish(&mut self, el: Element, pos: usize) -> Result<(), NetXmlError> {
        match self.stack.last_mut() {
            Some(parent) => {
                parent.children.push(Node::Element(el));
                Ok(())
            }
            None => {
                if self.root.is_some() {
                    return Err(syntax(
                        self.input,
                        pos,
                        "extra content at the end of the document",
                    ));
                }
                self.root = Some(el);
                Ok(())
            }
        }
    }

    fn push_node(&mut self, node: Node, pos: usize) -> Result<(), NetXmlError> {
        match self.stack.last_mut() {
            Some(parent) => {
                parent.children.push(node);
                Ok(())
            }
            None => match node {
                Node::Text(t) if t.chars().all(|c| matches!(c, ' ' | '\t' | '\n' | '\r')) => Ok(()),
                Node::Text(_) | Node::CData(_) => {
                    Err(syntax(self.input, pos, "content outside the root element"))
                }
                _ => Ok(()),
            },
        }
    }
}

/// Characters XML 1.0 does not allow anywhere (libxml2 rejects them, also
/// when written as character references).
fn is_forbidden_char(c: char) -> bool {
    (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{fffe}' || c == '\u{ffff}'
}

/// libxml2's message for a character reference to a character XML 1.0
/// does not allow (`&#1;`): `xmlParseCharRef: invalid xmlChar value 1`,
/// with virtnet's "invalid XML character U+0001" in front.
fn char_ref_message(c: char) -> String {
    format!(
        "invalid XML character U+{:04X} (xmlParseCharRef: invalid xmlChar value {})",
        u32::from(c),
        u32::from(c)
    )
}

fn check_chars(input: &str, s: &str, pos: usize) -> Result<(), NetXmlError> {
    match s.chars().find(|c| is_forbidden_char(*c)) {
        Some(c) => Err(syntax(input, pos, char_ref_message(c))),
        None => Ok(()),
    }
}

/// XML end-of-line handling: CR LF and lone CR become LF.
fn normalize_line_ends(input: &str) -> String {
    if !input.contains('\r') {
        return input.to_string();
    }
    input.replace("\r\n", "\n").replace('\r', "\n")
}

/// Parse `input` into an element tree.
pub(crate) fn parse_document(input: &str) -> Result<Document, NetXmlError> {
    let normalized = normalize_line_ends(input);
    let root = parse_normalized(&normalized)?;
    Ok(Document {
        input: normalized,
        root,
    })
}

/// Deepest element nesting accepted: libxml2's default `xmlParserMaxDepth`
/// (libvirt does not ask for XML_PARSE_HUGE). Besides matching libxml2,
/// it bounds the work and memory of a hostile document (every element
/// keeps its path and namespace scope).
pub(crate) const MAX_DEPTH: usize = 256;

impl Builder<'_> {
    fn check_depth(&self, pos: usize) -> Result<(), NetXmlError> {
        if self.stack.len() > MAX_DEPTH {
            return Err(syntax(
                self.input,
                pos,
                format!("Excessive depth in document: {MAX_DEPTH} use XML_PARSE_HUGE option"),
            ));
        }
        Ok(())
    }
}

fn parse_normalized(input: &str) -> Result<Element, NetXmlError> {
    if let Some((i, c)) = input.char_indices().find(|(_, c)| is_forbidden_char(*c)) {
        return Err(syntax(
            input,
            i,
            format!("invalid XML character U+{:04X}", u32::from(c)),
        ));
    }
    let mut reader = Reader::from_str(input);
    {
        let cfg = reader.config_mut();
        cfg.trim_text(false);
        cfg.check_end_names = true;
        cfg.check_comments = true;
        cfg.expand_empty_elements = false;
    }
    let mut b = Builder {
        input,
        stack: Vec::new(),
        counts: Vec::new(),
        root: None,
    };
    loop {
        let pos = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let ev = match reader.read_event() {
            Ok(ev) => ev,
            Err(err) => {
                let epos = usize::try_from(reader.error_position()).unwrap_or(pos);
                return Err(syntax(input, epos, format!("malformed XML: {err}")));
            }
        };
        match ev {
            Event::Start(e) => {
                b.check_depth(pos)?;
                if b.stack.is_empty() && b.root.is_some() {
                    return Err(syntax(
                        input,
                        pos,
                        "extra content at the end of the document",
                    ));
                }
                let el = b.start(&e, pos)?;
                b.stack.push(el);
                b.counts.push(HashMap::new());
            }
            Event::Empty(e) => {
                b.check_depth(pos)?;
                if b.stack.is_empty() && b.root.is_some() {
                    return Err(syntax(
                        input,
                        pos,
                        "extra content at the end of the document",
                    ));
                }
                let el = b.start(&e, pos)?;
                b.finish(el, pos)?;
            }
            Event::End(_) => match b.stack.pop() {
                Some(el) => {
                    b.counts.pop();
                    b.finish(el, pos)?
                }
                None => return Err(syntax(input, pos, "unexpected end tag")),
            },
            Event::Text(t) => {
                if t.windows(3).any(|w| w == b"]]>") {
                    return Err(syntax(input, pos, "sequence ']]>' not allowed in content"));
                }
                let s = t
                    .unescape()
                    .map_err(|err| syntax(input, pos, format!("bad text: {err}")))?
                    .into_owned();
                check_chars(input, &s, pos)?;
                b.push_node(Node::Text(s), pos)?;
            }
            Event::CData(t) => {
                let s = std::str::from_utf8(&t)
                    .map_err(|_| syntax(input, pos, "CDATA is not valid UTF-8"))?
                    .to_string();
                b.push_node(Node::CData(s), pos)?;
            }
            Event::Comment(t) => {
                let s = String::from_utf8_lossy(&t).into_owned();
                b.push_node(Node::Comment(s), pos)?;
            }
            Event::PI(t) => {
                let s = String::from_utf8_lossy(&t).into_owned();
                b.push_node(Node::Pi(s), pos)?;
            }
            Event::Decl(_) => {
                // Only a UTF-8 byte order mark may precede the declaration.
                if !input
                    .get(..pos)
                    .is_some_and(|p| p.trim_start_matches('\u{feff}').is_empty())
                {
                    return Err(syntax(
                        input,
                        pos,
                        "XML declaration allowed only at the start of the document",
                    ));
                }
            }
            Event::DocType(_) => {
                if !b.stack.is_empty() || b.root.is_some() {
                    return Err(syntax(
                        input,
                        pos,
                        "XML declaration or DOCTYPE inside the document",
                    ));
                }
            }
            Event::Eof => break,
        }
    }
    if let Some(open) = b.stack.last() {
        return Err(syntax(
            input,
            input.len(),
            format!(
                "premature end of data: element '{}' is not closed",
                open.qname()
            ),
        ));
    }
    match b.root {
        Some(root) => Ok(root),
        None => Err(syntax(
            input,
            input.len(),
            "document is empty (no root element)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many attributes and namespace declarations on one tag: duplicates
    /// and undefined prefixes are still found, with the position of the
    /// offending attribute (the checks are sets and maps now, not scans).
    #[test]
    fn wide_tags_keep_their_checks() {
        let n = 5000;
        let decls: String = (0..n).map(|i| format!(" xmlns:p{i}='urn:u{i}'")).collect();
        let attrs: String = (0..n).map(|i| format!(" p{i}:a='1' b{i}='2'")).collect();
        let ok = format!("<network{decls}{attrs}><name>w</name></network>");
        parse_document(&ok).unwrap();
        let dup = format!("<network{attrs} b17='3'><name>w</name></network>");
        let e = match parse_document(&format!("<network{decls}{}", &dup[8..])) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a duplicate attribute was accepted"),
        };
        assert!(e.contains("attribute redefined"), "{e}");
        let undefined = format!("<network{decls} q:a='1'><name>w</name></network>");
        let e = match parse_document(&undefined) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("an undefined prefix was accepted"),
        };
        assert!(
            e.contains("namespace prefix 'q' of attribute 'a' is not defined"),
            "{e}"
        );
    }
}
