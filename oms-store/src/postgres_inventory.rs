//! [`PostgresInventory`]: the inventory store on PostgreSQL.
//!
//! Transactions run at READ COMMITTED. Every stock row an operation reads to change is locked
//! with `SELECT … FOR UPDATE`, in (sku, warehouse) order and after the reservation row it
//! touches, so concurrent writers queue on rows rather than deadlock; a reserve holds each
//! line with one conditional `UPDATE`. A row found absent and created concurrently by another
//! writer makes the transaction run again (counted in [`PostgresInventory::retries`]), as do
//! serialization failures and deadlocks.
//!
//! Writes to rows the transaction has locked (stock counts, reservation rewrites) are buffered
//! and sent together in one statement before the next statement or just before `COMMIT`, so
//! the hot stock rows stay locked for as few round trips as possible.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use postgres::types::ToSql;
use postgres::GenericClient;

use oms_core::error::{OmsError, OmsResult};
use oms_core::inventory::{
    Adjustment, ExpiredReservation, InventoryStore, Reservation, ReservationConfig,
    ReservationRequest, ReserveOutcome, ReturnCondition, StockLevel, StockRow, WarehouseId,
};
use oms_core::order::Sku;
use oms_core::time::{Duration, IdGenerator, Timestamp};

use crate::codec::{from_json, storage, to_i64, to_json, to_u64};
use crate::inventory::{self as ops, FirstRead, Key, Ledger, Lookup, OPEN_STATUSES};
use crate::overlay::Journaled;
use crate::pipeline::Layered;
use crate::postgres::{prepared, PostgresStore, Statements, TxError};
use crate::postgres_batch::COMMITTING;

// One layer per batch that may be committing, oldest innermost (see `in_batch`).
const _: () = assert!(COMMITTING == 3);

/// An [`InventoryStore`] on PostgreSQL, sharing the connection pool of a [`PostgresStore`].
pub struct PostgresInventory {
    store: Arc<PostgresStore>,
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
        Self::sharing(Arc::new(store), ids, config)
    }

    /// Keep inventory through an order store shared with the host, so that its operations
    /// join that store's batches ([`PostgresStore::begin_batch`]).
    pub fn sharing(
        store: Arc<PostgresStore>,
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
        mut f: impl FnMut(&mut dyn Ledger<Error = TxError>) -> Result<T, TxError>,
    ) -> OmsResult<T> {
        if let Some(out) = self.in_batch(&mut f)? {
            return Ok(out);
        }
        self.store.in_tx_cached(|tx, statements| {
            let mut ledger = PgLedger::new(tx, statements);
            let v = f(&mut ledger)?;
            // The buffered writes go out last, in one statement, just before COMMIT.
            ledger.flush()?;
            Ok(v)
        })
    }

    /// Run an operation that is a single read outside a transaction block: one statement is
    /// its own snapshot, and the `BEGIN` and `COMMIT` round trips are saved.
    fn read<T>(
        &self,
        mut f: impl FnMut(&mut dyn Ledger<Error = TxError>) -> Result<T, TxError>,
    ) -> OmsResult<T> {
        if let Some(out) = self.in_batch(&mut f)? {
            return Ok(out);
        }
        self.store
            .read_only(|client, statements| f(&mut PgLedger::new(client, statements)))
    }

    /// Run `f` on the open batch's in-memory rows (rows it lacks read from the database,
    /// unlocked), undoing its writes there if it fails; `None` when no batch is open.
    fn in_batch<T>(
        &self,
        f: &mut dyn FnMut(&mut dyn Ledger<Error = TxError>) -> Result<T, TxError>,
    ) -> OmsResult<Option<T>> {
        let mut batch = self.store.batch()?;
        let Some(open) = batch.as_mut() else {
            return Ok(None);
        };
        open.check()?;
        // Rows the open batch lacks are read through the batches whose commits are running,
        // newest first, then the database.
        let sealed = self.store.sealed_batches()?;
        self.store
            .read_only(|client, statements| {
                let mut cut = sealed.oldest_first().map(|b| &b.overlay);
                let (first, second, third) = (cut.next(), cut.next(), cut.next());
                let db = Layered {
                    sealed: third,
                    db: Layered {
                        sealed: second,
                        db: Layered {
                            sealed: first,
                            db: AsOms::new(PgLedger::new(client, statements)),
                        },
                    },
                };
                let mut rows = AsTx {
                    inner: Journaled::new(db, &mut open.overlay),
                };
                match f(&mut rows) {
                    Ok(v) => Ok(v),
                    Err(e) => {
                        rows.inner.undo();
                        Err(e)
                    }
                }
            })
            .map(Some)
    }
}

