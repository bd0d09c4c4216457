//! Which proxies run the filter for a rollout, and which shared WasmPlugin carries it there.
//!
//! Istio applies a WasmPlugin's `selector` only to the workloads of the WasmPlugin's own
//! namespace (the root namespace, `istio-system`, reaching every namespace), so a rollout's
//! filter must live where its proxies are: the ingress gateway's namespace, or the callers'.
//! And a gateway serves many services: one WasmPlugin per proxy group carries every rollout
//! placed there, and the filter picks a request's rollout by the cluster Envoy routed it to,
//! so N rollouts cost one filter and one lookup per request, not N filters.

use std::collections::BTreeMap;
use std::fmt;

use sticky_canary_filter::config::{TokenDigest, DEFAULT_COOKIE};
use sticky_canary_filter::guard;
use sticky_canary_filter::PluginConfig;
use xxhash_rust::xxh64::xxh64;

use api::{Proxies, StickyCanarySpec, TargetRef};

/// Where the ingress gateway runs in the usual Istio installation.
pub const DEFAULT_GATEWAY_NAMESPACE: &str = "istio-system";
/// The usual ingress gateway's pod labels.
pub const DEFAULT_GATEWAY_SELECTOR: (&str, &str) = ("istio", "ingressgateway");
/// Longest Kubernetes object name the plugin names may use.
const MAX_NAME: usize = 63;

/// Which side of the proxies the filter runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// A gateway: every request it routes.
    Gateway,
    /// Sidecars, on their client side only (`match: [{mode: CLIENT}]`): the calls their
    /// workload makes, where routing to the callee's versions happens; never inbound.
    Sidecar,
    /// The service's ambient waypoint, attached by `targetRefs` kind Service. A waypoint builds
    /// its HTTP filters as a sidecar's inbound (server) side, so no `match` is written:
    /// `CLIENT` would leave it without the filter. Like a gateway, it trusts no incoming stamp.
    Waypoint,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Side::Gateway => "gateway",
            Side::Sidecar => "sidecar",
            Side::Waypoint => "waypoint",
        }
    }
}

/// One proxy group the filter runs on: the key of a shared WasmPlugin.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Placement {
    /// Gateway or sidecars.
    pub side: Side,
    /// Namespace of the proxies, where their WasmPlugin lives.
    pub namespace: String,
    /// Pod labels of the proxies (empty: every workload of the namespace).
    pub selector: BTreeMap<String, String>,
    /// Gateway API targets instead of a selector.
    pub target_refs: Vec<TargetRef>,
}

impl Placement {
    /// Name of the shared WasmPlugin of this group, e.g. `sticky-canary-gateway-istio-ingressgateway`:
    /// readable labels, with a short hash of the group when the labels had to be shortened or
    /// spelled differently to make a name, so different groups never share a name.
    pub fn plugin_name(&self) -> String {
        let words: Vec<String> = if self.target_refs.is_empty() {
            self.selector
                .iter()
                .flat_map(|(k, v)| [k.clone(), v.clone()])
                .collect()
        } else {
            self.target_refs
                .iter()
                .flat_map(|t| [t.kind.clone(), t.name.clone()])
                .collect()
        };
        let raw = if words.is_empty() {
            "all".to_owned()
        } else {
            words.join("-")
        };
        let slug: String = raw
            .chars()
            .map(|c| match c.to_ascii_lowercase() {
                c @ ('a'..='z' | '0'..='9' | '-') => c,
                _ => '-',
            })
            .collect();
        let base = format!("sticky-canary-{}-{}", self.side.as_str(), slug);
        if slug == raw && base.len() <= MAX_NAME {
            return base;
        }
        let hash = format!("{:08x}", xxh64(self.to_string().as_bytes(), 0) as u32);
        let keep = MAX_NAME - hash.len() - 1;
        let trimmed = base[..base.len().min(keep)].trim_end_matches('-');
        format!("{trimmed}-{hash}")
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in {}", self.side.as_str(), self.namespace)?;
        for (key, value) in &self.selector {
            write!(f, " {key}={value}")?;
        }
        for target in &self.target_refs {
            write!(f, " {}/{}", target.kind, target.name)?;
        }
        Ok(())
    }
}

