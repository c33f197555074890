//! Deterministic simulation: many seeded order journeys through the service, with the fake
//! gateway declining, losing answers, duplicating responses and failing captures, and the clock
//! running past reservation expiries. After each run every invariant must hold; the same seed
//! replays to the same digest; and the in-memory, SQLite and PostgreSQL stores produce the same
//! digest for the same seed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use oms_core::inventory::{MemoryInventory, ReservationConfig};
use oms_core::service::CheckoutFlow;
use oms_core::store::{MemoryStore, OrderStore};
use oms_sim::{run, Backend, SimConfig, SimReport};
use oms_store::{PostgresInventory, SqliteInventory, SqliteStore};

fn memory(config: &SimConfig) -> SimReport {
    run(
        config,
        Box::new(|ids| {
            Ok(Backend {
                orders: Arc::new(MemoryStore::new()),
                inventory: Arc::new(MemoryInventory::new(ids)),
            })
        }),
        &mut |_| {},
    )
    .unwrap()
}

/// A run on the SQLite file `path`, one connection for orders and inventory, committing every
/// 20 orders, in line or `pipelined`.
fn grouped_sqlite(config: &SimConfig, path: &std::path::Path, pipelined: bool) -> SimReport {
    run(
        &SimConfig {
            orders_per_commit: 20,
            ..config.clone()
        },
        Box::new(|ids| {
            let orders = Arc::new(SqliteStore::open(path)?);
            if pipelined {
                orders.pipeline_batches()?;
            }
            let inventory =
                SqliteInventory::sharing(orders.clone(), ids, ReservationConfig::default());
            Ok(Backend {
                orders,
                inventory: Arc::new(inventory),
            })
        }),
        &mut |_| {},
    )
    .unwrap()
}

fn assert_sound(r: &SimReport) {
    assert!(
        r.invariants.all_hold(),
        "seed {} violated: {:#?}",
        r.seed,
        r.invariants.violations
    );
}

#[test]
fn thousands_of_seeded_journeys_keep_every_invariant() {
    let mut total = 0;
    for seed in 1..=6u64 {
        let flow = if seed % 2 == 0 {
            CheckoutFlow::PayThenReserve
        } else {
            CheckoutFlow::ReserveThenPay
        };
        let capture = if seed % 3 == 0 {
            oms_core::payment::CapturePolicy::OnShipment
        } else {
            oms_core::payment::CapturePolicy::OnDelivery
        };
        let config = SimConfig {
            orders: 500,
            seed,
            flow,
            capture,
            ..SimConfig::default()
        };
        let r = memory(&config);
        assert_sound(&r);
        total += r.orders;
        // the mix really happened
        for outcome in [
            "confirmed",
            "payment_declined",
            "delivered",
            "abandoned_payment_expired",
            "return_refunded",
        ] {
            assert!(
                r.outcomes.get(outcome).copied().unwrap_or(0) > 0,
                "seed {seed}: no {outcome} in {:?}",
                r.outcomes
            );
        }
        assert!(r.money.captured > 0 && r.money.refunded > 0);
    }
    assert!(total >= 3_000);
}

#[test]
fn a_seed_replays_exactly() {
    let config = SimConfig {
        orders: 300,
        seed: 99,
        ..SimConfig::default()
    };
    let (a, b) = (memory(&config), memory(&config));
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.outcomes, b.outcomes);
    let other = memory(&SimConfig {
        seed: 100,
        ..config
    });
    assert_ne!(a.digest, other.digest);
}

#[test]
fn memory_sqlite_and_postgres_give_identical_results() {
    let config = SimConfig {
        orders: 150,
        seed: 7,
        ..SimConfig::default()
    };
    let mem = memory(&config);
    assert_sound(&mem);

    let dir = common::temp_dir("simulation");
    let path = dir.join("sim.db");
    let sqlite = run(
        &config,
        Box::new(|ids| {
            let inventory = SqliteInventory::new(SqliteStore::open(&path)?, ids);
            let orders = SqliteStore::open(&path)?;
            Ok(Backend {
                orders: Arc::new(orders),
                inventory: Arc::new(inventory),
            })
        }),
        &mut |_| {},
    )
    .unwrap();
    assert_sound(&sqlite);
    assert_eq!(mem.digest, sqlite.digest, "SQLite differs from memory");

    // Grouping the commits (every 20 orders, one connection for orders and inventory) changes
    // when writes become durable, never what is written.
    let batched_path = dir.join("batched.db");
    let batched = grouped_sqlite(&config, &batched_path, false);
    assert_sound(&batched);
    assert_eq!(
        mem.digest, batched.digest,
        "batched SQLite differs from memory"
    );
    // Pipelined, each group is committed on a second thread while the next one runs on top
    // of it: again only the timing of durability changes.
    let pipelined_path = dir.join("pipelined.db");
    let pipelined = grouped_sqlite(&config, &pipelined_path, true);
    assert_sound(&pipelined);
    assert_eq!(
        mem.digest, pipelined.digest,
        "pipelined SQLite differs from memory"
    );
    let reopened = SqliteStore::open(&batched_path).unwrap();
    assert!(!reopened.in_batch().unwrap());
    let unbatched = SqliteStore::open(&path).unwrap().order_ids().unwrap();
    assert!(!unbatched.is_empty());
    assert_eq!(reopened.order_ids().unwrap(), unbatched);
    assert_eq!(
        SqliteStore::open(&pipelined_path)
            .unwrap()
            .order_ids()
            .unwrap(),
        unbatched
    );

    let pg = run(
        &config,
        Box::new(|ids| {
            let schema = common::fresh_schema("simulation");
            let store = common::postgres_connect(&schema);
            let orders = common::postgres_connect(&schema);
            Ok(Backend {
                orders: Arc::new(orders),
                inventory: Arc::new(PostgresInventory::new(store, ids)),
            })
        }),
        &mut |_| {},
    )
    .unwrap();
    assert_sound(&pg);
    assert_eq!(mem.digest, pg.digest, "PostgreSQL differs from memory");

    // Batched on PostgreSQL (every 20 orders, one store for orders and inventory): the batch
    // runs on memory and its commit writes what the operations would have written.
    let pg_batched = run(
        &SimConfig {
            orders_per_commit: 20,
            ..config.clone()
        },
        Box::new(|ids| {
            let schema = common::fresh_schema("simulation_batched");
            let orders = Arc::new(common::postgres_connect(&schema));
            let inventory =
                PostgresInventory::sharing(orders.clone(), ids, ReservationConfig::default());
            Ok(Backend {
                orders,
                inventory: Arc::new(inventory),
            })
        }),
        &mut |_| {},
    )
    .unwrap();
    assert_sound(&pg_batched);
    assert_eq!(
        mem.digest, pg_batched.digest,
        "batched PostgreSQL differs from memory"
    );
}
