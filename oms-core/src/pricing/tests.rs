use super::*;
use crate::lifecycle::{Actor, OrderStatus};
use crate::order::{AddressInput, Customer, LineItemInput, OrderDraft, Sku};
use crate::time::{Duration, ManualClock, SequentialIds};
use rust_decimal_macros::dec;

fn usd(s: &str) -> Money {
    Money::parse(s, Currency::USD).unwrap()
}

fn now() -> Timestamp {
    Timestamp::from_civil(2026, 5, 6, 9, 0, 0)
}

fn order_in(currency: Currency, region: &str, lines: Vec<LineItemInput>, codes: &[&str]) -> Order {
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
            region: region.into(),
            postal_code: "10001".into(),
            country: "US".into(),
            ..AddressInput::default()
        },
        billing_address: None,
        currency,
        lines,
        promo_codes: codes.iter().map(|c| (*c).to_owned()).collect(),
    };
    let clock = ManualClock::new(now());
    Order::create(&draft, &Actor::System, &clock, &SequentialIds::default()).unwrap()
}

fn order(lines: Vec<LineItemInput>, codes: &[&str]) -> Order {
    order_in(Currency::USD, "NY", lines, codes)
}

/// WATER-5L 2 × 4.99 and PHONE-X 1 × 399.00 (seed 004's order).
fn seed_lines() -> Vec<LineItemInput> {
    vec![
        LineItemInput::new("WATER-5L", 2, usd("4.99")),
        LineItemInput::new("PHONE-X", 1, usd("399.00")),
    ]
}

fn ctx() -> PricingContext {
    PricingContext {
        tax: TaxTable::new().with_rate("US", "standard", dec!(0)),
        ..PricingContext::default()
    }
}

fn ctx_with(promos: Vec<Promotion>) -> PricingContext {
    PricingContext {
        promotions: promos,
        ..ctx()
    }
}

fn price(o: &Order, c: &PricingContext) -> OmsResult<PriceBreakdown> {
    get_total_price(o, c, now())
}

fn code(r: OmsResult<PriceBreakdown>) -> &'static str {
    r.unwrap_err().code()
}

fn line_field(p: &PriceBreakdown, f: fn(&LineCharges) -> Money) -> Vec<Money> {
    p.lines.iter().map(|l| f(&l.charges)).collect()
}

/// Every order amount is the sum of its line parts, and each line adds up.
fn assert_balanced(p: &PriceBreakdown) {
    let c = p.currency;
    let sum = |f: fn(&LineCharges) -> Money| Money::checked_sum(c, &line_field(p, f)).unwrap();
    assert_eq!(sum(|l| l.subtotal), p.subtotal);
    assert_eq!(sum(|l| l.discount), p.discount);
    assert_eq!(sum(|l| l.tax), p.tax);
    assert_eq!(sum(|l| l.shipping), p.shipping);
    assert_eq!(sum(|l| l.total), p.total);
    let taxed = match p.tax_mode {
        TaxMode::Exclusive => p.tax,
        TaxMode::Inclusive => Money::zero(c),
    };
    let expect = p
        .subtotal
        .checked_sub(&p.discount)
        .unwrap()
        .checked_add(&taxed)
        .unwrap()
        .checked_add(&p.shipping)
        .unwrap();
    assert_eq!(expect, p.total);
}

// ---- subtotal and line discounts ---------------------------------------------------------

#[test]
fn subtotal_line_discount_and_no_extras() {
    let mut lines = seed_lines();
    lines[1].discount = Some(usd("50.00"));
    let p = price(&order(lines, &[]), &ctx()).unwrap();
    assert_eq!(p.subtotal, usd("408.98"));
    assert_eq!(p.discount, usd("50.00"));
    assert_eq!(line_field(&p, |c| c.discount), [usd("0"), usd("50.00")]);
    assert_eq!(p.tax, usd("0"));
    assert_eq!(p.shipping, usd("0"));
    assert_eq!(p.total, usd("358.98"));
    assert_eq!(p.lines[0].charges.quantity, 2);
    assert_balanced(&p);
}

#[test]
fn tampered_lines_are_typed_errors() {
    let mut o = order(seed_lines(), &[]);
    o.lines[0].discount = usd("100.00");
    assert_eq!(code(price(&o, &ctx())), "invalid_field");
    let mut o = order(seed_lines(), &[]);
    o.lines[0].unit_price = Money::parse("1", Currency::EUR).unwrap();
    assert_eq!(code(price(&o, &ctx())), "currency_mismatch");
    let mut o = order(seed_lines(), &[]);
    o.lines[0].unit_price = usd("-1");
    assert_eq!(code(price(&o, &ctx())), "invalid_price");
    let mut o = order(seed_lines(), &[]);
    o.lines.clear();
    assert_eq!(code(price(&o, &ctx())), "missing_field");
}

// ---- promotions --------------------------------------------------------------------------

#[test]
fn percentage_promotion_is_prorated_by_largest_remainder() {
    let o = order(seed_lines(), &["SPRING10"]);
    let p = price(
        &o,
        &ctx_with(vec![Promotion::percentage("SPRING10", dec!(10))]),
    )
    .unwrap();
    assert_eq!(p.discount, usd("40.90"));
    assert_eq!(line_field(&p, |c| c.discount), [usd("1.00"), usd("39.90")]);
    assert_eq!(p.promotions.len(), 1);
    assert_eq!(p.promotions[0].discount, usd("40.90"));
    assert_eq!(p.total, usd("368.08"));
    assert_balanced(&p);
}

