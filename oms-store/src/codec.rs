//! Conversions between core types and the text stored in columns.

use oms_core::error::{OmsError, OmsResult};
use oms_core::inventory::Reservation;
use oms_core::lifecycle::Actor;
use oms_core::order::Order;
use oms_core::store::{order_response_json, IdempotencyRecord, Response};
use oms_core::text::Text;

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

/// The first bytes of a document (an order's, a reservation's) in the compact encoding: a zero
/// length, which no
/// [`pack`]ed JSON blob starts with (those start with their text's length, at least
/// [`PACK_FROM`]), then the encoding's number.
const COMPACT_DOCUMENT: [u8; 5] = [0, 0, 0, 0, 1];

/// Parse the aggregate back.
pub(crate) fn order_from_json(doc: &str) -> OmsResult<Order> {
    serde_json::from_str(doc).map_err(storage)
}

/// The SQLite column value of an order's document: [`COMPACT_DOCUMENT`], then the order in
/// postcard's compact binary encoding, LZ4-compressed. A quarter of the JSON's size and about
/// three times as fast to write and to read back; [`order_from_column`] reads it and the JSON
/// forms written before it.
pub(crate) fn order_column(order: &Order) -> OmsResult<rusqlite::types::Value> {
    compact_column(order)
}

/// The order in a document column: the compact encoding of [`order_column`], or JSON as
/// [`pack`] wrote it (text, or an LZ4 blob).
pub(crate) fn order_from_column(value: rusqlite::types::ValueRef<'_>) -> OmsResult<Order> {
    from_document_column(value)
}

/// The SQLite column value of a reservation's document, in the compact encoding of
/// [`order_column`]; [`reservation_from_column`] reads it and the JSON text written before it.
pub(crate) fn reservation_column(r: &Reservation) -> OmsResult<rusqlite::types::Value> {
    compact_column(r)
}

/// The reservation in a document column: the compact encoding, or JSON text.
pub(crate) fn reservation_from_column(
    value: rusqlite::types::ValueRef<'_>,
) -> OmsResult<Reservation> {
    from_document_column(value)
}

/// [`COMPACT_DOCUMENT`], then `v` in postcard's encoding, LZ4-compressed (its length first, as
/// `lz4_flex::compress_prepend_size` writes it).
fn compact_column<T: serde::Serialize>(v: &T) -> OmsResult<rusqlite::types::Value> {
    let bytes = postcard::to_stdvec(v).map_err(storage)?;
    Ok(rusqlite::types::Value::Blob(compressed(
        &COMPACT_DOCUMENT,
        &bytes,
    )?))
}

/// `head`, then `bytes` LZ4-compressed with their length first (as
/// `lz4_flex::compress_prepend_size` writes them), reusing this thread's hash table.
fn compressed(head: &[u8], bytes: &[u8]) -> OmsResult<Vec<u8>> {
    let size = u32::try_from(bytes.len()).map_err(|_| storage("document too large"))?;
    let start = head.len() + 4;
    let mut out = Vec::with_capacity(start + lz4_flex::block::get_maximum_output_size(bytes.len()));
    out.extend_from_slice(head);
    out.extend_from_slice(&size.to_le_bytes());
    out.resize(out.capacity(), 0);
    let written = compress_with_table(bytes, &mut out[start..])?;
    out.truncate(start + written);
    Ok(out)
}

thread_local! {
    /// The LZ4 hash table of this thread's compressions, kept between them: a fresh table is
    /// a zeroed allocation that costs small documents more than compressing them does.
    static LZ4_TABLE: std::cell::RefCell<lz4_flex::block::CompressTable> =
        std::cell::RefCell::new(lz4_flex::block::CompressTable::default());
}

/// LZ4-compress `input` into `output` (at least `get_maximum_output_size` long), reusing this
/// thread's hash table; the number of bytes written.
fn compress_with_table(input: &[u8], output: &mut [u8]) -> OmsResult<usize> {
    let reused = LZ4_TABLE.try_with(|table| {
        table
            .try_borrow_mut()
            .ok()
            .map(|mut table| lz4_flex::block::compress_into_with_table(input, output, &mut table))
    });
    match reused {
        Ok(Some(written)) => written.map_err(storage),
        // The thread is ending (or, impossibly, already compressing): a table of its own.
        _ => lz4_flex::block::compress_into(input, output).map_err(storage),
    }
}

