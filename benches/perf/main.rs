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
//! - `backlog`: --count persistent messages into a durable queue with confirms,
//!   no consumer; then drain. Rates, broker CPU, RSS every 100 ms.
//! - `connections`: --connections × --channels, a queue and a consumer each;
//!   broker RSS held and per connection.
//! - `startup`: start --exec (and --compare-exec), time to the first
//!   handshake, idle RSS after --idle s.
//! - `declare-queues`, `delete-queues`: --queues empty durable queues
//!   declared or deleted over --concurrency connections; rate, disk, RSS.
//! - `purge`, `delete-queue`: one queue.purge or queue.delete of --queue
//!   (filled by `fill`); time, broker RSS peak above its start, disk.
//! - `fill`, `wait-ready`: the halves of the recovery measurement
//!   (`benches/run-recovery.sh` stops and starts the brokers).
//! - `stream`: stream queues: confirmed publish rate (1 and 4 producers),
//!   replay of --count messages from `first` by one and by many consumers.
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

mod backlog;
mod broker_proc;
mod client;
mod connections;
mod json;
mod latency;
mod null_broker;
mod procstat;
mod purge;
mod queues;
mod recovery;
mod runner;
mod startup;
mod stream;
mod throughput;
mod workload;

/// Scenarios `dispatch` knows.
const SCENARIOS: &[&str] = &[
    "throughput",
    "latency",
    "backlog",
    "connections",
    "startup",
    "declare-queues",
    "delete-queues",
    "purge",
    "delete-queue",
    "fill",
    "wait-ready",
    "stream",
];

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
    about = "Broker-agnostic AMQP 0-9-1 benchmark (throughput, latency, backlog, connections, startup, declare-queues, delete-queues, purge, delete-queue, fill, wait-ready, null-broker)"
)]
pub struct Cli {
    /// Scenario: throughput, latency, backlog, connections, startup,
    /// declare-queues, delete-queues, purge, delete-queue, fill, wait-ready,
    /// null-broker. Without one (as `cargo bench` and
    /// `cargo test --all-targets` run it) it prints a hint and exits 0.
    pub scenario: Option<String>,

    /// Broker A.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub uri: String,
    /// PID of broker A, for its CPU time and RSS from /proc.
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// Name of broker A in reports.
    #[arg(long, default_value = "A")]
    pub label: String,
    /// Command that starts broker A (startup, wait-ready).
    #[arg(long)]
    pub exec: Option<String>,
    /// Data directory of broker A (disk use in backlog, fill, wait-ready).
    #[arg(long)]
    pub data_dir: Option<String>,

    /// Broker B: run the same scenario alternately against both.
    #[arg(long)]
    pub compare: Option<String>,
    /// PID of broker B.
    #[arg(long)]
    pub compare_pid: Option<u32>,
    /// Name of broker B in reports.
    #[arg(long, default_value = "B")]
    pub compare_label: String,
    /// Command that starts broker B (startup).
    #[arg(long)]
    pub compare_exec: Option<String>,
    /// Data directory of broker B.
    #[arg(long)]
    pub compare_data_dir: Option<String>,
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
    /// Ack every N deliveries with multiple=true (1 = ack each message;
    /// default 1, backlog 100).
    #[arg(long)]
    pub multi_ack: Option<u32>,
    /// Consume with no-ack.
    #[arg(long)]
    pub auto_ack: bool,
    /// direct, fanout or topic.
    #[arg(long, default_value = "direct")]
    pub exchange_type: String,
    /// Total publish rate in msgs/s, split over producers (latency default 1000).
    #[arg(long)]
    pub rate: Option<f64>,
    /// How producers and consumers wait on their sockets: `tasks` (tasks on
    /// the client runtime), `threads` (each on its own OS threads, blocked
    /// in read, write or sleep) or `paired` (producer i and consumer i on
    /// one OS thread waiting in ppoll; rate-limited, no confirms). Default:
    /// paired for latency (threads if it cannot be), tasks otherwise.
    #[arg(long, value_parser = ["threads", "tasks", "paired"])]
    pub client_io: Option<String>,

