//! The [`InventoryStore`] trait every storage backend implements, and [`MemoryInventory`], the
//! in-memory store whose every operation is atomic.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use crate::error::{OmsError, OmsResult};
use crate::order::Sku;
use crate::time::{Duration, IdGenerator, Timestamp};

use super::ledger::{positive, Adjustment, ReturnCondition, StockLevel, StockRow, WarehouseId};
use super::reservation::{
    spread_quantity, ReleaseReason, RequestLine, Reservation, ReservationConfig, ReservationEvent,
    ReservationItem, ReservationRequest, ReservationStatus, ReservingBranch,
};

/// What [`InventoryStore::reserve`] did with a request. Every outcome is recorded and can be
/// read back with [`InventoryStore::reservation`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "reservation")]
pub enum ReserveOutcome {
    /// Every unit is held (`Reserved`).
    Reserved(Reservation),
    /// Only part is available: nothing is held, the available quantities are offered in
    /// `items` (`AwaitingCustomerDecision`); answer with
    /// [`InventoryStore::accept_partial`] or [`InventoryStore::decline_partial`].
    PartiallyAvailable(Reservation),
    /// Nothing is available: nothing is held (`Failed`).
    OutOfStock(Reservation),
}

impl ReserveOutcome {
    /// The recorded reservation, whatever the outcome.
    pub fn reservation(&self) -> &Reservation {
        match self {
            Self::Reserved(r) | Self::PartiallyAvailable(r) | Self::OutOfStock(r) => r,
        }
    }

    /// The reservation if every unit is held; otherwise `InsufficientStock` naming the first
    /// short line (for callers that take all or nothing, as seed 001 §3 does).
    pub fn into_reserved(self) -> OmsResult<Reservation> {
        match self {
            Self::Reserved(r) => Ok(r),
            Self::PartiallyAvailable(r) | Self::OutOfStock(r) => {
                Err(r.shortfall().unwrap_or_else(|| r.closed_error()))
            }
        }
    }
}

/// One reservation released by [`InventoryStore::expire`]: the order it belonged to is the one
/// to cancel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiredReservation {
    /// The reservation.
    pub reservation_id: u64,
    /// Its order.
    pub order_id: u64,
    /// The units that went back to available.
    pub items: Vec<ReservationItem>,
}

/// Stock and reservations, as a storage backend keeps them.
///
/// Every method is atomic: it completes entirely or returns an error with nothing changed.
/// Implementations must hold stock with a conditional update (`reserved += q` only where
/// `on_hand − reserved − allocated >= q`, every line of a request in one transaction, rows
/// locked in (sku, warehouse) order) rather than reading availability and writing later, so
/// concurrent reservers can never drive `available` below zero.
///
/// Skus become known when first received; warehouses when added. Quantities are at least 1.
pub trait InventoryStore: Send + Sync {
    /// Make `warehouse` known (idempotent).
    fn add_warehouse(&self, warehouse: &WarehouseId) -> OmsResult<()>;

    /// Receive `quantity` sellable units of `sku` into `warehouse`.
    fn receive(&self, sku: &Sku, warehouse: &WarehouseId, quantity: u64) -> OmsResult<StockLevel>;

    /// Apply a cycle count or correction; units held by reservations cannot be counted away.
    fn adjust(
        &self,
        sku: &Sku,
        warehouse: &WarehouseId,
        adjustment: Adjustment,
    ) -> OmsResult<StockLevel>;

    /// Put `quantity` returned units back: sellable to `on_hand`, damaged to `damaged`.
    fn restock_return(
        &self,
        sku: &Sku,
        warehouse: &WarehouseId,
        quantity: u64,
        condition: ReturnCondition,
    ) -> OmsResult<StockLevel>;

    /// The counts of `sku` in `warehouse` (zeros if the sku is known but never stocked there).
    fn stock(&self, sku: &Sku, warehouse: &WarehouseId) -> OmsResult<StockLevel>;

    /// Every ledger row, ordered by (sku, warehouse).
    fn levels(&self) -> OmsResult<Vec<StockRow>>;

    /// Check availability and hold every line of `request` or none of it, expiring
    /// `request.ttl` (or the default) after `now`. When every unit is available the
    /// lock/record/stock-update steps run as one transaction; if a conditional update finds
    /// fewer units than the check did (a concurrent reserver won), the transaction rolls back
    /// and the call returns `InsufficientStock` with nothing recorded.
    fn reserve(&self, request: &ReservationRequest, now: Timestamp) -> OmsResult<ReserveOutcome>;

    /// Hold the quantities a partial offer proposed; the hold runs a full ttl from `now`.
    fn accept_partial(&self, reservation_id: u64, now: Timestamp) -> OmsResult<Reservation>;

    /// Refuse a partial offer (`Failed`).
    fn decline_partial(&self, reservation_id: u64, now: Timestamp) -> OmsResult<Reservation>;

    /// Give the held units back (order cancelled or payment failed): reserved or, after
    /// commit, allocated units become available again.
    fn release(&self, reservation_id: u64, now: Timestamp) -> OmsResult<Reservation>;

