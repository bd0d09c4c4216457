//! The install guide, `docs/istio.md`, run as it is: each of its `sh` blocks, in order, by
//! bash, against the real control plane of the harness (kube-apiserver, istiod, Envoy as the
//! ingress gateway) and a CNCF distribution registry on loopback, with Helm, crane and
//! stickyctl on the PATH; `REGISTRY`, `GATEWAY` and the kubeconfig are the only things set
//! for it. Between blocks the test checks what the guide says happened.
//!
//! What istio-agent would do and no agent does here is done by the agent's own code, and said
//! where: the filter image is fetched back from the registry by Istio's Wasm module cache
//! (`wasm-fetch`, `istio.io/istio/pkg/wasm` of the pinned Istio), and the rollout gets the
//! file it wrote as its module, as the agent rewrites an `oci://` module for Envoy; the
//! gateway's Envoy has the stats settings of the agent's bootstrap template, and the chart's
//! proxy-stats addition handed to Envoy as the agent hands it (`--config-yaml`). The guide's
//! `make oci` has run before (`make test` runs it): the test reads `target/oci/`. No kubelet
//! runs: the chart's Deployment is checked as stored, and the controller runs as a process
//! with a token of the chart's ServiceAccount, the binary taken out of the controller image as
//! pulled back from the registry.
//!
//! Also here, since they need the same cluster and traffic: every rendered object of the
//! chart passes the API server's strict field validation (a server-side dry run), and every
//! panel query of the chart's Grafana dashboard answers, with data, from a real Prometheus
//! scraping the gateway while traffic flows.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use sticky_canary_e2e::browser::Dest;
use sticky_canary_e2e::chart;
use sticky_canary_e2e::envoy::free_port;
use sticky_canary_e2e::guide::{guide_blocks, path_with, Shell};
use sticky_canary_e2e::locate::{self, workspace_root};
use sticky_canary_e2e::mesh::proxy::AgentStats;
use sticky_canary_e2e::mesh::stack::{runs_weights, served_name, MeshStack, Service, NS};
use sticky_canary_e2e::mesh::tools::InstallTools;
use sticky_canary_e2e::process::{run, ChildGuard};
use sticky_canary_e2e::prometheus::Prometheus;
use sticky_canary_e2e::registry::Registry;
use sticky_canary_e2e::site::HOP;

