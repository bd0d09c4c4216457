//! Nanoseconds per decision of the pure logic, natively: the part of the filter's per-request
//! cost that is ours rather than the host's (header copies across the Wasm boundary, route
//! re-matching). `make bench` runs this and reads the medians back for its table.

mod fixtures;

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use sticky_canary_filter::decide;

fn decisions(c: &mut Criterion) {
    for case in fixtures::cases() {
        c.benchmark_group(case.group)
            .bench_function(&case.param, |b| {
                b.iter(|| {
                    decide(
                        black_box(&case.config),
                        black_box(&case.request),
                        fixtures::mint,
                    )
                })
            });
    }
}

criterion_group!(benches, decisions);
criterion_main!(benches);
