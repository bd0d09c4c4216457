//! Istio's own analyzers on what `stickyctl` writes: `istioctl analyze --all-namespaces`, built
//! from the pinned Istio module (`tools/control-plane/build istioctl`), reads the real
//! kube-apiserver of the mesh harness during two rollouts at 20 %, one placed at the gateway,
//! one also in its callers' sidecars, on a user VirtualService that routes everything to the
//! service and on one that routes by path first. Pods stand for the gateway and the versions
//! (nothing runs them): the analyzers that look at workloads read Pods only.
//!
//! What docs/istio.md (*What `istioctl analyze` says*) and the README claim, checked: no error
//! on our objects once the versions' Pods exist (IST0173 on a canary's subset before); as new
//! warnings and infos only IST0130 and IST0131 on the user's routes to the service, which the
//! managed routes in front of them make unreachable; both suppressions the guide gives work
//! (the annotation surviving stickyctl's edits); and once the rollouts are deleted the user's
//! VirtualServices are as they were and the analysis says what it said before.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{json, Value};
use sticky_canary_e2e::envoy::free_port;
use sticky_canary_e2e::mesh::analyze::{self, above_info, errors, show, Finding};
use sticky_canary_e2e::mesh::stack::{fqdn, host, MeshStack, Service, NS};
use sticky_canary_e2e::mesh::tools;

/// `istioctl analyze --all-namespaces` against the API server of `kubeconfig`, every message
/// down to Info.
fn analyze(istioctl: &Path, kubeconfig: &Path, round: &str) -> BTreeSet<Finding> {
    analyze_with(istioctl, kubeconfig, round, &[])
}

/// [`analyze`] with more arguments.
fn analyze_with(
    istioctl: &Path,
    kubeconfig: &Path,
    round: &str,
    extra: &[&str],
) -> BTreeSet<Finding> {
    analyze::analyze(istioctl, kubeconfig, round, extra).unwrap_or_else(|e| panic!("{e:?}"))
}

fn finding(level: &str, code: &str, vs: &str, message: &str) -> Finding {
    Finding {
        level: level.to_owned(),
        code: code.to_owned(),
        origin: format!("VirtualService {NS}/{vs}"),
        message: message.to_owned(),
    }
}

/// The user's VirtualService of `api`: a route by path first, then everything else, both to
/// the service (a managed group goes in front of each).
fn api_virtual_service(service_port: u16) -> Value {
    let to_api = json!([{"destination": {"host": "api", "port": {"number": service_port}}}]);
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "api", "namespace": NS},
        "spec": {"hosts": [host("api"), fqdn("api")],
                 "gateways": ["istio-system/web", "mesh"],
                 "http": [{"name": "api", "match": [{"uri": {"prefix": "/api"}}],
                           "timeout": "5s", "route": to_api},
                          {"name": "api-rest", "route": to_api}]}})
}

/// Pods standing for the gateway's and each version's workload (Pending: nothing schedules them), labelled as a
/// Deployment's would be, so that the analyzers that look at workloads see a cluster where
/// the versions run; the upstreams themselves are ServiceEntry endpoints with the same labels.
fn workload_pods(service: &str, versions: &[&str]) -> Vec<Value> {
    versions
        .iter()
        .map(|version| {
            pod(
                NS,
                &format!("{service}-{version}-0"),
                json!({"app": service, "version": version}),
            )
        })
        .collect()
}

fn pod(namespace: &str, name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "example.com/app:1"}]}})
}

fn virtual_service_spec(mesh: &MeshStack, name: &str) -> Value {
    mesh.plane
        .get("networking.istio.io/v1", "VirtualService", NS, name)
        .unwrap()
        .unwrap_or_else(|| panic!("VirtualService {name} is gone"))["spec"]
        .clone()
}

