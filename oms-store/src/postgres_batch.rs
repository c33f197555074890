//! Batches on PostgreSQL: many operations, one transaction at the commit.
//!
//! Without a batch every write of [`PostgresStore`] is a transaction of its own, of one to
//! three statements; a lifecycle of seven service calls then costs about 36 round trips, and
//! the server's per-statement work is what limits throughput. Inside a batch
//! ([`PostgresStore::begin_batch`]) the operations run on memory, as a SQLite batch's do: an
//! order write is checked (the order's version, an order id or number already taken) and kept
//! as the order's newest version with its events; inventory operations of a
//! [`crate::PostgresInventory`] sharing the store run on the batch's in-memory stock and
//! reservation rows (read from the database the first time, unlocked); idempotency records are
//! kept too. Reads see the batch's writes. [`PostgresStore::commit_batch`] then writes it all
//! in one transaction: one statement per order (its newest version, line rows, the audit rows
//! and events of every write in the batch), one for the idempotency records, one per new
//! reservation, one for changed reservations, one for the stock rows.
//!
//! Other connections may write meanwhile, so nothing the batch read is taken as settled: an
//! order is written only if its stored version is still the one the batch started from (else
//! the commit fails with [`OmsError::Conflict`]), and stock rows receive the batch's changes
//! (units received, reserved, allocated, shipped) on top of whatever they hold by then, each
//! only where the result keeps `0 <= reserved + allocated <= on_hand` — the check a
//! reservation made against the batch's copy is made again against the row itself, so units
//! are never oversold. A failed commit writes nothing: the whole batch is lost, as a crash
//! before the commit would lose it. Reservations are rewritten as the batch left them: a
//! reservation belongs to one order, whose operations are version-checked.
//!
//! Outbox events become visible when their batch commits
//! ([`oms_core::store::OrderStore::pending_events`] lists committed events only: a publisher
//! must never announce what may still be rolled back).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use oms_core::error::{OmsError, OmsResult};
use oms_core::events::Event;
use oms_core::lifecycle::OrderStatus;
use oms_core::order::Order;
use oms_core::store::{IdempotencyRecord, Keyed, Response};

use crate::codec::{order_from_json, storage, to_i64, to_json, to_u64};
use crate::overlay::InventoryOverlay;
use crate::postgres::{prepared, NewOrders, PostgresStore, Rows, INSERT_ORDERS, UPDATE_ORDER};
use crate::postgres_inventory::{AsOms, PgLedger};

/// Idempotency records of a batch, many rows in one statement; a key stored meanwhile keeps
/// its first record.
const PUT_KEYS: &str = "
INSERT INTO idempotency_keys (key, fingerprint, response)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
ON CONFLICT (key) DO NOTHING";

/// A batch's outbox events, in the order given, one statement for all of them.
const PUT_EVENTS: &str = "
INSERT INTO events_outbox (order_id, version, name, at, data)
SELECT e.order_id, e.version, e.name, e.at, e.data
FROM unnest($1::int8[], $2::int8[], $3::text[], $4::int8[], $5::text[])
    WITH ORDINALITY AS e(order_id, version, name, at, data, n)
ORDER BY e.n";

/// Events as one array per outbox column.
struct EventColumns<'e> {
    orders: Vec<i64>,
    versions: Vec<i64>,
    names: Vec<&'e str>,
    at: Vec<i64>,
    data: Vec<String>,
}

impl<'e> EventColumns<'e> {
    fn new(events: &'e [Event]) -> OmsResult<Self> {
        Ok(EventColumns {
            orders: events
                .iter()
                .map(|e| to_i64(e.order_id, "event order id"))
                .collect::<OmsResult<_>>()?,
            versions: events
                .iter()
                .map(|e| to_i64(e.version, "event version"))
                .collect::<OmsResult<_>>()?,
            names: events.iter().map(|e| e.name.as_str()).collect(),
            at: events.iter().map(|e| e.at.0).collect(),
            data: events
                .iter()
                .map(|e| to_json(&e.data))
                .collect::<OmsResult<_>>()?,
        })
    }
}

/// An order a batch wrote.
#[derive(Debug)]
struct BatchOrder {
    /// Its newest version.
    order: Order,
    /// The version stored when the batch first wrote it; `None` when the batch created it.
    base: Option<u64>,
}