    /// Commit at fulfillment: reserved units become allocated. Refused once expired.
    fn commit(&self, reservation_id: u64, now: Timestamp) -> OmsResult<Reservation>;

    /// Every allocated unit not shipped yet left the warehouse: it leaves `allocated` and
    /// `on_hand`, and the reservation is `Shipped`.
    fn ship(&self, reservation_id: u64, now: Timestamp) -> OmsResult<Reservation>;

    /// The allocated units held in `warehouse` shipped (one shipment of a split order); the
    /// reservation is `Shipped` once every warehouse it holds units in has shipped.
    fn ship_from(
        &self,
        reservation_id: u64,
        warehouse: &WarehouseId,
        now: Timestamp,
    ) -> OmsResult<Reservation>;

    /// Push `expires_at` of a hold or an offer back by `by`.
    fn extend(&self, reservation_id: u64, by: Duration, now: Timestamp) -> OmsResult<Reservation>;

    /// Release every hold whose `expires_at <= now`, each exactly once, and lapse expired
    /// partial offers to `Failed`. Returns the released holds in id order; a second call at
    /// the same instant returns nothing.
    fn expire(&self, now: Timestamp) -> OmsResult<Vec<ExpiredReservation>>;

    /// One reservation by id (`NotFound` if none).
    fn reservation(&self, reservation_id: u64) -> OmsResult<Reservation>;

    /// Every reservation of an order, in id order (empty if none).
    fn reservations_for_order(&self, order_id: u64) -> OmsResult<Vec<Reservation>>;
}

/// The seed's every-minute job: release every expired reservation in `store`.
pub fn expire_reservations(
    store: &dyn InventoryStore,
    now: Timestamp,
) -> OmsResult<Vec<ExpiredReservation>> {
    store.expire(now)
}

type Key = (Sku, WarehouseId);

#[derive(Debug, Default)]
struct State {
    warehouses: BTreeSet<WarehouseId>,
    skus: BTreeSet<Sku>,
    stock: BTreeMap<Key, StockLevel>,
    reservations: BTreeMap<u64, Reservation>,
    by_order: BTreeMap<u64, BTreeSet<u64>>,
    /// The open holds (reserved, or awaiting the customer's decision) by expiry, so a sweep
    /// visits only what is due instead of every reservation ever made.
    open_by_expiry: BTreeSet<(Timestamp, u64)>,
}

/// Whether `r` is a hold an expiry sweep may end.
fn sweepable(r: &Reservation) -> bool {
    matches!(
        r.status,
        ReservationStatus::Reserved | ReservationStatus::AwaitingCustomerDecision
    )
}

/// Stock moves computed against a snapshot and written only when all of them succeeded.
type Staged = BTreeMap<Key, StockLevel>;

impl State {
    fn level(&self, key: &Key) -> StockLevel {
        self.stock.get(key).copied().unwrap_or_default()
    }

    fn known(&self, sku: &Sku, warehouse: &WarehouseId) -> OmsResult<()> {
        if !self.skus.contains(sku) {
            return Err(OmsError::UnknownSku {
                sku: sku.to_string(),
            });
        }
        self.known_warehouse(warehouse)
    }

    fn known_warehouse(&self, warehouse: &WarehouseId) -> OmsResult<()> {
        if self.warehouses.contains(warehouse) {
            Ok(())
        } else {
            Err(OmsError::UnknownWarehouse {
                warehouse: warehouse.to_string(),
            })
        }
    }

    fn get(&self, id: u64) -> OmsResult<&Reservation> {
        self.reservations
            .get(&id)
            .ok_or_else(|| OmsError::NotFound {
                kind: "reservation".into(),
                id: id.to_string(),
            })
    }

    /// Apply `mv` to each (sku, warehouse) of `items`, grouped per key and visited in key
    /// order (the lock order a SQL store uses), on top of `staged`.
    fn stage<F>(&self, staged: &mut Staged, items: &[ReservationItem], mv: F) -> OmsResult<()>
    where
        F: Fn(StockLevel, u64, &Sku, &WarehouseId) -> OmsResult<StockLevel>,
    {
        let mut per_key: BTreeMap<Key, u64> = BTreeMap::new();
        for item in items {
            let total = per_key
                .entry((item.sku.clone(), item.warehouse.clone()))
                .or_default();
            *total = total
                .checked_add(item.quantity)
                .ok_or_else(|| OmsError::overflow("reservation quantity"))?;
        }
        for (key, quantity) in per_key {
            let current = staged
                .get(&key)
                .copied()
                .unwrap_or_else(|| self.level(&key));
            let next = mv(current, quantity, &key.0, &key.1)?;
            staged.insert(key, next);
        }
        Ok(())
    }

