//! etcd, kube-apiserver and istiod on loopback: a real Kubernetes API with RBAC, Istio's
//! CRDs, the Gateway API's (standard channel, the version the pinned Istio requires) and ours,
//! and istiod translating what it holds into xDS for the Envoys of [`super::proxy`]. No kubelet
//! or scheduler runs: workloads are upstream processes on loopback, registered with
//! ServiceEntries that carry their version labels, or with WorkloadEntries that Kubernetes
//! Services select ([`super::gateway_api`]). The controller-manager runs only when a test asks
//! ([`ControlPlane::start_controller_manager`]).
//!
//! istiod's Gateway API controller is on (it is on by default once the CRDs exist), but not its
//! deployment controller: that one renders a gateway's Deployment and Service from the
//! injector's templates (`kube-gateway`, `waypoint`), which only a sidecar-injector
//! installation provides (`pilot/pkg/bootstrap/sidecarinjector.go:43-74`, without them it
//! cannot render anything), and no kubelet would run the Deployment anyway. The harness writes
//! what it would: the gateway's Service, and registers the Envoy that plays its pod.
//!
//! The same API server serves a real node ([`crate::node`]) when started on the node's address
//! without istiod ([`ControlPlane::start_api`]): istiod then runs as a Pod, installed by its
//! Helm chart, and Deployments run on the kubelet.
//!
//! Everything stops when the value is dropped; every process also dies with the test process.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::discovery::{self, Scope};
use kube::{Api, Client};
use serde_json::{json, Value};

use super::tools::Tools;
use crate::envoy::free_port;
use crate::process::ChildGuard;
use crate::wait;

/// How long each part may take to come up.
const PATIENCE: Duration = Duration::from_secs(90);
/// istiod's xDS settings that keep its output to what the upstream Envoy 1.40 runs, each
/// naming an Istio extension that exists only in Istio's own Envoy build (see the README).
const ISTIOD_ENV: [(&str, &str); 4] = [
    // `istio.alpn` filter on every outbound listener.
    ("PILOT_ENABLE_ALPN_FILTER", "false"),
    // `istio.metadata_exchange` HTTP, TCP and cluster filters, and the ALPN they negotiate.
    ("PILOT_ENABLE_METADATA_EXCHANGE", "false"),
    ("PILOT_DISABLE_MX_ALPN", "true"),
    // No injector templates to render a gateway's Deployment from (see the module's doc).
    ("PILOT_ENABLE_GATEWAY_API_DEPLOYMENT_CONTROLLER", "false"),
];

/// What istiod runs beyond the classic API and the Gateway API.
#[derive(Debug, Clone, Copy, Default)]
pub struct Features {
    /// Ambient mode (`PILOT_ENABLE_AMBIENT`): the ambient index (Pods, Services, Gateways of
    /// class `istio-waypoint`), the `istio-waypoint` GatewayClass, and waypoint proxies'
    /// configuration (`pilot/pkg/features/ambient.go:25-32`: every ambient setting defaults to
    /// off without it).
    pub ambient: bool,
}
/// Istio's mesh configuration: no auto mTLS (it would point clusters at istio-agent's SDS
/// socket, which a bare Envoy has not), the root namespace where it usually is.
const MESH_CONFIG: &str =
    "rootNamespace: istio-system\nenableAutoMtls: false\ntrustDomain: cluster.local\n";
/// Where the API server listens and what the cluster learns of it.
#[derive(Debug, Clone, Copy)]
pub struct ApiNetwork {
    /// The address it binds.
    pub bind: Ipv4Addr,
    /// Its address in the `kubernetes` Service's endpoints: what Pods reach it at.
    pub advertise: Ipv4Addr,
    /// The Services' ClusterIP range.
    pub service_range: &'static str,
    /// Whether Pods get their ServiceAccount's token mounted (the `ServiceAccount` admission
    /// plugin, which refuses a Pod until its ServiceAccount exists: only where a
    /// controller-manager makes them).
    pub service_accounts: bool,
}

impl ApiNetwork {
    /// Loopback only, no Pods: the mesh harness's.
    pub const LOOPBACK: ApiNetwork = ApiNetwork {
        bind: Ipv4Addr::LOCALHOST,
        advertise: Ipv4Addr::LOCALHOST,
        service_range: "10.0.0.0/24",
        service_accounts: false,
    };
}