/// The writes of an open batch (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct PgBatch {
    orders: BTreeMap<u64, BatchOrder>,
    /// The events of every order write, in the order the writes ran: the outbox receives them
    /// in that order, as it would have without the batch.
    events: Vec<Event>,
    /// Numbers of the orders the batch created, to their ids.
    numbers: HashMap<String, u64>,
    /// Idempotency records, with their responses written out.
    keys: BTreeMap<String, (String, String)>,
    /// Stock rows and reservations.
    pub(crate) overlay: InventoryOverlay,
}

impl PgBatch {
    /// Keep the record of `key` unless the batch has one (the first record of a key wins).
    fn keep_key(
        &mut self,
        key: &str,
        record: &IdempotencyRecord,
        order: Option<&Order>,
    ) -> OmsResult<()> {
        if self.keys.contains_key(key) {
            return Ok(());
        }
        let response = match (order, &record.response) {
            (_, Response::Json(json)) => json.clone(),
            (Some(order), Response::WrittenOrder) => record.written_json(order)?,
            (None, Response::WrittenOrder) => record.response_json()?.to_owned(),
        };
        self.keys
            .insert(key.to_owned(), (record.fingerprint.clone(), response));
        Ok(())
    }
}

fn taken(order: &Order, found: u64) -> OmsError {
    OmsError::Conflict {
        entity: format!("order {}", order.number),
        expected: 0,
        found,
    }
}

impl PostgresStore {
    /// Start a batch: every write from now until [`PostgresStore::commit_batch`] (of this
    /// store, and of a [`crate::PostgresInventory`] made with
    /// [`crate::PostgresInventory::sharing`] it) runs on memory and is written in one
    /// transaction at the commit (see [`crate::postgres_batch`]). Each operation is still
    /// checked and applied on its own, so a refused one changes nothing; the batch becomes
    /// durable whole, or, if its commit fails, not at all. Threads may share a batch: its
    /// operations apply one at a time, and [`PostgresStore::rotate_batch`] cuts it.
    pub fn begin_batch(&self) -> OmsResult<()> {
        let mut batch = self.batch()?;
        if batch.is_some() {
            return Err(OmsError::invalid("batch", "a batch is already open"));
        }
        *batch = Some(PgBatch::default());
        Ok(())
    }

    /// Commit the open batch: all its operations become durable together, or, if the commit
    /// fails (an order or stock row another writer changed so that the batch no longer fits),
    /// none does. The batch is closed either way.
    pub fn commit_batch(&self) -> OmsResult<()> {
        let mut batch = self.batch()?;
        let open = batch
            .take()
            .ok_or_else(|| storage("no open batch to commit"))?;
        self.write_batch(&open)
    }

    /// Commit the open batch and open the next one in the same step: operations of other
    /// threads wait meanwhile, and land in one batch or the other. If the commit fails, the
    /// batch is lost and none is open.
    pub fn rotate_batch(&self) -> OmsResult<()> {
        let mut batch = self.batch()?;
        let open = batch
            .take()
            .ok_or_else(|| storage("no open batch to rotate"))?;
        self.write_batch(&open)?;
        *batch = Some(PgBatch::default());
        Ok(())
    }

    /// Drop the open batch: none of its operations are stored.
    pub fn rollback_batch(&self) -> OmsResult<()> {
        *self.batch()? = None;
        Ok(())
    }

    /// Whether a batch is open.
    pub fn in_batch(&self) -> OmsResult<bool> {
        Ok(self.batch()?.is_some())
    }

