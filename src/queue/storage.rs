//! A queue's use of the store: the persistent messages of a durable queue
//! (its key range in the store's `messages` tree), and its key range in the
//! `scratch` tree, where a deep queue pages transient messages out.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use tracing::warn;

use crate::message::{Message, QueuedMessage, SharedMessage};
use crate::store::codec::{self, Entry, Names};
use crate::store::{Store, StoreError, message_key, message_seq};

/// Where a paged-out message lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// The `messages` tree (a persistent message of a durable queue).
    Durable,
    /// The `scratch` tree (a transient message, dropped at restart).
    Scratch,
}

/// A ready message that is on disk only.
#[derive(Debug, Clone)]
pub struct PagedRef {
    pub seq: u64,
    pub location: Location,
    /// Body size, for byte limits.
    pub body_size: u32,
    pub redelivered: bool,
    pub expires_at: Option<u64>,
    /// The shared record this message references, if any.
    pub shared: Option<Arc<SharedMessage>>,
}

/// The outcome of writing a published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persist {
    /// Transient message or queue: nothing to write.
    NotNeeded,
    /// In the store; durable after the next flush.
    Stored,
    /// The write failed: the publisher must not be told it is safe.
    Failed,
}

/// What recovery found in a queue's tree.
#[derive(Debug, Default, Clone, Copy)]
pub struct Recovered {
    pub messages: usize,
    pub bytes: usize,
}

#[derive(Debug)]
pub struct QueueStorage {
    store: Arc<Store>,
    pub id: u64,
    durable: bool,
    /// Set when the queue is deleted: its messages are gone.
    destroyed: AtomicBool,
    /// One past the highest sequence number delivered (0: none), and the
    /// value last written.
    delivered_below: AtomicU64,
    delivered_written: AtomicU64,
}

impl QueueStorage {
    pub fn new(store: Arc<Store>, id: u64, durable: bool) -> Result<Arc<QueueStorage>, StoreError> {
        let below = if durable {
            store.delivered_below(id)
        } else {
            0
        };
        let storage = Arc::new(QueueStorage {
            store: store.clone(),
            id,
            durable,
            destroyed: AtomicBool::new(false),
            delivered_below: AtomicU64::new(below),
            delivered_written: AtomicU64::new(below),
        });
        if durable {
            store.register_marks(&storage);
        }
        Ok(storage)
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn is_durable(&self) -> bool {
        self.durable
    }

    /// Write a persistent message of a durable queue; with `every_message`
    /// (quorum queues), transient ones too.
    pub fn persist(
        &self,
        seq: u64,
        message: &Message,
        expires_at: Option<u64>,
        every_message: bool,
    ) -> Persist {
        if !self.durable || (!message.is_persistent() && !every_message) {
            return Persist::NotNeeded;
        }
        let tree = self.store.messages();
        let key = message_key(self.id, seq);
        let result = match &message.shared {
            Some(shared) => tree.insert(key, &codec::encode_reference(shared.id, expires_at)[..]),
            None => tree.insert(key, codec::encode_message(message, expires_at)),
        };
        match result {
            Ok(_) => Persist::Stored,
            Err(e) => {
                warn!(queue = self.id, "cannot persist a message: {e}");
                // This queue will not hold its reference.
                self.release_shared(message.shared.as_ref());
                Persist::Failed
            }
        }
    }

    /// Delete settled messages from disk (on the store's reaper thread).
    pub fn remove(&self, messages: &[QueuedMessage]) {
        let on_disk = messages.iter().filter(|m| m.on_disk);
        if !self.is_live() {
            for m in on_disk {
                self.release_shared(m.message.shared.as_ref());
            }
            return;
        }
        let keys: Vec<u64> = on_disk.clone().map(|m| m.seq).collect();
        let released = on_disk
            .filter_map(|m| m.message.shared.as_ref())
            .filter(|shared| shared.release())
            .map(|shared| shared.id)
            .collect();
        self.store.reaper.delete(self.id, keys, released);
    }

    /// A durable queue not deleted: its messages are on disk.
    fn is_live(&self) -> bool {
        self.durable && !self.destroyed.load(Ordering::Acquire)
    }

    /// One reference to a shared message is gone; delete it after the last.
    pub fn release_shared(&self, shared: Option<&Arc<SharedMessage>>) {
        if let Some(shared) = shared
            && shared.release()
        {
            let _ = self.store.shared().remove(shared.id.to_be_bytes());
        }
    }

    /// Move a ready message out of memory.
    pub fn page_out(&self, message: QueuedMessage) -> Result<PagedRef, QueuedMessage> {
        let location = if message.on_disk {
            Location::Durable
        } else {
            let encoded = codec::encode_message(&message.message, message.expires_at);
            let key = message_key(self.id, message.seq);
            if self.store.scratch().insert(key, encoded).is_err() {
                return Err(message);
            }
            Location::Scratch
        };
        Ok(PagedRef {
            seq: message.seq,
            location,
            body_size: message.message.body.len() as u32,
            redelivered: message.redelivered,
            expires_at: message.expires_at,
            shared: message.message.shared.clone(),
        })
    }

    /// Read a paged message back. A scratch copy is deleted once read.
    pub fn page_in(&self, paged: PagedRef, names: &mut Names) -> Option<QueuedMessage> {
        self.page_in_run(vec![paged], names).pop().flatten()
    }

    /// Read back a run of paged messages that share a location, in sequence
    /// order, with one range scan instead of a lookup each (the tree may
    /// hold other keys in between: messages delivered and not yet settled).
    /// Scratch copies are deleted once read. A message missing on disk comes
    /// back as `None` (and is logged).
    pub fn page_in_run(&self, run: Vec<PagedRef>, names: &mut Names) -> Vec<Option<QueuedMessage>> {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            return Vec::new();
        };
        let location = first.location;
        let tree = match location {
            Location::Durable => self.store.messages(),
            Location::Scratch => self.store.scratch(),
        };
        let range = message_key(self.id, first.seq)..=message_key(self.id, last.seq);
        let mut scan = tree.range(range).peekable();
        let mut out = Vec::with_capacity(run.len());
        let mut read = Vec::new();
        for paged in run {
            let key = message_key(self.id, paged.seq);
            // Skip keys below this message's; stop at it or past it.
            let raw = loop {
                match scan.peek() {
                    Some(Ok((k, _))) if k.as_ref() < &key[..] => {
                        scan.next();
                    }
                    Some(Ok((k, _))) if k.as_ref() == &key[..] => {
                        break scan.next().and_then(|r| r.ok()).map(|(_, v)| v);
                    }
                    Some(Ok(_)) | None => break None,
                    Some(Err(_)) => {
                        scan.next();
                    }
                }
            };
            let Some(raw) = raw else {
                warn!(queue = self.id, seq = paged.seq, "paged message missing");
                out.push(None);
                continue;
            };
            if location == Location::Scratch {
                read.push(key);
            }
            let message = self
                .decode(raw, paged.shared, names)
                .map(|(message, _)| QueuedMessage {
                    seq: paged.seq,
                    message: Arc::new(message),
                    redelivered: paged.redelivered,
                    expires_at: paged.expires_at,
                    on_disk: location == Location::Durable,
                    delivery_count: 0,
                });
            out.push(message);
        }
        if !read.is_empty() {
            let mut batch = sled::Batch::default();
            for key in read {
                batch.remove(&key);
            }
            let _ = tree.apply_batch(batch);
        }
        out
    }

