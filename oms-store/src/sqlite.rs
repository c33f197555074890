//! SQLite: the embedded default store.
//!
//! Durability: WAL with `synchronous = NORMAL`. A committed transaction survives the process
//! being killed at any instant (the WAL is written before commit returns); only an operating
//! system crash or power loss may drop the last few commits, and never leaves a torn one.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration as StdDuration;

use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};

use oms_core::error::{OmsError, OmsResult};
use oms_core::events::Event;
use oms_core::lifecycle::{AuditEntry, OrderStatus};
use oms_core::order::Order;
use oms_core::store::{IdempotencyRecord, Keyed, OrderStore, Response};

use crate::children::{encode_rows, insert_encoded, write_rows, HeldRows, KeyRow};
use crate::codec::{
    event_data_from_json, order_column, order_from_column, response_from_column, storage, to_i64,
    to_json, to_u64,
};
use crate::group::GroupCommit;
use crate::overlay::InventoryOverlay;
use crate::pipeline::{Pipeline, Sealed};
use crate::sqlite_inventory::SqliteLedger;

/// Embedded migrations, applied in order on open; the index + 1 is the schema version.
const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE orders (
    id               INTEGER PRIMARY KEY,
    order_number     TEXT    NOT NULL UNIQUE,
    user_id          TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    currency         TEXT    NOT NULL,
    total_amount     TEXT    NOT NULL,
    version          INTEGER NOT NULL,
    shipping_address TEXT    NOT NULL,
    billing_address  TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    document         TEXT    NOT NULL
);
CREATE INDEX idx_orders_user ON orders(user_id);
CREATE INDEX idx_orders_status ON orders(status);
CREATE INDEX idx_orders_created ON orders(created_at);
CREATE TABLE order_items (
    order_id   INTEGER NOT NULL REFERENCES orders(id),
    line_id    INTEGER NOT NULL,
    sku        TEXT    NOT NULL,
    quantity   INTEGER NOT NULL,
    unit_price TEXT    NOT NULL,
    discount   TEXT    NOT NULL,
    tax_class  TEXT    NOT NULL,
    PRIMARY KEY (order_id, line_id)
);
CREATE TABLE order_state_transitions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id   INTEGER NOT NULL REFERENCES orders(id),
    from_state TEXT,
    to_state   TEXT    NOT NULL,
    event      TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    metadata   TEXT    NOT NULL,
    created_by TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX idx_transitions_order ON order_state_transitions(order_id);
CREATE TABLE events_outbox (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id  INTEGER NOT NULL,
    version   INTEGER NOT NULL,
    name      TEXT    NOT NULL,
    at        INTEGER NOT NULL,
    data      TEXT    NOT NULL,
    published INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX idx_outbox_pending ON events_outbox(seq) WHERE published = 0;
CREATE TABLE idempotency_keys (
    key         TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    response    TEXT NOT NULL
);
",
    r"
CREATE TABLE warehouses (
    warehouse_id TEXT PRIMARY KEY
);
CREATE TABLE inventory (
    sku          TEXT    NOT NULL,
    warehouse_id TEXT    NOT NULL REFERENCES warehouses(warehouse_id),
    on_hand      INTEGER NOT NULL CHECK (on_hand >= 0),
    reserved     INTEGER NOT NULL CHECK (reserved >= 0),
    allocated    INTEGER NOT NULL CHECK (allocated >= 0),
    damaged      INTEGER NOT NULL CHECK (damaged >= 0),
    CHECK (reserved + allocated <= on_hand),
    PRIMARY KEY (sku, warehouse_id)
);
CREATE TABLE inventory_reservations (
    id         INTEGER PRIMARY KEY,
    order_id   INTEGER NOT NULL,
    status     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    document   TEXT    NOT NULL
);
CREATE INDEX idx_reservations_order ON inventory_reservations(order_id);
CREATE INDEX idx_reservations_open_expiry ON inventory_reservations(expires_at)
    WHERE status IN ('reserved', 'awaiting_customer_decision');
CREATE TABLE inventory_reservation_items (
    reservation_id INTEGER NOT NULL REFERENCES inventory_reservations(id),
    line_no        INTEGER NOT NULL,
    sku            TEXT    NOT NULL,
    warehouse_id   TEXT    NOT NULL REFERENCES warehouses(warehouse_id),
    quantity       INTEGER NOT NULL CHECK (quantity > 0),
    shipped        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (reservation_id, line_no)
);
",
    // Per-order bookkeeping so a write need not count audit rows or compare line rows.
    r"
ALTER TABLE orders ADD COLUMN history_len INTEGER NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN lines_digest INTEGER;
UPDATE orders SET history_len =
    (SELECT COUNT(*) FROM order_state_transitions t WHERE t.order_id = orders.id);
",
    // Publishing as a cursor. SQLite commits one writer at a time, so outbox sequence numbers
    // become visible in order and "published up to seq N" says all the per-row flag said: an
    // acknowledgement writes one row instead of one per event, and inserting an event no longer
    // maintains an index of unpublished rows. The old `published` column stays, unused.
    r"
CREATE TABLE outbox_cursor (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    published_upto INTEGER NOT NULL
);
INSERT INTO outbox_cursor (id, published_upto) VALUES (1, COALESCE(
    (SELECT MIN(seq) - 1 FROM events_outbox WHERE published = 0),
    (SELECT MAX(seq) FROM events_outbox),
    0));
DROP INDEX idx_outbox_pending;
",
];

/// How many decoded orders a store keeps to skip re-parsing their documents.
const DECODED_LIMIT: usize = 2048;

/// Prepared statements kept per connection: more than the order and inventory stores use.
const STATEMENT_CACHE: usize = 96;

/// The page cache per connection, in KiB (a negative `cache_size` is KiB): large enough that a
/// simulation's working set of order and index pages stays in memory.
const CACHE_KIB: i64 = 65_536;

/// WAL frames between automatic checkpoints. Hot pages (the newest index leaves, the outbox
/// tail) are rewritten by many commits; a longer interval copies each back to the database
/// once instead of many times.
const AUTOCHECKPOINT_PAGES: i64 = 8_192;

/// An [`OrderStore`] on one SQLite connection (open one store per worker thread, or share one
/// between threads with [`SqliteStore::enable_group_commit`], or with one batch that any of
/// them cuts with [`SqliteStore::rotate_batch`]).
///
/// Writes are atomic one by one: each runs in its own `BEGIN IMMEDIATE` transaction, or, inside
/// a batch ([`SqliteStore::begin_batch`]) or a shared group commit, on that transaction's rows
/// kept in memory until its commit (checked before anything is kept, or undone in memory), so a
/// failed operation rolls back alone. Decoded orders are kept by version: a read checks the
/// stored version and parses the document only when another writer has moved it on.
#[derive(Debug)]
pub struct SqliteStore {
    /// The writing connection (shared with the thread committing a pipelined batch).
    conn: Arc<Mutex<Connection>>,
    /// With pipelined batches: a read-only connection for the rows a batch has not touched.
    reader: Mutex<Option<Connection>>,
    /// Pipelined batches, when enabled ([`SqliteStore::pipeline_batches`]).
    pipeline: Mutex<Pipeline>,
    /// Held by a write of a pipelined batch while it reads and changes the batch's rows, so
    /// writes from many threads apply one at a time, and by reads that look through the
    /// batch's layers and by rotations, so a batch is sealed between two of them.
    op: Mutex<()>,
    decoded: Mutex<HashMap<u64, (u64, Order)>>,
    /// Inside a batch: the newest version of each order the batch updated, whose row is
    /// written once, when the batch commits (see [`SqliteStore::begin_batch`]).
    deferred: Mutex<DeferredRows>,
    /// Shared commits between threads, when enabled ([`SqliteStore::enable_group_commit`]).
    group: GroupCommit,
    /// Inside a batch or a group: the inventory rows its operations read and wrote, written
    /// once, at the commit (see [`crate::overlay`]).
    inventory: Mutex<InventoryOverlay>,
    /// Inside a batch or a group: the audit, outbox and idempotency rows of its order writes,
    /// written at the commit (see [`crate::children`]).
    held: Mutex<HeldRows>,
}

/// An order row a batch will write at its commit.
#[derive(Debug)]
pub(crate) struct Deferred {
    pub(crate) order: Order,
    lines_digest: i64,
    /// Whether the order's line rows changed since they were last written.
    rewrite_items: bool,
    /// A pipelined batch created the order: its row is inserted at the commit.
    new: bool,
    /// The row's encoded columns, when the writer encoded them already (group commit: each
    /// writer encodes its own order on its own thread, so the shared commit only writes).
    encoded: Option<RowValues>,
}

/// The order rows a batch deferred, by order id, with each row's status kept beside it and
/// indexed by status: listing the orders in a status reads just those rows' ids, instead of
/// touching every deferred order (each on cache lines of its own, cold by the time a listing
/// runs) or every status (a listing runs every few operations, over a batch of thousands).
///
/// Reads go through `Deref`; every change goes through a method that keeps the statuses in
/// step.
#[derive(Debug, Default)]
pub(crate) struct DeferredRows {
    rows: BTreeMap<u64, Deferred>,
    statuses: BTreeMap<u64, OrderStatus>,
    by_status: BTreeSet<(OrderStatus, u64)>,
}

impl std::ops::Deref for DeferredRows {
    type Target = BTreeMap<u64, Deferred>;
    fn deref(&self) -> &BTreeMap<u64, Deferred> {
        &self.rows
    }
}

impl DeferredRows {
    /// Keep `row` as the newest version of its order.
    fn insert(&mut self, row: Deferred) {
        let (id, status) = (row.order.id, row.order.status);
        if let Some(old) = self.statuses.insert(id, status) {
            if old != status {
                self.by_status.remove(&(old, id));
            }
        }
        self.by_status.insert((status, id));
        self.rows.insert(id, row);
    }

    /// Forget every row.
    fn clear(&mut self) {
        self.rows.clear();
        self.statuses.clear();
        self.by_status.clear();
    }

    /// Every row, to mark or strip its bookkeeping (never its order: the statuses would go
    /// stale).
    fn bookkeeping_mut(&mut self) -> impl Iterator<Item = &mut Deferred> {
        self.rows.values_mut()
    }

    /// Each deferred order's status, by order id.
    pub(crate) fn statuses(&self) -> &BTreeMap<u64, OrderStatus> {
        &self.statuses
    }

    /// The ids of the deferred orders now in `status`, in id order.
    pub(crate) fn in_status(&self, status: OrderStatus) -> impl Iterator<Item = u64> + '_ {
        self.by_status
            .range((status, 0)..=(status, u64::MAX))
            .map(|(_, id)| *id)
    }

    /// The rows themselves.
    fn into_rows(self) -> BTreeMap<u64, Deferred> {
        self.rows
    }
}

impl SqliteStore {
    /// Open (creating if needed) the database at `path`, or an in-memory one for `":memory:"`,
    /// and apply pending migrations.
    pub fn open(path: impl AsRef<Path>) -> OmsResult<SqliteStore> {
        let conn = Connection::open(path).map_err(storage)?;
        Self::setup(conn)
    }

    /// A private in-memory database.
    pub fn open_in_memory() -> OmsResult<SqliteStore> {
        Self::setup(Connection::open_in_memory().map_err(storage)?)
    }

