//! The stream: one writer appending chunks, a flush that makes them durable
//! and visible, and the state readers share.
//!
//! Appends write to the page cache only. [`Stream::flush`] syncs the
//! segment, then writes the index entries of the chunks it covered, then
//! publishes the new end to readers: readers only ever see chunks that are
//! on disk, so an offset a consumer has seen can never be lost and reused
//! after a crash, and an index entry always points at a chunk that was
//! durable when the entry was written (which is what lets open trust the
//! index and check only the tail).
//!
//! A segment is sealed only once all of it is flushed and its index synced,
//! so at open only the last segment can have a torn tail.
//!
//! Locks: `flush_lock` (one flush at a time) before `writer` before `view`.
//! No lock is held across an fsync except `flush_lock`, so appends go on
//! while a flush waits for the disk, and the next flush covers them all.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};
use tokio::sync::watch;
use tracing::{info, warn};

use super::chunk::{Batch, ChunkHeader};
use super::error::{IoContext, StreamError};
use super::filter::DEFAULT_FILTER_SIZE;
use super::index::{self, Index, IndexEntry};
use super::reader::{OffsetSpec, Reader};
use super::retention::{self, Retention};
use super::segment::{self, FileKind};
use super::state::{Cached, ChunkRef, Committed, SegmentMeta, Shared, View};

/// RabbitMQ's default `x-stream-max-segment-size-bytes`.
pub const DEFAULT_MAX_SEGMENT_SIZE_BYTES: u64 = 500_000_000;
/// Recent chunks kept in memory per stream for live consumers.
pub const DEFAULT_TAIL_CACHE_BYTES: usize = 4 << 20;

/// How a stream is kept. Retention can change later
/// ([`Stream::set_retention`]); the rest is fixed while open.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// A new segment starts when a chunk would take the current one past
    /// this (`x-stream-max-segment-size-bytes`).
    pub max_segment_size_bytes: u64,
    pub retention: Retention,
    /// Bytes of Bloom filter per chunk that has filter values.
    pub filter_size: u8,
    /// Recent chunks kept in memory so live consumers read without a
    /// system call (0: none).
    pub tail_cache_bytes: usize,
    /// Sync to disk at each flush. Off (the broker's `--sync off`), a flush
    /// still publishes appends to readers but promises nothing after a
    /// power loss, and damage it leaves is reported at open.
    pub sync: bool,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            max_segment_size_bytes: DEFAULT_MAX_SEGMENT_SIZE_BYTES,
            retention: Retention::default(),
            filter_size: DEFAULT_FILTER_SIZE,
            tail_cache_bytes: DEFAULT_TAIL_CACHE_BYTES,
            sync: true,
        }
    }
}

/// Where an append went. The records are durable, and visible to readers,
/// once [`Stream::committed_offset`] reaches `next_offset` (which
/// [`Stream::flush`] returns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub first_offset: u64,
    /// The offset after the chunk's last record.
    pub next_offset: u64,
    /// The chunk's timestamp (ms), never before the previous chunk's.
    pub timestamp: i64,
    /// The segment (by its first offset) and byte position of the chunk.
    pub segment: u64,
    pub position: u64,
}

/// A summary for management and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamStats {
    pub first_offset: u64,
    /// The offset the next committed record will get.
    pub committed_offset: u64,
    pub segments: usize,
    /// Bytes in segment files (committed data).
    pub bytes: u64,
}

/// Something the group-commit thread makes durable along with the store.
///
/// The syncer takes the highest ticket issued, calls `flush` on every
/// registered `Flushable` that `needs_flush`, flushes its own store, and
/// only then publishes the ticket: everything appended before the ticket
/// was issued is then on disk. A failed flush must keep the ticket pending
/// (and raise the disk alarm), never publish it.
pub trait Flushable: Send + Sync {
    /// Anything appended and not yet flushed? Cheap: one atomic load each.
    fn needs_flush(&self) -> bool;
    /// Make everything appended before this call durable.
    fn flush(&self) -> std::io::Result<()>;
}

