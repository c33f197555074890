//! The order model: customers, addresses, line items and the order itself, with validation of
//! every field and the line edits allowed until fulfillment starts.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{OmsError, OmsResult};
use crate::fraud::{FraudDecision, FraudReview};
use crate::fulfillment::Shipment;
use crate::lifecycle::{Actor, AuditEntry, OrderStatus};
use crate::money::{Currency, Money};
use crate::payment::Payment;
use crate::pricing::{LineCharges, Refunded};
use crate::returns::ReturnCase;
use crate::text::Text;
use crate::time::{Clock, IdGenerator, Timestamp};

/// Largest quantity accepted on one line.
pub const MAX_LINE_QUANTITY: u64 = 1_000_000;
/// Longest SKU accepted, in characters.
pub const MAX_SKU_LEN: usize = 64;
/// Longest free-text field accepted (names, address lines), in characters.
pub const MAX_TEXT_LEN: usize = 256;

/// A validated stock-keeping unit: 1–64 characters, no control characters, no surrounding
/// whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sku(Text);

impl Sku {
    /// Validate and wrap a SKU.
    ///
    /// ```
    /// use oms_core::order::Sku;
    /// assert!(Sku::new("WATER-5L").is_ok());
    /// assert_eq!(Sku::new("").unwrap_err().code(), "invalid_sku");
    /// ```
    pub fn new(sku: &str) -> OmsResult<Sku> {
        let bad = |reason: &str| OmsError::InvalidSku {
            sku: sku.to_owned(),
            reason: reason.to_owned(),
        };
        if sku.is_empty() {
            return Err(bad("empty"));
        }
        if sku.chars().count() > MAX_SKU_LEN {
            return Err(bad("longer than 64 characters"));
        }
        if sku.chars().any(char::is_control) {
            return Err(bad("contains a control character"));
        }
        if sku.trim() != sku {
            return Err(bad("leading or trailing whitespace"));
        }
        Ok(Sku(Text::from(sku)))
    }

    /// The SKU text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Sku {
    type Error = OmsError;
    fn try_from(s: String) -> OmsResult<Sku> {
        Sku::new(&s)
    }
}

impl From<Sku> for String {
    fn from(s: Sku) -> String {
        s.0.into()
    }
}

impl FromStr for Sku {
    type Err = OmsError;
    fn from_str(s: &str) -> OmsResult<Sku> {
        Sku::new(s)
    }
}

/// Validate a line quantity: 1 ..= [`MAX_LINE_QUANTITY`].
pub fn validate_quantity(quantity: i64) -> OmsResult<u32> {
    let bad = |reason: &str| OmsError::InvalidQuantity {
        quantity: quantity.to_string(),
        reason: reason.to_owned(),
    };
    if quantity <= 0 {
        return Err(bad("must be at least 1"));
    }
    if quantity.unsigned_abs() > MAX_LINE_QUANTITY {
        return Err(bad("more than 1,000,000 units on one line"));
    }
    u32::try_from(quantity).map_err(|_| bad("out of range"))
}

fn validate_text(field: &str, value: &str, required: bool) -> OmsResult<()> {
    if value.trim().is_empty() {
        return if required {
            Err(OmsError::MissingField {
                field: field.to_owned(),
            })
        } else {
            Ok(())
        };
    }
    if value.chars().count() > MAX_TEXT_LEN {
        return Err(OmsError::invalid(field, "longer than 256 characters"));
    }
    if value.chars().any(char::is_control) {
        return Err(OmsError::invalid(field, "contains a control character"));
    }
    Ok(())
}

/// A point on Earth in decimal degrees (WGS 84).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    /// Latitude, −90 ..= 90.
    pub lat: f64,
    /// Longitude, −180 ..= 180.
    pub lng: f64,
}

impl GeoPoint {
    /// Validate latitude and longitude ranges (NaN refused).
    pub fn new(lat: f64, lng: f64) -> OmsResult<GeoPoint> {
        if !(-90.0..=90.0).contains(&lat) {
            return Err(OmsError::invalid("lat", "must be within -90..=90"));
        }
        if !(-180.0..=180.0).contains(&lng) {
            return Err(OmsError::invalid("lng", "must be within -180..=180"));
        }
        Ok(GeoPoint { lat, lng })
    }
}

