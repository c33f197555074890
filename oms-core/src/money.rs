//! Exact money: ISO 4217 currencies, amounts at minor-unit precision, checked arithmetic,
//! explicit rounding and largest-remainder allocation.
//!
//! A [`Money`] value always holds an amount with no more decimals than its currency's minor
//! unit (USD 2, JPY 0, BHD 3, CLF 4). Anything finer — a tax rate applied to a price, a
//! percentage discount — is computed as a plain [`Decimal`] and brought back with
//! [`Money::from_decimal_rounded`] at a defined point, with an explicit [`Rounding`].

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::error::{OmsError, OmsResult};

/// An ISO 4217 currency that has a minor unit (so it can carry payments).
///
/// The table comes from the `iso_currency` crate; special codes without a minor unit
/// (XAU, XDR, XXX …) are refused with [`OmsError::UnknownCurrency`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency(iso_currency::Currency);

impl Currency {
    /// United States dollar (2 decimals).
    pub const USD: Currency = Currency(iso_currency::Currency::USD);
    /// Euro (2 decimals).
    pub const EUR: Currency = Currency(iso_currency::Currency::EUR);
    /// Japanese yen (0 decimals).
    pub const JPY: Currency = Currency(iso_currency::Currency::JPY);
    /// Bahraini dinar (3 decimals).
    pub const BHD: Currency = Currency(iso_currency::Currency::BHD);
    /// Chilean unidad de fomento (4 decimals).
    pub const CLF: Currency = Currency(iso_currency::Currency::CLF);

    /// Look up a currency by its three-letter code (upper case, e.g. `"USD"`).
    ///
    /// ```
    /// use oms_core::money::Currency;
    /// assert_eq!(Currency::from_code("JPY").unwrap().exponent(), 0);
    /// assert_eq!(Currency::from_code("usd").unwrap_err().code(), "unknown_currency");
    /// ```
    pub fn from_code(code: &str) -> OmsResult<Self> {
        // The usual codes first: the table's look-up compares a code with every code before
        // it in alphabetical order (USD comes near the end), and every amount of every stored
        // document is read through here.
        match code {
            "USD" => return Ok(Currency::USD),
            "EUR" => return Ok(Currency::EUR),
            _ => {}
        }
        let unknown = || OmsError::UnknownCurrency {
            code: code.to_owned(),
        };
        let c = iso_currency::Currency::from_code(code).ok_or_else(unknown)?;
        if c.exponent().is_none() {
            return Err(unknown());
        }
        Ok(Currency(c))
    }

    /// Every ISO 4217 currency with a minor unit, in code order.
    pub fn all() -> Vec<Currency> {
        let mut v: Vec<Currency> = ALL_CODES
            .iter()
            .filter_map(|c| Currency::from_code(c).ok())
            .collect();
        v.sort_by_key(|c| c.code());
        v
    }

    /// The three-letter code.
    pub fn code(self) -> &'static str {
        self.0.code()
    }

    /// Number of decimals of the minor unit (JPY 0, USD 2, BHD 3, CLF 4).
    pub fn exponent(self) -> u32 {
        // Construction guarantees an exponent exists.
        u32::from(self.0.exponent().unwrap_or(0))
    }

    /// The value of one minor unit (0.01 for USD, 1 for JPY).
    pub fn minor_unit(self) -> Decimal {
        Decimal::new(1, self.exponent())
    }
}

/// Codes probed by [`Currency::all`]; the exponent table itself comes from `iso_currency`.
const ALL_CODES: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD",
    "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUC", "CUP",
    "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP",
    "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HRK", "HTG", "HUF", "IDR",
    "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW",
    "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA",
    "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD",
    "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG",
    "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE",
    "SLL", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP",
    "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED",
    "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
    "ZWL",
];

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = OmsError;
    fn from_str(s: &str) -> OmsResult<Self> {
        Currency::from_code(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::from_code(&s).map_err(serde::de::Error::custom)
    }
}

