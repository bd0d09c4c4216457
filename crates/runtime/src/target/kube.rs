//! The Kubernetes target: the `StickyCanary` resource and the Istio objects it renders to.
//!
//! Never clobbers: every replace carries the resourceVersion that was read, and a 409 comes
//! back as [`Error::Conflict`] so the caller re-reads, re-renders and retries.

use std::collections::{btree_map, BTreeMap};
use std::path::Path;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams,
    Preconditions,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, ResourceExt};
use serde_json::Value;
use sticky_canary_filter::PluginConfig;

use super::{Doc, Plan, Target};
use crate::error::{Changed, Error};
use api::{RoutingApi, StickyCanary, StickyCanarySpec, StickyCanaryStatus};
use render::istio::{self, Kind, Live};
use render::wasmplugin::{MANAGED_BY, MANAGED_BY_LABEL};
use render::{placement, seal};

/// The Secret of a namespace that keeps its rollouts' QA override tokens, one key per rollout.
pub const OVERRIDE_TOKENS: &str = "sticky-canary-override-tokens";

/// Finalizer the controller puts on every rollout it reconciles, so that deleting the rollout
/// first takes its managed routes and subsets out of the user's objects. Only the controller
/// adds it: a rollout nobody watches must not hang in deletion; `stickyctl delete` cleans up
/// and removes it itself.
pub const FINALIZER: &str = "stickycanary.io/cleanup";

/// A rollout `name` in `namespace` of a cluster.
#[derive(Clone)]
pub struct KubeTarget {
    client: Client,
    namespace: String,
    name: String,
}

/// A client from `kubeconfig` when given, else the usual places (`KUBECONFIG`,
/// `~/.kube/config`, in-cluster), and the namespace it defaults to.
pub async fn client(kubeconfig: Option<&Path>) -> Result<(Client, String), Error> {
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?
        }
        None => Config::infer()
            .await
            .map_err(|e| Error::Runtime(format!("no Kubernetes configuration found: {e}")))?,
    };
    let namespace = config.default_namespace.clone();
    Ok((Client::try_from(config)?, namespace))
}

impl KubeTarget {
    /// The rollout `name` in `namespace`.
    pub fn new(client: Client, namespace: &str, name: &str) -> Self {
        KubeTarget {
            client,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    fn rollouts(&self) -> Api<StickyCanary> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn objects(&self, kind: Kind) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &api_resource(kind))
    }

    async fn read(&self, kind: Kind, name: &str) -> Result<Option<Value>, Error> {
        let object = self.objects(kind).get_opt(name).await?;
        object
            .map(|o| serde_json::to_value(o).map_err(|e| Error::Runtime(e.to_string())))
            .transpose()
    }

    async fn live(&self, canary: &StickyCanary) -> Result<Live, Error> {
        let name = |kind| istio::object_name(kind, &self.name, &canary.spec);
        // Every plugin stickyctl manages, wherever it is: the rollout's placements may name
        // any namespace, and it must find the plugins it is to leave as well.
        let (plugins, _) = objects_api(self.client.clone(), Kind::WasmPlugin, None);
        let managed = ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
        let mut by_name = BTreeMap::new();
        for plugin in plugins.list(&managed).await? {
            let value = serde_json::to_value(plugin).map_err(|e| Error::Runtime(e.to_string()))?;
            by_name.insert(istio::namespace_and_name(&value), value);
        }
        let api = canary.spec.routing.api;
        let mut live = Live {
            plugins: by_name,
            ..Live::default()
        };
        if api != Some(RoutingApi::HttpRoute) {
            live.virtual_service = self
                .read(Kind::VirtualService, &name(Kind::VirtualService))
                .await?;
            live.destination_rule = self
                .read(Kind::DestinationRule, &name(Kind::DestinationRule))
                .await?;
        }
        if api == Some(RoutingApi::VirtualService) {
            return Ok(live);
        }
        // Detecting, a cluster without Gateway API (404) or a role without HTTPRoutes (403)
        // has none; on the HTTPRoute API both are errors.
        live.http_routes = match self.list(Kind::HttpRoute, &ListParams::default()).await {
            Err(Error::Kube(kube::Error::Api(status)))
                if api.is_none() && (status.code == 404 || status.code == 403) =>
            {
                Vec::new()
            }
            listed => listed?,
        };
        if live.virtual_service.is_none() {
            live.services = self.services(canary).await?;
        }
        Ok(live)
    }

