//! Retries with exponential backoff and replayable jitter, and the processor that drives a
//! [`PaymentGateway`] under the unknown-outcome rule.
//!
//! The rule: when a call times out, nobody knows whether the gateway processed it. Sending it
//! again could charge twice on a gateway that ignores idempotency keys, so the processor first
//! asks the gateway what happened to that key ([`PaymentGateway::lookup`]) and sends the call
//! again only when the gateway says it never saw it. A lookup that also times out is retried
//! as a lookup, never as a call. When the attempt budget runs out the payment keeps its pending
//! call and [`PaymentProcessor::resume`] carries on later, starting with a lookup.

use serde::{Deserialize, Serialize};

use crate::error::{OmsError, OmsResult};
use crate::money::Money;
use crate::payment::gateway::{
    AuthorizeRequest, CaptureRequest, GatewayAmount, GatewayReply, LookupReply, PaymentGateway,
    RefundRequest, VoidRequest,
};
use crate::payment::machine::{GatewayOp, Payment, PendingCall};
use crate::time::{Clock, Duration, ManualClock, Timestamp};

/// A replayable source of jitter: the same `(key, retry)` always gives the same value.
pub trait Jitter: Send + Sync {
    /// A value in `0..=1000` (per mille of the jittered half of the delay) for the `retry`-th
    /// retry of the call with idempotency key `key`.
    fn permille(&self, key: &str, retry: u32) -> u32;
}

/// Jitter from a seed hashed with the call's key and retry number (SplitMix64 finalizer over
/// FNV-1a): stateless, so runs replay exactly whatever order calls happen in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeededJitter {
    /// The seed.
    pub seed: u64,
}

impl Jitter for SeededJitter {
    fn permille(&self, key: &str, retry: u32) -> u32 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ self.seed;
        for b in key.bytes().chain(retry.to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
        (h % 1001) as u32
    }
}

/// No jitter: every delay is the full backoff.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoJitter;

impl Jitter for NoJitter {
    fn permille(&self, _key: &str, _retry: u32) -> u32 {
        1000
    }
}

/// How the processor waits between attempts. The core never sleeps: the host's
/// implementation does (a thread sleep, an async timer), and tests move a [`ManualClock`].
pub trait Pause: Send + Sync {
    /// Wait for `delay` before the next attempt.
    fn pause(&self, delay: Duration);
}

/// Does not wait at all (for hosts that schedule retries themselves from the attempt log).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoPause;

impl Pause for NoPause {
    fn pause(&self, _delay: Duration) {}
}

/// Waiting moves the manual clock forward, so simulated time includes the backoff.
impl Pause for ManualClock {
    fn pause(&self, delay: Duration) {
        self.advance(delay);
    }
}

/// Attempt budget and backoff shape for gateway calls.
///
/// The delay before retry `n` (1-based) is `min(max_delay, base_delay × multiplier^(n-1))`,
/// of which the first half is fixed and the second half scaled by the jitter ("equal jitter"),
/// so retries from many payments spread out but never collapse to zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Most gateway requests (calls and lookups together) for one operation; at least 1.
    pub max_attempts: u32,
    /// Delay before the first retry, before jitter.
    pub base_delay: Duration,
    /// Upper bound on any one delay.
    pub max_delay: Duration,
    /// Growth factor per retry; at least 1.
    pub multiplier: u32,
}

impl Default for RetryPolicy {
    /// Six requests, 200 ms doubling to at most 5 s.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration(200),
            max_delay: Duration::seconds(5),
            multiplier: 2,
        }
    }
}

impl RetryPolicy {
    /// Check the policy's fields.
    pub fn validate(&self) -> OmsResult<()> {
        if self.max_attempts == 0 {
            return Err(OmsError::invalid("max_attempts", "must be at least 1"));
        }
        if self.multiplier == 0 {
            return Err(OmsError::invalid("multiplier", "must be at least 1"));
        }
        if self.base_delay.millis() < 0 || self.max_delay.millis() < self.base_delay.millis() {
            return Err(OmsError::invalid(
                "base_delay",
                "delays must satisfy 0 <= base_delay <= max_delay",
            ));
        }
        Ok(())
    }

