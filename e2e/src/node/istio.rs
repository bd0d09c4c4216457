//! Istio installed on the node as a cluster installs it: Helm charts of the pinned Istio
//! module (`manifests/charts`), istiod as a Pod with its sidecar injector and its CA, the
//! ingress gateway as a Deployment whose proxy istiod injects, STRICT mTLS for the mesh.
//!
//! The images are the node's (`make node-images`): `pilot` is the pinned istiod, `proxyv2` the
//! pinned istio-agent with the upstream Envoy 1.40. What only Istio's own Envoy build has stays
//! off, as in the mesh harness: the `istio.alpn` and metadata-exchange filters (istiod's
//! settings) and Istio's stats filter (no telemetry provider).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::{Node, TAG};

/// The ingress gateway's release, Deployment and Service name.
pub const GATEWAY: &str = "istio-ingressgateway";

/// Where the pinned Istio module keeps its Helm charts.
fn charts() -> Result<PathBuf> {
    let mut paths = crate::mesh::tools::locate(&["istio-charts"])?;
    Ok(paths.remove("istio-charts").unwrap_or_default())
}

/// Installs Istio's base chart (its CRDs), istiod's and the
/// ingress gateway's, and mesh-wide STRICT mTLS; returns once istiod and the gateway run.
pub fn install(node: &Node) -> Result<()> {
    let charts = charts()?;
    let hub = format!("{}/istio", node.registry);
    let values = json!({
        "global": {"hub": hub, "tag": TAG, "imagePullPolicy": "IfNotPresent",
                   "proxy": {"resources": {"requests": {"cpu": "10m", "memory": "40Mi"}}}},
        "pilot": {
            "autoscaleEnabled": false,
            "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}},
            "env": {
                // Filters of Istio's own Envoy build (see the module's doc).
                "PILOT_ENABLE_ALPN_FILTER": "false",
                "PILOT_ENABLE_METADATA_EXCHANGE": "false",
                "PILOT_DISABLE_MX_ALPN": "true",
            },
        },
        // No stats filter: Istio's stats extension is not in the upstream Envoy.
        "telemetry": {"enabled": false},
        "meshConfig": {"defaultConfig": {"proxyMetadata": {
            // The node's registry speaks plain HTTP.
            "WASM_INSECURE_REGISTRIES": node.registry,
        }}},
    });
    let values_file = node.dir().join("istiod-values.json");
    std::fs::write(&values_file, serde_json::to_vec_pretty(&values)?)?;
    helm(
        node,
        &[
            "install",
            "istio-base",
            &charts.join("base").display().to_string(),
            "--namespace=istio-system",
        ],
    )?;
    helm(
        node,
        &[
            "install",
            "istiod",
            &charts
                .join("istio-control/istio-discovery")
                .display()
                .to_string(),
            "--namespace=istio-system",
            &format!("--values={}", values_file.display()),
        ],
    )?;
    node.wait_rollout("istio-system", "istiod")?;
    node.plane.apply(&json!({
        "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": "istio-system"},
        "spec": {"mtls": {"mode": "STRICT"}},
    }))?;
    helm(
        node,
        &[
            "install",
            GATEWAY,
            &charts.join("gateway").display().to_string(),
            "--namespace=istio-system",
            "--set=service.type=ClusterIP",
            "--set=resources.requests.cpu=10m",
            "--set=resources.requests.memory=40Mi",
            "--set=autoscaling.enabled=false",
        ],
    )?;
    node.wait_rollout("istio-system", GATEWAY)
}

/// Names the chart's proxy stats on the gateway's pods, as the install guide's *Metrics* says
/// (`podAnnotations` of Istio's `gateway` chart), and waits for the restarted gateway.
pub fn gateway_proxy_stats(node: &Node) -> Result<()> {
    let charts = charts()?;
    helm(
        node,
        &[
            "upgrade",
            GATEWAY,
            &charts.join("gateway").display().to_string(),
            "--namespace=istio-system",
            "--reuse-values",
            "--set-string=podAnnotations.sidecar\\.istio\\.io/bootstrapOverride=sticky-canary-proxy-stats",
        ],
    )?;
    node.wait_rollout("istio-system", GATEWAY)
}

