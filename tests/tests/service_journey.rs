//! Whole journeys through the order service: seed 004's eight stages with capture on delivery,
//! seed 001 §7's refused cancellation after packing, a split order shipped in two parcels,
//! returns (refunded exactly, rejected, damaged), and the dashboard over a book larger than a
//! page.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use oms_core::fulfillment::FulfillmentStatus;
use oms_core::inventory::ReservationStatus;
use oms_core::lifecycle::{Actor, OrderStatus};
use oms_core::order::Order;
use oms_core::payment::{GatewayOp, PaymentStatus};
use oms_core::service::{CarrierUpdate, CheckoutFlow, NotificationKind};
use oms_core::store::OrderStore;

fn units(order: &Order, shipment: usize) -> Vec<String> {
    order.shipments[shipment]
        .lines()
        .iter()
        .flat_map(|(sku, q)| std::iter::repeat_n(sku.as_str().to_owned(), *q as usize))
        .collect()
}

/// Pick, pack and hand over every shipment; returns the order.
fn ship_all(w: &World, mut order: Order) -> Order {
    let staff = w.staff();
    order = w.svc.request_fulfillment(order.id, &staff, None).unwrap();
    for i in 0..order.shipments.len() {
        let id = order.shipments[i].id();
        order = w
            .svc
            .record_pick(order.id, id, "picker-1", &units(&order, i), &staff, None)
            .unwrap();
        order = w.svc.record_pack(order.id, id, None, &staff, None).unwrap();
    }
    for i in 0..order.shipments.len() {
        let id = order.shipments[i].id();
        order = w.svc.notify_shipped(order.id, id, &staff, None).unwrap();
    }
    order
}

#[test]
fn seed_004_eight_stages_capture_on_delivery() {
    let w = World::new(CheckoutFlow::PayThenReserve);
    let staff = w.staff();
    // 1-3: created, authorized, fraud approved
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
    assert_eq!(order.payments[0].status(), PaymentStatus::AwaitingCapture);
    // 4: allocation (stock held at WH1), 5: pick & pack with pick path and box
    let order = w.svc.request_fulfillment(order.id, &staff, None).unwrap();
    assert_eq!(order.status, OrderStatus::Allocated);
    assert_eq!(order.shipments.len(), 1);
    assert_eq!(
        order.shipments[0].status(),
        FulfillmentStatus::PickingQueued
    );
    let sid = order.shipments[0].id();
    // a wrong scan is refused and changes nothing
    let bad = w
        .svc
        .record_pick(order.id, sid, "p1", &["Z".into()], &staff, None)
        .unwrap_err();
    assert_eq!(bad.code(), "scan_mismatch");
    // missing units: refused
    let short = w
        .svc
        .record_pick(order.id, sid, "p1", &["A".into()], &staff, None)
        .unwrap_err();
    assert_eq!(short.code(), "guard_failed");
    let order = w
        .svc
        .record_pick(order.id, sid, "p1", &units(&order, 0), &staff, None)
        .unwrap();
    assert_eq!(order.status, OrderStatus::Picked);
    // 6: packed & labeled; a scale reading far off is refused
    let heavy = w
        .svc
        .record_pack(order.id, sid, Some(999_999), &staff, None)
        .unwrap_err();
    assert_eq!(heavy.code(), "weight_mismatch");
    let order = w
        .svc
        .record_pack(order.id, sid, None, &staff, None)
        .unwrap();
    assert_eq!(order.status, OrderStatus::AwaitingShipment);
    assert!(order.shipments[0]
        .tracking_number()
        .unwrap()
        .starts_with("OMSX-"));
    // a packed order cannot be cancelled: use a return (seed 001 §7)
    let refused = w
        .svc
        .cancel_order(order.id, &w.customer(), "too late", None)
        .unwrap_err();
    assert_eq!(refused.code(), "not_cancellable");
    assert!(refused.to_string().contains("return"));
    // 7: handed over and in transit; nothing captured yet
    let order = w.svc.notify_shipped(order.id, sid, &staff, None).unwrap();
    assert_eq!(order.status, OrderStatus::Shipped);
    assert_eq!(w.gateway.total(GatewayOp::Capture), 0);
    assert_eq!(
        w.inventory_on_hand("A", "WH1"),
        8,
        "shipped units leave on_hand"
    );
    let order = w
        .svc
        .update_shipment(order.id, sid, CarrierUpdate::InTransit, &staff, None)
        .unwrap();
    assert_eq!(order.status, OrderStatus::InTransit);
    let order = w
        .svc
        .update_shipment(order.id, sid, CarrierUpdate::OutForDelivery, &staff, None)
        .unwrap();
    assert_eq!(order.status, OrderStatus::OutForDelivery);
    // 8: delivered, captured in full
    let order = w
        .svc
        .update_shipment(order.id, sid, CarrierUpdate::Delivered, &staff, None)
        .unwrap();
    assert_eq!(order.status, OrderStatus::Delivered);
    assert_eq!(order.payments[0].status(), PaymentStatus::Captured);
    assert_eq!(w.gateway.total(GatewayOp::Capture), 4500);
    let r = w.inventory_reservation(order.reservations[0]);
    assert_eq!(r.status, ReservationStatus::Shipped);
    let kinds = w.notes();
    assert_eq!(
        kinds,
        [
            NotificationKind::OrderConfirmed,
            NotificationKind::Shipped,
            NotificationKind::OutForDelivery,
            NotificationKind::Delivered
        ]
    );
    let tracking = w.svc.track_order(&order.number, &w.customer()).unwrap();
    assert_eq!(tracking.status, OrderStatus::Delivered);
    assert!(tracking.shipments[0].estimated_delivery.is_some());
    assert!(tracking.timeline.len() >= 10);
}

