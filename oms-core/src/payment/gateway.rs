//! The payment gateway as the core sees it: a trait the host implements (in Rust, Python,
//! Node or Kotlin), with every call carrying an idempotency key and every amount in the
//! gateway's own minor units.

use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};

use crate::error::{OmsError, OmsResult};
use crate::money::{Currency, Money};

/// An amount as a gateway sees it: an integer count of the gateway's minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GatewayAmount {
    /// Whole minor units (cents for USD at exponent 2).
    pub minor: i64,
    /// The currency.
    pub currency: Currency,
}

impl GatewayAmount {
    /// Convert `money` to a gateway that counts `currency` in units of `10^-exponent`.
    ///
    /// This is the only place money crosses into gateway units. An amount finer than the
    /// gateway's unit (a gateway that treats HUF as zero-decimal, given `10.50 HUF`) is refused
    /// with [`OmsError::InvalidAmount`] rather than rounded, and one beyond `i64` with
    /// [`OmsError::Overflow`].
    ///
    /// ```
    /// use oms_core::money::{Currency, Money};
    /// use oms_core::payment::GatewayAmount;
    /// let m = Money::parse("50.00", Currency::USD).unwrap();
    /// assert_eq!(GatewayAmount::from_money(&m, 2).unwrap().minor, 5000);
    /// let back = GatewayAmount::from_money(&m, 2).unwrap().to_money(2).unwrap();
    /// assert_eq!(back, m);
    /// ```
    pub fn from_money(money: &Money, exponent: u32) -> OmsResult<GatewayAmount> {
        let scaled = money
            .amount()
            .checked_mul(pow10(exponent)?)
            .ok_or_else(|| OmsError::overflow("convert to gateway units"))?;
        if scaled.fract() != rust_decimal::Decimal::ZERO {
            return Err(OmsError::InvalidAmount {
                input: money.amount().to_string(),
                reason: format!(
                    "the gateway counts {} in units of 10^-{exponent}",
                    money.currency()
                ),
            });
        }
        let minor = scaled
            .to_i64()
            .ok_or_else(|| OmsError::overflow("convert to gateway units"))?;
        Ok(GatewayAmount {
            minor,
            currency: money.currency(),
        })
    }

    /// Convert back from a gateway that counts in units of `10^-exponent`; refuses a result
    /// finer than the currency's ISO minor unit.
    pub fn to_money(&self, exponent: u32) -> OmsResult<Money> {
        let d = rust_decimal::Decimal::try_from_i128_with_scale(i128::from(self.minor), exponent)
            .map_err(|_| OmsError::overflow("convert from gateway units"))?;
        Money::new(d, self.currency)
    }
}

fn pow10(exponent: u32) -> OmsResult<rust_decimal::Decimal> {
    let p = 10_i64
        .checked_pow(exponent)
        .ok_or_else(|| OmsError::invalid("exponent", "gateway exponent too large"))?;
    Ok(rust_decimal::Decimal::from(p))
}

/// Ask the gateway to place a hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeRequest {
    /// Idempotency key: the same for every retry of this call.
    pub key: String,
    /// Our payment id.
    pub payment_id: String,
    /// What the payment is for (order number).
    pub reference: String,
    /// The payment-method token.
    pub method: String,
    /// The amount to hold.
    pub amount: GatewayAmount,
}

/// Ask the gateway to take money from a hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureRequest {
    /// Idempotency key.
    pub key: String,
    /// The gateway's authorization reference.
    pub authorization: String,
    /// The amount to capture.
    pub amount: GatewayAmount,
    /// Release the rest of the hold after this capture.
    pub final_capture: bool,
}

/// Ask the gateway to release a hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoidRequest {
    /// Idempotency key.
    pub key: String,
    /// The gateway's authorization reference.
    pub authorization: String,
}

/// Ask the gateway to give captured money back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequest {
    /// Idempotency key.
    pub key: String,
    /// The gateway's authorization reference.
    pub authorization: String,
    /// The amount to refund.
    pub amount: GatewayAmount,
}

