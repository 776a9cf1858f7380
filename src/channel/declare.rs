//! The exchange and queue classes: declare, delete, bind, unbind, purge,
//! each with the permission checks RabbitMQ makes, where it makes them.

use amq_protocol::protocol::{AMQPClass, exchange, queue};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};

use super::consume::not_supported_by_streams;
use super::{Channel, Session, strip_cr_lf};
use crate::access::limits::exceeded;
use crate::access::{Permission, PermissionCache, ResourceKind, VHostLimit};
use crate::amqp_err;
use crate::protocol::AmqpResult;
use crate::protocol::table::lookup;
use crate::util::generated_name;
use crate::vhost::{BindTarget, DeclareGuard, ExchangeSpec, QueueSpec, VHost};

/// The checks a declaration makes mid-way, for a channel's user.
struct Guard<'a> {
    permissions: &'a mut PermissionCache,
    s: &'a Session,
}

impl Guard<'_> {
    fn check(&mut self, kind: ResourceKind, name: &str, permission: Permission) -> AmqpResult<()> {
        self.permissions
            .check(self.s.asker(), kind, name.as_bytes(), permission)
    }
}

impl DeclareGuard for Guard<'_> {
    fn configure_exchange(&mut self, name: &str) -> AmqpResult<()> {
        self.check(ResourceKind::Exchange, name, Permission::Configure)
    }

    fn configure_queue(&mut self, name: &str) -> AmqpResult<()> {
        self.check(ResourceKind::Queue, name, Permission::Configure)
    }

    fn creating_queue(&mut self, name: &str, queues: usize) -> AmqpResult<()> {
        let vhost = &self.s.vhost.name;
        let max = self
            .s
            .broker
            .access
            .vhost_limit(vhost, VHostLimit::MaxQueues);
        match exceeded(max, queues) {
            None => Ok(()),
            Some(limit) => Err(amqp_err!(
                PreconditionFailed,
                "cannot declare queue '{name}': queue limit in vhost '{vhost}' ({limit}) is reached"
            )),
        }
    }

    fn alternate_exchange(&mut self, exchange: &str, alternate: &str) -> AmqpResult<()> {
        self.check(ResourceKind::Exchange, exchange, Permission::Read)?;
        self.check(ResourceKind::Exchange, alternate, Permission::Write)
    }

    fn dead_letter_exchange(&mut self, queue: &str, exchange: &str) -> AmqpResult<()> {
        self.check(ResourceKind::Queue, queue, Permission::Read)?;
        self.check(ResourceKind::Exchange, exchange, Permission::Write)
    }
}

impl Channel {
    pub(super) fn exchange_declare(&mut self, s: &Session, d: exchange::Declare) -> AmqpResult<()> {
        let name = strip_cr_lf(d.exchange.as_str());
        let mark = s.topology_mark();
        if d.passive {
            s.vhost.check_exchange(&name)?;
        } else {
            let spec = ExchangeSpec {
                name,
                kind: d.kind.as_str().to_string(),
                durable: d.durable,
                auto_delete: d.auto_delete,
                internal: d.internal,
                arguments: d.arguments,
            };
            let mut guard = Guard {
                permissions: &mut self.permissions,
                s,
            };
            s.vhost.declare_exchange(spec, &mut guard)?;
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
        let name = strip_cr_lf(d.exchange.as_str());
        let mark = s.topology_mark();
        s.vhost.check_exchange_deletion(&name)?;
        self.check(s, ResourceKind::Exchange, &name, Permission::Configure)?;
        s.vhost.delete_exchange(&name, d.if_unused)?;
        if !d.nowait {
            s.reply(
                self.id,
                AMQPClass::Exchange(exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {})),
                mark,
            );
        }
        Ok(())
    }

    /// RabbitMQ's checks of a binding change, in its order: write on the
    /// destination, neither end the default exchange, read on the source,
    /// and the topic permission of the binding key on a topic source.
    fn check_binding(
        &mut self,
        s: &Session,
        destination: (ResourceKind, &str),
        source: &str,
        routing_key: &str,
    ) -> AmqpResult<()> {
        self.check(s, destination.0, destination.1, Permission::Write)?;
        if source.is_empty() || destination == (ResourceKind::Exchange, "") {
            return Err(VHost::default_exchange_refused());
        }
        self.check(s, ResourceKind::Exchange, source, Permission::Read)?;
        if s.broker.access.has_topic_permissions() && s.vhost.is_topic_exchange(source) {
            self.permissions.check_topic(
                s.asker(),
                source.as_bytes(),
                routing_key.as_bytes(),
                Permission::Read,
            )?;
        }
        Ok(())
    }

    pub(super) fn exchange_bind(&mut self, s: &Session, b: exchange::Bind) -> AmqpResult<()> {
        let destination = strip_cr_lf(b.destination.as_str());
        let source = strip_cr_lf(b.source.as_str());
        self.check_binding(
            s,
            (ResourceKind::Exchange, &destination),
            &source,
            b.routing_key.as_str(),
        )?;
        let mark = s.topology_mark();
        s.vhost.bind(
            &source,
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
        let source = strip_cr_lf(u.source.as_str());
        self.check_binding(
            s,
            (ResourceKind::Exchange, &destination),
            &source,
            u.routing_key.as_str(),
        )?;
        let mark = s.topology_mark();
        s.vhost.unbind(
            &source,
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
            let flags = (d.durable, d.exclusive, d.auto_delete);
            let arguments =
                with_default_queue_type(&s.broker.access, &s.vhost.name, flags, d.arguments);
            let mut guard = Guard {
                permissions: &mut self.permissions,
                s,
            };
            let (queue, created, m, c) = s.vhost.declare_queue(
                QueueSpec {
                    name: name.clone(),
                    server_named,
                    durable: d.durable,
                    exclusive: d.exclusive,
                    auto_delete: d.auto_delete,
                    arguments,
                },
                s.connection_id(),
                &mut guard,
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
        let source = strip_cr_lf(b.exchange.as_str());
        self.check_binding(s, (ResourceKind::Queue, &name), &source, &key)?;
        let mark = s.topology_mark();
        s.vhost.bind(
            &source,
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
        let source = strip_cr_lf(u.exchange.as_str());
        self.check_binding(s, (ResourceKind::Queue, &name), &source, &key)?;
        let mark = s.topology_mark();
        s.vhost.unbind(
            &source,
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
        self.check(s, ResourceKind::Queue, &name, Permission::Read)?;
        let queue = s.vhost.queue_for(&name, s.connection_id())?;
        if queue.args.is_stream() {
            return Err(not_supported_by_streams("queue.purge", &queue));
        }
        let count = queue.purge();
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
        self.check(s, ResourceKind::Queue, &name, Permission::Configure)?;
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

/// A declaration without `x-queue-type` in a vhost with a default queue
/// type gets that type, when its flags allow it (RabbitMQ's
/// `augment_declare_args`). The management API's declarations get it too.
pub fn with_default_queue_type(
    access: &crate::access::Access,
    vhost: &str,
    (durable, exclusive, auto_delete): (bool, bool, bool),
    mut arguments: FieldTable,
) -> FieldTable {
    if lookup(&arguments, "x-queue-type").is_some() {
        return arguments;
    }
    if let Some(default) = access.default_queue_type(vhost)
        && default.is_compatible(durable, exclusive, auto_delete)
    {
        arguments.insert(
            ShortString::from("x-queue-type"),
            AMQPValue::LongString(LongString::from(default.name())),
        );
    }
    arguments
}
