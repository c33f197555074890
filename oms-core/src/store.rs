//! Storage traits and the in-memory store.
//!
//! The core never performs I/O: the order service reads and writes through [`OrderStore`].
//! [`MemoryStore`] implements it for tests and for hosts that persist elsewhere; `oms-store`
//! implements it on SQLite and PostgreSQL. Every implementation must pass the same conformance
//! suite. A write carries the version it read, and a stale write is a typed
//! [`OmsError::Conflict`], never a silent overwrite; an order and its events are written in one
//! atomic step.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::error::{OmsError, OmsResult};
use crate::events::Event;
use crate::lifecycle::OrderStatus;
use crate::order::Order;
use crate::text::Text;

/// A stored idempotency record: the request fingerprint and the first response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// Operation name plus a fingerprint of the request content.
    pub fingerprint: String,
    /// The first response.
    pub response: Response,
}

/// The first response of a keyed command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The result serialized as JSON: `{"Ok": …}` or `{"Err": …}`. Records read back from a
    /// store always hold this form.
    Json(String),
    /// Success, returning the order exactly as the same write stores it. Only a write hands
    /// this to a store, which writes it out as [`Response::Json`] of that order — when it writes
    /// the record, so a store that writes on another thread serializes it there, and no
    /// caller serializes a copy of an order it is handing over anyway.
    WrittenOrder,
}

impl From<String> for Response {
    fn from(json: String) -> Self {
        Response::Json(json)
    }
}

impl From<&str> for Response {
    fn from(json: &str) -> Self {
        Response::Json(json.to_owned())
    }
}

impl IdempotencyRecord {
    /// The response's JSON, for a record read back from a store.
    pub fn response_json(&self) -> OmsResult<&str> {
        match &self.response {
            Response::Json(json) => Ok(json),
            Response::WrittenOrder => Err(OmsError::Storage {
                reason: "an idempotency record was stored without its response".into(),
            }),
        }
    }

    /// The record as a store writes it, given the order written with it: a
    /// [`Response::WrittenOrder`] becomes that order's JSON.
    pub fn written(&self, order: &Order) -> OmsResult<IdempotencyRecord> {
        Ok(IdempotencyRecord {
            fingerprint: self.fingerprint.clone(),
            response: Response::Json(self.written_json(order)?),
        })
    }

    /// The response's JSON as a store writes it, given the order written with it.
    pub fn written_json(&self, order: &Order) -> OmsResult<String> {
        match &self.response {
            Response::Json(json) => Ok(json.clone()),
            Response::WrittenOrder => order_response_json(order),
        }
    }
}

/// The JSON of `Ok(order)`, exactly as serializing an `OmsResult<Order>` writes it.
pub fn order_response_json(order: &Order) -> OmsResult<String> {
    let doc = serde_json::to_string(order).map_err(|e| OmsError::Storage {
        reason: e.to_string(),
    })?;
    Ok(order_response_of_json(&doc))
}

/// [`order_response_json`] from the order's own JSON (`serde_json::to_string(&order)`), for a
/// store that has encoded the order already.
pub fn order_response_of_json(order_json: &str) -> String {
    // serde's externally tagged form of the `Ok` variant.
    format!("{{\"Ok\":{order_json}}}")
}

/// An idempotency key with the record to store under it. A write stores the record as
/// [`IdempotencyRecord::written`] gives it for the order that write stores, so a
/// [`Response::WrittenOrder`] record keeps that order as this write stored it, whatever
/// happens to the order afterwards. A key already stored keeps its first record.
pub type Keyed<'a> = (&'a str, &'a IdempotencyRecord);

/// Persistence of orders, their outbox events and idempotency keys.
pub trait OrderStore: Send + Sync {
    /// Insert a new order with its first events and, when given, the idempotency record of the
    /// command that created it, all in one atomic write. A second insert of the same id or
    /// number is a [`OmsError::Conflict`].
    fn insert_order(
        &self,
        order: &Order,
        events: &[Event],
        idempotency: Option<Keyed<'_>>,
    ) -> OmsResult<()>;

    /// Replace an order whose stored version is `expected_version`, append its events and store
    /// the command's idempotency record, atomically. The new order's version must be greater
    /// than `expected_version`, else [`OmsError::Conflict`].
    fn update_order(
        &self,
        order: &Order,
        expected_version: u64,
        events: &[Event],
        idempotency: Option<Keyed<'_>>,
    ) -> OmsResult<()>;

