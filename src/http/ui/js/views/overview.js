// Overview: object and message totals, queued messages and message rates
// over time, the node's resources and listeners.
//
// Charts use the samples /api/overview returns for lengths_age/msg_rates_age
// when the server keeps them; otherwise the samples are collected here, one
// per refresh, from the current values and rates.

import { api } from '../api.js';
import { h, append, fmtNum, fmtBytes, fmtDuration } from '../dom.js';
import { pageHead, panel, errorBox, facts, select } from '../ui.js';
import { lineChart } from '../chart.js';
import { link, canMonitor, session } from '../session.js';
import { dataTable } from '../table.js';
import { RANGES, LENGTHS, sampleQuery, hasSamples, lengthPoints, ratePoints, currentRates, History, countFormat, rateFormat } from '../series.js';

// Each rate series sums these message_stats counters.
const RATES = [
  { key: 'publish', label: 'Publish', color: '#0f8a6d', from: ['publish'] },
  { key: 'confirm', label: 'Confirm', color: '#0891b2', from: ['confirm'] },
  { key: 'deliver', label: 'Deliver', color: '#1d6fd8', from: ['deliver', 'deliver_no_ack'] },
  { key: 'ack', label: 'Ack', color: '#7c3aed', from: ['ack'] },
  { key: 'redeliver', label: 'Redeliver', color: '#d97706', from: ['redeliver'] },
  { key: 'get', label: 'Get', color: '#db2777', from: ['get', 'get_no_ack'] },
  { key: 'return', label: 'Return', color: '#c2410c', from: ['return_unroutable'] },
];

// Samples collected in the browser when the server sends none: kept across
// visits to the page for this tab.
const local = new History();

