//! One conformance suite for every `OrderStore`. Each backend runs the same checks.

use oms_core::error::{OmsError, OmsResult};
use oms_core::events::{names, Event};
use oms_core::lifecycle::OrderStatus;
use oms_core::order::Order;
use oms_core::store::{IdempotencyRecord, Keyed, MemoryStore, OrderStore, Response};
use oms_core::time::SequentialIds;
use oms_store::SqliteStore;

mod common;
use common::postgres_store;

fn order(ids: &SequentialIds, sku: &str) -> Order {
    common::placed_order(ids, sku)
}

/// Every check of the suite, against one store.
pub fn conformance(store: &dyn OrderStore) {
    let ids = SequentialIds::default();
    let a = order(&ids, "A");
    let b = order(&ids, "x'); DROP TABLE orders;--");

    // insert + read back, by id and by number, byte for byte
    let created = Event::new(a.id, 1, names::ORDER_CREATED, a.created_at).with("sku", &"A");
    store.insert_order(&a, &[created], None).unwrap();
    store.insert_order(&b, &[], None).unwrap();
    assert_eq!(store.order(a.id).unwrap(), a);
    assert_eq!(store.order_by_number(&b.number).unwrap(), b);
    assert_eq!(store.order_ids().unwrap(), vec![a.id, b.id]);

    // duplicate insert is a conflict
    assert_eq!(
        store.insert_order(&a, &[], None).unwrap_err().code(),
        "conflict"
    );
    // unknown lookups
    assert_eq!(store.order(999).unwrap_err().code(), "order_not_found");
    assert_eq!(
        store.order_by_number("ORD-none").unwrap_err().code(),
        "order_not_found"
    );

    // optimistic concurrency: a write with the right version wins, a stale one is refused
    let mut a2 = a.clone();
    a2.version = 2;
    let ev = Event::new(a.id, 2, names::ORDER_UPDATED, a.created_at);
    let rec = IdempotencyRecord {
        fingerprint: "update:1".into(),
        response: "ok".into(),
    };
    store
        .update_order(&a2, 1, std::slice::from_ref(&ev), Some(("k-update", &rec)))
        .unwrap();
    assert_eq!(store.idempotency("k-update").unwrap(), Some(rec.clone()));
    let mut stale = a.clone();
    stale.version = 2;
    let err = store
        .update_order(
            &stale,
            1,
            std::slice::from_ref(&ev),
            Some(("k-stale", &rec)),
        )
        .unwrap_err();
    assert_eq!(err.code(), "conflict");
    // a refused write stores no idempotency record either
    assert_eq!(store.idempotency("k-stale").unwrap(), None);
    assert_eq!(store.order(a.id).unwrap().version, 2);
    // a write that does not advance the version is refused too
    assert_eq!(
        store.update_order(&a2, 2, &[], None).unwrap_err().code(),
        "conflict"
    );

    // paging through every order: ascending ids, current versions, bounded pages, then nothing
    let page = store.orders_after(0, 10).unwrap();
    assert_eq!(
        page.iter().map(|o| (o.id, o.version)).collect::<Vec<_>>(),
        vec![(a.id, 2), (b.id, 1)]
    );
    assert_eq!(page, vec![a2.clone(), b.clone()]);
    assert_eq!(store.orders_after(0, 1).unwrap(), vec![a2.clone()]);
    assert_eq!(store.orders_after(a.id, 10).unwrap(), vec![b.clone()]);
    assert!(store.orders_after(b.id, 10).unwrap().is_empty());
    assert!(store.orders_after(0, 0).unwrap().is_empty());
    assert!(store.orders_after(u64::MAX, 10).unwrap().is_empty());

    // outbox: events in sequence, refused writes appended nothing, ack is at-least-once
    let pending = store.pending_events(10).unwrap();
    let seen: Vec<(&str, u64)> = pending
        .iter()
        .map(|e| (e.name.as_str(), e.version))
        .collect();
    assert_eq!(
        seen,
        vec![(names::ORDER_CREATED, 1), (names::ORDER_UPDATED, 2)]
    );
    assert!(pending.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(pending[0].data, vec![("sku".into(), "A".into())]);
    assert_eq!(store.pending_events(1).unwrap().len(), 1);
    store.ack_events(pending[0].seq).unwrap();
    assert_eq!(store.pending_events(10).unwrap(), pending[1..].to_vec());
    store.ack_events(pending[1].seq).unwrap();
    assert!(store.pending_events(10).unwrap().is_empty());
    // acknowledging past the newest event does not swallow the next one
    store.ack_events(u64::MAX).unwrap();
    // sweeps by status: both orders start in the same status; an update that changes it moves
    // the order to its new status and out of the old one
    assert_eq!(a.status, b.status);
    assert_eq!(
        store.order_ids_with_status(a.status).unwrap(),
        vec![a.id, b.id]
    );
    let mut a3 = a2.clone();
    a3.version = 3;
    a3.status = OrderStatus::Cancelled;
    let next = Event::new(a.id, 3, names::ORDER_UPDATED, a.created_at);
    store
        .update_order(&a3, 2, std::slice::from_ref(&next), None)
        .unwrap();
    assert_eq!(store.order_ids_with_status(a.status).unwrap(), vec![b.id]);
    assert_eq!(
        store.order_ids_with_status(OrderStatus::Cancelled).unwrap(),
        vec![a.id]
    );
    assert!(store
        .order_ids_with_status(OrderStatus::Delivered)
        .unwrap()
        .is_empty());
    let after = store.pending_events(10).unwrap();
    assert_eq!(
        after.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![3],
        "an event written after an acknowledgement is pending"
    );
    assert!(after[0].seq > pending[1].seq);
    store.ack_events(after[0].seq).unwrap();
    assert!(store.pending_events(10).unwrap().is_empty());

    // idempotency: first record wins
    assert_eq!(store.idempotency("k1").unwrap(), None);
    let r1 = IdempotencyRecord {
        fingerprint: "create:abc".into(),
        response: "{\"id\":1}".into(),
    };
    let r2 = IdempotencyRecord {
        fingerprint: "create:def".into(),
        response: "{\"id\":2}".into(),
    };
    store.put_idempotency("k1", &r1).unwrap();
    store.put_idempotency("k1", &r2).unwrap();
    assert_eq!(store.idempotency("k1").unwrap(), Some(r1));
    // a long response (an order as JSON) round-trips byte for byte, however it is stored
    let long = IdempotencyRecord {
        fingerprint: "create:long".into(),
        response: format!(
            "{{\"doc\":\"{}\"}}",
            "é✓ x'); DROP TABLE orders;-- ".repeat(300)
        )
        .into(),
    };
    store.put_idempotency("k-long", &long).unwrap();
    assert_eq!(store.idempotency("k-long").unwrap(), Some(long));

    // a record that responds with "the order this write stores" keeps that order as this write
    // stored it, even when the order changes again before anything commits
    let before = store.order(b.id).unwrap();
    let mut first = before.clone();
    first.version += 1;
    first.promo_codes.push("FIRST".into());
    let written = IdempotencyRecord {
        fingerprint: "update:written".into(),
        response: Response::WrittenOrder,
    };
    let event = |v: u64| Event::new(b.id, v, names::ORDER_UPDATED, b.created_at);
    store
        .update_order(
            &first,
            before.version,
            &[event(first.version)],
            Some(("k-written", &written)),
        )
        .unwrap();
    let mut second = first.clone();
    second.version += 1;
    second.promo_codes.push("SECOND".into());
    store
        .update_order(
            &second,
            first.version,
            &[event(second.version)],
            Some(("k-written", &written)),
        )
        .unwrap();
    let kept = store.idempotency("k-written").unwrap().unwrap();
    assert_eq!(kept.fingerprint, "update:written");
    let replayed: Result<Order, OmsError> =
        serde_json::from_str(kept.response_json().unwrap()).unwrap();
    assert_eq!(replayed.unwrap(), first);
    assert_eq!(store.order(b.id).unwrap(), second);
    // and the common case: the order is not changed again before the record is stored
    let mut last = store.order(a.id).unwrap();
    let read = last.version;
    last.version += 1;
    last.promo_codes.push("LAST".into());
    store
        .update_order(
            &last,
            read,
            &[Event::new(
                a.id,
                last.version,
                names::ORDER_UPDATED,
                a.created_at,
            )],
            Some(("k-written-last", &written)),
        )
        .unwrap();
    let kept = store.idempotency("k-written-last").unwrap().unwrap();
    let replayed: Result<Order, OmsError> =
        serde_json::from_str(kept.response_json().unwrap()).unwrap();
    assert_eq!(replayed.unwrap(), last);
    let published = store.pending_events(10).unwrap();
    assert_eq!(
        published.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![first.version, second.version, last.version]
    );
    store.ack_events(published[2].seq).unwrap();
    // with no write to respond with, such a record is refused
    assert_eq!(
        store
            .put_idempotency("k-alone", &written)
            .unwrap_err()
            .code(),
        "storage"
    );
    assert_eq!(store.idempotency("k-alone").unwrap(), None);
}

#[test]
fn memory_store_conforms() {
    conformance(&MemoryStore::new());
}

#[test]
fn sqlite_memory_store_conforms() {
    conformance(&SqliteStore::open_in_memory().unwrap());
}

#[test]
fn sqlite_file_store_conforms_and_survives_reopen() {
    let dir = std::env::temp_dir().join(format!("oms-conformance-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("conf.db");
    let _ = std::fs::remove_file(&path);
    conformance(&SqliteStore::open(&path).unwrap());
    let reopened = SqliteStore::open(&path).unwrap();
    assert_eq!(reopened.order_ids().unwrap().len(), 2);
    assert!(reopened.pending_events(10).unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sqlite_store_conforms_with_group_commit() {
    // Every write joins a shared commit and returns once it is durable: the same answers.
    let dir = common::temp_dir("conformance-group");
    let path = dir.join("conf.db");
    let store = SqliteStore::open(&path).unwrap();
    store.enable_group_commit().unwrap();
    conformance(&store);
    let reopened = SqliteStore::open(&path).unwrap();
    assert_eq!(reopened.order_ids().unwrap().len(), 2);
    assert!(reopened.pending_events(10).unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sqlite_store_conforms_inside_one_batch() {
    // Inside a batch every operation runs in a savepoint: a refused write must roll back
    // alone and leave the batch's other writes in place, exactly as on its own.
    let dir = common::temp_dir("conformance-batch");
    let path = dir.join("batch.db");
    let store = SqliteStore::open(&path).unwrap();
    store.begin_batch().unwrap();
    conformance(&store);
    // Not visible to another connection until the batch commits.
    assert!(SqliteStore::open(&path)
        .unwrap()
        .order_ids()
        .unwrap()
        .is_empty());
    store.commit_batch().unwrap();
    let reopened = SqliteStore::open(&path).unwrap();
    assert_eq!(reopened.order_ids().unwrap().len(), 2);
    assert_eq!(reopened.idempotency("k-stale").unwrap(), None);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A SQLite store with pipelined batches that seals its batch after every write, so the next
/// call runs in a new batch on top of the one being committed (or already committed).
struct CommitAfterEachWrite(SqliteStore);

impl CommitAfterEachWrite {
    fn next_batch<T>(&self, outcome: OmsResult<T>) -> OmsResult<T> {
        self.0.commit_batch().unwrap();
        self.0.begin_batch().unwrap();
        outcome
    }
}

impl OrderStore for CommitAfterEachWrite {
    fn insert_order(&self, order: &Order, events: &[Event], k: Option<Keyed<'_>>) -> OmsResult<()> {
        self.next_batch(self.0.insert_order(order, events, k))
    }
    fn update_order(
        &self,
        order: &Order,
        expected_version: u64,
        events: &[Event],
        k: Option<Keyed<'_>>,
    ) -> OmsResult<()> {
        self.next_batch(self.0.update_order(order, expected_version, events, k))
    }
    fn order(&self, id: u64) -> OmsResult<Order> {
        self.0.order(id)
    }
    fn order_by_number(&self, number: &str) -> OmsResult<Order> {
        self.0.order_by_number(number)
    }
    fn order_ids(&self) -> OmsResult<Vec<u64>> {
        self.0.order_ids()
    }
    fn order_ids_with_status(&self, status: OrderStatus) -> OmsResult<Vec<u64>> {
        self.0.order_ids_with_status(status)
    }
    fn pending_events(&self, limit: usize) -> OmsResult<Vec<Event>> {
        self.0.pending_events(limit)
    }
    fn ack_events(&self, up_to: u64) -> OmsResult<()> {
        self.next_batch(self.0.ack_events(up_to))
    }
    fn idempotency(&self, key: &str) -> OmsResult<Option<IdempotencyRecord>> {
        self.0.idempotency(key)
    }
    fn put_idempotency(&self, key: &str, record: &IdempotencyRecord) -> OmsResult<()> {
        self.next_batch(self.0.put_idempotency(key, record))
    }
}

#[test]
fn sqlite_store_conforms_in_pipelined_batches() {
    // One pipelined batch for the whole suite (the order lists and the outbox continue it as
    // an ordinary batch), then a batch per write, each read running over the batch still
    // being committed: the same answers, and the same rows once every commit has ended.
    for each_write in [false, true] {
        let dir = common::temp_dir(&format!("conformance-pipelined-{each_write}"));
        let path = dir.join("pipelined.db");
        let store = SqliteStore::open(&path).unwrap();
        store.pipeline_batches().unwrap();
        assert!(store.pipelined().unwrap());
        store.begin_batch().unwrap();
        let store = if each_write {
            let wrapped = CommitAfterEachWrite(store);
            conformance(&wrapped);
            wrapped.0
        } else {
            conformance(&store);
            store
        };
        store.commit_batch().unwrap();
        store.wait_for_commit().unwrap();
        assert!(!store.in_batch().unwrap());
        let reopened = SqliteStore::open(&path).unwrap();
        assert_eq!(reopened.order_ids().unwrap().len(), 2);
        assert_eq!(reopened.idempotency("k-stale").unwrap(), None);
        assert!(reopened.pending_events(10).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn stores_without_batches_conform_between_begin_and_commit() {
    // The default batch is no batch at all: every write is durable by itself.
    let store = MemoryStore::new();
    store.begin_batch().unwrap();
    conformance(&store);
    store.commit_batch().unwrap();
}

#[test]
fn postgres_store_conforms() {
    let store = postgres_store("conformance");
    conformance(&store);
    assert_eq!(store.schema_version().unwrap(), 2);
}
