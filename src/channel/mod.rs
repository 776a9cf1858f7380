//! Channels: content assembly, method dispatch and the close rules.
//!
//! A [`Channel`] is owned by its connection's task; the part other tasks
//! touch (delivery tags, unacked deliveries, prefetch) is its
//! [`ChannelLink`]. Handlers for each AMQP class live in
//! their own files: `declare` (exchange and queue), `consume` (qos, consume,
//! get, ack), `publish` (publish, confirms, returns) and `tx`.
//!
//! Before each operation RabbitMQ checks, a handler asks the access room
//! through the channel's [`PermissionCache`], at the point RabbitMQ asks.

pub mod confirm;
mod consume;
mod declare;
pub use declare::with_default_queue_type;
pub mod link;
mod publish;
mod tx;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use amq_protocol::protocol::{
    AMQPClass, access, basic, channel as chan, confirm as confirm_methods, exchange, queue,
    tx as tx_methods,
};
use amq_protocol::types::ShortString;
use bytes::{Bytes, BytesMut};

use crate::access::cache::Asker;
use crate::access::{AuthUser, ChannelSlot, Permission, PermissionCache, ResourceKind, UserLimit};
use crate::amqp_err;
use crate::broker::Broker;
use crate::client::handle::ConnectionHandle;
use crate::metrics::counters;
use crate::protocol::frame::{FRAME_BODY, FRAME_HEADER, FRAME_METHOD};
use crate::protocol::method::{self, Method, Publish};
use crate::protocol::{AmqpError, AmqpResult, Frame, Properties};
use crate::queue::{Consumer, ConsumerRemoval, Queue};
use crate::vhost::VHost;
use confirm::Confirms;
use link::{ChannelLink, Unacked};
use tx::Tx;

/// What a connection shares with its channels after `connection.open`.
#[derive(Debug)]
pub struct Session {
    pub broker: Arc<Broker>,
    pub vhost: Arc<VHost>,
    pub handle: Arc<ConnectionHandle>,
    /// Who logged in, with the tags they had then.
    pub user: AuthUser,
    /// The user's open channels, on all connections (for `max-channels`).
    user_channels: Arc<AtomicUsize>,
    /// Exclusive queues this connection declared; deleted when it closes.
    exclusive_queues: RefCell<Vec<Arc<Queue>>>,
    /// Replies held until a sync ticket is durable. While any are held, the
    /// connection reads no further input, so replies keep their order.
    held: RefCell<Option<HeldReplies>>,
}

/// Replies waiting for the disk.
#[derive(Debug, Default)]
pub struct HeldReplies {
    pub ticket: u64,
    pub replies: Vec<(u16, AMQPClass)>,
}

impl Session {
    pub fn new(
        broker: Arc<Broker>,
        vhost: Arc<VHost>,
        handle: Arc<ConnectionHandle>,
        user: AuthUser,
        user_channels: Arc<AtomicUsize>,
    ) -> Self {
        Session {
            broker,
            vhost,
            handle,
            user,
            user_channels,
            exclusive_queues: RefCell::new(Vec::new()),
            held: RefCell::new(None),
        }
    }

    /// A mark to pass to [`Session::reply`]: the store's topology write count.
    pub fn topology_mark(&self) -> u64 {
        self.broker.store.topology_writes()
    }

    /// Answer a method that may have changed durable topology: if the store
    /// was written since `mark`, the answer waits until that is on disk.
    pub fn reply(&self, channel: u16, method: AMQPClass, mark: u64) {
        let changed = self.broker.store.topology_writes() != mark;
        self.reply_when(channel, method, changed);
    }

    /// Answer now, or after the next flush when `needs_sync`. An answer
    /// behind a held one is held too, to keep the order.
    pub fn reply_when(&self, channel: u16, method: AMQPClass, needs_sync: bool) {
        let mut held = self.held.borrow_mut();
        if !needs_sync && held.is_none() {
            drop(held);
            self.send(channel, method);
            return;
        }
        let ticket = if needs_sync {
            self.broker.store.request_sync()
        } else {
            0
        };
        let entry = held.get_or_insert_with(HeldReplies::default);
        entry.ticket = entry.ticket.max(ticket);
        entry.replies.push((channel, method));
    }