    /// [`OrderStore::insert_order`] with the order and its events handed over, so a store that
    /// keeps them in memory takes them instead of copying them. The same rules and outcome.
    fn insert_order_owned(
        &self,
        order: Order,
        events: Vec<Event>,
        idempotency: Option<Keyed<'_>>,
    ) -> OmsResult<()> {
        self.insert_order(&order, &events, idempotency)
    }

    /// [`OrderStore::update_order`] with the order and its events handed over (see
    /// [`OrderStore::insert_order_owned`]). The same rules and outcome.
    fn update_order_owned(
        &self,
        order: Order,
        expected_version: u64,
        events: Vec<Event>,
        idempotency: Option<Keyed<'_>>,
    ) -> OmsResult<()> {
        self.update_order(&order, expected_version, &events, idempotency)
    }

    /// Load an order by id.
    fn order(&self, id: u64) -> OmsResult<Order>;

    /// Load an order by its number (`ORD-…`).
    fn order_by_number(&self, number: &str) -> OmsResult<Order>;

    /// Ids of every order, ascending.
    fn order_ids(&self) -> OmsResult<Vec<u64>>;

    /// Ids of the orders currently in `status`, ascending (for sweeps such as abandoned
    /// payments).
    fn order_ids_with_status(&self, status: OrderStatus) -> OmsResult<Vec<u64>>;

    /// Up to `limit` orders with ids greater than `after`, ascending by id: pages through every
    /// order (an export, an end-of-day check) in one read per page instead of one per order.
    /// Start with `after = 0`, continue from the last id returned, stop at a short page.
    fn orders_after(&self, after: u64, limit: usize) -> OmsResult<Vec<Order>> {
        self.order_ids()?
            .into_iter()
            .filter(|id| *id > after)
            .take(limit)
            .map(|id| self.order(id))
            .collect()
    }

    /// Up to `limit` unacknowledged outbox events, in sequence order.
    fn pending_events(&self, limit: usize) -> OmsResult<Vec<Event>>;

    /// Acknowledge every outbox event with `seq <= up_to`.
    fn ack_events(&self, up_to: u64) -> OmsResult<()>;

    /// The stored record for an idempotency key, if any.
    fn idempotency(&self, key: &str) -> OmsResult<Option<IdempotencyRecord>>;

    /// Store the record for a new idempotency key; storing a key twice keeps the first. A
    /// [`Response::WrittenOrder`] record has no order to respond with here: it is refused
    /// with [`OmsError::Storage`].
    fn put_idempotency(&self, key: &str, record: &IdempotencyRecord) -> OmsResult<()>;

    /// Start grouping writes: until [`OrderStore::commit_batch`], a store may keep the writes
    /// made through it (and through an inventory store sharing its connection) in one
    /// transaction that becomes durable at the commit, saving a commit per operation. Each
    /// operation stays atomic on its own. A store that makes every write durable at once
    /// ignores batches (the default), which is the stronger guarantee.
    fn begin_batch(&self) -> OmsResult<()> {
        Ok(())
    }

    /// Make every write since [`OrderStore::begin_batch`] durable, together.
    fn commit_batch(&self) -> OmsResult<()> {
        Ok(())
    }
}

/// Orders per page when reading a whole book with [`pages`] or [`for_each_page`].
pub const PAGE: usize = 1_000;

/// Every stored order, a page of up to [`PAGE`] orders at a time in id order
/// ([`OrderStore::orders_after`]), so a book of any size is read without holding it all. The
/// first page comes even when it is empty; after a short page, or an error, there are no more.
pub fn pages(store: &dyn OrderStore) -> Pages<'_> {
    Pages {
        store,
        after: Some(0),
    }
}

/// The iterator of [`pages`].
#[derive(Clone)]
pub struct Pages<'a> {
    store: &'a dyn OrderStore,
    /// The last id read, or `None` once the last page was read.
    after: Option<u64>,
}

impl std::fmt::Debug for Pages<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages").field("after", &self.after).finish()
    }
}

impl Iterator for Pages<'_> {
    type Item = OmsResult<Vec<Order>>;

    fn next(&mut self) -> Option<Self::Item> {
        let after = self.after.take()?;
        let page = match self.store.orders_after(after, PAGE) {
            Ok(page) => page,
            Err(e) => return Some(Err(e)),
        };
        if let Some(last) = page.last().filter(|_| page.len() == PAGE) {
            self.after = Some(last.id);
        }
        Some(Ok(page))
    }
}

