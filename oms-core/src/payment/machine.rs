//! The payment state machine of seed 000 §2 and its amount buckets.
//!
//! A [`Payment`] only moves along the edges of [`TRANSITIONS`], and only its own methods move
//! money between the buckets, so `captured <= authorized`, `captured + released <= authorized`
//! and `refunded <= captured` hold by construction: every method checks the bound before it
//! writes anything, and refuses with [`OmsError::PaymentAmountExceeded`] otherwise.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{OmsError, OmsResult};
use crate::money::{Currency, Money};
use crate::text::Text;
use crate::time::{Duration, Timestamp};

/// How long an authorization hold stays capturable unless configured otherwise.
pub const DEFAULT_HOLD_VALIDITY: Duration = Duration::days(7);

/// Where a payment is in seed 000 §2's machine, plus `Voided` and `Expired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Payment requested, nothing sent to the gateway yet (seed `Payment_Initiated`).
    Initiated,
    /// Authorization sent; the outcome is not known yet.
    Authorizing,
    /// The gateway approved the authorization.
    Authorized,
    /// The gateway declined the authorization.
    Declined,
    /// Funds are on hold and may be captured until the hold expires.
    AwaitingCapture,
    /// A capture was sent; the outcome is not known yet.
    Capturing,
    /// Capturing is finished; whatever was not captured has been released.
    Captured,
    /// The gateway refused a capture.
    CaptureFailed,
    /// The payment failed for good (seed `Payment_Failed`).
    Failed,
    /// Captured and settled (seed `Payment_Completed`).
    Completed,
    /// The hold was released before anything was captured.
    Voided,
    /// The hold lapsed before anything was captured.
    Expired,
}

impl PaymentStatus {
    /// Every status, in machine order.
    pub const ALL: [PaymentStatus; 12] = [
        PaymentStatus::Initiated,
        PaymentStatus::Authorizing,
        PaymentStatus::Authorized,
        PaymentStatus::Declined,
        PaymentStatus::AwaitingCapture,
        PaymentStatus::Capturing,
        PaymentStatus::Captured,
        PaymentStatus::CaptureFailed,
        PaymentStatus::Failed,
        PaymentStatus::Completed,
        PaymentStatus::Voided,
        PaymentStatus::Expired,
    ];

    /// The snake_case name used in storage, JSON and every binding.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Initiated => "initiated",
            PaymentStatus::Authorizing => "authorizing",
            PaymentStatus::Authorized => "authorized",
            PaymentStatus::Declined => "declined",
            PaymentStatus::AwaitingCapture => "awaiting_capture",
            PaymentStatus::Capturing => "capturing",
            PaymentStatus::Captured => "captured",
            PaymentStatus::CaptureFailed => "capture_failed",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Completed => "completed",
            PaymentStatus::Voided => "voided",
            PaymentStatus::Expired => "expired",
        }
    }

    /// The state's name in seed 000 §2 (`None` for the two states the seed does not draw).
    pub fn seed_name(self) -> Option<&'static str> {
        Some(match self {
            PaymentStatus::Initiated => "Payment_Initiated",
            PaymentStatus::Authorizing => "Authorizing",
            PaymentStatus::Authorized => "Authorized",
            PaymentStatus::Declined => "Declined",
            PaymentStatus::AwaitingCapture => "AwaitingCapture",
            PaymentStatus::Capturing => "Capturing",
            PaymentStatus::Captured => "Captured",
            PaymentStatus::CaptureFailed => "CaptureFailed",
            PaymentStatus::Failed => "Payment_Failed",
            PaymentStatus::Completed => "Payment_Completed",
            PaymentStatus::Voided | PaymentStatus::Expired => return None,
        })
    }

    /// No transition leaves this state except refunds of what was captured.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            PaymentStatus::Failed
                | PaymentStatus::Completed
                | PaymentStatus::Voided
                | PaymentStatus::Expired
        )
    }

    fn name(self) -> &'static str {
        match self {
            PaymentStatus::Initiated => "Initiated",
            PaymentStatus::Authorizing => "Authorizing",
            PaymentStatus::Authorized => "Authorized",
            PaymentStatus::Declined => "Declined",
            PaymentStatus::AwaitingCapture => "AwaitingCapture",
            PaymentStatus::Capturing => "Capturing",
            PaymentStatus::Captured => "Captured",
            PaymentStatus::CaptureFailed => "CaptureFailed",
            PaymentStatus::Failed => "Failed",
            PaymentStatus::Completed => "Completed",
            PaymentStatus::Voided => "Voided",
            PaymentStatus::Expired => "Expired",
        }
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What moves a payment from one status to another (the edge labels of the diagram).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentEvent {
    /// The authorization request goes to the gateway.
    SendAuthorization,
    /// The gateway approved the authorization.
    AuthSuccess,
    /// The gateway declined the authorization.
    AuthDeclined,
    /// The hold is in place and its expiry clock runs.
    HoldPlaced,
    /// A capture request goes to the gateway.
    CaptureTriggered,
    /// A capture succeeded and nothing is left to capture (remainder released).
    CaptureSuccess,
    /// A partial capture succeeded and more may be captured later.
    PartialCaptureSuccess,
    /// The gateway refused a capture.
    CaptureFailed,
    /// A decline is final and the customer is told.
    NotifyCustomer,
    /// A failed capture is escalated (captured money stays refundable).
    Escalate,
    /// The captured payment is settled.
    Complete,
    /// The hold is released before anything was captured.
    Void,
    /// No more captures: the uncaptured remainder of the hold is released.
    ReleaseRemainder,
    /// The hold lapsed with nothing captured.
    Expire,
    /// Part or all of the captured amount is given back.
    Refund,
}

impl PaymentEvent {
    /// Every event.
    pub const ALL: [PaymentEvent; 15] = [
        PaymentEvent::SendAuthorization,
        PaymentEvent::AuthSuccess,
        PaymentEvent::AuthDeclined,
        PaymentEvent::HoldPlaced,
        PaymentEvent::CaptureTriggered,
        PaymentEvent::CaptureSuccess,
        PaymentEvent::PartialCaptureSuccess,
        PaymentEvent::CaptureFailed,
        PaymentEvent::NotifyCustomer,
        PaymentEvent::Escalate,
        PaymentEvent::Complete,
        PaymentEvent::Void,
        PaymentEvent::ReleaseRemainder,
        PaymentEvent::Expire,
        PaymentEvent::Refund,
    ];

