//! Pricing scenarios across modules: a host loads its pricing context from JSON, places seed
//! 004's order, and refunds it in pieces after storing and reloading it.

// Makes the helpers below test code too, so `allow-unwrap-in-tests` covers their unwraps.
#![cfg(test)]

use oms_core::lifecycle::Actor;
use oms_core::money::{Currency, Money};
use oms_core::order::{AddressInput, Customer, LineItemInput, Order, OrderDraft};
use oms_core::pricing::{
    charged_total, get_total_price, place_pricing, refund_preview, PricingContext, RefundRequest,
    Refunded,
};
use oms_core::time::{Clock, Duration, ManualClock, SequentialIds, Timestamp};
use oms_core::OmsError;

fn usd(s: &str) -> Money {
    Money::parse(s, Currency::USD).unwrap()
}

const CONTEXT: &str = r#"{
    "promotions": [
        {"code": "WELCOME5", "kind": {"type": "fixed_amount", "amount": {"amount": "5.00", "currency": "USD"}},
         "min_subtotal": {"amount": "50.00", "currency": "USD"}, "stackable": true,
         "valid_from": 1777593600000, "valid_until": 1780272000000},
        {"code": "WATERDAY", "kind": {"type": "percentage", "percent": "15"},
         "skus": ["WATER-5L"], "stackable": true},
        {"code": "VIP", "kind": {"type": "percentage", "percent": "20"}}
    ],
    "tax": {"US": {"standard": "0.04", "grocery": "0"}, "US-NY": {"standard": "0.08875"}},
    "tax_mode": "exclusive",
    "tax_rounding": "per_line",
    "shipping": {"type": "per_weight",
                 "base": {"amount": "4.00", "currency": "USD"},
                 "per_kg": {"amount": "0.60", "currency": "USD"},
                 "free_over": {"amount": "1000.00", "currency": "USD"}}
}"#;

fn seed_order(codes: &[&str], clock: &ManualClock) -> Order {
    let mut water = LineItemInput::new("WATER-5L", 2, usd("4.99"));
    water.capacity_units = 2;
    water.weight_grams = 5_200;
    water.tax_class = "grocery".into();
    let mut phone = LineItemInput::new("PHONE-X", 1, usd("399.00"));
    phone.weight_grams = 450;
    let draft = OrderDraft {
        customer: Customer {
            id: "c-42".into(),
            email: "grace@example.com".into(),
            name: "Grace".into(),
        },
        shipping_address: AddressInput {
            name: "Grace".into(),
            line1: "350 Fifth Ave".into(),
            city: "New York".into(),
            region: "NY".into(),
            postal_code: "10118".into(),
            country: "US".into(),
            location: Some((40.748, -73.985)),
            ..AddressInput::default()
        },
        billing_address: None,
        currency: Currency::USD,
        lines: vec![water, phone],
        promo_codes: codes.iter().map(|c| (*c).to_owned()).collect(),
    };
    Order::create(
        &draft,
        &Actor::Customer("c-42".into()),
        clock,
        &SequentialIds::default(),
    )
    .unwrap()
}

#[test]
fn seed_order_priced_stored_and_refunded_in_pieces() {
    let ctx: PricingContext = serde_json::from_str(CONTEXT).unwrap();
    let clock = ManualClock::new(Timestamp::from_civil(2026, 5, 6, 14, 0, 0));
    let mut order = seed_order(&["WATERDAY", "WELCOME5"], &clock);
    let price = place_pricing(&mut order, &ctx, clock.now()).unwrap();

    // 9.98 − 15 % (1.50) = 8.48 water; 5.00 off split 8.48 : 399.00 → 0.10 and 4.90.
    assert_eq!(price.subtotal, usd("408.98"));
    assert_eq!(price.discount, usd("6.50"));
    // Grocery is zero-rated (found at the "US" fallback); the phone pays NY's 8.875 % of 394.10.
    assert_eq!(price.tax, usd("34.98"));
    // 10.85 kg → 11 started kilograms: 4.00 + 11 × 0.60.
    assert_eq!(price.shipping, usd("10.60"));
    assert_eq!(price.total, usd("448.06"));
    assert_eq!(charged_total(&order).unwrap(), price.total);

    // The host stores the order; refunds work from what was stored, even once promotions have
    // expired and the context has changed.
    let stored = serde_json::to_string(&order).unwrap();
    let reloaded: Order = serde_json::from_str(&stored).unwrap();
    assert_eq!(reloaded, order);
    clock.advance(Duration::days(60));
    assert_eq!(
        get_total_price(&reloaded, &ctx, clock.now())
            .unwrap_err()
            .code(),
        "promo_expired"
    );

    let mut done = Refunded::default();
    let mut refunded = Money::zero(Currency::USD);
    for request in [
        RefundRequest {
            lines: vec![(1, 1)],
            include_shipping: false,
        },
        RefundRequest {
            lines: vec![(2, 1)],
            include_shipping: false,
        },
        RefundRequest {
            lines: vec![(1, 1)],
            include_shipping: true,
        },
    ] {
        let preview = refund_preview(&reloaded, &done, &request).unwrap();
        done.record(&preview).unwrap();
        refunded = refunded.checked_add(&preview.total).unwrap();
    }
    assert_eq!(done.amounts[&1], usd("8.38"));
    assert_eq!(done.amounts[&2], usd("429.08"));
    assert_eq!(refunded, price.total);
    let more = refund_preview(
        &reloaded,
        &done,
        &RefundRequest {
            lines: vec![],
            include_shipping: true,
        },
    );
    assert!(matches!(more, Err(OmsError::RefundExceedsCharge { .. })));
}