/// How istiod was started, to start it again on the same addresses.
struct IstiodCommand {
    bin: PathBuf,
    args: Vec<String>,
    env: Vec<(&'static str, &'static str)>,
    http: u16,
    xds: SocketAddr,
}

/// The admin identity of the harness (a token of the token file, in `system:masters`).
const ADMIN_USER: &str = "sticky-harness";
/// A person releasing services: a user of the token file in group [`OPERATOR_GROUP`], with no
/// rights but those RBAC bindings give that group.
const OPERATOR_USER: &str = "release-operator";
/// The operator's group.
pub const OPERATOR_GROUP: &str = "release-team";

/// A running control plane.
pub struct ControlPlane {
    admin_token: String,
    operator_token: String,
    /// The kube-apiserver's address.
    pub api: SocketAddr,
    // Dropped in reverse order of start: istiod before the API server before etcd.
    controller_manager: std::sync::Mutex<Option<ChildGuard>>,
    istiod: std::sync::Mutex<Option<ChildGuard>>,
    /// How istiod was started: `None` when it runs as a Pod, or not at all.
    istiod_command: Option<IstiodCommand>,
    _apiserver: ChildGuard,
    _etcd: ChildGuard,
    runtime: tokio::runtime::Runtime,
    client: Client,
    /// Dropped last, once the processes writing into it (etcd's data, the logs) are gone:
    /// removed first, it was left half-deleted behind every run (about 125 MB each).
    dir: tempfile::TempDir,
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver (with Istio's CRDs from `istio_crds`, the Gateway API's and
    /// ours) and istiod.
    pub fn start(istio_crds: &Path) -> Result<ControlPlane> {
        ControlPlane::start_with(istio_crds, Features::default())
    }

    /// [`ControlPlane::start`] with istiod running `features`.
    pub fn start_with(istio_crds: &Path, features: Features) -> Result<ControlPlane> {
        let mut plane = ControlPlane::start_api(Some(istio_crds), ApiNetwork::LOOPBACK)?;
        plane.start_istiod(features)?;
        Ok(plane)
    }

    /// etcd and kube-apiserver on `network`, with Istio's CRDs from `istio_crds` (without it
    /// Istio's base chart installs them), the Gateway API's and ours, and the namespace
    /// `istio-system`; no istiod.
    pub fn start_api(istio_crds: Option<&Path>, network: ApiNetwork) -> Result<ControlPlane> {
        let tools = Tools::locate()?;
        let dir = tempfile::Builder::new()
            .prefix("sticky-mesh-")
            .tempdir()
            .context("creating the control plane's directory")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;

        let etcd_client = free_port()?;
        let etcd_peer = free_port()?;
        let etcd = spawn(
            &tools.etcd,
            dir.path(),
            "etcd",
            &[
                "--data-dir".into(),
                dir.path().join("etcd").display().to_string(),
                format!("--listen-client-urls=http://127.0.0.1:{etcd_client}"),
                format!("--advertise-client-urls=http://127.0.0.1:{etcd_client}"),
                format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
                format!("--initial-cluster=default=http://127.0.0.1:{etcd_peer}"),
                "--listen-metrics-urls=".into(),
                "--unsafe-no-fsync".into(),
                "--log-level=warn".into(),
            ],
            &[],
        )?;

        let (key, public) = service_account_keys()?;
        std::fs::write(dir.path().join("sa.key"), key)?;
        std::fs::write(dir.path().join("sa.pub"), public)?;
        let admin_token = random_token();
        let operator_token = random_token();
        std::fs::write(
            dir.path().join("tokens.csv"),
            format!(
                "{admin_token},{ADMIN_USER},{ADMIN_USER},\"system:masters\"\n\
                 {operator_token},{OPERATOR_USER},{OPERATOR_USER},\"{OPERATOR_GROUP}\"\n"
            ),
        )?;
        let port = free_port()?;
        // The harness's own address of it: loopback is bound whatever else is.
        let api = SocketAddr::from(([127, 0, 0, 1], port));
        let path = |name: &str| dir.path().join(name).display().to_string();
        let mut admission = vec![
            // Nothing here needs it, and it would only slow every request down.
            "--enable-priority-and-fairness=false".to_owned(),
        ];
        if !network.service_accounts {
            // No controller-manager makes the ServiceAccounts' token secrets.
            admission.push("--disable-admission-plugins=ServiceAccount".into());
        }
        let apiserver = spawn(
            &tools.kube_apiserver,
            dir.path(),
            "kube-apiserver",
            &[
                format!("--etcd-servers=http://127.0.0.1:{etcd_client}"),
                format!("--bind-address={}", network.bind),
                format!("--advertise-address={}", network.advertise),
                format!("--secure-port={port}"),
                format!("--cert-dir={}", path("pki")),
                format!("--token-auth-file={}", path("tokens.csv")),
                "--authorization-mode=RBAC".into(),
                format!("--service-cluster-ip-range={}", network.service_range),
                format!("--service-account-issuer=https://{api}"),
                format!("--service-account-key-file={}", path("sa.pub")),
                format!("--service-account-signing-key-file={}", path("sa.key")),
                // Where a node's kubelet serves logs and exec (crate::node).
                "--kubelet-preferred-address-types=InternalIP".into(),
            ]
            .into_iter()
            .chain(admission)
            .collect::<Vec<_>>(),
            &[],
        )?;
        let admin_kubeconfig = dir.path().join("admin.kubeconfig");
        write_kubeconfig(&admin_kubeconfig, api, &admin_token, "default")?;
        let client = runtime.block_on(client_for(&admin_kubeconfig))?;
        wait(
            "kube-apiserver /readyz",
            || {
                runtime.block_on(async {
                    let request = http_get("/readyz");
                    Ok(client.request_text(request).await.is_ok_and(|t| t == "ok"))
                })
            },
            &mut [],
        )?;

        install_crds(&runtime, &client, istio_crds, &tools.gateway_api_crds)?;
        runtime.block_on(apply(
            &client,
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}}),
        ))?;
        Ok(ControlPlane {
            controller_manager: std::sync::Mutex::new(None),
            admin_token,
            operator_token,
            api,
            istiod: std::sync::Mutex::new(None),
            istiod_command: None,
            _apiserver: apiserver,
            _etcd: etcd,
            runtime,
            client,
            dir,
        })
    }

    /// Starts istiod as a process on loopback, running `features`, and waits until it is ready.
    fn start_istiod(&mut self, features: Features) -> Result<()> {
        let tools = Tools::locate()?;
        let dir = self.dir.path();
        let path = |name: &str| dir.join(name).display().to_string();
        let admin_kubeconfig = dir.join("admin.kubeconfig");
        let xds = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let http = free_port()?;
        let monitoring = free_port()?;
        std::fs::write(dir.join("mesh.yaml"), MESH_CONFIG)?;
        let mut env: Vec<(&'static str, &'static str)> = ISTIOD_ENV.to_vec();
        env.extend([("POD_NAMESPACE", "istio-system"), ("POD_NAME", "istiod-0")]);
        if features.ambient {
            env.push(("PILOT_ENABLE_AMBIENT", "true"));
        }
        let istiod_args: Vec<String> = vec![
            "discovery".into(),
            format!("--kubeconfig={}", admin_kubeconfig.display()),
            format!("--meshConfig={}", path("mesh.yaml")),
            format!("--grpcAddr={xds}"),
            format!("--httpAddr=127.0.0.1:{http}"),
            format!("--monitoringAddr=127.0.0.1:{monitoring}"),
            // No TLS xDS and no webhook server: nothing here speaks them.
            "--secureGRPCAddr=".into(),
            "--httpsAddr=".into(),
            "--domain=cluster.local".into(),
            "--log_output_level=default:warn".into(),
        ];
        let mut istiod = spawn(&tools.pilot_discovery, dir, "istiod", &istiod_args, &env)?;
        let ready = crate::browser::Http::new(SocketAddr::from(([127, 0, 0, 1], http)));
        let istiod_ready = wait(
            "istiod /ready",
            || Ok(ready.get("/ready", &[]).is_ok_and(|r| r.status == 200)),
            &mut [&mut istiod],
        );
        *self.istiod.get_mut().unwrap_or_else(|e| e.into_inner()) = Some(istiod);
        self.istiod_command = Some(IstiodCommand {
            bin: tools.pilot_discovery,
            args: istiod_args,
            env,
            http,
            xds,
        });
        istiod_ready.map_err(|err| self.explain("istiod", err))
    }

    /// istiod's plaintext xDS address, where the Envoys connect.
    ///
    /// # Panics
    /// When istiod does not run as a process of the harness ([`ControlPlane::start_api`]).
    pub fn xds(&self) -> SocketAddr {
        self.istiod_process().xds
    }

    fn istiod_process(&self) -> &IstiodCommand {
        self.istiod_command
            .as_ref()
            .expect("istiod runs as a process of the harness (ControlPlane::start_with)")
    }

    /// Starts kube-controller-manager (once; later calls find it running) with the
    /// Deployment and ReplicaSet controllers alone: Deployments then get ReplicaSets, Pods
    /// and a status, as on a cluster. No scheduler or kubelet runs, so the Pods stay Pending
    /// on no node, and the API server removes such a Pod at once when it is deleted.
    /// Must be called on the thread that keeps the control plane (its processes die with it).
    pub fn start_controller_manager(&self) -> Result<()> {
        self.start_controller_manager_with(&["--controllers=deployment,replicaset".into()])
    }

    /// Starts kube-controller-manager (once) with `args` added to the harness's own.
    pub fn start_controller_manager_with(&self, args: &[String]) -> Result<()> {
        let mut running = self
            .controller_manager
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(process) = running.as_mut() {
            return match process.exited() {
                None => Ok(()),
                Some(exited) => Err(self.explain("kube-controller-manager", anyhow!(exited))),
            };
        }
        let tools = Tools::locate()?;
        let kubeconfig = self.dir.path().join("admin.kubeconfig");
        let process = spawn(
            &tools.kube_controller_manager,
            self.dir.path(),
            "kube-controller-manager",
            &[
                format!("--kubeconfig={}", kubeconfig.display()),
                "--leader-elect=false".into(),
                // Nothing here scrapes or probes it.
                "--secure-port=0".into(),
                "--v=1".into(),
            ]
            .into_iter()
            .chain(args.iter().cloned())
            .collect::<Vec<_>>(),
            &[],
        )?;
        *running = Some(process);
        Ok(())
    }

    /// Kills istiod (SIGKILL, as a crashed or evicted pod) and starts it again on the same
    /// addresses; returns once the new one is ready. Its proxies keep serving what they hold
    /// meanwhile and reconnect by themselves. Must be called on the thread that keeps the
    /// control plane (its processes die with it).
    pub fn restart_istiod(&self) -> Result<()> {
        let mut running = self.istiod.lock().unwrap_or_else(|e| e.into_inner());
        // Dropping the guard kills and reaps it: its ports are free again.
        drop(running.take());
        let command = self.istiod_process();
        let istiod = running.insert(spawn(
            &command.bin,
            self.dir.path(),
            "istiod",
            &command.args,
            &command.env,
        )?);
        let ready = crate::browser::Http::new(SocketAddr::from(([127, 0, 0, 1], command.http)));
        wait(
            "istiod /ready after its restart",
            || Ok(ready.get("/ready", &[]).is_ok_and(|r| r.status == 200)),
            &mut [istiod],
        )
        .map_err(|err| self.explain("istiod", err))
    }

    /// The configuration istiod generates for the connected proxy `proxy_id`
    /// (`<name>.<namespace>`), as its debug endpoint gives it (`/debug/config_dump`, in the
    /// form of Envoy's admin config dump: `pilot/pkg/xds/debug.go:740-800`): every resource
    /// istiod sends, also those the proxy's Envoy refused.
    pub fn istiod_config_dump(&self, proxy_id: &str) -> Result<Value> {
        let http = crate::browser::Http::new(SocketAddr::from((
            [127, 0, 0, 1],
            self.istiod_process().http,
        )));
        let response = http.get(&format!("/debug/config_dump?proxyID={proxy_id}"), &[])?;
        if response.status != 200 {
            bail!(
                "istiod's config dump of {proxy_id}: {} {}",
                response.status,
                response.body
            );
        }
        let dump: Value = serde_json::from_str(&response.body)
            .with_context(|| format!("parsing istiod's config dump of {proxy_id}"))?;
        Ok(snake_case_keys(dump))
    }

    /// The directory of the control plane's files and logs (`<part>.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The API server's serving certificate (self-signed at its start, valid for the
    /// `kubernetes` Service's ClusterIP too) with the authority that signed it: what the
    /// cluster's clients trust.
    pub fn api_certificate(&self) -> PathBuf {
        self.dir.path().join("pki/apiserver.crt")
    }

    /// The signing key of ServiceAccount tokens.
    pub fn service_account_key(&self) -> PathBuf {
        self.dir.path().join("sa.key")
    }

    /// Adds the end of a part's log to an error.
    pub fn explain(&self, part: &str, err: anyhow::Error) -> anyhow::Error {
        with_log(self.dir.path(), part, err)
    }

    /// A client with the harness's admin rights.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Runs `future` on the harness's runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// A kubeconfig file for the admin identity, defaulting to `namespace`.
    pub fn admin_kubeconfig(&self, namespace: &str) -> Result<PathBuf> {
        let path = self
            .dir
            .path()
            .join(format!("admin-{namespace}.kubeconfig"));
        write_kubeconfig(&path, self.api, &self.admin_token, namespace)?;
        Ok(path)
    }

    /// A kubeconfig file for a user of group [`OPERATOR_GROUP`], defaulting to `namespace`.
    pub fn operator_kubeconfig(&self, namespace: &str) -> Result<PathBuf> {
        let path = self
            .dir
            .path()
            .join(format!("operator-{namespace}.kubeconfig"));
        write_kubeconfig(&path, self.api, &self.operator_token, namespace)?;
        Ok(path)
    }

    /// A kubeconfig file for ServiceAccount `namespace/name`, with a token the API server
    /// issued for it (TokenRequest): its rights are exactly what RBAC grants that account.
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> Result<PathBuf> {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client(),
            namespace,
            &ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "ServiceAccount")),
        );
        let request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                             "spec": {"expirationSeconds": 3600}});
        let response: Value = self
            .block_on(api.create_subresource("token", name, &PostParams::default(), &request))
            .with_context(|| format!("requesting a token for {namespace}/{name}"))?;
        let token = response
            .pointer("/status/token")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("the TokenRequest for {namespace}/{name} returned no token"))?;
        let path = self
            .dir
            .path()
            .join(format!("{namespace}-{name}.kubeconfig"));
        write_kubeconfig(&path, self.api, token, namespace)?;
        Ok(path)
    }

    /// Creates or updates `object` (server-side apply, as the harness's own field manager).
    pub fn apply(&self, object: &Value) -> Result<()> {
        self.block_on(apply(&self.client, object))
    }

    /// Deletes `kind` `namespace/name` of `api_version`; absent already is fine.
    pub fn delete(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Result<()> {
        self.block_on(async {
            let api = dynamic_api(&self.client, api_version, kind, Some(namespace)).await?;
            match api.delete(name, &Default::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                Err(err) => {
                    Err(anyhow::Error::from(err)
                        .context(format!("deleting {kind} {namespace}/{name}")))
                }
            }
        })
    }

    /// Has the API server check `object` as a server-side apply would write it, in a dry run
    /// with strict field validation: an unknown or duplicate field is an error, as is
    /// anything the object's schema (built-in or CRD) refuses. Nothing is written.
    pub fn dry_run_strict(&self, object: &Value) -> Result<()> {
        self.block_on(apply_with(
            &self.client,
            object,
            PatchParams {
                dry_run: true,
                field_validation: Some(kube::api::ValidationDirective::Strict),
                ..PatchParams::apply("sticky-harness").force()
            },
        ))
    }

    /// Applies every document of a YAML stream.
    pub fn apply_yaml(&self, yaml: &str) -> Result<()> {
        for object in parse_yaml_documents(yaml)? {
            self.apply(&object)?;
        }
        Ok(())
    }

    /// The object `kind` `namespace/name` of `api_version`, `None` when absent.
    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>> {
        self.block_on(async {
            let api = dynamic_api(&self.client, api_version, kind, Some(namespace)).await?;
            let object = api.get_opt(name).await?;
            object
                .map(|o| serde_json::to_value(o).map_err(anyhow::Error::from))
                .transpose()
        })
    }
}