    /// The snake_case name (the seed's edge label where the seed has one).
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentEvent::SendAuthorization => "send_authorization",
            PaymentEvent::AuthSuccess => "auth_success",
            PaymentEvent::AuthDeclined => "auth_declined",
            PaymentEvent::HoldPlaced => "hold_placed",
            PaymentEvent::CaptureTriggered => "capture_triggered",
            PaymentEvent::CaptureSuccess => "capture_success",
            PaymentEvent::PartialCaptureSuccess => "partial_capture_success",
            PaymentEvent::CaptureFailed => "capture_failed",
            PaymentEvent::NotifyCustomer => "notify_customer",
            PaymentEvent::Escalate => "escalate",
            PaymentEvent::Complete => "complete",
            PaymentEvent::Void => "void",
            PaymentEvent::ReleaseRemainder => "release_remainder",
            PaymentEvent::Expire => "expire",
            PaymentEvent::Refund => "refund",
        }
    }
}

impl fmt::Display for PaymentEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

use PaymentEvent as E;
use PaymentStatus as S;

/// Every allowed move `(from, event, to)`. The first ten rows are seed 000 §2's edges; the
/// rest add partial capture, voids, expiry and refunds. Anything not listed is refused.
pub const TRANSITIONS: &[(PaymentStatus, PaymentEvent, PaymentStatus)] = &[
    (S::Initiated, E::SendAuthorization, S::Authorizing),
    (S::Authorizing, E::AuthSuccess, S::Authorized),
    (S::Authorizing, E::AuthDeclined, S::Declined),
    (S::Authorized, E::HoldPlaced, S::AwaitingCapture),
    (S::AwaitingCapture, E::CaptureTriggered, S::Capturing),
    (S::Capturing, E::CaptureSuccess, S::Captured),
    (S::Capturing, E::CaptureFailed, S::CaptureFailed),
    (S::Declined, E::NotifyCustomer, S::Failed),
    (S::CaptureFailed, E::Escalate, S::Failed),
    (S::Captured, E::Complete, S::Completed),
    (S::Capturing, E::PartialCaptureSuccess, S::AwaitingCapture),
    (S::Authorized, E::Void, S::Voided),
    (S::AwaitingCapture, E::Void, S::Voided),
    (S::AwaitingCapture, E::ReleaseRemainder, S::Captured),
    (S::Authorized, E::Expire, S::Expired),
    (S::AwaitingCapture, E::Expire, S::Expired),
    (S::AwaitingCapture, E::Refund, S::AwaitingCapture),
    (S::Captured, E::Refund, S::Captured),
    (S::Completed, E::Refund, S::Completed),
    (S::Failed, E::Refund, S::Failed),
];

/// How many rows at the head of [`TRANSITIONS`] are seed 000 §2's own edges.
pub const SEED_EDGES: usize = 10;

/// The status `event` leads to from `from`, or `None` when the diagram has no such edge.
pub fn next_status(from: PaymentStatus, event: PaymentEvent) -> Option<PaymentStatus> {
    TRANSITIONS
        .iter()
        .find(|(f, e, _)| *f == from && *e == event)
        .map(|(_, _, to)| *to)
}

/// The payment machine as a Mermaid `stateDiagram-v2`, generated from [`TRANSITIONS`].
///
/// ```
/// let text = oms_core::payment::mermaid();
/// assert!(text.contains("Authorizing --> Authorized: auth_success"));
/// ```
pub fn mermaid() -> String {
    let mut lines = vec![
        "stateDiagram-v2".to_owned(),
        "    [*] --> Initiated: payment requested".to_owned(),
    ];
    for (from, event, to) in TRANSITIONS {
        lines.push(format!("    {} --> {}: {}", from.name(), to.name(), event));
    }
    for s in PaymentStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
        lines.push(format!("    {} --> [*]", s.name()));
    }
    lines.push(String::new());
    lines.join("\n")
}

/// One move of the machine, kept on the payment as its audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentTransition {
    /// Status before.
    pub from: PaymentStatus,
    /// The event.
    pub event: PaymentEvent,
    /// Status after.
    pub to: PaymentStatus,
    /// Money moved by the event, if any.
    pub amount: Option<Money>,
    /// Gateway reference or reason, if any.
    pub detail: Text,
    /// When.
    pub at: Timestamp,
}

/// The gateway operation a payment is waiting on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewayOp {
    /// Place a hold.
    Authorize,
    /// Take money from the hold.
    Capture,
    /// Release the hold.
    Void,
    /// Give captured money back.
    Refund,
}

impl GatewayOp {
    /// The snake_case name, also used in idempotency keys.
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayOp::Authorize => "authorize",
            GatewayOp::Capture => "capture",
            GatewayOp::Void => "void",
            GatewayOp::Refund => "refund",
        }
    }
}

/// A gateway call that was sent and whose outcome has not been recorded yet. While one is
/// pending no other operation may start, so an unknown outcome is always resolved first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCall {
    /// What was asked.
    pub op: GatewayOp,
    /// The idempotency key the call (and every retry of it) carries:
    /// `{payment id}:{operation}:{n}`, unique as long as payment ids are.
    pub key: String,
    /// The amount asked for (the hold for a void).
    pub amount: Money,
    /// For a capture: release the remainder when it succeeds.
    pub final_capture: bool,
}

/// One payment of one order: its status, its four amount buckets and its history.
///
/// The buckets are private; read them with [`Payment::authorized`] and friends. Only the
/// methods below move amounts, each after checking the bound it could break.
///
/// Each gateway call is begun (`begin_*`, which hands out its idempotency key) and later
/// recorded (`record_*`); recording a call already recorded (a duplicate response) changes
/// nothing. The stored form is checked on the way in: a record whose buckets break the bounds does not
/// deserialize.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PaymentRecord")]
pub struct Payment {
    id: Text,
    reference: Text,
    method: Text,
    amount: Money,
    status: PaymentStatus,
    authorized: Money,
    captured: Money,
    refunded: Money,
    released: Money,
    hold_validity: Duration,
    authorized_at: Option<Timestamp>,
    expires_at: Option<Timestamp>,
    gateway_reference: Option<Text>,
    pending: Option<PendingCall>,
    op_seq: u32,
    // Shared between copies of the order until one of them records a call: every operation
    // copies the order twice, and most leave its payments as they were.
    settled_keys: Arc<Vec<Text>>,
    history: Arc<Vec<PaymentTransition>>,
}

/// The serialized fields of a [`Payment`], checked by `TryFrom` before they become one.
#[derive(Deserialize)]
struct PaymentRecord {
    id: Text,
    reference: Text,
    method: Text,
    amount: Money,
    status: PaymentStatus,
    authorized: Money,
    captured: Money,
    refunded: Money,
    released: Money,
    hold_validity: Duration,
    authorized_at: Option<Timestamp>,
    expires_at: Option<Timestamp>,
    gateway_reference: Option<Text>,
    pending: Option<PendingCall>,
    op_seq: u32,
    settled_keys: Vec<Text>,
    history: Vec<PaymentTransition>,
}

