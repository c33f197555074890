//! The allocation problem: warehouses, drivers, orders and shipping rates, their validation,
//! and the exact per-unit cost table every strategy prices plans with.

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{OmsError, OmsResult};
use crate::order::{GeoPoint, Sku, MAX_LINE_QUANTITY};
use crate::time::{Duration, Timestamp};

/// Mean Earth radius used for great-circle distances, in km.
pub const EARTH_RADIUS_KM: f64 = 6371.0;

/// How quickly an order must arrive; decides which warehouses are close enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Sla {
    /// Delivered today: only warehouses within [`AllocationOptions::same_day_radius_km`].
    SameDay,
    /// Delivered tomorrow: only warehouses within [`AllocationOptions::next_day_radius_km`].
    NextDay,
    /// No distance limit.
    Standard,
}

/// A stocking location that can ship parcels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warehouse {
    /// Unique warehouse id.
    pub id: String,
    /// Where it is.
    pub location: GeoPoint,
    /// Units on hand per SKU.
    #[serde(default)]
    pub stock: BTreeMap<Sku, u32>,
    /// Cost of one unit per SKU at this warehouse (absent means zero).
    #[serde(default)]
    pub item_cost: BTreeMap<Sku, Decimal>,
    /// Cost of opening one parcel (one order's shipment) here.
    #[serde(default)]
    pub parcel_cost: Decimal,
    /// Most capacity units one parcel from here may hold (none: unlimited).
    #[serde(default)]
    pub parcel_capacity: Option<u32>,
}

/// A driver who picks parcels up at warehouses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Driver {
    /// Unique driver id.
    pub id: String,
    /// Where the driver is now.
    pub location: GeoPoint,
    /// Capacity units already on board.
    #[serde(default)]
    pub current_load: u32,
    /// A driver given any parcel must end with at least this load.
    #[serde(default)]
    pub min_capacity: u32,
    /// The load the driver may never exceed.
    pub max_capacity: u32,
}

/// One line of an order to allocate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// The SKU ordered.
    pub sku: Sku,
    /// Units ordered (1 ..= [`MAX_LINE_QUANTITY`]).
    pub quantity: u32,
    /// Capacity units one unit takes in a vehicle.
    #[serde(default)]
    pub capacity: u32,
}

/// An order to allocate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllocationOrder {
    /// Unique order id.
    pub id: String,
    /// Where the parcels go.
    pub customer_location: GeoPoint,
    /// Delivery promise.
    pub sla: Sla,
    /// What was ordered.
    pub lines: Vec<OrderLine>,
}

/// Shipping tariff: each unit costs `base_per_unit + per_unit_km × km`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippingRates {
    /// Fixed shipping cost per unit.
    pub base_per_unit: Decimal,
    /// Shipping cost per unit per great-circle km.
    pub per_unit_km: Decimal,
}

/// Everything an allocation decides over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllocationProblem {
    /// Warehouses, in the default priority order.
    pub warehouses: Vec<Warehouse>,
    /// Drivers; when empty, parcels are planned without a driver.
    #[serde(default)]
    pub drivers: Vec<Driver>,
    /// Orders, in arrival order (per-order strategies serve them in this order).
    pub orders: Vec<AllocationOrder>,
    /// Shipping tariff.
    pub shipping: ShippingRates,
}

/// Knobs shared by every strategy.
#[derive(Debug, Clone, PartialEq)]
pub struct AllocationOptions {
    /// Ship what can be shipped and report the rest as unfilled instead of refusing the order.
    pub allow_partial: bool,
    /// Cost charged per unfilled unit when `allow_partial` is set.
    pub unfilled_penalty: Decimal,
    /// Most parcels (warehouses) one order may be split into.
    pub max_splits: Option<u32>,
    /// Radius for [`Sla::SameDay`], in km.
    pub same_day_radius_km: f64,
    /// Radius for [`Sla::NextDay`], in km (none: unlimited).
    pub next_day_radius_km: Option<f64>,
    /// Time budget for the batch solver, in milliseconds.
    pub time_limit_ms: Option<u64>,
    /// Relative MIP gap at which the batch solver may stop.
    pub mip_gap: f64,
    /// Price-and-repair rounds that build the batch solver's starting plan (0: start from the
    /// plain per-order plan). Each round solves every order twice.
    pub batch_rounds: u32,
    /// Warehouse ids in priority order for the `priority` strategy (none: input order).
    pub priority: Vec<String>,
    /// When the plan is made; estimated times count from here.
    pub now: Timestamp,
    /// Time a warehouse needs to pick and pack a parcel.
    pub handling: Duration,
    /// Average driver speed, km/h, for estimated times.
    pub driver_speed_kmh: f64,
    /// Price each rejected warehouse by re-solving with it forced open (one extra solve per
    /// warehouse; turn off where only the plan matters).
    pub explain_alternatives: bool,
}

