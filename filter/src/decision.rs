//! The per-request decision: which version serves this request, and why.
//!
//! Pure: the request is read through [`RequestHeaders`] and randomness comes in as a closure,
//! so the filter, `stickyctl explain` and the tests all run exactly this code.

use std::borrow::Cow;

use crate::bucket::bucket_of;
use crate::config::{Config, KeySource, Repin};
use crate::cookie;
use crate::names::MAX_VERSION_NAME;

/// Longest client key taken from a header or a cookie; longer ones count as absent.
pub const MAX_KEY_LEN: usize = 1024;
/// Longest minted client id accepted back from the id cookie.
pub const MAX_ID_LEN: usize = 64;

/// The request headers the decision reads besides the configured ones (`header`,
/// `override.header`, `keySources`); the configuration refuses to stamp into or override from
/// any of them.
pub const READ_BY_DECISION: &[&str] = &[
    "cookie",
    "sec-fetch-dest",
    "sec-fetch-mode",
    "sec-purpose",
    "purpose",
    "access-control-request-method",
    ":method",
];

/// Read access to the request headers; names are lower-case.
pub trait RequestHeaders {
    /// The value of header `name`, or `None` when absent.
    fn header(&self, name: &str) -> Option<Vec<u8>>;
}

/// Why a version was chosen; each reason is counted per version in the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The QA override header named the version.
    Override,
    /// A mesh-internal hop already carried the version header and the config trusts it.
    Trusted,
    /// The pinning cookie named a live version, and the client keeps it.
    Cookie,
    /// The weighted hash of the client key decided, for a client without a pin (a new
    /// client, or one whose pin names no version in service): these follow the weights.
    Hash,
    /// A pinned client re-hashed at a navigation moved to another version. After a weight
    /// change these all move the same way, so they are counted apart from `hash`.
    Repin,
    /// A CORS preflight, which never carries cookies: sent to the first live version, with
    /// no id minted and no cookie set (see [`is_preflight`]).
    Preflight,
}

impl Reason {
    /// Every reason, in metric order.
    pub const ALL: [Reason; 6] = [
        Reason::Override,
        Reason::Trusted,
        Reason::Cookie,
        Reason::Hash,
        Reason::Repin,
        Reason::Preflight,
    ];

    /// The reason as it appears in metric names and `stickyctl explain`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Override => "override",
            Reason::Trusted => "trusted",
            Reason::Cookie => "cookie",
            Reason::Hash => "hash",
            Reason::Repin => "repin",
            Reason::Preflight => "preflight",
        }
    }
}

/// Where the hashed client key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    /// The key source at this index of `keySources`.
    Source(usize),
    /// The id cookie the filter minted earlier.
    IdCookie,
    /// A fresh id minted for this request.
    Minted,
}

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Index into the configured versions.
    pub version: usize,
    /// Why.
    pub reason: Reason,
    /// For a decision by hash ([`Reason::Hash`], [`Reason::Repin`], and a re-hashed pin that
    /// stayed): where the key came from and its bucket.
    pub hashed: Option<(KeyOrigin, u16)>,
    /// Whether the response must (re)set the version cookie.
    pub set_version_cookie: bool,
    /// A newly minted client id the response must store in the id cookie.
    pub minted_id: Option<String>,
    /// The request carried the override header, which must not reach the upstream (with a
    /// token in it, every service behind the proxy would log the token).
    pub strips_override: bool,
}

impl Decision {
    /// Whether the filter must write the version header. A trusted hop's request already
    /// carries exactly this value, unless stamps are sealed (the incoming header carries the
    /// plain version, and the routes match only sealed ones).
    pub fn stamps_header(&self, config: &Config) -> bool {
        self.reason != Reason::Trusted || config.is_sealed()
    }

    fn fixed(version: usize, reason: Reason) -> Self {
        Decision {
            version,
            reason,
            hashed: None,
            set_version_cookie: false,
            minted_id: None,
            strips_override: false,
        }
    }
}

/// Decides the version for one request. `mint` is called only when a new client id is needed.
pub fn decide(
    config: &Config,
    request: &impl RequestHeaders,
    mint: impl FnOnce() -> String,
) -> Decision {
    let override_value = request.header(&config.override_header);
    let mut decision = decide_with(config, request, override_value.as_deref(), mint);
    decision.strips_override = override_value.is_some();
    decision
}

