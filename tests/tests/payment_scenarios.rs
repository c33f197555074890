//! Seed scenarios for payments and fraud screening: every path of seed 000 §2 through the
//! processor and a scripted gateway, and seed 004 stages 2 (authorize), 3 (fraud) and 8
//! (capture on delivery).

// Test harness code outside `#[test]` functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use oms_core::fraud::{
    assess, CustomerHistory, FraudConfig, FraudInput, FraudReview, FraudVerdict,
    InMemoryFraudSignals, ReviewStatus,
};
use oms_core::lifecycle::{Actor, OrderStatus};
use oms_core::money::{Currency, Money};
use oms_core::order::{Address, AddressInput, Customer, LineItemInput, Order, OrderDraft};
use oms_core::payment::{
    mermaid, CapturePolicy, FakeGateway, FakeStep, GatewayOp, Payment, PaymentProcessor,
    PaymentStatus, RetryPolicy, SeededJitter, TRANSITIONS,
};
use oms_core::time::{Clock, Duration, ManualClock, SequentialIds, Timestamp};

fn usd(s: &str) -> Money {
    Money::parse(s, Currency::USD).unwrap()
}

struct World {
    gateway: FakeGateway,
    clock: ManualClock,
    jitter: SeededJitter,
}

impl World {
    fn new() -> Self {
        World {
            gateway: FakeGateway::new(),
            clock: ManualClock::new(Timestamp::from_civil(2026, 5, 6, 13, 0, 0)),
            jitter: SeededJitter { seed: 2026 },
        }
    }
    fn processor(&self) -> PaymentProcessor<'_> {
        PaymentProcessor::new(
            &self.gateway,
            &self.clock,
            &self.clock,
            &self.jitter,
            RetryPolicy::default(),
        )
        .unwrap()
    }
}

fn payment() -> Payment {
    Payment::new(
        "pay-001",
        "ORD-2026-05-06-001",
        "card_XXXX-1234",
        usd("50.00"),
    )
    .unwrap()
}

/// The payment's path as seed 000 §2 state names.
fn seed_path(p: &Payment) -> Vec<&'static str> {
    let mut path = vec![PaymentStatus::Initiated.seed_name().unwrap()];
    path.extend(p.history().iter().map(|t| t.to.seed_name().unwrap()));
    path
}

#[test]
fn seed_000_happy_path() {
    let w = World::new();
    let pr = w.processor();
    let p = pr.authorize(&payment()).unwrap().into_result().unwrap();
    let p = pr
        .capture(&p, usd("50.00"), true)
        .unwrap()
        .into_result()
        .unwrap();
    let mut p = p;
    p.complete(w.clock.now()).unwrap();
    assert_eq!(
        seed_path(&p),
        [
            "Payment_Initiated",
            "Authorizing",
            "Authorized",
            "AwaitingCapture",
            "Capturing",
            "Captured",
            "Payment_Completed"
        ]
    );
    let events: Vec<&str> = p.history().iter().map(|t| t.event.as_str()).collect();
    assert_eq!(
        events,
        [
            "send_authorization",
            "auth_success",
            "hold_placed",
            "capture_triggered",
            "capture_success",
            "complete"
        ]
    );
}

#[test]
fn seed_000_declined_path() {
    let w = World::new();
    w.gateway.script([FakeStep::Decline]);
    let done = w.processor().authorize(&payment()).unwrap();
    assert_eq!(
        done.clone().into_result().unwrap_err().code(),
        "payment_declined"
    );
    let mut p = done.payment;
    p.fail_declined("customer notified", w.clock.now()).unwrap();
    assert_eq!(
        seed_path(&p),
        [
            "Payment_Initiated",
            "Authorizing",
            "Declined",
            "Payment_Failed"
        ]
    );
    assert!(w.gateway.ledger().is_empty(), "a decline moves no money");
}

#[test]
fn seed_000_capture_failed_path_with_gateway_timeouts() {
    let w = World::new();
    // The authorization times out with the hold placed behind it; the capture is refused.
    w.gateway
        .script([FakeStep::TimeoutAfterSuccess, FakeStep::CaptureFailure]);
    let pr = w.processor();
    let p = pr.authorize(&payment()).unwrap().into_result().unwrap();
    let done = pr.capture(&p, usd("50.00"), true).unwrap();
    let mut p = done.payment;
    assert_eq!(p.status(), PaymentStatus::CaptureFailed);
    p.escalate("escalated to finance", w.clock.now()).unwrap();
    assert_eq!(
        seed_path(&p),
        [
            "Payment_Initiated",
            "Authorizing",
            "Authorized",
            "AwaitingCapture",
            "Capturing",
            "CaptureFailed",
            "Payment_Failed"
        ]
    );
    assert_eq!(w.gateway.total(GatewayOp::Authorize), 5000, "held once");
    assert_eq!(w.gateway.total(GatewayOp::Capture), 0);
    assert_eq!(p.voided(), usd("50.00"), "the failed hold is released");
}

