//! The shared runner: what a scenario is run against, the measured window
//! (warm-up, then per-second sampling of counters and the broker's /proc
//! figures), the report every scenario returns, and compare mode.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::Cli;
use crate::client::AmqpUri;
use crate::json::Json;
use crate::procstat;
use crate::workload::Counters;

/// One broker under test.
#[derive(Debug, Clone)]
pub struct Target {
    pub label: String,
    pub uri: AmqpUri,
    pub pid: Option<u32>,
    /// Command that starts this broker (`startup`, `wait-ready`).
    pub exec: Option<String>,
    /// Its data directory, for the disk space a scenario leaves.
    pub data_dir: Option<String>,
}

/// Everything a scenario run needs.
pub struct RunCtx {
    pub cli: Arc<Cli>,
    pub target: Target,
    pub round: u32,
    /// Unique per run: names queues and exchanges so runs never share state.
    pub run_id: String,
}

impl RunCtx {
    /// The fields every report starts with.
    pub fn base_json(&self, scenario: &str) -> Json {
        let mut j = Json::new();
        j.set("scenario", scenario)
            .set("target", self.target.label.as_str())
            .set("round", self.round)
            .set("broker", self.target.uri.display())
            .set("broker_pid", self.target.pid);
        j
    }
}

/// A metric compare mode takes the median and ratio of.
#[derive(Debug, Clone, Copy)]
pub struct Headline {
    pub key: &'static str,
    pub higher_is_better: bool,
}

/// What a scenario run returns: its JSON line and its headline metrics.
pub struct Report {
    pub json: Json,
    pub headline: Vec<Headline>,
}

/// Counters, CPU and memory over the measured window.
#[derive(Debug, Default, Clone)]
pub struct Window {
    pub secs: f64,
    pub published: u64,
    pub confirmed: u64,
    pub consumed: u64,
    pub per_sec_published: Vec<f64>,
    pub per_sec_consumed: Vec<f64>,
    pub broker_cpu_s: Option<f64>,
    pub client_cpu_s: Option<f64>,
    pub broker_rss_kb: Option<u64>,
    pub broker_rss_max_kb: Option<u64>,
    pub broker_hwm_kb: Option<u64>,
    /// Stopped early because every connection failed or the broker died.
    pub cut_short: Option<String>,
}

#[derive(Clone, Copy)]
struct Snap {
    at: Instant,
    published: u64,
    confirmed: u64,
    consumed: u64,
}

fn snap(c: &Counters) -> Snap {
    Snap {
        at: Instant::now(),
        published: c.published.load(Ordering::Relaxed),
        confirmed: c.confirmed.load(Ordering::Relaxed),
        consumed: c.consumed.load(Ordering::Relaxed),
    }
}

fn mb(kb: Option<u64>) -> String {
    kb.map_or("-".into(), |k| format!("{:.1}MB", k as f64 / 1024.0))
}

