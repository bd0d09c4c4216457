//! A gateway in front of several services, as an Istio ingress gateway is: one listener that
//! routes by host to clusters named the way Istio names them (`outbound|<port>|<subset>|<host>`),
//! and one filter configuration for every rollout that runs there (the multi-rollout form).
//!
//! A service in a rollout gets what `stickyctl` makes of it in Istio: one subset cluster per
//! version (`sticky-canary-<version>`), a route per version matched on the version header, and
//! stable for the rest. A service without a rollout gets one cluster without subset for
//! everything, so its requests pass the filter with a cluster name no rollout claims.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Result;
use api::names::subset_name;
use render::envoy::{render_cluster, render_listener, EnvoyLayout};
use serde_json::{json, Value};
use sticky_canary_filter::config::DEFAULT_HEADER;

use crate::browser::Http;
use crate::envoy::{Envoy, EnvoyOptions, Site};
use crate::upstream::Upstream;

/// The port in the gateway's cluster names (Istio puts the service port there).
pub const SERVICE_PORT: u16 = 8080;

/// One service behind the gateway.
#[derive(Debug, Clone)]
pub struct Service {
    /// Its host name: the `Host` clients send, and the host in its clusters' names.
    pub host: String,
    /// Its versions, stable first, each with where it runs.
    pub versions: Vec<(String, SocketAddr)>,
    /// Whether it is in a rollout, and so routed by version header to subset clusters.
    pub in_rollout: bool,
}

/// Istio's name of the cluster of `host`, of one of its subsets or of all its endpoints.
pub fn cluster_name(host: &str, subset: Option<&str>) -> String {
    let subset = subset.unwrap_or_default();
    format!("outbound|{SERVICE_PORT}|{subset}|{host}")
}

impl Service {
    /// Its clusters with their upstream: one per version's subset, or one for the service.
    fn clusters(&self) -> Vec<(String, SocketAddr)> {
        if self.in_rollout {
            self.versions
                .iter()
                .map(|(version, address)| {
                    let subset = subset_name(version);
                    (cluster_name(&self.host, Some(&subset)), *address)
                })
                .collect()
        } else {
            // Without subsets the service's cluster balances over all its endpoints; the
            // tests give such a service one version.
            self.versions
                .iter()
                .take(1)
                .map(|&(_, address)| (cluster_name(&self.host, None), address))
                .collect()
        }
    }

    /// Its virtual host: the routes of its versions, then the default route.
    fn virtual_host(&self) -> Value {
        let mut routes: Vec<Value> = Vec::new();
        if self.in_rollout {
            for (version, _) in &self.versions {
                let subset = subset_name(version);
                routes.push(json!({
                    "match": {
                        "prefix": "/",
                        "headers": [{
                            "name": DEFAULT_HEADER,
                            "string_match": { "exact": version },
                        }],
                    },
                    "route": { "cluster": cluster_name(&self.host, Some(&subset)) },
                }));
            }
        }
        let default = match self.versions.first() {
            Some((stable, _)) if self.in_rollout => {
                cluster_name(&self.host, Some(&subset_name(stable)))
            }
            _ => cluster_name(&self.host, None),
        };
        routes.push(json!({ "match": { "prefix": "/" }, "route": { "cluster": default } }));
        json!({ "name": self.host, "domains": [self.host], "routes": routes })
    }
}

/// The gateway's listener with the filter configured by `plugin_json`, unchecked (so tests can
/// push configurations the filter must refuse).
pub fn render_lds(services: &[Service], plugin_json: &str, layout: &EnvoyLayout) -> Value {
    let virtual_hosts: Vec<Value> = services.iter().map(Service::virtual_host).collect();
    render_listener(
        plugin_json,
        &layout.wasm_path,
        layout.listen_port,
        Value::from(virtual_hosts),
    )
}

/// The gateway's clusters.
pub fn render_cds(services: &[Service]) -> Value {
    let clusters: Vec<Value> = services
        .iter()
        .flat_map(Service::clusters)
        .map(|(name, address)| render_cluster(&name, address))
        .collect();
    json!({ "resources": clusters })
}

/// The gateway as an Envoy serves it; its readiness probe asks the first service.
pub fn site<'a>(services: &'a [Service], plugin_json: &'a str) -> Site<'a> {
    Site {
        upstreams: BTreeMap::new(),
        render: Box::new(move |layout: &EnvoyLayout| {
            Ok((
                render_lds(services, plugin_json, layout),
                render_cds(services),
            ))
        }),
        probe_host: services.first().map(|service| service.host.clone()),
    }
}

/// Upstreams for every version of every service and the Envoy in front of them, all stopped
/// when dropped.
pub struct Gateway {
    /// The Envoy.
    pub envoy: Envoy,
    /// The services it routes to.
    pub services: Vec<Service>,
    /// A client of the listener; renewed by [`Gateway::set_plugin_json`].
    pub http: Http,
    _upstreams: Vec<Upstream>,
}

impl Gateway {
    /// Starts an upstream (`upstream_bin`, the `sticky-upstream` binary) for every version of
    /// every service, given as (host, versions stable first, in a rollout), then Envoy with the
    /// filter configured by `plugin_json`.
    pub fn start(
        upstream_bin: &Path,
        services: &[(&str, &[&str], bool)],
        plugin_json: &str,
    ) -> Result<Gateway> {
        let mut upstreams = Vec::new();
        let mut described = Vec::new();
        for &(host, versions, in_rollout) in services {
            let mut addresses = Vec::new();
            for &version in versions {
                let upstream = Upstream::spawn(upstream_bin, version)?;
                addresses.push((version.to_owned(), upstream.address));
                upstreams.push(upstream);
            }
            described.push(Service {
                host: host.to_owned(),
                versions: addresses,
                in_rollout,
            });
        }
        let envoy = Envoy::start_site(&site(&described, plugin_json), EnvoyOptions::default())?;
        let http = Http::new(envoy.listener());
        Ok(Gateway {
            envoy,
            services: described,
            http,
            _upstreams: upstreams,
        })
    }

    /// The listener with the filter configured by `plugin_json`, unchecked.
    pub fn lds(&self, plugin_json: &str) -> Value {
        render_lds(&self.services, plugin_json, self.envoy.layout())
    }

    /// Reconfigures the filter live, waits until the listener serves the new configuration,
    /// and renews [`Gateway::http`] (kept-alive connections stay with the old listener).
    pub fn set_plugin_json(&mut self, plugin_json: &str) -> Result<()> {
        self.envoy.write_lds(&self.lds(plugin_json))?;
        self.envoy.wait_for_plugin_config(plugin_json)?;
        self.http = self.http.fresh();
        Ok(())
    }
}
