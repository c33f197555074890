//! Criterion benches of allocation: the per-order exact decision (5 lines × 20 warehouses) and
//! the batch MIP over 50, 100 and 200 tight orders with a 200 ms limit on the MIP phase.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_main, Criterion};
use oms_benches::{generate, single_order, Spec, TIGHT};
use oms_core::allocation::{allocate, AllocationOptions, Strategy};

fn quiet() -> AllocationOptions {
    AllocationOptions {
        explain_alternatives: false,
        ..AllocationOptions::default()
    }
}

fn per_order(c: &mut Criterion) {
    let Ok(p) = generate(Spec::new(1, 20, 200, TIGHT)) else {
        return;
    };
    let singles: Vec<_> = (0..p.orders.len()).map(|i| single_order(&p, i)).collect();
    let options = quiet();
    let mut next = 0usize;
    c.bench_function("per_order_optimal_5x20", |b| {
        b.iter(|| {
            // Cycle through 200 different orders so the figure is not one lucky instance.
            next = (next + 1) % singles.len();
            let s = singles.get(next).unwrap_or(&p);
            black_box(allocate(black_box(s), Strategy::Optimal, &options).ok())
        });
    });
}

fn batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_tight");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(25));
    for n in [50usize, 100, 200] {
        let Ok(p) = generate(Spec::new(100 + n as u64, 20, n, TIGHT)) else {
            continue;
        };
        let options = AllocationOptions {
            time_limit_ms: Some(200),
            ..quiet()
        };
        group.bench_function(format!("{n}_orders"), |b| {
            b.iter(|| black_box(allocate(black_box(&p), Strategy::Batch, &options).ok()));
        });
    }
    group.finish();
}

// The macro generates an undocumented `pub fn benches`.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::per_order, super::batch);
}
criterion_main!(group::benches);
