// Definitions (administrators): download the broker's (or one vhost's)
// users, vhosts, permissions, policies, queues, exchanges and bindings as
// JSON, and import such a file.

import { api, path, request } from '../api.js';
import { h, fmtNum, fmtBytes } from '../dom.js';
import { pageHead, panel, form, field, select, val, toast } from '../ui.js';
import { session } from '../session.js';

const scopeOptions = () => [['', 'Whole broker'], ...session.vhosts.map((v) => [v, `Virtual host ${v}`])];

export function render({ main }) {
  const summary = h('div', {});
  const exportForm = form([
    field('Export', select('vhost', scopeOptions(), '')),
  ], async (f) => {
    const vhost = val(f, 'vhost');
    const blob = await request('GET', vhost ? `definitions/${path(vhost)}` : 'definitions', { asBlob: true });
    const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, '-');
    const name = `warren-definitions-${vhost ? `${vhost.replace(/[^\w.-]+/g, '_')}-` : ''}${stamp}.json`;
    const url = URL.createObjectURL(blob);
    const a = h('a', { href: url, download: name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    try {
      const defs = JSON.parse(await blob.text());
      summary.replaceChildren(h('div', { class: 'alert alert-ok' }, `Downloaded ${name} (${fmtBytes(blob.size)}): `,
        ['users', 'vhosts', 'permissions', 'policies', 'queues', 'exchanges', 'bindings']
          .filter((k) => Array.isArray(defs[k])).map((k) => `${fmtNum(defs[k].length)} ${k}`).join(', ')));
    } catch { summary.replaceChildren(); }
  }, { submit: 'Download' });

  const file = h('input', { type: 'file', name: 'file', accept: 'application/json,.json', required: true });
  const importForm = form([
    field('Definitions file', file, { wide: true }),
    field('Import into', select('vhost', scopeOptions(), '')),
  ], async (f) => {
    if (!file.files.length) throw new Error('Choose a definitions file first.');
    const text = await file.files[0].text();
    try { JSON.parse(text); } catch { throw new Error(`${file.files[0].name} is not valid JSON.`); }
    const vhost = val(f, 'vhost');
    await api.post(vhost ? `definitions/${path(vhost)}` : 'definitions', text);
    toast('Definitions imported');
    window.dispatchEvent(new Event('warren:vhosts-changed'));
  }, { submit: 'Import' });

  main.append(pageHead('Definitions', { sub: 'Topology and access as RabbitMQ’s definitions JSON' }),
    h('div', { class: 'grid-2' },
      panel('Export', h('div', {}, h('p', { class: 'muted' }, 'Users, virtual hosts, permissions, policies, queues, exchanges and bindings. Messages are not included.'), exportForm, summary)),
      panel('Import', h('div', {}, h('p', { class: 'muted' }, 'Objects in the file are created or updated; nothing is deleted.'), importForm))));
  return {};
}
