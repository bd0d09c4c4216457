//! Many rollouts in one filter: one Istio ingress gateway serves dozens of services, and one
//! WasmPlugin per gateway carries every rollout that runs there.
//!
//! [`FilterConfig`] is the wire form of a whole `pluginConfig`: either the single-rollout
//! [`PluginConfig`], which applies to every request as it always has, or
//! `{"rollouts": [...]}`, where each rollout names the services it applies to.
//! [`Rollouts`] is the compiled form the filter keeps. Per request it finds the rollout of the
//! service Envoy routed the request to, from the cluster's name, with one hash-map lookup
//! whatever the number of rollouts; a request to any other service is left alone.

use serde::Serialize;
use xxhash_rust::xxh64::xxh64;

use crate::config::{Config, ConfigError, CookieConfig, PluginConfig};
use crate::rollouts_json::{self, RolloutConfig, RolloutsConfig};
use crate::{metrics, names};

/// The wire form of a whole `pluginConfig`: one rollout for every request, or rollouts by
/// service. Serialized, each form is exactly its JSON object (no tag).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
// One value per configuration, moved once into the compiled form: boxing the larger variant
// would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum FilterConfig {
    /// `{"versions": [...], ...}`: one rollout, applied to every request through the proxy.
    Single(PluginConfig),
    /// `{"rollouts": [...]}`: each request is decided by the rollout of its service, if any.
    Rollouts(RolloutsConfig),
}

/// Whether a `pluginConfig` is the multi-rollout form: a JSON object whose first field is
/// `rollouts`. The first key is enough to tell: the multi-rollout form has no other field, and
/// the single form refuses `rollouts` as unknown. (A scan rather than a serde probe: a probe
/// would link serde_json's value-skipping code, 6 KB of the `.wasm`.) JSON whitespace is
/// skipped even inside the key, which only changes which form's parser refuses a key such as
/// `"roll outs"` that neither form accepts.
fn is_rollouts_form(json: &[u8]) -> bool {
    json.iter()
        .filter(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .take(ROLLOUTS_FORM.len())
        .eq(ROLLOUTS_FORM)
}

/// How the multi-rollout form begins, without whitespace.
const ROLLOUTS_FORM: &[u8] = b"{\"rollouts\":";

impl FilterConfig {
    /// Parses either form, naming the offending field with its full path on error.
    pub fn from_json(json: &[u8]) -> Result<Self, ConfigError> {
        if is_rollouts_form(json) {
            rollouts_json::parse(json).map(FilterConfig::Rollouts)
        } else {
            // Malformed JSON included, so errors read exactly as they always have.
            PluginConfig::from_json(json).map(FilterConfig::Single)
        }
    }

    /// Checks every rule the filter relies on, as `on_configure` will.
    pub fn validate(&self) -> Result<(), ConfigError> {
        Rollouts::compile(self.clone()).map(drop)
    }
}

/// One compiled rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    /// Its name in the multi-rollout form; `None` in the single form, whose counters keep the
    /// names they had before rollouts had names.
    pub name: Option<String>,
    /// Its validated configuration, which decides its requests exactly as a single-rollout
    /// filter would.
    pub config: Config,
}

/// The validated configuration of the whole filter.
#[derive(Debug, Clone)]
pub struct Rollouts {
    /// In configuration order; the single form is one rollout.
    rollouts: Vec<Rollout>,
    /// Which rollout serves which service; `None` in the single form, where one rollout takes
    /// every request and no cluster name is needed.
    by_service: Option<ServiceIndex>,
}

impl Rollouts {
    /// Parses and validates the JSON of a `pluginConfig`, in either form.
    /// (The same as compiling [`FilterConfig::from_json`], without the wire type in between,
    /// whose moves cost the `.wasm` a few hundred bytes.)
    pub fn from_json(json: &[u8]) -> Result<Self, ConfigError> {
        if is_rollouts_form(json) {
            compile_rollouts(rollouts_json::parse(json)?)
        } else {
            compile_single(PluginConfig::from_json(json)?)
        }
    }

    /// Validates a parsed configuration and builds the service index.
    pub fn compile(config: FilterConfig) -> Result<Self, ConfigError> {
        match config {
            FilterConfig::Single(plugin) => compile_single(plugin),
            FilterConfig::Rollouts(config) => compile_rollouts(config),
        }
    }

    /// The rollouts, in configuration order.
    pub fn rollouts(&self) -> &[Rollout] {
        &self.rollouts
    }

    /// The rollout that decides a request, with its index, or `None` when the request is for a
    /// service without a rollout. `cluster_name` reads the name of the cluster Envoy routed the
    /// request to; it is called only in the multi-rollout form, and at most once, since it is
    /// a host call. An unreadable name (`None`) means no rollout: the request goes through
    /// untouched.
    pub fn select(
        &self,
        cluster_name: impl FnOnce() -> Option<Vec<u8>>,
    ) -> Option<(usize, &Rollout)> {
        let index = match &self.by_service {
            None => 0,
            Some(by_service) if by_service.is_empty() => return None,
            Some(by_service) => {
                let cluster = cluster_name()?;
                by_service.get(service_of_cluster(&cluster)?)?
            }
        };
        self.rollouts.get(index).map(|rollout| (index, rollout))
    }
}

