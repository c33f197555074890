//! The manual fraud review: a record opened from a manual-review decision and closed by a
//! reviewer's approve or reject, with who, why and when.

use serde::{Deserialize, Serialize};

use crate::error::{OmsError, OmsResult};
use crate::fraud::{FraudDecision, FraudVerdict};
use crate::lifecycle::Actor;
use crate::time::Timestamp;

/// Where a manual review stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewStatus {
    /// Waiting for a reviewer.
    Pending,
    /// A reviewer let the order through.
    Approved,
    /// A reviewer refused the order.
    Rejected,
}

/// Who closed a review, why and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewResolution {
    /// The reviewer (staff or system, never the customer).
    pub actor: Actor,
    /// Why.
    pub reason: String,
    /// When.
    pub at: Timestamp,
}

/// A manual fraud review of one order, opened from a [`FraudVerdict::ManualReview`] decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FraudReview {
    reference: String,
    decision: FraudDecision,
    status: ReviewStatus,
    resolution: Option<ReviewResolution>,
}

impl FraudReview {
    /// Open a review for `reference` (the order number); only a manual-review decision opens
    /// one.
    pub fn open(reference: &str, decision: FraudDecision) -> OmsResult<FraudReview> {
        if reference.trim().is_empty() {
            return Err(OmsError::MissingField {
                field: "reference".into(),
            });
        }
        if decision.verdict != FraudVerdict::ManualReview {
            return Err(OmsError::GuardFailed {
                from: "fraud decision".into(),
                event: "open_review".into(),
                reason: format!("verdict is {:?}, not manual review", decision.verdict),
            });
        }
        Ok(FraudReview {
            reference: reference.to_owned(),
            decision,
            status: ReviewStatus::Pending,
            resolution: None,
        })
    }

    /// The order reviewed.
    pub fn reference(&self) -> &str {
        &self.reference
    }
    /// The decision that opened the review.
    pub fn decision(&self) -> &FraudDecision {
        &self.decision
    }
    /// Where the review stands.
    pub fn status(&self) -> ReviewStatus {
        self.status
    }
    /// Who closed it, if closed.
    pub fn resolution(&self) -> Option<&ReviewResolution> {
        self.resolution.as_ref()
    }

    /// The reviewer lets the order through.
    pub fn approve(&mut self, actor: &Actor, reason: &str, at: Timestamp) -> OmsResult<()> {
        self.resolve(ReviewStatus::Approved, "approve", actor, reason, at)
    }

    /// The reviewer refuses the order.
    pub fn reject(&mut self, actor: &Actor, reason: &str, at: Timestamp) -> OmsResult<()> {
        self.resolve(ReviewStatus::Rejected, "reject", actor, reason, at)
    }

    fn resolve(
        &mut self,
        to: ReviewStatus,
        event: &str,
        actor: &Actor,
        reason: &str,
        at: Timestamp,
    ) -> OmsResult<()> {
        if let Actor::Customer(_) = actor {
            return Err(OmsError::Forbidden {
                reason: "a customer cannot resolve a fraud review".into(),
            });
        }
        if reason.trim().is_empty() {
            return Err(OmsError::MissingField {
                field: "reason".into(),
            });
        }
        if self.status != ReviewStatus::Pending {
            return Err(OmsError::InvalidTransition {
                from: format!("review {:?}", self.status).to_lowercase(),
                event: event.into(),
            });
        }
        self.status = to;
        self.resolution = Some(ReviewResolution {
            actor: actor.clone(),
            reason: reason.to_owned(),
            at,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fraud::tests::{addr, clean, input, run};
    use crate::fraud::{assess, FraudConfig};

    const NOW: Timestamp = Timestamp(10_000_000_000);

    #[test]
    fn manual_review_commands() {
        let s = clean();
        s.blacklist(&addr("1 Main St"));
        s.flag_device("dev-1");
        s.add_known_method("c-1", "x");
        let mut i = input();
        i.payment_method = "card_new".into();
        let decision = assess(&i, &s, &FraudConfig::default()).unwrap();
        assert_eq!(decision.verdict, FraudVerdict::ManualReview);
        assert_eq!(
            FraudReview::open("ORD-1", run(&clean()))
                .unwrap_err()
                .code(),
            "guard_failed"
        );
        assert_eq!(
            FraudReview::open("", decision.clone()).unwrap_err().code(),
            "missing_field"
        );
        let mut review = FraudReview::open("ORD-1", decision.clone()).unwrap();
        assert_eq!(review.status(), ReviewStatus::Pending);
        let customer = Actor::Customer("c-1".into());
        let staff = Actor::Staff("s-7".into());
        assert_eq!(
            review
                .approve(&customer, "it's me", NOW)
                .unwrap_err()
                .code(),
            "forbidden"
        );
        assert_eq!(
            review.approve(&staff, " ", NOW).unwrap_err().code(),
            "missing_field"
        );
        review.approve(&staff, "called the customer", NOW).unwrap();
        assert_eq!(review.status(), ReviewStatus::Approved);
        assert_eq!(review.resolution().unwrap().actor, staff);
        assert_eq!(
            review
                .reject(&staff, "changed my mind", NOW)
                .unwrap_err()
                .code(),
            "invalid_transition"
        );
        let mut other = FraudReview::open("ORD-2", decision).unwrap();
        other
            .reject(&Actor::System, "card reported stolen", NOW)
            .unwrap();
        assert_eq!(other.status(), ReviewStatus::Rejected);
        assert_eq!(other.reference(), "ORD-2");
    }
}
