// Policies (administrators and policymakers): list, add or replace, delete.

import { api, path } from '../api.js';
import { h } from '../dom.js';
import { pageHead, errorBox, button, dialog, form, field, input, select, val, toast, confirmDanger, kvTable, argumentsEditor } from '../ui.js';
import { dataTable } from '../table.js';
import { session, scoped } from '../session.js';

const DEFINITION_PRESETS = [
  ['message-ttl', 'number'], ['expires', 'number'], ['max-length', 'number'], ['max-length-bytes', 'number'],
  ['overflow', 'string', 'drop-head, reject-publish or reject-publish-dlx'], ['dead-letter-exchange', 'string'],
  ['dead-letter-routing-key', 'string'], ['queue-mode', 'string', 'lazy'], ['delivery-limit', 'number'],
  ['alternate-exchange', 'string'], ['max-age', 'string'], ['single-active-consumer', 'boolean'],
];

export function render({ main }) {
  const list = h('div', { class: 'card' }, h('p', { class: 'muted pad' }, 'Loading…'));
  const add = button('Add policy', () => editDialog().then((ok) => ok && refresh()), { kind: 'primary', iconName: 'plus', title: 'Add policy (n)' });
  add.dataset.new = '1';
  main.append(pageHead('Policies', { sub: session.vhost ? `Virtual host ${session.vhost}` : 'All virtual hosts', actions: [add] }), list);

  async function refresh() {
    try {
      const rows = await api.get(scoped('policies'));
      list.replaceChildren(dataTable({
        rows,
        empty: 'No policies. A policy sets arguments (TTL, length limits, dead-lettering…) on every queue or exchange whose name matches its pattern.',
        columns: [
          { key: 'vhost', label: 'Virtual host' },
          { key: 'name', label: 'Name', render: (p) => h('span', { class: 'name' }, p.name) },
          { key: 'pattern', label: 'Pattern', render: (p) => h('code', {}, p.pattern) },
          { key: 'apply-to', label: 'Apply to' },
          { key: 'definition', label: 'Definition', sort: false, render: (p) => kvTable(p.definition) },
          { key: 'priority', label: 'Priority', num: true },
          { key: 'actions', label: '', sort: false, render: (p) => h('span', { class: 'row-actions' },
            button('Edit', () => editDialog(p).then((ok) => ok && refresh()), { kind: 'small' }),
            button('Delete', () => remove(p), { kind: 'small danger-ghost' })) },
        ],
      }));
    } catch (err) { list.replaceChildren(errorBox(err)); }
  }

  async function remove(p) {
    if (!(await confirmDanger('Delete policy', `Delete policy ${p.name} in ${p.vhost}?`))) return;
    try {
      await api.del(`policies/${path(p.vhost, p.name)}`);
      toast(`Policy ${p.name} deleted`);
      refresh();
    } catch (err) { toast(err.message, 'error'); }
  }

  refresh();
  return { refresh };
}

function editDialog(existing) {
  const def = argumentsEditor({ label: 'Definition', presets: DEFINITION_PRESETS, initial: existing ? existing.definition : {} });
  return dialog(existing ? `Edit policy ${existing.name}` : 'Add policy', (close) => form([
    field('Virtual host', select('vhost', session.vhosts, existing ? existing.vhost : session.vhost || session.vhosts[0], { disabled: Boolean(existing) })),
    field('Name', input('name', { required: true, value: existing ? existing.name : '', readonly: Boolean(existing) })),
    field('Pattern', input('pattern', { required: true, value: existing ? existing.pattern : '', placeholder: '^orders\\.' }), { hint: 'regular expression over queue or exchange names' }),
    field('Apply to', select('apply-to', [['all', 'Exchanges and queues'], ['queues', 'Queues'], ['exchanges', 'Exchanges']], existing ? existing['apply-to'] : 'queues')),
    field('Priority', input('priority', { type: 'number', value: existing ? existing.priority : '0' })),
    def.node,
  ], async (f) => {
    const vhost = existing ? existing.vhost : val(f, 'vhost');
    const name = val(f, 'name');
    const definition = def.value();
    if (!Object.keys(definition).length) throw new Error('A policy needs at least one definition key.');
    await api.put(`policies/${path(vhost, name)}`, { pattern: val(f, 'pattern'), 'apply-to': val(f, 'apply-to'), priority: Number(val(f, 'priority') || 0), definition });
    toast(`Policy ${name} saved`);
    close(true);
  }, { submit: existing ? 'Save policy' : 'Add policy', cancel: () => close(false) }), { wide: true });
}