/// An ISO 3166-1 alpha-2 country code, validated against the ISO table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CountryCode(Text);

impl CountryCode {
    /// Validate an upper-case alpha-2 code such as `"US"`.
    pub fn new(code: &str) -> OmsResult<CountryCode> {
        let unknown = || OmsError::UnknownCountry {
            code: code.to_owned(),
        };
        if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(unknown());
        }
        match iso_country::Country::from_str(code) {
            Ok(c) if c != iso_country::Country::Unspecified => Ok(CountryCode(Text::from(code))),
            _ => Err(unknown()),
        }
    }

    /// The two-letter code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CountryCode {
    type Error = OmsError;
    fn try_from(s: String) -> OmsResult<Self> {
        CountryCode::new(&s)
    }
}

impl From<CountryCode> for String {
    fn from(c: CountryCode) -> String {
        c.0.into()
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A postal address. Build with [`Address::new`], which validates every field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Address {
    /// Recipient name.
    pub name: Text,
    /// First address line.
    pub line1: Text,
    /// Second address line (may be empty).
    pub line2: Text,
    /// City or locality.
    pub city: Text,
    /// State, province or region (may be empty); with the country it forms the tax jurisdiction.
    pub region: Text,
    /// Postal code.
    pub postal_code: Text,
    /// ISO 3166-1 alpha-2 country.
    pub country: CountryCode,
    /// Geocoded location, when known (needed for allocation by distance).
    pub location: Option<GeoPoint>,
}

/// The raw fields of an address, as a host receives them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AddressInput {
    /// Recipient name (required).
    pub name: String,
    /// First address line (required).
    pub line1: String,
    /// Second address line.
    #[serde(default)]
    pub line2: String,
    /// City (required).
    pub city: String,
    /// Region.
    #[serde(default)]
    pub region: String,
    /// Postal code (required).
    pub postal_code: String,
    /// Country, ISO 3166-1 alpha-2 (required).
    pub country: String,
    /// Latitude and longitude, if geocoded.
    #[serde(default)]
    pub location: Option<(f64, f64)>,
}

impl Address {
    /// Validate an address: required fields present, text sane, country a real alpha-2 code.
    pub fn new(input: &AddressInput) -> OmsResult<Address> {
        validate_text("address.name", &input.name, true)?;
        validate_text("address.line1", &input.line1, true)?;
        validate_text("address.line2", &input.line2, false)?;
        validate_text("address.city", &input.city, true)?;
        validate_text("address.region", &input.region, false)?;
        validate_text("address.postal_code", &input.postal_code, true)?;
        if input.country.trim().is_empty() {
            return Err(OmsError::MissingField {
                field: "address.country".into(),
            });
        }
        let country = CountryCode::new(&input.country)?;
        let location = input
            .location
            .map(|(lat, lng)| GeoPoint::new(lat, lng))
            .transpose()?;
        Ok(Address {
            name: Text::from(&input.name),
            line1: Text::from(&input.line1),
            line2: Text::from(&input.line2),
            city: Text::from(&input.city),
            region: Text::from(&input.region),
            postal_code: Text::from(&input.postal_code),
            country,
            location,
        })
    }

    /// The tax jurisdiction: `"US-NY"` when a region is set, else `"US"`.
    pub fn jurisdiction(&self) -> String {
        if self.region.is_empty() {
            self.country.0.to_string()
        } else {
            format!("{}-{}", self.country.0, self.region)
        }
    }
}

/// The customer who placed an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    /// The host's customer id.
    pub id: Text,
    /// Contact email.
    pub email: Text,
    /// Display name.
    pub name: Text,
}

impl Customer {
    /// Validate a customer: id and a plausible email are required.
    pub fn new(id: &str, email: &str, name: &str) -> OmsResult<Customer> {
        validate_text("customer.id", id, true)?;
        validate_text("customer.email", email, true)?;
        validate_text("customer.name", name, false)?;
        let mut parts = email.splitn(2, '@');
        let (local, domain) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if local.is_empty() || !domain.contains('.') || email.contains(char::is_whitespace) {
            return Err(OmsError::invalid("customer.email", "not an email address"));
        }
        Ok(Customer {
            id: Text::from(id),
            email: Text::from(email),
            name: Text::from(name),
        })
    }
}