/// A stream log, shared by its writer, its readers and the syncer.
#[derive(Debug, Clone)]
pub struct Stream {
    shared: Arc<Shared>,
    inner: Arc<Inner>,
}

/// The writer's half: only `Stream` handles hold it.
#[derive(Debug)]
struct Inner {
    writer: Mutex<Writer>,
    /// One flush at a time.
    flush_lock: Mutex<()>,
}

#[derive(Debug)]
struct Writer {
    config: StreamConfig,
    active: Active,
    next_offset: u64,
    last_timestamp: i64,
    /// Appended, not yet flushed; all in the active segment.
    pending: Vec<Pending>,
    pending_cache_bytes: usize,
    /// Files were created: sync the directory at the next flush.
    dir_dirty: bool,
}

#[derive(Debug)]
struct Active {
    base: u64,
    file: Arc<File>,
    index: Arc<File>,
    size: u64,
}

#[derive(Debug)]
struct Pending {
    entry: IndexEntry,
    header: ChunkHeader,
    bytes: Option<Bytes>,
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Stream {
    /// Open the stream in `dir`, creating it if empty. The time this takes
    /// does not depend on the stream's length: it lists the directory and
    /// checks the tail of the last segment only.
    pub fn open(dir: &Path, config: StreamConfig) -> Result<Stream, StreamError> {
        std::fs::create_dir_all(dir).at(dir)?;
        let lock = lock_dir(dir)?;
        let started = Instant::now();
        let mut listing = list(dir)?;
        if listing.segments.is_empty() {
            if let Some(base) = listing.orphan_indexes.first() {
                let path = segment::index_path(dir, *base);
                return Err(StreamError::corrupt(
                    &path,
                    0,
                    None,
                    "index without its segment file",
                ));
            }
            segment::create(dir, 0)?;
            segment::sync_dir(dir)?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                // The stream's directory itself is new.
                segment::sync_dir(parent)?;
            }
            listing.segments.insert(0, segment::HEADER_LEN);
        }
        let first = *listing.segments.keys().next().unwrap_or(&0);
        for base in listing.orphan_indexes {
            let path = segment::index_path(dir, base);
            if base < first {
                // Retention removes the segment first, then its index.
                std::fs::remove_file(&path).at(&path)?;
            } else {
                return Err(StreamError::corrupt(
                    &path,
                    0,
                    None,
                    "index without its segment file",
                ));
            }
        }
        let last = *listing.segments.keys().next_back().unwrap_or(&0);
        for base in listing.missing_indexes.iter().filter(|b| **b != last) {
            segment::rebuild_index(dir, *base)?;
        }
        let tail = segment::recover_tail(dir, last)?;
        let mut last_chunk = tail.last.map(|e| ChunkRef {
            offset: e.first_offset,
            segment: last,
            position: e.position,
        });
        let mut last_timestamp = tail.last.map(|e| e.timestamp);
        if last_chunk.is_none() {
            // The last segment is empty: the last chunk is in the one before.
            let prev = listing.segments.range(..last).next_back().map(|(b, _)| *b);
            if let Some(prev) = prev
                && let Some(e) = Index::open(&segment::index_path(dir, prev))?.last()?
            {
                last_chunk = Some(ChunkRef {
                    offset: e.first_offset,
                    segment: prev,
                    position: e.position,
                });
                last_timestamp = Some(e.timestamp);
            }
        }
        if config.sync {
            let seg_path = segment::segment_path(dir, last);
            tail.segment.sync_data().at(&seg_path)?;
            tail.index.sync_data().at(&segment::index_path(dir, last))?;
            segment::sync_dir(dir)?;
        }
        listing.segments.insert(last, tail.size);
        let segments: VecDeque<SegmentMeta> = listing
            .segments
            .iter()
            .map(|(&base, &size)| SegmentMeta {
                base,
                size,
                last_timestamp: None,
            })
            .collect();
        let committed = Committed {
            next_offset: tail.next_offset,
            segment: last,
            end: tail.size,
            last: last_chunk,
        };
        let (watch, _) = watch::channel(tail.next_offset);
        let stream = Stream {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                view: RwLock::new(View::new(segments, committed, config.tail_cache_bytes)),
                committed: AtomicU64::new(tail.next_offset),
                appended: AtomicU64::new(tail.next_offset),
                failed: AtomicBool::new(false),
                deleted: AtomicBool::new(false),
                watch,
                wake: Mutex::new(()),
                wake_cv: Condvar::new(),
                _lock: lock,
            }),
            inner: Arc::new(Inner {
                writer: Mutex::new(Writer {
                    active: Active {
                        base: last,
                        file: Arc::new(tail.segment),
                        index: Arc::new(tail.index),
                        size: tail.size,
                    },
                    next_offset: tail.next_offset,
                    last_timestamp: last_timestamp.unwrap_or(i64::MIN),
                    pending: Vec::new(),
                    pending_cache_bytes: 0,
                    dir_dirty: false,
                    config,
                }),
                flush_lock: Mutex::new(()),
            }),
        };
        stream.apply_retention()?;
        info!(
            "{}: stream open at offsets {}..{} in {:?}",
            dir.display(),
            stream.first_offset(),
            tail.next_offset,
            started.elapsed()
        );
        Ok(stream)
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Append a batch as one chunk, timestamped now.
    pub fn append(&self, batch: Batch) -> Result<Appended, StreamError> {
        self.append_at(batch, now_ms())
    }

    /// Append a batch as one chunk with the given timestamp (ms since the
    /// epoch; raised to the previous chunk's, so timestamps never go back and
    /// a search by time stays a binary search even when the clock does).
    ///
    /// The chunk goes to the page cache; it is durable and visible to
    /// readers after the next [`flush`](Stream::flush).
    pub fn append_at(&self, batch: Batch, timestamp: i64) -> Result<Appended, StreamError> {
        if batch.is_empty() {
            return Err(StreamError::EmptyBatch);
        }
        self.check_usable()?;
        let len = batch.chunk_len() as u64;
        let mut w = self.inner.writer.lock();
        // Seal the current segment first if the chunk would take it past
        // the limit; sealing needs everything in it flushed first.
        while w.needs_roll(len) {
            drop(w);
            self.flush()?;
            // Holding the flush lock, no flush is half done: if nothing is
            // pending, everything in the segment is synced and indexed.
            let _flushing = self.inner.flush_lock.lock();
            w = self.inner.writer.lock();
            if w.needs_roll(len) && w.pending.is_empty() {
                self.roll(&mut w)?;
            }
        }
        let timestamp = timestamp.max(w.last_timestamp);
        let first_offset = w.next_offset;
        let next_offset = first_offset
            .checked_add(batch.len() as u64)
            .ok_or(StreamError::OffsetOverflow)?;
        let (header, buf, start) = batch.seal(first_offset, timestamp);
        let position = w.active.size;
        let path = segment::segment_path(&self.shared.dir, w.active.base);
        // On error nothing moves: the next append writes over the same bytes.
        w.active
            .file
            .write_all_at(&buf[start..], position)
            .at(&path)?;
        w.active.size += header.total_len();
        w.next_offset = next_offset;
        w.last_timestamp = timestamp;
        let keep = w.config.tail_cache_bytes;
        let chunk_len = header.total_len() as usize;
        let bytes = (w.pending_cache_bytes + chunk_len <= keep).then(|| {
            w.pending_cache_bytes += chunk_len;
            Bytes::from(buf).slice(start..)
        });
        w.pending.push(Pending {
            entry: IndexEntry::of(&header, position),
            header,
            bytes,
        });
        self.shared.appended.store(next_offset, Ordering::Release);
        Ok(Appended {
            first_offset,
            next_offset,
            timestamp,
            segment: w.active.base,
            position,
        })
    }

    /// Seal the active segment (all flushed; the caller holds the flush
    /// lock) and start the next one.
    fn roll(&self, w: &mut Writer) -> Result<(), StreamError> {
        let dir = &self.shared.dir;
        if w.config.sync {
            // Its chunks were synced by the flush; its index must be too,
            // since only the last segment's index is checked at open.
            let path = segment::index_path(dir, w.active.base);
            w.active.index.sync_data().at(&path)?;
        }
        let base = w.next_offset;
        let (file, index) = segment::create(dir, base)?;
        let sealed = std::mem::replace(
            &mut w.active,
            Active {
                base,
                file: Arc::new(file),
                index: Arc::new(index),
                size: segment::HEADER_LEN,
            },
        );
        w.dir_dirty = true;
        {
            let mut view = self.shared.view.write();
            view.segments.push_back(SegmentMeta {
                base,
                size: segment::HEADER_LEN,
                last_timestamp: None,
            });
            if let Some(meta) = view.segments.iter_mut().find(|m| m.base == sealed.base) {
                meta.size = sealed.size;
                meta.last_timestamp = Some(w.last_timestamp);
            }
        }
        self.retain(w)?;
        Ok(())
    }

    /// Make every append made before this call durable and visible to
    /// readers; returns the committed offset (the offset after the last
    /// durable record). Run it on a blocking thread (the syncer's, or
    /// `spawn_blocking`): it waits for the disk.
    pub fn flush(&self) -> Result<u64, StreamError> {
        self.check_usable()?;
        let shared = &*self.shared;
        let _flushing = self.inner.flush_lock.lock();
        let (pending, file, index, base, target, dir_dirty, sync) = {
            let mut w = self.inner.writer.lock();
            if w.pending.is_empty() && !w.dir_dirty {
                return Ok(shared.committed.load(Ordering::Acquire));
            }
            let pending = std::mem::take(&mut w.pending);
            w.pending_cache_bytes = 0;
            let last = pending.last().map(|p| ChunkRef {
                offset: p.entry.first_offset,
                segment: w.active.base,
                position: p.entry.position,
            });
            let target = (w.next_offset, w.active.size, last);
            let dir_dirty = std::mem::take(&mut w.dir_dirty);
            let file = w.active.file.clone();
            let index = w.active.index.clone();
            let sync = w.config.sync;
            (pending, file, index, w.active.base, target, dir_dirty, sync)
        };
        if let Err(e) = self.write_out(&pending, &file, &index, base, dir_dirty, sync) {
            // After a failed fsync the kernel may have dropped the pages:
            // nothing after the last good flush can be trusted.
            shared.failed.store(true, Ordering::Release);
            return Err(e);
        }
        let (next_offset, end, last) = target;
        {
            let mut view = shared.view.write();
            view.committed = Committed {
                next_offset,
                segment: base,
                end,
                last: last.or(view.committed.last),
            };
            if let Some(meta) = view.segments.iter_mut().rev().find(|m| m.base == base) {
                meta.size = end;
            }
            for p in pending {
                if let Some(bytes) = p.bytes {
                    view.push_cached(Cached {
                        header: p.header,
                        segment: base,
                        position: p.entry.position,
                        bytes,
                    });
                }
            }
        }
        shared.committed.store(next_offset, Ordering::Release);
        shared.watch.send_replace(next_offset);
        shared.wake_all();
        Ok(next_offset)
    }

    /// Make records before `next_offset` durable (an [`Appended::next_offset`]):
    /// returns at once if a flush already covered them, else flushes.
    pub fn flush_to(&self, next_offset: u64) -> Result<u64, StreamError> {
        let committed = self.committed_offset();
        if committed >= next_offset {
            return Ok(committed);
        }
        self.flush()
    }

    /// Sync the segment (and directory), then write the index entries.
    fn write_out(
        &self,
        pending: &[Pending],
        file: &File,
        index: &File,
        base: u64,
        dir_dirty: bool,
        sync: bool,
    ) -> Result<(), StreamError> {
        let dir = &self.shared.dir;
        if sync {
            file.sync_data().at(&segment::segment_path(dir, base))?;
            if dir_dirty {
                segment::sync_dir(dir)?;
            }
        }
        if !pending.is_empty() {
            let entries: Vec<IndexEntry> = pending.iter().map(|p| p.entry).collect();
            let mut index = index;
            index
                .write_all(&index::encode_all(&entries))
                .at(&segment::index_path(dir, base))?;
        }
        Ok(())
    }

    /// Delete the oldest segments that retention no longer keeps; returns
    /// how many went. Runs when a segment is sealed; call it on a timer too
    /// so an idle stream ages out.
    pub fn apply_retention(&self) -> Result<usize, StreamError> {
        self.check_usable()?;
        let w = self.inner.writer.lock();
        self.retain(&w)
    }

    fn retain(&self, w: &Writer) -> Result<usize, StreamError> {
        let retention = w.config.retention;
        if retention.is_none() {
            return Ok(0);
        }
        let dir = &self.shared.dir;
        let (sizes, mut stamps, deletable) = {
            let view = self.shared.view.read();
            let sizes: Vec<u64> = view.segments.iter().map(|m| m.size).collect();
            let stamps: Vec<(u64, Option<i64>)> = view
                .segments
                .iter()
                .map(|m| (m.base, m.last_timestamp))
                .collect();
            // Only sealed segments, all of whose chunks are committed.
            let deletable = view
                .segments
                .iter()
                .take_while(|m| m.base < view.committed.segment && m.base < w.active.base)
                .count();
            (sizes, stamps, deletable)
        };
        let n = retention::segments_to_delete(&retention, &sizes, deletable, now_ms(), |i| {
            let (base, known) = stamps[i];
            if known.is_some() {
                return Ok(known);
            }
            let ts = Index::open(&segment::index_path(dir, base))?
                .last()?
                .map(|e| e.timestamp);
            stamps[i].1 = ts;
            Ok(ts)
        })?;
        if n == 0 {
            return Ok(0);
        }
        let gone: Vec<u64> = {
            let mut view = self.shared.view.write();
            let gone: Vec<u64> = view.segments.drain(..n).map(|m| m.base).collect();
            let first = view.segments.front().map(|m| m.base).unwrap_or(0);
            view.cache.retain(|c| c.header.first_offset >= first);
            view.recount_cache();
            gone
        };
        for base in &gone {
            // Segment first: an index left alone by a crash is recognised
            // as a leftover at open, a segment without index would be rebuilt.
            let seg = segment::segment_path(dir, *base);
            std::fs::remove_file(&seg).at(&seg)?;
            let idx = segment::index_path(dir, *base);
            std::fs::remove_file(&idx).at(&idx)?;
        }
        segment::sync_dir(dir)?;
        info!(
            "{}: retention removed {} segment(s)",
            dir.display(),
            gone.len()
        );
        Ok(gone.len())
    }

    /// Change `x-max-length-bytes` / `x-max-age` (a policy changed).
    pub fn set_retention(&self, retention: Retention) -> Result<usize, StreamError> {
        self.inner.writer.lock().config.retention = retention;
        self.apply_retention()
    }

    /// A reader starting at `spec` (`x-stream-offset`).
    pub fn reader(&self, spec: OffsetSpec) -> Result<Reader, StreamError> {
        Reader::open(self.shared.clone(), spec)
    }

    /// The offset of the oldest record kept.
    pub fn first_offset(&self) -> u64 {
        self.shared.view.read().first_offset()
    }

    /// The offset after the last durable record: readers see records below it.
    pub fn committed_offset(&self) -> u64 {
        self.shared.committed.load(Ordering::Acquire)
    }

    /// The offset the next appended record will get.
    pub fn next_offset(&self) -> u64 {
        self.shared.appended.load(Ordering::Acquire)
    }

    /// Changes to [`committed_offset`](Stream::committed_offset), for async
    /// consumers: await a change, then read on a blocking thread.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.watch.subscribe()
    }

    /// Block until records at or after `offset` are committed, or `timeout`
    /// passes; true if there are.
    pub fn wait_for(&self, offset: u64, timeout: Duration) -> bool {
        self.shared.wait_for(offset, timeout)
    }

    pub fn stats(&self) -> StreamStats {
        let view = self.shared.view.read();
        StreamStats {
            first_offset: view.first_offset(),
            committed_offset: view.committed.next_offset,
            segments: view.segments.len(),
            bytes: view.segments.iter().map(|m| m.size).sum(),
        }
    }

    /// Remove the stream from disk (queue.delete). Readers get
    /// [`StreamError::Deleted`] once past what they already hold open.
    pub fn delete(&self) -> Result<(), StreamError> {
        let _flushing = self.inner.flush_lock.lock();
        let _w = self.inner.writer.lock();
        self.shared.deleted.store(true, Ordering::Release);
        std::fs::remove_dir_all(&self.shared.dir).at(&self.shared.dir)
    }

    fn check_usable(&self) -> Result<(), StreamError> {
        let path = || self.shared.dir.clone();
        if self.shared.deleted.load(Ordering::Acquire) {
            return Err(StreamError::Deleted { path: path() });
        }
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(StreamError::Failed { path: path() });
        }
        Ok(())
    }
}

