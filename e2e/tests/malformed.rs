//! Bad requests never fail: malformed, oversized, non-UTF-8 or unknown cookie and header
//! values count as absent, and the request is served by a valid version.

mod common;

use sticky_canary_e2e::browser::Dest;
use sticky_canary_e2e::stack::weights;

#[test]
fn malformed_cookies_and_headers_never_fail_the_request() {
    let stack = common::start(&weights(&[("v1", 50.0), ("v2", 50.0)]));
    let oversized = format!("sticky-version={}", "v".repeat(8 * 1024));
    let oversized_id = format!("sticky-id={}", "a".repeat(4 * 1024));
    let many = (0..300)
        .map(|i| format!("c{i}=x"))
        .collect::<Vec<_>>()
        .join("; ");
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("garbage", "cookie", b";;;==;=x; ; sticky-version".to_vec()),
        ("empty value", "cookie", b"sticky-version=".to_vec()),
        ("unknown version", "cookie", b"sticky-version=v9".to_vec()),
        ("space inside", "cookie", b"sticky-version=v2 x".to_vec()),
        (
            "unbalanced quote",
            "cookie",
            b"sticky-version=\"v2".to_vec(),
        ),
        (
            "non-UTF-8 cookie",
            "cookie",
            b"sticky-version=\xff\xfe; sticky-id=\xc3\x28".to_vec(),
        ),
        ("oversized version", "cookie", oversized.into_bytes()),
        ("oversized id", "cookie", oversized_id.into_bytes()),
        ("300 other cookies", "cookie", many.into_bytes()),
        ("non-UTF-8 override", "x-sticky-override", b"v\xff".to_vec()),
        ("unknown override", "x-sticky-override", b"v9".to_vec()),
        (
            "non-UTF-8 version header",
            "x-sticky-version",
            b"\xe2\x82".to_vec(),
        ),
        (
            "non-UTF-8 fetch dest",
            "sec-fetch-dest",
            b"doc\xffment".to_vec(),
        ),
    ];
    for (what, name, value) in &cases {
        for dest in [Dest::Document, Dest::Script] {
            let mut headers = dest.fetch_headers().to_vec();
            headers.push((name, value));
            let response = stack.http.get("/api/whoami", &headers).unwrap();
            assert_eq!(response.status, 200, "{what}");
            let version = response.served_by.as_deref();
            assert!(matches!(version, Some("v1" | "v2")), "{what}: {version:?}");
            assert_eq!(response.received_version.as_deref(), version, "{what}");
            assert_eq!(
                response.cookie("sticky-version"),
                version,
                "{what}: a fresh, valid pin is set"
            );
        }
    }
}
