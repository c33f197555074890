//! Seed scenarios the inventory owns: seed 001 §6 (one order split over two warehouses),
//! seed 001 §4 (a hold not paid within 15 minutes is released by the every-minute job and
//! names its order), seed 001 §3 (out of stock: an error and nothing held).

// Helpers outside #[test] functions stop the test on a failed setup, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use oms_core::inventory::{
    expire_reservations, InventoryStore, MemoryInventory, ReleaseReason, ReservationItem,
    ReservationRequest, ReservationStatus, ReserveOutcome, WarehouseId,
};
use oms_core::order::Sku;
use oms_core::time::{Clock, Duration, ManualClock, SequentialIds, Timestamp};

fn sku(s: &str) -> Sku {
    Sku::new(s).unwrap()
}
fn wh(s: &str) -> WarehouseId {
    WarehouseId::new(s).unwrap()
}

/// Seed 001 §6: WH1 {A: 1, B: 5}, WH2 {A: 10, C: 3}.
fn seed_001_warehouses() -> MemoryInventory {
    let store = MemoryInventory::new(Arc::new(SequentialIds::default()));
    for (w, stock) in [
        ("WH1", [("A", 1), ("B", 5)]),
        ("WH2", [("A", 10), ("C", 3)]),
    ] {
        store.add_warehouse(&wh(w)).unwrap();
        for (s, q) in stock {
            store.receive(&sku(s), &wh(w), q).unwrap();
        }
    }
    store
}

fn both() -> Vec<WarehouseId> {
    vec![wh("WH1"), wh("WH2")]
}

#[test]
fn seed_001_s6_order_is_split_across_two_warehouses() {
    let store = seed_001_warehouses();
    let request = ReservationRequest::new(1001)
        .spread(sku("A"), 2, both())
        .spread(sku("B"), 1, both())
        .spread(sku("C"), 1, both());
    let r = store
        .reserve(&request, Timestamp(0))
        .unwrap()
        .into_reserved()
        .unwrap();
    assert_eq!(r.status, ReservationStatus::Reserved);

    // The seed's two shipments: WH1 {A: 1, B: 1} and WH2 {A: 1, C: 1}.
    let mut shipments: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
    for item in &r.items {
        shipments
            .entry(item.warehouse.to_string())
            .or_default()
            .push((item.sku.to_string(), item.quantity));
    }
    let expected: BTreeMap<String, Vec<(String, u64)>> = [
        ("WH1", vec![("A", 1), ("B", 1)]),
        ("WH2", vec![("A", 1), ("C", 1)]),
    ]
    .into_iter()
    .map(|(w, items)| {
        (
            w.to_owned(),
            items.into_iter().map(|(s, q)| (s.to_owned(), q)).collect(),
        )
    })
    .collect();
    assert_eq!(shipments, expected);

    let avail = |s: &str, w: &str| store.stock(&sku(s), &wh(w)).unwrap().available();
    assert_eq!(
        [
            avail("A", "WH1"),
            avail("B", "WH1"),
            avail("A", "WH2"),
            avail("C", "WH2")
        ],
        [0, 4, 9, 2]
    );
    let held = |s: &str, w: &str| store.stock(&sku(s), &wh(w)).unwrap().reserved;
    assert_eq!(
        [
            held("A", "WH1"),
            held("B", "WH1"),
            held("A", "WH2"),
            held("C", "WH2")
        ],
        [1, 1, 1, 1]
    );

    // Paid and fulfilled: each warehouse's shipment leaves its own shelf.
    store.commit(r.id, Timestamp(1)).unwrap();
    let after_wh1 = store.ship_from(r.id, &wh("WH1"), Timestamp(2)).unwrap();
    assert_eq!(after_wh1.status, ReservationStatus::Allocated);
    let on_hand = |s: &str, w: &str| store.stock(&sku(s), &wh(w)).unwrap().on_hand;
    assert_eq!(
        [
            on_hand("A", "WH1"),
            on_hand("B", "WH1"),
            on_hand("A", "WH2"),
            on_hand("C", "WH2")
        ],
        [0, 4, 10, 3]
    );
    let done = store.ship_from(r.id, &wh("WH2"), Timestamp(3)).unwrap();
    assert_eq!(done.status, ReservationStatus::Shipped);
    assert_eq!(
        [
            on_hand("A", "WH1"),
            on_hand("B", "WH1"),
            on_hand("A", "WH2"),
            on_hand("C", "WH2")
        ],
        [0, 4, 9, 2]
    );
    assert!(store
        .levels()
        .unwrap()
        .iter()
        .all(|row| row.level.reserved == 0 && row.level.allocated == 0));
}

