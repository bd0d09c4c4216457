//! The plugin configuration: the JSON that a WasmPlugin's `pluginConfig` becomes.
//!
//! [`PluginConfig`] is the wire schema, shared by the filter (which parses it in
//! `on_configure`) and by `stickyctl` (which renders it), so the two can never drift.
//! [`Config`] is the validated, precomputed form the filter decides with on every request.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::bucket::{self, Buckets, BUCKETS};
use crate::decision::READ_BY_DECISION;
use crate::guard::{self, Guard};
use crate::names;

/// Header the VirtualService matches on; the filter overwrites whatever the client sent.
pub const DEFAULT_HEADER: &str = "x-sticky-version";
/// Cookie that pins a client to a version across requests.
pub const DEFAULT_COOKIE: &str = "sticky-version";
/// Cookie that keeps the random client id the filter mints for clients without a key.
pub const DEFAULT_ID_COOKIE: &str = "sticky-id";
/// Header QA testers use to force a version.
pub const DEFAULT_OVERRIDE_HEADER: &str = "x-sticky-override";
/// Default lifetime of both cookies: one day.
pub const DEFAULT_MAX_AGE: u64 = 86_400;

/// The wire form of the plugin configuration. Only `versions` is required:
/// `{"versions": [{"name": "v1", "weight": 90}, {"name": "v2", "weight": 10}]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PluginConfig {
    /// Versions with their traffic share in percent; the first one is stable.
    pub versions: Vec<VersionWeight>,
    /// Request header stamped with the chosen version.
    #[serde(default = "default_header", skip_serializing_if = "is_default_header")]
    pub header: String,
    /// Name and attributes of the pinning cookies.
    #[serde(default, skip_serializing_if = "CookieConfig::is_default")]
    pub cookie: CookieConfig,
    /// The QA override header and its optional guard.
    #[serde(
        default,
        rename = "override",
        skip_serializing_if = "OverrideConfig::is_default"
    )]
    pub override_: OverrideConfig,
    /// Where the client key comes from, in order; the minted id cookie is the fallback.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_sources: Vec<KeySource>,
    /// Per-rollout salt, so two rollouts do not put the same clients in their canaries.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub salt: String,
    /// When a pinned client is re-decided by hash, so weight changes reach it.
    #[serde(default, skip_serializing_if = "Repin::is_default")]
    pub repin: Repin,
    /// Keep an incoming version header instead of deciding again (mesh-internal hops only).
    #[serde(default, skip_serializing_if = "is_false")]
    pub trust_incoming_header: bool,
    /// A secret stamped after the version (`v2;<seal>`), which only the managed routes know:
    /// a request this filter did not stamp (the module not running, a client's own header)
    /// matches none of them and goes to stable. The routes put the plain version back before
    /// the upstream, so services see `v2` as ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
}

/// One version and its share of clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionWeight {
    /// Version name: the value of the version header and of the subset's `version` label.
    pub name: String,
    /// Share in percent, 0 to 100, at most two decimals.
    pub weight: f64,
    /// Only at weight 0: clients pinned to this version keep it for the rest of the page they
    /// are on and leave it at their next navigation, so a version can be switched off without
    /// breaking pages in flight. Without it a version at weight 0 pins nobody (an immediate
    /// switch, what an abort needs).
    #[serde(default, skip_serializing_if = "is_false")]
    pub drain: bool,
}

impl VersionWeight {
    /// A version with this share that does not drain.
    pub fn new(name: impl Into<String>, weight: f64) -> Self {
        VersionWeight {
            name: name.into(),
            weight,
            drain: false,
        }
    }
}

