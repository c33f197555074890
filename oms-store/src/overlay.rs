//! Inventory rows of an open SQLite batch or shared group, held in memory and written once,
//! when the transaction commits.
//!
//! Inside a batch ([`crate::SqliteStore::begin_batch`]) or a group commit the connection holds
//! the database's write lock from the first write to the commit, so no other connection can
//! change a row meanwhile: a row read once stays what was read until this store changes it.
//! The overlay keeps every row an operation read or wrote; reads are answered from it, writes
//! only change it, and the commit writes each changed row once (a stock row many reservations
//! moved, a reservation that was held, committed and shipped within the batch). An operation
//! that fails is undone in the overlay from its journal, as a savepoint would undo it in the
//! database.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rustc_hash::FxBuildHasher;

use oms_core::error::{OmsError, OmsResult};
use oms_core::inventory::{Reservation, StockLevel, StockRow, WarehouseId};
use oms_core::order::Sku;
use oms_core::time::Timestamp;

use crate::inventory::{FirstRead, Key, Ledger, OPEN_STATUSES};

/// A stock row as the overlay knows it: absent (`None`) or its counts, whether the commit
/// must write it, and the row as first read from the database, so a commit can apply the
/// change rather than the counts.
#[derive(Debug, Clone, Copy)]
struct LevelSlot {
    level: Option<StockLevel>,
    dirty: bool,
    read: FirstRead,
}

/// What the commit writes for a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    /// Read from the database and unchanged since.
    Clean,
    /// Created in this transaction.
    Insert,
    /// Changed in this transaction; `shipped` when a warehouse was shipped from.
    Update { shipped: bool },
}

/// A reservation as the overlay knows it: absent (`None`) or its newest state.
#[derive(Debug, Clone)]
struct ReservationSlot {
    reservation: Option<Reservation>,
    write: Write,
}

/// The reservation slots, by id, with the reservations they hold indexed by order and, when
/// open, by expiry: finding an order's reservations or the due ones (every few orders) reads
/// an index, not every slot. Every change goes through [`ReservationSlots::insert`] or
/// [`ReservationSlots::remove`], which keep both indexes in step.
#[derive(Debug, Default)]
struct ReservationSlots {
    slots: BTreeMap<u64, ReservationSlot>,
    /// The ids of the slots holding a reservation, by order.
    by_order: BTreeMap<u64, BTreeSet<u64>>,
    /// `(expires_at, id)` of each slot holding an open reservation.
    open: BTreeSet<(Timestamp, u64)>,
}

impl ReservationSlots {
    fn get(&self, id: u64) -> Option<&ReservationSlot> {
        self.slots.get(&id)
    }

    fn contains_key(&self, id: u64) -> bool {
        self.slots.contains_key(&id)
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn values(&self) -> impl Iterator<Item = &ReservationSlot> {
        self.slots.values()
    }

    /// The open reservation a slot holds, as its index entry.
    fn open_key(id: u64, slot: Option<&ReservationSlot>) -> Option<(Timestamp, u64)> {
        let r = slot?.reservation.as_ref()?;
        OPEN_STATUSES
            .contains(&r.status)
            .then_some((r.expires_at, id))
    }

    fn insert(&mut self, id: u64, slot: ReservationSlot) -> Option<ReservationSlot> {
        if let Some(r) = &slot.reservation {
            self.by_order.entry(r.order_id).or_default().insert(id);
        }
        if let Some(key) = Self::open_key(id, Some(&slot)) {
            self.open.insert(key);
        }
        let before = self.slots.insert(id, slot);
        self.unindex(id, before.as_ref());
        before
    }

    fn remove(&mut self, id: u64) -> Option<ReservationSlot> {
        let before = self.slots.remove(&id);
        self.unindex(id, before.as_ref());
        before
    }

    /// Drop the index entries of a slot that left, unless the slot now there has the same.
    fn unindex(&mut self, id: u64, before: Option<&ReservationSlot>) {
        let order_of = |slot: Option<&ReservationSlot>| Some(slot?.reservation.as_ref()?.order_id);
        if let Some(order_id) = order_of(before) {
            if order_of(self.slots.get(&id)) != Some(order_id) {
                if let Some(ids) = self.by_order.get_mut(&order_id) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        self.by_order.remove(&order_id);
                    }
                }
            }
        }
        if let Some(key) = Self::open_key(id, before) {
            if Self::open_key(id, self.slots.get(&id)) != Some(key) {
                self.open.remove(&key);
            }
        }
    }

    /// Open reservations expired at `now` (`expires_at <= now`), in id order.
    fn open_and_due(&self, now: Timestamp) -> Vec<&Reservation> {
        let mut due: Vec<&Reservation> = self
            .open
            .range(..=(now, u64::MAX))
            .filter_map(|(_, id)| self.slots.get(id)?.reservation.as_ref())
            .collect();
        due.sort_unstable_by_key(|r| r.id);
        due
    }

    /// The reservations of `order_id`, in id order.
    fn of_order(&self, order_id: u64) -> impl Iterator<Item = &Reservation> {
        self.by_order
            .get(&order_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.slots.get(id)?.reservation.as_ref())
    }
}

