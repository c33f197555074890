//! Shipments: one parcel from one warehouse, moved through the fulfillment machine by
//! operations that check the warehouse's work (scans, box, weight, label) before each move.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::machine::{Label as _, MachineState};
use super::pack::{check_weight, contents, BoxSpec, ItemSpec, Label, Package, WeightTolerance};
use super::pick::{BinLocation, PickList, ScanProgress, WalkMetric};
use super::{FulfillmentEvent, FulfillmentStatus, PickBranch, FULFILLMENT};
use crate::error::{OmsError, OmsResult};
use crate::lifecycle::OrderStatus;
use crate::order::{validate_quantity, Sku};
use crate::text::Text;
use crate::time::{IdGenerator, Timestamp};

/// One accepted move of a shipment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    /// Status before.
    pub from: FulfillmentStatus,
    /// Status after.
    pub to: FulfillmentStatus,
    /// The event.
    pub event: FulfillmentEvent,
    /// When.
    pub at: Timestamp,
}

/// One parcel of an order, shipped from one warehouse.
///
/// ```
/// use std::collections::BTreeMap;
/// use oms_core::fulfillment::pack::{BoxSpec, ItemSpec, WeightTolerance};
/// use oms_core::fulfillment::pick::{BinLocation, WalkMetric};
/// use oms_core::fulfillment::{derive_order_status, FulfillmentStatus, PickBranch, Shipment};
/// use oms_core::lifecycle::OrderStatus;
/// use oms_core::order::Sku;
/// use oms_core::time::{SequentialIds, Timestamp};
///
/// let (ids, t) = (SequentialIds::default(), Timestamp(0));
/// let mug = Sku::new("MUG").unwrap();
/// let mut s = Shipment::request(1, &[(mug.clone(), 2)], &ids, t).unwrap();
/// s.assign_warehouse("WH1", t).unwrap();
/// let bins = BTreeMap::from([(mug.clone(), BinLocation::new(2, 1, 7))]);
/// s.queue_picking(&bins, BinLocation::new(0, 0, 0), &WalkMetric::default(), t).unwrap();
/// s.assign_picker("ana", t).unwrap();
/// assert_eq!(s.scan("TEA", t).unwrap_err().code(), "scan_mismatch");
/// s.scan("MUG", t).unwrap();
/// assert_eq!(s.items_ready(t).unwrap_err().code(), "guard_failed"); // one unit unscanned
/// s.scan("MUG", t).unwrap();
/// for b in PickBranch::ALL {
///     s.complete_branch(b, t).unwrap();
/// }
/// s.items_ready(t).unwrap();
/// let items = BTreeMap::from([(mug, ItemSpec { volume_cm3: 800, weight_grams: 350 })]);
/// let boxes = [BoxSpec { id: "S".into(), volume_cm3: 3_000, max_weight_grams: 2_000, tare_grams: 100 }];
/// assert_eq!(s.pack(&items, &boxes, t).unwrap().expected_grams, 800);
/// s.print_label("UPS", &ids, t).unwrap();
/// s.weigh(805, t).unwrap();
/// s.pass_qc(WeightTolerance::default(), t).unwrap();
/// s.hand_to_carrier(t).unwrap();
/// assert_eq!(s.status(), FulfillmentStatus::HandedToCarrier);
/// assert_eq!(derive_order_status(&[s]), Some(OrderStatus::Shipped));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    id: u64,
    order_id: u64,
    warehouse: Option<Text>,
    // The lines, the pick list and the history are shared between copies of the order until
    // one of them changes: every operation copies the order twice, and most leave any one
    // shipment as it was.
    lines: Arc<Vec<(Sku, u32)>>,
    state: MachineState<FulfillmentStatus, PickBranch>,
    picker: Option<Text>,
    pick_list: Option<Arc<PickList>>,
    package: Option<Package>,
    label: Option<Label>,
    created_at: Timestamp,
    updated_at: Timestamp,
    history: Arc<Vec<StatusChange>>,
}