    fn setup(conn: Connection) -> OmsResult<SqliteStore> {
        conn.busy_timeout(StdDuration::from_secs(10))
            .map_err(storage)?;
        // Every statement of the order and inventory stores stays prepared (rusqlite keeps 16
        // by default, fewer than the stores use, so they were re-parsed in turn).
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // journal_mode returns a row, so it is read rather than executed.
        let _mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(storage)?;
        conn.execute_batch(&format!(
            "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;
             PRAGMA cache_size = -{CACHE_KIB}; PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES};"
        ))
        .map_err(storage)?;
        let store = SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            reader: Mutex::new(None),
            pipeline: Mutex::new(Pipeline::default()),
            op: Mutex::new(()),
            decoded: Mutex::new(HashMap::new()),
            deferred: Mutex::new(DeferredRows::default()),
            group: GroupCommit::default(),
            inventory: Mutex::new(InventoryOverlay::default()),
            held: Mutex::new(HeldRows::default()),
        };
        store.migrate()?;
        Ok(store)
    }

    /// The writing connection, once a pipelined commit still running has ended (its failure
    /// is returned here, once).
    pub(crate) fn lock(&self) -> OmsResult<MutexGuard<'_, Connection>> {
        self.settle()?;
        self.writer()
    }

    /// The writing connection if no one holds it, without waiting for a commit.
    #[cfg(test)]
    pub(crate) fn try_writer(&self) -> Option<MutexGuard<'_, Connection>> {
        self.conn.try_lock().ok()
    }

    fn writer(&self) -> OmsResult<MutexGuard<'_, Connection>> {
        self.conn
            .lock()
            .map_err(|_| storage("sqlite connection lock poisoned"))
    }

    fn deferred(&self) -> OmsResult<MutexGuard<'_, DeferredRows>> {
        self.deferred
            .lock()
            .map_err(|_| storage("sqlite deferred rows lock poisoned"))
    }

    /// Forget what an abandoned batch held in memory, and the decoded orders it may have read.
    fn forget_batch(&self) -> OmsResult<()> {
        self.forget_rows()?;
        self.decoded()?.clear();
        Ok(())
    }

    /// Forget the open batch's rows: its inventory rows, held rows and deferred orders.
    fn forget_rows(&self) -> OmsResult<()> {
        self.overlay()?.clear();
        self.held()?.clear();
        self.deferred()?.clear();
        Ok(())
    }

    /// Keep the orders a commit just stored as the decoded forms of their stored versions.
    fn remember_committed(&self, orders: DeferredRows) -> OmsResult<()> {
        let mut decoded = self.decoded()?;
        if decoded.len() + orders.len() > DECODED_LIMIT {
            decoded.clear();
        }
        for (id, row) in orders.into_rows() {
            decoded.insert(id, (row.order.version, row.order));
        }
        Ok(())
    }

    /// The inventory rows of the open batch or group.
    pub(crate) fn overlay(&self) -> OmsResult<MutexGuard<'_, InventoryOverlay>> {
        self.inventory
            .lock()
            .map_err(|_| storage("sqlite inventory rows lock poisoned"))
    }

    /// The audit, outbox and idempotency rows of the open batch or group.
    fn held(&self) -> OmsResult<MutexGuard<'_, HeldRows>> {
        self.held
            .lock()
            .map_err(|_| storage("sqlite held rows lock poisoned"))
    }

    /// Inside a batch or a group, write the held audit, outbox and idempotency rows now, so a
    /// read of those tables sees them.
    fn write_held(&self, conn: &Connection) -> OmsResult<()> {
        if conn.is_autocommit() {
            return Ok(());
        }
        self.held()?.flush(conn, &*self.deferred()?)
    }

    /// Write the inventory rows, the held rows and the order rows the open batch deferred
    /// (orders oldest id first).
    fn flush_deferred(&self, conn: &Connection) -> OmsResult<()> {
        let mut orders = std::mem::take(&mut *self.deferred()?);
        let held = std::mem::take(&mut *self.held()?);
        let encoded: Vec<Option<RowValues>> = orders
            .bookkeeping_mut()
            .map(|row| row.encoded.take())
            .collect();
        let audit = held.audit_entries(&orders)?;
        let keys = held.key_records();
        let rows: Vec<&Deferred> = orders.values().collect();
        // Encoding (JSON, compression) is pure work, and the statements need only its results:
        // a second thread encodes the held rows, then the order documents, while this one
        // writes stock rows, then the held rows as their encoding arrives; so the commit costs
        // about the longer of the two, not their sum.
        let (encoded_tx, encoded_rx) = std::sync::mpsc::channel();
        let apart = rows.len() + audit.len() + held.events().len() >= crate::parallel::SPLIT_FROM;
        let values = crate::parallel::beside(
            apart,
            || {
                // The receiver is gone only if the writing side already failed.
                let _ =
                    encoded_tx.send(encode_rows(&audit, held.events(), &keys, &|_| None, false));
                rows.iter()
                    .zip(encoded)
                    .map(|(row, done)| done.map_or_else(|| order_row_values(&row.order), Ok))
                    .collect::<Vec<_>>()
            },
            || {
                self.overlay()?.flush(&mut SqliteLedger { conn })?;
                let encoded = encoded_rx
                    .recv()
                    .map_err(|_| storage("the encoding of the held rows stopped"))??;
                insert_encoded(conn, &audit, held.events(), &keys, encoded)
            },
        );
        let values = values?;
        for (row, values) in rows.iter().zip(values) {
            update_order_row(conn, &row.order, values?, row.lines_digest)?;
            if row.rewrite_items {
                write_items(conn, &row.order)?;
            }
        }
        self.remember_committed(orders)
    }

    fn decoded(&self) -> OmsResult<MutexGuard<'_, HashMap<u64, (u64, Order)>>> {
        self.decoded
            .lock()
            .map_err(|_| storage("sqlite order cache lock poisoned"))
    }

    /// Remember `order` as the decoded form of its stored version.
    fn remember(&self, order: Order) -> OmsResult<()> {
        let mut decoded = self.decoded()?;
        if decoded.len() >= DECODED_LIMIT && !decoded.contains_key(&order.id) {
            // Dropping everything is cheap and keeps the bound; the next reads re-parse.
            decoded.clear();
        }
        decoded.insert(order.id, (order.version, order));
        Ok(())
    }

    /// The schema version after migrations.
    pub fn schema_version(&self) -> OmsResult<u32> {
        let conn = self.lock()?;
        conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )
        .map_err(storage)
    }

    /// Start a batch: every write from now until [`SqliteStore::commit_batch`] (on this store
    /// and on a [`crate::SqliteInventory`] sharing its connection) joins one transaction and
    /// becomes durable with it, which saves a commit per operation. Each operation still runs
    /// atomically on its own, so a refused one rolls back alone: an order write is checked
    /// before anything of it is kept (a new order's row goes in with one statement), an
    /// inventory operation runs on the batch's in-memory stock and reservation rows (undone
    /// there if refused). An order updated several times in one batch has its row (and JSON
    /// document) written once, at the commit, and so has every stock row and reservation the
    /// batch changed; audit rows, outbox events and idempotency records are held in memory and
    /// written at the commit too, in the order their operations ran (this store's outbox and
    /// idempotency reads see them meanwhile). The
    /// database's write lock is held for the whole batch, so no other connection can change
    /// those rows meanwhile; keep batches short when other connections write too.
    pub fn begin_batch(&self) -> OmsResult<()> {
        self.refuse_batches_when_grouped()?;
        {
            let mut p = self.pipeline()?;
            if p.enabled {
                if p.open || p.continued {
                    return Err(OmsError::invalid("batch", "a batch is already open"));
                }
                p.open = true;
                p.failed = None;
                return Ok(());
            }
        }
        let conn = self.lock()?;
        if !conn.is_autocommit() {
            return Err(OmsError::invalid("batch", "a batch is already open"));
        }
        exec(&conn, "BEGIN IMMEDIATE")
    }

    /// Commit the open batch: all its operations become durable together.
    pub fn commit_batch(&self) -> OmsResult<()> {
        self.refuse_batches_when_grouped()?;
        if self.pipeline()?.open {
            return self.commit_pipelined(false);
        }
        self.pipeline()?.continued = false;
        let conn = self.lock()?;
        if conn.is_autocommit() {
            // Nothing open: either no batch began, or the database rolled it back after an
            // error such as a full disk; either way its writes are not stored.
            self.forget_batch()?;
            return Err(storage("no open batch to commit"));
        }
        self.commit_deferred(&conn)
    }

    /// Commit the open batch and open the next one in the same step, so that writes other
    /// threads make meanwhile land in one batch or the other, never between the two (where
    /// each would be a transaction of its own). This is how a batch shared by many threads is
    /// cut: any thread rotates (every so many operations, or on a timer), and
    /// [`SqliteStore::commit_batch`] ends the last batch once every writer is done. Pipelined,
    /// the batch's commit starts on its thread and the call returns (the commit before it is
    /// waited for first, and its failure is returned here, with the open batch lost); otherwise
    /// the batch commits before the call returns. Refused when no batch is open.
    pub fn rotate_batch(&self) -> OmsResult<()> {
        self.refuse_batches_when_grouped()?;
        if self.pipeline()?.open {
            return self.commit_pipelined(true);
        }
        let conn = self.lock()?;
        if conn.is_autocommit() {
            self.forget_batch()?;
            self.pipeline()?.continued = false;
            return Err(storage("no open batch to rotate"));
        }
        // A batch continued as an ordinary one stays ordinary: the next one is, too.
        let rotated = self
            .commit_deferred(&conn)
            .and_then(|()| begin_transaction(&conn, "BEGIN IMMEDIATE", &|| {}));
        if rotated.is_err() {
            self.pipeline()?.continued = false;
        }
        rotated
    }

    /// Roll back the open batch: none of its operations are stored.
    pub fn rollback_batch(&self) -> OmsResult<()> {
        self.refuse_batches_when_grouped()?;
        {
            let mut p = self.pipeline()?;
            if p.open {
                p.open = false;
                p.failed = None;
                p.numbers.clear();
                drop(p);
                return self.forget_rows();
            }
            p.continued = false;
        }
        let conn = self.lock()?;
        self.forget_batch()?;
        if conn.is_autocommit() {
            return Ok(());
        }
        exec(&conn, "ROLLBACK")
    }

    /// Whether a batch is open on this connection.
    pub fn in_batch(&self) -> OmsResult<bool> {
        {
            let p = self.pipeline()?;
            if p.enabled {
                return Ok(p.open || p.continued);
            }
        }
        Ok(!self.group.enabled() && !self.lock()?.is_autocommit())
    }

    fn refuse_batches_when_grouped(&self) -> OmsResult<()> {
        if self.group.enabled() {
            return Err(OmsError::invalid(
                "batch",
                "group commit is on: every write already shares its commit with concurrent ones",
            ));
        }
        Ok(())
    }

    /// Let many threads share this store (one connection) and make each write durable in a
    /// commit shared with the writes other threads made meanwhile ("group commit"). A write
    /// still runs atomically on its own (as in a batch), and returns only once a commit covering
    /// it has finished, so every acknowledged write is durable; what changes is that concurrent
    /// writers pay one commit between them instead of one each. Writes are visible to this
    /// store's readers as soon as they are done, slightly before they are durable; if a shared
    /// commit fails, every write in it returns the error and none of them is stored. Explicit
    /// batches ([`SqliteStore::begin_batch`]) are refused from then on. A
    /// [`crate::SqliteInventory`] made with [`crate::SqliteInventory::sharing`] groups its writes
    /// with this store's.
    pub fn enable_group_commit(&self) -> OmsResult<()> {
        if self.pipeline()?.enabled {
            return Err(OmsError::invalid(
                "group_commit",
                "batches are pipelined: group commit and pipelining do not mix",
            ));
        }
        let conn = self.lock()?;
        if !conn.is_autocommit() {
            return Err(OmsError::invalid(
                "group_commit",
                "a batch is open: commit or roll it back first",
            ));
        }
        self.group.enable();
        Ok(())
    }

    /// With group commit on: the writes made so far and the shared commits (or failed ones)
    /// that ended their groups, so writes per commit can be watched.
    pub fn group_commit_counts(&self) -> OmsResult<(u64, u64)> {
        self.group.counts()
    }

    /// Whether writes share commits ([`SqliteStore::enable_group_commit`]).
    pub fn group_commit(&self) -> bool {
        self.group.enabled()
    }

    /// Run the write `f` (which makes itself atomic with [`atomically`]) on the connection. With
    /// group commit on, `f` joins the open group's transaction (opening one if none is) and
    /// the call returns once a commit covering it has finished.
    pub(crate) fn write<T>(
        &self,
        on_busy: &dyn Fn(),
        f: impl FnOnce(&Connection) -> OmsResult<T>,
    ) -> OmsResult<T> {
        if !self.group.enabled() {
            let conn = self.lock()?;
            return f(&conn);
        }
        self.group.arrive()?;
        let joined = self.join_group(on_busy, f);
        self.group.depart()?;
        let (result, group) = joined?;
        let shared = self.group.wait(group, || self.commit_group());
        let value = result?;
        shared?;
        Ok(value)
    }

    /// With group commit on, `order`'s encoded row, made here on the writer's thread before it
    /// takes the shared connection: writers encode side by side, and the commit they share
    /// only writes. `None` otherwise (a batch encodes once, at its commit, however often it
    /// updated the order; a lone write encodes inside its transaction).
    fn encode_for_group(&self, order: &Order) -> OmsResult<Option<RowValues>> {
        if self.group.enabled() {
            order_row_values(order).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Run `f` in the open group (opening one when none is): its result and the group.
    fn join_group<T>(
        &self,
        on_busy: &dyn Fn(),
        f: impl FnOnce(&Connection) -> OmsResult<T>,
    ) -> OmsResult<(OmsResult<T>, u64)> {
        {
            let conn = self.lock()?;
            if conn.is_autocommit() && self.group.is_open()? {
                // SQLite rolled the group's transaction back after an error (a full disk, an
                // I/O error): its writes are gone, and its waiters must hear so.
                self.forget_batch()?;
                self.group.end_open(Some(&storage(
                    "SQLite rolled back the shared transaction after an error",
                )))?;
            }
            let group = self
                .group
                .join(|| begin_transaction(&conn, "BEGIN IMMEDIATE", on_busy))?;
            Ok((f(&conn), group))
        }
    }

    /// Commit the open group (for [`GroupCommit::wait`]): its deferred order rows, then COMMIT.
    fn commit_group(&self) -> OmsResult<()> {
        let conn = self.lock()?;
        if !self.group.is_open()? {
            return Ok(());
        }
        let outcome = if conn.is_autocommit() {
            self.forget_batch()?;
            Err(storage(
                "SQLite rolled back the shared transaction after an error",
            ))
        } else {
            self.commit_deferred(&conn)
        };
        self.group.end_open(outcome.as_ref().err())
    }

    /// Write the open batch's or group's deferred rows and COMMIT; if either fails, roll the
    /// transaction back and forget what the batch held.
    fn commit_deferred(&self, conn: &Connection) -> OmsResult<()> {
        let outcome = self
            .flush_deferred(conn)
            .and_then(|()| exec(conn, "COMMIT"));
        if outcome.is_err() {
            if !conn.is_autocommit() {
                let _ = exec(conn, "ROLLBACK");
            }
            self.forget_batch()?;
        }
        outcome
    }

    fn migrate(&self) -> OmsResult<()> {
        let mut conn = self.lock()?;
        // A database already at the newest version needs no write lock, so opening a store
        // does not wait for (or time out behind) another connection's long batch.
        let current: Option<usize> = conn
            .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
            .ok()
            .flatten();
        if current == Some(MIGRATIONS.len()) {
            return Ok(());
        }
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(storage)?;
        tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)")
            .map_err(storage)?;
        let current: usize = tx
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version",
                [],
                |r| r.get(0),
            )
            .map_err(storage)?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
            tx.execute_batch(sql).map_err(storage)?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                params![i + 1],
            )
            .map_err(storage)?;
        }
        tx.commit().map_err(storage)
    }
}

