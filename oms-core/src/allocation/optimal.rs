//! The `optimal` strategy: an exact MIP per order against the stock left by earlier orders.

use rust_decimal::Decimal;

use super::explain::OrderDecision;
use super::mip::{self, Limits, MipFailure, OrderInput, Restrict};
use super::model::{AllocationOptions, AllocationProblem, PairCost};
use super::sequential::{all_short, short_lines, unfulfillable, State};
use crate::error::{OmsError, OmsResult};

/// Decide one order exactly; `only` restricts the warehouses that may ship.
pub(crate) fn decide(
    problem: &AllocationProblem,
    options: &AllocationOptions,
    order_index: usize,
    pairs: &[PairCost],
    state: &State,
    only: Option<Vec<usize>>,
) -> OmsResult<OrderDecision> {
    let short = short_lines(problem, order_index, pairs, &state.stock, only.as_deref());
    if !short.is_empty() && !options.allow_partial {
        return Err(unfulfillable(problem, order_index, &short));
    }
    let input = [OrderInput {
        order: order_index,
        pairs,
    }];
    let restrict = Restrict {
        force_open: None,
        only,
    };
    // The nearest-first greedy plan, when it is one, gives branch and bound an incumbent to
    // prune against from the first node (the solver ignores a start that breaks a constraint).
    let ranking = super::greedy::nearest_ranking(pairs);
    let start = super::greedy::decide(
        problem,
        options,
        order_index,
        pairs.to_vec(),
        state,
        &ranking,
    )
    .ok()
    .filter(|_| restrict.only.is_none())
    .map(|d| vec![d]);
    let solve = |restrict: &Restrict| {
        mip::solve(
            problem,
            options,
            &input,
            &state.stock,
            &state.loads,
            restrict,
            Limits::default(),
            start.as_deref().filter(|_| restrict.force_open.is_none()),
        )
    };
    let mut decision = match solve(&restrict) {
        Ok(out) => out
            .decisions
            .into_iter()
            .next()
            .ok_or_else(|| OmsError::SolverFailed {
                reason: "no decision returned".into(),
            })?,
        Err(MipFailure::Infeasible) => return Err(all_short(problem, order_index)),
        Err(MipFailure::Failed(e)) => return Err(e),
    };
    if options.explain_alternatives {
        let base = decision.cost(problem, options)?;
        for (wi, pair) in pairs.iter().enumerate() {
            let used = decision
                .qty
                .iter()
                .any(|r| r.get(wi).copied().unwrap_or(0) > 0);
            let allowed = restrict.only.as_ref().is_none_or(|o| o.contains(&wi));
            if used || !allowed || pair.ineligible.iter().all(Option::is_some) {
                continue;
            }
            let forced = Restrict {
                force_open: Some((0, wi)),
                only: restrict.only.clone(),
            };
            if let Ok(out) = solve(&forced) {
                if let Some(alt) = out.decisions.first() {
                    let by = alt
                        .cost(problem, options)?
                        .checked_sub(base)
                        .ok_or_else(|| OmsError::overflow("allocation cost"))?;
                    decision
                        .more_expensive
                        .insert(wi, by.max(Decimal::ZERO).normalize());
                }
            }
        }
    }
    Ok(decision)
}
