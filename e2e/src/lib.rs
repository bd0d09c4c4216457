//! Harness for running sticky-canary against a real Envoy: processes, config files, clients.
