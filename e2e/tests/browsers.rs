//! What a real browser does to the page promise (a page and everything it loads come from one
//! version): Debian's Chromium, driven by Playwright, loads pages through the real Envoy with
//! the built filter while the weights change in the middle of each page.
//!
//! Every case checks each page from inside it: the page's own script ran (`window.app`, which
//! a 404 of the page's script would leave unset), its API call and a late load of its script
//! went to the version that served the page, and no response the tab saw was a 404. Each case
//! also has a control run with the behaviour the filter had before (Envoy removing, before the
//! filter, the request headers the new rules read; or the setting left out), which shows the
//! case catches the failure.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use render::envoy::{render_cds, render_lds, EnvoyLayout};
use serde::Deserialize;
use serde_json::{json, Value};
use sticky_canary_e2e::chromium::{Chromium, Seen, Tab};
use sticky_canary_e2e::envoy::{Envoy, EnvoyOptions, Site};
use sticky_canary_e2e::site::{PAGES, WHOAMI};
use sticky_canary_e2e::stack::weights;
use sticky_canary_e2e::upstream::Upstream;
use sticky_canary_filter::config::{Config, Repin, DEFAULT_ID_COOKIE};
use sticky_canary_filter::PluginConfig;

/// The test domain the browser resolves to 127.0.0.1 (`--host-resolver-rules`).
const DOMAIN: &str = "shop.test";

/// Counts of the filter's decisions by `(version, reason)`.
type Decisions = BTreeMap<(String, String), u64>;

/// Which version served a page, and which answered each of its API calls.
type Answers = (String, Vec<String>);

/// How long no request must come for a page to count as settled.
const QUIET: Duration = Duration::from_millis(700);

/// Headers Envoy removes before the filter sees them, for a control run.
type Strip = &'static [&'static str];

/// The upstreams of v1 and v2 behind an Envoy running the filter.
struct Rig {
    envoy: Envoy,
    _upstreams: Vec<Upstream>,
    strip: Strip,
}

impl Rig {
    fn start(plugin: &PluginConfig, strip: Strip) -> Rig {
        let bin = Path::new(env!("CARGO_BIN_EXE_sticky-upstream"));
        let upstreams: Vec<Upstream> = plugin
            .versions
            .iter()
            .map(|v| Upstream::spawn(bin, &v.name).expect("an upstream starts"))
            .collect();
        let site = Site {
            upstreams: upstreams
                .iter()
                .map(|u| (u.version.clone(), u.address))
                .collect(),
            render: Box::new(move |layout: &EnvoyLayout| {
                Ok((listener(plugin, layout, strip), render_cds(layout)))
            }),
            probe_host: None,
        };
        let envoy = Envoy::start_site(&site, EnvoyOptions::default()).expect("Envoy starts");
        Rig {
            envoy,
            _upstreams: upstreams,
            strip,
        }
    }

    fn port(&self) -> u16 {
        self.envoy.listener().port()
    }