#[test]
fn fixed_amount_promotion_is_capped_at_the_merchandise() {
    let o = order(vec![LineItemInput::new("A", 1, usd("3.00"))], &["BIG"]);
    let p = price(
        &o,
        &ctx_with(vec![Promotion::fixed_amount("BIG", usd("5.00"))]),
    )
    .unwrap();
    assert_eq!(p.discount, usd("3.00"));
    assert_eq!(p.total, usd("0"));
    let o = order(seed_lines(), &["TEN"]);
    let p = price(
        &o,
        &ctx_with(vec![Promotion::fixed_amount("TEN", usd("10"))]),
    )
    .unwrap();
    assert_eq!(p.discount, usd("10.00"));
    assert_eq!(p.total, usd("398.98"));
    assert_balanced(&p);
}

#[test]
fn free_shipping_promotion_waives_the_charge() {
    let mut c = ctx_with(vec![Promotion::free_shipping("SHIPFREE")]);
    c.shipping = ShippingRate::Flat {
        amount: usd("7.50"),
        free_over: None,
    };
    let p = price(&order(seed_lines(), &[]), &c).unwrap();
    assert_eq!(p.shipping, usd("7.50"));
    let p = price(&order(seed_lines(), &["SHIPFREE"]), &c).unwrap();
    assert_eq!(p.shipping, usd("0"));
    assert!(p.promotions[0].free_shipping);
    assert_eq!(p.total, usd("408.98"));
}

#[test]
fn minimum_subtotal_counts_after_line_discounts() {
    let promo = Promotion::percentage("MIN400", dec!(5)).with_min_subtotal(usd("400"));
    let c = ctx_with(vec![promo]);
    assert!(price(&order(seed_lines(), &["MIN400"]), &c).is_ok());
    let mut lines = seed_lines();
    lines[1].discount = Some(usd("10"));
    let e = price(&order(lines, &["MIN400"]), &c).unwrap_err();
    assert_eq!(e.code(), "promo_not_applicable");
    assert!(e.to_string().contains("below the minimum"), "{e}");
}

#[test]
fn sku_restricted_promotion_touches_only_its_lines() {
    let promo =
        Promotion::percentage("WATER50", dec!(50)).with_skus(vec![Sku::new("WATER-5L").unwrap()]);
    let c = ctx_with(vec![promo]);
    let p = price(&order(seed_lines(), &["WATER50"]), &c).unwrap();
    assert_eq!(line_field(&p, |c| c.discount), [usd("4.99"), usd("0")]);
    assert_balanced(&p);
    let o = order(
        vec![LineItemInput::new("PHONE-X", 1, usd("399"))],
        &["WATER50"],
    );
    let e = price(&o, &c).unwrap_err();
    assert_eq!(e.code(), "promo_not_applicable");
    assert!(e.to_string().contains("WATER-5L"), "{e}");
}

#[test]
fn unknown_expired_and_not_yet_valid_codes() {
    let start = now().plus(Duration::days(1));
    let c = ctx_with(vec![
        Promotion::percentage("OLD", dec!(10)).with_window(None, Some(now())),
        Promotion::percentage("SOON", dec!(10)).with_window(Some(start), None),
        Promotion::percentage("NOW", dec!(10)).with_window(Some(now()), Some(start)),
    ]);
    assert_eq!(
        code(price(&order(seed_lines(), &["NOPE"]), &c)),
        "promo_unknown"
    );
    assert_eq!(
        code(price(&order(seed_lines(), &["OLD"]), &c)),
        "promo_expired"
    );
    assert_eq!(
        code(price(&order(seed_lines(), &["SOON"]), &c)),
        "promo_not_yet_valid"
    );
    // valid_from is inclusive, valid_until exclusive.
    assert!(price(&order(seed_lines(), &["NOW"]), &c).is_ok());
    let later = get_total_price(&order(seed_lines(), &["NOW"]), &c, start);
    assert_eq!(code(later), "promo_expired");
}

#[test]
fn codes_match_without_case_and_once_only() {
    let c = ctx_with(vec![
        Promotion::percentage("Spring10", dec!(10)).stacking(true)
    ]);
    assert!(price(&order(seed_lines(), &["SPRING10"]), &c).is_ok());
    let e = price(&order(seed_lines(), &["spring10", "SPRING10"]), &c).unwrap_err();
    assert_eq!(e.code(), "promo_not_applicable");
    let twice = ctx_with(vec![
        Promotion::percentage("X", dec!(10)),
        Promotion::percentage("x", dec!(20)),
    ]);
    assert_eq!(
        code(price(&order(seed_lines(), &["X"]), &twice)),
        "invalid_field"
    );
}

