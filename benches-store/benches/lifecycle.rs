//! Full order lifecycles per second (criterion reports them as elements/s) on SQLite and on
//! PostgreSQL with 1, 8 and 16 concurrent workers (a connection each), on SQLite also with 1, 8
//! and 16 workers sharing one connection with group commit, with one worker grouping 100
//! lifecycles per commit, in line or pipelined, and with 1, 8 and 16 workers sharing one
//! pipelined batch cut every 100 lifecycles. Latency percentiles live in the `store-latency` binary: criterion's
//! estimates are means, not a p99.
#![allow(clippy::expect_used)] // a benchmark that cannot set up has nothing to report

use std::time::Duration;

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use oms_store_benches::{postgres_url, Rig};

/// The allocator of the `oms` binary, so the stores are measured as it runs them: each
/// operation allocates and frees many short-lived strings and documents, which mimalloc serves
/// from per-size free lists.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WORKERS: [usize; 3] = [1, 8, 16];

fn bench_rig(c: &mut Criterion, name: &str, rig: &Rig) {
    let mut group = c.benchmark_group(name);
    group
        .throughput(Throughput::Elements(1))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for n in WORKERS {
        let workers = rig.workers(n).expect("worker services");
        group.bench_with_input(BenchmarkId::new("workers", n), &n, |b, _| {
            b.iter_custom(|iters| rig.run(&workers, iters).expect("lifecycles"));
        });
    }
    // Workers sharing one connection with group commit (SQLite only).
    for n in WORKERS {
        let Some((workers, _)) = rig.group_commit_workers(n).expect("group commit workers") else {
            break;
        };
        group.bench_with_input(BenchmarkId::new("group_commit", n), &n, |b, _| {
            b.iter_custom(|iters| rig.run(&workers, iters).expect("lifecycles"));
        });
    }
    // One worker on one connection committing once per 100 lifecycles (SQLite only).
    if let Some((svc, store)) = rig.grouped_worker().expect("grouped worker") {
        group.bench_function("grouped_per_100/1", |b| {
            b.iter_custom(|iters| {
                rig.run_grouped(&svc, &store, iters, 100)
                    .expect("grouped lifecycles")
            });
        });
    }
    // The same, each commit running on a thread of its own while the next batch runs.
    if let Some((svc, store)) = rig.pipelined_worker().expect("pipelined worker") {
        group.bench_function("pipelined_per_100/1", |b| {
            b.iter_custom(|iters| {
                rig.run_grouped(&svc, &store, iters, 100)
                    .expect("pipelined lifecycles")
            });
        });
    }
    // Workers sharing one store and its batch, cut every 100 lifecycles (SQLite: one
    // connection, pipelined; PostgreSQL: one pool, the batch on memory until its commit).
    for n in WORKERS {
        let (workers, store) = rig.shared_batch_workers(n).expect("shared batch workers");
        group.bench_with_input(BenchmarkId::new("shared_batches_per_100", n), &n, |b, _| {
            b.iter_custom(|iters| {
                rig.run_shared(&workers, &*store, iters, 100)
                    .expect("shared batch lifecycles")
            });
        });
    }
    group.finish();
}

fn lifecycles(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = Rig::sqlite(dir.path()).expect("sqlite rig");
    bench_rig(c, "lifecycle/sqlite", &sqlite);
    match postgres_url() {
        Some(url) => {
            let pg = Rig::postgres(&url, "bench_lifecycle").expect("postgres rig");
            bench_rig(c, "lifecycle/postgres", &pg);
        }
        None => eprintln!(
            "lifecycle/postgres not run: set OMS_BENCH_DATABASE_URL (or OMS_TEST_DATABASE_URL), \
             e.g. eval \"$(scripts/pg-start /tmp/pg-bench)\", or use scripts/bench-store"
        ),
    }
}

/// The criterion group; its macro makes a public fn that cannot carry a doc line.
mod group {
    #![allow(missing_docs)]
    criterion::criterion_group!(benches, super::lifecycles);
}

criterion_main!(group::benches);