/// What a gateway answered to a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GatewayReply {
    /// Done. `reference` is the gateway's id for the operation (for an authorization, the id
    /// later captures name); `amount` is what it actually did (a partial authorization holds
    /// less than asked).
    Approved {
        /// The gateway's reference.
        reference: String,
        /// The amount processed.
        amount: GatewayAmount,
    },
    /// Refused (card declined, capture refused, insufficient funds …).
    Declined {
        /// The gateway's decline code.
        code: String,
        /// Human-readable reason.
        message: String,
    },
    /// No answer in time: the call may or may not have been processed.
    Timeout,
    /// The gateway refused the call before processing it (connection refused, rate limited):
    /// nothing happened and the call may be retried.
    Unavailable {
        /// What the transport said.
        message: String,
    },
}

/// What a gateway knows about the call with a given idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LookupReply {
    /// The call was processed and approved.
    Approved {
        /// The gateway's reference.
        reference: String,
        /// The amount processed.
        amount: GatewayAmount,
    },
    /// The call was processed and declined.
    Declined {
        /// The gateway's decline code.
        code: String,
        /// Human-readable reason.
        message: String,
    },
    /// The gateway never processed a call with this key: it is safe to send it again.
    NotFound,
    /// The lookup itself got no answer in time.
    Timeout,
}

/// A payment gateway, implemented by the host. Every call carries an idempotency key; a
/// gateway that honours keys makes retries harmless, and the processor's unknown-outcome rule
/// (look up before retrying) keeps them harmless even when it does not.
///
/// Object-safe and `Send + Sync`, so bindings can implement it in their own language.
pub trait PaymentGateway: Send + Sync {
    /// The exponent the gateway counts `currency` in; ISO 4217's by default. Override for
    /// gateways that treat some currencies differently (zero-decimal HUF, ISK …).
    fn exponent(&self, currency: Currency) -> u32 {
        currency.exponent()
    }
    /// Place a hold.
    fn authorize(&self, request: &AuthorizeRequest) -> GatewayReply;
    /// Take money from a hold.
    fn capture(&self, request: &CaptureRequest) -> GatewayReply;
    /// Release a hold.
    fn void(&self, request: &VoidRequest) -> GatewayReply;
    /// Give captured money back.
    fn refund(&self, request: &RefundRequest) -> GatewayReply;
    /// What happened to the call sent with `key`.
    fn lookup(&self, key: &str) -> LookupReply;
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn converts_at_the_gateway_exponent() {
        let usd = Money::parse("12.34", Currency::USD).unwrap();
        assert_eq!(GatewayAmount::from_money(&usd, 2).unwrap().minor, 1234);
        assert_eq!(GatewayAmount::from_money(&usd, 3).unwrap().minor, 12_340);
        assert_eq!(
            GatewayAmount::from_money(&usd, 0).unwrap_err().code(),
            "invalid_amount"
        );
        let whole = Money::new(dec!(12), Currency::USD).unwrap();
        assert_eq!(GatewayAmount::from_money(&whole, 0).unwrap().minor, 12);
        let jpy = Money::parse("500", Currency::JPY).unwrap();
        assert_eq!(GatewayAmount::from_money(&jpy, 0).unwrap().minor, 500);
        let bhd = Money::parse("1.005", Currency::BHD).unwrap();
        assert_eq!(GatewayAmount::from_money(&bhd, 3).unwrap().minor, 1005);
        let neg = usd.negated();
        assert_eq!(GatewayAmount::from_money(&neg, 2).unwrap().minor, -1234);
    }

    #[test]
    fn refuses_out_of_range() {
        let big = Money::from_minor_i128(i128::from(i64::MAX) * 100, Currency::USD).unwrap();
        assert_eq!(
            GatewayAmount::from_money(&big, 2).unwrap_err().code(),
            "overflow"
        );
        let g = GatewayAmount {
            minor: 1,
            currency: Currency::JPY,
        };
        assert_eq!(g.to_money(2).unwrap_err().code(), "invalid_amount");
        assert_eq!(g.to_money(0).unwrap().amount(), dec!(1));
        assert_eq!(
            GatewayAmount::from_money(&Money::zero(Currency::USD), 40)
                .unwrap_err()
                .code(),
            "invalid_field"
        );
    }
}