/// The proxy groups rollout `spec` of `namespace` runs on, without duplicates, in order.
pub fn placements(namespace: &str, spec: &StickyCanarySpec) -> Vec<Placement> {
    let plugin = &spec.plugin;
    let group = |side, proxies: &Proxies, default_ns: &str| Placement {
        side,
        namespace: proxies
            .namespace
            .clone()
            .unwrap_or_else(|| default_ns.to_owned()),
        selector: proxies.selector.clone(),
        target_refs: proxies.target_refs.clone(),
    };
    let mut out: Vec<Placement> = match &plugin.gateways {
        Some(gateways) => gateways
            .iter()
            .map(|g| group(Side::Gateway, g, DEFAULT_GATEWAY_NAMESPACE))
            .collect(),
        None if plugin.selector.is_empty() && plugin.target_refs.is_empty() && !plugin.waypoint => {
            vec![Placement {
                side: Side::Gateway,
                namespace: DEFAULT_GATEWAY_NAMESPACE.to_owned(),
                selector: BTreeMap::from([(
                    DEFAULT_GATEWAY_SELECTOR.0.to_owned(),
                    DEFAULT_GATEWAY_SELECTOR.1.to_owned(),
                )]),
                target_refs: Vec::new(),
            }]
        }
        None => Vec::new(),
    };
    if !plugin.selector.is_empty() || !plugin.target_refs.is_empty() {
        out.push(Placement {
            side: Side::Gateway,
            namespace: namespace.to_owned(),
            selector: plugin.selector.clone(),
            target_refs: plugin.target_refs.clone(),
        });
    }
    out.extend(
        plugin
            .sidecars
            .iter()
            .map(|s| group(Side::Sidecar, s, namespace)),
    );
    if plugin.waypoint {
        // Istio attaches a Service target only from the Service's own namespace.
        let mut parts = spec.service.split('.');
        let name = parts.next().unwrap_or_default();
        out.push(Placement {
            side: Side::Waypoint,
            namespace: parts.next().unwrap_or(namespace).to_owned(),
            selector: BTreeMap::new(),
            target_refs: vec![TargetRef {
                group: String::new(),
                kind: "Service".to_owned(),
                name: name.to_owned(),
            }],
        });
    }
    out.sort();
    out.dedup();
    out
}

/// The filter configuration of rollout `rollout` of `namespace` in the shared plugin of a
/// group on `side`: the spec's, with
/// - the pinning cookie named after the rollout when the spec keeps the default name, since
///   rollouts sharing a gateway can share a host (`/` and `/api`) and must never read each
///   other's pins (the id cookie stays shared: one client, one id);
/// - `trustIncomingHeader` only on sidecars: a gateway is where clients from outside come in,
///   and a header they send must never choose their version;
/// - the rollout's route `seal`, when it has one.
pub fn plugin_config(
    namespace: &str,
    rollout: &str,
    spec: &StickyCanarySpec,
    side: Side,
    seal: Option<&str>,
) -> PluginConfig {
    let mut config = spec.plugin_config();
    if config.cookie.name == DEFAULT_COOKIE {
        config.cookie.name = format!("{DEFAULT_COOKIE}.{namespace}.{rollout}");
    }
    config.trust_incoming_header &= side == Side::Sidecar;
    config.seal = seal.map(str::to_owned);
    digest_clear_token(&mut config, &rollout_key(namespace, rollout));
    config
}

/// Replaces an override token the spec holds in clear (written before digests, or by hand)
/// with its digest, under a key of rollout `rollout` (its [`rollout_key`]), so the proxies'
/// configuration never holds the token itself.
pub fn digest_clear_token(config: &mut PluginConfig, rollout: &str) {
    if let Some(token) = config.override_.token.take() {
        let key = guard::digest(b"sticky-canary override key", rollout.as_bytes());
        config.override_.token_digest = Some(TokenDigest::of(&token, &key[..16]));
    }
}

/// The rollout's name as the shared plugin and the filter's metrics know it.
pub fn rollout_key(namespace: &str, rollout: &str) -> String {
    format!("{namespace}/{rollout}")
}

