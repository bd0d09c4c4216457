//! The fake API server driven by a real kube-rs client: proves the wire format, status codes and
//! semantics are what kube-rs (and therefore the controller) expects from a real API server.

use futures::{StreamExt, TryStreamExt};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::runtime::watcher;
use kube::Client;
use serde_json::{json, Value};
use sticky_canary_tests::samples::{virtual_service, wasm_plugin};
use sticky_canary_tests::{istio_crds, FakeApiServer};

const NS: &str = "prod";

fn virtual_services(client: &Client, version: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("networking.istio.io", version, "VirtualService");
    Api::namespaced_with(
        client.clone(),
        NS,
        &ApiResource::from_gvk_with_plural(&gvk, "virtualservices"),
    )
}

fn start() -> Option<(FakeApiServer, Client)> {
    let server = FakeApiServer::start(istio_crds()?);
    let client = Client::try_from(server.kube_config()).expect("kube client");
    Some((server, client))
}

fn object(value: Value) -> DynamicObject {
    serde_json::from_value(value).expect("a Kubernetes object")
}

fn api_error(error: kube::Error) -> (u16, String) {
    match error {
        kube::Error::Api(status) => (status.code, status.reason.clone()),
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn create_get_replace_with_optimistic_concurrency() {
    let Some((_server, client)) = start() else {
        return;
    };
    let api = virtual_services(&client, "v1");
    let created = api
        .create(&PostParams::default(), &object(virtual_service(NS, "web")))
        .await
        .unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());

    let again = api
        .create(&PostParams::default(), &object(virtual_service(NS, "web")))
        .await
        .unwrap_err();
    assert_eq!(api_error(again), (409, "AlreadyExists".into()));

    let mut changed = api.get("web").await.unwrap();
    changed.data["spec"]["hosts"] = json!(["web", "web.prod.svc.cluster.local"]);
    let replaced = api
        .replace("web", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_ne!(
        replaced.metadata.resource_version.as_deref(),
        Some(rv.as_str())
    );
    assert_eq!(
        replaced.metadata.generation,
        Some(2),
        "a spec change bumps generation"
    );

    // `changed` still carries the old resourceVersion: the write must not clobber.
    changed.data["spec"]["hosts"] = json!(["stale"]);
    let stale = api
        .replace("web", &PostParams::default(), &changed)
        .await
        .unwrap_err();
    assert_eq!(api_error(stale), (409, "Conflict".into()));
    assert_eq!(
        api.get("web").await.unwrap().data["spec"]["hosts"],
        json!(["web", "web.prod.svc.cluster.local"])
    );
}

#[tokio::test]
async fn a_write_that_changes_nothing_keeps_the_resource_version() {
    let Some((_server, client)) = start() else {
        return;
    };
    let api = virtual_services(&client, "v1");
    let created = api
        .create(&PostParams::default(), &object(virtual_service(NS, "web")))
        .await
        .unwrap();
    let same = api
        .replace("web", &PostParams::default(), &created)
        .await
        .unwrap();
    assert_eq!(
        same.metadata.resource_version,
        created.metadata.resource_version
    );
}

#[tokio::test]
async fn invalid_objects_are_rejected_with_422_and_field_causes() {
    let Some((server, client)) = start() else {
        return;
    };
    let api = virtual_services(&client, "v1");
    let mut vs = virtual_service(NS, "web");
    vs["spec"]["http"][0]["match"][0]["headers"]["x-sticky-version"] = json!({"exactly": "v2"});
    let error = api
        .create(&PostParams::default(), &object(vs))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = error else {
        panic!("expected an API error")
    };
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    let causes = status.details.expect("details").causes;
    assert!(
        causes.iter().any(
            |c| c.field == "spec.http[0].match[0].headers.x-sticky-version"
                && c.message.contains("\"exactly\"")
        ),
        "{causes:?}"
    );
    assert!(
        server
            .get("networking.istio.io/v1", "VirtualService", NS, "web")
            .is_none(),
        "nothing stored"
    );
}

#[tokio::test]
async fn patches_by_content_type() {
    let Some((server, client)) = start() else {
        return;
    };
    let api = virtual_services(&client, "v1");
    api.create(&PostParams::default(), &object(virtual_service(NS, "web")))
        .await
        .unwrap();
    let params = PatchParams::default();

    let merged = api
        .patch(
            "web",
            &params,
            &Patch::Merge(json!({"metadata": {"labels": {"team": "a"}}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.metadata.labels.unwrap()["team"], "a");
    assert_eq!(
        merged.metadata.generation,
        Some(1),
        "metadata changes do not bump generation"
    );

    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/http/0/name", "value": "sticky-canary-v2"},
        {"op": "replace", "path": "/spec/http/1/route/0/weight", "value": 100}
    ]))
    .unwrap();
    let patched = api
        .patch("web", &params, &Patch::<Value>::Json(ops))
        .await
        .unwrap();
    assert_eq!(
        patched.metadata.resource_version.as_deref(),
        merged.metadata.resource_version.as_deref(),
        "weight was already 100: no-op"
    );

    let failing: json_patch::Patch = serde_json::from_value(
        json!([{"op": "test", "path": "/spec/http/0/name", "value": "other"}]),
    )
    .unwrap();
    let error = api
        .patch("web", &params, &Patch::<Value>::Json(failing))
        .await
        .unwrap_err();
    assert_eq!(api_error(error).0, 422);

    let strategic = api
        .patch("web", &params, &Patch::Strategic(json!({"spec": {}})))
        .await
        .unwrap_err();
    assert_eq!(api_error(strategic), (415, "UnsupportedMediaType".into()));

    let stale = json!({"metadata": {"resourceVersion": "1"}, "spec": {"hosts": ["x"]}});
    assert_eq!(
        api_error(
            api.patch("web", &params, &Patch::Merge(stale))
                .await
                .unwrap_err()
        ),
        (409, "Conflict".into())
    );

    let invalid = json!({"spec": {"hosts": "not-a-list"}});
    assert_eq!(
        api_error(
            api.patch("web", &params, &Patch::Merge(invalid))
                .await
                .unwrap_err()
        )
        .0,
        422
    );

    let missing = api
        .patch("nope", &params, &Patch::Merge(json!({})))
        .await
        .unwrap_err();
    assert_eq!(api_error(missing), (404, "NotFound".into()));
    assert!(server
        .requests()
        .iter()
        .any(|r| r.content_type.as_deref() == Some("application/json-patch+json")));
}

#[tokio::test]
async fn server_side_apply_creates_updates_and_detects_conflicts() {
    let Some((server, client)) = start() else {
        return;
    };
    let api = virtual_services(&client, "v1");
    let mut config = virtual_service(NS, "web");
    let created = api
        .patch(
            "web",
            &PatchParams::apply("stickyctl"),
            &Patch::Apply(&config),
        )
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));

    // The same manager dropping a label it applied removes it.
    config["metadata"].as_object_mut().unwrap().remove("labels");
    let updated = api
        .patch(
            "web",
            &PatchParams::apply("stickyctl"),
            &Patch::Apply(&config),
        )
        .await
        .unwrap();
    assert!(updated.metadata.labels.unwrap_or_default().is_empty());

    // Another manager changing a field stickyctl owns conflicts unless forced.
    let other = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "web"}, "spec": {"hosts": ["other"]}});
    let conflict = api
        .patch("web", &PatchParams::apply("someone"), &Patch::Apply(&other))
        .await
        .unwrap_err();
    assert_eq!(api_error(conflict), (409, "Conflict".into()));
    let forced = api
        .patch(
            "web",
            &PatchParams::apply("someone").force(),
            &Patch::Apply(&other),
        )
        .await
        .unwrap();
    assert_eq!(forced.data["spec"]["hosts"], json!(["other"]));
    assert!(server
        .field_owners("networking.istio.io/v1", "VirtualService", NS, "web")
        .unwrap()
        .managers()["someone"]
        .contains("/spec/hosts"));

    let no_manager = api
        .patch("web", &PatchParams::default(), &Patch::Apply(&other))
        .await
        .unwrap_err();
    assert_eq!(api_error(no_manager).0, 400, "apply requires fieldManager");
}

