//! A virtual host: its exchanges, queues and bindings, and routing between
//! them. Every rule about what may be declared, bound or deleted lives here,
//! with RabbitMQ's reply codes and texts.
//!
//! The topology sits behind one reader-writer lock: publishes take it for
//! reading to route, declarations and deletions take it for writing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};

use amq_protocol::types::FieldTable;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use crate::amqp_err;
use crate::exchange::delayed::{self, Delayer};
use crate::exchange::sources::Sources;
use crate::exchange::{Binding, Destination, Exchange, ExchangeKind};
use crate::message::Message;
use crate::metrics::counters;
use crate::policy::{Policy, PolicyKind, PolicySet};
use crate::protocol::table::{describe_value, equivalent, lookup, value_text};
use crate::protocol::{AmqpResult, Properties};
use crate::queue::storage::QueueStorage;
use crate::queue::stream::StreamQueue;
use crate::queue::{Consumer, Queue, QueueArgs, QueueOptions, QueueType, Republish};
use crate::store::{BindingRecord, ExchangeRecord, QueueRecord, Store, Stored};
use crate::timer::Timers;

/// Reply addresses of direct reply-to consumers start with this.
pub const REPLY_TO_PREFIX: &str = "amq.rabbitmq.reply-to.";

/// The channel of a direct reply-to consumer, as the virtual host holds it
/// (implemented by the channel's link).
pub trait ReplyChannel: Send + Sync + std::fmt::Debug {
    /// Write a reply to the channel's reply consumer `tag`: no ack, no
    /// prefetch, just the channel's next delivery tag. A reply queues for
    /// no consumer credit, so it can push the requester's connection past
    /// its high-water mark; then the answer is what the replier waits for
    /// before it takes more input (see [`RoomWait`]).
    fn deliver_reply(&self, tag: &str, message: &Message) -> Option<RoomWait>;
}

/// Resolves once a connection that was sent more than it reads has room
/// again (or is gone).
pub struct RoomWait(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>);

impl RoomWait {
    pub fn new(wait: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        RoomWait(Box::pin(wait))
    }

    pub async fn wait(self) {
        self.0.await
    }
}

impl std::fmt::Debug for RoomWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoomWait")
    }
}

/// A channel's direct reply-to consumer.
#[derive(Debug, Clone)]
pub struct ReplyConsumer {
    pub channel: Weak<dyn ReplyChannel>,
    pub tag: Arc<str>,
}

/// Where a publish goes.
#[derive(Debug)]
pub enum Target {
    /// To the queues collected by [`VHost::route`].
    Queues,
    /// Held by a delayed-message exchange for this many milliseconds.
    Delayed(Arc<Delayer>, u64),
    /// To a direct reply-to consumer (gone: the message is dropped).
    Reply(Option<ReplyConsumer>),
}

/// The outcome of routing a publish.
#[derive(Debug)]
pub struct Route {
    /// The exchange name the message carries.
    pub exchange: Arc<str>,
    pub target: Target,
    /// The exchange is a topic exchange (whose routing keys topic
    /// permissions govern).
    pub topic: bool,
}

/// What a declaration asks of its caller at the points where RabbitMQ
/// checks permissions and limits (which live above the vhost, in
/// `access`). Each method refuses with the error to close the channel with.
pub trait DeclareGuard {
    /// Before an exchange is compared with its declaration or created.
    fn configure_exchange(&mut self, name: &str) -> AmqpResult<()>;
    /// Before a queue is compared with its declaration or created.
    fn configure_queue(&mut self, name: &str) -> AmqpResult<()>;
    /// Before queue `name` is created in a vhost holding `queues` queues.
    fn creating_queue(&mut self, name: &str, queues: usize) -> AmqpResult<()>;
    /// A new exchange names an alternate exchange.
    fn alternate_exchange(&mut self, exchange: &str, alternate: &str) -> AmqpResult<()>;
    /// A new queue names a dead-letter exchange.
    fn dead_letter_exchange(&mut self, queue: &str, exchange: &str) -> AmqpResult<()>;
}

/// A guard that allows everything (the broker's own declarations).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoGuard;

impl DeclareGuard for NoGuard {
    fn configure_exchange(&mut self, _: &str) -> AmqpResult<()> {
        Ok(())
    }
    fn configure_queue(&mut self, _: &str) -> AmqpResult<()> {
        Ok(())
    }
    fn creating_queue(&mut self, _: &str, _: usize) -> AmqpResult<()> {
        Ok(())
    }
    fn alternate_exchange(&mut self, _: &str, _: &str) -> AmqpResult<()> {
        Ok(())
    }
    fn dead_letter_exchange(&mut self, _: &str, _: &str) -> AmqpResult<()> {
        Ok(())
    }
}

/// An exchange type `exchange.declare` accepts; 503 otherwise.
pub fn check_exchange_type(kind: &str) -> AmqpResult<()> {
    if kind == DELAYED_TYPE || ExchangeKind::parse(kind).is_some() {
        Ok(())
    } else {
        Err(amqp_err!(CommandInvalid, "unknown exchange type '{kind}'"))
    }
}

/// The exchange type of the delayed-message exchange.
const DELAYED_TYPE: &str = "x-delayed-message";

/// The routing type a delayed-message exchange names in `x-delayed-type`.
fn delayed_routing(arguments: &FieldTable) -> Option<ExchangeKind> {
    lookup(arguments, "x-delayed-type")
        .and_then(crate::protocol::table::as_text)
        .and_then(|t| ExchangeKind::parse(&t))
}

/// Exchanges every virtual host has from its creation.
const STANDARD_EXCHANGES: &[(&str, ExchangeKind, bool)] = &[
    ("amq.direct", ExchangeKind::Direct, false),
    ("amq.fanout", ExchangeKind::Fanout, false),
    ("amq.topic", ExchangeKind::Topic, false),
    ("amq.headers", ExchangeKind::Headers, false),
    ("amq.match", ExchangeKind::Headers, false),
    ("amq.rabbitmq.trace", ExchangeKind::Topic, true),
];

