//! Durable state in sled: topology records, persistent messages, and the
//! scratch area where deep queues page transient messages out of memory.
//!
//! Trees:
//! - `vhosts`, `exchanges`, `queues`, `bindings`: topology records as JSON,
//!   keyed by vhost and name. Only durable entities are written; a binding
//!   is written when both its ends are durable.
//! - `q/<id>`: the persistent messages of durable queue `<id>`, keyed by the
//!   queue's big-endian sequence number, so iteration is delivery order.
//! - `shared`: a persistent message routed to several durable queues is
//!   stored here once, and each queue tree holds a 17-byte reference to it.
//!   One copy per queue would multiply the bytes written per publish by the
//!   fan-out; a reference costs a few bytes, and the reference count lives in
//!   memory (rebuilt from the queue trees at start). A message routed to a
//!   single durable queue, the common case, is stored inline in that queue's
//!   tree: one write per publish, one delete per ack.
//! - `delivered`: per queue, one past the highest sequence number ever
//!   delivered, written lazily before each flush. Queues deliver in sequence
//!   order (requeues return to their place), so at start every message below
//!   it is marked redelivered.
//! - `t/<id>`: scratch trees for transient messages paged out of memory;
//!   dropped at start.
//! - `x/<vhost>\0<exchange>`: persistent messages held by a durable
//!   delayed-message exchange, keyed by due time.
//! - `access`: users, vhost metadata and limits, permissions ([`access`]).
//!
//! Durability of confirms comes from [`sync::Syncer`], the group-commit
//! thread. Settled messages are deleted by [`reaper::Reaper`], a thread of
//! its own, in the batches the channels hand it (one per ack, reject or
//! settle of several messages).

pub mod access;
pub mod codec;
pub mod reaper;
pub mod sync;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use amq_protocol::types::FieldTable;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::message::SharedMessage;
use crate::queue::storage::QueueStorage;
use crate::stream::Flushable;
use reaper::Reaper;
use sync::Syncer;

/// Bumped when the on-disk layout changes incompatibly.
const FORMAT_VERSION: u64 = 1;

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
    /// Names the queue's message tree.
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

#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    db: sled::Db,
    vhosts: sled::Tree,
    exchanges: sled::Tree,
    queues: sled::Tree,
    bindings: sled::Tree,
    shared: sled::Tree,
    delivered: sled::Tree,
    access: sled::Tree,
    next_id: AtomicU64,
    /// Counts topology writes, so a handler can tell whether it must wait
    /// for a flush before answering.
    topology_writes: AtomicU64,
    /// Durable queues whose delivery marks are written before each flush.
    marks: Marks,
    flushables: Flushables,
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
            None => {
                meta.insert("format", &FORMAT_VERSION.to_be_bytes())
                    .map_err(sled_err)?;
                FORMAT_VERSION
            }
        };
        if found != FORMAT_VERSION {
            return Err(StoreError::Version {
                path: db_path,
                found,
            });
        }
        // Scratch trees hold only transient messages: they never survive a start.
        for name in db.tree_names() {
            if name.starts_with(b"t/") {
                let _ = db.drop_tree(&name);
            }
        }
        let marks: Marks = Arc::default();
        let flushables: Flushables = Arc::default();
        let before_flush = {
            let marks = marks.clone();
            let flushables = flushables.clone();
            move || {
                write_marks(&marks);
                flush_all(&flushables)
            }
        };
        let shared = tree("shared")?;
        Ok(Arc::new(Store {
            reaper: Reaper::start(shared.clone()),
            vhosts: tree("vhosts")?,
            exchanges: tree("exchanges")?,
            queues: tree("queues")?,
            bindings: tree("bindings")?,
            shared,
            delivered: tree("delivered")?,
            access: tree("access")?,
            next_id: AtomicU64::new(1),
            topology_writes: AtomicU64::new(0),
            marks,
            flushables,
            syncer: Syncer::start(db.clone(), sync, Box::new(before_flush)),
            path: db_path,
            db,
            _lock: lock,
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
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

    pub fn put_vhost(&self, name: &str) {
        let _ = self.vhosts.insert(name, &[]);
        self.wrote_topology();
    }

    pub fn put_exchange(&self, record: &ExchangeRecord) {
        if let Ok(json) = serde_json::to_vec(record) {
            let _ = self
                .exchanges
                .insert(key2(&record.vhost, &record.name), json);
            self.wrote_topology();
        }
    }

    pub fn delete_exchange(&self, vhost: &str, name: &str) {
        let _ = self.exchanges.remove(key2(vhost, name));
        self.wrote_topology();
    }

    pub fn put_queue(&self, record: &QueueRecord) {
        if let Ok(json) = serde_json::to_vec(record) {
            let _ = self.queues.insert(key2(&record.vhost, &record.name), json);
            self.wrote_topology();
        }
    }

    /// Remove a queue record, its messages and its delivery mark.
    pub fn delete_queue(&self, vhost: &str, name: &str, id: u64) {
        let _ = self.queues.remove(key2(vhost, name));
        let _ = self.delivered.remove(id.to_be_bytes());
        let _ = self.db.drop_tree(queue_tree_name(id));
        self.wrote_topology();
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

    pub fn put_binding(&self, record: &BindingRecord) {
        if let Ok(json) = serde_json::to_vec(record) {
            let _ = self.bindings.insert(Self::binding_key(record), json);
            self.wrote_topology();
        }
    }

    pub fn delete_binding(&self, record: &BindingRecord) {
        let _ = self.bindings.remove(Self::binding_key(record));
        self.wrote_topology();
    }

    /// The message tree of durable queue `id`.
    pub fn queue_tree(&self, id: u64) -> Result<sled::Tree, StoreError> {
        self.db
            .open_tree(queue_tree_name(id))
            .map_err(|e| self.sled_error(e))
    }

    /// The scratch tree for paging queue `id`'s transient messages.
    pub fn scratch_tree(&self, id: u64) -> Result<sled::Tree, StoreError> {
        self.db
            .open_tree(format!("t/{id}"))
            .map_err(|e| self.sled_error(e))
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

    pub fn drop_scratch(&self, id: u64) {
        let _ = self.db.drop_tree(format!("t/{id}"));
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

    /// Register the writes made so far for the next flush.
    pub fn request_sync(&self) -> u64 {
        self.syncer.request()
    }

    /// Flush everything and stop the flusher (clean shutdown).
    pub fn close(&self) {
        self.reaper.stop();
        self.syncer.stop();
        write_marks(&self.marks);
        flush_all(&self.flushables);
        let _ = self.db.flush();
    }

    pub fn corrupt_message(&self, queue: u64, key: &[u8], why: impl ToString) -> StoreError {
        self.corrupt(&queue_tree_name(queue), key, why)
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

fn queue_tree_name(id: u64) -> String {
    format!("q/{id}")
}