    /// The ticket held replies wait for, if any.
    pub fn held_ticket(&self) -> Option<u64> {
        self.held.borrow().as_ref().map(|h| h.ticket)
    }

    /// Send the held replies (their ticket is durable).
    /// Drop the held replies: the change they answer could not be made
    /// durable, and the connection closes instead.
    pub fn discard_held(&self) {
        self.held.borrow_mut().take();
    }

    pub fn release_held(&self) {
        if let Some(held) = self.held.borrow_mut().take() {
            for (channel, method) in held.replies {
                self.send(channel, method);
            }
        }
    }

    pub fn connection_id(&self) -> u64 {
        self.handle.id
    }

    /// This connection's user and vhost, to ask the access room about.
    pub fn asker(&self) -> Asker<'_> {
        Asker {
            access: &self.broker.access,
            user: &self.user.name,
            vhost: &self.vhost.name,
        }
    }

    /// Send a method frame built by amq-protocol.
    pub fn send(&self, channel: u16, method: AMQPClass) {
        self.handle.outbox.push(|f| f.put_class(channel, &method));
    }

    /// Tell the channels of deleted queues' consumers that they were cancelled.
    pub fn notify_cancelled(&self, consumers: Vec<Arc<Consumer>>) {
        for consumer in consumers {
            consumer.channel.cancelled_by_broker(&consumer);
        }
    }

    /// Delete a queue object (auto-delete, exclusive owner gone).
    pub fn delete_queue(&self, queue: &Arc<Queue>) {
        if let Some(consumers) = self.vhost.delete_queue_instance(queue) {
            self.notify_cancelled(consumers);
        }
    }

    fn remember_exclusive(&self, queue: Arc<Queue>) {
        self.exclusive_queues.borrow_mut().push(queue);
    }

    /// Delete the exclusive queues this connection declared.
    pub fn release_exclusive_queues(&self) {
        let queues = std::mem::take(&mut *self.exclusive_queues.borrow_mut());
        for queue in queues {
            self.delete_queue(&queue);
        }
    }
}

/// Whether a channel is still open after a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum ChannelOutcome {
    Open,
    Closed,
}

/// Where a channel is in a publish's method, header, body sequence.
#[derive(Debug, Default)]
enum Content {
    #[default]
    Idle,
    Header(Publish),
    Body {
        publish: Publish,
        properties: Properties,
        remaining: u64,
        parts: Vec<Bytes>,
    },
}

/// How deliveries taken from the unacked list are settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    Ack,
    Requeue,
    Discard,
}

#[derive(Debug)]
pub struct Channel {
    pub id: u16,
    link: Arc<ChannelLink>,
    /// We sent `channel.close` and wait for `close-ok`.
    closing: bool,
    content: Content,
    consumers: HashMap<Arc<str>, (Arc<Queue>, Arc<Consumer>)>,
    /// `basic.qos` global=false: the prefetch of consumers created from now on.
    prefetch_count: u16,
    confirms: Option<Confirms>,
    tx: Option<Tx>,
    /// What an empty queue name means in later methods.
    last_queue: Option<String>,
    /// Reused for every publish's routing result.
    route_buf: Vec<Arc<Queue>>,
    /// The direct reply-to consumer: its tag and reply-address suffix.
    reply: Option<(Arc<str>, String)>,
    /// A reply published here filled its requester's connection: this
    /// connection takes no more input until that one has room.
    reply_room: Option<crate::vhost::RoomWait>,
    /// The permission checks this channel passed.
    permissions: PermissionCache,
    /// Counts the channel against its user's `max-channels` while it lives.
    _slot: ChannelSlot,
    /// Counts the channel in `rabbitmq_channels` while it lives.
    _open: counters::OpenChannel,
}

