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

use serde::Deserialize;
use serde_json::{json, Value};
use sticky_canary_e2e::chromium::{Chromium, Seen, Tab};
use sticky_canary_e2e::envoy::{Envoy, EnvoyOptions, Site};
use sticky_canary_e2e::site::{PAGES, WHOAMI};
use sticky_canary_e2e::stack::weights;
use sticky_canary_e2e::upstream::Upstream;
use sticky_canary_filter::config::{Config, Repin, DEFAULT_ID_COOKIE};
use sticky_canary_filter::PluginConfig;
use stickyctl::render::envoy::{render_cds, render_lds, EnvoyLayout};

/// The test domain the browser resolves to 127.0.0.1 (`--host-resolver-rules`).
const DOMAIN: &str = "shop.test";

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

    /// The filter's decisions so far, by `(version, reason)`.
    fn decisions(&self) -> BTreeMap<(String, String), u64> {
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

fn launch() -> Chromium {
    let rules = format!("--host-resolver-rules=MAP *.{DOMAIN} 127.0.0.1");
    match Chromium::launch(&[&rules]) {
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
    let mut browser = launch();
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
