//! Two batches committing at once on PostgreSQL: a batch cut while the one before it still
//! commits writes its new orders meanwhile, commits after it, and is lost with it if it
//! fails. One test function, so that nothing else runs against the server while it reads
//! the server's lock and session views.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::moved_on;

use std::sync::Arc;

use oms_core::events::Event;
use oms_core::order::Order;
use oms_core::store::OrderStore;
use oms_core::time::SequentialIds;
use oms_store::PostgresStore;

fn order(ids: &SequentialIds) -> Order {
    common::placed_order(ids, "SKU-1")
}

/// Poll `sql` (one count) on `c` until it reaches `at_least`; panics after ten seconds.
fn wait_for_count(c: &mut postgres::Client, sql: &str, at_least: i64) {
    for _ in 0..1_000 {
        let n: i64 = c.query_one(sql, &[]).unwrap().get(0);
        if n >= at_least {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("never reached {at_least}: {sql}");
}

/// Batch A (an update of a stored order) is cut and its commit held on that order's row,
/// locked by another connection; batch B (a new order) is cut meanwhile and writes its new
/// order while A still commits. `finish` then ends the lock (and may move the order on, so
/// that A fails); the outcomes of both rotations are returned, with the store, the order
/// and B's order.
fn overlapping_commits(
    test: &str,
    finish: &dyn Fn(&mut postgres::Transaction<'_>, &Order),
) -> (
    oms_core::error::OmsResult<()>,
    oms_core::error::OmsResult<()>,
    Arc<PostgresStore>,
    Order,
    Order,
) {
    let schema = common::fresh_schema(test);
    let store = Arc::new(common::postgres_connect(&schema));
    let ids = SequentialIds::default();
    let placed = order(&ids);
    store.insert_order(&placed, &[], None).unwrap();
    store.begin_batch().unwrap();
    store
        .update_order(&moved_on(&placed), 1, &[], None)
        .unwrap();
    let mut locker = postgres::Client::connect(&common::postgres_url(), postgres::NoTls).unwrap();
    let mut watcher = postgres::Client::connect(&common::postgres_url(), postgres::NoTls).unwrap();
    let mut lock = locker.transaction().unwrap();
    let id = i64::try_from(placed.id).unwrap();
    lock.query(
        &format!("SELECT 1 FROM {schema}.orders WHERE id = $1 FOR UPDATE"),
        &[&id],
    )
    .unwrap();
    let new = order(&ids);
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| store.rotate_batch());
        // A's update waits for the row lock.
        wait_for_count(
            &mut watcher,
            "SELECT count(*) FROM pg_locks WHERE NOT granted",
            1,
        );
        store.insert_order(&new, &[], None).unwrap();
        let b = scope.spawn(|| store.rotate_batch());
        // B has written its new order and waits for its turn, its transaction open (as is the
        // locker's).
        wait_for_count(
            &mut watcher,
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND state = 'idle in transaction'",
            2,
        );
        finish(&mut lock, &placed);
        lock.commit().unwrap();
        (a.join().unwrap(), b.join().unwrap())
    });
    (a, b, store, placed, new)
}

fn a_batch_cut_while_the_one_before_commits_writes_its_new_orders_meanwhile_and_commits_after_it() {
    let (a, b, store, placed, new) = overlapping_commits("batch_overlap", &|_, _| {});
    a.unwrap();
    b.unwrap();
    assert_eq!(store.order(placed.id).unwrap().version, 2);
    assert_eq!(store.order(new.id).unwrap(), new);
    store.commit_batch().unwrap();
    let other = common::postgres_connect(&format!("t_batch_overlap_{}", std::process::id()));
    assert_eq!(other.order_ids().unwrap(), vec![placed.id, new.id]);
}

fn a_batch_cut_while_the_one_before_fails_its_commit_is_lost_with_it() {
    let (a, b, store, placed, new) = overlapping_commits("batch_overlap_lost", &|tx, o| {
        // Another writer moves the order on: A's update no longer fits.
        let schema = format!("t_batch_overlap_lost_{}", std::process::id());
        tx.execute(
            &format!("UPDATE {schema}.orders SET version = 2 WHERE id = $1"),
            &[&i64::try_from(o.id).unwrap()],
        )
        .unwrap();
    });
    assert_eq!(a.unwrap_err().code(), "conflict");
    let b = b.unwrap_err();
    assert!(
        b.to_string().contains("the batch before this one failed"),
        "{b}"
    );
    // B's new order was never committed, and the open batch, built on both, is lost.
    let other = common::postgres_connect(&format!("t_batch_overlap_lost_{}", std::process::id()));
    assert_eq!(other.order_ids().unwrap(), vec![placed.id]);
    assert_eq!(other.order(new.id).unwrap_err().code(), "order_not_found");
    let refused = store
        .insert_order(&order(&SequentialIds::starting_at(500)), &[], None)
        .unwrap_err();
    assert!(
        refused.to_string().contains("failed to commit"),
        "{refused}"
    );
    store.rollback_batch().unwrap();
    let next = order(&SequentialIds::starting_at(600));
    store.insert_order(&next, &[], None).unwrap();
    assert_eq!(other.order_ids().unwrap(), vec![placed.id, next.id]);
}

