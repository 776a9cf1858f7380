//! Queues: ready messages in order, the consumers that take them, and the
//! count of deliveries awaiting acknowledgement.
//!
//! A queue is shared state behind a short-held lock. Whoever changes it does
//! the delivery work in place: the publisher's connection task pushes a
//! message and hands it straight to a consumer with credit; the consumer's
//! connection task, after an ack frees credit, pulls the next ones. No task
//! sits between them, so a message costs no wake-up beyond the consumer's
//! socket writer. Lock order is queue, then channel deliveries, then outbox;
//! nothing holds a queue lock across an `.await`.
//!
//! Persistent messages of durable queues are written to the queue's tree
//! under the same lock, so the disk order is the queue order. Past
//! `max_in_memory` ready messages, new ones stay on disk only (see
//! [`ready`]).

pub mod consumer;
pub mod ready;
pub mod storage;

use std::collections::HashMap;
use std::sync::Arc;

use amq_protocol::types::FieldTable;
use parking_lot::Mutex;

use crate::amqp_err;
use crate::message::{Message, QueuedMessage, SharedMessage};
use crate::protocol::AmqpResult;
use crate::store::StoreError;
use crate::store::codec::Names;
use crate::util::now_millis;
pub use consumer::Consumer;
use ready::ReadyQueue;
pub use storage::Persist;
use storage::{QueueStorage, RecoveredEntry};

/// The declared identity of a queue; fixed for its lifetime.
#[derive(Debug)]
pub struct Queue {
    pub name: Arc<str>,
    pub vhost: Arc<str>,
    pub durable: bool,
    pub auto_delete: bool,
    /// The connection that declared an exclusive queue.
    pub exclusive_owner: Option<u64>,
    pub arguments: FieldTable,
    /// `x-message-ttl`: milliseconds a message may wait in this queue.
    message_ttl: Option<u64>,
    storage: Option<Arc<QueueStorage>>,
    /// Ready messages kept in memory before new ones go to disk only.
    max_in_memory: usize,
    state: Mutex<QueueState>,
}

#[derive(Debug, Default)]
struct QueueState {
    ready: ReadyQueue,
    next_seq: u64,
    consumers: Vec<Arc<Consumer>>,
    /// Where the round-robin resumes.
    next_consumer: usize,
    /// Delivered, not yet acknowledged.
    unacked: usize,
    /// An auto-delete queue goes when its last consumer does, but only after it had one.
    had_consumers: bool,
    deleted: bool,
    /// Exchange names of messages read back from disk.
    names: Names,
}

/// What removing a consumer left behind.
#[derive(Debug, PartialEq, Eq)]
pub enum ConsumerRemoval {
    NotFound,
    Removed,
    /// The last consumer of an auto-delete queue went: delete the queue.
    RemovedLastOfAutoDelete,
}

/// How a queue is made.
#[derive(Debug)]
pub struct QueueOptions {
    pub name: Arc<str>,
    pub vhost: Arc<str>,
    pub durable: bool,
    pub auto_delete: bool,
    pub exclusive_owner: Option<u64>,
    pub arguments: FieldTable,
    pub storage: Option<Arc<QueueStorage>>,
    pub max_in_memory: usize,
}

impl Queue {
    pub fn new(options: QueueOptions) -> Self {
        let message_ttl = crate::protocol::table::lookup(&options.arguments, "x-message-ttl")
            .and_then(crate::protocol::table::as_i128)
            .and_then(|ttl| u64::try_from(ttl).ok());
        Queue {
            name: options.name,
            vhost: options.vhost,
            durable: options.durable,
            auto_delete: options.auto_delete,
            exclusive_owner: options.exclusive_owner,
            arguments: options.arguments,
            message_ttl,
            storage: options.storage,
            max_in_memory: options.max_in_memory.max(1),
            state: Mutex::new(QueueState::default()),
        }
    }

    /// The id of the queue's storage (names its trees), if it has any.
    pub fn storage_id(&self) -> Option<u64> {
        self.storage.as_ref().map(|s| s.id)
    }