    /// The objects of `kind` in the rollout's namespace, each with its `apiVersion` and
    /// `kind` (the items of a list carry neither), as a read of one would have them.
    async fn list(&self, kind: Kind, params: &ListParams) -> Result<Vec<Value>, Error> {
        self.objects(kind)
            .list(params)
            .await?
            .into_iter()
            .map(|o| {
                let mut value =
                    serde_json::to_value(o).map_err(|e| Error::Runtime(e.to_string()))?;
                value["apiVersion"] = Value::from(kind.api_version());
                value["kind"] = Value::from(kind.as_str());
                Ok(value)
            })
            .collect()
    }

    /// The Services an HTTPRoute rollout renders from: its service, the version Services
    /// stickyctl made (labelled as its own) and those of the spec's versions by name.
    async fn services(&self, canary: &StickyCanary) -> Result<BTreeMap<String, Value>, Error> {
        let managed = ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
        let mut out = BTreeMap::new();
        for service in self.list(Kind::Service, &managed).await? {
            out.insert(istio::namespace_and_name(&service).1, service);
        }
        for name in service_names(&self.name, &canary.spec) {
            if let btree_map::Entry::Vacant(entry) = out.entry(name) {
                if let Some(service) = self.read(Kind::Service, entry.key()).await? {
                    entry.insert(service);
                }
            }
        }
        Ok(out)
    }

    fn doc(live: &Live, write: &istio::Write) -> Doc {
        let (namespace, name) = istio::namespace_and_name(&write.object);
        Doc {
            label: format!("{} {namespace}/{name}", write.kind.as_str()),
            current: live.get(write.kind, &write.object).cloned(),
            desired: (!write.delete).then(|| write.object.clone()),
            owned: write.owned.clone(),
        }
    }

    /// The API a document is written through, and the object it writes (or deletes).
    fn api_for(&self, doc: &Doc) -> Result<(Api<DynamicObject>, DynamicObject), Error> {
        let object = doc
            .desired
            .as_ref()
            .or(doc.current.as_ref())
            .ok_or_else(|| Error::Runtime(format!("{}: neither written nor deleted", doc.label)))?;
        let kind = Kind::ALL
            .into_iter()
            .find(|k| object["kind"] == k.as_str())
            .ok_or_else(|| Error::Runtime(format!("{}: not a kind stickyctl writes", doc.label)))?;
        let object: DynamicObject = serde_json::from_value(object.clone())
            .map_err(|e| Error::Runtime(format!("{}: {e}", doc.label)))?;
        let namespace = object
            .metadata
            .namespace
            .as_deref()
            .unwrap_or(&self.namespace);
        let api = Api::namespaced_with(self.client.clone(), namespace, &api_resource(kind));
        Ok((api, object))
    }

    /// The writes that take deleted rollout `canary` out of the live objects (see
    /// [`istio::teardown`]); empty once it is out.
    pub async fn teardown(&self, canary: &StickyCanary) -> Result<Vec<Doc>, Error> {
        let live = self.live(canary).await?;
        Ok(
            istio::teardown(&self.name, &self.namespace, &canary.spec, &live)
                .iter()
                .map(|write| Self::doc(&live, write))
                .collect(),
        )
    }