impl Channel {
    /// Open channel `id` and answer `channel.open-ok`, unless the user has
    /// as many channels open as its `max-channels` allows (530, closing the
    /// connection, as in RabbitMQ).
    pub fn open(id: u16, session: &Session) -> AmqpResult<Channel> {
        let user = &session.user.name;
        let max = session
            .broker
            .access
            .user_limit(user, UserLimit::MaxChannels);
        let slot = ChannelSlot::take(&session.user_channels, max).map_err(|limit| {
            amqp_err!(
                NotAllowed,
                "number of channels opened for user '{user}' has reached the maximum allowed user limit of ({limit})"
            )
        })?;
        session.send(
            id,
            AMQPClass::Channel(chan::AMQPMethod::OpenOk(chan::OpenOk {})),
        );
        let link = Arc::new(ChannelLink::new(
            id,
            session.handle.clone(),
            session.broker.totals.clone(),
        ));
        session.handle.stats.add_channel(link.clone());
        Ok(Channel {
            id,
            link,
            closing: false,
            content: Content::Idle,
            consumers: HashMap::new(),
            prefetch_count: 0,
            confirms: None,
            tx: None,
            last_queue: None,
            route_buf: Vec::new(),
            reply: None,
            reply_room: None,
            permissions: PermissionCache::default(),
            _slot: slot,
            _open: counters::OpenChannel::new(),
        })
    }

    /// May this channel's user do `permission` to a resource? (403 if not.)
    fn check(
        &mut self,
        s: &Session,
        kind: ResourceKind,
        name: &str,
        permission: Permission,
    ) -> AmqpResult<()> {
        self.permissions
            .check(s.asker(), kind, name.as_bytes(), permission)
    }

    /// Forget the permission checks passed so far (the channel was idle).
    pub fn forget_permissions(&mut self) {
        self.permissions.clear();
    }

    pub fn handle_frame(&mut self, s: &Session, frame: Frame) -> AmqpResult<ChannelOutcome> {
        if self.closing {
            return Ok(self.handle_while_closing(s, &frame));
        }
        match (std::mem::take(&mut self.content), frame.kind) {
            (Content::Idle, FRAME_METHOD) => {
                let method = method::decode(&frame.payload)?;
                if let Method::Publish(publish) = method {
                    self.content = Content::Header(publish);
                    return Ok(ChannelOutcome::Open);
                }
                let (class_id, method_id) = method.ids();
                self.handle_method(s, method)
                    .map_err(|e| e.in_method(class_id, method_id))
            }
            (Content::Idle, _) => Err(amqp_err!(
                UnexpectedFrame,
                "expected method frame, got non method frame instead"
            )),
            (Content::Header(publish), FRAME_HEADER) => self.on_header(s, publish, frame.payload),
            (Content::Header(_), _) => Err(amqp_err!(
                UnexpectedFrame,
                "expected content header for class 60, got non content header frame instead"
            )
            .in_method(60, 40)),
            (
                Content::Body {
                    publish,
                    properties,
                    remaining,
                    mut parts,
                },
                FRAME_BODY,
            ) => {
                let len = frame.payload.len() as u64;
                if len > remaining {
                    return Err(amqp_err!(
                        FrameError,
                        "content body frame exceeds remaining content size"
                    )
                    .in_method(60, 40));
                }
                if !frame.payload.is_empty() {
                    parts.push(frame.payload);
                }
                if len == remaining {
                    let body = join(parts);
                    self.complete_publish(s, publish, properties, body)?;
                } else {
                    self.content = Content::Body {
                        publish,
                        properties,
                        remaining: remaining - len,
                        parts,
                    };
                }
                Ok(ChannelOutcome::Open)
            }
            (Content::Body { .. }, _) => Err(amqp_err!(
                UnexpectedFrame,
                "expected content body, got non content body frame instead"
            )
            .in_method(60, 40)),
        }
    }