/// Warm up for `--warmup` seconds, then measure for `--duration` seconds,
/// logging every second to stderr. `on_start`/`on_end` run at the window's
/// edges (e.g. to switch latency recording on and off). `connections` is how
/// many connection tasks feed the counters: if all of them fail, the window
/// ends early.
pub async fn measure(
    ctx: &RunCtx,
    counters: &Counters,
    connections: u64,
    on_start: impl FnOnce(),
    on_end: impl FnOnce(),
) -> Window {
    let warmup = Duration::from_secs_f64(ctx.cli.warmup.max(0.0));
    let duration = Duration::from_secs_f64(ctx.cli.duration.max(0.1));
    let pid = ctx.target.pid;
    let label = &ctx.target.label;
    let t0 = Instant::now();
    let mut w = Window::default();
    let mut on_start = Some(on_start);

    let mut prev = snap(counters);
    let mut start = prev;
    let mut next_tick = t0 + Duration::from_secs(1);
    let mut measuring = false;
    let mut end_at = t0 + warmup + duration;
    let (mut cpu0, mut self0) = (None, None);
    let mut rss_max: Option<u64> = None;
    loop {
        let now = Instant::now();
        if !measuring && now >= t0 + warmup {
            measuring = true;
            cpu0 = pid.and_then(|p| procstat::cpu_seconds(Some(p)));
            self0 = procstat::cpu_seconds(None);
            start = snap(counters);
            prev = start;
            next_tick = start.at + Duration::from_secs(1);
            end_at = start.at + duration;
            if let Some(f) = on_start.take() {
                f();
            }
            continue;
        }
        if measuring && now >= end_at {
            break;
        }
        let boundary = if measuring { end_at } else { t0 + warmup };
        if next_tick > boundary {
            tokio::time::sleep_until(boundary.into()).await;
            continue;
        }
        tokio::time::sleep_until(next_tick.into()).await;
        next_tick += Duration::from_secs(1);

        let s = snap(counters);
        let dt = s.at.duration_since(prev.at).as_secs_f64().max(1e-9);
        let pubr = (s.published - prev.published) as f64 / dt;
        let conr = (s.consumed - prev.consumed) as f64 / dt;
        let mem = pid.and_then(procstat::memory_kb);
        if let Some((rss, _)) = mem {
            rss_max = Some(rss_max.map_or(rss, |m| m.max(rss)));
        }
        if measuring {
            w.per_sec_published.push(pubr);
            w.per_sec_consumed.push(conr);
        }
        eprintln!(
            "[perf] {label} {} t={:>5.1}s pub {:>9.0}/s cons {:>9.0}/s conf {:>9.0}/s broker rss {}",
            if measuring { "measure" } else { "warm-up" },
            t0.elapsed().as_secs_f64(),
            pubr,
            conr,
            (s.confirmed - prev.confirmed) as f64 / dt,
            mb(mem.map(|m| m.0)),
        );
        prev = s;
        let errors = counters.errors.load(Ordering::Relaxed);
        if connections > 0 && errors >= connections {
            w.cut_short = Some(format!("all {connections} connections failed"));
            break;
        }
        if let Some(p) = pid
            && !procstat::alive(p)
        {
            w.cut_short = Some(format!("broker pid {p} is gone"));
            break;
        }
    }
    let end = snap(counters);
    let client_cpu_end = procstat::cpu_seconds(None);
    let broker_cpu_end = pid.and_then(|p| procstat::cpu_seconds(Some(p)));
    on_end();
    if !measuring {
        start = end;
    }
    w.secs = end.at.duration_since(start.at).as_secs_f64();
    w.published = end.published - start.published;
    w.confirmed = end.confirmed - start.confirmed;
    w.consumed = end.consumed - start.consumed;
    w.broker_cpu_s = cpu0.zip(broker_cpu_end).map(|(a, b)| b - a);
    w.client_cpu_s = self0.zip(client_cpu_end).map(|(a, b)| b - a);
    if let Some((rss, hwm)) = pid.and_then(procstat::memory_kb) {
        w.broker_rss_kb = Some(rss);
        w.broker_hwm_kb = Some(hwm);
        rss_max = Some(rss_max.map_or(rss, |m| m.max(rss)));
    }
    w.broker_rss_max_kb = rss_max;
    w
}

fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

fn min_max(v: &[f64]) -> (Option<f64>, Option<f64>) {
    if v.is_empty() {
        return (None, None);
    }
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (Some(min), Some(max))
}

