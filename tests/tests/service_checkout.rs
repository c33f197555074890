//! The order service end to end on the in-memory stores: seed 001 §3 (checkout: happy path,
//! payment failure, out of stock) and §7 (cancellation), pay-then-reserve, manual review,
//! reservation expiry and idempotent replays.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use oms_core::events::names;
use oms_core::fraud::CustomerHistory;
use oms_core::inventory::{InventoryStore, ReservationStatus};
use oms_core::lifecycle::{Actor, OrderStatus};
use oms_core::payment::{FakeStep, PaymentStatus};
use oms_core::service::{CheckoutFlow, NotificationKind};
use oms_core::store::OrderStore;
use oms_core::time::{Clock, Duration};

#[test]
fn seed_001_happy_path_reserves_pays_confirms_and_notifies() {
    let w = World::new(CheckoutFlow::ReserveThenPay);
    let order = w
        .svc
        .create_order(
            &w.draft(&[("A", 2), ("B", 1)]),
            &w.card(),
            &w.customer(),
            None,
        )
        .unwrap();
    assert_eq!(order.status, OrderStatus::Confirmed);
    assert_eq!(order.number, "ORD-2026-05-06-000001");
    // stock: reserved then committed (payment confirms the reservation, seed 001 §4)
    let r = w.inventory.reservation(order.reservations[0]).unwrap();
    assert_eq!(r.status, ReservationStatus::Allocated);
    assert_eq!(w.available("A", "WH1"), 8);
    // payment authorized for exactly the charge
    let p = &order.payments[0];
    assert_eq!(p.status(), PaymentStatus::AwaitingCapture);
    assert_eq!(
        p.authorized(),
        oms_core::pricing::charged_total(&order).unwrap()
    );
    // audit trail and events
    let path: Vec<_> = order.history.iter().map(|h| h.to).collect();
    assert_eq!(
        path,
        [
            OrderStatus::Pending,
            OrderStatus::Validated,
            OrderStatus::PaymentPending,
            OrderStatus::Authorized,
            OrderStatus::Confirmed
        ]
    );
    let events: Vec<String> = w
        .svc
        .drain_events(100)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(
        events,
        [
            names::ORDER_CREATED,
            "order.validated",
            names::ORDER_SCREENED,
            names::ORDER_RESERVED,
            "order.payment_pending",
            names::PAYMENT_AUTHORIZED,
            names::FULFILLMENT_PREPARED,
            "order.authorized",
            "order.confirmed"
        ]
    );
    assert_eq!(w.notes(), [NotificationKind::OrderConfirmed]);
    assert_eq!(
        w.gateway.total(oms_core::payment::GatewayOp::Authorize),
        2 * 1000 + 2500
    );
}

#[test]
fn seed_001_payment_failure_releases_stock_and_cancels() {
    let w = World::new(CheckoutFlow::ReserveThenPay);
    w.gateway.script([FakeStep::Decline]);
    let err = w
        .svc
        .create_order(&w.draft(&[("A", 3)]), &w.card(), &w.customer(), None)
        .unwrap_err();
    assert_eq!(err.code(), "payment_declined");
    assert!(err.to_string().contains("ORD-2026-05-06-000001"), "{err}");
    assert_eq!(w.available("A", "WH1"), 10, "stock released");
    let order = w.only_order();
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert!(order
        .history
        .iter()
        .any(|h| h.to == OrderStatus::PaymentFailed));
    let r = w.inventory.reservation(order.reservations[0]).unwrap();
    assert_eq!(r.status, ReservationStatus::Released);
    assert_eq!(w.notes(), [NotificationKind::PaymentFailed]);
}

#[test]
fn seed_001_out_of_stock_is_an_error_and_nothing_is_held() {
    let w = World::new(CheckoutFlow::ReserveThenPay);
    // 15 of A in all (10 at WH1, 5 at WH2)
    let err = w
        .svc
        .create_order(&w.draft(&[("A", 16)]), &w.card(), &w.customer(), None)
        .unwrap_err();
    assert_eq!(err.code(), "insufficient_stock");
    assert_eq!(w.available("A", "WH1"), 10);
    assert!(w.orders.order_ids().unwrap().is_empty(), "no order kept");
    assert_eq!(w.gateway.request_counts().0, 0, "nothing charged");
}

