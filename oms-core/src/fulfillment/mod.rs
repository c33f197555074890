//! Fulfillment: the per-parcel fulfillment machine (seed 000 §4, seed 001 §5, seed 004 stages
//! 5–8), pick lists with scan verification and pick paths, box choice and weight check,
//! shipments and the order status they imply.
//!
//! One [`Shipment`] is one parcel from one warehouse; an order split across warehouses has
//! several, and [`derive_order_status`] reads the order's shipping status off them.
//!
//! ## Seed names
//!
//! | seed | state or step | here |
//! | --- | --- | --- |
//! | 000 §4 | `Fulfillment_Requested` | [`FulfillmentStatus::Requested`] |
//! | 000 §4 | `Warehouse_Assigned` | [`FulfillmentStatus::WarehouseAssigned`] |
//! | 000 §4 | `Picking_Queued` | [`FulfillmentStatus::PickingQueued`] |
//! | 000 §4 | `Picking_In_Progress`, `Fork_Picking`, `Join_Picking` | [`FulfillmentStatus::PickingInProgress`] with its fork |
//! | 000 §4 | `Item_Pick`, `Quality_Monitor`, `Inventory_Update` | the [`PickBranch`]es |
//! | 000 §4 | `Packing`, `QC`, `ReadyForShipment`, `HandedToCarrier`, `InTransit` | the same names |
//! | 001 §5 | Assign to Warehouse | [`Shipment::assign_warehouse`] |
//! | 001 §5 | Create Pick List | [`Shipment::queue_picking`] |
//! | 001 §5 | Assign to Picker | [`Shipment::assign_picker`] |
//! | 001 §5 | Scan Items / All Items Scanned? | [`Shipment::scan`], [`Shipment::items_ready`] |
//! | 001 §5 | Pack Items, Weigh Package, Generate Shipping Label | [`Shipment::pack`], [`Shipment::weigh`], [`Shipment::print_label`] |
//! | 001 §5 | Hand to Carrier, Update Tracking Info | [`Shipment::hand_to_carrier`], [`Shipment::tracking_number`] |
//! | 004 | stage 5 Pick & Pack, 6 Packed & Labeled | PickingInProgress … ReadyForShipment |
//! | 004 | stage 7 In Transit, 8 Delivered | `InTransit`, `OutForDelivery`, `Delivered` |

pub mod machine;
pub mod pack;
pub mod pick;
pub mod shipment;

use serde::{Deserialize, Serialize};

use machine::{Edge, ForkJoin, Label, Spec};

pub use shipment::{derive_order_status, find_shipment, find_shipment_mut, Shipment, StatusChange};

/// Where one parcel is in fulfillment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FulfillmentStatus {
    /// Inventory is reserved; the parcel waits for a warehouse.
    Requested,
    /// A warehouse has been selected.
    WarehouseAssigned,
    /// The warehouse has the pick list; no picker yet.
    PickingQueued,
    /// A picker works on it: item pick, quality monitoring and inventory update run in parallel.
    PickingInProgress,
    /// Every branch of picking joined; being packed.
    Packing,
    /// Packed and weighed; under quality check.
    Qc,
    /// Passed QC, labelled, waiting for the carrier.
    ReadyForShipment,
    /// The carrier scanned it at pickup.
    HandedToCarrier,
    /// On its way.
    InTransit,
    /// With the driver for the last mile.
    OutForDelivery,
    /// Delivered to the customer.
    Delivered,
    /// Cancelled before packing (seed 001: cancellable until packed).
    Cancelled,
}

impl FulfillmentStatus {
    /// Every status, in flow order.
    pub const ALL: [FulfillmentStatus; 12] = [
        FulfillmentStatus::Requested,
        FulfillmentStatus::WarehouseAssigned,
        FulfillmentStatus::PickingQueued,
        FulfillmentStatus::PickingInProgress,
        FulfillmentStatus::Packing,
        FulfillmentStatus::Qc,
        FulfillmentStatus::ReadyForShipment,
        FulfillmentStatus::HandedToCarrier,
        FulfillmentStatus::InTransit,
        FulfillmentStatus::OutForDelivery,
        FulfillmentStatus::Delivered,
        FulfillmentStatus::Cancelled,
    ];

    /// The carrier has it (or the customer does).
    pub fn is_shipped(self) -> bool {
        matches!(
            self,
            FulfillmentStatus::HandedToCarrier
                | FulfillmentStatus::InTransit
                | FulfillmentStatus::OutForDelivery
                | FulfillmentStatus::Delivered
        )
    }
}

impl Label for FulfillmentStatus {
    fn label(self) -> &'static str {
        match self {
            FulfillmentStatus::Requested => "requested",
            FulfillmentStatus::WarehouseAssigned => "warehouse_assigned",
            FulfillmentStatus::PickingQueued => "picking_queued",
            FulfillmentStatus::PickingInProgress => "picking_in_progress",
            FulfillmentStatus::Packing => "packing",
            FulfillmentStatus::Qc => "qc",
            FulfillmentStatus::ReadyForShipment => "ready_for_shipment",
            FulfillmentStatus::HandedToCarrier => "handed_to_carrier",
            FulfillmentStatus::InTransit => "in_transit",
            FulfillmentStatus::OutForDelivery => "out_for_delivery",
            FulfillmentStatus::Delivered => "delivered",
            FulfillmentStatus::Cancelled => "cancelled",
        }
    }
}

