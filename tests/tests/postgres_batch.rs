//! Batches on PostgreSQL: operations run on memory and commit in one transaction. Other
//! connections see nothing until the commit and then everything; a batch whose order another
//! writer moved on, or whose stock no longer fits what other writers took meanwhile, writes
//! nothing at all; stock changes of a batch add to other writers' changes rather than
//! overwrite them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::moved_on;

use std::sync::Arc;

use oms_core::events::Event;
use oms_core::inventory::{InventoryStore, ReservationConfig, ReservationRequest, WarehouseId};
use oms_core::order::{Order, Sku};
use oms_core::store::OrderStore;
use oms_core::time::{SequentialIds, Timestamp};
use oms_store::{PostgresInventory, PostgresStore};

const T0: Timestamp = Timestamp(1_000_000);

fn order(ids: &SequentialIds) -> Order {
    common::placed_order(ids, "SKU-1")
}

fn sku() -> Sku {
    Sku::new("SKU-1").unwrap()
}

fn wh() -> WarehouseId {
    WarehouseId::new("WH1").unwrap()
}

/// A store and an inventory sharing it (so both join its batches), another connection's
/// store and inventory, and 5 units of SKU-1 in WH1.
struct Two {
    batched: Arc<PostgresStore>,
    batched_inv: PostgresInventory,
    other: PostgresStore,
    other_inv: PostgresInventory,
}

fn two(test: &str) -> Two {
    let schema = common::fresh_schema(test);
    let ids = Arc::new(SequentialIds::starting_at(1_000));
    let batched = Arc::new(common::postgres_connect(&schema));
    let batched_inv =
        PostgresInventory::sharing(batched.clone(), ids.clone(), ReservationConfig::default());
    let other = common::postgres_connect(&schema);
    let other_inv = PostgresInventory::new(common::postgres_connect(&schema), ids);
    other_inv.add_warehouse(&wh()).unwrap();
    other_inv.receive(&sku(), &wh(), 5).unwrap();
    Two {
        batched,
        batched_inv,
        other,
        other_inv,
    }
}

#[test]
fn a_batch_is_invisible_to_other_connections_until_its_commit_and_then_whole() {
    let t = two("batch_visibility");
    let ids = SequentialIds::default();
    let placed = order(&ids);
    t.batched.begin_batch().unwrap();
    assert!(t.batched.in_batch().unwrap());
    let created = Event::new(placed.id, 1, "order.created", placed.created_at);
    t.batched.insert_order(&placed, &[created], None).unwrap();
    let paid = moved_on(&placed);
    let event = Event::new(placed.id, 2, "order.paid", paid.updated_at);
    t.batched.update_order(&paid, 1, &[event], None).unwrap();
    let held = t
        .batched_inv
        .reserve(&ReservationRequest::new(placed.id).item(sku(), wh(), 2), T0)
        .unwrap()
        .into_reserved()
        .unwrap();
    // The batch reads its own writes.
    assert_eq!(t.batched.order(placed.id).unwrap(), paid);
    assert_eq!(t.batched.order_by_number(&placed.number).unwrap(), paid);
    assert_eq!(t.batched.order_ids().unwrap(), vec![placed.id]);
    assert_eq!(
        t.batched.order_ids_with_status(paid.status).unwrap(),
        vec![placed.id]
    );
    assert_eq!(t.batched.orders_after(0, 10).unwrap(), vec![paid.clone()]);
    assert_eq!(t.batched_inv.stock(&sku(), &wh()).unwrap().reserved, 2);
    assert_eq!(t.batched_inv.reservation(held.id).unwrap(), held);
    // A write refused in the batch changes nothing in it.
    assert_eq!(
        t.batched
            .update_order(&moved_on(&placed), 1, &[], None)
            .unwrap_err()
            .code(),
        "conflict"
    );
    assert_eq!(
        t.batched
            .insert_order(&placed, &[], None)
            .unwrap_err()
            .code(),
        "conflict"
    );
    // Another connection sees none of it.
    assert!(t.other.order_ids().unwrap().is_empty());
    assert!(t.other.pending_events(10).unwrap().is_empty());
    assert_eq!(t.other_inv.stock(&sku(), &wh()).unwrap().reserved, 0);

    t.batched.commit_batch().unwrap();
    assert!(!t.batched.in_batch().unwrap());
    assert_eq!(t.other.order(placed.id).unwrap(), paid);
    let events = t.other.pending_events(10).unwrap();
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["order.created", "order.paid"]);
    assert_eq!(t.other_inv.stock(&sku(), &wh()).unwrap().reserved, 2);
    assert_eq!(t.other_inv.reservation(held.id).unwrap(), held);
    assert_eq!(t.batched.commit_batch().unwrap_err().code(), "storage");
}