#[tokio::test]
async fn list_delete_and_versions() {
    let Some((server, client)) = start() else {
        return;
    };
    let api = virtual_services(&client, "v1");
    for name in ["a", "b"] {
        api.create(&PostParams::default(), &object(virtual_service(NS, name)))
            .await
            .unwrap();
    }
    let mut other = virtual_service(NS, "c");
    other["metadata"]["labels"] = json!({"app": "api"});
    api.create(&PostParams::default(), &object(other))
        .await
        .unwrap();

    let all = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), 3);
    assert_eq!(
        all.metadata.resource_version,
        Some(server.resource_version().to_string())
    );
    let web = api
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(
        web.items
            .iter()
            .map(|o| o.metadata.name.clone().unwrap())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);

    // Stored once, served in every version of the CRD.
    let beta = virtual_services(&client, "v1beta1").get("a").await.unwrap();
    assert_eq!(
        beta.types.unwrap().api_version,
        "networking.istio.io/v1beta1"
    );

    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        api_error(api.get("a").await.unwrap_err()),
        (404, "NotFound".into())
    );
    let all_namespaces: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService"),
            "virtualservices",
        ),
    );
    assert_eq!(
        all_namespaces
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
}

#[tokio::test]
async fn dry_run_validates_without_writing() {
    let Some((server, client)) = start() else {
        return;
    };
    let api = virtual_services(&client, "v1");
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    api.create(&dry, &object(virtual_service(NS, "web")))
        .await
        .unwrap();
    assert!(server
        .get("networking.istio.io/v1", "VirtualService", NS, "web")
        .is_none());
    assert_eq!(server.write_requests().len(), 0, "a dry run is not a write");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn injected_conflicts_fail_the_next_writes_only() {
    let Some((server, client)) = start() else {
        return;
    };
    let api = virtual_services(&client, "v1");
    server.fail_next_writes(2);
    for _ in 0..2 {
        let error = api
            .create(&PostParams::default(), &object(virtual_service(NS, "web")))
            .await
            .unwrap_err();
        assert_eq!(api_error(error), (409, "Conflict".into()));
    }
    api.create(&PostParams::default(), &object(virtual_service(NS, "web")))
        .await
        .unwrap();
    assert_eq!(server.write_requests().len(), 3);
}

#[tokio::test]
async fn unknown_resources_are_404() {
    let Some((_server, client)) = start() else {
        return;
    };
    let gvk = GroupVersionKind::gvk("networking.istio.io", "v1", "Nothing");
    let api: Api<DynamicObject> = Api::namespaced_with(
        client,
        NS,
        &ApiResource::from_gvk_with_plural(&gvk, "nothings"),
    );
    assert_eq!(
        api_error(api.list(&ListParams::default()).await.unwrap_err()).0,
        404
    );
}

#[tokio::test]
async fn kube_runtime_watcher_sees_changes() {
    let Some((server, client)) = start() else {
        return;
    };
    let api = virtual_services(&client, "v1");
    api.create(
        &PostParams::default(),
        &object(virtual_service(NS, "before")),
    )
    .await
    .unwrap();
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    let mut seen = Vec::new();
    // Initial list: Init, InitApply(before), InitDone.
    while let Some(event) = events.try_next().await.unwrap() {
        let done = matches!(event, watcher::Event::InitDone);
        seen.push(describe(&event));
        if done {
            break;
        }
    }
    assert_eq!(seen, ["init", "init-apply before", "init-done"]);
    server.create(virtual_service(NS, "after")).unwrap();
    server
        .delete("networking.istio.io/v1", "VirtualService", NS, "before")
        .unwrap();
    let next: Vec<String> = events
        .take(2)
        .map(|e| describe(&e.unwrap()))
        .collect()
        .await;
    assert_eq!(next, ["apply after", "delete before"]);
}

#[tokio::test]
async fn kube_runtime_watcher_with_streaming_list() {
    let Some((server, client)) = start() else {
        return;
    };
    let api = virtual_services(&client, "v1");
    api.create(
        &PostParams::default(),
        &object(virtual_service(NS, "before")),
    )
    .await
    .unwrap();
    let config = watcher::Config::default().streaming_lists();
    let mut events = watcher(api, config).boxed();
    let mut seen = Vec::new();
    while let Some(event) = events.try_next().await.unwrap() {
        let done = matches!(event, watcher::Event::InitDone);
        seen.push(describe(&event));
        if done {
            break;
        }
    }
    assert_eq!(seen, ["init", "init-apply before", "init-done"]);
    server
        .update(
            "networking.istio.io/v1",
            "VirtualService",
            NS,
            "before",
            |o| o["spec"]["hosts"] = json!(["x"]),
        )
        .unwrap();
    let next = events.try_next().await.unwrap().map(|e| describe(&e));
    assert_eq!(next.as_deref(), Some("apply before"));
}

fn describe(event: &watcher::Event<DynamicObject>) -> String {
    let name = |o: &DynamicObject| o.metadata.name.clone().unwrap_or_default();
    match event {
        watcher::Event::Init => "init".into(),
        watcher::Event::InitApply(o) => format!("init-apply {}", name(o)),
        watcher::Event::InitDone => "init-done".into(),
        watcher::Event::Apply(o) => format!("apply {}", name(o)),
        watcher::Event::Delete(o) => format!("delete {}", name(o)),
    }
}

#[tokio::test]
async fn racing_writers_from_the_same_read_have_exactly_one_winner() {
    let Some((server, client)) = start() else {
        return;
    };
    let api = virtual_services(&client, "v1");
    let base = api
        .create(&PostParams::default(), &object(virtual_service(NS, "web")))
        .await
        .unwrap();
    let writers = (0..8).map(|i| {
        let (api, mut copy) = (api.clone(), base.clone());
        copy.data["spec"]["hosts"] = json!([format!("writer-{i}")]);
        tokio::spawn(async move { api.replace("web", &PostParams::default(), &copy).await })
    });
    let mut winners = Vec::new();
    for (i, writer) in writers.enumerate() {
        match writer.await.unwrap() {
            Ok(_) => winners.push(i),
            Err(error) => assert_eq!(api_error(error), (409, "Conflict".into())),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let stored = server
        .get("networking.istio.io/v1", "VirtualService", NS, "web")
        .unwrap();
    assert_eq!(
        stored["spec"]["hosts"],
        json!([format!("writer-{}", winners[0])])
    );
}

fn wasm_plugins(client: &Client, namespace: Option<&str>) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("extensions.istio.io", "v1alpha1", "WasmPlugin"),
        "wasmplugins",
    );
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

/// `namespace/name` of each object, in order.
fn located(objects: &[DynamicObject]) -> Vec<String> {
    objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o.metadata.namespace.clone().unwrap_or_default(),
                o.metadata.name.clone().unwrap_or_default()
            )
        })
        .collect()
}