    /// Asks the API server to delete the rollout; with finalizers on it, it stays (marked
    /// for deletion) until they are removed. Deleting a rollout that is gone is not an error.
    pub async fn delete(&self) -> Result<(), Error> {
        match self
            .rollouts()
            .delete(&self.name, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Removes [`FINALIZER`] from the rollout, if it is still there, so its deletion completes.
    pub async fn remove_finalizer(&self) -> Result<(), Error> {
        let Some(mut canary) = self.load().await? else {
            return Ok(());
        };
        if !canary.finalizers().iter().any(|f| f == FINALIZER) {
            return Ok(());
        }
        canary.finalizers_mut().retain(|f| f != FINALIZER);
        match self.save(&canary).await {
            // The controller released it between our read and write, and the deletion completed.
            Err(Error::Kube(kube::Error::Api(status))) if status.code == 404 => Ok(()),
            saved => saved.map(drop),
        }
    }
}

/// The Services an HTTPRoute rollout `name` reads by name: its service, and every version's
/// Service, the user's (`routing.versionServices`) and the default `<service>-<version>` alike:
/// a default name taken by a Service that is not stickyctl's must be seen, so that it is
/// refused by name instead of created over (a 409 AlreadyExists, retried as a conflict).
fn service_names(name: &str, spec: &StickyCanarySpec) -> Vec<String> {
    let mut names = vec![istio::object_name(Kind::Service, name, spec)];
    let versions = spec.versions.iter().map(|v| spec.version_service(&v.name));
    for service in versions.chain(spec.routing.version_services.values().cloned()) {
        if !names.contains(&service) {
            names.push(service);
        }
    }
    names
}

/// Where the API serves `kind`.
fn api_resource(kind: Kind) -> ApiResource {
    let (group, version) = kind
        .api_version()
        .split_once('/')
        .unwrap_or(("", kind.api_version()));
    let plural = format!("{}s", kind.as_str().to_ascii_lowercase());
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind.as_str()),
        &plural,
    )
}

/// An API for the objects of `kind` in `namespace`, or in every namespace: what the controller
/// watches to notice hand edits of the objects it writes.
pub fn objects_api(
    client: Client,
    kind: Kind,
    namespace: Option<&str>,
) -> (Api<DynamicObject>, ApiResource) {
    let resource = api_resource(kind);
    let api = match namespace {
        Some(ns) => Api::namespaced_with(client, ns, &resource),
        None => Api::all_with(client, &resource),
    };
    (api, resource)
}

/// A 409 as [`Error::Conflict`] naming `what`; other errors as they are.
pub(crate) fn conflict_on_409(what: &str) -> impl FnOnce(kube::Error) -> Error + '_ {
    move |err| match &err {
        kube::Error::Api(status) if status.code == 409 => Error::Conflict(Changed::new(what)),
        _ => Error::Kube(err),
    }
}

/// The error of replacing `what` as it was read: a 409 (changed since) and a 404 (deleted
/// since) both mean the read is stale, so both are [`Error::Conflict`] and the caller
/// re-reads and renders again. A 404 is no rare case: the last rollout leaving a shared
/// WasmPlugin deletes it while another rollout, having read it, is joining it; that one must
/// create it anew, not fail.
pub fn stale_on_replace(what: &str) -> impl FnOnce(kube::Error) -> Error + '_ {
    move |err| match &err {
        kube::Error::Api(status) if status.code == 404 => Error::Conflict(Changed {
            object: what.to_owned(),
            deleted: true,
        }),
        _ => conflict_on_409(what)(err),
    }
}

/// The error of a dry-run write of `what`: the server refusing the object itself (422
/// Invalid: a schema or CEL rule of its CRD; 400 BadRequest: a body it cannot decode) is bad
/// input found before anything was written, so [`Error::Invalid`] with the server's own
/// words, which name the field and the rule; other errors as they are.
pub fn refused(what: &str) -> impl FnOnce(Error) -> Error + '_ {
    move |err| match &err {
        Error::Kube(kube::Error::Api(status)) if status.code == 422 || status.code == 400 => {
            Error::Invalid(format!(
                "the API server refuses {what}: {}; nothing was written",
                status.message
            ))
        }
        _ => err,
    }
}

impl Target for KubeTarget {
    async fn load(&self) -> Result<Option<StickyCanary>, Error> {
        Ok(self.rollouts().get_opt(&self.name).await?)
    }