    /// The backoff before retry `retry` (1-based), before jitter.
    pub fn backoff(&self, retry: u32) -> Duration {
        let mut d = self.base_delay.millis();
        for _ in 1..retry {
            d = d.saturating_mul(i64::from(self.multiplier));
            if d >= self.max_delay.millis() {
                break;
            }
        }
        Duration(d.min(self.max_delay.millis()))
    }

    /// The jittered delay before retry `retry` of the call with `key`.
    ///
    /// ```
    /// use oms_core::payment::{RetryPolicy, SeededJitter};
    /// let p = RetryPolicy::default();
    /// let j = SeededJitter { seed: 7 };
    /// assert_eq!(p.delays("pay-1:capture:1", &j), p.delays("pay-1:capture:1", &j));
    /// assert_eq!(p.delays("k", &j).len(), 5);
    /// ```
    pub fn delay(&self, key: &str, retry: u32, jitter: &dyn Jitter) -> Duration {
        let full = i128::from(self.backoff(retry).millis());
        let half = full / 2;
        let permille = i128::from(jitter.permille(key, retry).min(1000));
        // In i128 the product cannot overflow, and the result is at most `full`.
        let ms = half + (full - half) * permille / 1000;
        Duration(i64::try_from(ms).unwrap_or(i64::MAX))
    }

    /// Every delay the policy would wait for the call with `key`, in order (one fewer than
    /// `max_attempts`). The policy computes waits; it never waits.
    pub fn delays(&self, key: &str, jitter: &dyn Jitter) -> Vec<Duration> {
        (1..self.max_attempts)
            .map(|n| self.delay(key, n, jitter))
            .collect()
    }
}

/// Whether an attempt sent the operation itself or asked what became of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptKind {
    /// The operation was sent.
    Call,
    /// The gateway was asked about the key.
    Lookup,
}

/// One gateway request made by the processor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1-based number within the operation.
    pub number: u32,
    /// Call or lookup.
    pub kind: AttemptKind,
    /// The operation.
    pub op: GatewayOp,
    /// The idempotency key sent.
    pub key: String,
    /// How long the processor paused before this request.
    pub waited: Duration,
    /// When the request was made (from the clock).
    pub at: Timestamp,
    /// What came back: `approved`, `declined:<code>`, `timeout`, `unavailable`, `not_found`.
    pub result: String,
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// The gateway approved and the payment recorded it.
    Succeeded,
    /// The gateway declined and the payment recorded it.
    Declined {
        /// The gateway's decline code.
        code: String,
        /// Its message.
        message: String,
    },
    /// The attempt budget ran out before the outcome was known; the payment keeps its pending
    /// call for [`PaymentProcessor::resume`].
    Unresolved {
        /// The last problem seen.
        reason: String,
    },
}

/// The result of driving one operation: the new payment state and every request made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Processed {
    /// The payment after the operation.
    pub payment: Payment,
    /// How it ended.
    pub outcome: Outcome,
    /// Every gateway request, in order.
    pub attempts: Vec<Attempt>,
}

impl Processed {
    /// The payment if the operation succeeded, otherwise [`OmsError::PaymentDeclined`] or
    /// [`OmsError::GatewayError`].
    pub fn into_result(self) -> OmsResult<Payment> {
        match self.outcome {
            Outcome::Succeeded => Ok(self.payment),
            Outcome::Declined { code, message } => Err(OmsError::PaymentDeclined {
                reason: format!("{code}: {message}"),
            }),
            Outcome::Unresolved { reason } => Err(OmsError::GatewayError { reason }),
        }
    }
}

/// What the gateway settled a call as.
enum Verdict {
    Approved {
        reference: String,
        amount: GatewayAmount,
    },
    Declined {
        code: String,
        message: String,
    },
}

/// Drives a [`PaymentGateway`] for one payment operation at a time, with retries under a
/// [`RetryPolicy`] and the unknown-outcome rule. Takes a payment and returns the new one; it
/// holds no state of its own.
pub struct PaymentProcessor<'a> {
    gateway: &'a dyn PaymentGateway,
    clock: &'a dyn Clock,
    pause: &'a dyn Pause,
    jitter: &'a dyn Jitter,
    policy: RetryPolicy,
}

