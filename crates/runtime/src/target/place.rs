//! Where a front end's rollouts live, as its flags say: a cluster or a plain Envoy's
//! directory. The one place that choice is made, and the one way to open a rollout's target
//! there, so the CLI, the dashboard and the plan file cannot drift apart on it.

use std::path::{Path, PathBuf};

use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use sticky_canary_filter::PluginConfig;

use super::envoy_dir::EnvoyDir;
use super::kube::{self as kube_target, KubeTarget};
use super::{Doc, Plan, Target};
use crate::error::Error;
use api::{StickyCanary, StickyCanaryStatus};

/// Where the rollouts live.
#[derive(Clone)]
pub enum Place {
    /// A cluster's StickyCanaries.
    Kube {
        /// The client.
        client: Client,
        /// `--namespace`. Without it, a rollout is looked for in the client's default
        /// namespace, and a listing (the dashboard) covers every namespace.
        namespace: Option<String>,
    },
    /// The one rollout of an Envoy config directory; locked only while a target opened on it
    /// lives, so the CLI, a controller and a dashboard take turns.
    EnvoyDir(PathBuf),
}

impl Place {
    /// The place the global flags name: the directory when given, else the cluster of
    /// `kubeconfig` (or of the usual places).
    pub async fn connect(
        envoy_dir: Option<&Path>,
        kubeconfig: Option<&Path>,
        namespace: Option<&str>,
    ) -> Result<Self, Error> {
        Ok(match envoy_dir {
            Some(dir) => Place::EnvoyDir(dir.to_owned()),
            None => Place::Kube {
                client: kube_target::client(kubeconfig).await?.0,
                namespace: namespace.map(str::to_owned),
            },
        })
    }

    /// The namespace of a rollout named without one: `--namespace`, else the client's
    /// default; `None` in a directory, whose rollout has none.
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Place::Kube { client, namespace } => {
                Some(namespace.as_deref().unwrap_or(client.default_namespace()))
            }
            Place::EnvoyDir(_) => None,
        }
    }

    /// Every rollout here, as stored: of `--namespace`, or of every namespace.
    pub async fn list(&self) -> Result<Vec<StickyCanary>, Error> {
        match self {
            Place::Kube { client, namespace } => {
                let api: Api<StickyCanary> = match namespace {
                    Some(namespace) => Api::namespaced(client.clone(), namespace),
                    None => Api::all(client.clone()),
                };
                Ok(api.list(&ListParams::default()).await?.items)
            }
            Place::EnvoyDir(dir) => Ok(EnvoyDir::open(dir)
                .await?
                .load()
                .await?
                .into_iter()
                .collect()),
        }
    }

    /// The target of rollout `name` in `namespace` (default: [`Self::namespace`]); without a
    /// name, of the only rollout there. A directory holds one rollout: it is opened whatever
    /// its name when none is given, and a name that is not its rollout's is refused.
    pub async fn open(&self, namespace: Option<&str>, name: Option<&str>) -> Result<Opened, Error> {
        match self {
            Place::Kube { client, .. } => {
                let namespace = namespace.or(self.namespace()).unwrap_or_default();
                let name = match name {
                    Some(name) => name.to_owned(),
                    None => only_rollout(client, namespace).await?,
                };
                Ok(Opened::Kube(KubeTarget::new(
                    client.clone(),
                    namespace,
                    &name,
                )))
            }
            Place::EnvoyDir(dir) => {
                let target = EnvoyDir::open(dir).await?;
                if let (Some(name), Some(stored)) = (name, target.load().await?) {
                    if stored.name_any() != name {
                        return Err(Error::Invalid(format!(
                            "rollout: the Envoy directory holds rollout {:?}, not {name:?}",
                            stored.name_any()
                        )));
                    }
                }
                Ok(Opened::EnvoyDir(target))
            }
        }
    }

    /// The target of the rollout labelled `label` ([`crate::notify::label`]): `namespace/name` in a
    /// cluster; in a directory, its rollout's name, whatever it holds (a `/` too).
    pub async fn open_label(&self, label: &str) -> Result<Opened, Error> {
        match self {
            Place::Kube { .. } => {
                let (namespace, name) = label
                    .split_once('/')
                    .ok_or_else(|| Error::Invalid(format!("no rollout {label:?} here")))?;
                self.open(Some(namespace), Some(name)).await
            }
            Place::EnvoyDir(_) => self.open(None, Some(label)).await,
        }
    }
}

