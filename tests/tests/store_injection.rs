//! Injection corpus: SKUs, warehouse ids, names and addresses made of SQL fragments, quotes,
//! placeholders and NUL-free unicode, and exactly-64-character SKUs, round-trip byte for byte
//! through every inventory store and every order store, and leave every table in place.

// Helpers outside #[test] functions stop the test on a failed setup, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use oms_core::inventory::{
    InventoryStore, MemoryInventory, ReservationRequest, ReserveOutcome, WarehouseId,
};
use oms_core::lifecycle::Actor;
use oms_core::money::{Currency, Money};
use oms_core::order::{AddressInput, Customer, LineItemInput, Order, OrderDraft, Sku};
use oms_core::store::{MemoryStore, OrderStore};
use oms_core::time::{ManualClock, SequentialIds, Timestamp};
use oms_store::{PostgresInventory, SqliteInventory, SqliteStore};

mod common;

/// Hostile text: every entry is a valid SKU, warehouse id and name (1–64 characters, no
/// control characters, no surrounding whitespace).
fn corpus() -> Vec<String> {
    let mut c: Vec<String> = [
        "x'); DROP TABLE orders;--",
        "x'); DROP TABLE inventory;--",
        "'; DELETE FROM warehouses WHERE '1'='1",
        "\" OR \"\"=\"",
        "' OR 1=1 --",
        "Robert'); DROP TABLE inventory_reservations; --",
        "$1 ?1 :name @p %s %% _ \\ \\' \\\"",
        "1; SELECT pg_sleep(10)",
        "/* comment */ --",
        "Zürich — 東京 · Ελλάδα · שלום · مرحبا",
        "🚚📦 e\u{301} \u{200d}\u{200f}ZWJ+RLM",
        "NUL-free \u{fffd} \u{feff}BOM",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    // Exactly 64 characters: one byte each, two bytes each, four bytes each.
    c.push("S".repeat(64));
    c.push("é".repeat(64));
    c.push(format!("{}'", "🚚".repeat(63)));
    c
}

fn check_inventory(name: &str, store: &dyn InventoryStore) {
    let corpus = corpus();
    for text in &corpus {
        assert_eq!(Sku::new(text).unwrap().as_str(), text);
    }
    // One character too many is refused by the core before any store sees it.
    assert_eq!(Sku::new(&"S".repeat(65)).unwrap_err().code(), "invalid_sku");
    let whs: Vec<WarehouseId> = corpus
        .iter()
        .map(|t| WarehouseId::new(t).unwrap())
        .collect();
    for w in &whs {
        store.add_warehouse(w).unwrap();
    }
    for (i, text) in corpus.iter().enumerate() {
        let sku = Sku::new(text).unwrap();
        let w = &whs[(i + 1) % whs.len()];
        store.receive(&sku, w, 5).unwrap();
        let mut from = vec![w.clone()];
        if *w != whs[0] {
            from.push(whs[0].clone());
        }
        let request = ReservationRequest::new(i as u64 + 1).spread(sku.clone(), 3, from);
        let r = store.reserve(&request, Timestamp(0)).unwrap();
        let ReserveOutcome::Reserved(r) = r else {
            panic!("{name}: {text}: {r:?}")
        };
        assert_eq!(r.items[0].sku.as_str(), text.as_str(), "{name}");
        assert_eq!(store.reservation(r.id).unwrap(), r, "{name}: {text}");
        assert_eq!(
            store.reservations_for_order(i as u64 + 1).unwrap(),
            vec![r.clone()],
            "{name}"
        );
        let l = store.stock(&sku, w).unwrap();
        assert_eq!((l.on_hand, l.reserved), (5, 3), "{name}: {text}");
        store.commit(r.id, Timestamp(0)).unwrap();
        store.ship_from(r.id, w, Timestamp(0)).unwrap();
    }
    let rows = store.levels().unwrap();
    assert_eq!(rows.len(), corpus.len(), "{name}");
    let mut want: Vec<(String, String)> = corpus
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), corpus[(i + 1) % corpus.len()].clone()))
        .collect();
    want.sort();
    let got: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.sku.as_str().to_owned(), r.warehouse.as_str().to_owned()))
        .collect();
    assert_eq!(got, want, "{name}: keys byte for byte, in byte order");
    for r in &rows {
        assert_eq!(
            (r.level.on_hand, r.level.allocated),
            (2, 0),
            "{name}: {r:?}"
        );
    }
}

fn hostile_order(ids: &SequentialIds, i: usize, text: &str) -> Order {
    let chf = Currency::from_code("CHF").unwrap();
    let draft = OrderDraft {
        customer: Customer {
            id: text.into(),
            email: "o'brien+x@example.com".into(),
            name: text.into(),
        },
        shipping_address: AddressInput {
            name: text.to_owned(),
            line1: text.to_owned(),
            line2: format!("{text} / {text}"),
            city: text.to_owned(),
            region: text.to_owned(),
            postal_code: "8001".into(),
            country: "CH".into(),
            ..AddressInput::default()
        },
        billing_address: None,
        currency: chf,
        lines: vec![
            LineItemInput::new(
                text,
                1 + i64::try_from(i).unwrap(),
                Money::parse("9.95", chf).unwrap(),
            ),
            LineItemInput::new(&"S".repeat(64), 1, Money::parse("0.05", chf).unwrap()),
        ],
        promo_codes: vec![],
    };
    let clock = ManualClock::new(Timestamp::from_civil(2026, 5, 6, 12, 0, 0));
    Order::create(&draft, &Actor::System, &clock, ids).unwrap()
}

fn check_orders(name: &str, store: &dyn OrderStore) {
    let ids = SequentialIds::default();
    let mut orders = Vec::new();
    for (i, text) in corpus().iter().enumerate() {
        let o = hostile_order(&ids, i, text);
        store.insert_order(&o, &[], None).unwrap();
        let back = store.order(o.id).unwrap();
        assert_eq!(back, o, "{name}: {text}");
        assert_eq!(back.customer.name.as_bytes(), text.as_bytes());
        assert_eq!(back.lines[0].sku.as_str().as_bytes(), text.as_bytes());
        assert_eq!(store.order_by_number(&o.number).unwrap(), o);
        orders.push(o.id);
    }
    assert_eq!(
        store.order_ids().unwrap(),
        orders,
        "{name}: every table still there"
    );
}

#[test]
fn memory_stores_round_trip_the_corpus() {
    check_inventory(
        "memory",
        &MemoryInventory::new(Arc::new(SequentialIds::default())),
    );
    check_orders("memory", &MemoryStore::new());
}

#[test]
fn sqlite_stores_round_trip_the_corpus() {
    let dir = common::temp_dir("sqlite-injection");
    let path = dir.join("injection.db");
    let inventory = SqliteInventory::open(&path, Arc::new(SequentialIds::default())).unwrap();
    check_inventory("sqlite", &inventory);
    check_orders("sqlite", inventory.store());
    // Reopened from the file, everything reads back the same.
    let again = SqliteStore::open(&path).unwrap();
    assert_eq!(again.order_ids().unwrap().len(), corpus().len());
    let reopened = SqliteInventory::new(again, Arc::new(SequentialIds::default()));
    assert_eq!(reopened.levels().unwrap(), inventory.levels().unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn postgres_stores_round_trip_the_corpus() {
    let inventory = PostgresInventory::new(
        common::postgres_store("injection"),
        Arc::new(SequentialIds::default()),
    );
    check_inventory("postgres", &inventory);
    check_orders("postgres", inventory.store());
}
