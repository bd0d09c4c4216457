//! The `StickyCanary` custom resource: one rollout of one service, in one place.
//!
//! The spec is the desired rollout (versions and weights, steps, filter settings, where the
//! plugin and routes go); the status says what was last applied and keeps a short history.
//! The filter's settings are the filter's own wire types ([`sticky_canary_filter::config`]),
//! so what the resource accepts and what the filter parses cannot drift; only their OpenAPI
//! schemas are written here (see [`schema`]), and a test checks them against the types.
//!
//! Owns the resource, its schema and the [`names`] derived from a version. No I/O and no
//! rules: what a command does to the spec is `rollout`'s. The analysis's evidence and
//! verdicts stored in the status are the `analysis` crate's own types (their constructors are
//! the analysis), which is why this crate sits above it.

#![deny(missing_docs)]

use std::collections::BTreeMap;

use jiff::Timestamp;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sticky_canary_filter::config::{
    CookieConfig, KeySource, OverrideConfig, Repin, DEFAULT_HEADER,
};
use sticky_canary_filter::{PluginConfig, VersionWeight};

pub mod names;
pub mod schema;
mod time;

/// API group of the resource.
pub const GROUP: &str = "stickycanary.io";
/// Annotation the CLI sets with the spec change it made, so the status history can say why.
pub const ACTION_ANNOTATION: &str = "stickycanary.io/last-action";
/// The canary steps used when the spec lists none: 1-5-10-20-50-80-100 percent.
pub const DEFAULT_STEPS: [f64; 7] = [1.0, 5.0, 10.0, 20.0, 50.0, 80.0, 100.0];
/// Pod label that tells versions apart when the spec does not name another.
pub const DEFAULT_VERSION_LABEL: &str = "version";
/// Where Istio loads the filter from when the spec gives no URL: the module mounted in the proxy.
pub const DEFAULT_PLUGIN_URL: &str = "file:///etc/istio-extensions/sticky_canary_filter.wasm";
/// Most history entries the status keeps; older ones are dropped first.
pub const HISTORY_LIMIT: usize = 20;

/// A sticky canary rollout of one service.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "stickycanary.io",
    version = "v1alpha1",
    kind = "StickyCanary",
    plural = "stickycanaries",
    shortname = "sc",
    namespaced,
    status = "StickyCanaryStatus",
    doc = "A sticky canary rollout: every client stays on one version of the service for the whole rollout."
)]
#[kube(printcolumn = r#"{"name":"Service","type":"string","jsonPath":".spec.service"}"#)]
#[kube(printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#)]
#[kube(printcolumn = r#"{"name":"Canary","type":"number","jsonPath":".status.canaryWeight"}"#)]
#[serde(rename_all = "camelCase")]
pub struct StickyCanarySpec {
    /// Host of the service, as in the VirtualService `hosts` and the DestinationRule `host`.
    pub service: String,
    /// Versions with their share of clients in percent; the first is stable, the second the canary.
    #[schemars(schema_with = "schema::versions")]
    pub versions: Vec<VersionWeight>,
    /// Canary weights `next` walks through, ascending.
    #[serde(default = "default_steps")]
    pub steps: Vec<f64>,
    /// A version on its way out after `promote` or `abort`: at weight 0 but still routed, so
    /// requests already stamped with it finish (after `promote` it drains: its clients keep it
    /// until their next page); `promote --finish` or `abort` removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retiring: Option<String>,
    /// The filter's per-request settings.
    #[serde(default)]
    pub filter: FilterSettings,
    /// Which Istio objects carry the routes.
    #[serde(default)]
    pub routing: Routing,
    /// Where and how Istio loads the filter.
    #[serde(default)]
    pub plugin: PluginPlacement,
    /// Whether and how the steps run themselves (`stickyctl auto on|off`).
    #[serde(default)]
    pub auto: AutoSpec,
    /// How each step is judged.
    #[serde(default)]
    pub analysis: analysis::AnalysisSpec,
    /// Holds automatic progression where it is (`stickyctl pause`, `stickyctl resume`);
    /// commands still work.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

/// Automatic progression: each step holds its weight for an interval, is judged (see
/// the `analysis` crate), then goes on, holds or rolls back.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoSpec {
    /// The steps run themselves.
    #[serde(default)]
    pub enabled: bool,
    /// How long each step holds its weight before it is judged, in seconds (a weight change
    /// takes about 20 s to reach Istio's proxies, and Prometheus scrapes every 15-30 s).
    #[serde(default = "default_interval")]
    pub interval_seconds: u32,
    /// Step weights the rollout does not enter by itself: it waits there for `stickyctl next`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<f64>,
    /// What happens after the last step passed.
    #[serde(default)]
    pub promotion: Promotion,
    /// How an automatic rollback sends the canary's clients back.
    #[serde(default)]
    pub rollback: RollbackMode,
    /// How long a step may stay inconclusive (too little evidence) before `onInconclusive`
    /// applies, in seconds.
    #[serde(default = "default_inconclusive_deadline")]
    pub inconclusive_deadline_seconds: u32,
    /// What an inconclusive step does at its deadline.
    #[serde(default)]
    pub on_inconclusive: OnInconclusive,
    /// URL notified (Slack-compatible JSON) of every step, hold, rollback and promotion:
    /// `https`, or plain `http` to a loopback host (or with `allowHttpWebhook`); never a
    /// link-local or cloud metadata address (the controller does not post to one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// Lets `webhook` be plain `http` to a host other than loopback (its notices and the
    /// URL's secret path then cross the network in clear).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_http_webhook: bool,
}