fn required(field: &str, value: &str) -> OmsResult<()> {
    if value.trim().is_empty() {
        return Err(OmsError::MissingField {
            field: field.into(),
        });
    }
    if value.chars().count() > 64 || value.chars().any(char::is_control) {
        return Err(OmsError::invalid(
            field,
            "must be at most 64 characters, no control characters",
        ));
    }
    Ok(())
}

fn guard(status: FulfillmentStatus, event: &str, reason: impl Into<String>) -> OmsError {
    OmsError::GuardFailed {
        from: status.label().into(),
        event: event.into(),
        reason: reason.into(),
    }
}

impl Shipment {
    /// Open a shipment in [`FulfillmentStatus::Requested`] for `lines` of order `order_id`.
    /// Quantities must be 1 ..= 1,000,000; repeated SKUs are merged. The id comes from `ids`
    /// (kind `"shipment"`).
    pub fn request(
        order_id: u64,
        lines: &[(Sku, i64)],
        ids: &dyn IdGenerator,
        now: Timestamp,
    ) -> OmsResult<Shipment> {
        if lines.is_empty() {
            return Err(OmsError::MissingField {
                field: "lines".into(),
            });
        }
        let mut merged: BTreeMap<Sku, i64> = BTreeMap::new();
        for (sku, qty) in lines {
            validate_quantity(*qty)?;
            let q = merged.entry(sku.clone()).or_insert(0);
            *q = q.saturating_add(*qty);
        }
        let lines = merged
            .into_iter()
            .map(|(sku, q)| validate_quantity(q).map(|q| (sku, q)))
            .collect::<OmsResult<Vec<_>>>()?;
        Ok(Shipment {
            id: ids.next_id("shipment"),
            order_id,
            warehouse: None,
            lines: Arc::new(lines),
            state: FULFILLMENT.start(),
            picker: None,
            pick_list: None,
            package: None,
            label: None,
            created_at: now,
            updated_at: now,
            history: Arc::default(),
        })
    }

    /// The shipment id.
    pub fn id(&self) -> u64 {
        self.id
    }
    /// The order it belongs to.
    pub fn order_id(&self) -> u64 {
        self.order_id
    }
    /// The shipping warehouse, once selected.
    pub fn warehouse(&self) -> Option<&str> {
        self.warehouse.as_deref()
    }
    /// `(sku, units)`, one per SKU, sorted by SKU.
    pub fn lines(&self) -> &[(Sku, u32)] {
        &self.lines
    }
    /// Current status.
    pub fn status(&self) -> FulfillmentStatus {
        self.state.status
    }
    /// Picking branches completed so far (while picking).
    pub fn branches_done(&self) -> Vec<PickBranch> {
        self.state.done.iter().copied().collect()
    }
    /// The picker, once assigned.
    pub fn picker(&self) -> Option<&str> {
        self.picker.as_deref()
    }
    /// The pick list, once the warehouse is notified.
    pub fn pick_list(&self) -> Option<&PickList> {
        self.pick_list.as_deref()
    }
    /// The package, once packed.
    pub fn package(&self) -> Option<&Package> {
        self.package.as_ref()
    }
    /// The label, once printed.
    pub fn label(&self) -> Option<&Label> {
        self.label.as_ref()
    }
    /// The carrier, once labelled.
    pub fn carrier(&self) -> Option<&str> {
        self.label.as_ref().map(|l| l.carrier.as_str())
    }
    /// The tracking number, once labelled.
    pub fn tracking_number(&self) -> Option<&str> {
        self.label.as_ref().map(|l| l.tracking_number.as_str())
    }
    /// When the shipment was opened.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }
    /// When it last changed.
    pub fn updated_at(&self) -> Timestamp {
        self.updated_at
    }
    /// Every accepted move, oldest first.
    pub fn history(&self) -> &[StatusChange] {
        &self.history
    }
    /// When the status last became `status`, if it ever did.
    pub fn entered_at(&self, status: FulfillmentStatus) -> Option<Timestamp> {
        self.history
            .iter()
            .rev()
            .find(|c| c.to == status)
            .map(|c| c.at)
    }

