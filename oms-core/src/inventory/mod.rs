//! Inventory: the stock ledger per (sku, warehouse), reservations with expiry, and the
//! [`InventoryStore`] trait behind which every backend keeps them.
//!
//! Stock obeys `on_hand = available + reserved + allocated` with `available >= 0` at every
//! instant. A reservation holds units for an order until it is committed at fulfillment
//! (`reserved → allocated`) and shipped (`allocated` leaves `on_hand`, one warehouse at a
//! time for an order split across warehouses), or released by cancellation or expiry
//! (default 15 minutes, seed 001 §4). The reservation machine is seed 000 §3, read from one
//! table ([`EDGES`]) by the stores and by [`reservation_mermaid`].
//!
//! ```
//! use std::sync::Arc;
//! use oms_core::inventory::*;
//! use oms_core::order::Sku;
//! use oms_core::time::{Duration, SequentialIds, Timestamp};
//!
//! let store = MemoryInventory::new(Arc::new(SequentialIds::default()));
//! let (a, wh) = (Sku::new("A").unwrap(), WarehouseId::new("WH1").unwrap());
//! store.add_warehouse(&wh).unwrap();
//! store.receive(&a, &wh, 3).unwrap();
//!
//! let t0 = Timestamp(0);
//! let held = store
//!     .reserve(&ReservationRequest::new(42).item(a.clone(), wh.clone(), 2), t0)
//!     .unwrap()
//!     .into_reserved()
//!     .unwrap();
//! assert_eq!(store.stock(&a, &wh).unwrap().available(), 1);
//!
//! let expired = expire_reservations(&store, t0.plus(Duration::minutes(15))).unwrap();
//! assert_eq!(expired[0].order_id, 42);
//! assert_eq!(store.stock(&a, &wh).unwrap().available(), 3);
//! assert_eq!(store.commit(held.id, t0).unwrap_err().code(), "reservation_closed");
//! ```

mod ledger;
mod reservation;
mod store;

pub use ledger::{units, Adjustment, ReturnCondition, StockLevel, StockRow, WarehouseId};
pub use reservation::{
    reservation_mermaid, spread_quantity, Edge, Node, Origin, ReleaseReason, RequestLine,
    Reservation, ReservationConfig, ReservationEvent, ReservationItem, ReservationRequest,
    ReservationStatus, ReservingBranch, ReservingJoin, EDGES,
};
pub use store::{
    expire_reservations, ExpiredReservation, InventoryStore, MemoryInventory, ReserveOutcome,
};
