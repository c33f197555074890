//! The run's state digest: one 64-bit fingerprint of every stored order, outbox event and stock
//! row, equal between two runs (or two backends) when what they stored is equal.
//!
//! Values are fed through serde straight into the hash, without first being written out as
//! text: integers go in as machine words, strings as their bytes eight at a time, and every
//! string, sequence, map, option and enum variant is framed (a length, a count or a tag), so two
//! different values never feed the same words by construction — only by a hash collision.
//! Struct fields go in with their names, so a field skipped when empty cannot be mistaken for
//! the next one.

use std::fmt;

use serde::ser::{
    self, Serialize, SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant,
    SerializeTuple, SerializeTupleStruct, SerializeTupleVariant,
};

/// Multiplier of the word mix (from FxHash: odd, with well-spread bits).
const MIX: u64 = 0x517c_c1b7_2722_0a95;

/// Frame tags: each kind of value starts with its own, so kinds cannot be confused.
mod tag {
    pub(super) const NONE: u64 = 1;
    pub(super) const SOME: u64 = 2;
    pub(super) const UNIT: u64 = 3;
    pub(super) const SEQ: u64 = 4;
    pub(super) const MAP: u64 = 5;
    pub(super) const STRUCT: u64 = 6;
    pub(super) const VARIANT: u64 = 7;
    pub(super) const END: u64 = 8;
    pub(super) const FLOAT: u64 = 9;
    pub(super) const SIGNED: u64 = 10;
    pub(super) const BOOL: u64 = 11;
}

/// A running fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Digest(u64);

impl Default for Digest {
    fn default() -> Self {
        // FNV-1a's offset basis: any fixed, non-zero start will do.
        Digest(0xcbf2_9ce4_8422_2325)
    }
}

impl Digest {
    /// Mix one word in.
    pub(crate) fn word(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(MIX);
    }

    /// Mix bytes in: their length, then eight at a time (the last word zero-padded).
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.word(b.len() as u64);
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.word(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.word(u64::from_le_bytes(w));
        }
    }

    /// Mix in an enum variant's frame: its name, not its index, so reordering an enum's
    /// variants keeps the digest.
    fn variant(&mut self, name: &str) {
        self.word(tag::VARIANT);
        self.bytes(name.as_bytes());
    }

    /// Mix in any serializable value.
    pub(crate) fn value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), DigestError> {
        v.serialize(&mut *self)
    }

    /// The fingerprint so far.
    pub(crate) fn finish(&self) -> u64 {
        self.0
    }
}

/// A value's `Serialize` reported an error of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DigestError(String);

impl fmt::Display for DigestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot digest a value: {}", self.0)
    }
}

impl std::error::Error for DigestError {}

impl ser::Error for DigestError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DigestError(msg.to_string())
    }
}

/// A short text written in place; a text that does not fit is refused, and written out as a
/// `String` instead.
struct TextBuffer {
    bytes: [u8; 64],
    len: usize,
}

impl Default for TextBuffer {
    fn default() -> Self {
        TextBuffer {
            bytes: [0; 64],
            len: 0,
        }
    }
}

impl fmt::Write for TextBuffer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// A sequence, map or struct being digested: counts its items for the closing frame.
pub(crate) struct Compound<'a> {
    digest: &'a mut Digest,
    items: u64,
}

impl<'a> Compound<'a> {
    fn open(digest: &'a mut Digest, tag: u64) -> Compound<'a> {
        digest.word(tag);
        Compound { digest, items: 0 }
    }

    fn item<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), DigestError> {
        self.items += 1;
        v.serialize(&mut *self.digest)
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, v: &T) -> Result<(), DigestError> {
        self.digest.bytes(key.as_bytes());
        self.item(v)
    }

    fn close(self) {
        self.digest.word(tag::END);
        self.digest.word(self.items);
    }
}

