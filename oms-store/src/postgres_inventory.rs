//! [`PostgresInventory`]: the inventory store on PostgreSQL.
//!
//! Transactions run at READ COMMITTED. Every stock row an operation reads to change is locked
//! with `SELECT … FOR UPDATE`, in (sku, warehouse) order and after the reservation row it
//! touches, so concurrent writers queue on rows rather than deadlock; a reserve holds each
//! line with one conditional `UPDATE`. A row found absent and created concurrently by another
//! writer makes the transaction run again (counted in [`PostgresInventory::retries`]), as do
//! serialization failures and deadlocks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use postgres::types::ToSql;
use postgres::Transaction;

use oms_core::error::{OmsError, OmsResult};
use oms_core::inventory::{
    Adjustment, ExpiredReservation, InventoryStore, Reservation, ReservationConfig,
    ReservationRequest, ReserveOutcome, ReturnCondition, StockLevel, StockRow, WarehouseId,
};
use oms_core::order::Sku;
use oms_core::time::{Duration, IdGenerator, Timestamp};

use crate::codec::{from_json, storage, to_i64, to_json, to_u64};
use crate::inventory::{self as ops, Key, Ledger, Lookup, OPEN_STATUSES};
use crate::postgres::{PostgresStore, Statements, TxError};

/// An [`InventoryStore`] on PostgreSQL, sharing the connection pool of a [`PostgresStore`].
pub struct PostgresInventory {
    store: PostgresStore,
    ids: Arc<dyn IdGenerator>,
    config: ReservationConfig,
}

impl std::fmt::Debug for PostgresInventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresInventory")
            .field("store", &self.store)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl PostgresInventory {
    /// Keep inventory in `store`'s database with the default 15-minute hold, drawing
    /// reservation ids from `ids`.
    pub fn new(store: PostgresStore, ids: Arc<dyn IdGenerator>) -> PostgresInventory {
        Self::with_config(store, ids, ReservationConfig::default())
    }

    /// Keep inventory in `store`'s database with `config`.
    pub fn with_config(
        store: PostgresStore,
        ids: Arc<dyn IdGenerator>,
        config: ReservationConfig,
    ) -> PostgresInventory {
        PostgresInventory { store, ids, config }
    }

    /// The order store on the same pool.
    pub fn store(&self) -> &PostgresStore {
        &self.store
    }

    /// How many transactions were run again (serialization failure, deadlock, or a row created
    /// concurrently).
    pub fn retries(&self) -> u64 {
        self.store.retries()
    }

    fn run<T>(
        &self,
        mut f: impl FnMut(&mut PgLedger<'_, '_>) -> Result<T, TxError>,
    ) -> OmsResult<T> {
        self.store.in_tx_cached(|tx, statements| {
            f(&mut PgLedger {
                tx,
                statements,
                absent: BTreeSet::new(),
            })
        })
    }
}

/// The ledger rows inside one PostgreSQL transaction.
pub(crate) struct PgLedger<'a, 'b> {
    tx: &'a mut Transaction<'b>,
    statements: &'a mut Statements,
    /// Keys this transaction read under lock and found without a row: writing one must create
    /// it, and finding it created meanwhile means the read was stale.
    absent: BTreeSet<Key>,
}

fn level_from(r: &postgres::Row, first: usize) -> OmsResult<StockLevel> {
    Ok(StockLevel {
        on_hand: to_u64(r.get(first), "on_hand")?,
        reserved: to_u64(r.get(first + 1), "reserved")?,
        allocated: to_u64(r.get(first + 2), "allocated")?,
        damaged: to_u64(r.get(first + 3), "damaged")?,
    })
}

fn documents(rows: &[postgres::Row]) -> Result<Vec<Reservation>, TxError> {
    rows.iter()
        .map(|r| from_json(r.get::<_, &str>(0)).map_err(TxError::from))
        .collect()
}

