//! One element of a `net-update` (`<host>`, `<range>`, `<interface>`,
//! `<portgroup>`, `<txt>`, `<srv>`), read with the same checks and
//! messages as inside a whole `<network>` (libvirt's update parses the
//! element with the parser of the full document), plus the partial forms
//! an update's delete (and modify) key may take.

use std::net::IpAddr;

use super::super::dom::{parse_document, Document, Element};
use super::super::error::{ErrorKind, NetXmlError};
use super::super::model::{DhcpHost, DhcpRange, IpDef, PortGroup};
use super::{Parser, Result, SrvFields};

/// A parsed update element and the network it is for (named in messages).
pub(crate) struct Fragment {
    doc: Document,
    network: String,
}

impl Fragment {
    /// Parses the element; not yet checked against a section.
    pub(crate) fn parse(xml: &str, network: &str) -> Result<Fragment> {
        Ok(Fragment {
            doc: parse_document(xml)?,
            network: network.to_string(),
        })
    }

    fn parser(&self) -> Parser<'_> {
        Parser {
            doc: &self.doc,
            name: self.network.clone(),
        }
    }

    fn root(&self) -> &Element {
        &self.doc.root
    }

    /// The root must be `<expected>`; libvirt's message otherwise.
    pub(crate) fn expect(&self, expected: &str) -> Result<()> {
        let root = self.root();
        if root.local == expected {
            return Ok(());
        }
        Err(NetXmlError::new(
            ErrorKind::Invalid,
            format!(
                "unexpected element <{}>, expecting <{expected}>, while updating network '{}'",
                root.local, self.network
            ),
        )
        .at(self.doc.location(root, None)))
    }

    pub(crate) fn dhcp_host(&self, ip: &IpDef, partial: bool) -> Result<DhcpHost> {
        self.parser().dhcp_host(ip, self.root(), partial)
    }

    pub(crate) fn dhcp_range(&self, ip: &IpDef) -> Result<DhcpRange> {
        self.parser().dhcp_range(ip, self.root())
    }

    /// `<interface dev='…'/>` of `<forward>`: its device name.
    pub(crate) fn forward_interface(&self) -> Result<String> {
        let p = self.parser();
        let el = self.root();
        let Some(dev) = el.prop("dev") else {
            return Err(p.invalid(
                el,
                Some("dev"),
                "missing dev attribute in <interface> element",
            ));
        };
        p.ifname(el, "dev", dev)?;
        Ok(dev.to_string())
    }

    pub(crate) fn portgroup(&self) -> Result<PortGroup> {
        self.parser().portgroup(self.root())
    }

    pub(crate) fn dns_host(&self, partial: bool) -> Result<(Option<IpAddr>, Vec<String>)> {
        self.parser().dns_host(self.root(), partial)
    }

    pub(crate) fn txt(&self, partial: bool) -> Result<(String, Option<String>)> {
        self.parser().txt(self.root(), partial)
    }

    pub(crate) fn srv(&self, partial: bool) -> Result<SrvFields> {
        self.parser().srv_fields(self.root(), partial)
    }
}