#[test]
fn a_batch_whose_order_another_writer_moved_on_writes_nothing() {
    let t = two("batch_order_conflict");
    let ids = SequentialIds::default();
    let placed = order(&ids);
    t.other.insert_order(&placed, &[], None).unwrap();
    t.batched.begin_batch().unwrap();
    let fresh = order(&ids);
    t.batched.insert_order(&fresh, &[], None).unwrap();
    t.batched_inv
        .reserve(&ReservationRequest::new(fresh.id).item(sku(), wh(), 1), T0)
        .unwrap();
    t.batched
        .update_order(&moved_on(&placed), 1, &[], None)
        .unwrap();
    // Meanwhile another connection moves the same order on.
    t.other
        .update_order(&moved_on(&placed), 1, &[], None)
        .unwrap();
    let err = t.batched.commit_batch().unwrap_err();
    assert_eq!(err.code(), "conflict", "{err}");
    assert_eq!(t.other.order_ids().unwrap(), vec![placed.id]);
    assert_eq!(t.other_inv.stock(&sku(), &wh()).unwrap().reserved, 0);
    assert!(!t.batched.in_batch().unwrap());
}

#[test]
fn stock_a_batch_moves_adds_to_other_writers_and_is_never_oversold() {
    let t = two("batch_stock");
    // The batch reserves 2 of the 5 units; meanwhile another connection reserves 2 more.
    t.batched.begin_batch().unwrap();
    t.batched_inv
        .reserve(&ReservationRequest::new(1).item(sku(), wh(), 2), T0)
        .unwrap()
        .into_reserved()
        .unwrap();
    t.other_inv
        .reserve(&ReservationRequest::new(2).item(sku(), wh(), 2), T0)
        .unwrap()
        .into_reserved()
        .unwrap();
    t.batched.commit_batch().unwrap();
    let level = t.other_inv.stock(&sku(), &wh()).unwrap();
    assert_eq!((level.on_hand, level.reserved), (5, 4));

    // Now the batch's copy says 1 unit is free and it takes it, but another connection takes
    // it first: the commit finds the row no longer fits and writes nothing.
    t.batched.begin_batch().unwrap();
    t.batched_inv
        .reserve(&ReservationRequest::new(3).item(sku(), wh(), 1), T0)
        .unwrap()
        .into_reserved()
        .unwrap();
    let placed = order(&SequentialIds::default());
    t.batched.insert_order(&placed, &[], None).unwrap();
    t.other_inv
        .reserve(&ReservationRequest::new(4).item(sku(), wh(), 1), T0)
        .unwrap()
        .into_reserved()
        .unwrap();
    let err = t.batched.commit_batch().unwrap_err();
    assert_eq!(err.code(), "conflict", "{err}");
    let level = t.other_inv.stock(&sku(), &wh()).unwrap();
    assert_eq!((level.on_hand, level.reserved), (5, 5));
    assert!(t.other.order_ids().unwrap().is_empty());
    assert!(t.other_inv.reservations_for_order(3).unwrap().is_empty());

    // A receipt in a batch adds to a receipt made meanwhile.
    t.batched.begin_batch().unwrap();
    t.batched_inv.receive(&sku(), &wh(), 10).unwrap();
    t.other_inv.receive(&sku(), &wh(), 3).unwrap();
    t.batched.rotate_batch().unwrap();
    assert!(t.batched.in_batch().unwrap());
    t.batched.rollback_batch().unwrap();
    assert_eq!(t.other_inv.stock(&sku(), &wh()).unwrap().on_hand, 18);
}

#[test]
fn a_rolled_back_batch_leaves_nothing_and_the_store_writes_directly_again() {
    let t = two("batch_rollback");
    let ids = SequentialIds::default();
    let dropped = order(&ids);
    t.batched.begin_batch().unwrap();
    assert_eq!(t.batched.begin_batch().unwrap_err().code(), "invalid_field");
    t.batched.insert_order(&dropped, &[], None).unwrap();
    t.batched.rollback_batch().unwrap();
    assert!(t.other.order_ids().unwrap().is_empty());
    assert_eq!(t.batched.rotate_batch().unwrap_err().code(), "storage");
    let kept = order(&ids);
    t.batched.insert_order(&kept, &[], None).unwrap();
    assert_eq!(t.other.order_ids().unwrap(), vec![kept.id]);
}

#[test]
fn a_rotation_whose_commit_fails_loses_the_batch_built_on_it() {
    let t = two("batch_rotation_lost");
    let ids = SequentialIds::default();
    let placed = order(&ids);
    t.other.insert_order(&placed, &[], None).unwrap();
    t.batched.begin_batch().unwrap();
    t.batched
        .update_order(&moved_on(&placed), 1, &[], None)
        .unwrap();
    t.other
        .update_order(&moved_on(&placed), 1, &[], None)
        .unwrap();
    let err = t.batched.rotate_batch().unwrap_err();
    assert_eq!(err.code(), "conflict", "{err}");
    // The batch opened by the rotation was built on the failed one: it refuses work.
    assert!(t.batched.in_batch().unwrap());
    let refused = t.batched.insert_order(&order(&ids), &[], None).unwrap_err();
    assert!(
        refused.to_string().contains("failed to commit"),
        "{refused}"
    );
    assert!(t
        .batched_inv
        .receive(&sku(), &wh(), 1)
        .unwrap_err()
        .to_string()
        .contains("failed to commit"));
    assert_eq!(t.batched.commit_batch().unwrap_err().code(), "storage");
    // Once it is gone, the store writes again.
    t.batched.rollback_batch().unwrap();
    let next = order(&ids);
    t.batched.insert_order(&next, &[], None).unwrap();
    assert_eq!(t.other.order_ids().unwrap(), vec![placed.id, next.id]);
    assert_eq!(t.other_inv.stock(&sku(), &wh()).unwrap().on_hand, 5);
}