/// The name of the only rollout in `namespace`; refused when there is none, or several.
async fn only_rollout(client: &Client, namespace: &str) -> Result<String, Error> {
    let api: Api<StickyCanary> = Api::namespaced(client.clone(), namespace);
    let names: Vec<String> = api
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::Invalid(format!(
            "no StickyCanary in namespace {namespace}; run `stickyctl init` first"
        ))),
        many => Err(Error::Invalid(format!(
            "several rollouts in namespace {namespace} ({}); pass --name",
            many.join(", ")
        ))),
    }
}

/// A rollout's target, opened by [`Place::open`]: whichever it is, front ends act on it the
/// same way.
pub enum Opened {
    /// A rollout of a cluster.
    Kube(KubeTarget),
    /// The rollout of a locked Envoy directory.
    EnvoyDir(EnvoyDir),
}

impl Target for Opened {
    async fn load(&self) -> Result<Option<StickyCanary>, Error> {
        match self {
            Opened::Kube(t) => t.load().await,
            Opened::EnvoyDir(t) => t.load().await,
        }
    }

    async fn save(&self, canary: &StickyCanary) -> Result<StickyCanary, Error> {
        match self {
            Opened::Kube(t) => t.save(canary).await,
            Opened::EnvoyDir(t) => t.save(canary).await,
        }
    }

    async fn save_status(
        &self,
        canary: &StickyCanary,
        status: &StickyCanaryStatus,
    ) -> Result<(), Error> {
        match self {
            Opened::Kube(t) => t.save_status(canary, status).await,
            Opened::EnvoyDir(t) => t.save_status(canary, status).await,
        }
    }

    async fn plan(&self, canary: &StickyCanary) -> Result<Plan, Error> {
        match self {
            Opened::Kube(t) => t.plan(canary).await,
            Opened::EnvoyDir(t) => t.plan(canary).await,
        }
    }

    fn plugin_config(&self, canary: &StickyCanary) -> PluginConfig {
        match self {
            Opened::Kube(t) => t.plugin_config(canary),
            Opened::EnvoyDir(t) => t.plugin_config(canary),
        }
    }

    async fn keep_override_token(
        &self,
        canary: &StickyCanary,
        token: &str,
    ) -> Result<String, Error> {
        match self {
            Opened::Kube(t) => t.keep_override_token(canary, token).await,
            Opened::EnvoyDir(t) => t.keep_override_token(canary, token).await,
        }
    }

    async fn write(&self, doc: &Doc) -> Result<(), Error> {
        match self {
            Opened::Kube(t) => t.write(doc).await,
            Opened::EnvoyDir(t) => t.write(doc).await,
        }
    }

    async fn check(&self, plan: &Plan) -> Result<(), Error> {
        match self {
            Opened::Kube(t) => t.check(plan).await,
            Opened::EnvoyDir(t) => t.check(plan).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::envoy_dir::ROLLOUT_FILE;
    use api::StickyCanarySpec;

    /// A directory's rollout is opened by its whole label, a `/` in its name included, and
    /// by no other.
    #[tokio::test]
    async fn a_directory_opens_its_rollout_by_its_whole_name() {
        let dir = tempfile::tempdir().unwrap();
        let stored = StickyCanary::new("shop/a", StickyCanarySpec::new("shop", "v1"));
        let text = serde_json::to_string(&stored).unwrap();
        std::fs::write(dir.path().join(ROLLOUT_FILE), text).unwrap();
        let place = Place::EnvoyDir(dir.path().to_owned());
        let opened = place.open_label("shop/a").await.unwrap();
        let loaded = opened.load().await.unwrap().map(|c| c.name_any());
        assert_eq!(loaded.as_deref(), Some("shop/a"));
        drop(opened);
        let refused = place.open_label("a").await.err().unwrap();
        assert_eq!(
            refused.to_string(),
            "rollout: the Envoy directory holds rollout \"shop/a\", not \"a\""
        );
    }
}