#[test]
fn non_stacking_codes_are_refused_together() {
    let c = ctx_with(vec![
        Promotion::percentage("A10", dec!(10)),
        Promotion::fixed_amount("B5", usd("5")),
        Promotion::percentage("S1", dec!(1)).stacking(true),
        Promotion::fixed_amount("S2", usd("2")).stacking(true),
    ]);
    let e = price(&order(seed_lines(), &["A10", "B5"]), &c).unwrap_err();
    assert_eq!(
        e,
        OmsError::PromoNotStackable {
            code: "B5".into(),
            other: "A10".into()
        }
    );
    // A stacking code cannot join a non-stacking one either, in any entry order.
    assert_eq!(
        code(price(&order(seed_lines(), &["A10", "S1"]), &c)),
        "promo_not_stackable"
    );
    assert_eq!(
        code(price(&order(seed_lines(), &["S1", "A10"]), &c)),
        "promo_not_stackable"
    );
    assert!(price(&order(seed_lines(), &["S1", "S2"]), &c).is_ok());
}

#[test]
fn application_order_is_fixed_whatever_the_entry_order() {
    let c = ctx_with(vec![
        Promotion::fixed_amount("FIVE", usd("5")).stacking(true),
        Promotion::percentage("TEN", dec!(10)).stacking(true),
        Promotion::percentage("ALSO10", dec!(10)).stacking(true),
        Promotion::free_shipping("SHIP").stacking(true),
    ]);
    let a = price(&order(seed_lines(), &["FIVE", "SHIP", "TEN", "ALSO10"]), &c).unwrap();
    let b = price(&order(seed_lines(), &["ALSO10", "TEN", "SHIP", "FIVE"]), &c).unwrap();
    assert_eq!(a, b);
    let codes: Vec<&str> = a.promotions.iter().map(|p| p.code.as_str()).collect();
    assert_eq!(codes, ["ALSO10", "TEN", "FIVE", "SHIP"]);
    // 408.98 − 40.90 = 368.08; − 36.81 = 331.27; − 5 = 326.27 (percentages compound).
    assert_eq!(a.promotions[1].discount, usd("36.81"));
    assert_eq!(a.total, usd("326.27"));
    assert_balanced(&a);
}

#[test]
fn malformed_promotions_are_typed_errors() {
    let eur = Money::parse("5", Currency::EUR).unwrap();
    let cases = [
        (Promotion::percentage("P", dec!(0)), "invalid_field"),
        (Promotion::percentage("P", dec!(100.5)), "invalid_field"),
        (Promotion::percentage("P", dec!(-5)), "invalid_field"),
        (Promotion::fixed_amount("P", usd("0")), "invalid_field"),
        (Promotion::fixed_amount("P", usd("-1")), "invalid_field"),
        (Promotion::fixed_amount("P", eur), "currency_mismatch"),
        (
            Promotion::free_shipping("P").with_min_subtotal(eur),
            "currency_mismatch",
        ),
        (
            Promotion::free_shipping("P").with_window(Some(now()), Some(now())),
            "invalid_field",
        ),
    ];
    for (promo, expected) in cases {
        let c = ctx_with(vec![promo.clone()]);
        assert_eq!(
            code(price(&order(seed_lines(), &["P"]), &c)),
            expected,
            "{promo:?}"
        );
    }
    let full = ctx_with(vec![Promotion::percentage("P", dec!(100))]);
    assert_eq!(
        price(&order(seed_lines(), &["P"]), &full).unwrap().total,
        usd("0")
    );
}

// ---- tax ---------------------------------------------------------------------------------

#[test]
fn tax_by_jurisdiction_falls_back_to_the_country() {
    let table = TaxTable::new()
        .with_rate("US", "standard", dec!(0.05))
        .with_rate("US-NY", "standard", dec!(0.10))
        .with_rate("US", "reduced", dec!(0.01));
    assert_eq!(table.rate("US-NY", "standard").unwrap(), dec!(0.10));
    assert_eq!(table.rate("US-CA", "standard").unwrap(), dec!(0.05));
    assert_eq!(table.rate("US-NY", "reduced").unwrap(), dec!(0.01));
    assert_eq!(table.rate("US", "standard").unwrap(), dec!(0.05));
    let e = table.rate("FR", "standard").unwrap_err();
    assert_eq!(
        e,
        OmsError::TaxRateMissing {
            jurisdiction: "FR".into(),
            tax_class: "standard".into()
        }
    );
    let c = PricingContext {
        tax: table,
        ..PricingContext::default()
    };
    let p = price(&order(seed_lines(), &[]), &c).unwrap();
    assert_eq!(p.lines[1].tax_rate, dec!(0.10));
    assert_eq!(p.tax, usd("40.90"));
    let p = price(&order_in(Currency::USD, "", seed_lines(), &[]), &c).unwrap();
    assert_eq!(p.tax, usd("20.45"));
}

#[test]
fn missing_rate_exempt_class_and_zero_rate() {
    let mut lines = seed_lines();
    lines[0].tax_class = "food".into();
    let c = PricingContext {
        tax: TaxTable::new().with_rate("US", "standard", dec!(0.1)),
        ..PricingContext::default()
    };
    assert_eq!(
        code(price(&order(lines.clone(), &[]), &c)),
        "tax_rate_missing"
    );
    lines[0].tax_class = EXEMPT_CLASS.into();
    let p = price(&order(lines.clone(), &[]), &c).unwrap();
    assert_eq!(p.lines[0].charges.tax, usd("0"));
    assert_eq!(p.tax, usd("39.90"));
    lines[0].tax_class = "food".into();
    let zero = PricingContext {
        tax: c.tax.clone().with_rate("US", "food", dec!(0)),
        ..PricingContext::default()
    };
    assert_eq!(price(&order(lines, &[]), &zero).unwrap().tax, usd("39.90"));
}

