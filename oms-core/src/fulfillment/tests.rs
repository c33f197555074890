use std::collections::{BTreeMap, BTreeSet, VecDeque};

use proptest::prelude::*;

use super::machine::{diagram_edges, Label, MachineState};
use super::pack::{BoxSpec, ItemSpec, WeightTolerance};
use super::pick::{BinLocation, WalkMetric};
use super::*;
use crate::lifecycle::OrderStatus;
use crate::order::Sku;
use crate::time::{SequentialIds, Timestamp};

type State = MachineState<FulfillmentStatus, PickBranch>;

#[derive(Debug, Clone, Copy)]
enum Step {
    Fire(FulfillmentEvent),
    Complete(PickBranch),
}

fn apply(state: &mut State, step: Step) -> crate::OmsResult<()> {
    match step {
        Step::Fire(e) => FULFILLMENT.fire(state, e).map(drop),
        Step::Complete(b) => FULFILLMENT.complete(state, b),
    }
}

/// The machine driven (breadth first over every event and branch) into `target`.
fn reach(target: FulfillmentStatus) -> State {
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([FULFILLMENT.start()]);
    while let Some(s) = queue.pop_front() {
        if s.status == target {
            return s;
        }
        let steps = FulfillmentEvent::ALL
            .map(Step::Fire)
            .into_iter()
            .chain(PickBranch::ALL.map(Step::Complete));
        for step in steps {
            let mut next = s.clone();
            if apply(&mut next, step).is_ok() && seen.insert(next.clone()) {
                queue.push_back(next);
            }
        }
    }
    panic!("{target:?} unreachable");
}

#[test]
fn every_state_is_reachable_and_terminals_have_no_way_out() {
    for s in FulfillmentStatus::ALL {
        assert_eq!(reach(s).status, s);
    }
    for t in FULFILLMENT.terminals {
        assert!(FULFILLMENT.events_from(*t).is_empty());
    }
}

#[test]
fn edges_not_drawn_are_refused_and_leave_state_unchanged() {
    let mut refused = 0;
    for s in FulfillmentStatus::ALL {
        for e in FulfillmentEvent::ALL {
            let mut st = reach(s);
            // Complete the fork so that only the table can refuse.
            if s == FULFILLMENT.fork.at {
                for b in PickBranch::ALL {
                    FULFILLMENT.complete(&mut st, b).unwrap();
                }
            }
            let before = st.clone();
            if let Some(to) = FULFILLMENT.target(s, e) {
                FULFILLMENT.fire(&mut st, e).unwrap();
                assert_eq!(st.status, to);
            } else {
                let err = FULFILLMENT.fire(&mut st, e).unwrap_err();
                assert_eq!(err.code(), "invalid_transition", "{s:?} {e:?}");
                assert_eq!(st, before);
                refused += 1;
            }
        }
    }
    assert_eq!(
        refused,
        FulfillmentStatus::ALL.len() * FulfillmentEvent::ALL.len() - FULFILLMENT_EDGES.len()
    );
}

#[test]
fn join_waits_for_every_branch_and_branches_complete_once() {
    let mut st = reach(FulfillmentStatus::PickingInProgress);
    for b in [PickBranch::InventoryUpdate, PickBranch::ItemPick] {
        FULFILLMENT.complete(&mut st, b).unwrap();
        let before = st.clone();
        let e = FULFILLMENT
            .fire(&mut st, FulfillmentEvent::ItemsReady)
            .unwrap_err();
        assert_eq!(e.code(), "guard_failed");
        assert_eq!(st, before);
    }
    let before = st.clone();
    assert_eq!(
        FULFILLMENT
            .complete(&mut st, PickBranch::ItemPick)
            .unwrap_err()
            .code(),
        "guard_failed"
    );
    assert_eq!(st, before);
    FULFILLMENT
        .complete(&mut st, PickBranch::QualityMonitor)
        .unwrap();
    FULFILLMENT
        .fire(&mut st, FulfillmentEvent::ItemsReady)
        .unwrap();
    assert_eq!(st.status, FulfillmentStatus::Packing);
    assert!(st.done.is_empty());
    let e = FULFILLMENT
        .complete(&mut st, PickBranch::ItemPick)
        .unwrap_err();
    assert_eq!(e.code(), "invalid_transition");
}

