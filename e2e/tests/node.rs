//! A real node (`sticky_canary_e2e::node`): pods from the node's registry, Services through
//! kube-proxy, names through CoreDNS.

use sticky_canary_e2e::locate;
use sticky_canary_e2e::node::{isolate, Node};

#[test]
fn a_node_becomes_ready_and_runs_coredns() {
    if !isolate::inside("a_node_becomes_ready_and_runs_coredns").unwrap() {
        return;
    }
    let node = Node::start(&locate::istio_crds().unwrap()).unwrap();
    let pods = node.plane.list("v1", "Pod", "kube-system", "k8s-app=kube-dns").unwrap();
    assert_eq!(pods.len(), 1, "{pods:?}");
}
