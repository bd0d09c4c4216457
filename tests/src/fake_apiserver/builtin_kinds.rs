//! Built-in Kubernetes kinds the fake serves besides the loaded CRDs: those the code under test
//! writes as a side effect: `events.k8s.io/v1` Event, which a controller records with kube-rs'
//! `Recorder` (a create, then merge patches of `series` for repeats), core `v1` Secret,
//! where `stickyctl override token` keeps QA's token, and core `v1` Service, which the
//! HTTPRoute API reads (the parent) and writes (one per version). Each is
//! described as a CRD document with the kind's OpenAPI schema, written from the Kubernetes API
//! reference, so it is routed, stored, watched and validated (strictly: unknown fields fail)
//! exactly like a custom resource. A Service also gets what the real server's registry does
//! to it ([`service_defaults`]): its defaults, a cluster IP allocated on create and kept by
//! an update that leaves it out, and a changed cluster IP refused (immutable).

use serde_json::{json, Value};

use crate::crd::CrdSet;
use crate::field_error::{FieldError, FieldErrorKind, ValidationErrors};

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

/// Core `v1` Service, with the fields of the Kubernetes API reference (`status` has its own
/// subresource, as on the real server).
const SERVICE: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: services
spec:
  group: ""
  names: {kind: Service, plural: services, listKind: ServiceList}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      schema:
        openAPIV3Schema:
          type: object
          properties:
            apiVersion: {type: string}
            kind: {type: string}
            spec:
              type: object
              properties:
                allocateLoadBalancerNodePorts: {type: boolean}
                clusterIP: {type: string}
                clusterIPs: {type: array, items: {type: string}, x-kubernetes-list-type: atomic}
                externalIPs: {type: array, items: {type: string}}
                externalName: {type: string}
                externalTrafficPolicy: {type: string, enum: [Cluster, Local]}
                healthCheckNodePort: {type: integer, format: int32}
                internalTrafficPolicy: {type: string, enum: [Cluster, Local]}
                ipFamilies:
                  type: array
                  items: {type: string, enum: [IPv4, IPv6]}
                  x-kubernetes-list-type: atomic
                ipFamilyPolicy: {type: string, enum: [SingleStack, PreferDualStack, RequireDualStack]}
                loadBalancerClass: {type: string}
                loadBalancerIP: {type: string}
                loadBalancerSourceRanges: {type: array, items: {type: string}}
                ports:
                  type: array
                  x-kubernetes-list-type: map
                  x-kubernetes-list-map-keys: [port, protocol]
                  items:
                    type: object
                    required: [port]
                    properties:
                      appProtocol: {type: string}
                      name: {type: string}
                      nodePort: {type: integer, format: int32}
                      port: {type: integer, format: int32, minimum: 1, maximum: 65535}
                      protocol: {type: string, enum: [TCP, UDP, SCTP]}
                      targetPort: {x-kubernetes-int-or-string: true}
                publishNotReadyAddresses: {type: boolean}
                selector:
                  type: object
                  additionalProperties: {type: string}
                  x-kubernetes-map-type: atomic
                sessionAffinity: {type: string, enum: [ClientIP, None]}
                sessionAffinityConfig:
                  type: object
                  properties:
                    clientIP:
                      type: object
                      properties:
                        timeoutSeconds: {type: integer, format: int32}
                trafficDistribution: {type: string}
                type: {type: string, enum: [ClusterIP, NodePort, LoadBalancer, ExternalName]}
            status:
              type: object
              properties:
                conditions:
                  type: array
                  items: {type: object, x-kubernetes-preserve-unknown-fields: true}
                loadBalancer: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

/// The built-in kinds, as a set the loaded CRDs are merged over.
///
/// # Panics
/// Never in practice: the definitions above are constants covered by the crate's tests.
pub fn builtin_kinds() -> CrdSet {
    let all = format!("{EVENT}\n---\n{SECRET}\n---\n{SERVICE}");
    CrdSet::from_yaml_str(&all, "built-in kinds").expect("the built-in kind definitions parse")
}

/// Whether `group`/`kind` is the core Service, which [`service_defaults`] applies to.
pub fn is_service(group: &str, kind: &str) -> bool {
    group.is_empty() && kind == "Service"
}