#[test]
fn leaving_the_fork_early_reports_branches_to_compensate() {
    let mut st = reach(FulfillmentStatus::PickingInProgress);
    FULFILLMENT
        .complete(&mut st, PickBranch::InventoryUpdate)
        .unwrap();
    let fired = FULFILLMENT
        .fire(&mut st, FulfillmentEvent::PickFailed)
        .unwrap();
    assert_eq!(fired.compensate, vec![PickBranch::InventoryUpdate]);
    assert_eq!(st.status, FulfillmentStatus::PickingQueued);
    // Re-entering the fork starts every branch afresh.
    FULFILLMENT
        .fire(&mut st, FulfillmentEvent::PickerAssigned)
        .unwrap();
    assert!(st.done.is_empty());
}

/// Seed 000 §4 state names onto the machine (pseudo-states and branches are inside
/// PickingInProgress).
fn seed000(name: &str) -> FulfillmentStatus {
    use FulfillmentStatus as F;
    match name {
        "Fulfillment_Requested" => F::Requested,
        "Warehouse_Assigned" => F::WarehouseAssigned,
        "Picking_Queued" => F::PickingQueued,
        "Picking_In_Progress"
        | "Fork_Picking"
        | "Item_Pick"
        | "Quality_Monitor"
        | "Inventory_Update"
        | "Join_Picking" => F::PickingInProgress,
        "Packing" => F::Packing,
        "QC" => F::Qc,
        "ReadyForShipment" => F::ReadyForShipment,
        "HandedToCarrier" => F::HandedToCarrier,
        "InTransit" => F::InTransit,
        other => panic!("unmapped seed state {other}"),
    }
}

#[test]
fn walks_every_edge_of_seed_000_section_4() {
    use FulfillmentEvent as E;
    use PickBranch as B;
    use Step::{Complete as C, Fire as F};
    let rows: &[(&str, &str, &[Step])] = &[
        (
            "Fulfillment_Requested",
            "Warehouse_Assigned",
            &[F(E::SelectWarehouse)],
        ),
        (
            "Warehouse_Assigned",
            "Picking_Queued",
            &[F(E::NotifyWarehouse)],
        ),
        (
            "Picking_Queued",
            "Picking_In_Progress",
            &[F(E::PickerAssigned)],
        ),
        ("Picking_In_Progress", "Fork_Picking", &[]),
        ("Fork_Picking", "Item_Pick", &[]),
        ("Fork_Picking", "Quality_Monitor", &[]),
        ("Fork_Picking", "Inventory_Update", &[]),
        ("Item_Pick", "Join_Picking", &[C(B::ItemPick)]),
        ("Quality_Monitor", "Join_Picking", &[C(B::QualityMonitor)]),
        ("Inventory_Update", "Join_Picking", &[C(B::InventoryUpdate)]),
        (
            "Join_Picking",
            "Packing",
            &[
                C(B::ItemPick),
                C(B::QualityMonitor),
                C(B::InventoryUpdate),
                F(E::ItemsReady),
            ],
        ),
        ("Packing", "QC", &[F(E::QualityCheck)]),
        ("QC", "ReadyForShipment", &[F(E::QcPassed)]),
        (
            "ReadyForShipment",
            "HandedToCarrier",
            &[F(E::CarrierPickup)],
        ),
        ("HandedToCarrier", "InTransit", &[F(E::InTransit)]),
    ];
    for (from, to, steps) in rows {
        let mut st = reach(seed000(from));
        for s in *steps {
            apply(&mut st, *s).unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
        }
        assert_eq!(st.status, seed000(to), "{from} -> {to}");
    }
    // The diagram draws each seed edge (under the machine's names).
    let drawn = diagram_edges(&fulfillment_mermaid());
    let node = |seed: &str| -> String {
        match seed {
            "Fork_Picking" | "Join_Picking" | "Item_Pick" | "Quality_Monitor"
            | "Inventory_Update" => seed.to_ascii_lowercase(),
            other => seed000(other).label().into(),
        }
    };
    for (from, to, _) in rows {
        assert!(
            drawn.contains(&(node(from), node(to))),
            "diagram lacks {from} -> {to}"
        );
    }
}

