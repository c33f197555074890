//! The exact fast path of the per-order decision: a branch and bound over which warehouses
//! open a parcel, each candidate set priced by a greedy fill, instead of the general MIP.
//!
//! Why a greedy fill is exact once the set `S` of open warehouses is fixed: without parcel
//! capacities or drivers nothing couples the SKUs of an order, a unit of a SKU costs the same
//! at a warehouse whatever line it belongs to (item cost and shipping depend on the SKU and the
//! warehouse only), and stock is per (SKU, warehouse). So each SKU is one demand, and the
//! cheapest way to meet it from `S` is to take units in increasing order of unit cost. The
//! order's optimum is the minimum over `S` of the parcel costs of the warehouses the fill uses
//! plus the fill.
//!
//! The search branches on "warehouse open" / "warehouse closed". Its lower bound at a node
//! splits each parcel cost among the SKUs the warehouse could serve (a warehouse that stocks
//! `m` of the order's SKUs pays at least `parcel / m` per SKU it serves) and relaxes every SKU
//! to its own linear program, whose optimum is again a greedy fill, at unit cost
//! `cost + share / min(stock, demand)` for a warehouse not yet opened. Costs are exact
//! integers on a common decimal scale (times a refinement factor that keeps most shares
//! exact), the share is rounded down, so the bound never overestimates.
//!
//! Orders the search does not model (drivers, parcel capacities that can bind, lines of one
//! SKU priced differently, more than 64 warehouses, numbers out of range) and searches that
//! exceed the node budget return `None`/[`Outcome::GaveUp`]; the caller then solves the MIP.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::explain::OrderDecision;
use super::model::{AllocationOptions, AllocationProblem, PairCost};
use super::sequential::State;
use crate::error::OmsResult;

/// Nodes one search may visit before it gives up and the MIP decides. Orders of the benchmark
/// shape (5 lines, 20 warehouses) close in a few dozen nodes; the cap keeps a pathological
/// order from costing more than the MIP would.
const NODE_BUDGET: usize = 4000;

/// Extra factor on every scaled cost: divisible by 1..=16, so the parcel share
/// `parcel / (SKUs served × units)` stays exact for small orders and the bound loses nothing.
const REFINE: i128 = 720_720;

/// Marker for the "left unfilled" source of a SKU under partial fulfilment.
const UNFILLED: u8 = u8::MAX;

/// One place a SKU's units can come from.
#[derive(Debug, Clone)]
struct Source {
    /// Candidate index of the warehouse, or [`UNFILLED`].
    bit: u8,
    /// Scaled cost of one unit.
    cost: i128,
    /// Scaled cost of one unit when the parcel is not yet paid: `cost` plus the rounded-down
    /// share of the parcel cost.
    free_cost: i128,
    /// Units available.
    stock: u64,
}

impl Source {
    fn mask(&self) -> u64 {
        if self.bit == UNFILLED {
            0
        } else {
            1u64 << self.bit
        }
    }

    fn within(&self, mask: u64) -> bool {
        self.bit == UNFILLED || mask & self.mask() != 0
    }
}

/// The lines of one SKU, merged into one demand.
#[derive(Debug, Clone)]
struct Group {
    demand: u64,
    /// Line indices and quantities, in line order.
    lines: Vec<(usize, u64)>,
    /// Sources by `(cost, warehouse)`; the unfilled source last among equal costs.
    by_cost: Vec<Source>,
    /// Indices into `by_cost` of the warehouse sources, by `(free_cost, warehouse)`.
    by_free: Vec<usize>,
}

/// How a search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The optimum: the set of candidate warehouses it may use.
    Found(u64),
    /// No plan meets the constraints (only possible with a split limit).
    Infeasible,
    /// The node budget ran out; the MIP must decide.
    GaveUp,
}

/// One order prepared for the search.
#[derive(Debug, Clone)]
pub(crate) struct Search {
    order: usize,
    groups: Vec<Group>,
    /// Problem index of each candidate warehouse.
    warehouses: Vec<usize>,
    /// Scaled parcel cost of each candidate.
    parcel: Vec<i128>,
    /// Most warehouses one plan may open.
    max_open: u32,
    lines: usize,
    nw: usize,
}