impl ControlPlane {
    /// The objects `kind` of `api_version` in `namespace` matching `label_selector` (a
    /// Kubernetes label selector, `""` for all).
    pub fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        label_selector: &str,
    ) -> Result<Vec<Value>> {
        self.block_on(async {
            let api = dynamic_api(&self.client, api_version, kind, Some(namespace)).await?;
            let list = api
                .list(&kube::api::ListParams::default().labels(label_selector))
                .await
                .with_context(|| format!("listing {kind} in {namespace}"))?;
            list.items
                .into_iter()
                .map(|o| serde_json::to_value(o).map_err(anyhow::Error::from))
                .collect()
        })
    }
}

/// `value` with its object keys in snake case, as Envoy's admin API writes them: istiod's debug
/// endpoint writes protobuf's JSON names (`dynamicActiveClusters`). Keys without a lower-case
/// letter (`ISTIO_VERSION`) and with a dot (extension names) are left as they are.
fn snake_case_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| {
                    let plain = key.starts_with('@')
                        || key.contains('.')
                        || !key.chars().any(|c| c.is_ascii_lowercase());
                    let key = if plain {
                        key
                    } else {
                        let mut snake = String::with_capacity(key.len() + 4);
                        for c in key.chars() {
                            if c.is_ascii_uppercase() {
                                snake.push('_');
                                snake.push(c.to_ascii_lowercase());
                            } else {
                                snake.push(c);
                            }
                        }
                        snake
                    };
                    (key, snake_case_keys(value))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(snake_case_keys).collect()),
        other => other,
    }
}

