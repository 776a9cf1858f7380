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
//! [`ready`]). Messages that leave without being consumed (expired, over a
//! length limit, rejected, over a delivery limit) are collected under the
//! lock and dead-lettered after it is released.

pub mod arguments;
pub mod consumer;
pub mod dead_letter;
pub mod ready;
pub mod republish;
pub mod storage;

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use amq_protocol::types::{AMQPValue, FieldTable};
use parking_lot::Mutex;

use crate::amqp_err;
use crate::message::{Message, QueuedMessage, SharedMessage};
use crate::policy::{Applied, effective_queue_args};
use crate::protocol::{AmqpResult, Properties};
use crate::stats::QueueCounters;
use crate::store::StoreError;
use crate::store::codec::Names;
use crate::timer::{Timed, Timers};
use crate::util::now_millis;
pub use arguments::{Overflow, QueueArgs, QueueType};
pub use consumer::{Consumer, ConsumerChannel, Delivery};
use dead_letter::Reason;
use ready::ReadyQueue;
pub use republish::Republish;
pub use storage::Persist;
use storage::{QueueStorage, RecoveredEntry};

/// Messages to dead-letter once the queue lock is released.
type DeadLetters = Vec<(Arc<Message>, Reason)>;

/// A full sweep for messages with their own TTLs runs at most this often.
const MIXED_TTL_SWEEP_MS: u64 = 10;

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
    /// The arguments as declared. What policies may change (TTLs, limits,
    /// dead-lettering) is read from the effective copy in the state.
    pub args: QueueArgs,
    storage: Option<Arc<QueueStorage>>,
    /// Ready messages kept in memory (per priority) before new ones go to disk only.
    max_in_memory: usize,
    /// The virtual host above: dead letters are routed through it, and an
    /// expiring queue deletes itself from it.
    republish: Weak<dyn Republish>,
    timers: Option<Timers>,
    me: Weak<Queue>,
    state: Mutex<QueueState>,
}

#[derive(Debug, Default)]
struct QueueState {
    /// The declared arguments with the policies applied; replaced when a
    /// policy changes, read under the lock the publish path takes anyway.
    args: QueueArgs,
    /// The policy and operator policy that apply.
    applied: Applied,
    ready: ReadyQueue,
    next_seq: u64,
    /// In registration order (single active consumer serves the first).
    consumers: Vec<Arc<Consumer>>,
    /// Round-robin position among consumers of the same priority.
    rotation: usize,
    /// Delivered, not yet acknowledged.
    unacked: usize,
    /// Body bytes of the unacknowledged deliveries.
    unacked_bytes: usize,
    /// Message statistics, counted under the lock the queue holds anyway.
    counters: QueueCounters,
    /// An auto-delete queue goes when its last consumer does, but only after it had one.
    had_consumers: bool,
    deleted: bool,
    /// Exchange names of messages read back from disk.
    names: Names,
    /// The deadline the timers will call us at, if any.
    armed: Option<u64>,
    /// Some message carries its own TTL: expiry is not in queue order.
    mixed_ttl: bool,
    /// Last consume, get or declaration (for `x-expires`).
    last_used: u64,
    /// A message with TTL 0 being offered to consumers: it may go out
    /// although its expiry (now) has passed.
    immediate: Option<u64>,
}

/// A queue's counts and counters at one instant, for the management API.
#[derive(Debug, Clone)]
pub struct QueueSnapshot {
    pub ready: u32,
    pub unacked: u32,
    pub ready_bytes: u64,
    pub unacked_bytes: u64,
    /// Ready messages whose bodies are in memory.
    pub in_memory: u32,
    pub consumers: Vec<Arc<Consumer>>,
    pub counters: QueueCounters,
    /// Milliseconds since the epoch of the last consume, get or declaration.
    pub last_used: u64,
}

/// What removing a consumer left behind.
#[derive(Debug, PartialEq, Eq)]
pub enum ConsumerRemoval {
    NotFound,
    Removed,
    /// The last consumer of an auto-delete queue went: delete the queue.
    RemovedLastOfAutoDelete,
}