/// During a rollout at 20 % on two services (one through the gateway, one also through its
/// callers' sidecars), Istio's analyzers find no error in anything `stickyctl` wrote, and the
/// only findings that were not there before are the documented ones on the user's routes.
/// Deleting the rollouts brings back exactly the findings of before.
#[test]
fn istioctl_analyze_finds_no_error_and_only_the_documented_warnings() {
    // The tool first: with CI=true a missing or unbuildable istioctl fails the test here.
    let istioctl: PathBuf = tools::istioctl().unwrap_or_else(|e| panic!("istioctl: {e:?}"));
    let service_port = free_port().unwrap();
    let upstream = Path::new(env!("CARGO_BIN_EXE_sticky-upstream"));
    let mesh = MeshStack::start(
        upstream,
        &[
            Service::new("shop", &["v1", "v2"]),
            Service::new("api", &["v1", "v2"]),
        ],
        service_port,
    )
    .unwrap_or_else(|e| panic!("cannot start the mesh: {e:?}"));
    mesh.plane
        .apply(&api_virtual_service(service_port))
        .unwrap();
    // The gateway Envoy's Pod and Service, as its Deployment and chart would make them (the
    // Pod's name is not the proxy's, so istiod goes on taking the proxy's labels from the
    // proxy; the Pod never runs, so the Service has no endpoint).
    let gateway_labels = json!({"istio": "ingressgateway", "app": "istio-ingressgateway"});
    let gateway = pod(
        "istio-system",
        "istio-ingressgateway-0",
        gateway_labels.clone(),
    );
    mesh.plane
        .apply(&json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"},
            "spec": {"selector": gateway_labels,
                     "ports": [{"name": "http", "port": mesh.port, "targetPort": mesh.port}]}}))
        .unwrap();
    for pod in std::iter::once(gateway)
        // The canaries get their Pods later: first, what a canary without one gets.
        .chain(workload_pods("shop", &["v1"]))
        .chain(workload_pods("api", &["v1"]))
        .chain(workload_pods("a", &["v1"]))
    {
        mesh.plane.apply(&pod).unwrap();
    }
    let kubeconfig = mesh.plane.admin_kubeconfig(NS).unwrap();
    let users: BTreeMap<&str, Value> = ["shop", "api"]
        .into_iter()
        .map(|name| (name, virtual_service_spec(&mesh, name)))
        .collect();

    // Before any rollout: what the harness's own objects get, infos only (the namespaces are
    // not labelled for injection, IST0102), so that every warning below is the rollouts'.
    let before = analyze(&istioctl, &kubeconfig, "before");
    assert_eq!(
        above_info(&before),
        BTreeSet::new(),
        "warnings or errors before any rollout (the harness's own objects):{}",
        show(&before)
    );

    mesh.init("shop", &[]).unwrap();
    mesh.init("api", &["--sidecar", "app=a"]).unwrap();
    for rollout in ["shop", "api"] {
        mesh.sticky(rollout, &["start", "--canary", "v2"]).unwrap();
        mesh.sticky(rollout, &["set-weight", "20"]).unwrap();
    }
    // What the analysis below reads: the managed routes, the subsets, both plugins.
    // Two versions and the fallback, in front of each user route to the service.
    for (name, expected) in [("shop", 3), ("api", 2 * 3)] {
        let managed = virtual_service_spec(&mesh, name)["http"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r["name"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("sticky-canary-")
            })
            .count();
        assert_eq!(managed, expected, "managed routes of VirtualService {name}");
        let rule = mesh
            .plane
            .get("networking.istio.io/v1", "DestinationRule", NS, name)
            .unwrap()
            .unwrap_or_else(|| panic!("no DestinationRule {name}"));
        assert_eq!(
            rule["spec"]["subsets"].as_array().map(Vec::len),
            Some(2),
            "{rule}"
        );
    }
    assert!(
        mesh.gateway_plugin().unwrap().is_some(),
        "the gateway's plugin"
    );
    assert!(
        mesh.plane
            .get(
                "extensions.istio.io/v1alpha1",
                "WasmPlugin",
                NS,
                "sticky-canary-sidecar-app-a"
            )
            .unwrap()
            .is_some(),
        "the callers' sidecar plugin"
    );

    // The canaries' subsets before any of their Pods exists (a version started before it is
    // deployed, or one whose workloads are not Pods): Istio's one error on our objects, the
    // subset selecting no Pod (IST0173). It looks at Pods alone (ServiceEntry endpoints such
    // as the harness's upstreams do not count) and, for a ServiceEntry without a workload
    // selector, at every Pod with the subset's labels: hence no `version: v2` Pod anywhere.
    let podless = analyze(&istioctl, &kubeconfig, "the canaries without a Pod");
    let podless_error = |rule: &str| Finding {
        level: "Error".to_owned(),
        code: "IST0173".to_owned(),
        origin: format!("DestinationRule {NS}/{rule}"),
        message: "The Subset sticky-canary-v2 defined in the DestinationRule does not select \
                  any pods. Which may lead to 503 UH (NoHealthyUpstream)."
            .to_owned(),
    };
    assert_eq!(
        errors(&podless),
        BTreeSet::from([podless_error("shop"), podless_error("api")]),
        "{}",
        show(&podless)
    );
    for pod in workload_pods("shop", &["v2"])
        .into_iter()
        .chain(workload_pods("api", &["v2"]))
    {
        mesh.plane.apply(&pod).unwrap();
    }

    let during = analyze(&istioctl, &kubeconfig, "during");
    assert_eq!(
        errors(&during),
        BTreeSet::new(),
        "errors during the rollouts:{}",
        show(&during)
    );
    let new: BTreeSet<Finding> = during.difference(&before).cloned().collect();
    let documented = BTreeSet::from([
        // The managed fallback to stable has the user route's conditions: a route after it
        // with the same conditions is never reached (IST0130), each of its matches a
        // duplicate (IST0131); a route without conditions comes after one without (IST0130).
        finding(
            "Warning",
            "IST0130",
            "shop",
            "VirtualService rule \"shop\" not used (only the last rule can have no matches).",
        ),
        finding(
            "Warning",
            "IST0130",
            "api",
            "VirtualService rule \"api\" not used (all matches used by prior rules).",
        ),
        finding(
            "Info",
            "IST0131",
            "api",
            "VirtualService rule \"api\" match #0 is not used (duplicate/overlapping match in \
             rule \"sticky-canary-api\").",
        ),
        finding(
            "Warning",
            "IST0130",
            "api",
            "VirtualService rule \"api-rest\" not used (only the last rule can have no matches).",
        ),
    ]);
    assert_eq!(
        new,
        documented,
        "the findings the rollouts added:{}\nexpected:{}",
        show(&new),
        show(&documented)
    );
    assert_eq!(
        above_info(&during),
        above_info(&documented),
        "every warning during the rollouts is a documented one"
    );
    assert!(
        before.difference(&during).next().is_none(),
        "a finding of before went away during the rollouts:{}",
        show(&before.difference(&during).cloned().collect())
    );

    // The two ways docs/istio.md gives a pipeline that fails on warnings: the flag, with the
    // resource named as this Istio names it...
    let suppressed = analyze_with(
        &istioctl,
        &kubeconfig,
        "IST0130 suppressed by flag",
        &["-S", "IST0130=VirtualService prod/*"],
    );
    assert_eq!(
        above_info(&suppressed),
        BTreeSet::new(),
        "{}",
        show(&suppressed)
    );
    // ... and the annotation on the user's VirtualService, which stickyctl's edits keep.
    let annotation = "galley.istio.io/analyze-suppress";
    // (`kubectl annotate`: a merge patch of the metadata alone.)
    let virtual_services: Api<DynamicObject> = Api::namespaced_with(
        mesh.plane.client(),
        NS,
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "networking.istio.io",
            "v1",
            "VirtualService",
        )),
    );
    mesh.plane
        .block_on(virtual_services.patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {annotation: "IST0130"}}})),
        ))
        .unwrap();
    mesh.sticky("shop", &["set-weight", "30"]).unwrap();
    let annotated = analyze(
        &istioctl,
        &kubeconfig,
        "shop's IST0130 suppressed by annotation",
    );
    let shop_origin = format!("VirtualService {NS}/shop");
    assert!(
        !annotated.iter().any(|f| f.origin == shop_origin),
        "{}",
        show(&annotated)
    );
    let shop = mesh
        .plane
        .get("networking.istio.io/v1", "VirtualService", NS, "shop")
        .unwrap()
        .unwrap();
    assert_eq!(shop["metadata"]["annotations"][annotation], "IST0130");
    assert_eq!(
        above_info(&annotated),
        above_info(&documented)
            .into_iter()
            .filter(|f| f.origin != shop_origin)
            .collect(),
        "{}",
        show(&annotated)
    );

    for rollout in ["shop", "api"] {
        mesh.sticky(rollout, &["delete"]).unwrap();
    }
    for (name, spec) in &users {
        assert_eq!(
            &virtual_service_spec(&mesh, name),
            spec,
            "VirtualService {name} restored"
        );
    }
    let after = analyze(&istioctl, &kubeconfig, "after");
    assert_eq!(
        after,
        before,
        "after the rollouts:{}\nbefore them:{}",
        show(&after),
        show(&before)
    );
}
