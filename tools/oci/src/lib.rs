//! The images of sticky-canary as OCI image layouts, written without a container engine: the
//! filter in the format Istio's agent pulls ([`images::filter`]) and the controller as a
//! static `stickyctl` on an otherwise empty root filesystem ([`images::controller`]); and any
//! linux image made of host files, a dynamic executable bringing its loader and libraries
//! ([`rootfs::image`]: the test node's pause, istiod, proxy, CoreDNS and upstream images).
//!
//! Everything but [`layout::write`] and [`rootfs`] (which reads the host's files) is pure and deterministic: the same inputs give the same
//! bytes, so the same digests.

pub mod blob;
pub mod elf;
pub mod images;
pub mod layer;
pub mod layout;
pub mod rootfs;
