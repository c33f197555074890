//! Allocation: which warehouses ship which units of each order, and which driver carries each
//! parcel, at least cost — with the reasons behind every choice.
//!
//! The cost of a plan is item cost (per SKU per warehouse) + shipping (`base_per_unit +
//! per_unit_km × km` per unit, great-circle km to the customer) + a parcel cost per opened
//! (order, warehouse) pair + a penalty per unfilled unit when partial fulfilment is allowed.
//! Costs are exact decimals; the solver works in `f64` internally, and every reported cost is
//! recomputed in decimal from the chosen integer quantities.
//!
//! Strategies: [`Strategy::Optimal`] (exact per order, orders in turn: a subset search where it
//! can prove the optimum, the MIP otherwise),
//! [`Strategy::Batch`] (one MIP over all orders), and the greedy baselines
//! [`Strategy::Nearest`] and [`Strategy::Priority`]. Seed 004's pricing models are
//! [`hyperlocal_lock`] + [`allocate_hyperlocal`], [`buy_box`] and [`post_checkout_margin`].

mod batch;
mod explain;
mod fast;
mod greedy;
mod mip;
mod model;
mod optimal;
mod pricing_models;
mod sequential;

pub use explain::{
    Explanation, Parcel, ParcelCost, ParcelLine, Plan, PlanStatus, Reason, Strategy, Subject,
    Unfilled,
};
pub use model::{
    distance_decimal, haversine_km, AllocationOptions, AllocationOrder, AllocationProblem, Driver,
    OrderLine, ShippingRates, Sla, Warehouse, EARTH_RADIUS_KM,
};
pub use pricing_models::{
    allocate_hyperlocal, buy_box, hyperlocal_lock, post_checkout_margin, HyperlocalLock,
    MarginReport, Quote,
};

use crate::error::OmsResult;
use explain::build_plan;

/// Allocate every order of `problem` with `strategy`.
///
/// Refuses malformed input with the field named, and an order that cannot be fully sourced
/// with `Unfulfillable` naming its short lines (unless `options.allow_partial`).
pub fn allocate(
    problem: &AllocationProblem,
    strategy: Strategy,
    options: &AllocationOptions,
) -> OmsResult<Plan> {
    problem.validate()?;
    options.validate()?;
    match strategy {
        Strategy::Optimal => {
            let ds = sequential::run(problem, options, |oi, pairs, st| {
                optimal::decide(problem, options, oi, &pairs, st, None)
            })?;
            build_plan(problem, options, &ds, strategy, PlanStatus::Optimal, 0.0)
        }
        Strategy::Batch => batch::allocate(problem, options),
        Strategy::Nearest => {
            let ds = sequential::run(problem, options, |oi, pairs, st| {
                let ranking = greedy::nearest_ranking(&pairs);
                greedy::decide(problem, options, oi, pairs, st, &ranking)
            })?;
            build_plan(problem, options, &ds, strategy, PlanStatus::Feasible, 0.0)
        }
        Strategy::Priority => {
            let ranking = if options.priority.is_empty() {
                (0..problem.warehouses.len()).collect()
            } else {
                options
                    .priority
                    .iter()
                    .map(|id| problem.warehouse_index(id))
                    .collect::<OmsResult<Vec<_>>>()?
            };
            let ds = sequential::run(problem, options, |oi, pairs, st| {
                greedy::decide(problem, options, oi, pairs, st, &ranking)
            })?;
            build_plan(problem, options, &ds, strategy, PlanStatus::Feasible, 0.0)
        }
        Strategy::Hyperlocal => Err(crate::error::OmsError::invalid(
            "strategy",
            "hyperlocal needs a session lock: use allocate_hyperlocal",
        )),
    }
}

/// How many orders of `problem` [`Strategy::Optimal`] decides by its exact subset search rather
/// than the MIP, serving them in turn as [`allocate`] does (a benchmark and diagnostic figure;
/// both methods give the same optimal cost).
pub fn optimal_fast_path_orders(
    problem: &AllocationProblem,
    options: &AllocationOptions,
) -> OmsResult<usize> {
    problem.validate()?;
    options.validate()?;
    let mut fast = 0usize;
    sequential::run(problem, options, |oi, pairs, st| {
        let (d, by_search) = optimal::decide_with(
            problem,
            options,
            oi,
            &pairs,
            st,
            None,
            optimal::Method::Auto,
        )?;
        fast += usize::from(by_search);
        Ok(d)
    })?;
    Ok(fast)
}

#[cfg(test)]
mod tests;