/// The raw fields of a line, as a host receives them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineItemInput {
    /// SKU.
    pub sku: String,
    /// Units (1 ..= 1,000,000).
    pub quantity: i64,
    /// Unit price in the order currency.
    pub unit_price: Money,
    /// Tax class used to look up the rate (e.g. `"standard"`, `"reduced"`, `"exempt"`).
    #[serde(default = "default_tax_class")]
    pub tax_class: String,
    /// Capacity units one unit takes in a vehicle (seed 004: a case of water is 2).
    #[serde(default = "one")]
    pub capacity_units: u32,
    /// Weight of one unit in grams.
    #[serde(default)]
    pub weight_grams: u32,
    /// Discount on the whole line (not per unit), in the order currency.
    #[serde(default)]
    pub discount: Option<Money>,
}

fn default_tax_class() -> String {
    "standard".into()
}
fn one() -> u32 {
    1
}

impl LineItemInput {
    /// A line with the default tax class, 1 capacity unit, no weight and no discount.
    pub fn new(sku: &str, quantity: i64, unit_price: Money) -> Self {
        LineItemInput {
            sku: sku.to_owned(),
            quantity,
            unit_price,
            tax_class: default_tax_class(),
            capacity_units: 1,
            weight_grams: 0,
            discount: None,
        }
    }
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineItem {
    /// Line id, unique within the order, never reused.
    pub line_id: u32,
    /// SKU.
    pub sku: Sku,
    /// Units ordered.
    pub quantity: u32,
    /// Price of one unit.
    pub unit_price: Money,
    /// Tax class.
    pub tax_class: Text,
    /// Capacity units per unit.
    pub capacity_units: u32,
    /// Grams per unit.
    pub weight_grams: u32,
    /// Line-level discount on the whole line.
    pub discount: Money,
    /// The line's share of every order amount, stored at placement (see [`LineCharges`]).
    pub charges: Option<LineCharges>,
}

impl LineItem {
    /// Validate a line in `currency`.
    pub fn new(line_id: u32, input: &LineItemInput, currency: Currency) -> OmsResult<LineItem> {
        let sku = Sku::new(&input.sku)?;
        let quantity = validate_quantity(input.quantity)?;
        if input.unit_price.currency() != currency {
            return Err(OmsError::CurrencyMismatch {
                expected: currency.code().into(),
                found: input.unit_price.currency().code().into(),
            });
        }
        if input.unit_price.is_negative() {
            return Err(OmsError::InvalidPrice {
                price: input.unit_price.to_string(),
                reason: "negative".into(),
            });
        }
        validate_text("tax_class", &input.tax_class, true)?;
        let discount = input.discount.unwrap_or_else(|| Money::zero(currency));
        if discount.currency() != currency {
            return Err(OmsError::CurrencyMismatch {
                expected: currency.code().into(),
                found: discount.currency().code().into(),
            });
        }
        if discount.is_negative() {
            return Err(OmsError::invalid("discount", "negative"));
        }
        let item = LineItem {
            line_id,
            sku,
            quantity,
            unit_price: input.unit_price,
            tax_class: Text::from(&input.tax_class),
            capacity_units: input.capacity_units,
            weight_grams: input.weight_grams,
            discount,
            charges: None,
        };
        // Overflow and discount bound are checked on construction, not discovered at pricing.
        let subtotal = item.subtotal()?;
        if discount.checked_cmp(&subtotal)? == std::cmp::Ordering::Greater {
            return Err(OmsError::invalid(
                "discount",
                "larger than the line subtotal",
            ));
        }
        Ok(item)
    }

    /// unit price × quantity.
    pub fn subtotal(&self) -> OmsResult<Money> {
        self.unit_price.checked_mul_qty(u64::from(self.quantity))
    }
}

/// Everything needed to place an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderDraft {
    /// Who orders.
    pub customer: Customer,
    /// Where to ship.
    pub shipping_address: AddressInput,
    /// Where to bill (defaults to the shipping address).
    #[serde(default)]
    pub billing_address: Option<AddressInput>,
    /// Order currency: every price must be in it.
    pub currency: Currency,
    /// The lines (at least one).
    pub lines: Vec<LineItemInput>,
    /// Promotion codes entered by the customer.
    #[serde(default)]
    pub promo_codes: Vec<String>,
}