/// The chart's namespace in the guide.
const CHART_NS: &str = "sticky-canary-system";
/// The controller's ServiceAccount in the chart.
const CONTROLLER_SA: &str = "stickyctl-controller";

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The panel queries of the dashboard, with Grafana's variables as a person viewing every
/// service and rollout would have them: `(title, expr)`.
fn panel_queries(dashboard: &Value) -> Vec<(String, String)> {
    dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or_default().to_owned();
            panel["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["expr"].as_str())
                .map(move |expr| {
                    let expr = expr
                        .replace("$__rate_interval", "30s")
                        .replace("$service", ".+")
                        .replace("$rollout", ".*");
                    (title.clone(), expr)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The `version` of each series whose value is above zero.
fn positive(series: &[Value]) -> BTreeSet<String> {
    series
        .iter()
        .filter(|s| {
            s["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v > 0.0)
        })
        .filter_map(|s| s["metric"]["version"].as_str().map(str::to_owned))
        .collect()
}

/// The dashboard's query variables as PromQL: Grafana's `label_values(SELECTOR, LABEL)` is the
/// values of LABEL among the series of SELECTOR, `group by (LABEL) (SELECTOR)`.
fn variable_queries(dashboard: &Value) -> Vec<(String, String)> {
    dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let name = v["name"].as_str().unwrap_or_default().to_owned();
            let query = v["query"]["query"].as_str().unwrap_or_default();
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .unwrap_or_else(|| panic!("${name}: not a label_values() query: {query}"));
            let (selector, label) = inner
                .rsplit_once(',')
                .unwrap_or_else(|| panic!("${name}: label_values without a label: {query}"));
            (name, format!("group by ({}) ({selector})", label.trim()))
        })
        .collect()
}

/// The `label` values of a query's series.
fn label_values(series: &[Value], label: &str) -> BTreeSet<String> {
    series
        .iter()
        .filter_map(|s| s["metric"][label].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn the_install_guide_runs_against_a_real_control_plane() {
    let tools = InstallTools::locate().unwrap_or_else(|e| panic!("{e:?}"));
    let root = workspace_root();
    for layout in ["target/oci/filter", "target/oci/controller"] {
        assert!(
            root.join(layout).join("index.json").is_file(),
            "{layout} is missing: `make oci` writes it (make test runs it first)"
        );
    }
    let guide = std::fs::read_to_string(root.join("docs/istio.md")).unwrap();
    let blocks = guide_blocks(&guide).unwrap();
    let ids: Vec<&str> = blocks.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "push",
            "install",
            "init",
            "canary",
            "qa-token",
            "qa",
            "step",
            "abort",
            "promote",
            "delete",
            "uninstall"
        ],
        "the guide's runnable blocks, in order (each is checked below)"
    );

    // The gateway as istio-agent would start it on a pod naming the chart's proxy stats.
    let stats = AgentStats::istio_with_chart_proxy_stats().unwrap();
    let proxy_stats = stats.bootstrap_override.clone().unwrap();
    let upstream = Path::new(env!("CARGO_BIN_EXE_sticky-upstream"));
    let mesh = MeshStack::start_with(
        upstream,
        // `/hop` calls a port nobody listens on: a 502 from the version, for the error panel.
        &[Service {
            calls: Some((
                SocketAddr::from(([127, 0, 0, 1], free_port().unwrap())),
                "nobody.example.com".to_owned(),
            )),
            ..Service::new("shop", &["v1", "v2"])
        }],
        free_port().unwrap(),
        &stats,
    )
    .unwrap_or_else(|e| panic!("cannot start the mesh: {e:?}"));
    let registry = Registry::start(&tools.registry, Ipv4Addr::LOCALHOST).unwrap();

    let stickyctl = locate::stickyctl_bin().unwrap();
    let path = path_with(&[&tools.helm, &tools.crane, &stickyctl]);
    let admin = mesh.plane.admin_kubeconfig("default").unwrap();
    let shell = Shell::new(&[
        ("PATH", path),
        ("KUBECONFIG", admin.display().to_string()),
        ("REGISTRY", registry.address.clone()),
        ("GATEWAY", format!("127.0.0.1:{}", mesh.port)),
    ])
    .unwrap();
    let block = |id: &str| -> String {
        let (_, script) = blocks.iter().find(|(b, _)| b == id).unwrap();
        shell.run(id, script).unwrap_or_else(|e| panic!("{e:?}"))
    };

    // 2. Push: both images by digest; the filter fetched back by Istio's own code.
    block("push");
    let filter = shell.var("FILTER").unwrap();
    let controller = shell.var("CONTROLLER").unwrap();
    assert!(
        filter.starts_with(&format!(
            "{}/sticky-canary/filter@sha256:",
            registry.address
        )),
        "{filter}"
    );
    let plugin_url = shell.var("PLUGIN_URL").unwrap();
    assert_eq!(plugin_url, format!("oci://{filter}"));
    let plugin_sha256 = shell.var("PLUGIN_SHA256").unwrap();
    assert_eq!(
        Some(plugin_sha256.as_str()),
        filter.split_once("@sha256:").map(|(_, d)| d)
    );
    let cache = tempfile::tempdir().unwrap();
    let fetched = run(
        &tools.wasm_fetch,
        &[
            "-url",
            &plugin_url,
            "-sha256",
            &plugin_sha256,
            "-insecure",
            &registry.address,
            "-dir",
            &cache.path().display().to_string(),
        ],
    )
    .unwrap();
    let wasm = std::fs::read(locate::filter_wasm().unwrap()).unwrap();
    let field = |name: &str| {
        fetched
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("wasm-fetch printed no {name}: {fetched}"))
            .to_owned()
    };
    assert_eq!(
        field("sha256"),
        sha256_hex(&wasm),
        "Istio's fetcher got the built module back"
    );
    // A digest that is not the image's is refused, as the agent refuses it.
    let wrong = run(
        &tools.wasm_fetch,
        &[
            "-url",
            &format!("oci://{}/sticky-canary/filter:0.1.0", registry.address),
            "-sha256",
            &"0".repeat(64),
            "-insecure",
            &registry.address,
            "-dir",
            &cache.path().display().to_string(),
        ],
    );
    assert!(
        wrong
            .as_ref()
            .is_err_and(|e| e.to_string().contains("does not match")),
        "{wrong:?}"
    );
    // Envoy here loads what the agent would hand it: the file the module cache wrote.
    shell
        .set("PLUGIN_URL", &format!("file://{}", field("path")))
        .unwrap();
    let config: Value =
        serde_json::from_str(&run(&tools.crane, &["config", &controller]).unwrap()).unwrap();
    assert_eq!(config["config"]["User"], "65532:65532", "{config}");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/stickyctl"])
    );
    // The image's own stickyctl runs the controller below: its filesystem as pulled back.
    let image_fs = tempfile::tempdir().unwrap();
    let tarball = image_fs.path().join("fs.tar");
    run(
        &tools.crane,
        &["export", &controller, &tarball.display().to_string()],
    )
    .unwrap();
    let tar = Command::new("tar")
        .arg("-xf")
        .arg(&tarball)
        .arg("-C")
        .arg(image_fs.path())
        .status()
        .unwrap();
    assert!(tar.success(), "unpacking the controller image");
    let image_stickyctl = image_fs.path().join("usr/local/bin/stickyctl");

    // 3. Install: the chart in the real API server; its objects pass strict validation.
    block("install");
    let deployment = mesh
        .plane
        .get("apps/v1", "Deployment", CHART_NS, "stickyctl-controller")
        .unwrap()
        .expect("the chart's Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], controller.as_str(), "pinned by digest");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"],
        true
    );
    let stats_map = mesh
        .plane
        .get(
            "v1",
            "ConfigMap",
            "istio-system",
            "sticky-canary-proxy-stats",
        )
        .unwrap()
        .expect("the proxy stats in the gateway's namespace");
    assert_eq!(
        stats_map["data"]["custom_bootstrap.json"]
            .as_str()
            .map(str::trim),
        Some(proxy_stats.trim()),
        "the gateway runs what the chart installs"
    );
    let dashboard_map = mesh
        .plane
        .get("v1", "ConfigMap", CHART_NS, "sticky-canary-dashboard")
        .unwrap()
        .expect("the dashboard ConfigMap");
    assert_eq!(
        dashboard_map["metadata"]["labels"]["grafana_dashboard"],
        "1"
    );
    let dashboard: Value = serde_json::from_str(
        dashboard_map["data"]["sticky-canary.json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let objects = chart::render(&[
        &format!("images.registry={}", registry.address),
        &format!("images.controller.digest={}", controller.split_once('@').unwrap().1),
        &format!("images.filter.digest={}", filter.split_once('@').unwrap().1),
        "rollouts[0].name=web,rollouts[0].namespace=prod,rollouts[0].service=web.prod.svc.cluster.local,rollouts[0].stable=v1",
        "operators.namespaces={prod}",
        "operators.subjects[0].kind=Group,operators.subjects[0].name=release-team,operators.subjects[0].apiGroup=rbac.authorization.k8s.io",
    ])
    .unwrap();
    let kinds: BTreeSet<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    assert!(
        kinds.is_superset(&BTreeSet::from([
            "ClusterRole",
            "ClusterRoleBinding",
            "RoleBinding",
            "ConfigMap",
            "CustomResourceDefinition",
            "Deployment",
            "ServiceAccount",
            "StickyCanary",
        ])),
        "{kinds:?}"
    );
    for object in &objects {
        mesh.plane
            .dry_run_strict(object)
            .unwrap_or_else(|e| panic!("the API server refuses {}: {e:?}", object["kind"]));
    }
    // The controller, with exactly the rights the chart gives its ServiceAccount.
    let kubeconfig = mesh
        .plane
        .service_account_kubeconfig(CHART_NS, CONTROLLER_SA)
        .unwrap();
    let log_dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(log_dir.path().join("controller.log")).unwrap();
    let mut command = Command::new(&image_stickyctl);
    command
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("controller")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut controller_process = ChildGuard::spawn(command, "stickyctl controller").unwrap();

    // From here on the rollout commands run as a member of the operators' group, with only
    // the rights the chart's bindings of the operator roles give it.
    let operator = mesh.plane.operator_kubeconfig("default").unwrap();
    shell
        .set("KUBECONFIG", &operator.display().to_string())
        .unwrap();
    let refused = shell.run("(operator)", "helm list --namespace sticky-canary-system");
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("forbidden")),
        "the operator may not read the release: {refused:?}"
    );

    // 5. A first sticky canary: v1 for everyone, the module pinned by its digest.
    block("init");
    let plugin = mesh.gateway_plugin().unwrap().expect("the shared plugin");
    assert_eq!(plugin["spec"]["sha256"], plugin_sha256.as_str(), "{plugin}");
    mesh.wait_until("every new visitor stamped v1", |http| {
        MeshStack::browser("shop")
            .visit(http, "/")
            .is_ok_and(|v| v.page.received_version.as_deref() == Some("v1"))
    })
    .unwrap();
    // The controller keeps it so: a hand edit that drops the managed routes is repaired by
    // the controller alone (the CLI has exited), with the rights of the chart's RBAC.
    let controller_log =
        || std::fs::read_to_string(log_dir.path().join("controller.log")).unwrap_or_default();
    let vs_api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        mesh.plane.client(),
        NS,
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "networking.istio.io",
            "v1",
            "VirtualService",
        )),
    );
    let is_managed = |r: &Value| {
        r["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("sticky-canary-"))
    };
    let managed = |vs: &kube::api::DynamicObject| -> usize {
        vs.data["spec"]["http"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| is_managed(r))
            .count()
    };
    let mut vs = mesh.plane.block_on(vs_api.get("shop")).unwrap();
    assert!(managed(&vs) > 0, "init wrote the managed routes");
    if let Some(routes) = vs.data["spec"]["http"].as_array_mut() {
        routes.retain(|r| !is_managed(r));
    }
    mesh.plane
        .block_on(vs_api.replace("shop", &Default::default(), &vs))
        .unwrap();
    // Far below the controller's 300 s resync: its watch of the VirtualService brought it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while managed(&mesh.plane.block_on(vs_api.get("shop")).unwrap()) == 0 {
        assert!(
            controller_process.exited().is_none(),
            "the controller exited:\n{}",
            controller_log()
        );
        assert!(
            Instant::now() < deadline,
            "the controller did not restore the managed routes within 60 s:\n{}",
            controller_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    mesh.wait_until("every new visitor stamped v1 again", |http| {
        MeshStack::browser("shop")
            .visit(http, "/")
            .is_ok_and(|v| v.page.received_version.as_deref() == Some("v1"))
    })
    .unwrap();

    // 6. The canary at 0; QA reaches it with the override and its token, nobody else does.
    block("canary");
    wait_for_weights(&mesh, &[100.0, 0.0]);
    let untokened = |http: &sticky_canary_e2e::browser::Http| {
        http.get(
            "/",
            &[("host", b"shop.example.com"), ("x-sticky-override", b"v2")],
        )
        .ok()
        .and_then(|r| r.served_by)
    };
    assert_eq!(
        untokened(&mesh.http),
        Some(served_name("shop", "v1")),
        "no token, no override"
    );
    block("qa-token");
    let token = shell.var("QA_TOKEN").unwrap();
    let with_token = format!("v2:{token}");
    mesh.wait_until("the override token at the gateway", |http| {
        http.get(
            "/",
            &[
                ("host", b"shop.example.com"),
                ("x-sticky-override", with_token.as_bytes()),
            ],
        )
        .is_ok_and(|r| r.served_by == Some(served_name("shop", "v2")))
    })
    .unwrap();
    let qa = block("qa");
    assert!(qa.contains(&served_name("shop", "v2")), "{qa}");
    assert_eq!(
        untokened(&mesh.http),
        Some(served_name("shop", "v1")),
        "still no token, no override"
    );

    // 7. A step, then the dashboard against Prometheus while visitors browse.
    block("step");
    wait_for_weights(&mesh, &[50.0, 50.0]);
    let admin_address = mesh.gateway.envoy().admin().unwrap().address();
    let prometheus = Prometheus::start(&[admin_address]).unwrap();
    let panels = panel_queries(&dashboard);
    assert!(panels.len() >= 6, "{panels:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let both = BTreeSet::from(["v1".to_owned(), "v2".to_owned()]);
    let mut visitors = 0;
    loop {
        for _ in 0..20 {
            let mut browser = MeshStack::browser("shop");
            browser.visit(&mesh.http, "/").unwrap();
            browser.visit(&mesh.http, "/").unwrap();
            // One failing call in twenty visits: a 502 answered by the version.
            if visitors % 20 == 0 {
                let failed = browser.fetch(&mesh.http, HOP, Dest::Api).unwrap();
                assert_eq!(failed.status, 502, "{failed:?}");
            }
            visitors += 1;
        }
        let mut failures = Vec::new();
        let mut versions = BTreeSet::new();
        for (title, expr) in &panels {
            match prometheus.query(expr) {
                Ok(series) if series.is_empty() => failures.push(format!("{title}: no data")),
                Ok(series) => {
                    versions.extend(label_values(&series, "version"));
                    versions.extend(label_values(&series, "sticky_version"));
                    if title.starts_with("Error rate") && positive(&series) != both {
                        failures.push(format!("{title}: no errors of both versions: {series:?}"));
                    }
                }
                // A query Prometheus refuses fails at once: no traffic makes it right.
                Err(e) => panic!("{title}: Prometheus refuses {expr}: {e:#}"),
            }
        }
        // The dashboard's variables list what the panels filter on.
        for (name, query) in variable_queries(&dashboard) {
            match prometheus.query(&query) {
                Ok(series) if series.is_empty() => failures.push(format!("${name}: no values")),
                Ok(_) => {}
                Err(e) => panic!("${name}: Prometheus refuses {query}: {e:#}"),
            }
        }
        if failures.is_empty() && versions == both {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {visitors} visitors: {failures:?}, versions {versions:?}\nthe gateway's request series: {:?}\nPrometheus log:\n{}",
            prometheus.query(r#"count by (__name__, cluster_name, response_code_class) ({__name__=~"envoy_cluster_upstream_rq.*"})"#),
            prometheus.log()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let decisions = prometheus
        .query("sum by (sticky_rollout, sticky_reason) (sticky_canary_decisions)")
        .unwrap();
    assert_eq!(
        label_values(&decisions, "sticky_rollout"),
        BTreeSet::from([format!("{NS}/shop")]),
        "the filter's counters carry their labels at the gateway: {decisions:?}"
    );
    drop(prometheus);

    // 8. Abort: everyone on v1 at once.
    block("abort");
    wait_for_weights(&mesh, &[100.0]);
    for _ in 0..20 {
        let visit = MeshStack::browser("shop").visit(&mesh.http, "/").unwrap();
        assert_eq!(visit.page.received_version.as_deref(), Some("v1"));
    }

    // 9. Promote: v2 for everyone.
    block("promote");
    mesh.wait_until("every new visitor on v2", |http| {
        (0..10).all(|_| {
            MeshStack::browser("shop")
                .visit(http, "/")
                .is_ok_and(|v| v.page.received_version.as_deref() == Some("v2"))
        })
    })
    .unwrap();
    assert_eq!(
        mesh.stickyctl.status().unwrap()["versions"][0]["name"],
        "v2"
    );

    // 10. Removal: the shared plugin and the chart's objects gone; the CRD stays.
    block("delete");
    assert!(
        mesh.gateway_plugin().unwrap().is_none(),
        "the plugin is gone"
    );
    shell
        .set("KUBECONFIG", &admin.display().to_string())
        .unwrap();
    block("uninstall");
    let gone = mesh
        .plane
        .get("apps/v1", "Deployment", CHART_NS, "stickyctl-controller")
        .unwrap();
    assert!(gone.is_none(), "helm uninstall removes the controller");
    drop(controller_process);
}

/// Waits until the gateway runs `weights` for the guide's rollout.
fn wait_for_weights(mesh: &MeshStack, weights: &[f64]) {
    let key = format!("{NS}/shop");
    mesh.wait_until(&format!("{key} at {weights:?} at the gateway"), |_| {
        runs_weights(&mesh.gateway, &key, weights)
    })
    .unwrap_or_else(|e| panic!("{e:?}"));
}