#[test]
fn bad_rates_are_typed_errors() {
    for rate in [dec!(-0.01), dec!(1.01), dec!(20)] {
        let c = PricingContext {
            tax: TaxTable::new().with_rate("US", "standard", rate),
            ..PricingContext::default()
        };
        assert_eq!(
            code(price(&order(seed_lines(), &[]), &c)),
            "invalid_field",
            "{rate}"
        );
    }
}

#[test]
fn tax_inclusive_catalog_extracts_tax_and_keeps_the_total() {
    let lines = vec![
        LineItemInput::new("A", 1, usd("12.00")),
        LineItemInput::new("B", 3, usd("0.99")),
    ];
    let c = PricingContext {
        tax: TaxTable::new().with_rate("US", "standard", dec!(0.20)),
        tax_mode: TaxMode::Inclusive,
        ..PricingContext::default()
    };
    let p = price(&order(lines, &[]), &c).unwrap();
    // 12.00 × 0.2 / 1.2 = 2.00; 2.97 × 0.2 / 1.2 = 0.495 → 0.50 (half-up).
    assert_eq!(line_field(&p, |c| c.tax), [usd("2.00"), usd("0.50")]);
    assert_eq!(p.total, usd("14.97"));
    assert_eq!(p.total, p.subtotal);
    assert_balanced(&p);
}

#[test]
fn per_line_and_per_order_rounding_differ_and_both_balance() {
    let lines: Vec<LineItemInput> = ["A", "B", "C"]
        .iter()
        .map(|s| LineItemInput::new(s, 1, usd("0.33")))
        .collect();
    let mut c = PricingContext {
        tax: TaxTable::new().with_rate("US", "standard", dec!(0.10)),
        ..PricingContext::default()
    };
    let o = order(lines, &[]);
    let per_line = price(&o, &c).unwrap();
    assert_eq!(per_line.tax, usd("0.09"));
    assert_balanced(&per_line);
    c.tax_rounding = TaxRounding::PerOrder;
    let per_order = price(&o, &c).unwrap();
    assert_eq!(per_order.tax, usd("0.10"));
    assert_eq!(
        line_field(&per_order, |c| c.tax),
        [usd("0.04"), usd("0.03"), usd("0.03")]
    );
    assert_balanced(&per_order);
    c.rounding = Rounding::HalfEven;
    c.tax_mode = TaxMode::Inclusive;
    assert_balanced(&price(&o, &c).unwrap());
}

// ---- shipping ----------------------------------------------------------------------------

#[test]
fn shipping_flat_per_weight_and_free_over() {
    let mut lines = seed_lines();
    lines[0].weight_grams = 5_000;
    lines[1].weight_grams = 400;
    let o = order(lines, &[]);
    let mut c = ctx();
    c.shipping = ShippingRate::Flat {
        amount: usd("6.00"),
        free_over: Some(usd("500")),
    };
    let p = price(&o, &c).unwrap();
    assert_eq!(p.shipping, usd("6.00"));
    assert_eq!(line_field(&p, |c| c.shipping), [usd("0.15"), usd("5.85")]);
    assert_balanced(&p);
    // 10.4 kg → 11 started kilograms.
    c.shipping = ShippingRate::PerWeight {
        base: usd("2.00"),
        per_kg: usd("0.50"),
        free_over: None,
    };
    assert_eq!(price(&o, &c).unwrap().shipping, usd("7.50"));
    c.shipping = ShippingRate::Flat {
        amount: usd("6.00"),
        free_over: Some(usd("408.98")),
    };
    assert_eq!(price(&o, &c).unwrap().shipping, usd("0"));
}

#[test]
fn shipping_on_a_free_order_goes_by_quantity() {
    let lines = vec![
        LineItemInput::new("A", 1, usd("0")),
        LineItemInput::new("B", 3, usd("0")),
    ];
    let mut c = ctx();
    c.shipping = ShippingRate::Flat {
        amount: usd("1.00"),
        free_over: None,
    };
    let p = price(&order(lines, &[]), &c).unwrap();
    assert_eq!(line_field(&p, |c| c.shipping), [usd("0.25"), usd("0.75")]);
}

#[test]
fn bad_shipping_rates_are_typed_errors() {
    let eur = Money::parse("5", Currency::EUR).unwrap();
    let cases = [
        (
            ShippingRate::Flat {
                amount: usd("-1"),
                free_over: None,
            },
            "invalid_price",
        ),
        (
            ShippingRate::Flat {
                amount: eur,
                free_over: None,
            },
            "currency_mismatch",
        ),
        (
            ShippingRate::Flat {
                amount: usd("1"),
                free_over: Some(eur),
            },
            "currency_mismatch",
        ),
        (
            ShippingRate::PerWeight {
                base: usd("1"),
                per_kg: usd("-0.01"),
                free_over: None,
            },
            "invalid_price",
        ),
    ];
    for (rate, expected) in cases {
        let c = PricingContext {
            shipping: rate.clone(),
            ..ctx()
        };
        assert_eq!(
            code(price(&order(seed_lines(), &[]), &c)),
            expected,
            "{rate:?}"
        );
    }
}

