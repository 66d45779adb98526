//! Keeps the README honest: its Rust examples are compiled here, in a crate
//! outside the hotslot package, as this crate's doctests.
#![doc = include_str!("../../../README.md")]
