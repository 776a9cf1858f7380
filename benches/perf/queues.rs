//! Many durable queues, each empty: what one costs in disk, memory and time.
//!
//! - `declare-queues`: declare --queues N durable queues `perf-dq-<i>` over
//!   --concurrency connections (default 50, at most N), one declare in
//!   flight per connection. Reports the declare rate, and the broker's disk
//!   use and RSS after --settle seconds idle.
//! - `delete-queues`: delete `perf-dq-0` … `perf-dq-<N-1>` the same way;
//!   reports the delete rate, disk use and RSS afterwards.
//!
//! Between the two, `wait-ready --exec … --queue perf-dq-<N-1> --expect 0`
//! times the restart with N durable queues (`benches/run-queues.sh`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::procstat;
use crate::runner::{Headline, Report, RunCtx};
use crate::workload::control_connection;

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Declare,
    Delete,
}

pub async fn declare(ctx: RunCtx) -> Result<Report, String> {
    run(ctx, Op::Declare).await
}

pub async fn delete(ctx: RunCtx) -> Result<Report, String> {
    run(ctx, Op::Delete).await
}

async fn run(ctx: RunCtx, op: Op) -> Result<Report, String> {
    let c = ctx.cli.clone();
    let n = c.queues.max(1);
    let workers = c.concurrency.clamp(1, n);
    let pid = ctx.target.pid;
    let disk = || {
        ctx.target
            .data_dir
            .as_ref()
            .map(|d| procstat::disk_usage(std::path::Path::new(d)))
    };
    let mem = || pid.and_then(procstat::memory_kb);
    let disk_before = disk();
    let rss_before = mem();
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let uri = ctx.target.uri.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = control_connection(&uri)
                .await
                .map_err(|e| format!("connection: {e}"))?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let name = format!("perf-dq-{i}");
                let done = match op {
                    Op::Declare => conn
                        .queue_declare(1, &name, true, false, false, false)
                        .await
                        .map(|_| ()),
                    Op::Delete => conn.queue_delete(1, &name).await.map(|_| ()),
                };
                done.map_err(|e| format!("{name}: {e}"))?;
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), conn.close()).await;
            Ok::<(), String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| format!("worker: {e}"))??;
    }
    let secs = t0.elapsed().as_secs_f64();
    let disk_done = disk();
    tokio::time::sleep(Duration::from_secs_f64(c.settle.max(0.0))).await;
    let rss_after = mem();
    let disk_after = disk();
    let (scenario, rate) = match op {
        Op::Declare => ("declare-queues", "declared_per_sec"),
        Op::Delete => ("delete-queues", "deleted_per_sec"),
    };
    let mut j = ctx.base_json(scenario);
    j.set("queues", n)
        .set("connections", workers)
        .set("secs", secs)
        .set(rate, n as f64 / secs.max(1e-9))
        .set("disk_before_bytes", disk_before)
        .set("disk_done_bytes", disk_done)
        .set("disk_after_bytes", disk_after)
        .set("rss_before_kb", rss_before.map(|m| m.0))
        .set("rss_after_kb", rss_after.map(|m| m.0))
        .set("hwm_kb", rss_after.map(|m| m.1))
        .set("settle_s", c.settle);
    let h = |key, higher_is_better| Headline {
        key,
        higher_is_better,
    };
    Ok(Report {
        json: j,
        headline: vec![
            h(rate, true),
            h("disk_after_bytes", false),
            h("rss_after_kb", false),
        ],
    })
}
