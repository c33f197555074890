//! Fulfillment through delivery: shipments, handover, delivery and capture.

use serde::{Deserialize, Serialize};

use super::OrderService;
use crate::lifecycle::GuardContext;
use crate::order::Order;
use crate::time::Timestamp;

/// One shipment as the customer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentTracking {
    /// Shipment id.
    pub shipment_id: u64,
    /// Carrier.
    pub carrier: Option<String>,
    /// Tracking number.
    pub tracking_number: Option<String>,
    /// Shipment status.
    pub status: String,
    /// Estimated delivery.
    pub estimated_delivery: Option<Timestamp>,
}

#[allow(clippy::unused_self)] // filled in with the fulfillment machine
impl OrderService {
    pub(super) fn fulfillment_guard(&self, _order: &Order) -> GuardContext {
        GuardContext::default()
    }

    pub(super) fn shipment_tracking(&self, _order: &Order) -> Vec<ShipmentTracking> {
        Vec::new()
    }
}
