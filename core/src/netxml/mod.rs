//! Network definition model: parse, validate and format libvirt network XML.
