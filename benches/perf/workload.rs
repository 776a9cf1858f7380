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
    AmqpUri, Assembler, BLOCKING_POLL, ClientError, Conn, Incoming, PublishTemplate, Reader,
    Result, Writer, close_blocking, decode_incoming, drain_until_close_ok, is_timeout,
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
    /// Run on dedicated OS threads with a blocking socket (see
    /// [`Conn::into_blocking`]) instead of as tasks on the client runtime.
    pub blocking: bool,
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

/// What a producer's reader found in one buffer of input.
struct ProducerInput {
    /// Publishes newly confirmed or nacked.
    settled: u64,
    /// The broker answered our connection.close.
    close_ok: bool,
}

/// Handle a producer connection's buffered input: confirms, returns, flow
/// control notices; a close from the broker is an error.
fn producer_input<R>(
    reader: &mut Reader<R>,
    tracker: &mut ConfirmTracker,
    counters: &Counters,
) -> Result<ProducerInput> {
    let mut seen = ProducerInput {
        settled: 0,
        close_ok: false,
    };
    let mut nacked = 0u64;
    while let Some(frame) = reader.next_frame()? {
        if frame.kind != FRAME_METHOD {
            continue;
        }
        match decode_incoming(&frame)? {
            Incoming::Ack { tag, multiple } => seen.settled += tracker.settle(tag, multiple),
            Incoming::Nack { tag, multiple } => {
                let n = tracker.settle(tag, multiple);
                seen.settled += n;
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
            Incoming::ConnectionCloseOk => {
                seen.close_ok = true;
                break;
            }
            Incoming::ConnectionClose(e) | Incoming::ChannelClose(e) => return Err(e),
            _ => {}
        }
    }
    if seen.settled > 0 {
        counters
            .confirmed
            .fetch_add(seen.settled - nacked, Ordering::Relaxed);
        counters.nacked.fetch_add(nacked, Ordering::Relaxed);
    }
    Ok(seen)
}

/// Connect and open channel 1 (with confirms if asked); the connection and
/// the message it will publish.
pub async fn open_producer(
    uri: &AmqpUri,
    idx: usize,
    cfg: &ProducerCfg,
) -> Result<(Conn, PublishTemplate)> {
    let mut conn = Conn::connect(uri, &format!("perf-producer-{idx}")).await?;
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
    Ok((conn, template))
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
    let (conn, template) = open_producer(&uri, idx, &cfg).await?;
    let who = format!("producer {idx}");
    if cfg.blocking {
        return Ok(tokio::task::spawn_blocking(move || {
            if let Err(e) = producer_loop_blocking(conn, template, cfg, &counters, cancel) {
                counters.error(&who, &e);
            }
        }));
    }
    Ok(tokio::spawn(async move {
        if let Err(e) = producer_loop(conn, template, cfg, &counters, cancel).await {
            counters.error(&who, &e);
        }
    }))
}

/// What a producer does next.
enum Step {
    /// Publish this many messages in one write.
    Publish(u64),
    /// The rate says the next message is due then.
    SleepUntil(Instant),
    /// As many publishes are unconfirmed as allowed.
    AwaitConfirms,
    /// The count is reached.
    Finished,
}

/// The publishing schedule: flat out in batches of about 64 KiB, or at a
/// fixed rate, with at most `confirm` unconfirmed, up to `count`.
struct Pacer {
    rate: Option<f64>,
    confirm: Option<u32>,
    count: Option<u64>,
    batch_max: u64,
    start: Instant,
}

impl Pacer {
    fn new(cfg: &ProducerCfg, template: &PublishTemplate) -> Self {
        Pacer {
            rate: cfg.rate,
            confirm: cfg.confirm,
            count: cfg.count,
            batch_max: flat_out_batch(template),
            start: Instant::now(),
        }
    }

    fn next(&self, published: u64, settled: u64) -> Step {
        if self.count.is_some_and(|c| published >= c) {
            return Step::Finished;
        }
        let mut n = self.batch_max;
        if let Some(rate) = self.rate {
            let due = (self.start.elapsed().as_secs_f64() * rate) as u64;
            if due <= published {
                let next = self.start + Duration::from_secs_f64((published + 1) as f64 / rate);
                return Step::SleepUntil(next);
            }
            n = n.min(due - published);
        }
        if let Some(max) = self.confirm {
            let outstanding = published - settled;
            if outstanding >= max as u64 {
                return Step::AwaitConfirms;
            }
            n = n.min(max as u64 - outstanding);
        }
        if let Some(c) = self.count {
            n = n.min(c - published);
        }
        Step::Publish(n)
    }
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
                    let seen = producer_input(&mut reader, &mut tracker, &counters)?;
                    if seen.settled > 0 {
                        settled.fetch_add(seen.settled, Ordering::Release);
                        wake.notify_one();
                    }
                    if seen.close_ok {
                        return Ok(());
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

    let pacer = Pacer::new(&cfg, &template);
    let mut published = 0u64;
    let mut aborted = false;
    loop {
        if cancel.is_cancelled() || reader_done.is_cancelled() {
            break;
        }
        let n = match pacer.next(published, settled.load(Ordering::Acquire)) {
            Step::Finished => break,
            Step::SleepUntil(next) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(next.into()) => {}
                    _ = cancel.cancelled() => break,
                }
                continue;
            }
            Step::AwaitConfirms => {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                continue;
            }
            Step::Publish(n) => n,
        };
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

/// The producer on dedicated OS threads with blocking sockets: this thread
/// sleeps until a message is due and writes it; a second thread reads
/// confirms and whatever else the broker sends.
fn producer_loop_blocking(
    conn: Conn,
    template: PublishTemplate,
    cfg: ProducerCfg,
    counters: &Arc<Counters>,
    cancel: CancellationToken,
) -> Result<()> {
    let (mut reader, mut writer) = conn.into_blocking()?;
    let settled = Arc::new(AtomicU64::new(0));
    let reader_done = Arc::new(AtomicBool::new(false));
    // Set once connection.close is sent: the reader waits a bounded time
    // for close-ok from then on.
    let closing = Arc::new(AtomicBool::new(false));
    let me = std::thread::current();
    let reader_thread = {
        let settled = settled.clone();
        let reader_done = reader_done.clone();
        let closing = closing.clone();
        let counters = counters.clone();
        std::thread::Builder::new()
            .name("perf-producer-reader".into())
            .spawn(move || {
                let mut tracker = ConfirmTracker::new();
                let mut close_deadline = None;
                let result = loop {
                    let seen = match producer_input(&mut reader, &mut tracker, &counters) {
                        Ok(seen) => seen,
                        Err(e) => break Err(e),
                    };
                    if seen.settled > 0 {
                        settled.fetch_add(seen.settled, Ordering::Release);
                        me.unpark();
                    }
                    if seen.close_ok {
                        break Ok(());
                    }
                    if closing.load(Ordering::Acquire) {
                        let deadline = *close_deadline
                            .get_or_insert_with(|| Instant::now() + Duration::from_secs(3));
                        if Instant::now() >= deadline {
                            break Ok(());
                        }
                    }
                    match reader.fill_blocking() {
                        Ok(_) => {}
                        Err(e) if is_timeout(&e) => {}
                        Err(e) => break Err(e),
                    }
                };
                reader_done.store(true, Ordering::Release);
                me.unpark();
                result
            })?
    };

    let pacer = Pacer::new(&cfg, &template);
    let mut published = 0u64;
    while !cancel.is_cancelled() && !reader_done.load(Ordering::Acquire) {
        let n = match pacer.next(published, settled.load(Ordering::Acquire)) {
            Step::Finished => break,
            Step::SleepUntil(next) => {
                let wait = next.saturating_duration_since(Instant::now());
                std::thread::sleep(wait.min(BLOCKING_POLL));
                continue;
            }
            Step::AwaitConfirms => {
                std::thread::park_timeout(BLOCKING_POLL);
                continue;
            }
            Step::Publish(n) => n,
        };
        let stamp = cfg.stamp.then(now_ns);
        template.append(&mut writer.buf, n as usize, stamp);
        writer.flush_blocking(|| cancel.is_cancelled())?;
        published += n;
        counters.published.fetch_add(n, Ordering::Relaxed);
    }

    // With confirms and a count, wait (bounded) for the last confirms.
    if cfg.count.is_some() && cfg.confirm.is_some() {
        let deadline = Instant::now() + Duration::from_secs(60);
        while settled.load(Ordering::Acquire) < published
            && Instant::now() < deadline
            && !reader_done.load(Ordering::Acquire)
            && !cancel.is_cancelled()
        {
            std::thread::park_timeout(BLOCKING_POLL);
        }
    }
    if !reader_done.load(Ordering::Acquire) {
        writer.buf.clear();
        writer.put_connection_close();
        let limit = Instant::now() + Duration::from_secs(2);
        let sent = writer.flush_blocking(|| Instant::now() >= limit);
        closing.store(true, Ordering::Release);
        sent?;
    }
    closing.store(true, Ordering::Release);
    reader_thread
        .join()
        .unwrap_or_else(|_| Err(ClientError::Protocol("producer reader panicked".into())))
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
    /// Run on a dedicated OS thread with a blocking socket (see
    /// [`Conn::into_blocking`]) instead of as a task on the client runtime.
    pub blocking: bool,
    /// A stream consumer's `x-stream-offset` (first, last, next, ...).
    pub stream_offset: Option<String>,
}

/// Connect, set qos and start consuming; returns once consume-ok arrived.
pub async fn open_consumer(uri: &AmqpUri, idx: usize, cfg: &ConsumerCfg) -> Result<Conn> {
    let mut conn = Conn::connect(uri, &format!("perf-consumer-{idx}")).await?;
    conn.channel_open(1).await?;
    if !cfg.auto_ack && cfg.prefetch > 0 {
        conn.basic_qos(1, cfg.prefetch, false).await?;
    }
    let args: Vec<(&str, crate::client::FieldVal<'_>)> = match &cfg.stream_offset {
        Some(offset) => vec![("x-stream-offset", crate::client::FieldVal::Str(offset))],
        None => Vec::new(),
    };
    conn.basic_consume(1, &cfg.queue, cfg.auto_ack, &args)
        .await?;
    Ok(conn)
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
    let conn = open_consumer(&uri, idx, &cfg).await?;
    let who = format!("consumer {idx}");
    if cfg.blocking {
        return Ok(tokio::task::spawn_blocking(move || {
            if let Err(e) = consumer_loop_blocking(conn, cfg, &counters, cancel) {
                counters.error(&who, &e);
            }
        }));
    }
    Ok(tokio::spawn(async move {
        if let Err(e) = consumer_loop(conn, cfg, &counters, cancel).await {
            counters.error(&who, &e);
        }
    }))
}

/// What a consumer keeps between reads: the message being reassembled, the
/// acks owed, and latency samples not yet handed to the recorder.
struct ConsumerState<'a> {
    cfg: &'a ConsumerCfg,
    counters: &'a Counters,
    asm: Assembler,
    multi: u32,
    unacked: u32,
    lat_local: Vec<u64>,
}

impl<'a> ConsumerState<'a> {
    fn new(cfg: &'a ConsumerCfg, counters: &'a Counters) -> Self {
        ConsumerState {
            cfg,
            counters,
            asm: Assembler::default(),
            multi: cfg.multi_ack.max(1),
            unacked: 0,
            lat_local: Vec::new(),
        }
    }

    /// Whether arrivals are being timed right now.
    fn recording(&self) -> bool {
        self.cfg
            .latency
            .as_ref()
            .is_some_and(|l| l.recording.load(Ordering::Relaxed))
    }

    /// Handle every complete frame in `reader` (read at `now`, in ns, when
    /// recording), queueing acks and heartbeats in `writer`.
    fn absorb<R, W>(
        &mut self,
        reader: &mut Reader<R>,
        writer: &mut Writer<W>,
        now: Option<u64>,
    ) -> Result<()> {
        let mut count = 0u64;
        while let Some(frame) = reader.next_frame()? {
            let delivery = match frame.kind {
                FRAME_HEADER | FRAME_BODY => self.asm.content(&frame)?,
                FRAME_METHOD => {
                    match decode_incoming(&frame)? {
                        Incoming::Deliver { tag, redelivered } => {
                            if redelivered {
                                self.counters.redelivered.fetch_add(1, Ordering::Relaxed);
                            }
                            self.asm.deliver(frame.channel, tag)
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
                if let (Some(now), Some(ts)) = (now, d.stamp()) {
                    self.lat_local.push(now.saturating_sub(ts));
                }
                if !self.cfg.auto_ack {
                    self.unacked += 1;
                    if self.unacked >= self.multi {
                        writer.put_ack(d.channel, d.tag, self.multi > 1);
                        self.unacked = 0;
                    }
                }
            }
        }
        if count > 0 {
            self.counters.consumed.fetch_add(count, Ordering::Relaxed);
        }
        if !self.lat_local.is_empty()
            && let Some(l) = &self.cfg.latency
        {
            l.samples.lock().append(&mut self.lat_local);
        }
        Ok(())
    }
}

async fn consumer_loop(
    conn: Conn,
    cfg: ConsumerCfg,
    counters: &Counters,
    cancel: CancellationToken,
) -> Result<()> {
    let (mut reader, mut writer) = conn.into_parts();
    let mut state = ConsumerState::new(&cfg, counters);
    loop {
        let now = state.recording().then(now_ns);
        state.absorb(&mut reader, &mut writer, now)?;
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

/// The consumer on its own OS thread with a blocking socket: the kernel
/// wakes it as the delivery arrives and the arrival time is read first.
fn consumer_loop_blocking(
    conn: Conn,
    cfg: ConsumerCfg,
    counters: &Counters,
    cancel: CancellationToken,
) -> Result<()> {
    let (mut reader, mut writer) = conn.into_blocking()?;
    let mut state = ConsumerState::new(&cfg, counters);
    let mut now = None;
    while !cancel.is_cancelled() {
        state.absorb(&mut reader, &mut writer, now)?;
        writer.flush_blocking(|| cancel.is_cancelled())?;
        match reader.fill_blocking() {
            Ok(_) => now = state.recording().then(now_ns),
            Err(e) if is_timeout(&e) => now = None,
            Err(e) => return Err(e),
        }
    }
    close_blocking(&mut reader, &mut writer)
}

/// A producer and a consumer driven by one OS thread, as a single-threaded
/// client would: it writes a publish when one is due and otherwise waits in
/// `ppoll` on both sockets until the next publish is due. The thread that
/// sent a message is the one the broker's delivery wakes. For rate-limited
/// publishing without confirms.
pub fn paired_loop(
    producer: Conn,
    template: PublishTemplate,
    pcfg: ProducerCfg,
    consumer: Conn,
    ccfg: ConsumerCfg,
    counters: &Counters,
    cancel: CancellationToken,
) -> Result<()> {
    let (mut p_reader, mut p_writer) = producer.into_blocking()?;
    let (mut reader, mut writer) = consumer.into_blocking()?;
    let pacer = Pacer::new(&pcfg, &template);
    let mut state = ConsumerState::new(&ccfg, counters);
    let mut tracker = ConfirmTracker::new();
    let mut published = 0u64;
    while !cancel.is_cancelled() {
        // No confirms here: nothing is ever outstanding.
        let wait = match pacer.next(published, published) {
            Step::Finished => break,
            Step::Publish(n) => {
                let stamp = pcfg.stamp.then(now_ns);
                template.append(&mut p_writer.buf, n as usize, stamp);
                p_writer.flush_blocking(|| cancel.is_cancelled())?;
                published += n;
                counters.published.fetch_add(n, Ordering::Relaxed);
                continue;
            }
            Step::SleepUntil(next) => next.saturating_duration_since(Instant::now()),
            Step::AwaitConfirms => BLOCKING_POLL,
        };
        let [consumer_ready, producer_ready] = poll_readable([&reader, &p_reader], wait)?;
        if consumer_ready {
            reader.fill_blocking()?;
            let now = state.recording().then(now_ns);
            state.absorb(&mut reader, &mut writer, now)?;
            writer.flush_blocking(|| cancel.is_cancelled())?;
        }
        if producer_ready {
            // A close or a flow notice.
            p_reader.fill_blocking()?;
            producer_input(&mut p_reader, &mut tracker, counters)?;
        }
    }
    close_blocking(&mut p_reader, &mut p_writer)?;
    close_blocking(&mut reader, &mut writer)
}

/// Wait up to `timeout` (nanosecond precision) for input on either socket;
/// which ones have some (or are closed).
fn poll_readable(
    sockets: [&Reader<std::net::TcpStream>; 2],
    timeout: Duration,
) -> Result<[bool; 2]> {
    let mut fds = sockets.map(|r| libc::pollfd {
        fd: r.raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    });
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `fds` is a valid array of two pollfd for the duration of the
    // call, `ts` a valid timespec, and no signal mask is passed.
    let n = unsafe { libc::ppoll(fds.as_mut_ptr(), 2, &ts, std::ptr::null()) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            return Ok([false, false]);
        }
        return Err(e.into());
    }
    Ok(fds.map(|f| f.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0))
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