    /// Whether persistent messages routed here are written to disk.
    pub fn stores_persistent(&self) -> bool {
        self.storage.as_ref().is_some_and(|s| s.is_durable())
    }

    /// "queue 'name' in vhost '/'", as RabbitMQ names a queue in error texts.
    pub fn describe(&self) -> String {
        format!("queue '{}' in vhost '{}'", self.name, self.vhost)
    }

    /// Whether `connection` may use it (405 RESOURCE_LOCKED otherwise).
    pub fn check_exclusive_access(&self, connection: u64) -> AmqpResult<()> {
        match self.exclusive_owner {
            Some(owner) if owner != connection => Err(self.locked_error()),
            _ => Ok(()),
        }
    }

    /// The 405 for a connection that does not own this exclusive queue, or
    /// whose declaration disagrees on exclusivity.
    pub fn locked_error(&self) -> crate::protocol::AmqpError {
        amqp_err!(
            ResourceLocked,
            "cannot obtain exclusive access to locked {}. It could be originally declared on \
             another connection or the exclusive property value does not match that of the \
             original declaration.",
            self.describe()
        )
    }

    /// Ready messages (what declare-ok and get-ok report).
    pub fn message_count(&self) -> u32 {
        let mut st = self.state.lock();
        self.expire_head(&mut st);
        st.ready.len() as u32
    }

    pub fn consumer_count(&self) -> u32 {
        self.state.lock().consumers.len() as u32
    }

    /// Ready and consumer counts at once.
    pub fn counts(&self) -> (u32, u32) {
        let mut st = self.state.lock();
        self.expire_head(&mut st);
        (st.ready.len() as u32, st.consumers.len() as u32)
    }

    /// Ready messages whose bodies are in memory.
    pub fn messages_in_memory(&self) -> usize {
        self.state.lock().ready.in_memory()
    }

    pub fn is_deleted(&self) -> bool {
        self.state.lock().deleted
    }

    /// Enqueue a routed message and deliver what consumers can take.
    /// Persistent messages of a durable queue are written first.
    pub fn publish(self: &Arc<Self>, message: Arc<Message>) -> Persist {
        let mut st = self.state.lock();
        if st.deleted {
            return Persist::NotNeeded;
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        // The shorter of the queue's TTL and the message's own.
        let ttl = match (self.message_ttl, message.expiration) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let expires_at = ttl.map(|ttl| now_millis().saturating_add(ttl));
        let persisted = match &self.storage {
            Some(storage) => storage.persist(seq, &message, expires_at),
            None => Persist::NotNeeded,
        };
        let queued = QueuedMessage {
            seq,
            message,
            redelivered: false,
            expires_at,
            on_disk: persisted == Persist::Stored,
        };
        if ttl == Some(0) {
            // Deliver now or never: only if nothing waits ahead of it and a
            // consumer takes it at once.
            self.drain_locked(&mut st);
            if !st.ready.is_empty() {
                self.drop_messages(vec![queued]);
                return persisted;
            }
            st.ready.push_back(queued, None, usize::MAX);
            self.drain_locked(&mut st);
            if let Some(undelivered) = st.ready.pop_back_if(seq) {
                self.drop_messages(vec![undelivered]);
            }
            return persisted;
        }
        st.ready
            .push_back(queued, self.storage.as_deref(), self.max_in_memory);
        self.drain_locked(&mut st);
        persisted
    }

    /// Messages leaving the queue without delivery (expired): their disk
    /// copies go too.
    fn drop_messages(&self, messages: Vec<QueuedMessage>) {
        if let Some(storage) = &self.storage {
            storage.remove(&messages);
        }
    }

    /// Drop expired messages from the head of the queue.
    fn expire_head(&self, st: &mut QueueState) {
        let now = now_millis();
        let mut expired = Vec::new();
        loop {
            let QueueState { ready, names, .. } = &mut *st;
            let head = ready.front(self.storage.as_deref(), names);
            if head.is_none_or(|m| m.expires_at.is_none_or(|at| at > now)) {
                break;
            }
            expired.extend(ready.pop_front(self.storage.as_deref(), names));
        }
        if !expired.is_empty() {
            self.drop_messages(expired);
        }
    }

    /// Deliver ready messages to consumers with credit.
    pub fn drain(self: &Arc<Self>) {
        let mut st = self.state.lock();
        self.drain_locked(&mut st);
    }

    fn drain_locked(self: &Arc<Self>, st: &mut QueueState) {
        if st.consumers.is_empty() {
            return;
        }
        self.expire_head(st);
        let storage = self.storage.as_deref();
        let QueueState {
            ready,
            consumers,
            next_consumer,
            unacked,
            names,
            ..
        } = st;
        let count = consumers.len();
        let mut settled = Vec::new();
        'messages: while !ready.is_empty() {
            for step in 0..count {
                let index = (*next_consumer + step) % count;
                let consumer = &consumers[index];
                let link = &consumer.channel;
                let mut deliveries = link.deliveries.lock();
                if !deliveries.has_credit(consumer, &link.conn) {
                    continue;
                }
                let Some(message) = ready.pop_front(storage, names) else {
                    break 'messages;
                };
                if message.expires_at.is_some_and(|at| at <= now_millis()) {
                    settled.push(message);
                    continue 'messages;
                }
                if let (Some(storage), true) = (storage, message.on_disk) {
                    storage.note_delivered(message.seq);
                }
                match link.deliver(&mut deliveries, consumer, self, message) {
                    Some(auto_acked) => settled.push(auto_acked),
                    None => *unacked += 1,
                }
                *next_consumer = index + 1;
                continue 'messages;
            }
            // Nobody has credit: the next ack or a writable socket resumes us.
            break;
        }
        if !settled.is_empty() {
            self.drop_messages(settled);
        }
    }

