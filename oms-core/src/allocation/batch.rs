//! The `batch` strategy: many orders competing for shared stock. A Lagrangian price-and-repair
//! pass builds a good plan and a lower bound from exact per-order solves; one MIP over all orders
//! then starts from that plan, under a time limit and a gap target.

use std::collections::BTreeMap;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use super::explain::{build_plan, OrderDecision, Plan, PlanStatus, Strategy};
use super::mip::{self, Limits, MipFailure, MipStatus, OrderInput, Restrict};
use super::model::{AllocationOptions, AllocationProblem, CostTable, PairCost};
use super::optimal;
use super::sequential::{self, short_lines, unfulfillable, State};
use crate::error::{OmsError, OmsResult};
use crate::order::Sku;

fn total(
    problem: &AllocationProblem,
    options: &AllocationOptions,
    ds: &[OrderDecision],
) -> OmsResult<Decimal> {
    ds.iter().try_fold(Decimal::ZERO, |acc, d| {
        acc.checked_add(d.cost(problem, options)?)
            .ok_or_else(|| OmsError::overflow("allocation cost"))
    })
}

/// Shadow prices of scarce stock, per (warehouse, SKU).
type Prices = BTreeMap<(usize, Sku), Decimal>;

fn priced(
    problem: &AllocationProblem,
    oi: usize,
    pairs: &[PairCost],
    prices: &Prices,
) -> Vec<PairCost> {
    let mut out = pairs.to_vec();
    let Some(order) = problem.orders.get(oi) else {
        return out;
    };
    for (wi, pair) in out.iter_mut().enumerate() {
        for (line, unit) in order.lines.iter().zip(pair.unit.iter_mut()) {
            if let Some(p) = prices.get(&(wi, line.sku.clone())) {
                unit.0 = unit.0.saturating_add(*p);
            }
        }
    }
    out
}

/// Serve the orders in turn, each exactly, at true cost plus the shadow prices.
fn repair(
    problem: &AllocationProblem,
    options: &AllocationOptions,
    prices: &Prices,
) -> OmsResult<Vec<OrderDecision>> {
    sequential::run(problem, options, |oi, pairs, st| {
        let mut d = optimal::decide(
            problem,
            options,
            oi,
            &priced(problem, oi, &pairs, prices),
            st,
            None,
        )?;
        d.pairs = pairs;
        Ok(d)
    })
}

/// A good feasible batch plan without one big solve: Lagrangian relaxation of the stock rows.
/// Each round prices every order alone against full stock, raises the price of each
/// (warehouse, SKU) the orders over-draw (subgradient step), then serves the orders in turn at
/// the new prices, which steers early orders away from stock that later orders need more.
/// The cheapest plan of all rounds wins (the first is the plain per-order plan); the best
/// Lagrangian bound met on the way bounds the optimum from below.
fn price_and_repair(
    problem: &AllocationProblem,
    options: &AllocationOptions,
) -> OmsResult<Option<(Vec<OrderDecision>, Option<Decimal>)>> {
    let mut prices = Prices::new();
    let mut lower: Option<Decimal> = None;
    let Ok(mut best) = repair(problem, options, &prices) else {
        return Ok(None);
    };
    let mut best_cost = total(problem, options, &best)?;
    let state = State::initial(problem);
    let table = CostTable::build(problem, options, &state.stock)?;
    // Step in money per unit of over-draw: a fraction of the mean unit cost, shrinking.
    let mut unit_sum = Decimal::ZERO;
    let mut unit_n = 0u32;
    for row in &table.pairs {
        for pair in row {
            for (item, ship) in &pair.unit {
                unit_sum = unit_sum.saturating_add(item.saturating_add(*ship));
                unit_n += 1;
            }
        }
    }
    let mean = if unit_n == 0 {
        Decimal::ONE
    } else {
        unit_sum / Decimal::from(unit_n)
    };
    for round in 1..=options.batch_rounds {
        let mut drawn: BTreeMap<(usize, Sku), u64> = BTreeMap::new();
        // Lagrangian bound: every order's own optimum at these prices, less the prices of all
        // stock. Only valid when every order could be priced.
        let mut bound = Some(Decimal::ZERO);
        for (oi, pairs) in table.pairs.iter().enumerate() {
            let Ok(mut d) = optimal::decide(
                problem,
                options,
                oi,
                &priced(problem, oi, pairs, &prices),
                &state,
                None,
            ) else {
                bound = None;
                continue;
            };
            d.pairs.clone_from(pairs);
            bound = match (bound, d.cost(problem, options)) {
                (Some(b), Ok(c)) => b.checked_add(c),
                _ => None,
            };
            if let Some(order) = problem.orders.get(oi) {
                for (line, row) in order.lines.iter().zip(&d.qty) {
                    for (wi, q) in row.iter().enumerate() {
                        if *q > 0 {
                            *drawn.entry((wi, line.sku.clone())).or_default() += u64::from(*q);
                        }
                    }
                }
            }
        }
        if let Some(mut b) = bound {
            for ((wi, sku), price) in &prices {
                let on_hand = state
                    .stock
                    .get(*wi)
                    .and_then(|s| s.get(sku))
                    .copied()
                    .unwrap_or(0);
                let used = drawn.get(&(*wi, sku.clone())).copied().unwrap_or(0);
                let slack = Decimal::from(used) - Decimal::from(on_hand);
                b = b.saturating_add(price.saturating_mul(slack));
            }
            lower = Some(lower.map_or(b, |l: Decimal| l.max(b)));
        }
        let step = (mean / Decimal::from(15 * round)).round_dp(4);
        let mut moved = false;
        for ((wi, sku), n) in drawn {
            let on_hand = state
                .stock
                .get(wi)
                .and_then(|s| s.get(&sku))
                .copied()
                .unwrap_or(0);
            if n > u64::from(on_hand) {
                let over = Decimal::from(n - u64::from(on_hand));
                let p = prices.entry((wi, sku)).or_default();
                *p = p.saturating_add(step.saturating_mul(over));
                moved = true;
            }
        }
        if !moved {
            break;
        }
        if let Ok(plan) = repair(problem, options, &prices) {
            let cost = total(problem, options, &plan)?;
            if cost < best_cost {
                best = plan;
                best_cost = cost;
            }
        }
    }
    Ok(Some((best, lower)))
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
    let (warm, lower) = match price_and_repair(problem, &quick)? {
        Some((w, l)) => (Some(w), l),
        None => (None, None),
    };
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
    // Without a proof from the solver, the gap is measured against the Lagrangian bound.
    let bound_gap = |ds: &[OrderDecision]| -> OmsResult<f64> {
        let cost = total(problem, options, ds)?;
        Ok(match lower {
            Some(l) if cost > Decimal::ZERO => {
                ((cost - l.min(cost)) / cost).to_f64().unwrap_or(1.0)
            }
            Some(_) => 0.0,
            None => 1.0,
        })
    };
    let (decisions, status, gap) = match (solved, warm) {
        (Ok(out), Some(w)) => {
            if out.status == MipStatus::Optimal {
                (out.decisions, out.status, 0.0)
            } else if total(problem, options, &out.decisions)? <= total(problem, options, &w)? {
                let g = bound_gap(&out.decisions)?.min(out.gap);
                (out.decisions, out.status, g)
            } else {
                let g = bound_gap(&w)?;
                (w, MipStatus::TimeLimit, g)
            }
        }
        (Ok(out), None) => (out.decisions, out.status, out.gap),
        (Err(MipFailure::Failed(_)), Some(w)) => {
            let g = bound_gap(&w)?;
            (w, MipStatus::TimeLimit, g)
        }
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