    /// A URL of the site on 127.0.0.1.
    fn local(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port())
    }

    /// A URL of the site on `host` of the test domain.
    fn on(&self, host: &str, path: &str) -> String {
        format!("http://{host}.{DOMAIN}:{}{path}", self.port())
    }

    /// Changes the weights live and waits until Envoy serves them and has closed the
    /// connections of the old listener or filter chain (which keep the old configuration:
    /// Chromium would go on sending its requests there).
    fn ramp(&mut self, plugin: &PluginConfig) {
        let lds = listener(plugin, self.envoy.layout(), self.strip);
        self.envoy.write_lds(&lds).unwrap();
        self.envoy.wait_for_lds_file().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let draining = |envoy: &Envoy| {
            ["total_listeners_draining", "total_filter_chains_draining"]
                .iter()
                .map(|gauge| envoy.stat(&format!("listener_manager.{gauge}")).unwrap())
                .sum::<u64>()
        };
        while draining(&self.envoy) > 0 {
            assert!(Instant::now() < deadline, "the old listener never drained");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The filter's decisions so far.
    fn decisions(&self) -> Decisions {
        self.envoy
            .stats()
            .unwrap()
            .into_iter()
            .filter_map(|(name, count)| {
                let rest = name.split_once("sticky_canary.decisions.version.")?.1;
                let (version, reason) = rest.split_once(".reason.")?;
                Some(((version.to_owned(), reason.to_owned()), count))
            })
            .collect()
    }

    /// The number of decisions so far.
    fn decided(&self) -> u64 {
        self.decisions().values().sum()
    }

    /// Waits until the filter has decided at least `more` requests after `before`, then until
    /// no more come for a while (a prerendered page loads what it needs after its document).
    fn wait_for_decisions(&self, before: u64, more: u64) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last = (self.decided(), Instant::now());
        loop {
            let now = self.decided();
            if now != last.0 {
                last = (now, Instant::now());
            }
            if now >= before + more && last.1.elapsed() > QUIET {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the filter decided {now} requests, expected {more} more than {before}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The listener for `plugin`, removing the `strip` headers before the filter (Envoy's early
/// header mutation runs before any HTTP filter).
fn listener(plugin: &PluginConfig, layout: &EnvoyLayout, strip: Strip) -> Value {
    let mut lds = render_lds(plugin, layout).expect("the listener renders");
    if !strip.is_empty() {
        let mutations: Vec<Value> = strip.iter().map(|h| json!({ "remove": h })).collect();
        lds["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"]
            ["early_header_mutation_extensions"] = json!([{
            "name": "envoy.http.early_header_mutation.header_mutation",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation",
                "mutations": mutations,
            },
        }]);
    }
    lds
}

/// What a page found out about itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct PageCheck {
    /// The version that served the document.
    page: String,
    /// The version whose script ran on it (none when the script 404ed).
    app: Option<String>,
    /// The version that answered its API call (or what went wrong).
    api: String,
    /// The status of a late load of its own script.
    asset: u16,
}

impl PageCheck {
    /// Whether everything the page loaded came from its own version.
    fn consistent(&self) -> bool {
        self.app.as_deref() == Some(self.page.as_str())
            && self.api == self.page
            && self.asset == 200
    }
}

/// Checks the page open in `tab`: its script, an API call (to `api`, with the cookies) and a
/// late load of its own script.
fn check(browser: &mut Chromium, tab: Tab, api: &str) -> PageCheck {
    let js = format!(
        r#"(async () => {{
            const page = document.body.dataset.version;
            const api = await fetch({api:?}, {{ credentials: 'include' }}).then(
                async (r) => (r.ok ? (await r.json()).version : `status ${{r.status}}`),
                (e) => `failed: ${{e}}`);
            const asset = await fetch(`/assets/app-${{page}}.js`).then((r) => r.status);
            return {{ page, app: window.app ?? null, api, asset }};
        }})()"#
    );
    browser.eval(tab, &js).unwrap()
}

/// The 404s among what `tab` received.
fn not_found(browser: &mut Chromium, tab: Tab) -> Vec<Seen> {
    let seen = browser.responses(tab).unwrap();
    seen.into_iter().filter(|r| r.status == 404).collect()
}

/// Chromium, resolving the test domain to 127.0.0.1 and taking the rig's `www.` and `api.`
/// origins for secure ones, as HTTPS origins would be: browsers send Fetch Metadata
/// (`Sec-Fetch-*`), which tells the filter a navigation, only to secure origins (127.0.0.1 is
/// one), and the tests serve plain HTTP.
fn launch(rig: &Rig) -> Chromium {
    let rules = format!("--host-resolver-rules=MAP *.{DOMAIN} 127.0.0.1");
    let secure = format!(
        "--unsafely-treat-insecure-origin-as-secure={},{}",
        rig.on("www", ""),
        rig.on("api", "")
    );
    match Chromium::launch(&[&rules, &secure]) {
        Ok(browser) => browser,
        Err(err) => panic!("the real-browser tests need Chromium, Node.js and playwright-core (make setup): {err:#}"),
    }
}

/// The weights before and after the ramp: everybody starts on v1, and the client's id is one
/// that 90% moves to v2 at its next navigation.
fn before_and_after(configure: impl Fn(&mut PluginConfig)) -> (PluginConfig, PluginConfig, String) {
    let mut before = weights(&[("v1", 100.0), ("v2", 0.0)]);
    let mut after = weights(&[("v1", 10.0), ("v2", 90.0)]);
    configure(&mut before);
    configure(&mut after);
    let compiled = Config::compile(after.clone()).unwrap();
    let id = (0..)
        .map(|i| format!("client{i}"))
        .find(|id| {
            compiled
                .buckets
                .version_for_key(compiled.seed, id.as_bytes())
                == 1
        })
        .unwrap();
    (before, after, id)
}

/// No secure cookies on plain HTTP (a browser drops them).
fn plain_http(plugin: &mut PluginConfig) {
    plugin.cookie.secure = false;
}