    /// Add a consumer; refuses when an exclusive consumer is involved.
    /// `on_added` runs under the queue lock before the first delivery (it
    /// sends `consume-ok`, which must precede deliveries on the wire).
    pub fn add_consumer(
        self: &Arc<Self>,
        consumer: Arc<Consumer>,
        on_added: impl FnOnce(),
    ) -> AmqpResult<()> {
        let mut st = self.state.lock();
        if st.consumers.iter().any(|c| c.exclusive)
            || (consumer.exclusive && !st.consumers.is_empty())
        {
            return Err(amqp_err!(
                AccessRefused,
                "{} in exclusive use",
                self.describe()
            ));
        }
        on_added();
        st.consumers.push(consumer);
        st.had_consumers = true;
        self.drain_locked(&mut st);
        Ok(())
    }

    /// Remove a consumer.
    pub fn remove_consumer(&self, consumer: &Arc<Consumer>) -> ConsumerRemoval {
        let mut st = self.state.lock();
        let before = st.consumers.len();
        st.consumers.retain(|c| !Arc::ptr_eq(c, consumer));
        if st.consumers.len() == before {
            return ConsumerRemoval::NotFound;
        }
        if st.next_consumer > st.consumers.len() {
            st.next_consumer = 0;
        }
        if self.auto_delete && st.consumers.is_empty() && st.had_consumers && !st.deleted {
            ConsumerRemoval::RemovedLastOfAutoDelete
        } else {
            ConsumerRemoval::Removed
        }
    }

    /// `basic.get`: hand the head message to `deliver` with the count of
    /// ready messages left behind it, under the queue lock (so delivery tags
    /// stay in order on the channel). `deliver` gives the message back when
    /// it was taken without ack. Returns false when the queue was empty.
    pub fn get(&self, deliver: impl FnOnce(QueuedMessage, u32) -> Option<QueuedMessage>) -> bool {
        let mut st = self.state.lock();
        self.expire_head(&mut st);
        let QueueState { ready, names, .. } = &mut *st;
        let Some(message) = ready.pop_front(self.storage.as_deref(), names) else {
            return false;
        };
        if let (Some(storage), true) = (&self.storage, message.on_disk) {
            storage.note_delivered(message.seq);
        }
        let remaining = st.ready.len() as u32;
        match deliver(message, remaining) {
            Some(settled) => self.drop_messages(vec![settled]),
            None => st.unacked += 1,
        }
        true
    }