impl Flushable for Stream {
    fn needs_flush(&self) -> bool {
        self.next_offset() != self.committed_offset()
    }

    fn flush(&self) -> std::io::Result<()> {
        Stream::flush(self).map(|_| ()).map_err(Into::into)
    }
}

impl Writer {
    fn needs_roll(&self, chunk_len: u64) -> bool {
        self.active.size > segment::HEADER_LEN
            && self.active.size.saturating_add(chunk_len) > self.config.max_segment_size_bytes
    }
}

/// Files in a stream directory.
#[derive(Debug, Default)]
struct Listing {
    /// Segment base → file size.
    segments: BTreeMap<u64, u64>,
    orphan_indexes: Vec<u64>,
    missing_indexes: Vec<u64>,
}

fn list(dir: &Path) -> Result<Listing, StreamError> {
    let mut segments = BTreeMap::new();
    let mut indexes = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        let Some((base, kind)) = name.to_str().and_then(segment::parse_name) else {
            continue;
        };
        match kind {
            FileKind::Segment => {
                let size = entry.metadata().at(&entry.path())?.len();
                segments.insert(base, size);
            }
            FileKind::Index => indexes.push(base),
            FileKind::IndexTmp => segment::remove_tmp(dir, base)?,
        }
    }
    indexes.sort_unstable();
    let orphan_indexes = indexes
        .iter()
        .copied()
        .filter(|b| !segments.contains_key(b))
        .collect();
    let missing_indexes = segments
        .keys()
        .copied()
        .filter(|b| indexes.binary_search(b).is_err())
        .collect();
    Ok(Listing {
        segments,
        orphan_indexes,
        missing_indexes,
    })
}

/// Take the directory's lock: two writers on one log would interleave
/// chunks. The lock goes with the process, so a crash never leaves it held.
fn lock_dir(dir: &Path) -> Result<File, StreamError> {
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .at(&path)?;
    // SAFETY: flock on a descriptor this function owns; no memory is shared.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::WouldBlock {
            return Err(StreamError::Locked { path });
        }
        warn!("{}: cannot lock: {e}", path.display());
        return Err(StreamError::io(&path, e));
    }
    Ok(file)
}
