//! Seed scenarios for fulfillment and returns: seed 001 §6 (an order split across two
//! warehouses, one shipment each), seed 004 stages 5–8 (pick & pack → handoff → in transit →
//! delivered), and a return after delivery.

use std::collections::{BTreeMap, BTreeSet};

use oms_core::fulfillment::pack::{BoxSpec, ItemSpec, WeightTolerance};
use oms_core::fulfillment::pick::{BinLocation, WalkMetric};
use oms_core::fulfillment::{
    derive_order_status, find_shipment_mut, FulfillmentStatus, PickBranch, Shipment,
};
use oms_core::lifecycle::{Actor, OrderStatus};
use oms_core::order::{AddressInput, Customer, LineItemInput, Order, OrderDraft, Sku};
use oms_core::pricing::{place_pricing, PricingContext, Refunded, TaxTable};
use oms_core::returns::{
    ReturnBranch, ReturnCase, ReturnContext, ReturnPolicy, ReturnStatus, StockCondition,
};
use oms_core::time::{Duration, ManualClock, SequentialIds, Timestamp};
use oms_core::{Currency, Money};
use rust_decimal::Decimal;

fn sku(s: &str) -> Sku {
    Sku::new(s).unwrap()
}

fn usd(s: &str) -> Money {
    Money::parse(s, Currency::USD).unwrap()
}

fn at(hour: u32, min: u32) -> Timestamp {
    Timestamp::from_civil(2026, 5, 6, hour, min, 0)
}

fn order(lines: Vec<LineItemInput>, ids: &SequentialIds) -> Order {
    let draft = OrderDraft {
        customer: Customer {
            id: "c1".into(),
            email: "ada@example.com".into(),
            name: "Ada".into(),
        },
        shipping_address: AddressInput {
            name: "Ada".into(),
            line1: "1 Main St".into(),
            city: "New York".into(),
            region: "NY".into(),
            postal_code: "10001".into(),
            country: "US".into(),
            ..AddressInput::default()
        },
        billing_address: None,
        currency: Currency::USD,
        lines,
        promo_codes: vec![],
    };
    let mut o = Order::create(&draft, &Actor::System, &ManualClock::new(at(9, 0)), ids).unwrap();
    // Priced at placement (8 % tax, free shipping): refunds work from the stored line parts.
    let ctx = PricingContext {
        tax: TaxTable::new().with_rate("US", "standard", Decimal::new(8, 2)),
        ..PricingContext::default()
    };
    place_pricing(&mut o, &ctx, at(9, 0)).unwrap();
    o
}

struct Warehouse {
    name: &'static str,
    locations: BTreeMap<Sku, BinLocation>,
    items: BTreeMap<Sku, ItemSpec>,
    boxes: Vec<BoxSpec>,
}

fn boxes() -> Vec<BoxSpec> {
    let b = |id: &str, v, w| BoxSpec {
        id: id.into(),
        volume_cm3: v,
        max_weight_grams: w,
        tare_grams: 150,
    };
    vec![
        b("S", 2_000, 3_000),
        b("M", 8_000, 10_000),
        b("L", 30_000, 25_000),
    ]
}

fn item(v: u64, w: u64) -> ItemSpec {
    ItemSpec {
        volume_cm3: v,
        weight_grams: w,
    }
}

