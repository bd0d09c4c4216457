//! The analysis' Prometheus shell on real parts: a real Envoy with the filter, a real
//! Prometheus scraping it every second, known traffic (requests, 500s and added latency per
//! version), and `prometheus` reading it back exactly.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use analysis::{AnalysisSpec, Evidence, Snapshot, StepPlan, VersionSample};
use prometheus::{self as shell, RolloutRef};
use runtime::error::EXIT_INVALID;
use sticky_canary_e2e::envoy::EnvoyOptions;
use sticky_canary_e2e::prometheus::Prometheus;
use sticky_canary_e2e::site::{Faults, WHOAMI};
use sticky_canary_e2e::stack::{weights, Stack};
use sticky_canary_e2e::traffic::{Traffic, TrafficOptions};

/// Requests sent through the listener, over a few threads.
const REQUESTS: usize = 600;
const THREADS: usize = 4;
/// Scrapes to wait for Envoy's next stats flush to reach Prometheus.
const FLUSH_LOOKS: usize = 10;
/// The canary fails every 5th request and adds 30 ms (above Envoy's 25 ms bucket).
const CANARY_FAULTS: Faults = Faults {
    error_rate: 0.2,
    delay: Duration::from_millis(30),
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A snapshot scraped after now in which the latency histograms have caught up with the
/// request counters: Envoy publishes histograms at its stats flush (every second in the
/// bootstrap stickyctl renders), counters at once.
fn settled(
    prometheus: &mut Prometheus,
    client: &shell::Prometheus,
    spec: &AnalysisSpec,
    rollout: &RolloutRef,
    rt: &tokio::runtime::Runtime,
) -> Snapshot {
    let caught_up =
        |v: &VersionSample| v.latency.values().map(|h| h.count).sum::<u64>() == v.requests.total();
    for _ in 0..FLUSH_LOOKS {
        prometheus
            .wait_for_scrapes_after(SystemTime::now())
            .expect("a scrape");
        let snapshot = rt
            .block_on(client.snapshot(spec, rollout, jiff::Timestamp::now()))
            .expect("a snapshot");
        if caught_up(&snapshot.stable) && caught_up(&snapshot.canary) {
            return snapshot;
        }
    }
    panic!(
        "Envoy's latency histograms did not catch up with its counters in {FLUSH_LOOKS} scrapes"
    );
}

#[test]
fn a_snapshot_counts_what_envoy_served_per_version() {
    let upstream = Path::new(env!("CARGO_BIN_EXE_sticky-upstream"));
    let faults = BTreeMap::from([("v2".to_owned(), CANARY_FAULTS)]);
    let stack = Stack::start_faulty(
        upstream,
        &weights(&[("v1", 50.0), ("v2", 50.0)]),
        EnvoyOptions::default(),
        &faults,
    )
    .expect("the stack starts");
    let mut prometheus =
        Prometheus::start(&[stack.envoy.admin_address().unwrap()]).expect("Prometheus starts");
    let client = shell::Prometheus::new(&prometheus.url()).unwrap();
    let spec = AnalysisSpec::default();
    let rollout = RolloutRef {
        name: "shop".to_owned(),
        namespace: "default".to_owned(),
        service: "shop".to_owned(),
        stable: "v1".to_owned(),
        canary: "v2".to_owned(),
        version_services: Default::default(),
    };
    let rt = runtime();

    assert_eq!(
        rt.block_on(client.scrape_interval()).unwrap(),
        Some(Duration::from_secs(1))
    );

    // The defaults fit a real Envoy's metrics: every template is accepted and finds them.
    rt.block_on(client.validate_queries(&spec, &rollout, jiff::Timestamp::now()))
        .expect("the default templates are valid against a real Envoy");

    let before = settled(&mut prometheus, &client, &spec, &rollout, &rt);
    let plan = StepPlan {
        weight: 50.0,
        judged_steps: 6,
    };
    let mut evidence = Evidence::start(&before, &spec, plan);

    // No cookies are kept, so every request is a fresh hash decision.
    let served: Vec<(String, u16)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                let http = stack.http.fresh();
                scope.spawn(move || {
                    (0..REQUESTS / THREADS)
                        .map(|_| {
                            let response = http.get(WHOAMI, &[]).expect("a response");
                            (response.served_by.expect("x-served-by"), response.status)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a worker"))
            .collect()
    });
    let count = |version: &str, status: Option<u16>| {
        served
            .iter()
            .filter(|(v, s)| v == version && status.is_none_or(|status| *s == status))
            .count() as u64
    };
    let (v1, v2) = (count("v1", None), count("v2", None));
    assert_eq!(v1 + v2, REQUESTS as u64);
    assert!(v1 > 150 && v2 > 150, "a 50/50 split: {v1}/{v2}");
    assert_eq!(count("v1", Some(500)), 0);
    assert!(count("v2", Some(500)) >= v2 / 5 - 4, "every 5th of {v2}");

    let after = settled(&mut prometheus, &client, &spec, &rollout, &rt);
    evidence.observe(&after, &spec);

    for (arm, version, requests) in [(&evidence.stable, "v1", v1), (&evidence.canary, "v2", v2)] {
        assert_eq!(arm.requests, requests, "{version} requests");
        assert_eq!(arm.errors, count(version, Some(500)), "{version} 5xx");
        assert_eq!(
            arm.decisions_of("hash"),
            requests,
            "{version} hash decisions"
        );
        assert_eq!(arm.decisions_of("cookie"), 0, "{version} cookie decisions");
        assert_eq!(
            arm.latency.count, requests,
            "{version} latency observations"
        );
    }
    // Every canary request took over 30 ms; the boundary sits near stable's p99.
    assert_eq!(evidence.canary.latency.above(25.0), v2);
    let boundary = evidence.boundary_ms.expect("a latency boundary");
    assert!(boundary > 0.0, "{boundary}");
    assert_eq!(after.canary.version, "v2");
    assert_eq!(
        after.canary.requests.total() - before.canary.requests.total(),
        v2
    );
    // The judge sees it all: the canary's 500s fail it, with the numbers.
    let verdict = analysis::judge(&spec, &evidence);
    assert_eq!(
        verdict.outcome,
        analysis::Outcome::Fail,
        "{}",
        verdict.reason
    );
    assert!(
        verdict
            .reason
            .contains(&format!("({}/{v2})", count("v2", Some(500)))),
        "{}",
        verdict.reason
    );

    // Load from the client process: returning visitors keep their version by cookie, first
    // visits are hashed; every request is one decision or the other.
    let start = settled(&mut prometheus, &client, &spec, &rollout, &rt);
    let mut evidence = Evidence::start(&start, &spec, plan);
    let load = Path::new(env!("CARGO_BIN_EXE_sticky-load"));
    let options = TrafficOptions {
        visits_per_second: 20.0,
        seconds: 3,
        new_every: 4,
        returning: 100,
    };
    let summary = Traffic::start(load, stack.envoy.listener(), options)
        .and_then(Traffic::finish)
        .expect("the load runs");
    let end = settled(&mut prometheus, &client, &spec, &rollout, &rt);
    evidence.observe(&end, &spec);
    assert_eq!(summary.transport_errors, 0);
    for (arm, version) in [(&evidence.stable, "v1"), (&evidence.canary, "v2")] {
        let served = summary.of(version);
        assert!(served.pages > 0, "{version}: {summary:?}");
        assert_eq!(arm.requests, served.requests, "{version} requests");
        assert_eq!(arm.errors, served.errors, "{version} 5xx");
        assert_eq!(
            arm.decisions_of("hash") + arm.decisions_of("cookie"),
            served.requests,
            "{version} decisions"
        );
        assert!(
            arm.decisions_of("cookie") > arm.decisions_of("hash"),
            "{version}: {arm:?}"
        );
    }

    // Bad templates are refused naming their field.
    let now = jiff::Timestamp::now();
    let refused = |edit: fn(&mut AnalysisSpec)| {
        let mut bad = AnalysisSpec::default();
        edit(&mut bad);
        let err = rt
            .block_on(client.validate_queries(&bad, &rollout, now))
            .expect_err("a bad template");
        let err = runtime::error::Error::from(err);
        assert_eq!(err.exit_code(), EXIT_INVALID, "{err}");
        err.to_string()
    };
    let rejected = refused(|s| s.queries.errors = Some("sum(rate(x[5m]".to_owned()));
    assert!(
        rejected.starts_with("spec.analysis.queries.errors: Prometheus rejects `sum(rate(x[5m]`: "),
        "{rejected}"
    );
    let unknown = refused(|s| {
        s.queries.latency_buckets = Some(
            r#"envoy_cluster_upstream_rq_tyme_bucket{envoy_cluster_name=~"{cluster}"}"#.to_owned(),
        )
    });
    assert_eq!(
        unknown,
        "spec.analysis.queries.latencyBuckets: Prometheus has no series of metric \
         `envoy_cluster_upstream_rq_tyme_bucket` (a typo, or nothing scrapes it yet)"
    );
    let no_stable = refused(|s| {
        s.queries.requests = Some(
            r#"envoy_cluster_upstream_rq_total{envoy_cluster_name="nope_{version}"}"#.to_owned(),
        )
    });
    assert!(
        no_stable
            .starts_with("spec.analysis.queries.requests: no series for the stable version v1"),
        "{no_stable}"
    );
    let not_counters = refused(|s| {
        s.queries.requests = Some(
            r#"rate(envoy_cluster_upstream_rq_total{envoy_cluster_name=~"{cluster}"}[1m]) + 0.5"#
                .to_owned(),
        )
    });
    assert!(
        not_counters.starts_with("spec.analysis.queries.requests: ")
            && not_counters.contains("not a raw counter"),
        "{not_counters}"
    );
}