/// A document column in any form written: compact, JSON text, or LZ4-compressed JSON.
fn from_document_column<T: serde::de::DeserializeOwned>(
    value: rusqlite::types::ValueRef<'_>,
) -> OmsResult<T> {
    if let rusqlite::types::ValueRef::Blob(b) = value {
        if let Some(packed) = b.strip_prefix(&COMPACT_DOCUMENT[..]) {
            let bytes = lz4_flex::decompress_size_prepended(packed).map_err(storage)?;
            return postcard::from_bytes(&bytes).map_err(storage);
        }
    }
    from_json(&unpack(value)?)
}

/// The SQLite column value of an idempotency record's response. A record that responds with
/// the order written with it (`order`) stores that order's compact document, the same bytes as
/// the order's own row of that version, so no JSON is written for it; any other record stores
/// its JSON as [`pack`] does. [`response_from_column`] reads either back as JSON.
pub(crate) fn response_column(
    record: &IdempotencyRecord,
    order: Option<&Order>,
) -> OmsResult<rusqlite::types::Value> {
    match (&record.response, order) {
        (Response::WrittenOrder, Some(order)) => order_column(order),
        _ => pack(record.response_json()?),
    }
}

/// The JSON of a response column: `{"Ok": order}` for an order's compact document (exactly
/// what serializing the response writes, as the document reads back equal to the order it
/// encodes), otherwise the JSON text [`pack`] stored.
pub(crate) fn response_from_column(value: rusqlite::types::ValueRef<'_>) -> OmsResult<String> {
    if let rusqlite::types::ValueRef::Blob(b) = value {
        if b.starts_with(&COMPACT_DOCUMENT) {
            return order_response_json(&order_from_column(value)?);
        }
    }
    unpack(value)
}

/// Text at least this long is stored compressed: below it the saving is smaller than a page's
/// slack and not worth the work.
const PACK_FROM: usize = 512;