#[test]
fn seed_001_s6_with_explicit_items_gives_the_same_holds() {
    let store = seed_001_warehouses();
    let request = ReservationRequest::new(1001)
        .item(sku("A"), wh("WH1"), 1)
        .item(sku("B"), wh("WH1"), 1)
        .item(sku("A"), wh("WH2"), 1)
        .item(sku("C"), wh("WH2"), 1);
    let r = store
        .reserve(&request, Timestamp(0))
        .unwrap()
        .into_reserved()
        .unwrap();
    let mut items = r.items.clone();
    items.sort();
    assert_eq!(
        items,
        [
            ReservationItem::new(sku("A"), wh("WH1"), 1),
            ReservationItem::new(sku("A"), wh("WH2"), 1),
            ReservationItem::new(sku("B"), wh("WH1"), 1),
            ReservationItem::new(sku("C"), wh("WH2"), 1),
        ]
    );
}

#[test]
fn seed_001_s4_unpaid_hold_is_released_after_15_minutes() {
    let store = seed_001_warehouses();
    let clock = ManualClock::new(Timestamp::from_civil(2026, 5, 6, 14, 0, 0));
    let unpaid = store
        .reserve(
            &ReservationRequest::new(501).spread(sku("A"), 2, both()),
            clock.now(),
        )
        .unwrap()
        .into_reserved()
        .unwrap();
    let paid = store
        .reserve(
            &ReservationRequest::new(502).item(sku("B"), wh("WH1"), 2),
            clock.now(),
        )
        .unwrap()
        .into_reserved()
        .unwrap();
    assert_eq!(unpaid.expires_at, clock.now().plus(Duration::minutes(15)));

    // The every-minute job: nothing lapses for 14 minutes; order 502 pays at minute 10.
    for minute in 1..15 {
        clock.advance(Duration::minutes(1));
        if minute == 10 {
            store.commit(paid.id, clock.now()).unwrap();
        }
        assert_eq!(expire_reservations(&store, clock.now()).unwrap(), vec![]);
    }
    clock.advance(Duration::minutes(1));
    let expired = expire_reservations(&store, clock.now()).unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].order_id, 501);
    assert_eq!(expired[0].reservation_id, unpaid.id);
    assert_eq!(expired[0].items, unpaid.items);

    // The stock is back, exactly once.
    assert_eq!(store.stock(&sku("A"), &wh("WH1")).unwrap().available(), 1);
    assert_eq!(store.stock(&sku("A"), &wh("WH2")).unwrap().available(), 10);
    clock.advance(Duration::minutes(1));
    assert_eq!(expire_reservations(&store, clock.now()).unwrap(), vec![]);
    assert_eq!(store.stock(&sku("A"), &wh("WH2")).unwrap().available(), 10);

    let r = store.reservation(unpaid.id).unwrap();
    assert_eq!(
        (r.status, r.release_reason),
        (ReservationStatus::Released, Some(ReleaseReason::Expired))
    );
    // A payment arriving now is too late.
    assert_eq!(
        store.commit(unpaid.id, clock.now()).unwrap_err().code(),
        "reservation_closed"
    );
    // The paid order kept its units.
    let b = store.stock(&sku("B"), &wh("WH1")).unwrap();
    assert_eq!((b.allocated, b.available()), (2, 3));
}

#[test]
fn seed_001_s4_payment_at_the_deadline_is_refused() {
    let store = seed_001_warehouses();
    let r = store
        .reserve(
            &ReservationRequest::new(7).item(sku("C"), wh("WH2"), 1),
            Timestamp(0),
        )
        .unwrap()
        .into_reserved()
        .unwrap();
    let before = store.levels().unwrap();
    assert_eq!(
        store.commit(r.id, r.expires_at).unwrap_err().code(),
        "reservation_expired"
    );
    assert_eq!(store.levels().unwrap(), before);
    assert!(store.commit(r.id, Timestamp(r.expires_at.0 - 1)).is_ok());
}

#[test]
fn seed_001_s3_out_of_stock_is_an_error_and_holds_nothing() {
    let store = seed_001_warehouses();
    let before = store.levels().unwrap();
    let outcome = store
        .reserve(
            &ReservationRequest::new(9).item(sku("C"), wh("WH1"), 1),
            Timestamp(0),
        )
        .unwrap();
    assert!(matches!(outcome, ReserveOutcome::OutOfStock(_)));
    assert_eq!(
        outcome.into_reserved().unwrap_err().code(),
        "insufficient_stock"
    );
    assert_eq!(store.levels().unwrap(), before);
}
