//! The faults the fake API server injects on demand (missed, late and reordered watch events,
//! stale lists, expired watches) and its write audit, through kube-rs's raw calls: each fault
//! does what it says and nothing else.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DynamicObject, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use sticky_canary_tests::samples::{virtual_service, virtual_services};
use sticky_canary_tests::{istio_crds, Chaos, EventMatch, FakeApiServer, StaleLists};

const NS: &str = "prod";
const VS: &str = "networking.istio.io/v1";

fn start() -> Option<(FakeApiServer, Api<DynamicObject>)> {
    let server = FakeApiServer::start(istio_crds()?);
    let api = virtual_services(&server, NS);
    Some((server, api))
}

fn describe(event: WatchEvent<DynamicObject>) -> String {
    let name = |o: &DynamicObject| o.metadata.name.clone().unwrap_or_default();
    let hosts = |o: &DynamicObject| o.data["spec"]["hosts"][0].as_str().unwrap_or("").to_owned();
    match event {
        WatchEvent::Added(o) => format!("ADDED {}", name(&o)),
        WatchEvent::Modified(o) => format!("MODIFIED {} {}", name(&o), hosts(&o)),
        WatchEvent::Deleted(o) => format!("DELETED {}", name(&o)),
        WatchEvent::Bookmark(b) => format!("BOOKMARK {}", b.metadata.resource_version),
        WatchEvent::Error(e) => format!("ERROR {} {}", e.code, e.reason),
    }
}

fn quiet(timeout_seconds: u32) -> WatchParams {
    WatchParams {
        bookmarks: false,
        ..WatchParams::default().timeout(timeout_seconds)
    }
}

fn set_host(server: &FakeApiServer, name: &str, host: &str) {
    server
        .update(VS, "VirtualService", NS, name, |o| {
            o["spec"]["hosts"] = json!([host])
        })
        .unwrap();
}