/// Run one cached statement that takes no parameters and returns no rows.
pub(crate) fn exec(conn: &Connection, sql: &str) -> OmsResult<()> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map(|_| ())
        .map_err(storage)
}

/// Whether SQLite gave up waiting for another connection's lock.
pub(crate) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// How many times a write retries `BEGIN IMMEDIATE` after the busy timeout ran out.
const MAX_BUSY_RETRIES: u32 = 8;

/// Run `begin` (a `BEGIN …` statement), retrying it while the database is busy beyond the busy
/// timeout, up to [`MAX_BUSY_RETRIES`] times; `on_busy` is called for each retry.
fn begin_transaction(conn: &Connection, begin: &str, on_busy: &dyn Fn()) -> OmsResult<()> {
    let mut attempt = 0;
    loop {
        match conn.prepare_cached(begin).and_then(|mut s| s.execute([])) {
            Ok(_) => return Ok(()),
            Err(e) if is_busy(&e) && attempt < MAX_BUSY_RETRIES => {
                attempt += 1;
                on_busy();
            }
            Err(e) => return Err(storage(e)),
        }
    }
}

/// Run `f` atomically on `conn` in a transaction of its own (`BEGIN IMMEDIATE` when `write`,
/// so the write lock is taken before the first read); `f`'s writes are kept only if it
/// succeeds. A read inside an open batch or group runs as it is: it already sees one
/// consistent state (the transaction holds the write lock) and has nothing to undo. Writes
/// inside a batch or group never come here (they are checked and kept in memory until the
/// commit, see [`SqliteStore::begin_batch`]), so one that does is refused. `on_busy` is called
/// for each retried `BEGIN`.
pub(crate) fn atomically<T>(
    conn: &Connection,
    write: bool,
    on_busy: &dyn Fn(),
    f: impl FnOnce(&Connection) -> OmsResult<T>,
) -> OmsResult<T> {
    if !conn.is_autocommit() {
        if write {
            return Err(storage(
                "a write needs a transaction of its own, but a batch or group is open",
            ));
        }
        return f(conn);
    }
    let begin = if write {
        "BEGIN IMMEDIATE"
    } else {
        "BEGIN DEFERRED"
    };
    begin_transaction(conn, begin, on_busy)?;
    // Rolls back if `f` fails or unwinds, so the connection never keeps a half-done transaction.
    let mut scope = Scope { conn, done: false };
    let value = f(conn)?;
    scope.finish()?;
    Ok(value)
}

/// An open transaction, rolled back on drop unless finished.
struct Scope<'a> {
    conn: &'a Connection,
    done: bool,
}

impl Scope<'_> {
    fn finish(&mut self) -> OmsResult<()> {
        self.done = true;
        if let Err(e) = exec(self.conn, "COMMIT") {
            self.done = false;
            return Err(e);
        }
        Ok(())
    }
}

impl Drop for Scope<'_> {
    fn drop(&mut self) {
        // An error here means SQLite already rolled back (the connection is back in
        // autocommit); there is nothing left to undo.
        if !self.done && !self.conn.is_autocommit() {
            let _ = exec(self.conn, "ROLLBACK");
        }
    }
}

/// A stable 64-bit FNV-1a digest of an order's lines as stored in `order_items`, so a write
/// rewrites those rows only when the lines changed.
fn lines_digest(order: &Order) -> i64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    // Each field's bytes, then 0xff as its end. A plain loop per slice: every update of an
    // order digests its lines, and a chained iterator kept the loop from being optimised.
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(PRIME);
        }
        h = (h ^ 0xff).wrapping_mul(PRIME);
    };
    for l in &order.lines {
        eat(&l.line_id.to_le_bytes());
        eat(l.sku.as_str().as_bytes());
        eat(&l.quantity.to_le_bytes());
        // The decimals' exact representation (mantissa and scale): the same value at the same
        // scale as the text written to the rows, without formatting it.
        eat(&l.unit_price.amount().serialize());
        eat(&l.discount.amount().serialize());
        eat(l.tax_class.as_bytes());
    }
    i64::from_le_bytes(h.to_le_bytes())
}

