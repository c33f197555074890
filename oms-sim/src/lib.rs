//! # oms-sim
//!
//! A seeded, replayable simulation of an order book driven through the oms order service: a
//! generated world (catalog, warehouses, customers, promotions), then N orders through the whole
//! lifecycle — fraud screening, reservation, payment (with declines, lost answers, duplicate
//! responses and capture failures from a scripted gateway), fulfillment, shipment, delivery,
//! capture, cancellations, expiries of abandoned payments and returns — on a simulated clock.
//! At the end it checks the world's invariants (stock and money conserved, payment buckets,
//! every event once per version) and returns a report with a digest of the final state, so two
//! runs — or two storage backends — with the same seed can be compared byte for byte.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod digest;
mod journey;
mod prefetch;
pub mod report;
mod rng;
mod world;

use std::sync::Arc;

use oms_core::error::OmsResult;
use oms_core::inventory::InventoryStore;
use oms_core::payment::CapturePolicy;
use oms_core::service::CheckoutFlow;
use oms_core::store::OrderStore;
use oms_core::time::{IdGenerator, Timestamp};

pub use journey::{run, AllocationSummary, Invariants, MoneyTotals, SimReport, StockTotals};
pub use rng::Rng;
pub use world::{generate, Product, Shopper, Warehouse, World};

/// What to simulate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// Orders to place.
    pub orders: usize,
    /// The seed: the same seed gives the same run.
    pub seed: u64,
    /// Reserve-then-pay or pay-then-reserve.
    pub flow: CheckoutFlow,
    /// Capture on shipment or on delivery.
    pub capture: CapturePolicy,
    /// When the simulated day starts.
    pub start: Timestamp,
    /// Orders placed between two commits of the store's batch
    /// ([`OrderStore::begin_batch`]); 0 makes every operation durable on its own.
    pub orders_per_commit: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            orders: 1_000,
            seed: 42,
            flow: CheckoutFlow::ReserveThenPay,
            capture: CapturePolicy::OnDelivery,
            start: Timestamp::from_civil(2026, 5, 6, 8, 0, 0),
            orders_per_commit: 0,
        }
    }
}

/// The stores a run writes to.
#[derive(Clone)]
pub struct Backend {
    /// Orders, outbox, idempotency keys.
    pub orders: Arc<dyn OrderStore>,
    /// Stock and reservations.
    pub inventory: Arc<dyn InventoryStore>,
}

/// Builds the stores for a run from the run's id generator (inventory stores draw reservation
/// ids from it).
pub type BackendFactory<'a> = dyn FnOnce(Arc<dyn IdGenerator>) -> OmsResult<Backend> + 'a;