/// [`decide`], the override header's value read already.
fn decide_with(
    config: &Config,
    request: &impl RequestHeaders,
    override_value: Option<&[u8]>,
    mint: impl FnOnce() -> String,
) -> Decision {
    if let Some(version) = override_value.and_then(|value| override_version(config, value)) {
        return Decision::fixed(version, Reason::Override);
    }
    if config.plugin.trust_incoming_header {
        if let Some(version) = request
            .header(&config.header)
            .and_then(|value| config.version_index(&value))
        {
            return Decision::fixed(version, Reason::Trusted);
        }
    }
    let cookies = request.header("cookie").unwrap_or_default();
    let [version_cookie, id_cookie] = cookie::find_each(
        &cookies,
        [
            (&config.plugin.cookie.name, MAX_VERSION_NAME),
            (&config.plugin.cookie.id_name, MAX_ID_LEN),
        ],
    );
    let pinned = version_cookie
        .and_then(|name| config.version_index(name))
        .filter(|&version| config.is_live(version) || config.is_draining(version));
    // Where the client's key came from and its bucket, worked out at most once (finding the
    // key may take a header read).
    let mut hashed = None;
    if let Some(version) = pinned {
        // A draining version keeps its clients for the rest of their page whatever `repin`
        // says, and loses them at their next navigation.
        let may_repin = config.plugin.repin == Repin::Navigation || config.is_draining(version);
        if !may_repin {
            return Decision::fixed(version, Reason::Cookie);
        }
        // A re-pin would hash the key again. When the key lives in the cookies already read and
        // hashes to the pinned version, re-pinning cannot change anything: keep the pin without
        // reading the navigation headers (each read is a host call, the filter's main cost).
        if !config.keys_read_headers {
            hashed = hashed_key(config, request, &cookies, id_cookie);
            let rehashed = hashed
                .as_ref()
                .map(|&(_, bucket)| config.buckets.version_of(bucket));
            if rehashed == Some(version) {
                return Decision::fixed(version, Reason::Cookie);
            }
        }
        if !is_top_level_navigation(request) || is_speculative(request) {
            return Decision::fixed(version, Reason::Cookie);
        }
    }
    let hashed = hashed.or_else(|| hashed_key(config, request, &cookies, id_cookie));
    let (origin, bucket, minted_id) = match hashed {
        Some((origin, bucket)) => (origin, bucket, None),
        // Only a request without any key can be a preflight, so only those pay for the check.
        None if is_preflight(request) => {
            return Decision::fixed(config.preflight_version, Reason::Preflight);
        }
        None => {
            let id = mint();
            (
                KeyOrigin::Minted,
                bucket_of(config.seed, id.as_bytes()),
                Some(id),
            )
        }
    };
    let version = config.buckets.version_of(bucket);
    let reason = match pinned {
        None => Reason::Hash,
        Some(pin) if pin == version => Reason::Cookie,
        Some(_) => Reason::Repin,
    };
    Decision {
        version,
        reason,
        hashed: Some((origin, bucket)),
        set_version_cookie: pinned != Some(version),
        minted_id,
        strips_override: false,
    }
}

/// The version an override header value names, if the guard lets it through and it is known.
fn override_version(config: &Config, value: &[u8]) -> Option<usize> {
    config.version_index(config.guard.admit(value)?)
}

/// A top-level page load: `Sec-Fetch-Dest: document`, or `Sec-Fetch-Mode: navigate` without a
/// destination. Iframe navigations (`Sec-Fetch-Dest: iframe`) are part of the enclosing page.
pub fn is_top_level_navigation(request: &impl RequestHeaders) -> bool {
    match request.header("sec-fetch-dest") {
        Some(dest) => dest.eq_ignore_ascii_case(b"document"),
        None => request
            .header("sec-fetch-mode")
            .is_some_and(|mode| mode.eq_ignore_ascii_case(b"navigate")),
    }
}

/// A request the browser sends ahead of a navigation the user may never make: speculation
/// rules' prefetch (`Sec-Purpose: prefetch`) and prerender (`Sec-Purpose: prefetch;prerender`),
/// and the older `Purpose: prefetch`. Chromium commits their `Set-Cookie` at once, while the
/// page that asked for them is still open, so such a request must never move a pin.
pub fn is_speculative(request: &impl RequestHeaders) -> bool {
    let purpose = request
        .header("sec-purpose")
        .or_else(|| request.header("purpose"));
    // A structured-header token, possibly with parameters or more items after it.
    purpose.is_some_and(|p| {
        p.len() >= PREFETCH.len()
            && p[..PREFETCH.len()].eq_ignore_ascii_case(PREFETCH)
            && matches!(p.get(PREFETCH.len()), None | Some(b';' | b',' | b' '))
    })
}

const PREFETCH: &[u8] = b"prefetch";

/// A CORS preflight: `OPTIONS` with `Access-Control-Request-Method`. Browsers send it without
/// cookies and ignore the cookies of its response, so deciding it by hash would mint an id and
/// set cookies for nothing, and send it to a version chosen by that throwaway id.
pub fn is_preflight(request: &impl RequestHeaders) -> bool {
    request.header("access-control-request-method").is_some()
        && request
            .header(":method")
            .is_some_and(|method| method == b"OPTIONS")
}