#[test]
fn seed_001_cancel_allowed_before_packing_releases_and_voids() {
    let w = World::new(CheckoutFlow::ReserveThenPay);
    let order = w
        .svc
        .create_order(&w.draft(&[("A", 4)]), &w.card(), &w.customer(), None)
        .unwrap();
    assert_eq!(w.available("A", "WH1"), 6);
    let cancelled = w
        .svc
        .cancel_order(order.id, &w.customer(), "changed my mind", None)
        .unwrap();
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(w.available("A", "WH1"), 10);
    assert_eq!(cancelled.payments[0].status(), PaymentStatus::Voided);
    assert_eq!(
        w.notes(),
        [
            NotificationKind::OrderConfirmed,
            NotificationKind::Cancelled
        ]
    );
    // cancelling twice is refused and changes nothing
    let again = w
        .svc
        .cancel_order(order.id, &w.customer(), "again", None)
        .unwrap_err();
    assert_eq!(again.code(), "invalid_transition");
}

#[test]
fn another_customer_cannot_touch_the_order() {
    let w = World::new(CheckoutFlow::ReserveThenPay);
    let order = w
        .svc
        .create_order(&w.draft(&[("A", 1)]), &w.card(), &w.customer(), None)
        .unwrap();
    let mallory = Actor::Customer("mallory".into());
    assert_eq!(
        w.svc
            .cancel_order(order.id, &mallory, "", None)
            .unwrap_err()
            .code(),
        "forbidden"
    );
    assert_eq!(
        w.svc.get_order(order.id, &mallory).unwrap_err().code(),
        "forbidden"
    );
    assert_eq!(
        w.svc
            .create_order(&w.draft(&[("A", 1)]), &w.card(), &mallory, None)
            .unwrap_err()
            .code(),
        "forbidden"
    );
    assert_eq!(
        w.svc.get_order(order.id, &w.customer()).unwrap().id,
        order.id
    );
}

#[test]
fn pay_then_reserve_voids_the_hold_when_stock_is_gone() {
    let w = World::new(CheckoutFlow::PayThenReserve);
    let ok = w
        .svc
        .create_order(&w.draft(&[("A", 2)]), &w.card(), &w.customer(), None)
        .unwrap();
    let path: Vec<_> = ok.history.iter().map(|h| h.to).collect();
    assert_eq!(
        path,
        [
            OrderStatus::Pending,
            OrderStatus::Validated,
            OrderStatus::PaymentPending,
            OrderStatus::Authorized,
            OrderStatus::Confirmed
        ]
    );
    let err = w
        .svc
        .create_order(&w.draft(&[("A", 14)]), &w.card(), &w.customer(), None)
        .unwrap_err();
    assert_eq!(err.code(), "insufficient_stock");
    let last = *w.orders.order_ids().unwrap().last().unwrap();
    let second = w.svc.get_order(last, &Actor::System).unwrap();
    assert_eq!(second.status, OrderStatus::Cancelled);
    assert_eq!(second.payments[0].status(), PaymentStatus::Voided);
    assert_eq!(w.available("A", "WH1"), 8);
}

#[test]
fn fraud_reject_cancels_before_anything_is_held_and_review_waits_for_staff() {
    let w = World::new(CheckoutFlow::ReserveThenPay);
    // A blacklisted address + flagged device + chargebacks: rejected.
    let mut draft = w.draft(&[("A", 1)]);
    draft.shipping_address.line1 = "13 Fraud Lane".into();
    w.signals
        .blacklist(&oms_core::order::Address::new(&draft.shipping_address).unwrap());
    w.signals.flag_device("dev-bad");
    w.signals.set_history(
        "c1",
        CustomerHistory {
            previous_orders: 3,
            chargebacks: 3,
            average_order_value: None,
        },
    );
    let address = oms_core::order::Address::new(&draft.shipping_address).unwrap();
    for _ in 0..5 {
        w.signals
            .record_order("c1", Some("dev-bad"), &address, w.clock.now());
    }
    let mut pay = w.card();
    pay.device = Some("dev-bad".into());
    let err = w
        .svc
        .create_order(&draft, &pay, &w.customer(), None)
        .unwrap_err();
    assert_eq!(err.code(), "fraud_rejected");
    assert_eq!(w.available("A", "WH1"), 10);
    assert_eq!(w.gateway.request_counts().0, 0);
    let rejected = w.only_order();
    assert_eq!(rejected.status, OrderStatus::Cancelled);
    assert!(rejected
        .fraud
        .as_ref()
        .unwrap()
        .contributions
        .iter()
        .any(|c| !c.contribution.is_zero()));

    // A middling score: held for review, then approved by staff (not by the customer).
    let w = World::new(CheckoutFlow::ReserveThenPay);
    let mut draft = w.draft(&[("A", 1)]);
    draft.shipping_address.line1 = "13 Fraud Lane".into();
    w.signals
        .blacklist(&oms_core::order::Address::new(&draft.shipping_address).unwrap());
    w.signals.flag_device("dev-bad");
    let mut pay = w.card();
    pay.device = Some("dev-bad".into());
    let held = w
        .svc
        .create_order(&draft, &pay, &w.customer(), None)
        .unwrap();
    assert_eq!(held.status, OrderStatus::OnHold, "{:?}", held.fraud);
    assert_eq!(
        w.svc
            .approve_review(held.id, &w.customer(), "ok", None)
            .unwrap_err()
            .code(),
        "forbidden"
    );
    let ok = w
        .svc
        .approve_review(held.id, &w.staff(), "called the customer", None)
        .unwrap();
    assert_eq!(ok.status, OrderStatus::Confirmed);
}

