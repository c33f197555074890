//! Fulfillment through delivery: `request_fulfillment` (stock already sourced at reservation
//! → one shipment per warehouse), picking with scan checks on a shortest-walk pick list,
//! packing in the smallest fitting box with a label and a weight check, `notify_shipped`, transit,
//! delivery, and payment capture at the configured milestone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Change, NotificationKind, OrderService};
use crate::error::{OmsError, OmsResult};
use crate::events::names;
use crate::fulfillment::pack::{BoxSpec, ItemSpec, WeightTolerance};
use crate::fulfillment::pick::{BinLocation, WalkMetric};
use crate::fulfillment::{derive_order_status, FulfillmentStatus, PickBranch, Shipment};
use crate::inventory::WarehouseId;
use crate::lifecycle::{allowed_events, next_status, Actor, GuardContext, OrderEvent, OrderStatus};
use crate::order::{Order, Sku};
use crate::payment::PaymentStatus;
use crate::text::Text;
use crate::time::{Duration, Timestamp};

/// How the warehouses work: bins, boxes, unit sizes, carrier and transit estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FulfillmentConfig {
    /// Bin of each SKU, per warehouse id.
    pub locations: BTreeMap<String, BTreeMap<Sku, BinLocation>>,
    /// Where pickers start (the packing station).
    pub start: BinLocation,
    /// The walking metric of the pick path.
    pub metric: WalkMetric,
    /// Boxes available at packing.
    pub boxes: Vec<BoxSpec>,
    /// Size and weight of one unit of each SKU.
    pub items: BTreeMap<Sku, ItemSpec>,
    /// Carrier code printed on labels.
    pub carrier: String,
    /// Allowed difference between expected and measured package weight.
    pub tolerance: WeightTolerance,
    /// Estimated time from handover to delivery, shown to customers.
    pub transit_estimate: Duration,
    /// Volume assumed for a unit of a SKU with no configured size.
    pub default_unit_volume_cm3: u64,
}

impl Default for FulfillmentConfig {
    fn default() -> Self {
        FulfillmentConfig {
            locations: BTreeMap::new(),
            start: BinLocation::new(0, 0, 0),
            metric: WalkMetric::default(),
            boxes: vec![
                BoxSpec {
                    id: "S".into(),
                    volume_cm3: 3_000,
                    max_weight_grams: 5_000,
                    tare_grams: 150,
                },
                BoxSpec {
                    id: "M".into(),
                    volume_cm3: 20_000,
                    max_weight_grams: 15_000,
                    tare_grams: 400,
                },
                BoxSpec {
                    id: "L".into(),
                    volume_cm3: 80_000,
                    max_weight_grams: 30_000,
                    tare_grams: 900,
                },
                // Bulky orders (cases of water, seed 004) go on a pallet rather than fail.
                BoxSpec {
                    id: "PALLET".into(),
                    volume_cm3: 1_500_000,
                    max_weight_grams: 500_000,
                    tare_grams: 20_000,
                },
            ],
            items: BTreeMap::new(),
            carrier: "OMSX".into(),
            tolerance: WeightTolerance::default(),
            transit_estimate: Duration::hours(24),
            default_unit_volume_cm3: 1_000,
        }
    }
}

impl FulfillmentConfig {
    /// The bins of `lines` in `warehouse`. A SKU with no configured bin is given one in an
    /// overflow aisle past the configured ones, in SKU order, so hosts that do not model bins
    /// still get a valid (if unoptimised) pick list.
    pub fn slotting(&self, warehouse: &str, lines: &[(Sku, u32)]) -> BTreeMap<Sku, BinLocation> {
        let mut map = self.locations.get(warehouse).cloned().unwrap_or_default();
        let overflow = map
            .values()
            .map(|b| b.aisle)
            .max()
            .map_or(0, |a| a.saturating_add(1));
        let mut next = 0u32;
        for (sku, _) in lines {
            if !map.contains_key(sku) {
                map.insert(sku.clone(), BinLocation::new(overflow, 0, next));
                next = next.saturating_add(1);
            }
        }
        map
    }
}

