//! Envoy configuration for a plain Envoy that reads its listeners from files.