/// A warehouse as the overlay knows it: whether it exists, and whether the commit adds it.
#[derive(Debug, Clone, Copy)]
struct WarehouseSlot {
    known: bool,
    added: bool,
}

/// The inventory rows of the open transaction (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct InventoryOverlay {
    // Looked up several times per operation: hashed (the commit writes them in key order).
    levels: HashMap<Key, LevelSlot, FxBuildHasher>,
    reservations: ReservationSlots,
    skus: HashMap<Sku, bool, FxBuildHasher>,
    warehouses: HashMap<WarehouseId, WarehouseSlot, FxBuildHasher>,
    /// Orders whose reservations in the database have all been read into the overlay.
    orders_read: BTreeSet<u64>,
}

/// How to undo one write of a failed operation: the slot as it was before.
#[derive(Debug)]
enum Undo {
    Level(Key, Option<LevelSlot>),
    Reservation(u64, Option<ReservationSlot>),
    Sku(Sku, Option<bool>),
    Warehouse(WarehouseId, Option<WarehouseSlot>),
}

impl InventoryOverlay {
    /// Whether the overlay holds nothing.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.levels.is_empty()
            && self.reservations.is_empty()
            && self.skus.is_empty()
            && self.warehouses.is_empty()
            && self.orders_read.is_empty()
    }

    /// Forget everything (the transaction ended).
    pub(crate) fn clear(&mut self) {
        *self = InventoryOverlay::default();
    }

    /// Write every changed row through `db` (the database rows of the still-open transaction):
    /// warehouses first, then stock rows in key order, then reservations in id order. The
    /// overlay is left empty.
    pub(crate) fn flush<L: Ledger<Error = OmsError>>(&mut self, db: &mut L) -> OmsResult<()> {
        std::mem::take(self).write_to(db)
    }

    /// Write every changed row through `db`, as [`InventoryOverlay::flush`] does, keeping the
    /// overlay (a pipelined batch's rows stay readable while its commit runs).
    pub(crate) fn write_to<L: Ledger<Error = OmsError>>(&self, db: &mut L) -> OmsResult<()> {
        let overlay = self;
        let mut added: Vec<&WarehouseId> = overlay
            .warehouses
            .iter()
            .filter(|(_, slot)| slot.added)
            .map(|(warehouse, _)| warehouse)
            .collect();
        added.sort_unstable();
        for warehouse in added {
            db.add_warehouse(warehouse)?;
        }
        let mut dirty: Vec<(&Key, &LevelSlot)> = overlay
            .levels
            .iter()
            .filter(|(_, slot)| slot.dirty)
            .collect();
        dirty.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (key, slot) in dirty {
            if let Some(level) = slot.level {
                db.write_level(key, slot.read, level)?;
            }
        }
        for slot in overlay.reservations.values() {
            let Some(r) = &slot.reservation else {
                continue;
            };
            match slot.write {
                Write::Clean => {}
                Write::Insert => {
                    if !db.insert_reservation(r)? {
                        return Err(OmsError::Storage {
                            reason: format!("reservation id {} is taken in the database", r.id),
                        });
                    }
                    // Item rows start unshipped; mark those shipped within the transaction.
                    if !r.shipped_from.is_empty() {
                        db.update_reservation(r, true)?;
                    }
                }
                Write::Update { shipped } => db.update_reservation(r, shipped)?,
            }
        }
        Ok(())
    }
}