/// How to bring a finer amount back to the currency's minor unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// Round half to even ("banker's rounding"): the default, unbiased over many amounts.
    #[default]
    HalfEven,
    /// Round half away from zero, as most tax authorities and receipts expect.
    HalfUp,
    /// Always toward zero (truncate).
    Down,
    /// Always away from zero.
    Up,
}

impl Rounding {
    fn strategy(self) -> RoundingStrategy {
        match self {
            Rounding::HalfEven => RoundingStrategy::MidpointNearestEven,
            Rounding::HalfUp => RoundingStrategy::MidpointAwayFromZero,
            Rounding::Down => RoundingStrategy::ToZero,
            Rounding::Up => RoundingStrategy::AwayFromZero,
        }
    }

    /// Round `value` to `dp` decimals with this strategy.
    pub fn apply(self, value: Decimal, dp: u32) -> Decimal {
        value.round_dp_with_strategy(dp, self.strategy())
    }
}

/// An exact amount of one currency, never finer than its minor unit.
///
/// ```
/// use oms_core::money::{Currency, Money};
/// let price = Money::parse("19.99", Currency::USD).unwrap();
/// let total = price.checked_mul_qty(3).unwrap();
/// assert_eq!(total.to_string(), "59.97 USD");
/// assert_eq!(Money::parse("12.345", Currency::USD).unwrap_err().code(), "invalid_amount");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    amount: Decimal,
    currency: Currency,
}

impl Money {
    /// An amount that must already be at (or coarser than) the currency's minor unit.
    ///
    /// Refuses `12.345 USD` with [`OmsError::InvalidAmount`]: silently rounding input is how
    /// cents go missing.
    pub fn new(amount: Decimal, currency: Currency) -> OmsResult<Self> {
        let normalized = amount.normalize();
        if normalized.scale() > currency.exponent() {
            return Err(OmsError::InvalidAmount {
                input: amount.to_string(),
                reason: format!(
                    "{} allows at most {} decimal places",
                    currency.code(),
                    currency.exponent()
                ),
            });
        }
        Self::at_scale(normalized, currency)
    }

    /// Zero in `currency`.
    pub fn zero(currency: Currency) -> Self {
        Self::from_minor(0, currency)
    }