    /// Refuse early (before any work) if `event` is not drawn from the current status.
    fn ensure(&self, event: FulfillmentEvent) -> OmsResult<()> {
        match FULFILLMENT.target(self.state.status, event) {
            Some(_) => Ok(()),
            None => Err(OmsError::InvalidTransition {
                from: self.state.status.label().into(),
                event: event.label().into(),
            }),
        }
    }

    fn ensure_in(&self, status: FulfillmentStatus, operation: &str) -> OmsResult<()> {
        if self.state.status == status {
            Ok(())
        } else {
            Err(OmsError::InvalidTransition {
                from: self.state.status.label().into(),
                event: operation.into(),
            })
        }
    }

    fn fire(&mut self, event: FulfillmentEvent, now: Timestamp) -> OmsResult<Vec<PickBranch>> {
        let fired = FULFILLMENT.fire(&mut self.state, event)?;
        Arc::make_mut(&mut self.history).push(StatusChange {
            from: fired.from,
            to: fired.to,
            event,
            at: now,
        });
        self.updated_at = now;
        Ok(fired.compensate)
    }

    /// Apply a bare machine event with no warehouse checks. Operations below are the normal
    /// way in; this is for hosts that track the physical work elsewhere (carrier webhooks,
    /// an external WMS). The picking join still requires every branch.
    pub fn apply(&mut self, event: FulfillmentEvent, now: Timestamp) -> OmsResult<Vec<PickBranch>> {
        self.fire(event, now)
    }

    /// Requested → WarehouseAssigned.
    pub fn assign_warehouse(&mut self, warehouse: &str, now: Timestamp) -> OmsResult<()> {
        self.ensure(FulfillmentEvent::SelectWarehouse)?;
        required("warehouse", warehouse)?;
        self.fire(FulfillmentEvent::SelectWarehouse, now)?;
        self.warehouse = Some(warehouse.into());
        Ok(())
    }

    /// WarehouseAssigned → PickingQueued: build the pick list in walking order from `start`
    /// with the bins in `locations`.
    pub fn queue_picking(
        &mut self,
        locations: &BTreeMap<Sku, BinLocation>,
        start: BinLocation,
        metric: &WalkMetric,
        now: Timestamp,
    ) -> OmsResult<&PickList> {
        self.ensure(FulfillmentEvent::NotifyWarehouse)?;
        let list = PickList::new(&self.lines, locations, start, metric)?;
        self.fire(FulfillmentEvent::NotifyWarehouse, now)?;
        Ok(self.pick_list.insert(Arc::new(list)))
    }

    /// PickingQueued → PickingInProgress: `picker` takes the list; the picking fork starts.
    pub fn assign_picker(&mut self, picker: &str, now: Timestamp) -> OmsResult<()> {
        self.ensure(FulfillmentEvent::PickerAssigned)?;
        required("picker", picker)?;
        self.fire(FulfillmentEvent::PickerAssigned, now)?;
        self.picker = Some(picker.into());
        Ok(())
    }

    /// Scan one unit while picking. A SKU not on the list or an extra unit is an
    /// [`OmsError::ScanMismatch`]; either way nothing changes.
    pub fn scan(&mut self, sku: &str, now: Timestamp) -> OmsResult<ScanProgress> {
        self.ensure_in(FulfillmentStatus::PickingInProgress, "scan")?;
        let list =
            self.pick_list.as_mut().map(Arc::make_mut).ok_or_else(|| {
                guard(FulfillmentStatus::PickingInProgress, "scan", "no pick list")
            })?;
        let progress = list.scan(sku)?;
        self.updated_at = now;
        Ok(progress)
    }

    /// Complete one picking branch. [`PickBranch::ItemPick`] requires every unit scanned.
    pub fn complete_branch(&mut self, branch: PickBranch, now: Timestamp) -> OmsResult<()> {
        if branch == PickBranch::ItemPick
            && self.state.status == FulfillmentStatus::PickingInProgress
        {
            let missing = self.unscanned_text();
            if !missing.is_empty() {
                return Err(guard(
                    self.state.status,
                    branch.label(),
                    format!("units not scanned: {missing}"),
                ));
            }
        }
        FULFILLMENT.complete(&mut self.state, branch)?;
        self.updated_at = now;
        Ok(())
    }

