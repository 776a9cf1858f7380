//! `basic.publish` once its content is complete: checks, routing, mandatory
//! returns and publisher confirms.

use std::sync::Arc;

use bytes::Bytes;

use super::confirm::{Confirms, Outcome};
use super::{Channel, Session};
use crate::amqp_err;
use crate::message::Message;
use crate::protocol::method::{Publish, put_return_args};
use crate::protocol::{AmqpResult, Properties, ReplyCode};
use crate::queue::Queue;
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
        if publish.immediate {
            return Err(amqp_err!(NotImplemented, "immediate=true"));
        }
        let mut queues = std::mem::take(&mut self.route_buf);
        queues.clear();
        let exchange = s.vhost.route(
            &publish.exchange,
            &publish.routing_key,
            &properties,
            &mut queues,
        )?;
        check_user_id(&properties, &s.handle.user)?;
        check_expiration(&properties)?;
        let message = Arc::new(Message::new(
            exchange,
            publish.routing_key.clone(),
            properties,
            body,
        ));
        if let Some(tx) = &mut self.tx {
            tx.publish(message, queues.clone(), publish.mandatory);
            self.route_buf = queues;
            return Ok(());
        }
        let seq = self.confirms.as_mut().map(Confirms::next_seq);
        self.deliver_routed(s, &message, &queues, publish.mandatory);
        if let (Some(confirms), Some(seq)) = (&mut self.confirms, seq) {
            confirms.record(seq, Outcome::Ack);
        }
        self.route_buf = queues;
        Ok(())
    }

    /// Hand a routed message to its queues, or return it when it is
    /// mandatory and went nowhere.
    pub(super) fn deliver_routed(
        &self,
        s: &Session,
        message: &Arc<Message>,
        queues: &[Arc<Queue>],
        mandatory: bool,
    ) {
        if queues.is_empty() {
            if mandatory {
                self.basic_return(s, message, ReplyCode::NoRoute, "NO_ROUTE");
            }
            return;
        }
        for queue in queues {
            queue.publish(message.clone());
        }
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
        }
        if !nowait {
            s.send(
                self.id,
                AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})),
            );
        }
        Ok(())
    }

    /// Send the confirmations that are ready (once per batch of input).
    pub fn flush_confirms(&mut self, s: &Session) {
        if let Some(confirms) = &mut self.confirms {
            if confirms.has_unsent() && !self.closing {
                s.handle.outbox.push(|out| confirms.flush(self.id, out));
            }
        }
    }
}

/// A message may claim only the authenticated user as its user-id.
fn check_user_id(properties: &Properties, user: &str) -> AmqpResult<()> {
    match properties.user_id() {
        Some(claimed) if claimed != user.as_bytes() => Err(amqp_err!(
            PreconditionFailed,
            "user_id property set to '{}' but authenticated user was '{user}'",
            String::from_utf8_lossy(claimed)
        )),
        _ => Ok(()),
    }
}

/// The expiration property must be an integer of milliseconds between 0 and
/// ten years (RabbitMQ's rule); the error text is RabbitMQ's.
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
