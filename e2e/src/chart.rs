//! The Helm chart (`charts/sticky-canary`) through the real Helm: rendered with values, and
//! linted, for the tests that check what it installs.

use std::path::PathBuf;
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::locate::workspace_root;
use crate::mesh::control_plane::parse_yaml_documents;
use crate::mesh::tools::InstallTools;

/// The chart's directory.
pub fn chart_dir() -> PathBuf {
    workspace_root().join("charts/sticky-canary")
}

/// The Kubernetes version the tests run (`KUBERNETES_VERSION` of versions.env), which
/// `helm template` renders for.
pub fn kubernetes_version() -> Result<String> {
    let path = workspace_root().join("tools/control-plane/versions.env");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("KUBERNETES_VERSION="))
        .map(|v| v.trim_start_matches('v').to_owned())
        .with_context(|| format!("no KUBERNETES_VERSION in {}", path.display()))
}

/// Runs `helm args...` from the repository's root.
pub fn helm(args: &[&str]) -> Result<Output> {
    let tools = InstallTools::locate()?;
    Command::new(&tools.helm)
        .args(args)
        .current_dir(workspace_root())
        .output()
        .with_context(|| format!("running {}", tools.helm.display()))
}

/// `helm template` of the chart as release `sticky-canary` in `sticky-canary-system`, CRDs
/// included, with `values` (`--set KEY=VALUE` each): the objects, or Helm's refusal.
pub fn render(values: &[&str]) -> Result<Vec<Value>> {
    let chart = chart_dir();
    let version = kubernetes_version()?;
    let mut args = vec![
        "template",
        "sticky-canary",
        chart.to_str().context("the chart's path is not UTF-8")?,
        "--namespace",
        "sticky-canary-system",
        "--include-crds",
        "--kube-version",
        &version,
    ];
    for value in values {
        args.extend(["--set", value]);
    }
    let output = helm(&args)?;
    if !output.status.success() {
        bail!(
            "helm template: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    parse_yaml_documents(&String::from_utf8_lossy(&output.stdout))
}