impl Default for AllocationOptions {
    fn default() -> Self {
        AllocationOptions {
            allow_partial: false,
            unfilled_penalty: Decimal::from(1000),
            max_splits: None,
            same_day_radius_km: 50.0,
            next_day_radius_km: None,
            time_limit_ms: None,
            mip_gap: 0.0,
            batch_rounds: 6,
            priority: Vec::new(),
            now: Timestamp(0),
            handling: Duration::minutes(30),
            driver_speed_kmh: 30.0,
            explain_alternatives: true,
        }
    }
}

/// Great-circle distance between two points, in km (haversine, radius 6371 km).
///
/// ```
/// use oms_core::allocation::haversine_km;
/// use oms_core::order::GeoPoint;
/// let ny = GeoPoint { lat: 40.7128, lng: -74.0060 };
/// let la = GeoPoint { lat: 34.0522, lng: -118.2437 };
/// assert!((haversine_km(ny, la) - 3935.7).abs() < 1.0);
/// ```
pub fn haversine_km(a: GeoPoint, b: GeoPoint) -> f64 {
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlng = (b.lng - a.lng).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlng / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// A distance as an exact decimal, to the metre, so costs derived from it are reproducible.
pub fn distance_decimal(km: f64) -> Decimal {
    // Distances are at most half the Earth's circumference, so this never fails; zero is a
    // safe fallback for the impossible non-finite case.
    Decimal::from_f64_retain((km * 1000.0).round() / 1000.0)
        .unwrap_or_default()
        .round_dp(3)
        .normalize()
}

// The field path is built only when the check fails: validation runs on every allocation, and
// naming every field up front would format a string per field per call.
fn check_id(field: impl FnOnce() -> String, id: &str) -> OmsResult<()> {
    if id.trim().is_empty() {
        return Err(OmsError::MissingField { field: field() });
    }
    Ok(())
}

fn check_point(field: impl FnOnce() -> String, p: GeoPoint) -> OmsResult<()> {
    GeoPoint::new(p.lat, p.lng)
        .map(|_| ())
        .map_err(|e| match e {
            OmsError::InvalidField { field: f, reason } => {
                OmsError::invalid(format!("{}.{f}", field()), reason)
            }
            other => other,
        })
}

fn check_cost(field: impl FnOnce() -> String, d: Decimal) -> OmsResult<()> {
    if d.is_sign_negative() && !d.is_zero() {
        return Err(OmsError::invalid(field(), "must not be negative"));
    }
    Ok(())
}

impl AllocationProblem {
    /// Check every field; the error names the first offending field by its JSON path.
    pub fn validate(&self) -> OmsResult<()> {
        let mut ids = BTreeSet::new();
        for (i, w) in self.warehouses.iter().enumerate() {
            let f = || format!("warehouses[{i}]");
            check_id(|| format!("{}.id", f()), &w.id)?;
            if !ids.insert(w.id.as_str()) {
                return Err(OmsError::invalid(
                    format!("{}.id", f()),
                    "duplicate warehouse id",
                ));
            }
            check_point(|| format!("{}.location", f()), w.location)?;
            check_cost(|| format!("{}.parcel_cost", f()), w.parcel_cost)?;
            for (sku, c) in &w.item_cost {
                check_cost(|| format!("{}.item_cost.{sku}", f()), *c)?;
            }
        }
        let mut ids = BTreeSet::new();
        for (i, d) in self.drivers.iter().enumerate() {
            let f = || format!("drivers[{i}]");
            check_id(|| format!("{}.id", f()), &d.id)?;
            if !ids.insert(d.id.as_str()) {
                return Err(OmsError::invalid(
                    format!("{}.id", f()),
                    "duplicate driver id",
                ));
            }
            check_point(|| format!("{}.location", f()), d.location)?;
            if d.min_capacity > d.max_capacity {
                return Err(OmsError::invalid(
                    format!("{}.min_capacity", f()),
                    "must not exceed max_capacity",
                ));
            }
        }
        let mut ids = BTreeSet::new();
        for (i, o) in self.orders.iter().enumerate() {
            let f = || format!("orders[{i}]");
            check_id(|| format!("{}.id", f()), &o.id)?;
            if !ids.insert(o.id.as_str()) {
                return Err(OmsError::invalid(
                    format!("{}.id", f()),
                    "duplicate order id",
                ));
            }
            check_point(|| format!("{}.customer_location", f()), o.customer_location)?;
            if o.lines.is_empty() {
                return Err(OmsError::MissingField {
                    field: format!("{}.lines", f()),
                });
            }
            for (j, l) in o.lines.iter().enumerate() {
                if l.quantity == 0 || u64::from(l.quantity) > MAX_LINE_QUANTITY {
                    return Err(OmsError::invalid(
                        format!("{}.lines[{j}].quantity", f()),
                        "must be within 1..=1000000",
                    ));
                }
            }
        }
        check_cost(
            || "shipping.base_per_unit".to_owned(),
            self.shipping.base_per_unit,
        )?;
        check_cost(
            || "shipping.per_unit_km".to_owned(),
            self.shipping.per_unit_km,
        )?;
        Ok(())
    }

    /// Index of the warehouse with this id.
    pub fn warehouse_index(&self, id: &str) -> OmsResult<usize> {
        self.warehouses
            .iter()
            .position(|w| w.id == id)
            .ok_or_else(|| OmsError::UnknownWarehouse {
                warehouse: id.to_owned(),
            })
    }
}

impl AllocationOptions {
    /// The SLA radius in km, or `None` when the SLA has no distance limit.
    pub fn radius_km(&self, sla: Sla) -> Option<f64> {
        match sla {
            Sla::SameDay => Some(self.same_day_radius_km),
            Sla::NextDay => self.next_day_radius_km,
            Sla::Standard => None,
        }
    }

    /// Check the option values.
    pub fn validate(&self) -> OmsResult<()> {
        check_cost(|| "unfilled_penalty".to_owned(), self.unfilled_penalty)?;
        if self.max_splits == Some(0) {
            return Err(OmsError::invalid("max_splits", "must be at least 1"));
        }
        if !(self.same_day_radius_km.is_finite() && self.same_day_radius_km >= 0.0) {
            return Err(OmsError::invalid(
                "same_day_radius_km",
                "must be a finite km >= 0",
            ));
        }
        if !(self.mip_gap.is_finite() && self.mip_gap >= 0.0) {
            return Err(OmsError::invalid("mip_gap", "must be a finite number >= 0"));
        }
        if !(self.driver_speed_kmh.is_finite() && self.driver_speed_kmh > 0.0) {
            return Err(OmsError::invalid("driver_speed_kmh", "must be > 0"));
        }
        Ok(())
    }
}

/// Why a warehouse cannot ship a given order line at all.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Ineligible {
    /// Outside the order's SLA radius.
    OutsideSla { distance_km: f64, radius_km: f64 },
    /// No unit of the SKU on hand.
    NoStock,
    /// One unit is bigger than the warehouse's parcel capacity.
    ParcelTooSmall { capacity: u32, needed: u32 },
}