/// Replace the line rows of `order` with its current lines.
fn write_items(conn: &Connection, order: &Order) -> OmsResult<()> {
    let id = to_i64(order.id, "order id")?;
    conn.prepare_cached("DELETE FROM order_items WHERE order_id = ?1")
        .and_then(|mut s| s.execute(params![id]))
        .map_err(storage)?;
    let mut item = conn
        .prepare_cached(
            "INSERT INTO order_items (order_id, line_id, sku, quantity, unit_price, discount, tax_class)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(storage)?;
    for l in &order.lines {
        item.execute(params![
            id,
            l.line_id,
            l.sku.as_str(),
            l.quantity,
            l.unit_price.amount().to_string(),
            l.discount.amount().to_string(),
            l.tax_class.as_str(),
        ])
        .map_err(storage)?;
    }
    Ok(())
}

/// The rows that go with an order write made at once: the idempotency record, the line rows
/// when they changed, the audit rows of history entries past `stored_history`, the events.
fn write_children(
    conn: &Connection,
    order: &Order,
    events: &[Event],
    stored_history: usize,
    rewrite_items: bool,
    idempotency: Option<Keyed<'_>>,
) -> OmsResult<()> {
    if rewrite_items {
        write_items(conn, order)?;
    }
    let audit: Vec<(u64, &AuditEntry)> = order
        .history
        .iter()
        .skip(stored_history)
        .map(|h| (order.id, &**h))
        .collect();
    let keys: Vec<KeyRow<'_>> = idempotency
        .into_iter()
        .map(|(key, record)| (key, record, Some(order)))
        .collect();
    write_rows(conn, &audit, events, &keys)
}

fn order_row_values(order: &Order) -> OmsResult<RowValues> {
    Ok((
        order.book_value()?.amount().to_string(),
        to_json(&order.shipping_address)?,
        to_json(&order.billing_address)?,
        order_column(order)?,
    ))
}

fn history_len(order: &Order) -> OmsResult<i64> {
    to_i64(order.history.len() as u64, "history length")
}

/// What a write needs to know of an order's stored row: its version, how many audit rows it
/// has, and the digest of its line rows (`None` before migration 3 filled it).
struct Stored {
    version: u64,
    history_len: usize,
    lines_digest: Option<i64>,
}

impl Stored {
    /// Read the row of `order`, or `OrderNotFound`.
    fn read(conn: &Connection, order: &Order) -> OmsResult<Stored> {
        let id = to_i64(order.id, "order id")?;
        let row: Option<(i64, i64, Option<i64>)> = conn
            .prepare_cached("SELECT version, history_len, lines_digest FROM orders WHERE id = ?1")
            .and_then(|mut s| {
                s.query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(storage)?;
        let Some((version, history_len, lines_digest)) = row else {
            return Err(OmsError::OrderNotFound {
                order: order.id.to_string(),
            });
        };
        Ok(Stored {
            version: to_u64(version, "version")?,
            history_len: usize::try_from(history_len)
                .map_err(|_| storage("negative history length in storage"))?,
            lines_digest,
        })
    }

    /// What a deferred (or sealed) row will store.
    fn of(row: &Deferred) -> Stored {
        Stored {
            version: row.order.version,
            history_len: row.order.history.len(),
            lines_digest: Some(row.lines_digest),
        }
    }

    /// Refuse `order` unless this is the version it was read at and it moves past it.
    fn admit(&self, order: &Order, expected_version: u64) -> OmsResult<()> {
        if self.version != expected_version || order.version <= expected_version {
            return Err(OmsError::Conflict {
                entity: format!("order {}", order.number),
                expected: expected_version,
                found: self.version,
            });
        }
        Ok(())
    }
}

/// The newest version of an order an update is checked against: a row the open batch defers
/// (whose line rows may still need writing, and which may be new in the batch), or a stored
/// one (the database's, or a sealed pipelined batch's).
struct Prior {
    stored: Stored,
    rewrite_pending: bool,
    new: bool,
}

impl Prior {
    fn pending(row: &Deferred) -> Prior {
        Prior {
            stored: Stored::of(row),
            rewrite_pending: row.rewrite_items,
            new: row.new,
        }
    }

    fn stored(stored: Stored) -> Prior {
        Prior {
            stored,
            rewrite_pending: false,
            new: false,
        }
    }
}

/// Insert the row of a new `order` with its columns already encoded, or `Conflict` when its
/// id or number is taken. Nothing is written when it fails.
fn insert_order_row(
    conn: &Connection,
    order: &Order,
    (total, ship, bill, doc): RowValues,
) -> OmsResult<()> {
    let id = to_i64(order.id, "order id")?;
    let version = to_i64(order.version, "version")?;
    let history = history_len(order)?;
    let exists: Option<i64> = conn
        .prepare_cached("SELECT version FROM orders WHERE id = ?1 OR order_number = ?2")
        .and_then(|mut s| {
            s.query_row(params![id, order.number.as_str()], |r| r.get(0))
                .optional()
        })
        .map_err(storage)?;
    if let Some(found) = exists {
        return Err(OmsError::Conflict {
            entity: format!("order {}", order.number),
            expected: 0,
            found: to_u64(found, "version")?,
        });
    }
    conn.prepare_cached(
        "INSERT INTO orders (id, order_number, user_id, status, currency, total_amount,
                             version, shipping_address, billing_address, created_at,
                             updated_at, document, history_len, lines_digest)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )
    .and_then(|mut s| {
        s.execute(params![
            id,
            order.number.as_str(),
            order.customer.id.as_str(),
            order.status.as_str(),
            order.currency.code(),
            total,
            version,
            ship,
            bill,
            order.created_at.0,
            order.updated_at.0,
            doc,
            history,
            lines_digest(order),
        ])
    })
    .map_err(storage)?;
    Ok(())
}

/// Insert the row of a new `order` with its encoded columns left empty, claiming its id and
/// number for a batch that writes the whole row at its commit; `Conflict` when either is taken.
fn claim_order_row(conn: &Connection, order: &Order) -> OmsResult<()> {
    let empty = rusqlite::types::Value::Text(String::new());
    insert_order_row(
        conn,
        order,
        (String::new(), String::new(), String::new(), empty),
    )
}

/// Rewrite an existing order row with `order` and its bookkeeping.
fn write_order_row(conn: &Connection, order: &Order, lines_digest: i64) -> OmsResult<()> {
    update_order_row(conn, order, order_row_values(order)?, lines_digest)
}

/// The encoded columns of an order row ([`order_row_values`]).
type RowValues = (String, String, String, rusqlite::types::Value);

/// Rewrite an existing order row with `order`, its columns already encoded.
fn update_order_row(
    conn: &Connection,
    order: &Order,
    (total, ship, bill, doc): RowValues,
    lines_digest: i64,
) -> OmsResult<()> {
    let (id, version) = (
        to_i64(order.id, "order id")?,
        to_i64(order.version, "version")?,
    );
    let history = history_len(order)?;
    conn.prepare_cached(
        "UPDATE orders SET status = ?2, total_amount = ?3, version = ?4,
                shipping_address = ?5, billing_address = ?6, updated_at = ?7,
                document = ?8, history_len = ?9, lines_digest = ?10
         WHERE id = ?1",
    )
    .and_then(|mut s| {
        s.execute(params![
            id,
            order.status.as_str(),
            total,
            version,
            ship,
            bill,
            order.updated_at.0,
            doc,
            history,
            lines_digest,
        ])
    })
    .map_err(storage)?;
    Ok(())
}

impl SqliteStore {
    /// [`OrderStore::update_order`] inside an open batch: the same checks; the audit, outbox and
    /// idempotency rows are held and the order row deferred to the batch's commit, so an order
    /// updated many times in a batch is serialized once.
    fn update_in_batch(
        &self,
        conn: &Connection,
        order: Order,
        expected_version: u64,
        events: Vec<Event>,
        idempotency: Option<Keyed<'_>>,
        encoded: Option<RowValues>,
    ) -> OmsResult<()> {
        let pending = self.deferred()?.get(&order.id).map(Prior::pending);
        let prior = match pending {
            Some(prior) => prior,
            None => Prior::stored(Stored::read(conn, &order)?),
        };
        self.keep_update(order, expected_version, prior, events, idempotency, encoded)
    }

    /// Check an update of `order` against its newest version (`prior`), then hold its audit,
    /// outbox and idempotency rows and defer its row to the commit.
    fn keep_update(
        &self,
        order: Order,
        expected_version: u64,
        prior: Prior,
        events: Vec<Event>,
        idempotency: Option<Keyed<'_>>,
        encoded: Option<RowValues>,
    ) -> OmsResult<()> {
        let Prior {
            stored,
            rewrite_pending,
            new,
        } = prior;
        stored.admit(&order, expected_version)?;
        // Checked: from here on nothing can refuse the write, so it needs no savepoint.
        let digest = lines_digest(&order);
        self.held()?.hold(
            &order,
            stored.history_len..order.history.len().max(stored.history_len),
            events,
            idempotency,
        );
        self.deferred()?.insert(Deferred {
            order,
            lines_digest: digest,
            rewrite_items: rewrite_pending || stored.lines_digest != Some(digest),
            new,
            encoded,
        });
        Ok(())
    }

    /// [`OrderStore::insert_order`] inside an open batch: the row goes in now (so its id and
    /// number are taken) with its encoded columns left empty; like an update, the whole row,
    /// its line rows and the held audit, outbox and idempotency rows are written at the commit.
    /// One statement writes, so no savepoint is needed.
    fn insert_in_batch(
        &self,
        conn: &Connection,
        order: Order,
        events: Vec<Event>,
        idempotency: Option<Keyed<'_>>,
        encoded: Option<RowValues>,
    ) -> OmsResult<()> {
        claim_order_row(conn, &order)?;
        self.keep_insert(order, events, idempotency, false, encoded)
    }

    /// Hold a new order's audit, outbox and idempotency rows and defer its whole row (and its
    /// line rows) to the commit; `new` when its row is not in the database yet.
    fn keep_insert(
        &self,
        order: Order,
        events: Vec<Event>,
        idempotency: Option<Keyed<'_>>,
        new: bool,
        encoded: Option<RowValues>,
    ) -> OmsResult<()> {
        self.held()?
            .hold(&order, 0..order.history.len(), events, idempotency);
        self.deferred()?.insert(Deferred {
            lines_digest: lines_digest(&order),
            order,
            rewrite_items: true,
            new,
            encoded,
        });
        Ok(())
    }

    /// Read one order's document by a cached statement keyed on `sql`'s single parameter,
    /// reusing the decoded copy when its version is still the stored one.
    fn load(
        &self,
        sql_version: &str,
        sql_document: &str,
        key: &dyn rusqlite::ToSql,
        missing: &dyn Fn() -> String,
    ) -> OmsResult<Order> {
        let conn = self.lock()?;
        self.load_on(&conn, sql_version, sql_document, key, missing)
    }

    /// [`SqliteStore::load`] on `conn` (the writing connection, or the reading one of a
    /// pipelined batch).
    fn load_on(
        &self,
        conn: &Connection,
        sql_version: &str,
        sql_document: &str,
        key: &dyn rusqlite::ToSql,
        missing: &dyn Fn() -> String,
    ) -> OmsResult<Order> {
        let found: Option<(i64, i64)> = conn
            .prepare_cached(sql_version)
            .and_then(|mut s| {
                s.query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(storage)?;
        let Some((id, version)) = found else {
            return Err(OmsError::OrderNotFound { order: missing() });
        };
        let (id, version) = (to_u64(id, "order id")?, to_u64(version, "version")?);
        if let Some(row) = self.deferred()?.get(&id) {
            return Ok(row.order.clone());
        }
        if let Some((v, order)) = self.decoded()?.get(&id) {
            if *v == version {
                return Ok(order.clone());
            }
        }
        let order = conn
            .prepare_cached(sql_document)
            .map_err(storage)
            .and_then(|mut s| {
                let mut rows = s.query([key]).map_err(storage)?;
                match rows.next().map_err(storage)? {
                    Some(row) => order_from_column(row.get_ref(0).map_err(storage)?),
                    None => Err(storage("order row vanished while reading")),
                }
            })?;
        if order.version == version {
            self.remember(order.clone())?;
        }
        Ok(order)
    }
}

/// The `data_version` of `conn`: it changes when another connection commits.
fn data_version(conn: &Connection) -> OmsResult<i64> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
        .map_err(storage)
}

/// Refuse to write on `conn` when another connection committed since `expected` was read.
fn check_data_version(conn: &Connection, expected: i64) -> OmsResult<()> {
    let found = data_version(conn)?;
    if found != expected {
        return Err(OmsError::Conflict {
            entity: "database (another connection wrote between pipelined batches)".into(),
            expected: u64::try_from(expected).unwrap_or_default(),
            found: u64::try_from(found).unwrap_or_default(),
        });
    }
    Ok(())
}

/// Commit a sealed pipelined batch on `conn` (the commit thread's work): its new order rows
/// first (the line and audit rows refer to them), then its inventory rows, its held rows in
/// the order their operations ran, and the rows of the orders it updated. Nothing is written
/// if another connection committed since this store's last commit (`expected`).
fn commit_sealed(conn: &Connection, sealed: &Sealed, expected: i64) -> OmsResult<()> {
    atomically(conn, true, &|| {}, |conn| {
        write_sealed(conn, sealed, expected)
    })
}

fn write_sealed(conn: &Connection, sealed: &Sealed, expected: i64) -> OmsResult<()> {
    check_data_version(conn, expected)?;
    // Every order's columns are encoded first: an idempotency record that responds with an
    // order as the batch leaves it stores that same document.
    let values = sealed
        .orders
        .iter()
        .map(|(id, row)| Ok((*id, (row, order_row_values(&row.order)?))))
        .collect::<OmsResult<BTreeMap<u64, (&Deferred, RowValues)>>>()?;
    let known = |order: &Order| {
        values
            .get(&order.id)
            .filter(|(row, _)| row.order == *order)
            .map(|(_, columns)| columns.3.clone())
    };
    let audit = sealed.held.audit_entries(&sealed.orders)?;
    let keys = sealed.held.key_records();
    // This thread is already the second core's work: no further threads for the encoding.
    let encoded = encode_rows(&audit, sealed.held.events(), &keys, &known, false)?;
    let (new, changed): (Vec<_>, Vec<_>) = values.into_values().partition(|(row, _)| row.new);
    for (row, columns) in new {
        insert_order_row(conn, &row.order, columns)?;
        write_items(conn, &row.order)?;
    }
    sealed.overlay.write_to(&mut SqliteLedger { conn })?;
    insert_encoded(conn, &audit, sealed.held.events(), &keys, encoded)?;
    for (row, columns) in changed {
        update_order_row(conn, &row.order, columns, row.lines_digest)?;
        if row.rewrite_items {
            write_items(conn, &row.order)?;
        }
    }
    Ok(())
}

impl SqliteStore {
    /// Pipeline this store's batches: [`SqliteStore::commit_batch`] hands the batch to a thread
    /// that commits it, and returns at once, so the next batch runs while the previous one is
    /// written (on a machine with two cores, the writing mostly costs no time at all). Each
    /// batch still commits whole or not at all, and batches commit in order.
    ///
    /// While a commit runs, the next batch reads the rows it has not touched through a second,
    /// read-only connection, and the rows of the batch being committed from memory; it takes
    /// the write lock only when its own commit starts. So that nothing read that way can be
    /// stale, no other connection may write to the database meanwhile: a commit that finds
    /// another connection has committed since this store's previous commit is refused with
    /// [`OmsError::Conflict`], and so is the batch built on top of it.
    ///
    /// A commit's outcome is reported by the next call that needs the writing connection: the
    /// next [`SqliteStore::commit_batch`], any read or write outside a batch,
    /// [`SqliteStore::wait_for_commit`], and reads a pipelined batch cannot answer from memory
    /// and the read-only connection (order lists, the outbox), which first wait for the commit
    /// and then continue the batch as an ordinary one. Until it is reported, a batch is not
    /// known to be durable. A third connection, on a thread of its own, copies committed WAL
    /// frames back into the database file after each commit (a passive checkpoint), so the
    /// commit that crosses the automatic checkpoint finds little left to copy. Needs a database
    /// file (an in-memory database has no second connection), and is refused with group
    /// commit on.
    pub fn pipeline_batches(&self) -> OmsResult<()> {
        if self.group.enabled() {
            return Err(OmsError::invalid(
                "pipeline",
                "group commit is on: every write already shares its commit with concurrent ones",
            ));
        }
        let open = {
            let p = self.pipeline()?;
            p.open || p.continued
        };
        let conn = self.lock()?;
        if open || !conn.is_autocommit() {
            return Err(OmsError::invalid(
                "pipeline",
                "a batch is open: commit or roll it back first",
            ));
        }
        let Some(path) = conn.path().filter(|p| !p.is_empty()).map(str::to_owned) else {
            return Err(OmsError::invalid(
                "pipeline",
                "pipelined batches need a database file: an in-memory database has no second connection to read through",
            ));
        };
        let reader = Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(storage)?;
        reader
            .busy_timeout(StdDuration::from_secs(10))
            .map_err(storage)?;
        reader.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        reader
            .execute_batch(&format!("PRAGMA cache_size = -{CACHE_KIB};"))
            .map_err(storage)?;
        let version = data_version(&conn)?;
        drop(conn);
        *self.reader_slot()? = Some(reader);
        let mut p = self.pipeline()?;
        if p.checkpoint.is_none() {
            let (wake, thread) =
                crate::pipeline::checkpointer(Connection::open(&path).map_err(storage)?)
                    .map_err(storage)?;
            p.checkpoint = Some(wake);
            p.checkpointer = Some(thread);
        }
        p.enabled = true;
        p.data_version = version;
        Ok(())
    }

    /// Whether batches are pipelined ([`SqliteStore::pipeline_batches`]).
    pub fn pipelined(&self) -> OmsResult<bool> {
        Ok(self.pipeline()?.enabled)
    }

    /// Wait for the pipelined commit still running, if any: `Ok` once every batch committed so
    /// far is durable, or the error of the one that failed (reported once).
    pub fn wait_for_commit(&self) -> OmsResult<()> {
        self.settle()
    }

    pub(crate) fn pipeline(&self) -> OmsResult<MutexGuard<'_, Pipeline>> {
        self.pipeline
            .lock()
            .map_err(|_| storage("sqlite pipeline lock poisoned"))
    }

    fn reader_slot(&self) -> OmsResult<MutexGuard<'_, Option<Connection>>> {
        self.reader
            .lock()
            .map_err(|_| storage("sqlite reading connection lock poisoned"))
    }

    /// Run `f` on the read-only connection of pipelined batches.
    pub(crate) fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> OmsResult<T>,
    ) -> OmsResult<T> {
        let slot = self.reader_slot()?;
        let conn = slot
            .as_ref()
            .ok_or_else(|| storage("pipelined batches have no reading connection"))?;
        f(conn)
    }

    /// The batch whose commit is running, if any.
    pub(crate) fn sealed(&self) -> OmsResult<Option<Arc<Sealed>>> {
        Ok(self.pipeline()?.sealed.clone())
    }

    /// Whether a pipelined batch is open (an error if it was lost with a failed commit).
    pub(crate) fn in_pipelined_batch(&self) -> OmsResult<bool> {
        let p = self.pipeline()?;
        if !p.open {
            return Ok(false);
        }
        p.check()?;
        Ok(true)
    }

    /// Wait for the pipelined commit still running, if any, and take in its outcome: on
    /// success its orders join the decoded ones; on failure the open batch (built on it) is
    /// lost, and the error is returned.
    fn settle(&self) -> OmsResult<()> {
        let Some(handle) = self.pipeline()?.in_flight.take() else {
            return Ok(());
        };
        let outcome = handle
            .join()
            .unwrap_or_else(|_| Err(storage("the thread committing a pipelined batch panicked")));
        let sealed = self.pipeline()?.sealed.take();
        match outcome {
            Ok(()) => match sealed.and_then(|s| Arc::try_unwrap(s).ok()) {
                Some(sealed) => self.remember_committed(sealed.orders),
                None => Ok(()),
            },
            Err(e) => {
                self.lose_open_batch(&e)?;
                Err(e)
            }
        }
    }

    /// A pipelined commit failed (or found another writer): forget what was read on top of
    /// it, start over from the database's `data_version`, and mark an open pipelined batch
    /// as lost.
    fn lose_open_batch(&self, e: &OmsError) -> OmsResult<()> {
        self.decoded()?.clear();
        let version = data_version(&*self.writer()?)?;
        let open = {
            let mut p = self.pipeline()?;
            p.data_version = version;
            p.numbers.clear();
            if p.open {
                p.failed = Some(e.to_string());
            }
            p.open
        };
        if open {
            self.forget_rows()?;
        }
        Ok(())
    }

    /// Before a read a pipelined batch cannot answer from memory: wait for the commit still
    /// running and continue the batch as an ordinary one (take the write lock, insert the
    /// rows of the orders it created so far).
    fn leave_pipeline(&self) -> OmsResult<()> {
        // Between two of the batch's writes, which may come from other threads.
        let Some(_op) = self.pipelined_op()? else {
            return Ok(());
        };
        self.settle()?;
        let conn = self.writer()?;
        begin_transaction(&conn, "BEGIN IMMEDIATE", &|| {})?;
        let expected = self.pipeline()?.data_version;
        let claimed = check_data_version(&conn, expected).and_then(|()| {
            for row in self.deferred()?.bookkeeping_mut().filter(|row| row.new) {
                claim_order_row(&conn, &row.order)?;
                row.new = false;
            }
            Ok(())
        });
        if let Err(e) = claimed {
            let _ = exec(&conn, "ROLLBACK");
            drop(conn);
            self.lose_open_batch(&e)?;
            return Err(e);
        }
        let mut p = self.pipeline()?;
        p.open = false;
        p.continued = true;
        p.numbers.clear();
        Ok(())
    }

    fn op(&self) -> OmsResult<MutexGuard<'_, ()>> {
        self.op
            .lock()
            .map_err(|_| storage("sqlite pipelined write lock poisoned"))
    }

    /// When a pipelined batch is open: the lock a write of that batch holds while it runs, so
    /// the batch's writes run one at a time (a write reads rows, checks them and changes them:
    /// two at once could both pass a check only one should). `None` when no pipelined batch is
    /// open once the lock is held: a batch sealed, rotated or continued as an ordinary one
    /// while this write waited is never written into. An error if the open batch was lost with
    /// the commit before it.
    pub(crate) fn pipelined_op(&self) -> OmsResult<Option<MutexGuard<'_, ()>>> {
        if !self.pipeline()?.open {
            return Ok(None);
        }
        let op = self.op()?;
        Ok(self.in_pipelined_batch()?.then_some(op))
    }

    /// Seal the open pipelined batch and start its commit on a thread of its own. With
    /// `reopen` the batch stays open throughout, as the next one: the write lock is held from
    /// the start, so writes from other threads wait and land in one batch or the next.
    fn commit_pipelined(&self, reopen: bool) -> OmsResult<()> {
        let rotating = if reopen { Some(self.op()?) } else { None };
        let settled = self.settle();
        let failed = {
            let mut p = self.pipeline()?;
            if !reopen || settled.is_err() || p.failed.is_some() {
                p.open = false;
            }
            p.failed.take()
        };
        settled?;
        if let Some(reason) = failed {
            self.forget_batch()?;
            return Err(storage(format!(
                "this batch is lost: the batch before it failed to commit ({reason})"
            )));
        }
        let op = match rotating {
            Some(op) => op,
            None => self.op()?,
        };
        let mut p = self.pipeline()?;
        let sealed = Arc::new(Sealed {
            orders: std::mem::take(&mut *self.deferred()?),
            held: std::mem::take(&mut *self.held()?),
            overlay: std::mem::take(&mut *self.overlay()?),
            numbers: std::mem::take(&mut p.numbers),
        });
        let conn = Arc::clone(&self.conn);
        let expected = p.data_version;
        let rows = Arc::clone(&sealed);
        let checkpoint = p.checkpoint.clone();
        let (holding, held) = std::sync::mpsc::sync_channel::<()>(1);
        let handle = std::thread::Builder::new()
            .name("oms-sqlite-commit".into())
            .spawn(move || {
                let conn = conn
                    .lock()
                    .map_err(|_| storage("sqlite connection lock poisoned"))?;
                // The caller waits for this: a read on the connection after the batch call
                // returned comes after the commit, never before it.
                let _ = holding.send(());
                commit_sealed(&conn, &rows, expected)?;
                if let Some(wake) = checkpoint {
                    // The checkpointer is gone only if the store is being dropped.
                    let _ = wake.send(());
                }
                Ok(())
            })
            .map_err(storage)?;
        p.sealed = Some(sealed);
        p.in_flight = Some(handle);
        drop(p);
        drop(op);
        // An error here means the thread ended without the connection; its outcome says why.
        let _ = held.recv();
        Ok(())
    }

    /// [`OrderStore::insert_order`] in a pipelined batch: the id and number are checked against
    /// the database (read-only connection), the batch being committed and this one; the row
    /// is inserted at the commit.
    fn insert_pipelined(
        &self,
        order: Order,
        events: Vec<Event>,
        idempotency: Option<Keyed<'_>>,
    ) -> OmsResult<()> {
        let taken = |found: u64| OmsError::Conflict {
            entity: format!("order {}", order.number),
            expected: 0,
            found,
        };
        if let Some(row) = self.deferred()?.get(&order.id) {
            return Err(taken(row.order.version));
        }
        let sealed = self.sealed()?;
        if let Some(row) = sealed.as_ref().and_then(|s| s.orders.get(&order.id)) {
            return Err(taken(row.order.version));
        }
        let number_new = |numbers: &HashSet<String>| numbers.contains(order.number.as_str());
        if number_new(&self.pipeline()?.numbers)
            || sealed.as_ref().is_some_and(|s| number_new(&s.numbers))
        {
            return Err(taken(1));
        }
        let id = to_i64(order.id, "order id")?;
        let stored: Option<i64> = self.with_reader(|conn| {
            conn.prepare_cached("SELECT version FROM orders WHERE id = ?1 OR order_number = ?2")
                .and_then(|mut s| {
                    s.query_row(params![id, order.number.as_str()], |r| r.get(0))
                        .optional()
                })
                .map_err(storage)
        })?;
        if let Some(found) = stored {
            return Err(taken(to_u64(found, "version")?));
        }
        self.pipeline()?.numbers.insert(order.number.to_string());
        self.keep_insert(order, events, idempotency, true, None)
    }

    /// [`OrderStore::update_order`] in a pipelined batch: checked against the newest version
    /// among this batch, the batch being committed and the database.
    fn update_pipelined(
        &self,
        order: Order,
        expected_version: u64,
        events: Vec<Event>,
        idempotency: Option<Keyed<'_>>,
    ) -> OmsResult<()> {
        let pending = self.deferred()?.get(&order.id).map(Prior::pending);
        let prior = if let Some(prior) = pending {
            prior
        } else {
            let sealed = self.sealed()?;
            match sealed.as_ref().and_then(|s| s.orders.get(&order.id)) {
                Some(row) => Prior::stored(Stored::of(row)),
                None => Prior::stored(self.with_reader(|conn| Stored::read(conn, &order))?),
            }
        };
        self.keep_update(order, expected_version, prior, events, idempotency, None)
    }

    /// [`OrderStore::order`] in a pipelined batch: this batch's copy, the committing batch's,
    /// else the database's through the read-only connection.
    fn order_pipelined(&self, id: u64, key: i64) -> OmsResult<Order> {
        if let Some(row) = self.deferred()?.get(&id) {
            return Ok(row.order.clone());
        }
        if let Some(row) = self.sealed()?.as_ref().and_then(|s| s.orders.get(&id)) {
            return Ok(row.order.clone());
        }

        self.with_reader(|conn| {
            self.load_on(
                conn,
                "SELECT id, version FROM orders WHERE id = ?1",
                "SELECT document FROM orders WHERE id = ?1",
                &key,
                &|| id.to_string(),
            )
        })
    }

    /// [`OrderStore::idempotency`] in a pipelined batch: the stored record, else the committing
    /// batch's, else this batch's (the oldest record of a key wins).
    fn idempotency_pipelined(&self, key: &str) -> OmsResult<Option<IdempotencyRecord>> {
        if let Some(stored) = self.with_reader(|conn| stored_key(conn, key))? {
            return Ok(Some(stored));
        }
        if let Some(sealed) = self.sealed()?.as_ref() {
            if let Some(record) = sealed.held.key(key)? {
                return Ok(Some(record));
            }
        }
        self.held()?.key(key)
    }
}

