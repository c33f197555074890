//! Unit and property tests of the allocation strategies.

use std::collections::BTreeMap;

use proptest::prelude::{prop_assert, prop_assert_eq, proptest, ProptestConfig};
use proptest::strategy::Strategy as Gen;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use super::*;
use crate::error::OmsError;
use crate::order::{GeoPoint, Sku};

fn sku(s: &str) -> Sku {
    Sku::new(s).unwrap()
}

fn at(lat: f64, lng: f64) -> GeoPoint {
    GeoPoint { lat, lng }
}

fn wh(
    id: &str,
    loc: GeoPoint,
    stock: &[(&str, u32)],
    cost: &[(&str, Decimal)],
    parcel: Decimal,
) -> Warehouse {
    Warehouse {
        id: id.into(),
        location: loc,
        stock: stock.iter().map(|(s, q)| (sku(s), *q)).collect(),
        item_cost: cost.iter().map(|(s, c)| (sku(s), *c)).collect(),
        parcel_cost: parcel,
        parcel_capacity: None,
    }
}

fn order(id: &str, loc: GeoPoint, sla: Sla, lines: &[(&str, u32, u32)]) -> AllocationOrder {
    AllocationOrder {
        id: id.into(),
        customer_location: loc,
        sla,
        lines: lines
            .iter()
            .map(|(s, q, c)| OrderLine {
                sku: sku(s),
                quantity: *q,
                capacity: *c,
            })
            .collect(),
    }
}

fn rates() -> ShippingRates {
    ShippingRates {
        base_per_unit: dec!(0.5),
        per_unit_km: dec!(0.01),
    }
}

fn problem(warehouses: Vec<Warehouse>, orders: Vec<AllocationOrder>) -> AllocationProblem {
    AllocationProblem {
        warehouses,
        drivers: vec![],
        orders,
        shipping: rates(),
    }
}

fn units(plan: &Plan, order: &str, warehouse: &str, s: &str) -> u32 {
    plan.parcels
        .iter()
        .filter(|p| p.order == order && p.warehouse == warehouse)
        .flat_map(|p| p.lines.iter())
        .filter(|l| l.sku.as_str() == s)
        .map(|l| l.quantity)
        .sum()
}

fn reason<'a>(plan: &'a Plan, order: &str, id: &str) -> &'a Reason {
    &plan
        .explanation
        .iter()
        .find(|e| e.order == order && e.id == id)
        .unwrap()
        .reason
}

#[test]
fn single_warehouse_cost_is_exact() {
    // 1 degree of latitude ≈ 111.195 km.
    let p = problem(
        vec![wh(
            "W",
            at(0.0, 0.0),
            &[("A", 5)],
            &[("A", dec!(2))],
            dec!(8),
        )],
        vec![order("O", at(1.0, 0.0), Sla::Standard, &[("A", 3, 1)])],
    );
    let plan = allocate(&p, Strategy::Optimal, &AllocationOptions::default()).unwrap();
    assert_eq!(plan.status, PlanStatus::Optimal);
    let parcel = &plan.parcels[0];
    assert_eq!(parcel.distance_km, dec!(111.195));
    assert_eq!(parcel.cost.items, dec!(6));
    // 3 × (0.5 + 0.01 × 111.195)
    assert_eq!(parcel.cost.shipping, dec!(4.83585));
    assert_eq!(plan.total_cost, dec!(18.83585));
}

#[test]
fn a_cheaper_far_warehouse_beats_a_dear_near_one_when_items_dominate() {
    let p = problem(
        vec![
            wh(
                "NEAR",
                at(0.0, 0.0),
                &[("A", 5)],
                &[("A", dec!(20))],
                dec!(8),
            ),
            wh("FAR", at(1.0, 0.0), &[("A", 5)], &[("A", dec!(2))], dec!(8)),
        ],
        vec![order("O", at(0.0, 0.0), Sla::Standard, &[("A", 2, 1)])],
    );
    let opt = allocate(&p, Strategy::Optimal, &AllocationOptions::default()).unwrap();
    assert_eq!(units(&opt, "O", "FAR", "A"), 2);
    // The cheapest plan using NEAR takes one unit there: 28.5 + 11.61195 against
    // 2 × 3.61195 + 8.
    assert_eq!(
        reason(&opt, "O", "NEAR"),
        &Reason::MoreExpensive { by: dec!(24.88805) }
    );
    let near = allocate(&p, Strategy::Nearest, &AllocationOptions::default()).unwrap();
    assert_eq!(units(&near, "O", "NEAR", "A"), 2);
    assert!(opt.total_cost < near.total_cost);
}