#[test]
fn rejected_review_voids_and_releases() {
    let w = World::new(CheckoutFlow::ReserveThenPay);
    let mut draft = w.draft(&[("A", 2)]);
    draft.shipping_address.line1 = "13 Fraud Lane".into();
    w.signals
        .blacklist(&oms_core::order::Address::new(&draft.shipping_address).unwrap());
    w.signals.flag_device("dev-bad");
    let mut pay = w.card();
    pay.device = Some("dev-bad".into());
    let held = w
        .svc
        .create_order(&draft, &pay, &w.customer(), None)
        .unwrap();
    assert_eq!(w.available("A", "WH1"), 8);
    let rejected = w
        .svc
        .reject_review(held.id, &w.staff(), "stolen card", None)
        .unwrap();
    assert_eq!(rejected.status, OrderStatus::Cancelled);
    assert_eq!(rejected.payments[0].status(), PaymentStatus::Voided);
    assert_eq!(w.available("A", "WH1"), 10);
}

#[test]
fn unpaid_order_is_cancelled_when_its_reservation_expires() {
    let w = World::new(CheckoutFlow::ReserveThenPay);
    // The gateway's answer is lost and lookups fail: the order waits in PaymentPending with
    // stock held. (At expiry the call is settled — here it turns out approved — then voided.)
    w.gateway.script([FakeStep::TimeoutNothingBehind]);
    w.gateway.time_out_lookups(100);
    let order = w
        .svc
        .create_order(&w.draft(&[("A", 3)]), &w.card(), &w.customer(), None)
        .unwrap();
    assert_eq!(order.status, OrderStatus::PaymentPending);
    assert_eq!(w.available("A", "WH1"), 7);
    w.clock.advance(Duration::minutes(14));
    assert!(w.svc.expire_reservations().unwrap().is_empty());
    w.clock.advance(Duration::minutes(1));
    w.gateway.time_out_lookups(0);
    let expired = w.svc.expire_reservations().unwrap();
    assert_eq!(expired.len(), 1);
    assert!(expired[0].cancelled);
    assert_eq!(w.available("A", "WH1"), 10);
    let order = w.svc.get_order(order.id, &Actor::System).unwrap();
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert!(
        w.svc.expire_reservations().unwrap().is_empty(),
        "each expiry handled once"
    );
}

#[test]
fn unknown_payment_outcome_is_resumed_with_a_lookup_not_a_second_charge() {
    let w = World::new(CheckoutFlow::ReserveThenPay);
    w.gateway
        .script(std::iter::repeat_n(FakeStep::TimeoutAfterSuccess, 1));
    w.gateway.time_out_lookups(100);
    let order = w
        .svc
        .create_order(&w.draft(&[("A", 1)]), &w.card(), &w.customer(), None)
        .unwrap();
    assert_eq!(order.status, OrderStatus::PaymentPending);
    w.gateway.time_out_lookups(0);
    let resumed = w.svc.resume_payment(order.id, &Actor::System).unwrap();
    assert_eq!(resumed.status, OrderStatus::Confirmed);
    assert_eq!(
        w.gateway.total(oms_core::payment::GatewayOp::Authorize),
        1000,
        "charged once"
    );
}