fn scaled(d: Decimal, scale: u32) -> Option<i128> {
    let up = 10i128.checked_pow(scale.checked_sub(d.scale())?)?;
    d.mantissa().checked_mul(up)?.checked_mul(REFINE)
}

impl Search {
    /// Prepare order `order_index` for the search, or `None` when it has a feature the search
    /// does not model exactly (the MIP then decides it).
    pub fn new(
        problem: &AllocationProblem,
        options: &AllocationOptions,
        order_index: usize,
        pairs: &[PairCost],
        state: &State,
        only: Option<&[usize]>,
    ) -> Option<Search> {
        // Drivers couple parcels through loads and minimums.
        if !problem.drivers.is_empty() {
            return None;
        }
        let order = problem.orders.get(order_index)?;
        let nw = problem.warehouses.len();
        if pairs.len() != nw {
            return None;
        }
        let order_units = order.lines.iter().try_fold(0u64, |acc, l| {
            acc.checked_add(u64::from(l.quantity).checked_mul(u64::from(l.capacity))?)
        })?;
        // Candidates: allowed warehouses with stock of an eligible line.
        let mut warehouses = Vec::new();
        for (wi, pair) in pairs.iter().enumerate() {
            if only.is_some_and(|o| !o.contains(&wi)) {
                continue;
            }
            let w = problem.warehouses.get(wi)?;
            let stock = state.stock.get(wi)?;
            let usable = order.lines.iter().enumerate().any(|(li, l)| {
                pair.ineligible.get(li).copied().flatten().is_none()
                    && stock.get(&l.sku).copied().unwrap_or(0) > 0
            });
            if !usable {
                continue;
            }
            // A parcel capacity that the whole order fits in never binds (and no line is too
            // big for it); one that could bind needs the MIP.
            if w.parcel_capacity
                .is_some_and(|c| u64::from(c) < order_units)
            {
                return None;
            }
            // The bound splits parcel costs, which needs them non-negative (validation
            // guarantees it; this keeps the search sound for any caller).
            if w.parcel_cost.is_sign_negative() && !w.parcel_cost.is_zero() {
                return None;
            }
            warehouses.push(wi);
        }
        if warehouses.len() > 64 {
            return None;
        }
        let partial = options.allow_partial;
        // Group lines by SKU; all lines of a SKU must be priced and eligible alike.
        let mut by_sku: BTreeMap<&crate::order::Sku, Vec<usize>> = BTreeMap::new();
        for (li, l) in order.lines.iter().enumerate() {
            by_sku.entry(&l.sku).or_default().push(li);
        }
        let mut scale = if partial {
            options.unfilled_penalty.scale()
        } else {
            0
        };
        let mut unit = vec![vec![Decimal::ZERO; warehouses.len()]; order.lines.len()];
        for (bit, wi) in warehouses.iter().enumerate() {
            let pair = pairs.get(*wi)?;
            scale = scale.max(problem.warehouses.get(*wi)?.parcel_cost.scale());
            for (li, row) in unit.iter_mut().enumerate() {
                let (item, ship) = pair.unit.get(li).copied()?;
                let c = item.checked_add(ship)?;
                scale = scale.max(c.scale());
                *row.get_mut(bit)? = c;
            }
        }
        let parcel = warehouses
            .iter()
            .map(|wi| scaled(problem.warehouses.get(*wi)?.parcel_cost, scale))
            .collect::<Option<Vec<i128>>>()?;
        let penalty = if partial {
            Some(scaled(options.unfilled_penalty, scale)?)
        } else {
            None
        };
        // Sources per SKU (before the shares, which need the number of SKUs per warehouse).
        let mut groups = Vec::with_capacity(by_sku.len());
        let mut serves = vec![0i128; warehouses.len()];
        for (sku, lines) in by_sku {
            let first = *lines.first()?;
            let lines: Vec<(usize, u64)> = lines
                .iter()
                .map(|li| Some((*li, u64::from(order.lines.get(*li)?.quantity))))
                .collect::<Option<_>>()?;
            let demand = lines
                .iter()
                .try_fold(0u64, |acc, (_, q)| acc.checked_add(*q))?;
            let mut sources = Vec::new();
            for (bit, wi) in warehouses.iter().enumerate() {
                let pair = pairs.get(*wi)?;
                let eligible = pair.ineligible.get(first).copied().flatten().is_none();
                let cost = *unit.get(first)?.get(bit)?;
                for (li, _) in &lines {
                    let same = pair.ineligible.get(*li).copied().flatten().is_none() == eligible
                        && *unit.get(*li)?.get(bit)? == cost;
                    if !same {
                        return None;
                    }
                }
                let on_hand = state.stock.get(*wi)?.get(sku).copied().unwrap_or(0);
                if !eligible || on_hand == 0 {
                    continue;
                }
                *serves.get_mut(bit)? += 1;
                sources.push(Source {
                    bit: u8::try_from(bit).ok()?,
                    cost: scaled(cost, scale)?,
                    free_cost: 0,
                    stock: u64::from(on_hand),
                });
            }
            if let Some(p) = penalty {
                sources.push(Source {
                    bit: UNFILLED,
                    cost: p,
                    free_cost: p,
                    stock: demand,
                });
            }
            groups.push(Group {
                demand,
                lines,
                by_cost: sources,
                by_free: Vec::new(),
            });
        }
        // Shares, orders, and a check that no sum the search forms can overflow: every sum is
        // at most demand × the dearest unit plus every parcel, with room to spare.
        let mut ceiling = parcel.iter().try_fold(0i128, |a, p| a.checked_add(*p))?;
        for g in &mut groups {
            let mut dearest = 0i128;
            for s in &mut g.by_cost {
                if s.cost < 0 {
                    return None;
                }
                if s.bit != UNFILLED {
                    let b = usize::from(s.bit);
                    let units = i128::from(s.stock.min(g.demand));
                    let share = parcel
                        .get(b)?
                        .checked_div(serves.get(b)?.checked_mul(units)?)?;
                    s.free_cost = s.cost.checked_add(share)?;
                }
                dearest = dearest.max(s.free_cost);
            }
            ceiling = ceiling.checked_add(dearest.checked_mul(i128::from(g.demand))?)?;
            g.by_cost
                .sort_by(|a, b| a.cost.cmp(&b.cost).then(a.bit.cmp(&b.bit)));
            let mut idx: Vec<usize> = (0..g.by_cost.len())
                .filter(|i| g.by_cost.get(*i).is_some_and(|s| s.bit != UNFILLED))
                .collect();
            idx.sort_by_key(|i| g.by_cost.get(*i).map(|s| (s.free_cost, s.bit)));
            g.by_free = idx;
        }
        if ceiling > i128::MAX / 8 {
            return None;
        }
        Some(Search {
            order: order_index,
            groups,
            warehouses,
            parcel,
            max_open: options.max_splits.unwrap_or(u32::MAX),
            lines: order.lines.len(),
            nw,
        })
    }