// ---- placement and serde -----------------------------------------------------------------

#[test]
fn place_pricing_stores_line_charges_once() {
    let mut o = order(seed_lines(), &[]);
    let p = place_pricing(&mut o, &ctx(), now()).unwrap();
    for (line, lp) in o.lines.iter().zip(&p.lines) {
        assert_eq!(line.charges.as_ref(), Some(&lp.charges));
    }
    assert_eq!(charged_total(&o).unwrap(), p.total);
    // Editing clears the stored parts; after fulfillment starts pricing is refused.
    o.set_line_quantity(1, 3, now()).unwrap();
    assert!(o.lines.iter().all(|l| l.charges.is_none()));
    assert_eq!(charged_total(&o).unwrap_err().code(), "missing_field");
    o.status = OrderStatus::Processing;
    assert_eq!(
        place_pricing(&mut o, &ctx(), now()).unwrap_err().code(),
        "order_not_editable"
    );
}

#[test]
fn context_loads_from_json() {
    let json = r#"{
        "promotions": [
            {"code": "TEN", "kind": {"type": "fixed_amount", "amount": {"amount": "10", "currency": "USD"}},
             "valid_until": 1893456000000, "skus": ["PHONE-X"], "stackable": true},
            {"code": "SHIP", "kind": {"type": "free_shipping"}, "stackable": true}
        ],
        "tax": {"US-NY": {"standard": "0.08875"}},
        "tax_mode": "exclusive",
        "tax_rounding": "per_order",
        "shipping": {"type": "flat", "amount": {"amount": "5.00", "currency": "USD"}}
    }"#;
    let c: PricingContext = serde_json::from_str(json).unwrap();
    assert_eq!(c.rounding, Rounding::HalfUp);
    assert_eq!(c.tax_rounding, TaxRounding::PerOrder);
    let p = price(&order(seed_lines(), &["TEN", "SHIP"]), &c).unwrap();
    assert_eq!(p.discount, usd("10.00"));
    assert_eq!(p.shipping, usd("0"));
    let back: PricingContext = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
    let p2: PriceBreakdown = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
    assert_eq!(p2, p);
    assert!(
        serde_json::from_str::<PricingContext>(r#"{"tax": {"US": {"standard": "x"}}}"#).is_err()
    );
}

// ---- refunds -----------------------------------------------------------------------------

fn priced(lines: Vec<LineItemInput>, c: &PricingContext) -> Order {
    let mut o = order(lines, &[]);
    place_pricing(&mut o, c, now()).unwrap();
    o
}

fn req(lines: &[(u32, u32)], include_shipping: bool) -> RefundRequest {
    RefundRequest {
        lines: lines.to_vec(),
        include_shipping,
    }
}

#[test]
fn partial_refunds_follow_the_cumulative_curve() {
    let c = PricingContext {
        shipping: ShippingRate::Flat {
            amount: usd("4.00"),
            free_over: None,
        },
        ..ctx()
    };
    let o = priced(vec![LineItemInput::new("A", 3, usd("3.34"))], &c);
    let mut c3 = o.clone();
    // Make the goods 10.00 for 3 units: refunds of 3.33, 3.34, 3.33.
    c3.lines[0].charges = Some(LineCharges {
        quantity: 3,
        subtotal: usd("10.02"),
        discount: usd("0.02"),
        tax: usd("0"),
        shipping: usd("4.00"),
        total: usd("14.00"),
    });
    let mut done = Refunded::default();
    let mut got = Vec::new();
    for _ in 0..3 {
        let p = refund_preview(&c3, &done, &req(&[(1, 1)], false)).unwrap();
        got.push(p.total);
        done.record(&p).unwrap();
    }
    assert_eq!(got, [usd("3.33"), usd("3.34"), usd("3.33")]);
    assert_eq!(done.units[&1], 3);
    assert_eq!(done.amounts[&1], usd("10.00"));
    let p = refund_preview(&c3, &done, &req(&[], true)).unwrap();
    assert_eq!((p.shipping, p.total), (usd("4.00"), usd("4.00")));
    assert!(p.lines.is_empty());
    done.record(&p).unwrap();
    assert!(done.shipping_refunded);
    // The untouched order refunds all of its goods at once.
    let all = refund_preview(&o, &Refunded::default(), &req(&[(1, 3)], true)).unwrap();
    assert_eq!(all.total, charged_total(&o).unwrap());
}

