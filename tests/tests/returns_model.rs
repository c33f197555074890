//! Reference-model tests of returns: random sequences of review/approve/branch/inspect/refund
//! operations against a hand-written model of seed 000 §5 and seed 001 §8; and random
//! eligibility questions against a direct count of delivered and already returned units.

use std::collections::BTreeSet;

use oms_core::fulfillment::pack::{BoxSpec, ItemSpec, WeightTolerance};
use oms_core::fulfillment::pick::{BinLocation, WalkMetric};
use oms_core::fulfillment::{PickBranch, Shipment};
use oms_core::lifecycle::{Actor, OrderStatus};
use oms_core::order::{AddressInput, Customer, LineItemInput, Order, OrderDraft, Sku};
use oms_core::pricing::{place_pricing, PricingContext, RefundPreview, Refunded, TaxTable};
use oms_core::returns::{ReturnBranch, ReturnCase, ReturnContext, ReturnPolicy, ReturnStatus as R};
use oms_core::time::{Duration, ManualClock, SequentialIds, Timestamp};
use oms_core::{Currency, Money};
use proptest::prelude::*;
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};
use rust_decimal::Decimal;

fn sku(s: &str) -> Sku {
    Sku::new(s).unwrap()
}

fn usd(s: &str) -> Money {
    Money::parse(s, Currency::USD).unwrap()
}

fn t0() -> Timestamp {
    Timestamp::from_civil(2026, 6, 1, 8, 0, 0)
}

/// An order of `A`×`qty_a` and `B`×`qty_b` (lines 1 and 2).
fn order(qty_a: i64, qty_b: i64) -> Order {
    let draft = OrderDraft {
        customer: Customer {
            id: "c".into(),
            email: "c@example.com".into(),
            name: "C".into(),
        },
        shipping_address: AddressInput {
            name: "C".into(),
            line1: "1 Road".into(),
            city: "Paris".into(),
            postal_code: "75001".into(),
            country: "FR".into(),
            ..AddressInput::default()
        },
        billing_address: None,
        currency: Currency::USD,
        lines: vec![
            LineItemInput::new("A", qty_a, usd("3.00")),
            LineItemInput::new("B", qty_b, usd("5.00")),
        ],
        promo_codes: vec![],
    };
    let mut o = Order::create(
        &draft,
        &Actor::System,
        &ManualClock::new(t0()),
        &SequentialIds::default(),
    )
    .unwrap();
    let ctx = PricingContext {
        tax: TaxTable::new().with_rate("FR", "standard", Decimal::new(20, 2)),
        ..PricingContext::default()
    };
    place_pricing(&mut o, &ctx, t0()).unwrap();
    o
}

/// A shipment of `lines` delivered at `at` (walked through every fulfillment step).
fn delivered(order_id: u64, lines: &[(Sku, i64)], ids: &SequentialIds, at: Timestamp) -> Shipment {
    let mut s = Shipment::request(order_id, lines, ids, at).unwrap();
    let locations = lines
        .iter()
        .map(|(k, _)| (k.clone(), BinLocation::new(1, 0, 2)))
        .collect();
    let items = lines
        .iter()
        .map(|(k, _)| {
            (
                k.clone(),
                ItemSpec {
                    volume_cm3: 10,
                    weight_grams: 10,
                },
            )
        })
        .collect();
    let boxes = [BoxSpec {
        id: "B".into(),
        volume_cm3: 1_000_000,
        max_weight_grams: 1_000_000,
        tare_grams: 0,
    }];
    s.assign_warehouse("W", at).unwrap();
    s.queue_picking(
        &locations,
        BinLocation::new(0, 0, 0),
        &WalkMetric::default(),
        at,
    )
    .unwrap();
    s.assign_picker("p", at).unwrap();
    for (k, q) in lines {
        for _ in 0..*q {
            s.scan(k.as_str(), at).unwrap();
        }
    }
    for b in PickBranch::ALL {
        s.complete_branch(b, at).unwrap();
    }
    s.items_ready(at).unwrap();
    let grams = s.pack(&items, &boxes, at).unwrap().expected_grams;
    s.print_label("DHL", ids, at).unwrap();
    s.weigh(grams, at).unwrap();
    s.pass_qc(WeightTolerance::default(), at).unwrap();
    s.hand_to_carrier(at).unwrap();
    s.mark_in_transit(at).unwrap();
    s.mark_out_for_delivery(at).unwrap();
    s.mark_delivered(at).unwrap();
    s
}

// ---- the return machine against a model ------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Review,
    Approve,
    ApproveAlreadyRefunded,
    Reject,
    Branch(ReturnBranch),
    ShipBack,
    Receive,
    Inspect,
    ItemsOk,
    ItemsDamaged,
    ProcessRefund,
    Complete,
}

