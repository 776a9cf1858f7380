//! warren-perf: a broker-agnostic AMQP 0-9-1 benchmark, in the spirit of
//! RabbitMQ PerfTest and lavinmqperf, with its own minimal pipelined client
//! (lapin costs more CPU than the brokers under test).
//!
//! ```text
//! cargo bench --bench perf -- <scenario> --uri amqp://guest:guest@127.0.0.1:5672/%2f [options]
//! ```
//!
//! Scenarios (one file each, sharing `runner` and `workload`):
//! - `throughput`: producers → exchange → queues → consumers, flat out.
//! - `latency`: fixed --rate (default 1000/s), 256-byte stamped bodies, percentiles.
//! - `null-broker`: a do-nothing server for measuring the client itself.
//!
//! Output: one JSON line per run on stdout; progress on stderr. With
//! `--broker-pid` the broker's CPU seconds (utime+stime from /proc) and RSS
//! are reported; the client's own CPU always is. `--compare URI2
//! --compare-pid PID2` alternates A, B, A, B… for --rounds (default 3) and
//! ends with the medians and A:B ratios.
//!
//! Adding a scenario: write `<name>.rs` with `pub async fn run(RunCtx) ->
//! Result<Report, String>`, build its workload from `workload` (topology,
//! producers with rate/count/confirm window, consumers with ack modes and
//! latency recording), measure with `runner::measure`, and add it to
//! `dispatch` below.

mod client;
mod json;
mod latency;
mod null_broker;
mod procstat;
mod runner;
mod throughput;
mod workload;

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use crate::client::AmqpUri;
use crate::runner::{Report, RunCtx, Target};

/// Command-line options; scenario options are shared so that every
/// scenario reads the ones it needs.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "perf",
    about = "Broker-agnostic AMQP 0-9-1 benchmark (throughput, latency, null-broker)"
)]
pub struct Cli {
    /// Scenario: throughput, latency, null-broker.
    pub scenario: String,

    /// Broker A.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub uri: String,
    /// PID of broker A, for its CPU time and RSS from /proc.
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// Name of broker A in reports.
    #[arg(long, default_value = "A")]
    pub label: String,

    /// Broker B: run the same scenario alternately against both.
    #[arg(long)]
    pub compare: Option<String>,
    /// PID of broker B.
    #[arg(long)]
    pub compare_pid: Option<u32>,
    /// Name of broker B in reports.
    #[arg(long, default_value = "B")]
    pub compare_label: String,
    /// Runs per broker (default 3 with --compare, else 1).
    #[arg(long)]
    pub rounds: Option<u32>,
    /// Seconds to rest between runs.
    #[arg(long, default_value_t = 2.0)]
    pub pause: f64,

    /// Seconds of warm-up before the measured window.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Seconds in the measured window.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Client runtime worker threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,

    /// Producer connections.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Consumer connections.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Queues (producer i → queue i mod N; consumer j ← queue j mod N).
    #[arg(long, default_value_t = 1)]
    pub queues: usize,
    /// Body size in bytes (throughput default 16, latency 256).
    #[arg(long)]
    pub size: Option<usize>,
    /// Durable queues and persistent (delivery-mode 2) messages.
    #[arg(long)]
    pub persistent: bool,
    /// Publisher confirms, at most this many unconfirmed per producer.
    #[arg(long)]
    pub confirm: Option<u32>,
    /// basic.qos prefetch count per consumer (manual ack only; 0 = unlimited).
    #[arg(long, default_value_t = 1000)]
    pub prefetch: u16,
    /// Ack every N deliveries with multiple=true (1 = ack each message).
    #[arg(long, default_value_t = 1)]
    pub multi_ack: u32,
    /// Consume with no-ack.
    #[arg(long)]
    pub auto_ack: bool,
    /// direct, fanout or topic.
    #[arg(long, default_value = "direct")]
    pub exchange_type: String,
    /// Total publish rate in msgs/s, split over producers (latency default 1000).
    #[arg(long)]
    pub rate: Option<f64>,

    /// null-broker: address to listen on.
    #[arg(long, default_value = "127.0.0.1:5698")]
    pub listen: String,
    /// null-broker: seconds before it exits.
    #[arg(long, default_value_t = 300)]
    pub lifetime: u64,

    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
}

async fn dispatch(scenario: &str, ctx: RunCtx) -> Result<Report, String> {
    match scenario {
        "throughput" => throughput::run(ctx).await,
        "latency" => latency::run(ctx).await,
        other => Err(format!("unknown scenario {other:?}")),
    }
}

fn main() {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("perf: cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    let code = rt.block_on(async_main(cli));
    // Do not wait for stragglers (aborted connection tasks) at exit.
    rt.shutdown_timeout(Duration::from_secs(1));
    std::process::exit(code);
}

async fn async_main(cli: Cli) -> i32 {
    if cli.scenario == "null-broker" {
        let size = cli.size.unwrap_or(16);
        return match null_broker::serve(&cli.listen, size, Duration::from_secs(cli.lifetime)).await
        {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("null-broker: {e}");
                1
            }
        };
    }
    if !matches!(cli.scenario.as_str(), "throughput" | "latency") {
        eprintln!(
            "perf: unknown scenario {:?} (throughput, latency, null-broker)",
            cli.scenario
        );
        return 2;
    }
    let parse = |s: &str| {
        AmqpUri::parse(s).unwrap_or_else(|e| {
            eprintln!("perf: {e}");
            std::process::exit(2);
        })
    };
    let mut targets = vec![Target {
        label: cli.label.clone(),
        uri: parse(&cli.uri),
        pid: cli.broker_pid,
    }];
    if let Some(b) = &cli.compare {
        targets.push(Target {
            label: cli.compare_label.clone(),
            uri: parse(b),
            pid: cli.compare_pid,
        });
    }
    let rounds = cli
        .rounds
        .unwrap_or(if targets.len() > 1 { 3 } else { 1 })
        .max(1);
    let scenario = cli.scenario.clone();
    let cli = Arc::new(cli);
    let ok = runner::run_rounds(cli, &scenario, targets, rounds, |ctx| {
        let scenario = scenario.clone();
        async move { dispatch(&scenario, ctx).await }
    })
    .await;
    if ok { 0 } else { 1 }
}
