//! The filter's inputs: its configuration (both forms), the requests it decides, the `Cookie`
//! header it reads.

use arbitrary::Unstructured;
use sticky_canary_filter::config::{
    CookieConfig, KeySource, OverrideConfig, Repin, TokenDigest, DEFAULT_HEADER,
    DEFAULT_OVERRIDE_HEADER,
};
use sticky_canary_filter::cookie;
use sticky_canary_filter::decision::MAX_KEY_LEN;
use sticky_canary_filter::guard::Guard;
use sticky_canary_filter::names::is_cookie_value;
use sticky_canary_filter::{
    decide as decide_version, Config, Decision, FilterConfig, PluginConfig, Reason, RequestHeaders,
    Rollouts, VersionWeight,
};

/// The single-rollout parser: whatever the bytes, an error or a configuration; both entry
/// points agree; an accepted configuration, written back as stickyctl writes it, reads back to
/// the same configuration and compiles to the same precomputed form.
pub fn filter_config(data: &[u8]) {
    let plugin = PluginConfig::from_json(data);
    let config = Config::from_json(data);
    let Ok(plugin) = plugin else {
        assert_eq!(plugin.err(), config.err(), "the two parsers disagree");
        return;
    };
    let compiled = Config::compile(plugin.clone());
    assert_eq!(compiled, config, "Config::from_json is not parse + compile");
    assert_eq!(plugin.validate().is_ok(), compiled.is_ok());
    // The filter accepts exactly the single-rollout configurations Rollouts accepts.
    let single = Rollouts::from_json(data);
    assert_eq!(
        single.as_ref().err(),
        compiled.as_ref().err(),
        "Rollouts and Config disagree on a single-rollout configuration"
    );

    let written = serde_json::to_vec(&plugin).expect("a parsed configuration serializes");
    let reread = PluginConfig::from_json(&written)
        .unwrap_or_else(|e| panic!("its own serialization is refused: {e}"));
    assert_eq!(
        serde_json::to_vec(&reread).expect("serializes"),
        written,
        "write, read, write is not stable"
    );
    let recompiled = Config::compile(reread);
    match (&compiled, &recompiled) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.names, b.names);
            assert_eq!(a.basis_points, b.basis_points);
            assert_eq!(a.buckets, b.buckets);
            assert_eq!(a.seed, b.seed);
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("validity changed through a round trip: {compiled:?} / {recompiled:?}"),
    }
}

/// Either form of a whole `pluginConfig`: the wire parser and the filter's direct parser agree,
/// the wire form round-trips, and every service of an accepted multi-rollout configuration
/// selects its own rollout from an Istio cluster name.
pub fn rollouts(data: &[u8]) {
    let wire = FilterConfig::from_json(data);
    let compiled = Rollouts::from_json(data);
    let Ok(wire) = wire else {
        assert_eq!(
            wire.err(),
            compiled.err(),
            "FilterConfig and Rollouts disagree"
        );
        return;
    };
    let via_wire = Rollouts::compile(wire.clone());
    match (&compiled, &via_wire) {
        (Ok(a), Ok(b)) => assert_eq!(a.rollouts(), b.rollouts()),
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("Rollouts::from_json and compile(FilterConfig) disagree"),
    }
    assert_eq!(wire.validate().is_ok(), compiled.is_ok());

    let written = serde_json::to_vec(&wire).expect("a parsed configuration serializes");
    let reread = FilterConfig::from_json(&written)
        .unwrap_or_else(|e| panic!("its own serialization is refused: {e}"));
    assert_eq!(
        serde_json::to_vec(&reread).expect("serializes"),
        written,
        "write, read, write is not stable"
    );
    assert_eq!(reread.validate().is_ok(), compiled.is_ok());

    let Ok(compiled) = compiled else { return };
    match &wire {
        FilterConfig::Single(_) => {
            let (index, _) = compiled
                .select(|| panic!("the single form read the cluster name"))
                .expect("the single form decides every request");
            assert_eq!(index, 0);
        }
        FilterConfig::Rollouts(config) => {
            for (i, rollout) in config.rollouts.iter().enumerate() {
                for service in &rollout.services {
                    let cluster = format!("outbound|8080|v1|{service}");
                    let selected = compiled.select(|| Some(cluster.into_bytes()));
                    assert_eq!(selected.map(|(index, _)| index), Some(i), "{service}");
                }
            }
            assert!(compiled.select(|| None).is_none());
            assert!(compiled
                .select(|| Some(b"inbound|8080||".to_vec()))
                .is_none());
        }
    }
}

