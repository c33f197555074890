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
//! A batch cut by [`PostgresStore::rotate_batch`] commits in two phases: its new orders
//! (with their lines and audit rows) first, which nothing another batch writes can touch,
//! then, once the batches cut before it have committed, everything that may depend on them.
//! So a batch writes its new orders while those before it finish, and the server works on
//! several batches at once; batches still become durable in the order they were cut,
//! and a batch built on one whose commit failed fails its own commit.
//!
//! Outbox events become visible when their batch commits
//! ([`oms_core::store::OrderStore::pending_events`] lists committed events only: a publisher
//! must never announce what may still be rolled back).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, MutexGuard};

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
    /// Why the batch is lost: the batch it was built on failed to commit.
    lost: Option<String>,
    /// Its place among the store's batches (see `PostgresStore::opened`).
    seq: u64,
}

impl PgBatch {
    /// A new batch, numbered `seq`.
    fn opened(seq: u64) -> Self {
        PgBatch {
            seq,
            ..PgBatch::default()
        }
    }

    /// Refuse work on a batch built on one that failed to commit.
    pub(crate) fn check(&self) -> OmsResult<()> {
        match &self.lost {
            Some(reason) => Err(built_on_failed(reason)),
            None => Ok(()),
        }
    }

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

/// Why a batch built on one whose commit failed is refused.
fn built_on_failed(reason: &str) -> OmsError {
    storage(format!(
        "the batch before this one failed to commit ({reason}); this batch is lost: roll it back"
    ))
}

fn taken(order: &Order, found: u64) -> OmsError {
    OmsError::Conflict {
        entity: format!("order {}", order.number),
        expected: 0,
        found,
    }
}

/// How many cut batches may be committing at once. While the oldest writes what depends on
/// the batches before it, the others write their new orders; a rotation beyond this waits.
pub(crate) const COMMITTING: u64 = 3;

/// The closed batches whose commits are running, oldest first (at most [`COMMITTING`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct Sealed {
    batches: Vec<Arc<PgBatch>>,
}

impl Sealed {
    /// The batches, oldest first.
    pub(crate) fn oldest_first(&self) -> impl DoubleEndedIterator<Item = &PgBatch> {
        self.batches.iter().map(|b| &**b)
    }

    /// Drop `batch`, whose commit ended.
    fn remove(&mut self, batch: &Arc<PgBatch>) {
        self.batches.retain(|b| !Arc::ptr_eq(b, batch));
    }
}

/// Tickets of the batches' turns.
#[derive(Debug, Default)]
pub(crate) struct Turns {
    /// Tickets drawn: one per cut batch.
    drawn: u64,
    /// Turns ended: the batch holding ticket `ended` has the turn.
    ended: u64,
}

/// The batches a read looks through, newest first: the open one, then those whose commits
/// are running, newest first. Rows move only from a batch into the database, oldest batch
/// first, so reading newest first never misses a row on its way.
#[derive(Clone, Copy)]
pub(crate) struct Layers<'a> {
    open: Option<&'a PgBatch>,
    sealed: &'a Sealed,
}

impl<'a> Layers<'a> {
    /// The layers of an open batch (if any) and the committing ones.
    pub(crate) fn new(open: Option<&'a PgBatch>, sealed: &'a Sealed) -> Self {
        Layers { open, sealed }
    }

