//! A Deployment as `DEPLOYMENT_REPLICAS` and `DEPLOYMENT_SINGLETON` see it: its replicas as
//! asked and as running, and the write of a new count (through the `scale` subresource, with
//! the resourceVersion of the read).

use serde_json::json;

use super::naming::Names;
use super::{FieldChange, Object, ObjectKind, Refusal, Write};

/// One Deployment, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The resourceVersion of the read, which the scale write carries.
    pub resource_version: String,
    /// `spec.replicas`: how many pods it asks for.
    pub replicas: i32,
    /// `status.replicas`: the pods its controller counts.
    pub status_replicas: i32,
    /// Whether its controller has seen its latest spec (`status.observedGeneration` ≥
    /// `metadata.generation`), so the status speaks of that spec.
    pub observed: bool,
    /// Pods its selector matches, in any phase (terminating too).
    pub pods: usize,
}

impl Workload {
    /// The Deployment's label.
    pub fn label(&self) -> String {
        Object::new(ObjectKind::DeploymentScale, &self.namespace, &self.name).label()
    }

    /// Whether any pod of it may run or start: asked for, counted or present, or a spec its
    /// controller has not acted on yet.
    pub fn may_run(&self) -> bool {
        self.replicas > 0 || self.status_replicas > 0 || self.pods > 0 || !self.observed
    }

    /// The write of `replicas` to its `scale` subresource.
    pub fn scale_to(&self, replicas: i32) -> Write {
        Write {
            object: Object::new(ObjectKind::DeploymentScale, &self.namespace, &self.name),
            desired: json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": self.name, "namespace": self.namespace,
                             "resourceVersion": self.resource_version},
                "spec": {"replicas": replicas}}),
            changes: vec![FieldChange::new(
                "replicas",
                self.replicas.to_string(),
                replicas.to_string(),
            )],
        }
    }
}

/// Both Deployments of an entry, or a refusal naming the missing one.
pub fn both<'a>(
    names: &Names,
    stable: Option<&'a Workload>,
    canary: Option<&'a Workload>,
) -> Result<(&'a Workload, &'a Workload), Refusal> {
    let missing = |field: &'static str, name: &str, role: &str| {
        Refusal::new(
            field,
            format!(
                "{} (the {role} release's) does not exist",
                Object::new(ObjectKind::DeploymentScale, &names.namespace, name).label()
            ),
        )
    };
    let stable = stable.ok_or_else(|| missing("stable", &names.stable, "stable"))?;
    let canary = canary.ok_or_else(|| missing("canary", &names.canary, "canary"))?;
    Ok((stable, canary))
}

#[cfg(test)]
pub(crate) fn workload(name: &str, replicas: i32, status_replicas: i32, pods: usize) -> Workload {
    Workload {
        namespace: "prod".into(),
        name: name.into(),
        resource_version: "5".into(),
        replicas,
        status_replicas,
        observed: true,
        pods,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scale_write_carries_the_read_and_the_new_count() {
        let w = workload("worker", 4, 4, 4);
        let write = w.scale_to(1);
        assert_eq!(write.object.label(), "Deployment prod/worker");
        assert_eq!(write.desired["metadata"]["resourceVersion"], "5");
        assert_eq!(write.desired["spec"]["replicas"], 1);
        assert_eq!(write.changes, [FieldChange::new("replicas", "4", "1")]);
    }

    #[test]
    fn may_run_until_asked_for_none_and_seen_with_none() {
        let cases = [
            (workload("a", 1, 1, 1), true),
            (workload("a", 0, 1, 1), true),
            (workload("a", 0, 0, 1), true),
            (workload("a", 0, 1, 0), true),
            (workload("a", 1, 0, 0), true),
            (
                Workload {
                    observed: false,
                    ..workload("a", 0, 0, 0)
                },
                true,
            ),
            (workload("a", 0, 0, 0), false),
        ];
        for (w, expected) in cases {
            assert_eq!(w.may_run(), expected, "{w:?}");
        }
    }
}
