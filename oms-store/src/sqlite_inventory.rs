//! [`SqliteInventory`]: the inventory store on SQLite.
//!
//! Every write runs in one `BEGIN IMMEDIATE` transaction, so the availability check, the
//! conditional updates and the reservation record of a reserve see and write one state; a
//! concurrent writer on another connection waits on the database lock (busy timeout) rather
//! than failing half-way.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension};

use oms_core::error::{OmsError, OmsResult};
use oms_core::inventory::{
    Adjustment, ExpiredReservation, InventoryStore, Reservation, ReservationConfig,
    ReservationRequest, ReserveOutcome, ReturnCondition, StockLevel, StockRow, WarehouseId,
};
use oms_core::order::Sku;
use oms_core::time::{Duration, IdGenerator, Timestamp};

use crate::codec::{reservation_column, reservation_from_column, storage, to_i64, to_u64};
use crate::inventory::{self as ops, Key, Ledger, OPEN_STATUSES};
use crate::overlay::Journaled;
use crate::pipeline::Layered;
use crate::sqlite::{atomically, SqliteStore};

/// An [`InventoryStore`] on one SQLite connection (open one per worker thread).
///
/// It wraps a [`SqliteStore`], so one database file holds orders and inventory together and
/// the same migrations create both.
pub struct SqliteInventory {
    store: Arc<SqliteStore>,
    ids: Arc<dyn IdGenerator>,
    config: ReservationConfig,
    busy_retries: AtomicU64,
}

