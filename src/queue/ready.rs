//! The ready messages of a queue, in delivery order.
//!
//! A queue has one `Level` per priority (one in all for a queue without
//! `x-max-priority`); the highest non-empty level is served first, FIFO
//! within a level. In each level the older part is in memory and the newer
//! part, past a per-queue bound, on disk only.
//!
//! Invariant of a level: every message in `loaded` precedes every entry of
//! `paged`. New messages go to the back: into `loaded` while it is short and
//! nothing is paged, to `paged` otherwise. Consumers take from `loaded`,
//! which is refilled from the front of `paged` a batch at a time. Requeued
//! messages come from memory and return to their position in `loaded`.

use std::collections::VecDeque;
use std::sync::Arc;

use super::storage::{Location, PagedRef, QueueStorage};
use crate::message::{QueuedMessage, SharedMessage};
use crate::store::codec::Names;

/// Messages read back from disk at a time.
const PAGE_IN_BATCH: usize = 256;

/// A ready message past the in-memory bound.
#[derive(Debug)]
enum Tail {
    OnDisk(PagedRef),
    /// Could not be written out (disk error): kept in memory, in order.
    Resident(QueuedMessage),
}

impl Tail {
    fn seq(&self) -> u64 {
        match self {
            Tail::OnDisk(p) => p.seq,
            Tail::Resident(m) => m.seq,
        }
    }

    fn expires_at(&self) -> Option<u64> {
        match self {
            Tail::OnDisk(p) => p.expires_at,
            Tail::Resident(m) => m.expires_at,
        }
    }
}

/// What [`ReadyQueue::clear`] removed that has copies on disk.
#[derive(Debug, Default)]
pub struct Cleared {
    /// Sequence numbers in the durable tree.
    pub on_disk: Vec<u64>,
    /// Shared records one reference each was dropped from.
    pub shared: Vec<Arc<SharedMessage>>,
}

/// The messages of one priority.
#[derive(Debug, Default)]
struct Level {
    loaded: VecDeque<QueuedMessage>,
    paged: VecDeque<Tail>,
}

impl Level {
    fn len(&self) -> usize {
        self.loaded.len() + self.paged.len()
    }

    fn page_in(&mut self, storage: Option<&QueueStorage>, names: &mut Names) -> usize {
        let mut lost_bytes = 0;
        while self.loaded.len() < PAGE_IN_BATCH {
            let Some(tail) = self.paged.pop_front() else {
                break;
            };
            match tail {
                Tail::Resident(message) => self.loaded.push_back(message),
                Tail::OnDisk(paged) => {
                    // The run of on-disk messages in the same tree that
                    // follows, read with one scan.
                    let room = PAGE_IN_BATCH - self.loaded.len();
                    let mut run = vec![paged];
                    while run.len() < room {
                        match self.paged.pop_front() {
                            Some(Tail::OnDisk(next)) if next.location == run[0].location => {
                                run.push(next)
                            }
                            Some(other) => {
                                self.paged.push_front(other);
                                break;
                            }
                            None => break,
                        }
                    }
                    let sizes: Vec<u32> = run.iter().map(|p| p.body_size).collect();
                    let Some(storage) = storage else {
                        lost_bytes += sizes.iter().map(|&s| s as usize).sum::<usize>();
                        continue;
                    };
                    for (message, size) in storage.page_in_run(run, names).into_iter().zip(sizes) {
                        match message {
                            Some(message) => self.loaded.push_back(message),
                            // Lost on disk (logged by storage): it no longer counts.
                            None => lost_bytes += size as usize,
                        }
                    }
                }
            }
        }
        lost_bytes
    }
}

#[derive(Debug)]
pub struct ReadyQueue {
    levels: Vec<Level>,
    len: usize,
    /// Sum of body sizes of every ready message (x-max-length-bytes).
    body_bytes: usize,
    /// No ready message expires before this (None: none expires). Kept as a
    /// lower bound as messages come and go, made exact by a full sweep, so a
    /// queue with per-message TTLs is swept only once something may have
    /// expired, not on every publish and ack.
    earliest: Option<u64>,
}