const OPS: [Op; 14] = [
    Op::Review,
    Op::Approve,
    Op::ApproveAlreadyRefunded,
    Op::Reject,
    Op::Branch(ReturnBranch::ArrangePickup),
    Op::Branch(ReturnBranch::InitiateRefund),
    Op::Branch(ReturnBranch::UpdateInventory),
    Op::ShipBack,
    Op::Receive,
    Op::Inspect,
    Op::ItemsOk,
    Op::ItemsDamaged,
    Op::ProcessRefund,
    Op::Complete,
];

#[derive(Debug, Clone, PartialEq, Eq)]
struct Model {
    status: R,
    branches: BTreeSet<ReturnBranch>,
    refunded: bool,
    last_ok: bool,
}

impl Model {
    fn step(&self, op: Op) -> Option<Model> {
        let mut m = self.clone();
        m.last_ok = true;
        match (self.status, op) {
            (R::Requested, Op::Review) => m.status = R::UnderReview,
            (R::UnderReview, Op::Approve) => m.status = R::Approved,
            (R::UnderReview, Op::Reject) => m.status = R::Rejected,
            (R::Approved, Op::Branch(b)) if !m.branches.contains(&b) => {
                m.branches.insert(b);
            }
            (R::Approved, Op::ShipBack) if m.branches.len() == 3 => {
                m.status = R::ReturnShipped;
                m.branches.clear();
            }
            (R::ReturnShipped, Op::Receive) => m.status = R::Received,
            (R::Received, Op::Inspect) => m.status = R::QualityCheck,
            (R::QualityCheck, Op::ItemsOk) => m.status = R::RefundApproved,
            (R::QualityCheck, Op::ItemsDamaged) => m.status = R::RefundRejected,
            (R::RefundApproved, Op::ProcessRefund) => {
                m.status = R::RefundProcessed;
                m.refunded = true;
            }
            (R::RefundProcessed | R::RefundRejected, Op::Complete) => m.status = R::Completed,
            _ => return None,
        }
        Some(m)
    }
}

struct ReturnModel;

impl ReferenceStateMachine for ReturnModel {
    type State = Model;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model {
            status: R::Requested,
            branches: BTreeSet::new(),
            refunded: false,
            last_ok: true,
        })
        .boxed()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Op> {
        let valid: Vec<Op> = OPS
            .iter()
            .copied()
            .filter(|op| *op != Op::Reject && state.step(*op).is_some())
            .collect();
        let any = prop::sample::select(OPS.to_vec()).boxed();
        if valid.is_empty() {
            return any;
        }
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
    order: Order,
    shipments: Vec<Shipment>,
    ret: ReturnCase,
    ledger: Refunded,
    fixed: Option<RefundPreview>,
}

impl StateMachineTest for ReturnModel {
    type SystemUnderTest = Sut;
    type Reference = ReturnModel;

    fn init_test(_: &Model) -> Sut {
        let ids = SequentialIds::starting_at(50);
        let order = order(3, 1);
        let shipments = vec![delivered(
            order.id,
            &[(sku("A"), 3), (sku("B"), 1)],
            &ids,
            t0(),
        )];
        let ctx = ReturnContext {
            order: &order,
            shipments: &shipments,
            returns: &[],
            policy: &ReturnPolicy::default(),
        };
        let ret = ReturnCase::request(&ctx, &[(1, 2), (2, 1)], &ids, t0().plus(Duration::days(1)))
            .unwrap();
        Sut {
            order,
            shipments,
            ret,
            ledger: Refunded::default(),
            fixed: None,
        }
    }

    fn apply(mut sut: Sut, model: &Model, op: Op) -> Sut {
        let at = t0().plus(Duration::days(2));
        let before = sut.ret.clone();
        let policy = ReturnPolicy::default();
        let ctx = ReturnContext {
            order: &sut.order,
            shipments: &sut.shipments,
            returns: &[],
            policy: &policy,
        };
        let r = &mut sut.ret;
        let result = match op {
            Op::Review => r.start_review(at),
            Op::Approve => r.approve(&ctx, &sut.ledger, false, at).map(|p| {
                // 2 × A at 3.00 and B at 5.00, +20 % tax: 7.20 + 6.00.
                assert_eq!(p.total, usd("13.20"));
                sut.fixed = Some(p.clone());
            }),
            Op::ApproveAlreadyRefunded => {
                let mut done = Refunded::default();
                done.units.insert(2, 1);
                r.approve(&ctx, &done, false, at).map(drop)
            }
            Op::Reject => r.reject("worn", at),
            Op::Branch(b) => r.complete_branch(b, at),
            Op::ShipBack => r.mark_shipped(at),
            Op::Receive => r.receive(at),
            Op::Inspect => r.start_inspection(at),
            Op::ItemsOk => r.accept_items(at).map(|stock| assert_eq!(stock.len(), 2)),
            Op::ItemsDamaged => r.reject_items("cracked", at).map(drop),
            Op::ProcessRefund => r.process_refund(&mut sut.ledger, at).map(|paid| {
                // Exactly the preview fixed at approval, recorded once in the ledger.
                assert_eq!(Some(&paid), sut.fixed.as_ref());
                assert_eq!(sut.ledger.units.get(&1), Some(&2));
            }),
            Op::Complete => r.complete(at),
        };
        assert_eq!(result.is_ok(), model.last_ok, "{op:?}: {result:?}");
        if result.is_err() {
            assert_eq!(sut.ret, before, "refused {op:?} changed the return");
        }
        sut
    }