/// Cookie name and attributes; the defaults suit a browser-facing HTTPS site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct CookieConfig {
    /// Name of the cookie that pins the version.
    pub name: String,
    /// Name of the cookie that keeps the minted client id.
    pub id_name: String,
    /// `Domain` attribute: `shop.example` shares both cookies with every host under it (a page
    /// on `www.shop.example` calling `api.shop.example`); `None`, the default, keeps them
    /// host-only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// `Path` attribute.
    pub path: String,
    /// `Max-Age` in seconds: how long a pin lasts for clients that never navigate.
    pub max_age: u64,
    /// `HttpOnly` attribute.
    pub http_only: bool,
    /// `Secure` attribute.
    pub secure: bool,
    /// `SameSite` attribute.
    pub same_site: SameSite,
}

/// The `SameSite` cookie attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SameSite {
    /// Sent on top-level navigations from other sites, the browsers' default.
    #[default]
    Lax,
    /// Never sent cross-site.
    Strict,
    /// Always sent (browsers require `Secure` with it).
    None,
}

/// QA override: a header that forces a version. Off unless guarded by a token (the digest,
/// or the token in clear) or declared `public`; the header never reaches the upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct OverrideConfig {
    /// Header carrying `<version>:<token>`, or `<version>` when public.
    pub header: String,
    /// The token in clear (configurations written before digests); prefer `tokenDigest`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The token's keyed digest: an override is honoured only with the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_digest: Option<TokenDigest>,
    /// Anyone may override without a token: only for proxies the public cannot reach.
    #[serde(skip_serializing_if = "is_false")]
    pub public: bool,
}

/// A token's HMAC-SHA256 under a key of its own, both in hex (see [`crate::guard`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenDigest {
    /// The HMAC key, at least 16 bytes.
    pub key: String,
    /// HMAC-SHA256 of the token under `key`.
    pub hmac_sha256: String,
}

impl TokenDigest {
    /// The digest of `token` under `key`.
    pub fn of(token: &str, key: &[u8]) -> Self {
        TokenDigest {
            key: guard::to_hex(key),
            hmac_sha256: guard::to_hex(&guard::digest(key, token.as_bytes())),
        }
    }
}

/// A source of the stable client key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum KeySource {
    /// A request header, such as `x-user-id` set by an authenticating gateway.
    Header(String),
    /// A cookie, such as a session id.
    Cookie(String),
}

/// When the hash decides again for a client that carries a live pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Repin {
    /// At top-level navigations only: a page and its sub-resources always share a version.
    #[default]
    Navigation,
    /// Never while the cookie lives: the pin lasts until `Max-Age`.
    Expiry,
}

fn default_header() -> String {
    DEFAULT_HEADER.to_owned()
}

fn is_default_header(header: &str) -> bool {
    header == DEFAULT_HEADER
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl Default for CookieConfig {
    fn default() -> Self {
        CookieConfig {
            name: DEFAULT_COOKIE.to_owned(),
            id_name: DEFAULT_ID_COOKIE.to_owned(),
            domain: None,
            path: "/".to_owned(),
            max_age: DEFAULT_MAX_AGE,
            http_only: true,
            secure: true,
            same_site: SameSite::Lax,
        }
    }
}

impl CookieConfig {
    fn is_default(&self) -> bool {
        *self == CookieConfig::default()
    }
}

impl Default for OverrideConfig {
    fn default() -> Self {
        OverrideConfig {
            header: DEFAULT_OVERRIDE_HEADER.to_owned(),
            token: None,
            token_digest: None,
            public: false,
        }
    }
}

impl OverrideConfig {
    fn is_default(&self) -> bool {
        *self == OverrideConfig::default()
    }
}

impl Repin {
    fn is_default(&self) -> bool {
        *self == Repin::default()
    }
}

impl PluginConfig {
    /// The minimal configuration: these versions and weights, every other field at its default.
    pub fn new(versions: Vec<VersionWeight>) -> Self {
        PluginConfig {
            versions,
            header: default_header(),
            cookie: CookieConfig::default(),
            override_: OverrideConfig::default(),
            key_sources: Vec::new(),
            salt: String::new(),
            repin: Repin::default(),
            trust_incoming_header: false,
            seal: None,
        }
    }

    /// Parses the JSON, naming the offending field on error.
    pub fn from_json(json: &[u8]) -> Result<Self, ConfigError> {
        parse_json(json)
    }

    /// Checks every rule the filter relies on; `stickyctl` calls this before writing anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        Config::compile(self.clone()).map(|_| ())
    }
}

