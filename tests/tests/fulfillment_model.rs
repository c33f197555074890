//! Reference-model test of a shipment: random sequences of warehouse operations (valid and
//! not) against a hand-written model of seed 000 §4 / seed 001 §5. After every step the
//! shipment agrees with the model, and a refused operation leaves the shipment unchanged.

use std::collections::BTreeMap;

use oms_core::fulfillment::pack::{BoxSpec, ItemSpec, WeightTolerance};
use oms_core::fulfillment::pick::{BinLocation, WalkMetric};
use oms_core::fulfillment::{FulfillmentStatus as F, PickBranch, Shipment};
use oms_core::order::Sku;
use oms_core::time::{SequentialIds, Timestamp};
use proptest::prelude::*;
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};

const SKUS: [&str; 3] = ["A", "B", "NOT-LISTED"];
const QTY: [u32; 2] = [2, 1];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    AssignWarehouse,
    QueuePicking,
    AssignPicker,
    Scan(usize),
    Complete(PickBranch),
    ItemsReady,
    FailPicking,
    Pack,
    Label,
    Weigh { right: bool },
    PassQc,
    FailQc,
    HandToCarrier,
    InTransit,
    OutForDelivery,
    Deliver,
    Cancel,
}

const ALL_OPS: [Op; 22] = [
    Op::AssignWarehouse,
    Op::QueuePicking,
    Op::AssignPicker,
    Op::Scan(0),
    Op::Scan(1),
    Op::Scan(2),
    Op::Complete(PickBranch::ItemPick),
    Op::Complete(PickBranch::QualityMonitor),
    Op::Complete(PickBranch::InventoryUpdate),
    Op::ItemsReady,
    Op::FailPicking,
    Op::Pack,
    Op::Label,
    Op::Weigh { right: true },
    Op::Weigh { right: false },
    Op::PassQc,
    Op::FailQc,
    Op::HandToCarrier,
    Op::InTransit,
    Op::OutForDelivery,
    Op::Deliver,
    Op::Cancel,
];

#[derive(Debug, Clone, PartialEq, Eq)]
struct Model {
    status: F,
    scanned: [u32; 2],
    branches: [bool; 3],
    packed: bool,
    labelled: bool,
    weighed_right: Option<bool>,
    last_ok: bool,
}

fn branch_ix(b: PickBranch) -> usize {
    match b {
        PickBranch::ItemPick => 0,
        PickBranch::QualityMonitor => 1,
        PickBranch::InventoryUpdate => 2,
    }
}

impl Model {
    fn all_scanned(&self) -> bool {
        self.scanned == QTY
    }

    fn enter_picking(&mut self) {
        self.status = F::PickingInProgress;
        self.branches = [false; 3];
    }

    /// The model's next state, or `None` when the operation must be refused.
    fn step(&self, op: Op) -> Option<Model> {
        let mut m = self.clone();
        m.last_ok = true;
        let s = self.status;
        match op {
            Op::AssignWarehouse if s == F::Requested => m.status = F::WarehouseAssigned,
            Op::QueuePicking if s == F::WarehouseAssigned => m.status = F::PickingQueued,
            Op::AssignPicker if s == F::PickingQueued => m.enter_picking(),
            Op::Scan(i) if s == F::PickingInProgress && i < 2 && m.scanned[i] < QTY[i] => {
                m.scanned[i] += 1;
            }
            Op::Complete(b)
                if s == F::PickingInProgress
                    && !m.branches[branch_ix(b)]
                    && (b != PickBranch::ItemPick || m.all_scanned()) =>
            {
                m.branches[branch_ix(b)] = true;
            }
            Op::ItemsReady if s == F::PickingInProgress && m.branches == [true; 3] => {
                m.status = F::Packing;
                m.branches = [false; 3];
            }
            Op::FailPicking if s == F::PickingInProgress => {
                m.status = F::PickingQueued;
                m.branches = [false; 3];
                m.scanned = [0; 2];
            }
            Op::Pack if s == F::Packing => m.packed = true,
            Op::Label if s == F::Packing && !m.labelled => m.labelled = true,
            Op::Weigh { right } if s == F::Packing && m.packed && m.labelled => {
                m.status = F::Qc;
                m.weighed_right = Some(right);
            }
            Op::PassQc if s == F::Qc && m.weighed_right == Some(true) => {
                m.status = F::ReadyForShipment;
            }
            Op::FailQc if s == F::Qc => {
                m.enter_picking();
                m.scanned = [0; 2];
                m.packed = false;
                m.weighed_right = None;
            }
            Op::HandToCarrier if s == F::ReadyForShipment => m.status = F::HandedToCarrier,
            Op::InTransit if s == F::HandedToCarrier => m.status = F::InTransit,
            Op::OutForDelivery if s == F::InTransit => m.status = F::OutForDelivery,
            Op::Deliver if s == F::OutForDelivery => m.status = F::Delivered,
            Op::Cancel
                if matches!(
                    s,
                    F::Requested | F::WarehouseAssigned | F::PickingQueued | F::PickingInProgress
                ) =>
            {
                m.status = F::Cancelled;
                m.branches = [false; 3];
            }
            _ => return None,
        }
        Some(m)
    }
}

struct ShipmentModel;

