#!/usr/bin/env python3
"""Print the standard table (Warren | RabbitMQ | ratio | target | met?) from
the JSON lines benches/run-standard.sh writes.

    benches/summarize.py [--runs] benches/results/standard-<time>.jsonl [more.jsonl …]

Medians over the rounds of each scenario (runs with an "error" field are
left out); the ratio is Warren : RabbitMQ of the medians. --runs prints a
table of every run instead.
"""
import json
import statistics
import sys


def load(paths):
    runs = []
    for p in paths:
        with open(p) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        runs.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        print(f"{p}: skipping a bad line ({e})", file=sys.stderr)
    return runs


def med(runs, id_, target, key):
    if id_.endswith("-floor"):
        # A single-broker run: its figures go in the Warren column.
        target = "null" if target == "warren" else None
    vals = [
        r[key]
        for r in runs
        if r.get("id") == id_
        and r.get("target") == target
        and "compare" not in r
        and not r.get("error")
        and isinstance(r.get(key), (int, float))
    ]
    return (statistics.median(vals), len(vals)) if vals else (None, 0)


def fmt(v, unit=""):
    if v is None:
        return "–"
    if unit == "MB":
        return f"{v / 1024:,.1f} MB"
    if unit == "ms":
        return f"{v:,.1f} ms" if v < 1000 else f"{v / 1000:,.2f} s"
    if unit == "us":
        return f"{v:,.0f} µs"
    if unit == "s":
        return f"{v:,.2f} s"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:,.2f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r):
    if r is None:
        return "–"
    return f"{r:.1f}×" if r >= 1 else f"1/{1 / r:.1f}" if r > 0 else "0"


# (label, id, key, unit, target text, check(ratio, warren) -> bool | None)
ROWS = [
    ("1→1, 16 B, transient, manual ack (prefetch 1000, multi-ack 100): consumed msgs/s",
     "s1", "consumed_per_sec", "", "≥ 5×", lambda r, w: r >= 5),
    ("1→1, 16 B, auto-ack: consumed msgs/s", "s2", "consumed_per_sec", "", "≥ 5×",
     lambda r, w: r >= 5),
    ("4 producers, 4 consumers, 4 queues, 256 B: consumed msgs/s", "s3", "consumed_per_sec",
     "", "≥ 4×", lambda r, w: r >= 4),
    ("fan-out to 10 queues, 10 consumers, 256 B: delivered msgs/s", "s4", "consumed_per_sec",
     "", "≥ 5×", lambda r, w: r >= 5),
    ("persistent 1 KB, durable queue, confirms ≤ 1000, manual ack: consumed msgs/s", "s5",
     "consumed_per_sec", "", "≥ 3×", lambda r, w: r >= 3),
    ("latency at 1,000 msg/s, 256 B: p99", "s6", "latency_p99_us", "us", "≤ 1/3",
     lambda r, w: r <= 1 / 3),
    ("1M × 1 KB persistent backlog: peak RSS (publish + drain)", "s7", "peak_rss_kb", "MB",
     "< 300 MB", lambda r, w: w < 300 * 1024),
    ("1M × 1 KB persistent backlog: drain msgs/s", "s7", "drain_per_sec", "", "≥ 3×",
     lambda r, w: r >= 3),
    ("1,000 connections × 2 channels × 1 queue: broker RSS", "s8", "rss_held_kb", "MB",
     "≤ 1/10", lambda r, w: r <= 0.1),
    ("start-up to first handshake (restart, empty state)", "s9", "handshake_ms", "ms",
     "< 50 ms", lambda r, w: w < 50),
    ("idle RSS 5 s after start-up", "s9", "idle_rss_kb", "MB", "< 10 MB",
     lambda r, w: w < 10 * 1024),
]

