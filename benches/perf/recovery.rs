//! The two halves of the recovery measurement, driven by
//! `benches/run-recovery.sh`, which stops and starts the brokers:
//!
//! - `fill`: publish --count persistent messages (default 1,000,000) of --size
//!   bytes (default 1024) to the durable queue --queue (default
//!   `perf-recovery`) with confirms (≤ --confirm outstanding, default 1000),
//!   and check the queue reports them all. The queue is left in place.
//! - `wait-ready`: with --exec CMD, start the broker (its PID goes to
//!   --pid-file; it is left running); without, just wait for the broker at
//!   --uri. Times from just before the fork (or from this tool's start) to
//!   (a) the first completed AMQP handshake and (b) a passive queue.declare
//!   of --queue reporting --expect messages (tried every 2 ms). If the count
//!   stays at another value for --settle seconds, it stops and says so.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::broker_proc::{Spawned, wait_handshake};
use crate::client::{ClientError, Conn};
use crate::procstat;
use crate::runner::{self, Headline, Report, RunCtx};
use crate::workload::{Counters, ProducerCfg, control_connection, join_all, start_producer};

fn queue_name(ctx: &RunCtx) -> String {
    ctx.cli
        .queue
        .clone()
        .unwrap_or_else(|| "perf-recovery".to_string())
}

pub async fn fill(ctx: RunCtx) -> Result<Report, String> {
    let c = ctx.cli.clone();
    let n = c.count.unwrap_or(1_000_000);
    let size = c.size.unwrap_or(1024);
    let confirm = c.confirm.unwrap_or(1000).max(1);
    let queue = queue_name(&ctx);
    let uri = ctx.target.uri.clone();
    let mut ctrl = control_connection(&uri)
        .await
        .map_err(|e| format!("control connection: {e}"))?;
    let (_, before, _) = ctrl
        .queue_declare(1, &queue, true, false, false, false)
        .await
        .map_err(|e| format!("declaring {queue}: {e}"))?;
    if before != 0 {
        return Err(format!("{queue} already holds {before} messages"));
    }
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
            blocking: false,
        },
        counters.clone(),
        cancel.clone(),
    )
    .await
    .map_err(|e| format!("starting the producer: {e}"))?;
    let timeout = Duration::from_secs_f64(c.timeout.max(1.0));
    let publish = runner::phase(&ctx, "fill", &counters, 1, timeout, |k| {
        k.confirmed.load(Ordering::Relaxed) + k.nacked.load(Ordering::Relaxed) >= n
    })
    .await;
    if !publish.completed {
        cancel.cancel();
    }
    join_all(vec![producer], Duration::from_secs(10)).await;
    // The count may lag the last confirm a little.
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        let (_, ready, _) = ctrl
            .queue_declare(1, &queue, true, false, false, true)
            .await
            .map_err(|e| format!("counting {queue}: {e}"))?;
        if ready as u64 >= n || Instant::now() >= deadline {
            break ready;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), ctrl.close()).await;
    let mut j = ctx.base_json("fill");
    j.set("queue", queue.as_str())
        .set("count", n)
        .set("size", size)
        .set("confirm", confirm);
    runner::phase_json(&mut j, "fill", &publish, publish.confirmed);
    j.set(
        "published_per_sec",
        publish.confirmed as f64 / publish.secs.max(1e-9),
    )
    .set("ready", ready)
    .set(
        "disk_bytes",
        ctx.target
            .data_dir
            .as_ref()
            .map(|d| procstat::disk_usage(std::path::Path::new(d))),
    );
    runner::errors_json(&mut j, &counters);
    if ready as u64 != n {
        j.set(
            "error",
            format!("{queue} holds {ready} messages after the fill, not {n}"),
        );
    }
    Ok(Report {
        json: j,
        headline: vec![Headline {
            key: "published_per_sec",
            higher_is_better: true,
        }],
    })
}

fn check(sp: &mut Option<Spawned>) -> Result<(), String> {
    sp.as_mut().map_or(Ok(()), |s| s.check_alive())
}

enum Poll {
    Count(u32),
    NoQueue,
    Broken(String),
}

/// Passive declare on channel `ch`, opening it first unless `*open`.
async fn passive_count(conn: &mut Conn, ch: u16, open: &mut bool, queue: &str) -> Poll {
    if !*open {
        if let Err(e) = conn.channel_open(ch).await {
            return Poll::Broken(e.to_string());
        }
        *open = true;
    }
    match conn
        .queue_declare(ch, queue, true, false, false, true)
        .await
    {
        Ok((_, ready, _)) => Poll::Count(ready),
        Err(ClientError::ChannelClosed { code: 404, .. }) => Poll::NoQueue,
        Err(e) => Poll::Broken(e.to_string()),
    }
}

