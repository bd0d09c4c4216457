//! `stickyctl dashboard --envoy-dir` in a real Chromium, steering a live Envoy with the
//! filter: the page shows the ratio Envoy runs, its buttons change what the filter decides
//! (checked with a crowd of new clients through Envoy), a second page follows within a
//! second, an action without the token or made on a page that missed a change is refused
//! with the page showing why, and abort sends every client back to stable. Screenshots of
//! the list and of the rollout page go to `target/dashboard-artifacts/`.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sticky_canary_e2e::chromium::{Chromium, Tab};
use sticky_canary_e2e::crowd::{Crowd, Tally};
use sticky_canary_e2e::envoy::{free_port, EnvoyOptions};
use sticky_canary_e2e::locate;
use sticky_canary_e2e::operator::Stickyctl;
use sticky_canary_e2e::process::ChildGuard;
use sticky_canary_e2e::prometheus::Prometheus;
use sticky_canary_e2e::stack::{EnvoyRollout, Stack};
use sticky_canary_e2e::traffic::{Traffic, TrafficOptions};
use sticky_canary_e2e::wait;
use sticky_canary_filter::PluginConfig;

const STABLE: &str = "v1";
const CANARY: &str = "v2";
const TOKEN: &str = "e2e-dashboard-token";
/// New clients per share check: at 10% the canary share's standard deviation is 1.5 points.
const CLIENTS: usize = 400;
/// How long the page may take to show what it is waiting for.
const PAGE: Duration = Duration::from_secs(10);

