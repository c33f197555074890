//! Serving orders one after another against the stock and driver loads the earlier orders
//! left, whatever rule decides each order.

use std::collections::BTreeMap;

use super::explain::OrderDecision;
use super::model::{order_row, AllocationOptions, AllocationProblem, PairCost};
use crate::error::{OmsError, OmsResult};
use crate::order::Sku;

/// Stock and driver loads as orders are served.
pub(crate) struct State {
    pub stock: Vec<BTreeMap<Sku, u32>>,
    pub loads: Vec<u32>,
}

impl State {
    /// The problem's initial stock and loads.
    pub fn initial(problem: &AllocationProblem) -> State {
        State {
            stock: super::model::initial_stock(problem),
            loads: problem.drivers.iter().map(|d| d.current_load).collect(),
        }
    }

    /// Take a decision's units out of stock and put its parcels on its drivers.
    pub fn apply(&mut self, problem: &AllocationProblem, d: &OrderDecision) -> OmsResult<()> {
        let order = problem
            .orders
            .get(d.order)
            .ok_or_else(|| OmsError::invalid("orders", "order index out of range"))?;
        for (li, row) in d.qty.iter().enumerate() {
            let Some(line) = order.lines.get(li) else {
                continue;
            };
            for (wi, q) in row.iter().enumerate() {
                if *q == 0 {
                    continue;
                }
                let on_hand = self
                    .stock
                    .get_mut(wi)
                    .and_then(|s| s.get_mut(&line.sku))
                    .ok_or_else(|| OmsError::InsufficientStock {
                        sku: line.sku.to_string(),
                        warehouse: wi.to_string(),
                        requested: u64::from(*q),
                        available: 0,
                    })?;
                *on_hand = on_hand.checked_sub(*q).ok_or(OmsError::InsufficientStock {
                    sku: line.sku.to_string(),
                    warehouse: wi.to_string(),
                    requested: u64::from(*q),
                    available: u64::from(*on_hand),
                })?;
                if let Some(di) = d.driver.get(&wi) {
                    if let Some(l) = self.loads.get_mut(*di) {
                        *l = l.saturating_add(q.saturating_mul(line.capacity));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Units of each line that no eligible warehouse (among `only`, if given) can supply:
/// `(line index, missing units)`.
pub(crate) fn short_lines(
    problem: &AllocationProblem,
    order_index: usize,
    pairs: &[PairCost],
    stock: &[BTreeMap<Sku, u32>],
    only: Option<&[usize]>,
) -> Vec<(usize, u32)> {
    let Some(order) = problem.orders.get(order_index) else {
        return Vec::new();
    };
    let mut short = Vec::new();
    for (li, line) in order.lines.iter().enumerate() {
        let mut supply = 0u64;
        for (wi, pair) in pairs.iter().enumerate() {
            if pair.ineligible.get(li).copied().flatten().is_some()
                || only.is_some_and(|o| !o.contains(&wi))
            {
                continue;
            }
            let on_hand = stock
                .get(wi)
                .and_then(|s| s.get(&line.sku))
                .copied()
                .unwrap_or(0);
            let by_parcel = match problem.warehouses.get(wi).and_then(|w| w.parcel_capacity) {
                Some(c) if line.capacity > 0 => c / line.capacity,
                _ => u32::MAX,
            };
            supply += u64::from(on_hand.min(by_parcel));
        }
        if supply < u64::from(line.quantity) {
            short.push((li, line.quantity - supply as u32));
        }
    }
    short
}

/// The `Unfulfillable` error for these short lines of an order.
pub(crate) fn unfulfillable(
    problem: &AllocationProblem,
    order_index: usize,
    short: &[(usize, u32)],
) -> OmsError {
    let lines = problem
        .orders
        .get(order_index)
        .map(|o| o.lines.as_slice())
        .unwrap_or_default();
    OmsError::Unfulfillable {
        short: short
            .iter()
            .filter_map(|(li, n)| lines.get(*li).map(|l| format!("{}:{n}", l.sku)))
            .collect(),
    }
}

/// Every line of an order as short by its full quantity (no plan could carry any of it).
pub(crate) fn all_short(problem: &AllocationProblem, order_index: usize) -> OmsError {
    let short: Vec<(usize, u32)> = problem
        .orders
        .get(order_index)
        .map(|o| {
            o.lines
                .iter()
                .enumerate()
                .map(|(li, l)| (li, l.quantity))
                .collect()
        })
        .unwrap_or_default();
    unfulfillable(problem, order_index, &short)
}

/// Serve every order in turn with `decide(order index, its price list, state)`.
pub(crate) fn run<F>(
    problem: &AllocationProblem,
    options: &AllocationOptions,
    mut decide: F,
) -> OmsResult<Vec<OrderDecision>>
where
    F: FnMut(usize, Vec<PairCost>, &State) -> OmsResult<OrderDecision>,
{
    let mut state = State::initial(problem);
    let mut out = Vec::with_capacity(problem.orders.len());
    for oi in 0..problem.orders.len() {
        let pairs = order_row(problem, options, oi, &state.stock)?;
        let d = decide(oi, pairs, &state)?;
        state.apply(problem, &d)?;
        out.push(d);
    }
    Ok(out)
}
