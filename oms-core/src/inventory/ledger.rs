//! The stock ledger of one (sku, warehouse): what is on the shelf, what is held for orders, and
//! the checked moves between those counts.
//!
//! Every move returns a new [`StockLevel`] or an error and never edits in place, so a store can
//! stage the moves of a multi-line operation and write them only when every one succeeded.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{OmsError, OmsResult};
use crate::order::{Sku, MAX_SKU_LEN};

/// A validated warehouse id: 1–64 characters, no control characters, no surrounding whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WarehouseId(String);

impl WarehouseId {
    /// Validate and wrap a warehouse id.
    ///
    /// ```
    /// use oms_core::inventory::WarehouseId;
    /// assert!(WarehouseId::new("WH-NY").is_ok());
    /// assert_eq!(WarehouseId::new(" ").unwrap_err().code(), "invalid_field");
    /// ```
    pub fn new(id: &str) -> OmsResult<WarehouseId> {
        let reason = if id.is_empty() {
            Some("empty")
        } else if id.chars().count() > MAX_SKU_LEN {
            Some("longer than 64 characters")
        } else if id.chars().any(char::is_control) {
            Some("contains a control character")
        } else if id.trim() != id {
            Some("leading or trailing whitespace")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(OmsError::invalid("warehouse", reason)),
            None => Ok(WarehouseId(id.to_owned())),
        }
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WarehouseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for WarehouseId {
    type Error = OmsError;
    fn try_from(s: String) -> OmsResult<Self> {
        WarehouseId::new(&s)
    }
}

impl From<WarehouseId> for String {
    fn from(w: WarehouseId) -> String {
        w.0
    }
}

/// Check a unit count given by a caller: at least 1.
///
/// Bindings receive signed integers; this is where a zero or negative count becomes a typed
/// error rather than a wrapped-around `u64`.
///
/// ```
/// use oms_core::inventory::units;
/// assert_eq!(units(3).unwrap(), 3);
/// assert_eq!(units(0).unwrap_err().code(), "invalid_quantity");
/// assert_eq!(units(-2).unwrap_err().code(), "invalid_quantity");
/// ```
pub fn units(quantity: i64) -> OmsResult<u64> {
    match u64::try_from(quantity) {
        Ok(q) if q > 0 => Ok(q),
        _ => Err(non_positive(quantity)),
    }
}

pub(crate) fn non_positive(quantity: impl fmt::Display) -> OmsError {
    OmsError::InvalidQuantity {
        quantity: quantity.to_string(),
        reason: "must be at least 1".into(),
    }
}

pub(crate) fn positive(quantity: u64) -> OmsResult<u64> {
    if quantity == 0 {
        Err(non_positive(quantity))
    } else {
        Ok(quantity)
    }
}

/// A cycle-count or correction entry for one (sku, warehouse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Adjustment {
    /// A physical count: `on_hand` becomes exactly this many units.
    Count(u64),
    /// A correction: units found (positive) or lost (negative); zero is refused.
    Delta(i64),
}

/// What shape a returned unit is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnCondition {
    /// Fit to sell again: back into `on_hand`.
    Sellable,
    /// Not sellable: counted apart in `damaged`, never available.
    Damaged,
}

/// The counts of one sku in one warehouse.
///
/// Invariant, kept by every move: `reserved + allocated <= on_hand`, so
/// `on_hand = available + reserved + allocated` with `available >= 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StockLevel {
    /// Sellable units physically in the warehouse.
    pub on_hand: u64,
    /// Units held by open reservations (not yet committed).
    pub reserved: u64,
    /// Units committed to orders being fulfilled, still on the shelf until shipped.
    pub allocated: u64,
    /// Returned units that cannot be sold; outside `on_hand`.
    pub damaged: u64,
}

fn ledger_fault(what: &str) -> OmsError {
    // Reached only if a store's records disagree with its own ledger: a corrupted store, not a
    // caller mistake.
    OmsError::Storage {
        reason: format!("stock ledger inconsistency: {what}"),
    }
}

impl StockLevel {
    /// Units free to reserve: `on_hand − reserved − allocated`.
    pub fn available(&self) -> u64 {
        self.on_hand
            .saturating_sub(self.reserved)
            .saturating_sub(self.allocated)
    }

    /// Whether `on_hand = available + reserved + allocated` with `available >= 0` holds.
    pub fn is_consistent(&self) -> bool {
        self.reserved
            .checked_add(self.allocated)
            .is_some_and(|held| held <= self.on_hand)
    }

    fn insufficient(&self, sku: &Sku, warehouse: &WarehouseId, requested: u64) -> OmsError {
        OmsError::InsufficientStock {
            sku: sku.to_string(),
            warehouse: warehouse.to_string(),
            requested,
            available: self.available(),
        }
    }