fn artifacts() -> PathBuf {
    let dir = locate::workspace_root().join("target/dashboard-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn versions(plugin: &PluginConfig) -> Vec<(String, f64)> {
    plugin
        .versions
        .iter()
        .map(|v| (v.name.clone(), v.weight))
        .collect()
}

fn pairs(expected: &[(&str, f64)]) -> Vec<(String, f64)> {
    expected.iter().map(|&(n, w)| (n.to_owned(), w)).collect()
}

/// `shop` on a live Envoy whose directory `stickyctl` owns, `init` with `extra` flags.
fn rollout(extra: &[&str]) -> EnvoyRollout {
    EnvoyRollout::start(
        Path::new(env!("CARGO_BIN_EXE_sticky-upstream")),
        EnvoyOptions::default(),
        &BTreeMap::new(),
        (STABLE, CANARY),
        extra,
    )
    .unwrap_or_else(|err| panic!("{err:#}"))
}

/// Waits until `selector`'s text in `tab` contains `text`; returns the text.
fn shows(browser: &mut Chromium, tab: Tab, selector: &str, text: &str, within: Duration) -> String {
    let js = format!(
        "(() => {{ const e = document.querySelector({selector:?}); return e && e.textContent.includes({text:?}) ? e.textContent : null; }})()"
    );
    browser.wait_for(tab, &js, within).unwrap_or_else(|err| {
        let now: Option<String> = browser
            .eval(
                tab,
                &format!("document.querySelector({selector:?})?.textContent ?? null"),
            )
            .unwrap_or_default();
        panic!("{selector} never showed {text:?} within {within:?} (it shows {now:?}): {err:#}")
    })
}

/// Waits until `listen` takes connections.
fn wait_listening(listen: &str, log: &std::path::Path) {
    let listening = || Ok(TcpStream::connect(listen).ok().map(drop));
    let what = format!("something listening on {listen}");
    wait::until(&what, PAGE, Duration::from_millis(50), listening).unwrap_or_else(|err| {
        panic!(
            "{err}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        )
    });
}

/// Starts the dashboard with `extra` flags on a free port, its log at `log` (in the
/// artifacts), and waits until it answers.
fn dashboard(ctl: &Stickyctl, extra: &[&str], log: &str) -> (ChildGuard, String) {
    let port = free_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let log = artifacts().join(log);
    let _ = std::fs::remove_file(&log);
    let mut args = vec!["dashboard", "--listen", &listen];
    args.extend(extra);
    let guard = ctl.spawn(&args, &log).unwrap();
    wait_listening(&listen, &log);
    (guard, format!("http://{listen}/"))
}

/// The status line of a raw HTTP/1.1 request to the dashboard at `url`.
fn raw_status(url: &str, request: &str) -> String {
    raw(url, request)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The whole answer to a raw HTTP/1.1 request (with `Connection: close`) to `url`.
fn raw(url: &str, request: &str) -> String {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(PAGE)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

/// A crowd of first-time clients through Envoy, and what they got.
fn new_clients(stack: &Stack) -> Tally {
    let mut crowd = Crowd::new(CLIENTS);
    Tally::of(&crowd.visit(&stack.http, "/").unwrap())
}

#[test]
fn dashboard_steers_a_live_envoy_from_a_real_browser() {
    let EnvoyRollout { mut stack, ctl, .. } = rollout(&[]);
    ctl.ok(&["start", "--canary", CANARY]).unwrap();
    ctl.ok(&["set-weight", "5"]).unwrap();
    stack.wait_for_lds_file().unwrap();
    // Clients that will be on the canary when it is aborted.
    let mut early = Crowd::new(CLIENTS);
    early.visit(&stack.http, "/").unwrap();

    let (_dashboard, url) = dashboard(&ctl, &["--token", TOKEN], "dashboard.log");
    let mut browser = Chromium::launch(&[]).unwrap();
    let (list, a, b) = (
        browser.tab().unwrap(),
        browser.tab().unwrap(),
        browser.tab().unwrap(),
    );
    browser.goto(list, &url).unwrap();
    shows(&mut browser, list, "#rollouts tbody", "95:5", PAGE);
    shows(&mut browser, list, "#rollouts tbody", "Progressing", PAGE);
    let page = format!("{url}#/r/shop");
    for tab in [a, b] {
        browser.goto(tab, &page).unwrap();
        shows(&mut browser, tab, "#ratio", "95:5", PAGE);
    }
    // How QA reaches the canary: off until the rollout has a token (the safe default).
    shows(&mut browser, a, "#qa", "QA override off", PAGE);

    // Without the token, or with a wrong one, nothing happens.
    browser.click(a, "#act-next").unwrap();
    shows(&mut browser, a, "#notice", "needs its token", PAGE);
    let statuses: Vec<u16> = browser
        .eval(a, r#"Promise.all(['', 'Bearer wrong'].map((auth) => fetch('/api/actions', {
            method: 'POST',
            headers: Object.assign({'content-type': 'application/json'}, auth ? {authorization: auth} : {}),
            body: JSON.stringify({rollout: 'shop', action: 'abort'}),
        }).then((r) => r.status)))"#)
        .unwrap();
    assert_eq!(statuses, [401, 403]);
    // Under another name (DNS rebinding), or from another site's page, nothing is served.
    let rebound =
        "GET /api/rollouts HTTP/1.1\r\nHost: shop.evil.example\r\nConnection: close\r\n\r\n";
    assert!(
        raw_status(&url, rebound).contains(" 403 "),
        "{}",
        raw_status(&url, rebound)
    );
    let body = r#"{"rollout":"shop","action":"abort"}"#;
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    let foreign = format!(
        "POST /api/actions HTTP/1.1\r\nHost: {host}\r\nOrigin: http://evil.example\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    assert!(
        raw_status(&url, &foreign).contains(" 403 "),
        "{}",
        raw_status(&url, &foreign)
    );
    assert_eq!(ctl.rollout().unwrap().spec.summary(), "v1=95 v2=5");

    // Next, with the token: the filter gives the canary 10% of new clients, and the second
    // page shows it without a reload (the time it took is printed: well under a second on a
    // quiet machine; a wall-clock bound would judge the machine's load, not the page).
    for tab in [a, b] {
        browser.fill(tab, "#token", TOKEN).unwrap();
    }
    browser.click(a, "#act-next").unwrap();
    let clicked = Instant::now();
    shows(&mut browser, b, "#ratio", "90:10", PAGE);
    let seen = clicked.elapsed();
    shows(&mut browser, a, "#notice", "next 10: applied", PAGE);
    eprintln!("second page saw Next after {seen:?}");
    assert_eq!(
        versions(&stack.wait_for_lds_file().unwrap()),
        pairs(&[(STABLE, 90.0), (CANARY, 10.0)])
    );
    let tally = new_clients(&stack);
    let share = tally.share(CANARY);
    assert!(
        (4.0..=16.0).contains(&share),
        "canary share {share}% at 10%:\n{tally}"
    );
    assert_eq!((tally.not_found, tally.other_errors), (0, 0), "{tally}");
    shows(&mut browser, b, "#history", "dashboard: next 10", PAGE);
    shows(&mut browser, b, "#steps li.current", "10%", PAGE);

    // A free ratio, by keyboard, after a confirmation.
    browser.fill(a, "#weight-free", "20").unwrap();
    browser.press(a, "#act-set", "Enter").unwrap();
    shows(
        &mut browser,
        a,
        "#confirm-text",
        "stable:canary 80:20",
        PAGE,
    );
    browser.click(a, "#confirm-ok").unwrap();
    shows(&mut browser, a, "#notice", "set-weight 20: applied", PAGE);
    shows(&mut browser, b, "#ratio", "80:20", PAGE);
    assert_eq!(
        versions(&stack.wait_for_lds_file().unwrap()),
        pairs(&[(STABLE, 80.0), (CANARY, 20.0)])
    );
    browser
        .screenshot(a, &artifacts().join("rollout.png"))
        .unwrap();
    browser.goto(list, &url).unwrap();
    shows(&mut browser, list, "#rollouts tbody", "80:20", PAGE);
    browser
        .screenshot(list, &artifacts().join("list.png"))
        .unwrap();
    browser.fill(list, "#search", "rolled back").unwrap();
    shows(&mut browser, list, "#empty", "No rollout matches.", PAGE);
    browser.fill(list, "#search", "V2=20").unwrap();
    shows(&mut browser, list, "#rollouts tbody", "shop", PAGE);

    // A page that missed a change (its live stream cut) is refused, and shows the change.
    browser
        .eval::<serde_json::Value>(b, "events.close()")
        .unwrap();
    ctl.ok(&["set-weight", "50"]).unwrap();
    browser.click(b, "#act-next").unwrap();
    shows(&mut browser, b, "#notice", "changed meanwhile", PAGE);
    shows(&mut browser, b, "#ratio", "50:50", PAGE);
    assert_eq!(ctl.rollout().unwrap().spec.summary(), "v1=50 v2=50");
    // Loaded again (a new query, so not a same-document hash navigation), it is live again.
    browser.goto(b, &format!("{url}?again#/r/shop")).unwrap();
    shows(&mut browser, b, "#ratio", "50:50", PAGE);

    // Abort, confirmed: every client is back on stable, the early canary clients too.
    browser.click(a, "#act-abort").unwrap();
    browser.click(a, "#confirm-ok").unwrap();
    shows(&mut browser, a, "#notice", "abort v2: applied", PAGE);
    shows(&mut browser, b, "#phase", "Aborted", PAGE);
    shows(&mut browser, b, "#ratio", "100", PAGE);
    let live = stack.wait_for_lds_file().unwrap();
    assert_eq!(versions(&live), pairs(&[(STABLE, 100.0)]));
    let back = Tally::of(&early.visit(&stack.http, "/").unwrap());
    assert_eq!(back.share(STABLE), 100.0, "after abort:\n{back}");
    assert_eq!(new_clients(&stack).share(STABLE), 100.0);
    shows(&mut browser, b, "#history", "dashboard: abort", PAGE);
}

/// The page's actions in the order of [`offered`]'s answer.
const ACTIONS: [&str; 8] = [
    "#act-start",
    "#act-next",
    "#act-pause",
    "#act-auto",
    "#act-set",
    "#act-promote",
    "#act-finish",
    "#act-abort",
];

/// Waits until the actions the page offers are `expected` (`+` offered, `-` not, in
/// [`ACTIONS`]' order) and every one not offered says why on hover and to screen readers.
fn offered(browser: &mut Chromium, tab: Tab, expected: &str) {
    let js = format!(
        "(() => {{ const ids = {ACTIONS:?}; const signs = ids.map((id) => {{ const b = document.querySelector(id); \
         if (b.getAttribute('aria-disabled') !== 'true') return '+'; \
         const why = document.getElementById(b.getAttribute('aria-describedby')); \
         return b.title && why && why.textContent.includes(b.title) ? '-' : '?'; }}).join(''); \
         return signs === {expected:?} ? signs : null; }})()"
    );
    browser.wait_for::<String>(tab, &js, PAGE).unwrap_or_else(|err| {
        let now: String = browser
            .eval(tab, &format!("{ACTIONS:?}.map((id) => `${{id}} ${{document.querySelector(id).getAttribute('aria-disabled')}} ${{document.querySelector(id).title}}`).join('\\n')"))
            .unwrap_or_default();
        panic!("the page never offered {expected}: {err:#}\n{now}")
    });
}

/// What an operator sees at each phase: only the actions the transition would take, the
/// others explained; the ratio as stable:canary even without a canary; a weight between
/// steps shown where it stands; dialogs naming their action; the free ratio cleared once
/// applied; times in UTC to the second, the header's when the page last heard from the
/// server; who acted, from the proxy's identity header.
#[test]
fn the_page_offers_only_what_the_rollout_takes_now() {
    let EnvoyRollout { mut stack, ctl, .. } = rollout(&[]);
    ctl.ok(&["start", "--canary", CANARY]).unwrap();
    stack.wait_for_lds_file().unwrap();
    let (_dashboard, url) = dashboard(
        &ctl,
        &["--identity-header", "x-forwarded-user"],
        "offers-dashboard.log",
    );
    let mut browser = Chromium::launch(&[]).unwrap();
    let tab = browser.tab().unwrap();
    browser.goto(tab, &format!("{url}#/r/shop")).unwrap();
    shows(&mut browser, tab, "#ratio", "100:0", PAGE);
    // A canary at 0%: everything but a second canary and a promotion of what nothing reached.
    offered(&mut browser, tab, "-++++--+");
    let why: String = browser
        .eval(tab, "document.querySelector('#act-start').title")
        .unwrap();
    assert!(why.contains("canary \"v2\" is already running"), "{why}");
    shows(
        &mut browser,
        tab,
        "#position",
        "0%, before the first step (1%)",
        PAGE,
    );

    // A free ratio: its dialog says what it does, the field clears once applied, and the
    // bar shows where 30% stands between the steps.
    browser.fill(tab, "#weight-free", "30").unwrap();
    browser.click(tab, "#act-set").unwrap();
    shows(&mut browser, tab, "#confirm-ok", "Set ratio", PAGE);
    browser.click(tab, "#confirm-ok").unwrap();
    shows(&mut browser, tab, "#notice", "set-weight 30: applied", PAGE);
    shows(&mut browser, tab, "#ratio", "70:30", PAGE);
    let cleared = "document.querySelector('#weight-free').value === ''";
    browser.wait_for::<bool>(tab, cleared, PAGE).unwrap();
    shows(
        &mut browser,
        tab,
        "#steps li.current",
        "30% (current, between steps)",
        PAGE,
    );
    shows(
        &mut browser,
        tab,
        "#position",
        "30%, between steps 20% and 50%",
        PAGE,
    );
    let bar: String = browser
        .eval(tab, "[...document.querySelectorAll('#steps li')].map((li) => li.getAttribute('aria-current') ? `[${li.textContent}]` : li.textContent).join(' ')")
        .unwrap();
    assert!(
        bar.contains("20% (done) [30% (current, between steps)] 50%"),
        "{bar}"
    );

    // Times: UTC to the second, the history's and the header's alike; the header's is when
    // the page last heard from the server, so it moves while the rollout does not.
    let when: String = browser
        .eval(
            tab,
            "document.querySelector('#history tbody td').textContent",
        )
        .unwrap();
    assert!(utc_to_the_second(&when), "{when}");
    let updated = |browser: &mut Chromium| -> String {
        browser
            .eval(tab, "document.querySelector('#updated').textContent")
            .unwrap()
    };
    let first = updated(&mut browser);
    let time = first
        .strip_prefix("updated ")
        .unwrap_or_default()
        .to_owned();
    assert!(utc_to_the_second(&time), "{first}");
    let moved = format!("document.querySelector('#updated').textContent !== {first:?}");
    browser
        .wait_for::<bool>(tab, &moved, Duration::from_secs(3))
        .unwrap();
    assert_eq!(ctl.rollout().unwrap().spec.summary(), "v1=70 v2=30");

    // Who acted: the proxy's header when it sends one, else the dashboard.
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    let generation = ctl
        .rollout()
        .unwrap()
        .metadata
        .generation
        .unwrap_or_default();
    let body = format!(r#"{{"rollout":"shop","action":"pause","generation":{generation}}}"#);
    let as_alice = format!(
        "POST /api/actions HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-User: alice@example.com\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    assert!(
        raw_status(&url, &as_alice).contains(" 200 "),
        "{}",
        raw(&url, &as_alice)
    );
    shows(
        &mut browser,
        tab,
        "#history",
        "alice@example.com (dashboard): pause",
        PAGE,
    );
    // Paused: Resume instead of Pause.
    shows(&mut browser, tab, "#act-pause", "Resume", PAGE);
    offered(&mut browser, tab, "-+++++++");
    browser.click(tab, "#act-pause").unwrap();
    shows(&mut browser, tab, "#notice", "resume: applied", PAGE);
    shows(&mut browser, tab, "#history", "dashboard: resume", PAGE);

    // Abort: its dialog's button says Abort; then the ratio is still stable:canary, and
    // only what can be done without a canary is offered, starting one among them.
    browser.click(tab, "#act-abort").unwrap();
    shows(&mut browser, tab, "#confirm-ok", "Abort", PAGE);
    browser.click(tab, "#confirm-ok").unwrap();
    shows(&mut browser, tab, "#notice", "abort v2: applied", PAGE);
    shows(&mut browser, tab, "#phase", "Aborted", PAGE);
    shows(&mut browser, tab, "#ratio", "100:0 (no canary)", PAGE);
    offered(&mut browser, tab, "+-++----");
    let why: String = browser
        .eval(tab, "document.querySelector('#act-next').title")
        .unwrap();
    assert!(why.contains("no canary is running"), "{why}");
    // A disabled action pressed anyway (it stays focusable) says why and does nothing.
    browser
        .eval::<serde_json::Value>(tab, "document.querySelector('#act-promote').click()")
        .unwrap();
    shows(&mut browser, tab, "#notice", "would change nothing", PAGE);
    shows(&mut browser, tab, "#act-promote", "Promote", PAGE);
    assert_eq!(ctl.rollout().unwrap().spec.summary(), "v1=100");

    // Start a canary from the page, by its version name.
    browser.fill(tab, "#start-version", CANARY).unwrap();
    browser.click(tab, "#act-start").unwrap();
    shows(&mut browser, tab, "#confirm-ok", "Start canary", PAGE);
    browser.click(tab, "#confirm-ok").unwrap();
    shows(&mut browser, tab, "#notice", "start v2: applied", PAGE);
    shows(&mut browser, tab, "#ratio", "100:0", PAGE);
    let cleared = "document.querySelector('#start-version').value === ''";
    browser.wait_for::<bool>(tab, cleared, PAGE).unwrap();
    // At 0% nothing has reached the canary: no promotion offered.
    offered(&mut browser, tab, "-++++--+");
    assert_eq!(ctl.rollout().unwrap().spec.summary(), "v1=100 v2=0");
    browser
        .screenshot(tab, &artifacts().join("offers.png"))
        .unwrap();
}

/// Whether `text` is a time as the page shows every time: `2026-12-05 18:14:11 UTC`.
fn utc_to_the_second(text: &str) -> bool {
    text.len() == "2026-12-05 18:14:11 UTC".len()
        && jiff::fmt::strtime::parse("%Y-%m-%d %H:%M:%S UTC", text)
            .and_then(|t| t.to_datetime())
            .is_ok()
}

/// Auto on, pressed on the page (a dashboard on loopback, so without a token): the real
/// controller judges the step from a real Prometheus under load and takes the next one by
/// itself, and the page shows it, with the verdict's numbers and the per-version charts.
#[test]
fn auto_on_from_the_page_takes_the_next_step_by_itself() {
    // 100% a gate: the controller stays at 50% for the checks below (it would otherwise step
    // on after --interval 4 s, sooner than a loaded machine may get through them).
    let EnvoyRollout { mut stack, ctl, .. } =
        rollout(&["--steps", "5,50,100", "--interval", "4", "--gate", "100"]);
    ctl.ok(&["start", "--canary", CANARY]).unwrap();
    ctl.ok(&["next"]).unwrap();
    stack.wait_for_lds_file().unwrap();
    let prometheus = Prometheus::start(&[stack.envoy.admin_address().unwrap()]).unwrap();
    let options = TrafficOptions {
        visits_per_second: 60.0,
        seconds: 60,
        // Every visitor new.
        new_every: 1,
        returning: 100,
    };
    let load_bin = std::path::Path::new(env!("CARGO_BIN_EXE_sticky-load"));
    let _load = Traffic::start(load_bin, stack.envoy.listener(), options).unwrap();
    let controller_log = artifacts().join("auto-controller.log");
    let _ = std::fs::remove_file(&controller_log);
    let _controller = ctl
        .spawn(
            &["controller", "--prometheus", &prometheus.url()],
            &controller_log,
        )
        .unwrap();
    let (_dashboard, url) = dashboard(
        &ctl,
        &["--prometheus", &prometheus.url()],
        "auto-dashboard.log",
    );
    let mut browser = Chromium::launch(&[]).unwrap();
    let tab = browser.tab().unwrap();
    browser.goto(tab, &format!("{url}#/r/shop")).unwrap();
    shows(&mut browser, tab, "#ratio", "95:5", PAGE);
    let hidden: bool = browser
        .eval(tab, "document.getElementById('token-box').hidden")
        .unwrap();
    assert!(hidden, "a loopback dashboard without a token asks for none");
    browser.click(tab, "#act-auto").unwrap();
    shows(&mut browser, tab, "#notice", "auto on: applied", PAGE);
    shows(&mut browser, tab, "#act-auto", "Auto is on", PAGE);
    let step = Duration::from_secs(45);
    let waited = Instant::now();
    let log = || std::fs::read_to_string(&controller_log).unwrap_or_default();
    // Short waits in a loop: one driver command may take at most chromium::PATIENCE.
    let at_50 = "document.querySelector('#ratio').textContent === '50:50'";
    let shown = |browser: &mut Chromium| browser.wait_for::<bool>(tab, at_50, PAGE).ok();
    if let Err(err) = wait::until("a step to 50%", step, Duration::ZERO, || {
        Ok(shown(&mut browser))
    }) {
        let page: String = browser
            .eval(tab, "document.querySelector('main').innerText")
            .unwrap();
        panic!("{err}\npage:\n{page}\ncontroller:\n{}", log());
    }
    eprintln!(
        "the controller took the next step {:?} after auto on",
        waited.elapsed()
    );
    assert_eq!(
        versions(&stack.wait_for_lds_file().unwrap()),
        pairs(&[(STABLE, 50.0), (CANARY, 50.0)])
    );
    shows(&mut browser, tab, "#history", "dashboard: auto on", PAGE);
    shows(&mut browser, tab, "#history", "next 50", PAGE);
    // The page shows the verdict that took the step until the controller's first look at 50%
    // (about a second later) gives one of its own.
    let js = "(() => { const t = document.querySelector('#verdict')?.textContent ?? ''; \
              return t.includes('step 5% (ended): Pass') || t.includes('step 50% (current)') \
              ? t : null; })()";
    browser
        .wait_for::<String>(tab, js, PAGE)
        .unwrap_or_else(|e| panic!("#verdict shows neither step's verdict: {e:#}"));
    // The step at 5% passed with its numbers; the charts show both versions.
    let verdicts = ctl.rollout().unwrap().status.unwrap_or_default().verdicts;
    assert!(
        verdicts
            .iter()
            .any(|v| v.weight == 5.0 && v.verdict.outcome == analysis::Outcome::Pass),
        "{verdicts:?}"
    );
    shows(
        &mut browser,
        tab,
        "#charts",
        "Requests per second (now: v1",
        Duration::from_secs(20),
    );
    shows(&mut browser, tab, "#charts", "v2", PAGE);
    browser
        .screenshot(tab, &artifacts().join("auto.png"))
        .unwrap();
}

/// In-cluster the controller serves the dashboard itself (`controller --dashboard`): here on
/// an Envoy directory, the same page and live state next to the reconcile loop.
#[test]
fn the_controller_serves_the_dashboard_too() {
    let EnvoyRollout { mut stack, ctl, .. } = rollout(&[]);
    ctl.ok(&["start", "--canary", CANARY]).unwrap();
    ctl.ok(&["set-weight", "5"]).unwrap();
    stack.wait_for_lds_file().unwrap();
    let listen = format!("127.0.0.1:{}", free_port().unwrap());
    let log = artifacts().join("controller-dashboard.log");
    let _ = std::fs::remove_file(&log);
    let _controller = ctl
        .spawn(&["controller", "--dashboard", &listen], &log)
        .unwrap();
    wait_listening(&listen, &log);
    let url = format!("http://{listen}/");
    let get = |path: &str| {
        raw(
            &url,
            &format!("GET {path} HTTP/1.1\r\nHost: {listen}\r\nConnection: close\r\n\r\n"),
        )
    };
    let page = get("/");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("<script src=\"/app.js\">"), "{page}");
    let state = get("/api/rollouts");
    assert!(state.contains(r#""ratio":"95:5""#), "{state}");
    // A non-loopback address without a token: the controller does not start.
    let refused = ctl
        .run(&["controller", "--dashboard", "0.0.0.0:0"])
        .unwrap();
    assert_eq!(refused.code, Some(2), "{refused:?}");
    assert!(
        refused.stderr.contains("--dashboard-token"),
        "{}",
        refused.stderr
    );
}

/// A loopback HTTP listener that answers every request with `answer(request line)` (a whole
/// HTTP/1.1 response) and records the request lines it got.
struct Listener {
    address: String,
    heard: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Listener {
    fn start(answer: impl Fn(&str) -> String + Send + 'static) -> Listener {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = heard.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(&stream);
                let mut first = String::new();
                let _ = reader.read_line(&mut first);
                // The rest of the head; these requests have no body worth reading.
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let first = first.trim_end().to_owned();
                let reply = answer(&first);
                if let Ok(mut heard) = record.lock() {
                    heard.push(first);
                }
                let _ = (&stream).write_all(reply.as_bytes());
            }
        });
        Listener { address, heard }
    }

    fn heard(&self) -> Vec<String> {
        self.heard.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

fn http_answer(status: &str, kind: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A rollout written by other people: its name, service, version names, message, history
/// (actor and words) and verdict reasons are hostile, as is what Prometheus answers (check
/// names and times are typed: a status with others' text there is refused at read).
/// `beacon` is where the payloads would call if they ran.
fn hostile_rollout(beacon: &str) -> (api::StickyCanary, Vec<String>) {
    use analysis::{judge, AnalysisSpec, Counter, Evidence, Snapshot, StepPlan};
    use api::{HistoryEntry, StepVerdict, StickyCanary, StickyCanarySpec, StickyCanaryStatus};
    use sticky_canary_filter::VersionWeight;
    let img =
        format!("<img src=x onerror=\"window.__pwned='img';fetch('http://{beacon}/onerror')\">");
    let script = format!(
        "</script><script>window.__pwned='script'</script><script src=\"http://{beacon}/script.js\"></script>"
    );
    let rtl = "\u{202e}txt.exe\u{202c} \u{200f}שלום";
    let long = format!("{}{img}{}", "A".repeat(2500), "B".repeat(2500 - img.len()));
    assert_eq!(long.chars().count(), 5000);
    let (stable, canary) = (format!("v1{img}"), format!("v2{rtl}"));
    let mut spec = StickyCanarySpec::new(&format!("shop{script}{rtl}"), &stable);
    spec.versions[0].weight = 95.0;
    spec.versions.push(VersionWeight::new(&canary, 5.0));
    let analysis = AnalysisSpec::default();
    let sample = |version: &str, requests: u64| analysis::VersionSample {
        version: version.to_owned(),
        requests: Counter::single(requests),
        ..Default::default()
    };
    let look = |second: i64, requests: u64| Snapshot {
        at: jiff::Timestamp::from_second(1_800_000_000 + second).unwrap(),
        stable: sample(&stable, requests),
        canary: sample(&canary, requests / 10),
        unanswered: Vec::new(),
    };
    let plan = StepPlan {
        weight: 5.0,
        judged_steps: 6,
    };
    let mut evidence = Evidence::start(&look(0, 0), &analysis, plan);
    evidence.observe(&look(60, 1000), &analysis);
    let mut verdict = judge(&analysis, &evidence);
    verdict.reason = format!("reason {img}");
    for check in &mut verdict.checks {
        check.reason = format!("because {script}{rtl}");
    }
    let time = |text: &str| text.parse::<jiff::Timestamp>().unwrap();
    let status = StickyCanaryStatus {
        message: Some(long.clone()),
        history: vec![
            HistoryEntry {
                time: time("2026-12-05T10:00:00Z"),
                action: format!("{img}: next 5"),
                versions: script.clone(),
            },
            HistoryEntry {
                time: time("2026-12-05T10:01:00Z"),
                action: format!("mallory{script}: set-weight 5"),
                versions: format!("{stable}=95 {canary}=5"),
            },
        ],
        verdicts: vec![StepVerdict {
            weight: 5.0,
            started: time("2026-12-05T10:00:00Z"),
            judged: time("2026-12-05T10:01:00Z"),
            verdict,
        }],
        ..Default::default()
    };
    let mut rollout = StickyCanary::new(&format!("shop{img}"), spec);
    rollout.status = Some(status);
    (rollout, vec![img, script, rtl.to_owned(), long])
}

/// Other people's words (a rollout's name and service, version names, the message, history
/// entries, verdict reasons, what Prometheus answers, the search) shown in a real Chromium
/// as text: each appears literally, no element comes of them, no script runs (the payloads
/// would set `window.__pwned` or call a loopback listener that hears nothing), and an
/// inline script added to the page is refused by its policy.
#[test]
fn hostile_text_is_shown_as_text_and_runs_nothing() {
    let beacon = Listener::start(|_| http_answer("200 OK", "text/plain", "heard"));
    let (rollout, texts) = hostile_rollout(&beacon.address);
    let [img, script, rtl, long] = [0, 1, 2, 3].map(|i| texts[i].clone());
    // Prometheus refuses every query with the payload as its words.
    let said = format!(
        r#"{{"status":"error","errorType":"bad_data","error":{}}}"#,
        serde_json::to_string(&format!("parse error {img}{script}")).unwrap()
    );
    let prometheus =
        Listener::start(move |_| http_answer("400 Bad Request", "application/json", &said));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("stickycanary.json"),
        serde_json::to_string(&rollout).unwrap(),
    )
    .unwrap();
    let ctl = Stickyctl::new(dir.path()).unwrap();
    let (_dashboard, url) = dashboard(
        &ctl,
        &["--prometheus", &format!("http://{}", prometheus.address)],
        "hostile-dashboard.log",
    );
    let mut browser = Chromium::launch(&[]).unwrap();
    let tab = browser.tab().unwrap();
    browser.goto(tab, &url).unwrap();
    // The list: name, service, versions, health (the 5,000-character message).
    for text in [&img, &script, &rtl, &long] {
        shows(&mut browser, tab, "#rollouts tbody", text, PAGE);
    }
    // The search matches hostile words and shows them as they are.
    for query in [img.as_str(), "</script>", rtl.as_str()] {
        browser.fill(tab, "#search", query).unwrap();
        shows(&mut browser, tab, "#rollouts tbody", query, PAGE);
    }
    browser.fill(tab, "#search", "<b>nothing</b>").unwrap();
    shows(&mut browser, tab, "#empty", "No rollout matches.", PAGE);
    browser.fill(tab, "#search", "").unwrap();
    // The rollout's page, reached through its link.
    browser.click(tab, "#rollouts tbody a").unwrap();
    shows(&mut browser, tab, "#title", &img, PAGE);
    shows(&mut browser, tab, "#title", &script, PAGE);
    shows(&mut browser, tab, "#versions", &rtl, PAGE);
    shows(&mut browser, tab, "#health", &long, PAGE);
    shows(
        &mut browser,
        tab,
        "#verdict",
        &format!("reason {img}"),
        PAGE,
    );
    shows(
        &mut browser,
        tab,
        "#verdict",
        &format!("because {script}"),
        PAGE,
    );
    shows(
        &mut browser,
        tab,
        "#verdict",
        &format!("{script}{rtl}"),
        PAGE,
    );
    shows(
        &mut browser,
        tab,
        "#history",
        &format!("{img}: next 5"),
        PAGE,
    );
    shows(
        &mut browser,
        tab,
        "#history",
        &format!("mallory{script}"),
        PAGE,
    );
    shows(&mut browser, tab, "#history", &rtl, PAGE);
    shows(
        &mut browser,
        tab,
        "#charts",
        &format!("parse error {img}{script}"),
        PAGE,
    );
    let title: String = browser.eval(tab, "document.title").unwrap();
    assert!(title.contains(&img), "{title}");
    // The transition refuses every action on it: each says why in the CLI's words, which
    // quote the service (Rust's escapes, `\"` and `\u{202e}`), on hover, to screen readers
    // and when pressed anyway, as text every time.
    let refusal = "spec.service: \"shop</script><script>";
    shows(&mut browser, tab, "#act-next-why", refusal, PAGE);
    let title: String = browser
        .eval(tab, "document.querySelector('#act-next').title")
        .unwrap();
    assert!(title.contains(refusal), "{title}");
    browser
        .eval::<serde_json::Value>(tab, "document.querySelector('#act-next').click()")
        .unwrap();
    shows(&mut browser, tab, "#notice", refusal, PAGE);
    browser
        .screenshot(tab, &artifacts().join("hostile.png"))
        .unwrap();
    // Nothing ran and nothing became an element.
    let found: serde_json::Value = browser
        .eval(
            tab,
            r#"(() => ({
                pwned: window.__pwned ?? null,
                elements: [...document.querySelectorAll('img, iframe, object, embed, script')]
                    .map((e) => e.outerHTML).filter((h) => h !== '<script src="/app.js"></script>'),
            }))()"#,
        )
        .unwrap();
    assert_eq!(found["pwned"], serde_json::Value::Null, "{found}");
    assert_eq!(found["elements"], serde_json::json!([]), "{found}");
    // The policy holds in this browser: an inline script added to the page does not run.
    let inline: serde_json::Value = browser
        .eval(
            tab,
            r#"(() => { const s = document.createElement('script'); s.textContent = 'window.__inline = 1'; document.body.append(s); return window.__inline ?? null; })()"#,
        )
        .unwrap();
    assert_eq!(inline, serde_json::Value::Null, "an inline script ran");
    // A link to a rollout that does not decode (a lone `%`) says so instead of stopping.
    browser
        .goto(tab, &format!("{url}?again#/r/%zz<img src=x>"))
        .unwrap();
    shows(&mut browser, tab, "#title", "%zz", PAGE);
    shows(&mut browser, tab, "#title", "not found", PAGE);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(beacon.heard(), Vec::<String>::new(), "a payload called out");
    assert!(
        !prometheus.heard().is_empty(),
        "the charts never asked Prometheus"
    );
}

