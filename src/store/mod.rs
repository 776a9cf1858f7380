//! Durable state in sled: topology records, persistent messages, and the
//! scratch area where deep queues page transient messages out of memory.
//!
//! Trees:
//! - `vhosts`, `exchanges`, `queues`, `bindings`: topology records as JSON,
//!   keyed by vhost and name. Only durable entities are written; a binding
//!   is written when both its ends are durable.
//! - `messages`: the persistent messages of every durable queue, keyed by
//!   the queue's id and the message's sequence number, both big-endian, so
//!   a queue's messages are one contiguous key range in delivery order.
//!   A tree per queue would be simpler to delete, but sled rewrites the
//!   list of every tree on each tree created or dropped: disk use grew with
//!   the square of the number of durable queues (10,000 empty queues took
//!   461 MB). One tree costs a durable queue only its topology record.
//! - `shared`: a persistent message routed to several durable queues is
//!   stored here once, and each queue's entry is a 17-byte reference to it.
//!   One copy per queue would multiply the bytes written per publish by the
//!   fan-out; a reference costs a few bytes, and the reference count lives in
//!   memory (rebuilt from the queue trees at start). A message routed to a
//!   single durable queue, the common case, is stored inline in that queue's
//!   entry: one write per publish, one delete per ack.
//! - `delivered`: per queue, one past the highest sequence number ever
//!   delivered, written before each flush; a delivery that moves it asks
//!   for a flush (one per group commit, not one per delivery), so the mark
//!   is durable with the next group commit, the one its ack would ride.
//!   Queues deliver in sequence order (requeues return to their place), so
//!   at start every message below it is marked redelivered.
//! - `scratch`: transient messages paged out of memory, keyed as in
//!   `messages`; dropped at start.
//! - `x/<vhost>\0<exchange>`: persistent messages held by a durable
//!   delayed-message exchange, keyed by due time.
//! - `access`: users, vhost metadata and limits, permissions ([`access`]).
//!
//! Format 1 kept a tree per durable queue (`q/<id>`) and per paging queue
//! (`t/<id>`); [`Store::open`] moves such a store to this layout.
//!
//! Durability of confirms comes from [`sync::Syncer`], the group-commit
//! thread. Settled messages are deleted by [`reaper::Reaper`], a thread of
//! its own, in the batches the channels hand it (one per ack, reject or
//! settle of several messages).

pub mod access;
pub mod codec;
pub mod manifest;
pub mod reaper;
pub mod sync;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use amq_protocol::types::FieldTable;
use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};

use crate::message::SharedMessage;
use crate::queue::storage::QueueStorage;
use crate::stream::Flushable;
use reaper::Reaper;
use sync::Syncer;

/// Bumped when the on-disk layout changes incompatibly.
const FORMAT_VERSION: u64 = 2;
/// The layout with a tree per queue, migrated at open.
const FORMAT_TREE_PER_QUEUE: u64 = 1;

/// How many keys one write batch of a migration or a bulk delete holds:
/// enough to amortise the batch, few enough to bound its memory.
pub const BATCH_KEYS: usize = 1024;

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("another Warren is using the data directory {0} (its LOCK file is held)")]
    Locked(PathBuf),
    #[error("cannot use the data directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the store in {path} cannot be opened: {source}")]
    Sled { path: PathBuf, source: sled::Error },
    #[error("corrupt record in {path} (tree '{tree}', key {key}): {why}")]
    Corrupt {
        path: PathBuf,
        tree: String,
        key: String,
        why: String,
    },
    #[error(
        "the store in {path} has format version {found}; this Warren reads version {FORMAT_VERSION}"
    )]
    Version { path: PathBuf, found: u64 },
    #[error(
        "the store in {dir} is damaged: it holds less than it did at the last clean shutdown: \
         {missing}. Restore the data directory from a backup, or start with --accept-data-loss \
         to go on with what is left"
    )]
    Damaged { dir: PathBuf, missing: String },
    #[error(
        "the store in {dir} is damaged and cannot be read ({why}). Restore the data directory \
         from a backup, or move it aside to start empty"
    )]
    Unreadable { dir: PathBuf, why: String },
}

/// A durable exchange as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExchangeRecord {
    pub vhost: String,
    pub name: String,
    pub kind: String,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

/// A durable queue as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueueRecord {
    pub vhost: String,
    pub name: String,
    /// The queue's stable number: its messages' key prefix.
    pub id: u64,
    pub auto_delete: bool,
    pub arguments: FieldTable,
}

