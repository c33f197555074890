//! Plans and their explanations: the parcels chosen, their exact cost breakdown, estimated
//! times, and why every other warehouse and driver was not chosen.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::model::{distance_decimal, haversine_km, AllocationOptions, AllocationProblem};
use super::model::{Ineligible, PairCost};
use crate::error::{OmsError, OmsResult};
use crate::order::Sku;
use crate::time::{Duration, Timestamp};

/// How the plan was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    /// Proven optimal for the chosen strategy's model.
    Optimal,
    /// The time limit ended the search; the plan is the best found and `gap` bounds its excess.
    TimeLimit,
    /// A valid plan from a heuristic strategy, with no optimality claim.
    Feasible,
    /// No plan meets every constraint.
    Infeasible,
}

/// The strategy that made a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Exact per order (subset search, MIP where needed), orders served in turn against the
    /// remaining stock.
    Optimal,
    /// All orders at once, competing for shared stock (price-and-repair, then one MIP).
    Batch,
    /// Greedy fill from the nearest warehouse outwards.
    Nearest,
    /// Greedy fill along a ranked warehouse list.
    Priority,
    /// Seed 004 pre-checkout model: only the session's locked warehouse.
    Hyperlocal,
}

/// Units of one SKU in a parcel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParcelLine {
    /// The SKU.
    pub sku: Sku,
    /// Units shipped in this parcel.
    pub quantity: u32,
}

/// Exact cost breakdown of one parcel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParcelCost {
    /// Item cost of every unit at this warehouse.
    pub items: Decimal,
    /// Distance-based shipping of every unit.
    pub shipping: Decimal,
    /// The warehouse's cost for opening the parcel.
    pub parcel: Decimal,
    /// Sum of the three.
    pub total: Decimal,
}

/// One shipment: an order's units from one warehouse, carried by one driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parcel {
    /// Order id.
    pub order: String,
    /// Warehouse id.
    pub warehouse: String,
    /// Driver id, when drivers are planned.
    pub driver: Option<String>,
    /// What is in the parcel.
    pub lines: Vec<ParcelLine>,
    /// Capacity units the parcel takes.
    pub capacity_units: u64,
    /// Great-circle km from warehouse to customer, to the metre.
    pub distance_km: Decimal,
    /// Cost breakdown.
    pub cost: ParcelCost,
    /// When the driver collects the parcel.
    pub estimated_pickup: Timestamp,
    /// When the parcel reaches the customer.
    pub estimated_delivery: Timestamp,
}

/// Units of an order line that no warehouse ships (only with partial fulfilment allowed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unfilled {
    /// Order id.
    pub order: String,
    /// The SKU.
    pub sku: Sku,
    /// Units not shipped.
    pub quantity: u32,
    /// Penalty charged for them.
    pub penalty: Decimal,
}

/// What an explanation entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// A warehouse.
    Warehouse,
    /// A driver.
    Driver,
}

/// Why a warehouse or driver was, or was not, chosen for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// It is part of the plan.
    Chosen,
    /// It holds none of the order's SKUs.
    NoStock,
    /// It is farther than the order's SLA allows.
    OutsideSla {
        /// Its distance to the customer, km.
        distance_km: Decimal,
        /// The SLA radius, km.
        radius_km: Decimal,
    },
    /// One unit of each SKU it stocks is bigger than its parcel capacity.
    ParcelTooSmall {
        /// Its parcel capacity.
        capacity: u32,
        /// The capacity units needed.
        needed: u32,
    },
    /// The driver's load would pass its maximum.
    OverCapacity {
        /// Load before this order.
        current_load: u64,
        /// Capacity units the order adds.
        adding: u64,
        /// The driver's maximum.
        max_capacity: u32,
    },
    /// The driver would end below its minimum load.
    BelowMinCapacity {
        /// Load it would end at.
        ending_load: u64,
        /// The driver's minimum.
        min_capacity: u32,
    },
    /// Using it costs this much more than the plan.
    MoreExpensive {
        /// Extra cost of the cheapest plan that uses it.
        by: Decimal,
    },
    /// It could have served, but the plan did not need it.
    NotNeeded,
}

/// One entry of a plan's explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// Order id.
    pub order: String,
    /// Warehouse or driver.
    pub subject: Subject,
    /// Its id.
    pub id: String,
    /// The decision and why.
    #[serde(flatten)]
    pub reason: Reason,
}

