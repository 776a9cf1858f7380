//! `purge`, `delete-queue`: empty the durable queue --queue (filled by
//! `fill`) with one queue.purge or queue.delete, and measure what it costs
//! the broker: time to the -ok, broker RSS sampled every 20 ms from just
//! before until --settle seconds after (peak above the RSS before), and
//! disk use before, right after and after --settle.

use std::time::{Duration, Instant};

use crate::procstat;
use crate::runner::{Headline, Report, RunCtx};
use crate::workload::control_connection;

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Purge,
    Delete,
}

pub async fn purge(ctx: RunCtx) -> Result<Report, String> {
    run(ctx, Op::Purge).await
}

pub async fn delete(ctx: RunCtx) -> Result<Report, String> {
    run(ctx, Op::Delete).await
}

async fn run(ctx: RunCtx, op: Op) -> Result<Report, String> {
    let c = ctx.cli.clone();
    let queue = c
        .queue
        .clone()
        .unwrap_or_else(|| "perf-recovery".to_string());
    let pid = ctx.target.pid;
    let rss = move || pid.and_then(procstat::memory_kb).map(|m| m.0);
    let disk = || {
        ctx.target
            .data_dir
            .as_ref()
            .map(|d| procstat::disk_usage(std::path::Path::new(d)))
    };
    let mut ctrl = control_connection(&ctx.target.uri)
        .await
        .map_err(|e| format!("control connection: {e}"))?;
    let (_, ready, _) = ctrl
        .queue_declare(1, &queue, true, false, false, true)
        .await
        .map_err(|e| format!("{queue}: {e}"))?;
    let disk_before = disk();
    let rss_before = rss();
    // Sample the broker's RSS while the operation runs and settles.
    let stop = tokio_util::sync::CancellationToken::new();
    let sampler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut peak = 0u64;
            loop {
                if let Some(kb) = rss() {
                    peak = peak.max(kb);
                }
                tokio::select! {
                    _ = stop.cancelled() => return peak,
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        })
    };
    let t0 = Instant::now();
    let removed = match op {
        Op::Purge => ctrl.queue_purge(1, &queue).await,
        Op::Delete => ctrl.queue_delete(1, &queue).await,
    }
    .map_err(|e| format!("{queue}: {e}"))?;
    let secs = t0.elapsed().as_secs_f64();
    let disk_done = disk();
    tokio::time::sleep(Duration::from_secs_f64(c.settle.max(0.0))).await;
    stop.cancel();
    let peak = sampler.await.ok();
    let rss_after = rss();
    let disk_after = disk();
    let _ = tokio::time::timeout(Duration::from_secs(10), ctrl.close()).await;
    let scenario = match op {
        Op::Purge => "purge",
        Op::Delete => "delete-queue",
    };
    let mut j = ctx.base_json(scenario);
    j.set("queue", queue.as_str())
        .set("ready_before", ready)
        .set("removed", removed)
        .set("secs", secs)
        .set("rss_before_kb", rss_before)
        .set("peak_rss_kb", peak)
        .set(
            "peak_above_before_kb",
            peak.zip(rss_before).map(|(p, b)| p.saturating_sub(b)),
        )
        .set("rss_after_kb", rss_after)
        .set("disk_before_bytes", disk_before)
        .set("disk_done_bytes", disk_done)
        .set("disk_after_bytes", disk_after)
        .set("settle_s", c.settle);
    let h = |key, higher_is_better| Headline {
        key,
        higher_is_better,
    };
    Ok(Report {
        json: j,
        headline: vec![h("secs", false), h("peak_above_before_kb", false)],
    })
}
