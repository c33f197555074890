//! Fraud screening (seed 004 stage 3): an explainable weighted score over seven signals, the
//! approve / manual-review / reject verdict, and the manual review record.
//!
//! Each signal yields a fraction in `[0, 1]` (how strongly it fired) that is multiplied by its
//! configured weight; the score is the exact sum of those contributions, so a
//! [`FraudDecision`] always explains its score line by line. Weights sum to at most 1, so the
//! score lies in `[0, 1]`. With the default thresholds a score above 0.8 rejects, above 0.5
//! goes to manual review, and anything else (0.5 included) is approved.
//!
//! The facts behind the signals (customer history, blacklists, device flags, recent orders)
//! come through the [`FraudSignals`] trait, which the host implements over its own data;
//! [`InMemoryFraudSignals`] serves tests and small hosts. A manual-review verdict opens a
//! [`FraudReview`], closed by a staff member's approve or reject.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{OmsError, OmsResult};
use crate::money::{Money, Rounding};
use crate::order::{Address, Order};
use crate::text::Text;
use crate::time::{Duration, Timestamp};

mod memory;
mod review;

pub use memory::InMemoryFraudSignals;
pub use review::{FraudReview, ReviewResolution, ReviewStatus};

/// Decimals kept on each contribution (the score is their exact sum).
const CONTRIBUTION_DP: u32 = 4;

/// What the host knows about a customer's past.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CustomerHistory {
    /// Orders placed before this one.
    pub previous_orders: u32,
    /// Chargebacks filed against past orders.
    pub chargebacks: u32,
    /// The customer's usual order value, if they have one.
    pub average_order_value: Option<Money>,
}

/// Whose recent orders a velocity count is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum VelocityKey {
    /// By customer id.
    Customer(String),
    /// By device fingerprint.
    Device(String),
    /// By normalized shipping address ([`address_key`]).
    Address(String),
}

/// The facts fraud screening reads, implemented by the host (in Rust, Python, Node or
/// Kotlin). Object-safe and `Send + Sync`.
pub trait FraudSignals: Send + Sync {
    /// The customer's history; a customer never seen has the default (no orders).
    fn customer_history(&self, customer_id: &str) -> OmsResult<CustomerHistory>;
    /// Is this normalized address ([`address_key`]) blacklisted?
    fn is_address_blacklisted(&self, address_key: &str) -> OmsResult<bool>;
    /// Has this customer paid with this payment method before?
    fn is_known_payment_method(&self, customer_id: &str, method: &str) -> OmsResult<bool>;
    /// Is this device fingerprint flagged?
    fn is_device_flagged(&self, fingerprint: &str) -> OmsResult<bool>;
    /// Orders placed by `key` at or after `since`, not counting the order being screened.
    fn orders_since(&self, key: &VelocityKey, since: Timestamp) -> OmsResult<u32>;
}

/// The normalized form of an address used for blacklists and velocity: lower case, single
/// spaces, the fields that locate a door (not the recipient name).
pub fn address_key(address: &Address) -> String {
    let parts = [
        address.line1.as_str(),
        address.line2.as_str(),
        address.city.as_str(),
        address.region.as_str(),
        address.postal_code.as_str(),
        address.country.as_str(),
    ];
    // Written into one string: every order is screened and recorded by this key.
    let mut key = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push('|');
        }
        if part.is_ascii() {
            // ASCII lowers one byte at a time; `to_lowercase` below would give the same.
            for (j, word) in part.split_whitespace().enumerate() {
                if j > 0 {
                    key.push(' ');
                }
                key.extend(word.chars().map(|c| c.to_ascii_lowercase()));
            }
        } else {
            // Unicode lower case depends on a letter's neighbours (a final sigma), so the
            // part is joined first and lowered as a whole.
            key.push_str(
                &part
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .to_lowercase(),
            );
        }
    }
    key
}

/// The order being screened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FraudInput {
    /// The customer's id.
    pub customer_id: String,
    /// The order's value.
    pub order_value: Money,
    /// Where it ships.
    pub shipping_address: Address,
    /// The payment-method token (or card fingerprint).
    pub payment_method: String,
    /// The device fingerprint, when the host has one.
    pub device_fingerprint: Option<String>,
    /// When the order was placed (the velocity window ends here).
    pub at: Timestamp,
}