impl<'a> PaymentProcessor<'a> {
    /// A processor over `gateway`, reading time from `clock`, waiting through `pause`.
    pub fn new(
        gateway: &'a dyn PaymentGateway,
        clock: &'a dyn Clock,
        pause: &'a dyn Pause,
        jitter: &'a dyn Jitter,
        policy: RetryPolicy,
    ) -> OmsResult<Self> {
        policy.validate()?;
        Ok(PaymentProcessor {
            gateway,
            clock,
            pause,
            jitter,
            policy,
        })
    }

    /// Authorize the payment's amount: Initiated → Authorized → AwaitingCapture, or Declined.
    pub fn authorize(&self, payment: &Payment) -> OmsResult<Processed> {
        let mut p = payment.clone();
        let call = p.begin_authorization(self.clock.now())?;
        self.drive(p, &call, false)
    }

    /// Capture `amount` from the hold (`final_capture` releases the rest on success).
    pub fn capture(
        &self,
        payment: &Payment,
        amount: Money,
        final_capture: bool,
    ) -> OmsResult<Processed> {
        let mut p = payment.clone();
        let call = p.begin_capture(amount, final_capture, self.clock.now())?;
        self.drive(p, &call, false)
    }

    /// Release the hold (nothing captured yet).
    pub fn void(&self, payment: &Payment) -> OmsResult<Processed> {
        let mut p = payment.clone();
        let call = p.begin_void(self.clock.now())?;
        self.drive(p, &call, false)
    }

    /// Refund `amount` of what was captured.
    pub fn refund(&self, payment: &Payment, amount: Money) -> OmsResult<Processed> {
        let mut p = payment.clone();
        let call = p.begin_refund(amount)?;
        self.drive(p, &call, false)
    }

    /// Settle the payment's pending call, starting with a lookup (never a blind resend).
    pub fn resume(&self, payment: &Payment) -> OmsResult<Processed> {
        let call = payment
            .pending()
            .cloned()
            .ok_or_else(|| OmsError::NotFound {
                kind: "pending gateway call".into(),
                id: payment.id().to_owned(),
            })?;
        self.drive(payment.clone(), &call, true)
    }

    /// Apply a gateway reply that arrived on its own (a webhook, a late or duplicated
    /// response) for the call with `key`. A reply for a call already settled changes nothing;
    /// `NotFound` and `Timeout` say nothing and change nothing.
    pub fn apply_notification(
        &self,
        payment: &Payment,
        key: &str,
        reply: &LookupReply,
    ) -> OmsResult<Payment> {
        if payment.is_settled(key) {
            return Ok(payment.clone());
        }
        let verdict = match reply {
            LookupReply::Approved { reference, amount } => Verdict::Approved {
                reference: reference.clone(),
                amount: *amount,
            },
            LookupReply::Declined { code, message } => Verdict::Declined {
                code: code.clone(),
                message: message.clone(),
            },
            LookupReply::NotFound | LookupReply::Timeout => return Ok(payment.clone()),
        };
        let call = payment
            .pending()
            .filter(|c| c.key == key)
            .cloned()
            .ok_or_else(|| OmsError::NotFound {
                kind: "pending gateway call".into(),
                id: key.to_owned(),
            })?;
        let mut p = payment.clone();
        self.settle(&mut p, &call, verdict)?;
        Ok(p)
    }

    fn send(&self, payment: &Payment, call: &PendingCall) -> OmsResult<GatewayReply> {
        let exponent = self.gateway.exponent(payment.currency());
        let amount = GatewayAmount::from_money(&call.amount, exponent)?;
        let authorization = payment.gateway_reference().unwrap_or_default().to_owned();
        let key = call.key.clone();
        Ok(match call.op {
            GatewayOp::Authorize => self.gateway.authorize(&AuthorizeRequest {
                key,
                payment_id: payment.id().to_owned(),
                reference: payment.reference().to_owned(),
                method: payment.method().to_owned(),
                amount,
            }),
            GatewayOp::Capture => self.gateway.capture(&CaptureRequest {
                key,
                authorization,
                amount,
                final_capture: call.final_capture,
            }),
            GatewayOp::Void => self.gateway.void(&VoidRequest { key, authorization }),
            GatewayOp::Refund => self.gateway.refund(&RefundRequest {
                key,
                authorization,
                amount,
            }),
        })
    }

