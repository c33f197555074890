//! Seed scenarios of the allocation engine: seed 004 stage 4's worked example (WH-NY, drivers
//! D1/D2, estimated pickup and delivery) and seed 001 §6's multi-warehouse split.

// Test helpers outside `#[test]` functions may unwrap: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use oms_core::allocation::{
    allocate, AllocationOptions, AllocationOrder, AllocationProblem, Driver, OrderLine, Plan,
    PlanStatus, Reason, ShippingRates, Sla, Strategy, Subject, Warehouse,
};
use oms_core::order::{GeoPoint, Sku};
use oms_core::time::{Duration, Timestamp};
use rust_decimal_macros::dec;

fn sku(s: &str) -> Sku {
    Sku::new(s).unwrap()
}

fn line(s: &str, quantity: u32, capacity: u32) -> OrderLine {
    OrderLine {
        sku: sku(s),
        quantity,
        capacity,
    }
}

fn reason<'a>(plan: &'a Plan, subject: Subject, id: &str) -> &'a Reason {
    &plan
        .explanation
        .iter()
        .find(|e| e.subject == subject && e.id == id)
        .unwrap()
        .reason
}

/// Seed 004: the order (2 × WATER-5L at 2 capacity units each, 1 × PHONE-X: 5 units) goes
/// SAME_DAY from WH-NY; D1 (3 + 5 = 8 ≤ 10) carries it, D2 (8 + 5 = 13 > 10) is rejected;
/// pickup 14:00, delivery 15:30.
#[test]
fn seed_004_wh_ny_and_driver_d1() {
    let customer = GeoPoint {
        lat: 40.71,
        lng: -74.00,
    };
    // 0.4046° of latitude south of the customer: 44.989 km, 90 minutes at 30 km/h.
    let wh_ny = GeoPoint {
        lat: 40.3054,
        lng: -74.00,
    };
    let problem = AllocationProblem {
        warehouses: vec![
            Warehouse {
                id: "WH-NY".into(),
                location: wh_ny,
                stock: [(sku("WATER-5L"), 40), (sku("PHONE-X"), 7)]
                    .into_iter()
                    .collect(),
                item_cost: [(sku("WATER-5L"), dec!(1.20)), (sku("PHONE-X"), dec!(310))]
                    .into_iter()
                    .collect(),
                parcel_cost: dec!(4),
                parcel_capacity: None,
            },
            Warehouse {
                id: "WH-BOS".into(),
                location: GeoPoint {
                    lat: 42.36,
                    lng: -71.06,
                },
                stock: [(sku("WATER-5L"), 100), (sku("PHONE-X"), 100)]
                    .into_iter()
                    .collect(),
                item_cost: BTreeMap::new(),
                parcel_cost: dec!(4),
                parcel_capacity: None,
            },
            Warehouse {
                id: "WH-EMPTY".into(),
                location: customer,
                stock: BTreeMap::new(),
                item_cost: BTreeMap::new(),
                parcel_cost: dec!(4),
                parcel_capacity: None,
            },
        ],
        drivers: vec![
            Driver {
                id: "D1".into(),
                location: wh_ny,
                current_load: 3,
                min_capacity: 2,
                max_capacity: 10,
            },
            Driver {
                id: "D2".into(),
                location: wh_ny,
                current_load: 8,
                min_capacity: 2,
                max_capacity: 10,
            },
        ],
        orders: vec![AllocationOrder {
            id: "ORD-2026-05-06-001".into(),
            customer_location: customer,
            sla: Sla::SameDay,
            lines: vec![line("WATER-5L", 2, 2), line("PHONE-X", 1, 1)],
        }],
        shipping: ShippingRates {
            base_per_unit: dec!(1),
            per_unit_km: dec!(0.05),
        },
    };
    let options = AllocationOptions {
        now: Timestamp::from_civil(2026, 5, 6, 13, 0, 0),
        handling: Duration::hours(1),
        driver_speed_kmh: 30.0,
        ..AllocationOptions::default()
    };
    for strategy in [
        Strategy::Optimal,
        Strategy::Batch,
        Strategy::Nearest,
        Strategy::Priority,
    ] {
        let plan = allocate(&problem, strategy, &options).unwrap();
        assert_eq!(plan.parcels.len(), 1, "{strategy:?}");
        let parcel = &plan.parcels[0];
        assert_eq!(parcel.warehouse, "WH-NY");
        assert_eq!(parcel.driver.as_deref(), Some("D1"));
        assert_eq!(parcel.capacity_units, 5);
        assert_eq!(parcel.distance_km, dec!(44.989));
        assert_eq!(
            parcel.estimated_pickup.to_rfc3339(),
            "2026-05-06T14:00:00.000Z"
        );
        assert_eq!(
            parcel.estimated_delivery.to_rfc3339(),
            "2026-05-06T15:30:00.000Z"
        );
        // items 2 × 1.20 + 310; shipping 3 × (1 + 0.05 × 44.989); parcel 4.
        assert_eq!(parcel.cost.items, dec!(312.4));
        assert_eq!(parcel.cost.shipping, dec!(9.74835));
        assert_eq!(plan.total_cost, dec!(326.14835));
        assert_eq!(reason(&plan, Subject::Driver, "D1"), &Reason::Chosen);
        assert_eq!(
            reason(&plan, Subject::Driver, "D2"),
            &Reason::OverCapacity {
                current_load: 8,
                adding: 5,
                max_capacity: 10
            }
        );
        assert_eq!(reason(&plan, Subject::Warehouse, "WH-NY"), &Reason::Chosen);
        assert!(matches!(
            reason(&plan, Subject::Warehouse, "WH-BOS"),
            Reason::OutsideSla { .. }
        ));
        assert_eq!(
            reason(&plan, Subject::Warehouse, "WH-EMPTY"),
            &Reason::NoStock
        );
    }
}

