//! virtnet-conformance: scenarios written once, run against the fake host and
//! the real kernel.
pub mod props;
pub mod upgrade;
