// A small SVG line chart over time: several series, a legend that shows
// the latest values and hides a series on click, and a hover read-out.

import { h } from './dom.js';

const SVG = 'http://www.w3.org/2000/svg';
function s(tag, attrs = {}) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

/**
 * series: [{ key, label, color }]; format(value) for axis and read-out.
 * update(points) takes [{ t: ms, v: { key: number } }] in time order.
 */
export function lineChart({ series, format, height = 190, label, minTop = 1 }) {
  const hidden = new Set();
  let points = [];
  const plot = h('div', { class: 'chart-plot', style: `height:${height}px` });
  const tip = h('div', { class: 'chart-tip', hidden: true });
  const legend = h('div', { class: 'legend' });
  const node = h('figure', { class: 'chart', 'aria-label': label }, legend, h('div', { class: 'chart-area' }, plot, tip));

  const legendItems = series.map((sr) => {
    const value = h('span', { class: 'legend-value' }, '–');
    const b = h('button', {
      type: 'button', class: 'legend-item', 'aria-pressed': 'true', title: `Show or hide ${sr.label}`,
      onclick: () => {
        if (hidden.has(sr.key)) hidden.delete(sr.key); else hidden.add(sr.key);
        b.setAttribute('aria-pressed', String(!hidden.has(sr.key)));
        draw();
      },
    }, h('span', { class: 'swatch', style: `background:${sr.color}` }), h('span', { class: 'legend-label' }, sr.label), value);
    legend.append(b);
    return value;
  });

  const resize = new ResizeObserver(() => draw());
  resize.observe(plot);

  function draw() {
    const W = Math.max(240, plot.clientWidth || 600);
    const H = height;
    const m = { l: 52, r: 10, t: 8, b: 22 };
    const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': label || 'chart' });
    const shown = series.filter((sr) => !hidden.has(sr.key));
    const last = points[points.length - 1];
    series.forEach((sr, i) => { legendItems[i].textContent = last ? format(last.v[sr.key] ?? 0) : '–'; });

    const now = last ? last.t : Date.now();
    const t0 = points.length > 1 ? points[0].t : now - 60000;
    const t1 = Math.max(now, t0 + 1000);
    let max = 0;
    for (const p of points) for (const sr of shown) max = Math.max(max, p.v[sr.key] || 0);
    const top = niceCeil(Math.max(max, minTop));
    const x = (t) => m.l + ((t - t0) / (t1 - t0)) * (W - m.l - m.r);
    const y = (v) => H - m.b - (v / top) * (H - m.t - m.b);

    for (let i = 0; i <= 4; i += 1) {
      const v = (top * i) / 4;
      const yy = Math.round(y(v)) + 0.5;
      svg.append(s('line', { x1: m.l, x2: W - m.r, y1: yy, y2: yy, class: i ? 'grid' : 'axis' }));
      const tx = s('text', { x: m.l - 8, y: yy + 4, 'text-anchor': 'end', class: 'tick' });
      tx.textContent = format(v, true);
      svg.append(tx);
    }
    const span = t1 - t0;
    const step = TIME_STEPS.find((st) => span / st <= 6) || TIME_STEPS[TIME_STEPS.length - 1];
    const offset = new Date().getTimezoneOffset() * 60000; // round to local clock minutes and hours
    for (let t = Math.ceil((t0 - offset) / step) * step + offset; t <= t1; t += step) {
      const xx = x(t);
      if (xx < m.l + 22 || xx > W - m.r - 22) continue;
      const tx = s('text', { x: xx, y: H - 5, 'text-anchor': 'middle', class: 'tick' });
      tx.textContent = clock(t, step);
      svg.append(tx);
    }
    if (points.length < 2) {
      const tx = s('text', { x: (W + m.l) / 2, y: H / 2, 'text-anchor': 'middle', class: 'chart-empty' });
      tx.textContent = points.length ? 'Collecting samples…' : 'No data yet';
      svg.append(tx);
    } else {
      for (const sr of shown) {
        const d = points.map((p, i) => `${i ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p.v[sr.key] || 0).toFixed(1)}`).join('');
        svg.append(s('path', { d: `${d}L${x(points[points.length - 1].t).toFixed(1)},${y(0)}L${x(points[0].t).toFixed(1)},${y(0)}Z`, fill: sr.color, class: 'area' }));
        svg.append(s('path', { d, stroke: sr.color, class: 'line' }));
      }
    }
    const cursor = s('line', { y1: m.t, y2: H - m.b, class: 'cursor', visibility: 'hidden' });
    svg.append(cursor);
    const hit = s('rect', { x: m.l, y: m.t, width: W - m.l - m.r, height: H - m.t - m.b, fill: 'transparent' });
    hit.addEventListener('mousemove', (e) => {
      if (points.length < 2) return;
      const box = svg.getBoundingClientRect();
      const px = ((e.clientX - box.left) / box.width) * W;
      const t = t0 + ((px - m.l) / (W - m.l - m.r)) * (t1 - t0);
      let best = points[0];
      for (const p of points) if (Math.abs(p.t - t) < Math.abs(best.t - t)) best = p;
      const cx = x(best.t);
      cursor.setAttribute('x1', cx); cursor.setAttribute('x2', cx); cursor.setAttribute('visibility', 'visible');
      tip.replaceChildren(h('div', { class: 'tip-time' }, new Date(best.t).toLocaleTimeString('en-GB', { hour12: false })),
        ...shown.map((sr) => h('div', { class: 'tip-row' }, h('span', { class: 'swatch', style: `background:${sr.color}` }), sr.label, h('b', {}, format(best.v[sr.key] || 0)))));
      tip.hidden = false;
      const left = (cx / W) * box.width;
      tip.style.left = `${left > box.width / 2 ? left - tip.offsetWidth - 12 : left + 12}px`;
    });
    hit.addEventListener('mouseleave', () => { tip.hidden = true; cursor.setAttribute('visibility', 'hidden'); });
    svg.append(hit);
    plot.replaceChildren(svg);
  }

  draw();
  return {
    node,
    update(next) { points = next; draw(); },
    destroy() { resize.disconnect(); },
  };
}

/** The axis top: four steps of 1, 2, 2.5 or 5 × 10^n, at or above v. */
function niceCeil(v) {
  const raw = v / 4;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const f of [1, 2, 2.5, 5, 10]) if (f * p >= raw) return 4 * f * p;
  return 40 * p;
}

const TIME_STEPS = [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200].map((x) => x * 1000);

/** hh:mm, with seconds when ticks are less than a minute apart. */
function clock(t, step) {
  const d = new Date(t);
  const hh = String(d.getHours()).padStart(2, '0');
  const mm = String(d.getMinutes()).padStart(2, '0');
  const ss = String(d.getSeconds()).padStart(2, '0');
  return step < 60000 ? `${hh}:${mm}:${ss}` : `${hh}:${mm}`;
}