#[test]
fn mermaid_is_generated_from_the_table() {
    let m = fulfillment_mermaid();
    assert!(m.starts_with("---\ntitle: fulfillment\n---\nstateDiagram-v2\n    [*] --> requested\n"));
    assert!(m.contains("    picking_in_progress --> fork_picking: fork\n"));
    assert!(m.contains("    fork_picking --> item_pick: start\n"));
    assert!(m.contains("    quality_monitor --> join_picking: done\n"));
    assert!(m.contains("    join_picking --> packing: items_ready\n"));
    assert!(m.contains("    qc --> picking_in_progress: failed\n"));
    assert!(m.contains("    cancelled --> [*]\n"));
    let drawn = diagram_edges(&m);
    for e in FULFILLMENT_EDGES {
        if e.event == FulfillmentEvent::ItemsReady {
            continue;
        }
        assert!(drawn.contains(&(e.from.label().to_owned(), e.to.label().to_owned())));
    }
    // Table edges, join expanded (in, 3 out, 3 in, 1 out, minus the one it replaces),
    // plus [*] in and out.
    assert_eq!(
        drawn.len(),
        FULFILLMENT_EDGES.len() - 1 + 1 + 3 + 3 + 1 + 1 + 2
    );
}

// ---- shipments ---------------------------------------------------------------------------

fn sku(s: &str) -> Sku {
    Sku::new(s).unwrap()
}

fn t(min: i64) -> Timestamp {
    Timestamp::from_civil(2026, 5, 6, 9, 0, 0).plus(crate::time::Duration::minutes(min))
}

struct Wh {
    locations: BTreeMap<Sku, BinLocation>,
    items: BTreeMap<Sku, ItemSpec>,
    boxes: Vec<BoxSpec>,
}

fn wh() -> Wh {
    let item = |v, w| ItemSpec {
        volume_cm3: v,
        weight_grams: w,
    };
    let bx = |id: &str, v, w| BoxSpec {
        id: id.into(),
        volume_cm3: v,
        max_weight_grams: w,
        tare_grams: 150,
    };
    Wh {
        locations: BTreeMap::from([
            (sku("WATER-5L"), BinLocation::new(1, 3, 12)),
            (sku("PHONE-X"), BinLocation::new(3, 1, 5)),
        ]),
        items: BTreeMap::from([
            (sku("WATER-5L"), item(5_500, 5_100)),
            (sku("PHONE-X"), item(900, 400)),
        ]),
        boxes: vec![bx("S", 3_000, 2_000), bx("L", 30_000, 20_000)],
    }
}

fn seed004_shipment(ids: &SequentialIds) -> Shipment {
    Shipment::request(7, &[(sku("WATER-5L"), 2), (sku("PHONE-X"), 1)], ids, t(0)).unwrap()
}

/// Drive a shipment to Packing with every unit scanned and every branch complete.
fn to_packing(s: &mut Shipment, wh: &Wh) {
    s.assign_warehouse("WH-NY", t(1)).unwrap();
    s.queue_picking(
        &wh.locations,
        BinLocation::new(0, 0, 0),
        &WalkMetric::default(),
        t(2),
    )
    .unwrap();
    s.assign_picker("picker-1", t(3)).unwrap();
    for unit in ["WATER-5L", "PHONE-X", "WATER-5L"] {
        s.scan(unit, t(4)).unwrap();
    }
    for b in PickBranch::ALL {
        s.complete_branch(b, t(5)).unwrap();
    }
    s.items_ready(t(6)).unwrap();
}