/// An order: the aggregate every operation reads and writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Internal id from the [`IdGenerator`].
    pub id: u64,
    /// Human-facing number, `ORD-YYYY-MM-DD-NNNNNN`.
    pub number: Text,
    /// Who ordered.
    pub customer: Customer,
    /// Where to ship.
    pub shipping_address: Address,
    /// Where to bill.
    pub billing_address: Address,
    /// Order currency.
    pub currency: Currency,
    /// Lines, in the order they were added.
    pub lines: Vec<LineItem>,
    /// Promotion codes applied.
    pub promo_codes: Vec<String>,
    /// Current status.
    pub status: OrderStatus,
    /// Incremented on every change; stores use it for optimistic concurrency.
    pub version: u64,
    /// When the order was placed.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// Audit trail of status changes, oldest first. Entries never change once written, so
    /// copies of the order share them.
    pub history: Vec<Arc<AuditEntry>>,
    /// The order's payments: the first authorization, and any top-up after an edit.
    #[serde(default)]
    pub payments: Vec<Payment>,
    /// Ids of the inventory reservations holding this order's stock.
    #[serde(default)]
    pub reservations: Vec<u64>,
    /// The fraud screening decision, once screened (never changed after; copies of the order
    /// share it).
    #[serde(default)]
    pub fraud: Option<Arc<FraudDecision>>,
    /// The manual review, when screening asked for one.
    #[serde(default)]
    pub review: Option<FraudReview>,
    /// Everything refunded so far, per line (refunds never re-prorate).
    #[serde(default)]
    pub refunded: Refunded,
    /// The parcels the order ships in (one per warehouse).
    #[serde(default)]
    pub shipments: Vec<Shipment>,
    /// Returns requested on the order.
    #[serde(default)]
    pub returns: Vec<ReturnCase>,
    next_line_id: u32,
}

/// Format the order number for `id` placed at `at`: `ORD-2026-05-06-000001`.
pub fn order_number(id: u64, at: Timestamp) -> String {
    let (y, m, d) = at.civil_date();
    format!("ORD-{y:04}-{m:02}-{d:02}-{id:06}")
}

impl Order {
    /// Validate a draft and create the order in [`OrderStatus::Pending`], with its first audit
    /// entry. Time and id come from the injected clock and generator.
    pub fn create(
        draft: &OrderDraft,
        actor: &Actor,
        clock: &dyn Clock,
        ids: &dyn IdGenerator,
    ) -> OmsResult<Order> {
        if draft.lines.is_empty() {
            return Err(OmsError::MissingField {
                field: "lines".into(),
            });
        }
        let customer = Customer::new(
            &draft.customer.id,
            &draft.customer.email,
            &draft.customer.name,
        )?;
        let shipping_address = Address::new(&draft.shipping_address)?;
        let billing_address = match &draft.billing_address {
            Some(b) => Address::new(b)?,
            None => shipping_address.clone(),
        };
        for code in &draft.promo_codes {
            validate_text("promo_code", code, true)?;
        }
        let now = clock.now();
        let mut order = Order {
            id: 0,
            number: Text::empty(),
            customer,
            shipping_address,
            billing_address,
            currency: draft.currency,
            lines: Vec::with_capacity(draft.lines.len()),
            promo_codes: draft.promo_codes.clone(),
            status: OrderStatus::Pending,
            version: 0,
            created_at: now,
            updated_at: now,
            history: Vec::new(),
            payments: Vec::new(),
            reservations: Vec::new(),
            fraud: None,
            review: None,
            refunded: Refunded::default(),
            shipments: Vec::new(),
            returns: Vec::new(),
            next_line_id: 1,
        };
        for line in &draft.lines {
            order.merge_line(line)?;
        }
        order.id = ids.next_id("order");
        order.number = order_number(order.id, now).into();
        order.version = 1;
        order.history.push(Arc::new(AuditEntry {
            from: None,
            to: OrderStatus::Pending,
            event: Text::from_static("create"),
            reason: Text::from_static("order placed"),
            metadata: Vec::new(),
            actor: actor.clone(),
            at: now,
        }));
        Ok(order)
    }

    fn ensure_editable(&self) -> OmsResult<()> {
        if self.status.is_editable() {
            Ok(())
        } else {
            Err(OmsError::OrderNotEditable {
                status: self.status.to_string(),
            })
        }
    }

