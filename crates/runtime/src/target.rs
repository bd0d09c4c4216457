//! Where a rollout lives and what it renders to: a Kubernetes cluster or a plain Envoy's
//! config directory. Targets are thin: they read and write; deciding and rendering is pure.

use std::future::Future;

use serde_json::Value;
use sticky_canary_filter::PluginConfig;

use crate::error::Error;
use api::{RoutingApi, StickyCanary, StickyCanaryStatus};

pub mod envoy_dir;
pub mod kube;
pub mod place;

/// One object the rollout renders to, as it is and as it should be.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    /// What it is, e.g. `VirtualService prod/shop` or `lds.json`.
    pub label: String,
    /// The live object, `None` when absent.
    pub current: Option<Value>,
    /// The object to write; `None` to delete it.
    pub desired: Option<Value>,
    /// The part of it the rollout owns, which the rollout's status hash covers.
    pub owned: Value,
}

impl Doc {
    /// Whether the live object already is the desired one.
    pub fn in_sync(&self) -> bool {
        render::same_opt(self.current.as_ref(), self.desired.as_ref())
    }
}

/// The rendered state of a rollout against its target.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Every object in its final desired form, for diffs, status and `render`.
    pub objects: Vec<Doc>,
    /// The writes that bring the live objects there, in a safe order; empty when in sync.
    pub writes: Vec<Doc>,
    /// On a cluster, the API that carries the routes and the HTTPRoute rendered into, as
    /// found: what `init` records in the spec, so neither changes under the rollout.
    pub routing: Option<(RoutingApi, Option<String>)>,
}

/// A place a rollout is stored and applied.
pub trait Target {
    /// The rollout, `None` when it does not exist yet.
    fn load(&self) -> impl Future<Output = Result<Option<StickyCanary>, Error>> + Send;
    /// Creates or replaces the rollout (spec and metadata); [`Error::Conflict`] when it
    /// changed since it was loaded.
    fn save(
        &self,
        canary: &StickyCanary,
    ) -> impl Future<Output = Result<StickyCanary, Error>> + Send;
    /// Replaces the rollout's status; [`Error::Conflict`] when it changed since it was loaded.
    fn save_status(
        &self,
        canary: &StickyCanary,
        status: &StickyCanaryStatus,
    ) -> impl Future<Output = Result<(), Error>> + Send;
    /// Reads the live objects and renders `canary` against them; refuses (before any write)
    /// what cannot be rendered.
    fn plan(&self, canary: &StickyCanary) -> impl Future<Output = Result<Plan, Error>> + Send;
    /// The filter configuration the proxies run for `canary` here (what `explain` decides with).
    fn plugin_config(&self, canary: &StickyCanary) -> PluginConfig;
    /// Keeps the QA override token of rollout `canary` where the people who may use it can
    /// read it (the rollout keeps only its digest), replacing an earlier one; returns how to
    /// read it back.
    fn keep_override_token(
        &self,
        canary: &StickyCanary,
        token: &str,
    ) -> impl Future<Output = Result<String, Error>> + Send;
    /// Writes one document of a plan; [`Error::Conflict`] when it changed since it was read.
    fn write(&self, doc: &Doc) -> impl Future<Output = Result<(), Error>> + Send;
    /// Asks the store whether it takes every write of `plan`, writing nothing, so that a
    /// refusal (a Kubernetes API server's schema or CEL rule, which rendering cannot know
    /// all of) comes before the first write and a plan is never applied in part:
    /// [`Error::Invalid`] naming the object and the rule. Targets that check nothing beyond
    /// rendering accept every plan.
    fn check(&self, plan: &Plan) -> impl Future<Output = Result<(), Error>> + Send {
        let _ = plan;
        async { Ok(()) }
    }
}
