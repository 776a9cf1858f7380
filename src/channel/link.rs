//! The part of a channel that other connections' tasks touch: delivery tags,
//! unacknowledged deliveries and the prefetch credit that gates them.
//!
//! A queue delivering to a consumer locks the consumer's [`Deliveries`],
//! checks credit, takes the next delivery tag, records the delivery and
//! writes the frames to the consumer's connection outbox, all in one short
//! critical section. The owning connection task takes the same lock to
//! settle acks, nacks and rejects.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::amqp_err;
use crate::client::handle::{ConnEvent, ConnectionHandle};
use crate::message::{Message, QueuedMessage};
use crate::metrics::counters;
use crate::protocol::method::put_deliver_args;
use crate::protocol::{AmqpResult, Properties};
use crate::queue::{Consumer, ConsumerChannel, Delivery, Queue};
use crate::stats::{ChannelStats, ChannelView, Totals};
use crate::util::now_millis;
use crate::vhost::{ReplyChannel, RoomWait};

/// One open channel as seen from outside its connection.
#[derive(Debug)]
pub struct ChannelLink {
    pub id: u16,
    pub conn: Arc<ConnectionHandle>,
    pub deliveries: Mutex<Deliveries>,
    /// Message counters and what the management API lists of the channel.
    pub stats: ChannelStats,
}

impl ChannelLink {
    pub fn new(id: u16, conn: Arc<ConnectionHandle>, totals: Arc<Totals>) -> Self {
        let stats = ChannelStats::new(id, conn.vhost.clone(), totals);
        ChannelLink {
            id,
            conn,
            deliveries: Mutex::new(Deliveries::default()),
            stats,
        }
    }

    /// Write a `basic.deliver` with its content and record it as unacked.
    /// A message for a consumer without acks is settled at once and handed
    /// back, so the queue can drop its disk copy.
    fn deliver_locked(
        &self,
        deliveries: &mut Deliveries,
        consumer: &Arc<Consumer>,
        queue: &Arc<Queue>,
        message: QueuedMessage,
        wire: Option<&Properties>,
    ) -> Option<QueuedMessage> {
        let tag = deliveries.next_tag();
        let msg = &message.message;
        let properties = wire.unwrap_or(&msg.properties);
        self.write_deliver(&consumer.tag, tag, message.redelivered, msg, properties);
        let queue_type = queue.args.queue_type;
        if message.redelivered {
            counters::REDELIVERED.inc(queue_type);
            self.stats.redeliver.incr();
        }
        if consumer.no_ack {
            counters::DELIVERED_CONSUME_AUTO_ACK.inc(queue_type);
            self.stats.deliver_no_ack.incr();
            return Some(message);
        }
        counters::DELIVERED_CONSUME_MANUAL_ACK.inc(queue_type);
        self.stats.deliver.incr();
        consumer.add_unacked();
        deliveries.global_unacked += 1;
        deliveries.unacked.push_back(Unacked {
            tag,
            queue: queue.clone(),
            message,
            consumer: Some(consumer.clone()),
            delivered_at: now_millis(),
        });
        None
    }
}

impl ConsumerChannel for ChannelLink {
    fn has_credit(&self, consumer: &Consumer) -> bool {
        self.deliveries.lock().has_credit(consumer, &self.conn)
    }

    fn deliver(
        &self,
        consumer: &Arc<Consumer>,
        queue: &Arc<Queue>,
        message: QueuedMessage,
        wire: Option<&Properties>,
    ) -> Delivery {
        let mut deliveries = self.deliveries.lock();
        if !deliveries.has_credit(consumer, &self.conn) {
            return Delivery::Refused(message);
        }
        match self.deliver_locked(&mut deliveries, consumer, queue, message, wire) {
            Some(settled) => Delivery::Settled(settled),
            None => Delivery::Unacked,
        }
    }

    fn owner(&self) -> Option<(u64, u16)> {
        Some((self.conn.id, self.id))
    }

    fn cancelled_by_broker(&self, consumer: &Consumer) {
        self.conn.send(ConnEvent::ConsumerCancelled {
            channel: self.id,
            tag: consumer.tag.clone(),
        });
    }
}

impl ChannelView for ChannelLink {
    fn stats(&self) -> &ChannelStats {
        &self.stats
    }

    fn unacked(&self) -> u32 {
        self.deliveries.lock().unacked_count() as u32
    }
}

impl ReplyChannel for ChannelLink {
    /// Deliver a direct reply to this channel's reply-to consumer: no ack,
    /// no prefetch, just the next delivery tag.
    fn deliver_reply(&self, tag: &str, message: &Message) -> Option<RoomWait> {
        {
            let mut deliveries = self.deliveries.lock();
            if !deliveries.open {
                return None;
            }
            let delivery_tag = deliveries.next_tag();
            self.write_deliver(tag, delivery_tag, false, message, &message.properties);
        }
        if !self.conn.outbox.is_congested() {
            return None;
        }
        let outbox = self.conn.outbox.clone();
        Some(RoomWait::new(async move { outbox.wait_for_room().await }))
    }
}