    /// Write a closed batch in one transaction.
    fn write_batch(&self, batch: &PgBatch) -> OmsResult<()> {
        let rows = batch
            .orders
            .values()
            .map(|o| Ok((Rows::new(&o.order, &[], None)?, o)))
            .collect::<OmsResult<Vec<_>>>()?;
        let bases = batch
            .orders
            .values()
            .map(|o| o.base.map(|b| to_i64(b, "version")).transpose())
            .collect::<OmsResult<Vec<Option<i64>>>>()?;
        let events = EventColumns::new(&batch.events)?;
        let key_names: Vec<&str> = batch.keys.keys().map(String::as_str).collect();
        let fingerprints: Vec<&str> = batch.keys.values().map(|(f, _)| f.as_str()).collect();
        let responses: Vec<&str> = batch.keys.values().map(|(_, r)| r.as_str()).collect();
        let mut new_orders = NewOrders::default();
        for ((r, _), base) in rows.iter().zip(&bases) {
            if base.is_none() {
                new_orders.add(r);
            }
        }
        self.in_tx_cached(|tx, statements| {
            if new_orders.len() > 0 {
                let statement = prepared(tx, statements, INSERT_ORDERS)?;
                let inserted: i64 = tx
                    .query(&statement, &new_orders.params())?
                    .first()
                    .map_or(0, |row| row.get(0));
                if usize::try_from(inserted).ok() != Some(new_orders.len()) {
                    return Err(OmsError::Conflict {
                        entity: "orders of the batch (an id or number was taken meanwhile)".into(),
                        expected: 0,
                        found: 1,
                    }
                    .into());
                }
            }
            for ((r, o), base) in rows.iter().zip(&bases) {
                let Some(base) = base else {
                    continue;
                };
                let params = r.update_params(base);
                let statement = prepared(tx, statements, UPDATE_ORDER)?;
                let written: i64 = tx
                    .query(&statement, &params)?
                    .first()
                    .map_or(0, |row| row.get(0));
                if written != 1 {
                    return Err(OmsError::Conflict {
                        entity: format!(
                            "order {} (changed by another writer during the batch)",
                            o.order.number
                        ),
                        expected: o.base.unwrap_or(0),
                        found: o.base.map_or(1, |b| b + 1),
                    }
                    .into());
                }
            }
            if !batch.events.is_empty() {
                let statement = prepared(tx, statements, PUT_EVENTS)?;
                tx.execute(
                    &statement,
                    &[
                        &events.orders,
                        &events.versions,
                        &events.names,
                        &events.at,
                        &events.data,
                    ],
                )?;
            }
            if !key_names.is_empty() {
                let statement = prepared(tx, statements, PUT_KEYS)?;
                tx.execute(&statement, &[&key_names, &fingerprints, &responses])?;
            }
            let mut ledger = AsOms::new(PgLedger::committing_batch(tx, statements));
            if let Err(e) = batch.overlay.write_to(&mut ledger) {
                return Err(ledger.failure(e));
            }
            ledger.inner().flush()
        })
    }

    /// [`oms_core::store::OrderStore::insert_order`] in a batch.
    pub(crate) fn batch_insert(
        &self,
        batch: &mut PgBatch,
        order: &Order,
        events: &[Event],
        idempotency: Option<Keyed<'_>>,
    ) -> OmsResult<()> {
        if let Some(o) = batch.orders.get(&order.id) {
            return Err(taken(order, o.order.version));
        }
        if batch.numbers.contains_key(order.number.as_str()) {
            return Err(taken(order, 1));
        }
        let id = to_i64(order.id, "order id")?;
        let number = order.number.as_str();
        let stored = self.read_only(|client, statements| {
            let statement = prepared(
                client,
                statements,
                "SELECT version FROM orders WHERE id = $1 OR order_number = $2 LIMIT 1",
            )?;
            Ok(client
                .query(&statement, &[&id, &number])?
                .first()
                .map(|r| r.get::<_, i64>(0)))
        })?;
        if let Some(version) = stored {
            return Err(taken(order, to_u64(version, "version")?));
        }
        if let Some((key, record)) = idempotency {
            batch.keep_key(key, record, Some(order))?;
        }
        batch.numbers.insert(order.number.to_string(), order.id);
        batch.orders.insert(
            order.id,
            BatchOrder {
                order: order.clone(),
                base: None,
            },
        );
        batch.events.extend_from_slice(events);
        Ok(())
    }

    /// [`oms_core::store::OrderStore::update_order`] in a batch.
    pub(crate) fn batch_update(
        &self,
        batch: &mut PgBatch,
        order: &Order,
        expected_version: u64,
        events: &[Event],
        idempotency: Option<Keyed<'_>>,
    ) -> OmsResult<()> {
        let current = match batch.orders.get(&order.id) {
            Some(o) => o.order.version,
            None => self
                .stored_version(order.id)?
                .ok_or_else(|| OmsError::OrderNotFound {
                    order: order.id.to_string(),
                })?,
        };
        if current != expected_version || order.version <= expected_version {
            return Err(OmsError::Conflict {
                entity: format!("order {}", order.number),
                expected: expected_version,
                found: current,
            });
        }
        if let Some((key, record)) = idempotency {
            batch.keep_key(key, record, Some(order))?;
        }
        match batch.orders.get_mut(&order.id) {
            Some(o) => o.order = order.clone(),
            None => {
                batch.orders.insert(
                    order.id,
                    BatchOrder {
                        order: order.clone(),
                        base: Some(current),
                    },
                );
            }
        }
        batch.events.extend_from_slice(events);
        Ok(())
    }