#[test]
fn seed_001_section_5_flow_end_to_end() {
    // Assign to warehouse → create pick list → assign picker → scan until all scanned → pack →
    // weigh → label → hand to carrier → tracking.
    let ids = SequentialIds::default();
    let wh = wh();
    let mut s = seed004_shipment(&ids);
    assert_eq!(s.status(), FulfillmentStatus::Requested);
    s.assign_warehouse("WH-NY", t(1)).unwrap();
    let list = s
        .queue_picking(
            &wh.locations,
            BinLocation::new(0, 0, 0),
            &WalkMetric::default(),
            t(2),
        )
        .unwrap();
    assert_eq!(list.lines().len(), 2);
    s.assign_picker("picker-1", t(3)).unwrap();
    // Verify: not all scanned → keep scanning (packing refused meanwhile).
    let mut scans = 0;
    while !s.pick_list().unwrap().is_complete() {
        let (next, _) = s.pick_list().unwrap().unscanned()[0].clone();
        s.scan(next.as_str(), t(4)).unwrap();
        scans += 1;
        if !s.pick_list().unwrap().is_complete() {
            assert_eq!(s.items_ready(t(4)).unwrap_err().code(), "guard_failed");
        }
    }
    assert_eq!(scans, 3);
    for b in PickBranch::ALL {
        s.complete_branch(b, t(5)).unwrap();
    }
    s.items_ready(t(6)).unwrap();
    let p = s.pack(&wh.items, &wh.boxes, t(7)).unwrap();
    assert_eq!((p.box_id.as_str(), p.expected_grams), ("L", 10_750));
    let label = s.print_label("ups", &ids, t(8)).unwrap();
    assert_eq!(label.tracking_number, "UPS-0000000002");
    s.weigh(10_800, t(9)).unwrap();
    s.pass_qc(WeightTolerance::default(), t(10)).unwrap();
    s.hand_to_carrier(t(11)).unwrap();
    s.mark_in_transit(t(12)).unwrap();
    s.mark_out_for_delivery(t(13)).unwrap();
    s.mark_delivered(t(14)).unwrap();
    assert_eq!(s.status(), FulfillmentStatus::Delivered);
    assert_eq!(s.carrier(), Some("ups"));
    assert_eq!(s.tracking_number(), Some("UPS-0000000002"));
    assert_eq!(s.warehouse(), Some("WH-NY"));
    assert_eq!(s.entered_at(FulfillmentStatus::Delivered), Some(t(14)));
    assert_eq!(s.history().len(), 10);
    assert_eq!(s.updated_at(), t(14));
}

#[test]
fn bad_scans_and_early_packing_leave_the_shipment_unchanged() {
    let ids = SequentialIds::default();
    let wh = wh();
    let mut s = seed004_shipment(&ids);
    assert_eq!(
        s.scan("WATER-5L", t(0)).unwrap_err().code(),
        "invalid_transition"
    );
    s.assign_warehouse("WH-NY", t(1)).unwrap();
    s.queue_picking(
        &wh.locations,
        BinLocation::new(0, 0, 0),
        &WalkMetric::default(),
        t(2),
    )
    .unwrap();
    s.assign_picker("p", t(3)).unwrap();
    s.scan("PHONE-X", t(4)).unwrap();
    let before = s.clone();
    assert_eq!(s.scan("PHONE-X", t(5)).unwrap_err().code(), "scan_mismatch");
    assert_eq!(s.scan("BANANA", t(5)).unwrap_err().code(), "scan_mismatch");
    let e = s.complete_branch(PickBranch::ItemPick, t(5)).unwrap_err();
    assert_eq!(e.code(), "guard_failed");
    assert!(e.to_string().contains("WATER-5L×2"), "{e}");
    let e = s.items_ready(t(5)).unwrap_err();
    assert_eq!(e.code(), "guard_failed");
    assert_eq!(
        s.pack(&wh.items, &wh.boxes, t(5)).unwrap_err().code(),
        "invalid_transition"
    );
    assert_eq!(s, before);
}