impl ReferenceStateMachine for ShipmentModel {
    type State = Model;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model {
            status: F::Requested,
            scanned: [0; 2],
            branches: [false; 3],
            packed: false,
            labelled: false,
            weighed_right: None,
            last_ok: true,
        })
        .boxed()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Op> {
        // Mostly accepted forward operations, so that runs get deep into the flow; the
        // backward ones (cancel, failures) and refused ones come from the uniform quarter.
        let mut valid: Vec<Op> = ALL_OPS
            .iter()
            .copied()
            .filter(|op| !matches!(op, Op::Cancel | Op::FailPicking | Op::FailQc))
            .filter(|op| state.step(*op).is_some())
            .collect();
        let any = prop::sample::select(ALL_OPS.to_vec()).boxed();
        if valid.is_empty() {
            return any;
        }
        valid.sort_by_key(|op| format!("{op:?}"));
        prop_oneof![3 => prop::sample::select(valid), 1 => any].boxed()
    }

    fn apply(state: Model, op: &Op) -> Model {
        state.step(*op).unwrap_or(Model {
            last_ok: false,
            ..state
        })
    }
}

struct Sut {
    shipment: Shipment,
    ids: SequentialIds,
    minute: i64,
}

fn sku(s: &str) -> Sku {
    Sku::new(s).unwrap()
}

fn now(minute: i64) -> Timestamp {
    Timestamp(1_800_000_000_000 + minute * 60_000)
}

impl StateMachineTest for ShipmentModel {
    type SystemUnderTest = Sut;
    type Reference = ShipmentModel;

    fn init_test(_: &Model) -> Sut {
        let ids = SequentialIds::default();
        let shipment = Shipment::request(9, &[(sku("A"), 2), (sku("B"), 1)], &ids, now(0)).unwrap();
        Sut {
            shipment,
            ids,
            minute: 0,
        }
    }

    fn apply(mut sut: Sut, model: &Model, op: Op) -> Sut {
        sut.minute += 1;
        let at = now(sut.minute);
        let locations = BTreeMap::from([
            (sku("A"), BinLocation::new(2, 1, 7)),
            (sku("B"), BinLocation::new(0, 0, 3)),
        ]);
        let items = BTreeMap::from([
            (
                sku("A"),
                ItemSpec {
                    volume_cm3: 500,
                    weight_grams: 700,
                },
            ),
            (
                sku("B"),
                ItemSpec {
                    volume_cm3: 200,
                    weight_grams: 300,
                },
            ),
        ]);
        let boxes = [BoxSpec {
            id: "M".into(),
            volume_cm3: 2_000,
            max_weight_grams: 5_000,
            tare_grams: 120,
        }];
        let before = sut.shipment.clone();
        let s = &mut sut.shipment;
        let result = match op {
            Op::AssignWarehouse => s.assign_warehouse("WH1", at),
            Op::QueuePicking => s
                .queue_picking(
                    &locations,
                    BinLocation::new(0, 0, 0),
                    &WalkMetric::default(),
                    at,
                )
                .map(drop),
            Op::AssignPicker => s.assign_picker("picker", at),
            Op::Scan(i) => s.scan(SKUS[i], at).map(drop),
            Op::Complete(b) => s.complete_branch(b, at),
            Op::ItemsReady => s.items_ready(at),
            Op::FailPicking => s.fail_picking(at).map(drop),
            Op::Pack => s.pack(&items, &boxes, at).map(drop),
            Op::Label => s.print_label("UPS", &sut.ids, at).map(drop),
            Op::Weigh { right } => s.weigh(if right { 1_820 } else { 3_500 }, at),
            Op::PassQc => s.pass_qc(WeightTolerance::default(), at),
            Op::FailQc => s.fail_qc(at),
            Op::HandToCarrier => s.hand_to_carrier(at),
            Op::InTransit => s.mark_in_transit(at),
            Op::OutForDelivery => s.mark_out_for_delivery(at),
            Op::Deliver => s.mark_delivered(at),
            Op::Cancel => s.cancel(at).map(drop),
        };
        assert_eq!(result.is_ok(), model.last_ok, "{op:?}: {result:?}");
        if result.is_err() {
            assert_eq!(sut.shipment, before, "refused {op:?} changed the shipment");
        }
        sut
    }

    fn check_invariants(sut: &Sut, model: &Model) {
        let s = &sut.shipment;
        assert_eq!(s.status(), model.status);
        let done: Vec<PickBranch> = PickBranch::ALL
            .into_iter()
            .filter(|b| model.branches[branch_ix(*b)])
            .collect();
        assert_eq!(s.branches_done(), done);
        if let Some(list) = s.pick_list() {
            for (i, name) in SKUS.iter().take(2).enumerate() {
                let line = list
                    .lines()
                    .iter()
                    .find(|l| l.sku.as_str() == *name)
                    .unwrap();
                assert_eq!(line.scanned, model.scanned[i]);
            }
            assert!(list.route().optimized_distance_cm <= list.route().list_distance_cm);
        }
        assert_eq!(s.package().is_some(), model.packed);
        assert_eq!(s.label().is_some(), model.labelled);
        // Every status change is recorded, in order, and chains.
        for w in s.history().windows(2) {
            assert_eq!(w[0].to, w[1].from);
            assert!(w[0].at <= w[1].at);
        }
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn shipment_follows_the_reference_model(sequential 1..80 => ShipmentModel);
}