    /// Validate and add a line, merging into an existing line with the same SKU, unit price,
    /// tax class and no line discount. Returns the id of the line that holds the units.
    fn merge_line(&mut self, input: &LineItemInput) -> OmsResult<u32> {
        let item = LineItem::new(self.next_line_id, input, self.currency)?;
        if item.discount.is_zero() {
            if let Some(existing) = self.lines.iter_mut().find(|l| {
                l.sku == item.sku
                    && l.unit_price == item.unit_price
                    && l.tax_class == item.tax_class
                    && l.discount.is_zero()
            }) {
                let merged = u64::from(existing.quantity) + u64::from(item.quantity);
                let merged = validate_quantity(i64::try_from(merged).unwrap_or(i64::MAX))?;
                let mut candidate = existing.clone();
                candidate.quantity = merged;
                candidate.subtotal()?;
                *existing = candidate;
                return Ok(existing.line_id);
            }
        }
        self.next_line_id += 1;
        let id = item.line_id;
        self.lines.push(item);
        Ok(id)
    }

    fn touched(&mut self, now: Timestamp) {
        // Any edit invalidates prices computed for the old lines.
        for l in &mut self.lines {
            l.charges = None;
        }
        self.version += 1;
        self.updated_at = now;
    }

    /// Add a line (seed 003 `add_line_item`), allowed until fulfillment starts; the same SKU at
    /// the same price merges into the existing line. Returns the line id holding the units.
    pub fn add_line_item(&mut self, input: &LineItemInput, now: Timestamp) -> OmsResult<u32> {
        self.ensure_editable()?;
        let id = self.merge_line(input)?;
        self.touched(now);
        Ok(id)
    }

    /// Remove a line, allowed until fulfillment starts; the last line cannot be removed
    /// (cancel the order instead).
    pub fn remove_line_item(&mut self, line_id: u32, now: Timestamp) -> OmsResult<()> {
        self.ensure_editable()?;
        let pos = self.line_index(line_id)?;
        if self.lines.len() == 1 {
            return Err(OmsError::invalid(
                "line_id",
                "cannot remove the last line; cancel the order instead",
            ));
        }
        self.lines.remove(pos);
        self.touched(now);
        Ok(())
    }

    /// Change a line's quantity, allowed until fulfillment starts.
    pub fn set_line_quantity(
        &mut self,
        line_id: u32,
        quantity: i64,
        now: Timestamp,
    ) -> OmsResult<()> {
        self.ensure_editable()?;
        let q = validate_quantity(quantity)?;
        let pos = self.line_index(line_id)?;
        let mut candidate = self.lines[pos].clone();
        candidate.quantity = q;
        let subtotal = candidate.subtotal()?;
        if candidate.discount.checked_cmp(&subtotal)? == std::cmp::Ordering::Greater {
            return Err(OmsError::invalid(
                "discount",
                "larger than the line subtotal",
            ));
        }
        self.lines[pos] = candidate;
        self.touched(now);
        Ok(())
    }

    fn line_index(&self, line_id: u32) -> OmsResult<usize> {
        self.lines
            .iter()
            .position(|l| l.line_id == line_id)
            .ok_or_else(|| OmsError::LineNotFound {
                line: line_id.to_string(),
            })
    }

    /// The line with this id.
    pub fn line(&self, line_id: u32) -> OmsResult<&LineItem> {
        self.line_index(line_id).map(|i| &self.lines[i])
    }

    /// Sum of unit price × quantity over all lines.
    pub fn subtotal(&self) -> OmsResult<Money> {
        self.lines
            .iter()
            .try_fold(Money::zero(self.currency), |acc, l| {
                acc.checked_add(&l.subtotal()?)
            })
    }

    /// The order's value for reporting and storage columns: the sum of the stored line totals
    /// once priced, else the subtotal. (`pricing::charged_total` is the strict form that refuses
    /// an unpriced order.)
    pub fn book_value(&self) -> OmsResult<Money> {
        let mut total = Money::zero(self.currency);
        for l in &self.lines {
            let part = match &l.charges {
                Some(c) => c.total,
                None => l.subtotal()?,
            };
            total = total.checked_add(&part)?;
        }
        Ok(total)
    }