/// The service a cluster serves, from its name. Istio names clusters
/// `<direction>|<port>|<subset>|<host>` (`BuildSubsetKey`), so the service is the host after
/// the last `|`, whichever proxy routed the request:
///
/// - `outbound|<port>|<subset>|<host>`: gateways and sidecars, a VirtualService's subsets;
/// - `outbound|<port>||<host>`: the same on the HTTPRoute backend, where each version is a
///   Service of its own, and at a waypoint for a Service not bound to it;
/// - `inbound-vip|<port>|http|<host>` (and `http/<subset>`, `tcp`): a waypoint, for a Service
///   bound to it.
///
/// On the HTTPRoute backend a rollout therefore lists its parent Service and every version
/// Service (`render::services::filter_services`): the filter runs before it stamps, when the
/// cluster is still the managed fallback's, stable's Service. Still one lookup per request.
/// An inbound cluster (`inbound|<port>||`) ends in nothing and is no rollout's service. A name
/// without `|` (a plain Envoy's cluster) is the service itself.
pub fn service_of_cluster(cluster: &[u8]) -> Option<&[u8]> {
    let service = match cluster.iter().rposition(|&b| b == b'|') {
        Some(bar) => &cluster[bar + 1..],
        None => cluster,
    };
    (!service.is_empty()).then_some(service)
}

/// The single form: one rollout for every request.
fn compile_single(plugin: PluginConfig) -> Result<Rollouts, ConfigError> {
    Ok(Rollouts {
        rollouts: vec![Rollout {
            name: None,
            config: Config::compile(plugin)?,
        }],
        by_service: None,
    })
}

fn compile_rollouts(config: RolloutsConfig) -> Result<Rollouts, ConfigError> {
    let services = config.rollouts.iter().map(|r| r.services.len()).sum();
    let mut by_service = ServiceIndex::with_capacity(services);
    let mut rollouts = Vec::with_capacity(config.rollouts.len());
    for (index, rollout) in config.rollouts.into_iter().enumerate() {
        compile_rollout(rollout, &mut rollouts, &mut by_service)
            .map_err(|e| e.within(&format!("rollouts[{index}]")))?;
    }
    Ok(Rollouts {
        rollouts,
        by_service: Some(by_service),
    })
}

/// Validates one rollout of the multi-rollout form against itself and the rollouts before
/// it, and adds it, its services to the index. Errors name fields within the rollout.
fn compile_rollout(
    rollout: RolloutConfig,
    earlier: &mut Vec<Rollout>,
    by_service: &mut ServiceIndex,
) -> Result<(), ConfigError> {
    let index = earlier.len();
    let name = rollout.name;
    names::check_rollout_name(&name)
        .and_then(|()| metrics::check_rollout_name(&name))
        .map_err(|m| ConfigError::new("name", m))?;
    if let Some(other) = earlier
        .iter()
        .position(|r| r.name.as_deref() == Some(name.as_str()))
    {
        return Err(ConfigError::new(
            "name",
            format!(
                "duplicate rollout name {} (rollouts[{other}])",
                names::quoted(&name)
            ),
        ));
    }
    if rollout.services.is_empty() {
        return Err(ConfigError::new(
            "services",
            "at least one service is required",
        ));
    }
    for (i, service) in rollout.services.iter().enumerate() {
        let field = format!("services[{i}]");
        names::check_service_name(service).map_err(|m| ConfigError::new(&field, m))?;
        if let Some(other) = by_service.insert(service, index) {
            let message = if other == index {
                format!("{} is listed twice", names::quoted(service))
            } else {
                format!(
                    "{} of rollout {} belongs to {} already: a service belongs to at most one rollout",
                    names::quoted(service),
                    names::quoted(&name),
                    owner(earlier, other),
                )
            };
            return Err(ConfigError::new(&field, message));
        }
    }
    let config = Config::compile(rollout.config)
        .and_then(|config| check_cookies(&config, earlier).map(|()| config))
        .map_err(|e| e.within("config"))?;
    earlier.push(Rollout {
        name: Some(name),
        config,
    });
    Ok(())
}

/// Every rollout pins with its own version cookie: one client carries the cookies of all the
/// rollouts it met, and a shared one would pin it in one rollout to a version of another. The
/// id cookie may be shared (it only holds the client's id, and one id per client is best), but
/// no rollout's id cookie may be another's version cookie.
fn check_cookies(config: &Config, earlier: &[Rollout]) -> Result<(), ConfigError> {
    for (other, rollout) in earlier.iter().enumerate() {
        let theirs = &rollout.config.plugin.cookie;
        if let Some((field, why)) =
            cookie_collision(&config.plugin.cookie, theirs, &owner(earlier, other))
        {
            return Err(ConfigError::new(field, why));
        }
    }
    Ok(())
}