    fn each(self) -> impl Iterator<Item = &'a PgBatch> {
        self.open
            .into_iter()
            .chain(self.sealed.oldest_first().rev())
    }

    /// Whether there is no batch to look through.
    pub(crate) fn is_empty(self) -> bool {
        self.each().next().is_none()
    }

    /// The newest copy of order `id` a batch holds.
    pub(crate) fn order(self, id: u64) -> Option<&'a Order> {
        self.each()
            .find_map(|b| b.orders.get(&id).map(|o| &o.order))
    }

    /// The id of the order numbered `number` a batch created.
    pub(crate) fn number(self, number: &str) -> Option<u64> {
        self.each().find_map(|b| b.numbers.get(number).copied())
    }

    /// `stored` (order ids from the database) with the batches' new orders added.
    pub(crate) fn ids(self, stored: Vec<u64>) -> Vec<u64> {
        let mut ids: BTreeSet<u64> = stored.into_iter().collect();
        for b in self.each() {
            ids.extend(b.numbers.values());
        }
        ids.into_iter().collect()
    }

    /// `stored` (ids of orders stored in `status`) as the batches leave them.
    pub(crate) fn ids_with_status(self, stored: Vec<u64>, status: OrderStatus) -> Vec<u64> {
        let mut ids: BTreeSet<u64> = stored
            .into_iter()
            .filter(|id| self.order(*id).is_none_or(|o| o.status == status))
            .collect();
        for b in self.each() {
            for o in b.orders.values() {
                if self
                    .order(o.order.id)
                    .is_some_and(|newest| newest.status == status)
                {
                    ids.insert(o.order.id);
                }
            }
        }
        ids.into_iter().collect()
    }

    /// A page of `stored` documents (ids above `after`, ascending, at most `limit`) as the
    /// batches leave them: newer versions in their place, new orders among them.
    pub(crate) fn page(
        self,
        stored: Vec<(i64, String)>,
        after: u64,
        limit: usize,
    ) -> OmsResult<Vec<Order>> {
        let mut page: BTreeMap<u64, Option<String>> = BTreeMap::new();
        for (id, doc) in stored {
            page.insert(to_u64(id, "order id")?, Some(doc));
        }
        for b in self.each() {
            for id in b.numbers.values().filter(|id| **id > after) {
                page.insert(*id, None);
            }
        }
        page.into_iter()
            .take(limit)
            .map(|(id, doc)| match (self.order(id), doc) {
                (Some(o), _) => Ok(o.clone()),
                (None, Some(doc)) => order_from_json(&doc),
                (None, None) => Err(storage("a batch order vanished")),
            })
            .collect()
    }

    /// The record of `key` a batch keeps (the oldest batch's first).
    pub(crate) fn key(self, key: &str) -> Option<IdempotencyRecord> {
        self.sealed
            .oldest_first()
            .chain(self.open)
            .find_map(|b| b.keys.get(key))
            .map(|(fingerprint, response)| IdempotencyRecord {
                fingerprint: fingerprint.clone(),
                response: Response::Json(response.clone()),
            })
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
        *batch = Some(PgBatch::opened(self.next_seq()));
        Ok(())
    }

    /// Wait, with the turns locked (`turns`), until `done` says the wait is over.
    fn wait_turns<'t>(
        &self,
        mut turns: MutexGuard<'t, Turns>,
        done: impl Fn(&Turns) -> bool,
    ) -> OmsResult<MutexGuard<'t, Turns>> {
        while !done(&turns) {
            turns = self
                .turn_ended
                .wait(turns)
                .map_err(|_| storage("postgres batch lock poisoned"))?;
        }
        Ok(turns)
    }

    /// End the turn of the batch holding it: the next batch's turn comes.
    fn end_turn(&self) -> OmsResult<()> {
        self.turns()?.ended += 1;
        self.turn_ended.notify_all();
        Ok(())
    }

    /// The number of a batch opening now.
    fn next_seq(&self) -> u64 {
        self.opened
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel)
            + 1
    }

    /// Commit the open batch: all its operations become durable together, or, if the commit
    /// fails (an order or stock row another writer changed so that the batch no longer fits),
    /// none does. Batches rotated before it commit first. The batch is closed either way;
    /// reads look through it until its commit ends.
    pub fn commit_batch(&self) -> OmsResult<()> {
        self.seal_and_commit(false)
    }

    /// Cut the open batch: the next one opens in the same step (operations of other threads
    /// wait meanwhile, and land in one batch or the other), and the cut one is committed while
    /// the next runs on top of it — reads look through it until its commit ends. Returns once
    /// that commit has ended: with its error if it failed, and then every batch built on it
    /// is lost (a rotated one fails its commit; the open one refuses its operations and its
    /// commit until it is rolled back).
    ///
    /// Up to three cut batches may be committing at once: while the oldest writes what
    /// depends on the batches before it (updates of orders they hold, stock and reservation
    /// rows, idempotency records, events), those cut after it already write their new orders,
    /// each in its own transaction, then wait for their turns. Batches still become durable
    /// one at a time, in the order they were cut; a rotation finding three committing waits
    /// for the oldest to end.
    pub fn rotate_batch(&self) -> OmsResult<()> {
        self.seal_and_commit(true)
    }

    /// Close the open batch (opening the next one when `reopen`) and commit it while reads
    /// look through it; once its commit has ended, count it, drop it from the layers, and end
    /// its turn.
    fn seal_and_commit(&self, reopen: bool) -> OmsResult<()> {
        let (sealed, ticket) = {
            // Cut only while fewer than `COMMITTING` batches are committing.
            let turns = self.turns()?;
            let mut turns = self.wait_turns(turns, |t| t.drawn - t.ended < COMMITTING)?;
            let mut batch = self.batch()?;
            let open = batch.take().ok_or_else(|| {
                storage(if reopen {
                    "no open batch to rotate"
                } else {
                    "no open batch to commit"
                })
            })?;
            if let Err(e) = open.check() {
                if reopen {
                    // Still lost: keep refusing until rolled back.
                    *batch = Some(open);
                }
                return Err(e);
            }
            let sealed = Arc::new(open);
            self.sealed_slot()?.batches.push(sealed.clone());
            if reopen {
                *batch = Some(PgBatch::opened(self.next_seq()));
            }
            let ticket = turns.drawn;
            turns.drawn += 1;
            (sealed, ticket)
        };
        let mut has_turn = false;
        let mut outcome = self.write_phases(&sealed, &mut || {
            if !has_turn {
                drop(self.wait_turns(self.turns()?, |t| t.ended == ticket)?);
                has_turn = true;
                let doomed = self.doomed()?;
                if sealed.seq <= doomed.0 {
                    return Err(built_on_failed(&doomed.1));
                }
            }
            Ok(())
        });
        if !has_turn {
            // A failure before the turn still ends in turn, after the batches cut before it.
            if let Err(e) = self.wait_turns(self.turns()?, |t| t.ended == ticket) {
                outcome = Err(e);
            }
        }
        if let Err(e) = &outcome {
            // Every batch opened until now is built on this one (those opened before it have
            // ended: they had their turns first).
            *self.doomed()? = (
                self.opened.load(std::sync::atomic::Ordering::Acquire),
                e.to_string(),
            );
            if let Some(open) = self.batch()?.as_mut() {
                open.lost = Some(e.to_string());
            }
        }
        // Counted before the batch leaves the layers (see `PostgresStore::commits_ended`).
        self.commits_ended
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.sealed_slot()?.remove(&sealed);
        self.end_turn()?;
        outcome
    }

    /// Drop the open batch: none of its operations are stored (a rotated batch still
    /// committing is not affected).
    pub fn rollback_batch(&self) -> OmsResult<()> {
        *self.batch()? = None;
        Ok(())
    }

    /// Whether a batch is open.
    pub fn in_batch(&self) -> OmsResult<bool> {
        Ok(self.batch()?.is_some())
    }

    /// Write a closed batch in one transaction, in two phases: its new orders first (nothing
    /// another batch writes can hold them), then, once `await_turn` returns (the batches cut
    /// before it have ended), everything else. `await_turn` is called again if the
    /// transaction runs again.
    fn write_phases(
        &self,
        batch: &PgBatch,
        await_turn: &mut dyn FnMut() -> OmsResult<()>,
    ) -> OmsResult<()> {
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
            await_turn()?;
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
            // Events after the turn, so the outbox numbers them in the order batches commit.
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

    /// The version of the stored order with `order`'s id or number, if there is one.
    pub(crate) fn stored_id_or_number(&self, order: &Order) -> OmsResult<Option<u64>> {
        let id = to_i64(order.id, "order id")?;
        self.stored_version_where(
            // Two probes of unique indexes, not one `id = $1 OR order_number = $2`: a plan
            // cached while the table was small could serve the OR with a scan of every order.
            "(SELECT version FROM orders WHERE id = $1)
             UNION ALL (SELECT version FROM orders WHERE order_number = $2) LIMIT 1",
            &[&id, &order.number.as_str()],
        )
    }

    /// The stored version of order `id`, if it is stored.
    fn stored_version(&self, id: u64) -> OmsResult<Option<u64>> {
        let key = to_i64(id, "order id")?;
        self.stored_version_where("SELECT version FROM orders WHERE id = $1", &[&key])
    }

    /// The version `sql` (one row of one version column, or none) reads.
    fn stored_version_where(
        &self,
        sql: &'static str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> OmsResult<Option<u64>> {
        let found = self.read_only(|client, statements| {
            let statement = prepared(client, statements, sql)?;
            Ok(client
                .query(&statement, params)?
                .first()
                .map(|r| r.get::<_, i64>(0)))
        })?;
        found.map(|v| to_u64(v, "version")).transpose()
    }

    /// [`oms_core::store::OrderStore::insert_order`] in the open batch `batch`, over the
    /// committing one (`sealed`), given the version stored under the order's id or number.
    pub(crate) fn batch_insert(
        batch: &mut PgBatch,
        sealed: &Sealed,
        stored: Option<u64>,
        order: &Order,
        events: &[Event],
        idempotency: Option<Keyed<'_>>,
    ) -> OmsResult<()> {
        batch.check()?;
        let layers = Layers::new(Some(batch), sealed);
        if let Some(o) = layers.order(order.id) {
            return Err(taken(order, o.version));
        }
        if layers.number(order.number.as_str()).is_some() {
            return Err(taken(order, 1));
        }
        if let Some(version) = stored {
            return Err(taken(order, version));
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

    /// [`oms_core::store::OrderStore::update_order`] in the open batch `batch`, over the
    /// committing one (`sealed`).
    pub(crate) fn batch_update(
        &self,
        batch: &mut PgBatch,
        sealed: &Sealed,
        order: &Order,
        expected_version: u64,
        events: &[Event],
        idempotency: Option<Keyed<'_>>,
    ) -> OmsResult<()> {
        batch.check()?;
        let current = match Layers::new(Some(batch), sealed).order(order.id) {
            Some(o) => o.version,
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
                // Stored, or written by the committing batch: either way stored at `current`
                // by the time this batch commits (batches commit in order).
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

    /// [`oms_core::store::OrderStore::put_idempotency`] in the open batch.
    pub(crate) fn batch_put_key(
        batch: &mut PgBatch,
        key: &str,
        record: &IdempotencyRecord,
    ) -> OmsResult<()> {
        batch.check()?;
        batch.keep_key(key, record, None)
    }
}
