//! Readers: one per consumer, each at its own position.
//!
//! A reader reads the segment files with large sequential reads (1 MiB, or
//! one chunk when a chunk is larger) into one buffer, and hands out chunks
//! and records as slices of it: memory per reader is that buffer, whatever
//! the stream's length, and the page cache does the rest. Live consumers
//! (at the end of the stream) usually find the chunk in the stream's
//! in-memory tail and make no system call at all.
//!
//! Reads block on the disk: run them on `spawn_blocking` or a reader thread,
//! never on an async worker. To wait for new records without a thread, use
//! [`Stream::subscribe`](super::Stream::subscribe) (async) or
//! [`Reader::wait`] (blocking); [`Reader::has_more`] is one atomic load.
//!
//! Every chunk read from a file is checked (header and data checksums,
//! record lengths, offset sequence); damage is an error naming the file,
//! byte position and offset, never a panic and never silently skipped.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use super::chunk::{self, Chunk, ChunkHeader};
use super::error::{IoContext, StreamError};
use super::filter::FilterSpec;
use super::index::Index;
use super::segment;
use super::state::{Committed, Shared};

/// The size of a reader's sequential reads.
pub const READ_SIZE: usize = 1 << 20;

/// Where a consumer starts: RabbitMQ's `x-stream-offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The oldest record kept.
    First,
    /// The first record of the last chunk.
    Last,
    /// After the last record: only what is published from now on.
    Next,
    /// This offset (the first kept if it is older; `Next` if past the end).
    Offset(u64),
    /// The first chunk appended at or after this time (ms since the epoch).
    Timestamp(i64),
}

/// Where a reader is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    segment: u64,
    /// Byte position of the next chunk in the segment.
    position: u64,
    /// First offset of the next chunk.
    chunk_offset: u64,
    /// The next offset to hand out (the reader skips records before it).
    next_offset: u64,
}

impl Position {
    fn end(committed: &Committed) -> Position {
        Position {
            segment: committed.segment,
            position: committed.end,
            chunk_offset: committed.next_offset,
            next_offset: committed.next_offset,
        }
    }

    fn start_of(segment: u64) -> Position {
        Position {
            segment,
            position: segment::HEADER_LEN,
            chunk_offset: segment,
            next_offset: segment,
        }
    }
}

/// One consumer's position in a stream.
#[derive(Debug)]
pub struct Reader {
    shared: Arc<Shared>,
    at: Position,
    file: Option<OpenSegment>,
    /// Bytes of the current segment from `buf_pos` on.
    buf: Bytes,
    buf_pos: u64,
    filter: Option<FilterSpec>,
}

#[derive(Debug)]
struct OpenSegment {
    file: File,
    path: PathBuf,
}

/// What reading the current segment gave.
enum Step {
    Chunk(ChunkHeader, Bytes),
    EndOfSegment,
    /// Retention removed the segment: start again from the first kept.
    Gone,
}

impl Reader {
    pub(crate) fn open(shared: Arc<Shared>, spec: OffsetSpec) -> Result<Reader, StreamError> {
        let at = resolve(&shared, spec)?;
        Ok(Reader {
            shared,
            at,
            file: None,
            buf: Bytes::new(),
            buf_pos: 0,
            filter: None,
        })
    }

    /// Only hand out chunks whose filter may hold these values
    /// (`x-stream-filter`); `None` for every chunk.
    pub fn set_filter(&mut self, filter: Option<FilterSpec>) {
        self.filter = filter;
    }

    /// The offset of the next record this reader hands out.
    pub fn next_offset(&self) -> u64 {
        self.at.next_offset
    }

    /// Are there committed records at or after this reader's position?
    pub fn has_more(&self) -> bool {
        self.shared.committed.load(Ordering::Acquire) > self.at.next_offset
    }

    /// Block until there is something to read or `timeout` passes.
    pub fn wait(&self, timeout: Duration) -> bool {
        self.shared.wait_for(self.at.next_offset, timeout)
    }

    /// Move to another starting point.
    pub fn seek(&mut self, spec: OffsetSpec) -> Result<(), StreamError> {
        let at = resolve(&self.shared, spec)?;
        self.jump(at);
        Ok(())
    }

    fn jump(&mut self, at: Position) {
        if at.segment != self.at.segment {
            self.file = None;
        }
        self.buf = Bytes::new();
        self.at = at;
    }