#[test]
fn short_stock_is_unfulfillable_naming_the_line() {
    let p = problem(
        vec![
            wh("W1", at(0.0, 0.0), &[("A", 1), ("B", 4)], &[], dec!(1)),
            wh("W2", at(0.0, 1.0), &[("A", 1)], &[], dec!(1)),
        ],
        vec![order(
            "O",
            at(0.0, 0.5),
            Sla::Standard,
            &[("A", 5, 1), ("B", 2, 1)],
        )],
    );
    for s in [
        Strategy::Optimal,
        Strategy::Batch,
        Strategy::Nearest,
        Strategy::Priority,
    ] {
        let e = allocate(&p, s, &AllocationOptions::default()).unwrap_err();
        assert_eq!(
            e,
            OmsError::Unfulfillable {
                short: vec!["A:3".into()]
            },
            "{s:?}"
        );
    }
}

#[test]
fn partial_fulfilment_reports_and_penalizes_unfilled_units() {
    let p = problem(
        vec![wh("W", at(0.0, 0.0), &[("A", 2)], &[], dec!(0))],
        vec![order("O", at(0.0, 0.0), Sla::Standard, &[("A", 5, 1)])],
    );
    let options = AllocationOptions {
        allow_partial: true,
        unfilled_penalty: dec!(100),
        ..AllocationOptions::default()
    };
    let plan = allocate(&p, Strategy::Optimal, &options).unwrap();
    assert_eq!(units(&plan, "O", "W", "A"), 2);
    assert_eq!(plan.unfilled.len(), 1);
    assert_eq!(plan.unfilled[0].quantity, 3);
    assert_eq!(plan.unfilled[0].penalty, dec!(300));
    assert_eq!(plan.total_cost, dec!(301));
}

#[test]
fn same_day_excludes_far_warehouses() {
    let p = problem(
        vec![
            wh("FAR", at(2.0, 0.0), &[("A", 5)], &[("A", dec!(1))], dec!(0)),
            wh(
                "NEAR",
                at(0.1, 0.0),
                &[("A", 5)],
                &[("A", dec!(50))],
                dec!(0),
            ),
        ],
        vec![order("O", at(0.0, 0.0), Sla::SameDay, &[("A", 1, 1)])],
    );
    let plan = allocate(&p, Strategy::Optimal, &AllocationOptions::default()).unwrap();
    assert_eq!(units(&plan, "O", "NEAR", "A"), 1);
    assert_eq!(
        reason(&plan, "O", "FAR"),
        &Reason::OutsideSla {
            distance_km: dec!(222.39),
            radius_km: dec!(50)
        }
    );
    // A standard order takes the cheap far stock.
    let mut standard = p.clone();
    standard.orders[0].sla = Sla::Standard;
    let plan = allocate(&standard, Strategy::Optimal, &AllocationOptions::default()).unwrap();
    assert_eq!(units(&plan, "O", "FAR", "A"), 1);
    // With only the far warehouse, a same-day order cannot be served.
    let mut far_only = p;
    far_only.warehouses.truncate(1);
    let e = allocate(&far_only, Strategy::Optimal, &AllocationOptions::default()).unwrap_err();
    assert_eq!(e.code(), "unfulfillable");
}

fn driver(id: &str, load: u32, min: u32, max: u32) -> Driver {
    Driver {
        id: id.into(),
        location: at(0.0, 0.0),
        current_load: load,
        min_capacity: min,
        max_capacity: max,
    }
}

#[test]
fn drivers_respect_max_and_min_capacity() {
    let mut p = problem(
        vec![wh("W", at(0.0, 0.0), &[("A", 10)], &[], dec!(1))],
        vec![order("O", at(0.0, 0.1), Sla::Standard, &[("A", 3, 2)])],
    );
    // D1 is too full (5 + 6 > 10), D2 would end below its minimum (0 + 6 < 8), D3 fits.
    p.drivers = vec![
        driver("D1", 5, 0, 10),
        driver("D2", 0, 8, 20),
        driver("D3", 1, 4, 9),
    ];
    for s in [Strategy::Optimal, Strategy::Batch, Strategy::Nearest] {
        let plan = allocate(&p, s, &AllocationOptions::default()).unwrap();
        assert_eq!(plan.parcels[0].driver.as_deref(), Some("D3"), "{s:?}");
        assert_eq!(plan.parcels[0].capacity_units, 6);
        assert_eq!(
            reason(&plan, "O", "D1"),
            &Reason::OverCapacity {
                current_load: 5,
                adding: 6,
                max_capacity: 10
            }
        );
        assert_eq!(
            reason(&plan, "O", "D2"),
            &Reason::BelowMinCapacity {
                ending_load: 6,
                min_capacity: 8
            }
        );
    }
    // Without D3 nobody can carry the parcel.
    p.drivers.pop();
    let e = allocate(&p, Strategy::Optimal, &AllocationOptions::default()).unwrap_err();
    assert_eq!(
        e,
        OmsError::Unfulfillable {
            short: vec!["A:3".into()]
        }
    );
}