#[test]
fn packing_checks_box_label_and_weight() {
    let ids = SequentialIds::default();
    let wh = wh();
    let mut s = seed004_shipment(&ids);
    to_packing(&mut s, &wh);
    let before = s.clone();
    assert_eq!(s.weigh(10_750, t(7)).unwrap_err().code(), "guard_failed");
    assert_eq!(
        s.pack(&wh.items, &wh.boxes[..1], t(7)).unwrap_err().code(),
        "no_box_fits"
    );
    assert_eq!(
        s.print_label("", &ids, t(7)).unwrap_err().code(),
        "missing_field"
    );
    assert_eq!(s, before);
    s.pack(&wh.items, &wh.boxes, t(7)).unwrap();
    assert_eq!(s.weigh(10_750, t(7)).unwrap_err().code(), "guard_failed");
    s.print_label("DHL", &ids, t(8)).unwrap();
    assert_eq!(
        s.print_label("DHL", &ids, t(8)).unwrap_err().code(),
        "guard_failed"
    );
    s.weigh(9_000, t(9)).unwrap();
    let before = s.clone();
    let e = s.pass_qc(WeightTolerance::default(), t(10)).unwrap_err();
    assert_eq!(
        e,
        crate::OmsError::WeightMismatch {
            expected_grams: 10_750,
            measured_grams: 9_000
        }
    );
    assert_eq!(s, before);
    // QC failed: back to picking with scans and box reset, tracking number kept.
    let tracking = s.tracking_number().map(str::to_owned);
    s.fail_qc(t(11)).unwrap();
    assert_eq!(s.status(), FulfillmentStatus::PickingInProgress);
    assert_eq!(s.pick_list().unwrap().unscanned().len(), 2);
    assert!(s.package().is_none() && s.branches_done().is_empty());
    for unit in ["WATER-5L", "PHONE-X", "WATER-5L"] {
        s.scan(unit, t(12)).unwrap();
    }
    for b in PickBranch::ALL {
        s.complete_branch(b, t(12)).unwrap();
    }
    s.items_ready(t(13)).unwrap();
    s.pack(&wh.items, &wh.boxes, t(14)).unwrap();
    s.weigh(10_700, t(15)).unwrap();
    s.pass_qc(WeightTolerance::default(), t(16)).unwrap();
    assert_eq!(s.status(), FulfillmentStatus::ReadyForShipment);
    assert_eq!(s.tracking_number().map(str::to_owned), tracking);
}

#[test]
fn failed_pick_and_cancel_report_compensation() {
    let ids = SequentialIds::default();
    let wh = wh();
    let mut s = seed004_shipment(&ids);
    s.assign_warehouse("WH-NY", t(1)).unwrap();
    s.queue_picking(
        &wh.locations,
        BinLocation::new(0, 0, 0),
        &WalkMetric::default(),
        t(2),
    )
    .unwrap();
    s.assign_picker("p", t(3)).unwrap();
    s.scan("PHONE-X", t(4)).unwrap();
    s.complete_branch(PickBranch::InventoryUpdate, t(4))
        .unwrap();
    assert_eq!(
        s.fail_picking(t(5)).unwrap(),
        vec![PickBranch::InventoryUpdate]
    );
    assert_eq!(s.status(), FulfillmentStatus::PickingQueued);
    assert_eq!(s.picker(), None);
    assert_eq!(s.pick_list().unwrap().unscanned().len(), 2);
    s.assign_picker("q", t(6)).unwrap();
    s.complete_branch(PickBranch::QualityMonitor, t(7)).unwrap();
    assert_eq!(s.cancel(t(8)).unwrap(), vec![PickBranch::QualityMonitor]);
    assert_eq!(s.status(), FulfillmentStatus::Cancelled);
    let mut packed = seed004_shipment(&ids);
    to_packing(&mut packed, &wh);
    let before = packed.clone();
    assert_eq!(
        packed.cancel(t(9)).unwrap_err().code(),
        "invalid_transition"
    );
    assert_eq!(packed, before);
}