/// The exact price list of one (order, warehouse) pair: distance and per-line unit costs.
#[derive(Debug, Clone)]
pub(crate) struct PairCost {
    pub distance_km: f64,
    pub distance: Decimal,
    /// Per line: the item cost and the shipping cost of one unit.
    pub unit: Vec<(Decimal, Decimal)>,
    /// Per line: why this warehouse cannot ship it, if it cannot.
    pub ineligible: Vec<Option<Ineligible>>,
}

/// Cost table of a whole problem, `pairs[order][warehouse]`.
#[derive(Debug, Clone)]
pub(crate) struct CostTable {
    pub pairs: Vec<Vec<PairCost>>,
}

fn checked(a: Option<Decimal>, what: &str) -> OmsResult<Decimal> {
    a.ok_or_else(|| OmsError::overflow(what))
}

impl CostTable {
    /// Price every (order, line, warehouse) against the stock in `stock` (indexed like the
    /// problem's warehouses).
    pub fn build(
        problem: &AllocationProblem,
        options: &AllocationOptions,
        stock: &[BTreeMap<Sku, u32>],
    ) -> OmsResult<CostTable> {
        let pairs = (0..problem.orders.len())
            .map(|o| order_row(problem, options, o, stock))
            .collect::<OmsResult<Vec<_>>>()?;
        Ok(CostTable { pairs })
    }
}