EXTRA = [
    ("1→1 manual ack: deliveries per broker CPU-s", "s1", "msgs_per_broker_cpu_s", ""),
    ("1→1 auto-ack: deliveries per broker CPU-s", "s2", "msgs_per_broker_cpu_s", ""),
    ("4×4×4: deliveries per broker CPU-s", "s3", "msgs_per_broker_cpu_s", ""),
    ("fan-out: deliveries per broker CPU-s", "s4", "msgs_per_broker_cpu_s", ""),
    ("persistent: confirmed msgs/s", "s5", "confirmed_per_sec", ""),
    ("persistent: deliveries per broker CPU-s", "s5", "msgs_per_broker_cpu_s", ""),
    ("latency p50", "s6", "latency_p50_us", "us"),
    ("latency p99 floor: same client against `perf null-broker --echo` (in the Warren column)",
     "s6-floor", "latency_p99_us", "us"),
    ("latency p50 floor (null broker)", "s6-floor", "latency_p50_us", "us"),
    ("latency p99.9", "s6", "latency_p999_us", "us"),
    ("latency max", "s6", "latency_max_us", "us"),
    ("backlog publish msgs/s (durable, confirms ≤ 1000)", "s7", "published_per_sec", ""),
    ("backlog publish: msgs per broker CPU-s", "s7", "publish_msgs_per_broker_cpu_s", ""),
    ("backlog drain: msgs per broker CPU-s", "s7", "drain_msgs_per_broker_cpu_s", ""),
    ("backlog: peak RSS while publishing", "s7", "publish_rss_max_kb", "MB"),
    ("backlog: peak RSS while draining", "s7", "drain_rss_max_kb", "MB"),
    ("backlog: RSS 5 s after the drain", "s7", "rss_after_drain_idle_kb", "MB"),
    ("backlog: RSS after queue.delete", "s7", "rss_after_delete_kb", "MB"),
    ("backlog: disk after publish (bytes)", "s7", "disk_after_publish_bytes", ""),
    ("connections: RSS per connection (kB)", "s8", "rss_per_connection_kb", ""),
    ("connections: opened per second", "s8", "opened_per_sec", ""),
    ("connections: RSS 5 s after closing", "s8", "rss_after_settle_kb", "MB"),
    ("first boot (empty data dir) to first handshake", "s9-first", "handshake_ms", "ms"),
    ("first boot: idle RSS", "s9-first", "idle_rss_kb", "MB"),
    ("start-up: CPU s until the handshake", "s9", "cpu_s_at_handshake", "s"),
    ("start-up: process tree idle RSS", "s9", "idle_rss_tree_kb", "MB"),
]


# Per-run columns for --runs: (id prefix, [(header, key, unit)]).
RUN_COLS = {
    "throughput": [
        ("pub/s", "published_per_sec", ""),
        ("consumed/s", "consumed_per_sec", ""),
        ("worst 1 s consumed", "consumed_per_sec_min_1s", ""),
        ("broker cores", "broker_cpu_cores", ""),
        ("msgs / broker CPU-s", "msgs_per_broker_cpu_s", ""),
        ("client cores", "client_cpu_cores", ""),
        ("broker RSS max", "broker_rss_max_kb", "MB"),
        ("backlog left", "backlog_end", ""),
    ],
    "latency": [
        ("p50", "latency_p50_us", "us"),
        ("p90", "latency_p90_us", "us"),
        ("p99", "latency_p99_us", "us"),
        ("p99.9", "latency_p999_us", "us"),
        ("max", "latency_max_us", "us"),
        ("broker CPU s", "broker_cpu_s", ""),
        ("client CPU s", "client_cpu_s", ""),
    ],
    "backlog": [
        ("publish/s", "published_per_sec", ""),
        ("worst 1 s", "publish_per_sec_min_1s", ""),
        ("drain/s", "drain_per_sec", ""),
        ("RSS at start", "rss_start_kb", "MB"),
        ("peak RSS publish", "publish_rss_max_kb", "MB"),
        ("peak RSS drain", "drain_rss_max_kb", "MB"),
        ("RSS 5 s after drain", "rss_after_drain_idle_kb", "MB"),
        ("RSS after delete", "rss_after_delete_kb", "MB"),
        ("pub cores", "publish_broker_cpu_cores", ""),
        ("drain cores", "drain_broker_cpu_cores", ""),
    ],
    "connections": [
        ("opened", "opened", ""),
        ("open s", "open_secs", ""),
        ("RSS before", "rss_before_kb", "MB"),
        ("RSS held", "rss_held_kb", "MB"),
        ("kB / conn", "rss_per_connection_kb", ""),
        ("RSS 5 s after close", "rss_after_settle_kb", "MB"),
        ("idle cores held", "hold_broker_cpu_cores", ""),
    ],
    "startup": [
        ("handshake", "handshake_ms", "ms"),
        ("CPU s to handshake", "cpu_s_at_handshake", ""),
        ("idle RSS", "idle_rss_kb", "MB"),
        ("tree RSS", "idle_rss_tree_kb", "MB"),
        ("stop", "stop_ms", "ms"),
    ],
    "fill": [
        ("fill/s", "published_per_sec", ""),
        ("broker cores", "fill_broker_cpu_cores", ""),
        ("peak RSS", "fill_rss_max_kb", "MB"),
        ("disk bytes", "disk_bytes", ""),
    ],
    "wait-ready": [
        ("stop", "stop_ms", "ms"),
        ("handshake", "handshake_ms", "ms"),
        ("all visible", "ready_ms", "ms"),
        ("count", "count", ""),
        ("RSS ready", "rss_at_ready_kb", "MB"),
        ("CPU s to ready", "cpu_s_at_ready", ""),
    ],
}