#[test]
fn refund_errors_are_typed() {
    let o = priced(seed_lines(), &ctx());
    let none = Refunded::default();
    let e = |r: OmsResult<RefundPreview>| r.unwrap_err().code();
    assert_eq!(
        e(refund_preview(&o, &none, &req(&[(9, 1)], false))),
        "line_not_found"
    );
    assert_eq!(
        e(refund_preview(&o, &none, &req(&[(1, 3)], false))),
        "refund_exceeds_charge"
    );
    assert_eq!(
        e(refund_preview(&o, &none, &req(&[(1, 1), (1, 2)], false))),
        "refund_exceeds_charge"
    );
    assert_eq!(
        e(refund_preview(&o, &none, &req(&[(1, 0)], false))),
        "invalid_quantity"
    );
    assert_eq!(
        e(refund_preview(&o, &none, &req(&[], false))),
        "invalid_field"
    );
    let shipped = Refunded {
        shipping_refunded: true,
        ..Refunded::default()
    };
    assert_eq!(
        e(refund_preview(&o, &shipped, &req(&[], true))),
        "refund_exceeds_charge"
    );
    let stranger = Refunded {
        units: [(7, 1)].into_iter().collect(),
        ..Refunded::default()
    };
    assert_eq!(
        e(refund_preview(&o, &stranger, &req(&[(1, 1)], false))),
        "line_not_found"
    );
    let unpriced = order(seed_lines(), &[]);
    let err = refund_preview(&unpriced, &none, &req(&[(1, 1)], false)).unwrap_err();
    assert_eq!(err.code(), "missing_field");
    assert!(err.to_string().contains("never priced"), "{err}");
}

#[test]
fn duplicate_request_lines_merge_and_record_refuses_shipping_twice() {
    let c = PricingContext {
        shipping: ShippingRate::Flat {
            amount: usd("5.00"),
            free_over: None,
        },
        ..ctx()
    };
    let o = priced(seed_lines(), &c);
    let p = refund_preview(
        &o,
        &Refunded::default(),
        &req(&[(2, 1), (1, 1), (1, 1)], true),
    )
    .unwrap();
    let ids: Vec<(u32, u32)> = p.lines.iter().map(|l| (l.line_id, l.quantity)).collect();
    assert_eq!(ids, [(1, 2), (2, 1)]);
    assert_eq!(p.total, charged_total(&o).unwrap());
    let mut done = Refunded::default();
    done.record(&p).unwrap();
    let snapshot = done.clone();
    assert_eq!(done.record(&p).unwrap_err().code(), "refund_exceeds_charge");
    assert_eq!(done, snapshot);
}

// ---- properties --------------------------------------------------------------------------

mod props {
    use super::*;
    use proptest::prelude::*;

    /// One generated pricing situation: an order's lines, its codes, and a context.
    #[derive(Debug, Clone)]
    struct Scenario {
        currency: Currency,
        lines: Vec<LineItemInput>,
        codes: Vec<String>,
        ctx: PricingContext,
    }

    impl Scenario {
        fn order(&self) -> Order {
            let codes: Vec<&str> = self.codes.iter().map(String::as_str).collect();
            order_in(self.currency, "NY", self.lines.clone(), &codes)
        }
    }

    fn currency() -> impl Strategy<Value = Currency> {
        let all = Currency::all();
        prop_oneof![
            Just(Currency::JPY),
            Just(Currency::BHD),
            Just(Currency::USD),
            Just(Currency::CLF),
            (0..all.len()).prop_map(move |i| all[i]),
        ]
    }

    fn rate() -> impl Strategy<Value = Decimal> {
        prop_oneof![1 => Just(Decimal::ZERO), 4 => (0i64..=3_000).prop_map(|r| Decimal::new(r, 4))]
    }

    fn rounding() -> impl Strategy<Value = Rounding> {
        prop_oneof![
            Just(Rounding::HalfUp),
            Just(Rounding::HalfEven),
            Just(Rounding::Down),
            Just(Rounding::Up)
        ]
    }

    type LineSpec = (u32, i64, u32, usize, u32);

    fn line_spec() -> impl Strategy<Value = LineSpec> {
        (
            prop_oneof![1u32..=20, Just(1_000_000)],         // quantity
            prop_oneof![0i64..=2_000_000, Just(1), Just(0)], // unit price, minor units
            0u32..=100,                                      // line discount, % of subtotal
            0usize..3,                                       // tax class
            0u32..=3_000,                                    // grams per unit
        )
    }