/// What one speculative case saw.
#[derive(Debug)]
struct Speculated {
    /// The page open while the browser speculated, checked after the speculation.
    open_page: PageCheck,
    /// The page the speculation prepared, once the user clicked through to it.
    activated: PageCheck,
    /// The next page that is a real navigation.
    next: PageCheck,
    /// 404s the tab saw.
    not_found: Vec<Seen>,
}

/// A page loads from v1, the weights move to 10/90, the page asks the browser to `kind`
/// (`prefetch` or `prerender`) the next page, then checks itself; then the user clicks through
/// to the prepared page, then navigates on.
fn speculate(kind: &str, strip: Strip) -> Speculated {
    let (before, after, id) = before_and_after(plain_http);
    let mut rig = Rig::start(&before, strip);
    let mut browser = launch(&rig);
    let tab = browser.tab().unwrap();
    browser
        .add_cookie(&rig.local("/"), DEFAULT_ID_COOKIE, &id)
        .unwrap();
    browser.goto(tab, &rig.local(PAGES[0])).unwrap();
    rig.ramp(&after);
    let decided = rig.decided();
    let rules = json!({ kind: [{ "source": "list", "urls": [PAGES[1]] }] });
    browser
        .eval::<Value>(
            tab,
            &format!(
                "(() => {{ const s = document.createElement('script'); s.type = 'speculationrules'; \
                 s.textContent = {:?}; document.head.append(s); }})()",
                rules.to_string()
            ),
        )
        .unwrap();
    // The document (a prerendered page then loads what it needs).
    rig.wait_for_decisions(decided, 1);
    let open_page = check(&mut browser, tab, WHOAMI);
    browser
        .eval::<Value>(
            tab,
            &format!("document.querySelector('a[href=\"{}\"]').click()", PAGES[1]),
        )
        .unwrap();
    browser.wait_for_url(tab, &rig.local(PAGES[1])).unwrap();
    let activated = check(&mut browser, tab, WHOAMI);
    browser.goto(tab, &rig.local(PAGES[0])).unwrap();
    let next = check(&mut browser, tab, WHOAMI);
    Speculated {
        open_page,
        activated,
        next,
        not_found: not_found(&mut browser, tab),
    }
}

/// The speculative request headers the filter reads, removed for the control run.
const PURPOSE: Strip = &["sec-purpose", "purpose"];

/// Speculation rules' prefetch and prerender during a ramp: the speculative requests are served
/// by the pinned version and leave the pin alone, so the open page keeps its version; the
/// prepared page is the pinned version's; the pin moves at the next real navigation. Without
/// the rule (control), the speculative request re-pins the client while the page is open, and
/// the open page's next requests go to the other version.
#[test]
fn speculation_rules_prefetch_and_prerender_never_move_a_pin_mid_page() {
    for kind in ["prefetch", "prerender"] {
        let run = speculate(kind, &[]);
        println!("{kind}: {run:?}");
        let v1 = |c: &PageCheck| c.page == "v1" && c.consistent();
        assert!(v1(&run.open_page), "{kind}: {run:?}");
        assert!(
            v1(&run.activated),
            "{kind}: the prepared page is v1's: {run:?}"
        );
        assert!(
            run.next.page == "v2" && run.next.consistent(),
            "{kind}: the next real navigation moves the pin: {run:?}"
        );
        assert!(run.not_found.is_empty(), "{kind}: {run:?}");

        let control = speculate(kind, PURPOSE);
        println!("{kind}, control: {control:?}");
        assert_eq!(control.open_page.page, "v1", "{kind}: {control:?}");
        assert!(
            !control.open_page.consistent(),
            "{kind}: without the rule the open page mixes versions: {control:?}"
        );
    }
}

/// Whether the page in `tab` was restored from the back/forward cache (see [`watch_restores`]).
fn restored(browser: &mut Chromium, tab: Tab) -> bool {
    browser.eval(tab, "window.restored === true").unwrap()
}

/// Makes the page in `tab` remember a restore from the back/forward cache.
fn watch_restores(browser: &mut Chromium, tab: Tab) {
    browser
        .eval::<Value>(
            tab,
            "window.addEventListener('pageshow', (e) => { window.restored = e.persisted; })",
        )
        .unwrap();
}

/// What two tabs saw: tab A stays on its page while tab B navigates, then goes back.
#[derive(Debug)]
struct TwoTabs {
    /// Tab B's new page.
    navigated: PageCheck,
    /// Tab A's page, loaded before the ramp, checked after tab B's navigation.
    other_tab: PageCheck,
    /// Tab B's first page again, after history back.
    back: PageCheck,
    /// Whether it came from the back/forward cache.
    back_from_cache: bool,
    /// 404s the tabs saw.
    not_found: Vec<Seen>,
}

