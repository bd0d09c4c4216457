//! Test support shared by the workspace-level tests: a fake Kubernetes API server that validates Istio objects against their CRD schemas.
