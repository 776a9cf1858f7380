//! Chunks: the unit of append, flush and read.
//!
//! One call to [`Stream::append`](super::Stream::append) writes one chunk:
//! a header, an optional filter, then the records. A chunk is written with
//! one `write`, indexed as one entry and checked with one checksum, so the
//! cost of all three is shared by every record of the batch. RabbitMQ's
//! `x-stream-offset: last` means "the first record of the last chunk".
//!
//! ```text
//! chunk:  header (40 bytes) | filter (filter-size bytes) | records (data-size bytes)
//! header: magic:u8 = 0xC5 | version:u8 = 1 | type:u8 = 0 | filter-size:u8
//!         | record-count:u32 | timestamp:i64 (ms since the epoch)
//!         | first-offset:u64 | data-size:u32 | data-crc:u32 | reserved:u32
//!         | header-crc:u32
//! record: length:u32 | bytes
//! ```
//!
//! All integers are big-endian. `data-crc` is the CRC-32 (IEEE) of the
//! filter and the records; `header-crc` covers the 36 bytes before it, so a
//! damaged length is caught before it is trusted.
//!
//! Why CRC-32 (IEEE) through `crc32fast`: it is the checksum osiris stores in
//! its chunks, `crc32fast` runs at several GB/s with PCLMULQDQ (or NEON) and
//! falls back to a portable table elsewhere, and the crate is already in the
//! dependency tree through sled. CRC-32C would be as good a check; it would
//! only add a crate.

use bytes::Bytes;

use super::error::StreamError;
use super::filter::{DEFAULT_FILTER_SIZE, FilterBuilder, FilterSpec};

pub const HEADER_LEN: usize = 40;
pub(crate) const MAGIC: u8 = 0xC5;
const VERSION: u8 = 1;
/// A chunk of records published to the stream. Other types (offset
/// tracking, as osiris has) can be added without changing the layout.
const TYPE_USER: u8 = 0;
/// Each record's length prefix.
pub const RECORD_PREFIX: usize = 4;
/// The largest chunk, header and filter included: lengths are u32 and a
/// reader must be able to hold one chunk.
pub const MAX_CHUNK_LEN: usize = u32::MAX as usize;

/// A chunk header, decoded and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    pub first_offset: u64,
    pub record_count: u32,
    /// Milliseconds since the epoch when the chunk was appended.
    pub timestamp: i64,
    pub filter_size: u8,
    pub data_size: u32,
    pub data_crc: u32,
}

/// Why bytes are not a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Short,
    Magic,
    Version,
    HeaderChecksum,
    DataChecksum,
    Records,
    /// A chunk whose first offset is not the one the log expects next.
    Sequence,
}

impl Fault {
    pub fn reason(self) -> &'static str {
        match self {
            Fault::Short => "chunk cut short",
            Fault::Magic => "no chunk starts here",
            Fault::Version => "unknown chunk version or type",
            Fault::HeaderChecksum => "chunk header checksum mismatch",
            Fault::DataChecksum => "chunk data checksum mismatch",
            Fault::Records => "record lengths do not add up to the chunk",
            Fault::Sequence => "chunk offset out of sequence",
        }
    }
}

impl ChunkHeader {
    /// Header, filter and records.
    pub fn total_len(&self) -> u64 {
        HEADER_LEN as u64 + self.filter_size as u64 + self.data_size as u64
    }

    /// The offset after the chunk's last record (checked when decoded).
    pub fn next_offset(&self) -> u64 {
        self.first_offset + self.record_count as u64
    }

    fn encode(&self, out: &mut [u8]) {
        out[0] = MAGIC;
        out[1] = VERSION;
        out[2] = TYPE_USER;
        out[3] = self.filter_size;
        out[4..8].copy_from_slice(&self.record_count.to_be_bytes());
        out[8..16].copy_from_slice(&self.timestamp.to_be_bytes());
        out[16..24].copy_from_slice(&self.first_offset.to_be_bytes());
        out[24..28].copy_from_slice(&self.data_size.to_be_bytes());
        out[28..32].copy_from_slice(&self.data_crc.to_be_bytes());
        out[32..36].copy_from_slice(&0u32.to_be_bytes());
        let crc = crc32fast::hash(&out[..36]);
        out[36..40].copy_from_slice(&crc.to_be_bytes());
    }

    /// Decode and check a header (not the data it describes).
    pub fn decode(raw: &[u8]) -> Result<ChunkHeader, Fault> {
        let raw = raw.get(..HEADER_LEN).ok_or(Fault::Short)?;
        if raw[0] != MAGIC {
            return Err(Fault::Magic);
        }
        if crc32fast::hash(&raw[..36]) != be32(&raw[36..40]) {
            return Err(Fault::HeaderChecksum);
        }
        if raw[1] != VERSION || raw[2] != TYPE_USER {
            return Err(Fault::Version);
        }
        let header = ChunkHeader {
            first_offset: be64(&raw[16..24]),
            record_count: be32(&raw[4..8]),
            timestamp: be64(&raw[8..16]) as i64,
            filter_size: raw[3],
            data_size: be32(&raw[24..28]),
            data_crc: be32(&raw[28..32]),
        };
        let records_fit =
            (header.record_count as u64) * RECORD_PREFIX as u64 <= header.data_size as u64;
        if header.record_count == 0
            || !records_fit
            || header.total_len() > MAX_CHUNK_LEN as u64
            || header
                .first_offset
                .checked_add(header.record_count as u64)
                .is_none()
        {
            return Err(Fault::Records);
        }
        Ok(header)
    }

