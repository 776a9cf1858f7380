//! The ready messages of a queue, in delivery order, with the older part in
//! memory and the newer part, past a per-queue bound, on disk only.
//!
//! Invariant: every message in `loaded` precedes every entry of `paged`.
//! New messages go to the back: into `loaded` while it is short and nothing
//! is paged, to `paged` otherwise. Consumers take from `loaded`, which is
//! refilled from the front of `paged` a batch at a time. Requeued messages
//! come from memory and return to their position in `loaded`.

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
}

#[derive(Debug, Default)]
pub struct ReadyQueue {
    loaded: VecDeque<QueuedMessage>,
    paged: VecDeque<Tail>,
    /// Sum of body sizes of every ready message (x-max-length-bytes).
    body_bytes: usize,
}

/// What [`ReadyQueue::clear`] removed that has copies on disk.
#[derive(Debug, Default)]
pub struct Cleared {
    /// Sequence numbers in the durable tree.
    pub on_disk: Vec<u64>,
    /// Shared records one reference each was dropped from.
    pub shared: Vec<Arc<SharedMessage>>,
}

impl ReadyQueue {
    pub fn len(&self) -> usize {
        self.loaded.len() + self.paged.len()
    }

    pub fn is_empty(&self) -> bool {
        self.loaded.is_empty() && self.paged.is_empty()
    }

    pub fn body_bytes(&self) -> usize {
        self.body_bytes
    }

    /// Messages whose bodies are in memory.
    pub fn in_memory(&self) -> usize {
        self.loaded.len()
            + self
                .paged
                .iter()
                .filter(|t| matches!(t, Tail::Resident(_)))
                .count()
    }

    /// Append a new message. Past `max_in_memory` messages, it goes to disk.
    pub fn push_back(
        &mut self,
        message: QueuedMessage,
        storage: Option<&QueueStorage>,
        max_in_memory: usize,
    ) {
        self.body_bytes += message.message.body.len();
        match storage {
            Some(storage) if !self.paged.is_empty() || self.loaded.len() >= max_in_memory => {
                let tail = match storage.page_out(message) {
                    Ok(paged) => Tail::OnDisk(paged),
                    Err(message) => Tail::Resident(message),
                };
                self.paged.push_back(tail);
            }
            _ => self.loaded.push_back(message),
        }
    }

    /// Append a message recovered from disk without reading it.
    pub fn push_paged(&mut self, paged: PagedRef) {
        self.body_bytes += paged.body_size as usize;
        self.paged.push_back(Tail::OnDisk(paged));
    }

    /// Take the head message, reading a batch back from disk if needed.
    pub fn pop_front(
        &mut self,
        storage: Option<&QueueStorage>,
        names: &mut Names,
    ) -> Option<QueuedMessage> {
        if self.loaded.is_empty() {
            self.page_in(storage, names);
        }
        let message = self.loaded.pop_front()?;
        self.body_bytes = self.body_bytes.saturating_sub(message.message.body.len());
        Some(message)
    }

    /// The head message, reading from disk if needed.
    pub fn front(
        &mut self,
        storage: Option<&QueueStorage>,
        names: &mut Names,
    ) -> Option<&QueuedMessage> {
        if self.loaded.is_empty() {
            self.page_in(storage, names);
        }
        self.loaded.front()
    }

    /// Remove the newest message if it is in memory and has sequence `seq`.
    pub fn pop_back_if(&mut self, seq: u64) -> Option<QueuedMessage> {
        if !self.paged.is_empty() || self.loaded.back()?.seq != seq {
            return None;
        }
        let message = self.loaded.pop_back()?;
        self.body_bytes = self.body_bytes.saturating_sub(message.message.body.len());
        Some(message)
    }

    fn page_in(&mut self, storage: Option<&QueueStorage>, names: &mut Names) {
        while self.loaded.len() < PAGE_IN_BATCH {
            let Some(tail) = self.paged.pop_front() else {
                return;
            };
            match tail {
                Tail::Resident(message) => self.loaded.push_back(message),
                Tail::OnDisk(paged) => {
                    let size = paged.body_size as usize;
                    match storage.and_then(|s| s.page_in(paged, names)) {
                        Some(message) => self.loaded.push_back(message),
                        // Lost on disk (logged by storage): it no longer counts.
                        None => self.body_bytes = self.body_bytes.saturating_sub(size),
                    }
                }
            }
        }
    }

    /// Put a requeued message back at its position (before the paged part).
    pub fn insert_in_order(&mut self, message: QueuedMessage) {
        self.body_bytes += message.message.body.len();
        debug_assert!(self.paged.front().is_none_or(|t| t.seq() > message.seq));
        let at = self.loaded.partition_point(|m| m.seq < message.seq);
        self.loaded.insert(at, message);
    }

    /// Empty the queue, returning what the disk still holds of it.
    pub fn clear(&mut self) -> Cleared {
        let mut cleared = Cleared::default();
        let mut note = |seq: u64, shared: Option<Arc<SharedMessage>>| {
            cleared.on_disk.push(seq);
            cleared.shared.extend(shared);
        };
        for m in self.loaded.drain(..) {
            if m.on_disk {
                note(m.seq, m.message.shared.clone());
            }
        }
        for tail in self.paged.drain(..) {
            match tail {
                Tail::Resident(m) if m.on_disk => note(m.seq, m.message.shared.clone()),
                Tail::Resident(_) => {}
                Tail::OnDisk(p) if p.location == Location::Durable => note(p.seq, p.shared),
                Tail::OnDisk(_) => {}
            }
        }
        self.body_bytes = 0;
        cleared
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use crate::protocol::Properties;
    use bytes::Bytes;

    fn qm(seq: u64) -> QueuedMessage {
        QueuedMessage {
            seq,
            message: Arc::new(Message::new(
                Arc::from(""),
                Bytes::new(),
                Properties::default(),
                Bytes::from_static(b"body"),
            )),
            redelivered: false,
            expires_at: None,
            on_disk: false,
        }
    }

    #[test]
    fn requeued_messages_return_to_their_position() {
        let mut q = ReadyQueue::default();
        for seq in [1, 3, 5] {
            q.push_back(qm(seq), None, usize::MAX);
        }
        q.insert_in_order(qm(0));
        q.insert_in_order(qm(4));
        let mut names = Names::default();
        let order: Vec<u64> = std::iter::from_fn(|| q.pop_front(None, &mut names))
            .map(|m| m.seq)
            .collect();
        assert_eq!(order, vec![0, 1, 3, 4, 5]);
        assert_eq!(q.body_bytes(), 0);
    }
}