/// Reads `count` events from a live watch, at most 10 s.
async fn next_events(
    stream: &mut (impl futures::Stream<Item = kube::Result<WatchEvent<DynamicObject>>> + Unpin),
    count: usize,
) -> Vec<String> {
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while seen.len() < count {
            seen.push(describe(stream.try_next().await.unwrap().expect("event")));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {seen:?} within 10 s"));
    seen
}

#[tokio::test]
async fn dropped_events_miss_every_live_watch_but_a_resumed_watch_replays_them() {
    let Some((server, api)) = start() else { return };
    server.create(virtual_service(NS, "a")).unwrap();
    server.create(virtual_service(NS, "b")).unwrap();
    let from = server.resource_version().to_string();
    let mut first = api.watch(&quiet(30), &from).await.unwrap().boxed();
    let mut second = api.watch(&quiet(30), &from).await.unwrap().boxed();
    server.drop_watch_events(EventMatch::object("virtualservices", "a"), 2);
    set_host(&server, "a", "one");
    set_host(&server, "b", "two");
    set_host(&server, "a", "three");
    set_host(&server, "a", "four");
    let expected = ["MODIFIED b two", "MODIFIED a four"];
    assert_eq!(next_events(&mut first, 2).await, expected);
    assert_eq!(
        next_events(&mut second, 2).await,
        expected,
        "the same fate for every watch"
    );
    assert_eq!(server.faulted_events().0.len(), 2);
    // The history is intact: a watch from before them gets every change.
    let replay: Vec<String> = api
        .watch(&quiet(1), &from)
        .await
        .unwrap()
        .map(|e| describe(e.unwrap()))
        .collect()
        .await;
    assert_eq!(
        replay,
        [
            "MODIFIED a one",
            "MODIFIED b two",
            "MODIFIED a three",
            "MODIFIED a four"
        ]
    );
}

#[tokio::test]
async fn a_delayed_event_arrives_after_later_ones() {
    let Some((server, api)) = start() else { return };
    server.create(virtual_service(NS, "a")).unwrap();
    let from = server.resource_version().to_string();
    let mut stream = api.watch(&quiet(30), &from).await.unwrap().boxed();
    server.delay_watch_events(
        EventMatch::plural("virtualservices"),
        1,
        // Longer than any stall of a loaded machine between the three writes below.
        Duration::from_secs(2),
    );
    set_host(&server, "a", "one");
    set_host(&server, "a", "two");
    server.create(virtual_service(NS, "b")).unwrap();
    assert_eq!(
        next_events(&mut stream, 3).await,
        ["MODIFIED a two", "ADDED b", "MODIFIED a one"],
        "the older state of a comes last: a reflector would keep it"
    );
}

#[tokio::test]
async fn chaos_is_reproducible_from_its_seed() {
    let mut fates = Vec::new();
    for _ in 0..2 {
        let Some((server, api)) = start() else { return };
        server.create(virtual_service(NS, "a")).unwrap();
        let from = server.resource_version().to_string();
        let mut stream = api.watch(&quiet(30), &from).await.unwrap().boxed();
        server.watch_chaos(Some(Chaos {
            seed: 7,
            drop_percent: 30,
            delay_percent: 30,
            max_delay: Duration::from_secs(1),
        }));
        for i in 0..40 {
            set_host(&server, "a", &format!("h{i}"));
        }
        let (dropped, delayed) = server.faulted_events();
        assert!(
            !dropped.is_empty() && !delayed.is_empty(),
            "{dropped:?} {delayed:?}"
        );
        let mut seen = next_events(&mut stream, 40 - dropped.len()).await;
        let base: u64 = from.parse().unwrap();
        let mut expected: Vec<String> = (0..40u64)
            .filter(|i| !dropped.contains(&(base + 1 + i)))
            .map(|i| format!("MODIFIED a h{i}"))
            .collect();
        let in_order = seen == expected;
        seen.sort();
        expected.sort();
        assert_eq!(seen, expected, "every event not dropped arrives, once");
        assert!(!in_order, "some delayed event was overtaken");
        fates.push((dropped, delayed));
    }
    assert_eq!(fates[0], fates[1]);
}

#[tokio::test]
async fn stale_lists_answer_from_the_snapshot_until_fresh_again() {
    let Some((server, api)) = start() else { return };
    server.create(virtual_service(NS, "a")).unwrap();
    let snapshot = server.snapshot();
    let frozen = server.resource_version().to_string();
    set_host(&server, "a", "new");
    server.create(virtual_service(NS, "b")).unwrap();
    server.serve_stale_lists(snapshot.clone(), StaleLists::Cached);
    let cached = ListParams::default().match_any();
    let stale = api.list(&cached).await.unwrap();
    assert_eq!(
        stale.metadata.resource_version.as_deref(),
        Some(frozen.as_str())
    );
    assert_eq!(stale.items.len(), 1);
    assert_eq!(stale.items[0].data["spec"]["hosts"], json!(["web"]));
    // A consistent read is never stale.
    let fresh = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(fresh.items.len(), 2);
    assert_eq!(
        api.get("a").await.unwrap().data["spec"]["hosts"],
        json!(["new"])
    );
    // A watch from the stale list's resourceVersion sees nothing of what it missed, then the
    // live changes.
    let mut stream = api.watch(&quiet(30), &frozen).await.unwrap().boxed();
    set_host(&server, "b", "live");
    assert_eq!(next_events(&mut stream, 1).await, ["MODIFIED b live"]);
    assert_eq!(server.serve_fresh_lists(), 1);
    assert_eq!(api.list(&cached).await.unwrap().items.len(), 2);
    // A broken cache answers even quorum lists from the snapshot.
    server.serve_stale_lists(snapshot, StaleLists::Every);
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    assert_eq!(server.serve_fresh_lists(), 2);
}

#[tokio::test]
async fn expired_watches_end_with_410() {
    let Some((server, api)) = start() else { return };
    server.create(virtual_service(NS, "a")).unwrap();
    let from = server.resource_version().to_string();
    let mut stream = api.watch(&quiet(30), &from).await.unwrap().boxed();
    server.expire_watches();
    assert_eq!(next_events(&mut stream, 1).await, ["ERROR 410 Expired"]);
    assert!(
        stream.try_next().await.unwrap().is_none(),
        "the stream ends"
    );
}

#[tokio::test]
async fn the_write_audit_tells_stale_and_unconditional_writes() {
    let Some((server, api)) = start() else { return };
    server.create(virtual_service(NS, "a")).unwrap();
    let read = api.get("a").await.unwrap();
    set_host(&server, "a", "someone-else");
    // A replace from the stale read: refused.
    let error = api
        .replace("a", &PostParams::default(), &read)
        .await
        .unwrap_err();
    assert!(matches!(error, kube::Error::Api(s) if s.code == 409));
    // A merge patch without a resourceVersion: accepted, unconditionally.
    let patch = json!({"spec": {"hosts": ["blind"]}});
    api.patch("a", &Default::default(), &kube::api::Patch::Merge(&patch))
        .await
        .unwrap();
    // A fresh replace: fine.
    let mut fresh = api.get("a").await.unwrap();
    fresh.data["spec"]["hosts"] = json!(["careful"]);
    api.replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap();
    let audit = server.write_audit();
    let summary: Vec<(bool, bool, bool, u16)> = audit
        .iter()
        .map(|w| {
            (
                w.stale(),
                w.accepted_stale(),
                w.unconditional_overwrite(),
                w.status,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (true, false, false, 409),
            (false, false, true, 200),
            (false, false, false, 200)
        ]
    );
}