/// What an overlay knows of one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Known<T> {
    /// The overlay never held the row: the database's copy is current.
    Unknown,
    /// The row does not exist.
    Absent,
    /// The row's newest value.
    Present(T),
}

impl<T> Known<T> {
    /// A slot the overlay holds (`None`: not held), whose value may be absent.
    fn held<'a, S>(slot: Option<&'a S>, value: impl FnOnce(&'a S) -> Option<T>) -> Self {
        match slot.map(value) {
            None => Known::Unknown,
            Some(None) => Known::Absent,
            Some(Some(v)) => Known::Present(v),
        }
    }
}

/// What a sealed overlay (a pipelined batch whose commit is running) knows of the rows, for
/// the next batch to read through (see [`crate::pipeline`]). `None`: the overlay never held
/// the row, so the database's copy is current.
impl InventoryOverlay {
    /// The stock row of `key`, as far as the overlay knows it.
    pub(crate) fn known_level(&self, key: &Key) -> Known<StockLevel> {
        Known::held(self.levels.get(key), |slot| slot.level)
    }

    /// Reservation `id`, as far as the overlay knows it.
    pub(crate) fn known_reservation(&self, id: u64) -> Known<&Reservation> {
        Known::held(self.reservations.get(id), |slot| slot.reservation.as_ref())
    }

    /// Whether `sku` is known to have stock rows.
    pub(crate) fn known_sku(&self, sku: &Sku) -> Option<bool> {
        self.skus.get(sku).copied()
    }

    /// Whether `warehouse` is known to exist.
    pub(crate) fn known_warehouse(&self, warehouse: &WarehouseId) -> Option<bool> {
        self.warehouses.get(warehouse).map(|slot| slot.known)
    }

    /// The `stored` stock rows with the overlay's newer counts, and the rows only it has, in
    /// key order (stock rows are never deleted, so none is known absent that is stored).
    pub(crate) fn over_levels(&self, stored: Vec<StockRow>) -> Vec<StockRow> {
        let mut rows: BTreeMap<Key, StockLevel> = stored
            .into_iter()
            .map(|row| ((row.sku, row.warehouse), row.level))
            .collect();
        for (key, slot) in &self.levels {
            if let Some(level) = slot.level {
                rows.insert(key.clone(), level);
            }
        }
        rows.into_iter()
            .map(|((sku, warehouse), level)| StockRow {
                sku,
                warehouse,
                level,
            })
            .collect()
    }

    /// The reservations of `order_id` the overlay holds a value of, in id order.
    pub(crate) fn reservations_of_order(
        &self,
        order_id: u64,
    ) -> impl Iterator<Item = &Reservation> {
        self.reservations.of_order(order_id)
    }

    /// The open reservations the overlay holds that expired at `now`, in id order.
    pub(crate) fn open_and_due(&self, now: Timestamp) -> Vec<&Reservation> {
        self.reservations.open_and_due(now)
    }
}

/// The rows of one operation: the overlay first, the database (`db`) for rows not in it yet,
/// and a journal of the operation's writes so a failure can undo them ([`Journaled::undo`]).
pub(crate) struct Journaled<'a, L> {
    db: L,
    overlay: &'a mut InventoryOverlay,
    journal: Vec<Undo>,
}

impl<'a, L: Ledger<Error = OmsError>> Journaled<'a, L> {
    /// Start an operation on `overlay`, reading missing rows from `db`.
    pub(crate) fn new(db: L, overlay: &'a mut InventoryOverlay) -> Self {
        Journaled {
            db,
            overlay,
            journal: Vec::new(),
        }
    }

    /// Put back every slot the operation wrote, newest first.
    pub(crate) fn undo(self) {
        let overlay = self.overlay;
        for undo in self.journal.into_iter().rev() {
            match undo {
                Undo::Level(key, before) => restore(&mut overlay.levels, key, before),
                Undo::Reservation(id, before) => match before {
                    Some(slot) => {
                        overlay.reservations.insert(id, slot);
                    }
                    None => {
                        overlay.reservations.remove(id);
                    }
                },
                Undo::Sku(sku, before) => restore(&mut overlay.skus, sku, before),
                Undo::Warehouse(w, before) => restore(&mut overlay.warehouses, w, before),
            }
        }
    }