/// What moves a parcel (names follow seed 000 §4's edge labels where it has them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FulfillmentEvent {
    /// A warehouse is chosen for the parcel.
    SelectWarehouse,
    /// The warehouse is sent the pick list.
    NotifyWarehouse,
    /// A picker takes the pick list: the picking fork starts.
    PickerAssigned,
    /// Join: every picking branch is done, items are ready to pack.
    ItemsReady,
    /// A picking branch failed: back to the queue, completed branches are compensated.
    PickFailed,
    /// Packed and weighed: to quality check.
    QualityCheck,
    /// QC passed.
    QcPassed,
    /// QC failed: back to picking.
    QcFailed,
    /// The carrier collects the parcel.
    CarrierPickup,
    /// The carrier reports the parcel moving.
    InTransit,
    /// The driver has it for the last mile.
    OutForDelivery,
    /// The customer received it.
    Delivered,
    /// Cancelled (allowed until packing starts).
    Cancel,
}

impl FulfillmentEvent {
    /// Every event.
    pub const ALL: [FulfillmentEvent; 13] = [
        FulfillmentEvent::SelectWarehouse,
        FulfillmentEvent::NotifyWarehouse,
        FulfillmentEvent::PickerAssigned,
        FulfillmentEvent::ItemsReady,
        FulfillmentEvent::PickFailed,
        FulfillmentEvent::QualityCheck,
        FulfillmentEvent::QcPassed,
        FulfillmentEvent::QcFailed,
        FulfillmentEvent::CarrierPickup,
        FulfillmentEvent::InTransit,
        FulfillmentEvent::OutForDelivery,
        FulfillmentEvent::Delivered,
        FulfillmentEvent::Cancel,
    ];
}

impl Label for FulfillmentEvent {
    fn label(self) -> &'static str {
        match self {
            FulfillmentEvent::SelectWarehouse => "select_warehouse",
            FulfillmentEvent::NotifyWarehouse => "notify_warehouse",
            FulfillmentEvent::PickerAssigned => "picker_assigned",
            FulfillmentEvent::ItemsReady => "items_ready",
            FulfillmentEvent::PickFailed => "pick_failed",
            FulfillmentEvent::QualityCheck => "quality_check",
            FulfillmentEvent::QcPassed => "passed",
            FulfillmentEvent::QcFailed => "failed",
            FulfillmentEvent::CarrierPickup => "carrier_pickup",
            FulfillmentEvent::InTransit => "in_transit",
            FulfillmentEvent::OutForDelivery => "out_for_delivery",
            FulfillmentEvent::Delivered => "delivered",
            FulfillmentEvent::Cancel => "cancel",
        }
    }
}

/// The parallel branches of picking (seed 000 §4 `Fork_Picking`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PickBranch {
    /// Every unit picked and scanned.
    ItemPick,
    /// Quality monitoring of the picked items.
    QualityMonitor,
    /// Real-time inventory update for the picked units.
    InventoryUpdate,
}

impl PickBranch {
    /// Every branch.
    pub const ALL: [PickBranch; 3] = [
        PickBranch::ItemPick,
        PickBranch::QualityMonitor,
        PickBranch::InventoryUpdate,
    ];
}

impl Label for PickBranch {
    fn label(self) -> &'static str {
        match self {
            PickBranch::ItemPick => "item_pick",
            PickBranch::QualityMonitor => "quality_monitor",
            PickBranch::InventoryUpdate => "inventory_update",
        }
    }
}

use FulfillmentEvent as Ev;
use FulfillmentStatus as St;

const fn edge(from: St, event: Ev, to: St) -> Edge<St, Ev> {
    Edge { from, event, to }
}

/// The fulfillment transition table: every drawn edge, and only those.
pub const FULFILLMENT_EDGES: &[Edge<FulfillmentStatus, FulfillmentEvent>] = &[
    edge(St::Requested, Ev::SelectWarehouse, St::WarehouseAssigned),
    edge(
        St::WarehouseAssigned,
        Ev::NotifyWarehouse,
        St::PickingQueued,
    ),
    edge(St::PickingQueued, Ev::PickerAssigned, St::PickingInProgress),
    edge(St::PickingInProgress, Ev::ItemsReady, St::Packing),
    edge(St::PickingInProgress, Ev::PickFailed, St::PickingQueued),
    edge(St::Packing, Ev::QualityCheck, St::Qc),
    edge(St::Qc, Ev::QcPassed, St::ReadyForShipment),
    edge(St::Qc, Ev::QcFailed, St::PickingInProgress),
    edge(St::ReadyForShipment, Ev::CarrierPickup, St::HandedToCarrier),
    edge(St::HandedToCarrier, Ev::InTransit, St::InTransit),
    edge(St::InTransit, Ev::OutForDelivery, St::OutForDelivery),
    edge(St::OutForDelivery, Ev::Delivered, St::Delivered),
    edge(St::Requested, Ev::Cancel, St::Cancelled),
    edge(St::WarehouseAssigned, Ev::Cancel, St::Cancelled),
    edge(St::PickingQueued, Ev::Cancel, St::Cancelled),
    edge(St::PickingInProgress, Ev::Cancel, St::Cancelled),
];

/// The fulfillment machine: table, picking fork and terminal states.
pub const FULFILLMENT: Spec<FulfillmentStatus, FulfillmentEvent, PickBranch> = Spec {
    name: "fulfillment",
    initial: St::Requested,
    edges: FULFILLMENT_EDGES,
    fork: ForkJoin {
        at: St::PickingInProgress,
        fork_id: "fork_picking",
        join_id: "join_picking",
        branches: &PickBranch::ALL,
        join: Ev::ItemsReady,
    },
    terminals: &[St::Delivered, St::Cancelled],
};

/// The fulfillment machine as a Mermaid `stateDiagram-v2`, generated from [`FULFILLMENT`].
pub fn fulfillment_mermaid() -> String {
    FULFILLMENT.mermaid()
}

#[cfg(test)]
pub(crate) mod tests;
