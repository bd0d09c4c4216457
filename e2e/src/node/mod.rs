//! A real Kubernetes node beside the control plane: containerd and runc (Debian's) with the CNI
//! bridge, the kubelet, kube-proxy, kube-scheduler and the controller-manager's controllers
//! (built from the pinned Kubernetes module), CoreDNS, and a registry holding the node's images
//! (`make node-images`, `make oci`). All of it runs inside namespaces of the test's own
//! ([`isolate`]): the node's address, the pod and service ranges exist only there, and nothing
//! outlives the test.

pub mod agents;
pub mod containerd;
pub mod dns;
pub mod isolate;
pub mod istio;
pub mod shop;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::locate::workspace_root;
use crate::mesh::control_plane::{self, ApiNetwork, ControlPlane};
use crate::process::ChildGuard;
use crate::registry::Registry;

/// The node's address, on the loopback of its own network namespace.
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
/// The pods' addresses.
pub const POD_RANGE: &str = "10.244.0.0/24";
/// The Services' ClusterIPs.
pub const SERVICE_RANGE: &str = "10.96.0.0/16";
/// CoreDNS's ClusterIP (the kubelet's `clusterDNS`).
pub const DNS_IP: &str = "10.96.0.10";
/// The node's name.
pub const NODE_NAME: &str = "sticky-node";
/// The tag of every image the harness pushes.
pub const TAG: &str = "node";
/// How long a pod may take to be pulled and started, on a busy 2-core machine.
pub const POD_PATIENCE: Duration = Duration::from_secs(180);

/// The images the node's registry holds: `(layout under target/oci, repository)`.
const IMAGES: [(&str, &str); 7] = [
    ("node/pause", "pause"),
    ("node/coredns", "coredns"),
    ("node/pilot", "istio/pilot"),
    ("node/proxyv2", "istio/proxyv2"),
    ("node/upstream", "sticky-canary/upstream"),
    ("filter", "sticky-canary/filter"),
    ("controller", "sticky-canary/stickyctl"),
];

/// The Go programs a node runs besides the control plane's.
struct NodeTools {
    kubelet: PathBuf,
    kube_proxy: PathBuf,
    kube_scheduler: PathBuf,
    registry: PathBuf,
    crane: PathBuf,
    helm: PathBuf,
}

impl NodeTools {
    fn locate() -> Result<NodeTools> {
        let mut paths = crate::mesh::tools::locate(&[
            "kubelet",
            "kube-proxy",
            "kube-scheduler",
            "registry",
            "crane",
            "helm",
        ])?;
        let mut take = |name: &str| paths.remove(name).unwrap_or_default();
        Ok(NodeTools {
            kubelet: take("kubelet"),
            kube_proxy: take("kube-proxy"),
            kube_scheduler: take("kube-scheduler"),
            registry: take("registry"),
            crane: take("crane"),
            helm: take("helm"),
        })
    }
}

/// A running node and its control plane. Must stay on the thread that started it (its
/// processes die with that thread), inside the namespaces of [`isolate::inside`].
pub struct Node {
    /// Helm, for the charts.
    pub helm: PathBuf,
    /// crane, for the registry.
    pub crane: PathBuf,
    /// The images pushed, by repository: `host:port/repository@sha256:…`.
    pub images: BTreeMap<&'static str, String>,
    /// The registry, `host:port`.
    pub registry: String,
    // Dropped first to last: the node's agents before the runtime before the control plane.
    _scheduler: ChildGuard,
    _kube_proxy: ChildGuard,
    _kubelet: ChildGuard,
    _containerd: ChildGuard,
    _registry: Registry,
    /// The API server, etcd and the controller-manager.
    pub plane: ControlPlane,
    dir: tempfile::TempDir,
}

