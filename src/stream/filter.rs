//! Chunk filters: RabbitMQ 3.13's `x-stream-filter`, as osiris does it.
//!
//! A publisher may give a record a filter value (a short string such as a
//! region or a tenant). Each chunk then carries a small Bloom filter over the
//! values of its records, so a consumer that asks only for some values skips
//! whole chunks without reading their records. A Bloom filter answers "maybe"
//! or "certainly not": the consumer still filters record by record (RabbitMQ
//! leaves that to the client), but chunks without its values are never read.
//!
//! Bit 0 of the filter is reserved: it is set when the chunk also holds
//! records without a filter value, so `match_unfiltered` readers can find
//! them. A chunk in which no record has a filter value carries no filter
//! (size 0), and only `match_unfiltered` readers (or readers without a
//! filter) see it.
//!
//! The two bit positions of a value come from CRC-32 with two different
//! initial values: stable across releases and platforms, unlike std's hasher,
//! and already at hand for the chunk checksums.

use bytes::Bytes;

/// Filter size in bytes (osiris' default: 16 bytes, 128 bits).
pub const DEFAULT_FILTER_SIZE: u8 = 16;
/// Smallest filter size osiris accepts; smaller sizes are raised to it.
pub const MIN_FILTER_SIZE: u8 = 16;

/// The two bit positions of `value` in a filter of `bits` bits, in
/// `1..bits` (bit 0 is the "unfiltered records present" mark).
fn positions(value: &[u8], bits: u32) -> (u32, u32) {
    let range = bits - 1;
    let h1 = crc32(0, value) % range + 1;
    let h2 = crc32(0x9e37_79b9, value) % range + 1;
    (h1, h2)
}

fn crc32(initial: u32, value: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(initial);
    h.update(value);
    h.finalize()
}

fn set(bits: &mut [u8], n: u32) {
    if let Some(byte) = bits.get_mut((n / 8) as usize) {
        *byte |= 0x80 >> (n % 8);
    }
}

fn is_set(bits: &[u8], n: u32) -> bool {
    bits.get((n / 8) as usize)
        .is_some_and(|byte| byte & (0x80 >> (n % 8)) != 0)
}

/// Builds the filter of one chunk while records are added.
#[derive(Debug, Clone)]
pub(crate) struct FilterBuilder {
    bits: Vec<u8>,
    filtered: bool,
    unfiltered: bool,
}

impl FilterBuilder {
    pub(crate) fn new(size: u8) -> FilterBuilder {
        FilterBuilder {
            bits: vec![0; size.max(MIN_FILTER_SIZE) as usize],
            filtered: false,
            unfiltered: false,
        }
    }

    pub(crate) fn size(&self) -> usize {
        self.bits.len()
    }

    /// Record one record's filter value (`None` or empty: unfiltered).
    pub(crate) fn add(&mut self, value: Option<&[u8]>) {
        match value {
            Some(v) if !v.is_empty() => {
                let (h1, h2) = positions(v, self.bits.len() as u32 * 8);
                set(&mut self.bits, h1);
                set(&mut self.bits, h2);
                self.filtered = true;
            }
            _ => self.unfiltered = true,
        }
    }

    pub(crate) fn has_values(&self) -> bool {
        self.filtered
    }

    /// The filter to store, or `None` when no record had a value.
    pub(crate) fn finish(&self) -> Option<Vec<u8>> {
        if !self.filtered {
            return None;
        }
        let mut bits = self.bits.clone();
        if self.unfiltered {
            set(&mut bits, 0);
        }
        Some(bits)
    }
}

/// What a consumer asks for: `x-stream-filter` values and
/// `x-stream-match-unfiltered`.
#[derive(Debug, Clone, Default)]
pub struct FilterSpec {
    pub values: Vec<Bytes>,
    pub match_unfiltered: bool,
}

impl FilterSpec {
    /// May the chunk whose stored filter is `filter` hold a wanted record?
    pub fn matches(&self, filter: &[u8]) -> bool {
        if filter.is_empty() {
            // No record of the chunk has a filter value.
            return self.match_unfiltered;
        }
        if self.match_unfiltered && is_set(filter, 0) {
            return true;
        }
        let bits = filter.len() as u32 * 8;
        self.values.iter().any(|v| {
            let (h1, h2) = positions(v, bits);
            is_set(filter, h1) && is_set(filter, h2)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(values: &[&str], match_unfiltered: bool) -> FilterSpec {
        FilterSpec {
            values: values
                .iter()
                .map(|v| Bytes::copy_from_slice(v.as_bytes()))
                .collect(),
            match_unfiltered,
        }
    }

    #[test]
    fn a_chunk_matches_the_values_it_holds() {
        let mut b = FilterBuilder::new(DEFAULT_FILTER_SIZE);
        b.add(Some(b"eu"));
        b.add(Some(b"us"));
        let filter = b.finish().unwrap();
        assert!(spec(&["eu"], false).matches(&filter));
        assert!(spec(&["asia", "us"], false).matches(&filter));
        // Bit 0 is not set: no unfiltered records.
        assert!(!spec(&[], true).matches(&filter));
    }

    #[test]
    fn chunks_without_values_match_only_unfiltered_readers() {
        let mut b = FilterBuilder::new(DEFAULT_FILTER_SIZE);
        b.add(None);
        assert_eq!(b.finish(), None);
        assert!(!spec(&["eu"], false).matches(&[]));
        assert!(spec(&["eu"], true).matches(&[]));
    }

    #[test]
    fn mixed_chunks_mark_their_unfiltered_records() {
        let mut b = FilterBuilder::new(DEFAULT_FILTER_SIZE);
        b.add(Some(b"eu"));
        b.add(Some(b""));
        let filter = b.finish().unwrap();
        assert!(spec(&["nowhere"], true).matches(&filter));
    }

    #[test]
    fn most_other_values_are_skipped() {
        let mut b = FilterBuilder::new(DEFAULT_FILTER_SIZE);
        b.add(Some(b"eu"));
        let filter = b.finish().unwrap();
        let misses = (0..1000)
            .filter(|i| !spec(&[&format!("value-{i}")], false).matches(&filter))
            .count();
        // Two bits of 127 set: a stranger passes about 1 time in 4000.
        assert!(misses > 990, "{misses}");
    }
}
