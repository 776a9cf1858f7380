//! `latency`: producers publish at a fixed total --rate (default 1000 msg/s)
//! messages of --size bytes (default 256) whose first 8 body bytes are the
//! send time; consumers take the difference on arrival. Reports
//! p50/p90/p99/p99.9/max in microseconds over the window. Producer and
//! consumer share this process's monotonic clock, so no clock sync is
//! involved. The stamp is the actual write time (not the scheduled one).
//!
//! Unless --client-io says otherwise, each producer and its consumer run on
//! one OS thread (`paired`: as many producers as consumers, no confirms;
//! otherwise `threads`), so no async runtime sits between a delivery
//! arriving and the clock being read.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::runner::{self, Headline, Report, RunCtx};
use crate::throughput::{ClientIo, Shape, start, stop};
use crate::workload::LatencyRecorder;

fn percentile(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0)
}

pub async fn run(ctx: RunCtx) -> Result<Report, String> {
    let mut shape = Shape::from_cli(&ctx, 256)?;
    if shape.rate.is_none() {
        shape.rate = Some(1000.0);
    }
    if ctx.cli.client_io.is_none() {
        shape.io = if shape.producers == shape.consumers && shape.confirm.is_none() {
            ClientIo::Paired
        } else {
            ClientIo::Threads
        };
    }
    if shape.size < 8 {
        return Err("latency needs --size of at least 8 bytes for the timestamp".into());
    }
    let recorder = Arc::new(LatencyRecorder::default());
    let running = start(&ctx, &shape, Some(recorder.clone())).await?;
    let counters = running.counters.clone();
    let conns = (shape.producers + shape.consumers) as u64;
    let w = runner::measure(
        &ctx,
        &counters,
        conns,
        || recorder.recording.store(true, Ordering::Relaxed),
        || recorder.recording.store(false, Ordering::Relaxed),
    )
    .await;
    let backlog = stop(running).await;

    let mut samples = std::mem::take(&mut *recorder.samples.lock());
    samples.sort_unstable();
    let mut j = ctx.base_json("latency");
    shape.describe(&mut j);
    j.set("warmup_s", ctx.cli.warmup);
    runner::window_json(&mut j, &w, w.consumed, &counters);
    j.set("latency_samples", samples.len())
        .set("latency_min_us", percentile(&samples, 0.0))
        .set("latency_p50_us", percentile(&samples, 50.0))
        .set("latency_p90_us", percentile(&samples, 90.0))
        .set("latency_p99_us", percentile(&samples, 99.0))
        .set("latency_p999_us", percentile(&samples, 99.9))
        .set("latency_max_us", percentile(&samples, 100.0))
        .set("backlog_end", backlog);
    Ok(Report {
        json: j,
        headline: vec![
            Headline {
                key: "latency_p50_us",
                higher_is_better: false,
            },
            Headline {
                key: "latency_p99_us",
                higher_is_better: false,
            },
            Headline {
                key: "latency_p999_us",
                higher_is_better: false,
            },
            Headline {
                key: "broker_cpu_s",
                higher_is_better: false,
            },
        ],
    })
}