/// Call `f` with every stored order, page by page as [`pages`] reads them. Stops at the first
/// error of the store or of `f`.
pub fn for_each_page(
    store: &dyn OrderStore,
    mut f: impl FnMut(&[Order]) -> OmsResult<()>,
) -> OmsResult<()> {
    for page in pages(store) {
        f(&page?)?;
    }
    Ok(())
}

#[derive(Debug, Default)]
struct MemoryState {
    orders: BTreeMap<u64, Order>,
    by_number: BTreeMap<Text, u64>,
    /// Order ids by current status, so a sweep by status reads only its orders.
    by_status: BTreeSet<(OrderStatus, u64)>,
    outbox: Vec<Event>,
    next_seq: u64,
    acked: u64,
    idempotency: BTreeMap<String, IdempotencyRecord>,
}

/// An in-memory [`OrderStore`]: every operation is atomic under one lock.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<MemoryState>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> OmsResult<MutexGuard<'_, MemoryState>> {
        // A poisoned lock means a panic mid-write elsewhere; the state may be torn, so refuse.
        self.state.lock().map_err(|_| OmsError::Storage {
            reason: "memory store lock poisoned".into(),
        })
    }
}

fn append(state: &mut MemoryState, events: Vec<Event>) {
    for mut e in events {
        state.next_seq += 1;
        e.seq = state.next_seq;
        state.outbox.push(e);
    }
}

/// Keep a written record under its key unless the key holds one already (the first wins).
fn keep_first(state: &mut MemoryState, written: Option<(&str, IdempotencyRecord)>) {
    if let Some((key, record)) = written {
        state.idempotency.entry(key.to_owned()).or_insert(record);
    }
}

/// The record of a write as it is kept, its response written out for `order`.
fn written<'k>(
    idempotency: Option<Keyed<'k>>,
    order: &Order,
) -> OmsResult<Option<(&'k str, IdempotencyRecord)>> {
    idempotency
        .map(|(key, record)| Ok((key, record.written(order)?)))
        .transpose()
}

impl OrderStore for MemoryStore {
    fn insert_order(
        &self,
        order: &Order,
        events: &[Event],
        idempotency: Option<Keyed<'_>>,
    ) -> OmsResult<()> {
        self.insert_order_owned(order.clone(), events.to_vec(), idempotency)
    }

    fn update_order(
        &self,
        order: &Order,
        expected_version: u64,
        events: &[Event],
        idempotency: Option<Keyed<'_>>,
    ) -> OmsResult<()> {
        self.update_order_owned(
            order.clone(),
            expected_version,
            events.to_vec(),
            idempotency,
        )
    }

    fn insert_order_owned(
        &self,
        order: Order,
        events: Vec<Event>,
        idempotency: Option<Keyed<'_>>,
    ) -> OmsResult<()> {
        let kept = written(idempotency, &order)?;
        let mut s = self.lock()?;
        if s.orders.contains_key(&order.id) || s.by_number.contains_key(order.number.as_str()) {
            return Err(OmsError::Conflict {
                entity: format!("order {}", order.number),
                expected: 0,
                found: s.orders.get(&order.id).map_or(1, |o| o.version),
            });
        }
        s.by_number.insert(order.number.clone(), order.id);
        s.by_status.insert((order.status, order.id));
        s.orders.insert(order.id, order);
        append(&mut s, events);
        keep_first(&mut s, kept);
        Ok(())
    }

    fn update_order_owned(
        &self,
        order: Order,
        expected_version: u64,
        events: Vec<Event>,
        idempotency: Option<Keyed<'_>>,
    ) -> OmsResult<()> {
        let kept = written(idempotency, &order)?;
        let mut s = self.lock()?;
        let (found, was) = s
            .orders
            .get(&order.id)
            .map(|o| (o.version, o.status))
            .ok_or_else(|| OmsError::OrderNotFound {
                order: order.id.to_string(),
            })?;
        if found != expected_version || order.version <= expected_version {
            return Err(OmsError::Conflict {
                entity: format!("order {}", order.number),
                expected: expected_version,
                found,
            });
        }
        s.by_status.remove(&(was, order.id));
        s.by_status.insert((order.status, order.id));
        s.orders.insert(order.id, order);
        append(&mut s, events);
        keep_first(&mut s, kept);
        Ok(())
    }

    fn order(&self, id: u64) -> OmsResult<Order> {
        self.lock()?
            .orders
            .get(&id)
            .cloned()
            .ok_or_else(|| OmsError::OrderNotFound {
                order: id.to_string(),
            })
    }

    fn order_by_number(&self, number: &str) -> OmsResult<Order> {
        let s = self.lock()?;
        s.by_number
            .get(number)
            .and_then(|id| s.orders.get(id))
            .cloned()
            .ok_or_else(|| OmsError::OrderNotFound {
                order: number.to_owned(),
            })
    }