impl FulfillmentConfig {
    /// Unit sizes for the SKUs of `order`: the configured ones, else the line's own weight and
    /// [`FulfillmentConfig::default_unit_volume_cm3`].
    pub fn item_specs(&self, order: &Order) -> BTreeMap<Sku, ItemSpec> {
        let mut map = self.items.clone();
        for l in &order.lines {
            map.entry(l.sku.clone()).or_insert(ItemSpec {
                volume_cm3: self.default_unit_volume_cm3,
                weight_grams: u64::from(l.weight_grams),
            });
        }
        map
    }
}

/// One shipment as the customer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentTracking {
    /// Shipment id.
    pub shipment_id: u64,
    /// Warehouse it ships from.
    pub warehouse: Option<String>,
    /// Carrier.
    pub carrier: Option<String>,
    /// Tracking number.
    pub tracking_number: Option<String>,
    /// Shipment status.
    pub status: FulfillmentStatus,
    /// Estimated delivery: handover plus the configured transit time, once handed over.
    pub estimated_delivery: Option<Timestamp>,
    /// When it was delivered, once it was.
    pub delivered_at: Option<Timestamp>,
}

/// A carrier-side step of one shipment, reported by the host (scans, webhooks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CarrierUpdate {
    /// The parcel is moving.
    InTransit,
    /// With the driver for the last mile.
    OutForDelivery,
    /// Delivered (signature, OTP or photo proof).
    Delivered,
}

/// Each shipment of `order` as the customer sees it, delivery estimated `transit` after handover.
pub(super) fn shipment_tracking(order: &Order, transit: Duration) -> Vec<ShipmentTracking> {
    order
        .shipments
        .iter()
        .map(|s| ShipmentTracking {
            shipment_id: s.id(),
            warehouse: s.warehouse().map(str::to_owned),
            carrier: s.carrier().map(str::to_owned),
            tracking_number: s.tracking_number().map(str::to_owned),
            status: s.status(),
            estimated_delivery: s
                .entered_at(FulfillmentStatus::HandedToCarrier)
                .map(|t| t.plus(transit)),
            delivered_at: s.entered_at(FulfillmentStatus::Delivered),
        })
        .collect()
}

/// Whether every shipment of `order` that is not cancelled has reached `status`.
fn every_active_shipment_at(order: &Order, status: FulfillmentStatus) -> bool {
    order
        .shipments
        .iter()
        .filter(|s| s.status() != FulfillmentStatus::Cancelled)
        .all(|s| s.status() >= status)
}

/// The `shipment.updated` event's data: the shipment, its new status, then `extra`.
fn shipment_data(shipment_id: u64, status: Text, extra: Vec<(Text, Text)>) -> Vec<(Text, Text)> {
    let mut data = vec![
        ("shipment".into(), Text::display(&shipment_id)),
        ("status".into(), status),
    ];
    data.extend(extra);
    data
}

fn shipment_mut(order: &mut Order, shipment_id: u64) -> OmsResult<&mut Shipment> {
    order
        .shipments
        .iter_mut()
        .find(|s| s.id() == shipment_id)
        .ok_or_else(|| OmsError::NotFound {
            kind: "shipment".into(),
            id: shipment_id.to_string(),
        })
}