#[test]
fn a_driver_can_split_across_parcels_only_within_max() {
    // Two orders of 4 units each; one driver with max 6 cannot take both.
    let mut p = problem(
        vec![wh("W", at(0.0, 0.0), &[("A", 10)], &[], dec!(1))],
        vec![
            order("O1", at(0.0, 0.1), Sla::Standard, &[("A", 4, 1)]),
            order("O2", at(0.0, 0.1), Sla::Standard, &[("A", 4, 1)]),
        ],
    );
    p.drivers = vec![driver("D1", 0, 0, 6), driver("D2", 0, 0, 6)];
    for s in [Strategy::Optimal, Strategy::Batch] {
        let plan = allocate(&p, s, &AllocationOptions::default()).unwrap();
        let d: Vec<_> = plan
            .parcels
            .iter()
            .map(|x| x.driver.clone().unwrap())
            .collect();
        assert_ne!(d[0], d[1], "{s:?}");
    }
}

#[test]
fn max_splits_and_parcel_capacity_are_respected() {
    let mut p = problem(
        vec![
            wh("W1", at(0.0, 0.0), &[("A", 2), ("B", 2)], &[], dec!(1)),
            wh("W2", at(0.0, 0.2), &[("A", 2)], &[], dec!(1)),
            wh("W3", at(0.0, 0.4), &[("A", 5), ("B", 5)], &[], dec!(1)),
        ],
        vec![order(
            "O",
            at(0.0, 0.0),
            Sla::Standard,
            &[("A", 3, 1), ("B", 2, 1)],
        )],
    );
    let plan = allocate(&p, Strategy::Optimal, &AllocationOptions::default()).unwrap();
    assert_eq!(plan.parcels.len(), 2);
    let one = AllocationOptions {
        max_splits: Some(1),
        ..AllocationOptions::default()
    };
    let plan = allocate(&p, Strategy::Optimal, &one).unwrap();
    assert_eq!(plan.parcels.len(), 1);
    assert_eq!(plan.parcels[0].warehouse, "W3");
    // W3's parcels hold at most 2 units: the order must spread over all three.
    p.warehouses[2].parcel_capacity = Some(2);
    p.warehouses[0].stock.insert(sku("A"), 1);
    let plan = allocate(&p, Strategy::Optimal, &AllocationOptions::default()).unwrap();
    for parcel in &plan.parcels {
        if parcel.warehouse == "W3" {
            assert!(parcel.capacity_units <= 2);
        }
    }
    let shipped: u32 = plan
        .parcels
        .iter()
        .flat_map(|x| &x.lines)
        .map(|l| l.quantity)
        .sum();
    assert_eq!(shipped, 5);
}

#[test]
fn batch_shares_scarce_stock_better_than_first_come() {
    // O1 is near both warehouses; O2 only reaches W1 cheaply. Serving O1 first from W1 pushes
    // O2 to the far warehouse; the batch gives W1's single unit to O2.
    let p = problem(
        vec![
            wh("W1", at(0.0, 0.0), &[("A", 1)], &[], dec!(0)),
            wh("W2", at(0.0, 0.05), &[("A", 5)], &[], dec!(0)),
        ],
        vec![
            order("O1", at(0.0, 0.02), Sla::Standard, &[("A", 1, 1)]),
            order("O2", at(0.0, -3.0), Sla::Standard, &[("A", 1, 1)]),
        ],
    );
    let seq = allocate(&p, Strategy::Optimal, &AllocationOptions::default()).unwrap();
    let batch = allocate(&p, Strategy::Batch, &AllocationOptions::default()).unwrap();
    assert_eq!(batch.status, PlanStatus::Optimal);
    assert_eq!(units(&batch, "O2", "W1", "A"), 1);
    assert!(batch.total_cost < seq.total_cost);
}

#[test]
fn priority_follows_the_ranked_list() {
    let p = problem(
        vec![
            wh("W1", at(0.0, 0.0), &[("A", 5)], &[], dec!(0)),
            wh("W2", at(0.0, 1.0), &[("A", 5)], &[], dec!(0)),
        ],
        vec![order("O", at(0.0, 0.0), Sla::Standard, &[("A", 2, 1)])],
    );
    let options = AllocationOptions {
        priority: vec!["W2".into(), "W1".into()],
        ..AllocationOptions::default()
    };
    let plan = allocate(&p, Strategy::Priority, &options).unwrap();
    assert_eq!(units(&plan, "O", "W2", "A"), 2);
    let bad = AllocationOptions {
        priority: vec!["NOPE".into()],
        ..AllocationOptions::default()
    };
    assert_eq!(
        allocate(&p, Strategy::Priority, &bad).unwrap_err().code(),
        "unknown_warehouse"
    );
}

