//! Where an automatic rollout's looks come from: the [`Metrics`] the controller reads, and
//! its Prometheus implementation. Tests hand in their own.

use std::future::Future;

use kube::ResourceExt;

use crate::error::Error;
use analysis::{LookError, Snapshot};
use api::StickyCanary;
use prometheus::{Prometheus, RolloutRef};

/// The metrics of a rollout's versions.
pub trait Metrics: Sync {
    /// Both versions' raw counters now, or why they cannot be read.
    fn snapshot(
        &self,
        canary: &StickyCanary,
    ) -> impl Future<Output = Result<Snapshot, LookError>> + Send;
}

/// What the queries of `canary` are about; `None` without a live canary.
pub fn rollout_ref(canary: &StickyCanary) -> Option<RolloutRef> {
    let spec = &canary.spec;
    Some(RolloutRef {
        name: canary.name_any(),
        namespace: canary.namespace().unwrap_or_default(),
        service: spec.service.clone(),
        stable: spec.stable()?.name.clone(),
        canary: spec.versions.get(1)?.name.clone(),
        version_services: spec.routing.version_services.clone(),
    })
}

impl Metrics for Prometheus {
    async fn snapshot(&self, canary: &StickyCanary) -> Result<Snapshot, LookError> {
        let rollout = rollout_ref(canary).ok_or(LookError::NoCanary)?;
        Prometheus::snapshot(
            self,
            &canary.spec.analysis,
            &rollout,
            jiff::Timestamp::now(),
        )
        .await
        .map_err(LookError::from)
    }
}

/// Refuses, before anything is written, an automatic rollout this Prometheus cannot judge: an
/// interval shorter than its scrape interval, a query it rejects or a metric it has no series
/// of (see [`Prometheus::validate_queries`]; without a canary yet, only the interval).
pub async fn check(prometheus: &Prometheus, canary: &StickyCanary) -> Result<(), Error> {
    if let Some(scrape) = prometheus.scrape_interval().await? {
        rollout::auto::check_interval(&canary.spec, scrape).map_err(Error::Invalid)?;
    }
    if let Some(rollout) = rollout_ref(canary) {
        prometheus
            .validate_queries(&canary.spec.analysis, &rollout, jiff::Timestamp::now())
            .await?;
    }
    Ok(())
}