    /// A receipt of `quantity` sellable units.
    pub fn received(self, quantity: u64) -> OmsResult<StockLevel> {
        let quantity = positive(quantity)?;
        let on_hand = self
            .on_hand
            .checked_add(quantity)
            .ok_or_else(|| OmsError::overflow("stock receipt"))?;
        Ok(StockLevel { on_hand, ..self })
    }

    /// Apply a cycle count or correction. Units held by reservations or allocations cannot be
    /// counted away: dropping `on_hand` below `reserved + allocated` is `InsufficientStock`.
    pub fn adjusted(
        self,
        adjustment: Adjustment,
        sku: &Sku,
        warehouse: &WarehouseId,
    ) -> OmsResult<StockLevel> {
        let target = match adjustment {
            Adjustment::Count(counted) => counted,
            Adjustment::Delta(0) => return Err(non_positive(0)),
            Adjustment::Delta(delta) if delta > 0 => self
                .on_hand
                .checked_add(delta.unsigned_abs())
                .ok_or_else(|| OmsError::overflow("stock adjustment"))?,
            Adjustment::Delta(delta) => {
                let removed = delta.unsigned_abs();
                if removed > self.available() {
                    return Err(self.insufficient(sku, warehouse, removed));
                }
                self.on_hand - removed
            }
        };
        let next = StockLevel {
            on_hand: target,
            ..self
        };
        if !next.is_consistent() {
            return Err(self.insufficient(sku, warehouse, self.on_hand.saturating_sub(target)));
        }
        Ok(next)
    }

    /// Hold `quantity` units, only if that many are available (the conditional decrement).
    pub fn reserved_more(
        self,
        quantity: u64,
        sku: &Sku,
        warehouse: &WarehouseId,
    ) -> OmsResult<StockLevel> {
        let quantity = positive(quantity)?;
        if quantity > self.available() {
            return Err(self.insufficient(sku, warehouse, quantity));
        }
        Ok(StockLevel {
            reserved: self.reserved + quantity,
            ..self
        })
    }

    /// Give back `quantity` reserved units.
    pub fn released(self, quantity: u64) -> OmsResult<StockLevel> {
        let reserved = self
            .reserved
            .checked_sub(quantity)
            .ok_or_else(|| ledger_fault("release exceeds reserved"))?;
        Ok(StockLevel { reserved, ..self })
    }

    /// Move `quantity` units from reserved to allocated (the order is being fulfilled).
    pub fn committed(self, quantity: u64) -> OmsResult<StockLevel> {
        let reserved = self
            .reserved
            .checked_sub(quantity)
            .ok_or_else(|| ledger_fault("commit exceeds reserved"))?;
        let allocated = self
            .allocated
            .checked_add(quantity)
            .ok_or_else(|| OmsError::overflow("stock allocation"))?;
        Ok(StockLevel {
            reserved,
            allocated,
            ..self
        })
    }

    /// Give back `quantity` allocated units (an order cancelled after commitment, before
    /// shipping).
    pub fn deallocated(self, quantity: u64) -> OmsResult<StockLevel> {
        let allocated = self
            .allocated
            .checked_sub(quantity)
            .ok_or_else(|| ledger_fault("deallocation exceeds allocated"))?;
        Ok(StockLevel { allocated, ..self })
    }

    /// `quantity` allocated units left the building: they leave `on_hand` too.
    pub fn consumed(self, quantity: u64) -> OmsResult<StockLevel> {
        let allocated = self
            .allocated
            .checked_sub(quantity)
            .ok_or_else(|| ledger_fault("shipment exceeds allocated"))?;
        let on_hand = self
            .on_hand
            .checked_sub(quantity)
            .ok_or_else(|| ledger_fault("shipment exceeds on hand"))?;
        Ok(StockLevel {
            on_hand,
            allocated,
            ..self
        })
    }

    /// `quantity` units came back from a customer: sellable ones to `on_hand`, damaged ones to
    /// `damaged`.
    pub fn returned(self, quantity: u64, condition: ReturnCondition) -> OmsResult<StockLevel> {
        let quantity = positive(quantity)?;
        let overflow = || OmsError::overflow("stock return");
        Ok(match condition {
            ReturnCondition::Sellable => StockLevel {
                on_hand: self.on_hand.checked_add(quantity).ok_or_else(overflow)?,
                ..self
            },
            ReturnCondition::Damaged => StockLevel {
                damaged: self.damaged.checked_add(quantity).ok_or_else(overflow)?,
                ..self
            },
        })
    }
}