#[test]
fn pricing_models() {
    let p = problem(
        vec![
            wh(
                "CHEAP-FAR",
                at(0.5, 0.0),
                &[("A", 5)],
                &[("A", dec!(1))],
                dec!(2),
            ),
            wh(
                "DEAR-NEAR",
                at(0.01, 0.0),
                &[("A", 5)],
                &[("A", dec!(3))],
                dec!(2),
            ),
            wh("EMPTY", at(0.0, 0.0), &[], &[], dec!(2)),
        ],
        vec![order("O", at(0.0, 0.0), Sla::Standard, &[("A", 2, 1)])],
    );
    // Hyperlocal: the nearest warehouse within the radius, even if it is empty.
    let lock = hyperlocal_lock(&p, at(0.0, 0.0), 5.0).unwrap();
    assert_eq!(lock.warehouse, "EMPTY");
    let lock = hyperlocal_lock(&p, at(0.02, 0.0), 1.5).unwrap();
    assert_eq!(lock.warehouse, "DEAR-NEAR");
    assert_eq!(lock.prices.get(&sku("A")), Some(&dec!(3)));
    let plan = allocate_hyperlocal(&p, &AllocationOptions::default(), &lock).unwrap();
    assert_eq!(units(&plan, "O", "DEAR-NEAR", "A"), 2);
    assert_eq!(
        hyperlocal_lock(&p, at(10.0, 10.0), 5.0).unwrap_err().code(),
        "not_found"
    );
    // Buy box: cheapest landed price first.
    let quotes = buy_box(
        &p,
        &AllocationOptions::default(),
        &sku("A"),
        2,
        at(0.0, 0.0),
        Sla::Standard,
    )
    .unwrap();
    assert_eq!(quotes.len(), 2);
    assert_eq!(quotes[0].warehouse, "CHEAP-FAR");
    assert!(quotes[0].total <= quotes[1].total);
    // 2 × 1 + 2 × (0.5 + 0.01 × 55.597) + 2
    assert_eq!(quotes[0].total, dec!(6.11194));
    // Margin: uniform price 10.
    let prices: BTreeMap<Sku, Decimal> = [(sku("A"), dec!(10))].into_iter().collect();
    let m = post_checkout_margin(&p, &AllocationOptions::default(), &prices).unwrap();
    assert_eq!(m.revenue, dec!(20));
    assert_eq!(m.cost, m.plan.total_cost);
    assert_eq!(m.margin, dec!(20) - m.cost);
    assert_eq!(units(&m.plan, "O", "CHEAP-FAR", "A"), 2);
}

#[test]
fn bad_input_is_a_typed_error() {
    let mut p = problem(
        vec![wh("W", at(0.0, 0.0), &[("A", 5)], &[], dec!(1))],
        vec![order("O", at(0.0, 0.0), Sla::Standard, &[("A", 0, 1)])],
    );
    let e = allocate(&p, Strategy::Optimal, &AllocationOptions::default()).unwrap_err();
    assert_eq!(e.code(), "invalid_field");
    assert!(e.to_string().contains("orders[0].lines[0].quantity"));
    p.orders[0].lines[0].quantity = 1;
    p.orders[0].customer_location.lat = 91.0;
    let e = allocate(&p, Strategy::Optimal, &AllocationOptions::default()).unwrap_err();
    assert!(
        e.to_string().contains("orders[0].customer_location.lat"),
        "{e}"
    );
    p.orders[0].customer_location.lat = 0.0;
    p.warehouses[0].parcel_cost = dec!(-1);
    let e = allocate(&p, Strategy::Optimal, &AllocationOptions::default()).unwrap_err();
    assert!(e.to_string().contains("warehouses[0].parcel_cost"), "{e}");
}

// ---- property tests -------------------------------------------------------------------------