    /// Total capacity units of the order (seed 004 `total_capacity`).
    pub fn total_capacity(&self) -> u64 {
        self.lines
            .iter()
            .map(|l| u64::from(l.quantity) * u64::from(l.capacity_units))
            .sum()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::time::{ManualClock, SequentialIds};

    pub(crate) fn usd(s: &str) -> Money {
        Money::parse(s, Currency::USD).unwrap()
    }

    pub(crate) fn address() -> AddressInput {
        AddressInput {
            name: "Ada Lovelace".into(),
            line1: "1 Main St".into(),
            city: "New York".into(),
            region: "NY".into(),
            postal_code: "10001".into(),
            country: "US".into(),
            location: Some((40.71, -74.00)),
            ..AddressInput::default()
        }
    }

    fn draft() -> OrderDraft {
        OrderDraft {
            customer: Customer {
                id: "c1".into(),
                email: "ada@example.com".into(),
                name: "Ada".into(),
            },
            shipping_address: address(),
            billing_address: None,
            currency: Currency::USD,
            lines: vec![
                LineItemInput::new("WATER-5L", 2, usd("4.99")),
                LineItemInput::new("PHONE-X", 1, usd("399.00")),
            ],
            promo_codes: vec![],
        }
    }

    /// A placed order (two lines, USD), for tests of other modules too.
    pub(crate) fn create() -> Order {
        let clock = ManualClock::new(Timestamp::from_civil(2026, 5, 6, 9, 30, 0));
        Order::create(&draft(), &Actor::System, &clock, &SequentialIds::default()).unwrap()
    }

    #[test]
    fn create_assigns_number_and_audit() {
        let o = create();
        assert_eq!(o.number, "ORD-2026-05-06-000001");
        assert_eq!(o.status, OrderStatus::Pending);
        assert_eq!(o.version, 1);
        assert_eq!(o.history.len(), 1);
        assert_eq!(o.subtotal().unwrap(), usd("408.98"));
        assert_eq!(o.shipping_address.jurisdiction(), "US-NY");
    }

    #[test]
    fn add_line_merges_same_sku_and_price() {
        let mut o = create();
        let t = o.created_at;
        let id = o
            .add_line_item(&LineItemInput::new("WATER-5L", 3, usd("4.99")), t)
            .unwrap();
        assert_eq!(id, 1);
        assert_eq!(o.line(1).unwrap().quantity, 5);
        let id2 = o
            .add_line_item(&LineItemInput::new("WATER-5L", 1, usd("5.49")), t)
            .unwrap();
        assert_eq!(id2, 3);
        assert_eq!(o.lines.len(), 3);
        assert_eq!(o.version, 3);
    }

    #[test]
    fn edits_refused_after_fulfillment_starts() {
        let mut o = create();
        let t = o.created_at;
        o.status = OrderStatus::Processing;
        let e = o
            .add_line_item(&LineItemInput::new("A", 1, usd("1")), t)
            .unwrap_err();
        assert_eq!(e.code(), "order_not_editable");
        assert_eq!(
            o.remove_line_item(1, t).unwrap_err().code(),
            "order_not_editable"
        );
        assert_eq!(
            o.set_line_quantity(1, 2, t).unwrap_err().code(),
            "order_not_editable"
        );
        assert_eq!(o.lines.len(), 2);
    }

    #[test]
    fn remove_and_change_quantity() {
        let mut o = create();
        let t = o.created_at;
        o.set_line_quantity(2, 4, t).unwrap();
        assert_eq!(o.line(2).unwrap().quantity, 4);
        assert_eq!(
            o.set_line_quantity(9, 4, t).unwrap_err().code(),
            "line_not_found"
        );
        assert_eq!(
            o.set_line_quantity(2, 0, t).unwrap_err().code(),
            "invalid_quantity"
        );
        o.remove_line_item(1, t).unwrap();
        assert_eq!(
            o.remove_line_item(2, t).unwrap_err().code(),
            "invalid_field"
        );
    }

    #[test]
    fn merge_beyond_limit_is_refused_and_state_kept() {
        let mut o = create();
        let t = o.created_at;
        let e = o
            .add_line_item(&LineItemInput::new("WATER-5L", 999_999, usd("4.99")), t)
            .unwrap_err();
        assert_eq!(e.code(), "invalid_quantity");
        assert_eq!(o.line(1).unwrap().quantity, 2);
        assert_eq!(o.version, 1);
    }
}