impl OrderService {
    /// The guard facts of `order` for the lifecycle, read from its shipments and returns.
    pub(super) fn guard(order: &Order) -> GuardContext {
        use FulfillmentStatus as F;
        let live: Vec<&Shipment> = order
            .shipments
            .iter()
            .filter(|s| s.status() != F::Cancelled)
            .collect();
        let packed = live
            .iter()
            .any(|s| s.package().is_some() || s.status() >= F::ReadyForShipment);
        let all_shipped = !live.is_empty() && live.iter().all(|s| s.status().is_shipped());
        let all_delivered = !live.is_empty() && live.iter().all(|s| s.status() == F::Delivered);
        let approved: Vec<_> = order
            .returns
            .iter()
            .filter(|r| r.refund().is_some())
            .collect();
        let fully_refunded = !approved.is_empty()
            && approved
                .iter()
                .all(|r| matches!(r.order_status(), OrderStatus::Refunded));
        GuardContext {
            anything_packed: packed,
            all_shipped,
            all_delivered,
            fully_refunded,
        }
    }

    /// Move the order to what its shipments say (PartiallyShipped … Delivered), through the
    /// lifecycle table, and run the side effects of the milestone (capture, notifications).
    fn follow_shipments(&self, ch: &mut Change, actor: &Actor) -> OmsResult<()> {
        let Some(target) = derive_order_status(&ch.order.shipments) else {
            return Ok(());
        };
        if target == ch.order.status {
            return Ok(());
        }
        let guard = Self::guard(&ch.order);
        let from = ch.order.status;
        let event = allowed_events(from)
            .into_iter()
            .find(|e| next_status(from, *e, &guard).ok() == Some(target))
            .ok_or_else(|| OmsError::InvalidTransition {
                from: from.to_string(),
                event: format!("shipments say {target}"),
            })?;
        self.step(
            ch,
            event,
            guard,
            actor,
            &format!("shipments: {target}"),
            vec![],
        )?;
        if self.config.capture.due(ch.order.status) {
            self.capture_all(ch)?;
        }
        Ok(())
    }

    /// Capture every hold in full (the milestone of the capture policy was reached).
    fn capture_all(&self, ch: &mut Change) -> OmsResult<()> {
        let processor = self.processor()?;
        for i in 0..ch.order.payments.len() {
            let p = &ch.order.payments[i];
            if p.status() != PaymentStatus::AwaitingCapture {
                continue;
            }
            let amount = p.capturable()?;
            if amount.is_zero() {
                continue;
            }
            let now = self.now();
            if p.is_expired(now) {
                // The hold lapsed before the goods reached the milestone: record it and escalate
                // (the goods are gone; shipping and delivery must still be recorded).
                let id = p.id().to_owned();
                ch.order.payments[i].expire(now)?;
                ch.event(
                    names::PAYMENT_FAILED,
                    now,
                    vec![
                        ("payment".into(), Text::from(id)),
                        ("capture".into(), "authorization expired".into()),
                    ],
                );
                continue;
            }
            let processed = processor.capture(p, amount, true)?;
            self.count_gateway(&processed.attempts);
            let id = p.id().to_owned();
            ch.order.payments[i] = processed.payment;
            match processed.outcome {
                crate::payment::Outcome::Succeeded => {
                    ch.event(
                        names::PAYMENT_CAPTURED,
                        self.now(),
                        vec![
                            ("payment".into(), Text::from(id)),
                            ("amount".into(), Text::display(&amount.amount())),
                        ],
                    );
                }
                other => {
                    // The goods are gone: a failed capture is escalated, not undone.
                    ch.event(
                        names::PAYMENT_FAILED,
                        self.now(),
                        vec![
                            ("payment".into(), Text::from(id)),
                            ("capture".into(), Text::display(&format_args!("{other:?}"))),
                        ],
                    );
                }
            }
        }
        Ok(())
    }

