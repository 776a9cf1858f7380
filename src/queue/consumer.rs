//! A consumer: a subscription of one channel to one queue, and what a queue
//! needs of that channel ([`ConsumerChannel`]).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use amq_protocol::types::FieldTable;

use super::Queue;
use crate::message::QueuedMessage;
use crate::protocol::Properties;

/// The channel a consumer belongs to, as its queue sees it: implemented by
/// the channel's link, which holds the channel's delivery tags, unacked
/// deliveries and prefetch credit, and writes to the connection's outbox.
///
/// A queue calls it with its own lock held (lock order: queue, then the
/// channel's deliveries, then the outbox). This is the delivery hot path:
/// a credit check and a delivery per message, nothing allocated between.
pub trait ConsumerChannel: Send + Sync + fmt::Debug {
    /// Whether `consumer` may receive one more message now: its own
    /// prefetch, the channel's global prefetch, and room in the outbox.
    fn has_credit(&self, consumer: &Consumer) -> bool;

    /// Deliver `message` to `consumer`: check its credit again under the
    /// channel's delivery lock, give the message the channel's next
    /// delivery tag, record it as unacked unless the consumer takes no
    /// acks, and write it out with `wire` as its properties when given (a
    /// quorum queue's `x-delivery-count`), else its own.
    fn deliver(
        &self,
        consumer: &Arc<Consumer>,
        queue: &Arc<Queue>,
        message: QueuedMessage,
        wire: Option<&Properties>,
    ) -> Delivery;

    /// The connection id and channel number, for the management API's
    /// consumer listings (None for a channel that is no client's).
    fn owner(&self) -> Option<(u64, u16)> {
        None
    }

    /// The broker cancelled `consumer` (its queue was deleted or expired):
    /// tell the client, on its connection's own task.
    fn cancelled_by_broker(&self, consumer: &Consumer);
}

/// What [`ConsumerChannel::deliver`] did with a message.
#[derive(Debug)]
pub enum Delivery {
    /// Delivered; it awaits an ack.
    Unacked,
    /// Delivered to a consumer that takes no acks: settled at once, and
    /// handed back so the queue can drop its disk copy.
    Settled(QueuedMessage),
    /// Not delivered: the consumer's credit ran out since the queue asked
    /// (another queue delivered to the same channel). Handed back untouched.
    Refused(QueuedMessage),
}

/// What `basic.consume` created. The queue keeps it in its consumer list; the
/// channel keeps it under its tag.
#[derive(Debug)]
pub struct Consumer {
    pub tag: Arc<str>,
    pub channel: Arc<dyn ConsumerChannel>,
    pub no_ack: bool,
    pub exclusive: bool,
    /// Per-consumer prefetch, fixed when the consumer was created (0 = none).
    pub prefetch: u16,
    /// `x-priority`: higher goes first.
    pub priority: i32,
    pub arguments: FieldTable,
    /// Deliveries awaiting ack. Changed only under the channel's delivery lock.
    unacked: AtomicU32,
}

impl Consumer {
    pub fn new(
        tag: Arc<str>,
        channel: Arc<dyn ConsumerChannel>,
        no_ack: bool,
        exclusive: bool,
        prefetch: u16,
        priority: i32,
        arguments: FieldTable,
    ) -> Self {
        Consumer {
            tag,
            channel,
            no_ack,
            exclusive,
            prefetch,
            priority,
            arguments,
            unacked: AtomicU32::new(0),
        }
    }

    pub fn unacked(&self) -> u32 {
        self.unacked.load(Ordering::Relaxed)
    }

    /// Whether its own prefetch allows one more delivery.
    pub fn below_prefetch(&self) -> bool {
        self.no_ack || self.prefetch == 0 || self.unacked() < self.prefetch as u32
    }

    pub(crate) fn add_unacked(&self) {
        self.unacked.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn sub_unacked(&self) {
        // Saturating: a settle can never outnumber deliveries, but never wrap.
        let _ = self
            .unacked
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
    }
}
