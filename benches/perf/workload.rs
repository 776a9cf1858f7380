//! The pieces scenarios are built from: counters, the queue/exchange
//! topology, and producer and consumer connections, each on its own task.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use warren::protocol::frame::{FRAME_BODY, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD};

use crate::client::{
    AmqpUri, Assembler, ClientError, Conn, Incoming, PublishTemplate, Result, decode_incoming,
    drain_until_close_ok,
};

/// Nanoseconds since the first call in this process: the clock producers
/// stamp bodies with and consumers read them against.
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Totals since the scenario started; the runner samples them.
#[derive(Default)]
pub struct Counters {
    pub published: AtomicU64,
    pub confirmed: AtomicU64,
    pub nacked: AtomicU64,
    pub consumed: AtomicU64,
    pub returned: AtomicU64,
    pub redelivered: AtomicU64,
    pub blocked: AtomicU64,
    pub errors: AtomicU64,
    /// The first error any connection hit, for the report.
    pub first_error: Mutex<Option<String>>,
}

impl Counters {
    pub fn error(&self, who: &str, e: &ClientError) {
        eprintln!("[perf] {who}: {e}");
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock();
        if first.is_none() {
            *first = Some(format!("{who}: {e}"));
        }
    }
}

/// Latencies (ns) recorded by consumers while `recording` is on.
#[derive(Default)]
pub struct LatencyRecorder {
    pub recording: AtomicBool,
    pub samples: Mutex<Vec<u64>>,
}

// ---------------------------------------------------------------------------
// Topology

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
}

impl ExchangeKind {
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        match s {
            "direct" => Ok(ExchangeKind::Direct),
            "fanout" => Ok(ExchangeKind::Fanout),
            "topic" => Ok(ExchangeKind::Topic),
            other => Err(format!(
                "exchange type {other:?}: expected direct, fanout or topic"
            )),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
        }
    }
}

/// An exchange with `queues` queues bound to it, named after the run.
/// Direct: queue i bound with its own name as key. Topic: bound with
/// `perf.<i>.#`, published to with `perf.<i>.msg`. Fanout: every queue
/// bound, one routing key for all.
pub struct Topology {
    pub exchange: String,
    pub kind: ExchangeKind,
    pub queues: Vec<String>,
}

impl Topology {
    pub async fn declare(
        ctrl: &mut Conn,
        run_id: &str,
        kind: ExchangeKind,
        queues: usize,
        durable: bool,
    ) -> Result<Topology> {
        let exchange = format!("perf-{}-{run_id}", kind.name());
        ctrl.exchange_declare(1, &exchange, kind.name(), durable, false)
            .await?;
        let mut names = Vec::with_capacity(queues);
        for i in 0..queues {
            let name = format!("perf-q{i}-{run_id}");
            ctrl.queue_declare(1, &name, durable, false, false, false)
                .await?;
            let key = match kind {
                ExchangeKind::Direct => name.clone(),
                ExchangeKind::Fanout => String::new(),
                ExchangeKind::Topic => format!("perf.{i}.#"),
            };
            ctrl.queue_bind(1, &name, &exchange, &key).await?;
            names.push(name);
        }
        Ok(Topology {
            exchange,
            kind,
            queues: names,
        })
    }

    /// Routing key producer `i` publishes with (round-robin over queues).
    pub fn routing_key(&self, producer: usize) -> String {
        let q = producer % self.queues.len().max(1);
        match self.kind {
            ExchangeKind::Direct => self.queues[q].clone(),
            ExchangeKind::Fanout => String::new(),
            ExchangeKind::Topic => format!("perf.{q}.msg"),
        }
    }

    /// Queue consumer `i` reads from.
    pub fn consumer_queue(&self, consumer: usize) -> &str {
        &self.queues[consumer % self.queues.len()]
    }

    /// Ready messages left across all queues.
    pub async fn backlog(&self, ctrl: &mut Conn) -> Result<u64> {
        let mut total = 0u64;
        for q in &self.queues {
            let (_, ready, _) = ctrl.queue_declare(1, q, false, false, false, true).await?;
            total += ready as u64;
        }
        Ok(total)
    }