/// Writers create and update orders in a shared batch cut every millisecond, while a
/// publisher drains the outbox and acknowledges what it read: every acknowledged write is
/// stored, and the publisher receives every event exactly once, each order's in version
/// order (a batch numbering its events before the one cut before it commits could have its
/// events acknowledged unread).
fn rotations_under_load_keep_every_write_and_deliver_every_event_in_order() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Mutex;
    let schema = common::fresh_schema("batch_overlap_load");
    let store = Arc::new(common::postgres_connect(&schema));
    let publisher_store = common::postgres_connect(&schema);
    let ids = SequentialIds::starting_at(10_000);
    store.begin_batch().unwrap();
    let acknowledged: Mutex<Vec<Order>> = Mutex::new(Vec::new());
    let delivered: Mutex<Vec<Event>> = Mutex::new(Vec::new());
    let (done, rotated) = (AtomicBool::new(false), AtomicU64::new(0));
    let rotations = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..6)
            .map(|_| {
                scope.spawn(|| {
                    for _ in 0..50 {
                        let placed = order(&ids);
                        let created = Event::new(placed.id, 1, "order.created", placed.created_at);
                        store.insert_order(&placed, &[created], None).unwrap();
                        let mut latest = placed;
                        for _ in 0..2 {
                            let next = moved_on(&latest);
                            let e =
                                Event::new(next.id, next.version, "order.moved", next.updated_at);
                            store
                                .update_order(&next, latest.version, &[e], None)
                                .unwrap();
                            latest = next;
                        }
                        acknowledged.lock().unwrap().push(latest);
                        // Spread the writes over many rotations.
                        std::thread::sleep(std::time::Duration::from_millis(3));
                    }
                })
            })
            .collect();
        // Three rotators, so that up to three batches commit at once.
        let rotators: Vec<_> = (0..3)
            .map(|_| {
                scope.spawn(|| {
                    while !done.load(Ordering::Acquire) {
                        store.rotate_batch().unwrap();
                        rotated.fetch_add(1, Ordering::AcqRel);
                    }
                })
            })
            .collect();
        let publisher = scope.spawn(|| {
            while !done.load(Ordering::Acquire) {
                let batch = publisher_store.pending_events(50).unwrap();
                if let Some(last) = batch.last() {
                    publisher_store.ack_events(last.seq).unwrap();
                }
                delivered.lock().unwrap().extend(batch);
            }
        });
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Release);
        for r in rotators {
            r.join().unwrap();
        }
        publisher.join().unwrap();
        rotated.load(Ordering::Acquire)
    });
    assert!(rotations >= 10, "{rotations} rotations");
    store.commit_batch().unwrap();
    let mut delivered = delivered.into_inner().unwrap();
    loop {
        let rest = publisher_store.pending_events(1_000).unwrap();
        let Some(last) = rest.last() else { break };
        publisher_store.ack_events(last.seq).unwrap();
        delivered.extend(rest);
    }
    let acknowledged = acknowledged.into_inner().unwrap();
    assert_eq!(acknowledged.len(), 300);
    for o in &acknowledged {
        assert_eq!(publisher_store.order(o.id).unwrap().version, 3);
    }
    assert_eq!(delivered.len(), acknowledged.len() * 3, "every event, once");
    assert!(delivered.windows(2).all(|w| w[0].seq < w[1].seq));
    let mut versions: std::collections::BTreeMap<u64, Vec<u64>> = std::collections::BTreeMap::new();
    for e in &delivered {
        versions.entry(e.order_id).or_default().push(e.version);
    }
    assert_eq!(versions.len(), acknowledged.len());
    assert!(
        versions.values().all(|v| v == &[1, 2, 3]),
        "in version order"
    );
}

#[test]
fn overlapping_batch_commits() {
    a_batch_cut_while_the_one_before_commits_writes_its_new_orders_meanwhile_and_commits_after_it();
    a_batch_cut_while_the_one_before_fails_its_commit_is_lost_with_it();
    rotations_under_load_keep_every_write_and_deliver_every_event_in_order();
}
