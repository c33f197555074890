//! Conversions between core types and the text stored in columns.

use oms_core::error::{OmsError, OmsResult};
use oms_core::lifecycle::Actor;
use oms_core::order::Order;

/// Any backend error as the core's storage error.
pub(crate) fn storage(e: impl std::fmt::Display) -> OmsError {
    OmsError::Storage {
        reason: e.to_string(),
    }
}

/// The whole aggregate as JSON: the authoritative copy, so reads round-trip exactly.
pub(crate) fn order_to_json(order: &Order) -> OmsResult<String> {
    serde_json::to_string(order).map_err(storage)
}

/// Parse the aggregate back.
pub(crate) fn order_from_json(doc: &str) -> OmsResult<Order> {
    serde_json::from_str(doc).map_err(storage)
}

/// Any serializable value as JSON text.
pub(crate) fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> OmsResult<String> {
    serde_json::to_string(v).map_err(storage)
}

/// Parse JSON text.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> OmsResult<T> {
    serde_json::from_str(s).map_err(storage)
}

/// The actor column value: `customer:ID`, `staff:ID` or `system`.
pub(crate) fn actor_text(a: &Actor) -> String {
    a.to_string()
}

/// Store a `u64` id or version in a signed 64-bit column, refusing values that do not fit.
pub(crate) fn to_i64(v: u64, what: &str) -> OmsResult<i64> {
    i64::try_from(v).map_err(|_| OmsError::invalid(what, "exceeds the storable range"))
}

/// Read back a signed 64-bit column as `u64`.
pub(crate) fn to_u64(v: i64, what: &str) -> OmsResult<u64> {
    u64::try_from(v).map_err(|_| storage(format!("negative {what} in storage")))
}