/// Pick, pack, weigh, label and pass QC: Requested → ReadyForShipment.
fn prepare(s: &mut Shipment, wh: &Warehouse, ids: &SequentialIds, t: Timestamp) {
    s.assign_warehouse(wh.name, t).unwrap();
    s.queue_picking(
        &wh.locations,
        BinLocation::new(0, 0, 0),
        &WalkMetric::default(),
        t,
    )
    .unwrap();
    s.assign_picker("picker-7", t).unwrap();
    // The picker walks the list in its order and scans every unit.
    let walk: Vec<(Sku, u32)> = s
        .pick_list()
        .unwrap()
        .lines()
        .iter()
        .map(|l| (l.sku.clone(), l.quantity))
        .collect();
    for (k, q) in walk {
        for _ in 0..q {
            s.scan(k.as_str(), t).unwrap();
        }
    }
    for b in PickBranch::ALL {
        s.complete_branch(b, t).unwrap();
    }
    s.items_ready(t).unwrap();
    let expected = s.pack(&wh.items, &wh.boxes, t).unwrap().expected_grams;
    s.print_label("UPS", ids, t).unwrap();
    s.weigh(expected + 5, t).unwrap();
    s.pass_qc(WeightTolerance::default(), t).unwrap();
}

#[test]
fn seed_001_section_6_split_order_ships_as_two_parcels() {
    // Order A×2, B×1, C×1; WH1 {A:1, B:5}, WH2 {A:10, C:3} → Shipment 1 from WH1 (A1, B1),
    // Shipment 2 from WH2 (A1, C1), as the seed draws it.
    let ids = SequentialIds::default();
    let o = order(
        vec![
            LineItemInput::new("A", 2, usd("10.00")),
            LineItemInput::new("B", 1, usd("5.00")),
            LineItemInput::new("C", 1, usd("7.50")),
        ],
        &ids,
    );
    let catalogue = BTreeMap::from([
        (sku("A"), item(1_000, 800)),
        (sku("B"), item(500, 400)),
        (sku("C"), item(3_000, 2_500)),
    ]);
    let wh1 = Warehouse {
        name: "WH1",
        locations: BTreeMap::from([
            (sku("A"), BinLocation::new(1, 0, 4)),
            (sku("B"), BinLocation::new(3, 2, 9)),
        ]),
        items: catalogue.clone(),
        boxes: boxes(),
    };
    let wh2 = Warehouse {
        name: "WH2",
        locations: BTreeMap::from([
            (sku("A"), BinLocation::new(5, 1, 15)),
            (sku("C"), BinLocation::new(2, 0, 2)),
        ]),
        items: catalogue,
        boxes: boxes(),
    };
    let mut ships = vec![
        Shipment::request(o.id, &[(sku("A"), 1), (sku("B"), 1)], &ids, at(10, 0)).unwrap(),
        Shipment::request(o.id, &[(sku("A"), 1), (sku("C"), 1)], &ids, at(10, 0)).unwrap(),
    ];
    let (id1, id2) = (ships[0].id(), ships[1].id());
    assert_ne!(id1, id2);
    prepare(
        find_shipment_mut(&mut ships, id1).unwrap(),
        &wh1,
        &ids,
        at(11, 0),
    );
    prepare(
        find_shipment_mut(&mut ships, id2).unwrap(),
        &wh2,
        &ids,
        at(11, 30),
    );
    assert_eq!(ships[0].package().unwrap().box_id, "S");
    assert_eq!(ships[1].package().unwrap().box_id, "M");
    assert_ne!(ships[0].tracking_number(), ships[1].tracking_number());
    assert_eq!(derive_order_status(&ships), None);

    let mut expect = |id: u64, step: fn(&mut Shipment, Timestamp), t, status| {
        step(find_shipment_mut(&mut ships, id).unwrap(), t);
        assert_eq!(derive_order_status(&ships), status);
    };
    expect(
        id1,
        |s, t| s.hand_to_carrier(t).unwrap(),
        at(12, 0),
        Some(OrderStatus::PartiallyShipped),
    );
    expect(
        id2,
        |s, t| s.hand_to_carrier(t).unwrap(),
        at(12, 5),
        Some(OrderStatus::Shipped),
    );
    expect(
        id1,
        |s, t| s.mark_in_transit(t).unwrap(),
        at(12, 10),
        Some(OrderStatus::Shipped),
    );
    expect(
        id2,
        |s, t| s.mark_in_transit(t).unwrap(),
        at(12, 15),
        Some(OrderStatus::InTransit),
    );
    expect(
        id1,
        |s, t| s.mark_out_for_delivery(t).unwrap(),
        at(13, 0),
        Some(OrderStatus::InTransit),
    );
    expect(
        id1,
        |s, t| s.mark_delivered(t).unwrap(),
        at(13, 30),
        Some(OrderStatus::PartiallyDelivered),
    );
    expect(
        id2,
        |s, t| s.mark_out_for_delivery(t).unwrap(),
        at(14, 0),
        Some(OrderStatus::PartiallyDelivered),
    );
    expect(
        id2,
        |s, t| s.mark_delivered(t).unwrap(),
        at(14, 30),
        Some(OrderStatus::Delivered),
    );

    // Unknown shipment ids are refused.
    assert_eq!(
        find_shipment_mut(&mut ships, 4242).unwrap_err().code(),
        "not_found"
    );

    // Both units of A came in different parcels; both may be returned.
    let ctx = ReturnContext {
        order: &o,
        shipments: &ships,
        returns: &[],
        policy: &ReturnPolicy::default(),
    };
    let r = ReturnCase::request(&ctx, &[(1, 2)], &ids, at(15, 0)).unwrap();
    assert_eq!(r.refund_lines(), vec![(1, 2)]);
}