/// A configuration error naming the field, e.g. ``versions[1].weight: must be ...``.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Path of the offending field, as in the JSON.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(field: &str, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// The same error for a configuration nested at `prefix` (e.g. `rollouts[1].config`), so
    /// the message names the field with its full path.
    pub(crate) fn within(self, prefix: &str) -> Self {
        ConfigError {
            field: format!("{prefix}.{}", self.field),
            message: self.message,
        }
    }
}

/// Parses JSON into `T`, naming the offending field with its full path on error, `(root)`
/// for the document itself.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(json: &[u8]) -> Result<T, ConfigError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        ConfigError::new(
            if path == "." { "(root)" } else { &path },
            err.into_inner().to_string(),
        )
    })?;
    de.end()
        .map_err(|err| ConfigError::new("(root)", err.to_string()))?;
    Ok(value)
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A validated configuration, with everything per-request work needs computed once.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The configuration as given.
    pub plugin: PluginConfig,
    /// Version names, stable first (same order as `plugin.versions`).
    pub names: Vec<String>,
    /// Weights in basis points (1/100 of a percent), same order.
    pub basis_points: Vec<u16>,
    /// Bucket ranges of the versions.
    pub buckets: Buckets,
    /// Hash seed derived from the salt.
    pub seed: u64,
    /// Header names, lower-cased as Envoy presents them.
    pub header: String,
    /// Lower-cased override header name.
    pub override_header: String,
    /// Whether finding a client's key may read a header (a `keySources` entry is a header),
    /// rather than only the `Cookie` header the decision reads anyway.
    pub keys_read_headers: bool,
    /// The version a CORS preflight goes to: the first live one, stable unless it is at 0.
    pub preflight_version: usize,
    /// Who may use the QA override.
    pub guard: Guard,
    /// The version header's value per version: the name, sealed when `seal` is set.
    pub stamps: Vec<String>,
    /// Everything after `name=value` in a `Set-Cookie`, precomputed.
    cookie_attributes: String,
}

impl Config {
    /// Parses and validates the JSON of a `pluginConfig`.
    pub fn from_json(json: &[u8]) -> Result<Self, ConfigError> {
        Config::compile(PluginConfig::from_json(json)?)
    }