/// A small random instance: up to 4 warehouses, 1–2 orders of 1–3 lines over 3 SKUs.
fn instance(orders: usize) -> impl Gen<Value = AllocationProblem> {
    let w = (
        0u32..4,
        0u32..4,
        0u32..4,
        0i64..=30,
        0i64..=30,
        1u32..=20,
        0u32..=15,
    );
    let o = proptest::collection::vec((0usize..3, 1u32..=3), 1..=3);
    (
        proptest::collection::vec(w, 1..=4),
        proptest::collection::vec((o, 0i64..=30, 0i64..=30), orders),
    )
        .prop_map(|(ws, os)| {
            let names = ["A", "B", "C"];
            let warehouses = ws
                .iter()
                .enumerate()
                .map(|(i, (a, b, c, x, y, cost, parcel))| Warehouse {
                    id: format!("W{i}"),
                    location: at(*x as f64 / 10.0, *y as f64 / 10.0),
                    stock: [(sku("A"), *a), (sku("B"), *b), (sku("C"), *c)]
                        .into_iter()
                        .collect(),
                    item_cost: names
                        .iter()
                        .enumerate()
                        .map(|(k, n)| {
                            (
                                sku(n),
                                Decimal::new(i64::from(*cost) + i64::try_from(k).unwrap(), 1),
                            )
                        })
                        .collect(),
                    parcel_cost: Decimal::from(*parcel),
                    parcel_capacity: None,
                })
                .collect();
            let orders = os
                .iter()
                .enumerate()
                .map(|(i, (lines, x, y))| AllocationOrder {
                    id: format!("O{i}"),
                    customer_location: at(*x as f64 / 10.0, *y as f64 / 10.0),
                    sla: Sla::Standard,
                    lines: lines
                        .iter()
                        .map(|(s, q)| OrderLine {
                            sku: sku(names[*s]),
                            quantity: *q,
                            capacity: 1,
                        })
                        .collect(),
                })
                .collect();
            AllocationProblem {
                warehouses,
                drivers: vec![],
                orders,
                shipping: rates(),
            }
        })
}

/// Exhaustive optimum of a one-order instance: every way to split every line.
fn brute_force(p: &AllocationProblem) -> Option<Decimal> {
    let o = &p.orders[0];
    let nw = p.warehouses.len();
    let mut best: Option<Decimal> = None;
    // Enumerate per line an assignment of each unit to a warehouse (quantities ≤ 3).
    let mut choices: Vec<Vec<Vec<u32>>> = Vec::new();
    for line in &o.lines {
        let mut opts = Vec::new();
        let total = (nw as u32 + 1).pow(line.quantity);
        for code in 0..total {
            let mut q = vec![0u32; nw];
            let mut c = code;
            let mut ok = true;
            for _ in 0..line.quantity {
                let w = (c % (nw as u32 + 1)) as usize;
                c /= nw as u32 + 1;
                if w == nw {
                    ok = false;
                } else {
                    q[w] += 1;
                }
            }
            if ok && !opts.contains(&q) {
                opts.push(q);
            }
        }
        choices.push(opts);
    }
    let mut idx = vec![0usize; choices.len()];
    loop {
        let mut used = vec![BTreeMap::<Sku, u32>::new(); nw];
        let mut cost = Decimal::ZERO;
        let mut open = vec![false; nw];
        let mut ok = true;
        for (li, line) in o.lines.iter().enumerate() {
            let q = &choices[li][idx[li]];
            for w in 0..nw {
                if q[w] == 0 {
                    continue;
                }
                let u = used[w].entry(line.sku.clone()).or_default();
                *u += q[w];
                if *u > p.warehouses[w].stock.get(&line.sku).copied().unwrap_or(0) {
                    ok = false;
                }
                open[w] = true;
                let km =
                    distance_decimal(haversine_km(p.warehouses[w].location, o.customer_location));
                let unit = p.warehouses[w].item_cost[&line.sku]
                    + p.shipping.base_per_unit
                    + p.shipping.per_unit_km * km;
                cost += unit * Decimal::from(q[w]);
            }
        }
        for (w, is_open) in open.iter().enumerate() {
            if *is_open {
                cost += p.warehouses[w].parcel_cost;
            }
        }
        if ok && best.is_none_or(|b| cost < b) {
            best = Some(cost);
        }
        // Next combination.
        let mut k = 0;
        loop {
            if k == idx.len() {
                return best;
            }
            idx[k] += 1;
            if idx[k] < choices[k].len() {
                break;
            }
            idx[k] = 0;
            k += 1;
        }
    }
}

