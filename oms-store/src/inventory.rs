//! The inventory operations, written once over [`Ledger`]: the few row operations each SQL
//! backend provides inside one of its transactions.
//!
//! Each function follows the matching `MemoryInventory` method step for step (the same checks
//! in the same order, the same records, the same errors), so every backend answers a call
//! sequence exactly as the reference store does. Stock rows are always locked in
//! (sku, warehouse) order, after any reservation row the operation touches, so two
//! transactions never wait on each other in a cycle.

use std::collections::{BTreeMap, BTreeSet};

use oms_core::error::OmsError;
use oms_core::inventory::{
    spread_quantity, Adjustment, ExpiredReservation, ReleaseReason, RequestLine, Reservation,
    ReservationConfig, ReservationEvent, ReservationItem, ReservationRequest, ReservationStatus,
    ReserveOutcome, ReservingBranch, ReturnCondition, StockLevel, StockRow, WarehouseId,
};
use oms_core::order::Sku;
use oms_core::time::{Duration, IdGenerator, Timestamp};

/// One ledger row's key.
pub(crate) type Key = (Sku, WarehouseId);

/// Stock moves computed against locked rows and written only when all of them succeeded.
type Staged = BTreeMap<Key, StockLevel>;

/// A stock row as a batch first read it from the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FirstRead {
    /// Written before it was ever read.
    Never,
    /// Read, and there was no row.
    Absent,
    /// Read with these counts.
    Present(StockLevel),
}

/// The row operations of one backend, all inside the caller's transaction.
pub(crate) trait Ledger {
    /// The backend's failure type: a domain refusal or a (maybe retryable) database error.
    type Error: From<OmsError>;