    /// The stored version of order `id`, if it is stored.
    fn stored_version(&self, id: u64) -> OmsResult<Option<u64>> {
        let key = to_i64(id, "order id")?;
        let found = self.read_only(|client, statements| {
            let statement = prepared(
                client,
                statements,
                "SELECT version FROM orders WHERE id = $1",
            )?;
            Ok(client
                .query(&statement, &[&key])?
                .first()
                .map(|r| r.get::<_, i64>(0)))
        })?;
        found.map(|v| to_u64(v, "version")).transpose()
    }

    /// The batch's copy of order `id`, if it wrote it.
    pub(crate) fn batch_order(batch: &PgBatch, id: u64) -> Option<Order> {
        batch.orders.get(&id).map(|o| o.order.clone())
    }

    /// The id of the order numbered `number` the batch created, if it did.
    pub(crate) fn batch_number(batch: &PgBatch, number: &str) -> Option<u64> {
        batch.numbers.get(number).copied()
    }

    /// `stored` (order ids from the database, ascending) with the batch's new orders added.
    pub(crate) fn batch_ids(batch: &PgBatch, stored: Vec<u64>) -> Vec<u64> {
        let mut ids: BTreeSet<u64> = stored.into_iter().collect();
        ids.extend(batch.numbers.values());
        ids.into_iter().collect()
    }

    /// `stored` (ids of orders stored in `status`) as the batch leaves them: orders it moved
    /// out of `status` dropped, orders it created or moved into `status` added.
    pub(crate) fn batch_ids_with_status(
        batch: &PgBatch,
        stored: Vec<u64>,
        status: OrderStatus,
    ) -> Vec<u64> {
        let mut ids: BTreeSet<u64> = stored
            .into_iter()
            .filter(|id| {
                batch
                    .orders
                    .get(id)
                    .is_none_or(|o| o.order.status == status)
            })
            .collect();
        ids.extend(
            batch
                .orders
                .values()
                .filter(|o| o.order.status == status)
                .map(|o| o.order.id),
        );
        ids.into_iter().collect()
    }

    /// A page of `stored` documents (ids above `after`, ascending, at most `limit`) as the
    /// batch leaves them: its newer versions in their place, its new orders among them.
    pub(crate) fn batch_page(
        batch: &PgBatch,
        stored: Vec<(i64, String)>,
        after: u64,
        limit: usize,
    ) -> OmsResult<Vec<Order>> {
        let mut page: BTreeMap<u64, Option<String>> = BTreeMap::new();
        for (id, doc) in stored {
            page.insert(to_u64(id, "order id")?, Some(doc));
        }
        for id in batch.numbers.values().filter(|id| **id > after) {
            page.insert(*id, None);
        }
        page.into_iter()
            .take(limit)
            .map(|(id, doc)| match (batch.orders.get(&id), doc) {
                (Some(o), _) => Ok(o.order.clone()),
                (None, Some(doc)) => order_from_json(&doc),
                (None, None) => Err(storage("a batch order vanished")),
            })
            .collect()
    }

    /// The record of `key` the batch keeps, if any.
    pub(crate) fn batch_key(batch: &PgBatch, key: &str) -> Option<IdempotencyRecord> {
        batch
            .keys
            .get(key)
            .map(|(fingerprint, response)| IdempotencyRecord {
                fingerprint: fingerprint.clone(),
                response: Response::Json(response.clone()),
            })
    }

    /// [`oms_core::store::OrderStore::put_idempotency`] in a batch.
    pub(crate) fn batch_put_key(
        batch: &mut PgBatch,
        key: &str,
        record: &IdempotencyRecord,
    ) -> OmsResult<()> {
        batch.keep_key(key, record, None)
    }
}