    /// The next chunk (from this reader's position on), or `None` when the
    /// reader has caught up with the committed end. Blocks on the disk.
    pub fn read(&mut self) -> Result<Option<Chunk>, StreamError> {
        loop {
            if self.shared.deleted.load(Ordering::Acquire) {
                return Err(StreamError::Deleted {
                    path: self.shared.dir.clone(),
                });
            }
            let (committed, first, cached, size) = {
                let view = self.shared.view.read();
                let cached = view
                    .cached(self.at.chunk_offset)
                    .filter(|c| c.segment == self.at.segment && c.position == self.at.position)
                    .map(|c| (c.header, c.bytes.clone()));
                let size = view.segment_size(self.at.segment);
                (view.committed, view.first_offset(), cached, size)
            };
            if self.at.chunk_offset < first {
                // Retention went past this reader: go on from the first kept.
                self.jump(Position::start_of(first));
                continue;
            }
            if self.at.chunk_offset >= committed.next_offset {
                return Ok(None);
            }
            let (header, bytes) = match cached {
                Some(found) => found,
                None => {
                    // The active segment is read to the committed end only;
                    // a sealed one to its end.
                    let sealed = self.at.segment != committed.segment;
                    let step = match size {
                        Some(_) if !sealed => self.read_file(committed.end, false)?,
                        Some(size) => self.read_file(size, true)?,
                        None => Step::Gone,
                    };
                    match step {
                        Step::Chunk(header, bytes) => (header, bytes),
                        Step::EndOfSegment => {
                            self.next_segment()?;
                            continue;
                        }
                        Step::Gone => {
                            let first = self.shared.view.read().first_offset();
                            if self.at.chunk_offset >= first {
                                let path = segment::segment_path(&self.shared.dir, self.at.segment);
                                return Err(StreamError::corrupt(
                                    &path,
                                    0,
                                    Some(self.at.chunk_offset),
                                    "segment file missing",
                                ));
                            }
                            self.jump(Position::start_of(first));
                            continue;
                        }
                    }
                }
            };
            let chunk = Chunk::new(header, bytes, self.at.next_offset);
            self.at.position += header.total_len();
            self.at.chunk_offset = header.next_offset();
            self.at.next_offset = header.next_offset();
            if self.filter.as_ref().is_some_and(|f| !chunk.matches(f)) {
                continue;
            }
            return Ok(Some(chunk));
        }
    }

    /// Move on to the segment after the current one, which must start where
    /// this one ended.
    fn next_segment(&mut self) -> Result<(), StreamError> {
        let next = self.shared.view.read().segment_after(self.at.segment);
        match next {
            Some(base) if base == self.at.chunk_offset => {
                self.jump(Position::start_of(base));
                Ok(())
            }
            Some(base) => Err(StreamError::corrupt(
                &segment::segment_path(&self.shared.dir, base),
                0,
                Some(base),
                format!(
                    "the previous segment ends at offset {}",
                    self.at.chunk_offset
                ),
            )),
            None => Err(StreamError::corrupt(
                &segment::segment_path(&self.shared.dir, self.at.segment),
                self.at.position,
                Some(self.at.chunk_offset),
                "the segment ends before the committed offset",
            )),
        }
    }