impl TryFrom<PaymentRecord> for Payment {
    type Error = OmsError;

    fn try_from(r: PaymentRecord) -> OmsResult<Payment> {
        let p = Payment {
            id: r.id,
            reference: r.reference,
            method: r.method,
            amount: r.amount,
            status: r.status,
            authorized: r.authorized,
            captured: r.captured,
            refunded: r.refunded,
            released: r.released,
            hold_validity: r.hold_validity,
            authorized_at: r.authorized_at,
            expires_at: r.expires_at,
            gateway_reference: r.gateway_reference,
            pending: r.pending,
            op_seq: r.op_seq,
            settled_keys: Arc::new(r.settled_keys),
            history: Arc::new(r.history),
        };
        p.check_invariants()?;
        Ok(p)
    }
}

impl Payment {
    /// A new payment of `amount` (positive) for `reference` (usually the order number), paid
    /// with `method` (the host's payment-method token), holds valid for
    /// [`DEFAULT_HOLD_VALIDITY`].
    ///
    /// ```
    /// use oms_core::money::{Currency, Money};
    /// use oms_core::payment::{Payment, PaymentStatus};
    /// let amount = Money::parse("50.00", Currency::USD).unwrap();
    /// let p = Payment::new("pay-1", "ORD-1", "card_1234", amount).unwrap();
    /// assert_eq!(p.status(), PaymentStatus::Initiated);
    /// assert_eq!(Payment::new("pay-1", "ORD-1", "card", amount.negated()).unwrap_err().code(),
    ///            "invalid_amount");
    /// ```
    pub fn new(id: &str, reference: &str, method: &str, amount: Money) -> OmsResult<Payment> {
        for (field, value) in [("id", id), ("reference", reference), ("method", method)] {
            if value.trim().is_empty() {
                return Err(OmsError::MissingField {
                    field: field.into(),
                });
            }
        }
        if amount.is_negative() || amount.is_zero() {
            return Err(OmsError::InvalidAmount {
                input: amount.amount().to_string(),
                reason: "a payment amount must be positive".into(),
            });
        }
        let zero = Money::zero(amount.currency());
        Ok(Payment {
            id: id.into(),
            reference: reference.into(),
            method: method.into(),
            amount,
            status: PaymentStatus::Initiated,
            authorized: zero,
            captured: zero,
            refunded: zero,
            released: zero,
            hold_validity: DEFAULT_HOLD_VALIDITY,
            authorized_at: None,
            expires_at: None,
            gateway_reference: None,
            pending: None,
            op_seq: 0,
            settled_keys: Arc::default(),
            history: Arc::default(),
        })
    }

    /// Use a hold validity other than seven days (e.g. a card network's shorter window).
    pub fn with_hold_validity(mut self, validity: Duration) -> OmsResult<Payment> {
        if validity.millis() <= 0 {
            return Err(OmsError::invalid(
                "hold_validity",
                "must be a positive duration",
            ));
        }
        self.hold_validity = validity;
        Ok(self)
    }