/// What happens after the last step passed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum Promotion {
    /// Wait for `stickyctl promote`.
    #[default]
    Gate,
    /// Promote by itself.
    Auto,
}

/// How a rollback sends the canary's clients back.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum RollbackMode {
    /// Everyone back to stable now, pages open on the canary included.
    #[default]
    Immediate,
    /// Nobody new reaches the canary; its clients keep it until their next page.
    Drain,
}

/// What an inconclusive step does at its deadline.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum OnInconclusive {
    /// Stay on the step, waiting for evidence or a person.
    #[default]
    Hold,
    /// Roll back.
    Rollback,
}

/// The filter's settings other than the versions, with the filter's own types and defaults.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FilterSettings {
    /// Request header stamped with the chosen version; the VirtualService matches on it.
    #[serde(default = "default_header")]
    pub header: String,
    /// Name and attributes of the pinning cookies.
    #[serde(default)]
    #[schemars(schema_with = "schema::cookie")]
    pub cookie: CookieConfig,
    /// The QA override header and its optional guard token.
    #[serde(default, rename = "override")]
    #[schemars(schema_with = "schema::override_")]
    pub override_: OverrideConfig,
    /// Where the client key comes from, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::key_sources")]
    pub key_sources: Vec<KeySource>,
    /// Hash salt; empty means the rollout's service, so two rollouts pick different canary clients.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub salt: String,
    /// When a pinned client is re-decided by hash.
    #[serde(default)]
    #[schemars(schema_with = "schema::repin")]
    pub repin: Repin,
    /// Keep an incoming version header (mesh-internal hops behind a gateway that decided).
    #[serde(default)]
    pub trust_incoming_header: bool,
}

/// The user's Istio objects the rollout edits.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Routing {
    /// Name of the VirtualService whose routes get the managed header routes; default: the rollout's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_service: Option<String>,
    /// Name of the DestinationRule that gets the managed subsets; default: the rollout's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_rule: Option<String>,
    /// Pod label whose value is the version name; default `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_label: Option<String>,
    /// Which API carries the routes. Absent: what routes the service today (a VirtualService
    /// named `virtualService`, else an HTTPRoute), recorded here by `init`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<RoutingApi>,
    /// Name of the HTTPRoute that gets the managed rules (HTTPRoute API); default: the
    /// rollout's name, else the one HTTPRoute of the namespace that routes to the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_route: Option<String>,
    /// Services the user already has, per version (HTTPRoute API: a backend has no subsets).
    /// A version not listed gets `<service>-<version>`, written and removed by stickyctl.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub version_services: BTreeMap<String, String>,
}