/// The first usable client key's origin and bucket, if the client has a key.
fn hashed_key(
    config: &Config,
    request: &impl RequestHeaders,
    cookies: &[u8],
    id_cookie: Option<&[u8]>,
) -> Option<(KeyOrigin, u16)> {
    client_key(config, request, cookies, id_cookie)
        .map(|(origin, key)| (origin, bucket_of(config.seed, &key)))
}

/// The first usable client key: the configured sources in order, then the minted id cookie
/// (`id_cookie`, already looked up with the version cookie).
/// Keys found in the cookies are borrowed from the `Cookie` header, not copied.
fn client_key<'c>(
    config: &Config,
    request: &impl RequestHeaders,
    cookies: &'c [u8],
    id_cookie: Option<&'c [u8]>,
) -> Option<(KeyOrigin, Cow<'c, [u8]>)> {
    for (index, source) in config.plugin.key_sources.iter().enumerate() {
        let key = match source {
            KeySource::Header(name) => request
                .header(&name.to_ascii_lowercase())
                .filter(|v| {
                    !v.is_empty() && v.len() <= MAX_KEY_LEN && std::str::from_utf8(v).is_ok()
                })
                .map(Cow::Owned),
            KeySource::Cookie(name) => cookie::find(cookies, name, MAX_KEY_LEN).map(Cow::Borrowed),
        };
        if let Some(key) = key {
            return Some((KeyOrigin::Source(index), key));
        }
    }
    id_cookie.map(|id| (KeyOrigin::IdCookie, Cow::Borrowed(id)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PluginConfig, VersionWeight};
    use proptest::prelude::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// Request headers that remember which names the decision asked for.
    struct Req(HashMap<String, Vec<u8>>, RefCell<Vec<String>>);

    impl RequestHeaders for Req {
        fn header(&self, name: &str) -> Option<Vec<u8>> {
            self.1.borrow_mut().push(name.to_owned());
            self.0.get(name).cloned()
        }
    }

    impl Req {
        fn was_read(&self, name: &str) -> bool {
            self.1.borrow().iter().any(|n| n == name)
        }
    }

    fn req(headers: &[(&str, &[u8])]) -> Req {
        Req(
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_vec()))
                .collect(),
            RefCell::default(),
        )
    }

    fn config(extra: &str, v1: f64, v2: f64) -> Config {
        let json = format!(
            r#"{{"versions":[{{"name":"v1","weight":{v1}}},{{"name":"v2","weight":{v2}}}]{extra}}}"#
        );
        Config::from_json(json.as_bytes()).unwrap()
    }

    fn no_mint() -> String {
        panic!("minted although a key was present")
    }

    const PUBLIC: &str = r#","override":{"public":true}"#;

    #[test]
    fn override_wins_even_at_weight_zero() {
        let c = config(PUBLIC, 100.0, 0.0);
        let d = decide(
            &c,
            &req(&[
                ("x-sticky-override", b"v2"),
                ("cookie", b"sticky-version=v1"),
            ]),
            no_mint,
        );
        assert_eq!(
            (d.version, d.reason, d.set_version_cookie, d.strips_override),
            (1, Reason::Override, false, true)
        );
    }

    #[test]
    fn the_override_is_off_unless_guarded_or_public() {
        let c = config("", 100.0, 0.0);
        let d = decide(
            &c,
            &req(&[("x-sticky-override", b"v2"), ("cookie", b"sticky-id=abc")]),
            no_mint,
        );
        assert_eq!((d.version, d.reason), (0, Reason::Hash));
        assert!(
            d.strips_override,
            "ignored, and still kept from the upstream"
        );
        let plain = decide(&c, &req(&[("cookie", b"sticky-id=abc")]), no_mint);
        assert!(!plain.strips_override, "nothing to remove: no host call");
    }

    #[test]
    fn a_token_digest_guards_like_the_token_it_digests() {
        let key = [7u8; 16];
        let digest = crate::config::TokenDigest::of("s3cret", &key);
        let json = format!(
            r#","override":{{"tokenDigest":{{"key":"{}","hmacSha256":"{}"}}}}"#,
            digest.key, digest.hmac_sha256
        );
        let c = config(&json, 100.0, 0.0);
        let cookie: (&str, &[u8]) = ("cookie", b"sticky-id=abc");
        let forced =
            |value: &[u8]| decide(&c, &req(&[("x-sticky-override", value), cookie]), no_mint);
        assert_eq!(forced(b"v2:s3cret").reason, Reason::Override);
        assert_eq!(forced(b"v2").reason, Reason::Hash);
        assert_eq!(forced(b"v2:s3cre").reason, Reason::Hash);
        assert_eq!(forced(b"v2:S3cret").reason, Reason::Hash);
    }

    #[test]
    fn unknown_override_counts_as_absent() {
        let c = config(PUBLIC, 100.0, 0.0);
        let d = decide(
            &c,
            &req(&[("x-sticky-override", b"v9"), ("cookie", b"sticky-id=abc")]),
            no_mint,
        );
        assert_eq!((d.version, d.reason), (0, Reason::Hash));
    }

    #[test]
    fn override_token_guard() {
        let c = config(r#","override":{"token":"s3cret"}"#, 100.0, 0.0);
        let cookie: (&str, &[u8]) = ("cookie", b"sticky-id=abc");
        for (value, expect) in [
            (&b"v2:s3cret"[..], Some(1)),
            (b"v2", None),
            (b"v2:wrong", None),
            (b"v2:s3cret2", None),
            (b"v2:", None),
            (b":s3cret", None),
        ] {
            let d = decide(&c, &req(&[("x-sticky-override", value), cookie]), no_mint);
            match expect {
                Some(v) => assert_eq!((d.version, d.reason), (v, Reason::Override)),
                None => assert_eq!(
                    d.reason,
                    Reason::Hash,
                    "{:?}",
                    String::from_utf8_lossy(value)
                ),
            }
        }
    }

    #[test]
    fn spoofed_version_header_is_ignored_unless_trusted() {
        let c = config("", 100.0, 0.0);
        let r = req(&[("x-sticky-version", b"v2"), ("cookie", b"sticky-id=abc")]);
        assert_eq!(decide(&c, &r, no_mint).version, 0);
        let trusting = config(r#","trustIncomingHeader":true"#, 100.0, 0.0);
        let d = decide(&trusting, &r, no_mint);
        assert_eq!((d.version, d.reason), (1, Reason::Trusted));
        assert!(
            !d.stamps_header(&trusting),
            "the trusted value is already in place"
        );
        assert!(
            decide(&c, &r, no_mint).stamps_header(&c),
            "the spoofed value is overwritten"
        );
        let sealed = config(
            r#","trustIncomingHeader":true,"seal":"0123456789abcdef""#,
            100.0,
            0.0,
        );
        let d = decide(&sealed, &r, no_mint);
        assert_eq!((d.version, d.reason), (1, Reason::Trusted));
        assert!(
            d.stamps_header(&sealed),
            "the routes match sealed stamps only"
        );
        assert_eq!(
            sealed.stamps,
            ["v1;0123456789abcdef", "v2;0123456789abcdef"]
        );
        let bogus = req(&[("x-sticky-version", b"v9"), ("cookie", b"sticky-id=abc")]);
        assert_eq!(decide(&trusting, &bogus, no_mint).reason, Reason::Hash);
    }

    #[test]
    fn live_cookie_pins_sub_resources() {
        let c = config("", 0.0, 100.0);
        let d = decide(
            &c,
            &req(&[
                ("cookie", b"sticky-version=v1; sticky-id=i1"),
                ("sec-fetch-dest", b"script"),
            ]),
            no_mint,
        );
        assert_eq!(
            (d.version, d.reason, d.set_version_cookie),
            (1, Reason::Hash, true),
            "weight 0 pins nobody"
        );
        let c = config("", 50.0, 50.0);
        for headers in [
            &[("cookie", &b"sticky-version=v2"[..])][..],
            &[
                ("cookie", b"sticky-version=v2"),
                ("sec-fetch-dest", b"script"),
                ("sec-fetch-mode", b"no-cors"),
            ],
            &[
                ("cookie", b"sticky-version=v2"),
                ("sec-fetch-dest", b"iframe"),
                ("sec-fetch-mode", b"navigate"),
            ],
            &[
                ("cookie", b"sticky-version=v2"),
                ("sec-fetch-mode", b"cors"),
            ],
        ] {
            let d = decide(&c, &req(headers), no_mint);
            assert_eq!(
                (d.version, d.reason, d.set_version_cookie),
                (1, Reason::Cookie, false)
            );
        }
    }

    #[test]
    fn a_draining_version_keeps_its_pins_until_the_next_navigation() {
        let drained =
            r#"{"versions":[{"name":"v1","weight":0,"drain":true},{"name":"v2","weight":100}]"#;
        for repin in ["navigation", "expiry"] {
            let json = format!(r#"{drained},"repin":"{repin}"}}"#);
            let c = Config::from_json(json.as_bytes()).unwrap();
            for dest in [&b"script"[..], b"style", b"empty", b"iframe"] {
                let d = decide(
                    &c,
                    &req(&[
                        ("cookie", b"sticky-version=v1; sticky-id=i1"),
                        ("sec-fetch-dest", dest),
                    ]),
                    no_mint,
                );
                assert_eq!(
                    (d.version, d.reason, d.set_version_cookie),
                    (0, Reason::Cookie, false),
                    "{repin}: {}",
                    String::from_utf8_lossy(dest)
                );
            }
            let no_fetch_metadata = decide(&c, &req(&[("cookie", b"sticky-version=v1")]), no_mint);
            assert_eq!(no_fetch_metadata.reason, Reason::Cookie, "{repin}");
            for nav in [
                &[("sec-fetch-dest", &b"document"[..])][..],
                &[("sec-fetch-mode", b"navigate")],
            ] {
                let mut h = vec![("cookie", &b"sticky-version=v1; sticky-id=i1"[..])];
                h.extend_from_slice(nav);
                let d = decide(&c, &req(&h), no_mint);
                assert_eq!(
                    (d.version, d.reason, d.set_version_cookie),
                    (1, Reason::Repin, true),
                    "{repin}: a navigation leaves the drained version"
                );
            }
            let new_client = decide(&c, &req(&[("sec-fetch-dest", b"script")]), || "m".into());
            assert_eq!((new_client.version, new_client.reason), (1, Reason::Hash));
        }
        // Without `drain`, the same switch is immediate, and `repin: expiry` keeps live pins.
        let c = config(r#","repin":"expiry""#, 0.0, 100.0);
        let r = req(&[
            ("cookie", b"sticky-version=v1; sticky-id=i1"),
            ("sec-fetch-dest", b"script"),
        ]);
        assert_eq!(decide(&c, &r, no_mint).version, 1);
    }

    #[test]
    fn navigation_re_decides_unless_repin_is_expiry() {
        let c = config(r#","keySources":[{"header":"x-user-id"}]"#, 50.0, 50.0);
        // Find users in each version.
        let user_in = |v: usize| {
            (0..)
                .map(|i| format!("u{i}"))
                .find(|u| c.buckets.version_for_key(c.seed, u.as_bytes()) == v)
                .unwrap()
        };
        let stable_user = user_in(0);
        for nav in [
            &[("sec-fetch-dest", &b"document"[..])][..],
            &[("sec-fetch-mode", b"navigate")],
        ] {
            let mut h = vec![
                ("cookie", &b"sticky-version=v2"[..]),
                ("x-user-id", stable_user.as_bytes()),
            ];
            h.extend_from_slice(nav);
            let d = decide(&c, &req(&h), no_mint);
            assert_eq!(
                (d.version, d.reason, d.set_version_cookie),
                (0, Reason::Repin, true)
            );
            assert_eq!(d.hashed.unwrap().0, KeyOrigin::Source(0));
            // Re-hashed to the version it is pinned to, the client keeps its pin: `cookie`,
            // so `repin` counts only the clients a weight change moved.
            let mut h = vec![
                ("cookie", &b"sticky-version=v1"[..]),
                ("x-user-id", stable_user.as_bytes()),
            ];
            h.extend_from_slice(nav);
            let d = decide(&c, &req(&h), no_mint);
            assert_eq!(
                (d.version, d.reason, d.set_version_cookie),
                (0, Reason::Cookie, false)
            );
            assert_eq!(d.hashed.unwrap().0, KeyOrigin::Source(0));
            // The same user without a pin is a new client: `hash`.
            let mut h = vec![("x-user-id", stable_user.as_bytes())];
            h.extend_from_slice(nav);
            let d = decide(&c, &req(&h), no_mint);
            assert_eq!((d.version, d.reason), (0, Reason::Hash));
        }
        let expiry = config(
            r#","keySources":[{"header":"x-user-id"}],"repin":"expiry""#,
            50.0,
            50.0,
        );
        let h = [
            ("cookie", &b"sticky-version=v2"[..]),
            ("x-user-id", stable_user.as_bytes()),
            ("sec-fetch-dest", b"document"),
        ];
        assert_eq!(decide(&expiry, &req(&h), no_mint).reason, Reason::Cookie);
        // Navigation that lands on the same version does not rewrite the cookie.
        let canary_user = user_in(1);
        let h = [
            ("cookie", &b"sticky-version=v2"[..]),
            ("x-user-id", canary_user.as_bytes()),
            ("sec-fetch-dest", b"document"),
        ];
        let d = decide(&c, &req(&h), no_mint);
        assert_eq!((d.version, d.set_version_cookie), (1, false));
    }

    #[test]
    fn a_pin_its_id_confirms_is_kept_without_reading_the_navigation_headers() {
        let c = config("", 50.0, 50.0);
        let navigation: (&str, &[u8]) = ("sec-fetch-dest", b"document");
        let confirmed = format!("sticky-version=v2; sticky-id={}", id_in(&c, 1));
        let r = req(&[("cookie", confirmed.as_bytes()), navigation]);
        let d = decide(&c, &r, no_mint);
        assert_eq!(
            (d.version, d.reason, d.set_version_cookie),
            (1, Reason::Cookie, false)
        );
        assert!(!r.was_read("sec-fetch-dest") && !r.was_read("sec-fetch-mode"));
        // The weights moved since this client was pinned: its navigation re-pins it.
        let moved = format!("sticky-version=v2; sticky-id={}", id_in(&c, 0));
        let r = req(&[("cookie", moved.as_bytes()), navigation]);
        let d = decide(&c, &r, no_mint);
        assert_eq!(
            (d.version, d.reason, d.set_version_cookie),
            (0, Reason::Repin, true)
        );
        assert!(r.was_read("sec-fetch-dest"));
        // Within a page the moved pin holds.
        let r = req(&[("cookie", moved.as_bytes()), ("sec-fetch-dest", b"script")]);
        assert_eq!(decide(&c, &r, no_mint).reason, Reason::Cookie);
    }

    /// An id that hashes to version `v` of `c`.
    fn id_in(c: &Config, v: usize) -> String {
        (0..)
            .map(|i| format!("id{i}"))
            .find(|id| c.buckets.version_for_key(c.seed, id.as_bytes()) == v)
            .unwrap()
    }

    #[test]
    fn speculative_requests_never_move_a_pin() {
        let c = config("", 50.0, 50.0);
        // Pinned to v2 while the id now hashes to v1: a real navigation would move it.
        let moved = format!("sticky-version=v2; sticky-id={}", id_in(&c, 0));
        let navigation: [(&str, &[u8]); 2] = [
            ("sec-fetch-dest", b"document"),
            ("sec-fetch-mode", b"navigate"),
        ];
        let prefetch_link: [(&str, &[u8]); 2] =
            [("sec-fetch-dest", b"empty"), ("sec-fetch-mode", b"no-cors")];
        let prerendered_script: [(&str, &[u8]); 2] = [
            ("sec-fetch-dest", b"script"),
            ("sec-fetch-mode", b"no-cors"),
        ];
        // (fetch metadata, purpose header, its value, whether the pin may move)
        type Case<'a> = (&'a [(&'a str, &'a [u8])], &'a str, &'a [u8], bool);
        let cases: [Case; 12] = [
            (&navigation, "sec-purpose", b"prefetch", false),
            (&navigation, "sec-purpose", b"prefetch;prerender", false),
            (
                &navigation,
                "sec-purpose",
                b"prefetch;anonymous-client-ip",
                false,
            ),
            (&navigation, "sec-purpose", b"Prefetch", false),
            (&navigation, "purpose", b"prefetch", false),
            (&navigation[..1], "purpose", b"prefetch", false),
            (&navigation[1..], "sec-purpose", b"prefetch", false),
            (&prefetch_link, "sec-purpose", b"prefetch", false),
            (
                &prerendered_script,
                "sec-purpose",
                b"prefetch;prerender",
                false,
            ),
            // Not speculative: the navigation moves the pin.
            (&navigation, "sec-purpose", b"prefetcher", true),
            (&navigation, "purpose", b"preview", true),
            (&navigation, "x-purpose", b"prefetch", true),
        ];
        for (metadata, purpose, value, moves) in cases {
            let mut headers = vec![("cookie", moved.as_bytes()), (purpose, value)];
            headers.extend_from_slice(metadata);
            let d = decide(&c, &req(&headers), no_mint);
            let expected = if moves {
                (0, Reason::Repin, true)
            } else {
                (1, Reason::Cookie, false)
            };
            assert_eq!(
                (d.version, d.reason, d.set_version_cookie),
                expected,
                "{metadata:?} {purpose}: {}",
                String::from_utf8_lossy(value)
            );
        }
        // A draining pin is kept too; a client without a pin is decided and pinned as usual.
        let drained = Config::from_json(
            br#"{"versions":[{"name":"v1","weight":0,"drain":true},{"name":"v2","weight":100}]}"#,
        )
        .unwrap();
        let mut headers = vec![
            ("cookie", &b"sticky-version=v1; sticky-id=i1"[..]),
            ("sec-purpose", b"prefetch;prerender"),
        ];
        headers.extend_from_slice(&navigation);
        let d = decide(&drained, &req(&headers), no_mint);
        assert_eq!((d.version, d.reason), (0, Reason::Cookie));
        headers[0].1 = b"sticky-id=i1";
        let d = decide(&drained, &req(&headers), no_mint);
        assert_eq!(
            (d.version, d.reason, d.set_version_cookie),
            (1, Reason::Hash, true)
        );
    }

    #[test]
    fn a_preflight_goes_to_the_first_live_version_without_an_id_or_cookies() {
        let preflight: [(&str, &[u8]); 3] = [
            (":method", b"OPTIONS"),
            ("access-control-request-method", b"POST"),
            ("x-sticky-version", b"v2"),
        ];
        for (v1, v2, expected) in [(50.0, 50.0, 0), (100.0, 0.0, 0), (0.0, 100.0, 1)] {
            let c = config("", v1, v2);
            let d = decide(&c, &req(&preflight), no_mint);
            assert_eq!(
                (d.version, d.reason, d.set_version_cookie, &d.minted_id),
                (expected, Reason::Preflight, false, &None),
                "{v1}/{v2}"
            );
            assert!(
                d.stamps_header(&c),
                "a spoofed version header is overwritten"
            );
        }
        let c = config("", 0.0, 100.0);
        // Not preflights: decided and pinned as any new client.
        for headers in [
            &[(":method", &b"OPTIONS"[..])][..],
            &[
                (":method", b"GET"),
                ("access-control-request-method", b"POST"),
            ],
            &[
                (":method", b"options"),
                ("access-control-request-method", b"POST"),
            ],
        ] {
            let d = decide(&c, &req(headers), || "m".into());
            assert_eq!(
                (d.reason, d.minted_id.as_deref()),
                (Reason::Hash, Some("m"))
            );
        }
        // A preflight that does carry a pin, a key or an override is decided as usual.
        let pinned: Vec<(&str, &[u8])> =
            [&preflight[..2], &[("cookie", b"sticky-version=v2")]].concat();
        assert_eq!(decide(&c, &req(&pinned), no_mint).reason, Reason::Cookie);
        let keyed: Vec<(&str, &[u8])> = [&preflight[..2], &[("cookie", b"sticky-id=i1")]].concat();
        assert_eq!(decide(&c, &req(&keyed), no_mint).reason, Reason::Hash);
        let forced: Vec<(&str, &[u8])> =
            [&preflight[..2], &[("x-sticky-override", b"v1")]].concat();
        let public = config(PUBLIC, 0.0, 100.0);
        assert_eq!(
            decide(&public, &req(&forced), no_mint).reason,
            Reason::Override
        );
    }

    #[test]
    fn key_sources_in_order_then_id_cookie_then_mint() {
        let c = config(
            r#","keySources":[{"header":"x-user-id"},{"cookie":"session"}]"#,
            50.0,
            50.0,
        );
        let d = decide(
            &c,
            &req(&[
                ("x-user-id", b"alice"),
                ("cookie", b"session=s1; sticky-id=i1"),
            ]),
            no_mint,
        );
        assert_eq!(
            d.hashed.unwrap(),
            (
                KeyOrigin::Source(0),
                crate::bucket::bucket_of(c.seed, b"alice")
            )
        );
        let d = decide(
            &c,
            &req(&[("cookie", b"session=s1; sticky-id=i1")]),
            no_mint,
        );
        assert_eq!(
            d.hashed.unwrap(),
            (
                KeyOrigin::Source(1),
                crate::bucket::bucket_of(c.seed, b"s1")
            )
        );
        let d = decide(
            &c,
            &req(&[("x-user-id", b"\xff"), ("cookie", b"sticky-id=i1")]),
            no_mint,
        );
        assert_eq!(
            d.hashed.unwrap().0,
            KeyOrigin::IdCookie,
            "non-UTF-8 header counts as absent"
        );
        let d = decide(
            &c,
            &req(&[("x-user-id", b""), ("cookie", b"sticky-id=bad value")]),
            || "minted1".into(),
        );
        assert_eq!(
            d.hashed.unwrap(),
            (
                KeyOrigin::Minted,
                crate::bucket::bucket_of(c.seed, b"minted1")
            )
        );
        assert_eq!(d.minted_id.as_deref(), Some("minted1"));
        assert!(d.set_version_cookie);
        let long = "k".repeat(MAX_KEY_LEN + 1);
        let d = decide(&c, &req(&[("x-user-id", long.as_bytes())]), || "m".into());
        assert_eq!(
            d.hashed.unwrap().0,
            KeyOrigin::Minted,
            "oversized key counts as absent"
        );
    }

    #[test]
    fn malformed_or_unknown_cookie_counts_as_absent() {
        let c = config("", 50.0, 50.0);
        for cookie in [
            &b"sticky-version=v9"[..],
            b"sticky-version=v2 x",
            b"sticky-version",
            b"\xff\xfe",
            b"sticky-version=\"v2",
        ] {
            let d = decide(&c, &req(&[("cookie", cookie)]), || "m".into());
            assert_eq!(
                d.reason,
                Reason::Hash,
                "{:?}",
                String::from_utf8_lossy(cookie)
            );
            assert!(d.set_version_cookie);
        }
    }

    proptest! {
        /// A client that keeps its cookies gets the same version on every sub-resource request.
        #[test]
        fn sticky_across_requests(id in "[a-f0-9]{32}", canary in 0u16..=100) {
            let c = config("", f64::from(100 - canary), f64::from(canary));
            let first = decide(&c, &req(&[]), || id.clone());
            let cookie = format!("sticky-id={id}; sticky-version={}", c.names[first.version]);
            for _ in 0..3 {
                let d = decide(&c, &req(&[("cookie", cookie.as_bytes()), ("sec-fetch-dest", b"image")]), no_mint);
                prop_assert_eq!(d.version, first.version);
            }
            let nav = decide(&c, &req(&[("cookie", cookie.as_bytes()), ("sec-fetch-dest", b"document")]), no_mint);
            prop_assert_eq!(nav.version, first.version);
        }

        /// A client pinned to a draining version keeps it on every sub-resource and leaves it
        /// at its next navigation; nobody lands on it by hash.
        #[test]
        fn a_drained_pin_lasts_exactly_until_the_next_navigation(
            id in "[a-f0-9]{32}",
            drained_first in any::<bool>(),
            subresources in proptest::collection::vec(
                prop_oneof![Just(&b"script"[..]), Just(&b"style"[..]), Just(&b"empty"[..]), Just(&b"image"[..])],
                0..6,
            ),
        ) {
            let (drained, other) = if drained_first { (0, 1) } else { (1, 0) };
            let mut versions = [VersionWeight::new("v1", 100.0), VersionWeight::new("v2", 100.0)];
            versions[drained].weight = 0.0;
            versions[drained].drain = true;
            let c = Config::compile(PluginConfig::new(versions.to_vec())).unwrap();
            let fresh = decide(&c, &req(&[("sec-fetch-dest", b"document")]), || id.clone());
            prop_assert_eq!(fresh.version, other);
            let cookie = format!("sticky-id={id}; sticky-version={}", c.names[drained]);
            for dest in subresources {
                let d = decide(&c, &req(&[("cookie", cookie.as_bytes()), ("sec-fetch-dest", dest)]), no_mint);
                prop_assert_eq!((d.version, d.reason), (drained, Reason::Cookie));
            }
            let nav = decide(&c, &req(&[("cookie", cookie.as_bytes()), ("sec-fetch-dest", b"document")]), no_mint);
            prop_assert_eq!((nav.version, nav.set_version_cookie), (other, true));
        }

        /// Whatever the weights, a speculative request keeps a live pin and sets no cookie.
        #[test]
        fn no_speculative_request_moves_a_pin(
            id in "[a-f0-9]{32}",
            canary in 1u16..100,
            pinned_canary in any::<bool>(),
            value in prop_oneof![Just("prefetch"), Just("prefetch;prerender"), Just("PREFETCH")],
            legacy in any::<bool>(),
        ) {
            let c = config("", f64::from(100 - canary), f64::from(canary));
            let pin = usize::from(pinned_canary);
            let cookie = format!("sticky-id={id}; sticky-version={}", c.names[pin]);
            let purpose = if legacy { "purpose" } else { "sec-purpose" };
            let d = decide(&c, &req(&[("cookie", cookie.as_bytes()), ("sec-fetch-dest", b"document"), (purpose, value.as_bytes())]), no_mint);
            prop_assert_eq!((d.version, d.set_version_cookie, d.minted_id), (pin, false, None));
        }

        /// The decision reads the configured headers and [`READ_BY_DECISION`], nothing else:
        /// the configuration can then keep the two apart.
        #[test]
        fn reads_only_the_headers_it_names(values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 9)) {
            let c = config(r#","keySources":[{"header":"X-User-Id"},{"cookie":"session"}],"trustIncomingHeader":true"#, 50.0, 50.0);
            let names = ["cookie", "x-sticky-override", "x-sticky-version", "x-user-id", "sec-fetch-dest", "sec-fetch-mode", "sec-purpose", ":method", "access-control-request-method"];
            let r = Req(names.iter().map(|n| n.to_string()).zip(values).collect(), RefCell::default());
            decide(&c, &r, || "m".into());
            for name in r.1.borrow().iter() {
                prop_assert!(READ_BY_DECISION.contains(&name.as_str()) || ["x-sticky-override", "x-sticky-version", "x-user-id"].contains(&name.as_str()), "{}", name);
            }
        }

        /// Never panics, whatever the headers hold.
        #[test]
        fn arbitrary_headers(values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 5)) {
            let c = config(r#","keySources":[{"header":"x-user-id"},{"cookie":"session"}],"trustIncomingHeader":true"#, 50.0, 50.0);
            let names = ["cookie", "x-sticky-override", "x-sticky-version", "x-user-id", "sec-fetch-dest"];
            let r = Req(names.iter().map(|n| n.to_string()).zip(values).collect(), RefCell::default());
            let d = decide(&c, &r, || "m".into());
            prop_assert!(d.version < 2);
        }
    }
}
