//! `backlog`: publish --count messages (default 1,000,000) of --size bytes
//! (default 1024), persistent, to one durable queue with no consumer, with
//! publisher confirms and at most --confirm (default 1000) unconfirmed, so
//! the publish rate is the broker's durable rate. Then one consumer (manual
//! ack, --prefetch 1000, --multi-ack 100) drains the queue. Reports both
//! rates, broker CPU per message for each phase, and the broker's RSS
//! sampled every 100 ms (peak per phase, VmHWM, and RSS after the drain, after
//! --settle seconds idle, and after the queue is deleted).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::procstat;
use crate::runner::{self, Headline, Report, RunCtx};
use crate::workload::{
    ConsumerCfg, Counters, ProducerCfg, control_connection, join_all, start_consumer,
    start_producer,
};

pub async fn run(ctx: RunCtx) -> Result<Report, String> {
    let c = ctx.cli.clone();
    let n = c.count.unwrap_or(1_000_000);
    let size = c.size.unwrap_or(1024);
    let confirm = c.confirm.unwrap_or(1000).max(1);
    let prefetch = c.prefetch;
    let mut multi_ack = c.multi_ack.unwrap_or(100).max(1);
    if prefetch > 0 {
        multi_ack = multi_ack.min(prefetch as u32);
    }
    let timeout = Duration::from_secs_f64(c.timeout.max(1.0));
    let uri = ctx.target.uri.clone();
    let pid = ctx.target.pid;
    let mem = || pid.and_then(procstat::memory_kb);
    let disk = || {
        ctx.target
            .data_dir
            .as_ref()
            .map(|d| procstat::disk_usage(std::path::Path::new(d)))
    };

    let mut ctrl = control_connection(&uri)
        .await
        .map_err(|e| format!("control connection: {e}"))?;
    let queue = format!("perf-backlog-{}", ctx.run_id);
    ctrl.queue_declare(1, &queue, true, false, false, false)
        .await
        .map_err(|e| format!("declaring {queue}: {e}"))?;
    let disk_start = disk();
    let rss_start = mem();

    // Publish.
    let counters = Arc::new(Counters::default());
    let cancel = CancellationToken::new();
    let producer = start_producer(
        uri.clone(),
        0,
        ProducerCfg {
            exchange: String::new(),
            routing_key: queue.clone(),
            size,
            persistent: true,
            confirm: Some(confirm),
            rate: None,
            count: Some(n),
            stamp: false,
            blocking: ctx.cli.client_io.as_deref() == Some("threads"),
        },
        counters.clone(),
        cancel.clone(),
    )
    .await
    .map_err(|e| format!("starting the producer: {e}"))?;
    let publish = runner::phase(&ctx, "publish", &counters, 1, timeout, |k| {
        k.confirmed.load(Ordering::Relaxed) + k.nacked.load(Ordering::Relaxed) >= n
    })
    .await;
    if !publish.completed {
        cancel.cancel();
    }
    join_all(vec![producer], Duration::from_secs(10)).await;
    let (_, ready_after_publish, _) = ctrl
        .queue_declare(1, &queue, true, false, false, true)
        .await
        .map_err(|e| format!("counting {queue}: {e}"))?;
    let rss_after_publish = mem();
    let disk_after_publish = disk();

    // Drain.
    let drain_cancel = CancellationToken::new();
    let consumed0 = counters.consumed.load(Ordering::Relaxed);
    let want = ready_after_publish as u64;
    let consumer = start_consumer(
        uri.clone(),
        0,
        ConsumerCfg {
            queue: queue.clone(),
            prefetch,
            auto_ack: false,
            multi_ack,
            latency: None,
            blocking: ctx.cli.client_io.as_deref() == Some("threads"),
            stream_offset: None,
        },
        counters.clone(),
        drain_cancel.clone(),
    )
    .await
    .map_err(|e| format!("starting the consumer: {e}"))?;
    let drain = runner::phase(&ctx, "drain", &counters, 1, timeout, |k| {
        k.consumed.load(Ordering::Relaxed) - consumed0 >= want
    })
    .await;
    // Give the last multi-ack a moment to leave before closing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drain_cancel.cancel();
    join_all(vec![consumer], Duration::from_secs(10)).await;
    let rss_after_drain = mem();
    tokio::time::sleep(Duration::from_secs_f64(c.settle.max(0.0))).await;
    let rss_after_drain_idle = mem();
    let left = ctrl
        .queue_declare(1, &queue, true, false, false, true)
        .await
        .map(|(_, ready, _)| ready)
        .ok();
    if let Err(e) = ctrl.queue_delete(1, &queue).await {
        eprintln!("[perf] deleting {queue}: {e}");
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), ctrl.close()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after_delete = mem();

    let peak = [publish.rss_max_kb, drain.rss_max_kb]
        .into_iter()
        .flatten()
        .max();
    let mut j = ctx.base_json("backlog");
    j.set("count", n)
        .set("size", size)
        .set("confirm", confirm)
        .set("prefetch", prefetch)
        .set("multi_ack", multi_ack)
        .set("queue", queue.as_str())
        .set("rss_start_kb", rss_start.map(|m| m.0))
        .set("hwm_start_kb", rss_start.map(|m| m.1));
    runner::phase_json(&mut j, "publish", &publish, publish.confirmed);
    j.set(
        "published_per_sec",
        publish.confirmed as f64 / publish.secs.max(1e-9),
    )
    .set("ready_after_publish", ready_after_publish)
    .set("rss_after_publish_kb", rss_after_publish.map(|m| m.0))
    .set("disk_start_bytes", disk_start)
    .set("disk_after_publish_bytes", disk_after_publish);
    runner::phase_json(&mut j, "drain", &drain, drain.consumed);
    j.set("peak_rss_kb", peak)
        .set("hwm_kb", mem().map(|m| m.1))
        .set("rss_after_drain_kb", rss_after_drain.map(|m| m.0))
        .set("rss_after_drain_idle_kb", rss_after_drain_idle.map(|m| m.0))
        .set("settle_s", c.settle)
        .set("left_after_drain", left)
        .set("rss_after_delete_kb", rss_after_delete.map(|m| m.0));
    runner::errors_json(&mut j, &counters);
    let h = |key, higher_is_better| Headline {
        key,
        higher_is_better,
    };
    Ok(Report {
        json: j,
        headline: vec![
            h("published_per_sec", true),
            h("drain_per_sec", true),
            h("peak_rss_kb", false),
            h("publish_rss_max_kb", false),
            h("drain_rss_max_kb", false),
            h("rss_after_drain_idle_kb", false),
            h("publish_msgs_per_broker_cpu_s", true),
            h("drain_msgs_per_broker_cpu_s", true),
        ],
    })
}
