//! The state a stream's writer and readers share: the segment list, the
//! committed end, the in-memory tail, and the wake-up for waiting readers.
//! The writer (`log.rs`) changes it at flush, roll-over and retention;
//! readers (`reader.rs`) only read it.

use std::collections::VecDeque;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};
use tokio::sync::watch;

use super::chunk::ChunkHeader;

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) view: RwLock<View>,
    /// `view.committed.next_offset`, readable without a lock.
    pub(crate) committed: AtomicU64,
    /// The writer's next offset, readable without a lock.
    pub(crate) appended: AtomicU64,
    pub(crate) failed: AtomicBool,
    pub(crate) deleted: AtomicBool,
    pub(crate) watch: watch::Sender<u64>,
    pub(crate) wake: Mutex<()>,
    pub(crate) wake_cv: Condvar,
    /// Holds the directory's lock (`flock`) while open.
    pub(crate) _lock: File,
}

/// What readers see: segments, the committed end, recent chunks.
#[derive(Debug)]
pub(crate) struct View {
    pub(crate) segments: VecDeque<SegmentMeta>,
    pub(crate) committed: Committed,
    pub(crate) cache: VecDeque<Cached>,
    pub(crate) cache_bytes: usize,
    pub(crate) cache_budget: usize,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct SegmentMeta {
    pub(crate) base: u64,
    /// Committed bytes (final for sealed segments).
    pub(crate) size: u64,
    /// Read from the index when retention by age first needs it.
    pub(crate) last_timestamp: Option<i64>,
}

/// The durable, visible end of the stream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Committed {
    pub(crate) next_offset: u64,
    /// The segment holding the end, and the byte position of the end in it.
    pub(crate) segment: u64,
    pub(crate) end: u64,
    /// The last chunk (RabbitMQ's `last`).
    pub(crate) last: Option<ChunkRef>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkRef {
    pub(crate) offset: u64,
    pub(crate) segment: u64,
    pub(crate) position: u64,
}

/// A committed chunk kept in memory.
#[derive(Debug, Clone)]
pub(crate) struct Cached {
    pub(crate) header: ChunkHeader,
    pub(crate) segment: u64,
    pub(crate) position: u64,
    pub(crate) bytes: Bytes,
}

impl View {
    pub(crate) fn new(
        segments: VecDeque<SegmentMeta>,
        committed: Committed,
        cache_budget: usize,
    ) -> View {
        View {
            segments,
            committed,
            cache: VecDeque::new(),
            cache_bytes: 0,
            cache_budget,
        }
    }

    pub(crate) fn first_offset(&self) -> u64 {
        self.segments.front().map(|m| m.base).unwrap_or(0)
    }

    pub(crate) fn push_cached(&mut self, cached: Cached) {
        if cached.bytes.len() > self.cache_budget {
            return;
        }
        self.cache_bytes += cached.bytes.len();
        self.cache.push_back(cached);
        while self.cache_bytes > self.cache_budget {
            match self.cache.pop_front() {
                Some(old) => self.cache_bytes -= old.bytes.len(),
                None => break,
            }
        }
    }

    pub(crate) fn recount_cache(&mut self) {
        self.cache_bytes = self.cache.iter().map(|c| c.bytes.len()).sum();
    }

    /// The cached chunk starting at `offset`, if any.
    pub(crate) fn cached(&self, offset: u64) -> Option<&Cached> {
        let front = self.cache.front()?.header.first_offset;
        if offset < front {
            return None;
        }
        let i = self
            .cache
            .partition_point(|c| c.header.first_offset < offset);
        self.cache
            .get(i)
            .filter(|c| c.header.first_offset == offset)
    }

    /// The segment holding `offset` (the last whose base is at most it).
    pub(crate) fn segment_for(&self, offset: u64) -> Option<u64> {
        let i = self.segments.partition_point(|m| m.base <= offset);
        i.checked_sub(1).map(|i| self.segments[i].base)
    }

    /// The committed size of segment `base`, if it is still kept.
    pub(crate) fn segment_size(&self, base: u64) -> Option<u64> {
        let i = self.segments.partition_point(|m| m.base < base);
        self.segments
            .get(i)
            .filter(|m| m.base == base)
            .map(|m| m.size)
    }

    /// The segment after `base`.
    pub(crate) fn segment_after(&self, base: u64) -> Option<u64> {
        let i = self.segments.partition_point(|m| m.base <= base);
        self.segments.get(i).map(|m| m.base)
    }
}

impl Shared {
    /// `view.committed.next_offset`.
    pub(crate) fn committed_offset(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Block until records at or after `offset` are committed, or `timeout`
    /// passes; true if there are.
    pub(crate) fn wait_for(&self, offset: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self.wake.lock();
        while self.committed_offset() <= offset {
            if self.wake_cv.wait_until(&mut guard, deadline).timed_out() {
                return self.committed_offset() > offset;
            }
        }
        true
    }

    /// Wake every waiting reader (the committed end moved). Taking the
    /// lock first means a reader between its check and its wait is not
    /// missed.
    pub(crate) fn wake_all(&self) {
        drop(self.wake.lock());
        self.wake_cv.notify_all();
    }
}
