//! `startup`: start the broker with --exec (and --compare-exec for broker B),
//! time from just before the fork to the first completed AMQP handshake
//! (connection.open-ok; a handshake is tried every millisecond), close that
//! connection, leave the broker idle for --idle seconds (default 5) and read
//! its resident memory, then stop it (SIGTERM, bounded by --timeout, SIGKILL
//! to its process group after that). RSS is reported for the broker's
//! largest process (`idle_rss_kb`: the broker itself, e.g. beam.smp under
//! RabbitMQ's start script) and summed over its process tree.

use std::time::{Duration, Instant};

use crate::broker_proc::{Spawned, wait_handshake};
use crate::procstat;
use crate::runner::{Headline, Report, RunCtx};

pub async fn run(ctx: RunCtx) -> Result<Report, String> {
    let c = ctx.cli.clone();
    let cmd = ctx
        .target
        .exec
        .clone()
        .ok_or("startup needs --exec CMD (and --compare-exec CMD with --compare)")?;
    let log = c.broker_log.clone().unwrap_or_else(|| {
        format!(
            "/tmp/perf-startup-{}.log",
            ctx.target
                .label
                .replace(|ch: char| !ch.is_ascii_alphanumeric(), "_")
        )
    });
    let uri = ctx.target.uri.clone();
    let timeout = Duration::from_secs_f64(c.timeout.max(1.0));
    let mut sp = Spawned::spawn(&cmd, &log)?;
    let pid = sp.pid;
    eprintln!(
        "[perf] {}: started pid {pid}: {cmd} (log {log})",
        ctx.target.label
    );
    let hs = wait_handshake(&uri, sp.t0 + timeout, || sp.check_alive()).await;
    let handshake = sp.t0.elapsed();
    let (conn, attempts) = match hs {
        Ok(x) => x,
        Err(e) => {
            sp.stop(Duration::from_secs(30)).await;
            return Err(e);
        }
    };
    let cpu_at_handshake = procstat::tree_cpu_seconds(pid);
    let mem_at_handshake = procstat::tree_memory(pid);
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.close()).await;
    eprintln!(
        "[perf] {}: first handshake after {:.1} ms ({attempts} attempts); idling {:.0} s",
        ctx.target.label,
        handshake.as_secs_f64() * 1e3,
        c.idle
    );
    let idle_from = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(c.idle.max(0.0))).await;
    let idle_secs = idle_from.elapsed().as_secs_f64();
    let mem = procstat::tree_memory(pid);
    let cpu_after_idle = procstat::tree_cpu_seconds(pid);
    let alive = sp.check_alive().is_ok();
    let (stop_took, clean) = sp.stop(timeout).await;

    let mut j = ctx.base_json("startup");
    j.set("broker_pid", pid)
        .set("exec", cmd.as_str())
        .set("handshake_ms", handshake.as_secs_f64() * 1e3)
        .set("handshake_attempts", attempts)
        .set("cpu_s_at_handshake", cpu_at_handshake)
        .set("rss_at_handshake_kb", mem_at_handshake.main_kb)
        .set("idle_s", idle_secs)
        .set("idle_rss_kb", mem.main_kb)
        .set("idle_rss_mb", mem.main_kb as f64 / 1024.0)
        .set("idle_hwm_kb", mem.main_hwm_kb)
        .set("idle_rss_pid", mem.main_pid)
        .set("idle_rss_tree_kb", mem.sum_kb)
        .set("tree_processes", mem.processes)
        .set("idle_cpu_s", cpu_after_idle - cpu_at_handshake)
        .set("alive_after_idle", alive)
        .set("stop_ms", stop_took.as_secs_f64() * 1e3)
        .set("stopped_cleanly", clean);
    let h = |key, higher_is_better| Headline {
        key,
        higher_is_better,
    };
    Ok(Report {
        json: j,
        headline: vec![
            h("handshake_ms", false),
            h("idle_rss_kb", false),
            h("idle_rss_tree_kb", false),
            h("cpu_s_at_handshake", false),
            h("stop_ms", false),
        ],
    })
}