/// Whether the cookies of a rollout (`mine`) collide with those of another rollout on the same
/// proxy (`theirs`, named `owner` in the message): the field of `mine` at fault and why. Names collide as [`check_cookies`] says. A shared id cookie must also have one
/// `Domain` and `Path`: a browser keeps a cookie per name, domain and path, so with two of
/// them it would send the client two ids, and the filter would read whichever comes first.
/// `stickyctl` checks a shared WasmPlugin's rollouts with this before writing it.
pub fn cookie_collision(
    mine: &CookieConfig,
    theirs: &CookieConfig,
    owner: &str,
) -> Option<(&'static str, String)> {
    let (field, value, kind) = if mine.name == theirs.name {
        ("cookie.name", &mine.name, "version cookie")
    } else if mine.name == theirs.id_name {
        ("cookie.name", &mine.name, "id cookie")
    } else if mine.id_name == theirs.name {
        ("cookie.idName", &mine.id_name, "version cookie")
    } else if mine.id_name != theirs.id_name {
        return None;
    } else if mine.domain != theirs.domain || mine.path != theirs.path {
        let field = if mine.domain != theirs.domain {
            "cookie.domain"
        } else {
            "cookie.path"
        };
        return Some((
            field,
            format!(
                "the id cookie {} is shared with {owner}, which sets it with {}: rollouts \
                 sharing an id cookie must give it the same domain and path (or name their own)",
                names::quoted(&mine.id_name),
                attributes(theirs)
            ),
        ));
    } else {
        return None;
    };
    Some((
        field,
        format!(
            "{} is the {kind} of {owner} already: each rollout needs a version cookie of its own",
            names::quoted(value)
        ),
    ))
}

/// A cookie's scope as a message shows it: `domain "shop.example", path "/"`.
fn attributes(cookie: &CookieConfig) -> String {
    let domain = match &cookie.domain {
        Some(domain) => format!("domain {}", names::quoted(domain)),
        None => "no domain (host-only)".to_owned(),
    };
    format!("{domain}, path {}", names::quoted(&cookie.path))
}

/// Rollout `index` as error messages name it: `rollout "prod/shop" (rollouts[0])`.
fn owner(rollouts: &[Rollout], index: usize) -> String {
    let name = rollouts.get(index).and_then(|r| r.name.as_deref());
    format!(
        "rollout {} (rollouts[{index}])",
        names::quoted(name.unwrap_or_default())
    )
}

/// Rollout indices by service name: a hash table with open addressing, keyed by xxh64 (which
/// the bucketing links in anyway). std's `HashMap` did the same job with 2.8 KB more code in
/// the `.wasm` (its generic insert and rehash), and its default hasher would add SipHash and a
/// WASI `random_get` for the keys; here the table is sized once, at configuration time, and
/// only looked up per request.
/// Nothing here needs keys a client cannot guess: the names come from the configuration, and
/// a client cannot choose which cluster name Envoy looks up.
#[derive(Debug, Clone)]
struct ServiceIndex {
    /// `(service, rollout index)`, in configuration order.
    entries: Vec<(String, usize)>,
    /// Indices into `entries` plus one (0: empty). A power of two, at least twice the number of
    /// services, so a lookup ends after about one comparison.
    slots: Vec<u32>,
}

impl ServiceIndex {
    /// An index with room for `services` services.
    fn with_capacity(services: usize) -> Self {
        ServiceIndex {
            entries: Vec::with_capacity(services),
            slots: vec![0; (2 * services).next_power_of_two()],
        }
    }

    /// The rollout index of `service`, or else the empty slot where it would go. There always
    /// is an empty slot: [`ServiceIndex::insert`] never fills more than half of them.
    fn find(&self, service: &[u8]) -> Result<usize, usize> {
        let mask = self.slots.len() - 1;
        // Truncating the hash keeps its low bits, which is all the mask uses.
        let mut at = xxh64(service, 0) as usize & mask;
        loop {
            let entry = self.slots.get(at).copied().unwrap_or_default() as usize;
            match entry
                .checked_sub(1)
                .and_then(|entry| self.entries.get(entry))
            {
                None => return Err(at),
                Some((name, rollout)) if name.as_bytes() == service => return Ok(*rollout),
                Some(_) => at = (at + 1) & mask,
            }
        }
    }

    /// The rollout index of `service`.
    fn get(&self, service: &[u8]) -> Option<usize> {
        self.find(service).ok()
    }

