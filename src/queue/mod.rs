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

pub mod consumer;
pub mod ready;

use std::sync::Arc;

use amq_protocol::types::FieldTable;
use parking_lot::Mutex;

use crate::amqp_err;
use crate::message::{Message, QueuedMessage};
use crate::protocol::AmqpResult;
use crate::util::now_millis;
pub use consumer::Consumer;
use ready::ReadyQueue;

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
}

/// What removing a consumer left behind.
#[derive(Debug, PartialEq, Eq)]
pub enum ConsumerRemoval {
    NotFound,
    Removed,
    /// The last consumer of an auto-delete queue went: delete the queue.
    RemovedLastOfAutoDelete,
}

impl Queue {
    pub fn new(
        name: Arc<str>,
        vhost: Arc<str>,
        durable: bool,
        auto_delete: bool,
        exclusive_owner: Option<u64>,
        arguments: FieldTable,
    ) -> Self {
        Queue {
            name,
            vhost,
            durable,
            auto_delete,
            exclusive_owner,
            message_ttl: crate::protocol::table::lookup(&arguments, "x-message-ttl")
                .and_then(crate::protocol::table::as_i128)
                .and_then(|ttl| u64::try_from(ttl).ok()),
            arguments,
            state: Mutex::new(QueueState::default()),
        }
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
        Self::expire_head(&mut st);
        st.ready.len() as u32
    }

    pub fn consumer_count(&self) -> u32 {
        self.state.lock().consumers.len() as u32
    }

    /// Ready and consumer counts at once.
    pub fn counts(&self) -> (u32, u32) {
        let mut st = self.state.lock();
        Self::expire_head(&mut st);
        (st.ready.len() as u32, st.consumers.len() as u32)
    }

    pub fn is_deleted(&self) -> bool {
        self.state.lock().deleted
    }

    /// Enqueue a routed message and deliver what consumers can take.
    pub fn publish(self: &Arc<Self>, message: Arc<Message>) {
        let mut st = self.state.lock();
        if st.deleted {
            return;
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        // The shorter of the queue's TTL and the message's own.
        let ttl = match (self.message_ttl, message.expiration) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let expires_at = ttl.map(|ttl| now_millis().saturating_add(ttl));
        st.ready.push_back(QueuedMessage {
            seq,
            message,
            redelivered: false,
            expires_at,
        });
        self.drain_locked(&mut st);
        // A TTL of 0 means: deliver now or never.
        if ttl == Some(0) && st.ready.back().is_some_and(|m| m.seq == seq) {
            st.ready.pop_back();
        }
    }

    /// Drop expired messages from the head of the queue.
    fn expire_head(st: &mut QueueState) {
        let now = now_millis();
        while st
            .ready
            .front()
            .is_some_and(|m| m.expires_at.is_some_and(|at| at <= now))
        {
            st.ready.pop_front();
        }
    }

    /// Deliver ready messages to consumers with credit.
    pub fn drain(self: &Arc<Self>) {
        let mut st = self.state.lock();
        self.drain_locked(&mut st);
    }

    fn drain_locked(self: &Arc<Self>, st: &mut QueueState) {
        let QueueState {
            ready,
            consumers,
            next_consumer,
            unacked,
            ..
        } = st;
        let count = consumers.len();
        if count == 0 {
            return;
        }
        let now = now_millis();
        'messages: while let Some(head) = ready.front() {
            if head.expires_at.is_some_and(|at| at <= now) {
                ready.pop_front();
                continue;
            }
            for step in 0..count {
                let index = (*next_consumer + step) % count;
                let consumer = &consumers[index];
                let link = &consumer.channel;
                let mut deliveries = link.deliveries.lock();
                if !deliveries.has_credit(consumer, &link.conn) {
                    continue;
                }
                let Some(message) = ready.pop_front() else {
                    break 'messages;
                };
                if !consumer.no_ack {
                    *unacked += 1;
                }
                link.deliver(&mut deliveries, consumer, self, message);
                *next_consumer = index + 1;
                continue 'messages;
            }
            // Nobody has credit: the next ack or a writable socket resumes us.
            break;
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

    /// Remove the consumer with `tag` on `channel`.
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
    /// stay in order on the channel). `deliver` returns whether the message
    /// awaits an ack. Returns false when the queue was empty.
    pub fn get(&self, deliver: impl FnOnce(QueuedMessage, u32) -> bool) -> bool {
        let mut st = self.state.lock();
        Self::expire_head(&mut st);
        let Some(message) = st.ready.pop_front() else {
            return false;
        };
        let remaining = st.ready.len() as u32;
        if deliver(message, remaining) {
            st.unacked += 1;
        }
        true
    }

    /// Acknowledged deliveries leave the queue for good; the credit they
    /// free lets more messages out.
    pub fn ack(self: &Arc<Self>, messages: Vec<QueuedMessage>) {
        let mut st = self.state.lock();
        st.unacked = st.unacked.saturating_sub(messages.len());
        self.drain_locked(&mut st);
    }

    /// Rejected deliveries without requeue are dropped.
    pub fn discard(self: &Arc<Self>, messages: Vec<QueuedMessage>) {
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
        st.ready.clear();
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

    /// Mark the queue deleted: drop its messages and hand back its consumers
    /// (whose channels must be told). Returns the ready count it had.
    pub fn mark_deleted(&self) -> (u32, Vec<Arc<Consumer>>) {
        let mut st = self.state.lock();
        st.deleted = true;
        let count = st.ready.len() as u32;
        st.ready.clear();
        (count, std::mem::take(&mut st.consumers))
    }
}