    /// Validates a parsed configuration and precomputes what requests need.
    pub fn compile(plugin: PluginConfig) -> Result<Self, ConfigError> {
        if plugin.versions.is_empty() {
            return Err(ConfigError::new(
                "versions",
                "at least one version is required",
            ));
        }
        let mut basis_points = Vec::with_capacity(plugin.versions.len());
        for (i, version) in plugin.versions.iter().enumerate() {
            let field = format!("versions[{i}].name");
            names::check_version_name(&version.name).map_err(|m| ConfigError::new(&field, m))?;
            if plugin.versions[..i].iter().any(|v| v.name == version.name) {
                return Err(ConfigError::new(
                    &field,
                    format!("duplicate version name {}", names::quoted(&version.name)),
                ));
            }
            let bp = bucket::percent_to_basis_points(version.weight)
                .map_err(|m| ConfigError::new(&format!("versions[{i}].weight"), m))?;
            if version.drain && bp > 0 {
                return Err(ConfigError::new(
                    &format!("versions[{i}].drain"),
                    "only a version at weight 0 can drain",
                ));
            }
            basis_points.push(bp);
        }
        let total: u32 = basis_points.iter().map(|&b| u32::from(b)).sum();
        if total != u32::from(BUCKETS) {
            return Err(ConfigError::new(
                "versions",
                format!(
                    "weights must sum to 100, they sum to {}",
                    bucket::format_basis_points(total)
                ),
            ));
        }
        names::check_header_name(&plugin.header).map_err(|m| ConfigError::new("header", m))?;
        names::check_header_name(&plugin.override_.header)
            .map_err(|m| ConfigError::new("override.header", m))?;
        if plugin.override_.header.eq_ignore_ascii_case(&plugin.header) {
            return Err(ConfigError::new(
                "override.header",
                "must differ from `header`, or every client could pick its version",
            ));
        }
        // The decision reads these headers for what they say; stamping the version into one,
        // or reading overrides from one, would let a client's cookies or navigation headers
        // pick or change its version (found by the `decide` fuzz target).
        for (field, name) in [
            ("header", &plugin.header),
            ("override.header", &plugin.override_.header),
        ] {
            if READ_BY_DECISION
                .iter()
                .any(|r| name.eq_ignore_ascii_case(r))
            {
                return Err(ConfigError::new(
                    field,
                    format!(
                        "{} is a request header the decision reads for itself",
                        names::quoted(name)
                    ),
                ));
            }
        }
        let guard = compile_guard(&plugin.override_)?;
        let seal = match &plugin.seal {
            Some(seal) => {
                names::check_seal(seal).map_err(|m| ConfigError::new("seal", m))?;
                format!(";{seal}")
            }
            None => String::new(),
        };
        let cookie = &plugin.cookie;
        names::check_cookie_name(&cookie.name).map_err(|m| ConfigError::new("cookie.name", m))?;
        names::check_cookie_name(&cookie.id_name)
            .map_err(|m| ConfigError::new("cookie.idName", m))?;
        if cookie.name == cookie.id_name {
            return Err(ConfigError::new(
                "cookie.idName",
                "must differ from `cookie.name`",
            ));
        }
        if let Some(domain) = &cookie.domain {
            names::check_cookie_domain(domain).map_err(|m| ConfigError::new("cookie.domain", m))?;
        }
        names::check_cookie_path(&cookie.path).map_err(|m| ConfigError::new("cookie.path", m))?;
        if cookie.max_age == 0 {
            return Err(ConfigError::new(
                "cookie.maxAge",
                "must be at least 1 second, or no pin would survive",
            ));
        }
        if cookie.same_site == SameSite::None && !cookie.secure {
            return Err(ConfigError::new(
                "cookie.sameSite",
                "SameSite=None requires secure: true, browsers drop the cookie otherwise",
            ));
        }
        for (i, source) in plugin.key_sources.iter().enumerate() {
            let field = format!("keySources[{i}]");
            match source {
                KeySource::Header(name) => names::check_header_name(name).and_then(|()| {
                    // A key read from the version or override header would let the client's
                    // own value of that header move it between versions.
                    let client_sent = name.eq_ignore_ascii_case(&plugin.header)
                        || name.eq_ignore_ascii_case(&plugin.override_.header);
                    if client_sent {
                        Err("must differ from `header` and `override.header`".to_owned())
                    } else {
                        Ok(())
                    }
                }),
                KeySource::Cookie(name) => names::check_cookie_name(name),
            }
            .map_err(|m| ConfigError::new(&field, m))?;
        }
        let buckets = Buckets::new(&basis_points);
        Ok(Config {
            names: plugin.versions.iter().map(|v| v.name.clone()).collect(),
            seed: bucket::seed(&plugin.salt),
            header: plugin.header.to_ascii_lowercase(),
            override_header: plugin.override_.header.to_ascii_lowercase(),
            keys_read_headers: plugin
                .key_sources
                .iter()
                .any(|source| matches!(source, KeySource::Header(_))),
            cookie_attributes: cookie_attributes(cookie),
            preflight_version: basis_points.iter().position(|&bp| bp > 0).unwrap_or(0),
            guard,
            stamps: plugin
                .versions
                .iter()
                .map(|v| format!("{}{seal}", v.name))
                .collect(),
            basis_points,
            buckets,
            plugin,
        })
    }

