//! What `init`'s and `override`'s flags ask for, as the spec's parts: the rollout's spec
//! (refused whole, before anything is written), its default name, and the override access
//! with the token to keep.

use std::collections::BTreeMap;

use kube::ResourceExt;
use sticky_canary_filter::config::{KeySource, OverrideConfig, TokenDigest};

use super::args::{
    AutoArgs, InconclusiveArg, InitArgs, OverrideAccess, OverrideToken, PromotionArg, RollbackArg,
};
use api::{
    AutoSpec, OnInconclusive, Promotion, Proxies, RollbackMode, StickyCanary, StickyCanarySpec,
    TargetRef,
};
use render::placement;
use runtime::error::Error;
use runtime::notify;

impl AutoArgs {
    /// Sets what was given on `auto`.
    fn apply(&self, auto: &mut AutoSpec) {
        auto.enabled = self.auto;
        if let Some(interval) = self.interval {
            auto.interval_seconds = interval;
        }
        auto.gates.clone_from(&self.gates);
        if let Some(promotion) = self.promotion {
            auto.promotion = match promotion {
                PromotionArg::Gate => Promotion::Gate,
                PromotionArg::Auto => Promotion::Auto,
            };
        }
        if let Some(rollback) = self.rollback {
            auto.rollback = match rollback {
                RollbackArg::Immediate => RollbackMode::Immediate,
                RollbackArg::Drain => RollbackMode::Drain,
            };
        }
        if let Some(on) = self.on_inconclusive {
            auto.on_inconclusive = match on {
                InconclusiveArg::Hold => OnInconclusive::Hold,
                InconclusiveArg::Rollback => OnInconclusive::Rollback,
            };
        }
        if let Some(deadline) = self.inconclusive_deadline {
            auto.inconclusive_deadline_seconds = deadline;
        }
        auto.webhook.clone_from(&self.webhook);
        auto.allow_http_webhook = self.allow_http_webhook;
    }
}

/// A rollout's default name: the service's first DNS label (`shop` for `shop.prod.svc...`).
pub fn default_name(service: &str) -> String {
    service.split('.').next().unwrap_or(service).to_owned()
}

/// The override setting for `access`, and the token to keep when one was created (a token
/// given with --token is the person's own, and only its digest is stored).
pub fn override_access(
    access: OverrideAccess,
    given: &OverrideToken,
) -> Result<(OverrideConfig, Option<String>), Error> {
    let mut config = OverrideConfig::default();
    if access != OverrideAccess::Token && given.token.is_some() {
        return Err(Error::Invalid(
            "--token: a token only guards the override with `token` access".into(),
        ));
    }
    let created = match access {
        OverrideAccess::Off => return Ok((config, None)),
        OverrideAccess::Public => {
            config.public = true;
            return Ok((config, None));
        }
        OverrideAccess::Token => given.token.is_none(),
    };
    let token = match &given.token {
        Some(token) => {
            sticky_canary_filter::names::check_token(token)
                .map_err(|m| Error::Invalid(format!("--token: {m}")))?;
            token.clone()
        }
        None => sticky_canary_filter::guard::to_hex(&random::<32>()?),
    };
    config.token_digest = Some(TokenDigest::of(&token, &random::<16>()?));
    Ok((config, created.then_some(token)))
}

/// `N` random bytes from the operating system.
fn random<const N: usize>() -> Result<[u8; N], Error> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| Error::Runtime(format!("no randomness: {e}")))?;
    Ok(bytes)
}

pub fn already_exists(existing: &StickyCanary) -> Error {
    Error::Invalid(format!(
        "rollout {} already exists for service {} ({}); pass another --name",
        existing.name_any(),
        existing.spec.service,
        existing.spec.summary()
    ))
}

