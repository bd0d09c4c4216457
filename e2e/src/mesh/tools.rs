//! The control-plane binaries, built from their Go modules by `tools/control-plane/build`
//! into a cache outside the clone (see that script and `versions.env` beside it).

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
}

impl Tools {
    /// Runs the build script, which builds what the cache lacks (minutes, on a cold machine)
    /// and prints where each binary is.
    pub fn locate() -> Result<Tools> {
        let script = workspace_root().join("tools/control-plane/build");
        let output = Command::new("bash")
            .arg(&script)
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
        let path = |name: &str| -> Result<PathBuf> {
            let line = stdout
                .lines()
                .find_map(|line| line.strip_prefix(&format!("{name}=")))
                .with_context(|| format!("{} printed no path for {name}", script.display()))?;
            let path = PathBuf::from(line);
            if !path.is_file() {
                bail!("{name}: {} is missing", path.display());
            }
            Ok(path)
        };
        Ok(Tools {
            etcd: path("etcd")?,
            kube_apiserver: path("kube-apiserver")?,
            kube_controller_manager: path("kube-controller-manager")?,
            pilot_discovery: path("pilot-discovery")?,
        })
    }
}