    /// Adds `service` for `rollout`, or returns the rollout it belongs to already. With half
    /// its slots taken it refuses, returning `Some(rollout)`, rather than fill the table;
    /// `compile_rollouts` makes room for every service, so that does not happen.
    fn insert(&mut self, service: &str, rollout: usize) -> Option<usize> {
        let at = match self.find(service.as_bytes()) {
            Ok(owner) => return Some(owner),
            Err(at) => at,
        };
        let entries = self.entries.len() + 1;
        let room = 2 * entries <= self.slots.len();
        match (self.slots.get_mut(at), u32::try_from(entries)) {
            (Some(slot), Ok(entry)) if room => *slot = entry,
            _ => return Some(rollout),
        }
        self.entries.push((service.to_owned(), rollout));
        None
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{decide, RequestHeaders};
    use crate::VersionWeight;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const EXAMPLE: &str = r#"{"rollouts": [
      {"name": "prod/shop", "services": ["shop.prod.svc.cluster.local"],
       "config": {"versions": [{"name": "v1", "weight": 90}, {"name": "v2", "weight": 10}], "cookie": {"name": "sticky-version.prod.shop"}}},
      {"name": "prod/api", "services": ["api.prod.svc.cluster.local", "api-v2.prod.svc.cluster.local"], "config": {"versions": [{"name": "v1", "weight": 100}]}}
    ]}"#;

    fn never() -> Option<Vec<u8>> {
        panic!("the cluster name was read")
    }

    fn cluster(name: &str) -> impl FnOnce() -> Option<Vec<u8>> + '_ {
        move || Some(name.as_bytes().to_vec())
    }

    fn selected(rollouts: &Rollouts, cluster_name: &str) -> Option<String> {
        rollouts
            .select(cluster(cluster_name))
            .map(|(_, rollout)| rollout.name.clone().unwrap_or_default())
    }

    #[test]
    fn the_single_form_parses_as_it_always_did_and_reads_no_cluster_name() {
        let json =
            br#"{"versions":[{"name":"v1","weight":90},{"name":"v2","weight":10}],"salt":"s"}"#;
        let parsed = FilterConfig::from_json(json).unwrap();
        assert_eq!(
            parsed,
            FilterConfig::Single(PluginConfig::from_json(json).unwrap())
        );
        let rollouts = Rollouts::from_json(json).unwrap();
        let (index, rollout) = rollouts.select(never).unwrap();
        assert_eq!(index, 0);
        assert_eq!(rollout.name, None);
        assert_eq!(rollout.config, Config::from_json(json).unwrap());
        assert_eq!(rollouts.rollouts().len(), 1);
    }

    #[test]
    fn the_form_is_told_by_the_first_key() {
        for (json, multi) in [
            (r#"{"rollouts":[]}"#, true),
            (" \n\t{ \r\"rollouts\" :[]}", true),
            (r#"{"rollouts""#, false),
            (r#"{"versions":[],"rollouts":[]}"#, false),
            (r#"["rollouts"]"#, false),
            (r#"{"rollouts2":[]}"#, false),
            ("", false),
        ] {
            assert_eq!(is_rollouts_form(json.as_bytes()), multi, "{json}");
        }
    }

    #[test]
    fn the_multi_form_parses_and_round_trips() {
        let parsed = FilterConfig::from_json(EXAMPLE.as_bytes()).unwrap();
        let FilterConfig::Rollouts(config) = &parsed else {
            panic!("parsed as the single form: {parsed:?}");
        };
        assert_eq!(config.rollouts.len(), 2);
        assert_eq!(config.rollouts[0].name, "prod/shop");
        assert_eq!(
            config.rollouts[0].config.cookie.name,
            "sticky-version.prod.shop"
        );
        assert_eq!(
            config.rollouts[1].config,
            PluginConfig::new(vec![VersionWeight::new("v1", 100.0)])
        );
        let json = serde_json::to_string(&parsed).unwrap();
        assert!(
            json.starts_with(r#"{"rollouts":[{"name":"prod/shop","#),
            "{json}"
        );
        assert_eq!(FilterConfig::from_json(json.as_bytes()).unwrap(), parsed);
        parsed.validate().unwrap();
        let direct = Rollouts::from_json(EXAMPLE.as_bytes()).unwrap();
        let via_wire = Rollouts::compile(parsed.clone()).unwrap();
        assert_eq!(direct.rollouts(), via_wire.rollouts());
        let single = FilterConfig::Single(PluginConfig::new(vec![VersionWeight::new("v1", 100.0)]));
        assert_eq!(
            serde_json::to_string(&single).unwrap(),
            r#"{"versions":[{"name":"v1","weight":100.0}]}"#
        );
    }

    #[test]
    fn a_request_gets_the_rollout_of_its_service() {
        let rollouts = Rollouts::from_json(EXAMPLE.as_bytes()).unwrap();
        let cases = [
            (
                "outbound|8080|sticky-canary-v2|shop.prod.svc.cluster.local",
                Some("prod/shop"),
            ),
            (
                "outbound|8080||shop.prod.svc.cluster.local",
                Some("prod/shop"),
            ),
            (
                "outbound|80|sticky-canary-v1|api.prod.svc.cluster.local",
                Some("prod/api"),
            ),
            (
                "outbound|80||api-v2.prod.svc.cluster.local",
                Some("prod/api"),
            ),
            ("shop.prod.svc.cluster.local", Some("prod/shop")),
            ("outbound|8080||cart.prod.svc.cluster.local", None),
            ("outbound|8080||shop.prod.svc.cluster.local.evil", None),
            ("outbound|8080||SHOP.prod.svc.cluster.local", None),
            ("inbound|8080||", None),
            ("", None),
            ("BlackHoleCluster", None),
        ];
        for (name, expected) in cases {
            assert_eq!(selected(&rollouts, name).as_deref(), expected, "{name}");
        }
        assert!(rollouts.select(|| None).is_none(), "an unreadable name");
        let (index, _) = rollouts
            .select(cluster("api.prod.svc.cluster.local"))
            .unwrap();
        assert_eq!(index, 1);
    }

    #[test]
    fn the_service_index_finds_every_service_and_only_those() {
        let services: Vec<String> = (0..1000).map(|i| format!("svc-{i}.ns")).collect();
        let mut index = ServiceIndex::with_capacity(services.len());
        for (i, service) in services.iter().enumerate() {
            assert_eq!(index.insert(service, i / 3), None, "{service}");
        }
        assert_eq!(index.insert("svc-7.ns", 999), Some(2), "taken");
        for (i, service) in services.iter().enumerate() {
            assert_eq!(index.get(service.as_bytes()), Some(i / 3), "{service}");
        }
        for unknown in ["svc-1000.ns", "svc-1.n", "", "svc-1.ns."] {
            assert_eq!(index.get(unknown.as_bytes()), None, "{unknown}");
        }
        let mut one = ServiceIndex::with_capacity(1);
        assert_eq!(one.insert("a", 0), None);
        assert_eq!(one.insert("b", 1), Some(1), "full");
        assert_eq!((one.get(b"a"), one.get(b"b")), (Some(0), None));
        let empty = ServiceIndex::with_capacity(0);
        assert!(empty.is_empty() && empty.get(b"svc-1.ns").is_none());
    }

    #[test]
    fn without_rollouts_nothing_is_selected_and_no_cluster_name_read() {
        let rollouts = Rollouts::from_json(br#"{"rollouts":[]}"#).unwrap();
        assert!(rollouts.select(never).is_none());
        assert!(rollouts.rollouts().is_empty());
    }

    #[test]
    fn the_service_is_the_host_of_an_istio_cluster_name() {
        let cases: [(&str, Option<&str>); 12] = [
            (
                "outbound|8080|sticky-canary-v2|shop.prod.svc.cluster.local",
                Some("shop.prod.svc.cluster.local"),
            ),
            (
                "inbound-vip|8080|http|shop.prod.svc.cluster.local",
                Some("shop.prod.svc.cluster.local"),
            ),
            (
                "inbound-vip|8080|http/sticky-canary-v2|shop.prod.svc.cluster.local",
                Some("shop.prod.svc.cluster.local"),
            ),
            (
                "inbound-vip|8080|http|shop-v2.prod.svc.cluster.local",
                Some("shop-v2.prod.svc.cluster.local"),
            ),
            (
                "outbound|8080||shop-v1.prod.svc.cluster.local",
                Some("shop-v1.prod.svc.cluster.local"),
            ),
            (
                "outbound|8080||shop.prod.svc.cluster.local",
                Some("shop.prod.svc.cluster.local"),
            ),
            ("version_v1", Some("version_v1")),
            ("inbound|8080||", None),
            ("inbound|8080|http|", None),
            ("shop", Some("shop")),
            ("|", None),
            ("", None),
        ];
        for (cluster, service) in cases {
            assert_eq!(
                service_of_cluster(cluster.as_bytes()),
                service.map(str::as_bytes),
                "{cluster}"
            );
        }
    }

    /// The HTTPRoute backend (issue 20): a rollout lists its parent Service and its version
    /// Services, and every cluster-name form of every proxy maps to it, with one lookup.
    #[test]
    fn every_cluster_name_form_of_a_version_service_maps_to_its_rollout() {
        let rollouts = Rollouts::from_json(
            br#"{"rollouts": [
              {"name": "prod/shop", "services": ["shop.prod.svc.cluster.local",
                 "shop-v1.prod.svc.cluster.local", "shop-canary.prod.svc.cluster.local"],
               "config": {"versions": [{"name": "v1", "weight": 90}, {"name": "v2", "weight": 10}]}},
              {"name": "prod/api", "services": ["api.prod.svc.cluster.local",
                 "api-v1.prod.svc.cluster.local", "api-v2.prod.svc.cluster.local"],
               "config": {"versions": [{"name": "v1", "weight": 100}, {"name": "v2", "weight": 0}],
                          "cookie": {"name": "sticky-version.api"}}}
            ]}"#,
        )
        .unwrap();
        let cases = [
            // A Gateway API gateway or a sidecar: the fallback's cluster, then a version's.
            (
                "outbound|80||shop-v1.prod.svc.cluster.local",
                Some("prod/shop"),
            ),
            (
                "outbound|80||shop-canary.prod.svc.cluster.local",
                Some("prod/shop"),
            ),
            (
                "outbound|80||shop.prod.svc.cluster.local",
                Some("prod/shop"),
            ),
            // A waypoint the Services are bound to.
            (
                "inbound-vip|80|http|shop-v1.prod.svc.cluster.local",
                Some("prod/shop"),
            ),
            (
                "inbound-vip|80|http|shop.prod.svc.cluster.local",
                Some("prod/shop"),
            ),
            (
                "inbound-vip|80|http/sticky-canary-v2|shop.prod.svc.cluster.local",
                Some("prod/shop"),
            ),
            (
                "inbound-vip|8080|http|api-v2.prod.svc.cluster.local",
                Some("prod/api"),
            ),
            (
                "outbound|8080||api-v1.prod.svc.cluster.local",
                Some("prod/api"),
            ),
            // Neither: another service, a version Service nobody listed, a sidecar's inbound.
            ("inbound-vip|80|http|shop-v3.prod.svc.cluster.local", None),
            ("outbound|80||shop-v1.staging.svc.cluster.local", None),
            ("inbound|80||", None),
            ("inbound-vip|80|http|", None),
        ];
        for (name, rollout) in cases {
            assert_eq!(selected(&rollouts, name).as_deref(), rollout, "{name}");
        }
    }

    /// A rollout entry with these fields spliced in, for the error table.
    fn rollout(name: &str, services: &str, config: &str) -> String {
        format!(r#"{{"name":"{name}","services":{services},"config":{config}}}"#)
    }

    const V1: &str = r#"{"versions":[{"name":"v1","weight":100}]}"#;

    fn with_cookie(cookie: &str) -> String {
        format!(r#"{{"versions":[{{"name":"v1","weight":100}}],"cookie":{cookie}}}"#)
    }

    #[test]
    fn bad_multi_rollout_configs_name_the_field_with_its_full_path() {
        let shop = rollout("prod/shop", r#"["shop"]"#, V1);
        let two = |second: &str| format!(r#"{{"rollouts":[{shop},{second}]}}"#);
        let cases = [
            (
                two(&rollout(
                    "prod/api",
                    r#"["api"]"#,
                    r#"{"versions":[{"name":"v1","weight":90},{"name":"v2","weight":5}],"cookie":{"name":"ver-api"}}"#,
                )),
                "rollouts[1].config.versions",
                "weights must sum to 100, they sum to 95",
            ),
            (
                two(&rollout("prod/api", r#"["api"]"#, r#"{"versions":[{"name":"v1","weight":100,"x":1}]}"#)),
                "rollouts[1].config.versions[0].x",
                "unknown field `x`",
            ),
            (
                two(&rollout("prod/api", r#"["Api"]"#, V1)),
                "rollouts[1].services[0]",
                r#""Api" is not a valid service name"#,
            ),
            (
                two(&rollout("prod/api", r#"["api","shop"]"#, &with_cookie(r#"{"name":"v-api"}"#))),
                "rollouts[1].services[1]",
                r#""shop" of rollout "prod/api" belongs to rollout "prod/shop" (rollouts[0]) already"#,
            ),
            (
                two(&rollout("prod/api", r#"["api","api"]"#, V1)),
                "rollouts[1].services[1]",
                r#""api" is listed twice"#,
            ),
            (
                two(&rollout("prod/api", "[]", V1)),
                "rollouts[1].services",
                "at least one service is required",
            ),
            (
                two(&rollout("prod/shop", r#"["api"]"#, V1)),
                "rollouts[1].name",
                r#"duplicate rollout name "prod/shop" (rollouts[0])"#,
            ),
            (
                two(&rollout("api", r#"["api"]"#, V1)),
                "rollouts[1].name",
                r#""api" is not a valid rollout name"#,
            ),
            (
                two(&rollout("prod/api.version", r#"["api"]"#, V1)),
                "rollouts[1].name",
                "cannot be told apart from the version",
            ),
            (
                two(&rollout("prod/api", r#"["api"]"#, V1)),
                "rollouts[1].config.cookie.name",
                r#""sticky-version" is the version cookie of rollout "prod/shop" (rollouts[0]) already"#,
            ),
            (
                two(&rollout("prod/api", r#"["api"]"#, &with_cookie(r#"{"name":"sticky-id","idName":"api-id"}"#))),
                "rollouts[1].config.cookie.name",
                r#""sticky-id" is the id cookie of rollout "prod/shop" (rollouts[0]) already"#,
            ),
            (
                two(&rollout("prod/api", r#"["api"]"#, &with_cookie(r#"{"name":"v-api","idName":"sticky-version"}"#))),
                "rollouts[1].config.cookie.idName",
                r#""sticky-version" is the version cookie of rollout "prod/shop" (rollouts[0]) already"#,
            ),
            (
                two(&rollout("prod/api", r#"["api"]"#, &with_cookie(r#"{"name":"v-api","idName":"v-api"}"#))),
                "rollouts[1].config.cookie.idName",
                "must differ from `cookie.name`",
            ),
            (
                two(&rollout("prod/api", r#"["api"]"#, &with_cookie(r#"{"name":"v-api","domain":"shop.example"}"#))),
                "rollouts[1].config.cookie.domain",
                r#"the id cookie "sticky-id" is shared with rollout "prod/shop" (rollouts[0]), which sets it with no domain (host-only), path "/": rollouts sharing an id cookie must give it the same domain and path"#,
            ),
            (
                two(&rollout("prod/api", r#"["api"]"#, &with_cookie(r#"{"name":"v-api","path":"/api"}"#))),
                "rollouts[1].config.cookie.path",
                r#"shared with rollout "prod/shop" (rollouts[0]), which sets it with no domain (host-only), path "/""#,
            ),
            (
                two(&rollout("prod/api", r#"["api"]"#, &with_cookie(r#"{"name":"v-api","domain":"https://shop.example"}"#))),
                "rollouts[1].config.cookie.domain",
                "is not a domain",
            ),
            (
                r#"{"rollouts":[{"name":"prod/shop","services":["shop"]}]}"#.to_owned(),
                "rollouts[0]",
                "missing field `config`",
            ),
            (
                format!(r#"{{"rollouts":[{}]}}"#, shop.replace(r#""services""#, r#""hosts""#)),
                "rollouts[0].hosts",
                "unknown field `hosts`",
            ),
            (
                format!(r#"{{"rollouts":[{shop}],"salt":"x"}}"#),
                "salt",
                "unknown field `salt`",
            ),
            (
                format!(r#"{{"rollouts":[{shop}],"versions":[{{"name":"v1","weight":100}}]}}"#),
                "versions",
                "unknown field `versions`, expected `rollouts`",
            ),
            (
                format!(r#"{{"versions":[{{"name":"v1","weight":100}}],"rollouts":[{shop}]}}"#),
                "rollouts",
                "unknown field `rollouts`",
            ),
            (
                format!(r#"{{"rollouts":[{shop}],"rollouts":[]}}"#),
                "rollouts",
                "duplicate field `rollouts`",
            ),
            (
                format!(r#"{{"rollouts":[{}]}}"#, shop.replace(r#""name":"prod/shop","#, r#""name":"prod/shop","name":"x","#)),
                "rollouts[0].name",
                "duplicate field `name`",
            ),
            (
                r#"{"rollouts":[{"name":"prod/shop","config":{"versions":[{"name":"v1","weight":100}]}}]}"#.to_owned(),
                "rollouts[0]",
                "missing field `services`",
            ),
            (
                r#"{"rollouts":[{"name":7,"services":[],"config":{}}]}"#.to_owned(),
                "rollouts[0].name",
                "invalid type: integer `7`, expected a string",
            ),
            (
                r#"{"rollouts":[{"name":"prod/shop","services":["shop",7],"config":{}}]}"#.to_owned(),
                "rollouts[0].services[1]",
                "invalid type: integer `7`, expected a string",
            ),
            (
                r#"{"rollouts":[{"name":"prod/shop","services":"shop","config":{}}]}"#.to_owned(),
                "rollouts[0].services",
                "expected a list of service names",
            ),
            (
                r#"{"rollouts":[{"name":"prod/shop","services":["shop"],"config":"v1"}]}"#.to_owned(),
                "rollouts[0].config",
                "invalid type: string \"v1\"",
            ),
            (
                r#"{"rollouts":[{"name":"prod/shop","services":["shop"],"config":{}}]}"#.to_owned(),
                "rollouts[0].config",
                "missing field `versions`",
            ),
            (
                r#"{"rollouts":["prod/shop"]}"#.to_owned(),
                "rollouts[0]",
                "expected a rollout",
            ),
            (
                r#"{"rollouts":[{"name":"prod/shop" "services":[]}]}"#.to_owned(),
                "rollouts[0]",
                "expected `,` or `}`",
            ),
            (
                r#"{"rollouts":[]} trailing"#.to_owned(),
                "(root)",
                "trailing characters",
            ),
            (
                r#"{"rollouts":{}}"#.to_owned(),
                "rollouts",
                "invalid type",
            ),
            (
                r#"{"versions":[{"name":"v1","weight":100}],"rollouts":null}"#.to_owned(),
                "rollouts",
                "unknown field `rollouts`",
            ),
        ];
        for (json, field, needle) in cases {
            let err = Rollouts::from_json(json.as_bytes()).expect_err(&json);
            assert_eq!(err.field, field, "{json}: {err}");
            assert!(err.message.contains(needle), "{json}: {err}");
        }
        // Rollouts may share the id cookie, and a service may be plain or fully qualified.
        let shared_id = two(&rollout(
            "prod/api",
            r#"["api.prod.svc.cluster.local"]"#,
            &with_cookie(r#"{"name":"v-api"}"#),
        ));
        Rollouts::from_json(shared_id.as_bytes()).unwrap();
        // ... with one domain; an id cookie of their own may have any.
        for (shop, api) in [
            (
                r#"{"domain":"shop.example"}"#,
                r#"{"name":"v-api","domain":"shop.example"}"#,
            ),
            (
                r#"{"domain":"shop.example"}"#,
                r#"{"name":"v-api","idName":"api-id"}"#,
            ),
        ] {
            let json = format!(
                r#"{{"rollouts":[{},{}]}}"#,
                rollout("prod/shop", r#"["shop"]"#, &with_cookie(shop)),
                rollout("prod/api", r#"["api"]"#, &with_cookie(api)),
            );
            Rollouts::from_json(json.as_bytes()).unwrap();
        }
    }

    #[test]
    fn single_form_errors_read_as_they_always_did() {
        for json in [
            r#"{"versions":[{"name":"v1","weight":90},{"name":"v2","weight":5}]}"#,
            r#"{"versions":[{"name":"v1","weight":100}],"colour":"blue"}"#,
            "not json",
            "[]",
            "{}",
        ] {
            assert_eq!(
                Rollouts::from_json(json.as_bytes()).unwrap_err(),
                Config::from_json(json.as_bytes()).unwrap_err(),
                "{json}"
            );
        }
    }

    /// Request headers for the property test.
    struct Req(HashMap<&'static str, Vec<u8>>);

    impl RequestHeaders for Req {
        fn header(&self, name: &str) -> Option<Vec<u8>> {
            self.0.get(name).cloned()
        }
    }

    /// The configuration of rollout `i` in the property test.
    fn plugin_config(i: usize, canary: u16, salt: &str, repin_expiry: bool) -> PluginConfig {
        let mut config = PluginConfig::new(vec![
            VersionWeight::new("v1", f64::from(100 - canary)),
            VersionWeight::new("v2", f64::from(canary)),
        ]);
        config.cookie.name = format!("sticky-version.r{i}");
        config.salt = salt.to_owned();
        if repin_expiry {
            config.repin = crate::config::Repin::Expiry;
        }
        config
    }

    proptest! {
        /// With many rollouts, each request is decided exactly as its rollout's own
        /// single-rollout configuration decides it, and requests to other services by none.
        #[test]
        fn each_request_is_decided_as_its_rollouts_own_config_would(
            specs in proptest::collection::vec((0u16..=100, "[a-z]{0,4}", any::<bool>(), 1usize..4), 1..25),
            requests in proptest::collection::vec(
                (any::<prop::sample::Index>(), any::<prop::sample::Index>(), "[a-f0-9]{0,8}", 0usize..4, any::<bool>(), any::<bool>()),
                1..20,
            ),
        ) {
            let config = RolloutsConfig {
                rollouts: specs
                    .iter()
                    .enumerate()
                    .map(|(i, (canary, salt, expiry, services))| RolloutConfig {
                        name: format!("ns-{i}/rollout-{i}"),
                        services: (0..*services).map(|s| format!("svc-{i}-{s}.ns-{i}.svc.cluster.local")).collect(),
                        config: plugin_config(i, *canary, salt, *expiry),
                    })
                    .collect(),
            };
            let rollouts = Rollouts::compile(FilterConfig::Rollouts(config.clone())).unwrap();
            for (rollout, service, id, pinned, navigation, subset) in requests {
                let i = rollout.index(specs.len());
                let spec = &config.rollouts[i];
                let host = service.get(&spec.services);
                let name = if subset {
                    format!("outbound|8080|sticky-canary-v{}|{host}", 1 + (i % 2))
                } else {
                    format!("outbound|8080||{host}")
                };
                // The client carries cookies of several rollouts, as one browser would.
                let mut cookies = Vec::new();
                if !id.is_empty() {
                    cookies.push(format!("sticky-id={id}"));
                }
                for r in 0..pinned {
                    cookies.push(format!("sticky-version.r{}=v{}", (i + r) % specs.len(), 1 + r % 2));
                }
                let mut headers = HashMap::from([("cookie", cookies.join("; ").into_bytes())]);
                if navigation {
                    headers.insert("sec-fetch-dest", b"document".to_vec());
                }
                let request = Req(headers);
                let (index, chosen) = rollouts.select(cluster(&name)).unwrap();
                prop_assert_eq!(index, i);
                prop_assert_eq!(chosen.name.as_deref(), Some(spec.name.as_str()));
                let alone = Config::compile(spec.config.clone()).unwrap();
                prop_assert_eq!(
                    decide(&chosen.config, &request, || "minted".to_owned()),
                    decide(&alone, &request, || "minted".to_owned())
                );
                let elsewhere = format!("outbound|8080||other-{i}.{host}");
                prop_assert!(rollouts.select(cluster(&elsewhere)).is_none());
            }
        }
    }
}
