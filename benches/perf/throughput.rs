//! `throughput`: N producers publish flat out (or at --rate) through one
//! exchange to N queues, N consumers drain them; report messages/s published
//! and consumed over the window and deliveries per broker CPU-second.
//!
//! Topology: one exchange of --exchange-type (direct: queue i bound with its
//! name; topic: `perf.<i>.#`; fanout: every queue bound). Producer i
//! publishes to queue i mod --queues (fanout: to all of them); consumer j
//! reads queue j mod --queues. Every producer and consumer has its own
//! connection and task. --persistent makes queues durable and messages
//! delivery-mode 2.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::client::ClientError;
use crate::runner::{self, Headline, Report, RunCtx};
use crate::workload::{
    ConsumerCfg, Counters, ExchangeKind, LatencyRecorder, ProducerCfg, Topology,
    control_connection, join_all, open_consumer, open_producer, paired_loop, start_consumer,
    start_producer,
};

/// How the client's producers and consumers wait on their sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIo {
    /// Tasks on the client's tokio runtime.
    Tasks,
    /// Each producer and consumer on its own OS threads, blocked in
    /// read, write or sleep.
    Threads,
    /// Producer i and consumer i driven together by one OS thread that
    /// waits in `ppoll` on both sockets (rate-limited, no confirms).
    Paired,
}

impl ClientIo {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "tasks" => Ok(ClientIo::Tasks),
            "threads" => Ok(ClientIo::Threads),
            "paired" => Ok(ClientIo::Paired),
            other => Err(format!(
                "--client-io {other:?}: expected tasks, threads or paired"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ClientIo::Tasks => "tasks",
            ClientIo::Threads => "threads",
            ClientIo::Paired => "paired",
        }
    }
}

/// Options a throughput-shaped scenario needs, resolved from the command line.
pub struct Shape {
    pub producers: usize,
    pub consumers: usize,
    pub queues: usize,
    pub size: usize,
    pub persistent: bool,
    pub confirm: Option<u32>,
    pub prefetch: u16,
    pub multi_ack: u32,
    pub auto_ack: bool,
    pub kind: ExchangeKind,
    pub rate: Option<f64>,
    pub io: ClientIo,
}

impl Shape {
    pub fn from_cli(ctx: &RunCtx, default_size: usize) -> Result<Shape, String> {
        let c = &ctx.cli;
        let mut multi_ack = c.multi_ack.unwrap_or(1).max(1);
        if !c.auto_ack && c.prefetch > 0 && multi_ack > c.prefetch as u32 {
            eprintln!(
                "[perf] --multi-ack {multi_ack} > --prefetch {}: using {}",
                c.prefetch, c.prefetch
            );
            multi_ack = c.prefetch as u32;
        }
        let io = match c.client_io.as_deref() {
            Some(name) => ClientIo::parse(name)?,
            None => ClientIo::Tasks,
        };
        Ok(Shape {
            io,
            producers: c.producers,
            consumers: c.consumers,
            queues: c.queues.max(1),
            size: c.size.unwrap_or(default_size),
            persistent: c.persistent,
            confirm: c.confirm.filter(|n| *n > 0),
            prefetch: c.prefetch,
            multi_ack,
            auto_ack: c.auto_ack,
            kind: ExchangeKind::parse(&c.exchange_type)?,
            rate: c.rate.filter(|r| *r > 0.0),
        })
    }

    pub fn describe(&self, j: &mut crate::json::Json) {
        j.set("producers", self.producers)
            .set("consumers", self.consumers)
            .set("queues", self.queues)
            .set("size", self.size)
            .set("persistent", self.persistent)
            .set("confirm", self.confirm)
            .set("prefetch", (!self.auto_ack).then_some(self.prefetch))
            .set("multi_ack", (!self.auto_ack).then_some(self.multi_ack))
            .set("auto_ack", self.auto_ack)
            .set("exchange_type", self.kind.name())
            .set("rate", self.rate)
            .set("client_io", self.io.name());
    }
}

/// A running set of producers and consumers over a declared topology.
pub struct Running {
    pub topology: Topology,
    pub ctrl: crate::client::Conn,
    pub counters: Arc<Counters>,
    pub cancel: CancellationToken,
    pub producers: Vec<tokio::task::JoinHandle<()>>,
    pub consumers: Vec<tokio::task::JoinHandle<()>>,
}