fn address() -> Address {
    Address::new(&AddressInput {
        name: "Customer".into(),
        line1: "350 5th Ave".into(),
        city: "New York".into(),
        region: "NY".into(),
        postal_code: "10118".into(),
        country: "US".into(),
        location: Some((40.71, -74.00)),
        ..AddressInput::default()
    })
    .unwrap()
}

fn fraud_input(at: Timestamp) -> FraudInput {
    FraudInput {
        customer_id: "cust-1".into(),
        order_value: usd("50.00"),
        shipping_address: address(),
        payment_method: "card_XXXX-1234".into(),
        device_fingerprint: Some("device-1".into()),
        at,
    }
}

#[test]
fn seed_004_stages_2_3_8_capture_on_delivery() {
    let w = World::new();
    let pr = w.processor();
    let signals = InMemoryFraudSignals::new();
    signals.set_history(
        "cust-1",
        CustomerHistory {
            previous_orders: 4,
            chargebacks: 0,
            average_order_value: Some(usd("45.00")),
        },
    );
    signals.add_known_method("cust-1", "card_XXXX-1234");

    // Stage 2: "Hold $50.00 from card XXXX-1234" → AUTH_CODE, HOLD $50.00.
    let p = pr.authorize(&payment()).unwrap().into_result().unwrap();
    let auth = p.gateway_reference().unwrap().to_owned();
    assert_eq!(w.gateway.hold(&auth), Some((5000, 0, 0, 0)));
    assert_eq!(p.status(), PaymentStatus::AwaitingCapture);

    // Stage 3: fraud check, approved.
    let decision = assess(
        &fraud_input(w.clock.now()),
        &signals,
        &FraudConfig::default(),
    )
    .unwrap();
    assert_eq!(decision.verdict, FraudVerdict::Approve);
    assert!(decision.score < rust_decimal::Decimal::new(5, 1));

    // Stages 4–7 happen elsewhere; the money stays on hold until delivery.
    let policy = CapturePolicy::OnDelivery;
    for status in [
        OrderStatus::Allocated,
        OrderStatus::Picked,
        OrderStatus::Packed,
        OrderStatus::InTransit,
    ] {
        assert!(!policy.due(status), "{status}");
    }
    w.clock.advance(Duration::hours(2));

    // Stage 8: delivered → "$50.00 is officially deducted from the card".
    assert!(policy.due(OrderStatus::Delivered));
    let mut p = pr
        .capture(&p, p.capturable().unwrap(), true)
        .unwrap()
        .into_result()
        .unwrap();
    p.complete(w.clock.now()).unwrap();
    assert_eq!(p.status(), PaymentStatus::Completed);
    assert_eq!(p.captured(), usd("50.00"));
    assert_eq!(w.gateway.hold(&auth), Some((5000, 5000, 0, 0)));
    assert_eq!(w.gateway.ledger().len(), 2, "one hold, one capture");
}

#[test]
fn seed_004_stage_3_reject_voids_the_hold() {
    let w = World::new();
    let pr = w.processor();
    let signals = InMemoryFraudSignals::new();
    signals.set_history(
        "cust-1",
        CustomerHistory {
            previous_orders: 0,
            chargebacks: 2,
            average_order_value: None,
        },
    );
    signals.blacklist(&address());
    signals.flag_device("device-1");
    let p = pr.authorize(&payment()).unwrap().into_result().unwrap();
    let decision = assess(
        &fraud_input(w.clock.now()),
        &signals,
        &FraudConfig::default(),
    )
    .unwrap();
    // 0.05 new customer + 0.15 chargebacks + 0.30 address + 0.05 new card + 0.20 device.
    assert_eq!(decision.score.to_string(), "0.7500");
    assert_eq!(decision.verdict, FraudVerdict::ManualReview);

    signals.record_order("cust-1", Some("device-1"), &address(), w.clock.now());
    signals.record_order("cust-1", Some("device-1"), &address(), w.clock.now());
    let later = w.clock.now().plus(Duration::minutes(5));
    let decision = assess(&fraud_input(later), &signals, &FraudConfig::default()).unwrap();
    assert_eq!(decision.verdict, FraudVerdict::Reject);
    assert_eq!(
        decision.ensure_not_rejected().unwrap_err().code(),
        "fraud_rejected"
    );
    let explained: Vec<String> = decision
        .contributions
        .iter()
        .map(|c| format!("{}={}", c.signal, c.contribution))
        .collect();
    assert_eq!(
        explained,
        [
            "new_customer=0.0500",
            "chargebacks=0.1500",
            "order_value=0.0000",
            "blacklisted_address=0.3000",
            "new_payment_method=0.0500",
            "flagged_device=0.2000",
            "velocity=0.1000"
        ]
    );

    // Auto-cancel: the hold is released, nothing is charged.
    let p = pr.void(&p).unwrap().into_result().unwrap();
    assert_eq!(p.status(), PaymentStatus::Voided);
    assert_eq!(w.gateway.total(GatewayOp::Capture), 0);
    assert_eq!(
        w.gateway.hold(p.gateway_reference().unwrap()),
        Some((5000, 0, 0, 5000))
    );
}