    /// backlog, fill: messages to publish (default 1,000,000).
    #[arg(long)]
    pub count: Option<u64>,
    /// fill, wait-ready: the durable queue (default perf-recovery for fill).
    #[arg(long)]
    pub queue: Option<String>,
    /// wait-ready: wait until --queue holds this many messages.
    #[arg(long)]
    pub expect: Option<u64>,
    /// Seconds a phase (publish, drain, start-up, recovery) may take.
    #[arg(long, default_value_t = 1800.0)]
    pub timeout: f64,
    /// Seconds to wait before the "after" RSS readings (backlog,
    /// connections); wait-ready: seconds a wrong count must hold before
    /// giving up.
    #[arg(long, default_value_t = 5.0)]
    pub settle: f64,
    /// connections: how many connections.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// connections: channels per connection.
    #[arg(long, default_value_t = 2)]
    pub channels: u16,
    /// connections: handshakes (and closes) in flight at once;
    /// declare-queues, delete-queues: connections at work at once.
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// connections: seconds to hold them open.
    #[arg(long, default_value_t = 10.0)]
    pub hold: f64,
    /// startup: seconds idle after the first handshake before reading RSS.
    #[arg(long, default_value_t = 5.0)]
    pub idle: f64,
    /// wait-ready --exec: write the started broker's PID here.
    #[arg(long)]
    pub pid_file: Option<String>,
    /// startup, wait-ready --exec: the started broker's output.
    #[arg(long)]
    pub broker_log: Option<String>,

    /// null-broker: address to listen on.
    #[arg(long, default_value = "127.0.0.1:5698")]
    pub listen: String,
    /// null-broker: hand each publish to the consumer of the queue its
    /// routing key names, instead of flooding consumers (latency floor).
    #[arg(long)]
    pub echo: bool,
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
        "backlog" => backlog::run(ctx).await,
        "connections" => connections::run(ctx).await,
        "startup" => startup::run(ctx).await,
        "declare-queues" => queues::declare(ctx).await,
        "delete-queues" => queues::delete(ctx).await,
        "purge" => purge::purge(ctx).await,
        "delete-queue" => purge::delete(ctx).await,
        "fill" => recovery::fill(ctx).await,
        "wait-ready" => recovery::wait_ready(ctx).await,
        "stream" => stream::run(ctx).await,
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
    let Some(scenario) = cli.scenario.clone() else {
        eprintln!(
            "perf: no scenario given; see `cargo bench --bench perf -- --help` \
             and benches/run-standard.sh"
        );
        return 0;
    };
    if scenario == "null-broker" {
        let size = cli.size.unwrap_or(16);
        return match null_broker::serve(
            &cli.listen,
            size,
            Duration::from_secs(cli.lifetime),
            cli.echo,
        )
        .await
        {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("null-broker: {e}");
                1
            }
        };
    }
    if !SCENARIOS.contains(&scenario.as_str()) {
        eprintln!(
            "perf: unknown scenario {:?} ({}, null-broker)",
            scenario,
            SCENARIOS.join(", ")
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
        exec: cli.exec.clone(),
        data_dir: cli.data_dir.clone(),
    }];
    if let Some(b) = &cli.compare {
        targets.push(Target {
            label: cli.compare_label.clone(),
            uri: parse(b),
            pid: cli.compare_pid,
            exec: cli.compare_exec.clone(),
            data_dir: cli.compare_data_dir.clone(),
        });
    }
    let rounds = cli
        .rounds
        .unwrap_or(if targets.len() > 1 { 3 } else { 1 })
        .max(1);
    let cli = Arc::new(cli);
    let ok = runner::run_rounds(cli, &scenario, targets, rounds, |ctx| {
        let scenario = scenario.clone();
        async move { dispatch(&scenario, ctx).await }
    })
    .await;
    if ok { 0 } else { 1 }
}