/// The ledger rows inside one PostgreSQL transaction (or, for a single read, on a connection
/// outside one).
pub(crate) struct PgLedger<'a, C: GenericClient> {
    tx: &'a mut C,
    statements: &'a mut Statements,
    /// Keys this transaction read under lock and found without a row: writing one must create
    /// it, and finding it created meanwhile means the read was stale.
    absent: BTreeSet<Key>,
    /// Writes held back until the next statement or the end of the transaction, so that they
    /// go out together in one round trip. Only writes whose outcome the operations do not
    /// read are held: rows already locked by this transaction, rewritten in place.
    pending: Pending,
    /// Writing a batch at its commit: new reservations are inserted together at the flush
    /// (their ids are checked then, all or nothing).
    committing_batch: bool,
}

/// Writes buffered by a [`PgLedger`].
#[derive(Default)]
struct Pending {
    /// New counts of locked stock rows.
    levels: BTreeMap<Key, StockLevel>,
    /// Rewritten reservations, by id: the latest copy of each, and whether its shipped
    /// warehouses changed.
    reservations: BTreeMap<i64, (Reservation, bool)>,
    /// A batch's changes of stock rows it read unlocked, applied as differences at its
    /// commit: `(on_hand, reserved, allocated, damaged)` to add to a row that existed when
    /// read, and for a row absent then, the counts to create it with (or to add, if another
    /// writer created it meanwhile).
    changes: BTreeMap<Key, ([i64; 4], bool)>,
    /// A batch's new reservations, inserted together at its commit.
    inserts: Vec<Reservation>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.levels.is_empty()
            && self.reservations.is_empty()
            && self.changes.is_empty()
            && self.inserts.is_empty()
    }
}

/// New reservations and their item rows, any number in one statement (a batch's commit);
/// only those whose id is free are written, and the count returned says how many.
const INSERT_RESERVATIONS: &str = "
WITH r AS (
    INSERT INTO inventory_reservations
        (id, order_id, status, expires_at, created_at, updated_at, document)
    SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::int8[], $5::int8[], $6::int8[],
                         $7::text[])
    ON CONFLICT DO NOTHING
    RETURNING id
), items AS (
    INSERT INTO inventory_reservation_items
        (reservation_id, line_no, sku, warehouse_id, quantity, shipped)
    SELECT t.r, t.l, t.s, t.w, t.q, FALSE
    FROM unnest($8::int8[], $9::int4[], $10::text[], $11::text[], $12::int8[])
        AS t(r, l, s, w, q)
    WHERE t.r IN (SELECT id FROM r)
)
SELECT COUNT(*) FROM r";

/// A batch's stock changes (see [`Pending::changes`]), each applied only where the row keeps
/// `0 <= reserved + allocated <= on_hand` and no count below zero: rows other writers moved
/// meanwhile take the change on top of theirs, and a change that no longer fits is refused
/// (the count of rows written tells). Rows the batch found absent are created, or, created
/// meanwhile, added to.
const APPLY_CHANGES: &str = "
WITH u AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[], $6::int8[],
                         $7::bool[])
        AS u(sku, warehouse_id, on_hand, reserved, allocated, damaged, existed)
), changed AS (
    UPDATE inventory i
    SET on_hand = i.on_hand + u.on_hand, reserved = i.reserved + u.reserved,
        allocated = i.allocated + u.allocated, damaged = i.damaged + u.damaged
    FROM u
    WHERE u.existed AND i.sku = ANY($1::text[]) AND i.sku = u.sku
      AND i.warehouse_id = u.warehouse_id
      AND i.on_hand + u.on_hand >= 0 AND i.reserved + u.reserved >= 0
      AND i.allocated + u.allocated >= 0 AND i.damaged + u.damaged >= 0
      AND i.reserved + u.reserved + i.allocated + u.allocated <= i.on_hand + u.on_hand
    RETURNING 1
), created AS (
    INSERT INTO inventory AS i (sku, warehouse_id, on_hand, reserved, allocated, damaged)
    SELECT sku, warehouse_id, on_hand, reserved, allocated, damaged FROM u WHERE NOT u.existed
    ON CONFLICT (sku, warehouse_id) DO UPDATE
    SET on_hand = i.on_hand + EXCLUDED.on_hand, reserved = i.reserved + EXCLUDED.reserved,
        allocated = i.allocated + EXCLUDED.allocated, damaged = i.damaged + EXCLUDED.damaged
    WHERE i.reserved + EXCLUDED.reserved + i.allocated + EXCLUDED.allocated
          <= i.on_hand + EXCLUDED.on_hand
    RETURNING 1
)
SELECT (SELECT COUNT(*) FROM changed) + (SELECT COUNT(*) FROM created)";

