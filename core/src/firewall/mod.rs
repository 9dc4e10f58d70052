//! Firewall engine: commands, layers, groups, transactions, apply, rollback, removal plan and its XML.