impl std::fmt::Debug for SqliteInventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteInventory")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SqliteInventory {
    /// Open (creating if needed) the database at `path` with the default 15-minute hold,
    /// drawing reservation ids from `ids`.
    pub fn open(path: impl AsRef<Path>, ids: Arc<dyn IdGenerator>) -> OmsResult<SqliteInventory> {
        Ok(Self::new(SqliteStore::open(path)?, ids))
    }

    /// A private in-memory database.
    pub fn open_in_memory(ids: Arc<dyn IdGenerator>) -> OmsResult<SqliteInventory> {
        Ok(Self::new(SqliteStore::open_in_memory()?, ids))
    }

    /// Keep inventory in `store`'s database with the default 15-minute hold.
    pub fn new(store: SqliteStore, ids: Arc<dyn IdGenerator>) -> SqliteInventory {
        Self::with_config(store, ids, ReservationConfig::default())
    }

    /// Keep inventory in `store`'s database with `config`.
    pub fn with_config(
        store: SqliteStore,
        ids: Arc<dyn IdGenerator>,
        config: ReservationConfig,
    ) -> SqliteInventory {
        Self::sharing(Arc::new(store), ids, config)
    }

    /// Keep inventory on the same connection as an order store the host also uses, so both
    /// join one batch ([`SqliteStore::begin_batch`]) and never wait on each other's lock.
    pub fn sharing(
        store: Arc<SqliteStore>,
        ids: Arc<dyn IdGenerator>,
        config: ReservationConfig,
    ) -> SqliteInventory {
        SqliteInventory {
            store,
            ids,
            config,
            busy_retries: AtomicU64::new(0),
        }
    }

    /// The order store on the same connection.
    pub fn store(&self) -> &SqliteStore {
        &self.store
    }

    /// The order store on the same connection, to hand to an order service.
    pub fn shared_store(&self) -> Arc<SqliteStore> {
        Arc::clone(&self.store)
    }

    /// How many write transactions had to retry `BEGIN IMMEDIATE` because the database stayed
    /// locked past the busy timeout.
    pub fn busy_retries(&self) -> u64 {
        self.busy_retries.load(Ordering::Relaxed)
    }

    /// Run `f` atomically: in a transaction of its own (`BEGIN IMMEDIATE` for writes, deferred
    /// for reads), or, when a batch or a shared group is open, on the store's in-memory rows of
    /// that transaction (written at its commit; a failed `f` is undone there). The writes are
    /// kept only if `f` succeeds.
    fn run<T>(&self, write: bool, f: impl FnOnce(&mut Rows<'_>) -> OmsResult<T>) -> OmsResult<T> {
        let on_busy = || {
            self.busy_retries.fetch_add(1, Ordering::Relaxed);
        };
        // Reads too run between two of the batch's writes: a batch cut while they look
        // through its layers could hide rows that were moving from one layer to the next.
        if let Some(_op) = self.store.pipelined_op()? {
            return self.in_layers(f);
        }
        if write {
            // Through the store, so a write joins its group commit when that is on.
            return self.store.write(&on_busy, |conn| {
                if conn.is_autocommit() {
                    atomically(conn, true, &on_busy, |conn| {
                        f(&mut Rows::Direct(SqliteLedger { conn }))
                    })
                } else {
                    self.in_overlay(conn, f)
                }
            });
        }
        let conn = self.store.lock()?;
        if !conn.is_autocommit() {
            return self.in_overlay(&conn, f);
        }
        atomically(&conn, false, &on_busy, |conn| {
            f(&mut Rows::Direct(SqliteLedger { conn }))
        })
    }

    /// Run `f` on the open transaction's in-memory rows, undoing its writes there if it fails.
    fn in_overlay<T>(
        &self,
        conn: &Connection,
        f: impl FnOnce(&mut Rows<'_>) -> OmsResult<T>,
    ) -> OmsResult<T> {
        let mut overlay = self.store.overlay()?;
        let mut rows = Rows::Overlay(Journaled::new(SqliteLedger { conn }, &mut overlay));
        let out = f(&mut rows);
        if out.is_err() {
            if let Rows::Overlay(journaled) = rows {
                journaled.undo();
            }
        }
        out
    }
}

impl SqliteInventory {
    /// Run `f` on a pipelined batch's in-memory rows, which read what they lack from the batch
    /// being committed, then from the read-only connection; its writes are undone there if it
    /// fails.
    fn in_layers<T>(&self, f: impl FnOnce(&mut Rows<'_>) -> OmsResult<T>) -> OmsResult<T> {
        let sealed = self.store.sealed()?;
        self.store.with_reader(|conn| {
            let mut overlay = self.store.overlay()?;
            let db = Layered {
                sealed: sealed.as_deref().map(|s| &s.overlay),
                db: SqliteLedger { conn },
            };
            let mut rows = Rows::Layered(Journaled::new(db, &mut overlay));
            let out = f(&mut rows);
            if out.is_err() {
                if let Rows::Layered(journaled) = rows {
                    journaled.undo();
                }
            }
            out
        })
    }
}

/// The rows an inventory operation works on: the database's directly (in a transaction of the
/// operation's own), or the open batch's or group's in-memory rows.
pub(crate) enum Rows<'a> {
    /// Straight to the database.
    Direct(SqliteLedger<'a>),
    /// The open batch's or group's rows, written at its commit.
    Overlay(Journaled<'a, SqliteLedger<'a>>),
    /// A pipelined batch's rows, over the batch being committed and the database.
    Layered(Journaled<'a, Layered<'a>>),
}

/// Forward one [`Ledger`] call to whichever rows `self` is.
macro_rules! either {
    ($self:ident, $l:ident => $call:expr) => {
        match $self {
            Rows::Direct($l) => $call,
            Rows::Overlay($l) => $call,
            Rows::Layered($l) => $call,
        }
    };
}

impl Ledger for Rows<'_> {
    type Error = OmsError;

    fn sku_known(&mut self, sku: &Sku) -> OmsResult<bool> {
        either!(self, l => l.sku_known(sku))
    }
    fn warehouse_known(&mut self, warehouse: &WarehouseId) -> OmsResult<bool> {
        either!(self, l => l.warehouse_known(warehouse))
    }
    fn add_warehouse(&mut self, warehouse: &WarehouseId) -> OmsResult<()> {
        either!(self, l => l.add_warehouse(warehouse))
    }
    fn level(&mut self, key: &Key, lock: bool) -> OmsResult<Option<StockLevel>> {
        either!(self, l => l.level(key, lock))
    }
    fn put_level(&mut self, key: &Key, level: StockLevel) -> OmsResult<()> {
        either!(self, l => l.put_level(key, level))
    }
    fn reserve_units(&mut self, key: &Key, quantity: u64) -> OmsResult<bool> {
        either!(self, l => l.reserve_units(key, quantity))
    }
    fn levels(&mut self) -> OmsResult<Vec<StockRow>> {
        either!(self, l => l.levels())
    }
    fn reservation(&mut self, id: u64, lock: bool) -> OmsResult<Option<Reservation>> {
        either!(self, l => l.reservation(id, lock))
    }
    fn insert_reservation(&mut self, r: &Reservation) -> OmsResult<bool> {
        either!(self, l => l.insert_reservation(r))
    }
    fn update_reservation(&mut self, r: &Reservation, shipped_changed: bool) -> OmsResult<()> {
        either!(self, l => l.update_reservation(r, shipped_changed))
    }
    fn expired_open(&mut self, now: Timestamp) -> OmsResult<Vec<Reservation>> {
        either!(self, l => l.expired_open(now))
    }
    fn reservations_for_order(&mut self, order_id: u64) -> OmsResult<Vec<Reservation>> {
        either!(self, l => l.reservations_for_order(order_id))
    }
}

/// The ledger rows inside one SQLite transaction.
pub(crate) struct SqliteLedger<'a> {
    pub(crate) conn: &'a Connection,
}

