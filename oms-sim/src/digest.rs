//! The run's state digest: a stable 64-bit hash of everything the run left behind.
//!
//! Two runs (or two storage backends) with the same seed must end with the same digest, so the
//! hash is fixed here rather than taken from `std` (whose hasher may change between releases).
//! It eats eight bytes at a time: the digest covers every order's full JSON, every event and
//! every stock row, and a byte-at-a-time hash was the largest single cost of the end-of-run
//! check.

/// A streaming 64-bit hash over bytes, eight at a time, with a final avalanche.
pub(crate) struct Digest {
    state: u64,
    /// Bytes not yet forming a whole word, in the low `pending_len` bytes (little-endian).
    pending: u64,
    pending_len: u32,
    len: u64,
}

const SEED: u64 = 0xcbf2_9ce4_8422_2325;
const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

impl Default for Digest {
    fn default() -> Self {
        Digest {
            state: SEED,
            pending: 0,
            pending_len: 0,
            len: 0,
        }
    }
}

impl Digest {
    fn word(&mut self, w: u64) {
        self.state = (self.state.rotate_left(23) ^ w).wrapping_mul(MUL);
    }

    /// Feed bytes; the result depends only on the concatenation of everything fed.
    pub(crate) fn eat(&mut self, mut bytes: &[u8]) {
        self.len = self.len.wrapping_add(bytes.len() as u64);
        while self.pending_len != 0 && !bytes.is_empty() {
            self.pending |= u64::from(bytes[0]) << (8 * self.pending_len);
            self.pending_len += 1;
            bytes = &bytes[1..];
            if self.pending_len == 8 {
                let w = self.pending;
                self.word(w);
                self.pending = 0;
                self.pending_len = 0;
            }
        }
        if bytes.is_empty() {
            return;
        }
        // Only here is nothing pending: whole words go straight in.
        let mut words = bytes.chunks_exact(8);
        for chunk in &mut words {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            self.word(u64::from_le_bytes(w));
        }
        for (i, b) in words.remainder().iter().enumerate() {
            self.pending |= u64::from(*b) << (8 * i);
        }
        self.pending_len = words.remainder().len() as u32;
    }

    /// One record: its text, then a newline.
    pub(crate) fn record(&mut self, s: impl AsRef<[u8]>) {
        self.eat(s.as_ref());
        self.eat(b"\n");
    }

    /// The hash of everything fed so far (feeding may go on afterwards).
    pub(crate) fn value(&self) -> u64 {
        let mut h = self.state;
        h = (h.rotate_left(23) ^ self.pending).wrapping_mul(MUL);
        h ^= self.len;
        // The finalizer of MurmurHash3: every input bit reaches every output bit.
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// Serializers write straight into the digest; the caller ends the record with
/// [`Digest::record`] of nothing.
impl std::io::Write for Digest {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.eat(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(parts: &[&[u8]]) -> u64 {
        let mut d = Digest::default();
        for p in parts {
            d.eat(p);
        }
        d.value()
    }

    #[test]
    fn depends_only_on_the_concatenation() {
        let text = b"ORD-2026-05-06-000001|delivered|185.98 USD and some more bytes";
        let whole = of(&[text]);
        for cut in 0..text.len() {
            let (a, b) = text.split_at(cut);
            assert_eq!(of(&[a, b]), whole, "split at {cut}");
        }
        let singles: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(of(&singles), whole);
    }

    #[test]
    fn tells_apart_near_misses() {
        let base = of(&[b"stock|SKU-1|WH-1|7"]);
        assert_ne!(base, of(&[b"stock|SKU-1|WH-1|8"]));
        assert_ne!(base, of(&[b"stock|SKU-1|WH-1|7\0"]));
        assert_ne!(of(&[b""]), of(&[b"\0"]));
        assert_ne!(of(&[b"\0"]), of(&[b"\0\0"]));
        assert_ne!(of(&[b"ab"]), of(&[b"ba"]));
    }

    #[test]
    fn is_stable_across_releases() {
        // Pinned: a change here changes every published digest.
        assert_eq!(of(&[b""]), Digest::default().value());
        assert_eq!(format!("{:016x}", of(&[b"oms\n"])), PINNED);
    }

    const PINNED: &str = "2aede6d5b9170c70";
}
