//! `stream`: stream queues (`x-queue-type: stream`).
//!
//! 1. Publish --size (default 1024) bytes with confirms (at most --confirm,
//!    default 1000, unconfirmed per producer) into one stream, with 1 and
//!    then 4 producers: confirmed msgs/s over the --warmup/--duration window.
//! 2. Fill a second stream with --count (default 10,000,000) messages of
//!    100 bytes (4 producers, confirms).
//! 3. Replay it from `first` with one consumer (manual ack, --prefetch,
//!    multi-ack 100) until it has read every message: msgs/s and the
//!    broker's RSS (100 ms samples).
//! 4. Replay it with --consumers (default 10) concurrent consumers from
//!    `first` over the --warmup/--duration window: total msgs/s and RSS.
//!
//! The replay stream is deleted at the end unless --queue names it (then
//! it stays, for a start-up measurement with a large stream).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::client::FieldVal;
use crate::runner::{self, Headline, Report, RunCtx};
use crate::workload::{
    ConsumerCfg, Counters, ProducerCfg, control_connection, join_all, start_consumer,
    start_producer,
};

const REPLAY_SIZE: usize = 100;

pub async fn run(ctx: RunCtx) -> Result<Report, String> {
    let c = ctx.cli.clone();
    let n = c.count.unwrap_or(10_000_000);
    let size = c.size.unwrap_or(1024);
    let confirm = c.confirm.unwrap_or(1000).max(1);
    let readers = if c.consumers > 1 { c.consumers } else { 10 };
    let timeout = Duration::from_secs_f64(c.timeout.max(1.0));
    let uri = ctx.target.uri.clone();
    let pid = ctx.target.pid;
    let mem = || pid.and_then(crate::procstat::memory_kb);
    let blocking = ctx.cli.client_io.as_deref() == Some("threads");
    let mut ctrl = control_connection(&uri)
        .await
        .map_err(|e| format!("control connection: {e}"))?;
    let stream_args = [("x-queue-type", FieldVal::Str("stream"))];
    let producer = |queue: &str, size: usize, count: Option<u64>| ProducerCfg {
        exchange: String::new(),
        routing_key: queue.to_string(),
        size,
        persistent: true,
        confirm: Some(confirm),
        rate: None,
        count,
        stamp: false,
        blocking,
    };
    let mut j = ctx.base_json("stream");
    j.set("size", size)
        .set("confirm", confirm)
        .set("count", n)
        .set("replay_size", REPLAY_SIZE)
        .set("prefetch", c.prefetch)
        .set("replay_consumers", readers)
        .set("rss_start_kb", mem().map(|m| m.0));

    // 1. Publish rate with 1 and 4 producers.
    for producers in [1usize, 4] {
        let queue = format!("perf-stream-pub{producers}-{}", ctx.run_id);
        ctrl.queue_declare_args(1, &queue, &stream_args)
            .await
            .map_err(|e| format!("declaring {queue}: {e}"))?;
        let counters = Arc::new(Counters::default());
        let cancel = CancellationToken::new();
        let mut tasks = Vec::new();
        for i in 0..producers {
            tasks.push(
                start_producer(
                    uri.clone(),
                    i,
                    producer(&queue, size, None),
                    counters.clone(),
                    cancel.clone(),
                )
                .await
                .map_err(|e| format!("starting a producer: {e}"))?,
            );
        }
        let w = runner::measure(&ctx, &counters, producers as u64, || {}, || {}).await;
        cancel.cancel();
        join_all(tasks, Duration::from_secs(10)).await;
        let key = format!("publish{producers}");
        j.set(
            &format!("{key}_per_sec"),
            w.confirmed as f64 / w.secs.max(1e-9),
        )
        .set(&format!("{key}_rss_max_kb"), w.broker_rss_max_kb)
        .set(&format!("{key}_broker_cpu_s"), w.broker_cpu_s);
        if let Err(e) = ctrl.queue_delete(1, &queue).await {
            eprintln!("[perf] deleting {queue}: {e}");
        }
    }

    // 2. Fill the replay stream.
    let queue = c
        .queue
        .clone()
        .unwrap_or_else(|| format!("perf-stream-replay-{}", ctx.run_id));
    ctrl.queue_declare_args(1, &queue, &stream_args)
        .await
        .map_err(|e| format!("declaring {queue}: {e}"))?;
    let counters = Arc::new(Counters::default());
    let cancel = CancellationToken::new();
    let mut tasks = Vec::new();
    let fillers = 4u64;
    for i in 0..fillers {
        let share = n / fillers + u64::from(i < n % fillers);
        tasks.push(
            start_producer(
                uri.clone(),
                i as usize,
                producer(&queue, REPLAY_SIZE, Some(share)),
                counters.clone(),
                cancel.clone(),
            )
            .await
            .map_err(|e| format!("starting a producer: {e}"))?,
        );
    }
    let fill = runner::phase(&ctx, "fill", &counters, fillers, timeout, |k| {
        k.confirmed.load(Ordering::Relaxed) + k.nacked.load(Ordering::Relaxed) >= n
    })
    .await;
    if !fill.completed {
        cancel.cancel();
    }
    join_all(tasks, Duration::from_secs(10)).await;
    runner::phase_json(&mut j, "fill", &fill, fill.confirmed);
    j.set("fill_per_sec", fill.confirmed as f64 / fill.secs.max(1e-9))
        .set("rss_after_fill_kb", mem().map(|m| m.0));
    let consumer = |_: usize| ConsumerCfg {
        queue: queue.clone(),
        prefetch: c.prefetch,
        auto_ack: false,
        multi_ack: c
            .multi_ack
            .unwrap_or(100)
            .max(1)
            .min(c.prefetch.max(1) as u32),
        latency: None,
        blocking,
        stream_offset: Some("first".into()),
    };

    // 3. One consumer reads it all.
    let counters = Arc::new(Counters::default());
    let cancel = CancellationToken::new();
    let task = start_consumer(
        uri.clone(),
        0,
        consumer(0),
        counters.clone(),
        cancel.clone(),
    )
    .await
    .map_err(|e| format!("starting the consumer: {e}"))?;
    let replay = runner::phase(&ctx, "replay1", &counters, 1, timeout, |k| {
        k.consumed.load(Ordering::Relaxed) >= n
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    cancel.cancel();
    join_all(vec![task], Duration::from_secs(10)).await;
    runner::phase_json(&mut j, "replay1", &replay, replay.consumed);
    j.set(
        "replay1_per_sec",
        replay.consumed as f64 / replay.secs.max(1e-9),
    );

    // 4. Many consumers at once, each from first.
    let counters = Arc::new(Counters::default());
    let cancel = CancellationToken::new();
    let mut tasks = Vec::new();
    for i in 0..readers {
        tasks.push(
            start_consumer(
                uri.clone(),
                i,
                consumer(i),
                counters.clone(),
                cancel.clone(),
            )
            .await
            .map_err(|e| format!("starting a consumer: {e}"))?,
        );
    }
    let w = runner::measure(&ctx, &counters, readers as u64, || {}, || {}).await;
    cancel.cancel();
    join_all(tasks, Duration::from_secs(10)).await;
    j.set("replay_many_per_sec", w.consumed as f64 / w.secs.max(1e-9))
        .set("replay_many_rss_max_kb", w.broker_rss_max_kb)
        .set("replay_many_broker_cpu_s", w.broker_cpu_s)
        .set("replay_many_window_s", w.secs);
    if c.queue.is_none()
        && let Err(e) = ctrl.queue_delete(1, &queue).await
    {
        eprintln!("[perf] deleting {queue}: {e}");
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), ctrl.close()).await;
    runner::errors_json(&mut j, &counters);
    let h = |key, higher_is_better| Headline {
        key,
        higher_is_better,
    };
    Ok(Report {
        json: j,
        headline: vec![
            h("publish1_per_sec", true),
            h("publish4_per_sec", true),
            h("fill_per_sec", true),
            h("replay1_per_sec", true),
            h("replay1_rss_max_kb", false),
            h("replay_many_per_sec", true),
            h("replay_many_rss_max_kb", false),
        ],
    })
}
