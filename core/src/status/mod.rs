//! Config and status stores (atomic writes, <networkstatus> files, network.conf).