/// Sets its flag when dropped: stops helper threads however a test's scope ends, a failed
/// assertion included.
struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }
}

#[test]
fn idempotency_records_of_a_rotated_batch_are_found_while_and_after_it_commits() {
    use oms_core::store::{IdempotencyRecord, Response};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    let schema = common::fresh_schema("pg_batch_keys_rotating");
    let store = Arc::new(common::postgres_connect(&schema));
    store.begin_batch().unwrap();
    let record = |k: &str| IdempotencyRecord {
        fingerprint: format!("op:{k}"),
        response: Response::Json(format!("{{\"Ok\":\"{k}\"}}")),
    };
    // Keys whose write returned: from then on every look-up must find them, whether their
    // batch is open, committing, or committed (a look-up reads the database before it locks
    // the batch, so a commit ending in between must not hide a key).
    let acknowledged: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let done = AtomicBool::new(false);
    let rotated = std::sync::atomic::AtomicU64::new(0);
    let (mut rotations, mut looked) = (0u64, 0u64);
    std::thread::scope(|scope| {
        let stop = StopOnDrop(&done);
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let (store, acknowledged, rotated) = (&store, &acknowledged, &rotated);
                scope.spawn(move || {
                    // Until the batch has been cut 50 times under them.
                    for i in 0.. {
                        if rotated.load(Ordering::Acquire) >= 50 {
                            break;
                        }
                        let key = format!("k-{w}-{i}");
                        store.put_idempotency(&key, &record(&key)).unwrap();
                        assert_eq!(store.idempotency(&key).unwrap(), Some(record(&key)));
                        acknowledged.lock().unwrap().push(key);
                    }
                })
            })
            .collect();
        let reader = scope.spawn(|| {
            let mut n = 0u64;
            while !done.load(Ordering::Acquire) {
                let keys = acknowledged.lock().unwrap().clone();
                for key in keys.iter().rev().take(20) {
                    assert_eq!(
                        store.idempotency(key).unwrap(),
                        Some(record(key)),
                        "{key} acknowledged, then not found"
                    );
                    n += 1;
                }
            }
            n
        });
        let rotator = scope.spawn(|| {
            let mut n = 0u64;
            while !done.load(Ordering::Acquire) {
                std::thread::sleep(std::time::Duration::from_millis(1));
                store.rotate_batch().unwrap();
                n += 1;
                rotated.store(n, Ordering::Release);
            }
            n
        });
        let written: Vec<_> = writers
            .into_iter()
            .map(std::thread::ScopedJoinHandle::join)
            .collect();
        drop(stop);
        looked = reader.join().unwrap();
        rotations = rotator.join().unwrap();
        for w in written {
            w.unwrap();
        }
    });
    store.commit_batch().unwrap();
    assert!(rotations >= 50, "{rotations} rotations");
    assert!(looked > 100, "{looked} look-ups");
    let other = common::postgres_connect(&schema);
    for key in acknowledged.lock().unwrap().iter() {
        assert_eq!(other.idempotency(key).unwrap(), Some(record(key)));
    }
}

#[test]
fn a_batch_checks_new_orders_on_the_indexes_however_large_the_table_grew() {
    let schema = common::fresh_schema("batch_insert_probe");
    let store = common::postgres_connect(&schema);
    let ids = SequentialIds::default();
    // Each order a batch inserts is first looked up by id and number. The table grows from
    // empty under the same pooled connections: a plan cached while it was empty must not
    // turn each look-up into a read of every stored order.
    for _ in 0..10 {
        store.begin_batch().unwrap();
        for _ in 0..40 {
            store.insert_order(&order(&ids), &[], None).unwrap();
        }
        store.commit_batch().unwrap();
    }
    // A backend reports its table statistics when it ends.
    drop(store);
    let mut c = postgres::Client::connect(&common::postgres_url(), postgres::NoTls).unwrap();
    let mut seen = (0, 0);
    for _ in 0..100 {
        let row = c
            .query_one(
                "SELECT COALESCE(seq_tup_read, 0), COALESCE(idx_scan, 0) FROM pg_stat_user_tables
                 WHERE schemaname = $1 AND relname = 'orders'",
                &[&schema],
            )
            .unwrap();
        seen = (row.get::<_, i64>(0), row.get::<_, i64>(1));
        if seen.1 >= 400 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (rows_scanned, index_scans) = seen;
    assert!(
        index_scans >= 400,
        "the look-ups were never reported: {seen:?}"
    );
    assert_eq!(rows_scanned, 0, "orders read by sequential scans");
    let stored: i64 = c
        .query_one(&format!("SELECT count(*) FROM {schema}.orders"), &[])
        .unwrap()
        .get(0);
    assert_eq!(stored, 400);
}