/// What the real server's Service registry does to a Service written to the main resource:
/// `type: ClusterIP`, `sessionAffinity: None`, a port's `protocol: TCP` and `targetPort` (its
/// `port`) when absent; for a Service with a cluster IP (any type but ExternalName), on
/// create `clusterIP`/`clusterIPs` allocated (from `serial`, unique per write) with
/// `ipFamilies: [IPv4]`, `ipFamilyPolicy: SingleStack`, `internalTrafficPolicy: Cluster`; on
/// an update that leaves them out, the current ones kept; a different `clusterIP` refused as
/// immutable (422). The object is the whole write, `current` the stored one.
pub fn service_defaults(
    object: &mut Value,
    current: Option<&Value>,
    serial: u64,
) -> Result<(), ValidationErrors> {
    let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    spec.entry("type").or_insert_with(|| json!("ClusterIP"));
    spec.entry("sessionAffinity")
        .or_insert_with(|| json!("None"));
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            port.entry("protocol").or_insert_with(|| json!("TCP"));
            if let Some(number) = port.get("port").cloned() {
                port.entry("targetPort").or_insert(number);
            }
        }
    }
    if spec.get("type") == Some(&json!("ExternalName")) {
        return Ok(());
    }
    let current_spec = current.and_then(|c| c.get("spec"));
    let current_ip = current_spec
        .and_then(|s| s.get("clusterIP"))
        .and_then(Value::as_str)
        .filter(|ip| !ip.is_empty());
    let given_ip = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .filter(|ip| !ip.is_empty())
        .map(str::to_owned);
    match (current_ip, given_ip) {
        (Some(current_ip), Some(given)) if given != current_ip => {
            return Err(ValidationErrors(vec![FieldError::new(
                "spec.clusterIP",
                FieldErrorKind::Invalid,
                format!("Invalid value: {given:?}: field is immutable"),
            )]));
        }
        (Some(_), _) => {
            // Left out by the update: the allocated ones stay, as the registry keeps them.
            for field in [
                "clusterIP",
                "clusterIPs",
                "ipFamilies",
                "ipFamilyPolicy",
                "internalTrafficPolicy",
            ] {
                if let Some(value) = current_spec.and_then(|s| s.get(field)) {
                    spec.entry(field).or_insert_with(|| value.clone());
                }
            }
        }
        (None, given) => {
            let ip = given
                .unwrap_or_else(|| format!("10.96.{}.{}", (serial / 250) % 250, serial % 250 + 1));
            spec.insert("clusterIP".into(), json!(ip));
            spec.entry("clusterIPs").or_insert_with(|| json!([ip]));
            spec.entry("ipFamilies").or_insert_with(|| json!(["IPv4"]));
            spec.entry("ipFamilyPolicy")
                .or_insert_with(|| json!("SingleStack"));
            spec.entry("internalTrafficPolicy")
                .or_insert_with(|| json!("Cluster"));
        }
    }
    Ok(())
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

    #[test]
    fn services_validate_and_are_defaulted_like_the_real_server() {
        let kinds = builtin_kinds();
        let mut service = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "shop", "namespace": "prod", "labels": {"app": "shop"}},
            "spec": {"selector": {"app": "shop"},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}});
        kinds.validate(&service).expect("a user's Service is valid");
        service_defaults(&mut service, None, 7).unwrap();
        kinds
            .validate(&service)
            .expect("a defaulted Service is valid");
        assert_eq!(
            service["spec"],
            json!({"selector": {"app": "shop"}, "type": "ClusterIP", "sessionAffinity": "None",
                   "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
                   "clusterIP": "10.96.0.8", "clusterIPs": ["10.96.0.8"],
                   "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                   "internalTrafficPolicy": "Cluster"})
        );
        // An update without the cluster IP keeps it; one changing it is refused.
        let mut update = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "shop", "namespace": "prod"},
            "spec": {"selector": {"app": "shop"}, "ports": [{"port": 80}]}});
        service_defaults(&mut update, Some(&service), 9).unwrap();
        assert_eq!(update["spec"]["clusterIP"], "10.96.0.8");
        assert_eq!(update["spec"]["ports"][0]["targetPort"], 80);
        update["spec"]["clusterIP"] = json!("10.96.0.99");
        let err = service_defaults(&mut update, Some(&service), 10).unwrap_err();
        assert_eq!(err.0[0].path, "spec.clusterIP");
        let mut unknown = service.clone();
        unknown["spec"]["ports"][0]["colour"] = json!("red");
        assert!(kinds.validate(&unknown).is_err());
        let mut duplicate = service;
        duplicate["spec"]["ports"] = json!([{"port": 80, "protocol": "TCP"},
                                            {"port": 80, "protocol": "TCP"}]);
        assert!(kinds.validate(&duplicate).is_err());
    }
}