    /// Index of the version with this name, live or not.
    pub fn version_index(&self, name: &[u8]) -> Option<usize> {
        self.names.iter().position(|n| n.as_bytes() == name)
    }

    /// Whether the configuration seals its stamps: a trusted hop then stamps too, since the
    /// incoming header carries the plain version and the routes match only sealed ones.
    pub fn is_sealed(&self) -> bool {
        self.plugin.seal.is_some()
    }

    /// Whether the version at `index` receives clients (weight > 0).
    pub fn is_live(&self, index: usize) -> bool {
        self.basis_points.get(index).is_some_and(|&bp| bp > 0)
    }

    /// Whether the version at `index` is switched off but keeps its clients until their next
    /// navigation (`drain`, weight 0).
    pub fn is_draining(&self, index: usize) -> bool {
        self.plugin.versions.get(index).is_some_and(|v| v.drain)
    }

    /// A complete `Set-Cookie` header value for one of the filter's cookies.
    pub fn set_cookie(&self, name: &str, value: &str) -> String {
        let mut out =
            String::with_capacity(name.len() + value.len() + 1 + self.cookie_attributes.len());
        out.push_str(name);
        out.push('=');
        out.push_str(value);
        out.push_str(&self.cookie_attributes);
        out
    }
}

/// The override's guard, refusing contradictions: a token and its digest, or `public` with
/// either (which would say both "anyone" and "only with the token").
fn compile_guard(override_: &OverrideConfig) -> Result<Guard, ConfigError> {
    match (&override_.token, &override_.token_digest, override_.public) {
        (Some(_), Some(_), _) => Err(ConfigError::new(
            "override.token",
            "give the token or its digest (`tokenDigest`), not both",
        )),
        (Some(_), None, true) | (None, Some(_), true) => Err(ConfigError::new(
            "override.public",
            "a public override takes no token: drop `public` or the token",
        )),
        (None, None, true) => Ok(Guard::Public),
        (None, None, false) => Ok(Guard::Off),
        (Some(token), None, false) => {
            names::check_token(token).map_err(|m| ConfigError::new("override.token", m))?;
            Ok(Guard::clear_token(token))
        }
        (None, Some(digest), false) => {
            let key = guard::from_hex(&digest.key)
                .filter(|key| key.len() >= guard::MIN_KEY_LEN)
                .ok_or_else(|| {
                    ConfigError::new(
                        "override.tokenDigest.key",
                        format!(
                            "must be at least {} bytes in hex ({} hex digits)",
                            guard::MIN_KEY_LEN,
                            2 * guard::MIN_KEY_LEN
                        ),
                    )
                })?;
            let digest = guard::from_hex(&digest.hmac_sha256)
                .and_then(|d| <[u8; guard::DIGEST_LEN]>::try_from(d).ok())
                .ok_or_else(|| {
                    ConfigError::new(
                        "override.tokenDigest.hmacSha256",
                        format!("must be {} hex digits", 2 * guard::DIGEST_LEN),
                    )
                })?;
            Ok(Guard::Token { key, digest })
        }
    }
}

