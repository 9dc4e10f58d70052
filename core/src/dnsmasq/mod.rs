//! dnsmasq configuration, hostsfile and addnhosts generation (libvirt 11.3.0 exact).
