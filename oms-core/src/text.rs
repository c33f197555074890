//! [`Text`]: an immutable string that is cheap to copy.
//!
//! An order is copied on every operation — the store keeps one copy, the caller gets another —
//! and most of its strings never change once written: audit reasons, actor ids, payment
//! references, gateway keys. Held as [`Text`], copying them never allocates: a string of up to
//! 23 bytes is held inside the `Text` itself, a fixed string the service writes is a pointer,
//! and a longer one is shared behind a reference count.
//!
//! Keeping short strings inline matters beyond the allocation: the copy of an order the store
//! hands out is usually made long after the order was last touched, and a reference count in
//! its own allocation is a cache miss per string, where the inline bytes travel with the
//! order's own memory.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smol_str::SmolStr;

/// An immutable UTF-8 string whose clones never allocate: up to 23 bytes inline, longer
/// ones shared behind a reference count.
///
/// It reads like a `&str` (it dereferences to one), compares equal to `str`, `&str` and
/// `String`, prints and serializes exactly as the same `String` would, and converts from
/// either.
///
/// ```
/// use oms_core::text::Text;
/// let reason = Text::from("customer changed their mind");
/// let copy = reason.clone(); // no allocation
/// assert_eq!(copy, "customer changed their mind");
/// assert!(reason.starts_with("customer"));
/// assert_eq!(format!("{reason:?}"), format!("{:?}", "customer changed their mind"));
/// assert_eq!(String::from(reason), "customer changed their mind");
/// ```
#[derive(Clone)]
pub struct Text(SmolStr);

impl Text {
    /// A text over a string the program holds for its whole run: no allocation, ever.
    pub const fn from_static(s: &'static str) -> Text {
        Text(SmolStr::new_static(s))
    }

    /// The empty text.
    pub const fn empty() -> Text {
        Text::from_static("")
    }

    /// The text `value` displays as: written in place when it fits, so a short one (an id,
    /// an amount) never allocates, where `value.to_string()` would.
    pub fn display(value: &(impl fmt::Display + ?Sized)) -> Text {
        Text(smol_str::ToSmolStr::to_smolstr(value))
    }

    /// The text as a `&str`.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl Default for Text {
    fn default() -> Self {
        Text::empty()
    }
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Text {
    fn as_ref(&self) -> &[u8] {
        self.as_str().as_bytes()
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text(SmolStr::new(s))
    }
}

impl From<&String> for Text {
    fn from(s: &String) -> Self {
        Text::from(s.as_str())
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text(SmolStr::new(s))
    }
}

impl From<Text> for String {
    fn from(t: Text) -> Self {
        t.as_str().to_owned()
    }
}

impl From<&Text> for String {
    fn from(t: &Text) -> Self {
        t.as_str().to_owned()
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl PartialOrd for Text {
    fn partial_cmp(&self, other: &Text) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Text {
    fn cmp(&self, other: &Text) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

/// Hashes as the `str` it holds, so a `Text` key is found by a `&str` look-up.
impl Hash for Text {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<Text> for str {
    fn eq(&self, other: &Text) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Text> for &str {
    fn eq(&self, other: &Text) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Text> for String {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor)
    }
}

/// Builds the text straight from the string the deserializer holds (inline, or one
/// allocation, where going through `String` takes one more).
struct TextVisitor;

impl serde::de::Visitor<'_> for TextVisitor {
    type Value = Text;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text, E> {
        Ok(Text::from(v))
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Text, E> {
        std::str::from_utf8(v)
            .map(Text::from)
            .map_err(|_| E::invalid_value(serde::de::Unexpected::Bytes(v), &self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashSet};

    #[test]
    fn long_texts_share_one_allocation_and_short_ones_live_inline() {
        let long = "refund of 12.50 EUR approved by ops-7 for a damaged parcel";
        let a = Text::from(String::from(long));
        let b = a.clone();
        assert!(a.0.is_heap_allocated());
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
        let s = Text::from_static("order placed");
        assert!(std::ptr::eq(s.clone().as_str(), "order placed"));
        let short = Text::from("ORD-2026-05-06-000001");
        assert!(!short.0.is_heap_allocated());
        assert!(!short.clone().0.is_heap_allocated());
        assert_eq!(short.clone(), "ORD-2026-05-06-000001");
        let at_cap = Text::from("x".repeat(23));
        assert!(!at_cap.0.is_heap_allocated());
        let over_cap = Text::from("x".repeat(24));
        assert!(over_cap.0.is_heap_allocated());
        let back: Text = serde_json::from_str("\"PAY-1:capture:2\"").unwrap();
        assert!(!back.0.is_heap_allocated());
        assert_eq!(back, "PAY-1:capture:2");
    }

    #[test]
    fn static_and_shared_texts_are_the_same_value() {
        let s = Text::from_static("stock reserved");
        let d = Text::from("stock reserved");
        assert_eq!(s, d);
        assert_eq!(s.cmp(&d), Ordering::Equal);
        let set: HashSet<Text> = [s.clone()].into();
        assert!(set.contains(&d));
        assert!(set.contains("stock reserved"));
        let ordered: BTreeSet<Text> = [Text::from("b"), Text::from_static("a")].into();
        assert_eq!(
            ordered.iter().map(Text::as_str).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn compares_with_every_string_type() {
        let t = Text::from("ops");
        assert_eq!(t, "ops");
        assert_eq!("ops", t);
        assert_eq!(t, *"ops");
        assert_eq!(*"ops", t);
        let owned = String::from("ops");
        assert_eq!(t, owned);
        assert_eq!(owned, t);
        assert!(t != "op");
        assert_eq!(Text::default(), "");
        assert!(Text::empty().is_empty());
    }

    #[test]
    fn prints_and_serializes_as_a_string() {
        let t = Text::from("x'); DROP TABLE orders;-- ünïcödé \"quoted\"");
        let s = String::from(&t);
        assert_eq!(format!("{t}"), format!("{s}"));
        assert_eq!(format!("{t:?}"), format!("{s:?}"));
        assert_eq!(format!("{t:>50}"), format!("{s:>50}"));
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            serde_json::to_string(&s).unwrap()
        );
        let back: Text = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, t);
        assert!(serde_json::from_str::<Text>("12").is_err());
    }
}
