//! Lifecycles per second and `create_order` / `get_order` latency percentiles on SQLite and
//! PostgreSQL, measured call by call, printed as one table.
//!
//! Usage: `store-latency [LIFECYCLES_PER_RUN] [LATENCY_CALLS]` (defaults 4000 and 5000). Uses
//! `OMS_BENCH_DATABASE_URL` (else `OMS_TEST_DATABASE_URL`) for PostgreSQL.

use std::process::ExitCode;

use oms_core::error::OmsResult;
use oms_store_benches::{create_latency, get_latency, postgres_url, Latency, Rig};

/// The allocator of the `oms` binary, so the stores are measured as it runs them: each
/// operation allocates and frees many short-lived strings and documents, which mimalloc serves
/// from per-size free lists.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Lifecycles per commit in the grouped row (one worker, one connection, each operation still
/// atomic in its own savepoint; a crash loses at most the unacknowledged group).
const GROUP: u64 = 100;

fn us(l: &Latency, p99: bool) -> String {
    let d = if p99 { l.p99 } else { l.p50 };
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn report(name: &str, rig: &Rig, lifecycles: u64, calls: usize) -> OmsResult<()> {
    for n in [1, 8, 16] {
        let workers = rig.workers(n)?;
        // A short warm-up fills caches and the connection pools.
        rig.run(&workers, (n as u64) * 20)?;
        let took = rig.run(&workers, lifecycles)?;
        let measure = format!("lifecycles/s, {n:>2} workers");
        println!(
            "| {name:<10} | {measure:<30} | {:>10.0} |",
            lifecycles as f64 / took.as_secs_f64()
        );
    }
    for n in [1, 8, 16] {
        let Some((workers, store)) = rig.group_commit_workers(n)? else {
            break;
        };
        rig.run(&workers, (n as u64) * 20)?;
        let before = store.group_commit_counts()?;
        let took = rig.run(&workers, lifecycles)?;
        let after = store.group_commit_counts()?;
        let per_commit = (after.0 - before.0) as f64 / (after.1 - before.1).max(1) as f64;
        let measure = format!("lifecycles/s, {n:>2}, group commit");
        println!(
            "| {name:<10} | {measure:<30} | {:>10.0} |",
            lifecycles as f64 / took.as_secs_f64()
        );
        let measure = format!("writes per commit, {n:>2}");
        println!("| {name:<10} | {measure:<30} | {per_commit:>10.1} |");
    }
    if let Some((svc, store)) = rig.grouped_worker()? {
        rig.run_grouped(&svc, &store, 20, 20)?;
        let took = rig.run_grouped(&svc, &store, lifecycles, GROUP)?;
        println!(
            "| {name:<10} | lifecycles/s,  1, batch of 100 | {:>10.0} |",
            lifecycles as f64 / took.as_secs_f64()
        );
    }
    if let Some((svc, store)) = rig.pipelined_worker()? {
        rig.run_grouped(&svc, &store, 20, 20)?;
        let took = rig.run_grouped(&svc, &store, lifecycles, GROUP)?;
        println!(
            "| {name:<10} | lifecycles/s, 1, pipelined 100 | {:>10.0} |",
            lifecycles as f64 / took.as_secs_f64()
        );
    }
    for n in [1, 8, 16] {
        let (workers, store) = rig.shared_batch_workers(n)?;
        rig.run_shared(&workers, &*store, (n as u64) * 20, GROUP)?;
        let took = rig.run_shared(&workers, &*store, lifecycles, GROUP)?;
        let measure = format!("lifecycles/s, {n:>2}, shared batches");
        println!(
            "| {name:<10} | {measure:<30} | {:>10.0} |",
            lifecycles as f64 / took.as_secs_f64()
        );
    }
    let svc = rig.worker()?;
    let (created, ids) = create_latency(rig, &svc, calls)?;
    let got = get_latency(&svc, &ids, calls)?;
    println!(
        "| {name:<10} | create_order p50               | {:>10} |",
        us(&created, false)
    );
    println!(
        "| {name:<10} | create_order p99               | {:>10} |",
        us(&created, true)
    );
    println!(
        "| {name:<10} | get_order p50                  | {:>10} |",
        us(&got, false)
    );
    println!(
        "| {name:<10} | get_order p99                  | {:>10} |",
        us(&got, true)
    );
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let lifecycles = args.next().and_then(|a| a.parse().ok()).unwrap_or(4000);
    let calls = args.next().and_then(|a| a.parse().ok()).unwrap_or(5000);
    println!("| backend    | measure                        |      value |");
    println!("|------------|--------------------------------|------------|");
    let run = || -> OmsResult<()> {
        let dir = tempfile::tempdir().map_err(|e| oms_core::error::OmsError::Storage {
            reason: format!("temp dir: {e}"),
        })?;
        report("sqlite", &Rig::sqlite(dir.path())?, lifecycles, calls)?;
        match postgres_url() {
            Some(url) => report(
                "postgres",
                &Rig::postgres(&url, "bench_latency")?,
                lifecycles,
                calls,
            )?,
            None => eprintln!(
                "postgres not measured: set OMS_BENCH_DATABASE_URL or run scripts/bench-store"
            ),
        }
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("store-latency: {e}");
            ExitCode::FAILURE
        }
    }
}