    /// The fork/join of seed 000 §3 on `reservation` (in `Reserving`): lock the rows, update
    /// the counts conditionally, write the record. On any failure nothing is written.
    fn hold(&mut self, mut reservation: Reservation, now: Timestamp) -> OmsResult<Reservation> {
        let mut join = reservation.status.fork()?;
        // The mutex is the lock; visiting keys in order is what a row-locking store must do.
        join.complete(ReservingBranch::LockRecords);
        let mut staged = Staged::new();
        self.stage(&mut staged, &reservation.items, |l, q, s, w| {
            l.reserved_more(q, s, w)
        })?;
        join.complete(ReservingBranch::UpdateStockCounts);
        join.complete(ReservingBranch::CreateRecord);
        let reserved = join.finish()?;
        reservation.enter(reserved, now);
        self.stock.extend(staged);
        self.put(reservation.clone());
        Ok(reservation)
    }

    fn put(&mut self, reservation: Reservation) {
        if let Some(old) = self.reservations.get(&reservation.id) {
            self.open_by_expiry.remove(&(old.expires_at, old.id));
        }
        if sweepable(&reservation) {
            self.open_by_expiry
                .insert((reservation.expires_at, reservation.id));
        }
        self.by_order
            .entry(reservation.order_id)
            .or_default()
            .insert(reservation.id);
        self.reservations.insert(reservation.id, reservation);
    }

    /// The units each line can get right now, taking lines in order and warehouses in the
    /// line's order.
    fn offer(&self, lines: &[RequestLine]) -> Vec<ReservationItem> {
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
                        .or_insert_with(|| self.level(k).available())
                })
                .collect();
            let (parts, _) = spread_quantity(line.quantity(), &avail);
            for (i, take) in parts {
                if let Some(key) = keys.get(i) {
                    if let Some(l) = left.get_mut(key) {
                        *l -= take;
                    }
                    items.push(ReservationItem::new(key.0.clone(), key.1.clone(), take));
                }
            }
        }
        items
    }
}

/// The in-memory [`InventoryStore`]: for tests, simulations and hosts that persist elsewhere.
/// One mutex guards the whole ledger, so every operation, including a multi-line reserve, is
/// atomic.
pub struct MemoryInventory {
    state: Mutex<State>,
    ids: Arc<dyn IdGenerator>,
    config: ReservationConfig,
}