    /// The payment id.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// What the payment is for (order number).
    pub fn reference(&self) -> &str {
        &self.reference
    }
    /// The payment-method token.
    pub fn method(&self) -> &str {
        &self.method
    }
    /// The amount requested.
    pub fn amount(&self) -> Money {
        self.amount
    }
    /// The currency of every bucket.
    pub fn currency(&self) -> Currency {
        self.amount.currency()
    }
    /// The current status.
    pub fn status(&self) -> PaymentStatus {
        self.status
    }
    /// The amount the gateway put on hold.
    pub fn authorized(&self) -> Money {
        self.authorized
    }
    /// The amount taken from the hold.
    pub fn captured(&self) -> Money {
        self.captured
    }
    /// The amount given back out of what was captured.
    pub fn refunded(&self) -> Money {
        self.refunded
    }
    /// The part of the hold released without capture (void, expiry, final capture remainder).
    pub fn voided(&self) -> Money {
        self.released
    }
    /// How long a hold stays capturable.
    pub fn hold_validity(&self) -> Duration {
        self.hold_validity
    }
    /// When the hold was placed.
    pub fn authorized_at(&self) -> Option<Timestamp> {
        self.authorized_at
    }
    /// When the hold lapses.
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.expires_at
    }
    /// The gateway's id for the authorization.
    pub fn gateway_reference(&self) -> Option<&str> {
        self.gateway_reference.as_deref()
    }
    /// The gateway call awaiting its outcome, if any.
    pub fn pending(&self) -> Option<&PendingCall> {
        self.pending.as_ref()
    }
    /// Every move so far.
    pub fn history(&self) -> &[PaymentTransition] {
        &self.history
    }

    /// What may still be captured: authorized − captured − released.
    pub fn capturable(&self) -> OmsResult<Money> {
        self.authorized
            .checked_sub(&self.captured)?
            .checked_sub(&self.released)
    }

    /// What may still be refunded: captured − refunded.
    pub fn refundable(&self) -> OmsResult<Money> {
        self.captured.checked_sub(&self.refunded)
    }

    /// True when the hold has lapsed at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// Check the bucket invariants; `Ok` on every payment built by this module.
    pub fn check_invariants(&self) -> OmsResult<()> {
        let zero = Money::zero(self.currency());
        let exceeded = |reason: &str| {
            Err(OmsError::PaymentAmountExceeded {
                reason: reason.into(),
            })
        };
        for m in [self.authorized, self.captured, self.refunded, self.released] {
            if m.checked_cmp(&zero)?.is_lt() {
                return exceeded("negative bucket");
            }
        }
        if self.authorized.checked_cmp(&self.amount)?.is_gt() {
            return exceeded("authorized > amount");
        }
        if self
            .captured
            .checked_add(&self.released)?
            .checked_cmp(&self.authorized)?
            .is_gt()
        {
            return exceeded("captured + released > authorized");
        }
        if self.refunded.checked_cmp(&self.captured)?.is_gt() {
            return exceeded("refunded > captured");
        }
        Ok(())
    }

    // ---- moves ---------------------------------------------------------------------------

    fn move_to(
        &mut self,
        event: PaymentEvent,
        amount: Option<Money>,
        detail: &str,
        now: Timestamp,
    ) -> OmsResult<()> {
        let to = self.allowed(event)?;
        Arc::make_mut(&mut self.history).push(PaymentTransition {
            from: self.status,
            event,
            to,
            amount,
            detail: detail.into(),
            at: now,
        });
        self.status = to;
        Ok(())
    }

    /// The target of `event` from the current status, or [`OmsError::InvalidTransition`].
    pub fn allowed(&self, event: PaymentEvent) -> OmsResult<PaymentStatus> {
        next_status(self.status, event).ok_or_else(|| OmsError::InvalidTransition {
            from: format!("payment {}", self.status),
            event: event.to_string(),
        })
    }

    fn guard(&self, event: PaymentEvent, reason: impl Into<String>) -> OmsError {
        OmsError::GuardFailed {
            from: format!("payment {}", self.status),
            event: event.to_string(),
            reason: reason.into(),
        }
    }

    fn no_pending(&self, event: PaymentEvent) -> OmsResult<()> {
        match &self.pending {
            None => Ok(()),
            Some(p) => Err(self.guard(
                event,
                format!("{} call {} is still unresolved", p.op.as_str(), p.key),
            )),
        }
    }

    fn same_currency(&self, m: &Money) -> OmsResult<()> {
        if m.currency() == self.currency() {
            Ok(())
        } else {
            Err(OmsError::CurrencyMismatch {
                expected: self.currency().code().into(),
                found: m.currency().code().into(),
            })
        }
    }

    fn positive(m: &Money) -> OmsResult<()> {
        if m.is_zero() || m.is_negative() {
            Err(OmsError::InvalidAmount {
                input: m.amount().to_string(),
                reason: "must be positive".into(),
            })
        } else {
            Ok(())
        }
    }

    fn next_key(&mut self, op: GatewayOp) -> String {
        self.op_seq = self.op_seq.saturating_add(1);
        format!("{}:{}:{}", self.id, op.as_str(), self.op_seq)
    }

    fn take_pending(&mut self, op: GatewayOp, key: &str) -> OmsResult<PendingCall> {
        match &self.pending {
            Some(p) if p.op == op && p.key == key => {}
            _ => {
                return Err(OmsError::NotFound {
                    kind: format!("pending {} call", op.as_str()),
                    id: key.to_owned(),
                })
            }
        }
        Arc::make_mut(&mut self.settled_keys).push(key.into());
        self.pending.take().ok_or_else(|| OmsError::NotFound {
            kind: "pending call".into(),
            id: key.to_owned(),
        })
    }

    /// True when the outcome of the call with `key` was already recorded, so a duplicate
    /// gateway response must change nothing.
    pub fn is_settled(&self, key: &str) -> bool {
        self.settled_keys.iter().any(|k| k == key)
    }

    /// Initiated → Authorizing: the authorization call is about to be sent. Returns the call
    /// (with its idempotency key) to send.
    pub fn begin_authorization(&mut self, now: Timestamp) -> OmsResult<PendingCall> {
        let event = E::SendAuthorization;
        self.allowed(event)?;
        self.no_pending(event)?;
        let key = self.next_key(GatewayOp::Authorize);
        let call = PendingCall {
            op: GatewayOp::Authorize,
            key: key.clone(),
            amount: self.amount,
            final_capture: false,
        };
        self.move_to(event, Some(self.amount), &key, now)?;
        self.pending = Some(call.clone());
        Ok(call)
    }

    /// Authorizing → Authorized: the gateway approved `approved` (at most the amount asked; a
    /// partial approval holds less). The hold's validity runs from `now`.
    pub fn record_authorized(
        &mut self,
        key: &str,
        approved: Money,
        gateway_reference: &str,
        now: Timestamp,
    ) -> OmsResult<()> {
        if self.is_settled(key) {
            return Ok(());
        }
        self.same_currency(&approved)?;
        Self::positive(&approved)?;
        self.allowed(E::AuthSuccess)?;
        if approved.checked_cmp(&self.amount)?.is_gt() {
            return Err(OmsError::PaymentAmountExceeded {
                reason: format!("approved {approved} is more than the {} asked", self.amount),
            });
        }
        self.take_pending(GatewayOp::Authorize, key)?;
        self.move_to(E::AuthSuccess, Some(approved), gateway_reference, now)?;
        self.authorized = approved;
        self.gateway_reference = Some(gateway_reference.into());
        self.authorized_at = Some(now);
        self.expires_at = Some(now.plus(self.hold_validity));
        Ok(())
    }

    /// Authorized → AwaitingCapture: the hold is in place; captures may start.
    pub fn place_hold(&mut self, now: Timestamp) -> OmsResult<()> {
        self.allowed(E::HoldPlaced)?;
        self.no_pending(E::HoldPlaced)?;
        let detail = self
            .expires_at
            .map(|at| format!("valid until {at}"))
            .unwrap_or_default();
        self.move_to(E::HoldPlaced, None, &detail, now)
    }

    /// Authorizing → Declined: the gateway declined the authorization.
    pub fn record_declined(&mut self, key: &str, reason: &str, now: Timestamp) -> OmsResult<()> {
        if self.is_settled(key) {
            return Ok(());
        }
        self.allowed(E::AuthDeclined)?;
        self.take_pending(GatewayOp::Authorize, key)?;
        self.move_to(E::AuthDeclined, None, reason, now)
    }

    /// AwaitingCapture → Capturing: a capture of `amount` is about to be sent. `final_capture`
    /// releases whatever remains of the hold when it succeeds. Refused after the hold expired
    /// ([`OmsError::AuthorizationExpired`]) or beyond the capturable amount
    /// ([`OmsError::PaymentAmountExceeded`]).
    pub fn begin_capture(
        &mut self,
        amount: Money,
        final_capture: bool,
        now: Timestamp,
    ) -> OmsResult<PendingCall> {
        let event = E::CaptureTriggered;
        self.same_currency(&amount)?;
        Self::positive(&amount)?;
        self.allowed(event)?;
        self.no_pending(event)?;
        if self.is_expired(now) {
            return Err(OmsError::AuthorizationExpired {
                id: self.id.to_string(),
            });
        }
        let capturable = self.capturable()?;
        if amount.checked_cmp(&capturable)?.is_gt() {
            return Err(OmsError::PaymentAmountExceeded {
                reason: format!("capture {amount} is more than the {capturable} still held"),
            });
        }
        let key = self.next_key(GatewayOp::Capture);
        let call = PendingCall {
            op: GatewayOp::Capture,
            key: key.clone(),
            amount,
            final_capture,
        };
        self.move_to(event, Some(amount), &key, now)?;
        self.pending = Some(call.clone());
        Ok(call)
    }

    /// Capturing → AwaitingCapture (more may follow) or Captured (final capture, or nothing
    /// left): the pending capture succeeded.
    pub fn record_capture_succeeded(
        &mut self,
        key: &str,
        gateway_reference: &str,
        now: Timestamp,
    ) -> OmsResult<()> {
        if self.is_settled(key) {
            return Ok(());
        }
        if self.status != S::Capturing {
            return Err(OmsError::InvalidTransition {
                from: format!("payment {}", self.status),
                event: E::CaptureSuccess.to_string(),
            });
        }
        let call = match &self.pending {
            Some(p) if p.op == GatewayOp::Capture && p.key == key => p.clone(),
            _ => {
                return Err(OmsError::NotFound {
                    kind: "pending capture call".into(),
                    id: key.to_owned(),
                })
            }
        };
        let captured = self.captured.checked_add(&call.amount)?;
        let remainder = self
            .authorized
            .checked_sub(&captured)?
            .checked_sub(&self.released)?;
        if remainder.is_negative() {
            return Err(OmsError::PaymentAmountExceeded {
                reason: format!("capture {} exceeds the hold", call.amount),
            });
        }
        self.take_pending(GatewayOp::Capture, key)?;
        self.captured = captured;
        if call.final_capture || remainder.is_zero() {
            self.move_to(E::CaptureSuccess, Some(call.amount), gateway_reference, now)?;
            self.released = self.released.checked_add(&remainder)?;
        } else {
            self.move_to(
                E::PartialCaptureSuccess,
                Some(call.amount),
                gateway_reference,
                now,
            )?;
        }
        Ok(())
    }

    /// Capturing → CaptureFailed: the gateway refused the pending capture.
    pub fn record_capture_failed(
        &mut self,
        key: &str,
        reason: &str,
        now: Timestamp,
    ) -> OmsResult<()> {
        if self.is_settled(key) {
            return Ok(());
        }
        self.allowed(E::CaptureFailed)?;
        self.take_pending(GatewayOp::Capture, key)?;
        self.move_to(E::CaptureFailed, None, reason, now)
    }

    /// Declined → Failed: the decline is final and the customer is told.
    pub fn fail_declined(&mut self, reason: &str, now: Timestamp) -> OmsResult<()> {
        self.move_to(E::NotifyCustomer, None, reason, now)
    }

    /// CaptureFailed → Failed: the failed capture is escalated. What is left of the hold is
    /// released; money captured by earlier partial captures stays refundable.
    pub fn escalate(&mut self, reason: &str, now: Timestamp) -> OmsResult<()> {
        self.allowed(E::Escalate)?;
        let remainder = self.capturable()?;
        self.move_to(E::Escalate, Some(remainder), reason, now)?;
        self.released = self.released.checked_add(&remainder)?;
        Ok(())
    }

    /// Authorized / AwaitingCapture → (void call pending): release the hold, allowed only when
    /// nothing was captured (after a partial capture, use [`Payment::release_remainder`]).
    pub fn begin_void(&mut self, now: Timestamp) -> OmsResult<PendingCall> {
        let event = E::Void;
        self.allowed(event)?;
        self.no_pending(event)?;
        if !self.captured.is_zero() {
            return Err(self.guard(
                event,
                "part of the hold was captured: release the remainder instead",
            ));
        }
        if self.is_expired(now) {
            return Err(OmsError::AuthorizationExpired {
                id: self.id.to_string(),
            });
        }
        let key = self.next_key(GatewayOp::Void);
        let call = PendingCall {
            op: GatewayOp::Void,
            key,
            amount: self.authorized,
            final_capture: false,
        };
        self.pending = Some(call.clone());
        Ok(call)
    }

    /// → Voided: the gateway released the hold.
    pub fn record_voided(&mut self, key: &str, now: Timestamp) -> OmsResult<()> {
        if self.is_settled(key) {
            return Ok(());
        }
        self.allowed(E::Void)?;
        self.take_pending(GatewayOp::Void, key)?;
        let remainder = self.capturable()?;
        self.move_to(E::Void, Some(remainder), key, now)?;
        self.released = self.released.checked_add(&remainder)?;
        Ok(())
    }

    /// AwaitingCapture → Captured: no more captures; what is left of the hold is released.
    /// Requires something captured (otherwise it is a void).
    pub fn release_remainder(&mut self, now: Timestamp) -> OmsResult<()> {
        let event = E::ReleaseRemainder;
        self.allowed(event)?;
        self.no_pending(event)?;
        if self.captured.is_zero() {
            return Err(self.guard(event, "nothing was captured: void the payment instead"));
        }
        let remainder = self.capturable()?;
        self.move_to(event, Some(remainder), "", now)?;
        self.released = self.released.checked_add(&remainder)?;
        Ok(())
    }

    /// The hold lapses at `now`: Authorized / AwaitingCapture → Expired when nothing was
    /// captured, → Captured (remainder released) after partial captures. Refused before the
    /// expiry instant.
    pub fn expire(&mut self, now: Timestamp) -> OmsResult<()> {
        let event = if self.captured.is_zero() {
            E::Expire
        } else {
            E::ReleaseRemainder
        };
        self.allowed(event)?;
        self.no_pending(event)?;
        if !self.is_expired(now) {
            return Err(self.guard(event, "the hold has not expired yet"));
        }
        let remainder = self.capturable()?;
        self.move_to(event, Some(remainder), "hold expired", now)?;
        self.released = self.released.checked_add(&remainder)?;
        Ok(())
    }

    /// Captured → Completed: settled.
    pub fn complete(&mut self, now: Timestamp) -> OmsResult<()> {
        self.allowed(E::Complete)?;
        self.no_pending(E::Complete)?;
        self.move_to(E::Complete, None, "", now)
    }

    /// A refund of `amount` is about to be sent; refused beyond what is refundable.
    pub fn begin_refund(&mut self, amount: Money) -> OmsResult<PendingCall> {
        let event = E::Refund;
        self.same_currency(&amount)?;
        Self::positive(&amount)?;
        self.allowed(event)?;
        self.no_pending(event)?;
        let refundable = self.refundable()?;
        if amount.checked_cmp(&refundable)?.is_gt() {
            return Err(OmsError::PaymentAmountExceeded {
                reason: format!("refund {amount} is more than the {refundable} refundable"),
            });
        }
        let key = self.next_key(GatewayOp::Refund);
        let call = PendingCall {
            op: GatewayOp::Refund,
            key,
            amount,
            final_capture: false,
        };
        self.pending = Some(call.clone());
        Ok(call)
    }

    /// The pending refund succeeded.
    pub fn record_refunded(
        &mut self,
        key: &str,
        gateway_reference: &str,
        now: Timestamp,
    ) -> OmsResult<()> {
        if self.is_settled(key) {
            return Ok(());
        }
        self.allowed(E::Refund)?;
        let amount = match &self.pending {
            Some(p) if p.op == GatewayOp::Refund && p.key == key => p.amount,
            _ => {
                return Err(OmsError::NotFound {
                    kind: "pending refund call".into(),
                    id: key.to_owned(),
                })
            }
        };
        let refunded = self.refunded.checked_add(&amount)?;
        if refunded.checked_cmp(&self.captured)?.is_gt() {
            return Err(OmsError::PaymentAmountExceeded {
                reason: format!("refund {amount} exceeds what was captured"),
            });
        }
        self.take_pending(GatewayOp::Refund, key)?;
        self.move_to(E::Refund, Some(amount), gateway_reference, now)?;
        self.refunded = refunded;
        Ok(())
    }

    /// The pending void or refund was refused by the gateway: nothing moves and the call is
    /// dropped (the processor's outcome carries the decline).
    pub fn record_call_refused(&mut self, key: &str) -> OmsResult<PendingCall> {
        let op = match &self.pending {
            Some(p) if p.key == key && matches!(p.op, GatewayOp::Void | GatewayOp::Refund) => p.op,
            _ => {
                return Err(OmsError::NotFound {
                    kind: "pending void or refund call".into(),
                    id: key.to_owned(),
                })
            }
        };
        self.take_pending(op, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: Timestamp = Timestamp(1_000_000);

    fn usd(s: &str) -> Money {
        Money::parse(s, Currency::USD).unwrap()
    }

    fn fresh() -> Payment {
        Payment::new("pay-1", "ORD-1", "card_1234", usd("100.00")).unwrap()
    }

    fn key(p: &Payment) -> String {
        p.pending().unwrap().key.clone()
    }

    fn capture(p: &mut Payment, amount: &str, final_capture: bool) {
        let call = p.begin_capture(usd(amount), final_capture, T0).unwrap();
        p.record_capture_succeeded(&call.key, "cap", T0).unwrap();
    }

    /// A payment brought to `status` through the machine's own methods. `AwaitingCapture`
    /// has nothing captured; `Capturing` has a non-final capture of 30.00 pending; `Failed`
    /// went through a capture failure after capturing 30.00.
    fn at(status: PaymentStatus) -> Payment {
        let mut p = fresh();
        if status == S::Initiated {
            return p;
        }
        p.begin_authorization(T0).unwrap();
        if status == S::Authorizing {
            return p;
        }
        if status == S::Declined {
            p.record_declined(&key(&p), "card_declined", T0).unwrap();
            return p;
        }
        p.record_authorized(&key(&p), usd("100.00"), "auth_1", T0)
            .unwrap();
        match status {
            S::Authorized => return p,
            S::Expired => {
                p.expire(T0.plus(DEFAULT_HOLD_VALIDITY)).unwrap();
                return p;
            }
            _ => p.place_hold(T0).unwrap(),
        }
        match status {
            S::AwaitingCapture => {}
            S::Capturing => {
                p.begin_capture(usd("30.00"), false, T0).unwrap();
            }
            S::Captured => capture(&mut p, "100.00", true),
            S::Completed => {
                capture(&mut p, "100.00", true);
                p.complete(T0).unwrap();
            }
            S::CaptureFailed | S::Failed => {
                capture(&mut p, "30.00", false);
                let call = p.begin_capture(usd("70.00"), true, T0).unwrap();
                p.record_capture_failed(&call.key, "capture_failed", T0)
                    .unwrap();
                if status == S::Failed {
                    p.escalate("escalated", T0).unwrap();
                }
            }
            S::Voided => {
                let call = p.begin_void(T0).unwrap();
                p.record_voided(&call.key, T0).unwrap();
            }
            _ => unreachable!("handled above"),
        }
        assert_eq!(p.status(), status);
        p
    }

    /// Fire `event` through the method that performs it.
    fn fire(p: &mut Payment, event: PaymentEvent) -> OmsResult<()> {
        let k = p.pending().map(|c| c.key.clone()).unwrap_or_default();
        match event {
            E::SendAuthorization => p.begin_authorization(T0).map(drop),
            E::AuthSuccess => p.record_authorized(&k, usd("100.00"), "auth_1", T0),
            E::AuthDeclined => p.record_declined(&k, "declined", T0),
            E::HoldPlaced => p.place_hold(T0),
            E::CaptureTriggered => p.begin_capture(usd("10.00"), false, T0).map(drop),
            E::CaptureSuccess | E::PartialCaptureSuccess => {
                p.record_capture_succeeded(&k, "cap", T0)
            }
            E::CaptureFailed => p.record_capture_failed(&k, "failed", T0),
            E::NotifyCustomer => p.fail_declined("declined", T0),
            E::Escalate => p.escalate("escalated", T0),
            E::Complete => p.complete(T0),
            E::Void => {
                let call = p.begin_void(T0)?;
                p.record_voided(&call.key, T0)
            }
            E::ReleaseRemainder => p.release_remainder(T0),
            E::Expire => p.expire(T0.plus(DEFAULT_HOLD_VALIDITY)),
            E::Refund => {
                let call = p.begin_refund(usd("10.00"))?;
                p.record_refunded(&call.key, "ref", T0)
            }
        }
    }

    #[test]
    fn every_seed_edge_is_walked() {
        // Seed 000 §2, edge by edge, by the seed's own state names.
        let seed = [
            ("Payment_Initiated", "send_authorization", "Authorizing"),
            ("Authorizing", "auth_success", "Authorized"),
            ("Authorizing", "auth_declined", "Declined"),
            ("Authorized", "hold_placed", "AwaitingCapture"),
            ("AwaitingCapture", "capture_triggered", "Capturing"),
            ("Capturing", "capture_success", "Captured"),
            ("Capturing", "capture_failed", "CaptureFailed"),
            ("Declined", "notify_customer", "Payment_Failed"),
            ("CaptureFailed", "escalate", "Payment_Failed"),
            ("Captured", "complete", "Payment_Completed"),
        ];
        assert_eq!(seed.len(), SEED_EDGES);
        let by_seed_name = |name: &str| {
            PaymentStatus::ALL
                .into_iter()
                .find(|s| s.seed_name() == Some(name))
                .unwrap()
        };
        for (i, (from, event, to)) in seed.iter().enumerate() {
            let (from, to) = (by_seed_name(from), by_seed_name(to));
            let row = TRANSITIONS[i];
            assert_eq!((row.0, row.1.as_str(), row.2), (from, *event, to));
            let mut p = at(from);
            if from == S::Capturing && to == S::Captured {
                // The seed's capture_success is the last capture: make it final.
                p = at(S::AwaitingCapture);
                p.begin_capture(usd("30.00"), true, T0).unwrap();
            }
            fire(&mut p, row.1).unwrap();
            assert_eq!(p.status(), to, "{from} --{event}--> {to}");
            let last = p.history().last().unwrap();
            assert_eq!((last.from, last.event, last.to), row);
            p.check_invariants().unwrap();
        }
    }

    #[test]
    fn every_table_edge_is_walked() {
        for &(from, event, to) in TRANSITIONS {
            let mut p = match (from, event) {
                (S::Capturing, E::CaptureSuccess) => {
                    let mut p = at(S::AwaitingCapture);
                    p.begin_capture(usd("30.00"), true, T0).unwrap();
                    p
                }
                (S::AwaitingCapture, E::ReleaseRemainder | E::Refund) => {
                    let mut p = at(S::AwaitingCapture);
                    capture(&mut p, "30.00", false);
                    p
                }
                _ => at(from),
            };
            fire(&mut p, event).unwrap_or_else(|e| panic!("{from} --{event}-->: {e}"));
            assert_eq!(p.status(), to, "{from} --{event}--> {to}");
            p.check_invariants().unwrap();
        }
    }

    #[test]
    fn edges_not_drawn_are_refused() {
        let mut refused = 0;
        for from in PaymentStatus::ALL {
            for event in PaymentEvent::ALL {
                if next_status(from, event).is_some() {
                    continue;
                }
                let mut p = at(from);
                let before = p.clone();
                let err = fire(&mut p, event).unwrap_err();
                assert_eq!(err.code(), "invalid_transition", "{from} --{event}: {err}");
                assert_eq!(p, before, "a refused event changed {from}");
                refused += 1;
            }
        }
        assert_eq!(
            refused,
            PaymentStatus::ALL.len() * PaymentEvent::ALL.len() - TRANSITIONS.len()
        );
    }

    #[test]
    fn partial_and_multiple_captures_then_final_releases_remainder() {
        let mut p = at(S::AwaitingCapture);
        capture(&mut p, "30.00", false);
        assert_eq!(p.status(), S::AwaitingCapture);
        capture(&mut p, "20.00", false);
        assert_eq!(p.capturable().unwrap(), usd("50.00"));
        capture(&mut p, "10.00", true);
        assert_eq!(p.status(), S::Captured);
        assert_eq!(p.captured(), usd("60.00"));
        assert_eq!(p.voided(), usd("40.00"));
        assert_eq!(p.capturable().unwrap(), usd("0.00"));

        // Capturing exactly the rest without the final flag also ends capturing.
        let mut q = at(S::AwaitingCapture);
        capture(&mut q, "40.00", false);
        capture(&mut q, "60.00", false);
        assert_eq!(q.status(), S::Captured);
        assert_eq!(q.voided(), usd("0.00"));
    }

    #[test]
    fn capture_beyond_the_hold_is_refused() {
        let mut p = at(S::AwaitingCapture);
        capture(&mut p, "90.00", false);
        let err = p.begin_capture(usd("10.01"), false, T0).unwrap_err();
        assert_eq!(err.code(), "payment_amount_exceeded");
        assert_eq!(p.status(), S::AwaitingCapture);
        let bad = [
            (usd("0.00"), "invalid_amount"),
            (usd("-1.00"), "invalid_amount"),
            (
                Money::parse("1", Currency::JPY).unwrap(),
                "currency_mismatch",
            ),
        ];
        for (amount, code) in bad {
            assert_eq!(p.begin_capture(amount, false, T0).unwrap_err().code(), code);
        }
    }

    #[test]
    fn capture_after_expiry_is_refused_and_expiry_is_configurable() {
        let mut p = at(S::AwaitingCapture);
        assert_eq!(p.expires_at(), Some(T0.plus(Duration::days(7))));
        let late = T0.plus(Duration::days(7));
        let err = p.begin_capture(usd("1.00"), false, late).unwrap_err();
        assert_eq!(err, OmsError::AuthorizationExpired { id: "pay-1".into() });
        // One millisecond earlier is still fine.
        p.begin_capture(usd("1.00"), false, Timestamp(late.0 - 1))
            .unwrap();

        let mut short = fresh().with_hold_validity(Duration::days(1)).unwrap();
        let call = short.begin_authorization(T0).unwrap();
        short
            .record_authorized(&call.key, usd("100.00"), "a", T0)
            .unwrap();
        short.place_hold(T0).unwrap();
        let a_day_later = T0.plus(Duration::days(1));
        assert_eq!(
            short
                .begin_capture(usd("1.00"), false, a_day_later)
                .unwrap_err()
                .code(),
            "authorization_expired"
        );
        assert_eq!(
            fresh().with_hold_validity(Duration(0)).unwrap_err().code(),
            "invalid_field"
        );
    }

    #[test]
    fn expiry_only_after_the_hold_lapses() {
        let mut p = at(S::AwaitingCapture);
        let err = p.expire(T0.plus(Duration::days(6))).unwrap_err();
        assert_eq!(err.code(), "guard_failed");
        capture(&mut p, "25.00", false);
        p.expire(T0.plus(Duration::days(8))).unwrap();
        // Something was captured: the hold's remainder is released and the capture stands.
        assert_eq!(p.status(), S::Captured);
        assert_eq!((p.captured(), p.voided()), (usd("25.00"), usd("75.00")));
    }

    #[test]
    fn refunds_partial_and_several_up_to_captured() {
        let mut p = at(S::AwaitingCapture);
        capture(&mut p, "60.00", true);
        for amount in ["10.00", "20.00", "30.00"] {
            let call = p.begin_refund(usd(amount)).unwrap();
            p.record_refunded(&call.key, "ref", T0).unwrap();
        }
        assert_eq!(p.refunded(), usd("60.00"));
        let err = p.begin_refund(usd("0.01")).unwrap_err();
        assert_eq!(err.code(), "payment_amount_exceeded");
        p.complete(T0).unwrap();
        assert_eq!(p.status(), S::Completed);
    }

    #[test]
    fn void_needs_nothing_captured() {
        let mut p = at(S::AwaitingCapture);
        capture(&mut p, "1.00", false);
        assert_eq!(p.begin_void(T0).unwrap_err().code(), "guard_failed");
        p.release_remainder(T0).unwrap();
        assert_eq!(p.voided(), usd("99.00"));
        let mut q = at(S::AwaitingCapture);
        assert_eq!(q.release_remainder(T0).unwrap_err().code(), "guard_failed");
        let call = q.begin_void(T0).unwrap();
        q.record_voided(&call.key, T0).unwrap();
        assert_eq!((q.status(), q.voided()), (S::Voided, usd("100.00")));
    }

    #[test]
    fn partial_authorization_and_over_approval() {
        let mut p = fresh();
        let call = p.begin_authorization(T0).unwrap();
        let err = p
            .record_authorized(&call.key, usd("100.01"), "a", T0)
            .unwrap_err();
        assert_eq!(err.code(), "payment_amount_exceeded");
        assert_eq!(p.status(), S::Authorizing);
        p.record_authorized(&call.key, usd("80.00"), "a", T0)
            .unwrap();
        p.place_hold(T0).unwrap();
        assert_eq!(p.capturable().unwrap(), usd("80.00"));
    }

    #[test]
    fn pending_call_blocks_other_operations_and_duplicates_change_nothing() {
        let mut p = at(S::AwaitingCapture);
        let call = p.begin_capture(usd("10.00"), false, T0).unwrap();
        assert_eq!(call.key, "pay-1:capture:2");
        assert_eq!(
            p.record_capture_succeeded("other", "cap", T0)
                .unwrap_err()
                .code(),
            "not_found"
        );
        p.record_capture_succeeded(&call.key, "cap", T0).unwrap();
        let once = p.clone();
        // The same response delivered again: already settled, nothing moves.
        p.record_capture_succeeded(&call.key, "cap", T0).unwrap();
        assert_eq!(p, once);
        let refund = p.begin_refund(usd("5.00")).unwrap();
        assert_eq!(
            p.begin_capture(usd("1.00"), false, T0).unwrap_err().code(),
            "guard_failed"
        );
        assert_eq!(p.complete(T0).unwrap_err().code(), "invalid_transition");
        p.record_call_refused(&refund.key).unwrap();
        assert!(p.pending().is_none());
        assert_eq!(p.refunded(), usd("0.00"));
    }

    #[test]
    fn bad_construction_is_typed() {
        let m = usd("1.00");
        assert_eq!(
            Payment::new("", "o", "c", m).unwrap_err().code(),
            "missing_field"
        );
        assert_eq!(
            Payment::new("p", " ", "c", m).unwrap_err().code(),
            "missing_field"
        );
        assert_eq!(
            Payment::new("p", "o", "c", usd("0")).unwrap_err().code(),
            "invalid_amount"
        );
    }

    #[test]
    fn stored_form_round_trips_and_is_checked() {
        let mut p = at(S::AwaitingCapture);
        capture(&mut p, "40.00", false);
        let json = serde_json::to_string(&p).unwrap();
        let back: Payment = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        // A record claiming more captured than authorized does not load.
        let tampered = json.replace(
            r#""captured":{"amount":"40.00""#,
            r#""captured":{"amount":"140.00""#,
        );
        assert_ne!(tampered, json);
        let err = serde_json::from_str::<Payment>(&tampered).unwrap_err();
        assert!(
            err.to_string().contains("captured + released > authorized"),
            "{err}"
        );
    }

    #[test]
    fn mermaid_lists_every_transition_and_terminal() {
        let text = mermaid();
        assert!(text.starts_with("stateDiagram-v2\n    [*] --> Initiated"));
        assert_eq!(
            text.lines().filter(|l| l.contains(" --> ")).count(),
            1 + TRANSITIONS.len() + 4
        );
        assert!(text.contains("    Capturing --> CaptureFailed: capture_failed\n"));
        assert!(text.contains("    Voided --> [*]\n"));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Authorize(u8),
        Decline,
        Capture(u16, bool),
        CaptureFail(u16),
        Void,
        Refund(u16),
        RefundRefused(u16),
        Advance(u8),
        Expire,
        Release,
        Escalate,
        Complete,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u8..=100).prop_map(Op::Authorize),
            Just(Op::Decline),
            (0u16..12_000, any::<bool>()).prop_map(|(a, f)| Op::Capture(a, f)),
            (0u16..12_000).prop_map(Op::CaptureFail),
            Just(Op::Void),
            (0u16..12_000).prop_map(Op::Refund),
            (0u16..12_000).prop_map(Op::RefundRefused),
            (0u8..5).prop_map(Op::Advance),
            Just(Op::Expire),
            Just(Op::Release),
            Just(Op::Escalate),
            Just(Op::Complete),
        ]
    }

    fn apply(p: &mut Payment, op: &Op, now: &mut Timestamp) -> OmsResult<()> {
        let cents = |c: u16| Money::from_minor(i64::from(c), Currency::USD);
        match *op {
            Op::Authorize(pct) => {
                let call = p.begin_authorization(*now)?;
                let approved = p.amount().checked_mul_rate(
                    rust_decimal::Decimal::new(i64::from(pct), 2),
                    crate::money::Rounding::Up,
                )?;
                p.record_authorized(&call.key, approved, "auth", *now)?;
                p.place_hold(*now)
            }
            Op::Decline => {
                let call = p.begin_authorization(*now)?;
                p.record_declined(&call.key, "declined", *now)
            }
            Op::Capture(c, final_capture) => {
                let call = p.begin_capture(cents(c), final_capture, *now)?;
                p.record_capture_succeeded(&call.key, "cap", *now)
            }
            Op::CaptureFail(c) => {
                let call = p.begin_capture(cents(c), false, *now)?;
                p.record_capture_failed(&call.key, "failed", *now)
            }
            Op::Void => {
                let call = p.begin_void(*now)?;
                p.record_voided(&call.key, *now)
            }
            Op::Refund(c) => {
                let call = p.begin_refund(cents(c))?;
                p.record_refunded(&call.key, "ref", *now)
            }
            Op::RefundRefused(c) => {
                let call = p.begin_refund(cents(c))?;
                p.record_call_refused(&call.key).map(drop)
            }
            Op::Advance(days) => {
                *now = now.plus(Duration::days(i64::from(days) * 2));
                Ok(())
            }
            Op::Expire => p.expire(*now),
            Op::Release => p.release_remainder(*now),
            Op::Escalate => p.escalate("x", *now),
            Op::Complete => p.complete(*now),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever sequence of operations is attempted, the buckets keep
        /// `captured + voided <= authorized <= amount` and `refunded <= captured`, and a
        /// refused operation changes nothing.
        #[test]
        fn buckets_hold_under_any_sequence(ops in proptest::collection::vec(op(), 1..40)) {
            let mut p = fresh();
            let mut now = T0;
            for op in &ops {
                let before = p.clone();
                let buckets = |p: &Payment| (p.authorized(), p.captured(), p.refunded(), p.voided());
                if let Err(e) = apply(&mut p, op, &mut now) {
                    prop_assert!(OmsError::CODES.contains(&e.code()));
                    // Only the machine's successful moves shift money.
                    prop_assert_eq!(buckets(&p), buckets(&before));
                }
                p.check_invariants().map_err(|e| TestCaseError::fail(e.to_string()))?;
                // A pending call left by a refused second step is resolved as refused, so the
                // sequence can go on.
                if let Some(call) = p.pending().cloned() {
                    match call.op {
                        GatewayOp::Authorize => p.record_declined(&call.key, "x", now).unwrap(),
                        GatewayOp::Capture => p.record_capture_failed(&call.key, "x", now).unwrap(),
                        GatewayOp::Void | GatewayOp::Refund => {
                            p.record_call_refused(&call.key).unwrap();
                        }
                    }
                }
            }
        }
    }
}