impl FraudInput {
    /// The input for `order`: its customer and shipping address, with the value to screen
    /// (usually the priced total), the payment method and device the host saw, and the time.
    pub fn for_order(
        order: &Order,
        order_value: Money,
        payment_method: &str,
        device_fingerprint: Option<&str>,
        at: Timestamp,
    ) -> FraudInput {
        FraudInput {
            customer_id: order.customer.id.to_string(),
            order_value,
            shipping_address: order.shipping_address.clone(),
            payment_method: payment_method.to_owned(),
            device_fingerprint: device_fingerprint.map(str::to_owned),
            at,
        }
    }
}

/// One of the seven signals of seed 004 stage 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FraudSignal {
    /// A customer with no previous orders.
    NewCustomer,
    /// Past chargebacks (saturating).
    Chargebacks,
    /// Order value above the customer's norm (graded up to the configured ratio).
    OrderValue,
    /// Shipping address on the blacklist.
    BlacklistedAddress,
    /// A payment method this customer never used.
    NewPaymentMethod,
    /// A flagged device fingerprint.
    FlaggedDevice,
    /// Many orders from the same customer, device or address in the window.
    Velocity,
}

impl FraudSignal {
    /// Every signal, in the order decisions list them.
    pub const ALL: [FraudSignal; 7] = [
        FraudSignal::NewCustomer,
        FraudSignal::Chargebacks,
        FraudSignal::OrderValue,
        FraudSignal::BlacklistedAddress,
        FraudSignal::NewPaymentMethod,
        FraudSignal::FlaggedDevice,
        FraudSignal::Velocity,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            FraudSignal::NewCustomer => "new_customer",
            FraudSignal::Chargebacks => "chargebacks",
            FraudSignal::OrderValue => "order_value",
            FraudSignal::BlacklistedAddress => "blacklisted_address",
            FraudSignal::NewPaymentMethod => "new_payment_method",
            FraudSignal::FlaggedDevice => "flagged_device",
            FraudSignal::Velocity => "velocity",
        }
    }
}

impl fmt::Display for FraudSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much each signal can add to the score when it fires fully. Non-negative, summing to
/// at most 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FraudWeights {
    /// [`FraudSignal::NewCustomer`].
    pub new_customer: Decimal,
    /// [`FraudSignal::Chargebacks`].
    pub chargebacks: Decimal,
    /// [`FraudSignal::OrderValue`].
    pub order_value: Decimal,
    /// [`FraudSignal::BlacklistedAddress`].
    pub blacklisted_address: Decimal,
    /// [`FraudSignal::NewPaymentMethod`].
    pub new_payment_method: Decimal,
    /// [`FraudSignal::FlaggedDevice`].
    pub flagged_device: Decimal,
    /// [`FraudSignal::Velocity`].
    pub velocity: Decimal,
}

impl Default for FraudWeights {
    /// 0.05 new customer, 0.15 chargebacks, 0.10 order value, 0.30 blacklisted address, 0.05
    /// new payment method, 0.20 flagged device, 0.15 velocity (sum 1.00).
    fn default() -> Self {
        FraudWeights {
            new_customer: Decimal::new(5, 2),
            chargebacks: Decimal::new(15, 2),
            order_value: Decimal::new(10, 2),
            blacklisted_address: Decimal::new(30, 2),
            new_payment_method: Decimal::new(5, 2),
            flagged_device: Decimal::new(20, 2),
            velocity: Decimal::new(15, 2),
        }
    }
}

impl FraudWeights {
    /// The weight of `signal`.
    pub fn of(&self, signal: FraudSignal) -> Decimal {
        match signal {
            FraudSignal::NewCustomer => self.new_customer,
            FraudSignal::Chargebacks => self.chargebacks,
            FraudSignal::OrderValue => self.order_value,
            FraudSignal::BlacklistedAddress => self.blacklisted_address,
            FraudSignal::NewPaymentMethod => self.new_payment_method,
            FraudSignal::FlaggedDevice => self.flagged_device,
            FraudSignal::Velocity => self.velocity,
        }
    }
}