/// Every buffered write in one statement: stock rows, reservation rows, shipped item rows.
/// Returns how many stock rows were updated, which must be all of them (they are locked).
///
/// Each `UPDATE … FROM unnest(…)` also states its keys as `= ANY(array)`, an index condition
/// whatever join the planner picks, so that a plan cached by PostgreSQL for the statement
/// (after a few runs it may keep one generic plan) cannot fall back to scanning a large table.
const FLUSH: &str = "
WITH lv AS (
    UPDATE inventory i
    SET on_hand = u.on_hand, reserved = u.reserved, allocated = u.allocated, damaged = u.damaged
    FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[], $6::int8[])
        AS u(sku, warehouse_id, on_hand, reserved, allocated, damaged)
    WHERE i.sku = ANY($1::text[]) AND i.sku = u.sku AND i.warehouse_id = u.warehouse_id
    RETURNING 1
), res AS (
    UPDATE inventory_reservations r
    SET status = u.status, expires_at = u.expires_at, updated_at = u.updated_at,
        document = u.document
    FROM unnest($7::int8[], $8::text[], $9::int8[], $10::int8[], $11::text[])
        AS u(id, status, expires_at, updated_at, document)
    WHERE r.id = ANY($7::int8[]) AND r.id = u.id
), shipped AS (
    UPDATE inventory_reservation_items it SET shipped = TRUE
    FROM unnest($12::int8[], $13::text[]) AS u(reservation_id, warehouse_id)
    WHERE it.reservation_id = ANY($12::int8[]) AND it.reservation_id = u.reservation_id
      AND it.warehouse_id = u.warehouse_id
      AND NOT it.shipped
)
SELECT COUNT(*) FROM lv";

/// A new reservation and its item rows in one statement; no row at all if the id is taken.
const INSERT_RESERVATION: &str = "
WITH r AS (
    INSERT INTO inventory_reservations
        (id, order_id, status, expires_at, created_at, updated_at, document)
    VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING
    RETURNING id
), items AS (
    INSERT INTO inventory_reservation_items
        (reservation_id, line_no, sku, warehouse_id, quantity, shipped)
    SELECT r.id, t.l, t.s, t.w, t.q, FALSE
    FROM r, unnest($8::int4[], $9::text[], $10::text[], $11::int8[]) AS t(l, s, w, q)
)
SELECT COUNT(*) FROM r";

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

impl<'a, C: GenericClient> PgLedger<'a, C> {
    pub(crate) fn new(tx: &'a mut C, statements: &'a mut Statements) -> Self {
        PgLedger {
            tx,
            statements,
            absent: BTreeSet::new(),
            pending: Pending::default(),
            committing_batch: false,
        }
    }

    /// The ledger a batch's commit writes its rows through (see [`PgLedger::flush`]).
    pub(crate) fn committing_batch(tx: &'a mut C, statements: &'a mut Statements) -> Self {
        PgLedger {
            committing_batch: true,
            ..PgLedger::new(tx, statements)
        }
    }