impl Node {
    /// Starts the control plane, the registry with every image, containerd, the kubelet,
    /// kube-proxy and kube-scheduler, then CoreDNS; returns once the node is Ready and CoreDNS
    /// answers.
    pub fn start() -> Result<Node> {
        if !isolate::is_inside() {
            bail!("a node runs only inside namespaces of its own: call isolate::inside first");
        }
        let tools = NodeTools::locate()?;
        let dir = tempfile::Builder::new()
            .prefix("sticky-node-")
            .tempdir()
            .context("creating the node's directory")?;
        // Everything the runtime writes (images, containers' layers, pods' volumes) in memory
        // of the node's mount namespace: gone with it, whatever ends the test.
        crate::process::run(
            "mount",
            &["-t", "tmpfs", "node", &dir.path().display().to_string()],
        )?;

        // Istio's CRDs come with its base chart (istio::install).
        let plane = ControlPlane::start_api(
            None,
            ApiNetwork {
                bind: Ipv4Addr::UNSPECIFIED,
                advertise: NODE_IP,
                service_range: SERVICE_RANGE,
                service_accounts: true,
            },
        )?;
        plane.start_controller_manager_with(&[
            // Every default controller: ServiceAccounts and their tokens, the root CA's
            // ConfigMap, EndpointSlices, Deployments, garbage collection.
            "--controllers=*".into(),
            format!(
                "--service-account-private-key-file={}",
                plane.service_account_key().display()
            ),
            format!("--root-ca-file={}", plane.api_certificate().display()),
            "--use-service-account-credentials=false".into(),
        ])?;

        let registry = Registry::start(&tools.registry, NODE_IP)?;
        let images = push_images(&tools.crane, &registry.address)?;
        let image = |repository: &str| images.get(repository).cloned().unwrap_or_default();

        let path = |name: &str| dir.path().join(name);
        for sub in ["cni", "cni-ipam", "pod-logs", "kubelet", "containerd"] {
            std::fs::create_dir_all(path(sub))?;
        }
        let hosts = path("registry-hosts").join(&registry.address);
        std::fs::create_dir_all(&hosts)?;
        std::fs::write(
            hosts.join("hosts.toml"),
            containerd::registry_hosts(&registry.address),
        )?;
        std::fs::write(
            path("cni/10-node.conflist"),
            containerd::cni_config(&path("cni-ipam")),
        )?;
        std::fs::write(
            path("containerd.toml"),
            containerd::config(dir.path(), &image("pause")),
        )?;
        let mut containerd = control_plane::spawn(
            Path::new("containerd"),
            dir.path(),
            "containerd",
            &[format!("--config={}", path("containerd.toml").display())],
            &[],
        )?;
        crate::wait::until(
            "containerd's socket",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || {
                if let Some(exit) = containerd.exited() {
                    bail!("{exit}");
                }
                Ok(containerd::socket(dir.path()).exists().then_some(()))
            },
        )
        .map_err(|err| control_plane::with_log(dir.path(), "containerd", err))?;

        let kubeconfig = plane.admin_kubeconfig("default")?;
        std::fs::write(path("resolv.conf"), agents::RESOLV_CONF)?;
        std::fs::write(
            path("kubelet.json"),
            serde_json::to_vec_pretty(&agents::kubelet_config(dir.path()))?,
        )?;
        let kubelet = control_plane::spawn(
            &tools.kubelet,
            dir.path(),
            "kubelet",
            &[
                format!("--config={}", path("kubelet.json").display()),
                format!("--kubeconfig={}", kubeconfig.display()),
                format!("--root-dir={}", path("kubelet").display()),
                format!("--cert-dir={}", path("kubelet/pki").display()),
                format!("--hostname-override={NODE_NAME}"),
                format!("--node-ip={NODE_IP}"),
                "--v=1".into(),
            ],
            &[],
        )?;
        std::fs::write(
            path("kube-proxy.json"),
            serde_json::to_vec_pretty(&agents::kube_proxy_config(&kubeconfig))?,
        )?;
        let kube_proxy = control_plane::spawn(
            &tools.kube_proxy,
            dir.path(),
            "kube-proxy",
            &[format!("--config={}", path("kube-proxy.json").display())],
            &[],
        )?;
        let scheduler = control_plane::spawn(
            &tools.kube_scheduler,
            dir.path(),
            "kube-scheduler",
            &[
                format!("--kubeconfig={}", kubeconfig.display()),
                "--leader-elect=false".into(),
                "--secure-port=0".into(),
            ],
            &[],
        )?;
        let node = Node {
            helm: tools.helm,
            crane: tools.crane,
            registry: registry.address.clone(),
            images,
            _scheduler: scheduler,
            _kube_proxy: kube_proxy,
            _kubelet: kubelet,
            _containerd: containerd,
            _registry: registry,
            plane,
            dir,
        };
        node.wait_ready()
            .map_err(|err| node.explain("kubelet", err))?;
        for object in dns::objects(&node.image("coredns")) {
            node.plane.apply(&object)?;
        }
        node.wait_rollout("kube-system", "coredns")?;
        Ok(node)
    }

