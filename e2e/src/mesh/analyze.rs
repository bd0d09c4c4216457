//! Istio's own analyzers on what `stickyctl` writes: `istioctl analyze --all-namespaces` of
//! the pinned Istio ([`super::tools::istioctl`]) against a harness's kube-apiserver, every
//! message down to Info, read from its JSON output.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::process::ChildGuard;
use crate::wait;

/// One message of `istioctl analyze -o json`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    /// `Error`, `Warning` or `Info`.
    pub level: String,
    /// `IST0130` and the like.
    pub code: String,
    /// The resource, as this Istio names it: `<Kind> <namespace>/<name>`.
    pub origin: String,
    /// The message.
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} [{}] ({}) {}",
            self.level, self.code, self.origin, self.message
        )
    }
}

/// The findings one a line, for messages.
pub fn show(findings: &BTreeSet<Finding>) -> String {
    findings
        .iter()
        .map(|f| format!("\n  {f}"))
        .collect::<String>()
}

/// The findings of level Error.
pub fn errors(findings: &BTreeSet<Finding>) -> BTreeSet<Finding> {
    findings
        .iter()
        .filter(|f| f.level == "Error")
        .cloned()
        .collect()
}

/// The findings above Info (warnings and errors).
pub fn above_info(findings: &BTreeSet<Finding>) -> BTreeSet<Finding> {
    findings
        .iter()
        .filter(|f| f.level != "Info")
        .cloned()
        .collect()
}

/// How long one `istioctl analyze` may take (it reads every Istio and Kubernetes kind the
/// analyzers take; seconds on loopback).
const ANALYZE_TIMEOUT: Duration = Duration::from_secs(120);

/// `istioctl analyze --all-namespaces` with `extra` arguments against the API server of
/// `kubeconfig`, every message down to Info; `round` names the run in what it prints.
pub fn analyze(
    istioctl: &Path,
    kubeconfig: &Path,
    round: &str,
    extra: &[&str],
) -> Result<BTreeSet<Finding>> {
    let mut command = Command::new(istioctl);
    command
        .arg("analyze")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(extra)
        .args([
            "--all-namespaces",
            "--output",
            "json",
            "--output-threshold",
            "Info",
            "--timeout",
            "60s",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = ChildGuard::spawn(command, "istioctl analyze")?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                pipe.read_to_string(&mut text).map(|_| text)
            } else {
                Ok(text)
            }
        })
    };
    let stdout = drain(child.child_mut().stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.child_mut().stderr.take().map(|p| Box::new(p) as _));
    let status = wait::until(
        "istioctl analyze to finish",
        ANALYZE_TIMEOUT,
        Duration::from_millis(100),
        || Ok(child.child_mut().try_wait()?),
    )?;
    // The process is gone: its pipes are closed, the readers at their end.
    let join = |reader: std::thread::JoinHandle<std::io::Result<String>>| {
        reader
            .join()
            .map_err(|_| anyhow!("a reader of istioctl's output panicked"))?
            .context("reading istioctl's output")
    };
    let stdout = join(stdout)?;
    let stderr = join(stderr)?;
    eprintln!(
        "istioctl analyze ({round}): {:.1} s, {status}\n{stdout}{stderr}",
        started.elapsed().as_secs_f64()
    );
    // With JSON output istioctl exits 0 whatever it finds (the failure threshold applies to
    // its log output only): anything else is istioctl failing.
    if !status.success() {
        bail!("istioctl analyze failed ({status}): {stderr}");
    }
    let messages: Value = serde_json::from_str(&stdout)
        .with_context(|| format!("istioctl analyze printed no JSON: {stdout}{stderr}"))?;
    let text = |m: &Value, k: &str| m[k].as_str().unwrap_or_default().to_owned();
    Ok(messages
        .as_array()
        .ok_or_else(|| anyhow!("not a list: {messages}"))?
        .iter()
        .map(|m| Finding {
            level: text(m, "level"),
            code: text(m, "code"),
            origin: text(m, "origin"),
            message: text(m, "message"),
        })
        .collect())
}
