//! `connections`: open --connections connections (default 1000), each with
//! --channels channels (default 2), one exclusive server-named queue declared
//! on channel 1 and a consumer (manual ack, --prefetch) on it from the last
//! channel; hold them for --hold seconds while sampling the broker's RSS
//! every 100 ms, then close them all. Reports the broker's RSS before, while
//! held (the last sample and the highest), per connection, and --settle
//! seconds after closing, plus open/close times and the broker CPU the idle
//! connections cost. Opening runs --concurrency handshakes at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Semaphore;

use crate::client::{AmqpUri, Conn, Result as CResult};
use crate::procstat;
use crate::runner::{self, Headline, Report, RunCtx};
use crate::workload::Counters;

async fn open_one(uri: &AmqpUri, i: usize, channels: u16, prefetch: u16) -> CResult<Conn> {
    let mut c = Conn::connect(uri, &format!("perf-conn-{i}")).await?;
    for ch in 1..=channels {
        c.channel_open(ch).await?;
    }
    let (queue, _, _) = c.queue_declare(1, "", false, true, false, false).await?;
    if prefetch > 0 {
        c.basic_qos(channels, prefetch, false).await?;
    }
    c.basic_consume(channels, &queue, false, &[]).await?;
    Ok(c)
}

pub async fn run(ctx: RunCtx) -> std::result::Result<Report, String> {
    let c = ctx.cli.clone();
    let n = c.connections.max(1);
    let channels = c.channels.max(1);
    let pid = ctx.target.pid;
    let mem = || pid.and_then(procstat::memory_kb);
    let uri = ctx.target.uri.clone();
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();

    let rss_before = mem();
    let cpu_before = pid.and_then(|p| procstat::cpu_seconds(Some(p)));
    eprintln!(
        "[perf] {}: opening {n} connections x {channels} channels",
        ctx.target.label
    );
    let t_open = Instant::now();
    let sem = Arc::new(Semaphore::new(c.concurrency.max(1)));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let sem = sem.clone();
        let uri = uri.clone();
        let first_error = first_error.clone();
        let prefetch = c.prefetch;
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.ok()?;
            match tokio::time::timeout(
                Duration::from_secs(30),
                open_one(&uri, i, channels, prefetch),
            )
            .await
            {
                Ok(Ok(conn)) => Some(conn),
                Ok(Err(e)) => {
                    first_error
                        .lock()
                        .get_or_insert(format!("connection {i}: {e}"));
                    None
                }
                Err(_) => {
                    first_error
                        .lock()
                        .get_or_insert(format!("connection {i}: set-up took over 30 s"));
                    None
                }
            }
        }));
    }
    let mut conns = Vec::with_capacity(n);
    for t in tasks {
        if let Ok(Some(conn)) = t.await {
            conns.push(conn);
        }
    }
    let open_secs = t_open.elapsed().as_secs_f64();
    let opened = conns.len();
    let cpu_opened = pid.and_then(|p| procstat::cpu_seconds(Some(p)));
    eprintln!(
        "[perf] {}: {opened}/{n} connections open in {open_secs:.2} s; holding {:.0} s",
        ctx.target.label, c.hold
    );

    // Hold: sample RSS every 100 ms (a phase with nothing to wait for).
    let counters = Counters::default();
    let hold = runner::phase(
        &ctx,
        "hold",
        &counters,
        0,
        Duration::from_secs_f64(c.hold.max(0.1)),
        |_| false,
    )
    .await;

    // Close, `concurrency` at a time.
    let t_close = Instant::now();
    let mut tasks = Vec::with_capacity(opened);
    for conn in conns {
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.ok()?;
            tokio::time::timeout(Duration::from_secs(10), conn.close())
                .await
                .ok()?
                .ok()
        }));
    }
    let mut closed_ok = 0usize;
    for t in tasks {
        if let Ok(Some(())) = t.await {
            closed_ok += 1;
        }
    }
    let close_secs = t_close.elapsed().as_secs_f64();
    let rss_after_close = mem();
    tokio::time::sleep(Duration::from_secs_f64(c.settle.max(0.0))).await;
    let rss_after_settle = mem();

    let rss_held = hold.rss_end_kb;
    let per_conn = rss_held
        .zip(rss_before)
        .filter(|_| opened > 0)
        .map(|(h, b)| (h as f64 - b.0 as f64) / opened as f64);
    let mut j = ctx.base_json("connections");
    j.set("connections", n)
        .set("channels_per_connection", channels)
        .set("queues_per_connection", 1u32)
        .set("consumers_per_connection", 1u32)
        .set("opened", opened)
        .set("failed", n - opened)
        .set("first_error", first_error.lock().clone())
        .set("open_secs", open_secs)
        .set("opened_per_sec", opened as f64 / open_secs.max(1e-9))
        .set(
            "open_broker_cpu_s",
            cpu_before.zip(cpu_opened).map(|(a, b)| b - a),
        )
        .set("rss_before_kb", rss_before.map(|m| m.0))
        .set("rss_held_kb", rss_held)
        .set("rss_held_max_kb", hold.rss_max_kb)
        .set("rss_held_mb", rss_held.map(|k| k as f64 / 1024.0))
        .set("rss_per_connection_kb", per_conn)
        .set("hold_s", hold.secs)
        .set("hold_broker_cpu_s", hold.broker_cpu_s)
        .set(
            "hold_broker_cpu_cores",
            hold.broker_cpu_s.map(|x| x / hold.secs.max(1e-9)),
        )
        .set("hold_client_cpu_s", hold.client_cpu_s)
        .set("close_secs", close_secs)
        .set("closed_ok", closed_ok)
        .set("rss_after_close_kb", rss_after_close.map(|m| m.0))
        .set("rss_after_settle_kb", rss_after_settle.map(|m| m.0))
        .set("settle_s", c.settle)
        .set("hwm_kb", mem().map(|m| m.1));
    let h = |key, higher_is_better| Headline {
        key,
        higher_is_better,
    };
    Ok(Report {
        json: j,
        headline: vec![
            h("rss_held_kb", false),
            h("rss_per_connection_kb", false),
            h("opened_per_sec", true),
            h("hold_broker_cpu_cores", false),
            h("rss_after_settle_kb", false),
        ],
    })
}
