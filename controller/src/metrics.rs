//! TEMPORARY: the Prometheus-backed [`Metrics`] lands with the analysis branch.
use crate::analysis::Snapshot;
use crate::model::StickyCanary;
use crate::reconcile::Metrics;

/// Reads the looks of automatic rollouts from Prometheus.
pub struct PrometheusMetrics {
    /// Base URL.
    pub url: String,
}

impl Metrics for PrometheusMetrics {
    async fn snapshot(&self, _canary: &StickyCanary) -> Result<Snapshot, String> {
        Err(format!("{}: not wired yet", self.url))
    }
}