    /// Check the bytes after the header (`filter` then `records`, exactly
    /// `total_len() - HEADER_LEN` of them): the checksum, then that the
    /// record lengths add up.
    pub fn check_body(&self, body: &[u8]) -> Result<(), Fault> {
        if body.len() as u64 != self.total_len() - HEADER_LEN as u64 {
            return Err(Fault::Short);
        }
        if crc32fast::hash(body) != self.data_crc {
            return Err(Fault::DataChecksum);
        }
        let records = &body[self.filter_size as usize..];
        let mut at = 0usize;
        for _ in 0..self.record_count {
            let len = records.get(at..at + RECORD_PREFIX).ok_or(Fault::Records)?;
            at = at
                .checked_add(RECORD_PREFIX + be32(len) as usize)
                .filter(|end| *end <= records.len())
                .ok_or(Fault::Records)?;
        }
        if at != records.len() {
            return Err(Fault::Records);
        }
        Ok(())
    }
}

pub(crate) fn be32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

pub(crate) fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// The records of one append, encoded in place: the buffer starts with room
/// for the header and the filter, so sealing the batch writes them in front
/// without moving the records.
#[derive(Debug, Clone)]
pub struct Batch {
    buf: Vec<u8>,
    count: u32,
    filter: FilterBuilder,
}

impl Default for Batch {
    fn default() -> Self {
        Batch::new()
    }
}

impl Batch {
    pub fn new() -> Batch {
        Batch::with_filter_size(DEFAULT_FILTER_SIZE)
    }

    /// A batch whose chunk filter (if any record has a filter value) is
    /// `filter_size` bytes (16 to 255; RabbitMQ's `x-stream-filter-size-bytes`).
    pub fn with_filter_size(filter_size: u8) -> Batch {
        let filter = FilterBuilder::new(filter_size);
        let mut buf = Vec::with_capacity(4096);
        buf.resize(HEADER_LEN + filter.size(), 0);
        Batch {
            buf,
            count: 0,
            filter,
        }
    }

    /// Number of records.
    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of records so far (length prefixes included).
    pub fn data_len(&self) -> usize {
        self.buf.len() - self.reserved()
    }

    /// The length of the chunk this batch makes.
    pub fn chunk_len(&self) -> usize {
        let filter = if self.filter.has_values() {
            self.filter.size()
        } else {
            0
        };
        HEADER_LEN + filter + self.data_len()
    }

    fn reserved(&self) -> usize {
        HEADER_LEN + self.filter.size()
    }

    /// Add a record.
    pub fn push(&mut self, record: &[u8]) -> Result<(), StreamError> {
        self.push_with(None, |out| out.extend_from_slice(record))
    }

    /// Add a record with a filter value (`x-stream-filter-value`).
    pub fn push_filtered(&mut self, record: &[u8], filter_value: &[u8]) -> Result<(), StreamError> {
        self.push_with(Some(filter_value), |out| out.extend_from_slice(record))
    }

    /// Add a record that `write` appends to the buffer, so an encoder (the
    /// AMQP message codec) writes straight into the chunk.
    pub fn push_with(
        &mut self,
        filter_value: Option<&[u8]>,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), StreamError> {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; RECORD_PREFIX]);
        write(&mut self.buf);
        let len = self.buf.len() - start - RECORD_PREFIX;
        if self.buf.len() > MAX_CHUNK_LEN || self.count == u32::MAX {
            self.buf.truncate(start);
            return Err(StreamError::TooLarge(len));
        }
        self.buf[start..start + RECORD_PREFIX].copy_from_slice(&(len as u32).to_be_bytes());
        self.filter.add(filter_value);
        self.count += 1;
        Ok(())
    }

    /// Write the header (and filter) in front of the records: the chunk's
    /// bytes start at the returned index of the returned buffer.
    pub(crate) fn seal(
        mut self,
        first_offset: u64,
        timestamp: i64,
    ) -> (ChunkHeader, Vec<u8>, usize) {
        let reserved = self.reserved();
        let data_size = (self.buf.len() - reserved) as u32;
        let (start, filter_size) = match self.filter.finish() {
            Some(bits) => {
                self.buf[HEADER_LEN..reserved].copy_from_slice(&bits);
                (0, bits.len() as u8)
            }
            // No filter: the header goes right before the records.
            None => (reserved - HEADER_LEN, 0),
        };
        let body_start = start + HEADER_LEN;
        let header = ChunkHeader {
            first_offset,
            record_count: self.count,
            timestamp,
            filter_size,
            data_size,
            data_crc: crc32fast::hash(&self.buf[body_start..]),
        };
        header.encode(&mut self.buf[start..body_start]);
        (header, self.buf, start)
    }
}

