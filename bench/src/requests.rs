//! The requests wrk sends: the same situations the native benchmarks decide on.

use sticky_canary_filter::{Config, FilterConfig, RolloutConfig, RolloutsConfig};

// One definition of the benchmark requests and configurations for the native benchmarks
// (criterion, callgrind) and this load test; only part of it is needed here.
#[allow(dead_code)]
#[path = "../../filter/benches/fixtures/mod.rs"]
mod fixtures;

/// What a request looks like to the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A new client: no cookie, so the filter mints an id and hashes it (every request is a
    /// new client, the extreme of "many clients").
    New,
    /// A returning client pinned to the last configured version, sending two cookies.
    Pinned,
    /// The worst case: pinned, in a 4 KB `Cookie` header of 50 cookies, its own last.
    Worst,
}

impl Shape {
    /// Short name for the table.
    pub fn label(self) -> &'static str {
        match self {
            Shape::New => "hash path (new client)",
            Shape::Pinned => "cookie path",
            Shape::Worst => "4 KB / 50 cookies",
        }
    }

    /// The extra request headers, for a configuration of `versions` versions.
    pub fn headers(self, versions: usize) -> Vec<(&'static str, String)> {
        self.headers_for(versions, DEFAULT_VERSION_COOKIE)
    }

    /// [`Shape::headers`] for a rollout whose version cookie is `version_cookie`.
    fn headers_for(self, versions: usize, version_cookie: &str) -> Vec<(&'static str, String)> {
        let cookies = match self {
            Shape::New => return Vec::new(),
            Shape::Pinned => 2,
            Shape::Worst => 50,
        };
        let header = fixtures::pinned_cookie_named(versions, cookies, version_cookie);
        // The fixture builds ASCII only.
        vec![("cookie", String::from_utf8_lossy(&header).into_owned())]
    }

    /// The requests of this shape to a gateway of `services` services (see
    /// [`rollouts_config`]), one per service with its `Host` and its rollout's cookie, to be
    /// sent in turn so that they spread evenly over the services.
    pub fn gateway_requests(
        self,
        services: usize,
        versions: usize,
    ) -> Vec<Vec<(&'static str, String)>> {
        (0..services)
            .map(|service| {
                let mut headers = vec![("host", service_host(service))];
                headers.extend(self.headers_for(versions, &version_cookie(service)));
                headers
            })
            .collect()
    }
}

/// The version cookie of the single-rollout form's default configuration.
const DEFAULT_VERSION_COOKIE: &str = sticky_canary_filter::config::DEFAULT_COOKIE;

/// Host of service `index` of the benchmark gateway.
pub fn service_host(index: usize) -> String {
    format!("svc-{index}.bench.svc.cluster.local")
}

/// Version cookie of the rollout of service `index`: each rollout needs its own.
pub fn version_cookie(index: usize) -> String {
    format!("sticky-version.svc-{index}")
}

/// One multi-rollout configuration for a gateway of `services` services, each in a rollout of
/// its own with `versions` versions of equal weight. The rollouts share weights, salt and the
/// id cookie, so a client id hashes to the same version in each and one pinned request shape
/// serves them all.
pub fn rollouts_config(services: usize, versions: usize) -> FilterConfig {
    let rollouts = (0..services)
        .map(|index| {
            let mut config = fixtures::config(versions).plugin;
            config.cookie.name = version_cookie(index);
            RolloutConfig {
                name: format!("bench/svc-{index}"),
                services: vec![service_host(index)],
                config,
            }
        })
        .collect();
    FilterConfig::Rollouts(RolloutsConfig { rollouts })
}

/// `versions` versions `v1..vN` with equal weights: the configurations of the native benchmarks.
pub fn config(versions: usize) -> Config {
    fixtures::config(versions)
}