    fn drive(
        &self,
        mut payment: Payment,
        call: &PendingCall,
        start_with_lookup: bool,
    ) -> OmsResult<Processed> {
        let mut attempts = Vec::new();
        let mut unknown = start_with_lookup;
        let mut problem = String::from("no attempt made");
        for number in 1..=self.policy.max_attempts {
            let waited = if number > 1 {
                let d = self.policy.delay(&call.key, number - 1, self.jitter);
                self.pause.pause(d);
                d
            } else {
                Duration(0)
            };
            let mut log = |kind: AttemptKind, result: String| {
                attempts.push(Attempt {
                    number,
                    kind,
                    op: call.op,
                    key: call.key.clone(),
                    waited,
                    at: self.clock.now(),
                    result,
                });
            };
            let verdict = if unknown {
                match self.gateway.lookup(&call.key) {
                    LookupReply::Approved { reference, amount } => {
                        log(AttemptKind::Lookup, "approved".into());
                        Verdict::Approved { reference, amount }
                    }
                    LookupReply::Declined { code, message } => {
                        log(AttemptKind::Lookup, format!("declined:{code}"));
                        Verdict::Declined { code, message }
                    }
                    LookupReply::NotFound => {
                        // The gateway never saw the call: sending it again cannot double it.
                        log(AttemptKind::Lookup, "not_found".into());
                        unknown = false;
                        problem = "call not processed".into();
                        continue;
                    }
                    LookupReply::Timeout => {
                        log(AttemptKind::Lookup, "timeout".into());
                        problem = "lookup timed out; outcome unknown".into();
                        continue;
                    }
                }
            } else {
                match self.send(&payment, call)? {
                    GatewayReply::Approved { reference, amount } => {
                        log(AttemptKind::Call, "approved".into());
                        Verdict::Approved { reference, amount }
                    }
                    GatewayReply::Declined { code, message } => {
                        log(AttemptKind::Call, format!("declined:{code}"));
                        Verdict::Declined { code, message }
                    }
                    GatewayReply::Timeout => {
                        log(AttemptKind::Call, "timeout".into());
                        unknown = true;
                        problem = "call timed out; outcome unknown".into();
                        continue;
                    }
                    GatewayReply::Unavailable { message } => {
                        log(AttemptKind::Call, "unavailable".into());
                        problem = format!("gateway unavailable: {message}");
                        continue;
                    }
                }
            };
            // An answer the payment cannot take (more approved than asked, another currency)
            // leaves the call pending: the money may have moved, so it must not be forgotten.
            let outcome = self
                .settle(&mut payment, call, verdict)
                .unwrap_or_else(|e| Outcome::Unresolved {
                    reason: format!("gateway answer refused: {e}"),
                });
            return Ok(Processed {
                payment,
                outcome,
                attempts,
            });
        }
        Ok(Processed {
            payment,
            outcome: Outcome::Unresolved { reason: problem },
            attempts,
        })
    }