/// The outcome of publishing a message into one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub persist: Persist,
    /// Refused by `x-overflow` = reject-publish(-dlx): nack it.
    pub rejected: bool,
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
    pub args: QueueArgs,
    pub storage: Option<Arc<QueueStorage>>,
    pub max_in_memory: usize,
    /// The virtual host (or a test's stand-in) the queue lives in.
    pub republish: Weak<dyn Republish>,
    pub timers: Option<Timers>,
    /// The policies that apply at creation.
    pub applied: Applied,
}

impl Queue {
    pub fn new(options: QueueOptions) -> Arc<Queue> {
        let ready = ReadyQueue::new(options.args.max_priority);
        let args = effective_queue_args(
            &options.args,
            overflow_declared(&options.arguments),
            &options.applied,
        );
        let queue = Arc::new_cyclic(|me| Queue {
            name: options.name,
            vhost: options.vhost,
            durable: options.durable,
            auto_delete: options.auto_delete,
            exclusive_owner: options.exclusive_owner,
            arguments: options.arguments,
            args: options.args,
            storage: options.storage,
            max_in_memory: options.max_in_memory.max(1),
            republish: options.republish,
            timers: options.timers,
            me: me.clone(),
            state: Mutex::new(QueueState {
                args,
                applied: options.applied,
                ready,
                last_used: now_millis(),
                ..QueueState::default()
            }),
        });
        {
            let mut st = queue.state.lock();
            if let Some(expires) = st.args.expires {
                queue.arm(&mut st, now_millis() + expires);
            }
        }
        queue
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

    /// The consumer timeout for this queue's deliveries, if it sets one.
    pub fn consumer_timeout(&self) -> Option<u64> {
        self.args.consumer_timeout
    }

    /// Ready messages (what declare-ok and get-ok report).
    pub fn message_count(&self) -> u32 {
        self.counts().0
    }

    pub fn consumer_count(&self) -> u32 {
        self.state.lock().consumers.len() as u32
    }

    /// Ready and consumer counts at once; counts as a use (`x-expires`).
    pub fn counts(&self) -> (u32, u32) {
        let mut dead = Vec::new();
        let counts = {
            let mut st = self.state.lock();
            st.last_used = now_millis();
            self.expire(&mut st, &mut dead);
            (st.ready.len() as u32, st.consumers.len() as u32)
        };
        self.dead_letter(dead);
        counts
    }

    /// Counts, consumers and counters, exact at the time of the call
    /// (expired messages are dropped first, as a count would).
    pub fn snapshot(&self) -> QueueSnapshot {
        let mut dead = Vec::new();
        let snapshot = {
            let mut st = self.state.lock();
            self.expire(&mut st, &mut dead);
            QueueSnapshot {
                ready: st.ready.len() as u32,
                unacked: st.unacked as u32,
                ready_bytes: st.ready.body_bytes() as u64,
                unacked_bytes: st.unacked_bytes as u64,
                in_memory: st.ready.in_memory() as u32,
                consumers: st.consumers.clone(),
                counters: st.counters,
                last_used: st.last_used,
            }
        };
        self.dead_letter(dead);
        snapshot
    }

    /// Ready messages whose bodies are in memory.
    pub fn messages_in_memory(&self) -> usize {
        self.state.lock().ready.in_memory()
    }

    pub fn is_deleted(&self) -> bool {
        self.state.lock().deleted
    }

    /// Whether a new message of `body_len` bytes would exceed a length limit.
    fn would_overflow(&self, st: &QueueState, body_len: usize) -> bool {
        st.args
            .max_length
            .is_some_and(|max| st.ready.len() as u64 + 1 > max)
            || st
                .args
                .max_length_bytes
                .is_some_and(|max| (st.ready.body_bytes() + body_len) as u64 > max)
    }

    fn over_limit(&self, st: &QueueState) -> bool {
        st.args
            .max_length
            .is_some_and(|max| st.ready.len() as u64 > max)
            || st
                .args
                .max_length_bytes
                .is_some_and(|max| st.ready.body_bytes() as u64 > max)
    }

    /// Enqueue a routed message and deliver what consumers can take.
    /// Persistent messages of a durable queue (every message of a quorum
    /// queue) are written first.
    pub fn publish(self: &Arc<Self>, message: Arc<Message>) -> Published {
        let mut dead = Vec::new();
        let published = self.publish_locked(message, &mut dead);
        self.dead_letter(dead);
        published
    }

    fn publish_locked(
        self: &Arc<Self>,
        message: Arc<Message>,
        dead: &mut DeadLetters,
    ) -> Published {
        let not_needed = Published {
            persist: Persist::NotNeeded,
            rejected: false,
        };
        let mut st = self.state.lock();
        if st.deleted {
            return not_needed;
        }
        if st.args.overflow != Overflow::DropHead && self.would_overflow(&st, message.body.len()) {
            if st.args.overflow == Overflow::RejectPublishDlx {
                dead.push((message, Reason::Maxlen));
            }
            return Published {
                persist: Persist::NotNeeded,
                rejected: true,
            };
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        st.counters.publish += 1;
        // The shorter of the queue's TTL and the message's own.
        let ttl = match (st.args.message_ttl, message.expiration) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if message.expiration.is_some() {
            st.mixed_ttl = true;
        }
        let expires_at = ttl.map(|ttl| now_millis().saturating_add(ttl));
        let persist = match &self.storage {
            Some(storage) => storage.persist(seq, &message, expires_at, self.args.is_quorum()),
            None => Persist::NotNeeded,
        };
        let priority = message.properties.priority();
        let queued = QueuedMessage {
            seq,
            message,
            redelivered: false,
            expires_at,
            on_disk: persist == Persist::Stored,
            delivery_count: 0,
        };
        if ttl == Some(0) {
            // Deliver now or never: only if nothing waits ahead of it and a
            // consumer takes it at once.
            self.drain_locked(&mut st, dead);
            if st.ready.is_empty() {
                st.ready.push_back(queued, None, usize::MAX);
                st.immediate = Some(seq);
                self.drain_locked(&mut st, dead);
                st.immediate = None;
                if let Some(undelivered) = st.ready.pop_back_if(seq, priority) {
                    let dlx = st.args.dead_letter_exchange.is_some();
                    self.leave(vec![undelivered], Reason::Expired, dlx, dead);
                }
            } else {
                let dlx = st.args.dead_letter_exchange.is_some();
                self.leave(vec![queued], Reason::Expired, dlx, dead);
            }
        } else {
            st.ready
                .push_back(queued, self.storage.as_deref(), self.max_in_memory);
            self.drain_locked(&mut st, dead);
            self.drop_head_over_limit(&mut st, dead);
            if let Some(at) = expires_at {
                self.arm(&mut st, at);
            }
        }
        Published {
            persist,
            rejected: false,
        }
    }

    /// Messages leaving the queue without being consumed: their disk copies
    /// go, and they are dead-lettered (after the lock) if the queue says so.
    fn leave(
        &self,
        messages: Vec<QueuedMessage>,
        reason: Reason,
        dlx: bool,
        dead: &mut DeadLetters,
    ) {
        if messages.is_empty() {
            return;
        }
        if let Some(storage) = &self.storage {
            storage.remove(&messages);
        }
        if dlx {
            dead.extend(messages.into_iter().map(|m| (m.message, reason)));
        }
    }

    /// `x-overflow` = drop-head: drop (or dead-letter) the oldest messages
    /// until the queue is within its limits.
    fn drop_head_over_limit(&self, st: &mut QueueState, dead: &mut DeadLetters) {
        if st.args.overflow != Overflow::DropHead {
            return;
        }
        let mut dropped = Vec::new();
        while self.over_limit(st) {
            let QueueState { ready, names, .. } = &mut *st;
            match ready.pop_front(self.storage.as_deref(), names) {
                Some(message) => dropped.push(message),
                None => break,
            }
        }
        let dlx = st.args.dead_letter_exchange.is_some();
        self.leave(dropped, Reason::Maxlen, dlx, dead);
    }

    /// Drop expired messages: from the head of the queue, or anywhere when
    /// some messages carry their own TTL.
    fn expire(&self, st: &mut QueueState, dead: &mut DeadLetters) -> Option<u64> {
        let QueueState {
            ready,
            names,
            mixed_ttl,
            args,
            ..
        } = &mut *st;
        if args.message_ttl.is_none() && !*mixed_ttl {
            return None;
        }
        let (expired, next) =
            ready.take_expired(now_millis(), *mixed_ttl, self.storage.as_deref(), names);
        self.leave(
            expired,
            Reason::Expired,
            args.dead_letter_exchange.is_some(),
            dead,
        );
        next
    }

    /// Ask the timers to call us at `at`, unless an earlier call is armed.
    fn arm(&self, st: &mut QueueState, at: u64) {
        if st.armed.is_some_and(|armed| armed <= at) {
            return;
        }
        st.armed = Some(at);
        if let Some(timers) = &self.timers {
            let me: Weak<dyn Timed> = self.me.clone();
            timers.schedule(at, me);
        }
    }

    /// Deliver ready messages to consumers with credit.
    pub fn drain(self: &Arc<Self>) {
        let mut dead = Vec::new();
        {
            let mut st = self.state.lock();
            self.drain_locked(&mut st, &mut dead);
        }
        self.dead_letter(dead);
    }

    /// The consumer to deliver to next: with credit, of the highest
    /// priority, round-robin among equals. With single active consumer,
    /// only the first registered one is a candidate.
    fn pick_consumer(&self, consumers: &[Arc<Consumer>], rotation: usize) -> Option<usize> {
        let credit = |c: &Arc<Consumer>| c.channel.has_credit(c);
        if self.args.single_active_consumer {
            return consumers.first().filter(|c| credit(c)).map(|_| 0);
        }
        let count = consumers.len();
        let mut best: Option<(i32, usize)> = None;
        for step in 0..count {
            let index = (rotation + step) % count;
            let consumer = &consumers[index];
            if best.is_some_and(|(priority, _)| consumer.priority <= priority) {
                continue;
            }
            if credit(consumer) {
                best = Some((consumer.priority, index));
            }
        }
        best.map(|(_, index)| index)
    }

    fn drain_locked(self: &Arc<Self>, st: &mut QueueState, dead: &mut DeadLetters) {
        if st.consumers.is_empty() {
            return;
        }
        if st.immediate.is_none()
            && let Some(next) = self.expire(st, dead)
        {
            self.arm(st, next);
        }
        let immediate = st.immediate;
        let storage = self.storage.as_deref();
        let mut settled = Vec::new();
        let mut expired = Vec::new();
        {
            let QueueState {
                ready,
                consumers,
                rotation,
                unacked,
                unacked_bytes,
                counters,
                names,
                ..
            } = &mut *st;
            while !ready.is_empty() {
                let Some(index) = self.pick_consumer(consumers, *rotation) else {
                    // Nobody has credit: the next ack or a writable socket resumes us.
                    break;
                };
                let consumer = &consumers[index];
                let Some(message) = ready.pop_front(storage, names) else {
                    break;
                };
                if message.expires_at.is_some_and(|at| at <= now_millis())
                    && immediate != Some(message.seq)
                {
                    expired.push(message);
                    continue;
                }
                let (seq, on_disk) = (message.seq, message.on_disk);
                let (size, redelivered) = (message.message.body.len(), message.redelivered);
                let wire = (self.args.is_quorum() && message.delivery_count > 0)
                    .then(|| with_delivery_count(&message.message, message.delivery_count));
                match consumer
                    .channel
                    .deliver(consumer, self, message, wire.as_ref())
                {
                    Delivery::Unacked => {
                        *unacked += 1;
                        *unacked_bytes += size;
                        counters.deliver += 1;
                        counters.redeliver += u64::from(redelivered);
                    }
                    Delivery::Settled(auto_acked) => {
                        counters.deliver_no_ack += 1;
                        counters.redeliver += u64::from(redelivered);
                        settled.push(auto_acked);
                    }
                    Delivery::Refused(message) => {
                        // Rare: put it back at the head and pick again.
                        ready.insert_in_order(message);
                        continue;
                    }
                }
                if let (Some(storage), true) = (storage, on_disk) {
                    storage.note_delivered(seq);
                }
                *rotation = index + 1;
            }
        }
        let dlx = st.args.dead_letter_exchange.is_some();
        self.leave(expired, Reason::Expired, dlx, dead);
        if !settled.is_empty()
            && let Some(storage) = &self.storage
        {
            storage.remove(&settled);
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
        let mut dead = Vec::new();
        {
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
            st.last_used = now_millis();
            self.drain_locked(&mut st, &mut dead);
        }
        self.dead_letter(dead);
        Ok(())
    }

    /// Remove a consumer. With single active consumer, the next registered
    /// one takes over at once.
    pub fn remove_consumer(self: &Arc<Self>, consumer: &Arc<Consumer>) -> ConsumerRemoval {
        let mut dead = Vec::new();
        let removal = {
            let mut st = self.state.lock();
            let before = st.consumers.len();
            st.consumers.retain(|c| !Arc::ptr_eq(c, consumer));
            if st.consumers.len() == before {
                return ConsumerRemoval::NotFound;
            }
            st.last_used = now_millis();
            if self.auto_delete && st.consumers.is_empty() && st.had_consumers && !st.deleted {
                ConsumerRemoval::RemovedLastOfAutoDelete
            } else {
                self.drain_locked(&mut st, &mut dead);
                ConsumerRemoval::Removed
            }
        };
        self.dead_letter(dead);
        removal
    }

    /// `basic.get`: hand the head message to `deliver` with the count of
    /// ready messages left behind it, under the queue lock (so delivery tags
    /// stay in order on the channel). `deliver` gives the message back when
    /// it was taken without ack. Returns false when the queue was empty.
    /// A quorum queue's message goes out with its `x-delivery-count`, passed
    /// as the properties to send in its place.
    pub fn get(
        &self,
        deliver: impl FnOnce(QueuedMessage, u32, Option<&Properties>) -> Option<QueuedMessage>,
    ) -> bool {
        let mut dead = Vec::new();
        let got = {
            let mut st = self.state.lock();
            st.last_used = now_millis();
            self.expire(&mut st, &mut dead);
            let QueueState { ready, names, .. } = &mut *st;
            match ready.pop_front(self.storage.as_deref(), names) {
                None => {
                    st.counters.get_empty += 1;
                    false
                }
                Some(message) => {
                    let (size, redelivered) = (message.message.body.len(), message.redelivered);
                    st.counters.redeliver += u64::from(redelivered);
                    if let (Some(storage), true) = (&self.storage, message.on_disk) {
                        storage.note_delivered(message.seq);
                    }
                    // basic.get from a quorum queue always says how often
                    // the message was returned, 0 included.
                    let wire = self
                        .args
                        .is_quorum()
                        .then(|| with_delivery_count(&message.message, message.delivery_count));
                    let remaining = st.ready.len() as u32;
                    match deliver(message, remaining, wire.as_ref()) {
                        Some(settled) => {
                            st.counters.get_no_ack += 1;
                            if let Some(storage) = &self.storage {
                                storage.remove(&[settled]);
                            }
                        }
                        None => {
                            st.counters.get += 1;
                            st.unacked += 1;
                            st.unacked_bytes += size;
                        }
                    }
                    true
                }
            }
        };
        self.dead_letter(dead);
        got
    }

    /// Acknowledged deliveries leave the queue for good; the credit they
    /// free lets more messages out.
    pub fn ack(self: &Arc<Self>, messages: Vec<QueuedMessage>) {
        self.settle(messages, None);
    }

    /// Deliveries rejected without requeue: dropped, or dead-lettered.
    pub fn discard(self: &Arc<Self>, messages: Vec<QueuedMessage>) {
        self.settle(messages, Some(Reason::Rejected));
    }

    fn settle(self: &Arc<Self>, messages: Vec<QueuedMessage>, reason: Option<Reason>) {
        let mut dead = Vec::new();
        {
            let mut st = self.state.lock();
            st.unacked = st.unacked.saturating_sub(messages.len());
            st.unacked_bytes = st.unacked_bytes.saturating_sub(body_bytes(&messages));
            match reason {
                Some(reason) => {
                    let dlx = st.args.dead_letter_exchange.is_some();
                    self.leave(messages, reason, dlx, &mut dead)
                }
                None => {
                    st.counters.ack += messages.len() as u64;
                    if let Some(storage) = &self.storage {
                        storage.remove(&messages);
                    }
                }
            }
            self.drain_locked(&mut st, &mut dead);
        }
        self.dead_letter(dead);
    }

    /// Put deliveries back in their original positions, marked redelivered,
    /// and deliver again what consumers can take. A quorum queue counts the
    /// return, and dead-letters a message returned more than its
    /// `x-delivery-limit`.
    pub fn requeue(self: &Arc<Self>, messages: Vec<QueuedMessage>) {
        let mut dead = Vec::new();
        {
            let mut st = self.state.lock();
            st.unacked = st.unacked.saturating_sub(messages.len());
            st.unacked_bytes = st.unacked_bytes.saturating_sub(body_bytes(&messages));
            if st.deleted {
                drop(st);
                if let Some(storage) = &self.storage {
                    storage.remove(&messages);
                }
                return;
            }
            let mut over_limit = Vec::new();
            for mut message in messages {
                message.redelivered = true;
                if self.args.is_quorum() {
                    message.delivery_count += 1;
                    if st
                        .args
                        .delivery_limit
                        .is_some_and(|limit| message.delivery_count as u64 > limit)
                    {
                        over_limit.push(message);
                        continue;
                    }
                }
                st.ready.insert_in_order(message);
            }
            let dlx = st.args.dead_letter_exchange.is_some();
            self.leave(over_limit, Reason::DeliveryLimit, dlx, &mut dead);
            self.drop_head_over_limit(&mut st, &mut dead);
            self.drain_locked(&mut st, &mut dead);
            if let Some(next) = st.ready.next_expiry(st.mixed_ttl) {
                self.arm(&mut st, next);
            }
        }
        self.dead_letter(dead);
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

    /// Route messages that left this queue to its dead-letter exchange.
    /// Called without the queue lock: the targets may include this queue.
    fn dead_letter(&self, dead: DeadLetters) {
        if dead.is_empty() {
            return;
        }
        // The arguments may have changed since the messages left: take them now.
        let (dlx, routing_key) = {
            let st = self.state.lock();
            (
                st.args.dead_letter_exchange.clone(),
                st.args.dead_letter_routing_key.clone(),
            )
        };
        let (Some(dlx), Some(vhost)) = (dlx, self.republish.upgrade()) else {
            return;
        };
        let dlx: Arc<str> = Arc::from(dlx.as_str());
        let routing_key = routing_key.as_deref();
        let now = now_millis() / 1000;
        let mut targets = Vec::new();
        for (message, reason) in dead {
            let copy = Arc::new(dead_letter::dead_lettered(
                &message,
                reason,
                &self.name,
                &dlx,
                routing_key,
                now,
            ));
            targets.clear();
            vhost.route_internal(&dlx, &copy, &mut targets);
            for target in &targets {
                if !dead_letter::is_cycle(&copy, reason, &target.name) {
                    target.publish(copy.clone());
                }
            }
        }
    }

    /// The policy and operator policy that apply, and the effective
    /// arguments they make.
    pub fn policies(&self) -> (Applied, QueueArgs) {
        let st = self.state.lock();
        (st.applied.clone(), st.args.clone())
    }

    /// Apply changed policies at once, as RabbitMQ does: the new limits
    /// drop (or dead-letter) what is over them, a new message TTL expires
    /// what is due, and a new `expires` restarts the idle timer. Messages
    /// already queued keep the expiry they were given when published.
    pub fn apply_policies(self: &Arc<Self>, applied: Applied) {
        let mut dead = Vec::new();
        {
            let mut st = self.state.lock();
            if st.deleted || st.applied.same(&applied) {
                return;
            }
            let args =
                effective_queue_args(&self.args, overflow_declared(&self.arguments), &applied);
            // Messages published under an earlier TTL keep their expiry; a
            // full sweep finds them wherever they are.
            if st.args.message_ttl.is_some() && st.args.message_ttl != args.message_ttl {
                st.mixed_ttl = true;
            }
            let expires_changed = st.args.expires != args.expires;
            st.args = args;
            st.applied = applied;
            if expires_changed && let Some(expires) = st.args.expires {
                st.last_used = now_millis();
                st.armed = None;
                self.arm(&mut st, now_millis() + expires);
            }
            if let Some(next) = self.expire(&mut st, &mut dead) {
                self.arm(&mut st, next);
            }
            self.drop_head_over_limit(&mut st, &mut dead);
            self.drain_locked(&mut st, &mut dead);
        }
        self.dead_letter(dead);
    }

    /// Read the queue's stored messages back at start.
    pub fn recover(
        &self,
        shared: &mut HashMap<u64, Arc<SharedMessage>>,
    ) -> Result<storage::Recovered, StoreError> {
        let Some(storage) = &self.storage else {
            return Ok(storage::Recovered::default());
        };
        let mut st = self.state.lock();
        let mut last_seq = None;
        let mut mixed = false;
        let ttl = st.args.message_ttl;
        let stats = storage.recover(shared, self.max_in_memory, |entry| match entry {
            RecoveredEntry::Loaded(message) => {
                last_seq = Some(message.seq);
                mixed |= message.message.expiration.is_some();
                st.ready.push_back(message, None, usize::MAX);
            }
            RecoveredEntry::Paged(paged, priority) => {
                last_seq = Some(paged.seq);
                mixed |= paged.expires_at.is_some() && ttl.is_none();
                st.ready.push_paged(paged, priority);
            }
        })?;
        st.next_seq = last_seq.map_or(0, |s| s + 1);
        st.mixed_ttl = mixed;
        if let Some(next) = st.ready.next_expiry(true) {
            self.arm(&mut st, next);
        }
        Ok(stats)
    }
}

impl Timed for Queue {
    /// Expire due messages and, for `x-expires`, the queue itself.
    fn fire(self: Arc<Self>, now: u64) -> Option<u64> {
        let mut dead = Vec::new();
        let (next, expire_queue) = {
            let mut st = self.state.lock();
            st.armed = None;
            if st.deleted {
                return None;
            }
            let mut next = self.expire(&mut st, &mut dead);
            if st.mixed_ttl {
                next = next.map(|at| at.max(now + MIXED_TTL_SWEEP_MS));
            }
            let mut expire_queue = false;
            if let Some(expires) = st.args.expires {
                let idle_until = st.last_used + expires;
                if st.consumers.is_empty() && now >= idle_until {
                    expire_queue = true;
                } else {
                    let check = if st.consumers.is_empty() {
                        idle_until
                    } else {
                        now + expires
                    };
                    next = Some(next.map_or(check, |n| n.min(check)));
                }
            }
            if let Some(at) = next {
                st.armed = Some(at);
            }
            (next, expire_queue)
        };
        self.dead_letter(dead);
        if expire_queue {
            if let Some(vhost) = self.republish.upgrade() {
                vhost.expire_queue(&self);
            }
            return None;
        }
        next
    }
}

/// The body bytes of `messages`.
fn body_bytes(messages: &[QueuedMessage]) -> usize {
    messages.iter().map(|m| m.message.body.len()).sum()
}

/// Whether the declaration set `x-overflow` (which then wins over a
/// policy's for classic queues).
fn overflow_declared(arguments: &FieldTable) -> bool {
    arguments.inner().contains_key("x-overflow")
}

/// The message's properties with its `x-delivery-count` header set (quorum
/// queues tell consumers how often a message was returned). Only the copy on
/// the wire carries it: the queue keeps, and dead-letters, the original.
fn with_delivery_count(message: &Message, count: u32) -> Properties {
    message
        .properties
        .with_header("x-delivery-count", AMQPValue::LongLongInt(count as i64))
}

#[cfg(test)]
mod tests;