impl Default for ReadyQueue {
    fn default() -> Self {
        ReadyQueue::new(None)
    }
}

impl ReadyQueue {
    /// A queue with priorities 0..=`max_priority`, or one level.
    pub fn new(max_priority: Option<u8>) -> Self {
        let levels = max_priority.map_or(1, |p| p as usize + 1);
        ReadyQueue {
            levels: (0..levels).map(|_| Level::default()).collect(),
            len: 0,
            body_bytes: 0,
            earliest: None,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn body_bytes(&self) -> usize {
        self.body_bytes
    }

    /// The level a message of this priority goes to: absent is 0, above
    /// the maximum is the maximum.
    pub fn level_of(&self, priority: Option<u8>) -> usize {
        (priority.unwrap_or(0) as usize).min(self.levels.len() - 1)
    }

    /// Messages whose bodies are in memory.
    pub fn in_memory(&self) -> usize {
        self.levels
            .iter()
            .map(|l| {
                l.loaded.len()
                    + l.paged
                        .iter()
                        .filter(|t| matches!(t, Tail::Resident(_)))
                        .count()
            })
            .sum()
    }

    fn note_expiry(&mut self, at: Option<u64>) {
        if let Some(at) = at {
            self.earliest = Some(self.earliest.map_or(at, |e| e.min(at)));
        }
    }

    /// Append a new message. Past `max_in_memory` messages in its level, it
    /// goes to disk.
    pub fn push_back(
        &mut self,
        message: QueuedMessage,
        storage: Option<&QueueStorage>,
        max_in_memory: usize,
    ) {
        let level = self.level_of(message.message.properties.priority());
        self.len += 1;
        self.body_bytes += message.message.body.len();
        self.note_expiry(message.expires_at);
        let level = &mut self.levels[level];
        match storage {
            Some(storage) if !level.paged.is_empty() || level.loaded.len() >= max_in_memory => {
                let tail = match storage.page_out(message) {
                    Ok(paged) => Tail::OnDisk(paged),
                    Err(message) => Tail::Resident(message),
                };
                level.paged.push_back(tail);
            }
            _ => level.loaded.push_back(message),
        }
    }

    /// Append a message recovered from disk without reading it.
    pub fn push_paged(&mut self, paged: PagedRef, priority: Option<u8>) {
        let level = self.level_of(priority);
        self.len += 1;
        self.body_bytes += paged.body_size as usize;
        self.note_expiry(paged.expires_at);
        self.levels[level].paged.push_back(Tail::OnDisk(paged));
    }

    /// The highest level with messages.
    fn top(&self) -> Option<usize> {
        self.levels.iter().rposition(|l| l.len() > 0)
    }

    /// Take the head message, reading a batch back from disk if needed.
    pub fn pop_front(
        &mut self,
        storage: Option<&QueueStorage>,
        names: &mut Names,
    ) -> Option<QueuedMessage> {
        loop {
            let index = self.top()?;
            let level = &mut self.levels[index];
            if level.loaded.is_empty() {
                let lost = level.page_in(storage, names);
                self.forget_lost(lost, index);
            }
            if let Some(message) = self.levels[index].loaded.pop_front() {
                self.len -= 1;
                self.body_bytes = self.body_bytes.saturating_sub(message.message.body.len());
                return Some(message);
            }
        }
    }

    /// The head message, reading from disk if needed.
    pub fn front(
        &mut self,
        storage: Option<&QueueStorage>,
        names: &mut Names,
    ) -> Option<&QueuedMessage> {
        loop {
            let index = self.top()?;
            if self.levels[index].loaded.is_empty() {
                let lost = self.levels[index].page_in(storage, names);
                self.forget_lost(lost, index);
                if self.levels[index].loaded.is_empty() {
                    continue;
                }
            }
            return self.levels[index].loaded.front();
        }
    }

    /// After a page-in dropped unreadable messages, recount the level.
    fn forget_lost(&mut self, lost_bytes: usize, _level: usize) {
        self.body_bytes = self.body_bytes.saturating_sub(lost_bytes);
        self.len = self.levels.iter().map(Level::len).sum();
    }

    /// Remove the newest message of `priority` if it is in memory and has
    /// sequence `seq`.
    pub fn pop_back_if(&mut self, seq: u64, priority: Option<u8>) -> Option<QueuedMessage> {
        let index = self.level_of(priority);
        let level = &mut self.levels[index];
        if !level.paged.is_empty() || level.loaded.back()?.seq != seq {
            return None;
        }
        let message = level.loaded.pop_back()?;
        self.len -= 1;
        self.body_bytes = self.body_bytes.saturating_sub(message.message.body.len());
        Some(message)
    }

    /// Put a requeued message back at its position (before the paged part).
    pub fn insert_in_order(&mut self, message: QueuedMessage) {
        let index = self.level_of(message.message.properties.priority());
        self.len += 1;
        self.body_bytes += message.message.body.len();
        self.note_expiry(message.expires_at);
        let level = &mut self.levels[index];
        let at = level.loaded.partition_point(|m| m.seq < message.seq);
        if at == level.loaded.len() && level.paged.front().is_some_and(|t| t.seq() < message.seq) {
            // Can only happen after a failed page-in: keep the order anyway.
            let at = level.paged.partition_point(|t| t.seq() < message.seq);
            level.paged.insert(at, Tail::Resident(message));
            return;
        }
        level.loaded.insert(at, message);
    }

    /// Remove expired messages: with `anywhere`, from the whole queue (some
    /// messages carry their own TTL, so expiry is not in queue order);
    /// otherwise only from the head of each level. Paged messages are read
    /// back so they can be dead-lettered. Returns the expired messages and
    /// the next expiry among those left.
    pub fn take_expired(
        &mut self,
        now: u64,
        anywhere: bool,
        storage: Option<&QueueStorage>,
        names: &mut Names,
    ) -> (Vec<QueuedMessage>, Option<u64>) {
        if self.earliest.is_none_or(|earliest| earliest > now) {
            // Nothing anywhere can have expired.
            return (Vec::new(), self.next_expiry(anywhere));
        }
        let expired_at = |at: Option<u64>| at.is_some_and(|at| at <= now);
        let mut expired = Vec::new();
        let mut paged_out = Vec::new();
        for level in &mut self.levels {
            if anywhere {
                let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut level.loaded)
                    .into_iter()
                    .partition(|m| expired_at(m.expires_at));
                level.loaded = kept.into();
                expired.extend(gone);
                let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut level.paged)
                    .into_iter()
                    .partition(|t| expired_at(t.expires_at()));
                level.paged = kept.into();
                paged_out.extend(gone);
            } else {
                loop {
                    if let Some(m) = level.loaded.front() {
                        if !expired_at(m.expires_at) {
                            break;
                        }
                        expired.extend(level.loaded.pop_front());
                    } else if level
                        .paged
                        .front()
                        .is_some_and(|t| expired_at(t.expires_at()))
                    {
                        paged_out.extend(level.paged.pop_front());
                    } else {
                        break;
                    }
                }
            }
        }
        for tail in paged_out {
            match tail {
                Tail::Resident(m) => expired.push(m),
                Tail::OnDisk(p) => {
                    let size = p.body_size as usize;
                    match storage.and_then(|s| s.page_in(p, names)) {
                        Some(m) => expired.push(m),
                        None => {
                            self.len -= 1;
                            self.body_bytes = self.body_bytes.saturating_sub(size);
                        }
                    }
                }
            }
        }
        for m in &expired {
            self.len -= 1;
            self.body_bytes = self.body_bytes.saturating_sub(m.message.body.len());
        }
        if anywhere {
            self.earliest = self.scan_expiry(true);
        }
        (expired, self.next_expiry(anywhere))
    }

