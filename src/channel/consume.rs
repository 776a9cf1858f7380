//! Consuming: `basic.qos`, `consume`, `cancel`, `get`, and settling
//! deliveries with `ack`, `nack`, `reject` and `recover`.

use std::sync::{Arc, Weak};

use amq_protocol::protocol::{AMQPClass, basic};
use amq_protocol::types::ShortString;

use super::publish::REPLY_TO;
use super::{Channel, Session, Settle, settle_unacked};
use crate::access::{Permission, ResourceKind};
use crate::amqp_err;
use crate::metrics::counters;
use crate::protocol::method::put_get_ok_args;
use crate::protocol::table::{as_i128, lookup, type_name};
use crate::protocol::{AmqpError, AmqpResult};
use crate::queue::{Consumer, ConsumerRemoval, Queue};
use crate::util::generated_name;
use crate::vhost::ReplyChannel;
use std::sync::atomic::Ordering::Relaxed;

impl Channel {
    /// Tell the management API how many consumers the channel has.
    pub(super) fn count_consumers(&self) {
        let count = u16::try_from(self.consumers.len()).unwrap_or(u16::MAX);
        self.link.stats.consumer_count.store(count, Relaxed);
    }

    pub(super) fn qos(
        &mut self,
        s: &Session,
        prefetch_size: u32,
        prefetch_count: u16,
        global: bool,
    ) -> AmqpResult<()> {
        if prefetch_size != 0 {
            return Err(amqp_err!(
                NotImplemented,
                "prefetch_size!=0 ({prefetch_size})"
            ));
        }
        // As in RabbitMQ, a per-consumer qos also lifts the channel-wide limit.
        let channel_limit = if global { prefetch_count } else { 0 };
        self.link.deliveries.lock().global_prefetch = channel_limit;
        if !global {
            self.prefetch_count = prefetch_count;
        }
        let stats = &self.link.stats;
        stats.global_prefetch_count.store(channel_limit, Relaxed);
        if !global {
            stats.prefetch_count.store(prefetch_count, Relaxed);
        }
        // A larger or lifted channel limit may let waiting messages through.
        self.resume_deliveries();
        s.send(
            self.id,
            AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})),
        );
        Ok(())
    }

    pub(super) fn consume(&mut self, s: &Session, consume: basic::Consume) -> AmqpResult<()> {
        let requested = consume.consumer_tag.as_str();
        let reused = self.consumers.contains_key(requested)
            || self
                .reply
                .as_ref()
                .is_some_and(|(tag, _)| &**tag == requested);
        if reused {
            return Err(amqp_err!(
                NotAllowed,
                "attempt to reuse consumer tag '{requested}'"
            ));
        }
        if consume.queue.as_str() == REPLY_TO {
            return self.consume_replies(s, consume);
        }
        let queue_name = self.expand_queue_name(consume.queue.as_str())?;
        self.check(s, ResourceKind::Queue, &queue_name, Permission::Read)?;
        let queue = s.vhost.queue_for(&queue_name, s.connection_id())?;
        if queue.args.is_stream() {
            // RabbitMQ 3.10's checks, in its order.
            if consume.no_ack {
                return Err(not_supported_by_streams(
                    "automatic acknowledgement",
                    &queue,
                ));
            }
            if self.prefetch_count == 0 {
                return Err(amqp_err!(
                    PreconditionFailed,
                    "consumer prefetch count is not set for '{}'",
                    queue.describe()
                ));
            }
        }
        if queue.args.is_quorum() && self.link.deliveries.lock().global_prefetch != 0 {
            return Err(amqp_err!(
                NotImplemented,
                "{} does not support global qos",
                queue.describe()
            ));
        }
        let priority = match lookup(&consume.arguments, "x-priority") {
            None => 0,
            Some(value) => match as_i128(value) {
                Some(p) => p.clamp(i32::MIN as i128, i32::MAX as i128) as i32,
                None => {
                    return Err(amqp_err!(
                        PreconditionFailed,
                        "invalid arg 'x-priority' for {}: \"expected integer, got {}\"",
                        queue.describe(),
                        type_name(value)
                    ));
                }
            },
        };
        let tag: Arc<str> = if requested.is_empty() {
            Arc::from(generated_name("amq.ctag"))
        } else {
            Arc::from(requested)
        };
        let consumer = Arc::new(Consumer::new(
            tag.clone(),
            self.link.clone(),
            consume.no_ack,
            consume.exclusive,
            self.prefetch_count,
            priority,
            consume.arguments,
        ));
        let (id, nowait) = (self.id, consume.nowait);
        // consume-ok goes out under the queue lock, before the first delivery.
        queue.add_consumer(consumer.clone(), || {
            if !nowait {
                s.send(
                    id,
                    AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
                        consumer_tag: ShortString::from(tag.as_ref()),
                    })),
                );
            }
        })?;
        self.consumers.insert(tag, (queue, consumer));
        self.count_consumers();
        Ok(())
    }

    /// Direct reply-to: consuming from `amq.rabbitmq.reply-to` (without
    /// acks) gives the channel a reply address.
    fn consume_replies(&mut self, s: &Session, consume: basic::Consume) -> AmqpResult<()> {
        if !consume.no_ack {
            return Err(amqp_err!(
                PreconditionFailed,
                "reply consumer cannot acknowledge"
            ));
        }
        if self.reply.is_some() {
            return Err(amqp_err!(PreconditionFailed, "reply consumer already set"));
        }
        let requested = consume.consumer_tag.as_str();
        let tag: Arc<str> = if requested.is_empty() {
            Arc::from(generated_name("amq.ctag"))
        } else {
            Arc::from(requested)
        };
        let link = Arc::downgrade(&self.link);
        let channel: Weak<dyn ReplyChannel> = link;
        let owner = format!("{}.{}", s.connection_id(), self.id);
        let suffix = s.vhost.register_reply(channel, &owner, tag.clone());
        self.reply = Some((tag.clone(), suffix));
        if !consume.nowait {
            s.send(
                self.id,
                AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
                    consumer_tag: ShortString::from(tag.as_ref()),
                })),
            );
        }
        Ok(())
    }

    pub(super) fn cancel(&mut self, s: &Session, tag: &str, nowait: bool) {
        if self.reply.as_ref().is_some_and(|(t, _)| &**t == tag)
            && let Some((_, suffix)) = self.reply.take()
        {
            s.vhost.unregister_reply(&suffix);
        }
        if let Some((queue, consumer)) = self.consumers.remove(tag)
            && queue.remove_consumer(&consumer) == ConsumerRemoval::RemovedLastOfAutoDelete
        {
            s.delete_queue(&queue);
        }
        self.count_consumers();
        if !nowait {
            s.send(
                self.id,
                AMQPClass::Basic(basic::AMQPMethod::CancelOk(basic::CancelOk {
                    consumer_tag: ShortString::from(tag),
                })),
            );
        }
    }

    pub(super) fn get(&mut self, s: &Session, queue: &str, no_ack: bool) -> AmqpResult<()> {
        let name = self.expand_queue_name(queue)?;
        self.check(s, ResourceKind::Queue, &name, Permission::Read)?;
        let queue = s.vhost.queue_for(&name, s.connection_id())?;
        if queue.args.is_stream() {
            return Err(not_supported_by_streams("basic.get", &queue));
        }
        let link = &self.link;
        let frame_max = s.handle.frame_max;
        let got = queue.get(|message, remaining, wire| {
            let mut deliveries = link.deliveries.lock();
            let tag = deliveries.next_tag();
            let msg = message.message.clone();
            let properties = wire.unwrap_or(&msg.properties);
            s.handle.outbox.push(|out| {
                out.put_method(link.id, 60, 71, |b| {
                    put_get_ok_args(
                        b,
                        tag,
                        message.redelivered,
                        msg.exchange.as_bytes(),
                        &msg.routing_key,
                        remaining,
                    )
                });
                out.put_content(link.id, properties.raw(), &msg.body, frame_max);
            });
            let queue_type = queue.args.queue_type;
            if message.redelivered {
                counters::REDELIVERED.inc(queue_type);
                link.stats.redeliver.incr();
            }
            if no_ack {
                counters::DELIVERED_GET_AUTO_ACK.inc(queue_type);
                link.stats.get_no_ack.incr();
                Some(message)
            } else {
                counters::DELIVERED_GET_MANUAL_ACK.inc(queue_type);
                link.stats.get.incr();
                deliveries.record_get(tag, queue.clone(), message);
                None
            }
        });
        if !got {
            counters::GET_EMPTY.inc(queue.args.queue_type);
            self.link.stats.get_empty.incr();
            s.send(
                self.id,
                AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {})),
            );
        }
        Ok(())
    }

    /// `basic.ack`, `nack` and `reject`.
    pub(super) fn settle(
        &mut self,
        _s: &Session,
        tag: u64,
        multiple: bool,
        how: Settle,
    ) -> AmqpResult<()> {
        let taken = {
            let mut deliveries = self.link.deliveries.lock();
            let taken = deliveries.take(tag, multiple)?;
            if !matches!(how, Settle::Ack)
                && let Some(stream) = taken.iter().find(|u| u.queue.args.is_stream())
            {
                // The connection closes: what was taken goes with it.
                return Err(not_supported_by_streams(
                    "basic.nack and basic.reject",
                    &stream.queue,
                ));
            }
            if how == Settle::Ack {
                self.link.stats.ack.add(taken.len() as u64);
            }
            if self.tx.is_none() {
                deliveries.release(&taken);
            }
            taken
        };
        if let Some(tx) = &mut self.tx {
            // Settled at commit; the credit stays taken until then.
            tx.settle(how, taken);
            return Ok(());
        }
        settle_unacked(taken, how);
        if self.link.deliveries.lock().global_prefetch != 0 {
            self.resume_deliveries();
        }
        Ok(())
    }

    /// `basic.recover` / `recover-async`: requeue every unacked delivery.
    /// `basic.recover` answers recover-ok before the redeliveries it causes
    /// (clients such as lapin drop deliveries buffered before the ok).
    pub(super) fn recover(&mut self, s: &Session, requeue: bool, reply: bool) -> AmqpResult<()> {
        if !requeue {
            return Err(amqp_err!(NotImplemented, "requeue=false"));
        }
        if self
            .link
            .deliveries
            .lock()
            .any_unacked(|u| u.queue.args.is_stream())
        {
            // RabbitMQ fails inside its stream queue here: 541, no text.
            return Err(crate::queue::arguments::internal_error().on_connection());
        }
        if reply {
            s.send(
                self.id,
                AMQPClass::Basic(basic::AMQPMethod::RecoverOk(basic::RecoverOk {})),
            );
        }
        let taken = {
            let mut deliveries = self.link.deliveries.lock();
            let taken = deliveries.take_all();
            deliveries.release(&taken);
            taken
        };
        settle_unacked(taken, Settle::Requeue);
        Ok(())
    }
}

/// RabbitMQ's 540 for what a stream queue does not do; it closes the
/// connection.
pub(super) fn not_supported_by_streams(what: &str, queue: &Queue) -> AmqpError {
    amqp_err!(
        NotImplemented,
        "{what} not supported by stream queues {}",
        queue.describe()
    )
}
