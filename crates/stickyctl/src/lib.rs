//! stickyctl: the command line of sticky-canary (arguments, dispatch, printing) and the
//! composition root that wires the other crates together. Nothing in the product depends on
//! it; the tests drive [`cli::run`] in-process.

#![deny(missing_docs)]

pub mod cli;