impl<'a> ser::Serializer for &'a mut Digest {
    type Ok = ();
    type Error = DigestError;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), DigestError> {
        self.word(tag::BOOL);
        self.word(u64::from(v));
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), DigestError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<(), DigestError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<(), DigestError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<(), DigestError> {
        // Signed values are framed: -1 and u64::MAX must not feed the same word.
        self.word(tag::SIGNED);
        self.word(u64::from_le_bytes(v.to_le_bytes()));
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), DigestError> {
        self.bytes(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), DigestError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<(), DigestError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<(), DigestError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<(), DigestError> {
        self.word(v);
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), DigestError> {
        self.bytes(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), DigestError> {
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), DigestError> {
        self.word(tag::FLOAT);
        self.word(v.to_bits());
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), DigestError> {
        self.serialize_str(v.encode_utf8(&mut [0u8; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), DigestError> {
        self.bytes(v.as_bytes());
        Ok(())
    }
    fn collect_str<T: fmt::Display + ?Sized>(self, value: &T) -> Result<(), DigestError> {
        // The same words as `serialize_str` of the text, which serde's default would build as
        // a `String` first: every amount of every order is digested this way.
        let mut buf = TextBuffer::default();
        if fmt::write(&mut buf, format_args!("{value}")).is_ok() {
            self.bytes(&buf.bytes[..buf.len]);
        } else {
            self.bytes(value.to_string().as_bytes());
        }
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), DigestError> {
        self.bytes(v);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), DigestError> {
        self.word(tag::NONE);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), DigestError> {
        self.word(tag::SOME);
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), DigestError> {
        self.word(tag::UNIT);
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), DigestError> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), DigestError> {
        self.variant(variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), DigestError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), DigestError> {
        self.variant(variant);
        value.serialize(self)
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a>, DigestError> {
        Ok(Compound::open(self, tag::SEQ))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Compound<'a>, DigestError> {
        Ok(Compound::open(self, tag::SEQ))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, DigestError> {
        Ok(Compound::open(self, tag::SEQ))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, DigestError> {
        self.variant(variant);
        Ok(Compound::open(self, tag::SEQ))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a>, DigestError> {
        Ok(Compound::open(self, tag::MAP))
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, DigestError> {
        Ok(Compound::open(self, tag::STRUCT))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, DigestError> {
        self.variant(variant);
        Ok(Compound::open(self, tag::STRUCT))
    }
}

/// The compounds whose items are positional (sequences and tuples): each item is digested in
/// turn, and the closing frame counts them.
macro_rules! positional {
    ($($trait:ident :: $method:ident),* $(,)?) => {$(
        impl $trait for Compound<'_> {
            type Ok = ();
            type Error = DigestError;
            fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), DigestError> {
                self.item(v)
            }
            fn end(self) -> Result<(), DigestError> {
                self.close();
                Ok(())
            }
        }
    )*};
}

positional!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

impl SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = DigestError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), DigestError> {
        self.item(key)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), DigestError> {
        v.serialize(&mut *self.digest)
    }
    fn end(self) -> Result<(), DigestError> {
        self.close();
        Ok(())
    }
}

/// The compounds whose items are named fields (structs and struct variants): each field is
/// digested with its name.
macro_rules! named {
    ($($trait:ident),* $(,)?) => {$(
        impl $trait for Compound<'_> {
            type Ok = ();
            type Error = DigestError;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                v: &T,
            ) -> Result<(), DigestError> {
                self.field(key, v)
            }
            fn end(self) -> Result<(), DigestError> {
                self.close();
                Ok(())
            }
        }
    )*};
}

named!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use std::collections::BTreeMap;

    fn of<T: Serialize + ?Sized>(v: &T) -> u64 {
        let mut d = Digest::default();
        d.value(v).unwrap();
        d.finish()
    }

    /// Serializes through `collect_str`, as a decimal amount does.
    struct Shown<'a>(&'a str);

    impl Serialize for Shown<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(self.0)
        }
    }

    #[test]
    fn a_collected_text_digests_as_the_same_string() {
        let long = "x".repeat(200);
        for text in ["", "12.34", "0.0000000000000000000000000001", long.as_str()] {
            assert_eq!(of(&Shown(text)), of(text), "{text}");
        }
    }

    #[derive(Serialize)]
    struct Line {
        sku: String,
        quantity: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        tags: Vec<String>,
    }

    #[derive(Serialize)]
    enum Status {
        Open,
        Held(u32),
        Moved { to: String },
    }

    fn line() -> Line {
        Line {
            sku: "SKU-001".into(),
            quantity: 2,
            note: None,
            tags: vec!["gift".into()],
        }
    }

    #[test]
    fn equal_values_give_equal_digests() {
        assert_eq!(of(&line()), of(&line()));
        let map: BTreeMap<&str, u32> = [("a", 1), ("b", 2)].into();
        assert_eq!(of(&map), of(&map.clone()));
    }

    #[test]
    fn any_change_moves_the_digest() {
        let base = of(&line());
        let mut l = line();
        l.quantity = 3;
        assert_ne!(of(&l), base);
        let mut l = line();
        l.sku = "SKU-002".into();
        assert_ne!(of(&l), base);
        let mut l = line();
        l.note = Some(String::new());
        assert_ne!(of(&l), base);
        let mut l = line();
        l.tags.push(String::new());
        assert_ne!(of(&l), base);
        // A string one byte longer than a whole number of words, and its zero-padded twin.
        assert_ne!(of("abcdefgh\0"), of("abcdefgh"));
    }

    #[test]
    fn framing_keeps_neighbouring_values_apart() {
        // The same bytes split differently between two strings.
        assert_ne!(of(&("ab", "c")), of(&("a", "bc")));
        // The same items split differently between two sequences.
        assert_ne!(
            of(&(vec![1u32, 2], vec![3u32])),
            of(&(vec![1u32], vec![2u32, 3]))
        );
        assert_ne!(of(&Some(0u64)), of(&0u64));
        assert_ne!(of(&None::<u64>), of(&Some(1u64)));
        assert_ne!(of(&-1i64), of(&u64::MAX));
        assert_ne!(of(&1.0f64), of(&1.0f64.to_bits()));
        assert_ne!(of(&true), of(&1u64));
        assert_ne!(of(&Status::Open), of(&Status::Held(0)));
        assert_ne!(
            of(&Status::Moved { to: "A".into() }),
            of(&Status::Moved { to: "B".into() })
        );
        assert_ne!(of(&Status::Held(1)), of(&Status::Held(2)));
    }

    #[test]
    fn a_serialize_error_is_reported() {
        struct Refuses;
        impl Serialize for Refuses {
            fn serialize<S: ser::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(ser::Error::custom("no"))
            }
        }
        let mut d = Digest::default();
        let e = d.value(&vec![Refuses]).unwrap_err();
        assert_eq!(e.to_string(), "cannot digest a value: no");
    }
}