    fn on_header(
        &mut self,
        s: &Session,
        publish: Publish,
        payload: Bytes,
    ) -> AmqpResult<ChannelOutcome> {
        if payload.len() < 12 {
            return Err(amqp_err!(
                FrameError,
                "type 2, {}: unknown_frame",
                crate::protocol::frame::payload_snippet(&payload)
            ));
        }
        let class_id = u16::from_be_bytes([payload[0], payload[1]]);
        let weight = u16::from_be_bytes([payload[2], payload[3]]);
        let mut size = [0u8; 8];
        size.copy_from_slice(&payload[4..12]);
        let body_size = u64::from_be_bytes(size);
        if weight != 0 {
            return Err(amqp_err!(
                UnexpectedFrame,
                "expected content header for class 60, got non content header frame instead"
            )
            .in_method(60, 40));
        }
        if class_id != 60 {
            return Err(amqp_err!(
                UnexpectedFrame,
                "expected content header for class 60, got one for class {class_id} instead"
            )
            .in_method(60, 40));
        }
        let max = s.broker.config.max_message_size;
        if body_size > max {
            return Err(amqp_err!(
                PreconditionFailed,
                "message size {body_size} is larger than configured max size {max}"
            )
            .in_method(60, 40));
        }
        let properties = Properties::parse(payload.slice(12..)).map_err(|e| {
            amqp_err!(InternalError, "cannot decode content properties: {e}")
                .in_method(60, 40)
                .on_connection()
        })?;
        if body_size == 0 {
            self.complete_publish(s, publish, properties, Bytes::new())?;
        } else {
            self.content = Content::Body {
                publish,
                properties,
                remaining: body_size,
                parts: Vec::new(),
            };
        }
        Ok(ChannelOutcome::Open)
    }

    /// After we sent `channel.close`, only `close` and `close-ok` matter.
    fn handle_while_closing(&mut self, s: &Session, frame: &Frame) -> ChannelOutcome {
        if frame.kind != FRAME_METHOD {
            return ChannelOutcome::Open;
        }
        match method::decode(&frame.payload) {
            Ok(Method::Other(AMQPClass::Channel(chan::AMQPMethod::CloseOk(_)))) => {
                ChannelOutcome::Closed
            }
            Ok(Method::Other(AMQPClass::Channel(chan::AMQPMethod::Close(_)))) => {
                s.send(
                    self.id,
                    AMQPClass::Channel(chan::AMQPMethod::CloseOk(chan::CloseOk {})),
                );
                ChannelOutcome::Closed
            }
            _ => ChannelOutcome::Open,
        }
    }

    fn handle_method(&mut self, s: &Session, method: Method) -> AmqpResult<ChannelOutcome> {
        let other = match method {
            Method::Ack {
                delivery_tag,
                multiple,
            } => {
                self.settle(s, delivery_tag, multiple, Settle::Ack)?;
                return Ok(ChannelOutcome::Open);
            }
            Method::Nack {
                delivery_tag,
                multiple,
                requeue,
            } => {
                let how = if requeue {
                    Settle::Requeue
                } else {
                    Settle::Discard
                };
                self.settle(s, delivery_tag, multiple, how)?;
                return Ok(ChannelOutcome::Open);
            }
            Method::Reject {
                delivery_tag,
                requeue,
            } => {
                let how = if requeue {
                    Settle::Requeue
                } else {
                    Settle::Discard
                };
                self.settle(s, delivery_tag, false, how)?;
                return Ok(ChannelOutcome::Open);
            }
            Method::Qos {
                prefetch_size,
                prefetch_count,
                global,
            } => {
                self.qos(s, prefetch_size, prefetch_count, global)?;
                return Ok(ChannelOutcome::Open);
            }
            // Publish is taken apart before dispatch; other methods follow.
            Method::Publish(_) => return Ok(ChannelOutcome::Open),
            Method::Other(class) => class,
        };
        match other {
            AMQPClass::Channel(m) => return self.channel_method(s, m),
            AMQPClass::Access(access::AMQPMethod::Request(_)) => s.send(
                self.id,
                AMQPClass::Access(access::AMQPMethod::RequestOk(access::RequestOk {})),
            ),
            AMQPClass::Exchange(m) => self.exchange_method(s, m)?,
            AMQPClass::Queue(m) => self.queue_method(s, m)?,
            AMQPClass::Basic(m) => self.basic_method(s, m)?,
            AMQPClass::Confirm(confirm_methods::AMQPMethod::Select(select)) => {
                self.confirm_select(s, select.nowait)?
            }
            AMQPClass::Tx(m) => self.tx_method(s, m)?,
            _ => return Err(amqp_err!(CommandInvalid, "unimplemented method")),
        }
        Ok(ChannelOutcome::Open)
    }