    /// Decode a stored entry; a reference is resolved through the shared
    /// tree and given `shared` as its record. Returns the message and its expiry.
    pub fn decode(
        &self,
        raw: sled::IVec,
        shared: Option<Arc<SharedMessage>>,
        names: &mut Names,
    ) -> Option<(Message, Option<u64>)> {
        let decoded = match codec::decode(Bytes::from_owner(raw), names) {
            Ok(decoded) => decoded,
            Err(e) => {
                warn!(queue = self.id, "unreadable stored message: {e}");
                return None;
            }
        };
        match decoded.entry {
            Entry::Inline(message) => Some((message, decoded.expires_at)),
            Entry::Reference(id) => {
                let raw = self.store.shared().get(id.to_be_bytes()).ok().flatten()?;
                match codec::decode(Bytes::from_owner(raw), names) {
                    Ok(codec::Decoded {
                        entry: Entry::Inline(mut message),
                        ..
                    }) => {
                        message.shared = shared;
                        Some((message, decoded.expires_at))
                    }
                    _ => None,
                }
            }
        }
    }

    /// Drop the disk copies of purged messages, in bounded batches on a
    /// blocking thread (the caller holds the queue lock). Then the shared
    /// records whose last reference went, never before: a crash must not
    /// leave a reference without its record.
    pub fn purge(&self, on_disk: Vec<u64>, shared: Vec<Arc<SharedMessage>>) {
        let (id, live) = (self.id, self.is_live());
        self.store.in_background(move |store| {
            let mut kept = false;
            if live {
                for chunk in on_disk.chunks(crate::store::BATCH_KEYS) {
                    let mut batch = sled::Batch::default();
                    for seq in chunk {
                        batch.remove(&message_key(id, *seq));
                    }
                    if let Err(e) = store.messages().apply_batch(batch) {
                        warn!(queue = id, "cannot delete purged messages: {e}");
                        kept = true;
                        break;
                    }
                }
            }
            let _ = store.delete_range(store.scratch(), id);
            if !kept {
                release_all(store, &shared);
            }
        });
    }