    fn settle(
        &self,
        payment: &mut Payment,
        call: &PendingCall,
        verdict: Verdict,
    ) -> OmsResult<Outcome> {
        let now = self.clock.now();
        let key = call.key.as_str();
        match verdict {
            Verdict::Approved { reference, amount } => {
                match call.op {
                    GatewayOp::Authorize => {
                        let exponent = self.gateway.exponent(payment.currency());
                        if amount.currency != payment.currency() {
                            return Err(OmsError::CurrencyMismatch {
                                expected: payment.currency().code().into(),
                                found: amount.currency.code().into(),
                            });
                        }
                        let approved = amount.to_money(exponent)?;
                        payment.record_authorized(key, approved, &reference, now)?;
                        payment.place_hold(now)?;
                    }
                    GatewayOp::Capture => payment.record_capture_succeeded(key, &reference, now)?,
                    GatewayOp::Void => payment.record_voided(key, now)?,
                    GatewayOp::Refund => payment.record_refunded(key, &reference, now)?,
                }
                Ok(Outcome::Succeeded)
            }
            Verdict::Declined { code, message } => {
                let reason = format!("{code}: {message}");
                match call.op {
                    GatewayOp::Authorize => payment.record_declined(key, &reason, now)?,
                    GatewayOp::Capture => payment.record_capture_failed(key, &reason, now)?,
                    GatewayOp::Void | GatewayOp::Refund => {
                        payment.record_call_refused(key)?;
                    }
                }
                Ok(Outcome::Declined { code, message })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use crate::payment::fake::{FakeGateway, FakeStep};
    use crate::payment::machine::PaymentStatus;
    use proptest::prelude::*;

    const T0: Timestamp = Timestamp(5_000_000);

    fn usd(s: &str) -> Money {
        Money::parse(s, Currency::USD).unwrap()
    }

    fn payment() -> Payment {
        Payment::new("pay-1", "ORD-1", "card_1234", usd("50.00")).unwrap()
    }

    struct Rig {
        gateway: FakeGateway,
        clock: ManualClock,
        jitter: SeededJitter,
    }

    impl Rig {
        fn new(gateway: FakeGateway) -> Self {
            Rig {
                gateway,
                clock: ManualClock::new(T0),
                jitter: SeededJitter { seed: 42 },
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
        fn authorized(&self) -> Payment {
            self.processor()
                .authorize(&payment())
                .unwrap()
                .into_result()
                .unwrap()
        }
    }

    fn results(p: &Processed) -> Vec<String> {
        p.attempts
            .iter()
            .map(|a| format!("{:?}:{}", a.kind, a.result))
            .collect()
    }

    #[test]
    fn backoff_grows_is_capped_and_jitter_replays() {
        let p = RetryPolicy {
            max_attempts: 8,
            base_delay: Duration(100),
            max_delay: Duration(1_000),
            multiplier: 2,
        };
        let full: Vec<i64> = (1..8).map(|n| p.backoff(n).millis()).collect();
        assert_eq!(full, [100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(
            p.delays("k", &NoJitter),
            full.iter().map(|&d| Duration(d)).collect::<Vec<_>>()
        );
        let a = SeededJitter { seed: 1 };
        let b = SeededJitter { seed: 2 };
        let da = p.delays("pay-1:capture:1", &a);
        assert_eq!(da, p.delays("pay-1:capture:1", &a));
        assert_ne!(da, p.delays("pay-1:capture:1", &b));
        assert_ne!(da, p.delays("pay-1:capture:2", &a));
        for (d, f) in da.iter().zip(&full) {
            assert!(d.millis() >= f / 2 && d.millis() <= *f, "{d:?} vs {f}");
        }
    }

    #[test]
    fn bad_policies_are_typed() {
        let ok = RetryPolicy::default();
        for bad in [
            RetryPolicy {
                max_attempts: 0,
                ..ok
            },
            RetryPolicy {
                multiplier: 0,
                ..ok
            },
            RetryPolicy {
                base_delay: Duration(-1),
                ..ok
            },
            RetryPolicy {
                max_delay: Duration(1),
                ..ok
            },
        ] {
            assert_eq!(bad.validate().unwrap_err().code(), "invalid_field");
        }
        let rig = Rig::new(FakeGateway::new());
        let bad = RetryPolicy {
            max_attempts: 0,
            ..ok
        };
        assert!(PaymentProcessor::new(&rig.gateway, &rig.clock, &NoPause, &NoJitter, bad).is_err());
    }

    #[test]
    fn approve_capture_refund_happy_path() {
        let rig = Rig::new(FakeGateway::new());
        let pr = rig.processor();
        let p = rig.authorized();
        assert_eq!(p.status(), PaymentStatus::AwaitingCapture);
        assert_eq!(p.gateway_reference(), Some("auth_1"));
        let p = pr
            .capture(&p, usd("20.00"), false)
            .unwrap()
            .into_result()
            .unwrap();
        let p = pr
            .capture(&p, usd("10.00"), true)
            .unwrap()
            .into_result()
            .unwrap();
        assert_eq!(p.status(), PaymentStatus::Captured);
        let p = pr.refund(&p, usd("5.00")).unwrap().into_result().unwrap();
        assert_eq!(rig.gateway.hold("auth_1"), Some((5000, 3000, 500, 2000)));
        assert_eq!(
            (p.captured(), p.refunded(), p.voided()),
            (usd("30.00"), usd("5.00"), usd("20.00"))
        );
        assert_eq!(rig.clock.now(), T0, "no retries, no waiting");
    }

    #[test]
    fn decline_is_recorded_and_typed() {
        let rig = Rig::new(FakeGateway::new());
        rig.gateway.script([FakeStep::Decline]);
        let done = rig.processor().authorize(&payment()).unwrap();
        assert_eq!(done.payment.status(), PaymentStatus::Declined);
        assert_eq!(results(&done), ["Call:declined:card_declined"]);
        assert_eq!(done.into_result().unwrap_err().code(), "payment_declined");
        assert!(rig.gateway.ledger().is_empty());
    }

    #[test]
    fn timeout_with_success_behind_is_found_by_lookup_not_resent() {
        let rig = Rig::new(FakeGateway::new());
        rig.gateway.script([FakeStep::TimeoutAfterSuccess]);
        let done = rig.processor().authorize(&payment()).unwrap();
        assert_eq!(results(&done), ["Call:timeout", "Lookup:approved"]);
        assert_eq!(done.payment.status(), PaymentStatus::AwaitingCapture);
        assert_eq!(rig.gateway.times_processed("pay-1:authorize:1"), 1);
        // The pause before the lookup moved the clock by exactly the logged delay.
        assert_eq!(rig.clock.now(), T0.plus(done.attempts[1].waited));
        assert!(done.attempts[1].waited.millis() >= 100);
    }

    #[test]
    fn timeout_with_nothing_behind_is_resent_after_lookup() {
        let rig = Rig::new(FakeGateway::new());
        let p = rig.authorized();
        rig.gateway
            .script([FakeStep::TimeoutNothingBehind, FakeStep::Unavailable]);
        let done = rig.processor().capture(&p, usd("50.00"), true).unwrap();
        assert_eq!(
            results(&done),
            [
                "Call:timeout",
                "Lookup:not_found",
                "Call:unavailable",
                "Call:approved"
            ]
        );
        assert_eq!(done.payment.status(), PaymentStatus::Captured);
        assert_eq!(rig.gateway.total(GatewayOp::Capture), 5000);
    }

    #[test]
    fn unresolved_keeps_the_pending_call_and_resume_settles_it() {
        let rig = Rig::new(FakeGateway::new());
        let p = rig.authorized();
        rig.gateway.script([FakeStep::TimeoutAfterSuccess]);
        rig.gateway.time_out_lookups(10);
        let done = rig.processor().capture(&p, usd("50.00"), true).unwrap();
        assert_eq!(done.attempts.len(), 6);
        assert!(done.attempts[1..]
            .iter()
            .all(|a| a.kind == AttemptKind::Lookup));
        assert_eq!(done.payment.status(), PaymentStatus::Capturing);
        assert!(done.payment.pending().is_some());
        assert_eq!(
            done.clone().into_result().unwrap_err().code(),
            "gateway_error"
        );
        // Nothing else may start while the outcome is unknown.
        assert_eq!(
            rig.processor().void(&done.payment).unwrap_err().code(),
            "invalid_transition"
        );
        rig.gateway.time_out_lookups(0);
        let settled = rig.processor().resume(&done.payment).unwrap();
        assert_eq!(results(&settled), ["Lookup:approved"]);
        assert_eq!(settled.payment.status(), PaymentStatus::Captured);
        assert_eq!(rig.gateway.times_processed("pay-1:capture:2"), 1);
        assert_eq!(
            rig.processor().resume(&settled.payment).unwrap_err().code(),
            "not_found"
        );
    }

    #[test]
    fn capture_failure_and_expiry() {
        let rig = Rig::new(FakeGateway::new());
        let p = rig.authorized();
        rig.gateway.script([FakeStep::CaptureFailure]);
        let done = rig.processor().capture(&p, usd("10.00"), false).unwrap();
        assert_eq!(done.payment.status(), PaymentStatus::CaptureFailed);
        assert_eq!(
            done.outcome,
            Outcome::Declined {
                code: "capture_failed".into(),
                message: "scripted capture_failed".into()
            }
        );

        let calls_before = rig.gateway.request_counts();
        rig.clock.advance(Duration::days(7));
        let err = rig
            .processor()
            .capture(&p, usd("10.00"), false)
            .unwrap_err();
        assert_eq!(err.code(), "authorization_expired");
        assert_eq!(rig.gateway.request_counts(), calls_before, "nothing sent");
    }

    #[test]
    fn duplicate_response_is_applied_once() {
        let rig = Rig::new(FakeGateway::new());
        let p = rig.authorized();
        rig.gateway.script([FakeStep::DuplicateResponse]);
        let pr = rig.processor();
        let p = pr
            .capture(&p, usd("20.00"), false)
            .unwrap()
            .into_result()
            .unwrap();
        let dupes = rig.gateway.take_notifications();
        assert_eq!(dupes.len(), 1);
        let (key, reply) = &dupes[0];
        let again = pr.apply_notification(&p, key, reply).unwrap();
        assert_eq!(again, p);
        assert_eq!(again.captured(), usd("20.00"));
    }

    #[test]
    fn notification_settles_a_pending_call() {
        let rig = Rig::new(FakeGateway::new());
        let p = rig.authorized();
        rig.gateway.script([FakeStep::TimeoutAfterSuccess]);
        rig.gateway.time_out_lookups(10);
        let pr = rig.processor();
        let stuck = pr.refund(&p, usd("1.00"));
        // Nothing captured yet: the refund is refused before any call.
        assert_eq!(stuck.unwrap_err().code(), "payment_amount_exceeded");
        let stuck = pr.capture(&p, usd("20.00"), false).unwrap().payment;
        let key = stuck.pending().unwrap().key.clone();
        rig.gateway.time_out_lookups(0);
        let reply = rig.gateway.lookup(&key);
        let settled = pr.apply_notification(&stuck, &key, &reply).unwrap();
        assert_eq!(settled.captured(), usd("20.00"));
        assert_eq!(settled.status(), PaymentStatus::AwaitingCapture);
        let unknown = pr.apply_notification(&settled, "nope", &reply).unwrap_err();
        assert_eq!(unknown.code(), "not_found");
    }

    #[test]
    fn a_blind_resend_would_double_charge_this_gateway() {
        // The fake ignores keys: the unknown-outcome rule is all that stands between a
        // timeout and a second charge. Sending the same capture twice proves it.
        let rig = Rig::new(FakeGateway::new());
        let p = rig.authorized();
        rig.gateway.script([FakeStep::TimeoutAfterSuccess]);
        let req = CaptureRequest {
            key: "k".into(),
            authorization: p.gateway_reference().unwrap().into(),
            amount: GatewayAmount::from_money(&usd("10.00"), 2).unwrap(),
            final_capture: false,
        };
        assert_eq!(rig.gateway.capture(&req), GatewayReply::Timeout);
        assert!(matches!(
            rig.gateway.capture(&req),
            GatewayReply::Approved { .. }
        ));
        assert_eq!(rig.gateway.times_processed("k"), 2);
        // A gateway that honours keys answers the resend with the first result.
        let honest = FakeGateway::honouring_keys();
        let auth = honest.authorize(&AuthorizeRequest {
            key: "a".into(),
            payment_id: "p".into(),
            reference: "o".into(),
            method: "m".into(),
            amount: req.amount,
        });
        assert_eq!(
            auth,
            honest.authorize(&AuthorizeRequest {
                key: "a".into(),
                payment_id: "p".into(),
                reference: "o".into(),
                method: "m".into(),
                amount: req.amount,
            })
        );
        assert_eq!(honest.times_processed("a"), 1);
    }

    /// Approves every authorization for a cent more than asked.
    struct OverApprover;

    impl PaymentGateway for OverApprover {
        fn authorize(&self, r: &AuthorizeRequest) -> GatewayReply {
            GatewayReply::Approved {
                reference: "auth_x".into(),
                amount: GatewayAmount {
                    minor: r.amount.minor + 1,
                    currency: r.amount.currency,
                },
            }
        }
        fn capture(&self, _: &CaptureRequest) -> GatewayReply {
            GatewayReply::Timeout
        }
        fn void(&self, _: &VoidRequest) -> GatewayReply {
            GatewayReply::Timeout
        }
        fn refund(&self, _: &RefundRequest) -> GatewayReply {
            GatewayReply::Timeout
        }
        fn lookup(&self, _: &str) -> LookupReply {
            LookupReply::Timeout
        }
    }

    #[test]
    fn an_answer_the_payment_cannot_take_stays_pending() {
        let clock = ManualClock::new(T0);
        let pr = PaymentProcessor::new(
            &OverApprover,
            &clock,
            &NoPause,
            &NoJitter,
            RetryPolicy::default(),
        )
        .unwrap();
        let done = pr.authorize(&payment()).unwrap();
        assert_eq!(done.payment.status(), PaymentStatus::Authorizing);
        assert!(done.payment.pending().is_some());
        match &done.outcome {
            Outcome::Unresolved { reason } => {
                assert!(reason.contains("payment amount refused"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(done.into_result().unwrap_err().code(), "gateway_error");
    }

    fn step() -> impl Strategy<Value = FakeStep> {
        prop_oneof![
            3 => Just(FakeStep::Approve),
            1 => Just(FakeStep::Decline),
            1 => Just(FakeStep::CaptureFailure),
            3 => Just(FakeStep::TimeoutAfterSuccess),
            3 => Just(FakeStep::TimeoutNothingBehind),
            1 => Just(FakeStep::Unavailable),
            1 => Just(FakeStep::DuplicateResponse),
            1 => (1i64..5_000).prop_map(|minor| FakeStep::ApprovePartial { minor }),
        ]
    }

    #[derive(Debug, Clone)]
    enum Cmd {
        Capture(i64, bool),
        Refund(i64),
        Void,
        Resume,
        Notifications,
    }

    fn cmd() -> impl Strategy<Value = Cmd> {
        prop_oneof![
            3 => (1i64..3_000, any::<bool>()).prop_map(|(c, f)| Cmd::Capture(c, f)),
            2 => (1i64..3_000).prop_map(Cmd::Refund),
            1 => Just(Cmd::Void),
            2 => Just(Cmd::Resume),
            1 => Just(Cmd::Notifications),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the gateway does (declines, timeouts with or without the money moved,
        /// outages, duplicate responses, lookups that time out), every call key is processed
        /// at most once, and once nothing is pending the gateway's ledger and the payment's
        /// buckets agree to the cent.
        #[test]
        fn retries_never_double_charge(
            script in proptest::collection::vec(step(), 0..30),
            lookup_timeouts in 0u32..4,
            cmds in proptest::collection::vec(cmd(), 0..12),
            seed in any::<u64>(),
        ) {
            let gateway = FakeGateway::new();
            gateway.script(script);
            gateway.time_out_lookups(lookup_timeouts);
            let clock = ManualClock::new(T0);
            let jitter = SeededJitter { seed };
            let pr = PaymentProcessor::new(&gateway, &clock, &clock, &jitter,
                                           RetryPolicy::default()).unwrap();
            let mut p = pr.authorize(&payment()).unwrap().payment;
            for c in &cmds {
                let cents = |m: i64| Money::from_minor(m, Currency::USD);
                let r = match c {
                    Cmd::Capture(m, f) => pr.capture(&p, cents(*m), *f).map(|d| d.payment),
                    Cmd::Refund(m) => pr.refund(&p, cents(*m)).map(|d| d.payment),
                    Cmd::Void => pr.void(&p).map(|d| d.payment),
                    Cmd::Resume => pr.resume(&p).map(|d| d.payment),
                    Cmd::Notifications => {
                        let mut q = p.clone();
                        for (k, reply) in gateway.take_notifications() {
                            if q.is_settled(&k) || q.pending().is_some_and(|c| c.key == k) {
                                q = pr.apply_notification(&q, &k, &reply).unwrap();
                            }
                        }
                        Ok(q)
                    }
                };
                match r {
                    Ok(next) => p = next,
                    Err(e) => prop_assert!(OmsError::CODES.contains(&e.code())),
                }
                p.check_invariants().map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            // Drain: resume until nothing is pending (the script is empty by now or soon).
            for _ in 0..40 {
                if p.pending().is_none() { break; }
                p = pr.resume(&p).unwrap().payment;
            }
            prop_assert!(p.pending().is_none());
            for charge in gateway.ledger() {
                prop_assert_eq!(gateway.times_processed(&charge.key), 1, "{:?}", charge);
            }
            let minor = |m: Money| m.to_minor().unwrap();
            if let Some(auth) = p.gateway_reference() {
                let (held, captured, refunded, _) = gateway.hold(auth).unwrap();
                prop_assert_eq!(held, minor(p.authorized()));
                prop_assert_eq!(captured, minor(p.captured()));
                prop_assert_eq!(refunded, minor(p.refunded()));
            } else {
                prop_assert_eq!(gateway.total(GatewayOp::Authorize), 0);
            }
            prop_assert_eq!(gateway.total(GatewayOp::Capture), minor(p.captured()));
            prop_assert_eq!(gateway.total(GatewayOp::Refund), minor(p.refunded()));
        }
    }
}
