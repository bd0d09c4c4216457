//! Names derived from a version, shared by the renderers that make the objects and the queries
//! that read their metrics back, so both always agree.

/// What every managed subset's name starts with.
pub const SUBSET_PREFIX: &str = "sticky-canary-";

/// Name of the managed DestinationRule subset of `version`.
pub fn subset_name(version: &str) -> String {
    format!("{SUBSET_PREFIX}{version}")
}

/// Name of the plain Envoy cluster serving `version`.
pub fn cluster_name(version: &str) -> String {
    format!("version_{version}")
}

/// Default name of the Service of `version` of service `service` (the short name) on the
/// HTTPRoute backend, where a backend has no subsets: `<service>-<version>`. Whether it is a
/// valid Service name is the renderer's check (`render::services`).
pub fn version_service_name(service: &str, version: &str) -> String {
    format!("{service}-{version}")
}