    async fn save(&self, canary: &StickyCanary) -> Result<StickyCanary, Error> {
        let what = format!("StickyCanary {}/{}", self.namespace, self.name);
        let api = self.rollouts();
        let pp = PostParams::default();
        match canary.metadata.resource_version {
            None => api.create(&pp, canary).await,
            Some(_) => api.replace(&self.name, &pp, canary).await,
        }
        .map_err(conflict_on_409(&what))
    }

    async fn save_status(
        &self,
        canary: &StickyCanary,
        status: &StickyCanaryStatus,
    ) -> Result<(), Error> {
        let what = format!("StickyCanary {}/{} status", self.namespace, self.name);
        let mut next = canary.clone();
        next.status = Some(status.clone());
        self.rollouts()
            .replace_status(&self.name, &PostParams::default(), &next)
            .await
            .map(drop)
            .map_err(conflict_on_409(&what))
    }

    async fn plan(&self, canary: &StickyCanary) -> Result<Plan, Error> {
        let live = self.live(canary).await?;
        let seal = canary.metadata.uid.as_deref().map(seal::of_uid);
        let desired = istio::desired(
            &self.name,
            &self.namespace,
            &canary.spec,
            seal.as_deref(),
            &live,
        )?;
        let doc = |write: &istio::Write| Self::doc(&live, write);
        let route = desired
            .objects
            .iter()
            .find(|w| w.kind == Kind::HttpRoute)
            .map(|w| istio::namespace_and_name(&w.object).1);
        Ok(Plan {
            objects: desired.objects.iter().map(doc).collect(),
            writes: desired.writes.iter().map(doc).collect(),
            routing: Some((desired.api, route)),
        })
    }

    fn plugin_config(&self, canary: &StickyCanary) -> PluginConfig {
        let seal = canary.metadata.uid.as_deref().map(seal::of_uid);
        placement::plugin_config(
            &self.namespace,
            &self.name,
            &canary.spec,
            placement::Side::Gateway,
            seal.as_deref(),
        )
    }

