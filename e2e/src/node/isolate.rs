//! The node's own namespaces: a test that runs a node runs again inside new network, mount and
//! PID namespaces (`unshare`), so that the pod and service ranges exist only there, nothing it
//! mounts or writes under the node's paths is seen outside, and every process it started
//! (containerd's shims and the containers among them) dies with it, however the test ends.
//!
//! Inside, before the node starts: loopback with the node's address and a route for the
//! Services' range; a tmpfs over every host path the runtime and the kubelet write to by
//! default (`/tmp`, `/run/containerd`, `/var/lib/cni`, `/var/log/containers`, `/var/log/pods`);
//! and the kernel settings the kubelet insists on (`kernel.panic` and its kin, which belong to
//! the whole machine, not to a namespace) answered by files of the mount namespace, so that it
//! finds them as it wants them and changes nothing on the host.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::process::{run, ChildGuard};

/// Set in the copy of the test that runs inside the namespaces: where it says it started.
const INSIDE: &str = "STICKY_NODE_NAMESPACES";

/// Host paths the runtime and the kubelet write to whatever their configuration says.
const PRIVATE_PATHS: [&str; 5] = [
    "/tmp",
    "/run/containerd",
    "/var/lib/cni",
    "/var/log/containers",
    "/var/log/pods",
];

/// The machine-wide kernel settings the kubelet sets unless it finds them so
/// (`pkg/kubelet/cm/container_manager_linux.go`, `setupKernelTunables`), with its values.
const KERNEL_SETTINGS: [(&str, &str); 6] = [
    ("vm/overcommit_memory", "1"),
    ("vm/panic_on_oom", "0"),
    ("kernel/panic", "10"),
    ("kernel/panic_on_oops", "1"),
    ("kernel/keys/root_maxkeys", "1000000"),
    ("kernel/keys/root_maxbytes", "25000000"),
];

/// The top of the kubelet's pod cgroups in each hierarchy (the `cgroupfs` driver's default).
const POD_CGROUPS: &str = "kubepods";

/// `true` inside the node's namespaces: the caller goes on with the test. Outside, runs the
/// test named `test` (its full path, as `cargo test -- --exact` names it) again inside new
/// namespaces, its output passed through, and returns `false` once it ran there and passed;
/// an error says it failed, or that no test of that name ran.
pub fn inside(test: &str) -> Result<bool> {
    inside_with(&[
        "--exact",
        test,
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
    ])
}

/// [`inside`] for a program: outside, runs it again with `args` inside the namespaces.
pub fn inside_with(args: &[&str]) -> Result<bool> {
    if let Some(mark) = std::env::var_os(INSIDE) {
        std::fs::write(&mark, b"started\n").context("marking the run inside as started")?;
        setup()?;
        return Ok(true);
    }
    let exe = std::env::current_exe().context("locating the running program")?;
    let mark = tempfile::NamedTempFile::new().context("creating the start mark")?;
    std::fs::write(mark.path(), b"")?;
    let cgroups_before = pod_cgroups();
    let absent: Vec<&str> = PRIVATE_PATHS
        .iter()
        .copied()
        .filter(|path| !Path::new(path).exists())
        .collect();
    let mut command = Command::new("unshare");
    command
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
        .env(INSIDE, mark.path());
    // Killed with this process: and the PID namespace's processes with it (--kill-child).
    let mut unshare = ChildGuard::spawn(command, "unshare (util-linux)")?;
    let status = unshare
        .child_mut()
        .wait()
        .context("waiting for the run inside the node's namespaces")?;
    // The pods' cgroups this node made, empty now that every process of it is gone.
    for dir in pod_cgroups().difference(&cgroups_before) {
        remove_cgroup_tree(dir);
    }
    // The mount points the run made on the host, empty (their tmpfs went with the namespace);
    // best effort, as for the cgroups.
    for path in absent {
        let _ = std::fs::remove_dir(path);
    }
    if !status.success() {
        bail!(
            "{} {} failed inside the node's namespaces ({status}): its output is above",
            exe.display(),
            args.join(" ")
        );
    }
    if std::fs::read(mark.path()).unwrap_or_default().is_empty() {
        bail!(
            "nothing ran inside the node's namespaces for `{} {}`: no test of that name?",
            exe.display(),
            args.join(" ")
        );
    }
    Ok(false)
}

/// Whether this process runs inside the node's namespaces.
pub fn is_inside() -> bool {
    std::env::var_os(INSIDE).is_some()
}

fn setup() -> Result<()> {
    let node_ip = super::NODE_IP.to_string();
    // Loopback up, with the node's address on it (a `dummy` link would need a kernel module
    // this machine may lack; an address on `lo` is local all the same), and a route for the
    // Services' range from that address: a connection to a ClusterIP needs a route before
    // kube-proxy's rules turn it towards a pod.
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
    for path in PRIVATE_PATHS {
        std::fs::create_dir_all(path).with_context(|| format!("creating {path}"))?;
        run("mount", &["-t", "tmpfs", "node", path])?;
    }
    let settings = Path::new("/tmp/kernel-settings");
    std::fs::create_dir_all(settings)?;
    for (name, value) in KERNEL_SETTINGS {
        let file = settings.join(name.replace('/', "."));
        std::fs::write(&file, format!("{value}\n"))?;
        run(
            "mount",
            &[
                "--bind",
                &file.display().to_string(),
                &format!("/proc/sys/{name}"),
            ],
        )?;
    }
    Ok(())
}

/// The `kubepods` cgroup directories of every hierarchy.
fn pod_cgroups() -> std::collections::BTreeSet<PathBuf> {
    let hierarchies = std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten();
    hierarchies
        .flatten()
        .map(|h| h.path().join(POD_CGROUPS))
        .filter(|dir| dir.is_dir())
        .collect()
}

/// Removes the cgroup `dir` and those below it, deepest first; a cgroup that still holds a
/// process stays (rmdir refuses it).
fn remove_cgroup_tree(dir: &Path) {
    let children = std::fs::read_dir(dir).into_iter().flatten().flatten();
    for child in children {
        if child.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&child.path());
        }
    }
    // Best effort: a leftover empty cgroup costs nothing but a name.
    let _ = std::fs::remove_dir(dir);
}
