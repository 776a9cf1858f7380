//! Stream queues (`x-queue-type: stream`) over AMQP 0-9-1, with RabbitMQ
//! 3.10's rules, on the segment log of [`crate::stream`].
//!
//! Publishing appends to the log; nothing is ever removed by a consumer,
//! only by retention. Messages published since the last flush wait in one
//! batch that becomes one chunk when the store's group-commit thread
//! flushes (this type is registered with it as a [`Flushable`]): one write
//! and one fsync per batch, whatever the number of publishers, and a
//! confirm goes out only after the flush that made its message durable.
//!
//! Each consumer is a task of its own with its own [`Reader`]: it waits
//! (without a thread) for credit and for committed records, reads a few
//! chunks at a time on a blocking thread, and hands the messages to the
//! consumer's channel, each with the header `x-stream-offset`. Acks only
//! return credit. Memory per consumer is what one read returns, whatever
//! the stream's length.
//!
//! This module knows the AMQP side of streams (arguments, offsets, the
//! delivery header) and must not know about files: that is `crate::stream`.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use amq_protocol::types::{AMQPValue, FieldTable};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tracing::{error, warn};

use super::arguments::{AgeError, QueueArgs, internal_error, parse_age};
use super::consumer::{Consumer, Delivery};
use super::{Persist, Queue};
use crate::amqp_err;
use crate::message::{Message, QueuedMessage};
use crate::protocol::AmqpResult;
use crate::protocol::table::lookup;
use crate::store::sync::Syncer;
use crate::stream::{
    Batch, Chunk, Flushable, OffsetSpec, Reader, Retention, Stream, StreamConfig, StreamError,
    message,
};
use crate::timer::{Timed, Timers};
use crate::util::now_millis;

/// Past this many bytes, the pending batch is appended (to the page cache)
/// without waiting for the next flush, so a slow disk never makes the
/// broker hold an unbounded batch.
const MAX_PENDING_BYTES: usize = 1 << 20;

/// A consumer's blocking read stops after this many bytes of chunks: the
/// bound on what a consumer holds besides its unacked messages.
const READ_AHEAD_BYTES: usize = 256 << 10;

/// Age retention runs at least this often on an idle stream.
const MAX_RETENTION_INTERVAL_MS: u64 = 60_000;

/// One stream queue's log and its consumers.
#[derive(Debug)]
pub struct StreamQueue {
    /// Names the stream's directory (as a durable queue's id names its tree).
    pub id: u64,
    log: Stream,
    /// Published, not yet appended: the next chunk.
    pending: Mutex<Batch>,
    has_pending: AtomicBool,
    /// queue.delete removed it: nothing more is appended or flushed.
    deleted: AtomicBool,
    /// The group-commit thread, asked for a flush whenever a batch starts.
    syncer: Arc<Syncer>,
    consumers: Mutex<Vec<Arc<StreamConsumer>>>,
    max_age: Option<u64>,
    me: Weak<StreamQueue>,
}

/// A consumer's half that the queue keeps: how to wake its task.
#[derive(Debug)]
pub struct StreamConsumer {
    pub consumer: Arc<Consumer>,
    wake: Notify,
    cancelled: AtomicBool,
}

impl StreamQueue {
    /// Open (or create) the stream `id` under `dir` with the queue's
    /// arguments, and register it with the group-commit thread.
    pub fn open(
        dir: &Path,
        id: u64,
        args: &QueueArgs,
        store: &crate::store::Store,
        timers: Option<&Timers>,
    ) -> Result<Arc<StreamQueue>, StreamError> {
        let mut config = StreamConfig {
            retention: Retention {
                max_length_bytes: args.max_length_bytes,
                max_age: args.max_age.map(Duration::from_millis),
            },
            sync: store.syncer.is_enabled(),
            ..StreamConfig::default()
        };
        if let Some(size) = args.max_segment_size_bytes {
            config.max_segment_size_bytes = size;
        }
        let log = Stream::open(&dir.join(id.to_string()), config)?;
        let queue = Arc::new_cyclic(|me| StreamQueue {
            id,
            log,
            pending: Mutex::new(Batch::new()),
            has_pending: AtomicBool::new(false),
            deleted: AtomicBool::new(false),
            syncer: store.syncer.clone(),
            consumers: Mutex::new(Vec::new()),
            max_age: args.max_age,
            me: me.clone(),
        });
        let flushable: Weak<dyn Flushable> = queue.me.clone();
        store.register_flushable(flushable);
        if let (Some(timers), Some(age)) = (timers, queue.max_age) {
            let me: Weak<dyn Timed> = queue.me.clone();
            timers.schedule(now_millis() + retention_interval(age), me);
        }
        Ok(queue)
    }