/// Weights, thresholds and signal shapes for fraud screening.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FraudConfig {
    /// Per-signal weights.
    pub weights: FraudWeights,
    /// A score strictly above this rejects (default 0.8).
    pub reject_above: Decimal,
    /// A score strictly above this (and not rejected) goes to manual review (default 0.5).
    pub review_above: Decimal,
    /// Chargebacks at which the chargeback signal fires fully (default 2).
    pub chargebacks_saturate_at: u32,
    /// Order value over the customer's average at which the value signal fires fully
    /// (default 3: three times the norm); it grows linearly from 1× to this ratio.
    pub high_value_ratio: Decimal,
    /// The velocity window (default one hour).
    pub velocity_window: Duration,
    /// Previous orders in the window at which the velocity signal fires fully (default 3).
    pub velocity_saturate_at: u32,
}

impl Default for FraudConfig {
    fn default() -> Self {
        FraudConfig {
            weights: FraudWeights::default(),
            reject_above: Decimal::new(8, 1),
            review_above: Decimal::new(5, 1),
            chargebacks_saturate_at: 2,
            high_value_ratio: Decimal::from(3),
            velocity_window: Duration::hours(1),
            velocity_saturate_at: 3,
        }
    }
}

impl FraudConfig {
    /// Check weights (non-negative, sum at most 1), thresholds (`0 <= review <= reject <= 1`)
    /// and signal shapes.
    pub fn validate(&self) -> OmsResult<()> {
        let mut sum = Decimal::ZERO;
        for s in FraudSignal::ALL {
            let w = self.weights.of(s);
            if w.is_sign_negative() && !w.is_zero() {
                return Err(OmsError::invalid(
                    format!("weights.{s}"),
                    "must not be negative",
                ));
            }
            sum = sum
                .checked_add(w)
                .ok_or_else(|| OmsError::overflow("sum of fraud weights"))?;
        }
        if sum > Decimal::ONE {
            return Err(OmsError::invalid(
                "weights",
                format!("must sum to at most 1, not {sum}"),
            ));
        }
        let unit = |d: Decimal| d >= Decimal::ZERO && d <= Decimal::ONE;
        if !unit(self.review_above) || !unit(self.reject_above) {
            return Err(OmsError::invalid(
                "thresholds",
                "review_above and reject_above must lie in [0, 1]",
            ));
        }
        if self.review_above > self.reject_above {
            return Err(OmsError::invalid(
                "review_above",
                "must not exceed reject_above",
            ));
        }
        if self.chargebacks_saturate_at == 0 {
            return Err(OmsError::invalid(
                "chargebacks_saturate_at",
                "must be at least 1",
            ));
        }
        if self.velocity_saturate_at == 0 {
            return Err(OmsError::invalid(
                "velocity_saturate_at",
                "must be at least 1",
            ));
        }
        if self.high_value_ratio <= Decimal::ONE {
            return Err(OmsError::invalid(
                "high_value_ratio",
                "must be greater than 1",
            ));
        }
        if self.velocity_window.millis() <= 0 {
            return Err(OmsError::invalid(
                "velocity_window",
                "must be a positive duration",
            ));
        }
        Ok(())
    }
}

/// What screening concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FraudVerdict {
    /// Continue processing.
    Approve,
    /// Hold for a human (seed 004 `MANUAL_REVIEW`).
    ManualReview,
    /// Refuse and cancel the order.
    Reject,
}

/// One signal's share of the score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalContribution {
    /// The signal.
    pub signal: FraudSignal,
    /// How strongly it fired, in `[0, 1]`.
    #[serde(serialize_with = "crate::money::serialize_decimal")]
    pub strength: Decimal,
    /// Its configured weight.
    #[serde(serialize_with = "crate::money::serialize_decimal")]
    pub weight: Decimal,
    /// `weight × strength`, at four decimals: its share of the score.
    #[serde(serialize_with = "crate::money::serialize_decimal")]
    pub contribution: Decimal,
    /// The fact behind it, in words.
    pub detail: Text,
}