    /// Remember that `seq` was delivered: written with the next flush,
    /// which is requested if the mark moved.
    pub fn note_delivered(&self, seq: u64) {
        if self.durable && self.delivered_below.fetch_max(seq + 1, Ordering::Relaxed) <= seq {
            self.store.mark_moved();
        }
    }

    /// Write the delivery mark if it moved since the last write.
    pub fn write_delivered_mark(&self) {
        if self.destroyed.load(Ordering::Acquire) {
            return;
        }
        let below = self.delivered_below.load(Ordering::Relaxed);
        if self.delivered_written.swap(below, Ordering::Relaxed) != below {
            self.store.set_delivered_below(self.id, below);
        }
    }

    /// Remove everything this queue has on disk (queue deleted), releasing
    /// its references to shared messages.
    pub fn destroy(&self, vhost: &str, name: &str, shared: Vec<Arc<SharedMessage>>) {
        self.destroyed.store(true, Ordering::Release);
        if self.durable
            && let Err(e) = self.store.delete_queue(vhost, name, self.id)
        {
            tracing::error!(
                queue = self.id,
                "cannot remove a deleted queue's record: {e}"
            );
        }
        // The messages go in bounded batches on a blocking thread: neither
        // the vhost's nor the queue's lock waits for them. Were the broker
        // to stop first, the start deletes what no queue record names.
        let (id, durable) = (self.id, self.durable);
        self.store.in_background(move |store| {
            let mut kept = false;
            if durable && let Err(e) = store.delete_range(store.messages(), id) {
                warn!(queue = id, "cannot delete a deleted queue's messages: {e}");
                kept = true;
            }
            let _ = store.delete_range(store.scratch(), id);
            if !kept {
                release_all(store, &shared);
            }
        });
    }

    /// Read the queue's tree back at start: the first `in_memory` messages
    /// whole, the rest as paged references. Every message at or below the
    /// stored delivery mark comes back redelivered.
    pub fn recover(
        &self,
        shared: &mut HashMap<u64, Arc<SharedMessage>>,
        in_memory: usize,
        mut accept: impl FnMut(RecoveredEntry),
    ) -> Result<Recovered, StoreError> {
        if !self.durable {
            return Ok(Recovered::default());
        }
        let below = self.delivered_below.load(Ordering::Relaxed);
        let mut names = Names::default();
        let mut stats = Recovered::default();
        // Body size and priority of the shared records referred to, read once.
        let mut shared_headers: HashMap<u64, (u32, Option<u8>)> = HashMap::new();
        for item in self.store.messages().scan_prefix(self.id.to_be_bytes()) {
            let (key, raw) = item.map_err(|e| self.store.corrupt_message(self.id, b"?", e))?;
            let seq = message_seq(&key)
                .filter(|_| key.len() == 16)
                .ok_or_else(|| {
                    self.store
                        .corrupt_message(self.id, &key, "key is not a sequence number")
                })?;
            let header =
                codec::peek(&raw).map_err(|e| self.store.corrupt_message(self.id, &key, e))?;
            let record = header.reference.map(|id| {
                let record = shared
                    .entry(id)
                    .or_insert_with(|| Arc::new(SharedMessage::new(id, 0)))
                    .clone();
                record.hold();
                record
            });
            let redelivered = seq < below;
            stats.messages += 1;
            if stats.messages <= in_memory {
                let (message, expires_at) =
                    self.decode(raw, record, &mut names).ok_or_else(|| {
                        self.store
                            .corrupt_message(self.id, &key, "undecodable message")
                    })?;
                stats.bytes += message.body.len();
                accept(RecoveredEntry::Loaded(QueuedMessage {
                    seq,
                    message: Arc::new(message),
                    redelivered,
                    expires_at,
                    on_disk: true,
                    delivery_count: 0,
                }));
            } else {
                let (body_size, priority) = match header.reference {
                    Some(id) => *shared_headers.entry(id).or_insert_with(|| {
                        self.store
                            .shared()
                            .get(id.to_be_bytes())
                            .ok()
                            .flatten()
                            .and_then(|raw| codec::peek(&raw).ok())
                            .map_or((0, None), |h| (h.body_size as u32, h.priority))
                    }),
                    None => (header.body_size as u32, header.priority),
                };
                stats.bytes += body_size as usize;
                accept(RecoveredEntry::Paged(
                    PagedRef {
                        seq,
                        location: Location::Durable,
                        body_size,
                        redelivered,
                        expires_at: header.expires_at,
                        shared: record,
                    },
                    priority,
                ));
            }
        }
        Ok(stats)
    }
}