    /// Candidate index of problem warehouse `wi`, if it is a candidate.
    pub fn candidate(&self, wi: usize) -> Option<u8> {
        self.warehouses
            .iter()
            .position(|w| *w == wi)
            .and_then(|b| u8::try_from(b).ok())
    }

    fn all(&self) -> u64 {
        if self.warehouses.len() >= 64 {
            u64::MAX
        } else {
            (1u64 << self.warehouses.len()) - 1
        }
    }

    fn parcels(&self, used: u64) -> i128 {
        let mut total = 0;
        let mut rest = used;
        while rest != 0 {
            let b = rest.trailing_zeros() as usize;
            total += self.parcel.get(b).copied().unwrap_or(0);
            rest &= rest - 1;
        }
        total
    }

    /// Cheapest plan using only warehouses in `mask` (and, when `forced` is set, shipping at
    /// least one unit from it): its scaled cost and the warehouses it uses, or `None` when
    /// `mask` cannot cover the order. With `record`, also the units per group per source.
    fn fill(
        &self,
        mask: u64,
        forced: Option<u8>,
        mut record: Option<&mut Vec<Vec<u64>>>,
    ) -> Option<(i128, u64)> {
        let mut cost = 0i128;
        let mut used = 0u64;
        // For the forced warehouse: the cheapest move of one unit onto it (group, from, to, Δ).
        let mut best_move: Option<(usize, usize, usize, i128)> = None;
        for (gi, g) in self.groups.iter().enumerate() {
            let mut left = g.demand;
            let mut last = None;
            let mut onto = None;
            for (si, s) in g.by_cost.iter().enumerate() {
                if !s.within(mask) {
                    continue;
                }
                if forced.is_some() && forced == Some(s.bit) {
                    onto = Some(si);
                }
                if left == 0 {
                    if forced.is_none() || onto.is_some() {
                        break;
                    }
                    continue;
                }
                let take = left.min(s.stock);
                left -= take;
                cost += i128::from(take) * s.cost;
                used |= s.mask();
                last = Some(si);
                if let Some(r) = record.as_deref_mut() {
                    if let Some(v) = r.get_mut(gi).and_then(|v| v.get_mut(si)) {
                        *v = take;
                    }
                }
            }
            if left > 0 {
                return None;
            }
            // Taking the group's dearest unit from the forced warehouse instead is the
            // cheapest way for this group to use it (the greedy fill of one unit less is the
            // fill minus its last unit).
            if let (Some(from), Some(to)) = (last, onto) {
                if from != to {
                    let (Some(a), Some(b)) = (g.by_cost.get(from), g.by_cost.get(to)) else {
                        continue;
                    };
                    let delta = b.cost - a.cost;
                    if best_move.is_none_or(|m| delta < m.3) {
                        best_move = Some((gi, from, to, delta));
                    }
                }
            }
        }
        if let Some(f) = forced {
            let bit = 1u64 << f;
            if used & bit == 0 {
                let (gi, from, to, delta) = best_move?;
                cost += delta;
                used |= bit;
                if let Some(r) = record {
                    if let Some(v) = r.get_mut(gi) {
                        if let Some(x) = v.get_mut(from) {
                            *x = x.saturating_sub(1);
                        }
                        if let Some(x) = v.get_mut(to) {
                            *x += 1;
                        }
                    }
                }
            }
        }
        if used.count_ones() > self.max_open {
            return None;
        }
        Some((cost + self.parcels(used), used))
    }