/// Creates Istio's CRDs (from `istio_crds`), the Gateway API's (every YAML file of
/// `gateway_api_crds`) and ours, and waits until the API serves them.
fn install_crds(
    runtime: &tokio::runtime::Runtime,
    client: &Client,
    istio_crds: Option<&Path>,
    gateway_api_crds: &Path,
) -> Result<()> {
    let mut crds = Vec::new();
    if let Some(istio_crds) = istio_crds {
        let text = std::fs::read_to_string(istio_crds)
            .with_context(|| format!("reading Istio's CRDs from {}", istio_crds.display()))?;
        crds = parse_yaml_documents(&text)
            .with_context(|| format!("parsing {}", istio_crds.display()))?;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(gateway_api_crds)
        .with_context(|| format!("listing {}", gateway_api_crds.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no Gateway API CRDs in {}", gateway_api_crds.display());
    }
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        crds.extend(
            parse_yaml_documents(&text).with_context(|| format!("parsing {}", file.display()))?,
        );
    }
    crds.extend(parse_yaml_documents(&api::crd_yaml())?);
    let api: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
        )),
    );
    runtime.block_on(async {
        for crd in &crds {
            apply(client, crd).await?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    let names: Vec<&str> = crds
        .iter()
        .filter_map(|c| c.pointer("/metadata/name").and_then(Value::as_str))
        .collect();
    wait(
        "every CRD Established",
        || {
            runtime.block_on(async {
                for name in &names {
                    let crd = api.get(name).await?;
                    let established = crd.data["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Established" && c["status"] == "True");
                    if !established {
                        return Ok(false);
                    }
                }
                Ok(true)
            })
        },
        &mut [],
    )
}

/// `err` with the end of `<dir>/<part>.log` (40 lines) as its context.
pub(crate) fn with_log(dir: &Path, part: &str, err: anyhow::Error) -> anyhow::Error {
    let log = std::fs::read_to_string(dir.join(format!("{part}.log"))).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(40).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    err.context(format!("{part} log:\n{}", tail.join("\n")))
}

/// Starts `bin` with `args` and `env`, its output in `<dir>/<name>.log`.
pub(crate) fn spawn(
    bin: &Path,
    dir: &Path,
    name: &str,
    args: &[String],
    env: &[(&str, &str)],
) -> Result<ChildGuard> {
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    let mut command = Command::new(bin);
    command
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    ChildGuard::spawn(command, name)
}

/// Polls `ready` until it holds, one of `processes` exits, or [`PATIENCE`] runs out.
pub(crate) fn wait(
    what: &str,
    mut ready: impl FnMut() -> Result<bool>,
    processes: &mut [&mut ChildGuard],
) -> Result<()> {
    wait::until(what, PATIENCE, Duration::from_millis(100), || {
        if ready().unwrap_or(false) {
            return Ok(Some(()));
        }
        for process in processes.iter_mut() {
            if let Some(exit) = process.exited() {
                bail!("{exit} while waiting for {what}");
            }
        }
        Ok(None)
    })
}

fn http_get(path: &str) -> http::Request<Vec<u8>> {
    let mut request = http::Request::new(Vec::new());
    *request.uri_mut() = path.parse().unwrap_or_default();
    request
}

/// An ECDSA key pair for signing ServiceAccount tokens, as PEM (private, public).
fn service_account_keys() -> Result<(String, String)> {
    let key = rcgen::KeyPair::generate().context("generating the ServiceAccount signing key")?;
    Ok((key.serialize_pem(), key.public_key_pem()))
}

/// 32 random hex digits, from the OS.
fn random_token() -> String {
    let mut bytes = [0u8; 16];
    // The key pair above drew from the same source; failing here is not expected.
    getrandom::fill(&mut bytes).unwrap_or_default();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_kubeconfig(path: &Path, api: SocketAddr, token: &str, namespace: &str) -> Result<()> {
    // The API server's certificate is self-signed and made at its start: loopback only.
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "mesh", "cluster": {"server": format!("https://{api}"),
                                                  "insecure-skip-tls-verify": true}}],
        "users": [{"name": "user", "user": {"token": token}}],
        "contexts": [{"name": "mesh", "context": {"cluster": "mesh", "user": "user",
                                                  "namespace": namespace}}],
        "current-context": "mesh",
    });
    std::fs::write(path, serde_json::to_vec_pretty(&config)?)
        .with_context(|| format!("writing {}", path.display()))
}