/// `Cookie` header parsing: bytes 0 and 1 pick two cookie names, byte 2 a length bound, the
/// rest is the header. A value found is non-empty, within the bound and made of cookie-octets;
/// one pass for both names finds what two lookups find; and both match the plain reference
/// (split on `;`, trim, the first pair named so decides).
pub fn cookie(data: &[u8]) {
    const NAMES: [&str; 6] = ["sticky-version", "sticky-id", "SESSIONID", "a", "", "x="];
    let byte = |i: usize| data.get(i).copied().unwrap_or(0);
    let first = NAMES[usize::from(byte(0)) % NAMES.len()];
    let second = NAMES[usize::from(byte(1)) % NAMES.len()];
    let max_len = match byte(2) {
        255 => MAX_KEY_LEN,
        n => usize::from(n),
    };
    let header = data.get(3..).unwrap_or_default();
    let a = cookie::find(header, first, max_len);
    let b = cookie::find(header, second, max_len);
    for value in [a, b].into_iter().flatten() {
        assert!(!value.is_empty() && value.len() <= max_len && is_cookie_value(value));
    }
    assert_eq!(
        cookie::find_each(header, [(first, max_len), (second, max_len)]),
        [a, b]
    );
    assert_eq!(a, find_reference(header, first, max_len));
}

/// The lookup as first written (`filter/src/cookie.rs`'s test reference).
fn find_reference<'a>(header: &'a [u8], name: &str, max_len: usize) -> Option<&'a [u8]> {
    let prefix = format!("{name}=");
    let pair = header
        .split(|&b| b == b';')
        .map(trim)
        .find(|pair| pair.starts_with(prefix.as_bytes()))?;
    let mut value = &pair[prefix.len()..];
    if value.len() >= 2 && value[0] == b'"' && value[value.len() - 1] == b'"' {
        value = &value[1..value.len() - 1];
    }
    (!value.is_empty() && value.len() <= max_len && is_cookie_value(value)).then_some(value)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Configurations from the README and the tests, which a quarter of the inputs decide with.
const EXAMPLES: &[&str] = &[
    r#"{"versions": [{"name": "v1", "weight": 90}, {"name": "v2", "weight": 10}]}"#,
    r#"{"versions": [{"name": "v1", "weight": 100}, {"name": "v2", "weight": 0}], "override": {"token": "s3cret"}}"#,
    r#"{"versions": [{"name": "v1", "weight": 100}, {"name": "v2", "weight": 0}], "override": {"public": true}}"#,
    r#"{"versions": [{"name": "v1", "weight": 50}, {"name": "v2", "weight": 50}], "trustIncomingHeader": true}"#,
    r#"{"versions": [{"name": "v1", "weight": 70}, {"name": "v2", "weight": 30}], "keySources": [{"header": "x-user-id"}, {"cookie": "SESSIONID"}], "salt": "shop"}"#,
    r#"{"versions": [{"name": "v2", "weight": 100}, {"name": "v1", "weight": 0, "drain": true}]}"#,
    r#"{"versions": [{"name": "v1", "weight": 66.67}, {"name": "v2", "weight": 33.33}], "repin": "expiry", "cookie": {"name": "sticky-version.prod.shop", "domain": "shop.example"}}"#,
];

/// Version names the generated configurations use (all valid).
const VERSION_NAMES: [&str; 5] = ["v1", "v2", "canary", "stable-1.2", "V_3"];
/// Tokens the generated configurations use.
const TOKENS: [&str; 3] = ["s3cret", "t", "a:b"];