impl PgLedger<'_, '_> {
    /// Run one statement, prepared once per connection and cached.
    fn q(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, TxError> {
        let statement = if let Some(s) = self.statements.get(sql) {
            s.clone()
        } else {
            let s = self.tx.prepare(sql)?;
            self.statements.insert(sql, s.clone());
            s
        };
        Ok(self.tx.query(&statement, params)?)
    }

    fn insert_items(&mut self, r: &Reservation, id: i64) -> Result<(), TxError> {
        if r.items.is_empty() {
            return Ok(());
        }
        // One statement for every item: the arrays are unnested into rows server-side.
        let line_nos = (0..r.items.len())
            .map(|n| i32::try_from(n).map_err(|_| OmsError::invalid("items", "too many lines")))
            .collect::<Result<Vec<i32>, _>>()?;
        let skus: Vec<&str> = r.items.iter().map(|i| i.sku.as_str()).collect();
        let whs: Vec<&str> = r.items.iter().map(|i| i.warehouse.as_str()).collect();
        let quantities = r
            .items
            .iter()
            .map(|i| to_i64(i.quantity, "quantity"))
            .collect::<Result<Vec<i64>, _>>()?;
        self.q(
            "INSERT INTO inventory_reservation_items
             (reservation_id, line_no, sku, warehouse_id, quantity, shipped)
             SELECT $1, l, s, w, q, FALSE FROM unnest($2::int4[], $3::text[], $4::text[], $5::int8[])
                 AS t(l, s, w, q)",
            &[
                &id,
                &line_nos,
                &skus,
                &whs,
                &quantities,
            ],
        )?;
        Ok(())
    }
}

impl Ledger for PgLedger<'_, '_> {
    type Error = TxError;

    fn sku_known(&mut self, sku: &Sku) -> Result<bool, TxError> {
        let s = sku.as_str();
        let rows = self.q("SELECT 1 FROM inventory WHERE sku = $1 LIMIT 1", &[&s])?;
        Ok(!rows.is_empty())
    }

    fn warehouse_known(&mut self, warehouse: &WarehouseId) -> Result<bool, TxError> {
        let w = warehouse.as_str();
        let rows = self.q("SELECT 1 FROM warehouses WHERE warehouse_id = $1", &[&w])?;
        Ok(!rows.is_empty())
    }

