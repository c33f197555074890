//! The `nearest` and `priority` baselines: fill each line along a ranked warehouse list, the
//! way Saleor, Medusa, Solidus and Vendure source orders, then hand each parcel to the nearest
//! driver with room.

use std::collections::{BTreeMap, BTreeSet};

use super::explain::OrderDecision;
use super::model::{haversine_km, AllocationOptions, AllocationProblem, PairCost};
use super::sequential::{unfulfillable, State};
use crate::error::OmsResult;

/// Warehouses ordered by distance to the order's customer (ties by input order).
pub(crate) fn nearest_ranking(pairs: &[PairCost]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..pairs.len()).collect();
    idx.sort_by(|a, b| {
        let da = pairs.get(*a).map_or(f64::MAX, |p| p.distance_km);
        let db = pairs.get(*b).map_or(f64::MAX, |p| p.distance_km);
        da.total_cmp(&db).then(a.cmp(b))
    });
    idx
}

/// Fill one order greedily along `ranking`.
pub(crate) fn decide(
    problem: &AllocationProblem,
    options: &AllocationOptions,
    order_index: usize,
    pairs: Vec<PairCost>,
    state: &State,
    ranking: &[usize],
) -> OmsResult<OrderDecision> {
    let nw = problem.warehouses.len();
    let Some(order) = problem.orders.get(order_index) else {
        return Err(crate::error::OmsError::invalid(
            "orders",
            "order index out of range",
        ));
    };
    let mut stock = state.stock.clone();
    let mut qty = vec![vec![0u32; nw]; order.lines.len()];
    let mut unfilled = vec![0u32; order.lines.len()];
    let mut opened: BTreeSet<usize> = BTreeSet::new();
    let mut used_units = vec![0u64; nw];
    for (li, line) in order.lines.iter().enumerate() {
        let mut remaining = line.quantity;
        for &wi in ranking {
            if remaining == 0 {
                break;
            }
            let eligible = pairs
                .get(wi)
                .is_some_and(|p| p.ineligible.get(li).copied().flatten().is_none());
            let splits_left = options
                .max_splits
                .is_none_or(|m| opened.contains(&wi) || (opened.len() as u64) < u64::from(m));
            if !eligible || !splits_left {
                continue;
            }
            let on_hand = stock
                .get(wi)
                .and_then(|s| s.get(&line.sku))
                .copied()
                .unwrap_or(0);
            let by_parcel = match problem.warehouses.get(wi).and_then(|w| w.parcel_capacity) {
                Some(c) if line.capacity > 0 => {
                    let room =
                        u64::from(c).saturating_sub(used_units.get(wi).copied().unwrap_or(0));
                    (room / u64::from(line.capacity)).min(u64::from(u32::MAX)) as u32
                }
                _ => u32::MAX,
            };
            let take = remaining.min(on_hand).min(by_parcel);
            if take == 0 {
                continue;
            }
            remaining -= take;
            if let Some(s) = stock.get_mut(wi).and_then(|s| s.get_mut(&line.sku)) {
                *s -= take;
            }
            if let Some(c) = qty.get_mut(li).and_then(|r| r.get_mut(wi)) {
                *c += take;
            }
            if let Some(u) = used_units.get_mut(wi) {
                *u += u64::from(take) * u64::from(line.capacity);
            }
            opened.insert(wi);
        }
        if let Some(u) = unfilled.get_mut(li) {
            *u = remaining;
        }
    }
    let mut driver = BTreeMap::new();
    if !problem.drivers.is_empty() {
        let mut loads: Vec<u64> = state.loads.iter().map(|l| u64::from(*l)).collect();
        for &wi in ranking {
            if !opened.contains(&wi) {
                continue;
            }
            let units = used_units.get(wi).copied().unwrap_or(0);
            let Some(w) = problem.warehouses.get(wi) else {
                continue;
            };
            let mut by_distance: Vec<usize> = (0..problem.drivers.len()).collect();
            by_distance.sort_by(|a, b| {
                let da = problem
                    .drivers
                    .get(*a)
                    .map_or(f64::MAX, |d| haversine_km(d.location, w.location));
                let db = problem
                    .drivers
                    .get(*b)
                    .map_or(f64::MAX, |d| haversine_km(d.location, w.location));
                da.total_cmp(&db).then(a.cmp(b))
            });
            let fits = by_distance.into_iter().find(|di| {
                let (Some(d), Some(l)) = (problem.drivers.get(*di), loads.get(*di)) else {
                    return false;
                };
                let end = l + units;
                end <= u64::from(d.max_capacity) && end >= u64::from(d.min_capacity)
            });
            if let Some(di) = fits {
                driver.insert(wi, di);
                if let Some(l) = loads.get_mut(di) {
                    *l += units;
                }
            } else {
                // No driver can take the parcel: its units stay at the warehouse.
                for (li, row) in qty.iter_mut().enumerate() {
                    if let (Some(c), Some(u)) = (row.get_mut(wi), unfilled.get_mut(li)) {
                        *u += *c;
                        *c = 0;
                    }
                }
            }
        }
    }
    let short: Vec<(usize, u32)> = unfilled
        .iter()
        .enumerate()
        .filter(|(_, u)| **u > 0)
        .map(|(li, u)| (li, *u))
        .collect();
    if !short.is_empty() && !options.allow_partial {
        return Err(unfulfillable(problem, order_index, &short));
    }
    Ok(OrderDecision {
        order: order_index,
        qty,
        driver,
        unfilled,
        pairs,
        more_expensive: BTreeMap::new(),
    })
}
