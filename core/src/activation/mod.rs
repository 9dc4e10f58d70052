//! systemd socket activation (LISTEN_PID / LISTEN_FDS / LISTEN_FDNAMES), libvirt semantics.