fn quiet() -> AllocationOptions {
    AllocationOptions {
        explain_alternatives: false,
        ..AllocationOptions::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn optimal_matches_brute_force(p in instance(1)) {
        let bf = brute_force(&p);
        match allocate(&p, Strategy::Optimal, &quiet()) {
            Ok(plan) => {
                let bf = bf.expect("solver found a plan the brute force did not");
                prop_assert_eq!(plan.total_cost, bf.normalize());
            }
            Err(e) => {
                prop_assert_eq!(e.code(), "unfulfillable");
                prop_assert!(bf.is_none());
            }
        }
    }

    #[test]
    fn optimal_never_costs_more_than_the_greedy_baselines(p in instance(2)) {
        let opt = allocate(&p, Strategy::Optimal, &quiet());
        let batch = allocate(&p, Strategy::Batch, &quiet());
        for s in [Strategy::Nearest, Strategy::Priority] {
            if let Ok(g) = allocate(&p, s, &quiet()) {
                // A greedy plan is feasible, so an exact plan exists and is no dearer for the
                // first order; over both orders the batch is no dearer than anything.
                let b = batch.as_ref().expect("batch must find a plan when greedy does");
                prop_assert!(b.total_cost <= g.total_cost, "{:?}: {} > {}", s, b.total_cost, g.total_cost);
                if p.orders.len() == 1 {
                    let o = opt.as_ref().expect("optimal must find a plan when greedy does");
                    prop_assert!(o.total_cost <= g.total_cost);
                }
            }
        }
        if let (Ok(o), Ok(b)) = (&opt, &batch) {
            prop_assert!(b.total_cost <= o.total_cost);
        }
    }
}

// ---- the exact fast path against the MIP and exhaustive search ------------------------------

/// A one-order instance with the features the fast path must get right: SKUs shared by several
/// lines, scarce stock, warehouses outside the SLA, equal costs (ties), partial fulfilment and
/// split limits; and, now and then, drivers or a tight parcel capacity (which fall back to the
/// MIP).
#[derive(Debug, Clone)]
struct Case {
    problem: AllocationProblem,
    options: AllocationOptions,
}

fn case() -> impl Gen<Value = Case> {
    let w = (
        proptest::collection::vec(0u32..4, 3),
        0i64..=6,
        0i64..=6,
        0u32..=3,
        0u32..=3,
    );
    let lines = proptest::collection::vec((0usize..3, 1u32..=3), 1..=3);
    (
        proptest::collection::vec(w, 1..=4),
        lines,
        (0i64..=6, 0i64..=6, 0usize..3),
        (0u8..4, 0u8..3, 0u8..8),
    )
        .prop_map(|(ws, ls, (cx, cy, sla), (partial, splits, extra))| {
            let names = ["A", "B", "C"];
            // Coarse grids make equal distances, item costs and parcel costs common.
            let warehouses: Vec<Warehouse> = ws
                .iter()
                .enumerate()
                .map(|(i, (stock, x, y, cost, parcel))| Warehouse {
                    id: format!("W{i}"),
                    location: at(*x as f64 / 4.0, *y as f64 / 4.0),
                    stock: names.iter().zip(stock).map(|(n, q)| (sku(n), *q)).collect(),
                    item_cost: names
                        .iter()
                        .enumerate()
                        .map(|(k, n)| (sku(n), Decimal::from(*cost + k as u32 % 2)))
                        .collect(),
                    parcel_cost: Decimal::from(*parcel * 3),
                    parcel_capacity: (extra == 1).then_some(2),
                })
                .collect();
            let order = AllocationOrder {
                id: "O".into(),
                customer_location: at(cx as f64 / 4.0, cy as f64 / 4.0),
                sla: [Sla::Standard, Sla::SameDay, Sla::NextDay][sla],
                lines: ls
                    .iter()
                    .map(|(s, q)| OrderLine {
                        sku: sku(names[*s]),
                        quantity: *q,
                        capacity: 1,
                    })
                    .collect(),
            };
            let drivers = if extra == 2 {
                vec![driver("D1", 0, 0, 4), driver("D2", 1, 3, 9)]
            } else {
                vec![]
            };
            let options = AllocationOptions {
                allow_partial: partial > 0,
                unfilled_penalty: Decimal::from([0u32, 0, 2, 40][usize::from(partial)]),
                max_splits: [None, Some(1), Some(2)][usize::from(splits)],
                same_day_radius_km: 60.0,
                next_day_radius_km: Some(120.0),
                ..AllocationOptions::default()
            };
            Case {
                problem: AllocationProblem {
                    warehouses,
                    drivers,
                    orders: vec![order],
                    shipping: rates(),
                },
                options,
            }
        })
}

/// Exhaustive search over every way to source every unit of a one-order case without drivers
/// or parcel capacities: the optimum and, per warehouse, the cheapest plan that ships from it.
fn exhaustive(c: &Case) -> Option<(Decimal, BTreeMap<usize, Decimal>)> {
    let p = &c.problem;
    let o = &p.orders[0];
    let nw = p.warehouses.len();
    let radius = c.options.radius_km(o.sla);
    let km: Vec<f64> = p
        .warehouses
        .iter()
        .map(|w| haversine_km(w.location, o.customer_location))
        .collect();
    let reach: Vec<bool> = km.iter().map(|d| radius.is_none_or(|r| *d <= r)).collect();
    // Per line, every split of its units over the warehouses plus "unfilled" (bin nw).
    let bins = nw + usize::from(c.options.allow_partial);
    let splits: Vec<Vec<Vec<u32>>> = o
        .lines
        .iter()
        .map(|line| {
            let mut all = vec![vec![]];
            for _ in 0..line.quantity {
                let mut next = Vec::new();
                for v in &all {
                    for b in 0..bins {
                        let mut v: Vec<usize> = v.clone();
                        v.push(b);
                        next.push(v);
                    }
                }
                all = next;
            }
            let mut out: Vec<Vec<u32>> = Vec::new();
            for units in all {
                let mut q = vec![0u32; nw + 1];
                for b in units {
                    q[b] += 1;
                }
                if !out.contains(&q) {
                    out.push(q);
                }
            }
            out
        })
        .collect();
    let mut best: Option<Decimal> = None;
    let mut best_at: BTreeMap<usize, Decimal> = BTreeMap::new();
    let mut idx = vec![0usize; splits.len()];
    'outer: loop {
        let mut used = vec![BTreeMap::<Sku, u32>::new(); nw];
        let mut cost = Decimal::ZERO;
        let mut open = vec![false; nw];
        let mut ok = true;
        for (li, line) in o.lines.iter().enumerate() {
            let q = &splits[li][idx[li]];
            for w in 0..nw {
                if q[w] == 0 {
                    continue;
                }
                let u = used[w].entry(line.sku.clone()).or_default();
                *u += q[w];
                if !reach[w] || *u > p.warehouses[w].stock.get(&line.sku).copied().unwrap_or(0) {
                    ok = false;
                }
                open[w] = true;
                let unit = p.warehouses[w].item_cost[&line.sku]
                    + p.shipping.base_per_unit
                    + p.shipping.per_unit_km * distance_decimal(km[w]);
                cost += unit * Decimal::from(q[w]);
            }
            cost += c.options.unfilled_penalty * Decimal::from(q[nw]);
        }
        let opened = open.iter().filter(|x| **x).count() as u32;
        if c.options.max_splits.is_some_and(|m| opened > m) {
            ok = false;
        }
        for (w, is_open) in open.iter().enumerate() {
            if *is_open {
                cost += p.warehouses[w].parcel_cost;
            }
        }
        if ok {
            if best.is_none_or(|b| cost < b) {
                best = Some(cost);
            }
            for (w, is_open) in open.iter().enumerate() {
                if *is_open {
                    let e = best_at.entry(w).or_insert(cost);
                    *e = (*e).min(cost);
                }
            }
        }
        let mut k = 0;
        loop {
            if k == idx.len() {
                break 'outer;
            }
            idx[k] += 1;
            if idx[k] < splits[k].len() {
                break;
            }
            idx[k] = 0;
            k += 1;
        }
    }
    best.map(|b| (b, best_at))
}