/// The stored idempotency record of `key`.
fn stored_key(conn: &Connection, key: &str) -> OmsResult<Option<IdempotencyRecord>> {
    conn.prepare_cached("SELECT fingerprint, response FROM idempotency_keys WHERE key = ?1")
        .and_then(|mut s| {
            s.query_row(params![key], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, rusqlite::types::Value>(1)?,
                ))
            })
            .optional()
        })
        .map_err(storage)?
        .map(|(fingerprint, response)| {
            Ok(IdempotencyRecord {
                fingerprint,
                response: Response::Json(response_from_column((&response).into())?),
            })
        })
        .transpose()
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // A commit still running finishes before the connection closes; its outcome has no one
        // left to hear it (see `SqliteStore::wait_for_commit`).
        if let Ok(p) = self.pipeline.get_mut() {
            if let Some(handle) = p.in_flight.take() {
                let _ = handle.join();
            }
            // Closing its channel ends the checkpointer after the checkpoint under way.
            p.checkpoint = None;
            if let Some(thread) = p.checkpointer.take() {
                let _ = thread.join();
            }
        }
        // The writing connection closes last: the last connection to close checkpoints the
        // WAL and removes it, which a read-only one cannot do.
        if let Ok(reader) = self.reader.get_mut() {
            *reader = None;
        }
    }
}