#[test]
fn seed_004_manual_review_approved_by_staff() {
    let w = World::new();
    let signals = InMemoryFraudSignals::new();
    signals.blacklist(&address());
    signals.flag_device("device-1");
    let decision = assess(
        &fraud_input(w.clock.now()),
        &signals,
        &FraudConfig::default(),
    )
    .unwrap();
    assert_eq!(decision.verdict, FraudVerdict::ManualReview);
    let mut review = FraudReview::open("ORD-2026-05-06-001", decision).unwrap();
    assert_eq!(
        review
            .approve(&Actor::Customer("cust-1".into()), "trust me", w.clock.now())
            .unwrap_err()
            .code(),
        "forbidden"
    );
    review
        .approve(
            &Actor::Staff("analyst-3".into()),
            "verified by phone",
            w.clock.now(),
        )
        .unwrap();
    assert_eq!(review.status(), ReviewStatus::Approved);
}

#[test]
fn hold_expires_after_seven_days() {
    let w = World::new();
    let pr = w.processor();
    let p = pr.authorize(&payment()).unwrap().into_result().unwrap();
    w.clock.advance(Duration::days(7));
    let err = pr.capture(&p, usd("50.00"), true).unwrap_err();
    assert_eq!(err.code(), "authorization_expired");
    let mut p = p;
    p.expire(w.clock.now()).unwrap();
    assert_eq!(p.status(), PaymentStatus::Expired);
    assert_eq!(p.voided(), usd("50.00"));
}

#[test]
fn mermaid_draws_every_seed_edge() {
    let text = mermaid();
    for (from, event, to) in &TRANSITIONS[..oms_core::payment::SEED_EDGES] {
        let line = format!("{from:?} --> {to:?}: {event}");
        assert!(text.contains(&line), "missing {line}");
    }
}

#[test]
fn seed_004_order_is_screened_from_its_own_fields() {
    let w = World::new();
    let shipping = AddressInput {
        name: "Customer".into(),
        line1: "350 5th Ave".into(),
        city: "New York".into(),
        region: "NY".into(),
        postal_code: "10118".into(),
        country: "US".into(),
        location: Some((40.71, -74.00)),
        ..AddressInput::default()
    };
    let draft = OrderDraft {
        customer: Customer::new("cust-1", "c@example.com", "C").unwrap(),
        shipping_address: shipping,
        billing_address: None,
        currency: Currency::USD,
        lines: vec![
            LineItemInput::new("WATER-5L", 2, usd("5.00")),
            LineItemInput::new("PHONE-X", 1, usd("40.00")),
        ],
        promo_codes: Vec::new(),
    };
    let order = Order::create(
        &draft,
        &Actor::Customer("cust-1".into()),
        &w.clock,
        &SequentialIds::default(),
    )
    .unwrap();
    let value = order.subtotal().unwrap();
    assert_eq!(value, usd("50.00"));
    let input = FraudInput::for_order(&order, value, "card_XXXX-1234", None, w.clock.now());
    assert_eq!(input.customer_id, "cust-1");
    let signals = InMemoryFraudSignals::new();
    // Blacklisting the same door written differently still matches.
    signals.blacklist(
        &Address::new(&AddressInput {
            name: "Someone Else".into(),
            line1: "350  5TH AVE".into(),
            city: "new york".into(),
            region: "ny".into(),
            postal_code: "10118".into(),
            country: "US".into(),
            ..AddressInput::default()
        })
        .unwrap(),
    );
    let decision = assess(&input, &signals, &FraudConfig::default()).unwrap();
    assert_eq!(decision.score.to_string(), "0.4000");
    assert_eq!(decision.verdict, FraudVerdict::Approve);
    assert_eq!(decision.at, w.clock.now());
}