#[test]
fn bad_shipment_input_is_refused() {
    let ids = SequentialIds::default();
    let e = Shipment::request(1, &[(sku("A"), 0)], &ids, t(0)).unwrap_err();
    assert_eq!(e.code(), "invalid_quantity");
    let e = Shipment::request(1, &[(sku("A"), -3)], &ids, t(0)).unwrap_err();
    assert_eq!(e.code(), "invalid_quantity");
    assert_eq!(
        Shipment::request(1, &[], &ids, t(0)).unwrap_err().code(),
        "missing_field"
    );
    let s = Shipment::request(
        1,
        &[(sku("B"), 1), (sku("A"), 2), (sku("B"), 3)],
        &ids,
        t(0),
    )
    .unwrap();
    assert_eq!(s.lines(), &[(sku("A"), 2), (sku("B"), 4)]);
    let mut s2 = s.clone();
    assert_eq!(
        s2.assign_warehouse(" ", t(1)).unwrap_err().code(),
        "missing_field"
    );
    assert_eq!(s2, s);
    let mut list = vec![s];
    assert_eq!(find_shipment(&list, 99).unwrap_err().code(), "not_found");
    assert_eq!(
        find_shipment_mut(&mut list, 99).unwrap_err().code(),
        "not_found"
    );
    assert_eq!(find_shipment(&list, list[0].id()).unwrap().order_id(), 1);
    // A location missing for a SKU refuses the pick list and keeps the state.
    let mut s = list.remove(0);
    s.assign_warehouse("WH1", t(1)).unwrap();
    let before = s.clone();
    let e = s
        .queue_picking(
            &BTreeMap::new(),
            BinLocation::new(0, 0, 0),
            &WalkMetric::default(),
            t(2),
        )
        .unwrap_err();
    assert_eq!(e.code(), "unknown_sku");
    assert_eq!(s, before);
}

fn shipment_in(status: FulfillmentStatus, ids: &SequentialIds) -> Shipment {
    shipment_with(1, &[(sku("A"), 1)], status, ids, t(0))
}

/// A shipment of `lines` for `order_id`, driven by the real operations (in flow order, one
/// minute apart from `at`) until it is in `status`.
pub(crate) fn shipment_with(
    order_id: u64,
    lines: &[(Sku, i64)],
    status: FulfillmentStatus,
    ids: &SequentialIds,
    at: Timestamp,
) -> Shipment {
    use FulfillmentStatus as F;
    let mut s = Shipment::request(order_id, lines, ids, at).unwrap();
    let step = |n: i64| at.plus(crate::time::Duration::minutes(n));
    if status == F::Cancelled {
        s.cancel(step(1)).unwrap();
        return s;
    }
    let locations: BTreeMap<Sku, BinLocation> = lines
        .iter()
        .map(|(k, _)| (k.clone(), BinLocation::new(1, 0, 1)))
        .collect();
    let items: BTreeMap<Sku, ItemSpec> = lines
        .iter()
        .map(|(k, _)| {
            (
                k.clone(),
                ItemSpec {
                    volume_cm3: 1,
                    weight_grams: 100,
                },
            )
        })
        .collect();
    let boxes = [BoxSpec {
        id: "XL".into(),
        volume_cm3: u64::MAX,
        max_weight_grams: u64::MAX,
        tare_grams: 0,
    }];
    let origin = BinLocation::new(0, 0, 0);
    // Walk the real operations in flow order until the wanted status.
    for (n, target) in (1..).zip(F::ALL) {
        if s.status() == status {
            break;
        }
        let now = step(n);
        match target {
            F::WarehouseAssigned => s.assign_warehouse("WH1", now).unwrap(),
            F::PickingQueued => drop(
                s.queue_picking(&locations, origin, &WalkMetric::default(), now)
                    .unwrap(),
            ),
            F::PickingInProgress => s.assign_picker("p", now).unwrap(),
            F::Packing => {
                let todo = s.pick_list().unwrap().unscanned();
                for (k, q) in todo {
                    for _ in 0..q {
                        s.scan(k.as_str(), now).unwrap();
                    }
                }
                for b in PickBranch::ALL {
                    s.complete_branch(b, now).unwrap();
                }
                s.items_ready(now).unwrap();
            }
            F::Qc => {
                let expected = s.pack(&items, &boxes, now).unwrap().expected_grams;
                s.print_label("UPS", ids, now).unwrap();
                s.weigh(expected, now).unwrap();
            }
            F::ReadyForShipment => s.pass_qc(WeightTolerance::default(), now).unwrap(),
            F::HandedToCarrier => s.hand_to_carrier(now).unwrap(),
            F::InTransit => s.mark_in_transit(now).unwrap(),
            F::OutForDelivery => s.mark_out_for_delivery(now).unwrap(),
            F::Delivered => s.mark_delivered(now).unwrap(),
            F::Requested | F::Cancelled => {}
        }
    }
    assert_eq!(s.status(), status);
    s
}