    /// Read the chunk at the reader's position from the segment file, no
    /// further than `limit` (the end of a sealed segment, the committed end
    /// of the active one).
    fn read_file(&mut self, limit: u64, sealed: bool) -> Result<Step, StreamError> {
        if self.file.is_none() {
            let path = segment::segment_path(&self.shared.dir, self.at.segment);
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Step::Gone),
                Err(e) => return Err(StreamError::io(&path, e)),
            };
            segment::check_header(&file, &path)?;
            self.file = Some(OpenSegment { file, path });
            self.buf = Bytes::new();
        }
        let position = self.at.position;
        if position >= limit {
            return match sealed {
                true => Ok(Step::EndOfSegment),
                false => Err(self.damage(position, "the segment ends before the committed offset")),
            };
        }
        let raw = self.bytes_at(position, chunk::HEADER_LEN, limit)?;
        let header = ChunkHeader::decode(&raw).map_err(|f| self.damage(position, f.reason()))?;
        if header.first_offset != self.at.chunk_offset {
            return Err(self.damage(position, chunk::Fault::Sequence.reason()));
        }
        let total = header.total_len();
        if position.saturating_add(total) > limit {
            return Err(self.damage(position, chunk::Fault::Short.reason()));
        }
        let bytes = self.bytes_at(position, total as usize, limit)?;
        header
            .check_body(&bytes[chunk::HEADER_LEN..])
            .map_err(|f| self.damage(position, f.reason()))?;
        Ok(Step::Chunk(header, bytes))
    }

    /// `len` bytes at `position` (which, with `len`, is within `limit`),
    /// from the buffer or from a fresh sequential read.
    fn bytes_at(&mut self, position: u64, len: usize, limit: u64) -> Result<Bytes, StreamError> {
        let in_buf = position >= self.buf_pos
            && position + len as u64 <= self.buf_pos + self.buf.len() as u64;
        if !in_buf {
            let Some(open) = self.file.as_mut() else {
                return Ok(Bytes::new());
            };
            let want = (READ_SIZE.max(len) as u64).min(limit - position);
            // read_to_end fills the spare capacity without zeroing it first.
            let mut data = Vec::with_capacity(want as usize);
            open.file.seek(SeekFrom::Start(position)).at(&open.path)?;
            (&open.file)
                .take(want)
                .read_to_end(&mut data)
                .at(&open.path)?;
            if (data.len() as u64) < len as u64 {
                return Err(self.damage(position, chunk::Fault::Short.reason()));
            }
            self.buf = Bytes::from(data);
            self.buf_pos = position;
        }
        let start = (position - self.buf_pos) as usize;
        Ok(self.buf.slice(start..start + len))
    }

    fn damage(&self, position: u64, reason: &str) -> StreamError {
        let path = segment::segment_path(&self.shared.dir, self.at.segment);
        StreamError::corrupt(&path, position, Some(self.at.chunk_offset), reason)
    }
}

/// Turn an offset spec into a position, by the in-memory segment list and
/// a binary search of one index (and, for a timestamp, of the segments'
/// last entries). Retention may remove a segment meanwhile: then try again.
fn resolve(shared: &Shared, spec: OffsetSpec) -> Result<Position, StreamError> {
    let mut last_error = None;
    for _ in 0..3 {
        match try_resolve(shared, spec) {
            Ok(at) => return Ok(at),
            Err(StreamError::Io { source, path })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                last_error = Some(StreamError::Io { source, path });
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or(StreamError::Deleted {
        path: shared.dir.clone(),
    }))
}

fn try_resolve(shared: &Shared, spec: OffsetSpec) -> Result<Position, StreamError> {
    let (committed, first, bases) = {
        let view = shared.view.read();
        let bases: Vec<u64> = match spec {
            OffsetSpec::Timestamp(_) => view.segments.iter().map(|m| m.base).collect(),
            OffsetSpec::Offset(o) => view.segment_for(o).into_iter().collect(),
            _ => Vec::new(),
        };
        (view.committed, view.first_offset(), bases)
    };
    let index_of = |base: u64| Index::open(&segment::index_path(&shared.dir, base));
    let at = match spec {
        OffsetSpec::First => Position::start_of(first),
        OffsetSpec::Next => Position::end(&committed),
        OffsetSpec::Last => match committed.last {
            Some(last) => Position {
                segment: last.segment,
                position: last.position,
                chunk_offset: last.offset,
                next_offset: last.offset,
            },
            None => Position::end(&committed),
        },
        OffsetSpec::Offset(o) if o >= committed.next_offset => Position::end(&committed),
        OffsetSpec::Offset(o) if o <= first => Position::start_of(first),
        OffsetSpec::Offset(o) => {
            let Some(&base) = bases.first() else {
                return Ok(Position::start_of(first));
            };
            match index_of(base)?.find_offset(o)? {
                Some(e) => Position {
                    segment: base,
                    position: e.position,
                    chunk_offset: e.first_offset,
                    next_offset: o,
                },
                None => Position {
                    next_offset: o,
                    ..Position::start_of(base)
                },
            }
        }
        OffsetSpec::Timestamp(ts) => {
            // Segments whose last chunk is older than `ts` form a prefix.
            let (mut lo, mut hi) = (0usize, bases.len());
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                let older = match index_of(bases[mid])?.last()? {
                    Some(e) => e.timestamp < ts,
                    None => true,
                };
                if older {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            let found = match bases.get(lo) {
                Some(&base) => index_of(base)?.find_timestamp(ts)?.map(|e| (base, e)),
                None => None,
            };
            match found {
                Some((base, e)) if e.first_offset < committed.next_offset => Position {
                    segment: base,
                    position: e.position,
                    chunk_offset: e.first_offset,
                    next_offset: e.first_offset,
                },
                _ => Position::end(&committed),
            }
        }
    };
    Ok(at)
}