/// One order decided with `method` against the initial stock: its exact cost, its priced
/// alternatives, its quantities, and whether the subset search decided it.
#[allow(clippy::type_complexity)]
fn decide_one(
    c: &Case,
    method: optimal::Method,
) -> Result<(Decimal, BTreeMap<usize, Decimal>, Vec<Vec<u32>>, bool), OmsError> {
    let state = sequential::State::initial(&c.problem);
    let pairs = model::order_row(&c.problem, &c.options, 0, &state.stock)?;
    let (d, fast) = optimal::decide_with(&c.problem, &c.options, 0, &pairs, &state, None, method)?;
    Ok((
        d.cost(&c.problem, &c.options)?,
        d.more_expensive.clone(),
        d.qty,
        fast,
    ))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    #[test]
    fn fast_path_matches_the_mip_and_exhaustive_search(c in case()) {
        let fast = decide_one(&c, optimal::Method::Auto);
        let mip = decide_one(&c, optimal::Method::Mip);
        // No drivers, and no parcel capacity the whole order would not fit in.
        let units: u32 = c.problem.orders[0].lines.iter().map(|l| l.quantity).sum();
        let plain = c.problem.drivers.is_empty()
            && c.problem.warehouses.iter().all(|w| w.parcel_capacity.is_none_or(|k| k >= units));
        match (&fast, &mip) {
            (Ok(f), Ok(m)) => {
                prop_assert_eq!(f.0, m.0, "cost");
                // Alternatives agree; where equal-cost plans tie, a warehouse one method uses
                // and the other prices costs nothing extra.
                for w in f.1.keys().chain(m.1.keys()) {
                    match (f.1.get(w), m.1.get(w)) {
                        (Some(a), Some(b)) => prop_assert_eq!(a, b, "W{}", w),
                        (Some(a), None) | (None, Some(a)) => prop_assert!(a.is_zero(), "W{}", w),
                        (None, None) => {}
                    }
                }
                // Orders without drivers or binding capacities never need the MIP at this size.
                prop_assert!(f.3 || !plain);
                prop_assert!(!m.3);
            }
            (Err(f), Err(m)) => prop_assert_eq!(f, m),
            _ => prop_assert!(false, "fast {:?} vs mip {:?}", fast, mip),
        }
        // Same input, same plan.
        let again = decide_one(&c, optimal::Method::Auto);
        prop_assert_eq!(
            fast.as_ref().ok().map(|f| &f.2),
            again.as_ref().ok().map(|f| &f.2)
        );
        if plain {
            let truth = exhaustive(&c);
            match (&fast, truth) {
                (Ok(f), Some((best, at))) => {
                    prop_assert_eq!(f.0, best.normalize());
                    for (w, by) in &f.1 {
                        let alt = at.get(w).copied();
                        prop_assert_eq!(Some(*by), alt.map(|a| (a - best).normalize()), "W{}", w);
                    }
                    for (w, alt) in &at {
                        let used = f.2.iter().any(|r| r[*w] > 0);
                        prop_assert!(used || f.1.contains_key(w), "W{} not priced", w);
                        let _ = alt;
                    }
                }
                (Err(e), None) => prop_assert_eq!(e.code(), "unfulfillable"),
                (f, t) => prop_assert!(false, "fast {:?} vs exhaustive {:?}", f, t),
            }
        }
    }
}