    /// Run one statement, prepared once per connection and cached, after the buffered
    /// writes, so it sees them.
    fn q(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, TxError> {
        self.flush()?;
        self.q_now(sql, params)
    }

    fn q_now(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, TxError> {
        let statement = prepared(self.tx, self.statements, sql)?;
        Ok(self.tx.query(&statement, params)?)
    }

    /// Send the buffered writes, if any, in one statement (and a batch's stock changes in
    /// one more).
    pub(crate) fn flush(&mut self) -> Result<(), TxError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        if !pending.changes.is_empty() {
            self.apply_changes(&pending.changes)?;
        }
        if !pending.inserts.is_empty() {
            self.insert_reservations(&pending.inserts)?;
        }
        let mut skus = Vec::new();
        let mut whs = Vec::new();
        let mut counts: [Vec<i64>; 4] = Default::default();
        for (key, level) in &pending.levels {
            skus.push(key.0.as_str());
            whs.push(key.1.as_str());
            counts[0].push(to_i64(level.on_hand, "on_hand")?);
            counts[1].push(to_i64(level.reserved, "reserved")?);
            counts[2].push(to_i64(level.allocated, "allocated")?);
            counts[3].push(to_i64(level.damaged, "damaged")?);
        }
        let mut ids = Vec::new();
        let mut statuses = Vec::new();
        let mut expires = Vec::new();
        let mut updated = Vec::new();
        let mut docs = Vec::new();
        let mut shipped_ids = Vec::new();
        let mut shipped_whs = Vec::new();
        for (id, (r, shipped_changed)) in &pending.reservations {
            ids.push(*id);
            statuses.push(r.status.as_str());
            expires.push(r.expires_at.0);
            updated.push(r.updated_at.0);
            docs.push(to_json(r)?);
            if *shipped_changed {
                for w in &r.shipped_from {
                    shipped_ids.push(*id);
                    shipped_whs.push(w.as_str());
                }
            }
        }
        let rows = self.q_now(
            FLUSH,
            &[
                &skus,
                &whs,
                &counts[0],
                &counts[1],
                &counts[2],
                &counts[3],
                &ids,
                &statuses,
                &expires,
                &updated,
                &docs,
                &shipped_ids,
                &shipped_whs,
            ],
        )?;
        let written: i64 = rows.first().map_or(0, |r| r.get(0));
        if usize::try_from(written).ok() == Some(skus.len()) {
            Ok(())
        } else {
            Err(storage("a locked stock row vanished before it was written").into())
        }
    }
}

impl<C: GenericClient> PgLedger<'_, C> {
    /// Apply a batch's stock changes in one statement; a conflict if any no longer fits.
    fn apply_changes(&mut self, changes: &BTreeMap<Key, ([i64; 4], bool)>) -> Result<(), TxError> {
        let skus: Vec<&str> = changes.keys().map(|k| k.0.as_str()).collect();
        let whs: Vec<&str> = changes.keys().map(|k| k.1.as_str()).collect();
        let column = |i: usize| changes.values().map(|(d, _)| d[i]).collect::<Vec<i64>>();
        let existed: Vec<bool> = changes.values().map(|(_, e)| *e).collect();
        let rows = self.q_now(
            APPLY_CHANGES,
            &[
                &skus,
                &whs,
                &column(0),
                &column(1),
                &column(2),
                &column(3),
                &existed,
            ],
        )?;
        let written: i64 = rows.first().map_or(0, |r| r.get(0));
        if usize::try_from(written).ok() == Some(changes.len()) {
            return Ok(());
        }
        Err(OmsError::Conflict {
            entity: "stock rows changed by another writer during the batch".into(),
            expected: changes.len() as u64,
            found: u64::try_from(written).unwrap_or(0),
        }
        .into())
    }
}

impl<C: GenericClient> PgLedger<'_, C> {
    /// Insert a batch's new reservations in one statement; a conflict if an id was taken.
    fn insert_reservations(&mut self, inserts: &[Reservation]) -> Result<(), TxError> {
        let mut cols = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        let mut docs = Vec::new();
        let mut items = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for r in inserts {
            let id = to_i64(r.id, "reservation id")?;
            cols.0.push(id);
            cols.1.push(to_i64(r.order_id, "order id")?);
            cols.2.push(r.status.as_str());
            cols.3.push(r.expires_at.0);
            cols.4.push(r.created_at.0);
            cols.5.push(r.updated_at.0);
            docs.push(to_json(r)?);
            for (n, item) in r.items.iter().enumerate() {
                items.0.push(id);
                items.1.push(
                    i32::try_from(n).map_err(|_| OmsError::invalid("items", "too many lines"))?,
                );
                items.2.push(item.sku.as_str());
                items.3.push(item.warehouse.as_str());
                items.4.push(to_i64(item.quantity, "quantity")?);
            }
        }
        let rows = self.q_now(
            INSERT_RESERVATIONS,
            &[
                &cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5, &docs, &items.0, &items.1,
                &items.2, &items.3, &items.4,
            ],
        )?;
        let written: i64 = rows.first().map_or(0, |r| r.get(0));
        if usize::try_from(written).ok() == Some(inserts.len()) {
            return Ok(());
        }
        Err(OmsError::Conflict {
            entity: "reservations of the batch (an id was taken meanwhile)".into(),
            expected: 0,
            found: 1,
        }
        .into())
    }
}