impl ChannelLink {
    /// Queue a `basic.deliver` and its content for the socket.
    fn write_deliver(
        &self,
        consumer_tag: &str,
        delivery_tag: u64,
        redelivered: bool,
        message: &Message,
        properties: &Properties,
    ) {
        let frame_max = self.conn.frame_max;
        self.conn.outbox.push(|out| {
            out.put_method(self.id, 60, 60, |b| {
                put_deliver_args(
                    b,
                    consumer_tag.as_bytes(),
                    delivery_tag,
                    redelivered,
                    message.exchange.as_bytes(),
                    &message.routing_key,
                )
            });
            out.put_content(self.id, properties.raw(), &message.body, frame_max);
        });
    }
}

/// A delivery awaiting `basic.ack`, `basic.nack` or `basic.reject`.
#[derive(Debug)]
pub struct Unacked {
    pub tag: u64,
    pub queue: Arc<Queue>,
    pub message: QueuedMessage,
    /// None for `basic.get`, which no prefetch limits.
    pub consumer: Option<Arc<Consumer>>,
    /// When it was delivered (milliseconds since the epoch), for the consumer timeout.
    pub delivered_at: u64,
}

/// Delivery bookkeeping of one channel.
#[derive(Debug)]
pub struct Deliveries {
    /// Cleared when the channel closes; a closed channel has no credit.
    pub open: bool,
    next_tag: u64,
    /// Ordered by delivery tag.
    unacked: VecDeque<Unacked>,
    /// `basic.qos` with global=true: a limit shared by the channel's consumers.
    pub global_prefetch: u16,
    global_unacked: u32,
}

impl Default for Deliveries {
    fn default() -> Self {
        Deliveries {
            open: true,
            next_tag: 1,
            unacked: VecDeque::new(),
            global_prefetch: 0,
            global_unacked: 0,
        }
    }
}

impl Deliveries {
    /// The next delivery tag (tags start at 1 on every channel).
    pub fn next_tag(&mut self) -> u64 {
        let tag = self.next_tag;
        self.next_tag += 1;
        tag
    }

    /// Whether `consumer` may receive one more message now.
    pub fn has_credit(&self, consumer: &Consumer, conn: &ConnectionHandle) -> bool {
        if !self.open || !consumer.below_prefetch() {
            return false;
        }
        if !consumer.no_ack
            && self.global_prefetch != 0
            && self.global_unacked >= self.global_prefetch as u32
        {
            return false;
        }
        conn.outbox.has_room()
    }

    /// Record a `basic.get` delivery that needs an ack.
    pub fn record_get(&mut self, tag: u64, queue: Arc<Queue>, message: QueuedMessage) {
        self.unacked.push_back(Unacked {
            tag,
            queue,
            message,
            consumer: None,
            delivered_at: now_millis(),
        });
    }

    /// The oldest unacked delivery (consumer or basic.get): (when, its
    /// queue), for the consumer timeout.
    pub fn oldest_delivery(&self) -> Option<(u64, &Arc<Queue>)> {
        self.unacked.front().map(|u| (u.delivered_at, &u.queue))
    }

    /// Whether some outstanding delivery matches `pred`.
    pub fn any_unacked(&self, pred: impl Fn(&Unacked) -> bool) -> bool {
        self.unacked.iter().any(pred)
    }

    pub fn unacked_count(&self) -> usize {
        self.unacked.len()
    }

    /// Take the deliveries an ack/nack/reject names, with RabbitMQ's rules:
    /// tag 0 with `multiple` means all; otherwise the tag must be
    /// outstanding, and `multiple` takes every tag up to it. An unknown tag
    /// takes nothing and is a 406.
    pub fn take(&mut self, tag: u64, multiple: bool) -> AmqpResult<Vec<Unacked>> {
        if tag == 0 && multiple {
            return Ok(self.unacked.drain(..).collect());
        }
        let index = self.unacked.binary_search_by_key(&tag, |u| u.tag);
        match index {
            Ok(i) if multiple => Ok(self.unacked.drain(..=i).collect()),
            Ok(i) => Ok(self.unacked.remove(i).into_iter().collect()),
            Err(_) => Err(amqp_err!(PreconditionFailed, "unknown delivery tag {tag}")),
        }
    }

    /// Take every outstanding delivery (channel close, recover).
    pub fn take_all(&mut self) -> Vec<Unacked> {
        self.unacked.drain(..).collect()
    }

    /// Return credit for settled deliveries.
    pub fn release(&mut self, settled: &[Unacked]) {
        for u in settled {
            if let Some(consumer) = &u.consumer {
                consumer.sub_unacked();
                self.global_unacked = self.global_unacked.saturating_sub(1);
            }
        }
    }

    /// Put deliveries back as unacked (a rolled-back transaction's acks).
    pub fn restore(&mut self, items: Vec<Unacked>) {
        for item in items {
            let at = self.unacked.partition_point(|u| u.tag < item.tag);
            self.unacked.insert(at, item);
        }
    }
}