/// The window's figures as report fields. `work` is the count broker CPU is
/// divided by (deliveries, for the throughput scenarios).
pub fn window_json(j: &mut Json, w: &Window, work: u64, counters: &Counters) {
    let (cmin, cmax) = min_max(&w.per_sec_consumed);
    let (pmin, _) = min_max(&w.per_sec_published);
    j.set("window_s", w.secs)
        .set("published", w.published)
        .set("consumed", w.consumed)
        .set("confirmed", w.confirmed)
        .set("published_per_sec", rate(w.published, w.secs))
        .set("consumed_per_sec", rate(w.consumed, w.secs))
        .set("confirmed_per_sec", rate(w.confirmed, w.secs))
        .set("published_per_sec_min_1s", pmin)
        .set("consumed_per_sec_min_1s", cmin)
        .set("consumed_per_sec_max_1s", cmax)
        .set("broker_cpu_s", w.broker_cpu_s)
        .set(
            "broker_cpu_cores",
            w.broker_cpu_s.map(|c| c / w.secs.max(1e-9)),
        )
        .set(
            "msgs_per_broker_cpu_s",
            w.broker_cpu_s.filter(|c| *c > 0.0).map(|c| work as f64 / c),
        )
        .set(
            "published_per_broker_cpu_s",
            w.broker_cpu_s
                .filter(|c| *c > 0.0)
                .map(|c| w.published as f64 / c),
        )
        .set("client_cpu_s", w.client_cpu_s)
        .set(
            "client_cpu_cores",
            w.client_cpu_s.map(|c| c / w.secs.max(1e-9)),
        )
        .set("broker_rss_kb", w.broker_rss_kb)
        .set("broker_rss_max_kb", w.broker_rss_max_kb)
        .set("broker_hwm_kb", w.broker_hwm_kb)
        .set("nacked", counters.nacked.load(Ordering::Relaxed))
        .set("returned", counters.returned.load(Ordering::Relaxed))
        .set("redelivered", counters.redelivered.load(Ordering::Relaxed))
        .set("blocked", counters.blocked.load(Ordering::Relaxed))
        .set("errors", counters.errors.load(Ordering::Relaxed))
        .set("first_error", counters.first_error.lock().clone())
        .set("cut_short", w.cut_short.clone());
}

// ---------------------------------------------------------------------------
// Phases: run until a condition holds (a count reached), sampling RSS every
// 100 ms

/// Counters, CPU and memory over one phase of a scenario.
#[derive(Debug, Default, Clone)]
pub struct Phase {
    pub secs: f64,
    pub published: u64,
    pub confirmed: u64,
    pub consumed: u64,
    pub broker_cpu_s: Option<f64>,
    pub client_cpu_s: Option<f64>,
    pub rss_start_kb: Option<u64>,
    /// Highest VmRSS of the 100 ms samples.
    pub rss_max_kb: Option<u64>,
    pub rss_end_kb: Option<u64>,
    pub hwm_end_kb: Option<u64>,
    pub rss_samples: u64,
    pub per_sec_published: Vec<f64>,
    pub per_sec_consumed: Vec<f64>,
    /// The condition held (not timed out or cut short).
    pub completed: bool,
    pub cut_short: Option<String>,
}

