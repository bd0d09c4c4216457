//! The node's own namespaces: a test that runs a node runs again inside new network, mount and
//! PID namespaces (`unshare`), so that the pod and service ranges exist only there, nothing it
//! mounts is seen outside, and every process it started (containerd's shims and the
//! containers among them) dies with it, however the test ends.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// Set in the copy of the test that runs inside the namespaces.
const INSIDE: &str = "STICKY_NODE_NAMESPACES";

/// `true` inside the node's namespaces: the caller goes on with the test. Outside, runs the
/// test named `test` (its full path, as `cargo test -- --exact` names it) again inside new
/// namespaces, its output passed through, and returns `false` once it passed; an error says
/// it failed.
pub fn inside(test: &str) -> Result<bool> {
    inside_with(&["--exact", test, "--nocapture", "--test-threads=1"])
}

/// [`inside`] for a program: outside, runs it again with `args` inside the namespaces.
pub fn inside_with(args: &[&str]) -> Result<bool> {
    if std::env::var_os(INSIDE).is_some() {
        setup_network()?;
        return Ok(true);
    }
    let exe = std::env::current_exe().context("locating the running program")?;
    let status = Command::new("unshare")
        .args([
            "--net",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
        ])
        .arg(&exe)
        .args(args)
        .env(INSIDE, "1")
        .status()
        .context("running unshare (util-linux) to give the node namespaces of its own")?;
    if !status.success() {
        bail!(
            "{} {} failed inside the node's namespaces ({status}): its output is above",
            exe.display(),
            args.join(" ")
        );
    }
    Ok(false)
}

/// Loopback up, with the node's address on it (a `dummy` link would need a kernel module this
/// machine may lack; an address on `lo` is local all the same), and a route for the Services'
/// range from that address: a connection to a ClusterIP needs a route before kube-proxy's
/// rules turn it towards a pod.
fn setup_network() -> Result<()> {
    let node_ip = super::NODE_IP.to_string();
    run("ip", &["link", "set", "lo", "up"])?;
    run(
        "ip",
        &["addr", "add", &format!("{node_ip}/32"), "dev", "lo"],
    )?;
    run(
        "ip",
        &[
            "route",
            "add",
            super::SERVICE_RANGE,
            "dev",
            "lo",
            "src",
            &node_ip,
        ],
    )?;
    Ok(())
}

/// Runs `program` with `args`; an error carries what it printed.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !output.status.success() {
        bail!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
