//! The sourcing MIP: formulation over any set of orders, and the good_lp back ends.
//!
//! Variables, per order `o`, line `l`, warehouse `w`, driver `d`:
//! `x_olw` integer units, `y_ow` binary parcel opened, `s_ol` integer unfilled units (partial
//! mode only), `z_owd` binary driver carries the parcel, `u_owd` capacity units it carries, and
//! `a_d` binary driver used (only where a minimum load binds). The linking is the strong form
//! `x_olw <= ub_olw · y_ow` per line rather than one aggregated row per parcel: its LP
//! relaxation is much tighter, so branch and bound closes in a few nodes.

use std::collections::{BTreeMap, HashMap};

use good_lp::{
    variable, Expression, ProblemVariables, ResolutionError, Solution, SolverModel,
    WithInitialSolution, WithMipGap, WithTimeLimit,
};
use rust_decimal::prelude::ToPrimitive;

use super::explain::OrderDecision;
use super::model::{AllocationOptions, AllocationProblem, PairCost};
use crate::error::OmsError;
use crate::order::Sku;

/// One order as the MIP sees it.
pub(crate) struct OrderInput<'a> {
    /// Index of the order in the problem.
    pub order: usize,
    /// Price list and eligibility per warehouse.
    pub pairs: &'a [PairCost],
}

/// Extra restrictions for one solve.
#[derive(Default, Clone)]
pub(crate) struct Restrict {
    /// Force the parcel (position in the order list, warehouse) open.
    pub force_open: Option<(usize, usize)>,
    /// Only these warehouses may ship (none: all).
    pub only: Option<Vec<usize>>,
}

/// How the search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MipStatus {
    Optimal,
    TimeLimit,
}

/// A solve's outcome: decisions per order (without `more_expensive`), status and gap.
pub(crate) struct MipOutcome {
    pub decisions: Vec<OrderDecision>,
    pub status: MipStatus,
    pub gap: f64,
}

/// Why a solve produced no plan.
#[derive(Debug)]
pub(crate) enum MipFailure {
    Infeasible,
    Failed(OmsError),
}

impl From<OmsError> for MipFailure {
    fn from(e: OmsError) -> Self {
        MipFailure::Failed(e)
    }
}

/// Solver limits.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Limits {
    pub time_limit_s: Option<f64>,
    pub mip_gap: f64,
    /// Use the HiGHS back end when the crate is built with it.
    pub prefer_highs: bool,
}

fn f(d: rust_decimal::Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::MAX)
}

struct Layout {
    /// `x[k][l][w]`
    x: Vec<Vec<Vec<Option<good_lp::Variable>>>>,
    /// `y[k][w]`
    y: Vec<Vec<Option<good_lp::Variable>>>,
    /// `s[k][l]`
    s: Vec<Vec<Option<good_lp::Variable>>>,
    /// `z[k][w]` → per driver `(z, u)`
    zu: Vec<Vec<Vec<(usize, good_lp::Variable, good_lp::Variable)>>>,
    /// `a[d]`
    a: Vec<Option<good_lp::Variable>>,
}

