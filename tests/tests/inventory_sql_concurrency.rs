//! Oversell under real concurrency: 64 worker threads, each with its own connection, make
//! 1,000 reservation attempts each on three scarce skus spread over four warehouses, on SQLite
//! (a file in WAL mode) and on PostgreSQL. Workers commit and ship some of what they hold,
//! keep some, release the rest, and accept or decline partial offers. At the end no row is
//! oversold or negative, and every row is exactly `initial − shipped` on hand with the units
//! the workers still hold reserved or allocated.
//!
//! A second pair of tests races 16 connections creating the same new stock rows: no receipt
//! is lost (on PostgreSQL the loser of a row-creating race reruns its transaction).

// Helpers outside #[test] functions stop the test on a failed setup, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

use oms_core::inventory::{
    InventoryStore, Reservation, ReservationItem, ReservationRequest, ReserveOutcome, WarehouseId,
};
use oms_core::order::Sku;
use oms_core::time::{SequentialIds, Timestamp};
use oms_store::{PostgresInventory, SqliteInventory};

mod common;

const WORKERS: u64 = 64;
const ATTEMPTS: u64 = 1_000;
const SKUS: [&str; 3] = ["SCARCE-A", "SCARCE-B", "SCARCE-C"];
const WHS: [&str; 4] = ["WH-1", "WH-2", "WH-3", "WH-4"];
/// Units of each sku in each warehouse at the start: 12 rows, 1,200 units for 64,000 attempts.
const INITIAL: u64 = 100;
/// Holds never expire during the run.
const NOW: Timestamp = Timestamp(0);

type Key = (String, String);

/// What one worker did, per (sku, warehouse).
#[derive(Default)]
struct Tally {
    shipped: BTreeMap<Key, u64>,
    reserved: BTreeMap<Key, u64>,
    allocated: BTreeMap<Key, u64>,
    holds: u64,
    reserved_at_once: u64,
    offers: u64,
    out_of_stock: u64,
    lost_accepts: u64,
    lost_races: u64,
}

impl Tally {
    fn add(into: &mut BTreeMap<Key, u64>, items: &[ReservationItem]) {
        for i in items {
            *into
                .entry((i.sku.to_string(), i.warehouse.to_string()))
                .or_default() += i.quantity;
        }
    }

    fn merge(&mut self, other: Tally) {
        for (mine, theirs) in [
            (&mut self.shipped, other.shipped),
            (&mut self.reserved, other.reserved),
            (&mut self.allocated, other.allocated),
        ] {
            for (k, v) in theirs {
                *mine.entry(k).or_default() += v;
            }
        }
        self.holds += other.holds;
        self.reserved_at_once += other.reserved_at_once;
        self.offers += other.offers;
        self.out_of_stock += other.out_of_stock;
        self.lost_accepts += other.lost_accepts;
        self.lost_races += other.lost_races;
    }
}

/// xorshift64: a deterministic stream per worker, so a failing run can be replayed.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn sku(i: u64) -> Sku {
    Sku::new(SKUS[i as usize]).unwrap()
}
fn wh(i: u64) -> WarehouseId {
    WarehouseId::new(WHS[i as usize]).unwrap()
}

/// What to do with a hold: ship it (4%), commit and keep it allocated (2%), keep it reserved
/// (2%), or release it (92%), so the stock drains slowly and stays fought over.
fn settle(store: &dyn InventoryStore, rng: &mut Rng, tally: &mut Tally, r: &Reservation) {
    let id = r.id;
    match rng.below(50) {
        0 | 1 => {
            store.commit(id, NOW).unwrap();
            store.ship(id, NOW).unwrap();
            Tally::add(&mut tally.shipped, &r.items);
        }
        2 => {
            store.commit(id, NOW).unwrap();
            Tally::add(&mut tally.allocated, &r.items);
        }
        3 => Tally::add(&mut tally.reserved, &r.items),
        _ => {
            store.release(id, NOW).unwrap();
        }
    }
}

