//! [`Text`]: an immutable string that is cheap to copy.
//!
//! An order is copied on every operation — the store keeps one copy, the caller gets another —
//! and most of its strings never change once written: audit reasons, actor ids, payment
//! references, gateway keys. Held as [`Text`], copying them bumps a reference count (or copies
//! a pointer, for the fixed strings the service writes) instead of allocating.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An immutable UTF-8 string whose clones share one allocation.
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
pub struct Text(Repr);

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Text {
    /// A text over a string the program holds for its whole run: no allocation, ever.
    pub const fn from_static(s: &'static str) -> Text {
        Text(Repr::Static(s))
    }

    /// The empty text.
    pub const fn empty() -> Text {
        Text::from_static("")
    }

    /// The text as a `&str`.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            Repr::Shared(s) => s,
        }
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
        Text(Repr::Shared(Arc::from(s)))
    }
}

impl From<&String> for Text {
    fn from(s: &String) -> Self {
        Text::from(s.as_str())
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text(Repr::Shared(Arc::from(s)))
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

/// Builds the shared copy straight from the text the deserializer holds (one allocation,
/// where going through `String` takes two).
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
    fn clones_share_the_allocation() {
        let a = Text::from(String::from("PAY-1:capture:2"));
        let b = a.clone();
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
        let s = Text::from_static("order placed");
        assert!(std::ptr::eq(s.clone().as_str(), "order placed"));
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