    /// The earliest expiry left: anywhere in the queue (a lower bound), or
    /// at level heads.
    pub fn next_expiry(&self, anywhere: bool) -> Option<u64> {
        match anywhere {
            true => self.earliest,
            false => self.scan_expiry(false),
        }
    }

    fn scan_expiry(&self, anywhere: bool) -> Option<u64> {
        let mut next: Option<u64> = None;
        let mut note = |at: Option<u64>| {
            if let Some(at) = at {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        };
        for level in &self.levels {
            if anywhere {
                level.loaded.iter().for_each(|m| note(m.expires_at));
                level.paged.iter().for_each(|t| note(t.expires_at()));
            } else {
                match level.loaded.front() {
                    Some(m) => note(m.expires_at),
                    None => note(level.paged.front().and_then(Tail::expires_at)),
                }
            }
        }
        next
    }

    /// Empty the queue, returning what the disk still holds of it.
    pub fn clear(&mut self) -> Cleared {
        let mut cleared = Cleared::default();
        let mut note = |seq: u64, shared: Option<Arc<SharedMessage>>| {
            cleared.on_disk.push(seq);
            cleared.shared.extend(shared);
        };
        for level in &mut self.levels {
            for m in level.loaded.drain(..) {
                if m.on_disk {
                    note(m.seq, m.message.shared.clone());
                }
            }
            for tail in level.paged.drain(..) {
                match tail {
                    Tail::Resident(m) if m.on_disk => note(m.seq, m.message.shared.clone()),
                    Tail::Resident(_) => {}
                    Tail::OnDisk(p) if p.location == Location::Durable => note(p.seq, p.shared),
                    Tail::OnDisk(_) => {}
                }
            }
        }
        self.len = 0;
        self.body_bytes = 0;
        self.earliest = None;
        cleared
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use crate::protocol::Properties;
    use bytes::Bytes;

    fn qm(seq: u64, priority: Option<u8>, expires_at: Option<u64>) -> QueuedMessage {
        let props = match priority {
            Some(p) => Properties::parse(Bytes::from(vec![0x08, 0, p])).unwrap(),
            None => Properties::default(),
        };
        QueuedMessage {
            seq,
            message: Arc::new(Message::new(
                Arc::from(""),
                Bytes::new(),
                props,
                Bytes::from_static(b"body"),
            )),
            redelivered: false,
            expires_at,
            on_disk: false,
            delivery_count: 0,
        }
    }

    fn drain(q: &mut ReadyQueue) -> Vec<u64> {
        let mut names = Names::default();
        std::iter::from_fn(|| q.pop_front(None, &mut names))
            .map(|m| m.seq)
            .collect()
    }

    #[test]
    fn requeued_messages_return_to_their_position() {
        let mut q = ReadyQueue::default();
        for seq in [1, 3, 5] {
            q.push_back(qm(seq, None, None), None, usize::MAX);
        }
        q.insert_in_order(qm(0, None, None));
        q.insert_in_order(qm(4, None, None));
        assert_eq!(drain(&mut q), vec![0, 1, 3, 4, 5]);
        assert_eq!(q.body_bytes(), 0);
        assert!(q.is_empty());
    }

    #[test]
    fn higher_priorities_first_fifo_within_one() {
        let mut q = ReadyQueue::new(Some(5));
        for (seq, p) in [
            (0, None),
            (1, Some(3)),
            (2, Some(9)),
            (3, Some(3)),
            (4, Some(0)),
        ] {
            q.push_back(qm(seq, p, None), None, usize::MAX);
        }
        // 9 counts as 5; none counts as 0.
        assert_eq!(drain(&mut q), vec![2, 1, 3, 0, 4]);
    }

    #[test]
    fn expiry_at_the_head_or_anywhere() {
        let mut names = Names::default();
        let mut q = ReadyQueue::default();
        q.push_back(qm(0, None, Some(100)), None, usize::MAX);
        q.push_back(qm(1, None, Some(50)), None, usize::MAX);
        q.push_back(qm(2, None, None), None, usize::MAX);
        let (gone, next) = q.take_expired(60, false, None, &mut names);
        assert!(gone.is_empty());
        assert_eq!(next, Some(100));
        let (gone, next) = q.take_expired(60, true, None, &mut names);
        assert_eq!(gone.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1]);
        assert_eq!(next, Some(100));
        assert_eq!(q.len(), 2);
    }
}