    prop_compose! {
        fn scenario()(
            currency in currency(),
            specs in prop::collection::vec(line_spec(), 1..6),
            rates in (rate(), rate()),
            mode in prop_oneof![Just(TaxMode::Exclusive), Just(TaxMode::Inclusive)],
            tax_rounding in prop_oneof![Just(TaxRounding::PerLine), Just(TaxRounding::PerOrder)],
            rounding in rounding(),
            percent in prop_oneof![9 => 1i64..=5_000, 1 => Just(10_000)],
            fixed in 1i64..=50_000,
            ship in (0usize..3, 0i64..=5_000, 0i64..=2_000, prop::option::weighted(0.3, 0i64..=500_000_000)),
            chosen in prop::collection::vec(any::<bool>(), 4),
        ) -> Scenario {
            let m = |minor: i64| Money::from_minor(minor, currency);
            let classes = ["standard", "reduced", EXEMPT_CLASS];
            let lines: Vec<LineItemInput> = specs
                .iter()
                .enumerate()
                .map(|(i, &(qty, price, disc, class, grams))| {
                    // Distinct SKUs so lines never merge; S0 (line 0) gets the sku-restricted code.
                    let mut l = LineItemInput::new(&format!("S{i}"), i64::from(qty), m(price));
                    let subtotal = i128::from(price) * i128::from(qty);
                    let d = subtotal * i128::from(disc) / 100;
                    l.discount = Some(Money::from_minor_i128(d, currency).unwrap());
                    l.tax_class = classes[class].to_owned();
                    l.weight_grams = grams;
                    l
                })
                .collect();
            let catalog = vec![
                Promotion::percentage("PCT", Decimal::new(percent, 2)).stacking(true),
                Promotion::fixed_amount("FIX", m(fixed)).stacking(true),
                Promotion::free_shipping("SHIP").stacking(true),
                Promotion::percentage("S0ONLY", Decimal::new(percent, 2))
                    .with_skus(vec![Sku::new("S0").unwrap()])
                    .stacking(true),
            ];
            let codes = catalog
                .iter()
                .zip(&chosen)
                .filter(|(_, on)| **on)
                .map(|(p, _)| p.code.clone())
                .collect();
            let (kind, a, b, free_over) = ship;
            let shipping = match kind {
                0 => ShippingRate::Free,
                1 => ShippingRate::Flat { amount: m(a), free_over: free_over.map(m) },
                _ => ShippingRate::PerWeight { base: m(a), per_kg: m(b), free_over: free_over.map(m) },
            };
            let ctx = PricingContext {
                promotions: catalog,
                tax: TaxTable::new()
                    .with_rate("US-NY", "standard", rates.0)
                    .with_rate("US", "reduced", rates.1),
                tax_mode: mode,
                tax_rounding,
                shipping,
                rounding,
            };
            Scenario { currency, lines, codes, ctx }
        }
    }

    fn exact_tax(c: &LineCharges, rate: Decimal, mode: TaxMode) -> Decimal {
        let net = c.subtotal.amount() - c.discount.amount();
        match mode {
            TaxMode::Exclusive => net * rate,
            TaxMode::Inclusive => net * rate / (Decimal::ONE + rate),
        }
    }

