//! Unit tests of the firewall engine.

mod captures;
mod engine;
mod golden_render;
mod props;
mod virfirewall;
mod xml;
