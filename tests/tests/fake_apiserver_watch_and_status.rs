//! Watch history, 410 Gone, bookmarks, the status subresource and finalizers of the fake API
//! server, through kube-rs's raw watch and status calls.

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DeleteParams, DynamicObject, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use sticky_canary_tests::samples::{virtual_service, virtual_services};
use sticky_canary_tests::{istio_crds, FakeApiServer};

const NS: &str = "prod";
const VS: &str = "networking.istio.io/v1";

fn start() -> Option<(FakeApiServer, Api<DynamicObject>)> {
    let server = FakeApiServer::start(istio_crds()?);
    let api = virtual_services(&server, NS);
    Some((server, api))
}

fn describe(event: WatchEvent<DynamicObject>) -> String {
    let name = |o: &DynamicObject| o.metadata.name.clone().unwrap_or_default();
    match event {
        WatchEvent::Added(o) => format!("ADDED {}", name(&o)),
        WatchEvent::Modified(o) => format!("MODIFIED {}", name(&o)),
        WatchEvent::Deleted(o) => format!("DELETED {}", name(&o)),
        WatchEvent::Bookmark(b) => format!("BOOKMARK {}", b.metadata.resource_version),
        WatchEvent::Error(e) => format!("ERROR {} {}", e.code, e.reason),
    }
}

/// Watch parameters without bookmarks, so streams hold only object events.
fn quiet(timeout_seconds: u32) -> WatchParams {
    WatchParams {
        bookmarks: false,
        ..WatchParams::default().timeout(timeout_seconds)
    }
}

#[tokio::test]
async fn watch_replays_history_after_a_resource_version_then_times_out_with_a_bookmark() {
    let Some((server, api)) = start() else { return };
    server.create(virtual_service(NS, "a")).unwrap();
    let from = server.resource_version().to_string();
    server.create(virtual_service(NS, "b")).unwrap();
    server
        .update(VS, "VirtualService", NS, "a", |o| {
            o["spec"]["hosts"] = json!(["x"])
        })
        .unwrap();
    server.delete(VS, "VirtualService", NS, "b").unwrap();
    let params = WatchParams {
        bookmarks: true,
        ..WatchParams::default().timeout(1)
    };
    let events: Vec<String> = api
        .watch(&params, &from)
        .await
        .unwrap()
        .map(|e| describe(e.unwrap()))
        .collect()
        .await;
    let last = server.resource_version();
    assert_eq!(
        events,
        [
            "ADDED b",
            "MODIFIED a",
            "DELETED b",
            &format!("BOOKMARK {last}")
        ]
    );
}

#[tokio::test]
async fn watch_from_a_compacted_resource_version_is_410_gone() {
    let Some((server, api)) = start() else { return };
    for name in ["a", "b"] {
        server.create(virtual_service(NS, name)).unwrap();
    }
    server.compact_history();
    server.create(virtual_service(NS, "c")).unwrap();
    let events: Vec<String> = api
        .watch(&quiet(5), "1")
        .await
        .unwrap()
        .map(|e| describe(e.unwrap()))
        .collect()
        .await;
    assert_eq!(events, ["ERROR 410 Expired"]);
}

#[tokio::test]
async fn bounded_history_expires_old_resource_versions() {
    let Some((server, api)) = start() else { return };
    server.set_history_limit(1);
    for name in ["a", "b", "c"] {
        server.create(virtual_service(NS, name)).unwrap();
    }
    let gone: Vec<String> = api
        .watch(&quiet(1), "0")
        .await
        .unwrap()
        .map(|e| describe(e.unwrap()))
        .collect()
        .await;
    assert_eq!(
        gone,
        ["ADDED a", "ADDED b", "ADDED c"],
        "resourceVersion 0 means the current state"
    );
    let expired: Vec<String> = api
        .watch(&quiet(1), "1")
        .await
        .unwrap()
        .map(|e| describe(e.unwrap()))
        .collect()
        .await;
    assert_eq!(expired, ["ERROR 410 Expired"]);
    let kept: Vec<String> = api
        .watch(&quiet(1), "2")
        .await
        .unwrap()
        .map(|e| describe(e.unwrap()))
        .collect()
        .await;
    assert_eq!(
        kept,
        ["ADDED c"],
        "the one retained event is after resourceVersion 2"
    );
}

