//! The plan's Kubernetes shell: reads the Ingresses, VirtualServices, HTTPRoutes and
//! Deployments of the entries and writes them, each replace with the resourceVersion it read
//! (a 409 is [`Error::Conflict`]: the entry is read and edited again), dry runs first.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::Value;

use super::workload::Workload;
use super::{ObjectKind, Write};
use runtime::error::Error;
use runtime::target::kube::{refused, stale_on_replace};

/// A cluster the plan reads and writes.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
}

fn resource(kind: ObjectKind) -> ApiResource {
    let (group, version, kind, plural) = match kind {
        ObjectKind::Ingress => ("networking.k8s.io", "v1", "Ingress", "ingresses"),
        ObjectKind::VirtualService => (
            "networking.istio.io",
            "v1",
            "VirtualService",
            "virtualservices",
        ),
        ObjectKind::HttpRoute => ("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes"),
        ObjectKind::DeploymentScale => ("apps", "v1", "Deployment", "deployments"),
    };
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// The label selector `selector` as the API takes it in `labelSelector`.
pub fn selector_text(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    parts.join(",")
}

impl Cluster {
    /// The cluster of `client`.
    pub fn new(client: Client) -> Self {
        Cluster { client }
    }

    /// An Ingress, a VirtualService or an HTTPRoute, `None` when it does not exist.
    pub async fn object(
        &self,
        kind: ObjectKind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, Error> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource(kind));
        let object = api.get_opt(name).await?;
        object
            .map(|o| serde_json::to_value(o).map_err(|e| Error::Runtime(e.to_string())))
            .transpose()
    }

    /// A Deployment and its pods, `None` when it does not exist.
    pub async fn workload(&self, namespace: &str, name: &str) -> Result<Option<Workload>, Error> {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        let Some(deployment) = deployments.get_opt(name).await? else {
            return Ok(None);
        };
        // The API server defaults an absent spec.replicas to 1.
        let replicas = deployment.spec.replicas.unwrap_or(1);
        let selector = selector_text(&deployment.spec.selector);
        let status = deployment.status.unwrap_or_default();
        // A Deployment selecting everything would count every pod; it has no pods of its own.
        let pods = if selector.is_empty() {
            0
        } else {
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
            pods.list(&ListParams::default().labels(&selector))
                .await?
                .items
                .len()
        };
        let generation = deployment.metadata.generation.unwrap_or(0);
        Ok(Some(Workload {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            resource_version: deployment.metadata.resource_version.unwrap_or_default(),
            replicas,
            status_replicas: status.replicas.unwrap_or(0)
                + status.terminating_replicas.unwrap_or(0),
            observed: status.observed_generation.unwrap_or(0) >= generation,
            pods,
        }))
    }

    /// Writes `write`; with `dry_run`, has the server check it and writes nothing (a refusal
    /// of the server is then [`Error::Invalid`] in its own words).
    pub async fn write(&self, write: &Write, dry_run: bool) -> Result<(), Error> {
        let label = write.object.label();
        let params = PostParams {
            dry_run,
            ..PostParams::default()
        };
        let o = &write.object;
        let result = match o.kind {
            ObjectKind::Ingress | ObjectKind::VirtualService | ObjectKind::HttpRoute => {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(self.client.clone(), &o.namespace, &resource(o.kind));
                let object: DynamicObject = serde_json::from_value(write.desired.clone())
                    .map_err(|e| Error::Runtime(format!("{label}: {e}")))?;
                api.replace(&o.name, &params, &object).await.map(drop)
            }
            ObjectKind::DeploymentScale => {
                let api: Api<Deployment> = Api::namespaced(self.client.clone(), &o.namespace);
                let scale: Scale = serde_json::from_value(write.desired.clone())
                    .map_err(|e| Error::Runtime(format!("{label}: {e}")))?;
                api.replace_scale(&o.name, &params, &scale).await.map(drop)
            }
        };
        let result = result.map_err(stale_on_replace(&label));
        if dry_run {
            result.map_err(refused(&label))
        } else {
            result
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    #[test]
    fn selectors_read_as_the_api_takes_them() {
        let selector = LabelSelector {
            match_labels: Some([("app".to_owned(), "job".to_owned())].into()),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["a".into(), "b".into()]),
                },
                LabelSelectorRequirement {
                    key: "x".into(),
                    operator: "NotIn".into(),
                    values: Some(vec!["c".into()]),
                },
                LabelSelectorRequirement {
                    key: "y".into(),
                    operator: "Exists".into(),
                    values: None,
                },
                LabelSelectorRequirement {
                    key: "z".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        assert_eq!(
            selector_text(&selector),
            "app=job,tier in (a,b),x notin (c),y,!z"
        );
        assert_eq!(selector_text(&LabelSelector::default()), "");
    }
}