/// WasmPlugins in two namespaces, the ones named `managed-*` labelled as stickyctl's.
fn seed_plugins(server: &FakeApiServer, names: &[(&str, &str)]) {
    for (namespace, name) in names {
        let mut plugin = wasm_plugin(namespace, name);
        if name.starts_with("managed") {
            plugin["metadata"]["labels"] = json!({"app.kubernetes.io/managed-by": "stickyctl"});
        }
        server.create(plugin).unwrap();
    }
}

#[tokio::test]
async fn a_list_across_namespaces_takes_a_label_selector() {
    let Some((server, client)) = start() else {
        return;
    };
    seed_plugins(
        &server,
        &[
            ("prod", "managed-legacy"),
            ("prod", "users"),
            ("istio-system", "managed-gateway"),
            ("istio-system", "mesh-wide"),
        ],
    );
    let all = wasm_plugins(&client, None);
    let managed = all
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=stickyctl"))
        .await
        .unwrap();
    assert_eq!(
        located(&managed.items),
        ["istio-system/managed-gateway", "prod/managed-legacy"]
    );
    assert_eq!(
        managed.metadata.resource_version,
        Some(server.resource_version().to_string())
    );
    let everything = all.list(&ListParams::default()).await.unwrap();
    assert_eq!(everything.items.len(), 4);
    let requests = server.requests();
    let list = requests.iter().find(|r| r.method == "GET").unwrap();
    assert_eq!(list.path, "/apis/extensions.istio.io/v1alpha1/wasmplugins");
    assert!(
        list.query
            .contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dstickyctl"),
        "{list:?}"
    );
}