/// `decide` with its oracles. The bytes build a configuration (one of [`EXAMPLES`], or one
/// generated field by field) and a request whose headers are drawn from what the decision
/// reads, with values near what matters (version names, tokens, cookies) or arbitrary. Then:
///
/// - no input panics, and the decision is deterministic;
/// - on a gateway (`trustIncomingHeader: false`), removing or changing the client's version
///   header never changes the decision;
/// - an override that is not authentic (see [`authentic_override`]) decides exactly as no
///   override does, and an authentic one decides its version;
/// - the version is a configured one, and live (weight > 0) unless it came from an override,
///   a trusted hop (which keeps what the gateway stamped, an override or drained pin
///   included) or a draining pin.
pub fn decide(data: &[u8]) {
    let mut input = Input(Unstructured::new(data));
    let Some((config, token)) = config_from(&mut input) else {
        return;
    };
    let token = token.as_deref();
    let request = request_from(&mut input, &config, token);
    let decision = decide_on(&config, &request);
    assert_eq!(decision, decide_on(&config, &request), "not deterministic");
    check_decision(&config, &request, &decision);

    if !config.plugin.trust_incoming_header {
        let mut spoofs = vec![None, Some(b"\xff".to_vec())];
        spoofs.extend(config.names.iter().map(|n| Some(n.as_bytes().to_vec())));
        for spoof in spoofs {
            let spoofed = request.with(&config.header, spoof.clone());
            assert_eq!(
                decide_on(&config, &spoofed),
                decision,
                "a client-sent {} header {:?} changed a gateway's decision",
                config.header,
                spoof.map(|s| String::from_utf8_lossy(&s).into_owned())
            );
        }
    }

    let without_override = request.with(&config.override_header, None);
    let plain = decide_on(&config, &without_override);
    let known = token.unwrap_or_default().as_bytes();
    let mut overrides: Vec<Vec<u8>> = request.values(&config.override_header);
    for name in &config.names {
        let forms: [&[&[u8]]; 5] = [
            &[name.as_bytes()],
            &[name.as_bytes(), b":"],
            &[name.as_bytes(), b":", known, b"x"],
            &[name.as_bytes(), b":", &known[..known.len() / 2]],
            &[name.as_bytes(), b":", known],
        ];
        overrides.extend(forms.iter().map(|parts| parts.concat()));
    }
    for value in overrides {
        let with = request.with(&config.override_header, Some(value.clone()));
        let decided = decide_on(&config, &with);
        assert!(
            decided.strips_override,
            "the override header would reach the upstream"
        );
        match authentic_override(&config, token, &value) {
            Some(version) => assert_eq!(
                (decided.version, decided.reason),
                (version, Reason::Override),
                "an authentic override {:?} was not honoured",
                String::from_utf8_lossy(&value)
            ),
            // The same decision, but for removing the header before the upstream.
            None => assert_eq!(
                decided,
                Decision {
                    strips_override: true,
                    ..plain.clone()
                },
                "an override without the right token {:?} changed the decision",
                String::from_utf8_lossy(&value)
            ),
        }
    }
}

/// The version an override header value may force, if it is authentic: nothing when the
/// override is off, `<version>` when it is public, `<version>:<token>` with the token the
/// harness configured (in clear, or as its keyed digest, which the harness made from it).
fn authentic_override(config: &Config, token: Option<&str>, value: &[u8]) -> Option<usize> {
    let name = match (&config.guard, token) {
        (Guard::Off, _) | (Guard::Token { .. }, None) => return None,
        (Guard::Public, _) => value,
        (Guard::Token { .. }, Some(token)) => {
            value.strip_suffix(token.as_bytes())?.strip_suffix(b":")?
        }
    };
    config.version_index(name)
}

/// What every decision satisfies, whatever the request.
fn check_decision(config: &Config, request: &Request, decision: &Decision) {
    let version = decision.version;
    assert!(
        version < config.names.len(),
        "no such version: {decision:?}"
    );
    let exempt = match decision.reason {
        Reason::Override | Reason::Trusted => true,
        Reason::Cookie => config.is_draining(version),
        Reason::Hash | Reason::Repin | Reason::Preflight => false,
    };
    assert!(
        exempt || config.is_live(version),
        "{} at weight 0 decided by {:?} for {request:?}",
        config.names[version],
        decision.reason
    );
    let by_hash = matches!(decision.reason, Reason::Hash | Reason::Repin);
    // A pin re-hashed to its own version stays `cookie`, with its hash kept for `explain`.
    assert!(decision.hashed.is_some() || !by_hash);
    assert!(decision.hashed.is_none() || by_hash || decision.reason == Reason::Cookie);
    // A new pin is set exactly for a client without one (`hash`) or a moved one (`repin`).
    assert_eq!(decision.set_version_cookie, by_hash);
    if let Some(id) = &decision.minted_id {
        assert_eq!(id, MINTED);
    }
}