#[test]
fn order_status_from_shipments() {
    use FulfillmentStatus as F;
    let ids = SequentialIds::default();
    let derive = |st: &[F]| {
        let ships: Vec<Shipment> = st.iter().map(|s| shipment_in(*s, &ids)).collect();
        derive_order_status(&ships)
    };
    assert_eq!(derive(&[]), None);
    assert_eq!(derive(&[F::Requested, F::Qc]), None);
    assert_eq!(derive(&[F::Cancelled]), None);
    assert_eq!(
        derive(&[F::ReadyForShipment, F::HandedToCarrier]),
        Some(OrderStatus::PartiallyShipped)
    );
    assert_eq!(
        derive(&[F::HandedToCarrier, F::OutForDelivery]),
        Some(OrderStatus::Shipped)
    );
    assert_eq!(
        derive(&[F::InTransit, F::OutForDelivery]),
        Some(OrderStatus::InTransit)
    );
    assert_eq!(
        derive(&[F::OutForDelivery, F::Cancelled]),
        Some(OrderStatus::OutForDelivery)
    );
    assert_eq!(
        derive(&[F::Delivered, F::Packing]),
        Some(OrderStatus::PartiallyDelivered)
    );
    assert_eq!(
        derive(&[F::Delivered, F::InTransit]),
        Some(OrderStatus::PartiallyDelivered)
    );
    assert_eq!(
        derive(&[F::Delivered, F::Cancelled, F::Delivered]),
        Some(OrderStatus::Delivered)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn derived_status_agrees_with_counts(picks in prop::collection::vec(0usize..12, 0..6)) {
        let ids = SequentialIds::default();
        let statuses: Vec<FulfillmentStatus> =
            picks.iter().map(|&i| FulfillmentStatus::ALL[i]).collect();
        let ships: Vec<Shipment> = statuses.iter().map(|s| shipment_in(*s, &ids)).collect();
        let live: Vec<_> = statuses.iter().filter(|s| **s != FulfillmentStatus::Cancelled).collect();
        let delivered = live.iter().filter(|s| ***s == FulfillmentStatus::Delivered).count();
        let shipped = live.iter().filter(|s| s.is_shipped()).count();
        let got = derive_order_status(&ships);
        match got {
            None => prop_assert!(shipped == 0),
            Some(OrderStatus::Delivered) => prop_assert!(delivered == live.len()),
            Some(OrderStatus::PartiallyDelivered) => prop_assert!(delivered > 0 && delivered < live.len()),
            Some(OrderStatus::PartiallyShipped) => prop_assert!(delivered == 0 && shipped > 0 && shipped < live.len()),
            Some(_) => prop_assert!(delivered == 0 && shipped == live.len()),
        }
    }
}
