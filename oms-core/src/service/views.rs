//! Reads: `get_order`, `track_order`, `get_total_price`, metrics.

use serde::{Deserialize, Serialize};

use super::OrderService;
use crate::error::OmsResult;
use crate::lifecycle::{Actor, OrderStatus};
use crate::metrics::{AlertThresholds, MetricsInput, MetricsSnapshot, MetricsTally};
use crate::order::Order;
use crate::pricing::{get_total_price, PriceBreakdown};
use crate::time::{Duration, Timestamp};

/// One line of the customer-facing timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// When.
    pub at: Timestamp,
    /// The status the order reached.
    pub status: OrderStatus,
    /// What happened, in words.
    pub description: String,
}

/// The customer-facing timeline of an order.
pub type Timeline = Vec<TimelineEntry>;

/// What `track_order` shows a customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracking {
    /// The order number.
    pub number: String,
    /// The current status.
    pub status: OrderStatus,
    /// Every status change, oldest first.
    pub timeline: Timeline,
    /// Shipments with carrier, tracking number and estimated delivery.
    pub shipments: Vec<super::ShipmentTracking>,
}

fn describe(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::Pending => "Order placed",
        OrderStatus::Validated => "Order details checked",
        OrderStatus::PaymentPending => "Waiting for payment",
        OrderStatus::Authorized => "Payment authorized",
        OrderStatus::OnHold => "Order under review",
        OrderStatus::Confirmed => "Order confirmed",
        OrderStatus::Processing => "Preparing your order",
        OrderStatus::Allocated => "Assigned to a warehouse",
        OrderStatus::Picked => "Items picked",
        OrderStatus::Packed => "Packed",
        OrderStatus::AwaitingShipment => "Waiting for the carrier",
        OrderStatus::PartiallyShipped => "Part of your order has shipped",
        OrderStatus::Shipped => "Shipped",
        OrderStatus::InTransit => "In transit",
        OrderStatus::OutForDelivery => "Out for delivery",
        OrderStatus::PartiallyDelivered => "Part of your order was delivered",
        OrderStatus::Delivered => "Delivered",
        OrderStatus::Completed => "Completed",
        OrderStatus::ReturnRequested => "Return requested",
        OrderStatus::ReturnApproved => "Return approved",
        OrderStatus::ReturnRejected => "Return not accepted",
        OrderStatus::Refunded => "Refunded",
        OrderStatus::PaymentFailed => "Payment failed",
        OrderStatus::Cancelled => "Cancelled",
    }
}

/// The customer-facing view of `order`, with deliveries estimated `transit` after handover.
pub fn tracking(order: &Order, transit: Duration) -> Tracking {
    let timeline = order
        .history
        .iter()
        .map(|h| TimelineEntry {
            at: h.at,
            status: h.to,
            description: describe(h.to).to_owned(),
        })
        .collect();
    Tracking {
        number: order.number.to_string(),
        status: order.status,
        timeline,
        shipments: super::delivery::shipment_tracking(order, transit),
    }
}

impl OrderService {
    /// One order by id (seed 003 `get_order`); customers see only their own.
    pub fn get_order(&self, order_id: u64, actor: &Actor) -> OmsResult<Order> {
        let order = self.deps.orders.order(order_id)?;
        Self::authorize_actor(actor, &order)?;
        Ok(order)
    }

    /// One order by its number.
    pub fn get_order_by_number(&self, number: &str, actor: &Actor) -> OmsResult<Order> {
        let order = self.deps.orders.order_by_number(number)?;
        Self::authorize_actor(actor, &order)?;
        Ok(order)
    }

    /// The customer-facing view of an order (seed 003 `track_order`): the timeline of status
    /// changes and each shipment's carrier, tracking number and estimated delivery.
    pub fn track_order(&self, number: &str, actor: &Actor) -> OmsResult<Tracking> {
        let order = self.get_order_by_number(number, actor)?;
        Ok(tracking(&order, self.config.fulfillment.transit_estimate))
    }

    /// The price breakdown of an order (seed 003 `get_total_price`), as priced at placement.
    pub fn get_total_price(&self, order_id: u64, actor: &Actor) -> OmsResult<PriceBreakdown> {
        let order = self.get_order(order_id, actor)?;
        get_total_price(&order, &self.config.pricing, order.created_at)
    }

    /// The seed 001 §10 dashboard over every order, at the clock's now.
    pub fn metrics(&self, thresholds: &AlertThresholds) -> OmsResult<MetricsSnapshot> {
        // A page of orders at a time, so the book never has to fit in memory at once.
        let mut tally = self.metrics_tally();
        crate::store::for_each_page(self.deps.orders.as_ref(), |page| {
            for o in page {
                tally.add(o);
            }
            Ok(())
        })?;
        self.metrics_of_tally(tally, thresholds)
    }

    /// [`Self::metrics`] over orders the caller has already loaded (every stored order, for
    /// the figures to mean what they say), saving a second read of the whole book.
    pub fn metrics_of(
        &self,
        orders: &[Order],
        thresholds: &AlertThresholds,
    ) -> OmsResult<MetricsSnapshot> {
        let mut tally = self.metrics_tally();
        for o in orders {
            tally.add(o);
        }
        self.metrics_of_tally(tally, thresholds)
    }

    /// An empty [`MetricsTally`] at the service's current time: add every stored order to it
    /// (page by page, see `OrderStore::orders_after`), then [`Self::metrics_of_tally`].
    pub fn metrics_tally(&self) -> MetricsTally {
        MetricsTally::new(self.now())
    }

    /// [`Self::metrics`] from a tally of every stored order, without holding them all at once.
    pub fn metrics_of_tally(
        &self,
        tally: MetricsTally,
        thresholds: &AlertThresholds,
    ) -> OmsResult<MetricsSnapshot> {
        let mut stock: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
        for row in self.deps.inventory.levels()? {
            *stock.entry(row.sku.as_str().to_owned()).or_insert(0) += row.level.available();
        }
        let input = MetricsInput {
            now: self.now(),
            gateway_calls: self
                .counters
                .gateway_calls
                .load(std::sync::atomic::Ordering::Relaxed),
            gateway_errors: self
                .counters
                .gateway_errors
                .load(std::sync::atomic::Ordering::Relaxed),
            stock: stock.into_iter().collect(),
        };
        Ok(tally.snapshot(&input, thresholds))
    }
}