    pub async fn delete(&self, ctrl: &mut Conn) -> Result<()> {
        for q in &self.queues {
            ctrl.queue_delete(1, q).await?;
        }
        ctrl.exchange_delete(1, &self.exchange).await
    }
}

/// A control connection with channel 1 open.
pub async fn control_connection(uri: &AmqpUri) -> Result<Conn> {
    let mut c = Conn::connect(uri, "perf-control").await?;
    c.channel_open(1).await?;
    Ok(c)
}

// ---------------------------------------------------------------------------
// Producer

#[derive(Debug, Clone)]
pub struct ProducerCfg {
    pub exchange: String,
    pub routing_key: String,
    pub size: usize,
    pub persistent: bool,
    /// Publisher confirms with at most this many unconfirmed messages.
    pub confirm: Option<u32>,
    /// Fixed rate in messages/s; `None` publishes as fast as the socket takes.
    pub rate: Option<f64>,
    /// Stop after this many messages (backlog scenarios); `None` runs until cancelled.
    pub count: Option<u64>,
    /// Write the send time into the first 8 body bytes.
    pub stamp: bool,
}

/// Tracks which delivery tags the broker has confirmed.
struct ConfirmTracker {
    /// Lowest tag not yet settled.
    base: u64,
    /// Settled flags for tags `base..`.
    done: VecDeque<bool>,
}

impl ConfirmTracker {
    fn new() -> Self {
        ConfirmTracker {
            base: 1,
            done: VecDeque::new(),
        }
    }

    /// Settle `tag` (and every earlier tag when `multiple`); returns how many
    /// tags this newly settled.
    fn settle(&mut self, tag: u64, multiple: bool) -> u64 {
        if tag < self.base {
            return 0;
        }
        let idx = (tag - self.base) as usize;
        if self.done.len() <= idx {
            self.done.resize(idx + 1, false);
        }
        let mut n = 0;
        if multiple {
            for d in self.done.iter_mut().take(idx + 1) {
                if !*d {
                    *d = true;
                    n += 1;
                }
            }
        } else if !self.done[idx] {
            self.done[idx] = true;
            n = 1;
        }
        while self.done.front() == Some(&true) {
            self.done.pop_front();
            self.base += 1;
        }
        n
    }
}

/// Messages per write when publishing flat out: about 64 KiB of frames.
fn flat_out_batch(template: &PublishTemplate) -> u64 {
    ((64 * 1024) / template.bytes.len().max(1)).clamp(1, 2000) as u64
}

/// Connect, open channel 1 (with confirms if asked) and return the producer
/// task, already publishing.
pub async fn start_producer(
    uri: AmqpUri,
    idx: usize,
    cfg: ProducerCfg,
    counters: Arc<Counters>,
    cancel: CancellationToken,
) -> Result<JoinHandle<()>> {
    let mut conn = Conn::connect(&uri, &format!("perf-producer-{idx}")).await?;
    conn.channel_open(1).await?;
    if cfg.confirm.is_some() {
        conn.confirm_select(1).await?;
    }
    let template = PublishTemplate::new(
        1,
        &cfg.exchange,
        &cfg.routing_key,
        cfg.size,
        cfg.persistent,
        conn.frame_max,
    );
    Ok(tokio::spawn(async move {
        let who = format!("producer {idx}");
        if let Err(e) = producer_loop(conn, template, cfg, &counters, cancel).await {
            counters.error(&who, &e);
        }
    }))
}