impl OrderStore for SqliteStore {
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
        if let Some(_op) = self.pipelined_op()? {
            return self.insert_pipelined(order, events, idempotency);
        }
        let encoded = self.encode_for_group(&order)?;
        let written = self.write(&|| {}, |conn| {
            if !conn.is_autocommit() {
                self.insert_in_batch(conn, order, events, idempotency, encoded)?;
                return Ok(None);
            }
            let values = order_row_values(&order)?;
            atomically(conn, true, &|| {}, |conn| {
                insert_order_row(conn, &order, values)?;
                write_children(conn, &order, &events, 0, true, idempotency)
            })?;
            Ok(Some(order))
        })?;
        match written {
            Some(order) => self.remember(order),
            None => Ok(()),
        }
    }

    fn update_order_owned(
        &self,
        order: Order,
        expected_version: u64,
        events: Vec<Event>,
        idempotency: Option<Keyed<'_>>,
    ) -> OmsResult<()> {
        if let Some(_op) = self.pipelined_op()? {
            return self.update_pipelined(order, expected_version, events, idempotency);
        }
        let encoded = self.encode_for_group(&order)?;
        let written = self.write(&|| {}, |conn| {
            if !conn.is_autocommit() {
                // In a batch or a shared group: the row is written at the commit.
                self.update_in_batch(conn, order, expected_version, events, idempotency, encoded)?;
                return Ok(None);
            }
            let digest = lines_digest(&order);
            atomically(conn, true, &|| {}, |conn| {
                let stored = Stored::read(conn, &order)?;
                stored.admit(&order, expected_version)?;
                write_order_row(conn, &order, digest)?;
                write_children(
                    conn,
                    &order,
                    &events,
                    stored.history_len,
                    stored.lines_digest != Some(digest),
                    idempotency,
                )
            })?;
            Ok(Some(order))
        })?;
        match written {
            Some(order) => self.remember(order),
            None => Ok(()),
        }
    }

    fn order(&self, id: u64) -> OmsResult<Order> {
        let Ok(key) = i64::try_from(id) else {
            return Err(OmsError::OrderNotFound {
                order: id.to_string(),
            });
        };
        if self.in_pipelined_batch()? {
            return self.order_pipelined(id, key);
        }
        {
            // Inside a batch or a group a deferred row is the newest version (this connection
            // holds the write lock), so no statement is needed to find it.
            let _conn = self.lock()?;
            if let Some(row) = self.deferred()?.get(&id) {
                return Ok(row.order.clone());
            }
        }
        self.load(
            "SELECT id, version FROM orders WHERE id = ?1",
            "SELECT document FROM orders WHERE id = ?1",
            &key,
            &|| id.to_string(),
        )
    }

    fn order_by_number(&self, number: &str) -> OmsResult<Order> {
        self.leave_pipeline()?;
        self.load(
            "SELECT id, version FROM orders WHERE order_number = ?1",
            "SELECT document FROM orders WHERE order_number = ?1",
            &number,
            &|| number.to_owned(),
        )
    }

    fn order_ids(&self) -> OmsResult<Vec<u64>> {
        self.leave_pipeline()?;
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached("SELECT id FROM orders ORDER BY id")
            .map_err(storage)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, i64>(0))
            .map_err(storage)?;
        rows.map(|r| r.map_err(storage).and_then(|v| to_u64(v, "order id")))
            .collect()
    }

    fn orders_after(&self, after: u64, limit: usize) -> OmsResult<Vec<Order>> {
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.leave_pipeline()?;
        // Each entry: the order already decoded (`Ok`), or its document column still to unpack
        // and parse.
        let slots: Vec<Result<Order, rusqlite::types::Value>> = {
            let conn = self.lock()?;
            let deferred = self.deferred()?;
            let decoded = self.decoded()?;
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, version, document FROM orders WHERE id > ?1 ORDER BY id LIMIT ?2",
                )
                .map_err(storage)?;
            let mut rows = stmt.query(params![after, limit]).map_err(storage)?;
            let mut slots = Vec::new();
            while let Some(row) = rows.next().map_err(storage)? {
                let id = to_u64(row.get(0).map_err(storage)?, "order id")?;
                let version = to_u64(row.get(1).map_err(storage)?, "version")?;
                // A batch's deferred row is newer than the table's; a decoded copy of the
                // stored version saves parsing the document again.
                slots.push(if let Some(d) = deferred.get(&id) {
                    Ok(d.order.clone())
                } else if let Some((_, order)) = decoded.get(&id).filter(|(v, _)| *v == version) {
                    Ok(order.clone())
                } else {
                    // Copied out as stored: decompressing, like parsing, is done apart.
                    Err(row.get(2).map_err(storage)?)
                });
            }
            slots
        };
        // Unpacking and parsing are pure work, done without the connection and spread over
        // the cores.
        let parsed = crate::parallel::map(&slots, |slot| match slot {
            Ok(_) => Ok(None),
            Err(column) => order_from_column(column.into()).map(Some),
        });
        slots
            .into_iter()
            .zip(parsed)
            .map(|(slot, parsed)| match (slot, parsed?) {
                (_, Some(order)) | (Ok(order), None) => Ok(order),
                (Err(_), None) => Err(storage("a parsed document went missing")),
            })
            .collect()
    }

    fn order_ids_with_status(&self, status: OrderStatus) -> OmsResult<Vec<u64>> {
        let query = |conn: &Connection| -> OmsResult<std::collections::BTreeSet<u64>> {
            let mut stmt = conn
                .prepare_cached("SELECT id FROM orders WHERE status = ?1 ORDER BY id")
                .map_err(storage)?;
            let rows = stmt
                .query_map(params![status.as_str()], |r| r.get::<_, i64>(0))
                .map_err(storage)?;
            rows.map(|r| r.map_err(storage).and_then(|v| to_u64(v, "order id")))
                .collect()
        };
        // Rows a batch has deferred still show their old status: their newest one decides,
        // the batch being committed's first, then the open batch's.
        let newest = |ids: &mut std::collections::BTreeSet<u64>, rows: &DeferredRows| {
            // Drop the few listed ids whose newer row left the status (a look-up each), then
            // add the rows in it (from the status index, no pass over the other rows).
            let statuses = rows.statuses();
            ids.retain(|id| statuses.get(id).is_none_or(|s| *s == status));
            ids.extend(rows.in_status(status));
        };
        let mut ids = if self.in_pipelined_batch()? {
            let sealed = self.sealed()?;
            let mut ids = self.with_reader(query)?;
            if let Some(sealed) = &sealed {
                newest(&mut ids, &sealed.orders);
            }
            ids
        } else {
            query(&*self.lock()?)?
        };
        newest(&mut ids, &*self.deferred()?);
        Ok(ids.into_iter().collect())
    }

    fn pending_events(&self, limit: usize) -> OmsResult<Vec<Event>> {
        self.leave_pipeline()?;
        let conn = self.lock()?;
        self.write_held(&conn)?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, order_id, version, name, at, data FROM events_outbox
                 WHERE seq > (SELECT published_upto FROM outbox_cursor WHERE id = 1)
                 ORDER BY seq LIMIT ?1",
            )
            .map_err(storage)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })
            .map_err(storage)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(storage)?;
        drop(stmt);
        drop(conn);
        // Parsing the payloads is pure work, done without the connection on every core.
        let data = crate::parallel::map(&rows, |row| event_data_from_json(&row.5));
        rows.into_iter()
            .zip(data)
            .map(|((seq, order_id, version, name, at, _), data)| {
                Ok(Event {
                    seq: to_u64(seq, "seq")?,
                    order_id: to_u64(order_id, "order id")?,
                    version: to_u64(version, "version")?,
                    name,
                    at: oms_core::time::Timestamp(at),
                    data: data?,
                })
            })
            .collect()
    }

    fn ack_events(&self, up_to: u64) -> OmsResult<()> {
        self.leave_pipeline()?;
        self.write(&|| {}, |conn| {
            self.write_held(conn)?;
            // Never past the newest event: a later event must not count as published already.
            conn.prepare_cached(
                "UPDATE outbox_cursor SET published_upto = MAX(published_upto,
                     MIN(?1, (SELECT COALESCE(MAX(seq), 0) FROM events_outbox)))
                 WHERE id = 1",
            )
            .and_then(|mut s| s.execute(params![i64::try_from(up_to).unwrap_or(i64::MAX)]))
            .map_err(storage)?;
            Ok(())
        })
    }

    fn idempotency(&self, key: &str) -> OmsResult<Option<IdempotencyRecord>> {
        if let Some(_op) = self.pipelined_op()? {
            // Between two writes: a batch is never cut while its rows are looked through.
            return self.idempotency_pipelined(key);
        }
        let conn = self.lock()?;
        // A stored record is older than any the open transaction holds, so it wins.
        match stored_key(&conn, key)? {
            Some(stored) => Ok(Some(stored)),
            None if conn.is_autocommit() => Ok(None),
            None => self.held()?.key(key),
        }
    }

    fn put_idempotency(&self, key: &str, record: &IdempotencyRecord) -> OmsResult<()> {
        // A record that responds with "the order written with it" needs that write.
        record.response_json()?;
        if let Some(_op) = self.pipelined_op()? {
            self.held()?.hold_key(key, record, None);
            return Ok(());
        }
        self.write(&|| {}, |conn| {
            if !conn.is_autocommit() {
                self.held()?.hold_key(key, record, None);
                return Ok(());
            }
            atomically(conn, true, &|| {}, |conn| {
                write_rows(conn, &[], &[], &[(key, record, None)])
            })
        })
    }

    fn begin_batch(&self) -> OmsResult<()> {
        SqliteStore::begin_batch(self)
    }

    fn commit_batch(&self) -> OmsResult<()> {
        SqliteStore::commit_batch(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_reopen_keeps_version() {
        let dir = std::env::temp_dir().join(format!("oms-sqlite-mig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.db");
        let _ = std::fs::remove_file(&path);
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap() as usize, MIGRATIONS.len());
        drop(s);
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap() as usize, MIGRATIONS.len());
        let mode: String = s
            .lock()
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_wrap)]
pub(crate) mod batch_tests {
    use super::*;
    use oms_core::events::names;
    use oms_core::lifecycle::Actor;
    use oms_core::money::{Currency, Money};
    use oms_core::order::{AddressInput, Customer, LineItemInput, OrderDraft};
    use oms_core::time::{ManualClock, SequentialIds, Timestamp};

