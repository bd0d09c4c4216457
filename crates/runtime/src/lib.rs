//! The runtime of sticky-canary: everything that acts on a rollout where it lives.
//!
//! It owns the targets (a Kubernetes cluster, an Envoy directory: [`target::place::Place`]
//! chooses and opens them), the one way to change a rollout ([`act::act`]: read,
//! [`rollout::transition`], write, converge ([`reconcile`]), then notify), the controller
//! loop, the webhook notices and the errors and exit codes of every command, and what every
//! command shares with the person running it: its output ([`console`]), Ctrl-C
//! ([`interrupt`]) and who they are to the cluster ([`identity`]). Front ends (the
//! CLI, the dashboard, the plan file) act only through it; it decides nothing itself (the
//! rules are `rollout`'s, the objects `render`'s) and knows no front end.

#![deny(missing_docs)]

pub mod act;
pub mod console;
pub mod controller;
pub mod error;
pub mod fsutil;
pub mod identity;
pub mod interrupt;
pub mod metrics;
pub mod notify;
pub mod reconcile;
pub mod target;