#[test]
fn lines_of_one_sku_share_its_stock_in_the_fast_path() {
    // Two lines of A (2 + 2 units): the near warehouse holds 3, so one unit comes from afar,
    // and the plan is the same whichever method decides it.
    let p = problem(
        vec![
            wh("NEAR", at(0.0, 0.0), &[("A", 3), ("B", 1)], &[], dec!(5)),
            wh("FAR", at(0.0, 1.0), &[("A", 9)], &[], dec!(5)),
        ],
        vec![order(
            "O",
            at(0.0, 0.0),
            Sla::Standard,
            &[("A", 2, 1), ("B", 1, 1), ("A", 2, 1)],
        )],
    );
    let c = Case {
        problem: p.clone(),
        options: AllocationOptions::default(),
    };
    let (cost, alts, qty, fast) = decide_one(&c, optimal::Method::Auto).unwrap();
    assert!(fast);
    assert_eq!(qty, vec![vec![2, 0], vec![1, 0], vec![1, 1]]);
    let (mip_cost, mip_alts, _, _) = decide_one(&c, optimal::Method::Mip).unwrap();
    assert_eq!(cost, mip_cost);
    assert_eq!(alts, mip_alts);
    let plan = allocate(&p, Strategy::Optimal, &AllocationOptions::default()).unwrap();
    assert_eq!(plan.total_cost, cost.normalize());
    assert_eq!(units(&plan, "O", "NEAR", "A"), 3);
    assert_eq!(units(&plan, "O", "FAR", "A"), 1);
}

#[test]
fn orders_the_fast_path_does_not_model_fall_back_to_the_mip() {
    let mut p = problem(
        vec![
            wh("W1", at(0.0, 0.0), &[("A", 5)], &[], dec!(1)),
            wh("W2", at(0.0, 1.0), &[("A", 5)], &[], dec!(1)),
        ],
        vec![order("O", at(0.0, 0.0), Sla::Standard, &[("A", 4, 1)])],
    );
    let options = AllocationOptions::default();
    assert_eq!(optimal_fast_path_orders(&p, &options).unwrap(), 1);
    // A parcel capacity the order does not fit in couples the lines: the MIP decides.
    p.warehouses[0].parcel_capacity = Some(3);
    assert_eq!(optimal_fast_path_orders(&p, &options).unwrap(), 0);
    let plan = allocate(&p, Strategy::Optimal, &options).unwrap();
    assert_eq!(units(&plan, "O", "W1", "A"), 3);
    assert_eq!(units(&plan, "O", "W2", "A"), 1);
    // One it fits in never binds: the search decides.
    p.warehouses[0].parcel_capacity = Some(4);
    assert_eq!(optimal_fast_path_orders(&p, &options).unwrap(), 1);
    // Drivers: the MIP decides.
    p.drivers = vec![driver("D", 0, 0, 10)];
    assert_eq!(optimal_fast_path_orders(&p, &options).unwrap(), 0);
}