#[test]
fn split_order_ships_in_two_parcels_and_status_follows() {
    let w = World::new(CheckoutFlow::ReserveThenPay);
    // 12 of A: 10 from WH1, 2 from WH2
    let order = w
        .svc
        .create_order(&w.draft(&[("A", 12)]), &w.card(), &w.customer(), None)
        .unwrap();
    let order = w
        .svc
        .request_fulfillment(order.id, &w.staff(), None)
        .unwrap();
    assert_eq!(order.shipments.len(), 2);
    let staff = w.staff();
    let mut order = order;
    for i in 0..2 {
        let id = order.shipments[i].id();
        order = w
            .svc
            .record_pick(order.id, id, "p", &units(&order, i), &staff, None)
            .unwrap();
        order = w.svc.record_pack(order.id, id, None, &staff, None).unwrap();
    }
    let (s1, s2) = (order.shipments[0].id(), order.shipments[1].id());
    let order = w.svc.notify_shipped(order.id, s1, &staff, None).unwrap();
    assert_eq!(order.status, OrderStatus::PartiallyShipped);
    let order = w.svc.notify_shipped(order.id, s2, &staff, None).unwrap();
    assert_eq!(order.status, OrderStatus::Shipped);
    let order = w
        .svc
        .update_shipment(order.id, s1, CarrierUpdate::Delivered, &staff, None)
        .unwrap();
    assert_eq!(order.status, OrderStatus::PartiallyDelivered);
    assert_eq!(
        order.payments[0].status(),
        PaymentStatus::Captured,
        "captured at the first delivery"
    );
    let order = w
        .svc
        .update_shipment(order.id, s2, CarrierUpdate::Delivered, &staff, None)
        .unwrap();
    assert_eq!(order.status, OrderStatus::Delivered);
    assert_eq!(w.inventory_on_hand("A", "WH1"), 0);
    assert_eq!(w.inventory_on_hand("A", "WH2"), 3);
}

