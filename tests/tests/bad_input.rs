//! Every class of bad input gets a typed error with a stable code, never a panic.

use oms_core::lifecycle::Actor;
use oms_core::money::{Currency, Money};
use oms_core::order::{AddressInput, Customer, LineItemInput, Order, OrderDraft, Sku};
use oms_core::time::{ManualClock, SequentialIds, Timestamp};
use rust_decimal::Decimal;

fn usd(s: &str) -> Money {
    Money::parse(s, Currency::USD).unwrap()
}

fn address() -> AddressInput {
    AddressInput {
        name: "Ada".into(),
        line1: "1 Main St".into(),
        city: "New York".into(),
        postal_code: "10001".into(),
        country: "US".into(),
        ..AddressInput::default()
    }
}

fn draft_with(f: impl FnOnce(&mut OrderDraft)) -> OrderDraft {
    let mut d = OrderDraft {
        customer: Customer {
            id: "c1".into(),
            email: "ada@example.com".into(),
            name: "Ada".into(),
        },
        shipping_address: address(),
        billing_address: None,
        currency: Currency::USD,
        lines: vec![LineItemInput::new("SKU-1", 1, usd("1.00"))],
        promo_codes: vec![],
    };
    f(&mut d);
    d
}

fn create(d: &OrderDraft) -> Result<Order, oms_core::OmsError> {
    let clock = ManualClock::new(Timestamp::from_civil(2026, 1, 1, 0, 0, 0));
    Order::create(d, &Actor::System, &clock, &SequentialIds::default())
}

fn line(f: impl FnOnce(&mut LineItemInput)) -> OrderDraft {
    draft_with(|d| f(&mut d.lines[0]))
}

#[test]
fn bad_order_drafts_are_refused_with_their_code() {
    let huge = Money::new(Decimal::MAX.trunc(), Currency::JPY).unwrap();
    let cases: Vec<(&str, OrderDraft, &str)> = vec![
        (
            "zero quantity",
            line(|l| l.quantity = 0),
            "invalid_quantity",
        ),
        (
            "negative quantity",
            line(|l| l.quantity = -3),
            "invalid_quantity",
        ),
        (
            "absurd quantity",
            line(|l| l.quantity = 1_000_001),
            "invalid_quantity",
        ),
        (
            "i64::MAX quantity",
            line(|l| l.quantity = i64::MAX),
            "invalid_quantity",
        ),
        (
            "negative price",
            line(|l| l.unit_price = usd("-0.01")),
            "invalid_price",
        ),
        (
            "price in another currency",
            line(|l| l.unit_price = Money::parse("1", Currency::EUR).unwrap()),
            "currency_mismatch",
        ),
        (
            "amount × quantity overflows",
            draft_with(|d| {
                d.currency = Currency::JPY;
                d.lines = vec![LineItemInput::new("SKU-1", 1_000_000, huge)];
            }),
            "overflow",
        ),
        ("empty sku", line(|l| l.sku = String::new()), "invalid_sku"),
        (
            "overlong sku",
            line(|l| l.sku = "x".repeat(65)),
            "invalid_sku",
        ),
        (
            "control char in sku",
            line(|l| l.sku = "A\u{7}B".into()),
            "invalid_sku",
        ),
        (
            "newline in sku",
            line(|l| l.sku = "A\nB".into()),
            "invalid_sku",
        ),
        ("padded sku", line(|l| l.sku = " A".into()), "invalid_sku"),
        (
            "negative line discount",
            line(|l| l.discount = Some(usd("-1"))),
            "invalid_field",
        ),
        (
            "discount above subtotal",
            line(|l| l.discount = Some(usd("2"))),
            "invalid_field",
        ),
        ("no lines", draft_with(|d| d.lines.clear()), "missing_field"),
        (
            "missing address line1",
            draft_with(|d| d.shipping_address.line1 = " ".into()),
            "missing_field",
        ),
        (
            "missing city",
            draft_with(|d| d.shipping_address.city = String::new()),
            "missing_field",
        ),
        (
            "missing postal code",
            draft_with(|d| d.shipping_address.postal_code = String::new()),
            "missing_field",
        ),
        (
            "missing country",
            draft_with(|d| d.shipping_address.country = String::new()),
            "missing_field",
        ),
        (
            "unknown country",
            draft_with(|d| d.shipping_address.country = "XX".into()),
            "unknown_country",
        ),
        (
            "lower-case country",
            draft_with(|d| d.shipping_address.country = "us".into()),
            "unknown_country",
        ),
        (
            "alpha-3 country",
            draft_with(|d| d.shipping_address.country = "USA".into()),
            "unknown_country",
        ),
        (
            "bad latitude",
            draft_with(|d| d.shipping_address.location = Some((91.0, 0.0))),
            "invalid_field",
        ),
        (
            "NaN longitude",
            draft_with(|d| d.shipping_address.location = Some((0.0, f64::NAN))),
            "invalid_field",
        ),
        (
            "control char in name",
            draft_with(|d| d.shipping_address.name = "A\u{0}".into()),
            "invalid_field",
        ),
        (
            "overlong city",
            draft_with(|d| d.shipping_address.city = "c".repeat(257)),
            "invalid_field",
        ),
        (
            "missing customer id",
            draft_with(|d| d.customer.id = "".into()),
            "missing_field",
        ),
        (
            "bad email",
            draft_with(|d| d.customer.email = "nobody".into()),
            "invalid_field",
        ),
        (
            "empty promo code",
            draft_with(|d| d.promo_codes = vec![String::new()]),
            "missing_field",
        ),
    ];
    for (name, draft, code) in cases {
        let err = create(&draft).expect_err(name);
        assert_eq!(err.code(), code, "{name}: {err}");
        assert!(oms_core::OmsError::CODES.contains(&err.code()));
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn bad_money_inputs_are_refused_with_their_code() {
    let cases: Vec<(&str, Result<Money, oms_core::OmsError>, &str)> = vec![
        (
            "over-precise USD",
            Money::parse("12.345", Currency::USD),
            "invalid_amount",
        ),
        (
            "fractional JPY",
            Money::parse("1.5", Currency::JPY),
            "invalid_amount",
        ),
        (
            "over-precise BHD",
            Money::parse("0.0001", Currency::BHD),
            "invalid_amount",
        ),
        ("empty", Money::parse("", Currency::USD), "invalid_amount"),
        (
            "exponent",
            Money::parse("1e5", Currency::USD),
            "invalid_amount",
        ),
        (
            "symbol",
            Money::parse("$1.00", Currency::USD),
            "invalid_amount",
        ),
        (
            "too many digits",
            Money::parse("99999999999999999999999999999999", Currency::USD),
            "invalid_amount",
        ),
        (
            "mixed currencies",
            usd("1").checked_add(&Money::parse("1", Currency::EUR).unwrap()),
            "currency_mismatch",
        ),
        (
            "overflow",
            Money::new(Decimal::MAX.trunc(), Currency::JPY)
                .unwrap()
                .checked_mul_qty(2),
            "overflow",
        ),
    ];
    for (name, result, code) in cases {
        assert_eq!(result.expect_err(name).code(), code, "{name}");
    }
    for code in ["usd", "XAU", "ABC", "", "EURO"] {
        assert_eq!(
            Currency::from_code(code).unwrap_err().code(),
            "unknown_currency",
            "{code}"
        );
    }
    assert_eq!(
        Sku::new(&"é".repeat(64)).unwrap().as_str().chars().count(),
        64
    );
}