/// One row of the ledger: a sku's counts in one warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockRow {
    /// The sku.
    pub sku: Sku,
    /// The warehouse.
    pub warehouse: WarehouseId,
    /// Its counts.
    pub level: StockLevel,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> (Sku, WarehouseId) {
        (Sku::new("A").unwrap(), WarehouseId::new("WH1").unwrap())
    }

    fn level(on_hand: u64, reserved: u64, allocated: u64) -> StockLevel {
        StockLevel {
            on_hand,
            reserved,
            allocated,
            damaged: 0,
        }
    }

    #[test]
    fn warehouse_ids_are_validated() {
        for bad in ["", " WH", "WH\n1", &"W".repeat(65)] {
            assert_eq!(WarehouseId::new(bad).unwrap_err().code(), "invalid_field");
        }
        assert_eq!(WarehouseId::new("WH-1").unwrap().as_str(), "WH-1");
        let json = serde_json::to_string(&WarehouseId::new("WH-1").unwrap()).unwrap();
        assert_eq!(json, "\"WH-1\"");
        assert!(serde_json::from_str::<WarehouseId>("\"\"").is_err());
    }

    #[test]
    fn moves_keep_the_invariant() {
        let (sku, wh) = key();
        let l = StockLevel::default().received(10).unwrap();
        let l = l.reserved_more(4, &sku, &wh).unwrap();
        assert_eq!((l.available(), l.reserved), (6, 4));
        let l = l.committed(3).unwrap();
        assert_eq!((l.available(), l.reserved, l.allocated), (6, 1, 3));
        let l = l.consumed(3).unwrap();
        assert_eq!((l.on_hand, l.allocated, l.available()), (7, 0, 6));
        let l = l.released(1).unwrap();
        assert_eq!(l, level(7, 0, 0));
        let l = l.returned(2, ReturnCondition::Damaged).unwrap();
        assert_eq!((l.on_hand, l.damaged), (7, 2));
        let l = l.returned(2, ReturnCondition::Sellable).unwrap();
        assert_eq!((l.on_hand, l.damaged, l.available()), (9, 2, 9));
        assert!(l.is_consistent());
    }

    #[test]
    fn conditional_reserve_refuses_more_than_available() {
        let (sku, wh) = key();
        let l = level(5, 2, 1);
        let err = l.reserved_more(3, &sku, &wh).unwrap_err();
        assert_eq!(
            err,
            OmsError::InsufficientStock {
                sku: "A".into(),
                warehouse: "WH1".into(),
                requested: 3,
                available: 2
            }
        );
        assert_eq!(l.reserved_more(2, &sku, &wh).unwrap().available(), 0);
        assert_eq!(
            l.reserved_more(0, &sku, &wh).unwrap_err().code(),
            "invalid_quantity"
        );
    }

    #[test]
    fn cycle_counts_cannot_drop_below_held_units() {
        let (sku, wh) = key();
        let l = level(10, 4, 3);
        assert_eq!(
            l.adjusted(Adjustment::Count(6), &sku, &wh)
                .unwrap_err()
                .code(),
            "insufficient_stock"
        );
        assert_eq!(
            l.adjusted(Adjustment::Count(7), &sku, &wh).unwrap(),
            level(7, 4, 3)
        );
        assert_eq!(
            l.adjusted(Adjustment::Count(12), &sku, &wh).unwrap(),
            level(12, 4, 3)
        );
        assert_eq!(
            l.adjusted(Adjustment::Delta(-4), &sku, &wh)
                .unwrap_err()
                .code(),
            "insufficient_stock"
        );
        assert_eq!(
            l.adjusted(Adjustment::Delta(-3), &sku, &wh).unwrap(),
            level(7, 4, 3)
        );
        assert_eq!(
            l.adjusted(Adjustment::Delta(5), &sku, &wh).unwrap(),
            level(15, 4, 3)
        );
        assert_eq!(
            l.adjusted(Adjustment::Delta(0), &sku, &wh)
                .unwrap_err()
                .code(),
            "invalid_quantity"
        );
        assert_eq!(
            l.adjusted(Adjustment::Delta(i64::MIN), &sku, &wh)
                .unwrap_err()
                .code(),
            "insufficient_stock"
        );
    }

    #[test]
    fn overflow_and_inconsistency_are_errors_not_panics() {
        let l = level(u64::MAX, 0, 0);
        assert_eq!(l.received(1).unwrap_err().code(), "overflow");
        assert_eq!(
            l.returned(1, ReturnCondition::Sellable).unwrap_err().code(),
            "overflow"
        );
        let l = level(1, 0, 0);
        assert_eq!(l.released(1).unwrap_err().code(), "storage");
        assert_eq!(l.committed(1).unwrap_err().code(), "storage");
        assert_eq!(l.consumed(1).unwrap_err().code(), "storage");
        assert_eq!(l.deallocated(1).unwrap_err().code(), "storage");
        assert_eq!(l.received(0).unwrap_err().code(), "invalid_quantity");
    }
}
