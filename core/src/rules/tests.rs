//! Unit tests of the rule generators; the data-driven golden and capture
//! tests are in `core/tests/rules_*.rs`.