/// Declare the topology, start consumers (all consuming before any
/// producer starts), then producers.
pub async fn start(
    ctx: &RunCtx,
    shape: &Shape,
    latency: Option<Arc<LatencyRecorder>>,
) -> Result<Running, String> {
    if shape.io == ClientIo::Paired
        && (shape.producers != shape.consumers || shape.rate.is_none() || shape.confirm.is_some())
    {
        return Err(
            "--client-io paired needs as many producers as consumers, a --rate and no --confirm"
                .into(),
        );
    }
    let uri = ctx.target.uri.clone();
    let mut ctrl = control_connection(&uri)
        .await
        .map_err(|e| format!("control connection: {e}"))?;
    let topology = Topology::declare(
        &mut ctrl,
        &ctx.run_id,
        shape.kind,
        shape.queues,
        shape.persistent,
    )
    .await
    .map_err(|e| format!("declaring topology: {e}"))?;
    let counters = Arc::new(Counters::default());
    let cancel = CancellationToken::new();
    let mut running = Running {
        topology,
        ctrl,
        counters: counters.clone(),
        cancel: cancel.clone(),
        producers: Vec::new(),
        consumers: Vec::new(),
    };
    let consumer_cfg = |i: usize| ConsumerCfg {
        queue: running.topology.consumer_queue(i).to_string(),
        prefetch: shape.prefetch,
        auto_ack: shape.auto_ack,
        multi_ack: shape.multi_ack,
        latency: latency.clone(),
        blocking: shape.io != ClientIo::Tasks,
        stream_offset: None,
    };
    let producer_cfg = |i: usize| ProducerCfg {
        exchange: running.topology.exchange.clone(),
        routing_key: running.topology.routing_key(i),
        size: shape.size,
        persistent: shape.persistent,
        confirm: shape.confirm,
        rate: shape.rate.map(|r| r / shape.producers as f64),
        count: None,
        stamp: true,
        blocking: shape.io != ClientIo::Tasks,
    };
    if shape.io == ClientIo::Paired {
        let mut pairs = Vec::new();
        for i in 0..shape.producers {
            let (ccfg, pcfg) = (consumer_cfg(i), producer_cfg(i));
            let opened = async {
                let consumer = open_consumer(&uri, i, &ccfg).await?;
                let (producer, template) = open_producer(&uri, i, &pcfg).await?;
                Ok::<_, ClientError>((consumer, producer, template))
            };
            match opened.await {
                Ok((consumer, producer, template)) => {
                    pairs.push((consumer, producer, template, ccfg, pcfg))
                }
                Err(e) => {
                    stop(running).await;
                    return Err(format!("starting producer/consumer pair {i}: {e}"));
                }
            }
        }
        for (i, (consumer, producer, template, ccfg, pcfg)) in pairs.into_iter().enumerate() {
            let (counters, cancel) = (counters.clone(), cancel.clone());
            running.producers.push(tokio::task::spawn_blocking(move || {
                if let Err(e) =
                    paired_loop(producer, template, pcfg, consumer, ccfg, &counters, cancel)
                {
                    counters.error(&format!("producer/consumer pair {i}"), &e);
                }
            }));
        }
        return Ok(running);
    }
    for i in 0..shape.consumers {
        match start_consumer(
            uri.clone(),
            i,
            consumer_cfg(i),
            counters.clone(),
            cancel.clone(),
        )
        .await
        {
            Ok(t) => running.consumers.push(t),
            Err(e) => {
                stop(running).await;
                return Err(format!("starting consumer {i}: {e}"));
            }
        }
    }
    for i in 0..shape.producers {
        match start_producer(
            uri.clone(),
            i,
            producer_cfg(i),
            counters.clone(),
            cancel.clone(),
        )
        .await
        {
            Ok(t) => running.producers.push(t),
            Err(e) => {
                stop(running).await;
                return Err(format!("starting producer {i}: {e}"));
            }
        }
    }
    Ok(running)
}

/// Stop producers, then consumers; report the backlog left; delete the topology.
pub async fn stop(r: Running) -> Option<u64> {
    r.cancel.cancel();
    join_all(r.producers, Duration::from_secs(6)).await;
    join_all(r.consumers, Duration::from_secs(6)).await;
    let mut ctrl = r.ctrl;
    let cleanup = async {
        let backlog = r.topology.backlog(&mut ctrl).await.ok();
        if let Err(e) = r.topology.delete(&mut ctrl).await {
            eprintln!("[perf] cleanup: {e}");
        }
        let _ = ctrl.close().await;
        backlog
    };
    tokio::time::timeout(Duration::from_secs(30), cleanup)
        .await
        .unwrap_or_else(|_| {
            eprintln!("[perf] cleanup timed out after 30 s");
            None
        })
}

pub async fn run(ctx: RunCtx) -> Result<Report, String> {
    let shape = Shape::from_cli(&ctx, 16)?;
    let running = start(&ctx, &shape, None).await?;
    let counters = running.counters.clone();
    let conns = (shape.producers + shape.consumers) as u64;
    let w = runner::measure(&ctx, &counters, conns, || {}, || {}).await;
    let backlog = stop(running).await;

    let mut j = ctx.base_json("throughput");
    shape.describe(&mut j);
    j.set("warmup_s", ctx.cli.warmup);
    runner::window_json(&mut j, &w, w.consumed, &counters);
    j.set("backlog_end", backlog);
    Ok(Report {
        json: j,
        headline: vec![
            Headline {
                key: "consumed_per_sec",
                higher_is_better: true,
            },
            Headline {
                key: "published_per_sec",
                higher_is_better: true,
            },
            Headline {
                key: "msgs_per_broker_cpu_s",
                higher_is_better: true,
            },
            Headline {
                key: "broker_rss_max_kb",
                higher_is_better: false,
            },
        ],
    })
}