/// The API a rollout's routes are written in.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RoutingApi {
    /// Istio's VirtualService with header routes to DestinationRule subsets.
    VirtualService,
    /// Gateway API's HTTPRoute with header rules to one Service per version (Gateway API
    /// gateways, sidecars, ambient waypoints).
    #[serde(rename = "HTTPRoute")]
    HttpRoute,
}

impl RoutingApi {
    /// The kind's name, as in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            RoutingApi::VirtualService => "VirtualService",
            RoutingApi::HttpRoute => "HTTPRoute",
        }
    }
}

/// Where Istio loads the filter: the module URL and which proxies run it.
///
/// Every proxy group (a gateway, or callers' sidecars) runs one shared WasmPlugin that carries
/// every rollout placed on it (see `render::placement`), so a gateway serving dozens
/// of services runs the filter once per request, not once per rollout.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct PluginPlacement {
    /// `oci://...`, `https://...` or `file://...` URL of the filter module. Rollouts that share
    /// a proxy group share its WasmPlugin, so they must name the same module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// SHA-256 of the module, hex: for an `oci://` URL the image's (its manifest's) digest,
    /// as `crane push` prints it after `sha256:`. Istio's agent refuses a module that does not
    /// match. Rollouts that share a proxy group must name the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: Option<String>,
    /// Gateways that run the filter for requests to the service. Absent: the ingress gateway
    /// of the usual installation (`istio: ingressgateway` in `istio-system`), unless
    /// `selector` or `targetRefs` name a gateway of the rollout's namespace instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateways: Option<Vec<Proxies>>,
    /// Callers whose sidecars run the filter, on their client side, for their requests to the
    /// service (mesh-internal hops; see `filter.trustIncomingHeader`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sidecars: Vec<Proxies>,
    /// Pod labels of a gateway in the rollout's own namespace (a WasmPlugin selects only the
    /// workloads of its own namespace, unless it lives in the root namespace).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    /// Gateway API gateways of the rollout's namespace, instead of a selector.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<TargetRef>,
    /// The service's ambient waypoint runs the filter (HTTPRoute API; Istio 1.24+): a plugin
    /// in the service's namespace with `targetRefs` its Service, on the waypoint's server side.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub waypoint: bool,
}

/// A group of proxies: the workloads of one namespace with these labels.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Proxies {
    /// Namespace of the workloads. Default: `istio-system` for gateways, the rollout's own
    /// namespace for sidecars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Pod labels of the workloads; empty selects every workload of the namespace.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    /// Gateway API gateways of that namespace, instead of a selector (Istio 1.22+).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<TargetRef>,
}

/// A Gateway API object the plugin attaches to.
#[derive(
    Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    /// API group, e.g. `gateway.networking.k8s.io`.
    #[serde(default)]
    pub group: String,
    /// Kind, e.g. `Gateway`.
    pub kind: String,
    /// Object name.
    pub name: String,
}

/// Where a rollout stands, derived from the spec and the last action.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum Phase {
    /// One version, no change under way.
    #[default]
    Stable,
    /// A canary is live next to stable.
    Progressing,
    /// Promote switched every client to the new stable; the old version drains until
    /// `promote --finish` removes it.
    Promoting,
    /// The canary became the only version.
    Promoted,
    /// Abort sent every client back to stable; the canary is being removed.
    Aborting,
    /// The canary was removed; stable is the only version.
    Aborted,
    /// The analysis failed the canary and sent its clients back to stable (`status.message`
    /// says why); the canary is removed once nobody is on it.
    RolledBack,
}

