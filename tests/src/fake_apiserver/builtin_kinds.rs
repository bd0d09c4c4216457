//! Built-in Kubernetes kinds the fake serves besides the loaded CRDs: those the code under test
//! writes as a side effect: `events.k8s.io/v1` Event, which a controller records with kube-rs'
//! `Recorder` (a create, then merge patches of `series` for repeats), and core `v1` Secret,
//! where `stickyctl override token` keeps QA's token. Each is
//! described as a CRD document with the kind's OpenAPI schema, written from the Kubernetes API
//! reference, so it is routed, stored, watched and validated (strictly: unknown fields fail)
//! exactly like a custom resource.

use crate::crd::CrdSet;

/// `events.k8s.io/v1` Event, with the fields of the Kubernetes API reference.
const EVENT: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: events.events.k8s.io
spec:
  group: events.k8s.io
  names: {kind: Event, plural: events, listKind: EventList}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [eventTime]
          properties:
            apiVersion: {type: string}
            kind: {type: string}
            action: {type: string}
            deprecatedCount: {type: integer, format: int32}
            deprecatedFirstTimestamp: {type: string, format: date-time}
            deprecatedLastTimestamp: {type: string, format: date-time}
            deprecatedSource:
              type: object
              properties:
                component: {type: string}
                host: {type: string}
            eventTime: {type: string, format: date-time}
            note: {type: string, maxLength: 1024}
            reason: {type: string}
            regarding: &reference
              type: object
              properties:
                apiVersion: {type: string}
                fieldPath: {type: string}
                kind: {type: string}
                name: {type: string}
                namespace: {type: string}
                resourceVersion: {type: string}
                uid: {type: string}
            related: *reference
            reportingController: {type: string}
            reportingInstance: {type: string}
            series:
              type: object
              required: [count, lastObservedTime]
              properties:
                count: {type: integer, format: int32}
                lastObservedTime: {type: string, format: date-time}
            type: {type: string, enum: [Normal, Warning]}
"#;

/// Core `v1` Secret, with the fields of the Kubernetes API reference.
const SECRET: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: secrets
spec:
  group: ""
  names: {kind: Secret, plural: secrets, listKind: SecretList}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            apiVersion: {type: string}
            kind: {type: string}
            data: {type: object, additionalProperties: {type: string, format: byte}}
            immutable: {type: boolean}
            stringData: {type: object, additionalProperties: {type: string}}
            type: {type: string}
"#;

/// The built-in kinds, as a set the loaded CRDs are merged over.
///
/// # Panics
/// Never in practice: the definitions above are constants covered by the crate's tests.
pub fn builtin_kinds() -> CrdSet {
    let all = format!("{EVENT}\n---\n{SECRET}");
    CrdSet::from_yaml_str(&all, "built-in kinds").expect("the built-in kind definitions parse")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_validate_like_the_real_server() {
        let kinds = builtin_kinds();
        let event = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "shop.17f0", "namespace": "prod"},
            "eventTime": "2025-01-02T03:04:05.123456Z", "type": "Normal", "reason": "Applied",
            "action": "Reconcile", "note": "wrote 3 object(s)", "reportingController": "stickyctl",
            "reportingInstance": "host", "regarding": {"apiVersion": "stickycanary.io/v1alpha1",
            "kind": "StickyCanary", "name": "shop", "namespace": "prod", "uid": "u-1"},
            "series": {"count": 2, "lastObservedTime": "2025-01-02T03:04:06.000000Z"}});
        kinds.validate(&event).expect("a recorder's event is valid");
        let mut unknown = event.clone();
        unknown["regarding"]["colour"] = json!("red");
        assert!(kinds.validate(&unknown).is_err());
        let mut no_time = event;
        no_time.as_object_mut().unwrap().remove("eventTime");
        assert!(kinds.validate(&no_time).is_err());
    }
}
