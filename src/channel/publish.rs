//! `basic.publish` once its content is complete: checks, routing, mandatory
//! returns and publisher confirms.

use std::sync::Arc;

use bytes::Bytes;

use super::confirm::{Confirms, Outcome};
use super::{Channel, Session};
use crate::access::{AuthUser, Permission, ResourceKind, tag};
use crate::amqp_err;
use crate::message::{Message, ROUTING_HEADERS, SharedMessage};
use crate::metrics::counters;
use crate::protocol::method::{Publish, put_return_args};
use crate::protocol::properties::Field;
use crate::protocol::{AmqpResult, Properties, ReplyCode};
use crate::queue::{Persist, Queue};
use crate::vhost::{REPLY_TO_PREFIX, Target};

/// The pseudo-queue of direct reply-to.
pub(super) const REPLY_TO: &str = "amq.rabbitmq.reply-to";
use amq_protocol::protocol::{AMQPClass, confirm};

impl Channel {
    pub(super) fn complete_publish(
        &mut self,
        s: &Session,
        publish: Publish,
        properties: Properties,
        body: Bytes,
    ) -> AmqpResult<()> {
        self.publish_checked(s, publish, properties, body)
            .map_err(|e| e.in_method(60, 40))
    }

    fn publish_checked(
        &mut self,
        s: &Session,
        publish: Publish,
        properties: Properties,
        body: Bytes,
    ) -> AmqpResult<()> {
        counters::RECEIVED.inc();
        if self.confirms.is_some() {
            counters::RECEIVED_CONFIRM.inc();
        }
        if publish.immediate {
            return Err(amqp_err!(NotImplemented, "immediate=true"));
        }
        let (properties, extra_keys) = match properties.has_routing_headers() {
            false => (properties, Ok(Vec::new())),
            true => sender_selected(properties),
        };
        // Cached per channel: a repeated exchange costs a comparison.
        self.permissions.check(
            s.asker(),
            ResourceKind::Exchange,
            &publish.exchange,
            Permission::Write,
        )?;
        let mut queues = std::mem::take(&mut self.route_buf);
        queues.clear();
        let route = s.vhost.route(
            &publish.exchange,
            &publish.routing_key,
            extra_keys.as_deref().unwrap_or_default(),
            &properties,
            &mut queues,
        )?;
        if route.topic {
            self.permissions.check_topic(
                s.asker(),
                &publish.exchange,
                &publish.routing_key,
                Permission::Write,
            )?;
        }
        let properties = self.fast_reply_to(properties)?;
        check_user_id(&properties, &s.user)?;
        check_expiration(&properties)?;
        let extra_keys =
            extra_keys.map_err(|why| amqp_err!(PreconditionFailed, "invalid message: {why}"))?;
        let mut message = Message::new(
            route.exchange,
            publish.routing_key.clone(),
            properties,
            body,
        );
        message.extra_keys = extra_keys.into_boxed_slice();
        self.link.stats.publish.incr();
        // A message that queues or a delayed-message exchange keep may wait
        // there long after the read buffer it came in has been used up.
        if match route.target {
            Target::Queues => !queues.is_empty(),
            Target::Delayed(..) => true,
            Target::Reply(_) => false,
        } {
            message.detach();
        }
        let outcome = match route.target {
            Target::Queues => {
                share_if_fanned_out(s, &mut message, &queues);
                let message = Arc::new(message);
                if let Some(tx) = &mut self.tx {
                    tx.publish(message, queues.clone(), publish.mandatory);
                    self.route_buf = queues;
                    return Ok(());
                }
                self.deliver_routed(s, &message, &queues, publish.mandatory)
            }
            // Held messages and replies are not transactional.
            Target::Delayed(delayer, delay) => match delayer.hold(Arc::new(message), delay) {
                true => Outcome::Unsynced,
                false => Outcome::Ack,
            },
            Target::Reply(consumer) => {
                if let Some(consumer) = consumer
                    && let Some(channel) = consumer.channel.upgrade()
                    && let Some(wait) = channel.deliver_reply(&consumer.tag, &message)
                {
                    // The requester does not read as fast as we reply: as
                    // with a consumer's outbox, the sender is made to wait.
                    self.reply_room = Some(wait);
                }
                // RabbitMQ routes a reply to no queue, so a mandatory one
                // is also returned, delivered or not.
                if publish.mandatory {
                    self.basic_return(s, &message, ReplyCode::NoRoute, "NO_ROUTE");
                }
                Outcome::Ack
            }
        };
        if let Some(confirms) = &mut self.confirms {
            let seq = confirms.next_seq();
            confirms.record(seq, outcome);
            self.link.stats.confirm.incr();
        }
        self.route_buf = queues;
        Ok(())
    }

    /// Direct reply-to: a request whose reply-to is `amq.rabbitmq.reply-to`
    /// gets this channel's reply address instead (its reply consumer must exist).
    fn fast_reply_to(&self, properties: Properties) -> AmqpResult<Properties> {
        if properties.reply_to() != Some(REPLY_TO.as_bytes()) {
            return Ok(properties);
        }
        let Some((_, suffix)) = &self.reply else {
            return Err(amqp_err!(
                PreconditionFailed,
                "fast reply consumer does not exist"
            ));
        };
        let mut rewrite = properties.rewrite();
        let address = format!("{REPLY_TO_PREFIX}{suffix}");
        rewrite.set_short_string(Field::ReplyTo, address.as_bytes());
        Ok(rewrite.finish())
    }

