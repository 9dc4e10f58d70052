//! Unit tests of the firewall engine.

mod golden_render;
