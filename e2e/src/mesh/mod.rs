//! The real mesh on loopback: etcd, kube-apiserver and istiod ([`control_plane`]) built from
//! their Go modules ([`tools`]), and Envoys that istiod configures ([`proxy`]), so every claim
//! about Istio is proven by what istiod makes of the objects stickyctl writes.

pub mod analyze;
pub mod auto;
pub mod control_plane;
pub mod gateway_api;
pub mod proxy;
pub mod sds;
pub mod stack;
pub mod tools;