    /// Acknowledged deliveries leave the queue for good; the credit they
    /// free lets more messages out.
    pub fn ack(self: &Arc<Self>, messages: Vec<QueuedMessage>) {
        self.settle(messages);
    }

    /// Rejected deliveries without requeue are dropped.
    pub fn discard(self: &Arc<Self>, messages: Vec<QueuedMessage>) {
        self.settle(messages);
    }

    fn settle(self: &Arc<Self>, messages: Vec<QueuedMessage>) {
        if let Some(storage) = &self.storage {
            storage.remove(&messages);
        }
        let mut st = self.state.lock();
        st.unacked = st.unacked.saturating_sub(messages.len());
        self.drain_locked(&mut st);
    }

    /// Put deliveries back in their original positions, marked redelivered,
    /// and deliver again what consumers can take.
    pub fn requeue(self: &Arc<Self>, messages: Vec<QueuedMessage>) {
        let mut st = self.state.lock();
        st.unacked = st.unacked.saturating_sub(messages.len());
        if st.deleted {
            drop(st);
            self.drop_messages(messages);
            return;
        }
        for mut message in messages {
            message.redelivered = true;
            st.ready.insert_in_order(message);
        }
        self.drain_locked(&mut st);
    }

    /// Drop every ready message; returns how many.
    pub fn purge(&self) -> u32 {
        let mut st = self.state.lock();
        let count = st.ready.len() as u32;
        let cleared = st.ready.clear();
        if let Some(storage) = &self.storage {
            storage.purge(&cleared.on_disk, cleared.shared);
        }
        count
    }

    /// Check `queue.delete`'s conditions.
    pub fn check_delete(&self, if_unused: bool, if_empty: bool) -> AmqpResult<()> {
        let st = self.state.lock();
        if if_unused && !st.consumers.is_empty() {
            return Err(amqp_err!(PreconditionFailed, "{} in use", self.describe()));
        }
        if if_empty && !st.ready.is_empty() {
            return Err(amqp_err!(
                PreconditionFailed,
                "{} not empty",
                self.describe()
            ));
        }
        Ok(())
    }

    /// Mark the queue deleted: drop its messages (in memory and on disk) and
    /// hand back its consumers, whose channels must be told. Returns the
    /// ready count it had.
    pub fn mark_deleted(&self) -> (u32, Vec<Arc<Consumer>>) {
        let mut st = self.state.lock();
        st.deleted = true;
        let count = st.ready.len() as u32;
        let cleared = st.ready.clear();
        if let Some(storage) = &self.storage {
            storage.destroy(&self.vhost, &self.name, cleared.shared);
        }
        (count, std::mem::take(&mut st.consumers))
    }

    /// Read the queue's persistent messages back at start.
    pub fn recover(
        &self,
        shared: &mut HashMap<u64, Arc<SharedMessage>>,
    ) -> Result<storage::Recovered, StoreError> {
        let Some(storage) = &self.storage else {
            return Ok(storage::Recovered::default());
        };
        let mut st = self.state.lock();
        let mut last_seq = None;
        let stats = storage.recover(shared, self.max_in_memory, |entry| match entry {
            RecoveredEntry::Loaded(message) => {
                last_seq = Some(message.seq);
                st.ready.push_back(message, None, usize::MAX);
            }
            RecoveredEntry::Paged(paged) => {
                last_seq = Some(paged.seq);
                st.ready.push_paged(paged);
            }
        })?;
        st.next_seq = last_seq.map_or(0, |s| s + 1);
        Ok(stats)
    }
}
