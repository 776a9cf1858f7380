//! Broker-wide message and lifecycle counters, the ones RabbitMQ keeps in
//! `rabbit_global_counters` and `rabbitmq_prometheus` exposes as
//! `rabbitmq_global_*` and `rabbitmq_*_opened_total`.
//!
//! The publish and delivery paths bump these, so each is a plain static
//! atomic added to with `Relaxed` ordering: no lock, no allocation, nothing
//! but one `lock xadd` per event (or per batch where the path has one). Each
//! counter sits on its own cache line, so a publisher's core and a
//! consumer's core bumping different counters do not steal the line from
//! each other. A scrape reads them all; it may see one counter a few events
//! ahead of another, which Prometheus's rates tolerate.
//!
//! They count for the whole process: an application that embeds several
//! brokers sees their sum.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::queue::QueueType;

/// One monotonically increasing count, alone on its cache line.
#[derive(Debug)]
#[repr(align(64))]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }

    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Default for Counter {
    fn default() -> Self {
        Counter::new()
    }
}

/// One counter per queue type, as RabbitMQ labels them (`queue_type`).
#[derive(Debug)]
pub struct ByQueueType([Counter; 3]);

/// The queue types in the order of [`ByQueueType`], with RabbitMQ's label
/// values.
pub const QUEUE_TYPE_LABELS: [&str; 3] = [
    "rabbit_classic_queue",
    "rabbit_quorum_queue",
    "rabbit_stream_queue",
];

impl ByQueueType {
    pub const fn new() -> ByQueueType {
        ByQueueType([Counter::new(), Counter::new(), Counter::new()])
    }

    #[inline]
    pub fn add(&self, queue_type: QueueType, n: u64) {
        let i = match queue_type {
            QueueType::Classic => 0,
            QueueType::Quorum => 1,
            QueueType::Stream => 2,
        };
        self.0[i].add(n);
    }

    #[inline]
    pub fn inc(&self, queue_type: QueueType) {
        self.add(queue_type, 1);
    }

    /// The counts in the order of [`QUEUE_TYPE_LABELS`].
    pub fn get(&self) -> [u64; 3] {
        [self.0[0].get(), self.0[1].get(), self.0[2].get()]
    }
}

impl Default for ByQueueType {
    fn default() -> Self {
        ByQueueType::new()
    }
}

/// Messages published (`basic.publish` with its content complete).
pub static RECEIVED: Counter = Counter::new();
/// Of those, published on a channel in confirm mode.
pub static RECEIVED_CONFIRM: Counter = Counter::new();
/// Deliveries into queues: a message routed to three queues counts three.
pub static ROUTED: Counter = Counter::new();
/// Messages routed nowhere and not mandatory: dropped.
pub static UNROUTABLE_DROPPED: Counter = Counter::new();
/// Messages routed nowhere and mandatory: returned with `basic.return`.
pub static UNROUTABLE_RETURNED: Counter = Counter::new();
/// Publishes confirmed with `basic.ack` (nacks are not counted).
pub static CONFIRMED: Counter = Counter::new();

/// `basic.deliver` to a consumer that takes no acks.
pub static DELIVERED_CONSUME_AUTO_ACK: ByQueueType = ByQueueType::new();
/// `basic.deliver` to a consumer that acknowledges.
pub static DELIVERED_CONSUME_MANUAL_ACK: ByQueueType = ByQueueType::new();
/// `basic.get-ok` with `no-ack`.
pub static DELIVERED_GET_AUTO_ACK: ByQueueType = ByQueueType::new();
/// `basic.get-ok` awaiting an ack.
pub static DELIVERED_GET_MANUAL_ACK: ByQueueType = ByQueueType::new();
/// Deliveries (consume or get) with the redelivered flag set.
pub static REDELIVERED: ByQueueType = ByQueueType::new();
/// Deliveries acknowledged by consumers (each message of a `multiple` ack).
pub static ACKNOWLEDGED: ByQueueType = ByQueueType::new();
/// `basic.get` answered with `get-empty`.
pub static GET_EMPTY: ByQueueType = ByQueueType::new();

pub static CONNECTIONS_OPENED: Counter = Counter::new();
pub static CONNECTIONS_CLOSED: Counter = Counter::new();
pub static CHANNELS_OPENED: Counter = Counter::new();
pub static CHANNELS_CLOSED: Counter = Counter::new();
/// `queue.declare` that succeeded, new queue or not.
pub static QUEUES_DECLARED: Counter = Counter::new();
/// Queues that came into being (declared new, or restored at start).
pub static QUEUES_CREATED: Counter = Counter::new();
pub static QUEUES_DELETED: Counter = Counter::new();

/// Counts one channel as open while it lives (`rabbitmq_channels` is
/// opened minus closed).
#[derive(Debug)]
pub struct OpenChannel(());

impl OpenChannel {
    pub fn new() -> OpenChannel {
        CHANNELS_OPENED.inc();
        OpenChannel(())
    }
}

impl Default for OpenChannel {
    fn default() -> Self {
        OpenChannel::new()
    }
}

impl Drop for OpenChannel {
    fn drop(&mut self) {
        CHANNELS_CLOSED.inc();
    }
}

/// Channels open now, in the whole process.
pub fn channels_open() -> u64 {
    CHANNELS_OPENED.get().saturating_sub(CHANNELS_CLOSED.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_do_not_share_cache_lines() {
        assert_eq!(std::mem::align_of::<Counter>(), 64);
        assert_eq!(std::mem::size_of::<ByQueueType>(), 3 * 64);
    }

    #[test]
    fn by_queue_type_counts_each_type_apart() {
        let counts = ByQueueType::new();
        counts.add(QueueType::Quorum, 2);
        counts.inc(QueueType::Classic);
        assert_eq!(counts.get(), [1, 2, 0]);
    }
}