fn two_tabs(repin: Repin) -> TwoTabs {
    let (before, after, id) = before_and_after(|plugin| {
        plain_http(plugin);
        plugin.repin = repin;
    });
    let mut rig = Rig::start(&before, &[]);
    let mut browser = launch(&rig);
    let (a, b) = (browser.tab().unwrap(), browser.tab().unwrap());
    browser
        .add_cookie(&rig.local("/"), DEFAULT_ID_COOKIE, &id)
        .unwrap();
    browser.goto(a, &rig.local(PAGES[0])).unwrap();
    browser.goto(b, &rig.local(PAGES[0])).unwrap();
    watch_restores(&mut browser, b);
    rig.ramp(&after);
    browser.goto(b, &rig.local(PAGES[1])).unwrap();
    let navigated = check(&mut browser, b, WHOAMI);
    let other_tab = check(&mut browser, a, WHOAMI);
    browser.back(b).unwrap();
    let back_from_cache = restored(&mut browser, b);
    let back = check(&mut browser, b, WHOAMI);
    let mut not_found = not_found(&mut browser, a);
    not_found.extend(self::not_found(&mut browser, b));
    TwoTabs {
        navigated,
        other_tab,
        back,
        back_from_cache,
        not_found,
    }
}

/// Two tabs of one browser share its cookies. During a ramp, a navigation in one tab re-pins
/// the client, and the page still open in the other tab, and the page the back/forward cache
/// restores, then load from the new version: the measured effect, every later request of
/// those pages. With `repin: expiry` pins do not move while the cookie lives, and no page
/// mixes (the documented way to remove the effect, at the cost of weight changes reaching
/// pinned clients only when their cookie expires).
#[test]
fn two_tabs_share_the_pin_a_navigation_in_one_moves_the_others_unless_pins_last_until_expiry() {
    let kept = two_tabs(Repin::Expiry);
    println!("repin expiry: {kept:?}");
    for page in [&kept.navigated, &kept.other_tab, &kept.back] {
        assert!(page.page == "v1" && page.consistent(), "{kept:?}");
    }
    assert!(kept.not_found.is_empty(), "{kept:?}");

    let moved = two_tabs(Repin::Navigation);
    println!("repin navigation: {moved:?}");
    assert!(
        moved.navigated.page == "v2" && moved.navigated.consistent(),
        "{moved:?}"
    );
    let mixed = |page: &PageCheck| page.page == "v1" && page.api == "v2" && page.asset == 404;
    assert!(
        mixed(&moved.other_tab),
        "the other tab's page mixes: {moved:?}"
    );
    assert!(
        moved.back_from_cache,
        "Chromium restored the page: {moved:?}"
    );
    assert!(mixed(&moved.back), "so does the restored page: {moved:?}");
}

/// A page on `www.` calling the API on `api.` of the same domain, during a ramp, with the
/// cookies' `domain` set to the shared domain (or host-only, the control): the page loads
/// from v1 and calls the API, the weights move to 10/90, the page calls it again, then the
/// client navigates (and moves to v2) and the new page calls it.
fn sibling_hosts(domain: Option<&str>) -> [PageCheck; 3] {
    let (before, after, id) = before_and_after(|plugin| {
        plain_http(plugin);
        plugin.cookie.domain = domain.map(str::to_owned);
    });
    let mut rig = Rig::start(&before, &[]);
    let mut browser = launch(&rig);
    let tab = browser.tab().unwrap();
    let scope = match domain {
        Some(domain) => format!(".{domain}"),
        None => rig.on("www", "/"),
    };
    browser.add_cookie(&scope, DEFAULT_ID_COOKIE, &id).unwrap();
    let api = rig.on("api", WHOAMI);
    browser.goto(tab, &rig.on("www", PAGES[0])).unwrap();
    let first = check(&mut browser, tab, &api);
    rig.ramp(&after);
    let same_page = check(&mut browser, tab, &api);
    browser.goto(tab, &rig.on("www", PAGES[1])).unwrap();
    let next = check(&mut browser, tab, &api);
    assert!(not_found(&mut browser, tab).is_empty());
    [first, same_page, next]
}

