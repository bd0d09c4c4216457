//! Pure renderers: desired state in, configuration objects out, no I/O.

pub mod destinationrule;
pub mod envoy;
pub mod istio;
pub mod placement;
pub mod virtualservice;
pub mod wasmplugin;

/// Why the user's Istio objects cannot take the managed routes and subsets; raised before
/// anything is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// A user route before the managed ones would catch every request they should match.
    #[error("route {route} of VirtualService {virtual_service} catches every request before the managed version routes could match: narrow its match, or move it after the service's route")]
    Shadowed {
        /// The VirtualService.
        virtual_service: String,
        /// The route, by name or position.
        route: String,
    },
    /// A user route matches on the header the filter stamps, which the managed routes own.
    #[error("route {route} of VirtualService {virtual_service} matches on header {header}, which the filter stamps and the managed routes own: remove that match")]
    HeaderConflict {
        /// The VirtualService.
        virtual_service: String,
        /// The route, by name or position.
        route: String,
        /// The filter's header.
        header: String,
    },
    /// The object the rollout must edit does not exist.
    #[error("{kind} {namespace}/{name} does not exist: create it first; stickyctl only adds its managed routes to it")]
    Missing {
        /// Kind of the object.
        kind: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The object exists but cannot be edited as it is.
    #[error("{object}: {why}")]
    Malformed {
        /// Kind and name of the object.
        object: String,
        /// What is wrong.
        why: String,
    },
}