#[test]
fn return_refunds_exactly_and_restocks() {
    let w = World::new(CheckoutFlow::ReserveThenPay);
    let staff = w.staff();
    let order = w
        .svc
        .create_order(
            &w.draft(&[("A", 3), ("B", 1)]),
            &w.card(),
            &w.customer(),
            None,
        )
        .unwrap();
    let order = ship_all(&w, order);
    let sid = order.shipments[0].id();
    let order = w
        .svc
        .update_shipment(order.id, sid, CarrierUpdate::Delivered, &staff, None)
        .unwrap();
    // more than delivered: refused
    let too_many = w
        .svc
        .request_return(order.id, &[(1, 4)], &w.customer(), None)
        .unwrap_err();
    assert_eq!(too_many.code(), "return_not_eligible");
    let order = w
        .svc
        .request_return(order.id, &[(1, 2)], &w.customer(), None)
        .unwrap();
    assert_eq!(order.status, OrderStatus::ReturnRequested);
    let rid = order.returns[0].id();
    assert_eq!(
        w.svc
            .approve_return(order.id, rid, false, &w.customer(), None)
            .unwrap_err()
            .code(),
        "forbidden"
    );
    let order = w
        .svc
        .approve_return(order.id, rid, false, &staff, None)
        .unwrap();
    assert_eq!(order.status, OrderStatus::ReturnApproved);
    let fixed = order.returns[0].refund().unwrap().total;
    assert_eq!(fixed, usd("20.00"));
    let order = w
        .svc
        .receive_return(order.id, rid, true, "", &staff, None)
        .unwrap();
    assert_eq!(order.status, OrderStatus::Refunded);
    assert_eq!(w.gateway.total(GatewayOp::Refund), 2000);
    assert_eq!(order.payments[0].refunded(), fixed);
    assert_eq!(w.available("A", "WH1"), 9, "sellable units back");
}

#[test]
fn rejected_and_damaged_returns_refund_nothing() {
    let w = World::new(CheckoutFlow::ReserveThenPay);
    let staff = w.staff();
    let order = w
        .svc
        .create_order(&w.draft(&[("A", 1)]), &w.card(), &w.customer(), None)
        .unwrap();
    let order = ship_all(&w, order);
    let sid = order.shipments[0].id();
    let order = w
        .svc
        .update_shipment(order.id, sid, CarrierUpdate::Delivered, &staff, None)
        .unwrap();
    let order = w
        .svc
        .request_return(order.id, &[(1, 1)], &w.customer(), None)
        .unwrap();
    let rid = order.returns[0].id();
    let order = w
        .svc
        .reject_return(order.id, rid, "used", &staff, None)
        .unwrap();
    assert_eq!(
        order.status,
        OrderStatus::Delivered,
        "customer keeps the order"
    );
    // a second request, approved, arrives damaged
    let order = w
        .svc
        .request_return(order.id, &[(1, 1)], &w.customer(), None)
        .unwrap();
    let rid = order.returns[1].id();
    let order = w
        .svc
        .approve_return(order.id, rid, false, &staff, None)
        .unwrap();
    let order = w
        .svc
        .receive_return(order.id, rid, false, "cracked", &staff, None)
        .unwrap();
    assert_eq!(order.status, OrderStatus::Completed);
    assert_eq!(w.gateway.total(GatewayOp::Refund), 0);
    assert_eq!(w.damaged("A", "WH1"), 1);
    let stored = w.orders.order(order.id).unwrap();
    assert_eq!(stored, order);
}

#[test]
fn capture_on_shipment_policy_captures_at_handover() {
    let mut w = World::new(CheckoutFlow::ReserveThenPay);
    w.set_capture(oms_core::payment::CapturePolicy::OnShipment);
    let order = w
        .svc
        .create_order(&w.draft(&[("A", 1)]), &w.card(), &w.customer(), None)
        .unwrap();
    let order = ship_all(&w, order);
    assert_eq!(order.payments[0].status(), PaymentStatus::Captured);
    assert_eq!(w.gateway.total(GatewayOp::Capture), 1000);
    let _ = Actor::System;
}

