//! CoreDNS, as a kubeadm cluster runs it: the pods' cluster names (`<service>.<namespace>.svc`,
//! which istio-agent needs to find istiod) answered from the API, nothing forwarded.

use serde_json::{json, Value};

use super::DNS_IP;

/// The objects: its ServiceAccount, RBAC, Corefile, Deployment (image `image`) and the
/// `kube-dns` Service at the kubelet's `clusterDNS` address.
pub fn objects(image: &str) -> Vec<Value> {
    let ns = "kube-system";
    let labels = json!({"k8s-app": "kube-dns"});
    vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "coredns", "namespace": ns}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": "system:coredns"},
               "rules": [
                   {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"]},
                   {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                    "verbs": ["list", "watch"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "system:coredns"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": "system:coredns"},
               "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": ns}]}),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "coredns", "namespace": ns},
               "data": {"Corefile": COREFILE}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "coredns", "namespace": ns, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": "coredns",
                    "dnsPolicy": "Default",
                    "containers": [{
                        "name": "coredns",
                        "image": image,
                        "args": ["-conf", "/etc/coredns/Corefile"],
                        "ports": [{"containerPort": 53, "protocol": "UDP", "name": "dns"},
                                  {"containerPort": 53, "protocol": "TCP", "name": "dns-tcp"}],
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181},
                                           "periodSeconds": 1},
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns"}],
                    }],
                    "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                },
            },
        }}),
        json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": ns, "labels": labels},
        "spec": {
            "clusterIP": DNS_IP,
            "selector": labels,
            "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                      {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}],
        }}),
    ]
}

/// Cluster names from the API; anything else is not found (the node's namespace has no way out).
const COREFILE: &str = ".:53 {
    errors
    health :8080
    ready :8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    cache 5
}
";
