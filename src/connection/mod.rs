//! One task per client socket: the handshake, frame dispatch to channels,
//! heartbeats, and the connection-level close rules.
//!
//! The task reads into one buffer, handles every complete frame in it, then
//! waits for more input, for mail from other tasks ([`ConnEvent`]), or for a
//! deadline (handshake, heartbeat, closing). Outgoing frames go through the
//! connection's [`Outbox`] to a separate writer task, or,
//! when a batch of input produced only a little for an idle socket, straight
//! to the socket at the end of the batch ([`Batch`]).
//!
//! Ending a connection follows RabbitMQ: once `connection.close` has gone
//! either way, the connection's channels, exclusive queues and registry
//! entry are released at once, but the socket stays open for the client to
//! close ([`State::Closing`]); input is read and dropped meanwhile. Only after
//! a `close-ok` from the client, or a timeout, does the broker close it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use amq_protocol::protocol::{AMQPClass, connection as conn_methods};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::codec::Decoder;
use tracing::{debug, info, warn};

use crate::access::{AuthError, AuthUser, KNOWN_MECHANISMS, offered_mechanisms};
use crate::alarm::AlarmState;
use crate::amqp_err;
use crate::broker::Broker;
use crate::channel::{Channel, ChannelOutcome, Session};
use crate::client::handle::{ClientCapabilities, ConnEvent, ConnectionHandle, ConnectionInfo};
use crate::client::outbox::{Batch, Outbox, run_writer};
use crate::client::socket::ClientSocket;
use crate::protocol::frame::{
    FRAME_BODY, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD, FRAME_MIN_SIZE, PROTOCOL_HEADER,
    payload_snippet,
};
use crate::protocol::method::{self, Method};
use crate::protocol::{AmqpError, AmqpResult, Frame, FrameCodec, FrameError, ReplyCode};
use crate::stats::ConnectionStats;
use crate::tls::TlsClient;

/// The RabbitMQ version whose behaviour Warren follows, as announced to clients.
pub const COMPATIBLE_VERSION: &str = "3.10.8";

/// How long a closed connection keeps its socket for the client to close,
/// at most (RabbitMQ's `CLOSING_TIMEOUT`); with heartbeats of a shorter
/// interval, that interval.
const CLOSING_TIMEOUT: Duration = Duration::from_secs(30);
/// The same wait before the client has tuned the connection (RabbitMQ's
/// `NORMAL_TIMEOUT`): after a failed login, say.
const HANDSHAKE_CLOSING_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a connection ignores a client it no longer trusts (lost
/// framing, a close in the middle of the handshake) before it drops the
/// socket, as RabbitMQ's `SILENT_CLOSE_DELAY`: nothing the client sends is
/// answered, not even a `close-ok`.
const SILENT_CLOSE_DELAY: Duration = Duration::from_secs(3);
/// Once the broker shuts down, a connection that sent `connection.close`
/// waits this long for `close-ok`, and one the client had closed not at all.
const SHUTDOWN_CLOSE_OK_WAIT: Duration = Duration::from_secs(2);
/// After the connection ends, how long its writer may take to get the last
/// frames out. A client that does not read them does not keep the socket.
const FINAL_FLUSH: Duration = Duration::from_secs(2);
/// Read buffer growth step: large enough that one read takes many frames.
const READ_CHUNK: usize = 64 * 1024;
/// A read at least this large comes from a busy connection (see `run`).
const YIELD_READ: usize = 8 * 1024;
/// Input after this long a pause finds the channels idle: they forget the
/// permission checks they passed, as RabbitMQ's channels do when they
/// hibernate (after at least a second without work).
const PERMISSION_CACHE_IDLE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    ProtocolHeader,
    StartOk,
    TuneOk,
    Open,
    Running,
    /// `connection.close` went one way or the other; everything but the
    /// socket is released. The client closes the socket, or answers our
    /// close with `close-ok`, or `closing_until` passes.
    Closing,
    /// Done: flush the outbox and drop the socket.
    Closed,
}

/// What the connection's task does after waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Continue,
    End,
}

/// The writer task, aborted when the connection's task ends or is aborted
/// itself, so a socket nobody reads cannot outlive its connection.
struct WriterTask(tokio::task::JoinHandle<()>);