fn level_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<[i64; 4]> {
    Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?])
}

fn level_from(v: [i64; 4]) -> OmsResult<StockLevel> {
    Ok(StockLevel {
        on_hand: to_u64(v[0], "on_hand")?,
        reserved: to_u64(v[1], "reserved")?,
        allocated: to_u64(v[2], "allocated")?,
        damaged: to_u64(v[3], "damaged")?,
    })
}

impl SqliteLedger<'_> {
    fn documents(&self, sql: &str, param: i64) -> OmsResult<Vec<Reservation>> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(storage)?;
        let mut rows = stmt.query(params![param]).map_err(storage)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(storage)? {
            out.push(reservation_from_column(row.get_ref(0).map_err(storage)?)?);
        }
        Ok(out)
    }

    fn insert_items(&self, r: &Reservation, id: i64) -> OmsResult<()> {
        let mut insert = self
            .conn
            .prepare_cached(
                "INSERT INTO inventory_reservation_items
                 (reservation_id, line_no, sku, warehouse_id, quantity, shipped)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0)",
            )
            .map_err(storage)?;
        for (line_no, item) in r.items.iter().enumerate() {
            insert
                .execute(params![
                    id,
                    to_i64(line_no as u64, "line number")?,
                    item.sku.as_str(),
                    item.warehouse.as_str(),
                    to_i64(item.quantity, "quantity")?,
                ])
                .map_err(storage)?;
        }
        Ok(())
    }
}

