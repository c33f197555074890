//! When an authorized payment is captured: seed 004 says both "after the item ships" (stage 2)
//! and "on delivery" (stage 8), so it is a policy, not a fork in the code.

use serde::{Deserialize, Serialize};

use crate::lifecycle::OrderStatus;

/// The order milestone at which the hold is captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapturePolicy {
    /// Capture when the order (or part of it) is handed to the carrier.
    OnShipment,
    /// Capture when the order (or part of it) is delivered (seed 004 stage 8).
    #[default]
    OnDelivery,
}

impl CapturePolicy {
    /// True once an order in `status` has reached this policy's milestone. "Reached" rather
    /// than "is at", so an order that skips a status (shipped straight to delivered) is
    /// still captured.
    ///
    /// ```
    /// use oms_core::lifecycle::OrderStatus;
    /// use oms_core::payment::CapturePolicy;
    /// assert!(CapturePolicy::OnShipment.due(OrderStatus::InTransit));
    /// assert!(!CapturePolicy::OnDelivery.due(OrderStatus::InTransit));
    /// ```
    pub fn due(self, status: OrderStatus) -> bool {
        use OrderStatus as O;
        let delivered = matches!(
            status,
            O::PartiallyDelivered
                | O::Delivered
                | O::Completed
                | O::ReturnRequested
                | O::ReturnApproved
                | O::ReturnRejected
                | O::Refunded
        );
        match self {
            CapturePolicy::OnDelivery => delivered,
            CapturePolicy::OnShipment => {
                delivered
                    || matches!(
                        status,
                        O::PartiallyShipped | O::Shipped | O::InTransit | O::OutForDelivery
                    )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milestones() {
        let due = |p: CapturePolicy| -> Vec<&str> {
            OrderStatus::ALL
                .into_iter()
                .filter(|s| p.due(*s))
                .map(OrderStatus::as_str)
                .collect()
        };
        assert_eq!(
            due(CapturePolicy::OnDelivery),
            [
                "partially_delivered",
                "delivered",
                "completed",
                "return_requested",
                "return_approved",
                "return_rejected",
                "refunded"
            ]
        );
        let on_ship = due(CapturePolicy::OnShipment);
        assert_eq!(on_ship.len(), 11);
        assert_eq!(on_ship[0], "partially_shipped");
        for s in [
            OrderStatus::Pending,
            OrderStatus::Authorized,
            OrderStatus::Packed,
            OrderStatus::Cancelled,
            OrderStatus::PaymentFailed,
        ] {
            assert!(!CapturePolicy::OnShipment.due(s), "{s}");
        }
        assert_eq!(CapturePolicy::default(), CapturePolicy::OnDelivery);
    }
}