async fn producer_loop(
    conn: Conn,
    template: PublishTemplate,
    cfg: ProducerCfg,
    counters: &Arc<Counters>,
    cancel: CancellationToken,
) -> Result<()> {
    let (mut reader, mut writer) = conn.into_parts();
    // Settled (confirmed or nacked) count, written by the reader task.
    let settled = Arc::new(AtomicU64::new(0));
    let wake = Arc::new(Notify::new());
    let reader_done = CancellationToken::new();

    // The reader: confirms, flow control notices, and the broker closing on us.
    let reader_task = {
        let settled = settled.clone();
        let wake = wake.clone();
        let counters = counters.clone();
        let reader_done = reader_done.clone();
        tokio::spawn(async move {
            let mut tracker = ConfirmTracker::new();
            let result: Result<()> = async {
                loop {
                    let mut newly = 0u64;
                    let mut nacked = 0u64;
                    while let Some(frame) = reader.next_frame()? {
                        if frame.kind != FRAME_METHOD {
                            continue;
                        }
                        match decode_incoming(&frame)? {
                            Incoming::Ack { tag, multiple } => {
                                newly += tracker.settle(tag, multiple)
                            }
                            Incoming::Nack { tag, multiple } => {
                                let n = tracker.settle(tag, multiple);
                                newly += n;
                                nacked += n;
                            }
                            Incoming::Return { code, text } => {
                                let first = counters.returned.fetch_add(1, Ordering::Relaxed) == 0;
                                if first {
                                    eprintln!(
                                        "[perf] message returned: {code} {}",
                                        String::from_utf8_lossy(text)
                                    );
                                }
                            }
                            Incoming::Blocked(reason) => {
                                eprintln!(
                                    "[perf] producer blocked by broker: {}",
                                    String::from_utf8_lossy(reason)
                                );
                                counters.blocked.fetch_add(1, Ordering::Relaxed);
                            }
                            Incoming::Unblocked => eprintln!("[perf] producer unblocked"),
                            Incoming::ConnectionCloseOk => return Ok(()),
                            Incoming::ConnectionClose(e) | Incoming::ChannelClose(e) => {
                                return Err(e);
                            }
                            _ => {}
                        }
                    }
                    if newly > 0 {
                        settled.fetch_add(newly, Ordering::Release);
                        counters
                            .confirmed
                            .fetch_add(newly - nacked, Ordering::Relaxed);
                        counters.nacked.fetch_add(nacked, Ordering::Relaxed);
                        wake.notify_one();
                    }
                    reader.fill().await?;
                }
            }
            .await;
            reader_done.cancel();
            wake.notify_one();
            result
        })
    };

    let batch_max = flat_out_batch(&template);
    let mut published = 0u64;
    let start = Instant::now();
    let mut aborted = false;
    loop {
        if cancel.is_cancelled() || reader_done.is_cancelled() {
            break;
        }
        if cfg.count.is_some_and(|c| published >= c) {
            break;
        }
        let mut n = batch_max;
        if let Some(rate) = cfg.rate {
            let due = (start.elapsed().as_secs_f64() * rate) as u64;
            if due <= published {
                let next = start + Duration::from_secs_f64((published + 1) as f64 / rate);
                tokio::select! {
                    _ = tokio::time::sleep_until(next.into()) => {}
                    _ = cancel.cancelled() => break,
                }
                continue;
            }
            n = n.min(due - published);
        }
        if let Some(max) = cfg.confirm {
            let outstanding = published - settled.load(Ordering::Acquire);
            if outstanding >= max as u64 {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                continue;
            }
            n = n.min(max as u64 - outstanding);
        }
        if let Some(c) = cfg.count {
            n = n.min(c - published);
        }
        let stamp = cfg.stamp.then(now_ns);
        template.append(&mut writer.buf, n as usize, stamp);
        tokio::select! {
            r = writer.flush() => r?,
            _ = cancel.cancelled() => { aborted = true; break }
        }
        published += n;
        counters.published.fetch_add(n, Ordering::Relaxed);
    }

    // With confirms and a count, wait (bounded) for the last confirms.
    if !aborted && cfg.count.is_some() && cfg.confirm.is_some() {
        let deadline = Instant::now() + Duration::from_secs(60);
        while settled.load(Ordering::Acquire) < published
            && Instant::now() < deadline
            && !reader_done.is_cancelled()
            && !cancel.is_cancelled()
        {
            tokio::select! {
                _ = wake.notified() => {}
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    if !aborted && !reader_done.is_cancelled() {
        writer.buf.clear();
        writer.put_connection_close();
        let _ = tokio::time::timeout(Duration::from_secs(2), writer.flush()).await;
    }
    let mut reader_task = reader_task;
    match tokio::time::timeout(Duration::from_secs(3), &mut reader_task).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Ok(()),
        Err(_) => {
            reader_task.abort();
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------
// Consumer

#[derive(Clone)]
pub struct ConsumerCfg {
    pub queue: String,
    pub prefetch: u16,
    pub auto_ack: bool,
    /// Ack every N deliveries with multiple=true (1: one ack per message).
    pub multi_ack: u32,
    pub latency: Option<Arc<LatencyRecorder>>,
}

/// Connect, set qos and start consuming; returns once consume-ok arrived,
/// with the consumer's task running.
pub async fn start_consumer(
    uri: AmqpUri,
    idx: usize,
    cfg: ConsumerCfg,
    counters: Arc<Counters>,
    cancel: CancellationToken,
) -> Result<JoinHandle<()>> {
    let mut conn = Conn::connect(&uri, &format!("perf-consumer-{idx}")).await?;
    conn.channel_open(1).await?;
    if !cfg.auto_ack && cfg.prefetch > 0 {
        conn.basic_qos(1, cfg.prefetch, false).await?;
    }
    conn.basic_consume(1, &cfg.queue, cfg.auto_ack).await?;
    Ok(tokio::spawn(async move {
        let who = format!("consumer {idx}");
        if let Err(e) = consumer_loop(conn, cfg, &counters, cancel).await {
            counters.error(&who, &e);
        }
    }))
}

async fn consumer_loop(
    conn: Conn,
    cfg: ConsumerCfg,
    counters: &Counters,
    cancel: CancellationToken,
) -> Result<()> {
    let (mut reader, mut writer) = conn.into_parts();
    let mut asm = Assembler::default();
    let multi = cfg.multi_ack.max(1);
    let mut unacked = 0u32;
    let mut lat_local: Vec<u64> = Vec::new();
    loop {
        let mut count = 0u64;
        let record = cfg
            .latency
            .as_ref()
            .is_some_and(|l| l.recording.load(Ordering::Relaxed));
        let now = if record { now_ns() } else { 0 };
        while let Some(frame) = reader.next_frame()? {
            let delivery = match frame.kind {
                FRAME_HEADER | FRAME_BODY => asm.content(&frame)?,
                FRAME_METHOD => {
                    match decode_incoming(&frame)? {
                        Incoming::Deliver { tag, redelivered } => {
                            if redelivered {
                                counters.redelivered.fetch_add(1, Ordering::Relaxed);
                            }
                            asm.deliver(frame.channel, tag)
                        }
                        Incoming::ConnectionClose(e) | Incoming::ChannelClose(e) => {
                            return Err(e);
                        }
                        Incoming::Cancel => {
                            return Err(ClientError::Protocol(
                                "consumer cancelled by broker".into(),
                            ));
                        }
                        _ => {}
                    }
                    None
                }
                FRAME_HEARTBEAT => {
                    writer.put_heartbeat();
                    None
                }
                _ => None,
            };
            if let Some(d) = delivery {
                count += 1;
                if record && let Some(ts) = d.stamp() {
                    lat_local.push(now.saturating_sub(ts));
                }
                if !cfg.auto_ack {
                    unacked += 1;
                    if unacked >= multi {
                        writer.put_ack(d.channel, d.tag, multi > 1);
                        unacked = 0;
                    }
                }
            }
        }
        if count > 0 {
            counters.consumed.fetch_add(count, Ordering::Relaxed);
        }
        if !lat_local.is_empty()
            && let Some(l) = &cfg.latency
        {
            l.samples.lock().append(&mut lat_local);
        }
        writer.flush().await?;
        tokio::select! {
            r = reader.fill() => { r?; }
            _ = cancel.cancelled() => break,
        }
    }
    // Shut down: close and read (discarding deliveries) until close-ok, bounded.
    writer.buf.clear();
    writer.put_connection_close();
    let _ = tokio::time::timeout(Duration::from_secs(2), writer.flush()).await;
    let _ = tokio::time::timeout(
        Duration::from_secs(3),
        drain_until_close_ok(&mut reader, &mut writer),
    )
    .await;
    Ok(())
}

/// Wait for tasks to finish, aborting stragglers after `limit`.
pub async fn join_all(tasks: Vec<JoinHandle<()>>, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    for mut t in tasks {
        if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
            t.abort();
        }
    }
}