    /// Parse a decimal string such as `"19.99"` (no exponent notation, no currency symbol).
    pub fn parse(input: &str, currency: Currency) -> OmsResult<Self> {
        let bad = |reason: &str| OmsError::InvalidAmount {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(bad("empty"));
        }
        if !trimmed
            .chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_digit() || c == '.' || (i == 0 && (c == '-' || c == '+')))
        {
            return Err(bad("only digits, one '.', and a leading sign are allowed"));
        }
        let d = Decimal::from_str_exact(trimmed).map_err(|e| bad(&e.to_string()))?;
        Money::new(d, currency).map_err(|_| {
            bad(&format!(
                "{} allows at most {} decimal places",
                currency.code(),
                currency.exponent()
            ))
        })
    }

    /// Build from an integer count of minor units (cents for USD, yen for JPY).
    pub fn from_minor(minor: i64, currency: Currency) -> Self {
        // Any i64 fits the 96-bit mantissa, and the scale only moves the decimal point.
        Money {
            amount: Decimal::from_i128_with_scale(i128::from(minor), currency.exponent()),
            currency,
        }
    }

    /// Build from a count of minor units, refusing values outside the decimal range.
    pub fn from_minor_i128(minor: i128, currency: Currency) -> OmsResult<Self> {
        let amount = Decimal::try_from_i128_with_scale(minor, currency.exponent())
            .map_err(|_| OmsError::overflow("amount out of range"))?;
        Ok(Money { amount, currency })
    }

    /// Round an arbitrary decimal to the currency's minor unit.
    pub fn from_decimal_rounded(
        value: Decimal,
        currency: Currency,
        rounding: Rounding,
    ) -> OmsResult<Self> {
        Self::at_scale(rounding.apply(value, currency.exponent()), currency)
    }

    /// Put an amount that has at most `exponent` decimals at exactly that scale.
    fn at_scale(amount: Decimal, currency: Currency) -> OmsResult<Self> {
        let mut a = amount;
        a.rescale(currency.exponent());
        // rescale cannot reach the scale when the mantissa would exceed 96 bits.
        if a.scale() != currency.exponent() || a != amount {
            return Err(OmsError::overflow("amount out of range"));
        }
        Ok(Money {
            amount: a,
            currency,
        })
    }

    /// The amount in minor units as an `i128` (always exact).
    pub fn minor_i128(&self) -> i128 {
        self.amount.mantissa()
    }

    /// The amount as a decimal with exactly the currency's number of decimals.
    pub fn amount(&self) -> Decimal {
        self.amount
    }

    /// The currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The amount in minor units, or [`OmsError::Overflow`] if it does not fit an `i64`.
    pub fn to_minor(&self) -> OmsResult<i64> {
        i64::try_from(self.minor_i128()).map_err(|_| OmsError::overflow("to_minor"))
    }

    /// True when the amount is zero.
    pub fn is_zero(&self) -> bool {
        self.amount.is_zero()
    }

    /// True when the amount is below zero.
    pub fn is_negative(&self) -> bool {
        self.amount.is_sign_negative() && !self.amount.is_zero()
    }

    fn same_currency(&self, other: &Money) -> OmsResult<()> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(OmsError::CurrencyMismatch {
                expected: self.currency.code().to_owned(),
                found: other.currency.code().to_owned(),
            })
        }
    }

    /// `self + other`, refusing a currency mismatch or overflow.
    pub fn checked_add(&self, other: &Money) -> OmsResult<Money> {
        self.same_currency(other)?;
        let m = self
            .minor_i128()
            .checked_add(other.minor_i128())
            .ok_or_else(|| OmsError::overflow("add"))?;
        Self::from_minor_i128(m, self.currency)
    }

    /// `self - other`, refusing a currency mismatch or overflow.
    pub fn checked_sub(&self, other: &Money) -> OmsResult<Money> {
        self.same_currency(other)?;
        let m = self
            .minor_i128()
            .checked_sub(other.minor_i128())
            .ok_or_else(|| OmsError::overflow("sub"))?;
        Self::from_minor_i128(m, self.currency)
    }

    /// `self × quantity`, exact, refusing overflow.
    pub fn checked_mul_qty(&self, quantity: u64) -> OmsResult<Money> {
        let m = self
            .minor_i128()
            .checked_mul(i128::from(quantity))
            .ok_or_else(|| OmsError::overflow("multiply by quantity"))?;
        Self::from_minor_i128(m, self.currency)
            .map_err(|_| OmsError::overflow("multiply by quantity"))
    }

    /// `self × rate`, rounded back to the minor unit with `rounding`.
    pub fn checked_mul_rate(&self, rate: Decimal, rounding: Rounding) -> OmsResult<Money> {
        let a = self
            .amount
            .checked_mul(rate)
            .ok_or_else(|| OmsError::overflow("multiply by rate"))?;
        Self::from_decimal_rounded(a, self.currency, rounding)
    }

    /// The negated amount.
    pub fn negated(&self) -> Money {
        Money {
            amount: -self.amount,
            currency: self.currency,
        }
    }

    /// The smaller of two amounts of the same currency.
    pub fn checked_min(&self, other: &Money) -> OmsResult<Money> {
        self.same_currency(other)?;
        Ok(if self.amount <= other.amount {
            *self
        } else {
            *other
        })
    }

    /// Sum amounts; `currency` is used for the empty sum and checked against every part.
    pub fn checked_sum<'a, I>(currency: Currency, parts: I) -> OmsResult<Money>
    where
        I: IntoIterator<Item = &'a Money>,
    {
        parts
            .into_iter()
            .try_fold(Money::zero(currency), |acc, m| acc.checked_add(m))
    }

    /// Split `self` into parts proportional to `weights` so the parts add up exactly to
    /// `self`. See [`allocate`].
    pub fn allocate(&self, weights: &[Decimal]) -> OmsResult<Vec<Money>> {
        allocate(*self, weights)
    }

    /// Compare two amounts of the same currency.
    pub fn checked_cmp(&self, other: &Money) -> OmsResult<Ordering> {
        self.same_currency(other)?;
        Ok(self.amount.cmp(&other.amount))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; DECIMAL_TEXT];
        f.write_str(decimal_text(&self.amount, &mut buf))?;
        write!(f, " {}", self.currency)
    }
}