    fn lookup<'s, 'w>(
        &mut self,
        skus: &[&'s Sku],
        warehouses: &[&'w WarehouseId],
        keys: &BTreeSet<Key>,
    ) -> Result<Lookup<'s, 'w>, TxError> {
        let wanted_skus: Vec<&str> = skus.iter().map(|s| s.as_str()).collect();
        let wanted_whs: Vec<&str> = warehouses.iter().map(|w| w.as_str()).collect();
        let key_skus: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
        let key_whs: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
        // One round trip: known skus (kind 0), known warehouses (kind 1), stock rows (kind 2).
        let rows = self.q(
            "SELECT 0, s.sku::text, ''::text, 0::int8, 0::int8, 0::int8, 0::int8
               FROM (SELECT DISTINCT sku FROM inventory WHERE sku = ANY($1::text[])) s
             UNION ALL
             SELECT 1, warehouse_id::text, ''::text, 0::int8, 0::int8, 0::int8, 0::int8
               FROM warehouses WHERE warehouse_id = ANY($2::text[])
             UNION ALL
             SELECT 2, i.sku::text, i.warehouse_id::text, i.on_hand, i.reserved, i.allocated,
                    i.damaged
               FROM inventory i JOIN unnest($3::text[], $4::text[]) AS k(sku, warehouse_id)
                 ON i.sku = k.sku AND i.warehouse_id = k.warehouse_id",
            &[&wanted_skus, &wanted_whs, &key_skus, &key_whs],
        )?;
        let mut known_skus = BTreeSet::new();
        let mut known_whs = BTreeSet::new();
        let mut levels = BTreeMap::new();
        for r in &rows {
            let name: &str = r.get(1);
            match r.get::<_, i32>(0) {
                0 => {
                    known_skus.insert(name);
                }
                1 => {
                    known_whs.insert(name);
                }
                _ => {
                    let key = (
                        Sku::new(name).map_err(storage)?,
                        WarehouseId::new(r.get::<_, &str>(2)).map_err(storage)?,
                    );
                    levels.insert(key, level_from(r, 3)?);
                }
            }
        }
        if let Some(sku) = skus.iter().find(|s| !known_skus.contains(s.as_str())) {
            return Ok(Lookup::UnknownSku(sku));
        }
        if let Some(w) = warehouses.iter().find(|w| !known_whs.contains(w.as_str())) {
            return Ok(Lookup::UnknownWarehouse(w));
        }
        Ok(Lookup::Levels(levels))
    }

    fn add_warehouse(&mut self, warehouse: &WarehouseId) -> Result<(), TxError> {
        let w = warehouse.as_str();
        self.q(
            "INSERT INTO warehouses (warehouse_id) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&w],
        )?;
        Ok(())
    }

    fn level(&mut self, key: &Key, lock: bool) -> Result<Option<StockLevel>, TxError> {
        let sql = if lock {
            "SELECT on_hand, reserved, allocated, damaged FROM inventory
             WHERE sku = $1 AND warehouse_id = $2 FOR UPDATE"
        } else {
            "SELECT on_hand, reserved, allocated, damaged FROM inventory
             WHERE sku = $1 AND warehouse_id = $2"
        };
        let (s, w) = (key.0.as_str(), key.1.as_str());
        let rows = self.q(sql, &[&s, &w])?;
        if let Some(r) = rows.first() {
            return Ok(Some(level_from(r, 0)?));
        }
        if lock {
            self.absent.insert(key.clone());
        }
        Ok(None)
    }

    fn put_level(&mut self, key: &Key, level: StockLevel) -> Result<(), TxError> {
        let counts = [
            to_i64(level.on_hand, "on_hand")?,
            to_i64(level.reserved, "reserved")?,
            to_i64(level.allocated, "allocated")?,
            to_i64(level.damaged, "damaged")?,
        ];
        let (s, w) = (key.0.as_str(), key.1.as_str());
        let params: [&(dyn ToSql + Sync); 6] =
            [&s, &w, &counts[0], &counts[1], &counts[2], &counts[3]];
        if self.absent.remove(key) {
            let created = self.q(
                "INSERT INTO inventory (sku, warehouse_id, on_hand, reserved, allocated, damaged)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING 1",
                &params,
            )?;
            if created.is_empty() {
                return Err(TxError::Retry("stock row created concurrently"));
            }
            return Ok(());
        }
        let updated = self.q(
            "UPDATE inventory SET on_hand = $3, reserved = $4, allocated = $5, damaged = $6
             WHERE sku = $1 AND warehouse_id = $2 RETURNING 1",
            &params,
        )?;
        if updated.len() == 1 {
            Ok(())
        } else {
            Err(storage(format!("stock row {s}/{w} vanished while locked")).into())
        }
    }

    fn reserve_units(&mut self, key: &Key, quantity: u64) -> Result<bool, TxError> {
        let q = to_i64(quantity, "quantity")?;
        let (s, w) = (key.0.as_str(), key.1.as_str());
        let rows = self.q(
            "UPDATE inventory SET reserved = reserved + $3
             WHERE sku = $1 AND warehouse_id = $2 AND on_hand - reserved - allocated >= $3
             RETURNING 1",
            &[&s, &w, &q],
        )?;
        Ok(rows.len() == 1)
    }

    fn levels(&mut self) -> Result<Vec<StockRow>, TxError> {
        let rows = self.q(
            "SELECT sku, warehouse_id, on_hand, reserved, allocated, damaged FROM inventory",
            &[],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(StockRow {
                sku: Sku::new(r.get::<_, &str>(0)).map_err(storage)?,
                warehouse: WarehouseId::new(r.get::<_, &str>(1)).map_err(storage)?,
                level: level_from(r, 2)?,
            });
        }
        Ok(out)
    }

    fn reservation(&mut self, id: u64, lock: bool) -> Result<Option<Reservation>, TxError> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(None);
        };
        let sql = if lock {
            "SELECT document FROM inventory_reservations WHERE id = $1 FOR UPDATE"
        } else {
            "SELECT document FROM inventory_reservations WHERE id = $1"
        };
        let rows = self.q(sql, &[&id])?;
        Ok(documents(&rows)?.pop())
    }

    fn insert_reservation(&mut self, r: &Reservation) -> Result<bool, TxError> {
        let id = to_i64(r.id, "reservation id")?;
        let order_id = to_i64(r.order_id, "order id")?;
        let doc = to_json(r)?;
        let status = r.status.as_str();
        let inserted = self.q(
            "INSERT INTO inventory_reservations
             (id, order_id, status, expires_at, created_at, updated_at, document)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING 1",
            &[
                &id,
                &order_id,
                &status,
                &r.expires_at.0,
                &r.created_at.0,
                &r.updated_at.0,
                &doc,
            ],
        )?;
        if inserted.is_empty() {
            return Ok(false);
        }
        self.insert_items(r, id)?;
        Ok(true)
    }

    fn update_reservation(
        &mut self,
        r: &Reservation,
        shipped_changed: bool,
    ) -> Result<(), TxError> {
        let id = to_i64(r.id, "reservation id")?;
        let doc = to_json(r)?;
        let status = r.status.as_str();
        self.q(
            "UPDATE inventory_reservations
             SET status = $2, expires_at = $3, updated_at = $4, document = $5
             WHERE id = $1",
            &[&id, &status, &r.expires_at.0, &r.updated_at.0, &doc],
        )?;
        if shipped_changed {
            let shipped: Vec<&str> = r.shipped_from.iter().map(WarehouseId::as_str).collect();
            self.q(
                "UPDATE inventory_reservation_items SET shipped = TRUE
                 WHERE reservation_id = $1 AND warehouse_id = ANY($2)",
                &[&id, &shipped],
            )?;
        }
        Ok(())
    }