    fn unscanned_text(&self) -> String {
        self.pick_list.as_ref().map_or_else(
            || "no pick list".into(),
            |l| {
                l.unscanned()
                    .iter()
                    .map(|(s, n)| format!("{s}×{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        )
    }

    /// Join: PickingInProgress → Packing, once all three branches are complete. Packing with
    /// units still unscanned is refused ([`OmsError::GuardFailed`] naming them).
    pub fn items_ready(&mut self, now: Timestamp) -> OmsResult<()> {
        self.ensure(FulfillmentEvent::ItemsReady)?;
        let missing = self.unscanned_text();
        if !missing.is_empty() {
            return Err(guard(
                self.state.status,
                FulfillmentEvent::ItemsReady.label(),
                format!("units not scanned: {missing}"),
            ));
        }
        self.fire(FulfillmentEvent::ItemsReady, now)?;
        Ok(())
    }

    /// A picking branch failed: PickingInProgress → PickingQueued, scans forgotten. Returns the
    /// branches that had completed, whose effects the caller must undo.
    pub fn fail_picking(&mut self, now: Timestamp) -> OmsResult<Vec<PickBranch>> {
        let undo = self.fire(FulfillmentEvent::PickFailed, now)?;
        if let Some(l) = self.pick_list.as_mut() {
            Arc::make_mut(l).reset_scans();
        }
        self.picker = None;
        Ok(undo)
    }

    /// Choose the box while packing: the smallest of `boxes` that holds the parcel, by the
    /// per-unit sizes in `items`.
    pub fn pack(
        &mut self,
        items: &BTreeMap<Sku, ItemSpec>,
        boxes: &[BoxSpec],
        now: Timestamp,
    ) -> OmsResult<&Package> {
        self.ensure_in(FulfillmentStatus::Packing, "pack")?;
        let package = Package::choose(boxes, contents(&self.lines, items)?)?;
        self.updated_at = now;
        Ok(self.package.insert(package))
    }

    /// Print the label while packing: tracking number from `ids` (kind `"tracking"`). A
    /// parcel keeps its first label, so a second print is refused.
    pub fn print_label(
        &mut self,
        carrier: &str,
        ids: &dyn IdGenerator,
        now: Timestamp,
    ) -> OmsResult<&Label> {
        self.ensure_in(FulfillmentStatus::Packing, "print_label")?;
        if self.label.is_some() {
            return Err(guard(self.state.status, "print_label", "already labelled"));
        }
        // Validate before drawing an id so a refused carrier does not consume one.
        Label::new(carrier, 0)?;
        let label = Label::new(carrier, ids.next_id("tracking"))?;
        self.updated_at = now;
        Ok(self.label.insert(label))
    }

    /// Packing → QC with the weighed package; requires a chosen box and a label.
    pub fn weigh(&mut self, measured_grams: u64, now: Timestamp) -> OmsResult<()> {
        self.ensure(FulfillmentEvent::QualityCheck)?;
        let event = FulfillmentEvent::QualityCheck.label();
        if self.package.is_none() {
            return Err(guard(self.state.status, event, "no box chosen"));
        }
        if self.label.is_none() {
            return Err(guard(self.state.status, event, "no label printed"));
        }
        self.fire(FulfillmentEvent::QualityCheck, now)?;
        if let Some(p) = self.package.as_mut() {
            p.measured_grams = Some(measured_grams);
        }
        Ok(())
    }

    /// QC → ReadyForShipment if the measured weight is within `tolerance` of the expected;
    /// otherwise [`OmsError::WeightMismatch`] and the parcel stays in QC (see
    /// [`Shipment::fail_qc`]).
    pub fn pass_qc(&mut self, tolerance: WeightTolerance, now: Timestamp) -> OmsResult<()> {
        self.ensure(FulfillmentEvent::QcPassed)?;
        let (expected, measured) = self
            .package
            .as_ref()
            .and_then(|p| Some((p.expected_grams, p.measured_grams?)))
            .ok_or_else(|| guard(self.state.status, "passed", "package not weighed"))?;
        check_weight(expected, measured, tolerance)?;
        self.fire(FulfillmentEvent::QcPassed, now)?;
        Ok(())
    }

    /// QC → PickingInProgress: the parcel is unpacked and picked again (scans and box reset;
    /// the label and its tracking number stay with the parcel).
    pub fn fail_qc(&mut self, now: Timestamp) -> OmsResult<()> {
        self.fire(FulfillmentEvent::QcFailed, now)?;
        if let Some(l) = self.pick_list.as_mut() {
            Arc::make_mut(l).reset_scans();
        }
        self.package = None;
        Ok(())
    }

    /// ReadyForShipment → HandedToCarrier.
    pub fn hand_to_carrier(&mut self, now: Timestamp) -> OmsResult<()> {
        self.fire(FulfillmentEvent::CarrierPickup, now).map(drop)
    }

    /// HandedToCarrier → InTransit.
    pub fn mark_in_transit(&mut self, now: Timestamp) -> OmsResult<()> {
        self.fire(FulfillmentEvent::InTransit, now).map(drop)
    }

    /// InTransit → OutForDelivery.
    pub fn mark_out_for_delivery(&mut self, now: Timestamp) -> OmsResult<()> {
        self.fire(FulfillmentEvent::OutForDelivery, now).map(drop)
    }

    /// OutForDelivery → Delivered.
    pub fn mark_delivered(&mut self, now: Timestamp) -> OmsResult<()> {
        self.fire(FulfillmentEvent::Delivered, now).map(drop)
    }

    /// Cancel before packing. Returns the picking branches to undo, if picking had started.
    pub fn cancel(&mut self, now: Timestamp) -> OmsResult<Vec<PickBranch>> {
        self.fire(FulfillmentEvent::Cancel, now)
    }
}

/// The shipment with id `id` among `shipments`, or [`OmsError::NotFound`].
pub fn find_shipment(shipments: &[Shipment], id: u64) -> OmsResult<&Shipment> {
    shipments
        .iter()
        .find(|s| s.id == id)
        .ok_or_else(|| not_found(id))
}

/// Mutable form of [`find_shipment`].
pub fn find_shipment_mut(shipments: &mut [Shipment], id: u64) -> OmsResult<&mut Shipment> {
    shipments
        .iter_mut()
        .find(|s| s.id == id)
        .ok_or_else(|| not_found(id))
}

fn not_found(id: u64) -> OmsError {
    OmsError::NotFound {
        kind: "shipment".into(),
        id: id.to_string(),
    }
}

/// The order's shipping status read off its shipments (cancelled parcels ignored):
///
/// - some but not all delivered → `PartiallyDelivered`; all delivered → `Delivered`;
/// - none delivered, some but not all with the carrier → `PartiallyShipped`;
/// - all with the carrier → the least advanced of them: `Shipped`, `InTransit` or
///   `OutForDelivery`;
/// - nothing with the carrier yet (or no live shipment) → `None`: the order lifecycle, not
///   the parcels, decides the status before shipping.
///
/// ```
/// use oms_core::fulfillment::derive_order_status;
/// assert_eq!(derive_order_status(&[]), None);
/// ```
pub fn derive_order_status(shipments: &[Shipment]) -> Option<OrderStatus> {
    use FulfillmentStatus as F;
    let live: Vec<F> = shipments
        .iter()
        .map(Shipment::status)
        .filter(|s| *s != F::Cancelled)
        .collect();
    let total = live.len();
    let delivered = live.iter().filter(|s| **s == F::Delivered).count();
    let shipped = live.iter().filter(|s| s.is_shipped()).count();
    if total == 0 || shipped == 0 {
        return None;
    }
    if delivered == total {
        return Some(OrderStatus::Delivered);
    }
    if delivered > 0 {
        return Some(OrderStatus::PartiallyDelivered);
    }
    if shipped < total {
        return Some(OrderStatus::PartiallyShipped);
    }
    let least = live.iter().copied().min()?;
    Some(match least {
        F::OutForDelivery => OrderStatus::OutForDelivery,
        F::InTransit => OrderStatus::InTransit,
        _ => OrderStatus::Shipped,
    })
}
