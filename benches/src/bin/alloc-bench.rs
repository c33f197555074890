//! `alloc-bench export DIR` writes the benchmark instances as `oms allocate` JSON;
//! `alloc-bench measure DIR` solves them with every strategy and writes `ours.json` there:
//! per-order p50/p99 solve time and cost (and how many orders the subset search decided without
//! the MIP), batch time/cost/status/gap, greedy costs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use oms_benches::{generate, single_order, Spec, AMPLE, TIGHT};
use oms_core::allocation::{
    allocate, optimal_fast_path_orders, AllocationOptions, AllocationProblem, Strategy,
};
use rust_decimal::Decimal;
use serde_json::{json, Value};

/// Orders in the per-order timing set.
const PER_ORDER: usize = 200;
/// Batch time limit, ms.
const BATCH_LIMIT_MS: u64 = 200;

fn instances() -> Vec<(String, Spec)> {
    let mut v = vec![("per_order".to_owned(), Spec::new(1, 20, PER_ORDER, TIGHT))];
    for n in [50, 100, 200] {
        v.push((
            format!("batch_{n}_tight"),
            Spec::new(100 + n as u64, 20, n, TIGHT),
        ));
    }
    v.push((
        "batch_100_ample".to_owned(),
        Spec::new(1100, 20, 100, AMPLE),
    ));
    v
}

fn load(dir: &Path, name: &str) -> Result<AllocationProblem, String> {
    let text =
        std::fs::read_to_string(dir.join(format!("{name}.json"))).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| format!("{name}: {e}"))
}

fn quiet() -> AllocationOptions {
    AllocationOptions {
        explain_alternatives: false,
        ..AllocationOptions::default()
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1).min(sorted.len() - 1))
        .copied()
        .unwrap_or(0.0)
}

fn cost_of(
    p: &AllocationProblem,
    s: Strategy,
    o: &AllocationOptions,
) -> Result<(Decimal, f64, Value), String> {
    let t = Instant::now();
    let plan = allocate(p, s, o).map_err(|e| e.to_string())?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    Ok((
        plan.total_cost,
        ms,
        json!({"status": plan.status, "gap": plan.gap}),
    ))
}

fn measure(dir: &Path) -> Result<Value, String> {
    let mut out = serde_json::Map::new();
    // Per order: each order alone against full stock, timed after one warm-up pass.
    let p = load(dir, "per_order")?;
    let singles: Vec<AllocationProblem> =
        (0..p.orders.len()).map(|i| single_order(&p, i)).collect();
    let o = quiet();
    for s in &singles {
        allocate(s, Strategy::Optimal, &o).map_err(|e| e.to_string())?;
    }
    let mut times = Vec::new();
    let mut costs = Vec::new();
    // Per order, its fastest of the five passes: what the order costs the solver, without the
    // scheduler's preemptions on a shared machine.
    let mut fastest = vec![f64::INFINITY; singles.len()];
    for _ in 0..5 {
        for (i, s) in singles.iter().enumerate() {
            let t = Instant::now();
            let plan = allocate(s, Strategy::Optimal, &o).map_err(|e| e.to_string())?;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            times.push(ms);
            if let Some(f) = fastest.get_mut(i) {
                *f = f.min(ms);
            }
            if costs.len() <= i {
                costs.push(plan.total_cost);
            }
        }
    }
    times.sort_by(f64::total_cmp);
    fastest.sort_by(f64::total_cmp);
    let mut by_search = 0usize;
    for s in &singles {
        by_search += optimal_fast_path_orders(s, &o).map_err(|e| e.to_string())?;
    }
    let total: Decimal = costs.iter().copied().sum();
    let mut greedy = serde_json::Map::new();
    for (name, st) in [
        ("nearest", Strategy::Nearest),
        ("priority", Strategy::Priority),
    ] {
        let mut g = Decimal::ZERO;
        for s in &singles {
            g += allocate(s, st, &o).map_err(|e| e.to_string())?.total_cost;
        }
        greedy.insert(name.into(), json!(g.round_dp(4).to_string()));
    }
    out.insert(
        "per_order".into(),
        json!({
            "orders": singles.len(),
            "p50_ms": percentile(&times, 50.0),
            "p99_ms": percentile(&times, 99.0),
            "mean_ms": times.iter().sum::<f64>() / times.len().max(1) as f64,
            "best_of_5_p50_ms": percentile(&fastest, 50.0),
            "best_of_5_p99_ms": percentile(&fastest, 99.0),
            "subset_search_orders": by_search,
            "total_cost": total.round_dp(4).to_string(),
            "greedy": greedy,
        }),
    );
    for (name, _) in instances().into_iter().skip(1) {
        let p = load(dir, &name)?;
        let batch_opts = AllocationOptions {
            time_limit_ms: Some(BATCH_LIMIT_MS),
            ..quiet()
        };
        let (batch, batch_ms, status) = cost_of(&p, Strategy::Batch, &batch_opts)?;
        let (seq, seq_ms, _) = cost_of(&p, Strategy::Optimal, &o)?;
        let (near, _, _) = cost_of(&p, Strategy::Nearest, &o)?;
        let (prio, _, _) = cost_of(&p, Strategy::Priority, &o)?;
        out.insert(
            name,
            json!({
                "orders": p.orders.len(),
                "batch_cost": batch.round_dp(4).to_string(),
                "batch_ms": batch_ms,
                "batch_status": status["status"],
                "batch_gap": status["gap"],
                "sequential_cost": seq.round_dp(4).to_string(),
                "sequential_ms": seq_ms,
                "nearest_cost": near.round_dp(4).to_string(),
                "priority_cost": prio.round_dp(4).to_string(),
            }),
        );
    }
    Ok(Value::Object(out))
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(cmd), Some(dir)) = (args.get(1), args.get(2)) else {
        return Err("usage: alloc-bench export|measure DIR".into());
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    match cmd.as_str() {
        "export" => {
            for (name, spec) in instances() {
                let p = generate(spec).map_err(|e| e.to_string())?;
                let text = serde_json::to_string(&p).map_err(|e| e.to_string())?;
                std::fs::write(dir.join(format!("{name}.json")), text)
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        "measure" => {
            let v = measure(&dir)?;
            let text = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
            std::fs::write(dir.join("ours.json"), &text).map_err(|e| e.to_string())?;
            println!("{text}");
            Ok(())
        }
        other => Err(format!("unknown command {other:?}")),
    }
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("alloc-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