fn worker(store: &dyn InventoryStore, t: u64) -> Tally {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut tally = Tally::default();
    for i in 0..ATTEMPTS {
        let s = sku(rng.below(3));
        let q = 1 + rng.below(3);
        let mut request = ReservationRequest::new(t * 1_000_000 + i);
        request = if rng.below(2) == 0 {
            request.item(s.clone(), wh(rng.below(4)), q)
        } else {
            let first = rng.below(4);
            let order = (0..4).map(|k| wh((first + k) % 4)).collect();
            request.spread(s.clone(), q, order)
        };
        if rng.below(4) == 0 {
            request = request.item(sku(rng.below(3)), wh(rng.below(4)), 1);
        }
        let outcome = match store.reserve(&request, NOW) {
            Ok(outcome) => outcome,
            // The availability check saw the units, a concurrent reserver held them first: the
            // conditional update found too few and the call rolled back.
            Err(e) if e.code() == "insufficient_stock" => {
                tally.lost_races += 1;
                continue;
            }
            Err(e) => panic!("reserve: {e}"),
        };
        match outcome {
            ReserveOutcome::Reserved(r) => {
                tally.holds += 1;
                tally.reserved_at_once += 1;
                settle(store, &mut rng, &mut tally, &r);
            }
            ReserveOutcome::PartiallyAvailable(r) => {
                tally.offers += 1;
                if rng.below(2) == 0 {
                    store.decline_partial(r.id, NOW).unwrap();
                } else {
                    match store.accept_partial(r.id, NOW) {
                        Ok(held) => {
                            tally.holds += 1;
                            settle(store, &mut rng, &mut tally, &held);
                        }
                        // Another worker took the offered units meanwhile.
                        Err(e) if e.code() == "insufficient_stock" => tally.lost_accepts += 1,
                        Err(e) => panic!("accept_partial: {e}"),
                    }
                }
            }
            ReserveOutcome::OutOfStock(_) => tally.out_of_stock += 1,
        }
        if i % 100 == 0 {
            for level in store.levels().unwrap() {
                assert!(level.level.is_consistent(), "{level:?}");
            }
        }
    }
    tally
}

/// Stock every row, run the workers (each on a store from `open`), check the final ledger.
fn oversell_run<S, F>(name: &str, setup: &dyn InventoryStore, open: F) -> Vec<Arc<S>>
where
    S: InventoryStore + 'static,
    F: Fn() -> Arc<S>,
{
    for w in 0..4 {
        setup.add_warehouse(&wh(w)).unwrap();
        for s in 0..3 {
            setup.receive(&sku(s), &wh(w), INITIAL).unwrap();
        }
    }
    let stores: Vec<Arc<S>> = (0..WORKERS).map(|_| open()).collect();
    let start = Arc::new(Barrier::new(WORKERS as usize));
    let began = Instant::now();
    let handles: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(t, store)| {
            let (store, start) = (Arc::clone(store), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                worker(&*store, t as u64)
            })
        })
        .collect();
    let mut total = Tally::default();
    for h in handles {
        total.merge(h.join().unwrap());
    }
    let elapsed = began.elapsed();

    let rows = setup.levels().unwrap();
    assert_eq!(rows.len(), 12);
    for row in &rows {
        let l = row.level;
        let key = (row.sku.to_string(), row.warehouse.to_string());
        let shipped = total.shipped.get(&key).copied().unwrap_or(0);
        assert!(l.is_consistent(), "{name}: oversold {row:?}");
        assert!(l.reserved + l.allocated <= l.on_hand, "{name}: {row:?}");
        assert_eq!(l.on_hand, INITIAL - shipped, "{name}: {key:?} on hand");
        assert_eq!(
            l.reserved,
            total.reserved.get(&key).copied().unwrap_or(0),
            "{name}: {key:?} reserved"
        );
        assert_eq!(
            l.allocated,
            total.allocated.get(&key).copied().unwrap_or(0),
            "{name}: {key:?} allocated"
        );
    }
    let shipped: u64 = total.shipped.values().sum();
    println!(
        "{name}: {WORKERS} workers x {ATTEMPTS} attempts in {elapsed:.1?}: {} holds, {} partial \
         offers ({} accepts lost to another worker), {} out of stock, {} reserves rolled back \
         after losing a race; {shipped} of {} units shipped",
        total.holds,
        total.offers,
        total.lost_accepts,
        total.out_of_stock,
        total.lost_races,
        INITIAL * 12
    );
    // Every attempt got one of the three answers, and the run really fought over the stock.
    assert_eq!(
        total.reserved_at_once + total.offers + total.out_of_stock + total.lost_races,
        WORKERS * ATTEMPTS
    );
    assert!(total.holds > 0 && total.out_of_stock > 0 && shipped > 0);
    stores
}

