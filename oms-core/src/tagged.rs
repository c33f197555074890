//! Enums written in two shapes: tagged in text formats (`{"kind": …}`, which readers of JSON
//! expect) and plain in compact binary formats, which cannot read a tag inside an object.
//! A type keeps a plain form `P` and a tagged form `T` convertible from each other and goes
//! through these two functions, so the choice of shape is made in one place.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Write `plain` tagged (as `T`) to a text format, as it is to a binary one.
pub(crate) fn serialize<P, T, S>(plain: P, s: S) -> Result<S::Ok, S::Error>
where
    P: Serialize,
    T: Serialize + From<P>,
    S: Serializer,
{
    if s.is_human_readable() {
        T::from(plain).serialize(s)
    } else {
        plain.serialize(s)
    }
}

/// Read the plain form from a binary format, or the tagged form `T` from a text format.
pub(crate) fn deserialize<'de, P, T, D>(d: D) -> Result<P, D::Error>
where
    P: Deserialize<'de> + From<T>,
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    if d.is_human_readable() {
        T::deserialize(d).map(P::from)
    } else {
        P::deserialize(d)
    }
}
