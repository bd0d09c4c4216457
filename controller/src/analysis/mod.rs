//! TEMPORARY stand-in for the analysis module being built on branch `analysis`; replaced at merge.
#![allow(missing_docs)]
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisSpec {
    #[serde(default)]
    pub min_requests: u64,
}
impl AnalysisSpec {
    pub fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
pub struct Snapshot {
    pub canary_errors: u64,
    pub requests: u64,
}
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
pub struct Evidence {
    pub base: Snapshot,
    pub last: Snapshot,
}
impl Evidence {
    pub fn start(snapshot: &Snapshot, _spec: &AnalysisSpec, _plan: StepPlan) -> Evidence {
        Evidence {
            base: snapshot.clone(),
            last: snapshot.clone(),
        }
    }
    pub fn observe(&mut self, snapshot: &Snapshot, _spec: &AnalysisSpec) {
        self.last = snapshot.clone();
    }
}
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Outcome {
    Pass,
    Fail,
    Inconclusive,
}
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct Verdict {
    pub outcome: Outcome,
    pub reason: String,
}
pub fn judge(spec: &AnalysisSpec, e: &Evidence) -> Verdict {
    let n = e.last.requests - e.base.requests;
    let outcome = if e.last.canary_errors > e.base.canary_errors {
        Outcome::Fail
    } else if n < spec.min_requests {
        Outcome::Inconclusive
    } else {
        Outcome::Pass
    };
    Verdict {
        outcome,
        reason: format!("{outcome:?} on {n} requests"),
    }
}
pub struct StepPlan {
    pub weight: f64,
    pub judged_steps: usize,
}
