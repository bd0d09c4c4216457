//! Where the dashboard's rollouts live: every StickyCanary of a cluster (one namespace or
//! all), or the one rollout of a plain Envoy's directory. Thin: reads, and runs actions
//! through [`reconcile::advance_as`], as the CLI's commands do.

use std::path::PathBuf;

use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use api::StickyCanary;
use rollout::Input;
use runtime::error::Error;
use runtime::notify;
use runtime::reconcile::{self, Advanced, Requester};
use runtime::target::envoy_dir::EnvoyDir;
use runtime::target::kube::KubeTarget;
use runtime::target::Target;

/// The rollouts a dashboard shows.
#[derive(Clone)]
pub enum Source {
    /// A cluster's StickyCanaries, of one namespace or (`None`) all.
    Kube {
        /// The client.
        client: Client,
        /// The namespace, `None` for all.
        namespace: Option<String>,
    },
    /// The rollout of an Envoy directory; locked only while it is read or changed, so the
    /// CLI and a controller keep working next to the dashboard.
    EnvoyDir(PathBuf),
}

impl Source {
    /// Every rollout, as stored.
    pub async fn list(&self) -> Result<Vec<StickyCanary>, Error> {
        match self {
            Source::Kube { client, namespace } => {
                let api: Api<StickyCanary> = match namespace {
                    Some(namespace) => Api::namespaced(client.clone(), namespace),
                    None => Api::all(client.clone()),
                };
                Ok(api.list(&ListParams::default()).await?.items)
            }
            Source::EnvoyDir(dir) => Ok(EnvoyDir::open(dir)
                .await?
                .load()
                .await?
                .into_iter()
                .collect()),
        }
    }

    /// Runs `input` on rollout `id` for `requester`, then posts its notices to the rollout's
    /// webhook in the background, as the CLI's commands do.
    pub async fn act(
        &self,
        id: &str,
        input: &Input,
        requester: &Requester,
    ) -> Result<Advanced, Error> {
        let unknown = || Error::Invalid(format!("no rollout {id:?} here"));
        match self {
            Source::Kube { client, .. } => {
                let (namespace, name) = id.split_once('/').ok_or_else(unknown)?;
                let target = KubeTarget::new(client.clone(), namespace, name);
                act_on(&target, input, requester).await
            }
            Source::EnvoyDir(dir) => {
                let target = EnvoyDir::open(dir).await?;
                let current = target.load().await?.ok_or_else(unknown)?;
                if current.name_any() != id {
                    return Err(unknown());
                }
                act_on(&target, input, requester).await
            }
        }
    }
}

async fn act_on<T: Target>(
    target: &T,
    input: &Input,
    requester: &Requester,
) -> Result<Advanced, Error> {
    let done = reconcile::advance_as(target, input, requester).await?;
    if let Some(current) = target.load().await? {
        if let Err(why) = notify::dispatch(&notify::client(), &current, done.notices.clone()) {
            tracing::warn!(rollout = %notify::label(&current), "{why}");
        }
    }
    Ok(done)
}
