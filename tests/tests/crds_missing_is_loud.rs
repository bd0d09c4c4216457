//! The loud-missing rule: without Istio's CRDs a test skips loudly, and under `CI=true` it fails.
//! The only test in this binary, because it changes process-wide environment variables.

use sticky_canary_tests::istio_crds;

#[test]
fn missing_crds_skip_outside_ci_and_fail_in_ci() {
    std::env::set_var("ISTIO_CRDS", "/nonexistent/crds.gen.yaml");
    std::env::remove_var("CI");
    assert!(
        istio_crds().is_none(),
        "outside CI a missing file is a loud skip"
    );

    std::env::set_var("CI", "true");
    let outcome = std::panic::catch_unwind(istio_crds);
    let message = outcome.expect_err("under CI=true a missing file must fail the test");
    let text = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        text.contains("/nonexistent/crds.gen.yaml") && text.contains("ISTIO_CRDS"),
        "{text}"
    );
}