impl Drop for WriterTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serve one accepted socket (TCP, or TLS after its handshake, with what
/// the handshake learnt in `tls`) until it closes.
pub async fn serve<S: ClientSocket>(
    socket: S,
    peer: SocketAddr,
    tls: Option<TlsClient>,
    broker: Arc<Broker>,
    shutdown: watch::Receiver<bool>,
) {
    let local = socket.local_addr();
    let (reader, writer) = socket.split();
    let outbox = Arc::new(Outbox::new(writer));
    let (events_tx, events_rx) = unbounded_channel();
    let mut writer_task = WriterTask({
        let outbox = outbox.clone();
        let events = events_tx.clone();
        tokio::spawn(run_writer(outbox, move || {
            let _ = events.send(ConnEvent::Writable);
        }))
    });
    let mechanisms = offered_mechanisms(&broker.config.auth_mechanisms, tls.is_some());
    let mut conn = Connection {
        id: broker.next_connection_id(),
        tls,
        mechanisms,
        // Until tune-ok, frames are held to the protocol's minimum frame
        // size, as RabbitMQ does (its initial_frame_max).
        codec: FrameCodec::new(FRAME_MIN_SIZE),
        broker,
        peer,
        outbox: outbox.clone(),
        events_tx,
        state: State::ProtocolHeader,
        channel_max: 0,
        frame_max: 0,
        heartbeat: 0,
        capabilities: ClientCapabilities::default(),
        client_name: None,
        info: ConnectionInfo {
            local,
            connected_at: crate::util::now_millis(),
            ..ConnectionInfo::default()
        },
        stats: Arc::new(ConnectionStats::default()),
        user: None,
        session: None,
        channels: HashMap::new(),
        closing_until: Instant::now(),
        close_sent: false,
        deaf: false,
        shutting_down: false,
        last_read: Instant::now(),
        started: Instant::now(),
        published: false,
        blocked: false,
        sent_blocked: false,
    };
    conn.run(reader, events_rx, shutdown).await;
    conn.release();
    outbox.close();
    let flushed = tokio::time::timeout(FINAL_FLUSH, &mut writer_task.0).await;
    drop(writer_task);
    if flushed.is_err() {
        outbox.abandon_socket();
    } else {
        outbox.release_socket();
    }
}

struct Connection {
    broker: Arc<Broker>,
    id: u64,
    peer: SocketAddr,
    /// Over TLS: the client's certificate, if it sent one.
    tls: Option<TlsClient>,
    /// The SASL mechanisms offered in `connection.start`.
    mechanisms: Vec<&'static str>,
    codec: FrameCodec,
    outbox: Arc<Outbox>,
    events_tx: UnboundedSender<ConnEvent>,
    state: State,
    channel_max: u16,
    frame_max: u32,
    heartbeat: u16,
    capabilities: ClientCapabilities,
    client_name: Option<String>,
    /// What the management API lists, gathered during the handshake.
    info: ConnectionInfo,
    stats: Arc<ConnectionStats>,
    user: Option<AuthUser>,
    session: Option<Session>,
    channels: HashMap<u16, Channel>,
    /// In `Closing`: when the socket is dropped if the client has not
    /// closed it.
    closing_until: Instant,
    /// In `Closing`: we sent `connection.close` (rather than answered one).
    close_sent: bool,
    /// In `Closing`: input is dropped unread, even `close-ok` (see
    /// `SILENT_CLOSE_DELAY`).
    deaf: bool,
    /// The broker is stopping: closing connections do not linger.
    shutting_down: bool,
    last_read: Instant,
    started: Instant,
    /// A publish arrived in the current batch of input.
    published: bool,
    /// Not read because of a resource alarm.
    blocked: bool,
    /// `connection.blocked` was sent and `unblocked` is owed.
    sent_blocked: bool,
}

impl Connection {
    async fn run<R: AsyncRead + Unpin>(
        &mut self,
        mut reader: R,
        mut events: UnboundedReceiver<ConnEvent>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let mut durable = self.broker.store.syncer.subscribe();
        // One timer for the connection's life. The deadline moves later with
        // every read (heartbeats), so the timer is only moved when the
        // deadline comes earlier, and re-armed when it fires: a timer per
        // wake-up would be registered and removed from the wheel on every
        // message.
        let timer = tokio::time::sleep_until(self.deadline());
        tokio::pin!(timer);
        loop {
            let batch = Batch::open();
            if !self.congested() {
                self.process_input(&mut buf);
            }
            self.end_of_batch();
            batch.finish();
            if self.state == State::Closed {
                return;
            }
            if self.outbox.is_broken() {
                // Nothing can reach the client any more (it reset the
                // connection, or went away while it did not read).
                debug!(connection = %self.label(), "socket closed under the writer");
                return;
            }
            let reply_room = self
                .channels
                .values_mut()
                .find_map(Channel::take_reply_room);
            let next = if let Some(ticket) = self.session.as_ref().and_then(Session::held_ticket) {
                self.wait_for_disk(ticket, &mut events).await
            } else if let Some(room) = reply_room {
                self.wait_for_requester(room, &mut reader, &mut buf, &mut events)
                    .await
            } else if self.congested() {
                self.wait_for_room(&mut reader, &mut buf, &mut events).await
            } else {
                self.wait_for_input(
                    &mut reader,
                    &mut buf,
                    &mut events,
                    &mut durable,
                    &mut shutdown,
                    timer.as_mut(),
                )
                .await
            };
            if next == Next::End {
                return;
            }
        }
    }

    /// Replies wait for the disk: no further input until they go.
    async fn wait_for_disk(
        &mut self,
        ticket: u64,
        events: &mut UnboundedReceiver<ConnEvent>,
    ) -> Next {
        let store = self.broker.store.clone();
        tokio::select! {
            _ = store.syncer.wait(ticket) => {
                if store.syncer.failed(ticket) {
                    // A durable declaration whose flush failed: fail it as
                    // one whose write failed.
                    if let Some(session) = &self.session {
                        session.discard_held();
                    }
                    self.close_connection(amqp_err!(
                        InternalError,
                        "the store could not be flushed: the change is not durable"
                    ));
                } else if let Some(session) = &self.session {
                    session.release_held();
                }
            }
            Some(event) = events.recv() => self.handle_event(event),
        }
        Next::Continue
    }

    /// The client does not read what it is sent fast enough: its input is
    /// not handled until the writer catches up (`wait_for_room`).
    fn congested(&self) -> bool {
        self.state != State::Closing && self.outbox.is_congested()
    }

    /// A client that does not read its socket does not get to write more:
    /// its input waits until the writer catches up. Up to one read buffer
    /// of it is taken meanwhile, unhandled, only so that the end of input
    /// of a client that went away is noticed (it will never read again).
    async fn wait_for_room<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        buf: &mut BytesMut,
        events: &mut UnboundedReceiver<ConnEvent>,
    ) -> Next {
        let outbox = self.outbox.clone();
        let peeking = buf.len() < READ_CHUNK;
        if peeking && buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        tokio::select! {
            _ = outbox.wait_for_room() => {}
            Some(event) = events.recv() => self.handle_event(event),
            read = reader.read_buf(buf), if peeking => match read {
                Ok(0) | Err(_) => {
                    // What came before the end still counts (acks, say).
                    let batch = Batch::open();
                    self.process_input(buf);
                    batch.finish();
                    if self.state == State::Running {
                        info!(connection = %self.label(), "client closed the connection without connection.close");
                    }
                    return Next::End;
                }
                Ok(_) => self.last_read = Instant::now(),
            },
        }
        Next::Continue
    }

    /// A direct reply sent from here filled its requester's connection:
    /// like a consumer's, that connection's unread output stays bounded,
    /// so this one takes no more input (no more replies) until it has
    /// room. Mail is still handled, and the end of this client's input
    /// noticed, as in `wait_for_room`.
    async fn wait_for_requester<R: AsyncRead + Unpin>(
        &mut self,
        room: crate::vhost::RoomWait,
        reader: &mut R,
        buf: &mut BytesMut,
        events: &mut UnboundedReceiver<ConnEvent>,
    ) -> Next {
        let room = room.wait();
        tokio::pin!(room);
        loop {
            let peeking = buf.len() < READ_CHUNK;
            if peeking && buf.capacity() - buf.len() < READ_CHUNK / 4 {
                buf.reserve(READ_CHUNK);
            }
            tokio::select! {
                _ = &mut room => return Next::Continue,
                Some(event) = events.recv() => {
                    self.handle_event(event);
                    if self.state == State::Closed {
                        return Next::Continue;
                    }
                }
                read = reader.read_buf(buf), if peeking => match read {
                    Ok(0) | Err(_) => {
                        let batch = Batch::open();
                        self.process_input(buf);
                        batch.finish();
                        return Next::End;
                    }
                    Ok(_) => self.last_read = Instant::now(),
                },
            }
        }
    }

    /// Wait for input, mail from other tasks, the disk, a deadline, or the
    /// broker's shutdown.
    async fn wait_for_input<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        buf: &mut BytesMut,
        events: &mut UnboundedReceiver<ConnEvent>,
        durable: &mut watch::Receiver<u64>,
        shutdown: &mut watch::Receiver<bool>,
        mut timer: std::pin::Pin<&mut tokio::time::Sleep>,
    ) -> Next {
        // A closing connection drains its socket whatever the alarms say.
        let reading = !self.blocked || self.state == State::Closing;
        if reading && buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let deadline = self.deadline();
        if deadline < timer.deadline() {
            timer.as_mut().reset(deadline);
        }
        let waiting_for_disk = self.channels.values().any(Channel::waiting_for_disk);
        tokio::select! {
            read = reader.read_buf(buf), if reading => match read {
                Ok(0) | Err(_) => {
                    if self.state == State::Running {
                        info!(connection = %self.label(), "client closed the connection without connection.close");
                    }
                    return Next::End;
                }
                Ok(n) => {
                    self.stats.recv_oct.add(n as u64);
                    self.stats.recv_cnt.incr();
                    let now = Instant::now();
                    if now.duration_since(self.last_read) >= PERMISSION_CACHE_IDLE {
                        for channel in self.channels.values_mut() {
                            channel.forget_permissions();
                        }
                    }
                    self.last_read = now;
                    // A busy publisher (a large read) lets other tasks
                    // run before its batch is handled, so it cannot keep
                    // its consumers' writers waiting in this worker's
                    // LIFO slot. A small read is not yielded: the yield
                    // wakes an idle worker, which costs a trickle of
                    // messages a context switch each.
                    if n >= YIELD_READ {
                        tokio::task::yield_now().await;
                    }
                }
            },
            Some(event) = events.recv() => self.handle_event(event),
            changed = durable.changed(), if waiting_for_disk => {
                if changed.is_ok() {
                    let upto = *durable.borrow_and_update();
                    if let Some(session) = &self.session {
                        for channel in self.channels.values_mut() {
                            channel.on_durable(session, upto);
                        }
                    }
                }
            }
            _ = &mut timer => {
                if self.on_deadline() {
                    return Next::End;
                }
                timer.as_mut().reset(self.deadline());
            }
            // An open connection hears of the shutdown from the broker's
            // registry (`ConnEvent::Close`); the others act on it here.
            changed = shutdown.changed(), if !self.shutting_down => {
                if changed.is_err() || *shutdown.borrow() {
                    return self.on_shutdown();
                }
            }
        }
        Next::Continue
    }

    /// The broker is stopping.
    fn on_shutdown(&mut self) -> Next {
        self.shutting_down = true;
        match self.state {
            State::Running => Next::Continue,
            State::Closing if self.close_sent => {
                let until = Instant::now() + SHUTDOWN_CLOSE_OK_WAIT;
                self.closing_until = self.closing_until.min(until);
                Next::Continue
            }
            _ => Next::End,
        }
    }

    /// After a batch of input: request one sync for the batch's stored
    /// publishes and send ready confirms; block the connection if it
    /// published while a resource alarm is raised.
    fn end_of_batch(&mut self) {
        if let Some(session) = &self.session {
            for channel in self.channels.values_mut() {
                channel.flush_confirms(session);
            }
        }
        if std::mem::take(&mut self.published)
            && !self.blocked
            && self.state == State::Running
            && self.broker.alarms.active()
        {
            self.block(self.broker.alarms.state().reason());
        }
    }

    /// Stop reading from a publishing connection until the alarms clear.
    fn block(&mut self, reason: &str) {
        self.blocked = true;
        debug!(connection = %self.label(), "blocked: {reason}");
        if self.capabilities.connection_blocked {
            self.sent_blocked = true;
            self.send0(AMQPClass::Connection(conn_methods::AMQPMethod::Blocked(
                conn_methods::Blocked {
                    reason: ShortString::from(reason),
                },
            )));
        }
    }

    fn on_alarm(&mut self, state: AlarmState) {
        if state.active() || !self.blocked || self.state != State::Running {
            return;
        }
        self.blocked = false;
        debug!(connection = %self.label(), "unblocked");
        if std::mem::take(&mut self.sent_blocked) {
            self.send0(AMQPClass::Connection(conn_methods::AMQPMethod::Unblocked(
                conn_methods::Unblocked {},
            )));
        }
    }

    fn label(&self) -> String {
        match &self.client_name {
            Some(name) => format!("{} ({name})", self.peer),
            None => self.peer.to_string(),
        }
    }

    /// The next moment something must happen without input.
    fn deadline(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        match self.state {
            State::Closing => self.closing_until,
            State::Running => {
                // A blocked connection is not read, so its silence proves nothing.
                let heartbeat = if self.heartbeat > 0 && !self.blocked {
                    self.last_read + Duration::from_secs(2 * self.heartbeat as u64)
                } else {
                    far
                };
                match self.consumer_timeout() {
                    Some((due, _, _)) => {
                        let wait = due.saturating_sub(crate::util::now_millis());
                        heartbeat.min(Instant::now() + Duration::from_millis(wait))
                    }
                    None => heartbeat,
                }
            }
            State::Closed => far,
            _ => self.started + self.broker.config.handshake_timeout(),
        }
    }

    /// The earliest consumer timeout among the channels: when it falls due
    /// (milliseconds since the epoch), on which channel, with what timeout.
    /// Like RabbitMQ, only each channel's oldest delivery counts.
    fn consumer_timeout(&self) -> Option<(u64, u16, u64)> {
        let global = self.broker.config.consumer_timeout_ms;
        self.channels
            .iter()
            .filter_map(|(id, channel)| {
                let deliveries = channel.link().deliveries.lock();
                let (at, queue) = deliveries.oldest_delivery()?;
                let timeout = queue.consumer_timeout().unwrap_or(global);
                (timeout > 0).then(|| (at.saturating_add(timeout), *id, timeout))
            })
            .min()
    }

    /// Close the channels whose oldest delivery waited too long for its ack
    /// (RabbitMQ's consumer timeout); their deliveries are requeued.
    fn enforce_consumer_timeouts(&mut self) {
        while let Some((due, channel, timeout)) = self.consumer_timeout() {
            if due > crate::util::now_millis() {
                return;
            }
            warn!(
                connection = %self.label(),
                "consumer on channel {channel} timed out waiting for delivery acknowledgement; timeout used: {timeout} ms"
            );
            self.fail(
                channel,
                amqp_err!(
                    PreconditionFailed,
                    "delivery acknowledgement on channel {channel} timed out. Timeout value used: {timeout} ms. \
                     This timeout value can be configured, see consumers doc guide to learn more"
                ),
            );
        }
    }

    /// Returns true when the connection must end now.
    fn on_deadline(&mut self) -> bool {
        if self.state == State::Running {
            self.enforce_consumer_timeouts();
        }
        let now = Instant::now();
        if now < self.deadline() {
            return false;
        }
        match self.state {
            State::Closing => true,
            State::Running => {
                warn!(
                    connection = %self.label(),
                    "missed heartbeats from client, timeout: {}s", self.heartbeat
                );
                true
            }
            State::Closed => true,
            _ => {
                warn!(peer = %self.peer, "closing connection: handshake timeout");
                true
            }
        }
    }

    /// Handle every complete frame in `buf`.
    fn process_input(&mut self, buf: &mut BytesMut) {
        loop {
            if matches!(self.state, State::Closed) {
                return;
            }
            if self.deaf {
                buf.clear();
                return;
            }
            if self.state == State::ProtocolHeader {
                if buf.len() < PROTOCOL_HEADER.len() {
                    return;
                }
                let header = buf.split_to(PROTOCOL_HEADER.len());
                if &header[..] != PROTOCOL_HEADER {
                    // Tell the client which protocol we speak, then hang up.
                    self.outbox.push(|f| f.put_raw(PROTOCOL_HEADER));
                    self.state = State::Closed;
                    return;
                }
                self.send_start();
                self.state = State::StartOk;
                continue;
            }
            match self.codec.decode(buf) {
                Ok(Some(frame)) => {
                    let publish =
                        frame.kind == FRAME_METHOD && frame.payload.starts_with(&[0, 60, 0, 40]);
                    if publish {
                        self.published = true;
                    }
                    if let Err(error) = self.handle_frame(frame) {
                        self.fail(error.0, error.1);
                    }
                    // Under a resource alarm a publisher is stopped at its
                    // publish, as RabbitMQ does: the content stays unread.
                    if publish && self.state == State::Running && self.broker.alarms.active() {
                        return;
                    }
                    // Replies wait for the disk: stop until they are sent.
                    if self
                        .session
                        .as_ref()
                        .is_some_and(|s| s.held_ticket().is_some())
                    {
                        return;
                    }
                }
                Ok(None) => return,
                Err(FrameError::Protocol { error, lost_sync }) => {
                    self.close_connection(error);
                    if lost_sync {
                        // The stream cannot be framed any more: whatever
                        // follows is dropped unread until the socket goes.
                        buf.clear();
                        self.go_silent();
                        return;
                    }
                }
                Err(FrameError::Io(_)) => {
                    self.state = State::Closed;
                    return;
                }
            }
        }
    }

    /// Route a handler error to a channel or connection close.
    fn fail(&mut self, channel: u16, error: AmqpError) {
        if channel == 0 || error.closes_connection() {
            self.close_connection(error);
        } else {
            self.close_channel_with_error(channel, error);
        }
    }

    fn handle_frame(&mut self, frame: Frame) -> Result<(), (u16, AmqpError)> {
        let on_conn = |e: AmqpError| (0u16, e.on_connection());
        match self.state {
            State::Closing => return self.handle_while_closing(frame).map_err(on_conn),
            State::Closed | State::ProtocolHeader => return Ok(()),
            State::Running => {}
            _ => return self.handle_handshake(frame).map_err(on_conn),
        }
        let channel = frame.channel;
        match frame.kind {
            FRAME_METHOD | FRAME_HEADER | FRAME_BODY if channel != 0 => {
                self.handle_channel_frame(frame).map_err(|e| (channel, e))
            }
            FRAME_METHOD => {
                let method = method::decode(&frame.payload).map_err(on_conn)?;
                self.handle_connection_method(method).map_err(on_conn)
            }
            FRAME_HEARTBEAT if frame.payload.is_empty() => {
                if channel == 0 {
                    Ok(())
                } else {
                    Err(on_conn(unexpected_frame(&frame)))
                }
            }
            FRAME_HEADER | FRAME_BODY => Err(on_conn(unexpected_frame(&frame))),
            _ => Err(on_conn(unknown_frame(&frame))),
        }
    }

    fn handle_channel_frame(&mut self, frame: Frame) -> AmqpResult<()> {
        let id = frame.channel;
        let Some(session) = &self.session else {
            return Ok(());
        };
        let Some(channel) = self.channels.get_mut(&id) else {
            // channel_max bounds how many channels are open (closing ones
            // count until their close-ok), not their ids: any id may be used.
            let open = self.channels.len();
            if self.channel_max != 0 && open >= usize::from(self.channel_max) {
                return Err(amqp_err!(
                    NotAllowed,
                    "number of channels opened ({open}) has reached the negotiated channel_max ({})",
                    self.channel_max
                )
                .on_connection());
            }
            return match frame.kind {
                FRAME_METHOD => {
                    let method = method::decode(&frame.payload)?;
                    match method {
                        Method::Other(AMQPClass::Channel(
                            amq_protocol::protocol::channel::AMQPMethod::Open(_),
                        )) => {
                            let channel = Channel::open(id, session)?;
                            self.channels.insert(id, channel);
                            Ok(())
                        }
                        _ => {
                            let (c, m) = method::method_ids(&frame.payload).unwrap_or((0, 0));
                            Err(amqp_err!(ChannelError, "expected 'channel.open'").in_method(c, m))
                        }
                    }
                }
                _ => Err(amqp_err!(
                    UnexpectedFrame,
                    "expected method frame, got non method frame instead"
                )),
            };
        };
        match channel.handle_frame(session, frame)? {
            ChannelOutcome::Open => {}
            ChannelOutcome::Closed => {
                self.channels.remove(&id);
            }
        }
        Ok(())
    }

    fn handle_connection_method(&mut self, method: Method) -> AmqpResult<()> {
        use conn_methods::AMQPMethod as C;
        match method {
            Method::Other(AMQPClass::Connection(C::Close(close))) => {
                debug!(
                    connection = %self.label(),
                    code = close.reply_code,
                    text = %close.reply_text,
                    "client closed the connection"
                );
                info!(connection = %self.label(), "closing AMQP connection");
                // Exclusive queues are gone before close-ok, so a client
                // that reconnects at once can declare them again.
                self.release();
                self.send0(AMQPClass::Connection(C::CloseOk(conn_methods::CloseOk {})));
                self.enter_closing(false);
                Ok(())
            }
            Method::Other(AMQPClass::Connection(C::UpdateSecret(_))) => {
                self.send0(AMQPClass::Connection(C::UpdateSecretOk(
                    conn_methods::UpdateSecretOk {},
                )));
                Ok(())
            }
            other => {
                let (c, m) = other.ids();
                Err(amqp_err!(
                    ChannelError,
                    "unexpected method in connection state running"
                )
                .in_method(c, m))
            }
        }
    }

    /// Input after `connection.close`: as in RabbitMQ, a `close-ok` ends the
    /// connection, a (repeated) `close` is answered, the rest is dropped.
    fn handle_while_closing(&mut self, frame: Frame) -> AmqpResult<()> {
        use conn_methods::AMQPMethod as C;
        if frame.kind != FRAME_METHOD || frame.channel != 0 {
            return Ok(());
        }
        match method::decode(&frame.payload) {
            Ok(Method::Other(AMQPClass::Connection(C::CloseOk(_)))) => self.state = State::Closed,
            Ok(Method::Other(AMQPClass::Connection(C::Close(_)))) => {
                self.send0(AMQPClass::Connection(C::CloseOk(conn_methods::CloseOk {})));
            }
            _ => {}
        }
        Ok(())
    }

    // ---- handshake -------------------------------------------------------

    fn send0(&self, method: AMQPClass) {
        self.outbox.push(|f| f.put_class(0, &method));
    }

    fn send_start(&self) {
        let mut capabilities = FieldTable::default();
        for cap in [
            "publisher_confirms",
            "exchange_exchange_bindings",
            "basic.nack",
            "consumer_cancel_notify",
            "connection.blocked",
            "authentication_failure_close",
            "per_consumer_qos",
            "consumer_priorities",
            "direct_reply_to",
        ] {
            capabilities.insert(ShortString::from(cap), AMQPValue::Boolean(true));
        }
        let mut props = FieldTable::default();
        let text = |s: &str| AMQPValue::LongString(LongString::from(s));
        props.insert(
            ShortString::from("capabilities"),
            AMQPValue::FieldTable(capabilities),
        );
        props.insert(
            ShortString::from("cluster_name"),
            text(&format!("warren@{}", hostname())),
        );
        props.insert(
            ShortString::from("copyright"),
            text("Copyright (c) the Warren developers"),
        );
        props.insert(
            ShortString::from("information"),
            text(&format!(
                "Warren {}, an AMQP 0-9-1 broker compatible with RabbitMQ {COMPATIBLE_VERSION}. \
                 Licensed under the Apache License 2.0.",
                env!("CARGO_PKG_VERSION")
            )),
        );
        props.insert(
            ShortString::from("platform"),
            text(&format!("Warren {} (Rust)", env!("CARGO_PKG_VERSION"))),
        );
        // Clients pick RabbitMQ's semantics by these two fields (kombu, for
        // one, only uses RabbitMQ's per-consumer basic.qos when the product
        // is "RabbitMQ"), and Warren implements those semantics.
        props.insert(ShortString::from("product"), text("RabbitMQ"));
        props.insert(ShortString::from("version"), text(COMPATIBLE_VERSION));
        self.send0(AMQPClass::Connection(conn_methods::AMQPMethod::Start(
            conn_methods::Start {
                version_major: 0,
                version_minor: 9,
                server_properties: props,
                mechanisms: LongString::from(self.mechanisms.join(" ")),
                locales: LongString::from("en_US"),
            },
        )));
    }

    fn handle_handshake(&mut self, frame: Frame) -> AmqpResult<()> {
        use conn_methods::AMQPMethod as C;
        if frame.kind == FRAME_HEARTBEAT {
            return Ok(());
        }
        if frame.kind != FRAME_METHOD || frame.channel != 0 {
            return Err(unexpected_frame(&frame));
        }
        let method = method::decode(&frame.payload)?;
        match (self.state, method) {
            (State::StartOk, Method::Other(AMQPClass::Connection(C::StartOk(start_ok)))) => {
                self.on_start_ok(start_ok)
            }
            (State::TuneOk, Method::Other(AMQPClass::Connection(C::TuneOk(tune_ok)))) => {
                self.on_tune_ok(tune_ok)
            }
            (State::Open, Method::Other(AMQPClass::Connection(C::Open(open)))) => {
                self.on_open(open)
            }
            // Before tune-ok RabbitMQ does not answer a close: the client
            // is ignored for a while and the socket dropped. (While opening,
            // it is an unexpected method like any other.)
            (State::StartOk | State::TuneOk, Method::Other(AMQPClass::Connection(C::Close(_)))) => {
                self.go_silent();
                Ok(())
            }
            (state, other) => {
                let (c, m) = other.ids();
                let name = match state {
                    State::StartOk => "starting",
                    State::TuneOk => "tuning",
                    _ => "opening",
                };
                Err(
                    amqp_err!(ChannelError, "unexpected method in connection state {name}")
                        .in_method(c, m),
                )
            }
        }
    }

    fn on_start_ok(&mut self, start_ok: conn_methods::StartOk) -> AmqpResult<()> {
        let props = &start_ok.client_properties;
        if let Some(AMQPValue::FieldTable(caps)) = props.inner().get("capabilities") {
            let has = |name: &str| matches!(caps.inner().get(name), Some(AMQPValue::Boolean(true)));
            self.capabilities = ClientCapabilities {
                consumer_cancel_notify: has("consumer_cancel_notify"),
                connection_blocked: has("connection.blocked"),
                authentication_failure_close: has("authentication_failure_close"),
                publisher_confirms: has("publisher_confirms"),
                basic_nack: has("basic.nack"),
            };
        }
        self.client_name = props
            .inner()
            .get("connection_name")
            .and_then(crate::protocol::table::as_text);
        let mechanism = start_ok.mechanism.as_str();
        self.info.client_properties = props.clone();
        self.info.auth_mechanism = mechanism.to_string();
        match self.login(mechanism, start_ok.response.as_bytes()) {
            Ok(user) => {
                self.user = Some(user);
                let config = &self.broker.config;
                self.send0(AMQPClass::Connection(conn_methods::AMQPMethod::Tune(
                    conn_methods::Tune {
                        channel_max: config.channel_max,
                        frame_max: config.frame_max,
                        heartbeat: config.heartbeat,
                    },
                )));
                self.state = State::TuneOk;
                Ok(())
            }
            Err(AuthError::Mechanism(name)) => Err(amqp_err!(
                CommandInvalid,
                "unknown authentication mechanism '{name}'"
            )
            .in_method(10, 11)),
            Err(AuthError::NotOffered(name)) => Err(amqp_err!(
                CommandInvalid,
                "invalid authentication mechanism '{name}'"
            )
            .in_method(10, 11)),
            Err(AuthError::Malformed(why)) => {
                Err(amqp_err!(SyntaxError, "{why}").in_method(10, 11))
            }
            Err(AuthError::Refused(why)) => {
                warn!(peer = %self.peer, "{mechanism} login refused: {why}");
                if self.capabilities.authentication_failure_close {
                    // RabbitMQ names no failing method here (0.0).
                    Err(amqp_err!(
                        AccessRefused,
                        "Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."
                    ))
                } else {
                    // Clients without the capability expect the socket to
                    // drop, which RabbitMQ does after a pause.
                    self.enter_closing(false);
                    Ok(())
                }
            }
        }
    }

    /// The user a `start-ok` logs in as. A mechanism Warren knows but did
    /// not offer here is refused as RabbitMQ refuses it (EXTERNAL over
    /// plain TCP, say).
    fn login(&self, mechanism: &str, response: &[u8]) -> Result<AuthUser, AuthError> {
        if !self.mechanisms.contains(&mechanism) {
            // RabbitMQ knows the mechanisms it has loaded: EXTERNAL only
            // with its plugin, here with EXTERNAL configured.
            let configured = &self.broker.config.auth_mechanisms;
            let known = KNOWN_MECHANISMS.contains(&mechanism)
                && (mechanism != "EXTERNAL" || configured.iter().any(|m| m == "EXTERNAL"));
            return Err(if known {
                AuthError::NotOffered(mechanism.to_string())
            } else {
                AuthError::Mechanism(mechanism.to_string())
            });
        }
        let access = &self.broker.access;
        if mechanism != "EXTERNAL" {
            return access.login(mechanism, response, self.peer.ip());
        }
        // SASL EXTERNAL ignores the response: the name is the certificate's.
        let certificate = self.tls.as_ref().and_then(|tls| tls.certificate.as_ref());
        let Some(certificate) = certificate else {
            return Err(AuthError::Refused(
                "connection peer presented no TLS (x.509) certificate".to_string(),
            ));
        };
        let from = self.broker.config.ssl_cert_login_from;
        let Some(name) = certificate.login_name(from) else {
            return Err(AuthError::Refused("no name found".to_string()));
        };
        access.login_external(name, self.peer.ip())
    }

    fn on_tune_ok(&mut self, tune_ok: conn_methods::TuneOk) -> AmqpResult<()> {
        let config = &self.broker.config;
        negotiate(
            "frame_max",
            FRAME_MIN_SIZE,
            config.frame_max,
            tune_ok.frame_max,
        )?;
        negotiate(
            "channel_max",
            1,
            config.channel_max as u32,
            tune_ok.channel_max as u32,
        )?;
        self.frame_max = tune_ok.frame_max;
        self.channel_max = tune_ok.channel_max;
        self.heartbeat = tune_ok.heartbeat;
        self.info.channel_max = tune_ok.channel_max;
        self.info.heartbeat = tune_ok.heartbeat;
        // From here on, frames may be as large as negotiated.
        self.codec.frame_max = tune_ok.frame_max;
        self.outbox.set_heartbeat(
            (tune_ok.heartbeat > 0).then(|| Duration::from_secs(tune_ok.heartbeat as u64)),
        );
        self.state = State::Open;
        Ok(())
    }

    fn on_open(&mut self, open: conn_methods::Open) -> AmqpResult<()> {
        let vhost_name = open.virtual_host.as_str();
        let Some(user) = self.user.clone() else {
            return Err(amqp_err!(InternalError, "connection.open before login").in_method(10, 40));
        };
        let handle = Arc::new(ConnectionHandle {
            id: self.id,
            peer: self.peer,
            name: self.client_name.clone(),
            user: user.name.clone(),
            vhost: Arc::from(vhost_name),
            frame_max: self.frame_max,
            capabilities: self.capabilities,
            tls: self.tls.clone(),
            outbox: self.outbox.clone(),
            events: self.events_tx.clone(),
            info: std::mem::take(&mut self.info),
            stats: self.stats.clone(),
        });
        let (vhost, user_channels) = self
            .broker
            .admit(handle.clone(), &user)
            .map_err(|e| e.in_method(10, 40))?;
        info!(
            connection = %self.label(),
            user = %user.name,
            vhost = %vhost_name,
            "connection opened"
        );
        self.session = Some(Session::new(
            self.broker.clone(),
            vhost,
            handle,
            user,
            user_channels,
        ));
        self.send0(AMQPClass::Connection(conn_methods::AMQPMethod::OpenOk(
            conn_methods::OpenOk {},
        )));
        self.state = State::Running;
        Ok(())
    }

    // ---- closing ---------------------------------------------------------

    /// Send `connection.close` and wait for `close-ok`. Channels, exclusive
    /// queues and the registry entry are released at once.
    fn close_connection(&mut self, error: AmqpError) {
        if matches!(self.state, State::Closing | State::Closed) {
            return;
        }
        if error.code != ReplyCode::ConnectionForced {
            warn!(connection = %self.label(), "closing connection: {}", error.reply_text());
        } else {
            info!(connection = %self.label(), "closing connection: {}", error.reply_text());
        }
        self.release();
        self.send0(AMQPClass::Connection(conn_methods::AMQPMethod::Close(
            conn_methods::Close {
                reply_code: error.code.code(),
                reply_text: ShortString::from(error.reply_text()),
                class_id: error.class_id,
                method_id: error.method_id,
            },
        )));
        self.enter_closing(true);
    }

    /// The connection is over but for its socket, which the client closes
    /// (or answers our close with `close-ok`) within RabbitMQ's timeout:
    /// the negotiated heartbeat interval up to 30 s, or 3 s before the
    /// connection was tuned. Heartbeats still go out meanwhile.
    fn enter_closing(&mut self, close_sent: bool) {
        let wait = match self.state {
            State::Open | State::Running if self.heartbeat > 0 => {
                CLOSING_TIMEOUT.min(Duration::from_secs(self.heartbeat.into()))
            }
            State::Open | State::Running => CLOSING_TIMEOUT,
            _ => HANDSHAKE_CLOSING_TIMEOUT,
        };
        let wait = if self.shutting_down {
            if close_sent {
                wait.min(SHUTDOWN_CLOSE_OK_WAIT)
            } else {
                Duration::ZERO
            }
        } else {
            wait
        };
        self.state = State::Closing;
        self.close_sent = close_sent;
        self.closing_until = Instant::now() + wait;
    }

    /// Stop listening to a client that is no longer trusted: its input is
    /// dropped unread and the socket closed after `SILENT_CLOSE_DELAY`.
    fn go_silent(&mut self) {
        if self.state != State::Closing {
            self.release();
            self.enter_closing(false);
        }
        self.deaf = true;
        self.closing_until = self.closing_until.min(Instant::now() + SILENT_CLOSE_DELAY);
    }

    fn close_channel_with_error(&mut self, id: u16, error: AmqpError) {
        debug!(connection = %self.label(), channel = id, "channel error: {}", error.reply_text());
        let Some(session) = &self.session else { return };
        if let Some(channel) = self.channels.get_mut(&id) {
            channel.close_with_error(session, error);
        }
    }

    fn close_all_channels(&mut self) {
        if let Some(session) = &self.session {
            for (_, mut channel) in self.channels.drain() {
                channel.release(session);
            }
        }
    }

    /// Release everything the connection holds but its socket: channels
    /// (their consumers and unacknowledged deliveries), exclusive queues,
    /// the registry entry. Done when the connection closes, and again
    /// (doing nothing) when its task ends, whatever the reason.
    fn release(&mut self) {
        self.close_all_channels();
        if let Some(session) = self.session.take() {
            session.release_exclusive_queues();
            self.broker.deregister(self.id);
        }
    }

    fn handle_event(&mut self, event: ConnEvent) {
        match event {
            ConnEvent::Close(error) => self.close_connection(error),
            ConnEvent::Writable => {
                for channel in self.channels.values() {
                    channel.resume_deliveries();
                }
            }
            ConnEvent::ConsumerCancelled { channel, tag } => {
                if let (Some(session), Some(ch)) = (&self.session, self.channels.get_mut(&channel))
                {
                    ch.consumer_cancelled_by_broker(session, &tag);
                }
            }
            ConnEvent::ChannelError { channel, error } => self.fail(channel, error),
            ConnEvent::AlarmsChanged => self.on_alarm(self.broker.alarms.state()),
        }
    }
}

/// RabbitMQ's check of a tune-ok value against the offered maximum.
fn negotiate(field: &str, min: u32, server: u32, client: u32) -> AmqpResult<()> {
    let detail = if field == "channel_max" && client == 0 {
        " (no limit)"
    } else {
        ""
    };
    if client != 0 && client < min {
        return Err(amqp_err!(
            NotAllowed,
            "negotiated {field} = {client}{detail} is lower than the minimum allowed value ({min})"
        )
        .in_method(10, 30));
    }
    if server != 0 && (client == 0 || client > server) {
        return Err(amqp_err!(
            NotAllowed,
            "negotiated {field} = {client}{detail} is higher than the maximum allowed value ({server})"
        )
        .in_method(10, 30));
    }
    Ok(())
}

fn unexpected_frame(frame: &Frame) -> AmqpError {
    amqp_err!(
        UnexpectedFrame,
        "type {}, {}",
        frame.kind,
        payload_snippet(&frame.payload)
    )
}

fn unknown_frame(frame: &Frame) -> AmqpError {
    amqp_err!(
        FrameError,
        "type {}, {}: unknown_frame",
        frame.kind,
        payload_snippet(&frame.payload)
    )
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}