#[test]
fn sqlite_never_oversells_under_64_connections() {
    let dir = common::temp_dir("sqlite-oversell");
    let path = dir.join("inventory.db");
    let ids = Arc::new(SequentialIds::default());
    let setup = SqliteInventory::open(&path, ids.clone()).unwrap();
    let stores = oversell_run("sqlite", &setup, || {
        Arc::new(SqliteInventory::open(&path, ids.clone()).unwrap())
    });
    let retries: u64 = stores.iter().map(|s| s.busy_retries()).sum();
    println!("sqlite: {retries} busy retries of BEGIN IMMEDIATE past the busy timeout");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sqlite_never_oversells_with_64_threads_sharing_a_group_commit() {
    let dir = common::temp_dir("sqlite-oversell-grouped");
    let path = dir.join("inventory.db");
    let ids = Arc::new(SequentialIds::default());
    let shared = Arc::new(SqliteInventory::open(&path, ids.clone()).unwrap());
    shared.store().enable_group_commit().unwrap();
    oversell_run("sqlite, one connection, group commit", &*shared, || {
        Arc::clone(&shared)
    });
    // Every acknowledged write was committed: a fresh connection sees the same ledger.
    let other = SqliteInventory::open(&path, ids).unwrap();
    assert_eq!(other.levels().unwrap(), shared.levels().unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Run `work` while another thread calls `rotate` every 2 ms; how many rotations ran.
fn rotating_every_2ms(rotate: impl Fn() + Sync, work: impl FnOnce()) -> u64 {
    let done = std::sync::atomic::AtomicBool::new(false);
    thread::scope(|scope| {
        let rotator = scope.spawn(|| {
            let mut n = 0u64;
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                thread::sleep(std::time::Duration::from_millis(2));
                rotate();
                n += 1;
            }
            n
        });
        work();
        done.store(true, std::sync::atomic::Ordering::Release);
        rotator.join().unwrap()
    })
}

#[test]
fn sqlite_never_oversells_with_64_threads_sharing_a_rotated_pipelined_batch() {
    let dir = common::temp_dir("sqlite-oversell-pipelined");
    let path = dir.join("inventory.db");
    let ids = Arc::new(SequentialIds::default());
    let shared = Arc::new(SqliteInventory::open(&path, ids.clone()).unwrap());
    let store = shared.store();
    store.pipeline_batches().unwrap();
    store.begin_batch().unwrap();
    let rotations = rotating_every_2ms(
        || store.rotate_batch().unwrap(),
        || {
            oversell_run(
                "sqlite, one connection, pipelined batches rotated every 2 ms",
                &*shared,
                || Arc::clone(&shared),
            );
        },
    );
    store.commit_batch().unwrap();
    store.wait_for_commit().unwrap();
    assert!(rotations > 1, "the batch was rotated {rotations} times");
    // Every batch was committed: a fresh connection sees the same ledger.
    let other = SqliteInventory::open(&path, ids).unwrap();
    assert_eq!(other.levels().unwrap(), shared.levels().unwrap());
    println!("sqlite, pipelined: {rotations} batches");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn postgres_never_oversells_under_64_connections() {
    let schema = common::fresh_schema("oversell");
    let ids = Arc::new(SequentialIds::default());
    let setup = PostgresInventory::new(common::postgres_connect(&schema), ids.clone());
    let stores = oversell_run("postgres", &setup, || {
        Arc::new(PostgresInventory::new(
            common::postgres_connect(&schema),
            ids.clone(),
        ))
    });
    let retries: u64 = stores.iter().map(|s| s.retries()).sum();
    println!("postgres: {retries} transactions retried (40001/40P01 or a concurrent insert)");
}

#[test]
fn postgres_never_oversells_with_64_threads_sharing_a_rotated_batch() {
    let schema = common::fresh_schema("oversell_batched");
    let ids = Arc::new(SequentialIds::default());
    let store = Arc::new(common::postgres_connect(&schema));
    let shared = Arc::new(PostgresInventory::sharing(
        store.clone(),
        ids.clone(),
        oms_core::inventory::ReservationConfig::default(),
    ));
    store.begin_batch().unwrap();
    let rotations = rotating_every_2ms(
        || store.rotate_batch().unwrap(),
        || {
            oversell_run(
                "postgres, one pool, batches rotated every 2 ms",
                &*shared,
                || Arc::clone(&shared),
            );
        },
    );
    store.commit_batch().unwrap();
    assert!(rotations > 1, "the batch was rotated {rotations} times");
    // Every batch was committed: another connection sees the same ledger.
    let other = PostgresInventory::new(common::postgres_connect(&schema), ids);
    assert_eq!(other.levels().unwrap(), shared.levels().unwrap());
    println!("postgres, batched: {rotations} batches");
}

/// Many connections receiving a sku no row holds yet: each receipt either creates the row or
/// adds to it, none is lost to a concurrent insert.
fn concurrent_first_receipts<S: InventoryStore + 'static>(name: &str, stores: &[Arc<S>]) -> u64 {
    const EACH: u64 = 25;
    let w = wh(0);
    stores[0].add_warehouse(&w).unwrap();
    let n = stores.len();
    let start = Arc::new(Barrier::new(n));
    let handles: Vec<_> = stores
        .iter()
        .map(|store| {
            let (store, start, w) = (Arc::clone(store), Arc::clone(&start), w.clone());
            thread::spawn(move || {
                start.wait();
                for k in 0..EACH {
                    let fresh = Sku::new(&format!("NEW-{k}")).unwrap();
                    store.receive(&fresh, &w, 1).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for k in 0..EACH {
        let fresh = Sku::new(&format!("NEW-{k}")).unwrap();
        let l = stores[0].stock(&fresh, &w).unwrap();
        assert_eq!(l.on_hand, n as u64, "{name}: NEW-{k}");
    }
    println!("{name}: {n} connections x {EACH} first receipts, none lost");
    n as u64 * EACH
}

#[test]
fn postgres_first_receipts_race_without_losing_units() {
    let schema = common::fresh_schema("first_receipts");
    let stores: Vec<Arc<PostgresInventory>> = (0..16)
        .map(|_| {
            Arc::new(PostgresInventory::new(
                common::postgres_connect(&schema),
                Arc::new(SequentialIds::default()),
            ))
        })
        .collect();
    assert_eq!(concurrent_first_receipts("postgres", &stores), 16 * 25);
    let retries: u64 = stores.iter().map(|s| s.retries()).sum();
    println!("postgres: {retries} transactions rerun after another connection created the row");
}

#[test]
fn sqlite_first_receipts_race_without_losing_units() {
    let dir = common::temp_dir("sqlite-first-receipts");
    let path = dir.join("receipts.db");
    let stores: Vec<Arc<SqliteInventory>> = (0..16)
        .map(|_| {
            Arc::new(SqliteInventory::open(&path, Arc::new(SequentialIds::default())).unwrap())
        })
        .collect();
    assert_eq!(concurrent_first_receipts("sqlite", &stores), 16 * 25);
    let _ = std::fs::remove_dir_all(&dir);
}