    /// Lower bound over every plan that opens all of `open` and possibly some of `free`, or
    /// `None` when no such plan covers the order; `score` receives the units the relaxed
    /// solution takes from each free candidate.
    fn bound(&self, open: u64, free: u64, score: &mut [u64; 64]) -> Option<i128> {
        let mut total = self.parcels(open);
        for g in &self.groups {
            let mut left = g.demand;
            let (mut i, mut j) = (0usize, 0usize);
            while left > 0 {
                while g.by_cost.get(i).is_some_and(|s| !s.within(open)) {
                    i += 1;
                }
                while g
                    .by_free
                    .get(j)
                    .and_then(|k| g.by_cost.get(*k))
                    .is_some_and(|s| free & s.mask() == 0)
                {
                    j += 1;
                }
                let a = g.by_cost.get(i);
                let b = g.by_free.get(j).and_then(|k| g.by_cost.get(*k));
                let take_open = match (a, b) {
                    (Some(a), Some(b)) => a.cost <= b.free_cost,
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                    (None, None) => return None,
                };
                if take_open {
                    let s = a?;
                    let take = left.min(s.stock);
                    left -= take;
                    total += i128::from(take) * s.cost;
                    i += 1;
                } else {
                    let s = b?;
                    let take = left.min(s.stock);
                    left -= take;
                    total += i128::from(take) * s.free_cost;
                    if let Some(x) = score.get_mut(usize::from(s.bit)) {
                        *x += take;
                    }
                    j += 1;
                }
            }
        }
        Some(total)
    }

