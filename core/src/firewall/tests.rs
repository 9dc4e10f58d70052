//! Unit tests of the firewall engine.

mod engine;
mod golden_render;
mod props;
mod virfirewall;
mod xml;