/// The id the harness mints, so that two decisions of one request compare equal.
const MINTED: &str = "0123456789abcdef0123456789abcdef";

fn decide_on(config: &Config, request: &Request) -> Decision {
    decide_version(config, request, || MINTED.to_owned())
}

/// A request: its headers in order, names lower-case as Envoy gives them; the first of a name
/// is the one read.
#[derive(Debug, Clone)]
struct Request(Vec<(String, Vec<u8>)>);

impl RequestHeaders for Request {
    fn header(&self, name: &str) -> Option<Vec<u8>> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
}

impl Request {
    /// The same request with header `name` removed, or set to `value` alone.
    fn with(&self, name: &str, value: Option<Vec<u8>>) -> Request {
        let mut headers: Vec<_> = self.0.iter().filter(|(n, _)| n != name).cloned().collect();
        if let Some(value) = value {
            headers.push((name.to_owned(), value));
        }
        Request(headers)
    }

    fn values(&self, name: &str) -> Vec<Vec<u8>> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// The fuzzer's bytes as choices; running out of bytes chooses the first option.
struct Input<'a>(Unstructured<'a>);

impl Input<'_> {
    fn below(&mut self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        self.0.int_in_range(0..=n - 1).unwrap_or(0)
    }

    fn flag(&mut self) -> bool {
        self.below(2) == 1
    }

    fn pick<'s, T>(&mut self, items: &'s [T]) -> &'s T {
        &items[self.below(items.len())]
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1).min(self.0.len());
        self.0.bytes(n).map(<[u8]>::to_vec).unwrap_or_default()
    }

    fn text(&mut self, max: usize) -> String {
        String::from_utf8_lossy(&self.bytes(max)).into_owned()
    }
}

/// A configuration: one of the examples, or generated (then possibly invalid: `None`), with
/// the override token it was made with, in clear.
fn config_from(input: &mut Input) -> Option<(Config, Option<String>)> {
    if input.below(4) == 0 {
        let json = input.pick(EXAMPLES);
        let config = Config::from_json(json.as_bytes()).expect("the examples are valid");
        let token = config.plugin.override_.token.clone();
        return Some((config, token));
    }
    let count = 1 + input.below(4);
    // Weights in basis points: cuts of 0..=10000, so that they sum to 100%.
    let mut cuts: Vec<u32> = (1..count).map(|_| input.below(10_001) as u32).collect();
    cuts.sort_unstable();
    cuts.insert(0, 0);
    cuts.push(10_000);
    let mut versions = Vec::with_capacity(count);
    for i in 0..count {
        let bp = cuts[i + 1] - cuts[i];
        let name = if input.below(16) == 0 {
            input.text(8)
        } else {
            VERSION_NAMES[(i + input.below(2)) % VERSION_NAMES.len()].to_owned()
        };
        let mut version = VersionWeight::new(name, f64::from(bp) / 100.0);
        version.drain = bp == 0 && input.flag();
        versions.push(version);
    }
    let mut plugin = PluginConfig::new(versions);
    // Now and then a header the decision reads for something else.
    const READ: [&str; 3] = ["cookie", "Sec-Fetch-Dest", "x-user-id"];
    let read = READ[input.below(3)];
    plugin.header = input
        .pick(&[DEFAULT_HEADER, DEFAULT_HEADER, "X-Version", "x-v", read])
        .to_string();
    let read = READ[input.below(3)];
    plugin.override_ = OverrideConfig {
        header: input
            .pick(&[
                DEFAULT_OVERRIDE_HEADER,
                DEFAULT_OVERRIDE_HEADER,
                "x-qa",
                read,
            ])
            .to_string(),
        ..OverrideConfig::default()
    };
    let token = match input.below(5) {
        0 | 1 => None,
        2 => Some(input.text(6)),
        n => Some(TOKENS[n - 3 + input.below(2)].to_owned()),
    };
    match (&token, input.below(3)) {
        (None, 0) => plugin.override_.public = true,
        (None, _) => {}
        (Some(token), 0) => plugin.override_.token = Some(token.clone()),
        (Some(token), _) => {
            plugin.override_.token_digest =
                Some(TokenDigest::of(token, &[input.below(256) as u8; 16]))
        }
    }
    if input.flag() {
        plugin.seal = Some("0123456789abcdef".to_owned());
    }
    if input.flag() {
        plugin.cookie = CookieConfig {
            name: "sv".to_owned(),
            id_name: "sid".to_owned(),
            ..CookieConfig::default()
        };
    }
    for _ in 0..input.below(3) {
        plugin.key_sources.push(match input.below(8) {
            0..=2 => KeySource::Header("X-User-Id".to_owned()),
            3..=4 => KeySource::Cookie("SESSIONID".to_owned()),
            5 => KeySource::Header("x-tenant".to_owned()),
            // The headers a client controls and the decision must not depend on.
            6 => KeySource::Header(plugin.header.clone()),
            _ => KeySource::Header(plugin.override_.header.clone()),
        });
    }
    plugin.salt = input.text(4);
    plugin.repin = if input.flag() {
        Repin::Expiry
    } else {
        Repin::Navigation
    };
    plugin.trust_incoming_header = input.below(3) == 0;
    Some((Config::compile(plugin).ok()?, token))
}