pub fn init_spec(args: &InitArgs) -> Result<StickyCanarySpec, Error> {
    let mut spec = rollout::init(&args.service, &args.stable)?;
    spec.routing.virtual_service = args.virtual_service.clone();
    spec.routing.destination_rule = args.destination_rule.clone();
    spec.routing.version_label = args.version_label.clone();
    spec.routing.api = args.routing.map(Into::into);
    spec.routing.http_route = args.http_route.clone();
    spec.plugin.waypoint = args.waypoint;
    spec.plugin.url = args.plugin_url.clone();
    if let Some(sha256) = &args.plugin_sha256 {
        let hex = sha256.len() == 64
            && sha256
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !hex {
            return Err(Error::Invalid(format!(
                "--plugin-sha256 {sha256:?}: expected 64 lowercase hex digits (an image digest without its sha256: prefix)"
            )));
        }
    }
    spec.plugin.sha256 = args.plugin_sha256.clone();
    let labels = |flag: &str, pairs: &[String]| -> Result<BTreeMap<String, String>, Error> {
        pairs
            .iter()
            .map(|pair| {
                pair.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .ok_or_else(|| Error::Invalid(format!("{flag} {pair:?}: expected KEY=VALUE")))
            })
            .collect()
    };
    spec.routing.version_services = labels("--version-service", &args.version_services)?;
    let target_refs = args
        .target_refs
        .iter()
        .map(|target| {
            let (kind, name) = target.split_once('/').ok_or_else(|| {
                Error::Invalid(format!("--target-ref {target:?}: expected KIND/NAME"))
            })?;
            Ok(TargetRef {
                group: "gateway.networking.k8s.io".to_owned(),
                kind: kind.to_owned(),
                name: name.to_owned(),
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    match &args.gateway_namespace {
        // Gateway API gateways of another namespace: the plugin lives in theirs.
        Some(namespace) if !target_refs.is_empty() => {
            if !args.selectors.is_empty() {
                return Err(Error::Invalid(
                    "--selector with --target-ref and --gateway-namespace: name the gateway one way".into(),
                ));
            }
            spec.plugin.gateways = Some(vec![Proxies {
                namespace: Some(namespace.clone()),
                target_refs,
                ..Proxies::default()
            }]);
        }
        namespace => {
            if namespace.is_some() || !args.selectors.is_empty() {
                let mut selector = labels("--selector", &args.selectors)?;
                if selector.is_empty() {
                    let (key, value) = placement::DEFAULT_GATEWAY_SELECTOR;
                    selector.insert(key.to_owned(), value.to_owned());
                }
                let namespace = namespace
                    .clone()
                    .unwrap_or_else(|| placement::DEFAULT_GATEWAY_NAMESPACE.to_owned());
                spec.plugin.gateways = Some(vec![Proxies {
                    namespace: Some(namespace),
                    selector,
                    ..Proxies::default()
                }]);
            }
            spec.plugin.target_refs = target_refs;
        }
    }
    if !args.sidecars.is_empty() || args.sidecar_namespace.is_some() {
        spec.plugin.sidecars = vec![Proxies {
            namespace: args.sidecar_namespace.clone(),
            selector: labels("--sidecar", &args.sidecars)?,
            ..Proxies::default()
        }];
    }
    spec.filter.trust_incoming_header = args.trust_incoming_header;
    spec.filter.key_sources = args
        .key_headers
        .iter()
        .cloned()
        .map(KeySource::Header)
        .chain(args.key_cookies.iter().cloned().map(KeySource::Cookie))
        .collect();
    spec.filter.cookie.domain = args.cookie_domain.clone();
    if let Some(salt) = &args.salt {
        spec.filter.salt = salt.clone();
    }
    if let Some(steps) = &args.steps {
        spec.steps = steps.clone();
    }
    args.auto.apply(&mut spec.auto);
    rollout::validate(&spec)?;
    // Refused before anything is written; a URL already stored is only not posted to.
    if let Some(Err(why)) = notify::webhook(&spec.auto) {
        return Err(rollout::OpError::Invalid(why).into());
    }
    Ok(spec)
}