#[tokio::test]
async fn delete_with_a_resource_version_precondition() {
    let Some((server, client)) = start() else {
        return;
    };
    seed_plugins(&server, &[("istio-system", "managed-gateway")]);
    let api = wasm_plugins(&client, Some("istio-system"));
    let read = api.get("managed-gateway").await.unwrap();
    let read_version = read.metadata.resource_version.clone().unwrap();
    let precondition = |version: &str| DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: Some(version.to_owned()),
            uid: None,
        }),
        ..DeleteParams::default()
    };
    // Someone changes it after the read: the delete of what was read is refused.
    server
        .update(
            "extensions.istio.io/v1alpha1",
            "WasmPlugin",
            "istio-system",
            "managed-gateway",
            |p| p["spec"]["pluginConfig"] = json!({"rollouts": []}),
        )
        .unwrap();
    let stale = api
        .delete("managed-gateway", &precondition(&read_version))
        .await
        .unwrap_err();
    assert_eq!(api_error(stale), (409, "Conflict".into()));
    let current = api.get("managed-gateway").await.unwrap();
    assert_ne!(current.metadata.resource_version, Some(read_version));
    // The delete of the current version goes through; then there is nothing to delete.
    let version = current.metadata.resource_version.unwrap();
    api.delete("managed-gateway", &precondition(&version))
        .await
        .unwrap();
    assert!(server
        .get(
            "extensions.istio.io/v1alpha1",
            "WasmPlugin",
            "istio-system",
            "managed-gateway"
        )
        .is_none());
    let gone = api
        .delete("managed-gateway", &precondition(&version))
        .await
        .unwrap_err();
    assert_eq!(api_error(gone), (404, "NotFound".into()));
}