/// The service host as Istio names the clusters of a destination host written in a
/// VirtualService of `namespace`: a short name is that namespace's service.
pub fn service_fqdn(service: &str, namespace: &str) -> String {
    if service.contains('.') {
        service.to_owned()
    } else {
        format!("{service}.{namespace}.svc.cluster.local")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn default_is_the_ingress_gateway_in_istio_system() {
        let spec = StickyCanarySpec::new("shop", "v1");
        let p = placements("prod", &spec);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].side, Side::Gateway);
        assert_eq!(p[0].namespace, "istio-system");
        assert_eq!(p[0].selector, labels(&[("istio", "ingressgateway")]));
        assert_eq!(
            p[0].plugin_name(),
            "sticky-canary-gateway-istio-ingressgateway"
        );
    }

    #[test]
    fn a_selector_of_the_rollout_names_a_gateway_of_its_namespace() {
        let mut spec = StickyCanarySpec::new("shop", "v1");
        spec.plugin.selector = labels(&[("app", "shop-gateway")]);
        let p = placements("prod", &spec);
        assert_eq!(p.len(), 1, "the default gateway gives way: {p:?}");
        assert_eq!(
            (p[0].side, p[0].namespace.as_str()),
            (Side::Gateway, "prod")
        );
    }

    #[test]
    fn gateways_and_sidecars_are_listed_once_each() {
        let mut spec = StickyCanarySpec::new("shop", "v1");
        let gw = Proxies {
            namespace: None,
            selector: labels(&[("istio", "ingressgateway")]),
            ..Default::default()
        };
        spec.plugin.gateways = Some(vec![gw.clone(), gw]);
        spec.plugin.sidecars = vec![
            Proxies {
                namespace: None,
                selector: labels(&[("app", "web")]),
                ..Default::default()
            },
            Proxies {
                namespace: Some("web".into()),
                selector: BTreeMap::new(),
                ..Default::default()
            },
        ];
        let p = placements("prod", &spec);
        let shown: Vec<String> = p.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "gateway in istio-system istio=ingressgateway",
                "sidecar in prod app=web",
                "sidecar in web"
            ]
        );
        assert_eq!(p[1].plugin_name(), "sticky-canary-sidecar-app-web");
        assert_eq!(p[2].plugin_name(), "sticky-canary-sidecar-all");
        spec.plugin.gateways = Some(Vec::new());
        assert_eq!(placements("prod", &spec).len(), 2, "no gateway at all");
    }

    #[test]
    fn names_that_needed_spelling_carry_a_hash_and_stay_distinct() {
        let group = |key: &str| Placement {
            side: Side::Gateway,
            namespace: "istio-system".into(),
            selector: labels(&[(key, "gw")]),
            target_refs: Vec::new(),
        };
        let dotted = group("app.kubernetes.io/name").plugin_name();
        let dashed = group("app-kubernetes-io-name").plugin_name();
        assert_eq!(dashed, "sticky-canary-gateway-app-kubernetes-io-name-gw");
        assert!(
            dotted.starts_with("sticky-canary-gateway-app-kubernetes-io-name-gw-"),
            "{dotted}"
        );
        assert_ne!(dotted, dashed);
        let long = group(&"x".repeat(80)).plugin_name();
        assert!(long.len() <= MAX_NAME, "{long}");
        assert_ne!(long, group(&"x".repeat(81)).plugin_name());
    }

    #[test]
    fn short_service_names_are_the_namespaces_service() {
        assert_eq!(service_fqdn("shop", "prod"), "shop.prod.svc.cluster.local");
        assert_eq!(
            service_fqdn("shop.prod.svc.cluster.local", "x"),
            "shop.prod.svc.cluster.local"
        );
        assert_eq!(rollout_key("prod", "shop"), "prod/shop");
    }

    #[test]
    fn the_pin_cookie_is_the_rollouts_own_unless_named() {
        let mut spec = StickyCanarySpec::new("shop", "v1");
        let config =
            |spec: &StickyCanarySpec| plugin_config("prod", "shop", spec, Side::Gateway, None);
        assert_eq!(config(&spec).cookie.name, "sticky-version.prod.shop");
        assert_eq!(config(&spec).cookie.id_name, "sticky-id");
        assert!(config(&spec).validate().is_ok());
        spec.filter.cookie.name = "shop-pin".into();
        assert_eq!(config(&spec).cookie.name, "shop-pin");
    }

    #[test]
    fn a_token_in_clear_reaches_the_proxies_as_its_digest() {
        let mut spec = StickyCanarySpec::new("shop", "v1");
        spec.filter.override_.token = Some("s3cret".into());
        let config = plugin_config("prod", "shop", &spec, Side::Gateway, None);
        assert_eq!(config.override_.token, None);
        assert!(!serde_json::to_string(&config).unwrap().contains("s3cret"));
        let compiled = sticky_canary_filter::Config::compile(config).unwrap();
        assert_eq!(compiled.guard.admit(b"v1:s3cret"), Some(&b"v1"[..]));
        assert_eq!(compiled.guard.admit(b"v1:other"), None);
    }

    #[test]
    fn only_sidecars_trust_an_incoming_header_and_every_side_is_sealed() {
        let mut spec = StickyCanarySpec::new("shop", "v1");
        spec.filter.trust_incoming_header = true;
        let seal = Some("0123456789abcdef");
        let gateway = plugin_config("prod", "shop", &spec, Side::Gateway, seal);
        let sidecar = plugin_config("prod", "shop", &spec, Side::Sidecar, seal);
        assert!(!gateway.trust_incoming_header, "a gateway never trusts");
        assert!(sidecar.trust_incoming_header);
        assert_eq!(gateway.seal.as_deref(), seal);
        assert_eq!(sidecar.seal.as_deref(), seal);
        spec.filter.trust_incoming_header = false;
        assert!(!plugin_config("prod", "shop", &spec, Side::Sidecar, seal).trust_incoming_header);
    }
}
