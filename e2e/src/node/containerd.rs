//! containerd (Debian's) as the node's runtime: CRI with runc, the CNI bridge, images from the
//! node's registry over plain HTTP. Its state lives under the node's directory; the settings
//! that this machine needs are each said where they are set.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::POD_RANGE;

/// containerd's configuration file (version 2, containerd 1.6 and later) for a node whose files
/// are under `dir`, with `sandbox_image` as every pod's pause container.
pub fn config(dir: &Path, sandbox_image: &str) -> String {
    let d = |name: &str| dir.join(name).display().to_string();
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"

[grpc]
  address = "{socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  # The machine's capability bounding set lacks CAP_SYS_RESOURCE: even root cannot lower a
  # process's oom_score_adj, and runc fails every sandbox that asks to.
  restrict_oom_score_adj = true
  # Pods' network namespaces under the state directory, not /var/run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{hosts}"
"#,
        root = d("containerd/root"),
        state = d("containerd/state"),
        socket = socket(dir).display(),
        opt = d("containerd/opt"),
        cni = d("cni"),
        hosts = d("registry-hosts"),
    )
}

/// containerd's CRI socket.
pub fn socket(dir: &Path) -> PathBuf {
    dir.join("containerd/containerd.sock")
}

/// The `hosts.toml` that lets containerd pull from `registry` over plain HTTP.
pub fn registry_hosts(registry: &str) -> String {
    format!(
        "server = \"http://{registry}\"\n\n[host.\"http://{registry}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
    )
}

/// The CNI network: one bridge, pods' addresses from [`POD_RANGE`]. `isDefaultGateway` gives
/// pods a default route (without it they cannot reach ClusterIPs); no masquerade, since
/// nothing leaves the node's namespace.
pub fn cni_config(ipam_dir: &Path) -> String {
    let config = json!({
        "cniVersion": "1.0.0",
        "name": "node",
        "plugins": [{
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": true,
            "isDefaultGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": POD_RANGE}]],
                "dataDir": ipam_dir.display().to_string(),
            },
        }],
    });
    serde_json::to_string_pretty(&config).unwrap_or_default()
}