/// Every class of bad pricing input gets its typed error.
#[test]
fn bad_pricing_input_table() {
    let ctx: PricingContext = serde_json::from_str(CONTEXT).unwrap();
    let clock = ManualClock::new(Timestamp::from_civil(2026, 5, 6, 14, 0, 0));
    let early = Timestamp::from_civil(2026, 4, 1, 0, 0, 0);
    let late = Timestamp::from_civil(2026, 7, 1, 0, 0, 0);
    let now = clock.now();
    let mut no_tax = ctx.clone();
    no_tax.tax.rates.remove("US");
    let negative_rate = PricingContext {
        tax: ctx
            .tax
            .clone()
            .with_rate("US-NY", "standard", "-0.01".parse().unwrap()),
        ..ctx.clone()
    };
    let mut euro_shipping = ctx.clone();
    euro_shipping.shipping =
        serde_json::from_str(r#"{"type": "flat", "amount": {"amount": "5", "currency": "EUR"}}"#)
            .unwrap();
    let cases: Vec<(&str, Vec<&str>, &PricingContext, Timestamp, &str)> = vec![
        ("unknown code", vec!["NOPE"], &ctx, now, "promo_unknown"),
        (
            "expired code",
            vec!["WELCOME5"],
            &ctx,
            late,
            "promo_expired",
        ),
        (
            "code not yet valid",
            vec!["WELCOME5"],
            &ctx,
            early,
            "promo_not_yet_valid",
        ),
        (
            "non-stacking pair",
            vec!["WATERDAY", "VIP"],
            &ctx,
            now,
            "promo_not_stackable",
        ),
        (
            "code entered twice",
            vec!["VIP", "vip"],
            &ctx,
            now,
            "promo_not_applicable",
        ),
        ("missing tax rate", vec![], &no_tax, now, "tax_rate_missing"),
        (
            "negative tax rate",
            vec![],
            &negative_rate,
            now,
            "invalid_field",
        ),
        (
            "mixed currencies",
            vec![],
            &euro_shipping,
            now,
            "currency_mismatch",
        ),
    ];
    for (what, codes, c, at, expected) in cases {
        let order = seed_order(&codes, &clock);
        let got = get_total_price(&order, c, at).unwrap_err();
        assert_eq!(got.code(), expected, "{what}: {got}");
    }
    // Not applicable: below the minimum subtotal.
    let mut small = seed_order(&["WELCOME5"], &clock);
    small.remove_line_item(2, now).unwrap();
    let e = get_total_price(&small, &ctx, now).unwrap_err();
    assert_eq!(e.code(), "promo_not_applicable");
    // A refund of an order that was never priced, or of a line it does not have.
    let unpriced = seed_order(&[], &clock);
    let ask = |lines: Vec<(u32, u32)>| RefundRequest {
        lines,
        include_shipping: false,
    };
    let none = Refunded::default();
    assert_eq!(
        refund_preview(&unpriced, &none, &ask(vec![(1, 1)]))
            .unwrap_err()
            .code(),
        "missing_field"
    );
    let mut priced = seed_order(&[], &clock);
    place_pricing(&mut priced, &ctx, now).unwrap();
    assert_eq!(
        refund_preview(&priced, &none, &ask(vec![(3, 1)]))
            .unwrap_err()
            .code(),
        "line_not_found"
    );
    assert_eq!(
        refund_preview(&priced, &none, &ask(vec![(1, 3)]))
            .unwrap_err()
            .code(),
        "refund_exceeds_charge"
    );
}