/// Run until `done(counters)` holds (checked every 10 ms) or `timeout`,
/// sampling the broker's VmRSS every 100 ms and logging every second.
pub async fn phase(
    ctx: &RunCtx,
    name: &str,
    counters: &Counters,
    connections: u64,
    timeout: Duration,
    done: impl Fn(&Counters) -> bool,
) -> Phase {
    let pid = ctx.target.pid;
    let label = &ctx.target.label;
    let mut p = Phase::default();
    let start = snap(counters);
    let cpu0 = pid.and_then(|x| procstat::cpu_seconds(Some(x)));
    let self0 = procstat::cpu_seconds(None);
    let mem0 = pid.and_then(procstat::memory_kb);
    p.rss_start_kb = mem0.map(|m| m.0);
    let mut rss_max = p.rss_start_kb;
    let mut prev = start;
    let mut tick: u64 = 0;
    let end_by = start.at + timeout;
    loop {
        if done(counters) {
            p.completed = true;
            break;
        }
        let now = Instant::now();
        if now >= end_by {
            p.cut_short = Some(format!(
                "{name}: timed out after {:.0} s",
                timeout.as_secs_f64()
            ));
            break;
        }
        tick += 1;
        let next = start.at + Duration::from_millis(10 * tick);
        if next > now {
            tokio::time::sleep_until(next.into()).await;
        }
        if tick.is_multiple_of(10)
            && let Some((rss, _)) = pid.and_then(procstat::memory_kb)
        {
            p.rss_samples += 1;
            rss_max = Some(rss_max.map_or(rss, |m| m.max(rss)));
        }
        if tick.is_multiple_of(100) {
            let s = snap(counters);
            let dt = s.at.duration_since(prev.at).as_secs_f64().max(1e-9);
            let pubr = (s.published - prev.published) as f64 / dt;
            let conr = (s.consumed - prev.consumed) as f64 / dt;
            p.per_sec_published.push(pubr);
            p.per_sec_consumed.push(conr);
            eprintln!(
                "[perf] {label} {name} t={:>6.1}s pub {:>9.0}/s cons {:>9.0}/s conf {:>9.0}/s total pub {} conf {} cons {} broker rss {} (max {})",
                s.at.duration_since(start.at).as_secs_f64(),
                pubr,
                conr,
                (s.confirmed - prev.confirmed) as f64 / dt,
                s.published - start.published,
                s.confirmed - start.confirmed,
                s.consumed - start.consumed,
                mb(pid.and_then(procstat::memory_kb).map(|m| m.0)),
                mb(rss_max),
            );
            prev = s;
            let errors = counters.errors.load(Ordering::Relaxed);
            if connections > 0 && errors >= connections {
                p.cut_short = Some(format!("{name}: all {connections} connections failed"));
                break;
            }
            if let Some(x) = pid
                && !procstat::alive(x)
            {
                p.cut_short = Some(format!("{name}: broker pid {x} is gone"));
                break;
            }
        }
    }
    let end = snap(counters);
    p.secs = end.at.duration_since(start.at).as_secs_f64();
    p.published = end.published - start.published;
    p.confirmed = end.confirmed - start.confirmed;
    p.consumed = end.consumed - start.consumed;
    p.broker_cpu_s = cpu0
        .zip(pid.and_then(|x| procstat::cpu_seconds(Some(x))))
        .map(|(a, b)| b - a);
    p.client_cpu_s = self0.zip(procstat::cpu_seconds(None)).map(|(a, b)| b - a);
    if let Some((rss, hwm)) = pid.and_then(procstat::memory_kb) {
        p.rss_end_kb = Some(rss);
        p.hwm_end_kb = Some(hwm);
        rss_max = Some(rss_max.map_or(rss, |m| m.max(rss)));
    }
    p.rss_max_kb = rss_max;
    p
}

/// A phase's figures as `<prefix>_…` report fields; `work` is the count its
/// rate and broker CPU are taken over.
pub fn phase_json(j: &mut Json, prefix: &str, p: &Phase, work: u64) {
    let (min1, _) = min_max(if p.per_sec_consumed.iter().any(|r| *r > 0.0) {
        &p.per_sec_consumed
    } else {
        &p.per_sec_published
    });
    let k = |s: &str| format!("{prefix}_{s}");
    j.set(&k("secs"), p.secs)
        .set(&k("completed"), p.completed)
        .set(&k("msgs"), work)
        .set(&k("per_sec"), rate(work, p.secs))
        .set(&k("per_sec_min_1s"), min1)
        .set(&k("published"), p.published)
        .set(&k("confirmed"), p.confirmed)
        .set(&k("consumed"), p.consumed)
        .set(&k("broker_cpu_s"), p.broker_cpu_s)
        .set(
            &k("broker_cpu_cores"),
            p.broker_cpu_s.map(|c| c / p.secs.max(1e-9)),
        )
        .set(
            &k("msgs_per_broker_cpu_s"),
            p.broker_cpu_s.filter(|c| *c > 0.0).map(|c| work as f64 / c),
        )
        .set(&k("client_cpu_s"), p.client_cpu_s)
        .set(
            &k("client_cpu_cores"),
            p.client_cpu_s.map(|c| c / p.secs.max(1e-9)),
        )
        .set(&k("rss_start_kb"), p.rss_start_kb)
        .set(&k("rss_max_kb"), p.rss_max_kb)
        .set(&k("rss_end_kb"), p.rss_end_kb)
        .set(&k("hwm_end_kb"), p.hwm_end_kb)
        .set(&k("rss_samples"), p.rss_samples)
        .set(&k("cut_short"), p.cut_short.clone());
}