    /// Remember a reservation read from the database (`None`: no such id), unless the overlay
    /// already has that id.
    fn cache_reservation(&mut self, id: u64, found: Option<Reservation>) {
        if self.overlay.reservations.contains_key(id) {
            return;
        }
        self.overlay.reservations.insert(
            id,
            ReservationSlot {
                reservation: found,
                write: Write::Clean,
            },
        );
    }

    /// Replace the slot of reservation `r.id`, journaling the old one.
    fn write_reservation(&mut self, r: &Reservation, write: Write) {
        let before = self.overlay.reservations.insert(
            r.id,
            ReservationSlot {
                reservation: Some(r.clone()),
                write,
            },
        );
        self.journal.push(Undo::Reservation(r.id, before));
    }
}

fn restore<K: std::hash::Hash + Eq, V>(
    map: &mut HashMap<K, V, FxBuildHasher>,
    key: K,
    before: Option<V>,
) {
    match before {
        Some(v) => {
            map.insert(key, v);
        }
        None => {
            map.remove(&key);
        }
    }
}

impl<L: Ledger<Error = OmsError>> Ledger for Journaled<'_, L> {
    type Error = OmsError;

    fn sku_known(&mut self, sku: &Sku) -> OmsResult<bool> {
        if let Some(known) = self.overlay.skus.get(sku) {
            return Ok(*known);
        }
        let known = self.db.sku_known(sku)?;
        self.overlay.skus.insert(sku.clone(), known);
        Ok(known)
    }

    fn warehouse_known(&mut self, warehouse: &WarehouseId) -> OmsResult<bool> {
        if let Some(slot) = self.overlay.warehouses.get(warehouse) {
            return Ok(slot.known);
        }
        let known = self.db.warehouse_known(warehouse)?;
        self.overlay.warehouses.insert(
            warehouse.clone(),
            WarehouseSlot {
                known,
                added: false,
            },
        );
        Ok(known)
    }

    fn add_warehouse(&mut self, warehouse: &WarehouseId) -> OmsResult<()> {
        if self.warehouse_known(warehouse)? {
            return Ok(());
        }
        let before = self.overlay.warehouses.insert(
            warehouse.clone(),
            WarehouseSlot {
                known: true,
                added: true,
            },
        );
        self.journal
            .push(Undo::Warehouse(warehouse.clone(), before));
        Ok(())
    }

    fn level(&mut self, key: &Key, lock: bool) -> OmsResult<Option<StockLevel>> {
        if let Some(slot) = self.overlay.levels.get(key) {
            return Ok(slot.level);
        }
        let level = self.db.level(key, lock)?;
        self.overlay.levels.insert(
            key.clone(),
            LevelSlot {
                level,
                dirty: false,
                read: level.map_or(FirstRead::Absent, FirstRead::Present),
            },
        );
        Ok(level)
    }

    fn put_level(&mut self, key: &Key, level: StockLevel) -> OmsResult<()> {
        let read = self
            .overlay
            .levels
            .get(key)
            .map_or(FirstRead::Never, |slot| slot.read);
        let before = self.overlay.levels.insert(
            key.clone(),
            LevelSlot {
                level: Some(level),
                dirty: true,
                read,
            },
        );
        self.journal.push(Undo::Level(key.clone(), before));
        // A stock row makes its sku known.
        let was = self.overlay.skus.insert(key.0.clone(), true);
        self.journal.push(Undo::Sku(key.0.clone(), was));
        Ok(())
    }

    fn reserve_units(&mut self, key: &Key, quantity: u64) -> OmsResult<bool> {
        // The conditional update, on the overlay's copy of the row.
        let Some(level) = self.level(key, true)? else {
            return Ok(false);
        };
        if level.available() < quantity {
            return Ok(false);
        }
        let reserved = level
            .reserved
            .checked_add(quantity)
            .ok_or_else(|| OmsError::overflow("reserved units"))?;
        self.put_level(key, StockLevel { reserved, ..level })?;
        Ok(true)
    }

    fn levels(&mut self) -> OmsResult<Vec<StockRow>> {
        let stored = self.db.levels()?;
        Ok(self.overlay.over_levels(stored))
    }

    fn reservation(&mut self, id: u64, lock: bool) -> OmsResult<Option<Reservation>> {
        if let Some(slot) = self.overlay.reservations.get(id) {
            return Ok(slot.reservation.clone());
        }
        let found = self.db.reservation(id, lock)?;
        self.cache_reservation(id, found.clone());
        Ok(found)
    }

    fn insert_reservation(&mut self, r: &Reservation) -> OmsResult<bool> {
        if self.reservation(r.id, true)?.is_some() {
            return Ok(false);
        }
        self.write_reservation(r, Write::Insert);
        Ok(true)
    }

    fn update_reservation(&mut self, r: &Reservation, shipped_changed: bool) -> OmsResult<()> {
        let write = match self.overlay.reservations.get(r.id).map(|s| s.write) {
            Some(Write::Insert) => Write::Insert,
            Some(Write::Update { shipped }) => Write::Update {
                shipped: shipped || shipped_changed,
            },
            Some(Write::Clean) | None => Write::Update {
                shipped: shipped_changed,
            },
        };
        self.write_reservation(r, write);
        Ok(())
    }

    fn expired_open(&mut self, now: Timestamp) -> OmsResult<Vec<Reservation>> {
        // The database's due reservations, unless the overlay has a newer state of them...
        for r in self.db.expired_open(now)? {
            self.cache_reservation(r.id, Some(r));
        }
        // ...then every due one the overlay holds, in id order.
        Ok(self
            .overlay
            .open_and_due(now)
            .into_iter()
            .cloned()
            .collect())
    }

    fn reservations_for_order(&mut self, order_id: u64) -> OmsResult<Vec<Reservation>> {
        if !self.overlay.orders_read.contains(&order_id) {
            for r in self.db.reservations_for_order(order_id)? {
                self.cache_reservation(r.id, Some(r));
            }
            self.overlay.orders_read.insert(order_id);
        }
        Ok(self
            .overlay
            .reservations_of_order(order_id)
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use oms_core::inventory::{InventoryStore, ReservationRequest, ReservationStatus};
    use oms_core::time::SequentialIds;

    use super::*;
    use crate::sqlite::batch_tests::{count, temp_db};
    use crate::SqliteInventory;

    const T0: Timestamp = Timestamp(1_000);

    fn sku(s: &str) -> Sku {
        Sku::new(s).unwrap()
    }
    fn wh(s: &str) -> WarehouseId {
        WarehouseId::new(s).unwrap()
    }

    /// A file database with WH1 {A: 5} and WH2 {A: 3}, committed.
    fn stocked(name: &str) -> (PathBuf, SqliteInventory) {
        let path = temp_db(&format!("overlay-{name}"));
        let inv = SqliteInventory::open(&path, Arc::new(SequentialIds::default())).unwrap();
        for w in ["WH1", "WH2"] {
            inv.add_warehouse(&wh(w)).unwrap();
        }
        inv.receive(&sku("A"), &wh("WH1"), 5).unwrap();
        inv.receive(&sku("A"), &wh("WH2"), 3).unwrap();
        (path, inv)
    }

    fn request(order: u64, warehouse: &str, q: u64) -> ReservationRequest {
        ReservationRequest::new(order).item(sku("A"), wh(warehouse), q)
    }

    /// Reserve `q` of sku A in `warehouse` for `order`, which must succeed.
    fn hold(inv: &SqliteInventory, order: u64, warehouse: &str, q: u64) -> Reservation {
        inv.reserve(&request(order, warehouse, q), T0)
            .unwrap()
            .into_reserved()
            .unwrap()
    }

    #[test]
    fn rows_changed_in_a_batch_are_written_once_at_the_commit() {
        let (path, inv) = stocked("commit");
        let store = inv.store();
        store.begin_batch().unwrap();
        let held = hold(&inv, 7, "WH1", 2);
        inv.commit(held.id, T0).unwrap();
        let shipped = inv.ship_from(held.id, &wh("WH1"), T0).unwrap();
        assert_eq!(shipped.status, ReservationStatus::Shipped);
        inv.add_warehouse(&wh("WH3")).unwrap();
        inv.receive(&sku("B"), &wh("WH3"), 4).unwrap();
        // This store reads its own batch; the database holds none of it yet.
        assert_eq!(inv.stock(&sku("A"), &wh("WH1")).unwrap().on_hand, 3);
        assert_eq!(
            inv.reservations_for_order(7).unwrap(),
            vec![shipped.clone()]
        );
        assert_eq!(
            count(store, "SELECT COUNT(*) FROM inventory_reservations"),
            0
        );
        assert_eq!(
            count(
                store,
                "SELECT on_hand FROM inventory WHERE sku = 'A' AND warehouse_id = 'WH1'"
            ),
            5
        );
        assert!(!store.overlay().unwrap().is_empty());
        store.commit_batch().unwrap();
        assert!(store.overlay().unwrap().is_empty());

        let other = SqliteInventory::open(&path, Arc::new(SequentialIds::default())).unwrap();
        assert_eq!(other.reservation(held.id).unwrap(), shipped);
        assert_eq!(other.stock(&sku("A"), &wh("WH1")).unwrap().on_hand, 3);
        assert_eq!(other.stock(&sku("B"), &wh("WH3")).unwrap().on_hand, 4);
        let rows = other.store();
        assert_eq!(
            count(
                rows,
                "SELECT COUNT(*) FROM inventory_reservation_items WHERE shipped = 1"
            ),
            1
        );
        assert_eq!(count(rows, "SELECT COUNT(*) FROM warehouses"), 3);
        assert_eq!(
            count(
                rows,
                "SELECT COUNT(*) FROM inventory_reservations WHERE status = 'shipped'"
            ),
            1
        );
    }

    #[test]
    fn a_refused_operation_in_a_batch_leaves_the_rows_as_they_were() {
        let (_, inv) = stocked("refused");
        let store = inv.store();
        store.begin_batch().unwrap();
        let first = hold(&inv, 1, "WH1", 4);
        // Two lines: the first could be held, the second cannot; neither may stay held.
        let both = ReservationRequest::new(2)
            .item(sku("A"), wh("WH2"), 3)
            .item(sku("A"), wh("WH1"), 2);
        let before = (
            inv.stock(&sku("A"), &wh("WH1")).unwrap(),
            inv.stock(&sku("A"), &wh("WH2")).unwrap(),
        );
        let refused = inv.reserve(&both, T0).unwrap();
        assert!(refused.into_reserved().is_err());
        assert_eq!(
            (
                inv.stock(&sku("A"), &wh("WH1")).unwrap(),
                inv.stock(&sku("A"), &wh("WH2")).unwrap()
            ),
            before
        );
        assert!(inv.release(999, T0).is_err());
        assert!(inv.commit(first.id, T0).is_ok());
        assert!(inv.commit(first.id, T0).is_err(), "committed twice");
        store.commit_batch().unwrap();
        let level = inv.stock(&sku("A"), &wh("WH1")).unwrap();
        assert_eq!((level.on_hand, level.reserved, level.allocated), (5, 0, 4));
        assert_eq!(inv.stock(&sku("A"), &wh("WH2")).unwrap().reserved, 0);
    }

    #[test]
    fn a_rolled_back_batch_forgets_its_rows() {
        let (_, inv) = stocked("rollback");
        let store = inv.store();
        store.begin_batch().unwrap();
        let held = hold(&inv, 1, "WH2", 3);
        assert_eq!(inv.stock(&sku("A"), &wh("WH2")).unwrap().available(), 0);
        store.rollback_batch().unwrap();
        assert!(store.overlay().unwrap().is_empty());
        assert!(inv.reservation(held.id).is_err());
        assert_eq!(inv.stock(&sku("A"), &wh("WH2")).unwrap().available(), 3);
    }

    #[test]
    fn the_indexes_follow_every_change_of_a_slot() {
        let (_, inv) = stocked("index");
        let r = hold(&inv, 1, "WH1", 1);
        let due = r.expires_at;
        let slot = |r: &Reservation, write| ReservationSlot {
            reservation: Some(r.clone()),
            write,
        };
        let ids = |slots: &ReservationSlots, now| {
            slots
                .open_and_due(now)
                .iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        };
        let mut slots = ReservationSlots::default();
        assert!(slots.insert(r.id, slot(&r, Write::Clean)).is_none());
        assert_eq!(ids(&slots, Timestamp(due.0 - 1)), Vec::<u64>::new());
        assert_eq!(ids(&slots, due), vec![r.id]);
        let of_order =
            |slots: &ReservationSlots| slots.of_order(1).map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(of_order(&slots), vec![r.id]);
        // Extended: due later, and no longer at the old expiry.
        let mut extended = r.clone();
        extended.expires_at = Timestamp(due.0 + 100);
        let before = slots.insert(r.id, slot(&extended, Write::Update { shipped: false }));
        assert_eq!(ids(&slots, due), Vec::<u64>::new());
        assert_eq!(ids(&slots, Timestamp(due.0 + 100)), vec![r.id]);
        // Committed: never due; put back (an undo): due again at the old expiry.
        let mut committed = extended.clone();
        committed.status = ReservationStatus::Allocated;
        slots.insert(r.id, slot(&committed, Write::Update { shipped: false }));
        assert_eq!(ids(&slots, Timestamp(i64::MAX)), Vec::<u64>::new());
        slots.insert(r.id, before.unwrap());
        assert_eq!(ids(&slots, due), vec![r.id]);
        // A known-absent id, and a removal, leave nothing behind.
        slots.insert(
            99,
            ReservationSlot {
                reservation: None,
                write: Write::Clean,
            },
        );
        assert_eq!(of_order(&slots), vec![r.id]);
        slots.remove(r.id);
        assert_eq!(ids(&slots, Timestamp(i64::MAX)), Vec::<u64>::new());
        assert!(slots.open.is_empty());
        assert_eq!(of_order(&slots), Vec::<u64>::new());
        assert!(slots.by_order.is_empty());
    }

    #[test]
    fn expiry_in_a_batch_sees_holds_of_the_batch_and_of_the_database() {
        let (_, inv) = stocked("expiry");
        let store = inv.store();
        let stored = hold(&inv, 1, "WH1", 1);
        store.begin_batch().unwrap();
        let batched = hold(&inv, 2, "WH2", 1);
        let extended = hold(&inv, 3, "WH1", 1);
        inv.extend(extended.id, oms_core::time::Duration(10_000_000), T0)
            .unwrap();
        let later = Timestamp(stored.expires_at.0.max(batched.expires_at.0));
        let expired: Vec<u64> = inv
            .expire(later)
            .unwrap()
            .iter()
            .map(|e| e.reservation_id)
            .collect();
        assert_eq!(expired, vec![stored.id, batched.id]);
        assert!(inv.expire(later).unwrap().is_empty(), "expired twice");
        store.commit_batch().unwrap();
        assert_eq!(inv.stock(&sku("A"), &wh("WH1")).unwrap().reserved, 1);
        assert_eq!(inv.stock(&sku("A"), &wh("WH2")).unwrap().reserved, 0);
        assert_eq!(
            inv.reservation(stored.id).unwrap().status,
            ReservationStatus::Released
        );
    }

    #[test]
    fn reservation_documents_are_compact_and_json_written_before_still_reads() {
        let (_path, inv) = stocked("documents");
        let held = hold(&inv, 7, "WH1", 2);
        let committed = inv.commit(held.id, T0).unwrap();
        let store = inv.store();
        let id = i64::try_from(held.id).unwrap();
        let document = |sql: &str| -> rusqlite::types::Value {
            store
                .lock()
                .unwrap()
                .query_row(sql, [id], |r| r.get(0))
                .unwrap()
        };
        let stored = document("SELECT document FROM inventory_reservations WHERE id = ?1");
        let rusqlite::types::Value::Blob(bytes) = &stored else {
            panic!("a reservation document is a compact blob: {stored:?}");
        };
        let json = serde_json::to_string(&committed).unwrap();
        assert!(
            bytes.len() < json.len(),
            "{} vs {}",
            bytes.len(),
            json.len()
        );
        assert_eq!(inv.reservation(held.id).unwrap(), committed);
        // A row written as JSON text reads back the same, by id, by order and when expiring.
        store
            .lock()
            .unwrap()
            .execute(
                "UPDATE inventory_reservations SET document = ?2 WHERE id = ?1",
                rusqlite::params![id, json],
            )
            .unwrap();
        assert_eq!(inv.reservation(held.id).unwrap(), committed);
        assert_eq!(inv.reservations_for_order(7).unwrap(), vec![committed]);
        // A damaged document is a storage error, not a panic.
        store
            .lock()
            .unwrap()
            .execute(
                "UPDATE inventory_reservations SET document = X'0000000001FF' WHERE id = ?1",
                [id],
            )
            .unwrap();
        assert_eq!(inv.reservation(held.id).unwrap_err().code(), "storage");
    }
}