    /// The units the order's live holds keep, per warehouse and SKU, not yet shipped: what its
    /// parcels will carry.
    pub(super) fn held_by_warehouse(
        &self,
        order: &Order,
    ) -> OmsResult<BTreeMap<String, BTreeMap<Sku, u32>>> {
        let mut per_wh: BTreeMap<String, BTreeMap<Sku, u32>> = BTreeMap::new();
        for id in &order.reservations {
            let r = self.deps.inventory.reservation(*id)?;
            if !r.status.holds_stock() {
                continue;
            }
            for item in r.unshipped_items() {
                let q = u32::try_from(item.quantity)
                    .map_err(|_| OmsError::overflow("parcel quantity"))?;
                let slot = per_wh
                    .entry(item.warehouse.as_str().to_owned())
                    .or_default()
                    .entry(item.sku.clone())
                    .or_insert(0);
                *slot = slot
                    .checked_add(q)
                    .ok_or_else(|| OmsError::overflow("parcel quantity"))?;
            }
        }
        Ok(per_wh)
    }

    /// Start fulfillment (seed 003 `request_fulfillment`): one shipment per warehouse the
    /// order's stock is held in, each with its pick list ordered for the shortest walk; the
    /// order moves Confirmed → Processing → Allocated.
    pub fn request_fulfillment(
        &self,
        order_id: u64,
        actor: &Actor,
        idempotency_key: Option<&str>,
    ) -> OmsResult<Order> {
        self.idempotent(
            idempotency_key,
            "request_fulfillment",
            &(order_id, actor),
            |idem| {
                Self::staff_only(actor, "start fulfillment")?;
                let mut ch = self.load(order_id, actor)?;
                let now = self.now();
                let guard = Self::guard(&ch.order);
                next_status(ch.order.status, OrderEvent::StartFulfillment, &guard)?;
                let per_wh = self.held_by_warehouse(&ch.order)?;
                if per_wh.is_empty() {
                    return Err(OmsError::GuardFailed {
                        from: ch.order.status.to_string(),
                        event: OrderEvent::StartFulfillment.as_str().into(),
                        reason: "no stock is held for this order".into(),
                    });
                }
                let fc = &self.config.fulfillment;
                let mut plan = Vec::new();
                for (wh, lines) in per_wh {
                    let lines: Vec<(Sku, i64)> = lines
                        .into_iter()
                        .map(|(sku, q)| (sku, i64::from(q)))
                        .collect();
                    let mut s =
                        Shipment::request(ch.order.id, &lines, self.deps.ids.as_ref(), now)?;
                    s.assign_warehouse(&wh, now)?;
                    let locations = fc.slotting(&wh, s.lines());
                    let saved = s
                        .queue_picking(&locations, fc.start, &fc.metric, now)?
                        .route()
                        .saved_cm();
                    plan.push((
                        Text::from(format!("shipment {} from {wh}", s.id())),
                        Text::from(format!("pick path saves {saved} cm")),
                    ));
                    ch.order.shipments.push(s);
                }
                self.step(
                    &mut ch,
                    OrderEvent::StartFulfillment,
                    guard,
                    actor,
                    "fulfillment requested",
                    vec![],
                )?;
                self.step(
                    &mut ch,
                    OrderEvent::Allocate,
                    guard,
                    actor,
                    "warehouses assigned",
                    plan,
                )?;
                self.commit_order(ch, idem)
            },
        )
    }

    /// Record a completed pick of one shipment: `scans` are the SKUs scanned, one per unit.
    /// Every unit must be scanned (a wrong or extra scan is `ScanMismatch`); then the pick,
    /// quality and inventory branches join and the shipment goes to packing. The order is
    /// `Picked` once every shipment is.
    pub fn record_pick(
        &self,
        order_id: u64,
        shipment_id: u64,
        picker: &str,
        scans: &[String],
        actor: &Actor,
        idempotency_key: Option<&str>,
    ) -> OmsResult<Order> {
        let request = (order_id, shipment_id, picker, scans, actor);
        self.idempotent(idempotency_key, "record_pick", &request, |idem| {
            self.pick(order_id, shipment_id, picker, scans, actor, idem)
        })
    }

