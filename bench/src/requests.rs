//! The requests wrk sends: the same situations the native benchmarks decide on.

use sticky_canary_filter::Config;

// One definition of the benchmark requests and configurations for the native benchmarks
// (criterion, callgrind) and this load test; only part of it is needed here.
#[allow(dead_code)]
#[path = "../../filter/benches/fixtures/mod.rs"]
mod fixtures;

/// What a request looks like to the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A new client: no cookie, so the filter mints an id and hashes it (every request is a
    /// new client, the extreme of "many clients").
    New,
    /// A returning client pinned to the last configured version, sending two cookies.
    Pinned,
    /// The worst case: pinned, in a 4 KB `Cookie` header of 50 cookies, its own last.
    Worst,
}

impl Shape {
    /// Short name for the table.
    pub fn label(self) -> &'static str {
        match self {
            Shape::New => "hash path (new client)",
            Shape::Pinned => "cookie path",
            Shape::Worst => "4 KB / 50 cookies",
        }
    }

    /// The extra request headers, for a configuration of `versions` versions.
    pub fn headers(self, versions: usize) -> Vec<(&'static str, String)> {
        let cookies = match self {
            Shape::New => return Vec::new(),
            Shape::Pinned => 2,
            Shape::Worst => 50,
        };
        let header = fixtures::pinned_cookie(versions, cookies);
        // The fixture builds ASCII only.
        vec![("cookie", String::from_utf8_lossy(&header).into_owned())]
    }
}

/// `versions` versions `v1..vN` with equal weights: the configurations of the native benchmarks.
pub fn config(versions: usize) -> Config {
    fixtures::config(versions)
}
