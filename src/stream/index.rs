//! Index files: one per segment, one fixed-size entry per chunk, so a reader
//! finds the chunk holding an offset, or the first chunk at or after a
//! timestamp, with a binary search of a few `pread`s instead of a scan.
//!
//! ```text
//! index: "WIDX" | version:u32 = 1 | entry*
//! entry: first-offset:u64 | timestamp:i64 | position:u64 | record-count:u32
//!        | chunk-len:u32 | reserved:u32 | crc:u32      (40 bytes, big-endian)
//! ```
//!
//! `position` is where the chunk's header starts in the segment file; `crc`
//! is the CRC-32 of the 36 bytes before it, so a torn or zeroed entry is
//! recognised. Entries are written only after the chunks they describe are
//! on disk (see `log.rs`), so an entry that checks out points at a chunk
//! that was durable.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::chunk::{ChunkHeader, be32, be64};
use super::error::{IoContext, StreamError};

pub const INDEX_HEADER: [u8; 8] = *b"WIDX\0\0\0\x01";
pub const HEADER_LEN: u64 = INDEX_HEADER.len() as u64;
pub const ENTRY_LEN: u64 = 40;

/// Where a chunk is and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub first_offset: u64,
    pub timestamp: i64,
    /// Position of the chunk header in the segment file.
    pub position: u64,
    pub record_count: u32,
    pub chunk_len: u32,
}

impl IndexEntry {
    pub fn of(header: &ChunkHeader, position: u64) -> IndexEntry {
        IndexEntry {
            first_offset: header.first_offset,
            timestamp: header.timestamp,
            position,
            record_count: header.record_count,
            // Headers are checked to fit u32 when decoded or built.
            chunk_len: header.total_len() as u32,
        }
    }

    pub fn next_offset(&self) -> u64 {
        self.first_offset.saturating_add(self.record_count as u64)
    }

    /// The position after the chunk.
    pub fn end(&self) -> u64 {
        self.position.saturating_add(self.chunk_len as u64)
    }

    /// Does the chunk header agree with this entry?
    pub fn describes(&self, header: &ChunkHeader, position: u64) -> bool {
        *self == IndexEntry::of(header, position)
    }

    pub fn encode(&self) -> [u8; ENTRY_LEN as usize] {
        let mut out = [0u8; ENTRY_LEN as usize];
        out[0..8].copy_from_slice(&self.first_offset.to_be_bytes());
        out[8..16].copy_from_slice(&self.timestamp.to_be_bytes());
        out[16..24].copy_from_slice(&self.position.to_be_bytes());
        out[24..28].copy_from_slice(&self.record_count.to_be_bytes());
        out[28..32].copy_from_slice(&self.chunk_len.to_be_bytes());
        let crc = crc32fast::hash(&out[..36]);
        out[36..40].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// `None` for a torn, zeroed or damaged entry.
    pub fn decode(raw: &[u8]) -> Option<IndexEntry> {
        let raw = raw.get(..ENTRY_LEN as usize)?;
        if crc32fast::hash(&raw[..36]) != be32(&raw[36..40]) {
            return None;
        }
        let entry = IndexEntry {
            first_offset: be64(&raw[0..8]),
            timestamp: be64(&raw[8..16]) as i64,
            position: be64(&raw[16..24]),
            record_count: be32(&raw[24..28]),
            chunk_len: be32(&raw[28..32]),
        };
        (entry.record_count > 0
            && entry
                .first_offset
                .checked_add(entry.record_count as u64)
                .is_some())
        .then_some(entry)
    }
}

/// A read-only view of an index file: the entries it held when opened.
#[derive(Debug)]
pub struct Index {
    file: File,
    path: PathBuf,
    count: u64,
}

impl Index {
    pub fn open(path: &Path) -> Result<Index, StreamError> {
        let file = File::open(path).at(path)?;
        Index::from_file(file, path)
    }

    pub fn from_file(file: File, path: &Path) -> Result<Index, StreamError> {
        let len = file.metadata().at(path)?.len();
        let mut header = [0u8; HEADER_LEN as usize];
        if len < HEADER_LEN || file.read_exact_at(&mut header, 0).is_err() || header != INDEX_HEADER
        {
            return Err(StreamError::corrupt(
                path,
                0,
                None,
                "not an index file (bad header)",
            ));
        }
        Ok(Index {
            file,
            path: path.to_path_buf(),
            count: (len - HEADER_LEN) / ENTRY_LEN,
        })
    }

    /// Entry `i`, or an error naming the file if it is damaged.
    pub fn entry(&self, i: u64) -> Result<IndexEntry, StreamError> {
        let position = HEADER_LEN + i * ENTRY_LEN;
        let mut raw = [0u8; ENTRY_LEN as usize];
        self.file.read_exact_at(&mut raw, position).at(&self.path)?;
        IndexEntry::decode(&raw)
            .ok_or_else(|| StreamError::corrupt(&self.path, position, None, "damaged index entry"))
    }

    pub fn last(&self) -> Result<Option<IndexEntry>, StreamError> {
        match self.count {
            0 => Ok(None),
            n => self.entry(n - 1).map(Some),
        }
    }

    /// The last entry whose first offset is at most `offset` (the chunk
    /// holding it), or `None` if `offset` is before the first entry.
    pub fn find_offset(&self, offset: u64) -> Result<Option<IndexEntry>, StreamError> {
        self.partition(|e| e.first_offset <= offset)
            .map(|(before, _)| before)
    }

    /// The first entry whose timestamp is at least `timestamp`.
    pub fn find_timestamp(&self, timestamp: i64) -> Result<Option<IndexEntry>, StreamError> {
        self.partition(|e| e.timestamp < timestamp)
            .map(|(_, after)| after)
    }

    /// Binary search for the boundary of a predicate that holds for a prefix
    /// of the entries: returns the last entry where it holds and the first
    /// where it does not.
    fn partition(
        &self,
        holds: impl Fn(&IndexEntry) -> bool,
    ) -> Result<(Option<IndexEntry>, Option<IndexEntry>), StreamError> {
        let (mut lo, mut hi) = (0u64, self.count);
        let (mut before, mut after) = (None, None);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let e = self.entry(mid)?;
            if holds(&e) {
                before = Some(e);
                lo = mid + 1;
            } else {
                after = Some(e);
                hi = mid;
            }
        }
        Ok((before, after))
    }
}

/// Encode entries for one write.
pub fn encode_all(entries: &[IndexEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ENTRY_LEN as usize);
    for e in entries {
        out.extend_from_slice(&e.encode());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_damage_is_seen() {
        let e = IndexEntry {
            first_offset: u64::MAX - 10,
            timestamp: -5,
            position: 8,
            record_count: 10,
            chunk_len: 100,
        };
        let raw = e.encode();
        assert_eq!(IndexEntry::decode(&raw), Some(e));
        assert_eq!(IndexEntry::decode(&[0u8; 40]), None);
        for i in 0..raw.len() * 8 {
            let mut bad = raw;
            bad[i / 8] ^= 1 << (i % 8);
            assert_eq!(IndexEntry::decode(&bad), None, "bit {i}");
        }
        assert_eq!(IndexEntry::decode(&raw[..39]), None);
    }
}
