//! The `optimal` strategy: the exact decision of one order against the stock left by earlier
//! orders. An exact subset search decides most orders; the MIP decides the rest.

use rust_decimal::Decimal;

use super::explain::OrderDecision;
use super::fast::{self, Outcome};
use super::mip::{self, Limits, MipFailure, OrderInput, Restrict};
use super::model::{AllocationOptions, AllocationProblem, PairCost};
use super::sequential::{all_short, short_lines, unfulfillable, State};
use crate::error::{OmsError, OmsResult};

/// Which method may decide an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// The subset search where it applies and finishes within its budget, else the MIP.
    Auto,
    /// The MIP only (tests compare the two methods).
    #[cfg_attr(not(test), allow(dead_code))]
    Mip,
}

/// Decide one order exactly; `only` restricts the warehouses that may ship.
pub(crate) fn decide(
    problem: &AllocationProblem,
    options: &AllocationOptions,
    order_index: usize,
    pairs: &[PairCost],
    state: &State,
    only: Option<Vec<usize>>,
) -> OmsResult<OrderDecision> {
    decide_with(
        problem,
        options,
        order_index,
        pairs,
        state,
        only,
        Method::Auto,
    )
    .map(|(d, _)| d)
}

/// The MIP for one order, optionally with one warehouse forced to ship.
struct Mip<'a> {
    problem: &'a AllocationProblem,
    options: &'a AllocationOptions,
    order_index: usize,
    pairs: &'a [PairCost],
    state: &'a State,
    only: Option<Vec<usize>>,
}

impl Mip<'_> {
    fn solve(&self, force: Option<usize>) -> Result<OrderDecision, MipFailure> {
        let input = [OrderInput {
            order: self.order_index,
            pairs: self.pairs,
        }];
        let restrict = Restrict {
            force_open: force.map(|wi| (0, wi)),
            only: self.only.clone(),
        };
        // The nearest-first greedy plan, when it is one, gives branch and bound an incumbent
        // to prune against from the first node (the solver ignores a start that breaks a
        // constraint).
        let start = if restrict.only.is_none() && force.is_none() {
            let ranking = super::greedy::nearest_ranking(self.pairs);
            super::greedy::decide(
                self.problem,
                self.options,
                self.order_index,
                self.pairs.to_vec(),
                self.state,
                &ranking,
            )
            .ok()
            .map(|d| vec![d])
        } else {
            None
        };
        let out = mip::solve(
            self.problem,
            self.options,
            &input,
            &self.state.stock,
            &self.state.loads,
            &restrict,
            Limits::default(),
            start.as_deref(),
        )?;
        out.decisions.into_iter().next().ok_or_else(|| {
            MipFailure::Failed(OmsError::SolverFailed {
                reason: "no decision returned".into(),
            })
        })
    }
}

/// Decide one order exactly with `method`; also says whether the subset search decided it.
pub(crate) fn decide_with(
    problem: &AllocationProblem,
    options: &AllocationOptions,
    order_index: usize,
    pairs: &[PairCost],
    state: &State,
    only: Option<Vec<usize>>,
    method: Method,
) -> OmsResult<(OrderDecision, bool)> {
    let short = short_lines(problem, order_index, pairs, &state.stock, only.as_deref());
    if !short.is_empty() && !options.allow_partial {
        return Err(unfulfillable(problem, order_index, &short));
    }
    let search = match method {
        Method::Auto => {
            fast::Search::new(problem, options, order_index, pairs, state, only.as_deref())
        }
        Method::Mip => None,
    };
    let mip = Mip {
        problem,
        options,
        order_index,
        pairs,
        state,
        only,
    };
    let fast_plan = match search.as_ref().map(|s| (s, s.run(None))) {
        Some((s, Outcome::Found(used))) => Some(s.decision(used, None, pairs)?),
        Some((_, Outcome::Infeasible)) => return Err(all_short(problem, order_index)),
        Some((_, Outcome::GaveUp)) | None => None,
    };
    let fast_path = fast_plan.is_some();
    let mut decision = match fast_plan {
        Some(d) => d,
        None => match mip.solve(None) {
            Ok(d) => d,
            Err(MipFailure::Infeasible) => return Err(all_short(problem, order_index)),
            Err(MipFailure::Failed(e)) => return Err(e),
        },
    };
    if options.explain_alternatives {
        let base = decision.cost(problem, options)?;
        for (wi, pair) in pairs.iter().enumerate() {
            let used = decision
                .qty
                .iter()
                .any(|r| r.get(wi).copied().unwrap_or(0) > 0);
            let allowed = mip.only.as_ref().is_none_or(|o| o.contains(&wi));
            if used || !allowed || pair.ineligible.iter().all(Option::is_some) {
                continue;
            }
            // The cheapest plan that ships from this warehouse, by the same search with the
            // warehouse forced open, or by the MIP where the search does not decide it.
            let forced = search.as_ref().and_then(|s| {
                let bit = s.candidate(wi)?;
                Some((s, bit, s.run(Some(bit))))
            });
            let alt = match forced {
                Some((s, bit, Outcome::Found(u))) => Some(s.decision(u, Some(bit), pairs)?),
                Some((_, _, Outcome::Infeasible)) => None,
                Some((_, _, Outcome::GaveUp)) | None => mip.solve(Some(wi)).ok(),
            };
            if let Some(alt) = alt {
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
    Ok((decision, fast_path))
}