/// A binding between durable ends, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BindingRecord {
    pub vhost: String,
    pub source: String,
    /// "queue" or "exchange", as in RabbitMQ's definitions.
    pub destination_type: String,
    pub destination: String,
    pub routing_key: String,
    pub arguments: FieldTable,
}

/// Everything read back at start.
#[derive(Debug, Default)]
pub struct Topology {
    pub vhosts: Vec<String>,
    pub exchanges: Vec<ExchangeRecord>,
    pub queues: Vec<QueueRecord>,
    pub bindings: Vec<BindingRecord>,
}

type Marks = Arc<Mutex<Vec<Weak<QueueStorage>>>>;
/// Streams whose appends the flusher makes durable with each flush.
type Flushables = Arc<Mutex<Vec<Weak<dyn Flushable>>>>;

/// The outcome of a topology write.
pub type Stored = Result<(), StoreError>;

#[derive(Debug)]
pub struct Store {
    /// The data directory (the manifest lives here).
    dir: PathBuf,
    /// The sled database within it.
    path: PathBuf,
    db: sled::Db,
    vhosts: sled::Tree,
    exchanges: sled::Tree,
    queues: sled::Tree,
    bindings: sled::Tree,
    shared: sled::Tree,
    messages: sled::Tree,
    scratch: sled::Tree,
    delivered: sled::Tree,
    access: sled::Tree,
    next_id: AtomicU64,
    /// Counts topology writes, so a handler can tell whether it must wait
    /// for a flush before answering.
    topology_writes: AtomicU64,
    /// Durable queues whose delivery marks are written before each flush.
    marks: Marks,
    flushables: Flushables,
    /// A delivery mark moved and a flush was requested for it.
    marks_dirty: Arc<AtomicBool>,
    /// Bulk deletions running on blocking threads; [`Store::close`] waits
    /// for them.
    jobs: Mutex<usize>,
    jobs_done: Condvar,
    pub syncer: Arc<Syncer>,
    /// Deletes settled messages off the delivery path.
    pub reaper: Arc<Reaper>,
    /// Held for the store's lifetime: a second broker cannot open the directory.
    _lock: File,
}

fn key2(a: &str, b: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + b.len() + 1);
    k.extend_from_slice(a.as_bytes());
    k.push(0);
    k.extend_from_slice(b.as_bytes());
    k
}