    /// Append a routed message. It becomes durable, and visible to
    /// consumers, with the next flush of the group-commit thread.
    pub fn publish(&self, message: &Message) -> Persist {
        let mut pending = self.pending.lock();
        if self.deleted.load(Ordering::Acquire) {
            return Persist::NotNeeded;
        }
        if let Err(e) = message::push(&mut pending, message, None) {
            warn!(
                "stream {}: cannot append a message: {e}",
                self.log.dir().display()
            );
            return Persist::Failed;
        }
        let starts_batch = !self.has_pending.swap(true, Ordering::AcqRel);
        if pending.data_len() >= MAX_PENDING_BYTES {
            let batch = std::mem::take(&mut *pending);
            if let Err(e) = self.log.append(batch) {
                error!("stream {}: append failed: {e}", self.log.dir().display());
                return Persist::Failed;
            }
        }
        drop(pending);
        if !self.syncer.is_enabled() {
            // `--sync off`: no flusher thread; publish to readers now (no fsync).
            if let Err(e) = Flushable::flush(self) {
                error!("stream {}: flush failed: {e}", self.log.dir().display());
                return Persist::Failed;
            }
        } else if starts_batch {
            // Consumers see records once flushed: make sure a flush comes
            // even when no publisher waits for a confirm.
            self.syncer.request();
        }
        Persist::Stored
    }

    /// Start delivering to `consumer` from `spec`; runs a task until the
    /// consumer is cancelled or the stream deleted.
    pub fn add_consumer(
        &self,
        queue: &Arc<Queue>,
        consumer: Arc<Consumer>,
        spec: OffsetSpec,
    ) -> AmqpResult<()> {
        let reader = self
            .log
            .reader(spec)
            .map_err(|e| amqp_err!(InternalError, "cannot read {}: {e}", queue.describe()))?;
        let entry = Arc::new(StreamConsumer {
            consumer,
            wake: Notify::new(),
            cancelled: AtomicBool::new(false),
        });
        self.consumers.lock().push(entry.clone());
        let (queue, log) = (queue.clone(), self.log.clone());
        tokio::spawn(deliver_loop(queue, log, entry, reader));
        Ok(())
    }

    /// Stop a consumer's task; false if it was not a consumer here.
    pub fn remove_consumer(&self, consumer: &Arc<Consumer>) -> bool {
        let mut consumers = self.consumers.lock();
        let Some(at) = consumers
            .iter()
            .position(|c| Arc::ptr_eq(&c.consumer, consumer))
        else {
            return false;
        };
        let gone = consumers.remove(at);
        gone.cancel();
        true
    }

    pub fn consumer_count(&self) -> usize {
        self.consumers.lock().len()
    }

    /// Credit came back (an ack) or the outbox has room again: every
    /// consumer task looks again.
    pub fn wake_consumers(&self) {
        for c in self.consumers.lock().iter() {
            c.wake.notify_one();
        }
    }

    /// queue.delete: stop the consumers (handed back so their channels are
    /// told) and remove the files, off the async workers.
    pub fn delete(&self) -> Vec<Arc<Consumer>> {
        let consumers: Vec<_> = std::mem::take(&mut *self.consumers.lock());
        for c in &consumers {
            c.cancel();
        }
        {
            let mut pending = self.pending.lock();
            self.deleted.store(true, Ordering::Release);
            self.has_pending.store(false, Ordering::Release);
            *pending = Batch::new();
        }
        let log = self.log.clone();
        let remove = move || {
            if let Err(e) = log.delete() {
                warn!("removing stream {}: {e}", log.dir().display());
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(remove)),
            Err(_) => remove(),
        }
        consumers.into_iter().map(|c| c.consumer.clone()).collect()
    }

    /// The oldest kept offset and the offset the next message gets.
    pub fn offsets(&self) -> (u64, u64) {
        (self.log.first_offset(), self.log.committed_offset())
    }
}

impl StreamConsumer {
    fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }
}

impl Flushable for StreamQueue {
    fn needs_flush(&self) -> bool {
        !self.deleted.load(Ordering::Acquire)
            && (self.has_pending.load(Ordering::Acquire) || Flushable::needs_flush(&self.log))
    }

