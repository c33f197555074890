//! Seed 004's three pricing-driven allocation models: the pre-checkout hyperlocal lock, the
//! buy-box quote, and post-checkout margin optimization.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::explain::{build_plan, Plan, PlanStatus, Strategy};
use super::model::{distance_decimal, haversine_km, AllocationOptions, AllocationProblem, Sla};
use super::sequential;
use crate::error::{OmsError, OmsResult};
use crate::order::{GeoPoint, Sku};

/// A session locked to one warehouse: the only stock and prices the shopper sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HyperlocalLock {
    /// The locked warehouse.
    pub warehouse: String,
    /// Its distance to the shopper, km.
    pub distance_km: Decimal,
    /// Units on hand per SKU there.
    pub stock: BTreeMap<Sku, u32>,
    /// Unit prices there.
    pub prices: BTreeMap<Sku, Decimal>,
}

/// Lock a shopper at `location` to the nearest warehouse within `radius_km` (pre-checkout
/// hyperlocal model). Refused with `not_found` when no warehouse is that close.
pub fn hyperlocal_lock(
    problem: &AllocationProblem,
    location: GeoPoint,
    radius_km: f64,
) -> OmsResult<HyperlocalLock> {
    let nearest = problem
        .warehouses
        .iter()
        .map(|w| (haversine_km(w.location, location), w))
        .filter(|(d, _)| *d <= radius_km)
        .min_by(|a, b| a.0.total_cmp(&b.0));
    let Some((km, w)) = nearest else {
        return Err(OmsError::NotFound {
            kind: "warehouse within radius".into(),
            id: format!("{radius_km} km of {},{}", location.lat, location.lng),
        });
    };
    Ok(HyperlocalLock {
        warehouse: w.id.clone(),
        distance_km: distance_decimal(km),
        stock: w.stock.clone(),
        prices: w.item_cost.clone(),
    })
}

/// Allocate every order from the locked warehouse only: the warehouse cannot change after
/// checkout, so lines it cannot ship are unfulfillable (or unfilled, when partial is allowed).
pub fn allocate_hyperlocal(
    problem: &AllocationProblem,
    options: &AllocationOptions,
    lock: &HyperlocalLock,
) -> OmsResult<Plan> {
    problem.validate()?;
    options.validate()?;
    let wi = problem.warehouse_index(&lock.warehouse)?;
    let ds = sequential::run(problem, options, |oi, pairs, st| {
        super::optimal::decide(problem, options, oi, &pairs, st, Some(vec![wi]))
    })?;
    build_plan(
        problem,
        options,
        &ds,
        Strategy::Hyperlocal,
        PlanStatus::Optimal,
        0.0,
    )
}

/// One warehouse's offer for a SKU in the buy-box model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    /// The offering warehouse.
    pub warehouse: String,
    /// Item price for the quantity.
    pub item: Decimal,
    /// Estimated shipping: per-unit distance tariff for the quantity plus the parcel cost.
    pub shipping: Decimal,
    /// What the customer pays: item plus shipping.
    pub total: Decimal,
}

/// Quote `quantity` of `sku` delivered to `location` from every warehouse that has it within
/// the SLA, cheapest first (ties by warehouse id): the first quote wins the buy box.
pub fn buy_box(
    problem: &AllocationProblem,
    options: &AllocationOptions,
    sku: &Sku,
    quantity: u32,
    location: GeoPoint,
    sla: Sla,
) -> OmsResult<Vec<Quote>> {
    if quantity == 0 {
        return Err(OmsError::InvalidQuantity {
            quantity: "0".into(),
            reason: "must be at least 1".into(),
        });
    }
    let overflow = || OmsError::overflow("buy-box quote");
    let n = Decimal::from(quantity);
    let mut quotes = Vec::new();
    for w in &problem.warehouses {
        let km = haversine_km(w.location, location);
        let in_sla = options.radius_km(sla).is_none_or(|r| km <= r);
        if !in_sla || w.stock.get(sku).copied().unwrap_or(0) < quantity {
            continue;
        }
        let unit_ship = problem
            .shipping
            .per_unit_km
            .checked_mul(distance_decimal(km))
            .and_then(|s| s.checked_add(problem.shipping.base_per_unit))
            .ok_or_else(overflow)?;
        let item = w
            .item_cost
            .get(sku)
            .copied()
            .unwrap_or_default()
            .checked_mul(n)
            .ok_or_else(overflow)?;
        let shipping = unit_ship
            .checked_mul(n)
            .and_then(|s| s.checked_add(w.parcel_cost))
            .ok_or_else(overflow)?;
        let total = item.checked_add(shipping).ok_or_else(overflow)?;
        quotes.push(Quote {
            warehouse: w.id.clone(),
            item: item.normalize(),
            shipping: shipping.normalize(),
            total: total.normalize(),
        });
    }
    quotes.sort_by(|a, b| a.total.cmp(&b.total).then(a.warehouse.cmp(&b.warehouse)));
    Ok(quotes)
}

/// The post-checkout margin model's result: the cheapest plan and what it leaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarginReport {
    /// The cost-optimal plan (item cost per warehouse, shipping, parcels).
    pub plan: Plan,
    /// Revenue of the shipped units at the uniform storefront prices.
    pub revenue: Decimal,
    /// The plan's total cost.
    pub cost: Decimal,
    /// Revenue minus cost.
    pub margin: Decimal,
}

/// Post-checkout cost absorption: customers paid one uniform price per SKU (`prices`); choose
/// the sourcing that maximizes margin, which with fixed revenue is the cost-optimal plan.
pub fn post_checkout_margin(
    problem: &AllocationProblem,
    options: &AllocationOptions,
    prices: &BTreeMap<Sku, Decimal>,
) -> OmsResult<MarginReport> {
    let plan = super::allocate(problem, Strategy::Optimal, options)?;
    let overflow = || OmsError::overflow("margin");
    let mut revenue = Decimal::ZERO;
    for p in &plan.parcels {
        for l in &p.lines {
            let price = prices.get(&l.sku).ok_or_else(|| OmsError::MissingField {
                field: format!("prices.{}", l.sku),
            })?;
            revenue = price
                .checked_mul(Decimal::from(l.quantity))
                .and_then(|v| v.checked_add(revenue))
                .ok_or_else(overflow)?;
        }
    }
    let cost = plan.total_cost;
    let margin = revenue.checked_sub(cost).ok_or_else(overflow)?;
    Ok(MarginReport {
        plan,
        revenue: revenue.normalize(),
        cost,
        margin: margin.normalize(),
    })
}