#[test]
fn seed_004_stages_5_to_8_pick_pack_handoff_delivery() {
    // Pick list for ORD-2026-05-06-…: Aisle B Shelf 3 Bin 12 WATER-5L × 2, Aisle D Shelf 1
    // Bin 05 PHONE-X × 1 (aisle A = 0).
    let ids = SequentialIds::default();
    let o = order(
        vec![
            LineItemInput::new("WATER-5L", 2, usd("4.99")),
            LineItemInput::new("PHONE-X", 1, usd("40.02")),
        ],
        &ids,
    );
    let wh = Warehouse {
        name: "WH-NY",
        locations: BTreeMap::from([
            (sku("WATER-5L"), BinLocation::new(1, 3, 12)),
            (sku("PHONE-X"), BinLocation::new(3, 1, 5)),
        ]),
        items: BTreeMap::from([
            (sku("WATER-5L"), item(5_500, 5_100)),
            (sku("PHONE-X"), item(900, 400)),
        ]),
        boxes: boxes(),
    };
    let mut s = Shipment::request(
        o.id,
        &[(sku("WATER-5L"), 2), (sku("PHONE-X"), 1)],
        &ids,
        at(14, 0),
    )
    .unwrap();
    prepare(&mut s, &wh, &ids, at(14, 10));
    // Select the right box size: 11,900 cm3 and 10,600 g need the large box.
    let p = s.package().unwrap();
    assert_eq!((p.box_id.as_str(), p.expected_grams), ("L", 10_750));
    assert_eq!(s.status(), FulfillmentStatus::ReadyForShipment);
    // Driver D1 scans the barcode at WH-NY: handoff, then in transit, then delivered.
    s.hand_to_carrier(at(14, 20)).unwrap();
    assert_eq!(
        derive_order_status(std::slice::from_ref(&s)),
        Some(OrderStatus::Shipped)
    );
    s.mark_in_transit(at(14, 25)).unwrap();
    assert_eq!(
        derive_order_status(std::slice::from_ref(&s)),
        Some(OrderStatus::InTransit)
    );
    s.mark_out_for_delivery(at(15, 0)).unwrap();
    s.mark_delivered(at(15, 30)).unwrap();
    assert_eq!(
        derive_order_status(std::slice::from_ref(&s)),
        Some(OrderStatus::Delivered)
    );
    assert_eq!(s.entered_at(FulfillmentStatus::Delivered), Some(at(15, 30)));
}