    /// Whether any ledger row names `sku` (a sku becomes known when first received).
    fn sku_known(&mut self, sku: &Sku) -> Result<bool, Self::Error>;
    /// Whether `warehouse` was added.
    fn warehouse_known(&mut self, warehouse: &WarehouseId) -> Result<bool, Self::Error>;
    /// The first of `skus` no ledger row names.
    fn unknown_sku<'s>(&mut self, skus: &[&'s Sku]) -> Result<Option<&'s Sku>, Self::Error> {
        for sku in skus {
            if !self.sku_known(sku)? {
                return Ok(Some(sku));
            }
        }
        Ok(None)
    }
    /// The first of `warehouses` not added.
    fn unknown_warehouse<'w>(
        &mut self,
        warehouses: &[&'w WarehouseId],
    ) -> Result<Option<&'w WarehouseId>, Self::Error> {
        for w in warehouses {
            if !self.warehouse_known(w)? {
                return Ok(Some(w));
            }
        }
        Ok(None)
    }
    /// The rows of `keys` that exist, unlocked.
    fn levels_of(
        &mut self,
        keys: &BTreeSet<Key>,
    ) -> Result<BTreeMap<Key, StockLevel>, Self::Error> {
        let mut found = BTreeMap::new();
        for key in keys {
            if let Some(level) = self.level(key, false)? {
                found.insert(key.clone(), level);
            }
        }
        Ok(found)
    }
    /// The three reads a reserve starts with, which a backend may answer in one round trip:
    /// the first unknown of `skus`, the first unknown of `warehouses`, and the rows of `keys`.
    fn lookup<'s, 'w>(
        &mut self,
        skus: &[&'s Sku],
        warehouses: &[&'w WarehouseId],
        keys: &BTreeSet<Key>,
    ) -> Result<Lookup<'s, 'w>, Self::Error> {
        if let Some(sku) = self.unknown_sku(skus)? {
            return Ok(Lookup::UnknownSku(sku));
        }
        if let Some(w) = self.unknown_warehouse(warehouses)? {
            return Ok(Lookup::UnknownWarehouse(w));
        }
        Ok(Lookup::Levels(self.levels_of(keys)?))
    }
    /// Add `warehouse` if it is not there yet.
    fn add_warehouse(&mut self, warehouse: &WarehouseId) -> Result<(), Self::Error>;
    /// The row of `key`; with `lock`, no other writer can change it until this transaction ends.
    fn level(&mut self, key: &Key, lock: bool) -> Result<Option<StockLevel>, Self::Error>;
    /// Write the row of `key`, creating it if needed.
    fn put_level(&mut self, key: &Key, level: StockLevel) -> Result<(), Self::Error>;
    /// Write a batch's final counts of a stock row at its commit, given the row as the batch
    /// first read it. A store whose rows other writers may have changed
    /// meanwhile applies the difference instead of the counts; by default, the counts.
    fn write_level(
        &mut self,
        key: &Key,
        read: FirstRead,
        level: StockLevel,
    ) -> Result<(), Self::Error> {
        let _ = read;
        self.put_level(key, level)
    }
    /// The conditional update: `reserved += quantity` only where at least `quantity` units are
    /// available. False when no row matched.
    fn reserve_units(&mut self, key: &Key, quantity: u64) -> Result<bool, Self::Error>;
    /// Every row, in any order.
    fn levels(&mut self) -> Result<Vec<StockRow>, Self::Error>;
    /// One reservation; with `lock`, locked for update.
    fn reservation(&mut self, id: u64, lock: bool) -> Result<Option<Reservation>, Self::Error>;
    /// Store a new reservation (header row, item rows, document); false, with nothing
    /// written, if its id is taken.
    fn insert_reservation(&mut self, r: &Reservation) -> Result<bool, Self::Error>;
    /// Rewrite a stored reservation; `shipped_changed` when its shipped warehouses changed.
    fn update_reservation(
        &mut self,
        r: &Reservation,
        shipped_changed: bool,
    ) -> Result<(), Self::Error>;
    /// Reserved or awaiting-decision reservations with `expires_at <= now`, in id order,
    /// locked for update.
    fn expired_open(&mut self, now: Timestamp) -> Result<Vec<Reservation>, Self::Error>;
    /// Every reservation of `order_id`, in id order.
    fn reservations_for_order(&mut self, order_id: u64) -> Result<Vec<Reservation>, Self::Error>;
}

/// What [`Ledger::lookup`] found.
pub(crate) enum Lookup<'s, 'w> {
    /// This sku is unknown (the first such in the request).
    UnknownSku(&'s Sku),
    /// Every sku is known; this warehouse is not.
    UnknownWarehouse(&'w WarehouseId),
    /// Everything is known; the existing rows of the keys asked for.
    Levels(BTreeMap<Key, StockLevel>),
}

/// The status values that can expire, as stored in the `status` column.
pub(crate) const OPEN_STATUSES: [ReservationStatus; 2] = [
    ReservationStatus::Reserved,
    ReservationStatus::AwaitingCustomerDecision,
];

fn enter(r: &mut Reservation, next: ReservationStatus, now: Timestamp) {
    r.status = next;
    r.path.push(next);
    r.updated_at = now;
}

fn invalid_zero() -> OmsError {
    OmsError::InvalidQuantity {
        quantity: "0".into(),
        reason: "must be at least 1".into(),
    }
}

fn unknown_sku(sku: &Sku) -> OmsError {
    OmsError::UnknownSku {
        sku: sku.to_string(),
    }
}

fn unknown_warehouse(warehouse: &WarehouseId) -> OmsError {
    OmsError::UnknownWarehouse {
        warehouse: warehouse.to_string(),
    }
}

fn not_found(id: u64) -> OmsError {
    OmsError::NotFound {
        kind: "reservation".into(),
        id: id.to_string(),
    }
}

fn known<L: Ledger + ?Sized>(
    l: &mut L,
    sku: &Sku,
    warehouse: &WarehouseId,
) -> Result<(), L::Error> {
    if !l.sku_known(sku)? {
        return Err(unknown_sku(sku).into());
    }
    known_warehouse(l, warehouse)
}

fn known_warehouse<L: Ledger + ?Sized>(l: &mut L, warehouse: &WarehouseId) -> Result<(), L::Error> {
    if l.warehouse_known(warehouse)? {
        Ok(())
    } else {
        Err(unknown_warehouse(warehouse).into())
    }
}

fn get<L: Ledger + ?Sized>(l: &mut L, id: u64) -> Result<Reservation, L::Error> {
    l.reservation(id, true)?.ok_or_else(|| not_found(id).into())
}

/// Lock the rows of `keys` in key order and return their current counts.
fn lock_levels<L: Ledger + ?Sized>(l: &mut L, keys: BTreeSet<Key>) -> Result<Staged, L::Error> {
    let mut current = Staged::new();
    for key in keys {
        let level = l.level(&key, true)?.unwrap_or_default();
        current.insert(key, level);
    }
    Ok(current)
}

fn item_keys(items: &[ReservationItem]) -> BTreeSet<Key> {
    items
        .iter()
        .map(|i| (i.sku.clone(), i.warehouse.clone()))
        .collect()
}

fn per_key(items: &[ReservationItem]) -> Result<BTreeMap<Key, u64>, OmsError> {
    let mut totals: BTreeMap<Key, u64> = BTreeMap::new();
    for item in items {
        let total = totals
            .entry((item.sku.clone(), item.warehouse.clone()))
            .or_default();
        *total = total
            .checked_add(item.quantity)
            .ok_or_else(|| OmsError::overflow("reservation quantity"))?;
    }
    Ok(totals)
}

/// Apply `mv` to each key of `items` (grouped, in key order) on top of `staged`.
fn stage<L, F>(
    l: &mut L,
    staged: &mut Staged,
    items: &[ReservationItem],
    mv: F,
) -> Result<(), L::Error>
where
    L: Ledger + ?Sized,
    F: Fn(StockLevel, u64) -> Result<StockLevel, OmsError>,
{
    for (key, quantity) in per_key(items)? {
        let current = match staged.get(&key) {
            Some(level) => *level,
            None => l.level(&key, true)?.unwrap_or_default(),
        };
        let next = mv(current, quantity)?;
        staged.insert(key, next);
    }
    Ok(())
}

fn write_staged<L: Ledger + ?Sized>(l: &mut L, staged: Staged) -> Result<(), L::Error> {
    for (key, level) in staged {
        l.put_level(&key, level)?;
    }
    Ok(())
}

/// The units each line can get now, lines in order and warehouses in the line's order.
fn offer(current: &Staged, lines: &[RequestLine]) -> Vec<ReservationItem> {
    let mut left: BTreeMap<Key, u64> = BTreeMap::new();
    let mut items = Vec::new();
    for line in lines {
        let keys: Vec<Key> = line
            .warehouses()
            .into_iter()
            .map(|w| (line.sku().clone(), w.clone()))
            .collect();
        let avail: Vec<u64> = keys
            .iter()
            .map(|k| {
                *left
                    .entry(k.clone())
                    .or_insert_with(|| current.get(k).copied().unwrap_or_default().available())
            })
            .collect();
        let (parts, _) = spread_quantity(line.quantity(), &avail);
        for (i, take) in parts {
            if let Some(key) = keys.get(i) {
                if let Some(l) = left.get_mut(key) {
                    *l = l.saturating_sub(take);
                }
                items.push(ReservationItem::new(key.0.clone(), key.1.clone(), take));
            }
        }
    }
    items
}

/// The seed's fork/join on a reservation in `Reserving` whose rows are locked: one conditional
/// update per (sku, warehouse) in key order, then the record. Any failure rolls back the
/// caller's transaction.
fn hold<L: Ledger + ?Sized>(
    l: &mut L,
    mut r: Reservation,
    now: Timestamp,
    new: bool,
) -> Result<Reservation, L::Error> {
    let mut join = r.status.fork()?;
    join.complete(ReservingBranch::LockRecords);
    for (key, quantity) in per_key(&r.items)? {
        if !l.reserve_units(&key, quantity)? {
            // A concurrent reserver won the units after the check: report what is left.
            let level = l.level(&key, false)?.unwrap_or_default();
            let err = match level.reserved_more(quantity, &key.0, &key.1) {
                Err(e) => e,
                Ok(_) => OmsError::InsufficientStock {
                    sku: key.0.to_string(),
                    warehouse: key.1.to_string(),
                    requested: quantity,
                    available: level.available(),
                },
            };
            return Err(err.into());
        }
    }
    join.complete(ReservingBranch::UpdateStockCounts);
    join.complete(ReservingBranch::CreateRecord);
    let reserved = join.finish()?;
    enter(&mut r, reserved, now);
    if new {
        insert(l, &r)?;
    } else {
        l.update_reservation(&r, false)?;
    }
    Ok(r)
}

/// Store a new reservation, refusing a reused id.
fn insert<L: Ledger + ?Sized>(l: &mut L, r: &Reservation) -> Result<(), L::Error> {
    if l.insert_reservation(r)? {
        Ok(())
    } else {
        // Overwriting would silently drop a hold and leak its units.
        Err(OmsError::Storage {
            reason: format!("id generator returned reservation id {} twice", r.id),
        }
        .into())
    }
}

/// Change one reservation: `f` edits the locked copy and stages stock moves; both are written
/// only if `f` succeeds.
fn update<L, F>(l: &mut L, id: u64, f: F) -> Result<Reservation, L::Error>
where
    L: Ledger + ?Sized,
    F: FnOnce(&mut L, &mut Reservation, &mut Staged) -> Result<(), L::Error>,
{
    let mut r = get(l, id)?;
    let shipped_before = r.shipped_from.len();
    let mut staged = Staged::new();
    f(l, &mut r, &mut staged)?;
    write_staged(l, staged)?;
    // Shipping only ever adds warehouses, so a changed set is a longer one.
    l.update_reservation(&r, r.shipped_from.len() != shipped_before)?;
    Ok(r)
}

fn set_level<L, F>(
    l: &mut L,
    sku: &Sku,
    warehouse: &WarehouseId,
    f: F,
) -> Result<StockLevel, L::Error>
where
    L: Ledger + ?Sized,
    F: FnOnce(StockLevel) -> Result<StockLevel, OmsError>,
{
    known(l, sku, warehouse)?;
    let key = (sku.clone(), warehouse.clone());
    let next = f(l.level(&key, true)?.unwrap_or_default())?;
    l.put_level(&key, next)?;
    Ok(next)
}

/// `InventoryStore::add_warehouse`.
pub(crate) fn add_warehouse<L: Ledger + ?Sized>(
    l: &mut L,
    warehouse: &WarehouseId,
) -> Result<(), L::Error> {
    l.add_warehouse(warehouse)
}

/// `InventoryStore::receive`.
pub(crate) fn receive<L: Ledger + ?Sized>(
    l: &mut L,
    sku: &Sku,
    warehouse: &WarehouseId,
    quantity: u64,
) -> Result<StockLevel, L::Error> {
    if quantity == 0 {
        return Err(invalid_zero().into());
    }
    known_warehouse(l, warehouse)?;
    let key = (sku.clone(), warehouse.clone());
    let next = l
        .level(&key, true)?
        .unwrap_or_default()
        .received(quantity)?;
    l.put_level(&key, next)?;
    Ok(next)
}

/// `InventoryStore::adjust`.
pub(crate) fn adjust<L: Ledger + ?Sized>(
    l: &mut L,
    sku: &Sku,
    warehouse: &WarehouseId,
    adjustment: Adjustment,
) -> Result<StockLevel, L::Error> {
    if adjustment == Adjustment::Delta(0) {
        return Err(invalid_zero().into());
    }
    set_level(l, sku, warehouse, |lv| {
        lv.adjusted(adjustment, sku, warehouse)
    })
}

/// `InventoryStore::restock_return`.
pub(crate) fn restock_return<L: Ledger + ?Sized>(
    l: &mut L,
    sku: &Sku,
    warehouse: &WarehouseId,
    quantity: u64,
    condition: ReturnCondition,
) -> Result<StockLevel, L::Error> {
    if quantity == 0 {
        return Err(invalid_zero().into());
    }
    set_level(l, sku, warehouse, |lv| lv.returned(quantity, condition))
}

/// `InventoryStore::stock`.
pub(crate) fn stock<L: Ledger + ?Sized>(
    l: &mut L,
    sku: &Sku,
    warehouse: &WarehouseId,
) -> Result<StockLevel, L::Error> {
    // A stock row names a known sku in a known warehouse, so only a missing row needs the
    // two existence checks (one query instead of three on the common path).
    if let Some(level) = l.level(&(sku.clone(), warehouse.clone()), false)? {
        return Ok(level);
    }
    known(l, sku, warehouse)?;
    Ok(StockLevel::default())
}

/// `InventoryStore::levels`, ordered by (sku, warehouse) as Rust orders them (byte order),
/// whatever the database's collation.
pub(crate) fn levels<L: Ledger + ?Sized>(l: &mut L) -> Result<Vec<StockRow>, L::Error> {
    let mut rows = l.levels()?;
    rows.sort_by(|a, b| (&a.sku, &a.warehouse).cmp(&(&b.sku, &b.warehouse)));
    Ok(rows)
}

/// `InventoryStore::reserve`. `drawn` keeps the reservation id across retries of the same
/// call, so a retried transaction does not draw a second id.
pub(crate) fn reserve<L: Ledger + ?Sized>(
    l: &mut L,
    ids: &dyn IdGenerator,
    drawn: &mut Option<u64>,
    config: ReservationConfig,
    request: &ReservationRequest,
    now: Timestamp,
) -> Result<ReserveOutcome, L::Error> {
    request.validate()?;
    // Precedence of the error enum: every unknown sku before any unknown warehouse.
    let skus: Vec<&Sku> = request.lines.iter().map(RequestLine::sku).collect();
    let warehouses: Vec<&WarehouseId> = request
        .lines
        .iter()
        .flat_map(RequestLine::warehouses)
        .collect();
    let keys: BTreeSet<Key> = request
        .lines
        .iter()
        .flat_map(|line| {
            line.warehouses()
                .into_iter()
                .map(|w| (line.sku().clone(), w.clone()))
        })
        .collect();
    // The availability check reads without locking; the conditional updates are what hold
    // the units, and if a concurrent reserver took them first the whole call rolls back
    // with `InsufficientStock`.
    let current = match l.lookup(&skus, &warehouses, &keys)? {
        Lookup::UnknownSku(sku) => return Err(unknown_sku(sku).into()),
        Lookup::UnknownWarehouse(w) => return Err(unknown_warehouse(w).into()),
        Lookup::Levels(levels) => levels,
    };
    let ttl = request.ttl.unwrap_or(config.default_ttl);
    let id = *drawn.get_or_insert_with(|| ids.next_id("reservation"));
    let mut r = Reservation::checking(id, request, ttl, now)?;
    r.items = offer(&current, &request.lines);
    if r.shortfall().is_none() {
        r.step(ReservationEvent::AllInStock, now)?;
        r.step(ReservationEvent::BeginReservation, now)?;
        return hold(l, r, now, true).map(ReserveOutcome::Reserved);
    }
    if r.items.is_empty() {
        r.step(ReservationEvent::NoneAvailable, now)?;
        r.step(ReservationEvent::NotifyCustomer, now)?;
        insert(l, &r)?;
        return Ok(ReserveOutcome::OutOfStock(r));
    }
    r.step(ReservationEvent::Partial, now)?;
    r.step(ReservationEvent::OfferPartial, now)?;
    insert(l, &r)?;
    Ok(ReserveOutcome::PartiallyAvailable(r))
}

/// `InventoryStore::accept_partial`.
pub(crate) fn accept_partial<L: Ledger + ?Sized>(
    l: &mut L,
    id: u64,
    now: Timestamp,
) -> Result<Reservation, L::Error> {
    let mut r = get(l, id)?;
    if r.status.is_closed() {
        return Err(r.closed_error().into());
    }
    r.step(ReservationEvent::AcceptPartial, now)?;
    if r.is_expired(now) {
        return Err(r.expired_error().into());
    }
    r.expires_at = now.plus(r.ttl);
    hold(l, r, now, false)
}

/// `InventoryStore::decline_partial`.
pub(crate) fn decline_partial<L: Ledger + ?Sized>(
    l: &mut L,
    id: u64,
    now: Timestamp,
) -> Result<Reservation, L::Error> {
    update(l, id, |_, r, _| {
        if r.status.is_closed() {
            return Err(r.closed_error().into());
        }
        Ok(r.step(ReservationEvent::DeclinePartial, now)?)
    })
}

/// `InventoryStore::release`.
pub(crate) fn release<L: Ledger + ?Sized>(
    l: &mut L,
    id: u64,
    now: Timestamp,
) -> Result<Reservation, L::Error> {
    update(l, id, |l, r, staged| {
        if r.status.is_closed() {
            return Err(r.closed_error().into());
        }
        let was = r.status;
        let event = if was == ReservationStatus::Allocated {
            ReservationEvent::Deallocate
        } else {
            ReservationEvent::Release
        };
        r.step(event, now)?;
        if was == ReservationStatus::Allocated {
            // Units already shipped left the building; only the rest go back.
            stage(l, staged, &r.unshipped_items(), StockLevel::deallocated)?;
        } else {
            stage(l, staged, &r.items, StockLevel::released)?;
        }
        r.release_reason = Some(ReleaseReason::Cancelled);
        Ok(())
    })
}

/// `InventoryStore::commit`.
pub(crate) fn commit<L: Ledger + ?Sized>(
    l: &mut L,
    id: u64,
    now: Timestamp,
) -> Result<Reservation, L::Error> {
    update(l, id, |l, r, staged| {
        if r.status.is_closed() || r.status == ReservationStatus::Allocated {
            return Err(r.closed_error().into());
        }
        r.step(ReservationEvent::Commit, now)?;
        if r.is_expired(now) {
            return Err(r.expired_error().into());
        }
        stage(l, staged, &r.items, StockLevel::committed)
    })
}

/// `InventoryStore::ship`.
pub(crate) fn ship<L: Ledger + ?Sized>(
    l: &mut L,
    id: u64,
    now: Timestamp,
) -> Result<Reservation, L::Error> {
    update(l, id, |l, r, staged| {
        if r.status.is_closed() {
            return Err(r.closed_error().into());
        }
        r.step(ReservationEvent::Ship, now)?;
        stage(l, staged, &r.unshipped_items(), StockLevel::consumed)?;
        r.shipped_from = r.items.iter().map(|i| i.warehouse.clone()).collect();
        Ok(())
    })
}

/// `InventoryStore::ship_from`.
pub(crate) fn ship_from<L: Ledger + ?Sized>(
    l: &mut L,
    id: u64,
    warehouse: &WarehouseId,
    now: Timestamp,
) -> Result<Reservation, L::Error> {
    update(l, id, |l, r, staged| {
        if r.status.is_closed() {
            return Err(r.closed_error().into());
        }
        let shipped = r.status.next(ReservationEvent::Ship)?;
        let items: Vec<ReservationItem> = r
            .items
            .iter()
            .filter(|i| &i.warehouse == warehouse)
            .cloned()
            .collect();
        if items.is_empty() {
            return Err(OmsError::invalid(
                "warehouse",
                format!("reservation {} holds nothing in {warehouse}", r.id),
            )
            .into());
        }
        if r.shipped_from.contains(warehouse) {
            return Err(OmsError::GuardFailed {
                from: format!("reservation {}", r.status),
                event: ReservationEvent::Ship.as_str().into(),
                reason: format!("already shipped from {warehouse}"),
            }
            .into());
        }
        stage(l, staged, &items, StockLevel::consumed)?;
        r.shipped_from.insert(warehouse.clone());
        if r.unshipped_items().is_empty() {
            enter(r, shipped, now);
        } else {
            r.updated_at = now;
        }
        Ok(())
    })
}

/// `InventoryStore::extend`.
pub(crate) fn extend<L: Ledger + ?Sized>(
    l: &mut L,
    id: u64,
    by: Duration,
    now: Timestamp,
) -> Result<Reservation, L::Error> {
    if by.millis() <= 0 {
        return Err(OmsError::invalid("by", "must be positive").into());
    }
    update(l, id, |_, r, _| {
        if r.status.is_closed() || r.status == ReservationStatus::Allocated {
            return Err(r.closed_error().into());
        }
        if r.is_expired(now) {
            return Err(r.expired_error().into());
        }
        r.expires_at = r.expires_at.plus(by);
        r.updated_at = now;
        Ok(())
    })
}

/// `InventoryStore::expire`.
pub(crate) fn expire<L: Ledger + ?Sized>(
    l: &mut L,
    now: Timestamp,
) -> Result<Vec<ExpiredReservation>, L::Error> {
    let open = l.expired_open(now)?;
    // Every stock row the sweep will touch, locked in key order before any is changed.
    let keys: BTreeSet<Key> = open
        .iter()
        .filter(|r| r.status == ReservationStatus::Reserved)
        .flat_map(|r| item_keys(&r.items))
        .collect();
    lock_levels(l, keys)?;
    let mut staged = Staged::new();
    let mut changed = Vec::new();
    let mut report = Vec::new();
    for mut r in open {
        if !OPEN_STATUSES.contains(&r.status) || !r.is_expired(now) {
            continue;
        }
        match r.status {
            ReservationStatus::Reserved => {
                r.step(ReservationEvent::Release, now)?;
                stage(l, &mut staged, &r.items, StockLevel::released)?;
                r.release_reason = Some(ReleaseReason::Expired);
                report.push(ExpiredReservation {
                    reservation_id: r.id,
                    order_id: r.order_id,
                    items: r.items.clone(),
                });
            }
            ReservationStatus::AwaitingCustomerDecision => {
                r.step(ReservationEvent::DeclinePartial, now)?;
            }
            _ => continue,
        }
        changed.push(r);
    }
    write_staged(l, staged)?;
    for r in &changed {
        l.update_reservation(r, false)?;
    }
    Ok(report)
}

/// `InventoryStore::reservation`.
pub(crate) fn reservation<L: Ledger + ?Sized>(l: &mut L, id: u64) -> Result<Reservation, L::Error> {
    l.reservation(id, false)?
        .ok_or_else(|| not_found(id).into())
}

/// `InventoryStore::reservations_for_order`.
pub(crate) fn reservations_for_order<L: Ledger + ?Sized>(
    l: &mut L,
    order_id: u64,
) -> Result<Vec<Reservation>, L::Error> {
    l.reservations_for_order(order_id)
}