/// The counters' error fields.
pub fn errors_json(j: &mut Json, counters: &Counters) {
    j.set("nacked", counters.nacked.load(Ordering::Relaxed))
        .set("returned", counters.returned.load(Ordering::Relaxed))
        .set("redelivered", counters.redelivered.load(Ordering::Relaxed))
        .set("blocked", counters.blocked.load(Ordering::Relaxed))
        .set("errors", counters.errors.load(Ordering::Relaxed))
        .set("first_error", counters.first_error.lock().clone());
}

// ---------------------------------------------------------------------------
// Rounds and compare mode

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Run `scenario` for every round against every target, alternating
/// (A, B, A, B, …), printing each JSON line as it completes; with two
/// targets, finish with the medians and the A:B ratios of the headline
/// metrics.
pub async fn run_rounds<F, Fut>(
    cli: Arc<Cli>,
    scenario: &str,
    targets: Vec<Target>,
    rounds: u32,
    run: F,
) -> bool
where
    F: Fn(RunCtx) -> Fut,
    Fut: std::future::Future<Output = Result<Report, String>>,
{
    let mut results: Vec<Vec<Json>> = vec![Vec::new(); targets.len()];
    let mut headline: Vec<Headline> = Vec::new();
    let mut ok = true;
    for round in 1..=rounds {
        for (ti, target) in targets.iter().enumerate() {
            if round > 1 || ti > 0 {
                tokio::time::sleep(Duration::from_secs_f64(cli.pause.max(0.0))).await;
            }
            let run_id = format!(
                "{}-{}-{}-{}",
                std::process::id(),
                round,
                target
                    .label
                    .replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
                crate::workload::now_ns() % 1_000_000
            );
            eprintln!(
                "[perf] === {scenario} round {round}/{rounds} against {} ({}) ===",
                target.label,
                target.uri.display()
            );
            let ctx = RunCtx {
                cli: cli.clone(),
                target: target.clone(),
                round,
                run_id,
            };
            let base = ctx.base_json(scenario);
            match run(ctx).await {
                Ok(report) => {
                    if report
                        .json
                        .get("error")
                        .is_some_and(|e| !matches!(e, crate::json::Val::Null))
                    {
                        ok = false;
                    }
                    println!("{}", report.json.render());
                    headline = report.headline;
                    results[ti].push(report.json);
                }
                Err(e) => {
                    ok = false;
                    eprintln!("[perf] {} round {round} failed: {e}", target.label);
                    let mut j = base;
                    j.set("error", e);
                    println!("{}", j.render());
                }
            }
        }
    }
    if targets.len() == 2 {
        let mut j = Json::new();
        j.set("scenario", scenario)
            .set(
                "compare",
                format!("{}:{}", targets[0].label, targets[1].label),
            )
            .set("a", targets[0].uri.display())
            .set("b", targets[1].uri.display())
            .set("rounds", rounds)
            .set("rounds_ok_a", results[0].len())
            .set("rounds_ok_b", results[1].len());
        for h in &headline {
            let mut a: Vec<f64> = results[0].iter().filter_map(|r| r.num(h.key)).collect();
            let mut b: Vec<f64> = results[1].iter().filter_map(|r| r.num(h.key)).collect();
            let (ma, mb) = (median(&mut a), median(&mut b));
            j.set(&format!("{}_median_a", h.key), ma)
                .set(&format!("{}_median_b", h.key), mb)
                .set(
                    &format!("{}_ratio_a_b", h.key),
                    match (ma, mb) {
                        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
                        _ => None,
                    },
                )
                .set(
                    &format!("{}_better", h.key),
                    match (ma, mb) {
                        (Some(a), Some(b)) if (a > b) == h.higher_is_better && a != b => {
                            Some(targets[0].label.clone())
                        }
                        (Some(a), Some(b)) if a != b => Some(targets[1].label.clone()),
                        _ => None,
                    },
                );
        }
        println!("{}", j.render());
    }
    ok
}