/// What was last applied to the proxies and when.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct StickyCanaryStatus {
    /// Where the rollout stands.
    #[serde(default)]
    pub phase: Phase,
    /// The canary's weight in percent (0 without a canary).
    #[serde(default)]
    pub canary_weight: f64,
    /// Index in `spec.steps` of the canary weight, when it is on a step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_index: Option<u32>,
    /// The spec generation the applied objects come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The last applied desired state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied: Option<Applied>,
    /// Applied changes, oldest first, at most [`HISTORY_LIMIT`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    /// The current step of an automatic rollout: when it started and its evidence so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepStatus>,
    /// Verdicts of the steps judged so far, oldest first, at most [`HISTORY_LIMIT`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<StepVerdict>,
    /// Why the rollout stands where it does, in words (a hold, a rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The step an automatic rollout is on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepStatus {
    /// The canary weight of the step, in percent.
    pub weight: f64,
    /// When the weight was set (RFC 3339).
    #[serde(deserialize_with = "time::step_started")]
    #[schemars(with = "String")]
    pub started: Timestamp,
    /// What the step waits for, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    /// Counts since the step started, from the metrics; absent until the first look.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<analysis::Evidence>,
    /// The judgement at the last look.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<analysis::Verdict>,
}

/// What a step waits for.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Waiting {
    /// A gate: `stickyctl next` enters the next step.
    Gate,
    /// The last step passed: `stickyctl promote` finishes.
    Promotion,
    /// Too little evidence at the deadline: held until evidence or a person comes.
    Evidence,
    /// `stickyctl pause`: `stickyctl resume` goes on.
    Resume,
}

/// The verdict a judged step ended with.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepVerdict {
    /// The canary weight of the step, in percent.
    pub weight: f64,
    /// When the step started and when it was judged (RFC 3339).
    #[serde(deserialize_with = "time::verdict_started")]
    #[schemars(with = "String")]
    pub started: Timestamp,
    /// When it was judged.
    #[serde(deserialize_with = "time::verdict_judged")]
    #[schemars(with = "String")]
    pub judged: Timestamp,
    /// The verdict, with its numbers and reasons.
    pub verdict: analysis::Verdict,
}

/// One applied desired state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    /// Hash of the rendered objects, to tell "nothing changed" from a change.
    pub hash: String,
    /// Spec generation it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// When it was applied (RFC 3339).
    #[serde(deserialize_with = "time::applied")]
    #[schemars(with = "String")]
    pub time: Timestamp,
}

/// One applied change.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// When it was applied (RFC 3339).
    #[serde(deserialize_with = "time::history")]
    #[schemars(with = "String")]
    pub time: Timestamp,
    /// The command that made it, e.g. `set-weight 10`.
    pub action: String,
    /// Versions and weights after it, e.g. `v1=90 v2=10`.
    pub versions: String,
}

/// The CRD as YAML: what `stickyctl crd` prints and `istio/stickycanary-crd.yaml` holds.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    // A CRD is plain data; serializing it cannot fail.
    let yaml = serde_norway::to_string(&StickyCanary::crd()).expect("the CRD serializes to YAML");
    format!("# Generated by `stickyctl crd`; do not edit.\n{yaml}")
}

fn default_steps() -> Vec<f64> {
    DEFAULT_STEPS.to_vec()
}

fn default_interval() -> u32 {
    60
}

fn default_inconclusive_deadline() -> u32 {
    600
}

impl Default for AutoSpec {
    fn default() -> Self {
        AutoSpec {
            enabled: false,
            interval_seconds: default_interval(),
            gates: Vec::new(),
            promotion: Promotion::default(),
            rollback: RollbackMode::default(),
            inconclusive_deadline_seconds: default_inconclusive_deadline(),
            on_inconclusive: OnInconclusive::default(),
            webhook: None,
            allow_http_webhook: false,
        }
    }
}

fn default_header() -> String {
    DEFAULT_HEADER.to_owned()
}

impl Default for FilterSettings {
    fn default() -> Self {
        let plugin = PluginConfig::new(Vec::new());
        FilterSettings {
            header: plugin.header,
            cookie: plugin.cookie,
            override_: plugin.override_,
            key_sources: plugin.key_sources,
            salt: plugin.salt,
            repin: plugin.repin,
            trust_incoming_header: plugin.trust_incoming_header,
        }
    }
}