/// What `exchange.declare` asks for.
#[derive(Debug, Clone)]
pub struct ExchangeSpec {
    pub name: String,
    pub kind: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

/// What `queue.declare` asks for (the name already resolved).
#[derive(Debug, Clone)]
pub struct QueueSpec {
    pub name: String,
    /// Generated by the broker (`amq.gen-…`): exempt from the `amq.` rule.
    pub server_named: bool,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub arguments: FieldTable,
}

/// One end of a binding, by name.
#[derive(Debug, Clone, Copy)]
pub enum BindTarget<'a> {
    Queue(&'a str),
    Exchange(&'a str),
}

/// An exchange as the management API lists it.
#[derive(Debug, Clone)]
pub struct ExchangeInfo {
    pub name: Arc<str>,
    pub kind: &'static str,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
    pub publish_in: u64,
    pub publish_out: u64,
}

/// A binding as the management API lists it.
#[derive(Debug, Clone)]
pub struct BindingInfo {
    pub source: Arc<str>,
    pub destination: Arc<str>,
    /// To a queue (else to an exchange).
    pub to_queue: bool,
    pub routing_key: String,
    pub arguments: FieldTable,
}

/// Queues deleted as a side effect, with the consumers they had.
pub type DeletedQueue = (Arc<Queue>, Vec<Arc<Consumer>>);

#[derive(Debug, Default)]
struct Topology {
    exchanges: HashMap<Arc<str>, Exchange>,
    queues: HashMap<Arc<str>, Arc<Queue>>,
    /// Which exchanges have bindings to each queue and exchange.
    sources: Sources,
}

#[derive(Debug)]
pub struct VHost {
    pub name: Arc<str>,
    default_exchange: Arc<str>,
    /// The default exchange's counters (it has no [`Exchange`] of its own).
    default_counters: crate::stats::ExchangeCounters,
    topology: RwLock<Topology>,
    /// Where durable entities are written; None for a broker without one.
    store: Option<Arc<Store>>,
    /// Per-queue bound of ready messages in memory.
    max_in_memory: usize,
    timers: Option<Timers>,
    /// Direct reply-to consumers by the suffix of their reply address.
    replies: Mutex<HashMap<String, ReplyConsumer>>,
    /// Policies and operator policies. Lock order: topology, then this.
    policies: RwLock<PolicySet>,
    me: Weak<VHost>,
}

impl VHost {
    pub fn new(
        name: &str,
        store: Option<Arc<Store>>,
        max_in_memory: usize,
        timers: Option<Timers>,
    ) -> Arc<Self> {
        let mut topology = Topology::default();
        for &(xname, kind, internal) in STANDARD_EXCHANGES {
            let name: Arc<str> = Arc::from(xname);
            topology.exchanges.insert(
                name.clone(),
                Exchange::new(name, kind, true, false, internal, FieldTable::default()),
            );
        }
        Arc::new_cyclic(|me| VHost {
            name: Arc::from(name),
            default_exchange: Arc::from(""),
            default_counters: crate::stats::ExchangeCounters::default(),
            topology: RwLock::new(topology),
            store,
            max_in_memory,
            timers,
            replies: Mutex::new(HashMap::new()),
            policies: RwLock::new(PolicySet::default()),
            me: me.clone(),
        })
    }

    /// Whether both ends of a binding are durable (and so is the binding).
    fn is_durable_binding(topo: &Topology, source: &Exchange, destination: &Destination) -> bool {
        source.durable
            && match destination {
                Destination::Queue(q) => q.durable,
                Destination::Exchange(name) => {
                    topo.exchanges.get(name.as_ref()).is_some_and(|x| x.durable)
                }
            }
    }

    fn binding_record(&self, source: &str, binding: &Binding) -> BindingRecord {
        BindingRecord {
            vhost: self.name.to_string(),
            source: source.to_string(),
            destination_type: if binding.destination.is_queue() {
                "queue"
            } else {
                "exchange"
            }
            .to_string(),
            destination: binding.destination.name().to_string(),
            routing_key: binding.routing_key.clone(),
            arguments: binding.arguments.clone(),
        }
    }

    /// Forget stored bindings that were just removed from `source`.
    fn forget_bindings(&self, source: &str, removed: &[Binding], durable: bool) {
        if let (Some(store), true) = (&self.store, durable) {
            for binding in removed {
                removed_from_store(store.delete_binding(&self.binding_record(source, binding)));
            }
        }
    }

    fn exchange_record(&self, exchange: &Exchange) -> ExchangeRecord {
        ExchangeRecord {
            vhost: self.name.to_string(),
            name: exchange.name.to_string(),
            kind: exchange.type_name().to_string(),
            auto_delete: exchange.auto_delete,
            internal: exchange.internal,
            arguments: exchange.arguments.clone(),
        }
    }

    fn exchange_desc(&self, name: &str) -> String {
        format!("exchange '{}' in vhost '{}'", name, self.name)
    }

    fn queue_desc(&self, name: &str) -> String {
        format!("queue '{}' in vhost '{}'", name, self.name)
    }

    fn no_exchange(&self, name: &str) -> crate::protocol::AmqpError {
        amqp_err!(NotFound, "no {}", self.exchange_desc(name))
    }

    fn no_queue(&self, name: &str) -> crate::protocol::AmqpError {
        amqp_err!(NotFound, "no {}", self.queue_desc(name))
    }

    /// What operations on the default exchange are refused with.
    pub fn default_exchange_refused() -> crate::protocol::AmqpError {
        amqp_err!(
            AccessRefused,
            "operation not permitted on the default exchange"
        )
    }

    // ---- exchanges -------------------------------------------------------

    /// `exchange.declare` (not passive).
    pub fn declare_exchange(
        &self,
        spec: ExchangeSpec,
        guard: &mut dyn DeclareGuard,
    ) -> AmqpResult<()> {
        let delayed = spec.kind == DELAYED_TYPE;
        check_exchange_type(&spec.kind)?;
        if spec.name.is_empty() {
            return Err(Self::default_exchange_refused());
        }
        guard.configure_exchange(&spec.name)?;
        let mut topo = self.topology.write();
        if let Some(existing) = topo.exchanges.get(spec.name.as_str()) {
            let name = self.exchange_desc(&spec.name);
            let field = |key: &str, current: &str, received: &str| {
                if current == received {
                    Ok(())
                } else {
                    Err(amqp_err!(
                        PreconditionFailed,
                        "inequivalent arg '{key}' for {name}: received '{received}' but current is '{current}'"
                    ))
                }
            };
            field("type", existing.type_name(), &spec.kind)?;
            field(
                "durable",
                &existing.durable.to_string(),
                &spec.durable.to_string(),
            )?;
            field(
                "auto_delete",
                &existing.auto_delete.to_string(),
                &spec.auto_delete.to_string(),
            )?;
            field(
                "internal",
                &existing.internal.to_string(),
                &spec.internal.to_string(),
            )?;
            let keys: &[&str] = if existing.delayer().is_some() {
                &["alternate-exchange", "x-delayed-type"]
            } else {
                &["alternate-exchange"]
            };
            return check_args_equivalence(&existing.arguments, &spec.arguments, &name, keys);
        }
        if spec.name.starts_with("amq.") {
            return Err(amqp_err!(
                AccessRefused,
                "exchange name '{}' contains reserved prefix 'amq.*'",
                spec.name
            ));
        }
        check_name_arg(
            &spec.arguments,
            "alternate-exchange",
            &self.exchange_desc(&spec.name),
        )?;
        if let Some(alternate) =
            lookup(&spec.arguments, "alternate-exchange").and_then(crate::protocol::table::as_text)
        {
            guard.alternate_exchange(&spec.name, &alternate)?;
        }
        let kind = match delayed {
            true => delayed_routing(&spec.arguments).ok_or_else(|| {
                amqp_err!(
                    PreconditionFailed,
                    "Invalid argument, 'x-delayed-type' must be an existing exchange type"
                )
            })?,
            false => ExchangeKind::parse(&spec.kind).unwrap_or(ExchangeKind::Direct),
        };
        let name: Arc<str> = Arc::from(spec.name.as_str());
        let mut exchange = Exchange::new(
            name.clone(),
            kind,
            spec.durable,
            spec.auto_delete,
            spec.internal,
            spec.arguments,
        );
        if delayed {
            exchange = exchange.with_delayer(self.delayer(&name, spec.durable));
        }
        exchange.set_policy(self.policies.read().for_exchange(&name));
        if let (Some(store), true) = (&self.store, exchange.durable) {
            written_to_store(
                store.put_exchange(&self.exchange_record(&exchange)),
                &self.exchange_desc(&name),
            )?;
        }
        topo.exchanges.insert(name, exchange);
        Ok(())
    }

    /// The message holder of a delayed-message exchange (backed by the
    /// store when the exchange is durable).
    fn delayer(&self, name: &Arc<str>, durable: bool) -> Arc<Delayer> {
        let tree = match (&self.store, durable) {
            (Some(store), true) => store.delayed_tree(&self.name, name).ok(),
            _ => None,
        };
        Delayer::new(
            name.clone(),
            self.me.clone(),
            self.timers.clone(),
            self.store.clone(),
            tree,
        )
    }

    /// `exchange.declare` with passive set.
    pub fn check_exchange(&self, name: &str) -> AmqpResult<()> {
        if name.is_empty() {
            return Err(Self::default_exchange_refused());
        }
        if self.topology.read().exchanges.contains_key(name) {
            Ok(())
        } else {
            Err(self.no_exchange(name))
        }
    }

    /// Whether `exchange.delete` may delete `name` at all: not the default
    /// exchange, nor a system one (`amq.*`).
    pub fn check_exchange_deletion(&self, name: &str) -> AmqpResult<()> {
        if name.is_empty() {
            return Err(Self::default_exchange_refused());
        }
        if name.starts_with("amq.") {
            return Err(amqp_err!(
                AccessRefused,
                "deletion of system {} not allowed",
                self.exchange_desc(name)
            ));
        }
        Ok(())
    }

    /// `exchange.delete`. Deleting a missing exchange succeeds, as in RabbitMQ.
    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> AmqpResult<()> {
        self.check_exchange_deletion(name)?;
        let mut topo = self.topology.write();
        let Some(exchange) = topo.exchanges.get(name) else {
            return Ok(());
        };
        if if_unused && exchange.has_bindings() {
            return Err(amqp_err!(
                PreconditionFailed,
                "{} in use",
                self.exchange_desc(name)
            ));
        }
        self.remove_exchange(&mut topo, name);
        Ok(())
    }

    /// Remove an exchange and every binding to it, then auto-delete the
    /// exchanges that lost their last binding.
    fn remove_exchange(&self, topo: &mut Topology, name: &str) {
        if let Some(exchange) = self.take_exchange(topo, name) {
            self.unbind_everywhere(
                topo,
                Destination::Exchange(exchange.name.clone()),
                exchange.durable,
            );
        }
    }

    /// Take an exchange out of the topology with the bindings it is the
    /// source of (from the store too), leaving the bindings to it.
    fn take_exchange(&self, topo: &mut Topology, name: &str) -> Option<Exchange> {
        let exchange = topo.exchanges.remove(name)?;
        if let Some(delayer) = exchange.delayer() {
            delayer.destroy(&self.name);
        }
        if exchange.durable
            && let Some(store) = &self.store
        {
            removed_from_store(store.delete_exchange(&self.name, name));
            for binding in exchange.bindings() {
                if Self::is_durable_binding(topo, &exchange, &binding.destination) {
                    removed_from_store(store.delete_binding(&self.binding_record(name, binding)));
                }
            }
        }
        for binding in exchange.bindings() {
            topo.sources
                .unbound(&exchange.name, &binding.destination, 1);
        }
        Some(exchange)
    }

    /// Remove every binding to `dest` (whose durability is `dest_durable`),
    /// auto-deleting the sources left without bindings, and the bindings to
    /// those, and so on. A worklist, not recursion: a client can chain as
    /// many auto-delete exchanges as it likes. Each binding is visited once,
    /// found through the index of sources by destination.
    fn unbind_everywhere(&self, topo: &mut Topology, dest: Destination, dest_durable: bool) {
        let mut pending = vec![(dest, dest_durable)];
        while let Some((dest, dest_durable)) = pending.pop() {
            for source in topo.sources.take(&dest) {
                let Some(exchange) = topo.exchanges.get_mut(&source) else {
                    continue;
                };
                let removed = exchange.unbind_destination(&dest);
                if removed.is_empty() {
                    continue;
                }
                self.forget_bindings(&exchange.name, &removed, exchange.durable && dest_durable);
                if exchange.auto_delete
                    && !exchange.has_bindings()
                    && let Some(emptied) = self.take_exchange(topo, &source)
                {
                    pending.push((Destination::Exchange(emptied.name.clone()), emptied.durable));
                }
            }
        }
    }

    // ---- queues ----------------------------------------------------------

    /// `queue.declare` (not passive). Returns the queue, whether it was
    /// created, and its message and consumer counts.
    pub fn declare_queue(
        &self,
        spec: QueueSpec,
        connection: u64,
        guard: &mut dyn DeclareGuard,
    ) -> AmqpResult<(Arc<Queue>, bool, u32, u32)> {
        if !spec.server_named && spec.name.starts_with("amq.") {
            return Err(amqp_err!(
                AccessRefused,
                "queue name '{}' contains reserved prefix 'amq.*'",
                spec.name
            ));
        }
        guard.configure_queue(&spec.name)?;
        let owner = spec.exclusive.then_some(connection);
        let durable = spec.durable && !spec.exclusive;
        let existing = self.topology.read().queues.get(spec.name.as_str()).cloned();
        if let Some(queue) = existing {
            if queue.exclusive_owner != owner {
                return Err(queue.locked_error());
            }
            let name = queue.describe();
            let field = |key: &str, current: bool, received: bool| {
                if current == received {
                    Ok(())
                } else {
                    Err(amqp_err!(
                        PreconditionFailed,
                        "inequivalent arg '{key}' for {name}: received '{received}' but current is '{current}'"
                    ))
                }
            };
            field("durable", queue.durable, durable)?;
            field("auto_delete", queue.auto_delete, spec.auto_delete)?;
            check_args_equivalence(
                &queue.arguments,
                &spec.arguments,
                &name,
                queue.args.queue_type.equivalence_keys(),
            )?;
            // Counting may expire (and dead-letter) messages: not under the
            // topology lock.
            let (messages, consumers) = queue.counts();
            counters::QUEUES_DECLARED.inc();
            return Ok((queue, false, messages, consumers));
        }
        let queues = self.topology.read().queues.len();
        guard.creating_queue(&spec.name, queues)?;
        let description = self.queue_desc(&spec.name);
        check_name_arg(&spec.arguments, "x-dead-letter-exchange", &description)?;
        if let Some(dlx) = lookup(&spec.arguments, "x-dead-letter-exchange")
            .and_then(crate::protocol::table::as_text)
        {
            guard.dead_letter_exchange(&spec.name, &dlx)?;
        }
        let args = QueueArgs::parse(&spec.arguments, &description)?;
        if spec.server_named && !matches!(args.queue_type, QueueType::Classic) {
            return Err(amqp_err!(
                PreconditionFailed,
                "Cannot declare a server-named queue for type {}",
                args.type_module()
            ));
        }
        args.check_flags(&description, durable, spec.exclusive, spec.auto_delete)?;
        let mut topo = self.topology.write();
        if topo.queues.contains_key(spec.name.as_str()) {
            // Declared by another connection meanwhile: answer as for an existing one.
            drop(topo);
            return self.declare_queue(spec, connection, guard);
        }
        let name: Arc<str> = Arc::from(spec.name.as_str());
        let stream = match (&self.store, args.is_stream()) {
            (Some(store), true) => {
                let id = store.next_id();
                Some(
                    StreamQueue::open(&store.streams_dir(), id, &args, store, self.timers.as_ref())
                        .map_err(|e| {
                            amqp_err!(
                                InternalError,
                                "cannot create the stream of queue '{}': {e}",
                                spec.name
                            )
                        })?,
                )
            }
            (None, true) => {
                return Err(amqp_err!(
                    NotImplemented,
                    "stream queues need a data directory"
                ));
            }
            _ => None,
        };
        // Read under the topology lock, so a policy change either sees this
        // queue or is seen by it.
        let applied = self.policies.read().for_queue(&name, args.queue_type);
        let storage = match &self.store {
            Some(_) if stream.is_some() => None,
            Some(store) => Some(
                QueueStorage::new(store.clone(), store.next_id(), durable).map_err(|e| {
                    amqp_err!(
                        InternalError,
                        "cannot create storage for queue '{}': {e}",
                        spec.name
                    )
                })?,
            ),
            None => None,
        };
        let queue = Queue::new(QueueOptions {
            name: name.clone(),
            vhost: self.name.clone(),
            durable,
            auto_delete: spec.auto_delete,
            exclusive_owner: owner,
            arguments: spec.arguments,
            args,
            storage,
            stream,
            max_in_memory: self.max_in_memory,
            republish: self.me.clone(),
            timers: self.timers.clone(),
            applied,
        });
        if let (Some(store), Some(id), true) = (&self.store, queue.storage_id(), durable) {
            written_to_store(
                store.put_queue(&QueueRecord {
                    vhost: self.name.to_string(),
                    name: name.to_string(),
                    id,
                    auto_delete: queue.auto_delete,
                    arguments: queue.arguments.clone(),
                }),
                &self.queue_desc(&name),
            )?;
        }
        topo.queues.insert(name, queue.clone());
        counters::QUEUES_DECLARED.inc();
        counters::QUEUES_CREATED.inc();
        Ok((queue, true, 0, 0))
    }

    /// Look a queue up, 404 when missing.
    pub fn queue(&self, name: &str) -> AmqpResult<Arc<Queue>> {
        self.topology
            .read()
            .queues
            .get(name)
            .cloned()
            .ok_or_else(|| self.no_queue(name))
    }

    /// Look a queue up and check `connection` may use it (404, then 405).
    pub fn queue_for(&self, name: &str, connection: u64) -> AmqpResult<Arc<Queue>> {
        let queue = self.queue(name)?;
        queue.check_exclusive_access(connection)?;
        Ok(queue)
    }

    /// Delete a queue by name; a missing queue is not an error. Returns the
    /// ready-message count and the deleted queue with its consumers.
    pub fn delete_queue(
        &self,
        name: &str,
        connection: u64,
        if_unused: bool,
        if_empty: bool,
    ) -> AmqpResult<(u32, Option<DeletedQueue>)> {
        let mut topo = self.topology.write();
        let Some(queue) = topo.queues.get(name).cloned() else {
            return Ok((0, None));
        };
        queue.check_exclusive_access(connection)?;
        queue.check_delete(if_unused, if_empty)?;
        let (count, consumers) = self.remove_queue(&mut topo, &queue);
        Ok((count, Some((queue, consumers))))
    }

    /// Delete this very queue if it is still registered (exclusive owner
    /// gone, auto-delete). Returns its consumers when it was deleted.
    pub fn delete_queue_instance(&self, queue: &Arc<Queue>) -> Option<Vec<Arc<Consumer>>> {
        let mut topo = self.topology.write();
        match topo.queues.get(&queue.name) {
            Some(q) if Arc::ptr_eq(q, queue) => Some(self.remove_queue(&mut topo, queue).1),
            _ => None,
        }
    }

    fn remove_queue(&self, topo: &mut Topology, queue: &Arc<Queue>) -> (u32, Vec<Arc<Consumer>>) {
        topo.queues.remove(&queue.name);
        counters::QUEUES_DELETED.inc();
        self.unbind_everywhere(topo, Destination::Queue(queue.clone()), queue.durable);
        queue.mark_deleted()
    }

    // ---- bindings --------------------------------------------------------

    fn resolve(
        &self,
        topo: &Topology,
        source: &str,
        target: BindTarget<'_>,
        connection: u64,
    ) -> AmqpResult<Destination> {
        if source.is_empty() || matches!(target, BindTarget::Exchange("")) {
            return Err(Self::default_exchange_refused());
        }
        if !topo.exchanges.contains_key(source) {
            return Err(self.no_exchange(source));
        }
        match target {
            BindTarget::Queue(name) => {
                let queue = topo.queues.get(name).ok_or_else(|| self.no_queue(name))?;
                queue.check_exclusive_access(connection)?;
                Ok(Destination::Queue(queue.clone()))
            }
            BindTarget::Exchange(name) => match topo.exchanges.get_key_value(name) {
                Some((key, _)) => Ok(Destination::Exchange(key.clone())),
                None => Err(self.no_exchange(name)),
            },
        }
    }

    /// `queue.bind` / `exchange.bind`.
    pub fn bind(
        &self,
        source: &str,
        target: BindTarget<'_>,
        routing_key: &str,
        arguments: FieldTable,
        connection: u64,
    ) -> AmqpResult<()> {
        let mut topo = self.topology.write();
        let destination = self.resolve(&topo, source, target, connection)?;
        let Some(exchange) = topo.exchanges.get(source) else {
            return Err(self.no_exchange(source));
        };
        if exchange.kind == ExchangeKind::Headers {
            crate::exchange::headers::validate_binding(&arguments)?;
        }
        let durable = Self::is_durable_binding(&topo, exchange, &destination);
        let binding = Binding {
            destination,
            routing_key: routing_key.to_string(),
            arguments,
        };
        let record = durable.then(|| self.binding_record(source, &binding));
        let Topology {
            exchanges, sources, ..
        } = &mut *topo;
        let Some(exchange) = exchanges.get_mut(source) else {
            return Err(self.no_exchange(source));
        };
        let (destination, key, args) = (
            binding.destination.clone(),
            binding.routing_key.clone(),
            binding.arguments.clone(),
        );
        if !exchange.bind(binding) {
            return Ok(());
        }
        if let (Some(store), Some(record)) = (&self.store, record)
            && let Err(e) = written_to_store(store.put_binding(&record), "binding")
        {
            // Not stored, so not made: the binding would be gone after a restart.
            exchange.unbind(&destination, &key, &args);
            return Err(e);
        }
        sources.bound(&exchange.name, &destination);
        Ok(())
    }

    /// `queue.unbind` / `exchange.unbind`. As in RabbitMQ, removing a
    /// binding succeeds even when it, its source or its destination does
    /// not exist; only the default exchange and exclusive queues are refused.
    pub fn unbind(
        &self,
        source: &str,
        target: BindTarget<'_>,
        routing_key: &str,
        arguments: &FieldTable,
        connection: u64,
    ) -> AmqpResult<()> {
        let mut topo = self.topology.write();
        let destination = match self.resolve(&topo, source, target, connection) {
            Ok(destination) => destination,
            Err(e) if e.code == crate::protocol::ReplyCode::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let Some(exchange) = topo.exchanges.get(source) else {
            return Ok(());
        };
        let durable = Self::is_durable_binding(&topo, exchange, &destination);
        let Some(exchange) = topo.exchanges.get_mut(source) else {
            return Ok(());
        };
        let Some(removed) = exchange.unbind(&destination, routing_key, arguments) else {
            return Ok(());
        };
        let emptied = exchange.auto_delete && !exchange.has_bindings();
        topo.sources.unbound(source, &destination, 1);
        self.forget_bindings(source, &[removed], durable);
        if emptied {
            self.remove_exchange(&mut topo, source);
        }
        Ok(())
    }

    // ---- recovery --------------------------------------------------------

    /// Re-create a stored exchange at start (nothing is written back).
    pub fn restore_exchange(&self, record: &ExchangeRecord) {
        let delayed = record.kind == DELAYED_TYPE;
        let parsed = match delayed {
            true => delayed_routing(&record.arguments),
            false => ExchangeKind::parse(&record.kind),
        };
        let Some(kind) = parsed else {
            tracing::warn!(
                "skipping stored exchange '{}' of unknown type '{}'",
                record.name,
                record.kind
            );
            return;
        };
        let name: Arc<str> = Arc::from(record.name.as_str());
        let mut exchange = Exchange::new(
            name.clone(),
            kind,
            true,
            record.auto_delete,
            record.internal,
            record.arguments.clone(),
        );
        if delayed {
            let delayer = self.delayer(&name, true);
            delayer.recover();
            exchange = exchange.with_delayer(delayer);
        }
        exchange.set_policy(self.policies.read().for_exchange(&name));
        self.topology.write().exchanges.insert(name, exchange);
    }

    /// Re-create a stored durable queue at start, with its storage.
    pub fn restore_queue(
        &self,
        record: &QueueRecord,
        store: &Arc<Store>,
    ) -> Result<Arc<Queue>, crate::store::StoreError> {
        let name: Arc<str> = Arc::from(record.name.as_str());
        let description = self.queue_desc(&record.name);
        // Stored arguments were valid when declared; read them leniently.
        let args = QueueArgs::parse(&record.arguments, &description).unwrap_or_default();
        let (storage, stream) = if args.is_stream() {
            let dir = store.streams_dir();
            let stream = StreamQueue::open(&dir, record.id, &args, store, self.timers.as_ref())
                .map_err(|e| crate::store::StoreError::Corrupt {
                    path: dir.join(record.id.to_string()),
                    tree: "streams".into(),
                    key: format!("{}/{}", record.vhost, record.name),
                    why: e.to_string(),
                })?;
            (None, Some(stream))
        } else {
            (
                Some(QueueStorage::new(store.clone(), record.id, true)?),
                None,
            )
        };
        let applied = self.policies.read().for_queue(&name, args.queue_type);
        let queue = Queue::new(QueueOptions {
            name: name.clone(),
            vhost: self.name.clone(),
            durable: true,
            auto_delete: record.auto_delete,
            exclusive_owner: None,
            arguments: record.arguments.clone(),
            args,
            storage,
            stream,
            max_in_memory: self.max_in_memory,
            republish: self.me.clone(),
            timers: self.timers.clone(),
            applied,
        });
        self.topology.write().queues.insert(name, queue.clone());
        Ok(queue)
    }

    /// Re-create a stored binding at start; false when an end is missing.
    pub fn restore_binding(&self, record: &BindingRecord) -> bool {
        let mut topo = self.topology.write();
        let destination = match record.destination_type.as_str() {
            "queue" => match topo.queues.get(record.destination.as_str()) {
                Some(q) => Destination::Queue(q.clone()),
                None => return false,
            },
            _ => match topo.exchanges.get_key_value(record.destination.as_str()) {
                Some((name, _)) => Destination::Exchange(name.clone()),
                None => return false,
            },
        };
        let Topology {
            exchanges, sources, ..
        } = &mut *topo;
        let Some(source) = exchanges.get_mut(record.source.as_str()) else {
            return false;
        };
        if source.bind(Binding {
            destination: destination.clone(),
            routing_key: record.routing_key.clone(),
            arguments: record.arguments.clone(),
        }) {
            sources.bound(&source.name, &destination);
        }
        true
    }

    // ---- routing ---------------------------------------------------------

    /// Route a publish: check the exchange exists and is not internal, then
    /// collect the queues the message goes to (each once) into `queues`.
    /// Returns the exchange's name to store with the message, and whether
    /// the message goes to those queues, waits in a delayed-message
    /// exchange, or answers a direct reply-to consumer.
    pub fn route(
        &self,
        exchange: &[u8],
        routing_key: &[u8],
        extra_keys: &[Bytes],
        properties: &Properties,
        queues: &mut Vec<Arc<Queue>>,
    ) -> AmqpResult<Route> {
        let topo = self.topology.read();
        if exchange.is_empty() {
            if let Some(suffix) = routing_key.strip_prefix(REPLY_TO_PREFIX.as_bytes()) {
                let consumer = std::str::from_utf8(suffix)
                    .ok()
                    .and_then(|s| self.reply_consumer(s));
                return Ok(Route {
                    exchange: self.default_exchange.clone(),
                    target: Target::Reply(consumer),
                    topic: false,
                });
            }
            Self::walk_default(&topo, routing_key, extra_keys, queues);
            count_routed(&self.default_counters, queues);
            return Ok(Route {
                exchange: self.default_exchange.clone(),
                target: Target::Queues,
                topic: false,
            });
        }
        let name = String::from_utf8_lossy(exchange);
        let Some((key, source)) = topo.exchanges.get_key_value(name.as_ref()) else {
            return Err(self.no_exchange(&name));
        };
        if source.internal {
            return Err(amqp_err!(
                AccessRefused,
                "cannot publish to internal {}",
                self.exchange_desc(&name)
            ));
        }
        if let Some(delayer) = source.delayer()
            && let Some(delay) = delayed::requested_delay(properties.headers().as_ref())
        {
            return Ok(Route {
                exchange: key.clone(),
                target: Target::Delayed(delayer.clone(), delay),
                topic: false,
            });
        }
        Self::walk(&topo, source, routing_key, extra_keys, properties, queues);
        count_routed(&source.counters, queues);
        Ok(Route {
            exchange: key.clone(),
            target: Target::Queues,
            topic: is_topic(source),
        })
    }

    // ---- direct reply-to -------------------------------------------------

    /// Register a channel's `amq.rabbitmq.reply-to` consumer; returns the
    /// unguessable suffix of its reply address, which starts with `owner`
    /// (the connection and channel).
    pub fn register_reply(
        &self,
        channel: Weak<dyn ReplyChannel>,
        owner: &str,
        tag: Arc<str>,
    ) -> String {
        let suffix = crate::util::generated_name(owner);
        self.replies
            .lock()
            .insert(suffix.clone(), ReplyConsumer { channel, tag });
        suffix
    }

    pub fn unregister_reply(&self, suffix: &str) {
        self.replies.lock().remove(suffix);
    }

    /// The reply consumer behind `amq.rabbitmq.reply-to.<suffix>`, if alive.
    pub fn reply_consumer(&self, suffix: &str) -> Option<ReplyConsumer> {
        self.replies
            .lock()
            .get(suffix)
            .filter(|c| c.channel.strong_count() > 0)
            .cloned()
    }

    /// The default exchange: each routing key that names a queue.
    fn walk_default(
        topo: &Topology,
        routing_key: &[u8],
        extra_keys: &[Bytes],
        queues: &mut Vec<Arc<Queue>>,
    ) {
        for key in std::iter::once(routing_key).chain(extra_keys.iter().map(|k| &k[..])) {
            if let Ok(name) = std::str::from_utf8(key)
                && let Some(queue) = topo.queues.get(name)
            {
                queues.push(queue.clone());
            }
        }
        if queues.len() > 1 {
            queues.sort_by_key(|q| Arc::as_ptr(q) as usize);
            queues.dedup_by(|a, b| Arc::ptr_eq(a, b));
        }
    }

    /// Follow bindings from `source`: exchange-to-exchange (each exchange
    /// once, so cycles end) and alternate exchanges; collect each queue once.
    fn walk(
        topo: &Topology,
        source: &Exchange,
        routing_key: &[u8],
        extra_keys: &[Bytes],
        properties: &Properties,
        queues: &mut Vec<Arc<Queue>>,
    ) {
        // Headers are decoded at most once, and only if a headers exchange asks.
        let mut headers: Option<Option<FieldTable>> = None;
        let mut visited = Visited::new(&source.name);
        let mut pending: Vec<&Exchange> = vec![source];
        while let Some(x) = pending.pop() {
            let decoded = if x.routes_on_headers() {
                headers.get_or_insert_with(|| properties.headers()).as_ref()
            } else {
                None
            };
            let mut routed = false;
            x.route(routing_key, extra_keys, decoded, &mut |dest| {
                routed = true;
                match dest {
                    Destination::Queue(q) => queues.push(q.clone()),
                    Destination::Exchange(next) => {
                        if !visited.contains(next)
                            && let Some(nx) = topo.exchanges.get(next.as_ref())
                        {
                            visited.insert(&nx.name);
                            pending.push(nx);
                        }
                    }
                }
            });
            // An exchange that routes nowhere hands the message to its alternate.
            if let (false, Some(alternate)) = (routed, x.alternate_exchange())
                && !visited.contains(alternate)
                && let Some(ax) = topo.exchanges.get(alternate)
            {
                visited.insert(&ax.name);
                pending.push(ax);
            }
        }
        if queues.len() > 1 {
            queues.sort_by_key(|q| Arc::as_ptr(q) as usize);
            queues.dedup_by(|a, b| Arc::ptr_eq(a, b));
        }
    }

    // ---- policies --------------------------------------------------------

    /// Add or replace a policy and apply the policies again to every queue
    /// and exchange (the broker stores it first).
    pub fn put_policy(&self, policy: Policy) {
        self.policies.write().put(policy);
        self.apply_policies();
    }

    /// Remove a policy; returns whether there was one by that name.
    pub fn remove_policy(&self, kind: PolicyKind, name: &str) -> bool {
        let removed = self.policies.write().remove(kind, name);
        if removed {
            self.apply_policies();
        }
        removed
    }

    /// The policies of `kind`, in precedence order.
    pub fn policies(&self, kind: PolicyKind) -> Vec<Arc<Policy>> {
        self.policies.read().list(kind).to_vec()
    }

    /// Recompute which policy applies to each exchange and queue, and
    /// apply what changed. Runs when a policy changes, never per message.
    fn apply_policies(&self) {
        let set = self.policies.read().clone();
        let queues = {
            let mut topo = self.topology.write();
            for exchange in topo.exchanges.values_mut() {
                if exchange.name.is_empty() {
                    continue;
                }
                let policy = set.for_exchange(&exchange.name);
                let same = match (&policy, exchange.policy()) {
                    (None, None) => true,
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    _ => false,
                };
                if !same {
                    exchange.set_policy(policy);
                }
            }
            topo.queues.values().cloned().collect::<Vec<_>>()
        };
        // Outside the topology lock: applying may dead-letter, which routes.
        for queue in queues {
            queue.apply_policies(set.for_queue(&queue.name, queue.args.queue_type));
        }
    }

    /// The policy that applies to exchange `name`, if any.
    pub fn exchange_policy(&self, name: &str) -> Option<Arc<Policy>> {
        self.topology
            .read()
            .exchanges
            .get(name)
            .and_then(|x| x.policy().cloned())
    }

    // ---- listing ---------------------------------------------------------

    /// Every queue (for shutdown, listing and definitions).
    pub fn queues(&self) -> Vec<Arc<Queue>> {
        self.topology.read().queues.values().cloned().collect()
    }

    /// Every exchange but the default one, with whether it is durable (for
    /// definitions and listing), by name.
    pub fn exchange_records(&self) -> Vec<(ExchangeRecord, bool)> {
        let topo = self.topology.read();
        let mut all: Vec<(ExchangeRecord, bool)> = topo
            .exchanges
            .values()
            .filter(|x| !x.name.is_empty())
            .map(|x| (self.exchange_record(x), x.durable))
            .collect();
        all.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        all
    }

    /// Every binding (the default exchange's implicit ones aside), as the
    /// store and definitions record it.
    pub fn binding_records(&self) -> Vec<BindingRecord> {
        let topo = self.topology.read();
        let mut names: Vec<&Arc<str>> = topo.exchanges.keys().collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|name| topo.exchanges.get(name))
            .flat_map(|x| x.bindings().iter().map(|b| self.binding_record(&x.name, b)))
            .collect()
    }

    /// Whether an exchange named `name` exists.
    pub fn has_exchange(&self, name: &str) -> bool {
        self.topology.read().exchanges.contains_key(name)
    }

    /// Whether a queue named `name` exists.
    pub fn has_queue(&self, name: &str) -> bool {
        self.topology.read().queues.contains_key(name)
    }

    /// Whether `name` is a topic exchange (whose binding keys topic
    /// permissions govern).
    pub fn is_topic_exchange(&self, name: &str) -> bool {
        self.topology
            .read()
            .exchanges
            .get(name)
            .is_some_and(is_topic)
    }

    /// Every exchange as the management API lists it, the default
    /// exchange (named "") first.
    pub fn exchange_infos(&self) -> Vec<ExchangeInfo> {
        let topo = self.topology.read();
        let mut list = Vec::with_capacity(topo.exchanges.len() + 1);
        list.push(ExchangeInfo {
            name: self.default_exchange.clone(),
            kind: "direct",
            durable: true,
            auto_delete: false,
            internal: false,
            arguments: FieldTable::default(),
            publish_in: self.default_counters.publish_in.get(),
            publish_out: self.default_counters.publish_out.get(),
        });
        for x in topo.exchanges.values() {
            list.push(ExchangeInfo {
                name: x.name.clone(),
                kind: x.type_name(),
                durable: x.durable,
                auto_delete: x.auto_delete,
                internal: x.internal,
                arguments: x.arguments.clone(),
                publish_in: x.counters.publish_in.get(),
                publish_out: x.counters.publish_out.get(),
            });
        }
        list
    }

    /// Every binding, the default exchange's implicit ones (one per queue)
    /// included, as RabbitMQ lists them.
    pub fn binding_infos(&self) -> Vec<BindingInfo> {
        let topo = self.topology.read();
        let mut list = Vec::new();
        for name in topo.queues.keys() {
            list.push(BindingInfo {
                source: self.default_exchange.clone(),
                destination: name.clone(),
                to_queue: true,
                routing_key: name.to_string(),
                arguments: FieldTable::default(),
            });
        }
        for x in topo.exchanges.values() {
            for binding in x.bindings() {
                let destination = match &binding.destination {
                    Destination::Queue(q) => q.name.clone(),
                    Destination::Exchange(name) => name.clone(),
                };
                list.push(BindingInfo {
                    source: x.name.clone(),
                    destination,
                    to_queue: binding.destination.is_queue(),
                    routing_key: binding.routing_key.clone(),
                    arguments: binding.arguments.clone(),
                });
            }
        }
        list
    }

    /// How many queues there are.
    pub fn queue_count(&self) -> usize {
        self.topology.read().queues.len()
    }

    /// How many exchanges there are, the default one included.
    pub fn exchange_count(&self) -> usize {
        self.topology.read().exchanges.len() + 1
    }

    /// Names of the exchanges.
    pub fn exchange_names(&self) -> Vec<String> {
        self.topology
            .read()
            .exchanges
            .keys()
            .map(|k| k.to_string())
            .collect()
    }
}

impl Republish for VHost {
    fn route_internal(&self, exchange: &str, message: &Message, queues: &mut Vec<Arc<Queue>>) {
        let topo = self.topology.read();
        if exchange.is_empty() {
            Self::walk_default(&topo, &message.routing_key, &message.extra_keys, queues);
            return;
        }
        if let Some(source) = topo.exchanges.get(exchange) {
            Self::walk(
                &topo,
                source,
                &message.routing_key,
                &message.extra_keys,
                &message.properties,
                queues,
            );
        }
    }

    fn expire_queue(&self, queue: &Arc<Queue>) {
        if let Some(consumers) = self.delete_queue_instance(queue) {
            for consumer in consumers {
                consumer.channel.cancelled_by_broker(&consumer);
            }
        }
    }
}

/// The exchanges a publish has passed through. Most publishes see one or
/// two, where a short list beats hashing; a client-built chain or mesh of
/// exchanges moves to a set, so each step stays O(1).
enum Visited<'a> {
    Few(Vec<&'a str>),
    Many(HashSet<&'a str>),
}

impl<'a> Visited<'a> {
    /// Past this many, the list becomes a set.
    const FEW: usize = 16;

    fn new(first: &'a str) -> Self {
        Visited::Few(vec![first])
    }

    fn contains(&self, name: &str) -> bool {
        match self {
            Visited::Few(list) => list.contains(&name),
            Visited::Many(set) => set.contains(name),
        }
    }

    fn insert(&mut self, name: &'a str) {
        match self {
            Visited::Few(list) if list.len() < Self::FEW => list.push(name),
            Visited::Few(list) => {
                let mut set: HashSet<&'a str> = list.drain(..).collect();
                set.insert(name);
                *self = Visited::Many(set);
            }
            Visited::Many(set) => {
                set.insert(name);
            }
        }
    }
}

/// Count a publish into an exchange, and whether it routed anywhere.
#[inline]
fn count_routed(counters: &crate::stats::ExchangeCounters, queues: &[Arc<Queue>]) {
    counters.publish_in.incr();
    if !queues.is_empty() {
        counters.publish_out.incr();
    }
}

/// A topic exchange, by its declared type (a delayed-message exchange
/// routing as a topic one is not: RabbitMQ checks topic permissions by type).
fn is_topic(exchange: &Exchange) -> bool {
    exchange.kind == ExchangeKind::Topic && exchange.delayer().is_none()
}

/// An argument naming an exchange must be a long string; RabbitMQ checks
/// this before anything else about a new queue or exchange.
fn check_name_arg(arguments: &FieldTable, key: &str, entity: &str) -> AmqpResult<()> {
    match lookup(arguments, key) {
        None | Some(amq_protocol::types::AMQPValue::LongString(_)) => Ok(()),
        Some(other) => Err(amqp_err!(
            PreconditionFailed,
            "invalid type '{}' for arg '{key}' in {entity}",
            crate::protocol::table::type_name(other)
        )),
    }
}

/// RabbitMQ's argument equivalence: for each key that matters, the values
/// must be of the same type class and equal (a missing key equals only a
/// missing key; x-queue-type "classic" equals a missing one).
fn check_args_equivalence(
    current: &FieldTable,
    received: &FieldTable,
    name: &str,
    keys: &[&str],
) -> AmqpResult<()> {
    for key in keys {
        let (a, b) = (lookup(current, key), lookup(received, key));
        let same = match (a, b) {
            (None, None) => true,
            (Some(x), Some(y)) => equivalent(x, y),
            (None, Some(v)) | (Some(v), None) => {
                *key == "x-queue-type" && crate::protocol::table::as_bytes(v) == Some(b"classic")
            }
        };
        if !same {
            // Both present: RabbitMQ prints the bare values; one missing: typed.
            let (received, current) = match (b, a) {
                (Some(x), Some(y)) => (
                    format!("'{}'", value_text(x)),
                    format!("'{}'", value_text(y)),
                ),
                _ => (describe_value(b), describe_value(a)),
            };
            return Err(amqp_err!(
                PreconditionFailed,
                "inequivalent arg '{key}' for {name}: received {received} but current is {current}"
            ));
        }
    }
    Ok(())
}

/// A topology write's outcome as the method's: a record that could not be
/// written fails the method with 541 INTERNAL_ERROR, a connection error,
/// as RabbitMQ closes the connection when its channel process fails on an
/// internal (database) error.
fn written_to_store(stored: Stored, what: &str) -> AmqpResult<()> {
    stored.map_err(|e| {
        tracing::error!("cannot store {what}: {e}");
        amqp_err!(InternalError, "cannot store {what}: {e}")
    })
}

/// A record deletion that failed is logged: the entity is gone from memory
/// already, and its record would bring it back at the next start.
fn removed_from_store(stored: Stored) {
    if let Err(e) = stored {
        tracing::error!("cannot remove a record from the store: {e}; it may come back at restart");
    }
}
