//! The `batch` strategy: one MIP over many orders competing for shared stock, warm-started
//! from the per-order plan, with a time limit and a gap target.

use std::collections::BTreeMap;

use super::explain::{build_plan, OrderDecision, Plan, PlanStatus, Strategy};
use super::mip::{self, Limits, MipFailure, MipStatus, OrderInput, Restrict};
use super::model::{AllocationOptions, AllocationProblem, CostTable};
use super::sequential::{self, short_lines, unfulfillable, State};
use crate::error::{OmsError, OmsResult};

fn total(
    problem: &AllocationProblem,
    options: &AllocationOptions,
    ds: &[OrderDecision],
) -> OmsResult<rust_decimal::Decimal> {
    ds.iter().try_fold(rust_decimal::Decimal::ZERO, |acc, d| {
        acc.checked_add(d.cost(problem, options)?)
            .ok_or_else(|| OmsError::overflow("allocation cost"))
    })
}

/// Allocate every order of `problem` at once.
pub(crate) fn allocate(
    problem: &AllocationProblem,
    options: &AllocationOptions,
) -> OmsResult<Plan> {
    let state = State::initial(problem);
    let table = CostTable::build(problem, options, &state.stock)?;
    if !options.allow_partial {
        for (oi, pairs) in table.pairs.iter().enumerate() {
            let short = short_lines(problem, oi, pairs, &state.stock, None);
            if !short.is_empty() {
                return Err(unfulfillable(problem, oi, &short));
            }
        }
    }
    // The per-order plan is a feasible point: it seeds the search, and stands if the search
    // finds nothing better in time.
    let quick = AllocationOptions {
        explain_alternatives: false,
        ..options.clone()
    };
    let warm = sequential::run(problem, &quick, |oi, pairs, st| {
        super::optimal::decide(problem, &quick, oi, &pairs, st, None)
    })
    .ok();
    let inputs: Vec<OrderInput<'_>> = table
        .pairs
        .iter()
        .enumerate()
        .map(|(oi, pairs)| OrderInput { order: oi, pairs })
        .collect();
    let limits = Limits {
        time_limit_s: options.time_limit_ms.map(|ms| ms as f64 / 1000.0),
        mip_gap: options.mip_gap,
        prefer_highs: true,
    };
    let solved = mip::solve(
        problem,
        options,
        &inputs,
        &state.stock,
        &state.loads,
        &Restrict::default(),
        limits,
        warm.as_deref(),
    );
    let (decisions, status, gap) = match (solved, warm) {
        (Ok(out), Some(w)) => {
            if total(problem, options, &out.decisions)? <= total(problem, options, &w)? {
                (out.decisions, out.status, out.gap)
            } else {
                (w, MipStatus::TimeLimit, out.gap)
            }
        }
        (Ok(out), None) => (out.decisions, out.status, out.gap),
        (Err(MipFailure::Failed(_)), Some(w)) => (w, MipStatus::TimeLimit, f64::INFINITY),
        (Err(MipFailure::Infeasible), _) => {
            let mut short: BTreeMap<String, u64> = BTreeMap::new();
            for o in &problem.orders {
                for l in &o.lines {
                    *short.entry(l.sku.to_string()).or_default() += u64::from(l.quantity);
                }
            }
            return Err(OmsError::Unfulfillable {
                short: short.into_iter().map(|(s, n)| format!("{s}:{n}")).collect(),
            });
        }
        (Err(MipFailure::Failed(e)), None) => return Err(e),
    };
    let status = match status {
        MipStatus::Optimal => PlanStatus::Optimal,
        MipStatus::TimeLimit => PlanStatus::TimeLimit,
    };
    let gap = if gap.is_finite() { gap } else { 1.0 };
    build_plan(problem, options, &decisions, Strategy::Batch, status, gap)
}