    /// Branch and bound for the cheapest plan (that ships from candidate `forced`, if set).
    pub fn run(&self, forced: Option<u8>) -> Outcome {
        let all = self.all();
        let root_open = forced.map_or(0, |f| 1u64 << f);
        let mut best: Option<(i128, u64)> = None;
        // Only a strictly cheaper plan replaces the incumbent, so ties go to the plan found
        // first, and the search is deterministic.
        let consider = |v: Option<(i128, u64)>, best: &mut Option<(i128, u64)>| {
            if let Some((c, used)) = v {
                if best.is_none_or(|(b, _)| c < b) {
                    *best = Some((c, used));
                }
            }
        };
        consider(self.fill(all, forced, None), &mut best);
        let mut stack = vec![(root_open, all & !root_open)];
        let mut nodes = 0usize;
        let mut score = [0u64; 64];
        while let Some((open, mut free)) = stack.pop() {
            nodes += 1;
            if nodes > NODE_BUDGET {
                return Outcome::GaveUp;
            }
            if open.count_ones() >= self.max_open {
                free = 0;
            }
            if free == 0 {
                consider(self.fill(open, forced, None), &mut best);
                continue;
            }
            score.fill(0);
            let Some(lb) = self.bound(open, free, &mut score) else {
                continue;
            };
            if best.is_some_and(|(b, _)| lb >= b) {
                continue;
            }
            // The relaxed solution's warehouses form a plan; often the node's optimum.
            let mut support = open;
            for (b, units) in score.iter().enumerate() {
                if *units > 0 {
                    support |= 1u64 << b;
                }
            }
            let here = self.fill(support, forced, None);
            consider(here, &mut best);
            if here.is_some_and(|(c, _)| c <= lb) {
                continue;
            }
            // Branch on the free warehouse the relaxation leans on most (lowest index on ties);
            // open first, which finds good plans early.
            let mut pick = free.trailing_zeros() as usize;
            let mut most = 0u64;
            for (b, units) in score.iter().enumerate() {
                if *units > most && free & (1u64 << b) != 0 {
                    most = *units;
                    pick = b;
                }
            }
            let bit = 1u64 << pick;
            stack.push((open, free & !bit));
            stack.push((open | bit, free & !bit));
        }
        match best {
            Some((_, used)) => Outcome::Found(used),
            None => Outcome::Infeasible,
        }
    }

    /// The decision for the plan a search found.
    pub fn decision(
        &self,
        used: u64,
        forced: Option<u8>,
        pairs: &[PairCost],
    ) -> OmsResult<OrderDecision> {
        let mut take: Vec<Vec<u64>> = self
            .groups
            .iter()
            .map(|g| vec![0; g.by_cost.len()])
            .collect();
        if self.fill(used, forced, Some(&mut take)).is_none() {
            return Err(crate::error::OmsError::SolverFailed {
                reason: "the fast path lost its plan".into(),
            });
        }
        let mut qty = vec![vec![0u32; self.nw]; self.lines];
        let mut unfilled = vec![0u32; self.lines];
        for (g, units) in self.groups.iter().zip(&take) {
            // Hand the group's units to its lines in line order, sources in cost order.
            let mut lines = g.lines.iter().copied();
            let mut current = lines.next();
            let mut need = current.map_or(0, |(_, q)| q);
            for (s, n) in g.by_cost.iter().zip(units) {
                let mut n = *n;
                while n > 0 {
                    let Some((li, _)) = current else { break };
                    let q = n.min(need);
                    n -= q;
                    need -= q;
                    let cell = if s.bit == UNFILLED {
                        unfilled.get_mut(li)
                    } else {
                        self.warehouses
                            .get(usize::from(s.bit))
                            .and_then(|wi| qty.get_mut(li).and_then(|r| r.get_mut(*wi)))
                    };
                    // A line's units fit in u32 (its quantity does).
                    if let (Some(c), Ok(q)) = (cell, u32::try_from(q)) {
                        *c += q;
                    }
                    if need == 0 {
                        current = lines.next();
                        need = current.map_or(0, |(_, q)| q);
                    }
                }
            }
        }
        Ok(OrderDecision {
            order: self.order,
            qty,
            driver: BTreeMap::new(),
            unfilled,
            pairs: pairs.to_vec(),
            more_expensive: BTreeMap::new(),
        })
    }
}