/// A request whose headers the decision reads, with values close to what matters.
fn request_from(input: &mut Input, config: &Config, token: Option<&str>) -> Request {
    let mut headers = Vec::new();
    for _ in 0..input.below(9) {
        let (name, value) = match input.below(9) {
            0 => (
                config.override_header.clone(),
                override_value(input, config, token),
            ),
            1 => (config.header.clone(), version_value(input, config)),
            2 | 3 => ("cookie".to_owned(), cookie_value(input, config)),
            4 => (
                "sec-fetch-dest".to_owned(),
                pick_or_bytes(input, &["document", "iframe", "empty", "DOCUMENT"]),
            ),
            5 => (
                "sec-fetch-mode".to_owned(),
                pick_or_bytes(input, &["navigate", "cors", "no-cors"]),
            ),
            6 => (
                input.pick(&["sec-purpose", "purpose"]).to_string(),
                pick_or_bytes(input, &["prefetch", "prefetch;prerender", "prefetchx"]),
            ),
            7 => (
                input
                    .pick(&[":method", "access-control-request-method"])
                    .to_string(),
                pick_or_bytes(input, &["OPTIONS", "GET", "options"]),
            ),
            _ => (
                input.pick(&["x-user-id", "x-tenant"]).to_string(),
                pick_or_bytes(input, &["alice", "bob", ""]),
            ),
        };
        headers.push((name, value));
    }
    Request(headers)
}

fn pick_or_bytes(input: &mut Input, values: &[&str]) -> Vec<u8> {
    if input.below(5) == 0 {
        input.bytes(16)
    } else {
        input.pick(values).as_bytes().to_vec()
    }
}

fn version_value(input: &mut Input, config: &Config) -> Vec<u8> {
    if input.below(4) == 0 {
        input.bytes(12)
    } else {
        input.pick(&config.names).as_bytes().to_vec()
    }
}

fn override_value(input: &mut Input, config: &Config, token: Option<&str>) -> Vec<u8> {
    let mut value = version_value(input, config);
    match input.below(4) {
        0 => {}
        1 => {
            value.push(b':');
            value.extend(input.bytes(8));
        }
        _ => {
            value.push(b':');
            let token = token.unwrap_or("s3cret");
            value.extend_from_slice(token.as_bytes());
            if input.flag() {
                value.extend(input.bytes(2));
            }
        }
    }
    value
}

fn cookie_value(input: &mut Input, config: &Config) -> Vec<u8> {
    if input.below(6) == 0 {
        return input.bytes(64);
    }
    let cookie = &config.plugin.cookie;
    let mut pairs = Vec::new();
    for _ in 0..1 + input.below(4) {
        let name = match input.below(4) {
            0 => cookie.name.clone(),
            1 => cookie.id_name.clone(),
            2 => "SESSIONID".to_owned(),
            _ => "other".to_owned(),
        };
        let value = match input.below(4) {
            0 => input.pick(&config.names).as_bytes().to_vec(),
            1 => MINTED.as_bytes().to_vec(),
            2 => input.bytes(10),
            _ => input.pick(&[&b"alice"[..], b"\"v2\"", b""]).to_vec(),
        };
        let mut pair = name.into_bytes();
        pair.push(b'=');
        pair.extend(value);
        pairs.push(pair);
    }
    pairs.join(&b"; "[..])
}