fn cookie_attributes(cookie: &CookieConfig) -> String {
    let domain = match &cookie.domain {
        Some(domain) => format!("; Domain={domain}"),
        None => String::new(),
    };
    let mut out = format!("{domain}; Path={}; Max-Age={}", cookie.path, cookie.max_age);
    if cookie.http_only {
        out.push_str("; HttpOnly");
    }
    if cookie.secure {
        out.push_str("; Secure");
    }
    out.push_str(match cookie.same_site {
        SameSite::Lax => "; SameSite=Lax",
        SameSite::Strict => "; SameSite=Strict",
        SameSite::None => "; SameSite=None",
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> ConfigError {
        Config::from_json(json.as_bytes()).expect_err(json)
    }

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = Config::from_json(
            br#"{"versions":[{"name":"v1","weight":90},{"name":"v2","weight":10}]}"#,
        )
        .unwrap();
        assert_eq!(c.names, ["v1", "v2"]);
        assert_eq!(c.basis_points, [9000, 1000]);
        assert_eq!(c.header, "x-sticky-version");
        assert_eq!(c.override_header, "x-sticky-override");
        assert_eq!(c.plugin.cookie.name, "sticky-version");
        assert_eq!(c.plugin.repin, Repin::Navigation);
        assert!(!c.plugin.trust_incoming_header);
        assert_eq!(
            c.set_cookie("sticky-version", "v2"),
            "sticky-version=v2; Path=/; Max-Age=86400; HttpOnly; Secure; SameSite=Lax"
        );
    }

    #[test]
    fn minimal_config_serializes_back_to_itself() {
        let json = r#"{"versions":[{"name":"v1","weight":90.0},{"name":"v2","weight":10.0}]}"#;
        let plugin = PluginConfig::from_json(json.as_bytes()).unwrap();
        assert_eq!(serde_json::to_string(&plugin).unwrap(), json);
        assert_eq!(plugin, PluginConfig::new(plugin.versions.clone()));
    }

    #[test]
    fn full_config_round_trips() {
        let json = r#"{"versions":[{"name":"v1","weight":66.67},{"name":"v2","weight":33.33}],
            "header":"x-ver","cookie":{"name":"ver","idName":"cid","path":"/shop","maxAge":60,
            "httpOnly":false,"secure":false,"sameSite":"Strict"},
            "override":{"header":"x-qa","token":"s3cret"},
            "keySources":[{"header":"x-user-id"},{"cookie":"session"}],
            "salt":"checkout","repin":"expiry","trustIncomingHeader":true}"#;
        let c = Config::from_json(json.as_bytes()).unwrap();
        assert_eq!(c.basis_points, [6667, 3333]);
        assert_eq!(
            c.set_cookie("ver", "v1"),
            "ver=v1; Path=/shop; Max-Age=60; SameSite=Strict"
        );
        let again = serde_json::to_vec(&c.plugin).unwrap();
        assert_eq!(Config::from_json(&again).unwrap(), c);
    }

    #[test]
    fn a_cookie_domain_is_on_both_cookies_and_optional() {
        let c = Config::from_json(
            br#"{"versions":[{"name":"v1","weight":100}],"cookie":{"domain":"shop.example"}}"#,
        )
        .unwrap();
        assert_eq!(c.plugin.cookie.domain.as_deref(), Some("shop.example"));
        for name in ["sticky-version", "sticky-id"] {
            assert_eq!(
                c.set_cookie(name, "x"),
                format!("{name}=x; Domain=shop.example; Path=/; Max-Age=86400; HttpOnly; Secure; SameSite=Lax")
            );
        }
        let json = serde_json::to_string(&c.plugin).unwrap();
        assert!(
            json.contains(
                r#""cookie":{"name":"sticky-version","idName":"sticky-id","domain":"shop.example","#
            ),
            "{json}"
        );
        let host_only = PluginConfig::new(c.plugin.versions.clone());
        assert_eq!(host_only.cookie.domain, None);
        assert!(!serde_json::to_string(&host_only)
            .unwrap()
            .contains("domain"));
    }

    #[test]
    fn bad_configs_name_the_field() {
        let cases = [
            (
                r#"{"versions":[{"name":"v1","weight":100}],"colour":1}"#,
                "colour",
                "unknown field `colour`",
            ),
            (
                r#"{"versions":[{"name":"v1","weight":100,"x":1}]}"#,
                "versions[0].x",
                "unknown field `x`",
            ),
            (r#"{"versions":[]}"#, "versions", "at least one"),
            (r#"{}"#, "(root)", "missing field `versions`"),
            (
                r#"{"versions":[{"name":"v1","weight":90},{"name":"v2","weight":5}]}"#,
                "versions",
                "sum to 95",
            ),
            (
                r#"{"versions":[{"name":"v1","weight":50},{"name":"v1","weight":50}]}"#,
                "versions[1].name",
                "duplicate",
            ),
            (
                r#"{"versions":[{"name":"","weight":100}]}"#,
                "versions[0].name",
                "empty",
            ),
            (
                r#"{"versions":[{"name":"v 1","weight":100}]}"#,
                "versions[0].name",
                "not a valid",
            ),
            (
                r#"{"versions":[{"name":"v1","weight":100.001}]}"#,
                "versions[0].weight",
                "between 0 and 100",
            ),
            (
                r#"{"versions":[{"name":"v1","weight":99.995},{"name":"v2","weight":0.005}]}"#,
                "versions[0].weight",
                "two decimals",
            ),
            (
                r#"{"versions":[{"name":"v1","weight":-1},{"name":"v2","weight":101}]}"#,
                "versions[0].weight",
                "between 0 and 100",
            ),
            (
                r#"{"versions":[{"name":"v1","weight":"100"}]}"#,
                "versions[0].weight",
                "invalid type",
            ),
            (
                r#"{"versions":[{"name":"v1","weight":90,"drain":true},{"name":"v2","weight":10}]}"#,
                "versions[0].drain",
                "only a version at weight 0 can drain",
            ),
            (
                r#"{"versions":[{"name":"v1","weight":100,"drain":"yes"}]}"#,
                "versions[0].drain",
                "invalid type",
            ),
            (
                r#"{"versions":[{"name":"v1","weight":100}],"header":"X Bad"}"#,
                "header",
                "header name",
            ),
            (
                r#"{"versions":[{"name":"v1","weight":100}],"override":{"header":"X-Sticky-Version"}}"#,
                "override.header",
                "differ",
            ),
            (
                r#"{"versions":[{"name":"v1","weight":100}],"override":{"token":"a b"}}"#,
                "override.token",
                "token",
            ),
            (
                r#"{"versions":[{"name":"v1","weight":100}],"cookie":{"name":"a=b"}}"#,
                "cookie.name",
                "cookie name",
            ),
            (
                r#"{"versions":[{"name":"v1","weight":100}],"cookie":{"idName":"sticky-version"}}"#,
                "cookie.idName",
                "differ",
            ),
            (
                r#"{"versions":[{"name":"v1","weight":100}],"cookie":{"domain":"https://shop.example"}}"#,
                "cookie.domain",
                "is not a domain",
            ),
            (
                r#"{"versions":[{"name":"v1","weight":100}],"cookie":{"domain":"shop.example:443"}}"#,
                "cookie.domain",
                "without scheme, port, path",
            ),
            (
                r#"{"versions":[{"name":"v1","weight":100}],"cookie":{"domain":"shop.example/api"}}"#,
                "cookie.domain",
                "is not a domain",
            ),
            (
                r#"{"versions":[{"name":"v1","weight":100}],"cookie":{"domain":""}}"#,
                "cookie.domain",
                "is not a domain",
            ),
            (
                r#"{"versions":[{"name":"v1","weight":100}],"cookie":{"path":"/a;b"}}"#,
                "cookie.path",
                "path",
            ),
            (
                r#"{"versions":[{"name":"v1","weight":100}],"cookie":{"maxAge":0}}"#,
                "cookie.maxAge",
                "at least",
            ),
            (
                r#"{"versions":[{"name":"v1","weight":100}],"cookie":{"sameSite":"None","secure":false}}"#,
                "cookie.sameSite",
                "secure: true",
            ),
            (
                r#"{"versions":[{"name":"v1","weight":100}],"cookie":{"sameSite":"lax"}}"#,
                "cookie.sameSite",
                "unknown variant",
            ),
            (
                r#"{"versions":[{"name":"v1","weight":100}],"keySources":[{"query":"id"}]}"#,
                "keySources[0]",
                "unknown variant",
            ),
            (
                r#"{"versions":[{"name":"v1","weight":100}],"keySources":[{"header":""}]}"#,
                "keySources[0]",
                "empty",
            ),
            (
                r#"{"versions":[{"name":"v1","weight":100}],"repin":"never"}"#,
                "repin",
                "unknown variant",
            ),
            (
                r#"{"versions":[{"name":"v1","weight":100}]} trailing"#,
                "(root)",
                "trailing",
            ),
            (r#"not json"#, "(root)", "expected"),
        ];
        for (json, field, needle) in cases {
            let e = err(json);
            assert_eq!(e.field, field, "{json}: {e}");
            assert!(e.message.contains(needle), "{json}: {e}");
        }
    }

    #[test]
    fn lookups() {
        let c = Config::from_json(
            br#"{"versions":[{"name":"v1","weight":100},{"name":"v2","weight":0}]}"#,
        )
        .unwrap();
        assert_eq!(c.version_index(b"v2"), Some(1));
        assert_eq!(c.version_index(b"v3"), None);
        assert!(c.is_live(0));
        assert!(!c.is_live(1));
        assert!(!c.is_live(2));
        assert!(!c.is_draining(1));
    }

    #[test]
    fn drain_is_opt_in_and_serialized_only_when_set() {
        let json = r#"{"versions":[{"name":"v1","weight":0.0,"drain":true},{"name":"v2","weight":100.0}]}"#;
        let c = Config::from_json(json.as_bytes()).unwrap();
        assert!(c.is_draining(0) && !c.is_live(0));
        assert!(!c.is_draining(1) && !c.is_draining(2));
        assert_eq!(serde_json::to_string(&c.plugin).unwrap(), json);
        let plugin = PluginConfig::new(vec![
            VersionWeight::new("v1", 0.0),
            VersionWeight::new("v2", 100.0),
        ]);
        assert_eq!(
            serde_json::to_string(&plugin).unwrap(),
            r#"{"versions":[{"name":"v1","weight":0.0},{"name":"v2","weight":100.0}]}"#
        );
    }

    /// Found by the `decide` fuzz target: with `override.header` set to `cookie`, a client's
    /// cookies were read as an override, and a wrong one changed its version; with `header`
    /// set to `cookie`, a gateway's decision followed the client's version header. A key read
    /// from a header the client sends to pick versions was as bad.
    #[test]
    fn headers_the_decision_reads_are_refused_for_stamping_overrides_and_keys() {
        let versions = r#""versions":[{"name":"v1","weight":100}]"#;
        for (extra, field) in [
            (r#""header":"cookie""#, "header"),
            (r#""header":"Sec-Fetch-Dest""#, "header"),
            (r#""override":{"header":"cookie"}"#, "override.header"),
            (r#""override":{"header":"purpose"}"#, "override.header"),
            (
                r#""keySources":[{"header":"X-Sticky-Version"}]"#,
                "keySources[0]",
            ),
            (
                r#""keySources":[{"cookie":"s"},{"header":"x-sticky-override"}]"#,
                "keySources[1]",
            ),
            (
                r#""header":"x-v","keySources":[{"header":"x-v"}]"#,
                "keySources[0]",
            ),
        ] {
            let json = format!("{{{versions},{extra}}}");
            let err = Config::from_json(json.as_bytes()).unwrap_err();
            assert_eq!(err.field, field, "{json}: {err}");
        }
        for name in READ_BY_DECISION.iter().filter(|n| !n.starts_with(':')) {
            let json = format!(r#"{{{versions},"header":"{name}"}}"#);
            assert!(Config::from_json(json.as_bytes()).is_err(), "{json}");
        }
        let fine =
            format!(r#"{{{versions},"header":"x-v","keySources":[{{"header":"x-user-id"}}]}}"#);
        assert!(Config::from_json(fine.as_bytes()).is_ok());
    }
}
