//! Concurrent reservers on the in-memory store never oversell.

// Helpers outside #[test] functions stop the test on a failed setup, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use oms_core::inventory::{
    InventoryStore, MemoryInventory, ReservationRequest, ReserveOutcome, WarehouseId,
};
use oms_core::order::Sku;
use oms_core::time::{SequentialIds, Timestamp};

const THREADS: usize = 16;

fn scarce_store(units: u64) -> (Arc<MemoryInventory>, Sku, WarehouseId) {
    let store = Arc::new(MemoryInventory::new(Arc::new(SequentialIds::default())));
    let (s, w) = (
        Sku::new("SCARCE").unwrap(),
        WarehouseId::new("WH1").unwrap(),
    );
    store.add_warehouse(&w).unwrap();
    store.receive(&s, &w, units).unwrap();
    (store, s, w)
}

#[test]
fn sixteen_threads_never_reserve_more_than_stock() {
    const STOCK: u64 = 100;
    const QTY: u64 = 3;
    const ATTEMPTS: u64 = 20;
    let (store, s, w) = scarce_store(STOCK);
    let successes = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS as u64)
        .map(|t| {
            let (store, s, w) = (Arc::clone(&store), s.clone(), w.clone());
            let (successes, start) = (Arc::clone(&successes), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                for i in 0..ATTEMPTS {
                    let request =
                        ReservationRequest::new(t * 1_000 + i).item(s.clone(), w.clone(), QTY);
                    let outcome = store.reserve(&request, Timestamp(0)).unwrap();
                    if matches!(outcome, ReserveOutcome::Reserved(_)) {
                        successes.fetch_add(1, Ordering::SeqCst);
                    }
                    let level = store.stock(&s, &w).unwrap();
                    assert!(level.is_consistent());
                    assert!(level.reserved <= STOCK);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let level = store.stock(&s, &w).unwrap();
    let won = successes.load(Ordering::SeqCst);
    // 16 × 20 × 3 = 960 units asked for 100 on the shelf: 33 holds of 3 fit, 1 unit is left.
    assert_eq!(won * QTY, level.reserved);
    assert!(level.reserved <= STOCK);
    assert_eq!(won, STOCK / QTY);
    assert_eq!(level.available(), STOCK % QTY);
    assert_eq!(
        level.on_hand,
        level.available() + level.reserved + level.allocated
    );
}

#[test]
fn sixteen_threads_reserving_and_releasing_keep_the_ledger_whole() {
    const STOCK: u64 = 10;
    let (store, s, w) = scarce_store(STOCK);
    let start = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS as u64)
        .map(|t| {
            let (store, s, w, start) =
                (Arc::clone(&store), s.clone(), w.clone(), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                let mut held = 0u64;
                for i in 0..200u64 {
                    let request =
                        ReservationRequest::new(t * 1_000 + i).item(s.clone(), w.clone(), 2);
                    if let ReserveOutcome::Reserved(r) =
                        store.reserve(&request, Timestamp(0)).unwrap()
                    {
                        held += 1;
                        let level = store.stock(&s, &w).unwrap();
                        assert!(level.is_consistent() && level.reserved <= STOCK);
                        if i % 3 == 0 {
                            store.commit(r.id, Timestamp(0)).unwrap();
                            store.ship(r.id, Timestamp(0)).unwrap();
                            // Put the shipped units back so the run keeps contending.
                            store.receive(&s, &w, 2).unwrap();
                        } else {
                            store.release(r.id, Timestamp(0)).unwrap();
                        }
                    }
                }
                held
            })
        })
        .collect();
    let held: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(held > 0);
    let level = store.stock(&s, &w).unwrap();
    assert_eq!(
        (level.on_hand, level.reserved, level.allocated),
        (STOCK, 0, 0)
    );
}
