//! Harness for running sticky-canary against a real Envoy: processes, config files, clients.
//!
//! A [`stack::Stack`] is the whole picture on one machine: one upstream process per version
//! ([`upstream`], serving the [`site`]), and an Envoy ([`envoy`]) that runs the built filter
//! and reads its listener from a file, so weights change live; a [`gateway::Gateway`] puts
//! several services behind one Envoy, as an Istio ingress gateway does. [`browser`] and [`crowd`]
//! play the clients, sending the `Sec-Fetch-*` headers real browsers send, and [`chromium`] is
//! a real one; [`load`] keeps them
//! browsing while an [`operator`] runs the real `stickyctl` to change the rollout.

pub mod browser;
pub mod chart;
pub mod chromium;
pub mod crowd;
pub mod demo;
pub mod envoy;
pub mod envoy_process;
pub mod exposition;
pub mod gateway;
pub mod guide;
pub mod load;
pub mod locate;
pub mod mesh;
pub mod node;
pub mod operator;
pub mod process;
pub mod prometheus;
pub mod registry;
pub mod site;
pub mod stack;
pub mod traffic;
pub mod upstream;
pub mod verdicts;
pub mod wait;
pub mod webhook;