/// An allocation plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// How the plan was obtained.
    pub status: PlanStatus,
    /// The strategy that made it.
    pub strategy: Strategy,
    /// Exact total: every parcel's total plus unfilled penalties.
    pub total_cost: Decimal,
    /// Relative optimality gap (0 when proven optimal or not applicable).
    pub gap: f64,
    /// The shipments.
    pub parcels: Vec<Parcel>,
    /// Units not shipped (partial fulfilment only).
    pub unfilled: Vec<Unfilled>,
    /// Why each warehouse and driver was or was not chosen.
    pub explanation: Vec<Explanation>,
}

/// A strategy's decision for one order, before pricing: units per line per warehouse.
#[derive(Debug, Clone)]
pub(crate) struct OrderDecision {
    /// Index of the order in the problem.
    pub order: usize,
    /// `qty[line][warehouse]`.
    pub qty: Vec<Vec<u32>>,
    /// Driver index carrying the parcel from each warehouse.
    pub driver: BTreeMap<usize, usize>,
    /// Unfilled units per line.
    pub unfilled: Vec<u32>,
    /// The price list and eligibility at decision time, per warehouse.
    pub pairs: Vec<PairCost>,
    /// Extra cost of the cheapest plan that opens each unused warehouse, when priced.
    pub more_expensive: BTreeMap<usize, Decimal>,
}

fn add(a: Decimal, b: Decimal) -> OmsResult<Decimal> {
    a.checked_add(b)
        .ok_or_else(|| OmsError::overflow("allocation cost"))
}

fn mul(a: Decimal, n: u64) -> OmsResult<Decimal> {
    a.checked_mul(Decimal::from(n))
        .ok_or_else(|| OmsError::overflow("allocation cost"))
}

/// Travel time at the configured speed, rounded up to the whole minute.
fn travel(km: f64, options: &AllocationOptions) -> Duration {
    let minutes = (km / options.driver_speed_kmh * 60.0 - 1e-9)
        .ceil()
        .max(0.0);
    Duration::minutes(minutes as i64)
}

impl OrderDecision {
    /// Exact cost of this decision: (parcels with their units, unfilled penalty total).
    pub fn cost(
        &self,
        problem: &AllocationProblem,
        options: &AllocationOptions,
    ) -> OmsResult<Decimal> {
        let mut total = Decimal::ZERO;
        for (wi, _) in problem.warehouses.iter().enumerate() {
            if let Some(c) = self.parcel_cost(problem, wi)? {
                total = add(total, c.total)?;
            }
        }
        for u in &self.unfilled {
            total = add(total, mul(options.unfilled_penalty, u64::from(*u))?)?;
        }
        Ok(total)
    }

    fn units_at(&self, wi: usize) -> u64 {
        self.qty
            .iter()
            .map(|row| u64::from(row.get(wi).copied().unwrap_or(0)))
            .sum()
    }

    fn parcel_cost(&self, problem: &AllocationProblem, wi: usize) -> OmsResult<Option<ParcelCost>> {
        if self.units_at(wi) == 0 {
            return Ok(None);
        }
        let (Some(w), Some(pair)) = (problem.warehouses.get(wi), self.pairs.get(wi)) else {
            return Ok(None);
        };
        let mut items = Decimal::ZERO;
        let mut shipping = Decimal::ZERO;
        for (li, row) in self.qty.iter().enumerate() {
            let q = u64::from(row.get(wi).copied().unwrap_or(0));
            if q == 0 {
                continue;
            }
            let (item, ship) = pair.unit.get(li).copied().unwrap_or_default();
            items = add(items, mul(item, q)?)?;
            shipping = add(shipping, mul(ship, q)?)?;
        }
        let total = add(add(items, shipping)?, w.parcel_cost)?;
        Ok(Some(ParcelCost {
            items: items.normalize(),
            shipping: shipping.normalize(),
            parcel: w.parcel_cost.normalize(),
            total: total.normalize(),
        }))
    }
}

fn warehouse_reason(d: &OrderDecision, wi: usize) -> Reason {
    let Some(pair) = d.pairs.get(wi) else {
        return Reason::NotNeeded;
    };
    if let Some(by) = d.more_expensive.get(&wi) {
        return Reason::MoreExpensive { by: *by };
    }
    if pair.ineligible.iter().any(Option::is_none) {
        return Reason::NotNeeded;
    }
    match pair.ineligible.first().copied().flatten() {
        Some(Ineligible::OutsideSla {
            distance_km,
            radius_km,
        }) => Reason::OutsideSla {
            distance_km: distance_decimal(distance_km),
            radius_km: distance_decimal(radius_km),
        },
        Some(Ineligible::ParcelTooSmall { capacity, needed }) => {
            Reason::ParcelTooSmall { capacity, needed }
        }
        Some(Ineligible::NoStock) | None => Reason::NoStock,
    }
}