/// Serialize a `Decimal` as its text, exactly as its own `Serialize` does, by [`decimal_text`]
/// (for `#[serde(serialize_with)]` on the decimals every stored order carries).
pub(crate) fn serialize_decimal<S: serde::Serializer>(
    d: &Decimal,
    s: S,
) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; DECIMAL_TEXT];
    s.serialize_str(decimal_text(d, &mut buf))
}

/// Room for any `Decimal`'s text: 29 digits, a point, a sign, and a zero before the point.
pub(crate) const DECIMAL_TEXT: usize = 32;

/// `d` exactly as its `Display` writes it without a width or precision (digits, a point
/// before the last `scale` of them, a zero before a leading point, a minus sign when
/// negative), written into `buf` without the formatting machinery: every amount of every
/// stored document, event and digest is written this way, and the general path costs several
/// times as much.
pub(crate) fn decimal_text<'b>(d: &Decimal, buf: &'b mut [u8; DECIMAL_TEXT]) -> &'b str {
    let scale = d.scale() as usize;
    let mut n = d.mantissa().unsigned_abs();
    let mut at = buf.len();
    let mut digits = 0;
    // Right to left; at most 29 digits and three more bytes, so `at` never underflows.
    loop {
        if digits == scale && scale > 0 {
            at -= 1;
            buf[at] = b'.';
        }
        // 64-bit arithmetic once the value fits (a 128-bit division is a library call).
        let digit = if let Ok(small) = u64::try_from(n) {
            n = u128::from(small / 10);
            small % 10
        } else {
            let digit = (n % 10) as u64;
            n /= 10;
            digit
        };
        at -= 1;
        buf[at] = b'0' + digit as u8;
        digits += 1;
        if n == 0 && digits > scale {
            break;
        }
    }
    if d.is_sign_negative() {
        at -= 1;
        buf[at] = b'-';
    }
    // Only ASCII digits, '.' and '-' were written.
    std::str::from_utf8(&buf[at..]).unwrap_or_default()
}

/// Serialized as `{"amount": "12.34", "currency": "USD"}`; the amount is a string so no JSON
/// reader turns it into a float.
impl Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        /// The amount as text, written straight into the output (no string built first).
        struct AsText<'a>(&'a Decimal);
        impl Serialize for AsText<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                serialize_decimal(self.0, s)
            }
        }
        let mut st = s.serialize_struct("Money", 2)?;
        st.serialize_field("amount", &AsText(&self.amount))?;
        st.serialize_field("currency", self.currency.code())?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Borrowed where the input allows it, so reading a document allocates nothing here.
        #[derive(Deserialize)]
        struct Raw<'a> {
            #[serde(borrow)]
            amount: std::borrow::Cow<'a, str>,
            #[serde(borrow)]
            currency: std::borrow::Cow<'a, str>,
        }
        let raw = Raw::deserialize(d)?;
        let c = Currency::from_code(&raw.currency).map_err(serde::de::Error::custom)?;
        Money::parse(&raw.amount, c).map_err(serde::de::Error::custom)
    }
}