    /// A fresh database path in a directory of its own, named for the test.
    pub(crate) fn temp_db(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("oms-sqlite-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("t.db")
    }

    /// Two connections (stores) on one fresh database file named for the test.
    fn two_connections(name: &str) -> (SqliteStore, SqliteStore) {
        let path = temp_db(name);
        (
            SqliteStore::open(&path).unwrap(),
            SqliteStore::open(&path).unwrap(),
        )
    }

    pub(crate) fn order(ids: &SequentialIds) -> Order {
        let usd = Currency::from_code("USD").unwrap();
        let draft = OrderDraft {
            customer: Customer {
                id: "c1".into(),
                email: "c1@example.com".into(),
                name: "C One".into(),
            },
            shipping_address: AddressInput {
                name: "C One".into(),
                line1: "1 Main St".into(),
                city: "Springfield".into(),
                postal_code: "12345".into(),
                country: "US".into(),
                ..AddressInput::default()
            },
            billing_address: None,
            currency: usd,
            lines: vec![LineItemInput::new(
                "SKU-1",
                2,
                Money::parse("9.95", usd).unwrap(),
            )],
            promo_codes: vec![],
        };
        let clock = ManualClock::new(Timestamp::from_civil(2026, 5, 6, 12, 0, 0));
        Order::create(&draft, &Actor::System, &clock, ids).unwrap()
    }

    #[test]
    fn lines_digest_changes_with_every_stored_line_column() {
        let ids = SequentialIds::default();
        let base = order(&ids);
        let d = lines_digest(&base);
        assert_eq!(lines_digest(&base.clone()), d);
        let usd = base.currency;
        let changed: Vec<fn(&mut oms_core::order::LineItem, Currency)> = vec![
            |l, _| l.quantity += 1,
            |l, c| l.unit_price = Money::parse("9.96", c).unwrap(),
            |l, c| l.discount = Money::parse("1.00", c).unwrap(),
            |l, _| l.sku = oms_core::order::Sku::new("SKU-2").unwrap(),
            |l, _| l.tax_class = "reduced".into(),
            |l, _| l.line_id += 1,
        ];
        for (i, change) in changed.iter().enumerate() {
            let mut o = base.clone();
            change(&mut o.lines[0], usd);
            assert_ne!(lines_digest(&o), d, "change {i}");
            assert_eq!(lines_digest(&o), stored_lines_digest(&o), "change {i}");
        }
        assert_eq!(d, stored_lines_digest(&base));
    }

    /// The digest as databases already hold it: the loop must keep giving these values.
    fn stored_lines_digest(order: &Order) -> i64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for b in bytes.iter().chain(&[0xff]) {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        for l in &order.lines {
            eat(&l.line_id.to_le_bytes());
            eat(l.sku.as_str().as_bytes());
            eat(&l.quantity.to_le_bytes());
            eat(&l.unit_price.amount().serialize());
            eat(&l.discount.amount().serialize());
            eat(l.tax_class.as_bytes());
        }
        i64::from_le_bytes(h.to_le_bytes())
    }

    /// Make the database refuse (abort) the insert of any outbox event named `refused`.
    pub(crate) fn refuse_events_named_refused(store: &SqliteStore) {
        store
            .lock()
            .unwrap()
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON events_outbox
                 WHEN NEW.name = 'refused' BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
            .unwrap();
    }

    /// The single integer `sql` returns on `store`'s connection.
    pub(crate) fn count(store: &SqliteStore, sql: &str) -> i64 {
        store
            .lock()
            .unwrap()
            .query_row(sql, [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_batch_is_invisible_until_committed_and_gone_when_rolled_back() {
        let (a, b) = two_connections("batch-visibility");
        let ids = SequentialIds::default();
        let first = order(&ids);
        a.begin_batch().unwrap();
        assert!(a.in_batch().unwrap());
        a.insert_order(&first, &[], None).unwrap();
        // The batch reads its own writes; another connection does not see them yet.
        assert_eq!(a.order(first.id).unwrap(), first);
        assert_eq!(b.order(first.id).unwrap_err().code(), "order_not_found");
        a.commit_batch().unwrap();
        assert!(!a.in_batch().unwrap());
        assert_eq!(b.order(first.id).unwrap(), first);

        let second = order(&ids);
        a.begin_batch().unwrap();
        a.insert_order(&second, &[], None).unwrap();
        a.rollback_batch().unwrap();
        assert_eq!(a.order(second.id).unwrap_err().code(), "order_not_found");
        assert_eq!(b.order_ids().unwrap(), vec![first.id]);
    }

    #[test]
    fn an_order_updated_many_times_in_a_batch_is_written_once_whole() {
        let (a, b) = two_connections("batch-deferred");
        let ids = SequentialIds::default();
        let o = order(&ids);
        a.insert_order(&o, &[], None).unwrap();
        a.begin_batch().unwrap();
        let mut cur = o.clone();
        for v in 2..=5u64 {
            let mut next = cur.clone();
            next.version = v;
            next.history.push(next.history[0].clone());
            if v == 3 {
                next.status = OrderStatus::Confirmed;
            }
            let ev = Event::new(o.id, v, names::ORDER_UPDATED, o.created_at);
            a.update_order(&next, v - 1, std::slice::from_ref(&ev), None)
                .unwrap();
            // Reads and status sweeps inside the batch see the newest version.
            assert_eq!(a.order(o.id).unwrap(), next);
            assert_eq!(a.order_by_number(&o.number).unwrap(), next);
            cur = next;
        }
        let pending = OrderStatus::Pending;
        assert_eq!(
            a.order_ids_with_status(OrderStatus::Confirmed).unwrap(),
            vec![o.id]
        );
        assert!(a.order_ids_with_status(pending).unwrap().is_empty());
        // A stale write against the deferred version is refused.
        assert_eq!(
            a.update_order(&cur, 4, &[], None).unwrap_err().code(),
            "conflict"
        );
        // Until the commit the row on disk is the one before the batch.
        assert_eq!(b.order(o.id).unwrap(), o);
        a.commit_batch().unwrap();
        assert_eq!(b.order(o.id).unwrap(), cur);
        assert_eq!(
            b.order_ids_with_status(OrderStatus::Confirmed).unwrap(),
            vec![o.id]
        );
        assert_eq!(
            count(&b, "SELECT COUNT(*) FROM order_state_transitions"),
            cur.history.len() as i64
        );
        assert_eq!(
            count(&b, "SELECT history_len FROM orders"),
            cur.history.len() as i64
        );
        assert_eq!(b.pending_events(100).unwrap().len(), 4);
    }

    #[test]
    fn rows_held_in_a_batch_keep_the_order_their_writes_ran_in() {
        let (a, b) = two_connections("batch-held");
        let ids = SequentialIds::default();
        let (x, y) = (order(&ids), order(&ids));
        let record = |n: &str| IdempotencyRecord {
            fingerprint: format!("fp-{n}"),
            response: format!("{{\"n\":\"{n}\"}}").into(),
        };
        a.put_idempotency("stored", &record("stored")).unwrap();
        a.begin_batch().unwrap();
        let ev = |o: &Order, v: u64| Event::new(o.id, v, names::ORDER_UPDATED, o.created_at);
        a.insert_order(&x, &[ev(&x, 1)], Some(("kx", &record("x"))))
            .unwrap();
        a.insert_order(&y, &[ev(&y, 1)], None).unwrap();
        // x, y, x: the outbox must list them in that order.
        let mut x2 = x.clone();
        x2.version = 2;
        x2.history.push(x.history[0].clone());
        x2.lines[0].quantity = 5;
        a.update_order(&x2, 1, &[ev(&x, 2)], Some(("stored", &record("late"))))
            .unwrap();
        let mut y2 = y.clone();
        y2.version = 2;
        a.update_order(&y2, 1, &[ev(&y, 2)], Some(("kx", &record("second"))))
            .unwrap();
        a.put_idempotency("ky", &record("y")).unwrap();
        a.put_idempotency("ky", &record("y-again")).unwrap();
        // Nothing of it on disk yet, but this store's reads see it: the first record of
        // each key wins, a stored one before any held.
        assert_eq!(count(&b, "SELECT COUNT(*) FROM events_outbox"), 0);
        assert_eq!(a.idempotency("kx").unwrap(), Some(record("x")));
        assert_eq!(a.idempotency("ky").unwrap(), Some(record("y")));
        assert_eq!(a.idempotency("stored").unwrap(), Some(record("stored")));
        assert_eq!(a.idempotency("none").unwrap(), None);
        let order_of = |events: Vec<Event>| -> Vec<(u64, u64)> {
            events.iter().map(|e| (e.order_id, e.version)).collect()
        };
        assert_eq!(
            order_of(a.pending_events(10).unwrap()),
            vec![(x.id, 1), (y.id, 1), (x.id, 2), (y.id, 2)]
        );
        a.commit_batch().unwrap();
        assert_eq!(
            order_of(b.pending_events(10).unwrap()),
            vec![(x.id, 1), (y.id, 1), (x.id, 2), (y.id, 2)]
        );
        assert_eq!(b.idempotency("kx").unwrap(), Some(record("x")));
        assert_eq!(b.idempotency("ky").unwrap(), Some(record("y")));
        assert_eq!(b.idempotency("stored").unwrap(), Some(record("stored")));
        // One audit row per history entry, each order's in its order; line rows as last written.
        assert_eq!(
            count(&b, "SELECT COUNT(*) FROM order_state_transitions"),
            (x2.history.len() + y2.history.len()) as i64
        );
        assert_eq!(
            count(
                &b,
                &format!("SELECT quantity FROM order_items WHERE order_id = {}", x.id)
            ),
            5
        );
        assert_eq!(b.order(x.id).unwrap(), x2);
    }

    #[test]
    fn a_commit_refused_midway_writes_nothing_and_leaves_the_store_usable() {
        // 3 orders keep the encoding on the committing thread; 80 move it to a second one
        // (`parallel::SPLIT_FROM`): the refusal must come back the same way on both paths.
        for n in [3, 80] {
            let path = temp_db(&format!("batch-refused-{n}"));
            let store = SqliteStore::open(&path).unwrap();
            let ids = SequentialIds::default();
            let kept = order(&ids);
            store.insert_order(&kept, &[], None).unwrap();
            // The database refuses one outbox row, as a full disk or a constraint would,
            // after the stock and audit rows of the commit went in.
            refuse_events_named_refused(&store);
            store.begin_batch().unwrap();
            let mut changed = kept.clone();
            changed.version = 2;
            store.update_order(&changed, 1, &[], None).unwrap();
            for i in 0..n {
                let o = order(&ids);
                let name = if i == n - 1 {
                    "refused"
                } else {
                    names::ORDER_UPDATED
                };
                let e = Event::new(o.id, 1, name, o.created_at);
                store.insert_order(&o, &[e], None).unwrap();
            }
            let err = store.commit_batch().unwrap_err();
            assert_eq!(err.code(), "storage", "{n} orders: {err}");
            assert!(err.to_string().contains("refused"), "{n} orders: {err}");
            assert!(!store.in_batch().unwrap());
            // Nothing of the batch is stored or remembered: the update is gone, and so are the
            // new orders and every held row.
            assert_eq!(store.order(kept.id).unwrap(), kept, "{n} orders");
            assert_eq!(count(&store, "SELECT COUNT(*) FROM orders"), 1);
            assert_eq!(count(&store, "SELECT COUNT(*) FROM events_outbox"), 0);
            assert_eq!(
                count(&store, "SELECT COUNT(*) FROM order_state_transitions"),
                kept.history.len() as i64
            );
            // And the next batch commits as usual.
            store.begin_batch().unwrap();
            store.update_order(&changed, 1, &[], None).unwrap();
            store.commit_batch().unwrap();
            assert_eq!(store.order(kept.id).unwrap(), changed);
            let _ = std::fs::remove_dir_all(path.parent().unwrap());
        }
    }

    #[test]
    fn rows_held_in_a_rolled_back_batch_are_never_written() {
        let store = SqliteStore::open_in_memory().unwrap();
        let ids = SequentialIds::default();
        let o = order(&ids);
        store.begin_batch().unwrap();
        let ev = Event::new(o.id, 1, names::ORDER_UPDATED, o.created_at);
        let rec = IdempotencyRecord {
            fingerprint: "fp".into(),
            response: "{}".into(),
        };
        store
            .insert_order(&o, std::slice::from_ref(&ev), Some(("k", &rec)))
            .unwrap();
        store.rollback_batch().unwrap();
        assert!(store.held().unwrap().is_empty());
        assert_eq!(store.idempotency("k").unwrap(), None);
        assert!(store.pending_events(10).unwrap().is_empty());
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM order_state_transitions"),
            0
        );
    }

    #[test]
    fn a_rolled_back_batch_forgets_its_deferred_rows() {
        let store = SqliteStore::open_in_memory().unwrap();
        let ids = SequentialIds::default();
        let o = order(&ids);
        store.insert_order(&o, &[], None).unwrap();
        store.begin_batch().unwrap();
        let mut next = o.clone();
        next.version = 2;
        store.update_order(&next, 1, &[], None).unwrap();
        store.rollback_batch().unwrap();
        assert_eq!(store.order(o.id).unwrap(), o);
        store.update_order(&next, 1, &[], None).unwrap();
        assert_eq!(store.order(o.id).unwrap(), next);
    }

    #[test]
    fn batch_misuse_is_a_typed_error() {
        let store = SqliteStore::open_in_memory().unwrap();
        assert_eq!(store.commit_batch().unwrap_err().code(), "storage");
        store.begin_batch().unwrap();
        assert_eq!(store.begin_batch().unwrap_err().code(), "invalid_field");
        store.commit_batch().unwrap();
        // Rolling back with nothing open is harmless.
        store.rollback_batch().unwrap();
    }

    #[test]
    fn a_refused_write_inside_a_batch_rolls_back_alone() {
        let store = SqliteStore::open_in_memory().unwrap();
        let ids = SequentialIds::default();
        let o = order(&ids);
        store.begin_batch().unwrap();
        store.insert_order(&o, &[], None).unwrap();
        let mut next = o.clone();
        next.version = 2;
        let ev = Event::new(o.id, 2, names::ORDER_UPDATED, o.created_at);
        let rec = IdempotencyRecord {
            fingerprint: "f".into(),
            response: "r".into(),
        };
        // A stale write: refused, and neither its event nor its key is kept.
        let err = store
            .update_order(&next, 7, std::slice::from_ref(&ev), Some(("k", &rec)))
            .unwrap_err();
        assert_eq!(err.code(), "conflict");
        store
            .update_order(&next, 1, std::slice::from_ref(&ev), None)
            .unwrap();
        store.commit_batch().unwrap();
        assert_eq!(store.order(o.id).unwrap().version, 2);
        assert_eq!(store.idempotency("k").unwrap(), None);
        assert_eq!(store.pending_events(10).unwrap().len(), 1);
    }

    #[test]
    fn a_read_never_returns_a_version_another_connection_replaced() {
        let (a, b) = two_connections("cache");
        let ids = SequentialIds::default();
        let o = order(&ids);
        a.insert_order(&o, &[], None).unwrap();
        assert_eq!(b.order(o.id).unwrap().version, 1);
        let mut next = o.clone();
        next.version = 2;
        next.promo_codes = vec!["CHANGED".into()];
        a.update_order(&next, 1, &[], None).unwrap();
        // `b` decoded version 1 earlier; it must see version 2's content now.
        assert_eq!(b.order(o.id).unwrap(), next);
        assert_eq!(b.order_by_number(&o.number).unwrap(), next);
    }

    #[test]
    fn line_rows_and_audit_rows_follow_the_order() {
        let store = SqliteStore::open_in_memory().unwrap();
        let ids = SequentialIds::default();
        let o = order(&ids);
        store.insert_order(&o, &[], None).unwrap();
        let audit = "SELECT COUNT(*) FROM order_state_transitions";
        assert_eq!(count(&store, audit), o.history.len() as i64);
        // Same lines: no rewrite needed, still exactly the order's rows.
        let mut v2 = o.clone();
        v2.version = 2;
        store.update_order(&v2, 1, &[], None).unwrap();
        assert_eq!(count(&store, "SELECT COUNT(*) FROM order_items"), 1);
        assert_eq!(count(&store, audit), o.history.len() as i64);
        // Changed quantity: the row is rewritten.
        let mut v3 = v2.clone();
        v3.version = 3;
        v3.lines[0].quantity = 5;
        store.update_order(&v3, 2, &[], None).unwrap();
        assert_eq!(count(&store, "SELECT SUM(quantity) FROM order_items"), 5);
        // A new audit entry is appended once.
        let mut v4 = v3.clone();
        v4.version = 4;
        v4.history.push(v4.history[0].clone());
        store.update_order(&v4, 3, &[], None).unwrap();
        assert_eq!(count(&store, audit), v4.history.len() as i64);
    }

    #[test]
    fn the_cursor_migration_keeps_unpublished_events_pending() {
        let path = temp_db("migrate-v4");
        {
            // A database at schema version 3 whose consumer acknowledged 1, 2 and 4 but not 3.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE schema_version (version INTEGER PRIMARY KEY);
                 INSERT INTO schema_version VALUES (1), (2), (3);",
            )
            .unwrap();
            for m in &MIGRATIONS[..3] {
                conn.execute_batch(m).unwrap();
            }
            for (seq, published) in [(1, 1), (2, 1), (3, 0), (4, 1)] {
                conn.execute(
                    "INSERT INTO events_outbox (seq, order_id, version, name, at, data, published)
                     VALUES (?1, 7, ?1, 'order.updated', 0, '[]', ?2)",
                    params![seq, published],
                )
                .unwrap();
            }
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap() as usize, MIGRATIONS.len());
        let seqs = |s: &SqliteStore| -> Vec<u64> {
            s.pending_events(10)
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect()
        };
        // At least once: everything from the first unacknowledged event on is pending again.
        assert_eq!(seqs(&store), vec![3, 4]);
        store.ack_events(3).unwrap();
        assert_eq!(seqs(&store), vec![4]);
        // Acknowledging past the newest event covers what exists, not what comes next.
        store.ack_events(u64::MAX).unwrap();
        assert!(seqs(&store).is_empty());
        store
            .lock()
            .unwrap()
            .execute(
                "INSERT INTO events_outbox (order_id, version, name, at, data)
                 VALUES (7, 5, 'order.updated', 0, '[]')",
                [],
            )
            .unwrap();
        assert_eq!(seqs(&store), vec![5]);
        // An acknowledgement never moves the cursor back.
        store.ack_events(1).unwrap();
        assert_eq!(seqs(&store), vec![5]);
    }

    #[test]
    fn the_cursor_migration_of_an_empty_outbox_starts_at_zero() {
        let store = SqliteStore::open(":memory:").unwrap();
        assert!(store.pending_events(10).unwrap().is_empty());
        store.ack_events(u64::MAX).unwrap();
        let cursor: i64 = store
            .lock()
            .unwrap()
            .query_row("SELECT published_upto FROM outbox_cursor", [], |r| r.get(0))
            .unwrap();
        assert_eq!(cursor, 0);
    }

    #[test]
    fn the_bookkeeping_migration_counts_audit_rows_already_stored() {
        let path = temp_db("migrate-v3");
        let ids = SequentialIds::default();
        let o = order(&ids);
        {
            // A database at schema version 2 with one order and its audit rows.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE schema_version (version INTEGER PRIMARY KEY);
                 INSERT INTO schema_version VALUES (1), (2);",
            )
            .unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(MIGRATIONS[1]).unwrap();
            let (total, ship, bill, doc) = order_row_values(&o).unwrap();
            conn.execute(
                "INSERT INTO orders (id, order_number, user_id, status, currency, total_amount,
                     version, shipping_address, billing_address, created_at, updated_at, document)
                 VALUES (?1, ?2, 'c1', 'pending', 'USD', ?3, 1, ?4, ?5, 0, 0, ?6)",
                params![o.id as i64, o.number.as_str(), total, ship, bill, doc],
            )
            .unwrap();
            for _ in &o.history {
                conn.execute(
                    "INSERT INTO order_state_transitions
                     (order_id, from_state, to_state, event, reason, metadata, created_by, created_at)
                     VALUES (?1, NULL, 'pending', 'create', '', '[]', 'system', 0)",
                    params![o.id as i64],
                )
                .unwrap();
            }
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap() as usize, MIGRATIONS.len());
        let mut v2 = o.clone();
        v2.version = 2;
        store.update_order(&v2, 1, &[], None).unwrap();
        // No audit row written twice, and the line rows appear on the first write.
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM order_state_transitions"),
            o.history.len() as i64
        );
        assert_eq!(count(&store, "SELECT COUNT(*) FROM order_items"), 1);
    }

    #[test]
    fn group_commit_makes_every_thread_s_writes_durable() {
        let path = temp_db("group-threads");
        let store = std::sync::Arc::new(SqliteStore::open(&path).unwrap());
        store.enable_group_commit().unwrap();
        assert!(store.group_commit());
        let ids = SequentialIds::default();
        let orders: Vec<Order> = (0..160).map(|_| order(&ids)).collect();
        std::thread::scope(|scope| {
            for chunk in orders.chunks(20) {
                let (store, path) = (&store, &path);
                scope.spawn(move || {
                    for o in chunk {
                        let created = Event::new(o.id, 1, names::ORDER_CREATED, o.created_at);
                        store.insert_order(o, &[created], None).unwrap();
                        let mut v2 = o.clone();
                        v2.version = 2;
                        let updated = Event::new(o.id, 2, names::ORDER_UPDATED, o.created_at);
                        store.update_order(&v2, 1, &[updated], None).unwrap();
                        // Acknowledged means committed: another connection sees it at once.
                        let other = SqliteStore::open(path).unwrap();
                        assert_eq!(other.order(o.id).unwrap().version, 2);
                    }
                });
            }
        });
        let other = SqliteStore::open(&path).unwrap();
        assert_eq!(other.order_ids().unwrap().len(), 160);
        for o in &orders {
            assert_eq!(other.order(o.id).unwrap().version, 2);
        }
        let events = other.pending_events(1_000).unwrap();
        assert_eq!(events.len(), 320);
        assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
        // Nothing is left open: another connection writes without waiting.
        other.ack_events(events[319].seq).unwrap();
        assert!(store.pending_events(10).unwrap().is_empty());
    }

    #[test]
    fn a_refused_grouped_write_returns_its_error_and_holds_no_lock() {
        let path = temp_db("group-refused");
        let store = SqliteStore::open(&path).unwrap();
        store.enable_group_commit().unwrap();
        let ids = SequentialIds::default();
        let a = order(&ids);
        store.insert_order(&a, &[], None).unwrap();
        let mut stale = a.clone();
        stale.version = 3;
        let err = store.update_order(&stale, 2, &[], None).unwrap_err();
        assert_eq!(err.code(), "conflict");
        assert_eq!(
            store.insert_order(&a, &[], None).unwrap_err().code(),
            "conflict"
        );
        // No transaction stays open behind the refusals: another connection can write now.
        let other = SqliteStore::open(&path).unwrap();
        let b = order(&ids);
        other.insert_order(&b, &[], None).unwrap();
        assert_eq!(store.order(b.id).unwrap(), b);
        assert_eq!(store.order(a.id).unwrap(), a);
    }

    #[test]
    fn batches_and_group_commit_exclude_each_other() {
        let store = SqliteStore::open_in_memory().unwrap();
        store.begin_batch().unwrap();
        assert_eq!(
            store.enable_group_commit().unwrap_err().code(),
            "invalid_field"
        );
        store.rollback_batch().unwrap();
        store.enable_group_commit().unwrap();
        for refused in [
            store.begin_batch(),
            store.commit_batch(),
            store.rollback_batch(),
        ] {
            assert_eq!(refused.unwrap_err().code(), "invalid_field");
        }
        let ids = SequentialIds::default();
        store.insert_order(&order(&ids), &[], None).unwrap();
        assert!(!store.in_batch().unwrap());
    }
}