#[tokio::test]
async fn a_cluster_wide_watcher_with_a_label_selector() {
    let Some((server, client)) = start() else {
        return;
    };
    seed_plugins(&server, &[("prod", "managed-legacy"), ("prod", "users")]);
    let config = watcher::Config::default().labels("app.kubernetes.io/managed-by=stickyctl");
    let mut events = watcher(wasm_plugins(&client, None), config).boxed();
    let mut seen = Vec::new();
    while let Some(event) = events.try_next().await.unwrap() {
        let done = matches!(event, watcher::Event::InitDone);
        seen.push(describe(&event));
        if done {
            break;
        }
    }
    assert_eq!(seen, ["init", "init-apply managed-legacy", "init-done"]);
    // Changes in any namespace, of labelled plugins only.
    seed_plugins(
        &server,
        &[
            ("istio-system", "mesh-wide"),
            ("istio-system", "managed-gateway"),
        ],
    );
    server
        .delete(
            "extensions.istio.io/v1alpha1",
            "WasmPlugin",
            "prod",
            "managed-legacy",
        )
        .unwrap();
    server
        .delete(
            "extensions.istio.io/v1alpha1",
            "WasmPlugin",
            "prod",
            "users",
        )
        .unwrap();
    let next: Vec<String> = events
        .take(2)
        .map(|e| describe(&e.unwrap()))
        .collect()
        .await;
    assert_eq!(next, ["apply managed-gateway", "delete managed-legacy"]);
}