def print_runs(runs):
    ids = []
    for r in runs:
        if "compare" not in r and r.get("id") not in ids:
            ids.append(r.get("id"))
    for id_ in ids:
        rs = [r for r in runs if r.get("id") == id_ and "compare" not in r]
        cols = RUN_COLS.get(rs[0].get("scenario"), [])
        print(f"\n[{id_}] {rs[0].get('scenario')}\n")
        print("| run | " + " | ".join(h for h, _, _ in cols) + " |")
        print("|---|" + "---:|" * len(cols))
        for r in rs:
            name = f"{r.get('target')} {r.get('rec_round', r.get('round'))}"
            if r.get("error"):
                print(f"| {name} | error: {r['error']} |" + " |" * (len(cols) - 1))
                continue
            vals = [fmt(r.get(k) if isinstance(r.get(k), (int, float)) else None, u) for _, k, u in cols]
            print(f"| {name} | " + " | ".join(vals) + " |")


def main():
    args = sys.argv[1:]
    if args and args[0] == "--runs":
        print_runs(load(args[1:]))
        return
    runs = load(args)
    print("| scenario | Warren | RabbitMQ | Warren : RabbitMQ | target | met? | rounds (W/R) |")
    print("|---|---:|---:|---:|---|---|---|")
    for label, id_, key, unit, target, check in ROWS:
        w, nw = med(runs, id_, "warren", key)
        r, nr = med(runs, id_, "rabbitmq", key)
        q = ratio(w, r)
        met = "–" if w is None or (q is None and "×" in target) else (
            "**yes**" if check(q if q is not None else 0, w) else "**NO**")
        print(f"| {label} | {fmt(w, unit)} | {fmt(r, unit)} | {fmt_ratio(q)} | {target} | {met} | {nw}/{nr} |")
    print()
    print("| other figures | Warren | RabbitMQ | Warren : RabbitMQ | rounds (W/R) |")
    print("|---|---:|---:|---:|---|")
    for label, id_, key, unit in EXTRA:
        w, nw = med(runs, id_, "warren", key)
        r, nr = med(runs, id_, "rabbitmq", key)
        print(f"| {label} | {fmt(w, unit)} | {fmt(r, unit)} | {fmt_ratio(ratio(w, r))} | {nw}/{nr} |")
    # Recovery (benches/run-recovery.sh).
    rec = [r for r in runs if str(r.get("id", "")).startswith("rec-") and not r.get("error")]
    if rec:
        print()
        print("| recovery of the persistent backlog | fill msgs/s | stop | handshake | all messages visible | RSS when ready | runs |")
        print("|---|---:|---:|---:|---:|---:|---|")
        for mode in ["warren-clean", "warren-kill", "rabbit-clean", "rabbit-kill"]:
            waits = [r for r in rec if r.get("id") == f"rec-{mode}"]
            fills = [r for r in rec if r.get("id", "").startswith("rec-fill") and r.get("mode") == mode]
            if not waits:
                continue

            def m(rs, k):
                v = [x[k] for x in rs if isinstance(x.get(k), (int, float))]
                return statistics.median(v) if v else None

            n = waits[0].get("expect")
            print(
                f"| {mode} ({n:,} × 1 KB) | {fmt(m(fills, 'published_per_sec'))} | {fmt(m(waits, 'stop_ms'), 'ms')} "
                f"| {fmt(m(waits, 'handshake_ms'), 'ms')} | {fmt(m(waits, 'ready_ms'), 'ms')} "
                f"| {fmt(m(waits, 'rss_at_ready_kb'), 'MB')} | {len(waits)} |"
            )
    # Client CPU.
    print()
    print("| client CPU (cores, median per scenario) | against Warren | against RabbitMQ |")
    print("|---|---:|---:|")
    for id_ in ["s1", "s2", "s3", "s4", "s5", "s6"]:
        w, _ = med(runs, id_, "warren", "client_cpu_cores")
        r, _ = med(runs, id_, "rabbitmq", "client_cpu_cores")
        if w is not None or r is not None:
            print(f"| {id_} | {fmt(w)} | {fmt(r)} |")
    for id_, k in [("s7", "publish_client_cpu_cores"), ("s7", "drain_client_cpu_cores")]:
        w, _ = med(runs, id_, "warren", k)
        r, _ = med(runs, id_, "rabbitmq", k)
        if w is not None or r is not None:
            print(f"| {id_} {k.split('_')[0]} | {fmt(w)} | {fmt(r)} |")


if __name__ == "__main__":
    main()