impl StickyCanarySpec {
    /// A rollout of `service` with `stable` as its only version and every other setting at its default.
    pub fn new(service: &str, stable: &str) -> Self {
        StickyCanarySpec {
            service: service.to_owned(),
            versions: vec![VersionWeight::new(stable, 100.0)],
            steps: default_steps(),
            retiring: None,
            filter: FilterSettings::default(),
            routing: Routing::default(),
            plugin: PluginPlacement::default(),
            auto: AutoSpec::default(),
            analysis: analysis::AnalysisSpec::default(),
            paused: false,
        }
    }

    /// The stable version: the first one.
    pub fn stable(&self) -> Option<&VersionWeight> {
        self.versions.first()
    }

    /// The canary: the second version, unless it is the one retiring.
    pub fn canary(&self) -> Option<&VersionWeight> {
        self.versions
            .get(1)
            .filter(|v| self.retiring.as_deref() != Some(v.name.as_str()))
    }

    /// The filter's configuration for this rollout; the one value the WasmPlugin, the Envoy
    /// files and `explain` all use.
    pub fn plugin_config(&self) -> PluginConfig {
        let f = &self.filter;
        PluginConfig {
            versions: self.versions.clone(),
            header: f.header.clone(),
            cookie: f.cookie.clone(),
            override_: f.override_.clone(),
            key_sources: f.key_sources.clone(),
            salt: if f.salt.is_empty() {
                self.service.clone()
            } else {
                f.salt.clone()
            },
            repin: f.repin,
            trust_incoming_header: f.trust_incoming_header,
            // The seal is the rollout object's, not the spec's: see `render::seal`.
            seal: None,
        }
    }

    /// Pod label that selects a version's pods.
    pub fn version_label(&self) -> &str {
        self.routing
            .version_label
            .as_deref()
            .unwrap_or(DEFAULT_VERSION_LABEL)
    }

    /// Name of the Service of `version` on the HTTPRoute API: the one the user names, else
    /// `<service>-<version>` with the service's short name.
    pub fn version_service(&self, version: &str) -> String {
        self.routing
            .version_services
            .get(version)
            .cloned()
            .unwrap_or_else(|| {
                let short = self.service.split('.').next().unwrap_or(&self.service);
                names::version_service_name(short, version)
            })
    }