    fn channel_method(&mut self, s: &Session, m: chan::AMQPMethod) -> AmqpResult<ChannelOutcome> {
        match m {
            chan::AMQPMethod::Open(_) => Err(amqp_err!(ChannelError, "second 'channel.open' seen")),
            chan::AMQPMethod::Close(_) => {
                self.release(s);
                s.send(
                    self.id,
                    AMQPClass::Channel(chan::AMQPMethod::CloseOk(chan::CloseOk {})),
                );
                Ok(ChannelOutcome::Closed)
            }
            chan::AMQPMethod::Flow(flow) if flow.active => {
                s.send(
                    self.id,
                    AMQPClass::Channel(chan::AMQPMethod::FlowOk(chan::FlowOk { active: true })),
                );
                Ok(ChannelOutcome::Open)
            }
            chan::AMQPMethod::Flow(_) => Err(amqp_err!(NotImplemented, "active=false")),
            _ => Err(amqp_err!(CommandInvalid, "unimplemented method")),
        }
    }

    fn basic_method(&mut self, s: &Session, m: basic::AMQPMethod) -> AmqpResult<()> {
        use basic::AMQPMethod as B;
        match m {
            B::Consume(consume) => self.consume(s, consume),
            B::Cancel(cancel) => {
                self.cancel(s, cancel.consumer_tag.as_str(), cancel.nowait);
                Ok(())
            }
            B::Get(get) => self.get(s, get.queue.as_str(), get.no_ack),
            B::Recover(recover) => self.recover(s, recover.requeue, true),
            B::RecoverAsync(recover) => self.recover(s, recover.requeue, false),
            _ => Err(amqp_err!(CommandInvalid, "unimplemented method")),
        }
    }

    fn exchange_method(&mut self, s: &Session, m: exchange::AMQPMethod) -> AmqpResult<()> {
        use exchange::AMQPMethod as E;
        match m {
            E::Declare(d) => self.exchange_declare(s, d),
            E::Delete(d) => self.exchange_delete(s, d),
            E::Bind(b) => self.exchange_bind(s, b),
            E::Unbind(u) => self.exchange_unbind(s, u),
            _ => Err(amqp_err!(CommandInvalid, "unimplemented method")),
        }
    }

    fn queue_method(&mut self, s: &Session, m: queue::AMQPMethod) -> AmqpResult<()> {
        use queue::AMQPMethod as Q;
        match m {
            Q::Declare(d) => self.queue_declare(s, d),
            Q::Bind(b) => self.queue_bind(s, b),
            Q::Unbind(u) => self.queue_unbind(s, u),
            Q::Purge(p) => self.queue_purge(s, p),
            Q::Delete(d) => self.queue_delete(s, d),
            _ => Err(amqp_err!(CommandInvalid, "unimplemented method")),
        }
    }

    fn tx_method(&mut self, s: &Session, m: tx_methods::AMQPMethod) -> AmqpResult<()> {
        use tx_methods::AMQPMethod as T;
        match m {
            T::Select(_) => self.tx_select(s),
            T::Commit(_) => self.tx_commit(s),
            T::Rollback(_) => self.tx_rollback(s),
            _ => Err(amqp_err!(CommandInvalid, "unimplemented method")),
        }
    }

    /// An empty queue name means the queue last declared on this channel.
    fn expand_queue_name(&self, name: &str) -> AmqpResult<String> {
        let name = strip_cr_lf(name);
        if !name.is_empty() {
            return Ok(name);
        }
        self.last_queue
            .clone()
            .ok_or_else(|| amqp_err!(NotFound, "no previously declared queue"))
    }

    // ---- closing ---------------------------------------------------------

    /// Close the channel with an error: send `channel.close`, stop
    /// deliveries and requeue what was unacked, then wait for `close-ok`.
    pub fn close_with_error(&mut self, s: &Session, error: AmqpError) {
        if self.closing {
            return;
        }
        self.release(s);
        self.closing = true;
        s.send(
            self.id,
            AMQPClass::Channel(chan::AMQPMethod::Close(chan::Close {
                reply_code: error.code.code(),
                reply_text: ShortString::from(error.reply_text()),
                class_id: error.class_id,
                method_id: error.method_id,
            })),
        );
    }