impl std::fmt::Debug for MemoryInventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryInventory")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl MemoryInventory {
    /// An empty store with the default 15-minute hold, drawing reservation ids from `ids`.
    pub fn new(ids: Arc<dyn IdGenerator>) -> Self {
        Self::with_config(ids, ReservationConfig::default())
    }

    /// An empty store with `config`.
    pub fn with_config(ids: Arc<dyn IdGenerator>, config: ReservationConfig) -> Self {
        MemoryInventory {
            state: Mutex::new(State::default()),
            ids,
            config,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every operation stages its changes and writes them with infallible steps, so a panic
        // elsewhere while the lock was held cannot have left the state half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Change one reservation under the lock: `f` edits a copy and stages stock moves; both are
    /// written only if `f` succeeds.
    fn update<F>(&self, id: u64, f: F) -> OmsResult<Reservation>
    where
        F: FnOnce(&State, &mut Reservation, &mut Staged) -> OmsResult<()>,
    {
        let mut state = self.lock();
        let mut r = state.get(id)?.clone();
        let mut staged = Staged::new();
        f(&state, &mut r, &mut staged)?;
        state.stock.extend(staged);
        state.put(r.clone());
        Ok(r)
    }

    fn set_level<F>(&self, sku: &Sku, warehouse: &WarehouseId, f: F) -> OmsResult<StockLevel>
    where
        F: FnOnce(StockLevel) -> OmsResult<StockLevel>,
    {
        let mut state = self.lock();
        state.known(sku, warehouse)?;
        let key = (sku.clone(), warehouse.clone());
        let next = f(state.level(&key))?;
        state.stock.insert(key, next);
        Ok(next)
    }
}

impl InventoryStore for MemoryInventory {
    fn add_warehouse(&self, warehouse: &WarehouseId) -> OmsResult<()> {
        self.lock().warehouses.insert(warehouse.clone());
        Ok(())
    }

    fn receive(&self, sku: &Sku, warehouse: &WarehouseId, quantity: u64) -> OmsResult<StockLevel> {
        positive(quantity)?;
        let mut state = self.lock();
        state.known_warehouse(warehouse)?;
        let key = (sku.clone(), warehouse.clone());
        let next = state.level(&key).received(quantity)?;
        state.skus.insert(sku.clone());
        state.stock.insert(key, next);
        Ok(next)
    }

    fn adjust(
        &self,
        sku: &Sku,
        warehouse: &WarehouseId,
        adjustment: Adjustment,
    ) -> OmsResult<StockLevel> {
        if adjustment == Adjustment::Delta(0) {
            return Err(super::ledger::non_positive(0));
        }
        self.set_level(sku, warehouse, |l| l.adjusted(adjustment, sku, warehouse))
    }

    fn restock_return(
        &self,
        sku: &Sku,
        warehouse: &WarehouseId,
        quantity: u64,
        condition: ReturnCondition,
    ) -> OmsResult<StockLevel> {
        positive(quantity)?;
        self.set_level(sku, warehouse, |l| l.returned(quantity, condition))
    }

    fn stock(&self, sku: &Sku, warehouse: &WarehouseId) -> OmsResult<StockLevel> {
        let state = self.lock();
        state.known(sku, warehouse)?;
        Ok(state.level(&(sku.clone(), warehouse.clone())))
    }

    fn levels(&self) -> OmsResult<Vec<StockRow>> {
        Ok(self
            .lock()
            .stock
            .iter()
            .map(|((sku, warehouse), level)| StockRow {
                sku: sku.clone(),
                warehouse: warehouse.clone(),
                level: *level,
            })
            .collect())
    }

    fn reserve(&self, request: &ReservationRequest, now: Timestamp) -> OmsResult<ReserveOutcome> {
        request.validate()?;
        let mut state = self.lock();
        // Precedence of the error enum: every unknown sku before any unknown warehouse.
        for line in &request.lines {
            if !state.skus.contains(line.sku()) {
                return Err(OmsError::UnknownSku {
                    sku: line.sku().to_string(),
                });
            }
        }
        for line in &request.lines {
            for w in line.warehouses() {
                state.known_warehouse(w)?;
            }
        }
        let ttl = request.ttl.unwrap_or(self.config.default_ttl);
        let id = self.ids.next_id("reservation");
        if state.reservations.contains_key(&id) {
            // Overwriting would silently drop a hold and leak its units.
            return Err(OmsError::Storage {
                reason: format!("id generator returned reservation id {id} twice"),
            });
        }
        let mut r = Reservation::checking(id, request, ttl, now)?;
        r.items = state.offer(&request.lines);
        if r.shortfall().is_none() {
            r.step(ReservationEvent::AllInStock, now)?;
            r.step(ReservationEvent::BeginReservation, now)?;
            return state.hold(r, now).map(ReserveOutcome::Reserved);
        }
        if r.items.is_empty() {
            r.step(ReservationEvent::NoneAvailable, now)?;
            r.step(ReservationEvent::NotifyCustomer, now)?;
            state.put(r.clone());
            return Ok(ReserveOutcome::OutOfStock(r));
        }
        r.step(ReservationEvent::Partial, now)?;
        r.step(ReservationEvent::OfferPartial, now)?;
        state.put(r.clone());
        Ok(ReserveOutcome::PartiallyAvailable(r))
    }

    fn accept_partial(&self, reservation_id: u64, now: Timestamp) -> OmsResult<Reservation> {
        let mut state = self.lock();
        let mut r = state.get(reservation_id)?.clone();
        if r.status.is_closed() {
            return Err(r.closed_error());
        }
        r.step(ReservationEvent::AcceptPartial, now)?;
        if r.is_expired(now) {
            return Err(r.expired_error());
        }
        r.expires_at = now.plus(r.ttl);
        state.hold(r, now)
    }

    fn decline_partial(&self, reservation_id: u64, now: Timestamp) -> OmsResult<Reservation> {
        self.update(reservation_id, |_, r, _| {
            if r.status.is_closed() {
                return Err(r.closed_error());
            }
            r.step(ReservationEvent::DeclinePartial, now)
        })
    }

    fn release(&self, reservation_id: u64, now: Timestamp) -> OmsResult<Reservation> {
        self.update(reservation_id, |state, r, staged| {
            if r.status.is_closed() {
                return Err(r.closed_error());
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
                state.stage(staged, &r.unshipped_items(), |l, q, _, _| l.deallocated(q))?;
            } else {
                state.stage(staged, &r.items, |l, q, _, _| l.released(q))?;
            }
            r.release_reason = Some(ReleaseReason::Cancelled);
            Ok(())
        })
    }

    fn commit(&self, reservation_id: u64, now: Timestamp) -> OmsResult<Reservation> {
        self.update(reservation_id, |state, r, staged| {
            if r.status.is_closed() || r.status == ReservationStatus::Allocated {
                return Err(r.closed_error());
            }
            r.step(ReservationEvent::Commit, now)?;
            if r.is_expired(now) {
                return Err(r.expired_error());
            }
            state.stage(staged, &r.items, |l, q, _, _| l.committed(q))
        })
    }

    fn ship(&self, reservation_id: u64, now: Timestamp) -> OmsResult<Reservation> {
        self.update(reservation_id, |state, r, staged| {
            if r.status.is_closed() {
                return Err(r.closed_error());
            }
            r.step(ReservationEvent::Ship, now)?;
            state.stage(staged, &r.unshipped_items(), |l, q, _, _| l.consumed(q))?;
            r.shipped_from = r.items.iter().map(|i| i.warehouse.clone()).collect();
            Ok(())
        })
    }

    fn ship_from(
        &self,
        reservation_id: u64,
        warehouse: &WarehouseId,
        now: Timestamp,
    ) -> OmsResult<Reservation> {
        self.update(reservation_id, |state, r, staged| {
            if r.status.is_closed() {
                return Err(r.closed_error());
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
                ));
            }
            if r.shipped_from.contains(warehouse) {
                return Err(OmsError::GuardFailed {
                    from: format!("reservation {}", r.status),
                    event: ReservationEvent::Ship.as_str().into(),
                    reason: format!("already shipped from {warehouse}"),
                });
            }
            state.stage(staged, &items, |l, q, _, _| l.consumed(q))?;
            r.shipped_from.insert(warehouse.clone());
            if r.unshipped_items().is_empty() {
                r.enter(shipped, now);
            } else {
                r.updated_at = now;
            }
            Ok(())
        })
    }

    fn extend(&self, reservation_id: u64, by: Duration, now: Timestamp) -> OmsResult<Reservation> {
        if by.millis() <= 0 {
            return Err(OmsError::invalid("by", "must be positive"));
        }
        self.update(reservation_id, |_, r, _| {
            if r.status.is_closed() || r.status == ReservationStatus::Allocated {
                return Err(r.closed_error());
            }
            if r.is_expired(now) {
                return Err(r.expired_error());
            }
            r.expires_at = r.expires_at.plus(by);
            r.updated_at = now;
            Ok(())
        })
    }

    fn expire(&self, now: Timestamp) -> OmsResult<Vec<ExpiredReservation>> {
        let mut state = self.lock();
        let mut staged = Staged::new();
        let mut changed = Vec::new();
        let mut report = Vec::new();
        // Due holds, in id order (the order the report promises).
        let due: BTreeSet<u64> = state
            .open_by_expiry
            .iter()
            .take_while(|(expires_at, _)| *expires_at <= now)
            .map(|(_, id)| *id)
            .collect();
        for id in due {
            let r = state.get(id)?;
            if !sweepable(r) || !r.is_expired(now) {
                continue;
            }
            let mut r = r.clone();
            match r.status {
                ReservationStatus::Reserved => {
                    r.step(ReservationEvent::Release, now)?;
                    state.stage(&mut staged, &r.items, |l, q, _, _| l.released(q))?;
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
        state.stock.extend(staged);
        for r in changed {
            state.put(r);
        }
        Ok(report)
    }

    fn reservation(&self, reservation_id: u64) -> OmsResult<Reservation> {
        self.lock().get(reservation_id).cloned()
    }

    fn reservations_for_order(&self, order_id: u64) -> OmsResult<Vec<Reservation>> {
        let state = self.lock();
        let ids = state.by_order.get(&order_id).cloned().unwrap_or_default();
        ids.iter().map(|id| state.get(*id).cloned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::SequentialIds;

    const T0: Timestamp = Timestamp(1_000_000);

    fn sku(s: &str) -> Sku {
        Sku::new(s).unwrap()
    }
    fn wh(s: &str) -> WarehouseId {
        WarehouseId::new(s).unwrap()
    }

    /// A store with WH1 {A: 5, B: 2} and WH2 {A: 3}.
    fn store() -> MemoryInventory {
        let s = MemoryInventory::new(Arc::new(SequentialIds::default()));
        for w in ["WH1", "WH2"] {
            s.add_warehouse(&wh(w)).unwrap();
        }
        s.receive(&sku("A"), &wh("WH1"), 5).unwrap();
        s.receive(&sku("B"), &wh("WH1"), 2).unwrap();
        s.receive(&sku("A"), &wh("WH2"), 3).unwrap();
        s
    }

    fn snapshot(s: &MemoryInventory) -> (Vec<StockRow>, Vec<Reservation>) {
        let state = s.lock();
        let rows = state
            .stock
            .iter()
            .map(|((sku, warehouse), level)| StockRow {
                sku: sku.clone(),
                warehouse: warehouse.clone(),
                level: *level,
            })
            .collect();
        (rows, state.reservations.values().cloned().collect())
    }

    fn reserve(s: &MemoryInventory, order: u64, w: &str, sk: &str, q: u64) -> Reservation {
        s.reserve(&ReservationRequest::new(order).item(sku(sk), wh(w), q), T0)
            .unwrap()
            .into_reserved()
            .unwrap()
    }

    fn available(s: &MemoryInventory, sk: &str, w: &str) -> u64 {
        s.stock(&sku(sk), &wh(w)).unwrap().available()
    }

    #[test]
    fn bad_input_is_typed_and_changes_nothing() {
        let s = store();
        let held = reserve(&s, 1, "WH1", "A", 2);
        let committed = reserve(&s, 2, "WH1", "A", 1);
        s.commit(committed.id, T0).unwrap();
        let before = snapshot(&s);
        let (a, b, w1, nowhere) = (sku("A"), sku("B"), wh("WH1"), wh("WH9"));
        let cases: Vec<(&str, OmsResult<()>)> = vec![
            ("invalid_quantity", s.receive(&a, &w1, 0).map(drop)),
            ("unknown_warehouse", s.receive(&a, &nowhere, 1).map(drop)),
            ("unknown_sku", s.stock(&sku("Z"), &w1).map(drop)),
            ("unknown_warehouse", s.stock(&a, &nowhere).map(drop)),
            (
                "unknown_sku",
                s.adjust(&sku("Z"), &w1, Adjustment::Count(1)).map(drop),
            ),
            (
                "invalid_quantity",
                s.adjust(&sku("Z"), &w1, Adjustment::Delta(0)).map(drop),
            ),
            // WH1 A: on_hand 5, reserved 2, allocated 1.
            (
                "insufficient_stock",
                s.adjust(&a, &w1, Adjustment::Count(2)).map(drop),
            ),
            (
                "insufficient_stock",
                s.adjust(&a, &w1, Adjustment::Delta(-3)).map(drop),
            ),
            (
                "invalid_quantity",
                s.restock_return(&a, &w1, 0, ReturnCondition::Sellable)
                    .map(drop),
            ),
            (
                "unknown_sku",
                s.restock_return(&sku("Z"), &w1, 1, ReturnCondition::Damaged)
                    .map(drop),
            ),
            (
                "missing_field",
                s.reserve(&ReservationRequest::new(3), T0).map(drop),
            ),
            (
                "invalid_quantity",
                s.reserve(
                    &ReservationRequest::new(3).item(a.clone(), w1.clone(), 0),
                    T0,
                )
                .map(drop),
            ),
            (
                "unknown_sku",
                s.reserve(
                    &ReservationRequest::new(3)
                        .item(a.clone(), nowhere.clone(), 1)
                        .item(sku("Z"), w1.clone(), 1),
                    T0,
                )
                .map(drop),
            ),
            (
                "unknown_warehouse",
                s.reserve(
                    &ReservationRequest::new(3).spread(b.clone(), 1, vec![w1.clone(), nowhere]),
                    T0,
                )
                .map(drop),
            ),
            ("not_found", s.release(99, T0).map(drop)),
            ("not_found", s.commit(99, T0).map(drop)),
            ("not_found", s.reservation(99).map(drop)),
            ("invalid_transition", s.ship(held.id, T0).map(drop)),
            (
                "invalid_transition",
                s.accept_partial(held.id, T0).map(drop),
            ),
            (
                "invalid_transition",
                s.decline_partial(held.id, T0).map(drop),
            ),
            ("reservation_closed", s.commit(committed.id, T0).map(drop)),
            (
                "reservation_expired",
                s.commit(held.id, T0.plus(Duration::minutes(15))).map(drop),
            ),
            (
                "reservation_expired",
                s.extend(held.id, Duration::minutes(1), held.expires_at)
                    .map(drop),
            ),
            (
                "invalid_field",
                s.extend(held.id, Duration(0), T0).map(drop),
            ),
            (
                "reservation_closed",
                s.extend(committed.id, Duration::minutes(1), T0).map(drop),
            ),
        ];
        for (i, (code, result)) in cases.into_iter().enumerate() {
            assert_eq!(result.unwrap_err().code(), code, "case {i}");
        }
        assert_eq!(snapshot(&s), before);
    }

    #[test]
    fn release_and_commit_happen_at_most_once() {
        let s = store();
        let r = reserve(&s, 1, "WH1", "A", 2);
        assert_eq!(available(&s, "A", "WH1"), 3);
        let released = s.release(r.id, T0).unwrap();
        assert_eq!(released.release_reason, Some(ReleaseReason::Cancelled));
        assert_eq!(available(&s, "A", "WH1"), 5);
        let before = snapshot(&s);
        for result in [s.release(r.id, T0), s.commit(r.id, T0), s.ship(r.id, T0)] {
            assert_eq!(
                result.unwrap_err(),
                OmsError::ReservationClosed {
                    id: r.id.to_string(),
                    state: "released".into()
                }
            );
        }
        assert_eq!(snapshot(&s), before);

        let r = reserve(&s, 2, "WH1", "A", 4);
        let c = s.commit(r.id, T0).unwrap();
        assert_eq!(c.status, ReservationStatus::Allocated);
        let l = s.stock(&sku("A"), &wh("WH1")).unwrap();
        assert_eq!((l.reserved, l.allocated, l.available()), (0, 4, 1));
        assert_eq!(s.commit(r.id, T0).unwrap_err().code(), "reservation_closed");
        let shipped = s.ship(r.id, T0).unwrap();
        assert_eq!(shipped.status, ReservationStatus::Shipped);
        let l = s.stock(&sku("A"), &wh("WH1")).unwrap();
        assert_eq!((l.on_hand, l.allocated, l.available()), (1, 0, 1));
        assert_eq!(s.ship(r.id, T0).unwrap_err().code(), "reservation_closed");
        assert_eq!(
            s.release(r.id, T0).unwrap_err().code(),
            "reservation_closed"
        );
        assert_eq!(
            shipped.path,
            [
                ReservationStatus::Requested,
                ReservationStatus::CheckingAvailability,
                ReservationStatus::AllAvailable,
                ReservationStatus::Reserving,
                ReservationStatus::Reserved,
                ReservationStatus::Allocated,
                ReservationStatus::Shipped,
            ]
        );
    }

    #[test]
    fn a_split_order_ships_one_warehouse_at_a_time() {
        let s = store();
        let r = s
            .reserve(
                &ReservationRequest::new(1).spread(sku("A"), 7, vec![wh("WH1"), wh("WH2")]),
                T0,
            )
            .unwrap()
            .into_reserved()
            .unwrap();
        assert_eq!(
            r.items,
            [
                ReservationItem::new(sku("A"), wh("WH1"), 5),
                ReservationItem::new(sku("A"), wh("WH2"), 2)
            ]
        );
        assert_eq!(
            s.ship_from(r.id, &wh("WH1"), T0).unwrap_err().code(),
            "invalid_transition"
        );
        s.commit(r.id, T0).unwrap();
        let before = snapshot(&s);
        assert_eq!(
            s.ship_from(r.id, &wh("WH9"), T0).unwrap_err().code(),
            "invalid_field"
        );
        assert_eq!(snapshot(&s), before);
        let part = s.ship_from(r.id, &wh("WH2"), T0).unwrap();
        assert_eq!(part.status, ReservationStatus::Allocated);
        let l = s.stock(&sku("A"), &wh("WH2")).unwrap();
        assert_eq!((l.on_hand, l.allocated), (1, 0));
        assert_eq!(
            s.ship_from(r.id, &wh("WH2"), T0).unwrap_err().code(),
            "guard_failed"
        );
        // Cancelling now returns only the units still in WH1.
        let released = s.release(r.id, T0).unwrap();
        assert_eq!(released.status, ReservationStatus::Released);
        let l = s.stock(&sku("A"), &wh("WH1")).unwrap();
        assert_eq!((l.on_hand, l.allocated, l.available()), (5, 0, 5));
        assert_eq!(s.stock(&sku("A"), &wh("WH2")).unwrap().on_hand, 1);

        // The same order shipped to the end instead.
        let fresh = store();
        let r = fresh
            .reserve(
                &ReservationRequest::new(1).spread(sku("A"), 7, vec![wh("WH1"), wh("WH2")]),
                T0,
            )
            .unwrap()
            .into_reserved()
            .unwrap();
        fresh.commit(r.id, T0).unwrap();
        fresh.ship_from(r.id, &wh("WH2"), T0).unwrap();
        let done = fresh.ship(r.id, T0).unwrap();
        assert_eq!(done.status, ReservationStatus::Shipped);
        assert_eq!(done.shipped_from.len(), 2);
        let l = fresh.stock(&sku("A"), &wh("WH1")).unwrap();
        assert_eq!((l.on_hand, l.allocated), (0, 0));
        assert_eq!(fresh.stock(&sku("A"), &wh("WH2")).unwrap().on_hand, 1);
        assert_eq!(
            fresh.ship_from(r.id, &wh("WH1"), T0).unwrap_err().code(),
            "reservation_closed"
        );
    }

    #[test]
    fn release_after_commit_returns_allocated_units() {
        let s = store();
        let r = reserve(&s, 1, "WH2", "A", 3);
        s.commit(r.id, T0).unwrap();
        assert_eq!(available(&s, "A", "WH2"), 0);
        let r = s.release(r.id, T0).unwrap();
        assert_eq!(r.status, ReservationStatus::Released);
        let l = s.stock(&sku("A"), &wh("WH2")).unwrap();
        assert_eq!((l.on_hand, l.reserved, l.allocated), (3, 0, 0));
    }

    #[test]
    fn partial_offer_accept_and_decline() {
        let s = store();
        let req = ReservationRequest::new(7)
            .item(sku("B"), wh("WH1"), 5)
            .item(sku("A"), wh("WH2"), 1);
        let ReserveOutcome::PartiallyAvailable(offer) = s.reserve(&req, T0).unwrap() else {
            panic!("expected a partial offer")
        };
        assert_eq!(offer.status, ReservationStatus::AwaitingCustomerDecision);
        assert_eq!(
            offer.items,
            [
                ReservationItem::new(sku("B"), wh("WH1"), 2),
                ReservationItem::new(sku("A"), wh("WH2"), 1)
            ]
        );
        // An offer holds nothing.
        assert_eq!(available(&s, "B", "WH1"), 2);
        let err = s.reserve(&req, T0).unwrap().into_reserved().unwrap_err();
        assert_eq!(
            err,
            OmsError::InsufficientStock {
                sku: "B".into(),
                warehouse: "WH1".into(),
                requested: 5,
                available: 2
            }
        );

        let later = T0.plus(Duration::minutes(10));
        let accepted = s.accept_partial(offer.id, later).unwrap();
        assert_eq!(accepted.status, ReservationStatus::Reserved);
        assert_eq!(accepted.expires_at, later.plus(Duration::minutes(15)));
        assert_eq!(available(&s, "B", "WH1"), 0);
        assert_eq!(available(&s, "A", "WH2"), 2);
        assert_eq!(
            s.accept_partial(offer.id, later).unwrap_err().code(),
            "invalid_transition"
        );

        // The second offer cannot be honoured any more: B is gone.
        let second = s.reservations_for_order(7).unwrap()[1].clone();
        assert_eq!(second.status, ReservationStatus::AwaitingCustomerDecision);
        let before = snapshot(&s);
        assert_eq!(
            s.accept_partial(second.id, later).unwrap_err().code(),
            "insufficient_stock"
        );
        assert_eq!(snapshot(&s), before);
        let declined = s.decline_partial(second.id, later).unwrap();
        assert_eq!(declined.status, ReservationStatus::Failed);
        assert_eq!(
            s.decline_partial(second.id, later).unwrap_err().code(),
            "reservation_closed"
        );
        assert_eq!(s.reservations_for_order(8).unwrap(), vec![]);
    }

    #[test]
    fn offers_lapse_and_cannot_be_accepted_late() {
        let s = store();
        let req = ReservationRequest::new(1).item(sku("B"), wh("WH1"), 3);
        let offer = s.reserve(&req, T0).unwrap().reservation().clone();
        let late = offer.expires_at;
        assert_eq!(
            s.accept_partial(offer.id, late).unwrap_err().code(),
            "reservation_expired"
        );
        // Lapsed offers are closed by the sweep but held nothing, so nothing is reported.
        assert_eq!(s.expire(late).unwrap(), vec![]);
        assert_eq!(
            s.reservation(offer.id).unwrap().status,
            ReservationStatus::Failed
        );
    }

    #[test]
    fn out_of_stock_fails_and_holds_nothing() {
        let s = store();
        let out = s
            .reserve(&ReservationRequest::new(1).item(sku("B"), wh("WH2"), 1), T0)
            .unwrap();
        let ReserveOutcome::OutOfStock(r) = &out else {
            panic!("expected out of stock")
        };
        assert_eq!(r.status, ReservationStatus::Failed);
        assert_eq!(
            r.path,
            [
                ReservationStatus::Requested,
                ReservationStatus::CheckingAvailability,
                ReservationStatus::OutOfStock,
                ReservationStatus::Failed
            ]
        );
        assert_eq!(
            out.into_reserved().unwrap_err().code(),
            "insufficient_stock"
        );
        assert_eq!(s.release(1, T0).unwrap_err().code(), "reservation_closed");
    }

    #[test]
    fn expiry_releases_each_hold_once_and_respects_extensions() {
        let s = store();
        let a = reserve(&s, 1, "WH1", "A", 1);
        let b = reserve(&s, 2, "WH1", "A", 2);
        let short = s
            .reserve(
                &ReservationRequest::new(3)
                    .item(sku("A"), wh("WH2"), 1)
                    .with_ttl(Duration::minutes(5)),
                T0,
            )
            .unwrap()
            .into_reserved()
            .unwrap();
        s.extend(b.id, Duration::minutes(10), T0).unwrap();
        assert_eq!(s.expire(T0.plus(Duration::minutes(4))).unwrap(), vec![]);
        let at15 = T0.plus(Duration::minutes(15));
        let first = s.expire(at15).unwrap();
        assert_eq!(
            first
                .iter()
                .map(|e| (e.reservation_id, e.order_id))
                .collect::<Vec<_>>(),
            [(a.id, 1), (short.id, 3)]
        );
        assert_eq!(s.expire(at15).unwrap(), vec![]);
        assert_eq!(available(&s, "A", "WH1"), 3);
        assert_eq!(available(&s, "A", "WH2"), 3);
        let r = s.reservation(a.id).unwrap();
        assert_eq!(r.release_reason, Some(ReleaseReason::Expired));
        assert_eq!(
            s.release(a.id, at15).unwrap_err().code(),
            "reservation_closed"
        );
        let later = s.expire(T0.plus(Duration::minutes(25))).unwrap();
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].items, b.items);
        assert_eq!(available(&s, "A", "WH1"), 5);
    }

    #[test]
    fn a_reused_id_is_refused_not_overwritten() {
        struct Always1;
        impl IdGenerator for Always1 {
            fn next_id(&self, _: &str) -> u64 {
                1
            }
        }
        let s = MemoryInventory::new(Arc::new(Always1));
        s.add_warehouse(&wh("W")).unwrap();
        s.receive(&sku("A"), &wh("W"), 5).unwrap();
        let req = ReservationRequest::new(1).item(sku("A"), wh("W"), 2);
        s.reserve(&req, T0).unwrap().into_reserved().unwrap();
        let before = snapshot(&s);
        assert_eq!(s.reserve(&req, T0).unwrap_err().code(), "storage");
        assert_eq!(snapshot(&s), before);
    }

    #[test]
    fn returns_and_counts() {
        let s = store();
        let l = s
            .restock_return(&sku("B"), &wh("WH2"), 2, ReturnCondition::Damaged)
            .unwrap();
        assert_eq!((l.on_hand, l.damaged, l.available()), (0, 2, 0));
        let l = s
            .restock_return(&sku("B"), &wh("WH2"), 1, ReturnCondition::Sellable)
            .unwrap();
        assert_eq!((l.on_hand, l.damaged, l.available()), (1, 2, 1));
        let l = s
            .adjust(&sku("A"), &wh("WH1"), Adjustment::Count(9))
            .unwrap();
        assert_eq!(l.on_hand, 9);
        assert_eq!(s.levels().unwrap().len(), 4);
    }
}
