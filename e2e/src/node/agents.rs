//! The node agents' configuration, as files: the kubelet's, kube-proxy's, and the pods' resolver's.

use std::path::Path;

use serde_json::{json, Value};

use super::{DNS_IP, NODE_IP, NODE_NAME, POD_RANGE};

/// The kubelet's `KubeletConfiguration`, with the node's files under `dir`.
pub fn kubelet_config(dir: &Path) -> Value {
    let d = |name: &str| dir.join(name).display().to_string();
    json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP.to_string(),
        "healthzBindAddress": "127.0.0.1",
        "readOnlyPort": 0,
        // A test node: the API server (and only what runs in the node's namespace) reaches it.
        "authentication": {"anonymous": {"enabled": true}, "webhook": {"enabled": false}},
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": format!("unix://{}", super::containerd::socket(dir).display()),
        // The machine has cgroup v1 hierarchies (writable) and no systemd running the node.
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": false,
        "failSwapOn": false,
        "clusterDNS": [DNS_IP],
        "clusterDomain": "cluster.local",
        "resolvConf": d("resolv.conf"),
        "podLogsDir": d("pod-logs"),
        "serializeImagePulls": false,
        // Nothing evicts a test's pods because the shared machine's disk is busy.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 100,
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "registerNode": true,
    })
}

/// The resolver configuration pods with `dnsPolicy: Default` get: nothing resolves outside the
/// cluster, so none is named.
pub const RESOLV_CONF: &str = "# the node resolves no name outside the cluster\noptions ndots:1\n";

/// kube-proxy's `KubeProxyConfiguration` (iptables mode). It leaves the conntrack table's
/// sizes alone: they belong to the whole machine, not to the node's namespace.
pub fn kube_proxy_config(kubeconfig: &Path) -> Value {
    json!({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": kubeconfig.display().to_string()},
        "mode": "iptables",
        "clusterCIDR": POD_RANGE,
        "hostnameOverride": NODE_NAME,
        "bindAddress": NODE_IP.to_string(),
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
    })
}