    /// The pushed image of `repository`, by digest.
    ///
    /// # Panics
    /// When `repository` is not one of the node's images ([`IMAGES`]).
    pub fn image(&self, repository: &str) -> String {
        self.images.get(repository).cloned().unwrap_or_else(|| {
            panic!(
                "no image {repository} on the node: it has {:?}",
                self.images.keys()
            )
        })
    }

    /// `stickyctl init`'s flags for the filter as the node's registry holds it, pinned as the
    /// install guide pins it: `--plugin-url oci://…@sha256:<digest>` and
    /// `--plugin-sha256 <digest>`.
    pub fn plugin_flags(&self) -> Vec<String> {
        let filter = self.image("sticky-canary/filter");
        vec![
            "--plugin-url".into(),
            format!("oci://{filter}"),
            "--plugin-sha256".into(),
            digest(&filter).trim_start_matches("sha256:").to_owned(),
        ]
    }

    /// The directory of the node's files and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn wait_ready(&self) -> Result<()> {
        crate::wait::until(
            "the node Ready",
            POD_PATIENCE,
            Duration::from_millis(250),
            || {
                // A failed read is one more poll: the API server may be busy.
                let node = self.plane.get("v1", "Node", "", NODE_NAME).ok().flatten();
                let ready = node.as_ref().is_some_and(|n| condition(n, "Ready"));
                Ok(ready.then_some(()))
            },
        )
    }

    /// Waits until Deployment `namespace/name` has every replica updated and available.
    pub fn wait_rollout(&self, namespace: &str, name: &str) -> Result<()> {
        crate::wait::until(
            &format!("Deployment {namespace}/{name} available"),
            POD_PATIENCE,
            Duration::from_millis(250),
            || {
                let deployment = self.plane.get("apps/v1", "Deployment", namespace, name);
                let Some(deployment) = deployment.ok().flatten() else {
                    return Ok(None);
                };
                let wanted = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
                let status = &deployment["status"];
                let done = status["observedGeneration"] == deployment["metadata"]["generation"]
                    && status["updatedReplicas"].as_i64() == Some(wanted)
                    && status["availableReplicas"].as_i64() == Some(wanted)
                    && status["replicas"].as_i64() == Some(wanted);
                Ok(done.then_some(()))
            },
        )
        .map_err(|err| self.explain_pods(namespace, err))
    }

    /// The logs of container `container` of the pods of `namespace` whose names start with
    /// `pod`, as the kubelet keeps them (the end of each, 60 lines).
    pub fn logs(&self, namespace: &str, pod: &str, container: &str) -> String {
        let mut text = String::new();
        let dirs = std::fs::read_dir(self.dir.path().join("pod-logs"))
            .into_iter()
            .flatten();
        for dir in dirs.flatten() {
            let name = dir.file_name().to_string_lossy().into_owned();
            if !name.starts_with(&format!("{namespace}_{pod}")) {
                continue;
            }
            let files = std::fs::read_dir(dir.path().join(container))
                .into_iter()
                .flatten();
            for file in files.flatten() {
                let log = std::fs::read_to_string(file.path()).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = &lines[lines.len().saturating_sub(60)..];
                text.push_str(&format!("== {name}/{container}\n{}\n", tail.join("\n")));
            }
        }
        text
    }

    /// Waits until pod `namespace/name` is Ready; returns its IP.
    pub fn wait_pod(&self, namespace: &str, name: &str) -> Result<String> {
        crate::wait::until(
            &format!("Pod {namespace}/{name} Ready"),
            POD_PATIENCE,
            Duration::from_millis(250),
            || {
                let pod = self.plane.get("v1", "Pod", namespace, name).ok().flatten();
                Ok(pod
                    .filter(|p| condition(p, "Ready"))
                    .and_then(|p| p["status"]["podIP"].as_str().map(str::to_owned)))
            },
        )
        .map_err(|err| self.explain_pods(namespace, err))
    }

    /// Adds the end of a part's log (`<part>.log` of the node's directory) to an error.
    pub fn explain(&self, part: &str, err: anyhow::Error) -> anyhow::Error {
        control_plane::with_log(self.dir.path(), part, err)
    }

    /// Adds the state of the pods of `namespace` (phase, conditions, containers' states) to an
    /// error.
    pub fn explain_pods(&self, namespace: &str, err: anyhow::Error) -> anyhow::Error {
        let pods = self
            .plane
            .list("v1", "Pod", namespace, "")
            .unwrap_or_default();
        let states: Vec<String> = pods
            .iter()
            .map(|pod| {
                format!(
                    "{}: {} {} {}",
                    pod["metadata"]["name"].as_str().unwrap_or_default(),
                    pod["status"]["phase"].as_str().unwrap_or_default(),
                    pod["status"]["conditions"],
                    pod["status"]["containerStatuses"],
                )
            })
            .collect();
        let events: Vec<String> = self
            .plane
            .list("v1", "Event", namespace, "")
            .unwrap_or_default()
            .iter()
            .filter(|e| e["type"] != "Normal")
            .map(|e| {
                format!(
                    "{} {}: {}",
                    e["involvedObject"]["kind"].as_str().unwrap_or_default(),
                    e["involvedObject"]["name"].as_str().unwrap_or_default(),
                    e["message"].as_str().unwrap_or_default()
                )
            })
            .collect();
        control_plane::with_log(self.dir.path(), "kubelet", err).context(format!(
            "pods of {namespace}:\n{}\nwarnings of {namespace}:\n{}",
            states.join("\n"),
            events.join("\n")
        ))
    }
}