/// `after - before`, each count, as the signed change a batch applies.
fn change(before: StockLevel, after: StockLevel) -> Result<[i64; 4], TxError> {
    let d = |a: u64, b: u64| -> Result<i64, TxError> {
        i64::try_from(i128::from(a) - i128::from(b))
            .map_err(|_| TxError::from(OmsError::overflow("stock change")))
    };
    Ok([
        d(after.on_hand, before.on_hand)?,
        d(after.reserved, before.reserved)?,
        d(after.allocated, before.allocated)?,
        d(after.damaged, before.damaged)?,
    ])
}

impl<C: GenericClient> Ledger for PgLedger<'_, C> {
    type Error = TxError;

    fn write_level(
        &mut self,
        key: &Key,
        read: FirstRead,
        level: StockLevel,
    ) -> Result<(), TxError> {
        let (before, existed) = match read {
            FirstRead::Present(before) => (before, true),
            FirstRead::Absent => (StockLevel::default(), false),
            // Written without being read first: the counts themselves, on the locked row.
            FirstRead::Never => {
                self.level(key, true)?;
                return self.put_level(key, level);
            }
        };
        let d = change(before, level)?;
        if d != [0; 4] || !existed {
            self.pending.changes.insert(key.clone(), (d, existed));
        }
        Ok(())
    }

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
        if self.absent.remove(key) {
            let (s, w) = (key.0.as_str(), key.1.as_str());
            let params: [&(dyn ToSql + Sync); 6] =
                [&s, &w, &counts[0], &counts[1], &counts[2], &counts[3]];
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
        // The row exists and is locked by this transaction: the write can wait for the flush.
        self.pending.levels.insert(key.clone(), level);
        Ok(())
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
        if self.committing_batch {
            self.pending.inserts.push(r.clone());
            return Ok(true);
        }
        let id = to_i64(r.id, "reservation id")?;
        let order_id = to_i64(r.order_id, "order id")?;
        let doc = to_json(r)?;
        let status = r.status.as_str();
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
        let rows = self.q(
            INSERT_RESERVATION,
            &[
                &id,
                &order_id,
                &status,
                &r.expires_at.0,
                &r.created_at.0,
                &r.updated_at.0,
                &doc,
                &line_nos,
                &skus,
                &whs,
                &quantities,
            ],
        )?;
        Ok(rows.first().map_or(0, |row| row.get::<_, i64>(0)) == 1)
    }

    fn update_reservation(
        &mut self,
        r: &Reservation,
        shipped_changed: bool,
    ) -> Result<(), TxError> {
        let id = to_i64(r.id, "reservation id")?;
        // The row is locked by this transaction; a later rewrite in the same transaction
        // replaces the copy, and a change of shipped warehouses is kept.
        let shipped = shipped_changed || self.pending.reservations.get(&id).is_some_and(|p| p.1);
        self.pending.reservations.insert(id, (r.clone(), shipped));
        Ok(())
    }

    fn expired_open(&mut self, now: Timestamp) -> Result<Vec<Reservation>, TxError> {
        // The open statuses are literals (constants, not input) so that a cached generic plan
        // can still use the partial index on open reservations rather than scan them all.
        debug_assert_eq!(
            [OPEN_STATUSES[0].as_str(), OPEN_STATUSES[1].as_str()],
            ["reserved", "awaiting_customer_decision"]
        );
        let rows = self.q(
            "SELECT document FROM inventory_reservations
             WHERE status IN ('reserved', 'awaiting_customer_decision') AND expires_at <= $1
             ORDER BY id FOR UPDATE",
            &[&now.0],
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
        self.read(|l| ops::levels(l))
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
        self.read(|l| ops::reservation(l, reservation_id))
    }

    fn reservations_for_order(&self, order_id: u64) -> OmsResult<Vec<Reservation>> {
        self.read(|l| ops::reservations_for_order(l, order_id))
    }
}