/// With `cookie.domain`, the API host gets the page's pin: every page's API calls go to its
/// own version, before and after the ramp. Host-only cookies (the control) give the API host a
/// pin of its own, which stays on v1 while the pages move to v2.
#[test]
fn a_page_on_www_calls_the_api_on_a_sibling_host_with_the_pages_version() {
    let shared = sibling_hosts(Some(DOMAIN));
    println!("domain {DOMAIN}: {shared:?}");
    let versions: Vec<&str> = shared.iter().map(|c| c.page.as_str()).collect();
    assert_eq!(versions, ["v1", "v1", "v2"], "{shared:?}");
    assert!(shared.iter().all(PageCheck::consistent), "{shared:?}");

    let host_only = sibling_hosts(None);
    println!("host-only: {host_only:?}");
    assert_eq!(host_only[2].page, "v2", "{host_only:?}");
    assert_eq!(
        host_only[2].api, "v1",
        "host-only cookies: the API keeps its own pin: {host_only:?}"
    );
}

/// The request header that makes a CORS preflight one, removed for the control run.
const PREFLIGHT: Strip = &["access-control-request-method"];

/// How many preflighted calls each page makes.
const CALLS: usize = 3;

/// A page on `www.` makes `CALLS` preflighted calls (a custom header) to `api.` with
/// credentials, the weights move to 10/90, the client navigates (to v2) and the new page makes
/// as many: which version answered each call, per page, and the decisions the filter made.
fn preflighted(strip: Strip) -> (Vec<Answers>, Decisions) {
    let (before, after, id) = before_and_after(|plugin| {
        plain_http(plugin);
        plugin.cookie.domain = Some(DOMAIN.to_owned());
    });
    let mut rig = Rig::start(&before, strip);
    let mut browser = launch(&rig);
    let tab = browser.tab().unwrap();
    browser
        .add_cookie(&format!(".{DOMAIN}"), DEFAULT_ID_COOKIE, &id)
        .unwrap();
    let calls = format!(
        r#"(async () => {{
            const answers = [];
            for (let i = 0; i < {CALLS}; i++) {{
                const r = await fetch({:?}, {{ credentials: 'include', headers: {{ 'x-shop-client': 'web' }} }})
                    .then(async (r) => (r.ok ? (await r.json()).version : `status ${{r.status}}`), (e) => `failed: ${{e}}`);
                answers.push(r);
            }}
            return [document.body.dataset.version, answers];
        }})()"#,
        rig.on("api", WHOAMI)
    );
    browser.goto(tab, &rig.on("www", PAGES[0])).unwrap();
    rig.ramp(&after);
    let before_calls = rig.decisions();
    let mut pages = vec![browser.eval(tab, &calls).unwrap()];
    browser.goto(tab, &rig.on("www", PAGES[1])).unwrap();
    pages.push(browser.eval(tab, &calls).unwrap());
    assert!(not_found(&mut browser, tab).is_empty());
    let decided = rig
        .decisions()
        .into_iter()
        .map(|(series, count)| {
            let before = before_calls.get(&series).copied().unwrap_or(0);
            (series, count - before)
        })
        .filter(|&(_, count)| count > 0)
        .collect();
    (pages, decided)
}

/// CORS preflights carry no cookies. The filter sends them to the first live version (v1 at
/// 10/90) without minting an id or setting a cookie, and the calls themselves, which carry the
/// cookies, go to the page's version. Without the rule (control), each preflight is a new
/// client: an id minted, hashed (to v2 for most) and cookies set that the browser throws away.
#[test]
fn cors_preflights_mint_no_id_and_the_calls_keep_the_pages_version() {
    let (pages, decided) = preflighted(&[]);
    println!("{pages:?} {decided:?}");
    for (page, answers) in &pages {
        assert!(answers.iter().all(|a| a == page), "{pages:?}");
    }
    let page_versions: Vec<&str> = pages.iter().map(|(v, _)| v.as_str()).collect();
    assert_eq!(page_versions, ["v1", "v2"]);
    let key = |v: &str, r: &str| (v.to_owned(), r.to_owned());
    assert_eq!(
        decided.get(&key("v1", "preflight")),
        Some(&(2 * CALLS as u64)),
        "{decided:?}"
    );
    // The navigation that moved the pinned client (`repin`), and nothing else, was hashed.
    let of = |decided: &Decisions, reason: &str| -> u64 {
        decided
            .iter()
            .filter(|((_, r), _)| r == reason)
            .map(|(_, count)| count)
            .sum()
    };
    assert_eq!(
        (of(&decided, "hash"), of(&decided, "repin")),
        (0, 1),
        "{decided:?}"
    );

    let (control, decided) = preflighted(PREFLIGHT);
    println!("control: {control:?} {decided:?}");
    assert_eq!(
        (of(&decided, "hash"), of(&decided, "repin")),
        (2 * CALLS as u64, 1),
        "every preflight minted an id: {decided:?}"
    );
}