#[test]
fn add_line_item_reserves_and_tops_up_the_payment() {
    let w = World::new(CheckoutFlow::ReserveThenPay);
    let order = w
        .svc
        .create_order(&w.draft(&[("A", 1)]), &w.card(), &w.customer(), None)
        .unwrap();
    let line = oms_core::order::LineItemInput::new("B", 2, usd("25.00"));
    let edited = w
        .svc
        .add_line_item(order.id, &line, &w.customer(), None)
        .unwrap();
    assert_eq!(edited.lines.len(), 2);
    assert_eq!(edited.payments.len(), 2);
    assert_eq!(w.available("B", "WH1"), 8);
    let total = oms_core::pricing::charged_total(&edited).unwrap();
    let authorized = edited
        .payments
        .iter()
        .try_fold(oms_core::Money::zero(total.currency()), |a, p| {
            a.checked_add(&p.authorized())
        })
        .unwrap();
    assert_eq!(authorized, total);
    // no stock: refused, nothing changed
    let too_many = oms_core::order::LineItemInput::new("C", 99, usd("1.00"));
    assert_eq!(
        w.svc
            .add_line_item(order.id, &too_many, &w.customer(), None)
            .unwrap_err()
            .code(),
        "insufficient_stock"
    );
    assert_eq!(w.svc.get_order(order.id, &Actor::System).unwrap(), edited);
}

#[test]
fn idempotent_replays_return_the_first_result_and_refuse_changed_content() {
    let w = World::new(CheckoutFlow::ReserveThenPay);
    let draft = w.draft(&[("A", 1)]);
    let first = w
        .svc
        .create_order(&draft, &w.card(), &w.customer(), Some("k1"))
        .unwrap();
    let again = w
        .svc
        .create_order(&draft, &w.card(), &w.customer(), Some("k1"))
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(w.orders.order_ids().unwrap().len(), 1);
    let changed = w.draft(&[("A", 2)]);
    let err = w
        .svc
        .create_order(&changed, &w.card(), &w.customer(), Some("k1"))
        .unwrap_err();
    assert_eq!(err.code(), "idempotency_conflict");

    // a final refusal replays as the same refusal, without a second charge attempt
    w.gateway.script([FakeStep::Decline]);
    let e1 = w
        .svc
        .create_order(&draft, &w.card(), &w.customer(), Some("k2"))
        .unwrap_err();
    let calls = w.gateway.request_counts().0;
    let e2 = w
        .svc
        .create_order(&draft, &w.card(), &w.customer(), Some("k2"))
        .unwrap_err();
    assert_eq!(e1, e2);
    assert_eq!(w.gateway.request_counts().0, calls);

    // cancel replays
    let c1 = w
        .svc
        .cancel_order(first.id, &w.customer(), "x", Some("k3"))
        .unwrap();
    let c2 = w
        .svc
        .cancel_order(first.id, &w.customer(), "x", Some("k3"))
        .unwrap();
    assert_eq!(c1, c2);
    assert_eq!(
        w.svc
            .cancel_order(first.id, &w.customer(), "y", Some("k3"))
            .unwrap_err()
            .code(),
        "idempotency_conflict"
    );
}

#[test]
fn stale_writes_are_conflicts_not_overwrites() {
    let w = World::new(CheckoutFlow::ReserveThenPay);
    let order = w
        .svc
        .create_order(&w.draft(&[("A", 1)]), &w.card(), &w.customer(), None)
        .unwrap();
    let mut stale = order.clone();
    stale.version += 1;
    w.orders
        .update_order(&stale, order.version, &[], None)
        .unwrap();
    let mut older = order.clone();
    older.version += 1;
    assert_eq!(
        w.orders
            .update_order(&older, order.version, &[], None)
            .unwrap_err()
            .code(),
        "conflict"
    );
}

#[test]
fn post_payment_fork_compensates_when_fulfillment_cannot_be_prepared() {
    // No box fits: the fulfillment branch fails, so the committed stock is released and the
    // payment hold voided; nothing of the order is kept.
    let mut w = World::new(CheckoutFlow::ReserveThenPay);
    w.set_boxes(vec![oms_core::fulfillment::pack::BoxSpec {
        id: "TINY".into(),
        volume_cm3: 10,
        max_weight_grams: 10,
        tare_grams: 1,
    }]);
    let err = w
        .svc
        .create_order(&w.draft(&[("A", 2)]), &w.card(), &w.customer(), None)
        .unwrap_err();
    assert_eq!(err.code(), "no_box_fits");
    assert_eq!(w.available("A", "WH1"), 10, "stock released");
    assert!(w.orders.order_ids().unwrap().is_empty());
    assert_eq!(
        w.gateway.total(oms_core::payment::GatewayOp::Void),
        w.gateway.total(oms_core::payment::GatewayOp::Authorize),
        "hold voided"
    );
}