async fn client_for(kubeconfig: &Path) -> Result<Client> {
    let (client, _) = runtime::target::kube::client(Some(kubeconfig))
        .await
        .map_err(|e| anyhow!("{e}"))?;
    Ok(client)
}

/// The documents of a YAML stream as JSON values, empty documents left out.
pub fn parse_yaml_documents(yaml: &str) -> Result<Vec<Value>> {
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(yaml).map_err(|e| anyhow!("invalid YAML: {e}"))?;
    Ok(documents.into_iter().filter(|d| !d.is_null()).collect())
}

/// An API for `kind` of `api_version`, found by discovery.
async fn dynamic_api(
    client: &Client,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
) -> Result<Api<DynamicObject>> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, capabilities) = discovery::pinned_kind(client, &gvk)
        .await
        .with_context(|| format!("discovering {api_version} {kind}"))?;
    Ok(match (capabilities.scope, namespace) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
        _ => Api::all_with(client.clone(), &resource),
    })
}

/// Server-side apply of `object` by the harness's field manager.
async fn apply(client: &Client, object: &Value) -> Result<()> {
    apply_with(client, object, PatchParams::apply("sticky-harness").force()).await
}

/// Server-side apply of `object` with `params`.
async fn apply_with(client: &Client, object: &Value, params: PatchParams) -> Result<()> {
    let (api, name) = api_for(client, object).await?;
    api.patch(&name, &params, &Patch::Apply(object))
        .await
        .with_context(|| {
            format!(
                "applying {} {}{name}",
                object["kind"].as_str().unwrap_or_default(),
                object
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .map(|n| format!("{n}/"))
                    .unwrap_or_default()
            )
        })?;
    Ok(())
}

/// The API of `object`'s kind (in its namespace) and its name.
async fn api_for(client: &Client, object: &Value) -> Result<(Api<DynamicObject>, String)> {
    let field = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("object without {pointer}: {object}"))
    };
    let (api_version, kind, name) = (
        field("/apiVersion")?,
        field("/kind")?,
        field("/metadata/name")?,
    );
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str);
    let api = dynamic_api(client, api_version, kind, namespace).await?;
    Ok((api, name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istiods_json_names_become_envoys_admin_names() {
        let dump = json!({"configs": [{"@type": "x", "dynamicActiveClusters": [
            {"cluster": {"typedExtensionProtocolOptions": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {}},
                         "metadata": {"filterMetadata": {"istio": {"ISTIO_VERSION": "1"}}}}}]}]});
        let snake = snake_case_keys(dump);
        let cluster = &snake["configs"][0]["dynamic_active_clusters"][0]["cluster"];
        assert_eq!(snake["configs"][0]["@type"], "x");
        assert!(cluster["typed_extension_protocol_options"]
            .get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions")
            .is_some());
        assert_eq!(
            cluster["metadata"]["filter_metadata"]["istio"]["ISTIO_VERSION"],
            "1"
        );
    }
}