#[test]
fn return_after_delivery_end_to_end() {
    let ids = SequentialIds::default();
    let o = order(
        vec![
            LineItemInput::new("MUG", 4, usd("8.00")),
            LineItemInput::new("SOCKS", 1, usd("3.00")),
        ],
        &ids,
    );
    let wh = Warehouse {
        name: "WH1",
        locations: BTreeMap::from([
            (sku("MUG"), BinLocation::new(0, 1, 3)),
            (sku("SOCKS"), BinLocation::new(4, 0, 8)),
        ]),
        items: BTreeMap::from([(sku("MUG"), item(600, 350)), (sku("SOCKS"), item(200, 80))]),
        boxes: boxes(),
    };
    let mut s =
        Shipment::request(o.id, &[(sku("MUG"), 4), (sku("SOCKS"), 1)], &ids, at(9, 30)).unwrap();
    prepare(&mut s, &wh, &ids, at(10, 0));
    s.hand_to_carrier(at(11, 0)).unwrap();
    s.mark_in_transit(at(11, 5)).unwrap();
    s.mark_out_for_delivery(at(12, 0)).unwrap();
    s.mark_delivered(at(13, 0)).unwrap();
    let ships = vec![s];
    let policy = ReturnPolicy {
        window: Duration::days(14),
        non_returnable: BTreeSet::from([sku("SOCKS")]),
    };
    let day = |n| at(13, 0).plus(Duration::days(n));

    let ctx = |returns| ReturnContext {
        order: &o,
        shipments: &ships,
        returns,
        policy: &policy,
    };

    // Socks are final sale; more mugs than delivered are refused; 3 mugs are fine.
    let e = ReturnCase::request(&ctx(&[]), &[(2, 1)], &ids, day(2)).unwrap_err();
    assert_eq!(e.code(), "return_not_eligible");
    let e = ReturnCase::request(&ctx(&[]), &[(1, 5)], &ids, day(2)).unwrap_err();
    assert_eq!(e.code(), "return_not_eligible");
    let mut r = ReturnCase::request(&ctx(&[]), &[(1, 3)], &ids, day(2)).unwrap();
    r.start_review(day(3)).unwrap();
    let mut ledger = Refunded::default();
    // 4 mugs at 8.00 + 8 % tax = 34.56 for the line; 3 of 4 units give back 25.92.
    let fixed = r
        .approve(&ctx(&[]), &ledger, false, day(3))
        .unwrap()
        .clone();
    assert_eq!(fixed.total, usd("25.92"));
    for b in ReturnBranch::ALL {
        r.complete_branch(b, day(3)).unwrap();
    }
    r.mark_shipped(day(4)).unwrap();
    r.receive(day(6)).unwrap();
    r.start_inspection(day(6)).unwrap();
    let back = r.accept_items(day(6)).unwrap();
    assert_eq!(
        (back[0].quantity, back[0].condition),
        (3, StockCondition::Sellable)
    );
    assert_eq!(r.process_refund(&mut ledger, day(7)).unwrap(), fixed);
    assert_eq!(ledger.units.get(&1), Some(&3));
    r.complete(day(7)).unwrap();
    assert_eq!(r.status(), ReturnStatus::Completed);
    assert_eq!(r.order_status(), OrderStatus::Refunded);

    // One mug left to return (worth the remaining 8.64); past the window nothing may be returned.
    let previous = vec![r];
    let e = ReturnCase::request(&ctx(&previous), &[(1, 2)], &ids, day(8)).unwrap_err();
    assert_eq!(e.code(), "return_not_eligible");
    let mut last = ReturnCase::request(&ctx(&previous), &[(1, 1)], &ids, day(8)).unwrap();
    last.start_review(day(8)).unwrap();
    let rest = last
        .approve(&ctx(&previous), &ledger, false, day(8))
        .unwrap();
    assert_eq!(rest.total, usd("8.64"));
    let e = ReturnCase::request(&ctx(&previous), &[(1, 1)], &ids, day(15)).unwrap_err();
    assert_eq!(e.code(), "return_not_eligible");
}