/// Price, time and explain a set of order decisions (in the order they are given, which is the
/// order drivers' loads accumulate in).
pub(crate) fn build_plan(
    problem: &AllocationProblem,
    options: &AllocationOptions,
    decisions: &[OrderDecision],
    strategy: Strategy,
    status: PlanStatus,
    gap: f64,
) -> OmsResult<Plan> {
    let mut loads: Vec<u64> = problem
        .drivers
        .iter()
        .map(|d| u64::from(d.current_load))
        .collect();
    let mut parcels = Vec::new();
    let mut unfilled = Vec::new();
    let mut explanation = Vec::new();
    let mut total = Decimal::ZERO;
    for d in decisions {
        let Some(order) = problem.orders.get(d.order) else {
            continue;
        };
        let mut order_units = 0u64;
        let mut carried: BTreeMap<usize, u64> = BTreeMap::new();
        for (wi, w) in problem.warehouses.iter().enumerate() {
            let Some(cost) = d.parcel_cost(problem, wi)? else {
                explanation.push(Explanation {
                    order: order.id.clone(),
                    subject: Subject::Warehouse,
                    id: w.id.clone(),
                    reason: warehouse_reason(d, wi),
                });
                continue;
            };
            explanation.push(Explanation {
                order: order.id.clone(),
                subject: Subject::Warehouse,
                id: w.id.clone(),
                reason: Reason::Chosen,
            });
            let mut lines = Vec::new();
            let mut units = 0u64;
            for (li, row) in d.qty.iter().enumerate() {
                let q = row.get(wi).copied().unwrap_or(0);
                if q == 0 {
                    continue;
                }
                if let Some(l) = order.lines.get(li) {
                    units += u64::from(q) * u64::from(l.capacity);
                    match lines.iter_mut().find(|p: &&mut ParcelLine| p.sku == l.sku) {
                        Some(p) => p.quantity += q,
                        None => lines.push(ParcelLine {
                            sku: l.sku.clone(),
                            quantity: q,
                        }),
                    }
                }
            }
            order_units += units;
            let driver = d.driver.get(&wi).and_then(|di| problem.drivers.get(*di));
            let ready = options.now.plus(options.handling);
            let pickup = match driver {
                Some(dr) => {
                    let arrive = options
                        .now
                        .plus(travel(haversine_km(dr.location, w.location), options));
                    arrive.max(ready)
                }
                None => ready,
            };
            let km = d.pairs.get(wi).map_or(0.0, |p| p.distance_km);
            if let Some(di) = d.driver.get(&wi) {
                *carried.entry(*di).or_default() += units;
            }
            total = add(total, cost.total)?;
            parcels.push(Parcel {
                order: order.id.clone(),
                warehouse: w.id.clone(),
                driver: driver.map(|dr| dr.id.clone()),
                lines,
                capacity_units: units,
                distance_km: d.pairs.get(wi).map_or(Decimal::ZERO, |p| p.distance),
                cost,
                estimated_pickup: pickup,
                estimated_delivery: pickup.plus(travel(km, options)),
            });
        }
        for (di, dr) in problem.drivers.iter().enumerate() {
            let before = loads.get(di).copied().unwrap_or(0);
            let reason = if carried.contains_key(&di) {
                Reason::Chosen
            } else if before + order_units > u64::from(dr.max_capacity) {
                Reason::OverCapacity {
                    current_load: before,
                    adding: order_units,
                    max_capacity: dr.max_capacity,
                }
            } else if before + order_units < u64::from(dr.min_capacity) {
                Reason::BelowMinCapacity {
                    ending_load: before + order_units,
                    min_capacity: dr.min_capacity,
                }
            } else {
                Reason::NotNeeded
            };
            explanation.push(Explanation {
                order: order.id.clone(),
                subject: Subject::Driver,
                id: dr.id.clone(),
                reason,
            });
        }
        for (di, units) in carried {
            if let Some(l) = loads.get_mut(di) {
                *l += units;
            }
        }
        for (li, u) in d.unfilled.iter().enumerate() {
            if *u == 0 {
                continue;
            }
            if let Some(l) = order.lines.get(li) {
                let penalty = mul(options.unfilled_penalty, u64::from(*u))?;
                total = add(total, penalty)?;
                unfilled.push(Unfilled {
                    order: order.id.clone(),
                    sku: l.sku.clone(),
                    quantity: *u,
                    penalty: penalty.normalize(),
                });
            }
        }
    }
    Ok(Plan {
        status,
        strategy,
        total_cost: total.normalize(),
        gap,
        parcels,
        unfilled,
        explanation,
    })
}