impl Ledger for SqliteLedger<'_> {
    type Error = OmsError;

    fn sku_known(&mut self, sku: &Sku) -> OmsResult<bool> {
        self.conn
            .prepare_cached("SELECT 1 FROM inventory WHERE sku = ?1 LIMIT 1")
            .and_then(|mut s| s.exists(params![sku.as_str()]))
            .map_err(storage)
    }

    fn warehouse_known(&mut self, warehouse: &WarehouseId) -> OmsResult<bool> {
        self.conn
            .prepare_cached("SELECT 1 FROM warehouses WHERE warehouse_id = ?1")
            .and_then(|mut s| s.exists(params![warehouse.as_str()]))
            .map_err(storage)
    }

    fn add_warehouse(&mut self, warehouse: &WarehouseId) -> OmsResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO warehouses (warehouse_id) VALUES (?1) ON CONFLICT DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![warehouse.as_str()]))
            .map_err(storage)?;
        Ok(())
    }

    fn level(&mut self, key: &Key, _lock: bool) -> OmsResult<Option<StockLevel>> {
        // The IMMEDIATE transaction already holds the database's write lock.
        let row = self
            .conn
            .prepare_cached(
                "SELECT on_hand, reserved, allocated, damaged FROM inventory
                 WHERE sku = ?1 AND warehouse_id = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![key.0.as_str(), key.1.as_str()], level_row)
                    .optional()
            })
            .map_err(storage)?;
        row.map(level_from).transpose()
    }

    fn put_level(&mut self, key: &Key, level: StockLevel) -> OmsResult<()> {
        let counts = [
            to_i64(level.on_hand, "on_hand")?,
            to_i64(level.reserved, "reserved")?,
            to_i64(level.allocated, "allocated")?,
            to_i64(level.damaged, "damaged")?,
        ];
        self.conn
            .prepare_cached(
                "INSERT INTO inventory (sku, warehouse_id, on_hand, reserved, allocated, damaged)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (sku, warehouse_id) DO UPDATE SET
                     on_hand = excluded.on_hand, reserved = excluded.reserved,
                     allocated = excluded.allocated, damaged = excluded.damaged",
            )
            .and_then(|mut s| {
                s.execute(params![
                    key.0.as_str(),
                    key.1.as_str(),
                    counts[0],
                    counts[1],
                    counts[2],
                    counts[3],
                ])
            })
            .map_err(storage)?;
        Ok(())
    }

    fn reserve_units(&mut self, key: &Key, quantity: u64) -> OmsResult<bool> {
        let q = to_i64(quantity, "quantity")?;
        let n = self
            .conn
            .prepare_cached(
                "UPDATE inventory SET reserved = reserved + ?3
                 WHERE sku = ?1 AND warehouse_id = ?2 AND on_hand - reserved - allocated >= ?3",
            )
            .and_then(|mut s| s.execute(params![key.0.as_str(), key.1.as_str(), q]))
            .map_err(storage)?;
        Ok(n == 1)
    }

    fn levels(&mut self) -> OmsResult<Vec<StockRow>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT sku, warehouse_id, on_hand, reserved, allocated, damaged FROM inventory",
            )
            .map_err(storage)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    [r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?],
                ))
            })
            .map_err(storage)?;
        let mut out = Vec::new();
        for row in rows {
            let (sku, warehouse, counts) = row.map_err(storage)?;
            out.push(StockRow {
                sku: Sku::new(&sku).map_err(storage)?,
                warehouse: WarehouseId::new(&warehouse).map_err(storage)?,
                level: level_from(counts)?,
            });
        }
        Ok(out)
    }

    fn reservation(&mut self, id: u64, _lock: bool) -> OmsResult<Option<Reservation>> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(None);
        };
        Ok(self
            .documents(
                "SELECT document FROM inventory_reservations WHERE id = ?1",
                id,
            )?
            .pop())
    }

    fn insert_reservation(&mut self, r: &Reservation) -> OmsResult<bool> {
        let id = to_i64(r.id, "reservation id")?;
        let order_id = to_i64(r.order_id, "order id")?;
        let doc = reservation_column(r)?;
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO inventory_reservations
                 (id, order_id, status, expires_at, created_at, updated_at, document)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
            )
            .and_then(|mut s| {
                s.execute(params![
                    id,
                    order_id,
                    r.status.as_str(),
                    r.expires_at.0,
                    r.created_at.0,
                    r.updated_at.0,
                    doc,
                ])
            })
            .map_err(storage)?;
        if inserted == 0 {
            return Ok(false);
        }
        self.insert_items(r, id)?;
        Ok(true)
    }

    fn update_reservation(&mut self, r: &Reservation, shipped_changed: bool) -> OmsResult<()> {
        let id = to_i64(r.id, "reservation id")?;
        let doc = reservation_column(r)?;
        self.conn
            .prepare_cached(
                "UPDATE inventory_reservations
                 SET status = ?2, expires_at = ?3, updated_at = ?4, document = ?5
                 WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.execute(params![
                    id,
                    r.status.as_str(),
                    r.expires_at.0,
                    r.updated_at.0,
                    doc
                ])
            })
            .map_err(storage)?;
        if shipped_changed {
            let mut mark = self
                .conn
                .prepare_cached(
                    "UPDATE inventory_reservation_items SET shipped = 1
                     WHERE reservation_id = ?1 AND warehouse_id = ?2",
                )
                .map_err(storage)?;
            for w in &r.shipped_from {
                mark.execute(params![id, w.as_str()]).map_err(storage)?;
            }
        }
        Ok(())
    }

    fn expired_open(&mut self, now: Timestamp) -> OmsResult<Vec<Reservation>> {
        // The open statuses are written as literals (they are constants, not input) so the
        // partial index on open reservations applies; without statistics the planner would
        // rather scan every reservation in id order than sort the few due, so it is named.
        debug_assert_eq!(
            [OPEN_STATUSES[0].as_str(), OPEN_STATUSES[1].as_str()],
            ["reserved", "awaiting_customer_decision"]
        );
        self.documents(
            "SELECT document FROM inventory_reservations
             INDEXED BY idx_reservations_open_expiry
             WHERE status IN ('reserved', 'awaiting_customer_decision') AND expires_at <= ?1
             ORDER BY id",
            now.0,
        )
    }

    fn reservations_for_order(&mut self, order_id: u64) -> OmsResult<Vec<Reservation>> {
        let Ok(order_id) = i64::try_from(order_id) else {
            return Ok(Vec::new());
        };
        self.documents(
            "SELECT document FROM inventory_reservations WHERE order_id = ?1 ORDER BY id",
            order_id,
        )
    }
}