    fn expired_open(&mut self, now: Timestamp) -> Result<Vec<Reservation>, TxError> {
        let (a, b) = (OPEN_STATUSES[0].as_str(), OPEN_STATUSES[1].as_str());
        let rows = self.q(
            "SELECT document FROM inventory_reservations
             WHERE status IN ($1, $2) AND expires_at <= $3 ORDER BY id FOR UPDATE",
            &[&a, &b, &now.0],
        )?;
        documents(&rows)
    }

    fn reservations_for_order(&mut self, order_id: u64) -> Result<Vec<Reservation>, TxError> {
        let Ok(order_id) = i64::try_from(order_id) else {
            return Ok(Vec::new());
        };
        let rows = self.q(
            "SELECT document FROM inventory_reservations WHERE order_id = $1 ORDER BY id",
            &[&order_id],
        )?;
        documents(&rows)
    }
}

impl InventoryStore for PostgresInventory {
    fn add_warehouse(&self, warehouse: &WarehouseId) -> OmsResult<()> {
        self.run(|l| ops::add_warehouse(l, warehouse))
    }

    fn receive(&self, sku: &Sku, warehouse: &WarehouseId, quantity: u64) -> OmsResult<StockLevel> {
        self.run(|l| ops::receive(l, sku, warehouse, quantity))
    }

    fn adjust(
        &self,
        sku: &Sku,
        warehouse: &WarehouseId,
        adjustment: Adjustment,
    ) -> OmsResult<StockLevel> {
        self.run(|l| ops::adjust(l, sku, warehouse, adjustment))
    }

    fn restock_return(
        &self,
        sku: &Sku,
        warehouse: &WarehouseId,
        quantity: u64,
        condition: ReturnCondition,
    ) -> OmsResult<StockLevel> {
        self.run(|l| ops::restock_return(l, sku, warehouse, quantity, condition))
    }

    fn stock(&self, sku: &Sku, warehouse: &WarehouseId) -> OmsResult<StockLevel> {
        self.run(|l| ops::stock(l, sku, warehouse))
    }

    fn levels(&self) -> OmsResult<Vec<StockRow>> {
        self.run(|l| ops::levels(l))
    }

    fn reserve(&self, request: &ReservationRequest, now: Timestamp) -> OmsResult<ReserveOutcome> {
        // Drawn once per call, kept across retries of the transaction.
        let mut drawn = None;
        self.run(|l| ops::reserve(l, &*self.ids, &mut drawn, self.config, request, now))
    }

    fn accept_partial(&self, reservation_id: u64, now: Timestamp) -> OmsResult<Reservation> {
        self.run(|l| ops::accept_partial(l, reservation_id, now))
    }

    fn decline_partial(&self, reservation_id: u64, now: Timestamp) -> OmsResult<Reservation> {
        self.run(|l| ops::decline_partial(l, reservation_id, now))
    }

    fn release(&self, reservation_id: u64, now: Timestamp) -> OmsResult<Reservation> {
        self.run(|l| ops::release(l, reservation_id, now))
    }

    fn commit(&self, reservation_id: u64, now: Timestamp) -> OmsResult<Reservation> {
        self.run(|l| ops::commit(l, reservation_id, now))
    }

    fn ship(&self, reservation_id: u64, now: Timestamp) -> OmsResult<Reservation> {
        self.run(|l| ops::ship(l, reservation_id, now))
    }

    fn ship_from(
        &self,
        reservation_id: u64,
        warehouse: &WarehouseId,
        now: Timestamp,
    ) -> OmsResult<Reservation> {
        self.run(|l| ops::ship_from(l, reservation_id, warehouse, now))
    }

    fn extend(&self, reservation_id: u64, by: Duration, now: Timestamp) -> OmsResult<Reservation> {
        self.run(|l| ops::extend(l, reservation_id, by, now))
    }

    fn expire(&self, now: Timestamp) -> OmsResult<Vec<ExpiredReservation>> {
        self.run(|l| ops::expire(l, now))
    }

    fn reservation(&self, reservation_id: u64) -> OmsResult<Reservation> {
        self.run(|l| ops::reservation(l, reservation_id))
    }

    fn reservations_for_order(&self, order_id: u64) -> OmsResult<Vec<Reservation>> {
        self.run(|l| ops::reservations_for_order(l, order_id))
    }
}