/// Build and solve the MIP for `orders` against `stock` and driver `loads`.
/// `warm` is an optional start (one decision per order, same order as `orders`).
#[allow(clippy::too_many_arguments)] // every argument is a distinct input of the model
pub(crate) fn solve(
    problem: &AllocationProblem,
    options: &AllocationOptions,
    orders: &[OrderInput<'_>],
    stock: &[BTreeMap<Sku, u32>],
    loads: &[u32],
    restrict: &Restrict,
    limits: Limits,
    warm: Option<&[OrderDecision]>,
) -> Result<MipOutcome, MipFailure> {
    let mut vars = ProblemVariables::new();
    let mut all: Vec<good_lp::Variable> = Vec::new();
    let mut objective = Expression::with_capacity(orders.len() * 64);
    let mut rows: Vec<good_lp::Constraint> = Vec::new();
    let mut init: Vec<(good_lp::Variable, f64)> = Vec::new();
    let nw = problem.warehouses.len();
    let mut lay = Layout {
        x: Vec::with_capacity(orders.len()),
        y: Vec::with_capacity(orders.len()),
        s: Vec::with_capacity(orders.len()),
        zu: Vec::with_capacity(orders.len()),
        a: Vec::new(),
    };
    // Stock rows, gathered per (warehouse, sku): the variables drawing on it and their bounds.
    let mut draws: BTreeMap<(usize, &Sku), (Expression, u64)> = BTreeMap::new();
    let mut driver_use: Vec<Vec<(good_lp::Variable, good_lp::Variable)>> =
        vec![Vec::new(); problem.drivers.len()];
    let room: Vec<u64> = problem
        .drivers
        .iter()
        .enumerate()
        .map(|(di, d)| {
            u64::from(d.max_capacity)
                .saturating_sub(u64::from(loads.get(di).copied().unwrap_or(d.current_load)))
        })
        .collect();

    for (k, input) in orders.iter().enumerate() {
        let order = problem
            .orders
            .get(input.order)
            .ok_or_else(|| OmsError::invalid("orders", "order index out of range"))?;
        let warm_d = warm.and_then(|w| w.get(k));
        let mut xk = vec![vec![None; nw]; order.lines.len()];
        let mut yk = vec![None; nw];
        let mut sk = vec![None; order.lines.len()];
        let mut zuk = vec![Vec::new(); nw];
        let mut parcel_units_ub = vec![0u64; nw];
        let mut link: Vec<Vec<(good_lp::Variable, f64)>> = vec![Vec::new(); nw];
        let mut cap_terms: Vec<Expression> = vec![Expression::default(); nw];
        for (li, line) in order.lines.iter().enumerate() {
            let mut demand = Expression::default();
            for wi in 0..nw {
                let (Some(pair), Some(w)) = (input.pairs.get(wi), problem.warehouses.get(wi))
                else {
                    continue;
                };
                if pair.ineligible.get(li).copied().flatten().is_some() {
                    continue;
                }
                if let Some(only) = &restrict.only {
                    if !only.contains(&wi) {
                        continue;
                    }
                }
                let on_hand = stock
                    .get(wi)
                    .and_then(|s| s.get(&line.sku))
                    .copied()
                    .unwrap_or(0);
                let mut ub = line.quantity.min(on_hand);
                if let (Some(c), true) = (w.parcel_capacity, line.capacity > 0) {
                    ub = ub.min(c / line.capacity);
                }
                if ub == 0 {
                    continue;
                }
                let (item, ship) = pair.unit.get(li).copied().unwrap_or_default();
                let x = add(&mut vars, &mut all, variable().integer().min(0).max(ub));
                objective.add_mul(f(item) + f(ship), x);
                demand.add_mul(1.0, x);
                link[wi].push((x, f64::from(ub)));
                cap_terms[wi].add_mul(f64::from(line.capacity), x);
                parcel_units_ub[wi] += u64::from(ub) * u64::from(line.capacity);
                let e = draws
                    .entry((wi, &line.sku))
                    .or_insert_with(|| (Expression::default(), 0));
                e.0.add_mul(1.0, x);
                e.1 += u64::from(ub);
                if let Some(wd) = warm_d {
                    let v = wd.qty.get(li).and_then(|r| r.get(wi)).copied().unwrap_or(0);
                    init.push((x, f64::from(v)));
                }
                xk[li][wi] = Some(x);
            }
            if options.allow_partial {
                let s = add(
                    &mut vars,
                    &mut all,
                    variable().integer().min(0).max(line.quantity),
                );
                objective.add_mul(f(options.unfilled_penalty), s);
                demand.add_mul(1.0, s);
                if let Some(wd) = warm_d {
                    let v = wd.unfilled.get(li).copied().unwrap_or(0);
                    init.push((s, f64::from(v)));
                }
                sk[li] = Some(s);
            }
            rows.push(demand.eq(f64::from(line.quantity)));
        }
        let mut splits = Expression::default();
        for wi in 0..nw {
            if link[wi].is_empty() {
                continue;
            }
            let Some(w) = problem.warehouses.get(wi) else {
                continue;
            };
            let forced = restrict.force_open == Some((k, wi));
            let y = add(
                &mut vars,
                &mut all,
                variable()
                    .binary()
                    .min(if forced { 1.0 } else { 0.0 })
                    .max(1.0),
            );
            objective.add_mul(f(w.parcel_cost), y);
            splits.add_mul(1.0, y);
            let open =
                warm_d.is_some_and(|wd| wd.qty.iter().any(|r| r.get(wi).copied().unwrap_or(0) > 0));
            if warm_d.is_some() {
                init.push((y, if open { 1.0 } else { 0.0 }));
            }
            let mut ships = Expression::default();
            for (x, ub) in &link[wi] {
                rows.push((Expression::from(*x) - *ub * y).leq(0.0));
                ships.add_mul(1.0, *x);
            }
            if forced {
                // A forced parcel must carry something, or forcing it would prove nothing.
                rows.push(ships.geq(1.0));
            }
            if let Some(c) = w.parcel_capacity {
                if parcel_units_ub[wi] > u64::from(c) {
                    let e = std::mem::take(&mut cap_terms[wi]);
                    rows.push((e.clone() - f64::from(c) * y).leq(0.0));
                    cap_terms[wi] = e;
                }
            }
            if !problem.drivers.is_empty() {
                let mut pick = Expression::default();
                let mut carried = Expression::default();
                for (di, r) in room.iter().enumerate() {
                    if *r == 0 && parcel_units_ub[wi] > 0 {
                        continue;
                    }
                    let m = (*r).min(parcel_units_ub[wi]) as f64;
                    let z = add(&mut vars, &mut all, variable().binary());
                    let u = add(&mut vars, &mut all, variable().min(0.0).max(m));
                    rows.push((Expression::from(u) - m * z).leq(0.0));
                    pick.add_mul(1.0, z);
                    carried.add_mul(1.0, u);
                    if let Some(wd) = warm_d {
                        let chosen = open && wd.driver.get(&wi) == Some(&di);
                        let units: u64 = if chosen {
                            wd.qty
                                .iter()
                                .zip(&order.lines)
                                .map(|(r, l)| {
                                    u64::from(r.get(wi).copied().unwrap_or(0))
                                        * u64::from(l.capacity)
                                })
                                .sum()
                        } else {
                            0
                        };
                        init.push((z, if chosen { 1.0 } else { 0.0 }));
                        init.push((u, units as f64));
                    }
                    if let Some(v) = driver_use.get_mut(di) {
                        v.push((z, u));
                    }
                    zuk[wi].push((di, z, u));
                }
                rows.push((pick - y).eq(0.0));
                let cap = std::mem::take(&mut cap_terms[wi]);
                rows.push((carried - cap).eq(0.0));
            }
            yk[wi] = Some(y);
        }
        if let Some(m) = options.max_splits {
            rows.push(splits.leq(f64::from(m)));
        }
        lay.x.push(xk);
        lay.y.push(yk);
        lay.s.push(sk);
        lay.zu.push(zuk);
    }
    for ((wi, sku), (expr, ub)) in draws {
        let on_hand = stock.get(wi).and_then(|s| s.get(sku)).copied().unwrap_or(0);
        if ub > u64::from(on_hand) {
            rows.push(expr.leq(f64::from(on_hand)));
        }
    }
    for (di, d) in problem.drivers.iter().enumerate() {
        let Some(uses) = driver_use.get(di) else {
            continue;
        };
        if uses.is_empty() {
            lay.a.push(None);
            continue;
        }
        let r = room.get(di).copied().unwrap_or(0) as f64;
        let mut total = Expression::default();
        for (_, u) in uses {
            total.add_mul(1.0, *u);
        }
        let load = loads.get(di).copied().unwrap_or(d.current_load);
        if d.min_capacity > load {
            let a = add(&mut vars, &mut all, variable().binary());
            for (z, _) in uses {
                rows.push((Expression::from(*z) - a).leq(0.0));
            }
            let need = f64::from(d.min_capacity - load);
            rows.push((total.clone() - need * a).geq(0.0));
            rows.push((total - r * a).leq(0.0));
            if let Some(wd) = warm {
                let used = wd.iter().any(|o| o.driver.values().any(|x| *x == di));
                init.push((a, if used { 1.0 } else { 0.0 }));
            }
            lay.a.push(Some(a));
        } else {
            rows.push(total.leq(r));
            lay.a.push(None);
        }
    }

    let unsolved = vars.minimise(objective);
    let (values, status, gap) = run(unsolved, rows, limits, &init, warm.is_some(), &all)?;
    let mut decisions = Vec::with_capacity(orders.len());
    for (k, input) in orders.iter().enumerate() {
        let xk = lay.x.get(k).map(Vec::as_slice).unwrap_or_default();
        let qty: Vec<Vec<u32>> = xk
            .iter()
            .map(|row| {
                row.iter()
                    .map(|x| x.map_or(0, |x| values.get(x).round().max(0.0) as u32))
                    .collect()
            })
            .collect();
        let unfilled: Vec<u32> = lay
            .s
            .get(k)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|s| s.map_or(0, |s| values.get(s).round().max(0.0) as u32))
            .collect();
        let mut driver = BTreeMap::new();
        if let Some(zuk) = lay.zu.get(k) {
            for (wi, options) in zuk.iter().enumerate() {
                for (di, z, _) in options {
                    if values.get(*z) > 0.5 {
                        driver.insert(wi, *di);
                    }
                }
            }
        }
        decisions.push(OrderDecision {
            order: input.order,
            qty,
            driver,
            unfilled,
            pairs: input.pairs.to_vec(),
            more_expensive: BTreeMap::new(),
        });
    }
    Ok(MipOutcome {
        decisions,
        status,
        gap,
    })
}