    fn pick(
        &self,
        order_id: u64,
        shipment_id: u64,
        picker: &str,
        scans: &[String],
        actor: &Actor,
        idem: Option<(&str, &str)>,
    ) -> OmsResult<Order> {
        Self::staff_only(actor, "record picking")?;
        let mut ch = self.load(order_id, actor)?;
        let now = self.now();
        {
            let s = shipment_mut(&mut ch.order, shipment_id)?;
            if s.status() == FulfillmentStatus::PickingQueued {
                s.assign_picker(picker, now)?;
            }
            for sku in scans {
                s.scan(sku, now)?;
            }
            for b in [
                PickBranch::ItemPick,
                PickBranch::QualityMonitor,
                PickBranch::InventoryUpdate,
            ] {
                s.complete_branch(b, now)?;
            }
            s.items_ready(now)?;
        }
        ch.event(
            names::SHIPMENT_UPDATED,
            now,
            shipment_data(shipment_id, "packing".into(), vec![]),
        );
        if every_active_shipment_at(&ch.order, FulfillmentStatus::Packing) {
            let guard = Self::guard(&ch.order);
            self.step(
                &mut ch,
                OrderEvent::Pick,
                guard,
                actor,
                "every shipment picked",
                vec![],
            )?;
        }
        self.commit_order(ch, idem)
    }

    /// Pack one shipment: the smallest fitting box, a label with a tracking number, the scale
    /// reading checked against the expected weight (a mismatch is `WeightMismatch` and the
    /// parcel stays at packing). The order is `Packed` then `AwaitingShipment` once every
    /// shipment is ready.
    pub fn record_pack(
        &self,
        order_id: u64,
        shipment_id: u64,
        measured_grams: Option<u64>,
        actor: &Actor,
        idempotency_key: Option<&str>,
    ) -> OmsResult<Order> {
        let request = (order_id, shipment_id, measured_grams, actor);
        self.idempotent(idempotency_key, "record_pack", &request, |idem| {
            self.pack(order_id, shipment_id, measured_grams, actor, idem)
        })
    }

    fn pack(
        &self,
        order_id: u64,
        shipment_id: u64,
        measured_grams: Option<u64>,
        actor: &Actor,
        idem: Option<(&str, &str)>,
    ) -> OmsResult<Order> {
        Self::staff_only(actor, "record packing")?;
        let mut ch = self.load(order_id, actor)?;
        let now = self.now();
        let fc = &self.config.fulfillment;
        let items = fc.item_specs(&ch.order);
        {
            let s = shipment_mut(&mut ch.order, shipment_id)?;
            let expected = s.pack(&items, &fc.boxes, now)?.expected_grams;
            s.print_label(&fc.carrier, self.deps.ids.as_ref(), now)?;
            s.weigh(measured_grams.unwrap_or(expected), now)?;
            s.pass_qc(fc.tolerance, now)?;
        }
        ch.event(
            names::SHIPMENT_UPDATED,
            now,
            shipment_data(shipment_id, "ready_for_shipment".into(), vec![]),
        );
        if every_active_shipment_at(&ch.order, FulfillmentStatus::ReadyForShipment) {
            let guard = Self::guard(&ch.order);
            if ch.order.status != OrderStatus::Picked && ch.order.status != OrderStatus::Packed {
                self.step(
                    &mut ch,
                    OrderEvent::Pick,
                    guard,
                    actor,
                    "every shipment picked",
                    vec![],
                )?;
            }
            self.step(
                &mut ch,
                OrderEvent::Pack,
                guard,
                actor,
                "every shipment packed",
                vec![],
            )?;
            self.step(
                &mut ch,
                OrderEvent::ReadyToShip,
                guard,
                actor,
                "waiting for the carrier",
                vec![],
            )?;
        }
        self.commit_order(ch, idem)
    }