/// The digest of an image reference by digest (`…@sha256:<hex>`): `sha256:<hex>`.
pub fn digest(image: &str) -> &str {
    image.split_once('@').map_or("", |(_, digest)| digest)
}

/// Whether `object`'s status has condition `kind` True.
pub fn condition(object: &Value, kind: &str) -> bool {
    object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == kind && c["status"] == "True")
}

/// Pushes every image of [`IMAGES`] to `registry` with crane; each by digest.
fn push_images(crane: &Path, registry: &str) -> Result<BTreeMap<&'static str, String>> {
    let oci = workspace_root().join("target/oci");
    let mut pushed = BTreeMap::new();
    for (layout, repository) in IMAGES {
        let dir = oci.join(layout);
        if !dir.join("index.json").is_file() {
            bail!(
                "the image layout {} is missing: run `make oci node-images`",
                dir.display()
            );
        }
        let reference = format!("{registry}/{repository}:{TAG}");
        let dir = dir.display().to_string();
        let printed = crate::process::run(crane, &["push", "--insecure", &dir, &reference])?;
        let by_digest = printed.trim().to_owned();
        if !by_digest.contains("@sha256:") {
            return Err(anyhow!("crane push printed {by_digest:?}, not a digest"));
        }
        pushed.insert(repository, by_digest);
    }
    Ok(pushed)
}