/// The explainable result of screening one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FraudDecision {
    /// The score: exactly the sum of the contributions.
    #[serde(serialize_with = "crate::money::serialize_decimal")]
    pub score: Decimal,
    /// The verdict the thresholds give for the score.
    pub verdict: FraudVerdict,
    /// Every signal, fired or not, in [`FraudSignal::ALL`] order.
    pub contributions: Vec<SignalContribution>,
    /// When the order was screened.
    pub at: Timestamp,
}

impl FraudDecision {
    /// `Ok` unless rejected, then [`OmsError::FraudRejected`] with the score.
    pub fn ensure_not_rejected(&self) -> OmsResult<()> {
        if self.verdict == FraudVerdict::Reject {
            Err(OmsError::FraudRejected {
                score: self.score.to_string(),
            })
        } else {
            Ok(())
        }
    }

    /// The contribution of one signal.
    pub fn contribution(&self, signal: FraudSignal) -> Decimal {
        self.contributions
            .iter()
            .find(|c| c.signal == signal)
            .map_or(Decimal::ZERO, |c| c.contribution)
    }
}

fn fraction(num: Decimal, den: Decimal) -> Decimal {
    if den.is_zero() {
        return Decimal::ONE;
    }
    num.checked_div(den)
        .unwrap_or(Decimal::ONE)
        .clamp(Decimal::ZERO, Decimal::ONE)
}

fn yes(flag: bool) -> Decimal {
    if flag {
        Decimal::ONE
    } else {
        Decimal::ZERO
    }
}

