//! The exchange and queue classes: declare, delete, bind, unbind, purge.

use amq_protocol::protocol::{AMQPClass, exchange, queue};
use amq_protocol::types::ShortString;

use super::{Channel, Session, strip_cr_lf};
use crate::protocol::AmqpResult;
use crate::util::generated_name;
use crate::vhost::{BindTarget, ExchangeSpec, QueueSpec};

impl Channel {
    pub(super) fn exchange_declare(&mut self, s: &Session, d: exchange::Declare) -> AmqpResult<()> {
        let name = strip_cr_lf(d.exchange.as_str());
        let mark = s.topology_mark();
        if d.passive {
            s.vhost.check_exchange(&name)?;
        } else {
            s.vhost.declare_exchange(ExchangeSpec {
                name,
                kind: d.kind.as_str().to_string(),
                durable: d.durable,
                auto_delete: d.auto_delete,
                internal: d.internal,
                arguments: d.arguments,
            })?;
        }
        if !d.nowait {
            s.reply(
                self.id,
                AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(exchange::DeclareOk {})),
                mark,
            );
        }
        Ok(())
    }

    pub(super) fn exchange_delete(&mut self, s: &Session, d: exchange::Delete) -> AmqpResult<()> {
        let mark = s.topology_mark();
        s.vhost
            .delete_exchange(&strip_cr_lf(d.exchange.as_str()), d.if_unused)?;
        if !d.nowait {
            s.reply(
                self.id,
                AMQPClass::Exchange(exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {})),
                mark,
            );
        }
        Ok(())
    }

    pub(super) fn exchange_bind(&mut self, s: &Session, b: exchange::Bind) -> AmqpResult<()> {
        let destination = strip_cr_lf(b.destination.as_str());
        let mark = s.topology_mark();
        s.vhost.bind(
            &strip_cr_lf(b.source.as_str()),
            BindTarget::Exchange(&destination),
            b.routing_key.as_str(),
            b.arguments,
            s.connection_id(),
        )?;
        if !b.nowait {
            s.reply(
                self.id,
                AMQPClass::Exchange(exchange::AMQPMethod::BindOk(exchange::BindOk {})),
                mark,
            );
        }
        Ok(())
    }

    pub(super) fn exchange_unbind(&mut self, s: &Session, u: exchange::Unbind) -> AmqpResult<()> {
        let destination = strip_cr_lf(u.destination.as_str());
        let mark = s.topology_mark();
        s.vhost.unbind(
            &strip_cr_lf(u.source.as_str()),
            BindTarget::Exchange(&destination),
            u.routing_key.as_str(),
            &u.arguments,
            s.connection_id(),
        )?;
        if !u.nowait {
            s.reply(
                self.id,
                AMQPClass::Exchange(exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {})),
                mark,
            );
        }
        Ok(())
    }

    pub(super) fn queue_declare(&mut self, s: &Session, d: queue::Declare) -> AmqpResult<()> {
        let requested = strip_cr_lf(d.queue.as_str());
        if requested.starts_with(super::publish::REPLY_TO) {
            return self.declare_reply_to(s, requested, d.nowait);
        }
        let mark = s.topology_mark();
        let (name, messages, consumers) = if d.passive {
            let queue = s.vhost.queue(&requested)?;
            queue.check_exclusive_access(s.connection_id())?;
            let (m, c) = queue.counts();
            (requested, m, c)
        } else {
            let server_named = requested.is_empty();
            let name = if server_named {
                generated_name("amq.gen")
            } else {
                requested
            };
            let (queue, created, m, c) = s.vhost.declare_queue(
                QueueSpec {
                    name: name.clone(),
                    server_named,
                    durable: d.durable,
                    exclusive: d.exclusive,
                    auto_delete: d.auto_delete,
                    arguments: d.arguments,
                },
                s.connection_id(),
            )?;
            if created && queue.exclusive_owner.is_some() {
                s.remember_exclusive(queue);
            }
            (name, m, c)
        };
        self.last_queue = Some(name.clone());
        if !d.nowait {
            s.reply(
                self.id,
                AMQPClass::Queue(queue::AMQPMethod::DeclareOk(queue::DeclareOk {
                    queue: ShortString::from(name),
                    message_count: messages,
                    consumer_count: consumers,
                })),
                mark,
            );
        }
        Ok(())
    }

    /// Declaring a direct reply-to address is always passive: it exists
    /// (with one consumer and no messages) while its consumer does.
    fn declare_reply_to(&mut self, s: &Session, name: String, nowait: bool) -> AmqpResult<()> {
        let exists = match name.strip_prefix(crate::vhost::REPLY_TO_PREFIX) {
            None => name == super::publish::REPLY_TO,
            Some(suffix) => s.vhost.reply_consumer(suffix).is_some(),
        };
        if !exists {
            return Err(crate::amqp_err!(
                NotFound,
                "no queue '{name}' in vhost '{}'",
                s.vhost.name
            ));
        }
        self.last_queue = Some(name.clone());
        if !nowait {
            s.send(
                self.id,
                AMQPClass::Queue(queue::AMQPMethod::DeclareOk(queue::DeclareOk {
                    queue: ShortString::from(name),
                    message_count: 0,
                    consumer_count: 1,
                })),
            );
        }
        Ok(())
    }

    /// queue.bind and queue.unbind: an empty queue name means the last one
    /// declared, and then an empty routing key means its name too.
    fn bind_names(&self, queue: &str, routing_key: &str) -> AmqpResult<(String, String)> {
        let name = self.expand_queue_name(queue)?;
        let key = if strip_cr_lf(queue).is_empty() && routing_key.is_empty() {
            name.clone()
        } else {
            routing_key.to_string()
        };
        Ok((name, key))
    }

    pub(super) fn queue_bind(&mut self, s: &Session, b: queue::Bind) -> AmqpResult<()> {
        let (name, key) = self.bind_names(b.queue.as_str(), b.routing_key.as_str())?;
        let mark = s.topology_mark();
        s.vhost.bind(
            &strip_cr_lf(b.exchange.as_str()),
            BindTarget::Queue(&name),
            &key,
            b.arguments,
            s.connection_id(),
        )?;
        if !b.nowait {
            s.reply(
                self.id,
                AMQPClass::Queue(queue::AMQPMethod::BindOk(queue::BindOk {})),
                mark,
            );
        }
        Ok(())
    }

    pub(super) fn queue_unbind(&mut self, s: &Session, u: queue::Unbind) -> AmqpResult<()> {
        let (name, key) = self.bind_names(u.queue.as_str(), u.routing_key.as_str())?;
        let mark = s.topology_mark();
        s.vhost.unbind(
            &strip_cr_lf(u.exchange.as_str()),
            BindTarget::Queue(&name),
            &key,
            &u.arguments,
            s.connection_id(),
        )?;
        s.reply(
            self.id,
            AMQPClass::Queue(queue::AMQPMethod::UnbindOk(queue::UnbindOk {})),
            mark,
        );
        Ok(())
    }

    pub(super) fn queue_purge(&mut self, s: &Session, p: queue::Purge) -> AmqpResult<()> {
        let name = self.expand_queue_name(p.queue.as_str())?;
        let count = s.vhost.queue_for(&name, s.connection_id())?.purge();
        if !p.nowait {
            s.send(
                self.id,
                AMQPClass::Queue(queue::AMQPMethod::PurgeOk(queue::PurgeOk {
                    message_count: count,
                })),
            );
        }
        Ok(())
    }

    pub(super) fn queue_delete(&mut self, s: &Session, d: queue::Delete) -> AmqpResult<()> {
        let name = self.expand_queue_name(d.queue.as_str())?;
        let mark = s.topology_mark();
        let (count, deleted) =
            s.vhost
                .delete_queue(&name, s.connection_id(), d.if_unused, d.if_empty)?;
        if let Some((_, consumers)) = deleted {
            s.notify_cancelled(consumers);
        }
        if !d.nowait {
            s.reply(
                self.id,
                AMQPClass::Queue(queue::AMQPMethod::DeleteOk(queue::DeleteOk {
                    message_count: count,
                })),
                mark,
            );
        }
        Ok(())
    }
}