pub async fn wait_ready(ctx: RunCtx) -> Result<Report, String> {
    let c = ctx.cli.clone();
    let timeout = Duration::from_secs_f64(c.timeout.max(1.0));
    let uri = ctx.target.uri.clone();
    let mut spawned = match &ctx.target.exec {
        Some(cmd) => {
            let log = c
                .broker_log
                .clone()
                .unwrap_or_else(|| "/tmp/perf-wait-ready-broker.log".into());
            let sp = Spawned::spawn(cmd, &log)?;
            eprintln!("[perf] started pid {}: {cmd} (log {log})", sp.pid);
            if let Some(f) = &c.pid_file {
                std::fs::write(f, format!("{}\n", sp.pid))
                    .map_err(|e| format!("writing {f}: {e}"))?;
            }
            Some(sp)
        }
        None => None,
    };
    let t0 = spawned.as_ref().map_or_else(Instant::now, |s| s.t0);
    let pid = spawned.as_ref().map(|s| s.pid).or(ctx.target.pid);
    let deadline = t0 + timeout;

    let (mut conn, attempts) = wait_handshake(&uri, deadline, || check(&mut spawned)).await?;
    let handshake = t0.elapsed();
    eprintln!(
        "[perf] {}: first handshake after {:.1} ms",
        ctx.target.label,
        handshake.as_secs_f64() * 1e3
    );
    let cpu_at_handshake = pid.map(procstat::tree_cpu_seconds);

    let mut visible: Option<Duration> = None;
    let mut ready_at: Option<Duration> = None;
    let mut last: Option<u32> = None;
    let mut last_change = Instant::now();
    let mut polls = 0u64;
    let mut reconnects = 0u64;
    let mut note: Option<String> = None;
    if let Some(queue) = c.queue.clone() {
        let settle = Duration::from_secs_f64(c.settle.max(1.0));
        let mut ch: u16 = 1;
        let mut open = false;
        let mut last_log = Instant::now();
        loop {
            if Instant::now() >= deadline {
                note = Some(format!(
                    "timed out after {:.0} s (count {last:?})",
                    timeout.as_secs_f64()
                ));
                break;
            }
            polls += 1;
            match passive_count(&mut conn, ch, &mut open, &queue).await {
                Poll::Count(n) => {
                    let at = t0.elapsed();
                    visible.get_or_insert(at);
                    if last != Some(n) {
                        last = Some(n);
                        last_change = Instant::now();
                    }
                    match c.expect {
                        None => {
                            ready_at = Some(at);
                            break;
                        }
                        Some(e) if n as u64 == e => {
                            ready_at = Some(at);
                            break;
                        }
                        Some(e) if last_change.elapsed() >= settle => {
                            note = Some(format!(
                                "count stayed at {n} (expected {e}) for {:.0} s",
                                settle.as_secs_f64()
                            ));
                            break;
                        }
                        _ => {}
                    }
                }
                Poll::NoQueue => {
                    // The broker closed the channel: use the next one.
                    ch += 1;
                    open = false;
                }
                Poll::Broken(e) => {
                    eprintln!("[perf] poll: {e}; reconnecting");
                    reconnects += 1;
                    check(&mut spawned)?;
                    conn = wait_handshake(&uri, deadline, || check(&mut spawned))
                        .await?
                        .0;
                    ch = 1;
                    open = false;
                }
            }
            if ch >= conn.channel_max.min(2000) {
                conn = wait_handshake(&uri, deadline, || check(&mut spawned))
                    .await?
                    .0;
                ch = 1;
                open = false;
            }
            if last_log.elapsed() >= Duration::from_secs(1) {
                last_log = Instant::now();
                eprintln!(
                    "[perf] {}: t={:.1}s queue {queue}: {}",
                    ctx.target.label,
                    t0.elapsed().as_secs_f64(),
                    last.map_or("not there yet".to_string(), |n| format!("{n} ready")),
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.close()).await;
    let mem = pid.map(procstat::tree_memory);
    let cpu_at_ready = pid.map(procstat::tree_cpu_seconds);
    if let Some(sp) = spawned {
        sp.detach();
    }

    let mut j = ctx.base_json("wait-ready");
    j.set("broker_pid", pid)
        .set("exec", ctx.target.exec.clone())
        .set("queue", c.queue.clone())
        .set("expect", c.expect)
        .set("handshake_ms", handshake.as_secs_f64() * 1e3)
        .set("handshake_attempts", attempts)
        .set("queue_visible_ms", visible.map(|d| d.as_secs_f64() * 1e3))
        .set("ready_ms", ready_at.map(|d| d.as_secs_f64() * 1e3))
        .set("count", last)
        .set(
            "matched",
            c.expect.map(|e| last.is_some_and(|n| n as u64 == e)),
        )
        .set("polls", polls)
        .set("reconnects", reconnects)
        .set("note", note.clone())
        .set("cpu_s_at_handshake", cpu_at_handshake)
        .set("cpu_s_at_ready", cpu_at_ready)
        .set("rss_at_ready_kb", mem.map(|m| m.main_kb))
        .set("rss_tree_at_ready_kb", mem.map(|m| m.sum_kb))
        .set(
            "disk_bytes",
            ctx.target
                .data_dir
                .as_ref()
                .map(|d| procstat::disk_usage(std::path::Path::new(d))),
        );
    if c.expect.is_some() && ready_at.is_none() {
        j.set(
            "error",
            note.unwrap_or_else(|| "queue never reached the expected count".into()),
        );
    }
    Ok(Report {
        json: j,
        headline: vec![
            Headline {
                key: "handshake_ms",
                higher_is_better: false,
            },
            Headline {
                key: "ready_ms",
                higher_is_better: false,
            },
        ],
    })
}