    fn check_invariants(sut: &Sut, model: &Model) {
        let r = &sut.ret;
        assert_eq!(r.status(), model.status);
        assert_eq!(
            r.branches_done().into_iter().collect::<BTreeSet<_>>(),
            model.branches
        );
        let approved = r.history().iter().any(|c| c.to == R::Approved);
        assert_eq!(r.refund().is_some(), approved);
        assert_eq!(r.refund(), sut.fixed.as_ref());
        // The ledger holds a refund exactly when the model says one was processed.
        assert_eq!(sut.ledger.units.is_empty(), !model.refunded);
        let expected = match model.status {
            R::Requested | R::UnderReview => OrderStatus::ReturnRequested,
            R::Rejected => OrderStatus::Delivered,
            R::RefundProcessed => OrderStatus::Refunded,
            R::Completed if model.refunded => OrderStatus::Refunded,
            R::RefundRejected | R::Completed => OrderStatus::Completed,
            _ => OrderStatus::ReturnApproved,
        };
        assert_eq!(r.order_status(), expected);
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn return_follows_the_reference_model(sequential 1..40 => ReturnModel);
}

// ---- eligibility against a direct count ------------------------------------------------------

fn ctx_of<'a>(
    order: &'a Order,
    shipments: &'a [Shipment],
    returns: &'a [ReturnCase],
    policy: &'a ReturnPolicy,
) -> ReturnContext<'a> {
    ReturnContext {
        order,
        shipments,
        returns,
        policy,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Units of A: `parcel1` delivered on day 0, `parcel2` (if any) on day `late_day`; earlier
    /// returns claim `earlier` units (one of them rejected at review, not counting); the request
    /// asks `want` units on day `ask_day` within a `window`-day policy.
    #[test]
    fn eligibility_matches_a_direct_count(
        parcel1 in 1i64..4,
        parcel2 in 0i64..4,
        late_day in 0i64..10,
        earlier in prop::collection::vec(1i64..3, 0..3),
        rejected_units in 1i64..3,
        want in 1i64..8,
        ask_day in 0i64..25,
        window in 1i64..20,
    ) {
        let ids = SequentialIds::starting_at(10);
        let o = order(parcel1 + parcel2, 1);
        let day = |n: i64| t0().plus(Duration::days(n));
        let mut ships = vec![delivered(o.id, &[(sku("A"), parcel1)], &ids, day(0))];
        if parcel2 > 0 {
            ships.push(delivered(o.id, &[(sku("A"), parcel2)], &ids, day(late_day)));
        }
        let policy = ReturnPolicy { window: Duration::days(window), ..ReturnPolicy::default() };
        // Earlier returns, opened on day 0 while eligible; stop once they would exceed.
        let mut previous: Vec<ReturnCase> = Vec::new();
        let mut claimed = 0;
        for q in earlier {
            if claimed + q <= parcel1 + parcel2 {
                previous.push(
                    ReturnCase::request(&ctx_of(&o, &ships, &previous, &policy), &[(1, q)], &ids, day(0))
                        .unwrap(),
                );
                claimed += q;
            }
        }
        if claimed + rejected_units <= parcel1 + parcel2 {
            let mut rej =
                ReturnCase::request(&ctx_of(&o, &ships, &previous, &policy), &[(1, rejected_units)], &ids, day(0))
                    .unwrap();
            rej.start_review(day(0)).unwrap();
            rej.reject("no", day(0)).unwrap();
            previous.push(rej);
        }
        let last_delivery = if parcel2 > 0 { late_day } else { 0 };
        let in_window = ask_day <= last_delivery + window;
        let fits = want <= parcel1 + parcel2 - claimed;
        let got = ReturnCase::request(&ctx_of(&o, &ships, &previous, &policy), &[(1, want)], &ids, day(ask_day));
        match got {
            Ok(r) => {
                prop_assert!(in_window && fits);
                prop_assert_eq!(r.refund_lines(), vec![(1, u32::try_from(want).unwrap())]);
            }
            Err(e) => {
                prop_assert_eq!(e.code(), "return_not_eligible");
                prop_assert!(!(in_window && fits));
            }
        }
        // Line 2 (B) was never delivered: never returnable.
        let b = ReturnCase::request(&ctx_of(&o, &ships, &previous, &policy), &[(2, 1)], &ids, day(0));
        prop_assert_eq!(b.unwrap_err().code(), "return_not_eligible");
    }
}
