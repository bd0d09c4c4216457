//! How a plan entry's `project` maps to its objects: the convention a Helm release per version
//! gives, each overridable per entry.
//!
//! The stable version is the release `<project>` and the canary the release
//! `<project>-canary`; charts name their Deployment, Service and Ingress after the release. So:
//!
//! | type | objects |
//! |---|---|
//! | `STICKY` | StickyCanary `<project>` (`rollout:`) |
//! | `INGRESS_NGINX` | stable Ingress `<project>` (`stable:`), canary Ingress `<project>-canary` (`canary:`) |
//! | `ISTIO_VSVC` | VirtualService `<project>` (`virtualService:`) with destinations to hosts `<project>` (`stable:`) and `<project>-canary` (`canary:`) |
//! | `HTTPROUTE` | HTTPRoute `<project>` (`httpRoute:`) with backendRefs to Services `<project>` (`stable:`) and `<project>-canary` (`canary:`) |
//! | `DEPLOYMENT_REPLICAS`, `DEPLOYMENT_SINGLETON` | Deployments `<project>` (`stable:`) and `<project>-canary` (`canary:`) |
//!
//! Every object is in the entry's `namespace:`, else `--namespace`, else the kubeconfig's.

use super::file::Entry;

/// The suffix of the canary release's name.
pub const CANARY_SUFFIX: &str = "-canary";

/// The objects of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// Where they are.
    pub namespace: String,
    /// The StickyCanary (`STICKY`).
    pub rollout: String,
    /// The VirtualService (`ISTIO_VSVC`).
    pub virtual_service: String,
    /// The HTTPRoute (`HTTPROUTE`).
    pub http_route: String,
    /// The stable Ingress, Deployment or backendRef's Service, or the stable destination host.
    pub stable: String,
    /// The canary Ingress, Deployment or backendRef's Service, or the canary destination host.
    pub canary: String,
}

impl Names {
    /// `prod/server-web-canary`.
    pub fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.namespace)
    }
}

/// The names of `entry`'s objects, with `namespace` when the entry names none.
pub fn resolve(entry: &Entry, namespace: &str) -> Names {
    let project = &entry.project;
    let or = |value: &Option<String>, default: String| value.clone().unwrap_or(default);
    let o = &entry.overrides;
    Names {
        namespace: or(&entry.namespace, namespace.to_owned()),
        rollout: or(&o.rollout, project.clone()),
        virtual_service: or(&o.virtual_service, project.clone()),
        http_route: or(&o.http_route, project.clone()),
        stable: or(&o.stable, project.clone()),
        canary: or(&o.canary, format!("{project}{CANARY_SUFFIX}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::parse;

    #[test]
    fn the_convention_and_its_overrides() {
        let plan = parse(
            "- {project: web, type: INGRESS_NGINX, weight: 1}\n\
             - {project: map, type: ISTIO_VSVC, weight: 1, namespace: mesh, virtualService: routes, canary: map-green.mesh.svc.cluster.local}\n\
             - {project: s, type: STICKY, weight: 1, rollout: shop}\n\
             - {project: shop, type: HTTPROUTE, weight: 1, httpRoute: public, stable: shop-v1, canary: shop-v2}\n\
             - {project: cart, type: HTTPROUTE, weight: 1}\n",
            "p.yaml",
        )
        .expect("valid");
        let names: Vec<Names> = plan.iter().map(|e| resolve(e, "prod")).collect();
        assert_eq!(
            names,
            [
                Names {
                    namespace: "prod".into(),
                    rollout: "web".into(),
                    virtual_service: "web".into(),
                    http_route: "web".into(),
                    stable: "web".into(),
                    canary: "web-canary".into(),
                },
                Names {
                    namespace: "mesh".into(),
                    rollout: "map".into(),
                    virtual_service: "routes".into(),
                    http_route: "map".into(),
                    stable: "map".into(),
                    canary: "map-green.mesh.svc.cluster.local".into(),
                },
                Names {
                    namespace: "prod".into(),
                    rollout: "shop".into(),
                    virtual_service: "s".into(),
                    http_route: "s".into(),
                    stable: "s".into(),
                    canary: "s-canary".into(),
                },
                Names {
                    namespace: "prod".into(),
                    rollout: "shop".into(),
                    virtual_service: "shop".into(),
                    http_route: "public".into(),
                    stable: "shop-v1".into(),
                    canary: "shop-v2".into(),
                },
                Names {
                    namespace: "prod".into(),
                    rollout: "cart".into(),
                    virtual_service: "cart".into(),
                    http_route: "cart".into(),
                    stable: "cart".into(),
                    canary: "cart-canary".into(),
                },
            ]
        );
        assert_eq!(names[0].path(&names[0].canary), "prod/web-canary");
    }
}
