//! The loud-missing rule: without Istio's CRDs, or Gateway API's, a test skips loudly, and
//! under `CI=true` it fails. The only test in this binary, because it changes process-wide
//! environment variables.

use sticky_canary_tests::{all_crds, gateway_api_crds, istio_crds};

/// The panic message of `f`, which must panic.
fn panic_text<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> String {
    let message = std::panic::catch_unwind(f)
        .err()
        .expect("under CI=true a missing input must fail the test");
    message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn missing_crds_skip_outside_ci_and_fail_in_ci() {
    let gateway_api = std::env::var_os("GATEWAY_API_CRDS");
    std::env::set_var("ISTIO_CRDS", "/nonexistent/crds.gen.yaml");
    std::env::remove_var("CI");
    assert!(
        istio_crds().is_none(),
        "outside CI a missing file is a loud skip"
    );

    std::env::set_var("CI", "true");
    let text = panic_text(istio_crds);
    assert!(
        text.contains("/nonexistent/crds.gen.yaml") && text.contains("ISTIO_CRDS"),
        "{text}"
    );

    // Gateway API's, a directory or a file: the same rule.
    std::env::set_var("GATEWAY_API_CRDS", "/nonexistent/gateway-api/standard");
    std::env::remove_var("CI");
    assert!(
        gateway_api_crds().is_none(),
        "outside CI a missing directory is a loud skip"
    );
    std::env::set_var("CI", "true");
    let text = panic_text(gateway_api_crds);
    assert!(
        text.contains("/nonexistent/gateway-api/standard") && text.contains("GATEWAY_API_CRDS"),
        "{text}"
    );
    // A path that exists but holds no HTTPRoute is no set of Gateway API CRDs.
    let empty = tempfile::tempdir().unwrap();
    std::env::set_var("GATEWAY_API_CRDS", empty.path());
    let text = panic_text(gateway_api_crds);
    assert!(
        text.contains("defines no gateway.networking.k8s.io/v1 HTTPRoute"),
        "{text}"
    );

    // Found (as given, or at the Go module cache's default), HTTPRoute is served with the
    // rest: what the fake API server loads.
    match &gateway_api {
        Some(path) => std::env::set_var("GATEWAY_API_CRDS", path),
        None => std::env::remove_var("GATEWAY_API_CRDS"),
    }
    // (Outside CI a missing one was a loud skip above; every fake-API test fails on it in CI.)
    std::env::remove_var("CI");
    if let Some(crds) = gateway_api_crds() {
        assert!(crds.defines("gateway.networking.k8s.io/v1", "HTTPRoute"));
        assert!(crds.defines("gateway.networking.k8s.io/v1", "Gateway"));
    }
    std::env::set_var("ISTIO_CRDS", "/nonexistent/crds.gen.yaml");
    assert!(all_crds().is_none(), "the fake's CRDs need Istio's too");
}