impl Store {
    /// Open (or create) the store in `dir`, taking its lock, and start the
    /// flusher. `sync` false makes confirms immediate (no fsync wait).
    pub fn open(dir: &Path, sync: bool, cache_bytes: u64) -> Result<Arc<Store>, StoreError> {
        let io = |source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))
            .map_err(io)?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Locked(dir.to_path_buf()));
        }
        let db_path = dir.join("db");
        let sled_err = |source| StoreError::Sled {
            path: db_path.clone(),
            source,
        };
        let db = sled::Config::new()
            .path(&db_path)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(sled_err)?;
        let tree = |name: &str| db.open_tree(name).map_err(sled_err);
        let meta = tree("meta")?;
        let found = match meta.get("format").map_err(sled_err)? {
            Some(v) => <[u8; 8]>::try_from(v.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt {
                    path: db_path.clone(),
                    tree: "meta".into(),
                    key: "format".into(),
                    why: "not an 8-byte version".into(),
                })?,
            // A new store, or one from before the version was recorded
            // (which had a tree per queue: migrating an empty one is free).
            None => FORMAT_TREE_PER_QUEUE,
        };
        if found != FORMAT_VERSION && found != FORMAT_TREE_PER_QUEUE {
            return Err(StoreError::Version {
                path: db_path,
                found,
            });
        }
        let messages = tree("messages")?;
        if found == FORMAT_TREE_PER_QUEUE {
            migrate_tree_per_queue(&db, &messages).map_err(sled_err)?;
            meta.insert("format", &FORMAT_VERSION.to_be_bytes())
                .map_err(sled_err)?;
            db.flush().map_err(sled_err)?;
        }
        // Old per-queue trees are dropped only once the new format is on
        // disk (a crash before that migrates again); scratch trees hold only
        // transient messages, which never survive a start.
        for name in db.tree_names() {
            if name.starts_with(b"t/") || name.starts_with(b"q/") {
                db.drop_tree(&name).map_err(sled_err)?;
            }
        }
        let _ = db.drop_tree("scratch");
        let marks: Marks = Arc::default();
        let flushables: Flushables = Arc::default();
        let marks_dirty = Arc::new(AtomicBool::new(false));
        let before_flush = {
            let marks = marks.clone();
            let dirty = marks_dirty.clone();
            let flushables = flushables.clone();
            move || {
                dirty.store(false, Ordering::Release);
                write_marks(&marks);
                flush_all(&flushables)
            }
        };
        let shared = tree("shared")?;
        Ok(Arc::new(Store {
            reaper: Reaper::start(messages.clone(), shared.clone()),
            vhosts: tree("vhosts")?,
            exchanges: tree("exchanges")?,
            queues: tree("queues")?,
            bindings: tree("bindings")?,
            shared,
            scratch: tree("scratch")?,
            messages,
            delivered: tree("delivered")?,
            access: tree("access")?,
            next_id: AtomicU64::new(1),
            topology_writes: AtomicU64::new(0),
            marks,
            flushables,
            marks_dirty,
            jobs: Mutex::new(0),
            jobs_done: Condvar::new(),
            syncer: Syncer::start(db.clone(), sync, Box::new(before_flush)),
            path: db_path,
            dir: dir.to_path_buf(),
            db,
            _lock: lock,
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn corrupt(&self, tree: &str, key: &[u8], why: impl ToString) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            tree: tree.to_string(),
            key: String::from_utf8_lossy(key).replace('\0', "/"),
            why: why.to_string(),
        }
    }

    fn sled_error(&self, source: sled::Error) -> StoreError {
        StoreError::Sled {
            path: self.path.clone(),
            source,
        }
    }

    /// Read the whole topology back.
    pub fn load_topology(&self) -> Result<Topology, StoreError> {
        let mut topology = Topology::default();
        for item in self.vhosts.iter() {
            let (key, _) = item.map_err(|e| self.sled_error(e))?;
            topology
                .vhosts
                .push(String::from_utf8_lossy(&key).into_owned());
        }
        topology.exchanges = self.records(&self.exchanges, "exchanges")?;
        topology.queues = self.records(&self.queues, "queues")?;
        topology.bindings = self.records(&self.bindings, "bindings")?;
        let max_queue = topology.queues.iter().map(|q| q.id).max().unwrap_or(0);
        let max_shared = self
            .shared
            .last()
            .map_err(|e| self.sled_error(e))?
            .and_then(|(k, _)| <[u8; 8]>::try_from(k.as_ref()).ok())
            .map_or(0, u64::from_be_bytes);
        self.next_id
            .store(max_queue.max(max_shared) + 1, Ordering::Relaxed);
        Ok(topology)
    }

    fn records<T: for<'de> Deserialize<'de>>(
        &self,
        tree: &sled::Tree,
        name: &str,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        for item in tree.iter() {
            let (key, value) = item.map_err(|e| self.sled_error(e))?;
            out.push(serde_json::from_slice(&value).map_err(|e| self.corrupt(name, &key, e))?);
        }
        Ok(out)
    }

    /// A fresh id for a queue tree or a shared message.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// How many topology writes were made so far.
    pub fn topology_writes(&self) -> u64 {
        self.topology_writes.load(Ordering::Acquire)
    }

    fn wrote_topology(&self) {
        self.topology_writes.fetch_add(1, Ordering::AcqRel);
    }

    /// Write a topology record. An error reaches the caller: the method
    /// that asked for it fails rather than answer for a record that is not
    /// stored.
    fn put_record(&self, tree: &sled::Tree, key: Vec<u8>, record: &impl Serialize) -> Stored {
        let json = serde_json::to_vec(record).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            tree: "topology".into(),
            key: String::from_utf8_lossy(&key).replace('\0', "/"),
            why: e.to_string(),
        })?;
        tree.insert(key, json).map_err(|e| self.sled_error(e))?;
        self.wrote_topology();
        Ok(())
    }

    fn remove_record(&self, tree: &sled::Tree, key: Vec<u8>) -> Stored {
        tree.remove(key).map_err(|e| self.sled_error(e))?;
        self.wrote_topology();
        Ok(())
    }

    pub fn put_exchange(&self, record: &ExchangeRecord) -> Stored {
        self.put_record(&self.exchanges, key2(&record.vhost, &record.name), record)
    }

    pub fn delete_exchange(&self, vhost: &str, name: &str) -> Stored {
        self.remove_record(&self.exchanges, key2(vhost, name))
    }

    pub fn put_queue(&self, record: &QueueRecord) -> Stored {
        self.put_record(&self.queues, key2(&record.vhost, &record.name), record)
    }

    /// Remove a queue record and its delivery mark. Its messages go with
    /// [`Store::delete_range`].
    pub fn delete_queue(&self, vhost: &str, name: &str, id: u64) -> Stored {
        self.delivered
            .remove(id.to_be_bytes())
            .map_err(|e| self.sled_error(e))?;
        self.remove_record(&self.queues, key2(vhost, name))
    }

    fn binding_key(record: &BindingRecord) -> Vec<u8> {
        let args = serde_json::to_string(&record.arguments).unwrap_or_default();
        let mut key = key2(&record.vhost, &record.source);
        for part in [
            &record.destination_type,
            &record.destination,
            &record.routing_key,
            &args,
        ] {
            key.push(0);
            key.extend_from_slice(part.as_bytes());
        }
        key
    }

    pub fn put_binding(&self, record: &BindingRecord) -> Stored {
        self.put_record(&self.bindings, Self::binding_key(record), record)
    }

    pub fn delete_binding(&self, record: &BindingRecord) -> Stored {
        self.remove_record(&self.bindings, Self::binding_key(record))
    }

    /// The tree of every durable queue's messages, keyed by [`message_key`].
    pub fn messages(&self) -> &sled::Tree {
        &self.messages
    }

    /// The tree of paged-out transient messages, keyed by [`message_key`].
    pub fn scratch(&self) -> &sled::Tree {
        &self.scratch
    }

    /// The tree holding a durable delayed-message exchange's messages.
    pub fn delayed_tree(&self, vhost: &str, exchange: &str) -> Result<sled::Tree, StoreError> {
        self.db
            .open_tree(delayed_tree_name(vhost, exchange))
            .map_err(|e| self.sled_error(e))
    }

    pub fn drop_delayed_tree(&self, vhost: &str, exchange: &str) {
        let _ = self.db.drop_tree(delayed_tree_name(vhost, exchange));
    }

    /// Delete every key of queue `id` in `tree`, [`BATCH_KEYS`] at a time,
    /// so memory stays bounded however many there are. Blocks on the disk:
    /// call it off the async workers. Returns how many keys went.
    pub fn delete_range(&self, tree: &sled::Tree, id: u64) -> Result<usize, StoreError> {
        let mut deleted = 0;
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for key in tree.scan_prefix(id.to_be_bytes()).keys().take(BATCH_KEYS) {
                batch.remove(key.map_err(|e| self.sled_error(e))?);
                n += 1;
            }
            if n == 0 {
                return Ok(deleted);
            }
            tree.apply_batch(batch).map_err(|e| self.sled_error(e))?;
            deleted += n;
        }
    }

    pub fn shared(&self) -> &sled::Tree {
        &self.shared
    }

    /// Store a message once for several durable queues.
    pub fn put_shared(&self, id: u64, encoded: Vec<u8>) -> bool {
        self.shared.insert(id.to_be_bytes(), encoded).is_ok()
    }

    /// Delete shared messages no queue refers to (after recovery).
    pub fn delete_unreferenced_shared(
        &self,
        referenced: &HashMap<u64, Arc<SharedMessage>>,
    ) -> usize {
        let mut deleted = 0;
        for key in self.shared.iter().keys().flatten() {
            let id = <[u8; 8]>::try_from(key.as_ref())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            if referenced.get(&id).is_none_or(|r| r.holders() == 0) {
                let _ = self.shared.remove(&key);
                deleted += 1;
            }
        }
        deleted
    }

    /// The stored delivery mark of queue `id`: every sequence number below
    /// it was delivered at least once.
    pub fn delivered_below(&self, id: u64) -> u64 {
        self.delivered
            .get(id.to_be_bytes())
            .ok()
            .flatten()
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes)
    }

    pub fn set_delivered_below(&self, id: u64, seq: u64) {
        let _ = self.delivered.insert(id.to_be_bytes(), &seq.to_be_bytes());
    }

    /// Write durable queue `storage`'s delivery mark before every flush.
    pub fn register_marks(&self, storage: &Arc<QueueStorage>) {
        self.marks.lock().push(Arc::downgrade(storage));
    }

    /// Make `stream`'s appends durable with every flush (group commit: a
    /// confirm waits for the one flush that covers the store and streams).
    pub fn register_flushable(&self, stream: Weak<dyn Flushable>) {
        self.flushables.lock().push(stream);
    }

    /// The directory streams keep their segment files in.
    pub fn streams_dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(data_dir) => data_dir.join("streams"),
            None => self.path.join("streams"),
        }
    }

    /// A delivery mark moved: make sure a flush comes to write it. One
    /// request per flush, however many deliveries.
    pub fn mark_moved(&self) {
        if !self.marks_dirty.load(Ordering::Acquire)
            && !self.marks_dirty.swap(true, Ordering::AcqRel)
        {
            self.syncer.request();
        }
    }

    /// Register the writes made so far for the next flush.
    pub fn request_sync(&self) -> u64 {
        self.syncer.request()
    }

    /// Run bulk disk work (a purge, a deleted queue's messages) on a
    /// blocking thread, so neither an async worker nor a lock waits for it;
    /// inline when there is no runtime. Its writes are flushed with the
    /// group commits that follow.
    pub fn in_background(self: &Arc<Self>, work: impl FnOnce(&Store) + Send + 'static) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            work(self);
            return;
        };
        *self.jobs.lock() += 1;
        let store = self.clone();
        runtime.spawn_blocking(move || {
            work(&store);
            let mut jobs = store.jobs.lock();
            *jobs -= 1;
            if *jobs == 0 {
                store.jobs_done.notify_all();
            }
        });
    }

    /// Wait for the background work to finish.
    fn wait_for_jobs(&self) {
        let mut jobs = self.jobs.lock();
        while *jobs > 0 {
            self.jobs_done.wait(&mut jobs);
        }
    }

    /// Delete the messages of queues that no record names: a queue deleted
    /// just before a crash, whose messages were still being removed. One
    /// seek per queue id in the tree, not a scan of every message.
    pub fn delete_orphans(
        &self,
        live: &std::collections::HashSet<u64>,
    ) -> Result<usize, StoreError> {
        let mut deleted = 0;
        for tree in [&self.messages, &self.scratch] {
            let mut from = message_key(0, 0);
            while let Some(item) = tree.range(from..).next() {
                let (key, _) = item.map_err(|e| self.sled_error(e))?;
                let Some(id) = key
                    .get(..8)
                    .and_then(|id| <[u8; 8]>::try_from(id).ok())
                    .map(u64::from_be_bytes)
                else {
                    break;
                };
                if !live.contains(&id) {
                    deleted += self.delete_range(tree, id)?;
                }
                let Some(next) = id.checked_add(1) else {
                    break;
                };
                from = message_key(next, 0);
            }
        }
        Ok(deleted)
    }

    /// Flush everything and stop the flusher (clean shutdown).
    pub fn close(&self) {
        self.wait_for_jobs();
        self.reaper.stop();
        self.syncer.stop();
        write_marks(&self.marks);
        flush_all(&self.flushables);
        if let Err(e) = self.db.flush() {
            tracing::error!("the last flush of the store failed: {e}");
            return;
        }
        match self.manifest() {
            Ok(manifest) => {
                if let Err(e) = manifest::write(&self.dir, &manifest) {
                    tracing::warn!("cannot write the store's manifest: {e}");
                }
            }
            Err(e) => tracing::warn!("cannot list the store for its manifest: {e}"),
        }
    }

    /// What the store holds now: durable queues with their message counts
    /// and sequence ranges (one pass over `messages`), exchanges, bindings.
    pub fn manifest(&self) -> Result<manifest::Manifest, StoreError> {
        let mut counts: manifest::Counts = HashMap::new();
        for key in self.messages.iter().keys() {
            let key = key.map_err(|e| self.sled_error(e))?;
            let (Some(id), Some(seq)) = (
                key.get(..8)
                    .and_then(|id| <[u8; 8]>::try_from(id).ok())
                    .map(u64::from_be_bytes),
                message_seq(&key),
            ) else {
                continue;
            };
            let entry = counts.entry(id).or_insert((0, seq, seq));
            entry.0 += 1;
            entry.1 = entry.1.min(seq);
            entry.2 = entry.2.max(seq);
        }
        let queues: Vec<QueueRecord> = self.records(&self.queues, "queues")?;
        Ok(manifest::Manifest {
            queues: queues
                .into_iter()
                .map(|q| {
                    let c = counts.get(&q.id);
                    manifest::QueueEntry {
                        messages: c.map_or(0, |c| c.0),
                        first_seq: c.map(|c| c.1),
                        last_seq: c.map(|c| c.2),
                        vhost: q.vhost,
                        name: q.name,
                        id: q.id,
                    }
                })
                .collect(),
            exchanges: self.exchanges.len() as u64,
            bindings: self.bindings.len() as u64,
        })
    }

    pub fn corrupt_message(&self, queue: u64, key: &[u8], why: impl ToString) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            tree: "messages".to_string(),
            key: format!("queue {queue}, {}", hex(key)),
            why: why.to_string(),
        }
    }
}