    /// One Secret per namespace, [`OVERRIDE_TOKENS`], a key per rollout: the operator role
    /// reads and updates that Secret by name, and no other Secret of the namespace.
    async fn keep_override_token(
        &self,
        canary: &StickyCanary,
        token: &str,
    ) -> Result<String, Error> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let key = canary.name_any();
        let what = format!("Secret {}/{OVERRIDE_TOKENS}", self.namespace);
        crate::reconcile::retry_on_conflict(|| async {
            let mut secret = api
                .get_opt(OVERRIDE_TOKENS)
                .await?
                .unwrap_or_else(|| Secret {
                    metadata: kube::api::ObjectMeta {
                        name: Some(OVERRIDE_TOKENS.to_owned()),
                        labels: Some(BTreeMap::from([(
                            MANAGED_BY_LABEL.to_owned(),
                            MANAGED_BY.to_owned(),
                        )])),
                        ..Default::default()
                    },
                    ..Default::default()
                });
            secret
                .data
                .get_or_insert_with(BTreeMap::new)
                .insert(key.clone(), ByteString(token.as_bytes().to_vec()));
            let pp = PostParams::default();
            match secret.metadata.resource_version {
                None => api.create(&pp, &secret).await,
                Some(_) => api.replace(OVERRIDE_TOKENS, &pp, &secret).await,
            }
            .map(drop)
            .map_err(conflict_on_409(&what))
        })
        .await?;
        Ok(format!(
            "kubectl get secret {OVERRIDE_TOKENS} -n {} -o jsonpath='{{.data.{key}}}' | base64 -d",
            self.namespace
        ))
    }

    async fn check(&self, plan: &Plan) -> Result<(), Error> {
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        // Deletions are left out: the server validates nothing of an object it removes.
        for doc in plan.writes.iter().filter(|d| d.desired.is_some()) {
            let (api, object) = self.api_for(doc)?;
            let checked = match (&object.metadata.resource_version, &object.metadata.name) {
                (Some(_), Some(name)) => api
                    .replace(name, &dry_run, &object)
                    .await
                    .map_err(stale_on_replace(&doc.label)),
                _ => api
                    .create(&dry_run, &object)
                    .await
                    .map_err(conflict_on_409(&doc.label)),
            };
            checked.map_err(refused(&doc.label))?;
        }
        Ok(())
    }

    async fn write(&self, doc: &Doc) -> Result<(), Error> {
        let (api, object) = self.api_for(doc)?;
        let pp = PostParams::default();
        if doc.desired.is_none() && object.metadata.resource_version.is_none() {
            return Err(Error::Runtime(format!(
                "{}: deleting an object never read",
                doc.label
            )));
        }
        match (
            &doc.desired,
            &object.metadata.resource_version,
            &object.metadata.name,
        ) {
            // A deletion only of the object as it was read: anyone's change since is a conflict.
            (None, Some(version), Some(name)) => {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        resource_version: Some(version.clone()),
                        uid: None,
                    }),
                    ..DeleteParams::default()
                };
                match api.delete(name, &params).await {
                    Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                    other => other.map(drop),
                }
            }
            (Some(_), Some(_), Some(name)) => {
                return api
                    .replace(name, &pp, &object)
                    .await
                    .map(drop)
                    .map_err(stale_on_replace(&doc.label));
            }
            _ => api.create(&pp, &object).await.map(drop),
        }
        .map_err(conflict_on_409(&doc.label))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api_error(code: u16) -> kube::Error {
        let mut status = Status::failure("test", "Test");
        status.code = code;
        kube::Error::Api(status.boxed())
    }

    #[test]
    fn a_dry_run_the_server_refuses_is_invalid_input_naming_the_object_and_the_rule() {
        let what = "WasmPlugin istio-system/sticky-canary-gateway-istio-ingressgateway";
        let mut status = Status::failure(
            "spec.url: Invalid value: \"ftp://x\": url must have schema one of [http, https, file, oci]",
            "Invalid",
        );
        status.code = 422;
        let err = refused(what)(Error::Kube(kube::Error::Api(status.boxed())));
        assert_eq!(err.exit_code(), crate::error::EXIT_INVALID);
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("the API server refuses {what}: spec.url: "))
                && message.contains("url must have schema one of")
                && message.ends_with("nothing was written"),
            "{message}"
        );
        // A conflict is retried, and a server failure is no refusal of the input.
        assert!(matches!(
            refused(what)(Error::Conflict(Changed::new(what))),
            Error::Conflict(_)
        ));
        assert!(matches!(
            refused(what)(Error::Kube(api_error(500))),
            Error::Kube(_)
        ));
    }

    #[test]
    fn every_versions_service_is_read_by_name_the_default_names_too() {
        let mut spec = StickyCanarySpec::new("shop.prod.svc.cluster.local", "v1");
        spec.versions = vec![
            sticky_canary_filter::VersionWeight::new("v1", 90.0),
            sticky_canary_filter::VersionWeight::new("v2", 10.0),
        ];
        spec.routing
            .version_services
            .insert("v2".into(), "shop-canary".into());
        // A user-named Service of a version no longer routed is still read (it is theirs).
        spec.routing
            .version_services
            .insert("v0".into(), "shop-old".into());
        assert_eq!(
            service_names("shop", &spec),
            ["shop", "shop-v1", "shop-canary", "shop-old"]
        );
    }

    #[test]
    fn a_replace_of_an_object_deleted_since_it_was_read_is_a_conflict() {
        let what = "WasmPlugin istio-system/sticky-canary-gateway-istio-ingressgateway";
        assert!(
            matches!(stale_on_replace(what)(api_error(404)), Error::Conflict(c) if c.object == what && c.deleted)
        );
        assert!(matches!(
            stale_on_replace(what)(api_error(409)),
            Error::Conflict(_)
        ));
        assert!(matches!(
            stale_on_replace(what)(api_error(422)),
            Error::Kube(_)
        ));
        // Elsewhere a 404 stays what it is (a rollout that is gone, for one).
        assert!(matches!(
            conflict_on_409(what)(api_error(404)),
            Error::Kube(_)
        ));
    }
}