impl InventoryStore for SqliteInventory {
    fn add_warehouse(&self, warehouse: &WarehouseId) -> OmsResult<()> {
        self.run(true, |l| ops::add_warehouse(l, warehouse))
    }

    fn receive(&self, sku: &Sku, warehouse: &WarehouseId, quantity: u64) -> OmsResult<StockLevel> {
        self.run(true, |l| ops::receive(l, sku, warehouse, quantity))
    }

    fn adjust(
        &self,
        sku: &Sku,
        warehouse: &WarehouseId,
        adjustment: Adjustment,
    ) -> OmsResult<StockLevel> {
        self.run(true, |l| ops::adjust(l, sku, warehouse, adjustment))
    }

    fn restock_return(
        &self,
        sku: &Sku,
        warehouse: &WarehouseId,
        quantity: u64,
        condition: ReturnCondition,
    ) -> OmsResult<StockLevel> {
        self.run(true, |l| {
            ops::restock_return(l, sku, warehouse, quantity, condition)
        })
    }

    fn stock(&self, sku: &Sku, warehouse: &WarehouseId) -> OmsResult<StockLevel> {
        self.run(false, |l| ops::stock(l, sku, warehouse))
    }

    fn levels(&self) -> OmsResult<Vec<StockRow>> {
        self.run(false, |l| ops::levels(l))
    }

    fn reserve(&self, request: &ReservationRequest, now: Timestamp) -> OmsResult<ReserveOutcome> {
        let mut drawn = None;
        self.run(true, |l| {
            ops::reserve(l, &*self.ids, &mut drawn, self.config, request, now)
        })
    }

    fn accept_partial(&self, reservation_id: u64, now: Timestamp) -> OmsResult<Reservation> {
        self.run(true, |l| ops::accept_partial(l, reservation_id, now))
    }

    fn decline_partial(&self, reservation_id: u64, now: Timestamp) -> OmsResult<Reservation> {
        self.run(true, |l| ops::decline_partial(l, reservation_id, now))
    }

    fn release(&self, reservation_id: u64, now: Timestamp) -> OmsResult<Reservation> {
        self.run(true, |l| ops::release(l, reservation_id, now))
    }

    fn commit(&self, reservation_id: u64, now: Timestamp) -> OmsResult<Reservation> {
        self.run(true, |l| ops::commit(l, reservation_id, now))
    }

    fn ship(&self, reservation_id: u64, now: Timestamp) -> OmsResult<Reservation> {
        self.run(true, |l| ops::ship(l, reservation_id, now))
    }

    fn ship_from(
        &self,
        reservation_id: u64,
        warehouse: &WarehouseId,
        now: Timestamp,
    ) -> OmsResult<Reservation> {
        self.run(true, |l| ops::ship_from(l, reservation_id, warehouse, now))
    }

    fn extend(&self, reservation_id: u64, by: Duration, now: Timestamp) -> OmsResult<Reservation> {
        self.run(true, |l| ops::extend(l, reservation_id, by, now))
    }

    fn expire(&self, now: Timestamp) -> OmsResult<Vec<ExpiredReservation>> {
        self.run(true, |l| ops::expire(l, now))
    }

    fn reservation(&self, reservation_id: u64) -> OmsResult<Reservation> {
        self.run(false, |l| ops::reservation(l, reservation_id))
    }

    fn reservations_for_order(&self, order_id: u64) -> OmsResult<Vec<Reservation>> {
        self.run(false, |l| ops::reservations_for_order(l, order_id))
    }
}