export function render({ main }) {
  let range = sessionStorage.getItem('warren.range') || '600';
  const totals = h('div', { class: 'totals' });
  const errorSlot = h('div', {});
  const lengths = lineChart({ series: LENGTHS, format: countFormat, label: 'Queued messages over time', minTop: 4 });
  const rates = lineChart({ series: RATES, format: rateFormat, label: 'Message rates over time', minTop: 4 });
  const rangeSelect = select('range', RANGES.map(([v, l]) => [v, l]), range, {
    'aria-label': 'Chart range', onchange: () => { range = rangeSelect.value; sessionStorage.setItem('warren.range', range); refresh(); },
  });
  const nodeBox = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const listenersBox = h('div', {});
  const sub = h('span', {});

  append(main, [
    pageHead('Overview', { sub, actions: [rangeSelect] }),
    errorSlot,
    totals,
    h('div', { class: 'grid-2' },
      panel('Queued messages', lengths.node, { cls: 'chart-panel' }),
      panel('Message rates', rates.node, { cls: 'chart-panel' })),
    // RabbitMQ tells only monitoring users about the node and its listeners.
    canMonitor() ? h('div', { class: 'grid-2' }, panel('Node', nodeBox), panel('Listeners', listenersBox)) : null]);

  async function refresh() {
    try {
      const ov = await api.get('overview', sampleQuery(range));
      errorSlot.replaceChildren();
      session.overview = { ...(session.overview || {}), ...ov };
      sub.replaceChildren([ov.product_name, ov.product_version].filter(Boolean).join(' '), ov.node ? ` · node ${ov.node}` : '');
      drawTotals(ov);
      drawCharts(ov, Number(range) * 1000);
      drawListeners(ov);
    } catch (err) {
      errorSlot.replaceChildren(errorBox(err));
    }
    if (canMonitor()) {
      try {
        const nodes = await api.get('nodes');
        drawNode(nodes[0]);
      } catch (err) { nodeBox.replaceChildren(errorBox(err)); }
    }
  }

  function drawTotals(ov) {
    const o = ov.object_totals || {};
    const q = ov.queue_totals || {};
    const card = (label, value, href, cls = '') => h(href ? 'a' : 'div', { class: `stat ${cls}`.trim(), href },
      h('div', { class: 'stat-label' }, label), h('div', { class: 'stat-value' }, fmtNum(value ?? 0)));
    totals.replaceChildren(
      h('div', { class: 'stat-group' },
        card('Connections', o.connections, link('connections')),
        card('Channels', o.channels, link('channels')),
        card('Exchanges', o.exchanges, link('exchanges')),
        card('Queues', o.queues, link('queues')),
        card('Consumers', o.consumers)),
      h('div', { class: 'stat-group' },
        card('Ready', q.messages_ready, null, 'stat-ready'),
        card('Unacked', q.messages_unacknowledged, null, 'stat-unacked'),
        card('Total messages', q.messages, null, 'stat-total')));
  }

  function drawCharts(ov, ageMs) {
    const q = ov.queue_totals || {};
    const ms = ov.message_stats || {};
    if (hasSamples(q, 'messages')) {
      const lp = lengthPoints(q, LENGTHS);
      const rp = ratePoints(ms, RATES);
      lengths.update(lp);
      // No message has moved yet: message_stats has no samples, the rates are zero.
      rates.update(rp.length ? rp : lp.map((p) => ({ t: p.t, v: {} })));
      return;
    }
    const v = currentRates(ms, RATES);
    for (const s of LENGTHS) v[s.key] = q[s.key] || 0;
    local.add(v);
    lengths.update(local.since(ageMs));
    rates.update(local.since(ageMs));
  }

  function drawListeners(ov) {
    listenersBox.replaceChildren(dataTable({
      rows: ov.listeners || [],
      empty: 'No listeners reported.',
      columns: [
        { key: 'protocol', label: 'Protocol' },
        { key: 'ip_address', label: 'Address' },
        { key: 'port', label: 'Port', num: true, render: (l) => String(l.port) },
      ],
    }));
  }

  function drawNode(n) {
    if (!n) { nodeBox.replaceChildren(h('p', { class: 'muted' }, 'No node reported.')); return; }
    const meter = (used, limit, fmt, alarm) => {
      if (used === undefined) return null;
      const pct = limit ? Math.min(100, (used / limit) * 100) : 0;
      return h('div', { class: `meter${alarm ? ' alarm' : ''}` },
        h('div', { class: 'meter-text' }, h('span', {}, fmt(used)), limit ? h('span', { class: 'muted' }, ` of ${fmt(limit)}`) : null),
        limit ? h('div', { class: 'meter-bar' }, h('div', { class: 'meter-fill', style: `width:${pct.toFixed(1)}%` })) : null);
    };
    nodeBox.replaceChildren(facts([
      ['Name', n.name],
      n.uptime !== undefined && ['Uptime', fmtDuration(n.uptime)],
      ['Memory', meter(n.mem_used, n.mem_limit, fmtBytes, n.mem_alarm)],
      n.disk_free !== undefined && ['Disk free', h('span', { class: n.disk_free_alarm ? 'danger-text' : '' }, `${fmtBytes(n.disk_free)} (limit ${fmtBytes(n.disk_free_limit)})`)],
      n.fd_used !== undefined && ['File descriptors', meter(n.fd_used, n.fd_total, fmtNum)],
      n.sockets_used !== undefined && ['Sockets', meter(n.sockets_used, n.sockets_total, fmtNum)],
      n.proc_used !== undefined && ['Processes', meter(n.proc_used, n.proc_total, fmtNum)],
      n.processors !== undefined && ['Cores', fmtNum(n.processors)],
      (n.mem_alarm || n.disk_free_alarm) && ['Alarms', h('span', { class: 'danger-text' }, [n.mem_alarm && 'memory', n.disk_free_alarm && 'disk'].filter(Boolean).join(', '))],
    ]));
  }

  refresh();
  return { refresh, destroy() { lengths.destroy(); rates.destroy(); } };
}