    fn refund_all(o: &Order, done: &Refunded, shipping: bool) -> OmsResult<RefundPreview> {
        let lines: Vec<(u32, u32)> = o
            .lines
            .iter()
            .filter_map(|l| {
                let q = l.quantity - done.units.get(&l.line_id).copied().unwrap_or(0);
                (q > 0).then_some((l.line_id, q))
            })
            .collect();
        refund_preview(o, done, &req(&lines, shipping))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn breakdown_parts_add_up_in_every_currency(s in scenario()) {
            let o = s.order();
            let p = get_total_price(&o, &s.ctx, now()).unwrap();
            let c = s.currency;
            let sum = |f: fn(&LineCharges) -> Money| {
                Money::checked_sum(c, &line_field(&p, f)).unwrap()
            };
            prop_assert_eq!(sum(|l| l.subtotal), p.subtotal);
            prop_assert_eq!(sum(|l| l.discount), p.discount);
            prop_assert_eq!(sum(|l| l.tax), p.tax);
            prop_assert_eq!(sum(|l| l.shipping), p.shipping);
            prop_assert_eq!(sum(|l| l.total), p.total);
            let promo_sum = Money::checked_sum(c, p.promotions.iter().map(|a| &a.discount)).unwrap();
            let line_disc = Money::checked_sum(c, o.lines.iter().map(|l| &l.discount)).unwrap();
            prop_assert_eq!(promo_sum.checked_add(&line_disc).unwrap(), p.discount);
            let minor = c.minor_unit();
            let mut exact_sum = Decimal::ZERO;
            for (lp, line) in p.lines.iter().zip(&o.lines) {
                let ch = &lp.charges;
                prop_assert_eq!(ch.subtotal, line.subtotal().unwrap());
                for part in [ch.discount, ch.tax, ch.shipping, ch.total] {
                    prop_assert!(!part.is_negative(), "negative part in {:?}", ch);
                }
                let net = ch.subtotal.checked_sub(&ch.discount).unwrap();
                prop_assert!(!net.is_negative());
                let goods = match p.tax_mode {
                    TaxMode::Exclusive => net.checked_add(&ch.tax).unwrap(),
                    TaxMode::Inclusive => {
                        prop_assert!(ch.tax.checked_cmp(&net).unwrap() != Ordering::Greater);
                        net
                    }
                };
                prop_assert_eq!(goods.checked_add(&ch.shipping).unwrap(), ch.total);
                let exact = exact_tax(ch, lp.tax_rate, p.tax_mode);
                exact_sum += exact;
                // Per line each tax is within a minor unit of its exact value; per order each
                // share is too (largest remainder), and the sum is as well.
                prop_assert!((ch.tax.amount() - exact).abs() < minor + minor,
                    "tax {} vs exact {}", ch.tax, exact);
                if s.ctx.tax_rounding == TaxRounding::PerLine {
                    prop_assert!((ch.tax.amount() - exact).abs() < minor);
                }
            }
            if s.ctx.tax_rounding == TaxRounding::PerOrder {
                prop_assert!((p.tax.amount() - exact_sum).abs() < minor,
                    "order tax {} vs exact {}", p.tax, exact_sum);
            }
            if s.codes.iter().any(|c| c == "SHIP") {
                prop_assert!(p.shipping.is_zero());
            }
        }

        #[test]
        fn extreme_amounts_are_priced_or_refused_never_panic(
            currency in currency(),
            minor in prop_oneof![1i128..1_000, (1i128 << 30)..(1i128 << 50), (1i128 << 70)..(1i128 << 96)],
            qty in prop_oneof![Just(1u32), 1u32..=1_000_000],
            rate in 0i64..=10_000,
            percent in 1i64..=10_000,
            per_kg in prop_oneof![Just(0i128), (1i128 << 20)..(1i128 << 40), (1i128 << 60)..(1i128 << 96)],
            grams in any::<u32>(),
            mode in prop_oneof![Just(TaxMode::Exclusive), Just(TaxMode::Inclusive)],
            tax_rounding in prop_oneof![Just(TaxRounding::PerLine), Just(TaxRounding::PerOrder)],
        ) {
            let Ok(price) = Money::from_minor_i128(minor, currency) else { return Ok(()) };
            let mut a = LineItemInput::new("A", i64::from(qty), price);
            a.weight_grams = grams;
            let b = LineItemInput::new("B", 1, Money::from_minor(1, currency));
            let draft_ok = LineItem::new(1, &a, currency).is_ok();
            prop_assume!(draft_ok);
            let mut o = order_in(currency, "NY", vec![a, b], &["PCT"]);
            let ctx = PricingContext {
                promotions: vec![Promotion::percentage("PCT", Decimal::new(percent, 2))],
                tax: TaxTable::new().with_rate("US", "standard", Decimal::new(rate, 4)),
                tax_mode: mode,
                tax_rounding,
                shipping: ShippingRate::PerWeight {
                    base: Money::zero(currency),
                    per_kg: Money::from_minor_i128(per_kg, currency).unwrap(),
                    free_over: None,
                },
                rounding: Rounding::HalfUp,
            };
            match place_pricing(&mut o, &ctx, now()) {
                Ok(p) => {
                    assert_balanced(&p);
                    let all = refund_all(&o, &Refunded::default(), true);
                    match all {
                        Ok(r) => prop_assert_eq!(r.total, p.total),
                        Err(e) => prop_assert_eq!(e.code(), "overflow"),
                    }
                }
                Err(e) => prop_assert_eq!(e.code(), "overflow", "{}", e),
            }
        }

        #[test]
        fn promotion_entry_order_does_not_matter(s in scenario()) {
            let a = get_total_price(&s.order(), &s.ctx, now()).unwrap();
            let mut r = s.clone();
            r.codes.reverse();
            prop_assert_eq!(a, get_total_price(&r.order(), &r.ctx, now()).unwrap());
        }

        #[test]
        fn partial_refunds_never_exceed_and_full_refund_is_exact(
            s in scenario(),
            steps in prop::collection::vec((0usize..6, 1u32..=4, any::<bool>()), 0..12),
        ) {
            let mut o = s.order();
            let placed = place_pricing(&mut o, &s.ctx, now()).unwrap();
            let charged = charged_total(&o).unwrap();
            prop_assert_eq!(charged, placed.total);
            let c = s.currency;
            let mut done = Refunded::default();
            let mut refunded = Money::zero(c);
            for (idx, k, ship) in steps {
                let line = &o.lines[idx % o.lines.len()];
                let before = done.units.get(&line.line_id).copied().unwrap_or(0);
                let over = before + k > line.quantity || (ship && done.shipping_refunded);
                match refund_preview(&o, &done, &req(&[(line.line_id, k)], ship)) {
                    Ok(p) => {
                        prop_assert!(!over);
                        let lines = Money::checked_sum(c, p.lines.iter().map(|l| &l.amount)).unwrap();
                        prop_assert_eq!(lines.checked_add(&p.shipping).unwrap(), p.total);
                        done.record(&p).unwrap();
                        refunded = refunded.checked_add(&p.total).unwrap();
                    }
                    Err(e) => {
                        prop_assert!(over, "unexpected {e}");
                        prop_assert_eq!(e.code(), "refund_exceeds_charge");
                    }
                }
                prop_assert!(refunded.checked_cmp(&charged).unwrap() != Ordering::Greater);
                for l in &o.lines {
                    let goods = l.charges.as_ref().unwrap().goods().unwrap();
                    if let Some(a) = done.amounts.get(&l.line_id) {
                        prop_assert!(a.checked_cmp(&goods).unwrap() != Ordering::Greater);
                    }
                }
            }
            let rest = refund_all(&o, &done, !done.shipping_refunded);
            match rest {
                Ok(p) => {
                    done.record(&p).unwrap();
                    refunded = refunded.checked_add(&p.total).unwrap();
                }
                // Everything was already refunded, shipping included.
                Err(e) => prop_assert_eq!(e.code(), "invalid_field"),
            }
            prop_assert_eq!(refunded, charged);
            for l in &o.lines {
                let ch = l.charges.as_ref().unwrap();
                prop_assert_eq!(done.units[&l.line_id], ch.quantity);
                prop_assert_eq!(done.amounts[&l.line_id], ch.goods().unwrap());
            }
            // Nothing more can be refunded.
            let again = refund_preview(&o, &done, &req(&[(o.lines[0].line_id, 1)], false));
            prop_assert_eq!(again.unwrap_err().code(), "refund_exceeds_charge");
        }
    }
}