/// Price one order against every warehouse with the stock in `stock`.
pub(crate) fn order_row(
    problem: &AllocationProblem,
    options: &AllocationOptions,
    order_index: usize,
    stock: &[BTreeMap<Sku, u32>],
) -> OmsResult<Vec<PairCost>> {
    let order = problem
        .orders
        .get(order_index)
        .ok_or_else(|| OmsError::invalid("orders", "order index out of range"))?;
    let radius = options.radius_km(order.sla);
    let mut row = Vec::with_capacity(problem.warehouses.len());
    for (wi, w) in problem.warehouses.iter().enumerate() {
        let distance_km = haversine_km(w.location, order.customer_location);
        let distance = distance_decimal(distance_km);
        let ship = checked(
            problem
                .shipping
                .per_unit_km
                .checked_mul(distance)
                .and_then(|s| s.checked_add(problem.shipping.base_per_unit)),
            "shipping cost",
        )?;
        let mut unit = Vec::with_capacity(order.lines.len());
        let mut ineligible = Vec::with_capacity(order.lines.len());
        for line in &order.lines {
            let item = w.item_cost.get(&line.sku).copied().unwrap_or_default();
            unit.push((item, ship));
            let on_hand = stock
                .get(wi)
                .and_then(|s| s.get(&line.sku))
                .copied()
                .unwrap_or(0);
            let why = match radius {
                Some(r) if distance_km > r => Some(Ineligible::OutsideSla {
                    distance_km,
                    radius_km: r,
                }),
                _ if on_hand == 0 => Some(Ineligible::NoStock),
                _ => match w.parcel_capacity {
                    Some(c) if line.capacity > c => Some(Ineligible::ParcelTooSmall {
                        capacity: c,
                        needed: line.capacity,
                    }),
                    _ => None,
                },
            };
            ineligible.push(why);
        }
        row.push(PairCost {
            distance_km,
            distance,
            unit,
            ineligible,
        });
    }
    Ok(row)
}

/// Initial stock of every warehouse, indexed like the problem's warehouses, of the SKUs some
/// order asks for: no plan can touch the others, and copying a whole catalogue's stock would
/// cost more than deciding a small order.
pub(crate) fn initial_stock(problem: &AllocationProblem) -> Vec<BTreeMap<Sku, u32>> {
    let wanted: BTreeSet<&Sku> = problem
        .orders
        .iter()
        .flat_map(|o| o.lines.iter().map(|l| &l.sku))
        .collect();
    problem
        .warehouses
        .iter()
        .map(|w| {
            wanted
                .iter()
                .filter_map(|s| w.stock.get_key_value(*s))
                .map(|(s, q)| (s.clone(), *q))
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haversine_is_zero_on_the_same_point_and_symmetric() {
        let a = GeoPoint {
            lat: 10.0,
            lng: 20.0,
        };
        let b = GeoPoint {
            lat: -5.0,
            lng: 120.0,
        };
        assert!(haversine_km(a, a).abs() < 1e-9);
        assert!((haversine_km(a, b) - haversine_km(b, a)).abs() < 1e-9);
        // One degree of latitude is 6371·π/180 km.
        let c = GeoPoint {
            lat: 11.0,
            lng: 20.0,
        };
        assert!((haversine_km(a, c) - 111.194_926_6).abs() < 1e-6);
    }

    #[test]
    fn distance_decimal_is_metre_exact() {
        assert_eq!(distance_decimal(12.345_678).to_string(), "12.346");
        assert_eq!(distance_decimal(0.0).to_string(), "0");
    }

    #[test]
    fn validation_names_the_field() {
        let p = AllocationProblem {
            warehouses: vec![],
            drivers: vec![Driver {
                id: "D1".into(),
                location: GeoPoint { lat: 0.0, lng: 0.0 },
                current_load: 0,
                min_capacity: 5,
                max_capacity: 2,
            }],
            orders: vec![],
            shipping: ShippingRates {
                base_per_unit: Decimal::ONE,
                per_unit_km: Decimal::ZERO,
            },
        };
        let e = p.validate().unwrap_err();
        assert_eq!(
            e,
            OmsError::invalid("drivers[0].min_capacity", "must not exceed max_capacity")
        );
    }
}