    /// Hand a routed message to its queues, or return it when it is
    /// mandatory and went nowhere. Returns what its confirm must say: nack
    /// when a queue refused it (`x-overflow` reject-publish) or could not
    /// store it; wait for the disk when a queue stored it; ack otherwise.
    pub(super) fn deliver_routed(
        &self,
        s: &Session,
        message: &Arc<Message>,
        queues: &[Arc<Queue>],
        mandatory: bool,
    ) -> Outcome {
        if queues.is_empty() {
            if mandatory {
                counters::UNROUTABLE_RETURNED.inc();
                self.link.stats.return_unroutable.incr();
                self.basic_return(s, message, ReplyCode::NoRoute, "NO_ROUTE");
            } else {
                counters::UNROUTABLE_DROPPED.inc();
                self.link.stats.drop_unroutable.incr();
            }
            return Outcome::Ack;
        }
        counters::ROUTED.add(queues.len() as u64);
        let mut outcome = Outcome::Ack;
        for queue in queues {
            let published = queue.publish(message.clone());
            if published.rejected || published.persist == Persist::Failed {
                outcome = Outcome::Nack;
            } else if published.persist == Persist::Stored && outcome == Outcome::Ack {
                outcome = Outcome::Unsynced;
            }
        }
        outcome
    }

    fn basic_return(&self, s: &Session, message: &Message, code: ReplyCode, text: &str) {
        let frame_max = s.handle.frame_max;
        s.handle.outbox.push(|out| {
            out.put_method(self.id, 60, 50, |b| {
                put_return_args(
                    b,
                    code,
                    text,
                    message.exchange.as_bytes(),
                    &message.routing_key,
                )
            });
            out.put_content(self.id, message.properties.raw(), &message.body, frame_max);
        });
    }

    /// `confirm.select`.
    pub(super) fn confirm_select(&mut self, s: &Session, nowait: bool) -> AmqpResult<()> {
        if self.tx.is_some() {
            return Err(amqp_err!(
                PreconditionFailed,
                "cannot switch from tx to confirm mode"
            ));
        }
        if self.confirms.is_none() {
            self.confirms = Some(Confirms::default());
            self.link
                .stats
                .confirm_mode
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        if !nowait {
            s.send(
                self.id,
                AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})),
            );
        }
        Ok(())
    }

    /// At the end of a batch of input: request one sync for the stored
    /// publishes of the batch, then send the confirmations that are ready.
    pub fn flush_confirms(&mut self, s: &Session) {
        if let Some(confirms) = &mut self.confirms
            && confirms.has_unsent()
            && !self.closing
        {
            let syncer = &s.broker.store.syncer;
            confirms.request_sync(|| syncer.request());
            // Already durable (a flush overtook us, or syncing is off).
            confirms.settle_durable(syncer.durable(), |t| syncer.failed(t));
            s.handle.outbox.push(|out| confirms.flush(self.id, out));
        }
    }

    /// The flusher reached `durable`: confirm what it covers.
    pub fn on_durable(&mut self, s: &Session, durable: u64) {
        if let Some(confirms) = &mut self.confirms {
            let syncer = &s.broker.store.syncer;
            confirms.settle_durable(durable, |t| syncer.failed(t));
        }
        self.flush_confirms(s);
    }

    /// Whether a confirm waits for the disk.
    pub fn waiting_for_disk(&self) -> bool {
        self.confirms
            .as_ref()
            .is_some_and(Confirms::waiting_for_disk)
    }
}

/// A persistent message routed to several durable queues is written once to
/// the shared tree; each queue then stores a reference to it.
fn share_if_fanned_out(s: &Session, message: &mut Message, queues: &[Arc<Queue>]) {
    if !message.is_persistent() {
        return;
    }
    let holders = queues.iter().filter(|q| q.stores_persistent()).count();
    if holders < 2 {
        return;
    }
    let store = &s.broker.store;
    let id = store.next_id();
    if store.put_shared(id, crate::store::codec::encode_message(message, None)) {
        message.shared = Some(Arc::new(SharedMessage::new(id, holders)));
    }
}

/// Sender-selected distribution: the `CC` and `BCC` headers name more
/// routing keys, and `BCC` is removed before routing, so neither headers
/// exchanges nor consumers see it. A header of the wrong type is an error
/// once the publish's other checks pass.
fn sender_selected(properties: Properties) -> (Properties, Result<Vec<Bytes>, String>) {
    let mut rewrite = properties.rewrite();
    let headers = rewrite.headers();
    let keys = crate::message::header_routes(&headers.decoded_only(&ROUTING_HEADERS));
    if keys.is_err() || !headers.contains("BCC") {
        return (properties, keys);
    }
    headers.remove("BCC");
    (rewrite.finish(), keys)
}

/// A message may claim only the authenticated user as its user-id, unless
/// that user has the `impersonator` tag.
#[inline]
fn check_user_id(properties: &Properties, user: &AuthUser) -> AmqpResult<()> {
    match properties.user_id() {
        Some(claimed) if claimed != user.name.as_bytes() && !user.has_tag(tag::IMPERSONATOR) => {
            Err(amqp_err!(
                PreconditionFailed,
                "user_id property set to '{}' but authenticated user was '{}'",
                String::from_utf8_lossy(claimed),
                user.name
            ))
        }
        _ => Ok(()),
    }
}

/// The expiration property must be an integer of milliseconds between 0 and
/// ten years (RabbitMQ's rule); the error text is RabbitMQ's.
#[inline]
pub(crate) fn check_expiration(properties: &Properties) -> AmqpResult<Option<u64>> {
    let Some(raw) = properties.expiration() else {
        return Ok(None);
    };
    crate::message::parse_expiration(raw)
        .map(Some)
        .map_err(|why| {
            amqp_err!(
                PreconditionFailed,
                "invalid expiration '{}': {why}",
                String::from_utf8_lossy(raw)
            )
        })
}