fn add(
    vars: &mut ProblemVariables,
    all: &mut Vec<good_lp::Variable>,
    def: good_lp::VariableDefinition,
) -> good_lp::Variable {
    let v = vars.add(def);
    all.push(v);
    v
}

/// Variable values of a solved model.
struct Values(HashMap<good_lp::Variable, f64>);

impl Values {
    fn read(sol: &impl Solution, all: &[good_lp::Variable]) -> Values {
        Values(all.iter().map(|v| (*v, sol.value(*v))).collect())
    }

    fn get(&self, v: good_lp::Variable) -> f64 {
        self.0.get(&v).copied().unwrap_or(0.0)
    }
}

fn failure(e: ResolutionError) -> MipFailure {
    match e {
        ResolutionError::Infeasible => MipFailure::Infeasible,
        other => MipFailure::Failed(OmsError::SolverFailed {
            reason: other.to_string(),
        }),
    }
}

fn run(
    unsolved: good_lp::variable::UnsolvedProblem,
    rows: Vec<good_lp::Constraint>,
    limits: Limits,
    init: &[(good_lp::Variable, f64)],
    warm: bool,
    all: &[good_lp::Variable],
) -> Result<(Values, MipStatus, f64), MipFailure> {
    #[cfg(feature = "highs")]
    if limits.prefer_highs {
        let mut model = unsolved.using(good_lp::solvers::highs::highs);
        for r in rows {
            model.add_constraint(r);
        }
        if let Some(t) = limits.time_limit_s {
            model = model.set_time_limit(t);
        }
        if warm {
            model = model.with_initial_solution(init.iter().copied());
        }
        model = model
            .set_mip_rel_gap(limits.mip_gap as f32)
            .map_err(|e| MipFailure::Failed(OmsError::invalid("mip_gap", e.to_string())))?;
        let sol = model.solve().map_err(failure)?;
        let status = match sol.status() {
            good_lp::SolutionStatus::Optimal => MipStatus::Optimal,
            _ => MipStatus::TimeLimit,
        };
        return Ok((Values::read(&sol, all), status, 0.0));
    }
    let _ = limits.prefer_highs;
    let mut model = unsolved.using(good_lp::solvers::microlp::microlp);
    for r in rows {
        model.add_constraint(r);
    }
    if let Some(t) = limits.time_limit_s {
        model = model.with_time_limit(t);
    }
    if warm {
        model = model.with_initial_solution(init.iter().copied());
    }
    model = model
        .with_mip_gap(limits.mip_gap as f32)
        .map_err(|e| MipFailure::Failed(OmsError::invalid("mip_gap", e.to_string())))?;
    let sol = model.solve().map_err(failure)?;
    let status = match sol.status() {
        good_lp::SolutionStatus::Optimal => MipStatus::Optimal,
        _ => MipStatus::TimeLimit,
    };
    let values = Values::read(&sol, all);
    let gap = if status == MipStatus::Optimal {
        0.0
    } else {
        sol.into_inner().gap().unwrap_or(f64::INFINITY)
    };
    Ok((values, status, gap))
}
