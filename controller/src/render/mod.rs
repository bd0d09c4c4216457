//! Pure renderers: desired state in, configuration objects out, no I/O.

pub mod envoy;