/// Screen one order (seed 003 `check_for_fraud`, seed 004 stage 3).
///
/// ```
/// use oms_core::fraud::{assess, FraudConfig, FraudInput, FraudVerdict, InMemoryFraudSignals};
/// use oms_core::money::{Currency, Money};
/// use oms_core::order::{Address, AddressInput};
/// use oms_core::time::Timestamp;
/// let address = Address::new(&AddressInput {
///     name: "Ada".into(), line1: "1 Main St".into(), city: "Springfield".into(),
///     postal_code: "12345".into(), country: "US".into(), ..Default::default()
/// }).unwrap();
/// let input = FraudInput {
///     customer_id: "c-1".into(),
///     order_value: Money::parse("50.00", Currency::USD).unwrap(),
///     shipping_address: address,
///     payment_method: "card_1234".into(),
///     device_fingerprint: None,
///     at: Timestamp(0),
/// };
/// let signals = InMemoryFraudSignals::new();
/// let decision = assess(&input, &signals, &FraudConfig::default()).unwrap();
/// // A brand-new customer with a new card: 0.05 + 0.05.
/// assert_eq!(decision.score.to_string(), "0.1000");
/// assert_eq!(decision.verdict, FraudVerdict::Approve);
/// ```
pub fn assess(
    input: &FraudInput,
    signals: &dyn FraudSignals,
    config: &FraudConfig,
) -> OmsResult<FraudDecision> {
    config.validate()?;
    if input.customer_id.trim().is_empty() {
        return Err(OmsError::MissingField {
            field: "customer_id".into(),
        });
    }
    if input.payment_method.trim().is_empty() {
        return Err(OmsError::MissingField {
            field: "payment_method".into(),
        });
    }
    if input.order_value.is_negative() {
        return Err(OmsError::InvalidAmount {
            input: input.order_value.amount().to_string(),
            reason: "an order value cannot be negative".into(),
        });
    }
    let device = input
        .device_fingerprint
        .as_deref()
        .filter(|d| !d.trim().is_empty());

    let history = signals.customer_history(&input.customer_id)?;
    let address = address_key(&input.shipping_address);
    let mut facts: Vec<(FraudSignal, Decimal, String)> = Vec::with_capacity(7);

    let new_customer = history.previous_orders == 0;
    facts.push((
        FraudSignal::NewCustomer,
        yes(new_customer),
        format!("{} previous orders", history.previous_orders),
    ));

    facts.push((
        FraudSignal::Chargebacks,
        fraction(
            Decimal::from(history.chargebacks),
            Decimal::from(config.chargebacks_saturate_at),
        ),
        format!("{} past chargebacks", history.chargebacks),
    ));

    let (value_strength, value_detail) = match history.average_order_value {
        Some(avg) if avg.is_zero() || avg.is_negative() => {
            (Decimal::ZERO, "no usable order-value norm".to_owned())
        }
        Some(avg) => {
            // Refuses a norm kept in another currency.
            avg.checked_cmp(&input.order_value)?;
            let ratio = input
                .order_value
                .amount()
                .checked_div(avg.amount())
                .ok_or_else(|| OmsError::overflow("order value ratio"))?;
            let excess = ratio.checked_sub(Decimal::ONE).unwrap_or(Decimal::ZERO);
            let span = config
                .high_value_ratio
                .checked_sub(Decimal::ONE)
                .unwrap_or(Decimal::ONE);
            let strength = fraction(excess, span);
            (
                strength,
                format!(
                    "order {} is {}× the average {}",
                    input.order_value,
                    ratio.round_dp(2),
                    avg
                ),
            )
        }
        None => (Decimal::ZERO, "no order-value norm yet".to_owned()),
    };
    facts.push((FraudSignal::OrderValue, value_strength, value_detail));

    let blacklisted = signals.is_address_blacklisted(&address)?;
    facts.push((
        FraudSignal::BlacklistedAddress,
        yes(blacklisted),
        if blacklisted {
            "shipping address is blacklisted".to_owned()
        } else {
            "shipping address not blacklisted".to_owned()
        },
    ));

    let known = signals.is_known_payment_method(&input.customer_id, &input.payment_method)?;
    facts.push((
        FraudSignal::NewPaymentMethod,
        yes(!known),
        if known {
            "payment method used before".to_owned()
        } else {
            "payment method never used by this customer".to_owned()
        },
    ));

    let flagged = match device {
        Some(d) => signals.is_device_flagged(d)?,
        None => false,
    };
    facts.push((
        FraudSignal::FlaggedDevice,
        yes(flagged),
        match (device, flagged) {
            (None, _) => "no device fingerprint".to_owned(),
            (Some(_), true) => "device fingerprint is flagged".to_owned(),
            (Some(_), false) => "device fingerprint not flagged".to_owned(),
        },
    ));

    let since = Timestamp(input.at.0.saturating_sub(config.velocity_window.millis()));
    let mut keys = vec![VelocityKey::Customer(input.customer_id.clone())];
    if let Some(d) = device {
        keys.push(VelocityKey::Device(d.to_owned()));
    }
    keys.push(VelocityKey::Address(address));
    let mut busiest = (0u32, "customer");
    for key in &keys {
        let n = signals.orders_since(key, since)?;
        if n > busiest.0 {
            let by = match key {
                VelocityKey::Customer(_) => "customer",
                VelocityKey::Device(_) => "device",
                VelocityKey::Address(_) => "address",
            };
            busiest = (n, by);
        }
    }
    facts.push((
        FraudSignal::Velocity,
        fraction(
            Decimal::from(busiest.0),
            Decimal::from(config.velocity_saturate_at),
        ),
        format!(
            "{} earlier orders by this {} in the last {} min",
            busiest.0,
            busiest.1,
            config.velocity_window.millis() / 60_000
        ),
    ));

    let mut score = Decimal::ZERO;
    let mut contributions = Vec::with_capacity(facts.len());
    for (signal, strength, detail) in facts {
        let weight = config.weights.of(signal);
        // Rounded toward zero: weights sum to at most 1, so the score can never exceed 1.
        let mut contribution = Rounding::Down.apply(
            weight
                .checked_mul(strength)
                .ok_or_else(|| OmsError::overflow("fraud contribution"))?,
            CONTRIBUTION_DP,
        );
        contribution.rescale(CONTRIBUTION_DP);
        score = score
            .checked_add(contribution)
            .ok_or_else(|| OmsError::overflow("fraud score"))?;
        contributions.push(SignalContribution {
            signal,
            strength,
            weight,
            contribution,
            detail: detail.into(),
        });
    }
    score.rescale(CONTRIBUTION_DP);
    let verdict = if score > config.reject_above {
        FraudVerdict::Reject
    } else if score > config.review_above {
        FraudVerdict::ManualReview
    } else {
        FraudVerdict::Approve
    };
    Ok(FraudDecision {
        score,
        verdict,
        contributions,
        at: input.at,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::money::Currency;
    use crate::order::AddressInput;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    const NOW: Timestamp = Timestamp(10_000_000_000);

    pub(crate) fn addr(line1: &str) -> Address {
        Address::new(&AddressInput {
            name: "Ada".into(),
            line1: line1.into(),
            city: "Springfield".into(),
            postal_code: "12345".into(),
            country: "US".into(),
            ..AddressInput::default()
        })
        .unwrap()
    }

    fn usd(s: &str) -> Money {
        Money::parse(s, Currency::USD).unwrap()
    }

    #[test]
    fn address_keys_are_lower_case_single_spaced_fields_joined_by_bars() {
        // The key as first defined: each field's words joined by one space, lowered.
        fn reference(a: &Address) -> String {
            [
                a.line1.as_str(),
                a.line2.as_str(),
                a.city.as_str(),
                a.region.as_str(),
                a.postal_code.as_str(),
                a.country.as_str(),
            ]
            .iter()
            .map(|p| {
                p.split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .to_lowercase()
            })
            .collect::<Vec<_>>()
            .join("|")
        }
        for (line1, region) in [
            ("1 Main St", ""),
            ("  12   ELM\tStreet ", "NY"),
            ("ΟΔΟΣ ΑΘΗΝΑΣ 5", "Ἀττική"),
            ("Straße 7", " Bayern "),
        ] {
            // Set directly: the key must hold for any text, valid as an address or not.
            let mut a = addr("1 Main St");
            a.line1 = line1.into();
            a.region = region.into();
            assert_eq!(address_key(&a), reference(&a), "{line1:?}");
        }
        assert_eq!(
            address_key(&addr("  1  Main St ")),
            "1 main st||springfield||12345|us"
        );
    }

    pub(crate) fn input() -> FraudInput {
        FraudInput {
            customer_id: "c-1".into(),
            order_value: usd("50.00"),
            shipping_address: addr("1 Main St"),
            payment_method: "card_1".into(),
            device_fingerprint: Some("dev-1".into()),
            at: NOW,
        }
    }

    /// A returning customer with a known card and a $50 norm: every signal quiet.
    pub(crate) fn clean() -> InMemoryFraudSignals {
        let s = InMemoryFraudSignals::new();
        s.set_history(
            "c-1",
            CustomerHistory {
                previous_orders: 12,
                chargebacks: 0,
                average_order_value: Some(usd("50.00")),
            },
        );
        s.add_known_method("c-1", "card_1");
        s
    }

    pub(crate) fn run(signals: &InMemoryFraudSignals) -> FraudDecision {
        assess(&input(), signals, &FraudConfig::default()).unwrap()
    }

    fn sums(d: &FraudDecision) {
        let total: Decimal = d.contributions.iter().map(|c| c.contribution).sum();
        assert_eq!(total, d.score);
        assert_eq!(d.contributions.len(), FraudSignal::ALL.len());
    }

    #[test]
    fn clean_returning_customer_scores_zero() {
        let d = run(&clean());
        assert_eq!(d.score, dec!(0));
        assert_eq!(d.verdict, FraudVerdict::Approve);
        sums(&d);
        d.ensure_not_rejected().unwrap();
    }

    #[test]
    fn exactly_half_is_approved_just_above_is_reviewed() {
        let s = clean();
        s.blacklist(&addr("1  MAIN st"));
        s.flag_device("dev-1");
        let d = run(&s);
        assert_eq!(d.score, dec!(0.5000));
        assert_eq!(d.verdict, FraudVerdict::Approve);
        assert_eq!(d.contribution(FraudSignal::BlacklistedAddress), dec!(0.30));
        assert_eq!(d.contribution(FraudSignal::FlaggedDevice), dec!(0.20));
        sums(&d);

        let mut new_card = input();
        new_card.payment_method = "card_2".into();
        let d = assess(&new_card, &s, &FraudConfig::default()).unwrap();
        assert_eq!(d.score, dec!(0.55));
        assert_eq!(d.verdict, FraudVerdict::ManualReview);
        sums(&d);
    }

    #[test]
    fn exactly_point_eight_is_reviewed_just_above_is_rejected() {
        let s = clean();
        s.blacklist(&addr("1 Main St"));
        s.flag_device("dev-1");
        s.set_history(
            "c-1",
            CustomerHistory {
                previous_orders: 12,
                chargebacks: 2,
                average_order_value: Some(usd("50.00")),
            },
        );
        for m in 0..3 {
            s.record_order(
                "c-1",
                None,
                &addr("9 Elsewhere"),
                NOW.plus(Duration::minutes(-10 - m)),
            );
        }
        let d = run(&s);
        assert_eq!(d.score, dec!(0.80));
        assert_eq!(d.verdict, FraudVerdict::ManualReview);
        sums(&d);

        let mut bigger = input();
        bigger.order_value = usd("75.00"); // 1.5× the norm: a quarter of the value weight.
        let d = assess(&bigger, &s, &FraudConfig::default()).unwrap();
        assert_eq!(d.contribution(FraudSignal::OrderValue), dec!(0.025));
        assert_eq!(d.score, dec!(0.825));
        assert_eq!(d.verdict, FraudVerdict::Reject);
        assert_eq!(
            d.ensure_not_rejected().unwrap_err(),
            OmsError::FraudRejected {
                score: "0.8250".into()
            }
        );
        sums(&d);
    }

    #[test]
    fn graded_signals() {
        let s = clean();
        s.set_history(
            "c-1",
            CustomerHistory {
                previous_orders: 3,
                chargebacks: 1,
                average_order_value: Some(usd("25.00")),
            },
        );
        // One earlier order from the same device by someone else, inside the hour.
        s.record_order(
            "c-9",
            Some("dev-1"),
            &addr("7 Other Rd"),
            NOW.plus(Duration::minutes(-59)),
        );
        // Two more, outside the hour: not counted.
        s.record_order(
            "c-1",
            None,
            &addr("1 Main St"),
            NOW.plus(Duration::minutes(-61)),
        );
        s.record_order(
            "c-1",
            None,
            &addr("1 Main St"),
            NOW.plus(Duration::minutes(-90)),
        );
        let d = run(&s);
        // 50 / 25 = 2×: halfway from 1× to 3×.
        assert_eq!(d.contribution(FraudSignal::OrderValue), dec!(0.05));
        assert_eq!(d.contribution(FraudSignal::Chargebacks), dec!(0.075));
        assert_eq!(d.contribution(FraudSignal::Velocity), dec!(0.05));
        let velocity = &d.contributions[6];
        assert_eq!(
            velocity.detail,
            "1 earlier orders by this device in the last 60 min"
        );
        assert_eq!(d.score, dec!(0.175));
        sums(&d);
    }

    #[test]
    fn configurable_weights_and_thresholds() {
        let s = clean();
        s.flag_device("dev-1");
        let mut config = FraudConfig::default();
        config.weights.flagged_device = dec!(0.6);
        config.weights.blacklisted_address = dec!(0);
        config.weights.chargebacks = dec!(0);
        let d = assess(&input(), &s, &config).unwrap();
        assert_eq!(
            (d.score, d.verdict),
            (dec!(0.6), FraudVerdict::ManualReview)
        );
        config.reject_above = dec!(0.55);
        let d = assess(&input(), &s, &config).unwrap();
        assert_eq!(d.verdict, FraudVerdict::Reject);
    }

    #[test]
    fn bad_config_is_typed() {
        let ok = FraudConfig::default();
        let mut cases: Vec<(FraudConfig, &str)> = Vec::new();
        let mut c = ok.clone();
        c.weights.velocity = dec!(-0.1);
        cases.push((c, "weights.velocity"));
        let mut c = ok.clone();
        c.weights.velocity = dec!(0.16);
        cases.push((c, "weights"));
        let mut c = ok.clone();
        c.review_above = dec!(0.9);
        cases.push((c, "review_above"));
        let mut c = ok.clone();
        c.reject_above = dec!(1.1);
        cases.push((c, "thresholds"));
        let mut c = ok.clone();
        c.chargebacks_saturate_at = 0;
        cases.push((c, "chargebacks_saturate_at"));
        let mut c = ok.clone();
        c.velocity_saturate_at = 0;
        cases.push((c, "velocity_saturate_at"));
        let mut c = ok.clone();
        c.high_value_ratio = dec!(1);
        cases.push((c, "high_value_ratio"));
        let mut c = ok.clone();
        c.velocity_window = Duration(0);
        cases.push((c, "velocity_window"));
        for (config, field) in cases {
            match assess(&input(), &clean(), &config).unwrap_err() {
                OmsError::InvalidField { field: f, .. } => assert_eq!(f, field),
                other => panic!("{field}: {other}"),
            }
        }
    }

    #[test]
    fn bad_input_is_typed() {
        let s = clean();
        let c = FraudConfig::default();
        let mut i = input();
        i.customer_id = " ".into();
        assert_eq!(assess(&i, &s, &c).unwrap_err().code(), "missing_field");
        let mut i = input();
        i.payment_method = String::new();
        assert_eq!(assess(&i, &s, &c).unwrap_err().code(), "missing_field");
        let mut i = input();
        i.order_value = usd("-1.00");
        assert_eq!(assess(&i, &s, &c).unwrap_err().code(), "invalid_amount");
        s.set_history(
            "c-1",
            CustomerHistory {
                previous_orders: 1,
                chargebacks: 0,
                average_order_value: Some(Money::parse("10", Currency::JPY).unwrap()),
            },
        );
        assert_eq!(
            assess(&input(), &s, &c).unwrap_err().code(),
            "currency_mismatch"
        );
    }

    #[test]
    fn traits_are_object_safe_send_sync() {
        fn send_sync<T: Send + Sync + ?Sized>() {}
        send_sync::<dyn FraudSignals>();
        send_sync::<dyn crate::payment::PaymentGateway>();
        let s: Box<dyn FraudSignals> = Box::new(clean());
        assert!(!s.is_device_flagged("dev-1").unwrap());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Contributions always add up to the score exactly, the score stays in [0, 1], and
        /// the verdict is the one the thresholds give.
        #[test]
        fn contributions_sum_to_score(
            previous in 0u32..5,
            chargebacks in 0u32..5,
            avg_cents in proptest::option::of(0i64..20_000),
            value_cents in 0i64..100_000,
            blacklisted: bool,
            known: bool,
            flagged: bool,
            recent in 0u32..6,
            raw_weights in proptest::collection::vec(0u32..1000, 7),
        ) {
            let s = InMemoryFraudSignals::new();
            s.set_history("c-1", CustomerHistory {
                previous_orders: previous,
                chargebacks,
                average_order_value: avg_cents.map(|c| Money::from_minor(c, Currency::USD)),
            });
            if blacklisted { s.blacklist(&addr("1 Main St")); }
            if known { s.add_known_method("c-1", "card_1"); }
            if flagged { s.flag_device("dev-1"); }
            for k in 0..recent {
                s.record_order("c-1", None, &addr("2 Side St"),
                               NOW.plus(Duration::minutes(-i64::from(k) - 1)));
            }
            let total: u32 = raw_weights.iter().sum::<u32>().max(1000);
            let w: Vec<Decimal> = raw_weights.iter()
                .map(|&r| (Decimal::from(r) / Decimal::from(total)).round_dp_with_strategy(
                    6, rust_decimal::RoundingStrategy::ToZero))
                .collect();
            let config = FraudConfig {
                weights: FraudWeights {
                    new_customer: w[0], chargebacks: w[1], order_value: w[2],
                    blacklisted_address: w[3], new_payment_method: w[4],
                    flagged_device: w[5], velocity: w[6],
                },
                ..FraudConfig::default()
            };
            let mut i = input();
            i.order_value = Money::from_minor(value_cents, Currency::USD);
            let d = assess(&i, &s, &config).unwrap();
            let total: Decimal = d.contributions.iter().map(|c| c.contribution).sum();
            prop_assert_eq!(total, d.score);
            prop_assert!(d.score >= Decimal::ZERO && d.score <= Decimal::ONE);
            for c in &d.contributions {
                prop_assert!(c.strength >= Decimal::ZERO && c.strength <= Decimal::ONE);
                prop_assert!(c.contribution <= c.weight + dec!(0.00005));
            }
            let expected = if d.score > dec!(0.8) {
                FraudVerdict::Reject
            } else if d.score > dec!(0.5) {
                FraudVerdict::ManualReview
            } else {
                FraudVerdict::Approve
            };
            prop_assert_eq!(d.verdict, expected);
        }
    }
}