/// Write the delivery marks of live durable queues; forget deleted ones.
fn write_marks(marks: &Mutex<Vec<Weak<QueueStorage>>>) {
    marks.lock().retain(|weak| match weak.upgrade() {
        Some(storage) => {
            storage.write_delivered_mark();
            true
        }
        None => false,
    });
}

/// Flush every registered stream with appends pending; false if one failed
/// (its error is logged, and the flush is tried again).
fn flush_all(flushables: &Mutex<Vec<Weak<dyn Flushable>>>) -> bool {
    let streams: Vec<Arc<dyn Flushable>> = {
        let mut list = flushables.lock();
        list.retain(|weak| weak.strong_count() > 0);
        list.iter().filter_map(Weak::upgrade).collect()
    };
    let mut ok = true;
    for stream in streams.iter().filter(|s| s.needs_flush()) {
        if let Err(e) = stream.flush() {
            tracing::error!("flushing a stream failed: {e}");
            ok = false;
        }
    }
    ok
}

fn delayed_tree_name(vhost: &str, exchange: &str) -> Vec<u8> {
    let mut name = b"x/".to_vec();
    name.extend_from_slice(&key2(vhost, exchange));
    name
}

/// The key of message `seq` of queue `id` in `messages` and `scratch`.
pub fn message_key(id: u64, seq: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&id.to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// The sequence number in a [`message_key`], if it is one.
pub fn message_seq(key: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(key.get(8..)?)
        .ok()
        .map(u64::from_be_bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Copy every `q/<id>` tree of a format-1 store into `messages`, in
/// bounded batches. Idempotent: the old trees stay until the caller has
/// recorded the new format.
fn migrate_tree_per_queue(db: &sled::Db, messages: &sled::Tree) -> sled::Result<()> {
    let mut queues = 0usize;
    let mut moved = 0usize;
    for name in db.tree_names() {
        let Some(id) = name
            .strip_prefix(b"q/")
            .and_then(|id| std::str::from_utf8(id).ok())
            .and_then(|id| id.parse::<u64>().ok())
        else {
            continue;
        };
        let old = db.open_tree(&name)?;
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for item in old.iter() {
            let (key, value) = item?;
            // A key that is not a sequence number was an error in format 1
            // too: keep it under the queue so recovery reports it.
            let mut new_key = id.to_be_bytes().to_vec();
            new_key.extend_from_slice(&key);
            batch.insert(new_key, value);
            n += 1;
            if n == BATCH_KEYS {
                messages.apply_batch(std::mem::take(&mut batch))?;
                moved += n;
                n = 0;
            }
        }
        messages.apply_batch(batch)?;
        moved += n;
        queues += 1;
    }
    if queues > 0 {
        tracing::info!("moved {moved} messages of {queues} durable queues to one tree");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_of_queues_without_a_record_are_deleted_and_others_kept() {
        let dir = std::env::temp_dir().join(format!("warren-orphans-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir, false, 1 << 20).expect("store opens");
        for id in [3u64, 5, 9] {
            for seq in 0..3000u64 {
                store
                    .messages()
                    .insert(message_key(id, seq), &b"m"[..])
                    .expect("insert");
            }
        }
        let live: std::collections::HashSet<u64> = [5].into();
        assert_eq!(store.delete_orphans(&live).expect("deletes"), 6000);
        let ids: std::collections::BTreeSet<u64> = store
            .messages()
            .iter()
            .keys()
            .flatten()
            .filter_map(|k| <[u8; 8]>::try_from(&k[..8]).ok().map(u64::from_be_bytes))
            .collect();
        assert_eq!(ids, [5].into());
        assert_eq!(store.messages().len(), 3000);
        store.close();
        // The clean close wrote a manifest of what was left.
        let manifest = manifest::read(&dir).expect("readable").expect("written");
        assert!(manifest.queues.is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }
}