/// A page elsewhere that frames the dashboard (clickjacking) gets an empty frame: the
/// dashboard's answer forbids framing, so Chromium renders nothing of it and fetches none of
/// its script, styles or live state; loaded on its own it does.
#[test]
fn the_dashboard_cannot_be_framed() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = Stickyctl::new(dir.path()).unwrap();
    let (_dashboard, url) = dashboard(&ctl, &[], "framed-dashboard.log");
    let framing = format!(
        r#"<!doctype html><title>evil</title><iframe id="victim" src="{url}" width="800" height="600"></iframe>"#
    );
    let evil = Listener::start(move |_| http_answer("200 OK", "text/html", &framing));
    let mut browser = Chromium::launch(&[]).unwrap();
    let tab = browser.tab().unwrap();
    browser
        .goto(
            tab,
            &format!(
                "http://localhost:{}/",
                evil.address.rsplit(':').next().unwrap()
            ),
        )
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let asked = |browser: &mut Chromium, tab| -> Vec<String> {
        browser
            .responses(tab)
            .unwrap()
            .into_iter()
            .filter(|seen| seen.url.starts_with(&url))
            .map(|seen| seen.url[url.len() - 1..].to_owned())
            .collect()
    };
    let framed = asked(&mut browser, tab);
    // The frame asked for the page (so the test frames what it means to) and got no further.
    assert_eq!(framed, ["/"], "the framed dashboard loaded {framed:?}");
    // The same dashboard on its own page loads its script and goes live.
    let own = browser.tab().unwrap();
    browser.goto(own, &url).unwrap();
    shows(&mut browser, own, "#live", "live", PAGE);
    let loaded = asked(&mut browser, own);
    assert!(loaded.contains(&"/app.js".to_owned()), "{loaded:?}");
    // Every answer says so, to browsers without frame-ancestors too.
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    for path in ["/", "/app.js", "/api/rollouts", "/nope"] {
        let answer = raw(
            &url,
            &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
        .to_ascii_lowercase();
        for header in [
            "content-security-policy: default-src 'none'; script-src 'self';",
            "frame-ancestors 'none'",
            "x-frame-options: deny",
            "x-content-type-options: nosniff",
            "referrer-policy: no-referrer",
        ] {
            assert!(
                answer.contains(header),
                "{path}: no {header:?} in\n{answer}"
            );
        }
    }
}