    /// Give back everything the channel holds: cancel its consumers (which
    /// may auto-delete queues) and requeue its unacknowledged deliveries.
    pub fn release(&mut self, s: &Session) {
        self.content = Content::Idle;
        if let Some((_, suffix)) = self.reply.take() {
            s.vhost.unregister_reply(&suffix);
        }
        let unacked = {
            let mut deliveries = self.link.deliveries.lock();
            deliveries.open = false;
            let mut all = deliveries.take_all();
            deliveries.release(&all);
            if let Some(tx) = self.tx.take() {
                let mut pending = tx.into_pending_acks();
                deliveries.release(&pending);
                all.append(&mut pending);
            }
            all
        };
        // Requeue first (this channel has no credit left, so nothing comes
        // back to it): a consumer taking over then sees the returned
        // messages in their places, ahead of the waiting ones.
        settle_unacked(unacked, Settle::Requeue);
        for (_, (queue, consumer)) in self.consumers.drain() {
            if queue.remove_consumer(&consumer) == ConsumerRemoval::RemovedLastOfAutoDelete {
                s.delete_queue(&queue);
            }
        }
    }

    /// What a reply published on this channel left the connection to wait
    /// for (see [`crate::vhost::ReplyChannel::deliver_reply`]).
    pub fn take_reply_room(&mut self) -> Option<crate::vhost::RoomWait> {
        self.reply_room.take()
    }

    /// The part of the channel other tasks share.
    pub fn link(&self) -> &Arc<ChannelLink> {
        &self.link
    }

    /// The connection's outbox has room again: let queues deliver.
    pub fn resume_deliveries(&self) {
        for (queue, _) in self.consumers.values() {
            queue.drain();
        }
    }

    /// The broker cancelled a consumer (its queue went away). The
    /// `basic.cancel` queues behind any reply still waiting for the disk,
    /// as in RabbitMQ, where a deleted queue's consumers hear of it only
    /// after `queue.delete-ok` (py-amqp raises inside `queue_delete`
    /// otherwise).
    pub fn consumer_cancelled_by_broker(&mut self, s: &Session, tag: &str) {
        if self.consumers.remove(tag).is_some()
            && !self.closing
            && s.handle.capabilities.consumer_cancel_notify
        {
            s.reply_when(
                self.id,
                AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
                    consumer_tag: ShortString::from(tag),
                    nowait: true,
                })),
                false,
            );
        }
    }
}

/// Settle deliveries taken off a channel's unacked list, one call per run of
/// deliveries from the same queue.
fn settle_unacked(items: Vec<Unacked>, how: Settle) {
    let mut items = items.into_iter().peekable();
    while let Some(first) = items.next() {
        let queue = first.queue;
        let mut batch = vec![first.message];
        while let Some(next) = items.peek() {
            if !Arc::ptr_eq(&next.queue, &queue) {
                break;
            }
            if let Some(next) = items.next() {
                batch.push(next.message);
            }
        }
        match how {
            Settle::Ack => {
                counters::ACKNOWLEDGED.add(queue.args.queue_type, batch.len() as u64);
                queue.ack(batch)
            }
            Settle::Requeue => queue.requeue(batch),
            Settle::Discard => queue.discard(batch),
        }
    }
}

/// RabbitMQ strips CR and LF from entity names.
fn strip_cr_lf(name: &str) -> String {
    name.replace(['\r', '\n'], "")
}

/// A body from its frames: one frame stays a zero-copy slice.
fn join(mut parts: Vec<Bytes>) -> Bytes {
    match parts.len() {
        0 => Bytes::new(),
        1 => parts.pop().unwrap_or_default(),
        _ => {
            let mut body = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
            for part in parts {
                body.extend_from_slice(&part);
            }
            body.freeze()
        }
    }
}

impl Drop for Channel {
    /// A closed channel is no longer listed.
    fn drop(&mut self) {
        self.link.conn.stats.remove_channel(self.id);
    }
}