    /// Versions and weights as one line, e.g. `v1=90 v2=10`.
    pub fn summary(&self) -> String {
        self.versions
            .iter()
            .map(|v| format!("{}={}", v.name, v.weight))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn crd_names_the_resource() {
        let crd = StickyCanary::crd();
        assert_eq!(crd.spec.group, GROUP);
        assert_eq!(crd.spec.names.plural, "stickycanaries");
        assert_eq!(crd.spec.names.short_names, Some(vec!["sc".to_owned()]));
        assert_eq!(crd.spec.scope, "Namespaced");
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(version.subresources.as_ref().unwrap().status.is_some());
    }

    /// Kubernetes takes only structural schemas: `items` one schema, never a tuple's list.
    #[test]
    fn crd_schema_is_structural() {
        fn walk(path: &str, value: &serde_json::Value, bad: &mut Vec<String>) {
            match value {
                serde_json::Value::Object(map) => {
                    for (key, child) in map {
                        if key == "items" && child.is_array() {
                            bad.push(path.to_owned());
                        }
                        walk(&format!("{path}.{key}"), child, bad);
                    }
                }
                serde_json::Value::Array(items) => {
                    for (i, child) in items.iter().enumerate() {
                        walk(&format!("{path}[{i}]"), child, bad);
                    }
                }
                _ => {}
            }
        }
        let crd = serde_json::to_value(StickyCanary::crd()).unwrap();
        let mut bad = Vec::new();
        walk("", &crd, &mut bad);
        assert!(bad.is_empty(), "tuple schemas at {bad:?}");
    }

    #[test]
    fn shipped_crd_is_the_generated_one() {
        let shipped = include_str!("../../../istio/stickycanary-crd.yaml");
        assert!(
            shipped == crd_yaml(),
            "istio/stickycanary-crd.yaml is stale: regenerate it with `stickyctl crd > istio/stickycanary-crd.yaml`"
        );
    }

    #[test]
    fn the_charts_crd_is_the_generated_one() {
        let shipped = include_str!("../../../charts/sticky-canary/crds/stickycanary-crd.yaml");
        assert!(
            shipped == crd_yaml(),
            "charts/sticky-canary/crds/stickycanary-crd.yaml is stale: regenerate it with `stickyctl crd > charts/sticky-canary/crds/stickycanary-crd.yaml`"
        );
    }

    #[test]
    fn minimal_spec_gets_defaults() {
        let spec: StickyCanarySpec = serde_json::from_value(serde_json::json!({
            "service": "shop", "versions": [{"name": "v1", "weight": 100}]
        }))
        .unwrap();
        assert_eq!(spec, StickyCanarySpec::new("shop", "v1"));
        assert_eq!(spec.steps, DEFAULT_STEPS);
        assert_eq!(spec.version_label(), "version");
        let plugin = spec.plugin_config();
        assert_eq!(plugin.salt, "shop");
        assert!(plugin.validate().is_ok());
    }

    #[test]
    fn canary_is_the_second_version_unless_retiring() {
        let mut spec = StickyCanarySpec::new("shop", "v1");
        assert!(spec.canary().is_none());
        spec.versions.push(VersionWeight::new("v2", 0.0));
        assert_eq!(spec.canary().unwrap().name, "v2");
        spec.retiring = Some("v2".into());
        assert!(spec.canary().is_none());
        assert_eq!(spec.summary(), "v1=100 v2=0");
    }

    /// A status as the version that kept its times as text wrote it (`Timestamp::to_string`,
    /// with and without fractional seconds) reads back and is written again byte for byte.
    #[test]
    fn a_status_written_with_text_times_reads_and_writes_back_the_same() {
        let stored = r#"{"phase":"Progressing","canaryWeight":5.0,"stepIndex":1,"observedGeneration":4,"lastApplied":{"hash":"00ff00ff00ff00ff","generation":4,"time":"2026-05-04T09:30:12.123456789Z"},"history":[{"time":"2026-05-04T09:00:00Z","action":"start v2","versions":"v1=100 v2=0"},{"time":"2026-05-04T09:30:12.5Z","action":"dashboard: next 5","versions":"v1=95 v2=5"}],"step":{"weight":5.0,"started":"2026-05-04T09:30:12.123456789Z","waiting":"Gate"},"message":"held"}"#;
        let status: StickyCanaryStatus = serde_json::from_str(stored).unwrap();
        let step = status.step.as_ref().unwrap();
        assert_eq!(
            step.started,
            Timestamp::new(1_777_887_012, 123_456_789).unwrap()
        );
        assert_eq!(
            status.history[0].time,
            Timestamp::from_second(1_777_885_200).unwrap()
        );
        assert_eq!(serde_json::to_string(&status).unwrap(), stored);
    }

    #[test]
    fn an_unreadable_time_is_refused_naming_its_field() {
        let status = serde_json::json!({"step": {"weight": 5.0, "started": "yesterday"}});
        let err = serde_json::from_value::<StickyCanaryStatus>(status).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("status.step.started: \"yesterday\" is not an RFC 3339 time"),
            "{err}"
        );
        let history =
            serde_json::json!({"history": [{"time": "", "action": "a", "versions": "v1=100"}]});
        let err = serde_json::from_value::<StickyCanaryStatus>(history).unwrap_err();
        assert!(
            err.to_string().starts_with("status.history[].time: "),
            "{err}"
        );
    }

    #[test]
    fn explicit_salt_wins() {
        let mut spec = StickyCanarySpec::new("shop", "v1");
        spec.filter.salt = "s".into();
        assert_eq!(spec.plugin_config().salt, "s");
    }
}