/// A JSON document as a column value: short text as it is, longer text LZ4-compressed into a
/// blob (the documents repeat their field names and money shapes, so they shrink 2–3×, and fewer
/// pages are written per commit). [`unpack`] reads either form, so rows written before
/// compression read unchanged.
pub(crate) fn pack(text: &str) -> OmsResult<rusqlite::types::Value> {
    Ok(if text.len() < PACK_FROM {
        rusqlite::types::Value::Text(text.to_owned())
    } else {
        rusqlite::types::Value::Blob(compressed(&[], text.as_bytes())?)
    })
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

/// An event's details as [`to_json`] writes them (`[["key","value"],…]`). Every event of every
/// order is read back this way, so the common form — no escapes, no whitespace — is split
/// straight into its strings; anything else (an escape, a form written by hand) is parsed by
/// serde_json, which gives the same details or the error.
pub(crate) fn event_data_from_json(json: &str) -> OmsResult<Vec<(Text, Text)>> {
    match plain_event_data(json) {
        Some(data) => Ok(data),
        None => from_json(json),
    }
}

/// The details of `json` when it is exactly `[]` or `[["k","v"],…]` with no escape or control
/// character in any string; `None` for anything else.
fn plain_event_data(json: &str) -> Option<Vec<(Text, Text)>> {
    if json.bytes().any(|b| b == b'\\' || b < 0x20) {
        return None;
    }
    let mut rest = json.strip_prefix('[')?.strip_suffix(']')?;
    let mut data = Vec::new();
    if rest.is_empty() {
        return Some(data);
    }
    loop {
        rest = rest.strip_prefix("[\"")?;
        let (key, after) = rest.split_once('"')?;
        rest = after.strip_prefix(",\"")?;
        let (value, after) = rest.split_once('"')?;
        rest = after.strip_prefix(']')?;
        data.push((Text::from(key), Text::from(value)));
        if rest.is_empty() {
            return Some(data);
        }
        rest = rest.strip_prefix(',')?;
    }
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
    use super::{
        event_data_from_json, order_column, order_from_column, order_to_json, pack,
        plain_event_data, response_column, response_from_column, to_json, unpack, COMPACT_DOCUMENT,
        PACK_FROM,
    };
    use oms_core::order::Order;
    use oms_core::store::{order_response_json, IdempotencyRecord, Response};
    use oms_core::text::Text;
    use rusqlite::types::{Value, ValueRef};

    fn read(v: &Value) -> Result<String, String> {
        unpack(ValueRef::from(v)).map_err(|e| e.code().to_owned())
    }

    #[test]
    fn short_text_stays_text_and_long_text_is_compressed() {
        let short = "{\"a\":1}".to_owned();
        assert_eq!(pack(&short).unwrap(), Value::Text(short.clone()));
        let long = "{\"amount\":\"12.34\",\"currency\":\"USD\"},".repeat(PACK_FROM / 8);
        let packed = pack(&long).unwrap();
        let Value::Blob(bytes) = &packed else {
            panic!("long text should be a blob");
        };
        assert!(bytes.len() * 3 < long.len(), "{} bytes", bytes.len());
        assert_eq!(read(&packed).unwrap(), long);
        assert_eq!(read(&Value::Text(short.clone())).unwrap(), short);
    }

    fn sample_order() -> Order {
        let draft: oms_core::order::OrderDraft = serde_json::from_str(
            r#"{"customer":{"id":"cust-1","email":"a@example.com","name":"Zoë 'x'); DROP TABLE orders;--"},
                "shipping_address":{"name":"Zoë","line1":"1 Main St","city":"New York","region":"NY",
                  "postal_code":"10001","country":"US","location":[40.7128,-74.006]},
                "currency":"USD",
                "lines":[{"sku":"SKU-☕-1","quantity":2,
                  "unit_price":{"amount":"12.34","currency":"USD"}}]}"#,
        )
        .unwrap();
        let clock = oms_core::time::ManualClock::new(oms_core::time::Timestamp(1_700_000_000_000));
        let ids = oms_core::time::SequentialIds::default();
        let actor = oms_core::lifecycle::Actor::Customer("cust-1".into());
        Order::create(&draft, &actor, &clock, &ids).unwrap()
    }

    fn read_order(v: &Value) -> Result<Order, String> {
        order_from_column(ValueRef::from(v)).map_err(|e| e.code().to_owned())
    }

    #[test]
    fn orders_are_stored_compact_and_read_back_equal() {
        let order = sample_order();
        let column = order_column(&order).unwrap();
        let Value::Blob(bytes) = &column else {
            panic!("an order document is a blob");
        };
        assert!(bytes.starts_with(&COMPACT_DOCUMENT));
        let json = order_to_json(&order).unwrap();
        assert!(
            bytes.len() * 2 < json.len(),
            "{} vs {}",
            bytes.len(),
            json.len()
        );
        assert_eq!(read_order(&column).unwrap(), order);
    }

    #[test]
    fn the_reused_compression_table_writes_what_a_fresh_one_does() {
        let order = sample_order();
        let fresh = |v: &[u8]| {
            [
                &COMPACT_DOCUMENT[..],
                &lz4_flex::compress_prepend_size(v)[..],
            ]
            .concat()
        };
        let bytes = postcard::to_stdvec(&order).unwrap();
        for _ in 0..3 {
            assert_eq!(order_column(&order).unwrap(), Value::Blob(fresh(&bytes)));
        }
        // A document past 64 KiB needs the large table, and a small one after it still reads.
        let mut big = order.clone();
        big.promo_codes = (0..20_000).map(|i| format!("CODE-{i}")).collect();
        let column = order_column(&big).unwrap();
        assert_eq!(
            column,
            Value::Blob(fresh(&postcard::to_stdvec(&big).unwrap()))
        );
        assert_eq!(read_order(&column).unwrap(), big);
        assert_eq!(read_order(&order_column(&order).unwrap()).unwrap(), order);
    }

    #[test]
    fn orders_stored_as_json_text_or_compressed_json_still_read() {
        let order = sample_order();
        let json = order_to_json(&order).unwrap();
        assert_eq!(read_order(&Value::Text(json.clone())).unwrap(), order);
        let packed = Value::Blob(lz4_flex::compress_prepend_size(json.as_bytes()));
        assert_eq!(read_order(&packed).unwrap(), order);
        // A JSON blob starts with its text's length, which is never zero.
        assert!(json.len() >= PACK_FROM);
    }

    #[test]
    fn damaged_compact_documents_are_storage_errors() {
        let Value::Blob(mut bytes) = order_column(&sample_order()).unwrap() else {
            panic!("an order document is a blob");
        };
        let cut = Value::Blob(bytes[..bytes.len() / 2].to_vec());
        assert_eq!(read_order(&cut), Err("storage".into()));
        // valid LZ4 of bytes that are not an order
        bytes.truncate(COMPACT_DOCUMENT.len());
        bytes.extend_from_slice(&lz4_flex::compress_prepend_size(&[0xff; 40]));
        assert_eq!(read_order(&Value::Blob(bytes)), Err("storage".into()));
        assert_eq!(read_order(&Value::Integer(3)), Err("storage".into()));
    }

    fn read_response(v: &Value) -> Result<String, String> {
        response_from_column(ValueRef::from(v)).map_err(|e| e.code().to_owned())
    }

    #[test]
    fn a_response_with_the_written_order_is_that_orders_document_and_reads_as_its_json() {
        let order = sample_order();
        let record = IdempotencyRecord {
            fingerprint: "create_order:f".into(),
            response: Response::WrittenOrder,
        };
        let column = response_column(&record, Some(&order)).unwrap();
        assert_eq!(column, order_column(&order).unwrap());
        assert_eq!(
            read_response(&column).unwrap(),
            order_response_json(&order).unwrap()
        );
        // Without the order written with it there is nothing to store.
        assert_eq!(
            response_column(&record, None).map_err(|e| e.code().to_owned()),
            Err("storage".into())
        );
    }

    #[test]
    fn other_responses_are_stored_as_json_and_read_back_unchanged() {
        let order = sample_order();
        let long = order_response_json(&order).unwrap();
        for json in [r#"{"Err":{"code":"conflict"}}"#.to_owned(), long] {
            let record = IdempotencyRecord {
                fingerprint: "cancel_order:f".into(),
                response: Response::Json(json.clone()),
            };
            // A record with its own JSON keeps it, whatever order was written with it.
            for with in [None, Some(&order)] {
                let column = response_column(&record, with).unwrap();
                assert_eq!(column, pack(&json).unwrap());
                assert_eq!(read_response(&column).unwrap(), json);
            }
        }
        assert_eq!(
            read_response(&Value::Blob(vec![0, 0, 0, 0, 1, 9])),
            Err("storage".into())
        );
    }

    #[test]
    fn event_details_read_back_as_written() {
        let read = |s: &str| event_data_from_json(s).map_err(|e| e.code().to_owned());
        assert_eq!(read("[]").unwrap(), vec![]);
        assert_eq!(
            read(r#"[["amount","12.30"],["sku","x'); DROP TABLE orders;--"]]"#).unwrap(),
            vec![
                (Text::from("amount"), Text::from("12.30")),
                (Text::from("sku"), Text::from("x'); DROP TABLE orders;--")),
            ]
        );
        // escapes and whitespace go to the full parser, with the same result
        assert_eq!(
            read(r#" [ ["a\"b", "\u00e9\n"] ] "#).unwrap(),
            vec![(Text::from("a\"b"), Text::from("é\n"))]
        );
        for bad in [
            "",
            "[",
            "[[\"a\"]]",
            "[[\"a\",\"b\",\"c\"]]",
            "[[\"a\",\"b\"],]",
            "{}",
            "[[1,2]]",
        ] {
            assert_eq!(read(bad), Err("storage".into()), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn event_details_round_trip(
            data in proptest::collection::vec((".{0,12}", ".{0,12}"), 0..6)
        ) {
            let data: Vec<(Text, Text)> = data
                .into_iter()
                .map(|(k, v)| (Text::from(k.as_str()), Text::from(v.as_str())))
                .collect();
            let json = to_json(&data).unwrap();
            proptest::prop_assert_eq!(event_data_from_json(&json).unwrap(), data);
        }

        #[test]
        fn the_plain_reading_agrees_with_serde_json(
            pairs in proptest::collection::vec(("[a-c\",\\\\\\[\\] é]{0,4}", "[a-c\",\\\\\\[\\] é]{0,4}"), 0..4),
            sep in "(,|, )",
        ) {
            // Details spliced in raw, so a quote, bracket or backslash inside a string can make
            // the text another value, or no JSON at all: whatever the plain reading accepts,
            // serde_json reads the same.
            let json = format!(
                "[{}]",
                pairs
                    .iter()
                    .map(|(k, v)| format!("[\"{k}\",\"{v}\"]"))
                    .collect::<Vec<_>>()
                    .join(&sep)
            );
            let clean = sep == ","
                && pairs.iter().all(|(k, v)| !format!("{k}{v}").contains(['"', '\\']));
            match plain_event_data(&json) {
                Some(plain) => {
                    let full: Vec<(Text, Text)> = serde_json::from_str(&json).unwrap();
                    proptest::prop_assert_eq!(plain, full);
                }
                None => proptest::prop_assert!(!clean, "{json}"),
            }
        }
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