    /// Append the pending batch as one chunk, then sync the log: called by
    /// the group-commit thread before it publishes its ticket.
    fn flush(&self) -> std::io::Result<()> {
        {
            let mut pending = self.pending.lock();
            if self.deleted.load(Ordering::Acquire) {
                // Its confirms are moot: the queue is gone.
                return Ok(());
            }
            self.has_pending.store(false, Ordering::Release);
            if !pending.is_empty() {
                let batch = std::mem::take(&mut *pending);
                self.log.append(batch)?;
            }
        }
        match self.log.flush() {
            Ok(_) | Err(StreamError::Deleted { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Timed for StreamQueue {
    /// `x-max-age` on an idle stream: segments age out even when nothing is
    /// appended (appends apply retention whenever a segment is sealed).
    fn fire(self: Arc<Self>, now: u64) -> Option<u64> {
        let age = self.max_age?;
        let log = self.log.clone();
        let apply = move || {
            if let Err(e) = log.apply_retention() {
                warn!("retention of stream {}: {e}", log.dir().display());
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(apply)),
            Err(_) => apply(),
        }
        Some(now + retention_interval(age))
    }
}

fn retention_interval(max_age_ms: u64) -> u64 {
    (max_age_ms / 4).clamp(1_000, MAX_RETENTION_INTERVAL_MS)
}

/// Where a consumer starts, from its `x-stream-offset` argument, with
/// RabbitMQ 3.10's answers to values it does not take.
pub fn offset_spec(arguments: &FieldTable, queue: &str) -> AmqpResult<OffsetSpec> {
    let Some(value) = lookup(arguments, "x-stream-offset") else {
        return Ok(OffsetSpec::Next);
    };
    let text = match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    };
    if let Some(text) = text {
        return match text.as_str() {
            "first" => Ok(OffsetSpec::First),
            "last" => Ok(OffsetSpec::Last),
            "next" => Ok(OffsetSpec::Next),
            interval => match parse_age(interval) {
                Ok(ms) => Ok(OffsetSpec::Timestamp(
                    crate::stream::now_ms().saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX)),
                )),
                Err(AgeError::Invalid) => Err(amqp_err!(
                    PreconditionFailed,
                    "invalid arg 'x-stream-offset' for {queue}: {{invalid_stream_offset_arg,{{longstr,<<\"{interval}\">>}}}}"
                )),
                Err(AgeError::Unparsable) => Err(internal_error().on_connection()),
            },
        };
    }
    match value {
        // AMQP timestamps are seconds.
        AMQPValue::Timestamp(seconds) => Ok(OffsetSpec::Timestamp(
            i64::try_from(*seconds)
                .unwrap_or(i64::MAX)
                .saturating_mul(1000),
        )),
        other => match crate::protocol::table::as_i128(other) {
            // Before the first kept offset means the first.
            Some(n) => Ok(OffsetSpec::Offset(
                u64::try_from(n.max(0)).unwrap_or(u64::MAX),
            )),
            None => Err(internal_error().on_connection()),
        },
    }
}

/// A message read back, ready for the wire.
struct Ready {
    offset: u64,
    message: Arc<Message>,
}

/// One consumer's task: deliver while it has credit, read more when it
/// runs out of messages, wait when it has neither credit nor records.
async fn deliver_loop(queue: Arc<Queue>, log: Stream, entry: Arc<StreamConsumer>, reader: Reader) {
    let mut reader = Some(reader);
    let mut committed = log.subscribe();
    let mut ready: VecDeque<Ready> = VecDeque::new();
    let mut decoder = message::Decoder::default();
    loop {
        if entry.is_cancelled() || queue.is_deleted() {
            return;
        }
        if let Some(next) = ready.front() {
            let consumer = &entry.consumer;
            if !consumer.channel.has_credit(consumer) {
                entry.wake.notified().await;
                continue;
            }
            let wire = next.message.properties.with_header(
                "x-stream-offset",
                AMQPValue::LongLongInt(i64::try_from(next.offset).unwrap_or(i64::MAX)),
            );
            let queued = QueuedMessage {
                seq: next.offset,
                message: next.message.clone(),
                redelivered: false,
                expires_at: None,
                on_disk: true,
                delivery_count: 0,
            };
            match consumer
                .channel
                .deliver(consumer, &queue, queued, Some(&wire))
            {
                Delivery::Refused(_) => continue,
                Delivery::Unacked | Delivery::Settled(_) => {
                    ready.pop_front();
                }
            }
            continue;
        }
        let Some(mut taken) = reader.take() else {
            return;
        };
        if !taken.has_more() {
            reader = Some(taken);
            tokio::select! {
                _ = committed.changed() => {}
                _ = entry.wake.notified() => {}
            }
            continue;
        }
        let read = tokio::task::spawn_blocking(move || {
            let chunks = read_ahead(&mut taken);
            (taken, chunks)
        })
        .await;
        let chunks = match read {
            Ok((back, chunks)) => {
                reader = Some(back);
                chunks
            }
            Err(e) => {
                error!("{}: a stream read stopped: {e}", queue.describe());
                return;
            }
        };
        match chunks {
            Ok(chunks) => {
                for chunk in chunks {
                    for (offset, record) in chunk.records() {
                        match decoder.decode(record) {
                            Ok(message) => ready.push_back(Ready {
                                offset,
                                message: Arc::new(message),
                            }),
                            Err(e) => warn!(
                                "{}: skipping the record at offset {offset}: {e}",
                                queue.describe()
                            ),
                        }
                    }
                }
            }
            Err(StreamError::Deleted { .. }) => return,
            Err(e) => {
                error!("{}: reading the stream failed: {e}", queue.describe());
                return;
            }
        }
    }
}

/// Read chunks until `READ_AHEAD_BYTES` or the committed end (blocking).
fn read_ahead(reader: &mut Reader) -> Result<Vec<Chunk>, StreamError> {
    let mut chunks = Vec::new();
    let mut bytes = 0usize;
    while bytes < READ_AHEAD_BYTES {
        match reader.read()? {
            Some(chunk) => {
                bytes += chunk.byte_len();
                chunks.push(chunk);
            }
            None => break,
        }
    }
    Ok(chunks)
}
