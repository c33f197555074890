//! Every mutating operation of the order service honours an idempotency key: a replay with the
//! same content returns the first result without doing the work again, and the same key with
//! different content is `IdempotencyConflict`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use oms_core::lifecycle::{Actor, OrderEvent, OrderStatus};
use oms_core::order::{LineItemInput, Order};
use oms_core::payment::GatewayOp;
use oms_core::service::{CarrierUpdate, CheckoutFlow};
use oms_core::store::OrderStore;
use oms_core::time::Clock;
use oms_core::OmsResult;

/// Run `op` with key `k`, replay it, then replay with changed content via `changed`.
fn check<T: PartialEq + std::fmt::Debug>(
    w: &World,
    name: &str,
    op: impl Fn(Option<&str>) -> OmsResult<T>,
    changed: impl Fn(Option<&str>) -> OmsResult<T>,
) -> T {
    let key = format!("key-{name}");
    let first = op(Some(&key)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let events = w.svc.drain_events(100_000).unwrap().len();
    let replay = op(Some(&key)).unwrap();
    assert_eq!(first, replay, "{name}: replay differs");
    assert_eq!(
        w.svc.drain_events(100_000).unwrap().len(),
        events,
        "{name}: replay wrote events"
    );
    let err = changed(Some(&key)).unwrap_err();
    assert_eq!(err.code(), "idempotency_conflict", "{name}");
    first
}

#[test]
fn every_mutating_operation_replays_and_refuses_changed_content() {
    let w = World::new(CheckoutFlow::ReserveThenPay);
    let (c, s) = (w.customer(), w.staff());
    let draft = w.draft(&[("A", 2)]);
    let o: Order = check(
        &w,
        "create_order",
        |k| w.svc.create_order(&draft, &w.card(), &c, k),
        |k| w.svc.create_order(&w.draft(&[("A", 3)]), &w.card(), &c, k),
    );
    let id = o.id;
    let authorized = w.gateway.total(GatewayOp::Authorize);
    let line = LineItemInput::new("B", 1, usd("25.00"));
    check(
        &w,
        "add_line_item",
        |k| w.svc.add_line_item(id, &line, &c, k),
        |k| {
            w.svc
                .add_line_item(id, &LineItemInput::new("B", 2, usd("25.00")), &c, k)
        },
    );
    assert_eq!(
        w.gateway.total(GatewayOp::Authorize),
        authorized + 2500,
        "top-up authorized once"
    );
    let o = check(
        &w,
        "request_fulfillment",
        |k| w.svc.request_fulfillment(id, &s, k),
        |k| {
            w.svc
                .request_fulfillment(id, &Actor::Staff("other".into()), k)
        },
    );
    let sid = o.shipments[0].id();
    let scans: Vec<String> = ["A", "A", "B"].iter().map(|x| (*x).to_owned()).collect();
    check(
        &w,
        "record_pick",
        |k| w.svc.record_pick(id, sid, "p1", &scans, &s, k),
        |k| w.svc.record_pick(id, sid, "p2", &scans, &s, k),
    );
    check(
        &w,
        "record_pack",
        |k| w.svc.record_pack(id, sid, None, &s, k),
        |k| w.svc.record_pack(id, sid, Some(1), &s, k),
    );
    check(
        &w,
        "notify_shipped",
        |k| w.svc.notify_shipped(id, sid, &s, k),
        |k| w.svc.notify_shipped(id, sid + 1, &s, k),
    );
    check(
        &w,
        "update_shipment",
        |k| {
            w.svc
                .update_shipment(id, sid, CarrierUpdate::Delivered, &s, k)
        },
        |k| {
            w.svc
                .update_shipment(id, sid, CarrierUpdate::InTransit, &s, k)
        },
    );
    assert_eq!(w.gateway.total(GatewayOp::Capture), 4500, "captured once");
    let o = check(
        &w,
        "request_return",
        |k| w.svc.request_return(id, &[(1, 1)], &c, k),
        |k| w.svc.request_return(id, &[(1, 2)], &c, k),
    );
    let rid = o.returns[0].id();
    check(
        &w,
        "approve_return",
        |k| w.svc.approve_return(id, rid, false, &s, k),
        |k| w.svc.approve_return(id, rid, true, &s, k),
    );
    let o = check(
        &w,
        "receive_return",
        |k| w.svc.receive_return(id, rid, true, "", &s, k),
        |k| w.svc.receive_return(id, rid, false, "bad", &s, k),
    );
    assert_eq!(o.status, OrderStatus::Refunded);
    assert_eq!(w.gateway.total(GatewayOp::Refund), 1000, "refunded once");

    // cancel, status updates, reservations, reviews and return rejection on fresh orders
    let o2 = w
        .svc
        .create_order(&w.draft(&[("C", 1)]), &w.card(), &c, None)
        .unwrap();
    check(
        &w,
        "update_order_status",
        |k| {
            w.svc
                .update_order_status(o2.id, OrderEvent::StartFulfillment, &s, "manual", k)
        },
        |k| {
            w.svc
                .update_order_status(o2.id, OrderEvent::StartFulfillment, &s, "other reason", k)
        },
    );
    let o3 = w
        .svc
        .create_order(&w.draft(&[("C", 1)]), &w.card(), &c, None)
        .unwrap();
    check(
        &w,
        "cancel_order",
        |k| w.svc.cancel_order(o3.id, &c, "no longer needed", k),
        |k| w.svc.cancel_order(o3.id, &c, "another reason", k),
    );
    let voids = w.gateway.total(GatewayOp::Void);
    assert!(voids > 0);

    // reserve_inventory on an order placed without the service's checkout
    let clock = oms_core::time::ManualClock::new(oms_core::time::Timestamp::from_civil(
        2026, 5, 6, 9, 0, 0,
    ));
    let mut raw = Order::create(
        &w.draft(&[("C", 1)]),
        &Actor::System,
        &clock,
        &oms_core::time::SequentialIds::starting_at(9_000),
    )
    .unwrap();
    oms_core::pricing::place_pricing(&mut raw, &w.svc.config().pricing, clock.now()).unwrap();
    w.orders.insert_order(&raw, &[], None).unwrap();
    check(
        &w,
        "reserve_inventory",
        |k| w.svc.reserve_inventory(raw.id, &s, k),
        |k| w.svc.reserve_inventory(raw.id, &c, k),
    );
}

#[test]
fn reviews_and_rejected_returns_replay() {
    let w = World::new(CheckoutFlow::ReserveThenPay);
    let s = w.staff();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut draft = w.draft(&[("A", 1)]);
        draft.shipping_address.line1 = "13 Fraud Lane".into();
        w.signals
            .blacklist(&oms_core::order::Address::new(&draft.shipping_address).unwrap());
        w.signals.flag_device("dev-bad");
        let mut pay = w.card();
        pay.device = Some("dev-bad".into());
        let o = w
            .svc
            .create_order(&draft, &pay, &w.customer(), None)
            .unwrap();
        assert_eq!(o.status, OrderStatus::OnHold);
        held.push(o.id);
    }
    check(
        &w,
        "approve_review",
        |k| w.svc.approve_review(held[0], &s, "ok", k),
        |k| w.svc.approve_review(held[0], &s, "changed", k),
    );
    check(
        &w,
        "reject_review",
        |k| w.svc.reject_review(held[1], &s, "fraud", k),
        |k| w.svc.reject_review(held[1], &s, "changed", k),
    );
    // a rejected return replays too
    let o = w.svc.get_order(held[0], &Actor::System).unwrap();
    let o = w.svc.request_fulfillment(o.id, &s, None).unwrap();
    let sid = o.shipments[0].id();
    w.svc
        .record_pick(o.id, sid, "p", &["A".to_owned()], &s, None)
        .unwrap();
    w.svc.record_pack(o.id, sid, None, &s, None).unwrap();
    w.svc.notify_shipped(o.id, sid, &s, None).unwrap();
    w.svc
        .update_shipment(o.id, sid, CarrierUpdate::Delivered, &s, None)
        .unwrap();
    let o = w
        .svc
        .request_return(o.id, &[(1, 1)], &w.customer(), None)
        .unwrap();
    let rid = o.returns[0].id();
    check(
        &w,
        "reject_return",
        |k| w.svc.reject_return(o.id, rid, "worn", &s, k),
        |k| w.svc.reject_return(o.id, rid, "other", &s, k),
    );
}
