//! The Go programs the mesh and install tests run, built from their Go modules by
//! `tools/control-plane/build` into a cache outside the clone (see that script and
//! `versions.env` beside it).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::locate::workspace_root;

/// Paths of the binaries a control plane runs.
#[derive(Debug, Clone)]
pub struct Tools {
    /// etcd 3.6.
    pub etcd: PathBuf,
    /// kube-apiserver.
    pub kube_apiserver: PathBuf,
    /// kube-controller-manager (its Deployment and ReplicaSet controllers, on demand).
    pub kube_controller_manager: PathBuf,
    /// istiod (`pilot-discovery`).
    pub pilot_discovery: PathBuf,
    /// A directory of the Gateway API CRDs (standard channel) of the version the pinned Istio
    /// requires, one YAML file each.
    pub gateway_api_crds: PathBuf,
}

impl Tools {
    /// Runs the build script, which builds what the cache lacks (minutes, on a cold machine)
    /// and prints where each binary is.
    pub fn locate() -> Result<Tools> {
        let mut paths = locate(&[
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "pilot-discovery",
            "gateway-api-crds",
        ])?;
        let mut take = |name: &str| paths.remove(name).unwrap_or_default();
        Ok(Tools {
            etcd: take("etcd"),
            kube_apiserver: take("kube-apiserver"),
            kube_controller_manager: take("kube-controller-manager"),
            pilot_discovery: take("pilot-discovery"),
            gateway_api_crds: take("gateway-api-crds"),
        })
    }
}

/// istio-agent's Envoy bootstrap template (`tools/packaging/common/envoy_bootstrap.json` of
/// the pinned Istio, in the Go module cache: nothing is built for it), whose stats settings
/// the tests give their gateway.
pub fn istio_bootstrap_template() -> Result<PathBuf> {
    let mut paths = locate(&["istio-bootstrap"])?;
    Ok(paths.remove("istio-bootstrap").unwrap_or_default())
}

/// `istioctl` of the pinned Istio, for `istioctl analyze` (Istio's own analyzers) on what
/// `stickyctl` writes.
pub fn istioctl() -> Result<PathBuf> {
    let mut paths = locate(&["istioctl"])?;
    Ok(paths.remove("istioctl").unwrap_or_default())
}

/// What installing sticky-canary takes, and what proves it: Helm, a registry and its client,
/// and Istio's own code for the agent's part.
#[derive(Debug, Clone)]
pub struct InstallTools {
    /// Helm 3.
    pub helm: PathBuf,
    /// The CNCF distribution registry (`registry serve CONFIG`).
    pub registry: PathBuf,
    /// crane, the go-containerregistry client.
    pub crane: PathBuf,
    /// `wasm-fetch`: istio-agent's Wasm module cache (`istio.io/istio/pkg/wasm`) in a program.
    pub wasm_fetch: PathBuf,
}

impl InstallTools {
    /// Like [`Tools::locate`].
    pub fn locate() -> Result<InstallTools> {
        let mut paths = locate(&["helm", "registry", "crane", "wasm-fetch"])?;
        let mut take = |name: &str| paths.remove(name).unwrap_or_default();
        Ok(InstallTools {
            helm: take("helm"),
            registry: take("registry"),
            crane: take("crane"),
            wasm_fetch: take("wasm-fetch"),
        })
    }
}

/// Runs the build script for `names` and returns the path it printed for each, each checked
/// to exist (a file; a directory for the names ending in `-crds`).
pub(crate) fn locate(names: &[&str]) -> Result<BTreeMap<String, PathBuf>> {
    let script = workspace_root().join("tools/control-plane/build");
    let output = Command::new("bash")
        .arg(&script)
        .args(names)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}): {}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut paths = BTreeMap::new();
    for name in names {
        let line = stdout
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}=")))
            .with_context(|| format!("{} printed no path for {name}", script.display()))?;
        let path = PathBuf::from(line);
        let present = if name.ends_with("-crds") || name.ends_with("-charts") {
            path.is_dir()
        } else {
            path.is_file()
        };
        if !present {
            bail!("{name}: {} is missing", path.display());
        }
        paths.insert((*name).to_owned(), path);
    }
    Ok(paths)
}