/// One chunk as a reader gets it: the records from the reader's position on.
#[derive(Debug, Clone)]
pub struct Chunk {
    header: ChunkHeader,
    /// Header, filter and records, checked.
    bytes: Bytes,
    /// The first offset to hand out (a reader that started in the middle of
    /// the chunk skips the records before it).
    start: u64,
}

impl Chunk {
    /// `bytes` must have been checked against `header`.
    pub(crate) fn new(header: ChunkHeader, bytes: Bytes, start: u64) -> Chunk {
        Chunk {
            header,
            bytes,
            start: start.max(header.first_offset),
        }
    }

    /// The offset of the chunk's first record (which may be before the
    /// first record [`records`](Chunk::records) yields).
    pub fn first_offset(&self) -> u64 {
        self.header.first_offset
    }

    /// The offset after the chunk's last record.
    pub fn next_offset(&self) -> u64 {
        self.header.next_offset()
    }

    /// Milliseconds since the epoch when the chunk was appended.
    pub fn timestamp(&self) -> i64 {
        self.header.timestamp
    }

    /// The chunk's size in bytes (header, filter and records).
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Records in the whole chunk.
    pub fn record_count(&self) -> u32 {
        self.header.record_count
    }

    /// The chunk's filter (empty when none of its records has a value).
    pub fn filter(&self) -> &[u8] {
        let start = HEADER_LEN;
        self.bytes
            .get(start..start + self.header.filter_size as usize)
            .unwrap_or(&[])
    }

    pub(crate) fn matches(&self, spec: &FilterSpec) -> bool {
        spec.matches(self.filter())
    }

    /// The records from the reader's position on, as (offset, bytes); each
    /// record is a slice of the chunk, not a copy.
    pub fn records(&self) -> Records {
        Records {
            bytes: self.bytes.clone(),
            at: HEADER_LEN + self.header.filter_size as usize,
            offset: self.header.first_offset,
            end: self.header.next_offset(),
            start: self.start,
        }
    }
}

/// Iterator over a chunk's records.
#[derive(Debug, Clone)]
pub struct Records {
    bytes: Bytes,
    at: usize,
    offset: u64,
    end: u64,
    start: u64,
}

impl Iterator for Records {
    type Item = (u64, Bytes);

    fn next(&mut self) -> Option<(u64, Bytes)> {
        while self.offset < self.end {
            // Lengths were checked with the chunk; `get` keeps a bad one
            // from ever panicking.
            let len = be32(self.bytes.get(self.at..self.at + RECORD_PREFIX)?) as usize;
            let start = self.at + RECORD_PREFIX;
            let end = start.checked_add(len).filter(|e| *e <= self.bytes.len())?;
            let offset = self.offset;
            self.at = end;
            self.offset += 1;
            if offset >= self.start {
                return Some((offset, self.bytes.slice(start..end)));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(batch: Batch, first: u64) -> (ChunkHeader, Bytes) {
        let (header, buf, start) = batch.seal(first, 1234);
        (header, Bytes::from(buf).slice(start..))
    }

    #[test]
    fn a_sealed_batch_decodes_and_iterates() {
        let mut b = Batch::new();
        b.push(b"one").unwrap();
        b.push(b"").unwrap();
        b.push(b"three").unwrap();
        let (header, bytes) = sealed(b, 7);
        assert_eq!(bytes.len() as u64, header.total_len());
        let decoded = ChunkHeader::decode(&bytes).unwrap();
        assert_eq!(decoded, header);
        assert_eq!((decoded.first_offset, decoded.record_count), (7, 3));
        assert_eq!(decoded.filter_size, 0);
        decoded.check_body(&bytes[HEADER_LEN..]).unwrap();
        let chunk = Chunk::new(decoded, bytes, 8);
        let records: Vec<_> = chunk.records().collect();
        assert_eq!(
            records,
            vec![(8, Bytes::new()), (9, Bytes::from_static(b"three"))]
        );
    }

    #[test]
    fn a_filtered_batch_carries_its_filter() {
        let mut b = Batch::new();
        b.push_filtered(b"a", b"eu").unwrap();
        let (header, bytes) = sealed(b, 0);
        assert_eq!(header.filter_size, DEFAULT_FILTER_SIZE);
        header.check_body(&bytes[HEADER_LEN..]).unwrap();
        let chunk = Chunk::new(header, bytes, 0);
        let eu = FilterSpec {
            values: vec![Bytes::from_static(b"eu")],
            match_unfiltered: false,
        };
        assert!(chunk.matches(&eu));
        assert_eq!(chunk.records().count(), 1);
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let mut b = Batch::new();
        b.push(b"payload").unwrap();
        let (_, bytes) = sealed(b, 3);
        for i in 0..bytes.len() * 8 {
            let mut bad = bytes.to_vec();
            bad[i / 8] ^= 1 << (i % 8);
            let ok =
                ChunkHeader::decode(&bad).and_then(|h| h.check_body(&bad[HEADER_LEN..]).map(|_| h));
            assert!(ok.is_err(), "bit {i}");
        }
    }
}