    /// A shipment was handed to the carrier (seed 003 `notify_shipped`): its units leave the
    /// warehouse's stock, the order becomes PartiallyShipped or Shipped, the customer gets the
    /// tracking number, and the payment is captured if the policy says "on shipment".
    pub fn notify_shipped(
        &self,
        order_id: u64,
        shipment_id: u64,
        actor: &Actor,
        idempotency_key: Option<&str>,
    ) -> OmsResult<Order> {
        self.idempotent(
            idempotency_key,
            "notify_shipped",
            &(order_id, shipment_id, actor),
            |idem| {
                Self::staff_only(actor, "hand a parcel to the carrier")?;
                let mut ch = self.load(order_id, actor)?;
                let now = self.now();
                let (warehouse, tracking, carrier) = {
                    let s = shipment_mut(&mut ch.order, shipment_id)?;
                    s.hand_to_carrier(now)?;
                    (
                        s.warehouse().unwrap_or_default().to_owned(),
                        s.tracking_number().unwrap_or_default().to_owned(),
                        s.carrier().unwrap_or_default().to_owned(),
                    )
                };
                let wh = WarehouseId::new(&warehouse)?;
                for id in &ch.order.reservations {
                    let r = self.deps.inventory.reservation(*id)?;
                    let holds_here = r.unshipped_items().iter().any(|i| i.warehouse == wh);
                    if holds_here && r.status.holds_stock() {
                        self.deps.inventory.ship_from(*id, &wh, now)?;
                    }
                }
                ch.event(
                    names::SHIPMENT_UPDATED,
                    now,
                    shipment_data(
                        shipment_id,
                        "handed_to_carrier".into(),
                        vec![("tracking".into(), Text::from(&tracking))],
                    ),
                );
                self.follow_shipments(&mut ch, actor)?;
                ch.notify(
                    NotificationKind::Shipped,
                    vec![("carrier".into(), carrier), ("tracking".into(), tracking)],
                );
                self.commit_order(ch, idem)
            },
        )
    }

    /// A carrier update for one shipment: in transit, out for delivery, delivered. The order
    /// follows (InTransit … Delivered, or PartiallyDelivered for a split order), the customer
    /// is told, and the payment is captured when the policy's milestone is reached.
    pub fn update_shipment(
        &self,
        order_id: u64,
        shipment_id: u64,
        update: CarrierUpdate,
        actor: &Actor,
        idempotency_key: Option<&str>,
    ) -> OmsResult<Order> {
        self.idempotent(
            idempotency_key,
            "update_shipment",
            &(order_id, shipment_id, update, actor),
            |idem| {
                Self::staff_only(actor, "report carrier updates")?;
                let mut ch = self.load(order_id, actor)?;
                let now = self.now();
                let status = {
                    let s = shipment_mut(&mut ch.order, shipment_id)?;
                    match update {
                        CarrierUpdate::InTransit => s.mark_in_transit(now)?,
                        CarrierUpdate::OutForDelivery => {
                            if s.status() == FulfillmentStatus::HandedToCarrier {
                                s.mark_in_transit(now)?;
                            }
                            s.mark_out_for_delivery(now)?;
                        }
                        CarrierUpdate::Delivered => {
                            if s.status() == FulfillmentStatus::HandedToCarrier {
                                s.mark_in_transit(now)?;
                            }
                            if s.status() == FulfillmentStatus::InTransit {
                                s.mark_out_for_delivery(now)?;
                            }
                            s.mark_delivered(now)?;
                        }
                    }
                    s.status()
                };
                ch.event(
                    names::SHIPMENT_UPDATED,
                    now,
                    shipment_data(
                        shipment_id,
                        Text::display(&format_args!("{status:?}")),
                        vec![],
                    ),
                );
                self.follow_shipments(&mut ch, actor)?;
                match update {
                    CarrierUpdate::OutForDelivery => {
                        ch.notify(NotificationKind::OutForDelivery, vec![]);
                    }
                    CarrierUpdate::Delivered => ch.notify(NotificationKind::Delivered, vec![]),
                    CarrierUpdate::InTransit => {}
                }
                self.commit_order(ch, idem)
            },
        )
    }
}