/// Seed 001 §6: A × 2, B × 1, C × 1 against WH1 (A 1, B 5) and WH2 (A 10, C 3) ships
/// WH1: A 1 + B 1 and WH2: A 1 + C 1.
#[test]
fn seed_001_multi_warehouse_split() {
    let here = GeoPoint { lat: 0.0, lng: 0.0 };
    let problem = AllocationProblem {
        warehouses: vec![
            Warehouse {
                id: "WH1".into(),
                location: here,
                stock: [(sku("A"), 1), (sku("B"), 5)].into_iter().collect(),
                item_cost: [(sku("A"), dec!(1)), (sku("B"), dec!(1))]
                    .into_iter()
                    .collect(),
                parcel_cost: dec!(5),
                parcel_capacity: None,
            },
            Warehouse {
                id: "WH2".into(),
                location: here,
                stock: [(sku("A"), 10), (sku("C"), 3)].into_iter().collect(),
                item_cost: [(sku("A"), dec!(2)), (sku("C"), dec!(1))]
                    .into_iter()
                    .collect(),
                parcel_cost: dec!(5),
                parcel_capacity: None,
            },
        ],
        drivers: vec![],
        orders: vec![AllocationOrder {
            id: "O1".into(),
            customer_location: here,
            sla: Sla::Standard,
            lines: vec![line("A", 2, 1), line("B", 1, 1), line("C", 1, 1)],
        }],
        shipping: ShippingRates {
            base_per_unit: dec!(0),
            per_unit_km: dec!(0),
        },
    };
    for strategy in [Strategy::Optimal, Strategy::Batch, Strategy::Priority] {
        let plan = allocate(&problem, strategy, &AllocationOptions::default()).unwrap();
        let shipped: Vec<(String, Vec<(String, u32)>)> = plan
            .parcels
            .iter()
            .map(|p| {
                (
                    p.warehouse.clone(),
                    p.lines
                        .iter()
                        .map(|l| (l.sku.to_string(), l.quantity))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            shipped,
            vec![
                ("WH1".into(), vec![("A".into(), 1), ("B".into(), 1)]),
                ("WH2".into(), vec![("A".into(), 1), ("C".into(), 1)]),
            ],
            "{strategy:?}"
        );
        assert_eq!(plan.total_cost, dec!(15));
        if strategy != Strategy::Priority {
            assert_eq!(plan.status, PlanStatus::Optimal);
        }
    }
}