/// One [`Ledger`] seen through another error type: `inner`'s failures go through `fail`.
macro_rules! adapt_ledger {
    () => {
        fn sku_known(&mut self, sku: &Sku) -> Result<bool, Self::Error> {
            let r = self.inner.sku_known(sku);
            r.map_err(|e| self.fail(e))
        }
        fn warehouse_known(&mut self, warehouse: &WarehouseId) -> Result<bool, Self::Error> {
            let r = self.inner.warehouse_known(warehouse);
            r.map_err(|e| self.fail(e))
        }
        fn lookup<'s, 'w>(
            &mut self,
            skus: &[&'s Sku],
            warehouses: &[&'w WarehouseId],
            keys: &BTreeSet<Key>,
        ) -> Result<Lookup<'s, 'w>, Self::Error> {
            let r = self.inner.lookup(skus, warehouses, keys);
            r.map_err(|e| self.fail(e))
        }
        fn add_warehouse(&mut self, warehouse: &WarehouseId) -> Result<(), Self::Error> {
            let r = self.inner.add_warehouse(warehouse);
            r.map_err(|e| self.fail(e))
        }
        fn level(&mut self, key: &Key, lock: bool) -> Result<Option<StockLevel>, Self::Error> {
            let r = self.inner.level(key, lock);
            r.map_err(|e| self.fail(e))
        }
        fn put_level(&mut self, key: &Key, level: StockLevel) -> Result<(), Self::Error> {
            let r = self.inner.put_level(key, level);
            r.map_err(|e| self.fail(e))
        }
        fn write_level(
            &mut self,
            key: &Key,
            read: FirstRead,
            level: StockLevel,
        ) -> Result<(), Self::Error> {
            let r = self.inner.write_level(key, read, level);
            r.map_err(|e| self.fail(e))
        }
        fn reserve_units(&mut self, key: &Key, quantity: u64) -> Result<bool, Self::Error> {
            let r = self.inner.reserve_units(key, quantity);
            r.map_err(|e| self.fail(e))
        }
        fn levels(&mut self) -> Result<Vec<StockRow>, Self::Error> {
            let r = self.inner.levels();
            r.map_err(|e| self.fail(e))
        }
        fn reservation(&mut self, id: u64, lock: bool) -> Result<Option<Reservation>, Self::Error> {
            let r = self.inner.reservation(id, lock);
            r.map_err(|e| self.fail(e))
        }
        fn insert_reservation(&mut self, reservation: &Reservation) -> Result<bool, Self::Error> {
            let r = self.inner.insert_reservation(reservation);
            r.map_err(|e| self.fail(e))
        }
        fn update_reservation(
            &mut self,
            reservation: &Reservation,
            shipped_changed: bool,
        ) -> Result<(), Self::Error> {
            let r = self.inner.update_reservation(reservation, shipped_changed);
            r.map_err(|e| self.fail(e))
        }
        fn expired_open(&mut self, now: Timestamp) -> Result<Vec<Reservation>, Self::Error> {
            let r = self.inner.expired_open(now);
            r.map_err(|e| self.fail(e))
        }
        fn reservations_for_order(
            &mut self,
            order_id: u64,
        ) -> Result<Vec<Reservation>, Self::Error> {
            let r = self.inner.reservations_for_order(order_id);
            r.map_err(|e| self.fail(e))
        }
    };
}

/// A PostgreSQL ledger as the in-memory rows of a batch need it (failing with [`OmsError`]),
/// keeping the database error behind the first failure so the transaction around it can
/// still tell a retryable one.
pub(crate) struct AsOms<L> {
    inner: L,
    failure: Option<TxError>,
}

impl<L> AsOms<L> {
    pub(crate) fn new(inner: L) -> Self {
        AsOms {
            inner,
            failure: None,
        }
    }

    fn fail(&mut self, e: TxError) -> OmsError {
        let oms = match &e {
            TxError::Oms(e) => e.clone(),
            TxError::Begin(e) | TxError::Db(e) => crate::postgres::pg(e),
            TxError::Retry(what) => storage(*what),
        };
        self.failure.get_or_insert(e);
        oms
    }

    /// The failure to report for `e`, returned by an operation on this ledger: the database
    /// error behind it, when there was one.
    pub(crate) fn failure(&mut self, e: OmsError) -> TxError {
        self.failure.take().unwrap_or(TxError::Oms(e))
    }

    /// The ledger inside.
    pub(crate) fn inner(&mut self) -> &mut L {
        &mut self.inner
    }
}

impl<L: Ledger<Error = TxError>> Ledger for AsOms<L> {
    type Error = OmsError;
    adapt_ledger!();
}

/// A batch's in-memory rows as an operation of this store takes them (failing with
/// [`TxError`]).
struct AsTx<L> {
    inner: L,
}

impl<L> AsTx<L> {
    #[allow(clippy::unused_self)] // the shape `adapt_ledger!` calls
    fn fail(&mut self, e: OmsError) -> TxError {
        TxError::Oms(e)
    }
}

impl<L: Ledger<Error = OmsError>> Ledger for AsTx<L> {
    type Error = TxError;
    adapt_ledger!();
}
