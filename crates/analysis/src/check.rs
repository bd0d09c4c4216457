//! The vocabulary of a verdict: which check, what it counted and what it concluded. Shared by
//! the statistical checks ([`crate::verdict`]) and the data-plane check ([`crate::dataplane`]).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a check or a verdict concluded.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No evidence against the canary, with enough evidence.
    Pass,
    /// The canary is worse, or the step cannot go on.
    Fail,
    /// Not enough evidence yet to pass.
    Inconclusive,
}

/// One arm's counts behind a check: requests and the events the check counts (5xx, slow
/// requests, fresh decisions).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ArmCounts {
    /// Requests of the arm.
    pub requests: u64,
    /// Events of the arm.
    pub events: u64,
}

/// Which check of a verdict. The status keeps it as the camel-case name (`maxErrorRate`), the
/// name people read in reasons and `stickyctl status` too.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum CheckName {
    /// The sequential test of the canary's 5xx against stable's.
    Errors,
    /// The sequential test of the canary's slow requests against stable's.
    Latency,
    /// The guard on the canary's own 5xx rate.
    MaxErrorRate,
    /// The guard on the canary's own latency quantile.
    MaxP99,
    /// The minimum of requests before a step may pass.
    Evidence,
    /// Whether the proxies applied the weight ([`dataplane`]).
    DataPlane,
    /// Whether every query that must answer did (the filter's series, stable's requests).
    Queries,
}

impl CheckName {
    /// The name as the status writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckName::Errors => "errors",
            CheckName::Latency => "latency",
            CheckName::MaxErrorRate => "maxErrorRate",
            CheckName::MaxP99 => "maxP99",
            CheckName::Evidence => "evidence",
            CheckName::DataPlane => "dataPlane",
            CheckName::Queries => "queries",
        }
    }
}

impl std::fmt::Display for CheckName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One check of a verdict, with what it was computed from.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// `errors`, `latency`, `maxErrorRate`, `maxP99`, `evidence`, `dataPlane` or `queries`.
    // A plain string in the CRD, as it was before the names were typed: a schema that lists
    // them would be a CRD change for no gain (only the controller writes them).
    #[schemars(with = "String")]
    pub name: CheckName,
    /// The canary's counts.
    pub canary: ArmCounts,
    /// Stable's counts.
    pub stable: ArmCounts,
    /// The canary's measured share of requests.
    pub share: f64,
    /// The number compared with `threshold`: the test statistic O for `errors` and
    /// `latency`, the canary's rate for the guards, its requests for `evidence`, the
    /// distance of the new clients' share from the weight for `dataPlane`, the queries that
    /// returned nothing for `queries`.
    pub statistic: f64,
    /// Where the check's outcome turns: 1/α, the guard's limit, the minimum of requests,
    /// the tolerance, 0 unanswered queries.
    pub threshold: f64,
    /// What the check concluded.
    pub outcome: Outcome,
    /// The check in words, with its numbers.
    pub reason: String,
}

/// `0.049` as `4.9%`.
pub(crate) fn percent(share: f64) -> String {
    let pct = share * 100.0;
    if pct != 0.0 && pct.abs() < 0.1 {
        format!("{pct:.2}%")
    } else {
        format!("{pct:.1}%")
    }
}