#[test]
fn an_expired_authorization_is_recorded_and_delivery_still_completes() {
    let w = World::new(CheckoutFlow::ReserveThenPay);
    let staff = w.staff();
    let order = w
        .svc
        .create_order(&w.draft(&[("A", 1)]), &w.card(), &w.customer(), None)
        .unwrap();
    let order = ship_all(&w, order);
    // the parcel sits for 8 days: the 7-day hold lapses before delivery
    w.clock.advance(oms_core::time::Duration::days(8));
    let sid = order.shipments[0].id();
    let order = w
        .svc
        .update_shipment(order.id, sid, CarrierUpdate::Delivered, &staff, None)
        .unwrap();
    assert_eq!(order.status, OrderStatus::Delivered);
    assert_eq!(order.payments[0].status(), PaymentStatus::Expired);
    assert_eq!(w.gateway.total(GatewayOp::Capture), 0);
    let events: Vec<String> = w
        .svc
        .drain_events(1000)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(events.contains(&"payment.failed".to_owned()));
}

#[test]
fn with_a_sourcing_network_stock_is_reserved_where_the_optimal_plan_takes_it() {
    // Priority order alone would take A from WH1 (first in the list, far away in Newark).
    let mut w = World::new(CheckoutFlow::ReserveThenPay);
    let plain = w
        .svc
        .create_order(&w.draft(&[("A", 2)]), &w.card(), &w.customer(), None)
        .unwrap();
    let r = w.inventory_reservation(plain.reservations[0]);
    assert!(
        r.items.iter().all(|i| i.warehouse.as_str() == "WH1"),
        "{:?}",
        r.items
    );

    // With locations and costs, the nearer WH2 wins; the plan's cost is on the event.
    w.set_sourcing();
    let order = w
        .svc
        .create_order(&w.draft(&[("A", 2)]), &w.card(), &w.customer(), None)
        .unwrap();
    let r = w.inventory_reservation(order.reservations[0]);
    assert!(
        r.items.iter().all(|i| i.warehouse.as_str() == "WH2"),
        "{:?}",
        r.items
    );
    let events = w.svc.drain_events(1000).unwrap();
    assert!(events
        .iter()
        .any(|e| e.order_id == order.id && e.name == "order.sourced"));
    // and fulfillment ships from there
    let order = w
        .svc
        .request_fulfillment(order.id, &w.staff(), None)
        .unwrap();
    assert_eq!(order.shipments[0].warehouse(), Some("WH2"));

    // Five units now come cheaper from WH1 alone (one parcel) than split; nine can only be
    // had from both warehouses (WH1 has 8 left, WH2 3).
    let single = w
        .svc
        .create_order(&w.draft(&[("A", 5)]), &w.card(), &w.customer(), None)
        .unwrap();
    assert_eq!(
        w.inventory_reservation(single.reservations[0]).items.len(),
        1
    );
    w.svc
        .cancel_order(single.id, &w.customer(), "", None)
        .unwrap();
    let split = w
        .svc
        .create_order(&w.draft(&[("A", 9)]), &w.card(), &w.customer(), None)
        .unwrap();
    let r = w.inventory_reservation(split.reservations[0]);
    let whs: std::collections::BTreeSet<&str> =
        r.items.iter().map(|i| i.warehouse.as_str()).collect();
    assert_eq!(whs.len(), 2, "{:?}", r.items);
}

/// The dashboard over every stored order reads the book page by page: over more orders than a
/// page it equals the snapshot computed from all of them at once.
#[test]
fn metrics_over_a_book_larger_than_a_page() {
    use oms_core::metrics::AlertThresholds;
    use oms_core::time::SequentialIds;
    let w = World::new(CheckoutFlow::ReserveThenPay);
    let ids = SequentialIds::starting_at(1_000_000);
    let mut orders = Vec::new();
    for n in 0..2_345u64 {
        let mut o = Order::create(&w.draft(&[("A", 1)]), &w.customer(), &*w.clock, &ids).unwrap();
        if n % 7 == 0 {
            o.status = OrderStatus::Cancelled;
        }
        w.orders.insert_order(&o, &[], None).unwrap();
        orders.push(o);
    }
    let t = AlertThresholds::default();
    let paged = w.svc.metrics(&t).unwrap();
    assert_eq!(paged.orders, 2_345);
    assert_eq!(paged.status_distribution["cancelled"], 335);
    assert_eq!(paged, w.svc.metrics_of(&orders, &t).unwrap());
}
