//! The proxy-wasm shell: host calls around the pure [`crate::decision`] and
//! [`crate::rollouts`].
//!
//! One root context per worker holds the validated configuration and the counter ids; one
//! small HTTP context per request finds its rollout, decides on request headers and sets
//! cookies on the response.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};

use crate::decision::{self, Reason, RequestHeaders};
use crate::ids::Ids;
use crate::metrics;
use crate::rollouts::{Rollout, Rollouts};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// The property path of the name of the cluster Envoy routed the request to. The route is
/// resolved before the filter runs (Istio's AUTHZ phase, and before the router on a plain
/// Envoy), so at request headers time this is the service the request is for. Envoy 1.40
/// answers `xds.cluster_name` then, from the route; the older top-level `cluster_name` is not
/// found until the router has picked an upstream host (checked against Envoy 1.40: see the
/// e2e test `gateway`).
const CLUSTER_NAME: [&str; 2] = ["xds", "cluster_name"];

/// What every request of one configuration shares.
struct Active {
    rollouts: Rollouts,
    /// Counter ids per rollout, indexed by `version * Reason::ALL.len() + reason`.
    counters: Vec<Vec<u32>>,
}

impl Active {
    /// Validates the configuration, defines its counters and sets its weight gauges; the error
    /// is the log line's text.
    fn new(json: &[u8]) -> Result<Self, String> {
        let rollouts = Rollouts::from_json(json)
            .map_err(|err| format!("invalid plugin configuration: {err}"))?;
        let mut counters = Vec::with_capacity(rollouts.rollouts().len());
        for rollout in rollouts.rollouts() {
            counters.push(define_counters(rollout)?);
            set_weights(rollout)?;
        }
        Ok(Active { rollouts, counters })
    }

    fn counter(&self, rollout: usize, version: usize, reason: Reason) -> Option<u32> {
        let reason = Reason::ALL.iter().position(|&r| r == reason)?;
        self.counters
            .get(rollout)?
            .get(version * Reason::ALL.len() + reason)
            .copied()
    }
}

fn define(kind: MetricType, metric: &str) -> Result<u32, String> {
    proxy_wasm::hostcalls::define_metric(kind, metric)
        .map_err(|status| format!("cannot define metric {metric}: {status:?}"))
}

/// Defines a rollout's counters: one per version and reason.
fn define_counters(rollout: &Rollout) -> Result<Vec<u32>, String> {
    let names = &rollout.config.names;
    let mut counters = Vec::with_capacity(names.len() * Reason::ALL.len());
    for version in names {
        for reason in Reason::ALL {
            let metric = metrics::decision_counter(rollout.name.as_deref(), version, reason);
            counters.push(define(MetricType::Counter, &metric)?);
        }
    }
    Ok(counters)
}

/// Sets a rollout's weight gauges to the weights it runs with, one per version. A new
/// configuration is a new plugin instance in Envoy (and Istio), which sets them again; a
/// version that left keeps its last value, and a proxy that no longer runs the filter keeps
/// the weight it last applied, so a check against a newer weight names it.
fn set_weights(rollout: &Rollout) -> Result<(), String> {
    let config = &rollout.config;
    for (version, &basis_points) in config.names.iter().zip(&config.basis_points) {
        let metric = metrics::weight_gauge(rollout.name.as_deref(), version);
        let id = define(MetricType::Gauge, &metric)?;
        proxy_wasm::hostcalls::record_metric(id, u64::from(basis_points))
            .map_err(|status| format!("cannot set metric {metric}: {status:?}"))?;
    }
    Ok(())
}

#[derive(Default)]
struct Root {
    active: Option<Rc<Active>>,
    ids: Rc<IdMint>,
}

impl Context for Root {}

impl RootContext for Root {
    /// Refusing (returning false) makes Envoy reject the configuration and keep the last good one.
    fn on_configure(&mut self, _size: usize) -> bool {
        let json = self.get_plugin_configuration().unwrap_or_default();
        match Active::new(&json) {
            Ok(active) => {
                self.active = Some(Rc::new(active));
                true
            }
            Err(message) => {
                proxy_wasm::hostcalls::log(LogLevel::Error, &format!("sticky-canary: {message}"))
                    .ok();
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            active: self.active.clone(),
            ids: self.ids.clone(),
            set_cookies: Vec::new(),
        }))
    }
}

/// One request: decides on the request headers, then sets cookies on the response.
struct Request {
    active: Option<Rc<Active>>,
    ids: Rc<IdMint>,
    set_cookies: Vec<String>,
}

impl Context for Request {}

/// Reads request headers from the host; non-UTF-8 values stay bytes for the pure code to judge.
struct HostHeaders<'a>(&'a Request);

impl RequestHeaders for HostHeaders<'_> {
    fn header(&self, name: &str) -> Option<Vec<u8>> {
        self.0.get_http_request_header_bytes(name)
    }
}

/// Mints client ids ([`Ids`]), keyed once per VM with the host's entropy (WASI `random_get`).
/// Asking the host for every id cost a host call per new client, about 5,400 Envoy
/// instructions. Ids only spread clients over buckets, so should the host ever fail to provide
/// entropy the filter still serves, from a fixed key, with a warning.
#[derive(Default)]
struct IdMint(RefCell<Option<Ids>>);

impl IdMint {
    fn mint(&self) -> String {
        let mut ids = self.0.borrow_mut();
        ids.get_or_insert_with(|| {
            let mut key = [0u8; 16];
            if getrandom::fill(&mut key).is_err() {
                proxy_wasm::hostcalls::log(
                    LogLevel::Warn,
                    "sticky-canary: no entropy from the host",
                )
                .ok();
            }
            Ids::new(key)
        })
        .next_id()
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let Some(active) = self.active.clone() else {
            return Action::Continue;
        };
        // A property that cannot be read counts as absent: no rollout, the request untouched.
        let cluster_name = || {
            proxy_wasm::hostcalls::get_property(CLUSTER_NAME.to_vec())
                .ok()
                .flatten()
        };
        let Some((index, rollout)) = active.rollouts.select(cluster_name) else {
            return Action::Continue;
        };
        let config = &rollout.config;
        let decision = decision::decide(config, &HostHeaders(self), || self.ids.mint());
        let version = &config.names[decision.version];
        if decision.stamps_header(config) {
            self.set_http_request_header(&config.header, Some(&config.stamps[decision.version]));
        }
        if decision.strips_override {
            self.set_http_request_header(&config.override_header, None);
        }
        if decision.set_version_cookie {
            self.set_cookies
                .push(config.set_cookie(&config.plugin.cookie.name, version));
        }
        if let Some(id) = &decision.minted_id {
            self.set_cookies
                .push(config.set_cookie(&config.plugin.cookie.id_name, id));
        }
        if let Some(counter) = active.counter(index, decision.version, decision.reason) {
            proxy_wasm::hostcalls::increment_metric(counter, 1).ok();
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        for cookie in std::mem::take(&mut self.set_cookies) {
            self.add_http_response_header("set-cookie", &cookie);
        }
        Action::Continue
    }
}