/// The weights the filter of each Ready pod of `namespace` matching `selector` runs rollout
/// `rollout` (`namespace/name`) with, by version, in basis points
/// (`sticky_canary_weight_basis_points` of Envoy's `/stats/prometheus` on port 15090, what
/// Prometheus scrapes; labelled where the pod names the chart's proxy stats); none for a pod
/// that does not answer. Pods being deleted are left out.
pub fn proxy_weights(
    node: &Node,
    namespace: &str,
    selector: &str,
    rollout: &str,
) -> Result<Vec<BTreeMap<String, f64>>> {
    let mut weights = Vec::new();
    for pod in serving_pods(node, namespace, selector)? {
        let Some(ip) = pod["status"]["podIP"].as_str() else {
            continue;
        };
        let stats = crate::browser::Http::new(format!("{ip}:15090").parse()?)
            .get("/stats/prometheus", &[])
            .map(|r| r.body)
            .unwrap_or_default();
        let rollout_label = format!("sticky_rollout=\"{rollout}\"");
        let mut by_version = BTreeMap::new();
        for line in stats.lines() {
            let Some(labels) = line
                .strip_prefix("sticky_canary_weight_basis_points{")
                .filter(|l| l.contains(&rollout_label))
            else {
                continue;
            };
            let version = labels
                .split("sticky_version=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next());
            let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
            if let (Some(version), Some(value)) = (version, value) {
                by_version.insert(version.to_owned(), value);
            }
        }
        weights.push(by_version);
    }
    Ok(weights)
}

/// The ingress gateway Service's address (its ClusterIP, port 80).
pub fn gateway_address(node: &Node) -> Result<std::net::SocketAddr> {
    let service = node
        .plane
        .get("v1", "Service", "istio-system", GATEWAY)?
        .context("the gateway's Service is missing")?;
    let ip = service["spec"]["clusterIP"]
        .as_str()
        .context("the gateway's Service has no ClusterIP")?;
    Ok(format!("{ip}:80").parse()?)
}

/// What the filter reports for shop's rollout with the canary `v2` at `percent`%, in basis
/// points by version (stable `v1` stays in the configuration at 0 while its clients drain).
pub fn shop_at(percent: u32) -> BTreeMap<String, f64> {
    let canary = f64::from(percent * 100);
    BTreeMap::from([
        ("v1".to_owned(), 10_000.0 - canary),
        ("v2".to_owned(), canary),
    ])
}

/// Waits until `pods` (at least one) Ready pods of `namespace` matching `selector` report
/// `wanted` for rollout `rollout` ([`proxy_weights`], polled every 50 ms), for up to a
/// minute; how long it took, or an error with what they report.
pub fn wait_weights(
    node: &Node,
    (namespace, selector, pods): (&str, &str, usize),
    rollout: &str,
    wanted: &BTreeMap<String, f64>,
) -> Result<Duration> {
    let start = Instant::now();
    let mut weights = Vec::new();
    while start.elapsed() < Duration::from_secs(60) {
        weights = proxy_weights(node, namespace, selector, rollout)?;
        if weights.len() == pods.max(1) && weights.iter().all(|w| w == wanted) {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{namespace} pods {selector} do not report {wanted:?} for {rollout} within a minute: {weights:?}")
}

/// The ingress gateway's pods, for [`wait_weights`]: one.
pub const GATEWAY_PODS: (&str, &str, usize) = ("istio-system", "app=istio-ingressgateway", 1);

/// The Ready pods of `namespace` matching `selector` that are not being deleted: those that
/// serve (a restarted Deployment's old pod stays Ready while it terminates).
pub fn serving_pods(node: &Node, namespace: &str, selector: &str) -> Result<Vec<Value>> {
    let pods = node.plane.list("v1", "Pod", namespace, selector)?;
    Ok(pods
        .into_iter()
        .filter(|p| super::condition(p, "Ready") && p["metadata"]["deletionTimestamp"].is_null())
        .collect())
}

/// Runs Helm as the cluster's admin; an error carries what it printed.
pub fn helm(node: &Node, args: &[&str]) -> Result<String> {
    let kubeconfig = node.plane.admin_kubeconfig("default")?;
    let kubeconfig = format!("--kubeconfig={}", kubeconfig.display());
    let mut all = vec![kubeconfig.as_str()];
    all.extend_from_slice(args);
    crate::process::run(&node.helm, &all)
}