/// Split `total` into `weights.len()` parts proportional to the weights, by largest remainder.
///
/// Each part is first the proportional share rounded toward zero to the minor unit; the minor
/// units left over are handed out one each to the parts with the largest remainders, ties going
/// to the lower index. So the parts always add up exactly to `total`, and no part differs from
/// its exact share by a whole minor unit or more. A negative total is split like its absolute
/// value and negated. A zero weight gets zero.
///
/// ```
/// use oms_core::money::{allocate, Currency, Money};
/// use rust_decimal::Decimal;
/// let parts = allocate(Money::parse("10.00", Currency::USD).unwrap(),
///                      &[Decimal::ONE, Decimal::ONE, Decimal::ONE]).unwrap();
/// let s: Vec<String> = parts.iter().map(|m| m.amount().to_string()).collect();
/// assert_eq!(s, ["3.34", "3.33", "3.33"]);
/// ```
pub fn allocate(total: Money, weights: &[Decimal]) -> OmsResult<Vec<Money>> {
    let bad = |reason: &str| OmsError::InvalidWeights {
        reason: reason.to_owned(),
    };
    if weights.is_empty() {
        return Err(bad("no weights"));
    }
    if weights.iter().any(|w| w.is_sign_negative() && !w.is_zero()) {
        return Err(bad("negative weight"));
    }
    let sum = weights
        .iter()
        .try_fold(Decimal::ZERO, |a, w| a.checked_add(*w))
        .ok_or_else(|| bad("weights overflow"))?;
    if sum.is_zero() {
        return Err(bad("weights sum to zero"));
    }
    let currency = total.currency();
    let negative = total.is_negative();
    let total_minor = total.minor_i128().abs();
    let total_dec = Decimal::from_i128_with_scale(total_minor, 0);

    // Integer floor of each share, and its remainder as an exact fraction (num / sum).
    let mut base: Vec<i128> = Vec::with_capacity(weights.len());
    let mut rema: Vec<Decimal> = Vec::with_capacity(weights.len());
    for w in weights {
        let share = total_dec
            .checked_mul(*w)
            .ok_or_else(|| OmsError::overflow("allocate"))?;
        let q = share
            .checked_div(sum)
            .ok_or_else(|| OmsError::overflow("allocate"))?
            .trunc();
        let r = share
            .checked_sub(
                q.checked_mul(sum)
                    .ok_or_else(|| OmsError::overflow("allocate"))?,
            )
            .ok_or_else(|| OmsError::overflow("allocate"))?;
        base.push(q.to_i128().ok_or_else(|| OmsError::overflow("allocate"))?);
        rema.push(r);
    }
    let assigned: i128 = base.iter().sum();
    let left = total_minor - assigned;
    let mut order: Vec<usize> = (0..weights.len()).collect();
    // Largest remainder first; ties to the lower index (stable sort keeps index order).
    order.sort_by(|&a, &b| rema[b].cmp(&rema[a]));
    let left = usize::try_from(left).map_err(|_| OmsError::overflow("allocate"))?;
    for &i in order.iter().take(left) {
        base[i] += 1;
    }
    base.into_iter()
        .map(|m| {
            let signed = if negative { -m } else { m };
            Money::from_minor_i128(signed, currency)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn usd(s: &str) -> Money {
        Money::parse(s, Currency::USD).unwrap()
    }

    #[test]
    fn exponents_come_from_the_table() {
        for (code, exp) in [("JPY", 0), ("USD", 2), ("BHD", 3), ("CLF", 4), ("KWD", 3)] {
            assert_eq!(Currency::from_code(code).unwrap().exponent(), exp, "{code}");
        }
        assert!(Currency::all().len() > 150);
    }

    #[test]
    fn special_codes_are_refused() {
        for code in ["XAU", "XXX", "XDR", "", "US", "usd", "ZZZ"] {
            assert_eq!(
                Currency::from_code(code).unwrap_err().code(),
                "unknown_currency"
            );
        }
    }

    #[test]
    fn parse_refuses_over_precise_and_garbage() {
        assert_eq!(usd("12.3").amount().to_string(), "12.30");
        assert_eq!(usd("12.000").amount().to_string(), "12.00");
        for bad in ["12.345", "", " ", "1e3", "abc", "1,00", "--1", "$1", "NaN"] {
            assert!(Money::parse(bad, Currency::USD).is_err(), "{bad:?}");
        }
        assert!(Money::parse("1.5", Currency::JPY).is_err());
        assert_eq!(
            Money::parse("1.234", Currency::BHD)
                .unwrap()
                .to_minor()
                .unwrap(),
            1234
        );
    }

    #[test]
    fn arithmetic_is_checked() {
        let eur = Money::parse("1", Currency::EUR).unwrap();
        assert_eq!(
            usd("1").checked_add(&eur).unwrap_err().code(),
            "currency_mismatch"
        );
        let big = Money::new(Decimal::MAX.trunc(), Currency::JPY).unwrap();
        assert_eq!(big.checked_add(&big).unwrap_err().code(), "overflow");
        assert_eq!(big.checked_mul_qty(2).unwrap_err().code(), "overflow");
        let near = Money::from_minor_i128(i128::from(u64::MAX) << 20, Currency::USD).unwrap();
        assert_eq!(
            near.checked_mul_qty(1 << 20).unwrap_err().code(),
            "overflow"
        );
        assert!(near.checked_mul_qty(2).is_ok());
    }

    #[test]
    fn rounding_strategies() {
        let v = dec!(2.345);
        assert_eq!(
            Money::from_decimal_rounded(v, Currency::USD, Rounding::HalfEven)
                .unwrap()
                .amount(),
            dec!(2.34)
        );
        assert_eq!(
            Money::from_decimal_rounded(v, Currency::USD, Rounding::HalfUp)
                .unwrap()
                .amount(),
            dec!(2.35)
        );
        assert_eq!(
            Money::from_decimal_rounded(v, Currency::USD, Rounding::Down)
                .unwrap()
                .amount(),
            dec!(2.34)
        );
        assert_eq!(
            Money::from_decimal_rounded(dec!(2.341), Currency::USD, Rounding::Up)
                .unwrap()
                .amount(),
            dec!(2.35)
        );
        assert_eq!(
            Money::from_decimal_rounded(dec!(2.5), Currency::JPY, Rounding::HalfEven)
                .unwrap()
                .amount(),
            dec!(2)
        );
    }

    #[test]
    fn allocate_examples() {
        let p = allocate(usd("0.05"), &[dec!(1), dec!(1), dec!(1)]).unwrap();
        assert_eq!(p, vec![usd("0.02"), usd("0.02"), usd("0.01")]);
        let p = allocate(usd("-10.00"), &[dec!(1), dec!(2)]).unwrap();
        assert_eq!(p, vec![usd("-3.33"), usd("-6.67")]);
        let p = allocate(usd("1.00"), &[dec!(0), dec!(3)]).unwrap();
        assert_eq!(p, vec![usd("0"), usd("1.00")]);
        assert_eq!(
            allocate(usd("1"), &[]).unwrap_err().code(),
            "invalid_weights"
        );
        assert_eq!(
            allocate(usd("1"), &[dec!(0)]).unwrap_err().code(),
            "invalid_weights"
        );
        assert_eq!(
            allocate(usd("1"), &[dec!(-1), dec!(2)]).unwrap_err().code(),
            "invalid_weights"
        );
    }

    #[test]
    fn serde_round_trip_keeps_strings() {
        let m = usd("12.30");
        let j = serde_json::to_string(&m).unwrap();
        assert_eq!(j, r#"{"amount":"12.30","currency":"USD"}"#);
        assert_eq!(serde_json::from_str::<Money>(&j).unwrap(), m);
        assert!(serde_json::from_str::<Money>(r#"{"amount":"1.234","currency":"USD"}"#).is_err());
    }

    fn any_currency() -> impl Strategy<Value = Currency> {
        let all = Currency::all();
        (0..all.len()).prop_map(move |i| all[i])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn allocation_sums_exactly(
            currency in any_currency(),
            minor in -1_000_000_000_000i64..1_000_000_000_000i64,
            weights in prop::collection::vec(0u32..10_000, 1..40),
        ) {
            prop_assume!(weights.iter().any(|w| *w > 0));
            let total = Money::from_minor(minor, currency);
            let w: Vec<Decimal> = weights.iter().map(|x| Decimal::from(*x)).collect();
            let parts = allocate(total, &w).unwrap();
            prop_assert_eq!(parts.len(), w.len());
            let sum = Money::checked_sum(currency, &parts).unwrap();
            prop_assert_eq!(sum, total);
            let wsum: Decimal = w.iter().sum();
            for (p, wi) in parts.iter().zip(&w) {
                // each part is within one minor unit of its exact share
                let exact = total.amount() * *wi / wsum;
                prop_assert!((p.amount() - exact).abs() < currency.minor_unit());
                if wi.is_zero() { prop_assert!(p.is_zero()); }
            }
        }

        #[test]
        fn allocation_is_deterministic(minor in 0i64..1_000_000, n in 1usize..20) {
            let total = Money::from_minor(minor, Currency::USD);
            let w = vec![Decimal::ONE; n];
            prop_assert_eq!(allocate(total, &w).unwrap(), allocate(total, &w).unwrap());
        }

        #[test]
        fn minor_round_trip(currency in any_currency(), minor in any::<i64>()) {
            let m = Money::from_minor(minor, currency);
            prop_assert_eq!(m.to_minor().unwrap(), minor);
        }

        #[test]
        fn decimal_text_is_display(
            lo in any::<u32>(),
            mid in any::<u32>(),
            hi in any::<u32>(),
            negative in any::<bool>(),
            scale in 0u32..=28,
            small in any::<bool>(),
        ) {
            // Half the cases small mantissas (amounts), half across all 96 bits.
            let (mid, hi) = if small { (mid % 4, 0) } else { (mid, hi) };
            let d = Decimal::from_parts(lo, mid, hi, negative, scale);
            let mut buf = [0u8; DECIMAL_TEXT];
            prop_assert_eq!(decimal_text(&d, &mut buf), d.to_string());
        }
    }

    #[test]
    fn decimal_text_edges() {
        let cases = [
            Decimal::ZERO,
            Decimal::from_parts(0, 0, 0, true, 0),
            Decimal::from_parts(0, 0, 0, true, 2),
            Decimal::from_parts(0, 0, 0, false, 28),
            Decimal::from_parts(5, 0, 0, false, 2),
            Decimal::from_parts(5, 0, 0, true, 28),
            Decimal::MAX,
            Decimal::MIN,
            Decimal::from_parts(u32::MAX, u32::MAX, u32::MAX, true, 28),
            Decimal::from_parts(0, 0, 1, false, 3),
            Decimal::from(u64::MAX),
            Decimal::from_parts(1, 0, 0, false, 1),
        ];
        for d in cases {
            let mut buf = [0u8; DECIMAL_TEXT];
            assert_eq!(decimal_text(&d, &mut buf), d.to_string(), "{d:?}");
            // and the same value as the decimal's own serialization
            assert_eq!(
                serialize_decimal(&d, serde_json::value::Serializer).unwrap(),
                serde_json::to_value(d).unwrap()
            );
        }
        let m = Money::new(Decimal::new(-1234, 2), Currency::USD).unwrap();
        assert_eq!(m.to_string(), "-12.34 USD");
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"amount":"-12.34","currency":"USD"}"#
        );
    }
}
