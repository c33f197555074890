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

/// Text at least this long is stored compressed: below it the saving is smaller than a page's
/// slack and not worth the work.
const PACK_FROM: usize = 512;

/// A JSON document as a column value: short text as it is, longer text LZ4-compressed into a
/// blob (the documents repeat their field names and money shapes, so they shrink 2–3×, and fewer
/// pages are written per commit). [`unpack`] reads either form, so rows written before
/// compression read unchanged.
pub(crate) fn pack(text: &str) -> rusqlite::types::Value {
    if text.len() < PACK_FROM {
        rusqlite::types::Value::Text(text.to_owned())
    } else {
        rusqlite::types::Value::Blob(lz4_flex::compress_prepend_size(text.as_bytes()))
    }
}

/// The JSON text of a column written by [`pack`] (or as plain text).
pub(crate) fn unpack(value: rusqlite::types::ValueRef<'_>) -> OmsResult<String> {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Text(t) => String::from_utf8(t.to_vec()).map_err(storage),
        ValueRef::Blob(b) => {
            let bytes = lz4_flex::decompress_size_prepended(b).map_err(storage)?;
            String::from_utf8(bytes).map_err(storage)
        }
        _ => Err(storage("document column holds neither text nor a blob")),
    }
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

#[cfg(test)]
mod tests {
    use super::{pack, unpack, PACK_FROM};
    use rusqlite::types::{Value, ValueRef};

    fn read(v: &Value) -> Result<String, String> {
        unpack(ValueRef::from(v)).map_err(|e| e.code().to_owned())
    }

    #[test]
    fn short_text_stays_text_and_long_text_is_compressed() {
        let short = "{\"a\":1}".to_owned();
        assert_eq!(pack(&short), Value::Text(short.clone()));
        let long = "{\"amount\":\"12.34\",\"currency\":\"USD\"},".repeat(PACK_FROM / 8);
        let packed = pack(&long);
        let Value::Blob(bytes) = &packed else {
            panic!("long text should be a blob");
        };
        assert!(bytes.len() * 3 < long.len(), "{} bytes", bytes.len());
        assert_eq!(read(&packed).unwrap(), long);
        assert_eq!(read(&Value::Text(short.clone())).unwrap(), short);
    }

    #[test]
    fn text_written_before_compression_reads_unchanged() {
        let old = "é✓ x'); DROP TABLE orders;-- ".repeat(100);
        assert_eq!(read(&Value::Text(old.clone())).unwrap(), old);
    }

    #[test]
    fn damaged_or_foreign_values_are_storage_errors() {
        assert_eq!(
            read(&Value::Blob(vec![200, 0, 0, 0, 1, 2])),
            Err("storage".into())
        );
        assert_eq!(read(&Value::Integer(7)), Err("storage".into()));
        assert_eq!(read(&Value::Null), Err("storage".into()));
        // valid LZ4 of bytes that are not UTF-8
        let not_utf8 = lz4_flex::compress_prepend_size(&[0xff, 0xfe, 0xfd]);
        assert_eq!(read(&Value::Blob(not_utf8)), Err("storage".into()));
    }
}