#[tokio::test]
async fn live_watch_with_a_label_selector_sees_objects_enter_and_leave() {
    let Some((server, api)) = start() else { return };
    let params = quiet(30).labels("app=web");
    let mut stream = api.watch(&params, "0").await.unwrap().boxed();
    server.create(virtual_service(NS, "a")).unwrap();
    server
        .update(VS, "VirtualService", NS, "a", |o| {
            o["metadata"]["labels"]["app"] = json!("api")
        })
        .unwrap();
    server
        .update(VS, "VirtualService", NS, "a", |o| {
            o["metadata"]["labels"]["app"] = json!("web")
        })
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(describe(stream.try_next().await.unwrap().expect("event")));
    }
    assert_eq!(seen, ["ADDED a", "DELETED a", "ADDED a"]);
}

#[tokio::test]
async fn status_subresource_separates_spec_and_status_writes() {
    let Some((server, api)) = start() else { return };
    let mut with_status = virtual_service(NS, "web");
    with_status["status"] = json!({"observedGeneration": 7});
    let created = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(with_status).unwrap(),
        )
        .await
        .unwrap();
    assert!(
        created.data.get("status").is_none(),
        "create ignores status when the CRD has the subresource"
    );

    let status = json!({"status": {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]}});
    let updated = api
        .patch_status(
            "web",
            &Default::default(),
            &kube::api::Patch::Merge(&status),
        )
        .await
        .unwrap();
    assert_eq!(updated.data["status"]["observedGeneration"], json!(1));
    assert_eq!(
        updated.metadata.generation,
        Some(1),
        "status writes do not bump generation"
    );

    let mut main = api.get("web").await.unwrap();
    main.data["status"] = json!({"observedGeneration": 99});
    main.data["spec"]["hosts"] = json!(["changed"]);
    let replaced = api
        .replace("web", &PostParams::default(), &main)
        .await
        .unwrap();
    assert_eq!(
        replaced.data["status"]["observedGeneration"],
        json!(1),
        "main writes ignore status"
    );
    assert_eq!(replaced.data["spec"]["hosts"], json!(["changed"]));

    let mut status_only = api.get("web").await.unwrap();
    status_only.data["spec"]["hosts"] = json!(["ignored"]);
    status_only.data["status"]["observedGeneration"] = json!(2);
    let after = api
        .replace_status("web", &PostParams::default(), &status_only)
        .await
        .unwrap();
    assert_eq!(
        (
            after.data["spec"]["hosts"].clone(),
            after.data["status"]["observedGeneration"].clone()
        ),
        (json!(["changed"]), json!(2))
    );

    let invalid = json!({"status": {"validationMessages": [{"level": "LOUD"}]}});
    let error = api
        .patch_status(
            "web",
            &Default::default(),
            &kube::api::Patch::Merge(&invalid),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, kube::Error::Api(s) if s.code == 422));
    assert_eq!(
        server.get(VS, "VirtualService", NS, "web").unwrap()["status"]["observedGeneration"],
        json!(2)
    );
}

#[tokio::test]
async fn finalizers_delay_deletion_until_removed() {
    let Some((server, api)) = start() else { return };
    let mut vs = virtual_service(NS, "web");
    vs["metadata"]["finalizers"] = json!(["stickycanary.io/cleanup"]);
    server.create(vs).unwrap();
    api.delete("web", &DeleteParams::default()).await.unwrap();
    let marked = server
        .get(VS, "VirtualService", NS, "web")
        .expect("still present while a finalizer remains");
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    server
        .update(VS, "VirtualService", NS, "web", |o| {
            o["metadata"]["finalizers"] = json!([])
        })
        .unwrap();
    assert!(server.get(VS, "VirtualService", NS, "web").is_none());
}