/// Release one reference to each of `shared`, deleting the records whose
/// last reference it was.
fn release_all(store: &Store, shared: &[Arc<SharedMessage>]) {
    for record in shared {
        if record.release() {
            let _ = store.shared().remove(record.id.to_be_bytes());
        }
    }
}

/// One message found by recovery.
#[derive(Debug)]
pub enum RecoveredEntry {
    Loaded(QueuedMessage),
    /// On disk only, with its priority.
    Paged(PagedRef, Option<u8>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Properties;

    /// A fresh store in a temporary directory and durable queue `id` in it.
    fn temp_storage(name: &str, id: u64) -> (std::path::PathBuf, Arc<Store>, Arc<QueueStorage>) {
        let dir = std::env::temp_dir().join(format!("warren-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir, false, 1 << 20).expect("store opens");
        let storage = QueueStorage::new(store.clone(), id, true).expect("queue storage");
        (dir, store, storage)
    }

    fn persistent(seq: u64) -> QueuedMessage {
        // delivery-mode 2
        let props = Properties::parse(Bytes::from(vec![0x10, 0, 2])).expect("properties");
        let body = Bytes::from(format!("message {seq}"));
        QueuedMessage {
            seq,
            message: Arc::new(Message::new(Arc::from(""), Bytes::new(), props, body)),
            redelivered: false,
            expires_at: None,
            on_disk: true,
            delivery_count: 0,
        }
    }

    fn paged(seq: u64) -> PagedRef {
        PagedRef {
            seq,
            location: Location::Durable,
            body_size: 0,
            redelivered: false,
            expires_at: None,
            shared: None,
        }
    }

    #[test]
    fn a_run_is_read_in_order_past_other_keys_and_missing_ones() {
        let (dir, store, storage) = temp_storage("page-in-run", 7);
        for seq in 1..=8 {
            let m = persistent(seq);
            assert_eq!(
                storage.persist(seq, &m.message, None, false),
                Persist::Stored
            );
        }
        // 3 and 5 are on disk but not in the run (delivered, unsettled);
        // 7 was settled: its key is gone.
        storage.remove(&[persistent(7)]);
        store.reaper.stop();
        let run = [2, 4, 6, 7, 8].map(paged).to_vec();
        let read = storage.page_in_run(run, &mut Names::default());
        let bodies: Vec<Option<String>> = read
            .iter()
            .map(|m| {
                m.as_ref()
                    .map(|m| String::from_utf8_lossy(&m.message.body).into_owned())
            })
            .collect();
        assert_eq!(
            bodies,
            [
                Some("message 2".to_string()),
                Some("message 4".to_string()),
                Some("message 6".to_string()),
                None,
                Some("message 8".to_string()),
            ]
        );
        assert!(read.iter().flatten().all(|m| m.on_disk));
        store.close();
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_recovered_reference_keeps_the_size_and_priority_of_its_message() {
        let (dir, store, storage) = temp_storage("recover-shared", 11);
        // delivery-mode 2, priority 5
        let props = Properties::parse(Bytes::from(vec![0x18, 0, 2, 5])).expect("properties");
        let mut message = Message::new(
            Arc::from(""),
            Bytes::new(),
            props,
            Bytes::from(vec![7; 100]),
        );
        assert!(store.put_shared(42, codec::encode_message(&message, None)));
        message.shared = Some(Arc::new(SharedMessage::new(42, 1)));
        assert_eq!(storage.persist(1, &message, None, false), Persist::Stored);
        let mut found = Vec::new();
        let stats = storage
            .recover(&mut HashMap::new(), 0, |entry| found.push(entry))
            .expect("recovers");
        assert_eq!(stats.bytes, 100);
        match found.as_slice() {
            [RecoveredEntry::Paged(paged, priority)] => {
                assert_eq!((paged.body_size, *priority), (100, Some(5)));
            }
            other => panic!("expected one paged entry, got {other:?}"),
        }
        store.close();
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn settled_messages_are_gone_from_disk_once_the_store_closes() {
        let (dir, store, storage) = temp_storage("reaper", 9);
        let messages: Vec<QueuedMessage> = (1..=100).map(persistent).collect();
        for m in &messages {
            storage.persist(m.seq, &m.message, None, false);
        }
        storage.remove(&messages[..60]);
        store.close();
        let left: Vec<u64> = store
            .messages()
            .scan_prefix(9u64.to_be_bytes())
            .keys()
            .flatten()
            .filter_map(|k| message_seq(&k))
            .collect();
        assert_eq!(left, (61..=100).collect::<Vec<u64>>());
        let _ = std::fs::remove_dir_all(dir);
    }
}
