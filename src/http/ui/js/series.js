// Time series for the charts, from what the management API returns.
//
// With lengths_age/msg_rates_age, RabbitMQ's API adds `samples` (newest
// first) to each `*_details` object: lengths as values, message_stats as
// cumulative counters. When a server sends no samples, a History collects
// one point per refresh from the current values and `*_details.rate`.

import { compact, fmtNum, fmtRate } from './dom.js';

/** Chart value formats: compact on the axis, exact in the legend and read-out. */
export const countFormat = (v, axis) => (axis ? compact(v) : fmtNum(Math.round(v)));
export const rateFormat = (v, axis) => (axis ? compact(v) : fmtRate(v));

/** Ranges offered above charts: [age in s, label, increment in s]. */
export const RANGES = [['60', 'Last minute', 5], ['600', 'Last 10 minutes', 5], ['3600', 'Last hour', 60]];

/** Queued-message series: the same three counts on the overview and on a queue. */
export const LENGTHS = [
  { key: 'messages_ready', label: 'Ready', color: '#1d6fd8' },
  { key: 'messages_unacknowledged', label: 'Unacked', color: '#d97706' },
  { key: 'messages', label: 'Total', color: '#475467' },
];

/** The query parameters that ask for samples over `age` seconds. */
export function sampleQuery(age) {
  const [, , incr] = RANGES.find((r) => r[0] === String(age)) || RANGES[1];
  return { lengths_age: age, lengths_incr: incr, msg_rates_age: age, msg_rates_incr: incr };
}

/** True when the answer carries samples (the server keeps history). */
export function hasSamples(obj, key) {
  const d = obj && obj[`${key}_details`];
  return Boolean(d && Array.isArray(d.samples));
}

/** Length samples of `series` ([{key}]) in `obj` → [{t, v}] oldest first. */
export function lengthPoints(obj, series) {
  const byTime = new Map();
  for (const s of series) {
    for (const { timestamp, sample } of (obj[`${s.key}_details`] || {}).samples || []) {
      if (!byTime.has(timestamp)) byTime.set(timestamp, { t: timestamp, v: {} });
      byTime.get(timestamp).v[s.key] = sample;
    }
  }
  return [...byTime.values()].sort((a, b) => a.t - b.t);
}

/**
 * Counter samples in message_stats → per-second rates between neighbouring
 * samples. Each series sums the counters named in its `from` list.
 */
export function ratePoints(stats, series) {
  const counters = new Map(); // timestamp → { series key: count }
  for (const s of series) {
    for (const k of s.from) {
      for (const { timestamp, sample } of ((stats || {})[`${k}_details`] || {}).samples || []) {
        if (!counters.has(timestamp)) counters.set(timestamp, {});
        const c = counters.get(timestamp);
        c[s.key] = (c[s.key] || 0) + sample;
      }
    }
  }
  const times = [...counters.keys()].sort((a, b) => a - b);
  const out = [];
  for (let i = 1; i < times.length; i += 1) {
    const dt = (times[i] - times[i - 1]) / 1000;
    const v = {};
    for (const s of series) v[s.key] = Math.max(0, ((counters.get(times[i])[s.key] || 0) - (counters.get(times[i - 1])[s.key] || 0)) / dt);
    out.push({ t: times[i], v });
  }
  return out;
}

/** Current rates of `series` from message_stats' `*_details.rate`. */
export function currentRates(stats, series) {
  const v = {};
  for (const s of series) v[s.key] = s.from.reduce((sum, k) => sum + (((stats || {})[`${k}_details`] || {}).rate || 0), 0);
  return v;
}

/** Points collected in the browser, at most an hour's worth. */
export class History {
  constructor() { this.points = []; }

  add(v, t = Date.now()) {
    this.points.push({ t, v });
    while (this.points.length && this.points[0].t < t - 3600 * 1000) this.points.shift();
  }

  since(ageMs, now = Date.now()) { return this.points.filter((p) => p.t >= now - ageMs); }
}