    fn order_ids(&self) -> OmsResult<Vec<u64>> {
        Ok(self.lock()?.orders.keys().copied().collect())
    }

    fn orders_after(&self, after: u64, limit: usize) -> OmsResult<Vec<Order>> {
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        Ok(self
            .lock()?
            .orders
            .range(first..)
            .take(limit)
            .map(|(_, o)| o.clone())
            .collect())
    }

    fn order_ids_with_status(&self, status: OrderStatus) -> OmsResult<Vec<u64>> {
        Ok(self
            .lock()?
            .by_status
            .range((status, 0)..=(status, u64::MAX))
            .map(|(_, id)| *id)
            .collect())
    }

    fn pending_events(&self, limit: usize) -> OmsResult<Vec<Event>> {
        let s = self.lock()?;
        // The outbox is in sequence order: skip the acknowledged prefix without visiting it.
        let first = s.outbox.partition_point(|e| e.seq <= s.acked);
        Ok(s.outbox[first..].iter().take(limit).cloned().collect())
    }

    fn ack_events(&self, up_to: u64) -> OmsResult<()> {
        let mut s = self.lock()?;
        s.acked = s.acked.max(up_to.min(s.next_seq));
        Ok(())
    }

    fn idempotency(&self, key: &str) -> OmsResult<Option<IdempotencyRecord>> {
        Ok(self.lock()?.idempotency.get(key).cloned())
    }

    fn put_idempotency(&self, key: &str, record: &IdempotencyRecord) -> OmsResult<()> {
        record.response_json()?;
        keep_first(&mut *self.lock()?, Some((key, record.clone())));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_response_is_what_serializing_ok_order_writes() {
        let order = crate::order::tests::create();
        let json = order_response_json(&order).unwrap();
        let direct = serde_json::to_string(&Ok::<Order, OmsError>(order.clone())).unwrap();
        assert_eq!(json, direct);
        let back: Result<Order, OmsError> = serde_json::from_str(&json).unwrap();
        assert_eq!(back.unwrap(), order);
        let record = IdempotencyRecord {
            fingerprint: "f".into(),
            response: Response::WrittenOrder,
        };
        assert_eq!(record.response_json().unwrap_err().code(), "storage");
        assert_eq!(
            record.written(&order).unwrap().response_json().unwrap(),
            direct
        );
        let json_record = IdempotencyRecord {
            fingerprint: "f".into(),
            response: "{\"Err\":1}".into(),
        };
        assert_eq!(json_record.written(&order).unwrap(), json_record);
    }

    /// A memory store holding `n` orders with ids 1..=n.
    fn book(n: u64) -> MemoryStore {
        let store = MemoryStore::new();
        let template = crate::order::tests::create();
        for id in 1..=n {
            let mut o = template.clone();
            o.id = id;
            o.number = format!("ORD-{id:06}").into();
            store.insert_order_owned(o, Vec::new(), None).unwrap();
        }
        store
    }

    fn page_sizes(store: &MemoryStore) -> Vec<usize> {
        pages(store).map(|p| p.unwrap().len()).collect()
    }

    #[test]
    fn pages_cover_the_book_in_id_order_then_stop() {
        let page = PAGE as u64;
        assert_eq!(page_sizes(&book(0)), vec![0]);
        assert_eq!(page_sizes(&book(3)), vec![3]);
        // A full page may have more behind it: one more read finds the book ends there.
        assert_eq!(page_sizes(&book(page)), vec![PAGE, 0]);
        let store = book(2 * page + 1);
        assert_eq!(page_sizes(&store), vec![PAGE, PAGE, 1]);
        let ids: Vec<u64> = pages(&store)
            .flat_map(|p| p.unwrap())
            .map(|o| o.id)
            .collect();
        assert_eq!(ids, (1..=2 * page + 1).collect::<Vec<_>>());
        // for_each_page sees the same pages.
        let mut seen = Vec::new();
        for_each_page(&store, |p| {
            seen.push(p.len());
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![PAGE, PAGE, 1]);
    }

    #[test]
    fn an_error_ends_the_pages_and_stops_for_each_page() {
        let store = book(PAGE as u64 + 5);
        let mut calls = 0;
        let err = for_each_page(&store, |_| {
            calls += 1;
            Err(OmsError::invalid("page", "refused"))
        })
        .unwrap_err();
        assert_eq!((calls, err.code()), (1, "invalid_field"));
    }
}
